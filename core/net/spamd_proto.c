/*
 * spamd_proto.c - see spamd_proto.h.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include "net/spamd_proto.h"

static const char *const verb_names[] = {
    [AS_SPAMD_CHECK] = "CHECK",     [AS_SPAMD_SYMBOLS] = "SYMBOLS",
    [AS_SPAMD_REPORT] = "REPORT",   [AS_SPAMD_REPORT_IFSPAM] = "REPORT_IFSPAM",
    [AS_SPAMD_PING] = "PING",       [AS_SPAMD_PROCESS] = "PROCESS",
    [AS_SPAMD_HEADERS] = "HEADERS", [AS_SPAMD_SKIP] = "SKIP",
    [AS_SPAMD_TELL] = "TELL",
};

const char *as_spamd_verb_name(enum as_spamd_verb v) { return verb_names[v]; }

const char *as_spamd_ex_name(int ex)
{
    switch (ex) {
    case AS_SPAMD_EX_OK: return "EX_OK";
    case AS_SPAMD_EX_USAGE: return "EX_USAGE";
    case AS_SPAMD_EX_DATAERR: return "EX_DATAERR";
    case AS_SPAMD_EX_UNAVAILABLE: return "EX_UNAVAILABLE";
    case AS_SPAMD_EX_SOFTWARE: return "EX_SOFTWARE";
    case AS_SPAMD_EX_TEMPFAIL: return "EX_TEMPFAIL";
    case AS_SPAMD_EX_PROTOCOL: return "EX_PROTOCOL";
    case AS_SPAMD_EX_TIMEOUT: return "EX_TIMEOUT";
    default: return "EX_SOFTWARE";
    }
}

static int fail(int *ex, int code, char *err, size_t errlen, const char *fmt, const char *arg)
{
    *ex = code;
    snprintf(err, errlen, fmt, arg);
    return -1;
}

/* A printable copy of s[0..len) for messages. */
static void shown(const char *s, size_t len, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < outlen && i < 64; i++)
        out[k++] = (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
    out[k] = '\0';
}

int as_spamd_parse_head(const char *buf, size_t len, struct as_spamd_request *req, int *ex,
                        char *err, size_t errlen)
{
    memset(req, 0, sizeof *req);
    req->content_length = -1;
    size_t scan = len < AS_SPAMD_MAX_HEAD ? len : AS_SPAMD_MAX_HEAD;
    const char *line = buf, *end = buf + scan;
    int first = 1;
    char what[80];
    for (;;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) {
            if (len >= AS_SPAMD_MAX_HEAD)
                return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                            "request head longer than %s bytes", "16384");
            return 0;
        }
        size_t ll = (size_t)(nl - line);
        if (ll && line[ll - 1] == '\r') ll--;
        if (first) {
            /* "VERB SPAMC/1.x" */
            const char *sp = memchr(line, ' ', ll);
            shown(line, ll, what, sizeof what);
            if (!sp) return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                                 "bad request line '%s' (want VERB SPAMC/1.5)", what);
            size_t vl = (size_t)(sp - line);
            int found = -1;
            for (size_t i = 0; i < AS_ARRAY_LEN(verb_names); i++)
                if (strlen(verb_names[i]) == vl && memcmp(verb_names[i], line, vl) == 0)
                    found = (int)i;
            if (found < 0) {
                shown(line, vl, what, sizeof what);
                return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen, "unknown method '%s'", what);
            }
            req->verb = (enum as_spamd_verb)found;
            const char *ver = sp + 1;
            size_t verl = ll - vl - 1;
            if (verl < 9 || memcmp(ver, "SPAMC/1.", 8) != 0) {
                shown(ver, verl, what, sizeof what);
                return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                            "bad protocol version '%s' (want SPAMC/1.x)", what);
            }
            int minor = 0;
            for (size_t i = 8; i < verl; i++) {
                if (ver[i] < '0' || ver[i] > '9' || minor > 99) {
                    shown(ver, verl, what, sizeof what);
                    return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                                "bad protocol version '%s' (want SPAMC/1.x)", what);
                }
                minor = minor * 10 + (ver[i] - '0');
            }
            req->minor = minor;
            first = 0;
        } else if (ll == 0) {
            req->head_len = (size_t)(nl + 1 - buf);
            return 1;
        } else {
            const char *colon = memchr(line, ':', ll);
            shown(line, ll, what, sizeof what);
            if (!colon || colon == line)
                return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen, "bad header line '%s'", what);
            size_t nl_ = (size_t)(colon - line);
            const char *v = colon + 1, *ve = line + ll;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t vlen = (size_t)(ve - v);
            if (nl_ == 14 && as_memcaseeq(line, "Content-length", 14)) {
                if (req->content_length >= 0)
                    return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                                "Content-length given twice%s", "");
                long long n = 0;
                if (vlen == 0 || vlen > 12)
                    return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                                "bad Content-length '%s'", what);
                for (size_t i = 0; i < vlen; i++) {
                    if (v[i] < '0' || v[i] > '9')
                        return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                                    "bad Content-length in '%s'", what);
                    n = n * 10 + (v[i] - '0');
                }
                req->content_length = n;
            } else if (nl_ == 4 && as_memcaseeq(line, "User", 4)) {
                if (vlen == 0 || vlen >= sizeof req->user)
                    return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen, "bad User in '%s'", what);
                for (size_t i = 0; i < vlen; i++)
                    if ((unsigned char)v[i] <= 32 || (unsigned char)v[i] >= 127)
                        return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                                    "bad User in '%s'", what);
                memcpy(req->user, v, vlen);
                req->user[vlen] = '\0';
            } else if (nl_ == 8 && as_memcaseeq(line, "Compress", 8)) {
                if (!(vlen == 4 && as_memcaseeq(v, "zlib", 4)))
                    return fail(ex, AS_SPAMD_EX_PROTOCOL, err, errlen,
                                "unsupported compression in '%s' (zlib is)", what);
                req->zlib = 1;
            }
            /* other headers (Message-class, Set, Remove of TELL ...) are
             * not needed here */
        }
        line = nl + 1;
    }
}

int as_spamd_inflate(const void *in, size_t inlen, size_t max, struct sbuf *out, char *err,
                     size_t errlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) {
        snprintf(err, errlen, "zlib: cannot initialise");
        return -1;
    }
    zs.next_in = (Bytef *)in;
    int rc = Z_OK;
    size_t left = inlen;
    while (rc != Z_STREAM_END) {
        /* avail_in is 32 bits: feed a huge input in slices */
        if (zs.avail_in == 0 && left) {
            zs.avail_in = left > (1u << 30) ? (1u << 30) : (uInt)left;
            left -= zs.avail_in;
        }
        if (out->len >= max + 1) break;
        size_t room = max + 1 - out->len;
        if (room > 65536) room = 65536;
        sbuf_reserve(out, room);
        zs.next_out = (Bytef *)out->data + out->len;
        zs.avail_out = (uInt)room;
        rc = inflate(&zs, Z_NO_FLUSH);
        out->len += room - zs.avail_out;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && left == 0) break;
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) break;
    }
    inflateEnd(&zs);
    if (out->len > max) {
        snprintf(err, errlen, "compressed message inflates to more than %zu bytes "
                 "(limits.max_message_size)", max);
        return -1;
    }
    if (rc != Z_STREAM_END) {
        snprintf(err, errlen, "compressed message is %s",
                 rc == Z_DATA_ERROR ? "corrupt (not zlib data)" : "truncated");
        return -1;
    }
    return 0;
}

int as_spamd_net_parse(const char *s, struct as_spamd_net *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t al = slash ? (size_t)(slash - s) : strlen(s);
    if (al == 0 || al >= sizeof buf) return -1;
    memcpy(buf, s, al);
    buf[al] = '\0';
    memset(out, 0, sizeof *out);
    int maxbits;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = 4;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = 6;
        maxbits = 128;
    } else {
        return -1;
    }
    out->bits = maxbits;
    if (slash) {
        const char *p = slash + 1;
        int bits = 0;
        if (!*p) return -1;
        for (; *p; p++) {
            if (*p < '0' || *p > '9' || bits > maxbits) return -1;
            bits = bits * 10 + (*p - '0');
        }
        if (bits > maxbits) return -1;
        out->bits = bits;
    }
    return 0;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

int as_spamd_net_match(const struct as_spamd_net *nets, size_t n, const char *ip)
{
    unsigned char a[16];
    int family;
    if (inet_pton(AF_INET, ip, a) == 1) {
        family = 4;
    } else if (inet_pton(AF_INET6, ip, a) == 1) {
        family = 6;
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(a, mapped, 12) == 0) {
            memmove(a, a + 12, 4);
            family = 4;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (nets[i].family == family && prefix_eq(nets[i].addr, a, nets[i].bits)) return 1;
    return 0;
}

static void copy_token(const char *s, size_t len, char *out, size_t outlen)
{
    if (outlen == 0) return;
    if (len >= outlen) len = outlen - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

int as_spamd_received_from(const char *value, char *helo, size_t helolen, char *ip, size_t iplen)
{
    if (helolen) helo[0] = '\0';
    if (iplen) ip[0] = '\0';
    const char *p = value;
    while (*p == ' ' || *p == '\t') p++;
    if (strncasecmp(p, "from", 4) != 0 || (p[4] != ' ' && p[4] != '\t')) return -1;
    p += 4;
    while (*p == ' ' || *p == '\t') p++;
    /* the "from" clause ends at " by " (or the end) */
    const char *end = p;
    for (; *end; end++)
        if ((end[0] == ' ' || end[0] == '\t') && strncasecmp(end + 1, "by", 2) == 0 &&
            (end[3] == ' ' || end[3] == '\t'))
            break;
    const char *h = p;
    while (p < end && *p != ' ' && *p != '\t' && *p != '(') p++;
    copy_token(h, (size_t)(p - h), helo, helolen);
    /* the first bracketed address in the clause: Postfix and Sendmail put
     * it in the comment "(rdns [IP])", Exim writes "from [IP] (helo=x)" */
    for (const char *b = h; b < end; b++) {
        if (*b != '[') continue;
        const char *e = memchr(b, ']', (size_t)(end - b));
        if (!e) break;
        const char *a = b + 1;
        if ((size_t)(e - a) > 5 && strncasecmp(a, "IPv6:", 5) == 0) a += 5;
        char tmp[64];
        unsigned char bin[16];
        if ((size_t)(e - a) < sizeof tmp) {
            memcpy(tmp, a, (size_t)(e - a));
            tmp[e - a] = '\0';
            if (inet_pton(AF_INET, tmp, bin) == 1 || inet_pton(AF_INET6, tmp, bin) == 1) {
                copy_token(tmp, strlen(tmp), ip, iplen);
                /* Exim: the helo name is in "(helo=x)" when from is an IP */
                if (helolen && helo[0] == '[') {
                    const char *hh = strstr(h, "helo=");
                    if (hh && hh < end) {
                        hh += 5;
                        const char *he = hh;
                        while (he < end && *he != ')' && *he != ' ') he++;
                        copy_token(hh, (size_t)(he - hh), helo, helolen);
                    }
                }
                return 0;
            }
        }
        b = e;
    }
    return -1;
}
