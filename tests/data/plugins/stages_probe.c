/*
 * stages_probe.c - an out-of-tree plugin for tests/integration/
 * test_plugin_stages.py, built against the INSTALLED headers only
 * (cc -shared -fPIC -I<prefix>/include).  It uses what ABI 1.2 added:
 *
 *   scan        checks that no other plugin disturbed libc's random()
 *               between this plugin's init and the first scan (DMARC pct
 *               sampling used to reseed it); optionally adds a symbol with
 *               70 options and one 2000-byte option (the option bounds) and
 *               removes X-Probe fields 3, 1 and -1 (milter.remove_headers);
 *   postfilter  reads the verdict, the symbols and the SPF and DMARC typed
 *               results, adds PROBE_POSTFILTER saying what it saw, and
 *               optionally forces an action (probe.force);
 *   finish      checks that it is read-only, waits probe.finish_delay on a
 *               timer (async work the reply must not wait for), then appends
 *               one line describing the final verdict to probe.log.
 *
 * The file is named a_probe.so so that it is initialized before dmarc.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <authscan/dmarc.h>
#include <authscan/plugin.h>
#include <authscan/spf.h>

static const struct as_symbol_def symbols[] = {
    { "PROBE_POSTFILTER", 0.5, "probe", "What the postfilter saw", 0 },
    { "PROBE_RANDOM", 0.0, "probe", "libc random() state at the first scan", 0 },
    { "PROBE_OPTS", 0.0, "probe", "Many options", 0 },
    { "PROBE_LATE", 0.0, "probe", "Added in the finish stage: must fail", 0 },
};

static const struct as_option_def options[] = {
    { "log", AS_OPT_STRING, NULL, "finish stage record file" },
    { "force", AS_OPT_STRING, "none", "action forced (exactly) in the postfilter" },
    { "finish_delay", AS_OPT_DURATION, "0", "finish stage wait" },
    { "burst", AS_OPT_BOOL, "no", "add PROBE_OPTS and remove X-Probe fields" },
};

struct probe {
    const char *log;
    int force;
    enum as_action force_action;
    double finish_delay;
    int burst;
    long random_first;     /* random() after srandom(4242) */
    int checked_random;
};

static int probe_init(struct as_plugin_ctx *ctx, void **state)
{
    struct probe *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->log = as_plugin_opt_string(ctx, "log");
    p->finish_delay = as_plugin_opt_duration(ctx, "finish_delay");
    p->burst = as_plugin_opt_bool(ctx, "burst");
    const char *f = as_plugin_opt_string(ctx, "force");
    if (f && strcasecmp(f, "none") != 0) {
        int a = as_action_parse(f);
        if (a < 0) {
            as_plugin_set_error(ctx, "probe.force: unknown action '%s'", f);
            free(p);
            return -1;
        }
        p->force = 1;
        p->force_action = (enum as_action)a;
    }
    srandom(4242);
    p->random_first = random();
    srandom(4242);
    *state = p;
    return 0;
}

static void probe_fini(void *state) { free(state); }

static void probe_scan(struct as_task *t, void *state)
{
    struct probe *p = state;
    if (!p->checked_random) {
        p->checked_random = 1;
        as_task_add_symbol(t, "PROBE_RANDOM", 1.0,
                           random() == p->random_first ? "intact" : "disturbed", NULL);
    }
    if (!p->burst) return;
    static char opt[70][16];
    const char *opts[71];
    for (int i = 0; i < 70; i++) {
        snprintf(opt[i], sizeof opt[i], "o%02d", i);
        opts[i] = opt[i];
    }
    char *big = as_pool_alloc(as_task_pool(t), 2001);
    memset(big, 'b', 2000);
    as_task_add_symbol(t, "PROBE_OPTS", 1.0, big, NULL);
    opts[70] = NULL;
    as_task_add_symbolv(t, "PROBE_OPTS", 1.0, opts, 70);
    as_task_remove_header(t, "X-Probe", 3);
    as_task_remove_header(t, "X-Probe", 1);
    as_task_remove_header(t, "x-probe", -1);   /* the 4th of 4: same key */
}

static void probe_postfilter(struct as_task *t, void *state)
{
    struct probe *p = state;
    const struct as_spf_result *spf = as_task_get_result(t, AS_SPF_RESULT_KEY);
    const struct as_dmarc_result *dm = as_task_get_result(t, AS_DMARC_RESULT_KEY);
    char a[64], s[64], n[64], sp[64], dmc[64], st[32];
    snprintf(a, sizeof a, "pre_action=%s", as_action_name(as_task_action(t)));
    snprintf(s, sizeof s, "pre_score=%.2f", as_task_score(t));
    snprintf(n, sizeof n, "pre_symbols=%zu", as_task_symbol_total(t));
    snprintf(sp, sizeof sp, "spf=%s",
             spf && spf->version >= 1 ? as_spf_res_name(spf->dmarc->result) : "-");
    snprintf(dmc, sizeof dmc, "dmarc=%s", dm && dm->version >= 1 ? "published" : "-");
    snprintf(st, sizeof st, "stage=%d", (int)as_task_stage(t));
    as_task_add_symbol(t, "PROBE_POSTFILTER", 1.0, a, s, n, sp, dmc, st, NULL);
    if (p->force)
        as_task_force_action(t, p->force_action, AS_FORCE_EXACT, AS_PRIO_SITE,
                             "4.7.1 held by the probe", "probe");
}

struct finish_wait {
    struct as_task *t;
    struct probe *p;
    struct as_async *op;
    struct event *ev;
    int readonly;
};

/* FNV-1a of the raw message: the finish stage runs after the reply, when
 * the protocol may have let go of its buffer; plugin.h promises the
 * message anyway (the test compares this with what it sent, and ASan
 * catches a read of freed memory). */
static unsigned long long raw_hash(const struct as_task *t)
{
    struct as_str raw = as_msg_raw(as_task_message(t));
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < raw.len; i++) h = (h ^ (unsigned char)raw.ptr[i]) * 1099511628211ULL;
    return h;
}

static void write_record(struct finish_wait *w)
{
    struct as_task *t = w->t;
    FILE *f = w->p->log ? fopen(w->p->log, "a") : NULL;
    if (!f) return;
    fprintf(f, "action=%s\tscore=%.2f\tforced_by=%s\tsmtp=%s\tstage=%d\treadonly=%d\traw=%llx\t"
            "symbols=",
            as_action_name(as_task_action(t)), as_task_score(t),
            as_task_forced_by(t) ? as_task_forced_by(t) : "-",
            as_task_smtp_message(t) ? as_task_smtp_message(t) : "-", (int)as_task_stage(t),
            w->readonly, raw_hash(t));
    for (size_t i = 0; i < as_task_symbol_total(t); i++) {
        const struct as_symbol_result *r = as_task_symbol_get(t, i);
        fprintf(f, "%s%s", i ? "," : "", r->name);
    }
    fputc('\n', f);
    fclose(f);
}

static void finish_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct finish_wait *w = arg;
    write_record(w);
    event_free(w->ev);
    w->ev = NULL;
    as_task_async_end(w->t, w->op);
}

static void finish_cancel(void *arg)
{
    struct finish_wait *w = arg;
    if (w->ev) event_free(w->ev);
    w->ev = NULL;
}

static void probe_finish(struct as_task *t, void *state)
{
    struct finish_wait *w = as_pool_alloc(as_task_pool(t), sizeof *w);
    w->t = t;
    w->p = state;
    w->readonly = as_task_add_symbol(t, "PROBE_LATE", 1.0, NULL) < 0 &&
                  as_task_force_action(t, AS_ACTION_REJECT, AS_FORCE_EXACT, 1000, NULL,
                                       "late") < 0 &&
                  as_task_add_header(t, "X-Late", "1", 0) < 0;
    if (w->p->finish_delay <= 0) {
        write_record(w);
        return;
    }
    w->ev = evtimer_new(as_task_event_base(t), finish_timer, w);
    w->op = as_task_async_begin(t, finish_cancel, w);
    if (!w->ev || !w->op) {
        if (w->ev) event_free(w->ev);
        return;
    }
    struct timeval tv = { (time_t)w->p->finish_delay,
                          (suseconds_t)((w->p->finish_delay - (double)(time_t)w->p->finish_delay) * 1e6) };
    evtimer_add(w->ev, &tv);
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "probe",
    .version = "1.0",
    .description = "test probe for the ABI 1.2 stages",
    .symbols = symbols,
    .nsymbols = sizeof symbols / sizeof symbols[0],
    .options = options,
    .noptions = sizeof options / sizeof options[0],
    .init = probe_init,
    .scan = probe_scan,
    .fini = probe_fini,
    .postfilter = probe_postfilter,
    .finish = probe_finish,
};
