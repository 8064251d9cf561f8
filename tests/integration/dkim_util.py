"""dkim_util.py - shared helpers of the DKIM integration tests.

scan(msg, zone_records, settings) runs
    authscan check --dns-zone ZONE --json --log-level info [-s k=v...] MSG
and returns (reply JSON, [per-signature result], [per-signature reason]).
AUTHSCAN_WRAP (optional) is a command prefix, e.g. valgrind.
The per-signature results come from the plugin's info log lines
    dkim: sig N d=... s=... a=... bits=B: RESULT[ - reason]
because DKIM_TRACE merges options of signatures with the same d=.
"""
import json
import os
import re
import shlex
import subprocess
import tempfile

# e.g. AUTHSCAN_WRAP="valgrind -q --error-exitcode=9 --leak-check=full" to run
# every scan under valgrind (a scan with errors then counts as failed).
WRAP = shlex.split(os.environ.get("AUTHSCAN_WRAP", ""))
SRC = os.environ.get("AUTHSCAN_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("AUTHSCAN_BIN", os.path.join(SRC, "build", "bin"))
PLUGINS = os.environ.get("AUTHSCAN_PLUGINS")
DATA = os.path.join(SRC, "tests", "data", "dkim")
CONF = os.path.join(DATA, "conformance")

OWNER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
SIG_RE = re.compile(r"dkim: sig (\d+) d=(\S*) s=(\S*) a=(\S*) bits=(\d+): (\w+)(?: - (.*))?$")


def txt_rdata(value):
    """A TXT record as zone-file character-strings (255 octets each)."""
    if isinstance(value, list):
        chunks = value
    else:
        chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"%s"' % c.replace("\\", "\\\\").replace('"', '\\"') for c in chunks)


def zone_text(records, timeouts=(), servfails=()):
    """records: {owner: txt or [txt-rr...]} (an RR is a string or a list of
    character-strings).  Owners that are not valid zone names are left out:
    they stand for names a verifier must never query."""
    lines = ["$ORIGIN .", "$TTL 300"]
    for owner, val in records.items():
        if not OWNER_RE.match(owner):
            continue
        rrs = val if isinstance(val, list) and val and isinstance(val[0], list) else [val]
        for rr in rrs:
            lines.append("%s. TXT %s" % (owner.rstrip("."), txt_rdata(rr)))
    for n in timeouts:
        lines.append("; authscan: timeout %s." % n.rstrip("."))
    for n in servfails:
        lines.append("; authscan: servfail %s." % n.rstrip("."))
    return "\n".join(lines) + "\n"


def run_check(msg, zone, settings=(), extra=(), level="info"):
    with tempfile.NamedTemporaryFile("w", suffix=".zone", delete=False) as f:
        f.write(zone)
        zfile = f.name
    try:
        cmd = WRAP + [os.path.join(BIN, "authscan"), "check", "--dns-zone", zfile, "--json",
               "--log-level", level, "-s", "dns.timeout=300ms"]
        if PLUGINS:
            cmd += ["--plugins-dir", PLUGINS]
        for s in settings:
            cmd += ["-s", s]
        cmd += list(extra) + [msg]
        p = subprocess.run(cmd, capture_output=True, timeout=300)
    finally:
        os.unlink(zfile)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        return None, [], [], err[-500:]
    results, reasons = [], []
    for line in err.splitlines():
        m = SIG_RE.search(line)
        if m:
            results.append(m.group(6))
            reasons.append(m.group(7) or "")
    return json.loads(p.stdout), results, reasons, err


def symbols(reply):
    return reply.get("symbols", {}) if reply else {}
