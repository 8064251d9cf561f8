#!/usr/bin/python3
"""End to end: a real Postfix (3.7, Debian's) with authscand as its
smtpd_milters, and swaks as the sending client, all on 127.0.0.1.

The test starts its own Postfix instance: `postfix -c DIR start` with a
main.cf and master.cf of its own (smtpd on a free port, no chroot, its own
queue and data directories and log file under a temporary directory);
nothing of the system's Postfix (/etc/postfix/main.cf, /var/spool/postfix)
is read or touched.  Postfix's master must start as root (it drops to
mail_owner = postfix itself), so this test runs as root, as CI does; as
another user it reports itself skipped.  Mail for receiver.test is relayed
to a small SMTP sink in this process, which keeps what it receives.

  spoof of a p=reject domain     refused at end of DATA: 550 5.7.1 Rejected
                                 per DMARC policy of reject.example
  DMARC pass                     delivered to the sink, with our
                                 Authentication-Results (authserv-id: the
                                 MTA's myhostname, from the j macro) and
                                 our ARC set (arc.sign_domain is set), which
                                 dkimpy's arc_verify accepts
  spoof of a p=quarantine domain accepted into Postfix's hold queue
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import dkim_util  # noqa: E402

T = harness.Tests("milter_postfix")
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
MYHOSTNAME = "mx.receiver.test"

ZONE = """$ORIGIN .
$TTL 300
reject.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.reject.example. TXT "v=DMARC1; p=reject"
pass.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.pass.example. TXT "v=DMARC1; p=reject"
quar.example. TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.quar.example. TXT "v=DMARC1; p=quarantine"
spoofer.test. TXT "v=spf1 ip4:203.0.113.9 -all"
"""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = {host}
mydomain = receiver.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = receiver.test
transport_maps = inline:{{receiver.test=smtp:[127.0.0.1]:{sink}}}
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.1
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_milters = inet:127.0.0.1:{milter}
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
"""


class Sink(socketserver.ThreadingTCPServer):
    """A minimal SMTP server: accepts everything, keeps each message."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.messages = []
        super().__init__(("127.0.0.1", 0), SinkHandler)


class SinkHandler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sink.test ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                self.wfile.write(b"250-sink.test\r\n250 8BITMIME\r\n")
            elif cmd.startswith(b"DATA"):
                self.reply("354 go")
                data = b""
                while True:
                    l = self.rfile.readline()
                    if not l or l in (b".\r\n", b".\n"):
                        break
                    data += l[1:] if l.startswith(b"..") else l
                self.server.messages.append(data)
                self.reply("250 kept")
            elif cmd.startswith(b"QUIT"):
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


def swaks(port, mail_from, header_from, subject, client_ip):
    # swaks connects over loopback; XCLIENT (smtpd_authorized_xclient_hosts)
    # makes Postfix see, and pass to the milter, an Internet client address
    p = subprocess.run([SWAKS, "--server", "127.0.0.1:%d" % port, "--helo", "client.test",
                        "--xclient-addr", client_ip, "--xclient-name", "client.test",
                        "--from", mail_from, "--to", "rcpt@receiver.test",
                        "--header", "From: %s" % header_from, "--header", "Subject: %s" % subject,
                        "--body", "hello from swaks", "--timeout", "60"],
                       capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


class Postfix:
    def __init__(self, milter_port, sink_port):
        self.dir = tempfile.mkdtemp(prefix="authscan-postfix-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        os.makedirs(self.etc)
        for sub in ("spool", "data"):
            os.makedirs(os.path.join(self.dir, sub))
        shutil.chown(os.path.join(self.dir, "data"), "postfix", "postfix")
        self.port = harness.free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir, host=MYHOSTNAME, sink=sink_port,
                                   milter=milter_port))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))

    def run(self, *args):
        return subprocess.run([POSTFIX, "-c", self.etc] + list(args), capture_output=True,
                              timeout=120)

    def start(self):
        p = self.run("start")
        if p.returncode != 0:
            raise RuntimeError("postfix start: %s" % (p.stdout + p.stderr).decode())
        harness.wait_for(self.listening, 30, what="postfix smtpd on %d" % self.port)

    def listening(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def stop(self):
        self.run("stop")
        harness.wait_for(lambda: self.run("status").returncode != 0, 30,
                         what="postfix master exit")

    def maillog(self):
        try:
            with open(os.path.join(self.dir, "maillog"), encoding="utf-8",
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def hold(self):
        out = []
        for root, _, files in os.walk(os.path.join(self.dir, "spool", "hold")):
            out += files
        return out

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def seal_key(tmp):
    """An RSA-2048 sealing key: (arc config text, its DNS record)."""
    import base64
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                          "rsa_keygen_bits:2048"], capture_output=True, check=True).stdout
    path = os.path.join(tmp, "seal.pem")
    with open(path, "wb") as f:
        f.write(pem)
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    rec = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    cfg = "[arc]\nsign_domain = receiver.test\nselector = seal\nkey = %s\n" % path
    return cfg, "seal._domainkey.receiver.test. TXT %s\n" % dkim_util.txt_rdata(rec), rec


def arc_cv(msg, rec):
    """dkimpy's verdict on the ARC chain of a delivered message."""
    try:
        import dkim
    except ImportError:
        return "dkimpy missing"

    def dnsfunc(name, timeout=5):
        return rec.encode() if name.decode().rstrip(".") == "seal._domainkey.receiver.test" else None
    cv, _, why = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    return (cv or b"none").decode().lower() + ("" if cv == b"pass" else " (%s)" % why)


def test_postfix(d, pf, sink, seal_rec):
    # a spoof of a p=reject domain: refused at the end of DATA
    rc, out = swaks(pf.port, "x@spoofer.test", "Boss <ceo@reject.example>", "spoof",
                    "203.0.113.9")
    T.check("spoof of p=reject: 550 5.7.1 Rejected per DMARC policy at end of DATA",
            "<** 550 5.7.1 Rejected per DMARC policy of reject.example" in out, out[-1500:])
    T.check("spoof: swaks reports the DATA failure (exit 26)", rc == 26, rc)

    # a pass: delivered with our Authentication-Results
    n0 = len(sink.messages)
    rc, out = swaks(pf.port, "alice@pass.example", "Alice <alice@pass.example>", "pass",
                    "192.0.2.10")
    T.check("DMARC pass: accepted (250 at end of DATA)", rc == 0, out[-1500:])
    try:
        harness.wait_for(lambda: len(sink.messages) > n0, 60, what="delivery to the sink")
    except TimeoutError:
        T.check("pass delivered", False, pf.maillog()[-3000:])
        return
    msg = sink.messages[-1].decode("utf-8", "replace")
    head = msg.split("\r\n\r\n", 1)[0]
    T.check("delivered with our Authentication-Results (authserv-id %s, dmarc=pass)" % MYHOSTNAME,
            "Authentication-Results: %s;" % MYHOSTNAME in head and "dmarc=pass" in head, head)
    T.check("delivered: spf=pass for MAIL FROM pass.example from 192.0.2.10 (XCLIENT)",
            "spf=pass smtp.mailfrom=pass.example" in head, head)
    T.check("delivered: no X-Spam header on a clean message", "X-Spam" not in head, head)
    T.check("delivered: our ARC set (i=1, d=receiver.test) in the header",
            "ARC-Seal: i=1;" in head and "ARC-Message-Signature: i=1;" in head and
            "ARC-Authentication-Results: i=1;" in head and "d=receiver.test" in head, head)
    T.eq("delivered: dkimpy verifies our ARC set", arc_cv(sink.messages[-1], seal_rec), "pass")

    # p=quarantine: held in Postfix's hold queue
    rc, out = swaks(pf.port, "x@spoofer.test", "q@quar.example", "quarantine", "203.0.113.9")
    T.check("p=quarantine: accepted by the MTA (250)", rc == 0, out[-1500:])
    harness.wait_for(lambda: pf.hold(), 30, what="a file in the hold queue")
    T.eq("p=quarantine: one message in Postfix's hold queue", len(pf.hold()), 1)
    # postlogd writes the maillog after cleanup moved the file: wait for it
    try:
        harness.wait_for(lambda: "milter-hold" in pf.maillog(), 30, what="the milter-hold line")
    except TimeoutError:
        pass
    log = pf.maillog()
    T.check("maillog: milter-hold by authscand", "milter-hold" in log, log[-2000:])
    d.wait_log(r'action="quarantine"')


def main():
    if os.geteuid() != 0:
        print("skipped: Postfix's master must start as root (CI runs as root)")
        print("0 passed, 0 failed")
        return 0
    sink = Sink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    http_port, milter_port = harness.free_port(), harness.free_port()
    keydir = tempfile.mkdtemp(prefix="authscan-seal-")
    seal_cfg, seal_zone, seal_rec = seal_key(keydir)
    with harness.Daemon(workers=1, zone=ZONE + seal_zone, config=seal_cfg,
                        listen=["127.0.0.1:%d" % http_port,
                                "milter@127.0.0.1:%d" % milter_port]) as d:
        pf = Postfix(milter_port, sink.server_address[1])
        try:
            pf.start()
            T.run(test_postfix, d, pf, sink, seal_rec)
        finally:
            pf.stop()
            if T.failed:
                print(pf.maillog()[-4000:])
            pf.cleanup()
    shutil.rmtree(keydir, ignore_errors=True)
    sink.shutdown()
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
