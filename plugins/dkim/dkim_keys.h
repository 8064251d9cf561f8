/*
 * dkim_keys.h - decoded public keys, cached by key record text, and the
 * signature check on a digest libopendkim computed.
 *
 * Why: libopendkim decodes the key record and the DER public key with
 * OpenSSL 3 for every message, and OpenSSL 3's decoder framework makes
 * that about half of all the instructions of a verification (see
 * docs/performance.md).  Keys change rarely, so a worker keeps the
 * decoded EVP_PKEY (and, for RSA, a verify context ready for SHA-256)
 * keyed by the exact TXT text: a changed record is simply a different key,
 * so no TTL is needed; DNS caching stays the resolver's business.
 *
 * The cache is direct-mapped (slot = hash of the text): bounded memory, no
 * eviction bookkeeping; a colliding key just replaces the slot.  An entry
 * returned by dkimkey_cache_get() stays valid until the next call.
 */
#ifndef DKIM_KEYS_H
#define DKIM_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "dkim_tags.h"

struct dkim_key {
    const char *error;        /* why the record is unusable; NULL if usable */
    struct dkim_keyrec rec;   /* parsed tags; rec.p points into `text` */
    unsigned bits;            /* RSA modulus size; 256 for ed25519 */
    void *pkey;               /* EVP_PKEY *, NULL when error or revoked */
    void *rsa_sha256;         /* EVP_PKEY_CTX * ready to verify SHA-256 */
    char *text;               /* the record (owned) */
    size_t len;
    uint64_t hash;
};

struct dkimkey_cache;

/* slots == 0 disables caching: every lookup decodes afresh (what
 * libopendkim does; kept for measurement and as a kill switch). */
struct dkimkey_cache *dkimkey_cache_new(size_t slots);
void dkimkey_cache_free(struct dkimkey_cache *c);

/* The decoded key for this record text: from the cache, or parsed and
 * decoded now.  NULL only when out of memory. */
const struct dkim_key *dkimkey_cache_get(struct dkimkey_cache *c, const char *text, size_t len);

/* Grows a caching cache to at least `slots` (never shrinks; a cache made
 * with 0 stays uncached).  Returns 0, or -1 when out of memory (the cache
 * is unchanged). */
int dkimkey_cache_reserve(struct dkimkey_cache *c, size_t slots);

struct dkimkey_cache_stats {
    unsigned long long lookups, hits, decodes;
};
void dkimkey_cache_stats(const struct dkimkey_cache *c, struct dkimkey_cache_stats *out);

/* Verifies sig over the header digest (SHA-1 when sha1, else SHA-256).
 * RSA: PKCS#1 v1.5 over the digest.  ed25519 (RFC 8463): pure Ed25519 over
 * the 32-byte SHA-256 digest.  Returns 1 good, 0 bad. */
int dkimkey_verify(const struct dkim_key *k, int sha1, const unsigned char *digest,
                    size_t dlen, const unsigned char *sig, size_t siglen);

#ifdef AUTHSCAN_PLUGIN_H
/* For a plugin's init(): the worker's one cache of decoded keys, shared by
 * every plugin that verifies DKIM-style signatures (dkim, arc), so that a
 * key both use is decoded and kept once; at least `slots` big (each
 * plugin's key_cache_size; the largest wins).  slots == 0 (the kill
 * switch) gives the plugin a private uncached one instead, which it frees
 * itself (*owned = 1).  NULL when out of memory. */
static inline void *dkimkey_cache_make_(void *arg)
{
    (void)arg;
    return dkimkey_cache_new(1);
}

static inline void dkimkey_cache_drop_(void *obj)
{
    dkimkey_cache_free(obj);
}

static inline struct dkimkey_cache *dkimkey_cache_shared(struct as_plugin_ctx *ctx, size_t slots,
                                                         int *owned)
{
    *owned = slots == 0;
    if (slots == 0)
        return dkimkey_cache_new(0);
    struct dkimkey_cache *c = as_plugin_shared(ctx, "dkim.key_cache.1", dkimkey_cache_make_,
                                               dkimkey_cache_drop_, NULL);
    return c && dkimkey_cache_reserve(c, slots) == 0 ? c : NULL;
}
#endif

#endif
