/*
 * protocol.h - the protocol adapter interface, and the table of adapters.
 *
 * A worker serves its listening sockets with one connection server
 * (server.h): it accepts, enforces the connection limits, drains and
 * closes connections, and knows nothing of any protocol.  Each listening
 * socket names its protocol ("http@127.0.0.1:11333", listen.h), and the
 * bytes of its connections go to that protocol's adapter: a struct
 * as_protocol, below.  The adapter frames requests, turns each one into a
 * scan session (session.h: envelope + message in, verdict out) and writes
 * the reply in its own format.
 *
 * Adding an adapter:
 *   1. write core/net/<name>_adapter.c defining `const struct as_protocol
 *      as_<name>_protocol` with the callbacks below;
 *   2. add it to the table in protocol.c;
 *   3. that is all: "<name>@ADDR" in `listen` now reaches it, and the
 *      master, the worker and the server need no change.
 * core/net/http_adapter.c is the complete example (rspamd's HTTP protocol);
 * core/net/milter_adapter.c and core/net/spamd_adapter.c frame their own
 * protocols on the raw connection.
 *
 * The life of a connection, as the adapter sees it:
 *   open      a connection was accepted on one of its sockets: allocate the
 *             connection's state, arm a first deadline (as_conn_timer_set),
 *             return the state (passed as `cs` to every other callback);
 *   read      bytes arrived in as_conn_input(); consume what forms whole
 *             requests, leave the rest there for the next call;
 *   flushed   everything written with as_conn_send() reached the kernel;
 *   eof       the client closed its sending side;
 *   timeout   the deadline set with as_conn_timer_set() passed;
 *   close     the connection is going away (the adapter called
 *             as_conn_abort() or as_conn_close(), the client reset it, a
 *             write timed out, the worker exits): cancel the scan in flight
 *             (as_session_cancel) and free cs.  Nothing may touch the
 *             connection afterwards.
 * Every callback runs on the event loop and must not block.  A callback
 * may end the connection (as_conn_abort / as_conn_close) and must then
 * return without touching cs or the connection.
 *
 * Draining (reload, stop): the server stops accepting and gives each
 * connection that the adapter marked AS_CONN_IDLE a short grace time
 * (timeout callback; as_conn_draining() then tells why).  Connections
 * reading or scanning carry on; the adapter signals the client that the
 * connection ends after this reply in its own way (HTTP: "Connection:
 * close") when as_conn_draining() says so, and closes it after the reply.
 * The worker exits once every connection is gone.
 */
#ifndef AS_PROTOCOL_H
#define AS_PROTOCOL_H

#include <stddef.h>

struct as_config;
struct as_conn;
struct as_session_ctx;

struct as_protocol {
    const char *name;          /* as written before '@' in a listen spec */

    /* Per worker: called once for each protocol some socket names, after
     * the engine is built; the result is every open()'s `ps`.  NULL with
     * a message in err: the worker cannot start (exit 78). */
    void *(*start)(struct as_session_ctx *sc, char *err, size_t errlen);
    void (*stop)(void *ps);

    void *(*open)(void *ps, struct as_conn *c);
    void (*read)(void *cs);
    void (*flushed)(void *cs);
    void (*eof)(void *cs);
    void (*timeout)(void *cs);
    void (*close)(void *cs);

    /* The whole answer to a connection refused before it was read (over
     * limits.max_connections_per_ip), written into buf; returns its
     * length (0: just close).  It must fit a socket buffer: it is sent
     * once, without waiting. */
    size_t (*refusal)(char *buf, size_t len, const char *why);

    /* Optional: checks the adapter's own config keys (declared in the
     * engine's schema, engine.c) when the configuration is loaded;
     * `listened` says whether some listen entry names this protocol (a
     * key of an unused adapter has no effect, which is an error).
     * Returns 0, or -1 with "file:line: ..." in err. */
    int (*check)(const struct as_config *cfg, int listened, char *err, size_t errlen);
};

/* The adapter called name, or NULL. */
const struct as_protocol *as_protocol_find(const char *name);
/* Runs every adapter's check(); listened[i] for the i-th adapter of the
 * table, in the order as_protocol_at() gives. */
int as_protocol_check_config(const struct as_config *cfg, const int *listened, char *err,
                             size_t errlen);
size_t as_protocol_count(void);
const struct as_protocol *as_protocol_at(size_t i);
/* Names of the adapters, "http, milter, ..." into buf (for errors). */
void as_protocol_names(char *buf, size_t len);

#endif
