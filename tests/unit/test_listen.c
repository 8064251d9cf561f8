/*
 * test_listen.c - listen.c: spec parsing table, opening TCP and unix
 * sockets, stale unix socket replacement, live socket refusal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "net/listen.h"

static void test_parse_table(void)
{
    static const struct {
        const char *spec;
        int ok;
        int is_unix;
        const char *path;
        unsigned mode;
        const char *err_sub;    /* expected in the error text */
    } cases[] = {
        { "127.0.0.1:11333", 1, 0, "", 0, NULL },
        { "[::1]:11333", 1, 0, "", 0, NULL },
        { "*:11333", 1, 0, "", 0, NULL },
        { "localhost:11333", 1, 0, "", 0, NULL },
        { "0.0.0.0:0", 1, 0, "", 0, NULL },
        { "[::]:65535", 1, 0, "", 0, NULL },
        { "unix:/run/authscan.sock", 1, 1, "/run/authscan.sock", 0, NULL },
        { "unix:/run/authscan.sock:0660", 1, 1, "/run/authscan.sock", 0660, NULL },
        { "unix:/tmp/a:b.sock", 1, 1, "/tmp/a:b.sock", 0, NULL },
        { "", 0, 0, "", 0, "empty" },
        { "127.0.0.1", 0, 0, "", 0, "ADDR:PORT" },
        { "127.0.0.1:", 0, 0, "", 0, "missing port" },
        { "127.0.0.1:65536", 0, 0, "", 0, "out of range" },
        { "127.0.0.1:12x", 0, 0, "", 0, "bad port" },
        { ":11333", 0, 0, "", 0, "empty address" },
        { "::1:11333", 0, 0, "", 0, "brackets" },
        { "[::1:11333", 0, 0, "", 0, "missing ']'" },
        { "[::1]11333", 0, 0, "", 0, "':PORT'" },
        { "[1.2.3.4]:1", 0, 0, "", 0, "bad address" },
        { "256.1.1.1:25", 0, 0, "", 0, "bad address" },
        { "bad_host!:25", 0, 0, "", 0, "bad address" },
        { "unix:", 0, 0, "", 0, "empty socket path" },
        { "unix::0660", 0, 0, "", 0, "must be absolute" },
        { "unix:run/a.sock", 0, 0, "", 0, "must be absolute" },
        { "unix:/x:77777", 0, 0, "", 0, "bad socket mode" },
        { "unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          0, 0, "", 0, "longer than" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct as_listen_addr a;
        char err[256] = "";
        int rc = as_listen_parse(cases[i].spec, &a, err, sizeof err);
        if (cases[i].ok) {
            if (rc != 0) fprintf(stderr, "spec \"%s\": unexpected error: %s\n", cases[i].spec, err);
            CHECK_INT(rc, 0);
            CHECK_INT(a.is_unix, cases[i].is_unix);
            CHECK_STR(a.spec, cases[i].spec);
            if (cases[i].is_unix) {
                CHECK_STR(a.path, cases[i].path);
                CHECK_INT(a.mode, cases[i].mode);
            }
        } else {
            if (rc == 0) fprintf(stderr, "spec \"%s\": accepted, want an error\n", cases[i].spec);
            CHECK_INT(rc, -1);
            if (!strstr(err, cases[i].err_sub))
                fprintf(stderr, "spec \"%s\": error \"%s\" lacks \"%s\"\n", cases[i].spec, err,
                        cases[i].err_sub);
            CHECK(strstr(err, cases[i].err_sub) != NULL);
            /* the error names the address (except the empty one) */
            if (cases[i].spec[0]) CHECK(strstr(err, cases[i].spec) != NULL);
        }
    }
}

static unsigned port_of(int fd, int *family)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return 0;
    *family = ss.ss_family;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int connect_v4(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sin, sizeof sin);
    close(fd);
    return rc;
}

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof sun);
    close(fd);
    return rc;
}

static void test_open_tcp(void)
{
    struct as_listen_addr a;
    char err[256];
    int fds[4];

    CHECK_INT(as_listen_parse("127.0.0.1:0", &a, err, sizeof err), 0);
    int n = as_listen_open(&a, 16, fds, 4, err, sizeof err);
    CHECK_INT(n, 1);
    if (n == 1) {
        int fam = 0;
        unsigned port = port_of(fds[0], &fam);
        CHECK(port != 0);
        CHECK_INT(fam, AF_INET);
        CHECK(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
        CHECK(!(fcntl(fds[0], F_GETFD) & FD_CLOEXEC));  /* workers inherit it */
        CHECK_INT(connect_v4(port), 0);

        /* the same port again: a clear "in use" error naming the address */
        char spec[64];
        snprintf(spec, sizeof spec, "127.0.0.1:%u", port);
        struct as_listen_addr b;
        CHECK_INT(as_listen_parse(spec, &b, err, sizeof err), 0);
        int fds2[2];
        CHECK_INT(as_listen_open(&b, 16, fds2, 2, err, sizeof err), -1);
        CHECK(strstr(err, spec) != NULL);
        CHECK(strstr(err, "in use") != NULL);
        close(fds[0]);
    }

    /* "*" opens IPv4 and (where available) IPv6, on one port */
    CHECK_INT(as_listen_parse("*:0", &a, err, sizeof err), 0);
    n = as_listen_open(&a, 16, fds, 4, err, sizeof err);
    if (n < 0) fprintf(stderr, "*:0: %s\n", err);
    CHECK(n >= 1 && n <= 2);
    int have4 = 0, have6 = 0;
    unsigned first = 0;
    for (int i = 0; i < n; i++) {
        int fam = 0;
        unsigned p = port_of(fds[i], &fam);
        if (i == 0) first = p;
        CHECK_INT(p, first);
        if (fam == AF_INET) have4 = 1;
        if (fam == AF_INET6) {
            have6 = 1;
            int v6only = 0;
            socklen_t l = sizeof v6only;
            getsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l);
            CHECK_INT(v6only, 1);
        }
    }
    CHECK(have4);
    if (n == 2) CHECK(have6);
    CHECK_INT(connect_v4(first), 0);
    for (int i = 0; i < n; i++) close(fds[i]);

    /* names resolve at open time */
    CHECK_INT(as_listen_parse("localhost:0", &a, err, sizeof err), 0);
    n = as_listen_open(&a, 16, fds, 4, err, sizeof err);
    if (n < 0) fprintf(stderr, "localhost:0: %s\n", err);
    CHECK(n >= 1);
    for (int i = 0; i < n; i++) close(fds[i]);

    CHECK_INT(as_listen_parse("no-such-host.invalid:25", &a, err, sizeof err), 0);
    CHECK_INT(as_listen_open(&a, 16, fds, 4, err, sizeof err), -1);
    CHECK(strstr(err, "no-such-host.invalid") != NULL);
}

static void test_open_unix(void)
{
    char dir[] = "/tmp/test_listen.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], spec[160], err[256];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    snprintf(spec, sizeof spec, "unix:%s:0660", path);
    struct as_listen_addr a;
    int fds[2];

    CHECK_INT(as_listen_parse(spec, &a, err, sizeof err), 0);
    CHECK_INT(as_listen_open(&a, 16, fds, 2, err, sizeof err), 1);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_INT(st.st_mode & 07777, 0660);
    CHECK_INT(connect_unix(path), 0);

    /* live: someone accepts on it -> refused, the file stays */
    int fds2[2];
    CHECK_INT(as_listen_open(&a, 16, fds2, 2, err, sizeof err), -1);
    CHECK(strstr(err, "address in use") != NULL);
    CHECK(strstr(err, path) != NULL);
    CHECK_INT(connect_unix(path), 0);

    /* stale: the listener is gone but the file remains -> replaced */
    close(fds[0]);
    CHECK_INT(stat(path, &st), 0);
    CHECK(connect_unix(path) != 0);
    CHECK_INT(as_listen_open(&a, 16, fds, 2, err, sizeof err), 1);
    CHECK_INT(connect_unix(path), 0);
    close(fds[0]);
    unlink(path);

    /* a regular file is never removed */
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    CHECK_INT(as_listen_open(&a, 16, fds, 2, err, sizeof err), -1);
    CHECK(strstr(err, "not a socket") != NULL);
    CHECK_INT(stat(path, &st), 0);
    CHECK(S_ISREG(st.st_mode));
    unlink(path);

    /* a directory that does not exist: error names the path */
    snprintf(spec, sizeof spec, "unix:%s/nodir/s.sock", dir);
    CHECK_INT(as_listen_parse(spec, &a, err, sizeof err), 0);
    CHECK_INT(as_listen_open(&a, 16, fds, 2, err, sizeof err), -1);
    CHECK(strstr(err, "nodir/s.sock") != NULL);
    rmdir(dir);
}

int main(void)
{
    test_parse_table();
    test_open_tcp();
    test_open_unix();
    return check_done();
}
