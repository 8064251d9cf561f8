/*
 * dkim_canon.h - RFC 6376 3.4 canonicalization (simple and relaxed, header
 * fields and body) and the removal of b= from a signature field, for the
 * signatures we compute ourselves: ARC verification and sealing
 * (plugins/arc).  DKIM verification still has libopendkim canonicalize
 * (dkim.c), so these functions are used there only once a signer exists.
 *
 * Input may use CRLF or bare LF line ends (a message on the protocol side
 * is taken as it comes); the canonical form always uses CRLF.  Everything
 * is one pass, allocates nothing but what the caller gives, and is what
 * fuzz_arc exercises.
 */
#ifndef DKIM_CANON_H
#define DKIM_CANON_H

#include <stddef.h>

#include "dkim_tags.h"

/* Room dkimcanon_header() may need for a field of n bytes. */
#define DKIMCANON_HEADER_MAX(n) (2 * (n) + 2)

/* The canonical form of one header field given raw ("Name: value", folding
 * kept, no final line end), followed by CRLF unless `last` (the signature
 * field itself is hashed without it).  relaxed: RFC 6376 3.4.2; else 3.4.1
 * (bare LF made CRLF).  `out` needs DKIMCANON_HEADER_MAX(n) bytes.  Returns
 * the length written. */
size_t dkimcanon_header(const char *field, size_t n, int relaxed, int last, char *out);

/* A copy of the signature field `field` with the value of its b= tag
 * removed (RFC 6376 3.7: "b=" stays, with the FWS around it), written to
 * out (n bytes suffice).  b is the tag's value as dkimtag_parse() found
 * it, a slice of `field`.  Returns the length written. */
size_t dkimcanon_strip_b(const char *field, size_t n, struct dkim_slice b, char *out);

/* The canonical body (RFC 6376 3.4.3 simple, 3.4.4 relaxed) of the n
 * bytes at p, handed to emit(arg, bytes, len) (a digest update) in pieces
 * of any size; nothing is copied. */
typedef void (*dkimcanon_emit_fn)(void *arg, const char *p, size_t n);
void dkimcanon_body(const char *p, size_t n, int relaxed, dkimcanon_emit_fn emit, void *arg);

#endif
