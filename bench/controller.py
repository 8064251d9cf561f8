#!/usr/bin/python3
"""The controller's figures (issue 17):

  1. the dashboard's API calls on a reporting-sized data set: today's
     report counters exactly as bench/report_bench.py generates them
     (1,000,000 messages over 10,000 policy domains, Zipf), 10,000 From
     domains of history in Redis (a domain hash, 2 source hashes and the
     source index each, as the history plugin writes them) and 6 closed days of report index
     with 10,000 policy domains a day: half of them done (marked in
     {PD}rs:DAY and {report:}rsd:DAY, out of rd:DAY, as `authscan report`
     leaves them), a tenth sent with a destination left (in both), the
     rest pending; each call timed 20 times, median and max reported; the
     slowest is the figure (target: under 100 ms);
  2. what serving /metrics costs the scanning workers: wrk on /checkv2
     for 10 s with and without a scraper fetching /metrics every second
     from the controller; throughput of both runs.
Prints a table; writes nothing else.  --calls-only: part 1 only.  Needs redis-server and wrk."""
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import report_bench  # noqa: E402

DOMAINS = 10000
MESSAGES = 1000000
READ = "bench"


def fill(r):
    now = int(time.time())
    pipe = []
    for i in range(DOMAINS):
        d = "d%05d.example" % i
        pipe.append(("HSET", "as:{%s}d" % d, "n", "40", "dp", "35", "df", "5", "sp", "36",
                     "sf", "4", "kp", "30", "kf", "2", "f", str(now - 86400 * 20), "l", str(now)))
        nets = ("192.0.%d" % (i % 250), "198.51.%d" % (i % 250))
        for net in nets:
            pipe.append(("HSET", "as:{%s}s:%s" % (d, net), "n", "20", "dp", "18", "df", "2",
                         "f", str(now - 86400), "l", str(now)))
        pipe.append(("ZADD", "as:{%s}sx" % d, str(now), nets[0], str(now), nets[1]))  # the plugin's source index
    for back in range(1, 7):
        day = time.strftime("%Y%m%d", time.gmtime(now - back * 86400))
        done = [k for k in range(DOMAINS) if k % 2 == 0]
        partly = [k for k in range(DOMAINS) if k % 10 == 1]
        indexed = [k for k in range(DOMAINS) if k % 2 == 1]
        for i in range(0, len(indexed), 500):
            pipe.append(tuple(["SADD", "as:{report:}rd:" + day] +
                              ["d%05d.example" % k for k in indexed[i:i + 500]]))
        sent = done + partly
        for i in range(0, len(sent), 500):
            pipe.append(tuple(["SADD", "as:{report:}rsd:" + day] +
                              ["d%05d.example" % k for k in sent[i:i + 500]]))
        for k in sent:
            pipe.append(("HSET", "as:{d%05d.example}rs:%s" % (k, day), "mailto:x@y", "id"))
    # redis-cli --pipe would be faster; a batch of MULTI-less commands is enough
    p = subprocess.Popen(["redis-cli", "-p", str(r.port), "--pipe"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL)
    out = bytearray()
    for cmd in pipe:
        out += b"*%d\r\n" % len(cmd)
        for a in cmd:
            a = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
    p.communicate(bytes(out))
    # today: the report plugin's counters and index, as report_bench.py writes them
    report_bench._fill(r.port, time.strftime("%Y%m%d", time.gmtime(now)), MESSAGES, DOMAINS)
    return r.cmd("DBSIZE")


def time_call(cp, path, n=20):
    """(median ms, max ms, bytes, runs that answered "partial": true)."""
    times, partial = [], 0
    for _ in range(n):
        t = time.perf_counter()
        st, _, body = harness.http_request("127.0.0.1", cp, "GET", path, None,
                                           {"Password": READ}, 60)
        times.append((time.perf_counter() - t) * 1000)
        if st != 200:
            raise SystemExit("%s: status %d %s" % (path, st, body[:200]))
        partial += b'"partial":true' in body
    return statistics.median(times), max(times), len(body), partial


WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["IP"] = "192.0.2.10"
wrk.headers["From"] = "alice@example.com"
wrk.body = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n" ..
           "Subject: bench\r\nMessage-ID: <b@example.com>\r\n\r\nhello\r\n"
"""


def wrk(port, seconds=10):
    script = os.path.join(harness.BUILD, "bench-controller.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t2", "-c16", "-d%ds" % seconds, "-s", script,
                          "http://127.0.0.1:%d/checkv2" % port],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise SystemExit("wrk: " + out)


def main():
    with harness.RedisServer() as r:
        keys = fill(r)
        cp, sp = harness.free_port(), harness.free_port()
        cfg = 'redis.servers = %s\ncontroller.password = "%s"\nlog.level = warning\n' % (
            r.address, READ)
        with harness.Daemon(workers=2, config=cfg, log_level="warning",
                            listen=["127.0.0.1:%d" % sp, "controller@127.0.0.1:%d" % cp]) as d:
            print("Redis keys: %d (%d domains)" % (keys, DOMAINS))
            print("%-48s %10s %10s %10s %8s" % ("call", "median ms", "max ms", "bytes",
                                                 "partial"))
            for path in ("/api/v1/domains", "/api/v1/domain?domain=d04242.example",
                         "/api/v1/sender?domain=d04242.example&ip=192.0.42.1",
                         "/api/v1/reports?days=7", "/stat", "/metrics"):
                med, mx, size, partial = time_call(cp, path)
                print("%-48s %10.1f %10.1f %10d %5d/20" % (path, med, mx, size, partial))
            if "--calls-only" in sys.argv[1:]:
                return
            # alternate runs: the machine is shared, so compare neighbours
            runs = {"none": [], "scrape": []}
            for _ in range(3):
                runs["none"].append(wrk(d.port, 5))
                stop = threading.Event()

                def scraper():
                    while not stop.is_set():
                        harness.http_request("127.0.0.1", cp, "GET", "/metrics", None,
                                             {"Password": READ}, 10)
                        stop.wait(1.0)
                t = threading.Thread(target=scraper, daemon=True)
                t.start()
                runs["scrape"].append(wrk(d.port, 5))
                stop.set()
                t.join()
            for k, v in runs.items():
                print("checkv2 req/s, %-6s runs %s, median %.0f" % (
                    k, " ".join("%.0f" % x for x in v), statistics.median(v)))


if __name__ == "__main__":
    main()
