/*
 * test_authres.c - Authentication-Results: as_authres_value (RFC 8601
 * pvalues from untrusted SMTP text), the field the core writes (with
 * go-msgauth's RFC 8601 cases from tests/data/dmarc/authres-cases.json),
 * the authserv-id of fields already in a message, and the per-scan step
 * in task.c (forged fields removed, however many; entries in a stable
 * order; skipped scans untouched).
 */
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "mail/authres.h"
#include "check.h"
#include "scan/engine.h"
#include "util/pool.h"
#include "scan/symbols.h"
#include "scan/task.h"
#include "util/util.h"
#include "authscan/plugin.h"

static struct as_pool *pool;

static void test_value(void)
{
    static const struct { const char *in, *want; } cases[] = {
        { "example.com", "example.com" },
        { "mx1.example.co.uk", "mx1.example.co.uk" },
        { "alice@example.com", "alice@example.com" },
        { "first.last+tag@sub.example.org", "first.last+tag@sub.example.org" },
        { "", "\"\"" },
        { "x; dkim=pass header.d=bank.example", "\"x; dkim=pass header.d=bank.example\"" },
        { "a b", "\"a b\"" },
        { "quote\"inside", "\"quote\\\"inside\"" },
        { "back\\slash", "\"back\\\\slash\"" },
        { "\xff\xfe.example", "\"??.example\"" },
        { "line\r\nbreak", "\"line??break\"" },
        { "[192.0.2.1]", "\"[192.0.2.1]\"" },
        { "@example.com", "@example.com" },   /* RFC 8601: local-part optional */
        { "user@", "\"user@\"" },
        { "(comment)", "\"(comment)\"" },
        { "token-1_2", "token-1_2" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_STR(as_authres_value(pool, cases[i].in), cases[i].want);
    CHECK_STR(as_authres_value(pool, NULL), "\"\"");
}

static void test_token(void)
{
    CHECK_STR(as_authres_token(pool, "mx.example.org"), "mx.example.org");
    CHECK_STR(as_authres_token(pool, "my host;x"), "\"my host;x\"");
    CHECK_STR(as_authres_token(pool, "a@b.example"), "\"a@b.example\"");   /* '@' is a tspecial */
    CHECK_STR(as_authres_token(pool, "bad\r\n\"x\""), "\"bad??\\\"x\\\"\"");
    CHECK_STR(as_authres_token(pool, ""), "\"\"");
    CHECK(as_authres_keyword("dkim"));
    CHECK(as_authres_keyword("sender-id"));
    CHECK(!as_authres_keyword("-x"));
    CHECK(!as_authres_keyword("x-"));
    CHECK(!as_authres_keyword("a_b"));
    CHECK(!as_authres_keyword("pass;"));
    CHECK(!as_authres_keyword(""));
    CHECK(!as_authres_keyword(NULL));
}

static void test_resinfo(void)
{
    const char *err = NULL;
    struct as_auth_prop props[] = { { "header.d", "example.com" }, { "header.s", "sel 1" } };
    struct as_auth_result r = { "dkim", "fail", "p=a (b) \\c", "body hash; mismatch", props, 2 };
    CHECK_STR(as_authres_resinfo(pool, &r, &err),
              "dkim=fail (p=a \\(b\\) \\\\c) reason=\"body hash; mismatch\" header.d=example.com "
              "header.s=\"sel 1\"");
    struct as_auth_result plain = { "spf", "pass", NULL, NULL, NULL, 0 };
    CHECK_STR(as_authres_resinfo(pool, &plain, &err), "spf=pass");
    static const struct { struct as_auth_result r; const char *why; } bad[] = {
        { { "dk im", "pass", NULL, NULL, NULL, 0 }, "method is not a keyword" },
        { { NULL, "pass", NULL, NULL, NULL, 0 }, "method is not a keyword" },
        { { "dkim", "pass; dmarc=pass", NULL, NULL, NULL, 0 }, "result is not a keyword" },
        { { "dkim", "pass", NULL, NULL, NULL, 1 }, "properties missing" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        CHECK(as_authres_resinfo(pool, &bad[i].r, &err) == NULL);
        CHECK_STR(err, bad[i].why);
    }
    static const struct as_auth_prop badprops[][1] = {
        { { "mailfrom", "x" } }, { { "smtp.", "x" } }, { { ".mailfrom", "x" } },
        { { "smtp.mail from", "x" } }, { { NULL, "x" } }, { { "smtp.mailfrom", NULL } },
    };
    for (size_t i = 0; i < sizeof badprops / sizeof badprops[0]; i++) {
        struct as_auth_result b = { "spf", "pass", NULL, NULL, badprops[i], 1 };
        CHECK(as_authres_resinfo(pool, &b, &err) == NULL);
    }
    const char *parts[] = { "spf=pass smtp.mailfrom=a.test", "dmarc=pass" };
    CHECK_STR(as_authres_field(pool, "mx.test", parts, 2),
              "mx.test; spf=pass smtp.mailfrom=a.test; dmarc=pass");
    CHECK_STR(as_authres_field(pool, "mx.test", parts, 0), "mx.test; none");
    CHECK_STR(as_authres_field(pool, "my host", parts, 0), "\"my host\"; none");
    /* a policy override appended to an entry: values quoted, the comment
     * cannot be closed early by what a site rule wrote */
    const struct as_auth_prop ov[] = { { "policy.applied-disposition", "quarantine" },
                                       { "policy.override-reason", "local_policy" } };
    CHECK_STR(as_authres_extend(pool, "dmarc=fail header.from=a.test", ov, 2,
                                "local_policy: rule: a) b\\ \x01"),
              "dmarc=fail header.from=a.test policy.applied-disposition=quarantine "
              "policy.override-reason=local_policy (local_policy: rule: a\\) b\\\\ ?)");
    const struct as_auth_prop odd[] = { { "policy.x", "two words" } };
    CHECK_STR(as_authres_extend(pool, "dmarc=fail", odd, 1, NULL),
              "dmarc=fail policy.x=\"two words\"");
}

static void test_authserv_id(void)
{
    CHECK_STR(as_authres_authserv_id(pool, "  (c (nested)) mx.example.org; spf=pass"),
              "mx.example.org");
    CHECK_STR(as_authres_authserv_id(pool, "\"quoted id\"; none"), "quoted id");
    CHECK_STR(as_authres_authserv_id(pool, "\"q\\\"x\"; none"), "q\"x");
    CHECK_STR(as_authres_authserv_id(pool, "mx.example.org;spf=pass"), "mx.example.org");
    CHECK(as_authres_authserv_id(pool, "; spf=pass") == NULL);
    CHECK(as_authres_authserv_id(pool, "(unterminated") == NULL);
    CHECK(as_authres_authserv_id(pool, "\"\"; none") == NULL);
    CHECK(as_authres_authserv_id(pool, NULL) == NULL);
    /* a quoted id longer than any buffer is read whole */
    char big[2100];
    big[0] = '"';
    memset(big + 1, 'a', 2048);
    strcpy(big + 2049, "\"; none");
    const char *id = as_authres_authserv_id(pool, big);
    CHECK(id && strlen(id) == 2048);
}

/* go-msgauth's cases: the authserv-id of each, and for the ones its
 * formatter round-trips, our formatter gives the same text. */
static void test_go_msgauth(void)
{
    json_error_t jerr;
    json_t *j = json_load_file("data/dmarc/authres-cases.json", 0, &jerr);
    CHECK(j != NULL);
    if (!j) return;
    size_t i, k;
    json_t *c, *r;
    int p0 = check_passed, f0 = check_failed;
    json_array_foreach(json_object_get(j, "cases"), i, c) {
        const char *value = json_string_value(json_object_get(c, "value"));
        const char *want_id = json_string_value(json_object_get(c, "authserv_id"));
        const char *id = as_authres_authserv_id(pool, value);
        CHECK_STR(id ? id : "", want_id);
        if (!json_is_true(json_object_get(c, "roundtrip_format"))) continue;
        const char *parts[8];
        size_t np = 0;
        json_array_foreach(json_object_get(c, "results"), k, r) {
            struct as_auth_prop props[8];
            struct as_auth_result ar = {
                json_string_value(json_object_get(r, "method")),
                json_string_value(json_object_get(r, "result")), NULL,
                json_string_value(json_object_get(r, "reason")), props, 0 };
            const char *pk;
            json_t *pv;
            json_object_foreach(json_object_get(r, "properties"), pk, pv)
                if (ar.nprops < 8) props[ar.nprops++] = (struct as_auth_prop){ pk,
                                                             json_string_value(pv) };
            const char *err = NULL;
            if (np < 8) parts[np++] = as_authres_resinfo(pool, &ar, &err);
            CHECK(err == NULL);
        }
        const char *got = as_authres_field(pool, want_id, parts, np);
        size_t wl = strlen(value);
        while (wl && value[wl - 1] == ' ') wl--;   /* go-msgauth's trailing blank */
        if (!(strlen(got) == wl && strncmp(got, value, wl) == 0))
            fprintf(stderr, "format: got \"%s\", want \"%s\"\n", got, value);
        CHECK(strlen(got) == wl && strncmp(got, value, wl) == 0);
    }
    printf("authres-go-msgauth: %d passed, %d failed\n", check_passed - p0, check_failed - f0);
    json_decref(j);
}

/* ---- the per-scan step --------------------------------------------------- */

static struct event_base *base;
static struct as_engine *engine;

static void done_cb(struct as_task *t, void *arg)
{
    (void)t;
    *(int *)arg = 1;
}

/* A message whose header has nfields A-R fields, field i carrying
 * authserv-id ids(i). */
static char *message_with(size_t nfields, const char *(*ids)(size_t))
{
    struct sbuf b = {0};
    sbuf_adds(&b, "From: a@example.com\r\n");
    for (size_t i = 0; i < nfields; i++)
        sbuf_printf(&b, "Authentication-Results: %s; dmarc=pass header.from=bank.example\r\n",
                    ids(i));
    sbuf_adds(&b, "Subject: x\r\n\r\nbody\r\n");
    return sbuf_steal(&b);
}

static const char *all_ours(size_t i) { return i % 2 ? "MX.TEST" : "(c) mx.test"; }
static const char *one_foreign(size_t i) { return i == 34 ? "other.example" : "mx.test"; }
static const char *none_ours(size_t i) { (void)i; return "mx.test.evil"; }

struct scan {
    const struct as_task_header_op *adds, *dels;
    size_t nadd, ndel;
};

/* Runs a task over msg (adding entries first through add) and returns its
 * header operations; the task stays alive for the caller to free. */
static struct as_task *run(const char *msg, int skip, void (*add)(struct as_task *),
                           struct scan *out)
{
    struct as_task *t = as_task_new(engine);
    as_task_envelope_mut(t)->mta_name = "mx.test";
    char err[128];
    CHECK_INT(as_task_set_message(t, msg, strlen(msg), err, sizeof err), AS_MSG_OK);
    if (add) add(t);
    if (skip) as_task_skip(t);
    int done = 0;
    as_task_run(t, done_cb, &done);
    while (!done) event_base_loop(base, EVLOOP_ONCE);
    out->nadd = as_task_header_ops(t, &out->adds, 0);
    out->ndel = as_task_header_ops(t, &out->dels, 1);
    return t;
}

static void add_unordered(struct as_task *t)
{
    CHECK_INT(as_task_add_auth_result(t, "dmarc", "pass", NULL, "header.from", "b.example",
                                      NULL), 0);
    CHECK_INT(as_task_add_auth_result(t, "iprev", "pass", NULL, "policy.iprev", "192.0.2.1",
                                      NULL), 0);
    CHECK_INT(as_task_add_auth_result(t, "dkim", "pass", NULL, "header.d", "a.example", NULL), 0);
    CHECK_INT(as_task_add_auth_result(t, "spf", "fail", NULL, "smtp.mailfrom",
                                      "x; dkim=pass", NULL), 0);
    CHECK_INT(as_task_add_auth_result(t, "dkim", "fail", "bad sig", "header.d", "b.example",
                                      NULL), 0);
    /* refused: logged, nothing added */
    CHECK_INT(as_task_add_auth_result(t, "dkim", "pass", NULL, "header.d", NULL, NULL), -1);
    CHECK_INT(as_task_add_auth_result(t, "dkim", "pass", NULL, "d", "x", NULL), -1);
    CHECK_INT(as_task_add_auth_result(t, "dkim", "pass", NULL, "a.b", "1", "a.b", "2", "a.b",
                                      "3", "a.b", "4", "a.b", "5", "a.b", "6", "a.b", "7",
                                      "a.b", "8", "a.b", "9", "a.b", "10", "a.b", "11", "a.b",
                                      "12", "a.b", "13", "a.b", "14", "a.b", "15", "a.b", "16",
                                      "a.b", "17", NULL), -1);
}

static void test_task(void)
{
    struct scan s;
    /* 100 forged fields, all ours (case and comments aside): "every instance" */
    char *m = message_with(100, all_ours);
    struct as_task *t = run(m, 0, add_unordered, &s);
    CHECK_INT(s.ndel, 1);
    if (s.ndel == 1) {
        CHECK_STR(s.dels[0].name, "Authentication-Results");
        CHECK_INT(s.dels[0].order_or_index, 0);
    }
    CHECK_INT(s.nadd, 1);
    if (s.nadd == 1) {
        CHECK_STR(s.adds[0].name, "Authentication-Results");
        CHECK_STR(s.adds[0].value,
                  "mx.test; spf=fail smtp.mailfrom=\"x; dkim=pass\"; dkim=pass header.d=a.example; "
                  "dkim=fail reason=\"bad sig\" header.d=b.example; dmarc=pass "
                  "header.from=b.example; iprev=pass policy.iprev=192.0.2.1");
    }
    /* the verdict is final: no more entries */
    CHECK_INT(as_task_add_auth_result(t, "spf", "pass", NULL, NULL), -1);
    as_task_free(t);
    free(m);

    /* 100 fields, the 35th foreign: the 99 others one by one, from the last */
    m = message_with(100, one_foreign);
    t = run(m, 0, NULL, &s);
    CHECK_INT(s.ndel, 99);
    int ok = s.ndel == 99;
    for (size_t i = 0; ok && i < s.ndel; i++) {
        int want = (int)(100 - i) - (i >= 65);   /* 100..36, then 34..1 */
        ok = s.dels[i].order_or_index == want;
    }
    CHECK(ok);
    CHECK_INT(s.nadd, 1);
    if (s.nadd == 1) CHECK_STR(s.adds[0].value, "mx.test; none");
    as_task_free(t);
    free(m);

    /* an id that only starts like ours is someone else's */
    m = message_with(3, none_ours);
    t = run(m, 0, NULL, &s);
    CHECK_INT(s.ndel, 0);
    as_task_free(t);

    /* a skipped scan (poison) is left as it is */
    t = run(m, 1, NULL, &s);
    CHECK_INT(s.ndel, 0);
    CHECK_INT(s.nadd, 0);
    as_task_free(t);
    free(m);
}

int main(void)
{
    pool = as_pool_new(0);
    test_value();
    test_token();
    test_resinfo();
    test_authserv_id();
    test_go_msgauth();

    base = event_base_new();
    engine = as_engine_new_bare(base, as_symtab_new());
    struct as_limits *lim = as_engine_limits_mut(engine);
    lim->max_headers = 1000;
    lim->max_header_size = 1 << 20;
    lim->max_message_size = 1 << 20;
    test_task();
    as_engine_free(engine);
    event_base_free(base);
    as_pool_destroy(pool);
    return check_done();
}
