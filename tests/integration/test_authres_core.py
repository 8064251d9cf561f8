#!/usr/bin/env python3
"""test_authres_core.py - Authentication-Results is a core finishing step.

For every scan that a Settings-ID profile does not exempt, the core
removes every A-R field carrying our authserv-id (however many) and adds
one field with the entries of whatever methods ran, also when DMARC was
skipped (authenticated user, local IP, a profile without dmarc).  The real
spf, dkim and dmarc plugins, the demo zone and the demo's DKIM-signed
message (tests/data/demo/01-legit.eml: SPF, DKIM and DMARC pass from
192.0.2.10).  Every case runs through `authscan check` and, unless it
needs its own overrides, through a live authscand; every A-R value is
parsed with python3-authres.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import authres  # noqa: E402  (Debian python3-authres)

MTA = "mx.test"
AR = "Authentication-Results"
with open(os.path.join(harness.DATA, "demo", "demo.zone")) as f:
    ZONE = f.read()
with open(os.path.join(harness.DATA, "demo", "01-legit.eml"), "rb") as f:
    LEGIT = f.read()

PROFILES = """
[settings.nodmarc]
plugins_disabled = dmarc
[settings.noauth]
plugins_disabled = spf, dkim, dmarc
[settings.exempt]
auth_results = no
"""

GOOD = {"ip": "192.0.2.10", "helo": "mx.example.com", "from": "alice@example.com"}
LOCAL = dict(GOOD, ip="127.0.0.1")
USER = dict(GOOD, user="alice")
ALL3 = [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]


def forged(n, ids=None):
    """n A-R fields claiming our id (ids(i) overrides the id of field i)."""
    out = b""
    for i in range(n):
        aid = ids(i) if ids else (MTA if i % 2 else "(comment) " + MTA.upper())
        out += b"%s: %s; dmarc=pass header.from=example.com\r\n" % (AR.encode(), aid.encode())
    return out


def foreign_at_35(i):
    return "other.example" if i == 34 else MTA


# name, prefix (header fields before the message), envelope, settings-id,
# -s overrides (these cases run through the CLI only), want:
#   methods: [(method, result)] of our field, or None for no field
#   remove:  milter.remove_headers["Authentication-Results"], or None
#   id:      the authserv-id of our field
CASES = [
    ("all ran", forged(1), GOOD, None, {}, ALL3, 0, MTA),
    ("no forged field: nothing removed", b"", GOOD, None, {}, ALL3, None, MTA),
    ("foreign field kept", forged(2, lambda i: "other.example"), GOOD, None, {}, ALL3, None,
     MTA),
    ("100 forged fields all removed", forged(100), GOOD, None, {}, ALL3, 0, MTA),
    ("100 forged + 1 foreign: each of ours by position", forged(101, foreign_at_35), GOOD,
     None, {}, ALL3, [i for i in range(101, 0, -1) if i != 35], MTA),
    ("authenticated user: no SPF, no DMARC", forged(3), USER, None, {},
     [("dkim", "pass")], 0, MTA),
    ("authenticated user, SPF on: DMARC skipped", forged(3), USER, None,
     {"spf.skip_authenticated": "no"}, [("spf", "pass"), ("dkim", "pass")], 0, MTA),
    ("local IP: SPF and DMARC skipped", forged(3), LOCAL, None, {}, [("dkim", "pass")], 0, MTA),
    ("profile without dmarc", forged(3), GOOD, "nodmarc", {},
     [("spf", "pass"), ("dkim", "pass")], 0, MTA),
    ("profile without any auth plugin", forged(3), GOOD, "noauth", {}, [], 0, MTA),
    ("exempt profile: nothing added or removed", forged(100), GOOD, "exempt", {}, None, None,
     None),
    ("auth_results.add = no", forged(3), GOOD, None, {"auth_results.add": "no"}, None, 0, None),
    ("auth_results.remove_forged = no", forged(3), GOOD, None,
     {"auth_results.remove_forged": "no"}, ALL3, None, MTA),
    ("auth_results.authserv_id", forged(2) + forged(1, lambda i: "auth.example"), GOOD, None,
     {"auth_results.authserv_id": "auth.example"}, ALL3, 3, "auth.example"),
    ("alias dmarc.add_auth_results = no", forged(3), GOOD, None,
     {"dmarc.add_auth_results": "no"}, None, 0, None),
    ("alias dmarc.remove_own_auth_results = no", forged(3), GOOD, None,
     {"dmarc.remove_own_auth_results": "no"}, ALL3, None, MTA),
    ("alias dmarc.authserv_id", forged(1), GOOD, None, {"dmarc.authserv_id": "auth.example"},
     ALL3, None, "auth.example"),
    ("alias and new name agree", forged(1), GOOD, None,
     {"dmarc.add_auth_results": "on", "auth_results.add": "yes"}, ALL3, 0, MTA),
]


def judge(t, where, case, reply):
    name, _, _, _, _, methods, remove, aid = case
    milter = reply.get("milter", {})
    adds = milter.get("add_headers", {}).get(AR)
    adds = [] if adds is None else (adds if isinstance(adds, list) else [adds])
    if methods is None:
        t.eq("%s %s: no A-R added" % (where, name), adds, [])
    elif t.eq("%s %s: one A-R added" % (where, name), len(adds), 1):
        value = adds[0]["value"]
        try:
            h = authres.AuthenticationResultsHeader.parse_value(value)
        except Exception as e:  # noqa: BLE001 - unparseable is a failure
            t.check("%s %s: A-R parses" % (where, name), False, "%r: %s" % (value, e))
            return
        t.eq("%s %s: authserv-id" % (where, name), h.authserv_id, aid)
        t.eq("%s %s: methods in %r" % (where, name, value),
             [(r.method, r.result) for r in h.results], methods)
        t.eq("%s %s: order" % (where, name), adds[0].get("order"), 0)
    t.eq("%s %s: removal" % (where, name), milter.get("remove_headers", {}).get(AR), remove)


def cli_args(env, sid, sets, config):
    a = ["--mta-name", MTA, "-c", config]
    for flag, key in (("--ip", "ip"), ("--helo", "helo"), ("--from", "from"),
                      ("--user", "user")):
        if key in env:
            a += [flag, env[key]]
    if sid:
        a += ["--settings-id", sid]
    for k, v in sorted(sets.items()):
        a += ["-s", "%s=%s" % (k, v)]
    return a


def test_cli(t, config):
    for case in CASES:
        name, prefix, env, sid, sets = case[:5]
        rc, out, err = harness.run_check(prefix + LEGIT, cli_args(env, sid, sets, config),
                                         zone=ZONE)
        if not t.eq("cli %s: exit status" % name, rc, 0) or not isinstance(out, dict):
            t.check("cli %s: output" % name, False, err[-2000:])
            continue
        judge(t, "cli", case, out)
        if any(k.startswith("dmarc.") and "auth" in k for k in sets):
            t.check("cli %s: deprecation warning" % name, "is deprecated: use 'auth_results."
                    in err, err[-2000:])


def test_daemon(t):
    with harness.Daemon(workers=1, zone=ZONE, config=PROFILES) as d:
        for case in CASES:
            name, prefix, env, sid, sets = case[:5]
            if sets:
                continue
            h = {"MTA-Name": MTA, "IP": env["ip"], "Helo": env["helo"], "From": env["from"]}
            if "user" in env:
                h["User"] = env["user"]
            if sid:
                h["Settings-ID"] = sid
            st, reply = d.checkv2(prefix + LEGIT, headers=h, timeout=60)
            if t.eq("daemon %s: status" % name, st, 200):
                judge(t, "daemon", case, reply)


def test_conflict(t, tmp):
    """Both names of one setting, different values: an error naming the
    file and line of the old name and where the new one is."""
    path = os.path.join(tmp, "conflict.conf")
    with open(path, "w") as f:
        f.write("# two names, two values\nauth_results.add = yes\n[dmarc]\n"
                "add_auth_results = no\n")
    rc, out, err = harness.run_check(LEGIT, ["-c", path] + cli_args(GOOD, None, {}, path)[2:],
                                     zone=ZONE)
    t.check("conflict: refused", rc != 0, "rc %r out %r" % (rc, out))
    t.check("conflict: names file:line of the alias", "%s:4:" % path in err, err[-2000:])
    t.check("conflict: names the new key's place", "%s:2" % path in err, err[-2000:])
    for key, a, b in (("authserv_id", "auth_results.authserv_id=a.example",
                       "dmarc.authserv_id=b.example"),
                      ("remove", "auth_results.remove_forged=yes",
                       "dmarc.remove_own_auth_results=no")):
        rc, out, err = harness.run_check(LEGIT, ["-s", a, "-s", b], zone=ZONE)
        t.check("conflict %s on the command line: refused" % key,
                rc != 0 and "deprecated name" in err, "rc %r err %r" % (rc, err[-500:]))
    # the profile key takes a bool
    path = os.path.join(tmp, "badprofile.conf")
    with open(path, "w") as f:
        f.write("[settings.x]\nauth_results = maybe\n")
    rc, out, err = harness.run_check(LEGIT, ["-c", path], zone=ZONE)
    t.check("profile auth_results = maybe: refused with file:line",
            rc != 0 and "%s:2:" % path in err, "rc %r err %r" % (rc, err[-500:]))


def main():
    t = harness.Tests("authres_core")
    with tempfile.TemporaryDirectory(prefix="authscan-authres-") as tmp:
        config = os.path.join(tmp, "profiles.conf")
        with open(config, "w") as f:
            f.write(PROFILES)
        t.run(test_cli, t, config)
        t.run(test_daemon, t)
        t.run(test_conflict, t, tmp)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
