/*
 * task_dns.c - the DNS plugin API of authscan/plugin.h (as_dns_query,
 * as_dns_pinned) on top of the worker's resolver (services/dns.h).
 *
 * This is the scan side of DNS: what one task may ask (its budget, shared
 * between plugins with per-plugin reserves), what it was told (answers are
 * pinned, so a plugin asking twice gets the same answer), and cancelling
 * what is outstanding when the task ends.  The resolver below knows nothing
 * of tasks; its per-task state is the task's DNS service slot.
 */
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include "util/log.h"
#include "util/pool.h"
#include "util/util.h"
#include "services/dns.h"
#include "services/service.h"
#include "services/zone.h"
#include "scan/engine.h"
#include "scan/task.h"
/* ------------------------------------------------------------------ */
/* Task level: pinning, budget, cancellation (authscan/plugin.h)       */

struct dns_pin {
    struct dns_pin *next;
    const struct as_dns_answer *ans;   /* in the task pool */
    size_t plugin;                     /* refusals: the plugin refused */
};

struct dns_tq;

struct dns_share {                     /* one plugin's part of a task's budget */
    unsigned own;                      /* queries taken from its reserve */
    unsigned shared;                   /* queries taken from the shared pool */
    int refused;                       /* a query was refused (logged once) */
};

struct dns_task {                      /* the task's DNS service slot, in its pool */
    struct as_task *t;
    struct as_resolver *r;
    unsigned used;                     /* queries taken from the shared pool */
    size_t nplugins;
    struct dns_share *shares;          /* per plugin of the engine */
    struct dns_pin *pins;
    struct dns_pin *refusals;          /* AS_DNS_BUDGET answers given, per plugin */
    struct dns_tq *pending;
};

struct dns_tq {                        /* one as_dns_query() call */
    struct dns_task *ts;
    struct dns_tq *prev, *next;
    char name[AS_DNS_NAME_MAX + 1];    /* normalized, "" for a bad name */
    uint16_t type;
    as_dns_cb cb;
    void *arg;
    struct as_async *op;
    struct as_dns_req *req;            /* resolver request, or */
    struct event *ev;                  /* deferred delivery of `local` */
    const struct as_dns_answer *local;
};

static const struct as_dns_answer *pin_find(const struct dns_task *ts, const char *name,
                                            uint16_t type)
{
    for (const struct dns_pin *p = ts->pins; p; p = p->next)
        if (p->ans->type == type && strcmp(p->ans->name, name) == 0) return p->ans;
    return NULL;
}

/* A budget refusal stays one for the plugin it was given to: the budget
 * never grows back, and a plugin that replays from as_dns_pinned() (SPF,
 * DMARC) must see the answer it was given, or it would wait for a query
 * that is never made.  Another plugin, with its own reserve, may still get
 * the name answered, so refusals are not pins. */
static const struct as_dns_answer *refusal_find(const struct dns_task *ts, const char *name,
                                                uint16_t type, size_t plugin)
{
    for (const struct dns_pin *p = ts->refusals; p; p = p->next)
        if (p->plugin == plugin && p->ans->type == type && strcmp(p->ans->name, name) == 0)
            return p->ans;
    return NULL;
}

static const struct as_dns_answer *answer_copy(struct as_pool *pool,
                                               const struct as_dns_answer *src)
{
    struct as_dns_answer *a = as_pool_alloc(pool, sizeof *a);
    *a = *src;
    a->name = as_pool_strdup(pool, src->name);
    if (!src->nrr) {
        a->rr = NULL;
        return a;
    }
    struct as_dns_rr *rr = as_pool_alloc(pool, src->nrr * sizeof *rr);
    for (size_t i = 0; i < src->nrr; i++) {
        const struct as_dns_rr *s = &src->rr[i];
        rr[i] = *s;
        switch (s->type) {
        case AS_DNS_MX:
            rr[i].d.mx.host = as_pool_strdup(pool, s->d.mx.host);
            break;
        case AS_DNS_CNAME: case AS_DNS_PTR: case AS_DNS_NS:
            rr[i].d.name = as_pool_strdup(pool, s->d.name);
            break;
        case AS_DNS_TXT: case AS_DNS_SPF: {
            size_t n = s->d.txt.nstrings;
            struct as_str *strs = as_pool_alloc(pool, (n ? n : 1) * sizeof *strs);
            for (size_t k = 0; k < n; k++) {
                strs[k].ptr = as_pool_strndup(pool, s->d.txt.strings[k].ptr,
                                              s->d.txt.strings[k].len);
                strs[k].len = s->d.txt.strings[k].len;
            }
            rr[i].d.txt.strings = strs;
            rr[i].d.txt.joined.ptr = as_pool_strndup(pool, s->d.txt.joined.ptr,
                                                     s->d.txt.joined.len);
            break;
        }
        }
    }
    a->rr = rr;
    return a;
}

static void tq_unlink(struct dns_tq *tq)
{
    struct dns_task *ts = tq->ts;
    if (tq->prev) tq->prev->next = tq->next;
    else if (ts->pending == tq) ts->pending = tq->next;
    if (tq->next) tq->next->prev = tq->prev;
    tq->prev = tq->next = NULL;
}

/* Stops whatever tq waits for; its callback will not run. */
static void tq_stop(struct dns_tq *tq)
{
    if (tq->req) {
        as_resolver_cancel(tq->req);
        tq->req = NULL;
    }
    if (tq->ev) event_del(tq->ev);
    tq_unlink(tq);
}

static void tq_cancel(void *arg) { tq_stop(arg); }

/* Safety net: nothing may outlive the pool that holds it. */
static void dns_task_destroy(void *arg)
{
    struct dns_task *ts = arg;
    while (ts->pending) tq_stop(ts->pending);
}

static struct dns_task *dns_task_get(struct as_task *t, int create)
{
    void **slot = as_task_service_slot(t, &as_dns_service);
    if (!slot) return NULL;
    if (!*slot && create) {
        struct as_resolver *r = as_task_service_state(t, &as_dns_service);
        if (!r) return NULL;
        struct dns_task *ts = as_pool_alloc(as_task_pool(t), sizeof *ts);
        ts->t = t;
        ts->r = r;
        ts->nplugins = as_engine_plugin_count(as_task_engine(t));
        if (ts->nplugins)
            ts->shares = as_pool_alloc(as_task_pool(t), ts->nplugins * sizeof *ts->shares);
        if (as_pool_on_destroy(as_task_pool(t), dns_task_destroy, ts) < 0) return NULL;
        *slot = ts;
    }
    return *slot;
}

static void tq_deliver(struct dns_tq *tq, const struct as_dns_answer *ans)
{
    struct as_task *t = tq->ts->t;
    tq_unlink(tq);
    uint64_t mark = as_task_enter(t);   /* plugin code for this message */
    as_task_async_enter(t, tq->op);
    tq->cb(t, ans, tq->arg);
    /* The task is still alive here: a task only finishes from its own
     * deferred step or deadline events (task.c), never inside a plugin
     * callback.  tq itself lives in the task pool. */
    as_task_async_end(t, tq->op);
    as_task_leave(mark);
}

static void tq_resolved(const struct as_dns_answer *ans, void *arg)
{
    struct dns_tq *tq = arg;
    struct dns_task *ts = tq->ts;
    tq->req = NULL;
    const struct as_dns_answer *mine = NULL;
    if (ans->status != AS_DNS_BADNAME) mine = pin_find(ts, ans->name, ans->type);
    if (!mine) {
        struct as_pool *pool = as_task_pool(ts->t);
        mine = answer_copy(pool, ans);
        if (ans->status != AS_DNS_BADNAME) {
            struct dns_pin *p = as_pool_alloc(pool, sizeof *p);
            p->ans = mine;
            p->next = ts->pins;
            ts->pins = p;
        }
    }
    tq_deliver(tq, mine);
}

static void tq_local_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dns_tq *tq = arg;
    tq_deliver(tq, tq->local);
}

static int tq_in_flight(const struct dns_task *ts, const char *name, uint16_t type)
{
    for (const struct dns_tq *tq = ts->pending; tq; tq = tq->next)
        if (tq->req && tq->type == type && strcmp(tq->name, name) == 0) return 1;
    return 0;
}

/* The budget.  Each plugin spends its own reserve first, then the pool the
 * plugins of the task share: DMARC runs after SPF and DKIM, so with one
 * pool a hostile SPF record (RFC-legal: 10 mx terms of 10 hosts, for HELO
 * and for MAIL FROM) could use every query and leave the policy lookup of
 * the spoofed domain unanswered.  Work outside any plugin uses the pool.
 * Returns where the query is counted: 1 the reserve, 2 the pool; 0 when
 * nothing is left (logged once per plugin and task). */
static int budget_pick(struct dns_task *ts, struct dns_share **shp)
{
    unsigned max_queries, plugin_reserve;
    as_resolver_budget(ts->r, &max_queries, &plugin_reserve);
    size_t p = as_task_current_plugin(ts->t);
    struct dns_share *sh = p < ts->nplugins && ts->shares ? &ts->shares[p] : NULL;
    const struct as_engine *e = as_task_engine(ts->t);
    unsigned reserve = 0;
    if (sh) {
        reserve = as_engine_plugin_at(e, p)->ctx.dns_reserve;
        if (reserve < plugin_reserve) reserve = plugin_reserve;
    }
    *shp = sh;
    if (!max_queries) return 2;
    if (sh && sh->own < reserve) return 1;
    if (ts->used < max_queries) return 2;
    if (sh && !sh->refused) {
        sh->refused = 1;
        as_task_log(ts->t, AS_LOG_NOTICE, "dns: %s has made its %u reserved queries and "
                    "%u of the %u the scan's plugins share (dns.max_queries); its further "
                    "queries are not sent", as_engine_plugin_at(e, p)->def->name, reserve,
                    sh->shared,
                    max_queries);
    }
    return 0;
}

static void budget_take(struct dns_task *ts, struct dns_share *sh, int where)
{
    if (where == 1) {
        sh->own++;
    } else {
        ts->used++;
        if (sh) sh->shared++;
    }
}

int as_dns_query(struct as_task *t, const char *name, uint16_t type, as_dns_cb cb, void *arg)
{
    if (!t || !name || !cb) return -1;
    if (!as_resolver_type_supported(type)) {
        as_task_log(t, AS_LOG_ERR, "dns: query type %u is not supported", type);
        return -1;
    }
    struct dns_task *ts = dns_task_get(t, 1);
    if (!ts || !ts->r) {
        as_task_log(t, AS_LOG_ERR, "dns: no resolver for this task");
        return -1;
    }
    struct as_pool *pool = as_task_pool(t);
    struct dns_tq *tq = as_pool_alloc(pool, sizeof *tq);
    tq->ts = ts;
    tq->type = type;
    tq->cb = cb;
    tq->arg = arg;
    int valid = as_dns_name_normalize(name, strlen(name), tq->name) == 0;
    if (!valid) tq->name[0] = '\0';

    /* A pinned answer, or a query of the task already in flight (which
     * will pin), costs nothing; a bad name is never sent. */
    int counts = 0;
    struct dns_share *sh = NULL;
    if (valid) {
        tq->local = pin_find(ts, tq->name, type);
        if (!tq->local && !tq_in_flight(ts, tq->name, type)) {
            counts = budget_pick(ts, &sh);
            if (!counts) {
                size_t plugin = as_task_current_plugin(t);
                tq->local = refusal_find(ts, tq->name, type, plugin);
                if (!tq->local) {
                    struct as_dns_answer *b = as_pool_alloc(pool, sizeof *b);
                    b->name = as_pool_strdup(pool, tq->name);
                    b->type = type;
                    b->status = AS_DNS_BUDGET;
                    struct dns_pin *rp = as_pool_alloc(pool, sizeof *rp);
                    rp->ans = b;
                    rp->plugin = plugin;
                    rp->next = ts->refusals;
                    ts->refusals = rp;
                    tq->local = b;
                }
                as_resolver_note_budget_refusal(ts->r);
            }
        }
    }

    tq->op = as_task_async_begin(t, tq_cancel, tq);
    if (!tq->op) return -1;
    if (tq->local) {
        static const struct timeval zero = { 0, 0 };
        tq->ev = as_pool_alloc(pool, event_get_struct_event_size());
        if (event_assign(tq->ev, as_task_event_base(t), -1, 0, tq_local_cb, tq) < 0 ||
            event_add(tq->ev, &zero) < 0) {
            tq->ev = NULL;
            as_task_async_end(t, tq->op);
            return -1;
        }
    } else {
        tq->req = as_resolver_lookup(ts->r, valid ? tq->name : name, type, tq_resolved, tq);
        if (!tq->req) {
            as_task_async_end(t, tq->op);
            return -1;
        }
        if (counts) budget_take(ts, sh, counts);
    }
    tq->next = ts->pending;
    if (ts->pending) ts->pending->prev = tq;
    ts->pending = tq;
    return 0;
}

const struct as_dns_answer *as_dns_pinned(const struct as_task *t, const char *name,
                                          uint16_t type)
{
    if (!t || !name) return NULL;
    char qn[AS_DNS_NAME_MAX + 1];
    if (as_dns_name_normalize(name, strlen(name), qn) < 0) {
        /* A bad name is never sent, so its answer is known without asking:
         * consumers that replay from pinned answers (SPF) must see it as an
         * answer, or they would wait for a query that never happens. */
        struct as_pool *pool = as_task_pool(t);
        struct as_dns_answer *b = as_pool_alloc(pool, sizeof *b);
        b->name = as_pool_strdup(pool, name);
        b->type = type;
        b->status = AS_DNS_BADNAME;
        return b;
    }
    struct dns_task *ts = dns_task_get((struct as_task *)t, 0);
    if (!ts) return NULL;
    const struct as_dns_answer *a = pin_find(ts, qn, type);
    return a ? a : refusal_find(ts, qn, type, as_task_current_plugin(t));
}

