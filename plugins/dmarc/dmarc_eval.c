/*
 * dmarc_eval.c - DMARC evaluation for one Author Domain; see dmarc_eval.h.
 *
 * Order of work in one round:
 *   1. policy discovery: the Tree Walk from the Author Domain (RFC 9989
 *      4.10.1; the same walk yields the author's Organizational Domain), or
 *      _dmarc.<author> then _dmarc.<PSL org domain> (RFC 7489 6.6.3);
 *   2. the policy for this message: p, or sp / np for a subdomain, np only
 *      when the Author Domain does not exist (RFC 9989 4.10.1, A.4);
 *   3. alignment of the passing identifiers (SPF, each DKIM d=), walking
 *      their trees only when relaxed alignment needs their Organizational
 *      Domain (RFC 9989 4.10.2);
 *   4. on failure: temperror if an aligned identifier had a DNS error,
 *      else the disposition (t=y, pct=, the mailing-list safeguard).
 * Stages whose answers are missing stop the round; independent lookups of
 * one stage are requested together.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "dmarc_eval.h"
#include "dmarc_record.h"

struct ctx {
    struct as_pool *pool;
    const struct dmarc_input *in;
    dmarc_fetch_fn fetch;
    void *arg;
    struct dmarc_outcome *out;
};

int dmarc_count_labels(const char *d)
{
    if (!d || !*d)
        return 0;
    int n = 1;
    for (; *d; d++)
        if (*d == '.')
            n++;
    return n;
}

/* The suffix of `d` with `labels` labels (labels >= 1). */
static const char *suffix_labels(const char *d, int labels)
{
    int total = dmarc_count_labels(d);
    const char *p = d;
    for (int skip = total - labels; skip > 0 && p; skip--) {
        p = strchr(p, '.');
        if (p)
            p++;
    }
    return p;
}

const char *dmarc_domain_clean(struct as_pool *pool, const char *d)
{
    if (!d)
        return NULL;
    size_t n = strlen(d);
    if (n > 1024)
        return NULL;
    char *o = as_pool_alloc(pool, n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)d[i]);
        if (c == '.' && (k == 0 || o[k - 1] == '.'))
            continue;
        o[k++] = c;
    }
    while (k && o[k - 1] == '.')
        k--;
    o[k] = 0;
    return k ? o : NULL;
}

const char *dmarc_psl_org(struct as_pool *pool, const psl_ctx_t *psl, const char *domain)
{
    if (!domain)
        return NULL;
    const char *r = psl ? psl_registrable_domain(psl, domain) : NULL;
    return as_pool_strdup(pool, r ? r : domain);
}

/* ---- DNS ------------------------------------------------------------ */

static void add_miss(struct ctx *c, const char *name, uint16_t type)
{
    struct dmarc_outcome *o = c->out;
    o->incomplete = 1;
    for (size_t i = 0; i < o->nmisses; i++)
        if (o->misses[i].type == type && strcmp(o->misses[i].name, name) == 0)
            return;
    if (o->nmisses < DMARC_MAX_MISSES)
        o->misses[o->nmisses++] = (struct dmarc_miss){ as_pool_strdup(c->pool, name), type };
}

static const struct as_dns_answer *get(struct ctx *c, const char *name, uint16_t type)
{
    const struct as_dns_answer *a = c->fetch(c->arg, name, type);
    if (!a)
        add_miss(c, name, type);
    return a;
}

enum { LK_BUDGET = -3, LK_MISS = -2, LK_ERROR = -1, LK_NONE = 0, LK_ONE = 1, LK_MANY = 2 };

/* The DMARC records at _dmarc.<name> (RFC 9989 4.10 steps 1-2: records not
 * starting with v=DMARC1 are discarded; several records count as none for
 * the walk, and end policy discovery at the Author Domain). */
static int lookup_record(struct ctx *c, const char *name, struct as_dmarc_record *rec)
{
    char q[300];
    size_t n = strlen(name);
    if (n + 7 > 253)
        return LK_NONE;       /* a name we could never query: nothing there */
    memcpy(q, "_dmarc.", 7);
    memcpy(q + 7, name, n + 1);
    const struct as_dns_answer *a = get(c, q, AS_DNS_TXT);
    if (!a)
        return LK_MISS;
    switch (a->status) {
    case AS_DNS_OK:
        break;
    case AS_DNS_NXDOMAIN:
    case AS_DNS_NODATA:
    case AS_DNS_BADNAME:
        return LK_NONE;
    case AS_DNS_BUDGET:
        return LK_BUDGET;     /* not sent: no DNS failure (see aligned()) */
    default:
        return LK_ERROR;
    }
    int count = 0;
    const struct as_str *which = NULL;
    for (size_t i = 0; i < a->nrr; i++) {
        const struct as_str *j = &a->rr[i].d.txt.joined;
        if (a->rr[i].type == AS_DNS_TXT && dmarc_record_is_dmarc(j->ptr, j->len)) {
            count++;
            which = j;
        }
    }
    if (count == 0)
        return LK_NONE;
    if (count > 1)
        return LK_MANY;
    enum dmarc_parse_status st = dmarc_record_parse(c->pool, which->ptr, which->len, rec);
    if (st == DMARC_REC_TOO_LONG) {
        rec->p = AS_DMARC_POLICY_UNSET;   /* unusable: no p=, no rua= */
        rec->rua = NULL;
        rec->nerrors++;
    }
    return LK_ONE;
}

/* ---- the Tree Walk (RFC 9989 4.10) ------------------------------------ */

static void walk_select_org(struct dmarc_walk *w)
{
    /* RFC 9989 4.10.2, from the longest name to the shortest */
    for (size_t i = 0; i < w->n; i++) {
        if (w->found[i] != LK_ONE)
            continue;
        if (w->rec[i].psd == 'n') {
            w->org = w->names[i];
            return;
        }
        if (w->rec[i].psd == 'y' && i > 0) {
            w->org = suffix_labels(w->start, dmarc_count_labels(w->names[i]) + 1);
            return;
        }
    }
    for (size_t i = w->n; i-- > 0;)
        if (w->found[i] == LK_ONE) {
            w->org = w->names[i];
            return;
        }
    w->org = w->start;
}

static void walk_run(struct ctx *c, struct dmarc_walk *w)
{
    int labels = dmarc_count_labels(w->start);
    const char *cur = w->start;
    while (cur && *cur && w->n < DMARC_WALK_MAX) {
        int r = lookup_record(c, cur, &w->rec[w->n]);
        if (r == LK_MISS) {
            w->incomplete = 1;
            return;
        }
        w->names[w->n] = cur;
        w->found[w->n] = r == LK_ERROR || r == LK_BUDGET ? LK_NONE : r;
        w->n++;
        if (r == LK_ERROR || r == LK_BUDGET) {
            w->dns_error = 1;
            w->budget = r == LK_BUDGET;
            return;
        }
        if (r == LK_ONE && (w->rec[w->n - 1].psd == 'y' || w->rec[w->n - 1].psd == 'n'))
            break;            /* steps 2 and 6: stop */
        if (w->n == 1 && labels > 8)
            cur = suffix_labels(w->start, 7);   /* step 4: jump to 7 labels */
        else {
            cur = strchr(cur, '.');
            if (cur)
                cur++;
        }
    }
    w->complete = 1;
    walk_select_org(w);
}

static struct dmarc_walk *walk_get(struct ctx *c, const char *start)
{
    struct dmarc_outcome *o = c->out;
    for (size_t i = 0; i < o->nwalks; i++)
        if (strcmp(o->walks[i].start, start) == 0)
            return &o->walks[i];
    if (o->nwalks >= DMARC_MAX_WALKS)
        return NULL;
    struct dmarc_walk *w = &o->walks[o->nwalks++];
    memset(w, 0, sizeof *w);
    w->start = start;
    walk_run(c, w);
    return w;
}

const struct dmarc_walk *dmarc_outcome_walk(const struct dmarc_outcome *out, const char *start)
{
    for (size_t i = 0; i < out->nwalks; i++)
        if (strcmp(out->walks[i].start, start) == 0)
            return &out->walks[i];
    return NULL;
}

/* ---- alignment -------------------------------------------------------- */

enum { AL_NO = 0, AL_YES = 1, AL_ERROR = -1, AL_MISS = -2 };

/* d is org or a name below it. */
static int same_tld(const char *a, const char *b)
{
    const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
    return strcmp(da ? da + 1 : a, db ? db + 1 : b) == 0;
}

static int at_or_below(const char *d, const char *org)
{
    size_t a = strlen(d), b = strlen(org);
    return a == b ? strcmp(d, org) == 0
                  : a > b && d[a - b - 1] == '.' && strcmp(d + a - b, org) == 0;
}

/* RFC 9989 4.4 / 4.10.2: strict = identical names, relaxed = the same
 * Organizational Domain.  Names are compared after lower-casing; both are
 * A-labels already (the From parser and DKIM convert U-labels). */
static int aligned(struct ctx *c, const char *ident, const char *author, const char *author_org,
                   int strict)
{
    const char *id = dmarc_domain_clean(c->pool, ident);
    if (!id)
        return AL_NO;
    if (strcmp(id, author) == 0)
        return AL_YES;
    if (strict)
        return AL_NO;
    if (!same_tld(id, author))
        return AL_NO;        /* no common suffix: no walk could make them equal */
    if (!author_org)
        return AL_ERROR;     /* the author's walk failed after its own record */
    /* The Organizational Domain of a name is the name or one of its
     * parents (RFC 9989 4.10.2, and the PSL's registrable domain), so an
     * identifier outside the author's Organizational Domain cannot align
     * and is never walked.  Nothing on the walk of a domain the sender
     * controls (a _dmarc record that times out on purpose) can then turn
     * the spoof of someone else's domain into temperror. */
    if (!at_or_below(id, author_org))
        return AL_NO;
    if (c->in->discovery == AS_DMARC_DISCOVERY_PSL)
        return strcmp(dmarc_psl_org(c->pool, c->in->psl, id), author_org) == 0 ? AL_YES : AL_NO;
    struct dmarc_walk *w = walk_get(c, id);
    if (!w)
        return AL_NO;         /* more identifiers than we walk for */
    if (w->incomplete)
        return AL_MISS;
    /* The scan's DNS budget ran out on this walk: the message brought more
     * identifiers to walk than we spend queries on.  An identifier we will
     * not finish checking does not align; like a signature we will not
     * process, it never makes the result temperror (issue 10). */
    if (w->budget)
        return AL_NO;
    if (w->dns_error)
        return AL_ERROR;
    return strcmp(w->org, author_org) == 0 ? AL_YES : AL_NO;
}

/* ---- evaluation ------------------------------------------------------- */

static enum as_dmarc_policy lower(enum as_dmarc_policy p)
{
    return p == AS_DMARC_POLICY_REJECT ? AS_DMARC_POLICY_QUARANTINE
         : p == AS_DMARC_POLICY_QUARANTINE ? AS_DMARC_POLICY_NONE : p;
}

static void finish_none(struct ctx *c, const char *comment)
{
    c->out->res.result = AS_DMARC_NONE;
    c->out->res.comment = comment;
    c->out->res.disposition = AS_DMARC_POLICY_NONE;
}

static void finish_temperror(struct ctx *c, const char *comment)
{
    c->out->res.result = AS_DMARC_TEMPERROR;
    c->out->res.comment = comment;
    c->out->res.disposition = AS_DMARC_POLICY_NONE;
}

void dmarc_evaluate(struct as_pool *pool, const struct dmarc_input *in, dmarc_fetch_fn fetch,
                    void *fetch_arg, struct dmarc_outcome *out)
{
    /* Not a memset of *out: walks[] holds DMARC_MAX_WALKS walks of parsed
     * records and is reset every round of every scan; misses[] and walks[]
     * are read only up to their counts (a walk is zeroed when it starts). */
    out->incomplete = 0;
    out->nmisses = 0;
    out->nwalks = 0;
    out->bad_policy = 0;
    memset(&out->res, 0, sizeof out->res);
    struct ctx cx = { pool, in, fetch, fetch_arg, out };
    struct ctx *c = &cx;
    struct as_dmarc_result *res = &out->res;
    const int bis = in->discovery == AS_DMARC_DISCOVERY_TREE;
    res->version = AS_DMARC_RESULT_VERSION;
    res->discovery = in->discovery;
    res->spf_result = in->spf_result;
    res->spf_domain = in->spf_domain ? dmarc_domain_clean(pool, in->spf_domain) : NULL;
    res->nauthors = 1;

    const char *author = dmarc_domain_clean(pool, in->author);
    if (!author) {
        res->reasons |= AS_DMARC_REASON_NO_AUTHOR;
        finish_none(c, "no Author Domain");
        return;
    }
    res->author_domain = author;

    /* 1. policy discovery */
    const struct as_dmarc_record *rec = NULL;
    const char *pdom = NULL, *org = NULL;
    if (bis) {
        struct dmarc_walk *w = walk_get(c, author);
        if (!w || w->incomplete)
            return;
        if (w->dns_error && w->found[0] != LK_ONE) {
            /* (budget: only when max_author_domains outgrew the reserve
             * dmarc.c holds for discovery) */
            finish_temperror(c, as_pool_printf(pool, "%s at _dmarc.%s",
                                               w->budget ? "DNS budget exhausted" : "DNS error",
                                               w->names[w->n - 1]));
            return;
        }
        /* A walk that failed above the Author Domain's own record leaves
         * that record usable (RFC 9989 4.10.1, first location) and only
         * the Organizational Domain unknown (org NULL): strict and
         * identical identifiers still decide, relaxed ones cannot. */
        org = w->dns_error ? NULL : w->org;
        if (w->found[0] == LK_ONE) {
            rec = &w->rec[0];
            pdom = author;
        } else {
            /* Several records at the Author Domain are all discarded and
             * the walk goes on (RFC 9989 4.10 steps 2 and 6), unlike
             * RFC 7489 6.6.3, which ends discovery there (psl mode). */
            /* the Organizational Domain's record, else the PSD's */
            for (size_t i = 0; i < w->n && !rec; i++)
                if (w->found[i] == LK_ONE && strcmp(w->names[i], org) == 0) {
                    rec = &w->rec[i];
                    pdom = w->names[i];
                }
            for (size_t i = w->n; i-- > 0 && !rec;)
                if (w->found[i] == LK_ONE && w->rec[i].psd == 'y') {
                    rec = &w->rec[i];
                    pdom = w->names[i];
                }
        }
    } else {
        struct as_dmarc_record *r0 = as_pool_alloc(pool, sizeof *r0);
        int k = lookup_record(c, author, r0);
        if (k == LK_MISS)
            return;
        if (k == LK_ERROR || k == LK_BUDGET) {
            finish_temperror(c, as_pool_printf(pool, "DNS error at _dmarc.%s", author));
            return;
        }
        if (k == LK_MANY) {
            out->bad_policy = 1;
            res->reasons |= AS_DMARC_REASON_BAD_POLICY;
            finish_none(c, as_pool_printf(pool, "multiple DMARC records at _dmarc.%s", author));
            return;
        }
        org = dmarc_psl_org(pool, in->psl, author);
        if (k == LK_ONE) {
            rec = r0;
            pdom = author;
        } else if (strcmp(org, author) != 0) {
            struct as_dmarc_record *r1 = as_pool_alloc(pool, sizeof *r1);
            k = lookup_record(c, org, r1);
            if (k == LK_MISS)
                return;
            if (k == LK_ERROR || k == LK_BUDGET) {
                finish_temperror(c, as_pool_printf(pool, "DNS error at _dmarc.%s", org));
                return;
            }
            if (k == LK_MANY) {
                out->bad_policy = 1;
                res->reasons |= AS_DMARC_REASON_BAD_POLICY;
                finish_none(c, as_pool_printf(pool, "multiple DMARC records at _dmarc.%s", org));
                return;
            }
            if (k == LK_ONE) {
                rec = r1;
                pdom = org;
            }
        }
    }
    res->org_domain = org;
    if (!rec) {
        if (bis && dmarc_outcome_walk(out, author)->found[0] == LK_MANY) {
            /* nothing applies, but say why: a DMARC_NA would hide the
             * owner's mistake from the operator */
            out->bad_policy = 1;
            res->reasons |= AS_DMARC_REASON_BAD_POLICY;
            finish_none(c, as_pool_printf(pool, "multiple DMARC records at _dmarc.%s "
                                                "(discarded) and no other record", author));
            return;
        }
        finish_none(c, "no DMARC record");
        return;
    }
    res->record = rec;
    res->policy_domain = pdom;

    enum as_dmarc_policy p;
    if (!dmarc_record_usable(rec, bis, &p)) {
        out->bad_policy = 1;
        res->reasons |= AS_DMARC_REASON_BAD_POLICY;
        finish_none(c, as_pool_printf(pool, "unusable DMARC record at _dmarc.%s "
                                            "(no valid p= and no usable rua=)", pdom));
        return;
    }
    /* A record saved by its rua= counts as "p=none" and nothing more. */
    int degraded = rec->p == AS_DMARC_POLICY_UNSET || (rec->invalid & AS_DMARC_TAG_SP) ||
                   (bis && (rec->invalid & AS_DMARC_TAG_NP));
    res->aspf_strict = rec->aspf_strict;
    res->adkim_strict = rec->adkim_strict;

    /* 2. the policy for this message */
    int exist_unknown = 0;
    if (strcmp(pdom, author) == 0) {
        res->policy = p;
        res->policy_tag = "p";
    } else {
        enum as_dmarc_policy sp = !degraded && rec->sp ? rec->sp : p;
        const char *sptag = !degraded && rec->sp ? "sp" : "p";
        res->policy = sp;
        res->policy_tag = sptag;
        if (bis && !degraded && rec->np && rec->np != sp) {
            /* RFC 9989 A.4: the name exists if any RR exists; NXDOMAIN
             * (whatever the type) says it does not */
            const struct as_dns_answer *a = get(c, author, AS_DNS_A);
            if (a && a->status == AS_DNS_NXDOMAIN) {
                res->policy = rec->np;
                res->policy_tag = "np";
            } else if (a && a->status != AS_DNS_OK && a->status != AS_DNS_NODATA) {
                exist_unknown = 1;
            }
        }
    }

    /* 3. alignment of the passing identifiers */
    int pending = 0, dns_trouble = exist_unknown;
    if (res->spf_domain && in->spf_result == AS_SPF_PASS) {
        int a = aligned(c, res->spf_domain, author, org, rec->aspf_strict);
        if (a == AL_YES)
            res->spf_aligned = 1;
        else if (a == AL_MISS)
            pending = 1;
        else if (a == AL_ERROR)
            dns_trouble = 1;
    }
    for (size_t i = 0; i < in->ndkim; i++) {
        if (in->dkim[i].result != AS_DKIM_PASS)
            continue;
        int a = aligned(c, in->dkim[i].domain, author, org, rec->adkim_strict);
        if (a == AL_YES && !res->dkim_aligned) {
            res->dkim_aligned = 1;
            res->dkim_domain = dmarc_domain_clean(pool, in->dkim[i].domain);
        } else if (a == AL_MISS)
            pending = 1;
        else if (a == AL_ERROR)
            dns_trouble = 1;
    }
    if (res->spf_aligned || res->dkim_aligned) {
        /* a pass needs no other answer (an unfinished walk cannot undo it) */
        out->incomplete = 0;
        out->nmisses = 0;
        res->result = AS_DMARC_PASS;
        res->disposition = AS_DMARC_POLICY_NONE;
        return;
    }
    if (pending || out->incomplete)
        return;

    /* 4. failure: was a DNS error in the way of an aligned identifier?
     * (RFC 9989 5.3.6: then there is no pass/fail verdict) */
    if (in->spf_result == AS_SPF_TEMPERROR && res->spf_domain) {
        int a = aligned(c, res->spf_domain, author, org, rec->aspf_strict);
        if (a == AL_YES || a == AL_ERROR)
            dns_trouble = 1;
        else if (a == AL_MISS)
            pending = 1;
    }
    int list_sig = 0;
    for (size_t i = 0; i < in->ndkim; i++) {
        enum as_dkim_res r = in->dkim[i].result;
        int want_tmp = r == AS_DKIM_TEMPERROR;
        int want_list = r == AS_DKIM_FAIL && in->list_traffic;
        if (!want_tmp && !want_list)
            continue;
        int a = aligned(c, in->dkim[i].domain, author, org, rec->adkim_strict);
        if (a == AL_MISS)
            pending = 1;
        else if (want_tmp && (a == AL_YES || a == AL_ERROR))
            dns_trouble = 1;
        else if (want_list && a == AL_YES)
            list_sig = 1;
    }
    if (pending || out->incomplete)
        return;
    if (dns_trouble) {     /* (the existence test is only made when np= and sp= differ) */
        finish_temperror(c, exist_unknown ? "DNS error in the Author Domain existence test"
                                          : "DNS error for an aligned identifier");
        return;
    }
    res->result = AS_DMARC_FAIL;
    enum as_dmarc_policy d = res->policy;
    if (bis && rec->testing && !degraded && d > AS_DMARC_POLICY_NONE) {
        d = lower(d);                 /* RFC 9989 4.7 "t" */
        res->reasons |= AS_DMARC_REASON_TESTING;
    }
    if (!bis && rec->pct < 100 && in->sample >= rec->pct && d > AS_DMARC_POLICY_NONE) {
        d = lower(d);                 /* RFC 7489 6.6.4 */
        res->reasons |= AS_DMARC_REASON_SAMPLED_OUT;
    }
    if (list_sig && d == AS_DMARC_POLICY_REJECT) {
        d = AS_DMARC_POLICY_QUARANTINE;
        res->reasons |= AS_DMARC_REASON_MAILING_LIST;
    }
    res->disposition = d;
}
