/*
 * test_dns_task.c - the plugin-facing DNS calls (as_dns_query,
 * as_dns_pinned): pinning, the per-task budget, bad names, asynchronous
 * delivery and cancellation when the task is freed.  Uses real tasks on a
 * minimal engine (no plugins) and the resolver in offline mode; the
 * offline answers are the ones test_dns checks against nsd.
 */
#include <stdio.h>
#include <string.h>
#include <event2/event.h>
#include "check.h"
#include "services/dns.h"
#include "scan/engine.h"
#include "util/log.h"
#include "scan/symbols.h"
#include "scan/task.h"
#include "util/util.h"

static struct event_base *base;

struct got {
    int calls;
    int in_query;                       /* set while as_dns_query runs */
    int sync;                           /* a callback ran inside as_dns_query */
    const struct as_dns_answer *ans;
    struct as_task *t;
};

static void on_dns(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    struct got *g = arg;
    if (g->in_query) g->sync = 1;
    g->calls++;
    g->ans = ans;
    g->t = t;
}

static int query(struct as_task *t, const char *name, uint16_t type, struct got *g)
{
    g->in_query = 1;
    int rc = as_dns_query(t, name, type, on_dns, g);
    g->in_query = 0;
    return rc;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
}

static void run_for(double secs)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = { 0, 5000 };
    event_add(tick, &tv);
    double end = as_now() + secs;
    while (as_now() < end) event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
}

static struct as_resolver *mk(unsigned max_queries, double timeout)
{
    struct as_resolver_config rc = {
        .zone_file = "data/zones/offline.zone", .timeout = timeout,
        .max_queries = max_queries, .cache_entries = 100, .max_ttl = 3600,
        .negative_ttl = 300,
    };
    char err[256] = "";
    struct as_resolver *r = as_resolver_new(base, &rc, err, sizeof err);
    if (!r) fprintf(stderr, "%s\n", err);
    return r;
}

/* A bare engine with r attached as its DNS service (r stays ours). */
static struct as_engine *engine_init(struct as_resolver *r)
{
    struct as_engine *e = as_engine_new_bare(base, as_symtab_new());
    as_engine_attach_service(e, &as_dns_service, r);
    return e;
}

static void test_pinning(void)
{
    struct as_resolver *r = mk(64, 1);
    if (!r) { CHECK(0); return; }
    struct as_engine *e = engine_init(r);
    struct as_task *t = as_task_new(e);
    struct as_task *t2 = as_task_new(e);

    struct got a = {0}, b = {0}, c = {0}, other = {0};
    CHECK_INT(query(t, "multi.example", AS_DNS_TXT, &a), 0);
    CHECK_INT(a.calls, 0);
    CHECK(as_dns_pinned(t, "multi.example", AS_DNS_TXT) == NULL);
    run_for(0.05);
    CHECK_INT(a.calls, 1);
    CHECK_INT(a.sync, 0);
    CHECK(a.t == t);
    CHECK(a.ans != NULL);
    if (!a.ans) return;
    CHECK_INT(a.ans->status, AS_DNS_OK);
    CHECK_STR(a.ans->rr[0].d.txt.joined.ptr, "first part second partthird");

    struct as_resolver_stats st0, st1;
    as_resolver_get_stats(r, &st0);
    /* the second ask, however spelled, gets the very same answer */
    CHECK_INT(query(t, "Multi.Example.", AS_DNS_TXT, &b), 0);
    CHECK_INT(b.calls, 0);                         /* still asynchronous */
    run_for(0.05);
    CHECK_INT(b.calls, 1);
    CHECK(b.ans == a.ans);
    CHECK(as_dns_pinned(t, "MULTI.example", AS_DNS_TXT) == a.ans);
    CHECK(as_dns_pinned(t, "multi.example", AS_DNS_A) == NULL);
    /* a bad name is never sent: its answer is known, BADNAME */
    const struct as_dns_answer *bad = as_dns_pinned(t, "bad..name", AS_DNS_A);
    CHECK(bad != NULL && bad->status == AS_DNS_BADNAME);
    as_resolver_get_stats(r, &st1);
    CHECK_INT(st1.queries, st0.queries);           /* served by the pin */

    /* another task has its own copy */
    query(t2, "multi.example", AS_DNS_TXT, &other);
    run_for(0.05);
    CHECK_INT(other.calls, 1);
    CHECK(other.ans && other.ans != a.ans);
    CHECK(as_dns_pinned(t2, "multi.example", AS_DNS_TXT) == other.ans);

    /* negative answers are pinned too */
    query(t, "nope.example", AS_DNS_A, &c);
    run_for(0.05);
    CHECK_INT(c.ans ? c.ans->status : 99, AS_DNS_NXDOMAIN);
    CHECK(as_dns_pinned(t, "nope.example", AS_DNS_A) == c.ans);

    /* unsupported type and NULL arguments: not started */
    struct got z = {0};
    CHECK_INT(as_dns_query(t, "example", 6, on_dns, &z), -1);
    CHECK_INT(as_dns_query(t, NULL, AS_DNS_A, on_dns, &z), -1);
    CHECK_INT(as_dns_query(t, "example", AS_DNS_A, NULL, &z), -1);
    run_for(0.02);
    CHECK_INT(z.calls, 0);

    /* the answer lives in the task pool: it survives the resolver */
    const struct as_dns_answer *keep = a.ans;
    as_resolver_free(r);
    as_engine_attach_service(e, &as_dns_service, NULL);
    CHECK_STR(keep->rr[0].d.txt.strings[1].ptr, "second part");
    CHECK_STR(keep->name, "multi.example");
    as_task_free(t);
    as_task_free(t2);
    as_engine_free(e);
}

static void test_budget(void)
{
    struct as_resolver *r = mk(3, 1);
    if (!r) { CHECK(0); return; }
    struct as_engine *e = engine_init(r);
    struct as_task *t = as_task_new(e);

    struct got g[8];
    memset(g, 0, sizeof g);
    query(t, "example", AS_DNS_A, &g[0]);
    query(t, "example", AS_DNS_A, &g[1]);           /* in flight in this task: free */
    query(t, "www.example", AS_DNS_A, &g[2]);
    query(t, "bad..name", AS_DNS_A, &g[3]);          /* never sent: free */
    query(t, "mail.example", AS_DNS_A, &g[4]);       /* third counted query */
    query(t, "mx1.example", AS_DNS_A, &g[5]);        /* over budget */
    for (int i = 0; i < 6; i++) CHECK_INT(g[i].calls, 0);
    run_for(0.05);
    for (int i = 0; i < 6; i++) {
        CHECK_INT(g[i].calls, 1);
        CHECK_INT(g[i].sync, 0);
    }
    CHECK_INT(g[0].ans->status, AS_DNS_OK);
    CHECK(g[1].ans == g[0].ans);                     /* pinned on arrival */
    CHECK_INT(g[2].ans->status, AS_DNS_OK);
    CHECK_INT(g[3].ans->status, AS_DNS_BADNAME);
    CHECK_STR(g[3].ans->name, "bad..name");
    CHECK_INT(g[4].ans->status, AS_DNS_OK);
    CHECK_INT(g[5].ans->status, AS_DNS_BUDGET);
    CHECK_STR(g[5].ans->name, "mx1.example");
    /* a refusal stays one for whoever was refused (here: no plugin) */
    const struct as_dns_answer *rf = as_dns_pinned(t, "mx1.example", AS_DNS_A);
    CHECK_INT(rf ? rf->status : 99, AS_DNS_BUDGET);

    /* pinned names are still answered after the budget is gone */
    struct got p = {0}, q = {0};
    query(t, "www.example", AS_DNS_A, &p);
    query(t, "mx2.example", AS_DNS_A, &q);
    run_for(0.05);
    CHECK(p.ans == g[2].ans);
    CHECK_INT(q.ans ? q.ans->status : 99, AS_DNS_BUDGET);

    struct as_resolver_stats st;
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.budget_exhausted, 2);
    CHECK_INT(st.badnames, 1);

    /* the budget is per task */
    struct as_task *t2 = as_task_new(e);
    struct got n = {0};
    query(t2, "mx1.example", AS_DNS_A, &n);
    run_for(0.05);
    CHECK_INT(n.ans ? n.ans->status : 99, AS_DNS_OK);
    as_task_free(t2);
    as_task_free(t);
    as_resolver_free(r);
    as_engine_free(e);
}

/* The budget per plugin (issue 10.3): a plugin that asks for everything
 * ("hog", like a hostile SPF record) cannot take the reserve of a plugin
 * that runs after it ("late", like DMARC's policy lookup).  Real tasks
 * with two in-process plugins, scheduled by as_task_run(). */
#define HOG_ASKS 40
struct share_run {
    struct got hog[HOG_ASKS], late[8];
};
static struct share_run *share_run;

static void hog_scan(struct as_task *t, void *state)
{
    (void)state;
    for (int i = 0; i < HOG_ASKS; i++) {
        char n[32];
        snprintf(n, sizeof n, "h%d.example", i);
        query(t, n, AS_DNS_A, &share_run->hog[i]);
    }
}

static void late_scan(struct as_task *t, void *state)
{
    (void)state;
    for (int i = 0; i < 8; i++) {
        char n[32];
        snprintf(n, sizeof n, "l%d.example", i);
        query(t, n, AS_DNS_A, &share_run->late[i]);
    }
}

static void share_done(struct as_task *t, void *arg)
{
    (void)t;
    *(int *)arg = 1;
}

static void test_plugin_shares(void)
{
    /* pool 10, every plugin 3 of its own, late asks for 6 */
    struct as_resolver_config rc = {
        .zone_file = "data/zones/offline.zone", .timeout = 1, .max_queries = 10,
        .plugin_reserve = 3, .cache_entries = 100, .max_ttl = 3600, .negative_ttl = 300,
    };
    char err[256] = "";
    struct as_resolver *r = as_resolver_new(base, &rc, err, sizeof err);
    if (!r) { fprintf(stderr, "%s\n", err); CHECK(0); return; }
    static const char *const late_deps[] = { "hog", NULL };
    static const struct as_plugin hog = { AS_PLUGIN_HEADER, .name = "hog", .scan = hog_scan };
    static const struct as_plugin late = { AS_PLUGIN_HEADER, .name = "late",
                                           .depends = late_deps, .scan = late_scan };
    struct as_engine_plugin plugins[2];
    memset(plugins, 0, sizeof plugins);
    size_t dep0 = 0;
    plugins[0].def = &hog;
    plugins[1].def = &late;
    plugins[1].deps = &dep0;
    plugins[1].ndeps = 1;
    struct as_engine *e = engine_init(r);
    as_engine_attach_plugins(e, plugins, 2);
    as_engine_limits_mut(e)->scan_timeout = 10;
    CHECK_INT(as_plugin_dns_reserve(&plugins[1].ctx, 6), 0);
    CHECK_INT(as_plugin_dns_reserve(&plugins[1].ctx, AS_DNS_RESERVE_MAX + 1), -1);
    CHECK_INT(plugins[1].ctx.dns_reserve, 6);

    struct share_run run;
    memset(&run, 0, sizeof run);
    share_run = &run;
    struct as_task *t = as_task_new(e);
    int done = 0;
    as_task_run(t, share_done, &done);
    while (!done) event_base_loop(base, EVLOOP_ONCE);

    /* hog: its 3, then the pool of 10; late: its 6 whatever hog did */
    int hog_ok = 0, late_ok = 0;
    for (int i = 0; i < HOG_ASKS; i++) {
        CHECK_INT(run.hog[i].calls, 1);
        hog_ok += run.hog[i].ans && run.hog[i].ans->status != AS_DNS_BUDGET;
    }
    for (int i = 0; i < 8; i++) {
        CHECK_INT(run.late[i].calls, 1);
        late_ok += run.late[i].ans && run.late[i].ans->status != AS_DNS_BUDGET;
    }
    CHECK_INT(hog_ok, 3 + 10);
    CHECK_INT(late_ok, 6);
    CHECK_INT(run.late[5].ans->status, AS_DNS_NXDOMAIN);
    CHECK_INT(run.late[6].ans->status, AS_DNS_BUDGET);
    /* outside the plugin refused, a refusal is not an answer */
    CHECK(as_dns_pinned(t, "l6.example", AS_DNS_A) == NULL);
    struct as_resolver_stats st;
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.budget_exhausted, HOG_ASKS - 13 + 2);
    as_task_free(t);
    as_engine_free(e);
    as_resolver_free(r);
}

/* A callback may start further queries. */
struct chain {
    int step;
    const struct as_dns_answer *last;
};

static void chain_cb(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    struct chain *c = arg;
    c->step++;
    c->last = ans;
    if (c->step == 1 && ans->status == AS_DNS_OK && ans->nrr)
        as_dns_query(t, ans->rr[0].d.mx.host, AS_DNS_A, chain_cb, c);
}

static void test_chain_and_cancel(void)
{
    struct as_resolver *r = mk(64, 0.2);
    if (!r) { CHECK(0); return; }
    struct as_engine *e = engine_init(r);
    struct as_task *t = as_task_new(e);
    struct chain c = {0};
    CHECK_INT(as_dns_query(t, "example", AS_DNS_MX, chain_cb, &c), 0);
    run_for(0.05);
    CHECK_INT(c.step, 2);
    CHECK_INT(c.last ? c.last->nrr : 0, 1);
    as_task_free(t);

    /* freeing a task cancels what is outstanding: a query waiting for its
     * deadline, one with an answer ready, and a pinned re-delivery */
    t = as_task_new(e);
    struct got slow = {0}, ready = {0}, pin1 = {0}, pin2 = {0};
    query(t, "www.example", AS_DNS_A, &pin1);
    run_for(0.05);
    CHECK_INT(pin1.calls, 1);
    query(t, "slow.example", AS_DNS_TXT, &slow);
    query(t, "example", AS_DNS_TXT, &ready);
    query(t, "www.example", AS_DNS_A, &pin2);
    as_task_free(t);
    run_for(0.4);
    CHECK_INT(slow.calls, 0);
    CHECK_INT(ready.calls, 0);
    CHECK_INT(pin2.calls, 0);

    /* and a task that waits gets TIMEOUT at the resolver's deadline */
    t = as_task_new(e);
    struct got late = {0};
    double t0 = as_now();
    query(t, "slow.example", AS_DNS_TXT, &late);
    while (!late.calls && as_now() - t0 < 2) run_for(0.01);
    CHECK_INT(late.ans ? late.ans->status : 99, AS_DNS_TIMEOUT);
    CHECK(as_now() - t0 < 0.5);
    as_task_free(t);
    as_resolver_free(r);
    as_engine_free(e);
}

static void test_status_names(void)
{
    CHECK_STR(as_dns_status_name(AS_DNS_OK), "ok");
    CHECK_STR(as_dns_status_name(AS_DNS_NXDOMAIN), "nxdomain");
    CHECK_STR(as_dns_status_name(AS_DNS_NODATA), "nodata");
    CHECK_STR(as_dns_status_name(AS_DNS_SERVFAIL), "servfail");
    CHECK_STR(as_dns_status_name(AS_DNS_TIMEOUT), "timeout");
    CHECK_STR(as_dns_status_name(AS_DNS_BADNAME), "badname");
    CHECK_STR(as_dns_status_name(AS_DNS_BUDGET), "budget");
    CHECK_STR(as_dns_status_name((enum as_dns_status)99), "unknown");
}

int main(void)
{
    /* tasks without plugins warn about async work begun outside a plugin */
    as_log_set_level(AS_LOG_ERR);
    base = event_base_new();
    test_status_names();
    test_pinning();
    test_budget();
    test_plugin_shares();
    test_chain_and_cancel();
    event_base_free(base);
    libevent_global_shutdown();
    return check_done();
}
