#!/usr/bin/python3
"""bench/bench.py - authscan's benchmark driver (bench/run calls it).

Runs, in this order, on an already generated corpus (bench/gen_corpus.py):

  crypto     `openssl speed -seconds 2 rsa2048 ed25519 sha256`: the raw crypto
             cost of the corpus' signatures, for the "<= 3x raw crypto" target
  inproc     `authscan bench` over the corpus with the offline zone (no network):
             msgs/s and CPU us per message on one core.  With crypto, the two
             run as 3 back-to-back pairs and the ratio is the median pair's
  lua        the same with no Lua, one empty Lua hook and the ten-rule site file
             (bench/lua/), interleaved: the CPU cost of Lua rules (issue 14)
  check      authscand (2 workers) against a private nsd: every message is
             scanned once over HTTP and its SPF / DKIM / DMARC verdicts are
             compared with the corpus expectations (agreement rate, disagreements)
  load       wrk + bench/checkv2.lua, closed loop at each concurrency level
             (default 1, 8, 64, 512), then c=64 paced at half the saturated
             rate; msgs/s, p50/p99/p99.9, CPU ms per message of the scanner's
             processes (master + workers, /proc/PID/stat), peak RSS and PSS
  soak       a fresh authscand, 100,000 then 200,000 messages: RSS/PSS per worker
  daemonir   (with daemonpath) the daemon path in instructions, which this
             machine's noise does not move: callgrind of `authscan bench`
             and of one worker answering /checkv2, each over the corpus
             after a warm-up pass; the ratio of instructions per message
  profile    callgrind over one in-process pass: inclusive instruction counts
  report     DMARC reporting (bench/report_bench.py): the CPU the report
             plugin's counters add per message (in-process, private Redis),
             and `authscan report aggregate` over one day of 1,000,000
             messages / 10,000 policy domains (time, Redis memory)
  peers      (--peers) the shared testbed (../shared/bench-rspamd/run.sh):
             rspamd 3.4, SpamAssassin spamd and authscand on the testbed's
             corpus, back to back, for the ratios

Writes bench/results/<date>.md (and .json) and prints the markdown.
Everything it starts (nsd, authscand, wrk, the testbed's servers) is stopped
by PID; every loop is bounded in count and time; traffic stays on 127.0.0.1.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import nsd as nsd_mod  # noqa: E402  (the project's private-nsd helper)
import harness as test_harness  # noqa: E402  (RedisServer: a private redis-server)
sys.path.insert(0, HERE)
import mta as mta_mod  # noqa: E402  (the "mta" step: milter and spamd vs /checkv2)
import report_bench  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ------------------------------------------------------------------ /proc
def proc_stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return {"ppid": int(rest[1]),
            "ticks": int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14]),
            "sys": int(rest[12]) + int(rest[14])}


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            st = proc_stat(int(p))
            if st and st["ppid"] == pid:
                out.append(int(p))
    return sorted(out)


def tree(pid):
    return [pid] + children(pid)


def cpu_s(pids, key="ticks"):
    return sum((proc_stat(p) or {key: 0})[key] for p in pids) / TCK


def mem_kb(pid):
    """(VmRSS, VmHWM, Pss) in KiB."""
    rss = hwm = pss = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            s = f.read()
        rss = int(re.search(r"VmRSS:\s+(\d+)", s).group(1))
        hwm = int(re.search(r"VmHWM:\s+(\d+)", s).group(1))
        with open("/proc/%d/smaps_rollup" % pid) as f:
            pss = int(re.search(r"^Pss:\s+(\d+)", f.read(), re.M).group(1))
    except (OSError, AttributeError):
        pass
    return rss, hwm, pss


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[3] + v[4], v[7]


class MemSampler(threading.Thread):
    """Peak of the summed RSS and PSS of a process tree, sampled every 0.5 s."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_rss = self.peak_pss = self.peak_worker_rss = 0
        self.stop_ev = threading.Event()

    def sample(self):
        rss = pss = 0
        for p in self.pids:
            r, _, s = mem_kb(p)
            rss += r
            pss += s
            if p != self.pids[0]:
                self.peak_worker_rss = max(self.peak_worker_rss, r)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(0.5)

    def stop(self):
        self.stop_ev.set()
        self.join(2)
        self.sample()


# ------------------------------------------------------------------ helpers
def free_port():
    return nsd_mod.free_port()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def http_get(port, path, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def load_manifest(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            c = line.split("\t")
            rows.append({"file": c[0], "ip": c[1], "helo": c[2], "hostname": c[3], "mail_from": c[4],
                         "rcpt": c[5], "queue_id": c[6], "scenario": c[7], "spf": c[8],
                         # as a set: a symbol's options are unique (rspamd too), so two
                         # passing signatures of one domain give one "domain:+"
                         "dkim": [] if c[9] == "none" else sorted(set(c[9].split(","))),
                         "dmarc": c[10], "policy": c[11]})
    return rows


# ------------------------------------------------------------------ daemon
class Daemon:
    def __init__(self, binary, dns, workers, logpath, extra=(), prefix=()):
        self.port = free_port()
        self.cmd = list(prefix) + [binary, "-f", "-w", str(workers), "-l", "127.0.0.1:%d" % self.port]
        # dns None: the caller names the source in extra (--dns-zone)
        self.cmd += (["--dns-server", dns] if dns else []) + list(extra)
        if os.geteuid() == 0:
            # authscand refuses root without `user`; the measurements were
            # always taken as root, so keep it explicitly
            self.cmd += ["--set", "user=root"]
        self.workers = workers
        self.logpath = logpath
        self.proc = None

    def start(self, timeout=20):
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf)
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError("authscand exited (%s); see %s" % (self.proc.returncode, self.logpath))
            try:
                st, body = http_get(self.port, "/ping", 0.5)
                if st == 200 and len(children(self.proc.pid)) >= self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("authscand did not answer /ping; see %s" % self.logpath)

    @property
    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for p in self.pids:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.wait(5)
        if self.proc:
            self.logf.close()
        self.proc = None


# ------------------------------------------------------------------ crypto
def openssl_speed(work):
    log("openssl speed -seconds 2 rsa2048 ed25519 sha256 (about 30 s)")
    out = run(["openssl", "speed", "-seconds", "2", "rsa2048", "ed25519", "sha256"]).stdout
    with open(os.path.join(work, "openssl-speed.txt"), "w") as f:
        f.write(out)
    res = {"version": run(["openssl", "version"]).stdout.strip()}
    # use the sign/s and verify/s columns: the seconds columns have 4 decimals only
    m = re.search(r"^rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", out, re.M)
    if m:
        res["rsa2048_sign_us"] = 1e6 / float(m.group(1))
        res["rsa2048_verify_us"] = 1e6 / float(m.group(2))
    m = re.search(r"^\s*253 bits EdDSA \(Ed25519\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", out, re.M)
    if m:
        res["ed25519_sign_us"] = 1e6 / float(m.group(1))
        res["ed25519_verify_us"] = 1e6 / float(m.group(2))
    m = re.search(r"^sha256\s+(.*)$", out, re.M)
    if m:
        # columns: 16 64 256 1024 8192 16384 bytes, in 1000s of bytes per second
        v = [float(x.rstrip("k")) for x in m.group(1).split()]
        res["sha256_MBps_16k"] = v[-1] / 1000.0
        res["sha256_MBps_1k"] = v[3] / 1000.0
    return res


def corpus_crypto(corpus, rows, speed):
    """Raw crypto per message: for every signature, SHA-256 over the body and
    the signed header block, plus one verify of its algorithm."""
    exp = {}
    with open(os.path.join(corpus, "expected.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            exp[e["file"]] = e
    total_us = 0.0
    nsig = nrsa = ned = 0
    body_bytes = 0
    sha_us_per_byte = 1.0 / speed["sha256_MBps_16k"]      # us per byte = 1 / (MB/s)
    for r in rows:
        raw = open(os.path.join(corpus, "msgs", r["file"]), "rb").read()
        hdr_end = raw.find(b"\r\n\r\n")
        body = len(raw) - hdr_end - 4
        sigs = re.findall(rb"^DKIM-Signature:.*?a=(rsa|ed25519)-sha256", raw[:hdr_end], re.M | re.S)
        for alg in sigs:
            nsig += 1
            body_bytes += body
            total_us += (body + 1024) * sha_us_per_byte
            if alg == b"rsa":
                nrsa += 1
                total_us += speed["rsa2048_verify_us"]
            else:
                ned += 1
                total_us += speed["ed25519_verify_us"]
    n = len(rows)
    median = sorted(len(open(os.path.join(corpus, "msgs", r["file"]), "rb").read()) for r in rows)[n // 2]
    return {"signatures": nsig, "rsa": nrsa, "ed25519": ned, "hashed_body_bytes": body_bytes,
            "raw_us_per_msg": total_us / n,
            "issue_formula_us": median * sha_us_per_byte + speed["rsa2048_verify_us"],
            "median_size": median}


# ------------------------------------------------------------------ in-process
def inproc(authscan, manifest, zone, work, passes, runs):
    res = []
    for i in range(runs):
        cmd = [authscan, "bench", "--dns-zone", zone, "--warmup", "1", "--repeat", str(passes), manifest]
        if i == 0:
            cmd[2:2] = ["--verdicts", os.path.join(work, "inproc-verdicts.tsv")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("authscan bench failed: %s" % r.stderr[-2000:])
        res.append(json.loads(r.stdout.strip().splitlines()[-1]))
        log("  in-process run %d: %.0f msgs/s, %.1f us CPU/msg" %
            (i + 1, res[-1]["msgs_per_s"], res[-1]["cpu_us_per_msg"]))
    best = sorted(res, key=lambda x: x["cpu_us_per_msg"])[len(res) // 2]
    best["runs_cpu_us"] = [round(x["cpu_us_per_msg"], 1) for x in res]
    return best


# ------------------------------------------------------------------ daemon path vs in-process
def daemon_path(authscan, authscand, manifest, zone, work, passes, duration, warmup,
                workers=(1, 2), levels=(1, 8)):
    """Issue 21: CPU per message of the daemon (/checkv2 over HTTP, wrk,
    master + workers from /proc, user + system) against `authscan bench`
    on the same corpus in one run.  Both answer DNS from the same offline
    zone file (--dns-zone): no resolver process to count or to leave out,
    and the same answers for both.  In-process runs bracket the daemon
    runs (one before, one between, one after); the ratio is to their mean,
    and every run is kept.

    Each level is measured twice: the scans, and the same requests posted
    to /ping, which the worker reads and parses in full and answers
    without a scan ("floor": the HTTP exchange alone, sockets and kernel
    included).  The floor is what no scanner behind this protocol avoids
    on this machine; it is reported beside the ratio, not subtracted from
    it."""
    def one_inproc():
        r = subprocess.run([authscan, "bench", "--dns-zone", zone, "--warmup", "1", "--repeat", str(passes),
                            manifest], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("authscan bench failed: %s" % r.stderr[-2000:])
        x = json.loads(r.stdout.strip().splitlines()[-1])
        log("  in-process: %.1f us CPU/msg" % x["cpu_us_per_msg"])
        return x["cpu_us_per_msg"]

    inp = [one_inproc()]
    rows = []
    for nw in workers:
        d = Daemon(authscand, None, nw, os.path.join(work, "authscand-daemonpath.log"),
                   extra=["--dns-zone", zone]).start()
        try:
            for c in levels:
                if warmup:
                    wrk_finish(wrk_run(d.port, manifest, c, warmup), warmup + 60)
                x = None
                for path in ("/checkv2", "/ping"):
                    wait_quiet()
                    pids = d.pids
                    c0, s0 = cpu_s(pids), cpu_s(pids, "sys")
                    w = wrk_finish(wrk_run(d.port, manifest, c, duration, path=path), duration + 60)
                    c1, s1 = cpu_s(pids), cpu_s(pids, "sys")
                    req = max(1, w["requests"])
                    errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
                    cpu_us = 1e6 * (c1 - c0) / req
                    sys_share = (s1 - s0) / max(1e-9, c1 - c0)
                    if x is None:
                        x = {"workers": nw, "conc": c, "requests": w["requests"],
                             "msgs_per_s": w["requests"] / (w["duration_us"] / 1e6), "errors": errors,
                             "cpu_us_per_msg": cpu_us, "sys_share": sys_share}
                        log("  daemon %d worker(s) c=%d: %.0f msgs/s, %.1f us CPU/msg (%.0f%% system), errors %d" %
                            (nw, c, x["msgs_per_s"], x["cpu_us_per_msg"], 100 * x["sys_share"], errors))
                    else:
                        x.update(floor_us=cpu_us, floor_sys_share=sys_share, floor_errors=errors)
                        log("  the same requests to /ping (no scan): %.1f us CPU/request (%.0f%% system), "
                            "errors %d" % (cpu_us, 100 * sys_share, errors))
                rows.append(x)
        finally:
            d.stop()
        inp.append(one_inproc())
    base = sum(inp) / len(inp)
    for x in rows:
        x["ratio"] = x["cpu_us_per_msg"] / base
        x["floor_ratio"] = x["floor_us"] / base
    return {"inproc_runs_us": [round(v, 1) for v in inp], "inproc_us": base, "daemon": rows,
            "dns": "offline zone file (--dns-zone) for both", "passes": passes, "duration": duration}


def daemon_path_lines(dp):
    L = ["## Daemon path against in-process (issue 21)", "",
         "Same corpus, same DNS source (%s); `authscan bench` (%d passes) runs before, between and after" %
         (dp["dns"], dp["passes"]),
         "the daemon runs: %s us CPU/msg, mean %.1f.  Daemon: /checkv2 over HTTP driven by wrk" %
         (", ".join("%.1f" % v for v in dp["inproc_runs_us"]), dp["inproc_us"]),
         "(keep-alive, %d s per level), CPU of master + workers (user + system) per message answered." %
         dp["duration"], "Target: daemon <= 1.30x in-process.",
         "Floor: the same requests posted to /ping, read and parsed in full and answered without a scan",
         "(the HTTP exchange alone, kernel included), as a share of the in-process cost.", "",
         "| workers | c | msgs/s | errors (scan + floor) | CPU us/msg | system share | vs in-process "
         "| floor us/request | floor system share | floor vs in-process |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in dp["daemon"]:
        L.append("| %d | %d | %.0f | %d | %.1f | %.0f%% | %.2fx | %.1f | %.0f%% | %.2fx |" %
                 (x["workers"], x["conc"], x["msgs_per_s"], x["errors"] + x.get("floor_errors", 0),
                  x["cpu_us_per_msg"],
                  100 * x["sys_share"], x["ratio"], x["floor_us"], 100 * x["floor_sys_share"],
                  x["floor_ratio"]))
    L.append("")
    return L


def callgrind_total(path):
    """The 'totals:' (or 'summary:') line of a callgrind dump: instructions."""
    total = None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
    return total


def daemon_path_ir(authscan, authscand, corpus, rows, manifest, zone, work):
    """The daemon path in instructions per message (callgrind), each side as
    the difference of two runs, so that start-up and the warm-up pass (DNS
    and key caches filled) cancel out: `authscan bench` with one measured
    pass against two; a worker (1 worker, one keep-alive client sending
    the corpus to /checkv2 in order) answering one pass against two."""
    cgdir = os.path.join(work, "daemonir")
    os.makedirs(cgdir, exist_ok=True)
    n = len(rows)

    def inproc_ir(passes):
        out = os.path.join(cgdir, "inproc-%d.out" % passes)
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, authscan, "bench",
                            "--dns-zone", zone, "--warmup", "1", "--repeat", str(passes), manifest],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("authscan bench under callgrind failed: %s" % r.stderr[-2000:])
        return callgrind_total(out)

    def worker_ir(passes):
        name = "worker-%d" % passes
        for f in os.listdir(cgdir):
            if f.startswith(name + "."):
                os.unlink(os.path.join(cgdir, f))
        prefix = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                  "--callgrind-out-file=" + os.path.join(cgdir, name + ".%p")]
        d = Daemon(authscand, None, 1, os.path.join(work, "authscand-daemonir.log"),
                   extra=["--dns-zone", zone], prefix=prefix).start(timeout=180)
        try:
            worker = children(d.proc.pid)[0]
            for _ in range(passes + 1):         # the first pass is the warm-up
                got = scan_all_http(d.port, corpus, rows, jobs=1)
                if len(got) != n or any("error" in v for v in got.values()):
                    raise RuntimeError("daemonir: %d of %d messages answered" % (len(got), n))
        finally:
            d.stop()
        dump = os.path.join(cgdir, "%s.%d" % (name, worker))
        for _ in range(300):
            if os.path.exists(dump) and callgrind_total(dump):
                break
            time.sleep(0.2)
        return callgrind_total(dump)

    i1, i2 = inproc_ir(1), inproc_ir(2)
    log("  in-process: %.0f instructions a message" % ((i2 - i1) / n))
    w1, w2 = worker_ir(1), worker_ir(2)
    log("  worker over /checkv2: %.0f instructions a message" % ((w2 - w1) / n))
    return {"inproc_ir": (i2 - i1) / n, "worker_ir": (w2 - w1) / n, "ratio": (w2 - w1) / (i2 - i1)}


def daemon_path_ir_lines(x):
    return ["### The same in instructions (callgrind)", "",
            "One pass over the corpus after a warm-up pass, each side the difference of a run with two "
            "passes and one with one:",
            "`authscan bench` %.0f instructions a message, one worker answering /checkv2 %.0f: **%.3fx**." %
            (x["inproc_ir"], x["worker_ir"], x["ratio"]), ""]


# ------------------------------------------------------------------ history (Redis)
def redis_memory(authscand, dns, work, n_senders=10000, conc=16):
    """Redis memory per tracked sender: n_senders scans through the daemon,
    each from its own From domain and source network (the worst case: one
    source per domain, so every pair also carries its domain's hash), into
    a fresh private redis-server; then MEMORY USAGE of every key."""
    with test_harness.RedisServer() as r:
        d = Daemon(authscand, dns, 2, os.path.join(work, "authscand-history-mem.log"),
                   ["-s", "redis.servers=%s" % r.address]).start()
        used0 = int(re.search(r"used_memory:(\d+)", r.cmd("INFO", "memory").decode()).group(1))

        def one(i):
            frm = "user@s%d.example" % i
            msg = ("From: %s\r\nTo: rcpt@receiver.test\r\nSubject: m %d\r\n"
                   "Message-ID: <m%d@bench>\r\n\r\nhello\r\n" % (frm, i, i)).encode()
            ip = "10.%d.%d.9" % (i // 256 % 256, i % 256)
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
            c.request("POST", "/checkv2", msg, {"IP": ip, "From": frm, "Helo": "h.test"})
            c.getresponse().read()
            c.close()
        try:
            with concurrent.futures.ThreadPoolExecutor(conc) as ex:
                list(ex.map(one, range(n_senders)))
            want = 3 * n_senders   # domain hash, source hash, source index
            t_end = time.time() + 60
            while r.cmd("DBSIZE") < want and time.time() < t_end:
                time.sleep(0.2)
        finally:
            d.stop()
        nkeys = r.cmd("DBSIZE")
        total = dom = src = idx = 0
        encodings = {}
        cursor = b"0"
        while True:
            cursor, keys = r.cmd("SCAN", cursor, "COUNT", "1000")
            for k in keys:
                m = r.cmd("MEMORY", "USAGE", k, "SAMPLES", "0") or 0
                total += m
                if k.endswith(b"}d"):
                    dom += m
                elif k.endswith(b"}sx"):
                    idx += m
                else:
                    src += m
                e = r.cmd("OBJECT", "ENCODING", k).decode()
                encodings[e] = encodings.get(e, 0) + 1
            if cursor == b"0":
                break
        used1 = int(re.search(r"used_memory:(\d+)", r.cmd("INFO", "memory").decode()).group(1))
    res = {"senders": n_senders, "keys": nkeys, "memory_usage_total": total,
           "per_pair": total / max(1, n_senders), "per_source_key": src / max(1, n_senders),
           "per_domain_key": dom / max(1, n_senders), "per_index_key": idx / max(1, n_senders),
           "used_memory_delta_per_pair":
           (used1 - used0) / max(1, n_senders), "encodings": encodings}
    log("  redis memory: %d keys, %.0f B per (domain, source) pair with its domain hash and "
        "source index (source hash alone %.0f B, index %.0f B), used_memory +%.0f B per pair, "
        "encodings %s" % (nkeys, res["per_pair"], res["per_source_key"], res["per_index_key"],
                          res["used_memory_delta_per_pair"], encodings))
    return res


def history_cpu(authscand, dns, dns_pid, manifest, work, conc, duration, warmup, rounds=3):
    """CPU per message with history off and on, the same corpus and load,
    alternating (off, on, off, on) so drift hits both alike; the Redis
    server's own CPU is reported apart."""
    out = {"off": [], "on": [], "redis_cpu_ms_per_msg": []}
    with test_harness.RedisServer() as r:
        for rnd in range(rounds):
            for mode in ("off", "on"):
                extra = ["-s", "redis.servers=%s" % r.address] if mode == "on" else []
                d = Daemon(authscand, dns, 2, os.path.join(work, "authscand-history.log"),
                           extra).start()
                try:
                    r0 = cpu_s(tree(r.proc.pid))
                    x = load_level(d, dns_pid, manifest, conc, duration, warmup)
                    r1 = cpu_s(tree(r.proc.pid))
                finally:
                    d.stop()
                out[mode].append(x)
                if mode == "on":
                    out["redis_cpu_ms_per_msg"].append(1000 * (r1 - r0) / max(1, x["requests"]))
                log("  history %s: %.0f msgs/s, %.3f ms CPU/msg, p99 %.2f ms, errors %d" %
                    (mode, x["msgs_per_s"], x["cpu_ms_per_msg"], x["p99_ms"], x["errors"]))
        keys = r.cmd("DBSIZE")
    off = statistics.median(x["cpu_ms_per_msg"] for x in out["off"])
    on = statistics.median(x["cpu_ms_per_msg"] for x in out["on"])
    out.update({"conc": conc, "cpu_off_ms": off, "cpu_on_ms": on, "ratio": on / off if off else None,
                "redis_cpu_ms": statistics.median(out["redis_cpu_ms_per_msg"]), "keys": keys})
    log("  history on/off CPU per message: %.3f / %.3f ms = %.3f; redis-server %.3f ms/msg" %
        (on, off, out["ratio"] or 0, out["redis_cpu_ms"]))
    return out


def lua_cost(authscan, manifest, zone, passes, runs=5):
    """CPU per message with no Lua, with one empty hook and with the ten-rule
    site file (bench/lua/), the three interleaved in one run so that they see
    the same machine load."""
    variants = [("none", []),
                ("empty hook", ["-s", "lua.dir=" + os.path.join(HERE, "lua", "empty")]),
                ("ten rules", ["-s", "lua.dir=" + os.path.join(HERE, "lua", "ten")])]
    res = {name: [] for name, _ in variants}
    for i in range(runs):
        for name, extra in variants:
            cmd = [authscan, "bench", "--dns-zone", zone] + extra + \
                ["--warmup", "1", "--repeat", str(passes), manifest]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("authscan bench (%s) failed: %s" % (name, r.stderr[-2000:]))
            res[name].append(json.loads(r.stdout.strip().splitlines()[-1])["cpu_us_per_msg"])
        log("  lua run %d: %s" % (i + 1, ", ".join("%s %.1f us" % (k, v[-1]) for k, v in res.items())))
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
    return {"runs": {k: [round(x, 1) for x in v] for k, v in res.items()}, "median": med,
            "ten_overhead_pct": 100.0 * (med["ten rules"] / med["none"] - 1),
            "empty_hook_us": med["empty hook"] - med["none"]}


# ------------------------------------------------------------------ correctness
SPF_SYMS = {"R_SPF_ALLOW": "pass", "R_SPF_FAIL": "fail", "R_SPF_SOFTFAIL": "softfail",
            "R_SPF_NEUTRAL": "neutral", "R_SPF_NA": "none", "R_SPF_PERMFAIL": "permerror",
            "R_SPF_DNSFAIL": "temperror"}
DMARC_SYMS = {"DMARC_POLICY_ALLOW": ("pass", None), "DMARC_POLICY_REJECT": ("fail", "reject"),
              "DMARC_POLICY_QUARANTINE": ("fail", "quarantine"),
              "DMARC_POLICY_SOFTFAIL": ("fail", "none"), "DMARC_NA": ("none", "-"),
              "DMARC_BAD_POLICY": ("none", "-"), "DMARC_DNSFAIL": ("temperror", "-")}


def verdicts_of(reply):
    syms = reply.get("symbols", {})
    spf = next((v for k, v in SPF_SYMS.items() if k in syms), "absent")
    trace = syms.get("DKIM_TRACE", {}).get("options", [])
    dkim = sorted(set(o.lower() for o in trace))
    dm = next((v for k, v in DMARC_SYMS.items() if k in syms), None)
    return spf, dkim, dm, syms


def compare(rows, replies, have_dmarc):
    per = {"spf": 0, "dkim": 0, "dmarc": 0, "all": 0}
    dis = []
    for r in rows:
        rep = replies.get(r["file"])
        if rep is None:
            dis.append((r, "reply", "-", "no reply", ""))
            continue
        spf, dkim, dm, syms = verdicts_of(rep)
        ok_all = True
        if spf == r["spf"]:
            per["spf"] += 1
        else:
            ok_all = False
            dis.append((r, "spf", r["spf"], spf, "; ".join(syms.get(k, {}).get("options", [""])[0]
                                                             for k in SPF_SYMS if k in syms)))
        if dkim == r["dkim"]:
            per["dkim"] += 1
        else:
            ok_all = False
            dis.append((r, "dkim", ",".join(r["dkim"]) or "none", ",".join(dkim) or "none", ""))
        if have_dmarc:
            want = (r["dmarc"], r["policy"] if r["dmarc"] == "fail" else None if r["dmarc"] == "pass" else "-")
            got = dm or ("absent", "-")
            k = next((k for k in DMARC_SYMS if k in syms), "")
            opts = syms.get(k, {}).get("options", [])
            if got == want:
                per["dmarc"] += 1
            elif (want == ("fail", "reject") and got == ("fail", "quarantine") and "mailing_list" in opts):
                # the plugin's documented mailing-list safeguard (docs/dmarc.md):
                # p=reject applied as quarantine for list traffic; the policy agrees
                per["dmarc"] += 1
                per["dmarc_list_downgrade"] = per.get("dmarc_list_downgrade", 0) + 1
            else:
                ok_all = False
                k = next((k for k in DMARC_SYMS if k in syms), "")
                dis.append((r, "dmarc", "%s/%s" % (r["dmarc"], r["policy"]), "%s/%s" % got,
                            ",".join(syms.get(k, {}).get("options", []))))
        per["all"] += ok_all
    n = len(rows)
    rates = {k: 100.0 * v / n for k, v in per.items() if k != "dmarc_list_downgrade"}
    rates["dmarc_list_downgrade"] = per.get("dmarc_list_downgrade", 0)
    if not have_dmarc:
        rates["dmarc"] = None
    return rates, dis


def scan_all_http(port, corpus, rows, jobs=8):
    local = threading.local()

    def one(r):
        if not hasattr(local, "c"):
            local.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = open(os.path.join(corpus, "msgs", r["file"]), "rb").read()
        h = {"IP": r["ip"], "Helo": r["helo"], "From": r["mail_from"], "Rcpt": r["rcpt"],
             "Queue-Id": r["queue_id"]}
        if r["hostname"] not in ("", "unknown"):
            h["Hostname"] = r["hostname"]
        for attempt in range(2):
            try:
                local.c.request("POST", "/checkv2", body=body, headers=h)
                resp = local.c.getresponse()
                data = resp.read()
                return r["file"], json.loads(data) if resp.status == 200 else {"error": resp.status}
            except (OSError, http.client.HTTPException):
                local.c.close()
                local.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        return r["file"], None
    out = {}
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        for f, rep in ex.map(one, rows):
            if rep is not None:
                out[f] = rep
    return out


# ------------------------------------------------------------------ load
def wrk_run(port, manifest, conc, duration, stop_after=0, pace_ms=0.0, timeout=10, path="/checkv2"):
    cmd = ["wrk", "-t1", "-c%d" % conc, "-d%ds" % duration, "--latency", "--timeout", "%ds" % timeout,
           "-s", os.path.join(HERE, "checkv2.lua"), "http://127.0.0.1:%d" % port, "--",
           manifest, str(stop_after)]
    env = dict(os.environ, AUTHSCAN_PACE_MS="%g" % pace_ms, AUTHSCAN_PATH=path)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return p


def wrk_finish(p, limit_s):
    out, _ = p.communicate(timeout=limit_s)
    return wrk_finish_text(out)


def wrk_finish_text(out):
    m = re.search(r"^AUTHSCAN_WRK (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError("wrk failed:\n" + out[-3000:])
    return json.loads(m.group(1))


def wait_quiet(max_s=30, idle=0.85):
    t_end = time.time() + max_s
    while True:
        a = machine_cpu()
        time.sleep(1)
        b = machine_cpu()
        frac = (b[1] - a[1]) / max(1, b[0] - a[0])
        if frac >= idle or time.time() > t_end:
            return frac


def load_level(d, dns_pid, manifest, conc, duration, warmup, pace_ms=0.0):
    if warmup:
        wrk_finish(wrk_run(d.port, manifest, conc, warmup, pace_ms=pace_ms), warmup + 60)
    idle = wait_quiet()
    pids = d.pids
    ms = MemSampler(pids)
    dns_pids = tree(dns_pid)
    c0, n0, m0, s0 = cpu_s(pids), cpu_s(dns_pids), machine_cpu(), cpu_s(pids, "sys")
    ru0 = os.times()
    wpids = [p for p in pids if p != d.proc.pid]
    split0 = {p: cpu_s([p]) for p in wpids}
    ms.start()
    p = wrk_run(d.port, manifest, conc, duration, pace_ms=pace_ms)
    w = wrk_finish(p, duration + 60)
    ms.stop()
    c1, n1, m1, s1 = cpu_s(pids), cpu_s(dns_pids), machine_cpu(), cpu_s(pids, "sys")
    ru1 = os.times()
    # how the load spread over the workers: each worker's share of the CPU
    split1 = {p: cpu_s([p]) for p in wpids}
    busy = sum(split1[p] - split0[p] for p in wpids) or 1e-9
    split = sorted((round(100 * (split1[p] - split0[p]) / busy) for p in wpids), reverse=True)
    req = max(1, w["requests"])
    secs = w["duration_us"] / 1e6
    tot = m1[0] - m0[0]
    errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
    return {"conc": conc, "pace_ms": pace_ms, "requests": w["requests"], "seconds": round(secs, 2),
            "msgs_per_s": w["requests"] / secs, "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
            "p999_ms": w["p999_us"] / 1000, "max_ms": w["max_us"] / 1000, "errors": errors,
            "error_detail": {k: w[k] for k in ("connect", "read", "write", "status", "timeout")},
            "cpu_ms_per_msg": 1000 * (c1 - c0) / req, "sys_share": (s1 - s0) / max(1e-9, c1 - c0), "dns_cpu_ms_per_msg": 1000 * (n1 - n0) / req,
            "loadgen_cpu_ms_per_msg": 1000 * ((ru1[2] + ru1[3]) - (ru0[2] + ru0[3])) / req,
            "machine_busy": 1 - (m1[1] - m0[1]) / max(1, tot), "steal": (m1[2] - m0[2]) / max(1, tot),
            "idle_before": idle, "peak_rss_mb": ms.peak_rss / 1024, "peak_pss_mb": ms.peak_pss / 1024,
            "peak_worker_rss_mb": ms.peak_worker_rss / 1024,
            "worker_split": split}


def worker_scanned(port, nworkers, tries=40):
    """{pid: scans} from /stat; each connection lands on one worker, so ask
    on fresh connections until every worker answered (bounded)."""
    out = {}
    for _ in range(tries):
        try:
            st, body = http_get(port, "/stat")
            j = json.loads(body)
            out[j["pid"]] = j["scanned"]
        except (OSError, ValueError, KeyError):
            pass
        if len(out) >= nworkers:
            break
    return out


def soak(authscand, dns, manifest, work, n_each, conc=16, limit_s=900, workers=1):
    # One worker by default: it then scans every message, so "RSS per worker
    # after 100,000 / 200,000 messages" is measured on a worker that really
    # scanned that many (with 2 workers, a burst of keep-alive connections
    # can all land on one of them: see docs/performance.md).
    # With everything on (issue 21): history and report counters on a
    # private redis-server, the ten-rule Lua file, as a site runs it.
    log("soak: fresh authscand (%d worker, history + report counters + ten Lua rules), "
        "%d + %d messages at c=%d" % (workers, n_each, n_each, conc))
    redis = test_harness.RedisServer().start()
    d = Daemon(authscand, dns, workers, os.path.join(work, "authscand-soak.log"),
               everything_on(redis.address)).start()
    out = {"points": [], "config": "history + report counters (private redis-server) + "
                                   "bench/lua/ten"}
    try:
        workers = children(d.proc.pid)
        out["start"] = {str(p): mem_kb(p) for p in workers}
        total = 0
        for step in (1, 2):
            t0 = time.time()
            p = wrk_run(d.port, manifest, conc, limit_s, stop_after=n_each)
            buf = []
            for line in p.stdout:            # wrk ends at limit_s at the latest
                buf.append(line)
                if line.startswith("AUTHSCAN_WRK_REACHED"):
                    p.send_signal(signal.SIGINT)
                    break
            rest, _ = p.communicate(timeout=60)
            w = wrk_finish_text("".join(buf) + rest)
            total += w["requests"]
            errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
            pt = {"messages": total, "seconds": round(time.time() - t0, 1), "errors": errors,
                  "workers": []}
            for p in workers:
                rss, hwm, pss = mem_kb(p)
                pt["workers"].append({"pid": p, "rss_mb": rss / 1024, "hwm_mb": hwm / 1024, "pss_mb": pss / 1024})
            pt["master_rss_mb"] = mem_kb(d.proc.pid)[0] / 1024
            scanned = worker_scanned(d.port, len(workers))
            for wk in pt["workers"]:
                wk["scanned"] = scanned.get(wk["pid"])
            out["points"].append(pt)
            log("  after %d messages: worker RSS %s MB" %
                (total, ", ".join("%.1f" % x["rss_mb"] for x in pt["workers"])))
        out["restarted_workers"] = sorted(set(children(d.proc.pid)) - set(workers))
        st, body = http_get(d.port, "/stat", 2)
        out["redis"] = json.loads(body).get("redis") if st == 200 else None
    finally:
        d.stop()
        redis.cleanup()
    return out


# ------------------------------------------------------------------ callgrind
def profile(authscan, manifest, zone, work, top=40):
    if not shutil.which("valgrind"):
        return None
    log("callgrind: one in-process pass over the corpus (a minute or two)")
    outf = os.path.join(work, "callgrind.out")
    subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + outf,
                    authscan, "bench", "--dns-zone", zone, "--warmup", "1", "--repeat", "1", manifest],
                   check=True, capture_output=True, text=True, timeout=1800)
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", outf],
                         check=True, capture_output=True, text=True).stdout
    with open(os.path.join(work, "callgrind-inclusive.txt"), "w") as f:
        f.write(ann)
    ann_self = subprocess.run(["callgrind_annotate", "--inclusive=no", outf],
                              check=True, capture_output=True, text=True).stdout
    with open(os.path.join(work, "callgrind-self.txt"), "w") as f:
        f.write(ann_self)
    return parse_callgrind(ann, top), parse_callgrind(ann_self, top)


def perf_profile(authscan, manifest, zone, work):
    """Real CPU time by library and symbol (perf, cpu-clock sampling): the
    instruction counts of callgrind overstate `rep stos`-style memset and
    understate memory-bound code, so both are reported."""
    if not shutil.which("perf"):
        return None
    log("perf: cpu-clock samples over 10 in-process passes")
    data = os.path.join(work, "perf.data")
    r = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-o", data, authscan, "bench",
                        "--dns-zone", zone, "--warmup", "1", "--repeat", "10", manifest],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        log("  perf record failed: %s" % r.stderr.strip()[-300:])
        return None
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio",
                          "-g", "none"], capture_output=True, text=True).stdout
    with open(os.path.join(work, "perf-report.txt"), "w") as f:
        f.write(rep)
    cats, syms = {}, []
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        syms.append((pct, dso, sym))
        if dso == "libc.so.6":
            if re.search(r"printf|xsputn|strchrnul|_IO_", sym):
                k = "libc: printf family"
            elif re.search(r"malloc|free|_int_|consolidate|realloc|calloc", sym):
                k = "libc: malloc/free"
            elif re.search(r"memset", sym):
                k = "libc: memset"
            elif re.search(r"memmove|memcpy", sym):
                k = "libc: memcpy/memmove"
            else:
                k = "libc: other (str*, mem*)"
        else:
            k = dso
        cats[k] = cats.get(k, 0.0) + pct
    return {"categories": sorted(cats.items(), key=lambda kv: -kv[1]), "symbols": syms[:25]}


def parse_callgrind(text, top):
    """Top functions from callgrind_annotate output: call-graph lines (=>, <)
    are skipped, and one function listed under two file names is kept once."""
    total = None
    best = {}
    for line in text.splitlines():
        if line.startswith("-- Auto-annotated source") or line.startswith("-- User-annotated source"):
            break                              # the per-line source listings follow
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        if "=>" in line or re.match(r"^\s*[\d,]+\s+\(\s*[\d.]+%\)\s+[<*]", line):
            continue
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)\s*$", line)
        if not (m and total):
            continue
        ir = int(m.group(1).replace(",", ""))
        fn = m.group(2)
        if "events annotated" in fn:
            continue
        obj = re.search(r"\[([^\]]*)\]\s*$", fn)
        fn = re.sub(r"\s*\[[^\]]*\]\s*$", "", fn)
        file_, _, func = fn.rpartition(":")
        if func.startswith("0x") and obj:
            func = "%s (%s)" % (func, os.path.basename(obj.group(1)))
        elif file_ and file_ != "???":
            func = "%s:%s" % (re.sub(r"^.*?/(core|plugins)/", r"\1/", file_).lstrip("./"), func)
        elif obj:
            func = "%s (%s)" % (func, os.path.basename(obj.group(1)))
        best[func] = max(best.get(func, 0), ir)
    rows = sorted(((ir, fn) for fn, ir in best.items()), reverse=True)
    return {"total": total, "rows": rows[:top]}


# ------------------------------------------------------------------ peers (shared testbed)
PEER_SETUPS = {
    "everything": "history + report counters + ten Lua rules",
    "history": "history on Redis only (issue 13's figure)",
}


def everything_on(redis_addr, setup="everything"):
    """authscand as a site runs it (issue 21): per-sender history and DMARC
    report counters on Redis, and the ten-rule site Lua file, against the
    testbed's rspamd with its Redis-backed DMARC reporting.  setup
    "history": the per-sender history alone (issue 13: "still at most 1/10
    of rspamd's with its Redis-backed modules on")."""
    if setup == "history":
        return ["-s", "redis.servers=%s" % redis_addr]
    return ["-s", "redis.servers=%s" % redis_addr,
            "-s", "report.enabled=yes", "-s", "report.org_name=Bench Receiver",
            "-s", "report.email=dmarc-reports@receiver.test", "-s", "report.domain=receiver.test",
            "-s", "lua.dir=" + os.path.join(HERE, "lua", "ten")]


def peers(work, authscand, n_msgs, duration, rounds=5, conc="8", setup="everything"):
    """rspamd and authscand (everything on) taking turns, `rounds` times,
    on the testbed's corpus and DNS; then spamd once.  Every load result
    carries its round, so each round gives its own ratio."""
    tb = os.path.join(os.path.dirname(ROOT), "shared", "bench-rspamd")
    if not os.path.exists(os.path.join(tb, "run.sh")):
        tb = "/work/shared/bench-rspamd"
    env = dict(os.environ, BENCH_DIR=os.path.join(work, "peers"), N_MSGS=str(n_msgs),
               DURATION=str(duration), KEEP_DNS="1", WORKERS="2", CONCURRENCY=conc)
    env.pop("DNS_PORT", None)
    os.makedirs(env["BENCH_DIR"], exist_ok=True)
    res_dir = os.path.join(env["BENCH_DIR"], "results")
    logp = os.path.join(work, "peers.log")
    out = {"rounds": rounds, "concurrency": conc, "load": [], "checks": {}, "files": [],
           "setup": setup}

    def collect(before, rnd):
        new = sorted(set(os.listdir(res_dir)) - before) if os.path.isdir(res_dir) else []
        for fn in new:
            path = os.path.join(res_dir, fn)
            out["files"].append(path)
            if fn.endswith(".jsonl"):
                with open(path) as f:
                    for line in f:
                        try:
                            j = json.loads(line)
                        except ValueError:
                            continue
                        j["round"] = rnd
                        out["load"].append(j)
            elif fn.endswith(".check.txt"):
                out["checks"][fn] = open(path).read()[-3000:]

    def listing():
        return set(os.listdir(res_dir)) if os.path.isdir(res_dir) else set()

    with open(logp, "a") as lf, test_harness.RedisServer() as redis:
        for rnd in range(rounds):
            # the verdict agreement check once, in the first round
            check = "1" if rnd == 0 else "0"
            log("peers round %d/%d: testbed rspamd (2 workers, c=%s)" % (rnd + 1, rounds, conc))
            for attempt in (1, 2):
                # the testbed's first nsd start (after its corpus is made)
                # can miss its own start-up wait on a loaded machine: retry
                before, n0 = listing(), len(out["load"])
                subprocess.run([os.path.join(tb, "run.sh"), "rspamd"], env=dict(env, CHECK=check),
                               stdout=lf, stderr=subprocess.STDOUT, timeout=1800)
                collect(before, rnd)
                if len(out["load"]) > n0:
                    break
                log("peers: the rspamd run gave no result (see %s); %s" % (
                    logp, "trying again" if attempt == 1 else "going on without it"))
            dns_port = open(os.path.join(env["BENCH_DIR"], "dns", "port")).read().strip()
            log("peers round %d/%d: authscand (2 workers, %s, c=%s)" % (
                rnd + 1, rounds, PEER_SETUPS[setup], conc))
            d = Daemon(authscand, "127.0.0.1:" + dns_port, 2,
                       os.path.join(work, "authscand-peers.log"),
                       everything_on(redis.address, setup)).start()
            before = listing()
            try:
                subprocess.run([os.path.join(tb, "run.sh"), "http://127.0.0.1:%d" % d.port],
                               env=dict(env, LABEL="authscand-w2-all-on", CHECK=check,
                                        TARGET_PIDS=",".join(str(p) for p in d.pids)),
                               stdout=lf, stderr=subprocess.STDOUT, timeout=1800)
                st, body = http_get(d.port, "/stat", 2)
                if st == 200:
                    j = json.loads(body)
                    out.setdefault("redis_stat", []).append(j.get("redis", {}))
            finally:
                d.stop()
            collect(before, rnd)
        out["redis_keys"] = redis.cmd("DBSIZE")
        if shutil.which("spamd"):
            log("peers: testbed SpamAssassin spamd (2 children, once)")
            before = listing()
            subprocess.run([os.path.join(tb, "run.sh"), "spamd"],
                           env=dict(env, KEEP_DNS="0", CONCURRENCY="1,2,8", CHECK="0"),
                           stdout=lf, stderr=subprocess.STDOUT, timeout=1800)
            collect(before, None)
        subprocess.run([os.path.join(tb, "dns", "stop.sh")], env=env, stdout=lf, stderr=subprocess.STDOUT)
    return out


# ------------------------------------------------------------------ report
def fmt(x, nd=2):
    return "-" if x is None else ("%.*f" % (nd, x))


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else "?"
    except OSError:
        pass
    mem = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024 // 1024
    return "%d vCPU %s, %d GB RAM, Linux %s" % (os.cpu_count(), cpu, mem, os.uname().release)


def report(R):
    L = []
    a = L.append
    a("# authscan benchmark results, %s" % R["date"])
    a("")
    a("Machine: %s. Commit %s. Corpus: %s messages, seed %s, median %.1f KB, %d%% IPv6; "
      "plugins: %s." % (R["machine"], R["commit"], R["corpus"]["messages"], R["corpus"]["seed"],
                        R["corpus"]["size_median"] / 1000, round(100 * R["corpus"]["ipv6_share"]),
                        ", ".join(R["plugins"])))
    a("Command: `%s`." % R["command"])
    a("")
    rs = R.get("rspamd_cpu_ms")
    if "inproc" in R:
        ip = R["inproc"]
        a("## In-process (`authscan bench`, offline zone, one core)")
        a("")
        a("| msgs/s | CPU µs/msg (%s of %d runs: %s) | wall µs/msg | max RSS MB |" %
          ("the median crypto pair's" if "crypto_pairs" in R else "median", len(ip["runs_cpu_us"]),
           ", ".join(str(x) for x in ip["runs_cpu_us"])))
        a("|---|---|---|---|")
        a("| %.0f | %.1f | %.1f | %.1f |" % (ip["msgs_per_s"], ip["cpu_us_per_msg"], ip["wall_us_per_msg"],
                                           ip["maxrss_kb"] / 1024))
        a("")
    if "crypto" in R:
        c, s = R["crypto"], R["speed"]
        a("## Raw crypto (`openssl speed -seconds 2 rsa2048 ed25519 sha256`, %s)" % s.get("version", ""))
        a("")
        a("rsa2048 verify %.1f µs, ed25519 verify %.1f µs, sha256 %.0f MB/s (16 KB blocks)." %
          (s["rsa2048_verify_us"], s["ed25519_verify_us"], s["sha256_MBps_16k"]))
        a("Corpus: %d signatures (%d rsa, %d ed25519) over %d messages; SHA-256 of body + 1 KB of "
          "headers per signature plus one verify each = **%.1f µs of raw crypto per message** (mean). "
          "The issue's formula (SHA-256 of a median %.1f KB message + one rsa2048 verify) = %.1f µs." %
          (c["signatures"], c["rsa"], c["ed25519"], R["corpus"]["messages"], c["raw_us_per_msg"],
           c["median_size"] / 1000, c["issue_formula_us"]))
        if "crypto_pairs" in R:
            a("In-process CPU / raw crypto, 3 pairs each taken back to back (openssl speed, then "
              "`authscan bench`): %s; **median %.2f×** (target ≤ 3×).  The figures above are the "
              "median pair's." % (", ".join("%.1f / %.1f = %.2f×" % (x["inproc_us"], x["raw_us"], x["ratio"])
                                            for x in R["crypto_pairs"]),
                                  sorted(x["ratio"] for x in R["crypto_pairs"])[1]))
        elif "inproc" in R:
            a("In-process CPU / raw crypto = %.1f / %.1f = **%.2f×** (target ≤ 3×)." %
              (R["inproc"]["cpu_us_per_msg"], c["raw_us_per_msg"], R["inproc"]["cpu_us_per_msg"] / c["raw_us_per_msg"]))
        a("")
    if "check" in R:
        ck = R["check"]
        a("## Verdict agreement with the corpus expectations")
        a("")
        a("| path | SPF | DKIM | DMARC | all |")
        a("|---|---|---|---|---|")
        for k in ("daemon", "inproc"):
            if k in ck:
                r = ck[k]["rates"]
                a("| %s | %s %% | %s %% | %s %% | %s %% |" % (
                    "authscand over HTTP + nsd" if k == "daemon" else "authscan bench, offline zone",
                    fmt(r["spf"], 1), fmt(r["dkim"], 1), fmt(r["dmarc"], 1), fmt(r["all"], 1)))
        a("")
        nl = ck["daemon"]["rates"].get("dmarc_list_downgrade", 0)
        if nl:
            a("DMARC counts %d mailing-list messages as agreeing: the policy is reject as expected, and "
              "the dmarc plugin applies it as quarantine (symbol option `mailing_list`, its documented "
              "safeguard for list traffic)." % nl)
            a("")
        dis = ck["daemon"]["disagreements"]
        if dis:
            a("Disagreements (daemon; %d, grouped by field, scenario, expected and got):" % len(dis))
            a("")
            a("| field | scenario | expected | got | n | example | detail |")
            a("|---|---|---|---|---|---|---|")
            groups = {}
            for row in dis:
                k = (row["field"], row["scenario"], row["expected"], row["got"])
                groups.setdefault(k, []).append(row)
            for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:40]:
                a("| %s | %s | %s | %s | %d | %s | %s |" % (k[0], k[1], k[2], k[3], len(v), v[0]["file"],
                                                            v[0]["detail"][:80].replace("|", "/")))
            a("")
    if "load" in R:
        a("## Daemon under load (authscand, 2 workers, wrk -t1, closed loop; nsd for DNS)")
        a("")
        a("| conc | msgs/s | p50 ms | p99 ms | p99.9 ms | errors | scanner CPU ms/msg (kernel share) | vs rspamd | "
          "nsd CPU ms/msg | wrk CPU ms/msg | machine busy | peak RSS MB (PSS) | peak worker RSS MB | CPU split over workers % |")
        a("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for x in R["load"]:
            label = "%d" % x["conc"] + (" paced, %.0f/s offered (%.0f%%)" % (x["offered"], 100 * x["offered_frac"])
                                        if x["pace_ms"] else "")
            a("| %s | %.0f | %.2f | %.2f | %.2f | %d | %.3f (%s) | %s | %.3f | %.3f | %.0f%% | %.1f (%.1f) | %.1f | %s |" % (
                label, x["msgs_per_s"], x["p50_ms"], x["p99_ms"], x["p999_ms"], x["errors"], x["cpu_ms_per_msg"],
                ("%.0f%%" % (100 * x["sys_share"])) if "sys_share" in x else "-",
                ("1/%.0f" % (rs / x["cpu_ms_per_msg"])) if rs else "-", x["dns_cpu_ms_per_msg"],
                x["loadgen_cpu_ms_per_msg"], 100 * x["machine_busy"], x["peak_rss_mb"], x["peak_pss_mb"],
                x["peak_worker_rss_mb"], " / ".join(str(v) for v in x.get("worker_split", [])) or "-"))
        a("")
        if rs:
            a("rspamd reference: %.2f ms CPU/msg (%s)." % (rs, R["rspamd_cpu_source"]))
            a("")
    if "report_counters" in R or "report_generation" in R:
        L.extend(report_bench.markdown({"counters": R.get("report_counters"),
                                        "generation": R.get("report_generation")}))
    if "soak" in R:
        a("## Memory soak (fresh authscand, 1 worker that scans every message, c=16, corpus cycled)")
        a("")
        if R["soak"].get("config"):
            a("Everything on: %s.  Redis at the end: %s" % (R["soak"]["config"],
                                                         json.dumps(R["soak"].get("redis"))))
            a("")
        a("| messages | seconds | errors | scans per worker | worker RSS MB | worker PSS MB | master RSS MB |")
        a("|---|---|---|---|---|---|---|")
        for p in R["soak"]["points"]:
            a("| %d | %.0f | %d | %s | %s | %s | %.1f |" % (
                p["messages"], p["seconds"], p["errors"],
                ", ".join(str(w.get("scanned", "?")) for w in p["workers"]),
                ", ".join("%.1f" % w["rss_mb"] for w in p["workers"]),
                ", ".join("%.1f" % w["pss_mb"] for w in p["workers"]), p["master_rss_mb"]))
        a("")
    if "history" in R:
        h = R["history"]
        a("## History on versus off (Redis, same run, c=%d, alternating off/on)" % h["conc"])
        a("")
        a("| history | msgs/s | CPU ms/msg | p99 ms | errors |")
        a("|---|---|---|---|---|")
        for mode in ("off", "on"):
            for x in h[mode]:
                a("| %s | %.0f | %.3f | %.2f | %d |" % (mode, x["msgs_per_s"], x["cpu_ms_per_msg"],
                                                     x["p99_ms"], x["errors"]))
        a("")
        a("Median CPU per message: %.3f ms on, %.3f ms off (×%.3f); redis-server itself %.3f ms/msg." % (
            h["cpu_on_ms"], h["cpu_off_ms"], h["ratio"] or 0, h["redis_cpu_ms"]))
        m = h.get("memory")
        if m:
            a("")
            a("Redis memory for %d senders (one source each, so every pair carries its domain's hash "
              "and source index; MEMORY USAGE summed over %d keys): **%.0f bytes per (domain, source) "
              "pair**, of which the source hash %.0f, the domain hash %.0f and the index %.0f; "
              "**used_memory grew %.0f bytes per pair** (key, dict and expiry entries included); "
              "encodings %s." % (m["senders"], m["keys"], m["per_pair"], m["per_source_key"],
                                 m["per_domain_key"], m.get("per_index_key", 0),
                                 m["used_memory_delta_per_pair"], m["encodings"]))
    if R.get("lua"):
        lu = R["lua"]
        a("## Lua rules (CPU per message, in-process, medians of 5 interleaved runs)")
        a("")
        a("| Lua loaded | µs/msg | runs |")
        a("|---|---|---|")
        for k in ("none", "empty hook", "ten rules"):
            a("| %s | %.1f | %s |" % (k, lu["median"][k], ", ".join("%.1f" % x for x in lu["runs"][k])))
        a("")
        a("Ten rules cost %+.1f %% CPU per message (target: at most +10 %%); one empty hook "
          "costs %.2f µs per message." % (lu["ten_overhead_pct"], lu["empty_hook_us"]))
        a("")
    if R.get("perf"):
        per = R.get("inproc", {}).get("cpu_us_per_msg")
        a("## Where the in-process CPU time goes (perf, cpu-clock samples, self time by library)")
        a("")
        a("| part | share | µs/msg |")
        a("|---|---|---|")
        for k, v in R["perf"]["categories"]:
            if v >= 0.5:
                a("| %s | %.1f %% | %s |" % (k, v, ("%.1f" % (v * per / 100)) if per else "-"))
        a("")
    if R.get("profile"):
        inc, slf = R["profile"]
        a("## Callgrind (one in-process pass + warm-up; inclusive Ir, share of the program total %s)" %
          "{:,}".format(inc["total"]))
        a("")
        a("| inclusive Ir | % | function |")
        a("|---|---|---|")
        skip = ("ld-linux", "(below main)", "libc_start", "event_base_", "libevent-2.1.so")
        for ir, fn in [r for r in inc["rows"] if not any(k in r[1] for k in skip)][:25]:
            a("| %s | %.1f | `%s` |" % ("{:,}".format(ir), 100.0 * ir / inc["total"], fn))
        a("")
        a("Top self cost:")
        a("")
        a("| self Ir | % | function |")
        a("|---|---|---|")
        for ir, fn in slf["rows"][:15]:
            a("| %s | %.1f | `%s` |" % ("{:,}".format(ir), 100.0 * ir / slf["total"], fn))
        a("")
    if "peers" in R:
        a("## Side by side on the shared testbed's corpus (`../shared/bench-rspamd/run.sh`, same machine, back to back)")
        a("")
        pr = R["peers"]
        a(("authscand with everything on (history and DMARC report counters on a private "
           "redis-server, the ten-rule site Lua file bench/lua/ten)" if pr.get("setup", "everything")
           == "everything" else "authscand with per-sender history on a private redis-server "
           "(no report counters, no Lua)") + "; rspamd as the testbed "
          "configures it (Redis-backed DMARC reporting); %s rounds of rspamd then authscand, "
          "each ratio against the rspamd run of its own round." % pr.get("rounds", 1))
        a("")
        for conc, rs in sorted(pr.get("ratios", {}).items(), key=lambda kv: int(kv[0])):
            a("- c=%s: rspamd/authscand CPU per message, every round: %s; **median %.1f** "
              "(min %.1f, max %.1f)" % (conc, ", ".join("%.1f" % x for x in rs),
                                       statistics.median(rs), min(rs), max(rs)))
        if pr.get("redis_stat"):
            a("- authscand's Redis in the last round: %s; %s keys at the end" % (
                json.dumps(pr["redis_stat"][-1]), pr.get("redis_keys")))
        a("")
        a("| round | target | workers | conc | msg/s | p50 ms | p99 ms | scanner CPU ms/msg | ratio vs rspamd | RSS MB (PSS) | errors |")
        a("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in pr.get("table", []):
            a("| %s | %s | %s | %s | %.0f | %.2f | %.2f | %.3f | %s | %.0f (%.0f) | %s |" % (
                "-" if x["round"] is None else x["round"] + 1, x["label"], x["workers"], x["conc"],
                x["msgs_per_s"], x["p50_ms"], x["p99_ms"], x["cpu_ms"], x["ratio"], x["rss_mb"],
                x["pss_mb"], x["errors"]))
        a("")
        for fn, txt in sorted(R["peers"].get("checks", {}).items()):
            a("<details><summary>testbed verdict check %s</summary>" % fn)
            a("")
            a("```")
            a(txt.strip()[-1500:])
            a("```")
            a("</details>")
            a("")
    if "targets" in R:
        a("## Targets")
        a("")
        a("| target | measured | met |")
        a("|---|---|---|")
        for t in R["targets"]:
            a("| %s | %s | %s |" % tuple(t))
        a("")
    if R.get("daemonpath"):
        L.extend(daemon_path_lines(R["daemonpath"]))
    if R.get("daemonir"):
        L.extend(daemon_path_ir_lines(R["daemonir"]))
    if R.get("mta"):
        a("")
        L.extend(mta_mod.report_lines(R["mta"]))
    return "\n".join(L) + "\n"


def compute_targets(R):
    T = []
    rs = R["rspamd_cpu_ms"]
    if "load" in R:
        sat = [x for x in R["load"] if not x["pace_ms"]]
        worst = max(x["cpu_ms_per_msg"] for x in sat)
        T.append(("scanner CPU/msg, our corpus, ≤ 1/10 of rspamd's (%.2f ms)" % rs,
                  "%.3f ms worst level = 1/%.0f" % (worst, rs / worst), "yes" if worst <= rs / 10 else "no"))
        for x in [x for x in R["load"] if x["pace_ms"]]:
            T.append(("p99 ≤ 5 ms at c=64 below saturation (%.0f%% of the best closed-loop rate)" % (100 * x["offered_frac"]),
                      "%.2f ms at %.0f msgs/s offered" % (x["p99_ms"], x["offered"]),
                      "yes" if x["p99_ms"] <= 5 else "no"))
        c512 = [x for x in sat if x["conc"] == 512]
        if c512:
            T.append(("no errors at c=512", "%d errors in %d requests" % (c512[0]["errors"], c512[0]["requests"]),
                      "yes" if c512[0]["errors"] == 0 else "no"))
    for conc, rs in sorted(R.get("peers", {}).get("ratios", {}).items(), key=lambda kv: int(kv[0])):
        med = statistics.median(rs)
        T.append(("%s: scanner CPU/msg ≤ 1/10 of rspamd's, testbed corpus, median of "
                  "%d alternating rounds, c=%s" % (
                      "everything on" if R["peers"].get("setup", "everything") == "everything"
                      else "history on", len(rs), conc),
                  "1/%.1f (rounds: %s)" % (med, ", ".join("%.1f" % x for x in rs)),
                  "yes" if med >= 10 else "no"))
    if "inproc" in R and "crypto" in R:
        ratio = R["inproc"]["cpu_us_per_msg"] / R["crypto"]["raw_us_per_msg"]
        if "crypto_pairs" in R:
            rs = [x["ratio"] for x in R["crypto_pairs"]]
            T.append(("in-process ≤ 3× raw crypto (median of 3 back-to-back pairs)",
                      "%.2f× (pairs: %s)" % (ratio, ", ".join("%.2f" % x for x in rs)),
                      "yes" if ratio <= 3 else "no"))
        else:
            T.append(("in-process ≤ 3× raw crypto", "%.2f×" % ratio, "yes" if ratio <= 3 else "no"))
    if "daemonpath" in R:
        dp = R["daemonpath"]["daemon"]
        worst = max(x["ratio"] for x in dp)
        T.append(("daemon path ≤ 1.30× in-process, CPU (every level; the floor, /ping without a scan, beside it)",
                  ", ".join("%.2f×" % x["ratio"] for x in dp) + " (floor %s)" %
                  ", ".join("%.2f×" % x["floor_ratio"] for x in dp), "yes" if worst <= 1.30 else "no"))
    if "daemonir" in R:
        T.append(("daemon path ≤ 1.30× in-process, instructions (callgrind)", "%.3f×" % R["daemonir"]["ratio"],
                  "yes" if R["daemonir"]["ratio"] <= 1.30 else "no"))
    if "report_counters" in R:
        c = R["report_counters"]
        T.append(("DMARC report counters ≤ +10 % CPU per message",
                  "+%.1f µs on %.1f = %+.1f %%" % (c["added_us"], c["off_us"], c["added_pct"]),
                  "yes" if c["added_pct"] <= 10 else "no"))
    if "soak" in R and len(R["soak"]["points"]) == 2:
        p1, p2 = R["soak"]["points"]
        m1 = max(w["rss_mb"] for w in p1["workers"])
        m2 = max(w["rss_mb"] for w in p2["workers"])
        T.append(("RSS ≤ 32 MB/worker after 100k, everything on", "%.1f MB" % m1, "yes" if m1 <= 32 else "no"))
        T.append(("no growth 100k → 200k", "%+.1f MB (%.1f → %.1f)" % (m2 - m1, m1, m2),
                  "yes" if m2 - m1 <= 0.5 else "no"))
    if "history" in R and R["history"].get("ratio"):
        h = R["history"]
        T.append(("history costs ≤ 15 % more CPU per message", "×%.3f (%.3f vs %.3f ms)" % (
            h["ratio"], h["cpu_on_ms"], h["cpu_off_ms"]), "yes" if h["ratio"] <= 1.15 else "no"))
        m = h.get("memory")
        if m:
            # the stricter of the two: what Redis' memory grew by
            worst = max(m["per_pair"], m["used_memory_delta_per_pair"])
            T.append(("Redis ≤ 512 bytes per tracked (domain, source) pair",
                      "%.0f bytes (MEMORY USAGE %.0f)" % (m["used_memory_delta_per_pair"],
                                                         m["per_pair"]),
                      "yes" if worst <= 512 else "no"))
    R["targets"] = T


def peer_table(p):
    """One row per load result; each authscand row's ratio is against the
    rspamd row of the same round and concurrency.  Returns (rows, rspamd's
    median CPU ms/msg, {conc: [ratio per round]})."""
    rows = []
    for j in p.get("load", []):
        label = j.get("label") or j.get("target") or "?"
        cpu = j.get("scanner_cpu_ms_per_msg", j.get("cpu_ms_per_msg"))
        if cpu is None:
            continue
        rows.append({"label": label, "round": j.get("round"), "workers": j.get("workers", "-"),
                     "conc": j.get("concurrency"), "msgs_per_s": j.get("rps", 0) or 0,
                     "p50_ms": j.get("lat_p50_ms", 0) or 0, "p99_ms": j.get("lat_p99_ms", 0) or 0,
                     "cpu_ms": cpu, "errors": j.get("errors", 0),
                     "rss_mb": j.get("scanner_peak_rss_mb", j.get("scanner_rss_mb", 0)) or 0,
                     "pss_mb": j.get("scanner_peak_pss_mb", j.get("scanner_pss_mb", 0)) or 0})
    ref = {}
    for r in rows:
        if r["label"].startswith("rspamd"):
            ref[(r["round"], r["conc"])] = r["cpu_ms"]
    ratios = {}
    for r in rows:
        base = ref.get((r["round"], r["conc"]))
        if r["label"].startswith("rspamd") or not (base and r["cpu_ms"]):
            r["ratio"] = "-"
            continue
        r["ratio"] = "%.3f (1/%.1f)" % (r["cpu_ms"] / base, base / r["cpu_ms"]) \
            if r["cpu_ms"] < base else "%.1f×" % (r["cpu_ms"] / base)
        if r["label"].startswith("authscand"):
            ratios.setdefault(r["conc"], []).append(base / r["cpu_ms"])
    return rows, (statistics.median(ref.values()) if ref else None), ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--duration", type=int, default=15, help="seconds per measured load level")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--concurrency", default="1,8,64,512")
    ap.add_argument("--passes", type=int, default=5, help="measured in-process passes over the corpus")
    ap.add_argument("--soak", type=int, default=100000, help="messages per soak step (0: skip)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-crypto", action="store_true")
    ap.add_argument("--peers", action="store_true", help="also run the shared testbed (rspamd, spamd)")
    ap.add_argument("--peer-duration", type=int, default=15)
    ap.add_argument("--peer-runs", type=int, default=5,
                    help="rounds of rspamd then authscand (everything on); the ratio is their median")
    ap.add_argument("--peer-concurrency", default="8", help="testbed concurrency levels (comma list)")
    ap.add_argument("--peer-setup", default="everything", choices=sorted(PEER_SETUPS),
                    help="authscand's setup in the side by side: everything (history, report "
                         "counters, ten Lua rules) or history (issue 13)")
    ap.add_argument("--only", default="", help="comma list of steps: crypto,inproc,lua,check,load,daemonpath,daemonir,mta,soak,history,profile,report,peers")
    ap.add_argument("--history-senders", type=int, default=10000,
                    help="senders for the Redis memory figure of the history step (0: skip it)")
    ap.add_argument("--report-messages", type=int, default=1000000,
                    help="report step: messages of the generated day")
    ap.add_argument("--report-domains", type=int, default=10000,
                    help="report step: policy domains of the generated day")
    ap.add_argument("--command", default="bench/run")
    ap.add_argument("--tag", default="", help="suffix for the results file (bench/results/<date>-<tag>.md)")
    ap.add_argument("--rerender", metavar="JSON", help="only rewrite the report from a saved results JSON")
    a = ap.parse_args()
    if a.rerender:
        R = json.load(open(a.rerender))
        if R.get("profile"):
            R["profile"] = (parse_callgrind(open(os.path.join(a.work, "callgrind-inclusive.txt")).read(), 40),
                            parse_callgrind(open(os.path.join(a.work, "callgrind-self.txt")).read(), 40))
        compute_targets(R)
        md = report(R)
        with open(os.path.join(a.results, R["date"][:10] + ".md"), "w") as f:
            f.write(md)
        print(md)
        return
    steps = set(a.only.split(",")) if a.only else {"crypto", "inproc", "lua", "check", "load", "daemonpath",
                                                   "daemonir", "mta", "soak",
                                                   "history", "profile", "report"}
    if a.peers:
        steps.add("peers")
    if a.no_profile:
        steps.discard("profile")
        steps.discard("daemonir")
    if a.no_crypto:
        steps.discard("crypto")
    if a.soak <= 0:
        steps.discard("soak")
    authscan = os.path.join(a.build, "bin", "authscan")
    authscand = os.path.join(a.build, "bin", "authscand")
    corpus = os.path.join(a.work, "corpus")
    manifest = os.path.join(corpus, "manifest.tsv")
    zone = os.path.join(a.work, "zone", "root.zone")
    for p in (authscan, authscand, manifest, zone):
        if not os.path.exists(p):
            sys.exit("bench.py: missing %s (bench/run builds and generates it)" % p)
    os.makedirs(a.results, exist_ok=True)
    rows = load_manifest(manifest)
    summary = json.load(open(os.path.join(corpus, "summary.json")))
    plugdir = report_bench.plugin_dir(a.build)
    plugins = sorted(f[:-3] for f in os.listdir(plugdir) if f.endswith(".so"))
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    R = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_info(),
         "commit": commit + ("+dirty" if dirty else ""), "corpus": summary, "plugins": plugins,
         "command": a.command}
    have_dmarc = "dmarc" in plugins

    if "crypto" in steps and "inproc" in steps:
        # Taken in pairs, back to back: this machine's speed drifts by tens
        # of percent over minutes, and a ratio of two figures taken minutes
        # apart measures the drift.
        log("crypto and in-process, 3 pairs back to back: openssl speed, then authscan bench "
            "(offline zone, %d passes x %d messages)" % (a.passes, len(rows)))
        pairs = []
        for _ in range(3):
            sp = openssl_speed(a.work)
            cr = corpus_crypto(corpus, rows, sp)
            ip = inproc(authscan, manifest, zone, a.work, a.passes, 1)
            pairs.append((ip["cpu_us_per_msg"] / cr["raw_us_per_msg"], sp, cr, ip))
        mid = sorted(pairs, key=lambda x: x[0])[1]
        R["speed"], R["crypto"], R["inproc"] = mid[1], mid[2], mid[3]
        R["inproc"]["runs_cpu_us"] = [round(x[3]["cpu_us_per_msg"], 1) for x in pairs]
        R["crypto_pairs"] = [{"inproc_us": x[3]["cpu_us_per_msg"], "raw_us": x[2]["raw_us_per_msg"],
                              "ratio": x[0]} for x in pairs]
    elif "crypto" in steps:
        R["speed"] = openssl_speed(a.work)
        R["crypto"] = corpus_crypto(corpus, rows, R["speed"])
    elif "inproc" in steps:
        log("in-process: authscan bench, offline zone, %d passes x %d messages, 3 runs" % (a.passes, len(rows)))
        R["inproc"] = inproc(authscan, manifest, zone, a.work, a.passes, 3)
    if "lua" in steps:
        log("Lua rules: authscan bench with none, one empty hook, ten rules; 5 interleaved runs")
        R["lua"] = lua_cost(authscan, manifest, zone, a.passes)
    if "daemonpath" in steps:
        log("daemonpath: in-process against the daemon over HTTP, offline zone for both, "
            "1 and 2 workers, c=1 and c=8, %d s each" % a.duration)
        R["daemonpath"] = daemon_path(authscan, authscand, manifest, zone, a.work, a.passes, a.duration,
                                      a.warmup)
    if "daemonir" in steps:
        log("daemonir: the daemon path in instructions (callgrind, a few minutes)")
        R["daemonir"] = daemon_path_ir(authscan, authscand, corpus, rows, manifest, zone, a.work)
    need_daemon = steps & {"check", "load", "mta", "soak", "history"}
    if need_daemon:
        server = nsd_mod.NSD({".": zone}).start()
        dns = server.address
        dns_pid = server.proc.pid
        log("nsd on %s (pid %d)" % (dns, dns_pid))
        try:
            if steps & {"check", "load"}:
                d = Daemon(authscand, dns, 2, os.path.join(a.work, "authscand.log")).start()
                log("authscand on 127.0.0.1:%d, pids %s" % (d.port, d.pids))
                try:
                    if "check" in steps:
                        log("verdict check: %d messages over HTTP" % len(rows))
                        replies = scan_all_http(d.port, corpus, rows)
                        rates, dis = compare(rows, replies, have_dmarc)
                        R["check"] = {"daemon": {"rates": rates, "disagreements": [
                            {"file": r["file"], "scenario": r["scenario"], "field": f, "expected": e, "got": g,
                             "detail": det} for r, f, e, g, det in dis]}}
                        with open(os.path.join(a.work, "daemon-verdicts.jsonl"), "w") as f:
                            for fn in sorted(replies):
                                f.write(json.dumps({"file": fn, "reply": replies[fn]}) + "\n")
                        vpath = os.path.join(a.work, "inproc-verdicts.tsv")
                        if os.path.exists(vpath):
                            inr = {}
                            for line in open(vpath):
                                fn, _, js = line.rstrip("\n").partition("\t")
                                if fn and js:
                                    inr[fn] = json.loads(js)
                            r2, _ = compare(rows, inr, have_dmarc)
                            R["check"]["inproc"] = {"rates": r2}
                        log("  agreement: " + ", ".join("%s %s%%" % (k, fmt(v, 1)) for k, v in rates.items()
                                        if k != "dmarc_list_downgrade"))
                    if "load" in steps:
                        levels = [int(x) for x in a.concurrency.split(",") if x]
                        R["load"] = []
                        for c in levels:
                            log("load: concurrency %d, %d s (+%d s warm-up)" % (c, a.duration, a.warmup))
                            x = load_level(d, dns_pid, manifest, c, a.duration, a.warmup)
                            R["load"].append(x)
                            log("  %.0f msgs/s, p99 %.2f ms, %.3f ms CPU/msg, errors %d" %
                                (x["msgs_per_s"], x["p99_ms"], x["cpu_ms_per_msg"], x["errors"]))
                        # saturation = the best closed-loop rate: one level can be low when
                        # a burst of connections lands on one worker (docs/performance.md)
                        sat = max((x["msgs_per_s"] for x in R["load"] if x["conc"] > 1), default=None)
                        for frac in ((0.25, 0.5) if sat else ()):
                            rate = sat * frac
                            pace = 1000.0 * 64 / rate
                            log("load: concurrency 64 paced at %.0f msgs/s (%.0f%% of the best closed-loop rate)" %
                                (rate, 100 * frac))
                            x = load_level(d, dns_pid, manifest, 64, a.duration, a.warmup, pace_ms=pace)
                            x["offered"] = rate
                            x["offered_frac"] = frac
                            R["load"].append(x)
                            log("  %.0f msgs/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms" %
                                (x["msgs_per_s"], x["p50_ms"], x["p99_ms"], x["p999_ms"]))
                finally:
                    d.stop()
            if "mta" in steps:
                log("mta: CPU per message over /checkv2, milter and spamd, c=8 and c=64, %d s each"
                    % a.duration)
                R["mta"] = mta_mod.run_mta(Daemon, cpu_s, wait_quiet, authscand, dns, rows, corpus,
                                           a.work, a.duration)
                for x in R["mta"]:
                    log("  %-11s c=%-3d %6.0f msgs/s  %.3f ms CPU/msg (%.2fx http, %.2fx %s)  errors %d" %
                        (x["proto"], x["conc"], x["msgs_per_s"], x["cpu_ms_per_msg"], x["vs_http"],
                         x["vs_same"], mta_mod.SAME_AS[x["proto"]], x["errors"]))
            if "soak" in steps:
                R["soak"] = soak(authscand, dns, manifest, a.work, a.soak)
            if "history" in steps:
                log("history: CPU per message with history off and on (Redis), concurrency 8")
                R["history"] = history_cpu(authscand, dns, dns_pid, manifest, a.work, 8, a.duration,
                                           a.warmup)
                if a.history_senders > 0:
                    log("history: Redis memory for %d senders" % a.history_senders)
                    R["history"]["memory"] = redis_memory(authscand, dns, a.work, a.history_senders)
        finally:
            server.stop()
    if "report" in steps:
        log("report: counter cost (authscan bench, report.enabled no/yes, private Redis)")
        R["report_counters"] = report_bench.counters(authscan, manifest, zone, passes=a.passes)
        log("  +%.1f us/msg = +%.1f %%" % (R["report_counters"]["added_us"],
                                           R["report_counters"]["added_pct"]))
        log("report: one day of %d messages / %d policy domains" % (a.report_messages,
                                                                    a.report_domains))
        R["report_generation"] = report_bench.generation(authscan, plugdir, a.report_messages,
                                                         a.report_domains)
    if "profile" in steps:
        R["profile"] = profile(authscan, manifest, zone, a.work)
        R["perf"] = perf_profile(authscan, manifest, zone, a.work)
    if "peers" in steps:
        p = peers(a.work, authscand, 2000, a.peer_duration, a.peer_runs, a.peer_concurrency,
                  a.peer_setup)
        p["table"], rs, p["ratios"] = peer_table(p)
        R["peers"] = p
        if rs:
            R["rspamd_cpu_ms"] = rs
            R["rspamd_cpu_source"] = "shared testbed, same machine, this run, median over concurrency levels"
    if "rspamd_cpu_ms" not in R:
        R["rspamd_cpu_ms"] = 2.8
        R["rspamd_cpu_source"] = "issue 7 / testbed README figure (2.6-3.0 ms), not measured in this run"

    compute_targets(R)

    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    if a.tag:
        stamp += "-" + a.tag
    elif a.only:                     # a partial run does not replace the day's full report
        stamp += "-" + a.only.replace(",", "-")
    md = report(R)
    base = os.path.join(a.results, stamp)
    with open(base + ".md", "w") as f:
        f.write(md)
    with open(os.path.join(a.work, "results-%s.json" % time.strftime("%Y%m%d-%H%M%S")), "w") as f:
        json.dump(R, f, indent=1, default=str)
    print(md)
    log("wrote %s.md" % base)


if __name__ == "__main__":
    main()
