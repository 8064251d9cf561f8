/*
 * spf_net.c - CIDR lists (see spf_net.h).
 */
#include "spf_net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int spf_netlist_add(struct spf_netlist *nl, const char *cidr)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (nl->n >= SPF_NET_MAX || strlen(cidr) >= sizeof buf)
        return -1;
    snprintf(buf, sizeof buf, "%s", cidr);
    struct spf_net *n = &nl->nets[nl->n];
    memset(n, 0, sizeof *n);
    char *slash = strchr(buf, '/');
    int bits = -1;
    if (slash) {
        char *end;
        *slash = 0;
        long v = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || v < 0 || v > 128)
            return -1;
        bits = (int)v;
    }
    if (inet_pton(AF_INET, buf, n->addr) == 1) {
        n->family = AF_INET;
        if (bits > 32)
            return -1;
        n->bits = bits < 0 ? 32 : bits;
    } else if (inet_pton(AF_INET6, buf, n->addr) == 1) {
        n->family = AF_INET6;
        n->bits = bits < 0 ? 128 : bits;
        struct in6_addr a;
        memcpy(&a, n->addr, 16);
        if (IN6_IS_ADDR_V4MAPPED(&a) && n->bits >= 96) {
            n->family = AF_INET;
            memmove(n->addr, n->addr + 12, 4);
            n->bits -= 96;
        }
    } else {
        return -1;
    }
    nl->n++;
    return 0;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
    for (int i = 0; bits > 0; i++, bits -= 8) {
        unsigned char m = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
        if ((a[i] & m) != (b[i] & m))
            return 0;
    }
    return 1;
}

int spf_netlist_match(const struct spf_netlist *nl, int family, const void *addr)
{
    for (int i = 0; i < nl->n; i++)
        if (nl->nets[i].family == family && prefix_eq(nl->nets[i].addr, addr, nl->nets[i].bits))
            return 1;
    return 0;
}
