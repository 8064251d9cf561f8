/*
 * metrics.h - what a counter is, and the Prometheus / OpenMetrics text
 * exposition format.
 *
 * A module that counts something describes each counter once with a
 * struct as_metric_def: its member name in /stat's JSON, its Prometheus
 * name, its kind and its help text.  The daemon-wide registry (scan/
 * stats.h) collects these descriptions from the core and from every
 * service (service.h: `metrics`), lays them out in shared memory and
 * serves the totals over all workers as /stat and /metrics.
 *
 * The writers below only format: they know the two text formats and
 * nothing of where the numbers come from.  Prometheus text format 0.0.4
 * names a counter family with its "_total" suffix; OpenMetrics 1.0 names
 * the family without it, and ends the exposition with "# EOF".  Label
 * values are escaped (backslash, quote, newline); names are ours and
 * never come from input.
 */
#ifndef AS_METRICS_H
#define AS_METRICS_H

#include <stdint.h>
#include "util/util.h"

#define AS_METRICS_PREFIX "authscan_"

enum as_metric_kind {
    AS_METRIC_COUNTER,     /* only grows; totals survive a worker's death */
    AS_METRIC_GAUGE,       /* a level now: a dead worker's share is dropped */
};

struct as_metric_def {
    const char *key;       /* member of the module's /stat object: "queries" */
    const char *name;      /* Prometheus name after the prefix: "dns_queries_total" */
    enum as_metric_kind kind;
    const char *help;
};

enum as_metrics_format {
    AS_METRICS_PROMETHEUS, /* text/plain; version=0.0.4 */
    AS_METRICS_OPENMETRICS /* application/openmetrics-text; version=1.0.0 */
};

/* The Content-Type of a format. */
const char *as_metrics_content_type(enum as_metrics_format f);
/* The format an Accept header asks for (OpenMetrics only when named). */
enum as_metrics_format as_metrics_negotiate(const char *accept);

/* "# HELP" and "# TYPE" of a family; name is after the prefix and, for a
 * counter, ends in "_total" (dropped in OpenMetrics).  type is "counter",
 * "gauge" or "histogram". */
void as_metrics_family(struct sbuf *b, enum as_metrics_format f, const char *name,
                       const char *type, const char *help);
/* One sample: name (after the prefix, with its suffix), optional label
 * name/value, the value. */
void as_metrics_sample(struct sbuf *b, const char *name, const char *label, const char *value,
                       double v);
/* A label value with \\, \" and \n escaped. */
void as_metrics_label_value(struct sbuf *b, const char *v);
/* The end of the exposition ("# EOF" in OpenMetrics, nothing otherwise). */
void as_metrics_end(struct sbuf *b, enum as_metrics_format f);

#endif
