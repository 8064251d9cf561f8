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
 *             keys, adding the source to the domain's index {D}sx (the
 *             controller's list of its sources), fire-and-forget; the service loads the script on every
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
    { "cache_ttl", AS_OPT_DURATION, "10s",
      "how long a worker reuses a hash it read (its own writes update it); 0 disables" },
    { "cache_size", AS_OPT_INT, "4096", "hashes a worker keeps (direct-mapped)" },
};

/* One cached hash.  Direct-mapped by key: a collision replaces. */
struct hist_slot {
    char *key;
    struct hist_counts c;
    double expires;               /* monotonic */
};

struct history {
    const struct as_plugin_ctx *ctx;
    int enabled;
    const char *update_sha;       /* EVALSHA of hist_update_script */
    struct hist_params p;
    long long ttl;
    double cache_ttl;
    struct hist_slot *cache;      /* NULL: no cache */
    size_t cache_size;
};

/* The per-worker cache: most mail comes from few senders, and a hash read
 * a moment ago is as good as a new read for evidence that decays over
 * days.  It saves the Redis round trip (a write() and a read(), and
 * waking Redis) for every repeat sender within cache_ttl; the worker's
 * own writes update the entries (hist_apply), other workers' writes are
 * seen when an entry expires. */
static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct hist_slot *cache_slot(const struct history *h, const char *key)
{
    if (!h->cache) return NULL;
    uint64_t x = 1469598103934665603ULL;   /* FNV-1a */
    for (const char *p = key; *p; p++) x = (x ^ (unsigned char)*p) * 1099511628211ULL;
    return &h->cache[x % h->cache_size];
}

static int cache_get(const struct history *h, const char *key, struct hist_counts *out)
{
    struct hist_slot *s = cache_slot(h, key);
    if (!s || !s->key || strcmp(s->key, key) != 0 || mono_now() >= s->expires) return 0;
    *out = s->c;
    return 1;
}

static void cache_put(const struct history *h, const char *key, const struct hist_counts *c)
{
    struct hist_slot *s = cache_slot(h, key);
    if (!s) return;
    if (!s->key || strcmp(s->key, key) != 0) {
        char *k = strdup(key);
        if (!k) return;
        free(s->key);
        s->key = k;
    }
    s->c = *c;
    s->expires = mono_now() + h->cache_ttl;
}

/* The worker's own write, applied to a cached entry that is still fresh. */
static void cache_apply(const struct history *h, const char *key, const int inc[7], double now)
{
    struct hist_slot *s = cache_slot(h, key);
    if (!s || !s->key || strcmp(s->key, key) != 0 || mono_now() >= s->expires) return;
    hist_apply(&s->c, inc, now, h->p.half_life);
}

struct hist_task {
    const char *domain;
    char net[48];
    int have_net;
    const char *dkey, *skey;      /* skey NULL without a source network */
    int dom_ok, src_ok;           /* read (Redis answered, or the cache) */
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
    long long cache_size;
    h->cache_ttl = as_plugin_opt_duration(ctx, "cache_ttl");
    if (h->cache_ttl > 3600)
        return as_plugin_opt_error(ctx, "cache_ttl", "expected 0 to 1h");
    if (as_plugin_opt_int_range(ctx, "cache_size", 1, 1000000, &cache_size) < 0) return -1;
    h->cache_size = (size_t)cache_size;
    h->ttl = (long long)ttl;
    h->p.min_observations = (double)min_obs;
    h->p.clean_min = (double)clean_min;
    h->enabled = as_plugin_redis_enabled(ctx);
    if (h->enabled && !(h->update_sha = as_plugin_redis_script(ctx, hist_update_script))) {
        as_plugin_set_error(ctx, "cannot register the update script with Redis");
        return -1;
    }
    if (h->enabled && h->cache_ttl > 0 &&
        !(h->cache = calloc(h->cache_size, sizeof *h->cache))) {
        as_plugin_set_error(ctx, "out of memory");
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

static void hist_fini(void *state)
{
    struct history *h = state;
    if (!h) return;
    for (size_t i = 0; h->cache && i < h->cache_size; i++) free(h->cache[i].key);
    free(h->cache);
    free(h);
}

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

/* One HMGET: which hash, and where its counts go. */
struct hist_read {
    const struct history *h;
    const char *key;
    struct hist_counts *counts;
    int *ok;
};

static void read_cb(struct as_task *t, enum as_redis_status st, const struct as_redis_reply *r,
                    void *arg)
{
    struct hist_read *rd = arg;
    *rd->ok = read_counts(st, r, rd->counts) == 0;
    if (*rd->ok) cache_put(rd->h, rd->key, rd->counts);
    else
        as_task_log(t, AS_LOG_DEBUG, "history: %s not read (redis: %s)", rd->key,
                    st == AS_REDIS_TIMEOUT ? "timeout" : st == AS_REDIS_OK ? "bad reply"
                                                                           : "unavailable");
}

/* From the cache, or an HMGET of the fields hist_evaluate() uses.  Returns
 * -1 when Redis cannot be asked (off, down): fail open. */
static int hist_read(struct as_task *t, const struct history *h, const char *key,
                     struct hist_counts *counts, int *ok)
{
    if (cache_get(h, key, counts)) {
        *ok = 1;
        return 0;
    }
    struct hist_read *rd = as_pool_alloc(as_task_pool(t), sizeof *rd);
    rd->h = h;
    rd->key = key;
    rd->counts = counts;
    rd->ok = ok;
    const char *argv[1 + 1 + HIST_READ_NFIELDS] = { "HMGET", key };
    for (size_t i = 0; i < HIST_READ_NFIELDS; i++) argv[2 + i] = hist_read_fields[i];
    return as_redis_command(t, read_cb, rd, 2 + HIST_READ_NFIELDS, argv, NULL);
}

/* The task's sender: From domain, source network, both keys.  NULL when
 * the message has no usable From domain. */
static struct hist_task *sender_of(struct as_task *t, const struct history *h)
{
    const struct as_from *from = as_task_from(t);
    if (from->status != AS_FROM_OK || !from->domain) return NULL;
    struct as_pool *pool = as_task_pool(t);
    struct hist_task *ht = as_pool_alloc(pool, sizeof *ht);
    ht->domain = from->domain;
    const struct as_envelope *env = as_task_envelope(t);
    ht->have_net = hist_source_net(env->family, &env->addr, ht->net, sizeof ht->net) == 0;
    ht->dkey = as_redis_key(pool, h->ctx, ht->domain, "d");
    if (!ht->dkey) return NULL;
    if (ht->have_net) {
        char name[64];
        snprintf(name, sizeof name, "s:%s", ht->net);
        ht->skey = as_redis_key(pool, h->ctx, ht->domain, name);
        if (!ht->skey) ht->have_net = 0;
    }
    return ht;
}

static void hist_scan(struct as_task *t, void *state)
{
    const struct history *h = state;
    if (!h->enabled) return;
    struct hist_task *ht = sender_of(t, h);
    if (!ht || as_task_set_result(t, HIST_TASK_KEY, ht) < 0) return;
    if (hist_read(t, h, ht->dkey, &ht->dom, &ht->dom_ok) < 0) return;   /* fail open */
    if (ht->have_net) hist_read(t, h, ht->skey, &ht->src, &ht->src_ok);
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
    if (as_task_action(t) >= AS_ACTION_SOFT_REJECT) return;   /* refused: not recorded */
    /* the scan stage's sender, or (a settings profile skipped it) a new one */
    const struct hist_task *ht = as_task_get_result(t, HIST_TASK_KEY);
    if (!ht && !(ht = sender_of(t, h))) return;

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
    if (d == HIST_FAIL && !(ht->src_ok && ht->src.dp > 0)) dom_inc[2] = 0;

    struct as_pool *pool = as_task_pool(t);
    double now = (double)time(NULL);
    /* {domain}sx, the domain's source networks scored by their last write
     * (the newest 1,000 kept): the controller lists a domain's sources from
     * it instead of scanning the keyspace.  A sorted set, because Redis
     * 7.0 keeps a small one as a listpack (about 60 bytes with one
     * network), where a set of strings is a hash table (200 bytes): that
     * made a tracked pair cost 608 bytes of used_memory, over the 512 of
     * docs/redis.md.  (The set was {domain}si; left to expire.) */
    const char *ikey = ht->skey ? as_redis_key(pool, h->ctx, ht->domain, "sx") : NULL;
    const char *argv[3 + 3 + 3 + 7 + 7 + 1];
    size_t argc = 0;
    argv[argc++] = "EVALSHA";   /* every connection has loaded it */
    argv[argc++] = h->update_sha;
    argv[argc++] = !ht->skey ? "1" : ikey ? "3" : "2";
    argv[argc++] = ht->dkey;
    if (ht->skey) argv[argc++] = ht->skey;
    if (ikey) argv[argc++] = ikey;
    argv[argc++] = as_pool_printf(pool, "%.0f", now);
    argv[argc++] = as_pool_printf(pool, "%.0f", h->p.half_life);
    argv[argc++] = as_pool_printf(pool, "%lld", h->ttl);
    for (size_t i = 0; i < 7; i++) argv[argc++] = dom_inc[i] ? "1" : "0";
    for (size_t i = 0; ht->skey && i < 7; i++) argv[argc++] = inc[i] ? "1" : "0";
    if (ikey) argv[argc++] = ht->net;
    /* -1: Redis down and the queue full; /stat counts the dropped write */
    (void)as_redis_send(h->ctx, argc, argv, NULL);
    cache_apply(h, ht->dkey, dom_inc, now);
    if (ht->skey) cache_apply(h, ht->skey, inc, now);
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
