/* The per-task arena: zeroed, aligned memory; printf of short and long
 * strings; large blocks; destroy hooks newest first. */
#include <stdint.h>
#include <string.h>
#include "check.h"
#include "util/pool.h"

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
