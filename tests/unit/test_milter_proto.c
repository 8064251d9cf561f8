/*
 * test_milter_proto.c - the milter packet decoder and encoder
 * (core/net/milter_proto.c): framing limits, each command's shape,
 * malformed data refused with a message, replies byte for byte, reply text
 * escaping.
 */
#include <string.h>
#include "check.h"
#include "net/milter_proto.h"

static void test_frame(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        long want;           /* bytes taken, 0 more needed, -1 error */
        char cmd;
        size_t dlen;
    } cases[] = {
        { "", 0, 0, 0, 0 },
        { "\0\0\0", 3, 0, 0, 0 },
        { "\0\0\0\1", 4, 0, 0, 0 },                        /* command byte missing */
        { "\0\0\0\1Q", 5, 5, 'Q', 0 },
        { "\0\0\0\3Bab", 7, 7, 'B', 2 },
        { "\0\0\0\3Bab\0\0", 9, 7, 'B', 2 },               /* the next packet stays */
        { "\0\0\0\0", 4, -1, 0, 0 },                       /* length 0 */
        { "\0\1\0\1", 4, -1, 0, 0 },                       /* over the limit of 65536 */
        { "\x7f\xff\xff\xffO", 5, -1, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd = 0, err[128] = "";
        const char *data = NULL;
        size_t dlen = 99;
        long n = as_milter_frame((const unsigned char *)cases[i].bytes, cases[i].len, 65536, &cmd,
                                 &data, &dlen, err, sizeof err);
        CHECK_INT(n, cases[i].want);
        if (n > 0) {
            CHECK_INT(cmd, cases[i].cmd);
            CHECK_INT(dlen, cases[i].dlen);
            CHECK(data == cases[i].bytes + 5);
        }
        if (n < 0) CHECK(err[0] != '\0');
    }
}

static void test_decode(void)
{
    struct as_milter_cmd c;
    char err[160];
    /* OPTNEG */
    CHECK_INT(as_milter_decode('O', "\0\0\0\6\0\0\1\xff\0\x1f\xff\xff", 12, &c, err, sizeof err), 0);
    CHECK_INT(c.version, 6);
    CHECK_INT(c.actions, 0x1ff);
    CHECK_INT(c.protocol, 0x1fffff);
    CHECK_INT(as_milter_decode('O', "\0\0\0\6", 4, &c, err, sizeof err), -1);
    CHECK(strstr(err, "option negotiation of 4 bytes") != NULL);
    /* CONNECT, IPv4 and unknown */
    static const char conn4[] = "mx.example\0" "4\x61\xa8" "192.0.2.1";
    CHECK_INT(as_milter_decode('C', conn4, sizeof conn4, &c, err, sizeof err), 0);
    CHECK_STR(c.hostname, "mx.example");
    CHECK_INT(c.family, '4');
    CHECK_INT(c.port, 25000);
    CHECK_STR(c.addr, "192.0.2.1");
    CHECK_INT(as_milter_decode('C', "h\0U", 3, &c, err, sizeof err), 0);
    CHECK(c.addr == NULL);
    CHECK_INT(as_milter_decode('C', "h\0X\0\0a", 7, &c, err, sizeof err), -1);
    CHECK(strstr(err, "unknown address family") != NULL);
    CHECK_INT(as_milter_decode('C', "h\0" "4\0", 4, &c, err, sizeof err), -1);
    CHECK_INT(as_milter_decode('C', "hostname", 8, &c, err, sizeof err), -1);
    static const char conn_extra[] = "h\0" "4\0\x19" "1.2.3.4\0junk";
    CHECK_INT(as_milter_decode('C', conn_extra, sizeof conn_extra, &c, err, sizeof err), -1);
    /* MACRO */
    static const char mac[] = "Ti\0" "4AB\0" "{auth_authen}\0" "bob";
    CHECK_INT(as_milter_decode('D', mac, sizeof mac, &c, err, sizeof err), 0);
    CHECK_INT(c.macro_for, 'T');
    CHECK_INT(c.nargs, 4);
    CHECK_STR(c.args[2], "{auth_authen}");
    CHECK_STR(c.args[3], "bob");
    CHECK_INT(as_milter_decode('D', "Ti", 3, &c, err, sizeof err), -1);    /* name, no value */
    CHECK_INT(as_milter_decode('D', "", 0, &c, err, sizeof err), -1);
    /* MAIL with parameters; HEADER needs exactly two strings */
    static const char mail[] = "<a@b.example>\0SIZE=10";
    CHECK_INT(as_milter_decode('M', mail, sizeof mail, &c, err, sizeof err), 0);
    CHECK_INT(c.nargs, 2);
    CHECK_STR(c.args[0], "<a@b.example>");
    static const char hdr[] = "Subject\0 hi";
    CHECK_INT(as_milter_decode('L', hdr, sizeof hdr, &c, err, sizeof err), 0);
    CHECK_STR(c.args[1], " hi");
    CHECK_INT(as_milter_decode('L', "Subject", 8, &c, err, sizeof err), -1);
    CHECK_INT(as_milter_decode('L', "Subject\0hi", 10, &c, err, sizeof err), -1);  /* no NUL */
    CHECK(strstr(err, "not NUL-terminated") != NULL);
    CHECK_INT(as_milter_decode('H', "", 0, &c, err, sizeof err), -1);
    /* more strings than the bound */
    char many[2 * (AS_MILTER_MAX_ARGS + 2)];
    memset(many, 0, sizeof many);
    for (size_t i = 0; i < sizeof many; i += 2) many[i] = 'x';
    CHECK_INT(as_milter_decode('M', many, sizeof many, &c, err, sizeof err), -1);
    CHECK(strstr(err, "more than") != NULL);
    /* BODY keeps its bytes, NULs included */
    CHECK_INT(as_milter_decode('B', "a\0b", 3, &c, err, sizeof err), 0);
    CHECK_INT(c.len, 3);
}

static void test_encode(void)
{
    struct sbuf b = {0};
    as_milter_put_optneg(&b, 6, 0x31, 0x100080);
    CHECK_INT(b.len, 17);
    CHECK(memcmp(b.data, "\0\0\0\x0dO\0\0\0\6\0\0\0\x31\0\x10\0\x80", 17) == 0);
    sbuf_reset(&b);
    as_milter_put_strings(&b, 'm', 2, "Authentication-Results", "", (const char *)NULL);
    static const char chg[] = "\0\0\0\x1dm\0\0\0\2Authentication-Results\0";
    CHECK_INT(b.len, sizeof chg);
    CHECK(memcmp(b.data, chg, sizeof chg) == 0);
    sbuf_reset(&b);
    as_milter_put_strings(&b, 'h', -1, "X-Spam", " Yes", (const char *)NULL);
    CHECK_INT(b.len, 5 + 7 + 5);
    CHECK(memcmp(b.data, "\0\0\0\x0dhX-Spam\0 Yes\0", 17) == 0);
    sbuf_reset(&b);
    as_milter_put(&b, 'a', NULL, 0);
    CHECK_INT(b.len, 5);
    CHECK(memcmp(b.data, "\0\0\0\1a", 5) == 0);
    sbuf_free(&b);
}

static void test_reply_text(void)
{
    static const struct { const char *in; size_t max; const char *want; } cases[] = {
        { "Rejected per DMARC policy of example.com", 400,
          "Rejected per DMARC policy of example.com" },
        { "100% spam", 400, "100%% spam" },
        { "line1\r\n550 injected", 400, "line1??550 injected" },
        { "caf\xc3\xa9\ttab", 400, "caf??" "?tab" },
        { "abcdef", 3, "abc" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sbuf b = {0};
        as_milter_reply_text(&b, cases[i].in, cases[i].max);
        sbuf_addc(&b, '\0');
        CHECK_STR(b.data, cases[i].want);
        sbuf_free(&b);
    }
}

int main(void)
{
    test_frame();
    test_decode();
    test_encode();
    test_reply_text();
    return check_done();
}
