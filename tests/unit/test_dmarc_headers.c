/*
 * test_dmarc_headers.c - the dmarc= Authentication-Results entry, From
 * munging, RFC 2047 phrases, the malformed-From domain scan.  (The field
 * itself and the authserv-id of existing fields: test_authres.c.)
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "util/pool.h"
#include "dmarc_headers.h"

static struct as_pool *pool;

static void test_resinfo(void)
{
    struct as_dmarc_record rec = { .p = AS_DMARC_POLICY_REJECT, .sp = AS_DMARC_POLICY_NONE };
    struct as_dmarc_result r = { .version = 1, .result = AS_DMARC_FAIL, .author_domain = "example.com",
                                 .record = &rec, .policy = AS_DMARC_POLICY_REJECT,
                                 .disposition = AS_DMARC_POLICY_QUARANTINE,
                                 .reasons = AS_DMARC_REASON_MAILING_LIST };
    CHECK_STR(dmarc_ar_resinfo(pool, &r),
              "dmarc=fail (p=reject sp=none dis=quarantine mailing_list) header.from=example.com "
              "policy.dmarc=reject");
    r.reasons = AS_DMARC_REASON_TESTING;
    CHECK_STR(dmarc_ar_resinfo(pool, &r),
              "dmarc=fail (p=reject sp=none dis=quarantine testing) header.from=example.com "
              "policy.dmarc=quarantine");
    /* a trusted ARC sealer's override: named in the comment, and
     * policy.dmarc stays the policy evaluated before it */
    struct as_dmarc_result arc = r;
    arc.version = 2;
    arc.reasons = AS_DMARC_REASON_ARC_TRUSTED;
    arc.disposition = AS_DMARC_POLICY_NONE;
    arc.override_from = AS_DMARC_POLICY_REJECT;
    arc.override_type = "trusted_forwarder";
    arc.override_comment = "arc=pass sealer=lists.test i=1 recorded dkim=pass example.com";
    CHECK_STR(dmarc_ar_resinfo(pool, &arc),
              "dmarc=fail (p=reject sp=none dis=none trusted_forwarder arc=pass sealer=lists.test "
              "i=1 recorded dkim=pass example.com) header.from=example.com policy.dmarc=reject");
    arc.version = 1;   /* a version-1 result has no override fields to read */
    CHECK_STR(dmarc_ar_policy(&arc), "none");
    struct as_dmarc_result none = { .version = 1, .result = AS_DMARC_NONE, .author_domain = "x.test" };
    CHECK_STR(dmarc_ar_resinfo(pool, &none), "dmarc=none header.from=x.test");
    struct as_dmarc_result noauthor = { .version = 1, .result = AS_DMARC_NONE };
    CHECK_STR(dmarc_ar_resinfo(pool, &noauthor), "dmarc=none");
    /* the parts handed to the core */
    CHECK_STR(dmarc_ar_comment(pool, &r), "p=reject sp=none dis=quarantine testing");
    CHECK_STR(dmarc_ar_policy(&r), "quarantine");
    CHECK(dmarc_ar_comment(pool, &none) == NULL);
    CHECK(dmarc_ar_policy(&none) == NULL);
}

static void test_munge(void)
{
    struct dmarc_munged m;
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_VIA, "Ann Author", "ann@example.com",
                          "\"Ann Author\" <ann@example.com>", "talk@lists.example", "Talk", &m), 0);
    CHECK_STR(m.from, "\"Ann Author via Talk\" <talk@lists.example>");
    CHECK_STR(m.reply_to, "\"Ann Author\" <ann@example.com>");
    CHECK_STR(m.original, "\"Ann Author\" <ann@example.com>");
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_VIA, NULL, "ann@example.com", "ann@example.com",
                          "talk@lists.example", NULL, &m), 0);
    CHECK_STR(m.from, "\"ann@example.com via talk@lists.example\" <talk@lists.example>");
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_INVALID, "A \"Q\"", "ann@example.com", "x",
                          NULL, NULL, &m), 0);
    CHECK_STR(m.from, "\"A \\\"Q\\\"\" <ann@example.com.INVALID>");
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_INVALID, NULL, "ann@example.com", "x", NULL, NULL, &m), 0);
    CHECK_STR(m.from, "<ann@example.com.INVALID>");
    /* header injection and unusable input */
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_VIA, "A", "ann@example.com", "a\r\nBcc: x",
                          "l@lists.example", "L", &m), 0);
    CHECK(strchr(m.reply_to, '\n') == NULL && strchr(m.reply_to, '\r') == NULL);
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_VIA, "A", "a b@example.com", "x", "l@l.example", "L", &m), -1);
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_VIA, "A", "ann@example.com", "x", "nolist", "L", &m), -1);
    CHECK_INT(dmarc_munge(pool, DMARC_MUNGE_VIA, "A", "noat", "x", "l@l.example", "L", &m), -1);
}

static void test_phrase(void)
{
    CHECK_STR(dmarc_phrase(pool, "Plain Name"), "\"Plain Name\"");
    CHECK_STR(dmarc_phrase(pool, "J\xc3\xbcrgen"), "=?UTF-8?B?SsO8cmdlbg==?=");
    /* long text is split into several encoded-words on character boundaries */
    char longname[200];
    for (int i = 0; i < 60; i++)
        memcpy(longname + 2 * i, "\xc3\xa9", 2);
    longname[120] = 0;
    const char *ph = dmarc_phrase(pool, longname);
    int words = 0;
    for (const char *p = ph; (p = strstr(p, "=?UTF-8?B?")); p++)
        words++;
    CHECK_INT(words, 3);
    for (const char *w = ph; w && *w;) {   /* each encoded-word at most 75 characters */
        const char *e = strstr(w, "?=");
        CHECK(e && e - w + 2 <= 75);
        w = e ? strchr(e, ' ') : NULL;
        if (w)
            w++;
    }
}

static void test_scan_domains(void)
{
    const char *d[8];
    CHECK_INT(dmarc_scan_domains(pool, "\"Johnson, Joe <joe@joe.com>\" joe@JOE.com", d, 8), 1);
    CHECK_STR(d[0], "joe.com");
    CHECK_INT(dmarc_scan_domains(pool, "<<<><a@x.example>>> b@y.example. c@nodot", d, 8), 2);
    CHECK_STR(d[1], "y.example");
    CHECK_INT(dmarc_scan_domains(pool, "a@b.example, c@d.example, e@f.example", d, 2), 2);
    CHECK_INT(dmarc_scan_domains(pool, "no at sign", d, 8), 0);
    CHECK_INT(dmarc_scan_domains(pool, "x@b\xc3\xbc" "cher.example", d, 8), 1);
    CHECK_STR(d[0], "xn--bcher-kva.example");
    CHECK_INT(dmarc_scan_domains(pool, NULL, d, 8), 0);
}

int main(void)
{
    pool = as_pool_new(0);
    test_resinfo();
    test_munge();
    test_phrase();
    test_scan_domains();
    CHECK_STR(dmarc_reason_names(pool, AS_DMARC_REASON_ARC_TRUSTED), "trusted_forwarder");
    CHECK_STR(dmarc_reason_names(pool, AS_DMARC_REASON_TESTING | AS_DMARC_REASON_MAILING_LIST),
              "testing mailing_list");
    CHECK_STR(dmarc_reason_names(pool, 0), "");
    as_pool_destroy(pool);
    return check_done();
}
