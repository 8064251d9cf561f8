/*
 * spamd_proto.h - SpamAssassin's spamc/spamd protocol (SPAMC/1.5): the
 * request head parser, the bounded zlib inflate for "Compress: zlib",
 * the Received-header reading that stands in for the envelope, and small
 * network lists.  No I/O and no state, so that the fuzz target
 * (tests/fuzz/fuzz_spamd.c) runs exactly the code a client reaches.  The
 * adapter is spamd_adapter.c.
 *
 * A request:
 *   VERB SPAMC/1.5\r\n            CHECK SYMBOLS REPORT REPORT_IFSPAM PING
 *   Content-length: N\r\n         PROCESS HEADERS SKIP TELL
 *   User: name\r\n                (optional)
 *   Compress: zlib\r\n            (optional: the N bytes are zlib data)
 *   \r\n
 *   N bytes of message
 * Lines may end in LF alone.  Unknown header lines are skipped (spamd
 * does the same, and newer clients add some).
 */
#ifndef AS_SPAMD_PROTO_H
#define AS_SPAMD_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

/* Exit codes spamd answers with (sysexits.h). */
#define AS_SPAMD_EX_OK 0
#define AS_SPAMD_EX_USAGE 64
#define AS_SPAMD_EX_DATAERR 65
#define AS_SPAMD_EX_UNAVAILABLE 69
#define AS_SPAMD_EX_SOFTWARE 70
#define AS_SPAMD_EX_TEMPFAIL 75
#define AS_SPAMD_EX_PROTOCOL 76
#define AS_SPAMD_EX_TIMEOUT 79

/* Largest request head: spamc's own buffer is 8 KiB. */
#define AS_SPAMD_MAX_HEAD 16384

enum as_spamd_verb {
    AS_SPAMD_CHECK, AS_SPAMD_SYMBOLS, AS_SPAMD_REPORT, AS_SPAMD_REPORT_IFSPAM,
    AS_SPAMD_PING, AS_SPAMD_PROCESS, AS_SPAMD_HEADERS, AS_SPAMD_SKIP, AS_SPAMD_TELL,
};

struct as_spamd_request {
    enum as_spamd_verb verb;
    int minor;                    /* SPAMC/1.<minor> */
    long long content_length;     /* -1: none given */
    int zlib;                     /* Compress: zlib */
    char user[128];               /* "" if none */
    size_t head_len;              /* bytes of the head, blank line included */
};

const char *as_spamd_verb_name(enum as_spamd_verb v);
/* The name of an exit code ("EX_PROTOCOL"). */
const char *as_spamd_ex_name(int ex);

/* Parses the head at the start of buf[0..len).  Returns 1 with req filled
 * when the blank line ending it is there, 0 when more bytes are needed
 * (and fewer than AS_SPAMD_MAX_HEAD arrived), or -1 with the exit code to
 * answer in *ex and a message in err. */
int as_spamd_parse_head(const char *buf, size_t len, struct as_spamd_request *req, int *ex,
                        char *err, size_t errlen);

/* Inflates zlib data (RFC 1950) into out, at most max bytes.  Returns 0,
 * or -1 with a message in err (corrupt, truncated, or more than max). */
int as_spamd_inflate(const void *in, size_t inlen, size_t max, struct sbuf *out, char *err,
                     size_t errlen);

/* Networks: IPv4 and IPv6 prefixes. */
struct as_spamd_net {
    int family;                   /* 4 or 6 */
    unsigned char addr[16];
    int bits;
};
/* "192.0.2.0/24", "2001:db8::/32", or a single address.  Returns 0 or -1. */
int as_spamd_net_parse(const char *s, struct as_spamd_net *out);
/* 1 if the address text ip is inside one of nets[0..n). */
int as_spamd_net_match(const struct as_spamd_net *nets, size_t n, const char *ip);

/* The relay that handed a message to the first untrusted hop, from the
 * value (unfolded) of one Received field: "from HELO (... [IP])" as
 * Postfix, Sendmail and Exim write it.  Fills helo and ip (NUL-terminated;
 * "" when absent).  Returns 0, or -1 when the field has no "from" clause
 * with an IP address. */
int as_spamd_received_from(const char *value, char *helo, size_t helolen, char *ip,
                           size_t iplen);

#endif
