/*
 * test_poison.c - the poison table (core/scan/poison.c): the digest, the
 * thresholds (culprit, sole, two crashes), expiry, bounded buckets, the
 * in-flight slot.  One process plays both sides: it attaches to a slot as
 * a worker would, and records the "crash" as the master does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "scan/poison.h"

#define NOW 1000.0
#define TTL 60.0

static struct as_poison *P;

/* Runs one "crash" of slot 0 with these digests in flight and `running`
 * marked; returns the report. */
static struct as_poison_report crash(const uint64_t *inflight, size_t n, uint64_t running,
                                     int fault, double now)
{
    as_poison_attach(P, 0);
    for (size_t i = 0; i < n; i++) CHECK(as_poison_track(inflight[i]) >= 0);
    if (running) as_poison_enter(running);
    struct as_poison_report rep;
    as_poison_record_crash(P, 0, fault, now, TTL, &rep);
    return rep;
}

static int poison(uint64_t d, double now)
{
    struct as_poison_entry e;
    return as_poison_lookup(P, d, now, &e);
}

static void test_digest(void)
{
    const char *m = "From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n";
    uint64_t d = as_poison_digest(P, m, strlen(m));
    CHECK(d != 0);
    CHECK_INT(as_poison_digest(P, m, strlen(m)) == d, 1);
    struct {
        const char *what;
        const char *msg;
        int same;
    } cases[] = {
        { "leading Received skipped", "Received: by mx; 1 Jan\r\nFrom: a@example.com\r\n"
          "Subject: x\r\n\r\nbody\r\n", 1 },
        { "folded leading Received skipped", "received: from a\r\n\tby mx; 1 Jan\r\n"
          "RECEIVED: by b\r\nFrom: a@example.com\r\nSubject: x\r\n\r\nbody\r\n", 1 },
        { "Received in the middle counts", "From: a@example.com\r\nReceived: by mx\r\n"
          "Subject: x\r\n\r\nbody\r\n", 0 },
        { "one byte of body", "From: a@example.com\r\nSubject: x\r\n\r\nbodY\r\n", 0 },
        { "a header", "From: b@example.com\r\nSubject: x\r\n\r\nbody\r\n", 0 },
        { "LF line ends", "From: a@example.com\nSubject: x\n\nbody\n", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t g = as_poison_digest(P, cases[i].msg, strlen(cases[i].msg));
        if ((g == d) != cases[i].same)
            fprintf(stderr, "digest: %s: got %s, want %s\n", cases[i].what,
                    g == d ? "same" : "different", cases[i].same ? "same" : "different");
        CHECK_INT(g == d, cases[i].same);
    }
    /* Received only, or an unterminated one: no crash, a digest */
    CHECK(as_poison_digest(P, "Received: x", 11) != 0);
    CHECK(as_poison_digest(P, "", 0) != 0);

    /* large messages: head, tail and length count; the middle does not */
    size_t n = AS_POISON_HEAD + AS_POISON_TAIL + 5000;
    char *big = malloc(n), *big2 = malloc(n);
    memset(big, 'a', n);
    memcpy(big2, big, n);
    uint64_t b = as_poison_digest(P, big, n);
    big2[AS_POISON_HEAD + 100] = 'b';
    CHECK_INT(as_poison_digest(P, big2, n) == b, 1);
    big2[AS_POISON_HEAD - 1] = 'b';
    CHECK_INT(as_poison_digest(P, big2, n) == b, 0);
    memcpy(big2, big, n);
    big2[n - 1] = 'b';
    CHECK_INT(as_poison_digest(P, big2, n) == b, 0);
    CHECK_INT(as_poison_digest(P, big, n - 1) == b, 0);
    free(big);
    free(big2);

    /* the key makes it: another region (master start) digests differently */
    char err[256];
    struct as_poison *q = as_poison_new(1, err, sizeof err);
    CHECK(q != NULL);
    CHECK(as_poison_digest(q, m, strlen(m)) != d);
    as_poison_free(q);
}

static void test_rules(void)
{
    /* one crash, 50 in flight, one running: only the running one */
    uint64_t fl[50];
    for (int i = 0; i < 50; i++) fl[i] = 0x1000 + (uint64_t)i;
    struct as_poison_report rep = crash(fl, 50, fl[7], 1, NOW);
    CHECK_INT(rep.inflight, 50);
    CHECK_INT(rep.running, fl[7]);
    CHECK_INT(rep.poisoned, 1);
    CHECK_INT(rep.overflow, 0);
    CHECK_INT(poison(fl[7], NOW + 1), 1);
    int innocent = 0;
    for (int i = 0; i < 50; i++) innocent += i != 7 && !poison(fl[i], NOW + 1);
    CHECK_INT(innocent, 49);
    struct as_poison_entry e;
    CHECK_INT(as_poison_find(P, fl[3], NOW + 1, &e), 1);
    CHECK_INT(e.crashes, 1);
    CHECK_INT(e.flags, 0);
    CHECK_INT(as_poison_lookup(P, fl[7], NOW + 1, &e), 1);
    CHECK_INT(e.flags, AS_POISON_CULPRIT);

    /* a second crash (nothing running) with fl[3] in flight again: poison */
    uint64_t again[2] = { fl[3], 0x9999 };
    rep = crash(again, 2, 0, 1, NOW + 10);
    CHECK_INT(rep.poisoned, 1);
    CHECK_INT(poison(fl[3], NOW + 11), 1);
    CHECK_INT(poison(0x9999, NOW + 11), 0);
    CHECK_INT(as_poison_lookup(P, fl[3], NOW + 11, &e), 1);
    CHECK_INT(e.crashes, 2);

    /* the only message in flight, nothing marked running: poison */
    uint64_t one = 0x4242;
    rep = crash(&one, 1, 0, 1, NOW);
    CHECK_INT(rep.poisoned, 1);
    CHECK_INT(as_poison_lookup(P, one, NOW + 1, &e), 1);
    CHECK_INT(e.flags, AS_POISON_SOLE);

    /* the same message twice in flight is one message: still "sole" */
    uint64_t twice[2] = { 0x5151, 0x5151 };
    rep = crash(twice, 2, 0, 1, NOW);
    CHECK_INT(rep.inflight, 1);
    CHECK_INT(poison(0x5151, NOW + 1), 1);

    /* not a fault (SIGKILL): reported, nothing recorded */
    uint64_t k = 0x7777;
    rep = crash(&k, 1, k, 0, NOW);
    CHECK_INT(rep.inflight, 1);
    CHECK_INT(rep.running, k);
    CHECK_INT(rep.poisoned, 0);
    CHECK_INT(as_poison_find(P, k, NOW + 1, &e), 0);

    /* an idle worker's crash records nothing */
    rep = crash(NULL, 0, 0, 1, NOW);
    CHECK_INT(rep.inflight + rep.running + rep.poisoned, 0);

    /* expiry: gone after the ttl; a crash after it starts a new count */
    CHECK_INT(poison(fl[7], NOW + TTL + 2), 0);
    CHECK_INT(as_poison_find(P, fl[3], NOW + 10 + TTL + 2, &e), 0);
    uint64_t late[2] = { fl[3], 0x8888 };
    crash(late, 2, 0, 1, NOW + 10 + TTL + 5);
    CHECK_INT(as_poison_find(P, fl[3], NOW + 10 + TTL + 6, &e), 1);
    CHECK_INT(e.crashes, 1);
    CHECK_INT(poison(fl[3], NOW + 10 + TTL + 6), 0);
}

static void test_slot(void)
{
    /* tracking: handles are reused; untracked digests are not reported */
    as_poison_attach(P, 1);
    int h1 = as_poison_track(0xa1), h2 = as_poison_track(0xa2);
    CHECK(h1 >= 0 && h2 >= 0 && h1 != h2);
    as_poison_untrack(h1);
    int h3 = as_poison_track(0xa3);
    CHECK_INT(h3, h1);
    as_poison_untrack(h2);
    /* marks nest */
    uint64_t m1 = as_poison_enter(0xa3);
    CHECK_INT(m1, 0);
    uint64_t m2 = as_poison_enter(0xb0);
    CHECK_INT(m2, 0xa3);
    as_poison_leave(m2);
    struct as_poison_report rep;
    as_poison_record_crash(P, 1, 0, NOW, TTL, &rep);
    CHECK_INT(rep.inflight, 1);
    CHECK_INT(rep.running, 0xa3);
    /* the slot is empty afterwards */
    as_poison_record_crash(P, 1, 0, NOW, TTL, &rep);
    CHECK_INT(rep.inflight + rep.running, 0);

    /* more scans than the slot holds: the rest are not listed, the report
     * says so, and "sole" cannot be claimed */
    as_poison_attach(P, 2);
    for (int i = 0; i < AS_POISON_SLOT_CAP; i++) as_poison_track(0xc000 + (uint64_t)i);
    CHECK_INT(as_poison_track(0xd000), -1);
    as_poison_record_crash(P, 2, 0, NOW, TTL, &rep);
    CHECK_INT(rep.inflight, AS_POISON_SLOT_CAP);
    CHECK_INT(rep.overflow, 1);

    /* not attached (the CLI): everything is a no-op */
    as_poison_attach(NULL, 0);
    CHECK_INT(as_poison_track(1), -1);
    CHECK_INT(as_poison_enter(5), 0);
    as_poison_untrack(0);
    as_poison_leave(0);
}

static void test_bounded(void)
{
    /* digests of one bucket (same low bits): a full bucket of poison keeps
     * its entries against bystanders, and gives the oldest to new poison */
    uint64_t base = 0x123;
    for (uint64_t i = 1; i <= AS_POISON_WAYS; i++) {
        uint64_t d = base | (i << 32);
        crash(&d, 1, d, 1, NOW + (double)i);
    }
    for (uint64_t i = 1; i <= AS_POISON_WAYS; i++)
        CHECK_INT(poison(base | (i << 32), NOW + 20), 1);
    uint64_t by[2] = { base | (100ULL << 32), 0x555 };
    struct as_poison_report rep = crash(by, 2, 0, 1, NOW + 20);
    struct as_poison_entry e;
    CHECK_INT(as_poison_find(P, by[0], NOW + 21, &e), 0);   /* dropped */
    for (uint64_t i = 1; i <= AS_POISON_WAYS; i++)
        CHECK_INT(poison(base | (i << 32), NOW + 21), 1);
    uint64_t np = base | (200ULL << 32);
    rep = crash(&np, 1, np, 1, NOW + 30);
    CHECK_INT(rep.poisoned, 1);
    CHECK_INT(poison(np, NOW + 31), 1);
    CHECK_INT(poison(base | (1ULL << 32), NOW + 31), 0);    /* the oldest went */
    CHECK_INT(poison(base | (2ULL << 32), NOW + 31), 1);

    /* a bystander may take a weaker (non-poison) entry's way */
    uint64_t b2 = 0x456;
    for (uint64_t i = 1; i <= AS_POISON_WAYS; i++) {
        uint64_t two[2] = { b2 | (i << 32), 0x999 + i };
        crash(two, 2, 0, 1, NOW + (double)i);
    }
    uint64_t two[2] = { b2 | (50ULL << 32), 0x777 };
    crash(two, 2, 0, 1, NOW + 20);
    CHECK_INT(as_poison_find(P, b2 | (50ULL << 32), NOW + 21, &e), 1);
    CHECK_INT(as_poison_find(P, b2 | (1ULL << 32), NOW + 21, &e), 0);
    (void)rep;
}

int main(void)
{
    char err[256];
    P = as_poison_new(4, err, sizeof err);
    if (!P) {
        fprintf(stderr, "as_poison_new: %s\n", err);
        return 1;
    }
    struct as_poison_entry e;
    CHECK_INT(as_poison_lookup(P, 0x1234, NOW, &e), 0);   /* empty table */
    test_digest();
    test_rules();
    test_slot();
    test_bounded();
    as_poison_free(P);
    return check_done();
}
