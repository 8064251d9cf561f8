/*
 * authscan/plugin.h - the authscan plugin ABI.
 *
 * A plugin is a shared object in the plugins directory that exports one
 * object named `authscan_plugin` of type `struct as_plugin`:
 *
 *     #include <authscan/plugin.h>
 *
 *     static const struct as_symbol_def syms[] = {
 *         { "HELLO_WORLD", 0.5, "example", "Says hello", 0 },
 *     };
 *     static void scan(struct as_task *t, void *state) {
 *         (void)state;
 *         as_task_add_symbol(t, "HELLO_WORLD", 1.0, "hi", NULL);
 *     }
 *     const struct as_plugin authscan_plugin = {
 *         AS_PLUGIN_HEADER,
 *         .name = "hello", .version = "1.0",
 *         .symbols = syms, .nsymbols = 1,
 *         .scan = scan,
 *     };
 *
 * Build it with `cc -shared -fPIC -I<prefix>/include hello.c -o hello.so`;
 * the functions below are resolved from the host process at load time.
 *
 * Life of a plugin (per worker process):
 *   load  the loader dlopen()s the file, checks abi_major == host's and
 *         abi_minor <= host's, and checks `depends`;
 *   init  called once per worker with the plugin's configuration; may keep
 *         private state (returned through *state, handed back to every
 *         other hook; keep per-worker state there, not in statics).  Also
 *         called, then fini, by the configuration check (--check-config,
 *         start, reload) in a short-lived process, so that every option
 *         init refuses stops the check, not a worker: init must judge
 *         every option, and must not send or expect network traffic;
 *   fini  called when the worker exits, with that state.
 *
 * Life of a message: three stages, like rspamd's filters, postfilters and
 * idempotent rules.  In each stage a plugin's hook runs after the hooks of
 * every plugin named in `depends` have finished with that message; a
 * plugin "finishes" a stage when its hook has returned and it has no
 * asynchronous operation outstanding (as_dns_query(), or operations
 * bracketed with as_task_async_begin()/as_task_async_end(); their
 * callbacks may start further operations).  A plugin without a hook for a
 * stage finishes it at once.
 *   scan        the filters: look at the message, add symbols, force
 *               actions, publish typed results;
 *   postfilter  (ABI 1.2) after every filter, with the verdict computed:
 *               read it (as_task_action() ...) and the symbols, then add
 *               symbols or force actions (site overrides: quarantine
 *               instead of reject).  The verdict is computed again after
 *               the last postfilter and is then final;
 *   finish      (ABI 1.2) after the reply went to the MTA: read-only (adding
 *               symbols, forcing actions or changing headers fails), never
 *               delays the reply.  For history, report counters, stats.
 *               It may wait for asynchronous work (a Redis write) up to
 *               limits.scan_timeout, counted from its start; what is still
 *               outstanding then, or when the worker exits, is cancelled.
 *               It runs only for messages that got a verdict (not when the
 *               client went away first).
 * The scan deadline (limits.scan_timeout) covers scan and postfilter.
 * When it passes, outstanding operations are cancelled, AUTHSCAN_TIMEOUT
 * is added, and the postfilters still run but cannot start asynchronous
 * work (as_task_async_begin() returns NULL, as_dns_query() fails).
 *
 * Threading: none.  Every call happens on the worker's event loop thread.
 * Never block: no synchronous DNS, no sleeping, no blocking sockets.
 *
 * Ownership rules:
 *   - Strings and structs the host hands to a plugin stay valid for the life
 *     of the task (per-scan data) or of the worker (configuration), and
 *     belong to the host.  Never free them.
 *   - Strings a plugin hands to the host (symbol options, SMTP messages,
 *     header values) are copied by the host; the plugin keeps ownership.
 *   - Per-scan memory that a plugin needs should come from as_task_pool():
 *     it is freed in one go when the scan ends, so nothing leaks when a scan
 *     is cancelled half way.
 *
 * Errors: functions returning int return 0 on success and -1 on failure;
 * failures are logged by the host with the scan id.
 *
 * Versioning: AS_PLUGIN_ABI_MAJOR changes when an existing declaration in
 * this file changes; AS_PLUGIN_ABI_MINOR when something is only added.
 * New members of struct as_plugin go at its end and are read only from
 * plugins whose abi_minor has them.  1.1: as_authres_value().  1.2: the
 * postfilter and finish stages, the verdict and symbol readers,
 * as_action_parse(), as_task_add_auth_result[v]() (the host writes
 * Authentication-Results), as_plugin_opt_error() and its companions.
 * 1.3: Redis: as_redis_command(), as_redis_send(), as_redis_key(),
 * as_plugin_redis_enabled(), as_plugin_redis_script(); struct as_plugin
 * member `after` (soft ordering; ARC).  Counters: as_plugin_counter(),
 * as_plugin_count().
 * 1.4: Policy overrides: enum as_override_type, struct as_policy_override,
 * as_override_type_name(), as_task_add_override(), as_task_overrides().
 * 1.5: as_plugin_shared() (one object for several plugins: the decoded
 * DKIM keys of the dkim and arc plugins).
 * 1.6: as_pool_alloc_uninit().
 *
 * Typed results of the shipped plugins are installed beside this file:
 * authscan/spf.h, authscan/dkim.h, authscan/dmarc.h, authscan/arc.h.
 */
#ifndef AUTHSCAN_PLUGIN_H
#define AUTHSCAN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AS_PLUGIN_ABI_MAJOR 1
#define AS_PLUGIN_ABI_MINOR 6

#if defined(__GNUC__)
#define AS_API __attribute__((visibility("default")))
#define AS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define AS_SENTINEL __attribute__((sentinel))
#else
#define AS_API
#define AS_PRINTF(f, a)
#define AS_SENTINEL
#endif

struct as_task;       /* one message being scanned */
struct as_pool;       /* per-task memory arena */
struct as_plugin_ctx; /* what init() gets: configuration, event loop */
struct as_async;      /* an outstanding asynchronous operation */
struct event_base;    /* libevent */

/* ------------------------------------------------------------------ */
/* Memory: a per-task arena.  Everything is freed when the task ends.  */

AS_API void *as_pool_alloc(struct as_pool *pool, size_t size);  /* zeroed */
/* Not zeroed (since ABI 1.6): for large buffers whose every byte read is
 * written first; zeroing kilobytes a message costs more than it seems. */
AS_API void *as_pool_alloc_uninit(struct as_pool *pool, size_t size);
AS_API char *as_pool_strdup(struct as_pool *pool, const char *s);
AS_API char *as_pool_strndup(struct as_pool *pool, const char *s, size_t n);
/* printf into the pool.  Formats made only of %s, %.*s, %% and %d/%i/%u
 * (with l, ll or z) are written without vsnprintf, whose set-up alone costs
 * about a thousand instructions a call: keep per-message names and keys to
 * those.  Anything else goes through vsnprintf. */
AS_API char *as_pool_printf(struct as_pool *pool, const char *fmt, ...) AS_PRINTF(2, 3);
/* fn(arg) runs when the pool is destroyed (e.g. to free a library object). */
AS_API int as_pool_on_destroy(struct as_pool *pool, void (*fn)(void *), void *arg);

/* ------------------------------------------------------------------ */
/* Logging.  as_task_log() prefixes the scan id.                       */

enum as_log_level { AS_LOG_ERR, AS_LOG_WARN, AS_LOG_NOTICE, AS_LOG_INFO, AS_LOG_DEBUG };

AS_API void as_log(enum as_log_level level, const char *fmt, ...) AS_PRINTF(2, 3);
AS_API void as_task_log(const struct as_task *t, enum as_log_level level,
                        const char *fmt, ...) AS_PRINTF(3, 4);

/* ------------------------------------------------------------------ */
/* The envelope: what the MTA knows about the SMTP transaction.        */

struct as_envelope {
    const char *ip;          /* client IP as text, NULL if not given */
    int family;              /* AF_INET, AF_INET6, or AF_UNSPEC if no IP */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr;                  /* ::ffff:a.b.c.d is reported as AF_INET */
    const char *helo;        /* NULL if not given */
    const char *hostname;    /* PTR name the MTA resolved, NULL if none */
    const char *mail_from;   /* NULL: not given; "": null sender (<>) */
    const char *const *rcpts;
    size_t nrcpts;
    const char *queue_id;
    const char *user;        /* SASL-authenticated user, NULL if none */
    const char *mta_name;    /* MTA-Name: default authserv-id */
    const char *settings_id;
};

AS_API const struct as_envelope *as_task_envelope(const struct as_task *t);
AS_API struct as_pool *as_task_pool(const struct as_task *t);
AS_API const char *as_task_id(const struct as_task *t);  /* per-scan id */

/* ------------------------------------------------------------------ */
/* The message.  Header fields are slices of the raw message: nothing  */
/* is copied until a plugin asks for an unfolded value.                */

struct as_str {
    const char *ptr;
    size_t len;
};

struct as_header {
    struct as_str name;      /* field name as written, without ':' */
    struct as_str value;     /* raw value after ':', folding kept, no final CRLF */
    struct as_str raw;       /* the whole field, folding kept, no final CRLF */
    size_t index;            /* position among all fields, from 0 */
};

struct as_message;

AS_API const struct as_message *as_task_message(const struct as_task *t);
AS_API size_t as_msg_header_total(const struct as_message *m);
AS_API const struct as_header *as_msg_header_at(const struct as_message *m, size_t i);
/* Fields named `name` (case-insensitive): how many, and the nth (0-based;
 * negative counts from the end, -1 = last).  NULL if there is none. */
AS_API size_t as_msg_header_count(const struct as_message *m, const char *name);
AS_API const struct as_header *as_msg_header_get(const struct as_message *m,
                                                 const char *name, int nth);
/* The value unfolded (CRLF+WSP -> WSP) with surrounding blanks trimmed,
 * NUL-terminated, in the task pool.  NUL bytes in the value are kept. */
AS_API const char *as_header_unfold(const struct as_task *t, const struct as_header *h,
                                    size_t *len);
AS_API struct as_str as_msg_body(const struct as_message *m);   /* after the blank line */
AS_API struct as_str as_msg_raw(const struct as_message *m);    /* the whole message */
/* Line ending used by the header block: 1 if CRLF, 0 if bare LF. */
AS_API int as_msg_crlf(const struct as_message *m);

/* ------------------------------------------------------------------ */
/* Addresses (RFC 5322 section 3.4).                                   */

struct as_mailbox {
    const char *display_name; /* decoded (RFC 2047) to UTF-8, NULL if none */
    const char *local_part;   /* unquoted */
    const char *domain;       /* lower case, A-labels, no trailing dot; NULL if none */
    const char *addr;         /* local_part@domain as written after unquoting */
    const char *group;        /* name of the group it appeared in, or NULL */
    unsigned flags;           /* AS_MAILBOX_* */
};
#define AS_MAILBOX_DOMAIN_LITERAL 0x1u  /* domain was [1.2.3.4] */
#define AS_MAILBOX_IDN            0x2u  /* domain had U-labels, converted */

struct as_address_list {
    struct as_mailbox *boxes;
    size_t nboxes;
    size_t ngroups;           /* group constructs seen (empty ones included) */
};

/* Parses an address-list (From, To, Reply-To...) into pool memory.
 * Returns 0, or -1 with *err set to a static description of the problem. */
AS_API int as_address_list_parse(struct as_pool *pool, const char *s, size_t len,
                                 struct as_address_list *out, const char **err);

/* Lower-cases a domain, strips one trailing dot and converts U-labels to
 * A-labels (IDNA2008 via libidn2, UTS#46 non-transitional mapping).
 * Returns a pool string, or NULL if the name is not a valid host name. */
AS_API const char *as_domain_normalize(struct as_pool *pool, const char *s, size_t len);

/* An RFC 8601 property value (pvalue) for Authentication-Results: the
 * value as is when it is a plain domain, local-part@domain or token, else
 * a quoted-string with '"' and '\\' escaped and bytes outside printable
 * ASCII replaced by '?'.  Use it for every value that comes from the SMTP
 * session or the message (HELO, MAIL FROM): unquoted, a HELO such as
 * "x; dkim=pass" would add a result to our header.  Since ABI 1.1. */
AS_API const char *as_authres_value(struct as_pool *pool, const char *value);

/* Authentication-Results (RFC 8601), since ABI 1.2.  The host writes one
 * field per scan when the postfilters are done (or the scan deadline
 * passed), with one resinfo per call below made by any plugin during the
 * scan and postfilter stages: a plugin reports what it checked and never
 * formats or adds the field itself.  In the same step the host removes
 * every field already in the message that carries our authserv-id.  Both
 * happen for every scan that a Settings-ID profile does not exempt
 * (settings.NAME.auth_results = no), whichever plugins ran.  Order in the
 * field: spf, then dkim, then dmarc, then any other method; results of one
 * method in plugin order, then in the order they were added.  See
 * docs/architecture.md and docs/security.md.
 *
 * A resinfo is "method=result", an optional comment, an optional
 * reason="...", and ptype.property=value pairs:
 *     dkim=fail reason="body hash mismatch" header.d=example.com header.s=sel
 * method, result and each property name ("smtp.mailfrom", "header.d",
 * "policy.dmarc": ptype "." property) must be RFC 8601 keywords (letters,
 * digits and inner '-').  Values are quoted by the
 * host with as_authres_value(), the reason as a token or quoted-string,
 * and the comment has '(', ')' and '\' escaped, so text from the message
 * or the SMTP session cannot add a result.  Strings are copied.  Returns
 * 0, or -1 (logged) for a malformed method, result or property name, a
 * property without a value, or after the verdict is final. */
struct as_auth_prop {
    const char *name;              /* "ptype.property", e.g. "smtp.mailfrom" */
    const char *value;
};

struct as_auth_result {
    const char *method;            /* "spf", "dkim", "dmarc", "iprev" ... */
    const char *result;            /* "pass", "fail", "none" ... */
    const char *comment;           /* NULL, or a comment put after the result */
    const char *reason;            /* NULL, or why (reason="...") */
    const struct as_auth_prop *props;
    size_t nprops;
};

AS_API int as_task_add_auth_resultv(struct as_task *t, const struct as_auth_result *r);
/* The same with the properties as name, value pairs ending in NULL (at
 * most 16 pairs):
 *     as_task_add_auth_result(t, "spf", "pass", NULL,
 *                             "smtp.mailfrom", domain, NULL); */
AS_API int as_task_add_auth_result(struct as_task *t, const char *method, const char *result,
                                   const char *reason, ...) AS_SENTINEL;

/* The RFC5322.From of the message, parsed once per task.  The states are
 * distinct because DMARC treats them differently (see docs/dmarc.md). */
enum as_from_status {
    AS_FROM_OK = 0,            /* exactly one field with exactly one mailbox */
    AS_FROM_MISSING,           /* no From field */
    AS_FROM_MULTIPLE_FIELDS,   /* more than one From field */
    AS_FROM_MULTIPLE_MAILBOXES,/* one field, several mailboxes */
    AS_FROM_GROUP,             /* the address was inside group syntax */
    AS_FROM_EMPTY,             /* field present, no mailbox in it */
    AS_FROM_NO_DOMAIN,         /* the mailbox has no usable domain */
    AS_FROM_INVALID,           /* field could not be parsed */
};

struct as_from {
    enum as_from_status status;
    size_t nfields;            /* number of From fields */
    struct as_address_list list; /* every mailbox of every From field */
    const char *domain;        /* the author domain when status == AS_FROM_OK */
    const char *error;         /* parser message when AS_FROM_INVALID */
};

AS_API const struct as_from *as_task_from(const struct as_task *t);
AS_API const char *as_from_status_name(enum as_from_status st);

/* ------------------------------------------------------------------ */
/* Symbols and actions.                                                */

struct as_symbol_def {
    const char *name;         /* e.g. "R_SPF_ALLOW": [A-Z0-9_]+ */
    double score;             /* default weight; the rules files may override */
    const char *group;        /* e.g. "spf" */
    const char *description;
    unsigned flags;           /* AS_SYM_* */
};
#define AS_SYM_ONE_SHOT 0x1u  /* a second insert only adds options */

/* Adds a symbol to the scan with weight * configured score.  Options are
 * strings terminated by NULL.  Adding the same symbol twice merges the
 * options and keeps the larger weight.  Unknown symbols are an error, and
 * so is adding one after the verdict is final.  Bounds: an option keeps
 * at most 1024 bytes (a longer one is cut and ends in "..."), a symbol at
 * most 64 options (then one last option "..." says more were given); the
 * host logs either once per symbol and message. */
AS_API int as_task_add_symbol(struct as_task *t, const char *name, double weight, ...)
    AS_SENTINEL;
AS_API int as_task_add_symbolv(struct as_task *t, const char *name, double weight,
                               const char *const *opts, size_t nopts);
AS_API int as_task_has_symbol(const struct as_task *t, const char *name);

/* Actions in increasing severity.  Strings follow rspamd ("add header"). */
enum as_action {
    AS_ACTION_NO_ACTION = 0,
    AS_ACTION_GREYLIST,
    AS_ACTION_ADD_HEADER,
    AS_ACTION_REWRITE_SUBJECT,
    AS_ACTION_QUARANTINE,
    AS_ACTION_SOFT_REJECT,
    AS_ACTION_REJECT,
    AS_ACTION__COUNT
};
AS_API const char *as_action_name(enum as_action a);
/* The inverse of as_action_name(): "add header" or "add_header" (any case)
 * -> AS_ACTION_ADD_HEADER; "accept" is no action.  -1 if unknown (so
 * "none"/"off", which mean "no action configured", are the caller's to
 * handle).  Since ABI 1.2. */
AS_API int as_action_parse(const char *s);

enum as_force_mode {
    AS_FORCE_LEAST,   /* at least this action: a more severe one still wins */
    AS_FORCE_EXACT,   /* exactly this action, overriding lower priorities */
};
#define AS_PRIO_PLUGIN 50   /* plugins (e.g. DMARC enforcement) */
#define AS_PRIO_SITE  100   /* site hooks that override plugins */

/* Forces are applied in increasing priority on top of the score-based
 * action: LEAST raises the action to at least `action`, EXACT replaces it.
 * smtp_message may be NULL for the action's default reply text. */
AS_API int as_task_force_action(struct as_task *t, enum as_action action,
                                enum as_force_mode mode, int priority,
                                const char *smtp_message, const char *module);

/* The verdict (since ABI 1.2).  Before it is final (in scan and
 * postfilter) these compute it from what the task holds now, so a
 * postfilter sees the effect of its own changes; from the finish stage on
 * they return the final verdict, the one sent to the MTA. */
AS_API enum as_action as_task_action(const struct as_task *t);
AS_API double as_task_score(const struct as_task *t);
AS_API double as_task_required_score(const struct as_task *t);  /* reject threshold */
/* The module whose force decided the action, or NULL if the score did. */
AS_API const char *as_task_forced_by(const struct as_task *t);
/* The SMTP reply text for the action, or NULL for none. */
AS_API const char *as_task_smtp_message(const struct as_task *t);
/* 1 if the scan deadline cut plugins short. */
AS_API int as_task_timed_out(const struct as_task *t);

enum as_stage { AS_STAGE_FILTER, AS_STAGE_POSTFILTER, AS_STAGE_FINISH };
AS_API enum as_stage as_task_stage(const struct as_task *t);

/* The task's symbols in the order they were first added (since ABI 1.2).
 * The struct belongs to the host; it is valid until the next call of
 * as_task_symbol_get() for the same index or the end of the task; the
 * strings in it until the end of the task. */
struct as_symbol_result {
    const char *name;
    const char *group;            /* NULL if none */
    double score;                 /* weight * configured score */
    double weight;
    const char *const *options;
    size_t noptions;
};
AS_API size_t as_task_symbol_total(const struct as_task *t);
AS_API const struct as_symbol_result *as_task_symbol_get(const struct as_task *t, size_t i);

/* Header changes for the MTA (rspamd reply: milter.add_headers and
 * milter.remove_headers).  remove index: 0 = every instance, N = the N-th
 * (1-based), -N = the N-th from the end. */
AS_API int as_task_add_header(struct as_task *t, const char *name, const char *value,
                              int order);
AS_API int as_task_remove_header(struct as_task *t, const char *name, int index);

/* Typed results shared between plugins.  A producer publishes a pointer
 * (normally to pool memory) under a key; the struct behind it is declared
 * in the producer's header (e.g. authscan/spf.h) and starts with a version
 * field.  NULL if nothing was published. */
AS_API int as_task_set_result(struct as_task *t, const char *key, const void *value);
AS_API const void *as_task_get_result(const struct as_task *t, const char *key);

/* ------------------------------------------------------------------ */
/* Asynchronous work.                                                  */

/* Brackets an operation the plugin runs on its own (a timer, a socket).
 * cancel(arg) runs instead of the plugin's completion if the scan ends
 * first (timeout, client gone); after it the plugin must not touch the
 * task.  Call as_task_async_end() from the completion callback. */
typedef void (*as_cancel_fn)(void *arg);
AS_API struct as_async *as_task_async_begin(struct as_task *t, as_cancel_fn cancel,
                                            void *arg);
AS_API void as_task_async_end(struct as_task *t, struct as_async *op);
AS_API struct event_base *as_task_event_base(const struct as_task *t);

/* ------------------------------------------------------------------ */
/* DNS: asynchronous, cached, deadline-bounded.  See docs/dns.md.      */

enum as_dns_rrtype {
    AS_DNS_A = 1, AS_DNS_NS = 2, AS_DNS_CNAME = 5, AS_DNS_PTR = 12,
    AS_DNS_MX = 15, AS_DNS_TXT = 16, AS_DNS_AAAA = 28, AS_DNS_SPF = 99,
};

enum as_dns_status {
    AS_DNS_OK = 0,        /* NOERROR with at least one record of the type */
    AS_DNS_NXDOMAIN,      /* the name does not exist */
    AS_DNS_NODATA,        /* the name exists, no record of that type */
    AS_DNS_SERVFAIL,      /* SERVFAIL, REFUSED, malformed answer */
    AS_DNS_TIMEOUT,       /* our deadline passed */
    AS_DNS_BADNAME,       /* not a valid name: never sent */
    AS_DNS_BUDGET,        /* per-scan query budget exhausted: never sent */
};

struct as_dns_txt {
    size_t nstrings;
    const struct as_str *strings; /* the character-strings as sent */
    struct as_str joined;         /* concatenated, NUL-terminated */
};

struct as_dns_rr {
    uint16_t type;
    uint32_t ttl;
    union {
        struct in_addr a;
        struct in6_addr aaaa;
        struct { uint16_t pref; const char *host; } mx;
        const char *name;         /* PTR, CNAME, NS: lower case, no trailing dot */
        struct as_dns_txt txt;
    } d;
};

struct as_dns_answer {
    const char *name;             /* queried name, lower case, no trailing dot */
    uint16_t type;
    enum as_dns_status status;
    uint32_t ttl;                 /* smallest TTL, or negative-caching TTL */
    size_t nrr;
    const struct as_dns_rr *rr;   /* only records of the queried type */
};

/* Starts a lookup.  cb runs later from the event loop, never from inside
 * as_dns_query(), with an answer that stays valid and unchanged for the
 * rest of the task: a task that asks twice sees the same answer.
 * Returns 0, or -1 if the query could not be started (no callback then). */
typedef void (*as_dns_cb)(struct as_task *t, const struct as_dns_answer *ans, void *arg);
AS_API int as_dns_query(struct as_task *t, const char *name, uint16_t type,
                        as_dns_cb cb, void *arg);
/* The answer this task already has for (name, type), or NULL.  For a name
 * that is not a valid DNS name the answer is always AS_DNS_BADNAME. */
AS_API const struct as_dns_answer *as_dns_pinned(const struct as_task *t,
                                                 const char *name, uint16_t type);
AS_API const char *as_dns_status_name(enum as_dns_status st);

/* ------------------------------------------------------------------ */
/* Plugin definition and configuration.                                */

enum as_opt_type {
    AS_OPT_BOOL,      /* yes/no/true/false/on/off/1/0 */
    AS_OPT_INT,
    AS_OPT_DOUBLE,
    AS_OPT_STRING,
    AS_OPT_LIST,      /* comma-separated, repeatable */
    AS_OPT_DURATION,  /* 1.5s, 200ms, 2m; read back in seconds */
    AS_OPT_SIZE,      /* 512, 64k, 50M; read back in bytes */
};

struct as_option_def {
    const char *name;           /* key under "<plugin name>." in the config */
    enum as_opt_type type;
    const char *default_value;  /* as it would be written in the file; NULL: unset */
    const char *help;
};

AS_API int as_plugin_opt_bool(const struct as_plugin_ctx *c, const char *name);
AS_API long long as_plugin_opt_int(const struct as_plugin_ctx *c, const char *name);
AS_API double as_plugin_opt_double(const struct as_plugin_ctx *c, const char *name);
AS_API const char *as_plugin_opt_string(const struct as_plugin_ctx *c, const char *name);
/* Items of a list option; returns the count, *items valid for the worker's life. */
AS_API size_t as_plugin_opt_list(const struct as_plugin_ctx *c, const char *name,
                                 const char *const **items);
AS_API double as_plugin_opt_duration(const struct as_plugin_ctx *c, const char *name);
AS_API unsigned long long as_plugin_opt_size(const struct as_plugin_ctx *c,
                                             const char *name);
/* For init(): say why it failed (copied); init then returns -1.  For a
 * problem with an option's value use as_plugin_opt_error() instead, which
 * names the line of the config that set it. */
AS_API void as_plugin_set_error(struct as_plugin_ctx *c, const char *fmt, ...)
    AS_PRINTF(2, 3);
/* For init(), since ABI 1.2: the error of an option whose value the plugin
 * refuses.  The message names where the value came from, like every other
 * config error:
 *     "FILE:LINE: PLUGIN.NAME = VALUE: <fmt>"
 * ("command line: ..." for --set; a declared default that init refuses is
 * reported as the plugin's own bug).  as_plugin_opt_item_error() is the
 * same for one item of a list option, and names the line that brought
 * that item: "FILE:LINE: PLUGIN.NAME item 'ITEM': <fmt>".  Both replace
 * any earlier error and return -1, for `return as_plugin_opt_error(...)`. */
AS_API int as_plugin_opt_error(struct as_plugin_ctx *c, const char *name, const char *fmt, ...)
    AS_PRINTF(3, 4);
AS_API int as_plugin_opt_item_error(struct as_plugin_ctx *c, const char *name, const char *item,
                                    const char *fmt, ...) AS_PRINTF(4, 5);
/* Since ABI 1.2: an integer option, refused unless min <= value <= max.
 * Use it instead of as_plugin_opt_int() for every integer that is stored
 * in a narrower type or multiplied: the value is checked as written, so
 * 4294967297 is an error instead of an int holding 1.  Returns 0 with
 * *out set, or -1 after as_plugin_opt_error() ("expected MIN to MAX"). */
AS_API int as_plugin_opt_int_range(struct as_plugin_ctx *c, const char *name, long long min,
                                   long long max, long long *out);
/* Since ABI 1.2: 1 if the configuration (a file or the command line) sets
 * the option, 0 if it is unset or has its declared default.  For options
 * that only one mode of the plugin uses: a value the mode ignores must be
 * an error (as_plugin_opt_error), never accepted and silently dropped. */
AS_API int as_plugin_opt_is_set(const struct as_plugin_ctx *c, const char *name);
AS_API struct event_base *as_plugin_event_base(const struct as_plugin_ctx *c);
/* For init(): DNS queries of every scan that only this plugin may make.
 * A plugin spends its reserve first, then the queries all plugins share
 * (dns.max_queries), so the work of one plugin cannot leave another
 * without the queries it needs (DMARC's policy lookup after a hostile SPF
 * record, say).  The plugin gets the larger of this and
 * dns.plugin_reserve.  Returns 0, or -1 for more than 100000.  Since ABI
 * 1.2. */
AS_API int as_plugin_dns_reserve(struct as_plugin_ctx *c, unsigned queries);
AS_API const char *as_plugin_name(const struct as_plugin_ctx *c);
/* For init(): per-worker state that several plugins use and none should
 * keep twice (a cache of decoded keys, say).  The first caller's
 * make(arg) creates the object called `name`; every later caller, in this
 * plugin or another, gets the same pointer (make is not called again).
 * The host owns it: drop(obj) runs once when the plugin set is torn down
 * (a reload, the worker's end), after every plugin's fini() and while
 * their code is still loaded.  All users must agree on what the object
 * is: put its type and version in the name ("dkim.key_cache.1").  Returns
 * NULL when make() did.  Since ABI 1.5. */
AS_API void *as_plugin_shared(struct as_plugin_ctx *c, const char *name,
                              void *(*make)(void *arg), void (*drop)(void *obj), void *arg);

struct as_plugin {
    /* Must come first and be filled with AS_PLUGIN_HEADER. */
    uint32_t abi_major;
    uint32_t abi_minor;

    const char *name;                 /* [a-z0-9_]+, also the config prefix */
    const char *version;
    const char *description;
    const char *const *depends;       /* NULL-terminated plugin names, or NULL */

    const struct as_symbol_def *symbols;
    size_t nsymbols;
    const struct as_option_def *options;
    size_t noptions;

    /* All optional.  init returns 0 or -1 (after as_plugin_set_error). */
    int (*init)(struct as_plugin_ctx *ctx, void **state);
    void (*scan)(struct as_task *t, void *state);
    void (*fini)(void *state);

    /* Since ABI 1.2 (the host reads them only from plugins built with
     * abi_minor >= 2, so older plugins load unchanged).  See the stages
     * at the top of this file. */
    void (*postfilter)(struct as_task *t, void *state);
    void (*finish)(struct as_task *t, void *state);

    /* ---- ARC (issue 20), since ABI 1.3 ---- */
    /* NULL-terminated plugin names this plugin runs after in every stage
     * when they are loaded, like `depends`, but a missing or disabled one
     * is no error (DMARC reads the arc result when there is one).  Read
     * only from plugins built with abi_minor >= 3. */
    const char *const *after;
};

#define AS_PLUGIN_HEADER .abi_major = AS_PLUGIN_ABI_MAJOR, .abi_minor = AS_PLUGIN_ABI_MINOR
#define AS_PLUGIN_SYMBOL "authscan_plugin"

/* ------------------------------------------------------------------ */
/* Redis (since ABI 1.3): commands on the worker's few long-lived,     */
/* pipelined connections to redis.servers.  See docs/redis.md.         */
/*
 * Commands are argv-style: each argument is passed with its length, so a
 * domain or a header value can never split or add an argument (there is
 * no format string).  argvlen NULL means every argument is a C string.
 * At most 1024 arguments.
 *
 * Keys: build every key with as_redis_key(), which puts redis.prefix in
 * front, so sites can share a Redis between installations, and a hash
 * tag {tag} after it, so that one domain's keys live in one Redis Cluster
 * slot and a script may touch several of them.  With several shards
 * (redis.servers, docs/redis.md "Sharding") a command goes to the shard
 * of its key's tag (EVAL/EVALSHA: its first key's), so the keys of one
 * command must share one tag.
 *
 * Fail open: Redis down, slow, refusing or answering errors never fails a
 * scan; every command with a callback is answered within redis.timeout.
 */

enum as_redis_status {
    AS_REDIS_OK = 0,        /* a reply came (it may be nil or empty) */
    AS_REDIS_ERROR,         /* Redis answered with an error reply (reply->str) */
    AS_REDIS_TIMEOUT,       /* no reply within redis.timeout (reply is NULL) */
    AS_REDIS_UNAVAILABLE,   /* the connection was lost first (reply is NULL) */
};

enum as_redis_reply_type {
    AS_REDIS_REPLY_NIL = 0,
    AS_REDIS_REPLY_STRING,  /* bulk string: str */
    AS_REDIS_REPLY_STATUS,  /* +OK: str */
    AS_REDIS_REPLY_INTEGER, /* integer */
    AS_REDIS_REPLY_ARRAY,   /* elem[0 .. nelem) */
    AS_REDIS_REPLY_ERROR,   /* -ERR ...: str */
};

struct as_redis_reply {
    enum as_redis_reply_type type;
    long long integer;
    struct as_str str;                   /* NUL-terminated; binary-safe with len */
    size_t nelem;
    const struct as_redis_reply *elem;
};

/* A command for the task: the task waits for it like for a DNS answer
 * (the plugin has not finished the stage until cb has run), and it is
 * cancelled when the scan ends first (deadline, client gone): cb does not
 * run then.  cb runs later from the event loop, never from inside this
 * call, with st and a reply that belong to the host and are valid only
 * during the callback (copy what you keep, e.g. into as_task_pool()).
 * Usable in every stage that may start asynchronous work (scan,
 * postfilter before the deadline, finish).  Returns 0, or -1 (no
 * callback then) when Redis is off (redis.servers unset), no connection
 * is up, or the task may not start asynchronous work.  The arguments are
 * copied. */
typedef void (*as_redis_cb)(struct as_task *t, enum as_redis_status st,
                            const struct as_redis_reply *reply, void *arg);
AS_API int as_redis_command(struct as_task *t, as_redis_cb cb, void *arg, size_t argc,
                            const char *const *argv, const size_t *argvlen);

/* Fire and forget, bound to no task: for writes from the finish stage (or
 * a timer) that must not hold anything up.  The reply is dropped; error
 * replies are counted in /stat.  While no connection is up, the command
 * waits in a queue of at most redis.queue_max commands; a command that
 * does not fit is dropped and counted.  Returns 0 when sent or queued,
 * -1 when dropped or Redis is off.  The arguments are copied. */
AS_API int as_redis_send(const struct as_plugin_ctx *c, size_t argc, const char *const *argv,
                         const size_t *argvlen);

/* redis.prefix + "{" tag "}" + name, in pool (tag NULL: no hash tag).
 * NULL if tag holds '{' or '}' (it would move the hash tag).  E.g. with
 * prefix "as:": as_redis_key(pool, c, "example.com", "h") is
 * "as:{example.com}h". */
AS_API const char *as_redis_key(struct as_pool *pool, const struct as_plugin_ctx *c,
                                const char *tag, const char *name);

/* 1 if redis.servers is set.  A plugin that needs Redis says once per
 * worker that it is off without it. */
AS_API int as_plugin_redis_enabled(const struct as_plugin_ctx *c);

/* For init(): a Lua script that every Redis connection of the worker
 * loads (SCRIPT LOAD) right after connecting, before anything else is
 * sent on it, so that EVALSHA with the returned SHA1 always finds it,
 * after a Redis restart too (a SCRIPT FLUSH by hand makes EVALSHA fail
 * with NOSCRIPT until the next reconnect; /stat counts the errors).
 * Saves sending the script's text with every EVAL.  Returns the SHA1 in
 * hex, valid for the worker's life, or NULL when Redis is off. */
AS_API const char *as_plugin_redis_script(struct as_plugin_ctx *c, const char *body);

/* ---- Counters (issue 17: daemon-wide stats, since ABI 1.3) ----
 * A plugin's own counts (reports sent, say), summed over every worker and
 * kept across worker restarts and reloads like the core's (docs/stats.md).
 * /stat shows them under "plugins": {"<plugin>": {"<name>": n}}, /metrics
 * as authscan_<plugin>_<name>_total with the help text.  Names are fixed
 * words, never data from a message. */

/* In init(): declares counter name ([a-z0-9_], "plugin.name" under 64
 * bytes) with its help text.  Returns a handle for as_plugin_count(), or
 * -1 with the plugin's error set (bad or duplicate name, table full). */
AS_API int as_plugin_counter(struct as_plugin_ctx *c, const char *name, const char *help);
/* Adds n to the counter (any stage, any callback of the worker). */
AS_API void as_plugin_count(const struct as_plugin_ctx *c, int counter, uint64_t n);

/* ---- Policy overrides (issues 14, 15, 20: since ABI 1.4) ----
 * When a message is not handled the way a policy asked (DMARC's p=), the
 * task keeps why, once, for everything that shows it: the policy's
 * Authentication-Results entry (policy.override-reason), the /checkv2
 * reply, the log line and the DMARC aggregate report (RFC 7489 C
 * PolicyOverrideType; DMARCbis adds policy_test_mode, drops sampled_out).
 * The policy's plugin records the overrides it makes itself (t=y, pct,
 * its mailing-list safeguard, a trusted ARC sealer); the core records
 * local_policy when the verdict is final and the action is below what a
 * plugin's AS_FORCE_LEAST force asked (a Lua rule's set_pre_result, a
 * site force, a settings profile's thresholds), with the module that
 * decided and its message as the comment.  docs/dmarc.md has the table. */
enum as_override_type {
    AS_OVERRIDE_FORWARDED = 0,
    AS_OVERRIDE_SAMPLED_OUT,
    AS_OVERRIDE_TRUSTED_FORWARDER,
    AS_OVERRIDE_MAILING_LIST,
    AS_OVERRIDE_LOCAL_POLICY,
    AS_OVERRIDE_OTHER,
    AS_OVERRIDE_POLICY_TEST_MODE,
    AS_OVERRIDE__COUNT
};

struct as_policy_override {
    const char *policy;           /* whose policy: the plugin name, "dmarc" */
    enum as_override_type type;
    const char *comment;          /* why, e.g. "partner_relay: partner relay"; never NULL */
};

/* "forwarded", "sampled_out", ... as in the aggregate report's XML;
 * "other" for a value out of range. */
AS_API const char *as_override_type_name(enum as_override_type type);
/* Records an override of `policy` (a plugin's name: letters, digits,
 * '-', '_', '.'; its Authentication-Results entries of that method carry
 * it).  comment may be NULL; copied to the task pool, cut to 256 bytes
 * ("..." at the end) since it goes into a header field.  0, or -1 (bad type or policy, or
 * the verdict is already final). */
AS_API int as_task_add_override(struct as_task *t, const char *policy,
                                enum as_override_type type, const char *comment);
/* The overrides recorded so far, in order, in *out (task pool, read-only);
 * returns how many.  Complete from the finish stage on: the core's
 * local_policy ones are recorded when the verdict becomes final. */
AS_API size_t as_task_overrides(const struct as_task *t, const struct as_policy_override **out);

#ifdef __cplusplus
}
#endif
#endif /* AUTHSCAN_PLUGIN_H */
