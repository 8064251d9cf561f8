#!/usr/bin/python3
"""Redis Sentinel (redis.sentinels, redis.master_name) through the real
daemon, a real master + replica and three real sentinels
(redis-server --sentinel, down-after 1 s):

  - the daemon asks the sentinels for the master and writes there (the
    history plugin's EVALSHA), and the replica has the writes;
  - failover under load: a client loop scans all along (8 threads, a new
    From domain per scan: one history write each); the master is killed
    (SIGKILL).  Every scan is answered 200 (zero failed requests); writes
    land on the new master within seconds of its promotion (+switch-master
    is followed);
    the counter loss (scans whose write is missing on the new master) is
    measured and printed: with a write queue large enough for the
    failover (redis.queue_max) it is what was on the wire when the master
    died, at most 1 %, and never more than the daemon counted
    (dropped_writes) plus one write per client thread and worker;
  - /stat: redis up again, switches counted, the log names the move;
  - `authscan report aggregate` asks the sentinels for the master too: the
    report rows written before (replicated) and after the failover are
    all in example.com's report;
  - switchover: the old master back (a replica now), SENTINEL FAILOVER
    under load: zero failed requests, writes move to it within seconds of
    its promotion, the demoted one (alive: READONLY) takes none after;
  - the named master demoted by hand (REPLICAOF, no failover): READONLY,
    then reconnects refused by the ROLE check, every scan answered; writes
    land again once it is a master;
  - a sentinel that does not know the master name: reads fail open, the
    log says which sentinel said what.
Prints "N passed, N failed"; exits non-zero on failure."""
import concurrent.futures
import glob
import gzip
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("redis_sentinel")

ZONE = """$ORIGIN .
$TTL 300
example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. TXT "v=DMARC1; p=none; rua=mailto:agg@example.com"
"""
REPORT_CONF = ("report.enabled = yes\nreport.org_name = Receiver Test Org\n"
               "report.email = dmarc-reports@receiver.test\nreport.domain = receiver.test\n")
NAME = "authscan-master"
THREADS = 8


def message(frm, n):
    return ("From: %s\r\nTo: bob@receiver.test\r\nSubject: hello %d\r\n"
            "Message-ID: <s%d@test>\r\n\r\nhi\r\n" % (frm, n, n)).encode()


def scan(d, n, timeout=30.0, domain=None):
    addr = "u@%s" % (domain or "s%d.example" % n)
    return d.checkv2(message(addr, n), headers={"IP": "192.0.2.1", "From": addr,
                                               "Helo": "mail.test"}, timeout=timeout)


def key(n):
    return "as:{s%d.example}d" % n


def role(r):
    try:
        return r.cmd("ROLE", timeout=2)[0].decode()
    except Exception:  # down
        return None


def wait_topology(sentinels):
    """Until every sentinel knows the replica and the two other sentinels:
    only then can they agree on a failover."""
    def known():
        for s in sentinels:
            reps = s.cmd("SENTINEL", "replicas", NAME)
            sens = s.cmd("SENTINEL", "sentinels", NAME)
            if len(reps) < 1 or len(sens) < len(sentinels) - 1:
                return False
        return True
    harness.wait_for(known, 30, interval=0.2, what="the sentinels to know each other")


class Load:
    """Scans without pause from THREADS threads: [(n, sent at, status)]."""

    def __init__(self, d):
        self.d = d
        self.results = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.next = 0

    def worker(self):
        while not self.stop.is_set():
            with self.lock:
                n = self.next
                self.next += 1
            t = time.monotonic()
            try:
                st, _ = scan(self.d, n)
            except Exception as e:  # the test reports it
                st = repr(e)
            with self.lock:
                self.results.append((n, t, st))

    def __enter__(self):
        self.ex = concurrent.futures.ThreadPoolExecutor(THREADS)
        self.futs = [self.ex.submit(self.worker) for _ in range(THREADS)]
        return self

    def __exit__(self, *a):
        self.stop.set()
        for f in self.futs:
            f.result()
        self.ex.shutdown()


def failover(master, replica, sentinels, d):
    # before: writes go to the master and reach the replica
    st, _ = scan(d, 1000000)
    T.eq("before: scan status", st, 200)
    harness.wait_for(lambda: master.cmd("EXISTS", key(1000000)) == 1, 10,
                     what="the write on the master")
    harness.wait_for(lambda: replica.cmd("EXISTS", key(1000000)) == 1, 10,
                     what="the write on the replica")
    T.check("before: /stat redis up", d.stat()["redis"].get("state") == "up", d.stat())
    # two DMARC report rows of example.com, replicated before the kill
    day = time.strftime("%Y%m%d", time.gmtime())
    rows = "as:{example.com}rr:%s" % day
    for n in (1, 2):
        T.eq("before: example.com scan %d" % n, scan(d, 3000000 + n, domain="example.com")[0], 200)

    def replicated():
        h = replica.cmd("HGETALL", rows) or []
        return sum(int(h[i + 1]) for i in range(0, len(h), 2)) == 2
    harness.wait_for(replicated, 10, what="the report rows on the replica")
    switches0 = d.stat()["redis"].get("switches", 0)

    with Load(d) as load:
        time.sleep(1.0)
        base = replica.cmd("DBSIZE")
        t_kill = time.monotonic()
        master.kill()
        # writes resume: the replica is master and gets keys it did not have
        t_promoted = t_resumed = None
        while time.monotonic() - t_kill < 40:
            if t_promoted is None and role(replica) == "master":
                t_promoted = time.monotonic()
            if t_promoted is not None and replica.cmd("DBSIZE") > base:
                t_resumed = time.monotonic()
                break
            time.sleep(0.05)
        time.sleep(1.0)   # and some load on the new master
    results = load.results
    failed = [(n, st) for n, _, st in results if st != 200]
    T.eq("failover under load: failed requests (of %d)" % len(results), len(failed), 0)
    T.check("failover: the replica was promoted", t_promoted is not None, role(replica))
    T.check("failover: writes landed on the new master", t_resumed is not None)
    if t_resumed is not None:
        harness.log("failover: promoted %.2fs after the kill, writes resumed %.2fs after it"
                    % (t_promoted - t_kill, t_resumed - t_kill))
        # Sentinel's part (down-after 1 s, the vote, the promotion) takes
        # longer when a loaded machine makes a vote fail and retry; ours,
        # from the promotion to writes landing, is +switch-master (sentinel
        # publishes it once the replica reports its new role) and a connect.
        T.check("failover: promoted within 30 s of the kill (got %.2fs)" % (
            t_promoted - t_kill), t_promoted - t_kill < 30)
        T.check("failover: writes resumed within 5 s of the promotion (got %.2fs)" % (
            t_resumed - t_promoted), t_resumed - t_promoted < 5)

    # counter loss: every scan wrote its own key
    def settled():
        return d.stat()["redis"].get("queued", 0) == 0
    harness.wait_for(settled, 15, what="the write queues to drain")
    time.sleep(0.5)
    missing = [n for n, _, st in results if st == 200 and replica.cmd("EXISTS", key(n)) != 1]
    before_kill = [n for n in missing if dict((n2, t) for n2, t, _ in results)[n] < t_kill]
    rs = d.stat()["redis"]
    harness.log("failover: %d scans, %d writes missing on the new master (%d of them sent "
                "before the kill); daemon counted %d dropped writes, %d refused reads, "
                "%d switches" % (len(results), len(missing), len(before_kill),
                                 rs.get("dropped_writes", 0), rs.get("refused", 0),
                                 rs.get("switches", 0)))
    # the queue holds what the failover delays (redis.queue_max is large
    # here): what is lost is what was on the wire when the master died
    T.check("failover: lost writes %d at most 1%% of %d" % (len(missing), len(results)),
            len(missing) <= len(results) * 0.01)
    T.check("failover: lost writes %d accounted for (dropped %d + in flight at the kill %d)" % (
        len(missing), rs.get("dropped_writes", 0), THREADS * 2),  # 2 workers
        len(missing) <= rs.get("dropped_writes", 0) + THREADS * 2)
    T.check("failover: /stat redis up after", rs.get("state") == "up", rs)
    T.check("failover: /stat switches counted", rs.get("switches", 0) > switches0, rs)
    T.check("failover: the log names the new master",
            re.search(r"master '%s' moved from 127\.0\.0\.1:%d to 127\.0\.0\.1:%d" % (
                NAME, master.port, replica.port), d.log()) is not None, d.log()[-3000:])
    harness.log("failover: followed by %s" % ", ".join(
        re.findall(r"moved from \S+ to \S+ \(([^)]*)\)", d.log())))
    st, _ = scan(d, 2000000)
    T.eq("after: scan status", st, 200)
    harness.wait_for(lambda: replica.cmd("EXISTS", key(2000000)) == 1, 10,
                     what="a write on the new master")

    # authscan report asks the sentinels too: the new master has all four rows
    for n in (3, 4):
        T.eq("after: example.com scan %d" % n, scan(d, 3000000 + n, domain="example.com")[0], 200)
    harness.wait_for(lambda: sum(int(x) for x in (replica.cmd("HVALS", rows) or [])) == 4, 10,
                     what="the report rows on the new master")
    with tempfile.TemporaryDirectory(prefix="authscan-sentinel-report-") as out:
        p = subprocess.run([harness.AUTHSCAN, "report", "aggregate", "--date",
                            time.strftime("%Y-%m-%d", time.gmtime()), "--out", out,
                            "-c", d.config_path, "--dns-zone", d.zone_path],
                           capture_output=True, timeout=120, encoding="utf-8",
                           errors="backslashreplace")
        T.eq("report via the sentinels: exit status (stderr %s)" % p.stderr[-500:],
             p.returncode, 0)
        counts = []
        for path in glob.glob(os.path.join(out, "*example.com*.xml.gz")):
            with gzip.open(path) as f:
                counts.append(sum(int(c) for c in re.findall(r"<count>(\d+)</count>",
                                                             f.read().decode())))
        T.eq("report via the sentinels: example.com's report counts", counts, [4])


def switchover(master, replica, sentinels, d):
    """The old master back (as a replica), then SENTINEL FAILOVER under
    load: the master being demoted is alive, so connections to it see
    READONLY (or +switch-master first): either way writes move to it."""
    master.start()   # empty; the sentinels make it a replica of the new master
    harness.wait_for(lambda: role(master) == "slave" and b"master_link_status:up" in
                     master.cmd("INFO", "replication"), 30, what="the old master as replica")

    def healthy():
        for s in sentinels:
            reps = s.cmd("SENTINEL", "replicas", NAME)
            ok = [r for r in reps if b"127.0.0.1" in r and
                  str(master.port).encode() in r and b"s_down" not in b" ".join(r)]
            if not ok:
                return False
        return True
    harness.wait_for(healthy, 30, interval=0.2, what="the sentinels to see the replica")
    switches0 = d.stat()["redis"].get("switches", 0)
    with Load(d) as load:
        time.sleep(0.5)
        t0 = time.monotonic()
        sentinels[0].cmd("SENTINEL", "FAILOVER", NAME)
        # done when the sentinels name it (a promotion sentinel gives up
        # on turns it back into a replica)
        harness.wait_for(lambda: role(master) == "master", 30, what="the switchover")
        t_promoted = time.monotonic()
        harness.wait_for(lambda: sentinels[0].cmd("SENTINEL", "get-master-addr-by-name", NAME)
                         == [b"127.0.0.1", str(master.port).encode()], 30,
                         what="the sentinels to name the switched-to master")

        def landed():
            with load.lock:
                later = [n for n, t, st in load.results if t > t_promoted and st == 200]
            return any(master.cmd("EXISTS", key(n)) == 1 for n in later[-20:])
        harness.wait_for(landed, 15, what="writes on the switched-to master")
        t_landed = time.monotonic()
        time.sleep(0.5)
    results = load.results
    harness.log("switchover: %d scans, promoted %.2fs after SENTINEL FAILOVER, writes there "
                "%.2fs after" % (len(results), t_promoted - t0, t_landed - t0))
    T.eq("switchover under load: failed requests (of %d)" % len(results),
         [(n, st) for n, _, st in results if st != 200], [])
    T.check("switchover: writes there within 5 s of the promotion (got %.2fs)" % (
        t_landed - t_promoted), t_landed - t_promoted < 5)
    late = [n for n, _, st in sorted(results)[-50:] if master.cmd("EXISTS", key(n)) != 1]
    T.eq("switchover: the last 50 writes on the new master (missing)", late, [])
    rs = d.stat()["redis"]
    T.check("switchover: /stat switches counted (%d -> %d)" % (switches0, rs.get("switches", 0)),
            rs.get("switches", 0) > switches0,
            "\n".join(line for line in d.log().splitlines() if "redis" in line)[-3000:])
    harness.log("switchover: followed by %s; %d writes lost in both phases (dropped_writes: "
                "on the wire at the kill, refused READONLY at the switchover)" % (
        ", ".join(re.findall(r"moved from \S+ to \S+ \(([^)]*)\)", d.log())[2:]),
        rs.get("dropped_writes", 0)))
    T.check("switchover: nothing queued, up", rs.get("state") == "up", rs)


def demoted_behind_their_back(sentinels):
    """The master the sentinels name answers ROLE "slave" (made a replica
    by hand, without a failover: the sentinels keep naming it, as there is
    no replica to promote).  The daemon's writes get READONLY, its
    reconnects are refused by the ROLE check (not the master), scans are
    answered all along; once it is a master again, writes land there."""
    name = "authscan-stale"
    with harness.RedisServer() as m, harness.RedisServer() as other:
        for s in sentinels:
            s.cmd("SENTINEL", "MONITOR", name, "127.0.0.1", str(m.port), "2")
            s.cmd("SENTINEL", "SET", name, "down-after-milliseconds", "1000")
        try:
            config = ("redis.sentinels = %s\nredis.master_name = %s\nredis.timeout = 300ms\n"
                      "history.cache_ttl = 0\n" % (", ".join(x.address for x in sentinels), name))
            # the refused reconnects are logged at debug level (the state
            # line "unavailable" came with the READONLY already)
            with harness.Daemon(workers=1, config=config, zone=ZONE, log_level="debug") as d:
                st, _ = scan(d, 900)
                harness.wait_for(lambda: m.cmd("EXISTS", key(900)) == 1, 10,
                                 what="the first write")
                mark = d.log_mark()
                m.cmd("REPLICAOF", "127.0.0.1", str(other.port))
                sts = [scan(d, 901 + i)[0] for i in range(5)]
                d.wait_log(r"not the master \(ROLE says slave\)", 15, since=mark)
                sts += [scan(d, 910 + i)[0] for i in range(5)]
                T.eq("demoted master: every scan answered", sts, [200] * 10)
                T.eq("demoted master: nothing written to it meanwhile",
                     [n for n in range(910, 915) if m.cmd("EXISTS", key(n)) == 1], [])
                m.cmd("REPLICAOF", "NO", "ONE")
                n = [920]

                def lands():
                    n[0] += 1
                    scan(d, n[0])
                    return m.cmd("EXISTS", key(n[0])) == 1 or \
                        m.cmd("EXISTS", key(n[0] - 1)) == 1
                harness.wait_for(lands, 20, interval=0.3, what="writes after REPLICAOF NO ONE")
                T.check("master again: writes land", True)
                T.eq("master again: /stat redis up", d.stat()["redis"].get("state"), "up")
        finally:
            for s in sentinels:
                try:
                    s.cmd("SENTINEL", "REMOVE", name)
                except Exception:
                    pass


def unknown_name(sentinels):
    config = ("redis.sentinels = %s\nredis.master_name = no-such-master\n"
              "redis.timeout = 300ms\n" % ", ".join(s.address for s in sentinels))
    with harness.Daemon(workers=1, config=config, zone=ZONE, log_level="debug") as d:
        st, _ = scan(d, 1)
        T.eq("unknown master name: scan answered", st, 200)
        d.wait_log("does not know this master", timeout=10)
        d.wait_log("is unavailable", timeout=10)
        T.eq("unknown master name: /stat redis down", d.stat()["redis"].get("state"), "down")


def main():
    with harness.RedisServer() as master, \
            harness.RedisServer() as replica:
        replica.cmd("REPLICAOF", "127.0.0.1", str(master.port))
        harness.wait_for(lambda: b"master_link_status:up" in replica.cmd("INFO", "replication"),
                         20, what="the replica to sync")
        sentinels = [harness.RedisSentinel(NAME, master.port) for _ in range(3)]
        try:
            for s in sentinels:
                s.start()
            wait_topology(sentinels)
            config = ("redis.sentinels = %s\nredis.master_name = %s\nredis.timeout = 300ms\n"
                      "redis.queue_max = 100000\nhistory.cache_ttl = 0\n" % (
                          ", ".join(s.address for s in sentinels), NAME)) + REPORT_CONF
            with harness.Daemon(workers=2, config=config, zone=ZONE) as d:
                T.run(failover, master, replica, sentinels, d)
                T.run(switchover, master, replica, sentinels, d)
                T.check("no sanitizer report", "Sanitizer" not in d.log() and
                        "runtime error" not in d.log(), d.log()[-2000:])
            T.run(demoted_behind_their_back, sentinels)
            T.run(unknown_name, sentinels)
        finally:
            for s in sentinels:
                s.cleanup()


if __name__ == "__main__":
    T.run(main)
    sys.exit(T.finish())
