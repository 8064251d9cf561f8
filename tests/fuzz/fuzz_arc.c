/*
 * fuzz_arc.c - libFuzzer target for the ARC header parsers and digests.
 *
 * The input is a message header block (fields, folding, LF or CRLF; the
 * body after the first empty line).  Every field goes through
 * arc_field_kind(); the ARC ones through arc_chain_build() (instances,
 * tag-lists, cv= rules), each ARC-Authentication-Results through
 * arc_aar_parse(), and, when the chain is well formed, every AMS header
 * hash (h= selection over all fields, canonicalization, b= removal), every
 * seal hash and both body hashes: all the code the plugin runs on a
 * message before a key is involved.
 *
 * Build: cmake -DAUTHSCAN_FUZZ=ON -DCMAKE_C_COMPILER=clang ... (target
 * fuzz_arc), or by hand:
 *   clang -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined \
 *     -Iplugins/arc -Iplugins/arc/include -Iplugins/dkim -Icore/include \
 *     tests/fuzz/fuzz_arc.c plugins/arc/arc_parse.c plugins/arc/arc_crypto.c \
 *     plugins/dkim/dkim_tags.c plugins/dkim/dkim_canon.c -lcrypto
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arc_crypto.h"
#include "arc_parse.h"

#define MAX_FIELDS 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    static struct arc_hfield hf[MAX_FIELDS];
    static struct arc_field af[MAX_FIELDS];
    static int kinds[MAX_FIELDS];
    size_t nh = 0, na = 0, i = 0;
    /* split into fields: a line starting with WSP continues the field */
    while (i < size && nh < MAX_FIELDS) {
        if (s[i] == '\n' || (s[i] == '\r' && i + 1 < size && s[i + 1] == '\n'))
            break;           /* the empty line: the body follows */
        size_t st = i;
        for (;;) {
            const char *nl = memchr(s + i, '\n', size - i);
            i = nl ? (size_t)(nl - s) + 1 : size;
            if (i >= size || (s[i] != ' ' && s[i] != '\t'))
                break;
        }
        size_t e = i;
        if (e > st && s[e - 1] == '\n')
            e--;
        if (e > st && s[e - 1] == '\r')
            e--;
        const char *colon = memchr(s + st, ':', e - st);
        if (!colon)
            continue;
        size_t nl = (size_t)(colon - (s + st));
        hf[nh++] = (struct arc_hfield){ s + st, e - st, s + st, nl };
        int k = arc_field_kind(s + st, nl);
        if (k >= 0) {
            af[na] = (struct arc_field){ s + st, e - st, colon + 1, (size_t)(s + e - colon - 1) };
            kinds[na++] = k;
        }
    }
    const char *body = i < size ? s + i : s + size;
    size_t blen = (size_t)(s + size - body);

    for (size_t k = 0; k < na; k++) {
        if (kinds[k] == ARC_AAR) {
            static struct arc_aar aar;
            const char *err = NULL;
            (void)arc_aar_parse(af[k].val, af[k].vallen, &aar, &err);
        }
    }
    static struct arc_chain chain;
    const char *err = NULL;
    int rc = arc_chain_build(af, kinds, na, &chain, &err);
    unsigned char d[ARC_DIGEST_LEN];
    (void)arc_body_hash(body, blen, 0, d);
    (void)arc_body_hash(body, blen, 1, d);
    if (rc != 1)
        return 0;
    static struct dkim_taglist tl;
    for (unsigned n = 1; n <= chain.n; n++) {
        const struct arc_field *ams = chain.set[n - 1][ARC_AMS];
        if (dkimtag_parse(ams->val, ams->vallen, &tl, &err) == 0) {
            const struct dkim_slice *h = dkimtag_get(&tl, "h"), *b = dkimtag_get(&tl, "b");
            int hr = 1, br = 1;
            (void)arc_canon_parse(dkimtag_get(&tl, "c"), &hr, &br);
            struct dkim_slice none = { NULL, 0 };
            (void)arc_ams_hash(hf, nh, h ? *h : none, hr, ams, b ? *b : none, d, &err);
        }
        const struct arc_field *as = chain.set[n - 1][ARC_AS];
        if (dkimtag_parse(as->val, as->vallen, &tl, &err) == 0) {
            const struct dkim_slice *b = dkimtag_get(&tl, "b");
            struct dkim_slice none = { NULL, 0 };
            (void)arc_seal_hash(&chain, n, chain.set[n - 1][ARC_AAR], ams, as, b ? *b : none, d);
        }
    }
    return 0;
}
