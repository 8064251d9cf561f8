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
      "the Redis servers: IP, IP:port, [IPv6]:port, or a unix socket path (/path or "
      "unix:/path); several shard the keys by hash tag; unset: Redis is off" },
    { "sentinels", AS_OPT_LIST, NULL,
      "Redis Sentinels (IP, IP:port, [IPv6]:port; port 26379 by default) that name the "
      "master of each redis.master_name; instead of redis.servers" },
    { "master_name", AS_OPT_LIST, NULL,
      "with redis.sentinels: the monitored master(s); several shard the keys by hash tag" },
    { "password", AS_OPT_STRING, NULL, "sent with AUTH on every connection" },
    { "db", AS_OPT_INT, "0", "database number, sent with SELECT on every connection" },
    { "prefix", AS_OPT_STRING, "as:", "put in front of every key" },
    { "timeout", AS_OPT_DURATION, "500ms",
      "deadline of one command; also how long a connection may stay silent "
      "with commands outstanding, or take to connect, before it is dropped" },
    { "connections", AS_OPT_INT, "2", "connections per worker process and shard" },
    { "queue_max", AS_OPT_INT, "1000",
      "writes held per worker and shard while the shard is down; more are dropped" },
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
static int parse_addr(const char *s, int default_port, int unix_ok, struct as_redis_addr *a)
{
    memset(a, 0, sizeof *a);
    a->name = s;
    a->port = default_port;
    if (unix_ok && strncmp(s, "unix:", 5) == 0) s += 5;
    if (s[0] == '/') {
        if (!unix_ok || strlen(s) >= 108) return -1;   /* sun_path */
        a->unix_path = s;
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
    if (hlen == 0 || hlen >= sizeof a->host) return -1;
    memcpy(a->host, s, hlen);
    a->host[hlen] = '\0';
    unsigned char buf[16];
    if (inet_pton(AF_INET, a->host, buf) != 1 && inet_pton(AF_INET6, a->host, buf) != 1)
        return -1;
    if (port) {
        long long p;
        if (as_parse_int(port, &p) < 0 || p < 1 || p > 65535) return -1;
        a->port = (int)p;
    }
    return 0;
}

#define SENTINEL_PORT 26379

static int timeout_ok(double t) { return t >= 0.001 && t <= 60; }

/* Each item of a list key: parsed (servers, sentinels) or a plain name,
 * no duplicates (two ring entries of one server would be two shards). */
static int check_list(const struct as_config *cfg, const char *key, size_t max, int kind,
                      char *err, size_t errlen)
{
    const char *const *items;
    size_t n = as_config_list(cfg, key, &items);
    if (n > max)
        return as_config_error(err, errlen, as_config_find_item(cfg, key, items[max]),
                               "'%s' names %zu entries: at most %zu", key, n, max);
    for (size_t i = 0; i < n; i++) {
        const struct as_config_entry *e = as_config_find_item(cfg, key, items[i]);
        struct as_redis_addr a;
        if (kind == 0 && parse_addr(items[i], 6379, 1, &a) < 0)
            return as_config_error(err, errlen, e, "bad value '%s' in '%s': expected an IP "
                                   "address with an optional :port, or a unix socket path "
                                   "(host names are not resolved: that would block the event "
                                   "loop)", items[i], key);
        if (kind == 1 && parse_addr(items[i], SENTINEL_PORT, 0, &a) < 0)
            return as_config_error(err, errlen, e, "bad value '%s' in '%s': expected an IP "
                                   "address with an optional :port (host names are not "
                                   "resolved: that would block the event loop)", items[i], key);
        if (kind == 2 && (!*items[i] || strpbrk(items[i], " \t\r\n")))
            return as_config_error(err, errlen, e, "bad value '%s' in '%s': expected a master "
                                   "name as the sentinels know it", items[i], key);
        for (size_t k = 0; k < i; k++)
            if (strcmp(items[k], items[i]) == 0)
                return as_config_error(err, errlen, e, "'%s' names '%s' twice", key, items[i]);
    }
    return 0;
}

int as_redis_config_check(const struct as_config *cfg, char *err, size_t errlen)
{
    const char *const *items;
    size_t nservers = as_config_list(cfg, "redis.servers", &items);
    size_t nsentinels = as_config_list(cfg, "redis.sentinels", &items);
    size_t nmasters = as_config_list(cfg, "redis.master_name", &items);
    if (check_list(cfg, "redis.servers", AS_REDIS_SHARDS_MAX, 0, err, errlen) < 0 ||
        check_list(cfg, "redis.sentinels", AS_REDIS_SENTINELS_MAX, 1, err, errlen) < 0 ||
        check_list(cfg, "redis.master_name", AS_REDIS_SHARDS_MAX, 2, err, errlen) < 0)
        return -1;
    if (nservers && (nsentinels || nmasters))
        return as_config_error(err, errlen, as_config_find(cfg, nsentinels ? "redis.sentinels"
                                                                            : "redis.master_name"),
                               "'redis.servers' and Sentinel ('redis.sentinels', "
                               "'redis.master_name') name the servers twice: use one");
    if (nsentinels && !nmasters)
        return as_config_error(err, errlen, as_config_find(cfg, "redis.sentinels"),
                               "'redis.sentinels' without 'redis.master_name': name the "
                               "master(s) the sentinels monitor");
    if (nmasters && !nsentinels)
        return as_config_error(err, errlen, as_config_find(cfg, "redis.master_name"),
                               "'redis.master_name' without 'redis.sentinels': list the "
                               "sentinels to ask");
    if (nservers == 0 && nmasters == 0) {
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
    const char *const *items;
    size_t n = as_config_list(cfg, "redis.sentinels", &items);
    for (size_t i = 0; i < n && rc->nsentinels < AS_REDIS_SENTINELS_MAX; i++)
        if (parse_addr(items[i], SENTINEL_PORT, 0, &rc->sentinels[rc->nsentinels]) == 0)
            rc->nsentinels++;
    if (rc->nsentinels) {
        n = as_config_list(cfg, "redis.master_name", &items);
        for (size_t i = 0; i < n && rc->nshards < AS_REDIS_SHARDS_MAX; i++)
            rc->shards[rc->nshards++].name = items[i];
    } else {
        n = as_config_list(cfg, "redis.servers", &items);
        for (size_t i = 0; i < n && rc->nshards < AS_REDIS_SHARDS_MAX; i++)
            if (parse_addr(items[i], 6379, 1, &rc->shards[rc->nshards]) == 0) rc->nshards++;
    }
    if (rc->nshards) rc->server = rc->shards[0].name;
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
/* The ring                                                            */

#define RING_POINTS 160   /* per shard: keeps the shares within a few % */

struct ring_point {
    uint64_t h;
    size_t shard;
};

struct as_redis_ring {
    struct ring_point *points;
    size_t npoints;
};

/* FNV-1a, then MurmurHash3's finalizer: FNV alone leaves names that
 * differ in their last byte (the ring points "name#1", "name#2") close
 * together. */
static uint64_t ring_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int point_cmp(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return x->shard < y->shard ? -1 : x->shard > y->shard;
}

struct as_redis_ring *as_redis_ring_new(const struct as_redis_config *rc)
{
    struct as_redis_ring *ring = xcalloc(1, sizeof *ring);
    size_t n = rc->nshards ? rc->nshards : 1;
    ring->points = xcalloc(n * RING_POINTS, sizeof *ring->points);
    for (size_t s = 0; s < rc->nshards; s++) {
        for (unsigned i = 0; i < RING_POINTS; i++) {
            char name[512];
            int len = snprintf(name, sizeof name, "%s#%u", rc->shards[s].name, i);
            if (len < 0 || (size_t)len >= sizeof name) len = (int)sizeof name - 1;
            ring->points[ring->npoints].h = ring_hash(name, (size_t)len);
            ring->points[ring->npoints++].shard = s;
        }
    }
    qsort(ring->points, ring->npoints, sizeof *ring->points, point_cmp);
    return ring;
}

void as_redis_ring_free(struct as_redis_ring *ring)
{
    if (!ring) return;
    free(ring->points);
    free(ring);
}

size_t as_redis_ring_key(const struct as_redis_ring *ring, const char *key, size_t len)
{
    if (!ring || ring->npoints == 0) return 0;
    const char *open = memchr(key, '{', len);
    if (open) {
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    uint64_t h = ring_hash(key, len);
    size_t lo = 0, hi = ring->npoints;   /* the first point at or after h */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring->points[mid].h < h) lo = mid + 1;
        else hi = mid;
    }
    return ring->points[lo == ring->npoints ? 0 : lo].shard;
}

size_t as_redis_ring_route(const struct as_redis_ring *ring, size_t argc,
                           const char *const *argv, const size_t *argvlen)
{
    if (!ring || ring->npoints == 0 || argc < 2) return 0;
    static const char *const keyless[] = { "PING", "SCAN", "SCRIPT", "INFO", "AUTH", "SELECT",
                                           "ROLE", "DBSIZE", "FLUSHDB", "FLUSHALL", "TIME",
                                           "CLIENT", "CONFIG", "KEYS" };
    for (size_t i = 0; i < AS_ARRAY_LEN(keyless); i++)
        if (as_strcaseeq(argv[0], keyless[i])) return 0;
    size_t k = 1;
    if (as_strcaseeq(argv[0], "EVAL") || as_strcaseeq(argv[0], "EVALSHA")) {
        size_t nlen = argvlen ? argvlen[2] : strlen(argv[2]);
        if (argc < 4 || (nlen == 1 && argv[2][0] == '0')) return 0;
        k = 3;
    }
    return as_redis_ring_key(ring, argv[k], argvlen ? argvlen[k] : strlen(argv[k]));
}
/* ------------------------------------------------------------------ */
/* Types                                                               */

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_READY };

struct redis_shard;

struct redis_conn {
    struct as_redis *r;
    struct redis_shard *s;
    unsigned idx;
    redisAsyncContext *ac;        /* NULL while down */
    enum conn_state state;
    int handshake;                /* AUTH/SELECT/ROLE/SCRIPT replies still expected */
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

/* One server of redis.servers, or one master of redis.master_name: its
 * connections, and the writes waiting for it. */
struct redis_shard {
    struct as_redis *r;
    size_t idx;
    char *name;                   /* as configured: the ring's and the log's name */
    char host[64];                /* where connections go; with Sentinel the */
    int port;                     /* master found last */
    char *unix_path;
    int have_addr;                /* Sentinel: a master was found */
    int stale;                    /* Sentinel: ask again before connecting */
    struct redis_conn *conns;
    unsigned next;                /* the connection used last */
    struct as_redis_req *qhead, *qtail;
    size_t qlen;
    int was_up;                   /* logged state: 1 up, 0 down, -1 not yet */
    char last_err[256];
    /* Sentinel: asking for the master */
    redisAsyncContext *disc_ac;   /* the sentinel being asked */
    struct event *disc_ev;        /* its deadline; or the back-off after all failed */
    size_t disc_next;             /* the sentinel to ask next */
    size_t disc_tries;            /* sentinels asked in this round */
    double disc_backoff;
};

struct redis_sentinel {
    char host[64];
    int port;
};

struct as_redis {
    struct event_base *base;
    struct as_redis_config rc;
    char *password, *prefix;      /* owned copies */
    struct timeval timeout;
    struct redis_shard *shards;
    size_t nshards;
    unsigned nconns;              /* per shard */
    struct as_redis_ring *ring;
    struct redis_sentinel *sentinels;
    size_t nsentinels;
    /* Sentinel: the +switch-master subscription */
    redisAsyncContext *sub_ac;
    struct event *sub_ev;         /* reconnect after the back-off */
    size_t sub_next;
    double sub_backoff;
    struct event *start_ev;       /* first connect, from the event loop */
    struct event *flush_ev;       /* sends the queued writes */
    struct redis_script {
        char *body;
        char sha[41];
    } *scripts;
    size_t nscripts;
    int dropping_stuck;           /* conn_watch_cb is dropping a silent connection */
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
static void queue_flush(struct redis_shard *s);
static void disc_start(struct redis_shard *s);

static unsigned shard_conns_up(const struct redis_shard *s)
{
    unsigned n = 0;
    for (unsigned i = 0; i < s->r->nconns; i++) n += s->conns[i].state == CONN_READY;
    return n;
}

static unsigned conns_up(const struct as_redis *r)
{
    unsigned n = 0;
    for (size_t i = 0; i < r->nshards; i++) n += shard_conns_up(&r->shards[i]);
    return n;
}

static const char *shard_where(const struct redis_shard *s, char *buf, size_t len)
{
    if (!s->r->nsentinels) return s->name;
    if (!s->have_addr) snprintf(buf, len, "master '%s' (not found yet)", s->name);
    else if (strchr(s->host, ':')) snprintf(buf, len, "master '%s' at [%s]:%d", s->name, s->host, s->port);
    else snprintf(buf, len, "master '%s' at %s:%d", s->name, s->host, s->port);
    return buf;
}

/* One log line per change of a shard's state, not per connection or
 * message. */
static void log_state(struct redis_shard *s)
{
    struct as_redis *r = s->r;
    unsigned up = shard_conns_up(s);
    r->st.connections_up = conns_up(r);
    char where[160];
    if (up && s->was_up != 1) {
        as_log(AS_LOG_NOTICE, "redis: connected to %s (%u of %u connections up)",
               shard_where(s, where, sizeof where), up, r->nconns);
        s->was_up = 1;
    } else if (!up && s->was_up != 0) {
        int connecting = s->disc_ac != NULL;
        for (unsigned i = 0; i < r->nconns; i++)
            connecting |= s->conns[i].state == CONN_CONNECTING;
        if (connecting && s->was_up == -1) return;   /* still starting */
        as_log(AS_LOG_WARN, "redis: %s is unavailable (%s): %sreads fail open, up to %zu "
               "writes are queued; reconnecting with back-off", shard_where(s, where, sizeof where),
               s->last_err[0] ? s->last_err : "no connection",
               r->nshards > 1 ? "for the keys of this shard " : "", r->rc.queue_max);
        s->was_up = 0;
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
    struct redis_shard *s = c->s;
    struct as_redis *r = c->r;
    c->ac = NULL;
    if (c->state == CONN_READY) r->st.disconnects++;
    c->state = CONN_DOWN;
    c->inflight = 0;
    c->handshake = 0;
    event_del(c->watch_ev);
    /* With Sentinel a lost master may have been replaced: ask before
     * connecting again. */
    if (r->nsentinels) s->stale = 1;
    as_strlcpy(s->last_err, why && *why ? why : "connection closed", sizeof s->last_err);
    as_log(AS_LOG_DEBUG, "redis: connection %u to %s lost: %s", c->idx, s->name, s->last_err);
    conn_schedule_retry(c);
    log_state(s);
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
    log_state(c->s);
    queue_flush(c->s);
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
        snprintf(why, sizeof why, "AUTH, SELECT, ROLE or SCRIPT LOAD refused: %.100s",
                 h->str ? h->str : "");
        conn_drop(c, why);   /* inside a callback: hiredis frees it afterwards */
        return;
    }
    if (--c->handshake == 0 && (ac->c.flags & REDIS_CONNECTED)) conn_ready(c);
}

/* Sentinel: the server the sentinels named must say it is the master
 * (it may have been demoted since they answered). */
static void role_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    struct redis_conn *c = arg;
    const redisReply *h = reply;
    if (c->ac != ac || !h || h->type == REDIS_REPLY_ERROR) {
        handshake_cb(ac, reply, arg);
        return;
    }
    if (h->type != REDIS_REPLY_ARRAY || h->elements < 1 ||
        h->element[0]->type != REDIS_REPLY_STRING || strcmp(h->element[0]->str, "master") != 0) {
        char why[160];
        snprintf(why, sizeof why, "not the master (ROLE says %.40s)",
                 h->type == REDIS_REPLY_ARRAY && h->elements &&
                 h->element[0]->type == REDIS_REPLY_STRING ? h->element[0]->str : "?");
        c->r->st.switches++;
        conn_drop(c, why);   /* and ask the sentinels again: conn_lost made it stale */
        return;
    }
    handshake_cb(ac, reply, arg);
}

static void conn_connect(struct redis_conn *c)
{
    struct redis_shard *s = c->s;
    struct as_redis *r = c->r;
    if (r->nsentinels && (!s->have_addr || s->stale)) {
        disc_start(s);   /* connects every connection that is down when it knows */
        return;
    }
    redisAsyncContext *ac = s->unix_path ? redisAsyncConnectUnix(s->unix_path)
                                         : redisAsyncConnect(s->host, s->port);
    if (!ac) as_oom();
    if (ac->err) {
        as_strlcpy(s->last_err, ac->errstr, sizeof s->last_err);
        redisAsyncFree(ac);
        conn_schedule_retry(c);
        log_state(s);
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
    if (r->nsentinels) {
        const char *argv[] = { "ROLE" };
        if (redisAsyncCommandArgv(ac, role_cb, c, 1, argv, NULL) == REDIS_OK)
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

/* Connects what is down now, without waiting for its back-off: the
 * master is known (again), or moved. */
static void shard_connect(struct redis_shard *s)
{
    for (unsigned i = 0; i < s->r->nconns; i++) {
        struct redis_conn *c = &s->conns[i];
        if (c->state != CONN_DOWN) continue;
        event_del(c->retry_ev);
        conn_connect(c);
    }
}

/* ------------------------------------------------------------------ */
/* Sentinel                                                            */

/* The master of s is at host:port now (a sentinel's answer, or
 * +switch-master).  Connections to another address are dropped. */
static void shard_set_master(struct redis_shard *s, const char *host, int port, int moved)
{
    struct as_redis *r = s->r;
    int same = s->have_addr && strcmp(s->host, host) == 0 && s->port == port;
    if (!same) {
        if (s->have_addr) {
            r->st.switches++;
            as_log(AS_LOG_NOTICE, "redis: master '%s' moved from %s:%d to %s:%d (%s)", s->name,
                   s->host, s->port, host, port, moved ? "+switch-master" : "a sentinel's answer");
        }
        as_strlcpy(s->host, host, sizeof s->host);
        s->port = port;
        s->have_addr = 1;
        for (unsigned i = 0; i < r->nconns; i++)
            if (s->conns[i].ac) conn_drop(&s->conns[i], "the master moved");
    }
    s->stale = 0;
    if (moved)
        for (unsigned i = 0; i < r->nconns; i++) s->conns[i].backoff = AS_REDIS_BACKOFF_MIN;
    shard_connect(s);
}

static int parse_ip_port(const char *host, const char *port, char *out, size_t outlen, int *p)
{
    unsigned char buf[16];
    long long v;
    if (strlen(host) >= outlen || (inet_pton(AF_INET, host, buf) != 1 &&
                                   inet_pton(AF_INET6, host, buf) != 1) ||
        as_parse_int(port, &v) < 0 || v < 1 || v > 65535)
        return -1;
    as_strlcpy(out, host, outlen);
    *p = (int)v;
    return 0;
}

static void disc_try(struct redis_shard *s);

/* The sentinel asked did not tell (free_ac: we end its context; else
 * hiredis is ending it): the next one, or all again after a back-off. */
static void disc_fail(struct redis_shard *s, const char *why, int free_ac)
{
    struct as_redis *r = s->r;
    redisAsyncContext *ac = s->disc_ac;
    struct redis_sentinel *sn = &r->sentinels[s->disc_next % r->nsentinels];
    s->disc_ac = NULL;
    event_del(s->disc_ev);
    if (ac && free_ac) redisAsyncFree(ac);
    snprintf(s->last_err, sizeof s->last_err, "sentinel %s:%d: %.80s", sn->host, sn->port, why);
    as_log(AS_LOG_DEBUG, "redis: %s", s->last_err);
    s->disc_next++;
    if (++s->disc_tries < r->nsentinels) {
        disc_try(s);
        return;
    }
    struct timeval tv;
    as_timeval(s->disc_backoff, &tv);
    s->disc_backoff *= 2;
    if (s->disc_backoff > AS_REDIS_BACKOFF_MAX) s->disc_backoff = AS_REDIS_BACKOFF_MAX;
    evtimer_add(s->disc_ev, &tv);
    log_state(s);
}

static void disc_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    struct redis_shard *s = arg;
    const redisReply *h = reply;
    if (s->disc_ac != ac) return;
    if (!h) {
        disc_fail(s, ac->errstr[0] ? ac->errstr : "connection closed", 0);
        return;
    }
    char host[64];
    int port;
    if (h->type == REDIS_REPLY_ARRAY && h->elements == 2 &&
        h->element[0]->type == REDIS_REPLY_STRING && h->element[1]->type == REDIS_REPLY_STRING &&
        parse_ip_port(h->element[0]->str, h->element[1]->str, host, sizeof host, &port) == 0) {
        s->disc_ac = NULL;
        event_del(s->disc_ev);
        redisAsyncFree(ac);   /* inside its callback: hiredis frees it afterwards */
        s->disc_backoff = AS_REDIS_BACKOFF_MIN;
        shard_set_master(s, host, port, 0);
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "%s", h->type == REDIS_REPLY_NIL ? "does not know this master" :
             h->type == REDIS_REPLY_ERROR ? h->str : "named no IP address and port");
    disc_fail(s, why, 1);
}

static void disc_connect_cb(const redisAsyncContext *ac, int status)
{
    struct redis_shard *s = ac->data;
    if (status != REDIS_OK && s->disc_ac == ac)
        disc_fail(s, ac->errstr[0] ? ac->errstr : "connect failed", 0);
}

static void disc_disconnect_cb(const redisAsyncContext *ac, int status)
{
    AS_UNUSED(status);
    struct redis_shard *s = ac->data;
    if (s->disc_ac == ac) disc_fail(s, ac->errstr[0] ? ac->errstr : "connection closed", 0);
}

static void disc_try(struct redis_shard *s)
{
    struct as_redis *r = s->r;
    struct redis_sentinel *sn = &r->sentinels[s->disc_next % r->nsentinels];
    redisAsyncContext *ac = redisAsyncConnect(sn->host, sn->port);
    if (!ac) as_oom();
    if (ac->err) {
        char why[128];
        as_strlcpy(why, ac->errstr, sizeof why);
        redisAsyncFree(ac);
        disc_fail(s, why, 0);
        return;
    }
    ac->data = s;
    s->disc_ac = ac;
    const char *argv[] = { "SENTINEL", "get-master-addr-by-name", s->name };
    if (io_attach(ac, r->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, disc_connect_cb) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, disc_disconnect_cb) != REDIS_OK ||
        redisAsyncCommandArgv(ac, disc_reply_cb, s, 3, argv, NULL) != REDIS_OK) {
        disc_fail(s, "cannot attach to the event loop", 1);
        return;
    }
    evtimer_add(s->disc_ev, &r->timeout);
}

/* Asks the sentinels, one after the other, for the master's address. */
static void disc_start(struct redis_shard *s)
{
    if (s->disc_ac || evtimer_pending(s->disc_ev, NULL)) return;   /* under way */
    s->disc_tries = 0;
    disc_try(s);
}

static void disc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct redis_shard *s = arg;
    if (s->disc_ac) {
        char why[64];
        snprintf(why, sizeof why, "no answer within %.3gs", as_redis_timeout(s->r));
        disc_fail(s, why, 1);
        return;
    }
    s->disc_tries = 0;   /* the back-off is over: all again */
    disc_try(s);
}

static void sub_connect(struct as_redis *r);

static void sub_retry(struct as_redis *r)
{
    struct timeval tv;
    as_timeval(r->sub_backoff, &tv);
    r->sub_backoff *= 2;
    if (r->sub_backoff > AS_REDIS_BACKOFF_MAX) r->sub_backoff = AS_REDIS_BACKOFF_MAX;
    evtimer_add(r->sub_ev, &tv);
}

/* "+switch-master" messages: "<name> <old ip> <old port> <new ip> <new port>". */
static void sub_msg_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    struct as_redis *r = arg;
    const redisReply *h = reply;
    if (!h || r->sub_ac != ac || h->type != REDIS_REPLY_ARRAY || h->elements != 3 ||
        h->element[0]->type != REDIS_REPLY_STRING || h->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(h->element[0]->str, "subscribe") == 0) {
        r->sub_backoff = AS_REDIS_BACKOFF_MIN;
        return;
    }
    if (strcmp(h->element[0]->str, "message") != 0) return;
    char name[256], oh[64], op[16], nh[64], np[16];
    char host[64];
    int port;
    if (sscanf(h->element[2]->str, "%255s %63s %15s %63s %15s", name, oh, op, nh, np) != 5 ||
        parse_ip_port(nh, np, host, sizeof host, &port) < 0)
        return;
    for (size_t i = 0; i < r->nshards; i++)
        if (strcmp(r->shards[i].name, name) == 0) shard_set_master(&r->shards[i], host, port, 1);
}

static void sub_lost(struct as_redis *r, const redisAsyncContext *ac)
{
    if (r->sub_ac != ac) return;
    r->sub_ac = NULL;
    as_log(AS_LOG_DEBUG, "redis: sentinel subscription lost: %s",
           ac->errstr[0] ? ac->errstr : "connection closed");
    sub_retry(r);
}

static void sub_connect_cb(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK) sub_lost(ac->data, ac);
}

static void sub_disconnect_cb(const redisAsyncContext *ac, int status)
{
    AS_UNUSED(status);
    sub_lost(ac->data, ac);
}

/* One sentinel's +switch-master channel, so a failover is followed the
 * moment it is decided rather than when the old master's connections
 * fail; any sentinel will do (they all publish it). */
static void sub_connect(struct as_redis *r)
{
    struct redis_sentinel *sn = &r->sentinels[r->sub_next++ % r->nsentinels];
    redisAsyncContext *ac = redisAsyncConnect(sn->host, sn->port);
    if (!ac) as_oom();
    if (ac->err) {
        redisAsyncFree(ac);
        sub_retry(r);
        return;
    }
    ac->data = r;
    r->sub_ac = ac;
    if (io_attach(ac, r->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, sub_connect_cb) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, sub_disconnect_cb) != REDIS_OK ||
        redisAsyncCommand(ac, sub_msg_cb, r, "SUBSCRIBE +switch-master") != REDIS_OK) {
        r->sub_ac = NULL;
        redisAsyncFree(ac);
        sub_retry(r);
    }
}

static void sub_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_redis *r = arg;
    if (!r->sub_ac) sub_connect(r);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_redis *r = arg;
    for (size_t i = 0; i < r->nshards; i++) queue_flush(&r->shards[i]);
}

static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_redis *r = arg;
    if (r->nsentinels) sub_connect(r);
    for (size_t i = 0; i < r->nshards; i++) shard_connect(&r->shards[i]);
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

static void reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    struct as_redis_req *q = arg;
    struct as_redis *r = q->r;
    struct redis_conn *c = q->c;
    const redisReply *h = reply;
    int readonly = 0;
    if (c && c->ac == ac) {
        if (!h) {
            conn_lost(c, ac, ac->errstr[0] ? ac->errstr : "connection closed");
        } else {
            if (c->inflight) c->inflight--;
            /* a reply: the connection lives; watch the next one */
            if (c->inflight) conn_watch_arm(c);
            else if (c->state == CONN_READY) event_del(c->watch_ev);
            /* Sentinel: the master we know was demoted under us */
            readonly = r->nsentinels && h->type == REDIS_REPLY_ERROR && h->str &&
                       strncmp(h->str, "READONLY", 8) == 0;
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
            if (!q->timer) {
                if (readonly) r->st.dropped_writes++;
                as_log(AS_LOG_DEBUG, "redis: write refused: %s", h->str ? h->str : "");
            }
        }
        if (q->cb) {
            struct as_redis_reply ar;
            reply_convert(h, &ar);
            req_answer(q, h->type == REDIS_REPLY_ERROR ? AS_REDIS_ERROR : AS_REDIS_OK, &ar);
            reply_free(&ar);
        }
    }
    req_free(q);
    if (readonly && c->ac == ac) {
        r->st.switches++;
        conn_drop(c, "READONLY: the server is a replica now");   /* and ask again */
    }
}

/* The ready connection used last, else the first ready one; with
 * connecting_ok a connecting one if none is ready.  Staying on one
 * connection is what pipelining is for: the commands of one loop
 * iteration (the reads of every scan that started in it, the writes of
 * every scan that finished) leave in one write() and their replies come
 * back in one read().  Redis runs commands on one thread, so spreading
 * them over connections gains nothing; the others stand by for when this
 * one breaks or stalls. */
static struct redis_conn *pick_conn(struct redis_shard *s, int connecting_ok)
{
    struct redis_conn *connecting = NULL;
    unsigned n = s->r->nconns;
    for (unsigned k = 0; k < n; k++) {
        struct redis_conn *c = &s->conns[(s->next + k) % n];
        if (c->state == CONN_READY) {
            s->next = c->idx;
            return c;
        }
        if (!connecting && c->state == CONN_CONNECTING) connecting = c;
    }
    return connecting_ok ? connecting : NULL;
}

static char *put_count(char *p, char type, size_t n)
{
    *p++ = type;
    p += as_u64_dec(p, n);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* The RESP form of a command (malloc'd, *outlen bytes).  hiredis 0.14's
 * redisFormatCommandArgv builds the same with a sprintf per argument:
 * about 14,000 instructions for the history plugin's EVALSHA, 1.5 % of a
 * scan with everything on (docs/performance.md, issue 21). */
static char *resp_format(size_t argc, const char *const *argv, const size_t *argvlen,
                         size_t *outlen)
{
    size_t total = 1 + 20 + 2;
    for (size_t i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        total += 1 + 20 + 2 + n + 2;
    }
    char *out = xmalloc(total), *p = put_count(out, '*', argc);
    for (size_t i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        p = put_count(p, '$', n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    *outlen = (size_t)(p - out);
    return out;
}

/* Hands q to hiredis on c: argv, or q->cmd when argv is NULL. */
static int conn_send(struct redis_conn *c, struct as_redis_req *q, size_t argc,
                     const char *const *argv, const size_t *argvlen)
{
    int rc;
    if (argv) {
        size_t len;
        char *cmd = resp_format(argc, argv, argvlen, &len);
        rc = redisAsyncFormattedCommand(c->ac, reply_cb, q, cmd, len);
        free(cmd);   /* hiredis has its own copy */
    } else {
        rc = redisAsyncFormattedCommand(c->ac, reply_cb, q, q->cmd, q->cmdlen);
    }
    if (rc != REDIS_OK) return -1;
    q->ac = c->ac;
    q->c = c;
    c->r->st.commands++;
    if (c->inflight++ == 0 && c->state == CONN_READY) conn_watch_arm(c);
    return 0;
}

static void queue_set_stat(struct as_redis *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nshards; i++) n += r->shards[i].qlen;
    r->st.queued = n;
}

static void queue_flush(struct redis_shard *s)
{
    struct as_redis *r = s->r;
    while (s->qhead) {
        struct redis_conn *c = pick_conn(s, 0);
        if (!c) break;
        struct as_redis_req *q = s->qhead;
        s->qhead = q->qnext;
        if (!s->qhead) s->qtail = NULL;
        s->qlen--;
        q->qnext = NULL;
        if (conn_send(c, q, 0, NULL, NULL) < 0) {
            r->st.dropped_writes++;
            req_free(q);
            continue;
        }
        free(q->cmd);   /* hiredis has its own copy */
        q->cmd = NULL;
    }
    queue_set_stat(r);
}

static int queue_write(struct redis_shard *s, size_t argc, const char *const *argv,
                       const size_t *argvlen)
{
    struct as_redis *r = s->r;
    if (s->qlen >= r->rc.queue_max) {
        r->st.dropped_writes++;
        return -1;
    }
    struct as_redis_req *q = xcalloc(1, sizeof *q);
    q->r = r;
    q->cmd = resp_format(argc, argv, argvlen, &q->cmdlen);
    if (s->qtail) s->qtail->qnext = q;
    else s->qhead = q;
    s->qtail = q;
    s->qlen++;
    queue_set_stat(r);
    return 0;
}

static struct as_redis_req *shard_submit(struct redis_shard *s, size_t argc,
                                         const char *const *argv, const size_t *argvlen,
                                         as_redis_done_fn cb, void *arg)
{
    struct as_redis *r = s->r;
    /* Just after start, reads may ride on a connection still connecting:
     * their deadline bounds the wait.  Once the shard was down they wait
     * for a ready one (a black-holed server would hold each read for the
     * whole timeout). */
    struct redis_conn *c = pick_conn(s, cb != NULL && s->was_up == -1);
    if (!cb && (!c || r->rc.queue_max > 0)) {
        /* Writes wait in the queue: while no connection is up, for one;
         * else up to REDIS_WRITE_DELAY or the next read, so that under
         * load many leave in one write() (on loopback TCP the syscalls
         * and wake-ups, not Redis, are what a write costs). */
        if (c && s->qlen >= r->rc.queue_max) queue_flush(s);
        if (queue_write(s, argc, argv, argvlen) < 0) return NULL;
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
    if (s->qhead && c->state == CONN_READY) queue_flush(s);
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
        return queue_write(s, argc, argv, argvlen) == 0 ? &write_marker : NULL;
    }
    if (!cb) return &write_marker;
    evtimer_add(q->timer, &r->timeout);
    return q;
}

static int argv_ok(size_t argc, const char *const *argv)
{
    if (!argc || argc > REDIS_ARGC_MAX || !argv) return 0;
    for (size_t i = 0; i < argc; i++)
        if (!argv[i]) return 0;
    return 1;
}

struct as_redis_req *as_redis_submit(struct as_redis *r, size_t argc, const char *const *argv,
                                     const size_t *argvlen, as_redis_done_fn cb, void *arg)
{
    if (!r || !r->nshards || !argv_ok(argc, argv)) return NULL;
    size_t shard = r->nshards == 1 ? 0 : as_redis_ring_route(r->ring, argc, argv, argvlen);
    return shard_submit(&r->shards[shard], argc, argv, argvlen, cb, arg);
}

struct as_redis_req *as_redis_submit_to(struct as_redis *r, size_t shard, size_t argc,
                                        const char *const *argv, const size_t *argvlen,
                                        as_redis_done_fn cb, void *arg)
{
    if (!r || shard >= r->nshards || !argv_ok(argc, argv)) return NULL;
    return shard_submit(&r->shards[shard], argc, argv, argvlen, cb, arg);
}

size_t as_redis_shards(const struct as_redis *r) { return r ? r->nshards : 0; }

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
    for (size_t s = 0; s < r->nshards; s++)
        for (unsigned i = 0; i < r->nconns; i++) {
            const char *argv[] = { "SCRIPT", "LOAD", sc->body };
            redisAsyncContext *ac = r->shards[s].conns[i].ac;
            if (ac) redisAsyncCommandArgv(ac, script_loaded_cb, NULL, 3, argv, NULL);
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
    r->prefix = xstrdup(rc->prefix ? rc->prefix : "");
    r->rc.prefix = r->prefix;
    r->rc.server = NULL;
    r->rc.nshards = 0;
    r->rc.nsentinels = 0;
    if (!rc->server || !rc->nshards) return r;   /* off */
    if (!timeout_ok(rc->timeout)) {
        snprintf(err, errlen, "redis: timeout must be from 1ms to 60s, not %g", rc->timeout);
        as_redis_free(r);
        return NULL;
    }
    if (rc->password) r->password = xstrdup(rc->password);
    r->rc.password = r->password;
    as_timeval(rc->timeout, &r->timeout);
    r->ring = as_redis_ring_new(rc);
    r->nsentinels = rc->nsentinels;
    if (r->nsentinels) {
        r->sentinels = xcalloc(r->nsentinels, sizeof *r->sentinels);
        for (size_t i = 0; i < r->nsentinels; i++) {
            as_strlcpy(r->sentinels[i].host, rc->sentinels[i].host, sizeof r->sentinels[i].host);
            r->sentinels[i].port = rc->sentinels[i].port;
        }
        r->sub_backoff = AS_REDIS_BACKOFF_MIN;
        r->sub_ev = evtimer_new(base, sub_timer_cb, r);
        if (!r->sub_ev) as_oom();
    }
    r->nconns = rc->connections ? rc->connections : 1;
    r->nshards = rc->nshards;
    r->shards = xcalloc(r->nshards, sizeof *r->shards);
    for (size_t k = 0; k < r->nshards; k++) {
        struct redis_shard *s = &r->shards[k];
        const struct as_redis_addr *a = &rc->shards[k];
        s->r = r;
        s->idx = k;
        s->name = xstrdup(a->name);
        s->was_up = -1;
        s->disc_backoff = AS_REDIS_BACKOFF_MIN;
        s->disc_next = k;   /* spread the first questions over the sentinels */
        if (!r->nsentinels) {
            as_strlcpy(s->host, a->host, sizeof s->host);
            s->port = a->port;
            if (a->unix_path) s->unix_path = xstrdup(a->unix_path);
            s->have_addr = 1;
        }
        s->disc_ev = evtimer_new(base, disc_timer_cb, s);
        if (!s->disc_ev) as_oom();
        s->conns = xcalloc(r->nconns, sizeof *s->conns);
        for (unsigned i = 0; i < r->nconns; i++) {
            struct redis_conn *c = &s->conns[i];
            c->r = r;
            c->s = s;
            c->idx = i;
            c->backoff = AS_REDIS_BACKOFF_MIN;
            c->retry_ev = evtimer_new(base, conn_retry_cb, c);
            c->watch_ev = evtimer_new(base, conn_watch_cb, c);
            if (!c->retry_ev || !c->watch_ev) as_oom();
        }
    }
    r->rc.server = r->shards[0].name;
    r->rc.nshards = r->nshards;
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
    if (r->sub_ac) {
        redisAsyncContext *ac = r->sub_ac;
        r->sub_ac = NULL;
        redisAsyncFree(ac);
    }
    if (r->sub_ev) event_free(r->sub_ev);
    for (size_t k = 0; k < r->nshards; k++) {
        struct redis_shard *s = &r->shards[k];
        if (s->disc_ac) {
            redisAsyncContext *ac = s->disc_ac;
            s->disc_ac = NULL;
            redisAsyncFree(ac);
        }
        event_free(s->disc_ev);
        for (unsigned i = 0; i < r->nconns; i++) {
            struct redis_conn *c = &s->conns[i];
            event_free(c->retry_ev);
            c->retry_ev = NULL;
            event_free(c->watch_ev);
            c->watch_ev = NULL;
            redisAsyncContext *ac = c->ac;
            c->ac = NULL;
            c->state = CONN_DOWN;
            if (ac) redisAsyncFree(ac);   /* answers its requests: UNAVAILABLE */
        }
        while (s->qhead) {
            struct as_redis_req *q = s->qhead;
            s->qhead = q->qnext;
            req_free(q);
        }
    }
    for (size_t k = 0; k < r->nshards; k++) {
        free(r->shards[k].conns);
        free(r->shards[k].name);
        free(r->shards[k].unix_path);
    }
    free(r->shards);
    if (r->start_ev) event_free(r->start_ev);
    if (r->flush_ev) event_free(r->flush_ev);
    for (size_t i = 0; i < r->nscripts; i++) free(r->scripts[i].body);
    free(r->scripts);
    free(r->sentinels);
    as_redis_ring_free(r->ring);
    free(r->password);
    free(r->prefix);
    free(r);
}

int as_redis_enabled(const struct as_redis *r) { return r && r->nshards > 0; }
const char *as_redis_prefix(const struct as_redis *r) { return r ? r->prefix : ""; }

double as_redis_timeout(const struct as_redis *r)
{
    return r ? (double)r->timeout.tv_sec + (double)r->timeout.tv_usec / 1e6 : 0;
}

void as_redis_get_stats(const struct as_redis *r, struct as_redis_stats *st)
{
    *st = r->st;
    st->connections_up = conns_up(r);
    st->shards_up = 0;
    for (size_t i = 0; i < r->nshards; i++) st->shards_up += shard_conns_up(&r->shards[i]) > 0;
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
       RM_CONNECTS, RM_DISCONNECTS, RM_UP, RM_SHARDS_UP, RM_SWITCHES, RM__COUNT };

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
    [RM_SHARDS_UP] = { "shards_up", "redis_shards_up", AS_METRIC_GAUGE,
                       "Redis shards with a connection ready, summed over workers." },
    [RM_SWITCHES] = { "switches", "redis_master_switches_total", AS_METRIC_COUNTER,
                      "Redis masters changed under a connection (Sentinel failover followed)." },
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
    v[RM_SHARDS_UP] = s.shards_up;
    v[RM_SWITCHES] = s.switches;
}

static void redis_service_stats(const void *state, const uint64_t *t, struct sbuf *b)
{
    const struct as_redis *r = state;
    if (!as_redis_enabled(r)) {
        sbuf_adds(b, "{\"state\":\"off\"}");
        return;
    }
    /* "connections" is this worker's setting; the rest is daemon-wide */
    sbuf_printf(b, "{\"state\":\"%s\",\"connections\":%u,\"shards\":%zu",
                t[RM_UP] ? "up" : "down", r->nconns, r->nshards);
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
