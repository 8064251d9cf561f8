--[[
sender_rate.lua: counts each envelope sender's messages per hour in Redis
and adds SITE_SENDER_BURST when a sender goes past a limit.  Copy it into
lua.dir and set redis.servers; without Redis it registers nothing.

The key is <redis.prefix>site:rate:<sender>:<hour> (authscan puts
redis.prefix in front), it expires after two hours, and the count is one
INCR per message.  Redis down or slow: no symbol (fail open).
]]

local lua_redis = require "lua_redis"
local rspamd_logger = require "rspamd_logger"

local LIMIT = 100            -- messages per sender and hour
local redis_params = lua_redis.parse_redis_server('sender_rate')

if not redis_params then
  rspamd_logger.infox(rspamd_config, 'sender_rate: no redis.servers, disabled')
  return
end

rspamd_config:register_symbol{
  name = 'SITE_SENDER_BURST',
  score = 2.0,
  group = 'site',
  description = 'The envelope sender sent more than its hourly limit',
  callback = function(task)
    local from = task:get_from('smtp')
    local sender = from and from[1] and from[1].addr
    if not sender or sender == '' then return false end
    local key = string.format('site:rate:%s:%d', sender:lower(), os.time() // 3600)
    lua_redis.redis_make_request(task, redis_params, key, true,
      function(err, count)
        if err then return end
        if count == 1 then   -- the first message of the hour sets the TTL
          lua_redis.redis_make_request(task, redis_params, key, true, nil,
                                       'EXPIRE', {key, 7200})
        end
        if count > LIMIT then
          task:insert_result('SITE_SENDER_BURST', 1.0, sender, tostring(count))
        end
      end, 'INCR', {key})
  end,
}
