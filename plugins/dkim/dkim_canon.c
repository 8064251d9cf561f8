/*
 * dkim_canon.c - RFC 6376 3.4 canonicalization (see dkim_canon.h).
 */
#include <stdint.h>
#include <string.h>

#include "dkim_canon.h"

static int is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* 0x80 in each byte of v that is zero, nothing elsewhere: the blank
 * searches below look at eight bytes at a time (a body is mostly words,
 * and a byte-at-a-time scan was most of the canonicalization). */
static uint64_t zero_bytes(uint64_t v)
{
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7fULL;
    return ~(((v & low7) + low7) | v | low7);
}

#define BYTES8(c) (0x0101010101010101ULL * (unsigned char)(c))

/* The first SP or HTAB in p[i..n), or n. */
static size_t next_wsp(const char *p, size_t i, size_t n)
{
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        if (zero_bytes(x ^ BYTES8(' ')) | zero_bytes(x ^ BYTES8('\t')))
            break;
    }
    while (i < n && !is_wsp(p[i]))
        i++;
    return i;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

size_t dkimcanon_header(const char *field, size_t n, int relaxed, int last, char *out)
{
    size_t k = 0;
    if (!relaxed) {
        for (size_t i = 0; i < n; i++) {
            if (field[i] == '\n' && (i == 0 || field[i - 1] != '\r'))
                out[k++] = '\r';
            out[k++] = field[i];
        }
    } else {
        const char *colon = memchr(field, ':', n);
        size_t nl = colon ? (size_t)(colon - field) : n;
        while (nl && is_wsp(field[nl - 1]))
            nl--;
        for (size_t i = 0; i < nl; i++)
            out[k++] = lower(field[i]);
        if (colon) {
            out[k++] = ':';
            int pending = 0, started = 0;
            for (size_t i = (size_t)(colon - field) + 1; i < n; i++) {
                char c = field[i];
                /* unfold: line breaks vanish, the WSP after them stays */
                if (c == '\n' || (c == '\r' && i + 1 < n && field[i + 1] == '\n'))
                    continue;
                if (is_wsp(c)) {
                    pending = 1;
                    continue;
                }
                if (pending && started)
                    out[k++] = ' ';
                pending = 0;
                started = 1;
                out[k++] = c;
            }
        }
    }
    if (!last) {
        out[k++] = '\r';
        out[k++] = '\n';
    }
    return k;
}

size_t dkimcanon_strip_b(const char *field, size_t n, struct dkim_slice b, char *out)
{
    if (b.p < field || b.p + b.n > field + n) {
        memcpy(out, field, n);
        return n;
    }
    size_t head = (size_t)(b.p - field);
    memcpy(out, field, head);
    memcpy(out + head, b.p + b.n, n - head - b.n);
    return n - b.n;
}

static const char crlf[] = "\r\n";

/* 1 when a line (no line end, no trailing blanks) is already in relaxed
 * canonical form: no HTAB and no two blanks in a row. */
static int relaxed_clean(const char *l, size_t n)
{
    size_t k = 0;
    for (; k + 9 <= n; k += 8) {
        uint64_t x, y;
        memcpy(&x, l + k, 8);
        memcpy(&y, l + k + 1, 8);
        if (zero_bytes(x ^ BYTES8('\t')) |
            (zero_bytes(x ^ BYTES8(' ')) & zero_bytes(y ^ BYTES8(' '))))
            return 0;
    }
    for (; k < n; k++)
        if (l[k] == '\t' || (l[k] == ' ' && k + 1 < n && l[k + 1] == ' '))
            return 0;
    return 1;
}

void dkimcanon_body(const char *p, size_t n, int relaxed, dkimcanon_emit_fn emit, void *arg)
{
    size_t empty = 0;
    int any = 0;
    size_t i = 0;
    /* Lines already canonical (CRLF-terminated, not after held-back empty
     * lines, and for relaxed with nothing to change) are handed over as
     * one run of the input: most bodies are a handful of emits, not one
     * or more per line. */
    size_t run = 0, run_end = 0;
    while (i < n) {
        const char *nlp = memchr(p + i, '\n', n - i);
        size_t e = nlp ? (size_t)(nlp - p) : n;
        size_t next = nlp ? e + 1 : n;
        int crlf_end = nlp && e > i && p[e - 1] == '\r';
        if (crlf_end)
            e--;
        const char *l = p + i;
        size_t ln = e - i, start = i;
        i = next;
        if (relaxed)
            while (ln && is_wsp(l[ln - 1]))
                ln--;
        if (ln == 0) {
            empty++;
            continue;
        }
        if (crlf_end && !empty && run_end == start && ln == e - start &&
            (!relaxed || relaxed_clean(l, ln))) {
            run_end = next;
            any = 1;
            continue;
        }
        if (run_end > run)
            emit(arg, p + run, run_end - run);
        run = run_end = next;
        for (; empty; empty--)
            emit(arg, crlf, 2);
        any = 1;
        if (!relaxed) {
            emit(arg, l, ln);
        } else {
            /* A single SP between words is canonical already: emit runs
             * that end only where whitespace must change (a tab, several
             * blanks), not a piece per word. */
            size_t s = 0, piece = 0;
            while ((s = next_wsp(l, s, ln)) < ln) {
                size_t t = s + 1;
                while (t < ln && is_wsp(l[t]))
                    t++;
                if (t - s == 1 && l[s] == ' ') {
                    s = t;
                    continue;
                }
                if (s > piece)
                    emit(arg, l + piece, s - piece);
                emit(arg, " ", 1);
                piece = s = t;
            }
            if (ln > piece)
                emit(arg, l + piece, ln - piece);
        }
        emit(arg, crlf, 2);
    }
    if (run_end > run)
        emit(arg, p + run, run_end - run);
    if (!any && !relaxed)
        emit(arg, crlf, 2);
}
