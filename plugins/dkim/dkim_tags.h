/*
 * dkim_tags.h - the text formats of DKIM (RFC 6376) that the plugin parses
 * itself: tag-lists, base64, DNS key records, and the names used to build
 * the key query.
 *
 * libopendkim parses the DKIM-Signature field for canonicalization, but it
 * accepts duplicate tags (the last one silently wins, where RFC 6376 3.2
 * makes the whole tag-list invalid) and it never gives a key record back.
 * Everything here is bounded by construction, allocates nothing and
 * returns an error string (static) for bad input: it sees untrusted header
 * text and DNS data, and it is what fuzz_dkim exercises.
 */
#ifndef DKIM_TAGS_H
#define DKIM_TAGS_H

#include <stddef.h>

#define DKIM_TAGS_MAX 64         /* tags in one tag-list; more is an error */
#define DKIM_TAG_NAME_MAX 32

struct dkim_slice {
    const char *p;
    size_t n;
};

struct dkim_tag {
    struct dkim_slice name;
    struct dkim_slice value;     /* surrounding FWS trimmed, inner FWS kept */
};

struct dkim_taglist {
    size_t n;
    struct dkim_tag tags[DKIM_TAGS_MAX];
};

/* Parses an RFC 6376 3.2 tag-list: tag=value pairs separated by ';', an
 * optional trailing ';', FWS around everything.  Duplicate tag names, a
 * tag without '=', control characters, and more than DKIM_TAGS_MAX tags
 * are errors.  Returns 0, or -1 with *err set. */
int dkimtag_parse(const char *s, size_t len, struct dkim_taglist *out, const char **err);

/* The tag named `name` (case-sensitive, as RFC 6376 3.2 says), or NULL. */
const struct dkim_slice *dkimtag_get(const struct dkim_taglist *tl, const char *name);

/* Number of entries of a colon-separated list (h=, key h=, s=, t=). */
size_t dkimtag_list_count(struct dkim_slice v);
/* 1 if the colon-separated list v has an entry equal to item (ignoring
 * case and FWS around entries). */
int dkimtag_list_has(struct dkim_slice v, const char *item);

/* Decodes base64, skipping FWS (RFC 6376 allows it inside b=, bh=, p=).
 * Padding is only accepted at the end.  Returns the decoded length, or -1
 * for bad characters, bad padding, or an output longer than outsz. */
long dkimtag_base64_decode(struct dkim_slice in, unsigned char *out, size_t outsz);

/* A DNS key record (RFC 6376 3.6.1 and RFC 8463). */
enum dkim_keytype { DKIM_KEYTYPE_RSA = 1, DKIM_KEYTYPE_ED25519 = 2 };
#define DKIM_HASH_SHA1   0x1u
#define DKIM_HASH_SHA256 0x2u

struct dkim_keyrec {
    int keytype;              /* enum dkim_keytype */
    unsigned hashes;          /* DKIM_HASH_* allowed by h= (all when absent) */
    int testing;              /* t=y */
    int strict;               /* t=s: i= must be in exactly d=, no subdomain */
    int revoked;              /* p= empty */
    struct dkim_slice p;      /* the base64 text of p=, FWS included */
};

/* Parses a key record.  Errors (each a PERMFAIL per RFC 6376 6.1.2): a
 * bad tag-list, v= present but not first or not "DKIM1", an unknown k=,
 * no p=, an s= that excludes "email".  A key h= naming no hash we know
 * parses (hashes == 0) and then suits no signature. */
int dkimtag_key_parse(const char *rec, size_t len, struct dkim_keyrec *out, const char **err);

/* Length of the canonical form (RFC 6376 3.4.3 simple, 3.4.4 relaxed) of a
 * CRLF body, without building it: what l= is compared with to see whether
 * unsigned content follows. */
size_t dkimtag_canon_body_len(const char *body, size_t n, int relaxed);

/* Checks a d= domain or s= selector: dot-separated labels of letters,
 * digits and '-' (and '_' when allow_underscore, which real selectors
 * use), 1..63 octets each, no leading/trailing dot.  1 if valid. */
int dkimtag_name_valid(const char *s, size_t n, int allow_underscore);

#endif
