/*
 * authscan/arc.h - the typed ARC result published by the "arc" plugin
 * (RFC 8617 chain validation).
 *
 * The arc plugin publishes one `struct as_arc_result` per scan with
 *     as_task_set_result(t, AS_ARC_RESULT_KEY, res);
 * and consumers (DMARC's trusted-sealer override, reporting, the Lua
 * binding task:get_arc()) read it with
 *     const struct as_arc_result *r = as_task_get_result(t, AS_ARC_RESULT_KEY);
 *     if (r && r->version >= 1 && r->cv == AS_ARC_PASS) ...
 * Nothing is published when the plugin did not run for the scan.
 *
 * Everything behind the pointer lives in the task pool: read-only for
 * consumers, valid until the scan ends.  New fields are only ever added at
 * the end of the structs, with AS_ARC_RESULT_VERSION bumped.
 */
#ifndef AUTHSCAN_ARC_H
#define AUTHSCAN_ARC_H

#include <stddef.h>

#define AS_ARC_RESULT_KEY "arc"
#define AS_ARC_RESULT_VERSION 1
#define AS_ARC_MAX_SETS 50          /* RFC 8617 4.2.1: more is a failed chain */

/* Chain Validation Status (RFC 8617 4.4), plus temperror for a key that
 * could not be fetched (not an RFC 8617 value: the chain is undecided). */
enum as_arc_cv {
    AS_ARC_NONE = 0,                /* no ARC set */
    AS_ARC_PASS,
    AS_ARC_FAIL,
    AS_ARC_TEMPERROR,
};

/* The check of one ARC-Seal or ARC-Message-Signature. */
enum as_arc_sig {
    AS_ARC_SIG_UNCHECKED = 0,       /* not needed for the verdict, or the chain was malformed */
    AS_ARC_SIG_PASS,
    AS_ARC_SIG_FAIL,                /* did not verify, or refused by local policy */
    AS_ARC_SIG_TEMPERROR,           /* key query failed temporarily */
    AS_ARC_SIG_PERMERROR,           /* no key, bad key, malformed signature */
};

/* One resinfo of an ARC-Authentication-Results field, as the sealer wrote
 * it: "spf=pass smtp.mailfrom=example.org".  Unparsed properties and
 * comments are dropped; names are lower case. */
struct as_arc_prop {
    const char *name;               /* "smtp.mailfrom", "header.d", "header.from" ... */
    const char *value;              /* unquoted */
};

struct as_arc_resinfo {
    const char *method;             /* "spf", "dkim", "dmarc", "arc" ... */
    const char *result;             /* "pass", "fail" ... */
    const struct as_arc_prop *props;
    size_t nprops;
};

/* One ARC set (instance i): its seal, its message signature and what its
 * sealer recorded in ARC-Authentication-Results. */
struct as_arc_set {
    unsigned instance;
    enum as_arc_cv cv;              /* the cv= of its ARC-Seal */
    const char *seal_domain;        /* AS d=, lower case */
    const char *seal_selector;      /* AS s= */
    const char *seal_algorithm;     /* AS a= */
    enum as_arc_sig seal;
    const char *seal_reason;        /* why not pass, or NULL */
    const char *ams_domain;         /* AMS d= */
    const char *ams_selector;
    enum as_arc_sig ams;
    const char *ams_reason;
    const char *authserv_id;        /* of the AAR, NULL if it did not parse */
    const struct as_arc_resinfo *results;   /* the AAR's resinfo, in order */
    size_t nresults;
    int trusted;                    /* the sealer is in arc.trusted_sealers */
};

/* What the site lets DMARC do with a failing message whose chain passes
 * and whose trusted sealer recorded an aligned pass (arc.trusted_action). */
enum as_arc_trust_action {
    AS_ARC_TRUST_DELIVER = 0,       /* disposition none */
    AS_ARC_TRUST_QUARANTINE,        /* at most quarantine */
};

struct as_arc_result {
    int version;                    /* AS_ARC_RESULT_VERSION */
    enum as_arc_cv cv;              /* the chain's status */
    int malformed;                  /* fail because of the chain's structure or syntax
                                     * (ARC_INVALID), not because a signature failed */
    const char *reason;             /* why not pass (fail, temperror), NULL otherwise */
    /* The sets from i=1 up; empty when none, and when the chain was too
     * malformed to order (then `reason` says why). */
    size_t nsets;
    const struct as_arc_set *sets;
    /* RFC 8617 5.2 step 5: the lowest instance from which every AMS up to
     * the newest validates; 0 when all of them do.  Meaningful for pass. */
    unsigned oldest_pass;
    /* Trusted sealers: whether arc.trusted_sealers names any, and the
     * site's choice for DMARC. */
    int trust_configured;
    enum as_arc_trust_action trust_action;
};

static inline const char *as_arc_cv_name(enum as_arc_cv cv)
{
    static const char *const names[] = { "none", "pass", "fail", "temperror" };
    return (unsigned)cv < sizeof names / sizeof names[0] ? names[cv] : "none";
}

static inline const char *as_arc_sig_name(enum as_arc_sig s)
{
    static const char *const names[] = { "unchecked", "pass", "fail", "temperror", "permerror" };
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unchecked";
}

#endif /* AUTHSCAN_ARC_H */
