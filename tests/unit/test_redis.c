/*
 * test_redis.c - the Redis service (services/redis.h) against a real
 * redis-server, started through tests/integration/redis_server.py (which
 * stops it when our end of its stdin closes, even if this test crashes):
 * round trips with binary-safe arguments, pipelining on the configured
 * connections only, AUTH and SELECT, the command deadline under CLIENT
 * PAUSE, a killed server (reads fail at once, writes are queued up to the
 * cap and flushed after the restart), cancellation, and the config check.
 * Runs from tests/ (ctest's working directory).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <event2/event.h>
#include "check.h"
#include "util/config.h"
#include "services/redis.h"
#include "util/util.h"

static struct event_base *base;

/* ---- redis-server --------------------------------------------------------- */

struct server {
    pid_t pid;
    FILE *in, *out;
    int port;
};

static int server_start(struct server *s, const char *password)
{
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0) return -1;
    s->pid = fork();
    if (s->pid < 0) return -1;
    if (s->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execl("/usr/bin/python3", "python3", "integration/redis_server.py", password,
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->in = fdopen(in[1], "w");
    s->out = fdopen(out[0], "r");
    char line[64];
    return s->in && s->out && fgets(line, sizeof line, s->out) &&
           (s->port = atoi(line)) > 0 ? 0 : -1;
}

/* One control line to redis_server.py; 0 when it answered "ok". */
static int server_do(struct server *s, const char *what)
{
    char line[512];
    fprintf(s->in, "%s\n", what);
    fflush(s->in);
    if (!fgets(line, sizeof line, s->out)) return -1;
    if (strcmp(line, "ok\n") != 0) fprintf(stderr, "redis_server.py: %s", line);
    return strcmp(line, "ok\n") == 0 ? 0 : -1;
}

static void server_stop(struct server *s)
{
    if (s->in) fclose(s->in);
    if (s->out) fclose(s->out);
    if (s->pid > 0) waitpid(s->pid, NULL, 0);
    memset(s, 0, sizeof *s);
}

/* ---- the loop ------------------------------------------------------------- */

static void loop_for(double secs)
{
    struct timeval tv;
    as_timeval(secs, &tv);
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Runs the loop until *flag is set or secs pass; the time it took. */
static double loop_until(const int *flag, double secs)
{
    double t0 = as_now();
    while (!*flag && as_now() - t0 < secs) event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK),
                                           usleep(1000);
    return as_now() - t0;
}

struct result {
    int done;
    enum as_redis_status st;
    enum as_redis_reply_type type;
    long long integer;
    char str[256];
    size_t len;
    double at;
};

static void on_reply(enum as_redis_status st, const struct as_redis_reply *reply, void *arg)
{
    struct result *r = arg;
    r->done++;
    r->st = st;
    r->at = as_now();
    if (!reply) return;
    r->type = reply->type;
    r->integer = reply->integer;
    r->len = reply->str.len < sizeof r->str ? reply->str.len : sizeof r->str - 1;
    memcpy(r->str, reply->str.ptr ? reply->str.ptr : "", r->len);
    r->str[r->len] = '\0';
}

static struct as_redis *service(int port, const char *extra)
{
    char text[1024], err[512] = "";
    snprintf(text, sizeof text, "redis.servers = 127.0.0.1:%d\n%s", port, extra ? extra : "");
    struct as_config *cfg = as_config_new();
    struct as_redis *r = NULL;
    if (as_config_load_string(cfg, "<test>", text, err, sizeof err) == 0 &&
        as_redis_config_check(cfg, err, sizeof err) == 0) {
        struct as_redis_config rc;
        as_redis_config_from(cfg, &rc);
        r = as_redis_new(base, &rc, err, sizeof err);
    }
    if (!r) fprintf(stderr, "service: %s\n", err);
    as_config_free(cfg);
    return r;
}

static struct result cmd(struct as_redis *r, size_t argc, const char *const *argv,
                         const size_t *lens)
{
    struct result res = { 0 };
    if (!as_redis_submit(r, argc, argv, lens, on_reply, &res)) {
        res.st = (enum as_redis_status)-1;   /* refused */
        return res;
    }
    loop_until(&res.done, 10);
    return res;
}

static struct result cmd1(struct as_redis *r, const char *a, const char *b, const char *c)
{
    const char *argv[] = { a, b, c };
    return cmd(r, c ? 3 : b ? 2 : 1, argv, NULL);
}

static int wait_up(struct as_redis *r, unsigned want, double secs)
{
    double t0 = as_now();
    struct as_redis_stats st;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        as_redis_get_stats(r, &st);
        if (st.connections_up >= want) return 1;
        usleep(2000);
    } while (as_now() - t0 < secs);
    return 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_roundtrip(struct server *s)
{
    struct as_redis *r = service(s->port, "redis.connections = 2\n");
    CHECK(r && as_redis_enabled(r));
    CHECK(wait_up(r, 2, 5));
    /* binary-safe: blanks, a NUL byte, braces and CRLF stay one argument */
    static const char val[] = "a b\0{c}\r\n*1";
    const char *argv[] = { "SET", "as:test:bin", val };
    size_t lens[] = { 3, 11, sizeof val - 1 };
    struct result res = cmd(r, 3, argv, lens);
    CHECK_INT(res.st, AS_REDIS_OK);
    CHECK_STR(res.str, "OK");
    res = cmd1(r, "GET", "as:test:bin", NULL);
    CHECK_INT(res.st, AS_REDIS_OK);
    CHECK_INT(res.type, AS_REDIS_REPLY_STRING);
    CHECK_INT(res.len, sizeof val - 1);
    CHECK(memcmp(res.str, val, sizeof val - 1) == 0);
    res = cmd1(r, "GET", "as:test:none", NULL);
    CHECK_INT(res.type, AS_REDIS_REPLY_NIL);
    res = cmd1(r, "HGET", "as:test:bin", "f");   /* WRONGTYPE */
    CHECK_INT(res.st, AS_REDIS_ERROR);
    CHECK(strstr(res.str, "WRONGTYPE") != NULL);

    /* 2000 reads in one go: pipelined on the two connections, no more */
    enum { N = 2000 };
    static struct result many[N];
    memset(many, 0, sizeof many);
    for (int i = 0; i < N; i++) {
        const char *a[] = { "INCR", "as:test:counter" };
        CHECK(as_redis_submit(r, 2, a, NULL, on_reply, &many[i]) != NULL);
    }
    int all = 0;
    double t0 = as_now();
    while (!all && as_now() - t0 < 20) {
        event_base_loop(base, EVLOOP_ONCE);
        all = 1;
        for (int i = 0; i < N && all; i++) all = many[i].done;
    }
    int ok = 1;
    long long max = 0;
    for (int i = 0; i < N; i++) {
        ok &= many[i].done == 1 && many[i].st == AS_REDIS_OK;
        if (many[i].integer > max) max = many[i].integer;
    }
    CHECK(ok);
    CHECK_INT(max, N);
    struct as_redis_stats st;
    as_redis_get_stats(r, &st);
    CHECK_INT(st.connects, 2);
    CHECK_INT(st.timeouts, 0);

    /* cancelled: the callback never runs, the late reply is dropped */
    struct result cancelled = { 0 };
    const char *ping[] = { "PING" };
    struct as_redis_req *q = as_redis_submit(r, 1, ping, NULL, on_reply, &cancelled);
    CHECK(q != NULL);
    as_redis_cancel(q);
    loop_for(0.2);
    CHECK_INT(cancelled.done, 0);
    as_redis_get_stats(r, &st);
    CHECK_INT(st.replies, st.commands);
    as_redis_free(r);
}

static void test_auth_select(void)
{
    struct server s = { 0 };
    if (server_start(&s, "s3cret pass") < 0) {
        CHECK(!"redis-server with a password did not start");
        server_stop(&s);
        return;
    }
    struct as_redis *r = service(s.port, "redis.password = \"s3cret pass\"\nredis.db = 3\n");
    CHECK(wait_up(r, 1, 5));
    CHECK_INT(cmd1(r, "SET", "as:test:db", "x").st, AS_REDIS_OK);
    struct as_redis *r0 = service(s.port, "redis.password = \"s3cret pass\"\n");
    CHECK(wait_up(r0, 1, 5));
    CHECK_INT(cmd1(r0, "EXISTS", "as:test:db", NULL).integer, 0);   /* db 0 */
    CHECK_INT(cmd1(r, "EXISTS", "as:test:db", NULL).integer, 1);    /* db 3 */
    as_redis_free(r0);
    as_redis_free(r);

    /* a wrong password: never up, reads refused, one state line */
    r = service(s.port, "redis.password = wrong\nredis.timeout = 200ms\n");
    CHECK(!wait_up(r, 1, 0.5));
    struct result res = cmd1(r, "PING", NULL, NULL);
    CHECK(res.st == (enum as_redis_status)-1 || res.st == AS_REDIS_UNAVAILABLE ||
          res.st == AS_REDIS_ERROR);
    struct as_redis_stats st;
    as_redis_get_stats(r, &st);
    CHECK_INT(st.connects, 0);
    as_redis_free(r);
    server_stop(&s);
}

static void test_pause(struct server *s)
{
    struct as_redis *r = service(s->port, "redis.timeout = 300ms\nredis.connections = 1\n");
    CHECK(wait_up(r, 1, 5));
    CHECK_INT(server_do(s, "cmd CLIENT PAUSE 1500"), 0);
    double t0 = as_now();
    struct result res = cmd1(r, "GET", "as:test:bin", NULL);
    double took = res.at - t0;
    CHECK_INT(res.st, AS_REDIS_TIMEOUT);
    if (!(took >= 0.25 && took < 1.0)) fprintf(stderr, "paused GET answered after %.3fs\n", took);
    CHECK(took >= 0.25 && took < 1.0);   /* bounded by redis.timeout */
    struct as_redis_stats st;
    as_redis_get_stats(r, &st);
    CHECK_INT(st.timeouts, 1);
    /* the silent connection was dropped; after the pause it works again */
    loop_for(0.2);
    as_redis_get_stats(r, &st);
    CHECK(st.disconnects >= 1);
    loop_for(1.5);
    CHECK(wait_up(r, 1, 10));
    res = cmd1(r, "PING", NULL, NULL);
    CHECK_INT(res.st, AS_REDIS_OK);
    CHECK_STR(res.str, "PONG");
    as_redis_free(r);
}

static void test_killed(struct server *s)
{
    struct as_redis *r = service(s->port, "redis.timeout = 300ms\nredis.queue_max = 5\n");
    /* a registered script is loaded on every connection, again after a
     * restart: EVALSHA finds it */
    const char *sha = as_redis_script(r, "return ARGV[1] .. '!'");
    CHECK(sha && strlen(sha) == 40);
    CHECK(wait_up(r, 2, 5));
    const char *eva[] = { "EVALSHA", sha, "0", "hi" };
    struct result er = cmd(r, 4, eva, NULL);
    CHECK_INT(er.st, AS_REDIS_OK);
    CHECK_STR(er.str, "hi!");
    CHECK_INT(server_do(s, "kill"), 0);
    loop_for(0.1);
    struct as_redis_stats st;
    as_redis_get_stats(r, &st);
    CHECK_INT(st.connections_up, 0);
    /* reads fail at once */
    const char *ping[] = { "PING" };
    struct result res = { 0 };
    CHECK(as_redis_submit(r, 1, ping, NULL, on_reply, &res) == NULL);
    /* writes are queued up to the cap, the rest counted as dropped */
    int queued = 0;
    for (int i = 0; i < 8; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *a[] = { "RPUSH", "as:test:queued", v };
        queued += as_redis_submit(r, 3, a, NULL, NULL, NULL) != NULL;
    }
    CHECK_INT(queued, 5);
    as_redis_get_stats(r, &st);
    CHECK_INT(st.queued, 5);
    CHECK_INT(st.dropped_writes, 3);
    CHECK(st.refused >= 1);
    CHECK_INT(server_do(s, "start"), 0);
    CHECK(wait_up(r, 1, 10));   /* back-off is at most 5 s */
    loop_for(0.2);
    as_redis_get_stats(r, &st);
    CHECK_INT(st.queued, 0);
    res = cmd1(r, "LLEN", "as:test:queued", NULL);
    CHECK_INT(res.integer, 5);
    res = cmd1(r, "LINDEX", "as:test:queued", "4");
    CHECK_STR(res.str, "4");   /* in order */
    er = cmd(r, 4, eva, NULL);
    CHECK_INT(er.st, AS_REDIS_OK);
    CHECK_STR(er.str, "hi!");
    as_redis_free(r);
}

/* Nothing connects before the loop runs: --check-config sends nothing. */
static void test_no_connect_before_loop(void)
{
    struct as_redis *r = service(1, NULL);   /* port 1: nobody there */
    struct as_redis_stats st;
    as_redis_get_stats(r, &st);
    CHECK_INT(st.connects + st.disconnects + st.commands, 0);
    as_redis_free(r);
}

struct cfg_case {
    const char *text;
    const char *want;   /* substring of the error, NULL: accepted */
};

static const struct cfg_case cfg_cases[] = {
    { "", NULL },
    { "redis.servers = 127.0.0.1\n", NULL },
    { "redis.servers = [::1]:6380\nredis.db = 15\nredis.prefix = x:\n", NULL },
    { "redis.servers = /run/redis.sock\n", NULL },
    { "redis.servers = unix:/run/redis.sock\nredis.timeout = 50ms\n", NULL },
    { "redis.servers = redis.example:6379\n", "<c>:1: bad value 'redis.example:6379'" },
    { "redis.servers = 127.0.0.1:0\n", "<c>:1: bad value" },
    { "redis.servers = 127.0.0.1:70000\n", "<c>:1: bad value" },
    { "redis.servers = 127.0.0.1, 127.0.0.2:6380, /run/r.sock\n", NULL },
    { "redis.servers = 127.0.0.1, 127.0.0.1\n", "<c>:1: 'redis.servers' names '127.0.0.1' twice" },
    { "redis.servers = 127.0.0.1, 127.0.0.2, 127.0.0.3, 127.0.0.4, 127.0.0.5, 127.0.0.6, "
      "127.0.0.7, 127.0.0.8, 127.0.0.9, 127.0.0.10, 127.0.0.11, 127.0.0.12, 127.0.0.13, "
      "127.0.0.14, 127.0.0.15, 127.0.0.16, 127.0.0.17\n", "names 17 entries: at most 16" },
    { "redis.sentinels = 127.0.0.1, [::1]:26380\nredis.master_name = m1, m2\n", NULL },
    { "redis.sentinels = 127.0.0.1\n", "<c>:1: 'redis.sentinels' without 'redis.master_name'" },
    { "redis.master_name = m\n", "<c>:1: 'redis.master_name' without 'redis.sentinels'" },
    { "redis.servers = 127.0.0.1\nredis.sentinels = 127.0.0.1\nredis.master_name = m\n",
      "<c>:2: 'redis.servers' and Sentinel" },
    { "redis.sentinels = sentinel.example\nredis.master_name = m\n",
      "<c>:1: bad value 'sentinel.example' in 'redis.sentinels'" },
    { "redis.sentinels = /run/s.sock\nredis.master_name = m\n", "<c>:1: bad value" },
    { "redis.sentinels = 127.0.0.1\nredis.master_name = m\nredis.timeout = 0\n",
      "<c>:3: bad value '0'" },
    { "redis.servers = 127.0.0.1\nredis.timeout = 0\n", "<c>:2: bad value '0' for 'redis.timeout'" },
    { "redis.servers = 127.0.0.1\nredis.timeout = 2m\n", "<c>:2: bad value" },
    { "redis.servers = 127.0.0.1\nredis.db = -1\n", "<c>:2: bad value '-1' for 'redis.db'" },
    { "redis.servers = 127.0.0.1\nredis.connections = 0\n", "<c>:2: bad value" },
    { "redis.servers = 127.0.0.1\nredis.connections = 17\n", "expected 1 to 16" },
    { "redis.servers = 127.0.0.1\nredis.queue_max = 1000001\n", "<c>:2:" },
    { "redis.servers = 127.0.0.1\nredis.prefix = a{b\n", "<c>:2: bad value 'a{b'" },
    { "redis.servers = 127.0.0.1\nredis.password = \"\"\n", "<c>:2: 'redis.password' is empty" },
    { "redis.timeout = 1s\n", "<c>:1: 'redis.timeout' has no effect without redis.servers" },
    { "redis.prefix = x\n", "<c>:1: 'redis.prefix' has no effect" },
};

static void test_config(void)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(cfg_cases); i++) {
        char err[512] = "";
        struct as_config *cfg = as_config_new();
        int rc = as_config_load_string(cfg, "<c>", cfg_cases[i].text, err, sizeof err);
        if (rc == 0) rc = as_redis_config_check(cfg, err, sizeof err);
        if (cfg_cases[i].want) {
            if (rc == 0 || !strstr(err, cfg_cases[i].want))
                fprintf(stderr, "case %zu: got rc %d '%s', want '%s'\n", i, rc, err,
                        cfg_cases[i].want);
            CHECK(rc < 0 && strstr(err, cfg_cases[i].want));
        } else {
            if (rc != 0) fprintf(stderr, "case %zu: got '%s', want success\n", i, err);
            CHECK_INT(rc, 0);
        }
        as_config_free(cfg);
    }
    /* off without servers */
    struct as_config *cfg = as_config_new();
    struct as_redis_config rc;
    as_redis_config_from(cfg, &rc);
    char err[256];
    struct as_redis *r = as_redis_new(base, &rc, err, sizeof err);
    CHECK(r && !as_redis_enabled(r));
    const char *a[] = { "PING" };
    CHECK(as_redis_submit(r, 1, a, NULL, NULL, NULL) == NULL);
    CHECK_STR(as_redis_prefix(r), "as:");
    as_redis_free(r);
    as_config_free(cfg);
}

/* The ring: even shares, keys of one tag together, EVALSHA by its first
 * key, and a shard's removal moves only its own keys. */
static void test_ring(void)
{
    struct as_redis_config three = { 0 }, two = { 0 };
    static const char *const names[] = { "127.0.0.1:6379", "127.0.0.1:6380", "127.0.0.1:6381" };
    for (size_t i = 0; i < 3; i++) three.shards[three.nshards++].name = names[i];
    for (size_t i = 0; i < 2; i++) two.shards[two.nshards++].name = names[i];
    struct as_redis_ring *r3 = as_redis_ring_new(&three), *r2 = as_redis_ring_new(&two);
    size_t count[3] = { 0 }, moved_wrongly = 0;
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        char key[64], other[64];
        snprintf(key, sizeof key, "as:{example%d.com}d", i);
        snprintf(other, sizeof other, "as:{example%d.com}s:192.0.2", i);
        size_t k = as_redis_ring_key(r3, key, strlen(key));
        CHECK(k < 3);
        count[k < 3 ? k : 0]++;
        if (as_redis_ring_key(r3, other, strlen(other)) != k) CHECK(0);
        /* without the third shard only its keys move */
        size_t k2 = as_redis_ring_key(r2, key, strlen(key));
        if (k != 2 && k2 != k) moved_wrongly++;
    }
    for (size_t i = 0; i < 3; i++) {
        if (count[i] < N / 5 || count[i] > N / 2)
            fprintf(stderr, "ring: shard %zu got %zu of %d keys\n", i, count[i], N);
        CHECK(count[i] >= N / 5 && count[i] <= N / 2);
    }
    CHECK_INT(moved_wrongly, 0);
    /* a key without a tag hashes whole; "{}" is no tag */
    CHECK(as_redis_ring_key(r3, "x{}y", 4) == as_redis_ring_key(r3, "x{}y", 4));
    const char *hmget[] = { "HMGET", "as:{example7.com}d", "n" };
    const char *eval[] = { "EVALSHA", "0123", "2", "as:{example7.com}d", "as:{other}d", "1" };
    const char *ping[] = { "PING" }, *scan[] = { "SCAN", "0", "MATCH", "as:{example7.com}*" };
    size_t want = as_redis_ring_key(r3, "example7.com", strlen("example7.com"));
    CHECK_INT(as_redis_ring_route(r3, 3, hmget, NULL), want);
    CHECK_INT(as_redis_ring_route(r3, 6, eval, NULL), want);
    CHECK_INT(as_redis_ring_route(r3, 1, ping, NULL), 0);
    CHECK_INT(as_redis_ring_route(r3, 4, scan, NULL), 0);
    as_redis_ring_free(r3);
    as_redis_ring_free(r2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    test_config();
    test_ring();
    test_no_connect_before_loop();
    struct server s = { 0 };
    if (server_start(&s, NULL) < 0) {
        fprintf(stderr, "cannot start redis-server (scripts/install-deps installs it)\n");
        CHECK(0);
        server_stop(&s);
        return check_done();
    }
    test_roundtrip(&s);
    test_pause(&s);
    test_killed(&s);
    server_stop(&s);
    test_auth_select();
    event_base_free(base);
    return check_done();
}
