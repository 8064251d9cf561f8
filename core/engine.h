/*
 * engine.h - everything a scanning process needs, built from one config:
 * symbol table and thresholds, loaded and initialized plugins in
 * dependency order, the resolver, limits and counters.
 *
 * A worker process builds one engine after fork; the CLI builds one
 * in-process.  Reload never mutates an engine: the master starts new
 * workers that build new engines, and the old workers drain and exit.
 *
 * Configuration is assembled in this order, later overriding earlier
 * (see docs/config.md):
 *   1. built-in defaults (schemas) and the shipped rules compiled into the
 *      binary (or the files of rules.dir when it is set);
 *   2. the main config file;
 *   3. *.conf files in rules.local_dir (site overrides), in lexical order;
 *   4. command-line flags.
 *
 * Ownership: the engine owns the config given to it, the plugins' state,
 * the resolver; it must outlive every task created from it.
 */
#ifndef AS_ENGINE_H
#define AS_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include "authscan/plugin.h"
#include "config.h"
#include "symbols.h"

struct event_base;
struct as_resolver;
struct as_settings;

struct as_limits {
    unsigned long long max_message_size;
    size_t max_headers;
    size_t max_header_size;
    double scan_timeout;
    double header_timeout;
    double read_timeout;
    double idle_timeout;
    size_t max_connections;
    size_t max_connections_per_ip;
};

struct as_plugin_ctx {
    struct as_engine *engine;
    const struct as_plugin *def;
    unsigned dns_reserve;         /* as_plugin_dns_reserve() */
    char error[512];
};

struct as_engine_plugin {
    const struct as_plugin *def;
    void *dl;                     /* dlopen handle */
    int fd;                       /* the file dl maps, open while loaded */
    char *path;
    void *state;                  /* from init() */
    int initialized;
    size_t *deps;                 /* indexes into engine->plugins */
    size_t ndeps;
    struct as_plugin_ctx ctx;
};

/* Plugins in the directory that plugins.enable / plugins.disable switch
 * off, and the symbols they declare: rules and Settings-ID profiles may
 * name them (they are ignored) without being errors. */
struct as_plugins_off {
    char **names;
    size_t nnames;
    char **symbols;
    size_t nsymbols;
};

struct as_engine_stats {
    uint64_t scanned;
    uint64_t actions[AS_ACTION__COUNT];
    uint64_t timeouts;
    uint64_t errors;              /* requests answered with an error */
    uint64_t poison;              /* answered unscanned: poison.h */
};

struct as_engine {
    struct event_base *base;
    struct as_config *cfg;
    struct as_symtab *symtab;
    struct as_actions actions;
    struct as_limits limits;
    struct as_engine_plugin *plugins;   /* in dependency order */
    size_t nplugins;
    struct as_plugins_off off;          /* switched off by the config */
    struct as_resolver *resolver;
    struct as_settings *settings;       /* Settings-ID profiles */
    size_t nsettings;
    const struct as_symbol *sym_timeout; /* AUTHSCAN_TIMEOUT */
    char id_prefix[8];
    uint64_t id_seq;
    struct as_engine_stats stats;
};

/* Reads the configuration: the rules (shipped, or rules.dir), the main
 * config file (path may be NULL: then the default path is used if it
 * exists, else built-in defaults only), then rules.local_dir.  The caller
 * adds command-line flags with as_config_set() before validation.
 * Returns NULL with "file:line: message" in err on a syntax error. */
struct as_config *as_engine_load_config(const char *path, char *err, size_t errlen);

/* Validates cfg completely, loading the plugins' shared objects to learn
 * their options and symbols, in a child process: a plugin file that
 * crashes, exits or hangs while loaded fails the check (naming the file)
 * instead of killing the caller.  Refuses a plugin set without spf, dkim
 * or dmarc (unless plugins.allow_no_auth) and rules for undeclared
 * symbols (see symbols.h).  Used by the master (start, reload), by
 * --check-config and by the CLI.  cfg is not changed (plugin defaults are
 * applied in the child).  Returns 0 or -1 with "file:line: message". */
int as_engine_check(struct as_config *cfg, char *err, size_t errlen);

/* Builds an engine on base.  Takes ownership of cfg even on failure. */
struct as_engine *as_engine_new(struct event_base *base, struct as_config *cfg,
                                char *err, size_t errlen);
void as_engine_free(struct as_engine *e);

/* Config helpers shared by the programs. */
const char *as_engine_default_config_path(void);
/* The plugins directory in effect for cfg (config, else next to the
 * binary, else the install path). Returns a static or cfg-owned string. */
const char *as_engine_plugins_dir(const struct as_config *cfg);

#endif
