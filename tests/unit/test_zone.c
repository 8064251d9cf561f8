/*
 * test_zone.c - the master-file parser and the zone lookup semantics.
 * Runs from tests/ (ctest's working directory) and reads data/zones/.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "util/pool.h"
#include "services/zone.h"

static struct as_pool *P;

static const struct as_dns_answer *look(const struct as_zone *z, const char *name,
                                        uint16_t type)
{
    struct as_dns_answer *a = as_pool_alloc(P, sizeof *a);
    as_zone_lookup(z, name, type, P, a);
    return a;
}

static const char *ip4(const struct as_dns_rr *rr)
{
    static char buf[4][INET6_ADDRSTRLEN];
    static int i;
    char *b = buf[i++ % 4];
    inet_ntop(rr->type == 28 ? AF_INET6 : AF_INET, &rr->d, b, INET6_ADDRSTRLEN);
    return b;
}

static struct as_zone *parse(const char *text, char *err, size_t errlen)
{
    return as_zone_parse("t.zone", text, strlen(text), "example.", err, errlen);
}

static void test_name_normalize(void)
{
    char out[AS_DNS_NAME_MAX + 1];
    CHECK_INT(as_dns_name_normalize("Example.COM.", 12, out), 0);
    CHECK_STR(out, "example.com");
    CHECK_INT(as_dns_name_normalize("_dmarc.a-b.example", 18, out), 0);
    CHECK_STR(out, "_dmarc.a-b.example");
    CHECK_INT(as_dns_name_normalize("", 0, out), -1);
    CHECK_INT(as_dns_name_normalize(".", 1, out), -1);
    CHECK_INT(as_dns_name_normalize("a..b", 4, out), -1);
    CHECK_INT(as_dns_name_normalize(".a", 2, out), -1);
    CHECK_INT(as_dns_name_normalize("a b", 3, out), -1);
    CHECK_INT(as_dns_name_normalize("a\\.b", 4, out), -1);
    CHECK_INT(as_dns_name_normalize("caf\xc3\xa9.example", 13, out), -1);
    char label[80];
    memset(label, 'a', 63);
    strcpy(label + 63, ".x");
    CHECK_INT(as_dns_name_normalize(label, strlen(label), out), 0);
    memset(label, 'a', 64);
    strcpy(label + 64, ".x");
    CHECK_INT(as_dns_name_normalize(label, strlen(label), out), -1);
    /* 253 octets is the limit (254 with the trailing dot) */
    char name[300];
    size_t n = 0;
    while (n + 4 <= 252) { memcpy(name + n, "abc.", 4); n += 4; }
    memcpy(name + n, "a", 1);   /* 252 + 1 = 253 */
    n += 1;
    CHECK_INT(as_dns_name_normalize(name, n, out), 0);
    name[n] = '.';
    CHECK_INT(as_dns_name_normalize(name, n + 1, out), 0);
    name[n] = 'b';
    CHECK_INT(as_dns_name_normalize(name, n + 1, out), -1);
}

static void test_test_zone_file(void)
{
    char err[512] = "";
    struct as_zone *z = as_zone_load("data/zones/offline.zone", NULL, err, sizeof err);
    CHECK(z != NULL);
    if (!z) { fprintf(stderr, "%s\n", err); return; }

    const struct as_dns_answer *a = look(z, "Example.", 1);
    CHECK_INT(a->status, AS_DNS_OK);
    CHECK_STR(a->name, "example");
    CHECK_INT(a->nrr, 1);
    CHECK_STR(ip4(&a->rr[0]), "192.0.2.1");
    CHECK_INT(a->rr[0].ttl, 300);                 /* $TTL */

    a = look(z, "example", 28);
    CHECK_INT(a->status, AS_DNS_OK);
    CHECK_STR(ip4(&a->rr[0]), "2001:db8::1");

    a = look(z, "example", 15);
    CHECK_INT(a->nrr, 2);
    CHECK_INT(a->rr[0].d.mx.pref, 10);
    CHECK_STR(a->rr[0].d.mx.host, "mx1.example");  /* relative target */
    CHECK_STR(a->rr[1].d.mx.host, "mx2.example");  /* absolute target */

    a = look(z, "mx1.example", 1);
    CHECK_INT(a->rr[0].ttl, 600);                 /* "600 IN A" */
    a = look(z, "mx2.example", 1);
    CHECK_INT(a->nrr, 2);
    CHECK_INT(a->rr[0].ttl, 600);                 /* "IN 600 A" */
    CHECK_INT(a->rr[1].ttl, 600);                 /* blank owner, "600 A" */
    CHECK_STR(ip4(&a->rr[1]), "192.0.2.12");

    a = look(z, "multi.example", 16);
    CHECK_INT(a->status, AS_DNS_OK);
    CHECK_INT(a->rr[0].d.txt.nstrings, 3);
    CHECK_STR(a->rr[0].d.txt.strings[0].ptr, "first part ");
    CHECK_STR(a->rr[0].d.txt.strings[2].ptr, "third");
    CHECK_STR(a->rr[0].d.txt.joined.ptr, "first part second partthird");
    CHECK_INT(a->rr[0].d.txt.joined.len, 27);

    a = look(z, "escaped.example", 16);
    CHECK_STR(a->rr[0].d.txt.joined.ptr, "quote \" backslash \\ byte A semicolon; here");

    a = look(z, "bare.example", 16);
    CHECK_STR(a->rr[0].d.txt.joined.ptr, "unquoted-word");

    a = look(z, "twotxt.example", 16);
    CHECK_INT(a->nrr, 2);

    a = look(z, "sel._domainkey.example", 16);
    CHECK_INT(a->rr[0].d.txt.nstrings, 2);        /* parentheses across lines */
    CHECK_INT(a->rr[0].d.txt.strings[0].len, 218);
    CHECK(strncmp(a->rr[0].d.txt.joined.ptr, "v=DKIM1; k=rsa; p=MIIB", 22) == 0);
    CHECK_INT(a->rr[0].d.txt.joined.len, 218 + 150);

    /* empty non-terminal: exists, no data */
    CHECK_INT(look(z, "_domainkey.example", 16)->status, AS_DNS_NODATA);
    CHECK_INT(look(z, "_domainkey.example", 16)->ttl, 60);  /* min(SOA ttl, minimum) */
    /* NXDOMAIN vs NODATA */
    CHECK_INT(look(z, "nope.example", 16)->status, AS_DNS_NXDOMAIN);
    CHECK_INT(look(z, "nope.example", 16)->ttl, 60);
    CHECK_INT(look(z, "a.b.nope.example", 1)->status, AS_DNS_NXDOMAIN);
    CHECK_INT(look(z, "txtonly.example", 1)->status, AS_DNS_NODATA);
    CHECK_INT(look(z, "www.example", 16)->status, AS_DNS_NODATA);
    CHECK_INT(look(z, "otherzone.invalid", 1)->status, AS_DNS_NXDOMAIN);
    CHECK_INT(look(z, "otherzone.invalid", 1)->ttl, 0);      /* no SOA above it */

    /* CNAME: returned for CNAME, followed for other types */
    a = look(z, "alias.example", 5);
    CHECK_INT(a->status, AS_DNS_OK);
    CHECK_STR(a->rr[0].d.name, "www.example");
    a = look(z, "alias2.example", 1);
    CHECK_INT(a->status, AS_DNS_OK);
    CHECK_INT(a->nrr, 2);
    CHECK_INT(a->rr[0].type, 1);
    CHECK_STR(ip4(&a->rr[1]), "192.0.2.81");
    CHECK_INT(look(z, "alias.example", 16)->status, AS_DNS_NODATA);
    CHECK_INT(look(z, "dangling.example", 1)->status, AS_DNS_NXDOMAIN);
    CHECK_INT(look(z, "dangling.example", 5)->status, AS_DNS_OK);

    /* wildcard at the closest encloser only */
    a = look(z, "anything.wild.example", 16);
    CHECK_INT(a->status, AS_DNS_OK);
    CHECK_STR(a->rr[0].d.txt.joined.ptr, "wildcard");
    CHECK_INT(look(z, "x.y.wild.example", 16)->status, AS_DNS_OK);
    CHECK_INT(look(z, "anything.wild.example", 1)->status, AS_DNS_NODATA);
    CHECK_INT(look(z, "wild.example", 16)->status, AS_DNS_NODATA);

    /* null MX */
    a = look(z, "nullmx.example", 15);
    CHECK_INT(a->rr[0].d.mx.pref, 0);
    CHECK_STR(a->rr[0].d.mx.host, "");

    /* the included reverse zone */
    a = look(z, "1.2.0.192.in-addr.arpa", 12);
    CHECK_INT(a->status, AS_DNS_OK);
    CHECK_STR(a->rr[0].d.name, "example");
    CHECK_INT(look(z, "80.2.0.192.in-addr.arpa", 12)->nrr, 2);
    CHECK_INT(look(z, "99.2.0.192.in-addr.arpa", 12)->status, AS_DNS_NXDOMAIN);

    /* test directives */
    CHECK_INT(look(z, "slow.example", 16)->status, AS_DNS_TIMEOUT);
    CHECK_INT(look(z, "BROKEN.example.", 1)->status, AS_DNS_SERVFAIL);
    CHECK_INT(look(z, "x.slow.example", 16)->status, AS_DNS_NXDOMAIN);

    CHECK_INT(look(z, "bad..name", 16)->status, AS_DNS_BADNAME);
    as_zone_free(z);
}

static void test_constructs(void)
{
    char err[512] = "";
    const char *text =
        "$TTL 1h30m\n"
        "@ SOA ns hm 1 2 3 4 1d\n"
        "a IN 5 A 10.0.0.1 ; comment\n"
        "  IN TXT \"inherits owner a\"\n"
        "b.example. A 10.0.0.2\n"
        "$ORIGIN sub.example.\n"
        "c TXT ( one\n"
        "  \"two words\" ; comment inside parentheses\n"
        "  three )\n"
        "@ MX 5 c\n"
        "d 2w A 10.0.0.3\n"
        "e CAA 0 issue \"letsencrypt.org\"\n"
        "f TYPE65534 \\# 0\n"
        "$ORIGIN .\n"
        "abs.other A 10.9.9.9\n"
        "\"quoted-owner-is-ok\"x TXT x\n";
    /* the last line has an unquoted owner made of a quoted string: reject */
    struct as_zone *z = parse(text, err, sizeof err);
    CHECK(z == NULL);
    CHECK_STR(err, "t.zone:16: a name cannot be quoted: '\"quoted-owner-is-ok\"'");
    as_zone_free(z);

    const char *good_end = strstr(text, "\"quoted");
    char *ok = strndup(text, (size_t)(good_end - text));
    z = parse(ok, err, sizeof err);
    free(ok);
    CHECK(z != NULL);
    if (!z) { fprintf(stderr, "%s\n", err); return; }
    const struct as_dns_answer *a = look(z, "a.example", 1);
    CHECK_INT(a->rr[0].ttl, 5);
    a = look(z, "a.example", 16);
    CHECK_INT(a->rr[0].ttl, 5400);                /* $TTL 1h30m */
    CHECK_STR(a->rr[0].d.txt.joined.ptr, "inherits owner a");
    CHECK_INT(look(z, "b.example", 1)->status, AS_DNS_OK);
    a = look(z, "c.sub.example", 16);
    CHECK_INT(a->rr[0].d.txt.nstrings, 3);
    CHECK_STR(a->rr[0].d.txt.strings[1].ptr, "two words");
    a = look(z, "sub.example", 15);
    CHECK_STR(a->rr[0].d.mx.host, "c.sub.example");
    CHECK_INT(look(z, "d.sub.example", 1)->rr[0].ttl, 1209600);
    CHECK_INT(look(z, "e.sub.example", 16)->status, AS_DNS_NODATA);  /* kept as existing */
    CHECK_INT(look(z, "f.sub.example", 16)->status, AS_DNS_NODATA);
    CHECK_INT(look(z, "abs.other", 1)->status, AS_DNS_OK);
    CHECK_INT(look(z, "zzz.example", 1)->ttl, 5400);  /* min(SOA ttl 5400, minimum 1d) */
    CHECK_INT(as_zone_record_count(z), 10);
    as_zone_free(z);

    /* no $TTL: the last explicit TTL carries over (RFC 1035) */
    z = parse("a 42 A 1.1.1.1\nb A 1.1.1.2\n", err, sizeof err);
    CHECK(z != NULL);
    if (z) CHECK_INT(look(z, "b.example", 1)->rr[0].ttl, 42);
    as_zone_free(z);

    /* CRLF line endings */
    z = parse("a A 1.1.1.1\r\nb TXT \"x\"\r\n", err, sizeof err);
    CHECK(z != NULL);
    if (z) CHECK_STR(look(z, "b.example", 16)->rr[0].d.txt.joined.ptr, "x");
    as_zone_free(z);
}

static void test_include(void)
{
    char dir[] = "/tmp/authscan-zone-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], inc[256], bad[256];
    snprintf(path, sizeof path, "%s/main.zone", dir);
    snprintf(inc, sizeof inc, "%s/inc.zone", dir);
    snprintf(bad, sizeof bad, "%s/bad.zone", dir);
    FILE *f = fopen(inc, "w");
    fputs("x TXT \"from include\"\n", f);
    fclose(f);
    f = fopen(path, "w");
    fputs("$ORIGIN main.\nm A 1.2.3.4\n$INCLUDE inc.zone other.\ny TXT \"after\"\n", f);
    fclose(f);
    char err[512] = "";
    struct as_zone *z = as_zone_load(path, NULL, err, sizeof err);
    CHECK(z != NULL);
    if (z) {
        CHECK_INT(look(z, "x.other", 16)->status, AS_DNS_OK);
        CHECK_INT(look(z, "y.main", 16)->status, AS_DNS_OK);   /* origin restored */
    } else {
        fprintf(stderr, "%s\n", err);
    }
    as_zone_free(z);

    f = fopen(bad, "w");
    fputs("ok A 1.2.3.4\n\nbroken A 1.2.3\n", f);
    fclose(f);
    f = fopen(path, "w");
    fputs("$ORIGIN main.\n$INCLUDE bad.zone\n", f);
    fclose(f);
    z = as_zone_load(path, NULL, err, sizeof err);
    CHECK(z == NULL);
    char want[512];
    snprintf(want, sizeof want, "%s:3: bad IPv4 address '1.2.3'", bad);
    CHECK_STR(err, want);

    f = fopen(path, "w");
    fputs("$INCLUDE main.zone\n", f);   /* includes itself */
    fclose(f);
    z = as_zone_load(path, NULL, err, sizeof err);
    CHECK(z == NULL);
    CHECK(strstr(err, "$INCLUDE nested more than 8 deep") != NULL);

    f = fopen(path, "w");
    fputs("$INCLUDE missing.zone\n", f);
    fclose(f);
    z = as_zone_load(path, NULL, err, sizeof err);
    CHECK(z == NULL);
    snprintf(want, sizeof want, "%s:1: cannot open '%s/missing.zone'", path, dir);
    CHECK(strncmp(err, want, strlen(want)) == 0);

    z = as_zone_load("/nonexistent/x.zone", NULL, err, sizeof err);
    CHECK(z == NULL);
    CHECK_STR(err, "/nonexistent/x.zone: cannot open: No such file or directory");

    unlink(inc);
    unlink(bad);
    unlink(path);
    rmdir(dir);
}

struct bad_case {
    const char *text;
    const char *err;
};

static const struct bad_case bad_cases[] = {
    { "a A 1.2.3.4\nb A 1.2.3\n", "t.zone:2: bad IPv4 address '1.2.3'" },
    { "a A 1.2.3.4 5.6.7.8\n", "t.zone:1: A record needs 1 field, got 2" },
    { "a AAAA 2001:db8::g\n", "t.zone:1: bad IPv6 address '2001:db8::g'" },
    { "a MX 70000 b\n", "t.zone:1: bad MX preference '70000'" },
    { "a MX 10\n", "t.zone:1: MX record needs 2 fields, got 1" },
    { "a TXT\n", "t.zone:1: TXT record needs at least 1 field, got 0" },
    { "a FOO x\n", "t.zone:1: unknown record type 'FOO'" },
    { "a IN\n", "t.zone:1: missing record type" },
    { "a 1x A 1.2.3.4\n", "t.zone:1: bad TTL '1x'" },
    { "a 1 2 A 1.2.3.4\n", "t.zone:1: bad TTL '2'" },
    { "a CH A 1.2.3.4\n", "t.zone:1: unsupported class 'CH'" },
    { "a TXT \"open\n", "t.zone:1: unterminated quoted string" },
    { "a TXT ( \"x\"\n\n\n", "t.zone:1: '(' not closed" },
    { "a TXT \"x\" )\n", "t.zone:1: ')' without '('" },
    { "\n\n  A 1.2.3.4\n", "t.zone:3: no owner name and no previous record" },
    { "a..b A 1.2.3.4\n", "t.zone:1: bad name 'a..b'" },
    { "a CNAME b\na A 1.2.3.4\n", "t.zone:2: CNAME and other data at 'a.example'" },
    { "a A 1.2.3.4\na CNAME b\n", "t.zone:2: CNAME and other data at 'a.example'" },
    { "a CNAME b\na CNAME c\n", "t.zone:2: two CNAMEs at 'a.example'" },
    { "$TTL forever\n", "t.zone:1: bad $TTL 'forever'" },
    { "$ORIGIN\n", "t.zone:1: $ORIGIN needs one name" },
    { "$FOO bar\n", "t.zone:1: unknown directive '$FOO'" },
    { "a TXT \"\\999\"\n", "t.zone:1: bad \\DDD escape (999 > 255)" },
    { "a\\", "t.zone:1: backslash at end of line" },
    { "a\\12 A 1.2.3.4\n", "t.zone:1: bad \\DDD escape" },
    { "a\\256 A 1.2.3.4\n", "t.zone:1: bad \\DDD escape (256 > 255)" },
    { "; authscan: timeout a\\\n", "t.zone:1: backslash at end of name" },
    { "; authscan: timeout a\\1\n", "t.zone:1: bad \\DDD escape in 'a\\1'" },
    { "\\...b A 1.2.3.4\n", "t.zone:1: bad name '\\...b'" },
    { "@ SOA ns hm 1 2 3 4\n", "t.zone:1: SOA record needs 7 fields, got 6" },
    { "@ SOA ns hm x 2 3 4 5\n", "t.zone:1: bad SOA serial 'x'" },
    { "; authscan: slowly a\n", "t.zone:1: unknown authscan directive 'slowly' (timeout, servfail)" },
    { "\n; authscan: timeout\n", "t.zone:2: authscan: timeout needs one name" },
    { "a TXT \"x\0y\"\n", "t.zone:1: unterminated quoted string" },  /* text ends at NUL */
};

/* RFC 1035 escapes in names: "\\." is a dot inside a label, "\\032" a
 * blank.  A file with such names loads; names a query can spell answer. */
static void test_escapes(void)
{
    char err[512] = "";
    const char *text =
        "a\\032b TXT \"escaped space\"\n"
        "dot\\.inside A 10.0.0.1\n"
        "\\065Bc A 10.0.0.2\n"
        "x\\(y TXT semi\\;colon\n"
        "t TXT v=spf1\\032-all \"q\\\"uote\"\n"
        "c CNAME tgt\\032x\n"
        "$ORIGIN sp\\032ace.example.\n"
        "in A 10.0.0.3\n"
        "$ORIGIN example.\n"
        "plain A 10.0.0.4\n";
    struct as_zone *z = parse(text, err, sizeof err);
    CHECK(z != NULL);
    if (!z) { fprintf(stderr, "%s\n", err); return; }
    CHECK_INT(as_zone_record_count(z), 8);
    /* a query name cannot hold a blank: refused, the rest of the file answers */
    CHECK_INT(look(z, "a b.example", 16)->status, AS_DNS_BADNAME);
    CHECK_INT(look(z, "plain.example", 1)->status, AS_DNS_OK);
    /* "\\." does not split labels */
    CHECK_INT(look(z, "inside.example", 1)->status, AS_DNS_NXDOMAIN);
    CHECK_INT(look(z, "dot.inside.example", 1)->status, AS_DNS_NXDOMAIN);
    /* an escaped ordinary character is that character, case-folded */
    CHECK_STR(ip4(&look(z, "abc.example", 1)->rr[0]), "10.0.0.2");
    const struct as_dns_answer *a = look(z, "x(y.example", 16);
    CHECK_INT(a->status, AS_DNS_OK);
    if (a->nrr) CHECK_STR(a->rr[0].d.txt.joined.ptr, "semi;colon");
    a = look(z, "t.example", 16);
    CHECK_INT(a->status, AS_DNS_OK);
    if (a->nrr) {
        CHECK_INT(a->rr[0].d.txt.nstrings, 2);
        CHECK_STR(a->rr[0].d.txt.strings[0].ptr, "v=spf1 -all");
        CHECK_STR(a->rr[0].d.txt.strings[1].ptr, "q\"uote");
    }
    /* a target no query can reach: the CNAME is kept, following it ends */
    a = look(z, "c.example", 5);
    CHECK_INT(a->status, AS_DNS_OK);
    if (a->nrr) CHECK_STR(a->rr[0].d.name, "tgt\\032x.example");
    CHECK_INT(look(z, "c.example", 1)->status, AS_DNS_NXDOMAIN);
    /* the escaped origin made "example" exist: the rest is unchanged */
    CHECK_INT(look(z, "example", 1)->status, AS_DNS_NODATA);
    as_zone_free(z);

    /* length counts octets, not the characters of their escapes: four
     * labels of 63 escaped octets (255) are too long, 63+63+63+61 fit */
    char name[1200];
    size_t o = 0;
    for (int l = 0; l < 4; l++) {
        for (int k = 0; k < (l == 3 ? 61 : 63); k++) o += (size_t)sprintf(name + o, "\\%03d", 32);
        name[o++] = '.';
    }
    snprintf(name + o, sizeof name - o, " A 10.0.0.9\n");
    z = as_zone_parse("t.zone", name, strlen(name), ".", err, sizeof err);
    CHECK(z != NULL);
    if (!z) fprintf(stderr, "%s\n", err);
    as_zone_free(z);
    char *last = strstr(name, ". A ");
    memmove(last + 8, last, strlen(last) + 1);
    memcpy(last, "\\032\\032", 8);
    z = as_zone_parse("t.zone", name, strlen(name), ".", err, sizeof err);
    CHECK(z == NULL);
    CHECK(strncmp(err, "t.zone:1: name too long: '\\032", 30) == 0);
    as_zone_free(z);
    /* the same through a relative name and the origin */
    z = parse("a\\032b\\032c A 10.0.0.1\n", err, sizeof err);
    CHECK(z != NULL);
    as_zone_free(z);
}

static void test_malformed(void)
{
    char err[512];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        err[0] = '\0';
        struct as_zone *z = parse(bad_cases[i].text, err, sizeof err);
        CHECK(z == NULL);
        as_zone_free(z);
        CHECK_STR(err, bad_cases[i].err);
    }
    /* relative names without an origin */
    struct as_zone *z = as_zone_parse("n.zone", "a A 1.2.3.4\n", 12, NULL, err, sizeof err);
    CHECK(z == NULL);
    CHECK_STR(err, "n.zone:1: relative name 'a' without $ORIGIN");

    /* NUL byte inside the buffer */
    static const char nul[] = "a A 1.2.3.4\nb TXT x\0y\n";
    z = as_zone_parse("n.zone", nul, sizeof nul - 1, "example", err, sizeof err);
    CHECK(z == NULL);
    CHECK_STR(err, "n.zone:2: NUL byte in file");

    /* long lines and TXT strings are bounded */
    size_t big = 70000;
    char *line = malloc(big + 32);
    memcpy(line, "a TXT ", 6);
    memset(line + 6, 'x', big);
    strcpy(line + 6 + big, "\n");
    z = parse(line, err, sizeof err);
    CHECK(z == NULL);
    CHECK_STR(err, "t.zone:1: line longer than 65536 bytes");
    strcpy(line + 6 + 256, "\n");
    z = parse(line, err, sizeof err);
    CHECK(z == NULL);
    CHECK_STR(err, "t.zone:1: TXT string longer than 255 octets");
    free(line);

    /* garbage never crashes: every prefix of a valid file either loads or
     * reports an error with a line number */
    FILE *f = fopen("data/zones/example.zone", "rb");
    CHECK(f != NULL);
    if (!f) return;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int errors_ok = 1;
    for (size_t cut = 0; cut < n; cut += 7) {
        err[0] = '\0';
        z = as_zone_parse("p.zone", buf, cut, NULL, err, sizeof err);
        if (!z && strncmp(err, "p.zone:", 7) != 0) errors_ok = 0;
        as_zone_free(z);
    }
    CHECK(errors_ok);
}

int main(void)
{
    P = as_pool_new(0);
    test_name_normalize();
    test_test_zone_file();
    test_constructs();
    test_include();
    test_escapes();
    test_malformed();
    as_pool_destroy(P);
    return check_done();
}
