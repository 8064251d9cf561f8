/*
 * redis.c - see redis.h and docs/redis.md.
 *
 * Each connection is a hiredis async context attached to the event base
 * with hiredis' libevent adapter.  hiredis calls every command's callback
 * exactly once: with the reply, or with NULL when the context goes away
 * (our drop, the server closing, a failed connect).  So a request lives
 * until that call, whatever happened to its caller: a timeout or a
 * cancellation only clears req->cb, and the late reply is then dropped.
 *
 * A connection is identified by its context: when a context is dropped,
 * conn->ac is cleared first, so callbacks still arriving from the old
 * context (NULL replies, the disconnect callback) see conn->ac != ac and
 * leave the connection alone.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <openssl/evp.h>
#include "services/redis.h"
#include "services/service.h"
#include "util/log.h"
#include "util/util.h"

#define REDIS_ARGC_MAX 1024
#define REDIS_WRITE_DELAY 0.002   /* seconds a write may wait for company */

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

const struct as_config_key as_redis_config_keys[] = {
    { "servers", AS_OPT_LIST, NULL,
      "the Redis server: IP, IP:port, [IPv6]:port, or a unix socket path (/path or "
      "unix:/path); one server; unset: Redis is off" },
    { "password", AS_OPT_STRING, NULL, "sent with AUTH on every connection" },
    { "db", AS_OPT_INT, "0", "database number, sent with SELECT on every connection" },
    { "prefix", AS_OPT_STRING, "as:", "put in front of every key" },
    { "timeout", AS_OPT_DURATION, "500ms",
      "deadline of one command; also how long a connection may stay silent "
      "with commands outstanding, or take to connect, before it is dropped" },
    { "connections", AS_OPT_INT, "2", "connections per worker process" },
    { "queue_max", AS_OPT_INT, "1000",
      "writes held per worker while no connection is up; more are dropped" },
};
const size_t as_redis_config_nkeys = AS_ARRAY_LEN(as_redis_config_keys);

static const char *redis_default(const char *key)
{
    for (size_t i = 0; i < as_redis_config_nkeys; i++)
        if (strcmp(as_redis_config_keys[i].key, key) == 0)
            return as_redis_config_keys[i].default_value;
    return NULL;
}

/* "/path", "unix:/path", "1.2.3.4", "1.2.3.4:6380", "::1", "[::1]:6380".
 * Host names are refused: hiredis would resolve them with a blocking
 * getaddrinfo() on the event loop. */
static int parse_server(const char *s, struct as_redis_config *rc)
{
    rc->unix_path = NULL;
    rc->port = 6379;
    if (strncmp(s, "unix:", 5) == 0) s += 5;
    if (s[0] == '/') {
        if (strlen(s) >= 108) return -1;   /* sun_path */
        rc->unix_path = s;
        return 0;
    }
    const char *port = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end) return -1;
        hlen = (size_t)(end - s - 1);
        if (end[1] == ':') port = end + 2;
        else if (end[1]) return -1;
        s++;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && !strchr(colon + 1, ':')) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        } else {
            hlen = strlen(s);
        }
    }
    if (hlen == 0 || hlen >= sizeof rc->host) return -1;
    memcpy(rc->host, s, hlen);
    rc->host[hlen] = '\0';
    unsigned char buf[16];
    if (inet_pton(AF_INET, rc->host, buf) != 1 && inet_pton(AF_INET6, rc->host, buf) != 1)
        return -1;
    if (port) {
        long long p;
        if (as_parse_int(port, &p) < 0 || p < 1 || p > 65535) return -1;
        rc->port = (int)p;
    }
    return 0;
}

static int timeout_ok(double t) { return t >= 0.001 && t <= 60; }

int as_redis_config_check(const struct as_config *cfg, char *err, size_t errlen)
{
    const char *const *servers;
    size_t n = as_config_list(cfg, "redis.servers", &servers);
    const struct as_config_entry *se = as_config_find(cfg, "redis.servers");
    if (n > 1)
        return as_config_error(err, errlen, as_config_find_item(cfg, "redis.servers",
                                                                servers[1]),
                               "'redis.servers' names %zu servers: one server for now "
                               "(several are the scale-out work)", n);
    if (n == 0) {
        /* Without a server nothing reads these: refuse rather than ignore. */
        for (size_t i = 0; i < as_redis_config_nkeys; i++) {
            char key[64];
            snprintf(key, sizeof key, "redis.%s", as_redis_config_keys[i].key);
            const struct as_config_entry *e = as_config_find(cfg, key);
            if (e && strcmp(key, "redis.servers") != 0)
                return as_config_error(err, errlen, e, "'%s' has no effect without "
                                       "redis.servers: set the server or remove the key", key);
        }
        return 0;
    }
    struct as_redis_config rc;
    if (parse_server(servers[0], &rc) < 0)
        return as_config_error(err, errlen, se, "bad value '%s' in 'redis.servers': expected "
                               "an IP address with an optional :port, or a unix socket path "
                               "(host names are not resolved: that would block the event "
                               "loop)", servers[0]);
    const struct as_config_entry *e = as_config_find(cfg, "redis.timeout");
    double to;
    if (e && (as_parse_duration(e->value, &to) < 0 || !timeout_ok(to)))
        return as_config_error(err, errlen, e, "bad value '%s' for 'redis.timeout': expected "
                               "a duration from 1ms to 60s", e->value);
    static const struct { const char *key; long long min, max; } ints[] = {
        { "redis.db", 0, 65535 },
        { "redis.connections", 1, AS_REDIS_CONNECTIONS_MAX },
        { "redis.queue_max", 0, AS_REDIS_QUEUE_MAX },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(ints); i++) {
        long long v;
        e = as_config_find(cfg, ints[i].key);
        if (e && (as_parse_int(e->value, &v) < 0 || v < ints[i].min || v > ints[i].max))
            return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected %lld "
                                   "to %lld", e->value, ints[i].key, ints[i].min, ints[i].max);
    }
    e = as_config_find(cfg, "redis.prefix");
    if (e && (strlen(e->value) > AS_REDIS_PREFIX_MAX || strpbrk(e->value, "{} \t\r\n")))
        return as_config_error(err, errlen, e, "bad value '%s' for 'redis.prefix': expected "
                               "at most %d bytes without blanks, '{' or '}' (a brace would "
                               "move the keys' hash tags)", e->value, AS_REDIS_PREFIX_MAX);
    e = as_config_find(cfg, "redis.password");
    if (e && !*e->value)
        return as_config_error(err, errlen, e, "'redis.password' is empty: remove the key "
                               "for no AUTH");
    return 0;
}

void as_redis_config_from(const struct as_config *cfg, struct as_redis_config *rc)
{
    memset(rc, 0, sizeof *rc);
    const char *const *servers;
    if (as_config_list(cfg, "redis.servers", &servers) >= 1 && parse_server(servers[0], rc) == 0)
        rc->server = servers[0];
    long long v;
    rc->password = as_config_str(cfg, "redis.password", NULL);
    as_parse_int(redis_default("db"), &v);
    rc->db = (int)as_config_int(cfg, "redis.db", v);
    rc->prefix = as_config_str(cfg, "redis.prefix", redis_default("prefix"));
    double d = 0;
    as_parse_duration(redis_default("timeout"), &d);
    rc->timeout = as_config_duration(cfg, "redis.timeout", d);
    as_parse_int(redis_default("connections"), &v);
    v = as_config_int(cfg, "redis.connections", v);
    rc->connections = v < 1 ? 1 : v > AS_REDIS_CONNECTIONS_MAX ? AS_REDIS_CONNECTIONS_MAX
                                                                : (unsigned)v;
    as_parse_int(redis_default("queue_max"), &v);
    v = as_config_int(cfg, "redis.queue_max", v);
    rc->queue_max = v < 0 ? 0 : v > AS_REDIS_QUEUE_MAX ? AS_REDIS_QUEUE_MAX : (size_t)v;
}

/* ------------------------------------------------------------------ */
/* Types                                                               */

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_READY };

struct redis_conn {
    struct as_redis *r;
    unsigned idx;
    redisAsyncContext *ac;        /* NULL while down */
    enum conn_state state;
    int handshake;                /* AUTH/SELECT replies still expected */
    unsigned inflight;            /* commands sent on ac, no reply yet */
    struct event *retry_ev;       /* reconnect after the back-off */
    struct event *watch_ev;       /* connect deadline; silence while busy */
    double backoff;
};

struct as_redis_req {
    struct as_redis *r;
    redisAsyncContext *ac;        /* where it was sent; NULL while queued */
    struct redis_conn *c;
    as_redis_done_fn cb;          /* NULL: a write, or answered already */
    void *arg;
    int delivering;               /* cb is running */
    struct event *timer;          /* reads: the command deadline */
    struct as_redis_req *qnext;   /* the write queue */
    /* a queued write keeps its command, in the protocol, until sent */
    char *cmd;
    size_t cmdlen;
};

struct as_redis {
    struct event_base *base;
    struct as_redis_config rc;
    char *server, *unix_path, *password, *prefix;   /* owned copies */
    struct timeval timeout;
    struct redis_conn *conns;
    unsigned nconns;
    unsigned next;                /* the connection used last */
    struct event *start_ev;       /* first connect, from the event loop */
    struct event *flush_ev;       /* sends the queued writes */
    struct redis_script {
        char *body;
        char sha[41];
    } *scripts;
    size_t nscripts;
    struct as_redis_req *qhead, *qtail;
    size_t qlen;
    int was_up;                   /* logged state: 1 up, 0 down, -1 not yet */
    int dropping_stuck;           /* conn_watch_cb is dropping a silent connection */
    char last_err[128];
    struct as_redis_stats st;
};

/* The marker as_redis_submit() returns for a write: not a handle. */
static struct as_redis_req write_marker;

/* ------------------------------------------------------------------ */
/* Replies                                                             */

static void reply_free(struct as_redis_reply *r)
{
    if (r->type == AS_REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->nelem; i++)
            reply_free((struct as_redis_reply *)&r->elem[i]);
        free((void *)r->elem);
    }
}

/* hiredis' reply as the ABI's: strings point into the hiredis reply,
 * which lives as long as the callback. */
static void reply_convert(const redisReply *h, struct as_redis_reply *out)
{
    memset(out, 0, sizeof *out);
    switch (h->type) {
    case REDIS_REPLY_STRING: out->type = AS_REDIS_REPLY_STRING; break;
    case REDIS_REPLY_STATUS: out->type = AS_REDIS_REPLY_STATUS; break;
    case REDIS_REPLY_ERROR: out->type = AS_REDIS_REPLY_ERROR; break;
    case REDIS_REPLY_INTEGER:
        out->type = AS_REDIS_REPLY_INTEGER;
        out->integer = h->integer;
        return;
    case REDIS_REPLY_ARRAY: {
        out->type = AS_REDIS_REPLY_ARRAY;
        out->nelem = h->elements;
        if (!h->elements) return;
        struct as_redis_reply *el = xcalloc(h->elements, sizeof *el);
        for (size_t i = 0; i < h->elements; i++) reply_convert(h->element[i], &el[i]);
        out->elem = el;
        return;
    }
    default: out->type = AS_REDIS_REPLY_NIL; return;
    }
    out->str.ptr = h->str ? h->str : "";
    out->str.len = h->str ? (size_t)h->len : 0;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

static void req_free(struct as_redis_req *q)
{
    if (q->timer) event_del(q->timer);   /* it lives in q's block */
    free(q->cmd);
    free(q);
}

/* Runs the caller's callback once; afterwards the request is an orphan. */
static void req_answer(struct as_redis_req *q, enum as_redis_status st,
                       const struct as_redis_reply *reply)
{
    if (q->timer) event_del(q->timer);
    as_redis_done_fn cb = q->cb;
    if (!cb) return;
    q->cb = NULL;
    q->delivering = 1;
    cb(st, reply, q->arg);
    q->delivering = 0;
}

static void req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_redis_req *q = arg;
    q->r->st.timeouts++;
    req_answer(q, AS_REDIS_TIMEOUT, NULL);
}

/* ------------------------------------------------------------------ */
/* Event loop glue                                                     */

/* hiredis' own libevent adapter (adapters/libevent.h) uses one-shot
 * events: every read re-adds the read event and every batch of commands
 * adds and removes the write event, four epoll_ctl() calls per round
 * trip on top of the read() and write().  Here the read event persists,
 * and a connected context's output is flushed by activating the write
 * event (no syscall): the real write event is added only to wait for the
 * connect to complete or for room in a full socket buffer. */
struct redis_io {
    redisAsyncContext *ac;
    struct event *rev, *wev;
    int reading, writing;
};

/* The context whose output is being written now: hiredis asks to go on
 * writing (addWrite) only when the socket buffer is full. */
static struct redis_io *io_flushing;

static void io_read_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct redis_io *e = arg;
    redisAsyncHandleRead(e->ac);   /* may free e */
}

static void io_write_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct redis_io *e = arg;
    e->writing = 0;
    io_flushing = e;
    redisAsyncHandleWrite(e->ac);  /* may free e */
    io_flushing = NULL;
}

static void io_add_read(void *arg)
{
    struct redis_io *e = arg;
    if (e->reading) return;
    e->reading = 1;
    event_add(e->rev, NULL);
}

static void io_del_read(void *arg)
{
    struct redis_io *e = arg;
    e->reading = 0;
    event_del(e->rev);
}

static void io_add_write(void *arg)
{
    struct redis_io *e = arg;
    if (e->writing) return;
    e->writing = 1;
    if (e == io_flushing || !(e->ac->c.flags & REDIS_CONNECTED))
        event_add(e->wev, NULL);              /* wait until the socket is writable */
    else
        event_active(e->wev, EV_WRITE, 1);    /* write from this loop iteration */
}

static void io_del_write(void *arg)
{
    struct redis_io *e = arg;
    e->writing = 0;
    event_del(e->wev);
}

static void io_cleanup(void *arg)
{
    struct redis_io *e = arg;
    if (io_flushing == e) io_flushing = NULL;
    event_free(e->rev);
    event_free(e->wev);
    free(e);
}

static int io_attach(redisAsyncContext *ac, struct event_base *base)
{
    if (ac->ev.data) return REDIS_ERR;
    struct redis_io *e = xcalloc(1, sizeof *e);
    e->ac = ac;
    e->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, io_read_cb, e);
    e->wev = event_new(base, ac->c.fd, EV_WRITE, io_write_cb, e);
    if (!e->rev || !e->wev) as_oom();
    ac->ev.addRead = io_add_read;
    ac->ev.delRead = io_del_read;
    ac->ev.addWrite = io_add_write;
    ac->ev.delWrite = io_del_write;
    ac->ev.cleanup = io_cleanup;
    ac->ev.data = e;
    io_add_read(e);
    io_add_write(e);   /* not connected yet: the connect completes on it */
    return REDIS_OK;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static void conn_connect(struct redis_conn *c);
static void queue_flush(struct as_redis *r);

static unsigned conns_up(const struct as_redis *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->nconns; i++) n += r->conns[i].state == CONN_READY;
    return n;
}

/* One log line per change of the service's state, not per connection or
 * message. */
static void log_state(struct as_redis *r)
{
    unsigned up = conns_up(r);
    r->st.connections_up = up;
    if (up && r->was_up != 1) {
        as_log(AS_LOG_NOTICE, "redis: connected to %s (%u of %u connections up)",
               r->server, up, r->nconns);
        r->was_up = 1;
    } else if (!up && r->was_up != 0) {
        int connecting = 0;
        for (unsigned i = 0; i < r->nconns; i++)
            connecting |= r->conns[i].state == CONN_CONNECTING;
        if (connecting && r->was_up == -1) return;   /* still starting */
        as_log(AS_LOG_WARN, "redis: %s is unavailable (%s): reads fail open, up to %zu "
               "writes are queued; reconnecting with back-off", r->server,
               r->last_err[0] ? r->last_err : "no connection", r->rc.queue_max);
        r->was_up = 0;
    }
}

static void conn_schedule_retry(struct redis_conn *c)
{
    struct timeval tv;
    as_timeval(c->backoff, &tv);
    c->backoff *= 2;
    if (c->backoff > AS_REDIS_BACKOFF_MAX) c->backoff = AS_REDIS_BACKOFF_MAX;
    evtimer_add(c->retry_ev, &tv);
}

/* The connection is gone (or we give it up): forget its context, count
 * what was in flight, try again later.  Idempotent per context. */
static void conn_lost(struct redis_conn *c, const redisAsyncContext *ac, const char *why)
{
    if (!c || c->ac != ac || !ac) return;
    struct as_redis *r = c->r;
    c->ac = NULL;
    if (c->state == CONN_READY) r->st.disconnects++;
    c->state = CONN_DOWN;
    c->inflight = 0;
    c->handshake = 0;
    event_del(c->watch_ev);
    as_strlcpy(r->last_err, why && *why ? why : "connection closed", sizeof r->last_err);
    as_log(AS_LOG_DEBUG, "redis: connection %u to %s lost: %s", c->idx, r->server,
           r->last_err);
    conn_schedule_retry(c);
    log_state(r);
}

/* Drops a context we give up on.  Its pending callbacks run now, with
 * NULL replies, and find conn->ac already cleared. */
static void conn_drop(struct redis_conn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    conn_lost(c, ac, why);
    if (ac) redisAsyncFree(ac);
}

static void conn_watch_arm(struct redis_conn *c)
{
    evtimer_add(c->watch_ev, &c->r->timeout);
}

static void conn_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct redis_conn *c = arg;
    char why[128];
    snprintf(why, sizeof why, c->state == CONN_READY ? "no reply within %.3gs" :
             "no connection within %.3gs", as_redis_timeout(c->r));
    c->r->dropping_stuck = 1;
    conn_drop(c, why);
    c->r->dropping_stuck = 0;
}

static void conn_ready(struct redis_conn *c)
{
    struct as_redis *r = c->r;
    c->state = CONN_READY;
    c->backoff = AS_REDIS_BACKOFF_MIN;
    r->st.connects++;
    if (c->inflight) conn_watch_arm(c);
    else event_del(c->watch_ev);
    log_state(r);
    queue_flush(r);
}

static void conn_connect_cb(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    if (!c || c->ac != ac) return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        conn_lost(c, ac, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    if (!c->handshake) conn_ready(c);
}

static void conn_disconnect_cb(const redisAsyncContext *ac, int status)
{
    AS_UNUSED(status);
    struct redis_conn *c = ac->data;
    conn_lost(c, ac, ac->errstr[0] ? ac->errstr : "connection closed by the server");
}

static void handshake_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    struct redis_conn *c = arg;
    const redisReply *h = reply;
    if (c->ac != ac) return;
    if (!h) {
        conn_lost(c, ac, ac->errstr[0] ? ac->errstr : "connection closed");
        return;
    }
    if (h->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof why, "AUTH, SELECT or SCRIPT LOAD refused: %.100s",
                 h->str ? h->str : "");
        conn_drop(c, why);   /* inside a callback: hiredis frees it afterwards */
        return;
    }
    if (--c->handshake == 0 && (ac->c.flags & REDIS_CONNECTED)) conn_ready(c);
}

static void conn_connect(struct redis_conn *c)
{
    struct as_redis *r = c->r;
    redisAsyncContext *ac = r->unix_path ? redisAsyncConnectUnix(r->unix_path)
                                         : redisAsyncConnect(r->rc.host, r->rc.port);
    if (!ac) as_oom();
    if (ac->err) {
        as_strlcpy(r->last_err, ac->errstr, sizeof r->last_err);
        redisAsyncFree(ac);
        conn_schedule_retry(c);
        log_state(r);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = CONN_CONNECTING;
    c->inflight = 0;
    c->handshake = 0;
    if (io_attach(ac, r->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, conn_connect_cb) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, conn_disconnect_cb) != REDIS_OK) {
        conn_drop(c, "cannot attach to the event loop");
        return;
    }
    /* Sent first once connected: hiredis buffers until then. */
    if (r->password) {
        const char *argv[] = { "AUTH", r->password };
        if (redisAsyncCommandArgv(ac, handshake_cb, c, 2, argv, NULL) == REDIS_OK)
            c->handshake++;
    }
    if (r->rc.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->rc.db);
        const char *argv[] = { "SELECT", db };
        if (redisAsyncCommandArgv(ac, handshake_cb, c, 2, argv, NULL) == REDIS_OK)
            c->handshake++;
    }
    for (size_t i = 0; i < r->nscripts; i++) {
        const char *argv[] = { "SCRIPT", "LOAD", r->scripts[i].body };
        if (redisAsyncCommandArgv(ac, handshake_cb, c, 3, argv, NULL) == REDIS_OK)
            c->handshake++;
    }
    conn_watch_arm(c);
}

static void conn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct redis_conn *c = arg;
    if (c->state == CONN_DOWN) conn_connect(c);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    queue_flush(arg);
}

static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_redis *r = arg;
    for (unsigned i = 0; i < r->nconns; i++)
        if (r->conns[i].state == CONN_DOWN) conn_connect(&r->conns[i]);
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

static void reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    struct as_redis_req *q = arg;
    struct as_redis *r = q->r;
    struct redis_conn *c = q->c;
    const redisReply *h = reply;
    if (c && c->ac == ac) {
        if (!h) {
            conn_lost(c, ac, ac->errstr[0] ? ac->errstr : "connection closed");
        } else {
            if (c->inflight) c->inflight--;
            /* a reply: the connection lives; watch the next one */
            if (c->inflight) conn_watch_arm(c);
            else if (c->state == CONN_READY) event_del(c->watch_ev);
        }
    }
    if (!h) {
        r->st.errors++;
        /* A connection dropped for its silence went without a reply for
         * the whole timeout: for what waited on it that is a timeout. */
        if (q->cb && r->dropping_stuck) {
            r->st.timeouts++;
            req_answer(q, AS_REDIS_TIMEOUT, NULL);
        }
        if (q->cb) req_answer(q, AS_REDIS_UNAVAILABLE, NULL);
        else if (!q->timer) r->st.dropped_writes++;
    } else {
        r->st.replies++;
        if (h->type == REDIS_REPLY_ERROR) {
            r->st.errors++;
            if (!q->timer)
                as_log(AS_LOG_DEBUG, "redis: write refused: %s", h->str ? h->str : "");
        }
        if (q->cb) {
            struct as_redis_reply ar;
            reply_convert(h, &ar);
            req_answer(q, h->type == REDIS_REPLY_ERROR ? AS_REDIS_ERROR : AS_REDIS_OK, &ar);
            reply_free(&ar);
        }
    }
    req_free(q);
}

/* The ready connection used last, else the first ready one; with
 * connecting_ok a connecting one if none is ready.  Staying on one
 * connection is what pipelining is for: the commands of one loop
 * iteration (the reads of every scan that started in it, the writes of
 * every scan that finished) leave in one write() and their replies come
 * back in one read().  Redis runs commands on one thread, so spreading
 * them over connections gains nothing; the others stand by for when this
 * one breaks or stalls. */
static struct redis_conn *pick_conn(struct as_redis *r, int connecting_ok)
{
    struct redis_conn *connecting = NULL;
    for (unsigned k = 0; k < r->nconns; k++) {
        struct redis_conn *c = &r->conns[(r->next + k) % r->nconns];
        if (c->state == CONN_READY) {
            r->next = c->idx;
            return c;
        }
        if (!connecting && c->state == CONN_CONNECTING) connecting = c;
    }
    return connecting_ok ? connecting : NULL;
}

/* Hands q to hiredis on c: argv, or q->cmd when argv is NULL. */
static int conn_send(struct redis_conn *c, struct as_redis_req *q, size_t argc,
                     const char *const *argv, const size_t *argvlen)
{
    int rc = argv ? redisAsyncCommandArgv(c->ac, reply_cb, q, (int)argc, (const char **)argv,
                                          argvlen)
                  : redisAsyncFormattedCommand(c->ac, reply_cb, q, q->cmd, q->cmdlen);
    if (rc != REDIS_OK) return -1;
    q->ac = c->ac;
    q->c = c;
    c->r->st.commands++;
    if (c->inflight++ == 0 && c->state == CONN_READY) conn_watch_arm(c);
    return 0;
}

static void queue_flush(struct as_redis *r)
{
    while (r->qhead) {
        struct redis_conn *c = pick_conn(r, 0);
        if (!c) return;
        struct as_redis_req *q = r->qhead;
        r->qhead = q->qnext;
        if (!r->qhead) r->qtail = NULL;
        r->qlen--;
        r->st.queued = r->qlen;
        q->qnext = NULL;
        if (conn_send(c, q, 0, NULL, NULL) < 0) {
            r->st.dropped_writes++;
            req_free(q);
            continue;
        }
        free(q->cmd);   /* hiredis has its own copy */
        q->cmd = NULL;
    }
}

static int queue_write(struct as_redis *r, size_t argc, const char *const *argv,
                       const size_t *argvlen)
{
    if (r->qlen >= r->rc.queue_max) {
        r->st.dropped_writes++;
        return -1;
    }
    struct as_redis_req *q = xcalloc(1, sizeof *q);
    q->r = r;
    int len = redisFormatCommandArgv(&q->cmd, (int)argc, (const char **)argv, argvlen);
    if (len < 0) as_oom();
    q->cmdlen = (size_t)len;
    if (r->qtail) r->qtail->qnext = q;
    else r->qhead = q;
    r->qtail = q;
    r->qlen++;
    r->st.queued = r->qlen;
    return 0;
}

struct as_redis_req *as_redis_submit(struct as_redis *r, size_t argc, const char *const *argv,
                                     const size_t *argvlen, as_redis_done_fn cb, void *arg)
{
    if (!r || !r->nconns || !argc || argc > REDIS_ARGC_MAX || !argv) return NULL;
    for (size_t i = 0; i < argc; i++)
        if (!argv[i]) return NULL;
    /* Just after start, reads may ride on a connection still connecting:
     * their deadline bounds the wait.  Once the service was down they wait
     * for a ready one (a black-holed server would hold each read for the
     * whole timeout). */
    struct redis_conn *c = pick_conn(r, cb != NULL && r->was_up == -1);
    if (!cb && (!c || r->rc.queue_max > 0)) {
        /* Writes wait in the queue: while no connection is up, for one;
         * else up to REDIS_WRITE_DELAY or the next read, so that under
         * load many leave in one write() (on loopback TCP the syscalls
         * and wake-ups, not Redis, are what a write costs). */
        if (c && r->qlen >= r->rc.queue_max) queue_flush(r);
        if (queue_write(r, argc, argv, argvlen) < 0) return NULL;
        if (c && !evtimer_pending(r->flush_ev, NULL)) {
            struct timeval tv;
            as_timeval(REDIS_WRITE_DELAY, &tv);
            evtimer_add(r->flush_ev, &tv);
        }
        return &write_marker;
    }
    if (!c) {
        r->st.refused++;
        return NULL;
    }
    /* the writes queued before this read go first, in the same write() */
    if (r->qhead && c->state == CONN_READY) queue_flush(r);
    /* A read's deadline timer shares its allocation. */
    struct as_redis_req *q = xcalloc(1, sizeof *q + (cb ? event_get_struct_event_size() : 0));
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    if (cb) {
        q->timer = (struct event *)(q + 1);
        if (event_assign(q->timer, r->base, -1, 0, req_timeout_cb, q) < 0) as_oom();
    }
    if (conn_send(c, q, argc, argv, argvlen) < 0) {
        req_free(q);
        if (cb) {
            r->st.refused++;
            return NULL;
        }
        return queue_write(r, argc, argv, argvlen) == 0 ? &write_marker : NULL;
    }
    if (!cb) return &write_marker;
    evtimer_add(q->timer, &r->timeout);
    return q;
}

void as_redis_cancel(struct as_redis_req *q)
{
    if (!q || q == &write_marker || q->delivering) return;
    if (q->timer) event_del(q->timer);
    q->cb = NULL;   /* freed when hiredis hands back its reply */
}

/* A script registered while connections exist (not the normal case:
 * plugins register theirs in init(), before the loop runs) is loaded on
 * them now, ahead of anything sent after this. */
static void script_loaded_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    AS_UNUSED(ac);
    AS_UNUSED(arg);
    const redisReply *h = reply;
    if (h && h->type == REDIS_REPLY_ERROR)
        as_log(AS_LOG_WARN, "redis: SCRIPT LOAD refused: %s", h->str ? h->str : "");
}

const char *as_redis_script(struct as_redis *r, const char *body)
{
    if (!as_redis_enabled(r) || !body) return NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_Digest(body, strlen(body), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return NULL;
    char sha[41];
    for (unsigned i = 0; i < 20; i++) snprintf(sha + 2 * i, 3, "%02x", md[i]);
    for (size_t i = 0; i < r->nscripts; i++)
        if (strcmp(r->scripts[i].sha, sha) == 0) return r->scripts[i].sha;
    r->scripts = xrealloc(r->scripts, (r->nscripts + 1) * sizeof *r->scripts);
    struct redis_script *sc = &r->scripts[r->nscripts++];
    sc->body = xstrdup(body);
    memcpy(sc->sha, sha, sizeof sc->sha);
    for (unsigned i = 0; i < r->nconns; i++) {
        const char *argv[] = { "SCRIPT", "LOAD", sc->body };
        if (r->conns[i].ac)
            redisAsyncCommandArgv(r->conns[i].ac, script_loaded_cb, NULL, 3, argv, NULL);
    }
    return sc->sha;
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

struct as_redis *as_redis_new(struct event_base *base, const struct as_redis_config *rc,
                              char *err, size_t errlen)
{
    struct as_redis *r = xcalloc(1, sizeof *r);
    r->base = base;
    r->rc = *rc;
    r->was_up = -1;
    r->prefix = xstrdup(rc->prefix ? rc->prefix : "");
    r->rc.prefix = r->prefix;
    if (!rc->server) return r;   /* off */
    if (!timeout_ok(rc->timeout)) {
        snprintf(err, errlen, "redis: timeout must be from 1ms to 60s, not %g", rc->timeout);
        as_redis_free(r);
        return NULL;
    }
    r->server = xstrdup(rc->server);
    r->rc.server = r->server;
    if (rc->unix_path) r->unix_path = xstrdup(rc->unix_path);
    r->rc.unix_path = r->unix_path;
    if (rc->password) r->password = xstrdup(rc->password);
    r->rc.password = r->password;
    as_timeval(rc->timeout, &r->timeout);
    r->nconns = rc->connections ? rc->connections : 1;
    r->conns = xcalloc(r->nconns, sizeof *r->conns);
    for (unsigned i = 0; i < r->nconns; i++) {
        struct redis_conn *c = &r->conns[i];
        c->r = r;
        c->idx = i;
        c->backoff = AS_REDIS_BACKOFF_MIN;
        c->retry_ev = evtimer_new(base, conn_retry_cb, c);
        c->watch_ev = evtimer_new(base, conn_watch_cb, c);
        if (!c->retry_ev || !c->watch_ev) as_oom();
    }
    /* Connect from the loop: a process that only checks the
     * configuration never runs it, and sends nothing. */
    r->start_ev = evtimer_new(base, start_cb, r);
    r->flush_ev = evtimer_new(base, flush_cb, r);
    if (!r->start_ev || !r->flush_ev) as_oom();
    static const struct timeval zero = { 0, 0 };
    evtimer_add(r->start_ev, &zero);
    return r;
}

void as_redis_free(struct as_redis *r)
{
    if (!r) return;
    for (unsigned i = 0; i < r->nconns; i++) {
        struct redis_conn *c = &r->conns[i];
        event_free(c->retry_ev);
        event_free(c->watch_ev);
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->state = CONN_DOWN;
        if (ac) redisAsyncFree(ac);   /* answers its requests: UNAVAILABLE */
    }
    while (r->qhead) {
        struct as_redis_req *q = r->qhead;
        r->qhead = q->qnext;
        req_free(q);
    }
    if (r->start_ev) event_free(r->start_ev);
    if (r->flush_ev) event_free(r->flush_ev);
    for (size_t i = 0; i < r->nscripts; i++) free(r->scripts[i].body);
    free(r->scripts);
    free(r->conns);
    free(r->server);
    free(r->unix_path);
    free(r->password);
    free(r->prefix);
    free(r);
}

int as_redis_enabled(const struct as_redis *r) { return r && r->nconns > 0; }
const char *as_redis_prefix(const struct as_redis *r) { return r ? r->prefix : ""; }

double as_redis_timeout(const struct as_redis *r)
{
    return r ? (double)r->timeout.tv_sec + (double)r->timeout.tv_usec / 1e6 : 0;
}

void as_redis_get_stats(const struct as_redis *r, struct as_redis_stats *st)
{
    *st = r->st;
    st->connections_up = conns_up(r);
}

/* ------------------------------------------------------------------ */
/* The Redis service (service.h)                                        */

static int redis_service_check(const struct as_config *cfg, char *err, size_t errlen)
{
    return as_redis_config_check(cfg, err, errlen);
}

static void *redis_service_start(struct event_base *base, const struct as_config *cfg,
                                 char *err, size_t errlen)
{
    struct as_redis_config rc;
    as_redis_config_from(cfg, &rc);
    return as_redis_new(base, &rc, err, errlen);
}

static void redis_service_stop(void *state) { as_redis_free(state); }

enum { RM_COMMANDS, RM_REPLIES, RM_ERRORS, RM_TIMEOUTS, RM_REFUSED, RM_QUEUED, RM_DROPPED,
       RM_CONNECTS, RM_DISCONNECTS, RM_UP, RM__COUNT };

static const struct as_metric_def redis_metrics[RM__COUNT] = {
    [RM_COMMANDS] = { "commands", "redis_commands_total", AS_METRIC_COUNTER,
                      "Commands sent to Redis." },
    [RM_REPLIES] = { "replies", "redis_replies_total", AS_METRIC_COUNTER,
                     "Replies received from Redis, error replies included." },
    [RM_ERRORS] = { "errors", "redis_errors_total", AS_METRIC_COUNTER,
                    "Redis error replies, and commands lost with a connection." },
    [RM_TIMEOUTS] = { "timeouts", "redis_timeouts_total", AS_METRIC_COUNTER,
                      "Redis commands that timed out." },
    [RM_REFUSED] = { "refused", "redis_refused_total", AS_METRIC_COUNTER,
                     "Redis reads refused while no connection was up." },
    [RM_QUEUED] = { "queued", "redis_queued_writes", AS_METRIC_GAUGE,
                    "Redis writes waiting for a connection." },
    [RM_DROPPED] = { "dropped_writes", "redis_dropped_writes_total", AS_METRIC_COUNTER,
                     "Redis writes dropped: queue full, or lost with a connection." },
    [RM_CONNECTS] = { "connects", "redis_connects_total", AS_METRIC_COUNTER,
                      "Redis connections made ready." },
    [RM_DISCONNECTS] = { "disconnects", "redis_disconnects_total", AS_METRIC_COUNTER,
                         "Redis connections lost or dropped." },
    [RM_UP] = { "connections_up", "redis_connections_up", AS_METRIC_GAUGE,
                "Redis connections ready now, over all workers." },
};

static void redis_service_metrics(const void *state, uint64_t *v)
{
    const struct as_redis *r = state;
    if (!as_redis_enabled(r)) {
        memset(v, 0, RM__COUNT * sizeof *v);
        return;
    }
    struct as_redis_stats s;
    as_redis_get_stats(r, &s);
    v[RM_COMMANDS] = s.commands;
    v[RM_REPLIES] = s.replies;
    v[RM_ERRORS] = s.errors;
    v[RM_TIMEOUTS] = s.timeouts;
    v[RM_REFUSED] = s.refused;
    v[RM_QUEUED] = s.queued;
    v[RM_DROPPED] = s.dropped_writes;
    v[RM_CONNECTS] = s.connects;
    v[RM_DISCONNECTS] = s.disconnects;
    v[RM_UP] = s.connections_up;
}

static void redis_service_stats(const void *state, const uint64_t *t, struct sbuf *b)
{
    const struct as_redis *r = state;
    if (!as_redis_enabled(r)) {
        sbuf_adds(b, "{\"state\":\"off\"}");
        return;
    }
    /* "connections" is this worker's setting; the rest is daemon-wide */
    sbuf_printf(b, "{\"state\":\"%s\",\"connections\":%u", t[RM_UP] ? "up" : "down", r->nconns);
    for (int i = 0; i < RM__COUNT; i++)
        sbuf_printf(b, ",\"%s\":%llu", redis_metrics[i].key, (unsigned long long)t[i]);
    sbuf_addc(b, '}');
}

const struct as_service as_redis_service = {
    .name = "redis",
    .keys = as_redis_config_keys,
    .nkeys = AS_ARRAY_LEN(as_redis_config_keys),
    .check = redis_service_check,
    .start = redis_service_start,
    .stop = redis_service_stop,
    .metrics = redis_metrics,
    .nmetrics = RM__COUNT,
    .read_metrics = redis_service_metrics,
    .write_stats = redis_service_stats,
};
