#!/usr/bin/env python3
"""test_package.py - the Debian package, built and used as an operator would.

Builds the binary packages from a copy of the source tree with
`dpkg-buildpackage -b -us -uc`, runs lintian (no errors), unpacks
authscan_*.deb into a temporary root with `dpkg -x`, checks the layout
(programs, versioned plugin directory, conffile, units, man pages, the
-dev headers and pkg-config file), runs the unpacked authscand with
--check-config on the shipped configuration and then as a daemon (as
root: switched to nobody), and verifies the systemd units with
`systemd-analyze verify` and `systemd-analyze security` against the
unpacked root.  CI runs as root without systemd running, so the unit
itself is never started.

ctest label "package" (slow: a whole build); scripts/test runs it once.
"""
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

T = harness.Tests("package")
SRC = harness.SRC


def sh(cmd, timeout=900, **kw):
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def copy_source(dst):
    """The files of the checkout (tracked and untracked, not ignored): a
    build directory inside the tree must not end up in the package."""
    rc, out, _ = sh(["git", "-C", SRC, "ls-files", "-co", "--exclude-standard", "-z"])
    if rc == 0:
        names = [n for n in out.split("\0") if n and not n.startswith("build")]
    else:
        names = []
        for d, dirs, files in os.walk(SRC):
            rel = os.path.relpath(d, SRC)
            dirs[:] = [x for x in dirs if not (rel == "." and (x.startswith("build") or x == ".git"))]
            names += [os.path.normpath(os.path.join(rel, f)) for f in files]
    for n in names:
        s = os.path.join(SRC, n)
        if not os.path.isfile(s):
            continue          # deleted in the work tree
        os.makedirs(os.path.dirname(os.path.join(dst, n)), exist_ok=True)
        shutil.copy2(s, os.path.join(dst, n))


def build(work):
    src = os.path.join(work, "authscan")
    copy_source(src)
    env = dict(os.environ, DEB_BUILD_OPTIONS="parallel=2")
    t0 = time.monotonic()
    rc, out, err = sh(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, env=env, timeout=1200)
    harness.log("dpkg-buildpackage: %.0fs" % (time.monotonic() - t0))
    T.check("dpkg-buildpackage -b -us -uc: exit 0", rc == 0, (out + err)[-4000:])
    debs = sorted(glob.glob(os.path.join(work, "*.deb")))
    harness.log("built: %s" % " ".join(os.path.basename(d) for d in debs))
    return debs


def test_lintian(work):
    changes = glob.glob(os.path.join(work, "*.changes"))
    T.eq("one .changes file", len(changes), 1)
    if not changes:
        return
    rc, out, err = sh(["lintian", "--fail-on", "error", changes[0]], timeout=600)
    tags = [l for l in out.splitlines() if re.match(r"^[EWIPX]: ", l)]
    for l in tags:
        harness.log("lintian: " + l)
    errors = [l for l in tags if l.startswith("E: ")]
    T.check("lintian: no errors (got %d)" % len(errors), rc == 0 and not errors,
            "\n".join(errors) or err[-2000:])


def control_file(deb, name):
    d = tempfile.mkdtemp(prefix="authscan-ctrl-")
    try:
        sh(["dpkg-deb", "-e", deb, d])
        path = os.path.join(d, name)
        return open(path).read() if os.path.exists(path) else ""
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_layout(root, debs):
    main = [d for d in debs if os.path.basename(d).startswith("authscan_")]
    dev = [d for d in debs if os.path.basename(d).startswith("authscan-dev_")]
    T.eq("packages authscan and authscan-dev", (len(main), len(dev)), (1, 1))
    if not main or not dev:
        return None
    rc, _, err = sh(["dpkg", "-x", main[0], root])
    T.eq("dpkg -x authscan", rc, 0)
    for path in ["usr/sbin/authscand", "usr/bin/authscan", "etc/authscan/authscand.conf",
                 "etc/authscan/rules.d", "usr/share/authscan/rules/dmarc.conf",
                 "lib/systemd/system/authscand.service",
                 "lib/systemd/system/authscan-report.service",
                 "lib/systemd/system/authscan-report.timer",
                 "lib/systemd/system/authscan-report-failure.service",
                 "lib/systemd/system/authscan-report-failure.timer",
                 "usr/share/man/man8/authscand.8.gz", "usr/share/man/man1/authscan.1.gz",
                 "usr/share/man/man5/authscand.conf.5.gz",
                 "usr/share/doc/authscan/config.md.gz", "usr/share/doc/authscan/copyright"]:
        T.check("package has /%s" % path, os.path.lexists(os.path.join(root, path)), path)
    plugdirs = glob.glob(os.path.join(root, "usr/lib/*/authscan/plugins-abi1"))
    T.eq("one versioned plugin directory (plugins-abi1)", len(plugdirs), 1)
    plugdir = plugdirs[0] if plugdirs else None
    if plugdir:
        # every plugin the build makes, and at least the authentication ones
        built = sorted(f for f in os.listdir(harness.PLUGINS) if f.endswith(".so"))
        T.eq("plugins: those of the build", sorted(os.listdir(plugdir)), built)
        T.check("plugins: spf, dkim, dmarc", {"spf.so", "dkim.so", "dmarc.so"} <= set(built),
                built)
    T.eq("conffiles", control_file(main[0], "conffiles").split(), ["/etc/authscan/authscand.conf"])
    postinst = control_file(main[0], "postinst")
    T.check("postinst creates the _authscan system user",
            re.search(r"adduser --system --group .*_authscan", postinst, re.S), postinst)
    T.check("postinst makes /var/lib/authscan the account's",
            "install -d -o _authscan -g _authscan -m 0750 /var/lib/authscan" in postinst, postinst)
    T.check("postinst enables authscand.service",
            "deb-systemd-helper enable 'authscand.service'" in postinst, postinst)
    # dh_installsystemd --no-enable --no-start: enabled only where the
    # administrator had enabled it before, never started by the package
    # (reports need report.enabled and report.smtp, which the site sets)
    for timer in ("authscan-report.timer", "authscan-report-failure.timer"):
        T.check("postinst leaves %s off" % timer,
                "deb-systemd-helper debian-installed '%s'" % timer in postinst and
                not re.search(r"deb-systemd-invoke .*authscan-report", postinst), postinst)

    devroot = os.path.join(os.path.dirname(root), "devroot")
    sh(["dpkg", "-x", dev[0], devroot])
    T.check("authscan-dev has authscan/plugin.h",
            os.path.exists(os.path.join(devroot, "usr/include/authscan/plugin.h")))
    T.check("authscan-dev has the typed result headers", all(
        os.path.exists(os.path.join(devroot, "usr/include/authscan", h))
        for h in ("spf.h", "dkim.h", "dmarc.h")))
    pcs = glob.glob(os.path.join(devroot, "usr/lib/*/pkgconfig/authscan.pc"))
    T.eq("authscan-dev has authscan.pc", len(pcs), 1)
    if pcs and plugdir:
        pc = open(pcs[0]).read()
        m = re.search(r"^plugindir=(.*)$", pc, re.M)
        T.eq("authscan.pc plugindir is the package's plugin directory",
             m and m.group(1), "/" + os.path.relpath(plugdir, root))
    return plugdir


def test_run(root, plugdir):
    daemon = os.path.join(root, "usr/sbin/authscand")
    conf = os.path.join(root, "etc/authscan/authscand.conf")
    rc, out, err = sh([daemon, "--check-config", "-c", conf], timeout=120)
    T.check("unpacked authscand --check-config on the shipped config: OK",
            rc == 0 and "configuration OK" in out and "listen http@127.0.0.1:11333" in out,
            "got rc=%d %r %r" % (rc, out, err))
    rc, out, _ = sh([daemon, "--help"])
    rc2, ver, _ = sh([daemon, "--version"])
    T.check("unpacked authscand --version", rc2 == 0 and ver.startswith("authscand "), ver)

    # the daemon itself, from the unpacked tree, on the shipped config
    # (its own plugins: found next to the binary)
    port = harness.free_port()
    args = [daemon, "--foreground", "-c", conf, "--workers", "2", "--listen",
            "127.0.0.1:%d" % port, "--set", "log.target=stderr", "--log-level", "info"]
    root_run = os.geteuid() == 0
    if root_run:
        args += ["--set", "user=nobody"]
    logf = tempfile.TemporaryFile()
    p = subprocess.Popen(args, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                         start_new_session=True)

    def log():
        logf.seek(0)
        return logf.read().decode("utf-8", "replace")
    try:
        harness.wait_for(lambda: len(re.findall(r"worker#\d info: ready", log())) == 2 or
                         p.poll() is not None, timeout=60, what="workers ready")
        n = len([f for f in os.listdir(plugdir) if f.endswith(".so")])
        T.check("unpacked daemon: 2 workers ready with the %d packaged plugins" % n,
                log().count("ready: %d plugin(s)" % n) == 2, log()[-3000:])
        st, _, body = harness.http_request("127.0.0.1", port, "POST", "/checkv2",
                                           body=harness.SIMPLE_MSG,
                                           headers={"IP": "192.0.2.1",
                                                    "From": "alice@example.com"})
        T.eq("unpacked daemon: a scan", st, 200)
        if root_run:
            nobody = pwd.getpwnam("nobody").pw_uid
            for pid in [p.pid] + harness.children_of(p.pid):
                with open("/proc/%d/status" % pid) as f:
                    uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
                T.eq("unpacked daemon: pid %d runs as nobody" % pid, int(uid), nobody)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
    T.eq("unpacked daemon: exit 0 on SIGTERM", rc, 0)


def test_units(root):
    """systemd-analyze against the unpacked root.  The package's root has
    no systemd of its own: the host's targets and kill(1) are copied in so
    that the references resolve; man pages are checked in test_manpages."""
    if not shutil.which("systemd-analyze"):
        T.check("systemd-analyze is installed (scripts/install-deps: systemd)", False)
        return
    unitdir = os.path.join(root, "lib/systemd/system")
    for host_dir in ("/lib/systemd/system", "/usr/lib/systemd/system"):
        for f in glob.glob(os.path.join(host_dir, "*.target")):
            dst = os.path.join(unitdir, os.path.basename(f))
            if not os.path.exists(dst):
                shutil.copy(f, dst)
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    shutil.copy(os.path.realpath(shutil.which("kill")), os.path.join(root, "bin", "kill"))
    units = ["/lib/systemd/system/authscand.service",
             "/lib/systemd/system/authscan-report.service",
             "/lib/systemd/system/authscan-report.timer",
             "/lib/systemd/system/authscan-report-failure.service",
             "/lib/systemd/system/authscan-report-failure.timer"]
    rc, out, err = sh(["systemd-analyze", "verify", "--man=no", "--root=" + root] + units)
    T.check("systemd-analyze verify: clean", rc == 0 and not err.strip(),
            "got rc=%d %r" % (rc, (out + err)[-3000:]))
    # the hardening is measured, not only listed: exposure at most 2.5/10
    rc, out, err = sh(["systemd-analyze", "security", "--offline=yes", "--root=" + root,
                       "--no-pager", "--threshold=25", "authscand.service"])
    m = re.search(r"Overall exposure level for authscand.service: ([\d.]+)", out + err)
    harness.log("systemd-analyze security: %s" % (m.group(0) if m else (out + err)[-500:]))
    T.check("systemd-analyze security: exposure <= 2.5", rc == 0 and m, (out + err)[-3000:])
    unit = open(os.path.join(unitdir, "authscand.service")).read()
    for line in ("Type=notify", "User=_authscan", "ExecReload=/bin/kill -HUP $MAINPID",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "CapabilityBoundingSet=\n", "RuntimeDirectory=authscan",
                 "StateDirectory=authscan"):
        T.check("authscand.service has %r" % line.strip(), line in unit, unit)


def main():
    missing = [t for t in ("dpkg-buildpackage", "lintian", "dh", "fakeroot") if not shutil.which(t)]
    if missing:
        T.check("packaging tools installed (scripts/install-deps): missing %s" % missing, False)
        sys.exit(T.finish())
    work = tempfile.mkdtemp(prefix="authscan-pkg-")
    os.chmod(work, 0o755)        # the unpacked daemon runs as nobody
    try:
        debs = build(work)
        if debs:
            T.run(test_lintian, work)
            root = os.path.join(work, "root")
            plugdir = test_layout(root, debs)
            if plugdir:
                T.run(test_run, root, plugdir)
                T.run(test_units, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
