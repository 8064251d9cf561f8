/*
 * fuzz_dns.c - libFuzzer target for the reading of DNS answers
 * (core/services/dns.c, as_dns_answer_from_wire): libunbound validates
 * and hands over the response packet; our code walks it (CNAME chains,
 * rdata of A/AAAA/MX/PTR/CNAME/NS/TXT, the SOA's negative TTL).
 *
 * Input: byte 0 picks the query type, byte 1 the rcode libunbound
 * reported, the rest is the packet.  The query name is the packet's
 * question name when it has one, so CNAME chains start somewhere.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <arpa/nameser.h>
#include <resolv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "services/dns.h"
#include "util/pool.h"

static const uint16_t types[] = { 1, 28, 15, 12, 5, 2, 16, 99 };

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (len < 2) return 0;
    uint16_t qtype = types[buf[0] % (sizeof types / sizeof types[0])];
    int rcode = buf[1] & 0x0f;
    const uint8_t *pkt = buf + 2;
    size_t plen = len - 2;
    char qname[NS_MAXDNAME] = "example.com";
    if (plen > 12) {
        char n[NS_MAXDNAME];
        if (dn_expand(pkt, pkt + plen, pkt + 12, n, sizeof n) >= 0 && n[0]) {
            size_t l = strlen(n);
            if (n[l - 1] == '.') n[--l] = '\0';
            for (size_t i = 0; i < l; i++)
                if (n[i] >= 'A' && n[i] <= 'Z') n[i] += 32;
            memcpy(qname, n, l + 1);
        }
    }
    struct as_pool *pool = as_pool_new(0);
    struct as_dns_answer a;
    enum as_dns_status st = as_dns_answer_from_wire(qname, qtype, rcode, pkt, plen, pool, &a);
    if (st != a.status || strcmp(a.name, qname) != 0 || a.type != qtype) abort();
    if (st == AS_DNS_OK) {
        if (a.nrr == 0) abort();
        for (size_t i = 0; i < a.nrr; i++) {
            const struct as_dns_rr *r = &a.rr[i];
            if (r->type != qtype) abort();
            switch (r->type) {
            case 15: (void)strlen(r->d.mx.host); break;
            case 12: case 5: case 2: (void)strlen(r->d.name); break;
            case 16: case 99: {
                size_t total = 0;
                for (size_t k = 0; k < r->d.txt.nstrings; k++) {
                    if (r->d.txt.strings[k].len > 255) abort();
                    total += r->d.txt.strings[k].len;
                }
                if (total != r->d.txt.joined.len || r->d.txt.joined.ptr[total] != '\0') abort();
                break;
            }
            default: break;
            }
        }
    } else if (a.nrr) {
        abort();
    }
    as_pool_destroy(pool);
    return 0;
}
