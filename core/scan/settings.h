/*
 * settings.h - named settings profiles, selected per request by the
 * Settings-ID request header (rspamd's settings module, reduced to what an
 * authentication scanner needs):
 *
 *     [settings.outbound]
 *     plugins_disabled = spf, dmarc      # these plugins do not run
 *     symbols_disabled = R_DKIM_NA       # these symbols are dropped
 *     actions.reject = 30                # thresholds for this profile
 *     actions.greylist = none
 *     auth_results = no                  # no Authentication-Results step
 *
 * A plugin whose dependency is disabled still runs and sees no typed
 * result from it (DMARC with SPF disabled evaluates DKIM alone).  An
 * unknown Settings-ID is logged and the defaults apply, as in rspamd.
 * A profile may name the plugins (and their symbols) that plugins.enable
 * or plugins.disable switch off for every request: they are already off.
 */
#ifndef AS_SETTINGS_H
#define AS_SETTINGS_H

#include <stddef.h>
#include "util/config.h"
#include "scan/symbols.h"

struct as_engine_plugin;
struct as_plugins_off;

struct as_settings {
    const char *id;
    unsigned char *plugin_off;        /* per engine plugin index */
    unsigned char *symbol_off;        /* per symbol id */
    struct as_actions actions;
    int authres_off;                  /* auth_results = no: the scan neither
                                         removes nor adds A-R fields */
};

/* All profiles of one engine. */
struct as_settings_table;

/* Builds the profiles from "settings.*" keys, for plugins pl[0..np) and
 * the symbols of st; a profile starts from the thresholds in defaults.
 * Unknown plugin or symbol names (neither loaded nor switched off by the
 * config, off: engine.h) are errors with file and line.
 * Returns 0 with *out set (NULL when there are no profiles) or -1. */
int as_settings_build(struct as_settings_table **out, const struct as_config *cfg,
                      const struct as_symtab *st, const struct as_engine_plugin *pl,
                      size_t np, const struct as_plugins_off *off,
                      const struct as_actions *defaults, char *err, size_t errlen);
void as_settings_free(struct as_settings_table *tab);
const struct as_settings *as_settings_find(const struct as_settings_table *tab,
                                           const char *id);

/* Schema entries for the settings keys. */
extern const struct as_config_key as_settings_config_keys[];
extern const size_t as_settings_config_nkeys;

#endif
