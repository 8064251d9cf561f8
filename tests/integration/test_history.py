#!/usr/bin/python3
"""Per-sender history (plugins/history) and the Redis service through the
real daemon and a real, private redis-server (harness.RedisServer):

  - history builds up across scans and changes the score: the first
    message of a domain gets HISTORY_FIRST_SEEN; after min_observations
    DMARC passes from 192.0.2.0/24 a pass from there gets
    HISTORY_CLEAN_SOURCE (negative); a DMARC failure from a network the
    domain never passed from gets HISTORY_SPOOF_NEW_SOURCE, and again the
    next time (a spoof that got in does not make its source a known one);
  - the keys: hash tag {domain}, the fields, a TTL on every key;
  - /stat has the redis counters;
  - faults: Redis paused (CLIENT PAUSE) and killed during a load of
    parallel scans: every request is answered, within redis.timeout plus
    the scan's own work, with no history symbol (fail open); writes made
    while Redis was down are queued and land after the restart, and
    reads resume;
  - the per-worker cache: a repeat sender costs the write only, and the
    worker's own writes are in its cache;
  - without redis.servers the daemon starts, history says once per worker
    that it is off, and scans carry no history symbol.
Prints "N passed, N failed"; exits non-zero on failure."""
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("history")

ZONE = """$ORIGIN .
$TTL 300
example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. TXT "v=DMARC1; p=none"
"""
REDIS_TIMEOUT = 0.3
HISTORY_SYMS = ("HISTORY_FIRST_SEEN", "HISTORY_SPOOF_NEW_SOURCE", "HISTORY_CLEAN_SOURCE")


def message(frm, n=0):
    return ("From: %s\r\nTo: bob@receiver.test\r\nSubject: hello %d\r\n"
            "Message-ID: <h%d@test>\r\n\r\nhi\r\n" % (frm, n, n)).encode()


def scan(d, ip, addr, n=0, timeout=30.0):
    st, reply = d.checkv2(message(addr, n), headers={"IP": ip, "From": addr,
                                                     "Helo": "mail.test"}, timeout=timeout)
    if st != 200:
        raise AssertionError("scan: got status %d, want 200: %r" % (st, reply))
    return reply


def syms(reply):
    return set(reply.get("symbols", {}))


def hist_syms(reply):
    return syms(reply) & set(HISTORY_SYMS)


def wait_field(r, key, field, want, timeout=10.0):
    """Polls the hash until field reaches want (the write is after the reply)."""
    def reached():
        v = r.cmd("HGET", key, field)
        return v is not None and float(v) >= want
    try:
        harness.wait_for(reached, timeout, what="%s %s >= %s" % (key, field, want))
        return True
    except TimeoutError:
        return False


def build_up(r, d):
    dkey, skey = "as:{example.com}d", "as:{example.com}s:192.0.2"
    first = scan(d, "192.0.2.1", "alice@example.com", 1)
    T.eq("first message: history symbols", hist_syms(first), {"HISTORY_FIRST_SEEN"})
    T.check("first message: DMARC passes", "DMARC_POLICY_ALLOW" in syms(first), syms(first))
    T.check("first message recorded", wait_field(r, dkey, "dp", 1), r.cmd("HGETALL", dkey))
    for i in (2, 3):
        rep = scan(d, "192.0.2.%d" % i, "alice@example.com", i)
        T.eq("pass %d: no history symbol below min_observations" % i, hist_syms(rep), set())
        T.check("pass %d recorded" % i, wait_field(r, skey, "dp", i), r.cmd("HGETALL", skey))
    clean = scan(d, "192.0.2.9", "alice@example.com", 4)
    T.eq("clean source: history symbols", hist_syms(clean), {"HISTORY_CLEAN_SOURCE"})
    T.check("clean source: score %.2f below the first message's %.2f" % (
        clean["score"], first["score"]), clean["score"] <= first["score"] - 1.4)
    T.check("fourth pass recorded", wait_field(r, dkey, "dp", 4), r.cmd("HGETALL", dkey))

    spoof = scan(d, "198.51.100.7", "alice@example.com", 5)
    T.eq("spoof from a new source: history symbols", hist_syms(spoof),
         {"HISTORY_SPOOF_NEW_SOURCE"})
    opts = spoof["symbols"].get("HISTORY_SPOOF_NEW_SOURCE", {}).get("options", [])
    T.check("spoof: options name the domain and network",
            "example.com" in opts and "net=198.51.100" in opts, opts)
    T.check("spoof: score %.2f at least 3 above a plain DMARC failure" % spoof["score"],
            spoof["score"] >= clean["score"] + 3.0)
    T.check("spoof recorded for its source (p=none let it in)",
            wait_field(r, "as:{example.com}s:198.51.100", "df", 1),
            r.cmd("HGETALL", "as:{example.com}s:198.51.100"))
    T.check("spoof not counted against the domain", r.cmd("HGET", dkey, "df") is None,
            r.cmd("HGETALL", dkey))
    again = scan(d, "198.51.100.8", "alice@example.com", 6)
    T.eq("second spoof from that network: still a spoof", hist_syms(again),
         {"HISTORY_SPOOF_NEW_SOURCE"})

    # the keys: fields, hash tag, TTL
    h = r.cmd("HGETALL", dkey)
    fields = {h[i].decode(): h[i + 1].decode() for i in range(0, len(h), 2)}
    T.check("domain hash fields", {"n", "dp", "sp", "f", "l"} <= set(fields) and
            float(fields["dp"]) >= 4, fields)
    keys = sorted(k.decode() for k in r.cmd("KEYS", "*"))
    T.check("every key has the prefix and the hash tag",
            keys and all(k.startswith("as:{example.com}") for k in keys), keys)
    ttls = {k: r.cmd("TTL", k) for k in keys}
    T.check("every key has a TTL (90 days)",
            all(86400 * 89 < t <= 86400 * 90 for t in ttls.values()), ttls)
    enc = {k: r.cmd("OBJECT", "ENCODING", k) for k in keys}
    T.eq("the source index: the domain's networks",
         sorted(m.decode() for m in r.cmd("ZRANGE", "as:{example.com}sx", "0", "-1")),
         sorted(k.split("}s:")[1] for k in keys if "}s:" in k))
    T.check("the source index: scored by the last write",
            all(abs(float(x) - time.time()) < 300
                for x in r.cmd("ZRANGE", "as:{example.com}sx", "0", "-1", "WITHSCORES")[1::2]),
            r.cmd("ZRANGE", "as:{example.com}sx", "0", "-1", "WITHSCORES"))
    T.check("every key in the compact encoding (hashes and the index)",
            all(e in (b"listpack", b"ziplist") for e in enc.values()), enc)
    st = d.stat()
    rs = st.get("redis", {})
    T.check("/stat: redis up with counters", rs.get("state") == "up" and
            rs.get("commands", 0) > 0 and "errors" in rs and "dropped_writes" in rs, st)


def load(d, n, domain="example.com", ip="192.0.2.1"):
    """n scans in parallel; [(seconds, reply or exception)]."""
    def one(i):
        t0 = time.monotonic()
        try:
            rep = scan(d, ip, "u%d@%s" % (i, domain), 100 + i)
        except Exception as e:  # the test reports it
            rep = e
        return time.monotonic() - t0, rep
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        return list(ex.map(one, range(n)))


def faults(r, d):
    base = load(d, 8)
    base_max = max(t for t, _ in base)
    T.check("baseline: all answered", all(isinstance(x, dict) for _, x in base), base)

    # paused: every read waits at most redis.timeout
    r.cmd("CLIENT", "PAUSE", "3000")
    res = load(d, 16)
    T.check("paused: every request answered",
            all(isinstance(x, dict) for _, x in res), [x for _, x in res][:3])
    worst = max(t for t, _ in res)
    T.check("paused: latency %.2fs bounded by redis.timeout %.1fs (+1s)" % (
        worst, REDIS_TIMEOUT), worst < REDIS_TIMEOUT + base_max + 1.0)
    T.check("paused: no history symbol (fail open)",
            all(not hist_syms(x) for _, x in res if isinstance(x, dict)),
            [hist_syms(x) for _, x in res if isinstance(x, dict)])
    time.sleep(3.2)

    # killed mid-load
    kill_mark = d.log_mark()
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(load, d, 40)
        time.sleep(0.05)
        r.kill()
        res = fut.result()
    T.check("killed mid-load: every request answered",
            all(isinstance(x, dict) for _, x in res),
            [x for _, x in res if not isinstance(x, dict)][:3])
    worst = max(t for t, _ in res)
    T.check("killed mid-load: latency %.2fs bounded" % worst,
            worst < REDIS_TIMEOUT + base_max + 1.0)
    down = scan(d, "192.0.2.1", "bob@queued.example", 200)
    T.eq("down: no history symbol", hist_syms(down), set())
    # counted from the kill: the pause before may have cost a connection
    # or two their read (timeouts), each with its own line
    T.check("down: the log says so once per worker, not per message",
            d.log()[kill_mark:].count("is unavailable") <= 2, d.log()[kill_mark:][-3000:])

    # restarted: the queued write lands, reads resume
    r.start()
    try:
        harness.wait_for(lambda: r.cmd("EXISTS", "as:{queued.example}d") == 1, 15,
                         what="the queued write")
        landed = True
    except TimeoutError:
        landed = False
    T.check("restarted: the write queued while down landed", landed, r.cmd("KEYS", "*"))

    # a new domain per try: a try whose read failed still wrote the
    # domain's history, so retrying the same domain could never be first
    # seen again (flaked under ASan load)
    tries = [0]

    def first_seen():
        tries[0] += 1
        rep = scan(d, "192.0.2.1", "carol@fresh%d.example" % tries[0], 300)
        return "HISTORY_FIRST_SEEN" in syms(rep)
    try:
        harness.wait_for(first_seen, 15, interval=0.3, what="reads after the restart")
        ok = True
    except TimeoutError:
        ok = False
    T.check("restarted: reads resume (a new domain is first seen)", ok)
    T.check("restarted: the log says connected again",
            d.log().count("redis: connected to") >= 2, d.log()[-3000:])


def cache(r, d):
    def commands():
        return d.stat()["redis"]["commands"]
    first = scan(d, "192.0.2.1", "alice@example.com", 1)
    T.eq("cache: first message", hist_syms(first), {"HISTORY_FIRST_SEEN"})
    T.check("cache: first message recorded", wait_field(r, "as:{example.com}d", "n", 1))
    c1 = commands()
    second = scan(d, "192.0.2.1", "alice@example.com", 2)
    T.eq("cache: the worker's own write is in its cache", hist_syms(second), set())
    T.check("cache: second message recorded", wait_field(r, "as:{example.com}d", "n", 2),
            r.cmd("HGETALL", "as:{example.com}d"))
    T.eq("cache: a repeat sender costs one command (the write), no read", commands() - c1, 1)
    h = r.cmd("HGETALL", "as:{example.com}s:192.0.2")
    T.check("cache: Redis has both messages", h and b"n" in h and
            float(h[h.index(b"n") + 1]) == 2.0, h)


def queue_cap(r, d):
    """Redis away: finish-stage writes wait in a queue of redis.queue_max
    (5 here); what does not fit is dropped and counted, never held; after
    the restart exactly the queued writes land."""
    r.kill()
    stat0 = d.stat().get("redis", {})
    for i in range(20):
        rep = scan(d, "192.0.2.1", "u@drop%02d.example" % i, 400 + i)
        T.check("down: scan %d answered" % i, isinstance(rep, dict), rep)
    st = d.stat().get("redis", {})
    T.eq("down: the queue holds redis.queue_max writes", st.get("queued"), 5)
    T.eq("down: the rest counted as dropped",
         st.get("dropped_writes", 0) - stat0.get("dropped_writes", 0), 15)
    r.start()
    try:
        harness.wait_for(lambda: d.stat().get("redis", {}).get("queued") == 0, 15,
                         what="the queue flushed")
    except TimeoutError:
        pass
    time.sleep(0.3)
    landed = sorted(k.decode() for k in r.cmd("KEYS", "as:{drop*}d"))
    T.eq("restarted: the queued writes landed, the dropped ones did not",
         landed, ["as:{drop%02d.example}d" % i for i in range(5)])


def main():
    with harness.RedisServer() as r:
        # exact counts across two workers: no per-worker cache here
        config = ("redis.servers = %s\nredis.timeout = %gs\n"
                  "history.min_observations = 3\nhistory.clean_min = 3\n"
                  "history.cache_ttl = 0\n" % (r.address, REDIS_TIMEOUT))
        with harness.Daemon(workers=2, config=config, zone=ZONE) as d:
            T.run(build_up, r, d)
            T.run(faults, r, d)
            T.check("no sanitizer report", "Sanitizer" not in d.log() and
                    "runtime error" not in d.log(), d.log()[-2000:])

    # the write queue's cap (one worker: exact counts)
    with harness.RedisServer() as r:
        config = ("redis.servers = %s\nredis.timeout = %gs\nredis.queue_max = 5\n"
                  "history.cache_ttl = 0\n" % (r.address, REDIS_TIMEOUT))
        with harness.Daemon(workers=1, config=config, zone=ZONE) as d:
            T.run(queue_cap, r, d)

    # the per-worker cache (default): a repeat sender costs no read
    with harness.RedisServer() as r:
        config = "redis.servers = %s\n" % r.address
        with harness.Daemon(workers=1, config=config, zone=ZONE) as d:
            T.run(cache, r, d)

    # off without redis.servers
    with harness.Daemon(workers=2, config="", zone=ZONE) as d:
        rep = scan(d, "192.0.2.1", "alice@example.com")
        T.eq("off: no history symbol", hist_syms(rep), set())
        d.wait_log("per-sender history is off", count=2)
        T.eq("off: said once per worker", d.log().count("per-sender history is off"), 2)
        T.eq("off: /stat says so", d.stat().get("redis"), {"state": "off"})


if __name__ == "__main__":
    T.run(main)
    sys.exit(T.finish())
