/*
 * notify.h - telling a service manager (systemd) what the daemon is doing.
 *
 * The sd_notify(3) protocol, spoken directly: one datagram of
 * "KEY=VALUE\n" lines to the unix socket named by $NOTIFY_SOCKET (a path,
 * or an abstract name written "@name").  Without the variable every call
 * does nothing, so the daemon runs the same under any supervisor.  The
 * protocol is a stable, documented interface of a few lines; speaking it
 * here keeps libsystemd out of a process that parses hostile mail.
 *
 * The master sends READY=1 once every worker of the first generation has
 * reported ready, RELOADING=1 at SIGHUP and READY=1 again when the reload
 * has ended either way, STOPPING=1 at SIGTERM, MAINPID= after it
 * daemonized, and STATUS= lines for `systemctl status`.
 */
#ifndef AS_NOTIFY_H
#define AS_NOTIFY_H

#include <stddef.h>

/* Sends one state message ("READY=1\nSTATUS=..."), never blocking (the
 * socket is non-blocking: a manager that does not read loses the message,
 * not the daemon's loop).  Returns 0, also when there is no manager, or
 * -1 with err. */
int as_notify(const char *state, char *err, size_t errlen);

#endif
