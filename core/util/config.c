/*
 * config.c - see config.h.
 *
 * The parser does not know which keys are lists, so it stores one raw
 * entry per line and records enough about where each came from to apply
 * the repeated-key rules later:
 *
 *   file_id  one per file load (or as_config_set call): two scalar lines
 *            with the same key and file_id are a duplicate, which only
 *            as_config_check can report because only it knows the type;
 *   seg      one per uninterrupted stretch of a file: a file that includes
 *            another resumes in a new segment.  A segment that sets a key
 *            with plain "=" replaces what earlier segments said about it;
 *            lines within one segment accumulate (lists).
 *
 * Entries with the same key are chained (prev) and indexed by a hash table
 * of the last one, so override bookkeeping is amortized O(1) per line.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/config.h"
#include "util/util.h"

#define CFG_MAX_LINE      (64 * 1024)
#define CFG_MAX_FILE      (16 * 1024 * 1024)
#define CFG_MAX_DEPTH     16
#define CFG_MAX_FILES     1024       /* files read by one top-level load */
#define CFG_MSG_VALUE_MAX 80         /* values quoted in messages are cut here */

struct cfg_entry {
    struct as_config_entry pub;
    unsigned file_id;
    unsigned seg;
    size_t prev;                     /* index+1 of previous same-key entry, 0 none */
    unsigned char append;            /* written "key += value" */
    unsigned char overridden;        /* a later segment replaced it */
    unsigned char claimed;           /* matched by some as_config_check() schema */
};

struct cfg_list {                    /* a computed as_config_list() result */
    char *key;
    size_t gen;                      /* entry count when computed */
    char **items;                    /* NULL-terminated */
    size_t n;
    struct cfg_list *next;
};

/* Derived data that const getters fill in lazily; kept behind a pointer so
 * they can update it without casting the const away. */
struct cfg_cache {
    size_t *live;                    /* indexes of entries not overridden */
    size_t nlive;
    size_t live_gen;                 /* entry count when live was built; -1 never */
    struct cfg_list *lists;          /* newest first; stale ones kept for pointer validity */
};

struct as_config {
    struct cfg_entry **e;            /* individually allocated: stable pointers */
    size_t n, cap;
    size_t *slots;                   /* hash key -> index+1 of last entry */
    size_t nslots;
    char **names;                    /* interned file names */
    size_t nnames, capnames;
    unsigned next_file, next_seg;
    struct cfg_cache *cache;
};

/* ------------------------------------------------------------------ */
/* Messages                                                            */

static void cfg_verr(char *err, size_t errlen, const char *file, int line,
                     const char *fmt, va_list ap)
{
    if (!err || !errlen) return;
    int n = line > 0 ? snprintf(err, errlen, "%s:%d: ", file, line)
                     : snprintf(err, errlen, "%s: ", file);
    if (n < 0 || (size_t)n >= errlen) return;
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

static void cfg_err(char *err, size_t errlen, const char *file, int line,
                    const char *fmt, ...) AS_PRINTF(5, 6);

static void cfg_err(char *err, size_t errlen, const char *file, int line,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_verr(err, errlen, file, line, fmt, ap);
    va_end(ap);
}

int as_config_error(char *err, size_t errlen, const struct as_config_entry *e,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_verr(err, errlen, e ? e->file : "configuration", e ? e->line : 0, fmt, ap);
    va_end(ap);
    return -1;
}

const char *as_config_where(const struct as_config_entry *e, char *buf, size_t len)
{
    if (!e) snprintf(buf, len, "configuration");
    else if (e->line > 0) snprintf(buf, len, "%s:%d", e->file, e->line);
    else snprintf(buf, len, "%s", e->file);
    return buf;
}

/* A value as shown in a message: long ones are cut so the key and the
 * expectation after them still fit. */
static const char *cfg_show(const char *v, char *buf, size_t size)
{
    size_t n = strlen(v);
    if (n < CFG_MSG_VALUE_MAX || size < CFG_MSG_VALUE_MAX + 4) return v;
    memcpy(buf, v, CFG_MSG_VALUE_MAX);
    memcpy(buf + CFG_MSG_VALUE_MAX, "...", 4);
    return buf;
}

/* ------------------------------------------------------------------ */
/* Storage                                                             */

struct as_config *as_config_new(void)
{
    struct as_config *cfg = xcalloc(1, sizeof *cfg);
    cfg->cache = xcalloc(1, sizeof *cfg->cache);
    cfg->cache->live_gen = (size_t)-1;
    return cfg;
}

void as_config_free(struct as_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < cfg->n; i++) {
        free((char *)cfg->e[i]->pub.key);
        free((char *)cfg->e[i]->pub.value);
        free(cfg->e[i]);
    }
    free(cfg->e);
    free(cfg->slots);
    for (size_t i = 0; i < cfg->nnames; i++) free(cfg->names[i]);
    free(cfg->names);
    struct cfg_list *l = cfg->cache->lists;
    while (l) {
        struct cfg_list *next = l->next;
        for (size_t i = 0; i < l->n; i++) free(l->items[i]);
        free(l->items);
        free(l->key);
        free(l);
        l = next;
    }
    free(cfg->cache->live);
    free(cfg->cache);
    free(cfg);
}

static const char *cfg_intern(struct as_config *cfg, const char *name)
{
    /* The same file is often named by every entry it holds: reuse the
     * last name instead of copying it per line. */
    if (cfg->nnames && strcmp(cfg->names[cfg->nnames - 1], name) == 0)
        return cfg->names[cfg->nnames - 1];
    if (cfg->nnames == cfg->capnames) {
        cfg->capnames = cfg->capnames ? cfg->capnames * 2 : 8;
        cfg->names = xrealloc(cfg->names, cfg->capnames * sizeof *cfg->names);
    }
    cfg->names[cfg->nnames] = xstrdup(name);
    return cfg->names[cfg->nnames++];
}

static size_t cfg_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;           /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

/* Slot of key: either the one holding it or the empty one to insert at. */
static size_t *cfg_slot(const struct as_config *cfg, const char *key)
{
    size_t mask = cfg->nslots - 1;
    for (size_t i = cfg_hash(key) & mask;; i = (i + 1) & mask) {
        size_t v = cfg->slots[i];
        if (!v || strcmp(cfg->e[v - 1]->pub.key, key) == 0) return &cfg->slots[i];
    }
}

static void cfg_rehash(struct as_config *cfg)
{
    size_t old = cfg->nslots;
    size_t *olds = cfg->slots;
    cfg->nslots = old ? old * 2 : 64;
    cfg->slots = xcalloc(cfg->nslots, sizeof *cfg->slots);
    for (size_t i = 0; i < old; i++)
        if (olds[i]) *cfg_slot(cfg, cfg->e[olds[i] - 1]->pub.key) = olds[i];
    free(olds);
}

/* The last entry for key, or NULL. */
static struct cfg_entry *cfg_last(const struct as_config *cfg, const char *key)
{
    if (!cfg->nslots) return NULL;
    size_t v = *cfg_slot(cfg, key);
    return v ? cfg->e[v - 1] : NULL;
}

static void cfg_add(struct as_config *cfg, const char *key, const char *value,
                    const char *file, int line, int quoted, int append,
                    unsigned file_id, unsigned seg)
{
    if (cfg->n == cfg->cap) {
        cfg->cap = cfg->cap ? cfg->cap * 2 : 64;
        cfg->e = xrealloc(cfg->e, cfg->cap * sizeof *cfg->e);
    }
    if ((cfg->n + 1) * 2 > cfg->nslots) cfg_rehash(cfg);

    struct cfg_entry *en = xcalloc(1, sizeof *en);
    en->pub.key = xstrdup(key);
    en->pub.value = xstrdup(value);
    en->pub.file = file;
    en->pub.line = line;
    en->pub.quoted = quoted;
    en->file_id = file_id;
    en->seg = seg;
    en->append = (unsigned char)(append != 0);

    size_t *slot = cfg_slot(cfg, key);
    en->prev = *slot;
    cfg->e[cfg->n++] = en;
    *slot = cfg->n;

    /* A plain "=" replaces whatever earlier segments said.  Once an entry
     * is overridden, all before it already are, and a plain line earlier
     * in this segment has done the marking: both end the walk. */
    if (!append) {
        for (size_t p = en->prev; p; p = cfg->e[p - 1]->prev) {
            struct cfg_entry *o = cfg->e[p - 1];
            if (o->seg == seg) {
                if (!o->append) break;
                continue;
            }
            if (o->overridden) break;
            o->overridden = 1;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Lexical helpers                                                     */

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static int is_keych(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* [A-Za-z0-9_.-]+ without empty dot-separated segments. */
static int key_valid(const char *k, size_t n)
{
    if (n == 0 || k[0] == '.' || k[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_keych(k[i])) return 0;
        if (k[i] == '.' && k[i + 1] == '.') return 0;
    }
    return 1;
}

/* Reads a quoted string starting at *pp (on the opening quote), appending
 * the unescaped text to out (may be NULL to only validate).  Leaves *pp
 * after the closing quote.  Returns NULL or a static error. */
static const char *scan_quoted(const char **pp, struct sbuf *out)
{
    const char *p = *pp + 1;
    for (;;) {
        char c = *p;
        if (c == '\0') return "unterminated quoted string";
        if (c == '"') break;
        if (c == '\\') {
            char d;
            switch (p[1]) {
            case '"': d = '"'; break;
            case '\\': d = '\\'; break;
            case 'n': d = '\n'; break;
            case 't': d = '\t'; break;
            case '\0': return "unterminated quoted string";
            default: return "bad escape in quoted string (use \\\" \\\\ \\n \\t)";
            }
            if (out) sbuf_addc(out, d);
            p += 2;
            continue;
        }
        if (out) sbuf_addc(out, c);
        p++;
    }
    *pp = p + 1;
    return NULL;
}

/* End of a bare value starting at v: the end of the line or a '#' that is
 * outside quotes and preceded by blank space.  Quotes inside are checked
 * so that list splitting can rely on them. */
static const char *scan_bare(const char *v, const char *line, const char **end)
{
    const char *p = v;
    while (*p) {
        if (*p == '"') {
            const char *e = scan_quoted(&p, NULL);
            if (e) return e;
            continue;
        }
        if (*p == '#' && p > line && is_blank(p[-1])) break;
        p++;
    }
    *end = p;
    return NULL;
}

/* Splits a list value at commas outside quotes, trims each item, removes
 * quotes and applies escapes; empty unquoted items are dropped.  Robust
 * against anything as_config_set may be given. */
static void list_split(const char *v, int quoted, char ***items, size_t *n, size_t *cap)
{
    if (quoted) {                          /* one quoted string is one item */
        if (*n + 2 > *cap) { *cap = (*n + 2) * 2; *items = xrealloc(*items, *cap * sizeof **items); }
        (*items)[(*n)++] = xstrdup(v);
        return;
    }
    const char *p = v;
    for (;;) {
        while (is_blank(*p)) p++;
        struct sbuf b = {0};
        int any_quote = 0;
        size_t keep = 0;                   /* length up to the last non-blank or quoted char */
        while (*p && *p != ',') {
            if (*p == '"') {
                any_quote = 1;
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1]) {
                        char d = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : p[1];
                        sbuf_addc(&b, d);
                        p += 2;
                    } else {
                        sbuf_addc(&b, *p++);
                    }
                }
                if (*p == '"') p++;
                keep = b.len;
                continue;
            }
            sbuf_addc(&b, *p);
            if (!is_blank(*p)) keep = b.len;
            p++;
        }
        if (b.data) b.data[keep] = '\0';
        if (keep || any_quote) {
            if (*n + 2 > *cap) { *cap = (*n + 2) * 2; *items = xrealloc(*items, *cap * sizeof **items); }
            (*items)[(*n)++] = b.data ? sbuf_steal(&b) : xstrdup("");
        }
        sbuf_free(&b);
        if (*p != ',') break;
        p++;
    }
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

struct loader {
    struct as_config *cfg;
    char *err;
    size_t errlen;
    int depth;                       /* files currently open */
    char *stack[CFG_MAX_DEPTH + 1];  /* their real paths, for cycle detection */
    int nfiles;
};

struct src {
    const char *name;                /* interned, for entries and messages */
    char *dir;                       /* includes are relative to it */
    unsigned file_id, seg;
    struct sbuf section;             /* current "[prefix]", empty for none */
};

static int load_path(struct loader *ld, const char *path, const char *from, int from_line);

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_glob_magic(const char *s) { return strpbrk(s, "*?[") != NULL; }

static int do_include(struct loader *ld, struct src *s, int lineno, const char *pattern)
{
    if (!*pattern) {
        cfg_err(ld->err, ld->errlen, s->name, lineno, "include needs a file name or pattern");
        return -1;
    }
    struct sbuf full = {0};
    if (pattern[0] != '/' && s->dir) {
        /* The directory is literal text: escape glob characters in it. */
        for (const char *d = s->dir; *d; d++) {
            if (strchr("*?[\\", *d)) sbuf_addc(&full, '\\');
            sbuf_addc(&full, *d);
        }
        sbuf_addc(&full, '/');
    }
    sbuf_adds(&full, pattern);

    glob_t g;
    memset(&g, 0, sizeof g);
    int rc = glob(full.data, GLOB_NOSORT, NULL, &g);
    int ret = 0;
    if (rc == GLOB_NOMATCH) {
        /* A pattern that matches nothing is an empty directory of
         * overrides; a plain name that does not exist is a mistake. */
        if (!is_glob_magic(pattern)) {
            cfg_err(ld->err, ld->errlen, s->name, lineno,
                    "include \"%s\": no such file", pattern);
            ret = -1;
        }
    } else if (rc != 0) {
        cfg_err(ld->err, ld->errlen, s->name, lineno, "include \"%s\": cannot read: %s",
                pattern, rc == GLOB_NOSPACE ? "out of memory" : "read error");
        ret = -1;
    } else {
        /* Lexical (byte) order, independent of the locale. */
        qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, cmp_strp);
        for (size_t i = 0; i < g.gl_pathc && ret == 0; i++)
            ret = load_path(ld, g.gl_pathv[i], s->name, lineno);
    }
    globfree(&g);
    sbuf_free(&full);
    /* Lines after the include form a new segment: for a list key they
     * replace what the included files said, like any later line would. */
    s->seg = ++ld->cfg->next_seg;
    return ret;
}

static int parse_line(struct loader *ld, struct src *s, char *line, int lineno)
{
    const char *name = s->name;
    char *p = line;
    while (is_blank(*p)) p++;
    if (!*p || *p == '#') return 0;

    if (*p == '[') {
        char *close = strchr(p, ']');
        if (!close) {
            cfg_err(ld->err, ld->errlen, name, lineno, "expected ']' to close the section name");
            return -1;
        }
        char *a = p + 1, *b = close;
        while (a < b && is_blank(*a)) a++;
        while (b > a && is_blank(b[-1])) b--;
        if (b > a && !key_valid(a, (size_t)(b - a))) {
            cfg_err(ld->err, ld->errlen, name, lineno, "bad section name '%.*s'", (int)(b - a), a);
            return -1;
        }
        char *r = close + 1;
        while (is_blank(*r)) r++;
        if (*r && *r != '#') {
            cfg_err(ld->err, ld->errlen, name, lineno, "unexpected text after section name");
            return -1;
        }
        sbuf_reset(&s->section);
        sbuf_add(&s->section, a, (size_t)(b - a));
        return 0;
    }

    /* "include" is a directive unless it is used as a key ("include = x"). */
    if (strncmp(p, "include", 7) == 0 && is_blank(p[7])) {
        char *q = p + 7;
        while (is_blank(*q)) q++;
        if (*q != '=' && !(q[0] == '+' && q[1] == '=')) {
            struct sbuf pat = {0};
            const char *e = NULL;
            if (*q == '"') {
                const char *r = q;
                e = scan_quoted(&r, &pat);
                if (!e) {
                    const char *after = r;
                    while (is_blank(*r)) r++;
                    if (*r && !(*r == '#' && r > after))
                        e = "unexpected text after the include pattern";
                }
            } else {
                const char *end;
                e = scan_bare(q, line, &end);
                if (!e) {
                    while (end > q && is_blank(end[-1])) end--;
                    sbuf_add(&pat, q, (size_t)(end - q));
                }
            }
            int rc;
            if (e) {
                cfg_err(ld->err, ld->errlen, name, lineno, "%s", e);
                rc = -1;
            } else {
                rc = do_include(ld, s, lineno, pat.data ? pat.data : "");
            }
            sbuf_free(&pat);
            return rc;
        }
    }

    char *k = p;
    while (is_keych(*p)) p++;
    size_t klen = (size_t)(p - k);
    while (is_blank(*p)) p++;
    int append = 0;
    if (*p == '=') {
        p++;
    } else if (p[0] == '+' && p[1] == '=') {
        append = 1;
        p += 2;
    } else {
        /* Say "bad key" when the line has the shape of an assignment. */
        char *eq = strchr(k, '=');
        if (eq && eq > k && klen > 0) {
            char *ke = eq;
            if (ke > k && ke[-1] == '+') ke--;
            while (ke > k && is_blank(ke[-1])) ke--;
            cfg_err(ld->err, ld->errlen, name, lineno, "bad key '%.*s'", (int)(ke - k), k);
        } else {
            cfg_err(ld->err, ld->errlen, name, lineno, "expected 'key = value'");
        }
        return -1;
    }
    if (klen == 0) {
        cfg_err(ld->err, ld->errlen, name, lineno, "expected 'key = value'");
        return -1;
    }
    if (!key_valid(k, klen)) {
        cfg_err(ld->err, ld->errlen, name, lineno, "bad key '%.*s'", (int)klen, k);
        return -1;
    }

    while (is_blank(*p)) p++;
    struct sbuf val = {0};
    int quoted = 0;
    const char *e = NULL;
    if (*p == '"') {
        const char *r = p;
        e = scan_quoted(&r, &val);
        if (!e) {
            const char *after = r;
            while (is_blank(*r)) r++;
            if (!*r || (*r == '#' && r > after)) {
                quoted = 1;
            } else {
                /* More follows the string ("a,b", c): a bare value that
                 * keeps its quotes, for list splitting. */
                sbuf_reset(&val);
            }
        }
    }
    if (!e && !quoted) {
        const char *end;
        e = scan_bare(p, line, &end);
        if (!e) {
            while (end > p && is_blank(end[-1])) end--;
            sbuf_add(&val, p, (size_t)(end - p));
        }
    }
    if (e) {
        cfg_err(ld->err, ld->errlen, name, lineno, "%s", e);
        sbuf_free(&val);
        return -1;
    }

    struct sbuf key = {0};
    if (s->section.len) {
        sbuf_add(&key, s->section.data, s->section.len);
        sbuf_addc(&key, '.');
    }
    sbuf_add(&key, k, klen);
    cfg_add(ld->cfg, key.data, val.data ? val.data : "", name, lineno, quoted, append,
            s->file_id, s->seg);
    sbuf_free(&key);
    sbuf_free(&val);
    return 0;
}

/* buf has room for a NUL at buf[len]. */
static int parse_buffer(struct loader *ld, struct src *s, char *buf, size_t len)
{
    size_t off = 0;
    int lineno = 0;
    while (off < len) {
        lineno++;
        char *p = buf + off;
        char *nl = memchr(p, '\n', len - off);
        size_t n = nl ? (size_t)(nl - p) : len - off;
        off += n + (nl ? 1 : 0);
        if (n && p[n - 1] == '\r') n--;
        if (n > CFG_MAX_LINE) {
            cfg_err(ld->err, ld->errlen, s->name, lineno, "line too long (limit %d bytes)",
                    CFG_MAX_LINE);
            return -1;
        }
        if (memchr(p, '\0', n)) {
            cfg_err(ld->err, ld->errlen, s->name, lineno, "NUL byte in line");
            return -1;
        }
        p[n] = '\0';
        if (parse_line(ld, s, p, lineno) < 0) return -1;
    }
    return 0;
}

static int parse_source(struct loader *ld, const char *name, const char *dir,
                        char *buf, size_t len)
{
    struct src s = {0};
    s.name = cfg_intern(ld->cfg, name);
    s.dir = dir ? xstrdup(dir) : NULL;
    s.file_id = ++ld->cfg->next_file;
    s.seg = ++ld->cfg->next_seg;
    int rc = parse_buffer(ld, &s, buf, len);
    free(s.dir);
    sbuf_free(&s.section);
    return rc;
}

/* Reads at most CFG_MAX_FILE bytes; *buf gets a spare byte for a NUL. */
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cfg_err(err, errlen, path, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        cfg_err(err, errlen, path, 0, "cannot read: is a directory");
        close(fd);
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *b = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap > CFG_MAX_FILE) break;
            cap *= 2;
            b = xrealloc(b, cap + 1);
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            cfg_err(err, errlen, path, 0, "cannot read: %s", strerror(errno));
            free(b);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > CFG_MAX_FILE) {
        cfg_err(err, errlen, path, 0, "file too large (limit %d MiB)", CFG_MAX_FILE >> 20);
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

static int load_path(struct loader *ld, const char *path, const char *from, int from_line)
{
    if (ld->depth >= CFG_MAX_DEPTH) {
        cfg_err(ld->err, ld->errlen, from, from_line,
                "include depth limit (%d) exceeded by \"%s\"", CFG_MAX_DEPTH, path);
        return -1;
    }
    if (++ld->nfiles > CFG_MAX_FILES) {
        cfg_err(ld->err, ld->errlen, from, from_line,
                "too many included files (limit %d)", CFG_MAX_FILES);
        return -1;
    }
    char *real = realpath(path, NULL);
    if (!real) {
        cfg_err(ld->err, ld->errlen, path, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < ld->depth; i++) {
        if (strcmp(ld->stack[i], real) == 0) {
            cfg_err(ld->err, ld->errlen, from, from_line,
                    "include cycle: \"%s\" is already being read", path);
            free(real);
            return -1;
        }
    }
    char *buf;
    size_t len;
    if (read_file(path, &buf, &len, ld->err, ld->errlen) < 0) {
        free(real);
        return -1;
    }
    ld->stack[ld->depth++] = real;
    char *dir = dir_of(path);
    int rc = parse_source(ld, path, dir, buf, len);
    free(dir);
    ld->depth--;
    free(real);
    free(buf);
    return rc;
}

int as_config_load_file(struct as_config *cfg, const char *path, char *err, size_t errlen)
{
    struct loader ld = { .cfg = cfg, .err = err, .errlen = errlen };
    return load_path(&ld, path, NULL, 0);
}

int as_config_load_string(struct as_config *cfg, const char *name, const char *text,
                          char *err, size_t errlen)
{
    struct loader ld = { .cfg = cfg, .err = err, .errlen = errlen };
    size_t len = strlen(text);
    if (len > CFG_MAX_FILE) {
        cfg_err(err, errlen, name, 0, "file too large (limit %d MiB)", CFG_MAX_FILE >> 20);
        return -1;
    }
    /* A name like "<embedded:x.conf>" is not a path: its includes are
     * relative to the current directory. */
    char *dir = (name[0] != '<' && strchr(name, '/')) ? dir_of(name) : NULL;
    char *buf = xstrndup(text, len);
    int rc = parse_source(&ld, name, dir, buf, len);
    free(buf);
    free(dir);
    return rc;
}

static int is_conf_name(const char *n)
{
    size_t len = strlen(n);
    return n[0] != '.' && len > 5 && strcmp(n + len - 5, ".conf") == 0;
}

int as_config_load_dir(struct as_config *cfg, const char *dir, int optional,
                       char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (optional && errno == ENOENT) return 0;
        cfg_err(err, errlen, dir, 0, "cannot open directory: %s", strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_conf_name(de->d_name)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_strp);

    int rc = 0;
    struct sbuf path = {0};
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            sbuf_reset(&path);
            sbuf_adds(&path, dir);
            if (path.len && path.data[path.len - 1] != '/') sbuf_addc(&path, '/');
            sbuf_adds(&path, names[i]);
            struct stat st;
            /* A directory called x.conf is not a config file. */
            if (stat(path.data, &st) == 0 && S_ISDIR(st.st_mode)) {
                free(names[i]);
                continue;
            }
            rc = as_config_load_file(cfg, path.data, err, errlen);
        }
        free(names[i]);
    }
    sbuf_free(&path);
    free(names);
    return rc;
}

int as_config_set(struct as_config *cfg, const char *key, const char *value,
                  const char *origin, int append)
{
    if (!key || !value || !key_valid(key, strlen(key)) || strlen(value) > CFG_MAX_LINE)
        return -1;
    const char *file = cfg_intern(cfg, origin ? origin : "command line");
    cfg_add(cfg, key, value, file, 0, 0, append, ++cfg->next_file, ++cfg->next_seg);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Access                                                              */

static void live_build(const struct as_config *cfg)
{
    struct cfg_cache *c = cfg->cache;
    if (c->live_gen == cfg->n) return;
    free(c->live);
    c->live = xcalloc(cfg->n ? cfg->n : 1, sizeof *c->live);
    c->nlive = 0;
    for (size_t i = 0; i < cfg->n; i++)
        if (!cfg->e[i]->overridden) c->live[c->nlive++] = i;
    c->live_gen = cfg->n;
}

size_t as_config_count(const struct as_config *cfg)
{
    live_build(cfg);
    return cfg->cache->nlive;
}

const struct as_config_entry *as_config_at(const struct as_config *cfg, size_t i)
{
    live_build(cfg);
    if (i >= cfg->cache->nlive) return NULL;
    return &cfg->e[cfg->cache->live[i]]->pub;
}

const struct as_config_entry *as_config_find(const struct as_config *cfg, const char *key)
{
    struct cfg_entry *en = cfg_last(cfg, key);
    return en ? &en->pub : NULL;
}

size_t as_config_list(const struct as_config *cfg, const char *key,
                      const char *const **items)
{
    static const char *const empty[] = { NULL };
    struct cfg_cache *c = cfg->cache;
    for (struct cfg_list *l = c->lists; l; l = l->next) {
        if (strcmp(l->key, key) != 0) continue;
        if (l->gen == cfg->n) {
            if (items) *items = (const char *const *)l->items;
            return l->n;
        }
        break;                       /* stale: newer entries since */
    }

    /* The live entries of a key are the tail of its chain. */
    size_t nidx = 0;
    for (struct cfg_entry *en = cfg_last(cfg, key); en && !en->overridden;
         en = en->prev ? cfg->e[en->prev - 1] : NULL)
        nidx++;
    if (!nidx) {
        if (items) *items = empty;
        return 0;
    }
    struct cfg_entry **chain = xcalloc(nidx, sizeof *chain);
    size_t j = nidx;
    for (struct cfg_entry *en = cfg_last(cfg, key); j; en = cfg->e[en->prev - 1]) {
        chain[--j] = en;
        if (!j) break;
    }

    struct cfg_list *l = xcalloc(1, sizeof *l);
    size_t cap = 0;
    for (size_t i = 0; i < nidx; i++)
        list_split(chain[i]->pub.value, chain[i]->pub.quoted, &l->items, &l->n, &cap);
    free(chain);
    if (!l->items) l->items = xcalloc(1, sizeof *l->items);
    l->items[l->n] = NULL;
    l->key = xstrdup(key);
    l->gen = cfg->n;
    l->next = c->lists;
    c->lists = l;
    if (items) *items = (const char *const *)l->items;
    return l->n;
}

const struct as_config_entry *as_config_find_item(const struct as_config *cfg, const char *key,
                                                  const char *item)
{
    /* The live entries of a key are the tail of its chain; the first in
     * load order that holds the item is the line that brought it. */
    const struct cfg_entry *found = NULL;
    for (struct cfg_entry *en = cfg_last(cfg, key); en && !en->overridden;
         en = en->prev ? cfg->e[en->prev - 1] : NULL) {
        char **items = NULL;
        size_t n = 0, cap = 0;
        list_split(en->pub.value, en->pub.quoted, &items, &n, &cap);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(items[i], item) == 0) found = en;
            free(items[i]);
        }
        free(items);
    }
    return found ? &found->pub : as_config_find(cfg, key);
}

int as_config_bool(const struct as_config *cfg, const char *key, int def)
{
    const struct as_config_entry *en = as_config_find(cfg, key);
    int v;
    return en && as_parse_bool(en->value, &v) == 0 ? v : def;
}

long long as_config_int(const struct as_config *cfg, const char *key, long long def)
{
    const struct as_config_entry *en = as_config_find(cfg, key);
    long long v;
    return en && as_parse_int(en->value, &v) == 0 ? v : def;
}

double as_config_double(const struct as_config *cfg, const char *key, double def)
{
    const struct as_config_entry *en = as_config_find(cfg, key);
    double v;
    return en && as_parse_double(en->value, &v) == 0 ? v : def;
}

const char *as_config_str(const struct as_config *cfg, const char *key, const char *def)
{
    const struct as_config_entry *en = as_config_find(cfg, key);
    return en ? en->value : def;
}

double as_config_duration(const struct as_config *cfg, const char *key, double def)
{
    const struct as_config_entry *en = as_config_find(cfg, key);
    double v;
    return en && as_parse_duration(en->value, &v) == 0 ? v : def;
}

unsigned long long as_config_size(const struct as_config *cfg, const char *key,
                                  unsigned long long def)
{
    const struct as_config_entry *en = as_config_find(cfg, key);
    unsigned long long v;
    return en && as_parse_size(en->value, &v) == 0 ? v : def;
}

/* ------------------------------------------------------------------ */
/* Validation                                                          */

/* Dotted key against a schema pattern where a "*" segment matches any one
 * non-empty segment. */
static int key_match(const char *pat, const char *key)
{
    for (;;) {
        const char *pe = strchr(pat, '.'), *ke = strchr(key, '.');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t kl = ke ? (size_t)(ke - key) : strlen(key);
        if (pl == 1 && pat[0] == '*') {
            if (kl == 0) return 0;
        } else if (pl != kl || memcmp(pat, key, pl) != 0) {
            return 0;
        }
        if (!pe || !ke) return !pe && !ke;
        pat = pe + 1;
        key = ke + 1;
    }
}

static const struct as_config_key *schema_find(const struct as_config_key *schema, size_t n,
                                               const char *rel)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(schema[i].key, rel) == 0) return &schema[i];
    for (size_t i = 0; i < n; i++)
        if (strchr(schema[i].key, '*') && key_match(schema[i].key, rel)) return &schema[i];
    return NULL;
}

/* Validates one claimed entry; 0 or -1 with err filled. */
static int entry_check(const struct as_config *cfg, const struct cfg_entry *en,
                       const struct as_config_key *k, char *err, size_t errlen)
{
    const struct as_config_entry *pe = &en->pub;
    if (k->type == AS_OPT_LIST) return 0;
    if (en->append) {
        cfg_err(err, errlen, pe->file, pe->line,
                "'+=' used with '%s', which is not a list", pe->key);
        return -1;
    }
    /* Lines 0 (as_config_set) each have their own file_id. */
    for (size_t p = en->prev; p; p = cfg->e[p - 1]->prev) {
        const struct cfg_entry *o = cfg->e[p - 1];
        if (o->file_id == en->file_id) {
            cfg_err(err, errlen, pe->file, pe->line,
                    "duplicate key '%s' (first set at line %d)", pe->key, o->pub.line);
            return -1;
        }
    }
    const char *expected;
    if (as_config_value_ok(k->type, pe->value, &expected) < 0) {
        char buf[CFG_MSG_VALUE_MAX + 4];
        cfg_err(err, errlen, pe->file, pe->line, "bad value '%s' for '%s': %s",
                cfg_show(pe->value, buf, sizeof buf), pe->key, expected);
        return -1;
    }
    return 0;
}

int as_config_check(const struct as_config *cfg, const char *prefix,
                    const struct as_config_key *schema, size_t n,
                    char *err, size_t errlen)
{
    const char *pre = prefix ? prefix : "";
    size_t plen = strlen(pre);
    int need_dot = plen && pre[plen - 1] != '.';

    for (size_t i = 0; i < n; i++) {
        const char *expected;
        if (schema[i].default_value &&
            as_config_value_ok(schema[i].type, schema[i].default_value, &expected) < 0) {
            cfg_err(err, errlen, "schema", 0, "bad default '%s' for '%s%s%s': %s",
                    schema[i].default_value, pre, need_dot ? "." : "", schema[i].key, expected);
            return -1;
        }
    }

    /* Every matching entry is claimed, even after the first error, so that
     * as_config_check_unclaimed never blames a key some schema knows. */
    int ret = 0;
    for (size_t i = 0; i < cfg->n; i++) {
        struct cfg_entry *en = cfg->e[i];
        const char *rel = en->pub.key;
        if (plen) {
            if (strncmp(rel, pre, plen) != 0) continue;
            rel += plen;
            if (need_dot) {
                if (*rel != '.') continue;
                rel++;
            }
        }
        const struct as_config_key *k = schema_find(schema, n, rel);
        if (!k) {
            if (ret == 0) {
                cfg_err(err, errlen, en->pub.file, en->pub.line, "unknown key '%s'", en->pub.key);
                ret = -1;
            }
            continue;
        }
        en->claimed = 1;
        if (ret == 0 && entry_check(cfg, en, k, err, errlen) < 0) ret = -1;
    }
    return ret;
}

int as_config_check_unclaimed(const struct as_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n; i++) {
        const struct cfg_entry *en = cfg->e[i];
        if (!en->claimed) {
            cfg_err(err, errlen, en->pub.file, en->pub.line, "unknown key '%s'", en->pub.key);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Value parsers                                                       */

/* strtod in the C locale whatever the process locale says: "1.5" must
 * not depend on LC_NUMERIC. */
static double c_strtod(const char *s, char **end)
{
    static locale_t c_loc;
    if (!c_loc) c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    return c_loc ? strtod_l(s, end, c_loc) : strtod(s, end);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Length of a decimal number at s: [digits][.digits] with at least one
 * digit, plus an exponent when allowed.  0 if there is none. */
static size_t scan_decimal(const char *s, int allow_exp)
{
    size_t i = 0, digits = 0;
    while (is_digit(s[i])) { i++; digits++; }
    if (s[i] == '.') {
        i++;
        while (is_digit(s[i])) { i++; digits++; }
    }
    if (!digits) return 0;
    if (allow_exp && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (is_digit(s[j])) {
            while (is_digit(s[j])) j++;
            i = j;
        }
    }
    return i;
}

int as_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    for (size_t i = 0; i < AS_ARRAY_LEN(yes); i++) {
        if (as_strcaseeq(s, yes[i])) { *out = 1; return 0; }
        if (as_strcaseeq(s, no[i])) { *out = 0; return 0; }
    }
    return -1;
}

int as_parse_int(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!is_digit(*p)) return -1;
    while (is_digit(*p)) p++;
    if (*p) return -1;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return -1;
    *out = v;
    return 0;
}

int as_parse_double(const char *s, double *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    size_t n = scan_decimal(p, 1);
    if (!n || p[n]) return -1;
    double v = c_strtod(s, NULL);
    if (!isfinite(v)) return -1;
    *out = v;
    return 0;
}

int as_parse_duration(const char *s, double *seconds)
{
    size_t n = scan_decimal(s, 0);
    if (!n) return -1;                      /* also rejects a sign */
    const char *u = s + n;
    double mult;
    if (!*u || strcmp(u, "s") == 0) mult = 1;
    else if (strcmp(u, "ms") == 0) mult = 0.001;
    else if (strcmp(u, "m") == 0) mult = 60;
    else if (strcmp(u, "h") == 0) mult = 3600;
    else if (strcmp(u, "d") == 0) mult = 86400;
    else return -1;
    double v = c_strtod(s, NULL) * mult;
    if (!isfinite(v)) return -1;
    *seconds = v;
    return 0;
}

int as_parse_size(const char *s, unsigned long long *bytes)
{
    const char *p = s;
    unsigned long long v = 0;
    if (!is_digit(*p)) return -1;
    for (; is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    default: break;
    }
    if (*p == 'B') p++;
    if (*p) return -1;
    if (shift && v > (ULLONG_MAX >> shift)) return -1;
    *bytes = v << shift;
    return 0;
}

int as_config_value_ok(enum as_opt_type type, const char *value, const char **expected)
{
    int ib;
    long long ll;
    double d;
    unsigned long long u;
    const char *exp = NULL;
    switch (type) {
    case AS_OPT_BOOL:
        if (as_parse_bool(value, &ib) < 0) exp = "expected yes/no, true/false, on/off or 1/0";
        break;
    case AS_OPT_INT:
        if (as_parse_int(value, &ll) < 0) exp = "expected an integer";
        break;
    case AS_OPT_DOUBLE:
        if (as_parse_double(value, &d) < 0) exp = "expected a number";
        break;
    case AS_OPT_DURATION:
        if (as_parse_duration(value, &d) < 0) exp = "expected a duration like 1.5s";
        break;
    case AS_OPT_SIZE:
        if (as_parse_size(value, &u) < 0) exp = "expected a size like 64k";
        break;
    case AS_OPT_STRING:
    case AS_OPT_LIST:
        break;
    default:
        exp = "a known option type";
        break;
    }
    if (exp) {
        if (expected) *expected = exp;
        return -1;
    }
    return 0;
}
