/*
 * cli.c - see cli.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include "bin/cli.h"
#include "util/util.h"

void as_cli_override(struct as_cli *cli, const char *key, const char *value, int repeatable)
{
    const char *op = "=";
    if (repeatable >= 0 && cli->counts[repeatable]++) op = "+=";
    if (cli->nitems == cli->cap) {
        cli->cap = cli->cap ? cli->cap * 2 : 16;
        cli->items = xrealloc(cli->items, (size_t)cli->cap * sizeof *cli->items);
    }
    struct sbuf b = {0};
    sbuf_printf(&b, "%s%s%s", key, op, value);
    cli->items[cli->nitems++] = sbuf_steal(&b);
    cli->opts.overrides = (const char *const *)cli->items;
    cli->opts.noverrides = cli->nitems;
}

int as_cli_config_opt(struct as_cli *cli, int opt, const char *arg)
{
    switch (opt) {
    case 'c':
        cli->opts.config_path = arg;
        return 1;
    case AS_CLI_DNS_ZONE:
        as_cli_override(cli, "dns.zone_file", arg, AS_CLI_REPEAT_NONE);
        return 1;
    case AS_CLI_DNS_SERVER:
        as_cli_override(cli, "dns.servers", arg, AS_CLI_REPEAT_DNS);
        return 1;
    case AS_CLI_PLUGINS_DIR:
        as_cli_override(cli, "plugins.dir", arg, AS_CLI_REPEAT_NONE);
        return 1;
    case AS_CLI_LOG_LEVEL:
        as_cli_override(cli, "log.level", arg, AS_CLI_REPEAT_NONE);
        return 1;
    case 's':
        if (cli->nitems == cli->cap) {
            cli->cap = cli->cap ? cli->cap * 2 : 16;
            cli->items = xrealloc(cli->items, (size_t)cli->cap * sizeof *cli->items);
        }
        cli->items[cli->nitems++] = xstrdup(arg);   /* already "key=value" */
        cli->opts.overrides = (const char *const *)cli->items;
        cli->opts.noverrides = cli->nitems;
        return 1;
    }
    return 0;
}

void as_cli_free(struct as_cli *cli)
{
    for (int i = 0; i < cli->nitems; i++) free(cli->items[i]);
    free(cli->items);
    cli->items = NULL;
    cli->nitems = cli->cap = 0;
}
