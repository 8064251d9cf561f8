/*
 * milter_proto.c - see milter_proto.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "net/milter_proto.h"

uint32_t as_milter_get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(struct sbuf *b, uint32_t v)
{
    unsigned char p[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    sbuf_add(b, p, 4);
}

long as_milter_frame(const unsigned char *buf, size_t len, size_t max_packet, char *cmd,
                     const char **data, size_t *dlen, char *err, size_t errlen)
{
    if (len < 4) return 0;
    uint32_t plen = as_milter_get32(buf);
    if (plen == 0) {
        snprintf(err, errlen, "packet of length 0 (no command byte)");
        return -1;
    }
    if (plen > max_packet) {
        snprintf(err, errlen, "packet of %lu bytes, over the limit of %zu",
                 (unsigned long)plen, max_packet);
        return -1;
    }
    if (len - 4 < plen) return 0;
    *cmd = (char)buf[4];
    *data = (const char *)buf + 5;
    *dlen = plen - 1;
    return (long)plen + 4;
}

/* Splits NUL-terminated strings: every byte must belong to one, so the
 * data must end in NUL (or be empty). */
static int split(const char *data, size_t len, struct as_milter_cmd *out, char *err,
                 size_t errlen)
{
    out->nargs = 0;
    if (len == 0) return 0;
    if (data[len - 1] != '\0') {
        snprintf(err, errlen, "'%c' packet: strings not NUL-terminated", out->code);
        return -1;
    }
    for (size_t i = 0; i < len;) {
        if (out->nargs == AS_MILTER_MAX_ARGS) {
            snprintf(err, errlen, "'%c' packet: more than %d strings", out->code,
                     AS_MILTER_MAX_ARGS);
            return -1;
        }
        out->args[out->nargs++] = data + i;
        i += strlen(data + i) + 1;
    }
    return 0;
}

int as_milter_decode(char code, const char *data, size_t len, struct as_milter_cmd *out,
                     char *err, size_t errlen)
{
    memset(out, 0, offsetof(struct as_milter_cmd, args));
    out->nargs = 0;
    out->data = NULL;
    out->len = 0;
    out->code = code;
    const unsigned char *u = (const unsigned char *)data;
    switch (code) {
    case AS_MILTER_OPTNEG:
        /* the three words; Sendmail may append more, which we ignore as
         * libmilter does */
        if (len < 12) {
            snprintf(err, errlen, "option negotiation of %zu bytes (want 12)", len);
            return -1;
        }
        out->version = as_milter_get32(u);
        out->actions = as_milter_get32(u + 4);
        out->protocol = as_milter_get32(u + 8);
        return 0;
    case AS_MILTER_MACRO:
        if (len < 1) {
            snprintf(err, errlen, "macro packet without its command");
            return -1;
        }
        out->macro_for = data[0];
        if (split(data + 1, len - 1, out, err, errlen) < 0) return -1;
        if (out->nargs % 2) {
            snprintf(err, errlen, "macro packet: a name without a value");
            return -1;
        }
        return 0;
    case AS_MILTER_CONNECT: {
        size_t hl = strnlen(data, len);
        if (hl == len || hl + 2 > len) {
            snprintf(err, errlen, "connect packet too short");
            return -1;
        }
        out->hostname = data;
        out->family = data[hl + 1];
        size_t rest = hl + 2;
        if (out->family == 'U') {
            /* unknown: nothing follows, or an empty remainder */
            return 0;
        }
        if (out->family != '4' && out->family != '6' && out->family != 'L') {
            snprintf(err, errlen, "connect packet: unknown address family 0x%02x",
                     (unsigned char)out->family);
            return -1;
        }
        if (len - rest < 3 || data[len - 1] != '\0') {
            snprintf(err, errlen, "connect packet: port and address missing");
            return -1;
        }
        out->port = (unsigned)u[rest] << 8 | u[rest + 1];
        out->addr = data + rest + 2;
        if (strlen(out->addr) != len - rest - 3) {
            snprintf(err, errlen, "connect packet: bytes after the address");
            return -1;
        }
        return 0;
    }
    case AS_MILTER_HELO:
    case AS_MILTER_MAIL:
    case AS_MILTER_RCPT:
    case AS_MILTER_HEADER:
        if (split(data, len, out, err, errlen) < 0) return -1;
        if (out->nargs < 1 || (code == AS_MILTER_HEADER && out->nargs != 2) ||
            (code == AS_MILTER_HELO && out->nargs != 1)) {
            snprintf(err, errlen, "'%c' packet with %zu strings", code, out->nargs);
            return -1;
        }
        return 0;
    case AS_MILTER_BODY:
    case AS_MILTER_UNKNOWN:
        out->data = data;
        out->len = len;
        return 0;
    default:
        /* ABORT, BODYEOB (may carry a last chunk), EOH, DATA, QUIT, QUIT_NC */
        out->data = data;
        out->len = len;
        return 0;
    }
}

void as_milter_put(struct sbuf *out, char code, const void *data, size_t len)
{
    put32(out, (uint32_t)len + 1);
    sbuf_addc(out, code);
    if (len) sbuf_add(out, data, len);
}

void as_milter_put_optneg(struct sbuf *out, uint32_t version, uint32_t actions,
                          uint32_t protocol)
{
    put32(out, 13);
    sbuf_addc(out, AS_MILTER_R_OPTNEG);
    put32(out, version);
    put32(out, actions);
    put32(out, protocol);
}

void as_milter_put_strings(struct sbuf *out, char code, long index, ...)
{
    size_t len = index >= 0 ? 4 : 0;
    va_list ap;
    va_start(ap, index);
    for (const char *s; (s = va_arg(ap, const char *));) len += strlen(s) + 1;
    va_end(ap);
    put32(out, (uint32_t)len + 1);
    sbuf_addc(out, code);
    if (index >= 0) put32(out, (uint32_t)index);
    va_start(ap, index);
    for (const char *s; (s = va_arg(ap, const char *));) sbuf_add(out, s, strlen(s) + 1);
    va_end(ap);
}

void as_milter_reply_text(struct sbuf *out, const char *text, size_t max)
{
    for (size_t i = 0; i < max && text[i]; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '%') sbuf_adds(out, "%%");
        else if (ch < 32 || ch >= 127) sbuf_addc(out, '?');
        else sbuf_addc(out, (char)ch);
    }
}
