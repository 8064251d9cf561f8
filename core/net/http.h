/*
 * http.h - HTTP/1.0 and 1.1 request framing, as a protocol adapter's
 * connection side (protocol.h).
 *
 * as_http_framing is an as_protocol whose connections parse requests with
 * http-parser (Debian libhttp-parser) behind a strict RFC 9112 framing
 * check, enforce the request limits, and hand each complete request to
 * the handler given to as_http_new().  The handler answers later,
 * possibly after asynchronous work, with as_http_reply().  Keep-alive and
 * pipelining are supported; the next request on a connection is not
 * parsed before the current one is answered, so replies come back in
 * order.  The connection server (server.h) accepts, limits connections,
 * drains and closes; the http adapter (http_adapter.h) is the handler
 * that maps /checkv2, /ping and /stat onto scan sessions.
 *
 * Errors answered here (the handler never sees them):
 *   400 malformed request, including everything a strict reading of RFC
 *   9112 refuses (see "Strict framing" in http.c); 413 body over max_body /
 *   header block over max_header_bytes / more than max_headers header
 *   lines; 414 request line over 64 KiB; 408 request head not received
 *   within header_timeout, or the whole request not within read_timeout;
 *   411 POST without length; 501 a transfer coding other than chunked;
 *   505 an HTTP major version other than 1.  Each closes the connection.
 *   Log lines about them are rate-limited (server.h).  A connection over
 *   limits.max_connections_per_ip is answered 503 (as_http_refusal).
 *
 * Deadlines: a connection gets header_timeout from accept (keep-alive:
 * from the first byte of the next request) to deliver its request head;
 * bytes that trickle in do not extend it.
 *
 * Draining: requests in flight are answered with "Connection: close";
 * idle keep-alive connections are closed by the server after a short
 * grace.
 *
 * Ownership: the request and everything it points to belong to the
 * connection and stay valid until as_http_reply() is called or the close
 * callback has run, whichever comes first.
 *
 * Details: 413 is used for every header limit (not 431: rspamd clients
 * know 413).  A timeout of 0 means none.  The idle timeout applies
 * between keep-alive requests.  EOF from the client while
 * its request is being handled counts as a disconnect (on_close), as in
 * rspamd: a client that half-closes after sending loses its reply; an
 * error reply is still sent to it.  While a request is handled, up to
 * 64 KiB of pipelined input is buffered, then reading pauses.
 */
#ifndef AS_HTTP_H
#define AS_HTTP_H

#include <stddef.h>

struct as_http;
struct as_http_conn;
struct as_protocol;

struct as_http_limits {
    size_t max_header_bytes;   /* request line + headers */
    size_t max_headers;        /* header lines */
    size_t max_body;           /* message size limit */
    double header_timeout;     /* seconds to receive the request head */
    double read_timeout;       /* seconds to receive a whole request */
    double idle_timeout;       /* keep-alive idle time */
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

/* The per-worker state of the framing, for as_server_add_listener(s, fd,
 * &as_http_framing, h): every request of those sockets goes to handler. */
struct as_http *as_http_new(const struct as_http_limits *lim, as_http_handler handler, void *arg);
void as_http_free(struct as_http *h);   /* after the server that uses it */
extern const struct as_protocol as_http_framing;

/* The framing's protocol callbacks (protocol.h), for an adapter that
 * wraps it with its own start(): open takes the as_http instead of ps. */
struct as_conn;
void *as_http_conn_open(struct as_http *h, struct as_conn *conn);
void as_http_conn_read(void *cs);
void as_http_conn_flushed(void *cs);
void as_http_conn_eof(void *cs);
void as_http_conn_timeout(void *cs);
void as_http_conn_close(void *cs);
/* The canned 503 for a connection refused before it was read. */
size_t as_http_refusal(char *buf, size_t len, const char *why);

/* Sends the answer to the current request.  extra_headers is NULL or a
 * NULL-terminated array of "Name: value" strings.  Copies body. */
void as_http_reply(struct as_http_conn *c, int status, const char *content_type,
                   const char *body, size_t len, const char *const *extra_headers);
/* Takes the current request's body (malloc'd, NUL-terminated; NULL when
 * there is none): the caller frees it.  req->body keeps pointing to it,
 * so it must outlive the handling of the request.  Saves a copy of the
 * message when a scan keeps it past the reply (finish hooks). */
char *as_http_conn_take_body(struct as_http_conn *c, size_t *len);
/* Called if the client goes away (or the server is freed) while a request
 * is waiting for its reply; after it the request must not be touched and
 * as_http_reply() must not be called.  Set from the handler. */
void as_http_conn_on_close(struct as_http_conn *c, void (*fn)(void *), void *arg);

#endif
