/*
 * report.c - `authscan report aggregate` (see report.h): for each day,
 * each policy domain of the day's index becomes one aggregate report
 * (RFC 7489 Appendix C or DMARCbis XML, gzip), written to --out and/or
 * mailed to every verified rua destination with --send.
 *
 * Safe to run on several hosts at once: --send takes the day's lock in
 * Redis first, marks each destination it mailed ({PD}rs:DAY) so a re-run
 * does not mail it again, and deletes a policy domain's counters only when
 * every destination is done (sent, or refused for good).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>
#include <libxml/xmlwriter.h>
#include <zlib.h>
#include <authscan/report.h>
#include "bin/cli.h"
#include "bin/report.h"
#include "services/redis.h"
#include "util/config.h"
#include "util/log.h"

#define RPT_LOOKBACK_DAYS 7     /* closed days a default run looks at */

/* ------------------------------------------------------------------ */
/* Redis                                                               */

/* A synchronous connection to one shard, made on first use: with
 * Sentinel to the master the sentinels name (asked in turn, confirmed with
 * ROLE).  A shard that cannot be reached fails only what lives on it. */
static redisContext *shard_conn(struct rpt *r, size_t k)
{
    if (r->shards[k]) return r->shards[k];
    if (r->shard_failed[k]) return NULL;
    const struct as_redis_config *rc = &r->rc;
    struct timeval tv;
    as_timeval(rc->timeout > 5 ? rc->timeout : 5, &tv);
    char host[64] = "", where[320];
    int port = 0;
    const char *unix_path = rc->shards[k].unix_path;
    if (rc->nsentinels) {
        for (size_t i = 0; i < rc->nsentinels && !port; i++) {
            const struct as_redis_addr *sn = &rc->sentinels[i];
            redisContext *sc = redisConnectWithTimeout(sn->host, sn->port, tv);
            redisReply *rep = NULL;
            if (sc && !sc->err) {
                redisSetTimeout(sc, tv);
                const char *a[] = { "SENTINEL", "get-master-addr-by-name", rc->shards[k].name };
                rep = redisCommandArgv(sc, 3, a, NULL);
            }
            if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                rep->element[0]->type == REDIS_REPLY_STRING &&
                rep->element[1]->type == REDIS_REPLY_STRING &&
                strlen(rep->element[0]->str) < sizeof host) {
                as_strlcpy(host, rep->element[0]->str, sizeof host);
                port = atoi(rep->element[1]->str);
            } else {
                fprintf(stderr, "authscan report: sentinel %s: %s\n", sn->name,
                        !sc ? "out of memory" : sc->err ? sc->errstr :
                        !rep ? "no reply" : rep->type == REDIS_REPLY_ERROR ? rep->str :
                        "does not know the master");
            }
            if (rep) freeReplyObject(rep);
            if (sc) redisFree(sc);
        }
        if (!port) {
            fprintf(stderr, "authscan report: redis: no sentinel named the master '%s'\n",
                    rc->shards[k].name);
            r->shard_failed[k] = 1;
            r->status = 1;
            return NULL;
        }
        snprintf(where, sizeof where, "master '%s' at %s:%d", rc->shards[k].name, host, port);
    } else {
        as_strlcpy(host, rc->shards[k].host, sizeof host);
        port = rc->shards[k].port;
        snprintf(where, sizeof where, "%s", rc->shards[k].name);
    }
    redisContext *c = unix_path ? redisConnectUnixWithTimeout(unix_path, tv)
                                : redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        fprintf(stderr, "authscan report: redis %s: %s\n", where,
                c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        r->shard_failed[k] = 1;
        r->status = 1;
        return NULL;
    }
    redisSetTimeout(c, tv);
    char db[16];
    snprintf(db, sizeof db, "%d", rc->db);
    const char *auth[] = { "AUTH", rc->password }, *sel[] = { "SELECT", db }, *role[] = { "ROLE" };
    struct { const char **argv; int argc, when; } hs[] = {
        { auth, 2, rc->password != NULL }, { sel, 2, rc->db != 0 }, { role, 1, rc->nsentinels > 0 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(hs); i++) {
        if (!hs[i].when) continue;
        redisReply *rep = redisCommandArgv(c, hs[i].argc, hs[i].argv, NULL);
        const char *bad = !rep ? (c->errstr[0] ? c->errstr : "no reply")
                        : rep->type == REDIS_REPLY_ERROR ? rep->str
                        : hs[i].argv == role && (rep->type != REDIS_REPLY_ARRAY || !rep->elements ||
                                                 rep->element[0]->type != REDIS_REPLY_STRING ||
                                                 strcmp(rep->element[0]->str, "master") != 0)
                          ? "not a master (a failover under way? run again)" : NULL;
        if (bad) {
            fprintf(stderr, "authscan report: redis %s: %s: %s\n", where, hs[i].argv[0], bad);
            if (rep) freeReplyObject(rep);
            redisFree(c);
            r->shard_failed[k] = 1;
            r->status = 1;
            return NULL;
        }
        freeReplyObject(rep);
    }
    r->shards[k] = c;
    return c;
}

redisReply *rpt_redis(struct rpt *r, size_t argc, const char *const *argv)
{
    /* hiredis 0.14 takes const char ** (it never writes through it) */
    const char **args = (const char **)(uintptr_t)argv;
    size_t k = as_redis_ring_route(r->ring, argc, argv, NULL);
    redisContext *c = shard_conn(r, k);
    if (!c) return NULL;
    redisReply *rep = redisCommandArgv(c, (int)argc, args, NULL);
    if (!rep) {
        fprintf(stderr, "authscan report: redis %s: %s\n", r->rc.shards[k].name,
                c->errstr[0] ? c->errstr : "no reply");
        /* a broken context answers nothing more: connect again next time */
        redisFree(c);
        r->shards[k] = NULL;
        r->status = 1;
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "authscan report: redis %s: %s\n", argv[0], rep->str);
        freeReplyObject(rep);
        r->status = 1;
        return NULL;
    }
    return rep;
}

const char *rpt_key(struct rpt *r, struct sbuf *b, const char *tag, const char *name)
{
    sbuf_reset(b);
    sbuf_printf(b, "%s{%s}%s", r->prefix, tag, name);
    return b->data;
}

static int redis_connect(struct rpt *r, const struct as_config *cfg)
{
    as_redis_config_from(cfg, &r->rc);
    if (!r->rc.server) {
        fprintf(stderr, "authscan report: redis.servers is not set: there are no counters\n");
        return -1;
    }
    r->prefix = r->rc.prefix ? r->rc.prefix : "";
    r->ring = as_redis_ring_new(&r->rc);
    return 0;
}

static void redis_close(struct rpt *r)
{
    for (size_t k = 0; k < AS_REDIS_SHARDS_MAX; k++)
        if (r->shards[k]) redisFree(r->shards[k]);
    as_redis_ring_free(r->ring);
}

/* ------------------------------------------------------------------ */
/* Rows and policies, decoded                                          */

struct rpt_item {                   /* one DKIM result, or one reason */
    char *a, *b, *c;
};

struct rpt_row {
    long long count;
    char *f[AS_REPORT_ROW_FIELDS];
    struct rpt_item *dkim, *reasons;
    size_t ndkim, nreasons;
    struct rpt_item spf;            /* a empty: no SPF result */
};

struct rpt_policy {
    char *f[AS_REPORT_POLICY_FIELDS];
};

/* Splits s in place at sep into at most max pieces; returns the count. */
static size_t split(char *s, char sep, char **out, size_t max)
{
    size_t n = 0;
    if (!*s) return 0;
    while (n < max) {
        out[n++] = s;
        char *p = strchr(s, sep);
        if (!p) break;
        *p = 0;
        s = p + 1;
    }
    return n;
}

size_t split_fields(char *s, char **out, size_t max)
{
    return split(s, '\t', out, max);
}

static char *unesc(char *s)
{
    if (*s) as_report_unescape(s, strlen(s));   /* "" may be a literal */
    return s;
}

static struct rpt_item *split_items(char *s, char part_sep, size_t *n)
{
    char *items[256];
    *n = split(s, ',', items, AS_ARRAY_LEN(items));
    struct rpt_item *out = xcalloc(*n ? *n : 1, sizeof *out);
    for (size_t i = 0; i < *n; i++) {
        char *parts[3] = { "", "", "" };
        split(items[i], part_sep, parts, 3);
        out[i].a = unesc(parts[0]);
        out[i].b = unesc(parts[1]);
        out[i].c = unesc(parts[2]);
    }
    return out;
}

/* Decodes one field of {PD}rr:DAY in place; -1 for another version or a
 * malformed row (printed, skipped: its count is lost, visibly). */
static int row_decode(char *s, long long count, struct rpt_row *row)
{
    memset(row, 0, sizeof *row);
    row->count = count;
    if (split(s, '\t', row->f, AS_REPORT_ROW_FIELDS) != AS_REPORT_ROW_FIELDS ||
        strcmp(row->f[0], AS_REPORT_ROW_VERSION) != 0)
        return -1;
    row->reasons = split_items(row->f[5], '=', &row->nreasons);
    row->dkim = split_items(row->f[10], ';', &row->ndkim);
    char *spf[3] = { "", "", "" };
    split(row->f[9], ';', spf, 3);
    row->spf = (struct rpt_item){ unesc(spf[0]), unesc(spf[1]), unesc(spf[2]) };
    for (size_t i = 1; i < AS_REPORT_ROW_FIELDS; i++)
        if (i != 5 && i != 9 && i != 10) unesc(row->f[i]);
    return 0;
}

static void row_free(struct rpt_row *row)
{
    free(row->dkim);
    free(row->reasons);
}

/* ------------------------------------------------------------------ */
/* XML                                                                 */

enum rpt_format { FMT_RFC7489, FMT_DMARCBIS };

/* RFC 7489's schema wants IPv6 addresses with all eight groups. */
static const char *ip_for(enum rpt_format fmt, const char *ip, char *buf, size_t len)
{
    struct in6_addr a;
    if (fmt != FMT_RFC7489 || !strchr(ip, ':') || inet_pton(AF_INET6, ip, &a) != 1) return ip;
    snprintf(buf, len, "%x:%x:%x:%x:%x:%x:%x:%x", a.s6_addr[0] << 8 | a.s6_addr[1],
             a.s6_addr[2] << 8 | a.s6_addr[3], a.s6_addr[4] << 8 | a.s6_addr[5],
             a.s6_addr[6] << 8 | a.s6_addr[7], a.s6_addr[8] << 8 | a.s6_addr[9],
             a.s6_addr[10] << 8 | a.s6_addr[11], a.s6_addr[12] << 8 | a.s6_addr[13],
             a.s6_addr[14] << 8 | a.s6_addr[15]);
    return buf;
}

struct xw {
    xmlTextWriterPtr w;
    int err;
};

static void x_open(struct xw *x, const char *name)
{
    if (xmlTextWriterStartElement(x->w, BAD_CAST name) < 0) x->err = 1;
}

static void x_close(struct xw *x)
{
    if (xmlTextWriterEndElement(x->w) < 0) x->err = 1;
}

/* Text from the counters is bytes from messages: anything that is not
 * valid UTF-8, or is a character XML 1.0 forbids (controls but TAB, LF
 * and CR; U+FFFE, U+FFFF), becomes '?'. */
static void x_elem(struct xw *x, const char *name, const char *value)
{
    size_t n = strlen(value);
    char *clean = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char *p = (const unsigned char *)value + i;
        size_t len = as_utf8_seq(p, n - i);
        int ok = len > 0 && !(len == 1 && p[0] < 0x20 && p[0] != '\t') &&
                 !(len == 3 && p[0] == 0xEF && p[1] == 0xBF && p[2] >= 0xBE);
        if (ok) {
            memcpy(clean + o, p, len);
            o += len;
            i += len;
        } else {
            clean[o++] = '?';
            i++;
        }
    }
    clean[o] = 0;
    if (xmlTextWriterWriteElement(x->w, BAD_CAST name, BAD_CAST clean) < 0) x->err = 1;
    free(clean);
}

static void x_elemf(struct xw *x, const char *name, const char *fmt, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, fmt, v);
    x_elem(x, name, buf);
}

static const char *reason_type(enum rpt_format fmt, const char *type)
{
    if (fmt == FMT_RFC7489 && strcmp(type, "policy_test_mode") == 0) return "other";
    if (fmt == FMT_DMARCBIS && strcmp(type, "sampled_out") == 0) return "other";
    return type;
}

static void write_record(struct xw *x, enum rpt_format fmt, const struct rpt_row *row)
{
    char ipbuf[64];
    x_open(x, "record");
    x_open(x, "row");
    x_elem(x, "source_ip", ip_for(fmt, row->f[1], ipbuf, sizeof ipbuf));
    x_elemf(x, "count", "%lld", row->count);
    x_open(x, "policy_evaluated");
    const char *disp = row->f[2];
    x_elem(x, "disposition", fmt == FMT_RFC7489 && strcmp(disp, "pass") == 0 ? "none" : disp);
    x_elem(x, "dkim", row->f[3]);
    x_elem(x, "spf", row->f[4]);
    for (size_t i = 0; i < row->nreasons; i++) {
        const char *type = reason_type(fmt, row->reasons[i].a);
        x_open(x, "reason");
        x_elem(x, "type", type);
        if (type != row->reasons[i].a) {
            char c[600];
            snprintf(c, sizeof c, "%s%s%s", row->reasons[i].a, *row->reasons[i].b ? ": " : "",
                     row->reasons[i].b);
            x_elem(x, "comment", c);
        } else if (*row->reasons[i].b) {
            x_elem(x, "comment", row->reasons[i].b);
        }
        x_close(x);
    }
    x_close(x);   /* policy_evaluated */
    x_close(x);   /* row */
    x_open(x, "identifiers");
    x_elem(x, "header_from", row->f[6]);
    if (*row->f[8]) x_elem(x, "envelope_to", row->f[8]);
    if (*row->f[7] || fmt == FMT_RFC7489) x_elem(x, "envelope_from", row->f[7]);
    x_close(x);
    x_open(x, "auth_results");
    for (size_t i = 0; i < row->ndkim; i++) {
        x_open(x, "dkim");
        x_elem(x, "domain", row->dkim[i].a);
        x_elem(x, "selector", row->dkim[i].b);
        x_elem(x, "result", row->dkim[i].c);
        x_close(x);
    }
    if (*row->spf.a) {
        x_open(x, "spf");
        x_elem(x, "domain", row->spf.a);
        if (fmt == FMT_RFC7489 || strcmp(row->spf.b, "mfrom") == 0) x_elem(x, "scope", row->spf.b);
        x_elem(x, "result", row->spf.c);
        x_close(x);
    } else if (fmt == FMT_RFC7489) {
        /* RFC 7489's schema requires an spf element: SPF was not checked */
        x_open(x, "spf");
        x_elem(x, "domain", *row->f[7] ? row->f[7] : row->f[6]);
        x_elem(x, "scope", "mfrom");
        x_elem(x, "result", "none");
        x_close(x);
    }
    x_close(x);   /* auth_results */
    x_close(x);   /* record */
}

struct rpt_report {
    const char *pd, *day, *id;
    long long begin, end;
    enum rpt_format fmt;
    const struct rpt_policy *pol;
    struct rpt_row *rows;
    size_t nrows;
};

static const char *policy_or(const char *v, const char *dflt) { return *v ? v : dflt; }

/* The XML document into out; -1 if libxml2 failed. */
static int write_xml(const struct rpt *r, const struct rpt_report *rep, struct sbuf *out)
{
    xmlBufferPtr buf = xmlBufferCreate();
    if (!buf) return -1;
    struct xw x = { xmlNewTextWriterMemory(buf, 0), 0 };
    if (!x.w) {
        xmlBufferFree(buf);
        return -1;
    }
    const char *const *f = (const char *const *)rep->pol->f;
    xmlTextWriterSetIndent(x.w, 1);
    xmlTextWriterSetIndentString(x.w, BAD_CAST "  ");
    if (xmlTextWriterStartDocument(x.w, "1.0", "UTF-8", NULL) < 0) x.err = 1;
    x_open(&x, "feedback");
    if (rep->fmt == FMT_DMARCBIS &&
        xmlTextWriterWriteAttribute(x.w, BAD_CAST "xmlns",
                                    BAD_CAST "urn:ietf:params:xml:ns:dmarc-2.0") < 0)
        x.err = 1;
    x_elem(&x, "version", "1.0");
    x_open(&x, "report_metadata");
    x_elem(&x, "org_name", r->conf.org_name);
    x_elem(&x, "email", r->conf.email);
    x_elem(&x, "report_id", rep->id);
    x_open(&x, "date_range");
    x_elemf(&x, "begin", "%lld", rep->begin);
    x_elemf(&x, "end", "%lld", rep->end);
    x_close(&x);
    if (rep->fmt == FMT_DMARCBIS) x_elem(&x, "generator", "authscan " AUTHSCAN_VERSION);
    x_close(&x);
    x_open(&x, "policy_published");
    x_elem(&x, "domain", rep->pd);
    if (rep->fmt == FMT_RFC7489) {
        x_elem(&x, "adkim", f[5]);
        x_elem(&x, "aspf", f[6]);
        x_elem(&x, "p", policy_or(f[2], "none"));
        x_elem(&x, "sp", policy_or(f[3], policy_or(f[2], "none")));
        x_elem(&x, "pct", f[7]);
        x_elem(&x, "fo", f[12]);
    } else {
        x_elem(&x, "p", policy_or(f[2], "none"));
        if (*f[3]) x_elem(&x, "sp", f[3]);
        if (*f[4]) x_elem(&x, "np", f[4]);
        x_elem(&x, "adkim", f[5]);
        x_elem(&x, "aspf", f[6]);
        x_elem(&x, "discovery_method", strcmp(f[1], "psl") == 0 ? "psl" : "treewalk");
        x_elem(&x, "fo", f[12]);
        x_elem(&x, "testing", f[9]);
    }
    x_close(&x);
    for (size_t i = 0; i < rep->nrows; i++) write_record(&x, rep->fmt, &rep->rows[i]);
    x_close(&x);
    if (xmlTextWriterEndDocument(x.w) < 0) x.err = 1;
    xmlFreeTextWriter(x.w);   /* flushes into buf */
    if (!x.err) sbuf_add(out, xmlBufferContent(buf), (size_t)xmlBufferLength(buf));
    xmlBufferFree(buf);
    return x.err ? -1 : 0;
}

/* gzip (RFC 1952) of in into out: one member, no name, mtime 0. */
static int gzip_buf(const struct sbuf *in, struct sbuf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    uLong bound = deflateBound(&z, (uLong)in->len) + 32;
    sbuf_reset(out);
    sbuf_reserve(out, bound);
    z.next_in = (Bytef *)in->data;
    z.avail_in = (uInt)in->len;
    z.next_out = (Bytef *)out->data;
    z.avail_out = (uInt)bound;
    int rc = deflate(&z, Z_FINISH);
    out->len = z.total_out;
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}

static int cmp_rows(const void *a, const void *b)
{
    const struct rpt_row *x = a, *y = b;
    for (size_t i = 1; i < AS_REPORT_ROW_FIELDS; i++) {
        int c = strcmp(x->f[i], y->f[i]);
        if (c) return c;
    }
    return 0;
}

static int write_file(const struct rpt *r, const char *name, const struct sbuf *gz)
{
    struct sbuf path = {0};
    sbuf_printf(&path, "%s/%s", r->out_dir, name);
    FILE *f = fopen(path.data, "wb");
    int ok = f && fwrite(gz->data, 1, gz->len, f) == gz->len;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "authscan report: %s: %s\n", path.data, strerror(errno));
    else printf("%s\n", path.data);
    sbuf_free(&path);
    return ok ? 0 : -1;
}

/* One policy domain of one day.  Returns 1 when every destination is done
 * (its counters may go), 0 when something is left for a later run. */
static int report_domain(struct rpt *r, const char *day, long long begin, const char *pd)
{
    struct sbuf kr = {0}, kp = {0}, name = {0};
    sbuf_printf(&name, "rr:%s", day);
    rpt_key(r, &kr, pd, name.data);
    sbuf_reset(&name);
    sbuf_printf(&name, "rp:%s", day);
    rpt_key(r, &kp, pd, name.data);
    const char *ar[] = { "HGETALL", kr.data }, *ap[] = { "HGETALL", kp.data };
    redisReply *rows = rpt_redis(r, 2, ar), *pols = rows ? rpt_redis(r, 2, ap) : NULL;
    int done = 0;
    struct rpt_report rep = { .pd = pd, .day = day, .begin = begin, .end = begin + 86399 };
    struct rpt_policy pol;
    struct sbuf xml = {0}, gz = {0}, id = {0};
    if (!rows || !pols) goto out;
    if (rows->elements == 0 || pols->elements == 0) {
        done = 1;   /* nothing counted (expired, or reported and deleted) */
        goto out;
    }
    /* the policy most messages saw that day */
    size_t best = 0;
    for (size_t i = 2; i + 1 < pols->elements; i += 2)
        if (atoll(pols->element[i + 1]->str) > atoll(pols->element[best + 1]->str)) best = i;
    char *ptext = xstrdup(pols->element[best]->str);
    if (split(ptext, '\t', pol.f, AS_REPORT_POLICY_FIELDS) != AS_REPORT_POLICY_FIELDS ||
        strcmp(pol.f[0], AS_REPORT_ROW_VERSION) != 0) {
        fprintf(stderr, "authscan report: %s %s: policy of an unknown version, skipped\n", pd, day);
        free(ptext);
        r->status = 1;
        goto out;
    }
    for (size_t i = 1; i < AS_REPORT_POLICY_FIELDS; i++) unesc(pol.f[i]);
    rep.pol = &pol;
    rep.fmt = strcmp(r->format, "rfc7489") == 0 ? FMT_RFC7489
              : strcmp(r->format, "dmarcbis") == 0 ? FMT_DMARCBIS
              : strcmp(pol.f[1], "psl") == 0 ? FMT_RFC7489 : FMT_DMARCBIS;
    rep.rows = xcalloc(rows->elements / 2 + 1, sizeof *rep.rows);
    for (size_t i = 0; i + 1 < rows->elements; i += 2) {
        char *text = rows->element[i]->str;
        if (row_decode(text, atoll(rows->element[i + 1]->str), &rep.rows[rep.nrows]) < 0) {
            fprintf(stderr, "authscan report: %s %s: malformed row skipped (%s messages)\n",
                    pd, day, rows->element[i + 1]->str);
            r->status = 1;
            continue;
        }
        rep.nrows++;
    }
    qsort(rep.rows, rep.nrows, sizeof *rep.rows, cmp_rows);
    sbuf_printf(&id, "%s.%s", day, pd);
    rep.id = id.data;
    sbuf_reset(&name);
    sbuf_printf(&name, "%s!%s!%lld!%lld!%s.xml.gz", r->conf.domain, pd, rep.begin, rep.end, rep.id);
    if (rep.nrows == 0 || write_xml(r, &rep, &xml) < 0 || gzip_buf(&xml, &gz) < 0) {
        if (rep.nrows) fprintf(stderr, "authscan report: %s %s: XML or gzip failed\n", pd, day);
        r->status = 1;
    } else {
        int ok = !r->out_dir || write_file(r, name.data, &gz) == 0;
        if (!ok) r->status = 1;
        if (ok && r->send)
            done = rpt_mail_aggregate(r, pd, day, rep.id, pol.f[10], name.data, &gz,
                                      rep.fmt == FMT_DMARCBIS);
    }
    for (size_t i = 0; i < rep.nrows; i++) row_free(&rep.rows[i]);
    free(rep.rows);
    free(ptext);
out:
    if (done && r->send) {
        const char *del[] = { "DEL", kr.data, kp.data };
        redisReply *d = rpt_redis(r, 3, del);
        if (d) freeReplyObject(d);
        else done = 0;
    }
    if (rows) freeReplyObject(rows);
    if (pols) freeReplyObject(pols);
    sbuf_free(&kr);
    sbuf_free(&kp);
    sbuf_free(&name);
    sbuf_free(&xml);
    sbuf_free(&gz);
    sbuf_free(&id);
    return done;
}

/* ------------------------------------------------------------------ */
/* Days and the lock                                                   */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char lock_release[] =
    "if redis.call('GET',KEYS[1])==ARGV[1] then return redis.call('DEL',KEYS[1]) end return 0";

static int report_day(struct rpt *r, const char *day, long long begin)
{
    struct sbuf kidx = {0}, klock = {0}, name = {0}, token = {0};
    sbuf_printf(&name, "rd:%s", day);
    rpt_key(r, &kidx, AS_REPORT_INDEX_TAG, name.data);
    sbuf_reset(&name);
    sbuf_printf(&name, "rl:%s", day);
    rpt_key(r, &klock, AS_REPORT_INDEX_TAG, name.data);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    sbuf_printf(&token, "%s:%ld:%lld", host, (long)getpid(), (long long)time(NULL));
    int locked = 0;
    if (r->send) {
        char px[32];
        snprintf(px, sizeof px, "%lld", (long long)(r->conf.lock_ttl * 1000));
        const char *a[] = { "SET", klock.data, token.data, "NX", "PX", px };
        redisReply *rep = rpt_redis(r, 6, a);
        if (!rep) goto out;
        locked = rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        if (!locked) {
            fprintf(stderr, "authscan report: %s: another run holds the lock, skipped\n", day);
            goto out;
        }
    }
    const char *a[] = { "SMEMBERS", kidx.data };
    redisReply *members = rpt_redis(r, 2, a);
    if (!members) goto out;
    size_t n = members->elements, left = 0;
    char **pds = xcalloc(n + 1, sizeof *pds);
    for (size_t i = 0; i < n; i++) pds[i] = members->element[i]->str;
    qsort(pds, n, sizeof *pds, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (report_domain(r, day, begin, pds[i]) && r->send) {
            const char *srem[] = { "SREM", kidx.data, pds[i] };
            redisReply *d = rpt_redis(r, 3, srem);
            if (d) freeReplyObject(d);
        } else {
            left++;
        }
    }
    if (r->send)
        fprintf(stderr, "authscan report: %s: %zu policy domains, %zu left for a later run\n",
                day, n, left);
    free(pds);
    freeReplyObject(members);
out:
    if (locked) {
        const char *rel[] = { "EVAL", lock_release, "1", klock.data, token.data };
        redisReply *rep = rpt_redis(r, 5, rel);
        if (rep) freeReplyObject(rep);
    }
    sbuf_free(&kidx);
    sbuf_free(&klock);
    sbuf_free(&name);
    sbuf_free(&token);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The command                                                         */

static void usage(FILE *f)
{
    fprintf(f,
"usage: authscan report aggregate [--date YYYY-MM-DD|today|yesterday] [--out DIR]\n"
"                                 [--send]\n"
"                                 [--format auto|rfc7489|dmarcbis] [config options]\n"
"       authscan report failure --send [config options]\n"
"  --date DAY    report this UTC day (today included); default: every closed day\n"
"                of the last %d that still has counters\n"
"  --out DIR     write the .xml.gz files there\n"
"  --send        mail them to the verified rua destinations through report.smtp,\n"
"                mark them sent, delete the counters that are done\n"
"configuration (as for authscand):\n"
"  -c, --config FILE, --dns-zone FILE, --dns-server H:P, --plugins-dir DIR,\n"
"  --log-level LEVEL, -s/--set KEY=VALUE\n", RPT_LOOKBACK_DAYS);
}

static int conf_read(struct rpt *r, const struct as_config *cfg)
{
    struct rpt_conf *c = &r->conf;
    c->org_name = as_config_str(cfg, "report.org_name", NULL);
    c->email = as_config_str(cfg, "report.email", NULL);
    c->domain = as_config_str(cfg, "report.domain", NULL);
    c->smtp = as_config_str(cfg, "report.smtp", NULL);
    c->format = as_config_str(cfg, "report.format", "auto");
    c->retries = as_config_int(cfg, "report.smtp_retries", 3);
    c->failure_rate = as_config_int(cfg, "report.failure_rate", 20);
    c->ttl = (long long)as_config_duration(cfg, "report.ttl", 7 * 86400.0);
    c->retry_delay = as_config_duration(cfg, "report.smtp_retry_delay", 30);
    c->lock_ttl = as_config_duration(cfg, "report.lock_ttl", 1800);
    c->redact = as_config_bool(cfg, "report.failure_redact", 1);
    const char *missing = !c->org_name ? "report.org_name" : !c->email ? "report.email"
                          : !c->domain ? "report.domain" : !c->smtp && r->send ? "report.smtp"
                          : NULL;
    if (missing) {
        fprintf(stderr, "authscan report: %s is not set (see docs/reports.md)\n", missing);
        return -1;
    }
    if (!r->format) r->format = c->format;
    return 0;
}

/* YYYY-MM-DD -> "YYYYMMDD" and the epoch of its 00:00:00 UTC. */
static int parse_day(const char *s, char *day, size_t len, long long *begin)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y, m, d;
    char tail;
    /* "today" / "yesterday": the UTC days a cron job or a test means */
    int back = strcmp(s, "today") == 0 ? 0 : strcmp(s, "yesterday") == 0 ? 1 : -1;
    if (back >= 0) {
        time_t now = time(NULL) - back * 86400;
        gmtime_r(&now, &tm);
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        *begin = (long long)timegm(&tm);
        strftime(day, len, "%Y%m%d", &tm);
        return 0;
    }
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1970 ||
        m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return -1;
    gmtime_r(&t, &tm);
    if (tm.tm_mday != d) return -1;   /* 2026-02-30 */
    *begin = (long long)t;
    strftime(day, len, "%Y%m%d", &tm);
    return 0;
}

/* date: the --date day as YYYYMMDD (checked already) with its begin, or
 * NULL for every closed day that still has counters. */
static int run_aggregate(struct rpt *r, const char *date, long long date_begin)
{
    char day[16];
    if (date) {
        report_day(r, date, date_begin);
        return r->status;
    }
    time_t today = time(NULL) / 86400 * 86400;
    for (int back = RPT_LOOKBACK_DAYS; back >= 1; back--) {
        time_t t = today - (time_t)back * 86400;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(day, sizeof day, "%Y%m%d", &tm);
        struct sbuf k = {0}, name = {0};
        sbuf_printf(&name, "rd:%s", day);
        const char *a[] = { "EXISTS", rpt_key(r, &k, AS_REPORT_INDEX_TAG, name.data) };
        redisReply *rep = rpt_redis(r, 2, a);
        int exists = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;
        if (rep) freeReplyObject(rep);
        sbuf_free(&k);
        sbuf_free(&name);
        if (exists) report_day(r, day, (long long)t);
    }
    return r->status;
}

int as_report_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"date", required_argument, NULL, 'D'},
        {"out", required_argument, NULL, 'O'},
        {"send", no_argument, NULL, 'S'},
        {"format", required_argument, NULL, 'f'},
        AS_CLI_CONFIG_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct as_cli cli = {0};
    struct rpt r = {0};
    const char *date = NULL;
    int c;
    as_log_init("authscan", AS_LOG_STDERR, AS_LOG_WARN);
    const char *what = argc > 2 ? argv[2] : "";
    if (strcmp(what, "-h") == 0 || strcmp(what, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(what, "aggregate") != 0 && strcmp(what, "failure") != 0) {
        usage(stderr);
        return 2;
    }
    optind = 3;
    while ((c = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
        if (as_cli_config_opt(&cli, c, optarg)) continue;
        switch (c) {
        case 'D': date = optarg; break;
        case 'O': r.out_dir = optarg; break;
        case 'S': r.send = 1; break;
        case 'f': r.format = optarg; break;
        case 'h': usage(stdout); as_cli_free(&cli); return 0;
        default: usage(stderr); as_cli_free(&cli); return 2;
        }
    }
    int failure = strcmp(what, "failure") == 0;
    const char *bad = optind < argc ? "unexpected argument"
                      : failure && !r.send ? "report failure needs --send"
                      : failure && (date || r.out_dir || r.format) ? "report failure takes only --send"
                      : !failure && !r.out_dir && !r.send ? "give --out DIR, --send or both"
                      : r.format && strcmp(r.format, "auto") && strcmp(r.format, "rfc7489") &&
                        strcmp(r.format, "dmarcbis") ? "--format: expected auto, rfc7489 or dmarcbis"
                      : NULL;
    char day[16];
    long long begin = 0;
    if (!bad && date && parse_day(date, day, sizeof day, &begin) < 0)
        bad = "--date: expected a UTC day as YYYY-MM-DD, today or yesterday";
    struct stat st;
    if (!bad && r.out_dir && (stat(r.out_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        bad = "--out: not a directory";
    if (bad) {
        fprintf(stderr, "authscan report: %s\n", bad);
        as_cli_free(&cli);
        return 2;
    }
    int status = 1;
    if (!(r.engine = as_cli_engine(&cli, &r.base))) goto out;
    const struct as_config *cfg = as_engine_config(r.engine);
    if (conf_read(&r, cfg) < 0 || redis_connect(&r, cfg) < 0) goto out;
    status = failure ? rpt_failure_run(&r) : run_aggregate(&r, date ? day : NULL, begin);
out:
    redis_close(&r);
    as_engine_free(r.engine);
    if (r.base) event_base_free(r.base);
    as_cli_free(&cli);
    return status;
}
