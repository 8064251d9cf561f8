/*
 * dns.c - see dns.h and docs/dns.md.
 *
 * Every lookup becomes a dns_query with a timer.  A query either waits for
 * libunbound (in the in-flight table, so identical lookups join it) or
 * already has its answer (cache hit, bad name, offline zone) and the timer
 * event is activated (query_arm): that is how answers are never delivered
 * from inside as_resolver_lookup().  The timer doubles as the per-query
 * deadline; when it fires without an answer the unbound query is
 * cancelled and the waiters get AS_DNS_TIMEOUT.
 *
 * libunbound may call back synchronously from inside ub_resolve_event()
 * (local data, its own cache): the callback then only stores the answer
 * and the submitting code arms the zero timer.
 *
 * Answers are immutable, refcounted and shared between the cache and the
 * queries delivering them.  The task layer (as_dns_query) deep-copies what
 * it receives into the task pool and pins it there.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <unbound.h>
#include <unbound-event.h>
#include "services/dns.h"
#include "util/log.h"
#include "util/pool.h"
#include "services/service.h"
#include "util/util.h"
#include "services/zone.h"

#define DNS_INFLIGHT_BUCKETS 256
#define DNS_MAX_CHAIN 16        /* CNAME chain length we follow in an answer */

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

const struct as_config_key as_dns_config_keys[] = {
    { "servers", AS_OPT_LIST, NULL,
      "DNS servers to forward queries to, as host or host:port ([v6]:port); "
      "unset: use resolv_conf" },
    { "resolv_conf", AS_OPT_STRING, NULL,
      "resolv.conf to take forwarders from when servers is unset "
      "(default /etc/resolv.conf)" },
    { "recursive", AS_OPT_BOOL, "no",
      "resolve iteratively from the root instead of forwarding" },
    { "zone_file", AS_OPT_STRING, NULL,
      "offline mode: answer every query from this RFC 1035 master file" },
    { "timeout", AS_OPT_DURATION, "2s", "deadline of one query" },
    { "max_queries", AS_OPT_INT, "128",
      "queries the plugins of one scan share, on top of their reserves "
      "(pinned answers are free); 0 = unlimited" },
    { "plugin_reserve", AS_OPT_INT, "8",
      "queries of each scan that each plugin has for itself, spent before the "
      "shared max_queries (a plugin may reserve more: DMARC does)" },
    { "cache_size", AS_OPT_INT, "10000", "answers kept in the cache; 0 disables it" },
    { "max_ttl", AS_OPT_DURATION, "1h", "cap on how long an answer is cached" },
    { "negative_ttl", AS_OPT_DURATION, "5m",
      "cap on how long NXDOMAIN/NODATA is cached" },
};
const size_t as_dns_config_nkeys = AS_ARRAY_LEN(as_dns_config_keys);

/* Defaults live once, in the schema above. */
static const char *dns_default(const char *key)
{
    for (size_t i = 0; i < as_dns_config_nkeys; i++)
        if (strcmp(as_dns_config_keys[i].key, key) == 0)
            return as_dns_config_keys[i].default_value;
    return NULL;
}

static double dns_default_duration(const char *key)
{
    double v = 0;
    as_parse_duration(dns_default(key), &v);
    return v;
}

static long long dns_default_int(const char *key)
{
    long long v = 0;
    as_parse_int(dns_default(key), &v);
    return v;
}

static uint32_t clamp_ttl(double secs)
{
    if (secs <= 0) return 0;
    if (secs > 0x7fffffff) return 0x7fffffff;
    return (uint32_t)secs;
}

void as_resolver_config_from(const struct as_config *cfg, struct as_resolver_config *rc)
{
    memset(rc, 0, sizeof *rc);
    const char *const *items;
    rc->nservers = as_config_list(cfg, "dns.servers", &items);
    rc->servers = items;
    rc->resolv_conf = as_config_str(cfg, "dns.resolv_conf", NULL);
    rc->recursive = as_config_bool(cfg, "dns.recursive", 0);
    rc->zone_file = as_config_str(cfg, "dns.zone_file", NULL);
    rc->timeout = as_config_duration(cfg, "dns.timeout", dns_default_duration("timeout"));
    /* ranges: as_dns_config_check() */
    long long v = as_config_int(cfg, "dns.max_queries", dns_default_int("max_queries"));
    rc->max_queries = v < 0 ? 0 : v > AS_DNS_MAX_QUERIES_MAX ? AS_DNS_MAX_QUERIES_MAX : (unsigned)v;
    v = as_config_int(cfg, "dns.plugin_reserve", dns_default_int("plugin_reserve"));
    rc->plugin_reserve = v < 0 ? 0 : v > AS_DNS_RESERVE_MAX ? AS_DNS_RESERVE_MAX : (unsigned)v;
    v = as_config_int(cfg, "dns.cache_size", dns_default_int("cache_size"));
    rc->cache_entries = v < 0 ? 0 : (size_t)v;
    rc->max_ttl = clamp_ttl(as_config_duration(cfg, "dns.max_ttl",
                                               dns_default_duration("max_ttl")));
    rc->negative_ttl = clamp_ttl(as_config_duration(cfg, "dns.negative_ttl",
                                                    dns_default_duration("negative_ttl")));
}

/* ------------------------------------------------------------------ */
/* Types                                                               */

struct dns_ans {                 /* an answer shared by cache and queries */
    int refs;
    struct as_pool *pool;
    struct as_dns_answer a;
};

struct dns_query {
    struct as_resolver *r;
    char name[AS_DNS_NAME_MAX + 1];  /* normalized; "" for a bad name */
    uint16_t type;
    int in_table;                /* joinable: in r->inflight */
    int ub_pending, ub_id;
    int submitting;              /* inside ub_resolve_event() */
    int delivering;
    struct event *timer;         /* deadline, or zero-timeout delivery */
    struct dns_ans *result;
    struct as_dns_req *waiters;
    struct dns_query *hnext;     /* in-flight chain */
    struct dns_query *prev, *next;  /* r->all */
};

struct as_dns_req {
    struct dns_query *q;
    as_resolver_cb cb;
    void *arg;
    int delivering;
    struct as_dns_req *prev, *next;
};

struct cache_ent {
    struct dns_ans *ans;         /* key: ans->a.name, ans->a.type */
    double expires;
    struct cache_ent *hnext;
    struct cache_ent *lru_prev, *lru_next;   /* head = most recent */
};

struct as_resolver {
    struct event_base *base;
    struct ub_ctx *ub;
    struct as_zone *zone;
    struct timeval timeout;
    unsigned max_queries;
    unsigned plugin_reserve;
    uint32_t max_ttl, negative_ttl;
    struct dns_query *inflight[DNS_INFLIGHT_BUCKETS];
    struct dns_query *all;
    struct cache_ent **cache;
    size_t cache_buckets, cache_n, cache_max;
    struct cache_ent *lru_head, *lru_tail;
    struct as_resolver_stats st;
};

int as_resolver_type_supported(uint16_t t)
{
    switch (t) {
    case AS_DNS_A: case AS_DNS_NS: case AS_DNS_CNAME: case AS_DNS_PTR:
    case AS_DNS_MX: case AS_DNS_TXT: case AS_DNS_AAAA: case AS_DNS_SPF:
        return 1;
    }
    return 0;
}

const char *as_dns_status_name(enum as_dns_status st)
{
    switch (st) {
    case AS_DNS_OK: return "ok";
    case AS_DNS_NXDOMAIN: return "nxdomain";
    case AS_DNS_NODATA: return "nodata";
    case AS_DNS_SERVFAIL: return "servfail";
    case AS_DNS_TIMEOUT: return "timeout";
    case AS_DNS_BADNAME: return "badname";
    case AS_DNS_BUDGET: return "budget";
    }
    return "unknown";
}

static uint32_t key_hash(const char *name, uint16_t type)
{
    uint32_t h = 2166136261u ^ type;
    for (; *name; name++) h = (h ^ (unsigned char)*name) * 16777619u;
    return h;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */

static struct dns_ans *ans_new(const char *name, uint16_t type, enum as_dns_status st)
{
    struct dns_ans *d = xcalloc(1, sizeof *d);
    d->refs = 1;
    d->pool = as_pool_new(1024);
    d->a.name = name ? as_pool_strdup(d->pool, name) : NULL;
    d->a.type = type;
    d->a.status = st;
    return d;
}

static void ans_unref(struct dns_ans *d)
{
    if (d && --d->refs == 0) {
        as_pool_destroy(d->pool);
        free(d);
    }
}

/* A domain name from the packet as text: lower case, no trailing dot. */
static int wire_name(ns_msg *msg, const unsigned char *p, char *out, size_t outlen)
{
    if (dn_expand(ns_msg_base(*msg), ns_msg_end(*msg), p, out, (int)outlen) < 0) return -1;
    size_t n = strlen(out);
    if (n && out[n - 1] == '.' && (n < 2 || out[n - 2] != '\\')) out[--n] = '\0';
    for (size_t i = 0; i < n; i++) out[i] = (char)as_tolower((unsigned char)out[i]);
    return 0;
}

static void owner_name(const ns_rr *rr, char *out, size_t outlen)
{
    as_strlcpy(out, ns_rr_name(*rr), outlen);
    size_t n = strlen(out);
    if (n && out[n - 1] == '.') out[--n] = '\0';
    for (size_t i = 0; i < n; i++) out[i] = (char)as_tolower((unsigned char)out[i]);
}

/* Parses the rdata of rr into out (strings in pool).  Returns 0 or -1 if
 * the record is malformed. */
static int wire_rdata(ns_msg *msg, const ns_rr *rr, struct as_pool *pool, struct as_dns_rr *out)
{
    const unsigned char *rd = ns_rr_rdata(*rr);
    size_t len = ns_rr_rdlen(*rr);
    char name[NS_MAXDNAME];
    out->type = ns_rr_type(*rr);
    out->ttl = ns_rr_ttl(*rr);
    switch (out->type) {
    case AS_DNS_A:
        if (len != 4) return -1;
        memcpy(&out->d.a, rd, 4);
        return 0;
    case AS_DNS_AAAA:
        if (len != 16) return -1;
        memcpy(&out->d.aaaa, rd, 16);
        return 0;
    case AS_DNS_MX:
        if (len < 3 || wire_name(msg, rd + 2, name, sizeof name) < 0) return -1;
        out->d.mx.pref = (uint16_t)((rd[0] << 8) | rd[1]);
        out->d.mx.host = as_pool_strdup(pool, name);
        return 0;
    case AS_DNS_CNAME: case AS_DNS_PTR: case AS_DNS_NS:
        if (len < 1 || wire_name(msg, rd, name, sizeof name) < 0) return -1;
        out->d.name = as_pool_strdup(pool, name);
        return 0;
    case AS_DNS_TXT: case AS_DNS_SPF: {
        size_t n = 0, total = 0;
        for (size_t off = 0; off < len; off += 1 + rd[off], n++)
            if (off + 1 + rd[off] > len) return -1;
        if (n == 0) return -1;
        struct as_str *s = as_pool_alloc(pool, n * sizeof *s);
        size_t k = 0;
        for (size_t off = 0; off < len; off += 1 + rd[off], k++) {
            s[k].len = rd[off];
            s[k].ptr = as_pool_strndup(pool, (const char *)rd + off + 1, rd[off]);
            total += rd[off];
        }
        char *joined = as_pool_alloc(pool, total + 1);
        for (size_t i = 0, o = 0; i < n; o += s[i].len, i++) memcpy(joined + o, s[i].ptr, s[i].len);
        out->d.txt.nstrings = n;
        out->d.txt.strings = s;
        out->d.txt.joined.ptr = joined;
        out->d.txt.joined.len = total;
        return 0;
    }
    }
    return -1;
}

/* RFC 2308 section 5: negative TTL = min(SOA TTL, SOA minimum). */
static uint32_t wire_negative_ttl(ns_msg *msg)
{
    int n = ns_msg_count(*msg, ns_s_ns);
    for (int i = 0; i < n; i++) {
        ns_rr rr;
        if (ns_parserr(msg, ns_s_ns, i, &rr) < 0) return 0;
        if (ns_rr_type(rr) != ns_t_soa) continue;
        const unsigned char *rd = ns_rr_rdata(rr), *end = rd + ns_rr_rdlen(rr);
        int l1 = dn_skipname(rd, end);
        if (l1 < 0) return 0;
        int l2 = dn_skipname(rd + l1, end);
        if (l2 < 0 || end - (rd + l1 + l2) != 20) return 0;
        uint32_t min = ns_get32(rd + l1 + l2 + 16), ttl = ns_rr_ttl(rr);
        return ttl < min ? ttl : min;
    }
    return 0;
}

static int chain_has(char chain[][NS_MAXDNAME], int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(chain[i], name) == 0) return 1;
    return 0;
}

/* Builds the answer for (name, type) from what libunbound returned.
 * Answer records count if their owner is the name or a CNAME target on
 * the chain starting at it (unbound follows CNAMEs and returns them all). */
static void wire_answer(struct as_dns_answer *a, struct as_pool *pool, const char *qname,
                        uint16_t qtype, int rcode, const void *pkt, int len)
{
    if (rcode == ns_r_nxdomain && (!pkt || len <= 0)) {
        a->status = AS_DNS_NXDOMAIN;
        return;
    }
    if ((rcode != ns_r_noerror && rcode != ns_r_nxdomain) || !pkt || len <= 0) return;
    ns_msg msg;
    if (ns_initparse(pkt, len, &msg) < 0) return;
    int prc = ns_msg_getflag(msg, ns_f_rcode);
    if (prc == ns_r_nxdomain) {
        a->status = AS_DNS_NXDOMAIN;
        a->ttl = wire_negative_ttl(&msg);
        return;
    }
    if (prc != ns_r_noerror) return;

    int an = ns_msg_count(msg, ns_s_an);
    char chain[DNS_MAX_CHAIN][NS_MAXDNAME];
    int nchain = 1, grew = 1;
    char owner[NS_MAXDNAME], target[NS_MAXDNAME];
    as_strlcpy(chain[0], qname, sizeof chain[0]);
    ns_rr rr;
    while (grew && qtype != AS_DNS_CNAME) {
        grew = 0;
        for (int i = 0; i < an && nchain < DNS_MAX_CHAIN; i++) {
            if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) return;
            if (ns_rr_type(rr) != ns_t_cname || ns_rr_class(rr) != ns_c_in) continue;
            owner_name(&rr, owner, sizeof owner);
            if (!chain_has(chain, nchain, owner)) continue;
            if (wire_name(&msg, ns_rr_rdata(rr), target, sizeof target) < 0) return;
            if (chain_has(chain, nchain, target)) continue;
            as_strlcpy(chain[nchain++], target, sizeof chain[0]);
            grew = 1;
        }
    }
    size_t count = 0;
    for (int i = 0; i < an; i++) {
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) return;
        if (ns_rr_type(rr) != qtype || ns_rr_class(rr) != ns_c_in) continue;
        owner_name(&rr, owner, sizeof owner);
        if (chain_has(chain, nchain, owner)) count++;
    }
    if (count == 0) {
        a->status = AS_DNS_NODATA;
        a->ttl = wire_negative_ttl(&msg);
        return;
    }
    struct as_dns_rr *rrs = as_pool_alloc(pool, count * sizeof *rrs);
    size_t k = 0;
    uint32_t ttl = UINT32_MAX;
    for (int i = 0; i < an && k < count; i++) {
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) return;
        if (ns_rr_type(rr) != qtype || ns_rr_class(rr) != ns_c_in) continue;
        owner_name(&rr, owner, sizeof owner);
        if (!chain_has(chain, nchain, owner)) continue;
        if (wire_rdata(&msg, &rr, pool, &rrs[k]) < 0) return;   /* malformed: SERVFAIL */
        if (rrs[k].ttl < ttl) ttl = rrs[k].ttl;
        k++;
    }
    a->rr = rrs;
    a->nrr = k;
    a->ttl = ttl;
    a->status = AS_DNS_OK;
}

static struct dns_ans *ans_from_wire(const char *qname, uint16_t qtype, int rcode,
                                     const void *pkt, int len)
{
    struct dns_ans *d = ans_new(qname, qtype, AS_DNS_SERVFAIL);
    wire_answer(&d->a, d->pool, qname, qtype, rcode, pkt, len);
    return d;
}

enum as_dns_status as_dns_answer_from_wire(const char *qname, uint16_t qtype, int rcode,
                                           const void *pkt, size_t len, struct as_pool *pool,
                                           struct as_dns_answer *out)
{
    memset(out, 0, sizeof *out);
    out->name = as_pool_strdup(pool, qname);
    out->type = qtype;
    out->status = AS_DNS_SERVFAIL;
    if (len > 65535) return out->status;
    wire_answer(out, pool, qname, qtype, rcode, pkt, (int)len);
    return out->status;
}

/* ------------------------------------------------------------------ */
/* Cache: hash table + LRU list, TTL-bounded                          */

static struct cache_ent **cache_slot(struct as_resolver *r, const char *name, uint16_t type)
{
    struct cache_ent **pe = &r->cache[key_hash(name, type) & (r->cache_buckets - 1)];
    for (; *pe; pe = &(*pe)->hnext)
        if ((*pe)->ans->a.type == type && strcmp((*pe)->ans->a.name, name) == 0) break;
    return pe;
}

static void lru_unlink(struct as_resolver *r, struct cache_ent *e)
{
    if (e->lru_prev) e->lru_prev->lru_next = e->lru_next;
    else r->lru_head = e->lru_next;
    if (e->lru_next) e->lru_next->lru_prev = e->lru_prev;
    else r->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(struct as_resolver *r, struct cache_ent *e)
{
    e->lru_next = r->lru_head;
    if (r->lru_head) r->lru_head->lru_prev = e;
    r->lru_head = e;
    if (!r->lru_tail) r->lru_tail = e;
}

static void cache_remove(struct as_resolver *r, struct cache_ent *e)
{
    struct cache_ent **pe = cache_slot(r, e->ans->a.name, e->ans->a.type);
    if (*pe == e) *pe = e->hnext;
    lru_unlink(r, e);
    ans_unref(e->ans);
    free(e);
    r->cache_n--;
}

static struct dns_ans *cache_get(struct as_resolver *r, const char *name, uint16_t type)
{
    if (!r->cache_max) return NULL;
    struct cache_ent *e = *cache_slot(r, name, type);
    if (!e) return NULL;
    if (as_now() >= e->expires) {
        cache_remove(r, e);
        return NULL;
    }
    lru_unlink(r, e);
    lru_push(r, e);
    e->ans->refs++;
    return e->ans;
}

static void cache_put(struct as_resolver *r, struct dns_ans *d)
{
    uint32_t life;
    switch (d->a.status) {
    case AS_DNS_OK: life = d->a.ttl < r->max_ttl ? d->a.ttl : r->max_ttl; break;
    case AS_DNS_NXDOMAIN:
    case AS_DNS_NODATA: life = d->a.ttl < r->negative_ttl ? d->a.ttl : r->negative_ttl; break;
    default: return;   /* failures are never cached */
    }
    if (!r->cache_max || life == 0) return;
    struct cache_ent **pe = cache_slot(r, d->a.name, d->a.type);
    if (*pe) cache_remove(r, *pe);
    while (r->cache_n >= r->cache_max) cache_remove(r, r->lru_tail);
    struct cache_ent *e = xcalloc(1, sizeof *e);
    e->ans = d;
    d->refs++;
    e->expires = as_now() + life;
    pe = cache_slot(r, d->a.name, d->a.type);   /* evictions may have changed the chain */
    e->hnext = *pe;
    *pe = e;
    lru_push(r, e);
    r->cache_n++;
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */

static void query_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct dns_query *query_new(struct as_resolver *r, const char *name, uint16_t type)
{
    struct dns_query *q = xcalloc(1, sizeof *q);
    q->r = r;
    as_strlcpy(q->name, name, sizeof q->name);
    q->type = type;
    q->timer = evtimer_new(r->base, query_timer_cb, q);
    if (!q->timer) as_oom();
    q->next = r->all;
    if (r->all) r->all->prev = q;
    r->all = q;
    return q;
}

static void table_remove(struct dns_query *q)
{
    struct dns_query **pq = &q->r->inflight[key_hash(q->name, q->type) % DNS_INFLIGHT_BUCKETS];
    for (; *pq; pq = &(*pq)->hnext)
        if (*pq == q) {
            *pq = q->hnext;
            break;
        }
    q->in_table = 0;
}

static void query_free(struct dns_query *q)
{
    struct as_resolver *r = q->r;
    if (q->ub_pending) ub_cancel(r->ub, q->ub_id);
    if (q->in_table) table_remove(q);
    if (q->prev) q->prev->next = q->next;
    else r->all = q->next;
    if (q->next) q->next->prev = q->prev;
    while (q->waiters) {
        struct as_dns_req *w = q->waiters;
        q->waiters = w->next;
        free(w);
    }
    event_free(q->timer);
    ans_unref(q->result);
    free(q);
}

/* An answer we already have (cache, zone, bad name) is delivered by
 * activating the timer event, not by a zero timeout: libevent runs events
 * activated while it runs callbacks in the same pass, so a chain of cached
 * lookups (SPF include, then its A records, then DMARC) completes without
 * an epoll_wait() per link, where a zero timer waited for the next pass
 * (about ten system calls a message; docs/performance.md, issue 21). */
static void query_arm(struct dns_query *q, const struct timeval *tv)
{
    if (tv) event_add(q->timer, tv);
    else event_active(q->timer, EV_TIMEOUT, 1);
}

static struct as_dns_req *query_attach(struct dns_query *q, as_resolver_cb cb, void *arg)
{
    struct as_dns_req *w = xcalloc(1, sizeof *w);
    w->q = q;
    w->cb = cb;
    w->arg = arg;
    w->next = q->waiters;
    if (q->waiters) q->waiters->prev = w;
    q->waiters = w;
    return w;
}

static void query_complete(struct dns_query *q)
{
    struct as_resolver *r = q->r;
    event_del(q->timer);
    if (q->in_table) {
        table_remove(q);
        cache_put(r, q->result);
    }
    q->delivering = 1;
    while (q->waiters) {
        struct as_dns_req *w = q->waiters;
        q->waiters = w->next;
        if (q->waiters) q->waiters->prev = NULL;
        w->delivering = 1;
        w->cb(&q->result->a, w->arg);
        free(w);
    }
    query_free(q);
}

static void query_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dns_query *q = arg;
    if (!q->result) {
        if (q->ub_pending) {
            ub_cancel(q->r->ub, q->ub_id);
            q->ub_pending = 0;
        }
        q->result = ans_new(q->name, q->type, AS_DNS_TIMEOUT);
        q->r->st.timeouts++;
    }
    query_complete(q);
}

static void query_ub_cb(void *mydata, int rcode, void *pkt, int len, int sec,
                        char *why_bogus, int ratelimited)
{
    (void)why_bogus;
    (void)ratelimited;
    struct dns_query *q = mydata;
    q->ub_pending = 0;
    if (sec == 1) rcode = ns_r_servfail;   /* bogus: only with a trust anchor configured */
    q->result = ans_from_wire(q->name, q->type, rcode, pkt, len);
    if (q->result->a.status == AS_DNS_SERVFAIL) q->r->st.failures++;
    if (q->submitting) return;   /* as_resolver_lookup arms the delivery */
    query_complete(q);
}

struct as_dns_req *as_resolver_lookup(struct as_resolver *r, const char *name,
                                      uint16_t type, as_resolver_cb cb, void *arg)
{
    if (!r || !name || !cb || !as_resolver_type_supported(type)) return NULL;
    r->st.queries++;
    char qn[AS_DNS_NAME_MAX + 1];
    struct dns_query *q;

    if (as_dns_name_normalize(name, strlen(name), qn) < 0) {
        r->st.badnames++;
        q = query_new(r, "", type);
        /* the name is untrusted and may be huge: keep a bounded copy */
        char shown[AS_DNS_NAME_MAX + 8];
        as_strlcpy(shown, name, sizeof shown);
        q->result = ans_new(shown, type, AS_DNS_BADNAME);
        query_arm(q, NULL);
        return query_attach(q, cb, arg);
    }

    if (r->zone) {
        q = query_new(r, qn, type);
        struct dns_ans *d = ans_new(NULL, type, AS_DNS_OK);
        enum as_dns_status st = as_zone_lookup(r->zone, qn, type, d->pool, &d->a);
        if (st == AS_DNS_TIMEOUT) {
            ans_unref(d);              /* the timer delivers TIMEOUT at the deadline */
            query_arm(q, &r->timeout);
        } else {
            if (st == AS_DNS_SERVFAIL) r->st.failures++;
            q->result = d;
            query_arm(q, NULL);
        }
        return query_attach(q, cb, arg);
    }

    struct dns_ans *hit = cache_get(r, qn, type);
    if (hit) {
        r->st.cache_hits++;
        q = query_new(r, qn, type);
        q->result = hit;
        query_arm(q, NULL);
        return query_attach(q, cb, arg);
    }

    unsigned h = key_hash(qn, type) % DNS_INFLIGHT_BUCKETS;
    for (q = r->inflight[h]; q; q = q->hnext)
        if (q->type == type && strcmp(q->name, qn) == 0) {
            r->st.dedup_hits++;
            return query_attach(q, cb, arg);
        }

    q = query_new(r, qn, type);
    q->in_table = 1;
    q->hnext = r->inflight[h];
    r->inflight[h] = q;
    r->st.sent++;
    q->submitting = 1;
    q->ub_pending = 1;
    int rc = ub_resolve_event(r->ub, qn, type, ns_c_in, q, query_ub_cb, &q->ub_id);
    q->submitting = 0;
    if (rc != 0) {
        q->ub_pending = 0;
        as_log(AS_LOG_WARN, "dns: cannot send query %s/%u: %s", qn, type, ub_strerror(rc));
        if (!q->result) {
            q->result = ans_new(qn, type, AS_DNS_SERVFAIL);
            r->st.failures++;
        }
    }
    query_arm(q, q->result ? NULL : &r->timeout);
    return query_attach(q, cb, arg);
}

void as_resolver_cancel(struct as_dns_req *w)
{
    if (!w || w->delivering) return;
    struct dns_query *q = w->q;
    if (w->prev) w->prev->next = w->next;
    else q->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
    if (!q->waiters && !q->delivering) query_free(q);
}

void as_resolver_budget(const struct as_resolver *r, unsigned *max_queries, unsigned *plugin_reserve)
{
    *max_queries = r->max_queries;
    *plugin_reserve = r->plugin_reserve;
}

void as_resolver_note_budget_refusal(struct as_resolver *r) { r->st.budget_exhausted++; }

void as_resolver_get_stats(const struct as_resolver *r, struct as_resolver_stats *st)
{
    *st = r->st;
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

/* "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353" -> "addr@port". */
static int server_to_fwd(const char *s, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end) return -1;
        hlen = (size_t)(end - s - 1);
        if (end[1] == ':') port = end + 2;
        else if (end[1]) return -1;
        s++;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && !strchr(colon + 1, ':')) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        } else {
            hlen = strlen(s);
        }
    }
    if (hlen == 0 || hlen >= sizeof host) return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) return -1;
    long p = 53;
    if (port) {
        char *end;
        p = strtol(port, &end, 10);
        if (!*port || *end || p < 1 || p > 65535) return -1;
    }
    snprintf(out, outlen, "%s@%ld", host, p);
    return 0;
}

/* libunbound answers these locally with NXDOMAIN (RFC 6761/6303 defaults).
 * When we forward, the configured server is the authority: a corporate DNS
 * may well have PTRs for 10/8, and test setups use the documentation
 * ranges and test./invalid.  localhost and onion stay local. */
static const char *const dns_forward_unblock[] = {
    "test.", "invalid.", "home.arpa.",
    "10.in-addr.arpa.", "168.192.in-addr.arpa.", "254.169.in-addr.arpa.",
    "16.172.in-addr.arpa.", "17.172.in-addr.arpa.", "18.172.in-addr.arpa.",
    "19.172.in-addr.arpa.", "20.172.in-addr.arpa.", "21.172.in-addr.arpa.",
    "22.172.in-addr.arpa.", "23.172.in-addr.arpa.", "24.172.in-addr.arpa.",
    "25.172.in-addr.arpa.", "26.172.in-addr.arpa.", "27.172.in-addr.arpa.",
    "28.172.in-addr.arpa.", "29.172.in-addr.arpa.", "30.172.in-addr.arpa.",
    "31.172.in-addr.arpa.",
    "2.0.192.in-addr.arpa.", "100.51.198.in-addr.arpa.", "113.0.203.in-addr.arpa.",
    "8.b.d.0.1.0.0.2.ip6.arpa.", "d.f.ip6.arpa.",
};

static int resolver_setup_unbound(struct as_resolver *r, const struct as_resolver_config *rc,
                                  char *err, size_t errlen)
{
    int rv;
    r->ub = ub_ctx_create_event(r->base);
    if (!r->ub) {
        snprintf(err, errlen, "dns: cannot create the libunbound context");
        return -1;
    }
    if (rc->recursive) return 0;   /* root hints are built in; keep the local zones */

    /* forwarders on 127.0.0.1 (tests, a local cache) are normal for us */
    if ((rv = ub_ctx_set_option(r->ub, "do-not-query-localhost:", "no")) != 0) {
        snprintf(err, errlen, "dns: do-not-query-localhost: %s", ub_strerror(rv));
        return -1;
    }
    if (rc->nservers) {
        for (size_t i = 0; i < rc->nservers; i++) {
            char fwd[128];
            if (server_to_fwd(rc->servers[i], fwd, sizeof fwd) < 0) {
                snprintf(err, errlen, "dns: bad server '%s': expected an IP address "
                         "with an optional :port", rc->servers[i]);
                return -1;
            }
            if ((rv = ub_ctx_set_fwd(r->ub, fwd)) != 0) {
                snprintf(err, errlen, "dns: server '%s': %s", rc->servers[i], ub_strerror(rv));
                return -1;
            }
        }
    } else if ((rv = ub_ctx_resolvconf(r->ub, rc->resolv_conf)) != 0) {
        snprintf(err, errlen, "dns: cannot use %s: %s",
                 rc->resolv_conf ? rc->resolv_conf : "/etc/resolv.conf", ub_strerror(rv));
        return -1;
    }
    /* ub_ctx_zone_remove finalizes the context: all options come first */
    for (size_t i = 0; i < AS_ARRAY_LEN(dns_forward_unblock); i++)
        if ((rv = ub_ctx_zone_remove(r->ub, dns_forward_unblock[i])) != 0) {
            snprintf(err, errlen, "dns: cannot remove local zone %s: %s",
                     dns_forward_unblock[i], ub_strerror(rv));
            return -1;
        }
    return 0;
}

/* Per-query deadline bounds, shared by the config check and the resolver. */
static int timeout_ok(double t) { return t > 0 && t <= 3600; }

/* Keys that only one way of resolving reads are refused in the others, so
 * that none is accepted and silently ignored: servers and resolv_conf are
 * the forwarders (servers wins), recursive drops the forwarders, and a
 * zone file answers everything from memory, with no forwarder and no
 * cache.  --dns-zone (a zone file from the command line) is exempt: it
 * deliberately takes a production config offline for one run. */
static int check_modes(const struct as_config *cfg, char *err, size_t errlen)
{
    const struct as_config_entry *zone = as_config_find(cfg, "dns.zone_file");
    const struct as_config_entry *servers = as_config_find(cfg, "dns.servers");
    const struct as_config_entry *resolv = as_config_find(cfg, "dns.resolv_conf");
    const struct as_config_entry *recursive = as_config_find(cfg, "dns.recursive");
    if (servers && as_config_list(cfg, "dns.servers", NULL) == 0) servers = NULL;
    if (recursive && !as_config_bool(cfg, "dns.recursive", 0)) recursive = NULL;
    char at[512];
    if (zone && *zone->value && zone->line > 0) {
        const struct as_config_entry *unused[] = {
            servers, resolv, recursive, as_config_find(cfg, "dns.cache_size"),
            as_config_find(cfg, "dns.max_ttl"), as_config_find(cfg, "dns.negative_ttl"),
        };
        for (size_t i = 0; i < AS_ARRAY_LEN(unused); i++)
            if (unused[i])
                return as_config_error(err, errlen, unused[i], "'%s' has no effect with "
                                       "dns.zone_file (%s), which answers every query from "
                                       "the file, with no forwarder and no cache: remove "
                                       "one of them", unused[i]->key,
                                       as_config_where(zone, at, sizeof at));
    }
    if (recursive && (servers || resolv)) {
        const struct as_config_entry *e = servers ? servers : resolv;
        return as_config_error(err, errlen, e, "'%s' has no effect with dns.recursive = yes "
                               "(%s), which uses no forwarders: remove one of them", e->key,
                               as_config_where(recursive, at, sizeof at));
    }
    if (servers && resolv)
        return as_config_error(err, errlen, resolv, "'dns.resolv_conf' has no effect when "
                               "dns.servers is set (%s): remove one of them",
                               as_config_where(servers, at, sizeof at));
    return 0;
}

int as_dns_config_check(const struct as_config *cfg, char *err, size_t errlen)
{
    const struct as_config_entry *e = as_config_find(cfg, "dns.timeout");
    double to;
    if (e && (as_parse_duration(e->value, &to) < 0 || !timeout_ok(to)))
        return as_config_error(err, errlen, e, "bad value '%s' for 'dns.timeout': expected a "
                               "duration above 0 and at most 1h", e->value);
    static const struct { const char *key; long long max; } counts[] = {
        { "dns.max_queries", AS_DNS_MAX_QUERIES_MAX },
        { "dns.plugin_reserve", AS_DNS_RESERVE_MAX },
        { "dns.cache_size", AS_DNS_CACHE_SIZE_MAX },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(counts); i++) {
        long long v;
        e = as_config_find(cfg, counts[i].key);
        if (e && (as_parse_int(e->value, &v) < 0 || v < 0 || v > counts[i].max))
            return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected "
                                   "0 to %lld", e->value, counts[i].key, counts[i].max);
    }
    if (check_modes(cfg, err, errlen) < 0) return -1;
    const char *const *servers;
    size_t n = as_config_list(cfg, "dns.servers", &servers);
    for (size_t i = 0; i < n; i++) {
        char fwd[128];
        if (server_to_fwd(servers[i], fwd, sizeof fwd) < 0)
            return as_config_error(err, errlen, as_config_find(cfg, "dns.servers"),
                                   "bad value '%s' in 'dns.servers': expected an IP address "
                                   "with an optional :port", servers[i]);
    }
    return 0;
}

struct as_resolver *as_resolver_new(struct event_base *base,
                                    const struct as_resolver_config *rc,
                                    char *err, size_t errlen)
{
    if (!timeout_ok(rc->timeout)) {
        snprintf(err, errlen, "dns: timeout must be between 0 and 1h, not %g", rc->timeout);
        return NULL;
    }
    struct as_resolver *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->timeout.tv_sec = (time_t)rc->timeout;
    r->timeout.tv_usec = (suseconds_t)((rc->timeout - (double)r->timeout.tv_sec) * 1e6);
    r->max_queries = rc->max_queries;
    r->plugin_reserve = rc->plugin_reserve;
    r->max_ttl = rc->max_ttl;
    r->negative_ttl = rc->negative_ttl;
    r->cache_max = rc->cache_entries;
    r->cache_buckets = 16;
    while (r->cache_buckets < r->cache_max && r->cache_buckets < (1u << 24)) r->cache_buckets *= 2;
    r->cache = xcalloc(r->cache_buckets, sizeof *r->cache);

    if (rc->zone_file) {
        r->zone = as_zone_load(rc->zone_file, NULL, err, errlen);
        if (!r->zone) {
            as_resolver_free(r);
            return NULL;
        }
        r->cache_max = 0;   /* the zone is in memory already */
        return r;
    }
    if (resolver_setup_unbound(r, rc, err, errlen) < 0) {
        as_resolver_free(r);
        return NULL;
    }
    return r;
}

void as_resolver_free(struct as_resolver *r)
{
    if (!r) return;
    while (r->all) query_free(r->all);
    while (r->lru_head) cache_remove(r, r->lru_head);
    free(r->cache);
    if (r->ub) ub_ctx_delete(r->ub);
    as_zone_free(r->zone);
    free(r);
}

/* ------------------------------------------------------------------ */
/* The DNS service (service.h)                                          */

static int dns_service_check(const struct as_config *cfg, char *err, size_t errlen)
{
    if (as_dns_config_check(cfg, err, errlen) < 0) return -1;
    /* Build a resolver once so zone files and servers are checked by the
     * master, not in every worker after fork. */
    struct event_base *base = event_base_new();
    if (!base) as_oom();
    struct as_resolver_config rc;
    as_resolver_config_from(cfg, &rc);
    struct as_resolver *r = as_resolver_new(base, &rc, err, errlen);
    int rv = r ? 0 : -1;
    as_resolver_free(r);
    event_base_free(base);
    return rv;
}

static void *dns_service_start(struct event_base *base, const struct as_config *cfg,
                               char *err, size_t errlen)
{
    struct as_resolver_config rc;
    as_resolver_config_from(cfg, &rc);
    return as_resolver_new(base, &rc, err, errlen);
}

static void dns_service_stop(void *state) { as_resolver_free(state); }

static const struct as_metric_def dns_metrics[] = {
    { "queries", "dns_queries_total", AS_METRIC_COUNTER, "DNS lookups the scans asked for." },
    { "cache_hits", "dns_cache_hits_total", AS_METRIC_COUNTER,
      "DNS lookups answered from the cache." },
    { "dedup_hits", "dns_dedup_hits_total", AS_METRIC_COUNTER,
      "DNS lookups that joined an identical query in flight." },
    { "sent", "dns_queries_sent_total", AS_METRIC_COUNTER,
      "DNS queries sent to the resolver." },
    { "timeouts", "dns_timeouts_total", AS_METRIC_COUNTER, "DNS queries that timed out." },
    { "failures", "dns_failures_total", AS_METRIC_COUNTER,
      "DNS queries answered SERVFAIL, REFUSED or malformed." },
    { "budget_exhausted", "dns_budget_exhausted_total", AS_METRIC_COUNTER,
      "DNS lookups refused by the per-scan query budget." },
};

static void dns_service_metrics(const void *state, uint64_t *v)
{
    struct as_resolver_stats ds;
    as_resolver_get_stats(state, &ds);
    uint64_t all[] = { ds.queries, ds.cache_hits, ds.dedup_hits, ds.sent, ds.timeouts,
                       ds.failures, ds.budget_exhausted };
    memcpy(v, all, sizeof all);
}

const struct as_service as_dns_service = {
    .name = "dns",
    .keys = as_dns_config_keys,
    .nkeys = AS_ARRAY_LEN(as_dns_config_keys),
    .check = dns_service_check,
    .start = dns_service_start,
    .stop = dns_service_stop,
    .metrics = dns_metrics,
    .nmetrics = AS_ARRAY_LEN(dns_metrics),
    .read_metrics = dns_service_metrics,
};
