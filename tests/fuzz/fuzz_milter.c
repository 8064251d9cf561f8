/*
 * fuzz_milter.c - libFuzzer target for the milter packet decoder
 * (core/net/milter_proto.c): the input is a byte stream from an MTA,
 * framed packet by packet as the adapter frames it, each packet decoded;
 * and the input as one packet's data under every command code.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/milter_proto.h"

/* Whatever the input, decoded strings lie inside the data and are
 * NUL-terminated there. */
static void check(const struct as_milter_cmd *c, const char *data, size_t len)
{
    if (c->nargs > AS_MILTER_MAX_ARGS) abort();
    for (size_t i = 0; i < c->nargs; i++) {
        const char *s = c->args[i];
        if (s < data || s >= data + len) abort();
        if (!memchr(s, '\0', (size_t)(data + len - s))) abort();
    }
    if (c->addr && (c->addr < data || c->addr >= data + len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    static struct as_milter_cmd cmd;
    char err[256];
    size_t off = 0;
    while (off < len) {
        char code;
        const char *data;
        size_t dlen;
        long n = as_milter_frame(buf + off, len - off, 1 << 20, &code, &data, &dlen, err,
                                 sizeof err);
        if (n <= 0) break;
        if (as_milter_decode(code, data, dlen, &cmd, err, sizeof err) == 0) check(&cmd, data, dlen);
        off += (size_t)n;
    }
    static const char codes[] = "ABCDEHKLMNOQRTU";
    for (const char *c = codes; *c; c++)
        if (as_milter_decode(*c, (const char *)buf, len, &cmd, err, sizeof err) == 0)
            check(&cmd, (const char *)buf, len);
    struct sbuf out = {0};
    as_milter_reply_text(&out, len ? (const char *)buf : "", len);
    sbuf_free(&out);
    return 0;
}
