--[[
lua_util: the few helpers of rspamd's lua_util module that site rules use
most, with the same names and behaviour, so that `require "lua_util"` in a
rule written for rspamd finds them.  Shipped with authscan (docs/lua.md).
]]

local M = {}

-- {'a', 'b'} -> {a = true, b = true}; a table that is already a hash is
-- returned as is, nil gives nil (rspamd's semantics).
function M.list_to_hash(list)
  if type(list) ~= 'table' then
    if type(list) == 'string' then
      return { [list] = true }
    end
    return nil
  end
  if #list == 0 and next(list) ~= nil then
    return list
  end
  local h = {}
  for _, v in ipairs(list) do
    h[v] = true
  end
  return h
end

-- Splits s at every character of delims (default: whitespace).
function M.str_split(s, delims)
  local out = {}
  local pattern = '[^' .. (delims and delims:gsub('%p', '%%%0') or '%s') .. ']+'
  for piece in s:gmatch(pattern) do
    out[#out + 1] = piece
  end
  return out
end

function M.str_startswith(s, prefix)
  return s:sub(1, #prefix) == prefix
end

function M.str_endswith(s, suffix)
  return suffix == '' or s:sub(-#suffix) == suffix
end

-- Removes leading and trailing whitespace, in time linear in #s (the
-- usual s:gsub('%s+$', '') backtracks quadratically over long blank runs,
-- and the sandbox charges every step of a match to the rule's budget).
function M.str_trim(s)
  local first = s:find('%S')
  if not first then return '' end
  local last = #s
  while last > first do
    local b = s:byte(last)
    if b ~= 32 and (b < 9 or b > 13) then break end
    last = last - 1
  end
  return s:sub(first, last)
end

-- rspamd's lua_util.debugm(module, task_or_config, fmt, ...).
function M.debugm(module, obj, fmt, ...)
  require('rspamd_logger').debugm(module, obj, fmt, ...)
end

return M
