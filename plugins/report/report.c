/*
 * report - DMARC aggregate report counters (and failure reports) on Redis.
 *
 * finish  for every message DMARC evaluated to pass or fail under a
 *         policy record, after the reply went out: one HINCRBY of the
 *         message's aggregate row and one of the policy it saw, in one
 *         EVAL on the policy domain's two keys of that UTC day (same hash
 *         tag: one Cluster slot), plus the day's index of policy domains
 *         the first time this worker sees the domain that day.  Fire and
 *         forget (as_redis_send): the scan never waits for Redis.
 * postfilter  when the policy domain asks for failure reports (ruf, fo)
 *         the failure is queued (LPUSH, LTRIM to a bound), with the
 *         header fields, which are gone by the finish stage; `authscan
 *         report failure --send` verifies, rate-limits and mails them.
 *
 * No `depends`: the finish stage runs after every filter, so the DMARC
 * result is there when DMARC ran; a site that disables the dmarc plugin
 * simply gets no counters (and the plugin still loads).
 *
 * The key layout and the row encoding are authscan/report.h; the
 * decisions (disposition applied, override reasons) docs/reports.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <authscan/plugin.h>
#include <authscan/dkim.h>
#include <authscan/dmarc.h>
#include <authscan/report.h>
#include <authscan/spf.h>

#define INDEX_CACHE 4096   /* policy domains a worker remembers as indexed today */

static const struct as_option_def options[] = {
    { "enabled", AS_OPT_BOOL, "no", "write DMARC report counters to Redis (needs redis.servers)" },
    { "ttl", AS_OPT_DURATION, "7d",
      "counters expire this long after their last write (must outlast the reporting run)" },
    { "envelope_to", AS_OPT_BOOL, "no", "record the first RCPT TO domain in each row" },
    { "failure", AS_OPT_BOOL, "no", "queue DMARC failure reports for domains that ask (ruf)" },
    { "failure_queue_max", AS_OPT_INT, "10000", "failure reports waiting at most (older dropped)" },
    { "failure_rate", AS_OPT_INT, "20", "failure reports per destination and UTC day at most" },
    { "failure_redact", AS_OPT_BOOL, "yes",
      "replace local-parts with \"redacted\" in failure reports (RFC 6590)" },
    { "org_name", AS_OPT_STRING, NULL, "reporting organization (<org_name>, Subject Submitter)" },
    { "email", AS_OPT_STRING, NULL, "report sender address (<email>, From of report mail)" },
    { "domain", AS_OPT_STRING, NULL, "reporting domain (file name receiver, Report-ID host)" },
    { "smtp", AS_OPT_STRING, NULL, "relay for --send: smtp://host[:port]" },
    { "smtp_retries", AS_OPT_INT, "3", "tries per report after a temporary SMTP failure" },
    { "smtp_retry_delay", AS_OPT_DURATION, "30s", "wait before the next try" },
    { "format", AS_OPT_STRING, "auto",
      "aggregate XML: auto (RFC 7489 for psl discovery, DMARCbis for tree), rfc7489, dmarcbis" },
    { "lock_ttl", AS_OPT_DURATION, "30m", "a report run's lock in Redis expires after this" },
};

/* Daemon-wide counts of DMARC policy overrides by type (/stat, /metrics:
 * authscan_report_override_<type>_total), counted whether or not the
 * Redis counters are on.  "forwarded" and "other" are never recorded. */
static const enum as_override_type counted_types[] = {
    AS_OVERRIDE_LOCAL_POLICY, AS_OVERRIDE_TRUSTED_FORWARDER, AS_OVERRIDE_MAILING_LIST,
    AS_OVERRIDE_SAMPLED_OUT, AS_OVERRIDE_POLICY_TEST_MODE,
};
#define NCOUNTED (sizeof counted_types / sizeof counted_types[0])

struct report {
    const struct as_plugin_ctx *ctx;
    int override_counter[AS_OVERRIDE__COUNT];   /* -1: not counted */
    int enabled, failure, envelope_to, failure_redact;
    long long ttl, failure_queue_max;
    char day[16];                   /* the day the index cache is for */
    char *indexed[INDEX_CACHE];     /* direct-mapped by a hash of the domain */
};

/* Counters: one EVAL per message on the policy domain's row and policy
 * hashes of the day; both get the TTL again. */
static const char counter_script[] =
    "redis.call('HINCRBY',KEYS[1],ARGV[1],1) "
    "redis.call('HINCRBY',KEYS[2],ARGV[2],1) "
    "redis.call('EXPIRE',KEYS[1],ARGV[3]) "
    "redis.call('EXPIRE',KEYS[2],ARGV[3])";

static void say_off(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    as_log(AS_LOG_INFO, "report: report.enabled is off: no DMARC report counters");
}

static int check_string(struct as_plugin_ctx *ctx, const char *name, const char *need)
{
    const char *v = as_plugin_opt_string(ctx, name);
    if (v && (!*v || (need && !strstr(v, need))))
        return as_plugin_opt_error(ctx, name, "%s", need ? "expected a value with this in it"
                                                          : "expected a non-empty value");
    return 0;
}

static int report_init(struct as_plugin_ctx *ctx, void **state)
{
    struct report *r = calloc(1, sizeof *r);
    if (!r) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    *state = r;
    r->ctx = ctx;
    for (size_t i = 0; i < AS_OVERRIDE__COUNT; i++) r->override_counter[i] = -1;
    for (size_t i = 0; i < NCOUNTED; i++) {
        const char *type = as_override_type_name(counted_types[i]);
        char name[48], help[96];
        snprintf(name, sizeof name, "override_%s", type);
        snprintf(help, sizeof help, "DMARC policy overrides of type %s.", type);
        if ((r->override_counter[counted_types[i]] = as_plugin_counter(ctx, name, help)) < 0)
            return -1;
    }
    r->enabled = as_plugin_opt_bool(ctx, "enabled");
    r->failure = as_plugin_opt_bool(ctx, "failure");
    r->envelope_to = as_plugin_opt_bool(ctx, "envelope_to");
    r->failure_redact = as_plugin_opt_bool(ctx, "failure_redact");
    double ttl = as_plugin_opt_duration(ctx, "ttl");
    if (ttl < 86400 || ttl > 366 * 86400.0)
        return as_plugin_opt_error(ctx, "ttl", "expected 1d to 366d (a day's counters must "
                                   "outlive the day)");
    r->ttl = (long long)ttl;
    long long rate, retries;
    if (as_plugin_opt_int_range(ctx, "failure_queue_max", 1, 10000000, &r->failure_queue_max) < 0 ||
        as_plugin_opt_int_range(ctx, "failure_rate", 0, 1000000, &rate) < 0 ||
        as_plugin_opt_int_range(ctx, "smtp_retries", 1, 100, &retries) < 0)
        return -1;
    const char *fmt = as_plugin_opt_string(ctx, "format");
    if (strcmp(fmt, "auto") && strcmp(fmt, "rfc7489") && strcmp(fmt, "dmarcbis"))
        return as_plugin_opt_error(ctx, "format", "expected auto, rfc7489 or dmarcbis");
    const char *smtp = as_plugin_opt_string(ctx, "smtp");
    if (smtp && strncmp(smtp, "smtp://", 7) && strncmp(smtp, "smtps://", 8))
        return as_plugin_opt_error(ctx, "smtp", "expected smtp://host[:port] or smtps://...");
    if (check_string(ctx, "email", "@") < 0 || check_string(ctx, "org_name", NULL) < 0 ||
        check_string(ctx, "domain", ".") < 0)
        return -1;
    double delay = as_plugin_opt_duration(ctx, "smtp_retry_delay");
    if (delay < 0 || delay > 3600)
        return as_plugin_opt_error(ctx, "smtp_retry_delay", "expected 0s to 1h");
    double lock = as_plugin_opt_duration(ctx, "lock_ttl");
    if (lock < 10 || lock > 86400)
        return as_plugin_opt_error(ctx, "lock_ttl", "expected 10s to 1d");
    if (r->enabled && !as_plugin_redis_enabled(ctx))
        return as_plugin_opt_error(ctx, "enabled", "DMARC report counters need redis.servers");
    if (r->failure && !r->enabled)
        return as_plugin_opt_error(ctx, "failure", "failure reports need report.enabled = yes");
    static const struct timeval now = { 0, 0 };
    if (!r->enabled &&
        event_base_once(as_plugin_event_base(ctx), -1, EV_TIMEOUT, say_off, NULL, &now) < 0)
        say_off(-1, 0, NULL);
    return 0;
}

static void report_fini(void *state)
{
    struct report *r = state;
    for (size_t i = 0; i < INDEX_CACHE; i++) free(r->indexed[i]);
    free(r);
}

/* ------------------------------------------------------------------ */
/* Building the encoded fields in the task pool.                       */

struct field {
    char *buf;
    size_t len, cap;
    struct as_pool *pool;
};

static void f_reserve(struct field *f, size_t n)
{
    if (f->len + n + 1 <= f->cap) return;
    size_t cap = f->cap ? f->cap * 2 : 256;
    while (cap < f->len + n + 1) cap *= 2;
    char *b = as_pool_alloc(f->pool, cap);
    if (f->len) memcpy(b, f->buf, f->len);
    f->buf = b;
    f->cap = cap;
}

static void f_raw(struct field *f, const char *s)
{
    size_t n = strlen(s);
    f_reserve(f, n);
    memcpy(f->buf + f->len, s, n);
    f->len += n;
    f->buf[f->len] = 0;
}

static void f_esc(struct field *f, const char *s)
{
    f_reserve(f, as_report_escaped_len(s));
    char *end = as_report_escape(f->buf + f->len, s);
    f->len = (size_t)(end - f->buf);
    f->buf[f->len] = 0;
}

static void f_tab(struct field *f, const char *s)
{
    f_raw(f, "\t");
    f_esc(f, s);
}

static const char *policy_value(enum as_dmarc_policy p)
{
    return p == AS_DMARC_POLICY_UNSET ? "" : as_dmarc_policy_name(p);
}

/* The domain of a MAIL FROM / RCPT TO path, lower case, or "". */
static const char *path_domain(struct as_pool *pool, const char *path)
{
    const char *at = path ? strrchr(path, '@') : NULL;
    if (!at || !at[1]) return "";
    char *d = as_pool_strdup(pool, at + 1);
    size_t n = strlen(d);
    if (n && d[n - 1] == '>') d[--n] = 0;
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
    return d;
}

static enum as_dmarc_policy action_disposition(enum as_action a)
{
    return a >= AS_ACTION_SOFT_REJECT ? AS_DMARC_POLICY_REJECT
           : a >= AS_ACTION_ADD_HEADER ? AS_DMARC_POLICY_QUARANTINE
                                       : AS_DMARC_POLICY_NONE;
}

static void add_reason(struct field *f, int *n, const char *type, const char *comment)
{
    if ((*n)++) f_raw(f, ",");
    f_esc(f, type);
    if (comment && *comment) {
        f_raw(f, "=");
        f_esc(f, comment);
    }
}

/* Fields 2..5: disposition applied, aligned DKIM/SPF, reasons.  What was
 * applied is what the final verdict did, never more than DMARC asked.
 * The reasons are the task's overrides of the dmarc policy (plugin.h):
 * the plugin's own (t=y, pct, the list safeguard, a trusted ARC sealer)
 * and the core's local_policy (a Lua rule or site force that decided a
 * lower action, with its module and message). */
static void row_policy(struct as_task *t, const struct as_dmarc_result *d, struct field *f)
{
    struct as_pool *pool = as_task_pool(t);
    int n = 0;
    struct field reasons = { .pool = pool };
    f_reserve(&reasons, 0);
    const char *disp = "pass";
    if (d->result == AS_DMARC_FAIL) {
        enum as_dmarc_policy want = d->disposition;
        enum as_dmarc_policy got = action_disposition(as_task_action(t));
        enum as_dmarc_policy applied = got < want ? got : want;
        disp = as_dmarc_policy_name(applied);
        const struct as_policy_override *o;
        size_t no = as_task_overrides(t, &o);
        int local = 0;
        for (size_t i = 0; i < no; i++) {
            if (strcmp(o[i].policy, "dmarc") != 0) continue;
            add_reason(&reasons, &n, as_override_type_name(o[i].type), o[i].comment);
            local |= o[i].type == AS_OVERRIDE_LOCAL_POLICY;
        }
        /* below what DMARC asked without a force of its own to lower
         * (dmarc.reject = no, say): the site's configuration decided */
        if (applied < want && !local)
            add_reason(&reasons, &n, "local_policy",
                       as_pool_printf(pool, "action %s", as_action_name(as_task_action(t))));
    }
    f_tab(f, disp);
    f_tab(f, d->dkim_aligned ? "pass" : "fail");
    f_tab(f, d->spf_aligned ? "pass" : "fail");
    f_raw(f, "\t");
    f_raw(f, reasons.buf);
}

static const char *encode_row(struct as_task *t, const struct report *r,
                              const struct as_dmarc_result *d)
{
    struct as_pool *pool = as_task_pool(t);
    const struct as_envelope *env = as_task_envelope(t);
    struct field f = { .pool = pool };
    f_raw(&f, AS_REPORT_ROW_VERSION);
    f_tab(&f, env->ip ? env->ip : "");
    row_policy(t, d, &f);
    f_tab(&f, d->author_domain ? d->author_domain : "");
    f_tab(&f, path_domain(pool, env->mail_from));
    f_tab(&f, r->envelope_to && env->nrcpts ? path_domain(pool, env->rcpts[0]) : "");
    f_raw(&f, "\t");
    const struct as_spf_result *spf = as_task_get_result(t, AS_SPF_RESULT_KEY);
    if (spf && spf->version >= 1 && !spf->skipped && spf->dmarc && spf->dmarc->checked &&
        spf->dmarc->domain) {
        f_esc(&f, spf->dmarc->domain);
        f_raw(&f, spf->dmarc_identity == AS_SPF_ID_HELO ? ";helo;" : ";mfrom;");
        f_esc(&f, as_spf_res_name(spf->dmarc->result));
    }
    f_raw(&f, "\t");
    const struct as_dkim_result *dk = as_task_get_result(t, AS_DKIM_RESULT_KEY);
    for (size_t i = 0; dk && dk->version >= 1 && i < dk->nsigs; i++) {
        const struct as_dkim_sig *s = &dk->sigs[i];
        if (i) f_raw(&f, ",");
        f_esc(&f, s->domain ? s->domain : "");
        f_raw(&f, ";");
        f_esc(&f, s->selector ? s->selector : "");
        f_raw(&f, ";");
        f_esc(&f, as_dkim_res_name(s->result));
    }
    return f.buf;
}

static const char *encode_policy(struct as_pool *pool, const struct as_dmarc_result *d)
{
    const struct as_dmarc_record *rec = d->record;
    struct field f = { .pool = pool };
    f_raw(&f, AS_REPORT_ROW_VERSION);
    f_tab(&f, d->discovery == AS_DMARC_DISCOVERY_PSL ? "psl" : "tree");
    f_tab(&f, policy_value(rec->p));
    f_tab(&f, policy_value(rec->sp));
    f_tab(&f, policy_value(rec->np));
    f_tab(&f, rec->adkim_strict ? "s" : "r");
    f_tab(&f, rec->aspf_strict ? "s" : "r");
    f_tab(&f, as_pool_printf(pool, "%d", rec->pct));
    f_tab(&f, (char[]){ rec->psd ? rec->psd : 'u', 0 });
    f_tab(&f, rec->testing ? "y" : "n");
    f_tab(&f, rec->rua ? rec->rua : "");
    f_tab(&f, rec->ruf ? rec->ruf : "");
    f_tab(&f, rec->fo ? rec->fo : "0");
    return f.buf;
}

/* ------------------------------------------------------------------ */
/* Failure reports: queued here, sent by `authscan report failure`.    */

#define FAILURE_HEADER_MAX 16384   /* bytes of the original header kept */

static const char failure_script[] =
    "redis.call('LPUSH',KEYS[1],ARGV[1]) "
    "redis.call('LTRIM',KEYS[1],0,tonumber(ARGV[2])-1) "
    "redis.call('EXPIRE',KEYS[1],ARGV[3])";

static int fo_has(const char *fo, char c)
{
    for (const char *p = fo ? fo : "0"; *p; p++)
        if (*p == c && (p == fo || p[-1] == ':' || p[-1] == ' ') &&
            (!p[1] || p[1] == ':' || p[1] == ' '))
            return 1;
    return 0;
}

/* RFC 7489 6.3 / DMARCbis failure reporting: fo=0 all mechanisms failed
 * to give an aligned pass, 1 any did, d a DKIM signature failed, s SPF
 * failed (alignment aside). */
static int failure_wanted(const struct as_task *t, const struct as_dmarc_result *d)
{
    const char *fo = d->record->fo;
    if ((fo_has(fo, '0') || !fo) && !d->dkim_aligned && !d->spf_aligned) return 1;
    if (fo_has(fo, '1') && (!d->dkim_aligned || !d->spf_aligned)) return 1;
    if (fo_has(fo, 'd')) {
        const struct as_dkim_result *dk = as_task_get_result(t, AS_DKIM_RESULT_KEY);
        for (size_t i = 0; dk && dk->version >= 1 && i < dk->nsigs; i++)
            if (dk->sigs[i].result == AS_DKIM_FAIL) return 1;
    }
    if (fo_has(fo, 's') && d->spf_result == AS_SPF_FAIL) return 1;
    return 0;
}

static int local_part_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr(".!#$%&'*+/=?^_`{|}~-\"", c));
}

/* RFC 6590: every local-part before an '@' becomes "redacted". */
static const char *redact(struct as_pool *pool, const char *s, size_t len)
{
    char *out = as_pool_alloc(pool, len * 2 + 16);
    size_t o = 0, start = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '@') continue;
        size_t b = i;
        while (b > start && local_part_char((unsigned char)s[b - 1])) b--;
        memcpy(out + o, s + start, b - start);
        o += b - start;
        if (b < i) {
            memcpy(out + o, "redacted", 8);
            o += 8;
        }
        start = i;
    }
    memcpy(out + o, s + start, len - start);
    out[o + len - start] = 0;
    return out;
}

/* One queue entry: TAB-separated, escaped (docs/reports.md). */
static void failure_queue(struct as_task *t, const struct report *r,
                          const struct as_dmarc_result *d)
{
    struct as_pool *pool = as_task_pool(t);
    const struct as_envelope *env = as_task_envelope(t);
    int red = r->failure_redact;
    const char *align = d->dkim_aligned && d->spf_aligned ? "dkim, spf"
                        : d->dkim_aligned ? "dkim" : d->spf_aligned ? "spf" : "none";
    const char *rcpt = env->nrcpts ? env->rcpts[0] : "";
    const char *mfrom = env->mail_from ? env->mail_from : "";
    if (red) {
        mfrom = redact(pool, mfrom, strlen(mfrom));
        rcpt = redact(pool, rcpt, strlen(rcpt));
    }
    /* the header fields as received, up to FAILURE_HEADER_MAX bytes */
    const struct as_message *m = as_task_message(t);
    struct field hf = { .pool = pool };
    f_reserve(&hf, 0);
    for (size_t i = 0; m && i < as_msg_header_total(m); i++) {
        const struct as_header *h = as_msg_header_at(m, i);
        if (hf.len + h->raw.len + 2 > FAILURE_HEADER_MAX) break;
        f_reserve(&hf, h->raw.len + 2);
        memcpy(hf.buf + hf.len, h->raw.ptr, h->raw.len);
        hf.len += h->raw.len;
        memcpy(hf.buf + hf.len, "\r\n", 3);
        hf.len += 2;
    }
    const char *head = red ? redact(pool, hf.buf, hf.len) : hf.buf;
    struct field f = { .pool = pool };
    f_raw(&f, AS_REPORT_ROW_VERSION);
    f_tab(&f, as_pool_printf(pool, "%lld", (long long)time(NULL)));
    f_tab(&f, d->policy_domain);
    f_tab(&f, d->record->ruf);
    f_tab(&f, d->author_domain ? d->author_domain : "");
    f_tab(&f, env->ip ? env->ip : "");
    f_tab(&f, align);
    f_tab(&f, mfrom);
    f_tab(&f, rcpt);
    f_tab(&f, d->auth_results ? d->auth_results : "");
    f_tab(&f, env->mta_name ? env->mta_name : "");
    f_raw(&f, "\t");
    const struct as_dkim_result *dk = as_task_get_result(t, AS_DKIM_RESULT_KEY);
    for (size_t i = 0; dk && dk->version >= 1 && i < dk->nsigs; i++) {
        if (i) f_raw(&f, ",");
        f_esc(&f, dk->sigs[i].domain ? dk->sigs[i].domain : "");
        f_raw(&f, ";");
        f_esc(&f, dk->sigs[i].selector ? dk->sigs[i].selector : "");
        f_raw(&f, ";");
        f_esc(&f, as_dkim_res_name(dk->sigs[i].result));
    }
    f_tab(&f, d->spf_domain ? d->spf_domain : "");
    f_tab(&f, as_spf_res_name(d->spf_result));
    f_tab(&f, red ? "y" : "n");
    f_tab(&f, head);
    const char *key = as_redis_key(pool, r->ctx, AS_REPORT_INDEX_TAG, "fq");
    if (!key) return;
    const char *argv[] = { "EVAL", failure_script, "1", key, f.buf,
                           as_pool_printf(pool, "%lld", r->failure_queue_max),
                           as_pool_printf(pool, "%lld", r->ttl) };
    (void)as_redis_send(r->ctx, sizeof argv / sizeof argv[0], argv, NULL);
}

static unsigned long hash_str(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++) h = h * 33 + (unsigned char)*s;
    return h;
}

/* SADD to the day's index, unless this worker already did today. */
static void index_domain(struct report *r, struct as_pool *pool, const char *day,
                         const char *pd)
{
    if (strcmp(r->day, day) != 0) {
        for (size_t i = 0; i < INDEX_CACHE; i++) {
            free(r->indexed[i]);
            r->indexed[i] = NULL;
        }
        snprintf(r->day, sizeof r->day, "%s", day);
    }
    char **slot = &r->indexed[hash_str(pd) % INDEX_CACHE];
    if (*slot && strcmp(*slot, pd) == 0) return;
    const char *key = as_redis_key(pool, r->ctx, AS_REPORT_INDEX_TAG,
                                   as_pool_printf(pool, "rd:%s", day));
    const char *sadd[] = { "SADD", key, pd };
    const char *expire[] = { "EXPIRE", key, as_pool_printf(pool, "%lld", r->ttl) };
    if (!key || as_redis_send(r->ctx, 3, sadd, NULL) < 0 ||
        as_redis_send(r->ctx, 3, expire, NULL) < 0)
        return;   /* not remembered: the next message tries again */
    free(*slot);
    *slot = strdup(pd);   /* NULL (no memory) only costs another SADD */
}

static void count_overrides(const struct as_task *t, const struct report *r)
{
    const struct as_policy_override *o;
    size_t n = as_task_overrides(t, &o);
    for (size_t i = 0; i < n; i++)
        if (strcmp(o[i].policy, "dmarc") == 0 && (unsigned)o[i].type < AS_OVERRIDE__COUNT &&
            r->override_counter[o[i].type] >= 0)
            as_plugin_count(r->ctx, r->override_counter[o[i].type], 1);
}

static void report_finish(struct as_task *t, void *state)
{
    struct report *r = state;
    count_overrides(t, r);
    if (!r->enabled) return;
    const struct as_dmarc_result *d = as_task_get_result(t, AS_DMARC_RESULT_KEY);
    if (!d || d->version < 1 || !d->policy_domain || !d->record ||
        (d->result != AS_DMARC_PASS && d->result != AS_DMARC_FAIL))
        return;
    struct as_pool *pool = as_task_pool(t);
    char day[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(day, sizeof day, "%Y%m%d", &tm);
    const char *rows = as_redis_key(pool, r->ctx, d->policy_domain,
                                    as_pool_printf(pool, "rr:%s", day));
    const char *pols = as_redis_key(pool, r->ctx, d->policy_domain,
                                    as_pool_printf(pool, "rp:%s", day));
    if (!rows || !pols) return;
    const char *argv[] = { "EVAL", counter_script, "2", rows, pols, encode_row(t, r, d),
                           encode_policy(pool, d), as_pool_printf(pool, "%lld", r->ttl) };
    /* -1: Redis down and the queue full; /stat counts the dropped write */
    if (as_redis_send(r->ctx, sizeof argv / sizeof argv[0], argv, NULL) < 0) return;
    index_domain(r, pool, day, d->policy_domain);
}

/* After dmarc when it is loaded, without requiring it: a site that
 * disables dmarc gets no counters (there is no DMARC result to count), not
 * a daemon that refuses to start. */
static const char *const report_after[] = { "dmarc", NULL };

/* Failure reports are queued from the postfilter stage, not finish: they
 * carry the original header fields, and the message text belongs to the
 * protocol, which may reuse it once the reply is out.  as_redis_send()
 * does not wait, so the reply is not held up either way. */
static void report_postfilter(struct as_task *t, void *state)
{
    const struct report *r = state;
    if (!r->failure) return;
    const struct as_dmarc_result *d = as_task_get_result(t, AS_DMARC_RESULT_KEY);
    if (!d || d->version < 1 || !d->policy_domain || !d->record || !d->record->ruf ||
        (d->result != AS_DMARC_PASS && d->result != AS_DMARC_FAIL))
        return;
    /* never for a public suffix domain's policy (psd=y): its ruf would
     * learn about mail of every domain below it */
    if (d->record->psd != 'y' && failure_wanted(t, d)) failure_queue(t, r, d);
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "report",
    .version = "1.0",
    .description = "DMARC aggregate report counters and failure reports on Redis",
    .after = report_after,
    .options = options,
    .noptions = sizeof options / sizeof options[0],
    .init = report_init,
    .fini = report_fini,
    .postfilter = report_postfilter,
    .finish = report_finish,
};
