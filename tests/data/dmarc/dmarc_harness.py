"""Shared helpers of the DMARC integration tests (tests/integration/test_dmarc_*.py).

- plugins_dir(tmp): a plugins directory for `authscan check`: the real
  dkim.so when the build has one, otherwise the DKIM test fixture
  (dkim_fixture.c, results from X-Test-DKIM headers) compiled on the spot,
  next to the real spf.so and dmarc.so.  Returns (dir, real_dkim).
- fixture_dir(tmp): always the fixture (for tests that choose DKIM results).
- zone_file(path, records): an RFC 1035 zone from {name: [(type, value)]},
  with ("TIMEOUT", None) for `; authscan: timeout NAME.`.
- scan(...): runs `authscan check --json` and returns the parsed reply.
"""
import json
import os
import shutil
import subprocess

SRC = os.environ.get("AUTHSCAN_SRC", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("AUTHSCAN_BUILD", os.path.join(SRC, "build"))
BIN = os.environ.get("AUTHSCAN_BIN", os.path.join(BUILD, "bin"))
PLUGINS = os.environ.get("AUTHSCAN_PLUGINS",
                         os.path.join(BUILD, "lib", "authscan", "plugins-abi1"))
DATA = os.path.join(SRC, "tests", "data", "dmarc")


def _link(src_dir, dst_dir, name):
    src = os.path.join(src_dir, name)
    if not os.path.exists(src):
        raise SystemExit("missing %s (build the tree first)" % src)
    os.symlink(os.path.abspath(src), os.path.join(dst_dir, name))


def fixture_dir(tmp):
    d = os.path.join(tmp, "plugins-fixture")
    if os.path.isdir(d):
        return d
    os.makedirs(d)
    for so in ("spf.so", "dmarc.so"):
        _link(PLUGINS, d, so)
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-I", os.path.join(SRC, "core", "include"),
                    "-I", os.path.join(SRC, "plugins", "dkim", "include"),
                    os.path.join(DATA, "dkim_fixture.c"), "-o", os.path.join(d, "dkim.so")],
                   check=True)
    return d


def plugins_dir(tmp):
    if os.path.exists(os.path.join(PLUGINS, "dkim.so")):
        d = os.path.join(tmp, "plugins-real")
        if not os.path.isdir(d):
            os.makedirs(d)
            for so in ("spf.so", "dkim.so", "dmarc.so"):
                _link(PLUGINS, d, so)
        return d, True
    return fixture_dir(tmp), False


def fqdn(n):
    return n if n.endswith(".") else n + "."


def txt_rdata(v):
    chunks = [v[i:i + 255] for i in range(0, len(v), 255)] or [""]
    return " ".join('"%s"' % c.replace("\\", "\\\\").replace('"', '\\"') for c in chunks)


def zone_file(path, records):
    lines = ["$ORIGIN .", "$TTL 300"]
    for name, rrs in records.items():
        for typ, val in rrs:
            if typ == "TIMEOUT":
                lines.append("; authscan: timeout %s" % fqdn(name))
            elif typ == "SERVFAIL":
                lines.append("; authscan: servfail %s" % fqdn(name))
            elif typ == "TXT":
                lines.append("%s TXT %s" % (fqdn(name), txt_rdata(val)))
            elif typ == "MX":
                pref, host = val.split()
                lines.append("%s MX %s %s" % (fqdn(name), pref, fqdn(host)))
            else:
                lines.append("%s %s %s" % (fqdn(name), typ, val))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def scan(plugins, zone, msg, ip=None, helo=None, mail_from=None, rcpts=(), mta_name=None,
         user=None, settings=()):
    cmd = [os.path.join(BIN, "authscan"), "check", "--json", "--plugins-dir", plugins,
           "--dns-zone", zone]
    if ip:
        cmd += ["--ip", ip]
    if helo:
        cmd += ["--helo", helo]
    if mail_from is not None:
        cmd += ["--from", mail_from]
    for r in rcpts:
        cmd += ["--rcpt", r]
    if mta_name:
        cmd += ["--mta-name", mta_name]
    if user:
        cmd += ["--user", user]
    for s in settings:
        cmd += ["-s", s]
    cmd.append(msg)
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("authscan check failed: %s" % p.stderr.decode(errors="replace")[:400])
    return json.loads(p.stdout)
