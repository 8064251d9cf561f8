/* Unit tests for plugins/dkim/dkim_screen.c: which DKIM-Signature fields
 * libopendkim is allowed to parse (table-driven; issue 10). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "dkim_screen.h"

#define GOOD "v=1; a=rsa-sha256; d=example.com; s=demo; bh=AAAA; b=AAAA; "

static void test_sig(void)
{
    static char longh[5000], longi[400];
    strcpy(longh, GOOD "h=from");
    while (strlen(longh) < 4200)
        strcat(longh, ":x-pad");
    strcat(longh, ";");
    strcpy(longi, GOOD "h=from; i=");
    while (strlen(longi) < 380)
        strcat(longi, "a");
    strcat(longi, "@example.com");

    static const struct {
        const char *v;
        size_t nsig;
        const char *why;      /* NULL: libopendkim may parse it */
    } cases[] = {
        { GOOD "h=from:to:subject", 1, NULL },
        { GOOD "h=from:from:to:to", 1, NULL },                 /* over-signing */
        /* the crash of issue 10.1 and its neighbours */
        { GOOD "h=from:DKIM-Signature:DKIM-Signature:x", 2,
          "h= covers the signature's own field (RFC 6376 3.5)" },
        { GOOD "h=from:dkim-signature:x", 1, "h= covers the signature's own field (RFC 6376 3.5)" },
        { GOOD "h=from:dkim-signature", 2, NULL },             /* covers an older signature */
        { GOOD "h=from: DKIM-\r\n Signature :dkim-signature", 2,
          "h= covers the signature's own field (RFC 6376 3.5)" },   /* FWS is removed */
        { GOOD "h=from:dkim-signaturex:xdkim-signature", 1, NULL },
        { GOOD "h=from; i=@example.com", 1, NULL },
        { GOOD "h=from; i=a=3Db@example.com", 1, NULL },
        { GOOD "h=from; i=a=3 Db@example.com", 1, NULL },
        { GOOD "h=from; i=@example.com=", 1, "bad quoted-printable in i=" },
        { GOOD "h=from; i=@example.com=4", 1, "bad quoted-printable in i=" },
        { GOOD "h=from; i=a=3db@example.com", 1, "bad quoted-printable in i=" },
        { GOOD "h=from; z=From:a=40b|To:c", 1, NULL },
        { GOOD "h=from; z=From:a=", 1, "bad quoted-printable in z=" },
        { longi, 1, "i= longer than 256 bytes" },
        { longh, 1, "h= longer than 4095 bytes" },
        { GOOD "h=from; H=to", 1, "malformed signature: tag names differ only in case" },
        { GOOD "h=from; h=to", 1, "malformed signature: duplicate tag" },
        { "x", 1, "malformed signature: tag without '='" },
        { GOOD "h=from; z=\xc3\xa9", 1, "non-ASCII signature field" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = dkimscreen_sig(cases[i].v, strlen(cases[i].v), cases[i].nsig);
        if (!(got == cases[i].why || (got && cases[i].why && strcmp(got, cases[i].why) == 0)))
            fprintf(stderr, "case %zu: %.60s\n", i, cases[i].v);
        CHECK_STR(got, cases[i].why);
    }
    /* a NUL inside the value ends libopendkim's copy early */
    static const char nul[] = GOOD "h=from\0; h=to";
    CHECK_STR(dkimscreen_sig(nul, sizeof nul - 1, 1), "non-ASCII signature field");
}

static void test_names(void)
{
    static const struct {
        const char *f;
        int rc;
        const char *name;
    } cases[] = {
        { "DKIM-Signature: v=1", 0, "DKIM-Signature" },
        { "DKIM-Signature  : v=1", 0, "DKIM-Signature" },
        { "DKIM-Signature\t: v=1", -1, NULL },   /* dkim_header() refuses HT in a name */
        { "From:a", 0, "From" },
        { "no colon", -1, NULL },
        { "Bad;name: x", -1, NULL },
        { "Bad\001" "name: x", -1, NULL },
        { "B\xc3\xa4" "d: x", -1, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *name = NULL;
        size_t len = 0;
        int rc = dkimscreen_field_name(cases[i].f, strlen(cases[i].f), &name, &len);
        CHECK_INT(rc, cases[i].rc);
        if (rc == 0) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.*s", (int)len, name);
            CHECK_STR(buf, cases[i].name);
        }
    }
    static const struct {
        const char *v;
        size_t want;
    } counts[] = {
        { "from:to", 0 }, { "dkim-signature", 1 }, { "DKIM-Signature::dkim-signature:", 2 },
        { " dkim-signature : from", 1 }, { "dkim-sig nature", 1 }, { "", 0 },
    };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        CHECK_INT(dkimscreen_hlist_count(counts[i].v, strlen(counts[i].v), "dkim-signature"),
                  counts[i].want);
}

/* Whole messages: which fields are withheld, which signatures get a reason. */
static void test_fields(void)
{
    static char big[DKIM_SCREEN_SIG_MAX + 64];
    strcpy(big, "DKIM-Signature: " GOOD "h=from; z=");
    while (strlen(big) < DKIM_SCREEN_SIG_MAX + 10)
        strcat(big, "x");
    static const struct {
        const char *f[6];
        size_t max_sigs;
        /* per field: '-' not a signature, 'k' kept, 'w' withheld,
         * 'i' ignored (beyond max_sigs), 'r' kept with a reason */
        const char *want;
    } cases[] = {
        { { "From: a@example.com", "DKIM-Signature: " GOOD "h=from" }, 5, "-k" },
        /* issue 10.1's message: both signatures withheld, From kept */
        { { "DKIM-Signature: " GOOD "h=from:DKIM-Signature:DKIM-Signature:x",
            "DKIM-Signature: x", "From: alice@example.com" }, 5, "ww-" },
        /* withholding the malformed one lowers the count: the first
         * signature now covers its own field */
        { { "DKIM-Signature: " GOOD "h=from:dkim-signature", "DKIM-Signature: x",
            "From: a" }, 5, "ww-" },
        /* a signature covering an older, good one stays */
        { { "DKIM-Signature: " GOOD "h=from:dkim-signature", "DKIM-Signature: " GOOD "h=from",
            "From: a" }, 5, "kk-" },
        /* ... and one covering a withheld one is kept with a reason */
        { { "DKIM-Signature: " GOOD "h=from:dkim-signature", "DKIM-Signature: " GOOD "h=from",
            "DKIM-Signature: " GOOD "h=from; i=x=", "From: a" }, 5, "rkw-" },
        { { "DKIM-Signature: " GOOD "h=from", "DKIM-Signature: " GOOD "h=from",
            "DKIM-Signature: " GOOD "h=from", "From: a" }, 2, "kki-" },
        { { big, "From: a" }, 5, "w-" },
        { { "DKIM-Signature : " GOOD "h=from", "dkim-signature:" GOOD "h=from",
            "DKIM-Signatures: x", "X-DKIM-Signature: x" }, 5, "kk--" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct dkim_field f[6];
        size_t n = 0;
        while (n < 6 && cases[c].f[n]) {
            f[n].p = cases[c].f[n];
            f[n].n = strlen(cases[c].f[n]);
            n++;
        }
        dkimscreen_fields(f, n, cases[c].max_sigs);
        char got[8];
        for (size_t i = 0; i < n; i++)
            got[i] = !f[i].is_sig ? '-' : f[i].ignored ? 'i' : f[i].withhold ? 'w'
                   : f[i].why ? 'r' : 'k';
        got[n] = 0;
        if (strcmp(got, cases[c].want) != 0)
            fprintf(stderr, "fields case %zu\n", c);
        CHECK_STR(got, cases[c].want);
    }
}

int main(void)
{
    test_sig();
    test_names();
    test_fields();
    return check_done();
}
