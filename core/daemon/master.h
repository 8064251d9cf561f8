/*
 * master.h - the authscand master process.
 *
 * The master validates the configuration, opens the listening sockets,
 * forks the workers and then only supervises:
 *   SIGCHLD  a worker of the current generation that dies is restarted:
 *            at once if it died with scans in flight (its messages go
 *            into the poison table, poison.h), else with a growing delay
 *            if workers keep dying right after start;
 *   SIGHUP   reload: the configuration, rules and plugins are read and
 *            checked again; if they are valid a new generation of workers
 *            is started from them, and once every new worker has reported
 *            ready the old generation is told to drain.  The listening
 *            sockets stay open throughout, so no connection is refused;
 *            an invalid configuration is logged and the old workers keep
 *            serving;
 *   SIGTERM, SIGINT  every worker drains; the master exits when all have
 *            exited (or after shutdown_timeout plus a grace period).
 */
#ifndef AS_MASTER_H
#define AS_MASTER_H

struct as_config;

struct as_master_options {
    const char *config_path;           /* NULL: default path if present */
    const char *const *overrides;      /* "key=value" from the command line */
    int noverrides;
    int foreground;
};

/* Runs the daemon; returns the process exit status. */
int as_master_run(struct as_config *cfg, const struct as_master_options *opts);

/* Loads and validates the configuration as the master does (used for
 * startup, reload and --check-config).  NULL with err on failure. */
struct as_config *as_master_load(const struct as_master_options *opts, char *err,
                                 size_t errlen);

#endif
