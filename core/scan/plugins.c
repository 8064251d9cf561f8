/*
 * plugins.c - see plugins.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "services/dns.h"
#include "scan/plugins.h"
#include "util/util.h"

/* Where load_one() says which file it is mapping (see as_plugins_track). */
static char *track_buf;
static size_t track_len;

void as_plugins_track(char *buf, size_t len)
{
    track_buf = buf;
    track_len = len;
}

static void track(const char *fmt, const char *path)
{
    if (track_buf && track_len) snprintf(track_buf, track_len, fmt, path);
}

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

static const char *file_kind(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a fifo";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
    return "not a regular file";
}

/* Checks that every byte the dynamic loader will read or map lies inside
 * the file.  ld.so mmap()s each PT_LOAD segment by its offset and size as
 * the headers state them, without comparing them to the file's size, and
 * pages of a mapping past the end of the file raise SIGBUS when touched:
 * a plugin copied half way killed whoever loaded it.  The section header
 * table comes last in files from the usual linkers, so it ending past EOF
 * is how a truncation that spares the segments (debug info) shows. */
static int elf_check(int fd, off_t size, char *why, size_t whylen)
{
    ElfW(Ehdr) eh;
    if (size == 0) {
        snprintf(why, whylen, "empty file (0 bytes): a copy that did not finish?");
        return -1;
    }
    memset(&eh, 0, sizeof eh);
    ssize_t got = pread(fd, &eh, sizeof eh, 0);
    if (got < 0) {
        snprintf(why, whylen, "cannot read: %s", strerror(errno));
        return -1;
    }
    if (got < SELFMAG || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        snprintf(why, whylen, "not an ELF file (a shared object was expected)");
        return -1;
    }
    if ((size_t)got < sizeof eh) {
        snprintf(why, whylen, "truncated: %lld bytes, shorter than an ELF header",
                 (long long)size);
        return -1;
    }
    static const union { uint16_t v; unsigned char b[2]; } order = { 1 };
    int host_data = order.b[0] ? ELFDATA2LSB : ELFDATA2MSB;
    int host_class = sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32;
    if (eh.e_ident[EI_CLASS] != host_class || eh.e_ident[EI_DATA] != host_data) {
        snprintf(why, whylen, "built for another architecture (ELF class %d, data %d; "
                 "this host is %d, %d)", eh.e_ident[EI_CLASS], eh.e_ident[EI_DATA],
                 host_class, host_data);
        return -1;
    }
    if (eh.e_type != ET_DYN) {
        snprintf(why, whylen, "not a shared object (ELF type %u): build it with -shared",
                 (unsigned)eh.e_type);
        return -1;
    }
    uint64_t fsize = (uint64_t)size;
    if (eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 || eh.e_phnum == PN_XNUM ||
        eh.e_phoff > fsize || (fsize - eh.e_phoff) / sizeof(ElfW(Phdr)) < eh.e_phnum) {
        snprintf(why, whylen, "truncated or corrupt: program headers (%u at offset %llu) "
                 "do not fit in the file's %llu bytes", (unsigned)eh.e_phnum,
                 (unsigned long long)eh.e_phoff, (unsigned long long)fsize);
        return -1;
    }
    ElfW(Phdr) ph[64];
    size_t nph = eh.e_phnum, nload = 0, ndyn = 0;
    if (nph > AS_ARRAY_LEN(ph)) {
        snprintf(why, whylen, "corrupt: %zu program headers", nph);
        return -1;
    }
    if (pread(fd, ph, nph * sizeof *ph, (off_t)eh.e_phoff) != (ssize_t)(nph * sizeof *ph)) {
        snprintf(why, whylen, "cannot read the program headers: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < nph; i++) {
        if (ph[i].p_type == PT_LOAD) nload++;
        if (ph[i].p_type == PT_DYNAMIC) ndyn++;
        if (ph[i].p_filesz == 0) continue;
        if (ph[i].p_offset > fsize || fsize - ph[i].p_offset < ph[i].p_filesz) {
            snprintf(why, whylen, "truncated: segment %zu (type %#x) needs bytes %llu to "
                     "%llu, the file has %llu", i, (unsigned)ph[i].p_type,
                     (unsigned long long)ph[i].p_offset,
                     (unsigned long long)(ph[i].p_offset + ph[i].p_filesz),
                     (unsigned long long)fsize);
            return -1;
        }
        if (ph[i].p_type == PT_LOAD && ph[i].p_filesz > ph[i].p_memsz) {
            snprintf(why, whylen, "corrupt: segment %zu is larger in the file than in memory",
                     i);
            return -1;
        }
    }
    if (nload == 0 || ndyn == 0) {
        snprintf(why, whylen, "not a loadable shared object (no %s segment)",
                 nload ? "dynamic" : "loadable");
        return -1;
    }
    if (eh.e_shoff && (eh.e_shentsize != sizeof(ElfW(Shdr)) || eh.e_shoff > fsize ||
                       (fsize - eh.e_shoff) / sizeof(ElfW(Shdr)) < (eh.e_shnum ? eh.e_shnum : 1))) {
        snprintf(why, whylen, "truncated: the section headers end past the file's %llu bytes "
                 "(a copy that did not finish?)", (unsigned long long)fsize);
        return -1;
    }
    return 0;
}

/* Opens path once and validates it; returns the descriptor or -1 with
 * err.  stat() first so that opening is never what reveals a fifo or a
 * device (opening one can block or have effects). */
static int open_checked(const char *path, char *err, size_t errlen)
{
    struct stat st, fst;
    char why[256];
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "plugin %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "plugin %s: %s, not a shared object file", path,
                 file_kind(st.st_mode));
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "plugin %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &fst) < 0 || !S_ISREG(fst.st_mode)) {
        snprintf(err, errlen, "plugin %s: replaced by %s while being opened", path,
                 file_kind(fst.st_mode));
        close(fd);
        return -1;
    }
    if (elf_check(fd, fst.st_size, why, sizeof why) < 0) {
        snprintf(err, errlen, "plugin %s: %s", path, why);
        close(fd);
        return -1;
    }
    return fd;
}

/* dlopen()s the file behind fd, the one elf_check() read, rather than the
 * name, which a deploy may point at another file in between.  Without
 * /proc (some chroots) the name is all there is. */
static void *dlopen_fd(int fd, const char *path)
{
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
    if (access(fdpath, F_OK) < 0) return dlopen(path, RTLD_NOW | RTLD_LOCAL);
    return dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
}

static int load_one(const char *path, struct as_engine_plugin *p, char *err, size_t errlen)
{
    track("%s", path);
    int fd = open_checked(path, err, errlen);
    if (fd < 0) return -1;
    void *dl = dlopen_fd(fd, path);
    if (!dl) {
        snprintf(err, errlen, "plugin %s: cannot load: %s", path, dlerror());
        close(fd);
        return -1;
    }
    const struct as_plugin *def = dlsym(dl, AS_PLUGIN_SYMBOL);
    const char *why = NULL;
    char buf[256];
    if (!def) {
        snprintf(buf, sizeof buf, "no '%s' symbol: not an authscan plugin", AS_PLUGIN_SYMBOL);
        why = buf;
    } else if (def->abi_major != AS_PLUGIN_ABI_MAJOR || def->abi_minor > AS_PLUGIN_ABI_MINOR) {
        /* Only the two leading fields may be read before the versions match. */
        snprintf(buf, sizeof buf, "built for plugin ABI %u.%u, this authscan provides %d.%d: "
                 "rebuild the plugin against this authscan/plugin.h", def->abi_major,
                 def->abi_minor, AS_PLUGIN_ABI_MAJOR, AS_PLUGIN_ABI_MINOR);
        why = buf;
    } else if (!valid_plugin_name(def->name)) {
        snprintf(buf, sizeof buf, "invalid name '%.64s' (want [a-z0-9_]+)",
                 def->name ? def->name : "(null)");
        why = buf;
    } else if ((def->nsymbols && !def->symbols) || (def->noptions && !def->options)) {
        why = "symbol or option table missing";
    }
    if (why) {
        snprintf(err, errlen, "plugin %s: %s", path, why);
        dlclose(dl);
        close(fd);
        return -1;
    }
    memset(p, 0, sizeof *p);
    p->def = def;
    p->dl = dl;
    p->fd = fd;
    p->path = xstrdup(path);
    return 0;
}

/* The plugins `def` runs after when they are loaded (ABI 1.3 member, read
 * only from plugins built with it). */
static const char *const *soft_deps(const struct as_plugin *def)
{
    return def->abi_minor >= 3 ? def->after : NULL;
}

static size_t find_plugin(const struct as_engine_plugin *in, size_t n, const char *name)
{
    size_t j;
    for (j = 0; j < n; j++)
        if (strcmp(in[j].def->name, name) == 0) break;
    return j;
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
    for (d = soft_deps(in[i].def); d && *d; d++) {
        size_t j = find_plugin(in, n, *d);
        if (j < n && visit(in, n, j, state, order, no, err, errlen) < 0) return -1;
    }
    state[i] = 2;
    order[(*no)++] = i;
    return 0;
}

static void off_add(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = xstrdup(s);
}

int as_plugins_off_has(char *const *v, size_t n, const char *name)
{
    return in_list((const char *const *)v, n, name);
}

void as_plugins_off_free(struct as_plugins_off *off)
{
    for (size_t i = 0; i < off->nnames; i++) free(off->names[i]);
    for (size_t i = 0; i < off->nsymbols; i++) free(off->symbols[i]);
    free(off->names);
    free(off->symbols);
    memset(off, 0, sizeof *off);
}

int as_plugins_load(const char *dir, const struct as_config *cfg,
                    struct as_engine_plugin **out, size_t *nout, struct as_plugins_off *off,
                    char *err, size_t errlen)
{
    *out = NULL;
    *nout = 0;
    memset(off, 0, sizeof *off);
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
    if (nf) qsort(files, nf, sizeof *files, cmp_str);   /* files is NULL when nf is 0 */

    const char *const *enable, *const *disable;
    size_t nen = as_config_list(cfg, "plugins.enable", &enable);
    size_t ndis = as_config_list(cfg, "plugins.disable", &disable);

    struct as_engine_plugin *loaded = xcalloc(nf + 1, sizeof *loaded);
    /* Descriptors of skipped files stay open until the end: a new file
     * reusing the number would be dlopen()ed under the same
     * /proc/self/fd/N name, which ld.so matches against objects it has
     * not unmapped (RTLD_NODELETE, unique symbols). */
    int *closefds = xcalloc(nf + 1, sizeof *closefds);
    size_t nl = 0, nclose = 0;
    int rc = 0;
    for (size_t i = 0; i < nf && rc == 0; i++) {
        struct as_engine_plugin p;
        if (load_one(files[i], &p, err, errlen) < 0) {
            rc = -1;
            break;
        }
        const char *name = p.def->name;
        if ((nen && !in_list(enable, nen, name)) || in_list(disable, ndis, name)) {
            /* switched off on purpose: rules and settings may still name it */
            off_add(&off->names, &off->nnames, name);
            for (size_t k = 0; k < p.def->nsymbols; k++)
                if (p.def->symbols[k].name)
                    off_add(&off->symbols, &off->nsymbols, p.def->symbols[k].name);
            dlclose(p.dl);
            closefds[nclose++] = p.fd;
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
            closefds[nclose++] = p.fd;
            free(p.path);
        }
    }
    track("%s", "");
    for (size_t i = 0; i < nclose; i++) close(closefds[i]);
    free(closefds);
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
                const char *const *sp = soft_deps(sorted[i].def);
                size_t nd = 0, ns = 0;
                for (const char *const *q = dp; q && *q; q++) nd++;
                for (const char *const *q = sp; q && *q; q++) ns++;
                sorted[i].deps = xcalloc(nd + ns + 1, sizeof *sorted[i].deps);
                for (size_t k = 0; k < nd; k++)
                    for (size_t j = 0; j < nl; j++)
                        if (strcmp(sorted[j].def->name, dp[k]) == 0) sorted[i].deps[sorted[i].ndeps++] = j;
                for (size_t k = 0; k < ns; k++) {
                    size_t j = find_plugin(sorted, nl, sp[k]);
                    if (j < nl) sorted[i].deps[sorted[i].ndeps++] = j;
                }
            }
            free(loaded);
            loaded = sorted;
        }
        free(state);
        free(order);
    }
    if (rc < 0) {
        as_plugins_unload(loaded, nl, NULL, NULL);
        as_plugins_off_free(off);
        return -1;
    }
    *out = loaded;
    *nout = nl;
    return 0;
}

void as_plugins_unload(struct as_engine_plugin *p, size_t n, void (*after_fini)(void *),
                       void *arg)
{
    if (!p) return;
    for (size_t i = n; i-- > 0;)
        if (p[i].initialized && p[i].def->fini) p[i].def->fini(p[i].state);
    if (after_fini) after_fini(arg);
    for (size_t i = n; i-- > 0;) {
        free(p[i].deps);
        free(p[i].path);
        if (p[i].dl) {
            dlclose(p[i].dl);
            close(p[i].fd);
        }
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
                as_config_set(cfg, key, o->default_value, AS_PLUGINS_DEFAULT_ORIGIN, 0);
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

void *as_plugin_shared(struct as_plugin_ctx *c, const char *name, void *(*make)(void *arg),
                       void (*drop)(void *obj), void *arg)
{
    if (!c || !name || !make) return NULL;
    return as_engine_shared(c->engine, name, make, drop, arg);
}

void as_plugin_set_error(struct as_plugin_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->error_located = 0;
}

static int is_default(const struct as_config_entry *e)
{
    return e->line == 0 && strcmp(e->file, AS_PLUGINS_DEFAULT_ORIGIN) == 0;
}

/* "where: key<what>: " then the plugin's message.  where is the entry's
 * file:line, or the plugin itself when the value is its declared default
 * (a bug of the plugin, not of the site's config). */
static int opt_verror(struct as_plugin_ctx *c, const struct as_config_entry *e,
                      const char *key, const char *what, const char *fmt, va_list ap)
{
    int n;
    if (e && !is_default(e))
        n = e->line > 0 ? snprintf(c->error, sizeof c->error, "%s:%d: %s%s: ", e->file,
                                   e->line, key, what)
                        : snprintf(c->error, sizeof c->error, "%s: %s%s: ", e->file, key, what);
    else
        n = snprintf(c->error, sizeof c->error, "plugin %s: %s %s%s: ", c->def->name,
                     e ? "declared default" : "unset option", key, what);
    if (n >= 0 && (size_t)n < sizeof c->error)
        vsnprintf(c->error + n, sizeof c->error - (size_t)n, fmt, ap);
    c->error_located = e && !is_default(e);
    return -1;
}

int as_plugin_opt_error(struct as_plugin_ctx *c, const char *name, const char *fmt, ...)
{
    char k[256], what[128];
    const struct as_config_entry *e =
        as_config_find(as_engine_config(c->engine), opt_key(c, name, k, sizeof k));
    /* long values are cut: the key and the reason must fit */
    snprintf(what, sizeof what, " = %.80s%s", e ? e->value : "",
             e && strlen(e->value) > 80 ? "..." : "");
    va_list ap;
    va_start(ap, fmt);
    opt_verror(c, e, k, e ? what : "", fmt, ap);
    va_end(ap);
    return -1;
}

int as_plugin_opt_item_error(struct as_plugin_ctx *c, const char *name, const char *item,
                             const char *fmt, ...)
{
    char k[256], what[128];
    const struct as_config_entry *e =
        as_config_find_item(as_engine_config(c->engine), opt_key(c, name, k, sizeof k), item);
    snprintf(what, sizeof what, " item '%.80s%s'", item, strlen(item) > 80 ? "..." : "");
    va_list ap;
    va_start(ap, fmt);
    opt_verror(c, e, k, what, fmt, ap);
    va_end(ap);
    return -1;
}

int as_plugin_opt_int_range(struct as_plugin_ctx *c, const char *name, long long min,
                            long long max, long long *out)
{
    char k[256];
    const struct as_config_entry *e =
        as_config_find(as_engine_config(c->engine), opt_key(c, name, k, sizeof k));
    long long v;
    if (!e || as_parse_int(e->value, &v) < 0)
        return as_plugin_opt_error(c, name, "expected an integer from %lld to %lld", min, max);
    if (v < min || v > max)
        return as_plugin_opt_error(c, name, "out of range: expected %lld to %lld", min, max);
    *out = v;
    return 0;
}

int as_plugin_opt_is_set(const struct as_plugin_ctx *c, const char *name)
{
    char k[256];
    const struct as_config_entry *e =
        as_config_find(as_engine_config(c->engine), opt_key(c, name, k, sizeof k));
    return e && !is_default(e);
}

struct event_base *as_plugin_event_base(const struct as_plugin_ctx *c) { return as_engine_base(c->engine); }
const char *as_plugin_name(const struct as_plugin_ctx *c) { return c->def->name; }
