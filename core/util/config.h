/*
 * config.h - the configuration language and typed access to it.
 *
 * One syntax serves the main config file (authscand.conf) and the rules
 * files (rules/NAME.conf).  docs/config-syntax.md is the user-facing
 * description of the syntax, docs/config.md the reference of the keys.
 *
 *     # comment (also after a value, when preceded by blank space)
 *     workers = 2
 *     [dns]                       # section: following keys get "dns." prefix
 *     servers = 127.0.0.1:5353, 127.0.0.2:53
 *     timeout = 1.5s
 *     [symbols.R_SPF_ALLOW]       # prefix "symbols.R_SPF_ALLOW."
 *     score = -0.2
 *     description = "SPF verification allows sending"
 *     [ ]                         # back to no prefix
 *     dmarc.enforce = yes         # dotted keys work anywhere
 *     include "local.d/site-*.conf"  # glob, relative to the including file
 *
 * Keys are [A-Za-z0-9_.-]+ (case-sensitive).  Values are either a bare word
 * sequence (trimmed; runs to end of line or an unquoted " #") or a
 * double-quoted string with \" \\ \n \t escapes.  A bare value may contain
 * commas: list-typed keys split it at commas and trim each item, so a
 * list item that must contain a comma is written quoted: a, "b,c", d.
 *
 * Semantics of repeated keys: within one file a repeated scalar key is an
 * error that names both lines; a key set again in a LATER file (or later by
 * as_config_set) overrides the earlier value, which is how sites override
 * shipped defaults without editing them.  List keys accumulate across
 * repeated lines in the same file; a later file replaces the whole list
 * unless the line is written "key += value" (append).  Precisely: lines of
 * one file that are not interrupted by an include form a run; a run with a
 * plain "=" line for a key replaces everything earlier runs said about it,
 * a run of only "+=" lines adds to it.  The parser cannot tell lists from
 * scalars, so duplicate scalars (and "+=" on a scalar) are reported by
 * as_config_check(), which knows the types.
 *
 * Limits: lines of at most 64 KiB, files of at most 16 MiB, no NUL bytes,
 * includes nested at most 16 deep and 1024 files per load; a file that
 * includes itself (directly or not) is an error.  An include pattern that
 * matches nothing is fine; a plain file name that does not exist is not.
 * After a failed load the config holds whatever was read before the
 * error: discard it.
 *
 * Validation is separate from parsing: the parser stores every entry with
 * its file and line; as_config_check() walks the entries against a schema
 * and reports the first unknown key or bad value as "file:line: message".
 *
 * Ownership: an as_config owns all its entries and strings.  Pointers
 * returned by getters stay valid until as_config_free().
 */
#ifndef AS_CONFIG_H
#define AS_CONFIG_H

#include <stddef.h>
#include "authscan/plugin.h"   /* enum as_opt_type, struct as_option_def */

struct as_config;

struct as_config_entry {
    const char *key;        /* full dotted key */
    const char *value;      /* quoted: the string, escapes applied; bare: the
                               text as written (a list item in quotes keeps
                               them until as_config_list splits the value) */
    const char *file;       /* origin: path, "<embedded:NAME>" or "command line" */
    int line;               /* 1-based; 0 for command line */
    int quoted;             /* value was a quoted string */
};

struct as_config *as_config_new(void);
void as_config_free(struct as_config *cfg);

/* Parse a file (or a string with a name used in messages).  Later loads
 * override earlier ones as described above.  On error returns -1 and
 * writes "file:line: message" into err. */
int as_config_load_file(struct as_config *cfg, const char *path, char *err, size_t errlen);
int as_config_load_string(struct as_config *cfg, const char *name, const char *text,
                          char *err, size_t errlen);
/* Includes in a string are relative to the directory part of name, or to
 * the current directory when it has none or starts with '<'. */
/* Loads every *.conf in dir in lexical (byte) order, skipping hidden files
 * and directories; a missing dir is not an error when optional is set. */
int as_config_load_dir(struct as_config *cfg, const char *dir, int optional,
                       char *err, size_t errlen);

/* Set a value from elsewhere (command-line flags).  Overrides the files.
 * For list keys, `append` adds to the list instead of replacing it. */
int as_config_set(struct as_config *cfg, const char *key, const char *value,
                  const char *origin, int append);

/* Entries in load order (overridden ones are not returned). */
size_t as_config_count(const struct as_config *cfg);
const struct as_config_entry *as_config_at(const struct as_config *cfg, size_t i);
/* The effective (last) entry for a scalar key, or NULL. */
const struct as_config_entry *as_config_find(const struct as_config *cfg, const char *key);

/* Schema used for validation and defaults. */
struct as_config_key {
    const char *key;            /* full key; a '*' segment matches one segment,
                                   e.g. "symbols.*.score" */
    enum as_opt_type type;
    const char *default_value;  /* NULL = unset */
    const char *help;
};

/* Validates entries whose key starts with `prefix` (may be "") against the
 * schema (keys in the schema are relative to prefix; "dns" and "dns." are
 * the same prefix).  Unknown keys and bad values are errors "file:line:
 * unknown key 'x'" / "file:line: bad value 'v' for 'x': expected a duration
 * like 1.5s"; also "duplicate key 'x' (first set at line N)" for a scalar
 * set twice in one file and "'+=' used with 'x', which is not a list".
 * Reports the first problem in load order.  Every entry that matches the
 * schema is marked claimed, even when an error is returned.  With an empty
 * prefix every key is under it, so the schema must describe all keys.
 * Schema defaults are checked too ("schema: bad default ..."), which
 * catches a mistyped default in the code.  Returns 0 or -1. */
int as_config_check(const struct as_config *cfg, const char *prefix,
                    const struct as_config_key *schema, size_t n,
                    char *err, size_t errlen);
/* Keys that no as_config_check() call claimed: call after all checks to
 * report the first one as "file:line: unknown key 'x'".  Returns 0 or -1. */
int as_config_check_unclaimed(const struct as_config *cfg, char *err, size_t errlen);

/* Typed getters on the effective (last) entry.  `def` is returned when
 * the key is unset.  Values are assumed validated; a value that does not
 * parse yields def. */
int as_config_bool(const struct as_config *cfg, const char *key, int def);
long long as_config_int(const struct as_config *cfg, const char *key, long long def);
double as_config_double(const struct as_config *cfg, const char *key, double def);
const char *as_config_str(const struct as_config *cfg, const char *key, const char *def);
double as_config_duration(const struct as_config *cfg, const char *key, double def);
unsigned long long as_config_size(const struct as_config *cfg, const char *key,
                                  unsigned long long def);
/* List items (all entries of the key merged per the rules above; bare
 * values split at commas outside quotes, items trimmed, quotes removed,
 * empty unquoted items dropped, `key =` with nothing clears the list).
 * Returns count; *items is owned by cfg (NULL-terminated array) and stays
 * valid until as_config_free(), even if more is loaded later. */
size_t as_config_list(const struct as_config *cfg, const char *key,
                      const char *const **items);

/* The entry of list key whose value holds item (the first such line in
 * load order), so that a message about one item names the line that
 * brought it.  Falls back to as_config_find(cfg, key) when no line holds
 * it exactly; NULL if the key is unset. */
const struct as_config_entry *as_config_find_item(const struct as_config *cfg, const char *key,
                                                  const char *item);

/* Formats "file:line: message" (or "command line: message") for an error
 * about entry e (NULL: no location) into err; returns -1 for convenience. */
int as_config_error(char *err, size_t errlen, const struct as_config_entry *e,
                    const char *fmt, ...) AS_PRINTF(4, 5);

/* Where e comes from, as messages name it: "file:line", or the origin
 * alone for line 0 ("command line").  Writes into buf, returns it. */
const char *as_config_where(const struct as_config_entry *e, char *buf, size_t len);

/* Value parsers shared with the plugin option code: return 0 or -1. */
int as_parse_bool(const char *s, int *out);
int as_parse_int(const char *s, long long *out);
int as_parse_double(const char *s, double *out);
/* bool: yes/no/true/false/on/off/1/0, any case.  int: decimal with an
 * optional sign, overflow is an error.  double: decimal with an optional
 * exponent, finite, no hex/inf/nan.  No blanks allowed around any of them;
 * numbers are read in the C locale whatever the process locale is. */
int as_parse_duration(const char *s, double *seconds);       /* "1.5s" "200ms" "2m" "1h" "1d" "3" (=s); never negative */
int as_parse_size(const char *s, unsigned long long *bytes);  /* "512" "64k" "50M" "1G" "64kB" (1024-based) */
/* Checks a value against a type: 0 if fine, else -1 with a static
 * description of what was expected in *expected. */
int as_config_value_ok(enum as_opt_type type, const char *value, const char **expected);

#endif
