"""nsd.py - run a private nsd on 127.0.0.1 for tests.

    sys.path.insert(0, os.path.dirname(__file__)); import nsd
    with nsd.NSD({"example": "/path/example.zone"}) as server:
        ... server.port, server.address ("127.0.0.1:PORT") ...

NSD(zones) takes {zone name: zone file path} (or a list of pairs).  start()
writes nsd.conf into a temporary directory, picks a free port, starts
`nsd -d` and waits until the server answers an SOA query for the first zone
(UDP).  stop() terminates it and removes the directory.  Zone files are
checked with nsd-checkzone first so a broken test zone fails loudly.

Run as a program it serves until its stdin closes (used by C tests, so nsd
goes away even when the test crashes):

    /usr/bin/python3 nsd.py example=data/zones/example.zone [...]
    -> prints "PORT\n" once nsd answers, then waits for EOF on stdin.
"""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

NSD_BIN = shutil.which("nsd") or "/usr/sbin/nsd"
CHECKZONE_BIN = shutil.which("nsd-checkzone") or "/usr/sbin/nsd-checkzone"


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port")


def _query(name, qtype=6):
    qid = random.randint(0, 0xFFFF)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        if label:
            q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    return qid, q


def answers(port, name, timeout=0.3):
    """True if something answers a DNS query for name on 127.0.0.1:port."""
    qid, pkt = _query(name)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
        return len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid
    except OSError:
        return False
    finally:
        s.close()


class NSD:
    def __init__(self, zones, startup_timeout=10.0):
        self.zones = list(zones.items()) if isinstance(zones, dict) else list(zones)
        if not self.zones:
            raise ValueError("nsd needs at least one zone")
        self.startup_timeout = startup_timeout
        self.dir = None
        self.proc = None
        self.port = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _write_conf(self, port):
        conf = [
            "server:",
            "    ip-address: 127.0.0.1",
            "    port: %d" % port,
            '    username: ""',
            '    chroot: ""',
            '    database: ""',
            '    zonesdir: "%s"' % self.dir,
            '    zonelistfile: "%s/zone.list"' % self.dir,
            '    xfrdfile: "%s/xfrd.state"' % self.dir,
            '    xfrdir: "%s"' % self.dir,
            '    pidfile: "%s/nsd.pid"' % self.dir,
            '    logfile: "%s/nsd.log"' % self.dir,
            "    server-count: 1",
            "    verbosity: 0",
            "remote-control:",
            "    control-enable: no",
        ]
        for name, path in self.zones:
            conf += ["zone:", '    name: "%s"' % name.rstrip("."),
                     '    zonefile: "%s"' % os.path.abspath(path)]
        path = os.path.join(self.dir, "nsd.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        return path

    def start(self):
        for name, path in self.zones:
            r = subprocess.run([CHECKZONE_BIN, name.rstrip(".") or ".", path],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("nsd-checkzone %s %s: %s" % (name, path, r.stderr.strip()))
        self.dir = tempfile.mkdtemp(prefix="authscan-nsd-")
        last_err = ""
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = free_port()
            conf = self._write_conf(port)
            self.proc = subprocess.Popen([NSD_BIN, "-d", "-c", conf],
                                         stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if answers(port, self.zones[0][0]):
                    self.port = port
                    return self
                time.sleep(0.05)
            last_err = self._kill()
        self._cleanup_dir()
        raise RuntimeError("nsd did not start: %s" % last_err)

    def _kill(self):
        err = ""
        if self.proc is None:
            return err
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            err = self.proc.stderr.read().decode(errors="replace").strip()
            self.proc.stderr.close()
        log = os.path.join(self.dir or "", "nsd.log")
        if self.dir and os.path.exists(log):
            with open(log, errors="replace") as f:
                err = (err + " " + f.read().strip()).strip()
        self.proc = None
        return err

    def _cleanup_dir(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def stop(self):
        self._kill()
        self._cleanup_dir()
        self.port = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def main(argv):
    zones = []
    for arg in argv:
        name, sep, path = arg.partition("=")
        if not sep:
            print("usage: nsd.py ZONE=FILE...", file=sys.stderr)
            return 2
        zones.append((name, path))
    server = NSD(zones)
    try:
        server.start()
    except Exception as e:  # report to the C test through stderr
        print("nsd.py: %s" % e, file=sys.stderr)
        return 1
    try:
        print(server.port, flush=True)
        sys.stdin.read()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    sys.exit(main(sys.argv[1:]))
