/*
 * dmarc_headers.c - Authentication-Results text and From munging; see
 * dmarc_headers.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "dmarc_headers.h"

/* ---- Authentication-Results ------------------------------------------- */

const char *dmarc_reason_names(struct as_pool *pool, unsigned reasons)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        { AS_DMARC_REASON_TESTING, "testing" },
        { AS_DMARC_REASON_SAMPLED_OUT, "sampled_out" },
        { AS_DMARC_REASON_MAILING_LIST, "mailing_list" },
        { AS_DMARC_REASON_MULTI_FROM, "multiple_from" },
        { AS_DMARC_REASON_INCOMPLETE, "incomplete" },
        { AS_DMARC_REASON_BAD_POLICY, "bad_policy" },
        { AS_DMARC_REASON_NO_AUTHOR, "no_author_domain" },
        { AS_DMARC_REASON_ARC_TRUSTED, "trusted_forwarder" },
    };
    char buf[160];
    size_t k = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (reasons & names[i].bit)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", k ? " " : "", names[i].name);
    return as_pool_strdup(pool, buf);
}

static enum as_dmarc_policy evaluated_policy(const struct as_dmarc_result *r)
{
    if (r->result != AS_DMARC_FAIL)
        return r->policy;
    /* the mailing-list downgrade is ours, not a policy option */
    if (r->reasons & AS_DMARC_REASON_MAILING_LIST)
        return AS_DMARC_POLICY_REJECT;
    /* and so is a trusted ARC sealer's override */
    if ((r->reasons & AS_DMARC_REASON_ARC_TRUSTED) && r->version >= 2)
        return r->override_from;
    return r->disposition;
}

const char *dmarc_ar_comment(struct as_pool *pool, const struct as_dmarc_result *r)
{
    if (!r->record || !r->policy)
        return NULL;
    const struct as_dmarc_record *rec = r->record;
    const char *sp = rec->sp ? as_dmarc_policy_name(rec->sp) : NULL;
    const char *dis = r->result == AS_DMARC_FAIL || r->result == AS_DMARC_PASS
                          ? as_dmarc_policy_name(r->disposition) : NULL;
    const char *why = dmarc_reason_names(pool, r->reasons & (AS_DMARC_REASON_TESTING |
                                                             AS_DMARC_REASON_SAMPLED_OUT |
                                                             AS_DMARC_REASON_MAILING_LIST |
                                                             AS_DMARC_REASON_ARC_TRUSTED));
    const char *arc = (r->reasons & AS_DMARC_REASON_ARC_TRUSTED) && r->version >= 2
                          ? r->override_comment : NULL;
    /* only %s: as_pool_printf formats it without vsnprintf */
    return as_pool_printf(pool, "p=%s%s%s%s%s%s%s%s%s",
                          as_dmarc_policy_name(rec->p ? rec->p : AS_DMARC_POLICY_NONE),
                          sp ? " sp=" : "", sp ? sp : "", dis ? " dis=" : "", dis ? dis : "",
                          *why ? " " : "", why, arc ? " " : "", arc ? arc : "");
}

const char *dmarc_ar_policy(const struct as_dmarc_result *r)
{
    return r->record && r->policy ? as_dmarc_policy_name(evaluated_policy(r)) : NULL;
}

const char *dmarc_ar_resinfo(struct as_pool *pool, const struct as_dmarc_result *r)
{
    const char *comment = dmarc_ar_comment(pool, r);
    const char *pol = dmarc_ar_policy(r);
    return as_pool_printf(pool, "dmarc=%s%s%s%s%s%s%s", as_dmarc_res_name(r->result),
                          comment ? " (" : "", comment ? comment : "", comment ? ")" : "",
                          r->author_domain ? " header.from=" : "",
                          r->author_domain ? r->author_domain : "",
                          pol ? as_pool_printf(pool, " policy.dmarc=%s", pol) : "");
}

/* ---- From munging ------------------------------------------------------ */

static int all_ascii_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n) v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[k++] = tab[(v >> 18) & 63];
        out[k++] = tab[(v >> 12) & 63];
        out[k++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[k] = 0;
}

const char *dmarc_phrase(struct as_pool *pool, const char *text)
{
    if (!text)
        return "";
    if (all_ascii_printable(text)) {
        size_t n = strlen(text);
        char *o = as_pool_alloc(pool, 2 * n + 3);
        size_t k = 0;
        o[k++] = '"';
        for (const char *p = text; *p; p++) {
            if (*p == '"' || *p == '\\')
                o[k++] = '\\';
            o[k++] = *p;
        }
        o[k++] = '"';
        o[k] = 0;
        return o;
    }
    /* RFC 2047 encoded-words of at most 45 octets each (60 base64
     * characters, 72 with the framing), split on UTF-8 boundaries;
     * control characters are dropped. */
    size_t n = strlen(text);
    char *o = as_pool_alloc(pool, n * 3 + (n / 30 + 2) * 16);
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        unsigned char chunk[48];
        size_t cn = 0;
        while (*p) {
            size_t clen = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : 4;
            size_t avail = strnlen((const char *)p, clen);
            if (cn + avail > 45)
                break;
            for (size_t i = 0; i < avail; i++)
                if (p[i] >= 0x20 && p[i] != 0x7f)
                    chunk[cn++] = p[i];
            p += avail;
        }
        if (cn == 0)
            break;
        char enc[80];
        b64(chunk, cn, enc);
        k += (size_t)sprintf(o + k, "%s=?UTF-8?B?%s?=", k ? " " : "", enc);
    }
    o[k] = 0;
    return o;
}

static char *strip_crlf(struct as_pool *pool, const char *s)
{
    char *o = as_pool_strdup(pool, s ? s : "");
    for (char *p = o; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    return o;
}

int dmarc_munge(struct as_pool *pool, enum dmarc_munge_style style, const char *display,
                const char *addr, const char *orig_value, const char *list_addr,
                const char *list_name, struct dmarc_munged *out)
{
    memset(out, 0, sizeof *out);
    if (!addr || !*addr || !strchr(addr, '@') || !orig_value)
        return -1;
    for (const char *p = addr; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>')
            return -1;
    const char *who = display && *display ? display : addr;
    if (style == DMARC_MUNGE_VIA) {
        if (!list_addr || !strchr(list_addr, '@'))
            return -1;
        const char *name = list_name && *list_name ? list_name : list_addr;
        const char *phrase = dmarc_phrase(pool, as_pool_printf(pool, "%s via %s", who, name));
        out->from = as_pool_printf(pool, "%s <%s>", phrase, list_addr);
    } else {
        const char *phrase = display && *display ? dmarc_phrase(pool, display) : NULL;
        out->from = phrase ? as_pool_printf(pool, "%s <%s.INVALID>", phrase, addr)
                           : as_pool_printf(pool, "<%s.INVALID>", addr);
    }
    out->reply_to = strip_crlf(pool, orig_value);
    out->original = out->reply_to;
    return 0;
}

size_t dmarc_scan_domains(struct as_pool *pool, const char *value, const char **out, size_t max)
{
    size_t n = 0;
    for (const char *at = value ? strchr(value, '@') : NULL; at && n < max;
         at = strchr(at + 1, '@')) {
        const char *d = at + 1;
        size_t len = 0;
        while (d[len] && (isalnum((unsigned char)d[len]) || d[len] == '.' || d[len] == '-' ||
                          (unsigned char)d[len] >= 0x80))
            len++;
        while (len && d[len - 1] == '.')
            len--;
        const char *norm = len ? as_domain_normalize(pool, d, len) : NULL;
        if (!norm || !strchr(norm, '.'))
            continue;
        int dup = 0;
        for (size_t i = 0; i < n; i++)
            dup |= strcmp(out[i], norm) == 0;
        if (!dup)
            out[n++] = norm;
    }
    return n;
}
