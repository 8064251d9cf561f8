/*
 * dkim_fixture.c - TEST FIXTURE ONLY, never installed: a plugin named
 * "dkim" that publishes a struct as_dkim_result (authscan/dkim.h) and its
 * Authentication-Results entries, taken from X-Test-DKIM: header fields
 * instead of verifying signatures, so the
 * DMARC integration tests can put chosen DKIM outcomes in front of the
 * dmarc plugin end to end:
 *
 *     X-Test-DKIM: pass example.com sel1
 *     X-Test-DKIM: fail lists.example.org
 *
 * The integration tests compile it into a private plugins directory next
 * to the real spf.so and dmarc.so (tests/integration/test_dmarc_plugin.py).
 */
#include <stdio.h>
#include <string.h>

#include <authscan/dkim.h>
#include <authscan/plugin.h>

static enum as_dkim_res res_of(const char *s)
{
    static const char *const names[] = { "none", "pass", "fail", "neutral", "temperror",
                                         "permerror", "policy" };
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0)
            return (enum as_dkim_res)i;
    return AS_DKIM_PERMERROR;
}

static void scan(struct as_task *t, void *state)
{
    (void)state;
    struct as_pool *p = as_task_pool(t);
    const struct as_message *m = as_task_message(t);
    size_t n = m ? as_msg_header_count(m, "X-Test-DKIM") : 0;
    struct as_dkim_result *r = as_pool_alloc(p, sizeof *r);
    struct as_dkim_sig *sigs = as_pool_alloc(p, (n + 1) * sizeof *sigs);
    const char **ar = as_pool_alloc(p, (n + 1) * sizeof *ar);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = as_header_unfold(t, as_msg_header_get(m, "X-Test-DKIM", (int)i), NULL);
        char res[16], dom[256], sel[64] = "test";
        if (!v || sscanf(v, "%15s %255s %63s", res, dom, sel) < 2)
            continue;
        sigs[k].result = res_of(res);
        sigs[k].domain = as_pool_strdup(p, dom);
        sigs[k].selector = as_pool_strdup(p, sel);
        sigs[k].algorithm = "rsa-sha256";
        sigs[k].key_bits = 2048;
        ar[k] = as_pool_printf(p, "dkim=%s header.d=%s header.s=%s", res, dom, sel);
        as_task_add_auth_result(t, "dkim", as_dkim_res_name(sigs[k].result), NULL,
                                "header.d", sigs[k].domain, "header.s", sigs[k].selector, NULL);
        k++;
    }
    if (k == 0) {
        ar[0] = "dkim=none";
        as_task_add_auth_result(t, "dkim", "none", NULL, NULL);
    }
    r->version = AS_DKIM_RESULT_VERSION;
    r->nsigs = k;
    r->sigs = sigs;
    r->auth_results = ar;
    r->nauth_results = k ? k : 1;
    as_task_set_result(t, AS_DKIM_RESULT_KEY, r);
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "dkim",
    .version = "fixture",
    .description = "TEST FIXTURE: DKIM results from X-Test-DKIM headers",
    .scan = scan,
};
