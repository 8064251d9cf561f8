#!/usr/bin/python3
"""Bad input never crashes authscand and never disturbs other scans.

Every step below runs while (a) a slow scan is in flight on another
connection (its SPF lookup of slow.example waits for dns.timeout) and (b) a
long-lived keep-alive connection keeps doing good requests; after each step
both must have succeeded and the worker pids must be unchanged.

Steps: garbage, bad request lines, NUL bytes and binary noise in the
request (400 + JSON error); too many / too large request headers (413);
unsupported transfer coding (501); missing length (411); a truncated body
or header block followed by a disconnect; a request too slow to arrive
(408); a message over limits.max_message_size (413 naming the limit, both
with Content-Length and chunked) and one exactly at it (200); 10 000 header
fields (413 naming limits.max_headers, and a normal scan with
limits.max_headers=20000); a header block over limits.max_header_size;
NUL bytes and invalid UTF-8 in the message and in the envelope (200 with
valid, strictly UTF-8 JSON); clients that disconnect mid-scan; an invalid
IP (400 naming the header); unknown path (404); GET /checkv2 (405);
request-smuggling material that a lenient parser accepts (issue 10.8):
"gzip, chunked" (501), whitespace before a colon, obs-fold, a chunk not
followed by CRLF (400 at once, not at read_timeout), LF-only lines,
Content-Length with Transfer-Encoding, a bad chunk size, HTTP/2.0 (505).
Prints "N passed, N failed"; exits non-zero on failure."""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("bad_input")
GOOD = harness.SIMPLE_MSG
SLOW_ENV = {"IP": "192.0.2.1", "From": "x@slow.example"}


class Guard:
    """The bystanders of one daemon: a keep-alive connection doing good
    requests and a slow scan in flight."""

    def __init__(self, d):
        self.d = d
        self.keep = d.conn()
        self.pids = d.worker_pids()
        self.slow = None
        self.n = 0

    def start_slow(self):
        self.slow = self.d.conn(timeout=60)
        self.slow.send(harness.build_request("POST", "/checkv2", GOOD, SLOW_ENV))

    def good(self, name):
        self.n += 1
        try:
            r, j = self.keep.checkv2(GOOD, {"Queue-Id": "guard%d" % self.n})
        except (OSError, EOFError) as e:
            T.check("%s: keep-alive bystander still served" % name, False, repr(e))
            self.keep = self.d.conn()
            return
        T.check("%s: keep-alive bystander still served" % name,
                r.status == 200 and j["message-id"] == "simple-1@example.com" and not r.closes, r)

    def step(self, name, fn):
        """Runs fn (the bad input) between the bystanders' checks."""
        log_mark = self.d.log_mark()
        self.start_slow()
        self.good(name + " (before)")
        try:
            fn()
        except Exception as e:
            import traceback
            T.check("%s: ran" % name, False, traceback.format_exc())
        self.good(name)
        try:
            r = self.slow.read_response()
            j = r.json() if r.status == 200 else {}
            T.check("%s: in-flight slow scan completed" % name,
                    r.status == 200 and "simple-1@example.com" == j.get("message-id"), r)
        except (OSError, EOFError) as e:
            T.check("%s: in-flight slow scan completed" % name, False, repr(e))
        self.slow.close()
        now = self.d.worker_pids()
        T.check("%s: worker pids unchanged (no crash)" % name, now == self.pids,
                (self.pids, now, self.d.log()[log_mark:][-2000:]))
        T.check("%s: daemon alive" % name, self.d.alive())
        if now != self.pids:
            self.pids = now

    def close(self):
        self.keep.close()


def raw(d, data, shutdown=False, timeout=30):
    """Sends bytes on a new connection, returns the first response (or the
    exception raised while reading it)."""
    with d.conn(timeout=timeout) as c:
        c.send(data)
        if shutdown:
            c.shutdown_write()
        try:
            return c.read_response()
        except (OSError, EOFError) as e:
            return e


def expect_error(name, r, status, words=(), closes=None):
    if not isinstance(r, harness.Response):
        T.check("%s: got a reply" % name, False, repr(r))
        return None
    T.eq("%s: status" % name, r.status, status)
    T.check("%s: JSON content type" % name,
            r.header("content-type", "").startswith("application/json"), r.headers)
    try:
        j = json.loads(r.body.decode("utf-8"))
    except ValueError:
        T.check("%s: body is JSON" % name, False, r.body)
        return None
    T.check("%s: JSON has error text" % name, isinstance(j.get("error"), str) and j["error"], j)
    for w in words:
        T.check("%s: error mentions %r" % (name, w), w in j.get("error", ""), j)
    if closes is not None:
        T.check("%s: Connection: %s" % (name, "close" if closes else "keep-alive"),
                r.closes == closes, r.headers)
    return j


def strict_json(name, body):
    """The body must be valid UTF-8 and valid JSON (not just after
    replacement)."""
    try:
        text = body.decode("utf-8", "strict")
    except UnicodeDecodeError as e:
        T.check("%s: reply is valid UTF-8" % name, False, repr(e))
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        T.check("%s: reply is valid JSON" % name, False, "%r %r" % (e, text[:500]))
        return None


# ---------------------------------------------------------------------------


def protocol_steps(d, g):
    g.step("garbage", lambda: expect_error("garbage", raw(d, b"garbage\r\n\r\n"), 400,
                                           closes=True))
    g.step("bad request line", lambda: [
        expect_error("request line without target", raw(d, b"POST\r\n\r\n"), 400),
        expect_error("request line with junk version", raw(d, b"POST /checkv2 XTTP/1.1\r\n\r\n"),
                     400),
        expect_error("request line with extra words",
                     raw(d, b"POST /checkv2 HTTP/1.1 please\r\n\r\n"), 400),
        expect_error("header line without colon",
                     raw(d, b"POST /checkv2 HTTP/1.1\r\nno colon here\r\n\r\n"), 400),
    ])
    g.step("NUL bytes in the request", lambda: [
        expect_error("NUL in request line", raw(d, b"POST /check\0v2 HTTP/1.1\r\n\r\n"), 400),
        expect_error("NUL in a header", raw(d, b"POST /checkv2 HTTP/1.1\r\nIP: 1.2\0.3.4\r\n"
                                              b"Content-Length: 1\r\n\r\nx"), 400),
        expect_error("only NULs", raw(d, b"\0" * 1000), 400),
    ])
    noise = bytes((i * 131 + 17) % 256 for i in range(8192))
    g.step("binary noise", lambda: expect_error("binary noise", raw(d, noise), 400))

    def too_many_request_headers():
        hdrs = [("X-H%d" % i, "v") for i in range(5000)]
        expect_error("5000 request headers", raw(d, harness.build_request("POST", "/checkv2", GOOD,
                                                                          hdrs)), 413,
                     closes=True)
    g.step("too many request headers", too_many_request_headers)
    g.step("huge request header", lambda: expect_error(
        "1 MB request header", raw(d, harness.build_request(
            "POST", "/checkv2", GOOD, {"X-Big": "a" * (1 << 20)})), 413))
    g.step("unsupported transfer coding", lambda: expect_error(
        "gzip transfer coding", raw(d, b"POST /checkv2 HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
        501))
    def smuggling():
        te = b"POST /checkv2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(GOOD), GOOD)
        cases = [
            ("gzip, chunked", b"POST /checkv2 HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
             + chunked, 501, ["gzip"]),
            ("gzip field + chunked field", b"POST /checkv2 HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" + chunked, 501, ["gzip"]),
            ("space before colon", b"POST /checkv2 HTTP/1.1\r\nIP : 192.0.2.1\r\nContent-Length: %d"
             b"\r\n\r\n%s" % (len(GOOD), GOOD), 400, ["colon"]),
            ("Content-Length with space before colon", b"POST /checkv2 HTTP/1.1\r\n"
             b"Content-Length : %d\r\n\r\n%s" % (len(GOOD), GOOD), 400, ["colon"]),
            ("obs-fold", b"POST /checkv2 HTTP/1.1\r\nIP: 192.0.2.1\r\n 198.51.100.1\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(GOOD), GOOD), 400, ["obs-fold"]),
            ("LF-only lines", b"POST /checkv2 HTTP/1.1\nContent-Length: %d\n\n%s" % (len(GOOD), GOOD),
             400, ["LF"]),
            ("Content-Length + Transfer-Encoding", b"POST /checkv2 HTTP/1.1\r\nContent-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" + chunked, 400, []),
            ("chunk size with a space", te + b"%x \r\n%s\r\n0\r\n\r\n" % (len(GOOD), GOOD), 400,
             ["chunk size"]),
            ("chunk size overflow", te + b"1" + b"0" * 16 + b"\r\nx\r\n", 400, ["chunk size"]),
            ("HTTP/2.0", b"POST /checkv2 HTTP/2.0\r\nContent-Length: 1\r\n\r\nx", 505, []),
        ]
        for name, data, status, words in cases:
            expect_error(name, raw(d, data), status, words, closes=True)
        # the chunk not followed by CRLF used to wait for read_timeout (30 s)
        t0 = time.monotonic()
        r = raw(d, te + b"5\r\nhelloX", timeout=20)
        el = time.monotonic() - t0
        expect_error("chunk not followed by CRLF", r, 400, ["CRLF"], closes=True)
        T.check("chunk not followed by CRLF: refused at once (%.1fs)" % el, el < 5)
    g.step("request smuggling material", smuggling)
    g.step("no length", lambda: expect_error(
        "POST without length", raw(d, b"POST /checkv2 HTTP/1.1\r\nHost: x\r\n\r\n"), 411))
    g.step("bad Content-Length", lambda: [
        expect_error("non-numeric Content-Length",
                     raw(d, b"POST /checkv2 HTTP/1.1\r\nContent-Length: ten\r\n\r\n"), 400),
        expect_error("two Content-Lengths",
                     raw(d, b"POST /checkv2 HTTP/1.1\r\nContent-Length: 3\r\n"
                            b"Content-Length: 4\r\n\r\nabcd"), 400),
        expect_error("negative Content-Length",
                     raw(d, b"POST /checkv2 HTTP/1.1\r\nContent-Length: -5\r\n\r\n"), 400),
    ])

    def truncated_body():
        mark = d.log_mark()
        with d.conn() as c:
            c.send(b"POST /checkv2 HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + GOOD)
            time.sleep(0.2)
        d.wait_log(r"connection closed after %d of 5000 body bytes" % len(GOOD), since=mark)
        T.check("truncated body: logged", True)
        # half-close: the server must not wait forever nor answer garbage
        r = raw(d, b"POST /checkv2 HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc", shutdown=True)
        T.check("truncated body + half-close: no reply, connection closed",
                isinstance(r, (EOFError, ConnectionResetError)), r)
    g.step("truncated body", truncated_body)

    def truncated_headers():
        mark = d.log_mark()
        with d.conn() as c:
            c.send(b"POST /checkv2 HTTP/1.1\r\nIP: 192.0.2.1\r\nContent-Le")
            time.sleep(0.2)
        d.wait_log(r"connection closed in the middle of a request", since=mark)
        T.check("truncated header block: logged", True)
    g.step("truncated headers", truncated_headers)

    def pipelined_good_then_bad():
        with d.conn() as c:
            c.send(harness.build_request("POST", "/checkv2", GOOD) + b"GARBAGE GARBAGE\r\n\r\n")
            r1 = c.read_response()
            T.check("pipelined: good request answered", r1.status == 200, r1)
            r2 = c.read_response()
            T.eq("pipelined: then garbage refused", r2.status, 400)
    g.step("pipelined good then bad", pipelined_good_then_bad)

    g.step("invalid IP", lambda: [
        expect_error("invalid IP header", raw(d, harness.build_request(
            "POST", "/checkv2", GOOD, {"IP": "1.2.3.999"})), 400, ["IP", "1.2.3.999"]),
        expect_error("text as IP", raw(d, harness.build_request(
            "POST", "/checkv2", GOOD, {"IP": "mail.example.com"})), 400, ["IP"]),
        expect_error("invalid ip in query", raw(d, harness.build_request(
            "POST", "/checkv2?ip=300.0.0.1", GOOD)), 400, ["IP", "300.0.0.1"]),
    ])
    g.step("unknown path", lambda: [
        expect_error("unknown path", raw(d, harness.build_request("POST", "/check", GOOD)), 404,
                     ["/check"]),
        expect_error("rspamd v1 protocol path", raw(d, b"CHECK RSPAMC/1.3\r\n\r\n"), 400),
    ])
    g.step("GET /checkv2", lambda: expect_error(
        "GET /checkv2", raw(d, harness.build_request("GET", "/checkv2")), 405, ["POST"]))

    def keepalive_after_4xx():
        # errors the handler answers (404, 405, 400 for IP) keep the connection
        with d.conn() as c:
            r = c.request("GET", "/nowhere")
            T.eq("404 on keep-alive", r.status, 404)
            r = c.request("GET", "/checkv2")
            T.eq("405 on keep-alive", r.status, 405)
            r, j = c.checkv2(GOOD, {"IP": "bogus"})
            T.eq("400 on keep-alive", r.status, 400)
            r, j = c.checkv2(GOOD)
            T.check("same connection still scans", r.status == 200 and j["message-id"] ==
                    "simple-1@example.com", r)
    g.step("keep-alive after handler errors", keepalive_after_4xx)


def content_steps(d, g):
    weird = (b"From: \"J\0rg \xff\xfe M\xfcller\" <joerg@example.com>\r\n"
             b"To: bob@example.org\r\n"
             b"Subject: \xc3\x28 broken UTF-8 \x00 and NUL \xed\xa0\x80 surrogate\r\n"
             b"X-Bin: \x01\x02\x7f\x80\x9f\r\n"
             b"Message-ID: <bin-\xff\xfe@example.com>\r\n"
             b"\r\n"
             b"body with NUL \0 and \xff\xfe\r\n")

    def nul_and_non_utf8():
        r = raw(d, harness.build_request("POST", "/checkv2", weird))
        T.eq("NUL/non-UTF-8 message: status", getattr(r, "status", r), 200)
        j = strict_json("NUL/non-UTF-8 message", r.body) if isinstance(r, harness.Response) else None
        T.check("NUL/non-UTF-8 message: verdict", j is not None and "action" in j, r)
        if j:
            T.check("NUL/non-UTF-8 message: message-id kept readable",
                    j["message-id"].startswith("bin-") and j["message-id"].endswith("@example.com"),
                    j["message-id"])
    g.step("NUL and non-UTF-8 in the message", nul_and_non_utf8)

    def non_utf8_display_name():
        m = (b"From: \xff\xfe\xfd <joerg@example.com>\r\nSubject: \xe9t\xe9\r\n"
             b"Message-ID: <latin1@example.com>\r\n\r\nx\r\n")
        r = raw(d, harness.build_request("POST", "/checkv2", m))
        j = strict_json("latin-1 header", r.body) if isinstance(r, harness.Response) else None
        T.check("latin-1 display name: 200 with a verdict",
                getattr(r, "status", None) == 200 and j and j["message-id"] == "latin1@example.com",
                r)
    g.step("non-UTF-8 display name", non_utf8_display_name)

    def non_utf8_option():
        # the MAIL FROM domain ends up in the SPF symbol's options
        r = raw(d, harness.build_request("POST", "/checkv2", GOOD,
                                         {"IP": "192.0.2.1", "From": b"x@\xff\xfe.example"}))
        T.eq("invalid UTF-8 in an option: status", getattr(r, "status", r), 200)
        j = strict_json("invalid UTF-8 in an option", r.body) \
            if isinstance(r, harness.Response) else None
        opts = [o for s in (j or {}).get("symbols", {}).values() for o in s.get("options", [])]
        T.check("invalid UTF-8 in an option: the option is there", any(".example" in o for o in opts),
                j)
        T.check("invalid UTF-8 in an option: no raw bytes leak",
                all("\udcff" not in o for o in opts), opts)
    g.step("invalid UTF-8 in a symbol option", non_utf8_option)

    def nul_in_query_envelope():
        r = raw(d, harness.build_request("POST", "/checkv2?from=a%00b%40example.com&helo=%FF%FE",
                                         GOOD))
        T.check("NUL / non-UTF-8 in the query envelope: a reply",
                isinstance(r, harness.Response) and r.status in (200, 400), r)
        if isinstance(r, harness.Response):
            strict_json("query envelope reply", r.body)
    g.step("NUL in the query envelope", nul_in_query_envelope)

    def empty_message():
        r = raw(d, harness.build_request("POST", "/checkv2", b""))
        j = strict_json("empty message", r.body) if isinstance(r, harness.Response) else None
        T.check("empty message: 200 and MISSING_FROM",
                getattr(r, "status", None) == 200 and j and "MISSING_FROM" in j["symbols"], r)
        r = raw(d, harness.build_request("POST", "/checkv2", b"\r\n\r\n\r\n"))
        T.eq("only blank lines: status", getattr(r, "status", r), 200)
        r = raw(d, harness.build_request("POST", "/checkv2", b"no header block at all"))
        T.eq("no header block: status", getattr(r, "status", r), 200)
        r = raw(d, harness.build_request("POST", "/checkv2", b"From: a@example.com"))
        T.eq("header without line end: status", getattr(r, "status", r), 200)
    g.step("empty and headerless messages", empty_message)

    def disconnect_mid_scan():
        mark = d.log_mark()
        # a slow scan abandoned by its client
        c = d.conn()
        c.send(harness.build_request("POST", "/checkv2", GOOD, SLOW_ENV))
        time.sleep(0.3)
        c.close()
        d.wait_log(r"client went away|scan cancelled", since=mark, timeout=30)
        T.check("disconnect mid-scan: logged", True)
        # many fast ones, closed right after sending
        for i in range(30):
            s = socket.create_connection(d.addr, timeout=10)
            s.sendall(harness.build_request("POST", "/checkv2", GOOD, {"Queue-Id": "gone%d" % i}))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
            s.close()
        for i in range(10):
            s = socket.create_connection(d.addr, timeout=10)
            s.sendall(harness.build_request("POST", "/checkv2", GOOD)[:50])
            s.close()
    g.step("clients that disconnect mid-scan", disconnect_mid_scan)


def size_steps(d, g):
    def over_limit():
        big = GOOD + b"x" * (12 * 1024)
        expect_error("message over max_message_size", raw(d, harness.build_request(
            "POST", "/checkv2", big)), 413, ["limits.max_message_size", str(len(big)), "10240"],
            closes=True)
        # the same by chunks: no Content-Length to refuse up front
        chunks = b"".join(b"%x\r\n%s\r\n" % (1024, b"y" * 1024) for _ in range(12)) + b"0\r\n\r\n"
        expect_error("chunked message over max_message_size",
                     raw(d, b"POST /checkv2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks),
                     413, ["limits.max_message_size"])
    g.step("message over max_message_size", over_limit)

    def at_limit():
        m = GOOD + b"z" * (10 * 1024 - len(GOOD))
        r = raw(d, harness.build_request("POST", "/checkv2", m))
        T.eq("message exactly at max_message_size: status", getattr(r, "status", r), 200)
        m = GOOD + b"z" * (10 * 1024 - len(GOOD) + 1)
        r = raw(d, harness.build_request("POST", "/checkv2", m))
        T.eq("one byte over: status", getattr(r, "status", r), 413)
        # chunked under the limit is a normal scan
        body = b"".join(b"%x\r\n%s\r\n" % (len(GOOD[i:i + 40]), GOOD[i:i + 40])
                        for i in range(0, len(GOOD), 40)) + b"0\r\n\r\n"
        r = raw(d, b"POST /checkv2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        T.check("chunked message: normal scan", getattr(r, "status", None) == 200 and
                r.json()["message-id"] == "simple-1@example.com", r)
    g.step("message at the limit", at_limit)

    def slow_request():
        # limits.read_timeout=2s: a request that takes longer gets 408
        with d.conn() as c:
            t0 = time.monotonic()
            c.send(b"POST /checkv2 HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
            r = c.read_response()
            el = time.monotonic() - t0
        expect_error("request slower than read_timeout", r, 408)
        T.check("408 after about read_timeout (%.1fs)" % el, 1.5 < el < 20)
    g.step("request slower than read_timeout", slow_request)


def many_headers_msg(n):
    return (b"".join(b"X-Header-%d: value %d\r\n" % (i, i) for i in range(n)) +
            b"From: Alice <alice@example.com>\r\nMessage-ID: <many@example.com>\r\n\r\nbody\r\n")


def header_steps(d, g):
    def ten_thousand():
        j = expect_error("10000 header fields", raw(d, harness.build_request(
            "POST", "/checkv2", many_headers_msg(10000))), 413, ["limits.max_headers", "1000"])
    g.step("10000 header fields", ten_thousand)

    def at_header_limit():
        r = raw(d, harness.build_request("POST", "/checkv2", many_headers_msg(998)))
        T.eq("1000 header fields (the default limit): status", getattr(r, "status", r), 200)
        r = raw(d, harness.build_request("POST", "/checkv2", many_headers_msg(999)))
        T.eq("1001 header fields: status", getattr(r, "status", r), 413)
    g.step("header count at the limit", at_header_limit)

    def header_block_size():
        m = b"X-Long: " + b"a" * (1100 * 1024) + b"\r\n" + GOOD
        expect_error("header block over max_header_size (1M)",
                     raw(d, harness.build_request("POST", "/checkv2", m)), 413,
                     ["limits.max_header_size"])
    g.step("header block over max_header_size", header_block_size)


def main():
    # protocol errors and message content, default limits
    with harness.Daemon(workers=2, args=["--set", "dns.timeout=1s"]) as d:
        g = Guard(d)
        T.run(protocol_steps, d, g)
        T.run(content_steps, d, g)
        T.run(header_steps, d, g)
        g.close()
        T.check("no worker died (defaults)", "killed by signal" not in d.log() and
                "exited with status" not in d.log(), d.log()[-3000:])
        T.eq("clean shutdown (defaults)", d.stop(), 0)

    # small message size limit and read timeout
    with harness.Daemon(workers=2, args=["--set", "dns.timeout=1s",
                                         "--set", "limits.max_message_size=10k",
                                         "--set", "limits.read_timeout=2s"]) as d:
        g = Guard(d)
        T.run(size_steps, d, g)
        g.close()
        T.check("no worker died (small limits)", "killed by signal" not in d.log(), d.log()[-3000:])
        T.eq("clean shutdown (small limits)", d.stop(), 0)

    # limits.max_headers raised: 10 000 header fields scan normally
    with harness.Daemon(workers=1, args=["--set", "limits.max_headers=20000"]) as d:
        st, r = d.checkv2(many_headers_msg(10000))
        T.eq("max_headers=20000: 10000 fields scanned", st, 200)
        T.eq("max_headers=20000: right message", r.get("message-id"), "many@example.com")
        T.check("max_headers=20000: From found after 10000 fields",
                not {"MISSING_FROM", "FROM_INVALID"} & set(r.get("symbols", {})), r.get("symbols"))
        st, r = d.checkv2(many_headers_msg(19990))
        T.eq("max_headers=20000: 19992 fields scanned", st, 200)
        T.eq("clean shutdown (max_headers)", d.stop(), 0)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
