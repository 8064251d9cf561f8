/*
 * dmarc.c - the "dmarc" plugin: DMARC (RFC 9989, with an RFC 7489 mode)
 * on top of the typed results of the spf and dkim plugins, with rspamd's
 * symbols, enforcement by forced action, the dmarc= entry of the
 * Authentication-Results field the core writes, and From rewriting for
 * mailing lists.  Decisions: docs/dmarc.md.
 *
 * Asynchrony: dmarc_evaluate() only reads answers the scan already has
 * (as_dns_pinned).  Each round queries what the last evaluation missed and
 * evaluates again once every answer is in; rounds are bounded by
 * max_rounds.  The plugin is finished when no query is outstanding.
 *
 * Trust: SPF and DKIM come only from the typed results of our own
 * plugins; Authentication-Results fields already in the message are never
 * read (OpenDMARC's CVE-2019-20790 / CVE-2020-12272 came from that
 * seam); the core removes the ones that forge our authserv-id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <libpsl.h>

#include "authscan/arc.h"
#include "authscan/dkim.h"
#include "authscan/dmarc.h"
#include "authscan/plugin.h"
#include "authscan/spf.h"
#include "dmarc_eval.h"
#include "dmarc_headers.h"
#include "dmarc_record.h"

#define DMARC_MAX_AUTHORS_LIMIT 16

static const struct as_symbol_def dmarc_symbols[] = {
    { "DMARC_POLICY_ALLOW", -0.5, "dmarc", "DMARC permit policy", 0 },
    { "DMARC_POLICY_REJECT", 2.0, "dmarc", "DMARC reject policy", 0 },
    { "DMARC_POLICY_QUARANTINE", 1.5, "dmarc", "DMARC quarantine policy", 0 },
    { "DMARC_POLICY_SOFTFAIL", 0.1, "dmarc", "DMARC failed, policy none (monitoring)", 0 },
    { "DMARC_NA", 0.0, "dmarc", "No DMARC record, or no usable From domain", 0 },
    { "DMARC_BAD_POLICY", 0.0, "dmarc", "DMARC record found but unusable", 0 },
    { "DMARC_DNSFAIL", 0.0, "dmarc", "DNS error during DMARC evaluation", 0 },
    { "DMARC_TOO_MANY_AUTHORS", 2.0, "dmarc",
      "From names more domains than DMARC evaluates (max_author_domains)", 0 },
    { "DMARC_MUNGED", 0.0, "dmarc", "From rewritten for a mailing list", 0 },
};

static const struct as_option_def dmarc_options[] = {
    { "discovery", AS_OPT_STRING, "tree",
      "tree: RFC 9989 DNS Tree Walk; psl: RFC 7489 Public Suffix List (pct= honoured)" },
    { "public_suffix_list", AS_OPT_STRING, NULL,
      "PSL file for discovery = psl (default: libpsl's newest, the Debian publicsuffix list); "
      "an error with discovery = tree, which uses no PSL" },
    { "reject_action", AS_OPT_STRING, "reject",
      "action forced (at least) for disposition reject; \"none\" disables" },
    { "quarantine_action", AS_OPT_STRING, "quarantine",
      "action forced (at least) for disposition quarantine; \"none\" disables" },
    { "mailing_list_downgrade", AS_OPT_BOOL, "yes",
      "List-Id mail whose aligned DKIM signature broke: reject -> quarantine" },
    { "skip_authenticated", AS_OPT_BOOL, "yes", "no DMARC for SASL-authenticated senders" },
    { "max_author_domains", AS_OPT_INT, "4",
      "distinct From domains evaluated (the strictest failing policy applies)" },
    { "too_many_authors_action", AS_OPT_STRING, "reject",
      "action forced (at least) when From names more domains than max_author_domains; "
      "\"none\" disables" },
    { "munge_lists", AS_OPT_LIST, "",
      "list addresses (envelope recipients) whose mail gets its From rewritten" },
    { "munge_style", AS_OPT_STRING, "via",
      "via: \"Author via List\" <list>; invalid: author@domain.INVALID (needs munge_lists)" },
    { "munge_pass_only", AS_OPT_BOOL, "yes",
      "rewrite only mail that passed DMARC (never launder a spoof through the list; needs "
      "munge_lists)" },
    { "max_rounds", AS_OPT_INT, "20", "DNS round trips before temperror" },
};

struct dmarc_state {
    enum as_dmarc_discovery discovery;
    psl_ctx_t *psl;
    int psl_owned;
    int list_downgrade, skip_auth, munge_pass_only;
    enum as_action reject_action, quarantine_action, too_many_action;
    int reject_on, quarantine_on, too_many_on;
    int max_authors, max_rounds;
    uint64_t pct_rng;          /* pct sampling: this plugin's own generator */
    const char *const *lists;
    size_t nlists;
    enum dmarc_munge_style munge_style;
};

/* An action option: a name as_action_parse() knows, or none/off/empty
 * for "force nothing". */
static int parse_action(const char *s, enum as_action *a, int *on)
{
    *on = 0;
    if (!s || !*s || strcasecmp(s, "none") == 0 || strcasecmp(s, "off") == 0)
        return 0;
    int v = as_action_parse(s);
    if (v < 0)
        return -1;
    *a = (enum as_action)v;
    *on = v != AS_ACTION_NO_ACTION;
    return 0;
}

/* xorshift64* (Vigna 2016): good enough to sample pct, and private state,
 * so the plugin never reseeds or advances libc's process-wide random(). */
static unsigned pct_draw(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return (unsigned)((*x * 2685821657736338717ULL) >> 33);
}

static uint64_t pct_seed(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
        v = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    return v ? v : 0x9e3779b97f4a7c15ULL;   /* xorshift must not start at 0 */
}

static void dmarc_fini(void *state)
{
    struct dmarc_state *st = state;
    if (!st)
        return;
    if (st->psl_owned)
        psl_free(st->psl);
    free(st);
}

/* local@domain, one '@', both parts non-empty, no blanks or controls. */
static int list_address_valid(const char *s)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || !at[1] || strchr(at + 1, '@'))
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

static int dmarc_init(struct as_plugin_ctx *ctx, void **state)
{
    struct dmarc_state *st = calloc(1, sizeof *st);
    if (!st) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    const char *disc = as_plugin_opt_string(ctx, "discovery");
    if (!disc || strcasecmp(disc, "tree") == 0)
        st->discovery = AS_DMARC_DISCOVERY_TREE;
    else if (strcasecmp(disc, "psl") == 0)
        st->discovery = AS_DMARC_DISCOVERY_PSL;
    else {
        as_plugin_opt_error(ctx, "discovery", "expected tree or psl");
        free(st);
        return -1;
    }
    const char *f = as_plugin_opt_string(ctx, "public_suffix_list");
    if (st->discovery == AS_DMARC_DISCOVERY_TREE && f) {
        /* The Tree Walk (RFC 9989) finds the Organizational Domain in DNS
         * and never reads a PSL: a site that names one expects it used,
         * so the combination is refused rather than ignored. */
        as_plugin_opt_error(ctx, "public_suffix_list", "has no effect with dmarc.discovery = "
                            "tree (the RFC 9989 DNS Tree Walk uses no Public Suffix List): "
                            "remove it, or set dmarc.discovery = psl to use it");
        free(st);
        return -1;
    }
    if (st->discovery == AS_DMARC_DISCOVERY_PSL) {
        if (f && *f) {
            st->psl = psl_load_file(f);
            st->psl_owned = st->psl != NULL;
        } else {
            st->psl = psl_latest(NULL);
            st->psl_owned = st->psl != NULL && st->psl != psl_builtin();
            if (!st->psl)
                st->psl = (psl_ctx_t *)psl_builtin();
        }
        if (!st->psl) {
            if (f && *f)
                as_plugin_opt_error(ctx, "public_suffix_list", "cannot load it as a Public "
                                    "Suffix List (missing, unreadable or not in PSL format)");
            else
                as_plugin_set_error(ctx, "dmarc: no Public Suffix List available (libpsl has "
                                    "none built in): set dmarc.public_suffix_list");
            free(st);
            return -1;
        }
    }
    st->list_downgrade = as_plugin_opt_bool(ctx, "mailing_list_downgrade");
    st->skip_auth = as_plugin_opt_bool(ctx, "skip_authenticated");
    st->munge_pass_only = as_plugin_opt_bool(ctx, "munge_pass_only");
    long long authors, rounds;
    if (as_plugin_opt_int_range(ctx, "max_author_domains", 1, DMARC_MAX_AUTHORS_LIMIT,
                                &authors) < 0 ||
        as_plugin_opt_int_range(ctx, "max_rounds", 1, 100, &rounds) < 0) {
        dmarc_fini(st);
        return -1;
    }
    st->max_authors = (int)authors;
    st->max_rounds = (int)rounds;
    st->nlists = as_plugin_opt_list(ctx, "munge_lists", &st->lists);
    const char *style = as_plugin_opt_string(ctx, "munge_style");
    if (!style || strcasecmp(style, "via") == 0)
        st->munge_style = DMARC_MUNGE_VIA;
    else if (strcasecmp(style, "invalid") == 0)
        st->munge_style = DMARC_MUNGE_INVALID;
    else {
        as_plugin_opt_error(ctx, "munge_style", "expected via or invalid");
        dmarc_fini(st);
        return -1;
    }
    for (size_t i = 0; i < st->nlists; i++) {
        if (!list_address_valid(st->lists[i])) {
            as_plugin_opt_item_error(ctx, "munge_lists", st->lists[i], "expected a list "
                                     "address like list@example.org (it is compared with "
                                     "the envelope recipients)");
            dmarc_fini(st);
            return -1;
        }
    }
    /* The munging options shape a rewrite that only munge_lists turns on. */
    static const char *const munge_opts[] = { "munge_style", "munge_pass_only" };
    for (size_t i = 0; !st->nlists && i < sizeof munge_opts / sizeof munge_opts[0]; i++) {
        if (as_plugin_opt_is_set(ctx, munge_opts[i])) {
            as_plugin_opt_error(ctx, munge_opts[i], "has no effect without dmarc.munge_lists "
                                "(no From is rewritten): remove it, or name the lists");
            dmarc_fini(st);
            return -1;
        }
    }
    static const char *const action_opts[] = { "reject_action", "quarantine_action",
                                               "too_many_authors_action" };
    enum as_action *acts[] = { &st->reject_action, &st->quarantine_action, &st->too_many_action };
    int *ons[] = { &st->reject_on, &st->quarantine_on, &st->too_many_on };
    for (int i = 0; i < 3; i++) {
        const char *v = as_plugin_opt_string(ctx, action_opts[i]);
        if (parse_action(v, acts[i], ons[i]) < 0) {
            as_plugin_opt_error(ctx, action_opts[i], "unknown action (want none, no action, "
                                "greylist, add header, rewrite subject, quarantine, "
                                "soft reject or reject)");
            dmarc_fini(st);
            return -1;
        }
    }
    /* Policy discovery of every Author Domain always gets its queries: at
     * most DMARC_WALK_MAX for the Tree Walk (RFC 9989 4.10) and one for the
     * existence test, whatever SPF and DKIM spent on this message. */
    if (as_plugin_dns_reserve(ctx, (unsigned)st->max_authors * (DMARC_WALK_MAX + 1)) < 0) {
        as_plugin_set_error(ctx, "dmarc: cannot reserve DNS queries");
        dmarc_fini(st);
        return -1;
    }
    st->pct_rng = pct_seed();
    *state = st;
    return 0;
}

/* ---- per-scan state ---------------------------------------------------- */

struct req_key {
    struct req_key *next;
    uint16_t type;
    char name[];
};

struct dmarc_scan {
    struct as_task *t;
    struct dmarc_state *st;
    struct dmarc_input in[DMARC_MAX_AUTHORS_LIMIT];
    struct dmarc_outcome *out;       /* one per author domain */
    size_t nauthors;
    int incomplete_authors;          /* From had more domains than we evaluate */
    int rounds, outstanding, start_failed;
    struct req_key *requested;
};

static const struct as_dns_answer *scan_fetch(void *arg, const char *name, uint16_t type)
{
    struct dmarc_scan *s = arg;
    return as_dns_pinned(s->t, name, type);
}

static void scan_round(struct dmarc_scan *s);

static void dns_done(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    (void)t;
    (void)ans;
    struct dmarc_scan *s = arg;
    if (--s->outstanding == 0)
        scan_round(s);
}

static void want(struct dmarc_scan *s, const char *name, uint16_t type)
{
    if (as_dns_pinned(s->t, name, type))
        return;
    for (struct req_key *k = s->requested; k; k = k->next)
        if (k->type == type && strcmp(k->name, name) == 0)
            return;
    size_t len = strlen(name);
    struct req_key *k = as_pool_alloc(as_task_pool(s->t), sizeof *k + len + 1);
    if (!k)
        return;
    k->type = type;
    memcpy(k->name, name, len + 1);
    k->next = s->requested;
    s->requested = k;
    if (as_dns_query(s->t, name, type, dns_done, s) == 0)
        s->outstanding++;
    else
        s->start_failed = 1;
}

/* ---- verdict ----------------------------------------------------------- */

static int severity(const struct dmarc_outcome *o)
{
    switch (o->res.result) {
    case AS_DMARC_FAIL: return 3 + (int)o->res.disposition;   /* 4..6 */
    case AS_DMARC_TEMPERROR: return 3;
    case AS_DMARC_PASS: return 2;
    default: return o->bad_policy ? 1 : 0;
    }
}

static const char *list_name_of(struct as_task *t, const char *list_addr)
{
    const struct as_message *m = as_task_message(t);
    const struct as_header *h = m ? as_msg_header_get(m, "List-Id", 0) : NULL;
    const char *v = h ? as_header_unfold(t, h, NULL) : NULL;
    if (v) {
        /* List-Id: phrase <id> (RFC 2919): the phrase, unquoted */
        const char *lt = strchr(v, '<');
        size_t n = lt ? (size_t)(lt - v) : 0;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        const char *p = v;
        while (n && (*p == ' ' || *p == '"')) p++, n--;
        while (n && p[n - 1] == '"') n--;
        if (n && n < 128)
            return as_pool_strndup(as_task_pool(t), p, n);
    }
    const char *at = strchr(list_addr, '@');
    return as_pool_strndup(as_task_pool(t), list_addr, at ? (size_t)(at - list_addr) : strlen(list_addr));
}

static void munge(struct dmarc_scan *s, const struct as_dmarc_result *r)
{
    struct as_task *t = s->t;
    struct dmarc_state *st = s->st;
    const struct as_envelope *env = as_task_envelope(t);
    const char *list = NULL;
    for (size_t i = 0; env && i < env->nrcpts && !list; i++)
        for (size_t j = 0; j < st->nlists && !list; j++)
            if (env->rcpts[i] && strcasecmp(env->rcpts[i], st->lists[j]) == 0)
                list = st->lists[j];
    if (!list)
        return;
    if (r->policy != AS_DMARC_POLICY_QUARANTINE && r->policy != AS_DMARC_POLICY_REJECT)
        return;
    if (st->munge_pass_only && r->result != AS_DMARC_PASS)
        return;
    const struct as_from *from = as_task_from(t);
    if (!from || from->status != AS_FROM_OK || from->list.nboxes != 1)
        return;
    const struct as_mailbox *mb = &from->list.boxes[0];
    const struct as_message *m = as_task_message(t);
    const struct as_header *h = as_msg_header_get(m, "From", 0);
    const char *orig = h ? as_header_unfold(t, h, NULL) : NULL;
    struct dmarc_munged mu;
    if (dmarc_munge(as_task_pool(t), st->munge_style, mb->display_name, mb->addr, orig, list,
                    list_name_of(t, list), &mu) < 0)
        return;
    as_task_remove_header(t, "From", 0);
    as_task_add_header(t, "From", mu.from, 0);
    if (as_msg_header_count(m, "Reply-To") == 0)
        as_task_add_header(t, "Reply-To", mu.reply_to, 0);
    as_task_add_header(t, "X-Original-From", mu.original, 0);
    as_task_add_symbol(t, "DMARC_MUNGED", 1.0, list, NULL);
}

/* The dmarc= entry of the core's Authentication-Results field: the same
 * text as r->auth_results (dmarc_ar_resinfo). */
static void auth_result(struct dmarc_scan *s, const struct as_dmarc_result *r)
{
    struct as_pool *p = as_task_pool(s->t);
    struct as_auth_prop props[2];
    size_t n = 0;
    if (r->author_domain)
        props[n++] = (struct as_auth_prop){ "header.from", r->author_domain };
    const char *pol = dmarc_ar_policy(r);
    if (pol)
        props[n++] = (struct as_auth_prop){ "policy.dmarc", pol };
    struct as_auth_result ar = { "dmarc", as_dmarc_res_name(r->result), dmarc_ar_comment(p, r),
                                 NULL, props, n };
    as_task_add_auth_resultv(s->t, &ar);
}

/* ---- trusted ARC sealers ---------------------------------------------- */

/* The domain of an identifier a sealer recorded: "user@d", "@d" or "d". */
static const char *id_domain(struct as_pool *p, const char *v)
{
    const char *at = v ? strrchr(v, '@') : NULL;
    const char *d = at ? at + 1 : v;
    return d && *d ? as_domain_normalize(p, d, strlen(d)) : NULL;
}

/* Identifier Alignment of a domain the sealer recorded, judged with what
 * this evaluation found: strict is equality with the Author Domain,
 * relaxed is being the Organizational Domain or below it (that domain's
 * own Tree Walk is not run: a sealer's record never costs a query). */
static int id_aligned(const char *id, const struct as_dmarc_result *r, int strict)
{
    if (!id || !r->author_domain)
        return 0;
    if (strcmp(id, r->author_domain) == 0)
        return 1;
    const char *org = r->org_domain;
    if (strict || !org)
        return 0;
    size_t li = strlen(id), lo = strlen(org);
    return strcmp(id, org) == 0 || (li > lo && id[li - lo - 1] == '.' && strcmp(id + li - lo, org) == 0);
}

static const char *prop(const struct as_arc_resinfo *ri, const char *a, const char *b)
{
    for (size_t i = 0; i < ri->nprops; i++)
        if (strcmp(ri->props[i].name, a) == 0 || (b && strcmp(ri->props[i].name, b) == 0))
            return ri->props[i].value;
    return NULL;
}

/* The first resinfo of the set's ARC-Authentication-Results that records
 * an aligned pass: spf=pass for smtp.mailfrom, dkim=pass for header.d (or
 * header.i), or dmarc=pass for header.from = the Author Domain.  Its
 * description, or NULL. */
static const char *aligned_pass(struct as_pool *p, const struct as_arc_set *set,
                                const struct as_dmarc_result *r)
{
    for (size_t i = 0; i < set->nresults; i++) {
        const struct as_arc_resinfo *ri = &set->results[i];
        if (strcmp(ri->result, "pass") != 0)
            continue;
        const char *v = NULL, *d = NULL;
        int ok = 0;
        if (strcmp(ri->method, "spf") == 0) {
            v = prop(ri, "smtp.mailfrom", "smtp.mfrom");
            ok = id_aligned(d = id_domain(p, v), r, r->aspf_strict);
        } else if (strcmp(ri->method, "dkim") == 0) {
            v = prop(ri, "header.d", "header.i");
            ok = id_aligned(d = id_domain(p, v), r, r->adkim_strict);
        } else if (strcmp(ri->method, "dmarc") == 0) {
            v = prop(ri, "header.from", NULL);
            d = id_domain(p, v);
            ok = d && r->author_domain && strcmp(d, r->author_domain) == 0;
        }
        if (ok)
            return as_pool_printf(p, "%s=pass %s", ri->method, d);
    }
    return NULL;
}

/* Local policy (RFC 8617 leaves the use of a chain to the receiver): a
 * failing message whose chain validates and whose trusted sealer recorded
 * an aligned pass gets the site's disposition (arc.trusted_action)
 * instead of the policy's.  The newest such set counts. */
static void arc_override(struct dmarc_scan *s, struct as_dmarc_result *r)
{
    if (r->result != AS_DMARC_FAIL || r->disposition == AS_DMARC_POLICY_NONE)
        return;
    const struct as_arc_result *arc = as_task_get_result(s->t, AS_ARC_RESULT_KEY);
    if (!arc || arc->version < 1 || arc->cv != AS_ARC_PASS || !arc->trust_configured)
        return;
    struct as_pool *p = as_task_pool(s->t);
    for (size_t i = arc->nsets; i-- > 0;) {
        const struct as_arc_set *set = &arc->sets[i];
        if (!set->trusted)
            continue;
        const char *why = aligned_pass(p, set, r);
        if (!why)
            continue;
        enum as_dmarc_policy to = arc->trust_action == AS_ARC_TRUST_QUARANTINE
                                      ? AS_DMARC_POLICY_QUARANTINE : AS_DMARC_POLICY_NONE;
        if (to >= r->disposition)
            return;       /* nothing to lower */
        r->override_from = r->disposition;
        r->disposition = to;
        r->reasons |= AS_DMARC_REASON_ARC_TRUSTED;
        r->override_type = "trusted_forwarder";
        r->override_comment = as_pool_printf(p, "arc=pass sealer=%s i=%u recorded %s",
                                             set->seal_domain, set->instance, why);
        return;
    }
}

/* The task's record of what lowered the policy (plugin.h, ABI 1.4): the
 * aggregate report, the reply, the log line and our Authentication-Results
 * entry all read it from there.  A local override of the action itself (a
 * Lua rule, a site force) is found by the core when the verdict is final. */
static void record_overrides(struct as_task *t, const struct as_dmarc_result *r)
{
    if (r->result != AS_DMARC_FAIL)
        return;
    struct as_pool *p = as_task_pool(t);
    if (r->reasons & AS_DMARC_REASON_TESTING)
        as_task_add_override(t, "dmarc", AS_OVERRIDE_POLICY_TEST_MODE, "t=y");
    if (r->reasons & AS_DMARC_REASON_SAMPLED_OUT)
        as_task_add_override(t, "dmarc", AS_OVERRIDE_SAMPLED_OUT,
                             as_pool_printf(p, "pct=%d", r->record ? r->record->pct : 100));
    if (r->reasons & AS_DMARC_REASON_MAILING_LIST)
        as_task_add_override(t, "dmarc", AS_OVERRIDE_MAILING_LIST,
                             "List-Id mail, DKIM broken by the list");
    if ((r->reasons & AS_DMARC_REASON_ARC_TRUSTED) && r->override_comment)
        as_task_add_override(t, "dmarc", AS_OVERRIDE_TRUSTED_FORWARDER, r->override_comment);
}

static void publish(struct dmarc_scan *s)
{
    struct as_task *t = s->t;
    struct as_pool *p = as_task_pool(t);
    struct dmarc_state *st = s->st;
    struct as_dmarc_result *r = as_pool_alloc(p, sizeof *r);
    if (!r)
        return;
    const struct dmarc_outcome *worst = NULL;
    for (size_t i = 0; i < s->nauthors; i++)
        if (!worst || severity(&s->out[i]) > severity(worst))
            worst = &s->out[i];
    int bad_policy = 0;
    if (worst) {
        *r = worst->res;
        bad_policy = worst->bad_policy;
        if (worst->incomplete) {
            /* out of rounds, or a query could not be started */
            r->result = AS_DMARC_TEMPERROR;
            r->disposition = AS_DMARC_POLICY_NONE;
            r->comment = s->start_failed ? "DNS query could not be started"
                                         : "too many DNS round trips";
        }
    } else {
        r->version = AS_DMARC_RESULT_VERSION;
        r->discovery = st->discovery;
        r->result = AS_DMARC_NONE;
        r->reasons = AS_DMARC_REASON_NO_AUTHOR;
        const struct as_from *from = as_task_from(t);
        r->comment = as_pool_printf(p, "no usable From domain (%s)",
                                    from ? as_from_status_name(from->status) : "no message");
    }
    r->nauthors = s->nauthors;
    if (s->nauthors > 1)
        r->reasons |= AS_DMARC_REASON_MULTI_FROM;
    if (s->incomplete_authors) {
        r->reasons |= AS_DMARC_REASON_INCOMPLETE;
        /* A From naming more domains than we evaluate hides the ones past
         * the limit, and the sender picks the order: a spoof of a p=reject
         * domain listed fifth behind four domains without a record would
         * get "none".  Unless what we did evaluate already rejects, the
         * verdict is a permanent error with its own enforcement. */
        if (!(r->result == AS_DMARC_FAIL && r->disposition == AS_DMARC_POLICY_REJECT)) {
            r->result = AS_DMARC_PERMERROR;
            r->disposition = AS_DMARC_POLICY_NONE;
            r->comment = as_pool_printf(p, "From names more than %d domains", st->max_authors);
        }
    }
    r->version = AS_DMARC_RESULT_VERSION;
    arc_override(s, r);
    r->auth_results = dmarc_ar_resinfo(p, r);
    as_task_set_result(t, AS_DMARC_RESULT_KEY, r);
    record_overrides(t, r);

    /* symbols: options [domain, policy, reasons...] */
    const char *dom = r->policy_domain ? r->policy_domain : r->author_domain;
    const char *opts[5];
    size_t no = 0;
    if (dom)
        opts[no++] = dom;
    const char *sym;
    switch (r->result) {
    case AS_DMARC_PASS:
        sym = "DMARC_POLICY_ALLOW";
        opts[no++] = as_dmarc_policy_name(r->policy);
        break;
    case AS_DMARC_FAIL:
        sym = r->disposition == AS_DMARC_POLICY_REJECT ? "DMARC_POLICY_REJECT"
            : r->disposition == AS_DMARC_POLICY_QUARANTINE ? "DMARC_POLICY_QUARANTINE"
            : "DMARC_POLICY_SOFTFAIL";
        opts[no++] = as_dmarc_policy_name(r->policy);
        {
            const char *why = dmarc_reason_names(p, r->reasons & (AS_DMARC_REASON_TESTING |
                                                                  AS_DMARC_REASON_SAMPLED_OUT |
                                                                  AS_DMARC_REASON_MAILING_LIST |
                                                                  AS_DMARC_REASON_ARC_TRUSTED));
            if (*why)
                opts[no++] = why;
            if (r->override_comment)
                opts[no++] = r->override_comment;
        }
        break;
    case AS_DMARC_TEMPERROR:
        sym = "DMARC_DNSFAIL";
        if (r->comment)
            opts[no++] = r->comment;
        break;
    case AS_DMARC_PERMERROR:
        sym = "DMARC_TOO_MANY_AUTHORS";
        if (r->comment)
            opts[no++] = r->comment;
        break;
    default:
        sym = bad_policy ? "DMARC_BAD_POLICY" : "DMARC_NA";
        if (r->comment)
            opts[no++] = r->comment;
        break;
    }
    as_task_add_symbolv(t, sym, 1.0, opts, no);

    /* enforcement: "at least" the configured action (RFC 9989 7.2 text) */
    if (r->result == AS_DMARC_FAIL && r->disposition == AS_DMARC_POLICY_REJECT && st->reject_on)
        as_task_force_action(t, st->reject_action, AS_FORCE_LEAST, AS_PRIO_PLUGIN,
                             as_pool_printf(p, "5.7.1 Rejected per DMARC policy of %s", dom),
                             "dmarc");
    else if (r->result == AS_DMARC_FAIL && r->disposition == AS_DMARC_POLICY_QUARANTINE &&
             st->quarantine_on)
        as_task_force_action(t, st->quarantine_action, AS_FORCE_LEAST, AS_PRIO_PLUGIN, NULL,
                             "dmarc");
    else if (r->result == AS_DMARC_PERMERROR && st->too_many_on)
        as_task_force_action(t, st->too_many_action, AS_FORCE_LEAST, AS_PRIO_PLUGIN,
                             as_pool_printf(p, "5.7.1 Too many author domains in From to "
                                               "check DMARC (limit %d)", st->max_authors),
                             "dmarc");

    auth_result(s, r);
    if (st->nlists)
        munge(s, r);
    as_task_log(t, AS_LOG_DEBUG, "dmarc: %s %s (%d rounds)", r->auth_results,
                r->comment ? r->comment : "", s->rounds);
}

/* A query of policy discovery: the Tree Walk of the Author Domain (or the
 * RFC 7489 lookups, also at the author or above) and its existence test. */
static int discovery_miss(const struct dmarc_outcome *o, const struct dmarc_miss *m)
{
    const char *a = o->res.author_domain;
    if (!a)
        return 0;
    if (m->type == AS_DNS_A)
        return strcmp(m->name, a) == 0;
    if (m->type != AS_DNS_TXT || strncmp(m->name, "_dmarc.", 7) != 0)
        return 0;
    const char *n = m->name + 7;
    size_t la = strlen(a), ln = strlen(n);
    return la == ln ? strcmp(a, n) == 0
                    : la > ln && a[la - ln - 1] == '.' && strcmp(a + la - ln, n) == 0;
}

static void scan_round(struct dmarc_scan *s)
{
    s->rounds++;
    int incomplete = 0;
    struct as_pool *p = as_task_pool(s->t);
    for (size_t i = 0; i < s->nauthors; i++) {
        if (s->rounds > 1 && !s->out[i].incomplete)
            continue;         /* settled: answers are pinned, it would not change */
        dmarc_evaluate(p, &s->in[i], scan_fetch, s, &s->out[i]);
        incomplete |= s->out[i].incomplete;
    }
    if (incomplete && s->rounds < s->st->max_rounds && !s->start_failed) {
        /* Discovery first: while any Author Domain's policy is unknown,
         * the walks of identifiers wait, so the reserve (dmarc_init) covers
         * discovery whatever identifiers the message brings. */
        int discovering = 0;
        for (size_t i = 0; i < s->nauthors; i++)
            for (size_t k = 0; s->out[i].incomplete && k < s->out[i].nmisses; k++)
                discovering |= discovery_miss(&s->out[i], &s->out[i].misses[k]);
        for (size_t i = 0; i < s->nauthors; i++)
            for (size_t k = 0; s->out[i].incomplete && k < s->out[i].nmisses; k++)
                if (!discovering || discovery_miss(&s->out[i], &s->out[i].misses[k]))
                    want(s, s->out[i].misses[k].name, s->out[i].misses[k].type);
        if (s->outstanding > 0)
            return;   /* dns_done() runs the next round */
    }
    publish(s);
}

/* ---- entry ------------------------------------------------------------- */

static void dmarc_scan(struct as_task *t, void *state)
{
    struct dmarc_state *st = state;
    struct as_pool *p = as_task_pool(t);
    const struct as_envelope *env = as_task_envelope(t);
    const struct as_spf_result *spf = as_task_get_result(t, AS_SPF_RESULT_KEY);
    if (spf && spf->version < 1)
        spf = NULL;
    if (st->skip_auth && env && env->user && *env->user) {
        as_task_log(t, AS_LOG_DEBUG, "dmarc: skipped: authenticated sender");
        return;
    }
    /* SPF deliberately not evaluated for a client it knows (local
     * networks, our relays with no untrusted hop): outgoing or internal
     * mail, not DMARC's business.  "no client IP" leaves client_ip NULL
     * and DMARC runs on DKIM alone. */
    if (spf && spf->skipped && spf->client_ip) {
        as_task_log(t, AS_LOG_DEBUG, "dmarc: skipped: %s",
                    spf->skip_reason ? spf->skip_reason : "SPF skipped");
        return;
    }

    struct dmarc_scan *s = as_pool_alloc(p, sizeof *s);
    if (!s)
        return;
    s->t = t;
    s->st = st;

    /* Author Domains (RFC 9989 5.3.1, 11.5): every distinct domain of the
     * From mailboxes, whatever the field count or group syntax. */
    const struct as_from *from = as_task_from(t);
    const char *authors[DMARC_MAX_AUTHORS_LIMIT];
    size_t na = 0;
    if (from && (from->status == AS_FROM_OK || from->status == AS_FROM_MULTIPLE_FIELDS ||
                 from->status == AS_FROM_MULTIPLE_MAILBOXES || from->status == AS_FROM_GROUP)) {
        for (size_t i = 0; i < from->list.nboxes; i++) {
            const struct as_mailbox *mb = &from->list.boxes[i];
            if (!mb->domain || (mb->flags & AS_MAILBOX_DOMAIN_LITERAL))
                continue;
            const char *d = as_domain_normalize(p, mb->domain, strlen(mb->domain));
            if (!d)
                continue;
            int dup = 0;
            for (size_t k = 0; k < na; k++)
                dup |= strcmp(authors[k], d) == 0;
            if (dup)
                continue;
            if (na == (size_t)st->max_authors) {
                s->incomplete_authors = 1;
                break;
            }
            authors[na++] = d;
        }
    } else if (from && from->status == AS_FROM_INVALID) {
        /* never let a malformed From dodge DMARC (RFC 9989 11.5) */
        const struct as_message *mm = as_task_message(t);
        size_t nf = mm ? as_msg_header_count(mm, "From") : 0;
        /* (not bounded by na: a field past the limit must still set
         * incomplete_authors) */
        for (size_t i = 0; i < nf && !s->incomplete_authors; i++) {
            const struct as_header *h = as_msg_header_get(mm, "From", (int)i);
            const char *v = h ? as_header_unfold(t, h, NULL) : NULL;
            const char *found[DMARC_MAX_AUTHORS_LIMIT];
            size_t nfound = dmarc_scan_domains(p, v, found, DMARC_MAX_AUTHORS_LIMIT);
            for (size_t k = 0; k < nfound; k++) {
                int dup = 0;
                for (size_t q = 0; q < na; q++)
                    dup |= strcmp(authors[q], found[k]) == 0;
                if (dup)
                    continue;
                if (na == (size_t)st->max_authors) {
                    s->incomplete_authors = 1;
                    break;
                }
                authors[na++] = found[k];
            }
        }
    }

    const char *spf_domain = NULL;
    enum as_spf_res spf_res = AS_SPF_NONE;
    if (spf && !spf->skipped && spf->dmarc && spf->dmarc->checked && spf->dmarc->domain) {
        spf_domain = as_domain_normalize(p, spf->dmarc->domain, strlen(spf->dmarc->domain));
        spf_res = spf->dmarc->result;
    }
    const struct as_dkim_result *dk = as_task_get_result(t, AS_DKIM_RESULT_KEY);
    struct dmarc_dkim_in *dkin = NULL;
    size_t ndk = 0;
    if (dk && dk->version >= 1 && dk->nsigs) {
        dkin = as_pool_alloc(p, dk->nsigs * sizeof *dkin);
        for (size_t i = 0; dkin && i < dk->nsigs; i++) {
            const struct as_dkim_sig *sg = &dk->sigs[i];
            if (!sg->domain)
                continue;
            dkin[ndk].domain = sg->domain;
            dkin[ndk].result = sg->result;
            ndk++;
        }
    }
    const struct as_message *m = as_task_message(t);
    int list_traffic = st->list_downgrade && m && as_msg_header_count(m, "List-Id") > 0;
    int sample = (int)(pct_draw(&st->pct_rng) % 100);

    s->nauthors = na;
    /* not zeroed: an outcome is about 12 KiB, and dmarc_evaluate() sets
     * what it reads (the first round evaluates every author) */
    s->out = na ? as_pool_alloc_uninit(p, na * sizeof *s->out) : NULL;
    if (na && !s->out)
        return;
    for (size_t i = 0; i < na; i++) {
        struct dmarc_input *in = &s->in[i];
        in->author = authors[i];
        in->discovery = st->discovery;
        in->psl = st->psl;
        in->spf_domain = spf_domain;
        in->spf_result = spf_res;
        in->dkim = dkin;
        in->ndkim = ndk;
        in->list_traffic = list_traffic;
        in->sample = sample;
    }
    if (na == 0) {
        publish(s);
        return;
    }
    scan_round(s);
}

static const char *const dmarc_depends[] = { "spf", "dkim", NULL };
/* the ARC result, when the arc plugin is loaded (trusted sealers) */
static const char *const dmarc_after[] = { "arc", NULL };

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "dmarc",
    .version = "1.0",
    .description = "DMARC (RFC 9989 / RFC 7489): policy, alignment, enforcement, "
                   "Authentication-Results entry, mailing-list From rewriting",
    .depends = dmarc_depends,
    .after = dmarc_after,
    .symbols = dmarc_symbols,
    .nsymbols = sizeof dmarc_symbols / sizeof dmarc_symbols[0],
    .options = dmarc_options,
    .noptions = sizeof dmarc_options / sizeof dmarc_options[0],
    .init = dmarc_init,
    .scan = dmarc_scan,
    .fini = dmarc_fini,
};
