/*
 * spf.c - the "spf" plugin: SPF (RFC 7208) for the MAIL FROM and HELO
 * identities, with rspamd's symbols, a typed result for DMARC,
 * Authentication-Results and Received-SPF text.
 *
 * Asynchrony: spf_engine_check() only reads answers the scan already has
 * (as_dns_pinned).  A round that needed more records its misses; we query
 * them (plus targets prefetched from the records seen, and the addresses of
 * MX hosts) with as_dns_query() and evaluate again when the last answer
 * is in.  Answers are pinned per scan, so every round sees the same data;
 * rounds are bounded by max_rounds.  The scan never blocks, and the plugin
 * is finished when it has no query outstanding.
 *
 * Relays: when the connecting host is one of trusted_relays, the client IP
 * and HELO are taken from the first Received: hop (from the top) that is
 * not a trusted relay.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "authscan/plugin.h"
#include "authscan/spf.h"
#include "spf_eval.h"
#include "spf_net.h"

/* ---- configuration -------------------------------------------------- */

static const struct as_symbol_def spf_symbols[] = {
    { "R_SPF_ALLOW", -0.2, "spf", "SPF verification allows sending", 0 },
    { "R_SPF_FAIL", 1.0, "spf", "SPF verification failed", 0 },
    { "R_SPF_SOFTFAIL", 0.0, "spf", "SPF verification soft-failed", 0 },
    { "R_SPF_NEUTRAL", 0.0, "spf", "SPF policy is neutral", 0 },
    { "R_SPF_DNSFAIL", 0.0, "spf", "SPF DNS failure (temperror)", 0 },
    { "R_SPF_PERMFAIL", 0.0, "spf", "SPF record is invalid (permerror)", 0 },
    { "R_SPF_NA", 0.0, "spf", "Missing SPF record or no identity to check", 0 },
    { "R_SPF_PLUSALL", 4.0, "spf", "SPF record allows anyone to send (+all)", 0 },
};

static const struct as_option_def spf_options[] = {
    { "trusted_relays", AS_OPT_LIST, "",
      "CIDRs of our own relays: SPF is checked for the first untrusted Received: hop" },
    { "local_networks", AS_OPT_LIST, "127.0.0.0/8, ::1",
      "CIDRs of clients that are never SPF-checked" },
    { "skip_authenticated", AS_OPT_BOOL, "yes", "skip SPF when the sender authenticated (SASL)" },
    { "check_helo", AS_OPT_BOOL, "yes",
      "also check the HELO identity when MAIL FROM is not null (typed result only)" },
    { "use_return_path", AS_OPT_BOOL, "yes",
      "when the MTA gave no MAIL FROM, use the Return-Path: header" },
    { "max_rounds", AS_OPT_INT, "20", "evaluation rounds (DNS round trips) before temperror" },
    { "max_dns_terms", AS_OPT_INT, "10", "DNS-querying terms allowed, 1-10 (RFC 7208 4.6.4: 10)" },
    { "max_void_lookups", AS_OPT_INT, "2", "void lookups allowed (RFC 7208 4.6.4: 2)" },
    { "max_record_size", AS_OPT_SIZE, "2048", "longer SPF records are permerror (max 4096)" },
    { "receiver", AS_OPT_STRING, NULL,
      "our host name in Received-SPF and %{r} (default: the system host name)" },
    { "default_explanation", AS_OPT_STRING, "SPF fail - not authorized",
      "explanation for fail when the record has no exp= (an RFC 7208 macro-string)" },
};

struct spf_state {
    struct spf_engine *eng;
    struct spf_limits lim;
    int max_rounds;
    int skip_auth, check_helo, use_return_path;
    struct spf_netlist trusted, local;
    char receiver[SPF_NAME_MAX + 1];
};

static int load_nets(struct as_plugin_ctx *ctx, const char *opt, struct spf_netlist *nl)
{
    const char *const *items;
    size_t n = as_plugin_opt_list(ctx, opt, &items);
    for (size_t i = 0; i < n; i++) {
        if (nl->n >= SPF_NET_MAX)
            return as_plugin_opt_item_error(ctx, opt, items[i], "more than %d networks",
                                            SPF_NET_MAX);
        if (spf_netlist_add(nl, items[i]) < 0)
            return as_plugin_opt_item_error(ctx, opt, items[i], "expected an IPv4 or IPv6 "
                                            "network like 192.0.2.0/24 or 2001:db8::/32");
    }
    return 0;
}

static int spf_init(struct as_plugin_ctx *ctx, void **state)
{
    struct spf_state *st = calloc(1, sizeof *st);
    if (!st) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    struct spf_limits lim = SPF_LIMITS_DEFAULT;
    st->lim = lim;
    /* libspf2 1.2.10 silently stops compiling a record after its tenth DNS
     * mechanism, so the RFC value is also the largest one that works.
     * Every limit is checked as written, before it is narrowed to int. */
    long long terms, voids, rounds;
    if (as_plugin_opt_int_range(ctx, "max_dns_terms", 1, 10, &terms) < 0 ||
        as_plugin_opt_int_range(ctx, "max_void_lookups", 0, 10, &voids) < 0 ||
        as_plugin_opt_int_range(ctx, "max_rounds", 1, 100, &rounds) < 0) {
        free(st);
        return -1;
    }
    unsigned long long rlen = as_plugin_opt_size(ctx, "max_record_size");
    if (rlen < 64 || rlen > SPF_RECORD_MAX_LEN) {
        as_plugin_opt_error(ctx, "max_record_size", "out of range: expected 64 to %d bytes",
                            (int)SPF_RECORD_MAX_LEN);
        free(st);
        return -1;
    }
    st->lim.max_terms = (int)terms;
    st->lim.max_void = (int)voids;
    st->lim.max_record_len = (size_t)rlen;
    st->max_rounds = (int)rounds;
    st->skip_auth = as_plugin_opt_bool(ctx, "skip_authenticated");
    st->check_helo = as_plugin_opt_bool(ctx, "check_helo");
    st->use_return_path = as_plugin_opt_bool(ctx, "use_return_path");
    if (load_nets(ctx, "trusted_relays", &st->trusted) < 0 ||
        load_nets(ctx, "local_networks", &st->local) < 0) {
        free(st);
        return -1;
    }
    const char *recv = as_plugin_opt_string(ctx, "receiver");
    if (recv && *recv)
        spf_strcpy(st->receiver, sizeof st->receiver, recv);
    else if (gethostname(st->receiver, sizeof st->receiver - 1) != 0 || !st->receiver[0])
        snprintf(st->receiver, sizeof st->receiver, "localhost");
    const char *dexp = as_plugin_opt_string(ctx, "default_explanation");
    if (dexp && *dexp && !spf_macro_string_valid(dexp, strlen(dexp), 1)) {
        as_plugin_opt_error(ctx, "default_explanation", "not a valid RFC 7208 macro-string");
        free(st);
        return -1;
    }
    st->eng = spf_engine_new(st->receiver, dexp);
    if (!st->eng) {
        as_plugin_set_error(ctx, "spf: cannot create the libspf2 server");
        free(st);
        return -1;
    }
    *state = st;
    return 0;
}

static void spf_fini(void *state)
{
    struct spf_state *st = state;
    if (!st)
        return;
    spf_engine_free(st->eng);
    free(st);
}

/* ---- per-scan state ------------------------------------------------- */

struct req_key {
    struct req_key *next;
    uint16_t type;
    int missed;                      /* an evaluation asked for it (not only a prefetch) */
    struct prefetch *pf;             /* TXT that may hold an SPF record, of this
                                        identity: its terms prefetched on arrival */
    char name[];
};

struct spf_scan;

struct prefetch {                    /* what one identity's records prefetched */
    struct spf_scan *s;
    int terms;                       /* DNS-querying term targets queried */
};

struct spf_scan {
    struct as_task *t;
    struct spf_state *st;
    struct spf_query qm, qh;         /* MAIL FROM (or postmaster@HELO), HELO */
    int want_m, want_h;
    struct prefetch pm, ph;
    int rounds, rounds_m, rounds_h;
    int done_m, published;
    int outstanding;
    int start_failed;
    struct req_key *requested;
    char ip[INET6_ADDRSTRLEN];
    char arpa[80];                   /* reverse name of the client */
    const char *helo;
    const char *sender;              /* NULL when the null sender */
    /* last: 21 KiB not zeroed (spf_scan() zeroes what is above) */
    struct spf_outcome om, oh;
};

static const struct as_dns_answer *scan_fetch(void *arg, const char *name, uint16_t type)
{
    struct spf_scan *s = arg;
    return as_dns_pinned(s->t, name, type);
}

static void scan_round(struct spf_scan *s);

static void dns_done(struct as_task *t, const struct as_dns_answer *ans, void *arg);

static struct req_key *requested(const struct spf_scan *s, const char *name, uint16_t type)
{
    for (struct req_key *k = s->requested; k; k = k->next)
        if (k->type == type && strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

/* Starts a query unless the scan has (or is getting) the answer.  missed:
 * an evaluation asked for it, rather than a prefetch; pf: a TXT that may
 * hold an SPF record of that identity (NULL otherwise).  Returns 1 if a
 * query was started. */
static int want(struct spf_scan *s, const char *name, uint16_t type, int missed,
                struct prefetch *pf)
{
    if (!name || !spf_name_valid(name) || as_dns_pinned(s->t, name, type))
        return 0;
    struct req_key *k = requested(s, name, type);
    if (k) {
        k->missed |= missed;
        return 0;
    }
    size_t len = strlen(name);
    k = as_pool_alloc(as_task_pool(s->t), sizeof *k + len + 1);
    if (!k)
        return 0;
    k->type = type;
    k->missed = missed;
    k->pf = type == AS_DNS_TXT ? pf : NULL;
    memcpy(k->name, name, len + 1);
    k->next = s->requested;
    s->requested = k;
    if (as_dns_query(s->t, name, type, dns_done, s) == 0) {
        s->outstanding++;
        return 1;
    }
    s->start_failed = 1;
    return 0;
}

static void norm_target(const struct spf_term *t, const char *cur, char *out, size_t outsz)
{
    size_t n = t->domain.len ? t->domain.len : strlen(cur);
    const char *p = t->domain.len ? t->domain.ptr : cur;
    if (n >= outsz)
        n = outsz - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)p[i]);
    out[n] = 0;
    if (n && out[n - 1] == '.')
        out[n - 1] = 0;
}

/* Prefetch what this record will ask for next: macro-free targets of its
 * DNS terms and its exp=.  A prefetch is a guess (a term before it may
 * match), so an identity prefetches at most max_terms term targets over
 * all its records: RFC 7208 4.6.4 bounds what one check_host() may make
 * the DNS do, and records reached through include: would otherwise each
 * prefetch ten more (ten includes of ten mx terms each: a thousand). */
static void on_record(void *arg, const char *domain, const struct spf_record *rec)
{
    struct prefetch *pf = arg;
    struct spf_scan *s = pf->s;
    int fam = s->qm.family;
    int n = pf->terms;
    for (size_t i = 0; i < rec->nterms && n < s->st->lim.max_terms; i++) {
        const struct spf_term *t = &rec->terms[i];
        char d[SPF_NAME_MAX + 1];
        if (t->has_macro)
            continue;
        norm_target(t, domain, d, sizeof d);
        switch (t->kind) {
        case SPF_T_INCLUDE: case SPF_T_REDIRECT: n += want(s, d, AS_DNS_TXT, 0, pf); break;
        case SPF_T_EXP: want(s, d, AS_DNS_TXT, 0, NULL); break;
        case SPF_T_A: n += want(s, d, fam == AF_INET6 ? AS_DNS_AAAA : AS_DNS_A, 0, NULL); break;
        case SPF_T_MX: n += want(s, d, AS_DNS_MX, 0, NULL); break;
        case SPF_T_EXISTS: n += want(s, d, AS_DNS_A, 0, NULL); break;
        case SPF_T_PTR: n += want(s, s->arpa, AS_DNS_PTR, 0, NULL); break;
        default: break;
        }
    }
    pf->terms = n;
}

/* An SPF record arrived (the identity's own, or one its records include
 * or redirect to): prefetch its terms now, as the next evaluation would
 * (on_record() is what it calls, and a target is only asked once), so the
 * answers an include chain needs are fetched while others are in flight,
 * not one evaluation round per level of the chain.  Records the
 * evaluation would refuse (several, too long, a syntax error) are left to
 * it. */
static void prefetch_record(struct prefetch *pf, const struct as_dns_answer *ans)
{
    struct spf_scan *s = pf->s;
    size_t found;
    const struct as_str *txt = spf_answer_record(ans, &found);
    if (found != 1 || txt->len > s->st->lim.max_record_len)
        return;
    struct spf_record *rec = malloc(sizeof *rec);   /* 16 KiB: not the pool's */
    const char *perr = NULL;
    if (rec && spf_record_parse(txt->ptr, txt->len, rec, &perr) == 0)
        on_record(pf, ans->name, rec);
    free(rec);
}

static void dns_done(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    (void)t;
    struct spf_scan *s = arg;
    s->outstanding--;
    /* The next thing an mx mechanism does is look up its hosts; only for
     * an MX (or PTR) an evaluation asked for, not one merely prefetched. */
    const struct req_key *k = ans ? requested(s, ans->name, ans->type) : NULL;
    if (k && k->missed && (ans->type == AS_DNS_MX || ans->type == AS_DNS_PTR) &&
        ans->status == AS_DNS_OK) {
        /* an mx mechanism looks up its hosts next (more than 10 is
         * permerror anyway); a ptr mechanism or %{p} validates the first
         * 10 names */
        for (size_t i = 0; i < ans->nrr && i < 10; i++) {
            char h[SPF_NAME_MAX + 1];
            const char *host = ans->type == AS_DNS_MX ? ans->rr[i].d.mx.host : ans->rr[i].d.name;
            spf_strcpy(h, sizeof h, host ? host : "");
            for (char *c = h; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            want(s, h, s->qm.family == AF_INET6 ? AS_DNS_AAAA : AS_DNS_A, 0, NULL);
        }
    }
    if (k && k->pf && ans->status == AS_DNS_OK && !s->published)
        prefetch_record(k->pf, ans);
    if (s->outstanding == 0)
        scan_round(s);
}

/* ---- results -------------------------------------------------------- */

static const char *symbol_for(enum as_spf_res r)
{
    switch (r) {
    case AS_SPF_PASS: return "R_SPF_ALLOW";
    case AS_SPF_FAIL: return "R_SPF_FAIL";
    case AS_SPF_SOFTFAIL: return "R_SPF_SOFTFAIL";
    case AS_SPF_NEUTRAL: return "R_SPF_NEUTRAL";
    case AS_SPF_TEMPERROR: return "R_SPF_DNSFAIL";
    case AS_SPF_PERMERROR: return "R_SPF_PERMFAIL";
    default: return "R_SPF_NA";
    }
}

static void fill_check(struct as_pool *p, struct as_spf_check *c, const struct spf_outcome *o)
{
    c->checked = o->checked;
    c->result = o->result;
    c->domain = o->domain[0] ? as_pool_strdup(p, o->domain) : NULL;
    c->sender = o->sender[0] ? as_pool_strdup(p, o->sender) : NULL;
    c->mechanism = o->mechanism[0] ? as_pool_strdup(p, o->mechanism) : NULL;
    c->reason = o->reason[0] ? as_pool_strdup(p, o->reason) : NULL;
    c->explanation = o->result == AS_SPF_FAIL && o->explanation[0]
                         ? as_pool_strdup(p, o->explanation) : NULL;
}

/* RFC 7208 9.1 comment wording, roughly as libspf2 and pyspf write it. */
static const char *received_spf(struct as_pool *p, const struct spf_scan *s,
                                const struct as_spf_check *c, int helo_id)
{
    const char *who = c->sender ? c->sender : "unknown";
    const char *rcv = s->st->receiver;
    const char *ip = s->ip;
    const char *cm;
    switch (c->result) {
    case AS_SPF_PASS: cm = as_pool_printf(p, "%s: domain of %s designates %s as permitted sender", rcv, who, ip); break;
    case AS_SPF_FAIL: cm = as_pool_printf(p, "%s: domain of %s does not designate %s as permitted sender", rcv, who, ip); break;
    case AS_SPF_SOFTFAIL: cm = as_pool_printf(p, "%s: domain of transitioning %s does not designate %s as permitted sender", rcv, who, ip); break;
    case AS_SPF_NEUTRAL: cm = as_pool_printf(p, "%s: %s is neither permitted nor denied by domain of %s", rcv, ip, who); break;
    case AS_SPF_TEMPERROR: cm = as_pool_printf(p, "%s: error in processing during lookup of %s: %s", rcv, who, c->reason ? c->reason : "DNS error"); break;
    case AS_SPF_PERMERROR: cm = as_pool_printf(p, "%s: permanent error in processing domain of %s: %s", rcv, who, c->reason ? c->reason : "invalid record"); break;
    default: cm = as_pool_printf(p, "%s: domain of %s does not provide an SPF record", rcv, who); break;
    }
    /* a comment may not hold unbalanced parentheses or a backslash */
    char *q = as_pool_strdup(p, cm);
    for (char *x = q; x && *x; x++)
        if (*x == '(' || *x == ')' || *x == '\\' || (unsigned char)*x < 0x20)
            *x = ' ';
    return as_pool_printf(p, "%s (%s) client-ip=%s; envelope-from=\"%s\"; helo=%s; identity=%s; receiver=%s;%s%s",
                          as_spf_res_name(c->result), q, ip, s->sender ? s->sender : "",
                          s->helo ? s->helo : "", helo_id ? "helo" : "mailfrom", rcv,
                          c->mechanism ? " mechanism=" : "", c->mechanism ? c->mechanism : "");
}

static void publish(struct spf_scan *s)
{
    struct as_task *t = s->t;
    struct as_pool *p = as_task_pool(t);
    struct as_spf_result *r = as_pool_alloc(p, sizeof *r);
    if (!r)
        return;
    r->version = AS_SPF_RESULT_VERSION;
    r->client_ip = as_pool_strdup(p, s->ip);
    r->helo_name = s->helo ? as_pool_strdup(p, s->helo) : NULL;
    if (s->want_m)
        fill_check(p, &r->mailfrom, &s->om);
    if (s->want_h)
        fill_check(p, &r->helo, &s->oh);
    int helo_id = s->sender == NULL;
    r->dmarc_identity = helo_id ? AS_SPF_ID_HELO : AS_SPF_ID_MAILFROM;
    r->dmarc = helo_id ? &r->helo : &r->mailfrom;
    if (helo_id)   /* the null sender: the primary check was postmaster@HELO */
        fill_check(p, &r->helo, &s->om);
    const struct spf_outcome *prim = &s->om;
    r->plus_all = prim->plus_all;
    const struct as_spf_check *c = r->dmarc;
    if (helo_id)
        r->auth_results = as_pool_printf(p, "spf=%s smtp.helo=%s", as_spf_res_name(c->result),
                                         as_authres_value(p, s->helo ? s->helo : ""));
    else
        r->auth_results = as_pool_printf(p, "spf=%s smtp.mailfrom=%s", as_spf_res_name(c->result),
                                         as_authres_value(p, c->domain ? c->domain : s->sender));
    r->received_spf = received_spf(p, s, c, helo_id);
    as_task_set_result(t, AS_SPF_RESULT_KEY, r);
    /* the same entry for the core's Authentication-Results field (it
     * quotes the value: HELO and MAIL FROM are the client's words) */
    as_task_add_auth_result(t, "spf", as_spf_res_name(c->result), NULL,
                            helo_id ? "smtp.helo" : "smtp.mailfrom",
                            helo_id ? (s->helo ? s->helo : "")
                                    : (c->domain ? c->domain : s->sender),
                            NULL);

    /* Symbols: rspamd's options - the matching mechanism with its
     * qualifier when there is one, else the domain (and the error). */
    const char *opts[2];
    size_t nopts = 0;
    if (c->mechanism)
        opts[nopts++] = c->mechanism;
    else if (c->domain)
        opts[nopts++] = c->domain;
    if (c->reason && (c->result == AS_SPF_TEMPERROR || c->result == AS_SPF_PERMERROR))
        opts[nopts++] = c->reason;
    as_task_add_symbolv(t, symbol_for(c->result), 1.0, opts, nopts);
    if (prim->plus_all && c->domain)
        as_task_add_symbol(t, "R_SPF_PLUSALL", 1.0, c->domain, NULL);
    as_task_log(t, AS_LOG_DEBUG, "spf: %s %s (%d rounds)", r->auth_results,
                c->reason ? c->reason : "", s->rounds);
}

/* One round of one identity.  Returns 1 while it waits for answers. */
static int identity_round(struct spf_scan *s, const struct spf_query *q, struct spf_outcome *o,
                          int *rounds)
{
    (*rounds)++;
    spf_engine_check(s->st->eng, q, o);
    if (o->incomplete && *rounds < s->st->max_rounds && !s->start_failed) {
        for (size_t i = 0; i < o->nmisses; i++)
            want(s, o->misses[i].name, o->misses[i].type, 1, q->seen_arg);
        if (s->outstanding > 0)
            return 1;   /* dns_done() runs the next round */
    }
    if (o->incomplete) {
        /* out of rounds, or a query could not be started: the outcome
         * is already temperror; say why */
        snprintf(o->reason, sizeof o->reason, "%s",
                 s->start_failed ? "DNS query could not be started" : "too many DNS round trips");
    }
    return 0;
}

/* The identity DMARC uses is checked first and the HELO identity (typed
 * result only) after it.  RFC 7208 4.6.4 limits each check_host() on its
 * own, so checked side by side, a hostile HELO record could take the
 * queries and rounds the MAIL FROM check of a spoofed domain needs. */
static void scan_round(struct spf_scan *s)
{
    if (s->published)
        return;       /* a late answer to a prefetch nobody needed */
    s->rounds++;
    if (!s->done_m) {
        if (identity_round(s, &s->qm, &s->om, &s->rounds_m))
            return;
        s->done_m = 1;
    }
    if (s->want_h && identity_round(s, &s->qh, &s->oh, &s->rounds_h))
        return;
    s->published = 1;
    publish(s);
}

/* ---- relays ---------------------------------------------------------- */

/* From one Received: value, the sending hop's HELO and IP:
 *   from HELO (rdns [IP]) by ...          Postfix, Sendmail
 *   from [IP] (helo=HELO) by ...          Exim
 * Only the part before " by " is looked at; at most 1 KB of it. */
static int received_hop(struct as_pool *p, const char *v, const char **helo, char *ip, size_t ipsz)
{
    char buf[1024];
    size_t n = strlen(v);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, v, n);
    buf[n] = 0;
    char *by = strstr(buf, " by ");
    if (by)
        *by = 0;
    char *f = buf;
    while (*f == ' ' || *f == '\t')
        f++;
    if (strncasecmp(f, "from ", 5) != 0)
        return -1;
    f += 5;
    while (*f == ' ')
        f++;
    size_t hl = strcspn(f, " ;()");
    const char *h = as_pool_strndup(p, f, hl);
    char *x = strstr(f, "helo=");
    if (x) {
        x += 5;
        h = as_pool_strndup(p, x, strcspn(x, " ;()"));
    }
    for (char *b = strchr(f, '['); b; b = strchr(b + 1, '[')) {
        char *e = strchr(b, ']');
        if (!e || (size_t)(e - b - 1) >= ipsz)
            continue;
        char cand[INET6_ADDRSTRLEN + 8];
        snprintf(cand, sizeof cand, "%.*s", (int)(e - b - 1), b + 1);
        const char *c = strncasecmp(cand, "IPv6:", 5) == 0 ? cand + 5 : cand;
        struct in6_addr tmp;
        size_t clen = strlen(c);
        if (clen < ipsz && (inet_pton(AF_INET, c, &tmp) == 1 || inet_pton(AF_INET6, c, &tmp) == 1)) {
            memcpy(ip, c, clen + 1);
            *helo = (h && *h && h[0] != '[') ? h : NULL;
            return 0;
        }
    }
    return -1;
}

static int set_query_ip(struct spf_query *q, const char *ip)
{
    struct in6_addr v6;
    if (inet_pton(AF_INET, ip, &q->ip.v4) == 1) {
        q->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &v6) != 1)
        return -1;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
        q->family = AF_INET;
        memcpy(&q->ip.v4, &v6.s6_addr[12], 4);
    } else {
        q->family = AF_INET6;
        q->ip.v6 = v6;
    }
    return 0;
}

static void skip(struct spf_scan *s, const char *why, int na_symbol)
{
    struct as_pool *p = as_task_pool(s->t);
    struct as_spf_result *r = as_pool_alloc(p, sizeof *r);
    if (!r)
        return;
    r->version = AS_SPF_RESULT_VERSION;
    r->skipped = 1;
    r->skip_reason = why;
    r->dmarc_identity = s->sender ? AS_SPF_ID_MAILFROM : AS_SPF_ID_HELO;
    r->dmarc = s->sender ? &r->mailfrom : &r->helo;
    r->client_ip = s->ip[0] ? as_pool_strdup(p, s->ip) : NULL;
    r->helo_name = s->helo;
    as_task_set_result(s->t, AS_SPF_RESULT_KEY, r);
    if (na_symbol)
        as_task_add_symbol(s->t, "R_SPF_NA", 1.0, why, NULL);
    as_task_log(s->t, AS_LOG_DEBUG, "spf: skipped: %s", why);
}

static const char *return_path(const struct as_task *t)
{
    const struct as_message *m = as_task_message(t);
    const struct as_header *h = m ? as_msg_header_get(m, "Return-Path", 0) : NULL;
    if (!h)
        return NULL;
    const char *v = as_header_unfold(t, h, NULL);
    if (!v)
        return NULL;
    const char *lt = strchr(v, '<');
    const char *start = lt ? lt + 1 : v;
    size_t n = lt ? strcspn(start, ">") : strcspn(start, " \t;");
    return as_pool_strndup(as_task_pool(t), start, n);
}

static void spf_scan(struct as_task *t, void *state)
{
    struct spf_state *st = state;
    const struct as_envelope *env = as_task_envelope(t);
    struct spf_scan *s = as_pool_alloc_uninit(as_task_pool(t), sizeof *s);
    if (!s || !env)
        return;
    memset(s, 0, offsetof(struct spf_scan, om));
    spf_outcome_reset(&s->om);
    spf_outcome_reset(&s->oh);
    s->t = t;
    s->st = st;
    s->helo = env->helo && *env->helo ? env->helo : NULL;
    const char *mf = env->mail_from;
    if (!mf && st->use_return_path)
        mf = return_path(t);
    s->sender = mf && *mf ? mf : NULL;

    if (st->skip_auth && env->user && *env->user) {
        skip(s, "authenticated sender", 0);
        return;
    }
    if (!env->ip || set_query_ip(&s->qm, env->ip) < 0) {
        skip(s, "no client IP", 1);
        return;
    }
    spf_strcpy(s->ip, sizeof s->ip, env->ip);
    if (spf_netlist_match(&st->trusted, s->qm.family, &s->qm.ip)) {
        /* Find the first hop, from the top, that is not one of ours. */
        const struct as_message *m = as_task_message(t);
        size_t n = m ? as_msg_header_count(m, "Received") : 0;
        int found = 0;
        for (size_t i = 0; i < n && i < 50 && !found; i++) {
            const struct as_header *h = as_msg_header_get(m, "Received", (int)i);
            const char *v = h ? as_header_unfold(t, h, NULL) : NULL;
            const char *hh = NULL;
            char ip[INET6_ADDRSTRLEN];
            struct spf_query tmp = { 0 };
            if (!v || received_hop(as_task_pool(t), v, &hh, ip, sizeof ip) < 0 ||
                set_query_ip(&tmp, ip) < 0)
                continue;
            if (spf_netlist_match(&st->trusted, tmp.family, &tmp.ip))
                continue;
            s->qm.family = tmp.family;
            s->qm.ip = tmp.ip;
            spf_strcpy(s->ip, sizeof s->ip, ip);
            s->helo = hh;
            found = 1;
        }
        if (!found) {
            skip(s, "no untrusted Received hop", 0);
            return;
        }
    }
    if (spf_netlist_match(&st->local, s->qm.family, &s->qm.ip)) {
        skip(s, "local network", 0);
        return;
    }

    spf_reverse_name(s->qm.family, &s->qm.ip, s->arpa, sizeof s->arpa);
    s->qm.lim = &st->lim;
    s->qm.fetch = scan_fetch;
    s->qm.fetch_arg = s;
    s->qm.seen = on_record;
    s->pm.s = s->ph.s = s;
    s->qm.seen_arg = &s->pm;
    s->qm.helo = s->helo;
    s->qm.sender = s->sender;
    s->qh = s->qm;
    s->qh.use_helo = 1;
    s->qh.seen_arg = &s->ph;
    s->want_m = 1;
    s->want_h = st->check_helo && s->sender && s->helo;
    scan_round(s);
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "spf",
    .version = "1.0",
    .description = "SPF (RFC 7208) with libspf2 over the scan's asynchronous DNS",
    .symbols = spf_symbols,
    .nsymbols = sizeof spf_symbols / sizeof spf_symbols[0],
    .options = spf_options,
    .noptions = sizeof spf_options / sizeof spf_options[0],
    .init = spf_init,
    .scan = spf_scan,
    .fini = spf_fini,
};
