/*
 * authscan - command-line front end.
 *
 *   authscan check [options] FILE|- ...   scan messages in-process
 *   authscan symbols [options]            list symbols with their scores
 *   authscan bench [options] MANIFEST     in-process throughput over a corpus
 *   authscan report aggregate|failure ... DMARC reports (bin/report.h)
 *
 * `check` runs exactly the daemon's pipeline (same engine, plugins, rules,
 * resolver) on its own event loop, so what it prints is what authscand
 * would answer.  See docs/operations.md.
 */
#include <errno.h>
#include <event2/event.h>
#include <sys/resource.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "util/config.h"
#include "scan/engine.h"
#include "util/log.h"
#include "bin/cli.h"
#include "bin/report.h"
#include "daemon/master.h"
#include "net/http_adapter.h"
#include "scan/session.h"
#include "scan/task.h"
#include "util/util.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: authscan check [options] FILE|- ...\n"
"       authscan symbols [options]\n"
"       authscan bench [options] MANIFEST   (see bench/README.md)\n"
"       authscan report aggregate|failure ... (see authscan report --help)\n"
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
"  --log-level LEVEL, -s/--set KEY=VALUE\n"
"  -h, --help               print this text\n");
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
        as_http_adapter_write_checkv2(t, &b);
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
    for (size_t i = 0; i < as_symtab_count(as_engine_symtab(e)); i++) {
        const struct as_symbol *s = as_symtab_at(as_engine_symtab(e), i);
        printf("%-28s %7.2f  %-10s %s\n", s->name, s->score, s->group ? s->group : "",
               s->description ? s->description : "");
    }
    return 0;
}

static int bench_main(const struct as_cli *cli, long repeat, long warmup, const char *msgdir,
                      const char *verdicts, const char *manifest);

/* ------------------------------------------------------------------ */
/* authscan bench: the in-process throughput run of bench/run.
 *
 *   authscan bench [config options] [--repeat N] [--warmup N]
 *                  [--msgs DIR] [--verdicts FILE] MANIFEST
 *
 * MANIFEST is bench/gen_corpus.py's manifest.tsv: one message per line,
 * tab-separated "file ip helo hostname mail_from rcpt queue_id ..." (more
 * columns are ignored; "<>" is the null sender, "unknown" no hostname).
 * Files are read from --msgs (default: the manifest's directory + /msgs)
 * into memory first.  Each message is then scanned with its own envelope,
 * one after the other on one event loop, exactly as `check` does:
 * --warmup passes (which fill the DNS cache; the first one writes each
 * /checkv2 reply to --verdicts as "file<TAB>json"), then --repeat measured
 * passes.  The result is one JSON line on stdout with wall and CPU time
 * (getrusage) of the measured passes only. */

struct bench_msg {
    char *file;
    char *env[7];            /* file ip helo hostname mail_from rcpt queue_id */
    struct sbuf data;
};

static const char *const bench_env_names[7] = {
    NULL, "IP", "Helo", "Hostname", "From", "Rcpt", "Queue-Id",
};

struct bench_run {
    int done;
    struct sbuf *reply;      /* non-NULL: write the /checkv2 reply here */
};

static void bench_done(struct as_task *t, void *arg)
{
    struct bench_run *r = arg;
    if (r->reply) as_http_adapter_write_checkv2(t, r->reply);
    r->done = 1;
    event_base_loopexit(as_task_event_base(t), NULL);
}

static double bench_cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int bench_load(const char *manifest, const char *msgdir, struct bench_msg **out,
                      size_t *n)
{
    FILE *f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "authscan bench: %s: %s\n", manifest, strerror(errno));
        return -1;
    }
    char dirbuf[4096];
    if (!msgdir) {
        const char *slash = strrchr(manifest, '/');
        snprintf(dirbuf, sizeof dirbuf, "%.*s/msgs", slash ? (int)(slash - manifest) : 1,
                 slash ? manifest : ".");
        msgdir = dirbuf;
    }
    size_t cap = 0, cnt = 0;
    struct bench_msg *m = NULL;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &lcap, f)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len || line[0] == '#') continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 1024;
            m = xrealloc(m, cap * sizeof *m);
        }
        struct bench_msg *b = &m[cnt];
        memset(b, 0, sizeof *b);
        char *p = line;
        for (int k = 0; k < 7 && p; k++) {
            char *tab = strchr(p, '\t');
            if (tab) *tab = 0;
            b->env[k] = xstrdup(p);
            p = tab ? tab + 1 : NULL;
        }
        if (!b->env[0] || !b->env[1]) {
            fprintf(stderr, "authscan bench: %s: line without file and IP\n", manifest);
            rc = -1;
            break;
        }
        char path[8192];
        snprintf(path, sizeof path, "%s%s%s", b->env[0][0] == '/' ? "" : msgdir,
                 b->env[0][0] == '/' ? "" : "/", b->env[0]);
        FILE *mf = fopen(path, "rb");
        if (!mf || read_all(mf, &b->data) < 0) {
            fprintf(stderr, "authscan bench: %s: %s\n", path, strerror(errno));
            if (mf) fclose(mf);
            rc = -1;
            break;
        }
        fclose(mf);
        b->file = b->env[0];
        cnt++;
    }
    free(line);
    fclose(f);
    *out = m;
    *n = cnt;
    return rc;
}

static int bench_scan(struct as_engine *e, struct event_base *base, struct bench_msg *b,
                      struct sbuf *reply)
{
    char err[256];
    struct as_task *t = as_task_new(e);
    for (int k = 1; k < 7; k++) {
        const char *v = b->env[k];
        if (!v || !*v) continue;
        if (k == 3 && strcmp(v, "unknown") == 0) continue;
        if (as_session_envelope_set(t, bench_env_names[k], v, err, sizeof err)) {
            fprintf(stderr, "authscan bench: %s: %s\n", b->file, err);
            as_task_free(t);
            return -1;
        }
    }
    if (as_task_set_message(t, b->data.data ? b->data.data : "", b->data.len, err,
                            sizeof err) != AS_MSG_OK) {
        fprintf(stderr, "authscan bench: %s: %s\n", b->file, err);
        as_task_free(t);
        return -1;
    }
    struct bench_run run = { 0, reply };
    as_task_run(t, bench_done, &run);
    while (!run.done) event_base_dispatch(base);
    as_task_free(t);
    as_task_wait_finishing(e);
    return 0;
}

static int cmd_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"repeat", required_argument, NULL, 'R'},
        {"warmup", required_argument, NULL, 'W'},
        {"msgs", required_argument, NULL, 'M'},
        {"verdicts", required_argument, NULL, 'V'},
        AS_CLI_CONFIG_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct as_cli cli = {0};
    long repeat = 3, warmup = 1;
    const char *msgdir = NULL, *verdicts = NULL;
    int c;
    as_log_init("authscan", AS_LOG_STDERR, AS_LOG_WARN);
    optind = 2;
    while ((c = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
        if (as_cli_config_opt(&cli, c, optarg)) continue;
        switch (c) {
        case 'R': repeat = strtol(optarg, NULL, 10); break;
        case 'W': warmup = strtol(optarg, NULL, 10); break;
        case 'M': msgdir = optarg; break;
        case 'V': verdicts = optarg; break;
        case 'h': usage(stdout); as_cli_free(&cli); return 0;
        default: usage(stderr); as_cli_free(&cli); return 2;
        }
    }
    int status;
    if (optind != argc - 1 || repeat < 1 || warmup < 0) {
        fprintf(stderr, "usage: authscan bench [config options] [--repeat N>=1] [--warmup N>=0]"
                " [--msgs DIR] [--verdicts FILE] MANIFEST\n");
        status = 2;
    } else {
        if (verdicts && warmup < 1) warmup = 1;
        status = bench_main(&cli, repeat, warmup, msgdir, verdicts, argv[optind]);
    }
    as_cli_free(&cli);
    return status;
}

/* The measured part of cmd_bench: one cleanup path for every outcome. */
static int bench_main(const struct as_cli *cli, long repeat, long warmup, const char *msgdir,
                      const char *verdicts, const char *manifest)
{
    struct bench_msg *msgs = NULL;
    size_t n = 0;
    struct event_base *base = NULL;
    struct as_engine *e = NULL;
    FILE *vf = NULL;
    struct sbuf reply = {0};
    int status = 1;
    if (bench_load(manifest, msgdir, &msgs, &n) < 0 || n == 0) {
        if (n == 0) fprintf(stderr, "authscan bench: no messages in %s\n", manifest);
        goto out;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += msgs[i].data.len;
    if (!(e = as_cli_engine(cli, &base))) goto out;
    if (verdicts && !(vf = fopen(verdicts, "w"))) {
        fprintf(stderr, "authscan bench: %s: %s\n", verdicts, strerror(errno));
        goto out;
    }
    status = 0;
    double w0 = 0, c0 = 0;
    for (long pass = 0; pass < warmup + repeat && status == 0; pass++) {
        if (pass == warmup) {
            w0 = as_now();
            c0 = bench_cpu_now();
        }
        for (size_t i = 0; i < n; i++) {
            int write = vf && pass == 0;
            if (write) sbuf_reset(&reply);
            if (bench_scan(e, base, &msgs[i], write ? &reply : NULL) < 0) {
                status = 1;
                break;
            }
            if (write) {
                while (reply.len && (reply.data[reply.len - 1] == '\n')) reply.data[--reply.len] = 0;
                fprintf(vf, "%s\t%s\n", msgs[i].file, reply.len ? reply.data : "{}");
            }
        }
    }
    double wall = as_now() - w0, cpu = bench_cpu_now() - c0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (status == 0) {
        double scans = (double)n * (double)repeat;
        printf("{\"messages\":%zu,\"bytes\":%zu,\"passes\":%ld,\"scans\":%.0f,"
               "\"wall_s\":%.4f,\"cpu_s\":%.4f,\"msgs_per_s\":%.1f,"
               "\"cpu_us_per_msg\":%.2f,\"wall_us_per_msg\":%.2f,\"maxrss_kb\":%ld}\n",
               n, bytes, repeat, scans, wall, cpu, scans / wall, cpu * 1e6 / scans,
               wall * 1e6 / scans, ru.ru_maxrss);
    }
out:
    if (vf) fclose(vf);
    sbuf_free(&reply);
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 7; k++) free(msgs[i].env[k]);
        sbuf_free(&msgs[i].data);
    }
    free(msgs);
    as_engine_free(e);
    if (base) event_base_free(base);
    return status;
}

struct env_opt {
    const char *name, *value;
};

static int run(const char *cmd, struct as_cli *cli, const struct env_opt *env, size_t nenv,
               int json, int nfiles, char **files);

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "report") == 0) return as_report_main(argc, argv);
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
    struct env_opt env[256];
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
        case 'h': usage(stdout); as_cli_free(&cli); return 0;
        default: usage(stderr); as_cli_free(&cli); return 2;
        }
        if (ename && nenv < AS_ARRAY_LEN(env)) {
            env[nenv].name = ename;
            env[nenv++].value = optarg;
        }
    }
    int status;
    if (strcmp(cmd, "check") == 0 && optind >= argc) {
        fprintf(stderr, "authscan check: no message file given (use - for stdin)\n");
        status = 2;
    } else {
        status = run(cmd, &cli, env, nenv, json, argc - optind, argv + optind);
    }
    as_cli_free(&cli);
    return status;
}

/* Everything after option parsing; main() frees the options on every path. */
static int run(const char *cmd, struct as_cli *cli, const struct env_opt *env, size_t nenv,
               int json, int nfiles, char **files)
{
    char err[1024];
    struct event_base *base;
    struct as_engine *e = as_cli_engine(cli, &base);
    if (!e) return 1;
    int status = 0;
    if (strcmp(cmd, "symbols") == 0) {
        status = cmd_symbols(e);
    } else {
        for (int i = 0; i < nfiles; i++) {
            const char *name = files[i];
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
                if (as_session_envelope_set(t, env[k].name, env[k].value, err, sizeof err))
                    bad = 1;
            if (!bad && msg.len > as_engine_limits(e)->max_message_size) {
                snprintf(err, sizeof err, "message of %zu bytes exceeds "
                         "limits.max_message_size (%llu)", msg.len, as_engine_limits(e)->max_message_size);
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
            as_task_wait_finishing(e);
            sbuf_free(&msg);
        }
    }
    as_engine_free(e);
    event_base_free(base);
    return status;
}
