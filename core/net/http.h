/*
 * http.h - HTTP/1.0 and 1.1 server connections for the scan protocol.
 *
 * One as_http_server per worker.  It accepts on listening sockets that the
 * master opened (TCP or unix), parses requests with http-parser (Debian
 * libhttp-parser), enforces limits, and hands each complete request to the
 * handler.  The handler answers later, possibly after asynchronous work,
 * with as_http_reply().  Keep-alive and pipelining are supported; the next
 * request on a connection is not parsed before the current one is
 * answered, so replies come back in order.
 *
 * Errors the server answers itself (the handler never sees them):
 *   400 malformed request, including everything a strict reading of RFC
 *   9112 refuses (see "Strict framing" in http.c); 413 body over max_body /
 *   header block over max_header_bytes / more than max_headers header
 *   lines; 414 request line over 64 KiB; 408 request head not received
 *   within header_timeout, or the whole request not within read_timeout;
 *   411 POST without length; 501 a transfer coding other than chunked;
 *   505 an HTTP major version other than 1.  Each closes the connection.
 *   Log lines about them and about the connection limits are
 *   rate-limited (one line per kind per 5 s, with a count of the rest).
 *
 * Connection limits: max_connections per worker (accepting pauses at the
 * cap; the kernel queues the rest), max_per_addr per client address in
 * this worker (IPv4 address, IPv6 /64; unix clients are exempt): the
 * connection over it is answered 503 and closed at once.  A connection
 * gets header_timeout from accept (keep-alive: from the first byte of
 * the next request) to deliver its request head; bytes that trickle in
 * do not extend it.
 *
 * Draining (SIGTERM, reload): as_http_server_drain() stops accepting,
 * closes idle keep-alive connections, lets in-flight requests finish and
 * answers them with "Connection: close", then calls done().  Only the
 * worker's polling stops; the listening sockets stay open for the other
 * workers (a reload's new generation).  as_http_server_shut_listeners()
 * is the daemon's final stop: see there.
 *
 * Ownership: the request and everything it points to belong to the
 * server and stay valid until as_http_reply() is called or the close
 * callback has run, whichever comes first.
 *
 * Details: 413 is used for every header limit (not 431: rspamd clients
 * know 413).  A timeout of 0 means none.  The idle timeout applies
 * between keep-alive requests.  EOF from the client while
 * its request is being handled counts as a disconnect (on_close), as in
 * rspamd: a client that half-closes after sending loses its reply; an
 * error reply is still sent to it.  While a request is handled, up to
 * 64 KiB of pipelined input is buffered, then reading pauses.  Handlers
 * must not free the server from inside a callback; done() may.
 */
#ifndef AS_HTTP_H
#define AS_HTTP_H

#include <stddef.h>

struct event_base;
struct as_http_server;
struct as_http_conn;

struct as_http_limits {
    size_t max_header_bytes;   /* request line + headers */
    size_t max_headers;        /* header lines */
    size_t max_body;           /* message size limit */
    double header_timeout;     /* seconds to receive the request head */
    double read_timeout;       /* seconds to receive a whole request */
    double idle_timeout;       /* keep-alive idle time */
    double write_timeout;
    size_t max_connections;    /* per worker; beyond it accept pauses */
    size_t max_per_addr;       /* per client address in this worker; 0: none */
};

struct as_http_header {
    const char *name;
    const char *value;
};

struct as_http_request {
    const char *method;        /* "GET", "POST"... */
    const char *path;          /* without query string, not decoded */
    const char *query;         /* after '?', not decoded, or NULL */
    const struct as_http_header *headers;
    size_t nheaders;
    const char *body;          /* contiguous, NUL-terminated for convenience */
    size_t body_len;
    int http_major, http_minor;
    const char *peer;          /* "1.2.3.4:5678", "[::1]:5678" or "unix" */
};

/* Case-insensitive lookup of the first header with this name, or NULL. */
const char *as_http_request_header(const struct as_http_request *req, const char *name);

typedef void (*as_http_handler)(struct as_http_conn *c, const struct as_http_request *req,
                                void *arg);

struct as_http_server *as_http_server_new(struct event_base *base,
                                          const struct as_http_limits *lim,
                                          as_http_handler handler, void *arg);
/* Starts accepting on an already listening, non-blocking socket.  The
 * server does not close fd (the master owns it). Returns 0 or -1. */
int as_http_server_add_listener(struct as_http_server *s, int fd);
void as_http_server_drain(struct as_http_server *s, void (*done)(void *), void *arg);
/* The daemon is going away (no generation follows): accepts every
 * connection the kernel already queued on the listening sockets, so none
 * of them is reset, then shuts the sockets down (shutdown(2) acts on the
 * socket every worker shares): from then on a connect is refused
 * (ECONNREFUSED) instead of being queued for nobody.  Drains too. */
void as_http_server_shut_listeners(struct as_http_server *s, void (*done)(void *), void *arg);
void as_http_server_free(struct as_http_server *s);   /* closes every connection */
size_t as_http_server_active(const struct as_http_server *s); /* requests in flight */

/* Sends the answer to the current request.  extra_headers is NULL or a
 * NULL-terminated array of "Name: value" strings.  Copies body. */
void as_http_reply(struct as_http_conn *c, int status, const char *content_type,
                   const char *body, size_t len, const char *const *extra_headers);
/* Called if the client goes away (or the server is freed) while a request
 * is waiting for its reply; after it the request must not be touched and
 * as_http_reply() must not be called.  Set from the handler. */
void as_http_conn_on_close(struct as_http_conn *c, void (*fn)(void *), void *arg);

#endif
