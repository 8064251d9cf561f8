/*
 * arc_crypto.h - the digests ARC signs (RFC 8617 5.1): the header hash of
 * an ARC-Message-Signature (DKIM's header selection and canonicalization,
 * RFC 6376 3.7), the hash of an ARC-Seal over the sets 1..i, and the body
 * hash.  Canonicalization is dkim_canon.h's; the signature check on the
 * digest is dkimkey_verify() (dkim_keys.h), shared with the DKIM plugin,
 * and arc_sign_digest() below is its signing counterpart for sealing.
 * Always SHA-256: RFC 8617 allows no other hash.
 */
#ifndef ARC_CRYPTO_H
#define ARC_CRYPTO_H

#include <stddef.h>

#include "arc_parse.h"
#include "dkim_tags.h"

#define ARC_DIGEST_LEN 32
/* h= entries of an AMS we follow; more makes the AMS a permerror. */
#define ARC_HLIST_MAX 256

/* A header field of the message, for h= selection. */
struct arc_hfield {
    const char *raw;          /* "Name: value", folding kept */
    size_t n;
    const char *name;         /* the name as written */
    size_t namelen;
};

/* The AMS header hash: the fields h= names, each taken from the bottom up
 * (RFC 6376 5.4.2; a name listed more often than present adds nothing),
 * then the AMS field itself with b= emptied and without its CRLF.
 * Returns 0, or -1 with *err (h= too long, out of memory). */
int arc_ams_hash(const struct arc_hfield *hf, size_t nh, struct dkim_slice hlist, int relaxed,
                 const struct arc_field *ams, struct dkim_slice ams_b,
                 unsigned char out[ARC_DIGEST_LEN], const char **err);

/* The hash an ARC-Seal i signs: for j = 1..i the AAR, AMS and AS of set j,
 * relaxed, the last one (AS i) with b= emptied and without its CRLF.  The
 * fields of set i come from the arguments (so a seal being made can be
 * hashed before it is in the chain).  c == NULL hashes set i alone (a
 * cv=fail seal, RFC 8617 5.1.2).  Returns 0 or -1 (out of memory). */
int arc_seal_hash(const struct arc_chain *c, unsigned i, const struct arc_field *aar_i,
                  const struct arc_field *ams_i, const struct arc_field *as_i,
                  struct dkim_slice as_b, unsigned char out[ARC_DIGEST_LEN]);

/* SHA-256 of the canonical body. */
int arc_body_hash(const char *body, size_t n, int relaxed, unsigned char out[ARC_DIGEST_LEN]);

/* c= of an AMS: "relaxed/relaxed" (the default when absent), "simple",
 * "relaxed/simple" ...  Returns 0 with the two modes, -1 if unknown. */
int arc_canon_parse(const struct dkim_slice *c, int *hdr_relaxed, int *body_relaxed);

/* Signs a SHA-256 digest with a private key (EVP_PKEY *): RSA PKCS#1 v1.5
 * or pure Ed25519 over the digest (RFC 8463), the inverse of
 * dkimkey_verify().  Writes at most *siglen bytes; returns 0 or -1. */
int arc_sign_digest(void *pkey, const unsigned char *digest, size_t dlen, unsigned char *sig,
                    size_t *siglen);

#endif
