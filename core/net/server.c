/*
 * server.c - see server.h.
 *
 * A connection is in one of the adapter's states (as_conn_state) until the
 * adapter ends it; then it is CLOSING here: the final reply is flushed,
 * our sending side shut down and input discarded for SERVER_LINGER_SECONDS
 * (the classic "lingering close"), and the connection freed.  The adapter
 * hears nothing between as_conn_close() and its close() callback.
 */
#define _GNU_SOURCE      /* accept4 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "util/log.h"
#include "net/protocol.h"
#include "scan/stats.h"
#include "net/server.h"

/* Lingering close: how long we keep discarding input after our final
 * reply was sent. */
#define SERVER_LINGER_SECONDS 2.0
/* Draining: an idle connection gets this long to send one more request
 * (answered, then closed) before it is closed.  Closing it at once would
 * race with a client that is sending its next request right now: that
 * request would get no reply (EOF or RST), which a reload under load must
 * not cause. */
#define SERVER_DRAIN_IDLE_SECONDS 0.5
/* After accept() failed for lack of descriptors, wait this long before
 * trying again (the listening socket stays readable: level-triggered
 * retries would spin). */
#define SERVER_ACCEPT_BACKOFF_SECONDS 0.5
/* Rate-limited log lines: at most one per kind in this many seconds. */
#define SERVER_LIMIT_LOG_INTERVAL 5.0
/* Buckets of the per-address connection counts (power of two). */
#define SERVER_ADDR_BUCKETS 1024
/* What one read takes at most: a whole message of the usual size in one
 * recv.  libevent's own socket read costs an ioctl(FIONREAD) and a readv
 * of at most 4,096 bytes each, so a 6-10 KB request took three system
 * calls or more and as many loop passes; ours is one recv (and the
 * bufferevent is left to write). */
#define SERVER_READ_SIZE 65536

/* Connections from one client address (IPv4 address or IPv6 /64). */
struct addr_slot {
    struct addr_slot *next;
    unsigned char key[9];    /* family tag + 4 or 8 address bytes */
    unsigned char keylen;
    size_t n;
};

struct server_listener {
    struct as_server *srv;
    struct event *ev;        /* readable: a connection to accept */
    int fd;
    int dead;                /* shut down (by any worker): never enable again */
    const struct as_protocol *proto;
    void *ps;
};

struct as_conn {
    struct as_server *srv;
    struct as_conn *prev, *next;
    struct bufferevent *bev; /* writes only: reading is conn_sock_read_cb's */
    struct event *rev;       /* readable */
    struct evbuffer_cb_entry *resume;  /* enabled while reading is paused */
    size_t read_high;        /* as_conn_read_limit(); 0: no limit */
    int read_paused;         /* read_high reached, or EOF seen */
    struct event *timer;
    struct event *flush;     /* activated by a write: see conn_output() */
    const struct as_protocol *proto;
    void *cs;                /* the adapter's state */
    enum as_conn_state state;
    int closing;             /* as_conn_close(): flushing, then lingering */
    int peer_eof;            /* the client closed its sending side */
    int tcp;                 /* TCP socket (options apply) */
    double accepted;
    struct addr_slot *addr;  /* NULL: not counted (unix socket) */
    char peer[64];
};

struct as_server {
    struct event_base *base;
    struct as_server_limits lim;

    struct server_listener **listeners;
    size_t nlisteners;
    int accepting;           /* listeners currently enabled */
    int accept_backoff;      /* paused after EMFILE and friends */
    struct event *backoff_ev;

    struct as_conn *conns;
    size_t nconns, nactive;
    struct as_stats *stats;  /* counts connections; may be NULL */

    int draining;
    void (*drain_done)(void *);
    void *drain_arg;
    struct event *done_ev;

    struct addr_slot *addr_tab[SERVER_ADDR_BUCKETS];
    unsigned char rbuf[SERVER_READ_SIZE];   /* conn_sock_read_cb's scratch */
    struct { double next; unsigned long suppressed; } limlog[AS_SERVER_LOG__COUNT];
};

static void conn_free(struct as_conn *c);

/* ---------------------------------------------------------------- */
/* helpers                                                           */

static struct timeval tv_from(double secs)
{
    struct timeval tv;
    as_timeval(secs, &tv);
    return tv;
}

static void peer_format(const struct sockaddr *sa, int salen, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET && salen >= (int)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6 && salen >= (int)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        as_strlcpy(out, "unix", outlen);
    } else {
        as_strlcpy(out, "unknown", outlen);
    }
}

static void limit_logv(struct as_server *s, enum as_server_log kind, const char *fmt, va_list ap)
{
    double now = as_now();
    if (now < s->limlog[kind].next) {
        s->limlog[kind].suppressed++;
        return;
    }
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (s->limlog[kind].suppressed)
        as_log(AS_LOG_NOTICE, "%s (and %lu more like it since the last such line)", msg,
               s->limlog[kind].suppressed);
    else
        as_log(AS_LOG_NOTICE, "%s", msg);
    s->limlog[kind].suppressed = 0;
    s->limlog[kind].next = now + SERVER_LIMIT_LOG_INTERVAL;
}

static void limit_log(struct as_server *s, enum as_server_log kind, const char *fmt, ...)
    AS_PRINTF(3, 4);
static void limit_log(struct as_server *s, enum as_server_log kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    limit_logv(s, kind, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- */
/* connections per client address                                    */

/* The bucket key of a peer: the IPv4 address (also when it arrives as
 * ::ffff:a.b.c.d), or the IPv6 /64, since one host usually owns a whole
 * /64 (RFC 7421) and would otherwise have 2^64 separate limits.  Returns
 * 0, or -1 for peers that are not counted (unix sockets). */
static int addr_key(const struct sockaddr *sa, int salen, unsigned char key[9], unsigned char *len)
{
    if (sa->sa_family == AF_INET && salen >= (int)sizeof(struct sockaddr_in)) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *len = 5;
        return 0;
    }
    if (sa->sa_family == AF_INET6 && salen >= (int)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key[0] = 4;
            memcpy(key + 1, a->s6_addr + 12, 4);
            *len = 5;
        } else {
            key[0] = 6;
            memcpy(key + 1, a->s6_addr, 8);
            *len = 9;
        }
        return 0;
    }
    return -1;
}

static void addr_key_format(const struct addr_slot *a, char *out, size_t outlen)
{
    if (a->key[0] == 4) {
        inet_ntop(AF_INET, a->key + 1, out, (socklen_t)outlen);
        return;
    }
    unsigned char full[16] = { 0 };
    char ip[INET6_ADDRSTRLEN];
    memcpy(full, a->key + 1, 8);
    inet_ntop(AF_INET6, full, ip, sizeof ip);
    snprintf(out, outlen, "%s/64", ip);
}

static uint32_t addr_hash(const unsigned char *key, unsigned char len)
{
    /* FNV-1a; chains hold at most max_connections slots in all, so a
     * chosen collision costs no more than a linear scan would */
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < len; i++) h = (h ^ key[i]) * 16777619u;
    return h & (SERVER_ADDR_BUCKETS - 1);
}

/* The slot of key, created with n = 0 if absent. */
static struct addr_slot *addr_get(struct as_server *s, const unsigned char *key, unsigned char len)
{
    struct addr_slot **head = &s->addr_tab[addr_hash(key, len)];
    for (struct addr_slot *a = *head; a; a = a->next)
        if (a->keylen == len && memcmp(a->key, key, len) == 0) return a;
    struct addr_slot *a = xcalloc(1, sizeof *a);
    memcpy(a->key, key, len);
    a->keylen = len;
    a->next = *head;
    *head = a;
    return a;
}

static void addr_put(struct as_server *s, struct addr_slot *a)
{
    if (--a->n > 0) return;
    for (struct addr_slot **pp = &s->addr_tab[addr_hash(a->key, a->keylen)]; *pp;
         pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    free(a);
}

/* ---------------------------------------------------------------- */
/* accepting                                                         */

static void server_update_accept(struct as_server *s)
{
    int want = !s->draining && !s->accept_backoff &&
               !(s->lim.max_connections && s->nconns >= s->lim.max_connections);
    if (want == s->accepting) return;
    if (!want && s->lim.max_connections && s->nconns >= s->lim.max_connections && !s->draining)
        limit_log(s, AS_SERVER_LOG_MAX_CONN, "server: %zu connections open "
                  "(limits.max_connections): not accepting more until one closes", s->nconns);
    for (size_t i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i]->dead) continue;
        if (want) event_add(s->listeners[i]->ev, NULL);
        else event_del(s->listeners[i]->ev);
    }
    s->accepting = want;
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_server *s = arg;
    if (s->drain_done) s->drain_done(s->drain_arg);
}

/* done() runs from its own event, never from inside a connection's
 * callback, so it may free the server. */
static void server_check_drained(struct as_server *s)
{
    if (s->draining && s->nconns == 0 && !evtimer_pending(s->done_ev, NULL)) {
        struct timeval tv = { 0, 0 };
        evtimer_add(s->done_ev, &tv);
    }
}

static void conn_sock_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_resume_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_flush_cb(evutil_socket_t fd, short what, void *arg);

/* Answers a connection over the per-address limit without reading it: the
 * adapter's canned refusal (it fits any socket buffer), then close.  Input
 * that already arrived is read first, because closing a socket with
 * unread input sends RST, which can destroy the refusal before the client
 * sees it. */
static void refuse_busy(const struct server_listener *sl, int fd)
{
    char msg[512];
    size_t n = sl->proto->refusal ? sl->proto->refusal(msg, sizeof msg,
                                                       "too many connections from this "
                                                       "address (limits.max_connections_per_ip)")
                                  : 0;
    if (n && send(fd, msg, n < sizeof msg ? n : sizeof msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* nothing to do: the client is gone or not reading */
    }
    shutdown(fd, SHUT_WR);
    char junk[4096];
    for (int i = 0; i < 16 && recv(fd, junk, sizeof junk, MSG_DONTWAIT) > 0; i++)
        ;
    close(fd);
}

/* Takes over an accepted, non-blocking socket. */
static void conn_new(struct server_listener *sl, evutil_socket_t fd, const struct sockaddr *sa,
                     int salen)
{
    struct as_server *s = sl->srv;
    struct addr_slot *slot = NULL;
    unsigned char key[9], klen;
    if (s->lim.max_per_addr && addr_key(sa, salen, key, &klen) == 0) {
        slot = addr_get(s, key, klen);
        if (slot->n >= s->lim.max_per_addr) {
            char who[INET6_ADDRSTRLEN + 4];
            addr_key_format(slot, who, sizeof who);
            limit_log(s, AS_SERVER_LOG_PER_ADDR, "%s: %s already has %zu connections to this "
                      "worker (limits.max_connections_per_ip): refused one", sl->proto->name,
                      who, slot->n);
            refuse_busy(sl, fd);
            return;
        }
        slot->n++;
    }
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        as_log(AS_LOG_ERR, "%s: cannot create a bufferevent for a new connection",
               sl->proto->name);
        if (slot) addr_put(s, slot);
        close(fd);
        return;
    }
    struct as_conn *c = xcalloc(1, sizeof *c);
    c->tcp = sa->sa_family == AF_INET || sa->sa_family == AF_INET6;
    if (c->tcp) {
        /* replies are written in one go; Nagle would only add latency */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->srv = s;
    c->bev = bev;
    c->addr = slot;
    c->proto = sl->proto;
    c->accepted = as_now();
    c->state = AS_CONN_IDLE;
    c->timer = evtimer_new(s->base, conn_timer_cb, c);
    c->flush = event_new(s->base, -1, 0, conn_flush_cb, c);
    c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, conn_sock_read_cb, c);
    if (!c->timer || !c->flush || !c->rev) as_oom();
    /* The bufferevent never reads (see conn_sock_read_cb): its input is
     * filled by us, so its end is not kept frozen. */
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_unfreeze(in, 0);
    c->resume = evbuffer_add_cb(in, conn_resume_cb, c);
    if (!c->resume) as_oom();
    evbuffer_cb_clear_flags(in, c->resume, EVBUFFER_CB_ENABLED);
    peer_format(sa, salen, c->peer, sizeof c->peer);

    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    as_stats_connection(s->stats, 1);

    bufferevent_setcb(bev, NULL, conn_write_cb, conn_event_cb, c);
    if (s->lim.write_timeout > 0) {
        struct timeval wtv = tv_from(s->lim.write_timeout);
        bufferevent_set_timeouts(bev, NULL, &wtv);
    }
    /* writing is enabled only while a reply waits for the socket
     * (conn_flush_cb): enabled on an empty buffer, the bufferevent would
     * poll for writability at once and then stop, two epoll_ctl and a
     * wake-up per connection for nothing (a new bufferevent starts with
     * writing enabled: off here, no system call) */
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    event_add(c->rev, NULL);
    as_log(AS_LOG_DEBUG, "%s: connection from %s", c->proto->name, c->peer);
    c->cs = c->proto->open(sl->ps, c);
}

static void accept_failed(struct server_listener *sl, int err)
{
    struct as_server *s = sl->srv;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
        return;   /* another worker took it, or the client gave up */
    if (err == EINVAL) {
        /* another worker shut the socket down (final stop): it stays
         * readable (HUP) forever, so stop polling it or we would spin */
        if (!sl->dead) {
            sl->dead = 1;
            event_del(sl->ev);
            as_log(AS_LOG_INFO, "%s: listening socket %d was shut down", sl->proto->name, sl->fd);
        }
        return;
    }
    as_log(AS_LOG_WARN, "%s: accept failed: %s", sl->proto->name, strerror(err));
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        s->accept_backoff = 1;
        server_update_accept(s);
        struct timeval tv = tv_from(SERVER_ACCEPT_BACKOFF_SECONDS);
        evtimer_add(s->backoff_ev, &tv);
    }
}

/* One accept per loop pass, on a level-triggered event: when a client
 * opens its connections in a burst, every worker woken by the same
 * readiness takes its share, where accepting until EAGAIN (libevent's
 * listener) lets the first worker to wake take them all and the others
 * idle for as long as those keep-alive connections live (measured: 16
 * connections -> 16 + 0; docs/performance.md).  The socket stays ready
 * while connections wait, so the next pass accepts the next one, without
 * pausing the listeners (which cost two epoll_ctl per listening socket and
 * connection; docs/performance.md, issue 16). */
static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(what);
    struct server_listener *sl = arg;
    struct as_server *s = sl->srv;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
        accept_failed(sl, errno);
        return;
    }
    if (s->draining) {
        close(cfd);
        return;
    }
    conn_new(sl, cfd, (struct sockaddr *)&ss, (int)len);
    server_update_accept(s);   /* limits.max_connections reached? */
}

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_server *s = arg;
    s->accept_backoff = 0;
    server_update_accept(s);
}

/* ---------------------------------------------------------------- */
/* connection life                                                   */

static void conn_free(struct as_conn *c)
{
    struct as_server *s = c->srv;
    int busy = c->state == AS_CONN_BUSY && !c->closing;
    c->closing = 1;            /* the adapter's close() cannot start a reply */
    if (c->cs) c->proto->close(c->cs);
    c->cs = NULL;
    if (busy) s->nactive--;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    as_stats_connection(s->stats, -1);
    if (c->addr) addr_put(s, c->addr);

    event_free(c->rev);
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->resume);
    bufferevent_free(c->bev);
    event_free(c->timer);
    event_free(c->flush);
    free(c);

    server_update_accept(s);
    server_check_drained(s);
}

/* The final reply is out: stop sending, drain input until EOF or timer. */
static void conn_linger(struct as_conn *c)
{
    if (c->peer_eof) {
        conn_free(c);
        return;
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    as_conn_timer_set(c, SERVER_LINGER_SECONDS);
}

static void conn_read_pause(struct as_conn *c)
{
    if (c->read_paused) return;
    c->read_paused = 1;
    event_del(c->rev);
}

static void conn_read_resume(struct as_conn *c)
{
    if (!c->read_paused || c->peer_eof) return;
    c->read_paused = 0;
    evbuffer_cb_clear_flags(bufferevent_get_input(c->bev), c->resume, EVBUFFER_CB_ENABLED);
    event_add(c->rev, NULL);
}

/* Input below the limit again (the adapter consumed some): read on. */
static void conn_resume_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    AS_UNUSED(info);
    struct as_conn *c = arg;
    if (!c->read_high || evbuffer_get_length(buf) < c->read_high) conn_read_resume(c);
}

/* The client closed its sending side. */
static void conn_peer_eof(struct as_conn *c)
{
    c->peer_eof = 1;
    if (c->closing) {
        /* a half-closing client still gets the final reply */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) conn_free(c);
        return;
    }
    c->proto->eof(c->cs);
}

static void conn_failed(struct as_conn *c, int err);

static void conn_sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(what);
    struct as_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t have = evbuffer_get_length(in), room = SERVER_READ_SIZE;
    if (c->read_high && !c->closing) {
        if (have >= c->read_high) {
            /* resumed by conn_resume_cb once the adapter took some */
            conn_read_pause(c);
            evbuffer_cb_set_flags(in, c->resume, EVBUFFER_CB_ENABLED);
            return;
        }
        if (c->read_high - have < room) room = c->read_high - have;
    }
    /* into the server's scratch buffer, then copied: a connection's input
     * holds what arrived (a slow client pins a few KB), not a 64 KB chain
     * reserved for every read */
    ssize_t n;
    do n = recv(fd, c->srv->rbuf, room, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        conn_failed(c, errno);
        return;
    }
    if (n > 0 && evbuffer_add(in, c->srv->rbuf, (size_t)n) != 0) {
        as_log(AS_LOG_ERR, "%s: %s: no memory for input", c->proto->name, c->peer);
        conn_free(c);
        return;
    }
    if (n == 0) {
        /* level-triggered: a socket at EOF stays readable */
        conn_read_pause(c);
        conn_peer_eof(c);
        return;
    }
    if (c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    c->proto->read(c->cs);   /* may free c */
}

/* Everything written reached the kernel. */
static void conn_written(struct as_conn *c)
{
    if (c->closing) {
        conn_linger(c);
        return;
    }
    if (c->proto->flushed) c->proto->flushed(c->cs);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct as_conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) != 0) return;
    /* the socket took the rest: the next reply is written directly again
     * (conn_flush_cb); the write event is already off, so no system call */
    bufferevent_disable(bev, EV_WRITE);
    conn_written(c);
}

static void conn_failed(struct as_conn *c, int err)
{
    if (c->state != AS_CONN_IDLE && !c->closing)
        as_log(AS_LOG_INFO, "%s: %s: %s", c->proto->name, c->peer,
               evutil_socket_error_to_string(err));
    conn_free(c);
}

/* Writes what the adapter wrote in this loop pass (activated by
 * conn_output).  Most replies fit the socket buffer: written here at once,
 * they cost one writev, where the bufferevent polled for writability first
 * (add the write event, a wake-up, remove it: three more system calls per
 * reply, for every protocol; docs/performance.md, issue 16).  What does
 * not fit is left to the bufferevent, with its write timeout. */
static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(c->bev) & EV_WRITE)) return;
    /* a socket bufferevent keeps the front of its output frozen (only it
     * drains it): thawed for this write, as its own write callback does */
    int n;
    evbuffer_unfreeze(out, 1);
    do {
        errno = 0;
        n = evbuffer_write(out, bufferevent_getfd(c->bev));
    } while (n < 0 && errno == EINTR);
    evbuffer_freeze(out, 1);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        conn_failed(c, errno);
        return;
    }
    if (evbuffer_get_length(out) != 0) {
        event_base_update_cache_time(c->srv->base);   /* the write timeout starts now */
        bufferevent_enable(c->bev, EV_WRITE);
        return;
    }
    conn_written(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    AS_UNUSED(bev);
    struct as_conn *c = arg;
    if (what & BEV_EVENT_TIMEOUT) {    /* only the write timeout is set on bev */
        as_log(AS_LOG_INFO, "%s: %s: write timeout", c->proto->name, c->peer);
        conn_free(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        conn_failed(c, EVUTIL_SOCKET_ERROR());
        return;
    }
    if (what & BEV_EVENT_EOF) conn_peer_eof(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct as_conn *c = arg;
    if (c->closing) {
        conn_free(c);
        return;
    }
    c->proto->timeout(c->cs);
}

/* ---------------------------------------------------------------- */
/* for adapters                                                      */

void as_conn_set_state(struct as_conn *c, enum as_conn_state st)
{
    if (c->closing) return;
    if (st == AS_CONN_BUSY && c->state != AS_CONN_BUSY) c->srv->nactive++;
    if (st != AS_CONN_BUSY && c->state == AS_CONN_BUSY) c->srv->nactive--;
    c->state = st;
}

enum as_conn_state as_conn_state(const struct as_conn *c) { return c->state; }

struct evbuffer *as_conn_input(struct as_conn *c) { return bufferevent_get_input(c->bev); }

/* The output buffer, ready for a reply to be added.  Writing is left to
 * the bufferevent only while it is already waiting for the socket (an
 * earlier reply did not fit); otherwise conn_flush_cb writes, once this
 * callback returns, all that the adapter wrote in it: one system call. */
static struct evbuffer *conn_output(struct as_conn *c)
{
    /* the bufferevent arms its write timeout when output arrives, from the
     * loop's cached time, which must be fresh after composing a large
     * reply */
    event_base_update_cache_time(c->srv->base);
    if (!(bufferevent_get_enabled(c->bev) & EV_WRITE) && !event_pending(c->flush, EV_WRITE, NULL))
        event_active(c->flush, EV_WRITE, 0);
    return bufferevent_get_output(c->bev);
}

void as_conn_send(struct as_conn *c, struct evbuffer *out)
{
    evbuffer_add_buffer(conn_output(c), out);
}

void as_conn_write(struct as_conn *c, const void *data, size_t len)
{
    evbuffer_add(conn_output(c), data, len);
}

void as_conn_read_limit(struct as_conn *c, size_t high_wm)
{
    c->read_high = high_wm;
    if (!high_wm || evbuffer_get_length(bufferevent_get_input(c->bev)) < high_wm)
        conn_read_resume(c);
}

void as_conn_ack_now(struct as_conn *c)
{
    if (!c->tcp) return;
    /* Linux: leaves "interactive" (delayed-ACK) mode and sends an ACK
     * that is due; reads then acknowledge at once until we next write.
     * Only a latency hint: a failure changes nothing else. */
    int one = 1;
    (void)setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

void as_conn_timer_set(struct as_conn *c, double secs)
{
    evtimer_del(c->timer);
    if (secs > 0) {
        struct timeval tv = tv_from(secs);
        event_base_update_cache_time(c->srv->base);   /* see as_conn_send() */
        evtimer_add(c->timer, &tv);
    }
}

void as_conn_close(struct as_conn *c)
{
    if (c->closing) return;
    if (c->state == AS_CONN_BUSY) c->srv->nactive--;
    c->state = AS_CONN_WRITING;
    c->closing = 1;
    evtimer_del(c->timer);
    as_conn_read_limit(c, 0);
    /* nothing will parse what is still buffered */
    evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) conn_linger(c);
    /* else conn_write_cb() continues once the reply is flushed */
}

void as_conn_abort(struct as_conn *c) { conn_free(c); }

int as_conn_draining(const struct as_conn *c) { return c->srv->draining; }

const char *as_conn_peer(const struct as_conn *c) { return c->peer; }

double as_conn_accepted(const struct as_conn *c) { return c->accepted; }

struct event_base *as_conn_base(const struct as_conn *c) { return c->srv->base; }

void as_conn_log_limited(struct as_conn *c, enum as_server_log kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    limit_logv(c->srv, kind, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- */
/* public API                                                        */

struct as_server *as_server_new(struct event_base *base, const struct as_server_limits *lim)
{
    struct as_server *s = xcalloc(1, sizeof *s);
    s->base = base;
    s->lim = *lim;
    s->accepting = 1;
    s->done_ev = evtimer_new(base, done_cb, s);
    s->backoff_ev = evtimer_new(base, backoff_cb, s);
    if (!s->done_ev || !s->backoff_ev) as_oom();
    return s;
}

int as_server_add_listener(struct as_server *s, int fd, const struct as_protocol *proto, void *ps)
{
    struct server_listener *sl = xcalloc(1, sizeof *sl);
    sl->srv = s;
    sl->fd = fd;
    sl->proto = proto;
    sl->ps = ps;
    /* the master owns fd (non-blocking, listening): never closed here */
    sl->ev = event_new(s->base, fd, EV_READ | EV_PERSIST, accept_cb, sl);
    if (!sl->ev || (s->accepting && event_add(sl->ev, NULL) < 0)) {
        as_log(AS_LOG_ERR, "%s: cannot accept on fd %d", proto->name, fd);
        if (sl->ev) event_free(sl->ev);
        free(sl);
        return -1;
    }
    s->listeners = xrealloc(s->listeners, (s->nlisteners + 1) * sizeof *s->listeners);
    s->listeners[s->nlisteners++] = sl;
    return 0;
}

void as_server_drain(struct as_server *s, void (*done)(void *), void *arg)
{
    s->draining = 1;
    s->drain_done = done;
    s->drain_arg = arg;
    server_update_accept(s);
    double grace = SERVER_DRAIN_IDLE_SECONDS;
    if (s->lim.idle_timeout > 0 && s->lim.idle_timeout < grace) grace = s->lim.idle_timeout;
    for (struct as_conn *c = s->conns; c; c = c->next)
        if (c->state == AS_CONN_IDLE && !c->closing) as_conn_timer_set(c, grace);
    server_check_drained(s);
}

void as_server_shut_listeners(struct as_server *s, void (*done)(void *), void *arg)
{
    /* Drain first, so that what is accepted below is treated as any
     * connection during a drain (closed after its reply). */
    as_server_drain(s, done, arg);
    for (size_t i = 0; i < s->nlisteners; i++) {
        struct server_listener *sl = s->listeners[i];
        if (sl->dead) continue;
        /* The kernel completed these connections' handshakes: take every
         * one, whatever max_connections says (the listen backlog bounds
         * them), or shutting the socket down below would reset them. */
        for (;;) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            int fd = accept4(sl->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                break;   /* EAGAIN: empty; EINVAL: another worker shut it already */
            }
            conn_new(sl, fd, (struct sockaddr *)&ss, (int)len);
        }
        /* On Linux, shutdown() of a listening TCP socket stops it for every
         * process that shares it (new SYNs get RST); for a unix socket
         * connect() fails with ECONNREFUSED.  ENOTCONN: already done. */
        if (shutdown(sl->fd, SHUT_RDWR) < 0 && errno != ENOTCONN)
            as_log(AS_LOG_WARN, "%s: cannot shut down listening socket %d: %s", sl->proto->name,
                   sl->fd, strerror(errno));
        sl->dead = 1;
        event_del(sl->ev);
    }
    server_check_drained(s);
}

void as_server_free(struct as_server *s)
{
    if (!s) return;
    /* nothing may call back into a half-freed server */
    s->draining = 1;
    s->drain_done = NULL;
    while (s->conns) conn_free(s->conns);
    for (size_t i = 0; i < s->nlisteners; i++) {
        event_free(s->listeners[i]->ev);
        free(s->listeners[i]);
    }
    free(s->listeners);
    event_free(s->done_ev);
    event_free(s->backoff_ev);
    free(s);
}

void as_server_set_stats(struct as_server *s, struct as_stats *st) { s->stats = st; }

size_t as_server_active(const struct as_server *s) { return s->nactive; }
