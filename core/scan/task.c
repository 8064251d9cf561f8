/*
 * task.c - the scan task and its plugin scheduler (see task.h).
 *
 * Scheduling: a plugin becomes runnable when every plugin in its `depends`
 * is done; it is done when scan() has returned and its count of
 * outstanding async operations is zero.  The scheduler runs from a
 * deferred libevent event rather than from inside plugin callbacks, so no
 * plugin code ever runs re-entrantly inside another plugin's call.
 *
 * Stages (authscan/plugin.h): filters (scan) in dependency order; the
 * verdict; postfilters in dependency order, then the verdict again, now
 * final: done() runs and the protocol writes the reply; then, once the
 * protocol releases the task with as_task_free(), the finish stage runs
 * from a deferred event, so no finish hook ever runs before the reply is
 * queued.  Each stage reuses the same scheduler: a plugin without a hook
 * for the stage is done at once.  The scan deadline covers filters and
 * postfilters; after it, postfilters still run but may not start async
 * work (a site override must still apply to a late verdict).  The finish
 * stage has its own deadline of limits.scan_timeout; a task in it sits on
 * the engine's finishing list, which as_engine_free() empties.
 *
 * Attribution of async operations: an operation belongs to the "current"
 * plugin when it begins.  The current plugin is set while scan() runs,
 * and by as_task_async_enter()/as_task_async_end() while a completion
 * callback runs, so follow-up work started from a callback is counted
 * against the right plugin.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mail/authres.h"
#include "scan/engine.h"
#include "util/log.h"
#include "scan/poison.h"
#include "util/pool.h"
#include "services/service.h"
#include "scan/settings.h"
#include "scan/stats.h"
#include "scan/task.h"
#include "util/util.h"

#define NO_PLUGIN SIZE_MAX
/* Bounds on what one symbol carries into the reply and the log.  What
 * goes past them is not dropped silently: see add_option(). */
#define MAX_SYMBOL_OPTIONS 64
#define MAX_OPTION_LEN 1024
#define OPTION_MARK "..."
/* Bytes of an override's comment (as_task_add_override) kept. */
#define MAX_OVERRIDE_COMMENT 256

enum stage { STAGE_NEW, STAGE_FILTER, STAGE_POSTFILTER, STAGE_FINAL, STAGE_FINISH };

enum plugin_run_state { PS_IDLE, PS_RUNNING, PS_DONE, PS_SKIPPED };

struct as_async {
    struct as_async *prev, *next;
    size_t plugin;
    as_cancel_fn cancel;
    void *arg;
    int active;
};

struct plugin_run {
    unsigned char state;
    unsigned pending;
};

struct force {
    enum as_action action;
    enum as_force_mode mode;
    int priority;
    const char *message;
    const char *module;
    int pre_result;               /* as_task_pre_result(): rspamd's semantics */
    double score;                 /* its target score, NAN for none */
};

struct result {
    const char *key;
    const void *value;
};

/* One resinfo for our Authentication-Results field, formatted when added. */
struct auth_entry {
    const char *text;
    const char *method;           /* the method, to find a policy's entry */
    unsigned rank;                /* method: spf, dkim, dmarc, others */
    size_t plugin;                /* who added it (NO_PLUGIN: core) */
    size_t seq;                   /* order of adding */
};

struct as_task {
    struct as_engine *e;
    struct as_task *fin_prev, *fin_next;   /* engine's finishing list */
    struct as_pool *pool;
    char id[24];
    double t_start;

    struct as_envelope env;
    const char **rcpts;
    size_t rcap;
    struct as_message *msg;
    const struct as_from *from;

    struct plugin_run *runs;
    size_t current;
    struct as_async ops;          /* list head (sentinel) */
    struct event *step_ev;
    struct event *deadline_ev;
    as_task_done_cb done;
    void *done_arg;
    enum stage stage;
    int started, finished;        /* finished: the verdict is final */
    int no_async;                 /* past the scan deadline */

    struct as_task_symbol **syms; /* each in the pool: pointers stay valid */
    size_t nsyms, symcap;
    uint32_t *sym_pos;            /* symbol id -> position + 1 */

    struct force *forces;
    size_t nforces, forcecap;
    struct as_task_header_op *hdr_add, *hdr_del;
    size_t nadd, ndel, addcap, delcap;
    struct result *results;
    size_t nresults, rescap;
    struct auth_entry *auth;
    size_t nauth, authcap;
    struct as_policy_override *overrides;
    size_t noverrides, overcap;
    size_t decided;               /* index of the force that chose the verdict's
                                     action, SIZE_MAX: none (forces may move) */

    struct as_verdict verdict;
    void **service_slots;         /* one per as_service_at(i) */
    const struct as_settings *settings;   /* Settings-ID profile, or NULL */
    uint64_t digest;              /* poison.h identity, 0 if none */
    int skip;                     /* answer without running any plugin */
};

/* A plugin or module name: letters, digits, '-', '_', '.' (it goes into
 * the log line and the reply unquoted). */
static int policy_name(const char *s)
{
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

/* Grows a pool-allocated array: pool memory cannot be realloc'ed, so the
 * old array is left in the pool (they are small and die with the task). */
static void *grow(struct as_pool *pool, void *arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap) return arr;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *na = as_pool_alloc(pool, ncap * elem);
    if (n) memcpy(na, arr, n * elem);
    *cap = ncap;
    return na;
}

static void step_cb(evutil_socket_t fd, short what, void *arg);
static void deadline_cb(evutil_socket_t fd, short what, void *arg);

struct as_task *as_task_new(struct as_engine *e)
{
    struct as_pool *pool = as_pool_new(0);
    struct as_task *t = as_pool_alloc(pool, sizeof *t);
    size_t np = as_engine_plugin_count(e);
    t->e = e;
    t->pool = pool;
    t->t_start = as_now();
    as_engine_next_task_id(e, t->id, sizeof t->id);
    t->env.family = AF_UNSPEC;
    t->current = NO_PLUGIN;
    t->decided = SIZE_MAX;
    t->ops.next = t->ops.prev = &t->ops;
    t->runs = as_pool_alloc(pool, (np ? np : 1) * sizeof *t->runs);
    t->sym_pos = as_pool_alloc(pool, (as_symtab_count(as_engine_symtab(e)) + 1) *
                                         sizeof *t->sym_pos);
    t->service_slots = as_pool_alloc(pool, (as_service_count() + 1) * sizeof(void *));
    t->step_ev = event_new(as_engine_base(e), -1, 0, step_cb, t);
    t->deadline_ev = evtimer_new(as_engine_base(e), deadline_cb, t);
    if (!t->step_ev || !t->deadline_ev) as_oom();
    return t;
}

static void cancel_ops(struct as_task *t)
{
    /* A cancel hook may not begin new work, but it may end other ops:
     * always restart from the head. */
    while (t->ops.next != &t->ops) {
        struct as_async *op = t->ops.next;
        op->prev->next = op->next;
        op->next->prev = op->prev;
        op->active = 0;
        if (op->plugin != NO_PLUGIN && t->runs[op->plugin].pending) t->runs[op->plugin].pending--;
        if (op->cancel) op->cancel(op->arg);
    }
}

static void task_destroy(struct as_task *t)
{
    if (t->stage == STAGE_FINISH) {
        struct as_task **head = as_engine_finishing(t->e);
        if (t->fin_prev) t->fin_prev->fin_next = t->fin_next;
        else if (*head == t) *head = t->fin_next;
        if (t->fin_next) t->fin_next->fin_prev = t->fin_prev;
    }
    /* cancel hooks and pool destroy hooks are plugin and library code
     * (dkim_free), still this message's */
    uint64_t mark = as_task_enter(t);
    cancel_ops(t);
    event_free(t->step_ev);
    event_free(t->deadline_ev);
    as_pool_destroy(t->pool);
    as_task_leave(mark);
}

void as_task_set_digest(struct as_task *t, uint64_t digest) { t->digest = digest; }
uint64_t as_task_enter(const struct as_task *t) { return as_poison_enter(t->digest); }
void as_task_leave(uint64_t mark) { as_poison_leave(mark); }

void as_task_skip(struct as_task *t)
{
    t->skip = 1;
    t->verdict.is_skipped = 1;
}

static int any_finish_hook(const struct as_task *t)
{
    if (t->skip) return 0;
    for (size_t i = 0; i < as_engine_plugin_count(t->e); i++)
        if (as_engine_plugin_at(t->e, i)->finish &&
            !(t->settings && t->settings->plugin_off[i]))
            return 1;
    return 0;
}

static void reset_runs(struct as_task *t)
{
    memset(t->runs, 0, as_engine_plugin_count(t->e) * sizeof *t->runs);
}

/* The protocol is done with the task: the finish stage, if any plugin has
 * one, runs from the next loop iteration, after the reply is queued. */
void as_task_free(struct as_task *t)
{
    if (!t) return;
    if (t->stage == STAGE_FINAL && any_finish_hook(t)) {
        t->stage = STAGE_FINISH;
        t->no_async = 0;
        reset_runs(t);
        struct as_task **head = as_engine_finishing(t->e);
        t->fin_prev = NULL;
        t->fin_next = *head;
        if (*head) (*head)->fin_prev = t;
        *head = t;
        double to = as_engine_limits(t->e)->scan_timeout;
        if (to > 0) {
            struct timeval tv;
            as_timeval(to, &tv);
            evtimer_add(t->deadline_ev, &tv);
        }
        event_active(t->step_ev, EV_TIMEOUT, 0);
        return;
    }
    task_destroy(t);
}

void as_task_wait_finishing(struct as_engine *e)
{
    while (*as_engine_finishing(e)) event_base_loop(as_engine_base(e), EVLOOP_ONCE);
}

void as_task_free_finishing(struct as_engine *e)
{
    struct as_task **head = as_engine_finishing(e);
    while (*head) {
        as_task_log(*head, AS_LOG_NOTICE, "engine shutting down: finish stage cut short");
        task_destroy(*head);
    }
}

struct as_envelope *as_task_envelope_mut(struct as_task *t) { return &t->env; }
const struct as_envelope *as_task_envelope(const struct as_task *t) { return &t->env; }
struct as_pool *as_task_pool(const struct as_task *t) { return t->pool; }
const char *as_task_id(const struct as_task *t) { return t->id; }
struct as_engine *as_task_engine(const struct as_task *t) { return t->e; }
struct event_base *as_task_event_base(const struct as_task *t) { return as_engine_base(t->e); }

void **as_task_service_slot(struct as_task *t, const struct as_service *s)
{
    size_t i = as_service_index(s);
    return i == SIZE_MAX ? NULL : &t->service_slots[i];
}

void *as_task_service_state(const struct as_task *t, const struct as_service *s)
{
    return as_engine_service_state(t->e, s);
}
double as_task_elapsed(const struct as_task *t) { return as_now() - t->t_start; }

int as_task_set_ip(struct as_task *t, const char *ip)
{
    struct in6_addr a6;
    struct in_addr a4;
    char buf[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        t->env.family = AF_INET;
        t->env.addr.v4 = a4;
        t->env.ip = as_pool_strdup(t->pool, ip);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        /* RFC 7208 section 5: an IPv4-mapped client is an IPv4 client */
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            t->env.family = AF_INET;
            memcpy(&t->env.addr.v4, &a6.s6_addr[12], 4);
            inet_ntop(AF_INET, &t->env.addr.v4, buf, sizeof buf);
        } else {
            t->env.family = AF_INET6;
            t->env.addr.v6 = a6;
            inet_ntop(AF_INET6, &a6, buf, sizeof buf);
        }
        t->env.ip = as_pool_strdup(t->pool, buf);
        return 0;
    }
    return -1;
}

void as_task_set_mail_from(struct as_task *t, const char *from)
{
    size_t n = strlen(from);
    while (n && (*from == ' ' || *from == '\t')) from++, n--;
    while (n && (from[n - 1] == ' ' || from[n - 1] == '\t')) n--;
    if (n >= 2 && from[0] == '<' && from[n - 1] == '>') from++, n -= 2;
    t->env.mail_from = as_pool_strndup(t->pool, from, n);
}

void as_task_add_rcpt(struct as_task *t, const char *rcpt)
{
    t->rcpts = grow(t->pool, t->rcpts, t->env.nrcpts, &t->rcap, sizeof *t->rcpts);
    t->rcpts[t->env.nrcpts++] = as_pool_strdup(t->pool, rcpt);
    t->env.rcpts = t->rcpts;
}

enum as_msg_error as_task_set_message(struct as_task *t, const char *data, size_t len,
                                      char *err, size_t errlen)
{
    const struct as_limits *l = as_engine_limits(t->e);
    struct as_msg_limits lim = {
        .max_headers = l->max_headers,
        .max_header_size = l->max_header_size,
    };
    return as_message_parse(t->pool, data, len, &lim, &t->msg, err, errlen);
}

/* An empty message stands in when none was set, so plugins never see NULL. */
const struct as_message *as_task_message(const struct as_task *t)
{
    static const struct as_message empty = { .data = "", .len = 0, .body_offset = 0 };
    return t->msg ? t->msg : &empty;
}

const struct as_from *as_task_from(const struct as_task *t)
{
    struct as_task *mt = (struct as_task *)t;
    if (!mt->from) mt->from = as_message_from(mt->pool, as_task_message(t));
    return mt->from;
}

const char *as_header_unfold(const struct as_task *t, const struct as_header *h, size_t *len)
{
    return as_header_unfold_pool(t->pool, h, len);
}

void as_task_log(const struct as_task *t, enum as_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    as_logv(level, t->id, fmt, ap);
    va_end(ap);
}

/* ---- symbols ------------------------------------------------------------ */

/* Options past the bounds are not dropped silently: an option longer than
 * MAX_OPTION_LEN is cut (at a UTF-8 boundary) and ends in OPTION_MARK; past
 * MAX_SYMBOL_OPTIONS options, one last option OPTION_MARK says that more
 * were given.  Either is logged once per symbol and task. */
static void add_option(struct as_task *t, struct as_task_symbol *s, const char *opt)
{
    size_t n = strnlen(opt, MAX_OPTION_LEN + 1);
    const char *v = opt;
    if (n > MAX_OPTION_LEN) {
        size_t keep = MAX_OPTION_LEN - (sizeof OPTION_MARK - 1);
        while (keep && ((unsigned char)opt[keep] & 0xC0) == 0x80) keep--;
        char *cut = as_pool_alloc(t->pool, keep + sizeof OPTION_MARK);
        memcpy(cut, opt, keep);
        memcpy(cut + keep, OPTION_MARK, sizeof OPTION_MARK);
        v = cut;
        n = keep + sizeof OPTION_MARK - 1;
        if (!(s->bounded & 1))
            as_task_log(t, AS_LOG_NOTICE, "symbol %s: option of more than %d bytes cut, "
                        "marked \"%s\"", s->sym->name, MAX_OPTION_LEN, OPTION_MARK);
        s->bounded |= 1;
    }
    for (size_t i = 0; i < s->nopts; i++)
        if (strcmp(s->opts[i], v) == 0) return;
    if (s->nopts >= MAX_SYMBOL_OPTIONS) {
        if (s->bounded & 2) return;
        s->bounded |= 2;
        v = OPTION_MARK;
        n = sizeof OPTION_MARK - 1;
        as_task_log(t, AS_LOG_NOTICE, "symbol %s: more than %d options, the rest dropped, "
                    "marked \"%s\"", s->sym->name, MAX_SYMBOL_OPTIONS, OPTION_MARK);
    }
    if (s->nopts % 4 == 0) {
        const char **no = as_pool_alloc(t->pool, (s->nopts + 4) * sizeof *no);
        if (s->nopts) memcpy(no, s->opts, s->nopts * sizeof *no);
        s->opts = no;
    }
    s->opts[s->nopts++] = v == opt ? as_pool_strndup(t->pool, opt, n) : v;
}

int as_task_add_symbolv(struct as_task *t, const char *name, double weight,
                        const char *const *opts, size_t nopts)
{
    const struct as_symbol *sym = as_symtab_find(as_engine_symtab(t->e), name);
    if (!sym) {
        as_task_log(t, AS_LOG_ERR, "unknown symbol %s (not declared by any plugin)", name);
        return -1;
    }
    if (t->finished) {
        as_task_log(t, AS_LOG_ERR, "symbol %s added after the verdict was final", name);
        return -1;
    }
    if (t->settings && t->settings->symbol_off[sym->id]) return 0;
    if (!isfinite(weight)) weight = 0;
    struct as_task_symbol *s;
    if (t->sym_pos[sym->id]) {
        s = t->syms[t->sym_pos[sym->id] - 1];
        if (!(sym->flags & AS_SYM_ONE_SHOT) && fabs(weight) > fabs(s->weight)) {
            s->weight = weight;
            s->score = weight * sym->score;
        }
    } else {
        t->syms = grow(t->pool, t->syms, t->nsyms, &t->symcap, sizeof *t->syms);
        s = as_pool_alloc(t->pool, sizeof *s);
        t->syms[t->nsyms++] = s;
        s->sym = sym;
        s->weight = weight;
        s->score = weight * sym->score;
        t->sym_pos[sym->id] = (uint32_t)t->nsyms;
    }
    for (size_t i = 0; i < nopts; i++)
        if (opts[i]) add_option(t, s, opts[i]);
    return 0;
}

int as_task_add_symbol(struct as_task *t, const char *name, double weight, ...)
{
    /* In chunks: adding a symbol again with the same weight only adds
     * options, so this is the same as one call with every option. */
    const char *opts[MAX_SYMBOL_OPTIONS];
    size_t n = 0;
    int rc = 0, sent = 0;
    va_list ap;
    va_start(ap, weight);
    const char *o;
    while ((o = va_arg(ap, const char *)) != NULL) {
        opts[n++] = o;
        if (n == MAX_SYMBOL_OPTIONS) {
            rc |= as_task_add_symbolv(t, name, weight, opts, n);
            n = 0;
            sent = 1;
        }
    }
    va_end(ap);
    if (n || !sent) rc |= as_task_add_symbolv(t, name, weight, opts, n);
    return rc;
}

int as_task_has_symbol(const struct as_task *t, const char *name)
{
    const struct as_symbol *sym = as_symtab_find(as_engine_symtab(t->e), name);
    return sym && t->sym_pos[sym->id];
}

size_t as_task_symbol_count(const struct as_task *t) { return t->nsyms; }
const struct as_task_symbol *as_task_symbol_at(const struct as_task *t, size_t i)
{
    return i < t->nsyms ? t->syms[i] : NULL;
}

size_t as_task_symbol_total(const struct as_task *t) { return t->nsyms; }

const struct as_symbol_result *as_task_symbol_get(const struct as_task *t, size_t i)
{
    if (i >= t->nsyms) return NULL;
    struct as_task_symbol *s = t->syms[i];
    s->pub = (struct as_symbol_result){
        .name = s->sym->name, .group = s->sym->group, .score = s->score,
        .weight = s->weight, .options = s->opts, .noptions = s->nopts,
    };
    return &s->pub;
}

/* ---- actions, headers, results ------------------------------------------ */

int as_task_force_action(struct as_task *t, enum as_action action, enum as_force_mode mode,
                         int priority, const char *smtp_message, const char *module)
{
    if ((unsigned)action >= AS_ACTION__COUNT) return -1;
    if (t->finished) {
        as_task_log(t, AS_LOG_ERR, "action forced by %s after the verdict was final",
                    module ? module : "?");
        return -1;
    }
    t->forces = grow(t->pool, t->forces, t->nforces, &t->forcecap, sizeof *t->forces);
    struct force *f = &t->forces[t->nforces++];
    f->action = action;
    f->mode = mode;
    f->priority = priority;
    f->message = smtp_message ? as_pool_strdup(t->pool, smtp_message) : NULL;
    f->module = module ? as_pool_strdup(t->pool, module) : NULL;
    f->pre_result = 0;
    f->score = NAN;
    return 0;
}

int as_task_pre_result(struct as_task *t, enum as_action action, int least, int priority,
                       double score, const char *smtp_message, const char *module)
{
    if (as_task_force_action(t, action, least ? AS_FORCE_LEAST : AS_FORCE_EXACT, priority,
                             smtp_message, module) < 0)
        return -1;
    struct force *f = &t->forces[t->nforces - 1];
    f->pre_result = 1;
    f->score = isfinite(score) ? score : NAN;
    as_task_log(t, AS_LOG_NOTICE, "%s set the action to %s%s (priority %d%s%s)",
                module ? module : "?", least ? "at least " : "", as_action_name(action),
                priority, smtp_message ? ": " : "", smtp_message ? smtp_message : "");
    return 0;
}

static int valid_header_name(const char *n)
{
    if (!*n) return 0;
    for (; *n; n++)
        if (*n <= 32 || *n >= 127 || *n == ':') return 0;
    return 1;
}

int as_task_add_header(struct as_task *t, const char *name, const char *value, int order)
{
    if (!valid_header_name(name) || !value || t->finished) return -1;
    t->hdr_add = grow(t->pool, t->hdr_add, t->nadd, &t->addcap, sizeof *t->hdr_add);
    t->hdr_add[t->nadd++] = (struct as_task_header_op){
        as_pool_strdup(t->pool, name), as_pool_strdup(t->pool, value), order };
    return 0;
}

int as_task_remove_header(struct as_task *t, const char *name, int index)
{
    if (!valid_header_name(name) || t->finished) return -1;
    t->hdr_del = grow(t->pool, t->hdr_del, t->ndel, &t->delcap, sizeof *t->hdr_del);
    t->hdr_del[t->ndel++] = (struct as_task_header_op){ as_pool_strdup(t->pool, name), NULL,
                                                        index };
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

size_t as_task_removal_positions(const struct as_task *t, const struct as_task_header_op *ops,
                                 size_t n, int *all, int **pos)
{
    const char *name = ops[0].name;
    long count = (long)as_msg_header_count(as_task_message(t), name);
    int *idx = xcalloc(n, sizeof *idx);
    size_t k = 0;
    *all = 0;
    for (size_t i = 0; i < n; i++) {
        if (!as_strcaseeq(ops[i].name, name)) continue;
        long v = ops[i].order_or_index;
        if (v == 0) *all = 1;
        if (v < 0) v = count + v + 1;
        if (v < 1) continue;            /* before the first field: nothing to remove */
        int dup = 0;
        for (size_t j = 0; j < k && !dup; j++) dup = idx[j] == (int)v;
        if (!dup) idx[k++] = (int)v;
    }
    qsort(idx, k, sizeof *idx, cmp_desc);
    /* all of 1..count named explicitly is "all" as well */
    if (!*all && count > 0 && k == (size_t)count && idx[0] == count && idx[k - 1] == 1) *all = 1;
    if (k == 0) {
        free(idx);
        idx = NULL;
    }
    *pos = idx;
    return k;
}

size_t as_task_header_ops(const struct as_task *t, const struct as_task_header_op **ops,
                          int removals)
{
    *ops = removals ? t->hdr_del : t->hdr_add;
    return removals ? t->ndel : t->nadd;
}

int as_task_set_result(struct as_task *t, const char *key, const void *value)
{
    for (size_t i = 0; i < t->nresults; i++)
        if (strcmp(t->results[i].key, key) == 0) {
            t->results[i].value = value;
            return 0;
        }
    t->results = grow(t->pool, t->results, t->nresults, &t->rescap, sizeof *t->results);
    t->results[t->nresults++] = (struct result){ as_pool_strdup(t->pool, key), value };
    return 0;
}

const void *as_task_get_result(const struct as_task *t, const char *key)
{
    for (size_t i = 0; i < t->nresults; i++)
        if (strcmp(t->results[i].key, key) == 0) return t->results[i].value;
    return NULL;
}

/* ---- policy overrides ---------------------------------------------------- */

static const char *plugin_name(const struct as_task *t);

const char *as_override_type_name(enum as_override_type type)
{
    static const char *const names[] = {
        [AS_OVERRIDE_FORWARDED] = "forwarded",
        [AS_OVERRIDE_SAMPLED_OUT] = "sampled_out",
        [AS_OVERRIDE_TRUSTED_FORWARDER] = "trusted_forwarder",
        [AS_OVERRIDE_MAILING_LIST] = "mailing_list",
        [AS_OVERRIDE_LOCAL_POLICY] = "local_policy",
        [AS_OVERRIDE_OTHER] = "other",
        [AS_OVERRIDE_POLICY_TEST_MODE] = "policy_test_mode",
    };
    return (unsigned)type < AS_ARRAY_LEN(names) ? names[type] : "other";
}

/* A comment goes into a header field, the reply and the log line: a
 * site rule's text is cut (at a UTF-8 character boundary) and marked. */
static const char *bounded_comment(struct as_pool *pool, const char *c)
{
    if (!c) return "";
    size_t n = strlen(c);
    if (n <= MAX_OVERRIDE_COMMENT) return as_pool_strdup(pool, c);
    n = MAX_OVERRIDE_COMMENT - (sizeof OPTION_MARK - 1);
    while (n && ((unsigned char)c[n] & 0xC0) == 0x80) n--;
    char *out = as_pool_alloc(pool, n + sizeof OPTION_MARK);
    memcpy(out, c, n);
    memcpy(out + n, OPTION_MARK, sizeof OPTION_MARK);
    return out;
}

int as_task_add_override(struct as_task *t, const char *policy, enum as_override_type type,
                         const char *comment)
{
    if ((unsigned)type >= AS_OVERRIDE__COUNT || !policy_name(policy)) {
        as_task_log(t, AS_LOG_ERR, "%s: override refused: bad type or policy name",
                    plugin_name(t));
        return -1;
    }
    if (t->finished) {
        as_task_log(t, AS_LOG_ERR, "%s: override of %s recorded after the verdict was final",
                    plugin_name(t), policy);
        return -1;
    }
    t->overrides = grow(t->pool, t->overrides, t->noverrides, &t->overcap,
                        sizeof *t->overrides);
    t->overrides[t->noverrides++] = (struct as_policy_override){
        as_pool_strdup(t->pool, policy), type, bounded_comment(t->pool, comment) };
    return 0;
}

size_t as_task_overrides(const struct as_task *t, const struct as_policy_override **out)
{
    *out = t->overrides;
    return t->noverrides;
}

const char *as_task_override_text(const struct as_task *t)
{
    if (!t->noverrides) return NULL;
    struct sbuf b = {0};
    for (size_t i = 0; i < t->noverrides; i++) {
        const struct as_policy_override *o = &t->overrides[i];
        sbuf_printf(&b, "%s%s %s%s%s", i ? "; " : "", o->policy,
                    as_override_type_name(o->type), *o->comment ? ": " : "", o->comment);
    }
    char *s = as_pool_strndup(t->pool, b.data, b.len);
    sbuf_free(&b);
    /* one log line, quoted: comments come from site rules and sealers */
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
        else if (*p == '"') *p = '\'';
    return s;
}

/* ---- Authentication-Results ---------------------------------------------- */

static unsigned method_rank(const char *method)
{
    static const char *const order[] = { "spf", "dkim", "dmarc" };
    for (unsigned i = 0; i < AS_ARRAY_LEN(order); i++)
        if (as_strcaseeq(method, order[i])) return i;
    return AS_ARRAY_LEN(order);
}

static const char *plugin_name(const struct as_task *t)
{
    const struct as_engine_plugin *p = as_engine_plugin_at(t->e, t->current);
    return p ? p->def->name : "core";
}

int as_task_add_auth_resultv(struct as_task *t, const struct as_auth_result *r)
{
    if (t->finished) {
        as_task_log(t, AS_LOG_ERR, "%s: Authentication-Results entry added after the verdict "
                    "was final", plugin_name(t));
        return -1;
    }
    const char *why = NULL;
    const char *text = as_authres_resinfo(t->pool, r, &why);
    if (!text) {
        as_task_log(t, AS_LOG_ERR, "%s: Authentication-Results entry %s=%s refused: %s",
                    plugin_name(t), r && r->method ? r->method : "(null)",
                    r && r->result ? r->result : "(null)", why);
        return -1;
    }
    t->auth = grow(t->pool, t->auth, t->nauth, &t->authcap, sizeof *t->auth);
    t->auth[t->nauth] = (struct auth_entry){ text, as_pool_strdup(t->pool, r->method),
                                             method_rank(r->method), t->current, t->nauth };
    t->nauth++;
    return 0;
}

/* as_task_add_auth_result(): pairs read from the argument list (plugin.h) */
#define MAX_AUTH_PROPS 16

int as_task_add_auth_result(struct as_task *t, const char *method, const char *result,
                            const char *reason, ...)
{
    struct as_auth_prop props[MAX_AUTH_PROPS];
    struct as_auth_result r = { method, result, NULL, reason, props, 0 };
    va_list ap;
    va_start(ap, reason);
    const char *name;
    int bad = 0;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        /* a NULL value may be a misplaced end of the list: read no further */
        if (!value || r.nprops == MAX_AUTH_PROPS) {
            bad = value ? 2 : 1;
            break;
        }
        props[r.nprops++] = (struct as_auth_prop){ name, value };
    }
    va_end(ap);
    if (bad) {
        as_task_log(t, AS_LOG_ERR, "%s: Authentication-Results entry %s=%s refused: %s",
                    plugin_name(t), method ? method : "(null)", result ? result : "(null)",
                    bad == 1 ? "property without a value" : "more than 16 properties");
        return -1;
    }
    return as_task_add_auth_resultv(t, &r);
}

static int auth_entry_cmp(const void *a, const void *b)
{
    const struct auth_entry *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    if (x->plugin != y->plugin) return x->plugin < y->plugin ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const char *authserv_id(const struct as_task *t, const struct as_authres_conf *c)
{
    if (c->authserv_id) return c->authserv_id;
    if (t->env.mta_name && *t->env.mta_name) return t->env.mta_name;
    return c->hostname;
}

/* Every Authentication-Results field of the message that carries our
 * authserv-id (RFC 8601 5): however many there are, the header limits
 * bound them.  Positions are 1-based among the A-R fields (rspamd's
 * remove_headers); 0 removes every instance when all are ours. */
static void authres_remove_forged(struct as_task *t, const char *id)
{
    static const char name[] = "Authentication-Results";
    size_t n = t->msg ? as_msg_header_count(t->msg, name) : 0;
    if (n == 0) return;
    unsigned char *ours = as_pool_alloc(t->pool, n);
    size_t nours = 0, k = 0;
    /* one pass over the fields: as_msg_header_get(nth) per field would be
     * quadratic in a header made of A-R fields */
    for (size_t i = 0; i < as_msg_header_total(t->msg) && k < n; i++) {
        const struct as_header *h = as_msg_header_at(t->msg, i);
        if (h->name.len != sizeof name - 1 || !as_memcaseeq(h->name.ptr, name, sizeof name - 1))
            continue;
        const char *aid = as_authres_authserv_id(t->pool, as_header_unfold(t, h, NULL));
        ours[k] = aid && as_strcaseeq(aid, id);
        nours += ours[k++];
    }
    if (nours && nours == n) {
        as_task_remove_header(t, name, 0);
    } else {
        for (size_t i = n; i-- > 0;)
            if (ours[i]) as_task_remove_header(t, name, (int)(i + 1));
    }
    if (nours)
        as_task_log(t, AS_LOG_INFO, "removed %zu of %zu Authentication-Results field(s) "
                    "carrying our authserv-id %s", nours, n, id);
}

/* The disposition an action amounts to, in DMARC's words (RFC 7489 6.3). */
static const char *action_disposition(enum as_action a)
{
    return a >= AS_ACTION_SOFT_REJECT ? "reject" : a >= AS_ACTION_ADD_HEADER ? "quarantine"
                                                                            : "none";
}

/* An entry of a policy that was overridden says so, the way Fastmail's
 * Authentication-Milter does (docs/protocol.md): what was applied, the
 * reason type of the last override (the one that decided), and every
 * override with its comment in a comment. */
static void authres_override(struct as_task *t, struct auth_entry *e)
{
    const char *type = NULL;
    struct sbuf why = {0};
    for (size_t i = 0; i < t->noverrides; i++) {
        const struct as_policy_override *o = &t->overrides[i];
        if (!as_strcaseeq(o->policy, e->method)) continue;
        type = as_override_type_name(o->type);
        sbuf_printf(&why, "%s%s%s%s", why.len ? "; " : "", type, *o->comment ? ": " : "",
                    o->comment);
    }
    if (!type) return;
    const struct as_auth_prop props[] = {
        { "policy.applied-disposition", action_disposition(t->verdict.action) },
        { "policy.override-reason", type },
    };
    e->text = as_authres_extend(t->pool, e->text, props, AS_ARRAY_LEN(props), why.data);
    sbuf_free(&why);
}

/* The finishing step of every scan that is not exempt: a skipped one (no
 * plugin ran: a poison message) or a Settings-ID profile with
 * auth_results = no.  Runs just before the verdict is final, so what the
 * postfilters added is in, and after a deadline with what there is. */
static void authres_finish(struct as_task *t)
{
    const struct as_authres_conf *c = as_engine_authres(t->e);
    if (t->skip || (t->settings && t->settings->authres_off)) return;
    if (!c->add && !c->remove_forged) return;
    const char *id = authserv_id(t, c);
    if (c->remove_forged) authres_remove_forged(t, id);
    if (!c->add) return;
    for (size_t i = 0; i < t->nauth; i++) authres_override(t, &t->auth[i]);
    if (t->nauth > 1) qsort(t->auth, t->nauth, sizeof *t->auth, auth_entry_cmp);
    const char **parts = as_pool_alloc(t->pool, (t->nauth + 1) * sizeof *parts);
    for (size_t i = 0; i < t->nauth; i++) parts[i] = t->auth[i].text;
    if (as_task_add_header(t, "Authentication-Results",
                           as_authres_field(t->pool, id, parts, t->nauth), 0) < 0)
        as_task_log(t, AS_LOG_ERR, "could not add the Authentication-Results field");
}

/* ---- async operations ---------------------------------------------------- */

struct as_async *as_task_async_begin(struct as_task *t, as_cancel_fn cancel, void *arg)
{
    /* After the verdict only the finish stage may wait for something; after
     * the scan deadline nothing may. */
    if ((t->finished && t->stage != STAGE_FINISH) || t->no_async) return NULL;
    struct as_async *op = as_pool_alloc(t->pool, sizeof *op);
    op->plugin = t->current;
    op->cancel = cancel;
    op->arg = arg;
    op->active = 1;
    op->next = &t->ops;
    op->prev = t->ops.prev;
    t->ops.prev->next = op;
    t->ops.prev = op;
    if (op->plugin != NO_PLUGIN) t->runs[op->plugin].pending++;
    else as_task_log(t, AS_LOG_WARN, "async operation begun outside any plugin");
    return op;
}

void as_task_async_enter(struct as_task *t, struct as_async *op)
{
    if (op && op->active) t->current = op->plugin;
}

size_t as_task_current_plugin(const struct as_task *t)
{
    return t->current;
}

void as_task_async_end(struct as_task *t, struct as_async *op)
{
    if (!op || !op->active) return;
    op->prev->next = op->next;
    op->next->prev = op->prev;
    op->active = 0;
    /* Work the caller starts next (in the same callback) is its plugin's. */
    t->current = op->plugin;
    if (op->plugin != NO_PLUGIN && t->runs[op->plugin].pending &&
        --t->runs[op->plugin].pending == 0)
        event_active(t->step_ev, EV_TIMEOUT, 0);
}

/* ---- scheduling and verdict ---------------------------------------------- */

/* The next force in rspamd's order (priority descending, then the order
 * they were added) after *prio / *idx; 0 at the end.  Start with *idx =
 * SIZE_MAX.  Few forces per task: a scan per step is fine. */
static int next_force_desc(const struct as_task *t, int *prio, size_t *idx)
{
    if (*idx != SIZE_MAX)
        for (size_t i = *idx + 1; i < t->nforces; i++)
            if (t->forces[i].priority == *prio) {
                *idx = i;
                return 1;
            }
    int found = 0, best = 0;
    for (size_t i = 0; i < t->nforces; i++) {
        int p = t->forces[i].priority;
        if ((*idx == SIZE_MAX || p < *prio) && (!found || p > best)) {
            best = p;
            found = 1;
        }
    }
    if (!found) return 0;
    for (size_t i = 0; i < t->nforces; i++)
        if (t->forces[i].priority == best) {
            *prio = best;
            *idx = i;
            return 1;
        }
    return 0;
}

/* rspamd's passthrough results (rspamd_check_action_metric() in rspamd
 * 3.x), used as soon as a Lua rule called set_pre_result so that a rule
 * written for rspamd gives the same action here.  Every force takes part
 * (a plugin's LEAST is rspamd's `least` flag: the DMARC plugin's force is
 * what rspamd's dmarc module sets), in priority order, highest first:
 *   - the first force without `least` decides the action outright (its
 *     target score, if given, becomes the score; no action only lowers it);
 *   - else the first `least` force is a floor: a score-based action wins
 *     only with a threshold above the floor's (the floor's threshold is its
 *     target score, else the action's threshold); a floor whose action has
 *     no threshold yields only to reject.  The score is raised to the
 *     floor's threshold. */
static void compute_verdict_rspamd(struct as_task *t, const struct as_actions *acts,
                                   double score)
{
    struct as_verdict *v = &t->verdict;
    const struct force *least = NULL, *by = NULL;
    int prio = 0;
    size_t idx = SIZE_MAX;
    enum as_action a = AS_ACTION_NO_ACTION;
    while (next_force_desc(t, &prio, &idx)) {
        const struct force *f = &t->forces[idx];
        if (f->mode == AS_FORCE_EXACT) {
            if (!isnan(f->score))
                score = f->action == AS_ACTION_NO_ACTION ? fmin(f->score, score) : f->score;
            a = f->action;
            by = f;
            goto done;
        }
        if (!least) least = f;
    }
    double floor = least ? (!isnan(least->score) ? least->score
                                                 : acts->threshold[least->action])
                         : NAN;
    double best = least && !isnan(floor) ? floor : -HUGE_VAL;
    if (least && !isnan(floor)) {
        a = least->action;
        by = least;
    }
    for (int i = AS_ACTION__COUNT - 1; i > AS_ACTION_NO_ACTION; i--) {
        double thr = acts->threshold[i];
        if (!isnan(thr) && score >= thr && thr > best) {
            a = (enum as_action)i;
            by = NULL;
            best = thr;
        }
    }
    if (least && isnan(floor) && a != AS_ACTION_REJECT) {
        a = least->action;
        by = least;
    }
    if (least && !isnan(floor) && best > score) score = best;
done:
    v->score = score;
    v->action = a;
    t->decided = by ? (size_t)(by - t->forces) : SIZE_MAX;
    v->forced_by = by ? by->module : NULL;
    v->smtp_message = by && by->message ? by->message : acts->message[a];
}

static void compute_verdict(struct as_task *t)
{
    struct as_verdict *v = &t->verdict;
    const struct as_actions *acts = as_task_actions(t);
    double score = 0;
    for (size_t i = 0; i < t->nsyms; i++) score += t->syms[i]->score;
    v->score = score;
    v->required_score = as_actions_required_score(acts);
    for (size_t i = 0; i < t->nforces; i++)
        if (t->forces[i].pre_result) {
            compute_verdict_rspamd(t, acts, score);
            return;
        }
    enum as_action a = as_actions_for_score(acts, score);
    const struct force *by = NULL;

    /* Forces in increasing priority; at equal priority LEAST before EXACT
     * so an EXACT of the same priority has the last word.  Few forces per
     * task, so a selection pass per priority level is fine.  The force that
     * decided the action gives the reply text: among LEASTs that reach the
     * same action, the one of higher priority. */
    int have_last = 0, last_prio = 0;
    for (;;) {
        int prio = 0, found = 0;
        for (size_t i = 0; i < t->nforces; i++) {
            int p = t->forces[i].priority;
            if ((!have_last || p > last_prio) && (!found || p < prio)) {
                prio = p;
                found = 1;
            }
        }
        if (!found) break;
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < t->nforces; i++) {
                const struct force *f = &t->forces[i];
                if (f->priority != prio) continue;
                if (pass == 0 && f->mode == AS_FORCE_LEAST && f->action >= a) {
                    if (f->action > a || !by || f->priority >= by->priority) by = f;
                    a = f->action;
                } else if (pass == 1 && f->mode == AS_FORCE_EXACT) {
                    a = f->action;
                    by = f;
                }
            }
        last_prio = prio;
        have_last = 1;
    }
    v->action = a;
    t->decided = by && by->action == a ? (size_t)(by - t->forces) : SIZE_MAX;
    v->forced_by = by && by->action == a ? by->module : NULL;
    v->smtp_message = (by && by->action == a && by->message) ? by->message : acts->message[a];
}

/* A plugin's "at least" force that the final action stays below was
 * overridden by local policy: by whoever decided the action (a Lua rule's
 * set_pre_result, a site force), or by the score under such a rule (the
 * thresholds of a settings profile, or the engine's).  One override per
 * policy.  Runs right after the final compute_verdict(). */
static void find_overrides(struct as_task *t)
{
    const struct force *by = t->decided < t->nforces ? &t->forces[t->decided] : NULL;
    for (size_t i = 0; i < t->nforces; i++) {
        const struct force *f = &t->forces[i];
        if (f->mode != AS_FORCE_LEAST || f->action <= t->verdict.action ||
            !policy_name(f->module))
            continue;
        int seen = 0;
        for (size_t k = 0; k < t->noverrides && !seen; k++)
            seen = t->overrides[k].type == AS_OVERRIDE_LOCAL_POLICY &&
                   strcmp(t->overrides[k].policy, f->module) == 0;
        if (seen) continue;
        const char *why =
            by && by->module ? (by->message ? as_pool_printf(t->pool, "%s: %s", by->module,
                                                             by->message)
                                            : by->module)
            : t->settings ? as_pool_printf(t->pool, "settings %s: action %s by score",
                                           t->settings->id, as_action_name(t->verdict.action))
                          : as_pool_printf(t->pool, "action %s by score",
                                           as_action_name(t->verdict.action));
        if (as_task_add_override(t, f->module, AS_OVERRIDE_LOCAL_POLICY, why) == 0)
            as_task_log(t, AS_LOG_INFO, "%s asked for %s, got %s: local_policy (%s)", f->module,
                        as_action_name(f->action), as_action_name(t->verdict.action), why);
    }
}

/* The verdict is final: count it, hand the task to the protocol. */
static void finalize(struct as_task *t)
{
    if (t->finished) return;
    event_del(t->deadline_ev);
    compute_verdict(t);
    find_overrides(t);
    authres_finish(t);
    t->finished = 1;
    t->stage = STAGE_FINAL;
    as_stats_scan_done(as_engine_stats(t->e), t->verdict.action, t->verdict.timed_out);
    as_stats_task_done(as_engine_stats(t->e), t);
    if (t->done) t->done(t, t->done_arg);   /* may free t */
}

static void (*stage_hook(const struct as_engine_plugin *p, enum stage st))(struct as_task *,
                                                                          void *)
{
    switch (st) {
    case STAGE_FILTER: return p->def->scan;
    case STAGE_POSTFILTER: return p->postfilter;
    case STAGE_FINISH: return p->finish;
    default: return NULL;
    }
}

static int any_postfilter(const struct as_task *t)
{
    if (t->skip) return 0;
    for (size_t i = 0; i < as_engine_plugin_count(t->e); i++)
        if (as_engine_plugin_at(t->e, i)->postfilter) return 1;
    return 0;
}

/* A dependency that was skipped (disabled by settings) counts as done:
 * the dependant runs and sees no typed result from it. */
static int deps_done(const struct as_task *t, const struct as_engine_plugin *p)
{
    for (size_t d = 0; d < p->ndeps; d++) {
        unsigned char st = t->runs[p->deps[d]].state;
        if (st != PS_DONE && st != PS_SKIPPED) return 0;
    }
    return 1;
}

/* Runs every runnable plugin of the current stage; 1 when all are done. */
static int run_stage(struct as_task *t)
{
    size_t np = as_engine_plugin_count(t->e);
    int progress = 1, all_done = 0;
    while (progress) {
        progress = 0;
        all_done = 1;
        for (size_t i = 0; i < np; i++) {
            struct plugin_run *r = &t->runs[i];
            if (r->state == PS_RUNNING && r->pending == 0) {
                r->state = PS_DONE;
                progress = 1;
            }
            if (r->state == PS_IDLE && (t->skip || (t->settings && t->settings->plugin_off[i]))) {
                r->state = PS_SKIPPED;
                progress = 1;
            }
            const struct as_engine_plugin *p = as_engine_plugin_at(t->e, i);
            if (r->state == PS_IDLE && deps_done(t, p)) {
                r->state = PS_RUNNING;
                void (*hook)(struct as_task *, void *) = stage_hook(p, t->stage);
                if (hook) {
                    t->current = i;
                    hook(t, p->state);
                    t->current = NO_PLUGIN;
                }
                if (r->pending == 0) r->state = PS_DONE;
                progress = 1;
            }
            if (r->state != PS_DONE && r->state != PS_SKIPPED) all_done = 0;
        }
    }
    t->current = NO_PLUGIN;
    return all_done;
}

static void start_postfilters(struct as_task *t)
{
    compute_verdict(t);   /* what postfilters read */
    t->stage = STAGE_POSTFILTER;
    reset_runs(t);
}

static void step(struct as_task *t)
{
    if (t->stage == STAGE_FILTER) {
        if (!run_stage(t)) return;
        if (!any_postfilter(t)) {
            finalize(t);
            return;
        }
        start_postfilters(t);
    }
    if (t->stage == STAGE_POSTFILTER) {
        if (run_stage(t)) finalize(t);
        return;
    }
    if (t->stage == STAGE_FINISH && run_stage(t)) task_destroy(t);
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    uint64_t mark = as_task_enter(arg);
    step(arg);   /* may finish and free the task: arg is not touched after */
    as_task_leave(mark);
}

/* Plugins still running in this stage are cut short: their operations
 * are cancelled and they count as skipped.  Returns how many there were,
 * with up to max of their names in late. */
static size_t cut_short(struct as_task *t, const char **late, size_t max)
{
    size_t nlate = 0;
    for (size_t i = 0; i < as_engine_plugin_count(t->e); i++) {
        if (t->runs[i].state == PS_DONE) continue;
        if (t->runs[i].state == PS_RUNNING) {
            if (nlate < max) late[nlate] = as_engine_plugin_at(t->e, i)->def->name;
            nlate++;
        }
        t->runs[i].state = PS_SKIPPED;
    }
    cancel_ops(t);
    return nlate;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_task *t = arg;
    double to = as_engine_limits(t->e)->scan_timeout;
    uint64_t mark = as_task_enter(t);
    const char *late[64];
    size_t nlate = cut_short(t, late, AS_ARRAY_LEN(late));
    if (t->stage == STAGE_FINISH) {
        as_task_log(t, AS_LOG_WARN, "finish stage deadline (%.1fs) reached; %zu plugin(s) "
                    "cut short", to, nlate);
        task_destroy(t);
        as_task_leave(mark);
        return;
    }
    as_task_log(t, AS_LOG_WARN, "scan deadline (%.1fs) reached in the %s stage; %zu "
                "plugin(s) cut short", to, t->stage == STAGE_FILTER ? "filter" : "postfilter",
                nlate);
    t->verdict.timed_out = 1;
    t->no_async = 1;
    const struct as_symbol *sym_timeout = as_symtab_find(as_engine_symtab(t->e),
                                                         "AUTHSCAN_TIMEOUT");
    if (sym_timeout)
        as_task_add_symbolv(t, sym_timeout->name, 1.0, late,
                            nlate < AS_ARRAY_LEN(late) ? nlate : AS_ARRAY_LEN(late));
    if (t->stage == STAGE_FILTER && any_postfilter(t)) {
        /* Site overrides still apply to a late verdict; with no_async set
         * they run to completion here, in one pass. */
        start_postfilters(t);
        run_stage(t);
    }
    finalize(t);   /* may free the task: t is not touched after */
    as_task_leave(mark);
}

void as_task_run(struct as_task *t, as_task_done_cb done, void *arg)
{
    t->done = done;
    t->done_arg = arg;
    t->started = 1;
    t->stage = STAGE_FILTER;
    if (t->env.settings_id && *t->env.settings_id) {
        t->settings = as_engine_settings(t->e, t->env.settings_id);
        if (!t->settings)
            as_task_log(t, AS_LOG_NOTICE, "unknown Settings-ID '%s': using the defaults",
                        t->env.settings_id);
    }
    double to = as_engine_limits(t->e)->scan_timeout;
    if (to > 0) {
        struct timeval tv;
        as_timeval(to, &tv);
        evtimer_add(t->deadline_ev, &tv);
    }
    event_active(t->step_ev, EV_TIMEOUT, 0);
}

const struct as_verdict *as_task_verdict(const struct as_task *t) { return &t->verdict; }

const struct as_actions *as_task_actions(const struct as_task *t)
{
    return t->settings ? &t->settings->actions : as_engine_actions(t->e);
}

/* ---- the verdict as plugins see it ---------------------------------------- */

/* Before the verdict is final it is computed on each call from what the
 * task holds now, so a postfilter sees the effect of its own changes. */
static const struct as_verdict *current_verdict(const struct as_task *t)
{
    if (!t->finished) compute_verdict((struct as_task *)t);
    return &t->verdict;
}

enum as_action as_task_action(const struct as_task *t) { return current_verdict(t)->action; }
double as_task_score(const struct as_task *t) { return current_verdict(t)->score; }
double as_task_required_score(const struct as_task *t)
{
    return current_verdict(t)->required_score;
}
const char *as_task_forced_by(const struct as_task *t) { return current_verdict(t)->forced_by; }
const char *as_task_smtp_message(const struct as_task *t)
{
    return current_verdict(t)->smtp_message;
}
int as_task_timed_out(const struct as_task *t) { return t->verdict.timed_out; }

enum as_stage as_task_stage(const struct as_task *t)
{
    switch (t->stage) {
    case STAGE_POSTFILTER: return AS_STAGE_POSTFILTER;
    case STAGE_FINAL: case STAGE_FINISH: return AS_STAGE_FINISH;
    default: return AS_STAGE_FILTER;
    }
}
