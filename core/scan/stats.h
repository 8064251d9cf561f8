/*
 * stats.h - the daemon-wide counter registry, published by /stat and
 * /metrics as totals over every worker.
 *
 * What is counted: the core's counters below (scans, actions, errors,
 * timeouts, poison answers, scan latency, connections, worker restarts),
 * the counts of every symbol a plugin, a service or the core declared
 * (never rule-only names, never anything taken from a message: the label
 * set is bounded by the symbol table), and the counters and gauges each
 * service describes (service.h `metrics`).  Their names, kinds and help
 * texts are fixed at build time, so the layout is the same in the master
 * and in every worker.
 *
 * Where: the master maps one region shared with every worker before it
 * forks (as_stats_shm_new), with one slot per worker slot of the master
 * (the same index as the poison slots).  A worker writes only its own
 * slot (as_stats_shm_attach): its core counters directly, the services'
 * values copied in after each scan and once a second (as_stats_publish).
 * When a worker exits or dies, the master folds the slot's counters into
 * a "retired" total and empties the slot (as_stats_shm_retire): counts
 * survive a crash, a respawn and a reload's change of generation, and a
 * reload that changes the worker count changes only how many slots are
 * live.  Gauges (connections open, Redis connections up, Lua memory) are
 * levels: a dead worker's share is dropped, not folded.
 *
 * Readers (/stat, /metrics, in any worker) sum the retired total and the
 * live slots under a sequence count that the master bumps around a fold,
 * so a fold never shows a count twice or not at all.  A slot read while
 * its worker writes may be a scan behind: that is all.
 *
 * Outside the daemon (the CLI, tests) the engine counts into a private
 * slot and /stat shows that process alone.
 *
 * /stat's JSON: {"pid", "scanned", "errors", "timeouts", "poison",
 * "actions": {..}, "workers", "worker_restarts", "connections", then one
 * member per service (service.h), e.g. "dns": {..}, then "plugins":
 * {"<plugin>": {"<counter>": n}}}.  /metrics: the
 * Prometheus text format, or OpenMetrics (util/metrics.h); the names are
 * listed in docs/stats.md.
 *
 * Threading: none; a process writes only its own slot.
 */
#ifndef AS_STATS_H
#define AS_STATS_H

#include <stddef.h>
#include <stdint.h>
#include "authscan/plugin.h"
#include "util/metrics.h"

struct as_engine;
struct as_stats;
struct as_stats_shm;
struct as_task;
struct sbuf;

/* Symbols counted per worker slot (first declared first); longer names
 * and the rest are counted together as symbol "other". */
#define AS_STATS_SYMBOLS 384
#define AS_STATS_SYMBOL_LEN 64
/* Counters plugins declare (as_plugin_counter), all plugins together. */
#define AS_STATS_PLUGIN_COUNTERS 64
/* Scan latency histogram bucket bounds, seconds (then +Inf). */
#define AS_STATS_LATENCY_BOUNDS 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10

/* ---- master ---- */

/* Maps the region for nslots worker slots.  NULL with err on failure. */
struct as_stats_shm *as_stats_shm_new(size_t nslots, char *err, size_t errlen);
void as_stats_shm_free(struct as_stats_shm *r);
/* The worker of slot is gone: keeps its counters, drops its gauges,
 * empties the slot for the next worker. */
void as_stats_shm_retire(struct as_stats_shm *r, size_t slot);
/* A worker died unexpectedly and is being replaced. */
void as_stats_shm_count_restart(struct as_stats_shm *r);

/* ---- worker ---- */

/* After fork: the first engine this process builds counts into slot. */
void as_stats_shm_attach(struct as_stats_shm *r, size_t slot);

/* ---- the engine's counters ---- */

struct as_stats *as_stats_new(struct as_engine *e);
void as_stats_free(struct as_stats *s);

/* A scan whose verdict is final: counts it, its action, a timeout. */
void as_stats_scan_done(struct as_stats *s, enum as_action action, int timed_out);
/* The same scan's latency and the declared symbols it got. */
void as_stats_task_done(struct as_stats *s, const struct as_task *t);
/* A request answered with an error instead of a verdict. */
void as_stats_request_error(struct as_stats *s);
/* A message answered unscanned because it killed a worker before (poison.h). */
void as_stats_poison(struct as_stats *s);
/* A connection accepted (+1) or closed (-1), any protocol. */
void as_stats_connection(struct as_stats *s, int delta);
/* A plugin's counter (plugin.h as_plugin_counter): name [a-z0-9_],
 * "plugin.name" at most AS_STATS_SYMBOL_LEN - 1 bytes.  Returns a handle
 * for as_stats_plugin_count, or -1 with err. */
int as_stats_plugin_counter(struct as_stats *s, const char *plugin, const char *name,
                            const char *help, char *err, size_t errlen);
void as_stats_plugin_count(struct as_stats *s, int counter, uint64_t n);
/* Copies this worker's service values into its slot (also done after
 * each scan and once a second). */
void as_stats_publish(struct as_stats *s);

/* /stat's body for the engine e (daemon-wide), with a final newline. */
void as_stats_write_json(const struct as_engine *e, struct sbuf *b);
/* /metrics' body in format f. */
void as_stats_write_metrics(const struct as_engine *e, enum as_metrics_format f,
                            struct sbuf *b);
/* The same without the end (OpenMetrics' "# EOF"): for a caller that adds
 * families of its own (the controller's report counters) before
 * as_metrics_end(). */
void as_stats_write_metric_families(const struct as_engine *e, enum as_metrics_format f,
                                    struct sbuf *b);

#endif
