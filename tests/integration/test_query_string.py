"""Query-string envelopes: odd and empty components never crash a worker.

Regression: `POST /checkv2?helo=` (a name with an empty value first in the
query) dereferenced NULL in the decoder and killed the worker.  Each case
must get an answer, the worker pid must not change, and decoded values
must reach the envelope.
"""
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import user_args  # noqa: E402
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.environ.get("AUTHSCAN_BIN", "build/bin")
SRC = os.environ.get("AUTHSCAN_SRC", ".")
BODY = open(os.path.join(SRC, "tests/data/clean.eml"), "rb").read()
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def post(base, query):
    req = urllib.request.Request(base + "/checkv2?" + query, data=BODY, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:  # noqa: BLE001 - no answer at all is the failure
        return repr(e)


def workers(master):
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        return sorted(int(x) for x in f.read().split())


s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
d = subprocess.Popen([os.path.join(BIN, "authscand"), *user_args(), "-f", "-w", "1", "--log-level", "info",
                      "-l", "127.0.0.1:%d" % port], stdout=log, stderr=subprocess.STDOUT)
try:
    base = "http://127.0.0.1:%d" % port
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/ping", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    before = workers(d.pid)
    cases = {
        "helo=": 200, "from=": 200, "hostname=": 200, "rcpt=": 200, "queue-id=": 200,
        "a=&helo=": 200, "=": 200, "=x": 200, "&&&": 200, "ip": 200, "helo=%": 200,
        "helo=%4": 200, "helo=%zz": 200, "helo=a%00b": 200, "helo=" + "x" * 4000: 200,
        "ip=": 400, "ip=not-an-ip": 400, "ip=192.0.2.1&ip=": 400,
    }
    for q, want in cases.items():
        got = post(base, q)
        check(got == want, "?%s: status %r, want %d" % (q[:40], got, want))
    check(workers(d.pid) == before, "worker pid changed: %s -> %s" % (before, workers(d.pid)))
    # decoded values reach the envelope (the worker's info line per scan)
    mark = os.path.getsize(log.name)
    check(post(base, "ip=192.0.2.77&from=alice%40example.com&queue-id=Q%2B1&helo=") == 200,
          "decoded envelope scan")
    time.sleep(0.3)
    with open(log.name) as f:
        f.seek(mark)
        tail = f.read()
    check(re.search(r"ip=192\.0\.2\.77 from=alice@example\.com qid=Q\+1 ", tail) is not None,
          "decoded envelope in the log: %r" % tail[-300:])
    check("killed by signal" not in open(log.name).read(), "a worker crashed")
finally:
    d.terminate()
    d.wait(timeout=20)
    os.unlink(log.name)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
