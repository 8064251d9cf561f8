/*
 * spf_record.c - RFC 7208 record grammar, rewriting for libspf2, macros.
 *
 * The grammar follows RFC 7208 section 12 literally; comments name the
 * rule being enforced when it is not obvious from the code.
 */
#include "spf_record.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

int spf_record_is_spf(const char *s, size_t len)
{
    if (len < 6 || strncasecmp(s, "v=spf1", 6) != 0)
        return 0;
    return len == 6 || s[6] == ' ';
}

/* ---- macro-string --------------------------------------------------- */

static int macro_letter_ok(int c, int exp_text)
{
    c = lower(c);
    if (strchr("slodiphv", c) && c)
        return 1;
    return exp_text && (c == 'c' || c == 'r' || c == 't');
}

static int is_delim(int c) { return c && strchr(".-+,/_=", c) != NULL; }

/* Parses one "%{...}" starting at s[i] == '%' and s[i+1] == '{'.  Returns
 * the index after '}', or 0 if malformed.  Digits are bounded to 128: RFC
 * 7208 7.3 only requires supporting that many and libspf2 keeps the count
 * in an unsigned char. */
static size_t macro_expand_end(const char *s, size_t len, size_t i, int exp_text)
{
    size_t j = i + 2;
    if (j >= len || !macro_letter_ok((unsigned char)s[j], exp_text))
        return 0;
    j++;
    if (j < len && is_digit((unsigned char)s[j])) {
        unsigned v = 0;
        while (j < len && is_digit((unsigned char)s[j])) {
            v = v * 10 + (unsigned)(s[j] - '0');
            if (v > 128)
                return 0;
            j++;
        }
        if (v == 0)
            return 0;   /* RFC 7208 7.3: the DIGIT value MUST be nonzero */
    }
    if (j < len && lower((unsigned char)s[j]) == 'r')
        j++;
    while (j < len && is_delim((unsigned char)s[j]))
        j++;
    if (j >= len || s[j] != '}')
        return 0;
    return j + 1;
}

/* Validates; *last_was_expand tells whether the string ended with a
 * macro-expand (domain-end may be one). */
static int macro_string_check(const char *s, size_t len, int exp_text, int *last_was_expand)
{
    size_t i = 0;
    int last = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 1 >= len)
                return 0;
            if (s[i + 1] == '%' || s[i + 1] == '_' || s[i + 1] == '-') {
                i += 2;
            } else if (s[i + 1] == '{') {
                size_t e = macro_expand_end(s, len, i, exp_text);
                if (!e)
                    return 0;
                i = e;
            } else {
                return 0;
            }
            last = 1;
            continue;
        }
        /* macro-literal = %x21-24 / %x26-7E; SP only in explain-string */
        if (!((c >= 0x21 && c <= 0x7e) || (exp_text && c == ' ')))
            return 0;
        last = 0;
        i++;
    }
    if (last_was_expand)
        *last_was_expand = last;
    return 1;
}

int spf_macro_string_valid(const char *s, size_t len, int exp_text)
{
    return macro_string_check(s, len, exp_text, NULL);
}

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static int toplabel_ok(const char *s, size_t len)
{
    int alpha = 0, dash = 0;
    if (len == 0 || !is_alnum((unsigned char)s[0]) || !is_alnum((unsigned char)s[len - 1]))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_alpha(c))
            alpha = 1;
        else if (c == '-')
            dash = 1;
        else if (!is_digit(c))
            return 0;
    }
    return alpha || dash;
}

/* domain-spec = macro-string domain-end
 * domain-end  = ( "." toplabel [ "." ] ) / macro-expand */
static int domain_spec_ok(const char *s, size_t len)
{
    int last_expand = 0;
    if (len == 0 || !macro_string_check(s, len, 0, &last_expand))
        return 0;
    if (last_expand)
        return 1;
    if (s[len - 1] == '.')
        len--;
    size_t dot = len;
    while (dot > 0 && s[dot - 1] != '.')
        dot--;
    if (dot == 0)
        return 0;   /* no "." before the toplabel: a single label */
    return toplabel_ok(s + dot, len - dot);
}

/* "/" ("0" / %x31-39 0*1DIGIT) with a range check; no leading zeros. */
static int cidr_parse(const char *s, size_t len, int max, int *out)
{
    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return 0;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return 0;
    *out = v;
    return 1;
}

static int all_digits(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_digit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Splits a trailing dual-cidr-length off [s, s+*len). */
static int dual_cidr_split(const char *s, size_t *len, int *c4, int *c6)
{
    size_t n = *len;
    /* "//" ip6-cidr at the end */
    size_t k = n;
    while (k > 0 && is_digit((unsigned char)s[k - 1]))
        k--;
    if (k < n && k >= 2 && s[k - 1] == '/' && s[k - 2] == '/') {
        if (!cidr_parse(s + k, n - k, 128, c6))
            return 0;
        n = k - 2;
    }
    k = n;
    while (k > 0 && is_digit((unsigned char)s[k - 1]))
        k--;
    if (k < n && k >= 1 && s[k - 1] == '/' && !(k >= 2 && s[k - 2] == '/')) {
        if (!cidr_parse(s + k, n - k, 32, c4))
            return 0;
        n = k - 1;
    }
    *len = n;
    return 1;
}

static int parse_mechanism(struct spf_term *t, const char *s, size_t len, const char **err)
{
    size_t i = 0;
    t->qualifier = '+';
    if (len && strchr("+-~?", s[0])) {
        t->qualifier = s[0];
        i = 1;
    }
    size_t ns = i;
    while (i < len && s[i] != ':' && s[i] != '/')
        i++;
    const char *name = s + ns;
    size_t nlen = i - ns;
    const char *rest = s + i;
    size_t rlen = len - i;

#define NAME_IS(lit) (nlen == sizeof(lit) - 1 && strncasecmp(name, lit, nlen) == 0)
    if (NAME_IS("all")) {
        t->kind = SPF_T_ALL;
        if (rlen) { *err = "\"all\" takes no argument"; return -1; }
        return 0;
    }
    if (NAME_IS("include") || NAME_IS("exists")) {
        t->kind = NAME_IS("include") ? SPF_T_INCLUDE : SPF_T_EXISTS;
        if (rlen < 2 || rest[0] != ':' || !domain_spec_ok(rest + 1, rlen - 1)) {
            *err = "bad or missing domain-spec";
            return -1;
        }
        t->domain.ptr = rest + 1;
        t->domain.len = rlen - 1;
        return 0;
    }
    if (NAME_IS("a") || NAME_IS("mx") || NAME_IS("ptr")) {
        t->kind = NAME_IS("a") ? SPF_T_A : NAME_IS("mx") ? SPF_T_MX : SPF_T_PTR;
        const char *d = rest;
        size_t dlen = rlen;
        if (dlen && d[0] == ':') {
            d++;
            dlen--;
            if (dlen == 0) { *err = "empty domain-spec"; return -1; }
        } else if (dlen && d[0] != '/') {
            *err = "bad mechanism";
            return -1;
        }
        if (t->kind != SPF_T_PTR && !dual_cidr_split(d, &dlen, &t->cidr4, &t->cidr6)) {
            *err = "bad CIDR length";
            return -1;
        }
        if (rest[0] == ':') {
            if (!domain_spec_ok(d, dlen)) { *err = "bad domain-spec"; return -1; }
            t->domain.ptr = d;
            t->domain.len = dlen;
        } else if (dlen) {
            *err = "bad CIDR length";
            return -1;
        }
        return 0;
    }
    if (NAME_IS("ip4") || NAME_IS("ip6")) {
        int v6 = NAME_IS("ip6");
        t->kind = v6 ? SPF_T_IP6 : SPF_T_IP4;
        if (rlen < 2 || rest[0] != ':') { *err = "missing address"; return -1; }
        const char *a = rest + 1;
        size_t alen = rlen - 1;
        const char *slash = memchr(a, '/', alen);
        size_t addrlen = slash ? (size_t)(slash - a) : alen;
        char buf[64];
        if (addrlen == 0 || addrlen >= sizeof buf) { *err = "bad address"; return -1; }
        memcpy(buf, a, addrlen);
        buf[addrlen] = 0;
        if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, v6 ? (void *)&t->addr.v6 : (void *)&t->addr.v4) != 1) {
            *err = "bad address";
            return -1;
        }
        if (!v6) {
            /* ip4-network is exactly four dotted decimal octets */
            int dots = 0;
            for (size_t k = 0; k < addrlen; k++)
                dots += buf[k] == '.';
            if (dots != 3) { *err = "bad address"; return -1; }
        }
        if (slash) {
            int *c = v6 ? &t->cidr6 : &t->cidr4;
            if (!all_digits(slash + 1, alen - addrlen - 1) ||
                !cidr_parse(slash + 1, alen - addrlen - 1, v6 ? 128 : 32, c)) {
                *err = "bad CIDR length";
                return -1;
            }
        }
        return 0;
    }
#undef NAME_IS
    *err = "unknown mechanism";
    return -1;
}

static int parse_modifier(struct spf_record *rec, struct spf_term *t, const char *s, size_t len,
                          size_t eq, const char **err)
{
    /* name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
    if (eq == 0 || !is_alpha((unsigned char)s[0])) { *err = "bad modifier name"; return -1; }
    for (size_t i = 1; i < eq; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alnum(c) && c != '-' && c != '_' && c != '.') {
            *err = "bad modifier name";
            return -1;
        }
    }
    t->qualifier = 0;
    t->domain.ptr = s + eq + 1;
    t->domain.len = len - eq - 1;
    int idx = (int)rec->nterms;
    if (eq == 8 && strncasecmp(s, "redirect", 8) == 0) {
        t->kind = SPF_T_REDIRECT;
        if (rec->redirect >= 0) { *err = "redirect= twice"; return -1; }
        rec->redirect = idx;
    } else if (eq == 3 && strncasecmp(s, "exp", 3) == 0) {
        t->kind = SPF_T_EXP;
        if (rec->exp >= 0) { *err = "exp= twice"; return -1; }
        rec->exp = idx;
    } else {
        t->kind = SPF_T_MODIFIER;
        if (!spf_macro_string_valid(t->domain.ptr, t->domain.len, 1)) {
            *err = "bad macro-string in modifier";
            return -1;
        }
        return 0;
    }
    if (!domain_spec_ok(t->domain.ptr, t->domain.len)) {
        *err = "bad domain-spec in modifier";
        return -1;
    }
    return 0;
}

int spf_record_parse(const char *s, size_t len, struct spf_record *rec, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    /* not memset: the struct holds SPF_MAX_TERMS terms (14 KB) and every
     * term is zeroed when it is added; nothing reads past nterms */
    rec->nterms = 0;
    rec->redirect = rec->exp = rec->all = -1;
    if (len > SPF_RECORD_MAX_LEN) { *err = "record too large"; return -1; }
    if (!spf_record_is_spf(s, len)) { *err = "not an SPF record"; return -1; }
    size_t i = 6;
    while (i < len) {
        if (s[i] != ' ') { *err = "terms must be separated by spaces"; return -1; }
        while (i < len && s[i] == ' ')
            i++;
        if (i >= len)
            break;   /* trailing spaces are allowed: record = version terms *SP */
        size_t st = i;
        while (i < len && s[i] != ' ')
            i++;
        if (rec->nterms >= SPF_MAX_TERMS) { *err = "too many terms"; return -1; }
        struct spf_term *t = &rec->terms[rec->nterms];
        memset(t, 0, sizeof *t);
        t->cidr4 = t->cidr6 = -1;
        t->text.ptr = s + st;
        t->text.len = i - st;
        /* A modifier has '=' before any ':' or '/'. */
        size_t k = st;
        while (k < i && s[k] != '=' && s[k] != ':' && s[k] != '/')
            k++;
        int r = (k < i && s[k] == '=')
            ? parse_modifier(rec, t, s + st, i - st, k - st, err)
            : parse_mechanism(t, s + st, i - st, err);
        if (r < 0)
            return -1;
        t->has_macro = t->domain.len && memchr(t->domain.ptr, '%', t->domain.len) != NULL;
        if (t->kind == SPF_T_ALL && rec->all < 0)
            rec->all = (int)rec->nterms;
        rec->nterms++;
    }
    return 0;
}

/* ---- rewriting for libspf2 ----------------------------------------- */

struct outbuf {
    char *p;
    size_t n, cap;
    int overflow;
};

static void out_add(struct outbuf *o, const char *s, size_t len)
{
    if (o->n + len + 1 > o->cap) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->n, s, len);
    o->n += len;
    o->p[o->n] = 0;
}

static void out_str(struct outbuf *o, const char *s) { out_add(o, s, strlen(s)); }

int spf_record_rewrite(const struct spf_record *rec, int client_v6, char *out, size_t outsz)
{
    struct outbuf o = { out, 0, outsz, 0 };
    if (outsz == 0)
        return -1;
    out[0] = 0;
    out_str(&o, "v=spf1");
    for (size_t i = 0; i < rec->nterms; i++) {
        const struct spf_term *t = &rec->terms[i];
        char q[2] = { t->qualifier, 0 };
        if (t->kind == SPF_T_REDIRECT && rec->all >= 0)
            continue;
        if (t->kind == SPF_T_MODIFIER)
            continue;   /* unknown modifiers are ignored (RFC 7208 6); libspf2 rejects some */
        out_str(&o, " ");
        if (t->kind == SPF_T_IP4 && t->cidr4 == 0) {
            out_str(&o, q); out_str(&o, "ip4:0.0.0.0/1 ");
            out_str(&o, q); out_str(&o, "ip4:128.0.0.0/1");
            continue;
        }
        if (t->kind == SPF_T_IP6 && t->cidr6 == 0) {
            out_str(&o, q); out_str(&o, "ip6:::/1 ");
            out_str(&o, q); out_str(&o, "ip6:8000::/1");
            continue;
        }
        if (t->kind == SPF_T_A || t->kind == SPF_T_MX) {
            /* Rebuilt from its parts: only the CIDR of the client's family
             * matters, and libspf2 rejects /0 in either position. */
            int cidr = client_v6 ? t->cidr6 : t->cidr4;
            out_str(&o, q);
            out_str(&o, t->kind == SPF_T_A ? "a" : "mx");
            if (cidr == 0) {
                out_str(&o, ":");
                if (t->domain.len) {
                    size_t dl = t->domain.len;
                    if (t->domain.ptr[dl - 1] == '.')
                        dl--;
                    out_add(&o, t->domain.ptr, dl);
                } else {
                    out_str(&o, "%{d}");
                }
                out_str(&o, "." SPF_CIDR0_SUFFIX);
                continue;
            }
            if (t->domain.len) {
                out_str(&o, ":");
                out_add(&o, t->domain.ptr, t->domain.len);
            }
            if (cidr > 0) {
                char cb[8];
                snprintf(cb, sizeof cb, client_v6 ? "//%d" : "/%d", cidr);
                out_str(&o, cb);
            }
            continue;
        }
        out_add(&o, t->text.ptr, t->text.len);
    }
    return o.overflow ? -1 : 0;
}

/* ---- names ---------------------------------------------------------- */

int spf_name_valid(const char *name)
{
    size_t len = strlen(name), lab = 0;
    if (len == 0 || len > SPF_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (lab == 0)
                return 0;
            lab = 0;
            continue;
        }
        /* any octet may appear in a DNS label (RFC 2181 11); macro
         * expansion can produce spaces (%_), controls cannot come from a
         * valid record */
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (++lab > 63)
            return 0;
    }
    return 1;
}

const char *spf_name_truncate(const char *name)
{
    while (strlen(name) > SPF_NAME_MAX) {
        const char *dot = strchr(name, '.');
        if (!dot)
            break;
        name = dot + 1;
    }
    return name;
}

int spf_identity_domain_valid(const char *name)
{
    size_t len = strlen(name);
    if (len && name[len - 1] == '.')
        len--;
    if (len == 0 || len > SPF_NAME_MAX || name[0] == '[' || !memchr(name, '.', len))
        return 0;
    char buf[SPF_NAME_MAX + 1];
    memcpy(buf, name, len);
    buf[len] = 0;
    if (!spf_name_valid(buf))
        return 0;
    /* a name made only of digits and dots is an address, not a domain */
    for (size_t i = 0; i < len; i++)
        if (!is_digit((unsigned char)buf[i]) && buf[i] != '.')
            return 1;
    return 0;
}

/* ---- macro expansion ----------------------------------------------- */

static int url_unreserved(int c) { return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~'; }

static void macro_value(const struct spf_macro_ctx *mc, int letter, char *buf, size_t bufsz)
{
    const char *v = NULL;
    buf[0] = 0;
    switch (letter) {
    case 's': v = mc->sender; break;
    case 'l': v = mc->local; break;
    case 'o': v = mc->sender_dom; break;
    case 'd': v = mc->domain; break;
    case 'h': v = mc->helo; break;
    case 'r': v = mc->receiver ? mc->receiver : "unknown"; break;
    case 'p': v = mc->validated ? mc->validated : "unknown"; break;
    case 'v': v = mc->family == AF_INET6 ? "ip6" : "in-addr"; break;
    case 't': snprintf(buf, bufsz, "%lld", mc->now); return;
    case 'c':
        inet_ntop(mc->family, &mc->ip, buf, (socklen_t)bufsz);
        return;
    case 'i':
        if (mc->family == AF_INET6) {
            /* RFC 7208 7.3: dot-separated nibbles */
            size_t n = 0;
            for (int k = 0; k < 16 && n + 4 < bufsz; k++) {
                static const char hex[] = "0123456789abcdef";
                buf[n++] = hex[mc->ip.v6.s6_addr[k] >> 4];
                buf[n++] = '.';
                buf[n++] = hex[mc->ip.v6.s6_addr[k] & 15];
                buf[n++] = '.';
            }
            if (n)
                n--;
            buf[n] = 0;
        } else {
            inet_ntop(AF_INET, &mc->ip.v4, buf, (socklen_t)bufsz);
        }
        return;
    }
    snprintf(buf, bufsz, "%s", v ? v : "");
}

int spf_macro_expand(const char *s, size_t len, const struct spf_macro_ctx *mc, int exp_text,
                     char *out, size_t outsz)
{
    struct outbuf o = { out, 0, outsz, 0 };
    if (outsz == 0)
        return -1;
    out[0] = 0;
    size_t i = 0;
    while (i < len) {
        if (s[i] != '%') {
            unsigned char c = (unsigned char)s[i];
            if (!((c >= 0x21 && c <= 0x7e) || (exp_text && c == ' ')))
                return -1;
            out_add(&o, s + i, 1);
            i++;
            continue;
        }
        if (i + 1 >= len)
            return -1;
        char n1 = s[i + 1];
        if (n1 == '%') { out_str(&o, "%"); i += 2; continue; }
        if (n1 == '_') { out_str(&o, " "); i += 2; continue; }
        if (n1 == '-') { out_str(&o, "%20"); i += 2; continue; }
        if (n1 != '{')
            return -1;
        size_t end = macro_expand_end(s, len, i, exp_text);
        if (!end)
            return -1;
        size_t j = i + 2;
        int letter = (unsigned char)s[j];
        int upper = letter >= 'A' && letter <= 'Z';
        letter = lower(letter);
        j++;
        unsigned digits = 0;
        while (is_digit((unsigned char)s[j]))
            digits = digits * 10 + (unsigned)(s[j++] - '0');
        int rev = 0;
        if (lower((unsigned char)s[j]) == 'r') {
            rev = 1;
            j++;
        }
        char delims[16] = "";
        size_t nd = 0;
        while (s[j] != '}' && nd + 1 < sizeof delims)
            delims[nd++] = s[j++];
        delims[nd] = 0;
        if (nd == 0)
            strcpy(delims, ".");
        i = end;

        char val[1024];
        macro_value(mc, letter, val, sizeof val);
        /* split into parts */
        const char *parts[130];
        size_t plen[130], np = 0;
        const char *p = val;
        for (;;) {
            const char *q = p;
            while (*q && !strchr(delims, *q))
                q++;
            if (np < 130) {
                parts[np] = p;
                plen[np] = (size_t)(q - p);
                np++;
            }
            if (!*q)
                break;
            p = q + 1;
        }
        size_t first = 0, last = np;   /* [first, last) in output order */
        if (rev) {
            for (size_t a = 0, b = np - 1; a < b; a++, b--) {
                const char *tp = parts[a]; parts[a] = parts[b]; parts[b] = tp;
                size_t tl = plen[a]; plen[a] = plen[b]; plen[b] = tl;
            }
        }
        /* keep the rightmost `digits` parts (RFC 7208 7.3) */
        if (digits && digits < np)
            first = np - digits;
        char res[1024];
        size_t rn = 0;
        for (size_t k = first; k < last; k++) {
            if (k > first && rn + 1 < sizeof res)
                res[rn++] = '.';
            for (size_t m = 0; m < plen[k] && rn + 1 < sizeof res; m++)
                res[rn++] = parts[k][m];
        }
        res[rn] = 0;
        if (upper) {
            for (size_t k = 0; k < rn; k++) {
                unsigned char c = (unsigned char)res[k];
                if (url_unreserved(c)) {
                    out_add(&o, (const char *)&res[k], 1);
                } else {
                    char esc[4];
                    snprintf(esc, sizeof esc, "%%%02X", c);
                    out_str(&o, esc);
                }
            }
        } else {
            out_add(&o, res, rn);
        }
    }
    return o.overflow ? -1 : (int)o.n;
}
