/* The daemon-wide counter registry (scan/stats.h) with a real shared
 * region and two engines standing in for two workers, and the exposition
 * format writers (util/metrics.h). */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "check.h"
#include "scan/engine.h"
#include "scan/stats.h"
#include "scan/symbols.h"
#include "util/metrics.h"

static json_t *stat_json(struct as_engine *e)
{
    struct sbuf b = {0};
    as_stats_write_json(e, &b);
    json_error_t err;
    json_t *j = json_loads(b.data, 0, &err);
    if (!j) fprintf(stderr, "bad JSON: %s\n%s\n", err.text, b.data);
    sbuf_free(&b);
    return j;
}

static long long num(json_t *j, const char *path)
{
    /* "a.b": one level of nesting is all /stat has */
    char key[64];
    const char *dot = strchr(path, '.');
    if (!dot) return json_integer_value(json_object_get(j, path));
    snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
    return json_integer_value(json_object_get(json_object_get(j, key), dot + 1));
}

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

static void test_format(void)
{
    CHECK_INT(as_metrics_negotiate(NULL), AS_METRICS_PROMETHEUS);
    CHECK_INT(as_metrics_negotiate("*/*"), AS_METRICS_PROMETHEUS);
    CHECK_INT(as_metrics_negotiate("text/plain;version=0.0.4"), AS_METRICS_PROMETHEUS);
    CHECK_INT(as_metrics_negotiate("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
              AS_METRICS_OPENMETRICS);
    CHECK_INT(as_metrics_negotiate("text/plain, Application/OpenMetrics-Text"),
              AS_METRICS_OPENMETRICS);

    struct sbuf b = {0};
    as_metrics_family(&b, AS_METRICS_PROMETHEUS, "x_total", "counter", "Some\nhelp \\ here");
    CHECK_STR(b.data, "# HELP authscan_x_total Some\\nhelp \\\\ here\n"
                      "# TYPE authscan_x_total counter\n");
    sbuf_reset(&b);
    as_metrics_family(&b, AS_METRICS_OPENMETRICS, "x_total", "counter", "h");
    CHECK_STR(b.data, "# HELP authscan_x h\n# TYPE authscan_x counter\n");
    sbuf_reset(&b);
    as_metrics_family(&b, AS_METRICS_OPENMETRICS, "g_total", "gauge", "h");   /* not a counter */
    CHECK_STR(b.data, "# HELP authscan_g_total h\n# TYPE authscan_g_total gauge\n");
    sbuf_reset(&b);
    as_metrics_sample(&b, "x_total", "l", "a \"b\"\\\nc", 3);
    CHECK_STR(b.data, "authscan_x_total{l=\"a \\\"b\\\"\\\\\\nc\"} 3\n");
    sbuf_reset(&b);
    as_metrics_sample(&b, "s", NULL, NULL, 0.25);
    as_metrics_sample(&b, "s", "le", "+Inf", 1.0 / 0.0);
    CHECK_STR(b.data, "authscan_s 0.25\nauthscan_s{le=\"+Inf\"} +Inf\n");
    sbuf_reset(&b);
    as_metrics_end(&b, AS_METRICS_PROMETHEUS);
    CHECK_INT(b.len, 0);
    as_metrics_end(&b, AS_METRICS_OPENMETRICS);
    CHECK_STR(b.data, "# EOF\n");
    sbuf_free(&b);
}

static void test_registry(void)
{
    char err[256];
    struct event_base *base = event_base_new();
    struct as_stats_shm *r = as_stats_shm_new(4, err, sizeof err);
    CHECK(r != NULL);
    CHECK(as_stats_shm_new(100000, err, sizeof err) == NULL);   /* over the slots it holds */

    /* "worker" 1 in slot 0, "worker" 2 in slot 3 */
    as_stats_shm_attach(r, 0);
    struct as_engine *w1 = as_engine_new_bare(base, as_symtab_new());
    as_stats_shm_attach(r, 3);
    struct as_engine *w2 = as_engine_new_bare(base, as_symtab_new());
    struct as_engine *cli = as_engine_new_bare(base, as_symtab_new());   /* private */
    struct as_stats *s1 = as_engine_stats(w1), *s2 = as_engine_stats(w2);

    for (int i = 0; i < 3; i++) as_stats_scan_done(s1, AS_ACTION_ADD_HEADER, i == 0);
    as_stats_scan_done(s2, AS_ACTION_NO_ACTION, 0);
    as_stats_scan_done(s2, AS_ACTION_NO_ACTION, 0);
    as_stats_request_error(s2);
    as_stats_poison(s1);
    as_stats_connection(s1, 1);
    as_stats_connection(s1, 1);
    as_stats_connection(s1, -1);
    as_stats_connection(s2, 1);
    int h1 = as_stats_plugin_counter(s1, "report", "sent", "Reports sent.", err, sizeof err);
    int h2 = as_stats_plugin_counter(s2, "report", "sent", "Reports sent.", err, sizeof err);
    CHECK(h1 >= 0 && h2 >= 0);
    as_stats_plugin_count(s1, h1, 4);
    as_stats_plugin_count(s2, h2, 1);
    CHECK_INT(as_stats_plugin_counter(s1, "report", "sent", "again", err, sizeof err), -1);
    CHECK(strstr(err, "twice") != NULL);
    CHECK_INT(as_stats_plugin_counter(s1, "report", "Sent-Now", "", err, sizeof err), -1);
    CHECK(strstr(err, "[a-z0-9_]") != NULL);
    CHECK_INT(as_stats_plugin_counter(s1, "report", "", "", err, sizeof err), -1);

    json_t *j = stat_json(w2);
    CHECK_INT(num(j, "scanned"), 5);
    CHECK_INT(num(j, "timeouts"), 1);
    CHECK_INT(num(j, "errors"), 1);
    CHECK_INT(num(j, "poison"), 1);
    CHECK_INT(num(j, "workers"), 2);
    CHECK_INT(num(j, "connections"), 3);
    CHECK_INT(num(j, "actions.add header"), 3);
    CHECK_INT(num(j, "actions.no action"), 2);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(json_object_get(j, "plugins"),
                                                                 "report"), "sent")), 5);
    json_decref(j);
    /* the same totals whichever worker answers */
    j = stat_json(w1);
    CHECK_INT(num(j, "scanned"), 5);
    json_decref(j);
    /* outside the daemon: this engine alone */
    j = stat_json(cli);
    CHECK_INT(num(j, "scanned"), 0);
    CHECK_INT(num(j, "workers"), 1);
    json_decref(j);

    struct sbuf m = {0};
    as_stats_write_metrics(w2, AS_METRICS_PROMETHEUS, &m);
    CHECK(has_line(m.data, "authscan_scans_total 5"));
    CHECK(has_line(m.data, "authscan_connections_open 2"));
    CHECK(has_line(m.data, "authscan_report_sent_total 5"));
    CHECK(has_line(m.data, "# HELP authscan_report_sent_total Reports sent."));
    CHECK(has_line(m.data, "authscan_actions_total{action=\"add header\"} 3"));
    CHECK(has_line(m.data, "authscan_workers 2"));
    sbuf_free(&m);

    /* worker 1 dies: its counters stay, its open connection does not */
    as_stats_shm_retire(r, 0);
    as_stats_shm_count_restart(r);
    j = stat_json(w2);
    CHECK_INT(num(j, "scanned"), 5);
    CHECK_INT(num(j, "workers"), 1);
    CHECK_INT(num(j, "worker_restarts"), 1);
    CHECK_INT(num(j, "actions.add header"), 3);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(json_object_get(j, "plugins"),
                                                                 "report"), "sent")), 5);
    json_decref(j);
    as_stats_write_metrics(w2, AS_METRICS_OPENMETRICS, &m);
    CHECK(has_line(m.data, "authscan_connections_open 1"));
    CHECK(has_line(m.data, "authscan_connections_total 3"));
    CHECK(has_line(m.data, "# TYPE authscan_scans counter"));
    CHECK(has_line(m.data, "authscan_scan_duration_seconds_count 0"));
    CHECK(m.len > 6 && strcmp(m.data + m.len - 6, "# EOF\n") == 0);
    sbuf_free(&m);

    /* its replacement takes the slot again and adds to the totals */
    as_engine_free(w1);
    as_stats_shm_attach(r, 0);
    struct as_engine *w3 = as_engine_new_bare(base, as_symtab_new());
    as_stats_scan_done(as_engine_stats(w3), AS_ACTION_REJECT, 0);
    j = stat_json(w2);
    CHECK_INT(num(j, "scanned"), 6);
    CHECK_INT(num(j, "workers"), 2);
    CHECK_INT(num(j, "actions.reject"), 1);
    json_decref(j);

    as_engine_free(w3);
    as_engine_free(w2);
    as_engine_free(cli);
    as_stats_shm_free(r);
    event_base_free(base);
}

int main(void)
{
    test_format();
    test_registry();
    return check_done();
}
