/*
 * fuzz_dkim.c - libFuzzer target for the DKIM header parsing path.
 *
 * Input layout: byte 0 selects options, the rest is split at the first
 * two NUL bytes:
 *   part 1  the value of a DKIM-Signature field (folding allowed)
 *   part 2  the key record served for every key lookup
 *   part 3  the message body
 * Each input goes through what the plugin does with untrusted text:
 *   - our tag-list parser, list helpers and base64 (dkim_tags.c);
 *   - key record parsing and public-key decoding (dkim_keys.c, OpenSSL);
 *   - libopendkim: dkim_header() of the signature next to From/To/Subject
 *     (twice when bit 0 is set: two signatures), dkim_eoh() with a
 *     prescreen callback that reads every signature attribute the plugin
 *     reads, the key-lookup callback answering with part 2, the body,
 *     dkim_eom(), and the per-signature getters of eval_library();
 *     bit 1 selects DKIM_LIBFLAGS_DELAYSIGPROC plus dkim_sig_gethashes()
 *     and dkimkey_verify(), the cached-mode path.
 * When bit 3 is set, part 1 is a whole message instead (header fields,
 * folding, a blank line, the body; LF or CRLF) and it takes the plugin's
 * path: the fields are screened by dkimscreen_fields() (dkim_screen.h) and
 * only the kept ones reach dkim_header(), as in plugin_scan().  Setting
 * AUTHSCAN_FUZZ_NOSCREEN=1 (or =own, see noscreen()) in the environment
 * hands libopendkim the fields the screen withholds: that is how the fuzzer
 * shows it still finds what the screen keeps away (docs/dkim.md, "Fuzzing
 * libopendkim").
 *
 * scripts/fuzz links this target with libopendkim built from Debian's
 * source package under ASan+UBSan (scripts/build-opendkim-fuzz), so a
 * memory error inside the library stops the run at its line.
 *
 * Build: cmake -DAUTHSCAN_FUZZ=ON -DCMAKE_C_COMPILER=clang ... (target
 * fuzz_dkim), or by hand:
 *   clang -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined \
 *     -Iplugins/dkim -Icore/include tests/fuzz/fuzz_dkim.c \
 *     plugins/dkim/dkim_tags.c plugins/dkim/dkim_keys.c plugins/dkim/dkim_canon.c -lopendkim -lcrypto
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <opendkim/dkim.h>

#include "dkim_canon.h"
#include "dkim_keys.h"
#include "dkim_screen.h"
#include "dkim_tags.h"

static const char *fz_key;
static size_t fz_keylen;
static volatile size_t fz_sink;

static DKIM_CBSTAT fz_key_cb(DKIM *d, DKIM_SIGINFO *si, unsigned char *buf, size_t buflen)
{
    (void)d;
    (void)si;
    if (fz_keylen + 1 > buflen)
        return DKIM_CBSTAT_NOTFOUND;
    memcpy(buf, fz_key, fz_keylen);
    buf[fz_keylen] = 0;
    return DKIM_CBSTAT_CONTINUE;
}

static DKIM_CBSTAT fz_prescreen(DKIM *d, DKIM_SIGINFO **sigs, int n)
{
    (void)d;
    for (int i = 0; i < n; i++) {
        dkim_alg_t alg;
        unsigned char *v;
        fz_sink += (size_t)dkim_sig_geterror(sigs[i]);
        if (dkim_sig_getsignalg(sigs[i], &alg) == DKIM_STAT_OK)
            fz_sink += (size_t)alg;
        if ((v = dkim_sig_getdomain(sigs[i])))
            fz_sink += strlen((char *)v) + (size_t)dkimtag_name_valid((char *)v,
                                                                    strlen((char *)v), 0);
        if ((v = dkim_sig_getselector(sigs[i])))
            fz_sink += (size_t)dkimtag_name_valid((char *)v, strlen((char *)v), 1);
        if ((v = dkim_sig_gettagvalue(sigs[i], 0, (unsigned char *)"b")))
            fz_sink += strlen((char *)v);
    }
    return DKIM_CBSTAT_CONTINUE;
}

static DKIM_CBSTAT fz_final(DKIM *d, DKIM_SIGINFO **sigs, int n)
{
    (void)d;
    for (int i = 0; i < n; i++)
        dkim_sig_ignore(sigs[i]);
    return DKIM_CBSTAT_CONTINUE;
}

static DKIM_LIB *lib_for(int delay)
{
    static DKIM_LIB *libs[2];
    if (!libs[delay]) {
        DKIM_LIB *l = dkim_init(NULL, NULL);
        unsigned int flags = DKIM_LIBFLAGS_BADSIGHANDLES | (delay ? DKIM_LIBFLAGS_DELAYSIGPROC : 0);
        unsigned int minbits = 1;
        dkim_options(l, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags);
        dkim_options(l, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof minbits);
        dkim_set_prescreen(l, fz_prescreen);
        dkim_set_key_lookup(l, fz_key_cb);
        if (delay)
            dkim_set_final(l, fz_final);
        libs[delay] = l;
    }
    return libs[delay];
}

static void run_tags(const char *s, size_t n)
{
    struct dkim_taglist tl;
    const char *err = NULL;
    if (dkimtag_parse(s, n, &tl, &err) < 0)
        return;
    static const char *const names[] = { "h", "b", "bh", "d", "s", "i", "l", "z" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct dkim_slice *v = dkimtag_get(&tl, names[i]);
        if (!v)
            continue;
        unsigned char out[1024];
        fz_sink += dkimtag_list_count(*v) + (size_t)dkimtag_list_has(*v, "from");
        fz_sink += (size_t)dkimtag_base64_decode(*v, out, sizeof out);
    }
}

static void read_sigs(DKIM *d, int delay, struct dkimkey_cache *cache);

/* AUTHSCAN_FUZZ_NOSCREEN=1: libopendkim gets every field.  =own: only the
 * fields withheld by the own-field rule are handed over (the issue 10.1
 * crash), so that a measurement is not cut short by the other defects the
 * screen keeps away (the i= decoder's over-read is found first). */
static int noscreen(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("AUTHSCAN_FUZZ_NOSCREEN");
        v = !e ? 0 : strcmp(e, "1") == 0 ? 1 : strcmp(e, "own") == 0 ? 2 : 0;
    }
    return v;
}

static int hand_over(const struct dkim_field *f)
{
    if (!f->withhold || noscreen() == 1)
        return 1;
    return noscreen() == 2 && f->why && strstr(f->why, "own field") != NULL;
}

static void run_lib(int mode, const char *sig, size_t siglen, const char *body, size_t bodylen,
                    struct dkimkey_cache *cache)
{
    int delay = (mode & 2) != 0;
    int copies = (mode & 1) ? 2 : 1;
    /* The plugin never hands libopendkim a field its screen withholds. */
    if (noscreen() != 1 && (siglen + 15 > DKIM_SCREEN_SIG_MAX || dkimscreen_sig(sig, siglen, copies)))
        return;
    DKIM_STAT st;
    DKIM *d = dkim_verify(lib_for(delay), (const unsigned char *)"fuzz", NULL, &st);
    if (!d)
        return;
    static const char *const hdrs[] = {
        "From: Alice <alice@example.com>", "To: bob@example.org", "Subject: fuzz",
    };
    char *field = malloc(siglen + 16);
    if (!field) {
        dkim_free(d);
        return;
    }
    memcpy(field, "DKIM-Signature:", 15);
    memcpy(field + 15, sig, siglen);
    for (int k = 0; k < copies; k++)
        dkim_header(d, (unsigned char *)field, siglen + 15);
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++)
        dkim_header(d, (unsigned char *)hdrs[i], strlen(hdrs[i]));
    st = dkim_eoh(d);
    if (st == DKIM_STAT_OK) {
        if (bodylen)
            dkim_body(d, (unsigned char *)body, bodylen);
        _Bool testkey = 0;
        dkim_eom(d, &testkey);
        read_sigs(d, delay, cache);
    }
    free(field);
    dkim_free(d);
}

/* The getters the plugin calls after dkim_eom(), for every handle. */
static void read_sigs(DKIM *d, int delay, struct dkimkey_cache *cache)
{
    DKIM_SIGINFO **sigs = NULL;
    int n = 0;
    if (dkim_getsiglist(d, &sigs, &n) != DKIM_STAT_OK)
        return;
    for (int i = 0; i < n; i++) {
        unsigned int bits = 0;
        ssize_t ml, cl, sl;
        int err = dkim_sig_geterror(sigs[i]);
        fz_sink += dkim_sig_getflags(sigs[i]) + (size_t)dkim_sig_getbh(sigs[i]);
        dkim_sig_getkeysize(sigs[i], &bits);
        const char *es = dkim_sig_geterrorstr(err);
        fz_sink += bits + (es ? strlen(es) : 0);
        /* A signature with a parse error has no canonicalization,
         * and libopendkim asserts in these two: the plugin calls
         * them only for signatures without an error, and so do we. */
        if (err != DKIM_SIGERROR_UNKNOWN && err != DKIM_SIGERROR_OK)
            continue;
        dkim_sig_getcanonlen(d, sigs[i], &ml, &cl, &sl);
        void *hh = NULL, *bh = NULL;
        size_t hl = 0, bl = 0;
        if (delay && dkim_sig_gethashes(sigs[i], &hh, &hl, &bh, &bl) == DKIM_STAT_OK && hh) {
            const struct dkim_key *key = dkimkey_cache_get(cache, fz_key, fz_keylen);
            unsigned char s[64] = { 0 };
            if (key)
                fz_sink += (size_t)dkimkey_verify(key, hl == 20, hh, hl, s, sizeof s);
        }
    }
}

#define FZ_FIELDS 512

/* plugin_scan()'s path for a whole message: split the header into fields
 * (a line starting with WSP continues the field), convert to CRLF, screen,
 * feed what the screen keeps, then body and end of message. */
static void run_message(int mode, const char *msg, size_t len, struct dkimkey_cache *cache)
{
    /* CRLF copy: at most twice the input. */
    char *buf = malloc(2 * len + 1);
    struct dkim_field *f = malloc(FZ_FIELDS * sizeof *f);
    if (!buf || !f) {
        free(buf);
        free(f);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
            buf[k++] = '\r';
        buf[k++] = msg[i];
    }
    size_t n = 0, i = 0;
    while (i < k && n < FZ_FIELDS) {
        if (buf[i] == '\r' && i + 1 < k && buf[i + 1] == '\n') {
            i += 2;        /* the blank line: the body follows */
            break;
        }
        size_t start = i;
        for (;;) {
            while (i < k && !(buf[i] == '\r' && i + 1 < k && buf[i + 1] == '\n'))
                i++;
            if (i + 2 < k && (buf[i + 2] == ' ' || buf[i + 2] == '\t')) {
                i += 2;    /* folded */
                continue;
            }
            break;
        }
        if (i > start) {
            f[n].p = buf + start;
            f[n].n = i - start;
            n++;
        }
        i = i < k ? i + 2 : k;
    }
    const char *body = buf + (i < k ? i : k);
    size_t bodylen = k - (size_t)(body - buf);
    dkimscreen_fields(f, n, 5);

    int delay = (mode & 2) != 0;
    DKIM_STAT st;
    DKIM *d = dkim_verify(lib_for(delay), (const unsigned char *)"fuzz", NULL, &st);
    if (d) {
        for (size_t j = 0; j < n; j++)
            if (hand_over(&f[j]))
                dkim_header(d, (unsigned char *)f[j].p, f[j].n);
        if (dkim_eoh(d) == DKIM_STAT_OK) {
            if (bodylen)
                dkim_body(d, (unsigned char *)body, bodylen);
            _Bool testkey = 0;
            dkim_eom(d, &testkey);
            read_sigs(d, delay, cache);
        }
        dkim_free(d);
    }
    free(f);
    free(buf);
}

static void count_emit(void *arg, const char *p, size_t n)
{
    (void)p;
    *(size_t *)arg += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct dkimkey_cache *cache;
    if (!cache)
        cache = dkimkey_cache_new(8);
    if (size < 1 || size > 65536)
        return 0;
    int mode = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *z1 = memchr(p, 0, (size_t)(end - p));
    const char *sig = p;
    size_t siglen = z1 ? (size_t)(z1 - p) : (size_t)(end - p);
    const char *key = z1 ? z1 + 1 : end;
    const char *z2 = key < end ? memchr(key, 0, (size_t)(end - key)) : NULL;
    size_t keylen = z2 ? (size_t)(z2 - key) : (size_t)(end - key);
    const char *body = z2 ? z2 + 1 : end;
    size_t bodylen = (size_t)(end - body);

    run_tags(sig, siglen);
    struct dkim_keyrec kr;
    const char *err;
    fz_sink += (size_t)dkimtag_key_parse(key, keylen, &kr, &err);
    const struct dkim_key *k = dkimkey_cache_get(cache, key, keylen);
    fz_sink += k && k->error ? 1 : 0;
    /* The body as cached mode hashes it (dkimcanon_body) must be as long
     * as library mode's count for l= (dkimtag_canon_body_len), in both
     * canonicalizations: two independent walks of RFC 6376 3.4.3/3.4.4.
     * They part only on a bare LF, a line end to the first (as to dkimpy)
     * and data to the second (as to libopendkim, docs/dkim.md). */
    int bare_lf = 0;
    for (size_t i = 0; i < bodylen && !bare_lf; i++)
        bare_lf = body[i] == '\n' && (i == 0 || body[i - 1] != '\r');
    for (int relaxed = 0; relaxed < 2; relaxed++) {
        size_t emitted = 0;
        dkimcanon_body(body, bodylen, relaxed, count_emit, &emitted);
        if (!bare_lf && emitted != dkimtag_canon_body_len(body, bodylen, relaxed))
            __builtin_trap();
    }
    fz_key = key;
    fz_keylen = keylen;
    if (mode & 8)
        run_message(mode, sig, siglen, cache);
    else
        run_lib(mode, sig, siglen, body, bodylen, cache);
    return 0;
}
