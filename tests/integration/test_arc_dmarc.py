#!/usr/bin/python3
"""End to end: trusted ARC sealers and DMARC (issue 20).

A message from d1.example (DMARC p=reject) is DKIM-signed by its author
domain, then a list (lists.example.org) tags the subject and appends a
footer, which breaks the signature, and seals it with dkimpy's arc_sign,
recording the pass it saw.  The list relays from its own IP with its own
envelope sender, so SPF does not align either: DMARC fails.  Scanned:
  - without arc.trusted_sealers: rejected (the ARC chain still passes);
  - with the list trusted: delivered, and why is said in DMARC's symbol
    options, in Authentication-Results (dmarc=fail ... trusted_forwarder
    arc=pass sealer=..., arc=pass ... smtp.remote-ip ... header.oldest-pass)
    and, through the typed result, for the report (docs/arc.md);
  - arc.trusted_action = quarantine: quarantined at most;
and it must stay rejected when the chain fails, when the trusted sealer
recorded no aligned pass, when another selector of the sealer is
trusted, or when only a later, untrusted hop vouches.
"""
import os
import re
import sys
import tempfile

import dkim

sys.path.insert(0, os.path.dirname(__file__))
import arc_util as A  # noqa: E402
import dkim_util as U  # noqa: E402
import harness as H  # noqa: E402

T = H.Tests("arc_dmarc")
LIST_IP = "192.0.2.7"


def records():
    return {
        "auth._domainkey.d1.example": A.key("auth")[1],
        "hop1._domainkey.lists.example.org": A.key("hop1")[1],
        "hop2._domainkey.fwd.example.net": A.key("hop2")[1],
        "_dmarc.d1.example": "v=DMARC1; p=reject",
        "lists.example.org": "v=spf1 ip4:%s -all" % LIST_IP,
        "fwd.example.net": "v=spf1 ip4:%s -all" % LIST_IP,
    }


def signed_original():
    sig = dkim.sign(A.BASE, b"auth", b"d1.example", A.key("auth")[0],
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig + A.BASE


def through_list(msg, **kw):
    modified = msg.replace(b"Subject: ARC test", b"Subject: [list] ARC test")
    modified += b"-- \r\nlist footer\r\n"
    return A.seal(modified, b"lists.example.org", b"hop1", b"lists.example.org", **kw)


def scan(msg, settings=()):
    with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as f:
        f.write(msg)
        path = f.name
    try:
        reply, _, _, err = U.run_check(path, U.zone_text(records()), list(settings),
                                       ["--ip", LIST_IP, "--from", "bounce@lists.example.org",
                                        "--helo", "lists.example.org"])
    finally:
        os.unlink(path)
    T.check("scan ran", reply is not None, err)
    return reply or {}


def dmarc_symbol(reply):
    syms = [s for s in U.symbols(reply) if s.startswith("DMARC_")]
    return syms[0] if len(syms) == 1 else syms


def test_untrusted_rejected():
    msg = through_list(signed_original())
    r = scan(msg)
    T.eq("untrusted: ARC chain", A.cv(r), "pass")
    T.eq("untrusted: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_REJECT")
    T.eq("untrusted: action", r.get("action"), "reject")


def test_trusted_delivered():
    msg = through_list(signed_original())
    r = scan(msg, ["arc.trusted_sealers=lists.example.org"])
    T.eq("trusted: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_SOFTFAIL")
    T.check("trusted: action not reject/quarantine",
            r.get("action") not in ("reject", "quarantine"), r.get("action"))
    opts = A.options(r, "DMARC_POLICY_SOFTFAIL")
    T.check("trusted: DMARC options name the reason", "trusted_forwarder" in opts, opts)
    T.check("trusted: DMARC options name the sealer",
            any("sealer=lists.example.org i=1" in o for o in opts), opts)
    ar = A.auth_results(r)
    T.check("trusted: A-R dmarc entry", re.search(
        r"dmarc=fail \(p=reject dis=none trusted_forwarder arc=pass sealer=lists.example.org "
        r"i=1 recorded (dkim|spf)=pass d1.example\) header.from=d1.example "
        r"policy.dmarc=reject", ar), ar)
    T.check("trusted: A-R arc entry", re.search(
        r"arc=pass \(i=1 d=lists.example.org\) smtp.remote-ip=%s header.oldest-pass=0"
        % re.escape(LIST_IP), ar), ar)
    # selector-qualified trust
    r = scan(msg, ["arc.trusted_sealers=lists.example.org:hop1"])
    T.eq("trusted with selector: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_SOFTFAIL")
    r = scan(msg, ["arc.trusted_sealers=lists.example.org:other"])
    T.eq("other selector trusted: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_REJECT")
    # the site's choice: at most quarantine
    r = scan(msg, ["arc.trusted_sealers=lists.example.org", "arc.trusted_action=quarantine"])
    T.eq("trusted_action=quarantine: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_QUARANTINE")
    T.eq("trusted_action=quarantine: action", r.get("action"), "quarantine")


def test_trusted_but_not_enough():
    trust = ["arc.trusted_sealers=lists.example.org"]
    msg = through_list(signed_original())
    r = scan(msg + b"changed after the seal\r\n", trust)
    T.eq("chain fails: ARC", A.cv(r), "fail")
    T.eq("chain fails: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_REJECT")
    bad = through_list(signed_original(), results=b"spf=pass smtp.mailfrom=other.example; "
                                                  b"dkim=fail header.d=d1.example")
    r = scan(bad, trust)
    T.eq("no aligned pass recorded: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_REJECT")
    # trusted list, then an untrusted forwarder that breaks nothing but
    # also vouches: the trusted set still counts (the chain passes)
    two = A.seal(msg, b"fwd.example.net", b"hop2", b"fwd.example.net", cv=b"pass")
    r = scan(two, trust)
    T.eq("trusted older set: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_SOFTFAIL")
    r = scan(two, ["arc.trusted_sealers=elsewhere.example"])
    T.eq("only untrusted sealers: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_REJECT")


def test_without_arc_plugin():
    # DMARC runs after arc only when it is loaded (struct as_plugin.after):
    # switched off, DMARC still runs and enforces the policy
    msg = through_list(signed_original())
    r = scan(msg, ["plugins.disable=arc"])
    T.eq("arc disabled: no ARC symbol", A.arc_symbol(r), None)
    T.eq("arc disabled: DMARC symbol", dmarc_symbol(r), "DMARC_POLICY_REJECT")


def cache_line(err):
    m = re.search(r"dkim: key cache \(shared with arc\): (\d+) lookups, (\d+) hits, (\d+) decodes",
                  err)
    return tuple(int(x) for x in m.groups()) if m else err[-800:]


def test_shared_key_cache():
    """The author domain signs and seals with one key (auth._domainkey.
    d1.example): DKIM's signature, the AMS and the seal use one decoded
    key from the worker's one cache (dkim_keys.h dkimkey_cache_shared)."""
    msg = A.seal(signed_original(), b"d1.example", b"auth", b"d1.example")
    with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as f:
        f.write(msg)
        path = f.name
    try:
        reply, _, _, err = U.run_check(path, U.zone_text(records()), [],
                                       ["--ip", LIST_IP, "--from", "bounce@lists.example.org"])
        T.eq("one key for DKIM and ARC: chain", A.cv(reply or {}), "pass")
        T.eq("one key for DKIM and ARC: (lookups, hits, decodes) of the shared cache",
             cache_line(err), (3, 2, 1))
        # arc.key_cache_size = 0 (its kill switch): arc decodes afresh, DKIM alone in the cache
        reply, _, _, err = U.run_check(path, U.zone_text(records()), ["arc.key_cache_size=0"],
                                       ["--ip", LIST_IP, "--from", "bounce@lists.example.org"])
        T.eq("arc.key_cache_size=0: chain", A.cv(reply or {}), "pass")
        T.eq("arc.key_cache_size=0: the shared cache has DKIM's lookup only",
             cache_line(err), (1, 0, 1))
    finally:
        os.unlink(path)


def test_config():
    rc_ok = U.run_check
    with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as f:
        f.write(A.BASE)
        path = f.name
    try:
        reply, _, _, err = rc_ok(path, "", ["arc.trusted_action=quarantine"])
        T.check("trusted_action without trusted_sealers refused",
                reply is None and "trusted_action" in err and "no effect" in err, err)
        reply, _, _, err = rc_ok(path, "", ["arc.trusted_sealers=not a domain"])
        T.check("bad trusted_sealers item refused",
                reply is None and "trusted_sealers" in err, err)
        reply, _, _, err = rc_ok(path, "", ["arc.trusted_action=maybe",
                                            "arc.trusted_sealers=lists.example.org"])
        T.check("bad trusted_action refused", reply is None and "deliver or quarantine" in err, err)
    finally:
        os.unlink(path)


def main():
    for fn in (test_untrusted_rejected, test_trusted_delivered, test_trusted_but_not_enough,
               test_without_arc_plugin, test_shared_key_cache, test_config):
        T.run(fn)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
