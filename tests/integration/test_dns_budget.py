#!/usr/bin/env python3
"""test_dns_budget.py - issue 10.3: one plugin's DNS work must not starve
another's, and SPF stays inside RFC 7208 4.6.4.

The attacker's records are in tests/data/hostile/dns-budget.zone (the
hostile corpus scans the spoofs themselves).  Here:
  - through a live authscand (one worker, so /stat counts one scan): the
    queries a scan makes for the prefetch-amplifying and the exhausting
    SPF records stay within what RFC 7208 allows two check_host() runs
    plus DMARC, and the spoof is still rejected;
  - the same spoofs against a real nsd serving the zone (forwarding mode);
  - a spoof rejected even with a tiny shared pool (dns.max_queries=1):
    DMARC's policy lookup comes from its own reserve;
  - dns.max_queries and dns.plugin_reserve are range-checked with file:line.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import nsd  # noqa: E402

ZONE_PATH = harness.data_file(os.path.join("hostile", "dns-budget.zone"))
with open(ZONE_PATH) as f:
    ZONE = f.read()
SPOOF = (b"From: CEO <ceo@example.com>\r\nTo: finance@example.net\r\nSubject: wire\r\n"
         b"Message-ID: <b@evil.example>\r\n\r\npay now\r\n")

# RFC 7208 4.6.4: one check_host() makes at most 1 TXT + 10 terms, each at
# most 1 + 10 lookups (mx with 10 names), plus the exp= TXT: 112.  Two
# identities (MAIL FROM, HELO), DMARC's reserve (4 authors x 9) and DKIM.
RFC_BOUND = 2 * 112 + 36 + 8

t = harness.Tests("dns_budget")


def envelope(helo, mail_from, ip="203.0.113.66"):
    return {"IP": ip, "Helo": helo, "From": mail_from}


def scan_counted(d, helo, mail_from):
    before = d.stat()["dns"]
    st, reply = d.checkv2(SPOOF, headers=envelope(helo, mail_from))
    after = d.stat()["dns"]
    return st, reply, after["queries"] - before["queries"], \
        after["budget_exhausted"] - before["budget_exhausted"]


def test_counts():
    # unlimited shared pool: what the records alone make us ask
    with harness.Daemon(workers=1, zone=ZONE, args=["-s", "dns.max_queries=0"]) as d:
        for helo, mf, why in (
                ("amp.evil.example", "bounce@amp.evil.example",
                 "ten includes listing ten mx terms each (was ~1100 prefetched lookups)"),
                ("h.evil.example", "bounce@b.evil.example",
                 "10 mx terms of 10 hosts for HELO and for MAIL FROM")):
            st, reply, n, refused = scan_counted(d, helo, mf)
            harness.log("%s: %d queries" % (why, n))
            t.eq("%s: status" % helo, st, 200)
            t.check("%s: reject" % helo, reply.get("action") == "reject", reply)
            t.check("%s: %d queries <= RFC 7208 bound %d" % (helo, n, RFC_BOUND),
                    0 < n <= RFC_BOUND, why)
            t.eq("%s: nothing refused" % helo, refused, 0)


def test_default_budget():
    # defaults: the exhausting records meet the budget, DMARC still decides
    with harness.Daemon(workers=1, zone=ZONE) as d:
        st, reply, n, refused = scan_counted(d, "h.evil.example", "bounce@b.evil.example")
        t.check("default budget: reject", reply.get("action") == "reject", reply)
        syms = reply.get("symbols", {})
        t.check("default budget: DMARC_POLICY_REJECT", "DMARC_POLICY_REJECT" in syms, syms)
        t.check("default budget: no DMARC_DNSFAIL", "DMARC_DNSFAIL" not in syms, syms)
        t.check("default budget: HELO check was refused queries", refused > 0, refused)
        t.check("default budget: %d queries <= 128 + reserves" % n, n <= 128 + 8 * 3 + 36, n)
        d.wait_log(r"dns: spf has made its \d+ reserved queries")


def test_tiny_pool():
    # one shared query: SPF gets its reserve only, DMARC its own reserve
    rc, out, err = harness.run_check(SPOOF, ["--ip", "203.0.113.66", "--helo", "h.evil.example",
                                             "--from", "bounce@b.evil.example",
                                             "-s", "dns.max_queries=1"], zone=ZONE)
    t.eq("tiny pool: exit", rc, 0)
    t.check("tiny pool: reject", isinstance(out, dict) and out.get("action") == "reject",
            out if not isinstance(out, dict) else out.get("symbols"))
    syms = out.get("symbols", {}) if isinstance(out, dict) else {}
    t.check("tiny pool: SPF of the exhausting record is permerror, not temperror",
            "R_SPF_PERMFAIL" in syms and "R_SPF_DNSFAIL" not in syms, syms)


def test_nsd():
    # the same spoofs against a real server (root zone, forwarding mode)
    with nsd.NSD({".": ZONE_PATH}) as server:
        for helo, mf, author in (("h.evil.example", "bounce@b.evil.example", b"example.com"),
                                 ("amp.evil.example", "ceo@corp.example", b"corp.example"),
                                 ("mail.evil.com", "bounce@evil.com", b"example.com")):
            msg = SPOOF.replace(b"example.com", author, 1)
            rc, out, err = harness.run_check(msg, ["--dns-server", server.address, "--ip",
                                                   "203.0.113.66", "--helo", helo, "--from", mf],
                                             zone=None)
            t.check("nsd %s: reject" % helo,
                    isinstance(out, dict) and out.get("action") == "reject",
                    out.get("symbols") if isinstance(out, dict) else (out, err))


def test_config_checks():
    for key, value in (("max_queries", "-1"), ("max_queries", "1000001"),
                       ("plugin_reserve", "100001"), ("plugin_reserve", "-5")):
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, "a.conf")
            with open(conf, "w") as f:
                f.write("[dns]\n# budget\n%s = %s\n" % (key, value))
            p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", conf,
                                "--plugins-dir", harness.PLUGINS],
                               capture_output=True, text=True, timeout=60)
            msg = p.stdout + p.stderr
            t.check("dns.%s = %s refused" % (key, value), p.returncode != 0, msg)
            t.check("dns.%s = %s names file:line" % (key, value),
                    "%s:3:" % conf in msg and "dns.%s" % key in msg, msg)


t.run(test_counts)
t.run(test_default_budget)
t.run(test_tiny_pool)
t.run(test_nsd)
t.run(test_config_checks)
sys.exit(t.finish())
