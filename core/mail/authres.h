/*
 * authres.h - Authentication-Results text (RFC 8601): the pieces the core
 * needs to write our field and to recognise fields that claim to be ours.
 * Pure string functions on pool memory; the per-scan step that uses them
 * (collect resinfos, remove forged fields, add ours) is in task.c.
 *
 * as_authres_value() (property values) is part of the plugin ABI and is
 * declared in authscan/plugin.h.
 *
 * Grammar used (RFC 8601 2.2, RFC 2045 5.1):
 *   field    = authserv-id [ CFWS authres-version ] ( no-result / 1*resinfo )
 *   resinfo  = ";" method "=" result [ reasonspec ] *propspec
 *   Keyword  = ldh-str  (letters, digits, '-', not at either end)
 *   value    = token / quoted-string
 */
#ifndef AS_AUTHRES_H
#define AS_AUTHRES_H

#include <stddef.h>
#include "authscan/plugin.h"

/* The authserv-id of an Authentication-Results field value: the first
 * token or quoted-string after optional CFWS.  A pool string, or NULL when
 * the value does not start with one.  Bounded by the value's length. */
const char *as_authres_authserv_id(struct as_pool *pool, const char *value);

/* s as an RFC 2045 value: as is when it is a token, else a quoted-string
 * with '"' and '\\' escaped and bytes outside printable ASCII replaced by
 * '?'.  For the authserv-id we write and for reason="...". */
const char *as_authres_token(struct as_pool *pool, const char *s);

/* 1 if s is an RFC 8601 Keyword (ldh-str). */
int as_authres_keyword(const char *s);

/* One resinfo as text, "method=result (comment) reason=... p.q=v ...",
 * quoting every value.  NULL with *err set to a static description when r
 * is malformed (see plugin.h: as_task_add_auth_resultv). */
const char *as_authres_resinfo(struct as_pool *pool, const struct as_auth_result *r,
                               const char **err);

/* resinfo (from as_authres_resinfo()) with properties and a comment
 * appended: "... p.q=v ... (comment)".  Names are the caller's constants
 * (ptype.property); values are quoted as needed; comment may be NULL.
 * For a policy override found after the entry was written (task.c). */
const char *as_authres_extend(struct as_pool *pool, const char *resinfo,
                              const struct as_auth_prop *props, size_t nprops,
                              const char *comment);

/* The whole field value: "<authserv-id>; <resinfo>; <resinfo>" with the
 * authserv-id quoted as needed, or "<authserv-id>; none" when n is 0. */
const char *as_authres_field(struct as_pool *pool, const char *authserv_id,
                             const char *const *resinfo, size_t n);

#endif
