/*
 * authscan - command-line front end.
 *
 *   authscan check [options] FILE|- ...   scan messages in-process
 *   authscan symbols [options]            list symbols with their scores
 *
 * `check` runs exactly the daemon's pipeline (same engine, plugins, rules,
 * resolver) on its own event loop, so what it prints is what authscand
 * would answer.  See docs/operations.md.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "config.h"
#include "engine.h"
#include "log.h"
#include "cli.h"
#include "master.h"
#include "proto.h"
#include "task.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: authscan check [options] FILE|- ...\n"
"       authscan symbols [options]\n"
"envelope (check):\n"
"      --ip ADDR            client IP address\n"
"      --helo NAME          HELO/EHLO name\n"
"      --hostname NAME      client's PTR name as the MTA resolved it\n"
"      --from ADDR          MAIL FROM ('' or '<>' for the null sender)\n"
"      --rcpt ADDR          RCPT TO (repeatable)\n"
"      --user NAME          authenticated user\n"
"      --queue-id ID\n"
"      --mta-name NAME      authserv-id for Authentication-Results\n"
"      --settings-id ID     use the settings profile [settings.ID]\n"
"output:\n"
"      --json               print the /checkv2 JSON reply instead of text\n"
"configuration (as for authscand):\n"
"  -c, --config FILE, --dns-zone FILE, --dns-server H:P, --plugins-dir DIR,\n"
"  --log-level LEVEL, -s/--set KEY=VALUE\n");
}

struct check_run {
    int json;
    const char *name;
    int exit_status;
};

static void print_text(const struct as_task *t, const char *name)
{
    const struct as_verdict *v = as_task_verdict(t);
    printf("%s\n", name);
    printf("  action: %s", as_action_name(v->action));
    if (v->forced_by) printf(" (forced by %s)", v->forced_by);
    printf("\n  score: %.2f / %.2f\n", v->score, v->required_score);
    if (v->smtp_message) printf("  smtp reply: %s\n", v->smtp_message);
    if (v->timed_out) printf("  note: the scan deadline cut some plugins short\n");
    size_t n = as_task_symbol_count(t);
    printf("  symbols:%s\n", n ? "" : " none");
    for (size_t i = 0; i < n; i++) {
        const struct as_task_symbol *s = as_task_symbol_at(t, i);
        printf("    %-28s %6.2f", s->sym->name, s->score);
        if (s->nopts) {
            printf("  [");
            for (size_t k = 0; k < s->nopts; k++) printf("%s%s", k ? ", " : "", s->opts[k]);
            printf("]");
        }
        printf("\n");
    }
    const struct as_task_header_op *ops;
    size_t na = as_task_header_ops(t, &ops, 0);
    for (size_t i = 0; i < na; i++) printf("  add header: %s: %s\n", ops[i].name, ops[i].value);
    size_t nd = as_task_header_ops(t, &ops, 1);
    for (size_t i = 0; i < nd; i++) printf("  remove header: %s (%d)\n", ops[i].name,
                                           ops[i].order_or_index);
}

static void check_done(struct as_task *t, void *arg)
{
    struct check_run *r = arg;
    if (r->json) {
        struct sbuf b = {0};
        as_proto_write_checkv2(t, &b);
        fputs(b.data, stdout);
        sbuf_free(&b);
    } else {
        print_text(t, r->name);
    }
    event_base_loopexit(as_task_event_base(t), NULL);
}

static int read_all(FILE *f, struct sbuf *b)
{
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sbuf_add(b, buf, n);
    return ferror(f) ? -1 : 0;
}

static int cmd_symbols(struct as_engine *e)
{
    for (size_t i = 0; i < as_symtab_count(e->symtab); i++) {
        const struct as_symbol *s = as_symtab_at(e->symtab, i);
        printf("%-28s %7.2f  %-10s %s\n", s->name, s->score, s->group ? s->group : "",
               s->description ? s->description : "");
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "check") != 0 && strcmp(cmd, "symbols") != 0) {
        fprintf(stderr, "authscan: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    static const struct option longopts[] = {
        {"ip", required_argument, NULL, 'i'},
        {"helo", required_argument, NULL, 'H'},
        {"hostname", required_argument, NULL, 'n'},
        {"from", required_argument, NULL, 'F'},
        {"rcpt", required_argument, NULL, 'r'},
        {"user", required_argument, NULL, 'u'},
        {"queue-id", required_argument, NULL, 'q'},
        {"mta-name", required_argument, NULL, 'm'},
        {"settings-id", required_argument, NULL, 'I'},
        {"json", no_argument, NULL, 'j'},
        AS_CLI_CONFIG_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct { const char *name, *value; } env[256];
    size_t nenv = 0;
    struct as_cli cli = {0};
    int json = 0;
    int c;
    as_log_init("authscan", AS_LOG_STDERR, AS_LOG_WARN);
    optind = 2;
    while ((c = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
        const char *ename = NULL;
        if (as_cli_config_opt(&cli, c, optarg)) continue;
        switch (c) {
        case 'i': ename = "IP"; break;
        case 'H': ename = "Helo"; break;
        case 'n': ename = "Hostname"; break;
        case 'F': ename = "From"; break;
        case 'r': ename = "Rcpt"; break;
        case 'u': ename = "User"; break;
        case 'q': ename = "Queue-Id"; break;
        case 'm': ename = "MTA-Name"; break;
        case 'I': ename = "Settings-ID"; break;
        case 'j': json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (ename && nenv < AS_ARRAY_LEN(env)) {
            env[nenv].name = ename;
            env[nenv++].value = optarg;
        }
    }
    if (strcmp(cmd, "check") == 0 && optind >= argc) {
        fprintf(stderr, "authscan check: no message file given (use - for stdin)\n");
        return 2;
    }

    char err[1024];
    struct as_config *cfg = as_master_load(&cli.opts, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "authscan: %s\n", err);
        return 1;
    }
    enum as_log_level lv = AS_LOG_WARN;
    if (as_config_find(cfg, "log.level") && strcmp(as_config_find(cfg, "log.level")->file,
                                                   "command line") == 0)
        as_log_parse_level(as_config_str(cfg, "log.level", "warning"), &lv);
    as_log_set_level(lv);

    struct event_base *base = event_base_new();
    struct as_engine *e = as_engine_new(base, cfg, err, sizeof err);
    if (!e) {
        fprintf(stderr, "authscan: %s\n", err);
        event_base_free(base);
        return 1;
    }
    int status = 0;
    if (strcmp(cmd, "symbols") == 0) {
        status = cmd_symbols(e);
    } else {
        for (int i = optind; i < argc; i++) {
            const char *name = argv[i];
            struct sbuf msg = {0};
            FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "rb");
            if (!f || read_all(f, &msg) < 0) {
                fprintf(stderr, "authscan: %s: %s\n", name, strerror(errno));
                if (f && f != stdin) fclose(f);
                sbuf_free(&msg);
                status = 1;
                continue;
            }
            if (f != stdin) fclose(f);
            struct as_task *t = as_task_new(e);
            int bad = 0;
            for (size_t k = 0; k < nenv && !bad; k++)
                if (as_proto_envelope_set(t, env[k].name, env[k].value, err, sizeof err))
                    bad = 1;
            if (!bad && msg.len > e->limits.max_message_size) {
                snprintf(err, sizeof err, "message of %zu bytes exceeds "
                         "limits.max_message_size (%llu)", msg.len, e->limits.max_message_size);
                bad = 1;
            }
            if (!bad && as_task_set_message(t, msg.data ? msg.data : "", msg.len, err,
                                            sizeof err) != AS_MSG_OK)
                bad = 1;
            if (bad) {
                fprintf(stderr, "authscan: %s: %s\n", name, err);
                as_task_free(t);
                sbuf_free(&msg);
                status = 1;
                continue;
            }
            struct check_run run = { json, name, 0 };
            as_task_run(t, check_done, &run);
            event_base_dispatch(base);
            as_task_free(t);
            sbuf_free(&msg);
        }
    }
    as_engine_free(e);
    event_base_free(base);
    as_cli_free(&cli);
    return status;
}
