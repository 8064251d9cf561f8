/*
 * dkim_keys.c - the decoded-key cache and digest verification (see
 * dkim_keys.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "dkim_keys.h"

/* A TXT record is at most 64 KiB on the wire; real keys are < 2 KiB, and
 * an RSA-16384 record fits in 3 KiB.  Longer text is refused unparsed. */
#define KEY_TEXT_MAX 16384
#define KEY_DER_MAX (KEY_TEXT_MAX * 3 / 4 + 4)

struct dkimkey_cache {
    size_t nslots;
    struct dkim_key **slots;
    struct dkim_key *scratch;       /* the uncached entry when nslots == 0 */
    struct dkimkey_cache_stats st;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void key_free(struct dkim_key *k)
{
    if (!k)
        return;
    EVP_PKEY_CTX_free(k->rsa_sha256);
    EVP_PKEY_free(k->pkey);
    free(k->text);
    free(k);
}

struct dkimkey_cache *dkimkey_cache_new(size_t slots)
{
    struct dkimkey_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->nslots = slots;
    if (slots) {
        c->slots = calloc(slots, sizeof *c->slots);
        if (!c->slots) {
            free(c);
            return NULL;
        }
    }
    return c;
}

int dkimkey_cache_reserve(struct dkimkey_cache *c, size_t slots)
{
    if (slots <= c->nslots || c->nslots == 0)
        return 0;
    struct dkim_key **ns = calloc(slots, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < c->nslots; i++) {
        struct dkim_key *k = c->slots[i];
        if (!k)
            continue;
        struct dkim_key **to = &ns[k->hash % slots];
        key_free(*to);        /* direct-mapped: a collision keeps one */
        *to = k;
    }
    free(c->slots);
    c->slots = ns;
    c->nslots = slots;
    return 0;
}

void dkimkey_cache_free(struct dkimkey_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nslots; i++)
        key_free(c->slots[i]);
    key_free(c->scratch);
    free(c->slots);
    free(c);
}

static EVP_PKEY *decode_rsa(const unsigned char *der, size_t n)
{
    const unsigned char *q = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &q, (long)n);
    if (pk && q != der + n) {       /* trailing garbage */
        EVP_PKEY_free(pk);
        return NULL;
    }
    if (!pk) {
        /* A bare PKCS#1 RSAPublicKey instead of SubjectPublicKeyInfo:
         * RFC 6376 3.6.1 does not allow it, but dkimpy, go-msgauth and
         * rspamd accept it and such records are published. */
        q = der;
        pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)n);
        if (pk && q != der + n) {
            EVP_PKEY_free(pk);
            return NULL;
        }
    }
    if (pk && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
        EVP_PKEY_free(pk);
        return NULL;
    }
    return pk;
}

/* Fills k (whose text is set) from the record. */
static void key_decode(struct dkim_key *k)
{
    const char *err = NULL;
    if (k->len > KEY_TEXT_MAX) {
        k->error = "key record too long";
        return;
    }
    if (dkimtag_key_parse(k->text, k->len, &k->rec, &err) < 0) {
        k->error = err;
        return;
    }
    if (k->rec.revoked)
        return;
    unsigned char *der = malloc(KEY_DER_MAX);
    if (!der) {
        k->error = "out of memory";
        return;
    }
    long n = dkimtag_base64_decode(k->rec.p, der, KEY_DER_MAX);
    if (n <= 0) {
        k->error = "bad base64 in p=";
    } else if (k->rec.keytype == DKIM_KEYTYPE_ED25519) {
        /* RFC 8463 3: the raw 32-byte public key, not DER. */
        if (n != 32)
            k->error = "ed25519 key is not 32 bytes";
        else if (!(k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, 32)))
            k->error = "bad ed25519 key";
        else
            k->bits = 256;
    } else {
        EVP_PKEY *pk = decode_rsa(der, (size_t)n);
        if (!pk) {
            k->error = "bad RSA public key";
        } else {
            k->pkey = pk;
            k->bits = (unsigned)EVP_PKEY_get_bits(pk);
            EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
            if (ctx && EVP_PKEY_verify_init(ctx) == 1 &&
                EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
                EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1) {
                k->rsa_sha256 = ctx;
            } else {
                EVP_PKEY_CTX_free(ctx);   /* verified without it later */
            }
        }
    }
    free(der);
}

static struct dkim_key *key_new(const char *text, size_t len, uint64_t hash)
{
    struct dkim_key *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->text = malloc(len + 1);
    if (!k->text) {
        free(k);
        return NULL;
    }
    memcpy(k->text, text, len);
    k->text[len] = 0;
    k->len = len;
    k->hash = hash;
    key_decode(k);
    return k;
}

const struct dkim_key *dkimkey_cache_get(struct dkimkey_cache *c, const char *text, size_t len)
{
    uint64_t h = fnv1a(text, len);
    c->st.lookups++;
    if (c->nslots == 0) {
        key_free(c->scratch);
        c->scratch = key_new(text, len, h);
        if (c->scratch)
            c->st.decodes++;
        return c->scratch;
    }
    struct dkim_key **slot = &c->slots[h % c->nslots];
    struct dkim_key *k = *slot;
    if (k && k->hash == h && k->len == len && memcmp(k->text, text, len) == 0) {
        c->st.hits++;
        return k;
    }
    struct dkim_key *nk = key_new(text, len, h);
    if (!nk)
        return NULL;
    c->st.decodes++;
    key_free(k);
    *slot = nk;
    return nk;
}

void dkimkey_cache_stats(const struct dkimkey_cache *c, struct dkimkey_cache_stats *out)
{
    *out = c->st;
}

int dkimkey_verify(const struct dkim_key *k, int sha1, const unsigned char *digest,
                    size_t dlen, const unsigned char *sig, size_t siglen)
{
    if (!k->pkey)
        return 0;
    if (k->rec.keytype == DKIM_KEYTYPE_ED25519) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        int ok = m && EVP_DigestVerifyInit(m, NULL, NULL, NULL, k->pkey) == 1 &&
                 EVP_DigestVerify(m, sig, siglen, digest, dlen) == 1;
        EVP_MD_CTX_free(m);
        return ok;
    }
    if (!sha1 && k->rsa_sha256)
        return EVP_PKEY_verify(k->rsa_sha256, sig, siglen, digest, dlen) == 1;
    /* rsa-sha1 (when policy allows it) or no prepared context: one-off. */
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pkey, NULL);
    int ok = ctx && EVP_PKEY_verify_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(ctx, sha1 ? EVP_sha1() : EVP_sha256()) == 1 &&
             EVP_PKEY_verify(ctx, sig, siglen, digest, dlen) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}
