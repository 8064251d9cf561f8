/*
 * authscan/dkim.h - the typed DKIM result published by the "dkim" plugin.
 *
 * The dkim plugin publishes one `struct as_dkim_result` per scan with
 *     as_task_set_result(t, AS_DKIM_RESULT_KEY, res);
 * and consumers (DMARC, site hooks) read it with
 *     const struct as_dkim_result *r = as_task_get_result(t, AS_DKIM_RESULT_KEY);
 *     if (r && r->version >= 1) for (size_t i = 0; i < r->nsigs; i++) ...
 * Nothing is published when the plugin did not run for the scan.
 *
 * Everything behind the pointer lives in the task pool: read-only for
 * consumers, valid until the scan ends.  New fields are only ever added at
 * the end of the structs, with AS_DKIM_RESULT_VERSION bumped.
 */
#ifndef AUTHSCAN_DKIM_H
#define AUTHSCAN_DKIM_H

#include <stddef.h>

#define AS_DKIM_RESULT_KEY "dkim"
#define AS_DKIM_RESULT_VERSION 1

/* RFC 8601 section 2.7.1 results for one signature. */
enum as_dkim_res {
    AS_DKIM_NONE = 0,     /* not used for signatures; the message had none */
    AS_DKIM_PASS,
    AS_DKIM_FAIL,         /* signature or body hash did not verify, or policy */
    AS_DKIM_NEUTRAL,      /* e.g. l= with unsigned content, when so configured */
    AS_DKIM_TEMPERROR,    /* key lookup failed temporarily */
    AS_DKIM_PERMERROR,    /* malformed signature, no key, bad key */
    AS_DKIM_POLICY,       /* verified, but refused by local policy (e.g. rsa-sha1) */
};

struct as_dkim_sig {
    enum as_dkim_res result;
    const char *domain;       /* d=, lower case, A-labels */
    const char *selector;     /* s= */
    const char *algorithm;    /* "rsa-sha256", "ed25519-sha256", "rsa-sha1"... */
    unsigned key_bits;        /* RSA key size; 256 for ed25519; 0 if unknown */
    const char *identity;     /* i=, or NULL */
    const char *b_prefix;     /* first 8+ characters of b= (RFC 8601 header.b) */
    int testing;              /* key has t=y */
    const char *reason;       /* why it is not pass, NULL for pass */
};

struct as_dkim_result {
    int version;              /* AS_DKIM_RESULT_VERSION */
    size_t nsigs;             /* signatures evaluated (after the per-message cap) */
    const struct as_dkim_sig *sigs;
    size_t nignored;          /* signatures beyond the cap, not evaluated */
    /* RFC 8601 resinfo entries, one per signature, without authserv-id:
     * "dkim=pass header.d=example.com header.s=sel header.b=AbCdEfGh";
     * "dkim=none" when unsigned.  Joined with "; " in the header. */
    const char *const *auth_results;
    size_t nauth_results;
};

static inline const char *as_dkim_res_name(enum as_dkim_res r)
{
    static const char *const names[] = { "none", "pass", "fail", "neutral", "temperror",
                                         "permerror", "policy" };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "none";
}

#endif /* AUTHSCAN_DKIM_H */
