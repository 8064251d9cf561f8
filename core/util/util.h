/*
 * util.h - small building blocks: allocation that never returns NULL,
 * a growable byte buffer, and ASCII string helpers.
 *
 * Allocation failure is fatal in exactly one place (as_oom) instead of
 * being checked in a thousand: a scanner that cannot allocate a few bytes
 * cannot do anything useful, and the master restarts the worker.
 */
#ifndef AS_UTIL_H
#define AS_UTIL_H

#include <stddef.h>
#include <stdarg.h>
#include <string.h>
#include "authscan/plugin.h"

#define AS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define AS_UNUSED(x) ((void)(x))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void as_oom(void) __attribute__((noreturn));

/* Growable buffer, always NUL-terminated.  Zero-initialized is empty. */
struct sbuf {
    char *data;
    size_t len;
    size_t cap;
};
void sbuf_reserve(struct sbuf *b, size_t extra);
void sbuf_add(struct sbuf *b, const void *p, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) AS_PRINTF(2, 3);
void sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap);
void sbuf_reset(struct sbuf *b);      /* len = 0, keeps memory */
void sbuf_free(struct sbuf *b);
char *sbuf_steal(struct sbuf *b);    /* caller frees; buffer becomes empty */

/* ASCII-only case handling: mail protocols are ASCII case-insensitive. */
static inline int as_tolower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }
int as_strcaseeq(const char *a, const char *b);
/* Value of a hex digit, or -1. */
static inline int as_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = as_tolower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}
int as_memcaseeq(const char *a, const char *b, size_t n);
void as_str_lower(char *s);
/* Length-bounded safe copy (always terminates when size > 0). */
size_t as_strlcpy(char *dst, const char *src, size_t size);
/* Trims ASCII blanks (SP, HT, CR, LF) in place; returns s. */
char *as_trim(char *s);

/* The decimal digits of v at out, which has room for AS_U64_DEC_MAX
 * bytes; no NUL.  Returns how many were written.  For the hot paths
 * (Redis commands, HTTP reply heads, pool strings), where a printf costs
 * a thousand instructions. */
#define AS_U64_DEC_MAX 20
size_t as_u64_dec(char *out, unsigned long long v);

/* Seconds as a timeval for libevent timers (negative counts as 0). */
struct timeval;
void as_timeval(double secs, struct timeval *tv);

/* Monotonic clock in seconds. */
double as_now(void);

/* Length of the valid UTF-8 sequence at p (n > 0 bytes available; RFC
 * 3629: no overlongs, no surrogates, <= U+10FFFF), or 0 if invalid. */
size_t as_utf8_seq(const unsigned char *p, size_t n);
/* Appends s as a JSON string literal (with quotes) to b.  Invalid UTF-8
 * bytes become U+FFFD so the output is always valid JSON. */
void as_json_string(struct sbuf *b, const char *s, size_t len);

#endif
