"""arc_util.py - shared helpers of the ARC integration tests.

cv(reply) maps the arc plugin's symbol in an `authscan check --json` reply
to the chain validation status: ARC_ALLOW pass, ARC_REJECT and ARC_INVALID
fail, ARC_DNSFAIL temperror, ARC_NA none.  Scans go through
dkim_util.run_check() (authscan check with a zone file for DNS).
"""
import os
import sys

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
