/*
 * test_dmarc_headers.c - Authentication-Results text (with go-msgauth's
 * RFC 8601 cases from tests/data/dmarc/authres-cases.json), the
 * authserv-id of existing fields, From munging, RFC 2047 phrases, the
 * malformed-From domain scan.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "util/pool.h"
#include "dmarc_headers.h"

static struct as_pool *pool;

static void test_authres_cases(void)
{
    json_error_t err;
    json_t *j = json_load_file("data/dmarc/authres-cases.json", 0, &err);
    CHECK(j != NULL);
    if (!j)
        return;
    size_t i, k;
    json_t *c, *r;
    int p0 = check_passed, f0 = check_failed;
    json_array_foreach(json_object_get(j, "cases"), i, c) {
        const char *value = json_string_value(json_object_get(c, "value"));
        const char *want_id = json_string_value(json_object_get(c, "authserv_id"));
        const char *id = dmarc_ar_authserv_id(pool, value);
        CHECK_STR(id ? id : "", want_id);
        if (!json_is_true(json_object_get(c, "roundtrip_format")))
            continue;
        /* format (authserv-id, results) and compare, blanks at the end aside */
        const char *parts[8];
        size_t np = 0;
        json_array_foreach(json_object_get(c, "results"), k, r) {
            char buf[512];
            size_t n = (size_t)snprintf(buf, sizeof buf, "%s=%s",
                                        json_string_value(json_object_get(r, "method")),
                                        json_string_value(json_object_get(r, "result")));
            json_t *reason = json_object_get(r, "reason");
            if (reason)
                n += (size_t)snprintf(buf + n, sizeof buf - n, " reason=%s", json_string_value(reason));
            const char *pk;
            json_t *pv;
            json_object_foreach(json_object_get(r, "properties"), pk, pv)
                n += (size_t)snprintf(buf + n, sizeof buf - n, " %s=%s", pk, json_string_value(pv));
            parts[np++] = as_pool_strdup(pool, buf);
        }
        const char *got = dmarc_ar_value(pool, want_id, parts, np);
        size_t wl = strlen(value);
        while (wl && value[wl - 1] == ' ')
            wl--;
        CHECK(strlen(got) == wl && strncmp(got, value, wl) == 0);
    }
    printf("authres-go-msgauth: %d passed, %d failed\n", check_passed - p0, check_failed - f0);
    json_decref(j);
}

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
    struct as_dmarc_result none = { .version = 1, .result = AS_DMARC_NONE, .author_domain = "x.test" };
    CHECK_STR(dmarc_ar_resinfo(pool, &none), "dmarc=none header.from=x.test");
    struct as_dmarc_result noauthor = { .version = 1, .result = AS_DMARC_NONE };
    CHECK_STR(dmarc_ar_resinfo(pool, &noauthor), "dmarc=none");
    const char *parts[] = { "spf=pass smtp.mailfrom=a.test", NULL, "dmarc=pass" };
    CHECK_STR(dmarc_ar_value(pool, "mx.test", parts, 3),
              "mx.test; spf=pass smtp.mailfrom=a.test; dmarc=pass");
    CHECK_STR(dmarc_ar_value(pool, "mx.test", parts, 0), "mx.test; none");
}

static void test_authserv_id(void)
{
    CHECK_STR(dmarc_ar_authserv_id(pool, "  (c (nested)) mx.example.org; spf=pass"), "mx.example.org");
    CHECK_STR(dmarc_ar_authserv_id(pool, "\"quoted id\"; none"), "quoted id");
    CHECK_STR(dmarc_ar_authserv_id(pool, "mx.example.org;spf=pass"), "mx.example.org");
    CHECK(dmarc_ar_authserv_id(pool, "; spf=pass") == NULL);
    CHECK(dmarc_ar_authserv_id(pool, "(unterminated") == NULL);
    CHECK(dmarc_ar_authserv_id(pool, NULL) == NULL);
    CHECK_STR(dmarc_ar_quote_id(pool, "mx.example.org"), "mx.example.org");
    CHECK_STR(dmarc_ar_quote_id(pool, "my host;x"), "\"my host;x\"");
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
    test_authres_cases();
    test_resinfo();
    test_authserv_id();
    test_munge();
    test_phrase();
    test_scan_domains();
    CHECK_STR(dmarc_reason_names(pool, AS_DMARC_REASON_TESTING | AS_DMARC_REASON_MAILING_LIST),
              "testing mailing_list");
    CHECK_STR(dmarc_reason_names(pool, 0), "");
    as_pool_destroy(pool);
    return check_done();
}
