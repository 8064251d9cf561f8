/*
 * fuzz_message.c - libFuzzer target for message and header parsing
 * (core/mail/message.c, core/mail/authres.c) without fuzz_address's small
 * limits: the input as a whole message parsed with the daemon's default
 * limits, every field unfolded, Authentication-Results fields read for
 * their authserv-id, Subject and From decoded; and the input as one
 * Authentication-Results value.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "mail/authres.h"
#include "mail/message.h"
#include "util/pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    const char *s = (const char *)buf;
    struct as_pool *pool = as_pool_new(0);
    struct as_message *m = NULL;
    struct as_msg_limits lim = { 10000, 1 << 20 };
    char err[256];
    enum as_msg_error e = as_message_parse(pool, s, len, &lim, &m, err, sizeof err);
    if (e == AS_MSG_OK) {
        if (m->body_offset > len) abort();
        for (size_t i = 0; i < as_msg_header_total(m); i++) {
            const struct as_header *h = as_msg_header_at(m, i);
            size_t vlen;
            const char *v = as_header_unfold_pool(pool, h, &vlen);
            if (v[vlen] != '\0') abort();
            if (h->name.len == 22 && strncasecmp(h->name.ptr, "Authentication-Results", 22) == 0)
                (void)as_authres_authserv_id(pool, v);
            if (h->name.len == 7 && strncasecmp(h->name.ptr, "Subject", 7) == 0)
                (void)as_decode_encoded_words(pool, v, vlen);
        }
        (void)as_message_from(pool, m);
        (void)as_msg_body(m);
    } else if (m) {
        abort();
    }
    char *z = as_pool_alloc(pool, len + 1);
    memcpy(z, s, len);
    z[len] = '\0';
    (void)as_authres_authserv_id(pool, z);
    (void)as_authres_token(pool, z);
    (void)as_authres_keyword(z);
    as_pool_destroy(pool);
    return 0;
}
