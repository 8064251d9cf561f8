#!/usr/bin/python3
"""The dmarc plugin end to end through `authscan check --json`: enforcement
(forced action, SMTP text), symbols and options, t=y, pct (RFC 7489 mode),
DNS failure, the mailing-list safeguard, several From domains, malformed
From, Authentication-Results (parsed with python3-authres) and removal of
forged ones, From rewriting for list addresses, skipping authenticated
senders.

DKIM outcomes come from the DKIM test fixture (tests/data/dmarc/
dkim_fixture.c: X-Test-DKIM headers), so each case chooses them; SPF is the
real spf plugin against a zone file.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ.get("AUTHSCAN_SRC", os.path.join(
    os.path.dirname(__file__), "..", "..")), "tests", "data", "dmarc"))
import dmarc_harness as H  # noqa: E402

import authres  # noqa: E402  (Debian python3-authres)

GOOD_IP = "192.0.2.10"
BAD_IP = "203.0.113.9"
MTA = "mx.receiver.test"

ZONE = {
    "_dmarc.reject.example": [("TXT", "v=DMARC1; p=reject; rua=mailto:agg@reject.example")],
    "reject.example": [("TXT", "v=spf1 ip4:192.0.2.10 -all"), ("A", "192.0.2.10")],
    "bounce.reject.example": [("TXT", "v=spf1 ip4:192.0.2.10 -all")],
    "_dmarc.quar.example": [("TXT", "v=DMARC1; p=quarantine")],
    "quar.example": [("TXT", "v=spf1 ip4:192.0.2.10 -all")],
    "_dmarc.none.example": [("TXT", "v=DMARC1; p=none")],
    "none.example": [("TXT", "v=spf1 ip4:192.0.2.10 -all")],
    "_dmarc.testing.example": [("TXT", "v=DMARC1; p=reject; t=y")],
    "testing.example": [("TXT", "v=spf1 -all")],
    "_dmarc.pct.example": [("TXT", "v=DMARC1; p=reject; pct=0")],
    "pct.example": [("TXT", "v=spf1 -all")],
    "_dmarc.tmp.example": [("TIMEOUT", None)],
    "tmp.example": [("TXT", "v=spf1 -all")],
    "_dmarc.bad.example": [("TXT", "v=DMARC1; p=bogus")],
    "_dmarc.np.example": [("TXT", "v=DMARC1; p=none; np=reject")],
    "real.np.example": [("A", "192.0.2.20")],
    "spoofer.test": [("TXT", "v=spf1 ip4:203.0.113.9 -all")],
    # issue 11: two records at a subdomain of a p=reject Organizational Domain
    "_dmarc.twice.example": [("TXT", "v=DMARC1; p=reject")],
    "_dmarc.mail.twice.example": [("TXT", "v=DMARC1; p=none"),
                                  ("TXT", "v=DMARC1; p=quarantine")],
}


def message(frm, extra=(), body="hello\r\n"):
    lines = []
    if frm is not None:
        lines.append("From: %s" % frm)
    lines += ["To: rcpt@receiver.test", "Subject: test", "Message-ID: <x@test>"]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class T:
    passed = 0
    failed = 0

    @classmethod
    def check(cls, cond, what):
        if cond:
            cls.passed += 1
        else:
            cls.failed += 1
            print("FAIL: %s" % what)


def sym(reply, name):
    return reply.get("symbols", {}).get(name)


def add_headers(reply, name):
    v = reply.get("milter", {}).get("add_headers", {}).get(name)
    if v is None:
        return []
    return [x["value"] for x in (v if isinstance(v, list) else [v])]


def parse_ar(value):
    return authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        plugins = H.fixture_dir(tmp)
        zone = os.path.join(tmp, "dmarc.zone")
        H.zone_file(zone, ZONE)
        n = [0]

        def run(frm, extra=(), **kw):
            n[0] += 1
            path = os.path.join(tmp, "m%d.eml" % n[0])
            with open(path, "wb") as f:
                f.write(message(frm, extra))
            kw.setdefault("mta_name", MTA)
            return H.scan(plugins, zone, path, **kw)

        # 1. a spoofed p=reject message is rejected out of the box
        r = run("Bank <alerts@reject.example>", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(r["action"] == "reject", "spoof p=reject: action %s" % r["action"])
        T.check(r.get("messages", {}).get("smtp_message") ==
                "5.7.1 Rejected per DMARC policy of reject.example",
                "spoof: smtp_message %r" % r.get("messages"))
        T.check(r.get("passthrough_module") == "dmarc", "spoof: passthrough_module")
        s = sym(r, "DMARC_POLICY_REJECT")
        T.check(s is not None and s.get("options") == ["reject.example", "reject"],
                "spoof: DMARC_POLICY_REJECT options %r" % s)
        ar = add_headers(r, "Authentication-Results")
        T.check(len(ar) == 1, "spoof: one A-R, got %r" % ar)
        if ar:
            h = parse_ar(ar[0])
            T.check(h.authserv_id == MTA, "A-R authserv-id %r" % h.authserv_id)
            methods = [x.method for x in h.results]
            T.check(methods == ["spf", "dkim", "dmarc"], "A-R methods %r" % methods)
            d = [x for x in h.results if x.method == "dmarc"][0]
            T.check(d.result == "fail", "A-R dmarc result %r" % d.result)
            props = {(p.type, p.name): p.value for p in d.properties}
            T.check(props.get(("header", "from")) == "reject.example", "A-R header.from %r" % props)
            T.check(props.get(("policy", "dmarc")) == "reject", "A-R policy.dmarc %r" % props)

        # 2. aligned SPF (relaxed: bounce.reject.example) passes
        r = run("alerts@reject.example", ip=GOOD_IP, mail_from="b@bounce.reject.example")
        T.check(sym(r, "DMARC_POLICY_ALLOW") is not None, "relaxed SPF pass: %r" % r["symbols"])
        T.check(r["action"] == "no action" and "passthrough_module" not in r,
                "pass: no forced action")
        h = parse_ar(add_headers(r, "Authentication-Results")[0])
        T.check([x.result for x in h.results if x.method == "dmarc"] == ["pass"], "A-R pass")

        # 3. DKIM pass aligned (fixture) passes even with SPF failing
        r = run("a@reject.example", ["X-Test-DKIM: pass reject.example s1"], ip=BAD_IP,
                mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_POLICY_ALLOW") is not None, "DKIM pass: %r" % r["symbols"])
        ar = add_headers(r, "Authentication-Results")[0]
        h = parse_ar(ar)
        dk = [x for x in h.results if x.method == "dkim"]
        T.check(len(dk) == 1 and dk[0].result == "pass", "A-R dkim entry %r" % ar)

        # 4. quarantine, none
        r = run("a@quar.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_POLICY_QUARANTINE") is not None and r["action"] == "quarantine",
                "quarantine: %s %r" % (r["action"], r["symbols"].keys()))
        r = run("a@none.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_POLICY_SOFTFAIL") is not None and r["action"] == "no action",
                "p=none: %s" % r["action"])

        # 5. t=y: reject applied as quarantine, reason "testing"
        r = run("a@testing.example", ip=BAD_IP, mail_from="x@spoofer.test")
        s = sym(r, "DMARC_POLICY_QUARANTINE")
        T.check(s is not None and "testing" in s.get("options", []) and r["action"] == "quarantine",
                "t=y: %r %s" % (s, r["action"]))

        # 6. pct=0: RFC 9989 ignores it, RFC 7489 mode samples out
        r = run("a@pct.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_POLICY_REJECT") is not None, "pct=0 tree mode: reject")
        r = run("a@pct.example", ip=BAD_IP, mail_from="x@spoofer.test",
                settings=["dmarc.discovery=psl"])
        s = sym(r, "DMARC_POLICY_QUARANTINE")
        T.check(s is not None and "sampled_out" in s.get("options", []),
                "pct=0 psl mode: %r" % r["symbols"].keys())

        # 7. DNS failure: DMARC_DNSFAIL, temperror, no enforcement
        r = run("a@tmp.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_DNSFAIL") is not None and r["action"] == "no action",
                "dnsfail: %s %r" % (r["action"], r["symbols"].keys()))
        h = parse_ar(add_headers(r, "Authentication-Results")[0])
        T.check([x.result for x in h.results if x.method == "dmarc"] == ["temperror"],
                "A-R temperror")

        # 8. mailing list: List-Id + broken aligned DKIM -> quarantine, reason mailing_list
        r = run("a@reject.example", ["List-Id: Talk <talk.lists.example>",
                                     "X-Test-DKIM: fail reject.example s1"],
                ip=BAD_IP, mail_from="talk-bounces@spoofer.test")
        s = sym(r, "DMARC_POLICY_QUARANTINE")
        T.check(s is not None and "mailing_list" in s.get("options", []) and
                r["action"] == "quarantine", "list downgrade: %r %s" % (s, r["action"]))
        ar = add_headers(r, "Authentication-Results")
        T.check(ar and "mailing_list" in ar[0] and "policy.dmarc=reject" in ar[0],
                "list downgrade A-R %r" % ar)
        # ... but not without List-Id, nor when the safeguard is off
        r = run("a@reject.example", ["X-Test-DKIM: fail reject.example s1"], ip=BAD_IP,
                mail_from="x@spoofer.test")
        T.check(r["action"] == "reject", "no List-Id: reject")
        r = run("a@reject.example", ["List-Id: <talk.lists.example>",
                                     "X-Test-DKIM: fail reject.example s1"], ip=BAD_IP,
                mail_from="x@spoofer.test", settings=["dmarc.mailing_list_downgrade=no"])
        T.check(r["action"] == "reject", "safeguard off: reject")
        # ... nor when the broken signature is not the author's
        r = run("a@reject.example", ["List-Id: <talk.lists.example>",
                                     "X-Test-DKIM: fail other.example s1"], ip=BAD_IP,
                mail_from="x@spoofer.test")
        T.check(r["action"] == "reject", "list, unaligned broken sig: reject")

        # 9. enforcement configurable
        r = run("a@reject.example", ip=BAD_IP, mail_from="x@spoofer.test",
                settings=["dmarc.reject_action=none"])
        T.check(r["action"] != "reject" and sym(r, "DMARC_POLICY_REJECT") is not None,
                "reject_action=none: %s" % r["action"])
        r = run("a@quar.example", ip=BAD_IP, mail_from="x@spoofer.test",
                settings=["dmarc.quarantine_action=add_header"])
        T.check(r["action"] == "add header", "quarantine_action=add_header: %s" % r["action"])

        # 10. several From domains: the strictest failing policy applies
        r = run("a@none.example, b@reject.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(r["action"] == "reject" and sym(r, "DMARC_POLICY_REJECT") is not None,
                "multi-From: %s" % r["action"])
        # a malformed From is scanned for domains rather than skipped
        r = run('"Bank <alerts@reject.example>" alerts@reject.example', ip=BAD_IP,
                mail_from="x@spoofer.test")
        T.check(r["action"] == "reject", "malformed From: %s %r" % (r["action"], r["symbols"].keys()))
        # no From at all: DMARC_NA
        r = run(None, ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_NA") is not None, "no From: %r" % r["symbols"].keys())

        # 11. unusable record: DMARC_BAD_POLICY, result none
        r = run("a@bad.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_BAD_POLICY") is not None, "bad policy: %r" % r["symbols"].keys())

        # 11b. several records at the Author Domain (issue 11): RFC 9989 4.10
        # steps 2 and 6 discard them and walk on, so twice.example's p=reject
        # applies; RFC 7489 6.6.3 (psl mode) ends discovery: no policy
        r = run("a@mail.twice.example", ip=BAD_IP, mail_from="x@spoofer.test")
        s = sym(r, "DMARC_POLICY_REJECT")
        T.check(s is not None and s.get("options") == ["twice.example", "reject"] and
                r["action"] == "reject", "two records, tree: %s %r" % (r["action"], r["symbols"]))
        r = run("a@mail.twice.example", ip=BAD_IP, mail_from="x@spoofer.test",
                settings=["dmarc.discovery=psl"])
        T.check(sym(r, "DMARC_BAD_POLICY") is not None and r["action"] == "no action",
                "two records, psl: %s %r" % (r["action"], r["symbols"].keys()))

        # 12. np= for a non-existent subdomain, sp/p for an existing one
        r = run("a@ghost.np.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(r["action"] == "reject", "np NXDOMAIN: %s" % r["action"])
        r = run("a@real.np.example", ip=BAD_IP, mail_from="x@spoofer.test")
        T.check(sym(r, "DMARC_POLICY_SOFTFAIL") is not None, "np existing: %r" % r["symbols"].keys())

        # 13. A-R removal: ours are flagged (0 = all when every one is ours)
        forged = ["Authentication-Results: %s; dmarc=pass header.from=reject.example" % MTA]
        r = run("a@reject.example", forged, ip=GOOD_IP, mail_from="b@reject.example")
        rm = r.get("milter", {}).get("remove_headers", {})
        T.check(rm.get("Authentication-Results") == 0, "remove all ours: %r" % rm)
        mixed = ["Authentication-Results: other.example; spf=pass smtp.mailfrom=x.test",
                 "Authentication-Results: (comment) %s; dkim=pass header.d=reject.example" % MTA.upper()]
        r = run("a@reject.example", mixed, ip=GOOD_IP, mail_from="b@reject.example")
        rm = r.get("milter", {}).get("remove_headers", {})
        T.check(rm.get("Authentication-Results") == 2, "remove the 2nd: %r" % rm)
        r = run("a@reject.example", ["Authentication-Results: other.example; spf=pass"],
                ip=GOOD_IP, mail_from="b@reject.example")
        T.check("Authentication-Results" not in r.get("milter", {}).get("remove_headers", {}),
                "foreign A-R kept")

        # 14. authserv-id: option > MTA-Name
        r = run("a@reject.example", ip=GOOD_IP, mail_from="b@reject.example",
                settings=["dmarc.authserv_id=auth.example.net"])
        T.check(parse_ar(add_headers(r, "Authentication-Results")[0]).authserv_id ==
                "auth.example.net", "authserv_id option")

        # 15. From rewriting for a list address (only for DMARC pass by default)
        lst = ["dmarc.munge_lists=talk@lists.example"]
        r = run('"Ann Author" <ann@reject.example>', ["List-Id: Talk List <talk.lists.example>"],
                ip=GOOD_IP, mail_from="b@reject.example", rcpts=["talk@lists.example"],
                settings=lst)
        frm = add_headers(r, "From")
        T.check(frm == ['"Ann Author via Talk List" <talk@lists.example>'], "munged From %r" % frm)
        T.check(add_headers(r, "Reply-To") == ['"Ann Author" <ann@reject.example>'],
                "munged Reply-To %r" % add_headers(r, "Reply-To"))
        T.check(add_headers(r, "X-Original-From") == ['"Ann Author" <ann@reject.example>'],
                "X-Original-From")
        T.check(r.get("milter", {}).get("remove_headers", {}).get("From") == 0, "From removed")
        T.check(sym(r, "DMARC_MUNGED") is not None, "DMARC_MUNGED")
        r = run('"Ann" <ann@reject.example>', ip=GOOD_IP, mail_from="b@reject.example",
                rcpts=["talk@lists.example"], settings=lst + ["dmarc.munge_style=invalid"])
        T.check(add_headers(r, "From") == ['"Ann" <ann@reject.example.INVALID>'],
                "invalid style %r" % add_headers(r, "From"))
        # not for p=none, not for other recipients, not for failing mail
        r = run("ann@none.example", ip=GOOD_IP, mail_from="b@none.example",
                rcpts=["talk@lists.example"], settings=lst)
        T.check(not add_headers(r, "From"), "p=none not munged")
        r = run("ann@reject.example", ip=GOOD_IP, mail_from="b@reject.example",
                rcpts=["someone@lists.example"], settings=lst)
        T.check(not add_headers(r, "From"), "non-list rcpt not munged")
        r = run("ann@reject.example", ["List-Id: <talk.lists.example>",
                                       "X-Test-DKIM: fail reject.example"], ip=BAD_IP,
                mail_from="x@spoofer.test", rcpts=["talk@lists.example"], settings=lst)
        T.check(not add_headers(r, "From"), "failing mail not munged (no laundering)")

        # 16. authenticated senders are not DMARC-checked (nor SPF-checked);
        # the core still writes A-R with what ran (DKIM) and removes forgeries
        r = run("a@reject.example", forged, ip=BAD_IP, mail_from="x@spoofer.test", user="alice")
        T.check(not any(k.startswith("DMARC") for k in r["symbols"]), "authenticated: skipped")
        ar = add_headers(r, "Authentication-Results")
        T.check(len(ar) == 1 and [(x.method, x.result) for x in parse_ar(ar[0]).results] ==
                [("dkim", "none")], "authenticated: A-R %r" % ar)
        T.check(r.get("milter", {}).get("remove_headers", {}).get("Authentication-Results") == 0,
                "authenticated: forged A-R removed %r" % r.get("milter"))

        # 17. every A-R we produced above parses; one more with all parts
        r = run("a@reject.example", ["X-Test-DKIM: pass reject.example s1",
                                     "X-Test-DKIM: fail other.example s2"],
                ip=GOOD_IP, mail_from="b@reject.example")
        h = parse_ar(add_headers(r, "Authentication-Results")[0])
        T.check([(x.method, x.result) for x in h.results] ==
                [("spf", "pass"), ("dkim", "pass"), ("dkim", "fail"), ("dmarc", "pass")],
                "A-R full %r" % [(x.method, x.result) for x in h.results])

    print("%d passed, %d failed" % (T.passed, T.failed))
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
