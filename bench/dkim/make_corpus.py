#!/usr/bin/python3
"""make_corpus.py OUTDIR - a representative DKIM benchmark corpus.

Writes into OUTDIR:
  rsa.eml      ~6 KB message, one rsa-sha256 signature (2048-bit key)
  ed25519.eml  the same message signed with ed25519-sha256
  dual.eml     both signatures
  unsigned.eml the same message unsigned (baseline)
  bench.zone   the two key records (offline DNS for `authscan check --dns-zone`)
Keys are made with dkimpy's dknewkey; signing uses dkimpy (python3-dkim),
c=relaxed/relaxed, the usual header set.  Run with /usr/bin/python3.
"""
import os
import subprocess
import sys

import dkim

out = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out, exist_ok=True)


def newkey(name, ktype):
    path = os.path.join(out, name)
    if not os.path.exists(path + ".key"):
        # dknewkey makes 2048-bit RSA keys (its default, not an option)
        subprocess.run(["/usr/bin/dknewkey", "--ktype", ktype, path],
                       check=True, capture_output=True)
    with open(path + ".key", "rb") as f:
        key = f.read()
    with open(path + ".dns") as f:
        dns = f.read().strip()
    return key, dns


rsa_key, rsa_dns = newkey("rsa2048", "rsa")
ed_key, ed_dns = newkey("ed25519", "ed25519")

para = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
        "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
        "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.\r\n")
body = "".join("Paragraph %d.\r\n%s\r\n" % (i, para) for i in range(22))
headers = (
    "Received: from mail.example.net (mail.example.net [192.0.2.25])\r\n"
    "\tby mx.example.org with ESMTPS id 4Xy7Zk1abc\r\n"
    "\tfor <bob@example.org>; Sat, 22 Nov 2026 10:00:00 +0000\r\n"
    "From: Alice Example <alice@example.net>\r\n"
    "To: Bob <bob@example.org>\r\n"
    "Subject: Quarterly report and the minutes of the last meeting\r\n"
    "Date: Sat, 22 Nov 2026 10:00:00 +0000\r\n"
    "Message-ID: <20261122100000.12345@mail.example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n")
msg = (headers + "\r\n" + body).encode()
hdrs = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
        b"content-transfer-encoding"]


def sign(m, sel, key, alg):
    return dkim.sign(m, sel, b"example.net", key, canonicalize=(b"relaxed", b"relaxed"),
                     include_headers=hdrs, signature_algorithm=alg) + m


rsa_msg = sign(msg, b"rsa2048", rsa_key, b"rsa-sha256")
ed_msg = sign(msg, b"ed25519", ed_key, b"ed25519-sha256")
dual_msg = sign(rsa_msg, b"ed25519", ed_key, b"ed25519-sha256")
for name, data in (("rsa.eml", rsa_msg), ("ed25519.eml", ed_msg), ("dual.eml", dual_msg),
                   ("unsigned.eml", msg)):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def zone_line(owner, dns):
    # dknewkey writes 'v=DKIM1; k=rsa; h=sha256; p=...'; split into 255-byte strings
    rec = dns.split('"')[1] if '"' in dns else dns
    chunks = " ".join('"%s"' % rec[i:i + 255] for i in range(0, len(rec), 255))
    return "%s._domainkey.example.net. TXT %s\n" % (owner, chunks)


with open(os.path.join(out, "bench.zone"), "w") as f:
    f.write("$ORIGIN .\n$TTL 3600\n")
    f.write(zone_line("rsa2048", rsa_dns))
    f.write(zone_line("ed25519", ed_dns))
print("corpus in %s: rsa.eml %d bytes" % (out, len(rsa_msg)))
