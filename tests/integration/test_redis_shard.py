#!/usr/bin/python3
"""Sharding over several redis.servers through the real daemon, three real
redis-servers and `authscan report`:

  - placement: every key of a From domain (history) or policy domain
    (report counters) is on the one shard its hash tag names on the ring
    (recomputed here from docs/redis.md's description: FNV-1a + MurmurHash3
    finalizer, 160 points per shard named "<server as written>#<i>"), on no
    other; the per-day report index on the shard of "report:"; the three
    shards share the domains about evenly;
  - the controller's API walks every shard (/api/v1/domains lists the
    domains of all three; /api/v1/domain reads a domain on another shard);
  - `authscan report aggregate` reads each policy domain's counters from
    its shard: one report per policy domain with the right counts;
  - one shard stopped (SIGKILL) under load: every scan answered 200; the
    domains of the live shards are read (HISTORY_FIRST_SEEN), those of the
    dead one fail open (no history symbol); /stat counts the refused
    reads and the shards up; the log says the shard's keys fail open;
    `authscan report` fails for the dead shard's domains (exit 1, naming
    it) and still writes the others;
  - the shard restarted: the writes queued for it land on it, its keys
    did not scatter to the other shards meanwhile (and none of theirs came
    to it), reads of its domains resume.
Prints "N passed, N failed"; exits non-zero on failure."""
import bisect
import calendar
import concurrent.futures
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("redis_shard")

GOOD_IP = "192.0.2.10"
NPOL = 48          # policy domains p<i>.example, with DMARC and rua
NLOAD = 120        # domains q<i>.example scanned while a shard is down
CP = []            # the controller's port
REPORT_CONF = ("report.enabled = yes\nreport.org_name = Receiver Test Org\n"
               "report.email = dmarc-reports@receiver.test\nreport.domain = receiver.test\n")


def zone():
    lines = ["$ORIGIN .", "$TTL 300"]
    for i in range(NPOL):
        lines.append('p%d.example. TXT "v=spf1 ip4:%s -all"' % (i, GOOD_IP))
        lines.append('_dmarc.p%d.example. TXT "v=DMARC1; p=none; rua=mailto:agg@p%d.example"'
                     % (i, i))
    return "\n".join(lines) + "\n"


# -- the ring, as docs/redis.md describes it --------------------------------
M64 = 2 ** 64


def ring_hash(data):
    h = 1469598103934665603
    for c in data:
        h = ((h ^ c) * 1099511628211) % M64
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) % M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) % M64
    h ^= h >> 33
    return h


class Ring:
    def __init__(self, names):
        pts = sorted((ring_hash(("%s#%d" % (n, i)).encode()), k)
                     for k, n in enumerate(names) for i in range(160))
        self.hashes = [h for h, _ in pts]
        self.shards = [k for _, k in pts]

    def shard(self, tag):
        i = bisect.bisect_left(self.hashes, ring_hash(tag.encode()))
        return self.shards[i % len(self.shards)]


# -- scans -------------------------------------------------------------------
def message(frm, n):
    return ("From: %s\r\nTo: rcpt@receiver.test\r\nSubject: shard %d\r\n"
            "Message-ID: <sh%d@test>\r\n\r\nhi\r\n" % (frm, n, n)).encode()


def scan(d, domain, n):
    addr = "u@%s" % domain
    st, reply = d.checkv2(message(addr, n), headers={
        "IP": GOOD_IP, "From": addr, "Helo": "mail.test", "Rcpt": "rcpt@receiver.test"})
    return st, reply


def scan_all(d, domains, base):
    """Scans each domain once, 8 in parallel: {domain: (status, reply)}."""
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        res = list(ex.map(lambda a: scan(d, a[1], base + a[0]), enumerate(domains)))
    return dict(zip(domains, res))


def hist(reply):
    return {s for s in (reply or {}).get("symbols", {}) if s.startswith("HISTORY_")}


def holders(servers, key):
    return [k for k, r in enumerate(servers) if r.cmd("EXISTS", key) == 1]


def wait_keys(servers, keys, timeout=15.0):
    try:
        harness.wait_for(lambda: all(holders(servers, k) for k in keys), timeout,
                         what="%d keys" % len(keys))
    except TimeoutError:
        pass


def report_cmd(d, tmp, out):
    """authscan report with the daemon's config, less its controller keys."""
    conf = os.path.join(tmp, "report.conf")
    with open(conf, "w") as f:
        f.write("".join(line for line in d.config_text.splitlines(True)
                        if not line.startswith("controller.")))
    date = time.strftime("%Y-%m-%d", time.gmtime())
    cmd = [harness.AUTHSCAN, "report", "aggregate", "--date", date, "--out", out,
           "-c", conf, "--dns-zone", d.zone_path]
    return subprocess.run(cmd, capture_output=True, timeout=120, encoding="utf-8",
                          errors="backslashreplace")


def reports_in(out):
    """{policy domain: message count} of the .xml.gz files in out."""
    got = {}
    for path in glob.glob(os.path.join(out, "*.xml.gz")):
        m = re.match(r"^receiver\.test!([a-z0-9.]+)!", os.path.basename(path))
        with gzip.open(path) as f:
            data = f.read().decode()
        got[m.group(1) if m else path] = sum(int(c) for c in re.findall(r"<count>(\d+)</count>",
                                                                         data))
    return got


def shards(servers, d, ring, tmp):
    day = time.strftime("%Y%m%d", time.gmtime())
    pols = ["p%d.example" % i for i in range(NPOL)]

    # -- all up: placement ----------------------------------------------------
    for rnd in range(2):
        res = scan_all(d, pols, 1000 * rnd)
        T.eq("all up, round %d: failed scans" % rnd,
             [dom for dom, (st, _) in res.items() if st != 200], [])
    keys = ["as:{%s}d" % p for p in pols] + ["as:{%s}rr:%s" % (p, day) for p in pols]
    wait_keys(servers, keys)
    wrong = {}
    for p in pols:
        want = ring.shard(p)
        for k in ("as:{%s}d" % p, "as:{%s}s:192.0.2" % p, "as:{%s}rr:%s" % (p, day),
                  "as:{%s}rp:%s" % (p, day)):
            got = holders(servers, k)
            if got != [want]:
                wrong[k] = (got, want)
    T.eq("every key on its shard only (got holders, want shard)", wrong, {})
    index = "as:{report:}rd:%s" % day
    T.eq("the day's report index on the shard of 'report:'", holders(servers, index),
         [ring.shard("report:")])
    share = [sum(1 for p in pols if ring.shard(p) == k) for k in range(3)]
    T.check("the shards share the domains (%s of %d)" % (share, NPOL),
            # ports are random, so the ring differs per run: 48 domains over
            # three shards is 16 each on average, seen as low as 5
            all(s >= NPOL // 16 for s in share))
    st = d.stat()["redis"]
    T.check("/stat: 3 shards, all up in both workers", st.get("shards") == 3 and
            st.get("shards_up") == 6 and st.get("state") == "up", st)

    # the controller walks every shard
    st_, _, raw = harness.http_request("127.0.0.1", CP[0], "GET", "/api/v1/domains", None,
                                       {"Password": "pw"})
    got = {x["domain"] for x in json.loads(raw).get("domains", [])} if st_ == 200 else raw
    T.eq("controller: /api/v1/domains lists the domains of all shards", got, set(pols))
    far = next(p_ for p_ in pols if ring.shard(p_) != 0)
    st_, _, raw = harness.http_request("127.0.0.1", CP[0], "GET", "/api/v1/domain?domain=" + far,
                                       None, {"Password": "pw"})
    got = json.loads(raw) if st_ == 200 else {}
    T.check("controller: /api/v1/domain of a domain on shard %d: its history and source"
            % ring.shard(far), got.get("sources_seen") == 1 and
            (got.get("history") or {}).get("dp", 0) >= 2, (st_, raw[:300]))

    out = os.path.join(tmp, "all-up")
    os.mkdir(out)
    p = report_cmd(d, tmp, out)
    T.eq("report, all up: exit status (stderr %s)" % p.stderr[-500:], p.returncode, 0)
    T.eq("report, all up: one report per policy domain, 2 messages each", reports_in(out),
         {p_: 2 for p_ in pols})

    # -- one shard down under load ----------------------------------------------
    dead = ring.shard("report:") ^ 1 if ring.shard("report:") < 2 else 0   # not the index's
    servers[dead].kill()
    loads = ["q%d.example" % i for i in range(NLOAD)]
    res = scan_all(d, loads, 5000)
    T.eq("one shard down: failed scans of %d" % NLOAD,
         [dom for dom, (st, _) in res.items() if st != 200], [])
    live_first = [dom for dom in loads if ring.shard(dom) != dead and
                  hist(res[dom][1]) != {"HISTORY_FIRST_SEEN"}]
    T.eq("one shard down: the live shards' new domains are first seen", live_first, [])
    dead_syms = {dom: hist(res[dom][1]) for dom in loads if ring.shard(dom) == dead and
                 hist(res[dom][1])}
    T.eq("one shard down: its domains fail open (no history symbol)", dead_syms, {})
    st = d.stat()["redis"]
    T.check("/stat: refused reads counted, 2 of 3 shards up per worker",
            st.get("refused", 0) > 0 and st.get("shards_up") == 4, st)
    T.check("the log: the shard's keys fail open",
            re.search(r"redis: 127\.0\.0\.1:%d is unavailable .*for the keys of this shard"
                      % servers[dead].port, d.log()) is not None, d.log()[-2000:])
    out = os.path.join(tmp, "one-down")
    os.mkdir(out)
    p = report_cmd(d, tmp, out)
    on_dead = {p_ for p_ in pols if ring.shard(p_) == dead}
    T.eq("report, one shard down: exit status", p.returncode, 1)
    T.check("report, one shard down: stderr names the shard",
            "127.0.0.1:%d" % servers[dead].port in p.stderr, p.stderr[-500:])
    T.eq("report, one shard down: the live shards' reports written",
         set(reports_in(out)), set(pols) - on_dead)

    # -- restarted: queued writes land there, nothing scattered -----------------
    servers[dead].start()
    mine = [dom for dom in loads if ring.shard(dom) == dead]
    wait_keys(servers, ["as:{%s}d" % dom for dom in mine])
    T.eq("restarted: its queued writes landed on it (missing)",
         [dom for dom in mine if holders(servers, "as:{%s}d" % dom) != [dead]], [])
    T.eq("no scatter: every load domain's key on its own shard only",
         {dom: holders(servers, "as:{%s}d" % dom) for dom in loads
          if holders(servers, "as:{%s}d" % dom) != [ring.shard(dom)]}, {})

    def reads_back():
        dom = "r%d.example" % int(time.monotonic() * 1000)
        while ring.shard(dom) != dead:
            dom = "r" + dom
        st_, rep = scan(d, dom, 9000)
        return st_ == 200 and hist(rep) == {"HISTORY_FIRST_SEEN"}
    try:
        harness.wait_for(reads_back, 15, interval=0.3, what="reads of the restarted shard")
        ok = True
    except TimeoutError:
        ok = False
    T.check("restarted: reads of its domains resume", ok)
    harness.wait_for(lambda: d.stat()["redis"].get("shards_up") == 6, 15,
                     what="all shards up again")


def main():
    servers = [harness.RedisServer() for _ in range(3)]
    with tempfile.TemporaryDirectory(prefix="authscan-shard-") as tmp:
        try:
            for r in servers:
                r.start()
            names = [r.address for r in servers]
            ring = Ring(names)
            config = ("redis.servers = %s\nredis.timeout = 300ms\nhistory.cache_ttl = 0\n"
                      % ", ".join(names)) + REPORT_CONF
            config += "controller.password = pw\n"
            CP.append(harness.free_port())
            with harness.Daemon(workers=2, config=config, zone=zone(),
                                listen=["127.0.0.1:%d" % harness.free_port(),
                                        "controller@127.0.0.1:%d" % CP[0]]) as d:
                T.run(shards, servers, d, ring, tmp)
                T.check("no sanitizer report", "Sanitizer" not in d.log() and
                        "runtime error" not in d.log(), d.log()[-2000:])
        finally:
            for r in servers:
                r.cleanup()


if __name__ == "__main__":
    T.run(main)
    sys.exit(T.finish())
