/*
 * spf_record.h - our own RFC 7208 record parser, validator and macro
 * expander, used around libspf2.
 *
 * libspf2 1.2.10 accepts many records that RFC 7208 says are permerror
 * (bad domain-specs, unknown mechanisms after the match, bad macro
 * letters...), rejects some valid ones (CIDR /0) and expands some macros
 * wrongly (%{d2}, exp= text).  Every record is therefore parsed here first:
 * an invalid record never reaches libspf2 and yields permerror; a valid one
 * is rewritten where libspf2 is known to misbehave (see spf_record_rewrite)
 * and its targets are used for DNS prefetch.
 *
 * Limits: a record is at most SPF_RECORD_MAX_LEN bytes and SPF_MAX_TERMS
 * terms; anything larger is reported as invalid ("record too large").
 * No allocation: callers provide the structs (they are a few KB).
 */
#ifndef AS_SPF_RECORD_H
#define AS_SPF_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>

#define SPF_MAX_TERMS 200          /* libspf2 counts mechanisms in a uchar */
#define SPF_RECORD_MAX_LEN 4096
#define SPF_NAME_MAX 253

enum spf_term_kind {
    SPF_T_ALL, SPF_T_INCLUDE, SPF_T_A, SPF_T_MX, SPF_T_PTR, SPF_T_IP4, SPF_T_IP6,
    SPF_T_EXISTS,
    SPF_T_REDIRECT, SPF_T_EXP, SPF_T_MODIFIER   /* modifiers */
};

struct spf_span {
    const char *ptr;   /* into the record text (not NUL-terminated) */
    size_t len;
};

struct spf_term {
    enum spf_term_kind kind;
    char qualifier;            /* '+', '-', '~', '?'; 0 for modifiers */
    struct spf_span text;      /* the term as written, qualifier included */
    struct spf_span domain;    /* domain-spec or modifier value; len 0 if none */
    int has_macro;             /* domain contains '%' */
    int cidr4, cidr6;          /* -1 when not given */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr;                    /* ip4/ip6 network */
};

struct spf_record {
    size_t nterms;
    struct spf_term terms[SPF_MAX_TERMS];
    int redirect;              /* index of redirect=, -1 */
    int exp;                   /* index of exp=, -1 */
    int all;                   /* index of the first "all" mechanism, -1 */
};

/* 1 if the TXT string is an SPF version 1 record: "v=spf1" (any case)
 * followed by a space or the end (RFC 7208 4.5). */
int spf_record_is_spf(const char *s, size_t len);

/* Parses and validates a whole record against the RFC 7208 grammar
 * (section 12) plus the semantic rules that make a record permerror:
 * duplicate redirect/exp, CIDR ranges, domain-spec ending in a valid
 * toplabel, macro letters c/r/t outside exp text.  Returns 0, or -1 with
 * *err set to a static message. */
int spf_record_parse(const char *s, size_t len, struct spf_record *rec, const char **err);

/* A macro-string (RFC 7208 7.1).  exp_text: allow the exp-only letters
 * c, r, t.  Returns 1 if valid. */
int spf_macro_string_valid(const char *s, size_t len, int exp_text);

/* Writes into out (NUL-terminated) a version of rec's text that libspf2
 * 1.2.10 evaluates the RFC 7208 way:
 *   - redirect= is dropped when the record has an "all" mechanism (RFC 7208
 *     6.1 says it is then ignored; libspf2 makes it permerror);
 *   - ip4:N/0 and ip6:N/0 become two /1 networks (libspf2 rejects /0);
 *   - a/0 and mx/0 (for the client's address family) get their domain
 *     wrapped as "<domain>.<SPF_CIDR0_SUFFIX>" with the CIDR removed; the DNS
 *     layer answers such names with the client address when the real name
 *     has any address of that family, which is what /0 means.
 * client_v6 selects which CIDR of a dual-cidr-length counts.  Returns 0,
 * or -1 if out is too small. */
#define SPF_CIDR0_SUFFIX "cidr0.authscan.invalid"
int spf_record_rewrite(const struct spf_record *rec, int client_v6, char *out, size_t outsz);

/* ---- macro expansion (RFC 7208 section 7) --------------------------- */

struct spf_macro_ctx {
    const char *sender;        /* s: local@domain */
    const char *local;         /* l */
    const char *sender_dom;    /* o */
    const char *domain;        /* d: current domain */
    const char *helo;          /* h */
    const char *receiver;      /* r */
    const char *validated;     /* p: validated client name or "unknown" */
    int family;                /* AF_INET / AF_INET6 */
    union { struct in_addr v4; struct in6_addr v6; } ip;
    long long now;             /* t */
};

/* Expands a macro-string into out.  exp_text allows c, r, t and is the
 * mode for explanation text.  Returns the length, or -1 on a syntax error
 * or if out is too small. */
int spf_macro_expand(const char *s, size_t len, const struct spf_macro_ctx *mc, int exp_text,
                     char *out, size_t outsz);

/* Domain-name checks on an expanded name (no macros):
 * spf_name_valid: 1..253 octets, labels 1..63, printable ASCII.
 * spf_name_truncate: RFC 7208 4.8 - drops leftmost labels until <= 253;
 * returns a pointer into name. */
int spf_name_valid(const char *name);
const char *spf_name_truncate(const char *name);
/* Copies src into dst (size bytes, > 0), cut to fit and NUL-terminated,
 * as snprintf(dst, size, "%s", src) does: a name is copied several times
 * per lookup, and the printf machinery cost 1 % of a scan. */
static inline void spf_strcpy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* An identity domain usable for check_host() (RFC 7208 4.3): valid name,
 * at least two labels, not an address literal. */
int spf_identity_domain_valid(const char *name);

#endif
