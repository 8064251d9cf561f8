/*
 * poison.h - recognising a message that killed a worker ("poison"), so
 * that its retry is answered instead of killing the next worker.
 *
 * A bug in a library we link (libopendkim, libspf2...) can crash a worker
 * on one message.  The MTA then retries that message, and without help it
 * would kill a worker on every retry.  So the master maps, before forking,
 * one region shared with every worker (MAP_SHARED|MAP_ANONYMOUS):
 *
 *   a slot per worker  the keyed digests of the messages that worker has
 *                      in flight (set when a scan starts, cleared when its
 *                      task is freed), and the digest of the message whose
 *                      code runs right now (set around every piece of scan
 *                      code: plugin scan(), DNS callbacks, the deadline,
 *                      the reply, the task's teardown);
 *   a suspect table    digests with a crash count, flags and an expiry,
 *                      written by the master only, read by every worker.
 *
 * When a worker dies of a fault (SIGSEGV, SIGABRT, ... or a non-zero exit
 * such as a sanitizer report), the master moves its slot into the suspect
 * table (as_poison_record_crash).  A digest is poison when
 *   - its code was running when the worker died (the culprit), or
 *   - it was the only message in flight, or
 *   - it was in flight in two crashes (a crash outside marked code, or a
 *     corrupted heap noticed later by another message);
 * so one crash with 50 scans in flight marks one message, not 50.  Workers
 * look each new message up (as_poison_lookup) and answer a poison one with
 * the configured action instead of scanning it.  Entries expire after
 * poison.ttl; the table is bounded (set-associative, a weak entry never
 * evicts a poison one).
 *
 * The digest is SipHash-1-3 under a key drawn at each master start, so
 * nobody outside can make an innocent message share a poison digest.  It
 * covers the message without its leading Received fields (the MTA adds a
 * new one on each delivery attempt), at most its first AS_POISON_HEAD and
 * last AS_POISON_TAIL bytes, and its length: a retry has the same digest,
 * and hashing every byte of large bodies would cost more than the rest of
 * the bookkeeping (see docs/security.md for the measurement).
 *
 * Concurrency: a worker's slot has one writer (that worker) and is read by
 * the master only after the worker is dead.  The suspect table has one
 * writer (the master) and is read under a sequence lock; a reader that
 * cannot get a stable copy (the master died mid-write) treats the message
 * as not suspect.  No locks, no system calls on the scan path.
 */
#ifndef AS_POISON_H
#define AS_POISON_H

#include <stddef.h>
#include <stdint.h>

#define AS_POISON_HEAD 2048
#define AS_POISON_TAIL 512
#define AS_POISON_SLOT_CAP 1024      /* in-flight digests per worker */
#define AS_POISON_BUCKETS 2048
#define AS_POISON_WAYS 8             /* suspect table: 16,384 entries */

struct as_poison;

/* Flags of a suspect entry. */
#define AS_POISON_CULPRIT 1u   /* its code was running when a worker died */
#define AS_POISON_SOLE 2u      /* it was the only message in flight at a crash */

struct as_poison_entry {
    uint64_t digest;
    unsigned crashes;          /* crashes it was in flight at */
    unsigned flags;            /* AS_POISON_* */
    double expires;            /* as_now() seconds */
};

/* What a dead worker's slot held (as_poison_record_crash). */
struct as_poison_report {
    size_t inflight;           /* messages it had in flight */
    int overflow;              /* more than the slot holds: the list is partial */
    uint64_t running;          /* the message whose code was running, or 0 */
    size_t poisoned;           /* digests that are poison now */
};

/* ---- master ---- */

/* Maps the shared region for nslots worker slots and draws the key.
 * NULL with err if the region cannot be mapped. */
struct as_poison *as_poison_new(size_t nslots, char *err, size_t errlen);
void as_poison_free(struct as_poison *p);
/* Empties slot i (before a new worker gets it). */
void as_poison_slot_reset(struct as_poison *p, size_t slot);
/* Reads slot i of a worker that is gone.  If fault, moves its digests into
 * the suspect table with expiry now + ttl.  Fills rep either way (whether
 * the worker was scanning), then empties the slot. */
void as_poison_record_crash(struct as_poison *p, size_t slot, int fault, double now,
                            double ttl, struct as_poison_report *rep);

/* ---- worker ---- */

/* In the worker after fork: this process writes slot i from now on. */
void as_poison_attach(struct as_poison *p, size_t slot);
/* The region this process is attached to, or NULL (master, CLI). */
struct as_poison *as_poison_self(void);
/* The message's keyed digest; never 0. */
uint64_t as_poison_digest(const struct as_poison *p, const char *msg, size_t len);
/* Lists digest as in flight; returns a handle for as_poison_untrack, or -1
 * if this process is not attached or the slot is full. */
int as_poison_track(uint64_t digest);
void as_poison_untrack(int handle);
/* Marks digest as the message whose code runs now; returns the previous
 * mark, to be restored with as_poison_leave (marks nest). */
uint64_t as_poison_enter(uint64_t digest);
void as_poison_leave(uint64_t prev);
/* 1 and *e filled if digest is poison at time now, else 0. */
int as_poison_lookup(const struct as_poison *p, uint64_t digest, double now,
                     struct as_poison_entry *e);

/* The entry for digest whatever its state (tests, logs); 0 if absent. */
int as_poison_find(const struct as_poison *p, uint64_t digest, double now,
                   struct as_poison_entry *e);
/* "%016llx" of a digest, for log lines on both sides. */
void as_poison_hex(uint64_t digest, char out[17]);

#endif
