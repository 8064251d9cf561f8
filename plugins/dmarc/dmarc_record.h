/*
 * dmarc_record.h - DMARC Policy Record parsing (RFC 9989 4.7-4.8, with
 * RFC 7489 6.3 compatibility).
 *
 *   dmarc_record_parse()   one TXT record -> struct as_dmarc_record, or
 *                          "not a DMARC record" (v=DMARC1 not first);
 *   dmarc_record_usable()  the RFC 9989 4.10.1 rule for records whose p=
 *                          (or sp=/np=) is missing or invalid.
 *
 * The parser is bounded (records longer than DMARC_RECORD_MAX are refused)
 * and never fails on content: a bad tag value counts as a syntax error and
 * the default is kept, as RFC 9989 4.8 requires.
 */
#ifndef DMARC_RECORD_H
#define DMARC_RECORD_H

#include <stddef.h>

#include "authscan/dmarc.h"
#include "authscan/plugin.h"

#define DMARC_RECORD_MAX 4096

enum dmarc_parse_status {
    DMARC_REC_OK = 0,         /* a DMARC record (maybe with tag errors) */
    DMARC_REC_NOT_DMARC,      /* does not start with v=DMARC1: not ours */
    DMARC_REC_TOO_LONG,       /* starts with v=DMARC1 but exceeds the bound */
};

/* Is this TXT string a DMARC record at all (v=DMARC1 as the first tag,
 * case-sensitive value, RFC 9989 4.7 "v")?  Cheap; used to count records. */
int dmarc_record_is_dmarc(const char *txt, size_t len);

/* Parses `txt` into *out (strings in `pool`).  Tag names are matched
 * case-insensitively, tag values that are ABNF literals too; unknown tags
 * are ignored.  A backslash right before ';' is dropped (leaked zone-file
 * escaping, seen in the wild). */
enum dmarc_parse_status dmarc_record_parse(struct as_pool *pool, const char *txt, size_t len,
                                           struct as_dmarc_record *out);

/* RFC 9989 4.10.1: a record with no valid p= (or an invalid sp=, or in
 * DMARCbis mode an invalid np=) is treated as p=none when rua= holds a
 * usable URI, and is unusable otherwise.  A DMARCbis PSD record (psd=y)
 * without p= is usable with p=none (RFC 9989 4.7 "p": absent means none).
 * Returns 1 if usable and stores the effective p in *p. */
int dmarc_record_usable(const struct as_dmarc_record *r, int bis, enum as_dmarc_policy *p);

/* Does the URI list hold at least one URI we could report to (mailto:
 * with an address, http:, https:)?  Other schemes are ignored
 * (RFC 9989 4.7 "rua": unsupported schemes MUST be ignored). */
int dmarc_urilist_usable(const char *list);

/* "none"/"quarantine"/"reject" (any case) -> policy, UNSET otherwise. */
enum as_dmarc_policy dmarc_policy_from_string(const char *s, size_t len);

#endif /* DMARC_RECORD_H */
