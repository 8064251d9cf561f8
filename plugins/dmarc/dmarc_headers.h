/*
 * dmarc_headers.h - header text the dmarc plugin produces: its
 * Authentication-Results entry (RFC 8601; the core writes the field) and
 * the From rewriting ("munging") for mailing lists (RFC 7960 4.1.3.1).
 * Pure string functions, no task.
 */
#ifndef DMARC_HEADERS_H
#define DMARC_HEADERS_H

#include <stddef.h>

#include "authscan/dmarc.h"
#include "authscan/plugin.h"

/* The dmarc= resinfo for a result, e.g.
 *   dmarc=fail (p=reject dis=quarantine mailing_list) header.from=example.com policy.dmarc=reject
 * policy.dmarc is the policy after t=/pct= (RFC 9989 9.1); our local
 * downgrades are only in the comment. */
const char *dmarc_ar_resinfo(struct as_pool *pool, const struct as_dmarc_result *r);
/* Its parts for as_task_add_auth_resultv(): the comment without the
 * parentheses ("p=reject sp=none dis=quarantine mailing_list"), NULL when
 * there is no record; the policy.dmarc value, NULL when there is none. */
const char *dmarc_ar_comment(struct as_pool *pool, const struct as_dmarc_result *r);
const char *dmarc_ar_policy(const struct as_dmarc_result *r);

/* Reason names for symbol options and reports ("testing", "sampled_out",
 * "mailing_list", ...), space-separated; "" when none. */
const char *dmarc_reason_names(struct as_pool *pool, unsigned reasons);

enum dmarc_munge_style {
    DMARC_MUNGE_VIA = 0,      /* From: "Author via List" <list@example.org> */
    DMARC_MUNGE_INVALID,      /* From: "Author" <author@example.com.INVALID> */
};

struct dmarc_munged {
    const char *from;         /* new From: value */
    const char *reply_to;     /* Reply-To: value (the original author) */
    const char *original;     /* X-Original-From: value */
};

/* Builds the rewritten header values.  `display` is the author's decoded
 * display name (UTF-8, may be NULL), `addr` the author address,
 * `orig_value` the unfolded original From value, `list_name` the list's
 * name for the "via" phrase.  Non-ASCII phrases are RFC 2047 encoded.
 * Returns 0, or -1 if the input cannot be used. */
int dmarc_munge(struct as_pool *pool, enum dmarc_munge_style style, const char *display,
                const char *addr, const char *orig_value, const char *list_addr,
                const char *list_name, struct dmarc_munged *out);

/* An RFC 5322 phrase for `text`: a quoted-string when ASCII, RFC 2047
 * B-encoded words otherwise. */
const char *dmarc_phrase(struct as_pool *pool, const char *text);

/* Last resort for a From field the RFC 5322 parser rejects: every
 * "@domain" in the raw value, normalized (A-labels) and deduplicated, at
 * most `max`.  A malformed From must not be a way around DMARC (RFC 9989
 * 11.5): what an MUA might show is evaluated.  Returns the count. */
size_t dmarc_scan_domains(struct as_pool *pool, const char *value, const char **out, size_t max);

#endif /* DMARC_HEADERS_H */
