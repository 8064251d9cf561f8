/*
 * dmarc_eval.h - DMARC evaluation for one Author Domain: policy discovery
 * (RFC 9989 4.10.1 Tree Walk, or RFC 7489 6.6.3 with the Public Suffix
 * List), Organizational Domains (RFC 9989 4.10.2 / RFC 7489 3.2),
 * Identifier Alignment, the applicable policy (p/sp/np, t=, pct=) and the
 * disposition.
 *
 * The engine never does I/O.  It reads DNS answers through `fetch`; when an
 * answer it needs is not there yet, fetch returns NULL, the engine records
 * the miss and reports `incomplete`.  The caller obtains the missing
 * answers and evaluates again: answers are pinned per scan, so every round
 * sees the same data and the rounds converge.  A walk stops at its first
 * miss, so the DNS sees the Tree Walk queries in RFC order.
 */
#ifndef DMARC_EVAL_H
#define DMARC_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include <libpsl.h>

#include "authscan/dkim.h"
#include "authscan/dmarc.h"
#include "authscan/plugin.h"
#include "authscan/spf.h"

#define DMARC_WALK_MAX 8        /* RFC 9989 4.10: at most 8 queries per walk */
#define DMARC_MAX_WALKS 24      /* distinct walks (author + identifiers) per evaluation */
#define DMARC_MAX_MISSES 32

typedef const struct as_dns_answer *(*dmarc_fetch_fn)(void *arg, const char *name,
                                                      uint16_t type);

struct dmarc_dkim_in {
    const char *domain;         /* d=, any case */
    enum as_dkim_res result;
};

struct dmarc_input {
    const char *author;                 /* Author Domain (A-labels, any case) */
    enum as_dmarc_discovery discovery;
    const psl_ctx_t *psl;               /* for AS_DMARC_DISCOVERY_PSL */
    const char *spf_domain;             /* SPF identity DMARC uses, or NULL */
    enum as_spf_res spf_result;
    const struct dmarc_dkim_in *dkim;
    size_t ndkim;
    int list_traffic;                   /* List-Id present and safeguard enabled */
    int sample;                         /* 0..99, compared with pct (RFC 7489 mode) */
};

/* One Tree Walk, kept for reporting and for the query-order tests. */
struct dmarc_walk {
    const char *start;
    size_t n;                           /* names queried so far */
    const char *names[DMARC_WALK_MAX];  /* the domains, in query order */
    int found[DMARC_WALK_MAX];          /* 0 none, 1 one record, 2 several */
    struct as_dmarc_record rec[DMARC_WALK_MAX];
    int complete;                       /* ran to its end (or a psd= stop) */
    int incomplete;                     /* stopped at a missing answer */
    int dns_error;                      /* stopped at SERVFAIL/timeout/budget */
    int budget;                         /* ... because the scan's DNS budget ran out */
    const char *org;                    /* the Organizational Domain, when complete */
};

struct dmarc_miss {
    const char *name;
    uint16_t type;
};

/* New fields must be reset at the top of dmarc_evaluate(). */
struct dmarc_outcome {
    int incomplete;                     /* evaluate again once misses are answered */
    struct dmarc_miss misses[DMARC_MAX_MISSES];
    size_t nmisses;
    struct dmarc_walk walks[DMARC_MAX_WALKS];
    size_t nwalks;
    struct as_dmarc_result res;         /* valid when !incomplete */
    int bad_policy;                     /* a record was found but is unusable */
};

/* Runs one evaluation round; everything allocated comes from `pool`. */
void dmarc_evaluate(struct as_pool *pool, const struct dmarc_input *in, dmarc_fetch_fn fetch,
                    void *fetch_arg, struct dmarc_outcome *out);

/* The walk that started at `start` in `out`, or NULL. */
const struct dmarc_walk *dmarc_outcome_walk(const struct dmarc_outcome *out, const char *start);

/* Organizational Domain by the Public Suffix List (RFC 7489 3.2): the
 * registrable domain, or the name itself when it is a public suffix. */
const char *dmarc_psl_org(struct as_pool *pool, const psl_ctx_t *psl, const char *domain);

/* Lower-cases and strips leading, trailing and doubled dots (OpenDMARC's
 * alignment cases); NULL when nothing is left. */
const char *dmarc_domain_clean(struct as_pool *pool, const char *d);

/* Strict/relaxed comparison helpers for the conformance tests. */
int dmarc_count_labels(const char *d);

#endif /* DMARC_EVAL_H */
