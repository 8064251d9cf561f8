/*
 * dkim_tags.c - tag-lists, base64, key records, names (see dkim_tags.h).
 */
#include <string.h>
#include <strings.h>

#include "dkim_tags.h"

/* FWS as it appears in header and DNS text: blanks and line breaks. */
static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static struct dkim_slice trim(const char *p, size_t n)
{
    while (n && is_fws(*p)) {
        p++;
        n--;
    }
    while (n && is_fws(p[n - 1]))
        n--;
    struct dkim_slice s = { p, n };
    return s;
}

static int slice_eq(struct dkim_slice a, const char *b)
{
    size_t n = strlen(b);
    return a.n == n && memcmp(a.p, b, n) == 0;
}

static int slice_eq_nocase(struct dkim_slice a, const char *b)
{
    size_t n = strlen(b);
    return a.n == n && strncasecmp(a.p, b, n) == 0;
}

int dkimtag_parse(const char *s, size_t len, struct dkim_taglist *out, const char **err)
{
    out->n = 0;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && s[end] != ';')
            end++;
        struct dkim_slice spec = trim(s + i, end - i);
        i = end < len ? end + 1 : end;
        if (spec.n == 0) {
            /* Only the trailing ';' may leave an empty spec (RFC 6376 3.2);
             * "a=1;;b=2" is tolerated like most verifiers do. */
            continue;
        }
        const char *eq = memchr(spec.p, '=', spec.n);
        if (!eq) {
            *err = "tag without '='";
            return -1;
        }
        struct dkim_slice name = trim(spec.p, (size_t)(eq - spec.p));
        struct dkim_slice value = trim(eq + 1, spec.n - (size_t)(eq + 1 - spec.p));
        if (name.n == 0 || name.n > DKIM_TAG_NAME_MAX || !is_alpha(name.p[0])) {
            *err = "bad tag name";
            return -1;
        }
        for (size_t k = 1; k < name.n; k++) {
            if (!is_alpha(name.p[k]) && !is_digit(name.p[k]) && name.p[k] != '_') {
                *err = "bad tag name";
                return -1;
            }
        }
        for (size_t k = 0; k < value.n; k++) {
            unsigned char c = (unsigned char)value.p[k];
            /* VALCHAR is %x21-3A / %x3C-7E plus FWS; 8-bit bytes are let
             * through because RFC 8616 allows UTF-8 in i= and z=. */
            if (c < 0x20 && !is_fws((char)c)) {
                *err = "control character in tag value";
                return -1;
            }
            if (c == 0x7f) {
                *err = "control character in tag value";
                return -1;
            }
        }
        for (size_t k = 0; k < out->n; k++) {
            if (out->tags[k].name.n == name.n && memcmp(out->tags[k].name.p, name.p, name.n) == 0) {
                *err = "duplicate tag";
                return -1;
            }
        }
        if (out->n == DKIM_TAGS_MAX) {
            *err = "too many tags";
            return -1;
        }
        out->tags[out->n].name = name;
        out->tags[out->n].value = value;
        out->n++;
    }
    return 0;
}

const struct dkim_slice *dkimtag_get(const struct dkim_taglist *tl, const char *name)
{
    for (size_t i = 0; i < tl->n; i++)
        if (slice_eq(tl->tags[i].name, name))
            return &tl->tags[i].value;
    return NULL;
}

size_t dkimtag_list_count(struct dkim_slice v)
{
    if (trim(v.p, v.n).n == 0)
        return 0;
    size_t n = 1;
    for (size_t i = 0; i < v.n; i++)
        if (v.p[i] == ':')
            n++;
    return n;
}

int dkimtag_list_has(struct dkim_slice v, const char *item)
{
    size_t i = 0;
    while (i <= v.n) {
        size_t end = i;
        while (end < v.n && v.p[end] != ':')
            end++;
        if (slice_eq_nocase(trim(v.p + i, end - i), item))
            return 1;
        i = end + 1;
    }
    return 0;
}

/* Each octet's base64 value plus one; B64_FWS for the folding whitespace a
 * header value may carry between digits, B64_PAD for '=', 0 for the rest.
 * A table, and four digits at a time, because every signature's b= (and
 * its key's p=, on a cache miss) is decoded here. */
#define B64_FWS 65
#define B64_PAD 66
static const unsigned char b64_tab[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0, 65, 65,  0,  0, 65,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    65,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, 63,  0,  0,  0, 64,
    53, 54, 55, 56, 57, 58, 59, 60, 61, 62,  0,  0,  0, 66,  0,  0,
     0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,  0,  0,  0,  0,  0,
     0, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41,
    42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
};

long dkimtag_base64_decode(struct dkim_slice in, unsigned char *out, size_t outsz)
{
    const unsigned char *p = (const unsigned char *)in.p;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    size_t o = 0, nchars = 0, i = 0;
    while (i < in.n) {
        /* whole quanta of four digits, the common case */
        if (bits == 0 && !pad && in.n - i >= 4 && outsz - o >= 3) {
            unsigned a = b64_tab[p[i]] - 1u, b = b64_tab[p[i + 1]] - 1u,
                     c = b64_tab[p[i + 2]] - 1u, d = b64_tab[p[i + 3]] - 1u;
            if ((a | b | c | d) < 64) {
                unsigned v = a << 18 | b << 12 | c << 6 | d;
                out[o] = (unsigned char)(v >> 16);
                out[o + 1] = (unsigned char)(v >> 8);
                out[o + 2] = (unsigned char)v;
                o += 3;
                i += 4;
                nchars += 4;
                continue;
            }
        }
        unsigned t = b64_tab[p[i++]];
        if (t == B64_FWS)
            continue;
        if (t == B64_PAD) {
            pad++;
            nchars++;
            continue;
        }
        if (t == 0 || pad)   /* not base64, or data after padding */
            return -1;
        nchars++;
        acc = (acc << 6) | (t - 1);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outsz)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Unpadded input is accepted (several signers omit '='), but not a
     * dangling single character or more padding than a quantum allows. */
    if (pad > 2 || (pad && nchars % 4 != 0) || (nchars - (size_t)pad) % 4 == 1)
        return -1;
    return (long)o;
}

int dkimtag_key_parse(const char *rec, size_t len, struct dkim_keyrec *out, const char **err)
{
    struct dkim_taglist tl;
    memset(out, 0, sizeof *out);
    if (dkimtag_parse(rec, len, &tl, err) < 0)
        return -1;
    const struct dkim_slice *v = dkimtag_get(&tl, "v");
    if (v) {
        /* RFC 6376 3.6.1: if present it must be first and exactly DKIM1. */
        if (&tl.tags[0].value != v || !slice_eq(*v, "DKIM1")) {
            *err = "bad key version";
            return -1;
        }
    }
    const struct dkim_slice *k = dkimtag_get(&tl, "k");
    if (!k || slice_eq_nocase(*k, "rsa")) {
        out->keytype = DKIM_KEYTYPE_RSA;
    } else if (slice_eq_nocase(*k, "ed25519")) {
        out->keytype = DKIM_KEYTYPE_ED25519;
    } else {
        *err = "unknown key type";
        return -1;
    }
    const struct dkim_slice *h = dkimtag_get(&tl, "h");
    if (h) {
        if (dkimtag_list_has(*h, "sha1"))
            out->hashes |= DKIM_HASH_SHA1;
        if (dkimtag_list_has(*h, "sha256"))
            out->hashes |= DKIM_HASH_SHA256;
    } else {
        out->hashes = DKIM_HASH_SHA1 | DKIM_HASH_SHA256;
    }
    const struct dkim_slice *s = dkimtag_get(&tl, "s");
    if (s && !dkimtag_list_has(*s, "*") && !dkimtag_list_has(*s, "email")) {
        *err = "key not for email (s=)";
        return -1;
    }
    const struct dkim_slice *t = dkimtag_get(&tl, "t");
    if (t) {
        out->testing = dkimtag_list_has(*t, "y");
        out->strict = dkimtag_list_has(*t, "s");
    }
    const struct dkim_slice *p = dkimtag_get(&tl, "p");
    if (!p) {
        *err = "no p= in key record";
        return -1;
    }
    out->p = *p;
    out->revoked = p->n == 0;
    return 0;
}

int dkimtag_name_valid(const char *s, size_t n, int allow_underscore)
{
    if (n == 0 || n > 253)
        return 0;
    size_t lab = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (lab == 0 || s[i - 1] == '-')
                return 0;
            lab = 0;
            continue;
        }
        if (!(is_alpha(c) || is_digit(c) || c == '-' || (allow_underscore && c == '_')))
            return 0;
        if (c == '-' && lab == 0)
            return 0;
        if (++lab > 63)
            return 0;
    }
    return lab > 0 && s[n - 1] != '-';
}

/* One line's canonical length, CRLF not included. */
static size_t line_len(const char *p, size_t n, int relaxed)
{
    if (!relaxed)
        return n;
    size_t len = 0, wsp = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ' || p[i] == '\t') {
            wsp = 1;
            continue;
        }
        len += wsp + 1;   /* a run of WSP inside the line becomes one SP */
        wsp = 0;
    }
    return len;           /* trailing WSP is dropped */
}

size_t dkimtag_canon_body_len(const char *body, size_t n, int relaxed)
{
    size_t total = 0, empty = 0, i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && !(body[e] == '\r' && e + 1 < n && body[e + 1] == '\n'))
            e++;
        size_t ll = line_len(body + i, e - i, relaxed);
        if (ll == 0) {
            empty += 2;              /* kept only if a non-empty line follows */
        } else {
            total += empty + ll + 2;
            empty = 0;
        }
        i = e < n ? e + 2 : n;
    }
    /* RFC 6376 3.4.3: an empty body is one CRLF under simple; relaxed
     * leaves it empty (3.4.4). */
    if (total == 0 && !relaxed)
        total = 2;
    return total;
}
