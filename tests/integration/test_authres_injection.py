"""Authentication-Results cannot be forged through SMTP session values.

HELO and MAIL FROM are chosen by the client.  Quoted by as_authres_value,
they stay one property value each: the header we add parses (with the real
python3-authres parser) into exactly our results, whatever the client sent.
"""
import json
import os
import subprocess
import sys

import authres

BIN = os.environ.get("AUTHSCAN_BIN", "build/bin")
SRC = os.environ.get("AUTHSCAN_SRC", ".")
ZONE = os.path.join(SRC, "tests/data/demo/demo.zone")
MSG = os.path.join(SRC, "tests/data/clean.eml")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def scan(helo, mail_from):
    out = subprocess.run([os.path.join(BIN, "authscan"), "check", "--json", "--dns-zone", ZONE,
                          "--mta-name", "mx.test", "--ip", "192.0.2.1", "--helo", helo,
                          "--from", mail_from, MSG], capture_output=True, timeout=60)
    check(out.returncode == 0, "exit %d: %r" % (out.returncode, out.stderr))
    reply = json.loads(out.stdout)
    ar = reply["milter"]["add_headers"]["Authentication-Results"]
    return ar["value"] if isinstance(ar, dict) else ar[0]["value"]


HOSTILE = [
    ("x; dkim=pass header.d=bank.example", ""),
    ("mx.example", "a@b.example; dkim=pass header.d=bank.example"),
    ("x\" ; dmarc=pass header.from=bank.example", ""),
    ("mx.example", "\"quoted; dmarc=pass\"@evil.example"),
    ("helo\\", "a@\xe9vil.example"),
    ("(comment) dkim=pass", "x@(dkim=pass).example"),
]
for helo, mail_from in HOSTILE:
    value = scan(helo, mail_from)
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(value)
    except Exception as e:  # noqa: BLE001 - an unparseable header is a failure
        check(False, "unparseable header for %r/%r: %r (%s)" % (helo, mail_from, value, e))
        continue
    methods = sorted(r.method for r in parsed.results)
    check(methods == ["dkim", "dmarc", "spf"],
          "helo %r from %r: results %s in %r" % (helo, mail_from, methods, value))
    dkim = [r for r in parsed.results if r.method == "dkim"]
    dmarc = [r for r in parsed.results if r.method == "dmarc"]
    check(dkim and dkim[0].result == "none", "forged dkim result: %r" % value)
    check(dmarc and dmarc[0].result == "fail", "forged dmarc result: %r" % value)
    check(parsed.authserv_id == "mx.test", "authserv-id: %r" % parsed.authserv_id)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
