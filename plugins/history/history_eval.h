/*
 * history_eval.h - what the history plugin concludes from the counters it
 * keeps in Redis (see docs/redis.md for the keys), without any I/O, so the
 * unit tests run exactly the plugin's decisions.
 *
 * A counter set (struct hist_counts) holds exponentially decayed counts:
 * every write first multiplies the stored values by 0.5^(age/half_life)
 * (age: time since the last write), then adds this message.  Reading
 * applies the same factor up to now, so evidence loses half its weight per
 * half-life whether or not the sender wrote since.
 */
#ifndef HISTORY_EVAL_H
#define HISTORY_EVAL_H

#include <stddef.h>

/* One HASH: a From domain, or a (From domain, source network) pair. */
struct hist_counts {
    int present;            /* the key exists */
    double n;               /* messages */
    double dp, df;          /* DMARC pass, fail */
    double sp, sf;          /* SPF pass, fail (fail includes softfail) */
    double kp, kf;          /* DKIM: a passing signature; signed but none passed */
    double first, last;     /* unix time of the first and the last write */
};

/* This message's authentication, as the finish stage records it. */
enum hist_auth { HIST_NONE = 0, HIST_PASS, HIST_FAIL };

struct hist_params {
    double half_life;       /* seconds */
    double min_observations;/* DMARC results a domain needs before anything scores */
    double pass_ratio;      /* "nearly always passes": DMARC pass / DMARC results */
    double clean_min;       /* DMARC passes from a source for a clean history */
};

struct hist_verdict {
    int first_seen;         /* no message ever from this domain */
    int spoof_new_source;   /* nearly always passes, fails now, from a source
                               never seen passing for it */
    int clean_source;       /* long clean history from this source, passes now */
    double domain_ratio;    /* decayed DMARC pass ratio of the domain (-1: none) */
    double domain_results;  /* decayed DMARC results of the domain */
    double source_passes;   /* decayed DMARC passes from the source */
};

/* Scales every count of c by the decay from c->last to now. */
void hist_decay(struct hist_counts *c, double now, double half_life);

/* What the update script does to a hash, done to a copy held in memory:
 * decay to now, add inc (n dp df sp sf kp kf), last = now, first = now if
 * new.  The per-worker cache keeps its entries in step with the worker's
 * own writes this way. */
void hist_apply(struct hist_counts *c, const int inc[7], double now, double half_life);

/* The fields the scan stage reads (what hist_evaluate() looks at: the
 * other fields are for reports and people).  hist_parse() takes HMGET's
 * values for them (NULL: nil); a value that does not parse counts as 0.
 * present is set when any is there. */
extern const char *const hist_read_fields[];   /* n dp df l */
#define HIST_READ_NFIELDS 4
void hist_parse(struct hist_counts *c, const char *const *values);

/* The symbols for this message: dom and src as read (src NULL or not
 * present: an unseen source), dmarc the message's DMARC result. */
void hist_evaluate(const struct hist_params *p, const struct hist_counts *dom,
                   const struct hist_counts *src, enum hist_auth dmarc, double now,
                   struct hist_verdict *v);

/* The source network of an address: IPv4 /24 "a.b.c", IPv6 /64 "x:x:x:x"
 * (hex, no leading zeros).  family is AF_INET or AF_INET6, addr the
 * in_addr / in6_addr bytes.  Returns 0, or -1 for another family. */
int hist_source_net(int family, const void *addr, char *out, size_t outlen);

/* The Lua script the finish stage runs with EVAL: KEYS = the domain key
 * and, when there is a source, the source key and the domain's source
 * index ({D}si); ARGV = now, half-life (s), TTL (s), then for each hash
 * the increments of n dp df sp sf kp kf, then (with the index) the source
 * network, which the script adds to the index. */
extern const char hist_update_script[];

#endif
