#!/usr/bin/python3
"""Policy overrides reach the record (issues 14, 15, 20).

When a message is not handled the way its DMARC policy asked, the reason
(RFC 7489 PolicyOverrideType) and its comment must show in every place:
the /checkv2 reply (messages.policy_override), the dmarc= entry of
Authentication-Results (policy.applied-disposition, policy.override-reason
and a comment), the scan's log line (override="...") and the aggregate
report (`authscan report aggregate`: <reason><type>/<comment>, valid
against both schemas), and the daemon-wide counts by type (/stat).  Through the real daemon with every shipped plugin
(real DKIM and ARC verification) and a real redis-server, one case each:

  a. a Lua rule softens p=reject to quarantine for a partner domain
     ("partner relay") -> local_policy naming the rule;
  a2. a Lua rule that reads the ARC chain itself (task:get_arc()) trusts a
     sealer the config does not name -> local_policy naming the sealer;
  b. a trusted ARC sealer (arc.trusted_sealers) -> trusted_forwarder naming
     the sealer;
  c. list traffic whose aligned DKIM signature the list broke ->
     mailing_list (reject lowered to quarantine);
  d. pct=0 in RFC 7489 mode (dmarc.discovery = psl) -> sampled_out;
and a plain DMARC reject, which must carry no override anywhere.
Prints "N passed, N failed"; exits non-zero on failure."""
import gzip
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import dkim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arc_util as A  # noqa: E402
import dkim_util as U  # noqa: E402
import harness  # noqa: E402

T = harness.Tests("override")

BAD_IP = "203.0.113.9"
LIST_IP = "192.0.2.7"
SCHEMAS = {
    "rfc7489": os.path.join(harness.SRC, "tests", "data", "report",
                            "rfc7489-appendix-c.no-namespace.xsd"),
    "dmarcbis": os.path.join(harness.SRC, "tests", "data", "report",
                             "rfc9990-draft32-dmarc-xml-0.2.xsd"),
}
NS = {"rfc7489": "", "dmarcbis": "{urn:ietf:params:xml:ns:dmarc-2.0}"}

LUA_RULE = """
rspamd_config:register_symbol{
  name = 'PARTNER_RELAY', type = 'postfilter', score = 0.0,
  callback = function(task)
    local dmarc = task:get_dmarc()
    if dmarc and dmarc.author_domain == 'partner.example' and dmarc.result == 'fail' then
      task:set_pre_result('quarantine', 'partner relay', 'partner_relay')
      task:insert_result('PARTNER_RELAY', 1.0)
    end
  end,
}

rspamd_config:register_symbol{
  name = 'ARC_SEALER_RULE', type = 'postfilter', score = 0.0,
  callback = function(task)
    local arc, dmarc = task:get_arc(), task:get_dmarc()
    if not (arc and dmarc and arc.result == 'pass' and dmarc.result == 'fail') then return end
    local set = arc.sets[#arc.sets]
    task:insert_result('ARC_SEALER_RULE', 1.0, 'sets=' .. #arc.sets, 'cv=' .. set.cv,
      'seal=' .. set.seal, 'ams=' .. set.ams, 'trusted=' .. tostring(set.trusted),
      'trusted_sealer=' .. tostring(arc.trusted_sealer), 'oldest_pass=' .. arc.oldest_pass,
      'malformed=' .. tostring(arc.malformed), 'trust_configured=' .. tostring(arc.trust_configured),
      'trust_action=' .. arc.trust_action, 'authserv_id=' .. tostring(set.authserv_id))
    if set.seal_domain ~= 'fwd.example.net' or set.trusted then return end
    for _, r in ipairs(set.results) do
      if r.method == 'dkim' and r.result == 'pass' and r.props['header.d'] == dmarc.author_domain then
        task:set_pre_result('quarantine', string.format('vouched by %s i=%d dkim=pass %s',
          set.seal_domain, set.instance, r.props['header.d']), 'arc_sealer')
        return
      end
    end
  end,
}
"""


def records():
    return {
        "auth._domainkey.d1.example": A.key("auth")[1],
        "hop1._domainkey.lists.example.org": A.key("hop1")[1],
        "auth._domainkey.list.example": A.key("auth")[1],
        "auth._domainkey.d2.example": A.key("auth")[1],
        "hop2._domainkey.fwd.example.net": A.key("hop2")[1],
        "_dmarc.d2.example": "v=DMARC1; p=reject; rua=mailto:r@d2.example",
        "fwd.example.net": "v=spf1 ip4:%s -all" % LIST_IP,
        "_dmarc.d1.example": "v=DMARC1; p=reject; rua=mailto:r@d1.example",
        "_dmarc.partner.example": "v=DMARC1; p=reject; rua=mailto:r@partner.example",
        "partner.example": "v=spf1 -all",
        "_dmarc.list.example": "v=DMARC1; p=reject; rua=mailto:r@list.example",
        "list.example": "v=spf1 -all",
        "_dmarc.pct.example": "v=DMARC1; p=reject; pct=0; rua=mailto:r@pct.example",
        "pct.example": "v=spf1 -all",
        "_dmarc.plain.example": "v=DMARC1; p=reject; rua=mailto:r@plain.example",
        "plain.example": "v=spf1 -all",
        "lists.example.org": "v=spf1 ip4:%s -all" % LIST_IP,
    }


def plain_msg(dom, n, extra=b""):
    return (b"From: user@%s\r\nTo: rcpt@receiver.test\r\nSubject: override %d\r\n"
            b"Message-ID: <o%d@test>\r\n%s\r\nhello\r\n" % (dom.encode(), n, n, extra))


def arc_msg():
    """A message of d1.example (p=reject) through a list that breaks its
    signature and seals what it saw (as test_arc_dmarc.py)."""
    sig = dkim.sign(A.BASE, b"auth", b"d1.example", A.key("auth")[0],
                    include_headers=A.SIGN_HEADERS)
    msg = (sig + A.BASE).replace(b"Subject: ARC test", b"Subject: [list] ARC test")
    msg += b"-- \r\nlist footer\r\n"
    return A.seal(msg, b"lists.example.org", b"hop1", b"lists.example.org")


def arc_lua_msg():
    """d2.example (p=reject) through a forwarder the config does not trust
    (fwd.example.net), which breaks the signature and seals what it saw."""
    base = A.BASE.replace(b"d1.example", b"d2.example")
    sig = dkim.sign(base, b"auth", b"d2.example", A.key("auth")[0],
                    include_headers=A.SIGN_HEADERS)
    msg = (sig + base).replace(b"Subject: ARC test", b"Subject: [fwd] ARC test")
    return A.seal(msg, b"fwd.example.net", b"hop2", b"fwd.example.net",
                  results=b"spf=fail smtp.mailfrom=d2.example; dkim=pass header.d=d2.example")


def list_msg():
    """list.example signed it; the list added a footer (DKIM fails, aligned)."""
    base = (b"From: Author <author@list.example>\r\nTo: l@lists.test\r\n"
            b"Subject: list mail\r\nMessage-ID: <list@test>\r\n"
            b"List-Id: <l.lists.test>\r\n\r\nHello list\r\n")
    sig = dkim.sign(base, b"auth", b"list.example", A.key("auth")[0],
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + base + b"-- \r\nfooter\r\n"


# name, message, envelope, want action, want override type, comment regex
CASES = [
    ("lua", lambda: plain_msg("partner.example", 1), (BAD_IP, "b@partner.example"),
     "quarantine", "local_policy", r"partner_relay: partner relay"),
    ("arc", arc_msg, (LIST_IP, "bounce@lists.example.org"),
     "no action", "trusted_forwarder",
     r"arc=pass sealer=lists\.example\.org i=1 recorded (dkim|spf)=pass d1\.example"),
    ("arc_lua", arc_lua_msg, (LIST_IP, "bounce@fwd.example.net"),
     "quarantine", "local_policy", r"arc_sealer: vouched by fwd\.example\.net i=1 dkim=pass d2\.example"),
    ("list", list_msg, (BAD_IP, "b@list.example"),
     "quarantine", "mailing_list", r"List-Id mail, DKIM broken by the list"),
    ("pct", lambda: plain_msg("pct.example", 4), (BAD_IP, "b@pct.example"),
     "quarantine", "sampled_out", r"pct=0"),
]
DOMAIN = {"lua": "partner.example", "arc": "d1.example", "arc_lua": "d2.example", "list": "list.example",
          "pct": "pct.example"}


def config(r, lua_dir):
    return ("redis.servers = %s\nreport.enabled = yes\nlua.dir = %s\n"
            "dmarc.discovery = psl\narc.trusted_sealers = lists.example.org\n"
            "report.org_name = Receiver Test Org\n"
            "report.email = dmarc-reports@receiver.test\nreport.domain = receiver.test\n"
            % (r.address, lua_dir))


def scan(d, msg, ip, mail_from):
    st, reply = d.checkv2(msg, headers={"IP": ip, "From": mail_from, "Helo": "mail.test",
                                        "Rcpt": "rcpt@receiver.test"})
    if st != 200:
        raise AssertionError("scan: got status %d, want 200: %r" % (st, reply))
    return reply


def dmarc_entry(reply):
    ar = A.auth_results(reply)
    m = re.search(r"dmarc=[^;]*", ar)
    return m.group(0) if m else ar


def check_scan(d, name, msg, env, action, otype, comment):
    mark = d.log_mark()
    reply = scan(d, msg, *env)
    T.eq("%s: action" % name, reply.get("action"), action)
    po = reply.get("messages", {}).get("policy_override", "")
    T.check("%s: messages.policy_override names %s and why" % (name, otype),
            re.fullmatch(r"dmarc %s: %s" % (otype, comment), po), "got %r" % po)
    entry = dmarc_entry(reply)
    disp = "none" if action == "no action" else action
    T.check("%s: A-R dmarc entry: applied disposition, reason, comment" % name,
            re.search(r"^dmarc=fail .* policy\.applied-disposition=%s "
                      r"policy\.override-reason=%s \(%s: %s\)$" % (disp, otype, otype, comment),
                      entry), "got %r" % entry)
    if name == "arc_lua":
        # what the rule read through task:get_arc()
        opts = reply.get("symbols", {}).get("ARC_SEALER_RULE", {}).get("options", [])
        T.eq("arc_lua: task:get_arc() fields", opts,
             ["sets=1", "cv=none", "seal=pass", "ams=pass", "trusted=false",
              "trusted_sealer=nil", "oldest_pass=0", "malformed=false", "trust_configured=true",
              "trust_action=deliver", "authserv_id=fwd.example.net"])
    T.check("%s: log line names the override" % name,
            log_line(d, r"action=\"%s\".* override=\"dmarc %s: %s\" " % (action, otype,
                                                                           comment), mark),
            d.log()[mark:][-1500:])


def log_line(d, rx, mark):
    """The scan's log line (written after the reply), or None."""
    try:
        return d.wait_log(rx, timeout=10, since=mark)
    except TimeoutError:
        return None


def check_rspamc(d, tmp):
    """The real rspamc (rspamd's client) prints the override as it prints
    every entry of "messages"."""
    path = os.path.join(tmp, "partner.eml")
    with open(path, "wb") as f:
        f.write(plain_msg("partner.example", 5))
    p = subprocess.run(["rspamc", "-h", "127.0.0.1:%d" % d.port, "-t", "30", "-i", BAD_IP,
                        "-F", "b@partner.example", "symbols", path],
                       capture_output=True, text=True, timeout=60)
    T.check("rspamc shows the override",
            "Message - policy_override: dmarc local_policy: partner_relay: partner relay"
            in p.stdout, p.stdout + p.stderr)


def check_plain(d):
    mark = d.log_mark()
    reply = scan(d, plain_msg("plain.example", 9), BAD_IP, "b@plain.example")
    T.eq("plain reject: action", reply.get("action"), "reject")
    T.eq("plain reject: no policy_override", reply.get("messages", {}).get("policy_override"),
         None)
    entry = dmarc_entry(reply)
    T.check("plain reject: A-R without override properties",
            entry.startswith("dmarc=fail") and "override" not in entry and
            "applied-disposition" not in entry, "got %r" % entry)
    log_line(d, r"action=\"reject\"", mark)
    T.check("plain reject: log line without override", "override=" not in d.log()[mark:],
            d.log()[mark:][-1500:])


def check_counts(d):
    """Daemon-wide counts by type (report plugin counters, /stat): the
    partner was scanned twice (checkv2, rspamc), plus the ARC rule's case."""
    want = {"override_local_policy": 3, "override_trusted_forwarder": 1,
            "override_mailing_list": 1, "override_sampled_out": 1,
            "override_policy_test_mode": 0}

    def got():
        return d.stat().get("plugins", {}).get("report", {})
    try:
        harness.wait_for(lambda: got() == want, 20, what="override counts")
    except TimeoutError:
        pass
    T.eq("/stat plugins.report: overrides by type", got(), want)


def rows(r, dom, day):
    h = r.cmd("HGETALL", "as:{%s}rr:%s" % (dom, day)) or []
    return [f.decode() for f in h[0::2]]


def esc(s):
    """The row encoding of authscan/report.h."""
    return "".join(c if 0x21 <= ord(c) <= 0x7e and c not in "%,;=\t" else "%%%02X" % ord(c)
                   for c in s)


def check_rows(r, day):
    for name, _, _, action, otype, comment in CASES:
        dom = DOMAIN[name]
        try:
            harness.wait_for(lambda: rows(r, dom, day), 20, what="%s rows" % dom)
        except TimeoutError:
            pass
        got = rows(r, dom, day)
        disp = "none" if action == "no action" else action
        ok = len(got) == 1 and re.search(r"^1\t[^\t]*\t%s\tfail\tfail\t%s=%s\t%s\t" % (
            disp, otype, esc_re(comment), re.escape(dom)), got[0])
        T.check("%s: report row: %s, %s with its comment" % (name, disp, otype), ok,
                "got %r" % got)
    try:
        harness.wait_for(lambda: rows(r, "plain.example", day), 20, what="plain rows")
    except TimeoutError:
        pass
    got = rows(r, "plain.example", day)
    T.check("plain reject: report row without reasons",
            len(got) == 1 and "\treject\tfail\tfail\t\tplain.example\t" in got[0], "got %r" % got)


def esc_re(rx):
    """A comment regex as it looks after the row encoding (spaces, '=',
    ',' become %XX; the regexes here use no other escaped bytes)."""
    return rx.replace(" ", "%20").replace("=", "%3D").replace(",", "%2C")


def report(r, tmp, plugins, fmt):
    conf = os.path.join(tmp, "report.conf")
    with open(conf, "w") as f:
        f.write(config(r, os.path.join(tmp, "lua")))
    zpath = os.path.join(tmp, "report.zone")
    with open(zpath, "w") as f:
        f.write(U.zone_text(records()))
    out = os.path.join(tmp, "out-" + fmt)
    os.mkdir(out)
    cmd = shlex.split(os.environ.get("AUTHSCAN_WRAP", "")) + [
        harness.AUTHSCAN, "report", "aggregate", "--date", "today", "--out", out,
        "--format", fmt, "-c", conf, "--plugins-dir", plugins, "--dns-zone", zpath]
    p = subprocess.run(cmd, capture_output=True, timeout=300, encoding="utf-8",
                       errors="backslashreplace")
    T.eq("%s: report aggregate exit status (stderr %s)" % (fmt, p.stderr.strip()[-500:]),
         p.returncode, 0)
    return out


def check_xml(r, tmp, plugins):
    for fmt in ("rfc7489", "dmarcbis"):
        out = report(r, tmp, plugins, fmt)
        files = {}
        for name in os.listdir(out):
            m = re.match(r"^receiver\.test!([a-z0-9.]+)!\d+!\d+!.*\.xml\.gz$", name)
            if m:
                files[m.group(1)] = os.path.join(out, name)
        for name, _, _, action, otype, comment in CASES + [("plain", None, None, "reject",
                                                            None, None)]:
            dom = DOMAIN.get(name, "plain.example")
            path = files.get(dom)
            if not T.check("%s: %s: a report for %s" % (fmt, name, dom), path,
                           sorted(os.listdir(out))):
                continue
            with gzip.open(path) as f:
                data = f.read()
            plain = path[:-3]
            with open(plain, "wb") as f:
                f.write(data)
            p = subprocess.run(["xmllint", "--noout", "--schema", SCHEMAS[fmt], plain],
                               capture_output=True, text=True, timeout=60)
            T.eq("%s: %s: valid against the schema (%s)" % (fmt, name, p.stderr.strip()[-300:]),
                 p.returncode, 0)
            ns = NS[fmt]
            root = ET.fromstring(data)
            reasons = [(x.findtext(ns + "type"), x.findtext(ns + "comment"))
                       for x in root.iter(ns + "reason")]
            if otype is None:
                T.eq("%s: plain reject: no <reason>" % fmt, reasons, [])
                continue
            # DMARCbis has no sampled_out: "other", the type in the comment
            want_type, want_comment = otype, comment
            if fmt == "dmarcbis" and otype == "sampled_out":
                want_type, want_comment = "other", "sampled_out: " + comment
            T.check("%s: %s: <reason><type>%s</type><comment>%s</comment>" % (
                fmt, name, want_type, want_comment),
                len(reasons) == 1 and reasons[0][0] == want_type and
                re.fullmatch(want_comment, reasons[0][1] or ""), "got %r" % reasons)


def test_overrides(tmp):
    lua_dir = os.path.join(tmp, "lua")
    os.mkdir(lua_dir)
    with open(os.path.join(lua_dir, "site.lua"), "w") as f:
        f.write(LUA_RULE)
    zone = U.zone_text(records())
    with harness.RedisServer() as r, harness.Daemon(workers=2, config=config(r, lua_dir),
                                                    zone=zone) as d:
        day = time.strftime("%Y%m%d", time.gmtime())
        for name, make, env, action, otype, comment in CASES:
            check_scan(d, name, make(), env, action, otype, comment)
        check_rspamc(d, tmp)
        check_plain(d)
        check_rows(r, day)
        check_counts(d)
        if time.strftime("%Y%m%d", time.gmtime()) != day:
            harness.log("skip: the UTC day changed during the test: --date today would "
                        "read the new day")
            return
        check_xml(r, tmp, harness.PLUGINS)


def main():
    with tempfile.TemporaryDirectory(prefix="authscan-override-") as tmp:
        T.run(test_overrides, tmp)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
