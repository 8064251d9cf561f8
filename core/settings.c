/*
 * settings.c - see settings.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine.h"
#include "plugins.h"
#include "settings.h"
#include "util.h"

const struct as_config_key as_settings_config_keys[] = {
    { "settings.*.plugins_disabled", AS_OPT_LIST, NULL, "plugins that do not run" },
    { "settings.*.symbols_disabled", AS_OPT_LIST, NULL, "symbols that are dropped" },
    { "settings.*.actions.*", AS_OPT_STRING, NULL, "action threshold for this profile" },
};
const size_t as_settings_config_nkeys = AS_ARRAY_LEN(as_settings_config_keys);

static struct as_settings *profile_for(struct as_engine *e, const char *id, size_t idlen)
{
    for (size_t i = 0; i < e->nsettings; i++)
        if (strlen(e->settings[i].id) == idlen && memcmp(e->settings[i].id, id, idlen) == 0)
            return &e->settings[i];
    e->settings = xrealloc(e->settings, (e->nsettings + 1) * sizeof *e->settings);
    struct as_settings *s = &e->settings[e->nsettings++];
    memset(s, 0, sizeof *s);
    s->id = xstrndup(id, idlen);
    s->plugin_off = xcalloc(e->nplugins + 1, 1);
    s->symbol_off = xcalloc(as_symtab_count(e->symtab) + 1, 1);
    s->actions = e->actions;
    return s;
}

int as_settings_build(struct as_engine *e, char *err, size_t errlen)
{
    static const char pfx[] = "settings.";
    for (size_t i = 0; i < as_config_count(e->cfg); i++) {
        const struct as_config_entry *ent = as_config_at(e->cfg, i);
        if (strncmp(ent->key, pfx, sizeof pfx - 1) != 0) continue;
        const char *id = ent->key + sizeof pfx - 1;
        const char *dot = strchr(id, '.');
        if (!dot) continue;   /* the schema check reports it */
        struct as_settings *s = profile_for(e, id, (size_t)(dot - id));
        const char *field = dot + 1;
        if (strcmp(field, "plugins_disabled") == 0 || strcmp(field, "symbols_disabled") == 0) {
            const char *const *items;
            size_t n = as_config_list(e->cfg, ent->key, &items);
            int plugins = field[0] == 'p';
            for (size_t k = 0; k < n; k++) {
                if (plugins) {
                    size_t p;
                    for (p = 0; p < e->nplugins; p++)
                        if (strcmp(e->plugins[p].def->name, items[k]) == 0) break;
                    if (p == e->nplugins &&
                        as_plugins_off_has(e->off.names, e->off.nnames, items[k]))
                        continue;   /* already off for every request */
                    if (p == e->nplugins)
                        return as_config_error(err, errlen, ent, "settings %s: no plugin named "
                                               "'%s' is loaded", s->id, items[k]);
                    s->plugin_off[p] = 1;
                } else {
                    const struct as_symbol *sym = as_symtab_find(e->symtab, items[k]);
                    if (!sym && as_plugins_off_has(e->off.symbols, e->off.nsymbols, items[k]))
                        continue;
                    if (!sym)
                        return as_config_error(err, errlen, ent, "settings %s: unknown symbol "
                                               "'%s'", s->id, items[k]);
                    s->symbol_off[sym->id] = 1;
                }
            }
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

void as_settings_free(struct as_engine *e)
{
    for (size_t i = 0; i < e->nsettings; i++) {
        free((char *)e->settings[i].id);
        free(e->settings[i].plugin_off);
        free(e->settings[i].symbol_off);
    }
    free(e->settings);
    e->settings = NULL;
    e->nsettings = 0;
}

const struct as_settings *as_settings_find(const struct as_engine *e, const char *id)
{
    for (size_t i = 0; i < e->nsettings; i++)
        if (strcmp(e->settings[i].id, id) == 0) return &e->settings[i];
    return NULL;
}
