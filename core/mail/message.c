/*
 * message.c - see message.h.
 *
 * The parser looks at each physical line once: its first bytes say whether
 * it is a blank line, a continuation or a field (name scan up to ':'), and
 * one memchr() finds its end.  Fields go into a pool array that doubles
 * when full, so there is no malloc per field; the abandoned smaller arrays
 * stay in the pool and cost at most as much as the final one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "mail/message.h"
#include "util/pool.h"
#include "util/util.h"

#define MSG_FIELDS_INITIAL 32

static int is_wsp(unsigned char c) { return c == ' ' || c == '\t'; }

/* Length of a field name starting at p, 0 if the line is not a field;
 * *colon is set to the ':' (which may follow WSP, RFC 5322 section 4.5). */
static size_t field_name_len(const char *p, const char *end, const char **colon)
{
    const char *q = p;
    while (q < end && (unsigned char)*q > 32 && (unsigned char)*q < 127 && *q != ':')
        q++;
    size_t n = (size_t)(q - p);
    while (q < end && is_wsp((unsigned char)*q))
        q++;
    if (n == 0 || q >= end || *q != ':')
        return 0;
    *colon = q;
    return n;
}

static struct as_header *fields_grow(struct as_pool *pool, struct as_header *old,
                                     size_t n, size_t *cap)
{
    size_t ncap = *cap ? *cap * 2 : MSG_FIELDS_INITIAL;
    struct as_header *f = as_pool_alloc(pool, ncap * sizeof *f);
    if (n)
        memcpy(f, old, n * sizeof *f);
    *cap = ncap;
    return f;
}

enum as_msg_error as_message_parse(struct as_pool *pool, const char *data, size_t len,
                                   const struct as_msg_limits *lim,
                                   struct as_message **out, char *err, size_t errlen)
{
    size_t max_fields = lim ? lim->max_headers : 0;
    size_t max_size = lim ? lim->max_header_size : 0;
    const char *p = data, *end = data + len;

    if (err && errlen)
        err[0] = '\0';
    if (len == 0)
        p = end = data = "";
    /* mbox separator ("From sender date"): written by local delivery agents,
     * never a header field; "From : x" is one (obsolete WSP before ':') */
    const char *ignored;
    if (len >= 5 && memcmp(p, "From ", 5) == 0 && field_name_len(p, end, &ignored) == 0) {
        const char *nl = memchr(p, '\n', len);
        p = nl ? nl + 1 : end;
    }

    const char *hstart = p;
    /* lines are only searched up to one byte past the size limit: a block
     * that does not end there is too large whatever follows */
    const char *search_end = end;
    if (max_size && (size_t)(end - hstart) > max_size)
        search_end = hstart + max_size + 1;

    struct as_header *fields = NULL;
    size_t n = 0, cap = 0;
    int crlf = -1, sep = 0;
    const char *body = end;

    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || (c == '\r' && p + 1 < end && p[1] == '\n')) {
            sep = 1;
            if (crlf < 0)
                crlf = c == '\r';
            body = p + (c == '\n' ? 1 : 2);
            break;
        }
        const char *colon = NULL;
        size_t namelen = 0;
        if (is_wsp(c)) {
            if (n == 0) {        /* nothing to continue: see message.h */
                body = p;
                break;
            }
        } else if ((namelen = field_name_len(p, end, &colon)) == 0) {
            body = p;
            break;
        }

        const char *nl = p < search_end ? memchr(p, '\n', (size_t)(search_end - p)) : NULL;
        const char *next = nl ? nl + 1 : end;
        if (max_size && ((!nl && search_end < end) || (size_t)(next - hstart) > max_size)) {
            if (err && errlen)
                snprintf(err, errlen,
                         "header block is larger than %zu bytes (limits.max_header_size)",
                         max_size);
            return AS_MSG_HEADERS_TOO_LARGE;
        }
        const char *ce = nl ? nl : end;
        if (nl && ce > p && ce[-1] == '\r')
            ce--;
        if (crlf < 0 && nl)
            crlf = ce != nl;

        if (colon) {
            if (max_fields && n >= max_fields) {
                if (err && errlen)
                    snprintf(err, errlen,
                             "message has more than %zu header fields (limits.max_headers)",
                             max_fields);
                return AS_MSG_TOO_MANY_HEADERS;
            }
            if (n == cap)
                fields = fields_grow(pool, fields, n, &cap);
            struct as_header *h = &fields[n];
            h->name.ptr = p;
            h->name.len = namelen;
            h->value.ptr = colon + 1;
            h->value.len = (size_t)(ce - (colon + 1));
            h->raw.ptr = p;
            h->raw.len = (size_t)(ce - p);
            h->index = n;
            n++;
        } else {
            struct as_header *h = &fields[n - 1];
            h->value.len = (size_t)(ce - h->value.ptr);
            h->raw.len = (size_t)(ce - h->raw.ptr);
        }
        p = next;
    }

    struct as_message *m = as_pool_alloc(pool, sizeof *m);
    m->data = data;
    m->len = len;
    m->fields = fields;
    m->nfields = n;
    m->body_offset = (size_t)(body - data);
    m->crlf = crlf < 0 ? 1 : crlf;
    m->has_separator = sep;
    *out = m;
    return AS_MSG_OK;
}

const char *as_header_unfold_pool(struct as_pool *pool, const struct as_header *h,
                                  size_t *len)
{
    const char *s = h->value.ptr, *e = s + h->value.len;
    while (s < e && (is_wsp((unsigned char)*s) || *s == '\r' || *s == '\n'))
        s++;
    while (e > s && (is_wsp((unsigned char)e[-1]) || e[-1] == '\r' || e[-1] == '\n'))
        e--;

    char *out = as_pool_alloc(pool, (size_t)(e - s) + 1);
    size_t o = 0;
    while (s < e) {
        const char *nl = memchr(s, '\n', (size_t)(e - s));
        if (!nl) {
            memcpy(out + o, s, (size_t)(e - s));
            o += (size_t)(e - s);
            break;
        }
        const char *cut = nl;
        if (cut > s && cut[-1] == '\r')
            cut--;
        /* a line break is only folding when WSP follows; anything else
         * (cannot come from as_message_parse) is kept as data */
        if (nl + 1 < e && is_wsp((unsigned char)nl[1])) {
            memcpy(out + o, s, (size_t)(cut - s));
            o += (size_t)(cut - s);
        } else {
            memcpy(out + o, s, (size_t)(nl + 1 - s));
            o += (size_t)(nl + 1 - s);
        }
        s = nl + 1;
    }
    out[o] = '\0';
    if (len)
        *len = o;
    return out;
}

/* ------------------------------------------------------------------ */
/* Public accessors (authscan/plugin.h).                               */

size_t as_msg_header_total(const struct as_message *m)
{
    return m ? m->nfields : 0;
}

const struct as_header *as_msg_header_at(const struct as_message *m, size_t i)
{
    return m && i < m->nfields ? &m->fields[i] : NULL;
}

static int name_is(const struct as_header *h, const char *name, size_t nlen)
{
    return h->name.len == nlen && as_memcaseeq(h->name.ptr, name, nlen);
}

size_t as_msg_header_count(const struct as_message *m, const char *name)
{
    if (!m || !name)
        return 0;
    size_t nlen = strlen(name), count = 0;
    for (size_t i = 0; i < m->nfields; i++)
        if (name_is(&m->fields[i], name, nlen))
            count++;
    return count;
}

const struct as_header *as_msg_header_get(const struct as_message *m, const char *name,
                                          int nth)
{
    if (!m || !name)
        return NULL;
    size_t nlen = strlen(name);
    if (nth >= 0) {
        for (size_t i = 0; i < m->nfields; i++)
            if (name_is(&m->fields[i], name, nlen) && nth-- == 0)
                return &m->fields[i];
    } else {
        for (size_t i = m->nfields; i-- > 0;)
            if (name_is(&m->fields[i], name, nlen) && ++nth == 0)
                return &m->fields[i];
    }
    return NULL;
}

struct as_str as_msg_body(const struct as_message *m)
{
    struct as_str s = { "", 0 };
    if (m && m->body_offset < m->len) {
        s.ptr = m->data + m->body_offset;
        s.len = m->len - m->body_offset;
    }
    return s;
}

struct as_str as_msg_raw(const struct as_message *m)
{
    struct as_str s = { "", 0 };
    if (m && m->len) {
        s.ptr = m->data;
        s.len = m->len;
    }
    return s;
}

int as_msg_crlf(const struct as_message *m)
{
    return m ? m->crlf : 1;
}
