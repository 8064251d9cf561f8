/*
 * test_spf_record.c - table tests for the SPF record validator, the
 * rewriting done for libspf2, macro expansion and the CIDR lists.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "../../plugins/spf/spf_net.h"
#include "../../plugins/spf/spf_record.h"
#include "../../plugins/spf/spf_eval.h"

static struct spf_record rec;

static const struct { const char *txt; int valid; } records[] = {
    { "v=spf1", 1 },
    { "v=spf1 ", 1 },
    { "V=SpF1 -all", 1 },
    { "v=spf10 -all", 0 },
    { "v=spf1  a  -all ", 1 },
    { "v=spf1 a:foo.example.com/24//64 mx:%{d}/0 ptr:example.com ip4:192.0.2.0/24 -all", 1 },
    { "v=spf1 ip6:2001:db8::/32 exists:%{ir}.%{l1r+-}.%{d2}.example.net ~all", 1 },
    { "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all", 1 },
    { "v=spf1 a:foo:bar/baz.example.com", 1 },
    { "v=spf1 a:foo.example.xn--zckzah -all", 1 },
    { "v=spf1 ip4:1.2.3.4 -all moo", 0 },              /* unknown mechanism */
    { "v=spf1 moo.cow/far_out=man:dog/cat", 0 },
    { "v=spf1 =all", 0 },
    { "v=spf1 1up=foo", 0 },
    { "v=spf1 redirect:t2.example.com", 0 },
    { "v=spf1 a:museum", 0 },                          /* single label */
    { "v=spf1 a:museum.", 0 },
    { "v=spf1 a:111.222.33.44", 0 },                   /* numeric toplabel */
    { "v=spf1 a:example.-com", 0 },
    { "v=spf1 a:", 0 },
    { "v=spf1 a/33", 0 },
    { "v=spf1 a//129", 0 },
    { "v=spf1 a/24/64", 0 },
    { "v=spf1 ip4:1.2.3.4/032", 0 },
    { "v=spf1 ip4:1.2.3", 0 },
    { "v=spf1 ip4:1.2.3.4//32", 0 },
    { "v=spf1 ip6::CAFE::BABE", 0 },
    { "v=spf1 ptr/0", 0 },
    { "v=spf1 -all.", 0 },
    { "v=spf1 include:ip5.example.com/24", 0 },
    { "v=spf1 exists", 0 },
    { "v=spf1 exp=a.example.com exp=b.example.com", 0 },
    { "v=spf1 redirect=a.example.com redirect=b.example.com", 0 },
    { "v=spf1 exp=%{r}.example.com", 0 },              /* r only in exp text */
    { "v=spf1 -exists:%(ir).sbl.example.com", 0 },
    { "v=spf1 exists:foo%.sbl.example.com", 0 },
    { "v=spf1 exists:%{d0}.example.com", 0 },          /* zero digit */
    { "v=spf1 exists:%{d129}.example.com", 0 },        /* bounded: libspf2 uses a uchar */
    { "v=spf1 foo=%abc", 0 },
    { "v=spf1 a:ctrl.example.com\rptr", 0 },
    { "v=spf1 a:\xef\xbb\xbfgarbage.example.net", 0 },
};

static void test_records(void)
{
    for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
        const char *err = NULL;
        int r = spf_record_parse(records[i].txt, strlen(records[i].txt), &rec, &err);
        if ((r == 0) != records[i].valid)
            fprintf(stderr, "record %zu '%s': got %s (%s)\n", i, records[i].txt,
                    r == 0 ? "valid" : "invalid", err ? err : "");
        CHECK((r == 0) == records[i].valid);
    }
    const char *txt = "v=spf1 +a:Mail.Example.com/24//64 ~mx -ip4:10.0.0.0/8 exp=x.%{d} redirect=r.example";
    CHECK_INT(spf_record_parse(txt, strlen(txt), &rec, NULL), 0);
    CHECK_INT(rec.nterms, 5);
    CHECK_INT(rec.terms[0].kind, SPF_T_A);
    CHECK_INT(rec.terms[0].qualifier, '+');
    CHECK_INT(rec.terms[0].cidr4, 24);
    CHECK_INT(rec.terms[0].cidr6, 64);
    CHECK_INT(rec.terms[0].domain.len, strlen("Mail.Example.com"));
    CHECK_INT(rec.terms[1].qualifier, '~');
    CHECK_INT(rec.terms[1].cidr4, -1);
    CHECK_INT(rec.terms[2].kind, SPF_T_IP4);
    CHECK_INT(rec.terms[2].cidr4, 8);
    CHECK_INT(rec.exp, 3);
    CHECK(rec.terms[3].has_macro);
    CHECK_INT(rec.redirect, 4);
    CHECK_INT(rec.all, -1);
    CHECK(spf_record_is_spf("v=spf1", 6));
    CHECK(!spf_record_is_spf("v=spf1mx", 8));
}

static void check_rewrite(const char *in, int v6, const char *want)
{
    char out[512];
    CHECK_INT(spf_record_parse(in, strlen(in), &rec, NULL), 0);
    CHECK_INT(spf_record_rewrite(&rec, v6, out, sizeof out), 0);
    CHECK_STR(out, want);
}

static void test_rewrite(void)
{
    check_rewrite("v=spf1 redirect=x.example ~all", 0, "v=spf1 ~all");
    check_rewrite("v=spf1 ip4:1.1.1.1/0 -all", 0, "v=spf1 +ip4:0.0.0.0/1 +ip4:128.0.0.0/1 -all");
    check_rewrite("v=spf1 -ip6:::1.1.1.1/0", 1, "v=spf1 -ip6:::/1 -ip6:8000::/1");
    check_rewrite("v=spf1 a/0 -all", 0, "v=spf1 +a:%{d}." SPF_CIDR0_SUFFIX " -all");
    check_rewrite("v=spf1 a/0 -all", 1, "v=spf1 +a -all");
    check_rewrite("v=spf1 mx:e.example.//0", 1, "v=spf1 +mx:e.example." SPF_CIDR0_SUFFIX);
    check_rewrite("v=spf1 a:x.example/24//64 foo=bar", 1, "v=spf1 +a:x.example//64");
    check_rewrite("v=spf1 a:x.example/24//64", 0, "v=spf1 +a:x.example/24");
    char small[8];
    CHECK_INT(spf_record_parse("v=spf1 -all", 11, &rec, NULL), 0);
    CHECK_INT(spf_record_rewrite(&rec, 0, small, sizeof small), -1);
}

static void test_macros(void)
{
    struct spf_macro_ctx mc = { 0 };
    char out[300];
    mc.sender = "strong-bad@email.example.com";
    mc.local = "strong-bad";
    mc.sender_dom = "email.example.com";
    mc.domain = "email.example.com";
    mc.helo = "mx.example.org";
    mc.receiver = "rcv.example";
    mc.validated = "unknown";
    mc.family = AF_INET;
    inet_pton(AF_INET, "192.0.2.3", &mc.ip.v4);
    /* RFC 7208 7.4 examples */
    static const struct { const char *in; const char *out; } ex[] = {
        { "%{s}", "strong-bad@email.example.com" },
        { "%{o}", "email.example.com" },
        { "%{d4}", "email.example.com" },   /* more than there are: all */
        { "%{d2}", "example.com" },
        { "%{d1}", "com" },
        { "%{dr}", "com.example.email" },
        { "%{d2r}", "example.email" },
        { "%{l}", "strong-bad" },
        { "%{l-}", "strong.bad" },
        { "%{lr}", "strong-bad" },
        { "%{lr-}", "bad.strong" },
        { "%{l1r-}", "strong" },
        { "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com" },
        { "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com" },
        { "%{d9}", "email.example.com" },   /* libspf2 drops a character here */
        { "%%%_%-", "% %20" },
        { "%{L}", "strong-bad" },
        { "%{S}", "strong-bad%40email.example.com" },
        { "%{c} is %{h}", "192.0.2.3 is mx.example.org" },
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        int n = spf_macro_expand(ex[i].in, strlen(ex[i].in), &mc, 1, out, sizeof out);
        CHECK(n >= 0);
        CHECK_STR(out, ex[i].out);
    }
    mc.family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::cb01", &mc.ip.v6);
    CHECK(spf_macro_expand("%{ir}.%{v}._spf.%{d2}", 21, &mc, 0, out, sizeof out) > 0);
    CHECK_STR(out, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
    CHECK_INT(spf_macro_expand("%{c}", 4, &mc, 0, out, sizeof out), -1);  /* c: exp only */
    CHECK_INT(spf_macro_expand("%{x}", 4, &mc, 1, out, sizeof out), -1);
    CHECK_INT(spf_macro_expand("a b", 3, &mc, 0, out, sizeof out), -1);  /* SP: exp only */
    CHECK_INT(spf_macro_expand("%{s}", 4, &mc, 1, out, 5), -1);          /* too small */
}

static void test_names(void)
{
    CHECK(spf_identity_domain_valid("example.com"));
    CHECK(spf_identity_domain_valid("example.com."));
    CHECK(!spf_identity_domain_valid("A2345678"));
    CHECK(!spf_identity_domain_valid("[1.2.3.5]"));
    CHECK(!spf_identity_domain_valid("1.2.3.5"));
    CHECK(!spf_identity_domain_valid("A...example.com"));
    CHECK(!spf_identity_domain_valid(
        "A123456789012345678901234567890123456789012345678901234567890123.example.com"));
    char longname[400];
    memset(longname, 0, sizeof longname);
    for (int i = 0; i < 60; i++)
        strcat(longname, "abcde.");
    strcat(longname, "com");
    const char *t = spf_name_truncate(longname);
    CHECK(strlen(t) <= SPF_NAME_MAX);
    CHECK(strcmp(t + strlen(t) - 4, ".com") == 0);
    CHECK(spf_name_valid(t));
}

static void test_nets(void)
{
    struct spf_netlist nl = { 0 };
    struct in_addr a4;
    struct in6_addr a6;
    CHECK_INT(spf_netlist_add(&nl, "127.0.0.0/8"), 0);
    CHECK_INT(spf_netlist_add(&nl, "::1"), 0);
    CHECK_INT(spf_netlist_add(&nl, "::ffff:192.0.2.0/120"), 0);
    CHECK_INT(spf_netlist_add(&nl, "10.0.0.0/33"), -1);
    CHECK_INT(spf_netlist_add(&nl, "bogus"), -1);
    CHECK_INT(spf_netlist_add(&nl, "10.0.0.0/"), -1);
    inet_pton(AF_INET, "127.1.2.3", &a4);
    CHECK(spf_netlist_match(&nl, AF_INET, &a4));
    inet_pton(AF_INET, "192.0.2.77", &a4);
    CHECK(spf_netlist_match(&nl, AF_INET, &a4));
    inet_pton(AF_INET, "192.0.3.1", &a4);
    CHECK(!spf_netlist_match(&nl, AF_INET, &a4));
    inet_pton(AF_INET6, "::1", &a6);
    CHECK(spf_netlist_match(&nl, AF_INET6, &a6));
    inet_pton(AF_INET6, "::2", &a6);
    CHECK(!spf_netlist_match(&nl, AF_INET6, &a6));
}

/* The client's reverse name, the target of the PTR query (RFC 7208 5.5). */
static void test_reverse_names(void)
{
    static const struct { const char *ip, *want; } cases[] = {
        { "192.0.2.1", "1.2.0.192.in-addr.arpa" },
        { "0.0.0.0", "0.0.0.0.in-addr.arpa" },
        { "255.10.100.9", "9.100.10.255.in-addr.arpa" },
        { "2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa" },
        { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
          "e.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.ip6.arpa" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char a[16];
        int fam = strchr(cases[i].ip, ':') ? AF_INET6 : AF_INET;
        CHECK(inet_pton(fam, cases[i].ip, a) == 1);
        char out[80];
        spf_reverse_name(fam, a, out, sizeof out);
        CHECK_STR(out, cases[i].want);
    }
    /* a short buffer is cut, and terminated */
    unsigned char a[4] = { 192, 0, 2, 1 };
    char small[8];
    spf_reverse_name(AF_INET, a, small, sizeof small);
    CHECK_STR(small, "1.2.0.1");
}

int main(void)
{
    test_reverse_names();
    test_records();
    test_rewrite();
    test_macros();
    test_names();
    test_nets();
    return check_done();
}
