/*
 * zone.h - an RFC 1035 master file loaded into memory, answering lookups
 * the way an authoritative server for it would (the resolver's offline
 * mode, see dns.h and docs/dns.md).
 *
 * Syntax accepted (RFC 1035 section 5, plus what nsd and BIND accept):
 *   $ORIGIN name, $TTL ttl, $INCLUDE file [origin] (relative to the
 *   including file, 8 levels deep at most); owner names absolute
 *   ("a.example.") or relative to the origin ("a"), "@" for the origin, a
 *   blank owner for the previous one; TTL and class "IN" both optional and
 *   in either order; TTLs in seconds or with units (1h30m, 2d, 1w);
 *   parentheses spanning lines; ';' comments; quoted strings with \" \\
 *   \DDD escapes.  Types with data: A, AAAA, MX, PTR, CNAME, NS, SOA, TXT,
 *   SPF.  Other well-known types (SRV, CAA, DS, TLSA, ...) are accepted and
 *   make their owner name exist, but their data is not kept.  Names take
 *   RFC 1035 escapes too ("\\." a dot inside a label, "\\032" a blank,
 *   "\\X" the character X); lengths count octets.  A name holding an
 *   octet no query name can (see as_dns_name_normalize) loads, so the rest
 *   of the file is usable, but no lookup reaches it; as a CNAME/MX/PTR
 *   target it is returned with those octets written \\DDD.
 *
 * Lookup semantics (those of an authoritative server):
 *   - a name with records of the type: AS_DNS_OK;
 *   - a name that exists (it has records, or a name below it has: an
 *     "empty non-terminal") but not with the type: AS_DNS_NODATA;
 *   - otherwise a matching wildcard ("*.<closest encloser>") answers, with
 *     the queried name as owner; else AS_DNS_NXDOMAIN;
 *   - a CNAME at the name is returned for type CNAME and followed inside
 *     the zone for other types (8 steps at most); only records of the
 *     asked type are returned;
 *   - negative answers carry the negative-caching TTL of the closest
 *     enclosing SOA (min(SOA TTL, SOA minimum), RFC 2308), or 0.
 *
 * Test directives: comments that nsd ignores but this loader obeys, so one
 * file serves both (names relative to the current origin like owners):
 *     ; authscan: timeout slow.example.     lookups of the name time out
 *     ; authscan: servfail broken.example.  lookups answer SERVFAIL
 * They apply to the exact name, for every type.
 *
 * Limits: 16 MiB per file, 64 KiB per line, 200000 records.  Errors are
 * reported as "file:line: message" and nothing is loaded.
 *
 * Ownership: an as_zone owns its memory; answers from as_zone_lookup()
 * point into the zone (records) and into the given pool (the array), so
 * they are valid while both live.
 */
#ifndef AS_ZONE_H
#define AS_ZONE_H

#include <stddef.h>
#include <stdint.h>
#include "authscan/plugin.h"

#define AS_DNS_NAME_MAX 253

struct as_zone;

/* Loads a master file.  origin (may be NULL) is the initial $ORIGIN. */
struct as_zone *as_zone_load(const char *path, const char *origin, char *err, size_t errlen);
/* The same for text in memory; name is used in messages and to resolve
 * $INCLUDE paths (relative to its directory). */
struct as_zone *as_zone_parse(const char *name, const char *text, size_t len,
                              const char *origin, char *err, size_t errlen);
void as_zone_free(struct as_zone *z);
size_t as_zone_record_count(const struct as_zone *z);

/* Answers (name, type) into *out (name and rr array from pool).  Also
 * returns AS_DNS_TIMEOUT / AS_DNS_SERVFAIL for names marked by the test
 * directives, and AS_DNS_BADNAME for an invalid name.  Returns out->status. */
enum as_dns_status as_zone_lookup(const struct as_zone *z, const char *name, uint16_t type,
                                  struct as_pool *pool, struct as_dns_answer *out);

/* Normalizes a query name: lower case (ASCII), one trailing dot removed;
 * every label 1..63 octets, at most 253 octets in all, only printable
 * ASCII without blanks and without '\\' (callers convert U-labels to
 * A-labels first; escapes would be interpreted by resolver libraries).
 * Writes into out[AS_DNS_NAME_MAX + 1]; returns 0 or -1 for a bad name. */
int as_dns_name_normalize(const char *in, size_t len, char *out);

#endif
