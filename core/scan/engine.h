/*
 * engine.h - everything a scanning process needs, built from one config:
 * symbol table and thresholds, loaded and initialized plugins in
 * dependency order, the per-worker services (service.h), limits and
 * counters (stats.h).  Opaque: read it through the accessors below.
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
 * the services' state; it must outlive every task created from it (tasks
 * still in their finish stage are ended by as_engine_free()).
 */
#ifndef AS_ENGINE_H
#define AS_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include "authscan/plugin.h"
#include "util/config.h"
#include "scan/symbols.h"

struct event_base;
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

/* The Authentication-Results step of every scan (auth_results.*, with
 * the deprecated dmarc.* aliases resolved; see docs/config.md). */
struct as_authres_conf {
    const char *authserv_id;      /* configured, or NULL: MTA-Name, else hostname */
    int add;                      /* add our field */
    int remove_forged;            /* remove fields that carry our authserv-id */
    char hostname[256];
};

struct as_plugin_ctx {
    struct as_engine *engine;
    const struct as_plugin *def;
    unsigned dns_reserve;         /* as_plugin_dns_reserve() */
    char error[512];
    int error_located;            /* error starts with "file:line: " */
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
    /* Stages added in ABI 1.2, NULL for older plugins (whose struct
     * as_plugin ends before these fields: never read them there). */
    void (*postfilter)(struct as_task *t, void *state);
    void (*finish)(struct as_task *t, void *state);
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

/* The engine itself is opaque: the rest of core reads it through the
 * accessors below, and per-worker services hang off it (service.h). */
struct as_engine;
struct as_service;
struct as_stats;

/* Reads the configuration: the rules (shipped, or rules.dir), the main
 * config file (path may be NULL: then the default path is used if it
 * exists, else built-in defaults only), then rules.local_dir.  The caller
 * adds command-line flags with as_config_set() before validation.
 * Returns NULL with "file:line: message" in err on a syntax error. */
struct as_config *as_engine_load_config(const char *path, char *err, size_t errlen);

/* Sets every core key (the schema in engine.c) that cfg leaves unset to
 * its default (origin "default"), so that code reading a key sees the
 * documented default, `listen` included.  The master applies them after
 * the command line and before as_engine_check(). */
void as_engine_apply_defaults(struct as_config *cfg);

/* Validates cfg completely, in a child process: every key against its
 * schema and range, then the whole engine a worker would build (plugins
 * loaded and initialized, services started, no network traffic), torn
 * down again, so that whatever a plugin's init() or a service's start()
 * refuses fails here and not in the workers.  A plugin file that
 * crashes, exits or hangs while loaded or in init() fails the check
 * (naming the file) instead of killing the caller, which never maps
 * plugin code.  Refuses a plugin set without spf, dkim or dmarc (unless
 * plugins.allow_no_auth) and rules for undeclared symbols (see
 * symbols.h).  Used by the master (start, reload), by --check-config and
 * by the CLI.  cfg is not changed (plugin defaults are applied in the
 * child).  Returns 0 or -1 with "file:line: message". */
int as_engine_check(struct as_config *cfg, char *err, size_t errlen);

/* Builds an engine on base: plugins loaded, services started (service.h),
 * then each plugin's init().  Takes ownership of cfg even on failure. */
struct as_engine *as_engine_new(struct event_base *base, struct as_config *cfg,
                                char *err, size_t errlen);
/* Frees e: cancels tasks still in their finish stage (task.h), runs the
 * plugins' fini(), stops the services.  Every other task must be gone. */
void as_engine_free(struct as_engine *e);

/* For unit tests: an engine with no plugins, no services and default
 * thresholds, around the symbol table st (taken over).  A test may attach
 * a service's state, which stays the test's to free. */
struct as_engine *as_engine_new_bare(struct event_base *base, struct as_symtab *st);
void as_engine_attach_service(struct as_engine *e, const struct as_service *s, void *state);
/* Also for unit tests: plugins pl[0..n), already in dependency order and
 * the test's (never initialized, finalized or unloaded here; their ctx
 * points at e), and writable limits. */
void as_engine_attach_plugins(struct as_engine *e, struct as_engine_plugin *pl, size_t n);
struct as_limits *as_engine_limits_mut(struct as_engine *e);

/* Read access for the rest of core. */
struct event_base *as_engine_base(const struct as_engine *e);
const struct as_config *as_engine_config(const struct as_engine *e);
const struct as_symtab *as_engine_symtab(const struct as_engine *e);
const struct as_actions *as_engine_actions(const struct as_engine *e);
const struct as_limits *as_engine_limits(const struct as_engine *e);
const struct as_authres_conf *as_engine_authres(const struct as_engine *e);
size_t as_engine_plugin_count(const struct as_engine *e);
const struct as_engine_plugin *as_engine_plugin_at(const struct as_engine *e, size_t i);
/* The Settings-ID profile named id, or NULL. */
const struct as_settings *as_engine_settings(const struct as_engine *e, const char *id);
struct as_stats *as_engine_stats(const struct as_engine *e);
void *as_engine_service_state(const struct as_engine *e, const struct as_service *s);
/* A fresh scan id ("<6 hex of the engine><6 hex sequence>") into buf. */
void as_engine_next_task_id(struct as_engine *e, char *buf, size_t len);
/* Head of the engine's list of tasks in their finish stage; task.c owns
 * the list, the engine only holds it so that as_engine_free() can end them. */
struct as_task **as_engine_finishing(struct as_engine *e);
/* as_plugin_shared(): the engine's object called name, made by make(arg)
 * on first use; drop(obj) runs at as_engine_free(), after every plugin's
 * fini() and before any is unloaded.  NULL when make() returned NULL
 * (tried again by the next caller). */
void *as_engine_shared(struct as_engine *e, const char *name, void *(*make)(void *arg),
                       void (*drop)(void *obj), void *arg);

/* Config helpers shared by the programs. */
const char *as_engine_default_config_path(void);
/* The plugins directory in effect for cfg (config, else next to the
 * binary, else the install path). Returns a static or cfg-owned string. */
const char *as_engine_plugins_dir(const struct as_config *cfg);

#endif
