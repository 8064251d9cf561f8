#!/usr/bin/python3
"""bench/arc/bench_arc.py - the cost of ARC verification per sealed message
against the DKIM cost of the same message (issue 20).

Builds a corpus of N messages, each DKIM-signed (RSA-2048) by its author
domain and then sealed once by a list (dkimpy arc_sign, RSA-2048: one AMS
and one AS to verify), a zone with the keys, and runs `authscan bench` on
it three times with the same warm key caches:
    all      every plugin
    no-arc   plugins.disable = arc
    no-dkim  plugins.disable = arc, dkim, dmarc (plugins.allow_no_auth)
ARC cost = all - no-arc, DKIM cost = no-arc - no-dkim (DMARC's share is
in the second difference too; it is small next to a signature check).
Prints one line per run and the two costs in CPU microseconds per
message.  Usage: bench/arc/bench_arc.py [BUILD_DIR] [N]
"""
import base64
import json
import os
import subprocess
import sys
import tempfile

import dkim

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500


def rsa(bits=2048):
    pem = subprocess.run(["openssl", "genrsa", str(bits)], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def txt(v):
    return " ".join('"%s"' % v[i:i + 255] for i in range(0, len(v), 255))


def main():
    work = tempfile.mkdtemp(prefix="arcbench")
    msgs = os.path.join(work, "msgs")
    os.makedirs(msgs)
    author, lst = rsa(), rsa()
    with open(os.path.join(work, "zone"), "w") as f:
        f.write("$ORIGIN .\n$TTL 300\n")
        f.write("sel._domainkey.author.example. TXT %s\n" % txt(author[1]))
        f.write("arc._domainkey.list.example. TXT %s\n" % txt(lst[1]))
        f.write("_dmarc.author.example. TXT \"v=DMARC1; p=none\"\n")
        f.write("list.example. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n")
    lines = []
    for i in range(N):
        body = ("Hello %d,\r\n" % i + "some list traffic line\r\n" * 40).encode()
        m = (b"From: A <a@author.example>\r\nTo: l@list.example\r\nSubject: msg %d\r\n"
             b"Date: Thu, 14 Jan 2015 15:00:01 -0800\r\nMessage-ID: <%d@author.example>\r\n\r\n"
             % (i, i)) + body
        m = dkim.sign(m, b"sel", b"author.example", author[0],
                      include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + m
        m = b"Authentication-Results: list.example; dkim=pass header.d=author.example\r\n" + m
        m = b"".join(dkim.arc_sign(m, b"arc", b"list.example", lst[0], b"list.example",
                                   include_headers=[b"from", b"to", b"subject", b"date"])) + m
        fn = "m%05d.eml" % i
        with open(os.path.join(msgs, fn), "wb") as f:
            f.write(m)
        lines.append("\t".join([fn, "192.0.2.7", "list.example", "mx.list.example",
                                "bounce@list.example", "l@list.example", "Q%d" % i]))
    with open(os.path.join(work, "manifest.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    runs = {"all": [], "no-arc": ["-s", "plugins.disable=arc"],
            "no-dkim": ["-s", "plugins.disable=arc,dkim,dmarc", "-s", "plugins.allow_no_auth=yes"]}
    cpu = {}
    for name, extra in runs.items():
        cmd = [os.path.join(BUILD, "bin", "authscan"), "bench", "--dns-zone",
               os.path.join(work, "zone"), "--warmup", "1", "--repeat", "5",
               "--log-level", "warning"] + extra + [os.path.join(work, "manifest.tsv")]
        p = subprocess.run(cmd, capture_output=True, check=True)
        r = json.loads(p.stdout.decode().strip().splitlines()[-1])
        cpu[name] = r["cpu_us_per_msg"]
        print("%-8s %s" % (name, json.dumps(r)))
    print("ARC verification (1 AMS + 1 AS, RSA-2048): %.1f us CPU per message" %
          (cpu["all"] - cpu["no-arc"]))
    print("DKIM (1 signature, RSA-2048) + DMARC:       %.1f us CPU per message" %
          (cpu["no-arc"] - cpu["no-dkim"]))


if __name__ == "__main__":
    main()
