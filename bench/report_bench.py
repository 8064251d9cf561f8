"""bench/report_bench.py - the DMARC reporting figures of bench/run (step
"report", docs/performance.md "DMARC reports"):

  counters   `authscan bench` over the corpus twice against a private
             redis-server: report.enabled = no, then yes (3 runs each,
             alternating); the CPU µs per message the counters add, as a
             share of the scan (target: at most 10 %)
  generation one UTC day of N messages (default 1,000,000) over D policy
             domains (default 10,000, Zipf-distributed as real traffic is)
             written into Redis exactly as the report plugin writes it (one
             HINCRBY per distinct row: the aggregated-at-write-time form),
             then `authscan report aggregate --date DAY --out DIR`: Redis
             memory, wall and CPU time, files and bytes; the sum of <count>
             over every file is checked against N.
"""
import gzip
import glob
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402  (the project's private redis-server helper)


def _resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _pipe(port, commands):
    """Sends commands (bytes) on one connection, then PING; waits for PONG."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        for i in range(0, len(commands), 20000):
            s.sendall(b"".join(commands[i:i + 20000]))
        s.sendall(_resp("PING"))
        buf = b""
        while not buf.endswith(b"+PONG\r\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("redis closed the connection")
            buf = buf[-16:] + chunk
            if b"-ERR" in chunk:
                raise RuntimeError("redis error: %r" % chunk[:200])


def _used_memory(r):
    info = r.cmd("INFO", "memory")
    info = info.decode() if isinstance(info, bytes) else info
    return int(re.search(r"used_memory:(\d+)", info).group(1))


def counters(authscan, manifest, zone, passes=3, runs=3):
    def one(enabled, port):
        cmd = [authscan, "bench", "--dns-zone", zone, "--warmup", "1", "--repeat", str(passes),
               "-s", "redis.servers=127.0.0.1:%d" % port, "-s", "report.enabled=%s" % enabled,
               manifest]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("authscan bench failed: %s" % p.stderr[-2000:])
        import json
        return json.loads(p.stdout.strip().splitlines()[-1])["cpu_us_per_msg"]
    off, on = [], []
    with harness.RedisServer() as r:
        for _ in range(runs):
            off.append(one("no", r.port))
            on.append(one("yes", r.port))
        day = time.strftime("%Y%m%d", time.gmtime())
        domains = r.cmd("SCARD", "as:{report:}rd:%s" % day)
    a, b = statistics.median(off), statistics.median(on)
    return {"off_us": a, "on_us": b, "added_us": b - a, "added_pct": 100.0 * (b - a) / a,
            "runs_off": [round(x, 1) for x in off], "runs_on": [round(x, 1) for x in on],
            "domains_indexed": domains}


def _fill(port, day, n_msgs, n_domains):
    """The day's counters for n_msgs messages over n_domains policy domains."""
    weights = [1.0 / (i + 1) for i in range(n_domains)]
    scale = n_msgs / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    counts[0] += n_msgs - sum(counts)
    cmds, rows = [], 0
    for i, m in enumerate(counts):
        pd = "d%05d.example" % i
        rk, pk = "as:{%s}rr:%s" % (pd, day), "as:{%s}rp:%s" % (pd, day)
        nrows = min(m, 1 + m // 20, 2000)
        for j in range(nrows):
            c = m // nrows + (1 if j < m % nrows else 0)
            ip = "10.%d.%d.%d" % (i % 250, j // 250 % 250, j % 250 + 1)
            fail = j % 10 == 9
            row = "\t".join(["1", ip, "reject" if fail else "pass", "fail" if fail else "pass",
                             "fail" if fail else "pass", "", pd, "bounce." + pd, "",
                             "bounce.%s;mfrom;%s" % (pd, "fail" if fail else "pass"),
                             "%s;s%d;%s" % (pd, j % 3, "fail" if fail else "pass")])
            cmds.append(_resp("HINCRBY", rk, row, c))
            rows += 1
        pol = "\t".join(["1", "tree", "reject", "", "", "r", "r", "100", "u", "n",
                         "mailto:dmarc@" + pd, "", "0"])
        cmds.append(_resp("HINCRBY", pk, pol, m))
        cmds.append(_resp("SADD", "as:{report:}rd:%s" % day, pd))
    _pipe(port, cmds)
    return rows


def generation(authscan, plugins, n_msgs=1000000, n_domains=10000):
    day = time.strftime("%Y%m%d", time.gmtime())
    date = time.strftime("%Y-%m-%d", time.gmtime())
    with harness.RedisServer() as r, tempfile.TemporaryDirectory(prefix="authscan-rb-") as tmp:
        m0 = _used_memory(r)
        t0 = time.monotonic()
        rows = _fill(r.port, day, n_msgs, n_domains)
        fill_s = time.monotonic() - t0
        m1 = _used_memory(r)
        conf = os.path.join(tmp, "report.conf")
        with open(conf, "w") as f:
            f.write("redis.servers = 127.0.0.1:%d\nreport.org_name = Bench\n"
                    "report.email = dmarc@bench.test\nreport.domain = bench.test\n" % r.port)
        res = {}
        for fmt in ("dmarcbis", "rfc7489"):
            out = os.path.join(tmp, "out-" + fmt)
            os.mkdir(out)
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            p = subprocess.run([authscan, "report", "aggregate", "--date", date, "--out", out,
                                "--format", fmt, "-c", conf, "--plugins-dir", plugins],
                               capture_output=True, text=True)
            wall = time.monotonic() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                raise RuntimeError("authscan report failed: %s" % p.stderr[-2000:])
            files = os.listdir(out)
            total, size = 0, 0
            for name in files:
                path = os.path.join(out, name)
                size += os.path.getsize(path)
                with gzip.open(path) as f:
                    total += sum(int(x) for x in re.findall(rb"<count>(\d+)</count>", f.read()))
            res[fmt] = {"wall_s": wall, "cpu_s": (ru1.ru_utime - ru0.ru_utime) +
                        (ru1.ru_stime - ru0.ru_stime), "maxrss_mb": ru1.ru_maxrss / 1024,
                        "files": len(files), "bytes": size, "count_sum": total}
            shutil.rmtree(out)
    return {"messages": n_msgs, "domains": n_domains, "rows": rows, "fill_s": fill_s,
            "redis_mb": (m1 - m0) / 1e6, "formats": res}


def markdown(R):
    L = []
    c, g = R.get("counters"), R.get("generation")
    L.append("## DMARC reports (report plugin, `authscan report`)")
    L.append("")
    if c:
        L.append("Counters at scan time, `authscan bench` over the corpus with a private Redis "
                 "(median of %d runs each, µs CPU/msg): report.enabled = no %.1f (%s), yes %.1f "
                 "(%s): **+%.1f µs = +%.1f %%** (%s policy domains indexed)." % (
                     len(c["runs_off"]), c["off_us"], ", ".join(map(str, c["runs_off"])), c["on_us"],
                     ", ".join(map(str, c["runs_on"])), c["added_us"], c["added_pct"],
                     c["domains_indexed"]))
        L.append("")
    if g:
        L.append("Report generation for one day of %d messages over %d policy domains (%d "
                 "distinct rows, Zipf), Redis memory for the day's counters **%.1f MB**, "
                 "filled in %.1f s:" % (g["messages"], g["domains"], g["rows"], g["redis_mb"],
                                        g["fill_s"]))
        L.append("")
        L.append("| format | wall s | CPU s | max RSS MB | files | bytes (gzip) | sum of <count> |")
        L.append("|---|---|---|---|---|---|---|")
        for fmt, x in g["formats"].items():
            L.append("| %s | %.1f | %.1f | %.1f | %d | %d | %d |" % (
                fmt, x["wall_s"], x["cpu_s"], x["maxrss_mb"], x["files"], x["bytes"],
                x["count_sum"]))
        L.append("")
    return L


def plugin_dir(build):
    """The build's plugin folder: lib/authscan/plugins-abi<major> (the ABI
    major is in its name so that a daemon of another major never loads
    them)."""
    found = sorted(glob.glob(os.path.join(build, "lib", "authscan", "plugins-abi*")))
    return found[-1] if found else os.path.join(build, "lib", "authscan", "plugins-abi1")


if __name__ == "__main__":   # a quick stand-alone run: python3 bench/report_bench.py BUILD [N D]
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
    d = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    R = {"generation": generation(os.path.join(build, "bin", "authscan"),
                                  plugin_dir(build), n, d)}
    print("\n".join(markdown(R)))
