/* Unit tests for plugins/dkim/dkim_keys.c: decoding key records, the
 * decoded-key cache, and verification of a digest (keys made here with
 * OpenSSL, so every signature is fresh). */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "check.h"
#include "dkim_keys.h"

static EVP_PKEY *gen(int type, int bits)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(type, NULL);
    EVP_PKEY *k = NULL;
    if (c && EVP_PKEY_keygen_init(c) == 1 &&
        (type != EVP_PKEY_RSA || EVP_PKEY_CTX_set_rsa_keygen_bits(c, bits) == 1))
        EVP_PKEY_keygen(c, &k);
    EVP_PKEY_CTX_free(c);
    return k;
}

/* "v=DKIM1; k=...; p=<base64>" for the public half of k. */
static void record(EVP_PKEY *k, int spki, char *out, size_t outsz)
{
    unsigned char der[4096], *p = der;
    size_t n = sizeof der;
    int len;
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
        EVP_PKEY_get_raw_public_key(k, der, &n);
        len = (int)n;
    } else if (spki) {
        len = i2d_PUBKEY(k, &p);
    } else {
        len = i2d_PublicKey(k, &p);   /* bare PKCS#1 RSAPublicKey */
    }
    char b64[8192];
    EVP_EncodeBlock((unsigned char *)b64, der, len);
    int w = snprintf(out, outsz, "v=DKIM1; k=%s; p=%s",
                     EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ? "ed25519" : "rsa", b64);
    CHECK(w > 0 && (size_t)w < outsz);   /* the record must fit the test's buffer */
}

static size_t sign_digest(EVP_PKEY *k, const unsigned char *d, size_t dl, int sha1,
                          unsigned char *sig, size_t sigsz)
{
    size_t sl = sigsz;
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        EVP_DigestSignInit(m, NULL, NULL, NULL, k);
        EVP_DigestSign(m, sig, &sl, d, dl);
        EVP_MD_CTX_free(m);
        return sl;
    }
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
    EVP_PKEY_sign_init(c);
    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING);
    EVP_PKEY_CTX_set_signature_md(c, sha1 ? EVP_sha1() : EVP_sha256());
    EVP_PKEY_sign(c, sig, &sl, d, dl);
    EVP_PKEY_CTX_free(c);
    return sl;
}

static void test_verify(void)
{
    EVP_PKEY *rsa = gen(EVP_PKEY_RSA, 2048), *ed = gen(EVP_PKEY_ED25519, 0);
    CHECK(rsa && ed);
    if (!rsa || !ed)
        return;
    struct dkimkey_cache *c = dkimkey_cache_new(16);
    char rec[8192];
    unsigned char dg[32], sig[512];
    for (int i = 0; i < 32; i++)
        dg[i] = (unsigned char)(i * 7 + 1);

    record(rsa, 1, rec, sizeof rec);
    const struct dkim_key *k = dkimkey_cache_get(c, rec, strlen(rec));
    CHECK(k && !k->error);
    CHECK_INT(k->bits, 2048);
    size_t sl = sign_digest(rsa, dg, 32, 0, sig, sizeof sig);
    CHECK_INT(dkimkey_verify(k, 0, dg, 32, sig, sl), 1);
    sig[10] ^= 1;
    CHECK_INT(dkimkey_verify(k, 0, dg, 32, sig, sl), 0);
    sig[10] ^= 1;
    dg[0] ^= 1;
    CHECK_INT(dkimkey_verify(k, 0, dg, 32, sig, sl), 0);
    dg[0] ^= 1;
    CHECK_INT(dkimkey_verify(k, 0, dg, 32, sig, sl - 1), 0);   /* short signature */
    /* rsa-sha1 goes through the one-off context */
    sl = sign_digest(rsa, dg, 20, 1, sig, sizeof sig);
    CHECK_INT(dkimkey_verify(k, 1, dg, 20, sig, sl), 1);
    CHECK_INT(dkimkey_verify(k, 0, dg, 20, sig, sl), 0);

    /* the second lookup of the same text is a hit, returning the same key */
    const struct dkim_key *k2 = dkimkey_cache_get(c, rec, strlen(rec));
    CHECK(k2 == k);
    struct dkimkey_cache_stats st;
    dkimkey_cache_stats(c, &st);
    CHECK_INT(st.lookups, 2);
    CHECK_INT(st.hits, 1);
    CHECK_INT(st.decodes, 1);

    /* bare PKCS#1 RSAPublicKey is accepted (see decode_rsa) */
    record(rsa, 0, rec, sizeof rec);
    k = dkimkey_cache_get(c, rec, strlen(rec));
    CHECK(k && !k->error && k->bits == 2048);

    record(ed, 1, rec, sizeof rec);
    k = dkimkey_cache_get(c, rec, strlen(rec));
    CHECK(k && !k->error);
    CHECK_INT(k->bits, 256);
    sl = sign_digest(ed, dg, 32, 0, sig, sizeof sig);
    CHECK_INT(sl, 64);
    CHECK_INT(dkimkey_verify(k, 0, dg, 32, sig, sl), 1);
    sig[0] ^= 0x80;
    CHECK_INT(dkimkey_verify(k, 0, dg, 32, sig, sl), 0);
    dkimkey_cache_free(c);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
}

static void test_bad_records(void)
{
    struct dkimkey_cache *c = dkimkey_cache_new(4);
    static const struct {
        const char *rec;
        const char *err;
        int revoked;
    } cases[] = {
        { "v=DKIM1; k=rsa; p=", NULL, 1 },
        { "v=DKIM1; k=rsa; p=bm90IGEga2V5", "bad RSA public key", 0 },
        { "v=DKIM1; k=rsa; p=!!!", "bad base64 in p=", 0 },
        { "v=DKIM1; k=ed25519; p=AAAA", "ed25519 key is not 32 bytes", 0 },
        { "v=DKIM1; k=foo; p=AAAA", "unknown key type", 0 },
        /* an ed25519 SPKI published as k=rsa: decodes, but is not RSA */
        { "v=DKIM1; k=rsa; p=MCowBQYDK2VwAyEA8EXQo7Pdox7frzkAQi9gnze1veAyxuFfAjNwfn/iOYI=",
          "bad RSA public key", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct dkim_key *k = dkimkey_cache_get(c, cases[i].rec, strlen(cases[i].rec));
        CHECK(k != NULL);
        if (!k)
            continue;
        CHECK_STR(k->error, cases[i].err);
        CHECK_INT(k->rec.revoked, cases[i].revoked);
        CHECK(k->pkey == NULL);
        unsigned char d[32] = { 0 }, s[64] = { 0 };
        CHECK_INT(dkimkey_verify(k, 0, d, 32, s, 64), 0);
    }
    /* over-long text is refused without parsing */
    static char huge[20000];
    memset(huge, 'A', sizeof huge - 1);
    memcpy(huge, "p=", 2);
    const struct dkim_key *k = dkimkey_cache_get(c, huge, strlen(huge));
    CHECK(k && k->error && strcmp(k->error, "key record too long") == 0);
    dkimkey_cache_free(c);
}

static void test_cache_modes(void)
{
    /* one slot: two keys evict each other; each lookup still correct */
    struct dkimkey_cache *c = dkimkey_cache_new(1);
    const char *a = "v=DKIM1; p=", *b = "v=DKIM1; k=ed25519; p=";
    for (int i = 0; i < 3; i++) {
        const struct dkim_key *k = dkimkey_cache_get(c, a, strlen(a));
        CHECK(k && k->rec.keytype == DKIM_KEYTYPE_RSA);
        k = dkimkey_cache_get(c, b, strlen(b));
        CHECK(k && k->rec.keytype == DKIM_KEYTYPE_ED25519);
    }
    struct dkimkey_cache_stats st;
    dkimkey_cache_stats(c, &st);
    CHECK_INT(st.decodes, 6);
    dkimkey_cache_free(c);
    /* disabled cache: every lookup decodes */
    c = dkimkey_cache_new(0);
    for (int i = 0; i < 3; i++)
        CHECK(dkimkey_cache_get(c, a, strlen(a)) != NULL);
    dkimkey_cache_stats(c, &st);
    CHECK_INT(st.decodes, 3);
    CHECK_INT(st.hits, 0);
    dkimkey_cache_free(c);
}

int main(void)
{
    test_verify();
    test_bad_records();
    test_cache_modes();
    return check_done();
}
