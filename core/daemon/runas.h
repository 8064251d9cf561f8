/*
 * runas.h - the account authscand runs as (config keys `user`, `group`).
 *
 * Workers never run as root by accident.  Started as root, the master
 * opens its sockets and pid file, hands its unix sockets to the account
 * and then switches the whole process to it (uid, gid, supplementary
 * groups), before the first worker is forked: every process after that
 * point is unprivileged.  Started as root without `user`, the daemon
 * refuses to start (Postfix's rule for mail_owner; rspamd refuses too): a
 * forgotten key must not mean root.  `user = root` is the explicit,
 * logged way to keep root (containers, tests).  Started as an ordinary
 * account, `user` may only name that same account: it cannot be switched
 * to another, and saying so beats running as the wrong one.
 */
#ifndef AS_RUNAS_H
#define AS_RUNAS_H

#include <stddef.h>
#include <sys/types.h>

struct as_config;

struct as_runas {
    char user[64];      /* "" when `user` is unset */
    char group[64];     /* the group's name, "" when `user` is unset */
    uid_t uid;
    gid_t gid;
    int do_switch;      /* root now, and the account is not root: switch */
    int stay_root;      /* root now and `user = root` */
};

/* Resolves `user` and `group` (group defaults to the user's primary
 * group) against the account database and decides what the process,
 * with its current effective uid, must do.  Errors name the file and
 * line of the key: an unknown user or group, a switch that an
 * unprivileged process cannot make, and root without `user` when
 * `starting` (--check-config leaves that rule to the start: it checks
 * files that a service manager may start as another account).  Returns
 * 0 or -1 with err. */
int as_runas_resolve(const struct as_config *cfg, int starting, struct as_runas *r,
                     char *err, size_t errlen);

/* Switches the process to r's account when r->do_switch (groups, then
 * gid, then uid; checks that root cannot be regained) and keeps it
 * dumpable, so that a crashing worker still leaves a core.  Returns 0 or
 * -1 with err: a switch that fails half-way must stop the start. */
int as_runas_apply(const struct as_runas *r, char *err, size_t errlen);

#endif
