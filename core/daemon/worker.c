/*
 * worker.c - see worker.h.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "scan/engine.h"
#include "net/http.h"
#include "util/log.h"
#include "scan/poison.h"
#include "net/proto.h"
#include "scan/stats.h"
#include "scan/task.h"
#include "daemon/worker.h"
#include "util/util.h"

struct worker {
    struct event_base *base;
    struct as_engine *engine;
    struct as_http_server *http;
    struct event *sig_term, *sig_quit, *parent_ev, *force_exit;
    int draining;
    int shut;              /* listening sockets shut down (final stop) */
    int poison_enable;
    enum as_action poison_action;
};

struct scan_req {
    struct worker *w;
    struct as_http_conn *conn;
    struct as_task *task;
    int inflight;                 /* as_poison_track handle */
};

static void reply_text(struct as_http_conn *c, int status, const char *type, struct sbuf *b)
{
    as_http_reply(c, status, type, b->data ? b->data : "", b->len, NULL);
}

static void reply_error(struct worker *w, struct as_http_conn *c, int status, const char *msg)
{
    struct sbuf b = {0};
    as_proto_write_error(&b, msg);
    reply_text(c, status, "application/json", &b);
    sbuf_free(&b);
    as_stats_request_error(as_engine_stats(w->engine));
}

static void log_verdict(const struct as_task *t)
{
    /* the line is at info level: do not format it when it is not printed
     * (about 2,000 instructions a symbol; see docs/performance.md) */
    if (as_log_get_level() < AS_LOG_INFO) return;
    const struct as_verdict *v = as_task_verdict(t);
    const struct as_envelope *env = as_task_envelope(t);
    struct sbuf syms = {0};
    for (size_t i = 0; i < as_task_symbol_count(t); i++) {
        const struct as_task_symbol *s = as_task_symbol_at(t, i);
        sbuf_printf(&syms, "%s%s(%.2f)", i ? "," : "", s->sym->name, s->score);
    }
    as_task_log(t, AS_LOG_INFO, "ip=%s from=%s qid=%s action=\"%s\" score=%.2f/%.2f "
                "symbols=[%s] time=%.3fms%s",
                env->ip ? env->ip : "-", env->mail_from ? env->mail_from : "-",
                env->queue_id ? env->queue_id : "-", as_action_name(v->action), v->score,
                v->required_score, syms.data ? syms.data : "", as_task_elapsed(t) * 1000,
                v->timed_out ? " timed_out" : "");
    sbuf_free(&syms);
}

static void scan_done(struct as_task *t, void *arg)
{
    struct scan_req *r = arg;
    struct sbuf b = {0};
    as_proto_write_checkv2(t, &b);
    as_http_conn_on_close(r->conn, NULL, NULL);
    reply_text(r->conn, 200, "application/json", &b);
    sbuf_free(&b);
    log_verdict(t);
    int inflight = r->inflight;
    as_task_free(t);   /* r lives in the task pool: gone now */
    as_poison_untrack(inflight);   /* after the teardown, which is this message's too */
}

static void scan_abandoned(void *arg)
{
    struct scan_req *r = arg;
    as_task_log(r->task, AS_LOG_NOTICE, "client went away after %.3fms; scan cancelled",
                as_task_elapsed(r->task) * 1000);
    int inflight = r->inflight;
    as_task_free(r->task);
    as_poison_untrack(inflight);
}

/* The message killed a worker before (poison.h): answer it without
 * running a plugin, instead of killing this worker too. */
static void answer_poison(struct worker *w, struct as_task *t, uint64_t digest,
                          const struct as_poison_entry *pe)
{
    char hex[17], crashes[32];
    as_poison_hex(digest, hex);
    snprintf(crashes, sizeof crashes, "crashes=%u", pe->crashes);
    const char *why = (pe->flags & AS_POISON_CULPRIT) ? "its scan was running"
                      : (pe->flags & AS_POISON_SOLE) ? "it was the only scan in flight"
                      : "it was in flight at several crashes";
    as_task_add_symbol(t, "AUTHSCAN_POISON", 1.0, hex, crashes, (const char *)NULL);
    /* above every plugin and site force: nothing else runs anyway */
    as_task_force_action(t, w->poison_action, AS_FORCE_EXACT, AS_PRIO_SITE + 1, NULL,
                         "poison");
    as_task_skip(t);
    as_stats_poison(as_engine_stats(w->engine));
    as_task_log(t, AS_LOG_WARN, "message %s killed a worker before (%s; crashes=%u): answered "
                "'%s' without scanning (poison.action)", hex, why, pe->crashes,
                as_action_name(w->poison_action));
}

static int path_is(const char *path, const char *want)
{
    return as_strcaseeq(path, want);
}

static void handle_request(struct as_http_conn *c, const struct as_http_request *req, void *arg)
{
    struct worker *w = arg;
    if (path_is(req->path, "/ping")) {
        as_http_reply(c, 200, "text/plain", "pong\r\n", 6, NULL);
        return;
    }
    if (path_is(req->path, "/stat")) {
        struct sbuf b = {0};
        as_stats_write_json(w->engine, &b);
        reply_text(c, 200, "application/json", &b);
        sbuf_free(&b);
        return;
    }
    if (!path_is(req->path, "/checkv2")) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown command '%.200s' (this server speaks /checkv2, "
                 "/ping and /stat)", req->path);
        reply_error(w, c, 404, msg);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        reply_error(w, c, 405, "/checkv2 takes POST with the message as body");
        return;
    }
    /* From here until its task is freed the message is listed as in flight
     * in this worker's poison slot, and marked while its code runs: if the
     * worker dies, the master knows which message to blame.  With
     * poison.enable off the list only tells the master that the worker was
     * scanning (1 stands for any message). */
    struct as_poison *pz = as_poison_self();
    uint64_t digest = !pz ? 0 : w->poison_enable ? as_poison_digest(pz, req->body, req->body_len)
                                                 : 1;
    int inflight = as_poison_track(digest);
    struct as_task *t = as_task_new(w->engine);
    as_task_set_digest(t, digest);
    uint64_t mark = as_task_enter(t);
    char err[256] = "";
    int status = as_proto_fill_task(t, req, err, sizeof err);
    as_task_leave(mark);
    if (status) {
        as_task_log(t, AS_LOG_NOTICE, "rejected request from %s: %s", req->peer, err);
        as_task_free(t);
        as_poison_untrack(inflight);
        reply_error(w, c, status, err);
        return;
    }
    struct as_poison_entry pe;
    if (w->poison_enable && as_poison_lookup(pz, digest, as_now(), &pe))
        answer_poison(w, t, digest, &pe);
    struct scan_req *r = as_pool_alloc(as_task_pool(t), sizeof *r);
    r->w = w;
    r->conn = c;
    r->task = t;
    r->inflight = inflight;
    as_http_conn_on_close(c, scan_abandoned, r);
    as_task_run(t, scan_done, r);
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
           as_http_server_active(w->http));
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
        as_http_server_shut_listeners(w->http, drained, w);
    }
    if (w->draining) return;
    w->draining = 1;
    as_log(AS_LOG_INFO, "draining (%s)", why);
    double to = as_config_duration(as_engine_config(w->engine), "shutdown_timeout", 30);
    struct timeval tv;
    as_timeval(to, &tv);
    w->force_exit = evtimer_new(w->base, force_exit_cb, w);
    evtimer_add(w->force_exit, &tv);
    if (!final) as_http_server_drain(w->http, drained, w);
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

void as_worker_main(struct as_config *cfg, const int *fds, size_t nfds, int ready_fd, int index)
{
    char role[32];
    snprintf(role, sizeof role, "worker#%d", index);
    as_log_set_role(role);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);   /* ^C reaches the whole group: the master decides */

    struct worker w = {0};
    w.base = event_base_new();
    if (!w.base) as_oom();
    char err[1024];
    w.engine = as_engine_new(w.base, cfg, err, sizeof err);
    if (!w.engine) {
        as_log(AS_LOG_ERR, "%s", err);
        _exit(AS_WORKER_EXIT_CONFIG);
    }
    const struct as_limits *el = as_engine_limits(w.engine);
    w.poison_enable = as_config_bool(cfg, "poison.enable", 1);
    int pa = as_action_parse(as_config_str(cfg, "poison.action", "soft_reject"));
    w.poison_action = pa < 0 ? AS_ACTION_SOFT_REJECT : (enum as_action)pa;   /* checked at load */
    struct as_http_limits lim = {
        /* One Rcpt header per recipient: Postfix accepts 1000 recipients per
         * message by default (smtpd_recipient_limit), so leave room. */
        .max_header_bytes = 512 * 1024,
        .max_headers = 2048,
        .max_body = (size_t)el->max_message_size,
        .header_timeout = el->header_timeout,
        .read_timeout = el->read_timeout,
        .idle_timeout = el->idle_timeout,
        .write_timeout = 30,
        .max_connections = el->max_connections,
        .max_per_addr = el->max_connections_per_ip,
    };
    w.http = as_http_server_new(w.base, &lim, handle_request, &w);
    for (size_t i = 0; i < nfds; i++)
        if (as_http_server_add_listener(w.http, fds[i]) < 0) {
            as_log(AS_LOG_ERR, "cannot accept on inherited socket %d", fds[i]);
            _exit(AS_WORKER_EXIT_CONFIG);
        }
    w.sig_term = evsignal_new(w.base, SIGTERM, signal_cb, &w);
    w.sig_quit = evsignal_new(w.base, SIGQUIT, signal_cb, &w);
    evsignal_add(w.sig_term, NULL);
    evsignal_add(w.sig_quit, NULL);
    if (ready_fd >= 0) {
        /* The same pipe tells us when the master dies (EOF on read). */
        w.parent_ev = event_new(w.base, ready_fd, EV_READ | EV_PERSIST, parent_cb, &w);
        event_add(w.parent_ev, NULL);
        char c = 'R';
        if (write(ready_fd, &c, 1) != 1) as_log(AS_LOG_WARN, "cannot notify master");
    }
    as_log(AS_LOG_INFO, "ready: %zu plugin(s), %zu symbol(s)", as_engine_plugin_count(w.engine),
           as_symtab_count(as_engine_symtab(w.engine)));
    event_base_dispatch(w.base);

    as_http_server_free(w.http);
    if (w.parent_ev) event_free(w.parent_ev);
    if (w.force_exit) event_free(w.force_exit);
    event_free(w.sig_term);
    event_free(w.sig_quit);
    as_engine_free(w.engine);
    event_base_free(w.base);
    as_log(AS_LOG_INFO, "exiting");
    exit(0);
}
