/*
 * metrics.c - see metrics.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "util/metrics.h"

const char *as_metrics_content_type(enum as_metrics_format f)
{
    return f == AS_METRICS_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                       : "text/plain; version=0.0.4; charset=utf-8";
}

enum as_metrics_format as_metrics_negotiate(const char *accept)
{
    /* Prometheus sends "application/openmetrics-text;version=1.0.0,...;q=0.5,
     * text/plain;version=0.0.4;q=0.4,..."; a browser or curl sends no
     * OpenMetrics at all.  Naming the type is enough: every scraper that
     * names it prefers it. */
    if (!accept) return AS_METRICS_PROMETHEUS;
    for (const char *p = accept; *p; p++)
        if (as_memcaseeq(p, "application/openmetrics-text", 28))
            return AS_METRICS_OPENMETRICS;
    return AS_METRICS_PROMETHEUS;
}

void as_metrics_family(struct sbuf *b, enum as_metrics_format f, const char *name,
                       const char *type, const char *help)
{
    size_t len = strlen(name);
    if (f == AS_METRICS_OPENMETRICS && strcmp(type, "counter") == 0 && len > 6 &&
        strcmp(name + len - 6, "_total") == 0)
        len -= 6;
    sbuf_printf(b, "# HELP " AS_METRICS_PREFIX "%.*s ", (int)len, name);
    /* help texts are ours: only a backslash or newline would need escaping */
    for (const char *p = help; *p; p++) {
        if (*p == '\\') sbuf_adds(b, "\\\\");
        else if (*p == '\n') sbuf_adds(b, "\\n");
        else sbuf_addc(b, *p);
    }
    sbuf_printf(b, "\n# TYPE " AS_METRICS_PREFIX "%.*s %s\n", (int)len, name, type);
}

void as_metrics_label_value(struct sbuf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\') sbuf_adds(b, "\\\\");
        else if (*v == '"') sbuf_adds(b, "\\\"");
        else if (*v == '\n') sbuf_adds(b, "\\n");
        else sbuf_addc(b, *v);
    }
}

void as_metrics_sample(struct sbuf *b, const char *name, const char *label, const char *value,
                       double v)
{
    sbuf_printf(b, AS_METRICS_PREFIX "%s", name);
    if (label) {
        sbuf_printf(b, "{%s=\"", label);
        as_metrics_label_value(b, value);
        sbuf_adds(b, "\"}");
    }
    if (isinf(v)) sbuf_adds(b, v > 0 ? " +Inf\n" : " -Inf\n");
    else if (v == floor(v) && fabs(v) < 1e15) sbuf_printf(b, " %.0f\n", v);
    else sbuf_printf(b, " %.9g\n", v);
}

void as_metrics_end(struct sbuf *b, enum as_metrics_format f)
{
    if (f == AS_METRICS_OPENMETRICS) sbuf_adds(b, "# EOF\n");
}
