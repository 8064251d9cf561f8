/*
 * poison.c - see poison.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "scan/poison.h"
#include "util/util.h"

#define NENTRIES (AS_POISON_BUCKETS * AS_POISON_WAYS)

/* Entry meta word: expiry (whole seconds of CLOCK_MONOTONIC) << 32 |
 * crashes << 16 | flags.  One word, so a reader copies it in one load. */
struct entry {
    uint64_t digest;              /* 0: empty */
    uint64_t meta;
};

struct slot {
    uint64_t running;             /* digest whose code runs now, 0: none */
    uint32_t hiwater;             /* inflight[0..hiwater) may be in use */
    uint32_t overflow;            /* a scan could not be listed */
    uint64_t inflight[AS_POISON_SLOT_CAP];   /* 0: free */
};

struct as_poison {
    size_t maplen;
    size_t nslots;
    uint64_t key[2];
    uint32_t seq;                 /* odd while the master writes an entry */
    uint32_t live;                /* entries ever filled: 0 skips lookups */
    struct entry table[NENTRIES];
    struct slot slots[];
};

/* The worker's side: its region and slot, and which slot entries are free
 * (a private stack: only this process allocates in its slot). */
static struct as_poison *self_region;
static struct slot *self_slot;
static uint32_t free_stack[AS_POISON_SLOT_CAP];
static uint32_t nfree;

static inline uint64_t load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

/* ---- digest: SipHash-1-3 (Aumasson & Bernstein), streaming ------------- */
/* 1-3 rather than 2-4: the variant Python and Rust use for hash tables
 * facing attackers; the output is never shown to anyone, and the key
 * changes at every start. */

struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail;
    size_t ntail, total;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(s) do { \
    (s)->v0 += (s)->v1; (s)->v1 = ROTL((s)->v1, 13); (s)->v1 ^= (s)->v0; \
    (s)->v0 = ROTL((s)->v0, 32); (s)->v2 += (s)->v3; (s)->v3 = ROTL((s)->v3, 16); \
    (s)->v3 ^= (s)->v2; (s)->v0 += (s)->v3; (s)->v3 = ROTL((s)->v3, 21); \
    (s)->v3 ^= (s)->v0; (s)->v2 += (s)->v1; (s)->v1 = ROTL((s)->v1, 17); \
    (s)->v1 ^= (s)->v2; (s)->v2 = ROTL((s)->v2, 32); } while (0)

static inline uint64_t le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static void sip_init(struct sip *s, const uint64_t key[2])
{
    s->v0 = key[0] ^ 0x736f6d6570736575ULL;
    s->v1 = key[1] ^ 0x646f72616e646f6dULL;
    s->v2 = key[0] ^ 0x6c7967656e657261ULL;
    s->v3 = key[1] ^ 0x7465646279746573ULL;
    s->tail = 0;
    s->ntail = s->total = 0;
}

static inline void sip_block(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    SIPROUND(s);
    s->v0 ^= m;
}

static void sip_feed(struct sip *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->total += len;
    while (s->ntail && len) {
        s->tail |= (uint64_t)*p++ << (8 * s->ntail);
        len--;
        if (++s->ntail == 8) {
            sip_block(s, s->tail);
            s->tail = 0;
            s->ntail = 0;
        }
    }
    if (len >= 8) {
        /* the state in locals: stores through s could alias p (a char
         * pointer), which would make the compiler reload it every block */
        struct sip l = *s;
        for (; len >= 8; p += 8, len -= 8) sip_block(&l, le64(p));
        *s = l;
    }
    for (; len; len--) s->tail |= (uint64_t)*p++ << (8 * s->ntail++);
}

static uint64_t sip_final(struct sip *s)
{
    uint64_t b = ((uint64_t)(s->total & 0xff) << 56) | s->tail;
    sip_block(s, b);
    s->v2 ^= 0xff;
    SIPROUND(s);
    SIPROUND(s);
    SIPROUND(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* Where the message starts once its leading Received fields are skipped:
 * the MTA prepends a new one (with its queue id and the time) on every
 * delivery attempt, and Postfix passes it to milters. */
static size_t skip_received(const char *msg, size_t len)
{
    size_t off = 0;
    while (len - off >= 9 && as_memcaseeq(msg + off, "Received:", 9)) {
        do {   /* the field and its continuation lines (RFC 5322 2.2.3) */
            const char *nl = memchr(msg + off, '\n', len - off);
            if (!nl) return len;
            off = (size_t)(nl - msg) + 1;
        } while (off < len && (msg[off] == ' ' || msg[off] == '\t'));
    }
    return off;
}

uint64_t as_poison_digest(const struct as_poison *p, const char *msg, size_t len)
{
    static const uint64_t nokey[2] = { 0, 0 };
    struct sip s;
    sip_init(&s, p ? p->key : nokey);
    size_t off = skip_received(msg, len);
    msg += off;
    len -= off;
    if (len <= AS_POISON_HEAD + AS_POISON_TAIL) {
        sip_feed(&s, msg, len);
    } else {
        sip_feed(&s, msg, AS_POISON_HEAD);
        sip_feed(&s, msg + len - AS_POISON_TAIL, AS_POISON_TAIL);
    }
    uint64_t n = (uint64_t)len;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(n >> (8 * i));
    sip_feed(&s, lb, sizeof lb);
    uint64_t d = sip_final(&s);
    return d ? d : 1;   /* 0 means "empty" in the slots and the table */
}

void as_poison_hex(uint64_t digest, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)digest);
}

/* ---- region ------------------------------------------------------------ */

struct as_poison *as_poison_new(size_t nslots, char *err, size_t errlen)
{
    size_t len = sizeof(struct as_poison) + nslots * sizeof(struct slot);
    /* Pages are only backed once touched: a slot costs memory only up to
     * the most scans its worker ever had in flight at once. */
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %zu bytes for the poison table: %s", len,
                 strerror(errno));
        return NULL;
    }
    struct as_poison *p = m;
    p->maplen = len;
    p->nslots = nslots;
    if (getrandom(p->key, sizeof p->key, 0) != (ssize_t)sizeof p->key) {
        /* getrandom(2) blocks until the pool is seeded, and only fails on
         * kernels without it: fall back to the clock and pid rather than
         * refusing to start. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p->key[0] = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec;
        p->key[1] = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)m;
    }
    return p;
}

void as_poison_free(struct as_poison *p)
{
    if (!p) return;
    if (self_region == p) {
        self_region = NULL;
        self_slot = NULL;
    }
    munmap(p, p->maplen);
}

void as_poison_slot_reset(struct as_poison *p, size_t i)
{
    if (!p || i >= p->nslots) return;
    struct slot *s = &p->slots[i];
    /* only what was used: the rest of the slot was never touched */
    memset(s->inflight, 0, (size_t)s->hiwater * sizeof s->inflight[0]);
    s->running = 0;
    s->hiwater = 0;
    s->overflow = 0;
}

/* ---- suspect table ----------------------------------------------------- */

static inline uint64_t meta_make(uint32_t expires, unsigned crashes, unsigned flags)
{
    if (crashes > 0xffff) crashes = 0xffff;
    return ((uint64_t)expires << 32) | ((uint64_t)crashes << 16) | (flags & 0xffff);
}

static void meta_read(uint64_t meta, struct as_poison_entry *e)
{
    e->expires = (double)(uint32_t)(meta >> 32);
    e->crashes = (unsigned)((meta >> 16) & 0xffff);
    e->flags = (unsigned)(meta & 0xffff);
}

static int entry_is_poison(const struct as_poison_entry *e)
{
    return (e->flags & (AS_POISON_CULPRIT | AS_POISON_SOLE)) || e->crashes >= 2;
}

static size_t bucket_of(uint64_t digest)
{
    /* the digest is a keyed hash: its low bits are uniform */
    return (size_t)(digest & (AS_POISON_BUCKETS - 1)) * AS_POISON_WAYS;
}

/* One copy of digest's bucket taken under the sequence lock.  Returns the
 * way holding digest (with e filled), -1 if absent, -2 if no stable copy
 * could be taken (the master died while writing): then not suspect. */
static int bucket_read(const struct as_poison *p, uint64_t digest, struct as_poison_entry *e)
{
    const struct entry *b = &p->table[bucket_of(digest)];
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t s1 = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) continue;
        int found = -1;
        uint64_t meta = 0;
        for (int w = 0; w < AS_POISON_WAYS; w++)
            if (load64(&b[w].digest) == digest) {
                meta = load64(&b[w].meta);
                found = w;
                break;
            }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&p->seq, __ATOMIC_RELAXED) != s1) continue;
        if (found >= 0) {
            e->digest = digest;
            meta_read(meta, e);
        }
        return found;
    }
    return -2;
}

int as_poison_find(const struct as_poison *p, uint64_t digest, double now,
                   struct as_poison_entry *e)
{
    if (!p || !digest || __atomic_load_n(&p->live, __ATOMIC_RELAXED) == 0) return 0;
    struct as_poison_entry tmp;
    if (bucket_read(p, digest, &tmp) < 0 || tmp.expires <= now) return 0;
    *e = tmp;
    return 1;
}

int as_poison_lookup(const struct as_poison *p, uint64_t digest, double now,
                     struct as_poison_entry *e)
{
    struct as_poison_entry tmp;
    if (!as_poison_find(p, digest, now, &tmp) || !entry_is_poison(&tmp)) return 0;
    *e = tmp;
    return 1;
}

/* Master only.  Adds one crash (with flags) to digest's entry.  Returns 1
 * if the entry is poison afterwards. */
static int upsert(struct as_poison *p, uint64_t digest, unsigned flags, double now, double ttl)
{
    struct entry *b = &p->table[bucket_of(digest)];
    struct as_poison_entry cur = { digest, 0, 0, 0 };
    int way = -1;
    for (int w = 0; w < AS_POISON_WAYS; w++)
        if (b[w].digest == digest) {
            way = w;
            meta_read(b[w].meta, &cur);
            if (cur.expires <= now) cur.crashes = cur.flags = 0;   /* a new story */
            break;
        }
    cur.crashes++;
    cur.flags |= flags;
    int poison = entry_is_poison(&cur);
    if (way < 0) {
        /* an empty or expired way; else the weakest: never a poison entry
         * for a mere bystander, else the one that expires first */
        double best = 0;
        for (int w = 0; w < AS_POISON_WAYS; w++) {
            struct as_poison_entry o;
            if (!b[w].digest) {
                way = w;
                break;
            }
            meta_read(b[w].meta, &o);
            double rank = o.expires <= now ? -1 : (entry_is_poison(&o) ? 1e12 : 0) + o.expires;
            if (!poison && rank >= 1e12) continue;
            if (way < 0 || rank < best) {
                way = w;
                best = rank;
            }
        }
        if (way < 0) return 0;   /* a full bucket of poison keeps its entries */
        if (!b[way].digest) __atomic_store_n(&p->live, p->live + 1, __ATOMIC_RELAXED);
    }
    double exp = now + ttl + 1;   /* whole seconds, rounded up */
    if (exp > 4294967295.0) exp = 4294967295.0;
    __atomic_store_n(&p->seq, p->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    store64(&b[way].digest, digest);
    store64(&b[way].meta, meta_make((uint32_t)exp, cur.crashes, cur.flags));
    __atomic_store_n(&p->seq, p->seq + 1, __ATOMIC_RELEASE);
    return poison;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void as_poison_record_crash(struct as_poison *p, size_t i, int fault, double now, double ttl,
                            struct as_poison_report *rep)
{
    memset(rep, 0, sizeof *rep);
    if (!p || i >= p->nslots) return;
    struct slot *s = &p->slots[i];
    uint32_t hi = s->hiwater > AS_POISON_SLOT_CAP ? AS_POISON_SLOT_CAP : s->hiwater;
    uint64_t *ds = xmalloc((hi + 1) * sizeof *ds);
    size_t n = 0;
    for (uint32_t k = 0; k < hi; k++)
        if (s->inflight[k]) ds[n++] = s->inflight[k];
    /* the same message twice in flight (two deliveries at once) is one
     * message in this crash */
    qsort(ds, n, sizeof *ds, cmp_u64);
    size_t u = 0;
    for (size_t k = 0; k < n; k++)
        if (!u || ds[u - 1] != ds[k]) ds[u++] = ds[k];
    rep->inflight = u;
    rep->overflow = s->overflow != 0;
    rep->running = s->running;
    if (fault) {
        if (rep->running) rep->poisoned += (size_t)upsert(p, rep->running, AS_POISON_CULPRIT,
                                                          now, ttl);
        unsigned sole = u == 1 && !rep->overflow ? AS_POISON_SOLE : 0;
        for (size_t k = 0; k < u; k++)
            if (ds[k] != rep->running) rep->poisoned += (size_t)upsert(p, ds[k], sole, now, ttl);
    }
    free(ds);
    as_poison_slot_reset(p, i);
}

/* ---- worker side --------------------------------------------------------- */

void as_poison_attach(struct as_poison *p, size_t i)
{
    self_region = p && i < p->nslots ? p : NULL;
    self_slot = self_region ? &p->slots[i] : NULL;
    nfree = 0;
}

struct as_poison *as_poison_self(void) { return self_region; }

int as_poison_track(uint64_t digest)
{
    struct slot *s = self_slot;
    if (!s) return -1;
    uint32_t k;
    if (nfree) {
        k = free_stack[--nfree];
    } else if (s->hiwater < AS_POISON_SLOT_CAP) {
        k = s->hiwater;
        __atomic_store_n(&s->hiwater, k + 1, __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(&s->overflow, 1, __ATOMIC_RELAXED);
        return -1;
    }
    store64(&s->inflight[k], digest);
    return (int)k;
}

void as_poison_untrack(int handle)
{
    struct slot *s = self_slot;
    if (!s || handle < 0 || handle >= AS_POISON_SLOT_CAP) return;
    store64(&s->inflight[handle], 0);
    free_stack[nfree++] = (uint32_t)handle;
}

uint64_t as_poison_enter(uint64_t digest)
{
    struct slot *s = self_slot;
    if (!s) return 0;
    uint64_t prev = s->running;
    store64(&s->running, digest);
    return prev;
}

void as_poison_leave(uint64_t prev)
{
    if (self_slot) store64(&self_slot->running, prev);
}
