--[[
lua_redis: the calls of rspamd's lua_redis module that site rules use, on
top of rspamd_redis (authscan's Redis service: redis.servers, redis.prefix,
redis.timeout).  Shipped with authscan; docs/lua.md describes the
semantics, and where they differ from rspamd's.

There is one Redis, configured in authscan's configuration: the
redis_params these functions take are what parse_redis_server() returned
(a marker that Redis is on), never a server list.
]]

local rspamd_redis = require "rspamd_redis"

local M = {}

-- nil without redis.servers, so that a rule written for rspamd disables
-- itself at load as it would without servers; a table otherwise.
function M.parse_redis_server(module_name, module_opts, no_fallback)
  if not rspamd_redis.authscan_enabled then
    return nil
  end
  return { module = module_name, authscan = true }
end

M.try_load_redis_servers = M.parse_redis_server

local function copy(t)
  local r = {}
  for k, v in pairs(t or {}) do
    r[k] = v
  end
  return r
end

-- redis_make_request(task, redis_params, key, is_write, callback, command,
-- args, extra_opts): rspamd_redis.make_request with those fields; returns
-- ok, conn.
function M.redis_make_request(task, redis_params, key, is_write, callback, command, args,
                              extra_opts)
  if not task or not redis_params or not command then
    error('redis_make_request: task, redis_params and command are required', 2)
  end
  local opts = copy(extra_opts)
  opts.task = task
  opts.key = key
  opts.is_write = is_write and true or false
  opts.callback = callback
  opts.cmd = command
  opts.args = args
  return rspamd_redis.make_request(opts)
end

M.rspamd_redis_make_request = M.redis_make_request

-- request(redis_params, attrs, req): req is {cmd, arg1, ...}.  With
-- attrs.callback the callback form (returns ok, conn); without, the
-- coroutine form: yields, and returns ok, data.
function M.request(redis_params, attrs, req)
  if not redis_params or not attrs or not req or not req[1] then
    error('request: redis_params, attrs and req = {cmd, ...} are required', 2)
  end
  local opts = copy(attrs)
  local args = { table.unpack(req, 2) }
  if opts.callback then
    opts.cmd = req[1]
    opts.args = args
    return rspamd_redis.make_request(opts)
  end
  local ok, conn = rspamd_redis.connect_sync(opts)
  if not ok then
    return false, conn
  end
  conn:add_cmd(req[1], args)
  return conn:exec()
end

-- connect(redis_params, attrs): a connection for add_cmd/exec.
function M.connect(redis_params, attrs)
  if not redis_params or not attrs then
    error('connect: redis_params and attrs are required', 2)
  end
  return rspamd_redis.connect_sync(copy(attrs))
end

M.connect_sync = M.connect

return M
