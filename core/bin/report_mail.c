/*
 * report_mail.c - where reports go and how (see report.h): rua/ruf
 * destinations, the external-destination check, the report mail, SMTP
 * through libcurl with a bounded number of tries.
 *
 * Why libcurl: it is a Debian library (libcurl4-openssl-dev) with an SMTP
 * client that does EHLO, STARTTLS (smtps:// too), AUTH and the dot
 * stuffing, and reports the server's last reply code, which is all that
 * telling a 4xx from a 5xx needs.  The command is synchronous, so its
 * blocking easy interface is the simple one.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <libpsl.h>
#include "bin/report.h"
#include "services/dns.h"
#include <authscan/report.h>

/* ------------------------------------------------------------------ */
/* Destinations                                                        */

static void pct_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char h[3] = { p[1], p[2], 0 };
            *o++ = (char)strtol(h, NULL, 16);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

size_t rpt_parse_dests(const char *list, struct rpt_dest *out, size_t max, const char *pd)
{
    size_t n = 0;
    char *copy = xstrdup(list ? list : ""), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *uri = as_trim(tok);
        if (!*uri) continue;
        struct rpt_dest d;
        memset(&d, 0, sizeof d);
        char *bang = strrchr(uri, '!');
        if (bang) {   /* !size: a number and an optional k/m/g/t unit */
            *bang = 0;
            char *end;
            unsigned long long v = strtoull(bang + 1, &end, 10);
            static const char units[] = "kmgt";
            const char *u = *end ? strchr(units, tolower((unsigned char)*end)) : NULL;
            for (const char *p = units; u && p <= u; p++) v *= 1024;
            d.max_size = v;
        }
        if (strncasecmp(uri, "mailto:", 7) != 0) {
            fprintf(stderr, "authscan report: %s: destination %s is not a mailto: URI, "
                    "skipped\n", pd, uri);
            continue;
        }
        snprintf(d.uri, sizeof d.uri, "%s", uri);
        snprintf(d.addr, sizeof d.addr, "%s", uri + 7);
        char *q = strchr(d.addr, '?');   /* mailto: header fields are not ours to add */
        if (q) *q = 0;
        pct_decode(d.addr);
        char *at = strrchr(d.addr, '@');
        int bad = !at || at == d.addr || !at[1];
        for (char *p = d.addr; !bad && *p; p++)
            bad = (unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == '\\' || *p == '"';
        if (bad) {
            fprintf(stderr, "authscan report: %s: destination %s has no usable address, "
                    "skipped\n", pd, uri);
            continue;
        }
        as_str_lower(at + 1);
        if (n < max) {
            out[n] = d;
            out[n].host = out[n].addr + (at + 1 - d.addr);   /* into the copy */
            n++;
        } else fprintf(stderr, "authscan report: %s: more than %zu destinations, %s skipped\n",
                     pd, max, uri);
    }
    free(copy);
    return n;
}

struct dns_wait {
    int done;
    enum as_dns_status status;
    int dmarc1;
};

static void dns_done(const struct as_dns_answer *ans, void *arg)
{
    struct dns_wait *w = arg;
    w->done = 1;
    w->status = ans->status;
    for (size_t i = 0; ans->status == AS_DNS_OK && i < ans->nrr; i++) {
        const char *s = ans->rr[i].d.txt.joined.ptr;
        if (s && strncasecmp(s, "v=DMARC1", 8) == 0 && (!s[8] || s[8] == ';' || s[8] == ' '))
            w->dmarc1 = 1;
    }
}

static int same_org(const char *a, const char *b)
{
    static psl_ctx_t *psl;
    if (!psl) psl = psl_latest(NULL);
    const psl_ctx_t *p = psl ? psl : psl_builtin();
    const char *oa = p ? psl_registrable_domain(p, a) : NULL;
    const char *ob = p ? psl_registrable_domain(p, b) : NULL;
    return oa && ob ? strcmp(oa, ob) == 0 : strcmp(a, b) == 0;
}

enum rpt_verdict rpt_verify_dest(struct rpt *r, const char *pd, const struct rpt_dest *d)
{
    if (same_org(pd, d->host)) return RPT_VERIFIED;
    struct as_resolver *res = as_engine_service_state(r->engine, &as_dns_service);
    struct sbuf name = {0};
    sbuf_printf(&name, "%s._report._dmarc.%s", pd, d->host);
    struct dns_wait w = {0};
    if (!res || !as_resolver_lookup(res, name.data, AS_DNS_TXT, dns_done, &w)) {
        fprintf(stderr, "authscan report: %s: no resolver to verify %s\n", pd, d->uri);
        sbuf_free(&name);
        return RPT_DEFER;
    }
    while (!w.done) event_base_loop(r->base, EVLOOP_ONCE);
    enum rpt_verdict v = w.dmarc1 ? RPT_VERIFIED
                         : w.status == AS_DNS_TIMEOUT || w.status == AS_DNS_SERVFAIL
                             ? RPT_DEFER : RPT_UNAUTHORISED;
    if (v == RPT_UNAUTHORISED)
        fprintf(stderr, "authscan report: %s: destination %s is not authorised (no v=DMARC1 "
                "at %s: %s), skipped\n", pd, d->uri, name.data, as_dns_status_name(w.status));
    else if (v == RPT_DEFER)
        fprintf(stderr, "authscan report: %s: cannot verify %s now (%s: %s), left for a "
                "later run\n", pd, d->uri, name.data, as_dns_status_name(w.status));
    sbuf_free(&name);
    return v;
}

/* ------------------------------------------------------------------ */
/* Mail                                                                */

void rpt_date(long long t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {   /* a year past int: a broken queue entry */
        tt = 0;
        gmtime_r(&tt, &tm);
    }
    static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", wd[tm.tm_wday], tm.tm_mday,
             mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void rpt_base64(struct sbuf *b, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t col = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char q[4] = { tab[v >> 18 & 63], tab[v >> 12 & 63],
                      i + 1 < n ? tab[v >> 6 & 63] : '=', i + 2 < n ? tab[v & 63] : '=' };
        sbuf_add(b, q, 4);
        if ((col += 4) >= 76) {
            sbuf_adds(b, "\r\n");
            col = 0;
        }
    }
    if (col) sbuf_adds(b, "\r\n");
}

struct upload {
    const char *p;
    size_t left;
};

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct upload *u = arg;
    size_t n = size * nmemb < u->left ? size * nmemb : u->left;
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

static enum rpt_sent smtp_try(struct rpt *r, const char *rcpt, const char *msg, size_t len,
                              long *code, char *err)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, CURL_ERROR_SIZE, "curl_easy_init failed");
        return RPT_TEMPORARY;
    }
    struct upload u = { msg, len };
    struct curl_slist *to = curl_slist_append(NULL, rcpt);
    char from[400];
    snprintf(from, sizeof from, "<%s>", r->conf.email);
    err[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, r->conf.smtp);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, to);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    *code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
    if (rc != CURLE_OK && !err[0]) snprintf(err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(to);
    curl_easy_cleanup(c);
    if (rc == CURLE_OK) return RPT_SENT;
    /* a 5xx reply is final; no reply at all (connection) and 4xx are not */
    return *code >= 500 && *code < 600 ? RPT_PERMANENT : RPT_TEMPORARY;
}

enum rpt_sent rpt_smtp_send(struct rpt *r, const char *rcpt, const char *msg, size_t len)
{
    char err[CURL_ERROR_SIZE];
    enum rpt_sent s = RPT_TEMPORARY;
    for (long long attempt = 1; attempt <= r->conf.retries; attempt++) {
        long code;
        s = smtp_try(r, rcpt, msg, len, &code, err);
        if (s == RPT_SENT) return s;
        fprintf(stderr, "authscan report: mail to %s: %s (reply %ld), %s\n", rcpt, err, code,
                s == RPT_PERMANENT ? "refused for good"
                : attempt < r->conf.retries ? "trying again" : "giving up for this run");
        if (s == RPT_PERMANENT) return s;
        if (attempt < r->conf.retries && r->conf.retry_delay > 0)
            usleep((useconds_t)(r->conf.retry_delay * 1e6));
    }
    return s;
}

/* A CR or LF inside a header value would start a field of its own: every
 * value that may carry bytes from a message or a DNS record (the
 * Subject's domain and address, the recipient) goes through this. */
static void head_value(struct sbuf *m, const char *v)
{
    for (; *v; v++) sbuf_addc(m, (*v == '\r' || *v == '\n') ? ' ' : *v);
}

static void mail_head(struct sbuf *m, const struct rpt *r, const char *to, const char *subject,
                      const char *msgid, const char *boundary, const char *ctype)
{
    char date[64];
    rpt_date((long long)time(NULL), date, sizeof date);
    sbuf_printf(m, "From: %s <%s>\r\nTo: <", r->conf.org_name, r->conf.email);
    head_value(m, to);
    sbuf_printf(m, ">\r\nDate: %s\r\nSubject: ", date);
    head_value(m, subject);
    sbuf_adds(m, "\r\nMessage-ID: <");
    head_value(m, msgid);
    sbuf_printf(m, ">\r\nMIME-Version: 1.0\r\n"
                "Content-Type: %s; boundary=\"%s\"\r\n\r\n"
                "This is a multipart message in MIME format.\r\n\r\n", ctype, boundary);
}

/* Adds pd to one of the day's sets of policy domains: rsd:DAY (something
 * was sent for it) or rfd:DAY (a report failed), {report:} tagged, with
 * report.ttl, so the controller reads a day's status with SCARD and
 * SINTERCARD instead of scanning the keyspace.  The {PD}rs:DAY mark stays
 * the truth for "sent before": an index that failed to be written costs
 * only the dashboard's view, never a report.  -1 (key names it) when
 * Redis did not take it. */
static int day_index_add(struct rpt *r, const char *set, const char *pd, const char *day,
                         struct sbuf *key)
{
    struct sbuf name = {0};
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", r->conf.ttl);
    sbuf_printf(&name, "%s:%s", set, day);
    rpt_key(r, key, AS_REPORT_INDEX_TAG, name.data);
    const char *sadd[] = { "SADD", key->data, pd };
    const char *exp[] = { "EXPIRE", key->data, ttl };
    redisReply *a = rpt_redis(r, 3, sadd), *b = a ? rpt_redis(r, 3, exp) : NULL;
    if (a) freeReplyObject(a);
    if (b) freeReplyObject(b);
    sbuf_free(&name);
    return a && b ? 0 : -1;
}

static void mark_day_sent(struct rpt *r, const char *pd, const char *day)
{
    struct sbuf key = {0};
    if (day_index_add(r, "rsd", pd, day, &key) < 0)
        fprintf(stderr, "authscan report: %s %s: sent, but not added to %s (the dashboard "
                "will show it as pending)\n", pd, day, key.data);
    sbuf_free(&key);
}

/* Counts one report mailed or given up on in {report:}st (the controller's
 * /metrics reads it: authscan_reports_sent_total, ..._failed_total), and
 * an aggregate report given up on in {report:}rfd:DAY (the day's status:
 * "failed" in /api/v1/reports and the dashboard).  Failing to count costs
 * only the figures, never a report. */
static void count_report(struct rpt *r, const char *kind, int sent, const char *pd,
                         const char *day)
{
    struct sbuf key = {0}, field = {0};
    rpt_key(r, &key, AS_REPORT_INDEX_TAG, "st");
    sbuf_printf(&field, "%s_%s", kind, sent ? "sent" : "failed");
    /* counters, not data: a year unless a report keeps them going */
    const char *incr[] = { "HINCRBY", key.data, field.data, "1" };
    const char *exp[] = { "EXPIRE", key.data, "31536000" };
    redisReply *a = rpt_redis(r, 4, incr), *b = a ? rpt_redis(r, 3, exp) : NULL;
    if (a) freeReplyObject(a);
    if (b) freeReplyObject(b);
    if (!sent && pd && day) day_index_add(r, "rfd", pd, day, &key);
    sbuf_free(&key);
    sbuf_free(&field);
}

int rpt_mail_aggregate(struct rpt *r, const char *pd, const char *day, const char *id,
                       const char *rua, const char *fname, const struct sbuf *gz, int bis)
{
    struct rpt_dest dests[RPT_MAX_DESTS];
    size_t n = rpt_parse_dests(rua, dests, RPT_MAX_DESTS, pd);
    struct sbuf kmark = {0}, name = {0};
    sbuf_printf(&name, "rs:%s", day);
    rpt_key(r, &kmark, pd, name.data);
    int all_done = 1;
    for (size_t i = 0; i < n; i++) {
        const struct rpt_dest *d = &dests[i];
        const char *hget[] = { "HGET", kmark.data, d->uri };
        redisReply *mark = rpt_redis(r, 3, hget);
        if (!mark) {
            all_done = 0;
            continue;
        }
        int sent_before = mark->type == REDIS_REPLY_STRING;
        freeReplyObject(mark);
        if (sent_before) continue;
        enum rpt_verdict v = rpt_verify_dest(r, pd, d);
        if (v == RPT_DEFER) all_done = 0;
        if (v != RPT_VERIFIED) continue;
        if (!bis && d->max_size && gz->len > d->max_size) {
            /* RFC 7489 7.2.1.1: never more than the limit; DMARCbis dropped it */
            fprintf(stderr, "authscan report: %s: report of %zu bytes exceeds the %llu bytes "
                    "%s allows, not sent\n", pd, gz->len, d->max_size, d->uri);
            continue;
        }
        struct sbuf m = {0}, subject = {0}, msgid = {0};
        sbuf_printf(&subject, "Report Domain: %s Submitter: %s Report-ID: <%s>", pd,
                    r->conf.domain, id);
        sbuf_printf(&msgid, "%s.%ld.%lld@%s", id, (long)getpid(), (long long)time(NULL),
                    r->conf.domain);
        mail_head(&m, r, d->addr, subject.data, msgid.data, "authscan-report-part",
                  "multipart/mixed");
        sbuf_printf(&m, "--authscan-report-part\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                    "This is a DMARC aggregate report for %s from %s,\r\n"
                    "covering %s (UTC).  Report-ID: %s\r\n\r\n"
                    "--authscan-report-part\r\nContent-Type: application/gzip; name=\"%s\"\r\n"
                    "Content-Disposition: attachment; filename=\"%s\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n",
                    pd, r->conf.org_name, day, id, fname, fname);
        rpt_base64(&m, (const unsigned char *)gz->data, gz->len);
        sbuf_adds(&m, "\r\n--authscan-report-part--\r\n");
        enum rpt_sent s = rpt_smtp_send(r, d->addr, m.data, m.len);
        count_report(r, "aggregate", s == RPT_SENT, pd, day);
        if (s == RPT_SENT) {
            fprintf(stderr, "authscan report: %s %s: sent to %s (Report-ID %s)\n", pd, day,
                    d->uri, id);
            char ttl[32];
            snprintf(ttl, sizeof ttl, "%lld", r->conf.ttl);
            const char *hset[] = { "HSET", kmark.data, d->uri, id };
            const char *exp[] = { "EXPIRE", kmark.data, ttl };
            redisReply *a = rpt_redis(r, 4, hset), *b = a ? rpt_redis(r, 3, exp) : NULL;
            if (!a || !b) all_done = 0;   /* not marked: keep the data, resend is the lesser harm */
            if (a) freeReplyObject(a);
            if (b) freeReplyObject(b);
            if (a && b) mark_day_sent(r, pd, day);
        } else if (s == RPT_TEMPORARY) {
            all_done = 0;
            r->status = 1;
        }
        sbuf_free(&m);
        sbuf_free(&subject);
        sbuf_free(&msgid);
    }
    sbuf_free(&kmark);
    sbuf_free(&name);
    return all_done;
}

/* ------------------------------------------------------------------ */
/* Failure reports (RFC 6591 ARF, DMARCbis failure reporting)          */

enum { F_VER, F_TIME, F_PD, F_RUF, F_AUTHOR, F_IP, F_ALIGN, F_MFROM, F_RCPT, F_AR, F_MTA,
       F_DKIM, F_SPFDOM, F_SPFRES, F_REDACTED, F_HEAD, F__COUNT };

/* ARF header field values must stay on one line. */
static void field_value(struct sbuf *m, const char *name, const char *v)
{
    if (!v || !*v) return;
    sbuf_printf(m, "%s: ", name);
    head_value(m, v);
    sbuf_adds(m, "\r\n");
}

/* f: the queue entry's fields, unescaped (modified here).  Every value
 * but the original header block is one line: a CR or LF in it (the
 * escaping lets any byte through) becomes a space, so no field, line or
 * MIME boundary can be added from the entry.  The header block keeps its
 * lines; one that starts with '-' (no header field does) gets a space in
 * front, so none can be read as a boundary. */
static void build_arf(struct rpt *r, char **f, const char *to, struct sbuf *m)
{
    for (int i = 0; i < F__COUNT; i++)
        if (i != F_HEAD)
            for (char *p = f[i]; *p; p++)
                if (*p == '\r' || *p == '\n') *p = ' ';
    const char *bnd = "authscan-arf-part";
    char date[64], subject[600];
    rpt_date(atoll(f[F_TIME]), date, sizeof date);
    snprintf(subject, sizeof subject, "DMARC Failure Report for %s from %s", f[F_AUTHOR],
             f[F_IP]);
    struct sbuf msgid = {0};
    static unsigned long seq;
    sbuf_printf(&msgid, "failure.%s.%ld.%lu@%s", f[F_TIME], (long)getpid(), ++seq,
                r->conf.domain);
    mail_head(m, r, to, subject, msgid.data, bnd,
              "multipart/report; report-type=feedback-report");
    sbuf_printf(m, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                "This is an authentication failure report for a message received from IP "
                "address %s\r\non %s.  Its From domain %s failed DMARC alignment "
                "(policy domain %s).\r\n%s\r\n"
                "--%s\r\nContent-Type: message/feedback-report\r\n\r\n",
                bnd, f[F_IP], date, f[F_AUTHOR], f[F_PD],
                strcmp(f[F_REDACTED], "y") == 0 ? "Local-parts are redacted (RFC 6590).\r\n" : "",
                bnd);
    sbuf_adds(m, "Feedback-Type: auth-failure\r\nUser-Agent: authscan/" AUTHSCAN_VERSION
                 "\r\nVersion: 1\r\n");
    if (*f[F_MFROM]) sbuf_printf(m, "Original-Mail-From: <%s>\r\n", f[F_MFROM]);
    if (*f[F_RCPT]) sbuf_printf(m, "Original-Rcpt-To: <%s>\r\n", f[F_RCPT]);
    field_value(m, "Arrival-Date", date);
    field_value(m, "Source-IP", f[F_IP]);
    field_value(m, "Reported-Domain", f[F_AUTHOR]);
    if (*f[F_AR]) {
        struct sbuf ar = {0};
        sbuf_printf(&ar, "%s; %s", *f[F_MTA] ? f[F_MTA] : r->conf.domain, f[F_AR]);
        field_value(m, "Authentication-Results", ar.data);
        sbuf_free(&ar);
    }
    sbuf_adds(m, "Auth-Failure: dmarc\r\n");
    field_value(m, "Identity-Alignment", f[F_ALIGN]);
    char *sigs[64];
    size_t n = 0;
    char *dk = xstrdup(f[F_DKIM]);
    if (*dk) {
        char *save = NULL;
        for (char *s = strtok_r(dk, ",", &save); s && n < 64; s = strtok_r(NULL, ",", &save))
            sigs[n++] = s;
    }
    if (n) {   /* RFC 6591 3.1: the signature that failed, when DKIM is the cause */
        char *parts[3] = { "", "", "" }, *save = NULL;
        parts[0] = strtok_r(sigs[0], ";", &save);
        parts[1] = strtok_r(NULL, ";", &save);
        for (int i = 0; i < 2; i++)
            if (parts[i]) as_report_unescape(parts[i], strlen(parts[i]));
        field_value(m, "DKIM-Domain", parts[0]);
        field_value(m, "DKIM-Selector", parts[1]);
    }
    free(dk);
    if (*f[F_SPFDOM]) {
        struct sbuf spf = {0};
        sbuf_printf(&spf, "%s (%s)", f[F_SPFDOM], f[F_SPFRES]);
        field_value(m, "SPF-DNS", spf.data);   /* the domain whose SPF record was used */
        sbuf_free(&spf);
    }
    sbuf_printf(m, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", bnd);
    /* the original header block, line endings made CRLF: a bare CR or LF
     * from the message must not reach the relay (SMTP smuggling reads
     * them as line ends) */
    for (const char *p = f[F_HEAD]; *p; p++) {
        if (*p == '\n' && (p == f[F_HEAD] || p[-1] != '\r')) sbuf_addc(m, '\r');
        if (*p == '-' && (p == f[F_HEAD] || p[-1] == '\n' || p[-1] == '\r'))
            sbuf_addc(m, ' ');
        sbuf_addc(m, *p);
        if (*p == '\r' && p[1] != '\n') sbuf_addc(m, '\n');
    }
    sbuf_printf(m, "\r\n--%s--\r\n", bnd);
    sbuf_free(&msgid);
}

/* One queue entry to each verified ruf destination within its daily
 * budget.  Failure reports are best effort: what cannot go now is logged
 * and dropped, never queued again (a stuck relay must not grow the queue). */
static void failure_one(struct rpt *r, char *entry, const char *day, struct sbuf *krate)
{
    char *f[F__COUNT];
    if (split_fields(entry, f, F__COUNT) != F__COUNT || strcmp(f[F_VER], "1") != 0) {
        fprintf(stderr, "authscan report: failure queue: malformed entry dropped\n");
        r->status = 1;
        return;
    }
    for (int i = 0; i < F__COUNT; i++)
        if (i != F_DKIM && *f[i]) as_report_unescape(f[i], strlen(f[i]));
    struct rpt_dest dests[RPT_MAX_DESTS];
    size_t n = rpt_parse_dests(f[F_RUF], dests, RPT_MAX_DESTS, f[F_PD]);
    for (size_t i = 0; i < n; i++) {
        if (rpt_verify_dest(r, f[F_PD], &dests[i]) != RPT_VERIFIED) continue;
        const char *incr[] = { "HINCRBY", krate->data, dests[i].uri, "1" };
        const char *exp[] = { "EXPIRE", krate->data, "172800" };
        redisReply *a = rpt_redis(r, 4, incr), *b = a ? rpt_redis(r, 3, exp) : NULL;
        long long used = a && a->type == REDIS_REPLY_INTEGER ? a->integer : -1;
        if (a) freeReplyObject(a);
        if (b) freeReplyObject(b);
        if (used < 0) continue;
        if (used > r->conf.failure_rate) {
            fprintf(stderr, "authscan report: %s: failure report to %s dropped: %lld today "
                    "already (report.failure_rate)\n", f[F_PD], dests[i].uri, used - 1);
            continue;
        }
        struct sbuf m = {0};
        build_arf(r, f, dests[i].addr, &m);
        enum rpt_sent s = rpt_smtp_send(r, dests[i].addr, m.data, m.len);
        count_report(r, "failure", s == RPT_SENT, NULL, NULL);
        if (s == RPT_SENT)
            fprintf(stderr, "authscan report: %s: failure report sent to %s (%s)\n", f[F_PD],
                    dests[i].uri, day);
        else
            r->status = 1;
        sbuf_free(&m);
    }
}

int rpt_failure_run(struct rpt *r)
{
    struct sbuf kq = {0}, krate = {0}, name = {0};
    rpt_key(r, &kq, AS_REPORT_INDEX_TAG, "fq");
    char day[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(day, sizeof day, "%Y%m%d", &tm);
    sbuf_printf(&name, "fr:%s", day);
    rpt_key(r, &krate, AS_REPORT_INDEX_TAG, name.data);
    /* only what is queued now: entries the scanners add meanwhile wait
     * for the next run, so one run always ends */
    const char *llen[] = { "LLEN", kq.data };
    redisReply *len = rpt_redis(r, 2, llen);
    long long n = len && len->type == REDIS_REPLY_INTEGER ? len->integer : 0, done = 0;
    if (len) freeReplyObject(len);
    for (long long i = 0; i < n; i++) {
        const char *pop[] = { "RPOP", kq.data };
        redisReply *e = rpt_redis(r, 2, pop);
        if (!e || e->type != REDIS_REPLY_STRING) {
            if (e) freeReplyObject(e);
            break;
        }
        char *entry = xstrndup(e->str, e->len);
        freeReplyObject(e);
        failure_one(r, entry, day, &krate);
        free(entry);
        done++;
    }
    fprintf(stderr, "authscan report: %lld failure reports processed\n", done);
    sbuf_free(&kq);
    sbuf_free(&krate);
    sbuf_free(&name);
    return r->status;
}
