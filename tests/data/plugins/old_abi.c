/*
 * old_abi.c - a plugin as built against plugin.h 1.0 or 1.1 (-DOLD_MINOR=0
 * or 1), for tests/integration/test_plugin_stages.py: its struct ends after
 * fini, as the 1.1 struct as_plugin did.  Two non-NULL trap pointers
 * follow in the same object, where 1.2 keeps postfilter and finish: a host
 * that read them from this plugin would call address 0x1 and crash.
 */
#include <stdint.h>
#include <authscan/plugin.h>

#define STR2(x) #x
#define STR(x) STR2(x)

struct plugin_v11 {                   /* struct as_plugin of ABI 1.0 and 1.1 */
    uint32_t abi_major, abi_minor;
    const char *name, *version, *description;
    const char *const *depends;
    const struct as_symbol_def *symbols;
    size_t nsymbols;
    const struct as_option_def *options;
    size_t noptions;
    int (*init)(struct as_plugin_ctx *ctx, void **state);
    void (*scan)(struct as_task *t, void *state);
    void (*fini)(void *state);
};

static const struct as_symbol_def syms[] = {
    { "OLD_ABI_1_" STR(OLD_MINOR), 0.0, "probe", "An ABI 1." STR(OLD_MINOR) " plugin ran", 0 },
};

static void scan(struct as_task *t, void *state)
{
    (void)state;
    as_task_add_symbol(t, syms[0].name, 1.0, NULL);
}

const struct {
    struct plugin_v11 p;
    void *trap[2];
} authscan_plugin = {
    { 1, OLD_MINOR, "old_abi_1_" STR(OLD_MINOR), "1.0", "built for ABI 1." STR(OLD_MINOR),
      NULL, syms, 1, NULL, 0, NULL, scan, NULL },
    { (void *)1, (void *)1 },
};
