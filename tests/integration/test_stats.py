#!/usr/bin/python3
"""Daemon-wide counters: /stat and /metrics give totals over every worker.

 - three workers, scans on separate connections (they spread over the
   workers): every /stat answer, whichever worker gives it, has the total;
   `rspamc stat` (the real client) prints it;
 - a worker killed with SIGKILL is replaced: the totals keep its scans and
   worker_restarts counts it;
 - a SIGHUP reload that changes the worker count (3 -> 2) keeps the totals;
 - a plugin's own counter (as_plugin_counter, ABI 1.3) is summed over the
   workers, survives a SIGKILLed worker, and shows in /stat under
   "plugins" and in /metrics with its help text; a bad counter name stops
   the daemon at start with the plugin's error;
 - /metrics parses with prometheus_client's text parser, and with its
   OpenMetrics parser when the Accept header asks for OpenMetrics (the body
   ends with "# EOF"); promtool check metrics accepts the text format; the scan
   counter, the actions, the latency histogram and the declared symbols
   agree with /stat; no label carries an address or a domain.
Prints "N passed, N failed"; exits non-zero on failure."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_for  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as om_families  # noqa: E402

T = harness.Tests("stats")
CONFIG = "workers = 3\nshutdown_timeout = 10s\n"
OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def msg(n, from_hdr=b"From: Alice <alice@example.com>\r\n"):
    return (from_hdr + b"To: bob@example.org\r\nSubject: stats %d\r\n"
            b"Message-ID: <s%d@example.com>\r\n\r\nbody %d\r\n" % (n, n, n))


MULTI = b"From: a@example.com\r\nFrom: b@example.net\r\n"


def scan(d, n, multi=False):
    st, r = d.checkv2(msg(n, MULTI if multi else b"From: Alice <alice@example.com>\r\n"),
                      {"IP": "192.0.2.77", "From": "alice@example.com"})
    T.eq("scan %d: status" % n, st, 200)
    return r


def rspamc_stat(d):
    p = subprocess.run(["rspamc", "-h", "127.0.0.1:%d" % d.port, "stat"], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Messages scanned: (\d+)", p.stdout)
    return p.returncode, int(m.group(1)) if m else None, p.stdout + p.stderr


def metrics(d, accept=None):
    st, hdrs, body = d.request("GET", "/metrics", headers={"Accept": accept} if accept else None)
    T.eq("/metrics status", st, 200)
    return hdrs.get("content-type", ""), body.decode("utf-8")


def samples(families):
    out = {}
    for fam in families:
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def promtool(text, what):
    if not shutil.which("promtool"):
        T.check("%s: promtool installed (scripts/install-deps: prometheus)" % what, False)
        return
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    # promtool's lint may print style hints; a parse error exits non-zero
    T.check("%s: promtool check metrics accepts it" % what, p.returncode == 0 or
            ("error" not in (p.stdout + p.stderr).lower() and "parse" not in p.stderr),
            p.stdout + p.stderr)


def test_totals(d):
    for n in range(9):
        scan(d, n, multi=(n % 3 == 0))
    seen = set()
    # which worker accepts a new connection is the kernel's choice: ask
    # until two have answered (12 asks all went to one of three under load)
    for i in range(200):
        if i >= 12 and len(seen) >= 2:
            break
        if i >= 12:
            time.sleep(0.01)
        s = d.stat()
        seen.add(s["pid"])
        T.eq("/stat from worker %d: daemon-wide scanned" % s["pid"], s["scanned"], 9)
        T.eq("/stat from worker %d: workers" % s["pid"], s["workers"], 3)
    T.check("several workers answered /stat", len(seen) >= 2, seen)
    rc, n, out = rspamc_stat(d)
    T.eq("rspamc stat: exit status", rc, 0)
    T.eq("rspamc stat: Messages scanned is the daemon's total", n, 9)


def test_respawn(d):
    before = d.stat()
    victim = d.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    T.check("killed worker replaced",
            wait_for(lambda: victim not in d.worker_pids() and len(d.worker_pids()) == 3, 30,
                     what="respawn"))
    after = d.stat()
    T.eq("after SIGKILL: scanned kept", after["scanned"], before["scanned"])
    T.eq("after SIGKILL: actions kept", after["actions"], before["actions"])
    T.eq("after SIGKILL: worker_restarts", after["worker_restarts"],
         before["worker_restarts"] + 1)
    T.eq("after SIGKILL: dns counters kept", after["dns"]["queries"], before["dns"]["queries"])


def test_reload(d):
    before = d.stat()
    mark = d.log_mark()
    d.write_config(CONFIG.replace("workers = 3", "workers = 2"))
    d.signal(signal.SIGHUP)
    d.wait_log(r"generation 2 ready", since=mark, timeout=60)
    T.check("old generation gone", wait_for(lambda: len(d.worker_pids()) == 2, 30,
                                            what="2 workers"))
    after = d.stat()
    T.eq("after reload 3 -> 2 workers: scanned kept", after["scanned"], before["scanned"])
    T.eq("after reload: workers", after["workers"], 2)
    scan(d, 100, multi=True)
    T.eq("after reload: new scans add up", d.stat()["scanned"], before["scanned"] + 1)


def test_metrics(d):
    st = d.stat()
    ctype, text = metrics(d)
    T.check("text format: content type", ctype.startswith("text/plain; version=0.0.4"), ctype)
    T.check("text format: no # EOF", "# EOF" not in text, text[-200:])
    fams = list(text_string_to_metric_families(text))
    s = samples(fams)
    T.eq("authscan_scans_total", s.get(("authscan_scans_total", ())), st["scanned"])
    for action, n in st["actions"].items():
        T.eq("actions_total{action=%s}" % action,
             s.get(("authscan_actions_total", (("action", action),))), n)
    T.eq("histogram +Inf bucket = count",
         s.get(("authscan_scan_duration_seconds_bucket", (("le", "+Inf"),))),
         s.get(("authscan_scan_duration_seconds_count", ())))
    T.eq("histogram count = scans", s.get(("authscan_scan_duration_seconds_count", ())),
         st["scanned"])
    T.check("histogram sum in seconds, small",
            0 < s.get(("authscan_scan_duration_seconds_sum", ()), -1) < st["scanned"] * 5, s)
    T.eq("MULTIPLE_FROM counted (4 scans got it)",
         s.get(("authscan_symbols_total", (("symbol", "MULTIPLE_FROM"),))), 4)
    T.eq("dns queries as in /stat", s.get(("authscan_dns_queries_total", ())),
         st["dns"]["queries"])
    T.eq("worker restarts", s.get(("authscan_worker_restarts_total", ())), 1)
    T.eq("build info", s.get(("authscan_build_info", (("version", "0.1.0"),))), 1)
    T.check("connections counted", s.get(("authscan_connections_total", ()), 0) >= 10, s)
    labels = set()
    for (name, lab), _ in s.items():
        labels.update(k for k, _ in lab)
        for _, v in lab:
            T.check("label value %r is no address or domain" % v,
                    not re.search(r"\d+\.\d+\.\d+\.\d+|example\.|[a-z0-9-]+\.[a-z]{2,}$", v))
    T.eq("label names", labels, {"action", "symbol", "le", "version"})
    for fam in fams:
        T.check("%s: one prefix" % fam.name, fam.name.startswith("authscan_"), fam.name)
        T.check("%s: has help" % fam.name, bool(fam.documentation), fam.name)
    promtool(text, "text format")

    ctype, om = metrics(d, OM_ACCEPT)
    T.check("OpenMetrics: content type", ctype.startswith("application/openmetrics-text"), ctype)
    T.check("OpenMetrics: ends with # EOF", om.endswith("# EOF\n"), om[-100:])
    s2 = samples(om_families(om))
    T.eq("OpenMetrics: scans_total", s2.get(("authscan_scans_total", ())), st["scanned"])
    T.eq("OpenMetrics: histogram count",
         s2.get(("authscan_scan_duration_seconds_count", ())), st["scanned"])
    # promtool 2.42 reads only the text format: OpenMetrics is checked by the parser above
    test_grafana(text)


def test_grafana(text):
    """The shipped Grafana dashboard queries metrics that exist, in valid PromQL."""
    import json
    import tempfile
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                        "grafana", "authscan.json")
    with open(path) as f:
        dash = json.load(f)
    exprs = [t["expr"].replace("$job", "authscan") for p in dash["panels"] for t in p["targets"]]
    names = set(re.findall(r"^(authscan_[a-z_]+?)(?:_bucket|_sum|_count)?[{ ]", text, re.M))
    for e in exprs:
        for m in re.findall(r"authscan_[a-z_]+", e):
            base = re.sub(r"_bucket$", "", m)
            T.check("grafana: %s is exposed" % m, m in names or base in names, e)
    if shutil.which("promtool"):
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write("groups:\n- name: grafana\n  rules:\n")
            for i, e in enumerate(exprs):
                f.write("  - record: grafana:expr%d\n    expr: %s\n" % (i, json.dumps(e)))
        p = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        T.eq("grafana: promtool parses every query (%d)" % len(exprs), p.returncode, 0)


PLUGIN = r"""
#include <authscan/plugin.h>
static int hellos = -1;
static int init(struct as_plugin_ctx *c, void **state) {
    (void)state;
    hellos = as_plugin_counter(c, "%s", "Messages the hello plugin saw.");
    return hellos < 0 ? -1 : 0;
}
static void scan(struct as_task *t, void *s) { (void)s; (void)t; }
static const struct as_plugin_ctx *ctx;
static int init2(struct as_plugin_ctx *c, void **state) { ctx = c; return init(c, state); }
static void finish(struct as_task *t, void *s) { (void)t; (void)s; as_plugin_count(ctx, hellos, 2); }
const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER, .name = "hello", .version = "1",
    .init = init2, .scan = scan, .finish = finish,
};
"""


def plugin_dir(tmp, counter_name):
    plugdir = os.path.join(tmp, "plugins-" + counter_name.replace("-", "_"))
    os.mkdir(plugdir)
    for f in os.listdir(harness.PLUGINS):
        if f.endswith(".so"):
            shutil.copy(os.path.join(harness.PLUGINS, f), plugdir)
    src = os.path.join(plugdir, "hello.c")
    with open(src, "w") as f:
        f.write(PLUGIN % counter_name)
    p = subprocess.run(["gcc", "-shared", "-fPIC", "-I", os.path.join(harness.SRC, "core", "include"),
                        "-o", os.path.join(plugdir, "hello.so"), src], capture_output=True,
                       timeout=120)
    T.check("counter plugin compiles", p.returncode == 0, p.stderr)
    os.unlink(src)
    return plugdir


def test_plugin_counter():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="authscan-stats-")
    try:
        good = plugin_dir(tmp, "hellos")
        with harness.Daemon(workers=2, plugins_dir=good) as d:
            for n in range(5):
                scan(d, 200 + n)
            want = 10   # the finish stage counts 2 a message, after the reply
            harness.wait_for(lambda: d.stat().get("plugins", {}).get("hello", {}).get("hellos")
                             == want, 10, what="plugin counter")
            T.eq("/stat plugins.hello.hellos", d.stat()["plugins"].get("hello"), {"hellos": want})
            victim = d.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: victim not in d.worker_pids() and len(d.worker_pids()) == 2, 30,
                     what="respawn")
            T.eq("plugin counter kept after SIGKILL", d.stat()["plugins"]["hello"]["hellos"], want)
            _, text = metrics(d)
            s = samples(text_string_to_metric_families(text))
            T.eq("/metrics authscan_hello_hellos_total", s.get(("authscan_hello_hellos_total", ())),
                 want)
            T.check("/metrics: the plugin's help text",
                    "# HELP authscan_hello_hellos_total Messages the hello plugin saw." in text)
        bad = plugin_dir(tmp, "Bad-Name")
        with harness.Daemon(workers=1, plugins_dir=bad) as d:
            pass
        T.check("bad counter name: the daemon starts", False, "it should have refused")
    except harness.StartError as e:
        T.check("bad counter name refused with the plugin's error",
                "hello" in str(e) and "Bad-Name" in str(e) and "[a-z0-9_]" in str(e), str(e)[-500:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_service_tick():
    """The services' counts reach the shared slot once a second, not only
    after a scan or when the worker itself answers /stat: Redis going away
    while a worker is idle shows in the totals another worker reports."""
    with harness.RedisServer() as r:
        with harness.Daemon(workers=2, config="redis.servers = %s\n" % r.address) as d:
            # both workers have reported Redis up (each publishes on /stat)
            T.check("Redis up: both workers' 2 connections",
                    wait_for(lambda: d.stat()["redis"]["connections_up"] == 4, 15,
                             what="4 connections up"))
            c = harness.Conn(("127.0.0.1", d.port))
            try:
                def up():
                    return json.loads(c.request("GET", "/stat").body)["redis"]["connections_up"]
                T.eq("one keep-alive connection: one worker answers", up(), 4)
                r.stop()
                # only the answering worker publishes on /stat: the other
                # one's connections show as down only through its tick
                T.check("Redis gone: both workers' connections down within 5 s",
                        wait_for(lambda: up() == 0, 5, what="both down"), up())
            finally:
                c.close()


def main():
    T.run(test_plugin_counter)
    T.run(test_service_tick)
    with harness.Daemon(workers=None, expect_workers=3, config=CONFIG) as d:
        T.run(test_totals, d)
        T.run(test_respawn, d)
        T.run(test_reload, d)
        T.run(test_metrics, d)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
