/*
 * test_message.c - header block parsing (message.c): line endings,
 * folding, odd bytes, the mbox line, non-field lines, limits, accessors
 * and unfolding.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "check.h"
#include "mail/message.h"
#include "util/pool.h"
#include "util/util.h"

#define S(lit) lit, sizeof(lit) - 1

/* Renders bytes with \r \n \0 \t visible so the tables can show them. */
static void put_escaped(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\r': sbuf_adds(b, "\\r"); break;
        case '\n': sbuf_adds(b, "\\n"); break;
        case '\t': sbuf_adds(b, "\\t"); break;
        case '\0': sbuf_adds(b, "\\0"); break;
        default: sbuf_addc(b, s[i]);
        }
    }
}

/* "name=[value]" per field, then "|body=[...] crlf=N sep=N". */
static char *render(const struct as_message *m)
{
    struct sbuf b = { 0 };
    for (size_t i = 0; i < as_msg_header_total(m); i++) {
        const struct as_header *h = as_msg_header_at(m, i);
        put_escaped(&b, h->name.ptr, h->name.len);
        sbuf_adds(&b, "=[");
        put_escaped(&b, h->value.ptr, h->value.len);
        sbuf_adds(&b, "] ");
        /* raw must be name .. value exactly */
        if (h->raw.ptr != h->name.ptr || h->raw.ptr + h->raw.len != h->value.ptr + h->value.len
            || h->index != i)
            sbuf_adds(&b, "(BAD RAW/INDEX) ");
    }
    struct as_str body = as_msg_body(m);
    sbuf_adds(&b, "|body=[");
    put_escaped(&b, body.ptr, body.len);
    sbuf_printf(&b, "] crlf=%d sep=%d", as_msg_crlf(m), m->has_separator);
    return sbuf_steal(&b);
}

static const struct {
    const char *name;
    const char *in;
    size_t len;
    const char *want;
} parse_cases[] = {
    { "crlf", S("From: a@b\r\nSubject: hi\r\n\r\nbody\r\n"),
      "From=[ a@b] Subject=[ hi] |body=[body\\r\\n] crlf=1 sep=1" },
    { "bare lf", S("From: a@b\nSubject: hi\n\nbody\n"),
      "From=[ a@b] Subject=[ hi] |body=[body\\n] crlf=0 sep=1" },
    { "mixed, first crlf", S("A: 1\r\nB: 2\nC: 3\r\n\nbody"),
      "A=[ 1] B=[ 2] C=[ 3] |body=[body] crlf=1 sep=1" },
    { "mixed, first lf", S("A: 1\nB: 2\r\n\r\nbody"),
      "A=[ 1] B=[ 2] |body=[body] crlf=0 sep=1" },
    { "folding", S("Subject: a\r\n b\r\n\tc\r\nX: y\r\n\r\n"),
      "Subject=[ a\\r\\n b\\r\\n\\tc] X=[ y] |body=[] crlf=1 sep=1" },
    { "folding lf", S("Subject: a\n b\nX: y\n"),
      "Subject=[ a\\n b] X=[ y] |body=[] crlf=0 sep=0" },
    { "whitespace-only continuation", S("A: 1\r\n \r\nB: 2\r\n\r\nx"),
      "A=[ 1\\r\\n ] B=[ 2] |body=[x] crlf=1 sep=1" },
    { "nul in value", S("X: a\0b\r\n\r\nbo\0dy"),
      "X=[ a\\0b] |body=[bo\\0dy] crlf=1 sep=1" },
    { "8-bit", S("Subject: caf\xc3\xa9 \xff\r\n\r\n"),
      "Subject=[ caf\xc3\xa9 \xff] |body=[] crlf=1 sep=1" },
    { "no body, no blank line", S("A: b\r\n"), "A=[ b] |body=[] crlf=1 sep=0" },
    { "no final newline", S("A: b"), "A=[ b] |body=[] crlf=1 sep=0" },
    { "blank line, empty body", S("A: b\r\n\r\n"), "A=[ b] |body=[] crlf=1 sep=1" },
    { "empty value", S("A:\r\nB:\r\n\r\n"), "A=[] B=[] |body=[] crlf=1 sep=1" },
    { "mbox From line", S("From someone@example.com Mon Jan  1 00:00:00 2024\nX: y\n\nbody"),
      "X=[ y] |body=[body] crlf=0 sep=1" },
    { "mbox line only", S("From someone@example.com Mon"), "|body=[] crlf=1 sep=0" },
    { "From with WSP before colon is a field", S("From : a@b\r\n\r\n"),
      "From=[ a@b] |body=[] crlf=1 sep=1" },
    { "WSP before colon", S("Subject\t : hi\r\n\r\n"), "Subject=[ hi] |body=[] crlf=1 sep=1" },
    { "non-field line ends the block", S("A: b\r\nnot a header\r\nC: d\r\n"),
      "A=[ b] |body=[not a header\\r\\nC: d\\r\\n] crlf=1 sep=0" },
    { "empty name", S(": x\r\nA: b\r\n"), "|body=[: x\\r\\nA: b\\r\\n] crlf=1 sep=0" },
    { "space inside name", S("Bad Name: x\r\n"), "|body=[Bad Name: x\\r\\n] crlf=1 sep=0" },
    { "continuation before any field", S(" x\r\nA: b\r\n\r\n"),
      "|body=[ x\\r\\nA: b\\r\\n\\r\\n] crlf=1 sep=0" },
    { "bare CR is data", S("A: b\rc\r\n\r\n"), "A=[ b\\rc] |body=[] crlf=1 sep=1" },
    { "CR CR LF", S("A: b\r\r\n\r\n"), "A=[ b\\r] |body=[] crlf=1 sep=1" },
    { "empty message", S(""), "|body=[] crlf=1 sep=0" },
    { "only blank line", S("\r\nbody"), "|body=[body] crlf=1 sep=1" },
    { "only lf", S("\n"), "|body=[] crlf=0 sep=1" },
    { "name at eof", S("Name"), "|body=[Name] crlf=1 sep=0" },
    { "name colon at eof", S("Name:"), "Name=[] |body=[] crlf=1 sep=0" },
    { "lone CR then eof", S("A: b\r\n\r"), "A=[ b] |body=[\\r] crlf=1 sep=0" },
    { "control char in name", S("A\x01: b\r\n"), "|body=[A\x01: b\\r\\n] crlf=1 sep=0" },
};

static void test_parse_table(void)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(parse_cases); i++) {
        struct as_pool *pool = as_pool_new(0);
        struct as_message *m = NULL;
        char err[128];
        enum as_msg_error rc = as_message_parse(pool, parse_cases[i].in, parse_cases[i].len,
                                                NULL, &m, err, sizeof err);
        CHECK_INT(rc, AS_MSG_OK);
        if (m) {
            char *got = render(m);
            if (strcmp(got, parse_cases[i].want) != 0)
                fprintf(stderr, "case \"%s\":\n", parse_cases[i].name);
            CHECK_STR(got, parse_cases[i].want);
            free(got);
            CHECK(m->data == parse_cases[i].in || parse_cases[i].len == 0);
            CHECK_INT(as_msg_raw(m).len, parse_cases[i].len);
        }
        as_pool_destroy(pool);
    }
}

/* n fields "X-Hn: value n" followed by a blank line and a body. */
static char *make_headers(size_t n, size_t *len)
{
    struct sbuf b = { 0 };
    for (size_t i = 0; i < n; i++)
        sbuf_printf(&b, "X-H%zu: value %zu\r\n", i, i);
    sbuf_adds(&b, "\r\nbody\r\n");
    *len = b.len;
    return sbuf_steal(&b);
}

static void test_limits(void)
{
    static const struct {
        size_t nfields, max_headers, max_size;
        enum as_msg_error want;
        const char *want_err;
    } cases[] = {
        { 1000, 1000, 0, AS_MSG_OK, "" },
        { 1001, 1000, 0, AS_MSG_TOO_MANY_HEADERS,
          "message has more than 1000 header fields (limits.max_headers)" },
        { 10000, 0, 0, AS_MSG_OK, "" },
        { 10000, 1000, 0, AS_MSG_TOO_MANY_HEADERS,
          "message has more than 1000 header fields (limits.max_headers)" },
        { 3, 1, 0, AS_MSG_TOO_MANY_HEADERS,
          "message has more than 1 header fields (limits.max_headers)" },
        /* "X-H0: value 0\r\n" is 15 bytes: three fields are 45 */
        { 3, 0, 45, AS_MSG_OK, "" },
        { 3, 0, 44, AS_MSG_HEADERS_TOO_LARGE,
          "header block is larger than 44 bytes (limits.max_header_size)" },
        { 3, 0, 10, AS_MSG_HEADERS_TOO_LARGE,
          "header block is larger than 10 bytes (limits.max_header_size)" },
        { 10000, 0, 1000, AS_MSG_HEADERS_TOO_LARGE,
          "header block is larger than 1000 bytes (limits.max_header_size)" },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        size_t len;
        char *data = make_headers(cases[i].nfields, &len);
        struct as_pool *pool = as_pool_new(0);
        struct as_msg_limits lim = { cases[i].max_headers, cases[i].max_size };
        struct as_message *m = NULL;
        char err[128] = "junk";
        enum as_msg_error rc = as_message_parse(pool, data, len, &lim, &m, err, sizeof err);
        CHECK_INT(rc, cases[i].want);
        CHECK_STR(err, cases[i].want_err);
        if (rc == AS_MSG_OK) {
            CHECK_INT(as_msg_header_total(m), cases[i].nfields);
            const struct as_header *last = as_msg_header_at(m, cases[i].nfields - 1);
            char want_name[32];
            snprintf(want_name, sizeof want_name, "X-H%zu", cases[i].nfields - 1);
            CHECK(last && last->name.len == strlen(want_name) &&
                  memcmp(last->name.ptr, want_name, last->name.len) == 0);
            CHECK_INT(as_msg_body(m).len, 6);
        } else {
            CHECK(m == NULL);
        }
        as_pool_destroy(pool);
        free(data);
    }

    /* the size limit does not count the mbox line nor the blank line, and
     * a non-field line after the block is body, not a too-large header */
    const char msg[] = "From x@y Mon\nA: 1\n\n";
    struct as_pool *pool = as_pool_new(0);
    struct as_msg_limits lim = { 0, 5 };
    struct as_message *m = NULL;
    CHECK_INT(as_message_parse(pool, msg, sizeof msg - 1, &lim, &m, NULL, 0), AS_MSG_OK);
    const char msg2[] = "A: 1\nthis body line is much longer than the limit";
    CHECK_INT(as_message_parse(pool, msg2, sizeof msg2 - 1, &lim, &m, NULL, 0), AS_MSG_OK);
    CHECK_INT(as_msg_header_total(m), 1);
    as_pool_destroy(pool);
}

static void test_accessors(void)
{
    const char msg[] = "Received: r1\r\nFROM: a\r\nreceived: r2\r\nX: x\r\nRECEIVED: r3\r\n\r\n";
    struct as_pool *pool = as_pool_new(0);
    struct as_message *m = NULL;
    CHECK_INT(as_message_parse(pool, msg, sizeof msg - 1, NULL, &m, NULL, 0), AS_MSG_OK);
    CHECK_INT(as_msg_header_total(m), 5);
    CHECK_INT(as_msg_header_count(m, "received"), 3);
    CHECK_INT(as_msg_header_count(m, "From"), 1);
    CHECK_INT(as_msg_header_count(m, "Fro"), 0);
    CHECK_INT(as_msg_header_count(m, "Subject"), 0);
    CHECK_INT(as_msg_header_count(NULL, "Subject"), 0);
    static const struct { int nth; const char *want; } get[] = {
        { 0, " r1" }, { 1, " r2" }, { 2, " r3" }, { 3, NULL },
        { -1, " r3" }, { -2, " r2" }, { -3, " r1" }, { -4, NULL }, { 1000, NULL },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(get); i++) {
        const struct as_header *h = as_msg_header_get(m, "Received", get[i].nth);
        char *v = h ? as_pool_strndup(pool, h->value.ptr, h->value.len) : NULL;
        CHECK_STR(v, get[i].want);
    }
    const struct as_header *h = as_msg_header_get(m, "x", -1);
    CHECK(h && h->index == 3);
    CHECK(as_msg_header_at(m, 5) == NULL);
    CHECK(as_msg_header_get(m, "Nope", 0) == NULL);
    CHECK(as_msg_header_get(NULL, "X", 0) == NULL);
    CHECK_INT(as_msg_header_total(NULL), 0);
    as_pool_destroy(pool);
}

static void test_unfold(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *want;
        size_t want_len;
    } cases[] = {
        { S("X: plain\r\n\r\n"), S("plain") },
        { S("X:   padded  \t\r\n\r\n"), S("padded") },
        { S("X: a\r\n b\r\n\tc\r\n\r\n"), S("a b\tc") },
        { S("X: a\n  b\n\r\n"), S("a  b") },
        { S("X:\r\n folded-first\r\n\r\n"), S("folded-first") },
        { S("X: trailing\r\n \r\n\r\n"), S("trailing") },
        { S("X: a\0b\r\n c\r\n\r\n"), S("a\0b c") },
        { S("X:\r\n\r\n"), S("") },
        { S("X: a\rb\r\n\r\n"), S("a\rb") },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        struct as_pool *pool = as_pool_new(0);
        struct as_message *m = NULL;
        CHECK_INT(as_message_parse(pool, cases[i].in, cases[i].len, NULL, &m, NULL, 0),
                  AS_MSG_OK);
        const struct as_header *h = as_msg_header_at(m, 0);
        CHECK(h != NULL);
        if (h) {
            size_t len = 99;
            const char *got = as_header_unfold_pool(pool, h, &len);
            CHECK_INT(len, cases[i].want_len);
            CHECK(len == cases[i].want_len && memcmp(got, cases[i].want, len) == 0);
            CHECK_INT(got[len], 0);
            if (!memchr(cases[i].want, '\0', cases[i].want_len))
                CHECK_STR(got, cases[i].want);
            CHECK(as_header_unfold_pool(pool, h, NULL) != NULL);
        }
        as_pool_destroy(pool);
    }
}

/* Under valgrind the timing means nothing. */
static int under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
}

static void test_speed(void)
{
    /* a typical message: 40 fields; a fresh pool per message as in a task */
    size_t len;
    char *data = make_headers(40, &len);
    struct timespec a, b;
    const int rounds = 20000;
    int ok = 1;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int r = 0; r < rounds; r++) {
        struct as_pool *pool = as_pool_new(0);
        struct as_message *m = NULL;
        ok &= as_message_parse(pool, data, len, NULL, &m, NULL, 0) == AS_MSG_OK &&
              m->nfields == 40;
        as_pool_destroy(pool);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK(ok);
    double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (rounds * 40.0);
    printf("as_message_parse: %.1f ns per header field\n", ns);
    /* the target is well under 1 us; 2 us leaves room for sanitizer builds */
    if (!under_valgrind())
        CHECK(ns < 2000.0);
    free(data);
}

int main(void)
{
    test_parse_table();
    test_limits();
    test_accessors();
    test_unfold();
    test_speed();
    return check_done();
}
