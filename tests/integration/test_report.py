#!/usr/bin/python3
"""DMARC reporting (plugins/report, `authscan report`) through the real
daemon, a real private redis-server (harness.RedisServer) and, for sending,
a real SMTP server on 127.0.0.1 (python3-aiosmtpd):

  - counters: a few hundred messages of several policy domains (pass,
    fail under p=reject/quarantine/none, t=y, the mailing-list safeguard,
    a local override, rows that differ in one identifier only) land in
    Redis as one row hash and one policy hash per policy domain and UTC
    day, hash-tagged {domain}, with TTLs, and a per-day index of policy
    domains; the sum of the row counts is the number of messages scanned;
  - report.enabled = no writes nothing.
Prints "N passed, N failed"; exits non-zero on failure."""
import calendar
import collections
import glob
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

sys.path.insert(0, os.path.join(harness.SRC, "tests", "data", "dmarc"))
import dmarc_harness as H  # noqa: E402

T = harness.Tests("report")

GOOD_IP = "192.0.2.10"
BAD_IP = "203.0.113.9"
ZONE = """$ORIGIN .
$TTL 300
_dmarc.reject.example. TXT "v=DMARC1; p=reject; rua=mailto:agg@reject.example,mailto:slow@reject.example"
reject.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.quar.example. TXT "v=DMARC1; p=quarantine; sp=none; adkim=s; rua=mailto:dmarc@quar.example"
quar.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.none.example. TXT "v=DMARC1; p=none; rua=mailto:agg@none.example"
none.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.testing.example. TXT "v=DMARC1; p=reject; t=y; rua=mailto:ext@reports.test"
testing.example._report._dmarc.reports.test. TXT "v=DMARC1"
testing.example. TXT "v=spf1 -all"
_dmarc.list.example. TXT "v=DMARC1; p=reject; rua=mailto:ext@unauth.test"
list.example. TXT "v=spf1 -all"
nodmarc.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.partner.example. TXT "v=DMARC1; p=reject"
partner.example. TXT "v=spf1 -all"
_dmarc.fail.example. TXT "v=DMARC1; p=reject; ruf=mailto:ruf@fail.example; fo=1"
fail.example. TXT "v=spf1 -all"
_dmarc.psd.example. TXT "v=DMARC1; p=reject; psd=y; ruf=mailto:ruf@psd.example"
psd.example. TXT "v=spf1 -all"
_dmarc.extruf.example. TXT "v=DMARC1; p=none; ruf=mailto:x@elsewhere.test"
extruf.example. TXT "v=spf1 -all"
"""
# (From domain, client IP, extra header lines): the kinds of messages the
# counters must keep apart.
KINDS = [
    ("reject.example", GOOD_IP, ["X-Test-DKIM: pass reject.example s1"]),
    ("reject.example", BAD_IP, ["X-Test-DKIM: fail reject.example s1"]),
    ("reject.example", BAD_IP, ["X-Test-DKIM: fail reject.example s2"]),   # differs in s= only
    ("quar.example", GOOD_IP, []),
    ("quar.example", BAD_IP, []),
    ("none.example", BAD_IP, ["X-Test-DKIM: pass other.example k"]),
    ("testing.example", BAD_IP, []),
    ("list.example", BAD_IP, ["List-Id: <l.lists.test>", "X-Test-DKIM: fail list.example ls"]),
    ("nodmarc.example", GOOD_IP, []),          # no policy: not counted
    ("partner.example", BAD_IP, []),           # Lua softens reject: local_policy
    ("reject.example", "2001:db8::25", ["X-Test-DKIM: fail reject.example s1"]),
]
# A site override in Lua (rspamd's set_pre_result): the disposition applied
# is lower than DMARC asked, and the report must say why.
LUA_RULE = """
rspamd_config:register_symbol{
  name = 'SITE_PARTNER_SOFTENED', type = 'postfilter', score = 0.0,
  callback = function(task)
    local dmarc = task:get_dmarc()
    if dmarc and dmarc.author_domain == 'partner.example' and dmarc.result == 'fail' then
      task:set_pre_result('quarantine', 'partner softened', 'site_partner')
      task:insert_result('SITE_PARTNER_SOFTENED', 1.0)
    end
  end,
}
"""
LUA_DIR = None


def message(frm_domain, extra, n):
    lines = ["From: user%d@%s" % (n, frm_domain), "To: rcpt@receiver.test",
             "Subject: report test %d" % n, "Message-ID: <r%d@test>" % n] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\nhello\r\n").encode()


def scan(d, kind, n):
    dom, ip, extra = kind
    st, reply = d.checkv2(message(dom, extra, n),
                          headers={"IP": ip, "From": "bounce@%s" % dom, "Helo": "mail.test",
                                   "Rcpt": "rcpt@receiver.test"})
    if st != 200:
        raise AssertionError("scan: got status %d, want 200: %r" % (st, reply))
    return reply


def config(r, extra=""):
    return ("redis.servers = %s\nreport.enabled = yes\nlua.dir = %s\n" % (
        r.address if r else None, LUA_DIR)) + extra


def scan_load(d, n_msgs):
    """Scans n_msgs messages round-robin over KINDS; returns the count per
    policy domain (what the report must add up to)."""
    want = collections.Counter()
    for i in range(n_msgs):
        kind = KINDS[i % len(KINDS)]
        scan(d, kind, i)
        if kind[0] != "nodmarc.example":
            want[kind[0]] += 1
    return want


def utc_day(fmt="%Y%m%d"):
    return time.strftime(fmt, time.gmtime())


def rcmd(r, *args):
    """r.cmd() with bytes decoded (the fields are ASCII by construction)."""
    def dec(v):
        if isinstance(v, bytes):
            return v.decode()
        if isinstance(v, list):
            return [dec(x) for x in v]
        return v
    return dec(r.cmd(*args))


def row_sums(r, day):
    out = {}
    for dom in rcmd(r, "SMEMBERS", "as:{report:}rd:%s" % day) or []:
        h = rcmd(r, "HGETALL", "as:{%s}rr:%s" % (dom, day)) or []
        out[dom] = sum(int(h[i + 1]) for i in range(0, len(h), 2))
    return out


def wait_total(r, day, total, timeout=30.0):
    try:
        harness.wait_for(lambda: sum(row_sums(r, day).values()) >= total, timeout,
                         what="%d messages counted" % total)
    except TimeoutError:
        pass


def test_counters(plugins):
    with harness.RedisServer() as r, harness.Daemon(workers=2, config=config(r), zone=ZONE,
                                                    plugins_dir=plugins) as d:
        day = utc_day()
        want = scan_load(d, 270)
        total = sum(want.values())
        wait_total(r, day, total)
        T.eq("indexed policy domains", set(rcmd(r, "SMEMBERS", "as:{report:}rd:%s" % day)),
             set(want))
        T.eq("row counts per policy domain", row_sums(r, day), dict(want))
        rows = rcmd(r, "HGETALL", "as:{reject.example}rr:%s" % day)
        fields = rows[0::2]
        T.eq("reject.example: distinct rows (s1/s2 kept apart, pass, IPv6)", len(fields), 4)
        prow = rcmd(r, "HGETALL", "as:{partner.example}rr:%s" % day)[0::2]
        T.check("Lua override: quarantine, local_policy with the module and text",
                any("\tquarantine\tfail\tfail\tlocal_policy=site_partner:%20partner%20"
                    "softened\t" in f for f in prow), prow)
        T.check("rows carry the selector", any("reject.example;s2;fail" in f for f in fields),
                fields)
        T.check("rejected row says reject", any("\treject\tfail\tfail\t" in f for f in fields),
                fields)
        lrows = rcmd(r, "HGETALL", "as:{list.example}rr:%s" % day)[0::2]
        T.check("mailing list reason", any("mailing_list=" in f and "\tquarantine\t" in f
                                           for f in lrows), lrows)
        trows = rcmd(r, "HGETALL", "as:{testing.example}rr:%s" % day)[0::2]
        T.check("policy_test_mode reason", any("policy_test_mode=t%3Dy" in f for f in trows),
                trows)
        pol = rcmd(r, "HGETALL", "as:{quar.example}rp:%s" % day)
        T.eq("quar.example policy", pol[0::2],
             ["1\ttree\tquarantine\tnone\t\ts\tr\t100\tu\tn\tmailto:dmarc@quar.example\t\t0"])
        for key in ("as:{reject.example}rr:%s" % day, "as:{reject.example}rp:%s" % day,
                    "as:{report:}rd:%s" % day):
            ttl = r.cmd("TTL", key)
            T.check("TTL on %s" % key, 6 * 86400 < ttl <= 7 * 86400, "got %r" % ttl)
        check_aggregate(r, plugins, want)


SCHEMA_FILES = {"rfc7489": "rfc7489-appendix-c.no-namespace.xsd",
                "dmarcbis": "rfc9990-draft32-dmarc-xml-0.2.xsd"}
# The schemas of the shared conformance data where this tree sits beside
# it (../shared/conformance/dmarc-aggregate/schema), else the copies in
# tests/data/report (a clone on its own); test_schema_copies checks that
# the copies are the shared files, byte for byte.
SHARED_SCHEMAS = os.environ.get("AUTHSCAN_DMARC_AGGREGATE_SCHEMAS", os.path.join(
    harness.SRC, "..", "shared", "conformance", "dmarc-aggregate", "schema"))
OWN_SCHEMAS = os.path.join(harness.SRC, "tests", "data", "report")
SCHEMAS = {fmt: os.path.join(SHARED_SCHEMAS if os.path.isdir(SHARED_SCHEMAS) else OWN_SCHEMAS, f)
           for fmt, f in SCHEMA_FILES.items()}


def test_schema_copies():
    if not os.path.isdir(SHARED_SCHEMAS):
        harness.log("skip: no shared conformance data at %s: the copies in tests/data/report "
                    "validate" % SHARED_SCHEMAS)
        return
    for f in SCHEMA_FILES.values():
        with open(os.path.join(SHARED_SCHEMAS, f), "rb") as a, \
                open(os.path.join(OWN_SCHEMAS, f), "rb") as b:
            T.check("tests/data/report/%s is the shared schema" % f, a.read() == b.read(),
                    "differs from %s" % SHARED_SCHEMAS)
NS = {"rfc7489": "", "dmarcbis": "{urn:ietf:params:xml:ns:dmarc-2.0}"}
REPORT_CONF = ("report.org_name = Receiver Test Org\nreport.email = dmarc-reports@receiver.test\n"
               "report.domain = receiver.test\n")


def report_cmd(r, plugins, tmp, args, extra_conf="", zone=ZONE):
    """Runs authscan report with a config file like the daemon's."""
    conf = os.path.join(tmp, "report.conf")
    with open(conf, "w") as f:
        f.write(config(r, REPORT_CONF + extra_conf))
    zpath = os.path.join(tmp, "report.zone")
    with open(zpath, "w") as f:
        f.write(zone)
    cmd = shlex.split(os.environ.get("AUTHSCAN_WRAP", "")) + [harness.AUTHSCAN, "report"] + list(args) + [
        "-c", conf, "--plugins-dir", plugins, "--dns-zone", zpath]
    return subprocess.run(cmd, capture_output=True, timeout=300, encoding="utf-8",
                          errors="backslashreplace")


def xmllint(path, schema):
    p = subprocess.run(["xmllint", "--noout", "--schema", schema, path],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stderr.strip()


def read_report(path, fmt):
    """(policy domain, report_id, {count sum}, root) of a .xml.gz."""
    with gzip.open(path) as f:
        data = f.read()
    root = ET.fromstring(data)
    ns = NS[fmt]
    pd = root.find("%spolicy_published/%sdomain" % (ns, ns)).text
    rid = root.find("%sreport_metadata/%sreport_id" % (ns, ns)).text
    total = sum(int(c.text) for c in root.iter(ns + "count"))
    return pd, rid, total, root, data


FNAME = re.compile(r"^receiver\.test!([a-z.]+)!(\d+)!(\d+)!([^!]+)\.xml\.gz$")


def check_aggregate(r, plugins, want):
    date = utc_day("%Y-%m-%d")
    begin = calendar.timegm(time.strptime(date, "%Y-%m-%d"))
    for fmt in ("rfc7489", "dmarcbis"):
        with tempfile.TemporaryDirectory(prefix="authscan-report-out-") as tmp:
            out = os.path.join(tmp, "out")
            os.mkdir(out)
            p = report_cmd(r, plugins, tmp, ["aggregate", "--date", date, "--out", out,
                                            "--format", fmt])
            T.eq("%s: report exit status (stderr %s)" % (fmt, p.stderr.strip()), p.returncode, 0)
            files = sorted(os.listdir(out))
            T.eq("%s: one file per policy domain" % fmt, len(files), len(want))
            got = {}
            for name in files:
                path = os.path.join(out, name)
                m = FNAME.match(name)
                if not T.check("%s: file name %s" % (fmt, name), m, "want receiver!pd!begin!end!id.xml.gz"):
                    continue
                with open(path, "rb") as f:
                    T.eq("%s: %s is gzip" % (fmt, name), f.read(2), b"\x1f\x8b")
                plain = os.path.join(tmp, name[:-3])
                with gzip.open(path) as f, open(plain, "wb") as g:
                    g.write(f.read())
                rc, err = xmllint(plain, SCHEMAS[fmt])
                T.eq("%s: %s valid against its schema (%s)" % (fmt, name, err[-500:]), rc, 0)
                pd, rid, total, root, _ = read_report(path, fmt)
                T.eq("%s: %s: policy domain in name" % (fmt, name), m.group(1), pd)
                T.eq("%s: %s: Report-ID in name" % (fmt, name), m.group(4), rid)
                T.eq("%s: %s: date range" % (fmt, name), (int(m.group(2)), int(m.group(3))),
                     (begin, begin + 86399))
                got[pd] = total
            T.eq("%s: sum of <count> per policy domain" % fmt, got, dict(want))
            dmarc_cat([os.path.join(out, f) for f in files], fmt)
            if fmt == "rfc7489":
                consumer([os.path.join(out, f) for f in files])


DMARC_CAT_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\S+)\s")


def dmarc_cat(paths, fmt):
    """Debian's dmarc-cat (an independent Go reader of aggregate reports)
    reads every file of both formats, overrides (<reason>) included: its
    domain, reporter and per-record counts must be ours."""
    exe = shutil.which("dmarc-cat")
    if not T.check("dmarc-cat installed (scripts/install-deps)", exe, "not on PATH"):
        return
    for path in paths:
        name = os.path.basename(path)
        p = subprocess.run([exe, "-N", path], capture_output=True, text=True, timeout=60)
        pd, _, total, root, _ = read_report(path, fmt)
        ns = NS[fmt]
        records = len(root.findall(ns + "record"))
        rows = [m for m in (DMARC_CAT_ROW.match(l) for l in p.stdout.splitlines()[1:])
                if m and m.group(1) != "IP"]
        got = (p.returncode, "Domain: %s" % pd in p.stdout,
               "Reporting by: Receiver Test Org" in p.stdout,
               len(rows), sum(int(m.group(2)) for m in rows))
        T.eq("%s: dmarc-cat reads %s (exit, domain, reporter, records, count sum; stderr %s)"
             % (fmt, name, p.stderr.strip()[-300:]), got, (0, True, True, records, total))


def consumer(paths, reports=None):
    """The independent consumer (npm dmarc-report-parser) reads our files
    (.xml.gz), or our report mails (.eml, with the .xml.gz each carries in
    reports)."""
    reports = reports or {p: p for p in paths}
    mod = os.environ.get("AUTHSCAN_DMARC_REPORT_PARSER",
                         os.path.join(harness.SRC, "build-npm", "dmarc-report-parser-0.1.5"))
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(mod, "node_modules", "dmarc-report-parser")):
        harness.log("skip: dmarc-report-parser not installed in %s (scripts/test installs it)"
                    % mod)
        return
    env = dict(os.environ, NODE_PATH=os.path.join(mod, "node_modules"))
    p = subprocess.run([node, os.path.join(harness.HERE, "report_parse.js")] + list(paths),
                       capture_output=True, text=True, env=env, timeout=120)
    results = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    T.eq("consumer: one result per file (stderr %s)" % p.stderr[-300:], len(results), len(paths))
    for res in results:
        gz = reports[res["file"]]
        with gzip.open(gz) as f:
            has_reason = b"<reason>" in f.read()
        if res["ok"]:
            rep = res["reports"][0]
            pd, rid, total, _, _ = read_report(gz, "rfc7489")
            T.eq("consumer: %s" % os.path.basename(res["file"]),
                 (rep["domain"], rep["report_id"], rep["messages"]), (pd, rid, total))
        else:
            # dmarc-report-parser 0.1.5 reads <reason><type> without unwrapping
            # xml2js's one-element array, so it refuses every report with a
            # reason (its defect: the file is schema-valid, checked above)
            T.check("consumer: %s refused only for its <reason> defect" % res["file"],
                    has_reason and "type" in res["error"], res["error"][:500])


class SmtpSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it
    accepts.  Per recipient local-part: "slow" always answers 451 to DATA,
    "tempfail" answers 451 the first time and 250 after, "dmarc" is
    refused at RCPT with 550; everything else is accepted."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        self.port = harness.free_port()
        self.accepted = []      # (rcpt, message bytes)
        self.tries = collections.Counter()
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, options):
                if address.startswith("dmarc@"):
                    sink.tries[address] += 1
                    return "550 5.1.1 no such user"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                rcpt = envelope.rcpt_tos[0]
                sink.tries[rcpt] += 1
                if rcpt.startswith("slow@") or (rcpt.startswith("tempfail@") and
                                                 sink.tries[rcpt] == 1):
                    return "451 4.3.0 try again later"
                sink.accepted.append((rcpt, envelope.original_content or envelope.content))
                return "250 2.0.0 accepted"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    def to(self, rcpt):
        return [m for r, m in self.accepted if r == rcpt]


def test_send(plugins):
    zone = ZONE.replace("mailto:agg@none.example", "mailto:tempfail@none.example")
    with SmtpSink() as smtp, harness.RedisServer() as r, harness.Daemon(
            workers=2, config=config(r), zone=zone, plugins_dir=plugins) as d:
        day = utc_day()
        want = scan_load(d, 90)
        wait_total(r, day, sum(want.values()))
        send_conf = ("report.smtp = smtp://127.0.0.1:%d\nreport.smtp_retries = 3\n"
                     "report.smtp_retry_delay = 0s\nreport.format = rfc7489\n" % smtp.port)
        date = utc_day("%Y-%m-%d")
        with tempfile.TemporaryDirectory(prefix="authscan-report-send-") as tmp:
            with open(os.path.join(tmp, "report.zone"), "w") as f:
                f.write(zone)
            lock = "as:{report:}rl:%s" % day
            r.cmd("SET", lock, "another-host", "PX", "60000")
            p = report_cmd(r, plugins, tmp, ["aggregate", "--date", date, "--send"], send_conf,
                           zone=zone)
            T.check("locked day: skipped with a log line", "holds the lock" in p.stderr, p.stderr)
            T.eq("locked day: nothing sent", smtp.accepted, [])
            r.cmd("DEL", lock)

            p = report_cmd(r, plugins, tmp, ["aggregate", "--date", date, "--send"], send_conf,
                           zone=zone)
            T.eq("first run: exit 1 (slow@ left for later) (stderr %s)" % p.stderr, p.returncode, 1)
            T.eq("lock released", r.cmd("EXISTS", lock), 0)
            T.eq("agg@reject.example got one report", len(smtp.to("agg@reject.example")), 1)
            T.eq("slow@: tried smtp_retries times", smtp.tries["slow@reject.example"], 3)
            T.eq("4xx then success: tempfail@none.example got one report after 2 tries",
                 (len(smtp.to("tempfail@none.example")), smtp.tries["tempfail@none.example"]),
                 (1, 2))
            T.eq("5xx: dmarc@quar.example tried once, nothing delivered",
                 (smtp.tries["dmarc@quar.example"], smtp.to("dmarc@quar.example")), (1, []))
            T.eq("verified external destination got its report",
                 len(smtp.to("ext@reports.test")), 1)
            T.eq("unauthorised external destination got nothing", smtp.to("ext@unauth.test"), [])
            T.check("unauthorised destination logged", "ext@unauth.test is not authorised"
                    in p.stderr, p.stderr)
            T.eq("reject.example kept (slow@ is left)",
                 rcmd(r, "SMEMBERS", "as:{report:}rd:%s" % day), ["reject.example"])
            T.eq("reject.example: agg@ marked sent",
                 rcmd(r, "HKEYS", "as:{reject.example}rs:%s" % day), ["mailto:agg@reject.example"])
            marked = sorted(k[len("as:{"):k.index("}")]
                            for k in rcmd(r, "KEYS", "as:{*}rs:%s" % day))
            T.check("some domains marked sent", "reject.example" in marked and
                    "none.example" in marked, marked)
            T.eq("the day's sent index lists exactly the marked domains",
                 sorted(rcmd(r, "SMEMBERS", "as:{report:}rsd:%s" % day) or []), marked)
            T.check("the sent index expires", 0 < rcmd(r, "TTL", "as:{report:}rsd:%s" % day),
                    rcmd(r, "TTL", "as:{report:}rsd:%s" % day))
            T.eq("done domains deleted", [k for k in rcmd(r, "KEYS", "as:{*}r[rp]:*")
                                          if "reject.example" not in k], [])
            check_mails(smtp, tmp, want)
            # what the run counted for /metrics and the dashboard: every
            # mail the sink accepted; slow@ (4xx past the retries) and
            # dmarc@quar (5xx) given up on
            sent1 = len(smtp.accepted)
            T.eq("counters: {report:}st after the first run", report_stats(r),
                 {"aggregate_sent": sent1, "aggregate_failed": 2})
            T.eq("the day's failed index", sorted(rcmd(r, "SMEMBERS", "as:{report:}rfd:%s" % day)),
                 ["quar.example", "reject.example"])

            p = report_cmd(r, plugins, tmp, ["aggregate", "--date", date, "--send"], send_conf,
                           zone=zone)
            T.eq("second run: agg@ not sent again", len(smtp.to("agg@reject.example")), 1)
            T.eq("second run: slow@ tried again", smtp.tries["slow@reject.example"], 6)
            T.eq("counters after the second run (slow@ failed again)", report_stats(r),
                 {"aggregate_sent": sent1, "aggregate_failed": 3})
            check_report_metrics(r, {("sent", "aggregate"): sent1, ("failed", "aggregate"): 3,
                                     ("sent", "failure"): 0, ("failed", "failure"): 0})


def report_stats(r):
    h = rcmd(r, "HGETALL", "as:{report:}st") or []
    return {k: int(v) for k, v in zip(h[0::2], h[1::2])}


def check_report_metrics(r, want):
    """A controller of a daemon on the same Redis serves the counters
    `authscan report` kept, parsed by prometheus_client's parser; with
    Redis gone they are absent and authscan_reports_stats_up is 0."""
    from prometheus_client.parser import text_string_to_metric_families
    cp = harness.free_port()
    with harness.Daemon(workers=1, config=config(r, "redis.timeout = 300ms\n"), listen=[
            "127.0.0.1:%d" % harness.free_port(), "controller@127.0.0.1:%d" % cp]):
        def scrape():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % cp, timeout=10) as f:
                return {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for fam in text_string_to_metric_families(f.read().decode())
                        for s in fam.samples}
        got = scrape()
        T.eq("controller /metrics: report counters by kind",
             {(o, k): got.get(("authscan_reports_%s_total" % o, (("kind", k),)))
              for o, k in want}, want)
        T.eq("controller /metrics: reports_stats_up", got.get(("authscan_reports_stats_up", ())),
             1.0)
        T.check("controller /metrics: the workers' families too",
                ("authscan_scans_total", ()) in got, sorted(got)[:10])
        r.cmd("CLIENT", "PAUSE", "1500")
        t0 = time.monotonic()
        got = scrape()
        T.check("Redis paused: /metrics answers within redis.timeout",
                time.monotonic() - t0 < 1.2, time.monotonic() - t0)
        T.eq("Redis paused: reports_stats_up 0, counters left out",
             (got.get(("authscan_reports_stats_up", ())),
              [k for k in got if k[0].startswith("authscan_reports_sent")]), (0.0, []))
        time.sleep(1.6)


def check_mails(smtp, tmp, want):
    files, reports = [], {}
    for i, (rcpt, raw) in enumerate(smtp.accepted):
        msg = __import__("email").message_from_bytes(raw)
        subj = msg["Subject"]
        m = re.match(r"^Report Domain: (\S+) Submitter: receiver\.test Report-ID: <([^>]+)>$",
                     subj or "")
        if not T.check("mail to %s: Subject" % rcpt, m, subj):
            continue
        parts = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
        if not T.eq("mail to %s: one application/gzip part" % rcpt, len(parts), 1):
            continue
        fname = parts[0].get_filename()
        fm = FNAME.match(fname or "")
        T.check("mail to %s: attachment name %s" % (rcpt, fname), fm and fm.group(1) == m.group(1)
                and fm.group(4) == m.group(2))
        path = os.path.join(tmp, "mail-%d.xml.gz" % i)
        with open(path, "wb") as f:
            f.write(parts[0].get_payload(decode=True))
        pd, rid, total, _, data = read_report(path, "rfc7489")
        T.eq("mail to %s: report content" % rcpt, (pd, rid, total), (m.group(1), m.group(2), want[pd]))
        eml = os.path.join(tmp, "mail-%d.eml" % i)
        with open(eml, "wb") as f:
            f.write(raw)
        files.append(eml)
        reports[eml] = path
    consumer(files, reports)


def feedback_fields(raw):
    """The fields of the message/feedback-report part of an ARF mail."""
    text = raw.decode("utf-8", "replace")
    m = re.search(r"Content-Type: message/feedback-report\r\n\r\n(.*?)\r\n\r?\n?--", text, re.S)
    out = collections.defaultdict(list)
    for line in (m.group(1) if m else "").split("\r\n"):
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()].append(v.strip())
    return out


def test_failure(plugins):
    conf = config(None, "report.failure = yes\nreport.failure_rate = 2\n")
    with SmtpSink() as smtp, harness.RedisServer() as r, harness.Daemon(
            workers=2, config=conf.replace("None", r.address), zone=ZONE,
            plugins_dir=plugins) as d:
        for i in range(4):
            scan(d, ("fail.example", BAD_IP, ["X-Test-DKIM: fail fail.example sel"]), 100 + i)
        for i in range(2):
            scan(d, ("psd.example", BAD_IP, []), 200 + i)
            scan(d, ("extruf.example", BAD_IP, []), 300 + i)
        q = "as:{report:}fq"
        try:
            harness.wait_for(lambda: r.cmd("LLEN", q) >= 6, 20, what="6 queued")
        except TimeoutError:
            pass
        time.sleep(0.5)
        T.eq("queued failure reports (psd=y never)", r.cmd("LLEN", q), 6)
        entries = rcmd(r, "LRANGE", q, 0, -1)
        T.check("queued entries are redacted", all("user1" not in e for e in entries) and
                any("redacted@fail.example" in e for e in entries), entries[:1])
        send_conf = ("report.smtp = smtp://127.0.0.1:%d\nreport.smtp_retry_delay = 0s\n"
                     "report.failure = yes\nreport.failure_rate = 2\n" % smtp.port)
        with tempfile.TemporaryDirectory(prefix="authscan-report-failure-") as tmp:
            p = report_cmd(r, plugins, tmp, ["failure", "--send"], send_conf)
        T.eq("failure --send: exit status (stderr %s)" % p.stderr, p.returncode, 0)
        T.eq("queue drained", r.cmd("LLEN", q), 0)
        T.eq("rate limit: 2 of 4 sent to ruf@fail.example", len(smtp.to("ruf@fail.example")), 2)
        T.eq("counters: failure reports sent", report_stats(r),
             {"failure_sent": len(smtp.accepted)})
        T.check("rate limit logged", "report.failure_rate" in p.stderr, p.stderr)
        T.eq("unverified external ruf: nothing", smtp.to("x@elsewhere.test"), [])
        T.eq("psd=y: nothing", smtp.to("ruf@psd.example"), [])
        for raw in smtp.to("ruf@fail.example"):
            msg = __import__("email").message_from_bytes(raw)
            T.eq("ARF: content type", (msg.get_content_type(), msg.get_param("report-type")),
                 ("multipart/report", "feedback-report"))
            T.eq("ARF: part order", [p.get_content_type() for p in msg.get_payload()],
                 ["text/plain", "message/feedback-report", "text/rfc822-headers"])
            fb = feedback_fields(raw)
            got = {k: fb.get(k, [None])[0] for k in (
                "Feedback-Type", "Auth-Failure", "Reported-Domain", "Identity-Alignment",
                "Source-IP", "DKIM-Domain", "DKIM-Selector", "Version")}
            T.eq("ARF: feedback fields", got, {
                "Feedback-Type": "auth-failure", "Auth-Failure": "dmarc",
                "Reported-Domain": "fail.example", "Identity-Alignment": "none",
                "Source-IP": BAD_IP, "DKIM-Domain": "fail.example", "DKIM-Selector": "sel",
                "Version": "1"})
            T.check("ARF: User-Agent and Authentication-Results",
                    fb.get("User-Agent") and "dmarc=fail" in (fb.get("Authentication-Results")
                                                              or [""])[0], dict(fb))
            text = raw.decode("utf-8", "replace")
            T.check("ARF: headers redacted (RFC 6590)", "From: redacted@fail.example" in text and
                    not re.search(r"user1\d\d@", text), text[-600:])


def test_psl_auto(plugins):
    """RFC 7489 mode (dmarc.discovery = psl): pct sampling is reported as
    sampled_out, envelope_to when configured, and --format auto picks the
    RFC 7489 XML (no namespace), valid against its schema."""
    zone = ZONE + '_dmarc.pct.example. TXT "v=DMARC1; p=reject; pct=0; rua=mailto:a@pct.example"\n' \
        'pct.example. TXT "v=spf1 -all"\n'
    conf = config(None, "dmarc.discovery = psl\nreport.envelope_to = yes\n")
    with harness.RedisServer() as r, harness.Daemon(
            workers=1, config=conf.replace("None", r.address, 1), zone=zone,
            plugins_dir=plugins) as d:
        for i in range(6):
            scan(d, ("pct.example", BAD_IP, []), 400 + i)
        day = utc_day()
        wait_total(r, day, 6)
        rows = rcmd(r, "HGETALL", "as:{pct.example}rr:%s" % day)
        T.eq("pct=0: one row of 6, reject lowered to quarantine, sampled_out, envelope_to",
             rows, ["1\t%s\tquarantine\tfail\tfail\tsampled_out=pct%%3D0\tpct.example\tpct.example\t"
                    "receiver.test\tpct.example;mfrom;fail\t" % BAD_IP, "6"])
        with tempfile.TemporaryDirectory(prefix="authscan-report-psl-") as tmp:
            out = os.path.join(tmp, "out")
            os.mkdir(out)
            p = report_cmd(r, plugins, tmp, ["aggregate", "--date", utc_day("%Y-%m-%d"),
                                            "--out", out], zone=zone)
            T.eq("psl: report exit status (%s)" % p.stderr, p.returncode, 0)
            files = os.listdir(out)
            T.eq("psl: one file", len(files), 1)
            for name in files:
                path = os.path.join(out, name)
                plain = path[:-3]
                with gzip.open(path) as f, open(plain, "wb") as g:
                    data = f.read()
                    g.write(data)
                T.check("auto format for psl: RFC 7489 (no namespace)",
                        b"<feedback>" in data and b"dmarc-2.0" not in data, data[:200])
                rc, err = xmllint(plain, SCHEMAS["rfc7489"])
                T.eq("psl: valid RFC 7489 (%s)" % err[-300:], rc, 0)
                T.check("psl: sampled_out, pct 0, envelope_to in the XML",
                        b"<type>sampled_out</type>" in data and b"<pct>0</pct>" in data and
                        b"<envelope_to>receiver.test</envelope_to>" in data, data[-1200:])


def test_disabled(plugins):
    with harness.RedisServer() as r, harness.Daemon(
            workers=1, config="redis.servers = %s\n" % r.address, zone=ZONE,
            plugins_dir=plugins) as d:
        for i in range(5):
            scan(d, KINDS[i], i)
        time.sleep(1.0)
        T.eq("report.enabled = no: keys", rcmd(r, "KEYS", "*"), [])


def test_config_errors(plugins):
    """Bad report.* values are refused with their origin; usage errors say why."""
    with tempfile.TemporaryDirectory(prefix="authscan-report-cfg-") as tmp:
        conf = os.path.join(tmp, "bad.conf")
        cases = [
            ("report.enabled = yes\n", "bad.conf:1: report.enabled = yes: DMARC report "
             "counters need redis.servers"),
            ("redis.servers = 127.0.0.1:1\nreport.format = xml\n",
             "bad.conf:2: report.format = xml: expected auto, rfc7489 or dmarcbis"),
            ("redis.servers = 127.0.0.1:1\nreport.smtp = mail.example:25\n",
             "bad.conf:2: report.smtp = mail.example:25: expected smtp://"),
            ("redis.servers = 127.0.0.1:1\nreport.failure = yes\n",
             "bad.conf:2: report.failure = yes: failure reports need report.enabled = yes"),
            ("redis.servers = 127.0.0.1:1\nreport.enabled = yes\nreport.ttl = 1h\n",
             "bad.conf:3: report.ttl = 1h: expected 1d to 366d"),
        ]
        for text, want in cases:
            with open(conf, "w") as f:
                f.write(text)
            p = subprocess.run([harness.AUTHSCAN, "symbols", "-c", conf, "--plugins-dir", plugins],
                               capture_output=True, text=True, timeout=60)
            T.check("config %r: refused with %r" % (text, want),
                    p.returncode != 0 and want in p.stderr, p.stderr)
        for args, want in [(["aggregate"], "give --out DIR, --send or both"),
                           (["aggregate", "--out", tmp, "--date", "2026-02-30"], "--date"),
                           (["aggregate", "--send", "--format", "json"], "--format"),
                           (["failure"], "report failure needs --send"),
                           (["weekly"], "usage")]:
            p = subprocess.run([harness.AUTHSCAN, "report"] + args, capture_output=True,
                               text=True, timeout=60)
            T.check("report %s: exit 2, says %r" % (" ".join(args), want),
                    p.returncode == 2 and want in p.stderr, (p.returncode, p.stderr))


def plugins_dir(tmp):
    d = H.fixture_dir(tmp)
    if not os.path.exists(os.path.join(d, "report.so")):
        H._link(H.PLUGINS, d, "report.so")
    return d


def main():
    global LUA_DIR
    with tempfile.TemporaryDirectory(prefix="authscan-report-") as tmp:
        plugins = plugins_dir(tmp)
        LUA_DIR = os.path.join(tmp, "lua")
        os.mkdir(LUA_DIR)
        with open(os.path.join(LUA_DIR, "site.lua"), "w") as f:
            f.write(LUA_RULE)
        T.run(test_schema_copies)
        T.run(test_counters, plugins)
        T.run(test_send, plugins)
        T.run(test_failure, plugins)
        T.run(test_psl_auto, plugins)
        T.run(test_disabled, plugins)
        T.run(test_config_errors, plugins)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
