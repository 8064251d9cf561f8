#!/usr/bin/python3
"""authscand as a daemon: the /checkv2 JSON reply's shape, the envelope
from request headers and from the query string (seen by the plugins and in
the worker's log line), /ping, keep-alive and pipelining, HTTP/1.0,
unix-socket and several --listen addresses, --workers N, a killed worker
being respawned while service continues, SIGTERM draining in-flight scans
(a scan waiting on DNS, a request still being received) before the master
exits 0, --pid-file, and the /stat counters.
Prints "N passed, N failed"; exits non-zero on failure."""
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_for  # noqa: E402

T = harness.Tests("daemon")
NUMBER = (int, float)


def msg(n, extra=b""):
    return (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
            b"Subject: message %d\r\nMessage-ID: <m%d@example.com>\r\n%s\r\nbody %d\r\n"
            % (n, n, extra, n))


def test_checkv2_shape(d):
    st, r = d.checkv2(harness.read_data("clean.eml"),
                      {"IP": "192.0.2.10", "From": "alice@example.com", "Helo": "mail.example.com",
                       "Rcpt": "bob@example.org", "Queue-Id": "Q1"})
    T.eq("clean: status", st, 200)
    for key, typ in (("action", str), ("score", NUMBER), ("required_score", NUMBER),
                     ("symbols", dict), ("messages", dict), ("message-id", str),
                     ("time_real", NUMBER), ("is_skipped", bool)):
        T.check("clean: key %s is %s" % (key, typ), isinstance(r.get(key), typ), r)
    T.eq("clean: action", r.get("action"), "no action")
    T.eq("clean: required_score is reject's threshold", r.get("required_score"), 15)
    T.eq("clean: message-id without <>", r.get("message-id"), "clean-1@example.com")
    T.eq("clean: is_skipped", r.get("is_skipped"), False)
    T.check("clean: time_real is small and non-negative", 0 <= r.get("time_real", -1) < 30, r)
    T.check("clean: no from_check symbol",
            not {"MISSING_FROM", "MULTIPLE_FROM", "FROM_INVALID"} & set(r["symbols"]), r)
    T.check("clean: score is the sum of the symbols",
            abs(r["score"] - sum(s["score"] for s in r["symbols"].values())) < 1e-6, r)
    for name, s in r["symbols"].items():
        T.eq("symbol %s: name" % name, s.get("name"), name)
        T.check("symbol %s: score, metric_score are numbers" % name,
                isinstance(s.get("score"), NUMBER) and isinstance(s.get("metric_score"), NUMBER),
                s)
        T.check("symbol %s: description is text" % name, isinstance(s.get("description"), str), s)
        T.check("symbol %s: options is a list of strings" % name,
                all(isinstance(o, str) for o in s.get("options", [])) and
                isinstance(s.get("options", []), list), s)

    st, r = d.checkv2(harness.MULTI_FROM_MSG)
    T.eq("two From: status", st, 200)
    T.eq("two From: action has a space", r.get("action"), "add header")
    sym = r["symbols"].get("MULTIPLE_FROM", {})
    T.eq("MULTIPLE_FROM: name", sym.get("name"), "MULTIPLE_FROM")
    T.eq("MULTIPLE_FROM: score", sym.get("score"), 8)
    T.eq("MULTIPLE_FROM: metric_score", sym.get("metric_score"), 8)
    T.eq("MULTIPLE_FROM: options", sym.get("options"), ["fields=2"])
    T.check("MULTIPLE_FROM: description",
            "From" in sym.get("description", ""), sym)
    T.check("score >= 8", r.get("score", 0) >= 8, r)
    T.check("thresholds use rspamd names",
            r.get("thresholds", {}).get("add header") == 6 and
            r.get("thresholds", {}).get("reject") == 15 and
            r.get("thresholds", {}).get("greylist") == 4, r.get("thresholds"))
    if "milter" in r:
        T.check("milter is an object", isinstance(r["milter"], dict), r)

    st, r = d.checkv2(b"Subject: no id\r\n\r\nx\r\n")
    T.eq("no Message-ID: message-id is undef", r.get("message-id"), "undef")
    T.check("no From: MISSING_FROM", "MISSING_FROM" in r.get("symbols", {}), r)

    st, hdrs, body = d.request("POST", "/checkv2", harness.SIMPLE_MSG)
    T.check("reply Content-Type is JSON", hdrs.get("content-type", "").startswith(
        "application/json"), hdrs)
    T.eq("reply Content-Length matches", int(hdrs.get("content-length", -1)), len(body))
    # rspamd's path also accepts a trailing query and other letter case
    st, hdrs, body = d.request("POST", "/CHECKV2", harness.SIMPLE_MSG)
    T.eq("path is case-insensitive (rspamd)", st, 200)


def test_envelope(d):
    mark = d.log_mark()
    # request headers (names are case-insensitive, Rcpt repeats)
    st, r = d.checkv2(harness.SIMPLE_MSG,
                      [("ip", "192.0.2.1"), ("FROM", "<alice@example.com>"),
                       ("Rcpt", "a@example.org"), ("Rcpt", "b@example.org"),
                       ("Queue-Id", "HDRQID1"), ("Helo", "mail.example.com")])
    T.eq("header envelope: status", st, 200)
    T.check("header envelope: SPF saw IP and MAIL FROM (pass)", "R_SPF_ALLOW" in r["symbols"],
            r["symbols"])
    d.wait_log(r"ip=192\.0\.2\.1 from=<?alice@example\.com>? qid=HDRQID1 ", since=mark)
    T.check("header envelope: logged", True)

    st, r = d.checkv2(harness.SIMPLE_MSG, {"IP": "198.51.100.7", "From": "alice@example.com"})
    T.check("header envelope: SPF fail from another IP", "R_SPF_FAIL" in r["symbols"],
            r["symbols"])

    # the query string carries the same names, percent-encoded
    mark = d.log_mark()
    st, hdrs, body = d.request(
        "POST", "/checkv2?ip=192.0.2.2&from=%s&rcpt=x%%40example.org&queue-id=QS%%201"
        % quote("alice@example.com", safe=""), harness.SIMPLE_MSG)
    r = json.loads(body)
    T.eq("query envelope: status", st, 200)
    T.check("query envelope: SPF pass", "R_SPF_ALLOW" in r["symbols"], r["symbols"])
    d.wait_log(r"ip=192\.0\.2\.2 from=alice@example\.com qid=QS 1 ", since=mark)
    T.check("query envelope: logged", True)

    st, r = d.checkv2(harness.SIMPLE_MSG, query={"IP": "2001:db8::1", "From": "alice@example.com"})
    T.eq("IPv6 client: status", st, 200)
    T.check("IPv6 client: SPF fail (not in ip4:192.0.2.0/24)", "R_SPF_FAIL" in r["symbols"],
            r["symbols"])
    st, r = d.checkv2(harness.SIMPLE_MSG, {"IP": "::ffff:192.0.2.3", "From": "alice@example.com"})
    T.check("IPv4-mapped client is IPv4", "R_SPF_ALLOW" in r["symbols"], r["symbols"])

    # no envelope at all: still a verdict
    mark = d.log_mark()
    st, r = d.checkv2(harness.SIMPLE_MSG)
    T.eq("no envelope: status", st, 200)
    d.wait_log(r"ip=- from=- qid=- ", since=mark)
    T.check("no envelope: logged with dashes", True)

    # the null sender
    mark = d.log_mark()
    st, r = d.checkv2(harness.SIMPLE_MSG, {"IP": "192.0.2.1", "From": "<>",
                                            "Helo": "mail.example.com"})
    T.eq("null sender: status", st, 200)
    T.check("null sender: logged as empty, not '-'",
            "ip=192.0.2.1 from=" in d.log()[mark:] and
            "ip=192.0.2.1 from=- " not in d.log()[mark:], d.log()[mark:])


def test_ping_and_unknown(d):
    st, hdrs, body = d.request("GET", "/ping")
    T.eq("/ping status", st, 200)
    T.check("/ping says pong", body.strip() == b"pong", body)
    st, hdrs, body = d.request("GET", "/ping?x=1")
    T.eq("/ping with a query", st, 200)
    st, hdrs, body = d.request("HEAD", "/ping")
    T.check("HEAD /ping: 200 without body", st == 200 and body == b"", (st, body))


def test_keepalive(d):
    with d.conn() as c:
        pids = set()
        for i in range(20):
            r, j = c.checkv2(msg(i))
            T.check("keep-alive #%d: 200" % i, r.status == 200, r)
            T.check("keep-alive #%d: right reply" % i, j and j["message-id"] == "m%d@example.com" % i,
                    j)
            T.check("keep-alive #%d: Connection: keep-alive" % i, not r.closes, r.headers)
            r = c.request("GET", "/stat")
            pids.add(r.json()["pid"])
        T.eq("keep-alive: one connection stays with one worker", len(pids), 1)

    # pipelining: all requests at once, replies in order
    with d.conn() as c:
        c.send(b"".join(harness.build_request("POST", "/checkv2", msg(100 + i)) for i in range(10)))
        ids = []
        for i in range(10):
            r = c.read_response()
            ids.append(r.json().get("message-id") if r.status == 200 else r.status)
        T.eq("pipelined replies in order", ids, ["m%d@example.com" % (100 + i) for i in range(10)])

    # pipelining past the server's read limit (64 KB buffered while a scan
    # runs): reading pauses, then resumes as requests are consumed; sent
    # from a thread, since the client blocks once the server stops reading
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (k, b"p" * 900) for k in range(10))
    flood = b"".join(harness.build_request("POST", "/checkv2", msg(200 + i, pad)) for i in range(60))
    with d.conn() as c:
        sender = threading.Thread(target=c.send, args=(flood,), daemon=True)
        sender.start()
        ids = []
        for i in range(60):
            r = c.read_response()
            ids.append(r.json().get("message-id") if r.status == 200 else r.status)
        sender.join(10)
        T.check("pipelined flood of %d KB: sender finished" % (len(flood) // 1024), not sender.is_alive(),
                "sender still blocked")
        T.eq("pipelined flood: 60 replies in order", ids, ["m%d@example.com" % (200 + i) for i in range(60)])

    # Connection: close is honoured
    with d.conn() as c:
        r = c.request("POST", "/checkv2", msg(1), keep_alive=False)
        T.check("Connection: close: 200 and close", r.status == 200 and r.closes, r)
        T.check("Connection: close: server closes", c.at_eof(10), c.buf)

    # HTTP/1.0 (what rspamc sends) closes by default, keeps alive on request
    with d.conn() as c:
        c.send(harness.build_request("POST", "/checkv2", msg(2), version="1.0"))
        r = c.read_response()
        T.check("HTTP/1.0: 200, HTTP/1.0 reply, close", r.status == 200 and r.closes and
                r.version == "HTTP/1.0", r)
        T.check("HTTP/1.0: server closes", c.at_eof(10))
    with d.conn() as c:
        for i in range(3):
            c.send(harness.build_request("POST", "/checkv2", msg(3), version="1.0",
                                         headers={"Connection": "keep-alive"}))
            r = c.read_response()
            T.check("HTTP/1.0 keep-alive #%d" % i, r.status == 200 and not r.closes, r)

    # Expect: 100-continue gets an interim 100 before the body is sent
    with d.conn() as c:
        body = msg(4)
        c.send(b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        c.sock.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.sock.recv(100)
        T.check("100 Continue", head.startswith(b"HTTP/1.1 100"), head)
        c.buf = head.split(b"\r\n\r\n", 1)[1]
        c.send(body)
        r = c.read_response()
        T.check("after 100 Continue: 200", r.status == 200 and r.json()["message-id"] ==
                "m4@example.com", r)


def test_listeners():
    sock = "/tmp/authscan-test-%d.sock" % os.getpid()
    sock2 = "/tmp/authscan-test-%d-b.sock" % os.getpid()
    p1, p2 = harness.free_port(), harness.free_port()
    d = harness.Daemon(workers=2, listen=["127.0.0.1:%d" % p1, "unix:%s" % sock,
                                          "127.0.0.1:%d" % p2, "unix:%s:0600" % sock2])
    try:
        with d:
            for p in (p1, p2):
                st, _, body = harness.http_request("127.0.0.1", p, "POST", "/checkv2",
                                                   harness.MULTI_FROM_MSG)
                T.check("TCP listener %d serves" % p, st == 200 and b"MULTIPLE_FROM" in body, body)
            for path in (sock, sock2):
                st, hdrs, body = harness.unix_request(path, "POST", "/checkv2",
                                                      harness.MULTI_FROM_MSG,
                                                      {"IP": "192.0.2.1", "From": "alice@example.com"})
                T.check("unix listener %s serves" % path, st == 200 and b"MULTIPLE_FROM" in body,
                        (st, body))
                T.check("unix listener: envelope works", b"R_SPF_ALLOW" in body, body)
            T.eq("unix socket mode", os.stat(sock2).st_mode & 0o777, 0o600)
            with harness.Conn(sock) as c:
                for i in range(5):
                    r, j = c.checkv2(msg(i))
                    T.check("unix keep-alive #%d" % i, r.status == 200 and not r.closes, r)
            d.wait_log(r"listening on unix:%s" % sock)
            T.check("log names the unix listener", True)
            # a second daemon cannot steal a live unix socket
            d2 = harness.Daemon(workers=1, listen=["unix:%s" % sock], ready_timeout=15)
            try:
                d2.start()
                T.check("second daemon on a live unix socket is refused", False)
            except harness.StartError as e:
                T.check("second daemon on a live unix socket is refused",
                        "in use" in str(e) or "another process" in str(e), str(e)[-500:])
            finally:
                d2.cleanup()
            st, _, _ = harness.unix_request(sock, "GET", "/ping")
            T.eq("first daemon still serves its unix socket", st, 200)
        T.check("unix socket files removed when the daemon stops",
                not os.path.exists(sock) and not os.path.exists(sock2),
                (os.path.exists(sock), os.path.exists(sock2)))
        # a stale socket file (left by a crash) is replaced by the next daemon
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(sock)
        stale.close()
        T.check("stale socket file exists", os.path.exists(sock))
        d3 = harness.Daemon(workers=1, listen=["unix:%s" % sock])
        with d3:
            st, _, body = harness.unix_request(sock, "GET", "/ping")
            T.eq("stale unix socket replaced", st, 200)
    finally:
        for p in (sock, sock2):
            try:
                os.unlink(p)
            except OSError:
                pass


def test_workers_and_respawn():
    with harness.Daemon(workers=3) as d:
        pids = d.worker_pids()
        T.eq("--workers 3 starts 3 workers", len(pids), 3)
        T.check("the workers are not the master", d.master_pid not in pids, pids)
        ready = set(int(p) for p in re.findall(
            r"authscand\[(\d+)\] worker#\d+ info: ready", d.log()))
        T.check("each worker logged ready", set(pids) <= ready, (pids, ready))
        # A burst of connections is spread over the workers (each accepts
        # one per loop pass).  Sequential connections are not: with one
        # shared accept queue the worker that wakes first takes each.
        seen = set()
        for _ in range(5):
            conns = [socket.create_connection(("127.0.0.1", d.port), timeout=10)
                     for _ in range(24)]
            try:
                for c in conns:
                    c.sendall(b"GET /stat HTTP/1.1\r\nHost: x\r\n\r\n")
                for c in conns:
                    data = b""
                    while b"}" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    m = re.search(rb'"pid":(\d+)', data)
                    if m:
                        seen.add(int(m.group(1)))
            finally:
                for c in conns:
                    c.close()
            if len(seen) >= 2:
                break
        T.check("connections are spread over workers", len(seen) >= 2, seen)

        # keep a connection to a surviving worker open across the kill
        victim = pids[1]
        stop = threading.Event()
        errors = []
        done = [0]

        def load():
            while not stop.is_set():
                try:
                    st, _ = d.checkv2(harness.SIMPLE_MSG, timeout=20)
                    if st != 200:
                        errors.append(st)
                    done[0] += 1
                except Exception as e:   # a connection accepted by the victim may die with it
                    errors.append(repr(e))
        th = threading.Thread(target=load)
        th.start()
        mark = d.log_mark()
        os.kill(victim, signal.SIGKILL)
        d.wait_log(r"worker#\d+ \(pid %d, generation 1\) killed by signal 9" % victim, since=mark)
        new = wait_for(lambda: (lambda p: p if len(p) == 3 and victim not in p else None)(
            d.worker_pids()), 30, what="a replacement worker")
        T.check("killed worker replaced by a new pid", victim not in new and len(new) == 3, new)
        T.check("the other workers kept their pids", set(pids) - {victim} <= set(new), (pids, new))
        d.wait_log(r"started worker#\d+ \(pid %d, generation 1\)" % (set(new) - set(pids)).pop(),
                   since=mark)
        T.check("master logs the restart", True)
        time.sleep(0.5)
        stop.set()
        th.join(60)
        # at most the requests in flight on the killed worker may fail
        T.check("service continued during the kill", done[0] > 0 and len(errors) <= 2,
                (done[0], errors))
        for i in range(20):
            st, r = d.checkv2(msg(i))
            if st != 200:
                break
        T.eq("service after respawn", st, 200)
        T.check("master still alive", d.alive())

        # a worker killed twice in a row is still replaced (backoff, not give-up)
        for _ in range(2):
            victim = d.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            # one snapshot per test: two reads of the list can straddle the
            # victim's death and see "3 workers" and "victim gone" separately
            wait_for(lambda: (lambda p: len(p) == 3 and victim not in p)(d.worker_pids()), 60,
                     what="replacement after repeated kill")
        T.eq("still 3 workers after repeated kills", len(d.worker_pids()), 3)
        T.eq("still serving", d.checkv2(harness.SIMPLE_MSG)[0], 200)
        T.eq("SIGTERM after kills: master exits 0", d.stop(), 0)


def test_sigterm_drain():
    """A scan waiting on DNS (slow.example times out after dns.timeout) and
    a request whose body is still arriving are both answered after SIGTERM,
    with Connection: close; idle keep-alive connections are closed; then
    the master exits 0 and removes its pid file."""
    d = harness.Daemon(workers=1, log_level="debug", pid_file=True,
                       args=["--set", "dns.timeout=3s", "--set", "limits.scan_timeout=20s"])
    with d:
        T.check("pid file written", os.path.exists(d.pid_path))
        with open(d.pid_path) as f:
            T.eq("pid file holds the master's pid", int(f.read().strip()), d.master_pid)
        worker = d.worker_pids()[0]

        # 1: an idle keep-alive connection
        idle = d.conn()
        r = idle.request("GET", "/ping")
        T.eq("idle conn: first request", r.status, 200)

        # 2: a slow scan in flight
        slow = d.conn(timeout=60)
        slow.send(harness.build_request("POST", "/checkv2", harness.SIMPLE_MSG,
                                        {"IP": "192.0.2.1", "From": "x@slow.example"}))
        # 3: a request whose body is not complete yet
        body = msg(7)
        partial = d.conn(timeout=60)
        partial.send(harness.build_request("POST", "/checkv2", body)[:-20])
        for c in (slow, partial):
            d.wait_log(r"http: connection from 127\.0\.0\.1:%d\b" % c.sock.getsockname()[1])
        time.sleep(0.3)   # let the worker read both requests
        t0 = time.monotonic()
        mark = d.log_mark()
        d.signal(signal.SIGTERM)
        # the master's stop message and its SIGTERM race; either starts it
        d.wait_log(r"worker#0 info: draining \((SIGTERM|daemon stopping)\)", since=mark)
        T.check("idle keep-alive connection closed on drain", idle.at_eof(10))
        idle.close()
        T.check("master waits for the in-flight scan", d.alive() and harness.pid_alive(worker))

        partial.send(harness.build_request("POST", "/checkv2", body)[-20:])
        r = partial.read_response()
        T.check("request received during drain: 200", r.status == 200, r)
        T.check("request received during drain: right reply",
                r.status == 200 and r.json()["message-id"] == "m7@example.com", r)
        T.check("request received during drain: Connection: close", r.closes, r.headers)
        partial.close()

        r = slow.read_response()
        elapsed = time.monotonic() - t0
        T.check("in-flight scan answered: 200", r.status == 200, r)
        j = r.json() if r.status == 200 else {}
        T.check("in-flight scan really waited on DNS",
                "R_SPF_DNSFAIL" in j.get("symbols", {}) or "R_SPF_TEMPFAIL" in j.get("symbols", {})
                or j.get("time_real", 0) > 1.5, j)
        T.check("in-flight scan: Connection: close", r.closes, r.headers)
        T.check("in-flight scan finished after SIGTERM (%.1fs)" % elapsed, elapsed > 0.5)
        slow.close()
        rc = d.wait_exit(60)
        T.eq("master exits 0 after the drain", rc, 0)
        T.check("worker gone", not harness.pid_alive(worker))
        T.check("pid file removed", not os.path.exists(d.pid_path))
        T.check("log says stopped", "master notice: stopped" in d.log())
        T.check("no worker crash logged", "killed by signal" not in d.log(), d.log()[-2000:])


def test_stat(d):
    before = d.stat()
    for key in ("pid", "scanned", "errors", "actions"):
        T.check("/stat has %s" % key, key in before, before)
    for i in range(5):
        d.checkv2(msg(i))
    d.checkv2(harness.MULTI_FROM_MSG)
    d.request("POST", "/checkv2", b"x", {"IP": "not-an-ip"})
    after = d.stat()
    T.eq("/stat: one worker", after["pid"], before["pid"])
    T.eq("/stat: scanned counts scans", after["scanned"] - before["scanned"], 6)
    T.eq("/stat: errors counts the bad request", after["errors"] - before["errors"], 1)
    T.eq("/stat: add header counted", after["actions"]["add header"] -
         before["actions"]["add header"], 1)
    T.eq("/stat: no action counted", after["actions"]["no action"] -
         before["actions"]["no action"], 5)


def main():
    with harness.Daemon(workers=2) as d:
        T.run(test_checkv2_shape, d)
        T.run(test_envelope, d)
        T.run(test_ping_and_unknown, d)
        T.run(test_keepalive, d)
        T.check("no worker died", "killed by signal" not in d.log() and
                "exited with status" not in d.log(), d.log()[-3000:])
    with harness.Daemon(workers=1) as d:
        T.run(test_stat, d)
    T.run(test_listeners)
    T.run(test_workers_and_respawn)
    T.run(test_sigterm_drain)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
