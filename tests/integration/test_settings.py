"""Settings-ID profiles: plugins and symbols disabled, thresholds changed,
unknown ids ignored, bad profiles rejected with file:line; through the
CLI and through the daemon's Settings-ID request header."""
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import user_args  # noqa: E402
import tempfile
import time
import urllib.request

BIN = os.environ.get("AUTHSCAN_BIN", "build/bin")
SRC = os.environ.get("AUTHSCAN_SRC", ".")
MSG = os.path.join(SRC, "tests/data/demo/05-two-from-fields.eml")   # MULTIPLE_FROM (8) + SPF
ZONE = os.path.join(SRC, "tests/data/demo/demo.zone")
ENV = ["--ip", "192.0.2.10", "--helo", "mx.example.com", "--from", "alice@example.com"]
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
conf.write("""# profiles for the test
[settings.nospf]
plugins_disabled = spf

[settings.quiet]
symbols_disabled = MULTIPLE_FROM

[settings.strict]
actions.reject = 5
actions.add_header = none
""")
conf.close()


def scan(*extra):
    out = subprocess.run([os.path.join(BIN, "authscan"), "check", "--json", "-c", conf.name,
                          "--dns-zone", ZONE] + ENV + list(extra) + [MSG],
                         capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "exit %d: %s" % (out.returncode, out.stderr))
    return json.loads(out.stdout or "{}"), out.stderr


r, _ = scan()
check({"MULTIPLE_FROM", "R_SPF_ALLOW"} <= set(r["symbols"]), "default: %s" % sorted(r["symbols"]))
check(r["action"] == "add header", "default action: %s" % r["action"])

r, _ = scan("--settings-id", "nospf")
check("R_SPF_ALLOW" not in r["symbols"] and "MULTIPLE_FROM" in r["symbols"],
      "nospf: %s" % sorted(r["symbols"]))

r, _ = scan("--settings-id", "quiet")
check("MULTIPLE_FROM" not in r["symbols"], "quiet: %s" % sorted(r["symbols"]))
check(r["action"] == "no action", "quiet action: %s" % r["action"])

r, _ = scan("--settings-id", "strict")
check(r["action"] == "reject", "strict action (score %s): %s" % (r["score"], r["action"]))
check(r["required_score"] == 5 and "add header" not in r["thresholds"],
      "strict thresholds: %s" % r["thresholds"])

r, err = scan("--settings-id", "nosuch", "--log-level", "notice")
check(r["action"] == "add header", "unknown id uses defaults: %s" % r["action"])
check("unknown Settings-ID 'nosuch'" in err, "unknown id is logged: %r" % err)

# Bad profiles are configuration errors naming the file and line.
for body, line, text in (("[settings.x]\nplugins_disabled = nosuchplugin\n", 2, "nosuchplugin"),
                         ("[settings.x]\n\nsymbols_disabled = NO_SUCH\n", 3, "NO_SUCH"),
                         ("[settings.x]\nactions.explode = 3\n", 2, "explode")):
    bad = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    bad.write(body)
    bad.close()
    out = subprocess.run([os.path.join(BIN, "authscand"), "--check-config", "-c", bad.name],
                         capture_output=True, text=True, timeout=60)
    check(out.returncode != 0 and ("%s:%d:" % (bad.name, line)) in out.stderr and text in out.stderr,
          "bad profile %r: %r" % (body, out.stderr))
    os.unlink(bad.name)

# The daemon selects the profile from the Settings-ID request header.
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
d = subprocess.Popen([os.path.join(BIN, "authscand"), *user_args(), "-f", "-w", "1", "-c", conf.name,
                      "-l", "127.0.0.1:%d" % port, "--dns-zone", ZONE],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    base = "http://127.0.0.1:%d" % port
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/ping", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    body = open(MSG, "rb").read()
    for sid, want in (("quiet", "no action"), ("strict", "reject"), (None, "add header")):
        hdrs = {"IP": "192.0.2.10", "From": "alice@example.com", "Helo": "mx.example.com"}
        if sid:
            hdrs["Settings-ID"] = sid
        req = urllib.request.Request(base + "/checkv2", data=body, method="POST", headers=hdrs)
        r = json.loads(urllib.request.urlopen(req, timeout=10).read())
        check(r["action"] == want, "daemon Settings-ID %s: %s" % (sid, r["action"]))
    req = urllib.request.Request(base + "/checkv2?settings-id=quiet", data=body, method="POST",
                                 headers={"IP": "192.0.2.10"})
    r = json.loads(urllib.request.urlopen(req, timeout=10).read())
    check("MULTIPLE_FROM" not in r["symbols"], "daemon ?settings-id=: %s" % sorted(r["symbols"]))
finally:
    d.terminate()
    d.wait(timeout=20)
    os.unlink(conf.name)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
