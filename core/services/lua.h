/*
 * lua.h - the worker's Lua 5.4 service: one sandboxed lua_State per engine
 * (per worker process), the site's rules loaded into it, and the budgets
 * that keep a rule from hurting the worker.  docs/lua.md is the user's
 * reference; this header is the contract with the task bindings
 * (scan/lua_task.c), which run the rules in the scan stages.
 *
 * Loading: every *.lua file directly in lua.dir, in name order, when the
 * engine starts (a worker, the CLI, and the configuration check, which
 * is how --check-config and a reload report a broken file as
 * "FILE:LINE: message" and keep the running set).  A file registers rules
 * with rspamd_config:register_symbol{...} or the rspamd_config.NAME = {...}
 * shorthand; each rule with a name declares that symbol (service.h
 * `symbols`), so rules files can override its score like any other.
 *
 * Sandbox: base (without dofile, loadfile, and with load() refusing
 * bytecode), string (without string.dump), table, math, utf8, coroutine,
 * os.time/clock/date/difftime; no io, no debug, no package.loadlib.
 * require() finds the built-in modules (rspamd_logger, rspamd_dns,
 * rspamd_redis ...) and NAME.lua below the shipped library folder and
 * lua.dir.  rspamd_dns and rspamd_redis are made empty here, so that a
 * file's main chunk may require them; the task bindings fill them in.
 * rspamd_redis.authscan_enabled says whether redis.servers is set.
 *
 * Budgets: every piece of site code (a file's main chunk, a rule's
 * callback) runs as a "run" with an instruction budget (lua.max_instructions,
 * counted by a count hook across all the run's resumptions), and the whole
 * state has a memory cap (lua.max_memory, enforced by the allocator while
 * site code runs).  A run that exceeds its budget is stopped with an
 * error that pcall() cannot swallow; a rule stopped that way
 * lua.max_overruns times is disabled until the next reload.
 *
 * Threading: none; every call on the engine's event loop.
 * Ownership: the service owns the state, the rules and their strings.
 */
#ifndef AS_LUA_H
#define AS_LUA_H

#include <stddef.h>
#include <lua.h>
#include "services/service.h"

extern const struct as_service as_lua_service;

/* rspamd's symbol types, in the order they run within a scan. */
enum as_lua_rule_type {
    AS_LUA_PREFILTER,     /* scan stage, before the normal rules */
    AS_LUA_NORMAL,        /* scan stage ("normal", "callback") */
    AS_LUA_POSTFILTER,    /* postfilter stage */
    AS_LUA_IDEMPOTENT,    /* finish stage: read-only */
    AS_LUA_RULE_TYPES
};

struct as_lua_rule {
    const char *name;           /* its symbol, or NULL (a callback without one) */
    enum as_lua_rule_type type;
    int priority;               /* higher runs first within its type */
    int ref;                    /* the callback, in the registry */
    char where[256];            /* "FILE:LINE" of the callback */
    unsigned long long calls, errors, overruns;
    int disabled;               /* overran lua.max_overruns times */
};

/* rspamd_config:register_dependency(symbol, dependency): checked by the
 * bindings once every symbol is known (the dependency must be a plugin's
 * symbol, or a Lua rule that runs before). */
struct as_lua_dep {
    const char *symbol;
    const char *dep;
    char where[256];            /* "FILE:LINE" of the call */
};

/* The task userdata the bindings create: the logger finds the scan id in
 * it; task is NULL once the task is gone (a rule that kept it errs). */
#define AS_LUA_TASK_MT "rspamd{task}"
struct as_lua_task_ud {
    struct as_task *task;
    char id[24];
};

struct as_lua;

lua_State *as_lua_state(struct as_lua *s);
/* The service of L (its extra space points at it). */
struct as_lua *as_lua_from(lua_State *L);
size_t as_lua_rule_count(const struct as_lua *s);
struct as_lua_rule *as_lua_rule_at(struct as_lua *s, size_t i);
size_t as_lua_dep_count(const struct as_lua *s);
const struct as_lua_dep *as_lua_dep_at(const struct as_lua *s, size_t i);

/* One run of site code: a coroutine and what is left of its budget. */
struct as_lua_run {
    lua_State *co;
    int ref;                    /* anchors co in the registry */
    struct as_lua_rule *rule;
    long long budget;           /* instructions left */
};

enum as_lua_outcome {
    AS_LUA_DONE,                /* returned: results on co's stack */
    AS_LUA_YIELDED,             /* waits for an asynchronous answer */
    AS_LUA_FAILED,              /* error() or a runtime error */
    AS_LUA_OVERRUN,             /* instruction budget exceeded */
    AS_LUA_NOMEM,               /* memory cap reached */
};

/* Starts a run of rule r: a new coroutine with the callback on its stack
 * (push the arguments on run->co, then resume). */
void as_lua_run_start(struct as_lua *s, struct as_lua_rule *r, struct as_lua_run *run);
/* Resumes run with nargs values pushed on run->co.  On AS_LUA_DONE *nres
 * results are on run->co.  On a failure, err holds "FILE:LINE: message",
 * the failure is counted (and the rule disabled after too many overruns);
 * logging it is the caller's, who knows the task. */
enum as_lua_outcome as_lua_run_resume(struct as_lua *s, struct as_lua_run *run, int nargs,
                                      int *nres, char *err, size_t errlen);
/* Ends run (the coroutine is released to the collector).  Idempotent. */
void as_lua_run_end(struct as_lua *s, struct as_lua_run *run);

/* For the sandbox's pattern functions (lua_match.c): the running
 * callback's instructions left (a large dummy outside any callback), and
 * the stop when a match spends them (raises, never returns). */
long long *as_lua_budget(lua_State *L);
void as_lua_budget_exhausted(lua_State *L);
/* Replaces find, match, gmatch and gsub in the string table at index idx. */
void as_lua_open_match(lua_State *L, int idx);

/* For the bindings: formats like rspamd_logger (%s, %1..%9, %%) from the
 * arguments at index first.. of L into a string pushed on L. */
void as_lua_push_format(lua_State *L, int fmt_index, int first);
/* Registers a module for require(NAME): the value on top of L (popped). */
void as_lua_set_module(lua_State *L, const char *name);

#endif
