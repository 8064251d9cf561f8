/*
 * authres.c - RFC 8601 Authentication-Results value quoting (plugin.h:
 * as_authres_value).
 *
 * pvalue = [CFWS] ( value / [ [ local-part ] "@" ] domain-name ) [CFWS]
 * value  = token / quoted-string            (RFC 2045)
 * A token excludes tspecials ()<>@,;:\"/[]?= and SPACE/CTLs; domains and
 * addresses are allowed as they are, so plain names stay readable.
 */
#include <string.h>
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
