/*
 * lua_task.c - the task object of the Lua API and the built-in plugin
 * that runs the Lua rules in the stages (see lua_task.h, docs/lua.md).
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "authscan/arc.h"
#include "authscan/dkim.h"
#include "authscan/dmarc.h"
#include "authscan/spf.h"
#include "mail/message.h"
#include "scan/engine.h"
#include "scan/lua_task.h"
#include "scan/task.h"
#include "services/lua.h"
#include "services/redis.h"
#include "util/pool.h"
#include "util/util.h"

#define IP_MT "rspamd{ip}"
/* Options one callback return or insert_result call may carry; the task
 * bounds them again (MAX_SYMBOL_OPTIONS in task.c). */
#define MAX_OPTS 64

enum lua_stage { LS_SCAN, LS_POSTFILTER, LS_FINISH, LS_COUNT };
enum lua_result { LR_SPF, LR_DKIM, LR_DMARC, LR_ARC, LR_COUNT };

/* The plugin's state: the service and the rules of each stage in order. */
struct lua_plugin {
    struct as_lua *s;
    struct as_lua_rule **stage[LS_COUNT];
    size_t nstage[LS_COUNT];
};

struct lua_cb_op;

/* One task's Lua side, in the task pool (the Lua service's task slot). */
struct lua_task_ctx {
    struct as_task *t;
    struct as_lua *s;
    struct as_lua_task_ud *ud;
    int ud_ref;                   /* the task userdata, anchored */
    struct as_lua_rule **order;   /* the stage's rules */
    size_t n, next;
    enum lua_stage stage;
    struct as_lua_run run;        /* run.co != NULL: a rule is running */
    struct as_lua_rule *current;  /* the rule whose run or callbacks are outstanding */
    int waiting;                  /* its coroutine waits for DNS or Redis */
    struct lua_cb_op *ops;        /* callback-style requests not answered yet */
    int sync_ref;                 /* the results of a waiting conn:exec(), or 0 */
    size_t sync_left;             /* its commands not answered yet */
    size_t sync_n;                /* its commands */
    int result_ref[LR_COUNT];     /* get_spf()... proxies, 0 until made */
};

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static struct as_task *check_task(lua_State *L, int idx)
{
    struct as_lua_task_ud *ud = luaL_checkudata(L, idx, AS_LUA_TASK_MT);
    if (!ud->task) luaL_error(L, "task used after its scan ended");
    return ud->task;
}

static struct lua_task_ctx *task_ctx(struct as_task *t)
{
    void **slot = as_task_service_slot(t, &as_lua_service);
    return slot ? *slot : NULL;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v ? v : "");
    lua_setfield(L, -2, k);
}

/* Strings, numbers and arrays of them from index first.. into opts. */
static size_t collect_opts(lua_State *L, int first, int last, const char **opts)
{
    size_t n = 0;
    for (int i = first; i <= last && n < MAX_OPTS; i++) {
        int ty = lua_type(L, i);
        if (ty == LUA_TSTRING || ty == LUA_TNUMBER) {
            opts[n++] = lua_tostring(L, i);
        } else if (ty == LUA_TTABLE) {
            lua_Integer len = luaL_len(L, i);
            for (lua_Integer k = 1; k <= len && n < MAX_OPTS; k++) {
                lua_geti(L, i, k);
                /* the table keeps the string alive */
                if (lua_type(L, -1) == LUA_TSTRING) opts[n++] = lua_tostring(L, -1);
                lua_pop(L, 1);
            }
        }
    }
    return n;
}

static void push_mailbox(lua_State *L, const char *addr, const char *user, const char *domain,
                         const char *name)
{
    lua_createtable(L, 0, 4);
    set_str(L, "addr", addr);
    set_str(L, "user", user);
    set_str(L, "domain", domain);
    set_str(L, "name", name);
}

/* An SMTP address "user@domain" split at its last '@'. */
static void push_smtp_addr(lua_State *L, const char *a)
{
    const char *at = strrchr(a, '@');
    lua_createtable(L, 0, 4);
    set_str(L, "addr", a);
    if (at) {
        lua_pushlstring(L, a, (size_t)(at - a));
        lua_setfield(L, -2, "user");
        char *d = xstrdup(at + 1);
        as_str_lower(d);
        set_str(L, "domain", d);
        free(d);
    } else {
        set_str(L, "user", a);
        set_str(L, "domain", "");
    }
    set_str(L, "name", "");
}

static void push_list(lua_State *L, const struct as_address_list *l, int *k)
{
    for (size_t i = 0; i < l->nboxes; i++) {
        const struct as_mailbox *m = &l->boxes[i];
        push_mailbox(L, m->addr, m->local_part, m->domain, m->display_name);
        lua_rawseti(L, -2, ++*k);
    }
}

/* ------------------------------------------------------------------ */
/* task methods                                                         */

static int t_insert_result(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    int a = lua_type(L, 2) == LUA_TBOOLEAN ? 3 : 2;   /* rspamd's optional `enforce` */
    const char *name = luaL_checkstring(L, a);
    double w = luaL_optnumber(L, a + 1, 1.0);
    const char *opts[MAX_OPTS];
    size_t n = collect_opts(L, a + 2, lua_gettop(L), opts);
    lua_pushboolean(L, as_task_add_symbolv(t, name, w, opts, n) == 0);
    return 1;
}

static int t_has_symbol(lua_State *L)
{
    lua_pushboolean(L, as_task_has_symbol(check_task(L, 1), luaL_checkstring(L, 2)));
    return 1;
}

static void push_symbol(lua_State *L, const struct as_symbol_result *r)
{
    lua_createtable(L, 0, 6);
    set_str(L, "name", r->name);
    lua_pushnumber(L, r->score);
    lua_setfield(L, -2, "score");
    lua_pushnumber(L, r->weight);
    lua_setfield(L, -2, "weight");
    if (r->group) {
        set_str(L, "group", r->group);
        lua_createtable(L, 1, 0);
        lua_pushstring(L, r->group);
        lua_rawseti(L, -2, 1);
        lua_setfield(L, -2, "groups");
    }
    if (r->noptions) {
        lua_createtable(L, (int)r->noptions, 0);
        for (size_t i = 0; i < r->noptions; i++) {
            lua_pushstring(L, r->options[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "options");
    }
}

static int t_get_symbol(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    const char *name = luaL_checkstring(L, 2);
    for (size_t i = 0; i < as_task_symbol_total(t); i++) {
        const struct as_symbol_result *r = as_task_symbol_get(t, i);
        if (strcmp(r->name, name) != 0) continue;
        lua_createtable(L, 1, 0);
        push_symbol(L, r);
        lua_rawseti(L, -2, 1);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static int t_get_symbols(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    size_t n = as_task_symbol_total(t);
    lua_createtable(L, (int)n, 0);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        const struct as_symbol_result *r = as_task_symbol_get(t, i);
        lua_pushstring(L, r->name);
        lua_rawseti(L, -3, (lua_Integer)i + 1);
        lua_pushnumber(L, r->score);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 2;
}

static int t_get_header_common(lua_State *L, int raw)
{
    struct as_task *t = check_task(L, 1);
    const struct as_header *h = as_msg_header_get(as_task_message(t), luaL_checkstring(L, 2), 0);
    if (!h) {
        lua_pushnil(L);
        return 1;
    }
    if (raw) {
        lua_pushlstring(L, h->value.ptr, h->value.len);
        return 1;
    }
    size_t len;
    const char *v = as_header_unfold(t, h, &len);
    lua_pushstring(L, as_decode_encoded_words(as_task_pool(t), v, len));
    return 1;
}

static int t_get_header(lua_State *L) { return t_get_header_common(L, 0); }
static int t_get_header_raw(lua_State *L) { return t_get_header_common(L, 1); }

static int t_get_header_full(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    const struct as_message *m = as_task_message(t);
    const char *name = luaL_checkstring(L, 2);
    size_t n = as_msg_header_count(m, name);
    if (!n) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        const struct as_header *h = as_msg_header_get(m, name, (int)i);
        size_t len;
        const char *v = as_header_unfold(t, h, &len);
        lua_createtable(L, 0, 6);
        lua_pushlstring(L, h->name.ptr, h->name.len);
        lua_setfield(L, -2, "name");
        lua_pushlstring(L, v, len);
        lua_setfield(L, -2, "value");
        lua_pushstring(L, as_decode_encoded_words(as_task_pool(t), v, len));
        lua_setfield(L, -2, "decoded");
        lua_pushlstring(L, h->raw.ptr, h->raw.len);
        lua_setfield(L, -2, "raw");
        lua_pushinteger(L, (lua_Integer)h->index);
        lua_setfield(L, -2, "order");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* 'smtp'/'envelope' (1), 'mime'/'header' (2), 'any' or nil: smtp if given */
static int addr_kind(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return 0;
    if (lua_type(L, idx) == LUA_TNUMBER) return (int)lua_tointeger(L, idx) & 3;
    static const char *const kinds[] = { "any", "smtp", "mime", "envelope", "header", NULL };
    int k = luaL_checkoption(L, idx, NULL, kinds);
    return k == 3 ? 1 : k == 4 ? 2 : k;
}

static int t_get_from(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    int kind = addr_kind(L, 2);
    const struct as_envelope *env = as_task_envelope(t);
    if (kind != 2 && env->mail_from) {
        lua_createtable(L, 1, 0);
        push_smtp_addr(L, env->mail_from);
        lua_rawseti(L, -2, 1);
        return 1;
    }
    if (kind == 1) {
        lua_pushnil(L);
        return 1;
    }
    const struct as_from *f = as_task_from(t);
    if (!f->list.nboxes) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, (int)f->list.nboxes, 0);
    int k = 0;
    push_list(L, &f->list, &k);
    return 1;
}

static int t_get_recipients(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    int kind = addr_kind(L, 2);
    const struct as_envelope *env = as_task_envelope(t);
    if (kind != 2 && env->nrcpts) {
        lua_createtable(L, (int)env->nrcpts, 0);
        for (size_t i = 0; i < env->nrcpts; i++) {
            push_smtp_addr(L, env->rcpts[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return 1;
    }
    if (kind == 1) {
        lua_pushnil(L);
        return 1;
    }
    const struct as_message *m = as_task_message(t);
    static const char *const fields[] = { "To", "Cc", "Bcc" };
    lua_newtable(L);
    int k = 0;
    for (size_t f = 0; f < AS_ARRAY_LEN(fields); f++)
        for (size_t i = 0; i < as_msg_header_count(m, fields[f]); i++) {
            const struct as_header *h = as_msg_header_get(m, fields[f], (int)i);
            size_t len;
            const char *v = as_header_unfold(t, h, &len);
            struct as_address_list l;
            const char *perr;
            if (as_address_list_parse(as_task_pool(t), v, len, &l, &perr) == 0)
                push_list(L, &l, &k);
        }
    if (!k) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    return 1;
}

static int t_get_subject(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushliteral(L, "Subject");
    return t_get_header(L);
}

/* Without the angle brackets, as rspamd; nil without a Message-ID. */
static int t_get_message_id(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    const struct as_header *h = as_msg_header_get(as_task_message(t), "Message-ID", 0);
    if (!h) {
        lua_pushnil(L);
        return 1;
    }
    size_t len;
    const char *v = as_header_unfold(t, h, &len);
    if (len >= 2 && v[0] == '<' && v[len - 1] == '>') v++, len -= 2;
    lua_pushlstring(L, v, len);
    return 1;
}

static int t_has_from(lua_State *L)
{
    lua_settop(L, 2);
    t_get_from(L);
    lua_pushboolean(L, !lua_isnil(L, -1));
    return 1;
}

static int t_has_recipients(lua_State *L)
{
    lua_settop(L, 2);
    t_get_recipients(L);
    lua_pushboolean(L, !lua_isnil(L, -1));
    return 1;
}

/* The first envelope recipient, else the first of To/Cc/Bcc. */
static int t_get_principal_recipient(lua_State *L)
{
    lua_settop(L, 1);
    t_get_recipients(L);
    if (lua_istable(L, -1) && lua_rawgeti(L, -1, 1) == LUA_TTABLE) {
        lua_getfield(L, -1, "addr");
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

struct lua_ip {
    char text[64];
    int version;                  /* 4, 6, or 0: no address */
};

static int t_get_ip(lua_State *L)
{
    const struct as_envelope *env = as_task_envelope(check_task(L, 1));
    struct lua_ip *ip = lua_newuserdatauv(L, sizeof *ip, 0);
    memset(ip, 0, sizeof *ip);
    if (env->ip && env->family != AF_UNSPEC) {
        as_strlcpy(ip->text, env->ip, sizeof ip->text);
        ip->version = env->family == AF_INET ? 4 : 6;
    }
    luaL_setmetatable(L, IP_MT);
    return 1;
}

static int ip_to_string(lua_State *L)
{
    struct lua_ip *ip = luaL_checkudata(L, 1, IP_MT);
    if (ip->version) lua_pushstring(L, ip->text);
    else lua_pushnil(L);
    return 1;
}
static int ip_tostring_mm(lua_State *L)
{
    struct lua_ip *ip = luaL_checkudata(L, 1, IP_MT);
    lua_pushstring(L, ip->version ? ip->text : "(no ip)");
    return 1;
}
static int ip_is_valid(lua_State *L)
{
    lua_pushboolean(L, ((struct lua_ip *)luaL_checkudata(L, 1, IP_MT))->version != 0);
    return 1;
}
static int ip_get_version(lua_State *L)
{
    lua_pushinteger(L, ((struct lua_ip *)luaL_checkudata(L, 1, IP_MT))->version);
    return 1;
}
static int ip_eq(lua_State *L)
{
    struct lua_ip *a = luaL_checkudata(L, 1, IP_MT), *b = luaL_checkudata(L, 2, IP_MT);
    lua_pushboolean(L, a->version == b->version && strcmp(a->text, b->text) == 0);
    return 1;
}

static int env_string(lua_State *L, const char *v)
{
    if (v && *v) lua_pushstring(L, v);
    else lua_pushnil(L);
    return 1;
}

static int t_get_helo(lua_State *L) { return env_string(L, as_task_envelope(check_task(L, 1))->helo); }
static int t_get_hostname(lua_State *L)
{
    return env_string(L, as_task_envelope(check_task(L, 1))->hostname);
}
static int t_get_user(lua_State *L) { return env_string(L, as_task_envelope(check_task(L, 1))->user); }
static int t_get_queue_id(lua_State *L)
{
    return env_string(L, as_task_envelope(check_task(L, 1))->queue_id);
}

static int t_get_metric_score(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushnumber(L, as_task_score(t));
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, as_task_required_score(t));
    lua_rawseti(L, -2, 2);
    return 1;
}

static int t_get_metric_action(lua_State *L)
{
    lua_pushstring(L, as_action_name(as_task_action(check_task(L, 1))));
    return 1;
}

/* The running rule's name, for module defaults and log lines. */
static const char *rule_label(struct as_task *t)
{
    struct lua_task_ctx *c = task_ctx(t);
    const struct as_lua_rule *r = c ? c->current : NULL;
    return r && r->name ? r->name : "lua";
}

/* set_pre_result(action, message, module, score, priority, flags) or the
 * table form {action=, message=, module=, score=, priority=, flags=}.
 * rspamd's priorities (0 low, 1 normal, 2 high, 3 critical) map onto
 * authscan's scale as priority * AS_PRIO_PLUGIN: rspamd's dmarc module
 * forces at 1, the DMARC plugin here at AS_PRIO_PLUGIN. */
static int t_set_pre_result(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    const char *act, *msg = NULL, *module = NULL, *flags = NULL;
    double score = NAN;
    lua_Integer prio = 1;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_getfield(L, 2, "action");
        act = luaL_checkstring(L, -1);
        if (lua_getfield(L, 2, "message") != LUA_TNIL) msg = luaL_checkstring(L, -1);
        if (lua_getfield(L, 2, "module") != LUA_TNIL) module = luaL_checkstring(L, -1);
        if (lua_getfield(L, 2, "score") != LUA_TNIL) score = luaL_checknumber(L, -1);
        if (lua_getfield(L, 2, "priority") != LUA_TNIL) prio = luaL_checkinteger(L, -1);
        if (lua_getfield(L, 2, "flags") != LUA_TNIL) flags = luaL_checkstring(L, -1);
        if (lua_getfield(L, 2, "result") != LUA_TNIL)
            return luaL_error(L, "set_pre_result: named results (result=) are not supported");
    } else {
        act = luaL_checkstring(L, 2);
        if (lua_type(L, 3) == LUA_TSTRING) msg = lua_tostring(L, 3);
        if (lua_type(L, 4) == LUA_TSTRING) module = lua_tostring(L, 4);
        if (lua_type(L, 5) == LUA_TNUMBER) score = lua_tonumber(L, 5);
        if (lua_type(L, 6) == LUA_TNUMBER) prio = lua_tointeger(L, 6);
        if (lua_type(L, 7) == LUA_TSTRING) flags = lua_tostring(L, 7);
    }
    int a = as_action_parse(act);
    if (a < 0) return luaL_error(L, "set_pre_result: unknown action %s", act);
    if (prio < -1000 || prio > 1000)
        return luaL_error(L, "set_pre_result: priority must be -1000 to 1000");
    int least = flags && strstr(flags, "least") != NULL;
    const char *mod = module ? module : rule_label(t);
    int rc = as_task_pre_result(t, (enum as_action)a, least, (int)prio * AS_PRIO_PLUGIN, score,
                                msg, mod);
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int add_one_header(lua_State *L, struct as_task *t, const char *name, int v)
{
    const char *value;
    int order = 0;
    if (lua_type(L, v) == LUA_TTABLE) {
        lua_getfield(L, v, "value");
        value = luaL_checkstring(L, -1);
        lua_getfield(L, v, "order");
        order = (int)luaL_optinteger(L, -1, 0);
        lua_pop(L, 1);   /* keep value on the stack */
    } else {
        value = luaL_checkstring(L, v);
    }
    return as_task_add_header(t, name, value, order);
}

static int t_add_header(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    const char *name = luaL_checkstring(L, 2), *value = luaL_checkstring(L, 3);
    int order = (int)luaL_optinteger(L, 4, 0);
    lua_pushboolean(L, as_task_add_header(t, name, value, order) == 0);
    return 1;
}

static int t_remove_header(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    const char *name = luaL_checkstring(L, 2);
    lua_pushboolean(L, as_task_remove_header(t, name, (int)luaL_optinteger(L, 3, 0)) == 0);
    return 1;
}

/* rspamd's set_milter_reply{add_headers = {N = v | {value=, order=} | {v, ...}},
 * remove_headers = {N = index}}; other keys are refused, not ignored. */
static int t_set_milter_reply(lua_State *L)
{
    struct as_task *t = check_task(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ok = 1;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        int tbl = lua_gettop(L);
        if (strcmp(k, "add_headers") != 0 && strcmp(k, "remove_headers") != 0)
            return luaL_error(L, "set_milter_reply: '%s' is not supported (add_headers, "
                              "remove_headers)", k);
        luaL_checktype(L, tbl, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, tbl)) {
            const char *hn = luaL_checkstring(L, -2);
            int v = lua_gettop(L);
            if (k[0] == 'r') {
                ok &= as_task_remove_header(t, hn, (int)luaL_checkinteger(L, v)) == 0;
            } else if (lua_type(L, v) == LUA_TTABLE && lua_rawlen(L, v) > 0) {
                for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, v); i++) {
                    lua_rawgeti(L, v, i);
                    ok &= add_one_header(L, t, hn, lua_gettop(L)) == 0;
                    lua_settop(L, v);
                }
            } else {
                ok &= add_one_header(L, t, hn, v) == 0;
            }
            lua_settop(L, v - 1);
        }
        lua_settop(L, tbl - 1);
    }
    lua_pushboolean(L, ok);
    return 1;
}

/* ---- authscan's structured results (the plugins' typed results) ---- */
/* Each is a read-only proxy: a field is computed when a rule reads it
 * (rules read a few of twenty; building whole tables for every scan was a
 * third of the cost of a ten-rule file), and pairs() lists them all.  One
 * proxy per result and scan; it holds the task userdata, so that a proxy
 * kept past its scan errs instead of reading freed memory. */

#define RESULT_MT "authscan{result}"

struct result_proxy {
    const void *r;                /* the plugin's typed result */
    enum lua_result kind;
};

static void push_opt(lua_State *L, const char *v)
{
    if (v) lua_pushstring(L, v);
    else lua_pushnil(L);
}

static void push_spf_check(lua_State *L, const struct as_spf_check *c)
{
    lua_createtable(L, 0, 7);
    lua_pushboolean(L, c->checked);
    lua_setfield(L, -2, "checked");
    set_str(L, "result", as_spf_res_name(c->result));
    static const char *const keys[] = { "domain", "sender", "mechanism", "reason",
                                        "explanation" };
    const char *vals[] = { c->domain, c->sender, c->mechanism, c->reason, c->explanation };
    for (size_t i = 0; i < AS_ARRAY_LEN(keys); i++)
        if (vals[i]) set_str(L, keys[i], vals[i]);
}

static const char *const spf_fields[] = {
    "result", "domain", "identity", "mailfrom", "helo", "client_ip", "skipped",
    "skip_reason", "plus_all", "auth_results", NULL,
};

static void spf_field(lua_State *L, const void *p, int f)
{
    const struct as_spf_result *r = p;
    const struct as_spf_check *d = r->dmarc ? r->dmarc : &r->mailfrom;
    switch (f) {
    case 0: lua_pushstring(L, as_spf_res_name(d->result)); break;
    case 1: push_opt(L, d->domain); break;
    case 2: lua_pushstring(L, r->dmarc_identity == AS_SPF_ID_HELO ? "helo" : "mailfrom"); break;
    case 3: push_spf_check(L, &r->mailfrom); break;
    case 4: push_spf_check(L, &r->helo); break;
    case 5: push_opt(L, r->client_ip); break;
    case 6: lua_pushboolean(L, r->skipped); break;
    case 7: push_opt(L, r->skip_reason); break;
    case 8: lua_pushboolean(L, r->plus_all); break;
    default: push_opt(L, r->auth_results); break;
    }
}

static const char *const dkim_fields[] = { "result", "signatures", "ignored", NULL };

static void dkim_field(lua_State *L, const void *p, int f)
{
    const struct as_dkim_result *r = p;
    if (f == 0) {
        /* the best result: pass if any signature passed */
        enum as_dkim_res best = AS_DKIM_NONE;
        for (size_t i = 0; i < r->nsigs; i++)
            if (best == AS_DKIM_NONE || r->sigs[i].result == AS_DKIM_PASS)
                best = r->sigs[i].result;
        lua_pushstring(L, as_dkim_res_name(best));
    } else if (f == 1) {
        lua_createtable(L, (int)r->nsigs, 0);
        for (size_t i = 0; i < r->nsigs; i++) {
            const struct as_dkim_sig *g = &r->sigs[i];
            lua_createtable(L, 0, 8);
            set_str(L, "result", as_dkim_res_name(g->result));
            if (g->domain) set_str(L, "domain", g->domain);
            if (g->selector) set_str(L, "selector", g->selector);
            if (g->algorithm) set_str(L, "algorithm", g->algorithm);
            lua_pushinteger(L, g->key_bits);
            lua_setfield(L, -2, "key_bits");
            if (g->identity) set_str(L, "identity", g->identity);
            lua_pushboolean(L, g->testing);
            lua_setfield(L, -2, "testing");
            if (g->reason) set_str(L, "reason", g->reason);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
    } else {
        lua_pushinteger(L, (lua_Integer)r->nignored);
    }
}

static const char *const dmarc_fields[] = {
    "result", "discovery", "author_domain", "policy_domain", "org_domain", "policy",
    "policy_tag", "disposition", "p", "sp", "np", "testing", "pct", "record", "reasons",
    "spf_aligned", "spf_domain", "spf_result", "dkim_aligned", "dkim_domain", "aspf", "adkim",
    "comment", "auth_results", NULL,
};

static void dmarc_field(lua_State *L, const void *p, int f)
{
    const struct as_dmarc_result *r = p;
    const struct as_dmarc_record *rec = r->record;
    static const struct { unsigned bit; const char *name; } reasons[] = {
        { AS_DMARC_REASON_TESTING, "testing" }, { AS_DMARC_REASON_SAMPLED_OUT, "sampled_out" },
        { AS_DMARC_REASON_MAILING_LIST, "mailing_list" },
        { AS_DMARC_REASON_MULTI_FROM, "multi_from" }, { AS_DMARC_REASON_INCOMPLETE, "incomplete" },
        { AS_DMARC_REASON_BAD_POLICY, "bad_policy" }, { AS_DMARC_REASON_NO_AUTHOR, "no_author" },
    };
    if (f >= 8 && f <= 13 && !rec) {   /* the record's tags: none without a record */
        lua_pushnil(L);
        return;
    }
    switch (f) {
    case 0: lua_pushstring(L, as_dmarc_res_name(r->result)); break;
    case 1: lua_pushstring(L, r->discovery == AS_DMARC_DISCOVERY_PSL ? "psl" : "tree"); break;
    case 2: push_opt(L, r->author_domain); break;
    case 3: push_opt(L, r->policy_domain); break;
    case 4: push_opt(L, r->org_domain); break;
    case 5: lua_pushstring(L, as_dmarc_policy_name(r->policy)); break;
    case 6: push_opt(L, r->policy_tag); break;
    case 7: lua_pushstring(L, as_dmarc_policy_name(r->disposition)); break;
    case 8: lua_pushstring(L, as_dmarc_policy_name(rec->p)); break;
    case 9: lua_pushstring(L, as_dmarc_policy_name(rec->sp)); break;
    case 10: lua_pushstring(L, as_dmarc_policy_name(rec->np)); break;
    case 11: lua_pushboolean(L, rec->testing); break;
    case 12: lua_pushinteger(L, rec->pct); break;
    case 13: push_opt(L, rec->text); break;
    case 14: {
        lua_newtable(L);
        int k = 0;
        for (size_t i = 0; i < AS_ARRAY_LEN(reasons); i++)
            if (r->reasons & reasons[i].bit) {
                lua_pushstring(L, reasons[i].name);
                lua_rawseti(L, -2, ++k);
            }
        break;
    }
    case 15: lua_pushboolean(L, r->spf_aligned); break;
    case 16: push_opt(L, r->spf_domain); break;
    case 17: lua_pushstring(L, as_spf_res_name(r->spf_result)); break;
    case 18: lua_pushboolean(L, r->dkim_aligned); break;
    case 19: push_opt(L, r->dkim_domain); break;
    case 20: lua_pushstring(L, r->aspf_strict ? "s" : "r"); break;
    case 21: lua_pushstring(L, r->adkim_strict ? "s" : "r"); break;
    case 22: push_opt(L, r->comment); break;
    default: push_opt(L, r->auth_results); break;
    }
}

static const char *const arc_fields[] = {
    "result", "malformed", "reason", "oldest_pass", "sets", "trusted_sealer",
    "trust_configured", "trust_action", NULL,
};

/* One AAR resinfo: {method=, result=, props={["header.d"]=...}}; a
 * property named twice keeps its first value. */
static void push_arc_resinfo(lua_State *L, const struct as_arc_resinfo *ri)
{
    lua_createtable(L, 0, 3);
    push_opt(L, ri->method);
    lua_setfield(L, -2, "method");
    push_opt(L, ri->result);
    lua_setfield(L, -2, "result");
    lua_createtable(L, 0, (int)ri->nprops);
    for (size_t i = 0; i < ri->nprops; i++) {
        if (!ri->props[i].name) continue;
        lua_getfield(L, -1, ri->props[i].name);
        int had = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!had) set_str(L, ri->props[i].name, ri->props[i].value ? ri->props[i].value : "");
    }
    lua_setfield(L, -2, "props");
}

static void push_arc_set(lua_State *L, const struct as_arc_set *a)
{
    lua_createtable(L, 0, 14);
    lua_pushinteger(L, a->instance);
    lua_setfield(L, -2, "instance");
    set_str(L, "cv", as_arc_cv_name(a->cv));
    set_str(L, "seal", as_arc_sig_name(a->seal));
    set_str(L, "ams", as_arc_sig_name(a->ams));
    static const char *const keys[] = { "seal_domain", "seal_selector", "seal_algorithm",
                                        "seal_reason", "ams_domain", "ams_selector",
                                        "ams_reason", "authserv_id" };
    const char *vals[] = { a->seal_domain, a->seal_selector, a->seal_algorithm, a->seal_reason,
                           a->ams_domain, a->ams_selector, a->ams_reason, a->authserv_id };
    for (size_t i = 0; i < AS_ARRAY_LEN(keys); i++)
        if (vals[i]) set_str(L, keys[i], vals[i]);
    lua_pushboolean(L, a->trusted);
    lua_setfield(L, -2, "trusted");
    lua_createtable(L, (int)a->nresults, 0);
    for (size_t i = 0; i < a->nresults; i++) {
        push_arc_resinfo(L, &a->results[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "results");
}

static void arc_field(lua_State *L, const void *p, int f)
{
    const struct as_arc_result *r = p;
    switch (f) {
    case 0: lua_pushstring(L, as_arc_cv_name(r->cv)); break;
    case 1: lua_pushboolean(L, r->malformed); break;
    case 2: push_opt(L, r->reason); break;
    case 3: lua_pushinteger(L, r->oldest_pass); break;
    case 4:
        lua_createtable(L, (int)r->nsets, 0);
        for (size_t i = 0; i < r->nsets; i++) {
            push_arc_set(L, &r->sets[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case 5: {
        /* the newest set whose sealer arc.trusted_sealers names */
        const char *d = NULL;
        for (size_t i = r->nsets; i-- > 0 && !d;)
            if (r->sets[i].trusted) d = r->sets[i].seal_domain;
        push_opt(L, d);
        break;
    }
    case 6: lua_pushboolean(L, r->trust_configured); break;
    default:
        lua_pushstring(L, r->trust_action == AS_ARC_TRUST_QUARANTINE ? "quarantine" : "deliver");
        break;
    }
}

static const struct {
    const char *key;                       /* as_task_get_result() key */
    const char *const *fields;
    void (*field)(lua_State *L, const void *r, int f);
} result_kinds[LR_COUNT] = {
    [LR_SPF] = { AS_SPF_RESULT_KEY, spf_fields, spf_field },
    [LR_DKIM] = { AS_DKIM_RESULT_KEY, dkim_fields, dkim_field },
    [LR_DMARC] = { AS_DMARC_RESULT_KEY, dmarc_fields, dmarc_field },
    [LR_ARC] = { AS_ARC_RESULT_KEY, arc_fields, arc_field },
};

static struct result_proxy *check_proxy(lua_State *L)
{
    struct result_proxy *p = luaL_checkudata(L, 1, RESULT_MT);
    lua_getiuservalue(L, 1, 1);
    const struct as_lua_task_ud *ud = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!ud || !ud->task) luaL_error(L, "result used after its scan ended");
    return p;
}

static int proxy_index(lua_State *L)
{
    struct result_proxy *p = check_proxy(L);
    const char *k = lua_tostring(L, 2);
    const char *const *names = result_kinds[p->kind].fields;
    for (int i = 0; k && names[i]; i++)
        if (strcmp(names[i], k) == 0) {
            result_kinds[p->kind].field(L, p->r, i);
            return 1;
        }
    lua_pushnil(L);
    return 1;
}

static int proxy_newindex(lua_State *L)
{
    return luaL_error(L, "the %s result is read-only", result_kinds[check_proxy(L)->kind].key);
}

static int proxy_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1)) return 2;
    lua_pushnil(L);
    return 1;
}

/* pairs(result): the whole result as a fresh table */
static int proxy_pairs(lua_State *L)
{
    struct result_proxy *p = check_proxy(L);
    const char *const *names = result_kinds[p->kind].fields;
    lua_pushcfunction(L, proxy_next);
    lua_newtable(L);
    for (int i = 0; names[i]; i++) {
        result_kinds[p->kind].field(L, p->r, i);
        if (lua_isnil(L, -1)) lua_pop(L, 1);
        else lua_setfield(L, -2, names[i]);
    }
    lua_pushnil(L);
    return 3;
}

static int proxy_tostring(lua_State *L)
{
    lua_pushfstring(L, "%s result", result_kinds[check_proxy(L)->kind].key);
    return 1;
}

static int get_result(lua_State *L, enum lua_result which)
{
    struct as_task *t = check_task(L, 1);
    struct lua_task_ctx *c = task_ctx(t);
    if (c && c->result_ref[which] > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->result_ref[which]);
        return 1;
    }
    const int *version = as_task_get_result(t, result_kinds[which].key);
    if (!version || *version < 1) {   /* every typed result starts with its version */
        lua_pushnil(L);
        return 1;
    }
    struct result_proxy *p = lua_newuserdatauv(L, sizeof *p, 1);
    p->r = version;
    p->kind = which;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, RESULT_MT);
    if (c) {
        lua_pushvalue(L, -1);
        c->result_ref[which] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 1;
}

static int t_get_spf(lua_State *L) { return get_result(L, LR_SPF); }
static int t_get_dkim(lua_State *L) { return get_result(L, LR_DKIM); }
static int t_get_dmarc(lua_State *L) { return get_result(L, LR_DMARC); }
static int t_get_arc(lua_State *L) { return get_result(L, LR_ARC); }

static int t_tostring(lua_State *L)
{
    struct as_lua_task_ud *ud = luaL_checkudata(L, 1, AS_LUA_TASK_MT);
    lua_pushfstring(L, "task<%s>", ud->id);
    return 1;
}

static int t_get_resolver(lua_State *L);

static const luaL_Reg task_methods[] = {
    { "insert_result", t_insert_result }, { "has_symbol", t_has_symbol },
    { "get_symbol", t_get_symbol }, { "get_symbols", t_get_symbols },
    { "get_header", t_get_header }, { "get_header_raw", t_get_header_raw },
    { "get_header_full", t_get_header_full }, { "get_from", t_get_from },
    { "get_recipients", t_get_recipients }, { "get_ip", t_get_ip },
    { "get_helo", t_get_helo }, { "get_hostname", t_get_hostname },
    { "get_user", t_get_user }, { "get_queue_id", t_get_queue_id },
    { "get_metric_score", t_get_metric_score }, { "get_metric_action", t_get_metric_action },
    { "set_pre_result", t_set_pre_result }, { "set_milter_reply", t_set_milter_reply },
    { "add_header", t_add_header }, { "remove_header", t_remove_header },
    { "get_spf", t_get_spf }, { "get_dkim", t_get_dkim }, { "get_dmarc", t_get_dmarc },
    { "get_arc", t_get_arc },
    { "get_subject", t_get_subject }, { "get_message_id", t_get_message_id },
    { "has_from", t_has_from }, { "has_recipients", t_has_recipients },
    { "get_principal_recipient", t_get_principal_recipient },
    { "get_resolver", t_get_resolver },
    { NULL, NULL },
};

static const luaL_Reg ip_methods[] = {
    { "to_string", ip_to_string }, { "is_valid", ip_is_valid },
    { "get_version", ip_get_version }, { NULL, NULL },
};

/* ------------------------------------------------------------------ */
/* Running the rules                                                    */

static void advance(struct lua_task_ctx *c, int nargs);
static void ops_drop(struct lua_task_ctx *c);

static void ctx_destroy(void *arg)
{
    struct lua_task_ctx *c = arg;
    c->ud->task = NULL;
    if (!c->run.co && c->ops && c->current)
        as_log(AS_LOG_WARN, "<%s> lua: rule %s (%s) did not finish: the scan ended while its "
               "callbacks waited", c->ud->id, c->current->name ? c->current->name : "(callback)",
               c->current->where);
    ops_drop(c);
    if (c->run.co && c->run.rule)   /* the deadline or the client cut it short */
        as_log(AS_LOG_WARN, "<%s> lua: rule %s (%s) did not finish: the scan ended while it "
               "waited", c->ud->id, c->run.rule->name ? c->run.rule->name : "(callback)",
               c->run.rule->where);
    as_lua_run_end(c->s, &c->run);
    lua_State *L = as_lua_state(c->s);
    for (int i = 0; i < LR_COUNT; i++)
        if (c->result_ref[i] > 0) luaL_unref(L, LUA_REGISTRYINDEX, c->result_ref[i]);
    luaL_unref(L, LUA_REGISTRYINDEX, c->ud_ref);
}

static struct lua_task_ctx *ctx_get(struct as_task *t, struct as_lua *s)
{
    void **slot = as_task_service_slot(t, &as_lua_service);
    if (*slot) return *slot;
    lua_State *L = as_lua_state(s);
    struct lua_task_ctx *c = as_pool_alloc(as_task_pool(t), sizeof *c);
    c->t = t;
    c->s = s;
    c->ud = lua_newuserdatauv(L, sizeof *c->ud, 0);
    c->ud->task = t;
    as_strlcpy(c->ud->id, as_task_id(t), sizeof c->ud->id);
    luaL_setmetatable(L, AS_LUA_TASK_MT);
    c->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->run.ref = LUA_NOREF;
    if (as_pool_on_destroy(as_task_pool(t), ctx_destroy, c) < 0) {
        ctx_destroy(c);
        return NULL;
    }
    *slot = c;
    return c;
}

/* rspamd: a callback returning true (or a non-zero number) adds its
 * symbol; a number after it is the weight, the rest are options. */
static void take_results(struct lua_task_ctx *c, const struct as_lua_rule *r, int nres)
{
    lua_State *co = c->run.co;
    if (!r->name || nres < 1 || c->stage == LS_FINISH) return;
    int base = lua_gettop(co) - nres + 1;
    double w;
    if (lua_type(co, base) == LUA_TBOOLEAN) w = lua_toboolean(co, base) ? 1.0 : 0.0;
    else if (lua_type(co, base) == LUA_TNUMBER) w = lua_tonumber(co, base);
    else return;
    if (w == 0) return;
    int first = base + 1;
    if (nres >= 2 && lua_type(co, base + 1) == LUA_TNUMBER) {
        w = lua_tonumber(co, base + 1);
        first = base + 2;
    }
    const char *opts[MAX_OPTS];
    size_t n = collect_opts(co, first, lua_gettop(co), opts);
    as_task_add_symbolv(c->t, r->name, w, opts, n);
}

static void report_failure(struct lua_task_ctx *c, const struct as_lua_rule *r,
                           enum as_lua_outcome o, const char *err)
{
    const char *what = o == AS_LUA_OVERRUN ? "stopped"
                     : o == AS_LUA_NOMEM  ? "out of memory (lua.max_memory)"
                                          : "failed";
    as_task_log(c->t, AS_LOG_ERR, "lua: rule %s (%s) %s: %s; %s skipped%s",
                r->name ? r->name : "(callback)", r->where, what, err,
                r->name ? "its symbol" : "it",
                r->disabled && o == AS_LUA_OVERRUN ? "; the rule is disabled until the next "
                                                     "reload (lua.max_overruns)" : "");
}

/* Runs the stage's rules one after the other: a rule is done when its
 * callback returned and every callback-style request it made (or its
 * callbacks made) was answered and called back. */
static void advance(struct lua_task_ctx *c, int nargs)
{
    for (;;) {
        if (!c->run.co) {
            if (c->ops) return;    /* op_call() comes back here */
            while (c->next < c->n && c->order[c->next]->disabled) c->next++;
            if (c->next >= c->n) return;
            c->current = c->order[c->next];
            as_lua_run_start(c->s, c->order[c->next++], &c->run);
            lua_rawgeti(c->run.co, LUA_REGISTRYINDEX, c->ud_ref);
            nargs = 1;
        }
        const struct as_lua_rule *r = c->run.rule;
        char err[768];
        int nres = 0;
        enum as_lua_outcome o = as_lua_run_resume(c->s, &c->run, nargs, &nres, err, sizeof err);
        nargs = 0;
        if (o == AS_LUA_YIELDED) {
            if (c->waiting) return;
            snprintf(err, sizeof err, "the callback yielded outside an asynchronous call");
            o = AS_LUA_FAILED;
        }
        if (o == AS_LUA_DONE) take_results(c, r, nres);
        else report_failure(c, r, o, err);
        as_lua_run_end(c->s, &c->run);
    }
}

static void run_stage(struct as_task *t, void *state, enum lua_stage st)
{
    struct lua_plugin *lp = state;
    if (!lp->nstage[st]) return;
    struct lua_task_ctx *c = ctx_get(t, lp->s);
    if (!c) return;
    if (c->run.co) {
        /* the scan deadline cancelled what it waited for */
        as_task_log(t, AS_LOG_WARN, "lua: rule %s (%s) cut short by the scan deadline",
                    c->run.rule->name ? c->run.rule->name : "(callback)", c->run.rule->where);
        as_lua_run_end(c->s, &c->run);
        c->waiting = 0;
    }
    if (c->ops) {
        as_task_log(t, AS_LOG_WARN, "lua: rule %s (%s): callbacks cut short by the scan deadline",
                    c->current && c->current->name ? c->current->name : "(callback)",
                    c->current ? c->current->where : "?");
        ops_drop(c);
    }
    c->order = lp->stage[st];
    c->n = lp->nstage[st];
    c->next = 0;
    c->stage = st;
    advance(c, 0);
}

static void lua_scan(struct as_task *t, void *state) { run_stage(t, state, LS_SCAN); }
static void lua_postfilter(struct as_task *t, void *state) { run_stage(t, state, LS_POSTFILTER); }
static void lua_finish(struct as_task *t, void *state) { run_stage(t, state, LS_FINISH); }

/* ------------------------------------------------------------------ */
/* Callback-style requests                                              */

/* One rspamd_dns.request{callback=}, resolver:resolve_*() or
 * rspamd_redis.make_request{callback=} call: the task waits for it (it
 * is an asynchronous operation of the lua plugin), and the rule is not
 * done until its callback ran.  In the task pool; the callback is
 * anchored in the registry until it ran or the task ended. */
struct lua_cb_op {
    struct lua_task_ctx *c;
    struct lua_cb_op *prev, *next;
    int fn_ref;                   /* the Lua callback */
    const char *to_resolve;       /* DNS: the name, for the callback */
    const char *error;            /* a refused request: its error, delivered by ev */
    struct event *ev;
    struct as_async *async;       /* ev's task operation */
};

static struct lua_cb_op *op_new(struct lua_task_ctx *c, lua_State *L, int fn_idx)
{
    struct lua_cb_op *o = as_pool_alloc(as_task_pool(c->t), sizeof *o);
    o->c = c;
    lua_pushvalue(L, fn_idx);
    o->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    o->next = c->ops;
    if (c->ops) c->ops->prev = o;
    c->ops = o;
    return o;
}

/* Unlinks o and releases what it holds; idempotent. */
static void op_release(struct lua_cb_op *o)
{
    struct lua_task_ctx *c = o->c;
    if (o->fn_ref == LUA_NOREF) return;
    if (o->prev) o->prev->next = o->next;
    else c->ops = o->next;
    if (o->next) o->next->prev = o->prev;
    o->prev = o->next = NULL;
    luaL_unref(as_lua_state(c->s), LUA_REGISTRYINDEX, o->fn_ref);
    o->fn_ref = LUA_NOREF;
    if (o->ev) {
        event_free(o->ev);
        o->ev = NULL;
    }
}

/* The task ended, or the scan deadline cancelled what the rule waited
 * for: nothing will call these back any more. */
static void ops_drop(struct lua_task_ctx *c)
{
    while (c->ops) op_release(c->ops);
    if (c->sync_ref > 0) luaL_unref(as_lua_state(c->s), LUA_REGISTRYINDEX, c->sync_ref);
    c->sync_ref = 0;
    c->sync_left = 0;
}

/* Calls o's callback with the values push() puts after it, as a run of
 * the current rule with a budget of its own.  Callbacks cannot wait: the
 * coroutine forms refuse to run in one. */
static void op_call(struct lua_cb_op *o, int (*push)(lua_State *co, const void *arg),
                    const void *arg)
{
    struct lua_task_ctx *c = o->c;
    struct as_lua_rule *r = c->current;
    if (o->fn_ref == LUA_NOREF) return;
    if (r && r->disabled) {    /* stopped by the budget in an earlier callback */
        op_release(o);
        if (!c->run.co && !c->ops) advance(c, 0);
        return;
    }
    struct as_lua_run run;
    as_lua_run_start(c->s, NULL, &run);
    run.rule = r;
    lua_rawgeti(run.co, LUA_REGISTRYINDEX, o->fn_ref);
    int nargs = push(run.co, arg);
    op_release(o);
    char err[768];
    int nres;
    enum as_lua_outcome out = as_lua_run_resume(c->s, &run, nargs, &nres, err, sizeof err);
    if (out == AS_LUA_YIELDED) {
        snprintf(err, sizeof err, "a request's callback yielded (callbacks cannot wait)");
        out = AS_LUA_FAILED;
    }
    if (out != AS_LUA_DONE && r) report_failure(c, r, out, err);
    as_lua_run_end(c->s, &run);
    if (!c->run.co && !c->ops) advance(c, 0);
}

static int push_error_args(lua_State *co, const void *arg)
{
    const struct lua_cb_op *o = arg;
    lua_pushstring(co, o->error);
    lua_pushnil(co);
    return 2;
}

static void op_refused_fire(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct lua_cb_op *o = arg;
    struct as_task *t = o->c->t;
    struct as_async *a = o->async;
    o->async = NULL;
    uint64_t mark = as_task_enter(t);
    as_task_async_enter(t, a);
    op_call(o, push_error_args, o);
    as_task_async_end(t, a);
    as_task_leave(mark);
}

static void op_refused_cancel(void *arg)
{
    struct lua_cb_op *o = arg;
    o->async = NULL;
    op_release(o);
}

/* A request that could not be sent (Redis down): its callback gets the
 * error from the event loop, as when the server fails to answer, never
 * from inside the call.  -1 when the task may not wait any more. */
static int op_refuse(struct lua_cb_op *o, const char *error)
{
    struct as_task *t = o->c->t;
    o->error = error;
    o->ev = event_new(as_task_event_base(t), -1, 0, op_refused_fire, o);
    if (!o->ev) return -1;
    o->async = as_task_async_begin(t, op_refused_cancel, o);
    if (!o->async) return -1;
    struct timeval now = { 0, 0 };
    if (event_add(o->ev, &now) < 0) {
        as_task_async_end(t, o->async);
        o->async = NULL;
        return -1;
    }
    return 0;
}

/* The coroutine forms wait in the rule's callback itself. */
static struct lua_task_ctx *check_waitable(lua_State *L, struct as_task *t, const char *what)
{
    struct lua_task_ctx *c = task_ctx(t);
    if (!c || L != c->run.co || !lua_isyieldable(L) || c->waiting)
        luaL_error(L, "%s: call it from the rule's callback itself (not from a request's "
                   "callback, a coroutine it made, a module's main chunk or a metamethod)", what);
    return c;
}

/* The task of a request table's task= field. */
static struct as_task *field_task(lua_State *L, int tbl, const char *what)
{
    if (lua_getfield(L, tbl, "task") == LUA_TNIL)
        luaL_error(L, "%s: task= is required", what);
    struct as_task *t = check_task(L, -1);
    lua_pop(L, 1);
    return t;
}

/* ------------------------------------------------------------------ */
/* rspamd_dns: lookups, the coroutine form and rspamd's callback forms  */

static const struct {
    const char *name;
    uint16_t type;
} dns_types[] = {
    { "a", AS_DNS_A }, { "aaaa", AS_DNS_AAAA }, { "txt", AS_DNS_TXT }, { "mx", AS_DNS_MX },
    { "ptr", AS_DNS_PTR }, { "ns", AS_DNS_NS }, { "cname", AS_DNS_CNAME },
};

/* The answer's records as rspamd gives them: addresses as strings, TXT
 * strings joined, {name=, priority=} for MX, names for the rest. */
static void push_dns_results(lua_State *co, const struct as_dns_answer *ans)
{
    lua_createtable(co, (int)ans->nrr, 0);
    for (size_t i = 0; i < ans->nrr; i++) {
        const struct as_dns_rr *rr = &ans->rr[i];
        char buf[INET6_ADDRSTRLEN];
        switch (rr->type) {
        case AS_DNS_A:
            lua_pushstring(co, inet_ntop(AF_INET, &rr->d.a, buf, sizeof buf));
            break;
        case AS_DNS_AAAA:
            lua_pushstring(co, inet_ntop(AF_INET6, &rr->d.aaaa, buf, sizeof buf));
            break;
        case AS_DNS_TXT:
            lua_pushlstring(co, rr->d.txt.joined.ptr, rr->d.txt.joined.len);
            break;
        case AS_DNS_MX:
            lua_createtable(co, 0, 2);
            lua_pushstring(co, rr->d.mx.host);
            lua_setfield(co, -2, "name");
            lua_pushinteger(co, rr->d.mx.pref);
            lua_setfield(co, -2, "priority");
            break;
        default:
            lua_pushstring(co, rr->d.name);
            break;
        }
        lua_rawseti(co, -2, (lua_Integer)i + 1);
    }
}

static void dns_done(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    AS_UNUSED(t);
    struct lua_task_ctx *c = arg;
    lua_State *co = c->run.co;
    if (!co || !c->waiting) return;
    c->waiting = 0;
    if (ans->status != AS_DNS_OK) {
        lua_pushboolean(co, 0);
        lua_pushstring(co, as_dns_status_name(ans->status));
        advance(c, 2);
        return;
    }
    lua_pushboolean(co, 1);
    push_dns_results(co, ans);
    advance(c, 2);
}

/* A PTR query for an address is for its reverse name, as in rspamd. */
static const char *ptr_name(struct as_pool *pool, const char *name)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, name, a) == 1)
        return as_pool_printf(pool, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
    if (inet_pton(AF_INET6, name, a) != 1) return name;
    char *out = as_pool_alloc(pool, 16 * 4 + sizeof "ip6.arpa");
    char *p = out;
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        *p++ = hex[a[i] & 15];
        *p++ = '.';
        *p++ = hex[a[i] >> 4];
        *p++ = '.';
    }
    memcpy(p, "ip6.arpa", sizeof "ip6.arpa");
    return out;
}

#define RESOLVER_MT "rspamd{resolver}"

/* The callback's arguments, as rspamd's resolver gives them: resolver,
 * to_resolve, results (nil on error), err (nil on success),
 * authenticated (always false: no DNSSEC validation here). */
struct dns_cb_args {
    const struct as_dns_answer *ans;
    const char *to_resolve;
};

static int push_dns_args(lua_State *co, const void *arg)
{
    const struct dns_cb_args *a = arg;
    lua_newuserdatauv(co, 1, 0);
    luaL_setmetatable(co, RESOLVER_MT);
    lua_pushstring(co, a->to_resolve);
    if (a->ans->status == AS_DNS_OK) {
        push_dns_results(co, a->ans);
        lua_pushnil(co);
    } else {
        lua_pushnil(co);
        lua_pushstring(co, as_dns_status_name(a->ans->status));
    }
    lua_pushboolean(co, 0);
    return 5;
}

static void dns_cb_done(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    AS_UNUSED(t);
    struct lua_cb_op *o = arg;
    struct dns_cb_args a = { ans, o->to_resolve };
    op_call(o, push_dns_args, &a);
}

/* Starts a lookup of the request table at tbl (task=, name=, callback=,
 * and type= unless type is given).  With a callback: rspamd's callback
 * form, returns true when the query is on its way.  Without: the
 * coroutine form, yields. */
static int dns_lookup(lua_State *L, int tbl, const char *type, const char *what)
{
    luaL_checktype(L, tbl, LUA_TTABLE);
    struct as_task *t = field_task(L, tbl, what);
    lua_getfield(L, tbl, "name");
    const char *name = luaL_checkstring(L, -1);
    if (!type) {
        lua_getfield(L, tbl, "type");
        type = luaL_optstring(L, -1, "a");
    }
    size_t i;
    for (i = 0; i < AS_ARRAY_LEN(dns_types); i++)
        if (as_strcaseeq(type, dns_types[i].name)) break;
    if (i == AS_ARRAY_LEN(dns_types))
        return luaL_error(L, "%s: unsupported type '%s'", what, type);
    int fn = lua_getfield(L, tbl, "callback") != LUA_TNIL ? lua_gettop(L) : 0;
    if (fn) luaL_checktype(L, fn, LUA_TFUNCTION);
    struct lua_task_ctx *c = fn ? task_ctx(t) : check_waitable(L, t, what);
    if (!c || !c->current)
        return luaL_error(L, "%s: only a rule (or its callbacks) may look up names", what);
    const char *qname = dns_types[i].type == AS_DNS_PTR ? ptr_name(as_task_pool(t), name) : name;
    if (fn) {
        struct lua_cb_op *o = op_new(c, L, fn);
        o->to_resolve = as_pool_strdup(as_task_pool(t), name);
        if (as_dns_query(t, qname, dns_types[i].type, dns_cb_done, o) < 0) {
            op_release(o);
            lua_pushboolean(L, 0);
            return 1;
        }
        lua_pushboolean(L, 1);
        return 1;
    }
    if (as_dns_query(t, qname, dns_types[i].type, dns_done, c) < 0) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, "the query could not be started (scan deadline passed?)");
        return 2;
    }
    c->waiting = 1;
    return lua_yield(L, 0);
}

static int dns_request(lua_State *L) { return dns_lookup(L, 1, NULL, "rspamd_dns.request"); }

/* task:get_resolver(): rspamd's resolver object; its methods take the
 * same table as rspamd_dns.request (task= is required there too). */
static int t_get_resolver(lua_State *L)
{
    check_task(L, 1);
    lua_newuserdatauv(L, 1, 0);
    luaL_setmetatable(L, RESOLVER_MT);
    return 1;
}

static int resolver_call(lua_State *L, const char *type, const char *what)
{
    luaL_checkudata(L, 1, RESOLVER_MT);
    return dns_lookup(L, 2, type, what);
}

static int r_resolve_a(lua_State *L) { return resolver_call(L, "a", "resolver:resolve_a"); }
static int r_resolve_aaaa(lua_State *L) { return resolver_call(L, "aaaa", "resolver:resolve_aaaa"); }
static int r_resolve_txt(lua_State *L) { return resolver_call(L, "txt", "resolver:resolve_txt"); }
static int r_resolve_mx(lua_State *L) { return resolver_call(L, "mx", "resolver:resolve_mx"); }
static int r_resolve_ptr(lua_State *L) { return resolver_call(L, "ptr", "resolver:resolve_ptr"); }
static int r_resolve_ns(lua_State *L) { return resolver_call(L, "ns", "resolver:resolve_ns"); }

/* resolver:resolve(type, {task=, name=, callback=}) */
static int r_resolve(lua_State *L)
{
    luaL_checkudata(L, 1, RESOLVER_MT);
    const char *type = luaL_checkstring(L, 2);
    return dns_lookup(L, 3, type, "resolver:resolve");
}

static int resolver_tostring(lua_State *L)
{
    lua_pushliteral(L, RESOLVER_MT);
    return 1;
}

static const luaL_Reg resolver_methods[] = {
    { "resolve_a", r_resolve_a }, { "resolve_aaaa", r_resolve_aaaa },
    { "resolve_txt", r_resolve_txt }, { "resolve_mx", r_resolve_mx },
    { "resolve_ptr", r_resolve_ptr }, { "resolve_ns", r_resolve_ns },
    { "resolve", r_resolve }, { NULL, NULL },
};

static const luaL_Reg dns_funcs[] = { { "request", dns_request }, { NULL, NULL } };

/* ------------------------------------------------------------------ */
/* rspamd_redis: commands through the worker's Redis service            */

#define REDIS_MT "rspamd{redis}"
#define REDIS_MAX_ARGS 1024
/* Commands one conn:exec() may send: its results go on the coroutine's
 * stack, which must not have to grow past what Lua allows. */
#define REDIS_MAX_PIPELINE 1000

/* Where a command's keys are.  redis.prefix goes in front of every key a
 * rule names, so that a site's keys stay under the installation's prefix
 * as the plugins' do; a command whose keys cannot be found that way
 * (KEYS, SCAN, FLUSHDB, CONFIG ...) is refused. */
enum redis_keys { RK_NONE, RK_FIRST, RK_ALL, RK_PAIRS, RK_EVAL };

static const struct {
    const char *cmd;
    enum redis_keys keys;
} redis_cmds[] = {
    { "PING", RK_NONE },
    { "GET", RK_FIRST }, { "SET", RK_FIRST }, { "SETEX", RK_FIRST }, { "PSETEX", RK_FIRST },
    { "SETNX", RK_FIRST }, { "GETSET", RK_FIRST }, { "GETDEL", RK_FIRST }, { "GETEX", RK_FIRST },
    { "INCR", RK_FIRST }, { "INCRBY", RK_FIRST }, { "INCRBYFLOAT", RK_FIRST },
    { "DECR", RK_FIRST }, { "DECRBY", RK_FIRST }, { "APPEND", RK_FIRST }, { "STRLEN", RK_FIRST },
    { "GETRANGE", RK_FIRST }, { "SETRANGE", RK_FIRST },
    { "EXPIRE", RK_FIRST }, { "PEXPIRE", RK_FIRST }, { "EXPIREAT", RK_FIRST },
    { "PEXPIREAT", RK_FIRST }, { "TTL", RK_FIRST }, { "PTTL", RK_FIRST }, { "PERSIST", RK_FIRST },
    { "TYPE", RK_FIRST },
    { "HGET", RK_FIRST }, { "HSET", RK_FIRST }, { "HSETNX", RK_FIRST }, { "HMSET", RK_FIRST },
    { "HMGET", RK_FIRST }, { "HGETALL", RK_FIRST }, { "HDEL", RK_FIRST }, { "HEXISTS", RK_FIRST },
    { "HINCRBY", RK_FIRST }, { "HINCRBYFLOAT", RK_FIRST }, { "HKEYS", RK_FIRST },
    { "HVALS", RK_FIRST }, { "HLEN", RK_FIRST }, { "HSTRLEN", RK_FIRST },
    { "LPUSH", RK_FIRST }, { "RPUSH", RK_FIRST }, { "LPUSHX", RK_FIRST }, { "RPUSHX", RK_FIRST },
    { "LPOP", RK_FIRST }, { "RPOP", RK_FIRST }, { "LRANGE", RK_FIRST }, { "LTRIM", RK_FIRST },
    { "LLEN", RK_FIRST }, { "LINDEX", RK_FIRST }, { "LREM", RK_FIRST }, { "LSET", RK_FIRST },
    { "SADD", RK_FIRST }, { "SREM", RK_FIRST }, { "SMEMBERS", RK_FIRST },
    { "SISMEMBER", RK_FIRST }, { "SMISMEMBER", RK_FIRST }, { "SCARD", RK_FIRST },
    { "SPOP", RK_FIRST }, { "SRANDMEMBER", RK_FIRST },
    { "ZADD", RK_FIRST }, { "ZREM", RK_FIRST }, { "ZRANGE", RK_FIRST },
    { "ZRANGEBYSCORE", RK_FIRST }, { "ZREVRANGE", RK_FIRST }, { "ZREVRANGEBYSCORE", RK_FIRST },
    { "ZSCORE", RK_FIRST }, { "ZINCRBY", RK_FIRST }, { "ZCARD", RK_FIRST }, { "ZCOUNT", RK_FIRST },
    { "ZRANK", RK_FIRST }, { "ZREVRANK", RK_FIRST }, { "ZREMRANGEBYSCORE", RK_FIRST },
    { "ZREMRANGEBYRANK", RK_FIRST }, { "PFADD", RK_FIRST },
    { "DEL", RK_ALL }, { "UNLINK", RK_ALL }, { "EXISTS", RK_ALL }, { "MGET", RK_ALL },
    { "TOUCH", RK_ALL }, { "PFCOUNT", RK_ALL },
    { "MSET", RK_PAIRS }, { "MSETNX", RK_PAIRS },
    { "EVAL", RK_EVAL }, { "EVALSHA", RK_EVAL },
};

/* One command, built: argv with redis.prefix in front of its keys. */
struct redis_cmd {
    size_t argc;
    const char **argv;
    size_t *argvlen;
    struct redis_cmd *next;
};

/* Builds cmd with the arguments of the array at args (0: none) into the
 * task pool; raises a Lua error for a command or arguments it refuses. */
static struct redis_cmd *redis_build(lua_State *L, struct as_task *t, const char *cmd, int args,
                                     const char *what)
{
    size_t k;
    for (k = 0; k < AS_ARRAY_LEN(redis_cmds); k++)
        if (as_strcaseeq(cmd, redis_cmds[k].cmd)) break;
    if (k == AS_ARRAY_LEN(redis_cmds))
        luaL_error(L, "%s: command '%s' is not available from Lua (authscan puts redis.prefix "
                   "in front of every key, so only the commands listed in docs/lua.md, whose "
                   "keys it can find, may be sent)", what, cmd);
    enum redis_keys keys = redis_cmds[k].keys;
    lua_Integer n = args ? luaL_len(L, args) : 0;
    if (n + 1 > REDIS_MAX_ARGS) luaL_error(L, "%s: more than %d arguments", what, REDIS_MAX_ARGS);
    lua_Integer numkeys = 0;
    if ((keys == RK_FIRST || keys == RK_ALL) && n < 1)
        luaL_error(L, "%s: %s needs a key (args = {key, ...})", what, redis_cmds[k].cmd);
    if (keys == RK_PAIRS && (n < 2 || n % 2))
        luaL_error(L, "%s: %s needs key, value pairs", what, redis_cmds[k].cmd);
    if (keys == RK_EVAL) {
        int isnum = 0;
        if (n >= 2) {
            lua_geti(L, args, 2);
            numkeys = lua_tointegerx(L, -1, &isnum);
            lua_pop(L, 1);
        }
        if (!isnum || numkeys < 0 || numkeys > n - 2)
            luaL_error(L, "%s: %s needs a script and the number of keys that follow it", what,
                       redis_cmds[k].cmd);
    }
    struct as_pool *pool = as_task_pool(t);
    const char *prefix = as_redis_prefix(as_task_service_state(t, &as_redis_service));
    size_t plen = prefix ? strlen(prefix) : 0;
    struct redis_cmd *rc = as_pool_alloc(pool, sizeof *rc);
    rc->argc = (size_t)n + 1;
    rc->argv = as_pool_alloc(pool, rc->argc * sizeof *rc->argv);
    rc->argvlen = as_pool_alloc(pool, rc->argc * sizeof *rc->argvlen);
    rc->argv[0] = redis_cmds[k].cmd;
    rc->argvlen[0] = strlen(redis_cmds[k].cmd);
    for (lua_Integer i = 1; i <= n; i++) {
        int ty = lua_geti(L, args, i);
        if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
            luaL_error(L, "%s: args[%d] is a %s; want a string or a number", what, (int)i,
                       lua_typename(L, ty));
        size_t len;
        const char *v = lua_tolstring(L, -1, &len);
        int is_key = keys == RK_FIRST ? i == 1
                   : keys == RK_ALL   ? 1
                   : keys == RK_PAIRS ? i % 2 == 1
                   : keys == RK_EVAL  ? i >= 3 && i < 3 + numkeys
                                      : 0;
        if (is_key && (len == 0 || v[0] == '{'))
            luaL_error(L, "%s: key '%s' is empty or begins with '{': keys that begin with a "
                       "hash tag are the plugins' (docs/redis.md); put a name before the tag, "
                       "as in 'site{%s}'", what, v, len ? v + 1 : "");
        if (is_key) {
            char *p = as_pool_alloc(pool, plen + len + 1);
            if (plen) memcpy(p, prefix, plen);
            memcpy(p + plen, v, len);
            rc->argv[i] = p;
            rc->argvlen[i] = plen + len;
        } else {
            rc->argv[i] = as_pool_memdup(pool, v, len + 1);
            rc->argvlen[i] = len;
        }
        lua_pop(L, 1);
    }
    return rc;
}

/* rspamd's conversion: strings (bulk and status) as strings, integers as
 * integers, nil as nil, arrays as tables (nested; a nil element leaves a
 * hole, as in rspamd), an error inside an array as its message. */
static void push_reply(lua_State *L, const struct as_redis_reply *r)
{
    luaL_checkstack(L, 4, "redis reply");
    if (!r) {
        lua_pushnil(L);
        return;
    }
    switch (r->type) {
    case AS_REDIS_REPLY_STRING:
    case AS_REDIS_REPLY_STATUS:
    case AS_REDIS_REPLY_ERROR:
        lua_pushlstring(L, r->str.ptr, r->str.len);
        break;
    case AS_REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)r->integer);
        break;
    case AS_REDIS_REPLY_ARRAY:
        lua_createtable(L, r->nelem > INT32_MAX ? 0 : (int)r->nelem, 0);
        for (size_t i = 0; i < r->nelem; i++) {
            push_reply(L, &r->elem[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

static const char *redis_error(enum as_redis_status st, const struct as_redis_reply *r)
{
    switch (st) {
    case AS_REDIS_ERROR:
        return r && r->str.ptr ? r->str.ptr : "error reply";
    case AS_REDIS_TIMEOUT:
        return "timeout (redis.timeout)";
    case AS_REDIS_UNAVAILABLE:
        return "redis unavailable (connection lost)";
    default:
        return "error";
    }
}

#define REDIS_REFUSED "redis unavailable (no connection)"

struct redis_cb_args {
    enum as_redis_status st;
    const struct as_redis_reply *reply;
};

/* callback(err, data), as rspamd calls it */
static int push_redis_args(lua_State *co, const void *arg)
{
    const struct redis_cb_args *a = arg;
    if (a->st == AS_REDIS_OK) {
        lua_pushnil(co);
        push_reply(co, a->reply);
    } else {
        lua_pushstring(co, redis_error(a->st, a->reply));
        lua_pushnil(co);
    }
    return 2;
}

static void redis_cb_done(struct as_task *t, enum as_redis_status st,
                          const struct as_redis_reply *reply, void *arg)
{
    AS_UNUSED(t);
    struct redis_cb_args a = { st, reply };
    op_call(arg, push_redis_args, &a);
}

/* The connection object make_request and connect_sync return; it holds
 * the task's userdata (uservalue 1), so it dies with its scan. */
struct lua_redis_conn {
    int sync;                     /* connect_sync(): add_cmd() and exec() */
    struct redis_cmd *head, *tail;
    size_t n;
};

static void push_conn(lua_State *L, struct lua_task_ctx *c, int sync)
{
    struct lua_redis_conn *k = lua_newuserdatauv(L, sizeof *k, 1);
    memset(k, 0, sizeof *k);
    k->sync = sync;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ud_ref);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, REDIS_MT);
}

/* The request table's keys: rspamd's connection settings are accepted
 * and change nothing (redis.* applies); anything else is an error. */
static void redis_check_fields(lua_State *L, int tbl, const char *what)
{
    static const char *const used[] = { "task", "cmd", "args", "callback", "key", "is_write" };
    static const char *const inert[] = { "host", "timeout", "password", "dbname", "db",
                                         "no_pool", "config", "ev_base", "session" };
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: keys must be names", what);
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (size_t i = 0; i < AS_ARRAY_LEN(used) && !ok; i++) ok = strcmp(k, used[i]) == 0;
        for (size_t i = 0; i < AS_ARRAY_LEN(inert) && !ok; i++) ok = strcmp(k, inert[i]) == 0;
        if (!ok && strcmp(k, "opaque_data") == 0)
            luaL_error(L, "%s: opaque_data is not supported (replies are Lua strings)", what);
        if (!ok) luaL_error(L, "%s: unknown key '%s'", what, k);
    }
    if (lua_getfield(L, tbl, "key") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: key= must be a string", what);
    if (lua_getfield(L, tbl, "is_write") != LUA_TNIL && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "%s: is_write= must be a boolean", what);
    lua_pop(L, 2);
}

/* The rule's context, for a request from a rule or its callbacks. */
static struct lua_task_ctx *rule_ctx(lua_State *L, struct as_task *t, const char *what)
{
    struct lua_task_ctx *c = task_ctx(t);
    if (!c || !c->current)
        luaL_error(L, "%s: only a rule (or its callbacks) may send commands", what);
    return c;
}

/* rspamd_redis.make_request{task=, cmd=, args=, callback=, key=,
 * is_write=}: with a callback, a command the task waits for; without,
 * fire and forget (a write no one waits for). */
static int redis_make_request(lua_State *L)
{
    const char *what = "rspamd_redis.make_request";
    luaL_checktype(L, 1, LUA_TTABLE);
    redis_check_fields(L, 1, what);
    struct as_task *t = field_task(L, 1, what);
    struct lua_task_ctx *c = rule_ctx(L, t, what);
    if (lua_getfield(L, 1, "cmd") != LUA_TSTRING)
        return luaL_error(L, "%s: cmd= is required (a string)", what);
    const char *cmd = lua_tostring(L, -1);
    int args = 0;
    if (lua_getfield(L, 1, "args") != LUA_TNIL) {
        if (!lua_istable(L, -1)) return luaL_error(L, "%s: args= must be an array", what);
        args = lua_gettop(L);
    }
    int fn = 0;
    if (lua_getfield(L, 1, "callback") != LUA_TNIL) {
        if (!lua_isfunction(L, -1)) return luaL_error(L, "%s: callback= must be a function", what);
        fn = lua_gettop(L);
    }
    struct as_redis *r = as_task_service_state(t, &as_redis_service);
    if (!as_redis_enabled(r)) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, "redis is not configured (redis.servers)");
        return 2;
    }
    struct redis_cmd *rc = redis_build(L, t, cmd, args, what);
    if (!fn) {
        if (!as_redis_submit(r, rc->argc, rc->argv, rc->argvlen, NULL, NULL)) {
            lua_pushboolean(L, 0);
            lua_pushstring(L, "write dropped: redis is down and its queue is full "
                           "(redis.queue_max)");
            return 2;
        }
    } else {
        struct lua_cb_op *o = op_new(c, L, fn);
        if (as_redis_command(t, redis_cb_done, o, rc->argc, rc->argv, rc->argvlen) < 0 &&
            op_refuse(o, REDIS_REFUSED) < 0) {
            op_release(o);
            lua_pushboolean(L, 0);
            lua_pushstring(L, "the command could not be started (scan deadline passed?)");
            return 2;
        }
    }
    lua_pushboolean(L, 1);
    push_conn(L, c, 0);
    return 2;
}

/* rspamd_redis.connect_sync{task=, ...}: a connection for the coroutine
 * form (conn:add_cmd(), conn:exec()). */
static int redis_connect_sync(lua_State *L)
{
    const char *what = "rspamd_redis.connect_sync";
    luaL_checktype(L, 1, LUA_TTABLE);
    redis_check_fields(L, 1, what);
    struct as_task *t = field_task(L, 1, what);
    struct lua_task_ctx *c = rule_ctx(L, t, what);
    if (!as_redis_enabled(as_task_service_state(t, &as_redis_service))) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, "redis is not configured (redis.servers)");
        return 2;
    }
    lua_pushboolean(L, 1);
    push_conn(L, c, 1);
    return 2;
}

static struct as_task *conn_task(lua_State *L, struct lua_redis_conn *k, const char *what)
{
    if (!k->sync)
        luaL_error(L, "%s: only for a connection from rspamd_redis.connect_sync (a "
                   "make_request is sent at once)", what);
    lua_getiuservalue(L, 1, 1);
    struct as_lua_task_ud *ud = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!ud || !ud->task) luaL_error(L, "%s: the connection's scan has ended", what);
    return ud->task;
}

/* conn:add_cmd(cmd, args) */
static int conn_add_cmd(lua_State *L)
{
    const char *what = "conn:add_cmd";
    struct lua_redis_conn *k = luaL_checkudata(L, 1, REDIS_MT);
    struct as_task *t = conn_task(L, k, what);
    const char *cmd = luaL_checkstring(L, 2);
    int args = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        args = 3;
    }
    if (k->n >= REDIS_MAX_PIPELINE)
        return luaL_error(L, "%s: more than %d commands for one exec()", what,
                          REDIS_MAX_PIPELINE);
    struct redis_cmd *rc = redis_build(L, t, cmd, args, what);
    if (k->tail) k->tail->next = rc;
    else k->head = rc;
    k->tail = rc;
    k->n++;
    lua_pushboolean(L, 1);
    return 1;
}

/* One command of a waiting conn:exec(). */
struct redis_sync_slot {
    struct lua_task_ctx *c;
    int ref;                      /* c->sync_ref when it was sent */
    lua_Integer index;            /* its results are at 2*index+1, 2*index+2 */
};

static void sync_store(lua_State *L, int results, lua_Integer index, enum as_redis_status st,
                       const struct as_redis_reply *reply)
{
    lua_pushboolean(L, st == AS_REDIS_OK);
    lua_rawseti(L, results, 2 * index + 1);
    if (st == AS_REDIS_OK) push_reply(L, reply);
    else lua_pushstring(L, redis_error(st, reply));
    lua_rawseti(L, results, 2 * index + 2);
}

/* Pushes the results (ok1, data1, ok2, data2 ...) on L; releases them. */
static int sync_push_results(lua_State *L, struct lua_task_ctx *c, size_t n)
{
    luaL_checkstack(L, (int)(2 * n + 2), "redis results");
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->sync_ref);
    int tbl = lua_gettop(L);
    for (size_t i = 1; i <= 2 * n; i++) lua_rawgeti(L, tbl, (lua_Integer)i);
    lua_remove(L, tbl);
    luaL_unref(L, LUA_REGISTRYINDEX, c->sync_ref);
    c->sync_ref = 0;
    return (int)(2 * n);
}

static void sync_done(struct as_task *t, enum as_redis_status st,
                      const struct as_redis_reply *reply, void *arg)
{
    AS_UNUSED(t);
    struct redis_sync_slot *ss = arg;
    struct lua_task_ctx *c = ss->c;
    if (c->sync_ref != ss->ref || !c->sync_left) return;
    lua_State *L = as_lua_state(c->s);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->sync_ref);
    sync_store(L, lua_gettop(L), ss->index, st, reply);
    lua_pop(L, 1);
    if (--c->sync_left) return;
    if (!c->run.co || !c->waiting) {   /* not expected: the run ended with the scan */
        luaL_unref(L, LUA_REGISTRYINDEX, c->sync_ref);
        c->sync_ref = 0;
        return;
    }
    c->waiting = 0;
    advance(c, sync_push_results(c->run.co, c, c->sync_n));
}

/* conn:exec(): sends the commands added, yields, and returns ok, data for
 * each of them, in order (ok1, data1, ok2, data2 ...). */
static int conn_exec(lua_State *L)
{
    const char *what = "conn:exec";
    struct lua_redis_conn *k = luaL_checkudata(L, 1, REDIS_MT);
    struct as_task *t = conn_task(L, k, what);
    struct lua_task_ctx *c = check_waitable(L, t, what);
    if (!k->n) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, "no commands to execute (conn:add_cmd first)");
        return 2;
    }
    lua_createtable(L, (int)(2 * k->n), 0);
    c->sync_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->sync_left = 0;
    c->sync_n = k->n;
    lua_Integer i = 0;
    for (struct redis_cmd *rc = k->head; rc; rc = rc->next, i++) {
        struct redis_sync_slot *ss = as_pool_alloc(as_task_pool(t), sizeof *ss);
        ss->c = c;
        ss->ref = c->sync_ref;
        ss->index = i;
        if (as_redis_command(t, sync_done, ss, rc->argc, rc->argv, rc->argvlen) == 0) {
            c->sync_left++;
            continue;
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->sync_ref);
        lua_pushboolean(L, 0);
        lua_rawseti(L, -2, 2 * i + 1);
        lua_pushstring(L, REDIS_REFUSED);
        lua_rawseti(L, -2, 2 * i + 2);
        lua_pop(L, 1);
    }
    k->head = k->tail = NULL;
    k->n = 0;
    if (!c->sync_left) return sync_push_results(L, c, c->sync_n);
    c->waiting = 1;
    return lua_yield(L, 0);
}

static int conn_tostring(lua_State *L)
{
    luaL_checkudata(L, 1, REDIS_MT);
    lua_pushliteral(L, REDIS_MT);
    return 1;
}

static const luaL_Reg redis_funcs[] = {
    { "make_request", redis_make_request }, { "connect_sync", redis_connect_sync },
    { NULL, NULL },
};

static const luaL_Reg conn_methods[] = {
    { "add_cmd", conn_add_cmd }, { "exec", conn_exec }, { NULL, NULL },
};

/* ------------------------------------------------------------------ */
/* The plugin                                                           */

static void lua_fini(void *state)
{
    struct lua_plugin *lp = state;
    if (!lp) return;
    for (int st = 0; st < LS_COUNT; st++) free(lp->stage[st]);
    free(lp);
}

/* The stage and position of the rule named sym, or -1. */
static int rule_position(const struct lua_plugin *lp, const char *sym, size_t *pos)
{
    for (int st = 0; st < LS_COUNT; st++)
        for (size_t i = 0; i < lp->nstage[st]; i++)
            if (lp->stage[st][i]->name && strcmp(lp->stage[st][i]->name, sym) == 0) {
                *pos = i;
                return st;
            }
    return -1;
}

/* register_dependency(): the dependency must be a plugin's or the core's
 * symbol (those run first), or a Lua rule that runs before. */
static int check_deps(struct as_plugin_ctx *ctx, const struct lua_plugin *lp)
{
    const struct as_symtab *st = as_engine_symtab(ctx->engine);
    for (size_t i = 0; i < as_lua_dep_count(lp->s); i++) {
        const struct as_lua_dep *d = as_lua_dep_at(lp->s, i);
        size_t pa, pb;
        int sa = rule_position(lp, d->symbol, &pa), sb = rule_position(lp, d->dep, &pb);
        const char *why = NULL;
        if (sa < 0) why = "the first argument is not a symbol of a Lua rule";
        else if (sb < 0 && !as_symtab_find(st, d->dep)) why = "the dependency is no known symbol";
        else if (sb > sa || (sb == sa && pb > pa))
            why = "the dependency runs after the rule: give it a higher priority or an "
                  "earlier stage (docs/lua.md)";
        if (!why) continue;
        as_plugin_set_error(ctx, "%s: register_dependency('%s', '%s'): %s", d->where,
                            d->symbol, d->dep, why);
        ctx->error_located = 1;   /* the message starts with FILE:LINE */
        return -1;
    }
    return 0;
}

static int lua_init(struct as_plugin_ctx *ctx, void **state)
{
    struct as_lua *s = as_engine_service_state(ctx->engine, &as_lua_service);
    if (!s || !as_lua_state(s)) {
        as_plugin_set_error(ctx, "the Lua service is not running");
        return -1;
    }
    lua_State *L = as_lua_state(s);
    luaL_newmetatable(L, AS_LUA_TASK_MT);
    luaL_newlib(L, task_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, IP_MT);
    luaL_newlib(L, ip_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ip_tostring_mm);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, ip_eq);
    lua_setfield(L, -2, "__eq");
    lua_pop(L, 1);
    luaL_newmetatable(L, RESULT_MT);
    static const luaL_Reg proxy_mm[] = {
        { "__index", proxy_index }, { "__newindex", proxy_newindex },
        { "__pairs", proxy_pairs }, { "__tostring", proxy_tostring }, { NULL, NULL },
    };
    luaL_setfuncs(L, proxy_mm, 0);
    lua_pop(L, 1);
    luaL_newmetatable(L, RESOLVER_MT);
    luaL_newlib(L, resolver_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, resolver_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, REDIS_MT);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    /* the modules services/lua.c made, so that files could require them */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    luaL_getsubtable(L, -1, "rspamd_dns");
    luaL_setfuncs(L, dns_funcs, 0);
    lua_pop(L, 1);
    luaL_getsubtable(L, -1, "rspamd_redis");
    luaL_setfuncs(L, redis_funcs, 0);
    lua_pop(L, 2);

    struct lua_plugin *lp = xcalloc(1, sizeof *lp);
    lp->s = s;
    size_t n = as_lua_rule_count(s);
    static const enum as_lua_rule_type order[LS_COUNT][2] = {
        { AS_LUA_PREFILTER, AS_LUA_NORMAL },
        { AS_LUA_POSTFILTER, AS_LUA_RULE_TYPES },
        { AS_LUA_IDEMPOTENT, AS_LUA_RULE_TYPES },
    };
    for (int st = 0; st < LS_COUNT; st++) {
        lp->stage[st] = xcalloc(n + 1, sizeof *lp->stage[st]);
        for (int k = 0; k < 2; k++) {
            size_t from = lp->nstage[st];
            for (size_t i = 0; i < n; i++)
                if (as_lua_rule_at(s, i)->type == order[st][k])
                    lp->stage[st][lp->nstage[st]++] = as_lua_rule_at(s, i);
            /* higher priority first, registration order kept (insertion sort) */
            for (size_t i = from + 1; i < lp->nstage[st]; i++) {
                struct as_lua_rule *r = lp->stage[st][i];
                size_t j = i;
                for (; j > from && lp->stage[st][j - 1]->priority < r->priority; j--)
                    lp->stage[st][j] = lp->stage[st][j - 1];
                lp->stage[st][j] = r;
            }
        }
    }
    if (check_deps(ctx, lp) < 0) {
        lua_fini(lp);
        return -1;
    }
    *state = lp;
    return 0;
}

const struct as_plugin as_lua_plugin = {
    AS_PLUGIN_HEADER,
    .name = "lua",
    .version = AUTHSCAN_VERSION,
    .description = "the site's Lua rules (lua.dir)",
    .init = lua_init,
    .scan = lua_scan,
    .fini = lua_fini,
    .postfilter = lua_postfilter,
    .finish = lua_finish,
};

void as_lua_plugin_trim_stages(const struct as_engine *e, struct as_engine_plugin *p)
{
    struct as_lua *s = as_engine_service_state(e, &as_lua_service);
    int have[AS_LUA_RULE_TYPES] = { 0 };
    for (size_t i = 0; s && i < as_lua_rule_count(s); i++) have[as_lua_rule_at(s, i)->type] = 1;
    if (!have[AS_LUA_POSTFILTER]) p->postfilter = NULL;
    if (!have[AS_LUA_IDEMPOTENT]) p->finish = NULL;
}
