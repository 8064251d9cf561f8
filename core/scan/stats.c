/*
 * stats.c - see stats.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include "scan/engine.h"
#include "services/service.h"
#include "scan/stats.h"
#include "util/util.h"

struct as_stats {
    uint64_t scanned;
    uint64_t actions[AS_ACTION__COUNT];
    uint64_t timeouts;
    uint64_t errors;              /* requests answered with an error */
    uint64_t poison;              /* answered unscanned: poison.h */
};

struct as_stats *as_stats_new(void) { return xcalloc(1, sizeof(struct as_stats)); }
void as_stats_free(struct as_stats *s) { free(s); }

void as_stats_scan_done(struct as_stats *s, enum as_action action, int timed_out)
{
    s->scanned++;
    if ((unsigned)action < AS_ACTION__COUNT) s->actions[action]++;
    if (timed_out) s->timeouts++;
}

void as_stats_request_error(struct as_stats *s) { s->errors++; }
void as_stats_poison(struct as_stats *s) { s->poison++; }

void as_stats_write_json(const struct as_engine *e, struct sbuf *b)
{
    const struct as_stats *st = as_engine_stats(e);
    sbuf_printf(b, "{\"pid\":%d,\"scanned\":%llu,\"errors\":%llu,\"timeouts\":%llu,"
                "\"poison\":%llu,\"actions\":{",
                (int)getpid(), (unsigned long long)st->scanned, (unsigned long long)st->errors,
                (unsigned long long)st->timeouts, (unsigned long long)st->poison);
    for (int a = 0; a < AS_ACTION__COUNT; a++)
        sbuf_printf(b, "%s\"%s\":%llu", a ? "," : "", as_action_name((enum as_action)a),
                    (unsigned long long)st->actions[a]);
    sbuf_addc(b, '}');
    for (size_t i = 0; i < as_service_count(); i++) {
        const struct as_service *s = as_service_at(i);
        const void *state = as_engine_service_state(e, s);
        if (!s->write_stats || !state) continue;
        sbuf_printf(b, ",\"%s\":", s->name);
        s->write_stats(state, b);
    }
    sbuf_adds(b, "}\n");
}
