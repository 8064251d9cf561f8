/*
 * authscand - the authscan scanning daemon.  See docs/operations.md.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/config.h"
#include "scan/engine.h"
#include "net/listen.h"
#include "util/log.h"
#include "bin/cli.h"
#include "daemon/master.h"
#include "daemon/runas.h"
#include "util/util.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: authscand [options]\n"
"  -c, --config FILE        main config file (default %s if it exists)\n"
"  -t, --check-config       validate config, rules and plugins, then exit\n"
"  -l, --listen [PROTO@]ADDR  listen here (repeatable; ADDR is HOST:PORT, [V6]:PORT\n"
"                           or unix:/path; PROTO is http, the default)\n"
"  -w, --workers N          worker processes (default: CPU count)\n"
"  -f, --foreground         do not daemonize\n"
"  -p, --pid-file FILE      write the master's pid to FILE\n"
"      --dns-zone FILE      answer DNS from this zone file only (offline mode)\n"
"      --dns-server H:P     forward DNS to this server (repeatable)\n"
"      --plugins-dir DIR    load plugins from DIR\n"
"      --log-level LEVEL    error, warning, notice, info or debug\n"
"  -s, --set KEY=VALUE      set any config key (repeatable; KEY+=VALUE appends)\n"
"  -v, --version\n"
"  -h, --help\n", as_engine_default_config_path());
}

static int run(struct as_cli *cli, int check);

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        AS_CLI_CONFIG_LONGOPTS,
        {"check-config", no_argument, NULL, 't'},
        {"listen", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'},
        {"foreground", no_argument, NULL, 'f'},
        {"pid-file", required_argument, NULL, 'p'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct as_cli cli = {0};
    int check = 0;
    int c;
    as_log_init("authscand", AS_LOG_STDERR, AS_LOG_NOTICE);
    while ((c = getopt_long(argc, argv, "c:tl:w:fp:s:vh", longopts, NULL)) != -1) {
        if (as_cli_config_opt(&cli, c, optarg)) continue;
        switch (c) {
        case 't': check = 1; break;
        case 'f': cli.opts.foreground = 1; break;
        case 'l': as_cli_override(&cli, "listen", optarg, AS_CLI_REPEAT_LISTEN); break;
        case 'w': as_cli_override(&cli, "workers", optarg, AS_CLI_REPEAT_NONE); break;
        case 'p': as_cli_override(&cli, "pid_file", optarg, AS_CLI_REPEAT_NONE); break;
        case 'v': printf("authscand %s (plugin ABI %d.%d)\n", AUTHSCAN_VERSION,
                         AS_PLUGIN_ABI_MAJOR, AS_PLUGIN_ABI_MINOR); return 0;
        case 'h': usage(stdout); as_cli_free(&cli); return 0;
        default: usage(stderr); as_cli_free(&cli); return 2;
        }
    }
    int rc;
    if (optind < argc) {
        fprintf(stderr, "authscand: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        rc = 2;
    } else {
        rc = run(&cli, check);
    }
    as_cli_free(&cli);
    return rc;
}

/* Everything after option parsing; main() frees the options on every path. */
static int run(struct as_cli *cli, int check)
{
    char err[1024];
    struct as_config *cfg = as_master_load(&cli->opts, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "authscand: %s\n", err);
        return 1;
    }
    if (check) {
        printf("authscand: configuration OK\n");
        /* the effective sockets, each with the protocol it speaks */
        const char *const *specs;
        size_t n = as_config_list(cfg, "listen", &specs);
        for (size_t i = 0; i < n; i++) {
            struct as_listen_addr a;
            if (as_listen_parse(specs[i], &a, err, sizeof err) == 0) printf("listen %s\n", a.name);
        }
        as_config_free(cfg);
        return 0;
    }
    /* Refused here, before the log may move to syslog: whoever started
     * the daemon by hand sees why it did not start. */
    struct as_runas ra;
    if (as_runas_resolve(cfg, 1, &ra, err, sizeof err) < 0) {
        fprintf(stderr, "authscand: %s\n", err);
        as_config_free(cfg);
        return 1;
    }
    as_log_configure(cfg);
    return as_master_run(cfg, &cli->opts);
}
