#!/usr/bin/python3
"""Hostile files in the plugins directory (issue 10.4): a plugin copied half
way (truncated at several points: the loader used to map pages past the end
of the file and die of SIGBUS), an empty file, garbage, an ELF header whose
program headers point past the end, a directory, a fifo, a unix socket, a
symlink loop and a dangling symlink named *.so, and shared objects whose
constructor segfaults, raises SIGBUS or calls exit().

For each one:
 - `authscand --check-config` exits 1 (not killed by a signal) with an
   error naming the file and saying why;
 - `authscand` refuses to start with the same error;
 - SIGHUP to a running daemon whose plugins directory now holds it: the
   master survives, logs "reload aborted" naming the file, and the same
   workers keep answering with the right verdict; restoring the directory
   and reloading again starts generation 2.
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("plugin_files")
TMP = tempfile.mkdtemp(prefix="authscan-plugfiles-")
DKIM = os.path.join(harness.PLUGINS, "dkim.so")

CTOR = """#include <signal.h>
#include <stdlib.h>
__attribute__((constructor)) static void ctor(void) { %s; }
"""


def gcc(src_text, out):
    src = out + ".c"
    with open(src, "w") as f:
        f.write(src_text)
    p = subprocess.run(["gcc", "-shared", "-fPIC", "-o", out, src], capture_output=True,
                       timeout=120)
    os.unlink(src)
    if p.returncode != 0:
        raise RuntimeError("gcc failed: %s" % p.stderr.decode())


def truncated(n):
    def make(path):
        with open(DKIM, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:n(len(data))])
    return make


def garbage(data):
    def make(path):
        with open(path, "wb") as f:
            f.write(data)
    return make


def elf_header_only(path):
    # A valid ELF header (the first 64 bytes of a real plugin) and nothing else.
    truncated(lambda n: 64)(path)


def elf_bad_phoff(path):
    with open(DKIM, "rb") as f:
        data = bytearray(f.read())
    data[32:40] = (1 << 40).to_bytes(8, "little")   # e_phoff far past the end
    with open(path, "wb") as f:
        f.write(data)


def fifo(path):
    os.mkfifo(path)


def directory(path):
    os.mkdir(path)


def unix_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


def symlink_loop(path):
    # put_case() renames it to the name it points to
    os.symlink(os.path.basename(path).replace(".new-", ""), path)


def dangling(path):
    os.symlink(os.path.join(TMP, "does-not-exist.so"), path)


def ctor(code):
    return lambda path: gcc(CTOR % code, path)


# (case, file name, how to make it, words one of which the error must contain)
CASES = [
    ("truncated to 10%", "dkim.so", truncated(lambda n: n // 10), ["truncated"]),
    ("truncated to 30%", "dkim.so", truncated(lambda n: n * 3 // 10), ["truncated"]),
    ("truncated to 90%", "dkim.so", truncated(lambda n: n * 9 // 10), ["truncated"]),
    ("truncated to 1 byte short", "dkim.so", truncated(lambda n: n - 1), ["truncated"]),
    ("zero bytes", "dkim.so", garbage(b""), ["empty"]),
    ("ELF header only", "dkim.so", elf_header_only, ["truncated"]),
    ("program headers past the end", "dkim.so", elf_bad_phoff, ["program headers"]),
    ("garbage", "junk.so", garbage(b"\x7fELF but not really" * 50), ["ELF", "architecture"]),
    ("text file", "junk.so", garbage(b"#!/bin/sh\necho hi\n"), ["not an ELF"]),
    ("directory", "dir.so", directory, ["directory"]),
    ("fifo", "fifo.so", fifo, ["fifo"]),
    ("unix socket", "sock.so", unix_socket, ["socket"]),
    ("symlink loop", "loop.so", symlink_loop, ["symbolic links"]),
    ("dangling symlink", "gone.so", dangling, ["No such file"]),
    ("constructor segfaults", "crash.so", ctor("*(volatile int *)0 = 1"),
     ["signal", "exited with status"]),
    ("constructor raises SIGBUS", "bus.so", ctor("raise(SIGBUS)"),
     ["signal", "exited with status"]),
    ("constructor calls exit(3)", "exits.so", ctor("exit(3)"), ["exited with status 3"]),
]


def plugin_dir(name):
    d = os.path.join(TMP, name)
    os.makedirs(d)
    for f in os.listdir(harness.PLUGINS):
        if f.endswith(".so"):
            shutil.copy(os.path.join(harness.PLUGINS, f), d)
    return d


def put_case(d, fname, make):
    """Installs the hostile file as a deploy would: the new file replaces
    the old name (rename), so a running worker keeps the inode it mapped."""
    path = os.path.join(d, fname)
    tmp = os.path.join(d, ".new-" + fname)
    make(tmp)
    os.replace(tmp, path)
    return path


def restore(d, fname):
    path = os.path.join(d, fname)
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    else:
        os.unlink(path)
    orig = os.path.join(harness.PLUGINS, fname)
    if os.path.exists(orig):
        shutil.copy(orig, os.path.join(d, ".restore"))
        os.replace(os.path.join(d, ".restore"), path)


def run(args, timeout=90):
    p = subprocess.run([harness.AUTHSCAND] + args, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, start_new_session=True)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def reason_ok(err, words):
    return any(w in err for w in words)


def test_check_config():
    for i, (case, fname, make, words) in enumerate(CASES):
        d = plugin_dir("check%d" % i)
        path = put_case(d, fname, make)
        rc, err = run(["--check-config", "--plugins-dir", d])
        T.eq("%s: --check-config exits 1 (not killed by a signal)" % case, rc, 1)
        # (a sanitizer build adds the crashing child's report before it)
        lines = [x for x in err.splitlines() if x.startswith("authscand: ")]
        T.eq("%s: one error line" % case, len(lines), 1)
        line = lines[0] if lines else ""
        T.check("%s: the error names the file" % case, path in line, err)
        T.check("%s: and says why (%s)" % (case, " or ".join(words)), reason_ok(line, words), err)


def test_start():
    for i, (case, fname, make, words) in enumerate(CASES[:1] + CASES[14:15]):
        d = plugin_dir("start%d" % i)
        path = put_case(d, fname, make)
        port = harness.free_port()
        try:
            rc, err = run(["--foreground", "--workers", "1", "--listen", "127.0.0.1:%d" % port,
                           "--plugins-dir", d], timeout=60)
        except subprocess.TimeoutExpired:
            T.check("%s: authscand refuses to start at once" % case, False)
            continue
        T.eq("%s: authscand exits 1" % case, rc, 1)
        T.check("%s: naming the file" % case, path in err and reason_ok(err, words), err)


def verdict_ok(d):
    st, r = d.checkv2(harness.MULTI_FROM_MSG)
    return st == 200 and "MULTIPLE_FROM" in r.get("symbols", {})


def test_reload():
    d_plugins = plugin_dir("reload")
    config = "workers = 2\nplugins.dir = %s\n" % d_plugins
    with harness.Daemon(workers=None, expect_workers=2, config=config, plugins_dir=None) as d:
        workers = sorted(d.worker_pids())
        T.eq("2 workers", len(workers), 2)
        T.check("scans before", verdict_ok(d))
        for case, fname, make, words in CASES:
            path = put_case(d_plugins, fname, make)
            mark = d.log_mark()
            d.signal(signal.SIGHUP)
            try:
                m = d.wait_log(r"reload aborted[^\n]*", since=mark, timeout=90)
                line = m.group(0)
            except TimeoutError:
                line = ""
            T.check("%s: reload aborted naming the file and why" % case,
                    path in line and reason_ok(line, words), d.log()[mark:][-2000:])
            T.check("%s: the master is alive" % case, d.alive(), d.log()[-2000:])
            if not d.alive():
                return
            T.eq("%s: the same workers run" % case, sorted(d.worker_pids()), workers)
            T.check("%s: and answer with the right verdict" % case, verdict_ok(d))
            restore(d_plugins, fname)
        T.check("no worker died", not re.search(r"worker#\d+ \(pid \d+, generation \d+\) "
                                                 r"(killed by signal|exited with status [1-9])",
                                                 d.log()), d.log()[-3000:])
        # the directory is whole again: a reload goes through
        mark = d.log_mark()
        d.signal(signal.SIGHUP)
        d.wait_log(r"generation 2 ready", since=mark, timeout=60)
        T.check("after restoring the files, generation 2 scans", verdict_ok(d))
        T.eq("master exits 0", d.stop(), 0)


def main():
    try:
        if not shutil.which("gcc"):
            T.check("gcc is installed", False)
        else:
            for fn in (test_check_config, test_start, test_reload):
                T.run(fn)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
