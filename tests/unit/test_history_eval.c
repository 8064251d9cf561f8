/*
 * test_history_eval.c - the history plugin's decisions (history_eval.c):
 * parsing HMGET values, decay, the three symbols and their thresholds, and
 * the source network of an address.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include "check.h"
#include "history_eval.h"

static const struct hist_params P = {
    .half_life = 86400, .min_observations = 5, .pass_ratio = 0.95, .clean_min = 10,
};
#define NOW 1700000000.0

static struct hist_counts counts(double dp, double df, double last)
{
    struct hist_counts c = { .present = 1, .n = dp + df, .dp = dp, .df = df,
                             .first = last - 1000, .last = last };
    return c;
}

struct eval_case {
    const char *what;
    struct hist_counts dom;
    int src_present;
    struct hist_counts src;
    enum hist_auth dmarc;
    int first, spoof, clean;
};

static void test_evaluate(void)
{
    const struct eval_case cases[] = {
        { "unknown domain: first seen", { 0 }, 0, { 0 }, HIST_FAIL, 1, 0, 0 },
        { "passes always, fails from a new source", counts(20, 0, NOW), 0, { 0 }, HIST_FAIL,
          0, 1, 0 },
        { "same from a known source: no spoof", counts(20, 0, NOW), 1, counts(3, 0, NOW),
          HIST_FAIL, 0, 0, 0 },
        { "source seen only failing: still a spoof", counts(20, 0, NOW), 1, counts(0, 2, NOW),
          HIST_FAIL, 0, 1, 0 },
        { "passes now: no spoof", counts(20, 0, NOW), 0, { 0 }, HIST_PASS, 0, 0, 0 },
        { "below min_observations: nothing", counts(4, 0, NOW), 0, { 0 }, HIST_FAIL, 0, 0, 0 },
        { "min_observations reached", counts(5, 0, NOW), 0, { 0 }, HIST_FAIL, 0, 1, 0 },
        { "often fails: no spoof", counts(18, 2, NOW), 0, { 0 }, HIST_FAIL, 0, 0, 0 },
        { "19 of 20 is nearly always", counts(19, 1, NOW), 0, { 0 }, HIST_FAIL, 0, 1, 0 },
        { "no DMARC results: nothing", counts(0, 0, NOW), 0, { 0 }, HIST_FAIL, 0, 0, 0 },
        { "clean source", counts(30, 0, NOW), 1, counts(10, 0, NOW), HIST_PASS, 0, 0, 1 },
        { "clean source, fails now: not clean", counts(30, 0, NOW), 1, counts(10, 0, NOW),
          HIST_FAIL, 0, 0, 0 },
        { "too few passes from the source", counts(30, 0, NOW), 1, counts(9, 0, NOW),
          HIST_PASS, 0, 0, 0 },
        { "source with failures: not clean", counts(30, 0, NOW), 1, counts(10, 2, NOW),
          HIST_PASS, 0, 0, 0 },
        /* decay: 20 passes two half-lives ago weigh 5, still enough; 16 weigh 4 */
        { "decayed to the minimum", counts(20, 0, NOW - 2 * 86400), 0, { 0 }, HIST_FAIL,
          0, 1, 0 },
        { "decayed below the minimum", counts(16, 0, NOW - 2 * 86400), 0, { 0 }, HIST_FAIL,
          0, 0, 0 },
        { "clean source decayed below clean_min", counts(40, 0, NOW), 1,
          counts(12, 0, NOW - 86400), HIST_PASS, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct eval_case *c = &cases[i];
        struct hist_verdict v;
        hist_evaluate(&P, &c->dom, c->src_present ? &c->src : NULL, c->dmarc, NOW, &v);
        if (v.first_seen != c->first || v.spoof_new_source != c->spoof ||
            v.clean_source != c->clean)
            fprintf(stderr, "%s: got first=%d spoof=%d clean=%d, want %d %d %d\n", c->what,
                    v.first_seen, v.spoof_new_source, v.clean_source, c->first, c->spoof,
                    c->clean);
        CHECK_INT(v.first_seen, c->first);
        CHECK_INT(v.spoof_new_source, c->spoof);
        CHECK_INT(v.clean_source, c->clean);
    }
}

static void test_parse(void)
{
    const char *vals[HIST_READ_NFIELDS] = { "12.5", "10", "x", "200" };
    struct hist_counts c;
    hist_parse(&c, vals);
    CHECK_INT(c.present, 1);
    CHECK_DBL(c.n, 12.5);
    CHECK_DBL(c.dp, 10);
    CHECK_DBL(c.df, 0);       /* not a number */
    CHECK_DBL(c.last, 200);
    const char *bad[HIST_READ_NFIELDS] = { "-3", "inf", NULL, NULL };
    hist_parse(&c, bad);
    CHECK_INT(c.present, 1);
    CHECK_DBL(c.n, 0);        /* negative */
    CHECK_DBL(c.dp, 0);       /* not finite */
    const char *none[HIST_READ_NFIELDS] = { 0 };
    hist_parse(&c, none);
    CHECK_INT(c.present, 0);
    CHECK_STR(hist_read_fields[0], "n");
    CHECK_STR(hist_read_fields[HIST_READ_NFIELDS - 1], "l");

    struct hist_counts d = counts(8, 4, NOW - 86400);
    hist_decay(&d, NOW, 86400);
    CHECK_DBL(d.dp, 4);
    CHECK_DBL(d.df, 2);
    CHECK_DBL(d.n, 6);
}

static void test_apply(void)
{
    struct hist_counts c = { 0 };
    const int pass[7] = { 1, 1, 0, 1, 0, 1, 0 };
    hist_apply(&c, pass, NOW, 86400);
    CHECK_INT(c.present, 1);
    CHECK_DBL(c.n, 1);
    CHECK_DBL(c.dp, 1);
    CHECK_DBL(c.first, NOW);
    CHECK_DBL(c.last, NOW);
    const int fail[7] = { 1, 0, 1, 0, 1, 0, 0 };
    hist_apply(&c, fail, NOW + 86400, 86400);   /* one half-life later */
    CHECK_DBL(c.n, 1.5);
    CHECK_DBL(c.dp, 0.5);
    CHECK_DBL(c.df, 1);
    CHECK_DBL(c.sf, 1);
    CHECK_DBL(c.first, NOW);
    CHECK_DBL(c.last, NOW + 86400);
}

static void test_net(void)
{
    struct { int family; const char *ip, *want; } cases[] = {
        { AF_INET, "192.0.2.77", "192.0.2" },
        { AF_INET, "10.0.0.1", "10.0.0" },
        { AF_INET6, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2" },
        { AF_INET6, "2001:db8::1", "2001:db8:0:0" },
        { AF_INET6, "::1", "0:0:0:0" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char buf[16];
        char out[48];
        CHECK(inet_pton(cases[i].family, cases[i].ip, buf) == 1);
        CHECK_INT(hist_source_net(cases[i].family, buf, out, sizeof out), 0);
        CHECK_STR(out, cases[i].want);
    }
    char out[48];
    CHECK_INT(hist_source_net(AF_UNSPEC, "", out, sizeof out), -1);
    CHECK(strstr(hist_update_script, "EXPIRE") != NULL);   /* every key gets a TTL */
}

int main(void)
{
    test_evaluate();
    test_parse();
    test_apply();
    test_net();
    return check_done();
}
