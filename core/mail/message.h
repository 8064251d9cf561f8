/*
 * message.h - parsing the header block of an RFC 5322 message.
 *
 * The message is kept as the caller's contiguous buffer; header fields are
 * slices of it (see struct as_header in authscan/plugin.h).  Parsing is one
 * pass over the header block, bounded by as_msg_limits, with no copy of
 * the data.  It accepts what real mail contains: CRLF or bare LF line
 * endings (even mixed), NUL bytes, 8-bit data, an mbox "From " line before
 * the headers (skipped), a message without body or without the blank line,
 * and lines that are not header fields (ended the header block, as in
 * RFC 5322 parsers of MTAs: such a line starts the body).
 *
 * Decisions on ambiguous input:
 *   - A field line is `name *WSP ":" value`, name = 1*(33..126 except ':').
 *     WSP before the colon is the obsolete syntax of RFC 5322 section 4.5
 *     and is not part of the name.
 *   - A line starting with SP/HT continues the previous field.  Before any
 *     field there is nothing to continue: such a line is a non-field line
 *     and ends the (empty) header block, so the message has no header
 *     fields.  This is what Postfix's cleanup does (it then treats the
 *     whole message as body); skipping the line instead would let us see
 *     a From field that the MTA and the MUA do not see.
 *   - Line endings: LF ends a line, and one CR just before it is part of
 *     the ending.  A CR alone is data.  as_msg_crlf() reports the ending
 *     of the first line of the header block (CRLF when there is none):
 *     that is what whoever wrote the block used, and what a header added
 *     by us should use.
 *   - Limits are checked while parsing: a hostile message is refused as
 *     soon as it passes one, and no line end is searched for beyond
 *     max_header_size.  The block
 *     counted by max_header_size runs from the first field (after an mbox
 *     line) to the end of the last field line, line ending included; the
 *     blank separator line is not counted.
 *
 * Ownership: as_message_parse() allocates the message and its field array
 * from the pool; the data buffer must outlive the pool.
 */
#ifndef AS_MESSAGE_H
#define AS_MESSAGE_H

#include <stddef.h>
#include "authscan/plugin.h"

struct as_msg_limits {
    size_t max_headers;      /* number of header fields; 0 = no limit */
    size_t max_header_size;  /* bytes of the whole header block; 0 = no limit */
};

enum as_msg_error {
    AS_MSG_OK = 0,
    AS_MSG_TOO_MANY_HEADERS,
    AS_MSG_HEADERS_TOO_LARGE,
};

struct as_message {
    const char *data;
    size_t len;
    struct as_header *fields;
    size_t nfields;
    size_t body_offset;       /* == len if there is no body */
    int crlf;                 /* header block used CRLF line endings */
    int has_separator;        /* a blank line ended the header block */
};

/* Parses the header block.  On AS_MSG_OK, *out is set.  On a limit error,
 * *out is not set and err describes the limit that was hit. */
enum as_msg_error as_message_parse(struct as_pool *pool, const char *data, size_t len,
                                   const struct as_msg_limits *lim,
                                   struct as_message **out, char *err, size_t errlen);

/* The value of h unfolded (CRLF/LF followed by WSP -> that WSP), with
 * surrounding blanks (SP, HT, CR, LF) trimmed, NUL-terminated, in pool
 * memory.  NUL bytes inside the value are kept; *len (if not NULL) gets
 * the length.  as_header_unfold() is this with the task's pool. */
const char *as_header_unfold_pool(struct as_pool *pool, const struct as_header *h,
                                  size_t *len);

/* Parses the From field(s) of m into a struct as_from (pool memory).  Used
 * by as_task_from(); exposed for the unit tests and the CLI.
 *
 * Every From field is parsed and all their mailboxes land in list, so a
 * report can show them whatever the status.  The status is the first of
 * these that applies:
 *   MISSING            no From field
 *   MULTIPLE_FIELDS    more than one From field (RFC 5322 section 3.6
 *                      allows one; which one an MUA shows is unknowable)
 *   INVALID            the field does not parse (error says why)
 *   EMPTY              it parses but has no mailbox (including an empty
 *                      group such as "undisclosed-recipients:;")
 *   GROUP              a mailbox came from group syntax, which From does
 *                      not allow (RFC 5322 section 3.6.2: mailbox-list)
 *   MULTIPLE_MAILBOXES more than one mailbox (allowed by RFC 5322 with a
 *                      Sender field, but DMARC cannot pick one)
 *   NO_DOMAIN          the single mailbox has no usable domain: none at
 *                      all ("<>", "<user>"), a domain literal, or a name
 *                      that is not a valid host name
 *   OK                 domain is the author domain
 * The order goes from the shape of the header block to the field's syntax
 * to the mailbox count to the domain: a later check only means something
 * once the earlier ones passed (there is no "the mailbox" to take a domain
 * from when there are two, nor mailboxes to count in a field that does
 * not parse). */
const struct as_from *as_message_from(struct as_pool *pool, const struct as_message *m);

/* Decodes RFC 2047 encoded-words in s (display names, Subject) into UTF-8.
 * Unknown charsets and bad encodings leave that word as written. */
const char *as_decode_encoded_words(struct as_pool *pool, const char *s, size_t len);

#endif
