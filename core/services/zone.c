/*
 * zone.c - see zone.h.
 *
 * The file is read whole (bounded), split into logical records (a record
 * continues across lines while parentheses are open), and each record is
 * parsed into nodes of a hash table keyed by owner name.  Ancestors of
 * every owner are marked as existing so that empty non-terminals answer
 * NODATA, as nsd does: DKIM's "_domainkey.example" is the common case.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "services/zone.h"
#include "util/pool.h"
#include "util/util.h"

#define ZONE_MAX_FILE    (16u * 1024 * 1024)
#define ZONE_MAX_LINE    65536
#define ZONE_MAX_RECORDS 200000
#define ZONE_MAX_TOKENS  1024
#define ZONE_MAX_INCLUDE 8
#define ZONE_MAX_CNAME   8
#define ZONE_DEFAULT_TTL 3600   /* what nsd assumes without $TTL */
/* A name as kept in the zone: presentation form with every octet that a
 * query name cannot hold (blank, control, 8-bit, '\\', '.' inside a label)
 * written as \DDD, so up to 4 characters per octet. */
#define ZONE_KEY_MAX     (4 * AS_DNS_NAME_MAX)

/* node flags */
#define N_EXISTS   0x01u   /* has records, or a name below it has */
#define N_CNAME    0x02u
#define N_DATA     0x04u   /* records other than CNAME (and DNSSEC meta) */
#define N_SOA      0x08u
#define N_TIMEOUT  0x10u   /* test directive */
#define N_SERVFAIL 0x20u   /* test directive */

struct zone_node {
    char *name;
    struct as_dns_rr *rrs;
    size_t nrr, cap;
    unsigned flags;
    uint32_t neg_ttl;          /* from the SOA at this node */
    struct zone_node *next;
};

struct as_zone {
    struct as_pool *pool;      /* names and record data */
    struct zone_node **buckets;
    size_t nbuckets, nnodes;
    size_t nrecords;
};

/* ---------------------------------------------------------------- names */

/* Each octet as a normalized name spells it: ASCII letters lowercased,
 * 0 for those no name may hold (controls, space, DEL, 8-bit, and the
 * backslash, which would make the text form ambiguous).  A table because
 * every DNS query of a scan, and every pinned answer SPF replays, passes
 * here: about 25 names a message. */
static const unsigned char name_octet[256] = {
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,  33,  34,  35,  36,  37,  38,  39,  40,  41,  42,  43,  44,  45,  46,  47,
     48,  49,  50,  51,  52,  53,  54,  55,  56,  57,  58,  59,  60,  61,  62,  63,
     64,  97,  98,  99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122,  91,   0,  93,  94,  95,
     96,  97,  98,  99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
};

int as_dns_name_normalize(const char *in, size_t len, char *out)
{
    if (len > 0 && in[len - 1] == '.') len--;
    if (len == 0 || len > AS_DNS_NAME_MAX) return -1;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = name_octet[(unsigned char)in[i]];
        if (c == '.') {
            if (label == 0) return -1;
            label = 0;
        } else if (c == 0 || ++label > 63) {
            return -1;
        }
        out[i] = (char)c;
    }
    if (label == 0) return -1;
    out[len] = '\0';
    return 0;
}

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct zone_node *node_find(const struct as_zone *z, const char *name)
{
    struct zone_node *n = z->buckets[name_hash(name) & (z->nbuckets - 1)];
    for (; n; n = n->next)
        if (strcmp(n->name, name) == 0) return n;
    return NULL;
}

static void zone_rehash(struct as_zone *z)
{
    size_t nb = z->nbuckets * 4;
    struct zone_node **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < z->nbuckets; i++) {
        struct zone_node *n = z->buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            size_t h = name_hash(n->name) & (nb - 1);
            n->next = b[h];
            b[h] = n;
        }
    }
    free(z->buckets);
    z->buckets = b;
    z->nbuckets = nb;
}

static struct zone_node *node_get(struct as_zone *z, const char *name)
{
    struct zone_node *n = node_find(z, name);
    if (n) return n;
    if (z->nnodes >= z->nbuckets * 2) zone_rehash(z);
    n = xcalloc(1, sizeof *n);
    n->name = as_pool_strdup(z->pool, name);
    size_t h = name_hash(name) & (z->nbuckets - 1);
    n->next = z->buckets[h];
    z->buckets[h] = n;
    z->nnodes++;
    return n;
}

/* The parent of a name ("a.b" -> "b"), "" for a single label, NULL for "". */
static const char *name_parent(const char *name)
{
    if (!*name) return NULL;
    const char *dot = strchr(name, '.');
    return dot ? dot + 1 : "";
}

static void node_mark_exists(struct as_zone *z, struct zone_node *n)
{
    while (n && !(n->flags & N_EXISTS)) {
        n->flags |= N_EXISTS;
        const char *parent = name_parent(n->name);
        /* the root exists only if it has records of its own */
        if (!parent || !*parent) break;
        n = node_get(z, parent);
    }
}

/* -------------------------------------------------------------- parsing */

struct ztoken {
    size_t off, len;           /* into the record's text buffer */
    int quoted, escaped, line;
    const char *s;             /* resolved after the record is complete */
    const char *raw;           /* the token as written (names need the escapes) */
    size_t rawlen;
};

struct zfile {
    const char *name;
    const char *text;
    size_t len, pos;
    int line;
};

struct zparse {
    struct as_zone *z;
    char origin[ZONE_KEY_MAX + 2];
    int have_origin;
    char prev_owner[ZONE_KEY_MAX + 2];
    int have_prev;
    uint32_t default_ttl, last_ttl;
    int have_default_ttl, have_last_ttl;
    int depth;                 /* $INCLUDE nesting */
    char *err;
    size_t errlen;
};

static int zerr(struct zparse *p, const struct zfile *f, int line, const char *fmt, ...)
    AS_PRINTF(4, 5);
static int zerr(struct zparse *p, const struct zfile *f, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->errlen) snprintf(p->err, p->errlen, "%s:%d: %s", f->name, line, msg);
    return -1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }
static int is_delim(char c)
{
    return is_blank(c) || c == '\n' || c == ';' || c == '(' || c == ')' || c == '"';
}

/* Reads a \X or \DDD escape at f->pos (which points at the backslash). */
static int read_escape(struct zparse *p, struct zfile *f, struct sbuf *buf)
{
    f->pos++;
    if (f->pos >= f->len || f->text[f->pos] == '\n')
        return zerr(p, f, f->line, "backslash at end of line");
    char c = f->text[f->pos];
    if (c >= '0' && c <= '9') {
        if (f->pos + 2 >= f->len) return zerr(p, f, f->line, "bad \\DDD escape");
        int v = 0;
        for (int i = 0; i < 3; i++) {
            char d = f->text[f->pos + (size_t)i];
            if (d < '0' || d > '9') return zerr(p, f, f->line, "bad \\DDD escape");
            v = v * 10 + (d - '0');
        }
        if (v > 255) return zerr(p, f, f->line, "bad \\DDD escape (%d > 255)", v);
        sbuf_addc(buf, (char)v);
        f->pos += 3;
        return 0;
    }
    sbuf_addc(buf, c);
    f->pos++;
    return 0;
}

static int zone_directive(struct zparse *p, const struct zfile *f, const char *text, size_t n);

/* Collects the tokens of one logical record.  Returns 1 with a record,
 * 0 at end of file, -1 on error. */
static int read_record(struct zparse *p, struct zfile *f, struct sbuf *buf,
                       struct ztoken *toks, size_t *ntoks, int *owner_blank)
{
    int paren = 0, paren_line = 0;
    size_t line_start = f->pos;
    *ntoks = 0;
    sbuf_reset(buf);
    *owner_blank = f->pos < f->len && is_blank(f->text[f->pos]);
    while (f->pos < f->len) {
        char c = f->text[f->pos];
        if (c == '\0') return zerr(p, f, f->line, "NUL byte in file");
        if (is_blank(c)) { f->pos++; continue; }
        if (c == '\n') {
            if (f->pos - line_start > ZONE_MAX_LINE)
                return zerr(p, f, f->line, "line longer than %d bytes", ZONE_MAX_LINE);
            f->pos++;
            f->line++;
            line_start = f->pos;
            if (paren == 0 && *ntoks > 0) return 1;
            if (*ntoks == 0) *owner_blank = f->pos < f->len && is_blank(f->text[f->pos]);
            continue;
        }
        if (c == ';') {
            const char *start = f->text + f->pos + 1;
            const char *end = memchr(start, '\n', f->len - f->pos - 1);
            size_t n = end ? (size_t)(end - start) : f->len - f->pos - 1;
            if (zone_directive(p, f, start, n) < 0) return -1;
            f->pos += 1 + n;
            continue;
        }
        if (c == '(') {
            if (paren++ == 0) paren_line = f->line;
            f->pos++;
            continue;
        }
        if (c == ')') {
            if (paren == 0) return zerr(p, f, f->line, "')' without '('");
            paren--;
            f->pos++;
            continue;
        }
        if (*ntoks >= ZONE_MAX_TOKENS)
            return zerr(p, f, f->line, "more than %d fields in a record", ZONE_MAX_TOKENS);
        struct ztoken *t = &toks[(*ntoks)++];
        memset(t, 0, sizeof *t);
        t->line = f->line;
        t->off = buf->len;
        t->raw = f->text + f->pos;
        if (c == '"') {
            t->quoted = 1;
            f->pos++;
            for (;;) {
                if (f->pos >= f->len || f->text[f->pos] == '\n')
                    return zerr(p, f, t->line, "unterminated quoted string");
                c = f->text[f->pos];
                if (c == '"') { f->pos++; break; }
                if (c == '\0') return zerr(p, f, f->line, "NUL byte in file");
                if (c == '\\') {
                    t->escaped = 1;
                    if (read_escape(p, f, buf) < 0) return -1;
                    continue;
                }
                sbuf_addc(buf, c);
                f->pos++;
            }
        } else {
            while (f->pos < f->len && !is_delim(f->text[f->pos])) {
                if (f->text[f->pos] == '\0') return zerr(p, f, f->line, "NUL byte in file");
                if (f->text[f->pos] == '\\') {
                    t->escaped = 1;
                    if (read_escape(p, f, buf) < 0) return -1;
                    continue;
                }
                sbuf_addc(buf, f->text[f->pos++]);
            }
        }
        t->len = buf->len - t->off;
        t->rawlen = (size_t)(f->text + f->pos - t->raw);
        sbuf_addc(buf, '\0');
    }
    if (f->pos - line_start > ZONE_MAX_LINE)
        return zerr(p, f, f->line, "line longer than %d bytes", ZONE_MAX_LINE);
    if (paren) return zerr(p, f, paren_line, "'(' not closed");
    return *ntoks > 0;
}

/* Appends one octet of a label to a zone key (see ZONE_KEY_MAX). */
static size_t key_octet(char *out, size_t o, unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '.') {
        snprintf(out + o, 5, "\\%03u", c);
        return o + 4;
    }
    out[o] = (char)as_tolower(c);
    return o + 1;
}

/* Resolves a name token against the origin into out[ZONE_KEY_MAX + 2]
 * (no trailing dot; "" is the root).  RFC 1035 escapes are read from the
 * token as written: "\." is a dot inside a label, "\032" a blank.  Names
 * that a query name can spell come out as as_dns_name_normalize() writes
 * them, so lookups find them; the others load (the file stays usable)
 * but no query reaches them. */
static int zone_name(struct zparse *p, const struct zfile *f, const struct ztoken *t,
                     char *out)
{
    const char *r = t->raw;
    size_t n = t->rawlen;
    if (t->quoted) return zerr(p, f, t->line, "a name cannot be quoted: '\"%s\"'", t->s);
    if (n == 1 && r[0] == '@') {
        if (!p->have_origin) return zerr(p, f, t->line, "'@' used without $ORIGIN");
        strcpy(out, p->origin);
        return 0;
    }
    if (n == 1 && r[0] == '.') {
        out[0] = '\0';
        return 0;
    }
    size_t o = 0, octets = 0, label = 0;
    int absolute = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r[i];
        if (c == '.') {
            if (label == 0) return zerr(p, f, t->line, "bad name '%.*s'", (int)n, r);
            if (i + 1 == n) { absolute = 1; break; }
            out[o++] = '.';
            octets++;
            label = 0;
            continue;
        }
        if (c == '\\') {
            /* checked here too: directive names are not tokenized */
            if (i + 1 >= n) return zerr(p, f, t->line, "backslash at end of name");
            if (is_digit(r[i + 1])) {
                if (i + 3 >= n || !is_digit(r[i + 2]) || !is_digit(r[i + 3]))
                    return zerr(p, f, t->line, "bad \\DDD escape in '%.*s'", (int)n, r);
                int v = (r[i + 1] - '0') * 100 + (r[i + 2] - '0') * 10 + (r[i + 3] - '0');
                if (v > 255) return zerr(p, f, t->line, "bad \\DDD escape (%d > 255)", v);
                c = (unsigned char)v;
                i += 3;
            } else {
                c = (unsigned char)r[++i];
            }
        }
        if (++label > 63 || ++octets > AS_DNS_NAME_MAX)
            return zerr(p, f, t->line, "name too long: '%.*s'", (int)n, r);
        o = key_octet(out, o, c);
    }
    if (label == 0 && n > 0) return zerr(p, f, t->line, "bad name '%.*s'", (int)n, r);
    if (!absolute) {
        if (!p->have_origin)
            return zerr(p, f, t->line, "relative name '%.*s' without $ORIGIN", (int)n, r);
        if (p->origin[0]) {
            /* the origin's octets: its key with each \DDD counted once */
            size_t on = 1;
            for (const char *c = p->origin; *c; c++, on++)
                if (*c == '\\') c += 3;
            if (octets + on > AS_DNS_NAME_MAX)
                return zerr(p, f, t->line, "name too long: '%.*s'", (int)n, r);
            out[o++] = '.';
            strcpy(out + o, p->origin);
            o += strlen(p->origin);
        }
    }
    out[o] = '\0';
    return 0;
}

/* TTL: seconds, or BIND-style units (1w2d3h4m5s). */
static int parse_ttl(const char *s, uint32_t *out)
{
    unsigned long long total = 0, cur = 0;
    int digits = 0, units = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9') {
            cur = cur * 10 + (unsigned)(*s - '0');
            if (cur > 0x7fffffffull) return -1;
            digits++;
            continue;
        }
        unsigned long long mul;
        switch (as_tolower(*s)) {
        case 's': mul = 1; break;
        case 'm': mul = 60; break;
        case 'h': mul = 3600; break;
        case 'd': mul = 86400; break;
        case 'w': mul = 604800; break;
        default: return -1;
        }
        if (!digits) return -1;
        total += cur * mul;
        cur = 0;
        digits = 0;
        units++;
        if (total > 0x7fffffffull) return -1;
    }
    if (digits) {
        if (units) return -1;   /* "1h30" is ambiguous: reject */
        total += cur;
    }
    if (total > 0x7fffffffull) return -1;
    *out = (uint32_t)total;
    return 0;
}

/* Parses a nonnegative integer into [0, max]. */
static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (!*s) return -1;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > max) return -1;
    }
    *out = v;
    return 0;
}

static int zone_parse_text(struct zparse *p, struct zfile *f);

static int zone_include(struct zparse *p, const struct zfile *f, struct ztoken *toks,
                        size_t n)
{
    if (n < 2 || n > 3) return zerr(p, f, toks[0].line, "$INCLUDE needs a file name");
    if (p->depth >= ZONE_MAX_INCLUDE)
        return zerr(p, f, toks[0].line, "$INCLUDE nested more than %d deep", ZONE_MAX_INCLUDE);
    char path[4096];
    const char *slash = strrchr(f->name, '/');
    if (toks[1].s[0] == '/' || !slash)
        snprintf(path, sizeof path, "%s", toks[1].s);
    else
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - f->name), f->name, toks[1].s);

    /* RFC 1035: the origin of the included file does not leak back */
    char saved_origin[sizeof p->origin];
    int saved_have = p->have_origin;
    memcpy(saved_origin, p->origin, sizeof saved_origin);
    if (n == 3) {
        char o[ZONE_KEY_MAX + 2];
        if (zone_name(p, f, &toks[2], o) < 0) return -1;
        strcpy(p->origin, o);
        p->have_origin = 1;
    }

    FILE *fp = fopen(path, "rb");
    if (!fp) return zerr(p, f, toks[0].line, "cannot open '%s': %s", path, strerror(errno));
    struct sbuf data = {0};
    char chunk[65536];
    size_t got;
    int rc = 0;
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (data.len + got > ZONE_MAX_FILE) {
            rc = zerr(p, f, toks[0].line, "'%s' is larger than %u bytes", path, ZONE_MAX_FILE);
            break;
        }
        sbuf_add(&data, chunk, got);
    }
    if (rc == 0 && ferror(fp))
        rc = zerr(p, f, toks[0].line, "cannot read '%s': %s", path, strerror(errno));
    fclose(fp);
    if (rc == 0) {
        struct zfile inc = { path, data.data ? data.data : "", data.len, 0, 1 };
        p->depth++;
        rc = zone_parse_text(p, &inc);
        p->depth--;
    }
    sbuf_free(&data);
    memcpy(p->origin, saved_origin, sizeof saved_origin);
    p->have_origin = saved_have;
    return rc;
}

/* "; authscan: timeout NAME" and "; authscan: servfail NAME". */
static int zone_directive(struct zparse *p, const struct zfile *f, const char *text, size_t n)
{
    char line[512];
    while (n && is_blank(*text)) { text++; n--; }
    if (n < 9 || memcmp(text, "authscan:", 9) != 0) return 0;
    if (n >= sizeof line) return zerr(p, f, f->line, "authscan directive too long");
    memcpy(line, text + 9, n - 9);
    line[n - 9] = '\0';
    char *save = NULL;
    char *kind = strtok_r(line, " \t\r", &save);
    char *name = kind ? strtok_r(NULL, " \t\r", &save) : NULL;
    char *extra = name ? strtok_r(NULL, " \t\r", &save) : NULL;
    unsigned flag;
    if (kind && strcmp(kind, "timeout") == 0) flag = N_TIMEOUT;
    else if (kind && strcmp(kind, "servfail") == 0) flag = N_SERVFAIL;
    else return zerr(p, f, f->line, "unknown authscan directive '%s' (timeout, servfail)",
                     kind ? kind : "");
    if (!name || extra) return zerr(p, f, f->line, "authscan: %s needs one name", kind);
    struct ztoken t = { 0, strlen(name), 0, 0, f->line, name, name, strlen(name) };
    char owner[ZONE_KEY_MAX + 2];
    if (zone_name(p, f, &t, owner) < 0) return -1;
    node_get(p->z, owner)->flags |= flag;
    return 0;
}

static const char *const zone_ignored_types[] = {
    "SRV", "CAA", "DS", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "TLSA",
    "SSHFP", "HINFO", "NAPTR", "RP", "LOC", "CDS", "CDNSKEY", "OPENPGPKEY", "SVCB",
    "HTTPS", "URI", "SMIMEA", "DNAME", "ZONEMD", "CSYNC", "AFSDB", "CERT", "KX",
};

struct zone_type { const char *name; uint16_t type; size_t nfields; };
static const struct zone_type zone_types[] = {
    { "A", AS_DNS_A, 1 }, { "AAAA", AS_DNS_AAAA, 1 }, { "MX", AS_DNS_MX, 2 },
    { "PTR", AS_DNS_PTR, 1 }, { "CNAME", AS_DNS_CNAME, 1 }, { "NS", AS_DNS_NS, 1 },
    { "SOA", 6, 7 }, { "TXT", AS_DNS_TXT, 0 }, { "SPF", AS_DNS_SPF, 0 },
};

static int zone_add_rr(struct zparse *p, const struct zfile *f, int line, const char *owner,
                       const struct as_dns_rr *rr, int ignored_meta)
{
    struct as_zone *z = p->z;
    if (z->nrecords >= ZONE_MAX_RECORDS)
        return zerr(p, f, line, "more than %d records", ZONE_MAX_RECORDS);
    struct zone_node *n = node_get(z, owner);
    if (rr && rr->type == AS_DNS_CNAME) {
        if (n->flags & N_CNAME) return zerr(p, f, line, "two CNAMEs at '%s'", owner);
        if (n->flags & N_DATA) return zerr(p, f, line, "CNAME and other data at '%s'", owner);
        n->flags |= N_CNAME;
    } else if (!ignored_meta) {
        if (n->flags & N_CNAME) return zerr(p, f, line, "CNAME and other data at '%s'", owner);
        n->flags |= N_DATA;
    }
    if (rr) {
        if (n->nrr == n->cap) {
            n->cap = n->cap ? n->cap * 2 : 2;
            n->rrs = xrealloc(n->rrs, n->cap * sizeof *n->rrs);
        }
        n->rrs[n->nrr++] = *rr;
    }
    z->nrecords++;
    node_mark_exists(z, n);
    return 0;
}

static int zone_txt(struct zparse *p, const struct zfile *f, struct ztoken *toks, size_t n,
                    struct as_dns_rr *rr)
{
    struct as_pool *pool = p->z->pool;
    struct as_str *strs = as_pool_alloc(pool, n * sizeof *strs);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (toks[i].len > 255)
            return zerr(p, f, toks[i].line, "TXT string longer than 255 octets");
        strs[i].ptr = as_pool_strndup(pool, toks[i].s, toks[i].len);
        strs[i].len = toks[i].len;
        total += toks[i].len;
    }
    char *joined = as_pool_alloc(pool, total + 1);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(joined + off, strs[i].ptr, strs[i].len);
        off += strs[i].len;
    }
    rr->d.txt.nstrings = n;
    rr->d.txt.strings = strs;
    rr->d.txt.joined.ptr = joined;
    rr->d.txt.joined.len = total;
    return 0;
}

static int zone_record(struct zparse *p, const struct zfile *f, struct ztoken *toks,
                       size_t n, int owner_blank)
{
    struct as_pool *pool = p->z->pool;
    size_t i = 0;
    if (!owner_blank && toks[0].s[0] == '$' && !toks[0].quoted) {
        const char *d = toks[0].s;
        if (as_strcaseeq(d, "$ORIGIN")) {
            if (n != 2) return zerr(p, f, toks[0].line, "$ORIGIN needs one name");
            char o[ZONE_KEY_MAX + 2];
            if (zone_name(p, f, &toks[1], o) < 0) return -1;
            strcpy(p->origin, o);
            p->have_origin = 1;
            return 0;
        }
        if (as_strcaseeq(d, "$TTL")) {
            if (n != 2 || parse_ttl(toks[1].s, &p->default_ttl) < 0)
                return zerr(p, f, toks[0].line, "bad $TTL '%s'", n > 1 ? toks[1].s : "");
            p->have_default_ttl = 1;
            return 0;
        }
        if (as_strcaseeq(d, "$INCLUDE")) return zone_include(p, f, toks, n);
        return zerr(p, f, toks[0].line, "unknown directive '%s'", d);
    }

    char owner[ZONE_KEY_MAX + 2];
    int line = toks[0].line;
    if (owner_blank) {
        if (!p->have_prev) return zerr(p, f, line, "no owner name and no previous record");
        strcpy(owner, p->prev_owner);
    } else {
        if (zone_name(p, f, &toks[0], owner) < 0) return -1;
        i = 1;
    }
    uint32_t ttl = 0;
    int have_ttl = 0, have_class = 0;
    for (; i < n && !toks[i].quoted; i++) {
        const char *s = toks[i].s;
        if (s[0] >= '0' && s[0] <= '9') {
            if (have_ttl || parse_ttl(s, &ttl) < 0)
                return zerr(p, f, toks[i].line, "bad TTL '%s'", s);
            have_ttl = 1;
        } else if (as_strcaseeq(s, "IN")) {
            if (have_class) return zerr(p, f, toks[i].line, "class given twice");
            have_class = 1;
        } else if (as_strcaseeq(s, "CH") || as_strcaseeq(s, "HS") || as_strcaseeq(s, "CS")) {
            return zerr(p, f, toks[i].line, "unsupported class '%s'", s);
        } else {
            break;
        }
    }
    if (i >= n || toks[i].quoted) return zerr(p, f, line, "missing record type");
    const char *tname = toks[i].s;
    int tline = toks[i].line;
    i++;
    struct ztoken *rd = toks + i;
    size_t nrd = n - i;

    if (have_ttl) {
        p->last_ttl = ttl;
        p->have_last_ttl = 1;
    } else if (p->have_default_ttl) {
        ttl = p->default_ttl;
    } else {
        ttl = p->have_last_ttl ? p->last_ttl : ZONE_DEFAULT_TTL;
    }
    strcpy(p->prev_owner, owner);
    p->have_prev = 1;

    const struct zone_type *zt = NULL;
    for (size_t k = 0; k < AS_ARRAY_LEN(zone_types); k++)
        if (as_strcaseeq(tname, zone_types[k].name)) zt = &zone_types[k];
    if (!zt) {
        for (size_t k = 0; k < AS_ARRAY_LEN(zone_ignored_types); k++)
            if (as_strcaseeq(tname, zone_ignored_types[k])) {
                int meta = as_strcaseeq(tname, "RRSIG") || as_strcaseeq(tname, "NSEC") ||
                           as_strcaseeq(tname, "NSEC3");
                return zone_add_rr(p, f, line, owner, NULL, meta);
            }
        unsigned long num;
        if ((tname[0] == 'T' || tname[0] == 't') && strncasecmp(tname, "TYPE", 4) == 0 &&
            parse_uint(tname + 4, 65535, &num) == 0)
            return zone_add_rr(p, f, line, owner, NULL, 0);
        return zerr(p, f, tline, "unknown record type '%s'", tname);
    }
    if (zt->nfields ? nrd != zt->nfields : nrd == 0)
        return zerr(p, f, line, "%s record needs %s%zu field%s, got %zu", zt->name,
                    zt->nfields ? "" : "at least ", zt->nfields ? zt->nfields : (size_t)1,
                    zt->nfields == 1 || !zt->nfields ? "" : "s", nrd);

    struct as_dns_rr rr;
    memset(&rr, 0, sizeof rr);
    rr.type = zt->type;
    rr.ttl = ttl;
    char target[ZONE_KEY_MAX + 2];
    unsigned long num;
    switch (zt->type) {
    case AS_DNS_A:
        if (rd[0].quoted || inet_pton(AF_INET, rd[0].s, &rr.d.a) != 1)
            return zerr(p, f, rd[0].line, "bad IPv4 address '%s'", rd[0].s);
        break;
    case AS_DNS_AAAA:
        if (rd[0].quoted || inet_pton(AF_INET6, rd[0].s, &rr.d.aaaa) != 1)
            return zerr(p, f, rd[0].line, "bad IPv6 address '%s'", rd[0].s);
        break;
    case AS_DNS_MX:
        if (parse_uint(rd[0].s, 65535, &num) < 0)
            return zerr(p, f, rd[0].line, "bad MX preference '%s'", rd[0].s);
        if (zone_name(p, f, &rd[1], target) < 0) return -1;
        rr.d.mx.pref = (uint16_t)num;
        rr.d.mx.host = as_pool_strdup(pool, target);
        break;
    case AS_DNS_PTR:
    case AS_DNS_CNAME:
    case AS_DNS_NS:
        if (zone_name(p, f, &rd[0], target) < 0) return -1;
        rr.d.name = as_pool_strdup(pool, target);
        break;
    case AS_DNS_TXT:
    case AS_DNS_SPF:
        if (zone_txt(p, f, rd, nrd, &rr) < 0) return -1;
        break;
    case 6: {   /* SOA: kept only for its negative-caching TTL */
        uint32_t v[5];
        if (zone_name(p, f, &rd[0], target) < 0 || zone_name(p, f, &rd[1], target) < 0)
            return -1;
        if (parse_uint(rd[2].s, 0xffffffffUL, &num) < 0)
            return zerr(p, f, rd[2].line, "bad SOA serial '%s'", rd[2].s);
        for (int k = 3; k < 7; k++)
            if (parse_ttl(rd[k].s, &v[k - 2]) < 0)
                return zerr(p, f, rd[k].line, "bad SOA timer '%s'", rd[k].s);
        struct zone_node *node = node_get(p->z, owner);
        if (node->flags & N_SOA) return zerr(p, f, line, "two SOA records at '%s'", owner);
        if (zone_add_rr(p, f, line, owner, NULL, 0) < 0) return -1;
        node->flags |= N_SOA;
        node->neg_ttl = ttl < v[4] ? ttl : v[4];
        return 0;
    }
    }
    return zone_add_rr(p, f, line, owner, &rr, 0);
}

static int zone_parse_text(struct zparse *p, struct zfile *f)
{
    struct ztoken *toks = xmalloc(ZONE_MAX_TOKENS * sizeof *toks);
    struct sbuf buf = {0};
    size_t ntoks;
    int owner_blank, rc;
    if (f->len > ZONE_MAX_FILE) {
        rc = zerr(p, f, 1, "file larger than %u bytes", ZONE_MAX_FILE);
        goto out;
    }
    while ((rc = read_record(p, f, &buf, toks, &ntoks, &owner_blank)) > 0) {
        for (size_t i = 0; i < ntoks; i++) toks[i].s = buf.data + toks[i].off;
        if ((rc = zone_record(p, f, toks, ntoks, owner_blank)) < 0) break;
    }
out:
    free(toks);
    sbuf_free(&buf);
    return rc < 0 ? -1 : 0;
}

static struct as_zone *zone_new(void)
{
    struct as_zone *z = xcalloc(1, sizeof *z);
    z->pool = as_pool_new(0);
    z->nbuckets = 256;
    z->buckets = xcalloc(z->nbuckets, sizeof *z->buckets);
    return z;
}

struct as_zone *as_zone_parse(const char *name, const char *text, size_t len,
                              const char *origin, char *err, size_t errlen)
{
    struct as_zone *z = zone_new();
    struct zparse p;
    memset(&p, 0, sizeof p);
    p.z = z;
    p.err = err;
    p.errlen = errlen;
    struct zfile f = { name, text, len, 0, 1 };
    if (origin && *origin) {
        if (strcmp(origin, ".") == 0) {
            p.have_origin = 1;
        } else if (as_dns_name_normalize(origin, strlen(origin), p.origin) == 0) {
            p.have_origin = 1;
        } else {
            if (errlen) snprintf(err, errlen, "%s: bad origin '%s'", name, origin);
            as_zone_free(z);
            return NULL;
        }
    }
    if (zone_parse_text(&p, &f) < 0) {
        as_zone_free(z);
        return NULL;
    }
    return z;
}

struct as_zone *as_zone_load(const char *path, const char *origin, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct sbuf data = {0};
    char chunk[65536];
    size_t got;
    int bad = 0;
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (data.len + got > ZONE_MAX_FILE) {
            if (errlen) snprintf(err, errlen, "%s: larger than %u bytes", path, ZONE_MAX_FILE);
            bad = 1;
            break;
        }
        sbuf_add(&data, chunk, got);
    }
    if (!bad && ferror(fp)) {
        if (errlen) snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        bad = 1;
    }
    fclose(fp);
    struct as_zone *z = NULL;
    if (!bad) z = as_zone_parse(path, data.data ? data.data : "", data.len, origin, err, errlen);
    sbuf_free(&data);
    return z;
}

void as_zone_free(struct as_zone *z)
{
    if (!z) return;
    for (size_t i = 0; i < z->nbuckets; i++) {
        struct zone_node *n = z->buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            free(n->rrs);
            free(n);
        }
    }
    free(z->buckets);
    as_pool_destroy(z->pool);
    free(z);
}

size_t as_zone_record_count(const struct as_zone *z) { return z->nrecords; }

/* ---------------------------------------------------------------- lookup */

static const struct zone_node *node_existing(const struct as_zone *z, const char *name)
{
    const struct zone_node *n = node_find(z, name);
    return n && (n->flags & N_EXISTS) ? n : NULL;
}

/* RFC 4592: the wildcard at the closest encloser, if there is one. */
static const struct zone_node *zone_wildcard(const struct as_zone *z, const char *name)
{
    char wild[ZONE_KEY_MAX + 4];
    for (const char *s = name_parent(name); s; s = name_parent(s)) {
        if (*s && !node_existing(z, s)) continue;
        snprintf(wild, sizeof wild, *s ? "*.%s" : "*", s);
        return node_existing(z, wild);
    }
    return NULL;
}

static uint32_t zone_neg_ttl(const struct as_zone *z, const char *name)
{
    for (const char *s = name; s; s = name_parent(s)) {
        const struct zone_node *n = node_find(z, s);
        if (n && (n->flags & N_SOA)) return n->neg_ttl;
    }
    return 0;
}

enum as_dns_status as_zone_lookup(const struct as_zone *z, const char *name, uint16_t type,
                                  struct as_pool *pool, struct as_dns_answer *out)
{
    char qname[AS_DNS_NAME_MAX + 1];
    memset(out, 0, sizeof *out);
    out->type = type;
    if (as_dns_name_normalize(name, strlen(name), qname) < 0) {
        out->name = as_pool_strdup(pool, name);
        return out->status = AS_DNS_BADNAME;
    }
    out->name = as_pool_strdup(pool, qname);
    const struct zone_node *n = node_find(z, qname);
    if (n && (n->flags & N_TIMEOUT)) return out->status = AS_DNS_TIMEOUT;
    if (n && (n->flags & N_SERVFAIL)) return out->status = AS_DNS_SERVFAIL;

    const char *cur = qname;
    for (int hops = 0;; hops++) {
        n = node_existing(z, cur);
        if (!n) n = zone_wildcard(z, cur);
        if (!n) {
            out->ttl = zone_neg_ttl(z, cur);
            return out->status = AS_DNS_NXDOMAIN;
        }
        size_t count = 0;
        const char *cname = NULL;
        for (size_t i = 0; i < n->nrr; i++) {
            if (n->rrs[i].type == type) count++;
            if (n->rrs[i].type == AS_DNS_CNAME) cname = n->rrs[i].d.name;
        }
        if (count) {
            struct as_dns_rr *rr = as_pool_alloc(pool, count * sizeof *rr);
            uint32_t ttl = UINT32_MAX;
            size_t k = 0;
            for (size_t i = 0; i < n->nrr; i++) {
                if (n->rrs[i].type != type) continue;
                rr[k++] = n->rrs[i];
                if (n->rrs[i].ttl < ttl) ttl = n->rrs[i].ttl;
            }
            out->rr = rr;
            out->nrr = count;
            out->ttl = ttl;
            return out->status = AS_DNS_OK;
        }
        if (!cname) {
            out->ttl = zone_neg_ttl(z, cur);
            return out->status = AS_DNS_NODATA;
        }
        if (hops >= ZONE_MAX_CNAME) return out->status = AS_DNS_SERVFAIL;
        cur = cname;
    }
}
