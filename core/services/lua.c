/*
 * lua.c - the Lua service: state, sandbox, budgets, rule registration
 * and the rspamd_logger module (see lua.h, docs/lua.md).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "services/lua.h"
#include "util/log.h"
#include "util/util.h"

/* The count hook fires every HOOK_STEP instructions: the budget is exact
 * to within that many, and the hook costs next to nothing per instruction. */
#define HOOK_STEP 1000
/* Files in lua.dir, bounded like the rules directories' includes. */
#define MAX_FILES 1024
/* Coroutines kept for reuse (one is enough unless rules wait for DNS). */
#define IDLE_THREADS 16

struct as_lua {
    lua_State *L;                 /* NULL when lua.dir is unset */
    char *dir;                    /* lua.dir */
    char lib_dir[PATH_MAX];       /* the shipped library folder */
    size_t mem_used, mem_cap;
    int enforce;                  /* site code runs: the cap applies */
    long long max_instructions;
    long long max_overruns;
    struct as_lua_run *run;       /* the run whose code executes now */
    int killed;                   /* that run exceeded its budget */
    int need_gc;                  /* a run hit the cap: collect when it ends */
    /* Finished coroutines kept for the next run: creating one per rule
     * and message was a tenth of the cost of a ten-rule file. */
    lua_State *idle[IDLE_THREADS];
    int idle_ref[IDLE_THREADS];
    size_t nidle;
    struct as_lua_rule **rules;
    size_t nrules, rcap;
    struct as_lua_dep *deps;      /* register_dependency() calls */
    size_t ndeps;
    struct as_symbol_def *defs;   /* one per named rule */
    size_t ndefs;
    unsigned long long runs, errors, overruns, nomem;
};

/* ------------------------------------------------------------------ */
/* Memory cap and instruction budget                                    */

static void *cap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct as_lua *s = ud;
    size_t old = ptr ? osize : 0;   /* for a new block osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        s->mem_used -= old;
        return NULL;
    }
    /* Lua may assume that shrinking never fails: only growth is refused. */
    if (nsize > old && s->enforce && s->mem_used - old + nsize > s->mem_cap) return NULL;
    void *p = realloc(ptr, nsize);
    if (!p) return nsize <= old ? ptr : NULL;
    s->mem_used = s->mem_used - old + nsize;
    return p;
}

struct as_lua *as_lua_from(lua_State *L) { return *(struct as_lua **)lua_getextraspace(L); }
lua_State *as_lua_state(struct as_lua *s) { return s->L; }
size_t as_lua_rule_count(const struct as_lua *s) { return s->nrules; }
struct as_lua_rule *as_lua_rule_at(struct as_lua *s, size_t i)
{
    return i < s->nrules ? s->rules[i] : NULL;
}
size_t as_lua_dep_count(const struct as_lua *s) { return s->ndeps; }
const struct as_lua_dep *as_lua_dep_at(const struct as_lua *s, size_t i)
{
    return i < s->ndeps ? &s->deps[i] : NULL;
}

/* Once a run is over budget every later hook raises again, so code that
 * catches the error (pcall in a loop) is stopped within HOOK_STEP more
 * instructions; the sandbox's pcall also re-raises it at once. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
    AS_UNUSED(ar);
    struct as_lua *s = as_lua_from(L);
    if (!s->run) return;
    s->run->budget -= HOOK_STEP;
    if (s->run->budget < 0) {
        s->killed = 1;
        lua_pushfstring(L, "instruction budget exhausted (lua.max_instructions = %I)",
                        (lua_Integer)s->max_instructions);
        lua_error(L);
    }
}

long long *as_lua_budget(lua_State *L)
{
    static long long unlimited;
    struct as_lua *s = as_lua_from(L);
    if (s->run) return &s->run->budget;
    unlimited = LLONG_MAX;
    return &unlimited;
}

void as_lua_budget_exhausted(lua_State *L)
{
    struct as_lua *s = as_lua_from(L);
    s->killed = 1;
    lua_pushfstring(L, "instruction budget exhausted in a pattern match "
                    "(lua.max_instructions = %I)", (lua_Integer)s->max_instructions);
    lua_error(L);
}

static int on_panic(lua_State *L)
{
    const char *m = lua_tostring(L, -1);
    as_log(AS_LOG_ERR, "lua: unprotected error: %s", m ? m : "?");
    abort();
}

/* ------------------------------------------------------------------ */
/* Runs                                                                 */

void as_lua_run_start(struct as_lua *s, struct as_lua_rule *r, struct as_lua_run *run)
{
    if (s->nidle) {
        s->nidle--;
        run->co = s->idle[s->nidle];
        run->ref = s->idle_ref[s->nidle];
    } else {
        run->co = lua_newthread(s->L);
        run->ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
    }
    run->rule = r;
    run->budget = s->max_instructions;
    s->runs++;
    if (r) {
        r->calls++;
        lua_rawgeti(run->co, LUA_REGISTRYINDEX, r->ref);
    }
}

void as_lua_run_end(struct as_lua *s, struct as_lua_run *run)
{
    if (!run->co) return;
    /* a coroutine that returned is as good as new; one that failed or
     * still waits is left to the collector */
    if (lua_status(run->co) == LUA_OK && s->nidle < IDLE_THREADS && !s->need_gc) {
        lua_settop(run->co, 0);
        s->idle[s->nidle] = run->co;
        s->idle_ref[s->nidle] = run->ref;
        s->nidle++;
    } else {
        luaL_unref(s->L, LUA_REGISTRYINDEX, run->ref);
    }
    run->co = NULL;
    run->ref = LUA_NOREF;
    if (s->need_gc) {
        s->need_gc = 0;
        lua_gc(s->L, LUA_GCCOLLECT);
    }
}

/* "FILE:LINE: message" for the error on top of co.  An error raised by
 * error("...") or the VM carries its position already; one raised by the
 * budget or the allocator, or error(x, 0), gets the innermost Lua frame. */
static void error_text(lua_State *co, char *err, size_t errlen)
{
    const char *msg = lua_tostring(co, -1);
    char other[64];
    if (!msg) {
        snprintf(other, sizeof other, "(error object is a %s value)",
                 luaL_typename(co, -1));
        msg = other;
    }
    lua_Debug ar;
    for (int level = 0; lua_getstack(co, level, &ar); level++) {
        if (!lua_getinfo(co, "Sl", &ar) || ar.currentline <= 0) continue;
        size_t n = strlen(ar.short_src);
        if (strncmp(msg, ar.short_src, n) == 0 && msg[n] == ':') break;
        snprintf(err, errlen, "%s:%d: %s", ar.short_src, ar.currentline, msg);
        return;
    }
    snprintf(err, errlen, "%s", msg);
}

enum as_lua_outcome as_lua_run_resume(struct as_lua *s, struct as_lua_run *run, int nargs,
                                      int *nres, char *err, size_t errlen)
{
    struct as_lua_run *outer = s->run;
    int outer_killed = s->killed, outer_enforce = s->enforce;
    s->run = run;
    s->killed = run->budget < 0;
    s->enforce = 1;
    *nres = 0;
    int st = lua_resume(run->co, s->L, nargs, nres);
    int killed = s->killed;
    s->run = outer;
    s->killed = outer_killed;
    s->enforce = outer_enforce;
    if (st == LUA_OK) return AS_LUA_DONE;
    if (st == LUA_YIELD) return AS_LUA_YIELDED;
    error_text(run->co, err, errlen);
    struct as_lua_rule *r = run->rule;
    s->errors++;
    if (r) r->errors++;
    if (killed) {
        s->overruns++;
        if (r && ++r->overruns >= (unsigned long long)s->max_overruns) r->disabled = 1;
        return AS_LUA_OVERRUN;
    }
    if (st == LUA_ERRMEM) {
        s->nomem++;
        s->need_gc = 1;
        return AS_LUA_NOMEM;
    }
    return AS_LUA_FAILED;
}

/* ------------------------------------------------------------------ */
/* Sandbox                                                              */

/* pcall and xpcall as in lbaselib.c, except that the budget's error and
 * a memory error go on up: site code cannot catch its own stop. */
static int finish_pcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        if (as_lua_from(L)->killed || status == LUA_ERRMEM) return lua_error(L);
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
    return finish_pcall(L, status, 0);
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
    return finish_pcall(L, status, 2);
}

/* coroutine.resume catches errors too. */
static int sb_co_resume(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    if (as_lua_from(L)->killed) {
        lua_pushstring(L, "instruction budget exhausted");
        return lua_error(L);
    }
    return lua_gettop(L);
}

/* load() of text only: bytecode can break the VM's invariants. */
static int sb_load(lua_State *L)
{
    int n = lua_gettop(L);
    if (n < 3) lua_settop(L, 3);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int sb_collectgarbage(lua_State *L)
{
    static const char *const allowed[] = { "collect", "count", "step", "isrunning", NULL };
    luaL_checkoption(L, 1, "collect", allowed);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static void log_line(enum as_log_level lv, const char *id, const char *fmt, ...) AS_PRINTF(3, 4);
static void log_line(enum as_log_level lv, const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    as_logv(lv, id, fmt, ap);
    va_end(ap);
}

static int sb_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_line(AS_LOG_INFO, NULL, "lua: print: %s", lua_tostring(L, -1));
    return 0;
}

static int sb_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, 2, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    size_t len = strlen(name);
    int ok = len > 0 && len < 128 && name[0] != '.' && name[len - 1] != '.';
    for (size_t i = 0; ok && i < len; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
             (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
             (name[i] == '.' && name[i + 1] != '.');
    if (!ok) return luaL_error(L, "require: bad module name '%s' (want letters, digits, _ "
                               "and inner dots)", name);
    char rel[160];
    snprintf(rel, sizeof rel, "%s.lua", name);
    for (char *p = rel; *p && strcmp(p, ".lua") != 0; p++)
        if (*p == '.') *p = '/';
    struct as_lua *s = as_lua_from(L);
    const char *dirs[] = { s->lib_dir, s->dir };
    for (size_t i = 0; i < AS_ARRAY_LEN(dirs); i++) {
        if (!dirs[i] || !*dirs[i]) continue;
        char path[PATH_MAX + 200];
        snprintf(path, sizeof path, "%s/%s", dirs[i], rel);
        if (access(path, R_OK) != 0) continue;
        if (luaL_loadfilex(L, path, "t") != LUA_OK) return lua_error(L);
        lua_pushstring(L, name);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, 2, name);
        return 1;
    }
    return luaL_error(L, "module '%s' not found (built-in modules, then %s under %s and %s)",
                      name, rel, s->lib_dir[0] ? s->lib_dir : "(no library folder)",
                      s->dir ? s->dir : "(no lua.dir)");
}

void as_lua_set_module(lua_State *L, const char *name)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_insert(L, -2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* Wraps global (or table field) `name` in fn with the original as upvalue. */
static void wrap_field(lua_State *L, int table, const char *name, lua_CFunction fn)
{
    table = lua_absindex(L, table);
    lua_getfield(L, table, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, table, name);
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
}

/* ------------------------------------------------------------------ */
/* rspamd_logger                                                        */

static void add_value(lua_State *L, luaL_Buffer *b, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || depth > 2 || luaL_getmetafield(L, idx, "__tostring")) {
        if (lua_type(L, idx) == LUA_TTABLE && depth <= 2) lua_pop(L, 1);
        luaL_tolstring(L, idx, NULL);
        luaL_addvalue(b);
        return;
    }
    luaL_addchar(b, '{');
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (n++ == 32) {
            lua_pop(L, 2);
            luaL_addstring(b, "...");
            break;
        }
        if (n > 1) luaL_addchar(b, ',');
        if (lua_type(L, -2) == LUA_TSTRING) {
            luaL_addstring(b, lua_tostring(L, -2));
            luaL_addchar(b, '=');
        } else if (lua_type(L, -2) != LUA_TNUMBER) {
            luaL_tolstring(L, -2, NULL);
            luaL_addvalue(b);
            luaL_addchar(b, '=');
        }
        add_value(L, b, -1, depth + 1);
        lua_pop(L, 1);
    }
    luaL_addchar(b, '}');
}

void as_lua_push_format(lua_State *L, int fmt_index, int first)
{
    size_t flen;
    const char *f = luaL_checklstring(L, fmt_index, &flen);
    int top = lua_gettop(L), next = first;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < flen; i++) {
        if (f[i] != '%' || i + 1 == flen) {
            luaL_addchar(&b, f[i]);
            continue;
        }
        char c = f[++i];
        int arg = 0;
        if (c == 's') {
            arg = next++;
        } else if (c >= '1' && c <= '9') {
            int k = c - '0';
            while (i + 1 < flen && f[i + 1] >= '0' && f[i + 1] <= '9' && k < 100)
                k = k * 10 + (f[++i] - '0');
            arg = first + k - 1;
        } else if (c == '%') {
            luaL_addchar(&b, '%');
            continue;
        } else {
            luaL_addchar(&b, '%');
            luaL_addchar(&b, c);
            continue;
        }
        if (arg > top) luaL_addstring(&b, "nil");
        else add_value(L, &b, arg, 0);
    }
    luaL_pushresult(&b);
}

/* rspamd's (object, fmt, ...) or (fmt, ...): the object names the task. */
static int log_x(lua_State *L, enum as_log_level lv)
{
    const char *id = NULL;
    int fmt = 1;
    if (lua_type(L, 1) != LUA_TSTRING) {
        const struct as_lua_task_ud *ud = luaL_testudata(L, 1, AS_LUA_TASK_MT);
        if (ud && ud->task) id = ud->id;
        fmt = 2;
    }
    if (lv == AS_LOG_DEBUG && as_log_get_level() < AS_LOG_DEBUG) return 0;
    as_lua_push_format(L, fmt, fmt + 1);
    lua_Debug ar;
    char where[128] = "";
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        snprintf(where, sizeof where, "%s:%d: ", ar.short_src, ar.currentline);
    log_line(lv, id, "lua: %s%s", where, lua_tostring(L, -1));
    return 0;
}

static int log_infox(lua_State *L) { return log_x(L, AS_LOG_INFO); }
static int log_warnx(lua_State *L) { return log_x(L, AS_LOG_WARN); }
static int log_errx(lua_State *L) { return log_x(L, AS_LOG_ERR); }
static int log_messagex(lua_State *L) { return log_x(L, AS_LOG_NOTICE); }
static int log_debugx(lua_State *L) { return log_x(L, AS_LOG_DEBUG); }
/* debugm(module, object, fmt, ...) */
static int log_debugm(lua_State *L)
{
    lua_remove(L, 1);
    return log_x(L, AS_LOG_DEBUG);
}

static int log_plain(lua_State *L, enum as_log_level lv)
{
    log_line(lv, NULL, "lua: %s", luaL_checkstring(L, 1));
    return 0;
}
static int log_info(lua_State *L) { return log_plain(L, AS_LOG_INFO); }
static int log_warn(lua_State *L) { return log_plain(L, AS_LOG_WARN); }
static int log_err(lua_State *L) { return log_plain(L, AS_LOG_ERR); }
static int log_message(lua_State *L) { return log_plain(L, AS_LOG_NOTICE); }

static int log_slog(lua_State *L)
{
    as_lua_push_format(L, 1, 2);
    return 1;
}

static const luaL_Reg logger_funcs[] = {
    { "infox", log_infox }, { "warnx", log_warnx }, { "errx", log_errx },
    { "messagex", log_messagex }, { "debugx", log_debugx }, { "debugm", log_debugm },
    { "info", log_info }, { "warn", log_warn }, { "err", log_err },
    { "message", log_message }, { "slog", log_slog }, { NULL, NULL },
};

/* ------------------------------------------------------------------ */
/* rspamd_config: rule registration                                     */

static const struct {
    const char *name;
    enum as_lua_rule_type type;
} rule_types[] = {
    { "normal", AS_LUA_NORMAL }, { "callback", AS_LUA_NORMAL },
    { "prefilter", AS_LUA_PREFILTER }, { "postfilter", AS_LUA_POSTFILTER },
    { "idempotent", AS_LUA_IDEMPOTENT },
};

static int valid_symbol(const char *n)
{
    if (!*n || strlen(n) > 128) return 0;
    for (; *n; n++)
        if (!((*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') || *n == '_')) return 0;
    return 1;
}

/* Keys rspamd accepts that change nothing here: taken, and logged once
 * per rule, so that a rule written for rspamd loads unchanged. */
static const char *const inert_keys[] = { "flags", "augmentations", "groups", "parent",
                                          "allowed_ids", "forbidden_ids", "nshots" };

/* register_symbol{...} from the table at index t; name_override for the
 * rspamd_config.NAME = {...} shorthand.  Pushes the rule's id. */
static int register_rule(lua_State *L, int t, const char *name_override)
{
    struct as_lua *s = as_lua_from(L);
    t = lua_absindex(L, t);
    luaL_checktype(L, t, LUA_TTABLE);
    const char *name = name_override, *group = NULL, *desc = NULL;
    enum as_lua_rule_type type = AS_LUA_NORMAL;
    double score = 0;
    lua_Integer prio = 0;
    int have_cb = 0, one_shot = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "register_symbol: keys must be strings");
        const char *k = lua_tostring(L, -2);
        int vt = lua_type(L, -1);
        if (strcmp(k, "name") == 0) {
            if (vt != LUA_TSTRING) return luaL_error(L, "register_symbol: name must be a string");
            if (!name_override) name = lua_tostring(L, -1);
        } else if (strcmp(k, "type") == 0) {
            if (vt != LUA_TSTRING) return luaL_error(L, "register_symbol: type must be a string");
            const char *tv = lua_tostring(L, -1);
            size_t tl = strcspn(tv, ",");   /* "normal,nostat": the kind comes first */
            size_t i;
            for (i = 0; i < AS_ARRAY_LEN(rule_types); i++)
                if (strlen(rule_types[i].name) == tl && strncmp(tv, rule_types[i].name, tl) == 0)
                    break;
            if (i == AS_ARRAY_LEN(rule_types))
                return luaL_error(L, "register_symbol: type '%s' is not supported (normal, "
                                  "callback, prefilter, postfilter, idempotent)", tv);
            type = rule_types[i].type;
        } else if (strcmp(k, "callback") == 0) {
            if (vt != LUA_TFUNCTION)
                return luaL_error(L, "register_symbol: callback must be a function");
            have_cb = 1;
        } else if (strcmp(k, "score") == 0 || strcmp(k, "weight") == 0) {
            if (vt != LUA_TNUMBER) return luaL_error(L, "register_symbol: %s must be a number", k);
            score = lua_tonumber(L, -1);
        } else if (strcmp(k, "group") == 0) {
            if (vt != LUA_TSTRING) return luaL_error(L, "register_symbol: group must be a string");
            group = lua_tostring(L, -1);
        } else if (strcmp(k, "description") == 0) {
            if (vt != LUA_TSTRING)
                return luaL_error(L, "register_symbol: description must be a string");
            desc = lua_tostring(L, -1);
        } else if (strcmp(k, "priority") == 0) {
            if (!lua_isinteger(L, -1))
                return luaL_error(L, "register_symbol: priority must be an integer");
            prio = lua_tointeger(L, -1);
            if (prio < -1000 || prio > 1000)
                return luaL_error(L, "register_symbol: priority must be -1000 to 1000");
        } else if (strcmp(k, "one_shot") == 0) {
            one_shot = lua_toboolean(L, -1);
        } else {
            size_t i;
            for (i = 0; i < AS_ARRAY_LEN(inert_keys); i++)
                if (strcmp(k, inert_keys[i]) == 0) break;
            if (i == AS_ARRAY_LEN(inert_keys))
                return luaL_error(L, "register_symbol: unknown key '%s'", k);
            lua_Debug ar;
            int line = lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) ? ar.currentline : 0;
            log_line(AS_LOG_INFO, NULL, "lua: %s:%d: register_symbol: '%s' has no effect in "
                     "authscan (see docs/lua.md)", line ? ar.short_src : "?", line, k);
        }
        lua_pop(L, 1);
    }
    if (!have_cb) return luaL_error(L, "register_symbol: no callback");
    if (name && !valid_symbol(name))
        return luaL_error(L, "register_symbol: invalid symbol name '%s' (want [A-Z0-9_]+)", name);
    for (size_t i = 0; name && i < s->nrules; i++)
        if (s->rules[i]->name && strcmp(s->rules[i]->name, name) == 0)
            return luaL_error(L, "register_symbol: symbol %s registered twice (first at %s)",
                              name, s->rules[i]->where);
    if (s->nrules == s->rcap) {
        s->rcap = s->rcap ? s->rcap * 2 : 16;
        s->rules = xrealloc(s->rules, s->rcap * sizeof *s->rules);
    }
    struct as_lua_rule *r = xcalloc(1, sizeof *r);
    r->name = name ? xstrdup(name) : NULL;
    r->type = type;
    r->priority = (int)prio;
    lua_getfield(L, t, "callback");
    lua_Debug ar;
    lua_pushvalue(L, -1);
    if (lua_getinfo(L, ">S", &ar))
        snprintf(r->where, sizeof r->where, "%s:%d", ar.short_src, ar.linedefined);
    r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->rules[s->nrules++] = r;
    if (name) {
        s->defs = xrealloc(s->defs, (s->ndefs + 1) * sizeof *s->defs);
        s->defs[s->ndefs++] = (struct as_symbol_def){
            r->name, score, group ? xstrdup(group) : NULL, desc ? xstrdup(desc) : NULL,
            one_shot ? AS_SYM_ONE_SHOT : 0u };
    }
    lua_pushinteger(L, (lua_Integer)s->nrules);
    return 1;
}

static int cfg_register_symbol(lua_State *L)
{
    /* rspamd_config:register_symbol{...}; a dot call works too */
    return register_rule(L, lua_type(L, 2) == LUA_TTABLE ? 2 : 1, NULL);
}

/* rspamd_config.NAME = function(task) ... end  or  = { callback = ..., ... } */
static int cfg_newindex(lua_State *L)
{
    const char *name = luaL_checkstring(L, 2);
    if (lua_type(L, 3) == LUA_TFUNCTION) {
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "callback");
        register_rule(L, -1, name);
        return 0;
    }
    if (lua_type(L, 3) != LUA_TTABLE)
        return luaL_error(L, "rspamd_config.%s: want a function or a table with a callback",
                          name);
    register_rule(L, 3, name);
    return 0;
}

/* rspamd_config:register_dependency(symbol, dependency): Lua rules run one
 * after the other, after every plugin, so the order is already fixed; the
 * call is recorded and checked against it once all symbols are known
 * (scan/lua_task.c), never accepted blindly. */
static int cfg_register_dependency(lua_State *L)
{
    struct as_lua *s = as_lua_from(L);
    int a = lua_gettop(L) >= 3 ? 2 : 1;   /* colon or dot call */
    const char *sym = luaL_checkstring(L, a), *dep = luaL_checkstring(L, a + 1);
    s->deps = xrealloc(s->deps, (s->ndeps + 1) * sizeof *s->deps);
    struct as_lua_dep *d = &s->deps[s->ndeps++];
    d->symbol = xstrdup(sym);
    d->dep = xstrdup(dep);
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar))
        snprintf(d->where, sizeof d->where, "%s:%d", ar.short_src, ar.currentline);
    else
        snprintf(d->where, sizeof d->where, "?");
    return 0;
}

/* Module options live in authscan's config, not in rspamd_config. */
static int cfg_get_all_opt(lua_State *L)
{
    lua_pushnil(L);
    return 1;
}

static const luaL_Reg config_methods[] = {
    { "register_symbol", cfg_register_symbol }, { "get_all_opt", cfg_get_all_opt },
    { "register_dependency", cfg_register_dependency }, { NULL, NULL },
};

/* ------------------------------------------------------------------ */
/* The state                                                            */

static int open_sandbox(lua_State *L)
{
    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);
    open_lib(L, LUA_COLIBNAME, luaopen_coroutine);
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    static const char *const removed[] = { "dofile", "loadfile" };
    for (size_t i = 0; i < AS_ARRAY_LEN(removed); i++) {
        lua_pushnil(L);
        lua_setfield(L, g, removed[i]);
    }
    lua_pushcfunction(L, sb_pcall);
    lua_setfield(L, g, "pcall");
    lua_pushcfunction(L, sb_xpcall);
    lua_setfield(L, g, "xpcall");
    lua_pushcfunction(L, sb_print);
    lua_setfield(L, g, "print");
    lua_pushcfunction(L, sb_require);
    lua_setfield(L, g, "require");
    wrap_field(L, g, "load", sb_load);
    wrap_field(L, g, "collectgarbage", sb_collectgarbage);
    lua_getfield(L, g, LUA_COLIBNAME);
    wrap_field(L, -1, "resume", sb_co_resume);
    lua_pop(L, 1);
    lua_getfield(L, g, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    as_lua_open_match(L, -1);   /* patterns charged to the budget */
    lua_pop(L, 1);

    /* os: the clock and the calendar only */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 4);
    static const char *const os_keep[] = { "time", "clock", "date", "difftime" };
    for (size_t i = 0; i < AS_ARRAY_LEN(os_keep); i++) {
        lua_getfield(L, -2, os_keep[i]);
        lua_setfield(L, -2, os_keep[i]);
    }
    lua_setfield(L, g, LUA_OSLIBNAME);
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, g, LUA_OSLIBNAME);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 1);

    luaL_newlib(L, logger_funcs);
    as_lua_set_module(L, "rspamd_logger");
    /* rspamd_dns and rspamd_redis exist from the start, so that a file's
     * main chunk may require them (rspamd rules do, at their top); the
     * task bindings (scan/lua_task.c) fill them in before a rule runs. */
    lua_newtable(L);
    as_lua_set_module(L, "rspamd_dns");
    lua_newtable(L);
    as_lua_set_module(L, "rspamd_redis");

    /* rspamd_config */
    lua_newtable(L);
    lua_createtable(L, 0, 2);
    luaL_newlib(L, config_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, cfg_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    lua_setfield(L, g, "rspamd_config");
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads and runs one site file; 0 or -1 with "FILE:LINE: message". */
static int load_file(struct as_lua *s, const char *path, char *err, size_t errlen)
{
    struct as_lua_run run;
    as_lua_run_start(s, NULL, &run);
    s->enforce = 1;
    int st = luaL_loadfilex(run.co, path, "t");
    s->enforce = 0;
    int rc = 0;
    if (st != LUA_OK) {
        const char *m = lua_tostring(run.co, -1);
        /* a syntax error reads "FILE:LINE: ..."; an unreadable file does not */
        if (m && strncmp(m, "cannot ", 7) == 0) snprintf(err, errlen, "%s: %s", path, m);
        else snprintf(err, errlen, "%s", m ? m : "cannot load");
        rc = -1;
    } else {
        int nres;
        enum as_lua_outcome o = as_lua_run_resume(s, &run, 0, &nres, err, errlen);
        if (o == AS_LUA_YIELDED) {
            snprintf(err, errlen, "%s: the file's main chunk waited for an asynchronous call; "
                     "only rule callbacks may", path);
            rc = -1;
        } else if (o != AS_LUA_DONE) {
            rc = -1;
        }
    }
    as_lua_run_end(s, &run);
    return rc;
}

static int load_dir(struct as_lua *s, char *err, size_t errlen)
{
    DIR *d = opendir(s->dir);
    if (!d) {
        snprintf(err, errlen, "lua.dir %s: %s", s->dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 5 || strcmp(de->d_name + l - 4, ".lua") != 0) continue;
        if (n == MAX_FILES) {
            snprintf(err, errlen, "lua.dir %s: more than %d *.lua files", s->dir, MAX_FILES);
            rc = -1;
            break;
        }
        names = xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", s->dir, names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        rc = load_file(s, path, err, errlen);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* The shipped library folder: next to the binary (the build tree mirrors
 * the install tree), else the install path. */
static void find_lib_dir(char *out, size_t len)
{
    const char *env = getenv("AUTHSCAN_LUA_LIB");
    if (env && *env) {
        as_strlcpy(out, env, len);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char rel[PATH_MAX + 64];
            snprintf(rel, sizeof rel, "%.*s/%s", (int)(sizeof exe - 64), exe,
                     AUTHSCAN_LUA_RELDIR);
            struct stat st;
            if (stat(rel, &st) == 0 && S_ISDIR(st.st_mode)) {
                as_strlcpy(out, rel, len);
                return;
            }
        }
    }
    as_strlcpy(out, AUTHSCAN_LUA_DIR, len);
}

/* ------------------------------------------------------------------ */
/* The service (service.h)                                              */

static const struct as_config_key lua_keys[] = {
    { "dir", AS_OPT_STRING, NULL, "site *.lua files, loaded in name order (unset: no Lua)" },
    { "max_memory", AS_OPT_SIZE, "64M", "memory cap of one worker's Lua state" },
    { "max_instructions", AS_OPT_INT, "1000000", "VM instructions one callback may run" },
    { "max_overruns", AS_OPT_INT, "3", "budget overruns before a rule is disabled until reload" },
};

static void lua_service_stop(void *state)
{
    struct as_lua *s = state;
    if (!s) return;
    if (s->L) lua_close(s->L);
    for (size_t i = 0; i < s->nrules; i++) {
        free((char *)s->rules[i]->name);
        free(s->rules[i]);
    }
    for (size_t i = 0; i < s->ndefs; i++) {
        free((char *)s->defs[i].group);
        free((char *)s->defs[i].description);
    }
    for (size_t i = 0; i < s->ndeps; i++) {
        free((char *)s->deps[i].symbol);
        free((char *)s->deps[i].dep);
    }
    free(s->deps);
    free(s->defs);
    free(s->rules);
    free(s->dir);
    free(s);
}

static int check_range(const struct as_config *cfg, const char *key, long long min,
                       long long max, const char *shown, char *err, size_t errlen)
{
    const struct as_config_entry *e = as_config_find(cfg, key);
    if (!e) return 0;
    long long v;
    unsigned long long uv;
    int ok = strcmp(key, "lua.max_memory") == 0
                 ? as_parse_size(e->value, &uv) == 0 && uv >= (unsigned long long)min &&
                       uv <= (unsigned long long)max
                 : as_parse_int(e->value, &v) == 0 && v >= min && v <= max;
    if (ok) return 0;
    return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected %s", e->value,
                           key, shown);
}

static int lua_service_check(const struct as_config *cfg, char *err, size_t errlen)
{
    if (check_range(cfg, "lua.max_memory", 1LL << 20, 4LL << 30, "1M to 4G", err, errlen) < 0 ||
        check_range(cfg, "lua.max_instructions", 10000, 10000000000LL, "10000 to 10000000000",
                    err, errlen) < 0 ||
        check_range(cfg, "lua.max_overruns", 1, 1000000, "1 to 1000000", err, errlen) < 0)
        return -1;
    const struct as_config_entry *e = as_config_find(cfg, "lua.dir");
    struct stat st;
    if (e && (stat(e->value, &st) != 0 || !S_ISDIR(st.st_mode)))
        return as_config_error(err, errlen, e, "lua.dir '%s' is not a directory", e->value);
    /* the files themselves are compiled and run by start() in the check */
    return 0;
}

static void *lua_service_start(struct event_base *base, const struct as_config *cfg, char *err,
                               size_t errlen)
{
    AS_UNUSED(base);
    struct as_lua *s = xcalloc(1, sizeof *s);
    s->mem_cap = (size_t)as_config_size(cfg, "lua.max_memory", 64ULL << 20);
    s->max_instructions = as_config_int(cfg, "lua.max_instructions", 1000000);
    s->max_overruns = as_config_int(cfg, "lua.max_overruns", 3);
    const char *dir = as_config_str(cfg, "lua.dir", NULL);
    if (!dir || !*dir) return s;
    s->dir = xstrdup(dir);
    find_lib_dir(s->lib_dir, sizeof s->lib_dir);
    s->L = lua_newstate(cap_alloc, s);
    if (!s->L) as_oom();
    *(struct as_lua **)lua_getextraspace(s->L) = s;
    lua_atpanic(s->L, on_panic);
    lua_sethook(s->L, count_hook, LUA_MASKCOUNT, HOOK_STEP);   /* threads inherit it */
    lua_pushcfunction(s->L, open_sandbox);
    if (lua_pcall(s->L, 0, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "lua: cannot set up the sandbox: %s", lua_tostring(s->L, -1));
        lua_service_stop(s);
        return NULL;
    }
    /* lua_redis.parse_redis_server() answers nil without Redis, as
     * rspamd's does without servers: a rule can disable itself at load */
    luaL_getsubtable(s->L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(s->L, -1, "rspamd_redis");
    const char *const *servers;
    lua_pushboolean(s->L, as_config_list(cfg, "redis.servers", &servers) > 0);
    lua_setfield(s->L, -2, "authscan_enabled");
    lua_pop(s->L, 2);
    if (load_dir(s, err, errlen) < 0) {
        lua_service_stop(s);
        return NULL;
    }
    /* The incremental collector (the default): the generational one measured
     * no better here, and Lua 5.4.4 (Debian 12) mis-sets its next target after
     * a full collection, which a memory error triggers. */
    lua_gc(s->L, LUA_GCCOLLECT);
    return s;
}

enum { LM_RUNS, LM_ERRORS, LM_OVERRUNS, LM_NOMEM, LM_DISABLED, LM_MEMORY, LM__COUNT };

static const struct as_metric_def lua_metrics[LM__COUNT] = {
    [LM_RUNS] = { "runs", "lua_runs_total", AS_METRIC_COUNTER, "Lua rule callbacks run." },
    [LM_ERRORS] = { "errors", "lua_errors_total", AS_METRIC_COUNTER,
                    "Lua rule callbacks that failed (any reason)." },
    [LM_OVERRUNS] = { "budget_overruns", "lua_budget_kills_total", AS_METRIC_COUNTER,
                      "Lua rule callbacks stopped by the instruction budget." },
    [LM_NOMEM] = { "memory_errors", "lua_memory_errors_total", AS_METRIC_COUNTER,
                   "Lua rule callbacks stopped by the memory cap." },
    [LM_DISABLED] = { "disabled_rules", "lua_disabled_rules", AS_METRIC_GAUGE,
                      "Lua rules disabled after repeated failures, summed over workers." },
    [LM_MEMORY] = { "memory", "lua_memory_bytes", AS_METRIC_GAUGE,
                    "Memory held by the Lua states of all workers." },
};

static void lua_service_metrics(const void *state, uint64_t *v)
{
    const struct as_lua *s = state;
    unsigned long long disabled = 0;
    for (size_t i = 0; i < s->nrules; i++) disabled += s->rules[i]->disabled != 0;
    v[LM_RUNS] = s->runs;
    v[LM_ERRORS] = s->errors;
    v[LM_OVERRUNS] = s->overruns;
    v[LM_NOMEM] = s->nomem;
    v[LM_DISABLED] = disabled;
    v[LM_MEMORY] = s->mem_used;
}

static void lua_service_stats(const void *state, const uint64_t *t, struct sbuf *b)
{
    const struct as_lua *s = state;
    /* "enabled", "rules" and "max_memory" are this worker's settings */
    sbuf_printf(b, "{\"enabled\":%s,\"rules\":%zu", s->L ? "true" : "false", s->nrules);
    for (int i = 0; i < LM__COUNT; i++)
        sbuf_printf(b, ",\"%s\":%llu", lua_metrics[i].key, (unsigned long long)t[i]);
    sbuf_printf(b, ",\"max_memory\":%zu}", s->mem_cap);
}

static size_t lua_service_symbols(const void *state, const struct as_symbol_def **defs)
{
    const struct as_lua *s = state;
    *defs = s->defs;
    return s->ndefs;
}

const struct as_service as_lua_service = {
    .name = "lua",
    .keys = lua_keys,
    .nkeys = AS_ARRAY_LEN(lua_keys),
    .check = lua_service_check,
    .start = lua_service_start,
    .stop = lua_service_stop,
    .metrics = lua_metrics,
    .nmetrics = LM__COUNT,
    .read_metrics = lua_service_metrics,
    .write_stats = lua_service_stats,
    .symbols = lua_service_symbols,
};
