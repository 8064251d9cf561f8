/*
 * test_report_row.c - the escaping of authscan/report.h, shared by the
 * report plugin (writer) and `authscan report` (reader): every separator
 * and every byte outside printable ASCII is escaped, so a value can never
 * add a field, an item or a part; unescaping gives the value back; a
 * stray '%' survives.
 */
#include <stdlib.h>
#include <string.h>
#include <authscan/report.h>
#include "check.h"

static void round_trip(const char *v, const char *want_escaped)
{
    char buf[512];
    CHECK_INT(as_report_escaped_len(v), strlen(want_escaped));
    char *end = as_report_escape(buf, v);
    *end = 0;
    CHECK_STR(buf, want_escaped);
    CHECK(strpbrk(buf, "\t,;= \r\n") == NULL);
    size_t n = as_report_unescape(buf, strlen(buf));
    CHECK_INT(n, strlen(v));
    CHECK_STR(buf, v);
}

int main(void)
{
    round_trip("example.com", "example.com");
    round_trip("", "");
    round_trip("sel\tx", "sel%09x");
    round_trip("a,b;c=d", "a%2Cb%3Bc%3Dd");
    round_trip("50%", "50%25");
    round_trip("lua: text with spaces\r\n", "lua:%20text%20with%20spaces%0D%0A");
    round_trip("\xc3\xa9t\xc3\xa9", "%C3%A9t%C3%A9");
    round_trip("2001:db8::1", "2001:db8::1");

    /* a '%' that is not an escape stays as it is; lower-case hex decodes */
    char s1[] = "100%", s2[] = "%zz%4", s3[] = "%3d%3D";
    CHECK_INT(as_report_unescape(s1, strlen(s1)), 4);
    CHECK_STR(s1, "100%");
    CHECK_INT(as_report_unescape(s2, strlen(s2)), 5);
    CHECK_STR(s2, "%zz%4");
    CHECK_INT(as_report_unescape(s3, strlen(s3)), 2);
    CHECK_STR(s3, "==");
    CHECK_INT(as_report_escaped_len(NULL), 0);
    return check_done();
}
