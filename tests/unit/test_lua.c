/*
 * The Lua service and rspamd's set_pre_result semantics:
 *   - the verdict with pre-results (task.c compute_verdict_rspamd), table-
 *     driven against rspamd_check_action_metric(): the first result without
 *     `least` decides; else the first `least` is a floor with its threshold
 *     (raising the score) or, without one, yielding only to reject;
 *   - registration errors name FILE:LINE (bad name, unknown key or type,
 *     duplicate, no callback, bytecode, syntax);
 *   - budgets: loops behind pcall, xpcall and coroutine.resume are stopped;
 *     the budget spans a run's yields; a rule is disabled after
 *     lua.max_overruns; the memory cap fails a run and the state goes on;
 *   - rspamd_logger's formatting, require() and its limits, the symbols
 *     and /stat of the service;
 *   - rspamd_dns, rspamd_redis and lua_redis at a file's load, and
 *     parse_redis_server() with and without redis.servers.
 */
#include <event2/event.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include "scan/engine.h"
#include "scan/symbols.h"
#include "scan/task.h"
#include "services/lua.h"
#include "util/config.h"
#include "util/util.h"

/* ---- the verdict ------------------------------------------------------ */

static const struct as_symbol_def syms[] = {
    { "S1", 1.0, "t", NULL, 0 },
    { "S5", 5.0, "t", NULL, 0 },
    { "S10", 10.0, "t", NULL, 0 },
};

struct pr {
    enum as_action action;
    int least;                 /* 2: a plugin's LEAST force (as_task_force_action) */
    int prio;
    double score;
    const char *msg, *module;
};

struct vcase {
    const char *name;
    const char *symbols[3];
    struct pr prs[3];
    enum as_action want;
    double want_score;
    const char *want_module;
};

static void done_cb(struct as_task *t, void *arg)
{
    (void)t;
    *(int *)arg = 1;
}

static void test_verdict(void)
{
    struct event_base *base = event_base_new();
    struct as_symtab *st = as_symtab_new();
    char err[256];
    for (size_t i = 0; i < AS_ARRAY_LEN(syms); i++)
        CHECK(as_symtab_declare(st, &syms[i], "test", err, sizeof err) == 0);
    /* rspamd's defaults: reject 15, add header 6, greylist 4, no quarantine threshold */
    struct as_engine *e = as_engine_new_bare(base, st);
    const double N = NAN;
    static const struct vcase cases[] = {
        { "least without threshold, low score", {0},
          {{AS_ACTION_QUARANTINE, 1, 50, NAN, "q", "site"}}, AS_ACTION_QUARANTINE, 0, "site" },
        { "least without threshold over add header", {"S1", "S5"},
          {{AS_ACTION_QUARANTINE, 1, 50, NAN, "q", "site"}}, AS_ACTION_QUARANTINE, 6, "site" },
        { "least without threshold yields to reject", {"S1", "S5", "S10"},
          {{AS_ACTION_QUARANTINE, 1, 50, NAN, "q", "site"}}, AS_ACTION_REJECT, 16, NULL },
        { "least with threshold raises the score", {"S1"},
          {{AS_ACTION_ADD_HEADER, 1, 50, NAN, "h", "site"}}, AS_ACTION_ADD_HEADER, 6, "site" },
        { "least with threshold: a higher score action wins", {"S1", "S5", "S10"},
          {{AS_ACTION_ADD_HEADER, 1, 50, NAN, "h", "site"}}, AS_ACTION_REJECT, 16, NULL },
        { "least with a target score: the floor is the target, not the threshold", {"S1"},
          {{AS_ACTION_GREYLIST, 1, 50, 10, "g", "site"}}, AS_ACTION_GREYLIST, 10, "site" },
        { "plain no action only lowers the score", {"S1", "S5", "S10"},
          {{AS_ACTION_NO_ACTION, 0, 50, 99, NULL, "site"}}, AS_ACTION_NO_ACTION, 16, "site" },
        { "plain no action with a low target", {"S1", "S5", "S10"},
          {{AS_ACTION_NO_ACTION, 0, 50, 2, NULL, "site"}}, AS_ACTION_NO_ACTION, 2, "site" },
        { "plain reject sets the score", {"S1"},
          {{AS_ACTION_REJECT, 0, 50, 20, "r", "site"}}, AS_ACTION_REJECT, 20, "site" },
        { "plain at priority 0 beats the plugin's least at 50", {0},
          {{AS_ACTION_REJECT, 2, 50, NAN, "dmarc says", "dmarc"},
           {AS_ACTION_QUARANTINE, 0, 0, NAN, "soft", "site"}},
          AS_ACTION_QUARANTINE, 0, "site" },
        { "least at a higher priority is the floor", {0},
          {{AS_ACTION_REJECT, 2, 50, NAN, "dmarc says", "dmarc"},
           {AS_ACTION_QUARANTINE, 1, 100, NAN, "soft", "site"}},
          AS_ACTION_QUARANTINE, 0, "site" },
        { "least at the same priority: the first added", {0},
          {{AS_ACTION_REJECT, 2, 50, NAN, "dmarc says", "dmarc"},
           {AS_ACTION_QUARANTINE, 1, 50, NAN, "soft", "site"}},
          AS_ACTION_REJECT, 15, "dmarc" },
        { "two plain: the higher priority", {0},
          {{AS_ACTION_REJECT, 0, 50, NAN, "r", "a"},
           {AS_ACTION_GREYLIST, 0, 100, NAN, "g", "b"}},
          AS_ACTION_GREYLIST, 0, "b" },
        { "two plain at one priority: the first added", {0},
          {{AS_ACTION_REJECT, 0, 50, NAN, "r", "a"},
           {AS_ACTION_GREYLIST, 0, 50, NAN, "g", "b"}},
          AS_ACTION_REJECT, 0, "a" },
    };
    (void)N;
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        const struct vcase *c = &cases[i];
        struct as_task *t = as_task_new(e);
        for (size_t k = 0; k < 3 && c->symbols[k]; k++)
            CHECK(as_task_add_symbol(t, c->symbols[k], 1.0, NULL) == 0);
        for (size_t k = 0; k < 3 && c->prs[k].module; k++) {
            const struct pr *p = &c->prs[k];
            if (p->least == 2)
                CHECK(as_task_force_action(t, p->action, AS_FORCE_LEAST, p->prio, p->msg,
                                           p->module) == 0);
            else
                CHECK(as_task_pre_result(t, p->action, p->least, p->prio, p->score, p->msg,
                                         p->module) == 0);
        }
        int done = 0;
        as_task_run(t, done_cb, &done);
        while (!done) event_base_loop(base, EVLOOP_ONCE);
        const struct as_verdict *v = as_task_verdict(t);
        if (v->action != c->want || fabs(v->score - c->want_score) > 1e-9)
            fprintf(stderr, "case '%s': %s %g, want %s %g\n", c->name,
                    as_action_name(v->action), v->score, as_action_name(c->want),
                    c->want_score);
        CHECK_INT(v->action, c->want);
        CHECK_DBL(v->score, c->want_score);
        CHECK_STR(v->forced_by, c->want_module);
        as_task_free(t);
    }
    as_engine_free(e);
    event_base_free(base);
}

/* ---- the service ------------------------------------------------------- */

static char tmpdir[] = "/tmp/authscan-lua-unit-XXXXXX";

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fwrite(text, 1, len ? len : strlen(text), f);
    fclose(f);
}

/* A fresh directory below tmpdir. */
static void new_dir(char *dir, size_t len)
{
    static int n;
    snprintf(dir, len, "%s/d%d", tmpdir, ++n);
    mkdir(dir, 0700);
}

/* Starts the service on dir (a fresh one if NULL) with one more file. */
static struct as_lua *start_with(const char *dir_in, const char *name, const char *text,
                                 size_t len, const char *max_memory, char *err, size_t errlen)
{
    char dir[512];
    if (dir_in) as_strlcpy(dir, dir_in, sizeof dir);
    else new_dir(dir, sizeof dir);
    write_file(dir, name, text, len);
    struct as_config *cfg = as_config_new();
    as_config_set(cfg, "lua.dir", dir, "test", 1);
    as_config_set(cfg, "lua.max_instructions", "100000", "test", 2);
    as_config_set(cfg, "lua.max_overruns", "2", "test", 3);
    if (max_memory) as_config_set(cfg, "lua.max_memory", max_memory, "test", 4);
    err[0] = '\0';
    struct as_lua *s = as_lua_service.start(NULL, cfg, err, errlen);
    as_config_free(cfg);
    return s;
}

static void test_registration_errors(void)
{
    static const struct {
        const char *text;
        const char *want;          /* in the error, after "FILE:LINE: " */
        int line;
    } cases[] = {
        { "\nrspamd_config:register_symbol{name='lower', callback=function() end}\n",
          "invalid symbol name 'lower'", 2 },
        { "rspamd_config:register_symbol{name='A', callback=function() end, foo=1}\n",
          "unknown key 'foo'", 1 },
        { "\n\nrspamd_config:register_symbol{name='A', type='virtual', callback=print}\n",
          "type 'virtual' is not supported", 3 },
        { "rspamd_config.A = function() end\nrspamd_config.A = function() end\n",
          "symbol A registered twice", 2 },
        { "rspamd_config:register_symbol{name='A'}\n", "no callback", 1 },
        { "rspamd_config.B = 42\n", "want a function or a table", 1 },
        { "local x = 1\nlocal y = = 2\n", "unexpected symbol", 2 },
        { "local t = nil\n\nt.x = 1\n", "attempt to index", 3 },
        { "while true do end\n", "instruction budget exhausted", 1 },
        { "rspamd_config:register_symbol{name='A', callback=function() end, priority=1.5}\n",
          "priority must be an integer", 1 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        char err[512];
        struct as_lua *s = start_with(NULL, "bad.lua", cases[i].text, 0, NULL, err, sizeof err);
        CHECK(s == NULL);
        if (s) as_lua_service.stop(s);
        char where[64];
        snprintf(where, sizeof where, "bad.lua:%d: ", cases[i].line);
        if (!strstr(err, where) || !strstr(err, cases[i].want))
            fprintf(stderr, "case %zu: got '%s', want '%s' and '%s'\n", i, err, where,
                    cases[i].want);
        CHECK(strstr(err, where) != NULL);
        CHECK(strstr(err, cases[i].want) != NULL);
    }
    /* bytecode is refused even from a file */
    char err[512];
    static const char chunk[] = "\x1bLua\x54\x00\x19\x93\r\n\x1a\n";
    struct as_lua *s = start_with(NULL, "bin.lua", chunk, sizeof chunk - 1, NULL, err, sizeof err);
    CHECK(s == NULL);
    CHECK(strstr(err, "binary") != NULL);
    if (s) as_lua_service.stop(s);
}

/* Runs rule i with a nil argument: the outcome, and its first result as a
 * string in out (if any). */
static enum as_lua_outcome run_rule(struct as_lua *s, size_t i, char *out, size_t outlen,
                                    char *err, size_t errlen)
{
    struct as_lua_run run;
    as_lua_run_start(s, as_lua_rule_at(s, i), &run);
    lua_pushnil(run.co);
    int nres = 0;
    enum as_lua_outcome o = as_lua_run_resume(s, &run, 1, &nres, err, errlen);
    out[0] = '\0';
    if (o == AS_LUA_DONE && nres > 0 && lua_tostring(run.co, -nres))
        as_strlcpy(out, lua_tostring(run.co, -nres), outlen);
    as_lua_run_end(s, &run);
    return o;
}

static const char RULES[] =
    "local log = require 'rspamd_logger'\n"
    "rspamd_config:register_symbol{name='R_PCALL', score=2.5, group='g', description='d',\n"
    "  callback=function() while true do pcall(function() while true do end end) end end}\n"
    "rspamd_config.R_XPCALL = function() while true do xpcall(function() while true do end end, "
    "function(e) return e end) end end\n"
    "rspamd_config.R_CORO = function() while true do coroutine.resume(coroutine.create("
    "function() while true do end end)) end end\n"
    "rspamd_config.R_FMT = function() return log.slog('%s and %2 %% %s %1 %s %3', 'a', 'b') "
    "end\n"
    "rspamd_config.R_TABLE = function() return log.slog('t=%s', {1, x = 'y'}) end\n"
    "rspamd_config.R_MEM = function() local t = {} for i = 1, 1e8 do t[i] = "
    "string.rep('m', 1000) .. i end end\n"
    "rspamd_config.R_AFTER = function() return string.rep('k', 10) end\n"
    "rspamd_config.R_REQUIRE = function() return require('lua_util').str_trim('  x  ') .. "
    "require('site.mod').v end\n"
    "rspamd_config.R_BADREQ = function() return require('..x') end\n"
    "rspamd_config.R_NOMOD = function() return require('no_such_module') end\n"
    "rspamd_config.R_YIELD = function() for i = 1, 60000 do end coroutine.yield() "
    "for i = 1, 60000 do end return 'ok' end\n"
    "rspamd_config.R_CATCH = function() pcall(function() while true do end end) "
    "return 'survived' end\n"
    "rspamd_config.R_XCATCH = function() xpcall(function() while true do end end, "
    "function() return 'x' end) return 'survived' end\n"
    "rspamd_config.R_COCATCH = function() coroutine.resume(coroutine.create(function() "
    "while true do end end)) return 'survived' end\n"
    "rspamd_config.R_MEMCATCH = function() pcall(string.rep, 'x', 1 << 30) "
    "return 'survived' end\n"
    "rspamd_config.R_PATTERN = function() local s = string.rep(' ', 200000) .. 'x' "
    "return (s:gsub('%s+$', '')) end\n"
    "rspamd_config.R_PLAIN = function() return string.rep('a', 1000000):find("
    "string.rep('a', 1000) .. 'b', 1, true) end\n"
    "rspamd_config.R_GMATCH = function() local n = 0 for w in string.rep(' x', 100000):gmatch("
    "'%s*.-x') do n = n + 1 end return n end\n"
    "rspamd_config.R_PATTERNS_OK = function() local a, b = ('hello world'):find('o w') "
    "local k, v = ('key=val'):match('(%w+)=(%w+)') local g, n = ('a b c'):gsub('%w', '%0%0') "
    "local t = {} for w in ('one two'):gmatch('%a+') do t[#t + 1] = w end "
    "return table.concat({a, b, k, v, g, n, t[1], t[2], ('x(a(b)c)y'):match('%b()'), "
    "('THE (quick) fox'):find('%f[%a]%a+', 5), ('  trim  '):match('^%s*(.-)%s*$'), "
    "('abc'):match('()b()'), ('a.b'):find('.', 1, true), string.format('%d', 7)}, ',') end\n"
    "rspamd_config:register_symbol{type='postfilter', callback=function() end, priority=5}\n";

static size_t rule_index(struct as_lua *s, const char *name)
{
    for (size_t i = 0; i < as_lua_rule_count(s); i++)
        if (as_lua_rule_at(s, i)->name && strcmp(as_lua_rule_at(s, i)->name, name) == 0)
            return i;
    return SIZE_MAX;
}

static void test_rules(void)
{
    char err[768], out[256], dir[512], sub[600];
    new_dir(dir, sizeof dir);
    /* a module below lua.dir for require('site.mod') */
    snprintf(sub, sizeof sub, "%s/site", dir);
    mkdir(sub, 0700);
    write_file(sub, "mod.lua", "return { v = 'site' }\n", 0);
    struct as_lua *s = start_with(dir, "rules.lua", RULES, 0, "8M", err, sizeof err);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "start: %s\n", err);
        return;
    }
    CHECK_INT(as_lua_rule_count(s), 20);
    const struct as_symbol_def *defs;
    size_t nd = as_lua_service.symbols(s, &defs);
    CHECK_INT(nd, 19);   /* the unnamed postfilter declares none */
    CHECK_STR(defs[0].name, "R_PCALL");
    CHECK_DBL(defs[0].score, 2.5);
    CHECK_STR(defs[0].group, "g");
    CHECK_STR(defs[0].description, "d");
    CHECK_INT(as_lua_rule_at(s, 19)->type, AS_LUA_POSTFILTER);
    CHECK_INT(as_lua_rule_at(s, 19)->priority, 5);
    CHECK(strstr(as_lua_rule_at(s, 0)->where, "rules.lua:3") != NULL);

    static const char *const loops[] = { "R_PCALL", "R_XPCALL", "R_CORO" };
    for (size_t i = 0; i < AS_ARRAY_LEN(loops); i++) {
        size_t k = rule_index(s, loops[i]);
        CHECK_INT(run_rule(s, k, out, sizeof out, err, sizeof err), AS_LUA_OVERRUN);
        CHECK(strstr(err, "instruction budget exhausted") != NULL);
        CHECK(strstr(err, "rules.lua:") != NULL);
        CHECK(!as_lua_rule_at(s, k)->disabled);
    }
    /* a single pcall (xpcall, coroutine.resume) cannot swallow the stop,
     * nor a memory error, and go on */
    static const char *const catches[] = { "R_CATCH", "R_XCATCH", "R_COCATCH" };
    for (size_t i = 0; i < AS_ARRAY_LEN(catches); i++)
        CHECK_INT(run_rule(s, rule_index(s, catches[i]), out, sizeof out, err, sizeof err),
                  AS_LUA_OVERRUN);
    CHECK_INT(run_rule(s, rule_index(s, "R_MEMCATCH"), out, sizeof out, err, sizeof err),
              AS_LUA_NOMEM);
    /* a pattern match is charged step by step: quadratic backtracking over
     * a long string, a quadratic plain find and a gmatch loop are stopped
     * like a loop; ordinary patterns give Lua's results */
    static const char *const patterns[] = { "R_PATTERN", "R_PLAIN", "R_GMATCH" };
    for (size_t i = 0; i < AS_ARRAY_LEN(patterns); i++) {
        CHECK_INT(run_rule(s, rule_index(s, patterns[i]), out, sizeof out, err, sizeof err),
                  AS_LUA_OVERRUN);
        CHECK(strstr(err, "instruction budget exhausted") != NULL);
    }
    CHECK_INT(run_rule(s, rule_index(s, "R_PATTERNS_OK"), out, sizeof out, err, sizeof err),
              AS_LUA_DONE);
    CHECK_STR(out, "5,7,key,val,aa bb cc,3,one,two,(a(b)c),6,trim,2,2,7");
    /* the second overrun disables (lua.max_overruns = 2) */
    size_t k = rule_index(s, "R_PCALL");
    CHECK_INT(run_rule(s, k, out, sizeof out, err, sizeof err), AS_LUA_OVERRUN);
    CHECK(as_lua_rule_at(s, k)->disabled);

    CHECK_INT(run_rule(s, rule_index(s, "R_FMT"), out, sizeof out, err, sizeof err),
              AS_LUA_DONE);
    CHECK_STR(out, "a and b % b a nil nil");
    CHECK_INT(run_rule(s, rule_index(s, "R_TABLE"), out, sizeof out, err, sizeof err),
              AS_LUA_DONE);
    CHECK(strcmp(out, "t={1,x=y}") == 0 || strcmp(out, "t={x=y,1}") == 0);

    CHECK_INT(run_rule(s, rule_index(s, "R_MEM"), out, sizeof out, err, sizeof err),
              AS_LUA_NOMEM);
    CHECK(strstr(err, "not enough memory") != NULL);
    CHECK_INT(run_rule(s, rule_index(s, "R_AFTER"), out, sizeof out, err, sizeof err),
              AS_LUA_DONE);
    CHECK_STR(out, "kkkkkkkkkk");

    CHECK_INT(run_rule(s, rule_index(s, "R_REQUIRE"), out, sizeof out, err, sizeof err),
              AS_LUA_DONE);
    CHECK_STR(out, "xsite");
    CHECK_INT(run_rule(s, rule_index(s, "R_BADREQ"), out, sizeof out, err, sizeof err),
              AS_LUA_FAILED);
    CHECK(strstr(err, "bad module name") != NULL);
    CHECK_INT(run_rule(s, rule_index(s, "R_NOMOD"), out, sizeof out, err, sizeof err),
              AS_LUA_FAILED);
    CHECK(strstr(err, "module 'no_such_module' not found") != NULL);

    /* the budget spans the yields of one run: 2 x 60000 loop iterations
     * (one instruction each) are over the 100000 budget, one half is not */
    struct as_lua_run run;
    int nres;
    as_lua_run_start(s, as_lua_rule_at(s, rule_index(s, "R_YIELD")), &run);
    CHECK_INT(as_lua_run_resume(s, &run, 0, &nres, err, sizeof err), AS_LUA_YIELDED);
    CHECK_INT(as_lua_run_resume(s, &run, 0, &nres, err, sizeof err), AS_LUA_OVERRUN);
    as_lua_run_end(s, &run);
    as_lua_run_end(s, &run);   /* idempotent */

    /* /stat's member from this worker's values (the registry would sum
     * them over the workers first) */
    struct sbuf b = {0};
    uint64_t v[16] = {0};
    CHECK(as_lua_service.nmetrics <= 16);
    as_lua_service.read_metrics(s, v);
    as_lua_service.write_stats(s, v, &b);
    CHECK(strstr(b.data, "\"rules\":20") != NULL);
    CHECK(strstr(b.data, "\"budget_overruns\":11") != NULL);
    CHECK(strstr(b.data, "\"memory_errors\":2") != NULL);
    CHECK(strstr(b.data, "\"disabled_rules\":1") != NULL);
    sbuf_free(&b);
    as_lua_service.stop(s);
}

/* rspamd_dns, rspamd_redis and lua_redis can be required by a file's main
 * chunk (rspamd rules do, at their top), before the task bindings fill
 * them in; parse_redis_server() says whether redis.servers is set. */
static void test_modules_at_load(void)
{
    static const char text[] =
        "local rspamd_dns = require 'rspamd_dns'\n"
        "local rspamd_redis = require 'rspamd_redis'\n"
        "local lua_redis = require 'lua_redis'\n"
        "local params = lua_redis.parse_redis_server('site')\n"
        "local same = require('rspamd_redis') == rspamd_redis\n"
        "rspamd_config.MODS = function()\n"
        "  return type(rspamd_dns) .. ',' .. type(rspamd_redis) .. ',' .. tostring(same) ..\n"
        "    ',' .. type(params)\n"
        "end\n";
    for (int on = 0; on < 2; on++) {
        char dir[512], err[512], out[128];
        new_dir(dir, sizeof dir);
        write_file(dir, "mods.lua", text, 0);
        struct as_config *cfg = as_config_new();
        as_config_set(cfg, "lua.dir", dir, "test", 1);
        if (on) as_config_set(cfg, "redis.servers", "127.0.0.1:6379", "test", 2);
        err[0] = '\0';
        struct as_lua *s = as_lua_service.start(NULL, cfg, err, sizeof err);
        as_config_free(cfg);
        if (!s) fprintf(stderr, "modules at load: %s\n", err);
        CHECK(s != NULL);
        if (!s) continue;
        CHECK_INT(run_rule(s, 0, out, sizeof out, err, sizeof err), AS_LUA_DONE);
        CHECK_STR(out, on ? "table,table,true,table" : "table,table,true,nil");
        as_lua_service.stop(s);
    }
}

int main(void)
{
    test_verdict();
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    setenv("AUTHSCAN_LUA_LIB", "../lua/lib", 1);   /* ctest runs in tests/ */
    test_registration_errors();
    test_rules();
    test_modules_at_load();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done();
}
