#!/usr/bin/python3
"""The spamd adapter (spamd@ADDR) with the real `spamc` (SpamAssassin
4.0's client, Debian's package) for every verb it sends: -c (CHECK: S/R
line, exit 1 for spam, 0 for ham), -y (SYMBOLS), -R (REPORT), -r
(REPORT_IFSPAM), the default PROCESS (our header fields added, forged
X-Spam-* replaced, body unchanged), --headers (HEADERS), -K (PING), and
pass-through of the message unchanged when we answer an error; a raw
socket for what spamc cannot send: "Compress: zlib" (Debian's spamc is
built without zlib), SKIP, TELL, exact Content-length, malformed
requests; the envelope taken from Received and Return-Path with and
without spamd.trusted_networks; config errors with file:line.
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("spamd")
SPAMC = shutil.which("spamc") or "/usr/bin/spamc"

ZONE = """$ORIGIN .
$TTL 300
reject.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.reject.example. TXT "v=DMARC1; p=reject"
spoofer.test. TXT "v=spf1 ip4:203.0.113.9 -all"
"""

# received by our MTA (mx.receiver.test, 10.0.0.1) from an internal relay
# (10.1.1.1) that got it from the Internet client
SPOOF = (b"Return-Path: <x@spoofer.test>\n"
         b"Received: from relay.receiver.test (relay.receiver.test [10.1.1.1])\n"
         b"\tby mx.receiver.test (Postfix) with ESMTP id 4AB\n"
         b"Received: from client.test (unknown [203.0.113.9])\n"
         b"\tby relay.receiver.test (Postfix) with ESMTP id 3CD\n"
         b"X-Spam-Flag: YES\n"
         b"X-Spam-Status: No, forged\n"
         b"From: Boss <ceo@reject.example>\n"
         b"To: rcpt@receiver.test\n"
         b"Subject: pay now\n"
         b"\n"
         b"please pay\n")

PASS = (b"Return-Path: <alice@reject.example>\n"
        b"Received: from good.test (good.test [192.0.2.10])\n"
        b"\tby mx.receiver.test (Postfix) with ESMTP id 5EF\n"
        b"From: Alice <alice@reject.example>\n"
        b"To: rcpt@receiver.test\n"
        b"Subject: hi\n"
        b"\n"
        b"hello\n")

CONFIG = "spamd.trusted_networks = 10.0.0.0/8\n"


def daemon(config=CONFIG, **kw):
    http_port, spamd_port = harness.free_port(), harness.free_port()
    d = harness.Daemon(workers=1, zone=ZONE, config=config,
                       listen=["127.0.0.1:%d" % http_port, "spamd@127.0.0.1:%d" % spamd_port], **kw)
    d.spamd_port = spamd_port
    return d


def spamc(d, args, msg, timeout=60):
    p = subprocess.run([SPAMC, "-d", "127.0.0.1", "-p", str(d.spamd_port), "-t", "30"] + args,
                       input=msg, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def raw(d, data, shut=True):
    """Sends data, half-closes, returns everything the server answers."""
    s = socket.create_connection(("127.0.0.1", d.spamd_port), timeout=30)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def parse_reply(data):
    """(status line, {header: value}, body)"""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs, body


def request(verb, msg, extra=b""):
    return (b"%s SPAMC/1.5\r\nContent-length: %d\r\n" % (verb, len(msg)) + extra + b"\r\n" + msg)


def test_spamc_verbs(d):
    rc, out, err = spamc(d, ["-c"], SPOOF)
    T.eq("spamc -c on a p=reject spoof: exit 1 (spam)", rc, 1)
    T.eq("spamc -c: score/threshold (DMARC 2.0, SPF allow -0.2)", out, b"1.8/15.0\n")
    rc, out, err = spamc(d, ["-c"], PASS)
    T.eq("spamc -c on a DMARC pass: exit 0 (ham)", rc, 0)
    T.check("spamc -c on a pass: negative score/15.0", re.match(rb"^-\d+\.\d/15\.0\n$", out), out)

    rc, out, err = spamc(d, ["-y"], SPOOF)
    T.eq("spamc -y: exit 0", rc, 0)
    T.check("spamc -y: comma-separated symbols with DMARC_POLICY_REJECT",
            b"DMARC_POLICY_REJECT" in out and b"," in out and b" " not in out.strip(), out)

    rc, out, err = spamc(d, ["-R"], SPOOF)
    T.eq("spamc -R: exit 0", rc, 0)
    T.check("spamc -R: score line, action and one line per symbol",
            out.startswith(b"1.8/15.0\n") and b'action "reject"' in out and
            re.search(rb"^ 2\.0 DMARC_POLICY_REJECT +DMARC reject policy", out, re.M), out)
    rc, out, err = spamc(d, ["-r"], PASS)
    T.eq("spamc -r on ham: no report at all", (rc, out), (0, b""))
    rc, out, err = spamc(d, ["-r"], SPOOF)
    T.check("spamc -r on spam: the report", out.startswith(b"1.8/15.0\n") and b"Content analysis" in out,
            out)

    # the default: PROCESS, the message with our header fields
    rc, out, err = spamc(d, [], SPOOF)
    T.eq("spamc (PROCESS): exit 0", rc, 0)
    head, _, body = out.partition(b"\n\n")
    T.eq("PROCESS: body unchanged", body, b"please pay\n")
    T.check("PROCESS: our Authentication-Results with dmarc=fail",
            re.search(rb"^Authentication-Results: [^;]+; .*dmarc=fail", head, re.M), head)
    T.check("PROCESS: X-Spam-Flag: YES and X-Spam-Status: Yes, score=1.8 required=15.0",
            b"\nX-Spam-Flag: YES\n" in head and
            re.search(rb"^X-Spam-Status: Yes, score=1\.8 required=15\.0 tests=.*DMARC_POLICY_REJECT"
                      rb".* action=reject$", head, re.M), head)
    T.eq("PROCESS: forged X-Spam fields removed (one of each left)",
         (head.count(b"X-Spam-Flag:"), head.count(b"X-Spam-Status:"), b"forged" in head),
         (1, 1, False))
    T.check("PROCESS: the message's own fields kept, folding intact",
            b"Received: from client.test (unknown [203.0.113.9])\n\tby relay" in head and
            b"Subject: pay now" in head, head)
    T.check("PROCESS: LF message stays LF", b"\r" not in out, out)

    rc, out, err = spamc(d, ["--headers"], SPOOF)
    T.check("spamc --headers (HEADERS): our fields and the original body",
            rc == 0 and b"X-Spam-Flag: YES" in out and out.endswith(b"\n\nplease pay\n"), out)

    rc, out, err = spamc(d, [], PASS)
    head = out.partition(b"\n\n")[0]
    T.check("PROCESS on a pass: X-Spam-Status: No, no X-Spam-Flag, dmarc=pass",
            b"X-Spam-Status: No," in head and b"X-Spam-Flag" not in head and
            b"dmarc=pass" in head, head)

    # spamc -L sends TELL: refused, so spamc reports the failure
    mark = d.log_mark()
    rc, out, err = spamc(d, ["-L", "spam"], SPOOF)
    T.check("spamc -L spam (TELL): spamc fails (exit %d), nothing learned" % rc, rc != 0, out + err.encode())
    T.check("spamc -L: no scan ran", "action=" not in d.log()[mark:], d.log()[mark:])

    rc, out, err = spamc(d, ["-K"], b"")
    T.eq("spamc -K (PING)", (rc, out), (0, b"SPAMD/1.5 0\n"))


def test_envelope(d):
    # the client came from the first Received hop outside 10.0.0.0/8
    mark = d.log_mark()
    spamc(d, ["-c"], SPOOF)
    d.wait_log(r"ip=203\.0\.113\.9 from=x@spoofer\.test", since=mark)
    T.check("envelope: IP from the first untrusted Received hop, MAIL FROM from Return-Path",
            True)
    st, _, body = parse_reply(raw(d, request(b"PROCESS", SPOOF)))
    T.check("envelope: SPF evaluated for 203.0.113.9 (pass for spoofer.test)",
            b"spf=pass smtp.mailfrom=spoofer.test" in body, body[:600])


def test_no_trusted_networks():
    with daemon(config="") as d:
        mark = d.log_mark()
        st, _, body = parse_reply(raw(d, request(b"PROCESS", SPOOF)))
        T.check("no spamd.trusted_networks: no client IP, SPF not evaluated (R_SPF_NA)",
                b"R_SPF_NA" in body and b"spf=pass" not in body, body[:600])
        d.wait_log(r"spamd: no client address: spamd\.trusted_networks is not set", since=mark)
        T.check("no spamd.trusted_networks: the log says why", True)


def test_internal_networks():
    # SpamAssassin's other list: the site's own MTAs; walked through the same way
    with daemon(config="spamd.internal_networks = 10.1.1.0/24\n"
                       "spamd.trusted_networks = 10.0.0.0/16\n") as d:
        mark = d.log_mark()
        raw(d, request(b"CHECK", SPOOF))
        d.wait_log(r"ip=203\.0\.113\.9 from=x@spoofer\.test", since=mark)
        T.check("internal + trusted networks: the client is the first hop outside both", True)
    with daemon(config="spamd.internal_networks = 10.1.1.0/24\n") as d:
        mark = d.log_mark()
        raw(d, request(b"CHECK", SPOOF))
        d.wait_log(r"ip=203\.0\.113\.9 ", since=mark)
        T.check("spamd.internal_networks alone is enough to walk past our relay", True)


def test_raw_protocol(d):
    # exact Content-length and the Spam line's shape
    data = raw(d, request(b"SYMBOLS", SPOOF))
    st, h, body = parse_reply(data)
    T.eq("SYMBOLS: status line", st, "SPAMD/1.1 0 EX_OK")
    T.eq("SYMBOLS: Content-length is the body's length", int(h["content-length"]), len(body))
    T.eq("Spam line: 'True ; S / R' with the space before ';'", h["spam"], "True ; 1.8 / 15.0")
    st, h, body = parse_reply(raw(d, request(b"CHECK", PASS)))
    T.check("CHECK: no Content-length, no body, Spam: False",
            "content-length" not in h and body == b"" and h["spam"].startswith("False ; "), (h, body))

    # zlib, as spamc -z sends it
    z = zlib.compress(SPOOF, 3)
    st, h, body = parse_reply(raw(d, request(b"PROCESS", z, b"Compress: zlib\r\n")))
    T.check("Compress: zlib: inflated and scanned (reply uncompressed, exact length)",
            st == "SPAMD/1.1 0 EX_OK" and body.endswith(b"please pay\n") and
            int(h["content-length"]) == len(body), (st, h, body[:200]))
    bad = b"PROCESS SPAMC/1.5\r\nCompress: zlib\r\nContent-length: 5\r\n\r\nhello"
    T.check("Compress: zlib with corrupt data: EX_DATAERR",
            raw(d, bad).startswith(b"SPAMD/1.5 65 EX_DATAERR compressed message is corrupt"))
    # a zlib bomb beyond limits.max_message_size (1M here, see main)
    bomb = zlib.compress(b"a" * (3 << 20), 9)
    T.check("zlib bomb: inflation stops at the limit, EX_DATAERR",
            raw(d, b"CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: %d\r\n\r\n" % len(bomb)
                + bomb).startswith(b"SPAMD/1.5 65 EX_DATAERR compressed message inflates to more"))

    # SKIP: closed without a word; TELL: refused, saying why
    T.eq("SKIP: no reply", raw(d, b"SKIP SPAMC/1.5\r\n\r\n"), b"")
    out = raw(d, request(b"TELL", PASS, b"Message-class: spam\r\nSet: local\r\n"))
    T.check("TELL: EX_UNAVAILABLE, nothing to learn",
            out.startswith(b"SPAMD/1.5 69 EX_UNAVAILABLE TELL is not supported") and
            b"nothing to learn" in out, out)
    T.eq("PING over raw socket", raw(d, b"PING SPAMC/1.5\r\n\r\n"), b"SPAMD/1.5 0 PONG\r\n")

    cases = [
        ("unknown method", b"SCAN SPAMC/1.5\r\n\r\n", b"SPAMD/1.5 76 EX_PROTOCOL unknown method 'SCAN'"),
        ("bad version", b"CHECK SPAMC/2.0\r\n\r\n", b"SPAMD/1.5 76 EX_PROTOCOL bad protocol version"),
        ("no Content-length", b"CHECK SPAMC/1.5\r\n\r\n",
         b"SPAMD/1.5 76 EX_PROTOCOL Content-length is required"),
        ("bad Content-length", b"CHECK SPAMC/1.5\r\nContent-length: 12x\r\n\r\n",
         b"SPAMD/1.5 76 EX_PROTOCOL bad Content-length"),
        ("Content-length twice", b"CHECK SPAMC/1.5\r\nContent-length: 1\r\nContent-length: 1\r\n\r\n",
         b"SPAMD/1.5 76 EX_PROTOCOL Content-length given twice"),
        ("body shorter than Content-length",
         b"CHECK SPAMC/1.5\r\nContent-length: 100\r\n\r\nshort",
         b"SPAMD/1.5 76 EX_PROTOCOL body of 5 bytes is shorter than Content-length 100"),
        ("over limits.max_message_size", b"CHECK SPAMC/1.5\r\nContent-length: 99999999\r\n\r\n",
         b"SPAMD/1.5 65 EX_DATAERR message of 99999999 bytes exceeds limits.max_message_size"),
        ("unsupported compression", b"CHECK SPAMC/1.5\r\nCompress: gzip\r\nContent-length: 1\r\n\r\nx",
         b"SPAMD/1.5 76 EX_PROTOCOL unsupported compression"),
        ("header line without colon", b"CHECK SPAMC/1.5\r\nfoo\r\n\r\n",
         b"SPAMD/1.5 76 EX_PROTOCOL bad header line 'foo'"),
        ("head cut short", b"CHECK SPAMC/1.5\r\nContent-len",
         b"SPAMD/1.5 76 EX_PROTOCOL request head cut short"),
        ("head too long", b"CHECK SPAMC/1.5\r\nX: " + b"a" * 20000,
         b"SPAMD/1.5 76 EX_PROTOCOL request head longer than 16384 bytes"),
    ]
    for what, data, want in cases:
        out = raw(d, data)
        T.check("malformed (%s): got %r, want %r" % (what, out[:120], want), out.startswith(want))
    T.check("worker unharmed", harness.wait_for(lambda: raw(d, b"PING SPAMC/1.5\r\n\r\n") ==
                                                b"SPAMD/1.5 0 PONG\r\n", 10))


def test_pass_through():
    # our error (here: over limits.max_message_size): spamc passes the
    # message through unchanged
    with daemon(config=CONFIG + "limits.max_message_size = 100\n") as d:
        rc, out, err = spamc(d, [], SPOOF)
        T.eq("error: spamc passes the message through unchanged", out, SPOOF)
        rc, out, err = spamc(d, ["-c"], SPOOF)
        T.eq("error with -c: spamc prints 0/0", out, b"0/0\n")


def test_spam_actions():
    with daemon(config=CONFIG + "spamd.spam_actions = quarantine\n") as d:
        rc, out, err = spamc(d, ["-c"], SPOOF)
        T.eq("spamd.spam_actions without reject: a reject verdict is not spam (exit 0)", rc, 0)


def test_config_errors():
    tmp = harness.tempfile.mkdtemp(prefix="authscan-spamd-cfg-")
    cases = [
        ("listen = 127.0.0.1:1\nspamd.trusted_networks = 10.0.0.0/8\n",
         "t.conf:2: 'spamd.trusted_networks' has no effect: no 'listen' entry speaks spamd"),
        ("listen = spamd@127.0.0.1:1\nspamd.trusted_networks = 10.0.0.0/8, bogus\n",
         "t.conf:2: bad item 'bogus' in 'spamd.trusted_networks'"),
        ("listen = spamd@127.0.0.1:1\nspamd.internal_networks = 10.1.1.0/24, 10.1.1.0/40\n",
         "t.conf:2: bad item '10.1.1.0/40' in 'spamd.internal_networks'"),
        ("listen = 127.0.0.1:1\nspamd.internal_networks = 10.0.0.0/8\n",
         "t.conf:2: 'spamd.internal_networks' has no effect: no 'listen' entry speaks spamd"),
        ("listen = spamd@127.0.0.1:1\n\nspamd.spam_actions = reject, maybe\n",
         "t.conf:3: bad item 'maybe' in 'spamd.spam_actions'"),
        ("listen = spamd@127.0.0.1:1\nspamd.spam_actions = reject\n", None),
    ]
    for text, want in cases:
        path = os.path.join(tmp, "t.conf")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", path, "--plugins-dir",
                            harness.PLUGINS], capture_output=True, timeout=60)
        err = p.stderr.decode().replace(path, "t.conf")
        if want:
            T.check("config error %r (got %r)" % (want, err.strip()[-300:]),
                    p.returncode != 0 and want in err)
        else:
            T.check("config %r accepted" % text, p.returncode == 0, err)
    shutil.rmtree(tmp, ignore_errors=True)


def test_large_reply_slow_reader():
    """A reply larger than the socket buffers, to a client that reads only
    after a pause: the server writes what fits at once and the rest as the
    socket drains (the partial-write path), and the client gets all of it."""
    line = b"y" * 76 + b"\n"
    msg = PASS + line * (12 * 1024 * 1024 // len(line))
    with daemon(config=CONFIG + "limits.max_message_size = 30M\n") as d:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(60)
        s.connect(("127.0.0.1", d.spamd_port))
        s.sendall(request(b"PROCESS", msg))
        s.shutdown(socket.SHUT_WR)
        time.sleep(1.5)
        out = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            out += chunk
        s.close()
        status, hdrs, body = parse_reply(out)
        T.eq("12 MB PROCESS, slow reader: status", status, "SPAMD/1.1 0 EX_OK")
        T.eq("12 MB PROCESS, slow reader: Content-length matches the bytes received",
             int(hdrs.get("content-length", -1)), len(body))
        T.check("12 MB PROCESS, slow reader: the whole message came back",
                body.endswith(msg[msg.index(b"\n\n") + 2:]), len(body))
        T.check("12 MB PROCESS: more than fits the socket buffers (the test covers a partial write)",
                len(body) > 8 * 1024 * 1024, len(body))


def main():
    with daemon(config=CONFIG + "limits.max_message_size = 1M\n") as d:
        T.run(test_spamc_verbs, d)
        T.run(test_envelope, d)
        T.run(test_raw_protocol, d)
    T.run(test_no_trusted_networks)
    T.run(test_internal_networks)
    T.run(test_pass_through)
    T.run(test_spam_actions)
    T.run(test_large_reply_slow_reader)
    T.run(test_config_errors)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
