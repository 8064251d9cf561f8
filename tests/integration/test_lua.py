#!/usr/bin/python3
"""Lua rules (issue 14) through the real daemon, with real Lua files:

 - a site file softens the DMARC plugin's p=reject to quarantine for a
   partner domain, and escalates a look-alike domain to reject; the reply
   names the rule's module and carries its message;
 - rspamd's set_pre_result semantics (force_actions-style postfilters,
   `least`, priorities) give the action rspamd's documentation and its
   rspamd_check_action_metric() give, table-driven;
 - a Lua symbol's score is overridden by a rules file like any other, and
   shows in rspamc's output;
 - an infinite loop (also one hidden behind pcall), error(), a memory
   bomb: the rule is stopped, logged with file:line, its symbol skipped,
   the scan answered; /stat counts them; a rule that overruns
   lua.max_overruns times is disabled;
 - the sandbox: no io, os.execute, loadfile, dofile, bytecode, require of
   paths outside the library folders;
 - async DNS from a rule (rspamd_dns.request yields, the loop goes on);
 - the shipped example lua/examples/mailing_list_quarantine.lua;
 - a syntax error: --check-config names file:line; on SIGHUP the reload is
   refused and the previous rules keep working.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("lua")
RSPAMC = shutil.which("rspamc") or "/usr/bin/rspamc"

ZONE = """$ORIGIN .
$TTL 300
partner.example. TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.partner.example. TXT "v=DMARC1; p=reject"
example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.com. TXT "v=DMARC1; p=reject"
examp1e.com. TXT "v=spf1 ip4:198.51.100.0/24 -all"
lua-test.example. TXT "hello from dns"
; authscan: timeout slow.example.
"""

SITE = r"""
local rspamd_logger = require "rspamd_logger"
local lua_util = require "lua_util"

local partners = lua_util.list_to_hash({'partner.example'})

local function from_domain(task)
  local from = task:get_from('mime')
  return from and from[1] and from[1].domain or nil
end

-- reject -> quarantine for a partner whose forwarding breaks SPF and DKIM
rspamd_config:register_symbol{
  name = 'SITE_PARTNER_SOFTENED',
  type = 'postfilter',
  score = 0.0,
  group = 'site',
  description = 'DMARC reject softened for a partner domain',
  callback = function(task)
    local dmarc = task:get_dmarc()
    local dom = dmarc and dmarc.author_domain
    if dom and partners[dom] and dmarc.result == 'fail' and dmarc.policy == 'reject'
        and task:get_metric_action() == 'reject' then
      task:set_pre_result('quarantine', 'partner ' .. dom .. ': reject softened', 'site_partner')
      local spf = task:get_spf()
      task:insert_result('SITE_PARTNER_SOFTENED', 1.0, dom, 'p=' .. dmarc.p,
                         'spf=' .. spf.result, 'aligned=' .. tostring(dmarc.spf_aligned),
                         'dkim=' .. task:get_dkim().result)
      rspamd_logger.infox(task, 'softened reject for %s', dom)
    end
  end,
}

-- a look-alike of example.com passes its own SPF: reject it anyway
rspamd_config.SITE_LOOKALIKE = {
  score = 1.5,
  description = 'From domain looks like example.com',
  callback = function(task)
    local dom = from_domain(task)
    if dom and dom ~= 'example.com' and dom:gsub('1', 'l') == 'example.com' then
      return true, dom
    end
    return false
  end,
}

rspamd_config:register_symbol{
  name = 'SITE_LOOKALIKE_REJECT',
  type = 'postfilter',
  callback = function(task)
    if task:has_symbol('SITE_LOOKALIKE') then
      task:set_pre_result{action = 'reject', message = 'look-alike of example.com',
                          module = 'site_lookalike'}
      return true
    end
  end,
}

local function npairs(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- the structured results (nil when the plugins skip an authenticated user)
local function structured(task)
  local dm = task:get_dmarc()
  if not dm then return {'dmarc=nil'} end
  return {
    'dmarc_pairs=' .. tostring(npairs(dm) >= 15),
    'dmarc_ro=' .. tostring(not pcall(function() dm.result = 'fail' end)),
    'dmarc_same=' .. tostring(task:get_dmarc() == dm),
    'dmarc=' .. dm.result .. '/' .. dm.policy .. '/' .. tostring(dm.spf_aligned),
    'dkim_sigs=' .. #task:get_dkim().signatures,
    'spf_mailfrom=' .. task:get_spf().mailfrom.result,
  }
end

-- reading API: everything a rule sees, in one symbol's options
rspamd_config:register_symbol{
  name = 'SITE_SEEN',
  callback = function(task)
    if not task:get_header('X-Lua-Probe') then return false end
    local ip = task:get_ip()
    local rcpt = task:get_recipients('smtp')
    local mrcpt = task:get_recipients('mime')
    local full = task:get_header_full('X-Lua-Probe')
    local syms = task:get_symbols()
    local sc = task:get_metric_score()
    return true, 'ip=' .. tostring(ip:is_valid() and ip:to_string()),
      'v' .. ip:get_version(),
      'helo=' .. tostring(task:get_helo()),
      'hostname=' .. tostring(task:get_hostname()),
      'user=' .. tostring(task:get_user()),
      'qid=' .. tostring(task:get_queue_id()),
      'smtp_from=' .. task:get_from('smtp')[1].addr,
      'mime_from=' .. task:get_from('mime')[1].addr,
      'rcpt=' .. rcpt[1].addr .. '/' .. rcpt[1].domain,
      'mime_rcpt=' .. mrcpt[1].addr,
      'probe=' .. task:get_header('X-Lua-Probe') .. '/' .. #full .. '/' .. full[2].value,
      'has_first=' .. tostring(task:has_symbol(syms[1])),
      'has_bogus=' .. tostring(task:has_symbol('NO_SUCH_SYMBOL')),
      'get_symbol=' .. tostring(task:get_symbol(syms[1])[1].name == syms[1]),
      'nsyms_gt0=' .. tostring(#syms > 0),
      'required=' .. sc[2],
      structured(task)
  end,
}

-- headers for the MTA
rspamd_config:register_symbol{
  name = 'SITE_HEADERS',
  type = 'postfilter',
  callback = function(task)
    if not task:get_header('X-Lua-Probe') then return end
    task:set_milter_reply({add_headers = {['X-Site'] = 'seen'},
                           remove_headers = {['X-Lua-Probe'] = 0}})
  end,
}
"""

HOSTILE = r"""
rspamd_config.LUA_LOOP = function(task)
  if not task:get_header('X-Loop') then return false end
  while true do end
end

rspamd_config.LUA_PCALL_LOOP = function(task)
  if not task:get_header('X-Pcall-Loop') then return false end
  while true do pcall(function() while true do end end) end
end

rspamd_config.LUA_ERROR = function(task)
  if not task:get_header('X-Error') then return false end
  error('site rule broke')
end

rspamd_config.LUA_MEMORY = function(task)
  if not task:get_header('X-Memory') then return false end
  local t = {}
  for i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end
end

rspamd_config.LUA_PATTERN = function(task)
  local v = task:get_header_raw('X-Pattern')
  if not v then return false end
  return true, (v:gsub('%s+$', ''))
end

rspamd_config.LUA_STILL_RUNS = function(task)
  return true
end

rspamd_config.LUA_SANDBOX = function(task)
  if not task:get_header('X-Sandbox') then return false end
  local out = {}
  out[#out + 1] = 'io=' .. type(io)
  out[#out + 1] = 'os.execute=' .. type(os.execute)
  out[#out + 1] = 'os.time=' .. type(os.time)
  out[#out + 1] = 'loadfile=' .. type(loadfile)
  out[#out + 1] = 'dofile=' .. type(dofile)
  out[#out + 1] = 'debug=' .. type(debug)
  out[#out + 1] = 'string.dump=' .. type(string.dump)
  out[#out + 1] = 'package=' .. type(package)
  local ok, err = pcall(require, '..etc.passwd')
  out[#out + 1] = 'require_path=' .. tostring(ok)
  ok = pcall(require, 'os')
  out[#out + 1] = 'require_os=' .. tostring(ok)
  local f, lerr = load('\27Lua\84\0')
  out[#out + 1] = 'bytecode=' .. tostring(f == nil and lerr:find('binary') ~= nil)
  local g = load('return 1 + 1')
  out[#out + 1] = 'text_load=' .. tostring(g and g())
  return true, out
end

rspamd_config.LUA_SLOW_DNS = function(task)
  if not task:get_header('X-Slow-Dns') then return false end
  local ok = require('rspamd_dns').request({task = task, type = 'txt', name = 'slow.example'})
  return true
end

-- binding corners, each one option
rspamd_config.LUA_CORNERS = function(task)
  if not task:get_header('X-Corners') then return false end
  local out = {}
  local function add(k, v) out[#out + 1] = k .. '=' .. tostring(v) end
  local f = task:get_from('smtp')
  add('null_sender', f and f[1].addr == '' and f[1].domain == '')
  add('no_header_full', task:get_header_full('X-None') == nil)
  add('no_header', task:get_header('X-None') == nil)
  add('enforce_form', task:insert_result(true, 'LUA_STILL_RUNS', 1.0, 'enforced'))
  add('unknown_symbol', task:insert_result('NO_SUCH_SYMBOL', 1.0))
  local ok, err = pcall(task.set_milter_reply, task, {bogus = {}})
  add('milter_bogus', not ok and err:find("'bogus' is not supported") ~= nil)
  ok, err = pcall(task.set_pre_result, task, 'bogus')
  add('bad_action', not ok and err:find('unknown action bogus') ~= nil)
  ok, err = pcall(task.set_pre_result, task, {action = 'reject', result = 'x'})
  add('named_result', not ok and err:find('named results') ~= nil)
  add('get_all_opt', rspamd_config:get_all_opt('dmarc') == nil)
  add('no_ip', task:get_ip():is_valid())
  add('ip_tostring', tostring(task:get_ip()))
  add('task_tostring', tostring(task):find('^task<') ~= nil)
  add('no_rcpt', task:get_recipients('smtp') == nil)
  add('mime_rcpt', #task:get_recipients('mime'))
  add('any_from', task:get_from()[1].addr == '')
  local names, scores = task:get_symbols()
  add('symbols_pair', #names == #scores)
  add('subject', task:get_subject())
  add('message_id', task:get_message_id())
  add('has_from_mime', task:has_from('mime'))
  add('has_rcpt_smtp', task:has_recipients('smtp'))
  add('principal', task:get_principal_recipient())
  local ok2, err2 = pcall(task.get_from, task, 'bogus')
  add('bad_kind', not ok2 and err2:find('invalid option') ~= nil)
  return true, out
end

-- objects kept from an earlier scan err instead of reading freed memory
rspamd_config.LUA_KEPT = function(task)
  if not task:get_header('X-Kept') then return false end
  local out = {}
  if KEPT_TASK then
    local ok, err = pcall(function() return KEPT_TASK:get_header('From') end)
    out[#out + 1] = 'task=' .. tostring(not ok and err:find('after its scan ended') ~= nil)
    ok, err = pcall(function() return KEPT_DMARC.result end)
    out[#out + 1] = 'dmarc=' .. tostring(not ok and err:find('after its scan ended') ~= nil)
  end
  KEPT_TASK, KEPT_DMARC = task, task:get_dmarc()
  return true, out
end

rspamd_config:register_symbol{
  name = 'LUA_DNS',
  callback = function(task)
    if not task:get_header('X-Dns') then return false end
    local rspamd_dns = require 'rspamd_dns'
    local ok, res = rspamd_dns.request({task = task, type = 'txt', name = 'lua-test.example'})
    local ok2, res2 = rspamd_dns.request({task = task, type = 'a', name = 'nothing.example'})
    return true, 'ok=' .. tostring(ok), 'txt=' .. tostring(ok and res[1]),
      'ok2=' .. tostring(ok2), 'err2=' .. tostring(res2)
  end,
}
"""

CONFIG = """workers = 1
settings.nolua.plugins_disabled = lua
[lua]
dir = %s
max_memory = 32M
max_instructions = 200000
max_overruns = 2
[symbols.SITE_LOOKALIKE]
score = 4.5
"""

PARTNER_MSG = (b"From: Paul <paul@partner.example>\r\nTo: bob@example.org\r\n"
               b"Subject: forwarded\r\nMessage-ID: <p1@partner.example>\r\n\r\nhi\r\n")
LOOKALIKE_MSG = (b"From: CEO <ceo@examp1e.com>\r\nTo: bob@example.org\r\n"
                 b"Subject: wire\r\nMessage-ID: <l1@examp1e.com>\r\n\r\npay\r\n")
PROBE_MSG = (b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\n"
             b"X-Lua-Probe: one\r\nX-Lua-Probe:  two\r\n  folded\r\n"
             b"Subject: probe\r\nMessage-ID: <probe@example.com>\r\n\r\nhi\r\n")


def msg_with(header):
    return (b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n" + header +
            b": 1\r\nSubject: t\r\nMessage-ID: <t@example.com>\r\n\r\nhi\r\n")


def line_of(text, snippet):
    """1-based line of the first line of text containing snippet."""
    return next(i for i, l in enumerate(text.split("\n"), 1) if snippet in l)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_site_rules():
    d = harness.Daemon(workers=1, zone=ZONE)
    luadir = d.path("lua")
    os.mkdir(luadir)
    write(os.path.join(luadir, "50-site.lua"), SITE)
    d.config_text = CONFIG % luadir
    with d:
        # the DMARC plugin alone: reject
        st, r = d.checkv2(PARTNER_MSG, headers={"IP": "198.51.100.9",
                                                "From": "paul@partner.example"})
        T.eq("partner: DMARC fails with p=reject", "DMARC_POLICY_REJECT" in r["symbols"], True)
        T.eq("partner: softened to quarantine by the site rule", r["action"], "quarantine")
        T.eq("partner: the reply names the rule's module", r.get("passthrough_module"),
             "site_partner")
        T.eq("partner: the reply carries the rule's reason",
             r["messages"].get("smtp_message"), "partner partner.example: reject softened")
        T.eq("partner: the rule's symbol, from get_dmarc/get_spf/get_dkim",
             r["symbols"].get("SITE_PARTNER_SOFTENED", {}).get("options"),
             ["partner.example", "p=reject", "spf=fail", "aligned=false", "dkim=none"])
        T.check("partner: the scan's log line names who forced the action",
                re.search(r'action="quarantine" forced_by=site_partner ', d.log()),
                d.log()[-2000:])
        T.check("partner: logged with the scan id",
                re.search(r"<[0-9a-f]{12}> site_partner set the action to quarantine", d.log()),
                d.log()[-2000:])

        # a non-partner p=reject domain keeps reject
        st, r = d.checkv2(PARTNER_MSG.replace(b"partner.example", b"example.com"),
                          headers={"IP": "198.51.100.9", "From": "paul@example.com"})
        T.eq("example.com: still reject", r["action"], "reject")
        T.check("example.com: forced by the DMARC plugin",
                r.get("passthrough_module") == "dmarc", r)

        # escalation: SPF passes for the look-alike, the site rejects it
        st, r = d.checkv2(LOOKALIKE_MSG, headers={"IP": "198.51.100.9",
                                                  "From": "ceo@examp1e.com"})
        T.eq("look-alike: rejected by the site rule", r["action"], "reject")
        T.eq("look-alike: module", r.get("passthrough_module"), "site_lookalike")
        T.eq("look-alike: symbol score from the rules file (not the Lua default 1.5)",
             r["symbols"].get("SITE_LOOKALIKE", {}).get("score"), 4.5)
        T.eq("look-alike: callback return value gave the option",
             r["symbols"].get("SITE_LOOKALIKE", {}).get("options"), ["examp1e.com"])
        T.check("look-alike: description from Lua",
                r["symbols"].get("SITE_LOOKALIKE", {}).get("description") ==
                "From domain looks like example.com", r)

        # a Settings-ID profile switches the Lua rules off like a plugin
        st, r = d.checkv2(LOOKALIKE_MSG, headers={"IP": "198.51.100.9", "Settings-ID": "nolua",
                                                  "From": "ceo@examp1e.com"})
        T.check("settings: plugins_disabled = lua skips the rules",
                "SITE_LOOKALIKE" not in r["symbols"] and r["action"] != "reject", r)

        # the reading API
        probe_hdrs = {"IP": "192.0.2.7", "Helo": "mx.example.com", "Hostname": "mx.example.com",
                      "Queue-Id": "Q123", "From": "alice@example.com", "Rcpt": "Bob@Example.ORG"}
        st, r = d.checkv2(PROBE_MSG, headers=dict(probe_hdrs, User="alice"))
        opts = r["symbols"].get("SITE_SEEN", {}).get("options", [])
        T.check("reading API: user=alice", "user=alice" in opts, opts)
        st, r = d.checkv2(PROBE_MSG, headers=probe_hdrs)
        opts = r["symbols"].get("SITE_SEEN", {}).get("options", [])
        for want in ("ip=192.0.2.7", "v4", "helo=mx.example.com", "hostname=mx.example.com",
                     "user=nil", "qid=Q123", "smtp_from=alice@example.com",
                     "mime_from=alice@example.com", "rcpt=Bob@Example.ORG/example.org",
                     "mime_rcpt=bob@example.org", "probe=one/2/two  folded", "has_first=true",
                     "has_bogus=false", "get_symbol=true",
                     "nsyms_gt0=true", "required=15.0", "dmarc_pairs=true", "dmarc_ro=true",
                     "dmarc_same=true", "dmarc=pass/reject/true", "dkim_sigs=0",
                     "spf_mailfrom=pass"):
            T.check("reading API: %s" % want, want in opts, opts)
        milter = r.get("milter", {})
        T.eq("set_milter_reply: header added", milter.get("add_headers", {}).get("X-Site", {})
             .get("value"), "seen")
        T.check("set_milter_reply: header removed",
                "X-Lua-Probe" in milter.get("remove_headers", {}), milter)

        # the real rspamc shows a Lua symbol like any other
        path = d.path("lookalike.eml")
        with open(path, "wb") as f:
            f.write(LOOKALIKE_MSG)
        p = subprocess.run([RSPAMC, "-h", "127.0.0.1:%d" % d.port, "-i", "198.51.100.9",
                            "-F", "ceo@examp1e.com", "symbols", path], capture_output=True,
                           timeout=60)
        out = p.stdout.decode()
        T.check("rspamc: Lua symbol with its score", re.search(
            r"Symbol: SITE_LOOKALIKE \(4\.50\)\[examp1e\.com\]", out), out)
        T.check("rspamc: action reject", re.search(r"^Action: reject$", out, re.M), out)

        st = d.stat()
        T.eq("/stat: lua rules", st.get("lua", {}).get("rules"), 5)
        T.eq("/stat: no errors", st.get("lua", {}).get("errors"), 0)


# rspamd semantics of set_pre_result over the DMARC plugin's force (rspamd's
# dmarc module: set_pre_result(action, msg, 'dmarc', nil, nil, 'least') at the
# default priority 1), for a p=reject failure scoring below every threshold.
# Expected actions follow rspamd_check_action_metric() (src/libmime/scan_result.c)
# and the force_actions documentation: the highest-priority result without
# `least` wins outright; else the first `least` in priority order is a floor.
PRE_RESULT_CASES = [
    # (name, rule body, want action, want module)
    ("force_actions-style plain result beats a least result",
     "task:set_pre_result{action = 'quarantine', module = 'force_actions', flags = ''}",
     "quarantine", "force_actions"),
    ("plain result at a lower priority still beats least",
     "task:set_pre_result('no action', 'whitelisted', 'force_actions', nil, 0)",
     "no action", "force_actions"),
    ("least at the same priority: the first one (dmarc) wins",
     "task:set_pre_result('quarantine', 'soft', 'site', nil, nil, 'least')",
     "reject", "dmarc"),
    ("least at a higher priority is the floor",
     "task:set_pre_result('quarantine', 'soft', 'site', nil, 2, 'least')",
     "quarantine", "site"),
    ("least with the table form and flags string",
     "task:set_pre_result{action = 'add header', module = 'site', priority = 3, "
     "flags = 'least,process_all'}",
     "add header", "site"),
    ("plain soft reject with a target score",
     "task:set_pre_result('soft reject', 'try later', 'site', 99)",
     "soft reject", "site"),
    ("accept is no action",
     "task:set_pre_result('accept', 'ok', 'site')",
     "no action", "site"),
]


def test_pre_result_semantics():
    d = harness.Daemon(workers=1, zone=ZONE)
    luadir = d.path("lua")
    os.mkdir(luadir)
    body = ["local cases = {}"]
    for i, (name, code, _, _) in enumerate(PRE_RESULT_CASES):
        body.append("cases['%d'] = function(task) %s end" % (i, code))
    body.append("""
rspamd_config:register_symbol{
  name = 'CASE_RAN',
  type = 'postfilter',
  callback = function(task)
    local c = cases[task:get_header('X-Case') or '']
    if c then c(task) return true end
  end,
}""")
    write(os.path.join(luadir, "cases.lua"), "\n".join(body))
    d.config_text = "workers = 1\nlua.dir = %s\n" % luadir
    with d:
        for i, (name, _, want, module) in enumerate(PRE_RESULT_CASES):
            msg = PARTNER_MSG.replace(b"Subject:", b"X-Case: %d\r\nSubject:" % i)
            st, r = d.checkv2(msg, headers={"IP": "198.51.100.9",
                                             "From": "paul@partner.example"})
            T.eq("%s: action" % name, r["action"], want)
            T.eq("%s: module" % name, r.get("passthrough_module"), module)
        msg = PARTNER_MSG.replace(b"Subject:", b"X-Case: 5\r\nSubject:")
        st, r = d.checkv2(msg, headers={"IP": "198.51.100.9", "From": "paul@partner.example"})
        T.eq("a target score becomes the score", r["score"], 99)


def test_hostile_rules():
    d = harness.Daemon(workers=1, zone=ZONE)
    luadir = d.path("lua")
    os.mkdir(luadir)
    write(os.path.join(luadir, "10-hostile.lua"), HOSTILE)
    d.config_text = ("limits.scan_timeout = 1s\ndns.timeout = 5s\n" +
                     CONFIG.split("[symbols.")[0] % luadir)
    src = os.path.join(luadir, "10-hostile.lua")
    with d:
        for hdr, sym, what, snippet in ((b"X-Loop", "LUA_LOOP", "stopped", "while true do end"),
                                        (b"X-Pcall-Loop", "LUA_PCALL_LOOP", "stopped",
                                         "while true do pcall"),
                                        (b"X-Error", "LUA_ERROR", "failed", "error('site"),
                                        (b"X-Memory", "LUA_MEMORY", "out of memory (lua.max_memory)",
                                         "for i = 1, 1e9"),
                                        # quadratic backtracking over 200 KB of blanks
                                        # the message supplies
                                        (b"X-Pattern: x" + b" " * 200000 + b"y\r\nX-Pattern",
                                         "LUA_PATTERN", "stopped", "v:gsub")):
            line = line_of(HOSTILE, snippet)
            mark = d.log_mark()
            st, r = d.checkv2(msg_with(hdr), timeout=60)
            T.eq("%s: the scan answers" % sym, st, 200)
            T.check("%s: its symbol is skipped" % sym, sym not in r["symbols"], r["symbols"])
            T.check("%s: later rules still run" % sym, "LUA_STILL_RUNS" in r["symbols"],
                    r["symbols"])
            m = d.wait_log(r"lua: rule %s \(\S+\) %s: (\S+):(\d+): " % (sym, re.escape(what)),
                           since=mark)
            T.eq("%s: logged with file:line" % sym, (m.group(1), int(m.group(2))),
                 (src, line))
        st = d.stat()["lua"]
        T.eq("/stat: budget overruns", st["budget_overruns"], 3)
        T.eq("/stat: memory errors", st["memory_errors"], 1)
        T.eq("/stat: errors (all five)", st["errors"], 5)
        T.check("/stat: memory use back under the cap", st["memory"] < st["max_memory"], st)

        # a second overrun of LUA_LOOP disables it (max_overruns = 2)
        mark = d.log_mark()
        st, r = d.checkv2(msg_with(b"X-Loop"))
        d.wait_log(r"rule LUA_LOOP .* disabled until the next reload", since=mark)
        T.eq("/stat: one rule disabled", d.stat()["lua"]["disabled_rules"], 1)
        mark = d.log_mark()
        st, r = d.checkv2(msg_with(b"X-Loop"))
        T.check("disabled rule no longer runs", "rule LUA_LOOP" not in d.log()[mark:],
                d.log()[mark:])

        st, r = d.checkv2(msg_with(b"X-Sandbox"))
        opts = r["symbols"].get("LUA_SANDBOX", {}).get("options", [])
        for want in ("io=nil", "os.execute=nil", "os.time=function", "loadfile=nil",
                     "dofile=nil", "debug=nil", "string.dump=nil", "package=nil",
                     "require_path=false", "require_os=true", "bytecode=true", "text_load=2"):
            T.check("sandbox: %s" % want, want in opts, opts)

        st, r = d.checkv2(msg_with(b"X-Corners"), headers={"From": "<>"})
        opts = r["symbols"].get("LUA_CORNERS", {}).get("options", [])
        for want in ("null_sender=true", "no_header_full=true", "no_header=true",
                     "enforce_form=true", "unknown_symbol=false", "milter_bogus=true",
                     "bad_action=true", "named_result=true", "get_all_opt=true", "no_ip=false",
                     "ip_tostring=(no ip)", "task_tostring=true", "no_rcpt=true", "mime_rcpt=1",
                     "any_from=true", "symbols_pair=true", "bad_kind=true", "subject=t",
                     "message_id=t@example.com", "has_from_mime=true", "has_rcpt_smtp=false",
                     "principal=bob@example.org"):
            T.check("binding corner: %s" % want, want in opts, opts)
        T.check("binding corner: the enforce form added its option",
                "enforced" in r["symbols"].get("LUA_STILL_RUNS", {}).get("options", []),
                r["symbols"])

        d.checkv2(msg_with(b"X-Kept"))
        st, r = d.checkv2(msg_with(b"X-Kept"))
        T.eq("a task kept past its scan errs", r["symbols"].get("LUA_KEPT", {}).get("options"),
             ["task=true", "dmarc=true"])

        st, r = d.checkv2(msg_with(b"X-Dns"))
        opts = r["symbols"].get("LUA_DNS", {}).get("options", [])
        for want in ("ok=true", "txt=hello from dns", "ok2=false", "err2=nxdomain"):
            T.check("async DNS: %s" % want, want in opts, opts)
        # the scan deadline passes while a rule waits for DNS
        mark = d.log_mark()
        st, r = d.checkv2(msg_with(b"X-Slow-Dns"), timeout=60)
        T.eq("deadline: the scan answers", st, 200)
        T.check("deadline: AUTHSCAN_TIMEOUT names the lua plugin",
                "lua" in r["symbols"].get("AUTHSCAN_TIMEOUT", {}).get("options", []),
                r["symbols"])
        T.check("deadline: the waiting rule's symbol is skipped",
                "LUA_SLOW_DNS" not in r["symbols"], r["symbols"])
        d.wait_log(r"lua: rule LUA_SLOW_DNS \(\S+\) did not finish", since=mark)
        T.check("no sanitizer report", "Sanitizer" not in d.log() and
                "runtime error" not in d.log(), d.log()[-2000:])


def test_example_mailing_list():
    """lua/examples/mailing_list_quarantine.lua, as shipped."""
    d = harness.Daemon(workers=1, zone=ZONE)
    luadir = d.path("lua")
    os.mkdir(luadir)
    shutil.copy(os.path.join(harness.SRC, "lua", "examples", "mailing_list_quarantine.lua"),
                luadir)
    d.config_text = "workers = 1\nlua.dir = %s\n" % luadir
    list_msg = (b"From: Alice <alice@example.com>\r\nTo: dev@lists.example.org\r\n"
                b"List-Id: Developers <dev.lists.example.org>\r\n"
                b"Subject: [dev] patch\r\nMessage-ID: <m1@example.com>\r\n\r\nhi\r\n")
    hdrs = {"IP": "198.51.100.9", "From": "dev-bounces@lists.example.org"}
    with d:
        st, r = d.checkv2(list_msg, headers=hdrs)
        T.eq("example: DMARC fails for p=reject example.com",
             "DMARC_POLICY_REJECT" in r["symbols"], True)
        T.eq("example: trusted list softened to quarantine", r["action"], "quarantine")
        T.eq("example: module", r.get("passthrough_module"), "site_mailing_list")
        T.eq("example: symbol with the list id",
             r["symbols"].get("SITE_LIST_QUARANTINE", {}).get("options"),
             ["dev.lists.example.org"])
        st, r = d.checkv2(list_msg.replace(b"lists.example.org>", b"lists.example.net>"),
                          headers=hdrs)
        T.eq("example: an unknown list stays rejected", r["action"], "reject")
        st, r = d.checkv2(list_msg.replace(b"List-Id: Developers <dev.lists.example.org>\r\n",
                                           b""), headers=hdrs)
        T.eq("example: no List-Id stays rejected", r["action"], "reject")


def test_broken_file_and_reload():
    d = harness.Daemon(workers=1, zone=ZONE)
    luadir = d.path("lua")
    os.mkdir(luadir)
    write(os.path.join(luadir, "50-site.lua"), SITE)
    d.config_text = CONFIG % luadir
    with d:
        st, r = d.checkv2(LOOKALIKE_MSG, headers={"IP": "198.51.100.9"})
        T.eq("before the reload: site rule", r["action"], "reject")
        broken = os.path.join(luadir, "60-broken.lua")
        write(broken, "-- a site file\nrspamd_config.X = {\n  callback = function(task)\n"
                      "    return true +\n  end\n}\n")
        p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", d.config_path,
                            "--plugins-dir", harness.PLUGINS], capture_output=True, timeout=60)
        e = p.stderr.decode()
        T.check("--check-config: fails naming file:line", p.returncode != 0 and
                ("%s:5:" % broken) in e, (p.returncode, e))
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"reload aborted, keeping the running configuration: (.*)", since=mark)
        T.check("reload: refused with file:line", ("%s:5:" % broken) in m.group(1), m.group(0))
        st, r = d.checkv2(LOOKALIKE_MSG, headers={"IP": "198.51.100.9"})
        T.eq("after the refused reload: the previous rules still apply", r["action"], "reject")
        # a runtime error in a file's main chunk is refused the same way
        write(broken, "local x = nil\nx.y = 1\n")
        p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", d.config_path,
                            "--plugins-dir", harness.PLUGINS], capture_output=True, timeout=60)
        e = p.stderr.decode()
        T.check("--check-config: runtime error in a file names file:line",
                p.returncode != 0 and ("%s:2:" % broken) in e, (p.returncode, e))
        # fixed: the reload goes through and the new rule runs
        os.unlink(broken)
        write(os.path.join(luadir, "70-new.lua"),
              "rspamd_config.SITE_NEW = function(task) return true end\n")
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        d.wait_log(r"generation 2 ready", since=mark, timeout=60)
        st, r = d.checkv2(LOOKALIKE_MSG, headers={"IP": "198.51.100.9"})
        T.check("after a good reload: the new rule runs", "SITE_NEW" in r["symbols"],
                r["symbols"])


DEPS_GOOD = """
rspamd_config.SITE_A = function(task) return task:has_symbol('DMARC_POLICY_REJECT') end
rspamd_config:register_symbol{name = 'SITE_B', priority = 5, callback = function() end}
rspamd_config:register_symbol{name = 'SITE_C', type = 'postfilter', callback = function() end}
rspamd_config:register_dependency('SITE_A', 'DMARC_POLICY_REJECT')
rspamd_config:register_dependency('SITE_A', 'SITE_B')
rspamd_config:register_dependency('SITE_C', 'SITE_A')
"""

# (what, file text, line of the bad call, text in the error)
DEPS_BAD = [
    ("dependency runs after", DEPS_GOOD + "rspamd_config:register_dependency('SITE_B', 'SITE_A')\n",
     8, "the dependency runs after the rule"),
    ("unknown dependency", DEPS_GOOD + "rspamd_config:register_dependency('SITE_A', 'NOPE')\n",
     8, "no known symbol"),
    ("not a Lua rule", DEPS_GOOD + "\nrspamd_config:register_dependency('R_SPF_ALLOW', 'SITE_A')\n",
     9, "not a symbol of a Lua rule"),
]


def test_register_dependency():
    with tempfile.TemporaryDirectory(prefix="authscan-lua-") as tmp:
        luadir = os.path.join(tmp, "lua")
        os.mkdir(luadir)
        conf = os.path.join(tmp, "a.conf")
        write(conf, "lua.dir = %s\n" % luadir)
        src = os.path.join(luadir, "deps.lua")

        def check_config():
            p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", conf, "--plugins-dir",
                                harness.PLUGINS], capture_output=True, timeout=60)
            return p.returncode, p.stderr.decode()
        write(src, DEPS_GOOD)
        rc, e = check_config()
        T.eq("register_dependency: rules in order load (%s)" % e.strip()[-300:], rc, 0)
        for what, text, line, want in DEPS_BAD:
            write(src, text)
            rc, e = check_config()
            T.check("register_dependency: %s refused with file:line" % what,
                    rc != 0 and ("%s:%d:" % (src, line)) in e and want in e, (rc, e))


def main():
    T.run(test_site_rules)
    T.run(test_pre_result_semantics)
    T.run(test_hostile_rules)
    T.run(test_example_mailing_list)
    T.run(test_broken_file_and_reload)
    T.run(test_register_dependency)


if __name__ == "__main__":
    main()
    sys.exit(T.finish())
