/*
 * arc_parse.h - the text of ARC header fields (RFC 8617 4.1): which field
 * is which, instance numbers, ordering fields into sets with the
 * structural rules of RFC 8617 5.2 steps 1-3, and the resinfo of an
 * ARC-Authentication-Results field.
 *
 * All of it reads untrusted message text: every loop is bounded by the
 * input length and by the limits below, nothing is allocated, and errors
 * are static strings.  fuzz_arc exercises every function here.
 */
#ifndef ARC_PARSE_H
#define ARC_PARSE_H

#include <stddef.h>

#include "authscan/arc.h"
#include "dkim_tags.h"

/* One ARC header field longer than this makes the chain malformed: real
 * seals are under 1 KiB; an AAR carries a few resinfo. */
#define ARC_FIELD_MAX 16384

enum arc_kind { ARC_AAR = 0, ARC_AMS = 1, ARC_AS = 2, ARC_NKINDS = 3 };

/* A header field as the message has it. */
struct arc_field {
    const char *raw;          /* "Name: value", folding kept, no final line end */
    size_t rawlen;
    const char *val;          /* after the colon */
    size_t vallen;
};

/* The kind of a field named name (case-insensitive), or -1. */
int arc_field_kind(const char *name, size_t n);
extern const char *const arc_kind_names[ARC_NKINDS];

/* The instance of an AMS or AS from its parsed tag-list, or of an AAR
 * from the "i=N;" that starts its value (RFC 8617 4.2.1): 1..50.  Returns
 * it, or -1 with *err set. */
int arc_tags_instance(const struct dkim_taglist *tl, const char **err);
int arc_aar_instance(const char *v, size_t n, const char **err);

/* The sets of a message, ordered: set[i - 1][kind] for i = 1..n. */
struct arc_chain {
    unsigned n;
    const struct arc_field *set[AS_ARC_MAX_SETS][ARC_NKINDS];
    enum as_arc_cv cv[AS_ARC_MAX_SETS];   /* cv= of each ARC-Seal */
};

/* RFC 8617 5.2 steps 1-3 on the ARC fields of a message (fields[k] of
 * kind kinds[k], in message order).  Returns:
 *   0   chain->n == 0: no ARC field (cv none);
 *   1   well-formed: sets 1..n complete, cv= in order;
 *  -1   malformed (cv fail, *err says why): a field over ARC_FIELD_MAX,
 *       more than 50 sets, a bad or repeated instance, a missing field,
 *       a seal without a valid cv=, cv=none past i=1 or pass at i=1;
 *  -2   the newest seal says cv=fail (step 2: fail, nothing to verify).
 * chain->n is the number of sets found even when malformed (0 when the
 * instances could not be read). */
int arc_chain_build(const struct arc_field *fields, const int *kinds, size_t nf,
                    struct arc_chain *chain, const char **err);

/* ARC-Authentication-Results: "i=N; authserv-id [version]; resinfo; ..."
 * (RFC 8617 4.1.1, RFC 8601 2.2).  Comments are skipped, quoted-strings
 * are given without their quotes (escapes left in place), "reason=" and
 * properties past ARC_AAR_PROPS_MAX are dropped. */
#define ARC_AAR_RESULTS_MAX 32
#define ARC_AAR_PROPS_MAX 8

struct arc_aar_prop {
    struct dkim_slice name;       /* "smtp.mailfrom" */
    struct dkim_slice value;
};

struct arc_aar_res {
    struct dkim_slice method;     /* without a "/version" */
    struct dkim_slice result;
    size_t nprops;
    struct arc_aar_prop props[ARC_AAR_PROPS_MAX];
};

struct arc_aar {
    unsigned instance;
    struct dkim_slice authserv_id;
    size_t nres;
    struct arc_aar_res res[ARC_AAR_RESULTS_MAX];
};

/* Returns 0, or -1 with *err set (out is then partly filled). */
int arc_aar_parse(const char *v, size_t n, struct arc_aar *out, const char **err);

#endif
