"""harness.py - run the real authscand / authscan for integration tests.

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness

    t = harness.Tests("daemon")             # counts checks, prints the summary
    with harness.Daemon(workers=2) as d:    # starts, waits for /ping, stops
        status, reply = d.checkv2(b"From: a@example.com\\r\\n\\r\\nhi\\r\\n",
                                  headers={"IP": "192.0.2.1"})
        t.check("no action", reply["action"] == "no action", reply)
        d.wait_log(r"ip=192\\.0\\.2\\.1 from=-")
    sys.exit(t.finish())                    # "N passed, N failed"

Environment (set by ctest, see tests/CMakeLists.txt): AUTHSCAN_BIN (the
directory with authscand and authscan), AUTHSCAN_PLUGINS, AUTHSCAN_SRC,
AUTHSCAN_BUILD.  Without them the paths default to the source tree's
build/ directory.

Daemon(...) runs `authscand --foreground` in its own process group with
  - a temporary directory (d.tmp) holding the config file (d.config_path,
    from the `config` text; rewrite it with d.write_config() before a
    reload), the log (stderr, d.log_path) and an offline DNS zone
    (d.zone_path, from `zone`: by default a zone where every lookup of
    slow.example times out, so a scan with MAIL FROM x@slow.example and an
    IP waits dns.timeout: a scan that is in flight for as long as a test
    needs);
  - one free TCP port on 127.0.0.1 (d.port) unless `listen` is given;
  - `--workers`, `--log-level`, `--plugins-dir`, `--dns-zone` and any
    extra `args`;
  - `--set user=root` when the tests run as root (CI does): authscand
    refuses to start as root without `user`, and the tests' private files
    are root's.  test_privileges covers the switch to another account
    (user=None: no flag at all).
start() waits until /ping answers (and, by default, until every worker has
logged "ready"); stop() sends SIGTERM, waits for the master and returns its
exit status, killing the whole process group if it does not exit in time.

Clients: d.request() (http.client, one connection per call), d.checkv2()
(parses the JSON reply), Conn (a raw socket that can send arbitrary bytes
and read responses one by one, for keep-alive and malformed requests),
unix_request() for unix sockets.  Processes: d.master_pid, d.worker_pids(),
children_of(pid).  CLI: run_check().
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("AUTHSCAN_SRC") or os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("AUTHSCAN_BUILD") or os.path.join(SRC, "build")
BIN = os.environ.get("AUTHSCAN_BIN") or os.path.join(BUILD, "bin")
PLUGINS = os.environ.get("AUTHSCAN_PLUGINS") or os.path.join(BUILD, "lib", "authscan", "plugins-abi1")
DATA = os.path.join(SRC, "tests", "data")
AUTHSCAND = os.path.join(BIN, "authscand")
AUTHSCAN = os.path.join(BIN, "authscan")

# Every lookup of slow.example (and its _dmarc / TXT / A ...) times out.
DEFAULT_ZONE = """$ORIGIN .
$TTL 300
example.com. TXT "v=spf1 ip4:192.0.2.0/24 -all"
; authscan: timeout slow.example.
; authscan: timeout _dmarc.slow.example.
"""

SIMPLE_MSG = (b"From: Alice <alice@example.com>\r\n"
              b"To: bob@example.org\r\n"
              b"Subject: hello\r\n"
              b"Date: Thu, 5 Dec 2019 18:22:18 +0300\r\n"
              b"Message-ID: <simple-1@example.com>\r\n"
              b"\r\n"
              b"Hello Bob.\r\n")

# The example plugin (from_check) fires MULTIPLE_FROM on this one.
MULTI_FROM_MSG = (b"From: a@example.com\r\n"
                  b"From: b@example.net\r\n"
                  b"To: bob@example.org\r\n"
                  b"Subject: two authors\r\n"
                  b"Message-ID: <multi-1@example.com>\r\n"
                  b"\r\n"
                  b"body\r\n")


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------------------
# Results


_ALL_TESTS = []


def failures_so_far():
    """Failed checks of every Tests object: a daemon that saw one fail
    prints its log on exit, even when no exception was raised."""
    return sum(t.failed for t in _ALL_TESTS)


class Tests:
    """Counts checks.  check() records one assertion; run() runs a test
    function and counts an exception as a failure (with its traceback);
    finish() prints "N passed, N failed" and returns the exit status."""

    def __init__(self, name=""):
        self.name = name
        self.passed = 0
        self.failed = 0
        _ALL_TESTS.append(self)

    def check(self, what, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            d = detail if isinstance(detail, str) else repr(detail)
            if len(d) > 2000:
                d = d[:2000] + "..."
            log("FAIL: %s %s" % (what, d))
        return bool(cond)

    def eq(self, what, got, want):
        return self.check(what, got == want, "got %r, want %r" % (got, want))

    def run(self, fn, *args, **kw):
        t0 = time.monotonic()
        log("--- %s" % fn.__name__)
        try:
            fn(*args, **kw)
        except Exception:
            self.failed += 1
            log("FAIL: %s raised:\n%s" % (fn.__name__, traceback.format_exc()))
        log("    (%.1fs)" % (time.monotonic() - t0))

    def finish(self):
        log("%d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0


# ---------------------------------------------------------------------------
# Processes


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _proc_stat(pid):
    """(state, ppid) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def children_of(pid):
    """Live (non-zombie) children of pid, sorted."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _proc_stat(int(name))
        if st and st[1] == pid and st[0] != "Z":
            out.append(int(name))
    return sorted(out)


def pid_alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] != "Z"


def wait_for(cond, timeout=30.0, interval=0.05, what="condition"):
    """Polls cond() until it returns something true; returns it, or raises
    TimeoutError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# HTTP on raw sockets


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers      # {lower-case name: value}
        self.body = body
        self.version = version

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    @property
    def closes(self):
        return self.header("connection", "").lower() == "close"

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:300])


class Conn:
    """One client connection (TCP host:port, or a unix socket path) that
    sends raw bytes and reads HTTP responses one at a time."""

    def __init__(self, addr, timeout=30.0):
        if isinstance(addr, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def read_response(self, head=False):
        """Reads one response; skips 1xx interim responses."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            hdr, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = hdr.decode("latin-1").split("\r\n")
            m = re.match(r"(HTTP/\d\.\d) (\d{3}) ?(.*)", lines[0])
            if not m:
                raise ValueError("bad status line %r" % lines[0])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            status = int(m.group(2))
            if 100 <= status < 200:
                continue
            if head:
                return Response(status, m.group(3), headers, b"", m.group(1))
            if "content-length" in headers:
                n = int(headers["content-length"])
                while len(self.buf) < n:
                    self._fill()
                body, self.buf = self.buf[:n], self.buf[n:]
            else:     # until EOF
                try:
                    while True:
                        self._fill()
                except EOFError:
                    pass
                body, self.buf = self.buf, b""
            return Response(status, m.group(3), headers, body, m.group(1))

    def at_eof(self, timeout=10.0):
        """True if the server closes the connection (nothing more arrives)
        within timeout."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
            self.buf += data
            return data == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)

    def request(self, method, path, body=b"", headers=None, keep_alive=True):
        self.send(build_request(method, path, body, headers, keep_alive))
        return self.read_response(head=(method == "HEAD"))

    def checkv2(self, msg, headers=None, path="/checkv2", keep_alive=True):
        r = self.request("POST", path, msg, headers, keep_alive)
        return r, (r.json() if r.header("content-type", "").startswith("application/json")
                   else None)


def build_request(method, path, body=b"", headers=None, keep_alive=True, version="1.1"):
    """Bytes of an HTTP request.  headers: dict or list of (name, value),
    values may be bytes (sent as is) or str (UTF-8)."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    out = [("%s %s HTTP/%s\r\n" % (method, path, version)).encode()]
    names = {k.lower() for k, _ in items}
    if "host" not in names:
        out.append(b"Host: localhost\r\n")
    if body is not None and (method != "GET" or body) and "content-length" not in names \
            and "transfer-encoding" not in names:
        out.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive and "connection" not in names:
        out.append(b"Connection: close\r\n")
    for k, v in items:
        out.append(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + b"\r\n")
    out.append(b"\r\n")
    if body:
        out.append(body)
    return b"".join(out)


# ---------------------------------------------------------------------------
# The daemon


# authscand refuses root without `user`; tests as root keep root on purpose.
DEFAULT_USER = "root" if os.geteuid() == 0 else None


def user_args():
    """The flag Daemon adds, for tests that run authscand themselves."""
    return ["--set", "user=" + DEFAULT_USER] if DEFAULT_USER else []


class StartError(Exception):
    pass


class Daemon:
    def __init__(self, workers=2, config=None, args=(), listen=None, log_level="info",
                 zone=DEFAULT_ZONE, plugins_dir=PLUGINS, pid_file=False, ready_timeout=60.0,
                 wait_workers=True, env=None, expect_workers=None, listen_flags=True,
                 user=DEFAULT_USER):
        """config: text of the config file (None: no -c at all).
        listen: list of --listen specs (default: one free TCP port); the
            first http one (bare or "http@") is pinged.
        listen_flags: False to not pass `listen` as --listen flags (the
            config file has them; `listen` then only says where to ping).
        workers: --workers N (None: no flag; then expect_workers, or the
            CPU count, is how many workers start() waits for).
        zone: zone file text for --dns-zone (None: no --dns-zone).
        pid_file: True to pass --pid-file d.pid_path."""
        self.tmp = tempfile.mkdtemp(prefix="authscan-test-")
        self.workers = workers
        self.config_text = config
        self.extra_args = list(args)
        self.listen = listen
        self.log_level = log_level
        self.zone = zone
        self.plugins_dir = plugins_dir
        self.use_pid_file = pid_file
        self.ready_timeout = ready_timeout
        self.wait_workers = wait_workers
        self.env = env
        self.expect_workers = expect_workers
        self.listen_flags = listen_flags
        self.user = user
        self.config_path = os.path.join(self.tmp, "authscand.conf")
        self.log_path = os.path.join(self.tmp, "authscand.log")
        self.zone_path = os.path.join(self.tmp, "test.zone")
        self.pid_path = os.path.join(self.tmp, "authscand.pid")
        self.proc = None
        self.port = None
        self.returncode = None
        self._logf = None

    # -- files ---------------------------------------------------------
    def write_config(self, text):
        self.config_text = text
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def path(self, name):
        return os.path.join(self.tmp, name)

    # -- life ----------------------------------------------------------
    def command(self):
        cmd = [AUTHSCAND, "--foreground"]
        if self.config_text is not None:
            cmd += ["-c", self.config_path]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        for spec in (self.listen_specs if self.listen_flags else []):
            cmd += ["--listen", spec]
        if self.log_level:
            cmd += ["--log-level", self.log_level]
        if self.plugins_dir:
            cmd += ["--plugins-dir", self.plugins_dir]
        if self.zone is not None:
            cmd += ["--dns-zone", self.zone_path]
        if self.use_pid_file:
            cmd += ["--pid-file", self.pid_path]
        if self.user:
            cmd += ["--set", "user=" + self.user]
        return cmd + self.extra_args

    def start(self):
        if self.config_text is not None:
            self.write_config(self.config_text)
        if self.zone is not None:
            with open(self.zone_path, "w") as f:
                f.write(self.zone)
        for attempt in range(5):
            if self.listen is None:
                self.port = free_port()
                self.listen_specs = ["127.0.0.1:%d" % self.port]
            else:
                self.listen_specs = list(self.listen)
                self.port = None
                for spec in self.listen_specs:
                    m = re.match(r"^(?:http@)?127\.0\.0\.1:(\d+)$", spec)
                    if m and self.port is None:
                        self.port = int(m.group(1))
            self._logf = open(self.log_path, "ab")
            self._log_start = os.path.getsize(self.log_path)
            env = dict(os.environ)
            if self.env:
                env.update(self.env)
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=self._logf, stderr=self._logf,
                                         start_new_session=True, env=env)
            try:
                self._wait_ready()
                return self
            except StartError:
                in_use = "Address already in use" in self.log()
                self._kill_group()
                if not (in_use and self.listen is None and attempt < 4):
                    raise
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise StartError("authscand exited with %s during startup; log:\n%s"
                                 % (self.proc.returncode, self.log()[-20000:]))
            if self._ping_any() and (not self.wait_workers or self._workers_ready()):
                return
            if time.monotonic() > deadline:
                self._kill_group()
                raise StartError("authscand not ready after %.0fs; log:\n%s"
                                 % (self.ready_timeout, self.log()[-4000:]))
            time.sleep(0.05)

    def _ping_any(self):
        for spec in self.listen_specs:
            if spec.startswith("http@"):
                spec = spec[5:]
            elif re.match(r"^[A-Za-z0-9_-]+@", spec):
                continue                 # another protocol: /ping is http's
            try:
                if spec.startswith("unix:"):
                    st, _, body = unix_request(spec[5:], "GET", "/ping", timeout=5)
                else:
                    host, _, port = spec.rpartition(":")
                    host = host.strip("[]")
                    if host in ("*", "0.0.0.0", ""):
                        host = "127.0.0.1"
                    st, _, body = http_request(host, int(port), "GET", "/ping", timeout=5)
                if st == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
        return False

    def _workers_ready(self):
        n = self.expect_workers or self.workers or (os.cpu_count() or 1)
        pids = self.worker_pids()
        if len(pids) < n:
            return False
        text = self.log()
        ready = set(int(p) for p in re.findall(r"authscand\[(\d+)\] worker#\d+ info: ready", text))
        return self.log_level not in ("info", "debug") or all(p in ready for p in pids)

    @property
    def master_pid(self):
        return self.proc.pid if self.proc else None

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def worker_pids(self):
        return children_of(self.proc.pid) if self.proc else []

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=60.0):
        """SIGTERM, wait; SIGKILL the group after timeout.  Returns the
        master's exit status (negative: killed by that signal)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("authscand did not exit %.0fs after SIGTERM; killing it" % timeout)
                self._kill_group()
        self.returncode = self.proc.returncode
        self._kill_group()   # stray workers, if any
        return self.returncode

    def wait_exit(self, timeout=60.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _kill_group(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self._logf:
            self._logf.close()
            self._logf = None

    def cleanup(self):
        self.stop(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        self._failures_at_start = failures_so_far()
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        failed = exc[0] is not None or failures_so_far() > self._failures_at_start
        if failed and self.proc is not None:
            log("log of the failed daemon (last 3000 bytes):\n" + self.log()[-30000:])
        self.cleanup()

    # -- log -----------------------------------------------------------
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_mark(self):
        """An offset for wait_log(since=...): only lines after now."""
        return len(self.log())

    def wait_log(self, pattern, timeout=30.0, since=0, count=1):
        """Waits until `pattern` (a regex) matches at least `count` times in
        the log after offset `since`; returns the last match."""
        rx = re.compile(pattern)

        def found():
            ms = list(rx.finditer(self.log()[since:]))
            return ms[count - 1] if len(ms) >= count else None
        return wait_for(found, timeout, what="log line /%s/" % pattern)

    # -- clients -------------------------------------------------------
    def conn(self, timeout=30.0):
        return Conn(self.addr, timeout)

    def request(self, method, path, body=None, headers=None, timeout=30.0):
        """(status, {lower-case header: value}, body) over a new connection."""
        return http_request("127.0.0.1", self.port, method, path, body, headers, timeout)

    def checkv2(self, msg, headers=None, query=None, timeout=30.0):
        """(status, parsed JSON reply) of POST /checkv2."""
        path = "/checkv2"
        if query:
            from urllib.parse import urlencode
            path += "?" + urlencode(query)
        st, _, body = self.request("POST", path, msg, headers, timeout)
        return st, json.loads(body.decode("utf-8"))

    def ping(self, timeout=10.0):
        try:
            st, _, body = self.request("GET", "/ping", timeout=timeout)
            return st == 200 and body.startswith(b"pong")
        except (OSError, http.client.HTTPException):
            return False

    def stat(self):
        st, _, body = self.request("GET", "/stat")
        return json.loads(body)


def http_request(host, port, method, path, body=None, headers=None, timeout=30.0):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in items:
            c.putheader(k, v)
        if body is not None:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def unix_request(path, method, target, body=None, headers=None, timeout=30.0):
    with Conn(path, timeout) as c:
        r = c.request(method, target, body if body is not None else b"", headers,
                      keep_alive=False)
        return r.status, r.headers, r.body


# ---------------------------------------------------------------------------
# The CLI


def run_check(msg, args=(), json_out=True, plugins_dir=PLUGINS, zone=DEFAULT_ZONE,
              timeout=60):
    """Runs `authscan check` on msg (bytes) from stdin.  Returns
    (returncode, parsed JSON or stdout text, stderr text)."""
    with tempfile.TemporaryDirectory(prefix="authscan-cli-") as tmp:
        cmd = [AUTHSCAN, "check"]
        if plugins_dir:
            cmd += ["--plugins-dir", plugins_dir]
        if zone is not None:
            zp = os.path.join(tmp, "z.zone")
            with open(zp, "w") as f:
                f.write(zone)
            cmd += ["--dns-zone", zp]
        if json_out:
            cmd.append("--json")
        cmd += list(args) + ["-"]
        p = subprocess.run(cmd, input=msg, capture_output=True, timeout=timeout)
        out = p.stdout.decode("utf-8", "replace")
        if json_out and p.returncode == 0:
            try:
                out = json.loads(out)
            except ValueError:
                pass
        return p.returncode, out, p.stderr.decode("utf-8", "replace")


def data_file(name):
    return os.path.join(DATA, name)


def read_data(name):
    with open(data_file(name), "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------
# A private redis-server

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = b"%d" % a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("redis error: " + rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ValueError("bad RESP line %r" % line)


class RedisServer:
    """A private redis-server on a free 127.0.0.1 port, in its own
    temporary directory, with no persistence (no RDB, no AOF):

        with harness.RedisServer() as r:        # started, answers PING
            config = "redis.servers = %s\\n" % r.address
            r.cmd("HGETALL", key)               # a tiny RESP client
            r.kill(); r.start()                 # SIGKILL; again, same port
            r.cmd("CLIENT", "PAUSE", 1000)

    stop() (and leaving the with block) terminates it and removes the
    directory.  password sets requirepass."""

    def __init__(self, password=None, args=()):
        self.password = password
        self.args = list(args)          # more redis-server options, e.g. replicaof
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="authscan-redis-")
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self, timeout=20.0):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.tmp,
                "--daemonize", "no", "--protected-mode", "no",
                "--logfile", os.path.join(self.tmp, "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise StartError("redis-server exited with %s: %s" % (
                    self.proc.returncode, self.log()[-1000:]))
            try:
                return self.cmd("PING") == "PONG"
            except (OSError, ConnectionError):
                return False
        wait_for(up, timeout, what="redis-server on port %d" % self.port)
        return self

    def log(self):
        try:
            with open(os.path.join(self.tmp, "redis.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cmd(self, *args, timeout=10.0):
        """One command on a fresh connection; the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(_resp_encode(["AUTH", self.password]))
                _resp_read(f)
            s.sendall(_resp_encode(list(args)))
            return _resp_read(f)

    def kill(self):
        """SIGKILL: what a crash looks like to the clients."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


class RedisSentinel(RedisServer):
    """A private Redis Sentinel (redis-server --sentinel) on a free port,
    monitoring one master on 127.0.0.1 with a short down-after, so a
    failover takes a few seconds:

        with harness.RedisSentinel("mymaster", master.port) as s:
            s.cmd("SENTINEL", "get-master-addr-by-name", "mymaster")"""

    def __init__(self, master_name, master_port, quorum=2, down_after_ms=1000,
                 failover_timeout_ms=4000):
        super().__init__()
        self.master_name = master_name
        self.master_port = master_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def start(self, timeout=20.0):
        conf = os.path.join(self.tmp, "sentinel.conf")
        if not os.path.exists(conf):   # a restart keeps what it learnt
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n"
                        "dir %s\nlogfile %s\n"
                        "sentinel monitor %s 127.0.0.1 %d %d\n"
                        "sentinel down-after-milliseconds %s %d\n"
                        "sentinel failover-timeout %s %d\n"
                        "sentinel parallel-syncs %s 1\n" % (
                            self.port, self.tmp, os.path.join(self.tmp, "redis.log"),
                            self.master_name, self.master_port, self.quorum,
                            self.master_name, self.down_after_ms,
                            self.master_name, self.failover_timeout_ms, self.master_name))
        self.proc = subprocess.Popen([REDIS_SERVER, conf, "--sentinel"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise StartError("redis-server --sentinel exited with %s: %s" % (
                    self.proc.returncode, self.log()[-1000:]))
            try:
                return self.cmd("PING") == "PONG"
            except (OSError, ConnectionError):
                return False
        wait_for(up, timeout, what="redis sentinel on port %d" % self.port)
        return self
