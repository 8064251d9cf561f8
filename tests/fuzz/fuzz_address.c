/*
 * fuzz_address.c - libFuzzer target for the untrusted-input parsers of
 * message.c and address.c: the input is used as an address-list, as a
 * display name with encoded-words, as a host name, and as a whole message
 * whose header fields are unfolded and whose From is parsed.
 *
 *   clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -I core/include -I core core/util/util.c core/util/pool.c core/util/log.c \
 *       core/mail/message.c core/mail/address.c tests/fuzz/fuzz_address.c -lidn2
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mail/address.h"
#include "mail/message.h"
#include "util/pool.h"

/* Results must be consistent whatever the input: a violation aborts so
 * the fuzzer reports it. */
static void check_list(const struct as_address_list *l)
{
    if (l->nboxes > AS_ADDR_MAX_BOXES)
        abort();
    for (size_t i = 0; i < l->nboxes; i++) {
        const struct as_mailbox *m = &l->boxes[i];
        if (!m->local_part || !m->addr)
            abort();
        if (m->domain && !(m->flags & AS_MAILBOX_DOMAIN_LITERAL) && strlen(m->domain) > 253)
            abort();
        (void)strlen(m->addr);
        if (m->display_name)
            (void)strlen(m->display_name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct as_pool *pool = as_pool_new(0);

    struct as_address_list l;
    const char *err = NULL;
    if (as_address_list_parse(pool, s, size, &l, &err) == 0)
        check_list(&l);
    else if (!err)
        abort();

    const char *d = as_decode_encoded_words(pool, s, size);
    if (!d)
        abort();
    (void)as_domain_normalize(pool, s, size);

    struct as_message *m = NULL;
    struct as_msg_limits lim = { 100, 8192 };
    if (as_message_parse(pool, s, size, &lim, &m, NULL, 0) == AS_MSG_OK) {
        for (size_t i = 0; i < as_msg_header_total(m); i++) {
            size_t len;
            const char *v = as_header_unfold_pool(pool, as_msg_header_at(m, i), &len);
            if (v[len] != '\0')
                abort();
        }
        const struct as_from *f = as_message_from(pool, m);
        check_list(&f->list);
        if (f->status == AS_FROM_OK && !f->domain)
            abort();
        (void)as_msg_body(m);
    }
    as_pool_destroy(pool);
    return 0;
}
