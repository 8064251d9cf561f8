/*
 * plugins.c - see plugins.h.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dns.h"
#include "plugins.h"
#include "util.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int in_list(const char *const *items, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(items[i], name) == 0) return 1;
    return 0;
}

static int valid_plugin_name(const char *n)
{
    if (!n || !*n || strlen(n) > 64) return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_')) return 0;
    return 1;
}

static int load_one(const char *path, struct as_engine_plugin *p, char *err, size_t errlen)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(err, errlen, "plugin %s: cannot load: %s", path, dlerror());
        return -1;
    }
    const struct as_plugin *def = dlsym(dl, AS_PLUGIN_SYMBOL);
    if (!def) {
        snprintf(err, errlen, "plugin %s: no '%s' symbol: not an authscan plugin", path,
                 AS_PLUGIN_SYMBOL);
        dlclose(dl);
        return -1;
    }
    /* Only the two leading fields may be read before the versions match. */
    if (def->abi_major != AS_PLUGIN_ABI_MAJOR || def->abi_minor > AS_PLUGIN_ABI_MINOR) {
        snprintf(err, errlen, "plugin %s: built for plugin ABI %u.%u, this authscan provides "
                 "%d.%d: rebuild the plugin against this authscan/plugin.h", path,
                 def->abi_major, def->abi_minor, AS_PLUGIN_ABI_MAJOR, AS_PLUGIN_ABI_MINOR);
        dlclose(dl);
        return -1;
    }
    if (!valid_plugin_name(def->name)) {
        snprintf(err, errlen, "plugin %s: invalid name '%s' (want [a-z0-9_]+)", path,
                 def->name ? def->name : "(null)");
        dlclose(dl);
        return -1;
    }
    if ((def->nsymbols && !def->symbols) || (def->noptions && !def->options)) {
        snprintf(err, errlen, "plugin %s: symbol or option table missing", path);
        dlclose(dl);
        return -1;
    }
    memset(p, 0, sizeof *p);
    p->def = def;
    p->dl = dl;
    p->path = xstrdup(path);
    return 0;
}

/* Depth-first topological sort; state 1 = on stack (cycle), 2 = placed. */
static int visit(struct as_engine_plugin *in, size_t n, size_t i, int *state, size_t *order,
                 size_t *no, char *err, size_t errlen)
{
    if (state[i] == 2) return 0;
    if (state[i] == 1) {
        snprintf(err, errlen, "plugin dependency cycle involving '%s'", in[i].def->name);
        return -1;
    }
    state[i] = 1;
    const char *const *d = in[i].def->depends;
    for (; d && *d; d++) {
        size_t j;
        for (j = 0; j < n; j++)
            if (strcmp(in[j].def->name, *d) == 0) break;
        if (j == n) {
            snprintf(err, errlen, "plugin '%s' depends on '%s', which is not loaded",
                     in[i].def->name, *d);
            return -1;
        }
        if (visit(in, n, j, state, order, no, err, errlen) < 0) return -1;
    }
    state[i] = 2;
    order[(*no)++] = i;
    return 0;
}

int as_plugins_load(const char *dir, const struct as_config *cfg,
                    struct as_engine_plugin **out, size_t *nout, char *err, size_t errlen)
{
    *out = NULL;
    *nout = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "plugins directory %s: %s", dir, strerror(errno));
        return -1;
    }
    char **files = NULL;
    size_t nf = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 4 || strcmp(de->d_name + l - 3, ".so") != 0 || de->d_name[0] == '.') continue;
        if (nf == cap) files = xrealloc(files, (cap = cap ? cap * 2 : 16) * sizeof *files);
        size_t pl = strlen(dir) + l + 2;
        files[nf] = xmalloc(pl);
        snprintf(files[nf], pl, "%s/%s", dir, de->d_name);
        nf++;
    }
    closedir(d);
    qsort(files, nf, sizeof *files, cmp_str);

    const char *const *enable, *const *disable;
    size_t nen = as_config_list(cfg, "plugins.enable", &enable);
    size_t ndis = as_config_list(cfg, "plugins.disable", &disable);

    struct as_engine_plugin *loaded = xcalloc(nf + 1, sizeof *loaded);
    size_t nl = 0;
    int rc = 0;
    for (size_t i = 0; i < nf && rc == 0; i++) {
        struct as_engine_plugin p;
        if (load_one(files[i], &p, err, errlen) < 0) {
            rc = -1;
            break;
        }
        const char *name = p.def->name;
        if ((nen && !in_list(enable, nen, name)) || in_list(disable, ndis, name)) {
            dlclose(p.dl);
            free(p.path);
            continue;
        }
        for (size_t j = 0; j < nl; j++)
            if (strcmp(loaded[j].def->name, name) == 0) {
                snprintf(err, errlen, "plugin name '%s' used by both %s and %s", name,
                         loaded[j].path, p.path);
                rc = -1;
            }
        if (rc == 0) loaded[nl++] = p;
        else {
            dlclose(p.dl);
            free(p.path);
        }
    }
    for (size_t i = 0; i < nf; i++) free(files[i]);
    free(files);
    for (size_t i = 0; rc == 0 && i < nen; i++) {
        size_t j;
        for (j = 0; j < nl; j++)
            if (strcmp(loaded[j].def->name, enable[i]) == 0) break;
        if (j == nl) {
            snprintf(err, errlen, "plugins.enable names '%s', but no such plugin is in %s",
                     enable[i], dir);
            rc = -1;
        }
    }

    if (rc == 0) {
        int *state = xcalloc(nl + 1, sizeof *state);
        size_t *order = xcalloc(nl + 1, sizeof *order), no = 0;
        for (size_t i = 0; i < nl && rc == 0; i++)
            rc = visit(loaded, nl, i, state, order, &no, err, errlen);
        if (rc == 0) {
            struct as_engine_plugin *sorted = xcalloc(nl + 1, sizeof *sorted);
            for (size_t i = 0; i < nl; i++) sorted[i] = loaded[order[i]];
            /* dependency names -> indexes in the sorted array */
            for (size_t i = 0; i < nl; i++) {
                const char *const *dp = sorted[i].def->depends;
                size_t nd = 0;
                for (const char *const *q = dp; q && *q; q++) nd++;
                sorted[i].deps = xcalloc(nd + 1, sizeof *sorted[i].deps);
                for (size_t k = 0; k < nd; k++)
                    for (size_t j = 0; j < nl; j++)
                        if (strcmp(sorted[j].def->name, dp[k]) == 0) sorted[i].deps[sorted[i].ndeps++] = j;
            }
            free(loaded);
            loaded = sorted;
        }
        free(state);
        free(order);
    }
    if (rc < 0) {
        as_plugins_unload(loaded, nl);
        return -1;
    }
    *out = loaded;
    *nout = nl;
    return 0;
}

void as_plugins_unload(struct as_engine_plugin *p, size_t n)
{
    if (!p) return;
    for (size_t i = n; i-- > 0;) {
        if (p[i].initialized && p[i].def->fini) p[i].def->fini(p[i].state);
        free(p[i].deps);
        free(p[i].path);
        if (p[i].dl) dlclose(p[i].dl);
    }
    free(p);
}

int as_plugins_apply_defaults(struct as_engine_plugin *p, size_t n, struct as_config *cfg,
                              char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct as_plugin *def = p[i].def;
        for (size_t k = 0; k < def->noptions; k++) {
            const struct as_option_def *o = &def->options[k];
            const char *expected;
            if (!o->name || !*o->name) {
                snprintf(err, errlen, "plugin %s: option %zu has no name", def->name, k);
                return -1;
            }
            if (!o->default_value) continue;
            if (as_config_value_ok(o->type, o->default_value, &expected) < 0) {
                snprintf(err, errlen, "plugin %s: default '%s' of option '%s' is not %s",
                         def->name, o->default_value, o->name, expected);
                return -1;
            }
            char key[256];
            snprintf(key, sizeof key, "%s.%s", def->name, o->name);
            const char *const *items;
            if (!as_config_find(cfg, key) && as_config_list(cfg, key, &items) == 0)
                as_config_set(cfg, key, o->default_value, "default", 0);
        }
    }
    return 0;
}

/* ---- what plugins call during init --------------------------------------- */

static const char *opt_key(const struct as_plugin_ctx *c, const char *name, char *buf,
                           size_t len)
{
    snprintf(buf, len, "%s.%s", c->def->name, name);
    return buf;
}

int as_plugin_opt_bool(const struct as_plugin_ctx *c, const char *name)
{
    char k[256];
    return as_config_bool(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), 0);
}

long long as_plugin_opt_int(const struct as_plugin_ctx *c, const char *name)
{
    char k[256];
    return as_config_int(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), 0);
}

double as_plugin_opt_double(const struct as_plugin_ctx *c, const char *name)
{
    char k[256];
    return as_config_double(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), 0);
}

const char *as_plugin_opt_string(const struct as_plugin_ctx *c, const char *name)
{
    char k[256];
    return as_config_str(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), NULL);
}

size_t as_plugin_opt_list(const struct as_plugin_ctx *c, const char *name,
                          const char *const **items)
{
    char k[256];
    return as_config_list(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), items);
}

double as_plugin_opt_duration(const struct as_plugin_ctx *c, const char *name)
{
    char k[256];
    return as_config_duration(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), 0);
}

unsigned long long as_plugin_opt_size(const struct as_plugin_ctx *c, const char *name)
{
    char k[256];
    return as_config_size(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), 0);
}

int as_plugin_dns_reserve(struct as_plugin_ctx *c, unsigned queries)
{
    if (!c || queries > AS_DNS_RESERVE_MAX) return -1;
    c->dns_reserve = queries;
    return 0;
}

void as_plugin_set_error(struct as_plugin_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

struct event_base *as_plugin_event_base(const struct as_plugin_ctx *c) { return as_engine_base(c->engine); }
const char *as_plugin_name(const struct as_plugin_ctx *c) { return c->def->name; }
