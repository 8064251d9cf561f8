/*
 * session.h - one scan, independent of the protocol that asked for it.
 *
 * A protocol adapter (protocol.h) turns a request into a session:
 *
 *   ss = as_session_new(sc, peer, msg, len);       the task exists
 *   rc = as_session_start(ss, fill, arg, done, darg, err, errlen);
 *        fill(task, arg) sets the envelope from the request (with
 *        as_session_envelope_set); then the message is checked against
 *        the limits and parsed, and the scan starts.  On an error the
 *        session is already over (logged, counted in the stats, freed):
 *        answer the client with err in the protocol's own way.
 *   done(ss, darg)  the verdict is final: write the reply from
 *        as_session_task(ss); when done() returns the session logs the
 *        verdict and ends (the task goes on to its finish stage).
 *   as_session_cancel(ss)  the client went away before done(): the scan
 *        is cancelled and nothing is written.
 *
 * What the session does for every protocol: the poison checks (poison.h:
 * the message is listed as in flight in this worker's slot from
 * as_session_new() until the session ends, marked while its code runs,
 * and answered poison.action unscanned if it killed a worker before), the
 * message size limit, the statistics (stats.h) and the log lines.
 *
 * Errors are neutral codes; each adapter maps them to its protocol (the
 * http adapter: 400, 413, 415, 404, 405).
 */
#ifndef AS_SESSION_H
#define AS_SESSION_H

#include <stddef.h>
#include "scan/symbols.h"

struct as_engine;
struct as_task;
struct as_session;

enum as_session_error {
    AS_SESSION_OK = 0,
    AS_SESSION_BAD_REQUEST,    /* malformed envelope or request */
    AS_SESSION_TOO_LARGE,      /* over a message limit (limits.*) */
    AS_SESSION_UNSUPPORTED,    /* e.g. a compressed message */
    AS_SESSION_UNKNOWN_COMMAND,
    AS_SESSION_BAD_METHOD,     /* a known command used the wrong way */
};

/* What the sessions of one worker share; filled once per worker. */
struct as_session_ctx {
    struct as_engine *engine;
    int poison_enable;
    enum as_action poison_action;
};

void as_session_ctx_init(struct as_session_ctx *sc, struct as_engine *e);

/* A session for the message msg[0..len) from peer (for log lines;
 * copied).  msg must stay valid until done() returns.  It is copied when
 * any plugin has a finish hook, since the task reads the message until it
 * is destroyed, which is after the reply then (the finish stage, task.h). */
struct as_session *as_session_new(struct as_session_ctx *sc, const char *peer, const char *msg,
                                  size_t len);
/* The same for a message the adapter built in malloc'd memory (msg may
 * be NULL when len is 0): the session takes msg and frees it when the
 * task is destroyed, so nothing is copied and the adapter forgets the
 * buffer at once (milter and spamd, where a copy was a memcpy and a pool
 * block per message). */
struct as_session *as_session_new_owned(struct as_session_ctx *sc, const char *peer, char *msg,
                                        size_t len);
typedef enum as_session_error (*as_session_fill_fn)(struct as_task *t, void *arg, char *err,
                                                    size_t errlen);
typedef void (*as_session_done_fn)(struct as_session *ss, void *arg);
/* See the top.  Returns AS_SESSION_OK (done() will run, or the adapter
 * calls as_session_cancel()), or an error with a message in err (the
 * session is gone). */
enum as_session_error as_session_start(struct as_session *ss, as_session_fill_fn fill,
                                       void *fill_arg, as_session_done_fn done, void *done_arg,
                                       char *err, size_t errlen);
void as_session_cancel(struct as_session *ss);
const struct as_task *as_session_task(const struct as_session *ss);
/* Memory that lives as long as the session (the task's pool). */
void *as_session_alloc(struct as_session *ss, size_t size);

/* Sets one envelope field by its rspamd name (IP, Helo, Hostname, From,
 * Rcpt (repeated), Queue-Id, User, Settings-ID, MTA-Name; any case);
 * other names are ignored.  Shared by the adapters and the CLI. */
enum as_session_error as_session_envelope_set(struct as_task *t, const char *name,
                                              const char *value, char *err, size_t errlen);

/* A request an adapter refused without a session (unknown command ...):
 * counted with the other errors. */
void as_session_count_error(struct as_session_ctx *sc);

#endif
