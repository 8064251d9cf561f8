#!/usr/bin/python3
"""The real rspamc (Debian's rspamd package) against authscand, unchanged:
`rspamc -h 127.0.0.1:PORT symbols FILE` prints authscand's verdict (Action,
Score, Symbol lines with options, Message-ID); `--json` gives the /checkv2
JSON; `-i IP -F from -r rcpt --helo` reach the scan (the worker's log line
shows ip= and from=, and the SPF plugin uses them); several files and
stdin; the unix socket; `rspamc stat` reads /stat; `-z` (zstd) never yields
a verdict of the compressed bytes.  rspamc 3.x has no `ping` command:
/ping is checked in test_daemon.
Prints "N passed, N failed"; exits non-zero on failure."""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("rspamc")
RSPAMC = shutil.which("rspamc") or "/usr/bin/rspamc"


def rspamc(d_or_host, args, stdin=None, timeout=60):
    host = d_or_host if isinstance(d_or_host, str) else "127.0.0.1:%d" % d_or_host.port
    p = subprocess.run([RSPAMC, "-h", host, "-t", "30"] + args, input=stdin,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def parse_symbols(out):
    """{symbol: (score, options text)} from rspamc's text output."""
    syms = {}
    for m in re.finditer(r"^Symbol: (\S+) \(([-\d.]+)\)(?:\[(.*)\])?$", out, re.M):
        syms[m.group(1)] = (float(m.group(2)), m.group(3))
    return syms


def test_symbols_text(d, tmp):
    multi = os.path.join(tmp, "multiple-from.eml")
    shutil.copy(harness.data_file("multiple-from.eml"), multi)
    rc, out, err = rspamc(d, ["symbols", multi])
    T.eq("symbols: exit 0", rc, 0)
    T.check("symbols: results header", "Results for file: %s" % multi in out, out)
    T.check("symbols: Action line", re.search(r"^Action: add header$", out, re.M), out)
    T.check("symbols: Spam line (rspamc: add header is spam)", re.search(r"^Spam: true$", out, re.M), out)
    m = re.search(r"^Score: ([-\d.]+) / ([-\d.]+)$", out, re.M)
    T.check("symbols: Score line", m and float(m.group(1)) >= 8 and float(m.group(2)) == 15, out)
    syms = parse_symbols(out)
    T.check("symbols: MULTIPLE_FROM with score and option",
            syms.get("MULTIPLE_FROM") == (8.0, "fields=2"), syms)
    T.check("symbols: Message-ID line",
            re.search(r"^Message-ID: multiple-from-1@example\.com$", out, re.M), out)

    # the default command, a clean message, and the daemon's verdict matches the CLI
    clean = os.path.join(tmp, "clean.eml")
    shutil.copy(harness.data_file("clean.eml"), clean)
    rc, out, err = rspamc(d, [clean])
    T.check("default command is symbols", rc == 0 and "Action: no action" in out, out + err)
    syms = parse_symbols(out)
    T.check("clean: no from_check symbol",
            not {"MULTIPLE_FROM", "MISSING_FROM", "FROM_INVALID"} & set(syms), syms)
    rc2, cli, _ = harness.run_check(harness.read_data("clean.eml"))
    T.eq("rspamc shows the same symbols as authscan check", sorted(syms),
         sorted(cli["symbols"]) if isinstance(cli, dict) else cli)

    # several files in one run (rspamc sends them in parallel)
    missing = os.path.join(tmp, "missing-from.eml")
    shutil.copy(harness.data_file("missing-from.eml"), missing)
    rc, out, err = rspamc(d, ["-n", "4", "symbols", multi, clean, missing, multi, clean])
    T.eq("several files: exit 0", rc, 0)
    T.eq("several files: 5 results", len(re.findall(r"^Results for file:", out, re.M)), 5)
    T.eq("several files: 2 x add header", len(re.findall(r"^Action: add header$", out, re.M)), 2)
    T.check("several files: MISSING_FROM reported",
            re.search(r"^Symbol: MISSING_FROM \(2\.00\)$", out, re.M), out)

    # stdin
    rc, out, err = rspamc(d, ["symbols"], stdin=harness.read_data("multiple-from.eml"))
    T.check("stdin: scanned", rc == 0 and "MULTIPLE_FROM" in out and "Action: add header" in out,
            out + err)


def test_json(d, tmp):
    multi = os.path.join(tmp, "multiple-from.eml")
    rc, out, err = rspamc(d, ["--json", "symbols", multi])
    T.eq("--json: exit 0", rc, 0)
    try:
        j = json.loads(out)
    except ValueError:
        T.check("--json: output is JSON", False, out)
        return
    T.eq("--json: action", j.get("action"), "add header")
    T.eq("--json: required_score", j.get("required_score"), 15)
    T.eq("--json: MULTIPLE_FROM options", j.get("symbols", {}).get("MULTIPLE_FROM", {})
         .get("options"), ["fields=2"])
    T.eq("--json: message-id", j.get("message-id"), "multiple-from-1@example.com")
    T.check("--json: rspamc added its filename", j.get("filename") == multi, j)
    rc, out, err = rspamc(d, ["--compact", "symbols", multi])
    try:
        j = json.loads(out)
        T.eq("--compact: action", j.get("action"), "add header")
    except ValueError:
        T.check("--compact: output is JSON", False, out)


def test_envelope(d, tmp):
    clean = os.path.join(tmp, "clean.eml")
    mark = d.log_mark()
    rc, out, err = rspamc(d, ["-i", "192.0.2.45", "-F", "alice@example.com", "-r",
                              "bob@example.org", "-r", "carol@example.org", "--helo",
                              "mail.example.com", "symbols", clean])
    T.eq("envelope: exit 0", rc, 0)
    syms = parse_symbols(out)
    T.check("envelope: SPF saw IP and MAIL FROM (pass)", "R_SPF_ALLOW" in syms, out)
    m = d.wait_log(r"ip=192\.0\.2\.45 from=alice@example\.com [^\n]*", since=mark)
    T.check("envelope: worker log line has ip= and from=", m is not None)

    mark = d.log_mark()
    rc, out, err = rspamc(d, ["-i", "198.51.100.9", "-F", "alice@example.com", "symbols", clean])
    T.check("envelope: SPF fail from another IP", "R_SPF_FAIL" in parse_symbols(out), out)
    d.wait_log(r"ip=198\.51\.100\.9 from=alice@example\.com ", since=mark)
    T.check("envelope: second log line", True)

    # a message the example plugin fires on, with an envelope
    mark = d.log_mark()
    rc, out, err = rspamc(d, ["-i", "192.0.2.46", "-F", "<>", "--helo", "mail.example.com",
                              "-u", "someone", "symbols", os.path.join(tmp, "multiple-from.eml")])
    T.check("envelope + example plugin: MULTIPLE_FROM", "MULTIPLE_FROM" in parse_symbols(out), out)
    d.wait_log(r"ip=192\.0\.2\.46 from=(<>)? ", since=mark)
    T.check("null sender logged", True)

    rc, out, err = rspamc(d, ["-i", "not-an-ip", "symbols", clean])
    T.check("bad -i: rspamc shows the server's error, no verdict",
            "Action:" not in out and ("IP" in out + err or "400" in out + err), out + err)


def test_unix_socket(tmp):
    sock = os.path.join(tmp, "authscand.sock")
    with harness.Daemon(workers=1, listen=["unix:%s" % sock]) as d:
        rc, out, err = rspamc(sock, ["symbols", harness.data_file("multiple-from.eml")])
        T.check("unix socket: rspamc scans", rc == 0 and "MULTIPLE_FROM" in out, out + err)


def test_stat(d, tmp):
    # /stat gives the daemon-wide totals (stats.h), whichever worker answers
    rc, out, err = rspamc(d, ["stat"])
    m = re.search(r"Messages scanned: (\d+)", out)
    T.eq("stat: exit 0", rc, 0)
    T.check("stat: scanned count", m and int(m.group(1)) >= 1,
            "got %r, want 'Messages scanned: N' with N >= 1" % out)


def test_compressed(d, tmp):
    # rspamc -z sends the message zstd-compressed with "Compression: zstd";
    # whatever the server does, it must not give a verdict of the
    # compressed bytes (which have no headers: MISSING_FROM, message-id undef)
    rc, out, err = rspamc(d, ["-z", "symbols", os.path.join(tmp, "multiple-from.eml")])
    if "Action:" in out:
        T.check("-z: verdict is for the real message",
                "MULTIPLE_FROM" in out and "MISSING_FROM" not in out, out)
    else:
        # rspamc prints only the status line of an error reply
        T.check("-z: refused (415 Unsupported Media Type)", "415" in out + err, out + err)
    # the error body names the problem
    st, hdrs, body = d.request("POST", "/checkv2", b"\x28\xb5\x2f\xfd garbage",
                               {"Compression": "zstd"})
    T.check("Compression: zstd refused with a clear JSON error",
            st == 415 and b"ompress" in body, (st, body))


def main():
    if not os.path.exists(RSPAMC):
        T.check("rspamc is installed (Debian package rspamd)", False)
        sys.exit(T.finish())
    with harness.Daemon(workers=2) as d:
        T.run(test_symbols_text, d, d.tmp)
        T.run(test_json, d, d.tmp)
        T.run(test_envelope, d, d.tmp)
        T.run(test_stat, d, d.tmp)
        T.run(test_compressed, d, d.tmp)
        T.check("no worker died", "killed by signal" not in d.log(), d.log()[-2000:])
    import tempfile
    with tempfile.TemporaryDirectory(prefix="authscan-rspamc-") as tmp:
        T.run(test_unix_socket, tmp)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
