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
 *   400 malformed request, 413 body over max_body / header block over
 *   max_header_bytes / more than max_headers header lines, 408 request
 *   not received within read_timeout, 411 POST without length, 501
 *   unsupported transfer coding.  Each is logged with the peer address.
 *
 * Draining (SIGTERM, reload): as_http_server_drain() stops accepting,
 * closes idle keep-alive connections, lets in-flight requests finish and
 * answers them with "Connection: close", then calls done().
 *
 * Ownership: the request and everything it points to belong to the
 * server and stay valid until as_http_reply() is called or the close
 * callback has run, whichever comes first.
 *
 * Details: 413 is used for every header limit (not 431: rspamd clients
 * know 413).  A timeout of 0 means none.  The idle timeout also applies to
 * a new connection before its first request.  EOF from the client while
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
    double read_timeout;       /* seconds to receive a whole request */
    double idle_timeout;       /* keep-alive idle time */
    double write_timeout;
    size_t max_connections;    /* per worker; beyond it accept pauses */
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
