--[[
bench/lua/ten: a ten-rule site file of the kind docs/lua.md describes, for
the CPU per message with Lua rules loaded (docs/performance.md, "Lua
rules").  Nine normal rules read the message, the envelope and the
plugins' results; one postfilter reads the verdict and may force one.
--]]
local lua_util = require "lua_util"

local partners = lua_util.list_to_hash({'partner.example', 'bank.example'})
local freemail = lua_util.list_to_hash({'gmail.com', 'yahoo.com', 'outlook.com'})

local function from_domain(task)
  local from = task:get_from('mime')
  return from and from[1] and from[1].domain
end

rspamd_config.BENCH_FREEMAIL = function(task)
  local d = from_domain(task)
  return d ~= nil and freemail[d] == true, d
end

rspamd_config.BENCH_LOOKALIKE = function(task)
  local d = from_domain(task)
  if not d then return false end
  local plain = d:gsub('0', 'o'):gsub('1', 'l')
  return plain ~= d and partners[plain] == true, d
end

rspamd_config.BENCH_NO_MSGID = function(task)
  return task:get_header('Message-ID') == nil
end

rspamd_config.BENCH_SUBJECT_CAPS = function(task)
  local s = task:get_header('Subject')
  return s ~= nil and #s > 10 and s == s:upper()
end

rspamd_config.BENCH_ENVFROM_MISMATCH = function(task)
  local smtp = task:get_from('smtp')
  local d = from_domain(task)
  return smtp ~= nil and d ~= nil and smtp[1].domain ~= '' and smtp[1].domain ~= d
end

rspamd_config.BENCH_MANY_RCPT = function(task)
  local r = task:get_recipients('smtp')
  return r ~= nil and #r > 5, r and #r
end

rspamd_config.BENCH_DMARC_FAIL = function(task)
  local dm = task:get_dmarc()
  return dm ~= nil and dm.result == 'fail', dm and dm.policy
end

rspamd_config.BENCH_SPF_HELO = function(task)
  local spf = task:get_spf()
  local helo = task:get_helo()
  return spf ~= nil and helo ~= nil and spf.result == 'fail' and helo:find('%.') == nil
end

rspamd_config.BENCH_IPV6 = function(task)
  local ip = task:get_ip()
  return ip:is_valid() and ip:get_version() == 6
end

rspamd_config:register_symbol{
  name = 'BENCH_PARTNER_SOFTEN',
  type = 'postfilter',
  callback = function(task)
    local dm = task:get_dmarc()
    if dm and dm.result == 'fail' and partners[dm.author_domain or '']
        and task:get_metric_action() == 'reject' then
      task:set_pre_result('quarantine', 'partner', 'bench')
      return true
    end
  end,
}
