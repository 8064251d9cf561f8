/*
 * address.c - see address.h.
 *
 * The address-list parser is a recursive-descent parser over the raw field
 * value (folding included: CR and LF are just whitespace to it, and are
 * dropped inside quoted strings, which is what unfolding would do).  A
 * phrase is read once into two forms at the same time, because whether it
 * was a display name or a local part is only known from the character
 * after it ('<' or ':' versus '@').
 */
#define _GNU_SOURCE      /* memmem */
#include <errno.h>
#include <iconv.h>
#include <stdarg.h>
#include <idn2.h>
#include <string.h>
#include "mail/address.h"
#include "mail/message.h"
#include "util/pool.h"
#include "util/util.h"

/* ------------------------------------------------------------------ */
/* Character classes.                                                  */

static int is_atext(unsigned char c)
{
    if (c >= 0x80)        /* RFC 6532: UTF-8 is atext */
        return 1;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '/': case '=': case '?': case '^': case '_':
    case '`': case '{': case '|': case '}': case '~':
        return 1;
    }
    return 0;
}

static int is_lwsp(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ------------------------------------------------------------------ */
/* as_domain_normalize                                                 */

static int domain_check_ascii(char *s, size_t len)
{
    size_t label = 0;
    if (len == 0 || len > 253)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)as_tolower((unsigned char)s[i]);
        s[i] = (char)c;
        if (c == '.') {
            if (label == 0)
                return -1;
            label = 0;
            continue;
        }
        /* LDH, plus '_' because DKIM and DMARC names (_domainkey, _dmarc)
         * and real SPF targets use it */
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return -1;
        if (++label > 63)
            return -1;
    }
    return label == 0 ? -1 : 0;
}

const char *as_domain_normalize(struct as_pool *pool, const char *s, size_t len)
{
    if (!s || len == 0 || len > AS_DOMAIN_MAX_INPUT)
        return NULL;
    if (s[len - 1] == '.')
        len--;
    if (len == 0)
        return NULL;

    int ascii = 1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0')
            return NULL;
        if ((unsigned char)s[i] >= 0x80)
            ascii = 0;
    }

    char *buf;
    if (ascii) {
        buf = as_pool_strndup(pool, s, len);
    } else {
        char in[AS_DOMAIN_MAX_INPUT + 1];
        memcpy(in, s, len);
        in[len] = '\0';
        char *idn = NULL;
        /* IDNA2008 with the UTS#46 mapping; transitional processing as a
         * fallback for names only IDNA2003 accepted (as browsers do) */
        int rc = idn2_to_ascii_8z(in, &idn, IDN2_NONTRANSITIONAL);
        if (rc != IDN2_OK) {
            idn2_free(idn);
            idn = NULL;
            rc = idn2_to_ascii_8z(in, &idn, IDN2_TRANSITIONAL);
        }
        if (rc != IDN2_OK || !idn) {
            idn2_free(idn);
            return NULL;
        }
        buf = as_pool_strdup(pool, idn);
        idn2_free(idn);
        len = strlen(buf);
    }
    return domain_check_ascii(buf, len) == 0 ? buf : NULL;
}

/* ------------------------------------------------------------------ */
/* RFC 2047 encoded-words                                              */

struct ew {
    char charset[64];
    char enc;              /* 'B' or 'Q' */
    const char *text, *text_end;
    const char *end;       /* after "?=" */
};

static int ew_charset_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '+' || c == '.' || c == ':';
}

/* Recognizes "=?charset[*lang]?B|Q?text?=" at p.  The charset may only use
 * name characters: it goes to iconv_open(), which gives meaning to '/'. */
static int ew_parse(const char *p, const char *end, struct ew *w)
{
    const char *q = p + 2, *cs = q;
    while (q < end && ew_charset_char((unsigned char)*q))
        q++;
    size_t cslen = (size_t)(q - cs);
    if (q < end && *q == '*') {               /* RFC 2231 language suffix */
        q++;
        while (q < end && ew_charset_char((unsigned char)*q))
            q++;
    }
    if (cslen == 0 || cslen >= sizeof w->charset || q + 3 > end || *q != '?')
        return 0;
    char enc = (char)as_tolower((unsigned char)q[1]);
    if ((enc != 'b' && enc != 'q') || q[2] != '?')
        return 0;
    const char *t = q + 3, *te = t;
    while (te < end && *te != '?' && (unsigned char)*te > ' ' && *te != 0x7f)
        te++;
    if (te + 2 > end || te[0] != '?' || te[1] != '=')
        return 0;
    memcpy(w->charset, cs, cslen);
    w->charset[cslen] = '\0';
    w->enc = enc == 'b' ? 'B' : 'Q';
    w->text = t;
    w->text_end = te;
    w->end = te + 2;
    return 1;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Appends the decoded bytes of w to out; -1 (out unchanged) if the text is
 * not valid B or Q.  Missing B padding is accepted: common and harmless. */
static int ew_decode(const struct ew *w, struct sbuf *out)
{
    size_t start = out->len;
    const unsigned char *s = (const unsigned char *)w->text;
    const unsigned char *e = (const unsigned char *)w->text_end;
    if (w->enc == 'Q') {
        for (; s < e; s++) {
            if (*s == '_') {
                sbuf_addc(out, ' ');
            } else if (*s == '=') {
                int hi, lo;
                if (e - s < 3 || (hi = as_hexval(s[1])) < 0 || (lo = as_hexval(s[2])) < 0)
                    goto bad;
                sbuf_addc(out, (char)(hi << 4 | lo));
                s += 2;
            } else {
                sbuf_addc(out, (char)*s);
            }
        }
        return 0;
    }
    unsigned acc = 0;
    int bits = 0, pad = 0;
    size_t n = 0;
    for (; s < e; s++, n++) {
        if (*s == '=') {
            pad++;
            continue;
        }
        int v = b64_value(*s);
        if (v < 0 || pad)
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            sbuf_addc(out, (char)((acc >> bits) & 0xff));
        }
    }
    /* a lone sextet cannot encode a byte; more than two '=' is not padding */
    if ((n - (size_t)pad) % 4 == 1 || pad > 2 || (pad && n % 4 != 0))
        goto bad;
    return 0;
bad:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return -1;
}

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* Converts bytes in charset cs to UTF-8 appended to out; -1 (out
 * unchanged) if the charset is unknown or the bytes are not valid in it. */
static int charset_to_utf8(const char *cs, const char *in, size_t inlen, struct sbuf *out)
{
    if (as_strcaseeq(cs, "utf-8") || as_strcaseeq(cs, "utf8") ||
        as_strcaseeq(cs, "us-ascii")) {
        if (!utf8_valid((const unsigned char *)in, inlen))
            return -1;
        sbuf_add(out, in, inlen);
        return 0;
    }
    iconv_t cd = iconv_open("UTF-8", cs);
    if (cd == (iconv_t)-1)
        return -1;
    size_t start = out->len;
    char *ip = (char *)in;
    size_t il = inlen;
    int rc = 0;
    for (int flushing = 0;;) {
        sbuf_reserve(out, il * 4 + 16);
        char *op = out->data + out->len;
        size_t ol = out->cap - out->len - 1;
        size_t r = flushing ? iconv(cd, NULL, NULL, &op, &ol) : iconv(cd, &ip, &il, &op, &ol);
        out->len = (size_t)(op - out->data);
        if (r == (size_t)-1) {
            if (errno == E2BIG)
                continue;
            rc = -1;
            break;
        }
        if (flushing)
            break;
        flushing = 1;    /* stateful charsets (ISO-2022-JP) end in a shift */
    }
    iconv_close(cd);
    if (rc < 0)
        out->len = start;
    out->data[out->len] = '\0';
    return rc;
}

struct ew_run {
    int active;
    char charset[64];
    struct sbuf bytes;
    const char *raw, *raw_end;   /* the words as written, for failures */
};

/* Returns -1 if the run had to be written as it was. */
static int ew_run_flush(struct ew_run *run, struct sbuf *out)
{
    int rc = 0;
    if (!run->active)
        return 0;
    if (charset_to_utf8(run->charset, run->bytes.data ? run->bytes.data : "",
                        run->bytes.len, out) < 0) {
        sbuf_add(out, run->raw, (size_t)(run->raw_end - run->raw));
        rc = -1;
    }
    run->active = 0;
    sbuf_reset(&run->bytes);
    return rc;
}

static int all_lwsp(const char *s, const char *e)
{
    for (; s < e; s++)
        if (!is_lwsp((unsigned char)*s))
            return 0;
    return 1;
}

static void decode_words(const char *s, size_t len, struct sbuf *out)
{
    const char *p = s, *end = s + len, *lit = s;
    struct ew_run run = { 0 };
    struct sbuf word = { 0 };
    int prev_ew = 0;

    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), "=?", 2);
        struct ew w;
        if (!q)
            break;
        if (!ew_parse(q, end, &w)) {
            p = q + 2;
            continue;
        }
        /* RFC 2047 section 6.2: white space between adjacent encoded-words
         * is not displayed; bytes of one charset are converted together so
         * a character split across two words still decodes */
        int gap_ws = all_lwsp(lit, q);
        sbuf_reset(&word);
        if (ew_decode(&w, &word) == 0) {
            if (run.active && gap_ws && as_strcaseeq(run.charset, w.charset)) {
                sbuf_add(&run.bytes, word.data ? word.data : "", word.len);
                run.raw_end = w.end;
            } else {
                /* a run that could not be converted is shown as written,
                 * and so is the white space around it */
                int flushed = ew_run_flush(&run, out) == 0;
                int drop_gap = prev_ew && gap_ws && flushed;
                if (!drop_gap)
                    sbuf_add(out, lit, (size_t)(q - lit));
                run.active = 1;
                strcpy(run.charset, w.charset);
                sbuf_add(&run.bytes, word.data ? word.data : "", word.len);
                run.raw = drop_gap ? lit : q;
                run.raw_end = w.end;
            }
            prev_ew = 1;
        } else {
            ew_run_flush(&run, out);
            sbuf_add(out, lit, (size_t)(w.end - lit));
            prev_ew = 0;
        }
        lit = p = w.end;
    }
    ew_run_flush(&run, out);
    sbuf_add(out, lit, (size_t)(end - lit));
    sbuf_free(&run.bytes);
    sbuf_free(&word);
}

const char *as_decode_encoded_words(struct as_pool *pool, const char *s, size_t len)
{
    if (!s)
        return NULL;
    if (!memmem(s, len, "=?", 2))
        return as_pool_strndup(pool, s, len);
    struct sbuf out = { 0 };
    decode_words(s, len, &out);
    const char *r = as_pool_strndup(pool, out.data ? out.data : "", out.len);
    sbuf_free(&out);
    return r;
}

/* ------------------------------------------------------------------ */
/* Address lists                                                       */

struct aparse {
    struct as_pool *pool;
    const char *p, *end;
    const char *err;
    struct sbuf dn;          /* phrase as a display name */
    struct sbuf lp;          /* phrase as a local part */
    struct sbuf dom;         /* domain as written */
    struct as_mailbox *boxes;
    size_t nboxes, cap;
    size_t ngroups;
};

struct phrase {
    size_t ntok;             /* words and dots */
    int lp_ok;               /* a valid (obs-)local-part: no two words in a row */
};

static int fail(struct aparse *a, const char *err)
{
    a->err = err;
    return -1;
}

static int skip_comment(struct aparse *a)
{
    int depth = 0;
    while (a->p < a->end) {
        char c = *a->p++;
        if (c == '\\') {
            if (a->p >= a->end)
                break;
            a->p++;
        } else if (c == '(') {
            if (++depth > AS_ADDR_MAX_COMMENT_DEPTH)
                return fail(a, "comments nested too deeply");
        } else if (c == ')') {
            if (--depth == 0)
                return 0;
        }
    }
    return fail(a, "unterminated comment");
}

/* Skips CFWS; *saw (if given) is set when anything was skipped. */
static int skip_cfws(struct aparse *a, int *saw)
{
    for (;;) {
        while (a->p < a->end && is_lwsp((unsigned char)*a->p)) {
            a->p++;
            if (saw)
                *saw = 1;
        }
        if (a->p < a->end && *a->p == '(') {
            if (skip_comment(a) < 0)
                return -1;
            if (saw)
                *saw = 1;
            continue;
        }
        return 0;
    }
}

/* Reads a quoted string at a->p (on the '"') into out, unquoted. */
static int read_qstring(struct aparse *a, struct sbuf *out)
{
    a->p++;
    while (a->p < a->end) {
        char c = *a->p++;
        if (c == '"')
            return 0;
        if (c == '\\') {
            if (a->p >= a->end)
                break;
            c = *a->p++;
        } else if (c == '\r' || c == '\n') {
            continue;        /* folding: the WSP after it stays */
        }
        if (c == '\0')
            return fail(a, "NUL byte in quoted string");
        sbuf_addc(out, c);
    }
    return fail(a, "unterminated quoted string");
}

/* Reads words, quoted strings and dots up to the next other special. */
static int parse_phrase(struct aparse *a, struct phrase *ph)
{
    int last_word = 0;
    sbuf_reset(&a->dn);
    sbuf_reset(&a->lp);
    ph->ntok = 0;
    ph->lp_ok = 1;
    for (;;) {
        int ws = 0;
        if (skip_cfws(a, &ws) < 0)
            return -1;
        if (a->p >= a->end)
            return 0;
        unsigned char c = (unsigned char)*a->p;
        if (c != '"' && c != '.' && !is_atext(c))
            return 0;
        if (ws && a->dn.len)
            sbuf_addc(&a->dn, ' ');
        size_t before = a->dn.len;
        if (c == '"') {
            if (read_qstring(a, &a->dn) < 0)
                return -1;
        } else if (c == '.') {
            sbuf_addc(&a->dn, '.');
            a->p++;
        } else {
            const char *s = a->p;
            while (a->p < a->end && is_atext((unsigned char)*a->p))
                a->p++;
            sbuf_add(&a->dn, s, (size_t)(a->p - s));
        }
        int is_word = c != '.';
        if (is_word && last_word)
            ph->lp_ok = 0;
        last_word = is_word;
        if (a->dn.len > before)        /* an empty "" leaves dn unallocated */
            sbuf_add(&a->lp, a->dn.data + before, a->dn.len - before);
        ph->ntok++;
    }
}

/* Reads the domain after '@' into a->dom. */
static int parse_domain(struct aparse *a, unsigned *flags)
{
    sbuf_reset(&a->dom);
    if (skip_cfws(a, NULL) < 0)
        return -1;
    if (a->p < a->end && *a->p == '[') {
        sbuf_addc(&a->dom, '[');
        a->p++;
        while (a->p < a->end && *a->p != ']') {
            unsigned char c = (unsigned char)*a->p++;
            if (c == '\\') {                  /* obs-dtext: quoted-pair */
                if (a->p >= a->end)
                    break;
                c = (unsigned char)*a->p++;
            } else if (is_lwsp(c)) {
                continue;
            } else if (c == '[') {
                return fail(a, "'[' inside a domain literal");
            }
            if (c < 33 || c == 127)
                return fail(a, "control character in a domain literal");
            sbuf_addc(&a->dom, (char)as_tolower(c));
        }
        if (a->p >= a->end)
            return fail(a, "unterminated domain literal");
        a->p++;
        sbuf_addc(&a->dom, ']');
        *flags |= AS_MAILBOX_DOMAIN_LITERAL;
        return skip_cfws(a, NULL);
    }
    /* obs-domain: CFWS may surround the dots, but two atoms need a dot */
    int last_atom = 0;
    for (;;) {
        if (a->p < a->end && is_atext((unsigned char)*a->p) && !last_atom) {
            const char *s = a->p;
            while (a->p < a->end && is_atext((unsigned char)*a->p))
                a->p++;
            sbuf_add(&a->dom, s, (size_t)(a->p - s));
            last_atom = 1;
        } else if (a->p < a->end && *a->p == '.') {
            sbuf_addc(&a->dom, '.');
            a->p++;
            last_atom = 0;
        } else {
            break;
        }
        if (skip_cfws(a, NULL) < 0)
            return -1;
    }
    if (a->dom.len == 0)
        return fail(a, "missing domain after '@'");
    return 0;
}

static const char *display_from_scratch(struct aparse *a)
{
    if (a->dn.len == 0)
        return NULL;
    return as_decode_encoded_words(a->pool, a->dn.data, a->dn.len);
}

/* Whitespace runs collapsed to one space, ends trimmed, encoded-words
 * decoded: for the sloppy "j@x.com <j@x.com>" display name. */
static const char *display_from_raw(struct aparse *a, const char *s, const char *e)
{
    struct sbuf b = { 0 };
    while (s < e && is_lwsp((unsigned char)*s))
        s++;
    while (e > s && is_lwsp((unsigned char)e[-1]))
        e--;
    for (; s < e; s++) {
        if (is_lwsp((unsigned char)*s)) {
            if (b.len && b.data[b.len - 1] != ' ')
                sbuf_addc(&b, ' ');
        } else {
            sbuf_addc(&b, *s);
        }
    }
    const char *r = b.len ? as_decode_encoded_words(a->pool, b.data, b.len) : NULL;
    sbuf_free(&b);
    return r;
}

/* Adds a mailbox from a->lp (local part) and, if has_domain, a->dom. */
static int add_mailbox(struct aparse *a, const char *display, const char *group,
                       int has_domain, unsigned flags)
{
    if (a->nboxes >= AS_ADDR_MAX_BOXES)
        return fail(a, "more than 1000 mailboxes in an address list");
    if (a->nboxes == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 4;
        struct as_mailbox *nb = as_pool_alloc(a->pool, ncap * sizeof *nb);
        if (a->nboxes)
            memcpy(nb, a->boxes, a->nboxes * sizeof *nb);
        a->boxes = nb;
        a->cap = ncap;
    }
    struct as_mailbox *mb = &a->boxes[a->nboxes++];
    memset(mb, 0, sizeof *mb);
    mb->display_name = display;
    mb->group = group;
    mb->local_part = as_pool_strndup(a->pool, a->lp.data ? a->lp.data : "", a->lp.len);
    if (!has_domain) {
        mb->addr = mb->local_part;
        mb->flags = flags;
        return 0;
    }
    mb->addr = as_pool_printf(a->pool, "%s@%.*s", mb->local_part, (int)a->dom.len,
                              a->dom.data);
    if (flags & AS_MAILBOX_DOMAIN_LITERAL) {
        mb->domain = as_pool_strndup(a->pool, a->dom.data, a->dom.len);
    } else {
        mb->domain = as_domain_normalize(a->pool, a->dom.data, a->dom.len);
        for (size_t i = 0; mb->domain && i < a->dom.len; i++)
            if ((unsigned char)a->dom.data[i] >= 0x80) {
                flags |= AS_MAILBOX_IDN;
                break;
            }
    }
    mb->flags = flags;
    return 0;
}

/* angle-addr = "<" [obs-route] addr-spec ">", at a->p on the '<'. */
static int parse_angle(struct aparse *a, const char *display, const char *group)
{
    struct phrase ph;
    unsigned flags = 0;
    a->p++;
    if (skip_cfws(a, NULL) < 0)
        return -1;
    if (a->p < a->end && *a->p == '@') {
        /* obs-route: source routes are ignored (RFC 5322 section 4.4) */
        for (;;) {
            a->p++;
            unsigned ignored = 0;
            if (parse_domain(a, &ignored) < 0)
                return -1;
            while (a->p < a->end && *a->p == ',') {
                a->p++;
                if (skip_cfws(a, NULL) < 0)
                    return -1;
            }
            if (a->p < a->end && *a->p == '@')
                continue;
            if (a->p < a->end && *a->p == ':') {
                a->p++;
                break;
            }
            return fail(a, "malformed route in angle address");
        }
        if (skip_cfws(a, NULL) < 0)
            return -1;
    }
    if (parse_phrase(a, &ph) < 0)
        return -1;
    if (ph.ntok && !ph.lp_ok)
        return fail(a, "local part has several words without dots");
    int has_domain = 0;
    if (a->p < a->end && *a->p == '@') {
        if (ph.ntok == 0)
            return fail(a, "'@' without local part");
        a->p++;
        if (parse_domain(a, &flags) < 0)
            return -1;
        has_domain = 1;
    }
    if (skip_cfws(a, NULL) < 0)
        return -1;
    if (a->p >= a->end)
        return fail(a, "'<' without matching '>'");
    if (*a->p != '>')
        return fail(a, "unexpected character in angle address");
    a->p++;
    return add_mailbox(a, display, group, has_domain, flags);
}

static int unexpected(struct aparse *a)
{
    switch (*a->p) {
    case ')': return fail(a, "unbalanced ')'");
    case '>': return fail(a, "'>' without '<'");
    case '@': return fail(a, "'@' without local part");
    case ':': return fail(a, "group without a name");
    case '[': case ']': return fail(a, "domain literal without '@'");
    case '\\': return fail(a, "backslash outside a quoted string");
    }
    if ((unsigned char)*a->p < 32 || *a->p == 127)
        return fail(a, "control character in address");
    return fail(a, "unexpected character in address");
}

/* Something other than ',' or ';' follows a complete address. */
static int leftover(struct aparse *a)
{
    if (*a->p == ')')
        return fail(a, "unbalanced ')'");
    if (*a->p == '>')
        return fail(a, "'>' without '<'");
    return fail(a, "unexpected text after address");
}

static int parse_group(struct aparse *a, const char *name);

/* address = mailbox / group; group is the enclosing group's name or NULL. */
static int parse_address(struct aparse *a, const char *group)
{
    const char *start = a->p;
    struct phrase ph;
    if (parse_phrase(a, &ph) < 0)
        return -1;
    if (a->p >= a->end)
        return fail(a, ph.ntok ? "display name without an address" : "missing address");
    char c = *a->p;
    if (c == '<')
        return parse_angle(a, display_from_scratch(a), group);
    if (c == ':' && ph.ntok) {
        if (group)
            return fail(a, "group inside a group");
        return parse_group(a, display_from_scratch(a));
    }
    if (c == '@' && ph.ntok) {
        if (!ph.lp_ok)
            return fail(a, "local part has several words without dots");
        unsigned flags = 0;
        a->p++;
        if (parse_domain(a, &flags) < 0 || skip_cfws(a, NULL) < 0)
            return -1;
        if (a->p < a->end && *a->p == '<')
            return parse_angle(a, display_from_raw(a, start, a->p), group);
        return add_mailbox(a, NULL, group, 1, flags);
    }
    if (ph.ntok && (c == ',' || c == ';'))
        return fail(a, "display name without an address");
    return unexpected(a);
}

/* group = display-name ":" [group-list] ";", at a->p on the ':'. */
static int parse_group(struct aparse *a, const char *name)
{
    a->p++;
    a->ngroups++;
    for (;;) {
        if (skip_cfws(a, NULL) < 0)
            return -1;
        if (a->p >= a->end)
            return 0;            /* liberal: ';' missing at the very end */
        if (*a->p == ';') {
            a->p++;
            return 0;
        }
        if (*a->p == ',') {
            a->p++;
            continue;
        }
        if (parse_address(a, name ? name : "") < 0)
            return -1;
        if (skip_cfws(a, NULL) < 0)
            return -1;
        if (a->p < a->end && *a->p != ',' && *a->p != ';')
            return leftover(a);
    }
}

int as_address_list_parse(struct as_pool *pool, const char *s, size_t len,
                          struct as_address_list *out, const char **err)
{
    struct aparse a = { .pool = pool };
    int rc = 0;
    const char *dummy;
    if (!err)
        err = &dummy;
    *err = NULL;
    memset(out, 0, sizeof *out);
    if (!s && len) {
        *err = "no input";
        return -1;
    }
    if (len > AS_ADDR_MAX_LEN) {
        *err = "address list longer than 65536 bytes";
        return -1;
    }
    if (!s)
        s = "";
    a.p = s;
    a.end = s + len;
    for (;;) {
        if ((rc = skip_cfws(&a, NULL)) < 0)
            break;
        if (a.p >= a.end)
            break;
        /* ';' outside a group can only be a separator (Outlook writes it) */
        if (*a.p == ',' || *a.p == ';') {
            a.p++;
            continue;
        }
        if ((rc = parse_address(&a, NULL)) < 0)
            break;
        if ((rc = skip_cfws(&a, NULL)) < 0)
            break;
        if (a.p < a.end && *a.p != ',' && *a.p != ';') {
            rc = leftover(&a);
            break;
        }
    }
    sbuf_free(&a.dn);
    sbuf_free(&a.lp);
    sbuf_free(&a.dom);
    if (rc < 0) {
        *err = a.err ? a.err : "unparseable address list";
        return -1;
    }
    out->boxes = a.boxes;
    out->nboxes = a.nboxes;
    out->ngroups = a.ngroups;
    return 0;
}

/* ------------------------------------------------------------------ */
/* RFC5322.From                                                        */

const struct as_from *as_message_from(struct as_pool *pool, const struct as_message *m)
{
    struct as_from *f = as_pool_alloc(pool, sizeof *f);
    size_t n = as_msg_header_count(m, "From");
    struct as_address_list *lists = n ? as_pool_alloc(pool, n * sizeof *lists) : NULL;
    size_t total = 0, ngroups = 0, k = 0;
    int invalid = 0;

    f->nfields = n;
    for (size_t i = 0; m && i < m->nfields && k < n; i++) {
        const struct as_header *h = &m->fields[i];
        if (!(h->name.len == 4 && as_memcaseeq(h->name.ptr, "From", 4)))
            continue;
        const char *err = NULL;
        if (as_address_list_parse(pool, h->value.ptr, h->value.len, &lists[k], &err) < 0) {
            invalid = 1;
            if (!f->error)
                f->error = err;
        }
        total += lists[k].nboxes;
        ngroups += lists[k].ngroups;
        k++;
    }
    f->list.ngroups = ngroups;
    if (total) {
        f->list.boxes = as_pool_alloc(pool, total * sizeof *f->list.boxes);
        for (size_t i = 0; i < k; i++) {
            if (!lists[i].nboxes)
                continue;
            memcpy(f->list.boxes + f->list.nboxes, lists[i].boxes,
                   lists[i].nboxes * sizeof *lists[i].boxes);
            f->list.nboxes += lists[i].nboxes;
        }
    }

    int in_group = 0;
    for (size_t i = 0; i < f->list.nboxes; i++)
        if (f->list.boxes[i].group)
            in_group = 1;
    const struct as_mailbox *mb = f->list.nboxes ? &f->list.boxes[0] : NULL;

    if (n == 0)
        f->status = AS_FROM_MISSING;
    else if (n > 1)
        f->status = AS_FROM_MULTIPLE_FIELDS;
    else if (invalid)
        f->status = AS_FROM_INVALID;
    else if (f->list.nboxes == 0)
        f->status = AS_FROM_EMPTY;
    else if (in_group)
        f->status = AS_FROM_GROUP;
    else if (f->list.nboxes > 1)
        f->status = AS_FROM_MULTIPLE_MAILBOXES;
    else if (!mb->domain || (mb->flags & AS_MAILBOX_DOMAIN_LITERAL))
        f->status = AS_FROM_NO_DOMAIN;
    else {
        f->status = AS_FROM_OK;
        f->domain = mb->domain;
    }
    return f;
}

const char *as_from_status_name(enum as_from_status st)
{
    switch (st) {
    case AS_FROM_OK: return "ok";
    case AS_FROM_MISSING: return "missing";
    case AS_FROM_MULTIPLE_FIELDS: return "multiple_fields";
    case AS_FROM_MULTIPLE_MAILBOXES: return "multiple_mailboxes";
    case AS_FROM_GROUP: return "group";
    case AS_FROM_EMPTY: return "empty";
    case AS_FROM_NO_DOMAIN: return "no_domain";
    case AS_FROM_INVALID: return "invalid";
    }
    return "unknown";
}
