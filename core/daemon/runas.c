/*
 * runas.c - see runas.h.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "util/config.h"
#include "util/util.h"
#include "daemon/runas.h"

/* getpwnam/getgrnam set errno only on a real failure (0 or ENOENT and
 * friends mean "no such name"): both are errors here, worded apart. */
static const char *lookup_failure(int e)
{
    return e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM ? "no such "
                                                                            : "cannot look up ";
}

int as_runas_resolve(const struct as_config *cfg, int starting, struct as_runas *r,
                     char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    const struct as_config_entry *ue = as_config_find(cfg, "user");
    const struct as_config_entry *ge = as_config_find(cfg, "group");
    uid_t euid = geteuid();
    if (!ue) {
        if (ge)
            return as_config_error(err, errlen, ge, "'group' without 'user': set the account "
                                   "too (the group alone is never switched to)");
        if (starting && euid == 0)
            return as_config_error(err, errlen, NULL, "started as root without 'user': set "
                                   "user = _authscan (the account the daemon runs as), or "
                                   "start it as that account; user = root keeps root on "
                                   "purpose");
        return 0;
    }
    errno = 0;
    struct passwd *pw = getpwnam(ue->value);
    if (!pw)
        return as_config_error(err, errlen, ue, "'user': %suser '%s'%s%s",
                               lookup_failure(errno), ue->value, errno ? ": " : "",
                               errno ? strerror(errno) : "");
    as_strlcpy(r->user, pw->pw_name, sizeof r->user);
    r->uid = pw->pw_uid;
    r->gid = pw->pw_gid;
    if (ge) {
        errno = 0;
        struct group *gr = getgrnam(ge->value);
        if (!gr)
            return as_config_error(err, errlen, ge, "'group': %sgroup '%s'%s%s",
                                   lookup_failure(errno), ge->value, errno ? ": " : "",
                                   errno ? strerror(errno) : "");
        r->gid = gr->gr_gid;
        as_strlcpy(r->group, gr->gr_name, sizeof r->group);
    } else {
        struct group *gr = getgrgid(r->gid);
        if (gr) as_strlcpy(r->group, gr->gr_name, sizeof r->group);
        else snprintf(r->group, sizeof r->group, "%u", (unsigned)r->gid);
    }
    if (euid == 0) {
        r->stay_root = r->uid == 0;
        r->do_switch = !r->stay_root;
        /* root keeps every group it has: a group would be ignored */
        if (r->stay_root && ge && r->gid != 0)
            return as_config_error(err, errlen, ge, "'group' with user = root: root keeps its "
                                   "groups, so '%s' would be ignored; remove one of them",
                                   r->group);
        return 0;
    }
    /* Not root: nothing can be switched, so the key must describe us. */
    if (r->uid != euid) {
        char at[512];
        return as_config_error(err, errlen, ue, "cannot run as user '%s' (%s): the daemon runs "
                               "as uid %u and only root can switch accounts; start it as "
                               "root or as '%s'", r->user, as_config_where(ue, at, sizeof at),
                               (unsigned)euid, r->user);
    }
    if (ge && r->gid != getegid())
        return as_config_error(err, errlen, ge, "cannot run as group '%s': the daemon runs as "
                               "gid %u and only root can switch groups", r->group,
                               (unsigned)getegid());
    return 0;
}

int as_runas_apply(const struct as_runas *r, char *err, size_t errlen)
{
    if (!r->do_switch) return 0;
    /* Supplementary groups first, while we may still set them: a group
     * of root's kept after the switch would be a way back to its files. */
    if (initgroups(r->user, r->gid) < 0) {
        snprintf(err, errlen, "cannot set the groups of user '%s': %s", r->user,
                 strerror(errno));
        return -1;
    }
    if (setgid(r->gid) < 0) {
        snprintf(err, errlen, "cannot switch to group '%s' (gid %u): %s", r->group,
                 (unsigned)r->gid, strerror(errno));
        return -1;
    }
    if (setuid(r->uid) < 0) {
        snprintf(err, errlen, "cannot switch to user '%s' (uid %u): %s", r->user,
                 (unsigned)r->uid, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        snprintf(err, errlen, "switched to user '%s' but root can still be regained", r->user);
        return -1;
    }
    /* A uid change clears the dumpable flag: no core files, and /proc of
     * our own processes owned by root.  The account owns everything in
     * these processes anyway. */
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0) {
        snprintf(err, errlen, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
        return -1;
    }
    return 0;
}
