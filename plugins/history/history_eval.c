/*
 * history_eval.c - see history_eval.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "history_eval.h"

const char *const hist_read_fields[] = { "n", "dp", "df", "l" };

/* Counts are stored rounded to 1/100 and zero counts not at all: a clean
 * sender's hash then holds a handful of short fields, which keeps it in
 * Redis' compact listpack encoding (docs/redis.md has the bytes). */
const char hist_update_script[] =
    "local now = tonumber(ARGV[1])\n"
    "local hl = tonumber(ARGV[2])\n"
    "local ttl = tonumber(ARGV[3])\n"
    "local names = {'n','dp','df','sp','sf','kp','kf'}\n"
    "local nhash = math.min(#KEYS, 2)\n"
    "for i = 1, nhash do\n"
    "  local k = KEYS[i]\n"
    "  local v = redis.call('HMGET', k, 'n','dp','df','sp','sf','kp','kf','l')\n"
    "  local l = tonumber(v[8])\n"
    "  local w = 1\n"
    "  if l and now > l then w = math.pow(0.5, (now - l) / hl) end\n"
    "  local set, del = {}, {}\n"
    "  for j = 1, 7 do\n"
    "    local x = (tonumber(v[j]) or 0) * w + (tonumber(ARGV[3 + 7 * (i - 1) + j]) or 0)\n"
    "    x = math.floor(x * 100 + 0.5) / 100\n"
    "    if x > 0 then\n"
    "      set[#set + 1] = names[j]\n"
    "      set[#set + 1] = string.format('%.15g', x)\n"
    "    elseif v[j] then\n"
    "      del[#del + 1] = names[j]\n"
    "    end\n"
    "  end\n"
    "  set[#set + 1] = 'l'\n"
    "  set[#set + 1] = ARGV[1]\n"
    "  redis.call('HSET', k, unpack(set))\n"
    "  if #del > 0 then redis.call('HDEL', k, unpack(del)) end\n"
    "  redis.call('HSETNX', k, 'f', ARGV[1])\n"
    "  redis.call('EXPIRE', k, ttl)\n"
    "end\n"
    "if #KEYS == 3 then\n"
    "  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[#ARGV])\n"
    "  if redis.call('ZCARD', KEYS[3]) > 1000 then\n"
    "    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1001)\n"
    "  end\n"
    "  redis.call('EXPIRE', KEYS[3], ttl)\n"
    "end\n"
    "return nhash\n";

void hist_decay(struct hist_counts *c, double now, double half_life)
{
    if (!c->present || half_life <= 0 || now <= c->last) return;
    double w = pow(0.5, (now - c->last) / half_life);
    c->n *= w;
    c->dp *= w;
    c->df *= w;
    c->sp *= w;
    c->sf *= w;
    c->kp *= w;
    c->kf *= w;
}

void hist_apply(struct hist_counts *c, const int inc[7], double now, double half_life)
{
    hist_decay(c, now, half_life);
    double *dst[7] = { &c->n, &c->dp, &c->df, &c->sp, &c->sf, &c->kp, &c->kf };
    for (size_t i = 0; i < 7; i++) *dst[i] += inc[i];
    if (!c->present) c->first = now;
    c->present = 1;
    if (now > c->last) c->last = now;
}

void hist_parse(struct hist_counts *c, const char *const *values)
{
    double *dst[HIST_READ_NFIELDS] = { &c->n, &c->dp, &c->df, &c->last };
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < HIST_READ_NFIELDS; i++) {
        if (!values[i]) continue;
        c->present = 1;
        char *end;
        double v = strtod(values[i], &end);
        /* a value we did not write (or a hand-edited one) counts as 0 */
        if (end != values[i] && !*end && isfinite(v) && v >= 0) *dst[i] = v;
    }
}

void hist_evaluate(const struct hist_params *p, const struct hist_counts *dom,
                   const struct hist_counts *src, enum hist_auth dmarc, double now,
                   struct hist_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->domain_ratio = -1;
    if (!dom->present) {
        v->first_seen = 1;
        return;
    }
    struct hist_counts d = *dom, s = { 0 };
    if (src) s = *src;
    hist_decay(&d, now, p->half_life);
    hist_decay(&s, now, p->half_life);
    v->domain_results = d.dp + d.df;
    if (v->domain_results > 0) v->domain_ratio = d.dp / v->domain_results;
    v->source_passes = s.dp;
    /* Below the minimum the domain's history says nothing. */
    if (v->domain_results < p->min_observations) return;
    /* "Seen with it" means seen passing: a spoof we let through (p=none)
     * must not make its source a known one for the next spoof. */
    int source_seen = s.present && s.dp > 0;
    if (dmarc == HIST_FAIL && !source_seen && v->domain_ratio >= p->pass_ratio)
        v->spoof_new_source = 1;
    /* Clean: enough passes from here and no more failures than a domain
     * that "nearly always passes" may have; this message passes too. */
    double sres = s.dp + s.df;
    if (dmarc == HIST_PASS && source_seen && s.dp >= p->clean_min &&
        s.dp / sres >= p->pass_ratio)
        v->clean_source = 1;
}

int hist_source_net(int family, const void *addr, char *out, size_t outlen)
{
    const unsigned char *b = addr;
    if (family == AF_INET) {
        snprintf(out, outlen, "%u.%u.%u", b[0], b[1], b[2]);
        return 0;
    }
    if (family == AF_INET6) {
        snprintf(out, outlen, "%x:%x:%x:%x", (unsigned)(b[0] << 8 | b[1]),
                 (unsigned)(b[2] << 8 | b[3]), (unsigned)(b[4] << 8 | b[5]),
                 (unsigned)(b[6] << 8 | b[7]));
        return 0;
    }
    return -1;
}
