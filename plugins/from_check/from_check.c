/*
 * from_check - the example plugin: checks the RFC5322.From field.
 *
 * Small on purpose: it shows a complete plugin (symbols with default
 * scores, one option, typed data read through the API) in one screen.
 * DMARC needs exactly one author domain; this plugin makes the ways a
 * message can fail that visible and scorable on their own.
 *
 *   MISSING_FROM    no From field at all
 *   MULTIPLE_FROM   several From fields, or several mailboxes in one field
 *                   without a Sender field (RFC 5322 section 3.6.2 requires
 *                   Sender then); options say which
 *   FROM_INVALID    a From field that is empty, unparseable, a group, or has
 *                   no usable domain; option is the reason
 */
#include <stdio.h>
#include <authscan/plugin.h>

static const struct as_symbol_def symbols[] = {
    { "MISSING_FROM", 2.0, "headers", "Message has no From header", 0 },
    { "MULTIPLE_FROM", 8.0, "headers", "Several From headers or authors without Sender", 0 },
    { "FROM_INVALID", 2.0, "headers", "From header has no usable author address", 0 },
};

static const struct as_option_def options[] = {
    { "allow_multiple_authors", AS_OPT_BOOL, "yes",
      "accept several mailboxes in From when a Sender field is present (RFC 5322 3.6.2)" },
};

struct from_check {
    int allow_multiple_authors;
};

static int fc_init(struct as_plugin_ctx *ctx, void **state)
{
    static struct from_check fc;   /* one instance per worker process */
    fc.allow_multiple_authors = as_plugin_opt_bool(ctx, "allow_multiple_authors");
    *state = &fc;
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

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "from_check",
    .version = "1.0",
    .description = "RFC5322.From sanity: missing, multiple, unusable",
    .symbols = symbols,
    .nsymbols = sizeof symbols / sizeof symbols[0],
    .options = options,
    .noptions = sizeof options / sizeof options[0],
    .init = fc_init,
    .scan = fc_scan,
};
