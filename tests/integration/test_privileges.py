#!/usr/bin/env python3
"""test_privileges.py - the account authscand runs as (`user`, `group`).

Started as root with `user`, the master binds, hands its unix sockets to
the account and switches every process to it before the first worker;
root without `user` is refused; `user = root` keeps root, with a warning;
an unprivileged daemon cannot switch to another account, at start or at a
reload.  CI runs as root, so the switch itself is exercised there (the
uids are read from /proc); as another user those cases say "skip".
"""
import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("privileges")
ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


def ids(pid):
    """(uids, gids, groups) of a process, from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = tuple(int(x) for x in v.split())
    return out["Uid"], out["Gid"], out["Groups"]


def run(args, timeout=60, **kw):
    p = subprocess.run([harness.AUTHSCAND] + args, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def write(dirpath, name, text):
    path = os.path.join(dirpath, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_config(tmp):
    """Names are resolved by --check-config, errors name file:line."""
    for name, text, want in [
            ("unknown user", "workers = 1\nuser = no-such-user-x\n",
             "u.conf:2: 'user': no such user 'no-such-user-x'"),
            ("unknown group", "user = nobody\ngroup = no-such-group-x\n",
             "u.conf:2: 'group': no such group 'no-such-group-x'"),
            ("group without user", "group = %s\n" % NOGROUP.gr_name,
             "u.conf:1: 'group' without 'user'")]:
        path = write(tmp, "u.conf", text)
        rc, out, err = run(["--check-config", "-c", path, "--plugins-dir", harness.PLUGINS])
        T.check("%s: refused with file:line" % name, rc == 1 and want in err,
                "got rc=%d %r, want rc=1 and %r" % (rc, err, want))
    if ROOT:
        path = write(tmp, "u.conf", "user = root\ngroup = %s\n" % NOGROUP.gr_name)
        rc, out, err = run(["--check-config", "-c", path, "--plugins-dir", harness.PLUGINS])
        want = "u.conf:2: 'group' with user = root"
        T.check("user = root with a group: refused", rc == 1 and want in err,
                "got rc=%d %r, want %r" % (rc, err, want))
    path = write(tmp, "u.conf", "user = nobody\ngroup = %s\n" % NOGROUP.gr_name)
    rc, out, err = run(["--check-config", "-c", path, "--plugins-dir", harness.PLUGINS])
    if ROOT:
        T.check("existing user and group: OK", rc == 0, "got rc=%d %r" % (rc, err))
    else:
        T.check("unprivileged, user = nobody: cannot switch, says so",
                rc == 1 and "cannot run as user 'nobody'" in err, "got rc=%d %r" % (rc, err))


def test_root_without_user(tmp):
    if not ROOT:
        return harness.log("skip: root without user (not root)")
    rc, out, err = run(["--foreground", "--workers", "1", "--listen",
                        "127.0.0.1:%d" % harness.free_port(), "--plugins-dir", harness.PLUGINS])
    T.check("root without user: exits 1 naming the key",
            rc == 1 and "started as root without 'user'" in err, "got rc=%d %r" % (rc, err))
    T.check("root without user: no worker started", "started worker" not in err, err)
    # with the log on syslog (the packaged config), still said on stderr
    rc, out, err = run(["--foreground", "--workers", "1", "--listen",
                        "127.0.0.1:%d" % harness.free_port(), "--plugins-dir", harness.PLUGINS,
                        "--set", "log.target=syslog"])
    T.check("root without user, log.target = syslog: the reason on stderr",
            rc == 1 and "authscand: configuration: started as root without 'user'" in err,
            "got rc=%d %r" % (rc, err))
    # --check-config judges the files, not who runs it (systemd starts the
    # shipped config as _authscan): OK as root
    rc, out, err = run(["--check-config", "--plugins-dir", harness.PLUGINS, "-c", "/dev/null"])
    T.check("--check-config as root without user: OK", rc == 0, "got rc=%d %r" % (rc, err))


def test_switch(tmp):
    """Root with user = nobody: every process runs as nobody, the unix
    socket is nobody's, files in a directory of nobody's go away at stop,
    a reload that names another account is refused."""
    if not ROOT:
        return harness.log("skip: switching accounts (not root)")
    run_dir = os.path.join(tmp, "run")
    os.mkdir(run_dir)
    os.chown(run_dir, NOBODY.pw_uid, NOBODY.pw_gid)   # as RuntimeDirectory= does
    sock = os.path.join(run_dir, "scan.sock")
    pidf = os.path.join(run_dir, "authscand.pid")
    conf = "workers = 2\nuser = nobody\npid_file = %s\n" % pidf
    d = harness.Daemon(workers=None, expect_workers=2, config=conf, user=None,
                       listen=["127.0.0.1:%d" % harness.free_port(), "unix:%s:0660" % sock])
    # the master reads its config again at a reload, as nobody
    os.chmod(d.tmp, 0o755)
    with d:
        want = (NOBODY.pw_uid,) * 4
        for pid in [d.master_pid] + d.worker_pids():
            uids, gids, groups = ids(pid)
            T.eq("pid %d: uids" % pid, uids, want)
            T.eq("pid %d: gids" % pid, gids, (NOBODY.pw_gid,) * 4)
            T.check("pid %d: no root group left (groups %r)" % (pid, groups), 0 not in groups,
                    groups)
            # dumpable again after the switch: /proc/PID is nobody's, a
            # crash leaves a core
            T.eq("pid %d: /proc entry owner" % pid, os.stat("/proc/%d" % pid).st_uid,
                 NOBODY.pw_uid)
        st = os.stat(sock)
        T.eq("unix socket owner", (st.st_uid, st.st_gid), (NOBODY.pw_uid, NOBODY.pw_gid))
        T.eq("unix socket mode", oct(st.st_mode & 0o777), oct(0o660))
        T.check("log says which account", "running as user nobody, group %s" % NOGROUP.gr_name
                in d.log(), d.log()[-2000:])
        s, _, body = harness.unix_request(sock, "GET", "/ping")
        T.eq("served over the unix socket", (s, body.strip()), (200, b"pong"))
        status, reply = d.checkv2(harness.SIMPLE_MSG, headers={"IP": "192.0.2.1"})
        T.eq("a scan as nobody", status, 200)

        # a reload cannot switch accounts: refused, old workers keep serving
        before = d.worker_pids()
        d.write_config(conf.replace("user = nobody", "user = root"))
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        m = d.wait_log(r"reload aborted[^\n]*", since=mark)
        T.check("reload to user = root: aborted naming the line",
                "authscand.conf:2: cannot run as user 'root'" in m.group(0), m.group(0))
        T.eq("reload to user = root: same workers", d.worker_pids(), before)
        # the same account again: the reload goes through
        d.write_config(conf)
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        d.wait_log(r"generation 2 ready", since=mark)
        for pid in d.worker_pids():
            T.eq("reloaded worker %d: uids" % pid, ids(pid)[0], want)
        T.eq("stop: exit 0", d.stop(), 0)
        T.check("stop: unix socket removed", not os.path.exists(sock), os.listdir(run_dir))
        T.check("stop: pid file removed", not os.path.exists(pidf), os.listdir(run_dir))
        T.check("stop: nothing it could not remove", "cannot remove" not in d.log(),
                d.log()[-2000:])


def test_stay_root(tmp):
    if not ROOT:
        return harness.log("skip: user = root (not root)")
    with harness.Daemon(workers=1, user="root") as d:
        for pid in [d.master_pid] + d.worker_pids():
            T.eq("user = root: pid %d runs as root" % pid, ids(pid)[0], (0, 0, 0, 0))
        T.check("user = root: warned", "warning: running as root (user = root)" in d.log(),
                d.log()[-2000:])


def test_unprivileged(tmp):
    """Started as nobody: user = nobody runs, another account is refused."""
    if ROOT:
        # become nobody the way a service manager's User= does
        pre = ["setpriv", "--reuid=%d" % NOBODY.pw_uid, "--regid=%d" % NOBODY.pw_gid,
               "--clear-groups", "--"]
        if not shutil.which("setpriv"):
            return harness.log("skip: setpriv missing")
    else:
        pre = []
    os.chmod(tmp, 0o755)
    for name, user, want_rc, want in [
            ("another account", "daemon", 1, "cannot run as user 'daemon'"),
            ("its own account", "nobody", 0, "configuration OK")]:
        path = write(tmp, "own.conf", "workers = 1\nuser = %s\n" % user)
        os.chmod(path, 0o644)
        p = subprocess.run(pre + [harness.AUTHSCAND, "--check-config", "-c", path,
                                  "--plugins-dir", harness.PLUGINS],
                           capture_output=True, timeout=60)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        if not ROOT and user == "nobody":
            continue      # we are not nobody
        T.check("unprivileged, %s: rc %d, %r" % (name, want_rc, want),
                p.returncode == want_rc and want in out, "got rc=%d %r" % (p.returncode, out))


def main():
    tmp = tempfile.mkdtemp(prefix="authscan-privs-")
    os.chmod(tmp, 0o755)      # nobody reaches its run directory below
    try:
        for fn in (test_check_config, test_root_without_user, test_switch, test_stay_root,
                   test_unprivileged):
            T.run(fn, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
