/*
 * log.h - logging to stderr or syslog (the calls plugins use are
 * as_log()/as_task_log() in authscan/plugin.h).
 *
 * Lines look like
 *   2026-11-22T19:31:02.123Z authscand[1234] worker#0 info: <3fa2c1b0d9e1> spf: pass
 * On syslog the timestamp and pid are left to syslog.
 */
#ifndef AS_LOG_H
#define AS_LOG_H

#include <stdarg.h>
#include "authscan/plugin.h"

enum as_log_target { AS_LOG_STDERR, AS_LOG_SYSLOG };

struct as_config;

/* ident is the program's name: the default of log.ident. */
void as_log_init(const char *ident, enum as_log_target target, enum as_log_level level);
/* Applies log.level, log.target, log.ident and log.facility of a checked
 * configuration (the daemon at start and at every reload: a reload that
 * changes them takes effect like any other key).  On syslog, the
 * connection is opened at once, so processes forked later share it. */
void as_log_configure(const struct as_config *cfg);
/* Parses a syslog facility name: "mail", "daemon", "user", "local0" to
 * "local7"; returns 0 or -1. */
int as_log_parse_facility(const char *s, int *out);
void as_log_set_level(enum as_log_level level);
enum as_log_level as_log_get_level(void);
/* "master", "worker#2": shown in every line of this process. */
void as_log_set_role(const char *role);
/* Parses "error", "warning", "notice", "info", "debug"; returns 0 or -1. */
int as_log_parse_level(const char *s, enum as_log_level *out);
void as_logv(enum as_log_level level, const char *scan_id, const char *fmt, va_list ap);

#endif
