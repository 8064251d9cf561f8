/*
 * http_adapter.c - see http_adapter.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "scan/engine.h"
#include "net/http.h"
#include "net/http_adapter.h"
#include "net/protocol.h"
#include "scan/session.h"
#include "scan/stats.h"
#include "scan/task.h"

void as_http_adapter_url_decode(const char *s, size_t len, struct sbuf *out)
{
    sbuf_reset(out);
    sbuf_add(out, "", 0);   /* an empty component is "", never a NULL buffer */
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            sbuf_addc(out, ' ');
        } else if (s[i] == '%' && i + 2 < len && as_hexval((unsigned char)s[i + 1]) >= 0 &&
                   as_hexval((unsigned char)s[i + 2]) >= 0) {
            sbuf_addc(out, (char)(as_hexval((unsigned char)s[i + 1]) * 16 +
                                  as_hexval((unsigned char)s[i + 2])));
            i += 2;
        } else {
            sbuf_addc(out, s[i]);
        }
    }
}

/* The envelope from the request's headers and query string (as_session_fill_fn). */
static enum as_session_error fill_envelope(struct as_task *t, void *arg, char *err, size_t errlen)
{
    const struct as_http_request *req = arg;
    enum as_session_error rc;
    /* rspamc -z sends the message zstd-compressed ("Compression: zstd").
     * We cannot decompress it; scanning the compressed bytes would give a
     * verdict of garbage, so refuse it clearly. */
    const char *enc = as_http_request_header(req, "Compression");
    if (enc && *enc && !as_strcaseeq(enc, "none")) {
        snprintf(err, errlen, "compressed requests are not supported (Compression: %.32s): "
                 "send the message uncompressed", enc);
        return AS_SESSION_UNSUPPORTED;
    }
    enc = as_http_request_header(req, "Content-Encoding");
    if (enc && *enc && !as_strcaseeq(enc, "identity")) {
        snprintf(err, errlen, "Content-Encoding '%.32s' is not supported: send the message "
                 "uncompressed", enc);
        return AS_SESSION_UNSUPPORTED;
    }
    for (size_t i = 0; i < req->nheaders; i++)
        if ((rc = as_session_envelope_set(t, req->headers[i].name, req->headers[i].value, err,
                                          errlen)))
            return rc;
    if (req->query) {
        /* rspamd copies query parameters into request headers */
        struct sbuf name = {0}, value = {0};
        const char *p = req->query;
        rc = AS_SESSION_OK;
        while (*p && rc == AS_SESSION_OK) {
            const char *amp = strchr(p, '&');
            size_t len = amp ? (size_t)(amp - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            if (eq) {
                as_http_adapter_url_decode(p, (size_t)(eq - p), &name);
                as_http_adapter_url_decode(eq + 1, len - (size_t)(eq - p) - 1, &value);
                if (name.len && strlen(name.data) == name.len && strlen(value.data) == value.len)
                    rc = as_session_envelope_set(t, name.data, value.data, err, errlen);
            }
            p += len;
            if (*p == '&') p++;
        }
        sbuf_free(&name);
        sbuf_free(&value);
        if (rc) return rc;
    }
    return AS_SESSION_OK;
}

static void add_number(struct sbuf *b, double d)
{
    if (!isfinite(d)) d = 0;
    /* Fast path for what replies mostly hold (scores and thresholds such as
     * 15, -0.2, 1.5): |d| < 1000 with at most 3 decimals has at most 6
     * significant digits, so this prints exactly what %.6g prints, without
     * snprintf's cost (about 1,700 instructions a number; see
     * docs/performance.md). */
    if (d > -1000 && d < 1000) {
        long long k = llround(d * 1000);
        if ((double)k / 1000.0 == d) {
            char tmp[16], *p = tmp;
            if (k < 0) {
                *p++ = '-';
                k = -k;
            }
            int ip = (int)(k / 1000), frac = (int)(k % 1000);
            if (ip >= 100) *p++ = (char)('0' + ip / 100);
            if (ip >= 10) *p++ = (char)('0' + ip / 10 % 10);
            *p++ = (char)('0' + ip % 10);
            if (frac) {
                *p++ = '.';
                *p++ = (char)('0' + frac / 100);
                if (frac % 100) *p++ = (char)('0' + frac / 10 % 10);
                if (frac % 10) *p++ = (char)('0' + frac % 10);
            }
            if (k == 0) p = tmp, *p++ = '0';   /* -0 prints as 0 */
            sbuf_add(b, tmp, (size_t)(p - tmp));
            return;
        }
    }
    /* %.6g keeps 15.0 as 15 and -0.2 as -0.2, as rspamd's UCL emitter does */
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.6g", d);
    if (strcmp(tmp, "-0") == 0) strcpy(tmp, "0");
    sbuf_adds(b, tmp);
}

static void add_key(struct sbuf *b, const char *k)
{
    as_json_string(b, k, strlen(k));
    sbuf_addc(b, ':');
}

static void add_str(struct sbuf *b, const char *s)
{
    if (s) as_json_string(b, s, strlen(s));
    else sbuf_adds(b, "null");
}

/* The removals of one header name (dels[0].name, every later op with the
 * same name) as one JSON value.  A JSON object cannot repeat a key: most
 * readers keep only the last one, so every removal of a name goes under
 * one key.  Positions come from as_task_removal_positions() (absolute,
 * deduplicated, last field first, as an MTA renumbers the fields after
 * each removal; rspamd's proxy removes "all" from the end for the same
 * reason).  Then: every instance -> 0 ("all", understood by every
 * consumer); one -> that integer; several -> an array of integers, the
 * shape rspamd >= 3.3 itself emits (lua_mime.modify_headers: remove =
 * {name = {1, 2}}).  Returns 0 when nothing is left to remove (a position
 * before the first field): then nothing is written, as "0" would remove
 * every field. */
static int write_removals(const struct as_task *t, const struct as_task_header_op *dels,
                          size_t n, struct sbuf *b)
{
    int all, *idx;
    size_t k = as_task_removal_positions(t, dels, n, &all, &idx);
    if (!all && k == 0) return 0;
    add_key(b, dels[0].name);
    if (all) {
        sbuf_addc(b, '0');
    } else if (k == 1) {
        sbuf_printf(b, "%d", idx[0]);
    } else {
        sbuf_addc(b, '[');
        for (size_t i = 0; i < k; i++) sbuf_printf(b, "%s%d", i ? "," : "", idx[i]);
        sbuf_addc(b, ']');
    }
    free(idx);
    return 1;
}

static void write_milter(const struct as_task *t, struct sbuf *b)
{
    const struct as_task_header_op *adds, *dels;
    size_t nadd = as_task_header_ops(t, &adds, 0);
    size_t ndel = as_task_header_ops(t, &dels, 1);
    if (!nadd && !ndel) return;
    sbuf_adds(b, ",\"milter\":{");
    int first_section = 1;
    if (nadd) {
        sbuf_adds(b, "\"add_headers\":{");
        /* Several values for one name become an array (rspamd's shape). */
        int first = 1;
        for (size_t i = 0; i < nadd; i++) {
            int seen = 0;
            for (size_t j = 0; j < i; j++)
                if (as_strcaseeq(adds[j].name, adds[i].name)) seen = 1;
            if (seen) continue;
            size_t count = 0;
            for (size_t j = i; j < nadd; j++)
                if (as_strcaseeq(adds[j].name, adds[i].name)) count++;
            if (!first) sbuf_addc(b, ',');
            first = 0;
            add_key(b, adds[i].name);
            if (count > 1) sbuf_addc(b, '[');
            int f2 = 1;
            for (size_t j = i; j < nadd; j++) {
                if (!as_strcaseeq(adds[j].name, adds[i].name)) continue;
                if (!f2) sbuf_addc(b, ',');
                f2 = 0;
                sbuf_adds(b, "{\"value\":");
                add_str(b, adds[j].value);
                sbuf_printf(b, ",\"order\":%d}", adds[j].order_or_index);
            }
            if (count > 1) sbuf_addc(b, ']');
        }
        sbuf_addc(b, '}');
        first_section = 0;
    }
    if (ndel) {
        if (!first_section) sbuf_addc(b, ',');
        sbuf_adds(b, "\"remove_headers\":{");
        int first = 1;
        for (size_t i = 0; i < ndel; i++) {
            int seen = 0;
            for (size_t j = 0; j < i && !seen; j++)
                seen = as_strcaseeq(dels[j].name, dels[i].name);
            if (seen) continue;
            size_t mark = b->len;
            if (!first) sbuf_addc(b, ',');
            if (write_removals(t, dels + i, ndel - i, b)) first = 0;
            else b->len = mark;
        }
        sbuf_addc(b, '}');
    }
    sbuf_addc(b, '}');
}

void as_http_adapter_write_checkv2(const struct as_task *t, struct sbuf *b)
{
    const struct as_verdict *v = as_task_verdict(t);
    const struct as_actions *acts = as_task_actions(t);
    sbuf_adds(b, "{\"is_skipped\":");
    sbuf_adds(b, v->is_skipped ? "true" : "false");
    sbuf_adds(b, ",\"score\":");
    add_number(b, v->score);
    sbuf_adds(b, ",\"required_score\":");
    add_number(b, v->required_score);
    sbuf_adds(b, ",\"action\":");
    add_str(b, as_action_name(v->action));
    if (v->forced_by) {
        sbuf_adds(b, ",\"passthrough_module\":");
        add_str(b, v->forced_by);
    }
    sbuf_adds(b, ",\"thresholds\":{");
    int first = 1;
    for (int a = AS_ACTION__COUNT - 1; a > AS_ACTION_NO_ACTION; a--) {
        if (isnan(acts->threshold[a])) continue;
        if (!first) sbuf_addc(b, ',');
        first = 0;
        add_key(b, as_action_name((enum as_action)a));
        add_number(b, acts->threshold[a]);
    }
    sbuf_adds(b, "},\"symbols\":{");
    size_t n = as_task_symbol_count(t);
    for (size_t i = 0; i < n; i++) {
        const struct as_task_symbol *s = as_task_symbol_at(t, i);
        if (i) sbuf_addc(b, ',');
        add_key(b, s->sym->name);
        sbuf_adds(b, "{\"name\":");
        add_str(b, s->sym->name);
        sbuf_adds(b, ",\"score\":");
        add_number(b, s->score);
        sbuf_adds(b, ",\"metric_score\":");
        add_number(b, s->sym->score);
        if (s->sym->description) {
            sbuf_adds(b, ",\"description\":");
            add_str(b, s->sym->description);
        }
        if (s->nopts) {
            sbuf_adds(b, ",\"options\":[");
            for (size_t k = 0; k < s->nopts; k++) {
                if (k) sbuf_addc(b, ',');
                add_str(b, s->opts[k]);
            }
            sbuf_addc(b, ']');
        }
        sbuf_addc(b, '}');
    }
    sbuf_adds(b, "},\"messages\":{");
    if (v->smtp_message) {
        add_key(b, "smtp_message");
        add_str(b, v->smtp_message);
    }
    /* a policy not applied as published, and why (docs/protocol.md) */
    const char *ovr = as_task_override_text(t);
    if (ovr) {
        if (v->smtp_message) sbuf_addc(b, ',');
        add_key(b, "policy_override");
        add_str(b, ovr);
    }
    sbuf_addc(b, '}');
    write_milter(t, b);

    const struct as_header *mid = as_msg_header_get(as_task_message(t), "Message-ID", 0);
    sbuf_adds(b, ",\"message-id\":");
    if (mid) {
        size_t len;
        const char *val = as_header_unfold(t, mid, &len);
        if (len >= 2 && val[0] == '<' && val[len - 1] == '>') val++, len -= 2;
        as_json_string(b, val, len);
    } else {
        add_str(b, "undef");
    }
    sbuf_adds(b, ",\"time_real\":");
    add_number(b, as_task_elapsed(t));
    sbuf_adds(b, ",\"scan_id\":");
    add_str(b, as_task_id(t));
    sbuf_adds(b, "}\n");
}

void as_http_adapter_write_error(struct sbuf *out, const char *msg)
{
    sbuf_adds(out, "{\"error\":");
    as_json_string(out, msg, strlen(msg));
    sbuf_adds(out, "}\n");
}

void as_http_adapter_reply_metrics(struct as_http_conn *c, const struct as_http_request *req,
                                   const struct as_engine *e)
{
    enum as_metrics_format f = as_metrics_negotiate(as_http_request_header(req, "Accept"));
    struct sbuf b = {0};
    as_stats_write_metrics(e, f, &b);
    as_http_reply(c, 200, as_metrics_content_type(f), b.data ? b.data : "", b.len, NULL);
    sbuf_free(&b);
}

/* ---------------------------------------------------------------- */
/* the "http" protocol: commands onto sessions                        */

/* Per worker. */
struct http_adapter {
    struct as_session_ctx *sc;
    struct as_http *http;
};

/* One /checkv2 request in flight; lives in the task pool. */
struct checkv2 {
    struct as_http_conn *conn;
    struct as_session *ss;
};

static const int error_status[] = {
    [AS_SESSION_OK] = 200,
    [AS_SESSION_BAD_REQUEST] = 400,
    [AS_SESSION_TOO_LARGE] = 413,
    [AS_SESSION_UNSUPPORTED] = 415,
    [AS_SESSION_UNKNOWN_COMMAND] = 404,
    [AS_SESSION_BAD_METHOD] = 405,
};

static void reply_json(struct as_http_conn *c, int status, struct sbuf *b)
{
    as_http_reply(c, status, "application/json", b->data ? b->data : "", b->len, NULL);
}

static void reply_error(struct as_http_conn *c, enum as_session_error e, const char *msg)
{
    struct sbuf b = {0};
    as_http_adapter_write_error(&b, msg);
    reply_json(c, error_status[e], &b);
    sbuf_free(&b);
}

static void checkv2_done(struct as_session *ss, void *arg)
{
    struct checkv2 *r = arg;
    struct sbuf b = {0};
    as_http_adapter_write_checkv2(as_session_task(ss), &b);
    as_http_conn_on_close(r->conn, NULL, NULL);
    reply_json(r->conn, 200, &b);
    sbuf_free(&b);
}

static void checkv2_abandoned(void *arg)
{
    struct checkv2 *r = arg;
    as_session_cancel(r->ss);
}

static void handle_request(struct as_http_conn *c, const struct as_http_request *req, void *arg)
{
    struct http_adapter *ha = arg;
    if (as_strcaseeq(req->path, "/ping")) {
        as_http_reply(c, 200, "text/plain", "pong\r\n", 6, NULL);
        return;
    }
    if (as_strcaseeq(req->path, "/stat")) {
        struct sbuf b = {0};
        as_stats_write_json(ha->sc->engine, &b);
        reply_json(c, 200, &b);
        sbuf_free(&b);
        return;
    }
    if (as_strcaseeq(req->path, "/metrics")) {
        as_http_adapter_reply_metrics(c, req, ha->sc->engine);
        return;
    }
    if (!as_strcaseeq(req->path, "/checkv2")) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown command '%.200s' (this server speaks /checkv2, "
                 "/ping, /stat and /metrics)", req->path);
        as_session_count_error(ha->sc);
        reply_error(c, AS_SESSION_UNKNOWN_COMMAND, msg);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        as_session_count_error(ha->sc);
        reply_error(c, AS_SESSION_BAD_METHOD, "/checkv2 takes POST with the message as body");
        return;
    }
    size_t blen;
    char *body = as_http_conn_take_body(c, &blen);
    struct as_session *ss = as_session_new_owned(ha->sc, req->peer, body, blen);
    struct checkv2 *r = as_session_alloc(ss, sizeof *r);
    r->conn = c;
    r->ss = ss;
    /* before the start: a poison answer may complete at once */
    as_http_conn_on_close(c, checkv2_abandoned, r);
    char err[256] = "";
    enum as_session_error rc = as_session_start(ss, fill_envelope, (void *)req, checkv2_done, r,
                                                err, sizeof err);
    if (rc != AS_SESSION_OK) {
        as_http_conn_on_close(c, NULL, NULL);
        reply_error(c, rc, err);
    }
}

static void *http_adapter_start(struct as_session_ctx *sc, char *err, size_t errlen)
{
    AS_UNUSED(err);
    AS_UNUSED(errlen);
    const struct as_limits *el = as_engine_limits(sc->engine);
    struct as_http_limits lim = {
        /* One Rcpt header per recipient: Postfix accepts 1000 recipients per
         * message by default (smtpd_recipient_limit), so leave room. */
        .max_header_bytes = 512 * 1024,
        .max_headers = 2048,
        .max_body = (size_t)el->max_message_size,
        .header_timeout = el->header_timeout,
        .read_timeout = el->read_timeout,
        .idle_timeout = el->idle_timeout,
    };
    struct http_adapter *ha = xcalloc(1, sizeof *ha);
    ha->sc = sc;
    ha->http = as_http_new(&lim, handle_request, ha);
    return ha;
}

static void http_adapter_stop(void *ps)
{
    struct http_adapter *ha = ps;
    as_http_free(ha->http);
    free(ha);
}

static void *http_adapter_open(void *ps, struct as_conn *c)
{
    struct http_adapter *ha = ps;
    return as_http_conn_open(ha->http, c);
}

/* Connections are the framing's (http.h); only start() and open() know
 * the commands. */
const struct as_protocol as_http_protocol = {
    .name = "http",
    .start = http_adapter_start,
    .stop = http_adapter_stop,
    .open = http_adapter_open,
    .read = as_http_conn_read,
    .flushed = as_http_conn_flushed,
    .eof = as_http_conn_eof,
    .timeout = as_http_conn_timeout,
    .close = as_http_conn_close,
    .refusal = as_http_refusal,
};
