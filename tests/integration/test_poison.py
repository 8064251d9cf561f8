#!/usr/bin/python3
"""Poison messages (issue 10.1): a message that killed a worker is
recognised and answered (poison.action, default soft reject, symbol
AUTHSCAN_POISON) instead of killing the next worker, innocent scans that
were in flight at the crash are scanned normally on their retry, a worker
killed mid-scan is replaced at once, a burst of distinct poison messages
does not keep the service dark, and workers that fail at start-up are
still restarted with a growing delay.

The crashes come from a test-only plugin compiled here
(poison_crasher.c: X-Crash: abort | segv | exit | dns), so the test does
not depend on any real library bug.
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_for  # noqa: E402

T = harness.Tests("poison")
TMP = tempfile.mkdtemp(prefix="authscan-poison-")
HERE = os.path.dirname(os.path.abspath(__file__))
SLOW = {"IP": "192.0.2.1", "From": "x@slow.example"}   # waits dns.timeout
ARGS = ["--set", "dns.timeout=3s", "--set", "limits.scan_timeout=20s"]


def plugins_with_crasher():
    d = os.path.join(TMP, "plugins")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(harness.PLUGINS):
        if f.endswith(".so"):
            shutil.copy(os.path.join(harness.PLUGINS, f), d)
    inc = os.path.join(harness.SRC, "core", "include")
    p = subprocess.run(["gcc", "-shared", "-fPIC", "-Wall", "-Werror", "-I", inc, "-o",
                        os.path.join(d, "crasher.so"), os.path.join(HERE, "poison_crasher.c")],
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("gcc failed: %s" % p.stderr.decode())
    return d


PLUGINS = None


def msg(tag, crash=None):
    extra = b"X-Crash: %s\r\n" % crash.encode() if crash else b""
    return (b"Received: from relay.example.org by mx.example.com; %f\r\n"
            b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
            b"Subject: %s\r\nMessage-ID: <%s@example.com>\r\n%s\r\nbody %s\r\n"
            % (time.time(), tag.encode(), tag.encode(), extra, tag.encode()))


def daemon(**kw):
    kw.setdefault("workers", 1)
    kw.setdefault("log_level", "debug")
    kw.setdefault("plugins_dir", PLUGINS)
    kw["args"] = ARGS + list(kw.get("args", []))
    return harness.Daemon(**kw)


def crashes(d, since=0):
    return len(re.findall(r"worker#\d+ \(pid \d+, generation \d+\) (?:killed by signal|exited "
                          r"with status [1-9])", d.log()[since:]))


def send_and_forget(d, body, headers=None):
    """Sends a scan request and closes without reading: a departed client."""
    s = socket.create_connection(d.addr, timeout=10)
    s.sendall(harness.build_request("POST", "/checkv2", body, headers))
    s.close()


def in_flight(d, bodies, headers):
    """Starts one scan per body in its own thread (they wait on DNS);
    returns the threads and a list that collects their outcomes."""
    out = []

    def one(b):
        try:
            out.append(d.checkv2(b, headers, timeout=30))
        except Exception as e:   # the worker that had it died
            out.append(e)
    ths = [threading.Thread(target=one, args=(b,)) for b in bodies]
    for th in ths:
        th.start()
    return ths, out


def wait_scans(d, n, since):
    """Waits until the worker has accepted the n connections of in_flight()
    (logged at debug level), then a moment for it to read the requests and
    send their DNS queries; slow.example never answers, so they stay in
    flight for dns.timeout (3 s)."""
    d.wait_log(r"http: connection from", since=since, count=n, timeout=10)
    time.sleep(0.3)


def is_poison_answer(r, action="soft reject"):
    return (r.get("action") == action and "AUTHSCAN_POISON" in r.get("symbols", {}) and
            "CRASHER_SAW" not in r.get("symbols", {}) and r.get("is_skipped") is True)


def log_time(stamp):
    """Seconds of a log line's time stamp (2026-12-05T19:05:38.187Z)."""
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(stamp[19:-1])


def test_culprit_and_bystanders():
    """One crash with three innocent scans in flight: only the message whose
    code was running is poison; the three are scanned normally on retry."""
    with daemon() as d:
        innocent = [msg("innocent-%d" % i) for i in range(3)]
        m0 = d.log_mark()
        ths, out = in_flight(d, innocent, SLOW)
        wait_scans(d, 3, m0)
        victim = d.worker_pids()[0]
        mark = d.log_mark()
        poison = msg("poison-abort", "abort")
        try:
            d.checkv2(poison, {"IP": "192.0.2.1"}, timeout=10)
            T.check("the poison's first scan has no answer (the worker died)", False)
        except Exception:
            pass
        m = d.wait_log(r"worker#0 \(pid %d\) died with (\d+) scan\(s\) in flight, running "
                       r"message ([0-9a-f]{16}); (\d+) message\(s\) now answered" % victim,
                       since=mark)
        T.eq("master counted the scans in flight", m.group(1), "4")
        T.eq("one crash with 4 in flight poisons one message", m.group(3), "1")
        digest = m.group(2)
        for th in ths:
            th.join(40)
        T.check("the innocent scans in flight died with the worker",
                all(isinstance(o, Exception) for o in out), out)
        new = wait_for(lambda: (lambda p: p if len(p) == 1 and victim not in p else None)(
            d.worker_pids()), 10, what="replacement")
        # the pid shows in /proc as soon as fork returns, before the master
        # logs it: wait for the line, then compare the two lines' times
        # (a back-off would put at least 0.1s between them)
        started = d.wait_log(r"(\S+) authscand\[\d+\] master info: started worker#0 \(pid %d"
                             % new[0], 10, since=mark)
        died = re.search(r"(\S+) authscand\[\d+\] master error: worker#0 \(pid %d[^\n]*"
                         r"killed by signal" % victim, d.log()[mark:])
        gap = log_time(started.group(1)) - log_time(died.group(1)) if died else None
        T.check("the worker was replaced at once (no back-off)", gap is not None and gap < 0.08,
                "got %r s between the death and the start, want < 0.08" % gap)

        st, r = d.checkv2(poison, {"IP": "192.0.2.1"})
        T.eq("poison retry: status", st, 200)
        T.check("poison retry: answered soft reject with AUTHSCAN_POISON, not scanned",
                is_poison_answer(r), r)
        T.eq("poison retry: symbol options", r["symbols"].get("AUTHSCAN_POISON", {}).get(
            "options"), [digest, "crashes=1"])
        T.eq("poison retry: SMTP text of soft reject", r.get("messages", {}).get("smtp_message"),
             "4.7.1 Try again later")
        T.check("poison retry: the worker logged why",
                re.search(r"message %s killed a worker before \(its scan was running; "
                          r"crashes=1\): answered 'soft reject'" % digest, d.log()) is not None)
        # a retry carries a new Received field from our MTA: same message
        st, r = d.checkv2(b"Received: by mx.example.com; again\r\n" + poison,
                          {"IP": "192.0.2.1"})
        T.check("retry with another leading Received field: still recognised",
                is_poison_answer(r), r)
        T.eq("no worker died on the retries", crashes(d, mark), 1)
        T.eq("the worker survived", d.worker_pids(), new)
        for i, b in enumerate(innocent):
            st, r = d.checkv2(b, {"IP": "192.0.2.1"})
            T.check("innocent %d in flight at the crash: scanned normally" % i,
                    st == 200 and "CRASHER_SAW" in r["symbols"] and
                    "AUTHSCAN_POISON" not in r["symbols"], r)
        T.eq("/stat counts the poison answers", d.stat().get("poison"), 2)

        # the table lives in the master: a reload's new workers know it too
        mark2 = d.log_mark()
        d.signal(signal.SIGHUP)
        d.wait_log(r"generation 2 ready", since=mark2)
        st, r = d.checkv2(poison, {"IP": "192.0.2.1"})
        T.check("after a reload: still recognised", is_poison_answer(r), r)
        T.eq("no worker died", crashes(d, mark), 1)


def test_repeated_bystander():
    """A message in flight at two crashes (here: its first attempt and its
    retry) is poison even if it never was the one running."""
    with daemon() as d:
        m_ = msg("unlucky")
        for n, crash in enumerate(("abort", "segv")):
            m0 = d.log_mark()
            ths, out = in_flight(d, [m_], SLOW)
            wait_scans(d, 1, m0)
            mark = d.log_mark()
            try:
                d.checkv2(msg("p-%s" % crash, crash), timeout=10)
            except Exception:
                pass
            d.wait_log(r"died with 2 scan\(s\) in flight", since=mark)
            for th in ths:
                th.join(40)
            wait_for(lambda: len(d.worker_pids()) == 1, 10)
            if n == 0:
                st, r = d.checkv2(m_, {"IP": "192.0.2.1"})
                T.check("after one crash as a bystander: scanned", "CRASHER_SAW" in r["symbols"],
                        r)
        st, r = d.checkv2(m_, {"IP": "192.0.2.1"})
        T.check("after two crashes as a bystander: poison", is_poison_answer(r), r)
        T.eq("... with crashes=2", r["symbols"].get("AUTHSCAN_POISON", {}).get("options", [])[1:],
             ["crashes=2"])
        T.check("... logged as several crashes", "in flight at several crashes" in d.log())


def test_crash_kinds_and_action():
    """A crash in a DNS callback, a segfault and a non-zero exit are all
    recognised; poison.action from the config file is the answer."""
    with daemon(config="[poison]\naction = reject\nttl = 10m\n") as d:
        for crash in ("dns", "segv", "exit"):
            p = msg("kind-" + crash, crash)
            m0 = d.log_mark()
            ths, out = in_flight(d, [msg("bystander-" + crash)], SLOW)
            wait_scans(d, 1, m0)
            mark = d.log_mark()
            try:
                d.checkv2(p, {"IP": "192.0.2.1"}, timeout=10)
            except Exception:
                pass
            d.wait_log(r"died with 2 scan\(s\) in flight, running message", since=mark)
            for th in ths:
                th.join(40)
            wait_for(lambda: len(d.worker_pids()) == 1, 10)
            st, r = d.checkv2(p, {"IP": "192.0.2.1"})
            T.check("%s: retry answered with poison.action reject" % crash,
                    is_poison_answer(r, "reject"), r)
            T.eq("%s: no further crash" % crash, crashes(d, mark), 1)
        T.check("ttl from the config in the master's line",
                "now answered unscanned for 600s" in d.log(), d.log()[-2000:])


def test_operator_kill_is_not_poison():
    """SIGKILL (an operator, the OOM killer) is not a fault of the message
    in flight: its retry is scanned; the worker is replaced at once."""
    with daemon() as d:
        m_ = msg("killed")
        m0 = d.log_mark()
        ths, out = in_flight(d, [m_], SLOW)
        wait_scans(d, 1, m0)
        victim = d.worker_pids()[0]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: (lambda p: len(p) == 1 and victim not in p)(d.worker_pids()), 10,
                 what="replacement")
        T.check("replaced within a second", time.monotonic() - t0 < 1.0, time.monotonic() - t0)
        for th in ths:
            th.join(40)
        st, r = d.checkv2(m_, {"IP": "192.0.2.1"})
        T.check("retry after SIGKILL: scanned", "CRASHER_SAW" in r.get("symbols", {}), r)
        T.check("no poison line", "now answered unscanned" not in d.log())


def test_disabled():
    with daemon(args=["--set", "poison.enable=no"]) as d:
        p = msg("disabled", "abort")
        mark = d.log_mark()
        for _ in range(2):
            try:
                d.checkv2(p, timeout=10)
            except Exception:
                pass
            wait_for(lambda: len(d.worker_pids()) == 1, 10)
        wait_for(lambda: crashes(d, mark) == 2, 10, what="two crashes")
        T.eq("poison.enable=no: the retry is scanned (and crashes) again", crashes(d, mark), 2)


def test_burst():
    """20 distinct poison messages from clients that leave at once: each
    kills at most one worker, and normal scans are answered throughout,
    with no gap longer than about a second."""
    with daemon(workers=2, log_level="notice") as d:
        poisons = [msg("burst-%d" % i, "abort") for i in range(20)]
        stop = threading.Event()
        ok_times = []
        failures = []

        def probe():
            while not stop.is_set():
                try:
                    st, r = d.checkv2(harness.SIMPLE_MSG, timeout=5)
                    if st == 200 and "CRASHER_SAW" in r["symbols"]:
                        ok_times.append(time.monotonic())
                except Exception as e:
                    failures.append(repr(e))
                time.sleep(0.02)
        mark = d.log_mark()
        t0 = time.monotonic()
        th = threading.Thread(target=probe)
        th.start()
        for p in poisons:
            send_and_forget(d, p)
        try:
            wait_for(lambda: crashes(d, mark) >= 20, 30, what="20 crashes")
        except TimeoutError:
            pass
        time.sleep(1.0)
        stop.set()
        th.join(30)
        t1 = time.monotonic()
        points = [t0] + ok_times + [t1]
        gap = max(b - a for a, b in zip(points, points[1:]))
        harness.log("burst: %d crashes, %d probe answers, %d probe failures, longest gap %.2fs"
                    % (crashes(d, mark), len(ok_times), len(failures), gap))
        T.check("normal scans were answered during the burst", len(ok_times) >= 5,
                (ok_times, failures))
        T.check("no gap in service longer than 1.5s", gap <= 1.5, gap)
        n = crashes(d, mark)
        T.check("each poison message killed at most one worker", n <= 20, n)
        # every retry is answered, and none kills a worker: those that did
        # not get to crash a worker in the burst crash now, once
        before = crashes(d, mark)
        answered = 0
        for p in poisons:
            try:
                st, r = d.checkv2(p, timeout=10)
                answered += is_poison_answer(r)
            except Exception:
                pass
        for p in poisons:
            st, r = d.checkv2(p, timeout=10)
            T.check("second retry: poison answer", is_poison_answer(r), r)
        T.eq("no message killed a worker twice", crashes(d, mark), 20)
        harness.log("burst: %d crashed in the burst, %d on the first retry" %
                    (before, crashes(d, mark) - before))
        try:   # the last crash's replacement may still be starting
            wait_for(lambda: len(d.worker_pids()) == 2, 15, what="two workers")
        except TimeoutError:
            pass
        T.eq("both workers alive", len(d.worker_pids()), 2)


def test_startup_backoff():
    """A worker that dies at start-up (the plugin's init aborts) is still
    restarted with a growing delay, not in a tight loop."""
    flag = os.path.join(TMP, "init-abort")
    with daemon(env={"CRASHER_INIT_ABORT": flag}) as d:
        victim = d.worker_pids()[0]
        open(flag, "w").close()
        mark = d.log_mark()
        os.kill(victim, signal.SIGKILL)
        time.sleep(3.2)
        starts = len(re.findall(r"started worker#0", d.log()[mark:]))
        harness.log("start-up failures: %d starts in 3.2s" % starts)
        T.check("start-up failures are retried with back-off (0.1, 0.2, 0.4 ... s)",
                2 <= starts <= 7, starts)
        T.check("start-up failures are not poison", "now answered unscanned" not in d.log())
        os.unlink(flag)
        wait_for(lambda: d.ping() and len(d.worker_pids()) == 1 and
                 re.search(r"worker#0 info: ready", d.log()[mark:]), 15,
                 what="a worker after the flag is gone")
        st, r = d.checkv2(harness.SIMPLE_MSG)
        T.check("serving again", st == 200 and "CRASHER_SAW" in r["symbols"], r)


def test_replacement_init_fails():
    """A replacement worker whose plugin init fails once the daemon has
    served (a file gone, descriptors short) is retried with back-off, not
    given up on: giving up would leave the daemon a worker short for good.
    At start-up the same failure stops the daemon (test_plugin_files)."""
    flag = os.path.join(TMP, "init-fail")
    with daemon(workers=2, env={"CRASHER_INIT_FAIL": flag}) as d:
        victim = d.worker_pids()[0]
        open(flag, "w").close()
        mark = d.log_mark()
        os.kill(victim, signal.SIGKILL)
        d.wait_log(r"worker#\d could not start; retrying with back-off", 10, since=mark, count=2)
        T.check("not given up", "not restarting" not in d.log()[mark:], d.log()[mark:])
        st, r = d.checkv2(harness.SIMPLE_MSG)
        T.check("the other worker serves meanwhile", st == 200 and "CRASHER_SAW" in r["symbols"],
                r)
        os.unlink(flag)
        wait_for(lambda: len(d.worker_pids()) == 2, 15, what="two workers after the flag is gone")
        T.eq("two workers again", len(d.worker_pids()), 2)


def test_check_config():
    for conf, want in (("[poison]\naction = bounce\n", "x.conf:2: bad value 'bounce' for "
                        "'poison.action'"),
                       ("[poison]\n\nttl = 0s\n", "x.conf:3: bad value '0s' for 'poison.ttl'"),
                       ("[poison]\nttl = 8d\n", "x.conf:2: bad value '8d' for 'poison.ttl'"),
                       ("[poison]\nenable = maybe\n", "x.conf:2:")):
        path = os.path.join(TMP, "x.conf")
        with open(path, "w") as f:
            f.write(conf)
        p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", path, "--plugins-dir",
                            harness.PLUGINS], capture_output=True, timeout=60)
        err = p.stderr.decode()
        T.check("check-config %r: refused with %r" % (conf, want),
                p.returncode != 0 and want in err, err)


def main():
    global PLUGINS
    if not shutil.which("gcc"):
        T.check("gcc is installed", False)
        return T.finish()
    PLUGINS = plugins_with_crasher()
    try:
        only = os.environ.get("POISON_TESTS", "").split()   # to rerun one
        for t in (test_check_config, test_culprit_and_bystanders, test_repeated_bystander,
                  test_crash_kinds_and_action, test_operator_kill_is_not_poison,
                  test_disabled, test_burst, test_startup_backoff,
                  test_replacement_init_fails):
            if not only or t.__name__ in only:
                T.run(t)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
