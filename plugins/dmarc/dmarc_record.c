/*
 * dmarc_record.c - DMARC Policy Record parsing; see dmarc_record.h.
 *
 * Grammar (RFC 9989 4.8):
 *   dmarc-record  = dmarc-version *(dmarc-sep dmarc-tag) [dmarc-sep]
 *   dmarc-sep     = *WSP ";" *WSP
 *   dmarc-tag     = 1*ALPHA equals 1*dmarc-value
 *   dmarc-version = "v" equals %s"DMARC1"
 * We split on ';', trim WSP, and judge every tag on its own: a malformed
 * tag (no '=', non-ALPHA name, empty value) is a syntax error that is
 * skipped, so the real-world records of mail-dmarc.json ("fo:0",
 * "sp-none", ";;") still yield their p=.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmarc_record.h"

static int is_wsp(char c) { return c == ' ' || c == '\t'; }

static void trim(const char **s, size_t *n)
{
    while (*n && (is_wsp(**s) || **s == '\r' || **s == '\n')) {
        (*s)++;
        (*n)--;
    }
    while (*n && (is_wsp((*s)[*n - 1]) || (*s)[*n - 1] == '\r' || (*s)[*n - 1] == '\n'))
        (*n)--;
}

static int eq_ci(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

enum as_dmarc_policy dmarc_policy_from_string(const char *s, size_t len)
{
    if (eq_ci(s, len, "none")) return AS_DMARC_POLICY_NONE;
    if (eq_ci(s, len, "quarantine")) return AS_DMARC_POLICY_QUARANTINE;
    if (eq_ci(s, len, "reject")) return AS_DMARC_POLICY_REJECT;
    return AS_DMARC_POLICY_UNSET;
}

/* The first chunk must be "v" *WSP "=" *WSP "DMARC1" *WSP. */
static int version_ok(const char *s, size_t n)
{
    trim(&s, &n);
    if (n == 0 || (s[0] != 'v' && s[0] != 'V'))
        return 0;
    s++, n--;
    while (n && is_wsp(*s)) s++, n--;
    if (!n || *s != '=')
        return 0;
    s++, n--;
    while (n && is_wsp(*s)) s++, n--;
    return n == 6 && memcmp(s, "DMARC1", 6) == 0;
}

int dmarc_record_is_dmarc(const char *txt, size_t len)
{
    if (!txt)
        return 0;
    const char *semi = memchr(txt, ';', len);
    size_t n = semi ? (size_t)(semi - txt) : len;
    /* tolerate the leaked "\;" escape here too */
    if (n && txt[n - 1] == '\\' && semi)
        n--;
    return version_ok(txt, n);
}

/* ---- value grammars ------------------------------------------------- */

static int digits_value(const char *s, size_t n, unsigned long long max, unsigned long long *out)
{
    if (n == 0 || n > 10)
        return 0;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return 0;
    *out = v;
    return 1;
}

/* colon-separated list where each item is one of `items` (any case) */
static int colon_list_ok(const char *s, size_t n, const char *const *items)
{
    if (n == 0)
        return 0;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && s[j] != ':')
            j++;
        const char *it = s + i;
        size_t il = j - i;
        trim(&it, &il);
        int ok = 0;
        for (const char *const *x = items; *x && !ok; x++)
            ok = eq_ci(it, il, *x);
        if (!ok)
            return 0;
        i = j + 1;
    }
    return 1;
}

/* URI syntax, loosely RFC 3986: scheme ":" non-blank rest, with the
 * obsolete "!size" suffix of RFC 7489 allowed (RFC 9989 obs-dmarc-uri). */
static int uri_scheme(const char *s, size_t n, size_t *scheme_len)
{
    size_t i = 0;
    if (n == 0 || !isalpha((unsigned char)s[0]))
        return 0;
    while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i >= n || s[i] != ':' || i + 1 >= n)
        return 0;
    for (size_t k = i + 1; k < n; k++)
        if ((unsigned char)s[k] <= ' ' || (unsigned char)s[k] >= 0x7f)
            return 0;
    *scheme_len = i;
    return 1;
}

/* 1: a URI we could use; 0: a URI, but not one of ours; -1: not a URI */
static int uri_check(const char *s, size_t n)
{
    const char *bang = memchr(s, '!', n);
    if (bang) {
        /* "!" 1*DIGIT [k/m/g/t] */
        size_t k = (size_t)(bang - s) + 1;
        if (k >= n || !isdigit((unsigned char)s[k]))
            return 0;
        while (k < n && isdigit((unsigned char)s[k]))
            k++;
        if (k < n && strchr("kmgtKMGT", s[k]))
            k++;
        if (k != n)
            return -1;
        n = (size_t)(bang - s);
    }
    size_t sl;
    if (!uri_scheme(s, n, &sl))
        return -1;
    if (eq_ci(s, sl, "mailto")) {
        const char *at = memchr(s + sl + 1, '@', n - sl - 1);
        return at && at > s + sl + 1 && at < s + n - 1;
    }
    return eq_ci(s, sl, "http") || eq_ci(s, sl, "https");
}

/* Worst and best of the list: *syntax_ok = every item is a URI. */
static int urilist_check(const char *list, int *syntax_ok)
{
    int usable = 0;
    *syntax_ok = 1;
    const char *s = list;
    while (s && *s) {
        const char *c = strchr(s, ',');
        size_t n = c ? (size_t)(c - s) : strlen(s);
        const char *u = s;
        size_t un = n;
        trim(&u, &un);
        int r = uri_check(u, un);
        if (r < 0)
            *syntax_ok = 0;
        usable |= r > 0;
        s = c ? c + 1 : NULL;
    }
    return usable;
}

int dmarc_urilist_usable(const char *list)
{
    int syntax_ok;
    return list ? urilist_check(list, &syntax_ok) : 0;
}

/* ---- the parser ----------------------------------------------------- */

struct tagdef {
    const char *name;
    unsigned bit;
};

static const struct tagdef tags[] = {
    { "p", AS_DMARC_TAG_P },         { "sp", AS_DMARC_TAG_SP },
    { "np", AS_DMARC_TAG_NP },       { "psd", AS_DMARC_TAG_PSD },
    { "t", AS_DMARC_TAG_T },         { "adkim", AS_DMARC_TAG_ADKIM },
    { "aspf", AS_DMARC_TAG_ASPF },   { "pct", AS_DMARC_TAG_PCT },
    { "rua", AS_DMARC_TAG_RUA },     { "ruf", AS_DMARC_TAG_RUF },
    { "fo", AS_DMARC_TAG_FO },       { "rf", AS_DMARC_TAG_RF },
    { "ri", AS_DMARC_TAG_RI },
};

/* Applies one tag; returns 0 if the value is valid, -1 for a syntax
 * error, -2 for a well-formed value we cannot use (a URI list with no
 * scheme of ours: RFC 9989 4.7 says to ignore those, not a syntax error). */
static int apply_tag(struct as_pool *pool, struct as_dmarc_record *r, unsigned bit,
                     const char *v, size_t vn)
{
    static const char *const fo_items[] = { "0", "1", "d", "s", NULL };
    static const char *const rf_items[] = { "afrf", "iodef", NULL };
    unsigned long long num;
    switch (bit) {
    case AS_DMARC_TAG_P:
        return (r->p = dmarc_policy_from_string(v, vn)) ? 0 : -1;
    case AS_DMARC_TAG_SP:
        return (r->sp = dmarc_policy_from_string(v, vn)) ? 0 : -1;
    case AS_DMARC_TAG_NP:
        return (r->np = dmarc_policy_from_string(v, vn)) ? 0 : -1;
    case AS_DMARC_TAG_PSD:
        if (vn == 1 && strchr("yYnNuU", v[0])) {
            r->psd = (char)tolower((unsigned char)v[0]);
            return 0;
        }
        return -1;
    case AS_DMARC_TAG_T:
        if (vn == 1 && strchr("yYnN", v[0])) {
            r->testing = v[0] == 'y' || v[0] == 'Y';
            return 0;
        }
        return -1;
    case AS_DMARC_TAG_ADKIM:
    case AS_DMARC_TAG_ASPF:
        if (vn == 1 && strchr("rRsS", v[0])) {
            int strict = v[0] == 's' || v[0] == 'S';
            if (bit == AS_DMARC_TAG_ADKIM)
                r->adkim_strict = strict;
            else
                r->aspf_strict = strict;
            return 0;
        }
        return -1;
    case AS_DMARC_TAG_PCT:
        if (!digits_value(v, vn, 100, &num))
            return -1;
        r->pct = (int)num;
        return 0;
    case AS_DMARC_TAG_RI:
        if (!digits_value(v, vn, 4294967295ULL, &num))
            return -1;
        r->ri = (unsigned long)num;
        return 0;
    case AS_DMARC_TAG_FO:
        if (!colon_list_ok(v, vn, fo_items))
            return -1;
        r->fo = as_pool_strndup(pool, v, vn);
        return 0;
    case AS_DMARC_TAG_RF:
        if (!colon_list_ok(v, vn, rf_items))
            return -1;
        r->rf = as_pool_strndup(pool, v, vn);
        return 0;
    case AS_DMARC_TAG_RUA:
    case AS_DMARC_TAG_RUF: {
        /* Case is kept (mailto local parts are case-sensitive); the value
         * counts as valid when it holds a URI we could use. */
        const char *copy = as_pool_strndup(pool, v, vn);
        if (bit == AS_DMARC_TAG_RUA)
            r->rua = copy;
        else
            r->ruf = copy;
        int syntax_ok;
        int usable = urilist_check(copy, &syntax_ok);
        return !syntax_ok ? -1 : usable ? 0 : -2;
    }
    default:
        return -1;
    }
}

enum dmarc_parse_status dmarc_record_parse(struct as_pool *pool, const char *txt, size_t len,
                                           struct as_dmarc_record *out)
{
    memset(out, 0, sizeof *out);
    if (!dmarc_record_is_dmarc(txt, len))
        return DMARC_REC_NOT_DMARC;
    out->psd = 'u';
    out->pct = 100;
    out->ri = 86400;
    out->fo = "0";
    out->rf = "afrf";
    if (len > DMARC_RECORD_MAX)
        return DMARC_REC_TOO_LONG;

    /* Copy, dropping a backslash that escapes ';'. */
    char *buf = as_pool_alloc(pool, len + 1);
    if (!buf)
        return DMARC_REC_TOO_LONG;
    size_t bn = 0;
    for (size_t i = 0; i < len; i++) {
        if (txt[i] == '\\' && i + 1 < len && txt[i + 1] == ';')
            continue;
        buf[bn++] = txt[i];
    }
    buf[bn] = 0;
    out->text = as_pool_strndup(pool, txt, len);

    const char *s = buf;
    int first = 1;
    while (s <= buf + bn) {
        const char *semi = memchr(s, ';', (size_t)(buf + bn - s));
        size_t n = semi ? (size_t)(semi - s) : (size_t)(buf + bn - s);
        const char *chunk = s;
        s = semi ? semi + 1 : buf + bn + 1;
        if (first) {          /* the version, checked above */
            first = 0;
            continue;
        }
        trim(&chunk, &n);
        if (n == 0)
            continue;         /* ";;" and a final ";" are harmless */
        const char *eq = memchr(chunk, '=', n);
        if (!eq) {
            out->nerrors++;
            continue;
        }
        const char *name = chunk;
        size_t nn = (size_t)(eq - chunk);
        const char *v = eq + 1;
        size_t vn = n - nn - 1;
        trim(&name, &nn);
        trim(&v, &vn);
        int alpha = nn > 0;
        for (size_t i = 0; i < nn; i++)
            if (!isalpha((unsigned char)name[i]))
                alpha = 0;
        if (!alpha || vn == 0) {
            out->nerrors++;
            continue;
        }
        const struct tagdef *td = NULL;
        for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
            if (eq_ci(name, nn, tags[i].name))
                td = &tags[i];
        if (!td)
            continue;         /* unknown tags MUST be ignored */
        if (out->present & td->bit)
            continue;         /* a repeated tag: the first one counts */
        out->present |= td->bit;
        int rc = apply_tag(pool, out, td->bit, v, vn);
        if (rc < 0)
            out->invalid |= td->bit;
        if (rc == -1)
            out->nerrors++;
    }
    /* invalid values fall back to the defaults */
    if (out->invalid & AS_DMARC_TAG_PCT) out->pct = 100;
    if (out->invalid & AS_DMARC_TAG_RI) out->ri = 86400;
    return DMARC_REC_OK;
}

int dmarc_record_usable(const struct as_dmarc_record *r, int bis, enum as_dmarc_policy *p)
{
    int bad = r->p == AS_DMARC_POLICY_UNSET || (r->invalid & AS_DMARC_TAG_SP) ||
              (bis && (r->invalid & AS_DMARC_TAG_NP));
    if (!bad) {
        *p = r->p;
        return 1;
    }
    if (dmarc_urilist_usable(r->rua)) {
        *p = AS_DMARC_POLICY_NONE;
        return 1;
    }
    if (bis && r->psd == 'y' && !(r->present & AS_DMARC_TAG_P) && bad &&
        !(r->invalid & (AS_DMARC_TAG_SP | AS_DMARC_TAG_NP))) {
        *p = AS_DMARC_POLICY_NONE;
        return 1;
    }
    return 0;
}
