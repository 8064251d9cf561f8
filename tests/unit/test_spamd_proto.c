/*
 * test_spamd_proto.c - the spamd request parser and its helpers
 * (core/net/spamd_proto.c): request heads, exit codes of malformed ones,
 * bounded zlib inflate, Received "from" clauses, network lists.
 */
#include <string.h>
#include <zlib.h>
#include "check.h"
#include "net/spamd_proto.h"

static void test_head(void)
{
    static const struct {
        const char *in;
        int rc, ex;
        int verb;
        long long clen;
        int zlib;
        const char *user, *err_sub;
    } cases[] = {
        { "CHECK SPAMC/1.5\r\nContent-length: 12\r\n\r\nbody", 1, 0, AS_SPAMD_CHECK, 12, 0, "",
          NULL },
        { "PROCESS SPAMC/1.5\nUser: bob\nCompress: zlib\nContent-length: 0\n\n", 1, 0,
          AS_SPAMD_PROCESS, 0, 1, "bob", NULL },
        { "PING SPAMC/1.5\r\n\r\n", 1, 0, AS_SPAMD_PING, -1, 0, "", NULL },
        { "REPORT_IFSPAM SPAMC/1.2\r\ncontent-LENGTH:  7 \r\nX-Other: 1\r\n\r\n", 1, 0,
          AS_SPAMD_REPORT_IFSPAM, 7, 0, "", NULL },
        { "CHECK SPAMC/1.5\r\nContent-length: 12\r\n", 0, 0, 0, 0, 0, "", NULL },
        { "CHE", 0, 0, 0, 0, 0, "", NULL },
        { "SCAN SPAMC/1.5\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "", "unknown method 'SCAN'" },
        { "CHECK\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "", "bad request line" },
        { "CHECK RSPAMC/1.3\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "", "bad protocol version" },
        { "CHECK SPAMC/1.x\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "", "bad protocol version" },
        { "CHECK SPAMC/1.5\r\nContent-length: -1\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "",
          "bad Content-length" },
        { "CHECK SPAMC/1.5\r\nContent-length: 9999999999999\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0,
          0, 0, "", "bad Content-length" },
        { "CHECK SPAMC/1.5\r\nUser: a b\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "", "bad User" },
        { "CHECK SPAMC/1.5\r\nCompress: bzip2\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "",
          "unsupported compression" },
        { "CHECK SPAMC/1.5\r\n: x\r\n\r\n", -1, AS_SPAMD_EX_PROTOCOL, 0, 0, 0, "", "bad header line" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct as_spamd_request r;
        char err[256] = "";
        int ex = 0;
        int rc = as_spamd_parse_head(cases[i].in, strlen(cases[i].in), &r, &ex, err, sizeof err);
        if (rc != cases[i].rc) fprintf(stderr, "case %zu: err %s\n", i, err);
        CHECK_INT(rc, cases[i].rc);
        if (rc == 1) {
            CHECK_INT(r.verb, cases[i].verb);
            CHECK_INT(r.content_length, cases[i].clen);
            CHECK_INT(r.zlib, cases[i].zlib);
            CHECK_STR(r.user, cases[i].user);
            CHECK(r.head_len > 0 && r.head_len <= strlen(cases[i].in));
        }
        if (rc < 0) {
            CHECK_INT(ex, cases[i].ex);
            CHECK(strstr(err, cases[i].err_sub) != NULL);
        }
    }
    /* the head bound */
    static char big[AS_SPAMD_MAX_HEAD + 10];
    memset(big, 'a', sizeof big);
    memcpy(big, "CHECK SPAMC/1.5\r\nX: ", 20);
    struct as_spamd_request r;
    char err[256];
    int ex;
    CHECK_INT(as_spamd_parse_head(big, sizeof big, &r, &ex, err, sizeof err), -1);
    CHECK(strstr(err, "longer than 16384") != NULL);
    CHECK_INT(as_spamd_parse_head(big, 100, &r, &ex, err, sizeof err), 0);
}

static void test_inflate(void)
{
    static const char text[] = "From: a@example.com\r\n\r\nhello hello hello hello\r\n";
    unsigned char z[256];
    uLongf zl = sizeof z;
    CHECK_INT(compress2(z, &zl, (const Bytef *)text, sizeof text - 1, 3), Z_OK);
    struct sbuf out = {0};
    char err[160];
    CHECK_INT(as_spamd_inflate(z, zl, 1000, &out, err, sizeof err), 0);
    CHECK_INT(out.len, sizeof text - 1);
    CHECK(out.data && memcmp(out.data, text, sizeof text - 1) == 0);
    sbuf_reset(&out);
    CHECK_INT(as_spamd_inflate(z, zl, 10, &out, err, sizeof err), -1);     /* bound */
    CHECK(strstr(err, "more than 10 bytes") != NULL);
    sbuf_reset(&out);
    CHECK_INT(as_spamd_inflate(z, zl - 4, 1000, &out, err, sizeof err), -1);   /* truncated */
    CHECK(strstr(err, "truncated") != NULL);
    sbuf_reset(&out);
    CHECK_INT(as_spamd_inflate("plain text", 10, 1000, &out, err, sizeof err), -1);
    CHECK(strstr(err, "corrupt") != NULL);
    sbuf_free(&out);
}

static void test_received(void)
{
    static const struct { const char *in; int rc; const char *helo, *ip; } cases[] = {
        { "from client.test (unknown [203.0.113.9]) by mx.example (Postfix) with ESMTP id 1",
          0, "client.test", "203.0.113.9" },
        { "from mail.example (mail.example [IPv6:2001:db8::1]) by mx (8.17/8.17)", 0,
          "mail.example", "2001:db8::1" },
        { "from [192.0.2.7] (helo=laptop) by exim.example with esmtp", 0, "laptop", "192.0.2.7" },
        { "by mx.example (Postfix) id 1; Thu, 1 Jan 2026", -1, "", "" },
        { "from localhost by mx.example; date", -1, "localhost", "" },
        { "from a (b [not-an-ip]) by c", -1, "a", "" },
        { "from x (y) by z ([192.0.2.9])", -1, "x", "" },    /* the address is after "by" */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char helo[64], ip[64];
        CHECK_INT(as_spamd_received_from(cases[i].in, helo, sizeof helo, ip, sizeof ip),
                  cases[i].rc);
        CHECK_STR(helo, cases[i].helo);
        CHECK_STR(ip, cases[i].ip);
    }
}

static void test_nets(void)
{
    struct as_spamd_net n[3];
    CHECK_INT(as_spamd_net_parse("10.0.0.0/8", &n[0]), 0);
    CHECK_INT(as_spamd_net_parse("2001:db8::/32", &n[1]), 0);
    CHECK_INT(as_spamd_net_parse("192.0.2.1", &n[2]), 0);
    CHECK_INT(n[2].bits, 32);
    CHECK(as_spamd_net_match(n, 3, "10.200.1.1"));
    CHECK(as_spamd_net_match(n, 3, "::ffff:10.1.2.3"));
    CHECK(as_spamd_net_match(n, 3, "2001:db8:ffff::1"));
    CHECK(as_spamd_net_match(n, 3, "192.0.2.1"));
    CHECK(!as_spamd_net_match(n, 3, "192.0.2.2"));
    CHECK(!as_spamd_net_match(n, 3, "11.0.0.1"));
    CHECK(!as_spamd_net_match(n, 3, "junk"));
    struct as_spamd_net x;
    CHECK_INT(as_spamd_net_parse("10.0.0.0/33", &x), -1);
    CHECK_INT(as_spamd_net_parse("10.0.0.0/", &x), -1);
    CHECK_INT(as_spamd_net_parse("::/129", &x), -1);
    CHECK_INT(as_spamd_net_parse("example.com", &x), -1);
    CHECK_INT(as_spamd_net_parse("", &x), -1);
}

int main(void)
{
    test_head();
    test_inflate();
    test_received();
    test_nets();
    return check_done();
}
