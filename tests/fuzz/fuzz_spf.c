/*
 * fuzz_spf.c - libFuzzer target for the SPF engine.
 *
 * Input layout: byte 0 selects the mode, the rest is split at '\n':
 *   mode & 1 == 0: "record" - parse/validate, rewrite for libspf2, and
 *                  expand as explanation text (no DNS);
 *   mode & 1 == 1: "check"  - line 1 MAIL FROM, line 2 HELO, line 3 the
 *                  sender domain's TXT record, line 4 a TXT record served
 *                  for every other name; client IP from mode bits.
 *                  Every other lookup gets a deterministic answer derived
 *                  from the name (A/AAAA/MX/PTR/NXDOMAIN/NODATA/TIMEOUT),
 *                  and the full replay loop runs, so libspf2 sees every
 *                  record and macro our validation lets through.
 *
 * Build: cmake -DAUTHSCAN_FUZZ=ON -DCMAKE_C_COMPILER=clang ... (target
 * fuzz_spf), or see docs/spf.md for a one-line clang command.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spf_eval.h"
#include "spf_record.h"

#define FZ_PINS 256

struct fz_pin {
    char name[SPF_NAME_MAX + 1];
    uint16_t type;
    struct as_dns_answer ans;
    struct as_dns_rr rr[2];
    char host[2][SPF_NAME_MAX + 8];
    struct as_str str;
};

struct fz {
    struct fz_pin pins[FZ_PINS];
    size_t n;
    const char *dom_txt, *other_txt;
    char sender_dom[SPF_NAME_MAX + 1];
};

static const struct as_dns_answer *fz_fetch(void *arg, const char *name, uint16_t type)
{
    struct fz *f = arg;
    for (size_t i = 0; i < f->n; i++)
        if (f->pins[i].type == type && strcmp(f->pins[i].name, name) == 0)
            return &f->pins[i].ans;
    return NULL;
}

static void fz_resolve(struct fz *f, const char *name, uint16_t type)
{
    if (f->n >= FZ_PINS || fz_fetch(f, name, type))
        return;
    struct fz_pin *p = &f->pins[f->n++];
    memset(p, 0, sizeof *p);
    strncpy(p->name, name, SPF_NAME_MAX);
    p->type = type;
    p->ans.name = p->name;
    p->ans.type = type;
    p->ans.rr = p->rr;
    unsigned h = 5381;
    for (const char *c = name; *c; c++)
        h = h * 33 + (unsigned char)*c;
    h ^= type;
    p->ans.status = AS_DNS_OK;
    switch (h % 7) {
    case 0: p->ans.status = AS_DNS_NXDOMAIN; return;
    case 1: p->ans.status = AS_DNS_NODATA; return;
    case 2: if (h % 5 == 0) { p->ans.status = AS_DNS_TIMEOUT; return; } break;
    default: break;
    }
    p->ans.nrr = 1 + (h >> 8) % 2;
    for (size_t i = 0; i < p->ans.nrr; i++) {
        struct as_dns_rr *r = &p->rr[i];
        r->type = type;
        switch (type) {
        case AS_DNS_A: r->d.a.s_addr = htonl(0xc0000200u | ((h + (unsigned)i) & 0xff)); break;
        case AS_DNS_AAAA: r->d.aaaa.s6_addr[0] = 0x20; r->d.aaaa.s6_addr[15] = (unsigned char)(h + i); break;
        case AS_DNS_MX:
        case AS_DNS_PTR:
            snprintf(p->host[i], sizeof p->host[i], "h%u.%.200s", (unsigned)i, name);
            if (type == AS_DNS_MX)
                r->d.mx.host = p->host[i];
            else
                r->d.name = p->host[i];
            break;
        case AS_DNS_TXT: {
            const char *t = strcmp(name, f->sender_dom) == 0 ? f->dom_txt : f->other_txt;
            p->str.ptr = t;
            p->str.len = strlen(t);
            r->d.txt.nstrings = 1;
            r->d.txt.strings = &p->str;
            r->d.txt.joined = p->str;
            p->ans.nrr = 1;
            return;
        }
        default: break;
        }
    }
}

static struct spf_engine *engine;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    if (!engine)
        engine = spf_engine_new("fuzz.example", "%{i} is not one of %{d}'s hosts (%{p}, %{c})");
    uint8_t mode = data[0];
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;

    if ((mode & 1) == 0) {
        static struct spf_record rec;
        const char *err;
        size_t len = size - 1;
        if (spf_record_parse(buf, len, &rec, &err) == 0) {
            char out[SPF_RECORD_MAX_LEN * 3 + 64];
            spf_record_rewrite(&rec, mode & 2, out, sizeof out);
        }
        struct spf_macro_ctx mc = { "a@b.example", "a", "b.example", "b.example", "h.example",
                                    "r.example", "p.example", AF_INET, { { 0 } }, 0 };
        char x[600];
        spf_macro_expand(buf, len, &mc, 1, x, sizeof x);
        spf_macro_expand(buf, len, &mc, 0, x, sizeof x);
        free(buf);
        return 0;
    }

    char *lines[4] = { "", "", "", "" };
    char *p = buf;
    for (int i = 0; i < 4 && p; i++) {
        lines[i] = p;
        p = strchr(p, '\n');
        if (p)
            *p++ = 0;
    }
    static struct fz f;
    memset(&f, 0, sizeof f);
    f.dom_txt = lines[2];
    f.other_txt = lines[3];
    const char *at = strrchr(lines[0], '@');
    const char *d = at ? at + 1 : (*lines[0] ? lines[0] : lines[1]);
    size_t dl = strlen(d);
    if (dl > SPF_NAME_MAX)
        dl = SPF_NAME_MAX;
    for (size_t i = 0; i < dl; i++)
        f.sender_dom[i] = (d[i] >= 'A' && d[i] <= 'Z') ? d[i] + 32 : d[i];
    if (dl && f.sender_dom[dl - 1] == '.')
        f.sender_dom[dl - 1] = 0;

    struct spf_limits lim = SPF_LIMITS_DEFAULT;
    struct spf_query q = { 0 };
    q.lim = &lim;
    q.fetch = fz_fetch;
    q.fetch_arg = &f;
    q.sender = lines[0];
    q.helo = lines[1];
    q.use_helo = (mode & 4) != 0;
    if (mode & 2) {
        q.family = AF_INET6;
        inet_pton(AF_INET6, (mode & 8) ? "2001:db8::5" : "2000::5", &q.ip.v6);
    } else {
        q.family = AF_INET;
        inet_pton(AF_INET, (mode & 8) ? "192.0.2.5" : "198.51.100.1", &q.ip.v4);
    }
    static struct spf_outcome out;
    for (int round = 0; round < 20; round++) {
        spf_engine_check(engine, &q, &out);
        if (!out.incomplete)
            break;
        for (size_t i = 0; i < out.nmisses; i++)
            fz_resolve(&f, out.misses[i].name, out.misses[i].type);
    }
    free(buf);
    return 0;
}
