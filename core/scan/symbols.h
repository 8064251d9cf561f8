/*
 * symbols.h - the symbol table and the action thresholds of one engine.
 *
 * Symbols are declared by plugins (name, default score, group,
 * description) and by the core itself; the rules files then override
 * score, group, description and one_shot per symbol:
 *
 *     [symbols.R_SPF_ALLOW]
 *     score = -0.2
 *
 * A rule for a symbol that no loaded plugin declares is an error with its
 * file and line (a typo, or a plugin missing from the plugins directory:
 * either way the weight the site meant is lost), unless the symbol
 * belongs to a plugin the config switches off, or the rule is a shipped
 * one (those cover every shipped plugin), or rules.allow_unknown_symbols
 * is set (then it is kept with a warning).
 *
 * Ownership: the table owns every name and string in it; it lives as long
 * as the engine.
 */
#ifndef AS_SYMBOLS_H
#define AS_SYMBOLS_H

#include <stddef.h>
#include "authscan/plugin.h"
#include "util/config.h"

struct as_symbol {
    const char *name;
    double score;
    const char *group;
    const char *description;
    unsigned flags;              /* AS_SYM_* */
    const char *plugin;          /* declaring plugin, "core", or NULL (rule only) */
    size_t id;                   /* dense index, for per-task bitmaps */
};

struct as_symtab;

struct as_symtab *as_symtab_new(void);
void as_symtab_free(struct as_symtab *st);
/* Declares a symbol.  A second declaration by another plugin is an error
 * (two plugins must not share a name); returns 0 or -1 with err. */
int as_symtab_declare(struct as_symtab *st, const struct as_symbol_def *def,
                      const char *plugin, char *err, size_t errlen);
const struct as_symbol *as_symtab_find(const struct as_symtab *st, const char *name);
size_t as_symtab_count(const struct as_symtab *st);
const struct as_symbol *as_symtab_at(const struct as_symtab *st, size_t i);

/* Applies "symbols.NAME.*" entries from cfg; rules for the symbols in
 * off[0..noff) (switched-off plugins') are skipped.  See above for the
 * rest; returns 0 or -1 with "file:line: message" in err. */
int as_symtab_apply_rules(struct as_symtab *st, const struct as_config *cfg,
                          char *const *off, size_t noff, char *err, size_t errlen);

/* Action thresholds ("actions.reject = 15"); a negative or unset
 * threshold disables score-based selection of that action. */
struct as_actions {
    double threshold[AS_ACTION__COUNT];   /* NAN when unset */
    const char *message[AS_ACTION__COUNT];/* default SMTP reply text, or NULL */
};
void as_actions_from_config(struct as_actions *a, const struct as_config *cfg);
/* Parses a threshold value: a score, or "none"/"off" (disabled, NAN).  A
 * negative score also disables it.  Returns 0 or -1 if not a threshold. */
int as_parse_threshold(const char *s, double *out);
/* The action chosen by the score alone. */
enum as_action as_actions_for_score(const struct as_actions *a, double score);
/* The highest configured threshold (rspamd's required_score). */
double as_actions_required_score(const struct as_actions *a);
/* as_action_parse() is part of the plugin ABI (authscan/plugin.h). */
/* The config key form: "add_header". */
const char *as_action_key(enum as_action a);

#endif
