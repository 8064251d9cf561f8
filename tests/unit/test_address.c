/*
 * test_address.c - address lists (RFC 5322 section 3.4), host name
 * normalization, RFC 2047 encoded-words and the RFC5322.From status.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "mail/address.h"
#include "mail/message.h"
#include "util/pool.h"
#include "util/util.h"

#define NUL_OR(s) ((s) ? (s) : "-")

/* "display|local|domain|addr|group|flags" per mailbox, "; "-joined, then
 * " groups=N". */
static char *render(const struct as_address_list *l)
{
    struct sbuf b = { 0 };
    for (size_t i = 0; i < l->nboxes; i++) {
        const struct as_mailbox *m = &l->boxes[i];
        sbuf_printf(&b, "%s%s|%s|%s|%s|%s|%u", i ? "; " : "", NUL_OR(m->display_name),
                    NUL_OR(m->local_part), NUL_OR(m->domain), NUL_OR(m->addr),
                    NUL_OR(m->group), m->flags);
    }
    sbuf_printf(&b, " groups=%zu", l->ngroups);
    return sbuf_steal(&b);
}

static const struct {
    const char *in;
    const char *want;     /* rendering, or NULL when an error is expected */
    const char *err;      /* the expected error */
} list_cases[] = {
    /* addr-spec and name-addr */
    { "user@example.com", "-|user|example.com|user@example.com|-|0 groups=0", NULL },
    { "John Doe <john@example.com>",
      "John Doe|john|example.com|john@example.com|-|0 groups=0", NULL },
    { "<john@example.com>", "-|john|example.com|john@example.com|-|0 groups=0", NULL },
    { "\"Doe, John\" <john@example.com>",
      "Doe, John|john|example.com|john@example.com|-|0 groups=0", NULL },
    { "\"J \\\"Q\\\" \\\\Doe\" <j@x.org>", "J \"Q\" \\Doe|j|x.org|j@x.org|-|0 groups=0", NULL },
    { "John Q. Public <jqp@example.com>",
      "John Q. Public|jqp|example.com|jqp@example.com|-|0 groups=0", NULL },
    { "Mr.Smith <s@x.org>", "Mr.Smith|s|x.org|s@x.org|-|0 groups=0", NULL },
    { "\"\" <a@x.org>", "-|a|x.org|a@x.org|-|0 groups=0", NULL },
    /* lists */
    { "a@b.com, c@d.com", "-|a|b.com|a@b.com|-|0; -|c|d.com|c@d.com|-|0 groups=0", NULL },
    { "A <a@x.com>, B <b@y.com>,", "A|a|x.com|a@x.com|-|0; B|b|y.com|b@y.com|-|0 groups=0",
      NULL },
    { ",, a@x.com ,,", "-|a|x.com|a@x.com|-|0 groups=0", NULL },
    { "a@x.com; b@y.com", "-|a|x.com|a@x.com|-|0; -|b|y.com|b@y.com|-|0 groups=0", NULL },
    { "", " groups=0", NULL },
    { "  \r\n\t (just a comment) ", " groups=0", NULL },
    /* groups */
    { "Friends: a@x.com, B <b@y.com>;",
      "-|a|x.com|a@x.com|Friends|0; B|b|y.com|b@y.com|Friends|0 groups=1", NULL },
    { "undisclosed-recipients:;", " groups=1", NULL },
    { "undisclosed-recipients:", " groups=1", NULL },
    { "G1: a@x.com;, \"Group 2\": ;, c@z.org",
      "-|a|x.com|a@x.com|G1|0; -|c|z.org|c@z.org|-|0 groups=2", NULL },
    { "Team: ,a@x.com,,;", "-|a|x.com|a@x.com|Team|0 groups=1", NULL },
    /* comments, CFWS */
    { "a@x.com (comment (nested) here)", "-|a|x.com|a@x.com|-|0 groups=0", NULL },
    { "(c)John(c) (x)<(c)john(c)@(c)example.com(c)>(c)",
      "John|john|example.com|john@example.com|-|0 groups=0", NULL },
    { "(a \\) b)x@y.org", "-|x|y.org|x@y.org|-|0 groups=0", NULL },
    { "Folded\r\n Name <a@\r\n x.com>", "Folded Name|a|x.com|a@x.com|-|0 groups=0", NULL },
    { "\"folded\r\n quoted\" <a@x.com>", "folded quoted|a|x.com|a@x.com|-|0 groups=0", NULL },
    /* obsolete syntax */
    { "<@route1.example,@route2.example:user@example.com>",
      "-|user|example.com|user@example.com|-|0 groups=0", NULL },
    { "R <@r1.example,,@r2.example : user@example.com>",
      "R|user|example.com|user@example.com|-|0 groups=0", NULL },
    { "john . smith @ example . com",
      "-|john.smith|example.com|john.smith@example.com|-|0 groups=0", NULL },
    { "\"john smith\"@example.com",
      "-|john smith|example.com|john smith@example.com|-|0 groups=0", NULL },
    { "john.\"q\".smith@example.com",
      "-|john.q.smith|example.com|john.q.smith@example.com|-|0 groups=0", NULL },
    { "a..b@docomo.ne.jp", "-|a..b|docomo.ne.jp|a..b@docomo.ne.jp|-|0 groups=0", NULL },
    /* domains */
    { "user@[192.0.2.1]", "-|user|[192.0.2.1]|user@[192.0.2.1]|-|1 groups=0", NULL },
    { "U <user@[IPv6:2001:DB8::1]>",
      "U|user|[ipv6:2001:db8::1]|user@[ipv6:2001:db8::1]|-|1 groups=0", NULL },
    { "User <user@EXAMPLE.COM.>", "User|user|example.com|user@EXAMPLE.COM.|-|0 groups=0",
      NULL },
    { "user@B\xc3\xbc" "cher.example",
      "-|user|xn--bcher-kva.example|user@B\xc3\xbc" "cher.example|-|2 groups=0", NULL },
    { "J\xc3\xb6rg <j\xc3\xb6rg@example.com>",
      "J\xc3\xb6rg|j\xc3\xb6rg|example.com|j\xc3\xb6rg@example.com|-|0 groups=0", NULL },
    { "user@exa$mple.com", "-|user|-|user@exa$mple.com|-|0 groups=0", NULL },
    { "user@a..b", "-|user|-|user@a..b|-|0 groups=0", NULL },
    { "<>", "-||-||-|0 groups=0", NULL },
    { "Mailer <postmaster>", "Mailer|postmaster|-|postmaster|-|0 groups=0", NULL },
    /* encoded words */
    { "=?UTF-8?B?Sm9zw6k=?= <jose@example.com>",
      "Jos\xc3\xa9|jose|example.com|jose@example.com|-|0 groups=0", NULL },
    { "=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
      "Andr\xc3\xa9 Pirard|PIRARD|vm1.ulg.ac.be|PIRARD@vm1.ulg.ac.be|-|0 groups=0", NULL },
    { "=?utf-8?q?a?= =?utf-8?q?b?= <x@y.org>", "ab|x|y.org|x@y.org|-|0 groups=0", NULL },
    { "\"=?utf-8?q?Quoted_EW?=\" <x@y.org>", "Quoted EW|x|y.org|x@y.org|-|0 groups=0", NULL },
    { "=?utf-8?q?Team?=: a@x.org;", "-|a|x.org|a@x.org|Team|0 groups=1", NULL },
    /* sloppy: an address as display name */
    { "j@x.com <j@y.com>", "j@x.com|j|y.com|j@y.com|-|0 groups=0", NULL },
    { "a@x.com (Name)", "-|a|x.com|a@x.com|-|0 groups=0", NULL },

    /* malformed */
    { "\"unterminated <a@b.org>", NULL, "unterminated quoted string" },
    { "\"a\\", NULL, "unterminated quoted string" },
    { "(unterminated a@b.org", NULL, "unterminated comment" },
    { "a@b.org (x))", NULL, "unbalanced ')'" },
    { ") a@b.org", NULL, "unbalanced ')'" },
    { "John <john@example.com", NULL, "'<' without matching '>'" },
    { "<a@b.org", NULL, "'<' without matching '>'" },
    { "a@b.org>", NULL, "'>' without '<'" },
    { "John Smith", NULL, "display name without an address" },
    { "John Smith, a@b.com", NULL, "display name without an address" },
    { "John Smith@example.com", NULL, "local part has several words without dots" },
    { "<a b@c.org>", NULL, "local part has several words without dots" },
    { "a@", NULL, "missing domain after '@'" },
    { "<a@>", NULL, "missing domain after '@'" },
    { "@example.com", NULL, "'@' without local part" },
    { "<@example.com>", NULL, "malformed route in angle address" },
    { "<@a.example user@b.org>", NULL, "malformed route in angle address" },
    { "G: H: a@b.org;;", NULL, "group inside a group" },
    { ": a@b.org;", NULL, "group without a name" },
    { "a@b.com c@d.com", NULL, "unexpected text after address" },
    { "<a@b.org> <c@d.org>", NULL, "unexpected text after address" },
    { "a@[1.2.3.4", NULL, "unterminated domain literal" },
    { "a@[1.2[3.4]", NULL, "'[' inside a domain literal" },
    { "[1.2.3.4]", NULL, "domain literal without '@'" },
    { "a\x01" "b@c.org", NULL, "control character in address" },
    { "<a@b.org x>", NULL, "unexpected character in angle address" },
    { "a@b.org\\", NULL, "unexpected text after address" },
    { "\\a@b.org", NULL, "backslash outside a quoted string" },
    { "a@b.org, >", NULL, "'>' without '<'" },
};

static void test_list_table(void)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(list_cases); i++) {
        struct as_pool *pool = as_pool_new(0);
        struct as_address_list l;
        const char *err = "junk";
        int rc = as_address_list_parse(pool, list_cases[i].in, strlen(list_cases[i].in), &l,
                                       &err);
        if (list_cases[i].want) {
            if (rc != 0)
                fprintf(stderr, "input \"%s\": error \"%s\"\n", list_cases[i].in, err);
            CHECK_INT(rc, 0);
            CHECK_STR(err, NULL);
            if (rc == 0) {
                char *got = render(&l);
                if (strcmp(got, list_cases[i].want) != 0)
                    fprintf(stderr, "input \"%s\":\n", list_cases[i].in);
                CHECK_STR(got, list_cases[i].want);
                free(got);
            }
        } else {
            if (rc != -1)
                fprintf(stderr, "input \"%s\": parsed, want error\n", list_cases[i].in);
            CHECK_INT(rc, -1);
            if (err == NULL || strcmp(err, list_cases[i].err) != 0)
                fprintf(stderr, "input \"%s\":\n", list_cases[i].in);
            CHECK_STR(err, list_cases[i].err);
            CHECK_INT(l.nboxes, 0);
        }
        as_pool_destroy(pool);
    }
}

static void test_list_bounds(void)
{
    struct as_pool *pool = as_pool_new(0);
    struct as_address_list l;
    const char *err;
    struct sbuf b = { 0 };

    /* comment nesting: the bound itself is fine, one more is not */
    for (int depth = AS_ADDR_MAX_COMMENT_DEPTH; depth <= AS_ADDR_MAX_COMMENT_DEPTH + 1; depth++) {
        sbuf_reset(&b);
        sbuf_adds(&b, "a@b.org ");
        for (int i = 0; i < depth; i++) sbuf_addc(&b, '(');
        for (int i = 0; i < depth; i++) sbuf_addc(&b, ')');
        int rc = as_address_list_parse(pool, b.data, b.len, &l, &err);
        CHECK_INT(rc, depth > AS_ADDR_MAX_COMMENT_DEPTH ? -1 : 0);
        if (rc < 0)
            CHECK_STR(err, "comments nested too deeply");
    }

    /* mailbox count */
    for (int n = AS_ADDR_MAX_BOXES; n <= AS_ADDR_MAX_BOXES + 1; n++) {
        sbuf_reset(&b);
        for (int i = 0; i < n; i++)
            sbuf_printf(&b, "u%d@x.org,", i);
        int rc = as_address_list_parse(pool, b.data, b.len, &l, &err);
        CHECK_INT(rc, n > AS_ADDR_MAX_BOXES ? -1 : 0);
        if (rc == 0) {
            CHECK_INT(l.nboxes, n);
            CHECK_STR(l.boxes[n - 1].addr, "u999@x.org");
        } else {
            CHECK_STR(err, "more than 1000 mailboxes in an address list");
        }
    }

    /* input length */
    for (size_t len = AS_ADDR_MAX_LEN; len <= AS_ADDR_MAX_LEN + 1; len++) {
        char *s = xmalloc(len);
        memset(s, ' ', len);
        memcpy(s, "a@b.org", 7);
        int rc = as_address_list_parse(pool, s, len, &l, &err);
        CHECK_INT(rc, len > AS_ADDR_MAX_LEN ? -1 : 0);
        if (rc < 0)
            CHECK_STR(err, "address list longer than 65536 bytes");
        free(s);
    }

    /* NUL inside a quoted string, and as a stray byte */
    static const char nul_q[] = "\"a\0b\" <a@b.org>";
    CHECK_INT(as_address_list_parse(pool, nul_q, sizeof nul_q - 1, &l, &err), -1);
    CHECK_STR(err, "NUL byte in quoted string");
    static const char nul_s[] = "a@b.org\0";
    CHECK_INT(as_address_list_parse(pool, nul_s, sizeof nul_s - 1, &l, &err), -1);
    CHECK_STR(err, "unexpected text after address");
    CHECK_INT(as_address_list_parse(pool, NULL, 0, &l, &err), 0);
    CHECK_INT(l.nboxes, 0);
    CHECK_INT(as_address_list_parse(pool, "x", 1, &l, NULL), -1);

    sbuf_free(&b);
    as_pool_destroy(pool);
}

static void test_domain_normalize(void)
{
    char l63[64], l64[65], long254[300], long253[300];
    memset(l63, 'a', 63); l63[63] = '\0';
    memset(l64, 'a', 64); l64[64] = '\0';
    /* 4 labels of 63 + 3 dots = 255; trim to the sizes wanted */
    snprintf(long253, sizeof long253, "%s.%s.%s.%.61s", l63, l63, l63, l63);
    snprintf(long254, sizeof long254, "%s.%s.%s.%.62s", l63, l63, l63, l63);
    static char l63_com[80], l64_com[80];
    snprintf(l63_com, sizeof l63_com, "%s.com", l63);
    snprintf(l64_com, sizeof l64_com, "%s.com", l64);
    const struct { const char *in; const char *want; } cases[] = {
        { "Example.COM", "example.com" },
        { "example.com.", "example.com" },
        { "example.com..", NULL },
        { ".example.com", NULL },
        { "a..b", NULL },
        { "", NULL },
        { ".", NULL },
        { "localhost", "localhost" },
        { "_dmarc.Example.com", "_dmarc.example.com" },
        { "sel._domainkey.x.org", "sel._domainkey.x.org" },
        { "exa mple.com", NULL },
        { "exa$mple.com", NULL },
        { "[1.2.3.4]", NULL },
        { "xn--bcher-kva.example", "xn--bcher-kva.example" },
        { "B\xc3\xbc" "cher.EXAMPLE", "xn--bcher-kva.example" },
        { "b\xc3\xbc" "cher.example.", "xn--bcher-kva.example" },
        { "fa\xc3\x9f.de", "xn--fa-hia.de" },                 /* non-transitional */
        { "\xe4\xbe\x8b\xe3\x81\x88.\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88",
          "xn--r8jz45g.xn--zckzah" },
        { "\xff.com", NULL },                                /* not UTF-8 */
        { l63_com, l63_com },
        { l64_com, NULL },
        { long253, long253 },
        { long254, NULL },
    };
    struct as_pool *pool = as_pool_new(0);
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        const char *got = as_domain_normalize(pool, cases[i].in, strlen(cases[i].in));
        if (!(got == NULL && cases[i].want == NULL) &&
            !(got && cases[i].want && strcmp(got, cases[i].want) == 0))
            fprintf(stderr, "input \"%s\":\n", cases[i].in);
        CHECK_STR(got, cases[i].want);
    }
    CHECK(as_domain_normalize(pool, "a\0b.com", 7) == NULL);
    CHECK(as_domain_normalize(pool, NULL, 0) == NULL);
    CHECK_STR(as_domain_normalize(pool, "Example.com-and-more", 11), "example.com");
    as_pool_destroy(pool);
}

static void test_encoded_words(void)
{
    static const struct { const char *in; const char *want; } cases[] = {
        { "", "" },
        { "plain text", "plain text" },
        { "=?UTF-8?B?w6lsw6h2ZQ==?=", "\xc3\xa9l\xc3\xa8ve" },
        { "=?utf-8?b?w6k?=", "\xc3\xa9" },                          /* no padding */
        { "=?ISO-8859-1?Q?Caf=E9_cr=e8me?=", "Caf\xc3\xa9 cr\xc3\xa8me" },
        { "=?windows-1252?q?=80?=", "\xe2\x82\xac" },
        { "=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88" },
        { "=?utf-8?q?a?= =?utf-8?q?b?=", "ab" },
        { "=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab" },
        { "=?utf-8?q?a?= plain =?utf-8?q?b?=", "a plain b" },
        { "plain =?utf-8?q?a?= tail", "plain a tail" },
        { "=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "\xc3\xa9" },           /* split character */
        { "=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", "\xc3\xa9\xc3\xa9" },
        { "=?utf-8*en?q?lang?=", "lang" },                           /* RFC 2231 */
        { "a=?utf-8?q?b?=c", "abc" },
        { "=?utf-8?q?" "?=", "" },
        /* bad encodings and unknown charsets stay as written */
        { "=?utf-8?b?!!!!?=", "=?utf-8?b?!!!!?=" },
        { "=?utf-8?b?A?=", "=?utf-8?b?A?=" },
        { "=?utf-8?b?w6k=x?=", "=?utf-8?b?w6k=x?=" },
        { "=?utf-8?b?w6k===?=", "=?utf-8?b?w6k===?=" },
        { "=?utf-8?q?bad=ZZ?=", "=?utf-8?q?bad=ZZ?=" },
        { "=?utf-8?q?end=?=", "=?utf-8?q?end=?=" },
        { "=?utf-8?q?=FF?=", "=?utf-8?q?=FF?=" },                    /* not UTF-8 */
        { "=?x-unknown?q?abc?=", "=?x-unknown?q?abc?=" },
        { "=?utf-8?q?a?= =?x-bad?q?b?= =?utf-8?q?c?=", "a =?x-bad?q?b?= c" },
        { "=?UTF-8//TRANSLIT?q?x?=", "=?UTF-8//TRANSLIT?q?x?=" },
        { "=?utf-8?x?abc?=", "=?utf-8?x?abc?=" },
        { "=?utf-8?q?abc", "=?utf-8?q?abc" },
        { "=?utf-8?q?a b?=", "=?utf-8?q?a b?=" },
        { "=??q?a?=", "=??q?a?=" },
        { "=?", "=?" },
        { "=?utf-8?q?ok?= =?", "ok =?" },
    };
    struct as_pool *pool = as_pool_new(0);
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        const char *got = as_decode_encoded_words(pool, cases[i].in, strlen(cases[i].in));
        if (!got || strcmp(got, cases[i].want) != 0)
            fprintf(stderr, "input \"%s\":\n", cases[i].in);
        CHECK_STR(got, cases[i].want);
    }
    /* a NUL decoded from Q ends the C string but is not a crash */
    const char *n = as_decode_encoded_words(pool, "=?utf-8?q?a=00b?=", 17);
    CHECK_STR(n, "a");
    as_pool_destroy(pool);
}

static void test_from_status(void)
{
    static const struct {
        const char *msg;
        enum as_from_status want;
        const char *domain;
        size_t nfields, nboxes;
        const char *error;
    } cases[] = {
        { "Subject: x\r\n\r\n", AS_FROM_MISSING, NULL, 0, 0, NULL },
        { "From: a@x.com\r\nFrom: b@y.com\r\n\r\n", AS_FROM_MULTIPLE_FIELDS, NULL, 2, 2, NULL },
        { "From: a@x.com\r\nfrom: bad <\r\n\r\n", AS_FROM_MULTIPLE_FIELDS, NULL, 2, 1,
          "'<' without matching '>'" },
        { "From: John <a@x.com\r\n\r\n", AS_FROM_INVALID, NULL, 1, 0,
          "'<' without matching '>'" },
        { "From: John Smith\r\n\r\n", AS_FROM_INVALID, NULL, 1, 0,
          "display name without an address" },
        { "From:\r\n\r\n", AS_FROM_EMPTY, NULL, 1, 0, NULL },
        { "From: (nothing)\r\n\r\n", AS_FROM_EMPTY, NULL, 1, 0, NULL },
        { "From: undisclosed-recipients:;\r\n\r\n", AS_FROM_EMPTY, NULL, 1, 0, NULL },
        { "From: G: a@x.com;\r\n\r\n", AS_FROM_GROUP, NULL, 1, 1, NULL },
        { "From: G: a@x.com, b@y.com;\r\n\r\n", AS_FROM_GROUP, NULL, 1, 2, NULL },
        { "From: a@x.com, b@y.com\r\n\r\n", AS_FROM_MULTIPLE_MAILBOXES, NULL, 1, 2, NULL },
        { "From: <>\r\n\r\n", AS_FROM_NO_DOMAIN, NULL, 1, 1, NULL },
        { "From: <postmaster>\r\n\r\n", AS_FROM_NO_DOMAIN, NULL, 1, 1, NULL },
        { "From: a@[192.0.2.1]\r\n\r\n", AS_FROM_NO_DOMAIN, NULL, 1, 1, NULL },
        { "From: a@exa$mple.com\r\n\r\n", AS_FROM_NO_DOMAIN, NULL, 1, 1, NULL },
        { "From: A <a@Sub.EXAMPLE.com.>\r\n\r\n", AS_FROM_OK, "sub.example.com", 1, 1, NULL },
        { "FROM:\r\n a@x.com\r\nSubject: s\r\n\r\n", AS_FROM_OK, "x.com", 1, 1, NULL },
        { "From: =?utf-8?q?J=C3=B6rg?= <j@b\xc3\xbc" "cher.example>\n\n", AS_FROM_OK,
          "xn--bcher-kva.example", 1, 1, NULL },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        struct as_pool *pool = as_pool_new(0);
        struct as_message *m = NULL;
        CHECK_INT(as_message_parse(pool, cases[i].msg, strlen(cases[i].msg), NULL, &m, NULL, 0),
                  AS_MSG_OK);
        const struct as_from *f = as_message_from(pool, m);
        if (f->status != cases[i].want)
            fprintf(stderr, "message \"%s\":\n", cases[i].msg);
        CHECK_STR(as_from_status_name(f->status), as_from_status_name(cases[i].want));
        CHECK_STR(f->domain, cases[i].domain);
        CHECK_INT(f->nfields, cases[i].nfields);
        CHECK_INT(f->list.nboxes, cases[i].nboxes);
        CHECK_STR(f->error, cases[i].error);
        as_pool_destroy(pool);
    }

    static const struct { enum as_from_status st; const char *name; } names[] = {
        { AS_FROM_OK, "ok" }, { AS_FROM_MISSING, "missing" },
        { AS_FROM_MULTIPLE_FIELDS, "multiple_fields" },
        { AS_FROM_MULTIPLE_MAILBOXES, "multiple_mailboxes" }, { AS_FROM_GROUP, "group" },
        { AS_FROM_EMPTY, "empty" }, { AS_FROM_NO_DOMAIN, "no_domain" },
        { AS_FROM_INVALID, "invalid" }, { (enum as_from_status)99, "unknown" },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(names); i++)
        CHECK_STR(as_from_status_name(names[i].st), names[i].name);

    struct as_pool *pool = as_pool_new(0);
    const struct as_from *f = as_message_from(pool, NULL);
    CHECK_INT(f->status, AS_FROM_MISSING);
    as_pool_destroy(pool);
}

int main(void)
{
    test_list_table();
    test_list_bounds();
    test_domain_normalize();
    test_encoded_words();
    test_from_status();
    return check_done();
}
