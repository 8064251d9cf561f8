/* Unit tests for plugins/dkim/dkim_tags.c: tag-lists, base64, key records,
 * names and canonical body lengths (table-driven). */
#include <string.h>

#include "check.h"
#include "dkim_tags.h"

static struct dkim_slice S(const char *s)
{
    struct dkim_slice v = { s, strlen(s) };
    return v;
}

static int slice_is(const struct dkim_slice *v, const char *want)
{
    return v && v->n == strlen(want) && memcmp(v->p, want, v->n) == 0;
}

static void test_tags(void)
{
    struct dkim_taglist tl;
    const char *err = NULL;
    const char *sig = " v=1; a=rsa-sha256;\r\n\td = ex.com ; b=ab cd\r\n ef;";
    CHECK_INT(dkimtag_parse(sig, strlen(sig), &tl, &err), 0);
    CHECK_INT(tl.n, 4);
    CHECK(slice_is(dkimtag_get(&tl, "d"), "ex.com"));
    CHECK(slice_is(dkimtag_get(&tl, "b"), "ab cd\r\n ef"));
    CHECK(dkimtag_get(&tl, "D") == NULL);   /* tag names are case-sensitive */

    static const struct {
        const char *in;
        int ok;
        const char *err;
    } cases[] = {
        { "", 1, NULL },
        { "a=", 1, NULL },
        { "a=1;;b=2", 1, NULL },
        { "a=1; a=2", 0, "duplicate tag" },
        { "a=1; b", 0, "tag without '='" },
        { "=1", 0, "bad tag name" },
        { "1a=1", 0, "bad tag name" },
        { "a b=1", 0, "bad tag name" },
        { "a=x\001y", 0, "control character in tag value" },
        { "a=\xc3\xa9", 1, NULL },   /* UTF-8 allowed (RFC 8616) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err = NULL;
        int rc = dkimtag_parse(cases[i].in, strlen(cases[i].in), &tl, &err);
        CHECK_INT(rc, cases[i].ok ? 0 : -1);
        if (!cases[i].ok)
            CHECK_STR(err, cases[i].err);
    }
    /* more than DKIM_TAGS_MAX tags */
    char big[2048] = "";
    for (int i = 0; i < DKIM_TAGS_MAX + 1; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%d=1;", i);
        strcat(big, t);
    }
    CHECK_INT(dkimtag_parse(big, strlen(big), &tl, &err), -1);
    CHECK_STR(err, "too many tags");
}

static void test_lists(void)
{
    CHECK_INT(dkimtag_list_count(S("from:to : subject")), 3);
    CHECK_INT(dkimtag_list_count(S("  ")), 0);
    CHECK(dkimtag_list_has(S("sha1 : SHA256"), "sha256"));
    CHECK(!dkimtag_list_has(S("sha1"), "sha256"));
    CHECK(dkimtag_list_has(S("y:s"), "s"));
    CHECK(!dkimtag_list_has(S(""), "y"));
}

static void test_base64(void)
{
    unsigned char out[64];
    static const struct {
        const char *in;
        long want;
        const char *data;
    } cases[] = {
        { "aGVsbG8=", 5, "hello" },
        { "aGVs\r\n bG8=", 5, "hello" },
        { "aGVsbG8", 5, "hello" },       /* unpadded */
        { "", 0, "" },
        { "aGVsbG8==", -1, NULL },       /* too much padding */
        { "aG=Vs", -1, NULL },           /* data after padding */
        { "aGV*", -1, NULL },
        { "a", -1, NULL },               /* dangling character */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long n = dkimtag_base64_decode(S(cases[i].in), out, sizeof out);
        CHECK_INT(n, cases[i].want);
        if (n > 0)
            CHECK(memcmp(out, cases[i].data, (size_t)n) == 0);
    }
    CHECK_INT(dkimtag_base64_decode(S("aGVsbG8="), out, 3), -1);   /* output too small */
}

static void test_keys(void)
{
    struct dkim_keyrec k;
    const char *err = NULL;
    CHECK_INT(dkimtag_key_parse("v=DKIM1; k=rsa; p=abc", 21, &k, &err), 0);
    CHECK_INT(k.keytype, DKIM_KEYTYPE_RSA);
    CHECK_INT(k.hashes, DKIM_HASH_SHA1 | DKIM_HASH_SHA256);
    CHECK(slice_is(&k.p, "abc"));
    CHECK_INT(dkimtag_key_parse("k=ed25519; h=sha256; t=y:s; p=", 30, &k, &err), 0);
    CHECK_INT(k.keytype, DKIM_KEYTYPE_ED25519);
    CHECK_INT(k.hashes, DKIM_HASH_SHA256);
    CHECK(k.testing && k.strict && k.revoked);
    CHECK_INT(dkimtag_key_parse("h=md5; p=x", 10, &k, &err), 0);
    CHECK_INT(k.hashes, 0);

    static const struct {
        const char *in;
        const char *err;
    } bad[] = {
        { "k=rsa; v=DKIM1; p=x", "bad key version" },     /* v= not first */
        { "v=DKIM2; p=x", "bad key version" },
        { "v=DKIM1; k=ed2024; p=x", "unknown key type" },
        { "v=DKIM1; k=rsa", "no p= in key record" },
        { "v=DKIM1; s=tlsrpt; p=x", "key not for email (s=)" },
        { "v=DKIM1; p=x; p=y", "duplicate tag" },
        { "bio=a263adeab8", "no p= in key record" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        CHECK_INT(dkimtag_key_parse(bad[i].in, strlen(bad[i].in), &k, &err), -1);
        CHECK_STR(err, bad[i].err);
    }
    CHECK_INT(dkimtag_key_parse("s=email:tlsrpt; p=x", 19, &k, &err), 0);
    CHECK_INT(dkimtag_key_parse("s=*; p=x", 8, &k, &err), 0);
}

static void test_names(void)
{
    static const struct {
        const char *in;
        int us, ok;
    } cases[] = {
        { "example.com", 0, 1 },
        { "a-b.example", 0, 1 },
        { "legitimate.com(.attacker.com", 0, 0 },
        { "-a.example", 0, 0 },
        { "a-.example", 0, 0 },
        { "a..example", 0, 0 },
        { ".example", 0, 0 },
        { "example.", 0, 0 },
        { "sel_1", 0, 0 },
        { "sel_1", 1, 1 },
        { "18457.62be233b.k2206", 1, 1 },
        { "", 0, 0 },
        { "a b", 1, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_INT(dkimtag_name_valid(cases[i].in, strlen(cases[i].in), cases[i].us), cases[i].ok);
    char lab[70];
    memset(lab, 'a', 64);
    lab[64] = 0;
    CHECK_INT(dkimtag_name_valid(lab, 64, 0), 0);   /* label > 63 */
    CHECK_INT(dkimtag_name_valid(lab, 63, 0), 1);
}

static void test_canon_len(void)
{
    static const struct {
        const char *body;
        int relaxed;
        size_t want;
    } cases[] = {
        { "", 0, 2 },
        { "", 1, 0 },
        { "\r\n\r\n", 0, 2 },
        { "\r\n\r\n", 1, 0 },
        { "abc\r\n", 0, 5 },
        { "abc\r\n\r\n\r\n", 0, 5 },
        { "abc", 0, 5 },                  /* a CRLF is added */
        { "a  b \t\r\n", 1, 5 },          /* "a b\r\n" */
        { "a  b \t\r\n", 0, 8 },
        { "x\r\n\r\ny\r\n", 1, 8 },       /* inner empty lines kept */
        { " \t\r\nz\r\n \r\n", 1, 5 },    /* "\r\nz\r\n" */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_INT(dkimtag_canon_body_len(cases[i].body, strlen(cases[i].body), cases[i].relaxed),
                  cases[i].want);
}

int main(void)
{
    test_tags();
    test_lists();
    test_base64();
    test_keys();
    test_names();
    test_canon_len();
    return check_done();
}
