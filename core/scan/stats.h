/*
 * stats.h - the counters of one engine (one worker process, or the CLI),
 * published by /stat.  This module owns them: the task counts a scan when
 * its verdict is final, the protocol layer counts requests it answered
 * with an error, and nothing else writes them.
 *
 * /stat's JSON: {"pid", "scanned", "errors", "timeouts", "poison", "actions": {..},
 * then one member per service (service.h), e.g. "dns": {..}}.
 */
#ifndef AS_STATS_H
#define AS_STATS_H

#include "authscan/plugin.h"

struct as_engine;
struct as_stats;
struct sbuf;

struct as_stats *as_stats_new(void);
void as_stats_free(struct as_stats *s);

/* A scan whose verdict is final: counts it, its action, a timeout. */
void as_stats_scan_done(struct as_stats *s, enum as_action action, int timed_out);
/* A request answered with an error instead of a verdict. */
void as_stats_request_error(struct as_stats *s);
/* A message answered unscanned because it killed a worker before (poison.h). */
void as_stats_poison(struct as_stats *s);

/* /stat's body for the engine e, with a final newline. */
void as_stats_write_json(const struct as_engine *e, struct sbuf *b);

#endif
