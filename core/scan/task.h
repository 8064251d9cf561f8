/*
 * task.h - a scan task: one message going through the plugin pipeline.
 *
 * Life of a task:
 *   as_task_new()            pool, id, empty envelope
 *   as_task_envelope_mut()   the protocol layer fills the envelope
 *   as_task_set_message()    header block parsed (limits checked here)
 *   as_task_run()            filters (scan) are scheduled in dependency
 *                            order; each runs when all its dependencies
 *                            have finished; independent plugins overlap
 *                            their async work.  Then the postfilters, the
 *                            same way, and the verdict is recomputed
 *   done(task, arg)          all plugins finished, or the scan deadline hit
 *                            (then outstanding operations are cancelled);
 *                            the verdict is final and can be read
 *   as_task_free()           the protocol is done with the task.  If a
 *                            plugin has a finish hook, the finish stage
 *                            starts from the next loop iteration (after the
 *                            reply is queued) and the task frees itself
 *                            when it ends or its deadline passes; else the
 *                            pool is destroyed now, everything with it
 * as_task_free() may also be called at any time before done (client gone):
 * outstanding operations are cancelled, done is never called and no
 * finish stage runs (there is no verdict to report).
 *
 * Ownership: the task owns its pool; the message buffer passed to
 * as_task_set_message() must outlive the task.
 */
#ifndef AS_TASK_H
#define AS_TASK_H

#include <stddef.h>
#include <stdint.h>
#include "authscan/plugin.h"
#include "mail/message.h"

struct as_engine;
struct as_resolver;
struct as_symbol;
struct as_actions;

/* One symbol in the result. */
struct as_task_symbol {
    const struct as_symbol *sym;   /* name, group, description, configured score */
    double weight;                 /* multiplier given by the plugin */
    double score;                  /* weight * configured score */
    const char **opts;
    size_t nopts;
    unsigned bounded;              /* an option was cut (1) or dropped (2) */
    struct as_symbol_result pub;   /* filled by as_task_symbol_get() */
};

struct as_task_header_op {
    const char *name;
    const char *value;            /* NULL for a removal */
    int order_or_index;
};

struct as_verdict {
    enum as_action action;
    double score;
    double required_score;        /* the reject threshold */
    const char *smtp_message;     /* NULL for no action */
    const char *forced_by;        /* module that forced the action, or NULL */
    int is_skipped;
    int timed_out;                /* the scan deadline cut plugins short */
};

struct as_task *as_task_new(struct as_engine *e);
void as_task_free(struct as_task *t);
struct as_envelope *as_task_envelope_mut(struct as_task *t);
/* Parses "1.2.3.4" / "2001:db8::1" / "::ffff:1.2.3.4" into env (pool copy).
 * Returns 0 or -1 if not an IP address. */
int as_task_set_ip(struct as_task *t, const char *ip);
/* Sets MAIL FROM, mapping "<>" and "" to the null sender and stripping
 * angle brackets. */
void as_task_set_mail_from(struct as_task *t, const char *from);
void as_task_add_rcpt(struct as_task *t, const char *rcpt);

/* Returns AS_MSG_OK or a limit error (err says which). */
enum as_msg_error as_task_set_message(struct as_task *t, const char *data, size_t len,
                                      char *err, size_t errlen);

typedef void (*as_task_done_cb)(struct as_task *t, void *arg);
void as_task_run(struct as_task *t, as_task_done_cb done, void *arg);

/* Before as_task_run: answer without running any plugin (the verdict is
 * what the forces and symbols added by the caller make, is_skipped set). */
void as_task_skip(struct as_task *t);

/* Crash attribution (poison.h): the message's digest, and the mark around
 * every piece of code run for this task from the event loop.  enter
 * returns the previous mark for leave (marks nest). */
void as_task_set_digest(struct as_task *t, uint64_t digest);
uint64_t as_task_enter(const struct as_task *t);
void as_task_leave(uint64_t mark);

/* rspamd's task:set_pre_result() (Lua rules): a force with rspamd's
 * semantics.  Once a task has one, its verdict is chosen the way rspamd
 * chooses it (compute_verdict_rspamd in task.c, docs/lua.md), over every
 * force, the plugins' too.  priority on authscan's scale (AS_PRIO_*),
 * score NAN for none, smtp_message the reply text (NULL: the action's).
 * Logged with module and message.  0, or -1 after the verdict is final. */
int as_task_pre_result(struct as_task *t, enum as_action action, int least, int priority,
                       double score, const char *smtp_message, const char *module);

const struct as_verdict *as_task_verdict(const struct as_task *t);
/* Every policy override of the task (as_task_overrides()) as one line for
 * the log and the reply, "dmarc local_policy: rule: text; ...", or NULL
 * when there is none.  Bytes outside printable ASCII become '?', '"'
 * becomes '\'' (the log line quotes it).  Task pool. */
const char *as_task_override_text(const struct as_task *t);
size_t as_task_symbol_count(const struct as_task *t);
const struct as_task_symbol *as_task_symbol_at(const struct as_task *t, size_t i);
size_t as_task_header_ops(const struct as_task *t, const struct as_task_header_op **ops,
                          int removals);
/* The removals among ops[0..n) of the header name ops[0].name, as
 * positions 1..count among the message's fields of that name: negative
 * indexes made absolute (-1: the last), duplicates and positions before
 * the first field dropped, sorted from the last field to the first,
 * because an MTA renumbers the fields after each removal.  *all is set
 * when an op removes every instance (index 0) or the positions name every
 * field.  Returns how many positions *pos holds (xmalloc'ed, the caller
 * frees it; NULL when none).  Shared by the adapters that tell an MTA. */
size_t as_task_removal_positions(const struct as_task *t, const struct as_task_header_op *ops,
                                 size_t n, int *all, int **pos);
double as_task_elapsed(const struct as_task *t);     /* seconds since as_task_new */
struct as_engine *as_task_engine(const struct as_task *t);
/* The thresholds in force for this task (its settings profile's, or the
 * engine's). */
const struct as_actions *as_task_actions(const struct as_task *t);

/* Ends every task of e still in its finish stage (cancelling what it
 * waits for).  as_engine_free() calls it before unloading the plugins. */
void as_task_free_finishing(struct as_engine *e);
/* For programs that drive the loop themselves (the CLI): runs it until no
 * task of e is in its finish stage. */
void as_task_wait_finishing(struct as_engine *e);

/* ---- for core services that run asynchronous work for plugins ---------- */
/* The per-task service slots are in service.h. */
/* Before running a plugin's completion callback for op: makes the plugin
 * that began op the current one, so operations started from the callback
 * are counted against it.  Follow the callback with as_task_async_end(). */
void as_task_async_enter(struct as_task *t, struct as_async *op);
/* The plugin whose code runs now (its scan() or a completion callback of
 * an operation it began), as an index into the engine's plugins; SIZE_MAX
 * outside any plugin.  The DNS budget is accounted per plugin with it. */
size_t as_task_current_plugin(const struct as_task *t);

#endif
