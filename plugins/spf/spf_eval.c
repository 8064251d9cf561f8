/*
 * spf_eval.c - libspf2 driven over a replay DNS layer (see spf_eval.h).
 */
#define _GNU_SOURCE   /* memmem */
#include "spf_eval.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <spf2/spf.h>
#include <spf2/spf_dns.h>
#include <spf2/spf_dns_rr.h>

#define SPF_MAX_SEEN 24      /* records remembered for mechanism reporting */
#define SPF_MAX_EXPECT 10
/* What libspf2 says when a failing record has no exp=: replaced by our own
 * expansion of the configured default (libspf2 mangles macro text). */
#define DEFAULT_EXP_SENTINEL "authscan-default-explanation"

struct seen_rec {
    char domain[SPF_NAME_MAX + 1];
    struct spf_record *rec;
};

/* State of the evaluation in progress; the layer reaches it via hook. */
/* New fields must be initialized in spf_engine_check() (no memset there). */
struct eval {
    const struct spf_query *q;
    struct spf_outcome *out;
    struct spf_engine *eng;
    SPF_request_t *req;
    int spf_calls;            /* get_spf calls: the first is the top level */
    int terms, voids;
    int ptr_void;             /* the client's PTR was void (counted once) */
    enum as_spf_res fatal; /* AS_SPF_NONE while nothing decided */
    char expect[SPF_MAX_EXPECT][SPF_NAME_MAX + 1];  /* MX/PTR names to validate */
    int nexpect, iexpect;
    int expect_ptr;           /* expect[] came from a PTR answer */
    struct seen_rec seen[SPF_MAX_SEEN];
    int nseen;
};

struct spf_engine {
    SPF_server_t *server;
    SPF_dns_server_t *layer;
    char receiver[SPF_NAME_MAX + 1];
    char *default_exp;
    struct eval *cur;
};

/* ---- helpers -------------------------------------------------------- */

static void set_fatal(struct eval *ev, enum as_spf_res r, const char *fmt, const char *arg)
{
    if (ev->fatal != AS_SPF_NONE)
        return;
    ev->fatal = r;
    snprintf(ev->out->reason, sizeof ev->out->reason, fmt, arg ? arg : "");
}

/* Lower case, one trailing dot removed, RFC 7208 4.8 left truncation. */
static void name_norm(const char *in, char *out, size_t outsz)
{
    char tmp[1024];
    size_t n = strlen(in);
    if (n >= sizeof tmp)
        n = sizeof tmp - 1;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (in[i] >= 'A' && in[i] <= 'Z') ? in[i] + 32 : in[i];
    tmp[n] = 0;
    if (n && tmp[n - 1] == '.')
        tmp[--n] = 0;
    spf_strcpy(out, outsz, spf_name_truncate(tmp));
}

static void add_miss(struct eval *ev, const char *name, uint16_t type)
{
    struct spf_outcome *o = ev->out;
    o->incomplete = 1;
    for (size_t i = 0; i < o->nmisses; i++)
        if (o->misses[i].type == type && strcmp(o->misses[i].name, name) == 0)
            return;
    if (o->nmisses < SPF_MAX_MISSES) {
        spf_strcpy(o->misses[o->nmisses].name, sizeof o->misses[0].name, name);
        o->misses[o->nmisses].type = type;
        o->nmisses++;
    }
}

/* A DNS-querying term is being evaluated (RFC 7208 4.6.4).  Returns -1 when
 * it is one too many: the evaluation is then decided (permerror). */
static int count_term(struct eval *ev)
{
    if (++ev->terms > ev->q->lim->max_terms) {
        set_fatal(ev, AS_SPF_PERMERROR, "more than %s DNS-querying terms", "10");
        return -1;
    }
    return 0;
}

static int count_void(struct eval *ev, const char *name)
{
    if (++ev->voids > ev->q->lim->max_void) {
        set_fatal(ev, AS_SPF_PERMERROR, "too many void lookups (at %s)", name);
        return -1;
    }
    return 0;
}

/* A query this evaluation needs was refused by the scan's DNS budget.
 * That is a processing limit like those of RFC 7208 4.6.4, reached by the
 * record itself (SPF spends its reserve and the shared queries before
 * anything else of the scan, and the MAIL FROM identity goes first), so it
 * is permerror like them, never temperror: a temperror for an aligned
 * domain would leave DMARC without a verdict. */
static void budget_spent(struct eval *ev, const char *name)
{
    set_fatal(ev, AS_SPF_PERMERROR, "DNS query budget of the scan spent (at %s)", name);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && s[a - b - 1] == '.' && strcmp(s + a - b, suffix) == 0;
}

/* ---- the libspf2 DNS layer ----------------------------------------- */

static SPF_dns_rr_t *rr_status(SPF_dns_server_t *srv, const char *name, ns_type type, int herrno)
{
    return SPF_dns_rr_new_init(srv, name, type, 0, herrno);
}

static int status_herrno(enum as_dns_status st)
{
    switch (st) {
    case AS_DNS_OK: return NETDB_SUCCESS;
    case AS_DNS_NXDOMAIN: return HOST_NOT_FOUND;
    case AS_DNS_NODATA: return NO_DATA;
    /* An invalid name cannot exist: RFC 7208 treats it like a name that
     * does not resolve (no match), never as a temporary error. */
    case AS_DNS_BADNAME: return HOST_NOT_FOUND;
    default: return TRY_AGAIN;   /* SERVFAIL, TIMEOUT, BUDGET */
    }
}

static SPF_dns_rr_t *layer_lookup(SPF_dns_server_t *srv, const char *domain, ns_type type,
                                  int should_cache)
{
    (void)should_cache;
    struct spf_engine *eng = srv->hook;
    struct eval *ev = eng->cur;
    char name[SPF_NAME_MAX + 1];
    char base[SPF_NAME_MAX + 1];
    int cidr0 = 0;

    name_norm(domain ? domain : "", name, sizeof name);
    if (!ev || ev->fatal != AS_SPF_NONE)
        return rr_status(srv, name, type, TRY_AGAIN);   /* already decided: stop libspf2 */
    if (type == ns_t_spf)
        return rr_status(srv, name, type, NO_DATA);     /* RFC 7208: TXT only */

    /* Is this the address lookup of an MX/PTR name, or a term of its own? */
    int is_term = 1;
    if ((type == ns_t_a || type == ns_t_aaaa) && ev->iexpect < ev->nexpect &&
        strcmp(ev->expect[ev->iexpect], name) == 0) {
        ev->iexpect++;
        is_term = 0;
    } else if (type == ns_t_a || type == ns_t_aaaa || type == ns_t_mx || type == ns_t_ptr) {
        ev->nexpect = ev->iexpect = 0;
    } else {
        is_term = 0;
    }
    if (is_term && count_term(ev) < 0)
        return rr_status(srv, name, type, TRY_AGAIN);

    spf_strcpy(base, sizeof base, name);
    if (ends_with(name, SPF_CIDR0_SUFFIX)) {
        base[strlen(name) - strlen(SPF_CIDR0_SUFFIX) - 1] = 0;
        cidr0 = 1;
    }
    if (!spf_name_valid(base)) {
        if (is_term && count_void(ev, base) < 0)
            return rr_status(srv, name, type, TRY_AGAIN);
        return rr_status(srv, name, type, HOST_NOT_FOUND);
    }

    const struct as_dns_answer *ans = ev->q->fetch(ev->q->fetch_arg, base, (uint16_t)type);
    if (!ans) {
        add_miss(ev, base, (uint16_t)type);
        /* libspf2 looks up the names of an MX or PTR answer one by one and
         * stops at the first answer we lack: ask for the rest of them in
         * the same round (the term needs them all, at most 10). */
        for (int i = is_term ? ev->nexpect : ev->iexpect; i < ev->nexpect; i++) {
            char e[SPF_NAME_MAX + 1];
            spf_strcpy(e, sizeof e, ev->expect[i]);
            if (ends_with(e, SPF_CIDR0_SUFFIX))
                e[strlen(e) - strlen(SPF_CIDR0_SUFFIX) - 1] = 0;
            if (spf_name_valid(e))
                add_miss(ev, e, (uint16_t)type);
        }
        return rr_status(srv, name, type, TRY_AGAIN);
    }
    if (ans->status == AS_DNS_BUDGET) {
        budget_spent(ev, base);
        return rr_status(srv, name, type, TRY_AGAIN);
    }
    int herrno = status_herrno(ans->status);
    /* RFC 7208 5.5: a DNS error on the client's PTR makes ptr fail to
     * match (and %{p} is "unknown", 7.3); on the address of one of its
     * names, that name is skipped.  Not temperror: the reverse zone is the
     * client's, and its failures must not shield a domain that uses ptr. */
    if (herrno == TRY_AGAIN &&
        (type == ns_t_ptr ||
         ((type == ns_t_a || type == ns_t_aaaa) && !is_term && ev->expect_ptr)))
        return rr_status(srv, name, type, HOST_NOT_FOUND);
    if (herrno == NETDB_SUCCESS && ans->nrr == 0)
        herrno = NO_DATA;
    if (herrno == HOST_NOT_FOUND || herrno == NO_DATA) {
        /* Every ptr term asks the same reverse name: like pyspf, which
         * caches it, that void lookup counts once. */
        if (type == ns_t_ptr && ev->ptr_void++)
            is_term = 0;
        if (is_term && count_void(ev, base) < 0)
            return rr_status(srv, name, type, TRY_AGAIN);
        return rr_status(srv, name, type, herrno);
    }
    if (herrno != NETDB_SUCCESS)
        return rr_status(srv, name, type, herrno);

    size_t n = ans->nrr;
    if (type == ns_t_mx && (int)n > ev->q->lim->max_mx) {
        /* RFC 7208 4.6.4: more than 10 MX names is permerror, whatever the
         * order the server gave them in. */
        set_fatal(ev, AS_SPF_PERMERROR, "more than 10 MX records for %s", base);
        return rr_status(srv, name, type, TRY_AGAIN);
    }
    if (type == ns_t_ptr && (int)n > ev->q->lim->max_ptr)
        n = (size_t)ev->q->lim->max_ptr;   /* RFC 7208 5.5: ignore the rest */

    SPF_dns_rr_t *rr = rr_status(srv, name, type, NETDB_SUCCESS);
    if (!rr)
        return NULL;
    int k = 0;
    if (cidr0 && (type == ns_t_a || type == ns_t_aaaa)) {
        /* a/0: any address of the family matches, so hand libspf2 the
         * client's own address (matched with the default /32 or /128). */
        if (SPF_dns_rr_buf_realloc(rr, 0, sizeof(struct in6_addr)) == SPF_E_SUCCESS) {
            if (type == ns_t_a)
                rr->rr[0]->a = ev->q->ip.v4;
            else
                rr->rr[0]->aaaa = ev->q->ip.v6;
            k = 1;
        }
        rr->num_rr = k;
        return rr;
    }
    if (type == ns_t_mx || type == ns_t_ptr) {
        ev->nexpect = ev->iexpect = 0;
        ev->expect_ptr = type == ns_t_ptr;
    }
    for (size_t i = 0; i < n; i++) {
        const struct as_dns_rr *r = &ans->rr[i];
        if (r->type != type)
            continue;
        if (type == ns_t_a || type == ns_t_aaaa) {
            if (SPF_dns_rr_buf_realloc(rr, k, sizeof(struct in6_addr)) != SPF_E_SUCCESS)
                break;
            if (type == ns_t_a)
                rr->rr[k]->a = r->d.a;
            else
                rr->rr[k]->aaaa = r->d.aaaa;
            k++;
        } else if (type == ns_t_mx || type == ns_t_ptr) {
            const char *h = type == ns_t_mx ? r->d.mx.host : r->d.name;
            char hn[SPF_NAME_MAX + 1], full[SPF_NAME_MAX + 64];
            name_norm(h ? h : "", hn, sizeof hn);
            snprintf(full, sizeof full, cidr0 ? "%s." SPF_CIDR0_SUFFIX : "%s", hn);
            if (SPF_dns_rr_buf_realloc(rr, k, strlen(full) + 1) != SPF_E_SUCCESS)
                break;
            memcpy(type == ns_t_mx ? rr->rr[k]->mx : rr->rr[k]->ptr, full, strlen(full) + 1);
            if (ev->nexpect < SPF_MAX_EXPECT) {
                char fn[SPF_NAME_MAX + 1];
                name_norm(full, fn, sizeof fn);
                spf_strcpy(ev->expect[ev->nexpect++], SPF_NAME_MAX + 1, fn);
            }
            k++;
        } else if (type == ns_t_txt) {
            const struct as_str *j = &r->d.txt.joined;
            if (SPF_dns_rr_buf_realloc(rr, k, j->len + 1) != SPF_E_SUCCESS)
                break;
            memcpy(rr->rr[k]->txt, j->ptr, j->len);
            rr->rr[k]->txt[j->len] = 0;
            k++;
        }
    }
    rr->num_rr = k;
    return rr;
}

static void remember(struct eval *ev, const char *domain, struct spf_record *rec)
{
    if (ev->nseen >= SPF_MAX_SEEN) {
        free(rec);
        return;
    }
    spf_strcpy(ev->seen[ev->nseen].domain, sizeof ev->seen[0].domain, domain);
    ev->seen[ev->nseen].rec = rec;
    ev->nseen++;
}

/* Record retrieval (RFC 7208 4.4-4.5) replacing libspf2's: TXT only,
 * caseless "v=spf1" + SP selection, our validation, then libspf2 compiles
 * the rewritten text. */
static SPF_errcode_t layer_get_spf(SPF_server_t *server, SPF_request_t *req,
                                   SPF_response_t *resp, SPF_record_t **recp)
{
    struct spf_engine *eng = server->resolver->hook;
    struct eval *ev = eng->cur;
    char name[SPF_NAME_MAX + 1];
    *recp = NULL;
    name_norm(req->cur_dom ? req->cur_dom : "", name, sizeof name);
    int top = ev->spf_calls++ == 0;

    if (ev->fatal != AS_SPF_NONE)
        return SPF_E_DNS_ERROR;
    if (!top) {
        ev->nexpect = ev->iexpect = 0;
        if (count_term(ev) < 0)
            return SPF_E_DNS_ERROR;
    }
    const struct as_dns_answer *ans = NULL;
    if (spf_name_valid(name)) {
        ans = ev->q->fetch(ev->q->fetch_arg, name, AS_DNS_TXT);
        if (!ans) {
            add_miss(ev, name, AS_DNS_TXT);
            return SPF_E_DNS_ERROR;
        }
    }
    if (ans && ans->status == AS_DNS_BUDGET) {
        budget_spent(ev, name);
        return SPF_E_DNS_ERROR;
    }
    int herrno = ans ? status_herrno(ans->status) : HOST_NOT_FOUND;
    if (herrno == TRY_AGAIN) {
        set_fatal(ev, AS_SPF_TEMPERROR, "DNS failure looking up TXT of %s", name);
        return SPF_E_DNS_ERROR;
    }
    size_t found = 0;
    const struct as_str *txt = NULL;
    if (herrno == NETDB_SUCCESS) {
        txt = spf_answer_record(ans, &found);
    } else if (!top && count_void(ev, name) < 0) {
        return SPF_E_DNS_ERROR;
    }
    if (found == 0) {
        /* top level: result none; include/redirect: libspf2 turns the
         * error into permerror (RFC 7208 5.2, 6.1). */
        resp->result = SPF_RESULT_NONE;
        resp->reason = SPF_REASON_FAILURE;
        if (!top)
            set_fatal(ev, AS_SPF_PERMERROR, "no SPF record at %s", name);
        return SPF_E_NOT_SPF;
    }
    if (found > 1) {
        set_fatal(ev, AS_SPF_PERMERROR, "more than one SPF record at %s", name);
        return SPF_E_MULTIPLE_RECORDS;
    }
    if (txt->len > ev->q->lim->max_record_len) {
        set_fatal(ev, AS_SPF_PERMERROR, "SPF record of %s is too long", name);
        return SPF_E_BIG_STRING;
    }
    struct spf_record *rec = malloc(sizeof *rec);
    if (!rec) {
        set_fatal(ev, AS_SPF_TEMPERROR, "out of memory%s", "");
        return SPF_E_NO_MEMORY;
    }
    const char *perr = NULL;
    if (spf_record_parse(txt->ptr, txt->len, rec, &perr) < 0) {
        char why[SPF_NAME_MAX + 64];
        snprintf(why, sizeof why, "%s in the record of %s", perr, name);
        set_fatal(ev, AS_SPF_PERMERROR, "%s", why);
        free(rec);
        return SPF_E_SYNTAX;
    }
    for (size_t i = 0; i < rec->nterms; i++)
        if (rec->terms[i].kind == SPF_T_ALL && rec->terms[i].qualifier == '+')
            ev->out->plus_all = 1;
    if (ev->q->seen)
        ev->q->seen(ev->q->seen_arg, name, rec);

    size_t cap = txt->len * 3 + 256;
    char *text = malloc(cap);
    SPF_errcode_t err = SPF_E_NO_MEMORY;
    if (text && spf_record_rewrite(rec, ev->q->family == AF_INET6, text, cap) == 0)
        err = SPF_record_compile(server, resp, recp, text);
    free(text);
    remember(ev, name, rec);
    if (err != SPF_E_SUCCESS) {
        if (*recp) {
            SPF_record_free(*recp);
            *recp = NULL;
        }
        set_fatal(ev, AS_SPF_PERMERROR, "libspf2 cannot compile the record of %s", name);
        return err;
    }
    return SPF_E_SUCCESS;
}

/* %{p} for explanations (RFC 7208 7.3): a PTR name of the client whose
 * addresses include the client, preferring the current domain. */
static void validated_name(struct eval *ev, const char *domain, char *out, size_t outsz)
{
    snprintf(out, outsz, "unknown");
    char arpa[80];
    const struct spf_query *q = ev->q;
    spf_reverse_name(q->family, &q->ip, arpa, sizeof arpa);
    const struct as_dns_answer *ptr = q->fetch(q->fetch_arg, arpa, AS_DNS_PTR);
    if (!ptr) {
        add_miss(ev, arpa, AS_DNS_PTR);
        return;
    }
    if (ptr->status != AS_DNS_OK)
        return;
    int best = 0;   /* 3 exact, 2 subdomain, 1 other */
    for (size_t i = 0; i < ptr->nrr && i < 10; i++) {
        char hn[SPF_NAME_MAX + 1];
        name_norm(ptr->rr[i].d.name ? ptr->rr[i].d.name : "", hn, sizeof hn);
        if (!spf_name_valid(hn))
            continue;
        uint16_t t = q->family == AF_INET ? AS_DNS_A : AS_DNS_AAAA;
        const struct as_dns_answer *a = q->fetch(q->fetch_arg, hn, t);
        if (!a) {
            add_miss(ev, hn, t);
            continue;
        }
        int match = 0;
        for (size_t k = 0; a->status == AS_DNS_OK && k < a->nrr; k++)
            if ((t == AS_DNS_A && a->rr[k].d.a.s_addr == q->ip.v4.s_addr) ||
                (t == AS_DNS_AAAA && memcmp(&a->rr[k].d.aaaa, &q->ip.v6, 16) == 0))
                match = 1;
        if (!match)
            continue;
        size_t hl = strlen(hn), dl = strlen(domain);
        int score = strcmp(hn, domain) == 0 ? 3
                  : (hl > dl && hn[hl - dl - 1] == '.' && strcmp(hn + hl - dl, domain) == 0) ? 2 : 1;
        if (score > best) {
            best = score;
            spf_strcpy(out, outsz, hn);
        }
    }
}

static void macro_ctx_fill(struct eval *ev, struct spf_macro_ctx *mc, const char *domain,
                           char *pbuf, size_t pbufsz, int need_p)
{
    const struct spf_query *q = ev->q;
    SPF_request_t *req = ev->req;
    memset(mc, 0, sizeof *mc);
    mc->sender = req->env_from;
    mc->local = req->env_from_lp;
    mc->sender_dom = req->env_from_dp;
    mc->domain = domain;
    mc->helo = req->helo_dom ? req->helo_dom : "";
    mc->receiver = ev->eng->receiver;
    mc->family = q->family;
    if (q->family == AF_INET)
        mc->ip.v4 = q->ip.v4;
    else
        mc->ip.v6 = q->ip.v6;
    mc->now = (long long)time(NULL);
    mc->validated = "unknown";
    if (need_p) {
        validated_name(ev, domain, pbuf, pbufsz);
        mc->validated = pbuf;
    }
}

static void default_explanation(struct eval *ev, const char *domain, char **bufp, size_t *buflenp)
{
    char tmp[512] = "";
    const char *d = ev->eng->default_exp;
    if (d && *d) {
        struct spf_macro_ctx mc;
        char pb[SPF_NAME_MAX + 1];
        macro_ctx_fill(ev, &mc, domain, pb, sizeof pb, strstr(d, "{p") || strstr(d, "{P"));
        if (spf_macro_expand(d, strlen(d), &mc, 1, tmp, sizeof tmp) < 0)
            tmp[0] = 0;
    }
    size_t need = strlen(tmp) + 1;
    if (*buflenp < need) {
        char *nb = realloc(*bufp, need);
        if (!nb)
            return;
        *bufp = nb;
        *buflenp = need;
    }
    memcpy(*bufp, tmp, need);
}

/* exp= (RFC 7208 6.2): libspf2 expanded the domain-spec; we fetch the TXT
 * and expand it ourselves (libspf2 mangles spaces and later macros).  Any
 * problem gives the default explanation, never an error. */
static SPF_errcode_t layer_get_exp(SPF_server_t *server, const char *domain, char **bufp,
                                   size_t *buflenp)
{
    struct spf_engine *eng = server->resolver->hook;
    struct eval *ev = eng->cur;
    char name[SPF_NAME_MAX + 1], cur[SPF_NAME_MAX + 1];
    name_norm(domain ? domain : "", name, sizeof name);
    name_norm(ev->req->cur_dom ? ev->req->cur_dom : "", cur, sizeof cur);
    const struct as_dns_answer *ans = NULL;
    if (spf_name_valid(name)) {
        ans = ev->q->fetch(ev->q->fetch_arg, name, AS_DNS_TXT);
        if (!ans)
            add_miss(ev, name, AS_DNS_TXT);
    }
    if (ans && ans->status == AS_DNS_OK && ans->nrr == 1) {
        const struct as_str *j = &ans->rr[0].d.txt.joined;
        char tmp[512];
        struct spf_macro_ctx mc;
        char pb[SPF_NAME_MAX + 1];
        int need_p = memmem(j->ptr, j->len, "{p", 2) || memmem(j->ptr, j->len, "{P", 2);
        macro_ctx_fill(ev, &mc, cur, pb, sizeof pb, need_p);
        int n = spf_macro_expand(j->ptr, j->len, &mc, 1, tmp, sizeof tmp);
        if (n >= 0) {
            size_t need = (size_t)n + 1;
            if (*buflenp < need) {
                char *nb = realloc(*bufp, need);
                if (!nb)
                    return SPF_E_NO_MEMORY;
                *bufp = nb;
                *buflenp = need;
            }
            memcpy(*bufp, tmp, need);
            return SPF_E_SUCCESS;
        }
    }
    default_explanation(ev, cur, bufp, buflenp);
    return SPF_E_SUCCESS;
}

/* ---- reporting the matching mechanism ------------------------------ */

static const struct spf_record *seen_get(struct eval *ev, const char *domain)
{
    for (int i = 0; i < ev->nseen; i++)
        if (strcmp(ev->seen[i].domain, domain) == 0)
            return ev->seen[i].rec;
    return NULL;
}

static int ip_in(const struct spf_query *q, int fam, const void *net, int cidr)
{
    if (fam != q->family)
        return 0;
    const unsigned char *a = fam == AF_INET ? (const unsigned char *)&q->ip.v4 : q->ip.v6.s6_addr;
    const unsigned char *b = net;
    int bits = cidr < 0 ? (fam == AF_INET ? 32 : 128) : cidr;
    for (int i = 0; bits > 0; i++, bits -= 8) {
        unsigned char m = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
        if ((a[i] & m) != (b[i] & m))
            return 0;
    }
    return 1;
}

static int addr_match(struct eval *ev, const char *host, int cidr4, int cidr6)
{
    const struct spf_query *q = ev->q;
    uint16_t t = q->family == AF_INET ? AS_DNS_A : AS_DNS_AAAA;
    int cidr = q->family == AF_INET ? cidr4 : cidr6;
    if (cidr == 0)
        return 1;
    const struct as_dns_answer *a = q->fetch(q->fetch_arg, host, t);
    for (size_t k = 0; a && a->status == AS_DNS_OK && k < a->nrr; k++)
        if (ip_in(q, q->family, t == AS_DNS_A ? (const void *)&a->rr[k].d.a
                                              : (const void *)&a->rr[k].d.aaaa, cidr))
            return 1;
    return 0;
}

static void term_domain(const struct spf_term *t, const char *cur, char *out, size_t outsz)
{
    if (!t->domain.len) {
        spf_strcpy(out, outsz, cur);
        return;
    }
    char tmp[SPF_NAME_MAX + 2];
    size_t n = t->domain.len > SPF_NAME_MAX ? SPF_NAME_MAX : t->domain.len;
    memcpy(tmp, t->domain.ptr, n);
    tmp[n] = '\0';
    name_norm(tmp, out, outsz);
}

/* Best effort: which term of the records we saw produced the result.  Only
 * macro-free terms whose answers we hold can be confirmed; an include is
 * followed into its record. */
static const struct spf_term *find_term(struct eval *ev, const char *domain, char want, int depth,
                                        int in_include)
{
    const struct spf_record *rec = seen_get(ev, domain);
    if (!rec || depth > 10)
        return NULL;
    for (size_t i = 0; i < rec->nterms; i++) {
        const struct spf_term *t = &rec->terms[i];
        char d[SPF_NAME_MAX + 1];
        int m = 0;
        if (t->qualifier == 0)
            continue;
        if (t->has_macro) {
            if (t->qualifier == want && t->kind != SPF_T_INCLUDE)
                return t;   /* cannot check: assume the first plausible one */
            continue;
        }
        term_domain(t, domain, d, sizeof d);
        switch (t->kind) {
        case SPF_T_ALL: m = 1; break;
        case SPF_T_IP4: m = ip_in(ev->q, AF_INET, &t->addr.v4, t->cidr4 < 0 ? 32 : t->cidr4); break;
        case SPF_T_IP6: m = ip_in(ev->q, AF_INET6, &t->addr.v6, t->cidr6 < 0 ? 128 : t->cidr6); break;
        case SPF_T_A: m = addr_match(ev, d, t->cidr4, t->cidr6); break;
        case SPF_T_MX: {
            const struct as_dns_answer *mx = ev->q->fetch(ev->q->fetch_arg, d, AS_DNS_MX);
            for (size_t k = 0; !m && mx && mx->status == AS_DNS_OK && k < mx->nrr; k++) {
                char hn[SPF_NAME_MAX + 1];
                name_norm(mx->rr[k].d.mx.host ? mx->rr[k].d.mx.host : "", hn, sizeof hn);
                m = addr_match(ev, hn, t->cidr4, t->cidr6);
            }
            break;
        }
        case SPF_T_EXISTS: {
            const struct as_dns_answer *a = ev->q->fetch(ev->q->fetch_arg, d, AS_DNS_A);
            m = a && a->status == AS_DNS_OK && a->nrr > 0;
            break;
        }
        case SPF_T_PTR: m = 1; break;
        case SPF_T_INCLUDE: {
            const struct spf_term *sub = find_term(ev, d, '+', depth + 1, 1);
            m = sub != NULL;
            break;
        }
        default: break;
        }
        if (m)
            return t->qualifier == want ? t : NULL;
    }
    if (rec->redirect >= 0 && rec->all < 0 && !rec->terms[rec->redirect].has_macro) {
        char d[SPF_NAME_MAX + 1];
        term_domain(&rec->terms[rec->redirect], domain, d, sizeof d);
        return find_term(ev, d, want, depth + 1, in_include);
    }
    return NULL;
}

/* ---- driver --------------------------------------------------------- */

void spf_reverse_name(int family, const void *addr, char *out, size_t outsz)
{
    /* by hand: an IPv6 name took 16 snprintf calls, about 16,000
     * instructions, for each client */
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = addr;
    char buf[sizeof "f.f." * 16 + sizeof "ip6.arpa"];
    char *o = buf;
    if (family == AF_INET) {
        for (int i = 3; i >= 0; i--) {
            unsigned v = b[i];
            if (v >= 100) *o++ = (char)('0' + v / 100);
            if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = '.';
        }
        memcpy(o, "in-addr.arpa", sizeof "in-addr.arpa");
    } else {
        for (int i = 15; i >= 0; i--) {
            *o++ = hex[b[i] & 15];
            *o++ = '.';
            *o++ = hex[b[i] >> 4];
            *o++ = '.';
        }
        memcpy(o, "ip6.arpa", sizeof "ip6.arpa");
    }
    spf_strcpy(out, outsz, buf);
}

static void quiet(const char *file, int line, const char *msg)
{
    (void)file; (void)line; (void)msg;
}

struct spf_engine *spf_engine_new(const char *receiver, const char *default_exp)
{
    struct spf_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    /* libspf2 logs through globals and prints to stdout by default. */
    SPF_warning_handler = quiet;
    SPF_info_handler = quiet;
    SPF_debug_handler = quiet;
    e->layer = calloc(1, sizeof *e->layer);
    if (!e->layer) {
        free(e);
        return NULL;
    }
    e->layer->destroy = NULL;   /* ours: freed in spf_engine_free */
    e->layer->lookup = layer_lookup;
    e->layer->get_spf = layer_get_spf;
    e->layer->get_exp = layer_get_exp;
    e->layer->name = "authscan-replay";
    e->layer->hook = e;
    e->server = SPF_server_new_dns(e->layer, 0);
    if (!e->server) {
        free(e->layer);
        free(e);
        return NULL;
    }
    spf_strcpy(e->receiver, sizeof e->receiver, receiver && *receiver ? receiver : "unknown");
    SPF_server_set_rec_dom(e->server, e->receiver);
    /* Limits are enforced by the layer across include/redirect; libspf2's
     * own counters restart in every include, so keep them out of the way. */
    SPF_server_set_max_dns_mech(e->server, 250);
    SPF_server_set_max_dns_mx(e->server, 250);
    SPF_server_set_max_dns_ptr(e->server, 250);
    SPF_response_t *sresp = NULL;
    SPF_server_set_explanation(e->server, DEFAULT_EXP_SENTINEL, &sresp);
    if (sresp)
        SPF_response_free(sresp);
    e->default_exp = strdup(default_exp ? default_exp : "");
    return e;
}

void spf_engine_free(struct spf_engine *e)
{
    if (!e)
        return;
    SPF_server_free(e->server);
    free(e->layer);
    free(e->default_exp);
    free(e);
}

static enum as_spf_res map_result(SPF_result_t r)
{
    switch (r) {
    case SPF_RESULT_NEUTRAL: return AS_SPF_NEUTRAL;
    case SPF_RESULT_PASS: return AS_SPF_PASS;
    case SPF_RESULT_FAIL: return AS_SPF_FAIL;
    case SPF_RESULT_SOFTFAIL: return AS_SPF_SOFTFAIL;
    case SPF_RESULT_NONE: return AS_SPF_NONE;
    case SPF_RESULT_TEMPERROR: return AS_SPF_TEMPERROR;
    default: return AS_SPF_PERMERROR;
    }
}

static int is_loopback(const struct spf_query *q)
{
    if (q->family == AF_INET)
        return (ntohl(q->ip.v4.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&q->ip.v6);
}

const struct as_str *spf_answer_record(const struct as_dns_answer *ans, size_t *found)
{
    const struct as_str *txt = NULL;
    *found = 0;
    for (size_t i = 0; i < ans->nrr; i++) {
        const struct as_str *j = &ans->rr[i].d.txt.joined;
        if (ans->rr[i].type == AS_DNS_TXT && spf_record_is_spf(j->ptr, j->len)) {
            ++*found;
            txt = j;
        }
    }
    return txt;
}

/* Resets an outcome for a new round.  Not a memset: the struct is about
 * 10 KiB (the miss list) and is reset every round of every scan; the
 * arrays are only read up to their counts and the strings from [0]. */
void spf_outcome_reset(struct spf_outcome *out)
{
    out->incomplete = 0;
    out->nmisses = 0;
    out->checked = 0;
    out->result = AS_SPF_NONE;
    out->domain[0] = out->sender[0] = out->mechanism[0] = '\0';
    out->reason[0] = out->explanation[0] = '\0';
    out->plus_all = 0;
}

/* local@domain into out (cut to fit): every round of every check builds
 * two of these, and snprintf cost more than the rest of the setup. */
static void join_at(char *out, size_t outsz, const char *local, const char *dom)
{
    size_t n = strlen(local), m = strlen(dom);
    if (n > outsz - 1) n = outsz - 1;
    memcpy(out, local, n);
    if (n < outsz - 1) {
        out[n++] = '@';
        if (m > outsz - 1 - n) m = outsz - 1 - n;
        memcpy(out + n, dom, m);
        n += m;
    }
    out[n] = '\0';
}

void spf_engine_check(struct spf_engine *e, const struct spf_query *q, struct spf_outcome *out)
{
    spf_outcome_reset(out);

    /* The identity (RFC 7208 2.3, 2.4): MAIL FROM, or postmaster@HELO. */
    const char *helo = q->helo && *q->helo ? q->helo : NULL;
    const char *dom;
    char local[300];
    if (q->sender && *q->sender && !q->use_helo) {
        const char *at = strrchr(q->sender, '@');
        dom = at ? at + 1 : q->sender;
        size_t ll = at ? (size_t)(at - q->sender) : 0;
        if (ll == 0 || ll >= sizeof local) {
            spf_strcpy(local, sizeof local, "postmaster");   /* RFC 7208 4.3 */
        } else {
            memcpy(local, q->sender, ll);
            local[ll] = '\0';
        }
    } else {
        dom = helo;
        spf_strcpy(local, sizeof local, "postmaster");
    }
    if (!dom || !*dom)
        return;
    /* RFC 5321 4.5.3.1: 64-octet local part, 255-octet domain.  Longer
     * input never reaches libspf2's macro expander. */
    if (strlen(local) > 64 || strlen(dom) > 255) {
        snprintf(out->reason, sizeof out->reason, "identity too long");
        return;
    }
    name_norm(dom, out->domain, sizeof out->domain);
    join_at(out->sender, sizeof out->sender, local, dom);
    /* RFC 7208 4.3: a malformed domain or one without a dot gives none
     * before any DNS query. */
    if (strlen(dom) > SPF_NAME_MAX || !spf_identity_domain_valid(dom))
        return;
    if (q->family != AF_INET && q->family != AF_INET6)
        return;
    out->checked = 1;
    if (is_loopback(q)) {
        /* libspf2 passes any loopback client unconditionally. */
        snprintf(out->reason, sizeof out->reason, "loopback client not evaluated");
        out->checked = 0;
        return;
    }

    /* Scalars only: expect[] and seen[] (about 9 KiB) are read up to
     * nexpect/nseen, so zeroing them every round would be wasted work. */
    struct eval ev;
    ev.q = q;
    ev.out = out;
    ev.eng = e;
    ev.req = NULL;
    ev.spf_calls = ev.terms = ev.voids = ev.ptr_void = 0;
    ev.fatal = AS_SPF_NONE;
    ev.nexpect = ev.iexpect = ev.expect_ptr = 0;
    ev.nseen = 0;

    SPF_request_t *req = SPF_request_new(e->server);
    if (!req) {
        out->result = AS_SPF_TEMPERROR;
        snprintf(out->reason, sizeof out->reason, "out of memory");
        return;
    }
    ev.req = req;
    if (q->family == AF_INET)
        SPF_request_set_ipv4(req, q->ip.v4);
    else
        SPF_request_set_ipv6(req, q->ip.v6);
    if (helo)
        SPF_request_set_helo_dom(req, helo);
    char sender[600];
    join_at(sender, sizeof sender, local, out->domain);
    SPF_request_set_env_from(req, sender);

    SPF_response_t *resp = NULL;
    e->cur = &ev;
    SPF_errcode_t err = SPF_request_query_mailfrom(req, &resp);
    e->cur = NULL;

    if (out->incomplete) {
        /* answers missing: the result of this round means nothing */
    } else if (ev.fatal != AS_SPF_NONE) {
        out->result = ev.fatal;
    } else if (!resp) {
        out->result = AS_SPF_TEMPERROR;
        snprintf(out->reason, sizeof out->reason, "libspf2: %s", SPF_strerror(err));
    } else {
        SPF_result_t r = SPF_response_result(resp);
        if (r == SPF_RESULT_INVALID) {
            /* 1.2.10 leaves the result unset when the top-level lookup
             * failed or the record did not compile. */
            SPF_errcode_t ec = SPF_response_errcode(resp) ? SPF_response_errcode(resp) : err;
            out->result = ec == SPF_E_DNS_ERROR ? AS_SPF_TEMPERROR
                        : ec == SPF_E_NOT_SPF ? AS_SPF_NONE : AS_SPF_PERMERROR;
        } else {
            out->result = map_result(r);
        }
        if ((out->result == AS_SPF_TEMPERROR || out->result == AS_SPF_PERMERROR) && !out->reason[0])
            snprintf(out->reason, sizeof out->reason, "%s", SPF_strerror(SPF_response_errcode(resp)));
        const char *x = SPF_response_get_explanation(resp);
        if (out->result == AS_SPF_FAIL && x && strcmp(x, DEFAULT_EXP_SENTINEL) != 0) {
            spf_strcpy(out->explanation, sizeof out->explanation, x);
        } else if (out->result == AS_SPF_FAIL) {
            char *buf = NULL;
            size_t blen = 0;
            e->cur = &ev;
            default_explanation(&ev, out->domain, &buf, &blen);
            e->cur = NULL;
            spf_strcpy(out->explanation, sizeof out->explanation, buf ? buf : "");
            free(buf);
        }
        if (out->result == AS_SPF_PASS || out->result == AS_SPF_FAIL ||
            out->result == AS_SPF_SOFTFAIL || out->result == AS_SPF_NEUTRAL) {
            char want = out->result == AS_SPF_PASS ? '+' : out->result == AS_SPF_FAIL ? '-'
                      : out->result == AS_SPF_SOFTFAIL ? '~' : '?';
            if (SPF_response_reason(resp) == SPF_REASON_MECH) {
                const struct spf_term *t = find_term(&ev, out->domain, want, 0, 0);
                if (t) {
                    const char *txt = t->text.ptr;
                    size_t len = t->text.len;
                    if (len && strchr("+-~?", txt[0])) {
                        txt++;
                        len--;
                    }
                    snprintf(out->mechanism, sizeof out->mechanism, "%c%.*s", want, (int)len, txt);
                }
            }
        }
    }
    if (out->incomplete)
        out->result = AS_SPF_TEMPERROR;
    if (resp)
        SPF_response_free(resp);
    SPF_request_free(req);
    for (int i = 0; i < ev.nseen; i++)
        free(ev.seen[i].rec);
}
