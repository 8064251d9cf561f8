/*
 * service.h - per-worker services that plugins reach through the task:
 * DNS and Lua today, Redis next.
 *
 * A service is one `struct as_service` in the table of service.c.  Adding
 * one is: write the module (its own .c/.h), define its descriptor, add it
 * to that table.  Nothing in the engine, the task or the worker names a
 * service; they go through this header:
 *
 *   config   keys are declared under "<name>." (`keys`, relative to that
 *            prefix) and checked with every other key; check() then looks
 *            at what a schema cannot (ranges, syntax, files that must
 *            exist) and names file:line.  The master and --check-config
 *            run check(), then start() and stop() in the checking child,
 *            so a worker never fails on a config the master accepted;
 *   start    each engine (one per worker process, one in the CLI) calls
 *            start() after the plugins are loaded and before their init();
 *            the returned state lives until stop(), after every task of
 *            the engine is gone and the plugins are finalized;
 *   task     each task has one slot per service (as_task_service_slot),
 *            NULL when the task starts.  A service fills it lazily with
 *            per-task state in the task pool, and registers cleanup with
 *            as_pool_on_destroy() so nothing outlives the task;
 *   stats    the service describes its counters and gauges (`metrics`,
 *            util/metrics.h) and read_metrics() copies this worker's
 *            values of them, in that order; the registry (scan/stats.h)
 *            sums them over every worker into shared memory.  /stat
 *            publishes the daemon-wide totals under the service's name:
 *            {"key": total, ...}, or what write_stats() makes of them when
 *            the member needs more than the numbers (a state, a setting);
 *   symbols  a service that runs rules of its own (Lua) declares their
 *            symbols with symbols(), read after start() and before the
 *            rules files apply, so scores are overridable like a plugin's.
 *
 * Threading: none.  Every call happens on the engine's event loop.
 * Errors: check() and start() return -1 / NULL with a message in err.
 */
#ifndef AS_SERVICE_H
#define AS_SERVICE_H

#include <stddef.h>
#include <stdint.h>
#include "util/config.h"
#include "util/metrics.h"

struct event_base;
struct as_task;
struct as_symbol_def;
struct sbuf;

struct as_service {
    const char *name;                        /* [a-z]+, also the config prefix */
    const struct as_config_key *keys;        /* relative to "<name>." */
    size_t nkeys;
    int (*check)(const struct as_config *cfg, char *err, size_t errlen);
    void *(*start)(struct event_base *base, const struct as_config *cfg,
                   char *err, size_t errlen);
    void (*stop)(void *state);
    const struct as_metric_def *metrics;     /* may be NULL */
    size_t nmetrics;
    /* This worker's values, one per metrics[] entry. */
    void (*read_metrics)(const void *state, uint64_t *values);
    /* /stat's member from the daemon-wide totals (one per metrics[]
     * entry); state is this worker's.  NULL: {"key": total, ...}. */
    void (*write_stats)(const void *state, const uint64_t *totals, struct sbuf *json);
    /* The symbols the service's rules add, declared under the service's
     * name; the array belongs to the state.  May be NULL. */
    size_t (*symbols)(const void *state, const struct as_symbol_def **defs);
};

/* The services built into this binary, in start order. */
size_t as_service_count(void);
const struct as_service *as_service_at(size_t i);
/* Index of s in that table (the task slot number), or SIZE_MAX. */
size_t as_service_index(const struct as_service *s);

/* The task's slot for service s; NULL if s is not in the table. */
void **as_task_service_slot(struct as_task *t, const struct as_service *s);
/* The per-worker state start() returned for the task's engine, or NULL. */
void *as_task_service_state(const struct as_task *t, const struct as_service *s);

#endif
