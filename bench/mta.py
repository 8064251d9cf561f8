"""bench/mta.py - the "mta" step of bench.py: CPU per message over the
three protocols, in one daemon and one run.

The same corpus goes to /checkv2 (envelope in HTTP headers), to the milter
socket and to the spamd socket, each sent the way its clients send it:
  http        /checkv2 on a kept connection (rspamd's proxy, keep-alive)
  http-conn   a connection per message (rspamc, Exim's spam= condition)
  milter      Postfix's framing (seen on the wire with Postfix 3.7): the
              steps that wait for no reply are buffered and go out as two
              writes, the envelope (connect, HELO, MAIL, RCPT, DATA and
              their macros) and the content (header fields, end of header,
              body, end of message), Nagle on; several messages per SMTP
              session on one connection
  milter-conn the same, one message per SMTP session: Postfix opens a milter
              connection per session (an MX sees one message per session)
  milter-cmd  a write per command with TCP_NODELAY, one segment each: the
              most segments a client can send (kept connection)
  spamd       PROCESS, a connection per message as spamc does; the envelope
              as a Return-Path and a Received field naming the client, with
              spamd.trusted_networks covering the bench's own relay.
A mode is compared with /checkv2 sent the same way: kept connections with
http, a connection per message with http-conn.  Each protocol runs closed-loop at concurrency c for
`duration` seconds, in slices that take turns with the other protocols;
the daemon's CPU (master + workers, from /proc) is divided by the
messages answered.  The client is Python (threads): it costs
more CPU than wrk, but it is not counted, and the comparison is between
protocols under the same client.
"""
import http.client
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
from milter_client import MilterClient  # noqa: E402


def split_message(raw):
    """[(name, value)], body: value as the MTA sends it (after the colon,
    folding kept, HDR_LEADSPC)."""
    sep = raw.find(b"\r\n\r\n")
    eol = b"\r\n"
    if sep < 0:
        sep = raw.find(b"\n\n")
        eol = b"\n"
    head, body = (raw, b"") if sep < 0 else (raw[:sep], raw[sep + 2 * len(eol):])
    fields = []
    for line in head.split(eol):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b"\n" + line
        elif b":" in line:
            n, _, v = line.partition(b":")
            fields.append([n, v])
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in fields], body


class Load:
    def __init__(self, rows, corpus):
        self.items = []
        for r in rows:
            raw = open(os.path.join(corpus, "msgs", r["file"]), "rb").read()
            fields, body = split_message(raw)
            spamd_msg = (("Return-Path: <%s>\r\nReceived: from %s (%s [%s])\r\n\tby bench.test "
                          "with ESMTP id B1\r\n" % (r["mail_from"], r["helo"], r["hostname"], r["ip"]))
                         .encode() + raw)
            self.items.append((r, raw, fields, body, spamd_msg))
        self.lock = threading.Lock()

    def one(self, kind, port, st, item):
        """Sends one message over kind; st holds the thread's kept
        connections.  Returns True when it got a well-formed answer."""
        r, raw, fields, body, smsg = item
        try:
            if kind in ("http", "http-conn"):
                if st.get("hc") is None:
                    st["hc"] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                h = {"IP": r["ip"], "Helo": r["helo"], "From": r["mail_from"],
                     "Rcpt": r["rcpt"], "Queue-Id": r["queue_id"]}
                if kind == "http-conn":
                    h["Connection"] = "close"
                st["hc"].request("POST", "/checkv2", body=raw, headers=h)
                resp = st["hc"].getresponse()
                resp.read()
                if kind == "http-conn":
                    self.close(st)
                return resp.status == 200
            if kind.startswith("milter"):
                if st.get("mc") is None:
                    st["mc"] = MilterClient(("127.0.0.1", port), postfix=kind != "milter-cmd")
                    st["mc"].negotiate()
                out = st["mc"].message("<%s>" % r["mail_from"], ["<%s>" % r["rcpt"]], fields, body,
                                       ip=r["ip"], helo=r["helo"], hostname=r["hostname"] or "unknown",
                                       qid=r["queue_id"], raw_values=True)
                if kind == "milter-conn":
                    st["mc"].send(b"Q")
                    st["mc"].flush()
                    self.close(st)
                return out[-1] is not None and out[-1][0] in (b"a", b"y", b"t", b"d")
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            try:
                s.sendall(b"PROCESS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(smsg) + smsg)
                s.shutdown(socket.SHUT_WR)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            finally:
                s.close()
            return data.startswith(b"SPAMD/1.1 0 EX_OK")
        except (OSError, http.client.HTTPException, AssertionError, TypeError):
            self.close(st)
            return False

    @staticmethod
    def close(st):
        for k in ("mc", "hc"):
            if st.get(k) is not None:
                st[k].close()
            st[k] = None

    def run(self, kind, port, conc, duration=None, count=None):
        """Closed loop at concurrency conc for duration seconds, or until
        count messages were sent in all.  Returns (answered, errors, secs)."""
        stop = time.monotonic() + duration if duration is not None else None
        counts = [0] * conc
        errors = [0] * conc
        quota = [count // conc + (1 if k < count % conc else 0) for k in range(conc)] if count else None

        def worker(k):
            i = k
            st = {}
            while (stop is None or time.monotonic() < stop) and \
                    (quota is None or counts[k] + errors[k] < quota[k]):
                item = self.items[i % len(self.items)]
                i += conc
                if self.one(kind, port, st, item):
                    counts[k] += 1
                else:
                    errors[k] += 1
            self.close(st)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts), sum(errors), time.monotonic() - t0


def run_mta(Daemon, cpu_s, wait_quiet, authscand, dns, rows, corpus, work, duration, levels=(8, 64),
            rounds=4):
    """CPU per message over each protocol at each concurrency.  The
    protocols take turns in `rounds` slices of duration/rounds seconds
    each, and each one's CPU and messages are summed over its slices: a
    burst of load from elsewhere on a shared machine then lands on all
    three rather than on whichever ran at that moment."""
    milter_port, spamd_port = free_port(), free_port()
    cfg = os.path.join(work, "mta-bench.conf")
    with open(cfg, "w") as f:
        f.write("spamd.trusted_networks = 127.0.0.0/8\n")
    d = Daemon(authscand, dns, 2, os.path.join(work, "authscand-mta.log"),
               extra=["-c", cfg, "-l", "milter@127.0.0.1:%d" % milter_port,
                      "-l", "spamd@127.0.0.1:%d" % spamd_port]).start()
    load = Load(rows, corpus)
    kinds = (("http", d.port), ("http-conn", d.port), ("milter", milter_port),
             ("milter-conn", milter_port), ("milter-cmd", milter_port), ("spamd", spamd_port))
    out = []
    try:
        for conc in levels:
            acc = {k: {"messages": 0, "errors": 0, "secs": 0.0, "cpu": 0.0} for k, _ in kinds}
            for kind, port in kinds:
                load.run(kind, port, conc, 1)          # warm-up
            wait_quiet()
            pids = d.pids
            for _ in range(rounds):
                for kind, port in kinds:
                    c0 = cpu_s(pids)
                    n, errors, secs = load.run(kind, port, conc, duration / rounds)
                    c1 = cpu_s(pids)
                    a = acc[kind]
                    a["messages"] += n
                    a["errors"] += errors
                    a["secs"] += secs
                    a["cpu"] += c1 - c0
            for kind, _ in kinds:
                a = acc[kind]
                out.append({"proto": kind, "conc": conc, "messages": a["messages"], "errors": a["errors"],
                            "msgs_per_s": a["messages"] / a["secs"] if a["secs"] else 0,
                            "cpu_ms_per_msg": 1000 * a["cpu"] / max(1, a["messages"])})
    finally:
        d.stop()
    for x in out:
        for key, base_kind in (("vs_http", "http"), ("vs_same", SAME_AS[x["proto"]])):
            base = [y for y in out if y["conc"] == x["conc"] and y["proto"] == base_kind][0]
            x[key] = x["cpu_ms_per_msg"] / base["cpu_ms_per_msg"] if base["cpu_ms_per_msg"] else 0
    return out


# /checkv2 sent the same way: kept connection, or one per message
SAME_AS = {"http": "http", "http-conn": "http-conn", "milter": "http", "milter-conn": "http-conn",
           "milter-cmd": "http", "spamd": "http-conn"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def report_lines(rows):
    lines = ["## CPU per message by protocol (one daemon, 2 workers, same run)", "",
             "Closed loop, Python client threads (not counted); the modes take turns in 4",
             "slices per level, summed.  http: kept connection; http-conn: a connection per",
             "message; milter: Postfix's framing (two writes per message, Nagle on), kept",
             "connection; milter-conn: the same, a connection per message (Postfix: one per",
             "SMTP session); milter-cmd: a write per command, TCP_NODELAY; spamd: PROCESS, a",
             "connection per message.  \"vs same\": against /checkv2 sent the same way.", "",
             "| mode | c | messages | msgs/s | errors | CPU ms/msg | vs http | vs same |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for x in rows:
        lines.append("| %s | %d | %d | %.0f | %d | %.3f | %.2fx | %.2fx (%s) |" %
                     (x["proto"], x["conc"], x["messages"], x["msgs_per_s"], x["errors"],
                      x["cpu_ms_per_msg"], x["vs_http"], x["vs_same"], SAME_AS[x["proto"]]))
    return lines
