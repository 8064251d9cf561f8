/*
 * test_dmarc_eval.c - the DMARC engine beyond the conformance data: rounds
 * with missing answers (the DNS sees the Tree Walk in RFC order), DNS
 * errors and temperror, t=y, pct in RFC 7489 mode, the mailing-list
 * safeguard, the np existence test, strict alignment, bounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "util/pool.h"
#include "dmarc_eval.h"

static struct as_pool *pool;

/* A small resolver: names with TXT data, names that exist without TXT,
 * names that fail.  With `hold`, an answer is only "in" once it was
 * reported as a miss and the round ended (as the plugin does). */
struct fake {
    const char *const *txt;    /* name, record, name, record, ..., NULL */
    const char *const *exist;  /* names with other data */
    const char *const *fail;   /* SERVFAIL/timeout names */
    int hold;
    const char *answered[128];
    size_t nanswered;
    const char *order[128];    /* names in the order they were asked for */
    size_t norder;
};

static int listed(const char *const *l, const char *name, size_t step)
{
    for (; l && *l; l += step)
        if (strcmp(*l, name) == 0)
            return 1;
    return 0;
}

static const struct as_dns_answer *fetch(void *arg, const char *name, uint16_t type)
{
    struct fake *f = arg;
    if (f->hold) {
        int have = 0;
        for (size_t i = 0; i < f->nanswered; i++)
            have |= strcmp(f->answered[i], name) == 0;
        if (!have)
            return NULL;
    }
    struct as_dns_answer *a = as_pool_alloc(pool, sizeof *a);
    a->name = name;
    a->type = type;
    if (listed(f->fail, name, 1)) {
        a->status = AS_DNS_TIMEOUT;
        return a;
    }
    size_t n = 0;
    for (const char *const *l = f->txt; l && *l; l += 2)
        if (strcmp(*l, name) == 0 && type == AS_DNS_TXT)
            n++;
    if (n) {
        struct as_dns_rr *rr = as_pool_alloc(pool, n * sizeof *rr);
        size_t k = 0;
        for (const char *const *l = f->txt; *l; l += 2)
            if (strcmp(*l, name) == 0) {
                rr[k].type = AS_DNS_TXT;
                rr[k].d.txt.joined.ptr = l[1];
                rr[k].d.txt.joined.len = strlen(l[1]);
                k++;
            }
        a->status = AS_DNS_OK;
        a->rr = rr;
        a->nrr = n;
        return a;
    }
    int exists = listed(f->exist, name, 1) || listed(f->txt, name, 2);
    size_t nl = strlen(name);
    for (const char *const *l = f->txt; l && *l && !exists; l += 2) {
        size_t kl = strlen(*l);
        exists = kl > nl && (*l)[kl - nl - 1] == '.' && strcmp(*l + kl - nl, name) == 0;
    }
    a->status = exists ? AS_DNS_NODATA : AS_DNS_NXDOMAIN;
    return a;
}

/* Evaluates like the plugin: rounds until complete, answering misses. */
static int eval_rounds(struct fake *f, struct dmarc_input *in, struct dmarc_outcome *out)
{
    int rounds = 0;
    do {
        dmarc_evaluate(pool, in, fetch, f, out);
        rounds++;
        for (size_t i = 0; i < out->nmisses && f->nanswered < 128; i++) {
            f->answered[f->nanswered++] = out->misses[i].name;
            if (f->norder < 128)
                f->order[f->norder++] = out->misses[i].name;
        }
    } while (out->incomplete && rounds < 40);
    return rounds;
}

static struct dmarc_input input(const char *author)
{
    struct dmarc_input in;
    memset(&in, 0, sizeof in);
    in.author = author;
    in.discovery = AS_DMARC_DISCOVERY_TREE;
    return in;
}

static void test_rounds_order(void)
{
    static const char *const txt[] = { "_dmarc.example.com", "v=DMARC1; p=reject", NULL };
    struct fake f = { .txt = txt, .hold = 1 };
    struct dmarc_input in = input("a.b.c.d.e.f.g.h.i.j.k.example.com");
    struct dmarc_outcome *o = calloc(1, sizeof *o);
    int rounds = eval_rounds(&f, &in, o);
    static const char *const want[] = {
        "_dmarc.a.b.c.d.e.f.g.h.i.j.k.example.com", "_dmarc.g.h.i.j.k.example.com",
        "_dmarc.h.i.j.k.example.com", "_dmarc.i.j.k.example.com", "_dmarc.j.k.example.com",
        "_dmarc.k.example.com", "_dmarc.example.com", "_dmarc.com",
    };
    CHECK_INT(f.norder, 8);
    for (size_t i = 0; i < 8 && i < f.norder; i++)
        CHECK_STR(f.order[i], want[i]);
    CHECK_INT(rounds, 9);                 /* one query per round, then the verdict */
    CHECK_INT(o->res.result, AS_DMARC_FAIL);
    CHECK_STR(o->res.policy_domain, "example.com");
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);   /* no np: sp -> p */

    /* identifier walks run after the author's, each in order, in parallel */
    struct fake g = { .txt = txt, .hold = 1 };
    struct dmarc_dkim_in dk[] = { { "x.example.com", AS_DKIM_PASS } };
    in = input("example.com");
    in.dkim = dk;
    in.ndkim = 1;
    eval_rounds(&g, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_PASS);
    CHECK_INT(g.norder, 3);   /* _dmarc.example.com, _dmarc.com, _dmarc.x.example.com */
    CHECK_STR(g.norder > 2 ? g.order[2] : NULL, "_dmarc.x.example.com");
    free(o);
}

static void test_errors(void)
{
    struct dmarc_outcome *o = calloc(1, sizeof *o);
    static const char *const txt[] = { "_dmarc.example.com", "v=DMARC1; p=reject",
                                       "_dmarc.multi.example", "v=DMARC1; p=reject",
                                       "_dmarc.multi.example", "v=DMARC1; p=none",
                                       "_dmarc.long.example", "v=DMARC1; p=none; rua=x", NULL };
    static const char *const fail[] = { "_dmarc.broken.example", "_dmarc.com", NULL };
    struct fake f = { .txt = txt, .fail = fail };

    struct dmarc_input in = input("broken.example");
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_TEMPERROR);
    CHECK(o->res.comment && strstr(o->res.comment, "_dmarc.broken.example"));

    /* An error further up the walk leaves the Author Domain's own record
     * usable (RFC 9989 4.10.1) and only its Organizational Domain unknown:
     * with no identifier, or an identical one, the verdict stands ... */
    in = input("example.com");
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_FAIL);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);
    CHECK_STR(o->res.policy_domain, "example.com");
    CHECK(o->res.org_domain == NULL);
    struct dmarc_dkim_in dk[] = { { "example.com", AS_DKIM_PASS } };
    in.dkim = dk;
    in.ndkim = 1;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_PASS);
    /* ... a relaxed one cannot be judged: temperror (RFC 9989 5.3.6) */
    dk[0].domain = "mail.example.com";
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_TEMPERROR);
    /* ... and one under another TLD never aligns */
    dk[0].domain = "example.net";
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_FAIL);
    /* ... in PSL mode there is no walk, so no error */
    in.discovery = AS_DMARC_DISCOVERY_PSL;   /* (no PSL loaded: org = the name) */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_FAIL);
    CHECK_STR(o->res.org_domain, "example.com");

    /* several records at the Author Domain and nothing above: none, and
     * DMARC_BAD_POLICY says why (both modes) */
    in = input("multi.example");
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_NONE);
    CHECK_INT(o->bad_policy, 1);
    CHECK(o->res.reasons & AS_DMARC_REASON_BAD_POLICY);
    in.discovery = AS_DMARC_DISCOVERY_PSL;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_NONE);
    CHECK_INT(o->bad_policy, 1);

    /* an Author Domain whose _dmarc name would be too long is never queried */
    char longd[260];
    memset(longd, 'a', sizeof longd);
    for (int i = 63; i < 250; i += 64)
        longd[i] = '.';
    strcpy(longd + 250, ".example");
    in = input(longd);
    struct fake e = { 0 };
    eval_rounds(&e, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_NONE);
    CHECK(!o->incomplete);

    in = input(NULL);
    eval_rounds(&e, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_NONE);
    CHECK(o->res.reasons & AS_DMARC_REASON_NO_AUTHOR);
    free(o);
}

static void test_policy_options(void)
{
    struct dmarc_outcome *o = calloc(1, sizeof *o);
    static const char *const txt[] = {
        "_dmarc.tq.example", "v=DMARC1; p=quarantine; t=y",
        "_dmarc.tn.example", "v=DMARC1; p=none; t=y",
        "_dmarc.pct.example", "v=DMARC1; p=reject; pct=50",
        "_dmarc.np.example", "v=DMARC1; p=reject; sp=quarantine; np=none",
        "_dmarc.strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s",
        NULL };
    static const char *const exist[] = { "live.np.example", NULL };
    static const char *const fail[] = { "down.np.example", NULL };
    struct fake f = { .txt = txt, .exist = exist, .fail = fail };

    struct dmarc_input in = input("tq.example");
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_NONE);
    CHECK_INT(o->res.policy, AS_DMARC_POLICY_QUARANTINE);
    CHECK(o->res.reasons & AS_DMARC_REASON_TESTING);
    in = input("tn.example");
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.reasons, 0);           /* t=y does nothing to p=none */

    in = input("pct.example");
    in.discovery = AS_DMARC_DISCOVERY_PSL;
    in.sample = 49;                          /* in the sample: applied */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);
    in.sample = 50;                          /* out of it: the next lower policy */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_QUARANTINE);
    CHECK(o->res.reasons & AS_DMARC_REASON_SAMPLED_OUT);
    in.discovery = AS_DMARC_DISCOVERY_TREE;  /* RFC 9989: pct is historic */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);

    in = input("ghost.np.example");          /* NXDOMAIN: np */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_NONE);
    CHECK_STR(o->res.policy_tag, "np");
    in = input("live.np.example");           /* exists: sp */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_QUARANTINE);
    CHECK_STR(o->res.policy_tag, "sp");
    in = input("down.np.example");           /* unknown, and np != sp: temperror */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_TEMPERROR);
    in = input("np.example");                /* the domain itself: p */
    eval_rounds(&f, &in, o);
    CHECK_STR(o->res.policy_tag, "p");
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);

    struct dmarc_dkim_in dk[] = { { "Sub.Strict.Example", AS_DKIM_PASS } };
    in = input("strict.example");
    in.dkim = dk;
    in.ndkim = 1;
    in.spf_domain = "mail.strict.example";
    in.spf_result = AS_SPF_PASS;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_FAIL);
    dk[0].domain = "STRICT.example";         /* strict is case-insensitive equality */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_PASS);
    CHECK_STR(o->res.dkim_domain, "strict.example");
    free(o);
}

static void test_temperror_and_lists(void)
{
    struct dmarc_outcome *o = calloc(1, sizeof *o);
    static const char *const txt[] = { "_dmarc.example.com", "v=DMARC1; p=reject", NULL };
    struct fake f = { .txt = txt };
    struct dmarc_dkim_in dk[2] = { { "example.com", AS_DKIM_TEMPERROR } };
    struct dmarc_input in = input("example.com");
    in.dkim = dk;
    in.ndkim = 1;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_TEMPERROR);     /* an aligned key lookup failed */
    dk[0].domain = "other.example";
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_FAIL);          /* unaligned: no excuse */
    in.ndkim = 0;
    in.spf_domain = "bounce.example.com";
    in.spf_result = AS_SPF_TEMPERROR;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_TEMPERROR);
    in.spf_result = AS_SPF_FAIL;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_FAIL);

    /* the mailing-list safeguard */
    dk[0] = (struct dmarc_dkim_in){ "example.com", AS_DKIM_FAIL };
    dk[1] = (struct dmarc_dkim_in){ "lists.example", AS_DKIM_PASS };
    in = input("example.com");
    in.dkim = dk;
    in.ndkim = 2;
    in.list_traffic = 1;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_QUARANTINE);
    CHECK(o->res.reasons & AS_DMARC_REASON_MAILING_LIST);
    in.list_traffic = 0;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);
    in.list_traffic = 1;
    dk[0].result = AS_DKIM_PERMERROR;        /* not a broken signature: no excuse */
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);
    free(o);
}

static void test_psd(void)
{
    struct dmarc_outcome *o = calloc(1, sizeof *o);
    static const char *const txt[] = { "_dmarc.bank.example", "v=DMARC1; p=reject; psd=y",
                                       "_dmarc.example", "v=DMARC1; p=none", NULL };
    struct fake f = { .txt = txt };
    /* the PSD itself as author: its own record, its own org domain */
    struct dmarc_input in = input("bank.example");
    eval_rounds(&f, &in, o);
    CHECK_STR(o->res.org_domain, "bank.example");
    CHECK_STR(o->res.policy_domain, "bank.example");
    const struct dmarc_walk *w = dmarc_outcome_walk(o, "bank.example");
    CHECK(w && w->n == 1);                   /* psd=y at the start stops the walk */
    /* a registrant with no record: the PSD policy, sp/p for subdomains */
    in = input("shop.bank.example");
    eval_rounds(&f, &in, o);
    CHECK_STR(o->res.org_domain, "shop.bank.example");
    CHECK_STR(o->res.policy_domain, "bank.example");
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);
    CHECK_STR(dmarc_domain_clean(pool, "..A..b.C.."), "a.b.c");
    CHECK(dmarc_domain_clean(pool, "...") == NULL);
    CHECK_INT(dmarc_count_labels("a.b.c"), 3);
    free(o);
}

/* issue 11: two records at a subdomain under an Organizational Domain with
 * p=reject.  RFC 9989 4.10 steps 2 and 6 discard both and the walk goes on,
 * so the Organizational Domain's policy applies; RFC 7489 6.6.3 ends policy
 * discovery at the Author Domain (psl mode). */
static void test_multiple_records(void)
{
    struct dmarc_outcome *o = calloc(1, sizeof *o);
    static const char *const txt[] = {
        "_dmarc.mail.example.com", "v=DMARC1; p=none",
        "_dmarc.mail.example.com", "v=DMARC1; p=quarantine",
        "_dmarc.example.com", "v=DMARC1; p=reject",
        "_dmarc.b.other.example", "v=DMARC1; p=reject",
        "_dmarc.b.other.example", "v=DMARC1; p=reject",
        "_dmarc.other.example", "v=DMARC1; p=quarantine; psd=n",
        NULL };
    struct fake f = { .txt = txt, .hold = 1 };
    struct dmarc_input in = input("mail.example.com");
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_FAIL);
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_REJECT);
    CHECK_STR(o->res.policy_domain, "example.com");
    CHECK_STR(o->res.policy_tag, "p");            /* no sp: p applies to subdomains */
    CHECK_STR(o->res.org_domain, "example.com");
    CHECK_INT(o->bad_policy, 0);
    CHECK_INT(f.norder, 3);                        /* the whole walk, in order */
    CHECK_STR(f.norder > 1 ? f.order[1] : NULL, "_dmarc.example.com");

    /* the discarded set does not count for the Organizational Domain either:
     * an identifier at mail.example.com aligns through example.com */
    struct dmarc_dkim_in dk[] = { { "x.example.com", AS_DKIM_PASS } };
    in.dkim = dk;
    in.ndkim = 1;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_PASS);

    /* the same set in the middle of a walk: skipped, psd=n above decides */
    in = input("a.b.other.example");
    eval_rounds(&f, &in, o);
    CHECK_STR(o->res.policy_domain, "other.example");
    CHECK_STR(o->res.org_domain, "other.example");
    CHECK_INT(o->res.disposition, AS_DMARC_POLICY_QUARANTINE);

    /* psl mode: RFC 7489 6.6.3 stands, discovery ends, nothing applies */
    in = input("mail.example.com");
    in.discovery = AS_DMARC_DISCOVERY_PSL;
    eval_rounds(&f, &in, o);
    CHECK_INT(o->res.result, AS_DMARC_NONE);
    CHECK_INT(o->bad_policy, 1);
    CHECK(o->res.comment && strstr(o->res.comment, "_dmarc.mail.example.com"));
    free(o);
}

int main(void)
{
    pool = as_pool_new(0);
    test_rounds_order();
    test_errors();
    test_policy_options();
    test_temperror_and_lists();
    test_psd();
    test_multiple_records();
    as_pool_destroy(pool);
    return check_done();
}
