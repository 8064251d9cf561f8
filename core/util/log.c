/*
 * log.c - see log.h.
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "util/config.h"
#include "util/log.h"
#include "util/util.h"

static struct {
    char ident[32];
    char prog[32];       /* as_log_init's ident, the default of log.ident */
    char role[32];
    enum as_log_target target;
    enum as_log_level level;
    int facility;
} L = { "authscan", "authscan", "", AS_LOG_STDERR, AS_LOG_NOTICE, LOG_MAIL };

static const char *level_names[] = { "error", "warning", "notice", "info", "debug" };

void as_log_init(const char *ident, enum as_log_target target, enum as_log_level level)
{
    as_strlcpy(L.ident, ident, sizeof L.ident);
    as_strlcpy(L.prog, ident, sizeof L.prog);
    L.target = target;
    L.level = level;
    if (target == AS_LOG_SYSLOG) openlog(L.ident, LOG_PID | LOG_NDELAY, L.facility);
}

int as_log_parse_facility(const char *s, int *out)
{
    static const struct { const char *name; int fac; } map[] = {
        {"mail", LOG_MAIL}, {"daemon", LOG_DAEMON}, {"user", LOG_USER},
        {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
        {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
        {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(map); i++)
        if (as_strcaseeq(s, map[i].name)) {
            *out = map[i].fac;
            return 0;
        }
    return -1;
}

void as_log_configure(const struct as_config *cfg)
{
    enum as_log_level lv = AS_LOG_NOTICE;
    int facility = LOG_MAIL;
    /* the values were checked with the configuration: a failed parse
     * leaves the default only for a value that was never set */
    as_log_parse_level(as_config_str(cfg, "log.level", "notice"), &lv);
    as_log_parse_facility(as_config_str(cfg, "log.facility", "mail"), &facility);
    const char *target = as_config_str(cfg, "log.target", "stderr");
    if (L.target == AS_LOG_SYSLOG) closelog();   /* openlog keeps our ident buffer */
    as_strlcpy(L.ident, as_config_str(cfg, "log.ident", L.prog), sizeof L.ident);
    L.level = lv;
    L.facility = facility;
    L.target = strcmp(target, "syslog") == 0 ? AS_LOG_SYSLOG : AS_LOG_STDERR;
    if (L.target == AS_LOG_SYSLOG) openlog(L.ident, LOG_PID | LOG_NDELAY, L.facility);
}

void as_log_set_level(enum as_log_level level) { L.level = level; }
enum as_log_level as_log_get_level(void) { return L.level; }
void as_log_set_role(const char *role) { as_strlcpy(L.role, role, sizeof L.role); }

int as_log_parse_level(const char *s, enum as_log_level *out)
{
    static const struct { const char *name; enum as_log_level lv; } map[] = {
        {"error", AS_LOG_ERR}, {"err", AS_LOG_ERR}, {"warning", AS_LOG_WARN},
        {"warn", AS_LOG_WARN}, {"notice", AS_LOG_NOTICE}, {"info", AS_LOG_INFO},
        {"debug", AS_LOG_DEBUG},
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(map); i++)
        if (as_strcaseeq(s, map[i].name)) {
            *out = map[i].lv;
            return 0;
        }
    return -1;
}

void as_logv(enum as_log_level level, const char *scan_id, const char *fmt, va_list ap)
{
    if (level > L.level) return;
    char msg[2048];
    int off = 0;
    if (scan_id) off = snprintf(msg, sizeof msg, "<%s> ", scan_id);
    if (off < 0) off = 0;
    vsnprintf(msg + off, sizeof msg - (size_t)off, fmt, ap);
    /* one line per message: a multi-line library error must not forge lines */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';

    if (L.target == AS_LOG_SYSLOG) {
        static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };
        syslog(prio[level], "%s%s%s", L.role, L.role[0] ? " " : "", msg);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03dZ %s[%d]%s%s %s: %s\n", ts, (int)(tv.tv_usec / 1000), L.ident,
            (int)getpid(), L.role[0] ? " " : "", L.role, level_names[level], msg);
}

void as_log(enum as_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    as_logv(level, NULL, fmt, ap);
    va_end(ap);
}
