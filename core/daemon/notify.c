/*
 * notify.c - see notify.h.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "daemon/notify.h"

int as_notify(const char *state, char *err, size_t errlen)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof sa.sun_path) {
        snprintf(err, errlen, "NOTIFY_SOCKET '%s': expected an absolute path or @name", path);
        return -1;
    }
    memcpy(sa.sun_path, path, plen);
    if (path[0] == '@') sa.sun_path[0] = '\0';   /* abstract namespace */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);

    size_t n = strlen(state);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "notify socket: %s", strerror(errno));
        return -1;
    }
    ssize_t sent = sendto(fd, state, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int e = errno;
    close(fd);
    if (sent < 0 || (size_t)sent != n) {
        snprintf(err, errlen, "cannot notify %s: %s", path, sent < 0 ? strerror(e) : "short write");
        return -1;
    }
    return 0;
}
