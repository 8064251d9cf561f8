/*
 * http.c - see http.h.
 *
 * Each connection is a small state machine (the server, server.h, is told
 * the states it cares about with as_conn_set_state()):
 *
 *   IDLE     between requests (or freshly accepted); idle_timeout closes
 *            it silently (when draining, the server's short grace does),
 *            and a fresh connection that stays silent for header_timeout
 *            is closed silently too.  Stray CRLFs do not leave this state.
 *   READING  the first byte of a request arrived (http-parser's
 *            message_begin); the head must be complete by its deadline
 *            (header_timeout from accept for the first request, from the
 *            first byte for a keep-alive one) and read_timeout bounds the
 *            whole request.  Both are absolute deadlines: a client that
 *            drips a byte at a time cannot push them back.
 *   BUSY     the handler owns the request; the parser is paused so
 *            pipelined bytes wait in the input buffer, and reading stops
 *            at a small high-water mark so they cannot pile up.  Reading is
 *            not stopped completely, because EOF is how we notice a client
 *            that gave up (the handler's on_close).
 *   WRITING  a reply is being flushed (the server's write_timeout); after
 *            it the connection goes back to IDLE or is closed.
 *   CLOSING  a final reply (error, "Connection: close") was queued and the
 *            server's lingering close (as_conn_close) has the connection.
 *
 * Limits are enforced in the parser callbacks, before anything is stored,
 * so no request can make the server hold more than max_header_bytes of
 * headers plus max_body of body per connection.
 *
 * Strict framing.  Debian's libhttp-parser (2.9) is built with
 * HTTP_PARSER_STRICT=0 (upstream's default for the library), so it takes
 * a space before a header's colon as part of the name, bare LF line ends,
 * obs-fold continuation lines, any two bytes after chunk data as its CRLF
 * and anything after a chunk size as an "extension"; and it takes
 * "Transfer-Encoding: gzip, chunked" as chunked.  Behind a proxy that
 * reads such a request differently, each is request smuggling material
 * (RFC 9112 11.2).  So every byte is first run through frame_check(), a
 * small RFC 9112 framing checker, and only what it approved is given to
 * http-parser: the request line and header and trailer lines (CRLF only,
 * tchar names with the colon right after them, no obs-fold, no control
 * characters but HTAB in values), and chunk sizes, extensions and the CRLF
 * after chunk data.  The checker stops at the end of the head and at the
 * end of the message; at the end of the head http-parser's
 * on_headers_complete tells it how the body is framed.  If the two ever
 * disagree about where the message ends, the request is refused.  What
 * http-parser already refuses (two Content-Lengths, Content-Length with
 * Transfer-Encoding, a bad Content-Length) it keeps refusing; the
 * Transfer-Encoding value itself is checked in on_headers_complete.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <http_parser.h>

#include "net/http.h"
#include "util/log.h"
#include "net/protocol.h"
#include "net/server.h"
#include "util/util.h"

/* While a request is being handled, pipelined input is kept up to this
 * much; beyond it reading pauses until the reply is written. */
#define HTTP_PIPELINE_HIGH_WM (64 * 1024)

/* RFC 9112 3: a request-target longer than the server wants to parse is
 * answered 414.  Our targets are "/checkv2" plus an envelope query; 64 KiB
 * leaves room for hundreds of recipients. */
#define HTTP_MAX_REQUEST_LINE (64 * 1024)
/* A chunk-size line (size and extensions), which http-parser does not
 * count against any limit: without this an endless extension would be
 * read until read_timeout. */
#define HTTP_MAX_CHUNK_LINE 4096

enum conn_state { ST_IDLE, ST_READING, ST_BUSY, ST_WRITING, ST_CLOSING };

/* frame_check() states; see "Strict framing" at the top. */
enum frame_state {
    FR_LINE_START,     /* head or trailer: at the start of a line */
    FR_LINE,           /* in the request line or a field line */
    FR_LINE_LF,        /* CR seen, LF must follow */
    FR_HEAD_DONE,      /* end of head: on_headers_complete decides what follows */
    FR_BODY,           /* Content-Length body: fr_left bytes */
    FR_CHUNK_SIZE,     /* hex digits */
    FR_CHUNK_EXT,      /* after the size: BWS ";" extensions */
    FR_CHUNK_SIZE_LF,  /* CR after the size line seen */
    FR_CHUNK_DATA,     /* fr_left bytes of data */
    FR_CHUNK_DATA_CR,  /* the CRLF after chunk data */
    FR_CHUNK_DATA_LF,
    FR_DONE            /* the message ended; nothing more until the next */
};

struct as_http_conn {
    struct as_http *srv;
    struct as_conn *conn;    /* the server's connection */
    enum conn_state state;

    http_parser parser;
    int msg_done;            /* on_message_complete ran for this request */
    int keep_alive;          /* decided when the request completed */
    int err_status;          /* set by a callback that rejected the request */
    unsigned long served;    /* requests dispatched on this connection */
    double head_deadline;    /* as_now() values; 0: none */
    double read_deadline;

    /* frame_check() state for the request being read */
    enum frame_state fr;
    size_t fr_line_len;      /* bytes in the current line */
    unsigned long fr_lines;  /* lines of the head or trailer seen */
    int fr_colon;            /* the field line's colon was seen */
    int fr_trailer;          /* in the trailer section */
    int fr_ext_semi;         /* chunk line: ';' seen after the size */
    int fr_digits;           /* chunk size digits */
    unsigned long long fr_left;
    const char *err_msg;
    char err_buf[160];       /* err_msg when it is formatted */

    /* request under construction; see conn_reset_request() */
    size_t hdr_bytes;
    int hstate;              /* 0 nothing, 1 in a field name, 2 in a value */
    int headers_done;
    struct sbuf url;
    struct sbuf hstore;      /* names and values, NUL-separated */
    size_t *hoff;            /* name/value offsets into hstore, 2 per header */
    size_t nhdr, hoff_cap;
    struct as_http_header *headers;
    char *body;
    size_t body_len, body_cap;
    int body_chunked;
    struct as_http_request req;

    void (*on_close)(void *);
    void *on_close_arg;
};

struct as_http {
    struct as_http_limits lim;
    as_http_handler handler;
    void *arg;
};

static void conn_parse(struct as_http_conn *c);

/* ---------------------------------------------------------------- */
/* helpers                                                           */

static void set_state(struct as_http_conn *c, enum conn_state st)
{
    static const enum as_conn_state map[] = {
        [ST_IDLE] = AS_CONN_IDLE, [ST_READING] = AS_CONN_READING, [ST_BUSY] = AS_CONN_BUSY,
        [ST_WRITING] = AS_CONN_WRITING, [ST_CLOSING] = AS_CONN_WRITING,
    };
    c->state = st;
    as_conn_set_state(c->conn, map[st]);
}

static const char *status_reason(int status)
{
    const char *r = http_status_str((enum http_status)status);
    return (r && r[0] != '<') ? r : "Unknown";
}

const char *as_http_request_header(const struct as_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (as_strcaseeq(req->headers[i].name, name)) return req->headers[i].value;
    return NULL;
}

/* ---------------------------------------------------------------- */
/* parser callbacks                                                  */

static int reject(struct as_http_conn *c, int status, const char *msg)
{
    c->err_status = status;
    c->err_msg = msg;
    return -1;
}

static int hdr_account(struct as_http_conn *c, size_t n)
{
    c->hdr_bytes += n;
    if (c->hdr_bytes > c->srv->lim.max_header_bytes)
        return reject(c, 413, "request header block too large");
    return 0;
}

/* Arms the timer for the nearer of the request's deadlines. */
static void conn_arm_deadlines(struct as_http_conn *c)
{
    double next = 0;
    if (!c->headers_done && c->head_deadline > 0) next = c->head_deadline;
    if (c->read_deadline > 0 && (next == 0 || c->read_deadline < next)) next = c->read_deadline;
    if (next == 0) {
        as_conn_timer_set(c->conn, 0);
        return;
    }
    double left = next - as_now();
    as_conn_timer_set(c->conn, left > 0.001 ? left : 0.001);
}

static int on_message_begin(http_parser *p)
{
    struct as_http_conn *c = p->data;
    if (c->state == ST_IDLE) {
        const struct as_http_limits *lim = &c->srv->lim;
        double now = as_now();
        set_state(c, ST_READING);
        /* the first request's head is due header_timeout after accept, so
         * a connection cannot idle first and then start a slow request */
        c->head_deadline = lim->header_timeout > 0
                               ? (c->served ? now : as_conn_accepted(c->conn)) +
                                     lim->header_timeout
                               : 0;
        c->read_deadline = lim->read_timeout > 0 ? now + lim->read_timeout : 0;
        conn_arm_deadlines(c);
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct as_http_conn *c = p->data;
    if (hdr_account(c, len)) return -1;
    sbuf_add(&c->url, at, len);
    return 0;
}

/* Closes the header whose name/value is in progress (if any). */
static void header_finish(struct as_http_conn *c)
{
    if (c->hstate == 1) {        /* name without a value callback: empty value */
        sbuf_addc(&c->hstore, '\0');
        c->hoff[2 * (c->nhdr - 1) + 1] = c->hstore.len;
        sbuf_addc(&c->hstore, '\0');
    } else if (c->hstate == 2) {
        size_t start = c->hoff[2 * (c->nhdr - 1) + 1];
        while (c->hstore.len > start &&
               (c->hstore.data[c->hstore.len - 1] == ' ' || c->hstore.data[c->hstore.len - 1] == '\t'))
            c->hstore.len--;
        sbuf_addc(&c->hstore, '\0');
    }
    c->hstate = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct as_http_conn *c = p->data;
    /* ": " and CRLF count too, so many empty headers still add up */
    if (hdr_account(c, len + (c->hstate != 1 ? 4 : 0))) return -1;
    if (c->headers_done) return 0;   /* chunked trailer: ignored */
    if (c->hstate != 1) {
        header_finish(c);
        if (c->nhdr >= c->srv->lim.max_headers) return reject(c, 413, "too many request headers");
        if (c->nhdr == c->hoff_cap) {
            c->hoff_cap = c->hoff_cap ? 2 * c->hoff_cap : 16;
            c->hoff = xrealloc(c->hoff, c->hoff_cap * 2 * sizeof *c->hoff);
        }
        c->hoff[2 * c->nhdr] = c->hstore.len;
        c->hoff[2 * c->nhdr + 1] = 0;
        c->nhdr++;
        c->hstate = 1;
    }
    sbuf_add(&c->hstore, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct as_http_conn *c = p->data;
    if (hdr_account(c, len)) return -1;
    if (c->headers_done) return 0;
    if (c->hstate != 2) {
        if (c->hstate != 1) return reject(c, 400, "header value without a name");
        sbuf_addc(&c->hstore, '\0');
        c->hoff[2 * (c->nhdr - 1) + 1] = c->hstore.len;
        c->hstate = 2;
    }
    sbuf_add(&c->hstore, at, len);
    return 0;
}

/* RFC 9112 6.1: the only transfer coding we take is chunked, once, alone.
 * http-parser only looks at the last coding ("gzip, chunked" is chunked to
 * it, and the gzip-coded bytes would be scanned as the message), and
 * looks at one Transfer-Encoding field.  Empty list elements are ignored
 * (RFC 9110 5.6.1). */
static int transfer_coding_check(struct as_http_conn *c)
{
    int nte = 0, nchunked = 0;
    for (size_t i = 0; i < c->nhdr; i++) {
        if (!as_strcaseeq(c->headers[i].name, "Transfer-Encoding")) continue;
        nte++;
        for (const char *v = c->headers[i].value; *v;) {
            size_t n = strcspn(v, ",");
            const char *b = v, *e = v + n;
            while (b < e && (*b == ' ' || *b == '\t')) b++;
            while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
            if (e > b) {
                if (e - b != 7 || !as_memcaseeq(b, "chunked", 7)) {
                    snprintf(c->err_buf, sizeof c->err_buf, "unsupported transfer coding "
                             "'%.*s' (only chunked)", (int)(e - b > 40 ? 40 : e - b), b);
                    return reject(c, 501, c->err_buf);
                }
                nchunked++;
            }
            v += n;
            if (*v == ',') v++;
        }
    }
    if (nte == 0) {
        /* http-parser marks chunked only from the field: cannot differ */
        return c->body_chunked ? reject(c, 400, "unparsable request") : 0;
    }
    if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        return reject(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (nchunked != 1)
        return reject(c, 400, nchunked ? "chunked transfer coding applied more than once"
                                       : "empty Transfer-Encoding");
    if (!c->body_chunked) return reject(c, 400, "unparsable request");
    return 0;
}

/* Splits the request target into path and query.  The absolute form
 * ("http://host/path") is accepted as RFC 7230 5.3.2 requires. */
static void request_split_url(struct as_http_conn *c)
{
    sbuf_addc(&c->url, '\0');      /* make sure data is allocated */
    char *u = c->url.data;
    if (as_memcaseeq(u, "http://", 7) || as_memcaseeq(u, "https://", 8)) {
        /* the authority ends at the first '/', '?' or '#' (RFC 3986 3.2) */
        char *auth = strstr(u, "//") + 2;
        char *end = auth + strcspn(auth, "/?#");
        if (*end == '/') {
            u = end;
        } else {
            /* no path: "http://h?ip=1" is path "/" with query "ip=1";
             * the authority's last byte becomes the path's '/' */
            memmove(auth, end, strlen(end) + 1);
            auth[-1] = '/';
            u = auth - 1;
        }
    }
    char *q = strchr(u, '?');
    if (q) *q++ = '\0';
    char *frag = strchr(q ? q : u, '#');
    if (frag) *frag = '\0';
    c->req.path = u;
    c->req.query = q;
}

static int on_headers_complete(http_parser *p)
{
    struct as_http_conn *c = p->data;
    const struct as_http_limits *lim = &c->srv->lim;
    header_finish(c);
    c->headers_done = 1;

    c->headers = xrealloc(c->headers, (c->nhdr ? c->nhdr : 1) * sizeof *c->headers);
    for (size_t i = 0; i < c->nhdr; i++) {
        c->headers[i].name = c->hstore.data + c->hoff[2 * i];
        c->headers[i].value = c->hstore.data + c->hoff[2 * i + 1];
    }
    request_split_url(c);
    c->req.method = http_method_str((enum http_method)p->method);
    c->req.headers = c->headers;
    c->req.nheaders = c->nhdr;
    c->req.http_major = p->http_major;
    c->req.http_minor = p->http_minor;
    c->req.peer = as_conn_peer(c->conn);

    int has_length = (p->flags & F_CONTENTLENGTH) != 0;
    c->body_chunked = (p->flags & F_CHUNKED) != 0;
    if (p->http_major != 1) return reject(c, 505, "HTTP version not supported (only HTTP/1.x)");
    if (transfer_coding_check(c) < 0) return -1;
    if (has_length && p->content_length > lim->max_body) {
        /* the only body this server takes is the message to scan */
        snprintf(c->err_buf, sizeof c->err_buf, "message of %llu bytes is larger than the "
                 "limit of %zu bytes (limits.max_message_size)",
                 (unsigned long long)p->content_length, lim->max_body);
        return reject(c, 413, c->err_buf);
    }
    if (!has_length && !c->body_chunked &&
        (p->method == HTTP_POST || p->method == HTTP_PUT))
        return reject(c, 411, "length required");
    if (has_length && p->content_length > 0) {
        c->body_cap = (size_t)p->content_length;
        c->body = xmalloc(c->body_cap + 1);
    }

    /* RFC 7231 5.1.1: a client that sent Expect: 100-continue waits for
     * this before sending the body; the limits above were checked first,
     * so an oversized message is refused without being transferred. */
    const char *expect = as_http_request_header(&c->req, "Expect");
    if (expect && as_strcaseeq(expect, "100-continue") && p->http_major == 1 &&
        p->http_minor >= 1 && (c->body_cap > 0 || c->body_chunked))
        as_conn_write(c->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);

    /* tell frame_check() how the body is framed */
    c->fr_left = 0;
    c->fr_digits = 0;
    c->fr_ext_semi = 0;
    c->fr_line_len = 0;
    if (c->body_chunked) {
        c->fr = FR_CHUNK_SIZE;
    } else if (has_length && p->content_length > 0) {
        c->fr = FR_BODY;
        c->fr_left = p->content_length;
    } else {
        c->fr = FR_DONE;
    }
    conn_arm_deadlines(c);    /* the head is in: only read_timeout is left */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct as_http_conn *c = p->data;
    size_t max = c->srv->lim.max_body;
    if (len > max || c->body_len > max - len) {
        snprintf(c->err_buf, sizeof c->err_buf, "message is larger than the limit of %zu bytes "
                 "(limits.max_message_size)", max);
        return reject(c, 413, c->err_buf);
    }
    if (c->body_len + len > c->body_cap) {
        /* chunked (or a parser surprise): grow geometrically, within max */
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + len) cap *= 2;
        if (cap > max) cap = max;
        c->body = xrealloc(c->body, cap + 1);
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct as_http_conn *c = p->data;
    c->msg_done = 1;
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    /* stop here: pipelined bytes stay unparsed until the reply is out */
    http_parser_pause(p, 1);
    return 0;
}

/* ---------------------------------------------------------------- */
/* strict framing (see the top)                                      */

/* RFC 9110 5.6.2 */
static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int is_ctl(unsigned char ch) { return ch < 0x20 || ch == 0x7f; }

/* Checks data against RFC 9112's framing and sets *ok to how many of its
 * bytes may go to http-parser: all of them, or up to the end of the head
 * (on_headers_complete then sets the body framing) or of the message.
 * Returns 0, or -1 after reject(). */
static int frame_check(struct as_http_conn *c, const char *data, size_t len, size_t *ok)
{
    const unsigned char *start = (const unsigned char *)data, *p = start, *end = start + len;
    while (p < end) {
        unsigned char ch = *p;
        switch (c->fr) {
        case FR_LINE_START:
            c->fr_line_len = 0;
            c->fr_colon = 0;
            if (ch == '\r') {
                c->fr = FR_LINE_LF;
                p++;
                break;
            }
            /* RFC 9112 5.2: obs-fold in a request is refused with 400;
             * 2.2: so is whitespace before the first field */
            if (c->fr_lines > 0 && (ch == ' ' || ch == '\t'))
                return reject(c, 400, "header line starting with whitespace (obs-fold)");
            c->fr = FR_LINE;
            break;
        case FR_LINE:
            if (ch == '\r') {
                if (c->fr_lines > 0 && !c->fr_colon) return reject(c, 400, "header line without a colon");
                c->fr = FR_LINE_LF;
                p++;
                break;
            }
            if (ch == '\n') return reject(c, 400, "bare LF line end (HTTP wants CRLF)");
            c->fr_line_len++;
            if (c->fr_lines == 0) {
                if (is_ctl(ch)) return reject(c, 400, "control character in the request line");
                if (c->fr_line_len > HTTP_MAX_REQUEST_LINE)
                    return reject(c, 414, "request line longer than 64 KiB");
            } else if (!c->fr_colon) {
                if (ch == ':') {
                    if (c->fr_line_len == 1) return reject(c, 400, "empty header name");
                    c->fr_colon = 1;
                } else if (ch == ' ' || ch == '\t') {
                    /* RFC 9112 5.1: MUST be refused with 400 */
                    return reject(c, 400, "whitespace between a header name and its colon");
                } else if (!is_tchar(ch)) {
                    return reject(c, 400, "invalid character in a header name");
                }
            } else if (is_ctl(ch) && ch != '\t') {
                return reject(c, 400, "control character in a header value");
            }
            p++;
            break;
        case FR_LINE_LF:
            if (ch != '\n') return reject(c, 400, "CR not followed by LF");
            p++;
            if (c->fr_line_len > 0 || c->fr_colon) {
                c->fr_lines++;
                c->fr = FR_LINE_START;
            } else if (c->fr_lines == 0) {
                c->fr = FR_LINE_START;     /* CRLF before the request line (RFC 9112 2.2) */
            } else if (c->fr_trailer) {
                c->fr = FR_DONE;
            } else {
                c->fr = FR_HEAD_DONE;
            }
            break;
        case FR_HEAD_DONE:
        case FR_DONE:
            *ok = (size_t)(p - start);
            return 0;
        case FR_BODY:
        case FR_CHUNK_DATA: {
            size_t n = (size_t)(end - p);
            if (n > c->fr_left) n = (size_t)c->fr_left;
            p += n;
            c->fr_left -= n;
            if (c->fr_left == 0) c->fr = c->fr == FR_BODY ? FR_DONE : FR_CHUNK_DATA_CR;
            break;
        }
        case FR_CHUNK_SIZE:
        case FR_CHUNK_EXT:
            if (ch == '\r') {
                if (c->fr_digits == 0) return reject(c, 400, "invalid chunk size");
                if (c->fr == FR_CHUNK_EXT && c->fr_ext_semi != 2)
                    return reject(c, 400, c->fr_ext_semi ? "empty chunk extension"
                                                         : "whitespace after a chunk size");
                c->fr = FR_CHUNK_SIZE_LF;
                p++;
                break;
            }
            if (++c->fr_line_len > HTTP_MAX_CHUNK_LINE)
                return reject(c, 400, "chunk size line longer than 4096 bytes");
            if (c->fr == FR_CHUNK_SIZE && as_hexval(ch) >= 0) {
                if (c->fr_left > (ULLONG_MAX >> 4)) return reject(c, 400, "chunk size too large");
                c->fr_left = c->fr_left * 16 + (unsigned)as_hexval(ch);
                c->fr_digits++;
                p++;
                break;
            }
            if (c->fr_digits == 0) return reject(c, 400, "invalid chunk size");
            if (ch == '\n') return reject(c, 400, "bare LF line end (HTTP wants CRLF)");
            if (is_ctl(ch) && ch != '\t') return reject(c, 400, "control character in a chunk extension");
            /* RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] );
             * fr_ext_semi: 0 before the first ';', 1 right after a ';', 2 in one */
            c->fr = FR_CHUNK_EXT;
            if (c->fr_ext_semi == 0) {
                if (ch == ';') c->fr_ext_semi = 1;
                else if (ch != ' ' && ch != '\t') return reject(c, 400, "invalid chunk size");
            } else if (c->fr_ext_semi == 1) {
                if (is_tchar(ch)) c->fr_ext_semi = 2;
                else if (ch != ' ' && ch != '\t') return reject(c, 400, "invalid chunk extension");
            } else if (ch == ';') {
                c->fr_ext_semi = 1;
            }
            p++;
            break;
        case FR_CHUNK_SIZE_LF:
            if (ch != '\n') return reject(c, 400, "CR not followed by LF");
            p++;
            if (c->fr_left == 0) {         /* last chunk: trailer fields, then CRLF */
                c->fr_trailer = 1;
                c->fr_lines = 1;
                c->fr = FR_LINE_START;
            } else {
                c->fr = FR_CHUNK_DATA;
            }
            break;
        case FR_CHUNK_DATA_CR:
        case FR_CHUNK_DATA_LF:
            if (ch != (c->fr == FR_CHUNK_DATA_CR ? '\r' : '\n'))
                return reject(c, 400, "chunk data not followed by CRLF");
            p++;
            if (c->fr == FR_CHUNK_DATA_CR) {
                c->fr = FR_CHUNK_DATA_LF;
            } else {
                c->fr = FR_CHUNK_SIZE;
                c->fr_left = 0;
                c->fr_digits = 0;
                c->fr_ext_semi = 0;
                c->fr_line_len = 0;
            }
            break;
        }
    }
    *ok = len;
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------- */
/* connection life                                                   */

/* Forgets the previous request; keeps buffers' memory for the next. */
static void conn_reset_request(struct as_http_conn *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->msg_done = 0;
    c->keep_alive = 0;
    c->err_status = 0;
    c->err_msg = NULL;
    c->hdr_bytes = 0;
    c->hstate = 0;
    c->headers_done = 0;
    sbuf_reset(&c->url);
    sbuf_reset(&c->hstore);
    c->nhdr = 0;
    free(c->body);
    c->body = NULL;
    c->body_len = c->body_cap = 0;
    c->body_chunked = 0;
    memset(&c->req, 0, sizeof c->req);
    c->on_close = NULL;
    c->on_close_arg = NULL;
    c->head_deadline = c->read_deadline = 0;
    c->fr = FR_LINE_START;
    c->fr_line_len = 0;
    c->fr_lines = 0;
    c->fr_colon = 0;
    c->fr_trailer = 0;
    c->fr_ext_semi = 0;
    c->fr_digits = 0;
    c->fr_left = 0;
}


/* The connection ends after this reply: the server flushes it and closes
 * the connection lingering (server.h). */
static void conn_begin_close(struct as_http_conn *c)
{
    set_state(c, ST_CLOSING);
    as_conn_close(c->conn);
}

/* Out of memory is as_oom()'s, as for every other allocation. */
static void out_add(struct evbuffer *out, const void *p, size_t n)
{
    if (evbuffer_add(out, p, n) < 0) as_oom();
}

static void reply_write(struct as_http_conn *c, int status, const char *content_type,
                        const char *body, size_t len, const char *const *extra, int keep)
{
    /* composed aside and moved in at once (no copy), see as_conn_send() */
    struct evbuffer *out = evbuffer_new();
    if (!out) as_oom();
    /* appended piece by piece: four evbuffer_add_printf calls cost more
     * than the rest of the reply (docs/performance.md, issue 21) */
    int minor = (c->req.http_major == 1 && c->req.http_minor == 0) ? 0 : 1;
    char num[AS_U64_DEC_MAX + 2];
    size_t n = as_u64_dec(num, status > 0 ? (unsigned)status : 0);
    num[n++] = ' ';
    out_add(out, minor ? "HTTP/1.1 " : "HTTP/1.0 ", 9);
    out_add(out, num, n);
    const char *reason = status_reason(status);
    out_add(out, reason, strlen(reason));
    if (keep)
        out_add(out, "\r\nConnection: keep-alive\r\n", 26);
    else
        out_add(out, "\r\nConnection: close\r\n", 21);
    if (content_type) {
        out_add(out, "Content-Type: ", 14);
        out_add(out, content_type, strlen(content_type));
        out_add(out, "\r\n", 2);
    }
    out_add(out, "Content-Length: ", 16);
    n = as_u64_dec(num, len);
    num[n++] = '\r';
    num[n++] = '\n';
    out_add(out, num, n);
    for (size_t i = 0; extra && extra[i]; i++) {
        /* a CR or LF would let a header value forge more headers */
        if (strpbrk(extra[i], "\r\n")) {
            as_log(AS_LOG_ERR, "http: reply header with a line break dropped");
            continue;
        }
        out_add(out, extra[i], strlen(extra[i]));
        out_add(out, "\r\n", 2);
    }
    out_add(out, "\r\n", 2);
    /* RFC 7230 3.3: a reply to HEAD has the length but not the body */
    if (len && c->parser.method != HTTP_HEAD) out_add(out, body, len);
    as_conn_send(c->conn, out);
    evbuffer_free(out);
}

/* An error the server answers itself: JSON body, then close. */
static void conn_error(struct as_http_conn *c, int status, const char *msg)
{
    as_conn_log_limited(c->conn, status == 408 ? AS_SERVER_LOG_TIMEOUT : AS_SERVER_LOG_BAD_REQUEST,
                        "http: %s: %d %s", as_conn_peer(c->conn), status, msg);
    struct sbuf b = { 0 };
    sbuf_adds(&b, "{\"error\":");
    as_json_string(&b, msg, strlen(msg));
    sbuf_adds(&b, "}");
    reply_write(c, status, "application/json", b.data, b.len, NULL, 0);
    sbuf_free(&b);
    /* whatever arrived before the error is dropped there: we will not
     * parse it */
    conn_begin_close(c);
}

static int errno_status(enum http_errno e)
{
    switch (e) {
    case HPE_HEADER_OVERFLOW: return 413;
    case HPE_INVALID_TRANSFER_ENCODING: return 501;   /* transfer_coding_check() names it first */
    default: return 400;
    }
}

static void conn_dispatch(struct as_http_conn *c)
{
    struct as_http *h = c->srv;
    if (c->body) c->body[c->body_len] = '\0';
    c->req.body = c->body ? c->body : "";
    c->req.body_len = c->body_len;
    set_state(c, ST_BUSY);
    c->served++;
    as_conn_timer_set(c->conn, 0);
    as_conn_read_limit(c->conn, HTTP_PIPELINE_HIGH_WM);
    h->handler(c, &c->req, h->arg);
}

/* Runs the parser over buffered input while a request is being read. */
static void conn_parse(struct as_http_conn *c)
{
    struct evbuffer *in = as_conn_input(c->conn);
    while (c->state == ST_IDLE || c->state == ST_READING) {
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1) return;
        size_t ok = 0;
        if (frame_check(c, v.iov_base, v.iov_len, &ok) < 0) {
            conn_error(c, c->err_status, c->err_msg);
            return;
        }
        if (ok == 0) {
            /* the framing check saw the head or the message end where
             * http-parser did not: refuse rather than guess */
            conn_error(c, 400, "unparsable request");
            return;
        }
        size_t n = http_parser_execute(&c->parser, &parser_settings, v.iov_base, ok);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->err_status) {
            conn_error(c, c->err_status, c->err_msg);
            return;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            conn_error(c, errno_status(e), http_errno_description(e));
            return;
        }
        evbuffer_drain(in, n);
        if (c->msg_done) {
            conn_dispatch(c);
            return;
        }
        if (n < ok) {              /* cannot happen without an error or pause */
            conn_error(c, 400, "unparsable request");
            return;
        }
    }
}

/* ---------------------------------------------------------------- */
/* the protocol callbacks (protocol.h)                               */

void *as_http_conn_open(struct as_http *h, struct as_conn *conn)
{
    struct as_http_conn *c = xcalloc(1, sizeof *c);
    c->srv = h;
    c->conn = conn;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    conn_reset_request(c);
    c->state = ST_IDLE;
    /* a fresh connection owes us its request head: header_timeout (the
     * keep-alive idle_timeout is for clients that have been served) */
    double first = h->lim.header_timeout;
    if (first <= 0 || (h->lim.idle_timeout > 0 && h->lim.idle_timeout < first))
        first = h->lim.idle_timeout;
    as_conn_timer_set(conn, first);
    return c;
}

void as_http_conn_read(void *cs)
{
    struct as_http_conn *c = cs;
    /* BUSY, WRITING: pipelined, parsed after the reply (the read limit
     * bounds it) */
    if (c->state == ST_IDLE || c->state == ST_READING) conn_parse(c);
}

void as_http_conn_flushed(void *cs)
{
    struct as_http_conn *c = cs;
    if (c->state != ST_WRITING) return;   /* e.g. "100 Continue" flushed */
    if (!c->keep_alive || as_conn_draining(c->conn)) {
        conn_begin_close(c);
        return;
    }
    conn_reset_request(c);
    set_state(c, ST_IDLE);
    as_conn_read_limit(c->conn, 0);
    as_conn_timer_set(c->conn, c->srv->lim.idle_timeout);
    conn_parse(c);    /* a pipelined request may be waiting */
}

void as_http_conn_eof(void *cs)
{
    struct as_http_conn *c = cs;
    const char *peer = as_conn_peer(c->conn);
    switch (c->state) {
    case ST_READING:
        if (c->headers_done && c->body_cap && !c->body_chunked)
            as_log(AS_LOG_INFO, "http: %s: connection closed after %zu of %zu body bytes",
                   peer, c->body_len, c->body_cap);
        else
            as_log(AS_LOG_INFO, "http: %s: connection closed in the middle of a request", peer);
        as_conn_abort(c->conn);
        return;
    case ST_BUSY:
        /* EOF and a vanished client look the same; a half-closing
         * client loses its reply (as with rspamd) */
        as_log(AS_LOG_INFO, "http: %s: client went away before the reply", peer);
        as_conn_abort(c->conn);
        return;
    case ST_WRITING:
        c->keep_alive = 0;     /* finish the reply, then close */
        return;
    case ST_IDLE:
    case ST_CLOSING:
        as_conn_abort(c->conn);
        return;
    }
}

void as_http_conn_timeout(void *cs)
{
    struct as_http_conn *c = cs;
    const struct as_http_limits *lim = &c->srv->lim;
    switch (c->state) {
    case ST_READING:
        if (!c->headers_done && c->head_deadline > 0 &&
            (c->read_deadline == 0 || c->head_deadline <= c->read_deadline)) {
            snprintf(c->err_buf, sizeof c->err_buf, "request head not received within %gs "
                     "(limits.header_timeout)", lim->header_timeout);
        } else {
            snprintf(c->err_buf, sizeof c->err_buf, "request not received within %gs "
                     "(limits.read_timeout)", lim->read_timeout);
        }
        conn_error(c, 408, c->err_buf);
        /* the 408 gets write_timeout to be flushed, then the linger */
        break;
    case ST_IDLE:
        if (c->served == 0 && !as_conn_draining(c->conn)) {
            int by_header = lim->header_timeout > 0 &&
                            (lim->idle_timeout <= 0 || lim->header_timeout <= lim->idle_timeout);
            as_conn_log_limited(c->conn, AS_SERVER_LOG_SILENT,
                                "http: %s: closed: no request within %gs (%s)",
                                as_conn_peer(c->conn),
                                by_header ? lim->header_timeout : lim->idle_timeout,
                                by_header ? "limits.header_timeout" : "limits.idle_timeout");
        }
        as_conn_abort(c->conn);
        break;
    case ST_CLOSING:
    case ST_BUSY:
    case ST_WRITING:
        as_conn_abort(c->conn);
        break;
    }
}

void as_http_conn_close(void *cs)
{
    struct as_http_conn *c = cs;
    if (c->state == ST_BUSY) {
        c->state = ST_CLOSING;     /* as_http_reply() from on_close is refused */
        if (c->on_close) c->on_close(c->on_close_arg);
    }
    sbuf_free(&c->url);
    sbuf_free(&c->hstore);
    free(c->hoff);
    free(c->headers);
    free(c->body);
    free(c);
}

size_t as_http_refusal(char *buf, size_t len, const char *why)
{
    struct sbuf b = { 0 };
    sbuf_adds(&b, "{\"error\":");
    as_json_string(&b, why, strlen(why));
    sbuf_adds(&b, "}");
    int n = snprintf(buf, len, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     b.len, b.data);
    sbuf_free(&b);
    return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

static void *framing_open(void *ps, struct as_conn *conn) { return as_http_conn_open(ps, conn); }

const struct as_protocol as_http_framing = {
    .name = "http",
    .open = framing_open,
    .read = as_http_conn_read,
    .flushed = as_http_conn_flushed,
    .eof = as_http_conn_eof,
    .timeout = as_http_conn_timeout,
    .close = as_http_conn_close,
    .refusal = as_http_refusal,
};

/* ---------------------------------------------------------------- */
/* public API                                                        */

struct as_http *as_http_new(const struct as_http_limits *lim, as_http_handler handler, void *arg)
{
    struct as_http *h = xcalloc(1, sizeof *h);
    h->lim = *lim;
    h->handler = handler;
    h->arg = arg;
    /* http-parser has its own process-wide cap (80 KiB); ours must win */
    if (lim->max_header_bytes > 80 * 1024)
        http_parser_set_max_header_size((uint32_t)(lim->max_header_bytes > UINT32_MAX / 2
                                                       ? UINT32_MAX
                                                       : lim->max_header_bytes * 2));
    return h;
}

void as_http_free(struct as_http *h) { free(h); }

void as_http_reply(struct as_http_conn *c, int status, const char *content_type,
                   const char *body, size_t len, const char *const *extra_headers)
{
    if (c->state != ST_BUSY) {
        as_log(AS_LOG_ERR, "http: %s: reply without a pending request ignored",
               as_conn_peer(c->conn));
        return;
    }
    int keep = c->keep_alive && !as_conn_draining(c->conn);
    reply_write(c, status, content_type, body, len, extra_headers, keep);
    c->keep_alive = keep;
    c->on_close = NULL;
    /* the body can be large: give it back now, not at the next request */
    free(c->body);
    c->body = NULL;
    set_state(c, ST_WRITING);
}

char *as_http_conn_take_body(struct as_http_conn *c, size_t *len)
{
    char *b = c->body;
    *len = b ? c->body_len : 0;
    c->body = NULL;
    c->body_len = c->body_cap = 0;
    return b;
}

void as_http_conn_on_close(struct as_http_conn *c, void (*fn)(void *), void *arg)
{
    c->on_close = fn;
    c->on_close_arg = arg;
}
