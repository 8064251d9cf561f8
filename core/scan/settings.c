/*
 * settings.c - see settings.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "scan/engine.h"
#include "scan/plugins.h"
#include "scan/settings.h"
#include "util/util.h"

const struct as_config_key as_settings_config_keys[] = {
    { "settings.*.plugins_disabled", AS_OPT_LIST, NULL, "plugins that do not run" },
    { "settings.*.symbols_disabled", AS_OPT_LIST, NULL, "symbols that are dropped" },
    { "settings.*.actions.*", AS_OPT_STRING, NULL, "action threshold for this profile" },
    { "settings.*.auth_results", AS_OPT_BOOL, NULL,
      "no: neither remove nor add Authentication-Results fields" },
};
const size_t as_settings_config_nkeys = AS_ARRAY_LEN(as_settings_config_keys);

struct as_settings_table {
    struct as_settings *v;
    size_t n;
    size_t nplugins, nsymbols;
    struct as_actions defaults;
};

static struct as_settings *profile_for(struct as_settings_table *tab, const char *id,
                                       size_t idlen)
{
    for (size_t i = 0; i < tab->n; i++)
        if (strlen(tab->v[i].id) == idlen && memcmp(tab->v[i].id, id, idlen) == 0)
            return &tab->v[i];
    tab->v = xrealloc(tab->v, (tab->n + 1) * sizeof *tab->v);
    struct as_settings *s = &tab->v[tab->n++];
    memset(s, 0, sizeof *s);
    s->id = xstrndup(id, idlen);
    s->plugin_off = xcalloc(tab->nplugins + 1, 1);
    s->symbol_off = xcalloc(tab->nsymbols + 1, 1);
    s->actions = tab->defaults;
    return s;
}

static int build(struct as_settings_table *tab, const struct as_config *cfg,
                 const struct as_symtab *st, const struct as_engine_plugin *pl, size_t np,
                 const struct as_plugins_off *off, char *err, size_t errlen)
{
    static const char pfx[] = "settings.";
    for (size_t i = 0; i < as_config_count(cfg); i++) {
        const struct as_config_entry *ent = as_config_at(cfg, i);
        if (strncmp(ent->key, pfx, sizeof pfx - 1) != 0) continue;
        const char *id = ent->key + sizeof pfx - 1;
        const char *dot = strchr(id, '.');
        if (!dot) continue;   /* the schema check reports it */
        struct as_settings *s = profile_for(tab, id, (size_t)(dot - id));
        const char *field = dot + 1;
        if (strcmp(field, "plugins_disabled") == 0 || strcmp(field, "symbols_disabled") == 0) {
            const char *const *items;
            size_t n = as_config_list(cfg, ent->key, &items);
            int plugins = field[0] == 'p';
            for (size_t k = 0; k < n; k++) {
                if (plugins) {
                    size_t p;
                    for (p = 0; p < np; p++)
                        if (strcmp(pl[p].def->name, items[k]) == 0) break;
                    if (p == np && off && as_plugins_off_has(off->names, off->nnames, items[k]))
                        continue;   /* already off for every request */
                    if (p == np)
                        return as_config_error(err, errlen, ent, "settings %s: no plugin named "
                                               "'%s' is loaded", s->id, items[k]);
                    s->plugin_off[p] = 1;
                } else {
                    const struct as_symbol *sym = as_symtab_find(st, items[k]);
                    if (!sym && off && as_plugins_off_has(off->symbols, off->nsymbols, items[k]))
                        continue;
                    if (!sym)
                        return as_config_error(err, errlen, ent, "settings %s: unknown symbol "
                                               "'%s'", s->id, items[k]);
                    s->symbol_off[sym->id] = 1;
                }
            }
        } else if (strcmp(field, "auth_results") == 0) {
            int on;
            if (as_parse_bool(ent->value, &on) < 0)
                return as_config_error(err, errlen, ent, "bad value '%s' for '%s': expected "
                                       "yes or no", ent->value, ent->key);
            s->authres_off = !on;
        } else if (strncmp(field, "actions.", 8) == 0) {
            int a = as_action_parse(field + 8);
            double d;
            if (a <= 0)
                return as_config_error(err, errlen, ent, "unknown action '%s'", field + 8);
            if (as_parse_threshold(ent->value, &d) < 0)
                return as_config_error(err, errlen, ent, "bad value '%s' for '%s': expected a "
                                       "score or none", ent->value, ent->key);
            s->actions.threshold[a] = d;
        }
    }
    return 0;
}

int as_settings_build(struct as_settings_table **out, const struct as_config *cfg,
                      const struct as_symtab *st, const struct as_engine_plugin *pl,
                      size_t np, const struct as_plugins_off *off,
                      const struct as_actions *defaults, char *err, size_t errlen)
{
    struct as_settings_table *tab = xcalloc(1, sizeof *tab);
    tab->nplugins = np;
    tab->nsymbols = as_symtab_count(st);
    tab->defaults = *defaults;
    *out = NULL;
    if (build(tab, cfg, st, pl, np, off, err, errlen) < 0) {
        as_settings_free(tab);
        return -1;
    }
    if (tab->n == 0) {
        as_settings_free(tab);
        return 0;
    }
    *out = tab;
    return 0;
}

void as_settings_free(struct as_settings_table *tab)
{
    if (!tab) return;
    for (size_t i = 0; i < tab->n; i++) {
        free((char *)tab->v[i].id);
        free(tab->v[i].plugin_off);
        free(tab->v[i].symbol_off);
    }
    free(tab->v);
    free(tab);
}

const struct as_settings *as_settings_find(const struct as_settings_table *tab, const char *id)
{
    if (!tab) return NULL;
    for (size_t i = 0; i < tab->n; i++)
        if (strcmp(tab->v[i].id, id) == 0) return &tab->v[i];
    return NULL;
}
