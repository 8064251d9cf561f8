/*
 * authres.c - RFC 8601 Authentication-Results text: value quoting
 * (plugin.h: as_authres_value) and the rest of authres.h.
 *
 * pvalue = [CFWS] ( value / [ [ local-part ] "@" ] domain-name ) [CFWS]
 * value  = token / quoted-string            (RFC 2045)
 * A token excludes tspecials ()<>@,;:\"/[]?= and SPACE/CTLs; domains and
 * addresses are allowed as they are, so plain names stay readable.
 */
#include <string.h>
#include "mail/authres.h"
#include "util/pool.h"
#include "util/util.h"

static int token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

static int domain_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

/* local-part as dot-atom: atext and dots */
static int atext_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~.", c));
}

static int plain(const char *v)
{
    if (!*v) return 0;
    const char *at = strrchr(v, '@');
    if (at) {
        for (const char *p = v; p < at; p++)
            if (!atext_char((unsigned char)*p)) return 0;
        if (!at[1]) return 0;
        for (const char *p = at + 1; *p; p++)
            if (!domain_char((unsigned char)*p)) return 0;
        return 1;
    }
    for (const char *p = v; *p; p++)
        if (!token_char((unsigned char)*p)) return 0;
    return 1;
}

const char *as_authres_value(struct as_pool *pool, const char *value)
{
    if (!value) value = "";
    if (plain(value)) return value;
    size_t n = strlen(value);
    char *out = as_pool_alloc(pool, n * 2 + 3), *o = out;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\') *o++ = '\\';
        *o++ = (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?';
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* ---- the field we write --------------------------------------------------- */

static int tspecial_free(const char *s)
{
    if (!*s) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!token_char(*p)) return 0;
    return 1;
}

const char *as_authres_token(struct as_pool *pool, const char *s)
{
    if (!s) s = "";
    if (tspecial_free(s)) return s;
    size_t n = strlen(s);
    char *out = as_pool_alloc(pool, n * 2 + 3), *o = out;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') *o++ = '\\';
        *o++ = (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?';
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

static int letdig(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int keyword_n(const char *s, size_t n)
{
    if (n == 0 || !letdig((unsigned char)s[0]) || !letdig((unsigned char)s[n - 1])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!letdig((unsigned char)s[i]) && s[i] != '-') return 0;
    return 1;
}

int as_authres_keyword(const char *s)
{
    return s && keyword_n(s, strlen(s));
}

/* ptype "." property, both Keywords */
static int prop_name(const char *s)
{
    const char *dot = s ? strchr(s, '.') : NULL;
    return dot && keyword_n(s, (size_t)(dot - s)) && as_authres_keyword(dot + 1);
}

/* A comment: ctext, with '(', ')' and '\\' as quoted-pairs (RFC 5322
 * 3.2.2) and everything outside printable ASCII as '?', so nothing in it
 * can end the comment early. */
static void add_comment(struct sbuf *b, const char *c)
{
    sbuf_adds(b, " (");
    for (const unsigned char *p = (const unsigned char *)c; *p; p++) {
        if (*p == '(' || *p == ')' || *p == '\\') sbuf_addc(b, '\\');
        sbuf_addc(b, (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?');
    }
    sbuf_addc(b, ')');
}

/* sep name=value (a few of these per header field of every message:
 * appended, not printf'ed) */
static void put_pair(struct sbuf *b, const char *sep, const char *name, const char *value)
{
    sbuf_adds(b, sep);
    sbuf_adds(b, name);
    sbuf_addc(b, '=');
    sbuf_adds(b, value);
}

const char *as_authres_resinfo(struct as_pool *pool, const struct as_auth_result *r,
                               const char **err)
{
    if (!r || !as_authres_keyword(r->method)) {
        *err = "method is not a keyword";
        return NULL;
    }
    if (!as_authres_keyword(r->result)) {
        *err = "result is not a keyword";
        return NULL;
    }
    if (r->nprops && !r->props) {
        *err = "properties missing";
        return NULL;
    }
    for (size_t i = 0; i < r->nprops; i++) {
        if (!prop_name(r->props[i].name)) {
            *err = "property name is not ptype.property";
            return NULL;
        }
        if (!r->props[i].value) {
            *err = "property without a value";
            return NULL;
        }
    }
    struct sbuf b = {0};
    put_pair(&b, "", r->method, r->result);
    if (r->comment && *r->comment) add_comment(&b, r->comment);
    if (r->reason) put_pair(&b, " ", "reason", as_authres_token(pool, r->reason));
    for (size_t i = 0; i < r->nprops; i++)
        put_pair(&b, " ", r->props[i].name, as_authres_value(pool, r->props[i].value));
    char *out = as_pool_strndup(pool, b.data, b.len);
    sbuf_free(&b);
    return out;
}

const char *as_authres_extend(struct as_pool *pool, const char *resinfo,
                              const struct as_auth_prop *props, size_t nprops,
                              const char *comment)
{
    struct sbuf b = {0};
    sbuf_adds(&b, resinfo);
    for (size_t i = 0; i < nprops; i++)
        put_pair(&b, " ", props[i].name, as_authres_value(pool, props[i].value));
    if (comment && *comment) add_comment(&b, comment);
    char *out = as_pool_strndup(pool, b.data, b.len);
    sbuf_free(&b);
    return out;
}

const char *as_authres_field(struct as_pool *pool, const char *authserv_id,
                             const char *const *resinfo, size_t n)
{
    struct sbuf b = {0};
    sbuf_adds(&b, as_authres_token(pool, authserv_id));
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(&b, "; ");
        sbuf_adds(&b, resinfo[i]);
    }
    if (n == 0) sbuf_adds(&b, "; none");
    char *out = as_pool_strndup(pool, b.data, b.len);
    sbuf_free(&b);
    return out;
}

/* ---- fields already in the message ----------------------------------------- */

/* Skips blanks and (nested) comments; bounded by the string. */
static const char *skip_cfws(const char *s)
{
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
        if (*s != '(') return s;
        int depth = 0;
        do {
            if (*s == '\\' && s[1]) s++;
            else if (*s == '(') depth++;
            else if (*s == ')') depth--;
            s++;
        } while (*s && depth > 0);
    }
}

const char *as_authres_authserv_id(struct as_pool *pool, const char *value)
{
    if (!value) return NULL;
    const char *s = skip_cfws(value);
    if (*s == '"') {
        /* quoted-string: unescaped, no length limit of its own (the
         * header limits bound it) */
        struct sbuf b = {0};
        for (s++; *s && *s != '"'; s++) {
            if (*s == '\\' && s[1]) s++;
            sbuf_addc(&b, *s);
        }
        char *out = b.len ? as_pool_strndup(pool, b.data, b.len) : NULL;
        sbuf_free(&b);
        return out;
    }
    size_t n = 0;
    while (s[n] && token_char((unsigned char)s[n])) n++;
    return n ? as_pool_strndup(pool, s, n) : NULL;
}
