/*
 * dkim_screen.h - what the DKIM plugin hands to libopendkim, and what it
 * keeps away from it.
 *
 * libopendkim (2.11.0~beta2, a fixed choice) has memory-safety bugs that a
 * message reaches through the DKIM-Signature fields (docs/dkim.md,
 * "libopendkim defects"): an h= whose selection uses up every header field
 * of the message writes past a heap array in dkim_canon_selecthdrs(); the
 * quoted-printable decoder of i= reads past the string on a trailing '=';
 * an i= longer than 256 bytes is left unterminated on the stack; an h= of
 * 4096 bytes or more is cut silently; tag names are merged case-insensitively
 * (the last "H=" wins over "h="); a signature field of 64 KiB makes the whole
 * message DKIM_STAT_NORESOURCE.  The screen decides, before the library sees
 * a field, which DKIM-Signature fields it may parse.  A field it withholds
 * is never given to dkim_header(); its signature is a permerror with the
 * screen's reason, and the other signatures of the message stay verifiable.
 *
 * Bounded by construction: one pass per field plus, per kept signature, one
 * pass over its tags (at most DKIM_TAGS_MAX) and its h= (< 4096 bytes).
 */
#ifndef DKIM_SCREEN_H
#define DKIM_SCREEN_H

#include <stddef.h>

/* A DKIM-Signature field longer than this is withheld.  Real ones stay far
 * below (an RSA-4096 b= is 684 characters, h= is capped below 4096);
 * libopendkim fails the whole message at 64 KiB. */
#define DKIM_SCREEN_SIG_MAX 16384
/* libopendkim copies h= into DKIM_MAXHEADER (4096) byte buffers with
 * strlcpy: a longer list is cut without a word. */
#define DKIM_SCREEN_HLIST_MAX 4095
/* dkim_sig_domainok() decodes i= into MAXADDRESS + 1 (257) bytes and then
 * runs strchr() on it: a longer i= leaves it unterminated. */
#define DKIM_SCREEN_ID_MAX 256

/* One header field, as it will be given to dkim_header(): the raw text
 * "Name: value", folding kept, CRLF line breaks, no final CRLF. */
struct dkim_field {
    const char *p;
    size_t n;
    /* set by dkimscreen_fields(): */
    int is_sig;          /* libopendkim parses it as a DKIM-Signature */
    int withhold;        /* not to be given to libopendkim */
    int ignored;         /* a signature beyond max_sigs (withheld, not reported) */
    const char *why;     /* the signature's permerror reason, or NULL */
};

/* Screens a message's header fields in order.  Signatures beyond the first
 * max_sigs are withheld and marked ignored: libopendkim would set up a
 * canonicalization for each and select headers for each, whatever the
 * prescreen callback says (quadratic in a message of many signatures).
 * A kept signature whose h= selects a withheld signature field gets a
 * reason (it cannot be verified as signed) but is still handed over. */
void dkimscreen_fields(struct dkim_field *f, size_t n, size_t max_sigs);

/* The checks on one signature's value (the text after the colon), nsig
 * being the number of DKIM-Signature fields libopendkim will hold.
 * Returns NULL when libopendkim may parse it, else the reason. */
const char *dkimscreen_sig(const char *v, size_t n, size_t nsig);

/* libopendkim's field name rule: the bytes before the first ':' less
 * trailing white space.  0 and *name set, or -1 when dkim_header() refuses
 * the field (no colon, a control or 8-bit byte in the name, ';' before
 * the colon). */
int dkimscreen_field_name(const char *p, size_t n, const char **name, size_t *namelen);

/* How many entries of the colon-separated list v name `name` as
 * libopendkim compares them (FWS removed, case-insensitive). */
size_t dkimscreen_hlist_count(const char *v, size_t n, const char *name);

#endif
