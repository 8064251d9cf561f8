/*
 * fuzz_config.c - libFuzzer target for the configuration file parser
 * (core/util/config.c): the input as a config file, then every entry's
 * value read as each option type and as a list.
 *
 * include would read any file or glob the input names, so inputs that
 * contain "include" (any case) are skipped; tests/unit/test_config.c
 * covers it.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "util/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char *text = malloc(len + 1);
    if (!text) return 0;
    memcpy(text, buf, len);
    text[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (strncasecmp(text + i, "include", 7) == 0) {
            free(text);
            return 0;
        }
    struct as_config *cfg = as_config_new();
    char err[512] = "";
    if (as_config_load_string(cfg, "fuzz.conf", text, err, sizeof err) < 0) {
        if (!err[0]) abort();   /* a refusal always says why */
    } else {
        for (size_t i = 0; i < as_config_count(cfg); i++) {
            const struct as_config_entry *e = as_config_at(cfg, i);
            if (!e->key || !e->value) abort();
            if (as_config_find(cfg, e->key) == NULL) abort();
            (void)as_config_bool(cfg, e->key, 0);
            (void)as_config_int(cfg, e->key, 0);
            (void)as_config_double(cfg, e->key, 0);
            (void)as_config_str(cfg, e->key, "");
            (void)as_config_duration(cfg, e->key, 0);
            (void)as_config_size(cfg, e->key, 0);
            const char *const *items;
            size_t n = as_config_list(cfg, e->key, &items);
            for (size_t k = 0; k < n; k++) (void)strlen(items[k]);
            if (items[n]) abort();
            (void)as_config_find_item(cfg, e->key, e->value);
            long long ll;
            double d;
            unsigned long long ull;
            int b;
            (void)as_parse_bool(e->value, &b);
            (void)as_parse_int(e->value, &ll);
            (void)as_parse_double(e->value, &d);
            (void)as_parse_duration(e->value, &d);
            (void)as_parse_size(e->value, &ull);
            char where[256];
            (void)as_config_where(e, where, sizeof where);
        }
        (void)as_config_check_unclaimed(cfg, err, sizeof err);
    }
    as_config_free(cfg);
    free(text);
    return 0;
}
