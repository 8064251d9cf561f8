/*
 * test_dns.c - the resolver against a real nsd (started through
 * tests/integration/nsd.py, which stops it when our end of its stdin
 * closes, even if this test crashes), against dead and silent servers,
 * and in offline mode; offline answers must equal nsd's.
 * Runs from tests/ (ctest's working directory).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <event2/event.h>
#include "check.h"
#include "util/config.h"
#include "services/dns.h"
#include "util/pool.h"
#include "util/util.h"

static struct event_base *base;
static pid_t nsd_pid = -1;
static int nsd_stdin = -1;
static int nsd_port;

/* ---- nsd ---------------------------------------------------------------- */

static int nsd_start(void)
{
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0) return -1;
    nsd_pid = fork();
    if (nsd_pid < 0) return -1;
    if (nsd_pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execl("/usr/bin/python3", "python3", "integration/nsd.py",
              "example=data/zones/example.zone",
              "2.0.192.in-addr.arpa=data/zones/2.0.192.in-addr.arpa.zone", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    nsd_stdin = in[1];
    fcntl(nsd_stdin, F_SETFD, FD_CLOEXEC);
    FILE *f = fdopen(out[0], "r");
    char line[64];
    int ok = f && fgets(line, sizeof line, f) && (nsd_port = atoi(line)) > 0;
    if (f) fclose(f);
    return ok ? 0 : -1;
}

static void nsd_stop(void)
{
    if (nsd_stdin >= 0) close(nsd_stdin);
    if (nsd_pid > 0) waitpid(nsd_pid, NULL, 0);
    nsd_stdin = -1;
    nsd_pid = -1;
}

/* ---- answers ------------------------------------------------------------ */

struct res {
    int done;
    enum as_dns_status st;
    uint32_t ttl;
    char text[2048];
    double at;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "status ttl=N: rr | rr" with records sorted (servers may rotate them). */
static void canon(const struct as_dns_answer *a, char *out, size_t outlen)
{
    struct sbuf b = {0};
    sbuf_printf(&b, "%s ttl=%u:", as_dns_status_name(a->status), a->ttl);
    char **items = xcalloc(a->nrr + 1, sizeof *items);
    for (size_t i = 0; i < a->nrr; i++) {
        const struct as_dns_rr *rr = &a->rr[i];
        struct sbuf s = {0};
        char ip[INET6_ADDRSTRLEN];
        sbuf_printf(&s, "%u/%u ", rr->type, rr->ttl);
        switch (rr->type) {
        case AS_DNS_A: sbuf_adds(&s, inet_ntop(AF_INET, &rr->d.a, ip, sizeof ip)); break;
        case AS_DNS_AAAA: sbuf_adds(&s, inet_ntop(AF_INET6, &rr->d.aaaa, ip, sizeof ip)); break;
        case AS_DNS_MX: sbuf_printf(&s, "%u %s", rr->d.mx.pref, rr->d.mx.host); break;
        case AS_DNS_TXT: case AS_DNS_SPF:
            for (size_t k = 0; k < rr->d.txt.nstrings; k++)
                sbuf_printf(&s, "[%.*s]", (int)rr->d.txt.strings[k].len, rr->d.txt.strings[k].ptr);
            if (strlen(rr->d.txt.joined.ptr) != rr->d.txt.joined.len) sbuf_adds(&s, "BADJOIN");
            break;
        default: sbuf_adds(&s, rr->d.name); break;
        }
        items[i] = sbuf_steal(&s);
    }
    qsort(items, a->nrr, sizeof *items, cmp_str);
    for (size_t i = 0; i < a->nrr; i++) {
        sbuf_printf(&b, "%s%s", i ? " | " : " ", items[i]);
        free(items[i]);
    }
    free(items);
    as_strlcpy(out, b.data, outlen);
    sbuf_free(&b);
}

static void on_answer(const struct as_dns_answer *a, void *arg)
{
    struct res *r = arg;
    r->done++;
    r->st = a->status;
    r->ttl = a->ttl;
    r->at = as_now();
    canon(a, r->text, sizeof r->text);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
}

/* Runs the loop until every res is done or max seconds passed. */
static void wait_all(struct res *rs, size_t n, double max)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = { 0, 10000 };
    event_add(tick, &tv);
    double end = as_now() + max;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++) done += rs[i].done > 0;
        if (done == n || as_now() >= end) break;
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(tick);
}

static void run_for(double secs)
{
    struct res never = {0};
    wait_all(&never, 1, secs);
}

static struct as_resolver *mk(const char *server, const char *zone, double timeout,
                              size_t cache, uint32_t neg_ttl)
{
    const char *servers[1] = { server };
    struct as_resolver_config rc = {
        .servers = servers, .nservers = server ? 1 : 0, .zone_file = zone,
        .timeout = timeout, .max_queries = 64, .cache_entries = cache,
        .max_ttl = 3600, .negative_ttl = neg_ttl,
    };
    char err[256] = "";
    struct as_resolver *r = as_resolver_new(base, &rc, err, sizeof err);
    if (!r) fprintf(stderr, "as_resolver_new: %s\n", err);
    return r;
}

/* One lookup, waited for.  Also checks the callback did not run inside
 * as_resolver_lookup(). */
static struct res lookup(struct as_resolver *r, const char *name, uint16_t type)
{
    struct res x = {0};
    struct as_dns_req *q = as_resolver_lookup(r, name, type, on_answer, &x);
    CHECK(q != NULL);
    CHECK_INT(x.done, 0);
    if (q) wait_all(&x, 1, 10);
    CHECK_INT(x.done, 1);
    return x;
}

static const char *lookup_text(struct as_resolver *r, const char *name, uint16_t type)
{
    static char buf[4][2048];
    static int i;
    struct res x = lookup(r, name, type);
    char *b = buf[i++ % 4];
    as_strlcpy(b, x.text, sizeof buf[0]);
    return b;
}

static char server[64];

/* ---- tests -------------------------------------------------------------- */

static void test_types(void)
{
    struct as_resolver *r = mk(server, NULL, 3, 100, 300);
    CHECK(r != NULL);
    if (!r) return;
    CHECK_STR(lookup_text(r, "example", AS_DNS_A), "ok ttl=300: 1/300 192.0.2.1");
    CHECK_STR(lookup_text(r, "EXAMPLE.", AS_DNS_AAAA), "ok ttl=300: 28/300 2001:db8::1");
    CHECK_STR(lookup_text(r, "example", AS_DNS_MX),
              "ok ttl=300: 15/300 10 mx1.example | 15/300 20 mx2.example");
    CHECK_STR(lookup_text(r, "example", AS_DNS_NS), "ok ttl=300: 2/300 ns1.example");
    CHECK_STR(lookup_text(r, "multi.example", AS_DNS_TXT),
              "ok ttl=300: 16/300 [first part ][second part][third]");
    CHECK_STR(lookup_text(r, "escaped.example", AS_DNS_TXT),
              "ok ttl=300: 16/300 [quote \" backslash \\ byte A semicolon; here]");
    CHECK_STR(lookup_text(r, "twotxt.example", AS_DNS_TXT),
              "ok ttl=300: 16/300 [one] | 16/300 [two]");
    CHECK_STR(lookup_text(r, "mx2.example", AS_DNS_A),
              "ok ttl=600: 1/600 192.0.2.11 | 1/600 192.0.2.12");
    /* the documentation reverse zone must reach nsd, not unbound's local zone */
    CHECK_STR(lookup_text(r, "1.2.0.192.in-addr.arpa", AS_DNS_PTR),
              "ok ttl=300: 12/300 example");
    CHECK_STR(lookup_text(r, "alias.example", AS_DNS_CNAME), "ok ttl=300: 5/300 www.example");
    CHECK_STR(lookup_text(r, "alias2.example", AS_DNS_A),
              "ok ttl=300: 1/300 192.0.2.80 | 1/300 192.0.2.81");
    CHECK_STR(lookup_text(r, "nullmx.example", AS_DNS_MX), "ok ttl=300: 15/300 0 ");

    struct res x = lookup(r, "sel._domainkey.example", AS_DNS_TXT);
    CHECK_INT(x.st, AS_DNS_OK);
    CHECK(strstr(x.text, "[v=DKIM1; k=rsa; p=MIIB") != NULL);
    CHECK(strstr(x.text, "][xxxx") != NULL);   /* two character-strings kept */

    /* NXDOMAIN vs NODATA, negative TTL = min(SOA TTL, minimum) */
    CHECK_STR(lookup_text(r, "nope.example", AS_DNS_TXT), "nxdomain ttl=60:");
    CHECK_STR(lookup_text(r, "txtonly.example", AS_DNS_A), "nodata ttl=60:");
    CHECK_STR(lookup_text(r, "_domainkey.example", AS_DNS_TXT), "nodata ttl=60:");
    CHECK_STR(lookup_text(r, "example", AS_DNS_SPF), "nodata ttl=60:");
    CHECK_STR(lookup_text(r, "dangling.example", AS_DNS_A), "nxdomain ttl=60:");
    /* outside nsd's zones: REFUSED */
    CHECK_STR(lookup_text(r, "elsewhere.invalid", AS_DNS_A), "servfail ttl=0:");

    struct as_resolver_stats st;
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.sent, st.queries);
    CHECK_INT(st.failures, 1);
    CHECK_INT(st.timeouts, 0);

    /* unsupported type: not started */
    CHECK(as_resolver_lookup(r, "example", 6 /* SOA */, on_answer, NULL) == NULL);
    as_resolver_free(r);
}

static void test_cache(void)
{
    struct as_resolver *r = mk(server, NULL, 3, 100, 300);
    if (!r) return;
    struct as_resolver_stats st;
    struct res a = lookup(r, "www.example", AS_DNS_A);
    struct res b = lookup(r, "WWW.example.", AS_DNS_A);
    CHECK_STR(b.text, a.text);
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.sent, 1);
    CHECK_INT(st.cache_hits, 1);

    /* negative answers are cached too */
    lookup(r, "nope.example", AS_DNS_A);
    CHECK_INT(lookup(r, "nope.example", AS_DNS_A).st, AS_DNS_NXDOMAIN);
    lookup(r, "txtonly.example", AS_DNS_A);
    CHECK_INT(lookup(r, "txtonly.example", AS_DNS_A).st, AS_DNS_NODATA);
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.sent, 3);
    CHECK_INT(st.cache_hits, 3);

    /* expiry: TTL 1 */
    CHECK_INT(lookup(r, "short.example", AS_DNS_A).st, AS_DNS_OK);
    CHECK_INT(lookup(r, "short.example", AS_DNS_A).st, AS_DNS_OK);
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.sent, 4);
    CHECK_INT(st.cache_hits, 4);
    run_for(1.2);
    CHECK_INT(lookup(r, "short.example", AS_DNS_A).st, AS_DNS_OK);
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.sent, 5);
    CHECK_INT(st.cache_hits, 4);
    as_resolver_free(r);

    /* negative_ttl caps negative caching: 0 disables it */
    r = mk(server, NULL, 3, 100, 0);
    if (!r) return;
    lookup(r, "nope.example", AS_DNS_A);
    lookup(r, "nope.example", AS_DNS_A);
    lookup(r, "www.example", AS_DNS_A);
    lookup(r, "www.example", AS_DNS_A);
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.sent, 3);
    CHECK_INT(st.cache_hits, 1);
    as_resolver_free(r);

    /* LRU bound: 2 entries */
    r = mk(server, NULL, 3, 2, 300);
    if (!r) return;
    lookup(r, "www.example", AS_DNS_A);
    lookup(r, "mx1.example", AS_DNS_A);
    lookup(r, "www.example", AS_DNS_A);        /* hit, www now most recent */
    lookup(r, "mx2.example", AS_DNS_A);        /* evicts mx1 */
    lookup(r, "www.example", AS_DNS_A);        /* hit */
    lookup(r, "mx1.example", AS_DNS_A);        /* miss */
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.cache_hits, 2);
    CHECK_INT(st.sent, 4);
    as_resolver_free(r);
}

static void test_dedup_cancel(void)
{
    struct as_resolver *r = mk(server, NULL, 3, 100, 300);
    if (!r) return;
    struct res x[4] = {{0}};
    struct as_dns_req *q0 = as_resolver_lookup(r, "mail.example", AS_DNS_A, on_answer, &x[0]);
    struct as_dns_req *q1 = as_resolver_lookup(r, "Mail.Example.", AS_DNS_A, on_answer, &x[1]);
    struct as_dns_req *q2 = as_resolver_lookup(r, "mail.example", AS_DNS_A, on_answer, &x[2]);
    struct as_dns_req *q3 = as_resolver_lookup(r, "mail.example", AS_DNS_AAAA, on_answer, &x[3]);
    CHECK(q0 && q1 && q2 && q3);
    as_resolver_cancel(q2);                    /* one waiter of three leaves */
    wait_all(x, 2, 5);
    wait_all(x + 3, 1, 5);
    run_for(0.1);
    CHECK_INT(x[0].done, 1);
    CHECK_INT(x[1].done, 1);
    CHECK_INT(x[2].done, 0);
    CHECK_INT(x[3].done, 1);
    CHECK_STR(x[0].text, "ok ttl=300: 1/300 192.0.2.25");
    CHECK_STR(x[1].text, x[0].text);
    CHECK_STR(x[3].text, "ok ttl=300: 28/300 2001:db8::25");
    struct as_resolver_stats st;
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.queries, 4);
    CHECK_INT(st.sent, 2);
    CHECK_INT(st.dedup_hits, 2);

    /* cancelling every waiter cancels the query: no callback, no leak */
    struct res y = {0};
    struct as_dns_req *q = as_resolver_lookup(r, "twotxt.example", AS_DNS_TXT, on_answer, &y);
    as_resolver_cancel(q);
    /* a cached answer's deferred delivery can be cancelled too */
    struct res z = {0};
    q = as_resolver_lookup(r, "mail.example", AS_DNS_A, on_answer, &z);
    as_resolver_cancel(q);
    run_for(0.3);
    CHECK_INT(y.done, 0);
    CHECK_INT(z.done, 0);
    /* and the name can be asked again afterwards */
    CHECK_INT(lookup(r, "twotxt.example", AS_DNS_TXT).st, AS_DNS_OK);

    /* requests left pending when the resolver is freed are released */
    struct res w = {0};
    as_resolver_lookup(r, "example", AS_DNS_TXT, on_answer, &w);
    as_resolver_lookup(r, "bad..name", AS_DNS_TXT, on_answer, &w);
    as_resolver_free(r);
    run_for(0.1);
    CHECK_INT(w.done, 0);
}

/* Cancelling from inside a callback: another waiter of the same query. */
struct cancel_ctx {
    struct as_dns_req *other;
    int calls;
};

static void cancel_other_cb(const struct as_dns_answer *a, void *arg)
{
    (void)a;
    struct cancel_ctx *c = arg;
    c->calls++;
    if (c->other) {
        as_resolver_cancel(c->other);
        c->other = NULL;
    }
}

static void test_cancel_in_callback(void)
{
    struct as_resolver *r = mk(server, NULL, 3, 100, 300);
    if (!r) return;
    struct cancel_ctx c1 = {0}, c2 = {0};
    struct as_dns_req *q1 = as_resolver_lookup(r, "www.example", AS_DNS_AAAA, cancel_other_cb, &c1);
    struct as_dns_req *q2 = as_resolver_lookup(r, "www.example", AS_DNS_AAAA, cancel_other_cb, &c2);
    /* waiters are served newest first: whichever runs first cancels the other */
    c1.other = q2;
    c2.other = q1;
    run_for(0.5);
    CHECK_INT(c1.calls + c2.calls, 1);
    as_resolver_free(r);
}

static void test_bad_names(void)
{
    struct as_resolver *r = mk(server, NULL, 3, 100, 300);
    if (!r) return;
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    char label64[80];
    memset(label64, 'b', 64);
    strcpy(label64 + 64, ".example");
    const char *bad[] = { "", ".", "a..example", ".example", longname, label64,
                          "sp ace.example", "back\\slash.example" };
    for (size_t i = 0; i < AS_ARRAY_LEN(bad); i++) {
        struct res x = lookup(r, bad[i], AS_DNS_TXT);
        CHECK_INT(x.st, AS_DNS_BADNAME);
    }
    struct as_resolver_stats st;
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.badnames, AS_ARRAY_LEN(bad));
    CHECK_INT(st.sent, 0);
    as_resolver_free(r);
}

static int free_udp_port(int keep_open, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    if (keep_open) *fd_out = fd;
    else close(fd);
    return ntohs(sa.sin_port);
}

static void test_dead_servers(void)
{
    char addr[64];
    struct as_resolver_stats st;

    /* nothing listening: ends at our deadline or earlier, never hangs */
    int port = free_udp_port(0, NULL);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct as_resolver *r = mk(addr, NULL, 1.0, 100, 300);
    if (!r) return;
    double t0 = as_now();
    struct res x[3] = {{0}};
    as_resolver_lookup(r, "example", AS_DNS_TXT, on_answer, &x[0]);
    as_resolver_lookup(r, "example", AS_DNS_A, on_answer, &x[1]);
    as_resolver_lookup(r, "example", AS_DNS_A, on_answer, &x[2]);
    wait_all(x, 3, 5);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(x[i].done, 1);
        CHECK(x[i].st == AS_DNS_TIMEOUT || x[i].st == AS_DNS_SERVFAIL);
        CHECK(x[i].at - t0 < 1.3);
    }
    /* failures are not cached */
    as_resolver_get_stats(r, &st);
    uint64_t sent = st.sent;
    CHECK_INT(sent, 2);
    lookup(r, "example", AS_DNS_TXT);
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.sent, sent + 1);
    CHECK_INT(st.cache_hits, 0);
    as_resolver_free(r);

    /* a server that never answers: our deadline, AS_DNS_TIMEOUT */
    int sfd = -1;
    port = free_udp_port(1, &sfd);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    r = mk(addr, NULL, 0.5, 100, 300);
    if (!r) return;
    t0 = as_now();
    struct res y = lookup(r, "example", AS_DNS_TXT);
    CHECK_INT(y.st, AS_DNS_TIMEOUT);
    CHECK(y.at - t0 >= 0.45);
    CHECK(y.at - t0 < 0.9);
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.timeouts, 1);
    as_resolver_free(r);
    close(sfd);
}

/* The same questions to nsd and to the zone file: the same answers. */
static const struct { const char *name; uint16_t type; } same_set[] = {
    { "example", AS_DNS_A }, { "example", AS_DNS_AAAA }, { "example", AS_DNS_MX },
    { "example", AS_DNS_TXT }, { "example", AS_DNS_NS }, { "example", AS_DNS_SPF },
    { "ns1.example", AS_DNS_A }, { "mx1.example", AS_DNS_A }, { "mx2.example", AS_DNS_A },
    { "www.example", AS_DNS_A }, { "www.example", AS_DNS_AAAA }, { "www.example", AS_DNS_TXT },
    { "alias.example", AS_DNS_A }, { "alias.example", AS_DNS_CNAME },
    { "alias.example", AS_DNS_TXT }, { "alias2.example", AS_DNS_AAAA },
    { "alias2.example", AS_DNS_CNAME }, { "dangling.example", AS_DNS_A },
    { "dangling.example", AS_DNS_CNAME }, { "txtonly.example", AS_DNS_TXT },
    { "txtonly.example", AS_DNS_MX }, { "multi.example", AS_DNS_TXT },
    { "escaped.example", AS_DNS_TXT }, { "twotxt.example", AS_DNS_TXT },
    { "bare.example", AS_DNS_TXT }, { "sel._domainkey.example", AS_DNS_TXT },
    { "_domainkey.example", AS_DNS_TXT }, { "_dmarc.example", AS_DNS_TXT },
    { "_dmarc.sub.example", AS_DNS_TXT }, { "nope.example", AS_DNS_A },
    { "deep.nope.example", AS_DNS_TXT }, { "short.example", AS_DNS_A },
    { "a.wild.example", AS_DNS_TXT }, { "b.c.wild.example", AS_DNS_TXT },
    { "a.wild.example", AS_DNS_A }, { "wild.example", AS_DNS_TXT },
    { "nullmx.example", AS_DNS_MX }, { "mail.example", AS_DNS_A },
    { "mail.example", AS_DNS_AAAA }, { "1.2.0.192.in-addr.arpa", AS_DNS_PTR },
    { "25.2.0.192.in-addr.arpa", AS_DNS_PTR }, { "80.2.0.192.in-addr.arpa", AS_DNS_PTR },
    { "9.2.0.192.in-addr.arpa", AS_DNS_PTR }, { "2.0.192.in-addr.arpa", AS_DNS_PTR },
};

/* Equal texts, except that a TTL may be up to 2 s lower on the nsd side:
 * libunbound keeps its own cache, and an answer (a negative one's SOA)
 * met again a second later comes back counted down. */
static int same_answer(const char *a, const char *b)
{
    while (*a && *b) {
        if (strncmp(a, "ttl=", 4) == 0 && strncmp(b, "ttl=", 4) == 0) {
            char *ea, *eb;
            long ta = strtol(a + 4, &ea, 10), tb = strtol(b + 4, &eb, 10);
            if (ea == a + 4 || eb == b + 4 || ta > tb || tb - ta > 2) return 0;
            a = ea;
            b = eb;
            continue;
        }
        if (*a++ != *b++) return 0;
    }
    return *a == *b;
}

static void test_same_as_nsd(void)
{
    struct as_resolver *online = mk(server, NULL, 3, 0, 300);
    struct as_resolver *offline = mk(NULL, "data/zones/offline.zone", 3, 0, 300);
    CHECK(online && offline);
    if (!online || !offline) return;
    int same = 0;
    for (size_t i = 0; i < AS_ARRAY_LEN(same_set); i++) {
        struct res a = lookup(online, same_set[i].name, same_set[i].type);
        struct res b = lookup(offline, same_set[i].name, same_set[i].type);
        if (same_answer(a.text, b.text)) {
            same++;
        } else {
            fprintf(stderr, "%s/%u: nsd \"%s\", zone file \"%s\"\n", same_set[i].name,
                    same_set[i].type, a.text, b.text);
        }
    }
    CHECK_INT(same, AS_ARRAY_LEN(same_set));
    as_resolver_free(online);
    as_resolver_free(offline);
}

static void test_offline_directives(void)
{
    struct as_resolver *r = mk(NULL, "data/zones/offline.zone", 0.3, 100, 300);
    if (!r) return;
    double t0 = as_now();
    struct res x = lookup(r, "slow.example", AS_DNS_TXT);
    CHECK_INT(x.st, AS_DNS_TIMEOUT);
    CHECK(x.at - t0 >= 0.28);
    CHECK(x.at - t0 < 0.6);
    CHECK_INT(lookup(r, "broken.example", AS_DNS_A).st, AS_DNS_SERVFAIL);
    CHECK_INT(lookup(r, "example", AS_DNS_A).st, AS_DNS_OK);
    CHECK_INT(lookup(r, "bad..example", AS_DNS_A).st, AS_DNS_BADNAME);

    /* cancelled while "timing out" */
    struct res y = {0};
    as_resolver_cancel(as_resolver_lookup(r, "slow.example", AS_DNS_A, on_answer, &y));
    run_for(0.4);
    CHECK_INT(y.done, 0);

    struct as_resolver_stats st;
    as_resolver_get_stats(r, &st);
    CHECK_INT(st.queries, 5);
    CHECK_INT(st.timeouts, 1);
    CHECK_INT(st.failures, 1);
    CHECK_INT(st.badnames, 1);
    CHECK_INT(st.sent, 0);
    as_resolver_free(r);

    /* a broken zone file is a clear error */
    struct as_resolver_config rc = { .zone_file = "data/zones/does-not-exist.zone",
                                     .timeout = 1 };
    char err[256];
    CHECK(as_resolver_new(base, &rc, err, sizeof err) == NULL);
    CHECK_STR(err, "data/zones/does-not-exist.zone: cannot open: No such file or directory");
}

static void test_config(void)
{
    struct as_config *cfg = as_config_new();
    char err[256] = "";
    CHECK_INT(as_config_load_string(cfg, "t.conf",
                                    "[dns]\nservers = 127.0.0.1:5353, [::1]:53\n"
                                    "timeout = 1500ms\ncache_size = 50\nnegative_ttl = 30s\n",
                                    err, sizeof err), 0);
    CHECK_INT(as_config_check(cfg, "dns", as_dns_config_keys, as_dns_config_nkeys,
                              err, sizeof err), 0);
    struct as_resolver_config rc;
    as_resolver_config_from(cfg, &rc);
    CHECK_INT(rc.nservers, 2);
    if (rc.nservers == 2) {
        CHECK_STR(rc.servers[0], "127.0.0.1:5353");
        CHECK_STR(rc.servers[1], "[::1]:53");
    }
    CHECK_DBL(rc.timeout, 1.5);
    CHECK_INT(rc.cache_entries, 50);
    CHECK_INT(rc.negative_ttl, 30);
    CHECK_INT(rc.max_ttl, 3600);           /* defaults from the schema */
    CHECK_INT(rc.max_queries, 128);
    CHECK_INT(rc.recursive, 0);
    CHECK(rc.zone_file == NULL);
    struct as_resolver *r = as_resolver_new(base, &rc, err, sizeof err);
    CHECK(r != NULL);
    as_resolver_free(r);
    as_config_free(cfg);

    cfg = as_config_new();
    as_config_load_string(cfg, "t.conf", "dns.timeout = soon\n", err, sizeof err);
    CHECK_INT(as_config_check(cfg, "dns", as_dns_config_keys, as_dns_config_nkeys,
                              err, sizeof err), -1);
    CHECK(strncmp(err, "t.conf:1:", 9) == 0);
    as_config_free(cfg);

    const char *bad[] = { "example.com", "127.0.0.1:0", "127.0.0.1:99999", "[::1", "1.2.3.4:x" };
    for (size_t i = 0; i < AS_ARRAY_LEN(bad); i++) {
        const char *servers[1] = { bad[i] };
        struct as_resolver_config b = { .servers = servers, .nservers = 1, .timeout = 1 };
        CHECK(as_resolver_new(base, &b, err, sizeof err) == NULL);
        char want[128];
        snprintf(want, sizeof want, "dns: bad server '%s'", bad[i]);
        CHECK(strncmp(err, want, strlen(want)) == 0);
    }
    struct as_resolver_config t = { .timeout = 0 };
    CHECK(as_resolver_new(base, &t, err, sizeof err) == NULL);
    CHECK(strstr(err, "timeout") != NULL);
}

/* The reader of response packets (as_dns_answer_from_wire), on packets
 * built by hand: a CNAME chain to a two-string TXT, a negative answer with
 * its SOA, and every cut of the first packet (SERVFAIL, never a crash). */
static void test_wire(void)
{
    static const unsigned char pkt[] = {
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
        3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 16, 0, 1,
        /* www.example CNAME t.example */
        0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, 't', 0xc0, 16,
        /* t.example TXT "ab" "c" */
        0xc0, 41, 0, 16, 0, 1, 0, 0, 0, 30, 0, 5, 2, 'a', 'b', 1, 'c',
    };
    struct as_pool *pool = as_pool_new(0);
    struct as_dns_answer a;
    CHECK_INT(as_dns_answer_from_wire("www.example", 16, 0, pkt, sizeof pkt, pool, &a), AS_DNS_OK);
    CHECK_INT(a.nrr, 1);
    if (a.nrr == 1) {
        CHECK_INT(a.rr[0].d.txt.nstrings, 2);
        CHECK_STR(a.rr[0].d.txt.joined.ptr, "abc");
        CHECK_INT(a.ttl, 30);
    }
    CHECK_INT(as_dns_answer_from_wire("www.example", 5, 0, pkt, sizeof pkt, pool, &a), AS_DNS_OK);
    if (a.nrr == 1) CHECK_STR(a.rr[0].d.name, "t.example");
    CHECK_INT(as_dns_answer_from_wire("www.example", 1, 0, pkt, sizeof pkt, pool, &a),
              AS_DNS_NODATA);
    int cut_ok = 1;
    for (size_t n = 0; n < sizeof pkt; n++) {
        enum as_dns_status st = as_dns_answer_from_wire("www.example", 16, 0, pkt, n, pool, &a);
        if (st == AS_DNS_OK) cut_ok = 0;
    }
    CHECK(cut_ok);
    /* the TXT rdata claims more than it holds */
    unsigned char bad[sizeof pkt];
    memcpy(bad, pkt, sizeof pkt);
    bad[sizeof pkt - 5] = 9;
    CHECK_INT(as_dns_answer_from_wire("www.example", 16, 0, bad, sizeof bad, pool, &a),
              AS_DNS_SERVFAIL);
    CHECK_INT(as_dns_answer_from_wire("www.example", 16, 2, pkt, sizeof pkt, pool, &a),
              AS_DNS_SERVFAIL);
    CHECK_INT(as_dns_answer_from_wire("www.example", 16, 3, NULL, 0, pool, &a), AS_DNS_NXDOMAIN);
    as_pool_destroy(pool);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    test_config();
    test_wire();
    test_offline_directives();
    if (nsd_start() < 0) {
        fprintf(stderr, "cannot start nsd through integration/nsd.py\n");
        CHECK(0);
        nsd_stop();
        event_base_free(base);
        return check_done();
    }
    snprintf(server, sizeof server, "127.0.0.1:%d", nsd_port);
    test_types();
    test_cache();
    test_dedup_cancel();
    test_cancel_in_callback();
    test_bad_names();
    test_same_as_nsd();
    test_dead_servers();
    nsd_stop();
    event_base_free(base);
    libevent_global_shutdown();
    return check_done();
}
