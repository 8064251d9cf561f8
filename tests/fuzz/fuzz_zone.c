/*
 * fuzz_zone.c - libFuzzer target for the zone-file reader
 * (core/services/zone.c): the input as a master file, loaded with origin
 * "example.", then looked up under a few fixed names and under the
 * input's first line as a name, every type the loader keeps.
 *
 * $INCLUDE would open any path the input names (a FIFO or a device
 * blocks or never ends), so inputs that spell "include" in any case,
 * escapes removed, are skipped; tests/unit/test_zone.c covers $INCLUDE.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "services/zone.h"
#include "util/pool.h"

static int spells_include(const uint8_t *buf, size_t len)
{
    static const char word[] = "include";
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        int c = buf[i];
        if (c == '\\') continue;
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c == word[k]) {
            if (++k == sizeof word - 1) return 1;
        } else {
            k = c == word[0];
        }
    }
    return 0;
}

static const uint16_t types[] = { 1, 2, 5, 6, 12, 15, 16, 28, 99 };

static void probe(const struct as_zone *z, struct as_pool *pool, const char *name)
{
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        struct as_dns_answer a;
        enum as_dns_status st = as_zone_lookup(z, name, types[t], pool, &a);
        if (st != a.status) abort();
        if (st == AS_DNS_OK) {
            if (a.nrr == 0) abort();
            for (size_t i = 0; i < a.nrr; i++) {
                if (a.rr[i].type != types[t]) abort();
                if (types[t] == 16 && strlen(a.rr[i].d.txt.joined.ptr) > a.rr[i].d.txt.joined.len)
                    abort();
            }
        } else if (a.nrr) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (spells_include(buf, len)) return 0;
    char err[512] = "";
    struct as_zone *z = as_zone_parse("fuzz.zone", (const char *)buf, len, "example.", err,
                                      sizeof err);
    if (!z) {
        /* every refusal says where */
        if (strncmp(err, "fuzz.zone", 9) != 0) abort();
        return 0;
    }
    struct as_pool *pool = as_pool_new(0);
    static const char *const names[] = { "example", "a.example", "x.y.example", "*.example",
                                         "_dmarc.example", "other", "sub.example." };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) probe(z, pool, names[i]);
    char first[300];
    size_t n = 0;
    while (n < len && n < sizeof first - 1 && buf[n] != '\n' && buf[n] != ' ' && buf[n] != '\t')
        n++;
    memcpy(first, buf, n);
    first[n] = '\0';
    probe(z, pool, first);
    as_pool_destroy(pool);
    as_zone_free(z);
    return 0;
}
