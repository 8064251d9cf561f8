/* as_authres_value: RFC 8601 pvalues from untrusted SMTP text. */
#include "check.h"
#include "util/pool.h"
#include "authscan/plugin.h"

int main(void)
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
    struct as_pool *pool = as_pool_new(0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_STR(as_authres_value(pool, cases[i].in), cases[i].want);
    CHECK_STR(as_authres_value(pool, NULL), "\"\"");
    as_pool_destroy(pool);
    return check_done();
}
