"""arc_util.py - shared helpers of the ARC integration tests.

cv(reply) maps the arc plugin's symbol in an `authscan check --json` reply
to the chain validation status: ARC_ALLOW pass, ARC_REJECT and ARC_INVALID
fail, ARC_DNSFAIL temperror, ARC_NA none.  Scans go through
dkim_util.run_check() (authscan check with a zone file for DNS).
"""
import base64
import os
import subprocess
import sys

import dkim

sys.path.insert(0, os.path.dirname(__file__))
import dkim_util as U  # noqa: E402,F401

DATA = os.path.join(U.SRC, "tests", "data", "arc")
SYMBOL_CV = {"ARC_ALLOW": "pass", "ARC_REJECT": "fail", "ARC_INVALID": "fail",
             "ARC_DNSFAIL": "temperror", "ARC_NA": "none"}


def arc_symbol(reply):
    syms = U.symbols(reply)
    found = [s for s in SYMBOL_CV if s in syms]
    return found[0] if len(found) == 1 else ("several: %s" % found if found else None)


def cv(reply):
    return SYMBOL_CV.get(arc_symbol(reply) or "", None)


def options(reply, sym):
    return U.symbols(reply).get(sym, {}).get("options", [])


def auth_results(reply):
    h = (reply or {}).get("milter", {}).get("add_headers", {}).get("Authentication-Results")
    if isinstance(h, list):
        h = h[0]
    return h.get("value", "") if h else ""


SIGN_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


def rsa_key(bits):
    pem = subprocess.run(["openssl", "genrsa", str(bits)], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


KEYS = {}


def key(name, bits=2048):
    if name not in KEYS:
        KEYS[name] = rsa_key(bits)
    return KEYS[name]


BASE = (b"From: Author <author@d1.example>\r\n"
        b"To: list@lists.example.org\r\n"
        b"Subject: ARC test\r\n"
        b"Date: Thu, 14 Jan 2015 15:00:01 -0800\r\n"
        b"Message-ID: <arc-test@d1.example>\r\n"
        b"\r\n"
        b"Hello,\r\n  this is  a test.\r\n\r\n")


def seal(msg, domain, selector, srv_id, cv=None,
         results=b"spf=pass smtp.mailfrom=d1.example; dkim=pass header.d=d1.example"):
    """One hop: an Authentication-Results of the hop saying `results`, then
    dkimpy's set."""
    ar = b"Authentication-Results: " + srv_id + b"; " + results
    if cv:
        ar += b"; arc=" + cv
    m = ar + b"\r\n" + msg
    hdrs = dkim.arc_sign(m, selector, domain, key(selector.decode())[0], srv_id,
                         include_headers=SIGN_HEADERS, timestamp=1700000000)
    if not hdrs:
        raise RuntimeError("dkimpy produced no ARC set")
    # the hop's own Authentication-Results stays behind (as a real hop's would)
    return b"".join(hdrs) + m


