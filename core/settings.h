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
#include "config.h"
#include "symbols.h"

struct as_engine;

struct as_settings {
    const char *id;
    unsigned char *plugin_off;        /* per engine plugin index */
    unsigned char *symbol_off;        /* per symbol id */
    struct as_actions actions;
};

/* Builds the profiles from "settings.*" keys for an engine whose plugins
 * and symbols are loaded.  Unknown plugin or symbol names (neither loaded
 * nor in e->off) are errors with file and line.  Returns 0 or -1. */
int as_settings_build(struct as_engine *e, char *err, size_t errlen);
void as_settings_free(struct as_engine *e);
const struct as_settings *as_settings_find(const struct as_engine *e, const char *id);

/* Schema entries for the settings keys. */
extern const struct as_config_key as_settings_config_keys[];
extern const size_t as_settings_config_nkeys;

#endif
