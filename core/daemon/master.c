/*
 * master.c - see master.h.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "util/config.h"
#include "scan/engine.h"
#include "net/listen.h"
#include "util/log.h"
#include "daemon/master.h"
#include "daemon/notify.h"
#include "net/controller_adapter.h"
#include "daemon/runas.h"
#include "scan/poison.h"
#include "scan/stats.h"
#include "net/protocol.h"
#include "util/util.h"
#include "daemon/worker.h"

#define MAX_LISTEN_FDS 64
#define MAX_WORKERS 256

struct listener {
    char name[256];       /* canonical "PROTO@ADDR" (listen.h) */
    char addr[256];       /* ADDR, for log lines */
    const struct as_protocol *proto;
    char unix_path[108];  /* socket file to remove when we stop listening */
    int fds[8];
    int nfds;
    int keep;            /* still wanted after a reload */
};

struct child {
    pid_t pid;
    int gen;
    int index;
    int sock;            /* master's end of the socketpair, -1 once closed */
    struct event *ev;
    int ready;
    int draining;
    double started;
    struct master *m;
};

struct master {
    struct event_base *base;
    struct as_config *cfg;
    struct as_config *prev_cfg;   /* the running generation's, during a reload */
    const struct as_master_options *opts;
    struct listener listeners[MAX_LISTEN_FDS];
    int nlisteners;
    struct child children[MAX_WORKERS * 2];
    int gen;             /* current generation */
    int nworkers;
    int stopping;
    int pending_reload;  /* a reload generation is starting */
    double backoff;
    struct event *respawn_ev;
    struct event *stop_timer;
    int exit_status;
    int announced;       /* READY=1 sent to the service manager */
    struct as_poison *poison;     /* shared with the workers: one slot per children[] */
    struct as_stats_shm *stats;   /* the same, for the daemon-wide counters */
};

/* One sd_notify(3) state message (notify.h); a manager we cannot reach is
 * worth a line, not a failure. */
static void tell_manager(const char *fmt, ...) AS_PRINTF(1, 2);
static void tell_manager(const char *fmt, ...)
{
    char state[512], err[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(state, sizeof state, fmt, ap);
    va_end(ap);
    if (as_notify(state, err, sizeof err) < 0) as_log(AS_LOG_WARN, "%s", err);
}

/* The state a manager shows while we serve (READY=1 after start and after
 * every reload, whether the reload went through or not). */
static void tell_ready(struct master *m)
{
    m->announced = 1;
    tell_manager("READY=1\nSTATUS=serving with %d worker(s), generation %d", m->nworkers, m->gen);
}

struct as_config *as_master_load(const struct as_master_options *opts, char *err, size_t errlen)
{
    struct as_config *cfg = as_engine_load_config(opts->config_path, err, errlen);
    if (!cfg) return NULL;
    for (int i = 0; i < opts->noverrides; i++) {
        const char *kv = opts->overrides[i];
        const char *eq = strchr(kv, '=');
        char key[256];
        size_t kl = eq ? (size_t)(eq - kv) : strlen(kv);
        if (!eq || kl == 0 || kl >= sizeof key) {
            snprintf(err, errlen, "command line: expected key=value, got '%s'", kv);
            as_config_free(cfg);
            return NULL;
        }
        memcpy(key, kv, kl);
        key[kl] = '\0';
        int append = kl > 0 && key[kl - 1] == '+';
        if (append) key[kl - 1] = '\0';
        as_config_set(cfg, key, eq + 1, "command line", append);
    }
    as_engine_apply_defaults(cfg);
    struct as_runas ra;
    if (as_runas_resolve(cfg, 0, &ra, err, errlen) < 0 || as_engine_check(cfg, err, errlen) < 0 ||
        as_listen_check_config(cfg, err, errlen) < 0) {
        as_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static int worker_count(const struct as_config *cfg)
{
    long long n = as_config_int(cfg, "workers", 0);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? c : 1;
    }
    return n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

/* Opens the sockets cfg asks for, reusing those already open. */
static int open_listeners(struct master *m, const struct as_config *cfg, char *err,
                          size_t errlen)
{
    const char *const *specs;
    size_t n = as_config_list(cfg, "listen", &specs);
    for (int i = 0; i < m->nlisteners; i++) m->listeners[i].keep = 0;
    for (size_t i = 0; i < n; i++) {
        struct as_listen_addr a;
        if (as_listen_parse(specs[i], &a, err, errlen) < 0) return -1;
        /* by canonical name: "127.0.0.1:1" and "http@127.0.0.1:1" are one
         * socket, kept open across a reload that rewrites one as the other */
        int found = 0;
        for (int j = 0; j < m->nlisteners; j++)
            if (strcmp(m->listeners[j].name, a.name) == 0) {
                m->listeners[j].keep = 1;
                found = 1;
            }
        if (found) continue;
        if (m->nlisteners == MAX_LISTEN_FDS) {
            snprintf(err, errlen, "too many listen addresses");
            return -1;
        }
        struct listener *l = &m->listeners[m->nlisteners];
        memset(l, 0, sizeof *l);
        l->nfds = as_listen_open(&a, 1024, l->fds, AS_ARRAY_LEN(l->fds), err, errlen);
        if (l->nfds < 0) return -1;
        if (a.is_unix) as_strlcpy(l->unix_path, a.path, sizeof l->unix_path);
        as_strlcpy(l->name, a.name, sizeof l->name);
        as_strlcpy(l->addr, a.addr, sizeof l->addr);
        l->proto = a.proto;
        l->keep = 1;
        m->nlisteners++;
        as_log(AS_LOG_NOTICE, "listening on %s (%s)", a.addr, a.proto->name);
    }
    return 0;
}

/* Closes the master's sockets of l and removes its unix socket file. */
static void listener_close(struct listener *l)
{
    for (int j = 0; j < l->nfds; j++) close(l->fds[j]);
    /* after a switch to `user`, only a directory the account may write
     * (RuntimeDirectory, /run/authscan) lets it remove the file */
    if (l->unix_path[0] && unlink(l->unix_path) < 0 && errno != ENOENT)
        as_log(AS_LOG_WARN, "cannot remove %s: %s", l->unix_path, strerror(errno));
}

/* The daemon stops: the workers take what the kernel queued and shut the
 * sockets down (AS_WORKER_MSG_STOP); the master only lets go of its copies
 * and removes the unix socket files, so that no new client finds them. */
static void stop_listening(struct master *m)
{
    for (int i = 0; i < m->nlisteners; i++) listener_close(&m->listeners[i]);
    m->nlisteners = 0;
}

static void close_unwanted_listeners(struct master *m)
{
    int k = 0;
    for (int i = 0; i < m->nlisteners; i++) {
        struct listener *l = &m->listeners[i];
        if (l->keep) {
            m->listeners[k++] = *l;
            continue;
        }
        listener_close(l);
        as_log(AS_LOG_NOTICE, "no longer listening on %s (%s)", l->addr, l->proto->name);
    }
    m->nlisteners = k;
}

static void child_sock_cb(evutil_socket_t fd, short what, void *arg);

static struct child *free_slot(struct master *m)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++)
        if (m->children[i].pid == 0) return &m->children[i];
    return NULL;
}

static int spawn(struct master *m, int gen, int index)
{
    struct child *c = free_slot(m);
    if (!c) return -1;
    size_t slot = (size_t)(c - m->children);
    as_poison_slot_reset(m->poison, slot);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        as_log(AS_LOG_ERR, "socketpair: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        as_log(AS_LOG_ERR, "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        /* Child: drop everything of the master but the sockets it needs.
         * The epoll instance is shared with the master across fork: freeing
         * the base as is would delete the master's registrations from it.
         * event_reinit gives this process its own backend first; it
         * re-registers every event, so the descriptors must still be open
         * (closed ones make libevent warn "Epoll ADD ... Bad file
         * descriptor"). */
        event_reinit(m->base);
        event_base_free(m->base);
        close(sv[0]);
        for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++)
            if (m->children[i].pid && m->children[i].sock >= 0) close(m->children[i].sock);
        static struct as_worker_socket socks[MAX_LISTEN_FDS * 8];
        size_t nsocks = 0;
        for (int i = 0; i < m->nlisteners; i++)
            for (int j = 0; j < m->listeners[i].nfds; j++) {
                /* a listener a reload dropped: the master closes it once the
                 * new generation is ready, and this worker must not keep
                 * accepting on it after that */
                if (!m->listeners[i].keep) close(m->listeners[i].fds[j]);
                else socks[nsocks++] = (struct as_worker_socket){ m->listeners[i].fds[j],
                                                                  m->listeners[i].proto };
            }
        signal(SIGCHLD, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        as_poison_attach(m->poison, slot);
        as_stats_shm_attach(m->stats, slot);
        as_worker_main(m->cfg, socks, nsocks, sv[1], index);
    }
    close(sv[1]);
    evutil_make_socket_nonblocking(sv[0]);
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    memset(c, 0, sizeof *c);
    c->pid = pid;
    c->gen = gen;
    c->index = index;
    c->sock = sv[0];
    c->started = as_now();
    c->m = m;
    c->ev = event_new(m->base, sv[0], EV_READ | EV_PERSIST, child_sock_cb, c);
    event_add(c->ev, NULL);
    as_log(AS_LOG_INFO, "started worker#%d (pid %d, generation %d)", index, (int)pid, gen);
    return 0;
}

/* Best effort: a worker that cannot be told drains on SIGTERM anyway,
 * only without shutting the listening sockets. */
static void tell_stop(struct child *c)
{
    char msg = AS_WORKER_MSG_STOP;
    if (c->sock >= 0 && write(c->sock, &msg, 1) != 1)
        as_log(AS_LOG_INFO, "cannot tell worker#%d (pid %d) to stop: %s", c->index, (int)c->pid,
               strerror(errno));
}

static void close_child_sock(struct child *c)
{
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->sock >= 0) {
        close(c->sock);
        c->sock = -1;
    }
}

static int gen_count(struct master *m, int gen, int ready_only)
{
    int n = 0;
    for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++) {
        struct child *c = &m->children[i];
        if (c->pid && c->gen == gen && (!ready_only || c->ready)) n++;
    }
    return n;
}

static void signal_gen(struct master *m, int gen, int sig, int older_than)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++) {
        struct child *c = &m->children[i];
        if (!c->pid) continue;
        if ((older_than && c->gen < gen) || (!older_than && c->gen == gen)) {
            if (sig == SIGTERM) c->draining = 1;
            kill(c->pid, sig);
        }
    }
}

/* A reload generation is complete: retire the old one. */
static void promote_generation(struct master *m)
{
    as_log(AS_LOG_NOTICE, "generation %d ready (%d workers); draining older workers", m->gen,
           m->nworkers);
    m->pending_reload = 0;
    as_config_free(m->prev_cfg);
    m->prev_cfg = NULL;
    signal_gen(m, m->gen, SIGTERM, 1);
    close_unwanted_listeners(m);
    tell_ready(m);
}

static void child_sock_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(what);
    struct child *c = arg;
    struct master *m = c->m;
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        if (!c->ready) {
            c->ready = 1;
            if (m->pending_reload && c->gen == m->gen &&
                gen_count(m, m->gen, 1) == m->nworkers)
                promote_generation(m);
            else if (!m->announced && c->gen == m->gen && gen_count(m, m->gen, 1) == m->nworkers)
                tell_ready(m);
        }
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    close_child_sock(c);   /* the worker is exiting; SIGCHLD does the rest */
}

static void respawn_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct master *m = arg;
    if (m->stopping) return;
    int have[MAX_WORKERS] = {0};
    for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++) {
        struct child *c = &m->children[i];
        if (c->pid && c->gen == m->gen && c->index < MAX_WORKERS) have[c->index] = 1;
    }
    for (int i = 0; i < m->nworkers; i++)
        if (!have[i]) spawn(m, m->gen, i);
}

static void schedule_respawn(struct master *m, double delay)
{
    struct timeval tv;
    as_timeval(delay, &tv);
    evtimer_add(m->respawn_ev, &tv);
}

/* Signals that mean the worker faulted, not that someone stopped it
 * (SIGKILL from an operator or the OOM killer, SIGTERM). */
static int fault_signal(int sig)
{
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
           sig == SIGABRT || sig == SIGSYS || sig == SIGTRAP;
}

/* Moves what the dead worker had in flight into the poison table (when it
 * faulted) and logs it.  Returns 1 if it was scanning. */
static int record_crash(struct master *m, struct child *c, int status)
{
    int fault = WIFSIGNALED(status) ? fault_signal(WTERMSIG(status)) : WEXITSTATUS(status) != 0;
    if (!as_config_bool(m->cfg, "poison.enable", 1)) fault = 0;
    double ttl = as_config_duration(m->cfg, "poison.ttl", 3600);
    struct as_poison_report rep;
    as_poison_record_crash(m->poison, (size_t)(c - m->children), fault, as_now(), ttl, &rep);
    if (fault && (rep.inflight || rep.running)) {
        char hex[17] = "";
        if (rep.running) as_poison_hex(rep.running, hex);
        as_log(AS_LOG_ERR, "worker#%d (pid %d) died with %zu scan(s) in flight%s%s%s; "
               "%zu message(s) now answered unscanned for %.0fs (poison.action)", c->index,
               (int)c->pid, rep.inflight, rep.overflow ? " (more than listed)" : "",
               rep.running ? ", running message " : "", hex, rep.poisoned, ttl);
    }
    return rep.inflight || rep.running;
}

static void reap(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct child *c = NULL;
        for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++)
            if (m->children[i].pid == pid) c = &m->children[i];
        if (!c) continue;
        char how[64];
        if (WIFEXITED(status)) snprintf(how, sizeof how, "exited with status %d",
                                        WEXITSTATUS(status));
        else snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(status));
        int expected = c->draining || m->stopping;
        as_log(expected ? AS_LOG_INFO : AS_LOG_ERR, "worker#%d (pid %d, generation %d) %s",
               c->index, (int)pid, c->gen, how);
        /* a draining worker's in-flight messages count too */
        int scanning = record_crash(m, c, status);
        as_stats_shm_retire(m->stats, (size_t)(c - m->children));
        /* a scanning worker was ready, even if its byte saying so is
         * still unread in the socket */
        int gen = c->gen, was_ready = c->ready || scanning, index = c->index;
        double lived = as_now() - c->started;
        close_child_sock(c);
        memset(c, 0, sizeof *c);
        c->sock = -1;
        if (expected) continue;

        if (m->pending_reload && gen == m->gen && !was_ready) {
            /* The new configuration does not start: keep the old workers. */
            as_log(AS_LOG_ERR, "reload failed: a new worker could not start; "
                   "keeping generation %d", gen - 1);
            signal_gen(m, gen, SIGTERM, 0);
            m->gen--;
            m->pending_reload = 0;
            as_config_free(m->cfg);
            m->cfg = m->prev_cfg;
            m->prev_cfg = NULL;
            for (int i = 0; i < m->nlisteners; i++) m->listeners[i].keep = 1;
            /* the old generation's worker count is whatever is still alive */
            m->nworkers = gen_count(m, m->gen, 0);
            tell_ready(m);
            continue;
        }
        if (gen != m->gen) continue;
        if (WIFEXITED(status) && WEXITSTATUS(status) == AS_WORKER_EXIT_CONFIG && !was_ready) {
            if (!m->announced) {
                as_log(AS_LOG_ERR, "worker cannot start with this configuration; not restarting");
                m->exit_status = 1;
                continue;
            }
            /* This generation has served: what stopped the replacement
             * (descriptors, memory, a file gone from under us) may pass,
             * and giving up would leave the daemon a worker short for
             * good.  Retry with the back-off below, as nginx does. */
            as_log(AS_LOG_ERR, "worker#%d could not start; retrying with back-off", index);
        }
        as_stats_shm_count_restart(m->stats);
        if (scanning) {
            /* A worker that died in the middle of scans did start: it is
             * not a crash loop, and the poison table keeps the message
             * that killed it (and the requests its departed clients left
             * in the accept queue) from killing the next one.  Replace it
             * at once; the back-off is for workers that fail to start. */
            if (spawn(m, m->gen, index) < 0) schedule_respawn(m, 0.1);
            continue;
        }
        /* Crash loop protection: back off while workers die young. */
        m->backoff = lived < 2.0 ? (m->backoff ? m->backoff * 2 : 0.1) : 0;
        if (m->backoff > 10) m->backoff = 10;
        schedule_respawn(m, m->backoff);
    }
    if (m->stopping && gen_count(m, m->gen, 0) == 0) {
        int any = 0;
        for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++)
            if (m->children[i].pid) any = 1;
        if (!any) event_base_loopexit(m->base, NULL);
    }
    if (!m->stopping && m->exit_status && gen_count(m, m->gen, 0) == 0) {
        as_log(AS_LOG_ERR, "no worker can run; exiting");
        event_base_loopexit(m->base, NULL);
    }
}

/* Checks the configuration again and starts its generation; -1 with err
 * leaves the running one untouched. */
static int begin_reload(struct master *m, char *err, size_t errlen)
{
    struct as_config *cfg = as_master_load(m->opts, err, errlen);
    if (!cfg) return -1;
    /* A master that dropped root cannot switch again (as_master_load
     * refused any other account); one that kept root (user = root) could,
     * but its workers would then differ from what a restart gives. */
    struct as_runas ra;
    if (as_runas_resolve(cfg, 1, &ra, err, errlen) < 0 || ra.do_switch) {
        if (ra.do_switch)
            snprintf(err, errlen, "'user' changed to '%s' while running as root: restart "
                     "the daemon to switch accounts", ra.user);
        as_config_free(cfg);
        return -1;
    }
    if (open_listeners(m, cfg, err, errlen) < 0) {
        for (int i = 0; i < m->nlisteners; i++) m->listeners[i].keep = 1;
        as_config_free(cfg);
        return -1;
    }
    as_log_configure(cfg);
    m->prev_cfg = m->cfg;
    m->cfg = cfg;
    m->gen++;
    m->nworkers = worker_count(cfg);
    m->pending_reload = 1;
    m->exit_status = 0;
    for (int i = 0; i < m->nworkers; i++) spawn(m, m->gen, i);
    return 0;
}

static void reload(struct master *m)
{
    if (m->pending_reload) {
        as_log(AS_LOG_WARN, "SIGHUP ignored: a reload is still starting its workers");
        return;
    }
    as_log(AS_LOG_NOTICE, "SIGHUP: reloading configuration");
    /* MONOTONIC_USEC: systemd 253's Type=notify-reload matches it to the
     * signal it sent; older managers ignore it */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    tell_manager("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
                 (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    char err[1024];
    if (begin_reload(m, err, sizeof err) < 0) {
        as_log(AS_LOG_ERR, "reload aborted, keeping the running configuration: %s", err);
        tell_ready(m);
    }
    /* else READY=1 when the new generation is up (promote_generation) or
     * has failed to start (reap) */
}

static void stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    AS_UNUSED(fd);
    AS_UNUSED(what);
    struct master *m = arg;
    as_log(AS_LOG_WARN, "workers did not exit in time; killing them");
    for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++)
        if (m->children[i].pid) kill(m->children[i].pid, SIGKILL);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    AS_UNUSED(what);
    struct master *m = arg;
    switch (sig) {
    case SIGCHLD:
        reap(m);
        break;
    case SIGHUP:
        if (!m->stopping) reload(m);
        break;
    case SIGTERM:
    case SIGINT:
    case SIGQUIT:
        if (m->stopping) break;
        as_log(AS_LOG_NOTICE, "%s: draining workers and exiting", strsignal((int)sig));
        tell_manager("STOPPING=1\nSTATUS=draining workers");
        m->stopping = 1;
        for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++)
            if (m->children[i].pid) {
                m->children[i].draining = 1;
                tell_stop(&m->children[i]);
                kill(m->children[i].pid, SIGTERM);
            }
        stop_listening(m);
        double to = as_config_duration(m->cfg, "shutdown_timeout", 30) + 5;
        struct timeval tv = { (time_t)to, 0 };
        evtimer_add(m->stop_timer, &tv);
        reap(m);
        break;
    }
}

static int write_pid_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    return 0;
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) _exit(0);
    setsid();
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        if (fd > 2) close(fd);
    }
    return 0;
}

int as_master_run(struct as_config *cfg, const struct as_master_options *opts)
{
    struct master *m = xcalloc(1, sizeof *m);
    m->cfg = cfg;
    m->opts = opts;
    m->gen = 1;
    m->nworkers = worker_count(cfg);
    for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++) m->children[i].sock = -1;
    as_log_set_role("master");
    char err[1024];
    /* a copy: a reload frees the configuration the path came from */
    const char *pid_file = as_config_str(cfg, "pid_file", NULL);
    char *pidf = pid_file ? xstrdup(pid_file) : NULL;
    struct as_runas ra;
    if (as_runas_resolve(cfg, 1, &ra, err, sizeof err) < 0) {
        as_log(AS_LOG_ERR, "%s", err);
        goto fail;
    }
    if (open_listeners(m, cfg, err, sizeof err) < 0) {
        as_log(AS_LOG_ERR, "%s", err);
        goto fail;
    }
    /* The account serves the unix sockets root created (their mode names
     * who else may connect), and must be able to remove them at exit. */
    for (int i = 0; ra.do_switch && i < m->nlisteners; i++) {
        const char *path = m->listeners[i].unix_path;
        if (path[0] && chown(path, ra.uid, ra.gid) < 0) {
            as_log(AS_LOG_ERR, "cannot give %s to user '%s': %s", path, ra.user, strerror(errno));
            goto fail;
        }
    }
    /* before any fork: every worker inherits the same mapping and key */
    m->poison = as_poison_new(AS_ARRAY_LEN(m->children), err, sizeof err);
    if (!m->poison) {
        as_log(AS_LOG_ERR, "%s", err);
        goto fail;
    }
    as_controller_keygen();   /* sessions valid in every worker and generation */
    m->stats = as_stats_shm_new(AS_ARRAY_LEN(m->children), err, sizeof err);
    if (!m->stats) {
        as_log(AS_LOG_ERR, "%s", err);
        goto fail;
    }
    if (!opts->foreground && daemonize() < 0) {
        as_log(AS_LOG_ERR, "cannot daemonize: %s", strerror(errno));
        goto fail;
    }
    if (!opts->foreground) tell_manager("MAINPID=%d", (int)getpid());
    if (pidf && write_pid_file(pidf, err, sizeof err) < 0) {
        as_log(AS_LOG_ERR, "%s", err);
        goto fail;
    }
    /* Last step with privileges: everything after this, every fork
     * included, runs as the account. */
    if (as_runas_apply(&ra, err, sizeof err) < 0) {
        as_log(AS_LOG_ERR, "%s", err);
        if (pidf) unlink(pidf);
        goto fail;
    }
    if (ra.do_switch)
        as_log(AS_LOG_NOTICE, "running as user %s, group %s", ra.user, ra.group);
    else if (ra.stay_root)
        as_log(AS_LOG_WARN, "running as root (user = root): every worker parses untrusted mail "
               "with root's rights");
    signal(SIGPIPE, SIG_IGN);
    m->base = event_base_new();
    if (!m->base) as_oom();
    struct event *sigs[5];
    int signums[5] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT };
    for (int i = 0; i < 5; i++) {
        sigs[i] = evsignal_new(m->base, signums[i], signal_cb, m);
        evsignal_add(sigs[i], NULL);
    }
    m->respawn_ev = evtimer_new(m->base, respawn_cb, m);
    m->stop_timer = evtimer_new(m->base, stop_timeout_cb, m);
    as_log(AS_LOG_NOTICE, "authscand %s starting %d worker(s)", AUTHSCAN_VERSION, m->nworkers);
    for (int i = 0; i < m->nworkers; i++) spawn(m, m->gen, i);

    event_base_dispatch(m->base);

    for (int i = 0; i < 5; i++) event_free(sigs[i]);
    event_free(m->respawn_ev);
    event_free(m->stop_timer);
    for (size_t i = 0; i < AS_ARRAY_LEN(m->children); i++) close_child_sock(&m->children[i]);
    for (int i = 0; i < m->nlisteners; i++) listener_close(&m->listeners[i]);
    int status = m->exit_status;
    event_base_free(m->base);
    /* after the switch, only a directory the account may write lets it go */
    if (pidf && unlink(pidf) < 0 && errno != ENOENT)
        as_log(AS_LOG_WARN, "cannot remove pid file %s: %s", pidf, strerror(errno));
    free(pidf);
    as_config_free(m->cfg);
    as_config_free(m->prev_cfg);
    as_poison_free(m->poison);
    as_stats_shm_free(m->stats);
    free(m);
    as_log(AS_LOG_NOTICE, "stopped");
    return status;

fail:   /* nothing started yet: give back what open_listeners() got */
    free(pidf);
    for (int i = 0; i < m->nlisteners; i++) listener_close(&m->listeners[i]);
    as_poison_free(m->poison);
    as_stats_shm_free(m->stats);
    as_config_free(m->cfg);
    free(m);
    return 1;
}
