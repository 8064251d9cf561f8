/*
 * arc_crypto.c - digests of ARC signatures (see arc_crypto.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "arc_crypto.h"
#include "dkim_canon.h"

static void md_emit(void *arg, const char *p, size_t n)
{
    EVP_DigestUpdate(arg, p, n);
}

/* Canonicalizes one field into the digest; scratch grows as needed. */
static int hash_field(EVP_MD_CTX *md, const char *raw, size_t n, int relaxed, int last,
                      char **scratch, size_t *cap)
{
    size_t need = DKIMCANON_HEADER_MAX(n);
    if (need > *cap) {
        char *s = realloc(*scratch, need);
        if (!s)
            return -1;
        *scratch = s;
        *cap = need;
    }
    size_t k = dkimcanon_header(raw, n, relaxed, last, *scratch);
    return EVP_DigestUpdate(md, *scratch, k) == 1 ? 0 : -1;
}

/* A field with its b= value removed, then canonicalized as the last one. */
static int hash_sig_field(EVP_MD_CTX *md, const struct arc_field *f, struct dkim_slice b,
                          int relaxed, char **scratch, size_t *cap)
{
    char *copy = malloc(f->rawlen ? f->rawlen : 1);
    if (!copy)
        return -1;
    size_t n = dkimcanon_strip_b(f->raw, f->rawlen, b, copy);
    int rc = hash_field(md, copy, n, relaxed, 1, scratch, cap);
    free(copy);
    return rc;
}

static int hlist_next(struct dkim_slice h, size_t *pos, struct dkim_slice *item)
{
    size_t i = *pos;
    if (!h.p || i > h.n)
        return 0;
    size_t e = i;
    while (e < h.n && h.p[e] != ':')
        e++;
    size_t s = i;
    while (s < e && (h.p[s] == ' ' || h.p[s] == '\t' || h.p[s] == '\r' || h.p[s] == '\n'))
        s++;
    size_t t = e;
    while (t > s && (h.p[t - 1] == ' ' || h.p[t - 1] == '\t' || h.p[t - 1] == '\r' ||
                     h.p[t - 1] == '\n'))
        t--;
    item->p = h.p + s;
    item->n = t - s;
    *pos = e + 1;
    return 1;
}

int arc_ams_hash(const struct arc_hfield *hf, size_t nh, struct dkim_slice hlist, int relaxed,
                 const struct arc_field *ams, struct dkim_slice ams_b,
                 unsigned char out[ARC_DIGEST_LEN], const char **err)
{
    if (dkimtag_list_count(hlist) > ARC_HLIST_MAX) {
        *err = "h= lists too many header fields";
        return -1;
    }
    unsigned char *used = calloc(nh ? nh : 1, 1);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char *scratch = NULL;
    size_t cap = 0;
    int rc = -1;
    *err = "out of memory";
    if (!used || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto out;
    size_t pos = 0;
    struct dkim_slice item;
    while (hlist_next(hlist, &pos, &item)) {
        if (item.n == 0)
            continue;
        for (size_t k = nh; k-- > 0;) {
            if (used[k] || hf[k].namelen != item.n ||
                strncasecmp(hf[k].name, item.p, item.n) != 0)
                continue;
            used[k] = 1;
            if (hash_field(md, hf[k].raw, hf[k].n, relaxed, 0, &scratch, &cap) < 0)
                goto out;
            break;
        }
    }
    if (hash_sig_field(md, ams, ams_b, relaxed, &scratch, &cap) < 0)
        goto out;
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(md, out, &len) != 1 || len != ARC_DIGEST_LEN)
        goto out;
    rc = 0;
    *err = NULL;
out:
    free(used);
    free(scratch);
    EVP_MD_CTX_free(md);
    return rc;
}

int arc_seal_hash(const struct arc_chain *c, unsigned i, const struct arc_field *aar_i,
                  const struct arc_field *ams_i, const struct arc_field *as_i,
                  struct dkim_slice as_b, unsigned char out[ARC_DIGEST_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char *scratch = NULL;
    size_t cap = 0;
    int rc = -1;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto out;
    for (unsigned j = 1; c && j < i; j++)
        for (int k = 0; k < ARC_NKINDS; k++)
            if (hash_field(md, c->set[j - 1][k]->raw, c->set[j - 1][k]->rawlen, 1, 0, &scratch,
                           &cap) < 0)
                goto out;
    if (hash_field(md, aar_i->raw, aar_i->rawlen, 1, 0, &scratch, &cap) < 0 ||
        hash_field(md, ams_i->raw, ams_i->rawlen, 1, 0, &scratch, &cap) < 0 ||
        hash_sig_field(md, as_i, as_b, 1, &scratch, &cap) < 0)
        goto out;
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(md, out, &len) != 1 || len != ARC_DIGEST_LEN)
        goto out;
    rc = 0;
out:
    free(scratch);
    EVP_MD_CTX_free(md);
    return rc;
}

int arc_body_hash(const char *body, size_t n, int relaxed, unsigned char out[ARC_DIGEST_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    if (ok)
        dkimcanon_body(body, n, relaxed, md_emit, md);
    ok = ok && EVP_DigestFinal_ex(md, out, &len) == 1 && len == ARC_DIGEST_LEN;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

static int canon_word(const char *p, size_t n, int *relaxed)
{
    if (n == 6 && strncasecmp(p, "simple", 6) == 0)
        *relaxed = 0;
    else if (n == 7 && strncasecmp(p, "relaxed", 7) == 0)
        *relaxed = 1;
    else
        return -1;
    return 0;
}

int arc_canon_parse(const struct dkim_slice *c, int *hdr_relaxed, int *body_relaxed)
{
    *hdr_relaxed = *body_relaxed = 1;
    if (!c)
        return 0;
    const char *slash = memchr(c->p, '/', c->n);
    if (!slash) {
        *body_relaxed = 0;   /* RFC 6376 3.5: a lone algorithm is the header's; body simple */
        return canon_word(c->p, c->n, hdr_relaxed);
    }
    size_t hn = (size_t)(slash - c->p);
    if (canon_word(c->p, hn, hdr_relaxed) < 0 ||
        canon_word(slash + 1, c->n - hn - 1, body_relaxed) < 0)
        return -1;
    return 0;
}

int arc_sign_digest(void *pkey, const unsigned char *digest, size_t dlen, unsigned char *sig,
                    size_t *siglen)
{
    EVP_PKEY *pk = pkey;
    int ok = 0;
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        ok = m && EVP_DigestSignInit(m, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestSign(m, sig, siglen, digest, dlen) == 1;
        EVP_MD_CTX_free(m);
    } else {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = ctx && EVP_PKEY_sign_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
             EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) == 1;
        EVP_PKEY_CTX_free(ctx);
    }
    return ok ? 0 : -1;
}
