/*
 * engine.c - see engine.h.
 */
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "scan/engine.h"
#include "scan/lua_task.h"
#include "util/log.h"
#include "scan/plugins.h"
#include "services/service.h"
#include "scan/settings.h"
#include "scan/stats.h"
#include "scan/task.h"
#include "util/util.h"

struct as_engine {
    struct event_base *base;
    struct as_config *cfg;
    int cfg_borrowed;                   /* the check's engine: cfg is the caller's */
    struct as_symtab *symtab;
    struct as_actions actions;
    struct as_limits limits;
    struct as_authres_conf authres;
    struct as_engine_plugin *plugins;   /* in dependency order */
    size_t nplugins;
    int plugins_borrowed;               /* as_engine_attach_plugins() */
    struct as_plugins_off off;          /* switched off by the config */
    struct as_settings_table *settings; /* Settings-ID profiles, or NULL */
    void **services;                    /* state per as_service_at(i) */
    unsigned char *service_owned;       /* started here: stop() at free */
    struct as_stats *stats;
    struct as_task *finishing;          /* see as_engine_finishing() */
    struct engine_shared *shared;       /* as_engine_shared() */
    char id_prefix[8];
    uint64_t id_seq;
};

struct engine_shared {
    struct engine_shared *next;
    char *name;
    void *obj;
    void (*drop)(void *obj);
};

struct as_embedded {
    const char *name;
    const char *text;
};
extern const struct as_embedded as_embedded_rules[];

#define DEFAULT_CONFIG "/etc/authscan/authscand.conf"
#define DEFAULT_LOCAL_RULES "/etc/authscan/rules.d"

/* Keys the core owns.  docs/config.md describes each. */
static const struct as_config_key core_keys[] = {
    { "workers", AS_OPT_INT, NULL, "scanning worker processes (default: CPU count)" },
    { "listen", AS_OPT_LIST, "127.0.0.1:11333", "scan protocol sockets" },
    { "pid_file", AS_OPT_STRING, NULL, "write the master's pid here" },
    { "user", AS_OPT_STRING, NULL, "account the daemon runs as when started as root" },
    { "group", AS_OPT_STRING, NULL, "its group (default: the user's primary group)" },
    { "shutdown_timeout", AS_OPT_DURATION, "30s", "how long draining workers may take" },
    { "log.level", AS_OPT_STRING, "notice", "error, warning, notice, info, debug" },
    { "log.target", AS_OPT_STRING, "stderr", "stderr or syslog" },
    { "log.ident", AS_OPT_STRING, NULL, "name in every line (default: the program's)" },
    { "log.facility", AS_OPT_STRING, "mail", "syslog facility: mail, daemon, user, local0-7" },
    { "plugins.dir", AS_OPT_STRING, NULL, "directory of plugin shared objects" },
    { "plugins.enable", AS_OPT_LIST, NULL, "load only these plugins" },
    { "plugins.disable", AS_OPT_LIST, NULL, "never load these plugins" },
    { "plugins.allow_no_auth", AS_OPT_BOOL, "no", "run with no spf, dkim or dmarc plugin" },
    { "rules.dir", AS_OPT_STRING, NULL, "replace the shipped rules with *.conf from here" },
    { "rules.local_dir", AS_OPT_STRING, DEFAULT_LOCAL_RULES, "site overrides, loaded last" },
    { "rules.allow_unknown_symbols", AS_OPT_BOOL, "no", "keep rules for undeclared symbols" },
    { "limits.max_message_size", AS_OPT_SIZE, "50M", "largest message scanned" },
    { "limits.max_headers", AS_OPT_INT, "1000", "most header fields in a message" },
    { "limits.max_header_size", AS_OPT_SIZE, "1M", "largest header block" },
    { "limits.scan_timeout", AS_OPT_DURATION, "8s", "deadline of one scan" },
    { "limits.header_timeout", AS_OPT_DURATION, "10s", "time to receive a request's head" },
    { "limits.read_timeout", AS_OPT_DURATION, "30s", "time to receive one request" },
    { "limits.idle_timeout", AS_OPT_DURATION, "60s", "keep-alive idle time" },
    { "limits.max_connections", AS_OPT_INT, "1024", "connections per worker" },
    { "limits.max_connections_per_ip", AS_OPT_INT, "256",
      "connections from one client address per worker (0: no limit)" },
    { "poison.enable", AS_OPT_BOOL, "yes", "answer a message that killed a worker unscanned" },
    { "poison.action", AS_OPT_STRING, "soft_reject", "the answer to such a message" },
    { "poison.ttl", AS_OPT_DURATION, "1h", "how long such a message is remembered" },
    { "auth_results.authserv_id", AS_OPT_STRING, NULL,
      "authserv-id of Authentication-Results (default: MTA-Name, else the host name)" },
    { "auth_results.add", AS_OPT_BOOL, NULL, "add one Authentication-Results field (yes)" },
    { "auth_results.remove_forged", AS_OPT_BOOL, NULL,
      "remove Authentication-Results fields that carry our authserv-id (yes)" },
    /* deprecated names of the three above (they were dmarc plugin options
     * when the plugin wrote the field): core keys, so they work whether
     * or not dmarc is loaded */
    { "dmarc.authserv_id", AS_OPT_STRING, NULL, "deprecated: auth_results.authserv_id" },
    { "dmarc.add_auth_results", AS_OPT_BOOL, NULL, "deprecated: auth_results.add" },
    { "dmarc.remove_own_auth_results", AS_OPT_BOOL, NULL,
      "deprecated: auth_results.remove_forged" },
    /* The protocol adapters' keys (net/<name>_adapter.c: the schema is one, built
     * in this layer; each adapter checks its values and that it listens,
     * protocol.h check()).  No defaults here: every key present is a
     * site's, so one set for an adapter that does not listen is refused. */
    { "milter.on.*", AS_OPT_STRING, NULL,
      "what the MTA is told for a verdict action: accept, add_header, quarantine, tempfail, "
      "reject, discard" },
    { "milter.reject_code", AS_OPT_STRING, NULL, "SMTP reply of a reject (550 5.7.1)" },
    { "milter.tempfail_code", AS_OPT_STRING, NULL, "SMTP reply of a tempfail (451 4.7.1)" },
    { "milter.spam_header", AS_OPT_STRING, NULL, "added as \"Yes\" to spam (X-Spam; \"\": none)" },
    { "milter.status_header", AS_OPT_STRING, NULL,
      "score line added to spam (X-Spam-Status; \"\": none)" },
    { "milter.timeout", AS_OPT_DURATION, NULL, "an MTA silent this long is dropped (10m)" },
    { "spamd.spam_actions", AS_OPT_LIST, NULL,
      "verdict actions reported as spam (reject, soft_reject, quarantine)" },
    { "spamd.trusted_networks", AS_OPT_LIST, NULL,
      "relays whose Received fields are believed: the client is the first hop outside them" },
    { "spamd.internal_networks", AS_OPT_LIST, NULL,
      "the site's own MTAs (SpamAssassin's name; walked through like trusted_networks)" },
    { "controller.password", AS_OPT_STRING, NULL,
      "the controller's read password (Password header, dashboard login)" },
    { "controller.enable_password", AS_OPT_STRING, NULL,
      "the controller's write password (clearing history)" },
    { "actions.*", AS_OPT_STRING, NULL, "score threshold, or none" },
    { "messages.*", AS_OPT_STRING, NULL, "SMTP reply text per action" },
    { "symbols.*.score", AS_OPT_DOUBLE, NULL, "weight" },
    { "symbols.*.group", AS_OPT_STRING, NULL, "group" },
    { "symbols.*.description", AS_OPT_STRING, NULL, "description" },
    { "symbols.*.one_shot", AS_OPT_BOOL, NULL, "a second insert only adds options" },
};

/* auth_results.* and the names they had as dmarc plugin options. */
static const struct {
    const char *key, *alias;
    enum as_opt_type type;
} authres_keys[] = {
    { "auth_results.authserv_id", "dmarc.authserv_id", AS_OPT_STRING },
    { "auth_results.add", "dmarc.add_auth_results", AS_OPT_BOOL },
    { "auth_results.remove_forged", "dmarc.remove_own_auth_results", AS_OPT_BOOL },
};

/* The entry in effect for authres_keys[i]: the new name wins. */
static const struct as_config_entry *authres_entry(const struct as_config *cfg, size_t i)
{
    const struct as_config_entry *k = as_config_find(cfg, authres_keys[i].key);
    return k ? k : as_config_find(cfg, authres_keys[i].alias);
}

/* Both names set to different values is an error naming both places;
 * what the type check accepted is compared as parsed ("yes" and "on"
 * agree). */
static int authres_conflict(const struct as_config *cfg, size_t i, char *err, size_t errlen)
{
    const struct as_config_entry *k = as_config_find(cfg, authres_keys[i].key);
    const struct as_config_entry *a = as_config_find(cfg, authres_keys[i].alias);
    if (!k || !a) return 0;
    int same;
    if (authres_keys[i].type == AS_OPT_BOOL) {
        int bk = -1, ba = -2;
        same = as_parse_bool(k->value, &bk) == 0 && as_parse_bool(a->value, &ba) == 0 &&
               bk == ba;
    } else {
        same = strcmp(k->value, a->value) == 0;
    }
    if (same) return 0;
    char where[300];
    if (k->line) snprintf(where, sizeof where, "%s:%d", k->file, k->line);
    else snprintf(where, sizeof where, "%s", k->file);
    return as_config_error(err, errlen, a, "'%s' (the deprecated name of '%s') is '%s' but "
                           "'%s' is '%s' at %s: set only '%s'", authres_keys[i].alias,
                           authres_keys[i].key, a->value, authres_keys[i].key, k->value, where,
                           authres_keys[i].key);
}

static int check_authres(const struct as_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(authres_keys); i++)
        if (authres_conflict(cfg, i, err, errlen) < 0) return -1;
    return 0;
}

/* Deprecation notes for the old names, once per configuration check. */
static void warn_authres_aliases(const struct as_config *cfg)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(authres_keys); i++) {
        const struct as_config_entry *a = as_config_find(cfg, authres_keys[i].alias);
        char msg[512];
        if (a) {
            as_config_error(msg, sizeof msg, a, "'%s' is deprecated: use '%s'",
                            authres_keys[i].alias, authres_keys[i].key);
            as_log(AS_LOG_WARN, "%s", msg);
        }
    }
}

static void authres_defaults(struct as_authres_conf *c)
{
    memset(c, 0, sizeof *c);
    c->add = c->remove_forged = 1;
    if (gethostname(c->hostname, sizeof c->hostname - 1) != 0 || !c->hostname[0])
        snprintf(c->hostname, sizeof c->hostname, "localhost");
}

static void read_authres(struct as_authres_conf *c, const struct as_config *cfg)
{
    authres_defaults(c);
    const struct as_config_entry *e = authres_entry(cfg, 0);
    if (e && *e->value) c->authserv_id = e->value;   /* cfg's: the engine keeps cfg */
    if ((e = authres_entry(cfg, 1))) c->add = as_config_bool(cfg, e->key, 1);
    if ((e = authres_entry(cfg, 2))) c->remove_forged = as_config_bool(cfg, e->key, 1);
}

/* Symbols the core itself can add. */
static const struct as_symbol_def core_symbols[] = {
    { "AUTHSCAN_TIMEOUT", 0.0, "core",
      "The scan deadline cut plugins short (options: the plugins)", 0 },
    { "AUTHSCAN_POISON", 0.0, "core",
      "Not scanned: this message killed a worker before (options: digest, crashes)", 0 },
};

const char *as_engine_default_config_path(void) { return DEFAULT_CONFIG; }

/* The origin as_engine_apply_defaults() gives the entries it adds, so a
 * check can tell a value the site wrote from one filled in for it. */
static const char default_origin[] = "default";

void as_engine_apply_defaults(struct as_config *cfg)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(core_keys); i++) {
        const struct as_config_key *k = &core_keys[i];
        if (!k->default_value || strchr(k->key, '*') || as_config_find(cfg, k->key)) continue;
        as_config_set(cfg, k->key, k->default_value, default_origin, 0);
    }
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

struct as_config *as_engine_load_config(const char *path, char *err, size_t errlen)
{
    if (!path && file_exists(DEFAULT_CONFIG)) path = DEFAULT_CONFIG;

    /* rules.dir and rules.local_dir live in the main file, but the rules
     * must be loaded before it so that the file overrides them: peek. */
    const char *rules_dir = NULL, *local_dir = DEFAULT_LOCAL_RULES;
    struct as_config *peek = NULL;
    if (path) {
        peek = as_config_new();
        if (as_config_load_file(peek, path, err, errlen) < 0) {
            as_config_free(peek);
            return NULL;
        }
        rules_dir = as_config_str(peek, "rules.dir", NULL);
        local_dir = as_config_str(peek, "rules.local_dir", DEFAULT_LOCAL_RULES);
    }

    struct as_config *cfg = as_config_new();
    int rc = 0;
    if (rules_dir) {
        rc = as_config_load_dir(cfg, rules_dir, 0, err, errlen);
    } else {
        for (const struct as_embedded *r = as_embedded_rules; r->name && rc == 0; r++) {
            char name[128];
            snprintf(name, sizeof name, "<shipped>/rules/%s", r->name);
            rc = as_config_load_string(cfg, name, r->text, err, errlen);
        }
    }
    if (rc == 0 && path) rc = as_config_load_file(cfg, path, err, errlen);
    if (rc == 0 && local_dir && *local_dir) rc = as_config_load_dir(cfg, local_dir, 1, err, errlen);
    as_config_free(peek);
    if (rc < 0) {
        as_config_free(cfg);
        return NULL;
    }
    return cfg;
}

const char *as_engine_plugins_dir(const struct as_config *cfg)
{
    const char *d = as_config_str(cfg, "plugins.dir", NULL);
    if (d) return d;
    d = getenv("AUTHSCAN_PLUGINS");
    if (d && *d) return d;
    /* Next to the binary first: the build tree mirrors the install tree. */
    static char rel[PATH_MAX + 128];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int n2 = snprintf(rel, sizeof rel, "%.*s/%s", (int)(sizeof exe - 64), exe,
                              AUTHSCAN_PLUGIN_RELDIR);
            if (n2 > 0 && (size_t)n2 < sizeof rel && file_exists(rel)) return rel;
        }
    }
    return AUTHSCAN_PLUGIN_DIR;
}

/* One schema for every key: core, each service's and each plugin's. */
static int check_all_keys(struct as_config *cfg, struct as_engine_plugin *pl, size_t np,
                          char *err, size_t errlen)
{
    size_t n = AS_ARRAY_LEN(core_keys) + as_settings_config_nkeys;
    for (size_t i = 0; i < as_service_count(); i++) n += as_service_at(i)->nkeys;
    for (size_t i = 0; i < np; i++) n += pl[i].def->noptions;
    struct as_config_key *schema = xcalloc(n, sizeof *schema);
    char **owned = xcalloc(n, sizeof *owned);
    size_t k = 0;
    for (size_t i = 0; i < AS_ARRAY_LEN(core_keys); i++) schema[k++] = core_keys[i];
    for (size_t i = 0; i < as_settings_config_nkeys; i++) schema[k++] = as_settings_config_keys[i];
    for (size_t s = 0; s < as_service_count(); s++) {
        const struct as_service *svc = as_service_at(s);
        for (size_t i = 0; i < svc->nkeys; i++) {
            schema[k] = svc->keys[i];
            size_t l = strlen(svc->name) + strlen(svc->keys[i].key) + 2;
            owned[k] = xmalloc(l);
            snprintf(owned[k], l, "%s.%s", svc->name, svc->keys[i].key);
            schema[k].key = owned[k];
            k++;
        }
    }
    for (size_t i = 0; i < np; i++)
        for (size_t j = 0; j < pl[i].def->noptions; j++) {
            const struct as_option_def *o = &pl[i].def->options[j];
            size_t l = strlen(pl[i].def->name) + strlen(o->name) + 2;
            owned[k] = xmalloc(l);
            snprintf(owned[k], l, "%s.%s", pl[i].def->name, o->name);
            schema[k] = (struct as_config_key){ owned[k], o->type, o->default_value, o->help };
            k++;
        }
    int rc = as_config_check(cfg, "", schema, k, err, errlen);
    for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(schema);
    return rc;
}

/* Bounds of the core's numeric keys, checked on the value as written:
 * each is narrowed (size_t, int, time_t) or multiplied after it is read,
 * and a value past the type's range would wrap into a small, valid
 * looking one (4294967297 into an int holding 1) or be undefined.  A
 * duration is bounded in seconds, a size in bytes. */
static const struct core_range {
    const char *key;
    enum as_opt_type type;
    long long min, max;
    const char *shown;            /* the range as the message gives it */
} core_ranges[] = {
    { "workers", AS_OPT_INT, 0, 256, "0 to 256" },
    { "limits.max_headers", AS_OPT_INT, 0, 1000000, "0 (no limit) to 1000000" },
    { "limits.max_connections", AS_OPT_INT, 0, 1000000, "0 (no limit) to 1000000" },
    { "limits.max_connections_per_ip", AS_OPT_INT, 0, 1000000, "0 (no limit) to 1000000" },
    { "limits.max_message_size", AS_OPT_SIZE, 1, 2LL << 30, "1 to 2G" },
    { "limits.max_header_size", AS_OPT_SIZE, 0, 2LL << 30, "0 (no limit) to 2G" },
    { "shutdown_timeout", AS_OPT_DURATION, 0, 86400, "0 to 1d" },
    { "limits.scan_timeout", AS_OPT_DURATION, 0, 86400, "0 to 1d" },
    { "limits.header_timeout", AS_OPT_DURATION, 0, 86400, "0 to 1d" },
    { "limits.read_timeout", AS_OPT_DURATION, 0, 86400, "0 to 1d" },
    { "limits.idle_timeout", AS_OPT_DURATION, 0, 86400, "0 to 1d" },
};

static int check_range(const struct as_config_entry *e, char *err, size_t errlen)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(core_ranges); i++) {
        const struct core_range *r = &core_ranges[i];
        if (strcmp(e->key, r->key) != 0) continue;
        long long ll;
        unsigned long long ull;
        double d;
        int ok;
        switch (r->type) {
        case AS_OPT_INT:
            ok = as_parse_int(e->value, &ll) == 0 && ll >= r->min && ll <= r->max;
            break;
        case AS_OPT_SIZE:
            ok = as_parse_size(e->value, &ull) == 0 && ull >= (unsigned long long)r->min &&
                 ull <= (unsigned long long)r->max;
            break;
        default:
            ok = as_parse_duration(e->value, &d) == 0 && d >= (double)r->min &&
                 d <= (double)r->max;
            break;
        }
        if (!ok)
            return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected %s",
                                   e->value, e->key, r->shown);
        return 0;
    }
    return 0;
}

/* A syslog tag, shown in every line (and journald's SYSLOG_IDENTIFIER):
 * it must survive as one word, and log.c keeps 31 bytes of it. */
static int valid_ident(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 31) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-') return 0;
    return 1;
}

/* Checks that the type system of as_config_check cannot express. */
static int check_semantics(const struct as_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < as_config_count(cfg); i++) {
        const struct as_config_entry *e = as_config_at(cfg, i);
        double d;
        int fac;
        if (strncmp(e->key, "actions.", 8) == 0) {
            if (as_action_parse(e->key + 8) < 0)
                return as_config_error(err, errlen, e, "unknown action '%s' (actions are "
                                       "greylist, add_header, rewrite_subject, quarantine, "
                                       "soft_reject, reject)", e->key + 8);
            if (as_parse_threshold(e->value, &d) < 0)
                return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected a "
                                       "score or none", e->value, e->key);
        } else if (strncmp(e->key, "messages.", 9) == 0 && as_action_parse(e->key + 9) < 0) {
            return as_config_error(err, errlen, e, "unknown action '%s'", e->key + 9);
        } else if (strcmp(e->key, "log.level") == 0) {
            enum as_log_level lv;
            if (as_log_parse_level(e->value, &lv) < 0)
                return as_config_error(err, errlen, e, "bad value '%s' for 'log.level': "
                                       "expected error, warning, notice, info or debug",
                                       e->value);
        } else if (strcmp(e->key, "log.target") == 0 && strcmp(e->value, "stderr") != 0 &&
                   strcmp(e->value, "syslog") != 0) {
            return as_config_error(err, errlen, e, "bad value '%s' for 'log.target': expected "
                                   "stderr or syslog", e->value);
        } else if (strcmp(e->key, "log.facility") == 0 && as_log_parse_facility(e->value, &fac) < 0) {
            return as_config_error(err, errlen, e, "bad value '%s' for 'log.facility': expected "
                                   "mail, daemon, user or local0 to local7", e->value);
        } else if (strcmp(e->key, "log.ident") == 0 && !valid_ident(e->value)) {
            return as_config_error(err, errlen, e, "bad value '%s' for 'log.ident': expected 1 to "
                                   "31 letters, digits, '.', '_' or '-'", e->value);
        } else if (strcmp(e->key, "poison.action") == 0 && as_action_parse(e->value) < 0) {
            return as_config_error(err, errlen, e, "bad value '%s' for 'poison.action': expected "
                                   "an action (soft_reject, reject, greylist, no_action ...)",
                                   e->value);
        } else if (strcmp(e->key, "poison.ttl") == 0 &&
                   (as_parse_duration(e->value, &d) < 0 || d < 1 || d > 7 * 86400)) {
            return as_config_error(err, errlen, e, "bad value '%s' for 'poison.ttl': expected "
                                   "1s to 7d", e->value);
        } else if (check_range(e, err, errlen) < 0) {
            return -1;
        }
    }
    /* With poison.enable = no nothing is remembered or answered unscanned:
     * the other poison keys would be accepted and do nothing. */
    const struct as_config_entry *pe = as_config_find(cfg, "poison.enable");
    if (pe && !as_config_bool(cfg, "poison.enable", 1)) {
        static const char *const poison_keys[] = { "poison.action", "poison.ttl" };
        for (size_t i = 0; i < AS_ARRAY_LEN(poison_keys); i++) {
            const struct as_config_entry *e = as_config_find(cfg, poison_keys[i]);
            char at[512];
            /* as_engine_apply_defaults() fills unset keys: only a value a
             * site wrote is one that would be ignored. */
            if (e && strcmp(e->file, default_origin) != 0)
                return as_config_error(err, errlen, e, "'%s' has no effect with poison.enable "
                                       "= no (%s): remove one of them", poison_keys[i],
                                       as_config_where(pe, at, sizeof at));
        }
    }
    if (check_authres(cfg, err, errlen) < 0) return -1;
    return 0;
}

/* Core symbols, the plugins', then those of the services' own rules (Lua),
 * and the rules files over all of them. */
static int build_symbols(struct as_engine *e, const struct as_config *cfg, char *err,
                         size_t errlen)
{
    struct as_symtab *st = e->symtab;
    for (size_t i = 0; i < AS_ARRAY_LEN(core_symbols); i++)
        if (as_symtab_declare(st, &core_symbols[i], "core", err, errlen) < 0) return -1;
    for (size_t i = 0; i < e->nplugins; i++) {
        const struct as_plugin *def = e->plugins[i].def;
        for (size_t j = 0; j < def->nsymbols; j++)
            if (as_symtab_declare(st, &def->symbols[j], def->name, err, errlen) < 0) return -1;
    }
    for (size_t i = 0; i < as_service_count(); i++) {
        const struct as_service *svc = as_service_at(i);
        const struct as_symbol_def *defs;
        if (!svc->symbols || !e->services[i]) continue;
        size_t n = svc->symbols(e->services[i], &defs);
        for (size_t j = 0; j < n; j++)
            if (as_symtab_declare(st, &defs[j], svc->name, err, errlen) < 0) return -1;
    }
    return as_symtab_apply_rules(st, cfg, e->off.symbols, e->off.nsymbols, err, errlen);
}

/* The Lua rules run as a built-in plugin after every loaded one, so that
 * they see the plugins' symbols and verdict (docs/lua.md). */
static void add_builtin_lua(struct as_engine *e, const struct as_config *cfg)
{
    const char *dir = as_config_str(cfg, "lua.dir", NULL);
    if (!dir || !*dir) return;
    size_t n = e->nplugins;
    e->plugins = xrealloc(e->plugins, (n + 1) * sizeof *e->plugins);
    struct as_engine_plugin *p = &e->plugins[n];
    memset(p, 0, sizeof *p);
    p->def = &as_lua_plugin;
    p->fd = -1;
    p->path = xstrdup("<built-in lua>");
    p->deps = n ? xcalloc(n, sizeof *p->deps) : NULL;
    for (size_t i = 0; i < n; i++) p->deps[i] = i;
    p->ndeps = n;
    e->nplugins = n + 1;
}

/* The plugins that authenticate the sender (RFC 7208, RFC 6376, RFC 7489).
 * Without any of them every message, a spoof of a p=reject domain too,
 * gets "no action" and no symbols, which looks like a healthy scanner: an
 * empty or wrong plugins directory must stop the start instead. */
static const char *const auth_plugins[] = { "spf", "dkim", "dmarc" };

static int check_plugin_set(const struct as_config *cfg, const struct as_engine_plugin *pl,
                            size_t np, const struct as_plugins_off *off, char *err,
                            size_t errlen)
{
    if (as_config_bool(cfg, "plugins.allow_no_auth", 0)) return 0;
    size_t nauth = 0;
    const char *missing = NULL;
    const char *const *enable, *const *disable;
    size_t nen = as_config_list(cfg, "plugins.enable", &enable);
    size_t ndis = as_config_list(cfg, "plugins.disable", &disable);
    for (size_t k = 0; k < AS_ARRAY_LEN(auth_plugins); k++) {
        size_t i;
        for (i = 0; i < np; i++)
            if (strcmp(pl[i].def->name, auth_plugins[k]) == 0) break;
        if (i < np)
            nauth++;
        else if (!nen && !as_plugins_off_has((char *const *)disable, ndis, auth_plugins[k]) &&
                 !missing)
            missing = auth_plugins[k];    /* absent, and nobody said so */
    }
    if (nauth && missing) {
        /* A plugins directory that lost dmarc.so (a wrong path, a partial
         * deploy) would answer every spoof with the other plugins' weights
         * alone: absent must be a decision, not an accident. */
        return as_config_error(err, errlen, as_config_find(cfg, "plugins.dir"),
                               "authentication plugin '%s' is not in %s: install it, or "
                               "switch it off with plugins.disable = %s (or set "
                               "plugins.allow_no_auth = yes)", missing,
                               as_engine_plugins_dir(cfg), missing);
    }
    if (nauth) return 0;
    struct sbuf have = {0};
    for (size_t i = 0; i < np; i++) sbuf_printf(&have, "%s%s", i ? ", " : "", pl[i].def->name);
    const char *dir = as_engine_plugins_dir(cfg);
    int switched_off = 0;
    for (size_t k = 0; k < AS_ARRAY_LEN(auth_plugins); k++)
        if (as_plugins_off_has(off->names, off->nnames, auth_plugins[k])) switched_off = 1;
    /* point at the line that did it: plugins.enable/disable, else plugins.dir */
    const struct as_config_entry *e = NULL;
    if (switched_off) {
        e = as_config_find(cfg, "plugins.enable");
        if (!e || as_config_list(cfg, "plugins.enable", NULL) == 0)
            e = as_config_find(cfg, "plugins.disable");
    } else {
        e = as_config_find(cfg, "plugins.dir");
    }
    int rc = as_config_error(err, errlen, e, "no authentication plugin (spf, dkim, dmarc) is "
                             "loaded from %s (loaded: %s%s): every message would get 'no "
                             "action'; fix %s, or set plugins.allow_no_auth = yes to run "
                             "without them", dir, have.len ? have.data : "none",
                             switched_off ? "; the others are switched off by the config" : "",
                             switched_off ? "plugins.enable / plugins.disable"
                                          : "the plugins directory (plugins.dir, --plugins-dir)");
    sbuf_free(&have);
    return rc;
}

static struct as_engine *engine_alloc(struct event_base *base);
static int engine_build(struct as_engine *e, struct as_config *cfg, int checking, char *err,
                        size_t errlen);

/* In the checking child: where engine_build() writes the name of the
 * plugin whose init() runs, so that a crash or hang there is reported
 * against that plugin. */
static char *check_init_buf;
static size_t check_init_len;

/* as_engine_check() in this process: builds the whole engine a worker
 * would build, plugins initialized and services started, and tears it
 * down, so that what only a plugin's init() or a service's start() can
 * judge fails the check and not the workers after it. */
static int check_here(struct as_config *cfg, char *err, size_t errlen)
{
    struct event_base *base = event_base_new();
    if (!base) {
        snprintf(err, errlen, "cannot check the configuration: no event base");
        return -1;
    }
    struct as_engine *e = engine_alloc(base);
    e->cfg = cfg;
    e->cfg_borrowed = 1;
    int rc = engine_build(e, cfg, 1, err, errlen);
    as_engine_free(e);
    event_base_free(base);
    return rc;
}

/* What the checking child leaves in a shared page for its parent. */
struct check_report {
    char loading[1024];   /* the plugin file being mapped, "" between files */
    char initializing[1024];  /* the plugin whose init() runs, "" otherwise */
    char err[1024];
    int done;             /* the child finished the check (rc is valid) */
    int rc;
};

/* A plugin whose loading hangs (a constructor that blocks) must not hang
 * the master: the check is given this long. */
#define CHECK_TIMEOUT 60.0

/* The master never maps a plugin file itself: loading one runs its
 * constructors, and ld.so maps the segments as the headers say, so a file
 * truncated or rewritten under it (SIGBUS), a constructor that crashes or
 * calls exit() would take the master down, and every worker with it.
 * The whole check runs in a child; the parent reads the verdict, or
 * which file the child was loading when it died. */
int as_engine_check(struct as_config *cfg, char *err, size_t errlen)
{
    struct check_report *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) {
        snprintf(err, errlen, "cannot check the configuration: mmap: %s", strerror(errno));
        return -1;
    }
    memset(r, 0, sizeof *r);
    fflush(NULL);   /* or the child's exit() could write buffered output twice */
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot check the configuration: fork: %s", strerror(errno));
        munmap(r, sizeof *r);
        return -1;
    }
    if (pid == 0) {
        /* The master's handlers would wake its event loop through fds this
         * child shares: take the default actions. */
        static const int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD };
        for (size_t i = 0; i < AS_ARRAY_LEN(sigs); i++) signal(sigs[i], SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        as_plugins_track(r->loading, sizeof r->loading);
        check_init_buf = r->initializing;
        check_init_len = sizeof r->initializing;
        r->rc = check_here(cfg, r->err, sizeof r->err);
        r->done = 1;
        _exit(0);
    }
    int status = 0, timed_out = 0;
    double deadline = as_now() + CHECK_TIMEOUT;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            snprintf(err, errlen, "cannot check the configuration: waitpid: %s",
                     strerror(errno));
            munmap(r, sizeof *r);
            return -1;
        }
        if (as_now() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            timed_out = 1;
            break;
        }
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    int rc = -1;
    char how[96];
    if (timed_out) snprintf(how, sizeof how, "did not finish in %.0f s", CHECK_TIMEOUT);
    else if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else snprintf(how, sizeof how, "exited with status %d before finishing",
                  WEXITSTATUS(status));
    r->loading[sizeof r->loading - 1] = '\0';
    r->initializing[sizeof r->initializing - 1] = '\0';
    r->err[sizeof r->err - 1] = '\0';
    if (r->done && !timed_out) {
        rc = r->rc < 0 ? -1 : 0;
        if (rc < 0) as_strlcpy(err, r->err, errlen);
    } else if (r->initializing[0]) {
        snprintf(err, errlen, "plugin %s: the process checking the configuration %s in the "
                 "plugin's init() (a worker would do the same at start)", r->initializing, how);
    } else if (r->loading[0]) {
        snprintf(err, errlen, "plugin %s: the process checking it %s while loading it (its "
                 "initialisation code crashes, exits or hangs, or the file changed while it "
                 "was being loaded)", r->loading, how);
    } else {
        snprintf(err, errlen, "the process checking the configuration and plugins %s (a "
                 "plugin file changed while in use?)", how);
    }
    munmap(r, sizeof *r);
    return rc;
}

static void read_limits(struct as_limits *l, const struct as_config *cfg)
{
    l->max_message_size = as_config_size(cfg, "limits.max_message_size", 50ULL << 20);
    l->max_headers = (size_t)as_config_int(cfg, "limits.max_headers", 1000);
    l->max_header_size = (size_t)as_config_size(cfg, "limits.max_header_size", 1 << 20);
    l->scan_timeout = as_config_duration(cfg, "limits.scan_timeout", 8);
    l->header_timeout = as_config_duration(cfg, "limits.header_timeout", 10);
    l->read_timeout = as_config_duration(cfg, "limits.read_timeout", 30);
    l->idle_timeout = as_config_duration(cfg, "limits.idle_timeout", 60);
    l->max_connections = (size_t)as_config_int(cfg, "limits.max_connections", 1024);
    l->max_connections_per_ip = (size_t)as_config_int(cfg, "limits.max_connections_per_ip", 256);
}

static void make_id_prefix(struct as_engine *e)
{
    unsigned char rnd[3] = {0};
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        unsigned v = (unsigned)getpid() * 2654435761u;
        memcpy(rnd, &v, sizeof rnd);
    }
    snprintf(e->id_prefix, sizeof e->id_prefix, "%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
}

static struct as_engine *engine_alloc(struct event_base *base)
{
    struct as_engine *e = xcalloc(1, sizeof *e);
    e->base = base;
    e->services = xcalloc(as_service_count() + 1, sizeof *e->services);
    e->service_owned = xcalloc(as_service_count() + 1, 1);
    e->stats = as_stats_new(e);
    make_id_prefix(e);
    return e;
}

/* ABI 1.2 added the postfilter and finish members at the end of struct
 * as_plugin: an older plugin's object ends before them, so they are read
 * only when the plugin says it was built with them. */
static void read_stages(struct as_engine_plugin *p)
{
    if (p->def->abi_minor >= 2) {
        p->postfilter = p->def->postfilter;
        p->finish = p->def->finish;
    }
}

/* Loads, checks and starts everything of e from cfg, in the order of
 * engine.h.  With `checking` (as_engine_check), also the checks a worker
 * can skip because the master made them: every key against its schema,
 * what the schemas cannot express, each service's check().  0 or -1. */
static int engine_build(struct as_engine *e, struct as_config *cfg, int checking, char *err,
                        size_t errlen)
{
    e->symtab = as_symtab_new();
    if (as_plugins_load(as_engine_plugins_dir(cfg), cfg, &e->plugins, &e->nplugins, &e->off,
                        err, errlen) < 0 ||
        as_plugins_apply_defaults(e->plugins, e->nplugins, cfg, err, errlen) < 0)
        return -1;
    if (checking && (check_all_keys(cfg, e->plugins, e->nplugins, err, errlen) < 0 ||
                     check_semantics(cfg, err, errlen) < 0))
        return -1;
    if (checking) warn_authres_aliases(cfg);
    if (check_plugin_set(cfg, e->plugins, e->nplugins, &e->off, err, errlen) < 0) return -1;
    add_builtin_lua(e, cfg);
    for (size_t i = 0; checking && i < as_service_count(); i++) {
        const struct as_service *svc = as_service_at(i);
        if (svc->check && svc->check(cfg, err, errlen) < 0) return -1;
    }
    /* Services start before the symbols are built: the Lua service's
     * rules declare symbols the rules files may score. */
    for (size_t i = 0; i < as_service_count(); i++) {
        const struct as_service *svc = as_service_at(i);
        if (!svc->start) continue;
        e->services[i] = svc->start(e->base, cfg, err, errlen);
        if (!e->services[i]) return -1;
        e->service_owned[i] = 1;
    }
    if (build_symbols(e, cfg, err, errlen) < 0) return -1;
    as_actions_from_config(&e->actions, cfg);
    read_limits(&e->limits, cfg);
    read_authres(&e->authres, cfg);
    if (as_settings_build(&e->settings, cfg, e->symtab, e->plugins, e->nplugins, &e->off,
                          &e->actions, err, errlen) < 0)
        return -1;

    for (size_t i = 0; i < e->nplugins; i++) {
        struct as_engine_plugin *p = &e->plugins[i];
        read_stages(p);
        if (p->def == &as_lua_plugin) as_lua_plugin_trim_stages(e, p);
        p->ctx.engine = e;
        p->ctx.def = p->def;
        if (check_init_buf) snprintf(check_init_buf, check_init_len, "%s", p->path);
        int rc = p->def->init ? p->def->init(&p->ctx, &p->state) : 0;
        if (check_init_buf) check_init_buf[0] = '\0';
        if (rc < 0) {
            /* an option error names its file:line first, like every
             * other config error; anything else names the plugin */
            if (p->ctx.error_located)
                as_strlcpy(err, p->ctx.error, errlen);
            else
                snprintf(err, errlen, "plugin %s: init failed: %s", p->def->name,
                         p->ctx.error[0] ? p->ctx.error : "no reason given");
            return -1;
        }
        p->initialized = 1;
    }
    return 0;
}

struct as_engine *as_engine_new(struct event_base *base, struct as_config *cfg, char *err,
                                size_t errlen)
{
    struct as_engine *e = engine_alloc(base);
    e->cfg = cfg;
    if (engine_build(e, cfg, 0, err, errlen) < 0) {
        as_engine_free(e);
        return NULL;
    }
    return e;
}

struct as_engine *as_engine_new_bare(struct event_base *base, struct as_symtab *st)
{
    struct as_engine *e = engine_alloc(base);
    e->symtab = st;
    struct as_config *empty = as_config_new();   /* rspamd's default thresholds */
    as_actions_from_config(&e->actions, empty);
    as_config_free(empty);
    authres_defaults(&e->authres);
    return e;
}

void as_engine_attach_service(struct as_engine *e, const struct as_service *s, void *state)
{
    size_t i = as_service_index(s);
    if (i == SIZE_MAX) return;
    e->services[i] = state;
    e->service_owned[i] = 0;
}

void as_engine_attach_plugins(struct as_engine *e, struct as_engine_plugin *pl, size_t n)
{
    e->plugins = pl;
    e->nplugins = n;
    e->plugins_borrowed = 1;
    for (size_t i = 0; i < n; i++) {
        pl[i].ctx.engine = e;
        pl[i].ctx.def = pl[i].def;
        read_stages(&pl[i]);
    }
}

struct as_limits *as_engine_limits_mut(struct as_engine *e) { return &e->limits; }

void *as_engine_shared(struct as_engine *e, const char *name, void *(*make)(void *arg),
                       void (*drop)(void *obj), void *arg)
{
    for (struct engine_shared *x = e->shared; x; x = x->next)
        if (strcmp(x->name, name) == 0) return x->obj;
    void *obj = make(arg);
    if (!obj) return NULL;
    struct engine_shared *x = xcalloc(1, sizeof *x);
    x->name = xstrdup(name);
    x->obj = obj;
    x->drop = drop;
    x->next = e->shared;
    e->shared = x;
    return obj;
}

static void engine_shared_free(void *arg)
{
    struct as_engine *e = arg;
    while (e->shared) {
        struct engine_shared *x = e->shared;
        e->shared = x->next;
        if (x->drop) x->drop(x->obj);
        free(x->name);
        free(x);
    }
}

void as_engine_free(struct as_engine *e)
{
    if (!e) return;
    /* Finish-stage tasks hold plugin callbacks: end them while the plugin
     * code is still loaded. */
    as_task_free_finishing(e);
    as_settings_free(e->settings);
    if (!e->plugins_borrowed) as_plugins_unload(e->plugins, e->nplugins, engine_shared_free, e);
    else engine_shared_free(e);
    as_plugins_off_free(&e->off);
    /* the services' last counts, while their states exist; a state a
     * test attached is the test's and may be gone already */
    for (size_t i = 0; i < as_service_count(); i++)
        if (!e->service_owned[i]) e->services[i] = NULL;
    as_stats_publish(e->stats);
    for (size_t i = as_service_count(); i-- > 0;)
        if (e->service_owned[i] && e->services[i]) as_service_at(i)->stop(e->services[i]);
    free(e->services);
    free(e->service_owned);
    as_stats_free(e->stats);
    as_symtab_free(e->symtab);
    if (!e->cfg_borrowed) as_config_free(e->cfg);
    free(e);
}

struct event_base *as_engine_base(const struct as_engine *e) { return e->base; }
const struct as_config *as_engine_config(const struct as_engine *e) { return e->cfg; }
const struct as_symtab *as_engine_symtab(const struct as_engine *e) { return e->symtab; }
const struct as_actions *as_engine_actions(const struct as_engine *e) { return &e->actions; }
const struct as_limits *as_engine_limits(const struct as_engine *e) { return &e->limits; }
const struct as_authres_conf *as_engine_authres(const struct as_engine *e)
{
    return &e->authres;
}
size_t as_engine_plugin_count(const struct as_engine *e) { return e->nplugins; }
struct as_stats *as_engine_stats(const struct as_engine *e) { return e->stats; }
struct as_task **as_engine_finishing(struct as_engine *e) { return &e->finishing; }

const struct as_engine_plugin *as_engine_plugin_at(const struct as_engine *e, size_t i)
{
    return i < e->nplugins ? &e->plugins[i] : NULL;
}

const struct as_settings *as_engine_settings(const struct as_engine *e, const char *id)
{
    return as_settings_find(e->settings, id);
}

void *as_engine_service_state(const struct as_engine *e, const struct as_service *s)
{
    size_t i = as_service_index(s);
    return i == SIZE_MAX ? NULL : e->services[i];
}

void as_engine_next_task_id(struct as_engine *e, char *buf, size_t len)
{
    snprintf(buf, len, "%s%06llx", e->id_prefix, (unsigned long long)(++e->id_seq & 0xffffff));
}
