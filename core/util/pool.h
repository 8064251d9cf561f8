/*
 * pool.h - per-task memory arena (the public allocation calls are in
 * authscan/plugin.h).
 *
 * A pool hands out memory (zeroed unless asked otherwise) from large
 * chunks and frees everything at once, running registered destroy hooks
 * in reverse order first.  Every
 * per-scan allocation comes from the task's pool, so a scan that is
 * cancelled half way (client gone, timeout) leaks nothing.
 */
#ifndef AS_POOL_H
#define AS_POOL_H

#include <stdarg.h>
#include <stddef.h>
#include "authscan/plugin.h"

struct as_pool *as_pool_new(size_t chunk_size);   /* 0 = default (16 KiB) */
void as_pool_destroy(struct as_pool *pool);
size_t as_pool_allocated(const struct as_pool *pool); /* bytes obtained from malloc */
char *as_pool_vprintf(struct as_pool *pool, const char *fmt, va_list ap);
/* n bytes of p, followed by a NUL byte. */
void *as_pool_memdup(struct as_pool *pool, const void *p, size_t n);

#endif
