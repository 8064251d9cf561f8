/*
 * lua_task.h - the Lua rules in the scan: the `task` object of rspamd's
 * Lua API, and the built-in plugin that runs the rules in the stages.
 *
 * The engine adds as_lua_plugin after every loaded plugin when lua.dir is
 * set (it depends on all of them), so Lua rules see the plugins' symbols,
 * typed results and verdict.  Within the plugin, rules run one after the
 * other in rspamd's order: the scan stage runs the prefilters, then the
 * normal rules; the postfilter stage the postfilters; the finish stage the
 * idempotent rules.  Within a type, higher priority first, then the order
 * of registration.  A rule that waits for DNS or Redis in the coroutine
 * form (rspamd_dns.request, conn:exec()) yields its coroutine; one that
 * uses the callback forms (rspamd_dns.request{callback=},
 * task:get_resolver(), rspamd_redis.make_request{callback=}) is done when
 * the last of its callbacks has run.  The next rule starts when it is
 * done.  Every such request is an asynchronous operation of the task
 * (DNS budget, scan deadline, redis.timeout); what is still pending when
 * the task ends is cancelled with it.
 *
 * Redis: every key a rule names gets redis.prefix in front; only commands
 * whose keys the bindings can find are sent, and keys that begin with '{'
 * (the plugins' hash-tag keys) are refused (docs/lua.md, "Redis").
 *
 * A failing rule (error, instruction budget, memory cap) is logged with
 * the scan id and its FILE:LINE, its symbol is not added, and the scan
 * goes on (services/lua.h counts it).
 */
#ifndef AS_LUA_TASK_H
#define AS_LUA_TASK_H

#include "authscan/plugin.h"
#include "scan/engine.h"

extern const struct as_plugin as_lua_plugin;

/* After the engine read the plugin's stage hooks: drops the postfilter
 * and finish hooks when no rule needs them, so that a scan without Lua
 * postfilters skips the stage as it would without Lua. */
void as_lua_plugin_trim_stages(const struct as_engine *e, struct as_engine_plugin *p);

#endif
