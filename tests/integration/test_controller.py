#!/usr/bin/python3
"""The controller listener (controller@ADDR) with a real redis-server and
real scans feeding the history plugin:

  - access, table-driven: no password -> 401, a wrong one -> 403, the read
    password (Password header, or Authorization: Bearer) reads, only the
    enable password writes; a browser session (POST /login, cookie) reads,
    writes only with its X-CSRF-Token; a forged or tampered cookie is
    refused; every refusal says why in JSON;
  - /stat and /metrics as on the scanning port (daemon-wide totals);
  - the JSON API over Redis: /api/v1/domains lists the scanned domains with
    their DMARC counts, /api/v1/domain gives the top failing sources,
    /api/v1/sender one sender's history, POST /api/v1/sender/clear forgets
    it (the key is gone from Redis), /api/v1/reports the report status per
    UTC day from the report keys (docs/reports.md);
  - bad input (not a domain, not an IP, unknown path, wrong method) gets a
    4xx with an error, never a crash;
  - without a password, on loopback: reads are open, a write still needs a
    custom header;
  - the dashboard's files come from the binary with a strict
    Content-Security-Policy;
  - HEAD answers like GET without a body (controller and scanning port);
  - 10 wrong passwords from one address in 5 minutes: 429 with Retry-After
    for any password until the window ends; another address still gets in.
Prints "N passed, N failed"; exits non-zero on failure."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("controller")

ZONE = """$ORIGIN .
$TTL 300
example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. TXT "v=DMARC1; p=none"
example.net. TXT "v=spf1 ip4:203.0.113.0/24 -all"
_dmarc.example.net. TXT "v=DMARC1; p=none"
"""
READ, WRITE = "read-secret", "write-secret"


def message(frm, n):
    return ("From: %s\r\nTo: bob@receiver.test\r\nSubject: hello %d\r\n"
            "Message-ID: <c%d@test>\r\n\r\nhi\r\n" % (frm, n, n)).encode()


def scan(d, ip, addr, n):
    st, r = d.checkv2(message(addr, n), headers={"IP": ip, "From": addr, "Helo": "mail.test"})
    T.eq("scan %d: status" % n, st, 200)


def call(port, method, path, headers=None, body=None):
    if method == "POST" and body is None:
        body = b""   # as browsers send it: Content-Length: 0
    st, hdrs, raw = harness.http_request("127.0.0.1", port, method, path, body, headers)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw
    return st, hdrs, data


def populate(d, r):
    n = 0
    for i in range(1, 4):
        n += 1
        scan(d, "192.0.2.%d" % i, "alice@example.com", n)
    for i in range(2):
        n += 1
        scan(d, "198.51.100.%d" % (7 + i), "alice@example.com", n)
    for i in range(2):
        n += 1
        scan(d, "203.0.113.%d" % (5 + i), "carol@example.net", n)
    ok = harness.wait_for(lambda: r.cmd("HGET", "as:{example.com}s:198.51.100", "df") and
                          r.cmd("HGET", "as:{example.net}d", "dp"), 15, what="history written")
    T.check("history written by the scans", ok)
    return n


def test_access(cp):
    pw = {"Password": READ}
    cases = [
        # (what, method, path, headers, want status)
        ("no password", "GET", "/stat", None, 401),
        ("wrong password", "GET", "/stat", {"Password": "nope"}, 403),
        ("wrong password, not downgraded", "GET", "/api/v1/domains", {"Password": ""}, 403),
        ("read password", "GET", "/stat", pw, 200),
        ("bearer (Prometheus)", "GET", "/metrics", {"Authorization": "Bearer " + READ}, 200),
        ("enable password reads", "GET", "/stat", {"Password": WRITE}, 200),
        ("read password cannot write", "POST",
         "/api/v1/sender/clear?domain=example.com&ip=198.51.100.1", pw, 403),
        ("forged session", "GET", "/stat", {"Cookie": "as_session=2.99999999999.%s" % ("0" * 64)},
         403),
        ("not a domain", "GET", "/api/v1/domain?domain=../etc", pw, 400),
        ("no domain", "GET", "/api/v1/domain", pw, 400),
        ("not an IP", "GET", "/api/v1/sender?domain=example.com&ip=abc", pw, 400),
        ("days out of range", "GET", "/api/v1/reports?days=400", pw, 400),
        ("unknown path", "GET", "/api/v1/nothing", pw, 404),
        ("GET on a write", "GET", "/api/v1/sender/clear?domain=example.com&ip=1.2.3.4",
         {"Password": WRITE}, 405),
        ("POST on a read", "POST", "/api/v1/domains", pw, 405),
        ("GET /login", "GET", "/login", None, 405),
    ]
    for what, method, path, headers, want in cases:
        st, _, body = call(cp, method, path, headers)
        T.eq("%s: %s %s status" % (what, method, path), st, want)
        if want >= 400:
            T.check("%s: JSON error" % what, isinstance(body, dict) and body.get("error"), body)


def test_reads(d, cp, rc):
    pw = {"Password": READ}
    st, _, s = call(cp, "GET", "/stat", pw)
    T.eq("/stat on the controller: scanned is the daemon's", s["scanned"], d.stat()["scanned"])
    st, h, text = call(cp, "GET", "/metrics", pw)
    T.check("/metrics on the controller", isinstance(text, (bytes, str)) and
            b"authscan_scans_total" in (text if isinstance(text, bytes) else text.encode()),
            text)

    st, _, r = call(cp, "GET", "/api/v1/domains", pw)
    T.eq("domains: status", st, 200)
    doms = {x["domain"]: x["history"] for x in r.get("domains", [])}
    T.eq("domains: the scanned domains", set(doms), {"example.com", "example.net"})
    T.eq("domains: the whole keyspace walked", r.get("partial"), False)
    T.check("domains: example.com DMARC passes", doms.get("example.com", {}).get("dp", 0) >= 3,
            doms)
    T.check("domains: example.net DMARC passes", doms.get("example.net", {}).get("dp", 0) >= 2,
            doms)

    st, _, r = call(cp, "GET", "/api/v1/domain?domain=EXAMPLE.com", pw)
    T.eq("domain: status", st, 200)
    src = r.get("sources", [])
    T.eq("domain: two sources seen, whole keyspace", (r.get("sources_seen"), r.get("partial")),
         (2, False))
    T.eq("domain: top failing source first", src[0]["net"] if src else None, "198.51.100")
    T.check("domain: its failures", src and src[0]["history"]["df"] >= 2, src)

    T.eq("domain: the history plugin's source index", sorted(
        x.decode() for x in rc.cmd("ZRANGE", "as:{example.com}sx", "0", "-1")),
        ["192.0.2", "198.51.100"])
    # a network in the index whose hash expired: not listed, and pruned
    rc.cmd("ZADD", "as:{example.com}sx", "1", "10.9.9")
    st, _, r = call(cp, "GET", "/api/v1/domain?domain=example.com", pw)
    T.eq("domain: an expired source is not listed", (st, r.get("sources_seen"),
                                                     sorted(x["net"] for x in r["sources"])),
         (200, 2, ["192.0.2", "198.51.100"]))
    T.eq("domain: the expired source is pruned from the index",
         rc.cmd("ZSCORE", "as:{example.com}sx", "10.9.9"), None)
    # history written before the index: found by walking the keyspace
    rc.cmd("HSET", "as:{legacy.example}d", "n", "3", "dp", "1", "df", "2")
    rc.cmd("HSET", "as:{legacy.example}s:10.1.2", "n", "3", "df", "2")
    st, _, r = call(cp, "GET", "/api/v1/domain?domain=legacy.example", pw)
    T.eq("domain without an index: sources from the keyspace", (st, r.get("sources_seen"),
                                                                 r.get("partial")), (200, 1, False))
    for k in ("as:{legacy.example}d", "as:{legacy.example}s:10.1.2"):
        rc.cmd("DEL", k)

    st, _, r = call(cp, "GET", "/api/v1/sender?domain=example.com&ip=192.0.2.200", pw)
    T.eq("sender: status", st, 200)
    T.eq("sender: network", r.get("net"), "192.0.2")
    # an IPv4-mapped address is scanned as IPv4: the same history
    st, _, r2 = call(cp, "GET", "/api/v1/sender?domain=example.com&ip=::ffff:192.0.2.200", pw)
    T.eq("sender ::ffff:IPv4: status and network", (st, r2.get("net")), (200, "192.0.2"))
    T.eq("sender ::ffff:IPv4: same history", r2.get("source_history"), r.get("source_history"))
    T.check("sender: source history", (r.get("source_history") or {}).get("dp", 0) >= 3, r)
    st, _, r = call(cp, "GET", "/api/v1/sender?domain=nobody.example&ip=2001:db8::1", pw)
    T.eq("unknown sender: no history", (st, r.get("domain_history"), r.get("source_history"),
                                        r.get("net")), (200, None, None, "2001:db8:0:0"))


def test_reports(r, cp):
    day = lambda back: time.strftime("%Y%m%d", time.gmtime(time.time() - back * 86400))  # noqa
    r.cmd("SADD", "as:{report:}rd:" + day(0), "example.com")
    r.cmd("SADD", "as:{report:}rd:" + day(1), "example.com", "example.net")
    r.cmd("HSET", "as:{example.com}rs:" + day(1), "mailto:dmarc@example.com", "rid-1")
    r.cmd("SADD", "as:{report:}rsd:" + day(1), "example.com")
    # failed (4xx past the retries, still in the rows) and failed for good
    # (5xx: out of the rows, in the failed index only)
    r.cmd("SADD", "as:{report:}rd:" + day(1), "retry.example")
    r.cmd("SADD", "as:{report:}rfd:" + day(1), "retry.example", "refused.example")
    # sent to one destination, failed to another: sent
    r.cmd("SADD", "as:{report:}rfd:" + day(1), "example.com")
    # done: `authscan report` took it out of the day's rows, only the sent index has it
    r.cmd("SADD", "as:{report:}rsd:" + day(2), "done.example")
    # a bigger day: 150 pending, 20 sent with a destination left, 30 done
    big = ["big%03d.example" % i for i in range(200)]
    r.cmd("SADD", "as:{report:}rd:" + day(3), *big[:170])
    r.cmd("SADD", "as:{report:}rsd:" + day(3), *big[150:])
    st, _, rep = call(cp, "GET", "/api/v1/reports?days=4", {"Password": READ})
    T.eq("reports: status", st, 200)
    days = {x["day"]: x for x in rep.get("days", [])}
    T.eq("reports: four days", sorted(days), sorted([day(0), day(1), day(2), day(3)]))
    T.eq("reports: today is collecting", (days[day(0)]["collecting"], days[day(0)]["sent"]),
         (1, 0))
    T.eq("reports: yesterday one sent, one pending, two failed",
         (days[day(1)]["sent"], days[day(1)]["pending"], days[day(1)]["failed"]), (1, 1, 2))
    T.eq("reports: yesterday per domain",
         {x["domain"]: x["status"] for x in days[day(1)]["domains"]},
         {"example.com": "sent", "example.net": "pending", "retry.example": "failed",
          "refused.example": "failed"})
    T.eq("reports: a domain that is done (sent index only) is sent",
         (days[day(2)]["sent"], days[day(2)]["pending"], days[day(2)]["failed"],
          days[day(2)]["domains"]), (1, 0, 0, [{"domain": "done.example", "status": "sent"}]))
    b = days[day(3)]
    T.eq("reports: 200 domains: counts", (b["pending"], b["sent"], b["collecting"]), (150, 50, 0))
    T.eq("reports: 200 domains: 100 listed, truncated", (len(b["domains"]),
                                                         b["domains_truncated"]), (100, True))
    listed = [x["domain"] for x in b["domains"]]
    T.eq("reports: listed sorted, no name twice", listed, sorted(set(listed)))
    T.check("reports: listed statuses right", all(
        x["status"] == ("sent" if x["domain"] >= "big150" else "pending") for x in b["domains"]),
        b["domains"])
    T.eq("reports: days=1 is today only", len(call(cp, "GET", "/api/v1/reports?days=1",
                                                   {"Password": READ})[2]["days"]), 1)


def login(cp, password):
    st, h, body = call(cp, "POST", "/login", {"Content-Type": "application/json"},
                       json.dumps({"password": password}).encode())
    cookie = (h.get("set-cookie") or "").split(";")[0]
    return st, cookie, body


def test_sessions(r, cp):
    st, cookie, body = login(cp, "wrong")
    T.eq("login with a wrong password", (st, cookie), (403, ""))
    st, _, body = call(cp, "POST", "/login", None, b"not json")
    T.eq("login without JSON", st, 400)

    st, cookie, body = login(cp, READ)
    T.eq("login (read): status", st, 200)
    T.check("login: cookie", cookie.startswith("as_session="), cookie)
    _, h, _ = call(cp, "POST", "/login", None, json.dumps({"password": READ}).encode())
    attrs = h.get("set-cookie", "")
    T.check("cookie is HttpOnly and SameSite=Strict", "HttpOnly" in attrs and
            "SameSite=Strict" in attrs, attrs)
    st, _, _ = call(cp, "GET", "/api/v1/domains", {"Cookie": cookie})
    T.eq("read session reads", st, 200)
    st, _, _ = call(cp, "POST", "/api/v1/sender/clear?domain=example.com&ip=198.51.100.1",
                    {"Cookie": cookie, "X-CSRF-Token": body["csrf"]})
    T.eq("read session cannot write", st, 403)
    tampered = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
    st, _, _ = call(cp, "GET", "/stat", {"Cookie": tampered})
    T.eq("tampered session refused", st, 403)
    lvl = cookie.replace("as_session=1.", "as_session=2.")
    st, _, _ = call(cp, "GET", "/stat", {"Cookie": lvl})
    T.eq("session with a raised level refused", st, 403)

    st, wcookie, wbody = login(cp, WRITE)
    T.eq("login (write): level", (st, wbody.get("level")), (200, "write"))
    clear = "/api/v1/sender/clear?domain=example.com&ip=198.51.100.1"
    st, _, _ = call(cp, "POST", clear, {"Cookie": wcookie})
    T.eq("write session without CSRF token", st, 403)
    st, _, _ = call(cp, "POST", clear, {"Cookie": wcookie, "X-CSRF-Token": "0" * 64})
    T.eq("write session with a wrong CSRF token", st, 403)
    st, _, s = call(cp, "GET", "/api/v1/session", {"Cookie": wcookie})
    T.eq("session: the same CSRF token", s.get("csrf"), wbody.get("csrf"))
    T.check("source key there before the clear", r.cmd("EXISTS", "as:{example.com}s:198.51.100"))
    st, _, res = call(cp, "POST", clear, {"Cookie": wcookie, "X-CSRF-Token": wbody["csrf"]})
    T.eq("write session with its CSRF token clears", (st, res), (200, {"cleared": 1}))
    T.eq("the key is gone", r.cmd("EXISTS", "as:{example.com}s:198.51.100"), 0)
    st, _, res = call(cp, "POST", "/api/v1/sender/clear?domain=example.net&ip=203.0.113.9",
                      {"Password": WRITE})
    T.eq("enable password in the header clears", (st, res), (200, {"cleared": 1}))
    st, h, _ = call(cp, "POST", "/logout", {"Cookie": wcookie})
    T.check("logout expires the cookie", "Max-Age=0" in h.get("set-cookie", ""), h)


def test_assets(cp):
    for path, ctype in (("/", "text/html"), ("/app.js", "text/javascript"),
                        ("/style.css", "text/css")):
        st, h, raw = harness.http_request("127.0.0.1", cp, "GET", path)
        T.eq("%s: status" % path, st, 200)
        T.check("%s: content type" % path, h.get("content-type", "").startswith(ctype), h)
        csp = h.get("content-security-policy", "")
        T.check("%s: CSP allows only this origin" % path,
                "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp)
        T.check("%s: nothing from elsewhere" % path,
                b"http://" not in raw and b"https://" not in raw, raw[:200])


def test_no_password():
    cp = harness.free_port()
    with harness.Daemon(workers=1, config="", listen=["127.0.0.1:%d" % harness.free_port(),
                                                     "controller@127.0.0.1:%d" % cp]) as d:
        st, _, s = call(cp, "GET", "/stat")
        T.eq("no password, loopback: reads open", st, 200)
        st, _, body = call(cp, "POST", "/api/v1/sender/clear?domain=example.com&ip=192.0.2.1")
        T.eq("no password: a write without a custom header is refused", st, 403)
        st, _, body = call(cp, "POST", "/api/v1/sender/clear?domain=example.com&ip=192.0.2.1",
                           {"Password": "x"})
        T.eq("no password: a write with one gets to Redis (none configured)", st, 503)
        T.check("no Redis: says so", "redis" in (body or {}).get("error", ""), body)


def test_head(d, cp):
    """HEAD answers like GET, with the length and no body."""
    pw = {"Password": READ}
    cases = [
        # (what, port, path, headers)
        ("controller /", cp, "/", None),
        ("controller /app.js", cp, "/app.js", None),
        ("controller /stat", cp, "/stat", pw),
        ("controller /metrics", cp, "/metrics", pw),
        ("controller /api/v1/domains", cp, "/api/v1/domains", pw),
        ("controller /api/v1/session", cp, "/api/v1/session", None),
        ("scanning port /ping", d.port, "/ping", None),
        ("scanning port /stat", d.port, "/stat", None),
        ("scanning port /metrics", d.port, "/metrics", None),
    ]
    for what, port, path, headers in cases:
        gst, gh, gbody = harness.http_request("127.0.0.1", port, "GET", path, None, headers)
        st, h, body = harness.http_request("127.0.0.1", port, "HEAD", path, None, headers)
        T.eq("HEAD %s: status" % what, st, gst)
        T.eq("HEAD %s: content type" % what, h.get("content-type"), gh.get("content-type"))
        T.eq("HEAD %s: no body" % what, body, b"")
        # /stat and /metrics move between the two calls; the length is there
        T.check("HEAD %s: Content-Length" % what, int(h.get("content-length", "0")) > 0, h)
    st, _, _ = harness.http_request("127.0.0.1", cp, "HEAD", "/stat")
    T.eq("HEAD without a password: refused like GET", st, 401)


def test_login_limit():
    """Wrong passwords from one address: after 10 in a window, 429 with
    Retry-After for every password try, the right one included; another
    address is not affected (the daemon sees ::1 as another client)."""
    cp = harness.free_port()
    config = 'controller.password = "%s"\n' % READ
    with harness.Daemon(workers=1, config=config, listen=[
            "127.0.0.1:%d" % harness.free_port(), "controller@127.0.0.1:%d" % cp,
            "controller@[::1]:%d" % cp]) as d:
        assert d
        got = []
        for i in range(10):
            if i % 2:
                st, _, _ = login(cp, "wrong-%d" % i)
            else:
                st, _, _ = call(cp, "GET", "/stat", {"Password": "wrong-%d" % i})
            got.append(st)
        T.eq("10 wrong passwords (login and header): refused one by one", got, [403] * 10)
        st, h, body = call(cp, "GET", "/stat", {"Password": READ})
        T.eq("the 11th try, with the right password: too many", st, 429)
        T.check("429: Retry-After within the window",
                0 < int(h.get("retry-after", "0")) <= 300, h)
        T.check("429: says why", "too many" in (body or {}).get("error", ""), body)
        st, _, _ = login(cp, READ)
        T.eq("login while blocked: too many", st, 429)
        st, _, _ = call(cp, "GET", "/", None)
        T.eq("the page (no password) still loads", st, 200)
        st, _, _ = call(cp, "GET", "/api/v1/session", None)
        T.eq("the session call (no password) still answers", st, 200)
        st, _, _, = harness.http_request("::1", cp, "GET", "/stat", None, {"Password": READ})
        T.eq("another address: not blocked", st, 200)


def test_scan_budget():
    """A keyspace too big to walk within the budget (1.5M keys that are not
    history): the domain list and a domain's sources answer within a
    few hundred ms, saying "partial"; a domain's own counts are still exact."""
    with harness.RedisServer() as r:
        # about 2 s of Redis' time; far more on a busy machine
        r.cmd("EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'other:' .. i, 1) end",
              "0", "1500000", timeout=300)
        r.cmd("HSET", "as:{big.example}d", "n", "5", "dp", "5")
        cp = harness.free_port()
        config = 'redis.servers = %s\ncontroller.password = "%s"\n' % (r.address, READ)
        with harness.Daemon(workers=1, config=config, listen=[
                "127.0.0.1:%d" % harness.free_port(), "controller@127.0.0.1:%d" % cp]) as d:
            assert d
            for path in ("/api/v1/domains", "/api/v1/domain?domain=big.example"):
                t = time.monotonic()
                st, _, body = call(cp, "GET", path, {"Password": READ})
                took = time.monotonic() - t
                T.eq("%s on 1.5M keys: status" % path, st, 200)
                T.eq("%s on 1.5M keys: partial" % path, (body or {}).get("partial"), True)
                # the walk alone takes a second or more; the budget is 60 ms
                T.check("%s on 1.5M keys: within 2 s (took %.2f s)" % (path, took),
                        took < 2.0)
            st, _, body = call(cp, "GET", "/api/v1/domain?domain=big.example", {"Password": READ})
            T.eq("the domain's own counts, read by key", (body.get("history") or {}).get("n"), 5)


def main():
    with harness.RedisServer() as r:
        cp = harness.free_port()
        config = ("redis.servers = %s\ncontroller.password = \"%s\"\n"
                  "controller.enable_password = \"%s\"\n" % (r.address, READ, WRITE))
        with harness.Daemon(workers=2, config=config, zone=ZONE, listen=["127.0.0.1:%d" % harness.free_port(),
                                             "controller@127.0.0.1:%d" % cp]) as d:
            populate(d, r)
            T.run(test_access, cp)
            T.run(test_reads, d, cp, r)
            T.run(test_reports, r, cp)
            T.run(test_sessions, r, cp)
            T.run(test_assets, cp)
            T.run(test_head, d, cp)
    T.run(test_no_password)
    T.run(test_login_limit)
    T.run(test_scan_budget)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
