/*
 * dkim.c - the "dkim" plugin: verifies every DKIM-Signature (RFC 6376,
 * RFC 8463 ed25519-sha256) with libopendkim, with keys from the core's
 * asynchronous resolver, RFC 8301 policy, rspamd's symbols, a typed result
 * for DMARC (authscan/dkim.h) and RFC 8601 dkim= resinfo strings.
 *
 * libopendkim never does DNS here: its own resolver blocks.  The
 * prescreen callback (at end of headers) sees every signature, applies the
 * per-message cap and starts one TXT query per signature; the plugin is
 * finished when the last answer has been handled.
 *
 * Two verification modes (option `verify`):
 *   cached   (default) libopendkim parses the signatures, canonicalizes and
 *            hashes (DKIM_LIBFLAGS_DELAYSIGPROC: no key is needed for
 *            that), so the body is hashed while the key queries are in
 *            flight.  The final callback tells libopendkim to skip its own
 *            signature processing; we then check each signature against
 *            the digests from dkim_sig_gethashes() with a decoded key kept
 *            in a per-worker cache (dkim_keys.h).  This removes the
 *            per-message public-key decoding that dominated the cost.
 *   library  the classic libopendkim flow: the key-lookup callback
 *            answers from the fetched keys or returns DKIM_CBSTAT_TRYAGAIN,
 *            dkim_eoh() is re-entered once every answer is in, and the
 *            library verifies.  Kept as a reference for the differential
 *            tests and for the "before" measurement.
 * A temporary DNS failure of one key makes that signature temperror (in
 * library mode it is dkim_sig_ignore()d before re-entry) and leaves the
 * others alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendkim/dkim.h>
#include <openssl/evp.h>

#include "authscan/dkim.h"
#include "authscan/plugin.h"
#include "dkim_canon.h"
#include "dkim_keys.h"
#include "dkim_screen.h"
#include "dkim_tags.h"

/* ---- configuration -------------------------------------------------- */

static const struct as_symbol_def plugin_symbols[] = {
    { "R_DKIM_ALLOW", -0.2, "dkim", "DKIM verification succeed", 0 },
    { "R_DKIM_REJECT", 1.0, "dkim", "DKIM verification failed", 0 },
    { "R_DKIM_TEMPFAIL", 0.0, "dkim", "DKIM verification soft-failed (temporary DNS error)", 0 },
    { "R_DKIM_PERMFAIL", 0.0, "dkim", "DKIM signature unusable (permerror or local policy)", 0 },
    { "R_DKIM_NA", 0.0, "dkim", "Missing DKIM signature", 0 },
    { "DKIM_TRACE", 0.0, "dkim", "DKIM trace symbol", 0 },
};

static const struct as_option_def plugin_options[] = {
    { "allow_sha1", AS_OPT_BOOL, "no",
      "accept rsa-sha1 signatures (RFC 8301 3.1: verifiers MUST NOT)" },
    { "min_rsa_bits", AS_OPT_INT, "1024",
      "smaller RSA keys give dkim=policy (RFC 8301 3.2); ed25519 is exempt" },
    { "max_rsa_bits", AS_OPT_INT, "8192",
      "larger RSA keys give permerror (verification cost; RFC 8301 3.2 needs 4096)" },
    { "max_signatures", AS_OPT_INT, "5",
      "signatures evaluated per message, in header order; the rest are ignored" },
    { "max_header_list", AS_OPT_INT, "1000",
      "a signature whose h= names more header fields is permerror" },
    { "body_length", AS_OPT_STRING, "complete",
      "l= signatures: accept (RFC 6376 default), complete (neutral when unsigned "
      "body content follows l=), never (any l= gives neutral)" },
    { "key_cache_size", AS_OPT_INT, "1024", "decoded public keys kept per worker; 0 disables" },
    { "verify", AS_OPT_STRING, "cached",
      "cached (own check with cached keys) or library (libopendkim verifies)" },
};

enum body_length_mode { BL_ACCEPT, BL_COMPLETE, BL_NEVER };

struct dkim_state {
    DKIM_LIB *lib;
    struct dkimkey_cache *cache;    /* the worker's, shared with arc (dkim_keys.h) */
    int cache_owned;
    EVP_MD_CTX *md;               /* cached mode: body hashes, reused */
    EVP_MD *sha1, *sha256;        /* fetched once, not per hash */
    int allow_sha1;
    int library_mode;
    long long min_bits, max_bits, max_sigs, max_hlist;
    enum body_length_mode body_length;
};

/* ---- per-scan state ------------------------------------------------- */

struct dmsg;

struct dsig {
    struct dmsg *m;
    DKIM_SIGINFO *si;             /* NULL when libopendkim has no handle for it */
    struct as_dkim_sig *out;
    int decided;                  /* out->result is final */
    int sha1;                     /* a=rsa-sha1 */
    int keytype;                  /* DKIM_KEYTYPE_* the signature wants */
    int has_l;
    unsigned long long l;         /* l= (when has_l), saturated */
    /* cached mode: the body hash we computed (bhashed), and the length of
     * the whole canonical body, for l= */
    int bhashed, relaxed_body;
    unsigned char bhash[EVP_MAX_MD_SIZE];
    unsigned bhash_len;
    unsigned long long canon_total;
    const char *qname;            /* s._domainkey.d */
    const struct as_dns_answer *ans;
    struct dkim_slice b, bh;      /* from our own parse (FWS kept) */
    const char *raw_b;            /* b= with FWS removed, for header.b */
};

struct dmsg {
    struct as_task *t;
    struct dkim_state *st;
    DKIM *d;
    struct dkim_field **hdrs;     /* the DKIM-Signature fields reported, in order */
    size_t nhdrs;
    size_t nheld;                 /* of those, the ones libopendkim holds */
    struct dsig *sigs;
    struct as_dkim_sig *out;
    size_t nsigs;                 /* evaluated */
    size_t nignored;              /* beyond max_signatures */
    int prescreened;
    int outstanding;              /* DNS queries in flight */
    int waiting_eoh;              /* library mode: dkim_eoh() must be re-entered */
    int eom_done;
    int finished;
    const char *body;             /* the body as hashed (CRLF) */
    size_t body_len;
    const char *lib_error;        /* libopendkim failed for the whole message */
};

static void decide(struct dsig *s, enum as_dkim_res r, const char *reason)
{
    if (s->decided)
        return;
    s->decided = 1;
    s->out->result = r;
    s->out->reason = r == AS_DKIM_PASS ? NULL : reason;
}

static const char *alg_name(dkim_alg_t a)
{
    switch (a) {
    case DKIM_SIGN_RSASHA1: return "rsa-sha1";
    case DKIM_SIGN_RSASHA256: return "rsa-sha256";
    case DKIM_SIGN_ED25519SHA256: return "ed25519-sha256";
    default: return NULL;
    }
}

/* A copy of s with bare LF turned into CRLF (libopendkim hashes exactly
 * what it is given, and DKIM canonical form uses CRLF). */
static char *crlf_copy(struct as_pool *p, const char *s, size_t n, size_t *outn)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            extra++;
    char *o = as_pool_alloc(p, n + extra + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            o[k++] = '\r';
        o[k++] = s[i];
    }
    *outn = k;
    return o;
}

static char *strip_fws(struct as_pool *p, struct dkim_slice v)
{
    char *o = as_pool_alloc(p, v.n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < v.n; i++)
        if (v.p[i] != ' ' && v.p[i] != '\t' && v.p[i] != '\r' && v.p[i] != '\n')
            o[k++] = v.p[i];
    o[k] = 0;
    return o;
}

/* ---- key lookup: answers only from what the scan already fetched ----- */

static void dns_done(struct as_task *t, const struct as_dns_answer *ans, void *arg);
static void scan_continue(struct dmsg *m);

static struct dsig *sig_of(struct dmsg *m, DKIM_SIGINFO *si)
{
    for (size_t i = 0; i < m->nsigs; i++)
        if (m->sigs[i].si == si)
            return &m->sigs[i];
    return NULL;
}

static DKIM_CBSTAT key_lookup_cb(DKIM *d, DKIM_SIGINFO *si, unsigned char *buf, size_t buflen)
{
    struct dmsg *m = dkim_get_user_context(d);
    struct dsig *s = m ? sig_of(m, si) : NULL;
    if (!s || !s->qname)
        return DKIM_CBSTAT_NOTFOUND;   /* never DEFAULT: that is blocking DNS */
    const struct as_dns_answer *a = s->ans ? s->ans : as_dns_pinned(m->t, s->qname, AS_DNS_TXT);
    if (!a)
        return DKIM_CBSTAT_TRYAGAIN;
    if (a->status != AS_DNS_OK || a->nrr == 0)
        return DKIM_CBSTAT_NOTFOUND;   /* temporary failures were ignored before */
    const struct as_str *txt = &a->rr[0].d.txt.joined;
    if (txt->len + 1 > buflen) {
        decide(s, AS_DKIM_PERMERROR, "key record longer than libopendkim's buffer");
        return DKIM_CBSTAT_NOTFOUND;
    }
    memcpy(buf, txt->ptr, txt->len);
    buf[txt->len] = 0;
    return DKIM_CBSTAT_CONTINUE;
}

/* ---- prescreen: learn the signatures, cap them, start the key queries - */

static void sig_setup(struct dmsg *m, struct dsig *s, size_t idx)
{
    struct as_pool *p = as_task_pool(m->t);
    struct as_dkim_sig *o = s->out;
    const struct dkim_field *h = idx < m->nhdrs ? m->hdrs[idx] : NULL;
    struct dkim_taglist tl;
    const char *err = NULL;
    int own_ok = 0;
    const char *val = NULL;
    size_t vlen = 0;

    if (h) {
        const char *colon = memchr(h->p, ':', h->n);   /* the screen found it */
        val = colon + 1;
        vlen = h->n - (size_t)(val - h->p);
        own_ok = dkimtag_parse(val, vlen, &tl, &err) == 0;
        if (own_ok) {
            const struct dkim_slice *v;
            if ((v = dkimtag_get(&tl, "d")))
                o->domain = as_pool_strndup(p, v->p, v->n);
            if ((v = dkimtag_get(&tl, "s")))
                o->selector = as_pool_strndup(p, v->p, v->n);
            if ((v = dkimtag_get(&tl, "a")))
                o->algorithm = as_pool_strndup(p, v->p, v->n);
            if ((v = dkimtag_get(&tl, "i")))
                o->identity = as_pool_strndup(p, v->p, v->n);
            if ((v = dkimtag_get(&tl, "b"))) {
                s->b = *v;
                s->raw_b = strip_fws(p, *v);
            }
            if ((v = dkimtag_get(&tl, "bh")))
                s->bh = *v;
            if ((v = dkimtag_get(&tl, "l"))) {
                s->has_l = 1;
                for (size_t i = 0; i < v->n; i++) {
                    unsigned d = (unsigned char)v->p[i] - '0';
                    if (d > 9)
                        continue;   /* libopendkim refuses a bad l= before us */
                    s->l = s->l > (~0ULL - d) / 10 ? ~0ULL : s->l * 10 + d;
                }
            }
        }
    }
    /* What the screen kept from libopendkim (dkim_screen.h) is a
     * permerror with its reason; the fields parsed above describe it. */
    if (h && h->why) {
        decide(s, AS_DKIM_PERMERROR, h->why);
        return;
    }
    if (h && !own_ok) {
        decide(s, AS_DKIM_PERMERROR, as_pool_printf(p, "malformed signature: %s", err));
        return;
    }
    if (!s->si) {
        decide(s, AS_DKIM_PERMERROR, "signature not usable by the verifier");
        return;
    }
    int lerr = dkim_sig_geterror(s->si);
    if (lerr != DKIM_SIGERROR_UNKNOWN && lerr != DKIM_SIGERROR_OK) {
        const char *es = dkim_sig_geterrorstr(lerr);
        decide(s, AS_DKIM_PERMERROR, es ? es : "malformed signature");
        return;
    }
    dkim_alg_t alg;
    if (dkim_sig_getsignalg(s->si, &alg) == DKIM_STAT_OK && alg_name(alg)) {
        o->algorithm = alg_name(alg);
        s->sha1 = alg == DKIM_SIGN_RSASHA1;
        s->keytype = alg == DKIM_SIGN_ED25519SHA256 ? DKIM_KEYTYPE_ED25519 : DKIM_KEYTYPE_RSA;
    } else {
        decide(s, AS_DKIM_PERMERROR, "unknown signature algorithm");
        return;
    }
    if (h && own_ok) {
        const struct dkim_slice *hl = dkimtag_get(&tl, "h");
        if (hl && (long long)dkimtag_list_count(*hl) > m->st->max_hlist) {
            decide(s, AS_DKIM_PERMERROR, "h= lists too many header fields");
            return;
        }
    }
    if (!o->domain || !dkimtag_name_valid(o->domain, strlen(o->domain), 0)) {
        decide(s, AS_DKIM_PERMERROR, "invalid d= domain");
        return;
    }
    const char *dn = as_domain_normalize(p, o->domain, strlen(o->domain));
    if (!dn) {
        decide(s, AS_DKIM_PERMERROR, "invalid d= domain");
        return;
    }
    o->domain = dn;
    if (!o->selector || !dkimtag_name_valid(o->selector, strlen(o->selector), 1)) {
        decide(s, AS_DKIM_PERMERROR, "invalid s= selector");
        return;
    }
    s->qname = as_pool_printf(p, "%s._domainkey.%s", o->selector, o->domain);
    if (!s->qname || strlen(s->qname) > 253) {
        s->qname = NULL;
        decide(s, AS_DKIM_PERMERROR, "key name too long");
        return;
    }
    if (as_dns_query(m->t, s->qname, AS_DNS_TXT, dns_done, s) == 0)
        m->outstanding++;
    else
        decide(s, AS_DKIM_TEMPERROR, "key query could not be started");
}

/* header.b: at least 8 characters (RFC 6008 2), more when another
 * signature of the message starts the same way. */
static void set_b_prefixes(struct dmsg *m)
{
    struct as_pool *p = as_task_pool(m->t);
    for (size_t i = 0; i < m->nsigs; i++) {
        const char *b = m->sigs[i].raw_b;
        if (!b || !*b)
            continue;
        size_t len = strlen(b), n = len < 8 ? len : 8;
        for (size_t j = 0; j < m->nsigs; j++) {
            const char *c = m->sigs[j].raw_b;
            if (j == i || !c || strcmp(b, c) == 0)
                continue;
            while (n < len && strncmp(b, c, n) == 0)
                n++;
        }
        m->sigs[i].out->b_prefix = as_pool_strndup(p, b, n);
    }
}

static int prescreen_cb(DKIM *d, DKIM_SIGINFO **sigs, int nsigs)
{
    struct dmsg *m = dkim_get_user_context(d);
    if (!m || nsigs < 0)
        return DKIM_CBSTAT_CONTINUE;
    struct as_pool *p = as_task_pool(m->t);
    m->prescreened = 1;
    size_t n = (size_t)nsigs;
    /* Signatures are paired with the fields by order: with BADSIGHANDLES
     * libopendkim keeps one handle per signature field it was given, and
     * it was given exactly the fields the screen kept. */
    int paired = n == m->nheld;
    if (!paired) {
        as_task_log(m->t, AS_LOG_WARN, "dkim: %zu signature fields given but %zu library handles",
                    m->nheld, n);
        for (size_t i = 0; i < n; i++)
            dkim_sig_ignore(sigs[i]);
    }
    size_t cnt = m->nhdrs;
    m->sigs = as_pool_alloc(p, (cnt ? cnt : 1) * sizeof *m->sigs);
    m->out = as_pool_alloc(p, (cnt ? cnt : 1) * sizeof *m->out);
    if (!m->sigs || !m->out)
        return DKIM_CBSTAT_CONTINUE;
    m->nsigs = cnt;
    for (size_t i = 0, j = 0; i < cnt; i++) {
        m->sigs[i].m = m;
        m->sigs[i].out = &m->out[i];
        if (!m->hdrs[i]->withhold) {
            m->sigs[i].si = paired ? sigs[j] : NULL;
            j++;
        }
    }
    for (size_t i = 0; i < cnt; i++) {
        sig_setup(m, &m->sigs[i], i);
        if (m->sigs[i].decided && m->sigs[i].si && m->st->library_mode)
            dkim_sig_ignore(m->sigs[i].si);
    }
    set_b_prefixes(m);
    return DKIM_CBSTAT_CONTINUE;
}

/* Cached mode: libopendkim must not process signatures (that would decode
 * the key again); the hashes are final at this point. */
static int final_cb(DKIM *d, DKIM_SIGINFO **sigs, int nsigs)
{
    (void)d;
    for (int i = 0; i < nsigs; i++)
        dkim_sig_ignore(sigs[i]);
    return DKIM_CBSTAT_CONTINUE;
}

/* ---- evaluation ----------------------------------------------------- */

/* Our policy on a signature that verified cryptographically. */
static void apply_policy(struct dmsg *m, struct dsig *s)
{
    const struct dkim_state *st = m->st;
    if (s->has_l && s->si && st->body_length != BL_ACCEPT) {
        if (st->body_length == BL_NEVER) {
            decide(s, AS_DKIM_NEUTRAL, "l= body length limit not accepted");
            return;
        }
        /* cached mode hashed the body itself and counted its whole
         * canonical length; libopendkim reports it only up to l=, so in
         * library mode it is counted here (l= is rare, no hashing). */
        unsigned long long full = s->canon_total, signlen = s->l;
        if (!s->bhashed) {
            ssize_t msglen = -1, canonlen = -1, slen = -1;
            dkim_canon_t hc = DKIM_CANON_SIMPLE, bc = DKIM_CANON_SIMPLE;
            dkim_sig_getcanonlen(m->d, s->si, &msglen, &canonlen, &slen);
            dkim_sig_getcanons(s->si, &hc, &bc);
            full = dkimtag_canon_body_len(m->body, m->body_len, bc == DKIM_CANON_RELAXED);
            signlen = slen >= 0 ? (unsigned long long)slen : ~0ULL;
        }
        if (full > signlen) {
            decide(s, AS_DKIM_NEUTRAL, "unsigned body content after l=");
            return;
        }
    }
    if (s->sha1 && !st->allow_sha1) {
        decide(s, AS_DKIM_POLICY, "rsa-sha1 not accepted (RFC 8301)");
        return;
    }
    if (s->keytype == DKIM_KEYTYPE_RSA && (long long)s->out->key_bits < st->min_bits) {
        decide(s, AS_DKIM_POLICY, "RSA key too small (RFC 8301)");
        return;
    }
    decide(s, AS_DKIM_PASS, NULL);
}

/* 1 when the domain of i= is exactly d= (key flag t=s). */
static int identity_exact(const char *i, const char *d)
{
    const char *at = i ? strrchr(i, '@') : NULL;
    return at && strcasecmp(at + 1, d) == 0;
}

/* Where dkimcanon_body() puts the canonical body: counted whole (for
 * l=), hashed up to l=, through a buffer, since relaxed canonicalization
 * hands over a word at a time and a digest update per word costs more
 * than the hashing. */
struct body_sink {
    EVP_MD_CTX *md;
    unsigned long long left;      /* bytes still to hash (l=) */
    unsigned long long total;     /* the whole canonical length */
    size_t n;
    char buf[8192];
};

static void sink_flush(struct body_sink *k)
{
    if (k->n)
        EVP_DigestUpdate(k->md, k->buf, k->n);
    k->n = 0;
}

static void sink_emit(void *arg, const char *p, size_t n)
{
    struct body_sink *k = arg;
    k->total += n;
    if (n > k->left)
        n = (size_t)k->left;
    k->left -= n;
    if (n == 0)
        return;
    if (k->n + n > sizeof k->buf) {
        sink_flush(k);
        if (n > sizeof k->buf / 2) {
            EVP_DigestUpdate(k->md, p, n);
            return;
        }
    }
    memcpy(k->buf + k->n, p, n);
    k->n += n;
}

/* The body hash of s, computed once per (canonicalization, hash, l=) in
 * the message: dual-signed mail usually hashes the same body twice.
 * libopendkim is never given the body in cached mode: its byte-at-a-time
 * canonicalization cost about as much as the crypto (docs/performance.md,
 * issue 21).  Returns 0, or -1 when the digest could not be made. */
static int body_hash(struct dmsg *m, struct dsig *s)
{
    dkim_canon_t hc = DKIM_CANON_SIMPLE, bc = DKIM_CANON_SIMPLE;
    dkim_sig_getcanons(s->si, &hc, &bc);
    s->relaxed_body = bc == DKIM_CANON_RELAXED;
    unsigned long long limit = s->has_l ? s->l : ~0ULL;
    for (size_t i = 0; i < m->nsigs; i++) {
        const struct dsig *o = &m->sigs[i];
        if (o != s && o->bhashed && o->relaxed_body == s->relaxed_body && o->sha1 == s->sha1 &&
            (o->has_l ? o->l : ~0ULL) == limit) {
            memcpy(s->bhash, o->bhash, o->bhash_len);
            s->bhash_len = o->bhash_len;
            s->canon_total = o->canon_total;
            s->bhashed = 1;
            return 0;
        }
    }
    struct dkim_state *st = m->st;
    struct body_sink k;
    k.md = st->md;
    k.left = limit;
    k.total = 0;
    k.n = 0;
    if (!EVP_DigestInit_ex(st->md, s->sha1 ? st->sha1 : st->sha256, NULL))
        return -1;
    struct as_str body = as_msg_body(as_task_message(m->t));
    dkimcanon_body(body.ptr ? body.ptr : "", body.len, s->relaxed_body, sink_emit, &k);
    sink_flush(&k);
    if (!EVP_DigestFinal_ex(st->md, s->bhash, &s->bhash_len))
        return -1;
    s->canon_total = k.total;
    s->bhashed = 1;
    return 0;
}

static void eval_cached(struct dmsg *m, struct dsig *s)
{
    struct as_pool *p = as_task_pool(m->t);
    int lerr = dkim_sig_geterror(s->si);
    /* l= against the body is ours to judge: libopendkim saw no body */
    if (lerr != DKIM_SIGERROR_UNKNOWN && lerr != DKIM_SIGERROR_OK &&
        lerr != DKIM_SIGERROR_TOOLARGE_L) {
        const char *es = dkim_sig_geterrorstr(lerr);
        decide(s, AS_DKIM_PERMERROR, es ? es : "signature error");
        return;
    }
    const struct dkim_key *k = NULL;
    const char *kerr = "no key record";
    for (size_t i = 0; i < s->ans->nrr; i++) {
        const struct as_str *txt = &s->ans->rr[i].d.txt.joined;
        const struct dkim_key *c = dkimkey_cache_get(m->st->cache, txt->ptr, txt->len);
        if (!c) {
            decide(s, AS_DKIM_TEMPERROR, "out of memory");
            return;
        }
        if (!c->error) {
            k = c;
            break;
        }
        if (i == 0)
            kerr = c->error;
    }
    if (!k) {
        decide(s, AS_DKIM_PERMERROR, kerr);
        return;
    }
    s->out->testing = k->rec.testing;
    if (k->rec.revoked) {
        decide(s, AS_DKIM_PERMERROR, "key revoked");
        return;
    }
    if (k->rec.keytype != s->keytype) {
        decide(s, AS_DKIM_PERMERROR, "key type does not match a=");
        return;
    }
    if (!(k->rec.hashes & (s->sha1 ? DKIM_HASH_SHA1 : DKIM_HASH_SHA256))) {
        decide(s, AS_DKIM_PERMERROR, "key h= excludes the signature's hash");
        return;
    }
    if (k->rec.strict && s->out->identity && !identity_exact(s->out->identity, s->out->domain)) {
        decide(s, AS_DKIM_PERMERROR, "key t=s forbids a subdomain i=");
        return;
    }
    s->out->key_bits = k->bits;
    if (k->rec.keytype == DKIM_KEYTYPE_RSA && (long long)k->bits > m->st->max_bits) {
        decide(s, AS_DKIM_PERMERROR, "RSA key too large");
        return;
    }
    void *hh = NULL, *bh = NULL;
    size_t hhlen = 0, bhlen = 0;
    /* Permanent: whether libopendkim hashed a signature depends on the
     * message only. */
    if (dkim_sig_gethashes(s->si, &hh, &hhlen, &bh, &bhlen) != DKIM_STAT_OK || !hh) {
        decide(s, AS_DKIM_PERMERROR, "hashes not available");
        return;
    }
    if (body_hash(m, s) < 0) {
        decide(s, AS_DKIM_TEMPERROR, "body hash could not be computed");
        return;
    }
    if (s->has_l && s->l > s->canon_total) {
        decide(s, AS_DKIM_FAIL, "l= exceeds the body length");
        return;
    }
    bh = s->bhash;
    bhlen = s->bhash_len;
    unsigned char want_bh[64];
    long wl = dkimtag_base64_decode(s->bh, want_bh, sizeof want_bh);
    if (wl < 0) {
        decide(s, AS_DKIM_PERMERROR, "bad base64 in bh=");
        return;
    }
    if ((size_t)wl != bhlen || memcmp(want_bh, bh, bhlen) != 0) {
        decide(s, AS_DKIM_FAIL, "body hash did not verify");
        return;
    }
    unsigned char *sig = as_pool_alloc(p, s->b.n);
    long sl = sig ? dkimtag_base64_decode(s->b, sig, s->b.n) : -1;
    if (sl <= 0) {
        decide(s, AS_DKIM_PERMERROR, "bad base64 in b=");
        return;
    }
    if (!dkimkey_verify(k, s->sha1, hh, hhlen, sig, (size_t)sl)) {
        decide(s, AS_DKIM_FAIL, "signature did not verify");
        return;
    }
    apply_policy(m, s);
}

static void eval_library(struct dmsg *m, struct dsig *s)
{
    int lerr = dkim_sig_geterror(s->si);
    unsigned flags = dkim_sig_getflags(s->si);
    int bh = dkim_sig_getbh(s->si);
    unsigned int bits = 0;
    if (dkim_sig_getkeysize(s->si, &bits) == DKIM_STAT_OK)
        s->out->key_bits = s->keytype == DKIM_KEYTYPE_ED25519 ? 256 : bits;
    s->out->testing = (flags & DKIM_SIGFLAG_TESTKEY) != 0;
    if (lerr == DKIM_SIGERROR_NOKEY) {
        decide(s, AS_DKIM_PERMERROR, "no key record");
    } else if (lerr == DKIM_SIGERROR_KEYFAIL) {
        /* Our key callback never lets libopendkim query DNS itself, and
         * our own DNS failures were decided before the library ran, so
         * this is the library failing on what we gave it. */
        decide(s, AS_DKIM_PERMERROR, "key lookup failed in libopendkim");
    } else if (lerr == DKIM_SIGERROR_TOOLARGE_L) {
        decide(s, AS_DKIM_FAIL, "l= exceeds the body length");
    } else if (bh == DKIM_SIGBH_MISMATCH) {
        decide(s, AS_DKIM_FAIL, "body hash did not verify");
    } else if (lerr == DKIM_SIGERROR_BADSIG ||
               ((lerr == DKIM_SIGERROR_OK || lerr == DKIM_SIGERROR_UNKNOWN) &&
                (flags & DKIM_SIGFLAG_PROCESSED) && !(flags & DKIM_SIGFLAG_PASSED))) {
        decide(s, AS_DKIM_FAIL, "signature did not verify");
    } else if (lerr != DKIM_SIGERROR_OK && lerr != DKIM_SIGERROR_UNKNOWN) {
        const char *es = dkim_sig_geterrorstr(lerr);
        decide(s, AS_DKIM_PERMERROR, es ? es : "key or signature error");
    } else if ((flags & DKIM_SIGFLAG_PASSED) && bh == DKIM_SIGBH_MATCH) {
        if (s->keytype == DKIM_KEYTYPE_RSA && (long long)bits > m->st->max_bits)
            decide(s, AS_DKIM_PERMERROR, "RSA key too large");
        else
            apply_policy(m, s);
    } else {
        decide(s, AS_DKIM_PERMERROR, "signature not processed");
    }
}

static const char *trace_char(enum as_dkim_res r)
{
    switch (r) {
    case AS_DKIM_PASS: return "+";
    case AS_DKIM_FAIL: return "-";
    case AS_DKIM_TEMPERROR: return "?";
    default: return "~";
    }
}

/* An RFC 8601 pvalue: a token as is, anything else as a quoted-string. */
static const char *pvalue(struct as_pool *p, const char *v)
{
    if (!v || !*v)
        return "\"\"";
    for (const char *c = v; *c; c++) {
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f ||
            strchr("()<>@,;:\\\"/[]?=", *c)) {
            size_t n = strlen(v);
            char *o = as_pool_alloc(p, 2 * n + 3), *q = o;
            if (!o)
                return "\"\"";
            *q++ = '"';
            for (c = v; *c; c++) {
                if (*c == '"' || *c == '\\')
                    *q++ = '\\';
                *q++ = (*c == '\r' || *c == '\n') ? ' ' : *c;
            }
            *q++ = '"';
            *q = 0;
            return o;
        }
    }
    return v;
}

static void publish(struct dmsg *m)
{
    struct as_task *t = m->t;
    struct as_pool *p = as_task_pool(t);
    struct as_dkim_result *r = as_pool_alloc(p, sizeof *r);
    if (!r)
        return;
    r->version = AS_DKIM_RESULT_VERSION;
    r->nsigs = m->nsigs;
    r->sigs = m->out;
    r->nignored = m->nignored;
    size_t nres = m->nsigs ? m->nsigs : 1;
    const char **ar = as_pool_alloc(p, nres * sizeof *ar);
    const char **opts[4];
    size_t nopts[4] = { 0, 0, 0, 0 };
    const char **trace = as_pool_alloc(p, nres * sizeof *trace);
    for (int i = 0; i < 4; i++)
        opts[i] = as_pool_alloc(p, nres * sizeof *opts[i]);
    if (!ar || !trace || !opts[0] || !opts[1] || !opts[2] || !opts[3])
        return;
    static const char *const syms[4] = { "R_DKIM_ALLOW", "R_DKIM_REJECT", "R_DKIM_TEMPFAIL",
                                         "R_DKIM_PERMFAIL" };
    size_t ntrace = 0;
    for (size_t i = 0; i < m->nsigs; i++) {
        const struct as_dkim_sig *o = &m->out[i];
        const char *res = as_dkim_res_name(o->result);
        char *e = as_pool_printf(p, "dkim=%s", res);
        if (o->reason)
            e = as_pool_printf(p, "%s reason=%s", e, pvalue(p, o->reason));
        if (o->domain)
            e = as_pool_printf(p, "%s header.d=%s", e, pvalue(p, o->domain));
        if (o->selector)
            e = as_pool_printf(p, "%s header.s=%s", e, pvalue(p, o->selector));
        if (o->b_prefix)
            e = as_pool_printf(p, "%s header.b=%s", e, pvalue(p, o->b_prefix));
        ar[i] = e;
        /* the same entry for the core's Authentication-Results field */
        struct as_auth_prop props[3];
        size_t np = 0;
        if (o->domain)
            props[np++] = (struct as_auth_prop){ "header.d", o->domain };
        if (o->selector)
            props[np++] = (struct as_auth_prop){ "header.s", o->selector };
        if (o->b_prefix)
            props[np++] = (struct as_auth_prop){ "header.b", o->b_prefix };
        struct as_auth_result entry = { "dkim", res, NULL, o->reason, props, np };
        as_task_add_auth_resultv(t, &entry);
        int k = o->result == AS_DKIM_PASS ? 0 : o->result == AS_DKIM_FAIL ? 1
              : o->result == AS_DKIM_TEMPERROR ? 2 : 3;
        if (o->domain)
            opts[k][nopts[k]++] = o->domain;
        else if (nopts[k] == 0)
            opts[k][nopts[k]++] = "unknown";
        trace[ntrace++] = as_pool_printf(p, "%s:%s", o->domain ? o->domain : "unknown",
                                         trace_char(o->result));
        as_task_log(t, AS_LOG_INFO, "dkim: sig %zu d=%s s=%s a=%s bits=%u: %s%s%s", i,
                    o->domain ? o->domain : "-", o->selector ? o->selector : "-",
                    o->algorithm ? o->algorithm : "-", o->key_bits, res,
                    o->reason ? " - " : "", o->reason ? o->reason : "");
    }
    if (m->nsigs == 0) {
        ar[0] = "dkim=none";
        r->nauth_results = 1;
        as_task_add_auth_result(t, "dkim", "none", NULL, NULL);
    } else {
        r->nauth_results = m->nsigs;
    }
    for (size_t i = 0; i < r->nauth_results; i++)
        as_task_log(t, AS_LOG_DEBUG, "dkim: auth-results: %s", ar[i]);
    r->auth_results = ar;
    as_task_set_result(t, AS_DKIM_RESULT_KEY, r);
    if (m->nsigs == 0) {
        as_task_add_symbol(t, "R_DKIM_NA", 1.0, NULL);
        return;
    }
    for (int k = 0; k < 4; k++)
        if (nopts[k])
            as_task_add_symbolv(t, syms[k], 1.0, opts[k], nopts[k]);
    as_task_add_symbolv(t, "DKIM_TRACE", 1.0, trace, ntrace);
    if (m->nignored)
        as_task_log(t, AS_LOG_INFO, "dkim: %zu signature(s) beyond max_signatures ignored",
                    m->nignored);
}

static void finish(struct dmsg *m)
{
    if (m->finished)
        return;
    m->finished = 1;
    for (size_t i = 0; i < m->nsigs; i++) {
        struct dsig *s = &m->sigs[i];
        if (s->decided)
            continue;
        if (m->lib_error) {
            decide(s, AS_DKIM_PERMERROR, m->lib_error);
            continue;
        }
        if (m->st->library_mode)
            eval_library(m, s);
        else
            eval_cached(m, s);
    }
    publish(m);
}

static void lib_failed(struct dmsg *m, DKIM_STAT st)
{
    const char *e = dkim_geterror(m->d);
    const char *rs = dkim_getresultstr(st);
    m->lib_error = as_pool_printf(as_task_pool(m->t), "verifier error: %s",
                                  e && *e ? e : rs ? rs : "unknown");
    /* Always permanent: libopendkim's whole-message errors depend on the
     * message alone (a 64 KiB signature gives NORESOURCE, a header
     * selection it cannot make INTERNAL), so the same message fails the
     * same way on every retry, and a temperror would let an attacker turn
     * DMARC's fail into temperror (issue 10.2). */
}

/* Body and end of message: libopendkim finalizes the hashes.  In cached
 * mode it gets no body (body_hash() does that part) and finalizes the
 * header hashes only. */
static void feed_body(struct dmsg *m)
{
    const struct as_message *msg = as_task_message(m->t);
    struct as_str body = as_msg_body(msg);
    DKIM_STAT st = DKIM_STAT_OK;
    m->body = body.ptr;
    m->body_len = body.len;
    if (!m->st->library_mode) {
        body.len = 0;
        m->body_len = 0;
    } else if (body.len && !as_msg_crlf(msg)) {
        m->body = crlf_copy(as_task_pool(m->t), body.ptr, body.len, &m->body_len);
        if (!m->body)
            st = DKIM_STAT_NORESOURCE;
    }
    if (st == DKIM_STAT_OK && m->body_len)
        st = dkim_body(m->d, (unsigned char *)m->body, m->body_len);
    if (st != DKIM_STAT_OK) {
        lib_failed(m, st);
        return;
    }
    _Bool testkey = 0;
    st = dkim_eom(m->d, &testkey);
    /* eom's own verdict is about one "final" signature; every signature
     * is judged on its own afterwards.  Only whole-message errors count. */
    if (st == DKIM_STAT_NORESOURCE || st == DKIM_STAT_INTERNAL || st == DKIM_STAT_INVALID)
        lib_failed(m, st);
    m->eom_done = 1;
}

/* Called whenever progress may be possible (after scan() and each answer). */
static void scan_continue(struct dmsg *m)
{
    if (m->finished || m->outstanding > 0)
        return;
    if (m->waiting_eoh && !m->lib_error) {
        /* Library mode: every key is in.  Signatures whose key failed
         * temporarily are out of the library's hands already. */
        m->waiting_eoh = 0;
        DKIM_STAT st = dkim_eoh(m->d);
        if (st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG) {
            lib_failed(m, st);
        }
    }
    if (!m->eom_done && !m->lib_error)
        feed_body(m);
    finish(m);
}

/* Library mode: libopendkim 2.11 does not compare the key's k= with the
 * signature's a= (an RSA key published as k=ed25519 still verifies), so
 * the record is checked with our parser before the library sees it. */
static void library_key_check(struct dsig *s)
{
    struct dkim_keyrec kr;
    const char *err = NULL;
    if (s->ans->nrr == 0)
        return;
    const struct as_str *txt = &s->ans->rr[0].d.txt.joined;
    if (dkimtag_key_parse(txt->ptr, txt->len, &kr, &err) < 0)
        decide(s, AS_DKIM_PERMERROR, err);
    else if (!kr.revoked && kr.keytype != s->keytype)
        decide(s, AS_DKIM_PERMERROR, "key type does not match a=");
}

static void dns_done(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    struct dsig *s = arg;
    struct dmsg *m = s->m;
    s->ans = ans;
    switch (ans->status) {
    case AS_DNS_OK:
        break;
    case AS_DNS_NXDOMAIN:
    case AS_DNS_NODATA:
        decide(s, AS_DKIM_PERMERROR, "no key record");
        break;
    case AS_DNS_BADNAME:
        decide(s, AS_DKIM_PERMERROR, "invalid key name");
        break;
    case AS_DNS_BUDGET:
        /* Never sent: the scan's query budget is our limit and the
         * message's senders can spend it, so it is not a DNS failure. */
        decide(s, AS_DKIM_PERMERROR, "key query over the scan's DNS budget");
        break;
    default:
        decide(s, AS_DKIM_TEMPERROR, as_pool_printf(as_task_pool(t), "key query %s",
                                                   as_dns_status_name(ans->status)));
        break;
    }
    if (!s->decided && m->st->library_mode)
        library_key_check(s);
    /* Library mode: the library must not ask for this key again. */
    if (s->decided && s->si && m->st->library_mode)
        dkim_sig_ignore(s->si);
    m->outstanding--;
    scan_continue(m);
}

/* ---- scan ----------------------------------------------------------- */

static void free_dkim(void *arg)
{
    dkim_free(arg);
}

static void plugin_scan(struct as_task *t, void *state)
{
    struct dkim_state *st = state;
    struct as_pool *p = as_task_pool(t);
    const struct as_message *msg = as_task_message(t);
    struct dmsg *m = as_pool_alloc(p, sizeof *m);
    if (!m || !msg)
        return;
    m->t = t;
    m->st = st;
    /* The fields as libopendkim will see them (CRLF), screened: the
     * library only ever gets the signature fields the screen keeps. */
    int crlf = as_msg_crlf(msg);
    size_t nh = as_msg_header_total(msg);
    struct dkim_field *fields = as_pool_alloc(p, (nh ? nh : 1) * sizeof *fields);
    if (!fields)
        return;
    size_t nf = 0;
    for (size_t i = 0; i < nh; i++) {
        const struct as_header *h = as_msg_header_at(msg, i);
        if (!h)
            continue;
        const char *txt = h->raw.ptr;
        size_t len = h->raw.len;
        if (!crlf && memchr(txt, '\n', len))
            txt = crlf_copy(p, txt, len, &len);
        if (!txt)
            return;
        fields[nf].p = txt;
        fields[nf].n = len;
        nf++;
    }
    dkimscreen_fields(fields, nf, (size_t)st->max_sigs);
    for (size_t i = 0; i < nf; i++) {
        if (!fields[i].is_sig)
            continue;
        if (fields[i].ignored) {
            m->nignored++;
            continue;
        }
        m->nhdrs++;
        m->nheld += !fields[i].withhold;
    }
    if (m->nhdrs) {
        m->hdrs = as_pool_alloc(p, m->nhdrs * sizeof *m->hdrs);
        if (!m->hdrs)
            return;
        for (size_t i = 0, k = 0; i < nf; i++)
            if (fields[i].is_sig && !fields[i].ignored)
                m->hdrs[k++] = &fields[i];
    }
    if (m->nhdrs == 0) {
        /* Nothing to verify: libopendkim has nothing to add. */
        publish(m);
        m->finished = 1;
        return;
    }
    DKIM_STAT dst = DKIM_STAT_OK;
    m->d = dkim_verify(st->lib, (const unsigned char *)as_task_id(t), NULL, &dst);
    if (!m->d) {
        lib_failed(m, dst);
        goto unusable;
    }
    as_pool_on_destroy(p, free_dkim, m->d);
    dkim_set_user_context(m->d, m);
    for (size_t i = 0; i < nf; i++) {
        /* A field libopendkim refuses is simply not hashed: a signature
         * covering it will not verify, which is the right outcome. */
        if (!fields[i].withhold)
            (void)dkim_header(m->d, (unsigned char *)fields[i].p, fields[i].n);
    }
    dst = dkim_eoh(m->d);
    if (dst == DKIM_STAT_CBTRYAGAIN && st->library_mode) {
        m->waiting_eoh = 1;
    } else if (dst != DKIM_STAT_OK && dst != DKIM_STAT_NOSIG) {
        lib_failed(m, dst);
    }
unusable:
    if (!m->prescreened) {
        /* libopendkim produced no handles (or failed before the
         * prescreen): report the fields from our own parse. */
        size_t cnt = m->nhdrs;
        m->sigs = as_pool_alloc(p, cnt * sizeof *m->sigs);
        m->out = as_pool_alloc(p, cnt * sizeof *m->out);
        if (!m->sigs || !m->out)
            return;
        m->nsigs = cnt;
        for (size_t i = 0; i < cnt; i++) {
            m->sigs[i].m = m;
            m->sigs[i].out = &m->out[i];
            sig_setup(m, &m->sigs[i], i);
            if (m->lib_error)
                decide(&m->sigs[i], AS_DKIM_PERMERROR, m->lib_error);
        }
        set_b_prefixes(m);
    }
    /* Cached mode hashes the body now, while the key queries are out. */
    if (!st->library_mode && m->d && !m->lib_error)
        feed_body(m);
    scan_continue(m);
}

/* ---- plugin life ---------------------------------------------------- */

static void plugin_fini(void *state)
{
    struct dkim_state *st = state;
    if (!st)
        return;
    if (st->cache && !st->library_mode) {
        struct dkimkey_cache_stats ks;
        dkimkey_cache_stats(st->cache, &ks);
        as_log(AS_LOG_INFO, "dkim: key cache (shared with arc): %llu lookups, %llu hits, "
               "%llu decodes", ks.lookups, ks.hits, ks.decodes);
    }
    if (st->cache_owned)
        dkimkey_cache_free(st->cache);
    EVP_MD_CTX_free(st->md);
    EVP_MD_free(st->sha1);
    EVP_MD_free(st->sha256);
    if (st->lib)
        dkim_close(st->lib);
    free(st);
}

static int plugin_init(struct as_plugin_ctx *ctx, void **state)
{
    struct dkim_state *st = calloc(1, sizeof *st);
    if (!st) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    st->allow_sha1 = as_plugin_opt_bool(ctx, "allow_sha1");
    long long cache_size;
    if (as_plugin_opt_int_range(ctx, "min_rsa_bits", 0, 16384, &st->min_bits) < 0 ||
        as_plugin_opt_int_range(ctx, "max_rsa_bits", 0, 16384, &st->max_bits) < 0 ||
        as_plugin_opt_int_range(ctx, "max_signatures", 1, 100, &st->max_sigs) < 0 ||
        as_plugin_opt_int_range(ctx, "max_header_list", 1, 100000, &st->max_hlist) < 0 ||
        as_plugin_opt_int_range(ctx, "key_cache_size", 0, 1000000, &cache_size) < 0)
        goto fail;
    if (st->max_bits < st->min_bits) {
        as_plugin_opt_error(ctx, "max_rsa_bits", "smaller than dkim.min_rsa_bits (%lld)",
                            st->min_bits);
        goto fail;
    }
    const char *bl = as_plugin_opt_string(ctx, "body_length");
    const char *vm = as_plugin_opt_string(ctx, "verify");
    if (!bl || strcmp(bl, "complete") == 0) {
        st->body_length = BL_COMPLETE;
    } else if (strcmp(bl, "accept") == 0) {
        st->body_length = BL_ACCEPT;
    } else if (strcmp(bl, "never") == 0) {
        st->body_length = BL_NEVER;
    } else {
        as_plugin_opt_error(ctx, "body_length", "expected accept, complete or never");
        goto fail;
    }
    if (!vm || strcmp(vm, "cached") == 0) {
        st->library_mode = 0;
    } else if (strcmp(vm, "library") == 0) {
        st->library_mode = 1;
    } else {
        as_plugin_opt_error(ctx, "verify", "expected cached or library");
        goto fail;
    }
    /* libopendkim fetches and decodes the keys itself in library mode:
     * a cache size there would be accepted and do nothing. */
    if (st->library_mode && as_plugin_opt_is_set(ctx, "key_cache_size")) {
        as_plugin_opt_error(ctx, "key_cache_size", "has no effect with dkim.verify = library "
                            "(libopendkim keeps no key cache): remove it, or use verify = "
                            "cached");
        goto fail;
    }
    /* One key query per signature we verify: SPF's work (the sender's
     * own records) must not leave a signature of the author unchecked. */
    if (as_plugin_dns_reserve(ctx, (unsigned)st->max_sigs) < 0) {
        as_plugin_set_error(ctx, "dkim: cannot reserve DNS queries");
        goto fail;
    }
    st->lib = dkim_init(NULL, NULL);
    /* library mode verifies with libopendkim's keys: it needs none */
    st->cache = dkimkey_cache_shared(ctx, st->library_mode ? 0 : (size_t)cache_size,
                                     &st->cache_owned);
    if (!st->lib || !st->cache) {
        as_plugin_set_error(ctx, "dkim: cannot initialize libopendkim");
        goto fail;
    }
    /* BADSIGHANDLES: malformed signatures get a handle too, so they are
     * reported and counted against max_signatures (as rspamd does). */
    unsigned int flags = DKIM_LIBFLAGS_BADSIGHANDLES;
    if (!st->library_mode)
        flags |= DKIM_LIBFLAGS_DELAYSIGPROC;
    /* Key size policy is ours (ed25519 exempt, dkim=policy), so the
     * library's own minimum is disabled. */
    unsigned int minbits = 1;
    if (dkim_options(st->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) !=
            DKIM_STAT_OK ||
        dkim_options(st->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof minbits) !=
            DKIM_STAT_OK ||
        dkim_set_prescreen(st->lib, prescreen_cb) != DKIM_STAT_OK ||
        dkim_set_key_lookup(st->lib, key_lookup_cb) != DKIM_STAT_OK ||
        (!st->library_mode && dkim_set_final(st->lib, final_cb) != DKIM_STAT_OK)) {
        as_plugin_set_error(ctx, "dkim: cannot configure libopendkim");
        goto fail;
    }
    if (!st->library_mode) {
        st->md = EVP_MD_CTX_new();
        st->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
        st->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (!st->md || !st->sha1 || !st->sha256) {
            as_plugin_set_error(ctx, "dkim: cannot set up SHA-1/SHA-256 (OpenSSL)");
            goto fail;
        }
    }
    *state = st;
    return 0;
fail:
    plugin_fini(st);
    return -1;
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "dkim",
    .version = "1.0",
    .description = "DKIM (RFC 6376, RFC 8463) with libopendkim over the scan's asynchronous DNS",
    .symbols = plugin_symbols,
    .nsymbols = sizeof plugin_symbols / sizeof plugin_symbols[0],
    .options = plugin_options,
    .noptions = sizeof plugin_options / sizeof plugin_options[0],
    .init = plugin_init,
    .scan = plugin_scan,
    .fini = plugin_fini,
};
