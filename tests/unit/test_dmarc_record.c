/*
 * test_dmarc_record.c - DMARC Policy Record parser (RFC 9989 4.7-4.8) and
 * the 4.10.1 usability rule, table-driven.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "util/pool.h"
#include "dmarc_record.h"

static struct as_pool *pool;

struct pcase {
    const char *txt;
    int status;                 /* enum dmarc_parse_status */
    const char *p, *sp, *np;    /* policy names ("unset" when absent/invalid) */
    char psd;
    int testing, adkim_s, aspf_s, pct;
    unsigned invalid;
    int nerrors;
};

static const struct pcase cases[] = {
    { "v=DMARC1; p=reject", DMARC_REC_OK, "reject", "unset", "unset", 'u', 0, 0, 0, 100, 0, 0 },
    { "v=DMARC1;p=quarantine;sp=none;np=reject;psd=n;t=y;adkim=s;aspf=S;pct=20",
      DMARC_REC_OK, "quarantine", "none", "reject", 'n', 1, 1, 1, 20, 0, 0 },
    { "V = DMARC1 ; P = Reject ; ", DMARC_REC_OK, "reject", "unset", "unset", 'u', 0, 0, 0, 100, 0, 0 },
    { "v=DMARC1; p=none; p=reject", DMARC_REC_OK, "none", "unset", "unset", 'u', 0, 0, 0, 100, 0, 0 },
    { "v=DMARC1; p=none; foo=bar; x-y=1", DMARC_REC_OK, "none", "unset", "unset", 'u', 0, 0, 0, 100,
      0, 1 },                                             /* x-y: not 1*ALPHA */
    { "v=DMARC1; p=rejected; adkim=x; pct=101; ri=-1; t=yes", DMARC_REC_OK, "unset", "unset",
      "unset", 'u', 0, 0, 0, 100,
      AS_DMARC_TAG_P | AS_DMARC_TAG_ADKIM | AS_DMARC_TAG_PCT | AS_DMARC_TAG_RI | AS_DMARC_TAG_T, 5 },
    { "v=DMARC1\\; p=reject\\;", DMARC_REC_OK, "reject", "unset", "unset", 'u', 0, 0, 0, 100, 0, 0 },
    { "v=DMARC1; p=none; fo:1; ;; sp-none", DMARC_REC_OK, "none", "unset", "unset", 'u', 0, 0, 0,
      100, 0, 2 },
    { "v=DMARC1; p=none; rua=ftp://x.example", DMARC_REC_OK, "none", "unset", "unset", 'u', 0, 0, 0,
      100, AS_DMARC_TAG_RUA, 0 },                         /* a URI, not one of ours: no error */
    { "v=DMARC1; p=none; rua=not a uri", DMARC_REC_OK, "none", "unset", "unset", 'u', 0, 0, 0, 100,
      AS_DMARC_TAG_RUA, 1 },
    { "p=reject; v=DMARC1", DMARC_REC_NOT_DMARC, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, 0 },
    { "v=DMARC1x; p=reject", DMARC_REC_NOT_DMARC, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, 0 },
    { "v=dmarc1; p=reject", DMARC_REC_NOT_DMARC, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, 0 },
    { "v=spf1 -all", DMARC_REC_NOT_DMARC, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, 0 },
    { "", DMARC_REC_NOT_DMARC, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, 0 },
    { "v=DMARC1", DMARC_REC_OK, "unset", "unset", "unset", 'u', 0, 0, 0, 100, 0, 0 },
};

static void test_parse(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct pcase *c = &cases[i];
        struct as_dmarc_record r;
        int st = dmarc_record_parse(pool, c->txt, strlen(c->txt), &r);
        CHECK_INT(st, c->status);
        if (st != DMARC_REC_OK || c->status != DMARC_REC_OK)
            continue;
        CHECK_STR(as_dmarc_policy_name(r.p), c->p);
        CHECK_STR(as_dmarc_policy_name(r.sp), c->sp);
        CHECK_STR(as_dmarc_policy_name(r.np), c->np);
        CHECK_INT(r.psd, c->psd);
        CHECK_INT(r.testing, c->testing);
        CHECK_INT(r.adkim_strict, c->adkim_s);
        CHECK_INT(r.aspf_strict, c->aspf_s);
        CHECK_INT(r.pct, c->pct);
        CHECK_INT(r.invalid, c->invalid);
        if (r.nerrors != c->nerrors)
            fprintf(stderr, "case %zu '%s': nerrors %d\n", i, c->txt, r.nerrors);
        CHECK_INT(r.nerrors, c->nerrors);
        CHECK_INT(dmarc_record_is_dmarc(c->txt, strlen(c->txt)), 1);
    }
}

static void test_values(void)
{
    struct as_dmarc_record r;
    const char *t = "v=DMARC1; p=none; rua=mailto:Agg@Example.COM!10m, https://r.example/x; "
                    "ruf=mailto:f@example.com; fo=0:d:S; rf=AFRF:iodef; ri=4294967295";
    CHECK_INT(dmarc_record_parse(pool, t, strlen(t), &r), DMARC_REC_OK);
    CHECK_STR(r.rua, "mailto:Agg@Example.COM!10m, https://r.example/x");
    CHECK_STR(r.ruf, "mailto:f@example.com");
    CHECK_STR(r.fo, "0:d:S");
    CHECK_STR(r.rf, "AFRF:iodef");
    CHECK(r.ri == 4294967295UL);
    CHECK_INT(r.invalid, 0);
    CHECK_STR(r.text, t);
    t = "v=DMARC1; p=none; ri=4294967296; fo=2; rf=xml";
    CHECK_INT(dmarc_record_parse(pool, t, strlen(t), &r), DMARC_REC_OK);
    CHECK(r.ri == 86400);
    CHECK_STR(r.fo, "0");
    CHECK_STR(r.rf, "afrf");
    CHECK_INT(r.invalid, AS_DMARC_TAG_RI | AS_DMARC_TAG_FO | AS_DMARC_TAG_RF);
    /* documented deviation: RFC 9989 4.8 dmarc-fo makes "0" and "1" exclusive,
     * we keep RFC 7489's list grammar (only failure reports read fo) */
    t = "v=DMARC1; p=none; fo=0:1";
    CHECK_INT(dmarc_record_parse(pool, t, strlen(t), &r), DMARC_REC_OK);
    CHECK_STR(r.fo, "0:1");
    CHECK_INT(r.invalid, 0);
    /* the length bound */
    char big[DMARC_RECORD_MAX + 64];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    memcpy(big, "v=DMARC1; p=reject; x=", 22);
    CHECK_INT(dmarc_record_parse(pool, big, strlen(big), &r), DMARC_REC_TOO_LONG);
    /* NUL inside a record ends nothing early and crashes nothing */
    const char nul[] = "v=DMARC1; p=reject\0; sp=none";
    CHECK_INT(dmarc_record_parse(pool, nul, sizeof nul - 1, &r), DMARC_REC_OK);
}

static void test_usable(void)
{
    static const struct {
        const char *txt;
        int bis, usable;
        const char *p;
    } u[] = {
        { "v=DMARC1; p=reject", 1, 1, "reject" },
        { "v=DMARC1; rua=mailto:a@example.com", 1, 1, "none" },
        { "v=DMARC1; p=bogus; rua=mailto:a@example.com", 0, 1, "none" },
        { "v=DMARC1; p=bogus", 1, 0, NULL },
        { "v=DMARC1; adkim=s", 1, 0, NULL },
        { "v=DMARC1; p=reject; sp=bad", 1, 0, NULL },
        { "v=DMARC1; p=reject; sp=bad; rua=mailto:a@example.com", 1, 1, "none" },
        { "v=DMARC1; p=reject; np=bad", 1, 0, NULL },
        { "v=DMARC1; p=reject; np=bad", 0, 1, "reject" },   /* np= is not RFC 7489 */
        { "v=DMARC1; psd=y", 1, 1, "none" },
        { "v=DMARC1; psd=y", 0, 0, NULL },
        { "v=DMARC1; rua=ftp://a.example", 1, 0, NULL },
        { "v=DMARC1; rua=mailto:noaddress", 1, 0, NULL },
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        struct as_dmarc_record r;
        enum as_dmarc_policy p = AS_DMARC_POLICY_UNSET;
        CHECK_INT(dmarc_record_parse(pool, u[i].txt, strlen(u[i].txt), &r), DMARC_REC_OK);
        int got = dmarc_record_usable(&r, u[i].bis, &p);
        if (got != u[i].usable)
            fprintf(stderr, "usable '%s' bis=%d: got %d\n", u[i].txt, u[i].bis, got);
        CHECK_INT(got, u[i].usable);
        if (got)
            CHECK_STR(as_dmarc_policy_name(p), u[i].p);
    }
    CHECK_INT(dmarc_urilist_usable("mailto:a@b.example!5k"), 1);
    CHECK_INT(dmarc_urilist_usable("mailto:a@b.example!5x"), 0);
    CHECK_INT(dmarc_urilist_usable(" ftp://x , mailto:a@b.example "), 1);
    CHECK_INT(dmarc_urilist_usable(NULL), 0);
}

int main(void)
{
    pool = as_pool_new(0);
    test_parse();
    test_values();
    test_usable();
    as_pool_destroy(pool);
    return check_done();
}
