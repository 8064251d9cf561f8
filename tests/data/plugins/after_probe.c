/*
 * after_probe.c - out-of-tree plugins for tests/integration/
 * test_plugin_after.py (ABI 1.3 struct as_plugin .after), built twice
 * against the installed headers:
 *   -DPROBE_SLOW   "slow_probe": its scan publishes the typed result
 *                  "slow_probe" only after a 300 ms timer;
 *   (default)      "after_probe": runs after slow_probe and after a plugin
 *                  that does not exist (no error), and says whether it saw
 *                  slow_probe's result (AFTER_PROBE "saw" / "missed") and
 *                  the arc result (authscan/arc.h is installed).
 * -DPROBE_NO_AFTER builds after_probe without .after: the scheduler then
 * runs it at once, while the timer is still pending (the control case).
 */
#include <event2/event.h>
#include <stdlib.h>
#include <authscan/arc.h>
#include <authscan/plugin.h>

#ifdef PROBE_SLOW
static const struct as_symbol_def symbols[] = {
    { "SLOW_PROBE", 0.0, "probe", "slow probe ran", 0 },
};

struct slow {
    struct as_task *t;
    struct as_async *op;
    struct event *ev;
};

static void slow_cancel(void *arg)
{
    struct slow *s = arg;
    event_free(s->ev);
    s->ev = NULL;
}

static void slow_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct slow *s = arg;
    as_task_set_result(s->t, "slow_probe", "done");
    as_task_add_symbol(s->t, "SLOW_PROBE", 1.0, NULL);
    event_free(s->ev);
    s->ev = NULL;
    as_task_async_end(s->t, s->op);
}

static void scan(struct as_task *t, void *state)
{
    (void)state;
    struct slow *s = as_pool_alloc(as_task_pool(t), sizeof *s);
    if (!s)
        return;
    s->t = t;
    s->ev = evtimer_new(as_task_event_base(t), slow_fire, s);
    s->op = s->ev ? as_task_async_begin(t, slow_cancel, s) : NULL;
    if (!s->op) {
        if (s->ev)
            event_free(s->ev);
        return;
    }
    struct timeval tv = { 0, 300000 };
    evtimer_add(s->ev, &tv);
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "slow_probe",
    .version = "1.0",
    .symbols = symbols,
    .nsymbols = 1,
    .scan = scan,
};
#else
static const struct as_symbol_def symbols[] = {
    { "AFTER_PROBE", 0.0, "probe", "what after_probe saw", 0 },
};

static void scan(struct as_task *t, void *state)
{
    (void)state;
    const struct as_arc_result *arc = as_task_get_result(t, AS_ARC_RESULT_KEY);
    as_task_add_symbol(t, "AFTER_PROBE", 1.0,
                       as_task_get_result(t, "slow_probe") ? "saw" : "missed",
                       arc && arc->version >= 1 ? as_arc_cv_name(arc->cv) : "no-arc", NULL);
}

static const char *const after[] = { "slow_probe", "no_such_plugin", NULL };

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "after_probe",
    .version = "1.0",
    .symbols = symbols,
    .nsymbols = 1,
    .scan = scan,
#ifndef PROBE_NO_AFTER
    .after = after,
#else
    .after = NULL,
    .description = after[0],  /* keeps `after` used */
#endif
};
#endif
