/*
 * spamd_adapter.c - see spamd_adapter.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include "mail/message.h"
#include "net/protocol.h"
#include "net/server.h"
#include "net/spamd_adapter.h"
#include "net/spamd_proto.h"
#include "scan/engine.h"
#include "scan/session.h"
#include "scan/symbols.h"
#include "scan/task.h"
#include "util/config.h"
#include "util/log.h"
#include "util/pool.h"

/* Most networks in each of spamd.trusted_networks and
 * spamd.internal_networks. */
#define SPAMD_MAX_NETS 256

/* Per worker. */
struct spamd {
    struct as_session_ctx *sc;
    unsigned spam_actions;                 /* bit per enum as_action */
    /* trusted and internal networks together: a hop from either is one
     * of the site's own, and the walk down the Received fields goes on */
    struct as_spamd_net nets[2 * SPAMD_MAX_NETS];
    size_t nnets;
    double header_timeout, read_timeout;
    size_t max_message;
};

enum spamd_phase { SP_HEAD, SP_BODY, SP_SCAN, SP_DONE };

/* One connection, one request. */
struct spamd_conn {
    struct spamd *s;
    struct as_conn *c;
    enum spamd_phase phase;
    struct as_spamd_request req;
    struct sbuf body;
    const char *msg;                /* the body, owned by the session, while it starts */
    size_t msg_len;
    struct as_session *ss;
};

/* ---------------------------------------------------------------- */
/* replies                                                           */

/* An error line, then close; spamc passes the message through. */
static void reply_error(struct spamd_conn *sc, int ex, const char *msg)
{
    char line[512];
    int n = snprintf(line, sizeof line, "SPAMD/1.5 %d %s %s\r\n", ex, as_spamd_ex_name(ex), msg);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    as_conn_write(sc->c, line, (size_t)n);
    sc->phase = SP_DONE;
    as_conn_close(sc->c);
}

static int is_spam(const struct spamd *s, const struct as_verdict *v)
{
    return (s->spam_actions >> v->action) & 1u;
}

static double finite_or_zero(double d) { return isfinite(d) ? d : 0; }

/* "Yes, score=2.0 required=15.0 tests=A,B action=reject" */
static void status_value(const struct as_task *t, int spam, struct sbuf *b)
{
    const struct as_verdict *v = as_task_verdict(t);
    sbuf_printf(b, "%s, score=%.1f required=%.1f tests=", spam ? "Yes" : "No",
                finite_or_zero(v->score), finite_or_zero(v->required_score));
    size_t n = as_task_symbol_count(t);
    for (size_t i = 0; i < n; i++)
        sbuf_printf(b, "%s%s", i ? "," : "", as_task_symbol_at(t, i)->sym->name);
    if (!n) sbuf_adds(b, "none");
    sbuf_printf(b, " action=%s", as_action_name(v->action));
}

static void set_removed(const struct as_message *m, const char *name, size_t nth, int all,
                        unsigned char *removed)
{
    size_t k = 0;
    size_t nl = strlen(name);
    for (size_t i = 0; i < m->nfields; i++) {
        const struct as_header *h = &m->fields[i];
        if (h->name.len != nl || !as_memcaseeq(h->name.ptr, name, nl)) continue;
        k++;
        if (all || k == nth) removed[i] = 1;
    }
}

/* The message with our header fields, as PROCESS and HEADERS return it:
 * the scan's additions and the X-Spam fields on top (where an MTA's
 * milter insert at position 0 puts them), the message's own fields less
 * the removed ones, then the body (unless headers_only). */
static void write_rewritten(const struct spamd *s, const struct as_task *t, int spam,
                            int headers_only, struct sbuf *b)
{
    const struct as_message *m = as_task_message(t);
    const char *eol = as_msg_crlf(m) ? "\r\n" : "\n";
    unsigned char *removed = xcalloc(m->nfields ? m->nfields : 1, 1);
    const struct as_task_header_op *ops;
    size_t n = as_task_header_ops(t, &ops, 1);
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = as_strcaseeq(ops[j].name, ops[i].name);
        if (seen) continue;
        int all, *pos;
        size_t k = as_task_removal_positions(t, ops + i, n - i, &all, &pos);
        if (all) set_removed(m, ops[i].name, 0, 1, removed);
        for (size_t p = 0; p < k && !all; p++)
            set_removed(m, ops[i].name, (size_t)pos[p], 0, removed);
        free(pos);
    }
    /* ours replace any that came with the message (SpamAssassin too) */
    set_removed(m, "X-Spam-Flag", 0, 1, removed);
    set_removed(m, "X-Spam-Status", 0, 1, removed);

    n = as_task_header_ops(t, &ops, 0);
    for (size_t i = 0; i < n; i++) sbuf_printf(b, "%s: %s%s", ops[i].name, ops[i].value, eol);
    if (spam) sbuf_printf(b, "X-Spam-Flag: YES%s", eol);
    sbuf_adds(b, "X-Spam-Status: ");
    status_value(t, spam, b);
    sbuf_adds(b, eol);
    for (size_t i = 0; i < m->nfields; i++) {
        if (removed[i]) continue;
        sbuf_add(b, m->fields[i].raw.ptr, m->fields[i].raw.len);
        sbuf_adds(b, eol);
    }
    free(removed);
    sbuf_adds(b, eol);
    if (!headers_only && m->body_offset < m->len)
        sbuf_add(b, m->data + m->body_offset, m->len - m->body_offset);
    AS_UNUSED(s);
}

static void write_report(const struct as_task *t, int spam, struct sbuf *b)
{
    const struct as_verdict *v = as_task_verdict(t);
    sbuf_printf(b, "authscan %s: action \"%s\"%s%s%s\n\n", spam ? "flags this message as spam"
                : "does not flag this message", as_action_name(v->action),
                v->smtp_message ? " (" : "", v->smtp_message ? v->smtp_message : "",
                v->smtp_message ? ")" : "");
    sbuf_printf(b, "Content analysis details:   (%.1f points, %.1f required)\n\n",
                finite_or_zero(v->score), finite_or_zero(v->required_score));
    sbuf_adds(b, " pts rule name              description\n"
                 "---- ---------------------- --------------------------------------------------\n");
    for (size_t i = 0; i < as_task_symbol_count(t); i++) {
        const struct as_task_symbol *sym = as_task_symbol_at(t, i);
        sbuf_printf(b, "%4.1f %-22s %s", sym->score, sym->sym->name,
                    sym->sym->description ? sym->sym->description : "");
        for (size_t k = 0; k < sym->nopts; k++)
            sbuf_printf(b, "%s%s", k ? ", " : " [", sym->opts[k]);
        sbuf_adds(b, sym->nopts ? "]\n" : "\n");
    }
}

static void scan_done(struct as_session *ss, void *arg)
{
    struct spamd_conn *sc = arg;
    const struct as_task *t = as_session_task(ss);
    const struct as_verdict *v = as_task_verdict(t);
    int spam = is_spam(sc->s, v);
    sc->ss = NULL;
    struct sbuf body = {0}, head = {0};
    switch (sc->req.verb) {
    case AS_SPAMD_SYMBOLS:
        for (size_t i = 0; i < as_task_symbol_count(t); i++)
            sbuf_printf(&body, "%s%s", i ? "," : "", as_task_symbol_at(t, i)->sym->name);
        break;
    case AS_SPAMD_REPORT:
        write_report(t, spam, &body);
        break;
    case AS_SPAMD_REPORT_IFSPAM:
        if (spam) write_report(t, spam, &body);
        break;
    case AS_SPAMD_PROCESS:
        write_rewritten(sc->s, t, spam, 0, &body);
        break;
    case AS_SPAMD_HEADERS:
        write_rewritten(sc->s, t, spam, 1, &body);
        break;
    default:   /* CHECK */
        break;
    }
    sbuf_adds(&head, "SPAMD/1.1 0 EX_OK\r\n");
    if (sc->req.verb != AS_SPAMD_CHECK) sbuf_printf(&head, "Content-length: %zu\r\n", body.len);
    /* the space before ';' is what spamc's parser expects */
    sbuf_printf(&head, "Spam: %s ; %.1f / %.1f\r\n\r\n", spam ? "True" : "False",
                finite_or_zero(v->score), finite_or_zero(v->required_score));
    as_conn_write(sc->c, head.data, head.len);
    if (body.len) as_conn_write(sc->c, body.data, body.len);
    sbuf_free(&head);
    sbuf_free(&body);
    sc->phase = SP_DONE;
    as_conn_close(sc->c);
}

/* ---------------------------------------------------------------- */
/* the envelope, from the message                                    */

static enum as_session_error fill_envelope(struct as_task *t, void *arg, char *err,
                                           size_t errlen)
{
    AS_UNUSED(err);
    AS_UNUSED(errlen);
    struct spamd_conn *sc = arg;
    struct spamd *s = sc->s;
    const struct as_limits *l = as_engine_limits(s->sc->engine);
    struct as_msg_limits lim = { .max_headers = l->max_headers,
                                 .max_header_size = l->max_header_size };
    struct as_message *m;
    char perr[128];
    if (sc->req.user[0]) as_task_log(t, AS_LOG_DEBUG, "spamd: User: %s", sc->req.user);
    /* a parse error is the session's to report, on its own parse */
    if (as_message_parse(as_task_pool(t), sc->msg, sc->msg_len, &lim, &m, perr,
                         sizeof perr) != AS_MSG_OK)
        return AS_SESSION_OK;
    struct as_pool *pool = as_task_pool(t);
    const char *rp = NULL, *ip = NULL, *helo = NULL;
    size_t nreceived = 0;
    for (size_t i = 0; i < m->nfields; i++) {
        const struct as_header *h = &m->fields[i];
        if (!rp && h->name.len == 11 && as_memcaseeq(h->name.ptr, "Return-Path", 11)) {
            rp = as_header_unfold_pool(pool, h, NULL);
            continue;
        }
        if (ip || !s->nnets || h->name.len != 8 || !as_memcaseeq(h->name.ptr, "Received", 8))
            continue;
        nreceived++;
        char hbuf[256], ibuf[64];
        if (as_spamd_received_from(as_header_unfold_pool(pool, h, NULL), hbuf, sizeof hbuf, ibuf,
                                   sizeof ibuf) < 0)
            continue;
        if (as_spamd_net_match(s->nets, s->nnets, ibuf)) continue;   /* our own relay */
        ip = as_pool_strdup(pool, ibuf);
        helo = hbuf[0] ? as_pool_strdup(pool, hbuf) : NULL;
    }
    if (rp) as_task_set_mail_from(t, rp);
    if (ip && as_task_set_ip(t, ip) == 0) {
        if (helo) as_task_envelope_mut(t)->helo = helo;
    } else if (!s->nnets) {
        as_task_log(t, AS_LOG_INFO, "spamd: no client address: spamd.trusted_networks is not "
                    "set (nor spamd.internal_networks), so no Received field is trusted to "
                    "name the client (SPF: none)");
    } else {
        as_task_log(t, AS_LOG_INFO, "spamd: no client address: none of %zu Received field(s) "
                    "names a relay outside spamd.trusted_networks and spamd.internal_networks "
                    "(SPF: none)", nreceived);
    }
    return AS_SESSION_OK;
}

static const int session_ex[] = {
    [AS_SESSION_OK] = AS_SPAMD_EX_OK,
    [AS_SESSION_BAD_REQUEST] = AS_SPAMD_EX_PROTOCOL,
    [AS_SESSION_TOO_LARGE] = AS_SPAMD_EX_DATAERR,
    [AS_SESSION_UNSUPPORTED] = AS_SPAMD_EX_DATAERR,
    [AS_SESSION_UNKNOWN_COMMAND] = AS_SPAMD_EX_PROTOCOL,
    [AS_SESSION_BAD_METHOD] = AS_SPAMD_EX_PROTOCOL,
};

static void start_scan(struct spamd_conn *sc)
{
    struct spamd *s = sc->s;
    char err[256] = "";
    if (sc->req.zlib) {
        struct sbuf plain = {0};
        if (as_spamd_inflate(sc->body.data ? sc->body.data : "", sc->body.len, s->max_message,
                             &plain, err, sizeof err) < 0) {
            sbuf_free(&plain);
            as_session_count_error(s->sc);
            as_conn_log_limited(sc->c, AS_SERVER_LOG_BAD_REQUEST, "spamd: %s: %s",
                                as_conn_peer(sc->c), err);
            reply_error(sc, AS_SPAMD_EX_DATAERR, err);
            return;
        }
        sbuf_free(&sc->body);
        sc->body = plain;
    }
    sc->phase = SP_SCAN;
    as_conn_set_state(sc->c, AS_CONN_BUSY);
    as_conn_timer_set(sc->c, 0);
    /* the session takes the body (the task may read it after this
     * connection is gone, in its finish stage); fill_envelope() reads it
     * as the session's message */
    size_t len = sc->body.len;
    sc->msg = sbuf_steal(&sc->body);
    sc->ss = as_session_new_owned(s->sc, as_conn_peer(sc->c), (char *)sc->msg, len);
    sc->msg_len = len;
    enum as_session_error rc = as_session_start(sc->ss, fill_envelope, sc, scan_done, sc, err,
                                                sizeof err);
    sc->msg = NULL;
    if (rc != AS_SESSION_OK) {
        sc->ss = NULL;
        reply_error(sc, session_ex[rc], err);
    }
}

/* ---------------------------------------------------------------- */
/* reading                                                           */

static void spamd_read(void *cs)
{
    struct spamd_conn *sc = cs;
    struct spamd *s = sc->s;
    struct evbuffer *in = as_conn_input(sc->c);
    if (sc->phase == SP_HEAD) {
        size_t have = evbuffer_get_length(in);
        size_t look = have < AS_SPAMD_MAX_HEAD ? have : AS_SPAMD_MAX_HEAD;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)look);
        int ex = 0;
        char err[256];
        int rc = as_spamd_parse_head(p ? p : "", look, &sc->req, &ex, err, sizeof err);
        if (rc == 0) return;
        as_conn_set_state(sc->c, AS_CONN_READING);
        if (rc < 0) {
            as_session_count_error(s->sc);
            as_conn_log_limited(sc->c, AS_SERVER_LOG_BAD_REQUEST, "spamd: %s: %s",
                                as_conn_peer(sc->c), err);
            reply_error(sc, ex, err);
            return;
        }
        evbuffer_drain(in, sc->req.head_len);
        switch (sc->req.verb) {
        case AS_SPAMD_PING:
            as_conn_write(sc->c, "SPAMD/1.5 0 PONG\r\n", 18);
            sc->phase = SP_DONE;
            as_conn_close(sc->c);
            return;
        case AS_SPAMD_SKIP:
            sc->phase = SP_DONE;
            as_conn_close(sc->c);
            return;
        case AS_SPAMD_TELL:
            reply_error(sc, AS_SPAMD_EX_UNAVAILABLE, "TELL is not supported: authscan checks "
                        "mail authentication and has nothing to learn (no Bayes database)");
            return;
        default:
            break;
        }
        if (sc->req.content_length < 0) {
            as_session_count_error(s->sc);
            reply_error(sc, AS_SPAMD_EX_PROTOCOL, "Content-length is required");
            return;
        }
        if ((unsigned long long)sc->req.content_length > s->max_message) {
            char msg[160];
            snprintf(msg, sizeof msg, "message of %lld bytes exceeds limits.max_message_size "
                     "(%zu)", sc->req.content_length, s->max_message);
            as_session_count_error(s->sc);
            reply_error(sc, AS_SPAMD_EX_DATAERR, msg);
            return;
        }
        sc->phase = SP_BODY;
        sbuf_reserve(&sc->body, (size_t)sc->req.content_length + 1);
        as_conn_timer_set(sc->c, s->read_timeout);
    }
    if (sc->phase == SP_BODY) {
        size_t want = (size_t)sc->req.content_length - sc->body.len;
        size_t have = evbuffer_get_length(in);
        size_t take = have < want ? have : want;
        if (take) {
            sbuf_reserve(&sc->body, take);
            evbuffer_remove(in, sc->body.data + sc->body.len, take);
            sc->body.len += take;
        }
        if (sc->body.len == (size_t)sc->req.content_length) start_scan(sc);
        return;
    }
    /* SP_SCAN: bytes after the body are not part of any request */
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void spamd_eof(void *cs)
{
    struct spamd_conn *sc = cs;
    switch (sc->phase) {
    case SP_HEAD:
        if (evbuffer_get_length(as_conn_input(sc->c)) == 0) {
            as_conn_close(sc->c);
            return;
        }
        as_session_count_error(sc->s->sc);
        reply_error(sc, AS_SPAMD_EX_PROTOCOL, "request head cut short");
        return;
    case SP_BODY: {
        char msg[160];
        snprintf(msg, sizeof msg, "body of %zu bytes is shorter than Content-length %lld",
                 sc->body.len, sc->req.content_length);
        as_session_count_error(sc->s->sc);
        as_conn_log_limited(sc->c, AS_SERVER_LOG_BAD_REQUEST, "spamd: %s: %s",
                            as_conn_peer(sc->c), msg);
        reply_error(sc, AS_SPAMD_EX_PROTOCOL, msg);
        return;
    }
    default:
        /* spamc half-closes after the body: the reply still goes out */
        return;
    }
}

static void spamd_timeout(void *cs)
{
    struct spamd_conn *sc = cs;
    if (sc->phase == SP_HEAD && evbuffer_get_length(as_conn_input(sc->c)) == 0) {
        as_conn_log_limited(sc->c, AS_SERVER_LOG_SILENT, "spamd: %s: no request in %.0fs: "
                            "closing", as_conn_peer(sc->c), sc->s->header_timeout);
        as_conn_abort(sc->c);
        return;
    }
    as_conn_log_limited(sc->c, AS_SERVER_LOG_TIMEOUT, "spamd: %s: request not complete in "
                        "time (limits.%s_timeout)", as_conn_peer(sc->c),
                        sc->phase == SP_HEAD ? "header" : "read");
    as_session_count_error(sc->s->sc);
    reply_error(sc, AS_SPAMD_EX_TIMEOUT, "request not complete in time");
}

static void spamd_close(void *cs)
{
    struct spamd_conn *sc = cs;
    if (sc->ss) as_session_cancel(sc->ss);
    sbuf_free(&sc->body);
    free(sc);
}

static void *spamd_open(void *ps, struct as_conn *c)
{
    struct spamd *s = ps;
    struct spamd_conn *sc = xcalloc(1, sizeof *sc);
    sc->s = s;
    sc->c = c;
    sc->phase = SP_HEAD;
    as_conn_timer_set(c, s->header_timeout);
    return sc;
}

static size_t spamd_refusal(char *buf, size_t len, const char *why)
{
    int n = snprintf(buf, len, "SPAMD/1.5 %d EX_TEMPFAIL %s\r\n", AS_SPAMD_EX_TEMPFAIL, why);
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

/* ---------------------------------------------------------------- */
/* configuration                                                     */

static const char *const default_spam_actions[] = { "reject", "soft_reject", "quarantine" };

static void *spamd_start(struct as_session_ctx *ssc, char *err, size_t errlen)
{
    AS_UNUSED(err);
    AS_UNUSED(errlen);
    const struct as_config *cfg = as_engine_config(ssc->engine);
    const struct as_limits *lim = as_engine_limits(ssc->engine);
    struct spamd *s = xcalloc(1, sizeof *s);
    s->sc = ssc;
    const char *const *items;
    size_t n = as_config_list(cfg, "spamd.spam_actions", &items);
    if (!as_config_find(cfg, "spamd.spam_actions")) {
        items = default_spam_actions;
        n = AS_ARRAY_LEN(default_spam_actions);
    }
    for (size_t i = 0; i < n; i++) {
        int a = as_action_parse(items[i]);
        if (a >= 0) s->spam_actions |= 1u << a;     /* checked at load */
    }
    static const char *const net_keys[] = { "spamd.trusted_networks", "spamd.internal_networks" };
    for (size_t k = 0; k < AS_ARRAY_LEN(net_keys); k++) {
        n = as_config_list(cfg, net_keys[k], &items);
        for (size_t i = 0; i < n && i < SPAMD_MAX_NETS; i++)
            if (as_spamd_net_parse(items[i], &s->nets[s->nnets]) == 0) s->nnets++;
    }
    s->header_timeout = lim->header_timeout;
    s->read_timeout = lim->read_timeout;
    s->max_message = (size_t)lim->max_message_size;
    return s;
}

static void spamd_stop(void *ps)
{
    free(ps);
}

static int spamd_check(const struct as_config *cfg, int listened, char *err, size_t errlen)
{
    for (size_t i = 0; i < as_config_count(cfg); i++) {
        const struct as_config_entry *e = as_config_at(cfg, i);
        if (strncmp(e->key, "spamd.", 6) != 0) continue;
        if (!listened)
            return as_config_error(err, errlen, e, "'%s' has no effect: no 'listen' entry "
                                   "speaks spamd (spamd@ADDR)", e->key);
    }
    const char *const *items;
    size_t n = as_config_list(cfg, "spamd.spam_actions", &items);
    for (size_t i = 0; i < n; i++)
        if (as_action_parse(items[i]) <= 0)
            return as_config_error(err, errlen,
                                   as_config_find_item(cfg, "spamd.spam_actions", items[i]),
                                   "bad item '%s' in 'spamd.spam_actions': expected actions "
                                   "(greylist, add_header, rewrite_subject, quarantine, "
                                   "soft_reject, reject)", items[i]);
    static const char *const net_keys[] = { "spamd.trusted_networks", "spamd.internal_networks" };
    for (size_t k = 0; k < AS_ARRAY_LEN(net_keys); k++) {
        n = as_config_list(cfg, net_keys[k], &items);
        if (n > SPAMD_MAX_NETS)
            return as_config_error(err, errlen, as_config_find(cfg, net_keys[k]),
                                   "'%s': more than %d networks", net_keys[k], SPAMD_MAX_NETS);
        for (size_t i = 0; i < n; i++) {
            struct as_spamd_net net;
            if (as_spamd_net_parse(items[i], &net) < 0)
                return as_config_error(err, errlen, as_config_find_item(cfg, net_keys[k], items[i]),
                                       "bad item '%s' in '%s': expected an IPv4 or IPv6 network "
                                       "like 192.0.2.0/24 or 2001:db8::/32", items[i],
                                       net_keys[k]);
        }
    }
    return 0;
}

const struct as_protocol as_spamd_protocol = {
    .name = "spamd",
    .start = spamd_start,
    .stop = spamd_stop,
    .open = spamd_open,
    .read = spamd_read,
    .eof = spamd_eof,
    .timeout = spamd_timeout,
    .close = spamd_close,
    .refusal = spamd_refusal,
    .check = spamd_check,
};
