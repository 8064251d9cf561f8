/*
 * fuzz_dmarc.c - libFuzzer target for the DMARC record parser
 * (plugins/dmarc/dmarc_record.c): the input as a TXT record, parsed,
 * checked for usability in RFC 7489 and DMARCbis modes, its rua/ruf
 * lists read; and the input as a policy name and a URI list.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dmarc_record.h"
#include "util/pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    const char *s = (const char *)buf;
    struct as_pool *pool = as_pool_new(0);
    int is = dmarc_record_is_dmarc(s, len);
    struct as_dmarc_record r;
    memset(&r, 0, sizeof r);
    enum dmarc_parse_status st = dmarc_record_parse(pool, s, len, &r);
    if (st == DMARC_REC_OK && !is) abort();   /* the cheap test agrees */
    if (st == DMARC_REC_OK) {
        enum as_dmarc_policy p;
        (void)dmarc_record_usable(&r, 0, &p);
        (void)dmarc_record_usable(&r, 1, &p);
    }
    char *z = as_pool_alloc(pool, len + 1);
    memcpy(z, s, len);
    z[len] = '\0';
    (void)dmarc_urilist_usable(z);
    (void)dmarc_policy_from_string(s, len);
    as_pool_destroy(pool);
    return 0;
}
