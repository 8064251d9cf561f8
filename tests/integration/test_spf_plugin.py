#!/usr/bin/python3
"""The spf plugin's own behaviour through the real CLI: symbols and their
options, HELO / null sender, trusted relays and Received: parsing, skipping
authenticated and local senders, IPv4-mapped clients, +all, option
validation.  Prints "N passed, N failed"; exits non-zero on failure."""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("AUTHSCAN_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("AUTHSCAN_BIN", os.path.join(SRC, "build", "bin"))
PLUGINS = os.environ.get("AUTHSCAN_PLUGINS")

ZONE = r"""$ORIGIN .
$TTL 300
example.com. TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net ~all"
example.com. TXT "unrelated verification text"
_spf.example.net. TXT "v=spf1 mx:example.net -all"
example.net. MX 10 mx1.example.net.
example.net. MX 20 mx2.example.net.
mx1.example.net. A 198.51.100.1
mx2.example.net. A 198.51.100.2
mx2.example.net. AAAA 2001:db8::2
helo.example.org. TXT "v=spf1 a -all"
helo.example.org. A 203.0.113.9
open.example.org. TXT "v=spf1 +all"
broken.example.org. TXT "v=spf1 ip4:192.0.2.1 foo:bar -all"
noexp.example.org. TXT "v=spf1 a:nxd1.example.org a:nxd2.example.org a:nxd3.example.org -all"
slow.example.org. TXT "v=spf1 include:dead.example.org -all"
chain.example. TXT "v=spf1 include:l1.chain.example -all"
l1.chain.example. TXT "v=spf1 include:l2.chain.example -all"
l2.chain.example. TXT "v=spf1 include:l3.chain.example -all"
l3.chain.example. TXT "v=spf1 ip4:192.0.2.0/24 -all"
; authscan: timeout dead.example.org.
"""

RELAYED = (b"Received: from relay2.example.com (relay2.example.com [10.1.1.2])\r\n"
           b"\tby mx.example.com (Postfix) with ESMTP id 1; Thu, 5 Dec 2019 18:22:18 +0300\r\n"
           b"Received: from sender.example.org (sender.example.org [192.0.2.77])\r\n"
           b"\tby relay2.example.com (Postfix) with ESMTP id 2; Thu, 5 Dec 2019 18:22:17 +0300\r\n"
           b"Received: from [203.0.113.50] (helo=first.example) by sender.example.org\r\n"
           b"\twith esmtp; Thu, 5 Dec 2019 18:22:16 +0300\r\n"
           b"From: a@example.com\r\nSubject: relayed\r\n\r\nbody\r\n")
PLAIN = b"From: a@example.com\r\nSubject: plain\r\n\r\nbody\r\n"

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL %s %s" % (name, detail))


def run(tmp, args, msg=PLAIN, ok=True):
    mfile = os.path.join(tmp, "m.eml")
    with open(mfile, "wb") as f:
        f.write(msg)
    cmd = [os.path.join(BIN, "authscan"), "check", "--dns-zone", os.path.join(tmp, "z.zone"),
           "--json"] + args + [mfile]
    if PLUGINS:
        cmd[2:2] = ["--plugins-dir", PLUGINS]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    if not ok:
        return p
    if p.returncode != 0:
        return {"error": p.stderr.decode(errors="replace")}
    return json.loads(p.stdout).get("symbols", {})


def spf_syms(syms):
    return {k: v.get("options", []) for k, v in syms.items() if k.startswith("R_SPF_")}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "z.zone"), "w") as f:
            f.write(ZONE)

        s = spf_syms(run(tmp, ["--ip", "192.0.2.10", "--helo", "x.example", "--from", "a@example.com"]))
        check("ip4 pass", s == {"R_SPF_ALLOW": ["+ip4:192.0.2.0/24"]}, s)

        s = spf_syms(run(tmp, ["--ip", "198.51.100.2", "--helo", "x.example", "--from", "a@Example.COM"]))
        check("include+mx pass", s == {"R_SPF_ALLOW": ["+include:_spf.example.net"]}, s)

        s = spf_syms(run(tmp, ["--ip", "2001:db8::2", "--helo", "x.example", "--from", "a@example.com"]))
        check("ipv6 via mx", s == {"R_SPF_ALLOW": ["+include:_spf.example.net"]}, s)

        s = spf_syms(run(tmp, ["--ip", "::ffff:192.0.2.10", "--helo", "x.example", "--from", "a@example.com"]))
        check("ipv4-mapped client", s == {"R_SPF_ALLOW": ["+ip4:192.0.2.0/24"]}, s)

        s = spf_syms(run(tmp, ["--ip", "203.0.113.1", "--helo", "x.example", "--from", "a@example.com"]))
        check("softfail", s == {"R_SPF_SOFTFAIL": ["~all"]}, s)

        s = spf_syms(run(tmp, ["--ip", "203.0.113.9", "--helo", "helo.example.org", "--from", ""]))
        check("null sender uses HELO", s == {"R_SPF_ALLOW": ["+a"]}, s)

        s = spf_syms(run(tmp, ["--ip", "203.0.113.8", "--helo", "helo.example.org", "--from", "<>"]))
        check("null sender HELO fail", s == {"R_SPF_FAIL": ["-all"]}, s)

        s = spf_syms(run(tmp, ["--ip", "203.0.113.8", "--helo", "[203.0.113.8]", "--from", ""]))
        check("HELO literal is none", list(s) == ["R_SPF_NA"], s)

        s = spf_syms(run(tmp, ["--ip", "203.0.113.8", "--helo", "x.example", "--from", "a@nothing.example"]))
        check("no record", list(s) == ["R_SPF_NA"] and s["R_SPF_NA"] == ["nothing.example"], s)

        s = spf_syms(run(tmp, ["--ip", "203.0.113.8", "--helo", "x.example", "--from", "a@open.example.org"]))
        check("plusall", set(s) == {"R_SPF_ALLOW", "R_SPF_PLUSALL"}, s)

        s = spf_syms(run(tmp, ["--ip", "192.0.2.1", "--helo", "x.example", "--from", "a@broken.example.org"]))
        check("syntax error is permerror", list(s) == ["R_SPF_PERMFAIL"] and
              s["R_SPF_PERMFAIL"][0] == "broken.example.org", s)

        s = spf_syms(run(tmp, ["--ip", "192.0.2.1", "--helo", "x.example", "--from", "a@noexp.example.org"]))
        check("void lookup limit", list(s) == ["R_SPF_PERMFAIL"], s)

        s = spf_syms(run(tmp, ["--ip", "192.0.2.1", "--helo", "x.example", "--from", "a@slow.example.org"]))
        check("timeout is temperror", list(s) == ["R_SPF_DNSFAIL"], s)

        # authenticated and local senders are skipped
        s = spf_syms(run(tmp, ["--ip", "203.0.113.1", "--helo", "x.example", "--from", "a@example.com",
                               "--user", "alice"]))
        check("authenticated skipped", s == {}, s)
        s = spf_syms(run(tmp, ["--ip", "203.0.113.1", "--helo", "x.example", "--from", "a@example.com",
                               "--user", "alice", "-s", "spf.skip_authenticated=no"]))
        check("authenticated checked when configured", list(s) == ["R_SPF_SOFTFAIL"], s)
        s = spf_syms(run(tmp, ["--ip", "10.9.9.9", "--helo", "x.example", "--from", "a@example.com",
                               "-s", "spf.local_networks=10.0.0.0/8"]))
        check("local network skipped", s == {}, s)

        # trusted relays: the first untrusted hop from the top is evaluated
        relay = ["--ip", "10.1.1.1", "--helo", "relay1.example.com", "--from", "a@example.com",
                 "-s", "spf.trusted_relays=10.1.1.0/24"]
        s = spf_syms(run(tmp, relay, RELAYED))
        check("relay hop (Postfix form)", s == {"R_SPF_ALLOW": ["+ip4:192.0.2.0/24"]}, s)
        s = spf_syms(run(tmp, relay + ["-s", "spf.trusted_relays+=192.0.2.77"], RELAYED))
        check("relay hop (Exim form)", s == {"R_SPF_SOFTFAIL": ["~all"]}, s)
        s = spf_syms(run(tmp, ["--ip", "10.1.1.1", "--helo", "relay1.example.com", "--from", "a@example.com"],
                         RELAYED))
        check("no relays configured: the connecting host counts",
              s == {"R_SPF_SOFTFAIL": ["~all"]}, s)

        # An include chain three deep is fetched as its records arrive:
        # one evaluation misses the identity's record, the next has every
        # answer (one round per level before: 5)
        p = run(tmp, ["--ip", "192.0.2.5", "--from", "a@chain.example", "--log-level", "debug"], ok=False)
        err = p.stderr.decode(errors="replace")
        rounds = [line.rsplit("(", 1)[-1] for line in err.splitlines() if "spf: spf=" in line]
        check("include chain: got %s, want ['2 rounds)']" % rounds, rounds == ["2 rounds)"], err[-500:])
        check("include chain passes", b'"R_SPF_ALLOW"' in p.stdout, p.stdout[-300:])

        # no client address: R_SPF_NA
        s = spf_syms(run(tmp, ["--helo", "x.example", "--from", "a@example.com"]))
        check("no ip", list(s) == ["R_SPF_NA"], s)

        # option validation
        p = run(tmp, ["--ip", "192.0.2.1", "-s", "spf.max_dns_terms=50"], ok=False)
        check("bad option rejected", p.returncode != 0, p.returncode)
        p = run(tmp, ["--ip", "192.0.2.1", "-s", "spf.trusted_relays=not-a-net"], ok=False)
        check("bad network rejected", p.returncode != 0, p.returncode)

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
