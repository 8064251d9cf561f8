/*
 * cli.c - see cli.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include "bin/cli.h"
#include "util/util.h"
#include "util/config.h"
#include "util/log.h"
#include "scan/engine.h"

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

struct as_engine *as_cli_engine(const struct as_cli *cli, struct event_base **base)
{
    char err[1024];
    struct as_config *cfg = as_master_load(&cli->opts, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "authscan: %s\n", err);
        return NULL;
    }
    enum as_log_level lv = AS_LOG_WARN;
    const struct as_config_entry *lvl = as_config_find(cfg, "log.level");
    if (lvl && strcmp(lvl->file, "command line") == 0) as_log_parse_level(lvl->value, &lv);
    as_log_set_level(lv);
    *base = event_base_new();
    struct as_engine *e = as_engine_new(*base, cfg, err, sizeof err);
    if (!e) {
        fprintf(stderr, "authscan: %s\n", err);
        event_base_free(*base);
        *base = NULL;
    }
    return e;
}
