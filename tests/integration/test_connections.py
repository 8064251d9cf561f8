#!/usr/bin/python3
"""Connection-level defences of authscand (issue 10, items 6 and 7).

SIGTERM: the daemon stops listening before it drains.  A connection the
kernel had already queued (the worker was at limits.max_connections) is
still answered, an in-flight scan completes, and a connect made after the
drain started is refused (ECONNREFUSED) instead of being queued and reset
when the last worker exits.

Silent and slow connections: with limits.header_timeout=1s, a flood of
silent connections that fills the worker is cut after about a second, and
a normal client queued behind it is answered (before: 60 s); a client that
drips its request a byte at a time gets a 408 at the same deadline (it
cannot push it back); a served keep-alive connection is not cut by it;
the worker does not spin while it is full; a log line says what happened.

Per-address limit: limits.max_connections_per_ip=3: the fourth connection
from 127.0.0.1 is answered 503 naming the limit, with a (rate-limited) log
line; 127.0.0.2 and unix-socket clients are still served; closing one
connection makes room again.
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("connections")
SLOW_ENV = {"IP": "192.0.2.1", "From": "x@slow.example"}


class SrcConn(harness.Conn):
    """A client connection from a chosen local address (any 127.x.y.z
    reaches the daemon on 127.0.0.1)."""

    def __init__(self, addr, src="127.0.0.1", timeout=30.0):
        self.sock = socket.create_connection(addr, timeout, source_address=(src, 0))
        self.buf = b""


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def answered_ping(c, what):
    try:
        r = c.request("GET", "/ping")
        return T.check(what, r.status == 200 and r.body.startswith(b"pong"), r)
    except (OSError, EOFError) as e:
        return T.check(what, False, repr(e))


# ---------------------------------------------------------------------------
# item 6


def test_sigterm_stops_listening():
    d = harness.Daemon(workers=1, args=["--set", "dns.timeout=3s",
                                        "--set", "limits.scan_timeout=20s",
                                        "--set", "limits.max_connections=2"])
    with d:
        worker = d.worker_pids()[0]
        idle = d.conn()
        T.eq("idle keep-alive connection served", idle.request("GET", "/ping").status, 200)
        slow = d.conn(timeout=60)
        slow.send(harness.build_request("POST", "/checkv2", harness.SIMPLE_MSG, SLOW_ENV))
        time.sleep(0.3)
        # the worker is at limits.max_connections: this one waits in the
        # kernel's accept queue, its request already sent
        queued = d.conn(timeout=30)
        queued.send(harness.build_request("GET", "/ping"))
        queued.sock.settimeout(0.5)
        try:
            early = queued.sock.recv(100)
        except socket.timeout:
            early = None
        T.check("queued connection not accepted while the worker is full", early is None, early)
        queued.sock.settimeout(30)

        mark = d.log_mark()
        d.signal(signal.SIGTERM)
        d.wait_log(r"worker#0 info: draining", since=mark)

        # connects now are refused; one that slips in before the worker
        # shut the socket is still answered (it is accepted by the sweep)
        refused, slipped, t0 = False, 0, time.monotonic()
        while time.monotonic() - t0 < 10:
            try:
                c = d.conn(timeout=10)
            except ConnectionRefusedError:
                refused = True
                break
            slipped += 1
            answered_ping(c, "connection made while stopping is answered, not reset")
            c.close()
            time.sleep(0.05)
        T.check("connect during the drain: ECONNREFUSED (%d slipped in first)" % slipped, refused)

        r = queued.read_response()
        T.check("queued connection answered after SIGTERM", r.status == 200 and r.body == b"pong\r\n",
                r)
        T.check("queued connection: Connection: close", r.closes, r.headers)
        T.check("idle keep-alive connection closed", idle.at_eof(10))
        r = slow.read_response()
        T.check("in-flight scan answered during the drain",
                r.status == 200 and r.json()["message-id"] == "simple-1@example.com", r)
        T.check("in-flight scan: Connection: close", r.closes, r.headers)
        T.check("worker still drained the scan (was alive)", True)
        for c in (idle, slow, queued):
            c.close()
        T.eq("master exits 0", d.wait_exit(60), 0)
        T.check("worker gone", not harness.pid_alive(worker))
        T.check("no reset or accept error logged", "accept failed" not in d.log(), d.log()[-2000:])


# ---------------------------------------------------------------------------
# item 7


def test_silent_flood():
    d = harness.Daemon(workers=1, args=["--set", "limits.header_timeout=1s",
                                        "--set", "limits.idle_timeout=30s",
                                        "--set", "limits.read_timeout=20s",
                                        "--set", "limits.max_connections=64",
                                        "--set", "limits.max_connections_per_ip=0"])
    with d:
        worker = d.worker_pids()[0]
        served = d.conn()
        T.eq("keep-alive client served", served.request("GET", "/ping").status, 200)

        # a request dripped a byte at a time: the deadline does not move
        drip = d.conn(timeout=10)
        t0 = time.monotonic()
        req = b"GET /ping HTTP/1.1\r\nX-Slow: " + b"a" * 100
        r = None
        for ch in req:
            try:
                drip.send(bytes([ch]))
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - t0 > 6:
                break
            drip.sock.settimeout(0.001)
            try:
                drip._fill()
            except (socket.timeout, EOFError, OSError):
                pass
            drip.sock.settimeout(10)
            if b"\r\n\r\n" in drip.buf:
                break
        try:
            r = drip.read_response()
        except (OSError, EOFError) as e:
            r = e
        el = time.monotonic() - t0
        T.check("dripped request: 408", getattr(r, "status", None) == 408, r)
        T.check("dripped request: the 408 names limits.header_timeout",
                b"limits.header_timeout" in getattr(r, "body", b""), r)
        T.check("dripped request cut at header_timeout, not extended (%.1fs)" % el, 0.8 < el < 4)
        drip.close()

        # 100 silent connections: 64 fill the worker, 36 wait in the queue
        mark = d.log_mark()
        silent = [harness.Conn(d.addr, timeout=20) for _ in range(100)]
        t0 = time.monotonic()
        time.sleep(0.2)
        cpu0 = cpu_seconds(worker)
        time.sleep(0.5)
        cpu = cpu_seconds(worker) - cpu0
        T.check("worker at max_connections does not spin (%.2fs CPU in 0.5s)" % cpu, cpu < 0.2)
        # a normal client behind them (another address: no per-address limit here anyway)
        normal = SrcConn(d.addr, "127.0.0.2", timeout=20)
        answered_ping(normal, "normal client answered behind the flood")
        el = time.monotonic() - t0
        T.check("... within a few seconds, not idle_timeout (%.1fs)" % el, el < 8)
        normal.close()
        cut = 0
        for c in silent:
            if c.at_eof(10):
                cut += 1
            c.close()
        el = time.monotonic() - t0
        T.eq("silent connections closed by the server", cut, 100)
        T.check("all cut within a few header_timeouts (%.1fs)" % el, el < 15)
        d.wait_log(r"no request within 1s \(limits\.header_timeout\)", since=mark)
        d.wait_log(r"limits\.max_connections\): not accepting more", since=mark)
        n = len([l for l in d.log()[mark:].splitlines() if "limits.header_timeout" in l])
        T.check("header_timeout log lines are rate-limited (%d lines for 100 events)" % n, 1 <= n <= 6)

        # the keep-alive connection served before was not cut by header_timeout
        answered_ping(served, "keep-alive connection still usable after the flood")
        served.close()
        T.check("no worker died", d.worker_pids() == [worker])
        T.eq("clean shutdown", d.stop(), 0)


def test_per_address_limit():
    d = harness.Daemon(workers=1, args=["--set", "limits.max_connections_per_ip=3",
                                        "--set", "limits.header_timeout=20s"])
    sock = d.path("a.sock")
    d.listen = ["127.0.0.1:%d" % harness.free_port(), "unix:" + sock]
    with d:
        mark = d.log_mark()
        held = [SrcConn(d.addr) for _ in range(3)]
        time.sleep(0.3)
        over = SrcConn(d.addr, timeout=10)
        try:
            r = over.read_response()
        except (OSError, EOFError) as e:
            r = e
        T.check("4th connection from one address: 503", getattr(r, "status", None) == 503, r)
        T.check("503 names limits.max_connections_per_ip",
                b"limits.max_connections_per_ip" in getattr(r, "body", b""), r)
        T.check("503 closes", getattr(r, "closes", False))
        over.close()
        d.wait_log(r"127\.0\.0\.1 already has 3 connections to this worker "
                   r"\(limits\.max_connections_per_ip\)", since=mark)

        other = SrcConn(d.addr, "127.0.0.2")
        answered_ping(other, "another address is still served")
        st, j = 0, {}
        try:
            r, j = other.checkv2(harness.SIMPLE_MSG)
            st = r.status
        except (OSError, EOFError) as e:
            j = repr(e)
        T.check("another address can scan", st == 200 and j.get("message-id") == "simple-1@example.com",
                j)
        other.close()
        unix = [harness.Conn(sock, timeout=10) for _ in range(5)]
        for i, c in enumerate(unix):
            answered_ping(c, "unix client %d served (unix sockets are exempt)" % i)
            c.close()

        # a burst over the limit: answered 503 each, logged once per 5 s
        for _ in range(20):
            c = SrcConn(d.addr, timeout=10)
            try:
                c.read_response()
            except (OSError, EOFError):
                pass
            c.close()
        n = len([l for l in d.log()[mark:].splitlines() if "max_connections_per_ip" in l])
        T.check("per-address log lines are rate-limited (%d lines for 21 refusals)" % n, 1 <= n <= 3)

        held[0].close()
        time.sleep(0.3)
        again = SrcConn(d.addr)
        answered_ping(again, "room again after one connection closed")
        again.close()
        for c in held[1:]:
            answered_ping(c, "held connection still served")
            c.close()
        T.eq("clean shutdown", d.stop(), 0)


def main():
    T.run(test_sigterm_stops_listening)
    T.run(test_silent_flood)
    T.run(test_per_address_limit)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
