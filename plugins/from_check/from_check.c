/*
 * from_check - the example plugin: checks the RFC5322.From field.
 *
 * Small on purpose: it shows a complete plugin in one screen: symbols with
 * default scores, options, typed data read through the API, per-worker
 * state kept in init()'s state pointer (freed by fini), and all three
 * message stages (see authscan/plugin.h).  DMARC needs exactly one author
 * domain; this plugin makes the ways a message can fail that visible and
 * scorable on their own.
 *
 *   MISSING_FROM    no From field at all
 *   MULTIPLE_FROM   several From fields, or several mailboxes in one field
 *                   without a Sender field (RFC 5322 section 3.6.2 requires
 *                   Sender then); options say which
 *   FROM_INVALID    a From field that is empty, unparseable, a group, or has
 *                   no usable domain; option is the reason
 *
 * scan        adds the symbols;
 * postfilter  a site override: with from_check.unusable_from_action set,
 *             raises the final verdict to at least that action when the
 *             From is unusable, unless the verdict is already as strict;
 * finish      counts messages and unusable From fields per worker, read-only
 *             and after the reply; fini logs the totals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <authscan/plugin.h>

static const struct as_symbol_def symbols[] = {
    { "MISSING_FROM", 2.0, "headers", "Message has no From header", 0 },
    { "MULTIPLE_FROM", 8.0, "headers", "Several From headers or authors without Sender", 0 },
    { "FROM_INVALID", 2.0, "headers", "From header has no usable author address", 0 },
};

static const struct as_option_def options[] = {
    { "allow_multiple_authors", AS_OPT_BOOL, "yes",
      "accept several mailboxes in From when a Sender field is present (RFC 5322 3.6.2)" },
    { "unusable_from_action", AS_OPT_STRING, "none",
      "postfilter: action forced (at least) when the From is unusable; none disables" },
};

struct from_check {
    int allow_multiple_authors;
    int force_on;
    enum as_action force_action;
    unsigned long long messages, unusable;   /* finish stage: this worker's totals */
};

static int fc_init(struct as_plugin_ctx *ctx, void **state)
{
    struct from_check *fc = calloc(1, sizeof *fc);
    if (!fc) {
        as_plugin_set_error(ctx, "out of memory");
        return -1;
    }
    fc->allow_multiple_authors = as_plugin_opt_bool(ctx, "allow_multiple_authors");
    const char *a = as_plugin_opt_string(ctx, "unusable_from_action");
    if (a && *a && strcasecmp(a, "none") != 0) {
        int v = as_action_parse(a);
        if (v < 0) {
            as_plugin_opt_error(ctx, "unusable_from_action", "unknown action (want none, "
                                "greylist, add header, rewrite subject, quarantine, soft "
                                "reject or reject)");
            free(fc);
            return -1;
        }
        fc->force_action = (enum as_action)v;
        fc->force_on = v != AS_ACTION_NO_ACTION;
    }
    *state = fc;
    return 0;
}

static void fc_fini(void *state)
{
    struct from_check *fc = state;
    if (!fc)
        return;
    if (fc->messages)
        as_log(AS_LOG_INFO, "from_check: %llu message(s), %llu with an unusable From",
               fc->messages, fc->unusable);
    free(fc);
}

static int from_unusable(const struct as_task *t)
{
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++)
        if (as_task_has_symbol(t, symbols[i].name))
            return 1;
    return 0;
}

static void fc_scan(struct as_task *t, void *state)
{
    const struct from_check *fc = state;
    const struct as_from *from = as_task_from(t);
    char buf[64];

    switch (from->status) {
    case AS_FROM_OK:
        break;
    case AS_FROM_MISSING:
        as_task_add_symbol(t, "MISSING_FROM", 1.0, NULL);
        break;
    case AS_FROM_MULTIPLE_FIELDS:
        snprintf(buf, sizeof buf, "fields=%zu", from->nfields);
        as_task_add_symbol(t, "MULTIPLE_FROM", 1.0, buf, NULL);
        break;
    case AS_FROM_MULTIPLE_MAILBOXES:
        if (fc->allow_multiple_authors &&
            as_msg_header_count(as_task_message(t), "Sender") == 1)
            break;
        snprintf(buf, sizeof buf, "mailboxes=%zu", from->list.nboxes);
        as_task_add_symbol(t, "MULTIPLE_FROM", 1.0, buf, NULL);
        break;
    default:
        as_task_add_symbol(t, "FROM_INVALID", 1.0, as_from_status_name(from->status), NULL);
        break;
    }
}

/* Runs after every filter, so it sees DMARC's forced action too: a site
 * that wants such mail quarantined does not turn a DMARC reject into
 * less. */
static void fc_postfilter(struct as_task *t, void *state)
{
    const struct from_check *fc = state;
    if (!fc->force_on || !from_unusable(t) || as_task_action(t) >= fc->force_action)
        return;
    as_task_log(t, AS_LOG_INFO, "from_check: unusable From: %s -> %s",
                as_action_name(as_task_action(t)), as_action_name(fc->force_action));
    as_task_force_action(t, fc->force_action, AS_FORCE_LEAST, AS_PRIO_SITE, NULL,
                         "from_check");
}

static void fc_finish(struct as_task *t, void *state)
{
    struct from_check *fc = state;
    fc->messages++;
    if (from_unusable(t))
        fc->unusable++;
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "from_check",
    .version = "1.1",
    .description = "RFC5322.From sanity: missing, multiple, unusable",
    .symbols = symbols,
    .nsymbols = sizeof symbols / sizeof symbols[0],
    .options = options,
    .noptions = sizeof options / sizeof options[0],
    .init = fc_init,
    .scan = fc_scan,
    .fini = fc_fini,
    .postfilter = fc_postfilter,
    .finish = fc_finish,
};
