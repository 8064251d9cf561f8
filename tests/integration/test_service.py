#!/usr/bin/env python3
"""test_service.py - authscand under a service manager.

sd_notify: the test plays systemd's part, a datagram socket named by
NOTIFY_SOCKET (a path, and an abstract @name), and checks what the master
says and when: READY=1 once every worker is ready, RELOADING=1 at SIGHUP
and READY=1 again when the reload ended (both when it went through and
when it was aborted), STOPPING=1 at SIGTERM.  Logging: log.ident names
every line and a reload changes it, log.facility and log.ident are
checked with file:line, and log.target = syslog sends the lines to
/dev/log with the ident and facility (in a private mount namespace where
the test owns /dev/log; "skip" where it cannot make one).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("service")


class Manager:
    """The service manager's end of NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        if not path.startswith("@"):
            os.chmod(path, 0o666)      # the daemon may have switched accounts

    def next(self, timeout=30.0):
        """The next message as a dict, or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        return dict(line.split("=", 1) for line in data.split("\n") if "=" in line)

    def close(self):
        self.sock.close()


def ready_lines(d):
    return len(re.findall(r"worker#\d+ info: ready", d.log()))


def test_notify(tmp):
    mgr = Manager(os.path.join(tmp, "notify.sock"))
    d = harness.Daemon(workers=2, config="workers = 2\n", env={"NOTIFY_SOCKET": mgr.path},
                       wait_workers=False)
    try:
        d.start()
        msg = mgr.next()
        T.check("start: READY=1", msg and msg.get("READY") == "1", msg)
        T.eq("start: READY=1 after both workers were ready", ready_lines(d), 2)
        T.check("start: STATUS names the workers",
                msg and msg.get("STATUS") == "serving with 2 worker(s), generation 1", msg)

        # a reload that goes through: RELOADING=1, then READY=1 once the
        # new generation is up
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        msg = mgr.next()
        T.check("reload: RELOADING=1 first", msg and msg.get("RELOADING") == "1"
                and "MONOTONIC_USEC" in msg, msg)
        msg = mgr.next()
        T.check("reload: then READY=1", msg and msg.get("READY") == "1", msg)
        T.check("reload: READY=1 after the new generation was ready",
                "generation 2 ready" in d.log()[mark:], d.log()[mark:])
        T.check("reload: STATUS says generation 2",
                msg and msg.get("STATUS", "").endswith("generation 2"), msg)

        # an aborted reload still ends with READY=1 (systemd waits for it)
        d.write_config("workers = 2\nbogus_key = 1\n")
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        msg = mgr.next()
        T.check("bad reload: RELOADING=1", msg and msg.get("RELOADING") == "1", msg)
        msg = mgr.next()
        T.check("bad reload: READY=1 again", msg and msg.get("READY") == "1", msg)
        T.check("bad reload: it was aborted", "reload aborted" in d.log()[mark:],
                d.log()[mark:])

        d.signal(signal.SIGTERM)
        msg = mgr.next()
        T.check("stop: STOPPING=1", msg and msg.get("STOPPING") == "1", msg)
        T.eq("stop: exit 0", d.wait_exit(), 0)
        T.eq("nothing more after STOPPING=1", mgr.next(timeout=0.5), None)
    finally:
        d.cleanup()
        mgr.close()

    # abstract socket names ("@name"), as systemd uses in containers
    mgr = Manager("@authscan-test-%d-%d" % (os.getpid(), time.monotonic_ns()))
    try:
        with harness.Daemon(workers=1, env={"NOTIFY_SOCKET": mgr.path}) as d:
            msg = mgr.next()
            T.check("abstract NOTIFY_SOCKET: READY=1", msg and msg.get("READY") == "1", msg)
    finally:
        mgr.close()

    # no manager listening: a warning, and the daemon runs
    with harness.Daemon(workers=1, env={"NOTIFY_SOCKET": os.path.join(tmp, "nobody-here")}) as d:
        T.eq("unreachable NOTIFY_SOCKET: still serves", d.ping(), True)
        T.check("unreachable NOTIFY_SOCKET: warned", "cannot notify" in d.log(), d.log()[-2000:])


def test_log_keys(tmp):
    for name, text, want in [
            ("facility", "log.facility = kern\n",
             "c.conf:1: bad value 'kern' for 'log.facility': expected mail, daemon, user or "
             "local0 to local7"),
            ("ident with a space", "log.ident = \"a b\"\n",
             "c.conf:1: bad value 'a b' for 'log.ident'"),
            ("ident too long", "log.ident = %s\n" % ("x" * 32),
             "c.conf:1: bad value '%s' for 'log.ident'" % ("x" * 32))]:
        path = os.path.join(tmp, "c.conf")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([harness.AUTHSCAND, "--check-config", "-c", path, "--plugins-dir",
                            harness.PLUGINS], capture_output=True, timeout=60)
        err = p.stderr.decode()
        T.check("log.%s refused with file:line" % name, p.returncode == 1 and want in err,
                "got rc=%d %r, want %r" % (p.returncode, err, want))

    conf = "workers = 1\nlog.ident = mta-auth\n"
    # wait_workers looks for "authscand[pid] worker#N info: ready"
    with harness.Daemon(workers=None, expect_workers=1, config=conf, wait_workers=False) as d:
        d.wait_log(r"mta-auth\[\d+\] worker#0 info: ready")
        pid = d.master_pid
        T.check("log.ident names the lines", re.search(r"mta-auth\[%d\] master" % pid, d.log()),
                d.log()[-1000:])
        d.write_config("workers = 1\nlog.ident = scanner\n")
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        d.wait_log(r"generation 2 ready", since=mark)
        T.check("a reload changes log.ident",
                re.search(r"scanner\[%d\] master notice: generation 2 ready" % pid,
                          d.log()[mark:]), d.log()[mark:])


SYSLOG_RUNNER = r"""
set -e
mount -t tmpfs -o mode=0755 none /dev
touch /dev/null /dev/log
mount --bind "$HOSTNULL" /dev/null
mount --bind "$SOCK" /dev/log
exec "$@"
"""


def test_syslog(tmp):
    """log.target = syslog: glibc's syslog(3) writes to /dev/log, which
    the test replaces in a private mount namespace with its own socket."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return harness.log("skip: syslog (needs root and unshare for a private /dev/log)")
    sock_path = os.path.join(tmp, "log.sock")
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(sock_path)
    os.chmod(sock_path, 0o666)
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        log.close()
        return harness.log("skip: syslog (cannot make a mount namespace: %s)"
                           % probe.stderr.decode().strip())
    port = harness.free_port()
    env = dict(os.environ, SOCK=sock_path, HOSTNULL="/dev/null")
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", SYSLOG_RUNNER, "sh",
           harness.AUTHSCAND, "--foreground", "--workers", "1", "--listen", "127.0.0.1:%d" % port,
           "--plugins-dir", harness.PLUGINS, "--set", "log.target=syslog", "--log-level", "info",
           "--set", "log.ident=authscan-x", "--set", "log.facility=local3"] + harness.user_args()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    lines = []
    try:
        log.settimeout(1.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("ready" in l for l in lines):
            try:
                lines.append(log.recv(4096).decode("utf-8", "replace"))
            except socket.timeout:
                if proc.poll() is not None:
                    break
        joined = "\n".join(lines)
        T.check("syslog: a worker's ready line arrived as local3.info (<158>)",
                re.search(r"^<158>.*authscan-x\[\d+\]: worker#0 ready:", joined, re.M), joined)
        # <PRI> = facility * 8 + severity: local3 (19) and notice (5) = 157
        T.check("syslog: master notice as local3.notice, tagged authscan-x[pid]",
                re.search(r"^<157>.*authscan-x\[\d+\]: master authscand .* starting", joined,
                          re.M), joined)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        log.close()
    T.eq("syslog: nothing on stderr", err.decode("utf-8", "replace"), "")


def main():
    tmp = tempfile.mkdtemp(prefix="authscan-service-")
    os.chmod(tmp, 0o755)
    try:
        for fn in (test_notify, test_log_keys, test_syslog):
            T.run(fn, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
