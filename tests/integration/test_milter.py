#!/usr/bin/python3
"""The milter adapter (milter@ADDR) against real MTA-side clients:
`miltertest` (opendkim's, Lua scripts) for the verdict mapping as an MTA
sees it (550 5.7.1 with the DMARC text, quarantine, Authentication-Results
inserted, forged ones removed, From munging as header changes, a unix
socket), and a raw client (milter_client.py) for what must be exact:
negotiation masked against the offer, CONTINUE for steps without "no
reply", reply text escaping, the configurable mapping, two messages and an
abort on one connection, malformed packets (one log line, connection
closed, the worker unharmed) and a silent MTA (milter.timeout).
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_client import MilterClient, pkt, ALL_ACTIONS, ALL_STEPS, HDR_LEADSPC, NR_STEPS  # noqa: E402

T = harness.Tests("milter")
MILTERTEST = shutil.which("miltertest") or "/usr/bin/miltertest"
MTA = "mx.receiver.test"

ZONE = """$ORIGIN .
$TTL 300
reject.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.reject.example. TXT "v=DMARC1; p=reject"
quar.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.quar.example. TXT "v=DMARC1; p=quarantine"
spoofer.test. TXT "v=spf1 ip4:203.0.113.9 -all"
"""

GOOD_IP = "192.0.2.10"
BAD_IP = "203.0.113.9"


def headers(frm, extra=()):
    return [("From", frm), ("To", "rcpt@receiver.test"), ("Subject", "test"),
            ("Message-ID", "<m@test>")] + list(extra)


def daemon(config="", **kw):
    http_port, milter_port = harness.free_port(), harness.free_port()
    d = harness.Daemon(workers=1, zone=ZONE, config=config or None,
                       listen=["127.0.0.1:%d" % http_port, "milter@127.0.0.1:%d" % milter_port],
                       **kw)
    d.milter_addr = ("127.0.0.1", milter_port)
    return d


def miltertest(d, body, sock=None):
    """Runs a miltertest script (its text after the connection lines);
    returns (exit code, output)."""
    spec = sock or "inet:%d@127.0.0.1" % d.milter_addr[1]
    script = ('conn = mt.connect("%s")\nassert(conn, "cannot connect")\n' % spec) + body
    path = d.path("t%d.lua" % int(time.monotonic() * 1000))
    with open(path, "w") as f:
        f.write(script)
    p = subprocess.run([MILTERTEST, "-s", path], capture_output=True, timeout=120)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def mt_message(frm, ip, mail_from, extra_headers=(), check=""):
    """A miltertest transaction; `check` is Lua run after mt.eom()."""
    hdrs = "".join('assert(mt.header(conn, "%s", "%s") == nil)\n' % (n, v.replace('"', '\\"'))
                   for n, v in headers(frm, extra_headers))
    return ('assert(mt.macro(conn, SMFIC_CONNECT, "j", "%s") == nil)\n' % MTA +
            'assert(mt.conninfo(conn, "client.test", "%s") == nil)\n' % ip +
            'assert(mt.helo(conn, "client.test") == nil)\n'
            'assert(mt.mailfrom(conn, "<%s>") == nil)\n' % mail_from +
            'assert(mt.rcptto(conn, "<rcpt@receiver.test>") == nil)\n' + hdrs +
            'assert(mt.eoh(conn) == nil)\n'
            'assert(mt.bodystring(conn, "hello\\r\\n") == nil)\n'
            'assert(mt.eom(conn) == nil)\n' + check + 'mt.disconnect(conn)\n')


def test_miltertest_verdicts(d):
    # a spoof of a p=reject domain: 550 5.7.1 with the DMARC text
    rc, out = miltertest(d, mt_message(
        "Boss <ceo@reject.example>", BAD_IP, "x@spoofer.test",
        check='assert(mt.getreply(conn) == SMFIR_REPLYCODE, "reply " .. mt.getreply(conn))\n'
              'assert(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", '
              '"Rejected per DMARC policy of reject.example"), "smtp reply")\n'))
    T.check("miltertest: spoof of p=reject -> 550 5.7.1 Rejected per DMARC policy", rc == 0, out)

    # a pass: accepted, Authentication-Results inserted with our authserv-id
    rc, out = miltertest(d, mt_message(
        "Alice <alice@reject.example>", GOOD_IP, "alice@reject.example",
        check='assert(mt.getreply(conn) == SMFIR_ACCEPT, "reply " .. mt.getreply(conn))\n'
              'assert(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "A-R")\n'
              'local ar = mt.getheader(conn, "Authentication-Results", 0)\n'
              'assert(ar and string.find(ar, "^ %s; .*dmarc=pass") ~= nil, "A-R value: " .. tostring(ar))\n'
              % re.escape(MTA).replace("\\", "%")))
    T.check("miltertest: DMARC pass -> accept with Authentication-Results (dmarc=pass)", rc == 0,
            out + d.log()[-3000:])

    # p=quarantine: the MTA's hold queue
    rc, out = miltertest(d, mt_message(
        "q@quar.example", BAD_IP, "x@spoofer.test",
        check='assert(mt.eom_check(conn, MT_QUARANTINE), "quarantine")\n'
              'assert(mt.getreply(conn) == SMFIR_ACCEPT, "reply " .. mt.getreply(conn))\n'
              'assert(mt.eom_check(conn, MT_HDRADD, "X-Spam", " Yes"), "X-Spam")\n'))
    T.check("miltertest: p=quarantine -> QUARANTINE then accept, X-Spam: Yes", rc == 0, out)

    # a forged Authentication-Results with our authserv-id is removed (by index)
    rc, out = miltertest(d, mt_message(
        "Alice <alice@reject.example>", GOOD_IP, "alice@reject.example",
        extra_headers=[("Authentication-Results", "%s; dmarc=pass header.from=evil.test" % MTA)],
        check='assert(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results") or '
              'mt.eom_check(conn, MT_HDRCHANGE, "Authentication-Results"), "removal")\n'
              'assert(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "ours added")\n'))
    T.check("miltertest: forged Authentication-Results removed, ours inserted", rc == 0, out)


def test_miltertest_abort(d):
    # ABORT mid-transaction, then two messages on the same connection
    script = (
        'assert(mt.macro(conn, SMFIC_CONNECT, "j", "%s") == nil)\n' % MTA +
        'assert(mt.conninfo(conn, "client.test", "%s") == nil)\n' % BAD_IP +
        'assert(mt.helo(conn, "client.test") == nil)\n'
        'assert(mt.mailfrom(conn, "<x@spoofer.test>") == nil)\n'
        'assert(mt.rcptto(conn, "<r@receiver.test>") == nil)\n'
        'assert(mt.header(conn, "From", "ceo@reject.example") == nil)\n'
        'assert(mt.abort(conn) == nil)\n'
        # the aborted From must not leak into the next message
        'assert(mt.mailfrom(conn, "<x@spoofer.test>") == nil)\n'
        'assert(mt.rcptto(conn, "<r@receiver.test>") == nil)\n'
        'assert(mt.header(conn, "From", "someone@spoofer.test") == nil)\n'
        'assert(mt.eoh(conn) == nil)\n'
        'assert(mt.bodystring(conn, "hi\\r\\n") == nil)\n'
        'assert(mt.eom(conn) == nil)\n'
        'assert(mt.getreply(conn) == SMFIR_ACCEPT, "after abort: accept, got " .. mt.getreply(conn))\n'
        'assert(mt.mailfrom(conn, "<x@spoofer.test>") == nil)\n'
        'assert(mt.rcptto(conn, "<r@receiver.test>") == nil)\n'
        'assert(mt.header(conn, "From", "ceo@reject.example") == nil)\n'
        'assert(mt.eoh(conn) == nil)\n'
        'assert(mt.bodystring(conn, "hi\\r\\n") == nil)\n'
        'assert(mt.eom(conn) == nil)\n'
        'assert(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", '
        '"Rejected per DMARC policy of reject.example"), "second message: 550")\n'
        'mt.disconnect(conn)\n')
    rc, out = miltertest(d, script)
    T.check("miltertest: ABORT drops the transaction; next messages on the connection scanned",
            rc == 0, out + d.log()[-1500:])


def test_miltertest_unix():
    sock_dir = harness.tempfile.mkdtemp(prefix="authscan-milter-")
    path = os.path.join(sock_dir, "milter.sock")
    http_port = harness.free_port()
    with harness.Daemon(workers=1, zone=ZONE,
                        listen=["127.0.0.1:%d" % http_port, "milter@unix:%s" % path]) as d:
        rc, out = miltertest(d, mt_message(
            "Boss <ceo@reject.example>", BAD_IP, "x@spoofer.test",
            check='assert(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", '
                  '"Rejected per DMARC policy of reject.example"), "550")\n'),
            sock="unix:%s" % path)
        T.check("miltertest over milter@unix:PATH: 550 5.7.1", rc == 0, out + d.log()[-2000:])
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_negotiation(d):
    c = MilterClient(d.milter_addr)
    v, actions, steps = c.negotiate()
    T.eq("negotiation: version 6", v, 6)
    T.eq("negotiation: ADDHDRS|CHGHDRS|QUARANTINE of everything offered", actions, 0x31)
    T.eq("negotiation: no-reply steps, HDR_LEADSPC and NOUNKNOWN of everything offered",
         steps, NR_STEPS | HDR_LEADSPC | 0x100)
    c.close()

    # an MTA that offers little: we ask for no more than that, and answer every step
    c = MilterClient(d.milter_addr)
    v, actions, steps = c.negotiate(version=6, actions=0x01, steps=0)
    T.eq("masked: actions = ADDHDRS only", actions, 0x01)
    T.eq("masked: steps = none", steps, 0)
    r = c.message("<alice@reject.example>", ["<rcpt@receiver.test>"],
                  headers("alice@reject.example",
                          [("Authentication-Results", "%s; dmarc=pass" % MTA)]),
                  b"hello\r\n", ip=GOOD_IP, macros={"j": MTA})
    codes = [p[0] for p in r]
    T.eq("masked: the final reply is accept", codes[-1:], [b"a"])
    T.check("masked: no CHGHEADER (not allowed), an INSHEADER", b"m" not in codes and b"i" in codes,
            codes)
    # headers without HDR_LEADSPC: the value goes without the leading space
    ins = [p[1] for p in r if p[0] == b"i"][0]
    name, value = ins[4:].split(b"\0")[:2]
    T.check("masked: A-R value without HDR_LEADSPC has no leading space",
            name == b"Authentication-Results" and value.startswith(MTA.encode() + b";"), ins)
    d.wait_log(r"does not allow header changes: 1 removal")
    c.close()

    # version 2 (Sendmail 8.13): still spoken; version 1 is refused
    c = MilterClient(d.milter_addr)
    v, _, _ = c.negotiate(version=2, actions=0x3F, steps=0)
    T.eq("version 2 MTA: we answer version 2", v, 2)
    c.close()
    c = MilterClient(d.milter_addr)
    c.send(b"O", struct.pack(">III", 1, 0x3F, 0))
    T.check("version 1: connection closed", c.at_eof())
    c.close()


def test_continue_steps(d):
    """Without no-reply steps every command but MACRO and ABORT gets CONTINUE."""
    c = MilterClient(d.milter_addr)
    c.negotiate(actions=ALL_ACTIONS, steps=HDR_LEADSPC)
    got = []
    got.append(c.connect_info("client.test", GOOD_IP))
    got.append(c.step(b"H", b"client.test\0", 0))
    got.append(c.step(b"M", b"<alice@reject.example>\0SIZE=100\0", 0))
    got.append(c.step(b"R", b"<rcpt@receiver.test>\0", 0))
    got.append(c.step(b"T", b"", 0))
    got.append(c.step(b"L", b"From\0 alice@reject.example\0", 0))
    got.append(c.step(b"N", b"", 0))
    got.append(c.step(b"B", b"hi\r\n", 0))
    T.eq("every step answered CONTINUE", [g[0] for g in got], [b"c"] * 8)
    c.send(b"A")          # abort: no reply, the transaction is gone
    r = c.message("<alice@reject.example>", ["<rcpt@receiver.test>"],
                  headers("Alice <alice@reject.example>"), b"hello\r\n", connect=False)
    T.eq("after ABORT a new transaction is scanned and accepted", r[-1][0], b"a")
    # two messages on one connection
    r = c.message("<x@spoofer.test>", ["<rcpt@receiver.test>"],
                  headers("Boss <ceo@reject.example>"), b"hello\r\n", connect=False)
    T.check("second message on the connection: 550 reply",
            r[-1][0] == b"y" and r[-1][1].startswith(b"550 5.7.1 "), r)
    c.send(b"Q")
    T.check("QUIT: connection closed", c.at_eof())
    c.close()


def test_nagle_mta(d):
    """Postfix writes a message as two writes (envelope, then content)
    with Nagle on, so its second write waits until the first is
    acknowledged.  The envelope's steps have no reply; once we have
    answered on a connection, the kernel would delay that ACK by its
    40 ms minimum unless the adapter acknowledges at once."""
    c = MilterClient(d.milter_addr, postfix=True)
    c.negotiate()
    times = []
    for i in range(15):
        t0 = time.monotonic()
        r = c.message("<alice@reject.example>", ["<rcpt@receiver.test>"],
                      headers("Alice <alice@reject.example>"), b"hello\r\n", connect=(i == 0),
                      qid="NAGLE%d" % i)
        times.append(time.monotonic() - t0)
        if r[-1] is None or r[-1][0] != b"a":
            T.check("message %d accepted" % i, False, r)
            break
    c.close()
    times.sort()
    med = times[len(times) // 2]
    T.check("median time per message %.1f ms, want under 20 (a delayed ACK alone is 40)"
            % (med * 1000), med < 0.020, ["%.1f" % (x * 1000) for x in times])


def split_fields(raw, fold):
    """(name, value) as an MTA sends the header fields of raw: the value
    from after the colon (blanks kept: HDR_LEADSPC), line breaks inside a
    folded value written as fold (Postfix: LF; Sendmail: CRLF)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            fields[-1][1] += fold + line
        else:
            n, _, v = line.partition(b":")
            fields.append([n, v])
    return [(n.decode(), v.decode()) for n, v in fields], body


def test_folded_fields_dkim():
    """Folded header fields reach the scan byte for byte as signed (the
    adapter rebuilds them from the MTA's values: Postfix folds with a bare
    LF, Sendmail with CRLF): a c=simple DKIM signature over folded fields,
    itself folded, verifies either way."""
    import arc_util
    import dkim
    pem, txt = arc_util.rsa_key(2048)
    raw = (b"From: Signer <a@signed.example>\r\n"
           b"To: rcpt@receiver.test\r\n"
           b"Subject: a subject folded\r\n\tover two lines\r\n"
           b"X-Folded: one\r\n two\r\n\tthree\r\n"
           b"Message-ID: <folded@signed.example>\r\n"
           b"\r\n"
           b"body line\r\n")
    sig = dkim.sign(raw, b"sel", b"signed.example", pem, canonicalize=(b"simple", b"simple"),
                    include_headers=[b"from", b"to", b"subject", b"x-folded", b"message-id"])
    T.check("the signature is folded (the test covers a folded DKIM-Signature)", b"\r\n" in sig,
            sig)
    zone = ZONE + "sel._domainkey.signed.example. TXT %s\n" % arc_util.U.txt_rdata(txt)
    http_port, milter_port = harness.free_port(), harness.free_port()
    with harness.Daemon(workers=1, zone=zone,
                        listen=["127.0.0.1:%d" % http_port,
                                "milter@127.0.0.1:%d" % milter_port]) as d:
        for how, fold in (("LF (Postfix)", b"\n"), ("CRLF (Sendmail)", b"\r\n")):
            fields, body = split_fields(sig + raw, fold)
            c = MilterClient(("127.0.0.1", milter_port))
            c.negotiate()
            r = c.message("<a@signed.example>", ["<rcpt@receiver.test>"], fields, body,
                          ip=GOOD_IP, raw_values=True)
            c.close()
            ar = [p[1] for p in r if p and p[0] in (b"h", b"i") and b"Authentication-Results" in p[1]]
            T.check("folded with %s: dkim=pass in Authentication-Results" % how,
                    len(ar) == 1 and b"dkim=pass" in ar[0], (r, d.log()[-1500:]))


def test_reply_text_escaped():
    # custom SMTP text from the configuration passes through, escaped
    with daemon('messages.reject = "5.7.1 100% fake \u00e9"\nactions.reject = 1\n') as d:
        c = MilterClient(d.milter_addr)
        c.negotiate()
        r = c.message("<alice@reject.example>", ["<rcpt@receiver.test>"],
                      headers("Alice <alice@reject.example>", [("From", "b@example.net")]),
                      b"x\r\n", ip=GOOD_IP)
        T.eq("custom reject text: %% doubled, non-ASCII as ?", r[-1],
             (b"y", b"550 5.7.1 100%% fake ??\0"))
        c.close()


def test_mapping():
    cfg = ("milter.on.Reject = tempfail\nmilter.tempfail_code = 452 4.7.0\n"
           "milter.on.quarantine = reject\nmilter.reject_code = 554 5.7.1\n")
    with daemon(cfg) as d:
        c = MilterClient(d.milter_addr)
        c.negotiate()
        r = c.message("<x@spoofer.test>", ["<rcpt@receiver.test>"],
                      headers("Boss <ceo@reject.example>"), b"x\r\n", ip=BAD_IP)
        T.eq("milter.on.reject = tempfail with milter.tempfail_code: 452, the text's class "
             "differs so its code is dropped", r[-1],
             (b"y", b"452 4.7.0 Rejected per DMARC policy of reject.example\0"))
        r = c.message("<x@spoofer.test>", ["<rcpt@receiver.test>"],
                      headers("q@quar.example"), b"x\r\n", connect=False)
        T.eq("milter.on.quarantine = reject: 554 5.7.1", r[-1][1][:10], b"554 5.7.1 ")
        c.close()


def test_malformed():
    with daemon() as d:
        malformed(d)


def malformed(d):
    cases = [
        ("length 0", b"\0\0\0\0"),
        ("length over the limit", b"\x7f\xff\xff\xff" + b"O"),
        ("command before negotiation", pkt(b"C", b"h\0" + b"4" + b"\0\x19" + b"1.2.3.4\0")),
    ]
    after_neg = [
        ("unknown command", pkt(b"Z", b"")),
        ("connect with a bad family", pkt(b"C", b"h\0X\0\x191.2.3.4\0")),
        ("header without NUL", pkt(b"L", b"From\0x")),
        ("macro name without value", pkt(b"D", b"Ci\0")),
    ]
    for what, data in cases + [(w, None) for w, _ in after_neg]:
        mark = d.log_mark()
        c = MilterClient(d.milter_addr, timeout=10)
        if data is None:
            data = dict(after_neg)[what]
            c.negotiate()
        c.sock.sendall(data)
        T.check("malformed (%s): connection closed" % what, c.at_eof())
        c.close()
        if what == "length 0":
            # the first one logs a line naming the peer and the reason (later
            # ones within 5 s are counted into the next line: rate limit)
            d.wait_log(r"milter: 127\.0\.0\.1:\d+: malformed packet: length 0 .*closing the "
                       r"connection", since=mark, timeout=10)
    # the worker is unharmed: a normal conversation still works
    c = MilterClient(d.milter_addr)
    c.negotiate()
    r = c.message("<alice@reject.example>", ["<rcpt@receiver.test>"],
                  headers("Alice <alice@reject.example>"), b"hi\r\n", ip=GOOD_IP)
    T.eq("after malformed packets: a message is accepted", r[-1][0], b"a")
    c.close()
    T.check("no worker crashed", "exited on signal" not in d.log() and "crash" not in d.log(),
            d.log()[-2000:])


def test_from_munging():
    # DMARC From munging for a mailing list: applied as header changes
    with daemon("dmarc.munge_lists = list@lists.example\n") as d:
        c = MilterClient(d.milter_addr)
        c.negotiate()
        r = c.message("<alice@reject.example>", ["<list@lists.example>"],
                      headers("Alice <alice@reject.example>"), b"hi\r\n", ip=GOOD_IP)
        chg = [p[1] for p in r if p[0] == b"m"]
        ins = {p[1][4:].split(b"\0")[0]: p[1][4:].split(b"\0")[1] for p in r if p[0] == b"i"}
        T.eq("munging: the From field removed (CHGHEADER index 1, empty value)", chg,
             [b"\0\0\0\1From\0\0"])
        T.check("munging: a rewritten From inserted (via the list)",
                b"From" in ins and b"via" in ins[b"From"] and b"list@lists.example" in ins[b"From"],
                ins)
        T.check("munging: Reply-To and X-Original-From inserted, A-R too",
                b"Reply-To" in ins and b"X-Original-From" in ins and
                b"Authentication-Results" in ins, sorted(ins))
        T.eq("munging: accepted", r[-1][0], b"a")
        c.close()


def test_limits():
    with daemon("limits.max_message_size = 2k\nlimits.max_headers = 6\n") as d:
        c = MilterClient(d.milter_addr)
        c.negotiate()
        mark = d.log_mark()
        r = c.message("<x@spoofer.test>", ["<rcpt@receiver.test>"],
                      headers("Boss <ceo@reject.example>"), b"x" * 3000 + b"\r\n", ip=BAD_IP)
        T.eq("over limits.max_message_size: accepted unscanned", r[-1], (b"a", b""))
        d.wait_log(r"message 4ABC123 over limits\.max_message_size \(2048\): accepted unscanned",
                   since=mark)
        # padding the header past limits.max_headers must not skip the policy
        r = c.message("<x@spoofer.test>", ["<rcpt@receiver.test>"],
                      headers("Boss <ceo@reject.example>", [("X-Pad", "%d" % i) for i in range(5)]),
                      b"x\r\n", connect=False)
        T.check("over limits.max_headers: tempfail 451 with the reason, not accepted",
                r[-1][0] == b"y" and r[-1][1].startswith(b"451 4.7.1 ") and b"header" in r[-1][1],
                r[-1])
        c.close()


def test_silent_mta():
    with daemon("milter.timeout = 1s\n") as d:
        c = MilterClient(d.milter_addr, timeout=20)
        c.negotiate()
        c.connect_info()
        t0 = time.monotonic()
        T.check("silent MTA: connection closed", c.at_eof())
        took = time.monotonic() - t0
        T.check("silent MTA: closed after about milter.timeout (%.1fs)" % took, 0.5 < took < 10)
        d.wait_log(r"MTA silent for 1s \(milter\.timeout\)")
        c.close()


def test_config_errors():
    tmp = harness.tempfile.mkdtemp(prefix="authscan-milter-cfg-")
    cases = [
        ("listen = 127.0.0.1:1\nmilter.timeout = 5m\n",
         "t.conf:2: 'milter.timeout' has no effect: no 'listen' entry speaks milter"),
        ("listen = milter@127.0.0.1:1\nmilter.on.reject = bounce\n",
         "t.conf:2: bad value 'bounce' for 'milter.on.reject'"),
        ("listen = milter@127.0.0.1:1\nmilter.on.reject = reject\n", None),
    ]
    for text, want in cases:
        path = os.path.join(tmp, "t.conf")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", path, "--plugins-dir",
                            harness.PLUGINS], capture_output=True, timeout=60)
        err = p.stderr.decode()
        if want:
            T.check("config error %r" % want, p.returncode != 0 and want in err.replace(path, "t.conf"),
                    err)
        else:
            T.check("config %r accepted" % text, p.returncode == 0, err)
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    with daemon() as d:
        T.run(test_miltertest_verdicts, d)
        T.run(test_miltertest_abort, d)
        T.run(test_negotiation, d)
        T.run(test_continue_steps, d)
        T.run(test_nagle_mta, d)
    T.run(test_malformed)
    T.run(test_miltertest_unix)
    T.run(test_reply_text_escaped)
    T.run(test_folded_fields_dkim)
    T.run(test_mapping)
    T.run(test_from_munging)
    T.run(test_limits)
    T.run(test_silent_mta)
    T.run(test_config_errors)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
