/*
 * fuzz_controller.c - libFuzzer target for the controller listener
 * (core/net/controller_adapter.c): the Cookie header, the Password,
 * Authorization and X-CSRF-Token headers, the /login body, the query
 * parameters and the route dispatch, through the real adapter.
 *
 * The input is what a client sends on one connection (pipelining
 * allowed).  "@RT@" / "@WT@" in it become a valid read / write session
 * token and "@RC@" / "@WC@" their X-CSRF-Token values (got from a real
 * POST /login at start), so that the session paths are reachable.  Each
 * input goes, on one connection each, to two workers' worth of engine
 * (as_engine_new, no plugins), both with controller.password =
 * "read-secret" and controller.enable_password = "write-secret":
 *   A: redis.servers unset: every API call that passes the access checks
 *      answers 503;
 *   B: redis.servers a unix socket that does not exist: the query
 *      parameters (domain, ip, days) are parsed, then 400 or 503; /metrics
 *      answers without the report counters (reports_stats_up 0).
 * Each input gets a fresh controller (start/stop around it), so its
 * failed-login count starts at 0 and the run does not depend on earlier
 * inputs.  The requests are also parsed here with http-parser (the
 * library behind the server's framing) to know what was asked.
 *
 * Invariants (abort on violation):
 *   1. the reply stream is a sequence of well-formed HTTP/1.x responses
 *      (status line, "Name: value" lines from a known set, each once,
 *      Content-Length, Connection keep-alive or close, then the body;
 *      none after the body of a "Connection: close" reply);
 *   2. one response per request: with the connection still open, as many
 *      responses as complete requests; a close only after a request that
 *      asked for it or after a framing error (400 411 413 414 501 505,
 *      JSON body), which is the last response;
 *   3. every controller reply carries the five security headers; JSON
 *      bodies parse;
 *   4. access, modelled from the request: a request whose bytes hold no
 *      password and no session MAC gets no 200 but for the dashboard
 *      files, /ping, /logout and /api/v1/session with level "none"; a
 *      Password / Bearer header gets exactly what its level allows; a
 *      cookie at most what the MACs in the request allow; "write" only
 *      with the write password or MAC; a write by cookie only with the
 *      X-CSRF-Token of one of our tokens;
 *   5. Set-Cookie with a session only in the 200 answer to a POST /login
 *      whose JSON password is right, at that level, with the documented
 *      attributes; /logout clears it; nothing else sets one;
 *   6. Redis absent (A): API calls past the access checks answer 503,
 *      (B) 400 or 503; never 200;
 *   7. failed logins: 429 (Retry-After 1..300) exactly for the password
 *      tries after the 10th wrong password of the connection;
 *   8. ASan/UBSan/LSan: no memory error, no leak per input.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/event.h>
#include <http_parser.h>
#include <jansson.h>
#include "net/controller_adapter.h"
#include "net/protocol.h"
#include "net/server.h"
#include "scan/engine.h"
#include "scan/session.h"
#include "util/config.h"
#include "util/log.h"
#include "util/util.h"

#define READ_PW "read-secret"
#define WRITE_PW "write-secret"
#define LOGIN_FAILURES 10         /* controller_adapter.c */
#define MAX_EXPANDED (256 * 1024)

enum { L_NONE, L_READ, L_WRITE };

struct as_embedded {              /* controller_adapter.c */
    const char *name;
    const char *text;
};
extern const struct as_embedded as_embedded_dashboard[];

struct worker {
    const char *name;
    struct as_session_ctx sc;
    int lfd;
    struct sockaddr_un addr;
    socklen_t addrlen;
};

static struct event_base *base;
static struct worker workers[2];
static char token[3][128];        /* [L_READ], [L_WRITE]: "1.<exp>.<mac>" */
static char token_mac[3][65];
static char csrf[3][65];

/* ---------------------------------------------------------------- */
/* failing                                                            */

static const char *cur_input;
static size_t cur_len;

static void violation(const char *fmt, ...) AS_PRINTF(1, 2);
static void violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_controller: INVARIANT VIOLATED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (cur_input)
        fprintf(stderr, "input (%zu bytes): %.*s\n", cur_len, (int)(cur_len > 2000 ? 2000 : cur_len),
                cur_input);
    abort();
}

/* ---------------------------------------------------------------- */
/* the client's view of the requests (http-parser, as the server)     */

struct hdr {
    char *name, *value;
};

struct creq {
    int method;
    int keep_alive;
    struct sbuf url;
    struct hdr *h;
    size_t nh, caph;
    int hstate, headers_done;
    struct sbuf name, value;
    struct sbuf body;
    size_t raw_start, raw_end;
    char *path, *query;            /* split copy of url */
};

struct creqs {
    struct creq *r;
    size_t n, cap;
    int in_msg;                    /* r[n] is being parsed */
};

static struct creq *cur_req(http_parser *p)
{
    struct creqs *q = p->data;
    return &q->r[q->n];
}

static void hdr_finish(struct creq *c)
{
    if (c->hstate == 0) return;
    while (c->value.len && (c->value.data[c->value.len - 1] == ' ' ||
                            c->value.data[c->value.len - 1] == '\t'))
        c->value.len--;
    if (c->nh == c->caph) {
        c->caph = c->caph ? 2 * c->caph : 8;
        c->h = xrealloc(c->h, c->caph * sizeof *c->h);
    }
    c->h[c->nh].name = xstrndup(c->name.data ? c->name.data : "", c->name.len);
    c->h[c->nh].value = xstrndup(c->value.data ? c->value.data : "", c->value.len);
    c->nh++;
    sbuf_reset(&c->name);
    sbuf_reset(&c->value);
    c->hstate = 0;
}

static int cb_begin(http_parser *p)
{
    struct creqs *q = p->data;
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 8;
        q->r = xrealloc(q->r, q->cap * sizeof *q->r);
    }
    memset(&q->r[q->n], 0, sizeof q->r[q->n]);
    q->in_msg = 1;
    return 0;
}

static int cb_url(http_parser *p, const char *at, size_t len)
{
    sbuf_add(&cur_req(p)->url, at, len);
    return 0;
}

static int cb_field(http_parser *p, const char *at, size_t len)
{
    struct creq *c = cur_req(p);
    if (c->headers_done) return 0;
    if (c->hstate == 2) hdr_finish(c);
    c->hstate = 1;
    sbuf_add(&c->name, at, len);
    return 0;
}

static int cb_value(http_parser *p, const char *at, size_t len)
{
    struct creq *c = cur_req(p);
    if (c->headers_done) return 0;
    c->hstate = 2;
    sbuf_add(&c->value, at, len);
    return 0;
}

/* request_split_url() of core/net/http.c */
static void split_url(struct creq *c)
{
    char *u = xstrndup(c->url.data ? c->url.data : "", c->url.len);
    char *keep = u;
    if (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) {
        char *auth = strstr(u, "//") + 2;
        char *end = auth + strcspn(auth, "/?#");
        if (*end == '/') {
            u = end;
        } else {
            memmove(auth, end, strlen(end) + 1);
            auth[-1] = '/';
            u = auth - 1;
        }
    }
    char *q = strchr(u, '?');
    if (q) *q++ = '\0';
    char *frag = strchr(q ? q : u, '#');
    if (frag) *frag = '\0';
    c->path = xstrdup(u);
    c->query = q ? xstrdup(q) : NULL;
    free(keep);
}

static int cb_headers_complete(http_parser *p)
{
    struct creq *c = cur_req(p);
    hdr_finish(c);
    c->headers_done = 1;
    c->method = p->method;
    split_url(c);
    return 0;
}

static int cb_body(http_parser *p, const char *at, size_t len)
{
    sbuf_add(&cur_req(p)->body, at, len);
    return 0;
}

static int cb_complete(http_parser *p)
{
    struct creq *c = cur_req(p);
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings client_settings = {
    .on_message_begin = cb_begin,
    .on_url = cb_url,
    .on_header_field = cb_field,
    .on_header_value = cb_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_complete,
};

static void creq_free(struct creq *c)
{
    sbuf_free(&c->url);
    for (size_t i = 0; i < c->nh; i++) {
        free(c->h[i].name);
        free(c->h[i].value);
    }
    free(c->h);
    sbuf_free(&c->name);
    sbuf_free(&c->value);
    sbuf_free(&c->body);
    free(c->path);
    free(c->query);
}

/* The complete requests of data, up to the first that ends the
 * connection (Connection: close, HTTP/1.0, Upgrade) or a parse error. */
static void parse_requests(const char *data, size_t len, struct creqs *q)
{
    memset(q, 0, sizeof *q);
    http_parser p;
    size_t off = 0;
    while (off < len) {
        http_parser_init(&p, HTTP_REQUEST);
        p.data = q;
        size_t n = http_parser_execute(&p, &client_settings, data + off, len - off);
        if (HTTP_PARSER_ERRNO(&p) != HPE_PAUSED) break;   /* incomplete or invalid */
        struct creq *c = &q->r[q->n];
        c->raw_start = off;
        c->raw_end = off + n;
        q->n++;
        q->in_msg = 0;
        off += n;
        if (!c->keep_alive) break;
    }
    if (q->in_msg) {     /* a partial request: not counted */
        creq_free(&q->r[q->n]);
        q->in_msg = 0;
    }
}

static void creqs_free(struct creqs *q)
{
    for (size_t i = 0; i < q->n; i++) creq_free(&q->r[i]);
    free(q->r);
}

static const char *creq_header(const struct creq *c, const char *name)
{
    for (size_t i = 0; i < c->nh; i++)
        if (strcasecmp(c->h[i].name, name) == 0) return c->h[i].value;
    return NULL;
}

/* ---------------------------------------------------------------- */
/* the responses                                                      */

static const char *const sec_headers[][2] = {
    { "Cache-Control", "no-store" },
    { "X-Content-Type-Options", "nosniff" },
    { "X-Frame-Options", "DENY" },
    { "Referrer-Policy", "no-referrer" },
    { "Content-Security-Policy",
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
      "connect-src 'self'; frame-ancestors 'none'; form-action 'self'" },
};
#define NSEC (sizeof sec_headers / sizeof sec_headers[0])

struct cresp {
    int status, close;
    unsigned long long clen;
    char ctype[128];
    int nsec;
    char cookie[512];
    int has_cookie;
    long retry;
    int has_retry;
    const char *body;
    size_t body_len;
    int has_body;
};

static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* One line ending in CRLF at *pos, without it, into line (NUL-terminated);
 * -1 if there is no CRLF, a bare CR or LF, or a control byte. */
static int get_line(const char *s, size_t len, size_t *pos, char *line, size_t cap)
{
    size_t i = *pos, n = 0;
    for (; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r') {
            if (i + 1 >= len || s[i + 1] != '\n') return -1;
            line[n] = '\0';
            *pos = i + 2;
            return 0;
        }
        if (ch == '\n' || (ch < 0x20 && ch != '\t') || ch == 0x7f) return -1;
        if (n + 1 >= cap) return -1;
        line[n++] = (char)ch;
    }
    return -1;
}

/* Parses the responses in s; head_of(i) says whether the i-th answers a
 * HEAD (no body).  Returns the count, violations abort. */
static size_t parse_responses(const char *s, size_t len, const struct creqs *q, struct cresp **out)
{
    size_t pos = 0, n = 0, cap = 0;
    struct cresp *rs = NULL;
    char line[4096];
    while (pos < len) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            rs = xrealloc(rs, cap * sizeof *rs);
        }
        struct cresp *r = &rs[n];
        memset(r, 0, sizeof *r);
        if (get_line(s, len, &pos, line, sizeof line) < 0)
            violation("response %zu: status line not CRLF-terminated or with control bytes", n);
        char reason[256];
        int minor, used = 0;
        if (sscanf(line, "HTTP/1.%1d %3d %255[^\r\n]%n", &minor, &r->status, reason, &used) != 3 ||
            (size_t)used != strlen(line) || (minor != 0 && minor != 1) || r->status < 100 ||
            r->status > 599 || line[12] != ' ')
            violation("response %zu: bad status line '%s'", n, line);
        if (r->status == 100) {   /* Expect: 100-continue: interim, no fields */
            if (get_line(s, len, &pos, line, sizeof line) < 0 || line[0])
                violation("response %zu: 100 Continue with fields", n);
            continue;
        }
        int have_conn = 0, have_clen = 0, have_ctype = 0;
        unsigned sec_seen = 0;
        for (;;) {
            if (get_line(s, len, &pos, line, sizeof line) < 0)
                violation("response %zu: header line not CRLF-terminated or with control bytes",
                          n);
            if (!line[0]) break;
            char *colon = strchr(line, ':');
            if (!colon || colon == line || colon[1] != ' ')
                violation("response %zu: header line '%s' is not 'Name: value'", n, line);
            *colon = '\0';
            const char *name = line, *value = colon + 2;
            for (const char *c = name; *c; c++)
                if (!is_tchar((unsigned char)*c)) violation("response %zu: header name '%s'", n, name);
            if (strcmp(name, "Connection") == 0) {
                if (have_conn++) violation("response %zu: two Connection fields", n);
                if (strcmp(value, "close") == 0) r->close = 1;
                else if (strcmp(value, "keep-alive") != 0)
                    violation("response %zu: Connection: %s", n, value);
            } else if (strcmp(name, "Content-Length") == 0) {
                char *end;
                if (have_clen++) violation("response %zu: two Content-Length fields", n);
                r->clen = strtoull(value, &end, 10);
                if (!*value || *end || r->clen > (1u << 24))
                    violation("response %zu: Content-Length: %s", n, value);
            } else if (strcmp(name, "Content-Type") == 0) {
                if (have_ctype++) violation("response %zu: two Content-Type fields", n);
                as_strlcpy(r->ctype, value, sizeof r->ctype);
            } else if (strcmp(name, "Set-Cookie") == 0) {
                if (r->has_cookie++) violation("response %zu: two Set-Cookie fields", n);
                as_strlcpy(r->cookie, value, sizeof r->cookie);
            } else if (strcmp(name, "Retry-After") == 0) {
                char *end;
                if (r->has_retry++) violation("response %zu: two Retry-After fields", n);
                r->retry = strtol(value, &end, 10);
                if (!*value || *end) violation("response %zu: Retry-After: %s", n, value);
            } else {
                size_t k = 0;
                for (; k < NSEC; k++)
                    if (strcmp(name, sec_headers[k][0]) == 0) break;
                if (k == NSEC) violation("response %zu: unexpected header '%s'", n, name);
                if (strcmp(value, sec_headers[k][1]) != 0)
                    violation("response %zu: %s: %s", n, name, value);
                if (sec_seen & (1u << k)) violation("response %zu: two %s fields", n, name);
                sec_seen |= 1u << k;
                r->nsec++;
            }
        }
        if (!have_conn || !have_clen)
            violation("response %zu: no Connection or no Content-Length", n);
        size_t left = len - pos;
        int head = n < q->n && strcmp(http_method_str((enum http_method)q->r[n].method), "HEAD") == 0;
        if (r->close) {
            /* the last response: a framing error may answer a HEAD whose
             * method the server had not parsed yet, with its body */
            if (left != 0 && left != r->clen)
                violation("response %zu: %zu bytes after a 'Connection: close' reply of "
                          "Content-Length %llu", n, left, r->clen);
            r->has_body = left != 0 || r->clen == 0;
        } else if (!head) {
            if (left < r->clen)
                violation("response %zu: body of %zu bytes, Content-Length %llu", n, left, r->clen);
            r->has_body = 1;
        }
        if (r->has_body) {
            r->body = s + pos;
            r->body_len = (size_t)r->clen;
            pos += (size_t)r->clen;
        }
        n++;
    }
    *out = rs;
    return n;
}

/* ---------------------------------------------------------------- */
/* one connection                                                     */

/* Sends data on a new connection to w and reads until the server closes
 * or nothing moves any more. */
static void exchange(const struct worker *w, const char *data, size_t len, struct sbuf *out,
                     int *closed)
{
    *closed = 0;
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c < 0 || connect(c, (const struct sockaddr *)&w->addr, w->addrlen) < 0) {
        perror("fuzz_controller: connect");
        abort();
    }
    size_t off = 0;
    int idle = 0;
    static char rbuf[65536];
    for (long i = 0; i < 2000000 && idle < 64; i++) {
        int moved = 0;
        if (off < len) {
            ssize_t n = send(c, data + off, len - off, MSG_NOSIGNAL);
            if (n > 0) {
                off += (size_t)n;
                moved = 1;
            } else if (n < 0 && errno != EAGAIN) {
                off = len;   /* the server closed early (framing error) */
            }
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        ssize_t r = read(c, rbuf, sizeof rbuf);
        if (r > 0) {
            sbuf_add(out, rbuf, (size_t)r);
            moved = 1;
        } else if (r == 0 || errno != EAGAIN) {
            *closed = 1;
            break;
        }
        idle = off >= len && !moved ? idle + 1 : 0;
    }
    if (idle < 64 && !*closed) violation("the exchange did not settle");
    close(c);
    for (int i = 0; i < 4; i++) event_base_loop(base, EVLOOP_NONBLOCK);
}

/* A fresh controller of w (its own failed-login table) for one
 * connection. */
static void run_worker(const struct worker *w, const char *data, size_t len, struct sbuf *out,
                       int *closed)
{
    char err[256] = "";
    struct as_server_limits slim = { 0, 0, 1.0, 0 };
    struct as_server *srv = as_server_new(base, &slim);
    void *ps = as_controller_protocol.start((struct as_session_ctx *)&w->sc, err, sizeof err);
    if (!ps || as_server_add_listener(srv, w->lfd, &as_controller_protocol, ps) < 0) {
        fprintf(stderr, "fuzz_controller: start: %s\n", err);
        abort();
    }
    exchange(w, data, len, out, closed);
    as_server_free(srv);
    as_controller_protocol.stop(ps);
}

/* ---------------------------------------------------------------- */
/* the model of the controller                                        */

static const struct as_embedded *asset_of(const char *path)
{
    const char *name = strcmp(path, "/") == 0 ? "index.html" : path + 1;
    if (strcmp(path, "/") != 0 && strcmp(path, "/index.html") != 0 &&
        strcmp(path, "/app.js") != 0 && strcmp(path, "/style.css") != 0)
        return NULL;
    for (const struct as_embedded *a = as_embedded_dashboard; a->name; a++)
        if (strcmp(a->name, name) == 0) return a;
    return NULL;
}

static int level_of(const char *pw)
{
    if (!pw) return L_NONE;
    if (strcmp(pw, WRITE_PW) == 0) return L_WRITE;
    if (strcmp(pw, READ_PW) == 0) return L_READ;
    return L_NONE;
}

/* header_password() of the adapter */
static const char *header_password(const struct creq *c)
{
    const char *p = creq_header(c, "Password");
    if (p) return p;
    const char *a = creq_header(c, "Authorization");
    if (a && strncasecmp(a, "Bearer ", 7) == 0) return a + 7;
    return NULL;
}

static int contains(const char *s, size_t len, const char *what)
{
    return memmem(s, len, what, strlen(what)) != NULL;
}

static int is_data_path(const char *path)
{
    return strcmp(path, "/api/v1/domains") == 0 || strcmp(path, "/api/v1/domain") == 0 ||
           strcmp(path, "/api/v1/sender") == 0 || strcmp(path, "/api/v1/sender/clear") == 0 ||
           strcmp(path, "/api/v1/reports") == 0;
}

#define ST_METRICS 1200            /* a 200 /metrics reply (no security headers) */

/* The statuses handle_request() may give at level lv; adds them to set. */
static void expect_status(int redis_b, int get, int post, const char *path, int lv, int csrf_ok,
                          int wrong, int *set, size_t *n)
{
    if (get && strcmp(path, "/api/v1/session") == 0 && lv == L_NONE) {
        set[(*n)++] = 200;
        return;
    }
    if (lv == L_NONE) {
        set[(*n)++] = wrong ? 403 : 401;
        return;
    }
    if (get && (strcmp(path, "/stat") == 0 || strcmp(path, "/api/v1/session") == 0)) {
        set[(*n)++] = 200;
        return;
    }
    if (get && strcmp(path, "/metrics") == 0) {
        set[(*n)++] = ST_METRICS;
        return;
    }
    if (!is_data_path(path)) {
        set[(*n)++] = 404;
        return;
    }
    int clear = strcmp(path, "/api/v1/sender/clear") == 0;
    if (clear ? !post : !get) {
        set[(*n)++] = 405;
        return;
    }
    if (clear && (lv != L_WRITE || !csrf_ok)) {
        set[(*n)++] = 403;
        return;
    }
    set[(*n)++] = 503;
    if (redis_b) set[(*n)++] = 400;
}

static int is_hex64(const char *s, size_t n)
{
    if (n != 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i])) return 0;
    return 1;
}

static json_t *body_json(size_t i, const struct cresp *r)
{
    if (!r->has_body) return NULL;
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);
    if (!j) violation("response %zu: JSON body does not parse: %s", i, e.text);
    return j;
}

/* Checks response r (a controller reply, /ping or /metrics) against
 * request c; *fails counts the wrong passwords so far. */
static void check_pair(int redis_b, size_t i, const struct creq *c, const struct cresp *r,
                       const char *raw, int *fails)
{
    const char *m = http_method_str((enum http_method)c->method);
    int head = strcmp(m, "HEAD") == 0;
    int get = head || strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
    const char *path = c->path;
    const char *raw_req = raw + c->raw_start;
    size_t raw_len = c->raw_end - c->raw_start;
    int json = strcmp(r->ctype, "application/json") == 0;
    json_t *j = json ? body_json(i, r) : NULL;

    /* the dashboard's files and /ping need nothing */
    const struct as_embedded *a = get ? asset_of(path) : NULL;
    if (a) {
        if (r->status != 200 || r->nsec != NSEC || r->has_cookie || r->clen != strlen(a->text) ||
            (r->has_body && memcmp(r->body, a->text, r->body_len) != 0))
            violation("response %zu: %s %s: status %d, not the embedded file", i, m, path,
                      r->status);
        goto out;
    }
    if (strcmp(path, "/ping") == 0) {
        if (r->status != 200 || r->nsec || r->has_cookie || r->clen != 6 ||
            (r->has_body && memcmp(r->body, "pong\r\n", 6) != 0))
            violation("response %zu: /ping: status %d", i, r->status);
        goto out;
    }
    if (r->nsec != NSEC && !(r->status == 200 && strstr(r->ctype, "version=")))
        violation("response %zu: %s %s: status %d without the security headers", i, m, path,
                  r->status);
    if (json && r->status >= 400 && j && !json_is_string(json_object_get(j, "error")))
        violation("response %zu: error %d without an \"error\" string", i, r->status);

    const char *hp = header_password(c);
    int attempt = hp || (post && strcmp(path, "/login") == 0);
    if (attempt && *fails >= LOGIN_FAILURES) {
        if (r->status != 429 || !r->has_retry || r->retry < 1 || r->retry > 300)
            violation("response %zu: a password try after %d wrong ones got %d, want 429 with "
                      "Retry-After 1..300", i, *fails, r->status);
        goto out;
    }
    if (r->status == 429 || r->has_retry)
        violation("response %zu: 429 / Retry-After after %d wrong passwords", i, *fails);

    if (strcmp(path, "/login") == 0) {
        if (!post) {
            if (r->status != 405 || r->has_cookie) violation("response %zu: %s /login: %d", i, m, r->status);
            goto out;
        }
        json_error_t e;
        json_t *b = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, &e);
        const char *pw = b ? json_string_value(json_object_get(b, "password")) : NULL;
        int lv = level_of(pw);
        int want = !pw ? 400 : lv == L_NONE ? 403 : 200;
        json_decref(b);
        if (r->status != want)
            violation("response %zu: POST /login got %d, want %d", i, r->status, want);
        if (want == 403) (*fails)++;
        if (want != 200) {
            if (r->has_cookie) violation("response %zu: a refused /login sets a cookie", i);
            goto out;
        }
        /* the session: "L.EXP.MAC; attributes" at the level of the password */
        int clv = -1, used = 0;
        long long exp = 0;
        char mac[65] = "", attrs[256] = "";
        if (!r->has_cookie ||
            sscanf(r->cookie, "as_session=%d.%lld.%64[0-9a-f]%n", &clv, &exp, mac, &used) != 3 ||
            clv != lv || strlen(mac) != 64 ||
            (as_strlcpy(attrs, r->cookie + used, sizeof attrs),
             strcmp(attrs, "; Path=/; HttpOnly; SameSite=Strict; Max-Age=28800") != 0))
            violation("response %zu: /login at level %d: Set-Cookie '%s'", i, lv,
                      r->has_cookie ? r->cookie : "(none)");
        const char *jl = j ? json_string_value(json_object_get(j, "level")) : NULL;
        const char *jc = j ? json_string_value(json_object_get(j, "csrf")) : NULL;
        if (j && (!jl || strcmp(jl, lv == L_WRITE ? "write" : "read") != 0 || !jc ||
                  !is_hex64(jc, strlen(jc))))
            violation("response %zu: /login body: level or csrf wrong", i);
        goto out;
    }
    if (strcmp(path, "/logout") == 0) {
        if (r->status != 200 || !r->has_cookie ||
            strcmp(r->cookie, "as_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0") != 0 ||
            (r->has_body && (r->body_len != 3 || memcmp(r->body, "{}\n", 3) != 0)))
            violation("response %zu: /logout: %d '%s'", i, r->status, r->cookie);
        goto out;
    }
    if (r->has_cookie)
        violation("response %zu: %s %s (status %d) sets a cookie: %s", i, m, path, r->status,
                  r->cookie);

    /* the levels the request can have */
    int lv_min, lv_max, csrf_lo, csrf_hi, wrong_any;
    if (hp) {
        lv_min = lv_max = level_of(hp);
        csrf_lo = csrf_hi = 1;  /* a custom header: no other site's page sends it */
        wrong_any = lv_min == L_NONE;
        if (wrong_any) (*fails)++;
    } else {
        /* a cookie opens at most what the MACs of our tokens in the
         * request open (the level and expiry may be spelled otherwise) */
        lv_min = L_NONE;
        lv_max = contains(raw_req, raw_len, token_mac[L_WRITE]) ? L_WRITE
                 : contains(raw_req, raw_len, token_mac[L_READ]) ? L_READ : L_NONE;
        /* the CSRF value of a token is a MAC of it as sent: only ours
         * (canonical tokens) can be matched by the request */
        const char *x = creq_header(c, "X-CSRF-Token");
        csrf_lo = 0;
        csrf_hi = x && (strcmp(x, csrf[L_READ]) == 0 || strcmp(x, csrf[L_WRITE]) == 0);
        wrong_any = creq_header(c, "Cookie") != NULL;
    }
    int set[64];
    size_t n = 0;
    for (int lv = lv_min; lv <= lv_max; lv++)
        for (int cs = csrf_lo; cs <= csrf_hi; cs++)
            for (int wr = 0; wr <= wrong_any; wr++) {
                if (hp && wr != (lv == L_NONE)) continue;
                expect_status(redis_b, get, post, path, lv, cs, wr, set, &n);
            }
    int metrics = r->status == 200 && strstr(r->ctype, "version=") != NULL;
    int got = metrics ? ST_METRICS : r->status;
    size_t k = 0;
    while (k < n && set[k] != got) k++;
    if (k == n) {
        char want[256] = "";
        for (size_t x = 0; x < n; x++)
            snprintf(want + strlen(want), sizeof want - strlen(want), " %d", set[x]);
        violation("response %zu: %s %s (password header %s, level %d..%d, redis %s) got %d, "
                  "want one of%s", i, m, path, hp ? hp : "none", lv_min, lv_max,
                  redis_b ? "unreachable" : "unset", got, want);
    }
    if (r->status == 200 && strcmp(path, "/api/v1/session") == 0 && j) {
        const char *jl = json_string_value(json_object_get(j, "level"));
        int jlv = !jl ? -1 : strcmp(jl, "none") == 0 ? L_NONE : strcmp(jl, "read") == 0 ? L_READ
                  : strcmp(jl, "write") == 0 ? L_WRITE : -1;
        if (jlv < lv_min || jlv > lv_max || !json_is_true(json_object_get(j, "password_set")))
            violation("response %zu: /api/v1/session says level %s, want %d..%d", i,
                      jl ? jl : "?", lv_min, lv_max);
    }
    /* with Redis configured /metrics adds the report counters when it
     * answers: unreachable, only reports_stats_up (0) */
    if (metrics && redis_b && r->has_body &&
        (!contains(r->body, r->body_len, "reports_stats_up") ||
         contains(r->body, r->body_len, "reports_sent_total")))
        violation("response %zu: /metrics with Redis unreachable: report families wrong", i);
    if (r->status == 200 && strcmp(path, "/stat") == 0 && j && !json_is_object(j))
        violation("response %zu: /stat is not a JSON object", i);
out:
    json_decref(j);
}

/* ---------------------------------------------------------------- */
/* the checks of one connection                                       */

static int framing_status(int st)
{
    return st == 400 || st == 411 || st == 413 || st == 414 || st == 501 || st == 505;
}

static void check_exchange(int redis_b, const char *data, const struct creqs *q,
                           const struct sbuf *out, int closed)
{
    struct cresp *rs = NULL;
    size_t n = parse_responses(out->data ? out->data : "", out->len, q, &rs);
    int fails = 0;
    if (getenv("FUZZ_CONTROLLER_VERBOSE")) {   /* what the checks saw */
        fprintf(stderr, "%s: %zu requests, %zu responses%s:", workers[redis_b].name, q->n, n,
                closed ? ", closed" : "");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", rs[i].status);
        fprintf(stderr, "\n");
    }
    for (size_t i = 0; i < n; i++) {
        const struct cresp *r = &rs[i];
        int last = i + 1 == n;
        if (r->close && !last) violation("response %zu: 'Connection: close' is not the last", i);
        /* a framing error: the server's own JSON answer, then close */
        if (r->close && r->nsec == 0 && framing_status(r->status) &&
            strcmp(r->ctype, "application/json") == 0) {
            if (i > q->n) violation("response %zu: framing error after %zu requests", i, q->n);
            json_decref(body_json(i, r));
            break;
        }
        if (i >= q->n)
            violation("response %zu (status %d) to no request (%zu complete)", i, r->status, q->n);
        if (r->close && (q->r[i].keep_alive || !last))
            violation("response %zu: closes a keep-alive connection (status %d)", i, r->status);
        check_pair(redis_b, i, &q->r[i], r, data, &fails);
    }
    int framing = n && rs[n - 1].close && rs[n - 1].nsec == 0 && framing_status(rs[n - 1].status);
    if (!framing && n != q->n)
        violation("%zu responses to %zu complete requests (closed: %d)", n, q->n, closed);
    if (closed && (n == 0 || !rs[n - 1].close))
        violation("the server closed without a 'Connection: close' reply");
    if (!closed && n && rs[n - 1].close)
        violation("'Connection: close' but the connection stayed open");
    free(rs);
}

/* ---------------------------------------------------------------- */
/* set-up                                                             */

static char plugdir[64];

static void plugdir_remove(void) { rmdir(plugdir); }

static void worker_init(struct worker *w, int idx, const char *extra)
{
    char err[1024] = "";
    if (!plugdir[0]) {
        /* no plugins: the controller needs none */
        snprintf(plugdir, sizeof plugdir, "/tmp/fuzz-controller-%d", (int)getpid());
        if (mkdir(plugdir, 0700) < 0 && errno != EEXIST) {
            perror("fuzz_controller: mkdir");
            abort();
        }
        atexit(plugdir_remove);
    }
    struct sbuf conf = {0};
    sbuf_printf(&conf, "plugins.dir = %s\nplugins.allow_no_auth = yes\n"
                "controller.password = " READ_PW "\ncontroller.enable_password = " WRITE_PW "\n%s",
                plugdir, extra);
    struct as_config *cfg = as_config_new();
    if (as_config_load_string(cfg, "fuzz.conf", conf.data, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_controller: config: %s\n", err);
        abort();
    }
    sbuf_free(&conf);
    as_engine_apply_defaults(cfg);
    struct as_engine *e = as_engine_new(base, cfg, err, sizeof err);
    if (!e) {
        fprintf(stderr, "fuzz_controller: engine: %s\n", err);
        abort();
    }
    as_session_ctx_init(&w->sc, e);
    w->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    memset(&w->addr, 0, sizeof w->addr);
    w->addr.sun_family = AF_UNIX;
    int n = snprintf(w->addr.sun_path + 1, sizeof w->addr.sun_path - 1,
                     "authscan-fuzz-controller-%d-%d", (int)getpid(), idx);
    w->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    if (w->lfd < 0 || bind(w->lfd, (struct sockaddr *)&w->addr, w->addrlen) < 0 ||
        listen(w->lfd, 16) < 0) {
        perror("fuzz_controller: listen");
        abort();
    }
}

/* A real login at level lv: its token, the MAC in it and its CSRF value. */
static void login_as(int lv, const char *pw)
{
    struct sbuf req = {0}, out = {0};
    char body[64];
    snprintf(body, sizeof body, "{\"password\":\"%s\"}", pw);
    sbuf_printf(&req, "POST /login HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    int closed;
    run_worker(&workers[0], req.data, req.len, &out, &closed);
    sbuf_addc(&out, '\0');
    const char *ck = strstr(out.data, "Set-Cookie: as_session=");
    const char *cs = strstr(out.data, "\"csrf\":\"");
    if (!ck || !cs || sscanf(ck + 23, "%127[^;]", token[lv]) != 1 ||
        sscanf(cs + 8, "%64[0-9a-f]", csrf[lv]) != 1) {
        fprintf(stderr, "fuzz_controller: login failed:\n%s\n", out.data);
        abort();
    }
    const char *dot = strrchr(token[lv], '.');
    as_strlcpy(token_mac[lv], dot ? dot + 1 : "", sizeof token_mac[lv]);
    sbuf_free(&req);
    sbuf_free(&out);
}

static void setup(void)
{
    as_log_set_level(AS_LOG_ERR);
    base = event_base_new();
    workers[0].name = "redis unset";
    worker_init(&workers[0], 0, "");
    workers[1].name = "redis unreachable";
    char extra[128];
    snprintf(extra, sizeof extra, "redis.servers = /nonexistent-authscan-fuzz-%d/redis.sock\n",
             (int)getpid());
    worker_init(&workers[1], 1, extra);
    login_as(L_READ, READ_PW);
    login_as(L_WRITE, WRITE_PW);
}

/* The input with its placeholders replaced; NULL if it would grow past
 * MAX_EXPANDED. */
static char *expand(const uint8_t *buf, size_t len, size_t *outlen)
{
    static const char *const ph[] = { "@RT@", "@WT@", "@RC@", "@WC@" };
    const char *rep[] = { token[L_READ], token[L_WRITE], csrf[L_READ], csrf[L_WRITE] };
    struct sbuf b = {0};
    for (size_t i = 0; i < len;) {
        size_t k = 0;
        for (; k < 4; k++)
            if (len - i >= 4 && memcmp(buf + i, ph[k], 4) == 0) break;
        if (k < 4) {
            sbuf_adds(&b, rep[k]);
            i += 4;
        } else {
            sbuf_addc(&b, (char)buf[i++]);
        }
        if (b.len > MAX_EXPANDED) {
            sbuf_free(&b);
            return NULL;
        }
    }
    *outlen = b.len;
    if (!b.data) sbuf_addc(&b, '\0');
    return sbuf_steal(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (!base) setup();
    size_t dlen;
    char *data = expand(buf, len, &dlen);
    if (!data) return 0;
    cur_input = data;
    cur_len = dlen;
    struct creqs q;
    parse_requests(data, dlen, &q);
    for (int k = 0; k < 2; k++) {
        struct sbuf out = {0};
        int closed;
        run_worker(&workers[k], data, dlen, &out, &closed);
        check_exchange(k, data, &q, &out, closed);
        sbuf_free(&out);
    }
    creqs_free(&q);
    free(data);
    cur_input = NULL;
    return 0;
}
