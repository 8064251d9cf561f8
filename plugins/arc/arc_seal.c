/*
 * arc_seal.c - making an ARC set (see arc_seal.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "arc_seal.h"

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static char *b64(const unsigned char *p, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o)
        EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

/* "name: value" as a field, for the digests. */
static char *field_text(const char *name, const char *value, struct arc_field *f)
{
    char *raw = xprintf("%s: %s", name, value);
    if (raw)
        *f = (struct arc_field){ raw, strlen(raw), raw + strlen(name) + 1,
                                 strlen(raw) - strlen(name) - 1 };
    return raw;
}

/* value + base64 of the signature over digest. */
static char *signed_value(const char *value, void *pkey, const unsigned char *digest)
{
    unsigned char sig[1024];
    size_t sl = sizeof sig;
    if (arc_sign_digest(pkey, digest, ARC_DIGEST_LEN, sig, &sl) < 0)
        return NULL;
    char *b = b64(sig, sl);
    char *v = b ? xprintf("%s%s", value, b) : NULL;
    free(b);
    return v;
}

/* The h= list: each configured name once per field of that name. */
static char *hlist(const struct arc_seal_in *in)
{
    size_t cap = 1;
    for (size_t i = 0; i < in->nsign; i++)
        cap += (strlen(in->sign_headers[i]) + 1) * (in->nh + 1);
    char *o = malloc(cap), *q = o;
    if (!o)
        return NULL;
    *q = 0;
    for (size_t i = 0; i < in->nsign; i++) {
        const char *name = in->sign_headers[i];
        size_t nl = strlen(name);
        for (size_t k = 0; k < in->nh; k++) {
            if (in->hf[k].namelen != nl || strncasecmp(in->hf[k].name, name, nl) != 0)
                continue;
            if (q != o)
                *q++ = ':';
            for (size_t c = 0; c < nl; c++)
                *q++ = (name[c] >= 'A' && name[c] <= 'Z') ? (char)(name[c] - 'A' + 'a') : name[c];
            *q = 0;
        }
    }
    return o;
}

int arc_seal_make(const struct arc_seal_in *in, struct arc_seal_out *out, const char **err)
{
    memset(out, 0, sizeof *out);
    const char *alg = EVP_PKEY_get_base_id(in->pkey) == EVP_PKEY_ED25519 ? "ed25519-sha256"
                                                                         : "rsa-sha256";
    const char *cv = as_arc_cv_name(in->cv);
    char *h = NULL, *bh = NULL, *ams0 = NULL, *as0 = NULL, *raw[3] = { NULL, NULL, NULL };
    struct arc_field f[3];
    unsigned char d[ARC_DIGEST_LEN];
    *err = "out of memory";
    if (in->instance < 1 || in->instance > AS_ARC_MAX_SETS) {
        *err = "no instance left (50 sets)";
        return -1;
    }
    if (in->cv != AS_ARC_NONE && in->cv != AS_ARC_PASS && in->cv != AS_ARC_FAIL) {
        *err = "the chain has no cv= value to seal";
        return -1;
    }
    out->aar = xprintf("i=%u; %s", in->instance, in->aar);
    if (!out->aar || !(h = hlist(in)))
        goto fail;
    if (arc_body_hash(in->body, in->body_len, 1, d) < 0 || !(bh = b64(d, sizeof d)))
        goto fail;
    ams0 = xprintf("i=%u; a=%s; c=relaxed/relaxed; d=%s; s=%s; t=%lld; h=%s; bh=%s; b=",
                   in->instance, alg, in->domain, in->selector, in->timestamp, h, bh);
    if (!ams0 || !(raw[1] = field_text("ARC-Message-Signature", ams0, &f[1])))
        goto fail;
    struct dkim_slice hs = { h, strlen(h) }, nob = { f[1].raw + f[1].rawlen, 0 };
    if (arc_ams_hash(in->hf, in->nh, hs, 1, &f[1], nob, d, err) < 0)
        goto fail;
    *err = "signing failed";
    if (!(out->ams = signed_value(ams0, in->pkey, d)))
        goto fail;
    *err = "out of memory";
    as0 = xprintf("i=%u; a=%s; cv=%s; d=%s; s=%s; t=%lld; b=", in->instance, alg, cv,
                  in->domain, in->selector, in->timestamp);
    free(raw[1]);
    raw[1] = NULL;
    if (!as0 || !(raw[0] = field_text("ARC-Authentication-Results", out->aar, &f[0])) ||
        !(raw[1] = field_text("ARC-Message-Signature", out->ams, &f[1])) ||
        !(raw[2] = field_text("ARC-Seal", as0, &f[2])))
        goto fail;
    struct dkim_slice nob2 = { f[2].raw + f[2].rawlen, 0 };
    const struct arc_chain *prior = in->cv == AS_ARC_PASS ? in->chain : NULL;
    if (in->cv == AS_ARC_PASS && (!prior || prior->n + 1 != in->instance)) {
        *err = "the chain does not end before this instance";
        goto fail;
    }
    if (arc_seal_hash(prior, in->instance, &f[0], &f[1], &f[2], nob2, d) < 0)
        goto fail;
    *err = "signing failed";
    if (!(out->as = signed_value(as0, in->pkey, d)))
        goto fail;
    *err = NULL;
    free(h);
    free(bh);
    free(ams0);
    free(as0);
    for (int k = 0; k < 3; k++)
        free(raw[k]);
    return 0;
fail:
    free(h);
    free(bh);
    free(ams0);
    free(as0);
    for (int k = 0; k < 3; k++)
        free(raw[k]);
    arc_seal_free(out);
    return -1;
}

void arc_seal_free(struct arc_seal_out *out)
{
    free(out->aar);
    free(out->ams);
    free(out->as);
    memset(out, 0, sizeof *out);
}
