#!/usr/bin/python3
"""ARC chains built by a second implementation (python3-dkim's arc_sign)
verified by the arc plugin, and by dkimpy's arc_verify as a referee: every
case states the status both must find.

Cases: one and two hops; a body changed between hops (pass, with the
oldest-pass naming the set that still verifies); tampering after the last
seal with the body, a signed header, an AAR, a seal's cv=; keys missing,
timing out, too small (RFC 8301) or of the wrong type.  The zone serves
the keys; dkimpy reads the same records.  "N passed, N failed" at the end.
"""
import os
import re
import sys
import tempfile

import dkim

sys.path.insert(0, os.path.dirname(__file__))
import arc_util as A  # noqa: E402
import harness as H  # noqa: E402
import dkim_util as U  # noqa: E402

T = H.Tests("arc_dkimpy")


def records(extra=None):
    recs = {"%s._domainkey.%s" % (s, d): A.key(s)[1]
            for s, d in (("hop1", "lists.example.org"), ("hop2", "fwd.example.net"))}
    recs.update(extra or {})
    return recs


def dkimpy_cv(msg, recs, minkey=1024):
    def dnsfunc(name, timeout=5):
        n = name.decode().rstrip(".")
        v = recs.get(n)
        return v.encode() if isinstance(v, str) else None
    cv, results, why = dkim.arc_verify(msg, dnsfunc=dnsfunc, minkey=minkey)
    return (cv or b"none").decode().lower(), why


def scan(msg, recs, timeouts=(), settings=()):
    with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as f:
        f.write(msg)
        path = f.name
    try:
        return U.run_check(path, U.zone_text(recs, timeouts=timeouts), settings,
                           ["--ip", "192.0.2.7"])
    finally:
        os.unlink(path)


def case(name, msg, want, recs=None, want_dkimpy=None, timeouts=(), oldest=None,
         reason=None, settings=()):
    recs = records() if recs is None else recs
    reply, _, _, err = scan(msg, recs, timeouts, settings)
    if not T.check(name + ": scan ran", reply is not None, err):
        return
    got = A.cv(reply)
    sym = A.arc_symbol(reply)
    T.eq(name + ": arc plugin", got, want)
    dp = want_dkimpy or want
    if dp != "skip":
        dgot, why = dkimpy_cv(msg, {k: v for k, v in recs.items() if k not in timeouts})
        T.eq(name + ": dkimpy (referee) " + why, dgot, dp)
    opts = A.options(reply, sym)
    if oldest is not None:
        T.check(name + ": oldest-pass", "oldest-pass:%d" % oldest in opts,
                "got %s, want oldest-pass:%d" % (opts, oldest))
        ar = A.auth_results(reply)
        T.check(name + ": A-R", re.search(r"arc=pass \(i=\d+ d=[^)]*\) smtp.remote-ip=192.0.2.7 "
                                          r"header.oldest-pass=%d" % oldest, ar), ar)
    if reason is not None:
        T.check(name + ": reason", any(reason in o for o in opts),
                "got %s, want one containing %r" % (opts, reason))


def test_chains():
    one = A.seal(A.BASE, b"lists.example.org", b"hop1", b"lists.example.org")
    two = A.seal(one, b"fwd.example.net", b"hop2", b"fwd.example.net", cv=b"pass")
    case("one hop", one, "pass", oldest=0)
    case("two hops", two, "pass", oldest=0)
    # hop 2 changes the body (a list footer) before sealing: the chain
    # still passes, but only set 2's AMS verifies
    footer = one + b"-- \r\nlist footer\r\n"
    two_mod = A.seal(footer, b"fwd.example.net", b"hop2", b"fwd.example.net", cv=b"pass")
    case("two hops, body changed between them", two_mod, "pass", oldest=2)
    # ... and a change after the last seal fails the newest AMS
    case("body changed after the seal", two + b"tampered\r\n", "fail",
         reason="body hash did not verify")
    case("signed header changed after the seal",
         two.replace(b"Subject: ARC test", b"Subject: ARC test!"), "fail",
         reason="ARC-Message-Signature i=2: signature did not verify")
    aar1 = re.search(rb"ARC-Authentication-Results: i=1; lists.example.org;", two)
    tampered = two[:aar1.end()] + b" arc=pass;" + two[aar1.end():]
    case("AAR of set 1 changed", tampered, "fail", reason="ARC-Seal i=2: signature did not verify")
    # dkimpy follows the draft here (no status); RFC 8617 5.2 step 2 says fail
    case("newest seal's cv= changed", two.replace(b"cv=pass", b"cv=fail", 1), "fail",
         want_dkimpy="none", reason="the newest ARC-Seal says cv=fail")
    # keys
    recs = records()
    del recs["hop1._domainkey.lists.example.org"]
    case("no key for the sealer", one, "fail", recs=recs, reason="no key record")
    case("key query times out", one, "temperror", want_dkimpy="skip",
         timeouts=["hop1._domainkey.lists.example.org"], reason="key query")
    small = dict(records())
    A.KEYS["hop1"], saved = A.rsa_key(512), A.KEYS["hop1"]
    try:
        small_msg = A.seal(A.BASE, b"lists.example.org", b"hop1", b"lists.example.org")
        small = records()
        case("RSA-512 sealer (RFC 8301)", small_msg, "fail", recs=small,
             reason="RSA key too small")
        case("RSA-512 sealer with arc.min_rsa_bits=512", small_msg, "pass", recs=small,
             want_dkimpy="skip", settings=["arc.min_rsa_bits=512"])
    finally:
        A.KEYS["hop1"] = saved
    wrong = records({"hop1._domainkey.lists.example.org":
                     "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="})
    # (dkimpy raises on this one: nacl refuses the RSA signature's length)
    case("key of the wrong type", one, "fail", recs=wrong, want_dkimpy="skip",
         reason="key type does not match a=")
    case("unsigned message", A.BASE, "none")


def main():
    T.run(test_chains)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
