/*
 * symbols.c - see symbols.h.
 *
 * The table is an open-addressing hash (FNV-1a, linear probing) over a
 * dense array: scans look symbols up by name a few times per message,
 * and the dense index gives tasks a cheap "already added" check.
 */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "scan/symbols.h"
#include "util/util.h"

struct as_symtab {
    struct as_symbol **syms;     /* dense, in declaration order */
    size_t n, cap;
    size_t *slots;               /* hash slots: index+1, 0 = empty */
    size_t nslots;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct as_symtab *as_symtab_new(void)
{
    struct as_symtab *st = xcalloc(1, sizeof *st);
    st->nslots = 256;
    st->slots = xcalloc(st->nslots, sizeof *st->slots);
    return st;
}

void as_symtab_free(struct as_symtab *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) {
        struct as_symbol *s = st->syms[i];
        free((char *)s->name);
        free((char *)s->group);
        free((char *)s->description);
        free((char *)s->plugin);
        free(s);
    }
    free(st->syms);
    free(st->slots);
    free(st);
}

static void rehash(struct as_symtab *st)
{
    free(st->slots);
    st->nslots *= 2;
    st->slots = xcalloc(st->nslots, sizeof *st->slots);
    for (size_t i = 0; i < st->n; i++) {
        size_t h = fnv1a(st->syms[i]->name) & (st->nslots - 1);
        while (st->slots[h]) h = (h + 1) & (st->nslots - 1);
        st->slots[h] = i + 1;
    }
}

const struct as_symbol *as_symtab_find(const struct as_symtab *st, const char *name)
{
    size_t h = fnv1a(name) & (st->nslots - 1);
    while (st->slots[h]) {
        struct as_symbol *s = st->syms[st->slots[h] - 1];
        if (strcmp(s->name, name) == 0) return s;
        h = (h + 1) & (st->nslots - 1);
    }
    return NULL;
}

static struct as_symbol *add(struct as_symtab *st, const char *name)
{
    if ((st->n + 1) * 2 > st->nslots) rehash(st);
    if (st->n == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 64;
        st->syms = xrealloc(st->syms, st->cap * sizeof *st->syms);
    }
    struct as_symbol *s = xcalloc(1, sizeof *s);
    s->name = xstrdup(name);
    s->id = st->n;
    st->syms[st->n++] = s;
    size_t h = fnv1a(name) & (st->nslots - 1);
    while (st->slots[h]) h = (h + 1) & (st->nslots - 1);
    st->slots[h] = st->n;
    return s;
}

static int valid_name(const char *n)
{
    if (!*n) return 0;
    for (; *n; n++)
        if (!((*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') || *n == '_')) return 0;
    return 1;
}

static void set_str(const char **dst, const char *v)
{
    free((char *)*dst);
    *dst = v ? xstrdup(v) : NULL;
}

int as_symtab_declare(struct as_symtab *st, const struct as_symbol_def *def,
                      const char *plugin, char *err, size_t errlen)
{
    if (!def->name || !valid_name(def->name)) {
        snprintf(err, errlen, "plugin %s: invalid symbol name '%s' (want [A-Z0-9_]+)", plugin,
                 def->name ? def->name : "(null)");
        return -1;
    }
    struct as_symbol *s = (struct as_symbol *)as_symtab_find(st, def->name);
    if (s && s->plugin) {
        snprintf(err, errlen, "symbol %s declared by both %s and %s", def->name, s->plugin, plugin);
        return -1;
    }
    if (!s) s = add(st, def->name);
    s->score = def->score;
    s->flags = def->flags;
    set_str(&s->group, def->group ? def->group : plugin);
    set_str(&s->description, def->description);
    set_str(&s->plugin, plugin);
    return 0;
}

size_t as_symtab_count(const struct as_symtab *st) { return st->n; }
const struct as_symbol *as_symtab_at(const struct as_symtab *st, size_t i)
{
    return i < st->n ? st->syms[i] : NULL;
}

static int in_names(char *const *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], name) == 0) return 1;
    return 0;
}

int as_symtab_apply_rules(struct as_symtab *st, const struct as_config *cfg,
                          char *const *off, size_t noff, char *err, size_t errlen)
{
    static const char pfx[] = "symbols.", shipped[] = "<shipped>/";
    int allow = as_config_bool(cfg, "rules.allow_unknown_symbols", 0);
    for (size_t i = 0; i < as_config_count(cfg); i++) {
        const struct as_config_entry *e = as_config_at(cfg, i);
        if (strncmp(e->key, pfx, sizeof pfx - 1) != 0) continue;
        const char *name = e->key + sizeof pfx - 1;
        const char *dot = strrchr(name, '.');
        if (!dot || dot == name) {
            return as_config_error(err, errlen, e, "expected symbols.NAME.field, got '%s'",
                     e->key);
        }
        char sname[128];
        size_t nlen = (size_t)(dot - name);
        if (nlen >= sizeof sname)   /* never truncate: it would name another symbol */
            return as_config_error(err, errlen, e, "symbol name in '%s' is longer than %zu "
                                   "characters", e->key, sizeof sname - 1);
        memcpy(sname, name, nlen);
        sname[nlen] = '\0';
        const char *field = dot + 1;
        if (!valid_name(sname)) {
            return as_config_error(err, errlen, e, "invalid symbol name '%s' (want [A-Z0-9_]+)", sname);
        }
        struct as_symbol *s = (struct as_symbol *)as_symtab_find(st, sname);
        if (!s) {
            /* A switched-off plugin's symbol never fires: its rules are moot.
             * The shipped rules cover every shipped plugin, present or not;
             * a site that runs without one must not have to edit them. */
            if (in_names(off, noff, sname) || strncmp(e->file, shipped, sizeof shipped - 1) == 0)
                continue;
            /* Scoring a symbol nothing emits is a typo or a missing plugin,
             * and the verdict silently loses the weight the site meant. */
            if (!allow)
                return as_config_error(err, errlen, e, "rule for symbol %s, which no loaded "
                                       "plugin declares (a typo, or its plugin is missing "
                                       "from the plugins directory; rules.allow_unknown_"
                                       "symbols = yes keeps such rules)", sname);
            s = add(st, sname);
            set_str(&s->group, "unknown");
            as_log(AS_LOG_WARN, "%s:%d: rule for symbol %s that no loaded plugin declares",
                   e->file, e->line, sname);
        }
        if (strcmp(field, "score") == 0) {
            double d;
            if (as_parse_double(e->value, &d) < 0) {
                return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected a number", e->value, e->key);
            }
            s->score = d;
        } else if (strcmp(field, "group") == 0) {
            set_str(&s->group, e->value);
        } else if (strcmp(field, "description") == 0) {
            set_str(&s->description, e->value);
        } else if (strcmp(field, "one_shot") == 0) {
            int b;
            if (as_parse_bool(e->value, &b) < 0) {
                return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected yes or no", e->value, e->key);
            }
            s->flags = b ? (s->flags | AS_SYM_ONE_SHOT) : (s->flags & ~AS_SYM_ONE_SHOT);
        } else {
            return as_config_error(err, errlen, e, "unknown key '%s' (symbols take score, group, "
                     "description, one_shot)", e->key);
        }
    }
    return 0;
}

/* ---- actions ------------------------------------------------------------ */

static const char *const action_names[AS_ACTION__COUNT] = {
    "no action", "greylist", "add header", "rewrite subject", "quarantine", "soft reject",
    "reject",
};
static const char *const action_keys[AS_ACTION__COUNT] = {
    "no_action", "greylist", "add_header", "rewrite_subject", "quarantine", "soft_reject",
    "reject",
};

const char *as_action_name(enum as_action a)
{
    return (unsigned)a < AS_ACTION__COUNT ? action_names[a] : "unknown";
}

const char *as_action_key(enum as_action a)
{
    return (unsigned)a < AS_ACTION__COUNT ? action_keys[a] : "unknown";
}

int as_action_parse(const char *s)
{
    for (int i = 0; i < AS_ACTION__COUNT; i++)
        if (as_strcaseeq(s, action_names[i]) || as_strcaseeq(s, action_keys[i])) return i;
    if (as_strcaseeq(s, "accept")) return AS_ACTION_NO_ACTION;
    return -1;
}

void as_actions_from_config(struct as_actions *a, const struct as_config *cfg)
{
    /* rspamd's defaults: conf/actions.conf */
    static const double defaults[AS_ACTION__COUNT] = {
        [AS_ACTION_NO_ACTION] = NAN, [AS_ACTION_GREYLIST] = 4, [AS_ACTION_ADD_HEADER] = 6,
        [AS_ACTION_REWRITE_SUBJECT] = NAN, [AS_ACTION_QUARANTINE] = NAN,
        [AS_ACTION_SOFT_REJECT] = NAN, [AS_ACTION_REJECT] = 15,
    };
    static const char *const messages[AS_ACTION__COUNT] = {
        [AS_ACTION_GREYLIST] = "4.7.1 Try again later",
        [AS_ACTION_SOFT_REJECT] = "4.7.1 Try again later",
        [AS_ACTION_REJECT] = "5.7.1 Spam message rejected",
    };
    for (int i = 0; i < AS_ACTION__COUNT; i++) {
        char key[64];
        snprintf(key, sizeof key, "actions.%s", action_keys[i]);
        const char *v = as_config_str(cfg, key, NULL);
        double d = defaults[i];
        if (v && as_parse_threshold(v, &d) < 0) d = defaults[i];   /* checked at load */
        a->threshold[i] = d;
        snprintf(key, sizeof key, "messages.%s", action_keys[i]);
        a->message[i] = as_config_str(cfg, key, messages[i]);
    }
}

int as_parse_threshold(const char *s, double *out)
{
    double d;
    if (as_strcaseeq(s, "none") || as_strcaseeq(s, "off")) {
        *out = NAN;
        return 0;
    }
    if (as_parse_double(s, &d) < 0) return -1;
    *out = d < 0 ? NAN : d;
    return 0;
}

enum as_action as_actions_for_score(const struct as_actions *a, double score)
{
    /* Most severe first: the first threshold the score reaches wins, which
     * is rspamd's rule even when thresholds are not monotonic. */
    for (int i = AS_ACTION__COUNT - 1; i > AS_ACTION_NO_ACTION; i--)
        if (!isnan(a->threshold[i]) && score >= a->threshold[i]) return (enum as_action)i;
    return AS_ACTION_NO_ACTION;
}

double as_actions_required_score(const struct as_actions *a)
{
    if (!isnan(a->threshold[AS_ACTION_REJECT])) return a->threshold[AS_ACTION_REJECT];
    double m = 0;
    for (int i = 1; i < AS_ACTION__COUNT; i++)
        if (!isnan(a->threshold[i]) && a->threshold[i] > m) m = a->threshold[i];
    return m;
}
