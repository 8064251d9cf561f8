/*
 * listen.h - listening sockets from "[PROTO@]ADDR" strings.
 *
 * PROTO names the protocol adapter that serves the socket (protocol.h:
 * "http"; milter and spamd next); without it the socket speaks http.
 * ADDR forms: "127.0.0.1:11333", "[::1]:11333", "*:11333" (all IPv4 and
 * IPv6), "localhost:11333" (resolved once, numerically, at startup),
 * "unix:/run/authscan.sock" or "unix:/path:0660" (mode, octal).  So
 * "http@127.0.0.1:11333" and "127.0.0.1:11333" are the same socket.
 * Sockets are opened by the master before forking workers, so every worker
 * accepts from the same kernel queue: a worker exiting or a reload never
 * refuses a connection.
 */
#ifndef AS_LISTEN_H
#define AS_LISTEN_H

#include <stddef.h>

struct as_config;
struct as_protocol;

struct as_listen_addr {
    char spec[256];          /* as given */
    char addr[256];          /* spec without "PROTO@" */
    char name[256];          /* canonical "PROTO@ADDR": one socket, one name */
    const struct as_protocol *proto;
    int is_unix;
    char path[108];          /* unix socket path */
    unsigned mode;           /* unix socket mode, 0 = default */
};

/* Parses spec.  Returns 0, or -1 with a message in err (an unknown
 * protocol lists the known ones). */
int as_listen_parse(const char *spec, struct as_listen_addr *out, char *err, size_t errlen);
/* Checks the config's `listen` list: every spec parses, and the list is
 * not empty.  Errors are "file:line: ..." of the listen entry.  Returns 0
 * or -1. */
int as_listen_check_config(const struct as_config *cfg, char *err, size_t errlen);
/* Opens, binds and listens; may open several sockets for "*" or a name
 * that resolves to several addresses.  Writes up to max fds, returns how
 * many, or -1 with err.  fds are non-blocking and close-on-exec is NOT set
 * (workers inherit them).  A stale unix socket file is replaced. */
int as_listen_open(const struct as_listen_addr *a, int backlog, int *fds, size_t max,
                   char *err, size_t errlen);

#endif
