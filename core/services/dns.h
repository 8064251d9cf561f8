/*
 * dns.h - the worker's asynchronous resolver service.
 *
 * One as_resolver per worker process, running on the worker's event_base.
 * Engine: libunbound in event mode (ub_ctx_create_event) forwarding to the
 * configured servers, to /etc/resolv.conf, or recursing; or, in offline
 * mode, an RFC 1035 master file loaded into memory (see zone.h).  Plugins
 * never see this header: they call as_dns_query() from authscan/plugin.h,
 * which (scan/task_dns.c) adds what a scan needs on top of the resolver:
 *   - pinning: the first answer a task gets for (name, type) is copied into
 *     the task pool and every later query of the task returns that copy;
 *   - a per-task query budget (AS_DNS_BUDGET once exhausted), accounted per
 *     plugin: each plugin spends its own reserve first (dns.plugin_reserve,
 *     or more with as_plugin_dns_reserve()), then the queries the plugins
 *     of the task share (dns.max_queries);
 *   - cancellation when the task ends (the task's async op cancel hook).
 * The resolver itself provides:
 *   - our own per-query deadline (libunbound alone can take 17 s);
 *   - de-duplication of identical in-flight queries across tasks;
 *   - a bounded cache keyed by (name, type) honouring TTLs, with negative
 *     caching (NXDOMAIN/NODATA for the SOA minimum, bounded by config);
 *   - name validation before anything is sent (AS_DNS_BADNAME).
 *
 * Ownership: answers passed to as_resolver_cb belong to the resolver and
 * are valid only during the callback.  A request handle is valid until its
 * callback returns or it is cancelled; cancelling it from inside its own
 * callback is a harmless no-op.  as_resolver_free() drops requests still
 * pending without calling them (the engine frees tasks first); it must not
 * be called from inside a resolver callback.
 *
 * Configuration keys, defaults and status meanings: docs/dns.md.
 */
#ifndef AS_DNS_H
#define AS_DNS_H

#include <stddef.h>
#include <stdint.h>
#include "authscan/plugin.h"
#include "util/config.h"

struct event_base;
struct as_resolver;
struct as_dns_req;

/* Upper bound of dns.max_queries, dns.plugin_reserve and a reserve a
 * plugin asks for. */
#define AS_DNS_RESERVE_MAX 100000u
#define AS_DNS_MAX_QUERIES_MAX 1000000u
/* Upper bound of dns.cache_size. */
#define AS_DNS_CACHE_SIZE_MAX 10000000u

struct as_resolver_config {
    const char *const *servers;   /* "host:port" or "host" (port 53); may be empty */
    size_t nservers;
    const char *resolv_conf;      /* used when no servers and not recursive */
    int recursive;                /* full recursion instead of forwarding */
    const char *zone_file;        /* offline mode: answer only from this file */
    double timeout;               /* per-query deadline, seconds */
    unsigned max_queries;         /* per-task budget shared by all plugins */
    unsigned plugin_reserve;      /* per-task queries each plugin has for itself */
    size_t cache_entries;         /* 0 disables the cache */
    uint32_t max_ttl;             /* cap on cached TTLs */
    uint32_t negative_ttl;        /* cap on negative caching */
};

/* Config keys under "dns." (relative to that prefix), for as_config_check(). */
extern const struct as_config_key as_dns_config_keys[];
extern const size_t as_dns_config_nkeys;
/* Checks what the schema cannot (timeout range, server syntax), naming
 * the file and line of the offending entry.  Returns 0 or -1 with err. */
int as_dns_config_check(const struct as_config *cfg, char *err, size_t errlen);
/* Fills rc from the validated config (strings owned by cfg). */
void as_resolver_config_from(const struct as_config *cfg, struct as_resolver_config *rc);

struct as_resolver *as_resolver_new(struct event_base *base,
                                    const struct as_resolver_config *rc,
                                    char *err, size_t errlen);
void as_resolver_free(struct as_resolver *r);

typedef void (*as_resolver_cb)(const struct as_dns_answer *ans, void *arg);
/* Task-independent lookup.  cb is never called from inside this function.
 * Supported types: A, NS, CNAME, PTR, MX, TXT, AAAA, SPF.  A bad name is
 * an answer (AS_DNS_BADNAME), not a failure.  Returns a handle for
 * as_resolver_cancel(), or NULL for an unsupported type or NULL argument. */
struct as_dns_req *as_resolver_lookup(struct as_resolver *r, const char *name,
                                      uint16_t type, as_resolver_cb cb, void *arg);
/* cb will not be called after this. */
void as_resolver_cancel(struct as_dns_req *req);

struct as_resolver_stats {
    uint64_t queries;        /* lookups asked for */
    uint64_t cache_hits;
    uint64_t dedup_hits;     /* joined an identical in-flight query */
    uint64_t sent;           /* queries that went to the engine */
    uint64_t timeouts;
    uint64_t failures;       /* SERVFAIL/REFUSED/malformed */
    uint64_t badnames;
    uint64_t budget_exhausted;
};
/* 1 if as_resolver_lookup() handles this query type. */
int as_resolver_type_supported(uint16_t type);

/* The per-scan query budget (dns.max_queries, 0 = none) and the part of it
 * reserved for each plugin (dns.plugin_reserve).  The resolver does not
 * enforce them: the task side (scan/task_dns.c) does, and reports each
 * query it refused so /stat counts it. */
void as_resolver_budget(const struct as_resolver *r, unsigned *max_queries,
                        unsigned *plugin_reserve);
void as_resolver_note_budget_refusal(struct as_resolver *r);

void as_resolver_get_stats(const struct as_resolver *r, struct as_resolver_stats *st);

/* Reads a response packet as libunbound hands it over (rcode, wire data)
 * into the answer for (qname, qtype): the code every online answer goes
 * through, exposed for the fuzz target (tests/fuzz/fuzz_dns.c).  qname is
 * normalized (as_dns_name_normalize).  A malformed packet or record is
 * AS_DNS_SERVFAIL.  Name and records are allocated from pool.  Returns
 * out->status. */
enum as_dns_status as_dns_answer_from_wire(const char *qname, uint16_t qtype, int rcode,
                                           const void *pkt, size_t len, struct as_pool *pool,
                                           struct as_dns_answer *out);

/* The resolver as a per-worker service (service.h): config keys under
 * "dns.", one resolver per engine, the task slot that holds pinned answers
 * and the budget, and the "dns" member of /stat. */
struct as_service;
extern const struct as_service as_dns_service;

/* Name validation and normalization shared with the zone loader:
 * as_dns_name_normalize() in zone.h. */

#endif
