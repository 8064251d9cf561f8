#!/usr/bin/python3
"""test_faults.py - the fault matrix (issue 18): every row is a fault the
daemon must survive, its setup, the load that runs through it, and the
outcome that is checked.  docs/reliability.md lists the rows and quotes
the results this test writes.

A row either runs here (`run`), or points to the test that checks it fully
(`ref` = "test_x.py:function" plus a phrase that test must contain): the
matrix then checks that the test and its check still exist, so a row
cannot silently lose its test.  Every run row measures requests sent,
answered (a well-formed reply: 200 with a JSON verdict, or the clear
refusal the row expects), failed (anything else: reset, hang, malformed
reply), the slowest answer and the wall time, and checks:
  - answered == sent, unless the row says otherwise (worker SIGKILL);
  - the slowest answer within the row's bound;
  - the row's own expectations (symbols, refusal text, log line);
  - afterwards the daemon still serves a clean scan, and no sanitizer
    report is in its log.

Results go to $AUTHSCAN_BUILD/faults.md (the table docs/reliability.md
quotes) and to stdout.  FAULTS_ROWS="dns-dead redis-full" runs only those.
Prints "N passed, N failed"; exits non-zero on failure."""
import concurrent.futures
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import milter_client  # noqa: E402

T = harness.Tests("faults")
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = []

ZONE = """$ORIGIN .
$TTL 300
example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. TXT "v=DMARC1; p=none"
"""
ENV = {"IP": "192.0.2.1", "From": "alice@example.com", "Helo": "mail.example.com"}


def message(n=0, extra=b"", body=b"hi\r\n"):
    return (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
            b"Subject: fault %d\r\nMessage-ID: <f%d@example.com>\r\n" % (n, n)
            + extra + b"\r\n" + body)


# ---------------------------------------------------------------------------
# load and measurement


class Result:
    def __init__(self, row):
        self.row = row
        self.sent = self.answered = self.failed = 0
        self.worst = 0.0
        self.t0 = time.monotonic()
        self.wall = 0.0
        self.errors = []
        self.note = ""
        self.lock = threading.Lock()

    def add(self, took, ok, detail=None):
        with self.lock:
            self.sent += 1
            if ok:
                self.answered += 1
            else:
                self.failed += 1
                if len(self.errors) < 3:
                    self.errors.append(detail)
            self.worst = max(self.worst, took)


def scan_ok(reply):
    return isinstance(reply, dict) and "action" in reply and "symbols" in reply


def http_scan(d, res, msg=None, headers=None, n=0, timeout=60.0, want=None):
    """One /checkv2 into res; returns the reply (dict) or None.  want:
    a predicate on the reply that makes it count as answered."""
    t0 = time.monotonic()
    try:
        st, reply = d.checkv2(msg if msg is not None else message(n), headers=headers or ENV,
                              timeout=timeout)
        ok = st == 200 and scan_ok(reply) and (want is None or want(reply))
        res.add(time.monotonic() - t0, ok, (st, reply) if not ok else None)
        return reply
    except Exception as e:  # the row reports it
        res.add(time.monotonic() - t0, False, repr(e))
        return None


def load(d, res, n, par=8, **kw):
    with concurrent.futures.ThreadPoolExecutor(par) as ex:
        return list(ex.map(lambda i: http_scan(d, res, n=i, **kw), range(n)))


class Background:
    """par clients scanning back to back until stop(): the load a fault
    is injected into."""

    def __init__(self, d, res, par=8):
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(d, res, i), daemon=True)
                        for i in range(par)]
        for th in self.threads:
            th.start()

    def client(self, d, res, i):
        n = 0
        while not self.stopping.is_set():
            http_scan(d, res, n=1000 * i + n)
            n += 1

    def stop(self):
        self.stopping.set()
        for th in self.threads:
            th.join(60)


def finish(res, d, bound, allow_failed=0, expect=""):
    """The checks every run row shares; records the row."""
    res.wall = time.monotonic() - res.t0
    T.check("%s: answered %d of %d (failed %d, at most %d allowed)" % (
        res.row, res.answered, res.sent, res.failed, allow_failed),
        res.sent > 0 and res.failed <= allow_failed, res.errors)
    T.check("%s: slowest answer %.2fs within %.1fs" % (res.row, res.worst, bound),
            res.worst <= bound)
    if d is not None:
        after = Result(res.row + " after")
        http_scan(d, after)
        T.eq("%s: a clean scan is served afterwards" % res.row, after.answered, 1)
        log = d.log()
        T.check("%s: no sanitizer report" % res.row,
                "Sanitizer" not in log and "runtime error" not in log, log[-2000:])
    res.expect = expect
    RESULTS.append(res)


# ---------------------------------------------------------------------------
# DNS: dead, silent, slow, garbage


class DnsServer:
    """A UDP 'DNS server' on 127.0.0.1 misbehaving on purpose:
    silent: reads queries, never answers;
    slow:   answers NXDOMAIN after `delay` (0.25 s: below libunbound's first
            retransmission at about 376 ms; an answer after it goes to a
            closed port, and the server looks silent);
    garbage: answers every query with one of: random bytes, the right ID
            with random rest, a 5-byte packet, a header claiming 5 answers
            with none, a truncated (TC) empty answer, the right question
            with a wrong ID."""

    def __init__(self, mode, delay=0.25):
        self.mode, self.delay = mode, delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self.stop = False
        self.rng = random.Random(18)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def reply(self, q, addr, flags, an=0, tail=b""):
        # the question only (the query's EDNS record is not echoed)
        i = 12
        while i < len(q) and q[i]:
            i += 1 + q[i]
        qd = q[12:i + 5]
        self.sock.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, an, 0, 0) + qd + tail, addr)

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                q, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.mode == "silent" or len(q) < 12:
                continue
            if self.mode == "slow":
                threading.Timer(self.delay, self.reply, (q, addr, 0x8183)).start()
                continue
            kind = self.queries % 6
            if kind == 0:
                self.sock.sendto(bytes(self.rng.getrandbits(8) for _ in range(40)), addr)
            elif kind == 1:
                self.sock.sendto(q[:2] + bytes(self.rng.getrandbits(8) for _ in range(60)), addr)
            elif kind == 2:
                self.sock.sendto(q[:5], addr)
            elif kind == 3:
                self.reply(q, addr, 0x8180, an=5)
            elif kind == 4:
                self.reply(q, addr, 0x8380)          # TC: the retry over TCP is refused
            else:
                bad = bytes([q[0] ^ 0xff, q[1]]) + q[2:]
                self.reply(bad, addr, 0x8180, an=1, tail=b"\xc0\x0c\x00\x01\x00\x01"
                           b"\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01")

    def close(self):
        self.stop = True
        self.sock.close()


def row_dns(mode):
    def run():
        res = Result("dns-" + mode)
        srv = None
        if mode == "dead":
            port = harness.free_port()   # nothing listens there (UDP: port unreachable)
        else:
            srv = DnsServer(mode)
            port = srv.port
        config = "dns.servers = 127.0.0.1:%d\ndns.timeout = 1s\n" % port
        try:
            with harness.Daemon(workers=2, zone=None, config=config) as d:
                replies = load(d, res, 24)
                syms = [set(r["symbols"]) for r in replies if scan_ok(r)]
                if mode == "slow":
                    T.check("dns-slow: SPF got its answer (NXDOMAIN: R_SPF_NA), no DNSFAIL",
                            syms and all("R_SPF_DNSFAIL" not in s for s in syms), syms[:2])
                else:
                    T.check("dns-%s: every scan says R_SPF_DNSFAIL" % mode,
                            len(syms) == res.sent and all("R_SPF_DNSFAIL" in s for s in syms),
                            syms[:2])
                if srv:
                    res.note = "%d queries reached the server" % srv.queries
                # SPF, then DMARC's lookups: up to 3 in a row, each ending
                # at dns.timeout
                finish(res, d, bound=3 * 1.0 + 3.0,
                       expect="every scan answered within 3 x dns.timeout (1s) + 3s, "
                              + ("no DNS failure symbol" if mode == "slow"
                                 else "with R_SPF_DNSFAIL"))
        finally:
            if srv:
                srv.close()
    return run


# ---------------------------------------------------------------------------
# Redis: dead from the start, full (maxmemory + noeviction)

REDIS_TIMEOUT = 0.3


def row_redis_dead():
    res = Result("redis-dead")
    config = "redis.servers = 127.0.0.1:%d\nredis.timeout = %gs\n" % (harness.free_port(),
                                                                     REDIS_TIMEOUT)
    with harness.Daemon(workers=2, zone=ZONE, config=config) as d:
        replies = load(d, res, 24)
        T.check("redis-dead: no history symbol (fail open)",
                all(not any(s.startswith("HISTORY_") for s in r["symbols"])
                    for r in replies if scan_ok(r)))
        T.eq("redis-dead: /stat says down", d.stat().get("redis", {}).get("state"), "down")
        finish(res, d, bound=REDIS_TIMEOUT + 3.0,
               expect="every scan answered within redis.timeout + 3s, no history symbol, "
                      "/stat redis.state down")


def row_redis_full():
    res = Result("redis-full")
    with harness.RedisServer() as r:
        r.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
        r.cmd("CONFIG", "SET", "maxmemory", "1")
        config = "redis.servers = %s\nredis.timeout = %gs\nhistory.cache_ttl = 0\n" % (
            r.address, REDIS_TIMEOUT)
        with harness.Daemon(workers=2, zone=ZONE, config=config) as d:
            load(d, res, 24)
            st = d.stat().get("redis", {})
            T.check("redis-full: the refused writes are counted as errors in /stat",
                    st.get("errors", 0) > 0, st)
            T.eq("redis-full: nothing was written", r.cmd("DBSIZE"), 0)
            res.note = "redis errors in /stat: %s" % st.get("errors")
            finish(res, d, bound=REDIS_TIMEOUT + 3.0,
                   expect="every scan answered; writes refused (OOM) are counted, "
                          "nothing written")


# ---------------------------------------------------------------------------
# processes: worker SIGKILL under load, SIGHUP with a broken config


def row_worker_kill():
    res = Result("worker-sigkill")
    with harness.Daemon(workers=2, zone=ZONE) as d:
        before = d.worker_pids()
        bg = Background(d, res)
        harness.wait_for(lambda: res.sent >= 50, 30, what="load under way")
        os.kill(before[0], signal.SIGKILL)
        harness.wait_for(lambda: len(d.worker_pids()) == 2 and before[0] not in d.worker_pids(),
                         30, what="the worker respawned")
        n = res.sent
        harness.wait_for(lambda: res.sent >= n + 100, 30, what="load after the respawn")
        bg.stop()
        # a replacement that dies young is replaced again after a back-off
        # (0.1s and up): wait for the count, the log says what happened
        try:
            harness.wait_for(lambda: len(d.worker_pids()) == 2, 15, what="two workers")
        except TimeoutError:
            pass
        after = d.worker_pids()
        T.check("worker-sigkill: respawned (%s -> %s)" % (before, after),
                before[0] not in after and len(after) == 2)
        res.note = "%d lost with the killed worker (its in-flight requests)" % res.failed
        # a killed worker loses what it held (at most one per connection in
        # flight: 8 here); everything else is answered
        finish(res, d, bound=10.0, allow_failed=8,
               expect="at most the killed worker's in-flight requests (<= 8 connections) "
                      "fail; the master respawns it; the rest is answered")


def row_hup_broken():
    res = Result("sighup-broken-config")
    good = "workers = 2\n"
    with harness.Daemon(workers=None, expect_workers=2, config=good, zone=ZONE) as d:
        before = d.worker_pids()
        bg = Background(d, res)
        harness.wait_for(lambda: res.sent >= 50, 30, what="load under way")
        d.write_config("workers = 2\nworkres = 4\n")
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"reload aborted[^\n]*", since=mark)
        n = res.sent
        harness.wait_for(lambda: res.sent >= n + 100, 30, what="load after the reload")
        bg.stop()
        T.check("sighup-broken-config: the error names file:line",
                "%s:2:" % d.config_path in m.group(0), m.group(0))
        T.eq("sighup-broken-config: the old workers keep serving", d.worker_pids(), before)
        finish(res, d, bound=10.0,
               expect="every request answered, the reload refused with file:line, "
                      "same workers")


# ---------------------------------------------------------------------------
# slow-loris on every protocol


def trickle(addr, first, stop, closed_at, t0):
    """Sends `first` one byte every 0.2 s until the server closes."""
    try:
        s = socket.create_connection(addr, timeout=5)
    except OSError:
        closed_at.append(None)
        return
    s.settimeout(0.2)
    i = 0
    try:
        while not stop.is_set():
            try:
                s.send(first[i % len(first):i % len(first) + 1])
                i += 1
                if s.recv(4096) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        closed_at.append(time.monotonic() - t0 if not stop.is_set() else None)
    finally:
        s.close()


def milter_scan(addr, res):
    t0 = time.monotonic()
    try:
        c = milter_client.MilterClient(addr, timeout=30)
        c.negotiate()
        out = c.message("<alice@example.com>", ["<bob@example.org>"],
                        [("From", "alice@example.com"), ("Subject", "x")], b"hi\r\n",
                        ip="192.0.2.1")
        c.close()
        ok = out and out[-1] is not None
        res.add(time.monotonic() - t0, ok, out)
    except Exception as e:
        res.add(time.monotonic() - t0, False, repr(e))


def spamd_scan(port, res, data=None):
    t0 = time.monotonic()
    msg = message()
    data = data or (b"CHECK SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(msg) + msg)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        res.add(time.monotonic() - t0, out.startswith(b"SPAMD/1.") and b" EX_OK" in out, out[:200])
        return out
    except Exception as e:
        res.add(time.monotonic() - t0, False, repr(e))
        return None


def daemon_all_protocols(config="", **kw):
    http_port, milter_port, spamd_port = (harness.free_port() for _ in range(3))
    d = harness.Daemon(workers=1, zone=ZONE,
                       config="spamd.trusted_networks = 127.0.0.0/8\n" + config,
                       listen=["127.0.0.1:%d" % http_port, "milter@127.0.0.1:%d" % milter_port,
                               "spamd@127.0.0.1:%d" % spamd_port], **kw)
    d.milter_addr = ("127.0.0.1", milter_port)
    d.spamd_port = spamd_port
    return d


def row_slowloris():
    res = Result("slow-loris")
    config = "limits.header_timeout = 2s\nlimits.read_timeout = 4s\nmilter.timeout = 2s\n"
    with daemon_all_protocols(config) as d:
        stop = threading.Event()
        closed = {"http": [], "milter": [], "spamd": []}
        t0 = time.monotonic()
        firsts = {
            "http": (("127.0.0.1", d.port), b"POST /checkv2 HTTP/1.1\r\nHost: x\r\n" * 50),
            # an OPTNEG packet that never ends: 4000 bytes announced
            "milter": (d.milter_addr, struct.pack(">I", 4000) + b"O" + b"\0" * 3999),
            "spamd": (("127.0.0.1", d.spamd_port), b"CHECK SPAMC/1.5\r\nUser: x\r\n" * 50),
        }
        threads = []
        for proto, (addr, first) in firsts.items():
            for _ in range(10):
                th = threading.Thread(target=trickle, args=(addr, first, stop, closed[proto], t0),
                                      daemon=True)
                th.start()
                threads.append(th)
        time.sleep(0.5)
        # the real clients are served while the loris connections hang on
        http_scan(d, res)
        milter_scan(d.milter_addr, res)
        spamd_scan(d.spamd_port, res)
        try:
            harness.wait_for(lambda: all(len(v) == 10 for v in closed.values()), 20,
                             what="every loris connection closed")
        except TimeoutError:
            pass
        stop.set()
        for th in threads:
            th.join(2)
        for proto, times in closed.items():
            got = [x for x in times if x is not None]
            T.check("slow-loris %s: the daemon closed all 10 connections (%d), each within "
                    "its timeout (2s) + 2s: %s" % (proto, len(got), ["%.1f" % x for x in got]),
                    len(got) == 10 and max(got) < 4.5)
        res.note = "loris connections closed after (s): " + ", ".join(
            "%s %.1f" % (p, max([x for x in v if x is not None] or [0])) for p, v in closed.items())
        finish(res, d, bound=5.0,
               expect="10 loris connections per protocol closed by limits.header_timeout / "
                      "milter.timeout (2s) + 2s; real clients on each protocol served meanwhile")


# ---------------------------------------------------------------------------
# big and hostile input


def row_big_message():
    res = Result("message-50MB")
    with harness.Daemon(workers=1, zone=ZONE, config="limits.max_message_size = 64M\n") as d:
        pids = d.worker_pids()
        line = b"x" * 998 + b"\r\n"
        body = line * (50 * 1024 * 1024 // len(line))
        http_scan(d, res, msg=message(body=body), timeout=120)
        T.eq("message-50MB: same worker", d.worker_pids(), pids)
        finish(res, d, bound=60.0, expect="a 50 MB message scanned (200) under "
                                          "limits.max_message_size = 64M, worker alive")


def row_many_headers():
    res = Result("headers-100000")
    with harness.Daemon(workers=1, zone=ZONE) as d:
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(100000))
        t0 = time.monotonic()
        try:
            st, reply = d.checkv2(message(extra=extra), headers=ENV, timeout=60)
            ok = st == 413 and "limits.max_headers" in json.dumps(reply)
            res.add(time.monotonic() - t0, ok, (st, reply))
        except Exception as e:
            res.add(time.monotonic() - t0, False, repr(e))
    with harness.Daemon(workers=1, zone=ZONE,
                        config="limits.max_headers = 200000\nlimits.max_header_size = 8M\n") as d:
        http_scan(d, res, msg=message(extra=extra), timeout=60)
        finish(res, d, bound=30.0, expect="413 naming limits.max_headers by default; "
                                          "scanned (200) with the limits raised")


def row_recipients():
    res = Result("recipients-10000")
    with daemon_all_protocols() as d:
        t0 = time.monotonic()
        try:
            c = milter_client.MilterClient(d.milter_addr, timeout=60)
            c.negotiate()
            rcpts = ["<r%d@example.org>" % i for i in range(10000)]
            out = c.message("<alice@example.com>", rcpts, [("From", "alice@example.com")],
                            b"hi\r\n", ip="192.0.2.1")
            c.close()
            res.add(time.monotonic() - t0, bool(out) and out[-1] is not None, out)
        except Exception as e:
            res.add(time.monotonic() - t0, False, repr(e))
        finish(res, d, bound=30.0, expect="a milter transaction with 10,000 RCPT answered "
                                          "(the first MILTER_MAX_RCPTS kept)")


HOSTILE = [
    ("malformed MIME", b"Content-Type: multipart/mixed; boundary=\"b\r\n",
     b"--b\r\nContent-Type: multipart/alternative; boundary=\"\"\r\n\r\n--\r\n--b--\r\n--b\r\n"),
    ("MIME nested 200 deep", b"Content-Type: multipart/mixed; boundary=\"0\"\r\n",
     b"".join(b"--%d\r\nContent-Type: multipart/mixed; boundary=\"%d\"\r\n\r\n" % (i, i + 1)
              for i in range(200))),
    ("NUL bytes", b"Subject: a\0b\r\nX-N: \0\0\0\r\n", b"body\0with\0nuls\r\n"),
    ("invalid UTF-8", b"Subject: \xff\xfe\xc3\x28 \xed\xa0\x80\r\n", b"\xf8\x88\x80\x80\x80\r\n"),
    ("IDN From", None, b"hi\r\n"),
    ("invalid IDN / punycode", b"Reply-To: a@xn--zz-.example\r\n", b"hi\r\n"),
]


def row_hostile_content():
    res = Result("hostile-content")
    with harness.Daemon(workers=1, zone=ZONE) as d:
        pids = d.worker_pids()
        for name, extra, body in HOSTILE:
            if extra is None:
                msg = ("From: J\u00fcrgen <j@b\u00fccher.example>\r\nTo: x@xn--bcher-kva.example\r\n"
                       "Subject: idn\r\n\r\n").encode() + body
                hdrs = dict(ENV, From="j@b\u00fccher.example".encode())
            else:
                msg, hdrs = message(extra=extra, body=body), ENV
            reply = http_scan(d, res, msg=msg, headers=hdrs)
            if reply is None:
                T.check("hostile-content: %s answered" % name, False, res.errors)
        T.eq("hostile-content: same worker", d.worker_pids(), pids)
        finish(res, d, bound=10.0, expect="every message scanned (200, JSON verdict), "
                                          "worker alive")


def row_truncated_packets():
    res = Result("truncated-packets")
    with daemon_all_protocols("milter.timeout = 2s\n") as d:
        pids = d.worker_pids()
        cases = [
            ("milter length only", d.milter_addr, b"\x00\x00"),
            ("milter header, no data", d.milter_addr, struct.pack(">I", 100) + b"O"),
            ("milter huge length", d.milter_addr, b"\xff\xff\xff\xffO"),
            ("milter zero length", d.milter_addr, b"\x00\x00\x00\x00"),
            ("milter options cut", d.milter_addr, struct.pack(">I", 5) + b"O\x00\x00\x00\x06"),
            ("spamd head cut", ("127.0.0.1", d.spamd_port), b"CHECK SPAMC/1.5\r\nContent-le"),
            ("spamd body short", ("127.0.0.1", d.spamd_port),
             b"CHECK SPAMC/1.5\r\nContent-length: 100\r\n\r\nFrom: a@b\r\n"),
            ("spamd bad length", ("127.0.0.1", d.spamd_port),
             b"CHECK SPAMC/1.5\r\nContent-length: -5\r\n\r\n"),
        ]
        for name, addr, data in cases:
            t0 = time.monotonic()
            try:
                s = socket.create_connection(addr, timeout=10)
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(10)
                while s.recv(65536):
                    pass
                s.close()
                res.add(time.monotonic() - t0, True)
            except socket.timeout:
                res.add(time.monotonic() - t0, False, "%s: not closed in 10s" % name)
            except OSError:
                res.add(time.monotonic() - t0, True)   # reset is a close too
        # each protocol still serves whole requests
        milter_scan(d.milter_addr, res)
        spamd_scan(d.spamd_port, res)
        T.eq("truncated-packets: same worker", d.worker_pids(), pids)
        finish(res, d, bound=10.0, expect="every truncated packet ends its connection "
                                          "(error reply or close) at once; whole requests "
                                          "served after; worker alive")


# ---------------------------------------------------------------------------
# rows checked elsewhere


def check_ref(name, ref, phrase):
    path, _, func = ref.partition(":")
    try:
        with open(os.path.join(HERE, path)) as f:
            text = f.read()
    except OSError as e:
        T.check("%s: %s exists" % (name, path), False, str(e))
        return
    T.check("%s: %s has def %s" % (name, path, func), ("def %s(" % func) in text)
    T.check("%s: %s checks %r" % (name, path, phrase), phrase in text)


ROWS = [
    # name, run (or None), ref "file:function" (or None), phrase, expectation
    ("dns-dead", row_dns("dead"), "test_dns_deadline.py:cli", "R_SPF_DNSFAIL", None),
    ("dns-silent", row_dns("silent"), None, None, None),
    ("dns-slow", row_dns("slow"), None, None, None),
    ("dns-garbage", row_dns("garbage"), None, None, None),
    ("redis-dead", row_redis_dead, None, None, None),
    ("redis-paused", None, "test_history.py:faults", '"CLIENT", "PAUSE"',
     "CLIENT PAUSE 3s under 16 parallel scans: every request answered within redis.timeout "
     "+ 1s, fail open"),
    ("redis-killed", None, "test_history.py:faults", "r.kill()",
     "redis-server killed under 40 parallel scans: every request answered; queued writes "
     "land after the restart"),
    ("redis-full", row_redis_full, None, None, None),
    ("worker-sigkill", row_worker_kill, "test_poison.py:test_culprit_and_bystanders",
     "SIGKILL", None),
    ("sighup-broken-config", row_hup_broken, "test_reload.py:test_broken_reload",
     "reload aborted", None),
    ("lua-runaway", None, "test_lua.py:test_hostile_rules", "while true do end",
     "endless loops (also inside pcall) stopped by lua.max_instructions; the scan is "
     "answered with LUA_* error symbols, the worker lives"),
    ("slow-loris", row_slowloris, "test_connections.py:test_silent_flood", "def test_silent_flood",
     None),
    ("message-50MB", row_big_message, "test_bad_input.py:size_steps", "max_message_size", None),
    ("recipients-10000", row_recipients, None, None, None),
    ("headers-100000", row_many_headers, "test_bad_input.py:header_steps", "max_headers", None),
    ("hostile-content", row_hostile_content, "test_hostile.py:run_group", "bystander", None),
    ("truncated-packets", row_truncated_packets, "test_milter.py:malformed", "def malformed",
     None),
    ("spamd-raw", None, "test_spamd.py:test_raw_protocol", "def test_raw_protocol",
     "bad spamd heads, lengths and compressed bodies answered with EX_* codes"),
]


def write_results():
    lines = ["| row | sent | answered | failed | slowest | wall | expected | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in RESULTS:
        if r.sent == 0:
            lines.append("| %s | | | | | | %s | %s |" % (r.row, r.expect, r.note))
            continue
        lines.append("| %s | %d | %d | %d | %.2fs | %.1fs | %s | %s |" % (
            r.row, r.sent, r.answered, r.failed, r.worst, r.wall, r.expect, r.note))
    text = "\n".join(lines) + "\n"
    print(text)
    out = os.path.join(harness.BUILD, "faults.md")
    try:
        with open(out, "w") as f:
            f.write(text)
    except OSError:
        pass


def main():
    only = set(os.environ.get("FAULTS_ROWS", "").split())
    for name, run, ref, phrase, expect in ROWS:
        if only and name not in only:
            continue
        if ref:
            check_ref(name, ref, phrase)
        if run:
            T.run(run)
        elif expect:
            r = Result(name)
            r.expect, r.note = expect, "checked by " + ref
            RESULTS.append(r)
    write_results()


if __name__ == "__main__":
    main()
    sys.exit(T.finish())
