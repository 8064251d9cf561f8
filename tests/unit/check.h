/*
 * check.h - a minimal table-friendly test harness for the unit tests.
 *
 *   CHECK(cond)                    fails with the condition text
 *   CHECK_STR(got, want)           "got X, want Y" (NULL-safe)
 *   CHECK_INT(got, want)
 *   CHECK_DBL(got, want)           with 1e-9 tolerance
 *   return check_done();           in main(): prints "N passed, N failed"
 *
 * Each CHECK counts as one assertion; the process exits non-zero if any
 * failed, which is what ctest looks at.
 */
#ifndef AS_TEST_CHECK_H
#define AS_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(c) do { if (c) check_passed++; else { check_failed++; \
    fprintf(stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #c); } } while (0)

#define CHECK_STR(got, want) do { const char *g_ = (got), *w_ = (want); \
    if ((g_ == NULL && w_ == NULL) || (g_ && w_ && strcmp(g_, w_) == 0)) check_passed++; \
    else { check_failed++; fprintf(stderr, "%s:%d: FAIL: %s: got \"%s\", want \"%s\"\n", \
        __FILE__, __LINE__, #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } } while (0)

#define CHECK_INT(got, want) do { long long g_ = (long long)(got), w_ = (long long)(want); \
    if (g_ == w_) check_passed++; else { check_failed++; \
    fprintf(stderr, "%s:%d: FAIL: %s: got %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); } \
    } while (0)

#define CHECK_DBL(got, want) do { double g_ = (got), w_ = (want); \
    if (fabs(g_ - w_) < 1e-9) check_passed++; else { check_failed++; \
    fprintf(stderr, "%s:%d: FAIL: %s: got %g, want %g\n", __FILE__, __LINE__, #got, g_, w_); } \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
