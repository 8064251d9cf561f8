#!/usr/bin/python3
"""Redis and rspamd's callback-style DNS from Lua rules (issue 14), through
the real daemon, a real private redis-server (harness.RedisServer) and the
harness' DNS zone:

 - a site rule counts per-sender messages (INCR, then EXPIRE from the
   INCR's callback) and adds a symbol from the count across scans; the key
   is under redis.prefix and has its TTL;
 - replies reach Lua as rspamd converts them: HGET of a missing field is
   nil, integers, strings, status, nested arrays; a WRONGTYPE error reply
   reaches the callback as err;
 - the coroutine forms (lua_redis.request without callback,
   connect_sync + add_cmd + exec) yield and return ok, data;
 - fire-and-forget writes from an idempotent rule land;
 - commands whose keys authscan cannot prefix, and keys in the plugins'
   hash-tag space, are refused with an error;
 - rspamd_dns.request{callback=}, task:get_resolver():resolve_txt{} and
   resolver:resolve('a', {}) call back with (resolver, to_resolve, results,
   err);
 - faults: Redis stopped -> the callback gets an error and the scan answers
   at once; Redis paused (CLIENT PAUSE) -> the callback gets a timeout
   within redis.timeout; the scan deadline passes while a Redis call waits
   -> the rule is cut short, the scan answers, nothing leaks (ASan build).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("lua_redis")

ZONE = """$ORIGIN .
$TTL 300
example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"
lua-test.example. TXT "hello from dns"
lua-test.example. A 192.0.2.7
"""

REDIS_TIMEOUT = 1.0

RULES = r"""
local rspamd_redis = require "rspamd_redis"
local lua_redis = require "lua_redis"
local rspamd_logger = require "rspamd_logger"

local redis_params = lua_redis.parse_redis_server('site_counter')

local function sender(task)
  local f = task:get_from('smtp')
  return f and f[1] and f[1].addr or 'unknown'
end

-- the per-sender counter: INCR, then EXPIRE from its callback
rspamd_config:register_symbol{
  name = 'SITE_SENDER_COUNT',
  score = 0.1,
  callback = function(task)
    if not task:get_header('X-Count') then return false end
    local key = 'site:count:' .. sender(task)
    local function expire_cb(err, data)
      if err then task:insert_result('SITE_REDIS_ERR', 1.0, 'expire:' .. err) end
    end
    local function incr_cb(err, data)
      if err then
        task:insert_result('SITE_REDIS_ERR', 1.0, err)
        return
      end
      task:insert_result('SITE_SENDER_COUNT', 1.0, tostring(data), math.type(data))
      if data >= 3 then task:insert_result('SITE_REPEAT_SENDER', 1.0, tostring(data)) end
      lua_redis.redis_make_request(task, redis_params, key, true, expire_cb,
                                   'EXPIRE', {key, '3600'})
    end
    local ok, conn = rspamd_redis.make_request({task = task, cmd = 'INCR', args = {key},
                                                key = key, is_write = true, callback = incr_cb})
    task:insert_result('SITE_REDIS_OK', 1.0, 'ok=' .. tostring(ok), 'conn=' .. tostring(conn))
  end,
}
-- symbols the callbacks insert (virtual symbols are not available)
local function never() return false end
rspamd_config.SITE_REPEAT_SENDER = { score = 1.0, callback = never }
rspamd_config.SITE_REDIS_OK = never
rspamd_config.SITE_REDIS_ERR = never

-- reply shapes, callback form
rspamd_config.SITE_SHAPES = function(task)
  if not task:get_header('X-Shapes') then return false end
  local function add(k, v) task:insert_result('SITE_SHAPES', 1.0, k .. '=' .. tostring(v)) end
  local function req(name, cmd, args, f)
    rspamd_redis.make_request({task = task, cmd = cmd, args = args,
                               callback = function(err, data) f(err, data) end})
  end
  req('missing', 'HGET', {'shapes:nohash', 'f'}, function(err, data)
    add('missing', 'err=' .. tostring(err) .. ',data=' .. tostring(data))
  end)
  req('set', 'SET', {'shapes:str', 'value'}, function(err, data)
    add('set', tostring(data))
    req('get', 'GET', {'shapes:str'}, function(err2, data2) add('get', data2) end)
    req('wrongtype', 'HGET', {'shapes:str', 'f'}, function(err2, data2)
      add('wrongtype', tostring(err2 and err2:match('^WRONGTYPE') ~= nil) .. ',data=' ..
          tostring(data2))
    end)
  end)
  req('eval', 'EVAL', {"return {1, 'two', {3, 'four'}, redis.call('EXISTS', KEYS[1])}", 1,
                       'shapes:str'}, function(err, data)
    if err then add('eval', 'err:' .. err) return end
    add('eval', table.concat({math.type(data[1]), data[2], data[3][1], data[3][2],
                              data[4]}, ','))
  end)
  return true
end

-- the coroutine forms
rspamd_config.SITE_CORO = function(task)
  if not task:get_header('X-Coro') then return false end
  local out = {}
  local ok, data = lua_redis.request(redis_params, {task = task}, {'SET', 'coro:k', 'v1'})
  out[#out + 1] = 'set=' .. tostring(ok) .. ':' .. tostring(data)
  ok, data = lua_redis.request(redis_params, {task = task}, {'GET', 'coro:k'})
  out[#out + 1] = 'get=' .. tostring(ok) .. ':' .. tostring(data)
  local cok, conn = rspamd_redis.connect_sync({task = task})
  conn:add_cmd('INCRBY', {'coro:n', 5})
  conn:add_cmd('HGET', {'coro:k', 'f'})
  conn:add_cmd('HGET', {'coro:nohash', 'f'})
  local a, ad, b, bd, c, cd = conn:exec()
  out[#out + 1] = 'exec=' .. table.concat({tostring(a), tostring(ad), tostring(b),
    tostring(bd and bd:match('^WRONGTYPE') ~= nil), tostring(c), tostring(cd)}, ',')
  local e1, e2 = conn:exec()
  out[#out + 1] = 'empty=' .. tostring(e1) .. ':' .. tostring(e2 ~= nil)
  return true, out
end

-- refused: what authscan cannot prefix
rspamd_config.SITE_REFUSED = function(task)
  if not task:get_header('X-Refused') then return false end
  local out = {}
  local function try(k, t)
    local ok, err = pcall(rspamd_redis.make_request, t)
    out[#out + 1] = k .. '=' .. tostring(not ok and err or 'accepted')
  end
  try('keys', {task = task, cmd = 'KEYS', args = {'*'}})
  try('tag', {task = task, cmd = 'GET', args = {'{example.com}d'}})
  try('badarg', {task = task, cmd = 'GET', args = {{}}})
  try('unknown', {task = task, cmd = 'GET', args = {'x'}, bogus = 1})
  try('opaque', {task = task, cmd = 'GET', args = {'x'}, opaque_data = true})
  try('notask', {cmd = 'GET', args = {'x'}})
  local ok, err = pcall(function()
    local _, conn = rspamd_redis.make_request({task = task, cmd = 'GET', args = {'x'}})
    conn:add_cmd('GET', {'y'})
  end)
  out[#out + 1] = 'async_add=' .. tostring(not ok and err)
  return true, out
end

-- fire and forget from the finish stage
rspamd_config:register_symbol{
  type = 'idempotent',
  callback = function(task)
    if not task:get_header('X-Forget') then return end
    local ok = rspamd_redis.make_request({task = task, cmd = 'SET',
                                          args = {'forget:' .. task:get_header('X-Forget'), 'done'},
                                          is_write = true})
    rspamd_logger.infox(task, 'forget sent: %s', ok)
  end,
}

-- rspamd's callback-style DNS
rspamd_config.SITE_DNS_CB = function(task)
  if not task:get_header('X-Dns-Cb') then return false end
  local rspamd_dns = require "rspamd_dns"
  local function add(k, v) task:insert_result('SITE_DNS_CB', 1.0, k .. '=' .. tostring(v)) end
  local ok = rspamd_dns.request({task = task, type = 'txt', name = 'lua-test.example',
    callback = function(resolver, to_resolve, results, err)
      add('req', to_resolve .. ':' .. tostring(results and results[1]) .. ':' .. tostring(err)
          .. ':' .. tostring(resolver))
    end})
  add('started', ok)
  local r = task:get_resolver()
  r:resolve_txt({task = task, name = 'lua-test.example',
    callback = function(_, name, results, err)
      add('txt', tostring(results and results[1]))
      -- a callback may start another lookup
      r:resolve('a', {task = task, name = name, callback = function(_, n2, res2, err2)
        add('a', tostring(res2 and res2[1]))
      end})
    end})
  r:resolve_a({task = task, name = 'nothing.example',
    callback = function(_, name, results, err)
      add('nx', tostring(results) .. ':' .. tostring(err))
    end})
  return true
end

-- a symbol the next rule looks at: rules wait for their callbacks
rspamd_config:register_symbol{
  name = 'SITE_AFTER_DNS', priority = -10,
  callback = function(task)
    if not task:get_header('X-Dns-Cb') then return false end
    return task:has_symbol('SITE_DNS_CB'), tostring(#(task:get_symbol('SITE_DNS_CB')[1].options or {}))
  end,
}

-- with and without redis.servers
rspamd_config.SITE_CONFIG = function(task)
  if not task:get_header('X-Config') then return false end
  local ok, err = rspamd_redis.make_request({task = task, cmd = 'PING',
                                             callback = function() end})
  return true, 'params=' .. tostring(redis_params ~= nil), 'ok=' .. tostring(ok),
    'err=' .. tostring(ok and 'none' or err)
end

-- a failing callback and one that loops: logged, the next rule still runs
rspamd_config.SITE_CB_FAIL = function(task)
  if not task:get_header('X-Cb-Fail') then return false end
  rspamd_redis.make_request({task = task, cmd = 'PING', callback = function(err, data)
    task:insert_result('SITE_CB_FAIL', 1.0, 'before:' .. tostring(data))
    error('boom in callback')
  end})
  rspamd_redis.make_request({task = task, cmd = 'PING', callback = function()
    while true do end
  end})
end
rspamd_config:register_symbol{
  name = 'SITE_CB_NEXT', priority = -20,
  callback = function(task)
    if not task:get_header('X-Cb-Fail') then return false end
    return true, tostring(task:has_symbol('SITE_CB_FAIL'))
  end,
}

-- faults: Redis down or paused
rspamd_config.SITE_FAULT = function(task)
  if not task:get_header('X-Fault') then return false end
  local t0 = os.time()
  rspamd_redis.make_request({task = task, cmd = 'GET', args = {'fault:k'},
    callback = function(err, data)
      task:insert_result('SITE_FAULT', 1.0, 'err=' .. tostring(err), 'data=' .. tostring(data))
    end})
end

rspamd_config.SITE_FAULT_CORO = function(task)
  if not task:get_header('X-Fault-Coro') then return false end
  local ok, data = lua_redis.request(redis_params, {task = task}, {'GET', 'fault:k'})
  return true, 'ok=' .. tostring(ok), 'data=' .. tostring(data)
end
"""

CONFIG = """workers = 1
redis.servers = %s
redis.timeout = %gs
[lua]
dir = %s
"""


def message(sender, n, header):
    return ("From: <%s>\r\nTo: bob@example.org\r\nSubject: t%d\r\n"
            "Message-ID: <m%d@example.com>\r\n%s\r\n\r\nhi\r\n" % (
                sender, n, n, header)).encode()


def scan(d, sender, n, header, timeout=30.0):
    st, reply = d.checkv2(message(sender, n, header),
                          headers={"IP": "192.0.2.1", "From": sender, "Helo": "mail.test"},
                          timeout=timeout)
    if st != 200:
        raise AssertionError("scan: got status %d, want 200: %r" % (st, reply))
    return reply


def opts(reply, sym):
    s = reply.get("symbols", {}).get(sym)
    return s.get("options", []) if s else None


def counter(r, d):
    for n in (1, 2, 3):
        rep = scan(d, "carol@example.com", n, "X-Count: 1")
        T.eq("counter: scan %d: count option" % n, opts(rep, "SITE_SENDER_COUNT"),
             [str(n), "integer"])
        T.eq("counter: scan %d: repeat sender symbol" % n,
             "SITE_REPEAT_SENDER" in rep.get("symbols", {}), n >= 3)
        T.eq("counter: scan %d: no error" % n, opts(rep, "SITE_REDIS_ERR"), None)
    ok = opts(rep, "SITE_REDIS_OK")
    T.check("counter: make_request returned true, conn", ok and ok[0] == "ok=true" and
            ok[1] == "conn=rspamd{redis}", ok)
    key = "as:site:count:carol@example.com"
    T.eq("counter: the key is under redis.prefix", r.cmd("GET", key), b"3")
    ttl = r.cmd("TTL", key)
    T.check("counter: EXPIRE from the callback set the TTL (got %r)" % ttl,
            isinstance(ttl, int) and 3500 < ttl <= 3600)
    T.eq("counter: nothing outside the prefix", r.cmd("EXISTS", "site:count:carol@example.com"), 0)


def shapes(r, d):
    rep = scan(d, "s@example.com", 10, "X-Shapes: 1")
    got = set(opts(rep, "SITE_SHAPES") or [])
    want = {"missing=err=nil,data=nil", "set=OK", "get=value", "wrongtype=true,data=nil",
            "eval=integer,two,3,four,1"}
    T.eq("shapes: replies as rspamd converts them", got, want)
    rep = scan(d, "s@example.com", 11, "X-Coro: 1")
    T.eq("coroutine forms: request, connect_sync/add_cmd/exec", opts(rep, "SITE_CORO"),
         ["set=true:OK", "get=true:v1", "exec=true,5,false,true,true,nil",
          "empty=false:true"])
    rep = scan(d, "s@example.com", 12, "X-Refused: 1")
    got = opts(rep, "SITE_REFUSED") or []
    want = [("keys=", "command 'KEYS' is not available from Lua"),
            ("tag=", "begins with '{'"),
            ("badarg=", "args[1] is a table"),
            ("unknown=", "unknown key 'bogus'"),
            ("opaque=", "opaque_data is not supported"),
            ("notask=", "task= is required"),
            ("async_add=", "only for a connection from rspamd_redis.connect_sync")]
    for i, (k, frag) in enumerate(want):
        g = got[i] if i < len(got) else None
        T.check("refused: %s got %r, want it to contain %r" % (k, g, frag),
                g is not None and g.startswith(k) and frag in g)
    # fire and forget from an idempotent rule (after the reply)
    scan(d, "s@example.com", 13, "X-Forget: one")
    try:
        harness.wait_for(lambda: r.cmd("GET", "as:forget:one") == b"done", 10,
                         what="the fire-and-forget write")
        landed = True
    except TimeoutError:
        landed = False
    T.check("fire-and-forget write from the finish stage landed", landed)


def dns_callbacks(r, d):
    rep = scan(d, "s@example.com", 20, "X-Dns-Cb: 1")
    got = set(opts(rep, "SITE_DNS_CB") or [])
    want = {"started=true", "req=lua-test.example:hello from dns:nil:rspamd{resolver}",
            "txt=hello from dns", "a=192.0.2.7", "nx=nil:nxdomain"}
    T.eq("dns callbacks: results", got, want)
    T.eq("dns callbacks: the next rule ran after every callback",
         opts(rep, "SITE_AFTER_DNS"), [str(len(want))])


def callbacks_fail(r, d):
    mark = d.log_mark()
    rep = scan(d, "s@example.com", 40, "X-Cb-Fail: 1")
    T.eq("failing callback: what it inserted before the error stays",
         opts(rep, "SITE_CB_FAIL"), ["before:PONG"])
    T.eq("failing callback: the next rule ran after both callbacks",
         opts(rep, "SITE_CB_NEXT"), ["true"])
    m = d.wait_log(r"lua: rule SITE_CB_FAIL \(\S+10-redis.lua:\d+\) failed: "
                   r"\S+10-redis.lua:\d+: boom in callback", since=mark)
    T.check("failing callback: logged with the rule and file:line", m is not None)
    m = d.wait_log(r"lua: rule SITE_CB_FAIL \(\S+\) stopped: \S+10-redis.lua:\d+: "
                   r"instruction budget exhausted", since=mark)
    T.check("looping callback: stopped by the budget", m is not None)
    rep = scan(d, "s@example.com", 41, "X-Config: 1")
    T.eq("with redis.servers: parse_redis_server gives params, make_request true",
         opts(rep, "SITE_CONFIG"), ["params=true", "ok=true", "err=none"])


def faults(r, d, dd):
    # paused: the callback gets a timeout within redis.timeout (bounds
    # below the pause, with room for a loaded machine)
    r.cmd("CLIENT", "PAUSE", "5000")
    t0 = time.monotonic()
    rep = scan(d, "s@example.com", 30, "X-Fault: 1")
    took = time.monotonic() - t0
    T.eq("paused: the callback got a timeout", opts(rep, "SITE_FAULT"),
         ["err=timeout (redis.timeout)", "data=nil"])
    T.check("paused: answered in %.2fs, within redis.timeout %.1fs + 2.5s" % (took, REDIS_TIMEOUT),
            took < REDIS_TIMEOUT + 2.5)
    time.sleep(max(0.0, 5.2 - took))
    # the scan deadline while a coroutine waits for Redis (redis.timeout > deadline)
    r.cmd("CLIENT", "PAUSE", "6000")
    t0 = time.monotonic()
    rep = scan(dd, "s@example.com", 31, "X-Fault-Coro: 1")
    took = time.monotonic() - t0
    T.check("deadline: the scan answered with AUTHSCAN_TIMEOUT in %.2fs (scan_timeout 1s, "
            "redis.timeout 5s)" % took,
            "AUTHSCAN_TIMEOUT" in rep.get("symbols", {}) and took < 4.0, rep.get("symbols"))
    T.eq("deadline: the rule's symbol skipped", opts(rep, "SITE_FAULT_CORO"), None)
    rep = scan(dd, "s@example.com", 32, "X-Fault: 1")
    T.eq("deadline: callback rule's symbol skipped", opts(rep, "SITE_FAULT"), None)
    dd.wait_log("did not finish|cut short", count=1)
    time.sleep(max(0.0, 6.2 - (time.monotonic() - t0)))
    # stopped: the callback gets an error, the scan answers at once
    r.kill()
    t0 = time.monotonic()
    rep = scan(d, "s@example.com", 33, "X-Fault: 1")
    took = time.monotonic() - t0
    o = opts(rep, "SITE_FAULT") or []
    T.check("stopped: the callback got an error (got %r)" % o,
            len(o) == 2 and o[0].startswith("err=redis unavailable") and o[1] == "data=nil")
    T.check("stopped: answered in %.2fs" % took, took < REDIS_TIMEOUT + 2.0)
    rep = scan(d, "s@example.com", 34, "X-Fault-Coro: 1")
    T.check("stopped: the coroutine form returns false, err",
            (opts(rep, "SITE_FAULT_CORO") or [None])[0] == "ok=false", rep.get("symbols"))
    r.start()


def main():
    with harness.RedisServer() as r:
        luadir = os.path.join(r.tmp, "lua")
        os.mkdir(luadir)
        with open(os.path.join(luadir, "10-redis.lua"), "w") as f:
            f.write(RULES)
        config = CONFIG % (r.address, REDIS_TIMEOUT, luadir)
        slow = (CONFIG % (r.address, 5.0, luadir)) + "[limits]\nscan_timeout = 1s\n"
        with harness.Daemon(workers=1, config=config, zone=ZONE) as d, \
                harness.Daemon(workers=1, config=slow, zone=ZONE) as dd:
            T.run(counter, r, d)
            T.run(shapes, r, d)
            T.run(dns_callbacks, r, d)
            T.run(callbacks_fail, r, d)
            T.run(faults, r, d, dd)
            for name, x in (("d", d), ("deadline", dd)):
                failed = [l for l in x.log().splitlines()
                          if "failed:" in l and "SITE_CB_FAIL" not in l]
                T.check("%s: no sanitizer report, no other failed rule" % name,
                        "Sanitizer" not in x.log() and "runtime error" not in x.log() and
                        not failed, failed or x.log()[-3000:])

        # the shipped example, unchanged, with its limit lowered by hand
        exdir = os.path.join(r.tmp, "example")
        os.mkdir(exdir)
        with open(os.path.join(harness.SRC, "lua", "examples", "sender_rate.lua")) as f:
            text = f.read()
        with open(os.path.join(exdir, "sender_rate.lua"), "w") as f:
            f.write(text.replace("local LIMIT = 100 ", "local LIMIT = 2 "))
        with harness.Daemon(workers=1, config=CONFIG % (r.address, REDIS_TIMEOUT, exdir),
                            zone=ZONE) as d:
            got = ["SITE_SENDER_BURST" in scan(d, "dave@example.com", 60 + n, "X-N: 1").get(
                "symbols", {}) for n in range(3)]
            T.eq("example sender_rate.lua: burst from the third message", got,
                 [False, False, True])
            keys = r.cmd("KEYS", "as:site:rate:dave@example.com:*")
            ttl = r.cmd("TTL", keys[0]) if keys else None
            T.check("example: one key under the prefix with its TTL (got %r, ttl %r)" % (
                keys, ttl), len(keys) == 1 and isinstance(ttl, int) and 7000 < ttl <= 7200)

        # without redis.servers: parse_redis_server is nil, make_request says why
        off = "workers = 1\n[lua]\ndir = %s\n" % luadir
        with harness.Daemon(workers=1, config=off, zone=ZONE) as d:
            rep = scan(d, "s@example.com", 50, "X-Config: 1")
            T.eq("without redis.servers: no params, make_request false with the reason",
                 opts(rep, "SITE_CONFIG"),
                 ["params=false", "ok=false", "err=redis is not configured (redis.servers)"])


if __name__ == "__main__":
    T.run(main)
    sys.exit(T.finish())
