/*
 * authscan/spf.h - the typed SPF result published by the "spf" plugin.
 *
 * The spf plugin publishes one `struct as_spf_result` per scan with
 *     as_task_set_result(t, AS_SPF_RESULT_KEY, res);
 * and consumers (DMARC, site hooks) read it with
 *     const struct as_spf_result *r = as_task_get_result(t, AS_SPF_RESULT_KEY);
 *     if (r && r->version >= 1) { ... r->dmarc->result ... }
 * Nothing is published when the plugin did not run for the scan.
 *
 * Everything behind the pointer lives in the task pool: read-only for
 * consumers, valid until the scan ends.  New fields are only ever added at
 * the end, with AS_SPF_RESULT_VERSION bumped.
 */
#ifndef AUTHSCAN_SPF_H
#define AUTHSCAN_SPF_H

#define AS_SPF_RESULT_KEY "spf"
#define AS_SPF_RESULT_VERSION 1

/* RFC 7208 section 2.6 results. */
enum as_spf_res {
    AS_SPF_NONE = 0,
    AS_SPF_NEUTRAL,
    AS_SPF_PASS,
    AS_SPF_FAIL,
    AS_SPF_SOFTFAIL,
    AS_SPF_TEMPERROR,
    AS_SPF_PERMERROR,
};

enum as_spf_identity {
    AS_SPF_ID_MAILFROM = 0,   /* RFC5321.MailFrom */
    AS_SPF_ID_HELO,           /* RFC5321.HELO (postmaster@HELO) */
};

/* The outcome of check_host() for one identity. */
struct as_spf_check {
    int checked;              /* 0: identity absent or not a usable domain
                                 (result is then AS_SPF_NONE) */
    enum as_spf_res result;
    const char *domain;       /* the <domain> checked, lower case; NULL if none */
    const char *sender;       /* the <sender>: local@domain or postmaster@HELO */
    const char *mechanism;    /* matching term with its qualifier, e.g.
                                 "+ip4:192.0.2.0/24"; NULL if the result did
                                 not come from a mechanism (default, errors) */
    const char *reason;       /* temperror/permerror cause, NULL otherwise */
    const char *explanation;  /* fail only: exp= text or the default; may be NULL */
};

struct as_spf_result {
    int version;                      /* AS_SPF_RESULT_VERSION */
    struct as_spf_check mailfrom;     /* MAIL FROM identity */
    struct as_spf_check helo;         /* HELO identity (checked when configured) */
    /* The identity whose result DMARC uses (RFC 7489 4.1): MAIL FROM, or
     * HELO when the reverse-path is null.  Points at mailfrom or helo. */
    enum as_spf_identity dmarc_identity;
    const struct as_spf_check *dmarc;
    const char *client_ip;            /* address evaluated (after relay handling) */
    const char *helo_name;            /* HELO evaluated (after relay handling), or NULL */
    int skipped;                      /* 1: not evaluated (local, authenticated...) */
    const char *skip_reason;          /* why, when skipped */
    int plus_all;                     /* a record on the path had "+all" */
    /* RFC 8601 resinfo for Authentication-Results, without the authserv-id:
     * "spf=pass smtp.mailfrom=example.com" or "spf=none smtp.helo=mx.example". */
    const char *auth_results;
    /* RFC 7208 9.1 Received-SPF field value (without the field name), e.g.
     * "pass (mx.example: domain of a@example.com designates 192.0.2.1 as
     * permitted sender) client-ip=192.0.2.1; envelope-from=\"a@example.com\";
     * helo=mx.example;" */
    const char *received_spf;
};

static inline const char *as_spf_res_name(enum as_spf_res r)
{
    static const char *const names[] = { "none", "neutral", "pass", "fail", "softfail",
                                         "temperror", "permerror" };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "none";
}

#endif /* AUTHSCAN_SPF_H */
