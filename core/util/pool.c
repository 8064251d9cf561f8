/*
 * pool.c - see pool.h.
 *
 * Small requests are carved from the current chunk; a request larger than
 * a quarter chunk gets its own block so one big header does not waste a
 * chunk.  Alignment is that of max_align_t.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include "util/pool.h"
#include "util/util.h"

#define POOL_ALIGN (_Alignof(max_align_t))

struct pool_block {
    struct pool_block *next;
    size_t size;
    max_align_t data[];
};

struct pool_hook {
    struct pool_hook *next;
    void (*fn)(void *);
    void *arg;
};

struct as_pool {
    struct pool_block *blocks;
    char *cur;
    size_t left;
    size_t chunk;
    size_t allocated;
    struct pool_hook *hooks;
};

struct as_pool *as_pool_new(size_t chunk_size)
{
    struct as_pool *p = xcalloc(1, sizeof *p);
    p->chunk = chunk_size ? chunk_size : 16384;
    return p;
}

static void *block_new(struct as_pool *p, size_t size)
{
    struct pool_block *b = xmalloc(sizeof *b + size);
    b->size = size;
    b->next = p->blocks;
    p->blocks = b;
    p->allocated += sizeof *b + size;
    return b->data;
}

/* Uninitialized memory, for the callers below that fill every byte they
 * asked for (a message copy is kilobytes: zeroing it first is waste). */
static void *pool_alloc_raw(struct as_pool *p, size_t size)
{
    size = (size + POOL_ALIGN - 1) & ~(POOL_ALIGN - 1);
    if (size == 0) size = POOL_ALIGN;
    if (size > p->chunk / 4) return block_new(p, size);
    if (size > p->left) {
        p->cur = block_new(p, p->chunk);
        p->left = p->chunk;
    }
    void *m = p->cur;
    p->cur += size;
    p->left -= size;
    return m;
}

void *as_pool_alloc(struct as_pool *p, size_t size)
{
    void *m = pool_alloc_raw(p, size);
    memset(m, 0, size);
    return m;
}

void *as_pool_alloc_uninit(struct as_pool *p, size_t size)
{
    return pool_alloc_raw(p, size);
}

void *as_pool_memdup(struct as_pool *p, const void *src, size_t n)
{
    /* NUL-terminated too: a copied message or field may be read as a C string */
    return as_pool_strndup(p, src, n);
}

char *as_pool_strndup(struct as_pool *p, const char *s, size_t n)
{
    char *m = pool_alloc_raw(p, n + 1);
    if (n) memcpy(m, s, n);
    m[n] = '\0';
    return m;
}

char *as_pool_strdup(struct as_pool *p, const char *s)
{
    return s ? as_pool_strndup(p, s, strlen(s)) : NULL;
}

/* Appends v in decimal (with a minus sign when neg) at o, if it fits
 * before end; returns the new end of the output, or NULL. */
static char *put_dec(char *o, const char *end, unsigned long long v, int neg)
{
    char d[AS_U64_DEC_MAX + 1];
    size_t n = 0;
    if (neg) d[n++] = '-';
    n += as_u64_dec(d + n, v);
    if ((size_t)(end - o) < n) return NULL;
    memcpy(o, d, n);
    return o + n;
}

/*
 * The pool's strings are names, keys and comments: a format of %s and
 * integers, which glibc's vsnprintf spends about a thousand instructions
 * on (a FILE set up and torn down per call; about 23 calls a message with
 * everything on).  This formats %s, %.*s, %%, and %d %i %u with the
 * length modifiers l, ll and z, into out; anything else (a flag, a width,
 * a precision other than .*, another conversion) or output that does not
 * fit returns -1, and the caller formats with vsnprintf from the
 * untouched argument list.  Else it returns the length written (out is
 * not NUL-terminated).
 */
static int format_simple(char *out, size_t size, const char *fmt, va_list ap)
{
    char *o = out;
    const char *end = out + size;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            if (o == end) return -1;
            *o++ = *f;
            continue;
        }
        f++;
        if (*f == '%') {
            if (o == end) return -1;
            *o++ = '%';
            continue;
        }
        if (f[0] == '.' && f[1] == '*' && f[2] == 's') {
            int prec = va_arg(ap, int);
            const char *s = va_arg(ap, const char *);
            if (prec < 0 || !s) return -1;
            size_t n = strnlen(s, (size_t)prec);
            if ((size_t)(end - o) < n) return -1;
            memcpy(o, s, n);
            o += n;
            f += 2;
            continue;
        }
        if (*f == 's') {
            const char *s = va_arg(ap, const char *);
            if (!s) return -1;                 /* glibc's "(null)" */
            size_t n = strlen(s);
            if ((size_t)(end - o) < n) return -1;
            memcpy(o, s, n);
            o += n;
            continue;
        }
        int len = 0;                            /* 0 int, 1 long, 2 long long, 3 size_t */
        if (*f == 'z') {
            len = 3;
            f++;
        } else if (*f == 'l') {
            len = 1;
            f++;
            if (*f == 'l') {
                len = 2;
                f++;
            }
        }
        if (*f == 'd' || *f == 'i') {
            long long v = len == 0 ? va_arg(ap, int) : len == 1 ? va_arg(ap, long)
                        : len == 2 ? va_arg(ap, long long) : (long long)va_arg(ap, size_t);
            unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
            if (!(o = put_dec(o, end, u, v < 0))) return -1;
        } else if (*f == 'u') {
            unsigned long long v = len == 0 ? va_arg(ap, unsigned)
                                 : len == 1 ? va_arg(ap, unsigned long)
                                 : len == 2 ? va_arg(ap, unsigned long long) : va_arg(ap, size_t);
            if (!(o = put_dec(o, end, v, 0))) return -1;
        } else {
            return -1;
        }
    }
    return (int)(o - out);
}

char *as_pool_vprintf(struct as_pool *p, const char *fmt, va_list ap)
{
    /* Most strings are short: format once into the stack and copy, and
     * only format a second time when the result did not fit. */
    char tmp[256];
    va_list cp;
    va_copy(cp, ap);
    int n = format_simple(tmp, sizeof tmp, fmt, cp);
    va_end(cp);
    if (n >= 0) return as_pool_strndup(p, tmp, (size_t)n);
    va_copy(cp, ap);
    n = vsnprintf(tmp, sizeof tmp, fmt, cp);
    va_end(cp);
    if (n < 0) return as_pool_strdup(p, "");
    if ((size_t)n < sizeof tmp) return as_pool_strndup(p, tmp, (size_t)n);
    char *m = pool_alloc_raw(p, (size_t)n + 1);
    vsnprintf(m, (size_t)n + 1, fmt, ap);
    return m;
}

char *as_pool_printf(struct as_pool *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = as_pool_vprintf(p, fmt, ap);
    va_end(ap);
    return m;
}

int as_pool_on_destroy(struct as_pool *p, void (*fn)(void *), void *arg)
{
    struct pool_hook *h = xmalloc(sizeof *h);
    h->fn = fn;
    h->arg = arg;
    h->next = p->hooks;
    p->hooks = h;
    return 0;
}

void as_pool_destroy(struct as_pool *p)
{
    if (!p) return;
    /* hooks run newest first, so a hook may still use memory of the pool */
    while (p->hooks) {
        struct pool_hook *h = p->hooks;
        p->hooks = h->next;
        h->fn(h->arg);
        free(h);
    }
    while (p->blocks) {
        struct pool_block *b = p->blocks;
        p->blocks = b->next;
        free(b);
    }
    free(p);
}

size_t as_pool_allocated(const struct as_pool *p) { return p->allocated; }
