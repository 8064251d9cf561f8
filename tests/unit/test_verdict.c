/*
 * The verdict: score thresholds, and forced actions applied in increasing
 * priority (LEAST raises, EXACT replaces, EXACT wins at equal priority),
 * with the reply text of the force that decided, and the policy override
 * found when a plugin's LEAST force is not met.  Table-driven over a
 * minimal engine with no plugins: symbols are declared here.
 */
#include <event2/event.h>
#include <limits.h>
#include <string.h>
#include "check.h"
#include "util/config.h"
#include "scan/engine.h"
#include "scan/symbols.h"
#include "scan/task.h"

static const struct as_symbol_def syms[] = {
    { "S1", 1.0, "t", NULL, 0 },
    { "S5", 5.0, "t", NULL, 0 },
    { "S10", 10.0, "t", NULL, 0 },
    { "NEG", -2.0, "t", NULL, 0 },
};

struct force_spec {
    enum as_action action;
    enum as_force_mode mode;
    int prio;
    const char *msg, *module;
};

struct vcase {
    const char *name;
    const char *symbols[4];
    struct force_spec forces[4];
    enum as_action want;
    const char *want_msg;      /* NULL: no reply text */
    const char *want_module;   /* NULL: not forced */
    const char *want_override; /* as_task_override_text(): NULL when none */
};

static void done_cb(struct as_task *t, void *arg)
{
    (void)t;
    *(int *)arg = 1;
}

int main(void)
{
    struct event_base *base = event_base_new();
    struct as_symtab *st = as_symtab_new();
    char err[256];
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
        CHECK(as_symtab_declare(st, &syms[i], "test", err, sizeof err) == 0);
    struct as_engine *e = as_engine_new_bare(base, st);   /* rspamd defaults: 15/6/4 */

    static const struct vcase cases[] = {
        { "nothing", {0}, {{0}}, AS_ACTION_NO_ACTION, NULL, NULL },
        { "greylist at 4 (score 5)", {"S5"}, {{0}}, AS_ACTION_GREYLIST, "4.7.1 Try again later",
          NULL },
        { "add header at 6 (score 6)", {"S1", "S5"}, {{0}}, AS_ACTION_ADD_HEADER, NULL, NULL },
        { "reject at 15", {"S5", "S10"}, {{0}}, AS_ACTION_REJECT, "5.7.1 Spam message rejected", NULL },
        { "negative score", {"S5", "NEG"}, {{0}}, AS_ACTION_NO_ACTION, NULL, NULL },
        { "least raises", {"S1"},
          {{AS_ACTION_REJECT, AS_FORCE_LEAST, 50, "5.7.1 dmarc says no", "dmarc"}},
          AS_ACTION_REJECT, "5.7.1 dmarc says no", "dmarc" },
        { "least never lowers", {"S5", "S10"},
          {{AS_ACTION_QUARANTINE, AS_FORCE_LEAST, 50, "q", "dmarc"}},
          AS_ACTION_REJECT, "5.7.1 Spam message rejected", NULL },
        { "site exact overrides plugin least", {0},
          {{AS_ACTION_REJECT, AS_FORCE_LEAST, 50, "reject text", "dmarc"},
           {AS_ACTION_QUARANTINE, AS_FORCE_EXACT, 100, NULL, "site"}},
          AS_ACTION_QUARANTINE, NULL, "site", "dmarc local_policy: site" },
        { "exact can lower the score's action", {"S5", "S10"},
          {{AS_ACTION_ADD_HEADER, AS_FORCE_EXACT, 100, NULL, "site"}},
          AS_ACTION_ADD_HEADER, NULL, "site" },
        { "higher least after exact raises again", {0},
          {{AS_ACTION_QUARANTINE, AS_FORCE_EXACT, 50, NULL, "a"},
           {AS_ACTION_REJECT, AS_FORCE_LEAST, 100, "r", "b"}},
          AS_ACTION_REJECT, "r", "b" },
        { "same priority: exact wins", {0},
          {{AS_ACTION_GREYLIST, AS_FORCE_EXACT, 50, "g", "a"},
           {AS_ACTION_REJECT, AS_FORCE_LEAST, 50, "r", "b"}},
          AS_ACTION_GREYLIST, "g", "a", "b local_policy: a: g" },
        { "two lowered leasts: one override each", {0},
          {{AS_ACTION_REJECT, AS_FORCE_LEAST, 50, "r", "dmarc"},
           {AS_ACTION_QUARANTINE, AS_FORCE_LEAST, 50, NULL, "from_check"},
           {AS_ACTION_ADD_HEADER, AS_FORCE_EXACT, 100, "partner \"relay\"\n", "site"}},
          AS_ACTION_ADD_HEADER, "partner \"relay\"\n", "site",
          "dmarc local_policy: site: partner 'relay'?; "
          "from_check local_policy: site: partner 'relay'?" },
        { "lower-priority exact loses to later least", {0},
          {{AS_ACTION_REJECT, AS_FORCE_LEAST, 100, "r", "b"},
           {AS_ACTION_NO_ACTION, AS_FORCE_EXACT, 10, NULL, "a"}},
          AS_ACTION_REJECT, "r", "b" },
        { "equal least: higher priority gives the text", {0},
          {{AS_ACTION_REJECT, AS_FORCE_LEAST, 50, "plugin text", "dmarc"},
           {AS_ACTION_REJECT, AS_FORCE_LEAST, 100, "site text", "site"}},
          AS_ACTION_REJECT, "site text", "site" },
        { "INT_MIN priority is honoured", {0},
          {{AS_ACTION_SOFT_REJECT, AS_FORCE_LEAST, INT_MIN, "m", "x"}},
          AS_ACTION_SOFT_REJECT, "m", "x" },
        { "default text when the force has none", {0},
          {{AS_ACTION_REJECT, AS_FORCE_LEAST, 50, NULL, "dmarc"}},
          AS_ACTION_REJECT, "5.7.1 Spam message rejected", "dmarc" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct vcase *c = &cases[i];
        struct as_task *t = as_task_new(e);
        for (size_t k = 0; k < 4 && c->symbols[k]; k++)
            CHECK(as_task_add_symbol(t, c->symbols[k], 1.0, NULL) == 0);
        for (size_t k = 0; k < 4 && c->forces[k].module; k++)
            as_task_force_action(t, c->forces[k].action, c->forces[k].mode, c->forces[k].prio,
                                 c->forces[k].msg, c->forces[k].module);
        int done = 0;
        as_task_run(t, done_cb, &done);
        while (!done) event_base_loop(base, EVLOOP_ONCE);
        const struct as_verdict *v = as_task_verdict(t);
        if (v->action != c->want)
            fprintf(stderr, "case '%s': action %s, want %s\n", c->name, as_action_name(v->action),
                    as_action_name(c->want));
        CHECK_INT(v->action, c->want);
        CHECK_STR(v->smtp_message, c->want_msg);
        CHECK_STR(v->forced_by, c->want_module);
        CHECK_STR(as_task_override_text(t), c->want_override);
        as_task_free(t);
    }
    /* rspamd semantics (a Lua rule's set_pre_result): the rule that decided
     * is named with its text; a plugin's own override comes first */
    {
        struct as_task *t = as_task_new(e);
        CHECK(as_task_force_action(t, AS_ACTION_REJECT, AS_FORCE_LEAST, 50, NULL, "dmarc") == 0);
        CHECK(as_task_add_override(t, "dmarc", AS_OVERRIDE_MAILING_LIST, "list") == 0);
        CHECK(as_task_pre_result(t, AS_ACTION_QUARANTINE, 0, 50, NAN, "partner relay",
                                 "partner_relay") == 0);
        CHECK(as_task_add_override(t, "no policy", AS_OVERRIDE_OTHER, NULL) == -1);
        CHECK(as_task_add_override(t, "dmarc", AS_OVERRIDE__COUNT, NULL) == -1);
        int done = 0;
        as_task_run(t, done_cb, &done);
        while (!done) event_base_loop(base, EVLOOP_ONCE);
        CHECK_INT(as_task_verdict(t)->action, AS_ACTION_QUARANTINE);
        const struct as_policy_override *o;
        CHECK_INT(as_task_overrides(t, &o), 2);
        CHECK_STR(as_task_override_text(t), "dmarc mailing_list: list; "
                                            "dmarc local_policy: partner_relay: partner relay");
        CHECK_STR(as_override_type_name(o[1].type), "local_policy");
        CHECK(as_task_add_override(t, "dmarc", AS_OVERRIDE_OTHER, "late") == -1);
        as_task_free(t);
    }
    /* the thresholds decided (no force did): said so */
    {
        struct as_task *t = as_task_new(e);
        CHECK(as_task_force_action(t, AS_ACTION_REJECT, AS_FORCE_LEAST, 50, NULL, "dmarc") == 0);
        CHECK(as_task_pre_result(t, AS_ACTION_ADD_HEADER, 1, 10, NAN, NULL, "rule") == 0);
        int done = 0;
        as_task_run(t, done_cb, &done);
        while (!done) event_base_loop(base, EVLOOP_ONCE);
        CHECK_INT(as_task_verdict(t)->action, AS_ACTION_REJECT);
        CHECK_STR(as_task_override_text(t), NULL);
        as_task_free(t);
    }
    /* a long comment is cut at a character boundary, and marked */
    {
        struct as_task *t = as_task_new(e);
        char longc[400];
        memset(longc, 'a', sizeof longc);
        memcpy(longc + 252, "\xc3\xa9", 2);         /* U+00E9 across the cut */
        longc[sizeof longc - 1] = 0;
        CHECK(as_task_add_override(t, "dmarc", AS_OVERRIDE_OTHER, longc) == 0);
        const struct as_policy_override *o;
        CHECK_INT(as_task_overrides(t, &o), 1);
        CHECK_INT(strlen(o[0].comment), 255);
        CHECK(strncmp(o[0].comment, longc, 252) == 0 &&
              strcmp(o[0].comment + 252, "...") == 0);
        as_task_free(t);
    }
    CHECK_STR(as_override_type_name(AS_OVERRIDE_POLICY_TEST_MODE), "policy_test_mode");
    CHECK_STR(as_override_type_name((enum as_override_type)99), "other");
    /* unknown symbols are refused, a repeated symbol keeps one entry */
    struct as_task *t = as_task_new(e);
    CHECK(as_task_add_symbol(t, "NO_SUCH", 1.0, NULL) == -1);
    CHECK(as_task_add_symbol(t, "S5", 0.5, "a", NULL) == 0);
    CHECK(as_task_add_symbol(t, "S5", 1.0, "b", "a", NULL) == 0);
    CHECK_INT(as_task_symbol_count(t), 1);
    CHECK_DBL(as_task_symbol_at(t, 0)->score, 5.0);
    CHECK_INT(as_task_symbol_at(t, 0)->nopts, 2);
    as_task_free(t);

    as_engine_free(e);
    event_base_free(base);
    return check_done();
}
