"""A scan whose DNS server is dead or silent ends at our deadlines.

Issue 3's "done when": the scan finishes at the configured deadline with
temporary-error results instead of hanging.  Two deadlines are checked:
  - dns.timeout: every query ends, the SPF plugin reports R_SPF_DNSFAIL;
  - limits.scan_timeout shorter than dns.timeout: the task deadline cancels
    the outstanding queries and lists the cut plugins in AUTHSCAN_TIMEOUT.
Both through `authscan check` and through the daemon.
"""
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import user_args  # noqa: E402
import time
import urllib.request

BIN = os.environ.get("AUTHSCAN_BIN", "build/bin")
SRC = os.environ.get("AUTHSCAN_SRC", ".")
MSG = os.path.join(SRC, "tests/data/demo/01-legit.eml")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cli(server, extra):
    args = [os.path.join(BIN, "authscan"), "check", "--json", "--dns-server", server,
            "--ip", "192.0.2.10", "--helo", "mx.example.com", "--from", "alice@example.com"]
    t0 = time.monotonic()
    out = subprocess.run(args + extra + [MSG], capture_output=True, text=True, timeout=60)
    return time.monotonic() - t0, out


# A UDP socket that receives queries and never answers.
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(("127.0.0.1", 0))
silent_addr = "127.0.0.1:%d" % silent.getsockname()[1]
# A port where nothing listens (ICMP port unreachable on loopback).
dead_addr = "127.0.0.1:%d" % free_port(socket.SOCK_DGRAM)

for name, server in (("silent", silent_addr), ("dead", dead_addr)):
    took, out = cli(server, ["--set", "dns.timeout=1s"])
    check(out.returncode == 0, "%s: authscan check exit %d: %s" % (name, out.returncode, out.stderr))
    reply = json.loads(out.stdout or "{}")
    syms = reply.get("symbols", {})
    check("R_SPF_DNSFAIL" in syms, "%s: R_SPF_DNSFAIL expected, got %s" % (name, sorted(syms)))
    check(took < 4.0, "%s: scan took %.2fs with dns.timeout=1s" % (name, took))
    for dnsfail in ("R_DKIM_TEMPFAIL", "DMARC_DNSFAIL"):
        # present when those plugins are loaded: they must report temp errors too
        plugin = "dkim" if "DKIM" in dnsfail else "dmarc"
        if os.path.exists(os.path.join(os.environ.get("AUTHSCAN_PLUGINS", ""), plugin + ".so")):
            check(dnsfail in syms, "%s: %s expected, got %s" % (name, dnsfail, sorted(syms)))

# The scan deadline cuts a plugin whose queries outlive it.
took, out = cli(silent_addr, ["--set", "dns.timeout=20s", "--set", "limits.scan_timeout=1s"])
reply = json.loads(out.stdout or "{}")
syms = reply.get("symbols", {})
check("AUTHSCAN_TIMEOUT" in syms, "scan deadline: AUTHSCAN_TIMEOUT expected, got %s" % sorted(syms))
check("spf" in syms.get("AUTHSCAN_TIMEOUT", {}).get("options", []),
      "scan deadline: spf should be listed as cut short: %s" % syms.get("AUTHSCAN_TIMEOUT"))
check(took < 4.0, "scan deadline: took %.2fs with limits.scan_timeout=1s" % took)

# The daemon answers every request at the deadline, and keeps serving.
port = free_port()
log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "dns_deadline_%d.log" % port), "w+")
d = subprocess.Popen([os.path.join(BIN, "authscand"), *user_args(), "-f", "-w", "1", "-l", "127.0.0.1:%d" % port,
                      "--dns-server", silent_addr, "--set", "dns.timeout=1s"],
                     stdout=log, stderr=subprocess.STDOUT)
try:
    base = "http://127.0.0.1:%d" % port
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/ping", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    body = open(MSG, "rb").read()
    t0 = time.monotonic()
    results = []
    import threading

    def one():
        req = urllib.request.Request(base + "/checkv2", data=body, method="POST",
                                     headers={"IP": "192.0.2.10", "From": "alice@example.com",
                                              "Helo": "mx.example.com"})
        try:
            results.append(json.loads(urllib.request.urlopen(req, timeout=30).read()))
        except Exception as e:  # noqa: BLE001 - any failure is a lost request
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    ok = [r for r in results if isinstance(r, dict) and "R_SPF_DNSFAIL" in r.get("symbols", {})]
    check(len(ok) == 8, "daemon: 8 answers with R_SPF_DNSFAIL expected, got %r" % results)
    check(took < 5.0, "daemon: 8 concurrent scans took %.2fs with dns.timeout=1s" % took)
    check(urllib.request.urlopen(base + "/ping", timeout=2).read().strip() == b"pong",
          "daemon: still serving")
    stat = json.loads(urllib.request.urlopen(base + "/stat", timeout=2).read())
    check(stat["dns"]["timeouts"] >= 1, "daemon: DNS timeouts counted: %s" % stat["dns"])
finally:
    d.terminate()
    try:
        d.wait(timeout=20)
    except subprocess.TimeoutExpired:
        d.kill()
    check(d.returncode == 0, "daemon exit status %s" % d.returncode)
    silent.close()

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
