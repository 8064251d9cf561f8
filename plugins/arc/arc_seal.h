/*
 * arc_seal.h - making an ARC set (RFC 8617 5.1): the
 * ARC-Authentication-Results, ARC-Message-Signature and ARC-Seal a
 * forwarder adds to a message it passes on.
 *
 * The signatures use arc_crypto.h's digests (the same code verification
 * runs) and arc_sign_digest().  Values are single lines (no folding): what
 * the MTA inserts is exactly what was hashed, whatever it does with
 * continuation lines.
 */
#ifndef ARC_SEAL_H
#define ARC_SEAL_H

#include <stddef.h>

#include "arc_crypto.h"

struct arc_seal_in {
    unsigned instance;            /* the new set's i= (1..50) */
    enum as_arc_cv cv;            /* the chain as we found it: none, pass or fail */
    const struct arc_chain *chain;/* the sets before (cv pass), else NULL */
    const char *domain, *selector;
    long long timestamp;          /* t= */
    void *pkey;                   /* EVP_PKEY *: RSA or Ed25519 */
    const char *aar;              /* the AAR value after "i=N; ": "authserv-id; resinfo..." */
    const struct arc_hfield *hf;  /* the message's header fields */
    size_t nh;
    const char *const *sign_headers;  /* field names for AMS h= (those present are signed) */
    size_t nsign;
    const char *body;
    size_t body_len;
};

/* The three field values (without names), malloc()ed: free with
 * arc_seal_free(). */
struct arc_seal_out {
    char *aar, *ams, *as;
};

/* Returns 0, or -1 with *err set. */
int arc_seal_make(const struct arc_seal_in *in, struct arc_seal_out *out, const char **err);
void arc_seal_free(struct arc_seal_out *out);

#endif
