/*
 * listen.c - see listen.h.
 *
 * TCP specs are kept as text in as_listen_addr.spec and split again by
 * as_listen_open(): parsing only validates, so that "localhost" is
 * resolved when the sockets are opened (once, at startup) and not at
 * configuration-check time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/config.h"
#include "net/listen.h"
#include "util/log.h"
#include "net/protocol.h"
#include "util/util.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) AS_PRINTF(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Splits "host:port", "[v6]:port" or "*:port".  host gets the bare host
 * (no brackets); *bracketed tells whether it was an IPv6 literal. */
static int listen_split(const char *spec, char *host, size_t hostlen, unsigned *port,
                        int *bracketed, char *err, size_t errlen)
{
    const char *colon;
    size_t hlen;
    *bracketed = 0;
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb) return fail(err, errlen, "listen \"%s\": missing ']'", spec);
        if (rb[1] != ':') return fail(err, errlen, "listen \"%s\": expected ':PORT' after ']'", spec);
        colon = rb + 1;
        hlen = (size_t)(rb - spec - 1);
        spec++;
        *bracketed = 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon) return fail(err, errlen, "listen \"%s\": expected ADDR:PORT", spec);
        hlen = (size_t)(colon - spec);
        if (memchr(spec, ':', hlen))
            return fail(err, errlen, "listen \"%s\": IPv6 addresses must be in brackets, e.g. [::1]:11333",
                        spec - *bracketed);
    }
    const char *full = spec - *bracketed;
    if (hlen == 0) return fail(err, errlen, "listen \"%s\": empty address", full);
    if (hlen >= hostlen) return fail(err, errlen, "listen \"%s\": address too long", full);
    memcpy(host, spec, hlen);
    host[hlen] = '\0';

    const char *p = colon + 1;
    if (!*p) return fail(err, errlen, "listen \"%s\": missing port", full);
    unsigned long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return fail(err, errlen, "listen \"%s\": bad port", full);
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535) return fail(err, errlen, "listen \"%s\": port out of range", full);
    }
    *port = (unsigned)v;
    return 0;
}

static int host_valid(const char *host, int bracketed)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (bracketed) return inet_pton(AF_INET6, host, buf) == 1;
    if (strcmp(host, "*") == 0) return 1;
    if (strspn(host, "0123456789.") == strlen(host)) return inet_pton(AF_INET, host, buf) == 1;
    /* a host name: letters, digits, '-', '.'; resolved at open time */
    if (strlen(host) > 253) return 0;
    for (const char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return 0;
    return 1;
}

int as_listen_parse(const char *spec, struct as_listen_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return fail(err, errlen, "listen: empty address");
    if (strlen(spec) >= sizeof out->spec)
        return fail(err, errlen, "listen \"%.40s...\": too long", spec);
    as_strlcpy(out->spec, spec, sizeof out->spec);
    /* "PROTO@": a protocol name is letters, digits, '-' and '_'; an '@'
     * after anything else ("unix:/a@b") belongs to the address */
    const char *at = strchr(spec, '@');
    size_t nlen = at ? (size_t)(at - spec) : 0;
    char pname[32] = "http";
    if (at && strspn(spec, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") ==
                  nlen) {
        if (nlen == 0) return fail(err, errlen, "listen \"%s\": empty protocol before '@'", spec);
        if (nlen >= sizeof pname) return fail(err, errlen, "listen \"%s\": unknown protocol", spec);
        memcpy(pname, spec, nlen);
        pname[nlen] = '\0';
        spec = at + 1;
    }
    out->proto = as_protocol_find(pname);
    if (!out->proto) {
        char known[128];
        as_protocol_names(known, sizeof known);
        return fail(err, errlen, "listen \"%s\": unknown protocol \"%s\" (known: %s)", out->spec,
                    pname, known);
    }
    as_strlcpy(out->addr, spec, sizeof out->addr);
    if (snprintf(out->name, sizeof out->name, "%s@%s", out->proto->name, out->addr) >=
        (int)sizeof out->name)
        return fail(err, errlen, "listen \"%.40s...\": too long", out->spec);
    if (!*spec) return fail(err, errlen, "listen \"%s\": empty address", out->spec);

    if (strncmp(spec, "unix:", 5) == 0) {
        const char *path = spec + 5;
        size_t plen = strlen(path);
        /* "unix:/path:0660": a trailing ":" plus 3-4 octal digits is a mode */
        const char *colon = strrchr(path, ':');
        if (colon && colon > path) {
            const char *m = colon + 1;
            size_t mlen = strlen(m);
            if (mlen >= 1 && strspn(m, "01234567") == mlen) {
                if (mlen > 4) return fail(err, errlen, "listen \"%s\": bad socket mode", spec);
                out->mode = (unsigned)strtoul(m, NULL, 8);
                plen = (size_t)(colon - path);
            }
        }
        if (plen == 0) return fail(err, errlen, "listen \"%s\": empty socket path", spec);
        /* the daemon may change directory; a relative path would move */
        if (path[0] != '/') return fail(err, errlen, "listen \"%s\": socket path must be absolute", spec);
        if (plen >= sizeof out->path)
            return fail(err, errlen, "listen \"%s\": socket path longer than %zu bytes", spec,
                        sizeof out->path - 1);
        memcpy(out->path, path, plen);
        out->path[plen] = '\0';
        out->is_unix = 1;
        return 0;
    }

    char host[256];
    unsigned port;
    int bracketed;
    if (listen_split(spec, host, sizeof host, &port, &bracketed, err, errlen)) return -1;
    if (!host_valid(host, bracketed)) return fail(err, errlen, "listen \"%s\": bad address \"%s\"", spec, host);
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Opens one TCP listening socket; on failure *errp is the errno. */
static int open_tcp(const struct sockaddr *sa, socklen_t salen, int backlog, const char *spec,
                    int *errp, char *err, size_t errlen)
{
    int e;
    int fd = socket(sa->sa_family, SOCK_STREAM, 0);
    if (fd < 0) {
        *errp = errno;
        return fail(err, errlen, "listen \"%s\": socket: %s", spec, strerror(*errp));
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) goto out_err;
    /* v4 and v6 get separate sockets ("*" opens both), so v6 must not
     * also claim the v4 port */
    if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto out_err;
    if (bind(fd, sa, salen) < 0) goto out_err;
    if (listen(fd, backlog) < 0) goto out_err;
    if (set_nonblock(fd) < 0) goto out_err;
    return fd;
out_err:
    e = errno;
    *errp = e;
    close(fd);
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    return fail(err, errlen, "listen \"%s\": cannot listen on %s%s%s:%u: %s", spec,
                sa->sa_family == AF_INET6 ? "[" : "", ip, sa->sa_family == AF_INET6 ? "]" : "",
                port, strerror(e));
}

static unsigned bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return 0;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static void set_port(struct sockaddr *sa, unsigned port)
{
    if (sa->sa_family == AF_INET) ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else if (sa->sa_family == AF_INET6) ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

static int open_inet(const struct as_listen_addr *a, int backlog, int *fds, size_t max, char *err,
                     size_t errlen)
{
    char host[256];
    unsigned port;
    int bracketed;
    if (listen_split(a->addr, host, sizeof host, &port, &bracketed, err, errlen)) return -1;

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    const char *node = host;
    if (strcmp(host, "*") == 0) {
        node = NULL;                /* AI_PASSIVE: the wildcard addresses */
    } else if (bracketed) {
        hints.ai_family = AF_INET6;
        hints.ai_flags |= AI_NUMERICHOST;
    }
    int rc = getaddrinfo(node, portstr, &hints, &res);
    if (rc != 0) return fail(err, errlen, "listen \"%s\": cannot resolve \"%s\": %s", a->spec, host,
                             gai_strerror(rc));

    size_t n = 0;
    int skipped = 0;
    char skip_err[256] = "";
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        /* getaddrinfo may list one address twice (e.g. /etc/hosts and DNS) */
        int dup = 0;
        for (struct addrinfo *o = res; o != ai; o = o->ai_next)
            if (o->ai_addrlen == ai->ai_addrlen && memcmp(o->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0)
                dup = 1;
        if (dup) continue;
        /* with port 0 every socket of one spec shares the first one's port */
        if (port == 0 && n > 0) set_port(ai->ai_addr, bound_port(fds[0]));
        int e = 0;
        int fd = open_tcp(ai->ai_addr, ai->ai_addrlen, backlog, a->spec, &e, skip_err, sizeof skip_err);
        if (fd < 0) {
            /* a host without IPv6 still lists "::" or "::1": skip those */
            if (e == EAFNOSUPPORT || e == EADDRNOTAVAIL) {
                skipped++;
                continue;
            }
            freeaddrinfo(res);
            for (size_t i = 0; i < n; i++) close(fds[i]);
            return fail(err, errlen, "%s", skip_err);
        }
        fds[n++] = fd;
    }
    freeaddrinfo(res);
    if (n == 0) {
        if (skipped) return fail(err, errlen, "%s", skip_err);
        return fail(err, errlen, "listen \"%s\": no usable address", a->spec);
    }
    if (skipped) as_log(AS_LOG_WARN, "%s (other addresses of it are used)", skip_err);
    return (int)n;
}

static int open_unix(const struct as_listen_addr *a, int backlog, int *fds, size_t max, char *err,
                     size_t errlen)
{
    if (max < 1) return fail(err, errlen, "listen \"%s\": no room for the socket", a->spec);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    as_strlcpy(sun.sun_path, a->path, sizeof sun.sun_path);

    struct stat st;
    if (lstat(a->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(err, errlen, "listen \"%s\": %s exists and is not a socket", a->spec, a->path);
        /* a socket file outlives its daemon; only replace it if nobody
         * accepts on it any more (non-blocking, so a full backlog cannot
         * hang us: EAGAIN means someone is listening) */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (probe < 0) return fail(err, errlen, "listen \"%s\": socket: %s", a->spec, strerror(errno));
        int rc = connect(probe, (struct sockaddr *)&sun, sizeof sun);
        int e = errno;
        close(probe);
        if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
            return fail(err, errlen, "listen \"%s\": address in use: another process accepts on %s",
                        a->spec, a->path);
        if (e == ECONNREFUSED && unlink(a->path) < 0 && errno != ENOENT)
            return fail(err, errlen, "listen \"%s\": cannot remove stale socket %s: %s", a->spec,
                        a->path, strerror(errno));
    }

    int e;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return fail(err, errlen, "listen \"%s\": socket: %s", a->spec, strerror(errno));
    const char *what = "bind";
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        e = errno;
        goto out_close;
    }
    what = "chmod";
    if (a->mode && chmod(a->path, a->mode) < 0) goto out_unlink;
    what = "listen";
    if (listen(fd, backlog) < 0) goto out_unlink;
    what = "fcntl";
    if (set_nonblock(fd) < 0) goto out_unlink;
    fds[0] = fd;
    return 1;
out_unlink:
    e = errno;
    unlink(a->path);
out_close:
    close(fd);
    return fail(err, errlen, "listen \"%s\": %s %s: %s", a->spec, what, a->path, strerror(e));
}

int as_listen_open(const struct as_listen_addr *a, int backlog, int *fds, size_t max, char *err,
                   size_t errlen)
{
    if (max == 0) return fail(err, errlen, "listen \"%s\": no room for sockets", a->spec);
    return a->is_unix ? open_unix(a, backlog, fds, max, err, errlen)
                      : open_inet(a, backlog, fds, max, err, errlen);
}

int as_listen_check_config(const struct as_config *cfg, char *err, size_t errlen)
{
    const char *const *items;
    size_t n = as_config_list(cfg, "listen", &items);
    const struct as_config_entry *e = as_config_find(cfg, "listen");
    int *listened = xcalloc(as_protocol_count(), sizeof *listened);
    for (size_t i = 0; i < n; i++) {
        struct as_listen_addr a;
        char lerr[512];
        if (as_listen_parse(items[i], &a, lerr, sizeof lerr) < 0) {
            free(listened);
            return as_config_error(err, errlen, e, "%s", lerr);
        }
        for (size_t p = 0; p < as_protocol_count(); p++)
            if (as_protocol_at(p) == a.proto) listened[p] = 1;
    }
    int rc = as_protocol_check_config(cfg, listened, err, errlen);
    free(listened);
    if (rc < 0) return -1;
    /* a daemon that listens nowhere would look healthy and scan nothing */
    if (n == 0)
        return as_config_error(err, errlen, e, "listen: no address (an empty 'listen =' "
                               "clears the list; give at least one [PROTO@]ADDR)");
    return 0;
}
