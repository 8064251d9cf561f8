/*
 * milter_adapter.c - see milter_adapter.h.
 *
 * Why not libmilter: it runs one thread per MTA connection and calls the
 * filter synchronously, and it owns the accept loop.  A scan here is
 * asynchronous work on the worker's libevent loop (DNS, Redis), so
 * libmilter would need a second threading model beside the loop; the
 * wire protocol is small enough to speak directly (rspamd does the same).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include "net/milter_adapter.h"
#include "net/milter_proto.h"
#include "net/protocol.h"
#include "net/server.h"
#include "scan/engine.h"
#include "scan/session.h"
#include "scan/task.h"
#include "util/config.h"
#include "util/log.h"
#include "util/pool.h"

/* Envelope recipients kept per message: Postfix's default
 * smtpd_recipient_limit; the scan does not look at recipients beyond
 * settings, so the rest are counted and not kept. */
#define MILTER_MAX_RCPTS 1000
/* A packet may carry at most this much more than the largest message
 * (a body chunk is 64 KiB in practice; headers and macros are small). */
#define MILTER_PACKET_MARGIN (64 * 1024)
/* Longest macro value kept (client names, TLS ciphers). */
#define MILTER_MAX_MACRO 512
/* Reply text taken from the verdict: an SMTP reply line is at most 512
 * bytes with its code (RFC 5321 4.5.3.1.5). */
#define MILTER_MAX_REPLY_TEXT 400

/* What the MTA is told for a verdict action. */
enum milter_reply { MR_ACCEPT, MR_ADD_HEADER, MR_QUARANTINE, MR_TEMPFAIL, MR_REJECT, MR_DISCARD };
static const char *const milter_reply_names[] = {
    [MR_ACCEPT] = "accept",       [MR_ADD_HEADER] = "add_header", [MR_QUARANTINE] = "quarantine",
    [MR_TEMPFAIL] = "tempfail",   [MR_REJECT] = "reject",         [MR_DISCARD] = "discard",
};
/* Defaults per action (rspamd's proxy: greylist and soft reject are a
 * temporary failure, rewrite subject marks the message as add header does). */
static const enum milter_reply milter_default_reply[AS_ACTION__COUNT] = {
    [AS_ACTION_NO_ACTION] = MR_ACCEPT,        [AS_ACTION_GREYLIST] = MR_TEMPFAIL,
    [AS_ACTION_ADD_HEADER] = MR_ADD_HEADER,   [AS_ACTION_REWRITE_SUBJECT] = MR_ADD_HEADER,
    [AS_ACTION_QUARANTINE] = MR_QUARANTINE,   [AS_ACTION_SOFT_REJECT] = MR_TEMPFAIL,
    [AS_ACTION_REJECT] = MR_REJECT,
};

/* Per worker. */
struct milter {
    struct as_session_ctx *sc;
    enum milter_reply on[AS_ACTION__COUNT];
    const char *reject_code, *tempfail_code;
    const char *spam_header, *status_header;   /* NULL: not added */
    double timeout;
    size_t max_message, max_packet;
};

/* One MTA connection: one SMTP session at a time. */
struct milter_conn {
    struct milter *m;
    struct as_conn *c;
    uint32_t actions, pflags;       /* negotiated */
    int negotiated;
    int in_session;                 /* between CONNECT and QUIT/QUIT_NC */
    struct as_session *ss;          /* scan in flight: input waits */
    int resume;                     /* the timer fires to read what waited */
    int acked;                      /* as_conn_ack_now() since our last reply */
    double quiet_since;             /* the last whole packet (or accept, or a verdict):
                                       milter.timeout counts from it, so bytes
                                       trickling in do not keep a connection */

    /* SMTP session */
    char *client_addr, *client_name, *helo;
    char *mta_name, *daemon_name, *auth_user, *tls;
    /* message */
    char *queue_id, *mail_from;
    char **rcpts;
    size_t nrcpts, rcpts_dropped;
    struct sbuf msg;
    size_t msg_hint;                /* size of the last message: the next buffer's */
    int in_body, oversize;
    struct as_milter_cmd cmd;       /* the command being run (2 KiB: not on the stack per packet) */
};

static void replace(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? xstrndup(v, strnlen(v, MILTER_MAX_MACRO)) : NULL;
}

static void message_reset(struct milter_conn *mc)
{
    replace(&mc->queue_id, NULL);
    replace(&mc->mail_from, NULL);
    for (size_t i = 0; i < mc->nrcpts; i++) free(mc->rcpts[i]);
    free(mc->rcpts);
    mc->rcpts = NULL;
    mc->nrcpts = mc->rcpts_dropped = 0;
    /* a large message's buffer is not kept for the next one */
    if (mc->msg.cap > (1u << 20)) sbuf_free(&mc->msg);
    else sbuf_reset(&mc->msg);
    mc->in_body = mc->oversize = 0;
    replace(&mc->auth_user, NULL);
}

static void session_reset(struct milter_conn *mc)
{
    message_reset(mc);
    replace(&mc->client_addr, NULL);
    replace(&mc->client_name, NULL);
    replace(&mc->helo, NULL);
    replace(&mc->daemon_name, NULL);
    replace(&mc->tls, NULL);
    mc->in_session = 0;
}

static void send_packet(struct milter_conn *mc, struct sbuf *b)
{
    if (b->len) {
        as_conn_write(mc->c, b->data, b->len);
        mc->acked = 0;
    }
    sbuf_free(b);
}

static void reply_simple(struct milter_conn *mc, char code)
{
    struct sbuf b = {0};
    as_milter_put(&b, code, NULL, 0);
    send_packet(mc, &b);
}

/* CONTINUE, unless the step was negotiated as "no reply". */
static void reply_continue(struct milter_conn *mc, uint32_t nr_flag)
{
    if (!(mc->pflags & nr_flag)) reply_simple(mc, AS_MILTER_R_CONTINUE);
}

/* A malformed packet or a protocol violation: one log line, then close
 * (the byte stream cannot be trusted past it).  The MTA applies its own
 * default (Postfix: milter_default_action). */
static void conn_bad(struct milter_conn *mc, const char *why)
{
    as_conn_log_limited(mc->c, AS_SERVER_LOG_BAD_REQUEST, "milter: %s: %s: closing the connection",
                        as_conn_peer(mc->c), why);
    as_conn_abort(mc->c);
}

/* ---------------------------------------------------------------- */
/* macros                                                            */

static const char *macro_name(const char *n, size_t *len)
{
    /* Sendmail writes "{i}" where Postfix writes "i" */
    *len = strlen(n);
    if (*len >= 2 && n[0] == '{' && n[*len - 1] == '}') {
        *len -= 2;
        return n + 1;
    }
    return n;
}

static int macro_is(const char *n, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(n, want, len) == 0;
}

static void take_macros(struct milter_conn *mc, const struct as_milter_cmd *cmd)
{
    for (size_t i = 0; i + 1 < cmd->nargs; i += 2) {
        size_t len;
        const char *n = macro_name(cmd->args[i], &len);
        const char *v = cmd->args[i + 1];
        if (macro_is(n, len, "i")) replace(&mc->queue_id, *v ? v : NULL);
        else if (macro_is(n, len, "auth_authen")) replace(&mc->auth_user, *v ? v : NULL);
        else if (macro_is(n, len, "j")) replace(&mc->mta_name, *v ? v : NULL);
        else if (macro_is(n, len, "daemon_name")) replace(&mc->daemon_name, v);
        else if (macro_is(n, len, "client_addr") && !mc->client_addr) replace(&mc->client_addr, v);
        else if (macro_is(n, len, "client_name") && !mc->client_name) replace(&mc->client_name, v);
        else if (macro_is(n, len, "tls_version") && *v) replace(&mc->tls, v);
    }
}

/* ---------------------------------------------------------------- */
/* the verdict                                                       */

/* The scan's header changes: removals first (positions refer to the
 * message as the MTA sent it), each name from its last field to its
 * first; then additions, inserted at their order (0: the top), as
 * rspamd's proxy does. */
static void put_header_changes(struct milter_conn *mc, const struct as_task *t, struct sbuf *b)
{
    const struct as_task_header_op *ops;
    size_t n = as_task_header_ops(t, &ops, 1);
    if (n && !(mc->actions & AS_MILTER_F_CHGHDRS)) {
        as_task_log(t, AS_LOG_WARN, "milter: the MTA does not allow header changes: %zu "
                    "removal(s) not applied", n);
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = as_strcaseeq(ops[j].name, ops[i].name);
        if (seen) continue;
        int all, *pos;
        size_t k = as_task_removal_positions(t, ops + i, n - i, &all, &pos);
        if (all) {
            free(pos);
            k = as_msg_header_count(as_task_message(t), ops[i].name);
            for (size_t p = k; p > 0; p--)
                as_milter_put_strings(b, AS_MILTER_R_CHGHEADER, (long)p, ops[i].name, "",
                                      (const char *)NULL);
            continue;
        }
        for (size_t p = 0; p < k; p++)
            as_milter_put_strings(b, AS_MILTER_R_CHGHEADER, pos[p], ops[i].name, "",
                                  (const char *)NULL);
        free(pos);
    }
    n = as_task_header_ops(t, &ops, 0);
    if (n && !(mc->actions & AS_MILTER_F_ADDHDRS)) {
        as_task_log(t, AS_LOG_WARN, "milter: the MTA does not allow adding headers: %zu "
                    "field(s) not added", n);
        return;
    }
    /* inserted in reverse, so that fields added at the same position keep
     * the order in which the scan added them */
    for (size_t i = n; i-- > 0;) {
        /* HDR_LEADSPC: the value goes out as it will appear after the colon */
        char *v = xmalloc(strlen(ops[i].value) + 2);
        v[0] = ' ';
        strcpy(v + 1, ops[i].value);
        const char *val = (mc->pflags & AS_MILTER_P_HDR_LEADSPC) ? v : v + 1;
        if (ops[i].order_or_index >= 0)
            as_milter_put_strings(b, AS_MILTER_R_INSHEADER, ops[i].order_or_index, ops[i].name,
                                  val, (const char *)NULL);
        else
            as_milter_put_strings(b, AS_MILTER_R_ADDHEADER, -1, ops[i].name, val,
                                  (const char *)NULL);
        free(v);
    }
}

static void put_add(struct milter_conn *mc, struct sbuf *b, const char *name, const char *value)
{
    if (!(mc->actions & AS_MILTER_F_ADDHDRS)) return;
    struct sbuf v = {0};
    sbuf_printf(&v, "%s%s", (mc->pflags & AS_MILTER_P_HDR_LEADSPC) ? " " : "", value);
    as_milter_put_strings(b, AS_MILTER_R_ADDHEADER, -1, name, v.data, (const char *)NULL);
    sbuf_free(&v);
}

/* Length of an enhanced status code (RFC 3463, "5.7.1") at the start of
 * s followed by a space, or 0. */
static size_t enhanced_code_len(const char *s)
{
    const char *p = s;
    if (*p != '2' && *p != '4' && *p != '5') return 0;
    p++;
    for (int part = 0; part < 2; part++) {
        if (*p++ != '.') return 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') p++, digits++;
        if (digits < 1 || digits > 3) return 0;
    }
    return *p == ' ' ? (size_t)(p - s) : 0;
}

/* "550 5.7.1 text".  Texts usually carry their own enhanced code ("5.7.1
 * Rejected per DMARC policy of d", rspamd's convention): it replaces the
 * configured one when its class matches the reply's, and is dropped when
 * it does not (a "5.x.x" text on a tempfail). */
static void put_reply(struct sbuf *b, const char *code, const char *text)
{
    struct sbuf r = {0};
    size_t el = enhanced_code_len(text);
    if (el && text[0] == code[0]) {
        sbuf_add(&r, code, 4);
        sbuf_add(&r, text, el);
        sbuf_addc(&r, ' ');
    } else {
        sbuf_printf(&r, "%s ", code);
    }
    if (el) text += el + 1;
    as_milter_reply_text(&r, text, MILTER_MAX_REPLY_TEXT);
    sbuf_addc(&r, '\0');
    as_milter_put(b, AS_MILTER_R_REPLYCODE, r.data, r.len);
    sbuf_free(&r);
}

static void write_verdict(struct milter_conn *mc, const struct as_task *t)
{
    struct milter *m = mc->m;
    const struct as_verdict *v = as_task_verdict(t);
    enum milter_reply what = m->on[v->action];
    const char *text = v->smtp_message ? v->smtp_message : as_action_name(v->action);
    struct sbuf b = {0};
    if (what == MR_QUARANTINE && !(mc->actions & AS_MILTER_F_QUARANTINE)) {
        as_task_log(t, AS_LOG_WARN, "milter: the MTA does not allow quarantine: message "
                    "marked as spam instead");
        what = MR_ADD_HEADER;
    }
    switch (what) {
    case MR_REJECT:
        put_reply(&b, m->reject_code, text);
        break;
    case MR_TEMPFAIL:
        put_reply(&b, m->tempfail_code, text);
        break;
    case MR_DISCARD:
        as_milter_put(&b, AS_MILTER_R_DISCARD, NULL, 0);
        break;
    default:
        put_header_changes(mc, t, &b);
        if (what == MR_ADD_HEADER || what == MR_QUARANTINE) {
            if (m->spam_header) put_add(mc, &b, m->spam_header, "Yes");
            if (m->status_header) {
                char st[128];
                snprintf(st, sizeof st, "Yes, score=%.2f required=%.2f action=%s", v->score,
                         v->required_score, as_action_name(v->action));
                put_add(mc, &b, m->status_header, st);
            }
        }
        if (what == MR_QUARANTINE) {
            struct sbuf r = {0};
            size_t el = enhanced_code_len(text);
            as_milter_reply_text(&r, el ? text + el + 1 : text, MILTER_MAX_REPLY_TEXT);
            sbuf_addc(&r, '\0');
            as_milter_put(&b, AS_MILTER_R_QUARANTINE, r.data, r.len);
            sbuf_free(&r);
        }
        as_milter_put(&b, AS_MILTER_R_ACCEPT, NULL, 0);
        break;
    }
    send_packet(mc, &b);
}

/* ---------------------------------------------------------------- */
/* end of message: a scan session                                    */

static enum as_session_error fill_envelope(struct as_task *t, void *arg, char *err,
                                           size_t errlen)
{
    AS_UNUSED(err);
    AS_UNUSED(errlen);
    struct milter_conn *mc = arg;
    struct as_envelope *env = as_task_envelope_mut(t);
    struct as_pool *pool = as_task_pool(t);
    if (mc->client_addr) {
        const char *a = mc->client_addr;
        if (strncasecmp(a, "IPv6:", 5) == 0) a += 5;     /* Sendmail's form */
        if (as_task_set_ip(t, a) < 0)
            as_task_log(t, AS_LOG_NOTICE, "milter: client address '%.64s' is not an IP "
                        "address: scanned without one", mc->client_addr);
    }
    /* Postfix says "unknown" when the client has no (verified) PTR name */
    if (mc->client_name && *mc->client_name && strcmp(mc->client_name, "unknown") != 0 &&
        mc->client_name[0] != '[')
        env->hostname = as_pool_strdup(pool, mc->client_name);
    if (mc->helo) env->helo = as_pool_strdup(pool, mc->helo);
    if (mc->mail_from) as_task_set_mail_from(t, mc->mail_from);
    for (size_t i = 0; i < mc->nrcpts; i++) {
        const char *r = mc->rcpts[i];
        size_t l = strlen(r);
        if (l >= 2 && r[0] == '<' && r[l - 1] == '>') {
            char *s = as_pool_memdup(pool, r + 1, l - 1);
            s[l - 2] = '\0';
            as_task_add_rcpt(t, s);
        } else {
            as_task_add_rcpt(t, r);
        }
    }
    if (mc->queue_id) env->queue_id = as_pool_strdup(pool, mc->queue_id);
    if (mc->auth_user) env->user = as_pool_strdup(pool, mc->auth_user);
    if (mc->mta_name) env->mta_name = as_pool_strdup(pool, mc->mta_name);
    if (mc->rcpts_dropped)
        as_task_log(t, AS_LOG_NOTICE, "milter: %zu recipient(s) beyond %d not passed to the scan",
                    mc->rcpts_dropped, MILTER_MAX_RCPTS);
    if (mc->tls || mc->daemon_name)
        as_task_log(t, AS_LOG_DEBUG, "milter: daemon=%s tls=%s",
                    mc->daemon_name ? mc->daemon_name : "-", mc->tls ? mc->tls : "-");
    return AS_SESSION_OK;
}

static void scan_done(struct as_session *ss, void *arg)
{
    struct milter_conn *mc = arg;
    mc->ss = NULL;
    write_verdict(mc, as_session_task(ss));
    message_reset(mc);
    as_conn_set_state(mc->c, mc->in_session ? AS_CONN_READING : AS_CONN_IDLE);
    /* input that arrived during the scan is read from the timer, outside
     * the session's callback (the session ends after this returns) */
    mc->resume = 1;
    mc->quiet_since = as_now();
    as_conn_timer_set(mc->c, 0.000001);
}

static void end_of_message(struct milter_conn *mc)
{
    struct milter *m = mc->m;
    if (!mc->in_body) sbuf_add(&mc->msg, "\r\n", 2);   /* no EOH: end the header block */
    if (mc->oversize) {
        as_conn_log_limited(mc->c, AS_SERVER_LOG_BAD_REQUEST, "milter: %s: message %s over "
                            "limits.max_message_size (%zu): accepted unscanned",
                            as_conn_peer(mc->c), mc->queue_id ? mc->queue_id : "-",
                            m->max_message);
        as_session_count_error(m->sc);
        reply_simple(mc, AS_MILTER_R_ACCEPT);
        message_reset(mc);
        return;
    }
    /* the session takes the buffer (the scan may outlive the connection) */
    size_t len = mc->msg.len;
    mc->msg_hint = len < (1u << 20) ? len + len / 8 + 64 : 0;
    struct as_session *ss = as_session_new_owned(m->sc, as_conn_peer(mc->c),
                                                 sbuf_steal(&mc->msg), len);
    mc->ss = ss;
    as_conn_set_state(mc->c, AS_CONN_BUSY);
    as_conn_timer_set(mc->c, 0);    /* the scan has its own deadline */
    char err[256] = "";
    enum as_session_error rc = as_session_start(ss, fill_envelope, mc, scan_done, mc, err,
                                                sizeof err);
    if (rc != AS_SESSION_OK) {
        mc->ss = NULL;
        as_conn_set_state(mc->c, AS_CONN_READING);
        /* the size is checked above, so this is a header limit (too many
         * fields ...): accepting unscanned would let a sender skip the
         * policy by padding the header, so the MTA is told to retry, and
         * the sender eventually gets the reason in a bounce */
        struct sbuf b = {0};
        put_reply(&b, m->tempfail_code, err);
        send_packet(mc, &b);
        message_reset(mc);
    }
}

/* ---------------------------------------------------------------- */
/* commands                                                          */

static void negotiate(struct milter_conn *mc, const struct as_milter_cmd *cmd)
{
    const uint32_t want_actions = AS_MILTER_F_ADDHDRS | AS_MILTER_F_CHGHDRS |
                                  AS_MILTER_F_QUARANTINE;
    const uint32_t want_proto = AS_MILTER_P_NR_CONN | AS_MILTER_P_NR_HELO | AS_MILTER_P_NR_MAIL |
                                AS_MILTER_P_NR_RCPT | AS_MILTER_P_NR_DATA | AS_MILTER_P_NR_UNKN |
                                AS_MILTER_P_NR_EOH | AS_MILTER_P_NR_HDR | AS_MILTER_P_NR_BODY |
                                AS_MILTER_P_HDR_LEADSPC | AS_MILTER_P_NOUNKNOWN;
    mc->actions = cmd->actions & want_actions;
    mc->pflags = cmd->protocol & want_proto;
    mc->negotiated = 1;
    uint32_t version = cmd->version < AS_MILTER_VERSION ? cmd->version : AS_MILTER_VERSION;
    struct sbuf b = {0};
    as_milter_put_optneg(&b, version, mc->actions, mc->pflags);
    send_packet(mc, &b);
    if ((mc->actions & want_actions) != want_actions || !(mc->pflags & AS_MILTER_P_HDR_LEADSPC))
        as_log(AS_LOG_INFO, "milter: %s: MTA (version %u) offers actions 0x%x protocol 0x%x: "
               "%s%s", as_conn_peer(mc->c), (unsigned)cmd->version, (unsigned)cmd->actions,
               (unsigned)cmd->protocol,
               (mc->actions & want_actions) != want_actions ? "some header changes or "
               "quarantine unavailable; " : "",
               !(mc->pflags & AS_MILTER_P_HDR_LEADSPC) ? "no HDR_LEADSPC: header values "
               "rebuilt with one space after the colon" : "");
}

/* Appends a header field as the MTA sent it.  Without HDR_LEADSPC the
 * MTA dropped the blanks after the colon; one space is the usual form.
 * Folded values come with bare LF from Postfix: lines end in CRLF here,
 * as in the message the MTA queues. */
static void add_header(struct milter_conn *mc, const char *name, const char *value)
{
    struct sbuf *b = &mc->msg;
    sbuf_adds(b, name);
    sbuf_addc(b, ':');
    if (!(mc->pflags & AS_MILTER_P_HDR_LEADSPC)) sbuf_addc(b, ' ');
    /* whole runs between line feeds: a byte at a time was 2% of a
     * message's instructions (docs/performance.md, issue 16) */
    for (const char *p = value;;) {
        const char *lf = strchr(p, '\n');
        if (!lf) {
            sbuf_adds(b, p);
            break;
        }
        int bare = lf == value || lf[-1] != '\r';
        sbuf_add(b, p, (size_t)(lf - p));
        if (bare) sbuf_add(b, "\r\n", 2);
        else sbuf_addc(b, '\n');
        p = lf + 1;
    }
    sbuf_add(b, "\r\n", 2);
}

static int fits(struct milter_conn *mc, size_t more)
{
    if (mc->oversize) return 0;
    if (mc->msg.len + more > mc->m->max_message) {
        mc->oversize = 1;
        sbuf_free(&mc->msg);
        return 0;
    }
    /* the last message went to its scan with its buffer: one allocation
     * of about its size, rather than a doubling series, for this one */
    if (!mc->msg.cap) sbuf_reserve(&mc->msg, more > mc->msg_hint ? more : mc->msg_hint);
    return 1;
}

/* Runs one command.  Returns 0 to go on, -1 when the connection ended
 * (nothing may touch mc), 1 when a scan started (input waits). */
static int dispatch(struct milter_conn *mc, const struct as_milter_cmd *cmd)
{
    char why[128];
    if (!mc->negotiated && cmd->code != AS_MILTER_OPTNEG && cmd->code != AS_MILTER_QUIT) {
        snprintf(why, sizeof why, "command '%c' before option negotiation",
                 (unsigned char)cmd->code >= 32 && (unsigned char)cmd->code < 127 ? cmd->code
                                                                                 : '?');
        conn_bad(mc, why);
        return -1;
    }
    switch (cmd->code) {
    case AS_MILTER_OPTNEG:
        if (cmd->version < 2) {
            snprintf(why, sizeof why, "milter protocol version %u is not supported",
                     (unsigned)cmd->version);
            conn_bad(mc, why);
            return -1;
        }
        session_reset(mc);
        negotiate(mc, cmd);
        return 0;
    case AS_MILTER_MACRO:
        take_macros(mc, cmd);
        return 0;
    case AS_MILTER_CONNECT:
        session_reset(mc);
        mc->in_session = 1;
        as_conn_set_state(mc->c, AS_CONN_READING);
        replace(&mc->client_name, cmd->hostname);
        if (cmd->family == '4' || cmd->family == '6') replace(&mc->client_addr, cmd->addr);
        reply_continue(mc, AS_MILTER_P_NR_CONN);
        return 0;
    case AS_MILTER_HELO:
        replace(&mc->helo, cmd->args[0]);
        reply_continue(mc, AS_MILTER_P_NR_HELO);
        return 0;
    case AS_MILTER_MAIL:
        /* a new transaction: whatever the MTA did not abort is gone */
        message_reset(mc);
        replace(&mc->mail_from, cmd->args[0]);
        reply_continue(mc, AS_MILTER_P_NR_MAIL);
        return 0;
    case AS_MILTER_RCPT:
        if (mc->nrcpts < MILTER_MAX_RCPTS) {
            mc->rcpts = xrealloc(mc->rcpts, (mc->nrcpts + 1) * sizeof *mc->rcpts);
            mc->rcpts[mc->nrcpts++] = xstrndup(cmd->args[0], strnlen(cmd->args[0], 1024));
        } else {
            mc->rcpts_dropped++;
        }
        reply_continue(mc, AS_MILTER_P_NR_RCPT);
        return 0;
    case AS_MILTER_DATA:
        reply_continue(mc, AS_MILTER_P_NR_DATA);
        return 0;
    case AS_MILTER_UNKNOWN:
        reply_continue(mc, AS_MILTER_P_NR_UNKN);
        return 0;
    case AS_MILTER_HEADER:
        if (mc->in_body) {
            conn_bad(mc, "header after the end of the header block");
            return -1;
        }
        if (fits(mc, strlen(cmd->args[0]) + strlen(cmd->args[1]) + 4)) {
            add_header(mc, cmd->args[0], cmd->args[1]);
        }
        reply_continue(mc, AS_MILTER_P_NR_HDR);
        return 0;
    case AS_MILTER_EOH:
        if (!mc->in_body && fits(mc, 2)) sbuf_add(&mc->msg, "\r\n", 2);
        mc->in_body = 1;
        reply_continue(mc, AS_MILTER_P_NR_EOH);
        return 0;
    case AS_MILTER_BODY:
        if (!mc->in_body) {
            if (fits(mc, 2)) sbuf_add(&mc->msg, "\r\n", 2);
            mc->in_body = 1;
        }
        if (fits(mc, cmd->len)) sbuf_add(&mc->msg, cmd->data, cmd->len);
        reply_continue(mc, AS_MILTER_P_NR_BODY);
        return 0;
    case AS_MILTER_BODYEOB:
        if (cmd->len) {
            if (!mc->in_body) {
                if (fits(mc, 2)) sbuf_add(&mc->msg, "\r\n", 2);
                mc->in_body = 1;
            }
            if (fits(mc, cmd->len)) sbuf_add(&mc->msg, cmd->data, cmd->len);
        }
        end_of_message(mc);
        return mc->ss ? 1 : 0;
    case AS_MILTER_ABORT:
        message_reset(mc);
        return 0;
    case AS_MILTER_QUIT_NC:
        /* the MTA keeps the connection for a new SMTP session */
        session_reset(mc);
        as_conn_set_state(mc->c, AS_CONN_IDLE);
        return 0;
    case AS_MILTER_QUIT:
        as_conn_close(mc->c);
        return -1;
    default:
        snprintf(why, sizeof why, "unknown command 0x%02x", (unsigned char)cmd->code);
        conn_bad(mc, why);
        return -1;
    }
}

/* Runs every whole packet in the input, unless a scan is in flight. */
static void milter_process(struct milter_conn *mc)
{
    struct evbuffer *in = as_conn_input(mc->c);
    mc->resume = 0;
    while (!mc->ss) {
        size_t have = evbuffer_get_length(in);
        unsigned char hdr[4];
        if (have < 4) break;
        evbuffer_copyout(in, hdr, 4);
        uint32_t plen = as_milter_get32(hdr);
        if (plen > mc->m->max_packet || plen == 0) {
            char why[128];
            snprintf(why, sizeof why, "malformed packet: length %lu (limit %zu)",
                     (unsigned long)plen, mc->m->max_packet);
            conn_bad(mc, why);
            return;
        }
        if (have - 4 < plen) break;
        const unsigned char *p = evbuffer_pullup(in, (ssize_t)plen + 4);
        char code, err[160];
        const char *data;
        size_t dlen;
        if (as_milter_frame(p, plen + 4, mc->m->max_packet, &code, &data, &dlen, err,
                            sizeof err) <= 0) {
            conn_bad(mc, err);
            return;
        }
        struct as_milter_cmd *cmd = &mc->cmd;
        if (as_milter_decode(code, data, dlen, cmd, err, sizeof err) < 0) {
            char why[200];
            snprintf(why, sizeof why, "malformed packet: %s", err);
            conn_bad(mc, why);
            return;
        }
        int rc = dispatch(mc, cmd);
        if (rc < 0) return;
        evbuffer_drain(in, plen + 4);
        mc->quiet_since = as_now();
    }
    if (mc->ss) return;
    if (!mc->acked && mc->in_session) {
        /* Steps negotiated as "no reply" were read and the MTA is still
         * sending: acknowledge them now.  Postfix writes the envelope and
         * the content as two writes with Nagle on, so without this its
         * second write waits for our delayed ACK, 40 ms per message. */
        as_conn_ack_now(mc->c);
        mc->acked = 1;
    }
    if (as_conn_draining(mc->c) && as_conn_state(mc->c) == AS_CONN_IDLE &&
        evbuffer_get_length(in) == 0) {
        /* between SMTP sessions while the worker drains: the MTA opens a
         * new connection (to the next generation) for the next one */
        as_conn_close(mc->c);
        return;
    }
    double left = mc->m->timeout - (as_now() - mc->quiet_since);
    as_conn_timer_set(mc->c, left > 0.001 ? left : 0.001);
}

/* ---------------------------------------------------------------- */
/* the adapter                                                       */

static void milter_read(void *cs)
{
    milter_process(cs);
}

static void milter_eof(void *cs)
{
    struct milter_conn *mc = cs;
    if (mc->ss) {
        /* the MTA gave up waiting (its own timeout): nobody will read it */
        as_conn_abort(mc->c);
        return;
    }
    if (mc->in_session && mc->nrcpts)
        as_log(AS_LOG_INFO, "milter: %s: MTA closed the connection in a transaction",
               as_conn_peer(mc->c));
    as_conn_close(mc->c);
}

static void milter_timeout(void *cs)
{
    struct milter_conn *mc = cs;
    if (mc->resume) {
        mc->resume = 0;
        milter_process(mc);
        return;
    }
    if (as_conn_draining(mc->c) && as_conn_state(mc->c) == AS_CONN_IDLE) {
        as_conn_close(mc->c);
        return;
    }
    as_conn_log_limited(mc->c, AS_SERVER_LOG_TIMEOUT, "milter: %s: MTA silent for %.0fs "
                        "(milter.timeout): closing", as_conn_peer(mc->c), mc->m->timeout);
    as_conn_abort(mc->c);
}

static void milter_close(void *cs)
{
    struct milter_conn *mc = cs;
    if (mc->ss) as_session_cancel(mc->ss);
    session_reset(mc);
    replace(&mc->mta_name, NULL);
    sbuf_free(&mc->msg);
    free(mc);
}

static void *milter_open(void *ps, struct as_conn *c)
{
    struct milter *m = ps;
    struct milter_conn *mc = xcalloc(1, sizeof *mc);
    mc->m = m;
    mc->c = c;
    as_conn_read_limit(c, m->max_packet + 4);
    mc->quiet_since = as_now();
    as_conn_timer_set(c, m->timeout);
    return mc;
}

static int parse_reply(const char *s)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(milter_reply_names); i++)
        if (as_strcaseeq(s, milter_reply_names[i])) return (int)i;
    return -1;
}

static void *milter_start(struct as_session_ctx *sc, char *err, size_t errlen)
{
    AS_UNUSED(err);
    AS_UNUSED(errlen);
    const struct as_config *cfg = as_engine_config(sc->engine);
    const struct as_limits *lim = as_engine_limits(sc->engine);
    struct milter *m = xcalloc(1, sizeof *m);
    m->sc = sc;
    memcpy(m->on, milter_default_reply, sizeof m->on);
    /* every spelling as_action_parse() knows ("no_action", "accept",
     * "Reject"): the entries in load order, so the last one wins */
    for (size_t i = 0; i < as_config_count(cfg); i++) {
        const struct as_config_entry *e = as_config_at(cfg, i);
        if (strncmp(e->key, "milter.on.", 10) != 0) continue;
        int a = as_action_parse(e->key + 10), r = parse_reply(e->value);
        if (a >= 0 && r >= 0) m->on[a] = (enum milter_reply)r;    /* checked at load */
    }
    m->reject_code = as_config_str(cfg, "milter.reject_code", "550 5.7.1");
    m->tempfail_code = as_config_str(cfg, "milter.tempfail_code", "451 4.7.1");
    m->spam_header = as_config_str(cfg, "milter.spam_header", "X-Spam");
    m->status_header = as_config_str(cfg, "milter.status_header", "X-Spam-Status");
    if (!*m->spam_header) m->spam_header = NULL;
    if (!*m->status_header) m->status_header = NULL;
    m->timeout = as_config_duration(cfg, "milter.timeout", 600);
    m->max_message = (size_t)lim->max_message_size;
    m->max_packet = m->max_message + MILTER_PACKET_MARGIN;
    return m;
}

static void milter_stop(void *ps)
{
    free(ps);
}

static int valid_code(const char *s, char cls)
{
    /* "550 5.7.1": a reply code of the class, a space, an enhanced code
     * (RFC 3463) of the same class */
    if (strlen(s) < 9 || s[0] != cls || s[1] < '0' || s[1] > '9' || s[2] < '0' ||
        s[2] > '9' || s[3] != ' ' || s[4] != cls || s[5] != '.')
        return 0;
    const char *p = s + 6;
    for (int part = 0; part < 2; part++) {
        int digits = 0;
        while (*p >= '0' && *p <= '9') p++, digits++;
        if (digits < 1 || digits > 3) return 0;
        if (part == 0 && *p++ != '.') return 0;
    }
    return *p == '\0';
}

static int valid_header_name(const char *s)
{
    for (; *s; s++)
        if (*s <= 32 || *s >= 127 || *s == ':') return 0;
    return 1;
}

static int milter_check(const struct as_config *cfg, int listened, char *err, size_t errlen)
{
    for (size_t i = 0; i < as_config_count(cfg); i++) {
        const struct as_config_entry *e = as_config_at(cfg, i);
        if (strncmp(e->key, "milter.", 7) != 0) continue;
        if (!listened)
            return as_config_error(err, errlen, e, "'%s' has no effect: no 'listen' entry "
                                   "speaks milter (milter@ADDR)", e->key);
        if (strncmp(e->key, "milter.on.", 10) == 0) {
            if (as_action_parse(e->key + 10) < 0)
                return as_config_error(err, errlen, e, "unknown action '%s' in '%s' (actions "
                                       "are no_action, greylist, add_header, rewrite_subject, "
                                       "quarantine, soft_reject, reject)", e->key + 10, e->key);
            if (parse_reply(e->value) < 0)
                return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected "
                                       "accept, add_header, quarantine, tempfail, reject or "
                                       "discard", e->value, e->key);
        } else if (strcmp(e->key, "milter.reject_code") == 0 && !valid_code(e->value, '5')) {
            return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected a 5xx "
                                   "reply and enhanced code, like \"550 5.7.1\"", e->value,
                                   e->key);
        } else if (strcmp(e->key, "milter.tempfail_code") == 0 && !valid_code(e->value, '4')) {
            return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected a 4xx "
                                   "reply and enhanced code, like \"451 4.7.1\"", e->value,
                                   e->key);
        } else if ((strcmp(e->key, "milter.spam_header") == 0 ||
                    strcmp(e->key, "milter.status_header") == 0) &&
                   !valid_header_name(e->value)) {
            return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected a header "
                                   "field name, or \"\" for none", e->value, e->key);
        } else if (strcmp(e->key, "milter.timeout") == 0) {
            double d;
            if (as_parse_duration(e->value, &d) < 0 || d < 1 || d > 86400)
                return as_config_error(err, errlen, e, "bad value '%s' for '%s': expected 1s "
                                       "to 1d", e->value, e->key);
        }
    }
    return 0;
}

const struct as_protocol as_milter_protocol = {
    .name = "milter",
    .start = milter_start,
    .stop = milter_stop,
    .open = milter_open,
    .read = milter_read,
    .eof = milter_eof,
    .timeout = milter_timeout,
    .close = milter_close,
    .check = milter_check,
};
