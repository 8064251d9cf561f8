/*
 * history - per-sender history on Redis: has this From domain
 * authenticated from this source before?
 *
 * Per From domain, and per (From domain, source network), decayed counts
 * of DMARC/SPF/DKIM pass and fail with first and last seen, in two small
 * HASHes that share the hash tag {domain} (docs/redis.md).  The source
 * network is the client IP's IPv4 /24 or IPv6 /64: a sender's outbound
 * hosts usually share one, and it costs no DNS (the PTR's organizational
 * domain would cost a lookup per message, and a PTR is the sender's to
 * choose).
 *
 * scan        reads both hashes (HMGET of the fields it judges by), in parallel with the DNS work of
 *             the other filters: this plugin depends on none of them;
 * postfilter  with the DMARC result known, adds
 *               HISTORY_FIRST_SEEN        no message ever from this domain
 *               HISTORY_SPOOF_NEW_SOURCE  the domain nearly always passes
 *                                         DMARC, fails now, from a source
 *                                         never seen with it
 *               HISTORY_CLEAN_SOURCE      long clean history from this
 *                                         source, passes now (negative)
 *             nothing but FIRST_SEEN before the domain has
 *             history.min_observations DMARC results; nothing at all when
 *             Redis did not answer (fail open);
 * finish      after the reply, records this message from the final
 *             verdict: one EVALSHA (decay, add, refresh the TTL) on both
 *             keys, fire-and-forget; the service loads the script on every
 *             connection.  Mail we refused (reject, soft reject) is not
 *             recorded, and a DMARC failure counts against the domain only
 *             from a source the domain passed from, so a spoofer cannot
 *             wear down a domain's pass ratio.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <authscan/plugin.h>
#include <authscan/dkim.h>
#include <authscan/dmarc.h>
#include <authscan/spf.h>
#include "history_eval.h"

#define HIST_TASK_KEY "history.task"   /* private per-task state */

static const struct as_symbol_def symbols[] = {
    { "HISTORY_FIRST_SEEN", 0.5, "history", "First message ever seen from this From domain", 0 },
    { "HISTORY_SPOOF_NEW_SOURCE", 3.0, "history",
      "From domain nearly always passes DMARC, fails now from a source never seen with it", 0 },
    { "HISTORY_CLEAN_SOURCE", -1.0, "history",
      "Long clean DMARC history of this From domain from this source", 0 },
};

static const struct as_option_def options[] = {
    { "half_life", AS_OPT_DURATION, "30d", "evidence loses half its weight in this time" },
    { "ttl", AS_OPT_DURATION, "90d",
      "a sender's keys expire this long after its last message" },
    { "min_observations", AS_OPT_INT, "5",
      "DMARC results a domain needs before its history scores anything" },
    { "pass_ratio", AS_OPT_DOUBLE, "0.95",
      "share of DMARC passes that counts as \"nearly always passes\" and as clean" },
    { "clean_min", AS_OPT_INT, "10",
      "DMARC passes from one source for HISTORY_CLEAN_SOURCE" },
};

struct history {
    const struct as_plugin_ctx *ctx;
    int enabled;
    const char *update_sha;       /* EVALSHA of hist_update_script */
    struct hist_params p;
    long long ttl;
};

struct hist_task {
    const char *domain;
    char net[48];
    int have_net;
    int dom_ok, src_ok;           /* Redis answered */
    struct hist_counts dom, src;
};

static void say_off(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    as_log(AS_LOG_NOTICE, "history: redis.servers is not set: per-sender history is off");
}

static int hist_init(struct as_plugin_ctx *ctx, void **state)
{
    struct history *h = calloc(1, sizeof *h);
    if (!h) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    *state = h;
    h->ctx = ctx;
    h->p.half_life = as_plugin_opt_duration(ctx, "half_life");
    double ttl = as_plugin_opt_duration(ctx, "ttl");
    long long min_obs, clean_min;
    h->p.pass_ratio = as_plugin_opt_double(ctx, "pass_ratio");
    if (h->p.half_life < 3600 || h->p.half_life > 3650 * 86400.0)
        return as_plugin_opt_error(ctx, "half_life", "expected 1h to 3650d");
    if (ttl < 3600 || ttl > 3650 * 86400.0)
        return as_plugin_opt_error(ctx, "ttl", "expected 1h to 3650d");
    if (!(h->p.pass_ratio > 0 && h->p.pass_ratio <= 1))
        return as_plugin_opt_error(ctx, "pass_ratio", "expected a number above 0 and at "
                                   "most 1");
    if (as_plugin_opt_int_range(ctx, "min_observations", 1, 1000000, &min_obs) < 0 ||
        as_plugin_opt_int_range(ctx, "clean_min", 1, 1000000, &clean_min) < 0)
        return -1;
    h->ttl = (long long)ttl;
    h->p.min_observations = (double)min_obs;
    h->p.clean_min = (double)clean_min;
    h->enabled = as_plugin_redis_enabled(ctx);
    if (h->enabled && !(h->update_sha = as_plugin_redis_script(ctx, hist_update_script))) {
        as_plugin_set_error(ctx, "cannot register the update script with Redis");
        return -1;
    }
    /* Said once per worker when its loop starts: the configuration check
     * runs init() too, but never the loop, and must print only errors. */
    static const struct timeval now = { 0, 0 };
    if (!h->enabled &&
        event_base_once(as_plugin_event_base(ctx), -1, EV_TIMEOUT, say_off, NULL, &now) < 0)
        say_off(-1, 0, NULL);
    return 0;
}

static void hist_fini(void *state) { free(state); }

/* HMGET's array into counts; 0 when it is what we asked for. */
static int read_counts(enum as_redis_status st, const struct as_redis_reply *r,
                       struct hist_counts *c)
{
    if (st != AS_REDIS_OK || !r || r->type != AS_REDIS_REPLY_ARRAY ||
        r->nelem != HIST_READ_NFIELDS)
        return -1;
    const char *values[HIST_READ_NFIELDS];
    for (size_t i = 0; i < HIST_READ_NFIELDS; i++)
        values[i] = r->elem[i].type == AS_REDIS_REPLY_STRING ? r->elem[i].str.ptr : NULL;
    hist_parse(c, values);
    return 0;
}

static void dom_cb(struct as_task *t, enum as_redis_status st, const struct as_redis_reply *r,
                   void *arg)
{
    struct hist_task *ht = arg;
    ht->dom_ok = read_counts(st, r, &ht->dom) == 0;
    if (!ht->dom_ok)
        as_task_log(t, AS_LOG_DEBUG, "history: no domain history (redis: %s)",
                    st == AS_REDIS_TIMEOUT ? "timeout" : st == AS_REDIS_OK ? "bad reply"
                                                                           : "unavailable");
}

static void src_cb(struct as_task *t, enum as_redis_status st, const struct as_redis_reply *r,
                   void *arg)
{
    (void)t;
    struct hist_task *ht = arg;
    ht->src_ok = read_counts(st, r, &ht->src) == 0;
}

static int hmget(struct as_task *t, const char *key, as_redis_cb cb, struct hist_task *ht)
{
    const char *argv[1 + 1 + HIST_READ_NFIELDS] = { "HMGET", key };
    for (size_t i = 0; i < HIST_READ_NFIELDS; i++) argv[2 + i] = hist_read_fields[i];
    return as_redis_command(t, cb, ht, 2 + HIST_READ_NFIELDS, argv, NULL);
}

static const char *source_key(struct as_task *t, const struct history *h,
                              const struct hist_task *ht)
{
    char name[64];
    snprintf(name, sizeof name, "s:%s", ht->net);
    return as_redis_key(as_task_pool(t), h->ctx, ht->domain, name);
}

static void hist_scan(struct as_task *t, void *state)
{
    const struct history *h = state;
    if (!h->enabled) return;
    const struct as_from *from = as_task_from(t);
    if (from->status != AS_FROM_OK || !from->domain) return;
    struct hist_task *ht = as_pool_alloc(as_task_pool(t), sizeof *ht);
    ht->domain = from->domain;
    const struct as_envelope *env = as_task_envelope(t);
    ht->have_net = hist_source_net(env->family, &env->addr, ht->net, sizeof ht->net) == 0;
    if (as_task_set_result(t, HIST_TASK_KEY, ht) < 0) return;
    const char *dkey = as_redis_key(as_task_pool(t), h->ctx, ht->domain, "d");
    if (!dkey || hmget(t, dkey, dom_cb, ht) < 0) return;   /* Redis down: fail open */
    if (ht->have_net) {
        const char *skey = source_key(t, h, ht);
        if (skey) hmget(t, skey, src_cb, ht);
    }
}

static enum hist_auth dmarc_auth(const struct as_task *t)
{
    const struct as_dmarc_result *d = as_task_get_result(t, AS_DMARC_RESULT_KEY);
    if (!d || d->version < 1) return HIST_NONE;
    return d->result == AS_DMARC_PASS ? HIST_PASS : d->result == AS_DMARC_FAIL ? HIST_FAIL
                                                                                : HIST_NONE;
}

static void hist_postfilter(struct as_task *t, void *state)
{
    const struct history *h = state;
    const struct hist_task *ht = as_task_get_result(t, HIST_TASK_KEY);
    if (!h->enabled || !ht || !ht->dom_ok) return;
    double now = (double)time(NULL);
    struct hist_verdict v;
    /* An unanswered source read is not an unseen source. */
    int src_known = !ht->have_net || ht->src_ok;
    hist_evaluate(&h->p, &ht->dom, ht->have_net && ht->src_ok ? &ht->src : NULL,
                  dmarc_auth(t), now, &v);
    if (v.first_seen) as_task_add_symbol(t, "HISTORY_FIRST_SEEN", 1.0, ht->domain, NULL);
    if (!src_known || !ht->have_net) return;
    char a[64], b[64];
    if (v.spoof_new_source) {
        snprintf(a, sizeof a, "net=%s", ht->net);
        snprintf(b, sizeof b, "pass=%.2f/%.1f", v.domain_ratio, v.domain_results);
        as_task_add_symbol(t, "HISTORY_SPOOF_NEW_SOURCE", 1.0, ht->domain, a, b, NULL);
    }
    if (v.clean_source) {
        snprintf(a, sizeof a, "net=%s", ht->net);
        snprintf(b, sizeof b, "passes=%.1f", v.source_passes);
        as_task_add_symbol(t, "HISTORY_CLEAN_SOURCE", 1.0, ht->domain, a, b, NULL);
    }
}

static void hist_finish(struct as_task *t, void *state)
{
    const struct history *h = state;
    if (!h->enabled) return;
    const struct as_from *from = as_task_from(t);
    if (from->status != AS_FROM_OK || !from->domain) return;
    if (as_task_action(t) >= AS_ACTION_SOFT_REJECT) return;   /* refused: not recorded */

    int inc[7] = { 1, 0, 0, 0, 0, 0, 0 };   /* n dp df sp sf kp kf */
    enum hist_auth d = dmarc_auth(t);
    inc[1] = d == HIST_PASS;
    inc[2] = d == HIST_FAIL;
    const struct as_spf_result *spf = as_task_get_result(t, AS_SPF_RESULT_KEY);
    if (spf && spf->version >= 1 && spf->dmarc && !spf->skipped) {
        inc[3] = spf->dmarc->result == AS_SPF_PASS;
        inc[4] = spf->dmarc->result == AS_SPF_FAIL || spf->dmarc->result == AS_SPF_SOFTFAIL;
    }
    const struct as_dkim_result *dk = as_task_get_result(t, AS_DKIM_RESULT_KEY);
    if (dk && dk->version >= 1 && dk->nsigs) {
        int pass = 0;
        for (size_t i = 0; i < dk->nsigs; i++) pass |= dk->sigs[i].result == AS_DKIM_PASS;
        inc[5] = pass;
        inc[6] = !pass;
    }

    /* A DMARC failure counts against the domain only from a source it has
     * passed from (a broken forwarder, a misconfigured host of its own).
     * From anywhere else it is recorded for that source alone: else every
     * spoof a p=none domain lets in would wear down its pass ratio until
     * HISTORY_SPOOF_NEW_SOURCE no longer fires. */
    int dom_inc[7];
    memcpy(dom_inc, inc, sizeof dom_inc);
    const struct hist_task *ht = as_task_get_result(t, HIST_TASK_KEY);
    if (d == HIST_FAIL && !(ht && ht->src_ok && ht->src.dp > 0)) dom_inc[2] = 0;

    struct as_pool *pool = as_task_pool(t);
    const char *argv[3 + 2 + 3 + 7 + 7];
    size_t argc = 0;
    argv[argc++] = "EVALSHA";   /* every connection has loaded it */
    argv[argc++] = h->update_sha;
    const struct as_envelope *env = as_task_envelope(t);
    struct hist_task tmp = { .domain = from->domain };
    tmp.have_net = hist_source_net(env->family, &env->addr, tmp.net, sizeof tmp.net) == 0;
    const char *dkey = as_redis_key(pool, h->ctx, from->domain, "d");
    const char *skey = tmp.have_net ? source_key(t, h, &tmp) : NULL;
    if (!dkey) return;
    argv[argc++] = skey ? "2" : "1";
    argv[argc++] = dkey;
    if (skey) argv[argc++] = skey;
    argv[argc++] = as_pool_printf(pool, "%lld", (long long)time(NULL));
    argv[argc++] = as_pool_printf(pool, "%.0f", h->p.half_life);
    argv[argc++] = as_pool_printf(pool, "%lld", h->ttl);
    for (size_t i = 0; i < 7; i++) argv[argc++] = dom_inc[i] ? "1" : "0";
    for (size_t i = 0; skey && i < 7; i++) argv[argc++] = inc[i] ? "1" : "0";
    /* -1: Redis down and the queue full; /stat counts the dropped write */
    (void)as_redis_send(h->ctx, argc, argv, NULL);
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "history",
    .version = "1.0",
    .description = "Per-sender authentication history on Redis",
    .symbols = symbols,
    .nsymbols = sizeof symbols / sizeof symbols[0],
    .options = options,
    .noptions = sizeof options / sizeof options[0],
    .init = hist_init,
    .scan = hist_scan,
    .fini = hist_fini,
    .postfilter = hist_postfilter,
    .finish = hist_finish,
};
