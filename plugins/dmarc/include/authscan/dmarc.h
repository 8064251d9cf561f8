/*
 * authscan/dmarc.h - the typed DMARC result published by the "dmarc" plugin.
 *
 * The dmarc plugin publishes one `struct as_dmarc_result` per scan with
 *     as_task_set_result(t, AS_DMARC_RESULT_KEY, res);
 * and consumers (reporting, Lua overrides, site hooks) read it with
 *     const struct as_dmarc_result *r = as_task_get_result(t, AS_DMARC_RESULT_KEY);
 *     if (r && r->version >= 1) { ... r->result ... r->disposition ... }
 * Nothing is published when the plugin did not run for the scan (e.g. an
 * authenticated sender, see docs/dmarc.md).
 *
 * Everything behind the pointer lives in the task pool: read-only for
 * consumers, valid until the scan ends.  New fields are only ever added at
 * the end of the structs, with AS_DMARC_RESULT_VERSION bumped.
 *
 * Terms follow RFC 9989 (DMARCbis): the Author Domain is the RFC5322.From
 * domain, the Policy Domain is where the DMARC Policy Record was found, the
 * Organizational Domain comes from the DNS Tree Walk (RFC 9989 4.10) or,
 * in RFC 7489 mode, from the Public Suffix List.
 */
#ifndef AUTHSCAN_DMARC_H
#define AUTHSCAN_DMARC_H

#include <stddef.h>

#include "authscan/spf.h"

#define AS_DMARC_RESULT_KEY "dmarc"
#define AS_DMARC_RESULT_VERSION 2

/* RFC 8601 / RFC 9989 9.2 result values of the "dmarc" method. */
enum as_dmarc_res {
    AS_DMARC_NONE = 0,    /* no policy applies (no record, no usable From...) */
    AS_DMARC_PASS,
    AS_DMARC_FAIL,
    AS_DMARC_TEMPERROR,   /* a DNS error kept us from a pass/fail verdict */
    AS_DMARC_PERMERROR,   /* From names more domains than max_author_domains
                             (unusable records are none, RFC 9989 4.10.1) */
};

/* Domain Owner Assessment Policy values (p=, sp=, np=). */
enum as_dmarc_policy {
    AS_DMARC_POLICY_UNSET = 0,  /* tag absent or invalid */
    AS_DMARC_POLICY_NONE,
    AS_DMARC_POLICY_QUARANTINE,
    AS_DMARC_POLICY_REJECT,
};

/* How the Organizational Domain was determined. */
enum as_dmarc_discovery {
    AS_DMARC_DISCOVERY_TREE = 0, /* RFC 9989 4.10 DNS Tree Walk (default) */
    AS_DMARC_DISCOVERY_PSL,      /* RFC 7489 3.2 Public Suffix List */
};

/* Bits of as_dmarc_record.present / .invalid: which tags were present,
 * and which had a value that failed the grammar (RFC 9989 4.8: such a
 * value is discarded in favour of the default). */
#define AS_DMARC_TAG_P     0x0001u
#define AS_DMARC_TAG_SP    0x0002u
#define AS_DMARC_TAG_NP    0x0004u
#define AS_DMARC_TAG_PSD   0x0008u
#define AS_DMARC_TAG_T     0x0010u
#define AS_DMARC_TAG_ADKIM 0x0020u
#define AS_DMARC_TAG_ASPF  0x0040u
#define AS_DMARC_TAG_PCT   0x0080u
#define AS_DMARC_TAG_RUA   0x0100u
#define AS_DMARC_TAG_RUF   0x0200u
#define AS_DMARC_TAG_FO    0x0400u
#define AS_DMARC_TAG_RF    0x0800u
#define AS_DMARC_TAG_RI    0x1000u

/* One DMARC Policy Record as published.  Values are the parsed ones with
 * the RFC defaults filled in; `present` and `invalid` say what was
 * actually written. */
struct as_dmarc_record {
    const char *text;             /* the TXT record (strings joined) */
    enum as_dmarc_policy p, sp, np; /* UNSET when absent or invalid */
    char psd;                     /* 'y', 'n' or 'u' (default) */
    int testing;                  /* t=y */
    int adkim_strict, aspf_strict;/* adkim=s, aspf=s (default relaxed) */
    int pct;                      /* 0..100, default 100 (used in RFC 7489 mode only) */
    const char *rua, *ruf;        /* raw URI lists, NULL when absent */
    const char *fo;               /* default "0" */
    const char *rf;               /* default "afrf" */
    unsigned long ri;             /* default 86400 */
    unsigned present, invalid;    /* AS_DMARC_TAG_* bits */
    int nerrors;                  /* syntax errors: invalid values, malformed tags */
};

/* Why the disposition differs from the published policy, or why DMARC
 * gave no verdict.  Several may be set. */
#define AS_DMARC_REASON_TESTING      0x0001u /* t=y: policy lowered one level */
#define AS_DMARC_REASON_SAMPLED_OUT  0x0002u /* pct (RFC 7489 mode) sampled the message out */
#define AS_DMARC_REASON_MAILING_LIST 0x0004u /* reject lowered to quarantine: list traffic */
#define AS_DMARC_REASON_MULTI_FROM   0x0008u /* several Author Domains were evaluated */
#define AS_DMARC_REASON_INCOMPLETE   0x0010u /* more Author Domains than we evaluate */
#define AS_DMARC_REASON_BAD_POLICY   0x0020u /* record found but unusable (none) */
#define AS_DMARC_REASON_NO_AUTHOR    0x0040u /* no usable RFC5322.From domain (none) */
#define AS_DMARC_REASON_ARC_TRUSTED  0x0080u /* lowered: a trusted ARC sealer recorded an
                                              * aligned pass (version 2, see override_*) */

struct as_dmarc_result {
    int version;                  /* AS_DMARC_RESULT_VERSION */
    enum as_dmarc_res result;
    enum as_dmarc_discovery discovery;
    const char *author_domain;    /* RFC5322.From domain (A-labels), NULL if none */
    const char *policy_domain;    /* where the record was found, NULL if none */
    const char *org_domain;       /* Organizational Domain of the Author Domain; NULL when
                                   * unknown (its Tree Walk failed above the record) */
    const struct as_dmarc_record *record; /* the policy record, NULL if none */
    /* The policy the owner asks for this message: p, sp or np (RFC 9989
     * 4.10.1), and the tag it came from ("p", "sp", "np"). */
    enum as_dmarc_policy policy;
    const char *policy_tag;
    /* What we apply: equals `policy` lowered by t=y / pct / the mailing-list
     * safeguard (see reasons); AS_DMARC_POLICY_NONE unless result == FAIL. */
    enum as_dmarc_policy disposition;
    unsigned reasons;             /* AS_DMARC_REASON_* */
    /* Identifier Alignment. */
    int spf_aligned;              /* the SPF-authenticated domain aligned */
    const char *spf_domain;       /* MAIL FROM (or HELO) domain DMARC looked at */
    enum as_spf_res spf_result;   /* its SPF result (AS_SPF_NONE if not checked) */
    int dkim_aligned;             /* some passing DKIM signature aligned */
    const char *dkim_domain;      /* d= of the first aligned passing signature */
    int aspf_strict, adkim_strict;/* the modes used */
    const char *comment;          /* human-readable cause for none/temperror, or NULL */
    /* RFC 8601 resinfo without authserv-id, e.g. "dmarc=fail (p=reject
     * dis=quarantine) header.from=example.com policy.dmarc=reject". */
    const char *auth_results;
    size_t nauthors;              /* distinct Author Domains seen in From */
    /* Version 2.  A local override of the disposition, for the aggregate
     * report's PolicyOverrideReason (RFC 7489 C): type "trusted_forwarder"
     * when a sealer in arc.trusted_sealers vouched for the message
     * (AS_DMARC_REASON_ARC_TRUSTED), NULL when nothing was overridden; the
     * comment names the sealer, its instance and the result it recorded;
     * override_from is the disposition before the override.  Every
     * override (t=y, pct, the list safeguard, this one, and the core's
     * local_policy when a Lua rule or site force lowers the action) is in
     * the task's list, as_task_overrides() (plugin.h, ABI 1.4): read that
     * one for reporting. */
    const char *override_type;
    const char *override_comment;
    enum as_dmarc_policy override_from;
};

static inline const char *as_dmarc_res_name(enum as_dmarc_res r)
{
    static const char *const names[] = { "none", "pass", "fail", "temperror", "permerror" };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "none";
}

static inline const char *as_dmarc_policy_name(enum as_dmarc_policy p)
{
    static const char *const names[] = { "unset", "none", "quarantine", "reject" };
    return (unsigned)p < sizeof names / sizeof names[0] ? names[p] : "unset";
}

#endif /* AUTHSCAN_DMARC_H */
