#!/usr/bin/python3
"""SIGHUP reloads without losing a request.

 - Under load (8 client threads in a closed loop on keep-alive connections,
   ~6 s) the master gets SIGHUP three times: every request sent gets a 200
   with the right verdict.  A client reconnects when a reply says
   "Connection: close", or when it sees that the server closed an idle
   connection before it sent anything (as every HTTP client library does);
   a request that was sent and got no reply, or an error status, is lost.
 - After each reload a new generation of workers (new pids, "generation N
   ready" in the log) replaces the old one, which exits normally.
 - A reload applies a changed config (symbol score, worker count, log
   level), changed site rules (rules.local_dir), a new plugin dropped into
   the plugins directory, and changed listen addresses (a new port serves,
   a removed one is closed).
 - A reload with a broken config (unknown key) or an unusable listen
   address keeps the old workers serving and logs the error with file:line.
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_for  # noqa: E402

T = harness.Tests("reload")
CONFIG = """# test config
workers = 2
shutdown_timeout = 20s
[symbols.MULTIPLE_FROM]
score = 8
[ ]
"""


def generation_ready(d, gen, since=0, timeout=60):
    return d.wait_log(r"generation %d ready" % gen, since=since, timeout=timeout)


def checkv2_new_gen(d, msg, want, timeout=15):
    """The reply to msg once want(reply) holds, or the last one after
    timeout.  The master logs "generation N ready" and then signals the
    old workers; until one has handled its SIGTERM it still accepts on the
    shared socket, so right after the line a connection may reach it
    (seen under load)."""
    last = [None]

    def got():
        last[0] = d.checkv2(msg)[1]
        return want(last[0])
    try:
        wait_for(got, timeout, interval=0.1, what="a reply of the new generation")
    except TimeoutError:
        pass
    return last[0]


def pids_of_generation(d, gen):
    return set(int(p) for p in re.findall(r"started worker#\d+ \(pid (\d+), generation %d\)" % gen,
                                          d.log()))


class Client(threading.Thread):
    def __init__(self, d, idx, stop):
        super().__init__(daemon=True)
        self.d, self.idx, self.stop = d, idx, stop
        self.sent = self.ok = self.reconnects = self.server_closed = 0
        self.lost = []      # (time, what)
        self.bad = []       # wrong replies

    def run(self):
        c = None
        n = 0
        while not self.stop.is_set():
            if c is not None:
                # reuse only a connection the server has not closed meanwhile
                r, _, _ = select.select([c.sock], [], [], 0)
                if r:
                    self.server_closed += 1
                    c.close()
                    c = None
            if c is None:
                try:
                    c = self.d.conn(timeout=30)
                except OSError as e:
                    self.lost.append((time.monotonic(), "connect: %r" % e))
                    time.sleep(0.05)
                    continue
                self.reconnects += 1
            n += 1
            multi = n % 2 == 0
            body = harness.MULTI_FROM_MSG if multi else harness.SIMPLE_MSG
            qid = "c%d-%d" % (self.idx, n)
            try:
                c.send(harness.build_request("POST", "/checkv2", body, {"Queue-Id": qid}))
                self.sent += 1
                r = c.read_response()
            except (OSError, EOFError, ValueError) as e:
                self.lost.append((time.monotonic(), "%s: %r" % (qid, e)))
                c.close()
                c = None
                continue
            if r.status != 200:
                self.bad.append((qid, r.status, r.body[:200]))
            else:
                try:
                    j = r.json()
                    want = "multi-1@example.com" if multi else "simple-1@example.com"
                    if j.get("message-id") != want or ("MULTIPLE_FROM" in j["symbols"]) != multi:
                        self.bad.append((qid, "wrong verdict", j))
                    else:
                        self.ok += 1
                except ValueError as e:
                    self.bad.append((qid, "bad JSON", repr(e)))
            if r.closes:
                c.close()
                c = None
        if c is not None:
            c.close()


def test_hup_under_load():
    with harness.Daemon(workers=None, expect_workers=2, config=CONFIG) as d:
        gen1 = d.worker_pids()
        T.eq("generation 1 has 2 workers", len(gen1), 2)
        stop = threading.Event()
        clients = [Client(d, i, stop) for i in range(8)]
        t0 = time.monotonic()
        for c in clients:
            c.start()
        gens = [set(gen1)]
        hup_times = []
        for k in range(3):
            time.sleep(1.5)
            mark = d.log_mark()
            hup_times.append(time.monotonic())
            d.signal(signal.SIGHUP)
            generation_ready(d, k + 2, since=mark)
            new = pids_of_generation(d, k + 2)
            gens.append(new)
        while time.monotonic() - t0 < 6.0:
            time.sleep(0.1)
        stop.set()
        for c in clients:
            c.join(60)
        sent = sum(c.sent for c in clients)
        ok = sum(c.ok for c in clients)
        lost = [x for c in clients for x in c.lost]
        bad = [x for c in clients for x in c.bad]
        harness.log("load: %d requests sent, %d ok, %d lost, %d bad, %d reconnects, "
                    "%d idle connections closed by the server"
                    % (sent, ok, len(lost), len(bad), sum(c.reconnects for c in clients),
                       sum(c.server_closed for c in clients)))
        T.check("load ran (%d requests)" % sent, sent >= 200, sent)
        T.check("no request lost across 3 reloads",
                not lost, ["%.3fs after start: %s" % (t - t0, w) for t, w in lost[:10]] +
                ["HUPs at %s" % ["%.3f" % (h - t0) for h in hup_times]])
        T.check("no error status or wrong verdict", not bad, bad[:5])
        T.eq("every request answered correctly", ok, sent)
        T.check("clients had to reconnect (reloads closed connections)",
                sum(c.reconnects for c in clients) > len(clients))

        # generations: disjoint pid sets, the last one is what runs now
        for k in range(1, 4):
            T.eq("generation %d: 2 workers started" % (k + 1), len(gens[k]), 2)
            T.check("generation %d: new pids" % (k + 1), not (gens[k] & set().union(*gens[:k])),
                    gens)
        wait_for(lambda: set(d.worker_pids()) == gens[3], 60, what="old generations to exit")
        T.eq("only the last generation runs", set(d.worker_pids()), gens[3])
        for k in range(3):
            for pid in gens[k]:
                T.check("old worker %d exited normally" % pid,
                        re.search(r"\(pid %d, generation %d\) exited with status 0" % (pid, k + 1),
                                  d.log()), d.log()[-2000:])
        T.check("no worker crashed", "killed by signal" not in d.log())
        T.check("no reload refused", "SIGHUP ignored" not in d.log() and
                "reload aborted" not in d.log() and "reload failed" not in d.log())
        T.eq("master exits 0", d.stop(), 0)


def test_reload_applies_changes():
    port2 = harness.free_port()
    port1 = harness.free_port()
    tmp_rules = None
    # listen, plugins.dir and log.level come from the file (flags would win)
    with harness.Daemon(workers=None, expect_workers=2, listen=["127.0.0.1:%d" % port1],
                        listen_flags=False, config="listen = 127.0.0.1:%d\n" % port1 + CONFIG,
                        plugins_dir=None, log_level=None) as d:
        # private plugins and rules directories we can change
        plugdir = d.path("plugins")
        os.mkdir(plugdir)
        for f in os.listdir(harness.PLUGINS):
            if f.endswith(".so"):
                shutil.copy(os.path.join(harness.PLUGINS, f), plugdir)
        rules = d.path("rules.d")
        os.mkdir(rules)
        with open(os.path.join(rules, "50-site.conf"), "w") as f:
            f.write("[symbols.MULTIPLE_FROM]\nscore = 5\n")
        base = ("listen = 127.0.0.1:%d\nplugins.dir = %s\nrules.local_dir = %s\n"
                "log.level = info\n" % (port1, plugdir, rules))
        d.write_config(base + CONFIG)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        generation_ready(d, 2, since=mark)
        r = checkv2_new_gen(d, harness.MULTI_FROM_MSG,
                            lambda r: r["symbols"].get("MULTIPLE_FROM", {}).get("score") == 5)
        T.eq("site rule (rules.local_dir) overrides the main file after reload",
             r["symbols"].get("MULTIPLE_FROM", {}).get("score"), 5)

        # a changed rules file, more workers, debug logging
        with open(os.path.join(rules, "50-site.conf"), "w") as f:
            f.write("[symbols.MULTIPLE_FROM]\nscore = 3\n")
        d.write_config(base.replace("log.level = info", "log.level = debug") +
                       CONFIG.replace("workers = 2", "workers = 3"))
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        generation_ready(d, 3, since=mark)
        r = checkv2_new_gen(d, harness.MULTI_FROM_MSG,
                            lambda r: r["symbols"].get("MULTIPLE_FROM", {}).get("score") == 3)
        T.eq("changed rules file applied", r["symbols"].get("MULTIPLE_FROM", {}).get("score"), 3)
        T.eq("lower score, lower action", r["action"], "no action")
        T.check("generation 3 has 3 workers",
                wait_for(lambda: len(d.worker_pids()) == 3, 30, what="3 workers"))
        T.check("log level raised to debug",
                wait_for(lambda: "debug: http: connection from" in d.log()[mark:], 10,
                         what="debug line"))

        # a new plugin dropped into the plugins directory
        src = d.path("hello.c")
        with open(src, "w") as f:
            f.write('#include <authscan/plugin.h>\n'
                    'static const struct as_symbol_def syms[] = {\n'
                    '    { "HELLO_RELOAD", 0.5, "example", "Loaded by a reload", 0 },\n'
                    '};\n'
                    'static void scan(struct as_task *t, void *s) {\n'
                    '    (void)s; as_task_add_symbol(t, "HELLO_RELOAD", 1.0, "hi", (const char *)0);\n'
                    '}\n'
                    'const struct as_plugin authscan_plugin = {\n'
                    '    AS_PLUGIN_HEADER, .name = "hello_reload", .version = "1",\n'
                    '    .symbols = syms, .nsymbols = 1, .scan = scan,\n'
                    '};\n')
        p = subprocess.run(["gcc", "-shared", "-fPIC", "-I",
                            os.path.join(harness.SRC, "core", "include"), "-o",
                            os.path.join(plugdir, "hello_reload.so"), src],
                           capture_output=True, timeout=120)
        T.check("test plugin compiles", p.returncode == 0, p.stderr)
        st, r = d.checkv2(harness.SIMPLE_MSG)
        T.check("new plugin not used before the reload", "HELLO_RELOAD" not in r["symbols"])
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        generation_ready(d, 4, since=mark)
        r = checkv2_new_gen(d, harness.SIMPLE_MSG, lambda r: "HELLO_RELOAD" in r["symbols"])
        T.eq("new plugin loaded by the reload",
             r["symbols"].get("HELLO_RELOAD", {}).get("options"), ["hi"])

        # listen addresses: add port2, then drop port1
        d.write_config(base.replace("listen = 127.0.0.1:%d\n" % port1,
                                    "listen = 127.0.0.1:%d, 127.0.0.1:%d\n" % (port1, port2))
                       + CONFIG)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        generation_ready(d, 5, since=mark)
        st, _, body = harness.http_request("127.0.0.1", port2, "GET", "/ping")
        T.eq("added listen address serves", st, 200)
        T.eq("old listen address still serves", d.request("GET", "/ping")[0], 200)
        d.write_config(base.replace("listen = 127.0.0.1:%d\n" % port1,
                                    "listen = 127.0.0.1:%d\n" % port2) + CONFIG)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        generation_ready(d, 6, since=mark)
        st, _, body = harness.http_request("127.0.0.1", port2, "POST", "/checkv2",
                                           harness.MULTI_FROM_MSG)
        T.eq("new address serves after the old one was dropped", st, 200)
        d.wait_log(r"no longer listening on 127\.0\.0\.1:%d" % port1, since=mark)

        def refused():
            try:
                socket.create_connection(("127.0.0.1", port1), timeout=5).close()
                return False
            except ConnectionRefusedError:
                return True
        T.check("dropped listen address is closed", wait_for(refused, 30, what="port closed"))
        d.port = port2
        T.eq("master exits 0", d.stop(), 0)


def test_broken_reload():
    port = harness.free_port()
    good = "listen = 127.0.0.1:%d\n" % port + CONFIG
    with harness.Daemon(workers=None, expect_workers=2, config=good, listen_flags=False,
                        listen=["127.0.0.1:%d" % port]) as d:
        before = d.worker_pids()
        keep = d.conn()
        r, j = keep.checkv2(harness.MULTI_FROM_MSG)
        T.eq("before: MULTIPLE_FROM score", j["symbols"]["MULTIPLE_FROM"]["score"], 8)

        # an unknown key on line 3 (and a score change that must not apply)
        d.write_config("# broken\nworkers = 2\nworkres = 4\n[symbols.MULTIPLE_FROM]\nscore = 1\n"
                       "[ ]\nlisten = 127.0.0.1:%d\n" % port)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"reload aborted[^\n]*", since=mark)
        T.check("error names file:line and the key",
                "%s:3:" % d.config_path in m.group(0) and "workres" in m.group(0), m.group(0))
        time.sleep(1.0)
        T.eq("old workers keep serving (same pids)", d.worker_pids(), before)
        T.check("no new generation", "generation 2" not in d.log()[mark:] and
                "started worker" not in d.log()[mark:], d.log()[mark:])
        r, j = keep.checkv2(harness.MULTI_FROM_MSG)
        T.check("keep-alive connection still served", r.status == 200 and not r.closes, r)
        T.eq("old config still in force", j["symbols"]["MULTIPLE_FROM"]["score"], 8)
        st, j = d.checkv2(harness.MULTI_FROM_MSG)
        T.eq("new connections still served", st, 200)

        # a bad value: the same
        d.write_config("workers = 2\n\n\nshutdown_timeout = soon\nlisten = 127.0.0.1:%d\n" % port)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"reload aborted[^\n]*", since=mark)
        T.check("bad value: names file:line", "%s:4:" % d.config_path in m.group(0), m.group(0))
        T.eq("bad value: same workers", d.worker_pids(), before)

        # a listen address that cannot be opened
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        try:
            d.write_config(good.replace("listen = 127.0.0.1:%d\n" % port,
                                        "listen = 127.0.0.1:%d, 127.0.0.1:%d\n"
                                        % (port, blocker.getsockname()[1])))
            mark = d.log_mark()
            d.signal(signal.SIGHUP)
            m = d.wait_log(r"reload aborted[^\n]*|generation 2 ready", since=mark)
            T.check("busy listen address: reload aborted", "aborted" in m.group(0), m.group(0))
            T.check("busy listen address: names it",
                    str(blocker.getsockname()[1]) in m.group(0), m.group(0))
        finally:
            blocker.close()
        T.eq("busy listen address: same workers", d.worker_pids(), before)
        T.eq("still serving", d.checkv2(harness.SIMPLE_MSG)[0], 200)

        # the config deleted altogether
        os.unlink(d.config_path)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"reload aborted[^\n]*", since=mark)
        T.check("missing config file: names it", d.config_path in m.group(0), m.group(0))
        T.eq("missing config file: same workers", d.worker_pids(), before)

        # fixed: the next HUP works
        d.write_config(good.replace("score = 8", "score = 7"))
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        generation_ready(d, 2, since=mark)
        wait_for(lambda: not (set(d.worker_pids()) & set(before)), 60, what="old workers to exit")
        T.check("fixed config: new workers", not (set(d.worker_pids()) & set(before)))
        st, j = d.checkv2(harness.MULTI_FROM_MSG)
        T.eq("fixed config applied", j["symbols"]["MULTIPLE_FROM"]["score"], 7)
        # the old keep-alive connection was closed by its draining worker
        T.check("old worker's idle connection closed", keep.at_eof(20))
        keep.close()
        T.eq("master exits 0", d.stop(), 0)


def test_hup_during_slow_scan():
    """An in-flight scan on an old worker completes after the reload."""
    with harness.Daemon(workers=1, args=["--set", "dns.timeout=2s"]) as d:
        old = d.worker_pids()
        c = d.conn(timeout=60)
        c.send(harness.build_request("POST", "/checkv2", harness.SIMPLE_MSG,
                                     {"IP": "192.0.2.1", "From": "x@slow.example"}))
        time.sleep(0.3)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        generation_ready(d, 2, since=mark)
        T.check("old worker still draining its scan", harness.pid_alive(old[0]))
        st, j = d.checkv2(harness.SIMPLE_MSG)
        T.eq("new generation serves meanwhile", st, 200)
        r = c.read_response()
        T.check("in-flight scan answered after the reload", r.status == 200 and
                r.json()["message-id"] == "simple-1@example.com", r)
        T.check("with Connection: close", r.closes, r.headers)
        c.close()
        d.wait_log(r"\(pid %d, generation 1\) exited with status 0" % old[0])
        T.check("old worker exited normally after its scan", True)
        T.eq("master exits 0", d.stop(), 0)


def main():
    T.run(test_hup_under_load)
    T.run(test_reload_applies_changes)
    T.run(test_broken_reload)
    T.run(test_hup_during_slow_scan)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
