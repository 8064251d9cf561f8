/*
 * stats.c - see stats.h.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "scan/engine.h"
#include "scan/stats.h"
#include "scan/symbols.h"
#include "scan/task.h"
#include "services/service.h"
#include "util/log.h"
#include "util/util.h"

static const double latency_bounds[] = { AS_STATS_LATENCY_BOUNDS };
#define NBOUNDS AS_ARRAY_LEN(latency_bounds)

/* The core's cells, then each service's metrics in service-table order. */
enum {
    C_SCANNED,
    C_ERRORS,
    C_TIMEOUTS,
    C_POISON,
    C_ACTIONS,
    C_LATENCY = C_ACTIONS + AS_ACTION__COUNT,      /* NBOUNDS + 1 buckets (+Inf) */
    C_LATENCY_SUM_US = C_LATENCY + 12,
    C_LATENCY_COUNT,
    C_CONNECTIONS,
    C_CONNECTIONS_OPEN,                             /* gauge */
    C_SYMBOL_OTHER,
    C_PLUGIN_OTHER,               /* plugin counts beyond the table */
    C__CORE
};
#define MAX_CELLS 256
_Static_assert(C_LATENCY_SUM_US - C_LATENCY == NBOUNDS + 1, "latency buckets");

/* A count whose name is known only at run time (a symbol, a plugin's
 * counter).  Readers add them up by name. */
struct named {
    char name[AS_STATS_SYMBOL_LEN];
    uint64_t count;
};

/* One worker's counts.  The writer is that worker; the master touches a
 * slot only after its worker is dead.  A name is written before the
 * count of names (release) that makes it visible. */
struct stats_slot {
    uint64_t cells[MAX_CELLS];
    uint64_t nsyms;
    struct named syms[AS_STATS_SYMBOLS];
    uint64_t nplug;
    struct named plug[AS_STATS_PLUGIN_COUNTERS];   /* "plugin.counter" */
};

#define MAX_SLOTS 1024

struct as_stats_shm {
    size_t len;                   /* of the mapping */
    size_t nslots;
    uint64_t seq;                 /* odd while the master folds a slot */
    uint64_t restarts;
    /* the pid writing each slot, 0: free.  Kept here, apart from the
     * slots, so that a reader never touches the pages of a slot no
     * worker ever used */
    uint64_t live[MAX_SLOTS];
    struct stats_slot retired;    /* counters of workers that are gone */
    struct stats_slot slots[];
};

/* A counter a plugin declared in this process. */
struct plugin_counter {
    char *help;
    uint32_t index;               /* in own->plug */
};

struct as_stats {
    struct as_engine *e;
    struct plugin_counter *pc;
    size_t npc;
    struct stats_slot *own;       /* in the shared region, or priv */
    struct stats_slot *priv;
    uint32_t *symslot;            /* symbol id -> index in own->syms, or UINT32_MAX */
    size_t nsymslot;
    struct event *timer;
};

static struct as_stats_shm *attached_region;
static struct stats_slot *attached_slot;
static size_t attached_index;

static inline uint64_t load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
/* One writer per slot: a plain add that readers see whole. */
static inline void bump(uint64_t *p, uint64_t n) { store(p, load(p) + n); }

/* ---------------------------------------------------------------- */
/* layout                                                             */

static size_t service_offset(size_t svc)
{
    size_t off = C__CORE;
    for (size_t i = 0; i < svc; i++) off += as_service_at(i)->nmetrics;
    return off;
}

static size_t ncells(void) { return service_offset(as_service_count()); }

static int cell_is_gauge(size_t cell)
{
    if (cell == C_CONNECTIONS_OPEN) return 1;
    for (size_t i = 0; i < as_service_count(); i++) {
        const struct as_service *sv = as_service_at(i);
        size_t off = service_offset(i);
        if (cell >= off && cell < off + sv->nmetrics)
            return sv->metrics[cell - off].kind == AS_METRIC_GAUGE;
    }
    return 0;
}

/* ---------------------------------------------------------------- */
/* master                                                             */

struct as_stats_shm *as_stats_shm_new(size_t nslots, char *err, size_t errlen)
{
    /* the services' tables are part of the build: outgrowing the slot is
     * a build error, caught by every test that starts the daemon */
    if (ncells() > MAX_CELLS || nslots > MAX_SLOTS) {
        snprintf(err, errlen, "stats: %zu counters in %zu slots, the region holds %d in %d",
                 ncells(), nslots, MAX_CELLS, MAX_SLOTS);
        return NULL;
    }
    size_t len = sizeof(struct as_stats_shm) + nslots * sizeof(struct stats_slot);
    /* untouched pages cost nothing: a slot is written only once a worker
     * has used it, and readers skip free slots */
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "stats: cannot map %zu bytes of shared memory: %s", len,
                 strerror(errno));
        return NULL;
    }
    struct as_stats_shm *r = m;
    r->len = len;
    r->nslots = nslots;
    return r;
}

void as_stats_shm_free(struct as_stats_shm *r)
{
    if (r) munmap(r, r->len);
}

static struct stats_slot *slot_at(struct as_stats_shm *r, size_t i)
{
    return i < r->nslots ? &r->slots[i] : NULL;
}

/* Adds the named counts src[0..*sn) into dst by name; a name that does
 * not fit in cap goes to *other. */
static void merge_named(struct named *dst, uint64_t *dn_p, const struct named *src,
                        const uint64_t *sn_p, size_t cap, uint64_t *other)
{
    uint64_t n = __atomic_load_n(sn_p, __ATOMIC_ACQUIRE);
    if (n > cap) n = cap;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t c = load(&src[i].count);
        uint64_t j = 0, dn = load(dn_p);
        /* workers of one generation list their names in one order */
        if (i < dn && !strncmp(dst[i].name, src[i].name, AS_STATS_SYMBOL_LEN)) j = i;
        else while (j < dn && strncmp(dst[j].name, src[i].name, AS_STATS_SYMBOL_LEN))
            j++;
        if (j == dn) {
            if (dn == cap) {
                bump(other, c);
                continue;
            }
            memcpy(dst[j].name, src[i].name, AS_STATS_SYMBOL_LEN);
            store(&dst[j].count, 0);
            __atomic_store_n(dn_p, dn + 1, __ATOMIC_RELEASE);
        }
        bump(&dst[j].count, c);
    }
}

static void merge_symbols(struct stats_slot *dst, const struct stats_slot *src)
{
    merge_named(dst->syms, &dst->nsyms, src->syms, &src->nsyms, AS_STATS_SYMBOLS,
                &dst->cells[C_SYMBOL_OTHER]);
    merge_named(dst->plug, &dst->nplug, src->plug, &src->nplug, AS_STATS_PLUGIN_COUNTERS,
                &dst->cells[C_PLUGIN_OTHER]);
}

void as_stats_shm_retire(struct as_stats_shm *r, size_t i)
{
    struct stats_slot *s = r ? slot_at(r, i) : NULL;
    if (!s || !load(&r->live[i])) return;
    __atomic_add_fetch(&r->seq, 1, __ATOMIC_ACQ_REL);
    size_t n = ncells();
    for (size_t c = 0; c < n; c++)
        if (!cell_is_gauge(c)) bump(&r->retired.cells[c], load(&s->cells[c]));
    merge_symbols(&r->retired, s);
    memset(s, 0, sizeof *s);
    store(&r->live[i], 0);
    __atomic_add_fetch(&r->seq, 1, __ATOMIC_ACQ_REL);
}

void as_stats_shm_count_restart(struct as_stats_shm *r)
{
    if (r) bump(&r->restarts, 1);
}

void as_stats_shm_attach(struct as_stats_shm *r, size_t i)
{
    attached_region = r;
    attached_slot = r ? slot_at(r, i) : NULL;
    attached_index = i;
}

/* ---------------------------------------------------------------- */
/* counting                                                           */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    as_stats_publish(arg);
}

struct as_stats *as_stats_new(struct as_engine *e)
{
    struct as_stats *s = xcalloc(1, sizeof *s);
    s->e = e;
    if (attached_slot) {
        /* one engine per worker counts into the slot */
        s->own = attached_slot;
        attached_slot = NULL;
        memset(s->own, 0, sizeof *s->own);
        store(&attached_region->live[attached_index], (uint64_t)getpid());
        struct event_base *base = as_engine_base(e);
        if (base) {
            s->timer = event_new(base, -1, EV_PERSIST, timer_cb, s);
            struct timeval tv = { 1, 0 };
            if (!s->timer || event_add(s->timer, &tv) < 0)
                as_log(AS_LOG_WARN, "stats: no periodic publication; counts follow scans only");
        }
    } else {
        s->own = s->priv = xcalloc(1, sizeof *s->priv);
    }
    return s;
}

void as_stats_free(struct as_stats *s)
{
    if (!s) return;
    if (s->timer) event_free(s->timer);
    free(s->symslot);
    for (size_t i = 0; i < s->npc; i++) free(s->pc[i].help);
    free(s->pc);
    free(s->priv);
    free(s);
}

void as_stats_scan_done(struct as_stats *s, enum as_action action, int timed_out)
{
    bump(&s->own->cells[C_SCANNED], 1);
    if ((unsigned)action < AS_ACTION__COUNT) bump(&s->own->cells[C_ACTIONS + action], 1);
    if (timed_out) bump(&s->own->cells[C_TIMEOUTS], 1);
}

void as_stats_request_error(struct as_stats *s) { bump(&s->own->cells[C_ERRORS], 1); }
void as_stats_poison(struct as_stats *s) { bump(&s->own->cells[C_POISON], 1); }

void as_stats_connection(struct as_stats *s, int delta)
{
    if (!s) return;
    uint64_t *open = &s->own->cells[C_CONNECTIONS_OPEN];
    if (delta > 0) {
        bump(&s->own->cells[C_CONNECTIONS], 1);
        bump(open, 1);
    } else if (load(open) > 0) {
        store(open, load(open) - 1);
    }
}

/* Symbol id -> slot index, built on first use: the symbol table is
 * complete once the engine is. */
static void map_symbols(struct as_stats *s)
{
    const struct as_symtab *st = as_engine_symtab(s->e);
    size_t n = st ? as_symtab_count(st) : 0;
    s->symslot = xcalloc(n + 1, sizeof *s->symslot);
    s->nsymslot = n;
    struct stats_slot *o = s->own;
    for (size_t i = 0; i < n; i++) {
        const struct as_symbol *sym = as_symtab_at(st, i);
        s->symslot[i] = UINT32_MAX;
        /* rule-only names come from the site's files: not ours to label */
        if (!sym->plugin || strlen(sym->name) >= AS_STATS_SYMBOL_LEN || sym->id >= n) continue;
        uint64_t k = load(&o->nsyms);
        if (k == AS_STATS_SYMBOLS) continue;
        as_strlcpy(o->syms[k].name, sym->name, AS_STATS_SYMBOL_LEN);
        store(&o->syms[k].count, 0);
        __atomic_store_n(&o->nsyms, k + 1, __ATOMIC_RELEASE);
        s->symslot[sym->id] = (uint32_t)k;
    }
}

void as_stats_task_done(struct as_stats *s, const struct as_task *t)
{
    struct stats_slot *o = s->own;
    double secs = as_task_elapsed(t);
    if (secs < 0) secs = 0;
    size_t b = 0;
    while (b < NBOUNDS && secs > latency_bounds[b]) b++;
    bump(&o->cells[C_LATENCY + b], 1);
    bump(&o->cells[C_LATENCY_SUM_US], (uint64_t)(secs * 1e6 + 0.5));
    bump(&o->cells[C_LATENCY_COUNT], 1);
    if (!s->symslot) map_symbols(s);
    size_t n = as_task_symbol_count(t);
    for (size_t i = 0; i < n; i++) {
        const struct as_symbol *sym = as_task_symbol_at(t, i)->sym;
        uint32_t k = sym->id < s->nsymslot ? s->symslot[sym->id] : UINT32_MAX;
        if (k != UINT32_MAX) bump(&o->syms[k].count, 1);
        else if (sym->plugin) bump(&o->cells[C_SYMBOL_OTHER], 1);
    }
    as_stats_publish(s);
}

int as_stats_plugin_counter(struct as_stats *s, const char *plugin, const char *name,
                            const char *help, char *err, size_t errlen)
{
    char full[AS_STATS_SYMBOL_LEN];
    int n = snprintf(full, sizeof full, "%s.%s", plugin, name ? name : "");
    if (!name || !*name || n < 0 || (size_t)n >= sizeof full) {
        snprintf(err, errlen, "counter name '%s' is empty or too long", name ? name : "");
        return -1;
    }
    for (const char *p = full; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              (*p == '.' && p == full + strlen(plugin)))) {
            snprintf(err, errlen, "counter name '%s': expected [a-z0-9_]", name);
            return -1;
        }
    for (size_t i = 0; i < s->npc; i++)
        if (strcmp(s->own->plug[s->pc[i].index].name, full) == 0) {
            snprintf(err, errlen, "counter '%s' declared twice", name);
            return -1;
        }
    struct stats_slot *o = s->own;
    uint64_t k = load(&o->nplug);
    if (k == AS_STATS_PLUGIN_COUNTERS) {
        snprintf(err, errlen, "more than %d plugin counters in all", AS_STATS_PLUGIN_COUNTERS);
        return -1;
    }
    as_strlcpy(o->plug[k].name, full, AS_STATS_SYMBOL_LEN);
    store(&o->plug[k].count, 0);
    __atomic_store_n(&o->nplug, k + 1, __ATOMIC_RELEASE);
    s->pc = xrealloc(s->pc, (s->npc + 1) * sizeof *s->pc);
    s->pc[s->npc] = (struct plugin_counter){ xstrdup(help ? help : ""), (uint32_t)k };
    return (int)s->npc++;
}

void as_stats_plugin_count(struct as_stats *s, int counter, uint64_t n)
{
    if (counter >= 0 && (size_t)counter < s->npc)
        bump(&s->own->plug[s->pc[counter].index].count, n);
}

int as_plugin_counter(struct as_plugin_ctx *c, const char *name, const char *help)
{
    char err[200];
    int h = as_stats_plugin_counter(as_engine_stats(c->engine), as_plugin_name(c), name, help,
                                    err, sizeof err);
    if (h < 0) as_plugin_set_error(c, "%s", err);
    return h;
}

void as_plugin_count(const struct as_plugin_ctx *c, int counter, uint64_t n)
{
    as_stats_plugin_count(as_engine_stats(c->engine), counter, n);
}

void as_stats_publish(struct as_stats *s)
{
    uint64_t v[MAX_CELLS];
    for (size_t i = 0; i < as_service_count(); i++) {
        const struct as_service *sv = as_service_at(i);
        const void *state = as_engine_service_state(s->e, sv);
        if (!sv->nmetrics || !sv->read_metrics || !state) continue;
        size_t off = service_offset(i);
        if (off + sv->nmetrics > MAX_CELLS) continue;
        sv->read_metrics(state, v);
        for (size_t k = 0; k < sv->nmetrics; k++) store(&s->own->cells[off + k], v[k]);
    }
}

/* ---------------------------------------------------------------- */
/* reading                                                            */

struct totals {
    uint64_t cells[MAX_CELLS];
    struct stats_slot syms;       /* only names and counts are used */
    uint64_t restarts;
    unsigned workers;
};

static void add_slot(struct totals *t, const struct stats_slot *s, int with_gauges)
{
    size_t n = ncells();
    for (size_t c = 0; c < n; c++)
        if (with_gauges || !cell_is_gauge(c)) t->cells[c] += load(&s->cells[c]);
    merge_symbols(&t->syms, s);
}

/* Counts of names the merge found no room for. */
static void add_overflow(struct totals *t)
{
    t->cells[C_SYMBOL_OTHER] += t->syms.cells[C_SYMBOL_OTHER];
    t->cells[C_PLUGIN_OTHER] += t->syms.cells[C_PLUGIN_OTHER];
}

static void read_totals(const struct as_engine *e, struct totals *t)
{
    struct as_stats *me = as_engine_stats(e);
    as_stats_publish(me);
    struct as_stats_shm *r = me->priv ? NULL : attached_region;
    for (int attempt = 0;; attempt++) {
        memset(t, 0, sizeof *t);
        if (!r) {
            add_slot(t, me->own, 1);
            t->workers = 1;
            add_overflow(t);
            return;
        }
        uint64_t seq = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
        if ((seq & 1) && attempt < 100)
            continue;   /* the master is folding a slot: a few hundred stores */
        add_slot(t, &r->retired, 0);
        for (size_t i = 0; i < r->nslots; i++)
            if (load(&r->live[i])) {
                add_slot(t, &r->slots[i], 1);
                t->workers++;
            }
        t->restarts = load(&r->restarts);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);   /* the reads above, before the check */
        if (__atomic_load_n(&r->seq, __ATOMIC_RELAXED) == seq || attempt >= 100) {
            add_overflow(t);
            return;
        }
    }
}

static int by_named(const void *a, const void *b)
{
    return strncmp(((const struct named *)a)->name, ((const struct named *)b)->name,
                   AS_STATS_SYMBOL_LEN);
}

void as_stats_write_json(const struct as_engine *e, struct sbuf *b)
{
    struct totals *t = xmalloc(sizeof *t);
    read_totals(e, t);
    const uint64_t *c = t->cells;
    sbuf_printf(b, "{\"pid\":%d,\"scanned\":%llu,\"errors\":%llu,\"timeouts\":%llu,"
                "\"poison\":%llu,\"actions\":{",
                (int)getpid(), (unsigned long long)c[C_SCANNED], (unsigned long long)c[C_ERRORS],
                (unsigned long long)c[C_TIMEOUTS], (unsigned long long)c[C_POISON]);
    for (int a = 0; a < AS_ACTION__COUNT; a++)
        sbuf_printf(b, "%s\"%s\":%llu", a ? "," : "", as_action_name((enum as_action)a),
                    (unsigned long long)c[C_ACTIONS + a]);
    sbuf_printf(b, "},\"workers\":%u,\"worker_restarts\":%llu,\"connections\":%llu",
                t->workers, (unsigned long long)t->restarts,
                (unsigned long long)c[C_CONNECTIONS]);
    for (size_t i = 0; i < as_service_count(); i++) {
        const struct as_service *s = as_service_at(i);
        const void *state = as_engine_service_state(e, s);
        if (!state || (!s->nmetrics && !s->write_stats)) continue;
        const uint64_t *v = c + service_offset(i);
        sbuf_printf(b, ",\"%s\":", s->name);
        if (s->write_stats) {
            s->write_stats(state, v, b);
            continue;
        }
        sbuf_addc(b, '{');
        for (size_t k = 0; k < s->nmetrics; k++)
            sbuf_printf(b, "%s\"%s\":%llu", k ? "," : "", s->metrics[k].key,
                        (unsigned long long)v[k]);
        sbuf_addc(b, '}');
    }
    /* "plugins": {"report": {"override_mailing_list": 3}}: names sorted, so one plugin's
     * counters are together */
    uint64_t np = t->syms.nplug;
    qsort(t->syms.plug, np, sizeof *t->syms.plug, by_named);
    sbuf_adds(b, ",\"plugins\":{");
    const char *open = NULL;
    size_t openlen = 0;
    for (uint64_t i = 0; i < np; i++) {
        const char *nm = t->syms.plug[i].name, *dot = strchr(nm, '.');
        if (!dot) continue;
        size_t pl = (size_t)(dot - nm);
        if (!open || pl != openlen || strncmp(open, nm, pl) != 0) {
            sbuf_printf(b, "%s\"%.*s\":{", open ? "}," : "", (int)pl, nm);
            open = nm;
            openlen = pl;
        } else {
            sbuf_addc(b, ',');
        }
        sbuf_printf(b, "\"%s\":%llu", dot + 1, (unsigned long long)t->syms.plug[i].count);
    }
    sbuf_adds(b, open ? "}}}\n" : "}}\n");
    free(t);
}

/* The help text a plugin of this worker gave name, or NULL. */
static const char *plugin_help(const struct as_stats *s, const char *name)
{
    for (size_t i = 0; i < s->npc; i++)
        if (strcmp(s->own->plug[s->pc[i].index].name, name) == 0) return s->pc[i].help;
    return NULL;
}

static void counter(struct sbuf *b, enum as_metrics_format f, const char *name, const char *help,
                    uint64_t v)
{
    as_metrics_family(b, f, name, "counter", help);
    as_metrics_sample(b, name, NULL, NULL, (double)v);
}

void as_stats_write_metrics(const struct as_engine *e, enum as_metrics_format f,
                            struct sbuf *b)
{
    as_stats_write_metric_families(e, f, b);
    as_metrics_end(b, f);
}

void as_stats_write_metric_families(const struct as_engine *e, enum as_metrics_format f,
                                    struct sbuf *b)
{
    struct totals *t = xmalloc(sizeof *t);
    read_totals(e, t);
    const uint64_t *c = t->cells;

    as_metrics_family(b, f, "build_info", "gauge", "The running authscand's version.");
    as_metrics_sample(b, "build_info", "version", AUTHSCAN_VERSION, 1);
    as_metrics_family(b, f, "workers", "gauge", "Worker processes running.");
    as_metrics_sample(b, "workers", NULL, NULL, t->workers);
    counter(b, f, "worker_restarts_total", "Workers that died unexpectedly and were replaced.",
            t->restarts);
    counter(b, f, "scans_total", "Messages scanned to a final verdict.", c[C_SCANNED]);
    as_metrics_family(b, f, "actions_total", "counter", "Scans by the action of their verdict.");
    for (int a = 0; a < AS_ACTION__COUNT; a++)
        as_metrics_sample(b, "actions_total", "action", as_action_name((enum as_action)a),
                          (double)c[C_ACTIONS + a]);
    counter(b, f, "scan_timeouts_total", "Scans whose verdict came from the scan deadline.",
            c[C_TIMEOUTS]);
    counter(b, f, "request_errors_total", "Requests answered with an error instead of a verdict.",
            c[C_ERRORS]);
    counter(b, f, "poison_answers_total",
            "Messages answered unscanned because they killed a worker before.", c[C_POISON]);
    counter(b, f, "connections_total", "Connections accepted, every listener.", c[C_CONNECTIONS]);
    as_metrics_family(b, f, "connections_open", "gauge", "Connections open now.");
    as_metrics_sample(b, "connections_open", NULL, NULL, (double)c[C_CONNECTIONS_OPEN]);

    as_metrics_family(b, f, "scan_duration_seconds", "histogram",
                      "Time from a scan's start to its verdict.");
    uint64_t cum = 0;
    for (size_t i = 0; i <= NBOUNDS; i++) {
        char le[32];
        cum += c[C_LATENCY + i];
        if (i < NBOUNDS) snprintf(le, sizeof le, "%g", latency_bounds[i]);
        else strcpy(le, "+Inf");
        as_metrics_sample(b, "scan_duration_seconds_bucket", "le", le, (double)cum);
    }
    as_metrics_sample(b, "scan_duration_seconds_sum", NULL, NULL,
                      (double)c[C_LATENCY_SUM_US] / 1e6);
    as_metrics_sample(b, "scan_duration_seconds_count", NULL, NULL, (double)c[C_LATENCY_COUNT]);

    as_metrics_family(b, f, "symbols_total", "counter",
                      "Scans that got each declared symbol (rule-only names are not listed).");
    uint64_t n = t->syms.nsyms;
    for (uint64_t i = 0; i < n; i++)
        as_metrics_sample(b, "symbols_total", "symbol", t->syms.syms[i].name,
                          (double)t->syms.syms[i].count);
    as_metrics_sample(b, "symbols_total", "symbol", "other", (double)c[C_SYMBOL_OTHER]);

    /* a plugin's counter "report.override_local_policy" is
     * authscan_report_override_local_policy_total */
    const struct as_stats *me = as_engine_stats(e);
    for (uint64_t i = 0; i < t->syms.nplug; i++) {
        char name[AS_STATS_SYMBOL_LEN + 8];
        snprintf(name, sizeof name, "%s_total", t->syms.plug[i].name);
        for (char *p = name; *p; p++)
            if (*p == '.') *p = '_';
        const char *help = plugin_help(me, t->syms.plug[i].name);
        char fallback[AS_STATS_SYMBOL_LEN + 32];
        if (!help || !*help) {
            snprintf(fallback, sizeof fallback, "Plugin counter %s.", t->syms.plug[i].name);
            help = fallback;
        }
        counter(b, f, name, help, t->syms.plug[i].count);
    }
    counter(b, f, "plugin_counts_dropped_total",
            "Plugin counts beyond the counter table (more names than it holds).",
            c[C_PLUGIN_OTHER]);

    for (size_t i = 0; i < as_service_count(); i++) {
        const struct as_service *s = as_service_at(i);
        const uint64_t *v = c + service_offset(i);
        for (size_t k = 0; k < s->nmetrics; k++) {
            const struct as_metric_def *d = &s->metrics[k];
            as_metrics_family(b, f, d->name, d->kind == AS_METRIC_GAUGE ? "gauge" : "counter",
                              d->help);
            as_metrics_sample(b, d->name, NULL, NULL, (double)v[k]);
        }
    }
    free(t);
}
