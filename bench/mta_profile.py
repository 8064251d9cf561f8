#!/usr/bin/python3
"""bench/mta_profile.py - where the worker's instructions and system calls
go per message over /checkv2, milter and spamd (docs/performance.md,
"Milter and spamd against /checkv2").

CPU time on a shared machine is noisy; instruction counts are not.  One
authscand with one worker runs under callgrind; for each protocol the same
corpus slice is sent (after a warm-up), the worker's counters are zeroed
before and dumped after with callgrind_control, and the total is divided by
the messages answered.  Then daemons run natively with `perf stat` (syscall
tracepoints) attached to the worker for the same slice of each protocol: system calls
per message.

    bench/mta_profile.py [--build build] [--work bench/work] [-n 200] [-c 4]

Needs the corpus and zone of bench/run (bench/work), nsd, valgrind, perf.
Writes its raw files to WORK/mta-profile/ and prints a markdown table.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
import nsd as nsd_mod  # noqa: E402
import mta as mta_mod  # noqa: E402
import bench as bench_mod  # noqa: E402

KINDS = ("http", "milter", "spamd")


def start_daemon(authscand, dns, prefix, logpath, http_port, milter_port, spamd_port, cfg):
    cmd = prefix + [authscand, "-f", "-w", "1", "-l", "127.0.0.1:%d" % http_port,
                    "-l", "milter@127.0.0.1:%d" % milter_port, "-l", "spamd@127.0.0.1:%d" % spamd_port,
                    "--dns-server", dns, "-c", cfg]
    if os.geteuid() == 0:
        cmd += ["--set", "user=root"]
    logf = open(logpath, "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    t_end = time.time() + 180
    while time.time() < t_end:
        if proc.poll() is not None:
            sys.exit("authscand exited (%s); see %s" % (proc.returncode, logpath))
        try:
            st, _ = bench_mod.http_get(http_port, "/ping", 2)
            # the worker is the process that logs as worker#0 (the
            # master forks other helpers too)
            logf.flush()
            m = re.findall(r"authscand\[(\d+)\] worker#0 ", open(logpath, errors="replace").read())
            if st == 200 and m and int(m[-1]) in bench_mod.children(proc.pid):
                return proc, int(m[-1])
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("authscand did not answer /ping; see %s" % logpath)


def stop_daemon(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def annotate_self(path):
    """{function: self Ir} from callgrind_annotate."""
    txt = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True).stdout
    out = {}
    for line in txt.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$", line)
        if m:
            fn = m.group(2).split(" [")[0]
            fn = fn.split(":", 1)[1] if ":" in fn and not fn.startswith("???") else fn
            out[fn] = out.get(fn, 0) + int(m.group(1).replace(",", ""))
    return out


def callgrind_run(a, dns, load, out, name, kind):
    """The worker's Ir for: start, warm-up over every protocol, a.n
    messages over kind (None: none), stop.  callgrind_control cannot reach
    a forked worker, so each run is a fresh daemon and the per-message
    cost is the difference against the run without messages."""
    cgdir = os.path.join(out, "callgrind")
    os.makedirs(cgdir, exist_ok=True)
    ports = [mta_mod.free_port() for _ in range(3)]
    prefix = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(cgdir, name + ".%p")]
    proc, worker = start_daemon(a.authscand, dns, prefix, os.path.join(out, "authscand-cg.log"),
                                ports[0], ports[1], ports[2], a.cfg)
    n = errors = 0
    try:
        for k, port in zip(KINDS, ports):
            load.run(k, port, a.c, count=a.warmup)
        if kind:
            n, errors, _ = load.run(kind, port_of(kind, ports), a.c, count=a.n)
    finally:
        stop_daemon(proc)
    dump = os.path.join(cgdir, "%s.%d" % (name, worker))
    return {"messages": n, "errors": errors, "ir": bench_mod.callgrind_total(dump), "dump": dump}


def port_of(kind, ports):
    return ports[KINDS.index(kind)]


def run_callgrind(a, dns, load, out):
    base = callgrind_run(a, dns, load, out, "base", None)
    base_fn = annotate_self(base["dump"])
    res = {}
    for kind in KINDS:
        r = callgrind_run(a, dns, load, out, kind, kind)
        n = max(1, r["messages"])
        r["ir"] -= base["ir"]
        fn = annotate_self(r["dump"])
        per = {f: (v - base_fn.get(f, 0)) / n for f, v in fn.items()}
        top = sorted(per.items(), key=lambda kv: -kv[1])[:40]
        with open(os.path.join(out, "callgrind-%s-self-per-msg.txt" % kind), "w") as f:
            f.write("# %s: self Ir per message (run minus the run without messages), %d messages\n"
                    % (kind, r["messages"]))
            for name, v in top:
                f.write("%10.0f  %s\n" % (v, name))
        res[kind] = r
        print("callgrind %-6s %d messages, %d errors, %.0f Ir/msg" %
              (kind, r["messages"], r["errors"], r["ir"] / n), file=sys.stderr, flush=True)
    return res


SYSCALLS = ("epoll_wait", "epoll_ctl", "read", "readv", "recvfrom", "ioctl", "write", "writev",
            "sendto", "accept4", "shutdown", "close", "setsockopt", "getsockname", "socket",
            "connect", "fcntl", "bind")


def parse_perf(path):
    """{event: count} from perf stat -x, output."""
    out = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) >= 3 and f[0].replace(".", "").isdigit():
            ev = f[2]
            ev = "raw_syscalls" if ev == "raw_syscalls:sys_enter" else ev.split(":")[-1].replace("sys_enter_", "")
            out[ev] = float(f[0])
    return out


def run_syscalls(a, dns, load, out):
    """System calls (and CPU) per message of the natively running worker,
    counted by perf's tracepoints (strace would slow the worker enough to
    change how the MTA's packets coalesce): a fresh daemon per protocol,
    so that the DNS cache starts empty for each, warmed up on every
    protocol."""
    res = {}
    events = ["task-clock", "context-switches", "raw_syscalls:sys_enter"] + \
             ["syscalls:sys_enter_" + s for s in SYSCALLS]
    for kind in KINDS:
        ports = [mta_mod.free_port() for _ in range(3)]
        proc, worker = start_daemon(a.authscand, dns, [], os.path.join(out, "authscand-perf.log"),
                                    ports[0], ports[1], ports[2], a.cfg)
        path = os.path.join(out, "perf-stat-%s.txt" % kind)
        try:
            for k, port in zip(KINDS, ports):
                load.run(k, port, a.c, count=a.warmup)
            st = subprocess.Popen(["perf", "stat", "-x", ",", "-o", path, "-e", ",".join(events),
                                   "-p", str(worker)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)     # attached
            n, errors, _ = load.run(kind, port_of(kind, ports), a.c, count=a.n)
            st.send_signal(signal.SIGINT)
            st.wait(30)
        finally:
            stop_daemon(proc)
        ev = parse_perf(path)
        calls = {k: v for k, v in ev.items() if k in SYSCALLS and v}
        res[kind] = {"messages": n, "errors": errors, "calls": calls,
                     "syscalls": ev.get("raw_syscalls", 0), "cpu_ms": ev.get("task-clock", 0),
                     "cs": ev.get("context-switches", 0)}
        print("syscalls  %-6s %d messages, %.1f syscalls/msg, worker %.3f ms CPU/msg" %
              (kind, n, res[kind]["syscalls"] / max(1, n), res[kind]["cpu_ms"] / max(1, n)),
              file=sys.stderr, flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("-n", type=int, default=200, help="messages per protocol")
    ap.add_argument("-c", type=int, default=4, help="client concurrency")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-syscalls", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    a = ap.parse_args()
    a.authscand = os.path.join(a.build, "authscand")
    if not os.path.exists(a.authscand):
        a.authscand = os.path.join(a.build, "bin", "authscand")
    corpus = os.path.join(a.work, "corpus")
    zone = os.path.join(a.work, "zone", "root.zone")
    out = os.path.join(a.work, "mta-profile")
    os.makedirs(out, exist_ok=True)
    a.cfg = os.path.join(out, "mta-profile.conf")
    with open(a.cfg, "w") as f:
        f.write("spamd.trusted_networks = 127.0.0.0/8\n")
    rows = bench_mod.load_manifest(os.path.join(corpus, "manifest.tsv"))
    load = mta_mod.Load(rows, corpus)
    server = nsd_mod.NSD({".": zone}).start()
    try:
        cg = {} if a.no_callgrind else run_callgrind(a, server.address, load, out)
        sc = {} if a.no_syscalls else run_syscalls(a, server.address, load, out)
    finally:
        server.stop()
    lines = ["| protocol | Ir/msg (worker, callgrind) | vs /checkv2 | syscalls/msg | worker CPU ms/msg "
             "| top syscalls per msg |", "|---|---:|---:|---:|---:|---|"]
    for kind in KINDS:
        ir = cg.get(kind, {}).get("ir")
        n = cg.get(kind, {}).get("messages") or 1
        base = cg.get("http", {}).get("ir")
        bn = cg.get("http", {}).get("messages") or 1
        calls = sc.get(kind, {}).get("calls", {})
        sn = sc.get(kind, {}).get("messages") or 1
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            kind, "%.0f" % (ir / n) if ir else "-",
            "%.2fx" % ((ir / n) / (base / bn)) if ir and base else "-",
            "%.1f" % (sc[kind]["syscalls"] / sn) if kind in sc else "-",
            "%.3f" % (sc[kind]["cpu_ms"] / sn) if kind in sc else "-",
            ", ".join("%s %.1f" % (k, v / sn) for k, v in top)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
