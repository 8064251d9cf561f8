/*
 * milter_proto.h - the milter wire protocol (version 6, as Postfix and
 * Sendmail speak it): packet framing, command decoding and reply
 * encoding.  No state and no I/O, so that every byte an MTA can send goes
 * through the same bounded code the fuzz target (tests/fuzz/fuzz_milter.c)
 * runs.  The adapter that keeps the conversation is milter_adapter.c.
 *
 * A packet is a 4-byte big-endian length (counting the command byte), one
 * command byte and length - 1 bytes of data.  Strings in the data are
 * NUL-terminated; a packet whose strings are not is malformed.
 */
#ifndef AS_MILTER_PROTO_H
#define AS_MILTER_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

/* Commands from the MTA (SMFIC_*). */
#define AS_MILTER_ABORT 'A'
#define AS_MILTER_BODY 'B'
#define AS_MILTER_CONNECT 'C'
#define AS_MILTER_MACRO 'D'
#define AS_MILTER_BODYEOB 'E'
#define AS_MILTER_HELO 'H'
#define AS_MILTER_QUIT_NC 'K'
#define AS_MILTER_HEADER 'L'
#define AS_MILTER_MAIL 'M'
#define AS_MILTER_EOH 'N'
#define AS_MILTER_OPTNEG 'O'
#define AS_MILTER_QUIT 'Q'
#define AS_MILTER_RCPT 'R'
#define AS_MILTER_DATA 'T'
#define AS_MILTER_UNKNOWN 'U'

/* Replies (SMFIR_*). */
#define AS_MILTER_R_ADDHEADER 'h'
#define AS_MILTER_R_INSHEADER 'i'
#define AS_MILTER_R_CHGHEADER 'm'
#define AS_MILTER_R_QUARANTINE 'q'
#define AS_MILTER_R_ACCEPT 'a'
#define AS_MILTER_R_CONTINUE 'c'
#define AS_MILTER_R_DISCARD 'd'
#define AS_MILTER_R_REJECT 'r'
#define AS_MILTER_R_TEMPFAIL 't'
#define AS_MILTER_R_REPLYCODE 'y'
#define AS_MILTER_R_OPTNEG 'O'

/* Actions the filter may take (SMFIF_*), negotiated. */
#define AS_MILTER_F_ADDHDRS 0x01u
#define AS_MILTER_F_CHGBODY 0x02u
#define AS_MILTER_F_CHGHDRS 0x10u
#define AS_MILTER_F_QUARANTINE 0x20u
#define AS_MILTER_F_CHGFROM 0x40u

/* Protocol steps (SMFIP_*), negotiated. */
#define AS_MILTER_P_NOUNKNOWN 0x100u
#define AS_MILTER_P_NR_HDR 0x80u
#define AS_MILTER_P_NR_CONN 0x1000u
#define AS_MILTER_P_NR_HELO 0x2000u
#define AS_MILTER_P_NR_MAIL 0x4000u
#define AS_MILTER_P_NR_RCPT 0x8000u
#define AS_MILTER_P_NR_DATA 0x10000u
#define AS_MILTER_P_NR_UNKN 0x20000u
#define AS_MILTER_P_NR_EOH 0x40000u
#define AS_MILTER_P_NR_BODY 0x80000u
#define AS_MILTER_P_HDR_LEADSPC 0x100000u

#define AS_MILTER_VERSION 6
/* The most strings one command may carry (a macro packet holds name and
 * value pairs; MAIL and RCPT the address and ESMTP parameters). */
#define AS_MILTER_MAX_ARGS 256

struct as_milter_cmd {
    char code;
    /* OPTNEG */
    uint32_t version, actions, protocol;
    /* CONNECT: hostname, family ('4', '6', 'L' unix, 'U' unknown),
     * port (host order) and address (NULL for 'U') */
    const char *hostname;
    char family;
    unsigned port;
    const char *addr;
    /* MACRO: the command the macros are for */
    char macro_for;
    /* HELO (1), MAIL and RCPT (address, then parameters), HEADER (name,
     * value), MACRO (name, value, name, value ...) */
    const char *args[AS_MILTER_MAX_ARGS];
    size_t nargs;
    /* BODY */
    const char *data;
    size_t len;
};

/* Frames the first packet of buf[0..len): returns the bytes it takes
 * (header included) with *cmd and the data in [*data, *data + *dlen), 0
 * when more bytes are needed, or -1 with a message in err when the length
 * is 0 or over max_packet (the connection must close: the stream cannot
 * be resynchronised). */
long as_milter_frame(const unsigned char *buf, size_t len, size_t max_packet, char *cmd,
                     const char **data, size_t *dlen, char *err, size_t errlen);
/* The length field of a packet header (4 bytes). */
uint32_t as_milter_get32(const unsigned char *p);

/* Decodes one command's data.  data must stay alive and unchanged while
 * out is used (strings point into it).  Unknown command codes decode with
 * no fields (the adapter decides).  Returns 0, or -1 with a message in err
 * when the data does not have the command's shape. */
int as_milter_decode(char code, const char *data, size_t len, struct as_milter_cmd *out,
                     char *err, size_t errlen);

/* Appends one packet to out. */
void as_milter_put(struct sbuf *out, char code, const void *data, size_t len);
/* OPTNEG reply. */
void as_milter_put_optneg(struct sbuf *out, uint32_t version, uint32_t actions,
                          uint32_t protocol);
/* Packets made of NUL-terminated strings (NULL ends the list), after an
 * optional 32-bit index (index < 0: none): ADDHEADER, INSHEADER,
 * CHGHEADER, QUARANTINE, REPLYCODE. */
void as_milter_put_strings(struct sbuf *out, char code, long index, ...);

/* An SMTP reply text made safe for a milter reply: CR, LF, other control
 * characters and non-ASCII bytes become '?', '%' is doubled (libmilter
 * and Sendmail treat a single '%' as a macro), at most max bytes of the
 * input are used.  Appended to out (not NUL-terminated). */
void as_milter_reply_text(struct sbuf *out, const char *text, size_t max);

#endif
