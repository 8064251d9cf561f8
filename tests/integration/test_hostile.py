#!/usr/bin/env python3
"""test_hostile.py - scans the hostile corpus (tests/data/hostile/).

Each case is NAME.eml plus NAME.json (format: tests/data/hostile/README.md).
Cases are grouped by zone file and overrides; each group gets one live
authscand with two workers.  For every case:
  - the daemon answers with the expected action and symbols, and no worker
    has died (the worker pids are the same before and after the scan);
  - `authscan check` gives the same verdict in-process.
A bystander scan of a clean message after each group proves the daemon
still serves normal mail.
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CORPUS = os.path.join(harness.DATA, "hostile")
KEYS = ("why", "ip", "helo", "from", "zone", "set", "action", "symbols", "absent", "rcpt",
        "remove_headers", "add_headers")


def load_cases(t):
    cases = []
    for meta in sorted(glob.glob(os.path.join(CORPUS, "*.json"))):
        name = os.path.basename(meta)[:-5]
        eml = meta[:-5] + ".eml"
        try:
            with open(meta) as f:
                c = json.load(f)
        except ValueError as e:
            t.check("%s.json parses" % name, False, str(e))
            continue
        unknown = sorted(set(c) - set(KEYS))
        t.eq("%s.json keys" % name, unknown, [])
        if not t.check("%s.eml exists" % name, os.path.exists(eml)):
            continue
        if not t.check("%s has an action" % name, "action" in c and "why" in c):
            continue
        with open(eml, "rb") as f:
            c["msg"] = f.read()
        c["name"] = name
        c.setdefault("zone", "hostile.zone")
        c.setdefault("set", {})
        cases.append(c)
    return cases


def acceptable(c):
    a = c["action"]
    return a if isinstance(a, list) else [a]


def judge(t, where, c, reply):
    action = reply.get("action")
    symbols = set(reply.get("symbols", {}))
    t.check("%s %s: action" % (where, c["name"]), action in acceptable(c),
            "got %r, want %r (%s)" % (action, c["action"], c["why"]))
    milter = reply.get("milter", {})
    for name, want in sorted(c.get("remove_headers", {}).items()):
        t.eq("%s %s: remove_headers %s" % (where, c["name"], name),
             milter.get("remove_headers", {}).get(name), want)
    for name in c.get("add_headers", []):
        t.check("%s %s: add_headers %s" % (where, c["name"], name),
                name in milter.get("add_headers", {}), "got %r" % milter.get("add_headers"))
    for s in c.get("symbols", []):
        t.check("%s %s: symbol %s" % (where, c["name"], s), s in symbols,
                "got %s" % sorted(symbols))
    for s in c.get("absent", []):
        t.check("%s %s: no symbol %s" % (where, c["name"], s), s not in symbols,
                "got %s" % sorted(symbols))


def envelope_headers(c):
    h = {}
    if "ip" in c:
        h["IP"] = c["ip"]
    if "helo" in c:
        h["Helo"] = c["helo"]
    if "from" in c:
        h["From"] = c["from"]
    if "rcpt" in c:
        h["Rcpt"] = c["rcpt"]
    return h


def cli_args(c):
    a = []
    for flag, key in (("--ip", "ip"), ("--helo", "helo"), ("--from", "from"), ("--rcpt", "rcpt")):
        if key in c:
            a += [flag, c[key]]
    for k, v in sorted(c["set"].items()):
        a += ["-s", "%s=%s" % (k, v)]
    return a


def run_group(t, zone_name, overrides, cases):
    with open(os.path.join(CORPUS, zone_name)) as f:
        zone = f.read()
    args = []
    for k, v in sorted(overrides):
        args += ["-s", "%s=%s" % (k, v)]
    with harness.Daemon(workers=2, zone=zone, args=args) as d:
        for c in cases:
            before = sorted(d.worker_pids())
            try:
                st, reply = d.checkv2(c["msg"], headers=envelope_headers(c), timeout=60)
            except Exception as e:  # a reset connection is a dead worker
                t.check("daemon %s: answered" % c["name"], False, repr(e))
                continue
            t.eq("daemon %s: status" % c["name"], st, 200)
            judge(t, "daemon", c, reply)
            t.eq("daemon %s: worker pids" % c["name"], sorted(d.worker_pids()), before)

            rc, out, err = harness.run_check(c["msg"], cli_args(c), zone=zone)
            if t.eq("cli %s: exit status" % c["name"], rc, 0) and isinstance(out, dict):
                judge(t, "cli", c, out)
            else:
                t.check("cli %s: output" % c["name"], False, err[-2000:])
        st, reply = d.checkv2(harness.SIMPLE_MSG, headers={"IP": "192.0.2.10", "From": "alice@example.com"})
        t.eq("daemon bystander after %s: status" % zone_name, st, 200)


def main():
    t = harness.Tests("hostile")
    cases = load_cases(t)
    t.check("the corpus has cases", len(cases) > 0)
    groups = {}
    for c in cases:
        groups.setdefault((c["zone"], tuple(sorted(c["set"].items()))), []).append(c)
    for (zone_name, overrides), group in sorted(groups.items()):
        harness.log("--- zone %s, overrides %r: %d cases" % (zone_name, overrides, len(group)))
        t.run(run_group, t, zone_name, overrides, group)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
