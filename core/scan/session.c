/*
 * session.c - see session.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "scan/engine.h"
#include "util/log.h"
#include "scan/poison.h"
#include "util/pool.h"
#include "scan/session.h"
#include "scan/stats.h"
#include "scan/task.h"
#include "util/util.h"

/* Lives in the task's pool: gone with as_task_free(). */
struct as_session {
    struct as_session_ctx *sc;
    struct as_task *task;
    const char *msg;
    size_t len;
    const char *peer;
    uint64_t digest;
    int inflight;                 /* as_poison_track handle */
    as_session_done_fn done;
    void *done_arg;
};

void as_session_ctx_init(struct as_session_ctx *sc, struct as_engine *e)
{
    const struct as_config *cfg = as_engine_config(e);
    sc->engine = e;
    sc->poison_enable = as_config_bool(cfg, "poison.enable", 1);
    int pa = as_action_parse(as_config_str(cfg, "poison.action", "soft_reject"));
    sc->poison_action = pa < 0 ? AS_ACTION_SOFT_REJECT : (enum as_action)pa;   /* checked at load */
}

void as_session_count_error(struct as_session_ctx *sc)
{
    as_stats_request_error(as_engine_stats(sc->engine));
}

/* Frees the task, then takes the message off the in-flight list: after
 * the teardown, which is this message's too. */
static void session_free(struct as_session *ss)
{
    int inflight = ss->inflight;
    as_task_free(ss->task);   /* ss lives in the task pool: gone now */
    as_poison_untrack(inflight);
}

static int engine_has_finish(const struct as_engine *e)
{
    for (size_t i = 0; i < as_engine_plugin_count(e); i++)
        if (as_engine_plugin_at(e, i)->finish) return 1;
    return 0;
}

/* copy: 0 never (the caller keeps msg alive), 1 when a finish hook may
 * run. */
static struct as_session *session_create(struct as_session_ctx *sc, const char *peer,
                                         const char *msg, size_t len, int copy)
{
    /* From here until its task is freed the message is listed as in flight
     * in this worker's poison slot, and marked while its code runs: if the
     * worker dies, the master knows which message to blame.  With
     * poison.enable off the list only tells the master that the worker was
     * scanning (1 stands for any message). */
    struct as_poison *pz = as_poison_self();
    uint64_t digest = !pz ? 0 : sc->poison_enable ? as_poison_digest(pz, msg, len) : 1;
    int inflight = as_poison_track(digest);
    struct as_task *t = as_task_new(sc->engine);
    as_task_set_digest(t, digest);
    struct as_session *ss = as_pool_alloc(as_task_pool(t), sizeof *ss);
    memset(ss, 0, sizeof *ss);
    ss->sc = sc;
    ss->task = t;
    /* The finish stage runs after the reply, when the protocol may already
     * have reused or freed the buffer msg points into (the HTTP adapter's
     * keep-alive buffer), yet plugin.h promises finish hooks the message:
     * copy it whenever a finish hook may run.  A memcpy against a scan. */
    ss->msg = copy && len && engine_has_finish(sc->engine)
        ? as_pool_memdup(as_task_pool(t), msg, len) : msg;
    ss->len = len;
    ss->peer = as_pool_strdup(as_task_pool(t), peer ? peer : "-");
    ss->digest = digest;
    ss->inflight = inflight;
    return ss;
}

struct as_session *as_session_new(struct as_session_ctx *sc, const char *peer, const char *msg,
                                  size_t len)
{
    return session_create(sc, peer, msg, len, 1);
}

struct as_session *as_session_new_owned(struct as_session_ctx *sc, const char *peer, char *msg,
                                        size_t len)
{
    if (!msg) return session_create(sc, peer, "", 0, 0);
    struct as_session *ss = session_create(sc, peer, msg, len, 0);
    /* freed with the task's pool: after the finish stage, the last reader */
    if (as_pool_on_destroy(as_task_pool(ss->task), free, msg) < 0) {
        ss->msg = len ? as_pool_memdup(as_task_pool(ss->task), msg, len) : "";
        free(msg);
    }
    return ss;
}

const struct as_task *as_session_task(const struct as_session *ss) { return ss->task; }

void *as_session_alloc(struct as_session *ss, size_t size)
{
    return as_pool_alloc(as_task_pool(ss->task), size);
}

/* Fills the envelope (the adapter's part) and the message. */
static enum as_session_error session_fill(struct as_session *ss, as_session_fill_fn fill,
                                          void *arg, char *err, size_t errlen)
{
    enum as_session_error rc = fill ? fill(ss->task, arg, err, errlen) : AS_SESSION_OK;
    if (rc != AS_SESSION_OK) return rc;
    const struct as_limits *lim = as_engine_limits(ss->sc->engine);
    if (ss->len > lim->max_message_size) {
        snprintf(err, errlen, "message of %zu bytes exceeds limits.max_message_size (%llu)",
                 ss->len, lim->max_message_size);
        return AS_SESSION_TOO_LARGE;
    }
    if (as_task_set_message(ss->task, ss->msg, ss->len, err, errlen) != AS_MSG_OK)
        return AS_SESSION_TOO_LARGE;
    return AS_SESSION_OK;
}

/* The message killed a worker before (poison.h): answer it without
 * running a plugin, instead of killing this worker too. */
static void answer_poison(struct as_session *ss, const struct as_poison_entry *pe)
{
    struct as_session_ctx *sc = ss->sc;
    struct as_task *t = ss->task;
    char hex[17], crashes[32];
    as_poison_hex(ss->digest, hex);
    snprintf(crashes, sizeof crashes, "crashes=%u", pe->crashes);
    const char *why = (pe->flags & AS_POISON_CULPRIT) ? "its scan was running"
                      : (pe->flags & AS_POISON_SOLE) ? "it was the only scan in flight"
                      : "it was in flight at several crashes";
    as_task_add_symbol(t, "AUTHSCAN_POISON", 1.0, hex, crashes, (const char *)NULL);
    /* above every plugin and site force: nothing else runs anyway */
    as_task_force_action(t, sc->poison_action, AS_FORCE_EXACT, AS_PRIO_SITE + 1, NULL,
                         "poison");
    as_task_skip(t);
    as_stats_poison(as_engine_stats(sc->engine));
    as_task_log(t, AS_LOG_WARN, "message %s killed a worker before (%s; crashes=%u): answered "
                "'%s' without scanning (poison.action)", hex, why, pe->crashes,
                as_action_name(sc->poison_action));
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
    /* a forced action names who forced it (a Lua site rule, DMARC...) */
    /* and a policy it did not apply as published, with why */
    const char *ovr = as_task_override_text(t);
    as_task_log(t, AS_LOG_INFO, "ip=%s from=%s qid=%s action=\"%s\"%s%s%s%s%s score=%.2f/%.2f "
                "symbols=[%s] time=%.3fms%s",
                env->ip ? env->ip : "-", env->mail_from ? env->mail_from : "-",
                env->queue_id ? env->queue_id : "-", as_action_name(v->action),
                v->forced_by ? " forced_by=" : "", v->forced_by ? v->forced_by : "",
                ovr ? " override=\"" : "", ovr ? ovr : "", ovr ? "\"" : "",
                v->score, v->required_score, syms.data ? syms.data : "",
                as_task_elapsed(t) * 1000, v->timed_out ? " timed_out" : "");
    sbuf_free(&syms);
}

static void session_done(struct as_task *t, void *arg)
{
    struct as_session *ss = arg;
    ss->done(ss, ss->done_arg);
    log_verdict(t);
    session_free(ss);
}

enum as_session_error as_session_start(struct as_session *ss, as_session_fill_fn fill,
                                       void *fill_arg, as_session_done_fn done, void *done_arg,
                                       char *err, size_t errlen)
{
    struct as_session_ctx *sc = ss->sc;
    uint64_t mark = as_task_enter(ss->task);
    enum as_session_error rc = session_fill(ss, fill, fill_arg, err, errlen);
    as_task_leave(mark);
    if (rc != AS_SESSION_OK) {
        as_task_log(ss->task, AS_LOG_NOTICE, "rejected request from %s: %s", ss->peer, err);
        session_free(ss);
        as_session_count_error(sc);
        return rc;
    }
    struct as_poison_entry pe;
    if (sc->poison_enable && as_poison_lookup(as_poison_self(), ss->digest, as_now(), &pe))
        answer_poison(ss, &pe);
    ss->done = done;
    ss->done_arg = done_arg;
    as_task_run(ss->task, session_done, ss);
    return AS_SESSION_OK;
}

void as_session_cancel(struct as_session *ss)
{
    as_task_log(ss->task, AS_LOG_NOTICE, "client went away after %.3fms; scan cancelled",
                as_task_elapsed(ss->task) * 1000);
    session_free(ss);
}

enum as_session_error as_session_envelope_set(struct as_task *t, const char *name,
                                              const char *value, char *err, size_t errlen)
{
    struct as_envelope *env = as_task_envelope_mut(t);
    struct as_pool *pool = as_task_pool(t);
    if (as_strcaseeq(name, "IP")) {
        if (as_task_set_ip(t, value) < 0) {
            snprintf(err, errlen, "invalid client address in IP: '%.64s'", value);
            return AS_SESSION_BAD_REQUEST;
        }
    } else if (as_strcaseeq(name, "Helo")) {
        env->helo = as_pool_strdup(pool, value);
    } else if (as_strcaseeq(name, "Hostname")) {
        env->hostname = as_pool_strdup(pool, value);
    } else if (as_strcaseeq(name, "From")) {
        as_task_set_mail_from(t, value);
    } else if (as_strcaseeq(name, "Rcpt")) {
        as_task_add_rcpt(t, value);
    } else if (as_strcaseeq(name, "Queue-Id")) {
        env->queue_id = as_pool_strdup(pool, value);
    } else if (as_strcaseeq(name, "User")) {
        if (*value) env->user = as_pool_strdup(pool, value);
    } else if (as_strcaseeq(name, "Settings-ID")) {
        env->settings_id = as_pool_strdup(pool, value);
    } else if (as_strcaseeq(name, "MTA-Name")) {
        env->mta_name = as_pool_strdup(pool, value);
    }
    return AS_SESSION_OK;
}
