/*
 * server.h - the connection server: accepting, connection limits, drain
 * and lingering close, for any protocol (protocol.h).
 *
 * One as_server per worker.  It accepts on listening sockets the master
 * opened (TCP or unix), each with the protocol adapter that serves it,
 * owns every connection (socket, buffers, peer address, one timer) and
 * hands the bytes to the adapter.  What it does itself:
 *
 *   accept    one connection per listening socket per loop pass, so that
 *             every worker woken by a burst takes a share; after EMFILE,
 *             ENFILE, ENOBUFS or ENOMEM, accepting pauses 0.5 s instead
 *             of spinning on a readable socket;
 *   limits    max_connections per worker: accepting pauses at the cap
 *             (the kernel queues the rest); max_per_addr per client
 *             address in this worker (IPv4 address, IPv6 /64; unix
 *             clients are exempt): the connection over it gets the
 *             adapter's refusal and is closed at once;
 *   logging   lines about refused, timed-out and bad connections are
 *             rate-limited (one line per kind per 5 s, with a count of the
 *             rest), since a client decides how often they happen;
 *   drain     as_server_drain(): stop accepting, give idle connections a
 *             short grace time, let the others finish, then call done();
 *             as_server_shut_listeners(): the daemon's final stop;
 *   linger    as_conn_close(): flush the final reply, shut our sending
 *             side and discard input for a while before closing, since
 *             closing a socket with unread input sends RST, which can
 *             destroy the reply before the client reads it.
 *
 * Ownership: the server owns its connections; the adapter owns the state
 * it returned from open() and frees it in close().  Adapters must not
 * free the server from inside a callback; done() may.
 */
#ifndef AS_SERVER_H
#define AS_SERVER_H

#include <stddef.h>
#include "util/util.h"

struct event_base;
struct evbuffer;
struct as_server;
struct as_conn;
struct as_protocol;

struct as_server_limits {
    size_t max_connections;    /* per worker; beyond it accept pauses; 0: none */
    size_t max_per_addr;       /* per client address in this worker; 0: none */
    double idle_timeout;       /* the drain grace of an idle connection is at most this */
    double write_timeout;      /* a reply not flushed in this time closes; 0: none */
};

struct as_server *as_server_new(struct event_base *base, const struct as_server_limits *lim);
/* Starts accepting on an already listening, non-blocking socket, whose
 * connections go to proto with ps (the result of its start()).  The
 * server does not close fd (the master owns it).  Returns 0 or -1. */
int as_server_add_listener(struct as_server *s, int fd, const struct as_protocol *proto,
                           void *ps);
/* Stops accepting (the listening sockets stay open for the other workers,
 * e.g. a reload's new generation), closes idle connections after a grace
 * time, lets the others finish, then calls done() from its own event. */
void as_server_drain(struct as_server *s, void (*done)(void *), void *arg);
/* The daemon is going away (no generation follows): accepts every
 * connection the kernel already queued on the listening sockets, so none
 * of them is reset, then shuts the sockets down (shutdown(2) acts on the
 * socket every worker shares): from then on a connect is refused
 * (ECONNREFUSED) instead of being queued for nobody.  Drains too. */
void as_server_shut_listeners(struct as_server *s, void (*done)(void *), void *arg);
void as_server_free(struct as_server *s);   /* closes every connection */
size_t as_server_active(const struct as_server *s);   /* connections AS_CONN_BUSY */
/* Counts accepted and open connections into st (scan/stats.h). */
struct as_stats;
void as_server_set_stats(struct as_server *s, struct as_stats *st);

/* ---- for protocol adapters ---- */

/* What the connection is doing, as the adapter tells the server: idle
 * connections are closed first when draining, busy ones are counted as
 * scans in flight, and errors on connections that are not idle are
 * logged. */
enum as_conn_state { AS_CONN_IDLE, AS_CONN_READING, AS_CONN_BUSY, AS_CONN_WRITING };

void as_conn_set_state(struct as_conn *c, enum as_conn_state st);
enum as_conn_state as_conn_state(const struct as_conn *c);
struct evbuffer *as_conn_input(struct as_conn *c);
/* Moves out's bytes to the connection's output (no copy).  What is
 * written during one callback goes out in one writev after it returns;
 * flushed() follows once all of it reached the kernel. */
void as_conn_send(struct as_conn *c, struct evbuffer *out);
void as_conn_write(struct as_conn *c, const void *data, size_t len);
/* Reads pause while this much input is buffered (0: no limit). */
void as_conn_read_limit(struct as_conn *c, size_t high_wm);
/* Acknowledges what was read at once instead of after the kernel's
 * delayed-ACK timer (TCP only; a no-op elsewhere), and keeps doing so on
 * each read until the next reply is written.  For protocols whose client
 * sends several writes before it waits for an answer: a client with
 * Nagle on (Postfix's milter client) holds its next write until the
 * previous one is acknowledged, and once we have answered on a
 * connection the kernel delays that acknowledgement by up to 40 ms,
 * hoping to send it with our next reply. */
void as_conn_ack_now(struct as_conn *c);
/* (Re)arms the connection's one timer; 0 disarms it. */
void as_conn_timer_set(struct as_conn *c, double secs);
/* The final reply is queued: flush it, then lingering close.  The
 * adapter's close() runs at the end; no other callback runs before it. */
void as_conn_close(struct as_conn *c);
/* Closes now (client gone, timeout): the adapter's close() runs at once. */
void as_conn_abort(struct as_conn *c);
/* The server is draining: close the connection after the current reply. */
int as_conn_draining(const struct as_conn *c);
/* "1.2.3.4:5678", "[::1]:5678" or "unix". */
const char *as_conn_peer(const struct as_conn *c);
/* as_now() when the connection was accepted. */
double as_conn_accepted(const struct as_conn *c);
struct event_base *as_conn_base(const struct as_conn *c);

/* Kinds of rate-limited log lines (see above). */
enum as_server_log { AS_SERVER_LOG_BAD_REQUEST, AS_SERVER_LOG_TIMEOUT, AS_SERVER_LOG_SILENT,
                     AS_SERVER_LOG_PER_ADDR, AS_SERVER_LOG_MAX_CONN, AS_SERVER_LOG__COUNT };
/* A notice line, at most one per kind per 5 s per worker; the next one
 * says how many were left out. */
void as_conn_log_limited(struct as_conn *c, enum as_server_log kind, const char *fmt, ...)
    AS_PRINTF(3, 4);

#endif
