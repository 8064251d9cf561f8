/*
 * spf_eval.h - one check_host() evaluation with libspf2 over pinned DNS.
 *
 * libspf2 never does DNS itself here.  Its DNS layer (an SPF_dns_server_t
 * of ours) answers from a fetch callback that returns the answers the scan
 * already has, and records every (name, type) it did not have as a "miss".
 * An evaluation with misses is incomplete: the caller resolves the misses
 * (asynchronously, in the plugin) and evaluates again from scratch.  Since
 * answers are pinned per scan, each round sees the same data and the last
 * round is an ordinary, complete evaluation.
 *
 * Around libspf2 the layer also implements what libspf2 1.2.10 gets wrong
 * (see docs/spf.md for each case): record selection and validation with
 * spf_record.c, the 10-term and 2-void-lookup limits counted across
 * include/redirect, the MX limit, PTR truncation, CIDR /0, name
 * truncation, explanation expansion and the result mapping.
 *
 * One engine per worker; not reentrant (the layer keeps a pointer to the
 * evaluation in progress).
 */
#ifndef AS_SPF_EVAL_H
#define AS_SPF_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include "authscan/plugin.h"
#include "authscan/spf.h"
#include "spf_record.h"

#define SPF_MAX_MISSES 32

/* Returns the scan's answer for (name, type) or NULL if not fetched yet.
 * name is lower case without a trailing dot. */
typedef const struct as_dns_answer *(*spf_fetch_fn)(void *arg, const char *name, uint16_t type);
/* Called for every SPF record fetched and parsed (for prefetching). */
typedef void (*spf_seen_fn)(void *arg, const char *domain, const struct spf_record *rec);

struct spf_limits {
    int max_terms;          /* DNS-querying terms (RFC 7208 4.6.4): 10 */
    int max_void;           /* void lookups: 2 */
    int max_mx;             /* MX names per mx mechanism: 10 */
    int max_ptr;            /* PTR names looked at: 10 */
    size_t max_record_len;  /* longer SPF records are permerror */
};
#define SPF_LIMITS_DEFAULT { 10, 2, 10, 10, 2048 }

struct spf_query {
    int family;                      /* AF_INET or AF_INET6 (::ffff: mapped -> v4) */
    union { struct in_addr v4; struct in6_addr v6; } ip;
    const char *helo;                /* may be NULL */
    const char *sender;              /* MAIL FROM; NULL or "" -> postmaster@helo */
    int use_helo;                    /* check the HELO identity even if sender set */
    const struct spf_limits *lim;
    spf_fetch_fn fetch;
    void *fetch_arg;
    spf_seen_fn seen;                /* may be NULL */
    void *seen_arg;
};

struct spf_miss {
    char name[SPF_NAME_MAX + 1];
    uint16_t type;
};

/* New fields must be reset in spf_outcome_reset() (spf_eval.c). */
struct spf_outcome {
    int incomplete;                  /* misses were recorded: fetch and retry */
    size_t nmisses;
    struct spf_miss misses[SPF_MAX_MISSES];
    int checked;                     /* an identity domain was evaluated */
    enum as_spf_res result;
    char domain[SPF_NAME_MAX + 1];   /* identity domain */
    char sender[600];                /* local@domain */
    char mechanism[300];             /* "<q><term>" or "" */
    char reason[512];                /* temperror/permerror cause or "" (holds a 253-octet name) */
    char explanation[512];           /* fail: explanation or "" */
    int plus_all;
};

/* The SPF records among a TXT answer's strings (RFC 7208 4.5): how many in
 * *found, and the last of them (the record when *found is 1), or NULL. */
const struct as_str *spf_answer_record(const struct as_dns_answer *ans, size_t *found);

/* Empties an outcome without touching its arrays (about 10 KiB): they
 * are only read up to their counts, the strings from [0]. */
void spf_outcome_reset(struct spf_outcome *out);

struct spf_engine;

/* receiver: our host name for %{r} and Received-SPF comments.
 * default_exp: explanation when a failing record has no usable exp=
 * (a macro-string; NULL or "" for none). */
struct spf_engine *spf_engine_new(const char *receiver, const char *default_exp);
void spf_engine_free(struct spf_engine *e);

/* The PTR query name of an address: "4.3.2.1.in-addr.arpa" or the 32
 * nibbles + "ip6.arpa".  outsz >= 74. */
void spf_reverse_name(int family, const void *addr, char *out, size_t outsz);

/* Runs check_host() for the query's identity.  Always fills *out. */
void spf_engine_check(struct spf_engine *e, const struct spf_query *q, struct spf_outcome *out);

#endif
