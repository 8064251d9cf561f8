#!/usr/bin/python3
"""Sealing (issue 20): the arc plugin adds an ARC set to the mail it scans
when arc.sign_domain, arc.selector and arc.key are set, as header
additions of the reply (checkv2 milter.add_headers).  The sealed message
(the additions put on top, as an MTA does) must verify with dkimpy's
arc_verify and with our own plugin, for RSA and Ed25519 keys, as the first
set, on top of a chain dkimpy sealed, and under a later dkimpy seal;
tampering after our seal must fail; a failed chain is sealed with
cv=fail; rejected mail is not sealed; configuration errors are refused.
The set also reaches a spamd client: spamc's default mode (PROCESS) gets
the message back with the set in its header, and it verifies.
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile

import dkim

sys.path.insert(0, os.path.dirname(__file__))
import arc_util as A  # noqa: E402
import dkim_util as U  # noqa: E402
import harness as H  # noqa: E402

T = H.Tests("arc_seal")
TMP = tempfile.mkdtemp(prefix="arcseal")


def openssl(*args, data=None):
    return subprocess.run(["openssl"] + list(args), input=data, capture_output=True,
                          check=True).stdout


def make_key(kind):
    path = os.path.join(TMP, kind + ".pem")
    if kind == "rsa":
        pem = openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    else:
        pem = openssl("genpkey", "-algorithm", "ed25519")
    with open(path, "wb") as f:
        f.write(pem)
    der = openssl("pkey", "-pubout", "-outform", "DER", data=pem)
    if kind == "rsa":
        rec = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    else:
        rec = "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
    return path, rec


KEYS = {k: make_key(k) for k in ("rsa", "ed25519")}


def records():
    return {
        "rsa._domainkey.seal.example": KEYS["rsa"][1],
        "ed._domainkey.seal.example": KEYS["ed25519"][1],
        "hop1._domainkey.lists.example.org": A.key("hop1")[1],
        "hop2._domainkey.fwd.example.net": A.key("hop2")[1],
    }


def sealing(kind="rsa"):
    return ["arc.sign_domain=seal.example", "arc.selector=" + ("rsa" if kind == "rsa" else "ed"),
            "arc.key=" + KEYS[kind][0]]


def scan(msg, settings=(), extra=("--ip", "192.0.2.7")):
    path = os.path.join(TMP, "m.eml")
    with open(path, "wb") as f:
        f.write(msg)
    return U.run_check(path, U.zone_text(records()), list(settings), list(extra))


def added(reply):
    adds = (reply or {}).get("milter", {}).get("add_headers", {})
    out = {}
    for name, v in adds.items():
        vals = v if isinstance(v, list) else [v]
        out[name] = [x["value"] for x in vals]
    return out


def apply_seal(msg, reply):
    """The message as the MTA passes it on: the set on top, newest first."""
    a = added(reply)
    top = b""
    for name in ("ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"):
        if name not in a:
            return None
        top += ("%s: %s\r\n" % (name, a[name][0])).encode()
    return top + msg


def dkimpy_cv(msg):
    recs = records()

    def dnsfunc(name, timeout=5):
        v = recs.get(name.decode().rstrip("."))
        return v.encode() if v else None
    cv, _, why = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    return (cv or b"none").decode().lower(), why


def ours_cv(msg):
    reply, _, _, err = scan(msg)
    return A.cv(reply) if reply else "error: " + err


def seal_and_check(name, msg, kind="rsa", want_i=1, want_cv="none"):
    reply, _, _, err = scan(msg, sealing(kind))
    if not T.check(name + ": scan ran", reply is not None, err):
        return None
    sealed = apply_seal(msg, reply)
    if not T.check(name + ": an ARC set was added", sealed is not None, added(reply)):
        return None
    a = added(reply)
    T.check(name + ": ARC-Seal i=%d cv=%s" % (want_i, want_cv),
            ("i=%d;" % want_i) in a["ARC-Seal"][0] and ("cv=%s;" % want_cv) in a["ARC-Seal"][0],
            a["ARC-Seal"][0])
    T.check(name + ": AAR records our verdict",
            a["ARC-Authentication-Results"][0].startswith("i=%d; " % want_i) and
            "arc=%s" % want_cv in a["ARC-Authentication-Results"][0],
            a["ARC-Authentication-Results"][0])
    # dkimpy 1.1.4's ARC code knows rsa-sha256 only ("unknown signature
    # algorithm" for ed25519-sha256): Ed25519 seals are checked by our
    # verifier alone, whose Ed25519 path is the DKIM plugin's (RFC 8463 suite)
    if want_cv != "fail" and kind == "rsa":
        cv, why = dkimpy_cv(sealed)
        T.eq(name + ": dkimpy verifies our seal (%s)" % why, cv, "pass")
    if want_cv != "fail":
        T.eq(name + ": we verify our seal", ours_cv(sealed), "pass")
    return sealed


def test_first_set():
    for kind in ("rsa", "ed25519"):
        sealed = seal_and_check("first set, " + kind, A.BASE, kind)
        if sealed:
            if kind == "rsa":
                T.eq("first set, %s: body changed after the seal: dkimpy" % kind,
                     dkimpy_cv(sealed + b"tampered\r\n")[0], "fail")
            T.eq("first set, %s: body changed after the seal: ours" % kind,
                 ours_cv(sealed + b"tampered\r\n"), "fail")
    # LF line ends on the protocol side seal the same canonical message
    lf = A.BASE.replace(b"\r\n", b"\n")
    reply, _, _, err = scan(lf, sealing())
    sealed = apply_seal(A.BASE, reply) if reply else None
    T.check("LF message: sealed", sealed is not None, err)
    if sealed:
        T.eq("LF message: dkimpy verifies the CRLF form", dkimpy_cv(sealed)[0], "pass")


def test_chains():
    theirs = A.seal(A.BASE, b"lists.example.org", b"hop1", b"lists.example.org")
    ours = seal_and_check("on top of dkimpy's set", theirs, want_i=2, want_cv="pass")
    if ours:
        # a later hop (dkimpy) seals over ours: both verifiers accept the chain
        third = A.seal(ours, b"fwd.example.net", b"hop2", b"fwd.example.net", cv=b"pass")
        T.eq("dkimpy over ours: dkimpy", dkimpy_cv(third)[0], "pass")
        T.eq("dkimpy over ours: ours", ours_cv(third), "pass")
    # a chain that fails is sealed with cv=fail (RFC 8617 5.1.2)
    broken = theirs + b"changed after hop1\r\n"
    seal_and_check("failed chain", broken, want_i=2, want_cv="fail")


def test_not_sealed():
    # rejected mail: a spoof of a p=reject domain
    recs = records()
    recs["_dmarc.d1.example"] = "v=DMARC1; p=reject"
    path = os.path.join(TMP, "spoof.eml")
    with open(path, "wb") as f:
        f.write(A.BASE)
    reply, _, _, err = U.run_check(path, U.zone_text(recs), sealing(),
                                   ["--ip", "192.0.2.7", "--from", "a@d1.example"])
    T.check("spoof scanned", reply is not None, err)
    T.eq("spoof: action", (reply or {}).get("action"), "reject")
    T.check("spoof: not sealed", "ARC-Seal" not in added(reply), added(reply))
    # a malformed chain cannot be numbered: not sealed
    bad = b"ARC-Seal: i=1; cv=pass; a=rsa-sha256; d=x.example; s=s; b=AA==\r\n" + A.BASE
    reply, _, _, err = scan(bad, sealing())
    T.check("malformed chain: not sealed", reply is not None and "ARC-Seal" not in added(reply),
            err or added(reply))


def test_config():
    msg = os.path.join(TMP, "c.eml")
    with open(msg, "wb") as f:
        f.write(A.BASE)
    badkey = os.path.join(TMP, "bad.pem")
    with open(badkey, "w") as f:
        f.write("not a key\n")
    small = os.path.join(TMP, "small.pem")
    with open(small, "wb") as f:
        f.write(openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"))
    cases = [
        ("sign_domain alone", ["arc.sign_domain=seal.example"], "arc.selector is missing"),
        ("no key", ["arc.sign_domain=seal.example", "arc.selector=s"], "arc.key is missing"),
        ("missing key file", sealing()[:2] + ["arc.key=/nonexistent.pem"], "cannot open"),
        ("not a key", sealing()[:2] + ["arc.key=" + badkey], "not a PEM private key"),
        ("RSA-512 key", sealing()[:2] + ["arc.key=" + small], "RFC 8301"),
        ("sign_headers without From", sealing() + ["arc.sign_headers=subject"], "must include From"),
        ("sign_headers without sealing", ["arc.sign_headers=from"], "has no effect"),
        ("bad sign_domain", ["arc.sign_domain=-x", "arc.selector=s", "arc.key=" + badkey],
         "not a domain name"),
    ]
    for name, settings, want in cases:
        reply, _, _, err = U.run_check(msg, "", settings)
        T.check("config %s: refused with %r" % (name, want), reply is None and want in err, err)


def test_spamd_process():
    """spamc PROCESS: the set is in the message spamc prints, and verifies."""
    spamc = shutil.which("spamc") or "/usr/bin/spamc"
    port = H.free_port()
    cfg = "[arc]\nsign_domain = seal.example\nselector = rsa\nkey = %s\n" % KEYS["rsa"][0]
    msg = A.BASE.replace(b"\r\n", b"\n")
    with H.Daemon(workers=1, config=cfg, zone=U.zone_text(records()),
                  listen=["127.0.0.1:%d" % H.free_port(), "spamd@127.0.0.1:%d" % port]):
        p = subprocess.run([spamc, "-d", "127.0.0.1", "-p", str(port), "-t", "30"], input=msg,
                           capture_output=True, timeout=60)
    T.eq("spamc PROCESS: exit 0", p.returncode, 0)
    out = p.stdout
    head = out.split(b"\n\n", 1)[0]
    for name in (b"ARC-Seal:", b"ARC-Message-Signature:", b"ARC-Authentication-Results:"):
        T.check("spamc PROCESS: %s in the returned header" % name.decode(),
                (b"\n" + name) in (b"\n" + head), head[:2000])
    crlf = out.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    T.eq("spamc PROCESS: dkimpy verifies the set", dkimpy_cv(crlf)[0], "pass")
    T.eq("spamc PROCESS: we verify the set", ours_cv(crlf), "pass")


def main():
    for fn in (test_first_set, test_chains, test_not_sealed, test_config, test_spamd_process):
        T.run(fn)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
