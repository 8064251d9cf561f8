/*
 * arc.c - the "arc" plugin: validates the Authenticated Received Chain of
 * a message (RFC 8617 5.2), publishes a typed result (authscan/arc.h) for
 * DMARC's trusted-sealer override and Lua, adds rspamd's ARC_* symbols and
 * the arc= entry of Authentication-Results.
 *
 * Parsing is arc_parse.c, digests are arc_crypto.c; the key records, key
 * cache and signature check are the DKIM plugin's (dkim_tags.c,
 * dkim_keys.c), linked in from its dkim_engine library: one code path for
 * every DKIM-style signature we verify.  Keys come from the core's
 * asynchronous resolver, one query per distinct selector._domainkey.domain
 * of the chain; the plugin is finished when the last answer is handled.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "arc_crypto.h"
#include "arc_parse.h"
#include "arc_seal.h"
#include "authscan/dkim.h"
#include "authscan/dmarc.h"
#include "authscan/spf.h"
#include "authscan/arc.h"
#include "authscan/plugin.h"
#include "dkim_keys.h"
#include "dkim_tags.h"

/* ---- configuration -------------------------------------------------- */

static const struct as_symbol_def plugin_symbols[] = {
    { "ARC_ALLOW", -1.0, "arc", "ARC chain validated (cv=pass)", 0 },
    { "ARC_REJECT", 1.0, "arc", "ARC chain failed: a seal or the newest signature did not verify", 0 },
    { "ARC_INVALID", 0.5, "arc", "ARC chain malformed (structure, instances, cv= rules, syntax)", 0 },
    { "ARC_DNSFAIL", 0.0, "arc", "ARC key lookup failed temporarily", 0 },
    { "ARC_NA", 0.0, "arc", "No ARC sets", 0 },
};

static const struct as_option_def plugin_options[] = {
    { "min_rsa_bits", AS_OPT_INT, "1024",
      "smaller RSA keys fail the signature (RFC 8301 3.2); ed25519 is exempt" },
    { "max_rsa_bits", AS_OPT_INT, "8192", "larger RSA keys fail the signature (verification cost)" },
    { "key_cache_size", AS_OPT_INT, "256", "decoded public keys kept per worker; 0 disables" },
    { "trusted_sealers", AS_OPT_LIST, "",
      "sealers whose recorded results DMARC may use: domain or domain:selector" },
    { "trusted_action", AS_OPT_STRING, "deliver",
      "what DMARC does with a failing message a trusted sealer vouches for: deliver "
      "(disposition none) or quarantine (at most); needs trusted_sealers" },
    { "sign_domain", AS_OPT_STRING, NULL,
      "seal mail with an ARC set as this domain (d=); needs selector and key" },
    { "selector", AS_OPT_STRING, NULL, "selector (s=) of the sealing key" },
    { "key", AS_OPT_STRING, NULL, "PEM private key file for sealing (RSA >= 1024 bits or Ed25519)" },
    { "sign_headers", AS_OPT_LIST,
      "from,to,cc,subject,date,message-id,reply-to,in-reply-to,references,mime-version,"
      "content-type,content-transfer-encoding,list-id,dkim-signature",
      "header fields the ARC-Message-Signature signs (those present)" },
    { "authserv_id", AS_OPT_STRING, NULL,
      "authserv-id of the ARC-Authentication-Results we seal (default: the MTA-Name of the "
      "scan, else sign_domain)" },
};

struct arc_trusted {
    char *domain;
    char *selector;           /* NULL: any selector */
};

struct arc_state {
    struct dkimkey_cache *cache;    /* the worker's, shared with dkim (dkim_keys.h) */
    int cache_owned;
    long long min_bits, max_bits;
    struct arc_trusted *trusted;
    size_t ntrusted;
    enum as_arc_trust_action trust_action;
    /* sealing: all set, or none */
    char *sign_domain, *selector, *authserv_id;
    EVP_PKEY *sign_key;
    const char *const *sign_headers;
    size_t nsign_headers;
};

/* ---- per-scan state ------------------------------------------------- */

struct arc_key {
    struct arc_scan *sc;
    const char *qname;
    const struct as_dns_answer *ans;
};

/* One signature (an AMS or an AS) to check. */
struct arc_sig {
    const struct arc_field *f;
    struct dkim_taglist *tl;
    const char *domain, *selector, *algorithm;
    int keytype;                  /* DKIM_KEYTYPE_* of a= */
    struct dkim_slice b, bh, h;
    int hdr_relaxed, body_relaxed;
    struct arc_key *key;
    enum as_arc_sig res;
    const char *reason;
    int checked;
};

struct arc_scan {
    struct as_task *t;
    struct arc_state *st;
    struct arc_chain chain;
    struct arc_field *fields;     /* the ARC fields */
    struct arc_hfield *hf;        /* every header field, for h= */
    size_t nh;
    struct arc_sig *ams, *as;     /* [chain.n] */
    struct as_arc_set *sets;
    struct arc_key *keys;
    size_t nkeys;
    int outstanding;
    int finished;
    unsigned char body_hash[2][ARC_DIGEST_LEN];
    int have_body_hash[2];
};

static void sig_decide(struct arc_sig *s, enum as_arc_sig r, const char *reason)
{
    if (s->checked)
        return;
    s->checked = 1;
    s->res = r;
    s->reason = r == AS_ARC_SIG_PASS ? NULL : reason;
}

/* ---- results ---------------------------------------------------------- */

static int trusted_match(const struct arc_state *st, const char *d, const char *s)
{
    for (size_t i = 0; d && i < st->ntrusted; i++)
        if (strcasecmp(st->trusted[i].domain, d) == 0 &&
            (!st->trusted[i].selector || (s && strcasecmp(st->trusted[i].selector, s) == 0)))
            return 1;
    return 0;
}

static void publish(struct arc_scan *sc, enum as_arc_cv cv, int malformed, const char *reason,
                    unsigned oldest_pass)
{
    struct as_task *t = sc->t;
    struct as_pool *p = as_task_pool(t);
    struct as_arc_result *r = as_pool_alloc(p, sizeof *r);
    if (!r)
        return;
    sc->finished = 1;
    r->version = AS_ARC_RESULT_VERSION;
    r->cv = cv;
    r->malformed = malformed;
    r->reason = reason;
    r->oldest_pass = cv == AS_ARC_PASS ? oldest_pass : 0;
    r->trust_configured = sc->st->ntrusted > 0;
    r->trust_action = sc->st->trust_action;
    if (sc->sets) {
        for (unsigned i = 0; i < sc->chain.n; i++) {
            struct as_arc_set *o = &sc->sets[i];
            o->seal = sc->as[i].res;
            o->seal_reason = sc->as[i].reason;
            o->ams = sc->ams[i].res;
            o->ams_reason = sc->ams[i].reason;
        }
        r->sets = sc->sets;
        r->nsets = sc->chain.n;
    }
    as_task_set_result(t, AS_ARC_RESULT_KEY, r);

    const struct as_envelope *env = as_task_envelope(t);
    const char *opts[AS_ARC_MAX_SETS + 2];
    size_t no = 0;
    const char *sym;
    switch (cv) {
    case AS_ARC_NONE:
        /* no arc=none in Authentication-Results: it would be in every
         * header we write and says nothing a reader needs */
        as_task_add_symbol(t, "ARC_NA", 1.0, NULL);
        as_task_log(t, AS_LOG_INFO, "arc: none");
        return;
    case AS_ARC_PASS:
        sym = "ARC_ALLOW";
        break;
    case AS_ARC_TEMPERROR:
        sym = "ARC_DNSFAIL";
        break;
    default:
        sym = malformed ? "ARC_INVALID" : "ARC_REJECT";
        break;
    }
    if (reason)
        opts[no++] = reason;
    /* the sealers, newest first: "domain:i" */
    for (unsigned i = sc->sets ? sc->chain.n : 0; i-- > 0 && no < AS_ARC_MAX_SETS;)
        if (sc->sets[i].seal_domain)
            opts[no++] = as_pool_printf(p, "%s:%u", sc->sets[i].seal_domain, i + 1);
    if (cv == AS_ARC_PASS)
        opts[no++] = as_pool_printf(p, "oldest-pass:%u", oldest_pass);
    as_task_add_symbolv(t, sym, 1.0, opts, no);

    /* arc=pass (i=2 d=lists.example.org) smtp.remote-ip=192.0.2.1 header.oldest-pass=0 */
    struct as_auth_prop props[2];
    size_t np = 0;
    if (env && env->ip)
        props[np++] = (struct as_auth_prop){ "smtp.remote-ip", env->ip };
    if (cv == AS_ARC_PASS)
        props[np++] = (struct as_auth_prop){ "header.oldest-pass",
                                             as_pool_printf(p, "%u", oldest_pass) };
    const char *comment = NULL;
    if (sc->sets && sc->chain.n && sc->sets[sc->chain.n - 1].seal_domain)
        comment = as_pool_printf(p, "i=%u d=%s", sc->chain.n,
                                 sc->sets[sc->chain.n - 1].seal_domain);
    struct as_auth_result ar = { "arc", as_arc_cv_name(cv), comment,
                                 cv == AS_ARC_PASS ? NULL : reason, props, np };
    as_task_add_auth_resultv(t, &ar);
    as_task_log(t, AS_LOG_INFO, "arc: %s sets=%u oldest-pass=%u%s%s", as_arc_cv_name(cv),
                sc->chain.n, oldest_pass, reason ? " - " : "", reason ? reason : "");
}

/* ---- signature checks ------------------------------------------------- */

static const struct dkim_key *key_of(struct arc_scan *sc, struct arc_sig *s)
{
    const struct as_dns_answer *a = s->key ? s->key->ans : NULL;
    if (!a) {
        sig_decide(s, AS_ARC_SIG_TEMPERROR, "key not fetched");
        return NULL;
    }
    switch (a->status) {
    case AS_DNS_OK:
        break;
    case AS_DNS_NXDOMAIN:
    case AS_DNS_NODATA:
        sig_decide(s, AS_ARC_SIG_PERMERROR, "no key record");
        return NULL;
    case AS_DNS_BADNAME:
        sig_decide(s, AS_ARC_SIG_PERMERROR, "invalid key name");
        return NULL;
    case AS_DNS_BUDGET:
        /* never sent: the message's senders can spend the budget */
        sig_decide(s, AS_ARC_SIG_PERMERROR, "key query over the scan's DNS budget");
        return NULL;
    default:
        sig_decide(s, AS_ARC_SIG_TEMPERROR,
                   as_pool_printf(as_task_pool(sc->t), "key query %s",
                                  as_dns_status_name(a->status)));
        return NULL;
    }
    const struct dkim_key *k = NULL;
    const char *kerr = "no key record";
    for (size_t i = 0; i < a->nrr; i++) {
        const struct as_str *txt = &a->rr[i].d.txt.joined;
        const struct dkim_key *c = dkimkey_cache_get(sc->st->cache, txt->ptr, txt->len);
        if (!c) {
            sig_decide(s, AS_ARC_SIG_TEMPERROR, "out of memory");
            return NULL;
        }
        if (!c->error) {
            k = c;
            break;
        }
        if (i == 0)
            kerr = c->error;
    }
    if (!k) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, kerr);
        return NULL;
    }
    if (k->rec.revoked) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "key revoked");
        return NULL;
    }
    if (k->rec.keytype != s->keytype) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "key type does not match a=");
        return NULL;
    }
    if (!(k->rec.hashes & DKIM_HASH_SHA256)) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "key h= excludes sha256");
        return NULL;
    }
    if (k->rec.keytype == DKIM_KEYTYPE_RSA && (long long)k->bits < sc->st->min_bits) {
        sig_decide(s, AS_ARC_SIG_FAIL, "RSA key too small (RFC 8301)");
        return NULL;
    }
    if (k->rec.keytype == DKIM_KEYTYPE_RSA && (long long)k->bits > sc->st->max_bits) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "RSA key too large");
        return NULL;
    }
    return k;
}

static void check_digest(struct arc_scan *sc, struct arc_sig *s, const struct dkim_key *k,
                         const unsigned char *digest)
{
    unsigned char *sig = as_pool_alloc(as_task_pool(sc->t), s->b.n + 1);
    long sl = sig ? dkimtag_base64_decode(s->b, sig, s->b.n) : -1;
    if (sl <= 0) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "bad base64 in b=");
        return;
    }
    if (!dkimkey_verify(k, 0, digest, ARC_DIGEST_LEN, sig, (size_t)sl))
        sig_decide(s, AS_ARC_SIG_FAIL, "signature did not verify");
    else
        sig_decide(s, AS_ARC_SIG_PASS, NULL);
}

static void check_ams(struct arc_scan *sc, unsigned i)
{
    struct arc_sig *s = &sc->ams[i - 1];
    if (s->checked)
        return;
    const struct dkim_key *k = key_of(sc, s);
    if (!k)
        return;
    int br = s->body_relaxed;
    if (!sc->have_body_hash[br]) {
        struct as_str body = as_msg_body(as_task_message(sc->t));
        if (arc_body_hash(body.ptr, body.len, br, sc->body_hash[br]) < 0) {
            sig_decide(s, AS_ARC_SIG_TEMPERROR, "out of memory");
            return;
        }
        sc->have_body_hash[br] = 1;
    }
    unsigned char want[64];
    long wl = dkimtag_base64_decode(s->bh, want, sizeof want);
    if (wl < 0) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "bad base64 in bh=");
        return;
    }
    if (wl != ARC_DIGEST_LEN || memcmp(want, sc->body_hash[br], ARC_DIGEST_LEN) != 0) {
        sig_decide(s, AS_ARC_SIG_FAIL, "body hash did not verify");
        return;
    }
    unsigned char digest[ARC_DIGEST_LEN];
    const char *err = NULL;
    if (arc_ams_hash(sc->hf, sc->nh, s->h, s->hdr_relaxed, s->f, s->b, digest, &err) < 0) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, err);
        return;
    }
    check_digest(sc, s, k, digest);
}

static void check_as(struct arc_scan *sc, unsigned i)
{
    struct arc_sig *s = &sc->as[i - 1];
    if (s->checked)
        return;
    const struct dkim_key *k = key_of(sc, s);
    if (!k)
        return;
    unsigned char digest[ARC_DIGEST_LEN];
    const struct arc_chain *c = &sc->chain;
    if (arc_seal_hash(c, i, c->set[i - 1][ARC_AAR], c->set[i - 1][ARC_AMS], s->f, s->b,
                      digest) < 0) {
        sig_decide(s, AS_ARC_SIG_TEMPERROR, "out of memory");
        return;
    }
    check_digest(sc, s, k, digest);
}

/* RFC 8617 5.2 steps 4-7, once every key is in. */
static void evaluate(struct arc_scan *sc)
{
    struct as_pool *p = as_task_pool(sc->t);
    unsigned n = sc->chain.n;
    check_ams(sc, n);
    struct arc_sig *top = &sc->ams[n - 1];
    if (top->res != AS_ARC_SIG_PASS) {
        enum as_arc_cv cv = top->res == AS_ARC_SIG_TEMPERROR ? AS_ARC_TEMPERROR : AS_ARC_FAIL;
        publish(sc, cv, 0, as_pool_printf(p, "ARC-Message-Signature i=%u: %s", n,
                                          top->reason ? top->reason : "failed"), 0);
        return;
    }
    unsigned oldest = 0;
    for (unsigned i = n - 1; i >= 1; i--) {
        check_ams(sc, i);
        if (sc->ams[i - 1].res != AS_ARC_SIG_PASS) {
            oldest = i + 1;
            break;
        }
    }
    for (unsigned i = n; i >= 1; i--) {
        check_as(sc, i);
        struct arc_sig *s = &sc->as[i - 1];
        if (s->res != AS_ARC_SIG_PASS) {
            enum as_arc_cv cv = s->res == AS_ARC_SIG_TEMPERROR ? AS_ARC_TEMPERROR : AS_ARC_FAIL;
            publish(sc, cv, 0, as_pool_printf(p, "ARC-Seal i=%u: %s", i,
                                              s->reason ? s->reason : "failed"), 0);
            return;
        }
    }
    publish(sc, AS_ARC_PASS, 0, NULL, oldest);
}

/* ---- setup ------------------------------------------------------------ */

static void dns_done(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    (void)t;
    struct arc_key *k = arg;
    struct arc_scan *sc = k->sc;
    k->ans = ans;
    if (--sc->outstanding == 0 && !sc->finished)
        evaluate(sc);
}

static struct arc_key *key_want(struct arc_scan *sc, const char *qname)
{
    for (size_t i = 0; i < sc->nkeys; i++)
        if (strcmp(sc->keys[i].qname, qname) == 0)
            return &sc->keys[i];
    struct arc_key *k = &sc->keys[sc->nkeys++];
    k->sc = sc;
    k->qname = qname;
    return k;
}

/* Parses one AMS or AS; a problem with it is that signature's permerror. */
static void sig_setup(struct arc_scan *sc, struct arc_sig *s, const struct arc_field *f,
                      int is_seal)
{
    struct as_pool *p = as_task_pool(sc->t);
    const char *err = NULL;
    s->f = f;
    s->tl = as_pool_alloc(p, sizeof *s->tl);
    if (!s->tl) {
        sig_decide(s, AS_ARC_SIG_TEMPERROR, "out of memory");
        return;
    }
    if (dkimtag_parse(f->val, f->vallen, s->tl, &err) < 0) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, err);   /* arc_chain_build parsed it already */
        return;
    }
    const struct dkim_slice *v;
    if ((v = dkimtag_get(s->tl, "d")))
        s->domain = as_pool_strndup(p, v->p, v->n);
    if ((v = dkimtag_get(s->tl, "s")))
        s->selector = as_pool_strndup(p, v->p, v->n);
    if ((v = dkimtag_get(s->tl, "a")))
        s->algorithm = as_pool_strndup(p, v->p, v->n);
    if ((v = dkimtag_get(s->tl, "b")))
        s->b = *v;
    if ((v = dkimtag_get(s->tl, "bh")))
        s->bh = *v;
    if ((v = dkimtag_get(s->tl, "h")))
        s->h = *v;
    if (!s->algorithm || !s->b.p) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, !s->algorithm ? "no a= tag" : "no b= tag");
        return;
    }
    if (strcasecmp(s->algorithm, "rsa-sha256") == 0) {
        s->keytype = DKIM_KEYTYPE_RSA;
    } else if (strcasecmp(s->algorithm, "ed25519-sha256") == 0) {
        s->keytype = DKIM_KEYTYPE_ED25519;
    } else {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "unsupported algorithm (RFC 8617 allows "
                                            "rsa-sha256 and ed25519-sha256)");
        return;
    }
    if (is_seal) {
        /* RFC 8617 4.1.3: a seal signs the sets, never a header list. */
        if (dkimtag_get(s->tl, "h")) {
            sig_decide(s, AS_ARC_SIG_PERMERROR, "h= in ARC-Seal");
            return;
        }
    } else {
        if (!s->h.p || !s->bh.p) {
            sig_decide(s, AS_ARC_SIG_PERMERROR, !s->h.p ? "no h= tag" : "no bh= tag");
            return;
        }
        if (dkimtag_list_has(s->h, "arc-seal")) {
            sig_decide(s, AS_ARC_SIG_FAIL, "h= names ARC-Seal (RFC 8617 4.1.2)");
            return;
        }
        if (dkimtag_get(s->tl, "l")) {
            sig_decide(s, AS_ARC_SIG_PERMERROR, "l= is not accepted in ARC");
            return;
        }
        if (arc_canon_parse(dkimtag_get(s->tl, "c"), &s->hdr_relaxed, &s->body_relaxed) < 0) {
            sig_decide(s, AS_ARC_SIG_PERMERROR, "unknown c= canonicalization");
            return;
        }
    }
    if (!s->domain || !dkimtag_name_valid(s->domain, strlen(s->domain), 0) ||
        !(s->domain = as_domain_normalize(p, s->domain, strlen(s->domain)))) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "invalid d= domain");
        return;
    }
    if (!s->selector || !dkimtag_name_valid(s->selector, strlen(s->selector), 1)) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "invalid s= selector");
        return;
    }
    const char *qname = as_pool_printf(p, "%s._domainkey.%s", s->selector, s->domain);
    if (!qname || strlen(qname) > 253) {
        sig_decide(s, AS_ARC_SIG_PERMERROR, "key name too long");
        return;
    }
    s->key = key_want(sc, qname);
}

/* The AAR's resinfo for the typed result. */
static void aar_setup(struct arc_scan *sc, struct as_arc_set *o, const struct arc_field *f)
{
    struct as_pool *p = as_task_pool(sc->t);
    struct arc_aar *aar = as_pool_alloc(p, sizeof *aar);
    const char *err = NULL;
    if (!aar)
        return;
    if (arc_aar_parse(f->val, f->vallen, aar, &err) < 0) {
        as_task_log(sc->t, AS_LOG_DEBUG, "arc: ARC-Authentication-Results i=%u: %s",
                    o->instance, err);
        return;      /* opaque to validation: the set just records nothing usable */
    }
    o->authserv_id = as_pool_strndup(p, aar->authserv_id.p, aar->authserv_id.n);
    struct as_arc_resinfo *ri = aar->nres ? as_pool_alloc(p, aar->nres * sizeof *ri) : NULL;
    for (size_t i = 0; ri && i < aar->nres; i++) {
        const struct arc_aar_res *r = &aar->res[i];
        struct as_arc_prop *props = r->nprops ? as_pool_alloc(p, r->nprops * sizeof *props) : NULL;
        for (size_t k = 0; props && k < r->nprops; k++) {
            char *name = as_pool_strndup(p, r->props[k].name.p, r->props[k].name.n);
            for (char *c = name; c && *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c - 'A' + 'a');
            props[k].name = name;
            props[k].value = as_pool_strndup(p, r->props[k].value.p, r->props[k].value.n);
        }
        char *method = as_pool_strndup(p, r->method.p, r->method.n);
        char *result = as_pool_strndup(p, r->result.p, r->result.n);
        for (char *c = method; c && *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        for (char *c = result; c && *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        ri[i] = (struct as_arc_resinfo){ method, result, props, props ? r->nprops : 0 };
    }
    if (ri) {
        o->results = ri;
        o->nresults = aar->nres;
    }
}

static void plugin_scan(struct as_task *t, void *state)
{
    struct arc_state *st = state;
    struct as_pool *p = as_task_pool(t);
    const struct as_message *msg = as_task_message(t);
    struct arc_scan *sc = as_pool_alloc(p, sizeof *sc);
    if (!sc || !msg)
        return;
    sc->t = t;
    sc->st = st;
    size_t nh = as_msg_header_total(msg), narc = 0;
    sc->hf = as_pool_alloc(p, (nh ? nh : 1) * sizeof *sc->hf);
    sc->fields = as_pool_alloc(p, (nh ? nh : 1) * sizeof *sc->fields);
    int *kinds = as_pool_alloc(p, (nh ? nh : 1) * sizeof *kinds);
    if (!sc->hf || !sc->fields || !kinds)
        return;
    for (size_t i = 0; i < nh; i++) {
        const struct as_header *h = as_msg_header_at(msg, i);
        if (!h)
            continue;
        sc->hf[sc->nh++] = (struct arc_hfield){ h->raw.ptr, h->raw.len, h->name.ptr, h->name.len };
        int kind = arc_field_kind(h->name.ptr, h->name.len);
        if (kind < 0)
            continue;
        /* more than 150 ARC fields is a failed chain: stop collecting */
        if (narc > (size_t)AS_ARC_MAX_SETS * ARC_NKINDS)
            continue;
        sc->fields[narc] = (struct arc_field){ h->raw.ptr, h->raw.len, h->value.ptr, h->value.len };
        kinds[narc++] = kind;
    }
    const char *err = NULL;
    int rc = arc_chain_build(sc->fields, kinds, narc, &sc->chain, &err);
    if (rc == 0) {
        publish(sc, AS_ARC_NONE, 0, NULL, 0);
        return;
    }
    unsigned n = sc->chain.n;
    if (rc == -1 || n == 0) {
        sc->chain.n = 0;        /* the sets cannot be trusted to be ordered */
        publish(sc, AS_ARC_FAIL, 1, err, 0);
        return;
    }
    sc->ams = as_pool_alloc(p, n * sizeof *sc->ams);
    sc->as = as_pool_alloc(p, n * sizeof *sc->as);
    sc->sets = as_pool_alloc(p, n * sizeof *sc->sets);
    sc->keys = as_pool_alloc(p, 2 * n * sizeof *sc->keys);
    if (!sc->ams || !sc->as || !sc->sets || !sc->keys)
        return;
    for (unsigned i = 1; i <= n; i++) {
        struct as_arc_set *o = &sc->sets[i - 1];
        o->instance = i;
        o->cv = sc->chain.cv[i - 1];
        if (rc == 1) {
            sig_setup(sc, &sc->ams[i - 1], sc->chain.set[i - 1][ARC_AMS], 0);
            sig_setup(sc, &sc->as[i - 1], sc->chain.set[i - 1][ARC_AS], 1);
        }
        o->seal_domain = sc->as[i - 1].domain;
        o->seal_selector = sc->as[i - 1].selector;
        o->seal_algorithm = sc->as[i - 1].algorithm;
        o->ams_domain = sc->ams[i - 1].domain;
        o->ams_selector = sc->ams[i - 1].selector;
        o->trusted = trusted_match(st, o->seal_domain, o->seal_selector);
        if (sc->chain.set[i - 1][ARC_AAR])
            aar_setup(sc, o, sc->chain.set[i - 1][ARC_AAR]);
    }
    if (rc == -2) {
        /* step 2: the newest sealer said the chain had failed */
        publish(sc, AS_ARC_FAIL, 0, err, 0);
        return;
    }
    for (size_t i = 0; i < sc->nkeys; i++) {
        if (as_dns_query(t, sc->keys[i].qname, AS_DNS_TXT, dns_done, &sc->keys[i]) == 0)
            sc->outstanding++;
    }
    if (sc->outstanding == 0)
        evaluate(sc);       /* nothing to fetch: every signature failed to parse */
}

/* ---- sealing ------------------------------------------------------------ */

/* Our verdict as the resinfo of the AAR: what the spf, dkim, dmarc and
 * arc results say, the same entries as our Authentication-Results. */
static const char *aar_results(struct as_task *t, const struct as_arc_result *r)
{
    struct as_pool *p = as_task_pool(t);
    const char *o = "";
    const struct as_spf_result *spf = as_task_get_result(t, AS_SPF_RESULT_KEY);
    if (spf && spf->version >= 1 && !spf->skipped && spf->auth_results)
        o = as_pool_printf(p, "%s; %s", o, spf->auth_results);
    const struct as_dkim_result *dk = as_task_get_result(t, AS_DKIM_RESULT_KEY);
    for (size_t i = 0; dk && dk->version >= 1 && i < dk->nauth_results; i++)
        o = as_pool_printf(p, "%s; %s", o, dk->auth_results[i]);
    const struct as_dmarc_result *dm = as_task_get_result(t, AS_DMARC_RESULT_KEY);
    if (dm && dm->version >= 1 && dm->auth_results)
        o = as_pool_printf(p, "%s; %s", o, dm->auth_results);
    const struct as_envelope *env = as_task_envelope(t);
    o = as_pool_printf(p, "%s; arc=%s", o, as_arc_cv_name(r->cv));
    if (r->cv == AS_ARC_PASS)
        o = as_pool_printf(p, "%s header.oldest-pass=%u", o, r->oldest_pass);
    if (env && env->ip)
        o = as_pool_printf(p, "%s smtp.remote-ip=%s", o, as_authres_value(p, env->ip));
    return o;
}

/* RFC 8617 5.1: after the verdict, a set for the message as we pass it on.
 * Not for mail we reject, nor when the chain's status is unknown
 * (temperror), its sets cannot be numbered (malformed, 50 sets) or an
 * earlier sealer already ended it with cv=fail.  A chain we find failing
 * is sealed with cv=fail over our set alone (RFC 8617 5.1.2). */
static void plugin_postfilter(struct as_task *t, void *state)
{
    struct arc_state *st = state;
    if (!st->sign_key)
        return;
    const struct as_arc_result *r = as_task_get_result(t, AS_ARC_RESULT_KEY);
    if (!r || r->version < 1)
        return;
    if (as_task_action(t) == AS_ACTION_REJECT) {
        as_task_log(t, AS_LOG_DEBUG, "arc: not sealing: rejected");
        return;
    }
    if (r->cv == AS_ARC_TEMPERROR || (r->cv == AS_ARC_FAIL && r->nsets == 0)) {
        as_task_log(t, AS_LOG_INFO, "arc: not sealing: chain %s%s%s", as_arc_cv_name(r->cv),
                    r->reason ? " - " : "", r->reason ? r->reason : "");
        return;
    }
    /* a newest seal saying cv=fail ended the chain: nothing to add to it */
    if (r->cv == AS_ARC_FAIL && r->sets[r->nsets - 1].cv == AS_ARC_FAIL) {
        as_task_log(t, AS_LOG_INFO, "arc: not sealing: the chain was ended by cv=fail");
        return;
    }
    if (r->nsets >= AS_ARC_MAX_SETS) {
        as_task_log(t, AS_LOG_INFO, "arc: not sealing: the chain has 50 sets");
        return;
    }
    struct as_pool *p = as_task_pool(t);
    const struct as_message *msg = as_task_message(t);
    size_t nh = as_msg_header_total(msg), narc = 0;
    struct arc_hfield *hf = as_pool_alloc(p, (nh ? nh : 1) * sizeof *hf);
    struct arc_field *fields = as_pool_alloc(p, (nh ? nh : 1) * sizeof *fields);
    int *kinds = as_pool_alloc(p, (nh ? nh : 1) * sizeof *kinds);
    struct arc_chain *chain = as_pool_alloc(p, sizeof *chain);
    if (!hf || !fields || !kinds || !chain)
        return;
    size_t nf = 0;
    for (size_t i = 0; i < nh; i++) {
        const struct as_header *h = as_msg_header_at(msg, i);
        if (!h)
            continue;
        hf[nf++] = (struct arc_hfield){ h->raw.ptr, h->raw.len, h->name.ptr, h->name.len };
        int kind = arc_field_kind(h->name.ptr, h->name.len);
        if (kind >= 0 && narc < (size_t)AS_ARC_MAX_SETS * ARC_NKINDS) {
            fields[narc] = (struct arc_field){ h->raw.ptr, h->raw.len, h->value.ptr, h->value.len };
            kinds[narc++] = kind;
        }
    }
    const char *err = NULL;
    (void)arc_chain_build(fields, kinds, narc, chain, &err);
    const struct as_envelope *env = as_task_envelope(t);
    const char *aid = st->authserv_id ? st->authserv_id
                    : env && env->mta_name && *env->mta_name ? env->mta_name : st->sign_domain;
    struct as_str body = as_msg_body(msg);
    struct arc_seal_in in = {
        .instance = (unsigned)r->nsets + 1,
        .cv = r->cv,
        .chain = chain,
        .domain = st->sign_domain,
        .selector = st->selector,
        .timestamp = (long long)time(NULL),
        .pkey = st->sign_key,
        .aar = as_pool_printf(p, "%s%s", as_authres_value(p, aid), aar_results(t, r)),
        .hf = hf,
        .nh = nf,
        .sign_headers = st->sign_headers,
        .nsign = st->nsign_headers,
        .body = body.ptr,
        .body_len = body.len,
    };
    struct arc_seal_out out;
    if (arc_seal_make(&in, &out, &err) < 0) {
        as_task_log(t, AS_LOG_WARN, "arc: not sealing: %s", err);
        return;
    }
    /* top of the message, newest set first: ARC-Seal, AMS, AAR */
    if (strlen(out.aar) > 990) {
        as_task_log(t, AS_LOG_WARN, "arc: not sealing: ARC-Authentication-Results over 990 bytes");
    } else if (as_task_add_header(t, "ARC-Seal", out.as, 0) < 0 ||
               as_task_add_header(t, "ARC-Message-Signature", out.ams, 0) < 0 ||
               as_task_add_header(t, "ARC-Authentication-Results", out.aar, 0) < 0) {
        as_task_log(t, AS_LOG_WARN, "arc: sealing: header change refused");
    } else {
        as_task_log(t, AS_LOG_INFO, "arc: sealed i=%u cv=%s d=%s s=%s", in.instance,
                    as_arc_cv_name(r->cv), st->sign_domain, st->selector);
    }
    arc_seal_free(&out);
}

/* ---- plugin life ---------------------------------------------------- */

static void plugin_fini(void *state)
{
    struct arc_state *st = state;
    if (!st)
        return;
    if (st->cache_owned)
        dkimkey_cache_free(st->cache);
    EVP_PKEY_free(st->sign_key);
    free(st->sign_domain);
    free(st->selector);
    free(st->authserv_id);
    for (size_t i = 0; i < st->ntrusted; i++) {
        free(st->trusted[i].domain);
        free(st->trusted[i].selector);
    }
    free(st->trusted);
    free(st);
}

static char *lower_dup(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++)
        o[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    o[n] = 0;
    return o;
}

/* Sealing options: all three of sign_domain, selector and key, or none;
 * the key is loaded now so that a bad one stops the configuration check. */
static int sealing_init(struct as_plugin_ctx *ctx, struct arc_state *st)
{
    const char *dom = as_plugin_opt_string(ctx, "sign_domain");
    const char *sel = as_plugin_opt_string(ctx, "selector");
    const char *key = as_plugin_opt_string(ctx, "key");
    const char *aid = as_plugin_opt_string(ctx, "authserv_id");
    int ndef = (dom && *dom) + (sel && *sel) + (key && *key);
    if (ndef == 0) {
        static const char *const only[] = { "sign_headers", "authserv_id" };
        for (size_t i = 0; i < 2; i++)
            if (as_plugin_opt_is_set(ctx, only[i]))
                return as_plugin_opt_error(ctx, only[i], "has no effect without "
                                           "arc.sign_domain, arc.selector and arc.key");
        return 0;
    }
    if (ndef != 3) {
        const char *miss = !(dom && *dom) ? "sign_domain" : !(sel && *sel) ? "selector" : "key";
        const char *given = dom && *dom ? "sign_domain" : sel && *sel ? "selector" : "key";
        return as_plugin_opt_error(ctx, given, "sealing needs arc.sign_domain, arc.selector and "
                                   "arc.key (arc.%s is missing)", miss);
    }
    if (!dkimtag_name_valid(dom, strlen(dom), 0))
        return as_plugin_opt_error(ctx, "sign_domain", "not a domain name");
    if (!dkimtag_name_valid(sel, strlen(sel), 1))
        return as_plugin_opt_error(ctx, "selector", "not a selector");
    if (aid && (!*aid || strpbrk(aid, " \t;()\"\\")))
        return as_plugin_opt_error(ctx, "authserv_id", "expected a token (no blanks, ';', "
                                   "quotes or parentheses)");
    FILE *f = fopen(key, "r");
    if (!f)
        return as_plugin_opt_error(ctx, "key", "cannot open: %m");
    st->sign_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!st->sign_key)
        return as_plugin_opt_error(ctx, "key", "not a PEM private key");
    int id = EVP_PKEY_get_base_id(st->sign_key);
    if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519)
        return as_plugin_opt_error(ctx, "key", "expected an RSA or Ed25519 key");
    if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(st->sign_key) < 1024)
        return as_plugin_opt_error(ctx, "key", "RSA key of %d bits: RFC 8301 needs 1024 or more",
                                   EVP_PKEY_get_bits(st->sign_key));
    if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(st->sign_key) > 8192)
        return as_plugin_opt_error(ctx, "key", "RSA key over 8192 bits");
    st->sign_domain = lower_dup(dom, strlen(dom));
    st->selector = strdup(sel);
    st->authserv_id = aid ? strdup(aid) : NULL;
    st->nsign_headers = as_plugin_opt_list(ctx, "sign_headers", &st->sign_headers);
    if (!st->sign_domain || !st->selector || (aid && !st->authserv_id)) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    int has_from = 0;
    for (size_t i = 0; i < st->nsign_headers; i++)
        has_from |= strcasecmp(st->sign_headers[i], "from") == 0;
    if (!has_from)
        return as_plugin_opt_error(ctx, "sign_headers", "must include From (RFC 6376 5.4)");
    return 0;
}

static int plugin_init(struct as_plugin_ctx *ctx, void **state)
{
    struct arc_state *st = calloc(1, sizeof *st);
    if (!st) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    long long cache_size;
    if (as_plugin_opt_int_range(ctx, "min_rsa_bits", 512, 16384, &st->min_bits) < 0 ||
        as_plugin_opt_int_range(ctx, "max_rsa_bits", 512, 16384, &st->max_bits) < 0 ||
        as_plugin_opt_int_range(ctx, "key_cache_size", 0, 1000000, &cache_size) < 0)
        goto fail;
    if (st->max_bits < st->min_bits) {
        as_plugin_opt_error(ctx, "max_rsa_bits", "smaller than arc.min_rsa_bits (%lld)",
                            st->min_bits);
        goto fail;
    }
    const char *const *items = NULL;
    size_t ni = as_plugin_opt_list(ctx, "trusted_sealers", &items);
    st->trusted = ni ? calloc(ni, sizeof *st->trusted) : NULL;
    if (ni && !st->trusted) {
        as_plugin_set_error(ctx, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ni; i++) {
        const char *it = items[i];
        const char *colon = strchr(it, ':');
        size_t dn = colon ? (size_t)(colon - it) : strlen(it);
        if (!dkimtag_name_valid(it, dn, 0) ||
            (colon && !dkimtag_name_valid(colon + 1, strlen(colon + 1), 1))) {
            as_plugin_opt_item_error(ctx, "trusted_sealers", it,
                                     "expected a domain or domain:selector");
            goto fail;
        }
        struct arc_trusted *tr = &st->trusted[st->ntrusted++];
        tr->domain = lower_dup(it, dn);
        tr->selector = colon ? lower_dup(colon + 1, strlen(colon + 1)) : NULL;
        if (!tr->domain || (colon && !tr->selector)) {
            as_plugin_set_error(ctx, "out of memory");
            goto fail;
        }
    }
    const char *ta = as_plugin_opt_string(ctx, "trusted_action");
    if (!ta || strcmp(ta, "deliver") == 0) {
        st->trust_action = AS_ARC_TRUST_DELIVER;
    } else if (strcmp(ta, "quarantine") == 0) {
        st->trust_action = AS_ARC_TRUST_QUARANTINE;
    } else {
        as_plugin_opt_error(ctx, "trusted_action", "expected deliver or quarantine");
        goto fail;
    }
    if (!st->ntrusted && as_plugin_opt_is_set(ctx, "trusted_action")) {
        as_plugin_opt_error(ctx, "trusted_action", "has no effect without arc.trusted_sealers");
        goto fail;
    }
    if (sealing_init(ctx, st) < 0)
        goto fail;
    /* The usual chain has one or two sealers, each with one key for seal
     * and signature: keep those few queries from being spent by SPF. */
    if (as_plugin_dns_reserve(ctx, 2) < 0) {
        as_plugin_set_error(ctx, "arc: cannot reserve DNS queries");
        goto fail;
    }
    st->cache = dkimkey_cache_shared(ctx, (size_t)cache_size, &st->cache_owned);
    if (!st->cache) {
        as_plugin_set_error(ctx, "out of memory");
        goto fail;
    }
    *state = st;
    return 0;
fail:
    plugin_fini(st);
    return -1;
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "arc",
    .version = "1.0",
    .description = "ARC (RFC 8617) chain validation over the scan's asynchronous DNS, "
                   "trusted sealers for DMARC, sealing",
    .symbols = plugin_symbols,
    .nsymbols = sizeof plugin_symbols / sizeof plugin_symbols[0],
    .options = plugin_options,
    .noptions = sizeof plugin_options / sizeof plugin_options[0],
    .init = plugin_init,
    .scan = plugin_scan,
    .fini = plugin_fini,
    .postfilter = plugin_postfilter,
};
