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
#include "util/config.h"
#include "net/listen.h"
#include "net/protocol.h"

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

/* "[PROTO@]ADDR": the protocol, the address part and the canonical name
 * (one socket, one name), or the error. */
static void test_protocol_table(void)
{
    static const struct {
        const char *spec;
        const char *proto;      /* NULL: an error */
        const char *addr;
        const char *name;
        int is_unix;
        const char *err_sub;
    } cases[] = {
        { "127.0.0.1:11333", "http", "127.0.0.1:11333", "http@127.0.0.1:11333", 0, NULL },
        { "http@127.0.0.1:11333", "http", "127.0.0.1:11333", "http@127.0.0.1:11333", 0, NULL },
        { "http@[::1]:11333", "http", "[::1]:11333", "http@[::1]:11333", 0, NULL },
        { "http@*:0", "http", "*:0", "http@*:0", 0, NULL },
        { "http@unix:/run/a.sock:0660", "http", "unix:/run/a.sock:0660",
          "http@unix:/run/a.sock:0660", 1, NULL },
        /* an '@' after a character no protocol name has is the address's */
        { "unix:/tmp/a@b.sock", "http", "unix:/tmp/a@b.sock", "http@unix:/tmp/a@b.sock", 1, NULL },
        { "http@unix:/tmp/a@b.sock", "http", "unix:/tmp/a@b.sock", "http@unix:/tmp/a@b.sock", 1,
          NULL },
        { "lmtp@127.0.0.1:11332", NULL, "", "", 0,
          "unknown protocol \"lmtp\" (known: http, milter, spamd, controller)" },
        { "HTTP@127.0.0.1:1", NULL, "", "", 0, "unknown protocol \"HTTP\"" },
        { "spamd@unix:/run/s.sock", "spamd", "unix:/run/s.sock", "spamd@unix:/run/s.sock", 1,
          NULL },
        { "milter@127.0.0.1:11332", "milter", "127.0.0.1:11332", "milter@127.0.0.1:11332", 0,
          NULL },
        { "@127.0.0.1:1", NULL, "", "", 0, "empty protocol before '@'" },
        { "http@", NULL, "", "", 0, "empty address" },
        { "http@127.0.0.1", NULL, "", "", 0, "ADDR:PORT" },
        { "http@unix:rel.sock", NULL, "", "", 0, "must be absolute" },
        { "a-very-long-protocol-name-beyond-32@1.2.3.4:5", NULL, "", "", 0, "unknown protocol" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct as_listen_addr a;
        char err[256] = "";
        int rc = as_listen_parse(cases[i].spec, &a, err, sizeof err);
        if (cases[i].proto) {
            if (rc != 0) fprintf(stderr, "spec \"%s\": got error \"%s\", want none\n",
                                 cases[i].spec, err);
            CHECK_INT(rc, 0);
            if (rc != 0) continue;
            if (strcmp(a.proto->name, cases[i].proto) != 0 || strcmp(a.addr, cases[i].addr) != 0 ||
                strcmp(a.name, cases[i].name) != 0)
                fprintf(stderr, "spec \"%s\": got %s / %s / %s, want %s / %s / %s\n",
                        cases[i].spec, a.proto->name, a.addr, a.name, cases[i].proto,
                        cases[i].addr, cases[i].name);
            CHECK_STR(a.proto->name, cases[i].proto);
            CHECK_STR(a.addr, cases[i].addr);
            CHECK_STR(a.name, cases[i].name);
            CHECK_STR(a.spec, cases[i].spec);
            CHECK_INT(a.is_unix, cases[i].is_unix);
        } else {
            if (rc == 0) fprintf(stderr, "spec \"%s\": accepted, want an error\n", cases[i].spec);
            CHECK_INT(rc, -1);
            if (!strstr(err, cases[i].err_sub))
                fprintf(stderr, "spec \"%s\": got error \"%s\", want \"%s\" in it\n",
                        cases[i].spec, err, cases[i].err_sub);
            CHECK(strstr(err, cases[i].err_sub) != NULL);
        }
    }
    CHECK(as_protocol_find("http") != NULL);
    CHECK(as_protocol_find("lmtp") == NULL);
}

/* The config's listen list: an empty one is an error at its line. */
static void test_check_config(void)
{
    static const struct {
        const char *text;
        const char *err_sub;     /* NULL: fine */
    } cases[] = {
        { "listen = http@127.0.0.1:1, unix:/run/a.sock\n", NULL },
        { "listen = 127.0.0.1:1\nlisten = \"\"\n", "t.conf:2: listen: empty address" },
        { "workers = 1\nlisten = \n", "t.conf:2: listen: no address" },
        { "listen =\nlisten += http@127.0.0.1:1\n", NULL },
        { "\nlisten = 127.0.0.1:1, lmtp@127.0.0.1:2\n", "t.conf:2: listen \"lmtp@127.0.0.1:2\": "
                                                        "unknown protocol" },
        /* the milter adapter's keys (milter_adapter.c check()) */
        { "listen = milter@127.0.0.1:1\nmilter.on.reject = tempfail\nmilter.timeout = 5m\n"
          "milter.reject_code = 554 5.7.1\nmilter.spam_header = \"\"\n", NULL },
        { "listen = 127.0.0.1:1\nmilter.timeout = 5m\n",
          "t.conf:2: 'milter.timeout' has no effect: no 'listen' entry speaks milter" },
        { "listen = milter@127.0.0.1:1\nmilter.on.reject = bounce\n",
          "t.conf:2: bad value 'bounce' for 'milter.on.reject': expected accept, add_header" },
        { "listen = milter@127.0.0.1:1\nmilter.on.spam = reject\n",
          "t.conf:2: unknown action 'spam' in 'milter.on.spam'" },
        { "listen = milter@127.0.0.1:1\nmilter.reject_code = 451 4.7.1\n",
          "t.conf:2: bad value '451 4.7.1' for 'milter.reject_code': expected a 5xx" },
        { "listen = milter@127.0.0.1:1\nmilter.tempfail_code = 451 5.7.1\n",
          "t.conf:2: bad value '451 5.7.1' for 'milter.tempfail_code'" },
        { "listen = milter@127.0.0.1:1\nmilter.status_header = X Spam\n",
          "t.conf:2: bad value 'X Spam' for 'milter.status_header'" },
        { "listen = milter@127.0.0.1:1\nmilter.timeout = 0\n",
          "t.conf:2: bad value '0' for 'milter.timeout': expected 1s to 1d" },
        /* the spamd adapter's (spamd_adapter.c check()) */
        { "listen = spamd@127.0.0.1:1\nspamd.spam_actions = reject, add_header\n"
          "spamd.trusted_networks = 10.0.0.0/8, 2001:db8::/32, 192.0.2.1\n", NULL },
        { "listen = 127.0.0.1:1\nspamd.trusted_networks = 10.0.0.0/8\n",
          "t.conf:2: 'spamd.trusted_networks' has no effect: no 'listen' entry speaks spamd" },
        { "listen = spamd@127.0.0.1:1\nspamd.spam_actions = reject, spam\n",
          "t.conf:2: bad item 'spam' in 'spamd.spam_actions'" },
        { "listen = spamd@127.0.0.1:1\nspamd.trusted_networks = 10.0.0.0/33\n",
          "t.conf:2: bad item '10.0.0.0/33' in 'spamd.trusted_networks'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        struct as_config *cfg = as_config_new();
        CHECK_INT(as_config_load_string(cfg, "t.conf", cases[i].text, err, sizeof err), 0);
        int rc = as_listen_check_config(cfg, err, sizeof err);
        if (cases[i].err_sub ? rc == 0 || !strstr(err, cases[i].err_sub) : rc != 0)
            fprintf(stderr, "config %zu: got rc %d \"%s\", want %s\n", i, rc, err,
                    cases[i].err_sub ? cases[i].err_sub : "no error");
        CHECK_INT(rc, cases[i].err_sub ? -1 : 0);
        if (cases[i].err_sub) CHECK(strstr(err, cases[i].err_sub) != NULL);
        as_config_free(cfg);
    }
    /* a later source's empty value clears the list: the error names it */
    char err[512] = "";
    struct as_config *cfg = as_config_new();
    CHECK_INT(as_config_load_string(cfg, "t.conf", "listen = 127.0.0.1:1\n", err, sizeof err), 0);
    as_config_set(cfg, "listen", "", "command line", 0);
    CHECK_INT(as_listen_check_config(cfg, err, sizeof err), -1);
    if (!strstr(err, "command line: listen: no address"))
        fprintf(stderr, "listen cleared on the command line: got \"%s\"\n", err);
    CHECK(strstr(err, "command line: listen: no address") != NULL);
    as_config_free(cfg);
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
    test_protocol_table();
    test_check_config();
    test_open_tcp();
    test_open_unix();
    return check_done();
}
