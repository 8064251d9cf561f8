#!/usr/bin/python3
"""Cross-check of the RFC 9989 audit cases (tests/data/dmarc/rfc9989-audit.json)
against mailauth (npm), an independent RFC 9989 implementation.

Every case runs through mailauth's DMARC evaluation with a resolver fed from
the case's zone (tests/data/dmarc/mailauth_crosscheck.js).  mailauth must
give the case's "mailauth" outcome when one is recorded (a disagreement,
with the RFC section that decides it in "mailauth_note" and docs/dmarc.md),
and the case's "tree" outcome otherwise.  So the test fails both when a new
disagreement appears and when a recorded one goes away.  Our own side of
every case is checked by unit.test_dmarc_conformance.

Optional: the test suite installs nothing from npm.  It needs node (Debian
`nodejs`) and mailauth, found through $AUTHSCAN_MAILAUTH (a directory where
`npm install mailauth` was run) or node's usual module path; without them it
prints "skip: ..." and passes.  Recorded against mailauth 7.1.0.
"""
import json
import os
import shutil
import subprocess
import sys

SRC = os.environ.get("AUTHSCAN_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SRC, "tests", "data", "dmarc")
AUDIT = os.path.join(DATA, "rfc9989-audit.json")
DRIVER = os.path.join(DATA, "mailauth_crosscheck.js")


def node_env():
    env = dict(os.environ)
    d = os.environ.get("AUTHSCAN_MAILAUTH")
    if d:
        env["NODE_PATH"] = os.pathsep.join(
            x for x in (os.path.join(d, "node_modules"), env.get("NODE_PATH")) if x)
    return env


def main():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        print("skip: node not installed (apt install nodejs npm), mailauth cross-check not run")
        return 0
    env = node_env()
    probe = subprocess.run([node, "-e", "console.log(require('mailauth/package.json').version)"],
                           capture_output=True, text=True, env=env, timeout=60)
    if probe.returncode != 0:
        print("skip: mailauth not found; run `npm install mailauth` in a directory and set "
              "AUTHSCAN_MAILAUTH to it to run the cross-check")
        return 0
    version = probe.stdout.strip()
    p = subprocess.run([node, DRIVER, AUDIT], capture_output=True, text=True, env=env, timeout=120)
    if p.returncode != 0:
        print("FAIL: mailauth driver: %s" % p.stderr[-2000:])
        return 1
    got = json.loads(p.stdout)
    with open(AUDIT) as f:
        cases = json.load(f)["cases"]
    passed = failed = recorded = 0
    for c in cases:
        want = c.get("mailauth", c["tree"])
        recorded += "mailauth" in c
        g = got.get(c["id"], {})
        diff = ["%s: mailauth %r, want %r" % (k, g.get(k), v)
                for k, v in want.items() if k != "bad_policy" and g.get(k) != v]
        if diff:
            failed += 1
            print("FAIL %s (%s): %s" % (c["id"], c["title"], "; ".join(diff)))
        else:
            passed += 1
    print("mailauth %s: %d cases agree or disagree as recorded (%d recorded disagreements), "
          "%d differ" % (version, passed, recorded, failed))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
