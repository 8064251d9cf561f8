/*
 * task_redis.c - the Redis plugin API of authscan/plugin.h (as_redis_command,
 * as_redis_send, as_redis_key, as_plugin_redis_enabled,
 * as_plugin_redis_script) on top of the
 * worker's Redis service (services/redis.h).
 *
 * The scan side of Redis, as task_dns.c is for DNS: a task-bound command
 * is an async operation of the task (the plugin has not finished its
 * stage until the callback ran) and is cancelled with the task; what is
 * outstanding lives in the task's Redis service slot, so nothing outlives
 * the task's pool.  Fire-and-forget writes belong to no task.
 */
#include <string.h>
#include "util/log.h"
#include "util/pool.h"
#include "util/util.h"
#include "services/redis.h"
#include "services/service.h"
#include "scan/engine.h"
#include "scan/task.h"

struct redis_tq;

struct redis_task {                    /* the task's Redis service slot, in its pool */
    struct as_task *t;
    struct redis_tq *pending;
};

struct redis_tq {                      /* one as_redis_command() call */
    struct redis_task *ts;
    struct redis_tq *prev, *next;
    as_redis_cb cb;
    void *arg;
    struct as_async *op;
    struct as_redis_req *req;
};

static void tq_unlink(struct redis_tq *tq)
{
    struct redis_task *ts = tq->ts;
    if (tq->prev) tq->prev->next = tq->next;
    else if (ts->pending == tq) ts->pending = tq->next;
    if (tq->next) tq->next->prev = tq->prev;
    tq->prev = tq->next = NULL;
}

/* Stops what tq waits for; its callback will not run. */
static void tq_stop(struct redis_tq *tq)
{
    if (tq->req) {
        as_redis_cancel(tq->req);
        tq->req = NULL;
    }
    tq_unlink(tq);
}

static void tq_cancel(void *arg) { tq_stop(arg); }

/* Safety net: nothing may outlive the pool that holds it. */
static void redis_task_destroy(void *arg)
{
    struct redis_task *ts = arg;
    while (ts->pending) tq_stop(ts->pending);
}

static struct redis_task *redis_task_get(struct as_task *t)
{
    void **slot = as_task_service_slot(t, &as_redis_service);
    if (!slot) return NULL;
    if (!*slot) {
        struct redis_task *ts = as_pool_alloc(as_task_pool(t), sizeof *ts);
        ts->t = t;
        if (as_pool_on_destroy(as_task_pool(t), redis_task_destroy, ts) < 0) return NULL;
        *slot = ts;
    }
    return *slot;
}

static void tq_done(enum as_redis_status st, const struct as_redis_reply *reply, void *arg)
{
    struct redis_tq *tq = arg;
    struct as_task *t = tq->ts->t;
    tq->req = NULL;
    tq_unlink(tq);
    uint64_t mark = as_task_enter(t);   /* plugin code for this message */
    as_task_async_enter(t, tq->op);
    tq->cb(t, st, reply, tq->arg);
    /* A task only finishes from its own deferred step or deadline events
     * (task.c), never inside a plugin callback: t is still alive here. */
    as_task_async_end(t, tq->op);
    as_task_leave(mark);
}

int as_redis_command(struct as_task *t, as_redis_cb cb, void *arg, size_t argc,
                     const char *const *argv, const size_t *argvlen)
{
    if (!t || !cb || !argc || !argv) return -1;
    struct as_redis *r = as_task_service_state(t, &as_redis_service);
    if (!as_redis_enabled(r)) return -1;
    struct redis_task *ts = redis_task_get(t);
    if (!ts) return -1;
    struct redis_tq *tq = as_pool_alloc(as_task_pool(t), sizeof *tq);
    tq->ts = ts;
    tq->cb = cb;
    tq->arg = arg;
    tq->op = as_task_async_begin(t, tq_cancel, tq);
    if (!tq->op) return -1;
    tq->req = as_redis_submit(r, argc, argv, argvlen, tq_done, tq);
    if (!tq->req) {
        as_task_async_end(t, tq->op);
        return -1;
    }
    tq->next = ts->pending;
    if (ts->pending) ts->pending->prev = tq;
    ts->pending = tq;
    return 0;
}

static struct as_redis *ctx_redis(const struct as_plugin_ctx *c)
{
    return c && c->engine ? as_engine_service_state(c->engine, &as_redis_service) : NULL;
}

int as_redis_send(const struct as_plugin_ctx *c, size_t argc, const char *const *argv,
                  const size_t *argvlen)
{
    struct as_redis *r = ctx_redis(c);
    if (!as_redis_enabled(r)) return -1;
    return as_redis_submit(r, argc, argv, argvlen, NULL, NULL) ? 0 : -1;
}

const char *as_redis_key(struct as_pool *pool, const struct as_plugin_ctx *c, const char *tag,
                         const char *name)
{
    if (!pool || !name) return NULL;
    if (tag && strpbrk(tag, "{}")) return NULL;
    const char *prefix = as_redis_prefix(ctx_redis(c));
    return tag ? as_pool_printf(pool, "%s{%s}%s", prefix, tag, name)
               : as_pool_printf(pool, "%s%s", prefix, name);
}

int as_plugin_redis_enabled(const struct as_plugin_ctx *c)
{
    return as_redis_enabled(ctx_redis(c));
}

const char *as_plugin_redis_script(struct as_plugin_ctx *c, const char *body)
{
    return as_redis_script(ctx_redis(c), body);
}
