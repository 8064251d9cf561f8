/*
 * fuzz_http.c - libFuzzer target for the HTTP request reader
 * (core/net/http.c: the strict framing check, http-parser, the limits)
 * and the query-string decoder (core/net/http_adapter.c).
 *
 * The input is what a client sends on one connection: the real server
 * (core/net/server.c) accepts it on an abstract unix socket, the client
 * writes the input, half-closes and reads until the server closes.  The
 * handler answers each request at once, after splitting its query string
 * at '&' and '=' and decoding every part as the /checkv2 adapter does.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/event.h>
#include "net/http.h"
#include "net/http_adapter.h"
#include "net/server.h"
#include "util/log.h"
#include "util/util.h"

static struct event_base *base;
static struct sockaddr_un addr;
static socklen_t addrlen;

static void decode(const char *s, size_t len)
{
    struct sbuf out = {0};
    as_http_adapter_url_decode(s, len, &out);
    if (!out.data || strlen(out.data) > len) abort();
    sbuf_free(&out);
}

static void handler(struct as_http_conn *c, const struct as_http_request *req, void *arg)
{
    (void)arg;
    if (!req->method || !req->path) abort();
    if (req->query) {
        const char *q = req->query;
        while (*q) {
            size_t n = strcspn(q, "&");
            const char *eq = memchr(q, '=', n);
            decode(q, eq ? (size_t)(eq - q) : n);
            if (eq) decode(eq + 1, n - (size_t)(eq + 1 - q));
            q += n;
            if (*q) q++;
        }
    }
    for (size_t i = 0; i < req->nheaders; i++)
        if (!req->headers[i].name || !req->headers[i].value) abort();
    (void)as_http_request_header(req, "Content-Length");
    as_http_reply(c, 200, "text/plain", req->body, req->body_len, NULL);
}

static void setup(void)
{
    as_log_set_level(AS_LOG_ERR);
    base = event_base_new();
    struct as_server_limits slim = { 0, 0, 1.0, 0 };
    struct as_server *srv = as_server_new(base, &slim);
    struct as_http_limits lim = { 16384, 100, 1 << 20, 0, 0, 0 };
    struct as_http *h = as_http_new(&lim, handler, NULL);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "authscan-fuzz-http-%d",
                     (int)getpid());
    addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, addrlen) < 0 || listen(fd, 16) < 0 ||
        as_server_add_listener(srv, fd, &as_http_framing, h) < 0) {
        perror("fuzz_http setup");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (!base) setup();
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&addr, addrlen) < 0) abort();
    size_t off = 0;
    int shut = 0;
    char rbuf[65536];
    for (int i = 0; i < 100000; i++) {
        if (off < len) {
            ssize_t w = send(c, buf + off, len - off, MSG_NOSIGNAL);
            if (w > 0) off += (size_t)w;
            else if (w < 0 && errno != EAGAIN) off = len;   /* the server closed early */
        } else if (!shut) {
            shutdown(c, SHUT_WR);
            shut = 1;
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        ssize_t r = read(c, rbuf, sizeof rbuf);
        if (r == 0 || (r < 0 && errno != EAGAIN)) break;
    }
    close(c);
    for (int i = 0; i < 4; i++) event_base_loop(base, EVLOOP_NONBLOCK);
    return 0;
}
