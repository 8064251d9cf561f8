"""milter_client.py - the MTA side of the milter protocol (version 6) on a
raw socket, byte for byte, for tests that need what miltertest cannot do:
exact packets, malformed ones, chosen negotiation, silence.

    c = MilterClient(("127.0.0.1", port))
    c.negotiate()                              # offers everything
    replies = c.message(frm, rcpts, headers, body, ip="192.0.2.10")
    # replies: list of (code, data) sent at end of message, ending in 'a',
    # 'y', 't', 'r' or 'd'
"""
import socket
import struct

# actions and protocol steps an MTA offers (Postfix 3.7 offers these)
ALL_ACTIONS = 0x1FF
ALL_STEPS = 0x1FFFFF
HDR_LEADSPC = 0x100000
NR_STEPS = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80 | 0x80000

FINAL = b"aydrt"


def pkt(code, data=b""):
    return struct.pack(">I", len(data) + 1) + code + data


def strings(*items):
    return b"".join(s.encode() + b"\0" for s in items)


class MilterClient:
    """postfix=True sends as Postfix's milter client does (seen on the wire
    with Postfix 3.7): commands that wait for no reply stay in a buffer
    until a reply is wanted or flush() is called, and Nagle stays on.
    Otherwise every command is its own write with TCP_NODELAY (a
    Sendmail-like worst case: one TCP segment per command)."""

    def __init__(self, addr, timeout=30.0, postfix=False):
        fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.postfix = postfix
        self.pending = []
        if fam == socket.AF_INET and not postfix:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect(addr)
        self.buf = b""
        self.actions = self.steps = 0

    def close(self):
        self.sock.close()

    def send(self, code, data=b""):
        if self.postfix:
            self.pending.append(pkt(code, data))
        else:
            self.sock.sendall(pkt(code, data))

    def flush(self):
        if self.pending:
            self.sock.sendall(b"".join(self.pending))
            self.pending = []

    def read(self):
        """(code, data) of the next packet, or None at EOF."""
        self.flush()
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        n = struct.unpack(">I", self.buf[:4])[0]
        p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return p[:1], p[1:]

    def at_eof(self):
        try:
            return self.read() is None
        except (ConnectionResetError, socket.timeout):
            return False

    def negotiate(self, version=6, actions=ALL_ACTIONS, steps=ALL_STEPS):
        self.send(b"O", struct.pack(">III", version, actions, steps))
        code, data = self.read()
        assert code == b"O", (code, data)
        v, self.actions, self.steps = struct.unpack(">III", data[:12])
        return v, self.actions, self.steps

    def step(self, code, data, nr_flag):
        """Sends one command; reads its CONTINUE unless it was negotiated
        as no-reply.  Returns the reply (or None)."""
        self.send(code, data)
        if self.steps & nr_flag:
            return None
        return self.read()

    def connect_info(self, hostname="client.test", ip="192.0.2.10", port=25000):
        fam = b"6" if ":" in ip else b"4"
        return self.step(b"C", hostname.encode() + b"\0" + fam + struct.pack(">H", port)
                         + ip.encode() + b"\0", 0x1000)

    def macro(self, for_cmd, **kv):
        self.send(b"D", for_cmd + strings(*[x for k, v in kv.items() for x in (k, v)]))

    def message(self, frm, rcpts, headers, body, ip="192.0.2.10", helo="client.test",
                hostname="client.test", qid="4ABC123", macros=None, connect=True,
                raw_values=False):
        """A whole SMTP transaction; returns the end-of-message replies.
        raw_values: header values are sent as given (they already hold
        the blanks after the colon), else one space is put before each
        when HDR_LEADSPC was negotiated."""
        if connect:
            if macros:
                self.macro(b"C", **macros)
            self.connect_info(hostname, ip)
            self.step(b"H", strings(helo), 0x2000)
        self.step(b"M", strings(frm), 0x4000)
        for r in rcpts:
            self.step(b"R", strings(r), 0x8000)
        self.macro(b"T", i=qid)
        self.step(b"T", b"", 0x10000)
        # Postfix: smtpd hands the connection to its cleanup server here,
        # flushing the envelope; cleanup writes the content
        self.flush()
        lead = " " if self.steps & HDR_LEADSPC and not raw_values else ""
        for name, value in headers:
            self.step(b"L", name.encode() + b"\0" + (lead + value).encode() + b"\0", 0x80)
        self.step(b"N", b"", 0x40000)
        if body:
            self.step(b"B", body, 0x80000)
        self.send(b"E")
        out = []
        while True:
            p = self.read()
            if p is None:
                out.append(None)
                return out
            out.append(p)
            if p[0] in (b"a", b"y", b"d", b"r", b"t"):
                return out
