// authscan dashboard: plain JS, talks only to this controller (same origin).
"use strict";

const state = { csrf: "", samples: [], timer: null };
const ACTIONS = ["no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"];
const COLORS = ["#2e7d32", "#9e9d24", "#f9a825", "#ef6c00", "#8e24aa", "#c62828"];

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

async function api(method, path, body) {
  const opts = { method: method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (method !== "GET" && state.csrf) opts.headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.error) || ("HTTP " + r.status));
    err.status = r.status;
    throw err;
  }
  return data;
}

function fmt(n) {
  if (n === null || n === undefined) return "-";
  return Math.abs(n - Math.round(n)) < 0.05 ? String(Math.round(n)) : n.toFixed(1);
}

function when(ts) {
  if (!ts) return "-";
  return new Date(ts * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function numCell(tr, v) { tr.appendChild(el("td", fmt(v), "num")); }

// ---- login ----

function showLogin(msg) {
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("password").focus();
}

async function start() {
  const s = await api("GET", "/api/v1/session");
  if (s.level === "none" && s.password_set) { showLogin(""); return; }
  if (!s.csrf && !s.password_set) {
    // loopback without a password: a session still carries the CSRF token writes need
    const l = await api("POST", "/login", { password: "" });
    s.csrf = l.csrf;
  }
  state.csrf = s.csrf;
  $("who").textContent = s.level === "write" ? "read and write" : "read only";
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !s.password_set;
  $("sender-clear").disabled = s.level !== "write";
  refresh();
  if (!state.timer) state.timer = setInterval(pollStat, 5000);
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("POST", "/login", { password: $("password").value });
    state.csrf = r.csrf;
    $("password").value = "";
    await start();
  } catch (e) {
    $("password").value = "";
    showLogin(e.status === 403 ? "Wrong password." : e.message);
  }
});

$("logout").addEventListener("click", async () => {
  await api("POST", "/logout");
  state.csrf = "";
  showLogin("");
});

// ---- actions over time ----

async function pollStat() {
  let s;
  try { s = await api("GET", "/stat"); } catch (e) {
    if (e.status === 401 || e.status === 403) showLogin("Session expired.");
    return;
  }
  state.samples.push({ t: Date.now(), actions: s.actions, scanned: s.scanned });
  if (state.samples.length > 180) state.samples.shift();
  const tb = $("totals").tBodies[0];
  tb.textContent = "";
  const rows = [["scanned", s.scanned], ["errors", s.errors], ["timeouts", s.timeouts],
                ["workers", s.workers], ["worker restarts", s.worker_restarts]];
  for (const a of ACTIONS) rows.push([a, s.actions[a] || 0]);
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.appendChild(el("th", k));
    numCell(tr, v);
    tb.appendChild(tr);
  }
  drawChart();
}

function drawChart() {
  const c = $("actions-chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const pts = state.samples;
  if (pts.length < 2) {
    g.fillStyle = "#666";
    g.fillText("collecting samples...", 10, 20);
    return;
  }
  const series = ACTIONS.map((a) => pts.slice(1).map((p, i) =>
    Math.max(0, (p.actions[a] || 0) - (pts[i].actions[a] || 0))));
  const max = Math.max(1, ...series.flat());
  const w = c.width - 40, h = c.height - 30, n = pts.length - 1;
  g.strokeStyle = "#ccc";
  g.strokeRect(30, 10, w, h);
  g.fillStyle = "#666";
  g.fillText(String(max), 2, 16);
  g.fillText("0", 2, h + 10);
  series.forEach((ys, k) => {
    g.strokeStyle = COLORS[k];
    g.beginPath();
    ys.forEach((y, i) => {
      const x = 30 + (n === 1 ? w : (i * w) / (n - 1)), yy = 10 + h - (y * h) / max;
      if (i === 0) g.moveTo(x, yy); else g.lineTo(x, yy);
    });
    g.stroke();
    g.fillStyle = COLORS[k];
    g.fillText(ACTIONS[k], 40 + k * 110, c.height - 4);
  });
}

// ---- history ----

async function loadDomains() {
  $("domains-error").textContent = "";
  const tb = $("domains").tBodies[0];
  try {
    const r = await api("GET", "/api/v1/domains");
    tb.textContent = "";
    for (const d of r.domains) {
      const h = d.history || {};
      const tr = el("tr");
      const td = el("td");
      const a = el("a", d.domain);
      a.addEventListener("click", () => { $("domain-input").value = d.domain; loadSources(d.domain); });
      td.appendChild(a);
      tr.appendChild(td);
      numCell(tr, h.n);
      numCell(tr, h.dp);
      numCell(tr, h.df);
      const total = (h.dp || 0) + (h.df || 0);
      tr.appendChild(el("td", total ? Math.round((100 * (h.dp || 0)) / total) + "%" : "-", "num"));
      tr.appendChild(el("td", when(h.l)));
      tb.appendChild(tr);
    }
    if (!r.domains.length) {
      const tr = el("tr");
      tr.appendChild(el("td", "no history yet"));
      tb.appendChild(tr);
    }
  } catch (e) {
    $("domains-error").textContent = e.message;
  }
}

async function loadSources(domain) {
  $("domain-error").textContent = "";
  const tb = $("sources").tBodies[0];
  tb.textContent = "";
  try {
    const r = await api("GET", "/api/v1/domain?domain=" + encodeURIComponent(domain));
    for (const s of r.sources) {
      const h = s.history || {};
      const tr = el("tr");
      tr.appendChild(el("td", s.net));
      numCell(tr, h.n);
      numCell(tr, h.dp);
      numCell(tr, h.df);
      tr.appendChild(el("td", when(h.l)));
      tb.appendChild(tr);
    }
  } catch (e) {
    $("domain-error").textContent = e.message;
  }
}

$("domain-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadSources($("domain-input").value.trim());
});

function senderQuery() {
  return "domain=" + encodeURIComponent($("sender-domain").value.trim()) +
         "&ip=" + encodeURIComponent($("sender-ip").value.trim());
}

$("sender-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("sender-error").textContent = "";
  try {
    const r = await api("GET", "/api/v1/sender?" + senderQuery());
    $("sender-result").textContent = JSON.stringify(r, null, 2);
  } catch (e) {
    $("sender-error").textContent = e.message;
  }
});

$("sender-clear").addEventListener("click", async () => {
  $("sender-error").textContent = "";
  try {
    const r = await api("POST", "/api/v1/sender/clear?" + senderQuery());
    $("sender-result").textContent = r.cleared ? "cleared" : "nothing to clear";
  } catch (e) {
    $("sender-error").textContent = e.message;
  }
});

async function loadReports() {
  $("reports-error").textContent = "";
  const tb = $("reports").tBodies[0];
  try {
    const r = await api("GET", "/api/v1/reports?days=7");
    tb.textContent = "";
    for (const d of r.days) {
      const tr = el("tr");
      tr.appendChild(el("td", d.day));
      numCell(tr, d.collecting);
      numCell(tr, d.pending);
      numCell(tr, d.sent);
      numCell(tr, d.failed);
      tb.appendChild(tr);
    }
  } catch (e) {
    $("reports-error").textContent = e.message;
  }
}

function refresh() {
  pollStat();
  loadDomains();
  loadReports();
}

start().catch((e) => showLogin(e.message));
