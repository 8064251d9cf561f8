/*
 * worker.c - see worker.h.
 */
#include <errno.h>
#include <event2/event.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "scan/engine.h"
#include "util/log.h"
#include "net/protocol.h"
#include "net/server.h"
#include "scan/session.h"
#include "scan/task.h"
#include "daemon/worker.h"
#include "util/util.h"

/* One protocol in use: its adapter's per-worker state. */
struct worker_proto {
    const struct as_protocol *proto;
    void *ps;
};

struct worker {
    struct event_base *base;
    struct as_engine *engine;
    struct as_session_ctx sessions;
    struct as_server *server;
    struct worker_proto protos[8];
    size_t nprotos;
    struct event *sig_term, *sig_quit, *parent_ev, *force_exit;
    int draining;
    int shut;              /* listening sockets shut down (final stop) */
};

/* The adapter state of proto into *ps, started on first use.  Returns 0
 * or -1 with err. */
static int proto_state(struct worker *w, const struct as_protocol *proto, void **ps, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < w->nprotos; i++)
        if (w->protos[i].proto == proto) {
            *ps = w->protos[i].ps;
            return 0;
        }
    if (w->nprotos == AS_ARRAY_LEN(w->protos)) {
        snprintf(err, errlen, "too many protocols");
        return -1;
    }
    *ps = proto->start ? proto->start(&w->sessions, err, errlen) : NULL;
    if (proto->start && !*ps) return -1;
    w->protos[w->nprotos++] = (struct worker_proto){ proto, *ps };
    return 0;
}

static void drained(void *arg);

static void drain_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    drained(arg);
}

/* Connections are closed; finish-stage work (history, counters) still
 * belongs to the scans already answered, so let it end too.  It is bounded
 * by limits.scan_timeout, and the whole drain by shutdown_timeout. */
static void drained(void *arg)
{
    struct worker *w = arg;
    if (*as_engine_finishing(w->engine)) {
        static const struct timeval poll = { 0, 20000 };
        if (event_base_once(w->base, -1, EV_TIMEOUT, drain_poll_cb, w, &poll) == 0) return;
    }
    event_base_loopexit(w->base, NULL);
}

static void force_exit_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct worker *w = arg;
    as_log(AS_LOG_WARN, "drain did not finish in time; exiting with %zu scan(s) in flight",
           as_server_active(w->server));
    event_base_loopexit(w->base, NULL);
}

/* final: the daemon stops (the master said so, or is gone), so no other
 * worker will accept on the listening sockets after us: take what the
 * kernel queued and shut them, so that new connections are refused
 * instead of queued and reset when the last worker exits.  Otherwise
 * (a reload's old generation, one worker told to go) the sockets stay
 * open for the others and we only stop accepting. */
static void start_drain(struct worker *w, const char *why, int final)
{
    if (final && !w->shut) {
        w->shut = 1;
        as_server_shut_listeners(w->server, drained, w);
    }
    if (w->draining) return;
    w->draining = 1;
    as_log(AS_LOG_INFO, "draining (%s)", why);
    double to = as_config_duration(as_engine_config(w->engine), "shutdown_timeout", 30);
    struct timeval tv;
    as_timeval(to, &tv);
    w->force_exit = evtimer_new(w->base, force_exit_cb, w);
    evtimer_add(w->force_exit, &tv);
    if (!final) as_server_drain(w->server, drained, w);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    AS_UNUSED(what);
    start_drain(arg, sig == SIGTERM ? "SIGTERM" : "SIGQUIT", 0);
}

static void parent_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(what);
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        /* EOF stays readable: stop watching or the loop would spin */
        event_del(((struct worker *)arg)->parent_ev);
        start_drain(arg, "master is gone", 1);
        return;
    }
    if (memchr(buf, AS_WORKER_MSG_STOP, (size_t)n)) start_drain(arg, "daemon stopping", 1);
}

/*
 * glibc's defaults return the top of the heap to the kernel whenever more
 * than 128 KiB of it is free, and a scan's allocations rise and fall by
 * more than that: the worker called brk() about once every three messages
 * (strace, bench corpus), and faulted the same pages back in.  Each is a
 * system call and, on machines with page-table isolation, a TLB flush.
 * So the heap grows 1 MiB at a time and keeps up to 8 MiB free at its top
 * (worker RSS stays flat: docs/performance.md); a block of 1 MiB or more,
 * such as a large message's body, is still mmap()ed and given back as soon
 * as it is freed, so one large message leaves no lasting RSS behind.
 * An operator's own GLIBC_TUNABLES for malloc take precedence.
 */
static void worker_malloc_tune(void)
{
#ifdef __GLIBC__
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.malloc.")) return;
    if (!mallopt(M_TOP_PAD, 1 << 20) || !mallopt(M_TRIM_THRESHOLD, 8 << 20) ||
        !mallopt(M_MMAP_THRESHOLD, 1 << 20))
        as_log(AS_LOG_WARN, "mallopt refused a heap setting; glibc's defaults stay");
#endif
}

void as_worker_main(struct as_config *cfg, const struct as_worker_socket *socks, size_t nsocks,
                    int ready_fd, int index)
{
    char role[32];
    snprintf(role, sizeof role, "worker#%d", index);
    as_log_set_role(role);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);   /* ^C reaches the whole group: the master decides */
    worker_malloc_tune();

    struct worker w = {0};
    w.base = event_base_new();
    if (!w.base) as_oom();
    char err[1024];
    w.engine = as_engine_new(w.base, cfg, err, sizeof err);
    if (!w.engine) {
        as_log(AS_LOG_ERR, "%s", err);
        _exit(AS_WORKER_EXIT_CONFIG);
    }
    as_session_ctx_init(&w.sessions, w.engine);
    const struct as_limits *el = as_engine_limits(w.engine);
    struct as_server_limits lim = {
        .max_connections = el->max_connections,
        .max_per_addr = el->max_connections_per_ip,
        .idle_timeout = el->idle_timeout,
        .write_timeout = 30,
    };
    w.server = as_server_new(w.base, &lim);
    as_server_set_stats(w.server, as_engine_stats(w.engine));
    for (size_t i = 0; i < nsocks; i++) {
        void *ps;
        if (proto_state(&w, socks[i].proto, &ps, err, sizeof err) < 0) {
            as_log(AS_LOG_ERR, "%s: %s", socks[i].proto->name, err);
            _exit(AS_WORKER_EXIT_CONFIG);
        }
        if (as_server_add_listener(w.server, socks[i].fd, socks[i].proto, ps) < 0) {
            as_log(AS_LOG_ERR, "cannot accept on inherited socket %d", socks[i].fd);
            _exit(AS_WORKER_EXIT_CONFIG);
        }
    }
    w.sig_term = evsignal_new(w.base, SIGTERM, signal_cb, &w);
    w.sig_quit = evsignal_new(w.base, SIGQUIT, signal_cb, &w);
    evsignal_add(w.sig_term, NULL);
    evsignal_add(w.sig_quit, NULL);
    /* logged before the master hears of it: its "generation ready" and
     * READY=1 then always follow every worker's line */
    as_log(AS_LOG_INFO, "ready: %zu plugin(s), %zu symbol(s)", as_engine_plugin_count(w.engine),
           as_symtab_count(as_engine_symtab(w.engine)));
    if (ready_fd >= 0) {
        /* The same pipe tells us when the master dies (EOF on read). */
        w.parent_ev = event_new(w.base, ready_fd, EV_READ | EV_PERSIST, parent_cb, &w);
        event_add(w.parent_ev, NULL);
        char c = 'R';
        if (write(ready_fd, &c, 1) != 1) as_log(AS_LOG_WARN, "cannot notify master");
    }
    event_base_dispatch(w.base);

    as_server_free(w.server);
    for (size_t i = 0; i < w.nprotos; i++)
        if (w.protos[i].proto->stop) w.protos[i].proto->stop(w.protos[i].ps);
    if (w.parent_ev) event_free(w.parent_ev);
    if (w.force_exit) event_free(w.force_exit);
    event_free(w.sig_term);
    event_free(w.sig_quit);
    as_engine_free(w.engine);
    event_base_free(w.base);
    as_log(AS_LOG_INFO, "exiting");
    exit(0);
}
