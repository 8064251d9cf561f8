/*
 * controller_adapter.c - see controller_adapter.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include "authscan/plugin.h"
#include "net/controller_adapter.h"
#include "net/http.h"
#include "net/http_adapter.h"
#include "net/listen.h"
#include "net/protocol.h"
#include "scan/engine.h"
#include "scan/session.h"
#include "scan/stats.h"
#include "services/redis.h"
#include "util/config.h"
#include "util/log.h"
#include "util/util.h"

#define SESSION_COOKIE "as_session"
#define SESSION_TTL (8 * 3600)            /* seconds */
#define MAX_DOMAINS 1000                  /* /api/v1/domains lists at most */
#define MAX_SOURCES 1000                  /* sources of one domain read */
#define TOP_SOURCES 50                    /* sources of one domain listed */
#define SCAN_COUNT "10000"            /* keys Redis looks at per round */
#define SCAN_BUDGET 0.06                  /* seconds a keyspace walk may take */
#define MAX_REPORT_DAYS 31
#define LOGIN_SLOTS 256                   /* client addresses tracked per worker */
#define LOGIN_FAILURES 10                 /* wrong passwords allowed per window */
#define LOGIN_WINDOW 300.0                /* seconds */

enum level { LEVEL_NONE, LEVEL_READ, LEVEL_WRITE };

/* The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static unsigned char session_key[32];
static int have_key;

void as_controller_keygen(void)
{
    if (getrandom(session_key, sizeof session_key, 0) != (ssize_t)sizeof session_key) {
        /* getrandom blocks until the pool is ready and does not fail
         * short for 32 bytes; keep a key anyway rather than none */
        for (size_t i = 0; i < sizeof session_key; i++)
            session_key[i] ^= (unsigned char)(rand() ^ (int)(as_now() * 1e6));
    }
    have_key = 1;
}

/* Dashboard files, embedded by scripts/embed.cmake. */
struct as_embedded {
    const char *name;
    const char *text;
};
extern const struct as_embedded as_embedded_dashboard[];

/* Failed logins of one client address (IPv6: its /64) in this worker. */
struct login_failures {
    char client[48];               /* "" : free slot */
    double since;                  /* first failure of the window */
    unsigned count;
};

struct controller {
    struct as_session_ctx *sc;
    struct as_http *http;
    const char *password;          /* NULL: none (loopback only) */
    const char *enable_password;
    struct login_failures failures[LOGIN_SLOTS];
};

/* ---------------------------------------------------------------- */
/* authentication                                                     */

static void mac(const char *a, const char *b, unsigned char out[32])
{
    unsigned int len = 32;
    struct sbuf m = {0};
    sbuf_adds(&m, a);
    sbuf_addc(&m, '\0');
    sbuf_adds(&m, b ? b : "");
    HMAC(EVP_sha256(), session_key, sizeof session_key, (const unsigned char *)m.data, m.len,
         out, &len);
    sbuf_free(&m);
}

/* Constant time whatever the lengths: compares the MACs of both. */
static int secret_eq(const char *given, const char *want)
{
    if (!given || !want) return 0;
    unsigned char g[32], w[32];
    mac("password", given, g);
    mac("password", want, w);
    return CRYPTO_memcmp(g, w, sizeof g) == 0;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The MAC of a session's level and expiry, bound to the passwords. */
static void token_mac(const struct controller *ctl, int level, long long exp, char out[65])
{
    char what[64];
    snprintf(what, sizeof what, "session|%d|%lld", level, exp);
    struct sbuf secrets = {0};
    sbuf_printf(&secrets, "%s|%s", ctl->password ? ctl->password : "",
                ctl->enable_password ? ctl->enable_password : "");
    unsigned char m[32];
    mac(what, secrets.data, m);
    sbuf_free(&secrets);
    hex(m, sizeof m, out);
}

static void make_token(const struct controller *ctl, int level, char *out, size_t len)
{
    long long exp = (long long)time(NULL) + SESSION_TTL;
    char m[65];
    token_mac(ctl, level, exp, m);
    snprintf(out, len, "%d.%lld.%s", level, exp, m);
}

/* The level a session token grants, LEVEL_NONE if it is not one of ours
 * or has expired. */
static enum level token_level(const struct controller *ctl, const char *tok, size_t len)
{
    char buf[128];
    if (len >= sizeof buf) return LEVEL_NONE;
    memcpy(buf, tok, len);
    buf[len] = '\0';
    int level;
    long long exp;
    char given[80];
    if (sscanf(buf, "%d.%lld.%79s", &level, &exp, given) != 3) return LEVEL_NONE;
    if ((level != LEVEL_READ && level != LEVEL_WRITE) || exp < (long long)time(NULL))
        return LEVEL_NONE;
    char want[65];
    token_mac(ctl, level, exp, want);
    if (strlen(given) != 64 || CRYPTO_memcmp(given, want, 64) != 0) return LEVEL_NONE;
    return (enum level)level;
}

static void csrf_of(const char *tok, size_t len, char out[65])
{
    char *t = xstrndup(tok, len);
    unsigned char m[32];
    mac("csrf", t, m);
    free(t);
    hex(m, sizeof m, out);
}

/* The session cookie's value in the request, or NULL. */
static const char *session_cookie(const struct as_http_request *req, size_t *len)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!as_strcaseeq(req->headers[i].name, "Cookie")) continue;
        const char *p = req->headers[i].value;
        while (p && *p) {
            while (*p == ' ' || *p == ';') p++;
            size_t n = strcspn(p, ";");
            if (n > sizeof SESSION_COOKIE && strncmp(p, SESSION_COOKIE "=", sizeof SESSION_COOKIE) == 0) {
                *len = n - sizeof SESSION_COOKIE;
                return p + sizeof SESSION_COOKIE;
            }
            p += n;
        }
    }
    return NULL;
}

/* A password sent by an API client: "Password: x" or "Authorization:
 * Bearer x".  NULL if none. */
static const char *header_password(const struct as_http_request *req)
{
    const char *p = as_http_request_header(req, "Password");
    if (p) return p;
    const char *a = as_http_request_header(req, "Authorization");
    if (a && strncasecmp(a, "Bearer ", 7) == 0) return a + 7;
    return NULL;
}

/* What the password pw opens. */
static enum level password_level(const struct controller *ctl, const char *pw)
{
    if (!ctl->password && !ctl->enable_password) return LEVEL_WRITE;   /* loopback only */
    if (ctl->enable_password && secret_eq(pw, ctl->enable_password)) return LEVEL_WRITE;
    if (ctl->password && secret_eq(pw, ctl->password))
        return ctl->enable_password ? LEVEL_READ : LEVEL_WRITE;
    return LEVEL_NONE;
}

/* ---------------------------------------------------------------- */
/* failed-login limit                                                 */

/* The client part of a peer ("1.2.3.4:5678", "[2001:db8::1]:5678",
 * "unix"): the IPv4 address, or the IPv6 /64, since one host usually holds
 * a whole /64. */
static void client_of(const char *peer, char *out, size_t len)
{
    char host[64];
    const char *p = peer;
    size_t n;
    if (*p == '[') {
        p++;
        n = strcspn(p, "]");
    } else {
        const char *colon = strrchr(p, ':');
        n = colon ? (size_t)(colon - p) : strlen(p);
    }
    if (n >= sizeof host) n = sizeof host - 1;
    memcpy(host, p, n);
    host[n] = '\0';
    unsigned char b[16];
    if (inet_pton(AF_INET6, host, b) == 1 && memcmp(b, v4mapped, 12) == 0) {
        /* an IPv4 client of a dual-stack socket: its own address, not the
         * /64 that every IPv4 client shares */
        snprintf(out, len, "%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
        return;
    }
    if (inet_pton(AF_INET6, host, b) == 1) {
        snprintf(out, len, "%x:%x:%x:%x::/64", (unsigned)(b[0] << 8 | b[1]),
                 (unsigned)(b[2] << 8 | b[3]), (unsigned)(b[4] << 8 | b[5]),
                 (unsigned)(b[6] << 8 | b[7]));
        return;
    }
    as_strlcpy(out, host, len);
}

/* The slot of client, or NULL; a window that is over frees its slot. */
static struct login_failures *failures_find(struct controller *ctl, const char *client,
                                            double now)
{
    for (size_t i = 0; i < LOGIN_SLOTS; i++) {
        struct login_failures *f = &ctl->failures[i];
        if (!f->client[0]) continue;
        if (now - f->since >= LOGIN_WINDOW) {
            f->client[0] = '\0';
            continue;
        }
        if (strcmp(f->client, client) == 0) return f;
    }
    return NULL;
}

/* Seconds until client may try a password again, 0 if it may now. */
static int login_blocked(struct controller *ctl, const char *peer)
{
    char client[48];
    client_of(peer, client, sizeof client);
    double now = as_now();
    struct login_failures *f = failures_find(ctl, client, now);
    if (!f || f->count < LOGIN_FAILURES) return 0;
    return (int)ceil(f->since + LOGIN_WINDOW - now);
}

/* Counts a wrong password from peer.  A full table gives up the slot
 * whose window started first: an attacker with many addresses can push
 * one out, but each address still gets at most LOGIN_FAILURES a window
 * while it stays in. */
static void login_failed(struct controller *ctl, const char *peer)
{
    char client[48];
    client_of(peer, client, sizeof client);
    double now = as_now();
    struct login_failures *f = failures_find(ctl, client, now);
    if (!f) {
        for (size_t i = 0; i < LOGIN_SLOTS; i++) {
            struct login_failures *s = &ctl->failures[i];
            if (!s->client[0]) {
                f = s;
                break;
            }
            if (!f || s->since < f->since) f = s;
        }
        as_strlcpy(f->client, client, sizeof f->client);
        f->since = now;
        f->count = 0;
    }
    if (++f->count == LOGIN_FAILURES)
        as_log(AS_LOG_WARN, "controller: %u wrong passwords from %s within %.0f s: its "
               "password tries are refused (429) until %.0f s after the first",
               f->count, client, LOGIN_WINDOW, LOGIN_WINDOW);
}

struct access {
    enum level level;
    int wrong;           /* a password or a session was sent and refused */
    int csrf_ok;         /* a write may go ahead */
};

static struct access check_access(const struct controller *ctl,
                                  const struct as_http_request *req)
{
    struct access a = { LEVEL_NONE, 0, 0 };
    const char *pw = header_password(req);
    if (pw) {
        /* a custom header: no other site's page can send it */
        a.level = password_level(ctl, pw);
        a.wrong = a.level == LEVEL_NONE;
        a.csrf_ok = 1;
        return a;
    }
    size_t tlen;
    const char *tok = session_cookie(req, &tlen);
    if (tok) {
        a.level = token_level(ctl, tok, tlen);
        a.wrong = a.level == LEVEL_NONE;
        const char *given = as_http_request_header(req, "X-CSRF-Token");
        char want[65];
        csrf_of(tok, tlen, want);
        a.csrf_ok = given && strlen(given) == 64 && CRYPTO_memcmp(given, want, 64) == 0;
        if (!a.wrong) return a;
    }
    if (!ctl->password && !ctl->enable_password && !a.wrong) a.level = LEVEL_READ;
    return a;
}

/* ---------------------------------------------------------------- */
/* replies                                                            */

static const char *const security_headers[] = {
    "Cache-Control: no-store",
    "X-Content-Type-Options: nosniff",
    "X-Frame-Options: DENY",
    "Referrer-Policy: no-referrer",
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    NULL,
};

/* extra: one more "Name: value" header, or NULL. */
static void reply(struct as_http_conn *c, int status, const char *ctype, struct sbuf *b,
                  const char *extra)
{
    const char *hdrs[AS_ARRAY_LEN(security_headers) + 1];
    size_t n = 0;
    for (; security_headers[n]; n++) hdrs[n] = security_headers[n];
    if (extra) hdrs[n++] = extra;
    hdrs[n] = NULL;
    as_http_reply(c, status, ctype, b->data ? b->data : "", b->len, hdrs);
}

static void reply_json(struct as_http_conn *c, int status, struct sbuf *b)
{
    reply(c, status, "application/json", b, NULL);
}

static void reply_error(struct as_http_conn *c, int status, const char *msg)
{
    struct sbuf b = {0};
    as_http_adapter_write_error(&b, msg);
    reply_json(c, status, &b);
    sbuf_free(&b);
}

static void reply_too_many(struct as_http_conn *c, int seconds)
{
    char retry[64];
    snprintf(retry, sizeof retry, "Retry-After: %d", seconds);
    struct sbuf b = {0};
    as_http_adapter_write_error(&b, "too many wrong passwords from this address: try again later");
    reply(c, 429, "application/json", &b, retry);
    sbuf_free(&b);
}

/* ---------------------------------------------------------------- */
/* query strings and values                                           */

/* The decoded value of parameter name, or NULL (out holds it). */
static const char *query_param(const struct as_http_request *req, const char *name,
                               struct sbuf *out)
{
    const char *p = req->query;
    size_t nl = strlen(name);
    while (p && *p) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (eq && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
            as_http_adapter_url_decode(eq + 1, len - nl - 1, out);
            return strlen(out->data) == out->len ? out->data : NULL;
        }
        p += len;
        if (*p == '&') p++;
    }
    return NULL;
}

/* A policy or From domain as the history keys hold it: lower case
 * letters, digits, '-', '.', '_'; at most 253 bytes.  Lowercases d. */
static int domain_ok(char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253) return 0;
    for (char *p = d; *p; p++) {
        *p = (char)as_tolower((unsigned char)*p);
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_') return 0;
    }
    return 1;
}

/* The history plugin's source network of an address (history_eval.h:
 * IPv4 /24 "a.b.c", IPv6 /64 "x:x:x:x"). */
static int source_net(const char *ip, char *out, size_t len)
{
    unsigned char b[16];
    if (inet_pton(AF_INET, ip, b) == 1) {
        snprintf(out, len, "%u.%u.%u", b[0], b[1], b[2]);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, b) == 1) {
        if (memcmp(b, v4mapped, 12) == 0) {
            /* a scan of ::ffff:a.b.c.d is an IPv4 client (as_task_set_ip):
             * its history is under "a.b.c", not the "0:0:0:0" every
             * mapped address would share */
            snprintf(out, len, "%u.%u.%u", b[12], b[13], b[14]);
            return 0;
        }
        snprintf(out, len, "%x:%x:%x:%x", (unsigned)(b[0] << 8 | b[1]),
                 (unsigned)(b[2] << 8 | b[3]), (unsigned)(b[4] << 8 | b[5]),
                 (unsigned)(b[6] << 8 | b[7]));
        return 0;
    }
    return -1;
}

static double reply_num(const struct as_redis_reply *r)
{
    if (!r) return 0;
    if (r->type == AS_REDIS_REPLY_INTEGER) return (double)r->integer;
    if (r->type != AS_REDIS_REPLY_STRING || !r->str.ptr) return 0;
    char *end;
    double d = strtod(r->str.ptr, &end);
    return isfinite(d) ? d : 0;
}

static void add_num(struct sbuf *b, double d)
{
    if (!isfinite(d)) d = 0;
    sbuf_printf(b, "%.6g", d);
}

/* ---------------------------------------------------------------- */
/* Redis jobs: one API request, a few rounds of commands              */

struct job;
typedef void (*job_cb)(struct job *j, size_t idx, enum as_redis_status st,
                       const struct as_redis_reply *r);

struct jreq {
    struct job *j;
    size_t idx;
    job_cb cb;
    struct as_redis_req *req;         /* NULL once answered */
};

/* What one API call collects. */
struct row {
    char *name;                       /* domain, source network, day */
    double v[9];                      /* history fields, or report counts */
    int present;
};

/* One UTC day of report status (see reports_script). */
struct report_day {
    long long indexed, sent, both;    /* SCARD rd, SCARD rsd, SINTERCARD */
    long long failed, failed_open;    /* in rfd, not rsd; in rd and rfd, not rsd */
    struct row *listed;               /* name; v[0]: 1 sent, 2 failed, 0 pending */
    size_t nlisted;
};

struct job {
    struct controller *ctl;
    struct as_http_conn *conn;
    struct as_redis *redis;
    const char *prefix;
    struct jreq **reqs;               /* every command sent, answered or not */
    size_t nreqs, reqs_cap, outstanding;
    /* the request's own data */
    char domain[256];
    char net[64];
    char cursor[32];
    size_t shard;                     /* the Redis shard SCAN walks now */
    unsigned rounds;
    double started;                   /* as_now() at the request */
    int partial;                      /* the SCAN stopped at SCAN_BUDGET */
    int from_index;                   /* domain: rows from {D}sx, not a SCAN */
    struct row *rows;
    size_t nrows, rows_cap;
    struct row head;                  /* the domain's own counts */
    struct report_day *rdays;         /* reports: one per day back */
    int failed;                       /* a command failed: the reply says so */
    enum as_metrics_format mfmt;      /* /metrics */
    char errmsg[128];
    int days;
};

static const char *const hist_fields[] = { "n", "dp", "df", "sp", "sf", "kp", "kf", "f", "l" };
#define NFIELDS AS_ARRAY_LEN(hist_fields)

static void job_free(struct job *j)
{
    for (size_t i = 0; i < j->nreqs; i++) {
        if (j->reqs[i]->req) as_redis_cancel(j->reqs[i]->req);
        free(j->reqs[i]);
    }
    free(j->reqs);
    for (size_t i = 0; i < j->nrows; i++) free(j->rows[i].name);
    free(j->rows);
    for (int d = 0; j->rdays && d < j->days; d++) {
        for (size_t i = 0; i < j->rdays[d].nlisted; i++) free(j->rdays[d].listed[i].name);
        free(j->rdays[d].listed);
    }
    free(j->rdays);
    free(j->head.name);
    free(j);
}

static void job_abandoned(void *arg) { job_free(arg); }

/* A request's job on Redis r; the caller sends its first commands. */
static struct job *job_new(struct controller *ctl, struct as_http_conn *conn, struct as_redis *r)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->started = as_now();
    j->ctl = ctl;
    j->conn = conn;
    j->redis = r;
    j->prefix = as_redis_prefix(r);
    return j;
}

static void job_reply(struct job *j, int status, struct sbuf *b)
{
    as_http_conn_on_close(j->conn, NULL, NULL);
    reply_json(j->conn, status, b);
    job_free(j);
}

static void job_error(struct job *j, int status, const char *msg)
{
    struct sbuf b = {0};
    as_http_adapter_write_error(&b, msg);
    job_reply(j, status, &b);
    sbuf_free(&b);
}

static void jreq_done(enum as_redis_status st, const struct as_redis_reply *r, void *arg)
{
    struct jreq *q = arg;
    q->req = NULL;
    q->j->outstanding--;
    q->cb(q->j, q->idx, st, r);
}

/* Sends a command to the shard of its key, or to shard when that is not
 * SIZE_MAX (SCAN); idx is handed back to cb.  -1: Redis (that shard) is
 * down. */
static int job_send_to(struct job *j, size_t shard, size_t argc, const char *const *argv,
                       job_cb cb, size_t idx)
{
    struct jreq *q = xcalloc(1, sizeof *q);
    q->j = j;
    q->idx = idx;
    q->cb = cb;
    q->req = shard == SIZE_MAX ? as_redis_submit(j->redis, argc, argv, NULL, jreq_done, q)
                               : as_redis_submit_to(j->redis, shard, argc, argv, NULL,
                                                    jreq_done, q);
    if (!q->req) {
        free(q);
        return -1;
    }
    if (j->nreqs == j->reqs_cap) {
        j->reqs_cap = j->reqs_cap ? 2 * j->reqs_cap : 16;
        j->reqs = xrealloc(j->reqs, j->reqs_cap * sizeof *j->reqs);
    }
    j->reqs[j->nreqs++] = q;
    j->outstanding++;
    return 0;
}

static int job_send(struct job *j, size_t argc, const char *const *argv, job_cb cb, size_t idx)
{
    return job_send_to(j, SIZE_MAX, argc, argv, cb, idx);
}

static void job_fail(struct job *j, enum as_redis_status st, const struct as_redis_reply *r)
{
    if (j->failed) return;
    j->failed = 1;
    snprintf(j->errmsg, sizeof j->errmsg, "redis: %s",
             st == AS_REDIS_TIMEOUT ? "timeout" :
             st == AS_REDIS_ERROR && r && r->str.ptr ? r->str.ptr : "unavailable");
}

static char *key_of(const struct job *j, const char *tag, const char *name)
{
    struct sbuf b = {0};
    sbuf_printf(&b, "%s{%s}%s", j->prefix, tag, name);
    return sbuf_steal(&b);
}

static struct row *add_row(struct job *j, const char *name, size_t len)
{
    if (j->nrows == j->rows_cap) {
        j->rows_cap = j->rows_cap ? 2 * j->rows_cap : 64;
        j->rows = xrealloc(j->rows, j->rows_cap * sizeof *j->rows);
    }
    struct row *r = &j->rows[j->nrows++];
    memset(r, 0, sizeof *r);
    r->name = xstrndup(name, len);
    return r;
}

static int hmget(struct job *j, const char *key, job_cb cb, size_t idx)
{
    const char *argv[2 + NFIELDS] = { "HMGET", key };
    for (size_t i = 0; i < NFIELDS; i++) argv[2 + i] = hist_fields[i];
    return job_send(j, AS_ARRAY_LEN(argv), argv, cb, idx);
}

static void read_fields(struct row *row, const struct as_redis_reply *r)
{
    if (!r || r->type != AS_REDIS_REPLY_ARRAY || r->nelem != NFIELDS) return;
    for (size_t i = 0; i < NFIELDS; i++) {
        row->v[i] = reply_num(&r->elem[i]);
        if (r->elem[i].type == AS_REDIS_REPLY_STRING) row->present = 1;
    }
}

static void write_counts(struct sbuf *b, const struct row *row)
{
    if (!row->present) {
        sbuf_adds(b, "null");
        return;
    }
    sbuf_addc(b, '{');
    for (size_t i = 0; i < NFIELDS; i++) {
        sbuf_printf(b, "%s\"%s\":", i ? "," : "", hist_fields[i]);
        add_num(b, row->v[i]);
    }
    sbuf_addc(b, '}');
}

/* Escapes the glob characters of s for SCAN's MATCH. */
static void glob_escape(struct sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (strchr("*?[]\\", *s)) sbuf_addc(b, '\\');
        sbuf_addc(b, *s);
    }
}

/* Starts or continues a SCAN with pattern on shard j->shard; cb gets
 * each batch. */
static int scan_next(struct job *j, const char *pattern, job_cb cb)
{
    const char *argv[] = { "SCAN", j->cursor, "MATCH", pattern, "COUNT", SCAN_COUNT };
    j->rounds++;
    return job_send_to(j, j->shard, AS_ARRAY_LEN(argv), argv, cb, 0);
}

/* 1 if the SCAN goes on: keys left on this shard or a next shard to walk
 * (sharded keys: each shard holds its own part of the keyspace), and the
 * walk within its time and round budget (the history keeps no index of
 * domains, so a keyspace of millions of keys would otherwise hold the
 * dashboard for seconds: the answer says "partial" instead). */
static int scan_more_budget(struct job *j)
{
    if (as_now() - j->started < SCAN_BUDGET) return 1;
    j->partial = 1;
    return 0;
}

/* The same for an SSCAN of one key: its shard only. */
static int sscan_more(struct job *j)
{
    return strcmp(j->cursor, "0") != 0 && scan_more_budget(j);
}

static int scan_more(struct job *j)
{
    if (strcmp(j->cursor, "0") == 0) {
        if (j->shard + 1 >= as_redis_shards(j->redis)) return 0;
        j->shard++;
    }
    return scan_more_budget(j);
}

/* A SCAN reply: the next cursor into j->cursor; the keys. */
static const struct as_redis_reply *scan_batch(struct job *j, const struct as_redis_reply *r)
{
    if (!r || r->type != AS_REDIS_REPLY_ARRAY || r->nelem != 2 ||
        r->elem[0].type != AS_REDIS_REPLY_STRING || r->elem[1].type != AS_REDIS_REPLY_ARRAY)
        return NULL;
    as_strlcpy(j->cursor, r->elem[0].str.ptr, sizeof j->cursor);
    return &r->elem[1];
}

static int by_count_desc(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    return x->v[0] < y->v[0] ? 1 : x->v[0] > y->v[0] ? -1 : strcmp(x->name, y->name);
}

static int by_failures_desc(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    if (x->v[2] != y->v[2]) return x->v[2] < y->v[2] ? 1 : -1;
    return by_count_desc(a, b);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->name, ((const struct row *)b)->name);
}

/* ---- GET /api/v1/domains ---- */

static void domains_reply(struct job *j)
{
    if (j->failed) {
        job_error(j, 502, j->errmsg);
        return;
    }
    if (j->nrows) qsort(j->rows, j->nrows, sizeof *j->rows, by_count_desc);
    struct sbuf b = {0};
    sbuf_adds(&b, "{\"domains\":[");
    for (size_t i = 0; i < j->nrows; i++) {
        sbuf_adds(&b, i ? ",{\"domain\":" : "{\"domain\":");
        as_json_string(&b, j->rows[i].name, strlen(j->rows[i].name));
        sbuf_adds(&b, ",\"history\":");
        write_counts(&b, &j->rows[i]);
        sbuf_addc(&b, '}');
    }
    sbuf_printf(&b, "],\"truncated\":%s,\"partial\":%s}\n",
                j->nrows >= MAX_DOMAINS ? "true" : "false", j->partial ? "true" : "false");
    job_reply(j, 200, &b);
    sbuf_free(&b);
}

static void domains_hmget_cb(struct job *j, size_t idx, enum as_redis_status st,
                             const struct as_redis_reply *r)
{
    if (st != AS_REDIS_OK) job_fail(j, st, r);
    else read_fields(&j->rows[idx], r);
    if (j->outstanding == 0) domains_reply(j);
}

static void domains_scan_cb(struct job *j, size_t idx, enum as_redis_status st,
                            const struct as_redis_reply *r)
{
    AS_UNUSED(idx);
    const struct as_redis_reply *keys = st == AS_REDIS_OK ? scan_batch(j, r) : NULL;
    if (!keys) {
        job_fail(j, st == AS_REDIS_OK ? AS_REDIS_ERROR : st, NULL);
        domains_reply(j);
        return;
    }
    size_t plen = strlen(j->prefix);
    for (size_t i = 0; i < keys->nelem && j->nrows < MAX_DOMAINS; i++) {
        const struct as_redis_reply *k = &keys->elem[i];
        if (k->type != AS_REDIS_REPLY_STRING || k->str.len < plen + 3) continue;
        /* "<prefix>{domain}d" */
        const char *s = k->str.ptr + plen, *close = memchr(s, '}', k->str.len - plen);
        if (*s != '{' || !close || strcmp(close, "}d") != 0) continue;
        add_row(j, s + 1, (size_t)(close - s - 1));
    }
    if (j->nrows < MAX_DOMAINS && scan_more(j)) {
        struct sbuf pat = {0};
        glob_escape(&pat, j->prefix);
        sbuf_adds(&pat, "{*}d");
        int rc = scan_next(j, pat.data, domains_scan_cb);
        sbuf_free(&pat);
        if (rc < 0) job_error(j, 503, "redis: unavailable");
        return;
    }
    /* SCAN may return a key twice */
    if (j->nrows) qsort(j->rows, j->nrows, sizeof *j->rows, by_name);
    size_t k = 0;
    for (size_t i = 0; i < j->nrows; i++) {
        if (k && strcmp(j->rows[k - 1].name, j->rows[i].name) == 0) free(j->rows[i].name);
        else j->rows[k++] = j->rows[i];
    }
    j->nrows = k;
    if (j->nrows == 0) {
        domains_reply(j);
        return;
    }
    for (size_t i = 0; i < j->nrows; i++) {
        char *key = key_of(j, j->rows[i].name, "d");
        int rc = hmget(j, key, domains_hmget_cb, i);
        free(key);
        if (rc < 0) {
            job_error(j, 503, "redis: unavailable");
            return;
        }
    }
}

static void api_domains(struct job *j)
{
    strcpy(j->cursor, "0");
    j->shard = 0;
    struct sbuf pat = {0};
    glob_escape(&pat, j->prefix);
    sbuf_adds(&pat, "{*}d");
    int rc = scan_next(j, pat.data, domains_scan_cb);
    sbuf_free(&pat);
    if (rc < 0) job_error(j, 503, "redis: unavailable");
}

/* ---- GET /api/v1/domain?domain=D: the domain and its failing sources ---- */

static void domain_reply(struct job *j)
{
    if (j->failed) {
        job_error(j, 502, j->errmsg);
        return;
    }
    size_t n = 0;   /* index names whose hash expired are not sources */
    for (size_t i = 0; i < j->nrows; i++) {
        if (j->rows[i].present) j->rows[n++] = j->rows[i];
        else free(j->rows[i].name);
    }
    j->nrows = n;
    if (j->nrows) qsort(j->rows, j->nrows, sizeof *j->rows, by_failures_desc);
    struct sbuf b = {0};
    sbuf_adds(&b, "{\"domain\":");
    as_json_string(&b, j->domain, strlen(j->domain));
    sbuf_adds(&b, ",\"history\":");
    write_counts(&b, &j->head);
    sbuf_printf(&b, ",\"sources_seen\":%zu,\"partial\":%s,\"sources\":[", j->nrows,
                j->partial ? "true" : "false");
    for (size_t i = 0; i < j->nrows && i < TOP_SOURCES; i++) {
        sbuf_adds(&b, i ? ",{\"net\":" : "{\"net\":");
        as_json_string(&b, j->rows[i].name, strlen(j->rows[i].name));
        sbuf_adds(&b, ",\"history\":");
        write_counts(&b, &j->rows[i]);
        sbuf_addc(&b, '}');
    }
    sbuf_adds(&b, "]}\n");
    job_reply(j, 200, &b);
    sbuf_free(&b);
}

static void domain_srem_cb(struct job *j, size_t idx, enum as_redis_status st,
                           const struct as_redis_reply *r)
{
    AS_UNUSED(idx);
    AS_UNUSED(st);
    AS_UNUSED(r);   /* pruning is best effort: the next call tries again */
    if (j->outstanding == 0) domain_reply(j);
}

static void domain_hmget_cb(struct job *j, size_t idx, enum as_redis_status st,
                            const struct as_redis_reply *r)
{
    if (st != AS_REDIS_OK) {
        job_fail(j, st, r);
    } else {
        struct row *row = idx == SIZE_MAX ? &j->head : &j->rows[idx];
        read_fields(row, r);
        if (idx != SIZE_MAX && j->from_index && !row->present) {
            /* the source's hash expired (history.ttl) but the index lives
             * on with the domain's newer writes: drop the name from it */
            char *key = key_of(j, j->domain, "sx");
            const char *argv[] = { "ZREM", key, row->name };
            if (job_send(j, AS_ARRAY_LEN(argv), argv, domain_srem_cb, 0) < 0)
                job_fail(j, AS_REDIS_UNAVAILABLE, NULL);
            free(key);
        }
    }
    if (j->outstanding == 0) domain_reply(j);
}

static void domain_scan_cb(struct job *j, size_t idx, enum as_redis_status st,
                           const struct as_redis_reply *r)
{
    AS_UNUSED(idx);
    const struct as_redis_reply *keys = st == AS_REDIS_OK ? scan_batch(j, r) : NULL;
    if (!keys) {
        job_fail(j, st == AS_REDIS_OK ? AS_REDIS_ERROR : st, NULL);
        if (j->outstanding == 0) domain_reply(j);
        return;
    }
    char *stem = key_of(j, j->domain, "s:");
    size_t slen = strlen(stem);
    size_t first = j->nrows;
    for (size_t i = 0; i < keys->nelem && j->nrows < MAX_SOURCES; i++) {
        const struct as_redis_reply *k = &keys->elem[i];
        if (k->type == AS_REDIS_REPLY_STRING && k->str.len > slen &&
            memcmp(k->str.ptr, stem, slen) == 0)
            add_row(j, k->str.ptr + slen, k->str.len - slen);
    }
    free(stem);
    for (size_t i = first; i < j->nrows; i++) {
        char name[128];
        snprintf(name, sizeof name, "s:%s", j->rows[i].name);
        char *key = key_of(j, j->domain, name);
        int rc = hmget(j, key, domain_hmget_cb, i);
        free(key);
        if (rc < 0) {
            job_error(j, 503, "redis: unavailable");
            return;
        }
    }
    if (j->nrows < MAX_SOURCES && scan_more(j)) {
        struct sbuf pat = {0};
        glob_escape(&pat, j->prefix);
        sbuf_addc(&pat, '{');
        glob_escape(&pat, j->domain);
        sbuf_adds(&pat, "}s:*");
        int rc = scan_next(j, pat.data, domain_scan_cb);
        sbuf_free(&pat);
        if (rc < 0) job_error(j, 503, "redis: unavailable");
        return;
    }
    if (j->outstanding == 0) domain_reply(j);
}

/* Without an index (history written before it, or a domain never seen):
 * walk the keyspace for {D}s:* keys, within SCAN_BUDGET. */
static int domain_scan_start(struct job *j)
{
    strcpy(j->cursor, "0");
    j->shard = 0;
    struct sbuf pat = {0};
    glob_escape(&pat, j->prefix);
    sbuf_addc(&pat, '{');
    glob_escape(&pat, j->domain);
    sbuf_adds(&pat, "}s:*");
    int rc = scan_next(j, pat.data, domain_scan_cb);
    sbuf_free(&pat);
    return rc;
}

static int domain_sscan_next(struct job *j);

/* A page of {D}sx, the history plugin's index of the domain's sources (a
 * sorted set: ZSCAN gives name, score pairs). */
static void domain_index_cb(struct job *j, size_t idx, enum as_redis_status st,
                            const struct as_redis_reply *r)
{
    AS_UNUSED(idx);
    const struct as_redis_reply *nets = st == AS_REDIS_OK ? scan_batch(j, r) : NULL;
    if (!nets) {
        job_fail(j, st == AS_REDIS_OK ? AS_REDIS_ERROR : st, NULL);
        if (j->outstanding == 0) domain_reply(j);
        return;
    }
    size_t first = j->nrows;
    for (size_t i = 0; i < nets->nelem && j->nrows < MAX_SOURCES; i += 2) {
        const struct as_redis_reply *n = &nets->elem[i];
        if (n->type != AS_REDIS_REPLY_STRING || !n->str.ptr || n->str.len == 0 ||
            n->str.len > 40 || strspn(n->str.ptr, "0123456789abcdef.:") != n->str.len)
            continue;   /* not a network the plugin writes */
        add_row(j, n->str.ptr, n->str.len);
    }
    j->from_index |= j->nrows > 0;
    for (size_t i = first; i < j->nrows; i++) {
        char name[128];
        snprintf(name, sizeof name, "s:%s", j->rows[i].name);
        char *key = key_of(j, j->domain, name);
        int rc = hmget(j, key, domain_hmget_cb, i);
        free(key);
        if (rc < 0) {
            job_error(j, 503, "redis: unavailable");
            return;
        }
    }
    int rc = 0;
    if (j->nrows < MAX_SOURCES && sscan_more(j)) rc = domain_sscan_next(j);
    else if (!j->from_index && !j->partial) rc = domain_scan_start(j);
    if (rc < 0) {
        job_error(j, 503, "redis: unavailable");
        return;
    }
    if (j->outstanding == 0) domain_reply(j);
}

static int domain_sscan_next(struct job *j)
{
    char *key = key_of(j, j->domain, "sx");
    const char *argv[] = { "ZSCAN", key, j->cursor, "COUNT", "1000" };
    int rc = job_send(j, AS_ARRAY_LEN(argv), argv, domain_index_cb, 0);
    free(key);
    return rc;
}

static void api_domain(struct job *j)
{
    char *key = key_of(j, j->domain, "d");
    int rc = hmget(j, key, domain_hmget_cb, SIZE_MAX);
    free(key);
    strcpy(j->cursor, "0");
    j->shard = 0;
    if (rc == 0) rc = domain_sscan_next(j);
    if (rc < 0) job_error(j, 503, "redis: unavailable");
}

/* ---- GET /api/v1/sender?domain=D&ip=IP: one sender's history ---- */

static void sender_cb(struct job *j, size_t idx, enum as_redis_status st,
                      const struct as_redis_reply *r)
{
    if (st != AS_REDIS_OK) job_fail(j, st, r);
    else read_fields(idx == 0 ? &j->head : &j->rows[0], r);
    if (j->outstanding) return;
    if (j->failed) {
        job_error(j, 502, j->errmsg);
        return;
    }
    struct sbuf b = {0};
    sbuf_adds(&b, "{\"domain\":");
    as_json_string(&b, j->domain, strlen(j->domain));
    sbuf_adds(&b, ",\"net\":");
    as_json_string(&b, j->net, strlen(j->net));
    sbuf_adds(&b, ",\"domain_history\":");
    write_counts(&b, &j->head);
    sbuf_adds(&b, ",\"source_history\":");
    write_counts(&b, &j->rows[0]);
    sbuf_adds(&b, "}\n");
    job_reply(j, 200, &b);
    sbuf_free(&b);
}

static void api_sender(struct job *j)
{
    add_row(j, j->net, strlen(j->net));
    char name[128];
    snprintf(name, sizeof name, "s:%s", j->net);
    char *dkey = key_of(j, j->domain, "d"), *skey = key_of(j, j->domain, name);
    int rc = hmget(j, dkey, sender_cb, 0);
    if (rc == 0) rc = hmget(j, skey, sender_cb, 1);
    free(dkey);
    free(skey);
    if (rc < 0) job_error(j, 503, "redis: unavailable");
}

/* ---- POST /api/v1/sender/clear?domain=D&ip=IP ---- */

static void clear_cb(struct job *j, size_t idx, enum as_redis_status st,
                     const struct as_redis_reply *r)
{
    AS_UNUSED(idx);
    if (st != AS_REDIS_OK || !r || r->type != AS_REDIS_REPLY_INTEGER) {
        job_fail(j, st == AS_REDIS_OK ? AS_REDIS_ERROR : st, r);
        job_error(j, 502, j->errmsg);
        return;
    }
    as_log(AS_LOG_NOTICE, "controller: history of %s from %s cleared", j->domain, j->net);
    struct sbuf b = {0};
    sbuf_printf(&b, "{\"cleared\":%lld}\n", r->integer);
    job_reply(j, 200, &b);
    sbuf_free(&b);
}

static void api_clear(struct job *j)
{
    char name[128];
    snprintf(name, sizeof name, "s:%s", j->net);
    char *key = key_of(j, j->domain, name);
    const char *argv[] = { "DEL", key };
    int rc = job_send(j, 2, argv, clear_cb, 0);
    free(key);
    if (rc < 0) job_error(j, 503, "redis: unavailable");
}

/* ---- GET /metrics: the workers' totals, and the report counters ----
 * `authscan report` (a command, not a worker) counts what it mailed in
 * the hash {report:}st (aggregate_sent, aggregate_failed, failure_sent,
 * failure_failed): the controller reads it for each scrape, within
 * redis.timeout.  When Redis does not answer, the families are left out
 * (never zeros that would read as a counter reset) and
 * authscan_reports_stats_up says 0. */
static const char *const report_kinds[] = { "aggregate", "failure" };

static void metrics_reply(struct job *j, const struct as_redis_reply *r)
{
    static const char *const fields[2][2] = {   /* [kind][sent, failed] */
        { "aggregate_sent", "aggregate_failed" }, { "failure_sent", "failure_failed" },
    };
    double v[2][2] = { { 0, 0 }, { 0, 0 } };
    for (size_t i = 0; r && i + 1 < r->nelem; i += 2) {
        const struct as_redis_reply *k = &r->elem[i];
        if (k->type != AS_REDIS_REPLY_STRING || !k->str.ptr) continue;
        for (size_t kind = 0; kind < 2; kind++)
            for (int o = 0; o < 2; o++)
                if (strlen(fields[kind][o]) == k->str.len &&
                    memcmp(k->str.ptr, fields[kind][o], k->str.len) == 0)
                    v[kind][o] = reply_num(&r->elem[i + 1]);
    }
    struct sbuf b = {0};
    as_stats_write_metric_families(j->ctl->sc->engine, j->mfmt, &b);
    if (r) {
        static const char *const fam[2][2] = {
            { "reports_sent_total", "DMARC reports `authscan report` mailed, by kind." },
            { "reports_failed_total",
              "DMARC reports `authscan report` gave up on (5xx, or 4xx past the retries), by "
              "kind." },
        };
        for (int o = 0; o < 2; o++) {
            as_metrics_family(&b, j->mfmt, fam[o][0], "counter", fam[o][1]);
            for (size_t kind = 0; kind < 2; kind++)
                as_metrics_sample(&b, fam[o][0], "kind", report_kinds[kind], v[kind][o]);
        }
    }
    as_metrics_family(&b, j->mfmt, "reports_stats_up", "gauge",
                      "1 when this scrape read the report counters from Redis.");
    as_metrics_sample(&b, "reports_stats_up", NULL, NULL, r ? 1 : 0);
    as_metrics_end(&b, j->mfmt);
    as_http_conn_on_close(j->conn, NULL, NULL);
    reply(j->conn, 200, as_metrics_content_type(j->mfmt), &b, NULL);
    sbuf_free(&b);
    job_free(j);
}

static void metrics_cb(struct job *j, size_t idx, enum as_redis_status st,
                       const struct as_redis_reply *r)
{
    AS_UNUSED(idx);
    metrics_reply(j, st == AS_REDIS_OK && r && r->type == AS_REDIS_REPLY_ARRAY ? r : NULL);
}

/* ---- GET /api/v1/reports?days=N: aggregate report status per day ----
 * The report plugin (docs/reports.md) lists each day's policy domains in
 * {report:}rd:DAY; `authscan report` marks what it sent in {PD}rs:DAY,
 * lists those domains in {report:}rsd:DAY, lists in {report:}rfd:DAY the
 * ones a report to some destination failed for (4xx past the retries, or
 * 5xx), and takes a domain out of rd:DAY once every destination is done.
 * A domain in rsd:DAY is sent (in rd:DAY too: a destination is left for a
 * later run); else one in rfd:DAY failed; one only in rd:DAY is pending,
 * or collecting today.
 *
 * A week of 10,000 domains is 70,000 names: reading them all costs Redis
 * more than the 100 ms the dashboard may take, so one script per day
 * (both keys share the {report:} tag: one cluster slot) counts with
 * SCARD and SINTERCARD and returns at most MAX_LISTED names, the ones
 * still in rd:DAY first: {indexed, sent, both, name, sent?, name, ...}.
 * All days' scripts go out at once. */
#define MAX_LISTED 100

static const char reports_script[] =
    "local out = {redis.call('SCARD', KEYS[1]), redis.call('SCARD', KEYS[2]),"
    " redis.call('SINTERCARD', 2, KEYS[1], KEYS[2]),"
    " redis.call('SCARD', KEYS[3]) - redis.call('SINTERCARD', 2, KEYS[3], KEYS[2]),"
    " redis.call('SINTERCARD', 2, KEYS[1], KEYS[3])"
    "   - redis.call('SINTERCARD', 3, KEYS[1], KEYS[2], KEYS[3])}\n"
    "local left = tonumber(ARGV[1])\n"
    "for k = 1, 3 do\n"
    "  local cur = '0'\n"
    "  while left > 0 do\n"
    "    local page = redis.call('SSCAN', KEYS[k], cur, 'COUNT', 100)\n"
    "    cur = page[1]\n"
    "    for _, d in ipairs(page[2]) do\n"
    "      if left > 0 then\n"
    "        if k == 1 then\n"
    "          out[#out + 1] = d\n"
    "          local st = redis.call('SISMEMBER', KEYS[2], d)\n"
    "          if st == 0 then st = 2 * redis.call('SISMEMBER', KEYS[3], d) end\n"
    "          out[#out + 1] = st\n"
    "          left = left - 1\n"
    "        elseif redis.call('SISMEMBER', KEYS[1], d) == 0 and"
    "            (k == 2 or redis.call('SISMEMBER', KEYS[2], d) == 0) then\n"
    "          out[#out + 1] = d\n"
    "          out[#out + 1] = k == 2 and 1 or 2\n"
    "          left = left - 1\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    if cur == '0' then break end\n"
    "  end\n"
    "end\n"
    "return out\n";

static void reports_reply(struct job *j)
{
    if (j->failed) {
        job_error(j, 502, j->errmsg);
        return;
    }
    time_t now = time(NULL);
    struct tm tm;
    struct sbuf b = {0};
    sbuf_adds(&b, "{\"days\":[");
    for (int d = 0; d < j->days; d++) {
        time_t t = now - (time_t)d * 86400;
        gmtime_r(&t, &tm);
        char day[16];
        strftime(day, sizeof day, "%Y%m%d", &tm);
        struct report_day *rd = &j->rdays[d];
        /* rd, plus rsd's and rfd's domains outside it */
        long long all = rd->indexed + rd->sent - rd->both + (rd->failed - rd->failed_open);
        long long open = d == 0 ? all : 0;
        long long sent = d == 0 ? 0 : rd->sent;
        long long pending = d == 0 ? 0 : rd->indexed - rd->both - rd->failed_open;
        long long failed = d == 0 ? 0 : rd->failed;
        qsort(rd->listed, rd->nlisted, sizeof *rd->listed, by_name);
        size_t n = 0;   /* SSCAN may return a name twice */
        for (size_t i = 0; i < rd->nlisted; i++) {
            if (n && strcmp(rd->listed[n - 1].name, rd->listed[i].name) == 0)
                free(rd->listed[i].name);
            else
                rd->listed[n++] = rd->listed[i];
        }
        rd->nlisted = n;
        sbuf_printf(&b, "%s{\"day\":\"%s\",\"collecting\":%lld,\"pending\":%lld,"
                    "\"sent\":%lld,\"failed\":%lld,\"domains\":[", d ? "," : "", day, open,
                    pending, sent, failed);
        for (size_t i = 0; i < rd->nlisted; i++) {
            const struct row *row = &rd->listed[i];
            sbuf_adds(&b, i ? ",{\"domain\":" : "{\"domain\":");
            as_json_string(&b, row->name, strlen(row->name));
            sbuf_printf(&b, ",\"status\":\"%s\"}", d == 0 ? "collecting"
                                                      : row->v[0] == 1 ? "sent"
                                                      : row->v[0] == 2 ? "failed" : "pending");
        }
        sbuf_printf(&b, "],\"domains_truncated\":%s}",
                    all > (long long)rd->nlisted ? "true" : "false");
    }
    sbuf_adds(&b, "]}\n");
    job_reply(j, 200, &b);
    sbuf_free(&b);
}

static void reports_day_cb(struct job *j, size_t idx, enum as_redis_status st,
                           const struct as_redis_reply *r)
{
    /* idx: days back */
    if (st != AS_REDIS_OK || !r || r->type != AS_REDIS_REPLY_ARRAY || r->nelem < 5 ||
        r->nelem % 2 == 0) {
        job_fail(j, st == AS_REDIS_OK ? AS_REDIS_ERROR : st, r);
    } else {
        struct report_day *rd = &j->rdays[idx];
        rd->indexed = (long long)reply_num(&r->elem[0]);
        rd->sent = (long long)reply_num(&r->elem[1]);
        rd->both = (long long)reply_num(&r->elem[2]);
        rd->failed = (long long)reply_num(&r->elem[3]);
        rd->failed_open = (long long)reply_num(&r->elem[4]);
        rd->listed = xcalloc((r->nelem - 5) / 2 + 1, sizeof *rd->listed);
        for (size_t i = 5; i + 1 < r->nelem; i += 2) {
            const struct as_redis_reply *e = &r->elem[i];
            /* a name with a NUL or a brace is no policy domain of ours */
            if (e->type != AS_REDIS_REPLY_STRING || !e->str.ptr ||
                strlen(e->str.ptr) != e->str.len || strpbrk(e->str.ptr, "{}"))
                continue;
            struct row *row = &rd->listed[rd->nlisted++];
            row->name = xstrndup(e->str.ptr, e->str.len);
            row->v[0] = reply_num(&r->elem[i + 1]);
        }
    }
    if (j->outstanding == 0) reports_reply(j);
}

static void api_reports(struct job *j)
{
    j->rdays = xcalloc((size_t)j->days, sizeof *j->rdays);
    char limit[16];
    snprintf(limit, sizeof limit, "%d", MAX_LISTED);
    for (int d = 0; d < j->days; d++) {
        time_t t = time(NULL) - (time_t)d * 86400;
        struct tm tm;
        gmtime_r(&t, &tm);
        char rdn[32], rsdn[32], rfdn[32];
        strftime(rdn, sizeof rdn, "rd:%Y%m%d", &tm);
        strftime(rsdn, sizeof rsdn, "rsd:%Y%m%d", &tm);
        strftime(rfdn, sizeof rfdn, "rfd:%Y%m%d", &tm);
        char *rd = key_of(j, "report:", rdn), *rsd = key_of(j, "report:", rsdn),
             *rfd = key_of(j, "report:", rfdn);
        const char *argv[] = { "EVAL", reports_script, "3", rd, rsd, rfd, limit };
        int rc = job_send(j, AS_ARRAY_LEN(argv), argv, reports_day_cb, (size_t)d);
        free(rd);
        free(rsd);
        free(rfd);
        if (rc < 0) {
            job_error(j, 503, "redis: unavailable");
            return;
        }
    }
}

/* ---------------------------------------------------------------- */
/* requests                                                           */

static void serve_asset(struct as_http_conn *c, const char *path)
{
    const char *name = strcmp(path, "/") == 0 ? "index.html" : path + 1;
    for (const struct as_embedded *a = as_embedded_dashboard; a->name; a++) {
        if (strcmp(a->name, name) != 0) continue;
        const char *ext = strrchr(name, '.');
        const char *ctype = !ext ? "application/octet-stream"
                            : strcmp(ext, ".html") == 0 ? "text/html; charset=utf-8"
                            : strcmp(ext, ".js") == 0 ? "text/javascript; charset=utf-8"
                            : strcmp(ext, ".css") == 0 ? "text/css; charset=utf-8"
                            : strcmp(ext, ".svg") == 0 ? "image/svg+xml"
                                                       : "text/plain; charset=utf-8";
        struct sbuf b = {0};
        sbuf_adds(&b, a->text);
        reply(c, 200, ctype, &b, NULL);
        sbuf_free(&b);
        return;
    }
    reply_error(c, 404, "no such page");
}

static void login(struct controller *ctl, struct as_http_conn *c,
                  const struct as_http_request *req)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->body ? req->body : "", req->body_len, 0, &jerr);
    const char *pw = body ? json_string_value(json_object_get(body, "password")) : NULL;
    if (!pw) {
        json_decref(body);
        reply_error(c, 400, "expected {\"password\": \"...\"}");
        return;
    }
    enum level lv = password_level(ctl, pw);
    json_decref(body);
    if (lv == LEVEL_NONE) {
        as_log(AS_LOG_WARN, "controller: wrong password from %s", req->peer);
        login_failed(ctl, req->peer);
        reply_error(c, 403, "wrong password");
        return;
    }
    char tok[128], csrf[65], cookie[256];
    make_token(ctl, lv, tok, sizeof tok);
    csrf_of(tok, strlen(tok), csrf);
    snprintf(cookie, sizeof cookie, "Set-Cookie: " SESSION_COOKIE "=%s; Path=/; HttpOnly; "
             "SameSite=Strict; Max-Age=%d", tok, SESSION_TTL);
    struct sbuf b = {0};
    sbuf_printf(&b, "{\"level\":\"%s\",\"csrf\":\"%s\"}\n", lv == LEVEL_WRITE ? "write" : "read",
                csrf);
    reply(c, 200, "application/json", &b, cookie);
    sbuf_free(&b);
}

static void handle_request(struct as_http_conn *c, const struct as_http_request *req, void *arg)
{
    struct controller *ctl = arg;
    const char *path = req->path;
    /* the framing leaves out the body of a HEAD reply */
    int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    int post = strcmp(req->method, "POST") == 0;

    /* the dashboard's files hold no data: no login needed to load them */
    if (get && (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0 ||
                strcmp(path, "/app.js") == 0 || strcmp(path, "/style.css") == 0)) {
        serve_asset(c, path);
        return;
    }
    if (strcmp(path, "/ping") == 0) {
        as_http_reply(c, 200, "text/plain", "pong\r\n", 6, NULL);
        return;
    }
    /* a client over its wrong passwords tries none, right or wrong, until
     * its window ends: otherwise the answer would tell it when it guessed */
    if (header_password(req) || (post && strcmp(path, "/login") == 0)) {
        int wait = login_blocked(ctl, req->peer);
        if (wait > 0) {
            reply_too_many(c, wait);
            return;
        }
    }
    if (strcmp(path, "/login") == 0) {
        if (!post) reply_error(c, 405, "/login takes POST {\"password\": \"...\"}");
        else login(ctl, c, req);
        return;
    }
    if (strcmp(path, "/logout") == 0) {
        struct sbuf b = {0};
        sbuf_adds(&b, "{}\n");
        reply(c, 200, "application/json", &b,
              "Set-Cookie: " SESSION_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
        sbuf_free(&b);
        return;
    }

    struct access a = check_access(ctl, req);
    if (a.wrong && header_password(req)) {
        as_log(AS_LOG_WARN, "controller: wrong password from %s", req->peer);
        login_failed(ctl, req->peer);
    }
    if (get && strcmp(path, "/api/v1/session") == 0 && a.level == LEVEL_NONE) {
        /* the page asks before it knows whether to show the login form:
         * not an error */
        struct sbuf b = {0};
        sbuf_printf(&b, "{\"level\":\"none\",\"csrf\":\"\",\"password_set\":%s}\n",
                    ctl->password || ctl->enable_password ? "true" : "false");
        reply_json(c, 200, &b);
        sbuf_free(&b);
        return;
    }
    if (a.level == LEVEL_NONE) {
        reply_error(c, a.wrong ? 403 : 401, a.wrong ? "wrong password or expired session"
                                                    : "password required (Password header "
                                                      "or POST /login)");
        return;
    }
    if (get && strcmp(path, "/stat") == 0) {
        struct sbuf b = {0};
        as_stats_write_json(ctl->sc->engine, &b);
        reply_json(c, 200, &b);
        sbuf_free(&b);
        return;
    }
    if (get && strcmp(path, "/metrics") == 0) {
        struct as_redis *mr = as_engine_service_state(ctl->sc->engine, &as_redis_service);
        if (!as_redis_enabled(mr)) {
            as_http_adapter_reply_metrics(c, req, ctl->sc->engine);
            return;
        }
        struct job *j = job_new(ctl, c, mr);
        j->mfmt = as_metrics_negotiate(as_http_request_header(req, "Accept"));
        as_http_conn_on_close(c, job_abandoned, j);
        char *k = key_of(j, "report:", "st");
        const char *argv[] = { "HGETALL", k };
        int rc = job_send(j, AS_ARRAY_LEN(argv), argv, metrics_cb, 0);
        free(k);
        if (rc < 0) metrics_reply(j, NULL);
        return;
    }
    if (get && strcmp(path, "/api/v1/session") == 0) {
        size_t tlen;
        const char *tok = session_cookie(req, &tlen);
        char csrf[65] = "";
        if (tok) csrf_of(tok, tlen, csrf);
        struct sbuf b = {0};
        sbuf_printf(&b, "{\"level\":\"%s\",\"csrf\":\"%s\",\"password_set\":%s}\n",
                    a.level == LEVEL_WRITE ? "write" : "read", csrf,
                    ctl->password || ctl->enable_password ? "true" : "false");
        reply_json(c, 200, &b);
        sbuf_free(&b);
        return;
    }
    int is_domains = strcmp(path, "/api/v1/domains") == 0;
    int is_domain = strcmp(path, "/api/v1/domain") == 0;
    int is_sender = strcmp(path, "/api/v1/sender") == 0;
    int is_clear = strcmp(path, "/api/v1/sender/clear") == 0;
    int is_reports = strcmp(path, "/api/v1/reports") == 0;
    if (!is_domains && !is_domain && !is_sender && !is_clear && !is_reports) {
        reply_error(c, 404, "unknown path (see docs/stats.md for the controller's API)");
        return;
    }
    if (is_clear ? !post : !get) {
        reply_error(c, 405, is_clear ? "this call takes POST" : "this call takes GET");
        return;
    }
    if (is_clear && (a.level != LEVEL_WRITE || !a.csrf_ok)) {
        reply_error(c, 403, a.level != LEVEL_WRITE
                                ? "writes need controller.enable_password"
                                : "writes need the X-CSRF-Token header (from /login)");
        return;
    }
    struct as_redis *r = as_engine_service_state(ctl->sc->engine, &as_redis_service);
    if (!as_redis_enabled(r)) {
        reply_error(c, 503, "redis.servers is not set: there is no history to show");
        return;
    }
    struct job *j = job_new(ctl, c, r);
    struct sbuf v = {0};
    if (is_domain || is_sender || is_clear) {
        const char *d = query_param(req, "domain", &v);
        if (!d || strlen(d) >= sizeof j->domain) {
            sbuf_free(&v);
            free(j);
            reply_error(c, 400, "expected ?domain=<domain>");
            return;
        }
        as_strlcpy(j->domain, d, sizeof j->domain);
        if (!domain_ok(j->domain)) {
            sbuf_free(&v);
            free(j);
            reply_error(c, 400, "not a domain name");
            return;
        }
    }
    if (is_sender || is_clear) {
        const char *ip = query_param(req, "ip", &v);
        if (!ip || source_net(ip, j->net, sizeof j->net) < 0) {
            sbuf_free(&v);
            free(j);
            reply_error(c, 400, "expected &ip=<IPv4 or IPv6 address>");
            return;
        }
    }
    if (is_reports) {
        const char *n = query_param(req, "days", &v);
        long long days = 7;
        if (n && (as_parse_int(n, &days) < 0 || days < 1 || days > MAX_REPORT_DAYS)) {
            sbuf_free(&v);
            free(j);
            reply_error(c, 400, "expected days=1..31");
            return;
        }
        j->days = (int)days;
    }
    sbuf_free(&v);
    as_http_conn_on_close(c, job_abandoned, j);
    if (is_domains) api_domains(j);
    else if (is_domain) api_domain(j);
    else if (is_sender) api_sender(j);
    else if (is_clear) api_clear(j);
    else api_reports(j);
}

/* ---------------------------------------------------------------- */
/* the protocol                                                       */

static void *controller_start(struct as_session_ctx *sc, char *err, size_t errlen)
{
    AS_UNUSED(err);
    AS_UNUSED(errlen);
    if (!have_key) as_controller_keygen();   /* outside the daemon: this process only */
    const struct as_config *cfg = as_engine_config(sc->engine);
    const struct as_limits *el = as_engine_limits(sc->engine);
    struct as_http_limits lim = {
        .max_header_bytes = 32 * 1024,
        .max_headers = 100,
        .max_body = 64 * 1024,
        .header_timeout = el->header_timeout,
        .read_timeout = el->read_timeout,
        .idle_timeout = el->idle_timeout,
    };
    struct controller *ctl = xcalloc(1, sizeof *ctl);
    ctl->sc = sc;
    ctl->password = as_config_str(cfg, "controller.password", NULL);
    ctl->enable_password = as_config_str(cfg, "controller.enable_password", NULL);
    if (ctl->password && !*ctl->password) ctl->password = NULL;
    if (ctl->enable_password && !*ctl->enable_password) ctl->enable_password = NULL;
    ctl->http = as_http_new(&lim, handle_request, ctl);
    return ctl;
}

static void controller_stop(void *ps)
{
    struct controller *ctl = ps;
    as_http_free(ctl->http);
    free(ctl);
}

static void *controller_open(void *ps, struct as_conn *c)
{
    struct controller *ctl = ps;
    return as_http_conn_open(ctl->http, c);
}

/* A listen address that only this host reaches. */
static int local_only(const struct as_listen_addr *a)
{
    if (a->is_unix) return 1;
    const char *h = a->addr;
    if (strncmp(h, "127.", 4) == 0 || strncmp(h, "[::1]:", 6) == 0 ||
        strncmp(h, "localhost:", 10) == 0)
        return 1;
    return 0;
}

static int controller_check(const struct as_config *cfg, int listened, char *err, size_t errlen)
{
    int have_password = 0;
    for (size_t i = 0; i < as_config_count(cfg); i++) {
        const struct as_config_entry *e = as_config_at(cfg, i);
        if (strncmp(e->key, "controller.", 11) != 0) continue;
        if (!listened)
            return as_config_error(err, errlen, e, "'%s' has no effect: no 'listen' entry "
                                   "speaks controller (controller@ADDR)", e->key);
        if (e->value && *e->value) have_password = 1;
        else return as_config_error(err, errlen, e, "'%s' is empty: remove it, or set a "
                                    "password", e->key);
    }
    if (!listened || have_password) return 0;
    const char *const *specs;
    size_t n = as_config_list(cfg, "listen", &specs);
    for (size_t i = 0; i < n; i++) {
        struct as_listen_addr a;
        if (as_listen_parse(specs[i], &a, err, errlen) < 0) return -1;
        if (a.proto != &as_controller_protocol || local_only(&a)) continue;
        return as_config_error(err, errlen, as_config_find_item(cfg, "listen", specs[i]),
                               "the controller listens on %s without a password: set "
                               "controller.password (and controller.enable_password for "
                               "writes), or listen on 127.0.0.1, [::1] or a unix socket",
                               a.addr);
    }
    return 0;
}

const struct as_protocol as_controller_protocol = {
    .name = "controller",
    .start = controller_start,
    .stop = controller_stop,
    .open = controller_open,
    .read = as_http_conn_read,
    .flushed = as_http_conn_flushed,
    .eof = as_http_conn_eof,
    .timeout = as_http_conn_timeout,
    .close = as_http_conn_close,
    .refusal = as_http_refusal,
    .check = controller_check,
};
