/* The per-task arena: zeroed, aligned memory; printf of short and long
 * strings (its own formatting of %s and integers against snprintf's);
 * large blocks; destroy hooks newest first. */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include "check.h"
#include "util/pool.h"

/* as_pool_printf must write what snprintf writes, whether its own
 * formatting takes the format or hands it to vsnprintf midway. */
#define SAME(pool, ...) do { char want_[2048]; snprintf(want_, sizeof want_, __VA_ARGS__); \
    CHECK_STR(as_pool_printf(pool, __VA_ARGS__), want_); } while (0)

static void check_formats(struct as_pool *p)
{
    SAME(p, "%d|%i|%u|%d", INT_MIN, INT_MAX, UINT_MAX, 0);
    SAME(p, "%ld %lu %li", LONG_MIN, ULONG_MAX, -1L);
    SAME(p, "%lld %llu", LLONG_MIN, ULLONG_MAX);
    SAME(p, "%zu %zd %zu", (size_t)SIZE_MAX, (ssize_t)-5, (size_t)0);
    SAME(p, "100%% %s%%", "done");
    SAME(p, "%.*s|%.*s|%.*s", 3, "abcdef", 10, "ab", 0, "xyz");
    SAME(p, "%s{%s}%s", "as:", "example.org", "sx");
    SAME(p, "%s._domainkey.%s", "s2026", "mail.example.com");
    SAME(p, "no conversion at all");
    SAME(p, "%s", "");
    /* handed to vsnprintf: flags, widths, other conversions, after
     * arguments of the simple kind were read */
    SAME(p, "%s %d then %x %c", "a", -1, 255u, 'z');
    SAME(p, "%5d|%-3s|%02u|%+d", 42, "a", 7u, 3);
    SAME(p, "%.2f %.0f %g", 1.5, 1733454000.0, 0.25);
    SAME(p, "%.3s|%hhu|%lx", "abcdef", (unsigned char)200, 4096UL);
    SAME(p, "%*d|%.*d", 4, 1, 3, 2);
    /* output longer than the stack buffer, from the simple kind */
    char s250[251];
    memset(s250, 'q', 250);
    s250[250] = '\0';
    SAME(p, "%s%d", s250, 1234567);
    SAME(p, "%s%s%s", s250, s250, s250);
}

static char order[8];
static int norder;
static void hook(void *arg) { order[norder++] = *(const char *)arg; }

int main(void)
{
    struct as_pool *p = as_pool_new(1024);
    for (size_t sz = 1; sz < 3000; sz = sz * 3 + 1) {
        unsigned char *m = as_pool_alloc(p, sz);
        CHECK(((uintptr_t)m % _Alignof(max_align_t)) == 0);
        int zero = 1;
        for (size_t i = 0; i < sz; i++) zero &= m[i] == 0;
        CHECK(zero);
        memset(m, 0xAB, sz);          /* must not overlap the next one */
    }
    CHECK_STR(as_pool_printf(p, "%s-%d", "abc", 42), "abc-42");
    CHECK_STR(as_pool_printf(p, "%s", ""), "");
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *long_s = as_pool_printf(p, "<%s>", big);   /* longer than the stack buffer */
    CHECK_INT(strlen(long_s), sizeof big + 1);
    CHECK(long_s[0] == '<' && long_s[sizeof big] == '>');
    char edge[256];                                        /* exactly 255 chars: fits */
    memset(edge, 'y', 255);
    edge[255] = '\0';
    CHECK_INT(strlen(as_pool_printf(p, "%s", edge)), 255);
    CHECK_INT(strlen(as_pool_printf(p, "%s!", edge)), 256);  /* one over */
    check_formats(p);
    CHECK_STR(as_pool_strndup(p, "abcdef", 3), "abc");
    CHECK(as_pool_strdup(p, NULL) == NULL);
    CHECK(as_pool_allocated(p) > 0);
    static const char a = 'a', b = 'b', c = 'c';
    as_pool_on_destroy(p, hook, (void *)&a);
    as_pool_on_destroy(p, hook, (void *)&b);
    as_pool_on_destroy(p, hook, (void *)&c);
    as_pool_destroy(p);
    CHECK_INT(norder, 3);
    CHECK(memcmp(order, "cba", 3) == 0);
    return check_done();
}
