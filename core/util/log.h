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

void as_log_init(const char *ident, enum as_log_target target, enum as_log_level level);
void as_log_set_level(enum as_log_level level);
enum as_log_level as_log_get_level(void);
/* "master", "worker#2": shown in every line of this process. */
void as_log_set_role(const char *role);
/* Parses "error", "warning", "notice", "info", "debug"; returns 0 or -1. */
int as_log_parse_level(const char *s, enum as_log_level *out);
void as_logv(enum as_log_level level, const char *scan_id, const char *fmt, va_list ap);

#endif
