/* Unit tests for plugins/arc (arc_parse.c, arc_crypto.c) and the shared
 * canonicalization (plugins/dkim/dkim_canon.c): field kinds, instances,
 * chain structure (RFC 8617 5.2 steps 1-3), ARC-Authentication-Results,
 * canonical forms (RFC 6376 3.4 examples).  Table-driven. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arc_crypto.h"
#include "arc_parse.h"
#include "check.h"
#include "dkim_canon.h"

static int slice_is(struct dkim_slice v, const char *want)
{
    return v.n == strlen(want) && memcmp(v.p, want, v.n) == 0;
}

static void test_kinds(void)
{
    CHECK_INT(arc_field_kind("ARC-Seal", 8), ARC_AS);
    CHECK_INT(arc_field_kind("arc-seal", 8), ARC_AS);
    CHECK_INT(arc_field_kind("ARC-Message-Signature", 21), ARC_AMS);
    CHECK_INT(arc_field_kind("Arc-Authentication-Results", 26), ARC_AAR);
    CHECK_INT(arc_field_kind("ARC-Seals", 9), -1);
    CHECK_INT(arc_field_kind("DKIM-Signature", 14), -1);
}

static void test_aar_instance(void)
{
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        { "i=1; example.org; spf=pass", 1 },
        { " i = 50 ;x", 50 },
        { "\r\n\ti=7;", 7 },
        { "i=51; x", -1 },
        { "i=0; x", -1 },
        { "i=01; x", -1 },
        { "i=1 x", -1 },
        { "i=; x", -1 },
        { "i=1", -1 },
        { "x=1; i=1;", -1 },
        { "i=999999999999999999999; x", -1 },
        { "", -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *err = NULL;
        int got = arc_aar_instance(cases[i].in, strlen(cases[i].in), &err);
        if (got != cases[i].want)
            fprintf(stderr, "case '%s': got %d, want %d\n", cases[i].in, got, cases[i].want);
        CHECK_INT(got, cases[i].want);
        CHECK(got > 0 || err != NULL);
    }
}

/* A chain from a compact description: one string per field, "K:value"
 * with K one of R (AAR), M (AMS), S (AS). */
static int build(const char *const *desc, size_t n, struct arc_chain *c, const char **err,
                 struct arc_field *fields, int *kinds)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = desc[i] + 2;
        kinds[i] = desc[i][0] == 'R' ? ARC_AAR : desc[i][0] == 'M' ? ARC_AMS : ARC_AS;
        fields[i] = (struct arc_field){ desc[i], strlen(desc[i]), v, strlen(v) };
    }
    return arc_chain_build(fields, kinds, n, c, err);
}

static void test_chain(void)
{
    static const struct {
        const char *name;
        const char *f[9];
        int want;
        unsigned n;
        const char *err;
    } cases[] = {
        { "none", { NULL }, 0, 0, NULL },
        { "one set", { "S:i=1; cv=none; a=x", "M:i=1; a=x", "R:i=1; x; none" }, 1, 1, NULL },
        { "two sets any order",
          { "R:i=2; x", "S:i=2; cv=pass", "M:i=1", "S:i=1; cv=none", "M:i=2", "R:i=1; y" },
          1, 2, NULL },
        { "missing AMS", { "S:i=1; cv=none", "R:i=1; x" }, -1, 1,
          "an ARC set lacks ARC-Message-Signature" },
        { "gap", { "S:i=2; cv=pass", "M:i=2", "R:i=2; x" }, -1, 2,
          "an ARC set lacks ARC-Authentication-Results" },
        { "duplicate", { "S:i=1; cv=none", "S:i=1; cv=none", "M:i=1", "R:i=1; x" }, -1, 0,
          "two ARC-Seal with the same i=" },
        { "cv=pass at 1", { "S:i=1; cv=pass", "M:i=1", "R:i=1; x" }, -1, 1,
          "ARC-Seal i=1 does not say cv=none" },
        { "cv=none at 2",
          { "S:i=1; cv=none", "M:i=1", "R:i=1; x", "S:i=2; cv=none", "M:i=2", "R:i=2; x" }, -1,
          2, "ARC-Seal past i=1 does not say cv=pass" },
        { "newest says fail", { "S:i=1; cv=fail", "M:i=1", "R:i=1; x" }, -2, 1,
          "the newest ARC-Seal says cv=fail" },
        { "older says fail",
          { "S:i=1; cv=fail", "M:i=1", "R:i=1; x", "S:i=2; cv=pass", "M:i=2", "R:i=2; x" }, -1,
          2, "ARC-Seal i=1 does not say cv=none" },
        { "bad cv", { "S:i=1; cv=maybe", "M:i=1", "R:i=1; x" }, -1, 0,
          "ARC-Seal without a valid cv=" },
        { "no cv", { "S:i=1", "M:i=1", "R:i=1; x" }, -1, 0, "ARC-Seal without a valid cv=" },
        { "instance 51", { "S:i=51; cv=pass" }, -1, 0, "instance over 50" },
        { "no i", { "S:cv=none" }, -1, 0, "no i= tag" },
        { "empty tag-spec", { "S:i=1;; cv=none" }, -1, 0, "ARC-Seal: empty tag-spec" },
        { "bad tag-list", { "M:i=1; a" }, -1, 0, "tag without '='" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct arc_chain c;
        struct arc_field fields[9];
        int kinds[9];
        size_t n = 0;
        while (n < 9 && cases[i].f[n])
            n++;
        const char *err = NULL;
        int got = build(cases[i].f, n, &c, &err, fields, kinds);
        if (got != cases[i].want)
            fprintf(stderr, "case %s: got %d (%s)\n", cases[i].name, got, err ? err : "-");
        CHECK_INT(got, cases[i].want);
        CHECK_INT(c.n, cases[i].n);
        if (cases[i].err)
            CHECK_STR(err, cases[i].err);
    }

    /* 151 fields: refused before any is parsed */
    struct arc_field *many = calloc(151, sizeof *many);
    int *kinds = calloc(151, sizeof *kinds);
    struct arc_chain c;
    const char *err = NULL;
    for (int i = 0; i < 151; i++)
        many[i] = (struct arc_field){ "x", 1, "x", 1 };
    CHECK_INT(arc_chain_build(many, kinds, 151, &c, &err), -1);
    CHECK_STR(err, "more than 50 ARC sets");
    /* an over-long field */
    size_t big = ARC_FIELD_MAX + 1;
    char *text = malloc(big);
    memset(text, 'a', big);
    many[0] = (struct arc_field){ text, big, text, big };
    CHECK_INT(arc_chain_build(many, kinds, 1, &c, &err), -1);
    CHECK_STR(err, "ARC header field too long");
    free(text);
    free(many);
    free(kinds);
}

static void test_aar(void)
{
    struct arc_aar a;
    const char *err = NULL;
    const char *v = " i=2; lists.example.org 1;\r\n spf=pass (sender ok) smtp.mailfrom=a@d1.example;"
                    "\r\n\tdkim=pass (1024-bit key) header.i=@d1.example header.d=\"d1.example\";"
                    " dmarc/1=fail reason=\"x; y\" header.from=d1.example; ;";
    CHECK_INT(arc_aar_parse(v, strlen(v), &a, &err), 0);
    CHECK_INT(a.instance, 2);
    CHECK(slice_is(a.authserv_id, "lists.example.org"));
    CHECK_INT(a.nres, 3);
    CHECK(slice_is(a.res[0].method, "spf"));
    CHECK(slice_is(a.res[0].result, "pass"));
    CHECK_INT(a.res[0].nprops, 1);
    CHECK(slice_is(a.res[0].props[0].name, "smtp.mailfrom"));
    CHECK(slice_is(a.res[0].props[0].value, "a@d1.example"));
    CHECK_INT(a.res[1].nprops, 2);
    CHECK(slice_is(a.res[1].props[1].value, "d1.example"));
    CHECK(slice_is(a.res[2].method, "dmarc"));
    CHECK_INT(a.res[2].nprops, 1);      /* reason= dropped */

    const char *none = "i=1; mx.example; none";
    CHECK_INT(arc_aar_parse(none, strlen(none), &a, &err), 0);
    CHECK_INT(a.nres, 0);

    static const char *const bad[] = {
        "i=1; x; spf", "i=1; x; spf=pass smtp.mailfrom", "i=1; x; spf=pass (unterminated",
        "i=1; x; spf=\"pass", "i=1; ; spf=pass", "i=1; x y", "i=1;", "i=x; y",
        "i=1; x; (((((((((((((((((deep)))))))))))))))))",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        int rc = arc_aar_parse(bad[i], strlen(bad[i]), &a, &err);
        if (rc != -1)
            fprintf(stderr, "bad AAR accepted: %s\n", bad[i]);
        CHECK_INT(rc, -1);
        CHECK(err != NULL);
    }
    /* more results than ARC_AAR_RESULTS_MAX */
    char buf[2048] = "i=1; x";
    for (int i = 0; i < ARC_AAR_RESULTS_MAX + 1; i++)
        strcat(buf, "; a=b");
    CHECK_INT(arc_aar_parse(buf, strlen(buf), &a, &err), -1);
    CHECK_STR(err, "too many results");
}

static void emit_buf(void *arg, const char *p, size_t n)
{
    strncat(arg, p, n);
}

static void test_canon(void)
{
    /* RFC 6376 3.4.5 example */
    char out[256];
    size_t k = dkimcanon_header("A: X", 4, 1, 0, out);
    CHECK(k == 5 && memcmp(out, "a:X\r\n", 5) == 0);
    const char *h1 = "B : Y\t\r\n\tZ  ", *h2 = "B : Y\t\n\tZ  ";
    k = dkimcanon_header(h1, strlen(h1), 1, 0, out);
    CHECK(k == 7 && memcmp(out, "b:Y Z\r\n", 7) == 0);
    k = dkimcanon_header(h2, strlen(h2), 1, 1, out);     /* bare LF, last */
    CHECK(k == 5 && memcmp(out, "b:Y Z", 5) == 0);
    k = dkimcanon_header("B : Y\n Z", 8, 0, 0, out);           /* simple: LF -> CRLF */
    CHECK(k == 11 && memcmp(out, "B : Y\r\n Z\r\n", 11) == 0);
    k = dkimcanon_header("X:", 2, 1, 1, out);
    CHECK(k == 2 && memcmp(out, "x:", 2) == 0);

    static const struct {
        const char *in;
        int relaxed;
        const char *want;
    } body[] = {
        { " C \r\nD \t E\r\n\r\n\r\n", 1, " C\r\nD E\r\n" },
        { " C \r\nD \t E\r\n\r\n\r\n", 0, " C \r\nD \t E\r\n" },
        { "", 0, "\r\n" },
        { "", 1, "" },
        { "\r\n\r\n", 0, "\r\n" },
        { "\r\n\r\n", 1, "" },
        { "a\n\nb\n\n", 0, "a\r\n\r\nb\r\n" },
        { "a", 0, "a\r\n" },
        { "a  ", 1, "a\r\n" },
        { "  \t\r\n", 1, "" },
        { "x\ry\r\n", 0, "x\ry\r\n" },
    };
    for (size_t i = 0; i < sizeof body / sizeof body[0]; i++) {
        char got[64] = "";
        dkimcanon_body(body[i].in, strlen(body[i].in), body[i].relaxed, emit_buf, got);
        CHECK_STR(got, body[i].want);
    }

    /* b= removal keeps "b=" and the rest of the field */
    const char *f = "ARC-Seal: i=1; b=abc\r\n def; cv=none";
    struct dkim_slice b = { strstr(f, "abc"), 9 };
    char o[64];
    size_t n = dkimcanon_strip_b(f, strlen(f), b, o);
    o[n] = 0;
    CHECK_STR(o, "ARC-Seal: i=1; b=; cv=none");

    int hr, br;
    struct dkim_slice c1 = { "simple/relaxed", 14 }, c2 = { "relaxed", 7 }, c3 = { "odd", 3 };
    CHECK_INT(arc_canon_parse(&c1, &hr, &br), 0);
    CHECK(hr == 0 && br == 1);
    CHECK_INT(arc_canon_parse(&c2, &hr, &br), 0);
    CHECK(hr == 1 && br == 0);
    CHECK_INT(arc_canon_parse(&c3, &hr, &br), -1);
    CHECK_INT(arc_canon_parse(NULL, &hr, &br), 0);
    CHECK(hr == 1 && br == 1);
}

/* An AMS without h= (the fuzzer's case): nothing is selected, only the
 * AMS itself is hashed, and nothing reads through a NULL slice. */
static void test_ams_hash_no_h(void)
{
    const char *raw = "ARC-Message-Signature: i=1; b=";
    struct arc_field ams = { raw, strlen(raw), raw + 22, strlen(raw) - 22 };
    struct arc_hfield hf[1] = { { "From: a@b", 9, "From", 4 } };
    struct dkim_slice none = { NULL, 0 }, b = { raw + strlen(raw), 0 };
    unsigned char d1[ARC_DIGEST_LEN], d2[ARC_DIGEST_LEN];
    const char *err = NULL;
    CHECK_INT(arc_ams_hash(hf, 1, none, 1, &ams, b, d1, &err), 0);
    struct dkim_slice empty = { "", 0 };
    CHECK_INT(arc_ams_hash(hf, 1, empty, 1, &ams, b, d2, &err), 0);
    CHECK(memcmp(d1, d2, sizeof d1) == 0);
    struct dkim_slice from = { "from", 4 };
    CHECK_INT(arc_ams_hash(hf, 1, from, 1, &ams, b, d2, &err), 0);
    CHECK(memcmp(d1, d2, sizeof d1) != 0);
}

int main(void)
{
    test_ams_hash_no_h();
    test_kinds();
    test_aar_instance();
    test_chain();
    test_aar();
    test_canon();
    return check_done();
}
