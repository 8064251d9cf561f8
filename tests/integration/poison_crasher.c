/*
 * poison_crasher.c - a test-only plugin that kills its worker on demand,
 * standing in for a library bug (test_poison.py compiles it with gcc).
 *
 *   X-Crash: abort     abort() in scan()
 *   X-Crash: segv      raise(SIGSEGV) in scan()
 *   X-Crash: exit      _exit(3) in scan() (what a sanitizer report looks like)
 *   X-Crash: dns       abort() in the callback of a DNS query
 *
 * If the file named by $CRASHER_INIT_ABORT exists, init() aborts: a worker
 * that cannot start.  If the file named by $CRASHER_INIT_FAIL exists, init()
 * fails cleanly (the worker exits with the configuration-error status).
 */
#include <authscan/plugin.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct as_symbol_def syms[] = {
    { "CRASHER_SAW", 0.0, "test", "the crasher plugin scanned the message", 0 },
};

static int init(struct as_plugin_ctx *ctx, void **state)
{
    (void)ctx;
    (void)state;
    const char *flag = getenv("CRASHER_INIT_ABORT");
    if (flag && *flag && access(flag, F_OK) == 0) abort();
    flag = getenv("CRASHER_INIT_FAIL");
    if (flag && *flag && access(flag, F_OK) == 0) {
        as_plugin_set_error(ctx, "%s exists", flag);
        return -1;
    }
    return 0;
}

static void dns_cb(struct as_task *t, const struct as_dns_answer *ans, void *arg)
{
    (void)t;
    (void)ans;
    (void)arg;
    abort();
}

static void scan(struct as_task *t, void *state)
{
    (void)state;
    as_task_add_symbol(t, "CRASHER_SAW", 1.0, (const char *)0);
    const struct as_header *h = as_msg_header_get(as_task_message(t), "X-Crash", 0);
    if (!h) return;
    size_t len;
    const char *v = as_header_unfold(t, h, &len);
    if (strcmp(v, "abort") == 0) abort();
    if (strcmp(v, "segv") == 0) raise(SIGSEGV);
    if (strcmp(v, "exit") == 0) _exit(3);
    if (strcmp(v, "dns") == 0) as_dns_query(t, "crash.example", AS_DNS_TXT, dns_cb, 0);
}

const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER,
    .name = "crasher",
    .version = "1",
    .symbols = syms,
    .nsymbols = 1,
    .init = init,
    .scan = scan,
};
