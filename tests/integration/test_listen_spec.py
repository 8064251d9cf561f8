#!/usr/bin/env python3
"""Listen specs name their protocol: `[PROTO@]ADDR` (docs/config.md).

http@ TCP and unix sockets serve rspamc and raw HTTP next to a bare
address; --check-config prints the effective list with protocols; an
unknown protocol and an empty `listen =` are errors naming file:line (or
"command line"); with no `listen` at all the built-in default is used; a
reload keeps every socket, whichever of the two forms names it.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("listen_spec")
RSPAMC = shutil.which("rspamc") or "/usr/bin/rspamc"
ENV = {"IP": "192.0.2.1", "From": "alice@example.com"}


def authscand(args, timeout=60):
    p = subprocess.run([harness.AUTHSCAND] + args, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check_config(d_tmp, text, extra=()):
    path = os.path.join(d_tmp, "t.conf")
    with open(path, "w") as f:
        f.write(text)
    rc, out, err = authscand(["--check-config", "-c", path, "--plugins-dir", harness.PLUGINS]
                             + list(extra))
    return rc, out, err, path


def serves_tcp(port, what):
    st, _, body = harness.http_request("127.0.0.1", port, "POST", "/checkv2",
                                       harness.MULTI_FROM_MSG, ENV)
    T.check("%s: /checkv2 got %s, want 200 with MULTIPLE_FROM" % (what, st),
            st == 200 and b"MULTIPLE_FROM" in body, body[:300])


def serves_unix(path, what):
    st, _, body = harness.unix_request(path, "POST", "/checkv2", harness.MULTI_FROM_MSG, ENV)
    T.check("%s: /checkv2 got %s, want 200 with MULTIPLE_FROM" % (what, st),
            st == 200 and b"MULTIPLE_FROM" in body, body[:300])


def generation_ready(d, gen, since):
    d.wait_log(r"generation %d ready" % gen, since=since, timeout=60)


def test_listeners_and_reload():
    p1, p2, p3 = harness.free_port(), harness.free_port(), harness.free_port()
    tmp = tempfile.mkdtemp(prefix="authscan-listen-")
    sock = os.path.join(tmp, "scan.sock")
    listen = "listen = http@127.0.0.1:%d, 127.0.0.1:%d, http@unix:%s:0600\n" % (p1, p2, sock)
    d = harness.Daemon(workers=2, config="workers = 2\n" + listen,
                       listen=["http@127.0.0.1:%d" % p1], listen_flags=False)
    try:
        d.start()
        serves_tcp(p1, "http@127.0.0.1")
        serves_tcp(p2, "bare 127.0.0.1")
        serves_unix(sock, "http@unix")
        T.eq("unix socket mode from http@unix:...:0600", os.stat(sock).st_mode & 0o777, 0o600)
        for spec in ("127.0.0.1:%d (http)" % p1, "127.0.0.1:%d (http)" % p2,
                     "unix:%s:0600 (http)" % sock):
            d.wait_log(r"listening on %s" % re.escape(spec))
            T.check("log: listening on %s" % spec, True)

        # the real rspamc against the http@ socket
        if os.path.exists(RSPAMC):
            msg = os.path.join(d.tmp, "multi.eml")
            with open(msg, "wb") as f:
                f.write(harness.MULTI_FROM_MSG)
            r = subprocess.run([RSPAMC, "-h", "127.0.0.1:%d" % p1, "-t", "30", "symbols", msg],
                               capture_output=True, timeout=60)
            out = r.stdout.decode("utf-8", "replace")
            T.check("rspamc on http@127.0.0.1:%d: got rc %d, want 0 and MULTIPLE_FROM"
                    % (p1, r.returncode), r.returncode == 0 and "MULTIPLE_FROM" in out, out)
        else:
            T.check("rspamc is installed (%s)" % RSPAMC, False)

        # reload: the same sockets, every one named the other way round
        # (bare <-> http@) plus one more; none is closed or reopened
        mark = d.log_mark()
        d.write_config("workers = 2\nlisten = 127.0.0.1:%d, http@127.0.0.1:%d, unix:%s:0600, "
                       "http@127.0.0.1:%d\n" % (p1, p2, sock, p3))
        d.signal(signal.SIGHUP)
        generation_ready(d, 2, since=mark)
        log = d.log()[mark:]
        T.check("reload: no socket closed when only its spelling changed",
                "no longer listening" not in log, log[-2000:])
        T.eq("reload: only the new socket opened",
             re.findall(r"listening on (\S+) \(http\)", log), ["127.0.0.1:%d" % p3])
        serves_tcp(p1, "after reload: 127.0.0.1 (was http@)")
        serves_tcp(p2, "after reload: http@127.0.0.1 (was bare)")
        serves_tcp(p3, "after reload: added http@127.0.0.1")
        serves_unix(sock, "after reload: unix (was http@unix)")

        # reload with an unknown protocol: refused, the old sockets serve on
        mark = d.log_mark()
        d.write_config("workers = 2\n\nlisten = lmtp@127.0.0.1:%d\n" % p3)
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload aborted.*authscand\.conf:3: listen \"lmtp@127\.0\.0\.1:%d\": "
                   r"unknown protocol \"lmtp\"" % p3, since=mark)
        T.check("reload with an unknown protocol is refused with file:line", True)
        serves_tcp(p3, "after the refused reload")
        d.port = p1
        T.eq("master exits 0", d.stop(), 0)
        T.check("unix socket file removed at stop", not os.path.exists(sock))
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_config_errors():
    tmp = tempfile.mkdtemp(prefix="authscan-listen-")
    try:
        rc, out, err, path = check_config(tmp, "workers = 1\n\nlisten = lmtp@127.0.0.1:11332\n")
        want = '%s:3: listen "lmtp@127.0.0.1:11332": unknown protocol "lmtp" (known: http, milter, spamd, controller)' % path
        T.check("unknown protocol: got rc %d %r, want %r" % (rc, err.strip(), want),
                rc != 0 and want in err, err)
        rc, out, err, path = check_config(tmp, "workers = 1\n", ["-l", "smtp@unix:/tmp/x.sock"])
        T.check("unknown protocol on the command line names it: got %r" % err.strip(),
                rc != 0 and 'command line: listen "smtp@unix:/tmp/x.sock": unknown protocol' in err,
                err)
        rc, out, err, path = check_config(tmp, "workers = 1\n", ["-l", "@127.0.0.1:1"])
        T.check("empty protocol: got %r" % err.strip(), rc != 0 and "empty protocol" in err, err)
        rc, out, err, path = check_config(tmp, "workers = 1\nlisten =\n")
        want = "%s:2: listen: no address" % path
        T.check("empty 'listen =': got rc %d %r, want %r" % (rc, err.strip(), want),
                rc != 0 and want in err, err)
        rc, out, err, path = check_config(tmp, "listen = 127.0.0.1:1\n", ["--set", "listen="])
        T.check("listen cleared on the command line: got %r" % err.strip(),
                rc != 0 and "command line: listen: no address" in err, err)
        # the daemon itself refuses to start with them, before forking
        p = subprocess.run([harness.AUTHSCAND, "--foreground", "-c", path, "--plugins-dir",
                            harness.PLUGINS, "--set", "listen=lmtp@127.0.0.1:1"],
                           capture_output=True, timeout=60)
        T.check("daemon with an unknown protocol exits 1 (got %d)" % p.returncode,
                p.returncode == 1 and b"unknown protocol" in p.stderr, p.stderr[-500:])

        # --check-config prints the effective list, each with its protocol
        rc, out, err, path = check_config(
            tmp, "listen = 127.0.0.1:2001, http@[::1]:2002\nlisten += unix:/tmp/a.sock\n")
        got = [l for l in out.splitlines() if l.startswith("listen ")]
        want = ["listen http@127.0.0.1:2001", "listen http@[::1]:2002",
                "listen http@unix:/tmp/a.sock"]
        T.check("--check-config listen list: got %r, want %r" % (got, want),
                rc == 0 and got == want, (out, err))
        rc, out, err, path = check_config(tmp, "workers = 1\n", ["-l", "http@127.0.0.1:2003"])
        got = [l for l in out.splitlines() if l.startswith("listen ")]
        T.check("--check-config: -l replaces the file's list: got %r" % got,
                rc == 0 and got == ["listen http@127.0.0.1:2003"], (out, err))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_default_listen():
    """No `listen` anywhere: the documented default, 127.0.0.1:11333."""
    tmp = tempfile.mkdtemp(prefix="authscan-listen-")
    try:
        rc, out, err, path = check_config(tmp, "workers = 1\n")
        got = [l for l in out.splitlines() if l.startswith("listen ")]
        T.check("--check-config without listen: got %r, want the default" % got,
                rc == 0 and got == ["listen http@127.0.0.1:11333"], (out, err))
        # The daemon: either it serves the default port, or (another
        # process holds it) it fails to bind that very address.  Listening
        # nowhere and running on is the defect.
        d = harness.Daemon(workers=1, config="workers = 1\n", listen=["127.0.0.1:11333"],
                           listen_flags=False, ready_timeout=20)
        try:
            d.start()
            st, _, body = harness.http_request("127.0.0.1", 11333, "GET", "/ping")
            T.check("no listen key: serves 127.0.0.1:11333 (got %s)" % st, st == 200, body)
            d.wait_log(r"listening on 127\.0\.0\.1:11333 \(http\)")
            T.eq("master exits 0", d.stop(), 0)
        except harness.StartError as e:
            T.check("no listen key: the default 127.0.0.1:11333 was tried (it is taken)",
                    "cannot listen on 127.0.0.1:11333" in str(e) and
                    "Address already in use" in str(e), str(e)[-1500:])
        finally:
            d.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    T.run(test_config_errors)
    T.run(test_default_listen)
    T.run(test_listeners_and_reload)
    sys.exit(T.finish())
