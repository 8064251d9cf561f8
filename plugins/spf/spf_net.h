/*
 * spf_net.h - small CIDR lists for the trusted_relays and local_networks
 * options.  Bounded: at most SPF_NET_MAX entries per list.
 */
#ifndef AS_SPF_NET_H
#define AS_SPF_NET_H

#include <netinet/in.h>

#define SPF_NET_MAX 64

struct spf_net {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

struct spf_netlist {
    int n;
    struct spf_net nets[SPF_NET_MAX];
};

/* Adds "a.b.c.d[/n]" or "ipv6[/n]" (an IPv4-mapped IPv6 network is stored
 * as IPv4).  Returns 0, or -1 if malformed or the list is full. */
int spf_netlist_add(struct spf_netlist *nl, const char *cidr);
/* 1 if addr (struct in_addr or struct in6_addr per family) is in the list. */
int spf_netlist_match(const struct spf_netlist *nl, int family, const void *addr);

#endif
