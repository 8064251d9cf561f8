/*
 * fuzz_spamd.c - libFuzzer target for the spamd request parser
 * (core/net/spamd_proto.c): the input as a request head, as zlib data
 * inflated under a small bound, as a Received field value and as a
 * network list item.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/spamd_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    struct as_spamd_request req;
    char err[256];
    int ex = 0;
    int rc = as_spamd_parse_head((const char *)buf, len, &req, &ex, err, sizeof err);
    if (rc == 1 && (req.head_len == 0 || req.head_len > len || req.content_length < -1 ||
                    strlen(req.user) >= sizeof req.user))
        abort();
    if (rc < 0 && ex == 0) abort();

    struct sbuf out = {0};
    if (as_spamd_inflate(buf, len, 1 << 16, &out, err, sizeof err) == 0 && out.len > (1 << 16))
        abort();
    sbuf_free(&out);

    char *s = malloc(len + 1);
    if (!s) return 0;
    memcpy(s, buf, len);
    s[len] = '\0';
    char helo[64], ip[64];
    if (as_spamd_received_from(s, helo, sizeof helo, ip, sizeof ip) == 0 && !ip[0]) abort();
    struct as_spamd_net net;
    if (as_spamd_net_parse(s, &net) == 0 && (net.bits < 0 || net.bits > 128)) abort();
    as_spamd_net_match(&net, 1, s);
    free(s);
    return 0;
}
