--[[
mailing_list_quarantine.lua - an example site file for authscan's lua.dir
(docs/lua.md, "Examples").

What it does: a message that fails DMARC for a domain publishing p=reject,
and that came through one of the mailing lists named below, is quarantined
instead of rejected.  Lists rewrite subjects and footers, which breaks the
author's DKIM signature, and they send from their own servers, which breaks
SPF alignment: without this, list members lose legitimate mail.

authscan's DMARC plugin already does this by itself when a broken DKIM
signature of the author's domain proves that the message was signed and
then changed in transit (dmarc.mailing_list_downgrade, docs/dmarc.md).
This file goes further for the lists a site trusts: any List-Id of these
lists is enough, signature or not.  Keep the list short: anyone can put a
List-Id header in a spoof, so only name lists whose own server you trust
to have checked the original sender.

It is written against rspamd's Lua API (register_symbol, get_header,
get_metric_action, set_pre_result) and runs unchanged in rspamd, except
for task:get_dmarc(), which is authscan's: in rspamd test
task:has_symbol('DMARC_POLICY_REJECT') instead.

Install: copy it into lua.dir, edit TRUSTED_LISTS, reload (SIGHUP).
--]]

local rspamd_logger = require "rspamd_logger"

-- List-Id hosts (the part after the list name) whose traffic is softened;
-- a List-Id <dev.lists.example.org> matches 'lists.example.org'.
local TRUSTED_LISTS = {
  'lists.example.org',
  'googlegroups.com',
}

local function list_host(task)
  local id = task:get_header('List-Id')
  if not id then return nil end
  -- "Description <name.host>" or "name.host"
  local inner = id:match('<([^>]+)>') or id
  inner = inner:lower():gsub('%s', '')
  for _, host in ipairs(TRUSTED_LISTS) do
    if inner == host or inner:sub(-(#host + 1)) == '.' .. host then
      return host, inner
    end
  end
  return nil
end

rspamd_config:register_symbol{
  name = 'SITE_LIST_QUARANTINE',
  type = 'postfilter',
  score = 0.0,
  group = 'site',
  description = 'DMARC p=reject softened to quarantine for a trusted mailing list',
  callback = function(task)
    if task:get_metric_action() ~= 'reject' then return false end
    -- only a reject that DMARC forced: a message whose own score reaches
    -- the reject threshold stays rejected
    local score = task:get_metric_score()
    if score[1] >= score[2] then return false end
    local dmarc = task:get_dmarc()
    if not dmarc or dmarc.result ~= 'fail' or dmarc.disposition ~= 'reject' then
      return false
    end
    local host, id = list_host(task)
    if not host then return false end
    task:set_pre_result('quarantine',
      'DMARC p=reject of ' .. tostring(dmarc.author_domain) .. ' softened for list ' .. id,
      'site_mailing_list')
    rspamd_logger.infox(task, 'p=reject of %s softened to quarantine: list %s',
      dmarc.author_domain, id)
    return true, id
  end,
}
