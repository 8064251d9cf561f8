/*
 * cli.h - command-line flags shared by authscand and authscan.
 *
 * Both programs take the same configuration flags and turn each into a
 * "key=value" (or "key+=value") override that as_master_load() applies on
 * top of the config files:
 *   -c FILE, --dns-zone FILE, --dns-server H:P (repeatable), --plugins-dir DIR,
 *   --log-level LEVEL, -s/--set KEY=VALUE (repeatable)
 */
#ifndef AS_CLI_H
#define AS_CLI_H

#include <getopt.h>
#include "daemon/master.h"

/* Option codes outside the printable range, so programs keep their letters. */
enum {
    AS_CLI_DNS_ZONE = 0x100,
    AS_CLI_DNS_SERVER,
    AS_CLI_PLUGINS_DIR,
    AS_CLI_LOG_LEVEL,
};

#define AS_CLI_CONFIG_LONGOPTS \
    {"config", required_argument, NULL, 'c'}, \
    {"dns-zone", required_argument, NULL, AS_CLI_DNS_ZONE}, \
    {"dns-server", required_argument, NULL, AS_CLI_DNS_SERVER}, \
    {"plugins-dir", required_argument, NULL, AS_CLI_PLUGINS_DIR}, \
    {"log-level", required_argument, NULL, AS_CLI_LOG_LEVEL}, \
    {"set", required_argument, NULL, 's'}

struct as_cli {
    struct as_master_options opts;   /* overrides point into `items` */
    char **items;
    int nitems, cap;
    int counts[8];                   /* per repeatable key: first replaces, rest append */
};

/* Handles one getopt result if it is a configuration flag: returns 1 if
 * it was, 0 if the caller should handle it. */
int as_cli_config_opt(struct as_cli *cli, int opt, const char *arg);
/* Adds "key=value", or "key+=value" after the first use of that key when
 * `repeatable` is one of the AS_CLI_REPEAT_* slots (>= 0). */
void as_cli_override(struct as_cli *cli, const char *key, const char *value, int repeatable);
void as_cli_free(struct as_cli *cli);

struct as_engine;
struct event_base;
/* The engine the authscan subcommands work with, built exactly as a
 * worker builds it, on a new event base.  Logs go to stderr at "warning"
 * unless --log-level says otherwise (the config file's level is for the
 * daemon).  NULL after printing why. */
struct as_engine *as_cli_engine(const struct as_cli *cli, struct event_base **base);

enum { AS_CLI_REPEAT_NONE = -1, AS_CLI_REPEAT_DNS = 0, AS_CLI_REPEAT_LISTEN = 1 };

#endif
