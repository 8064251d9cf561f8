#!/usr/bin/python3
"""gen_corpus.py - seeded, reproducible benchmark corpus for authscan.

    /usr/bin/python3 bench/gen_corpus.py [--out DIR] [-n 2000] [--seed 42]

Writes, under DIR (default bench/work):

  keys/              DKIM private keys (RSA-2048 PEM, Ed25519 base64 seeds)
  zone/root.zone     one RFC 1035 master file for the root zone "." holding every
                     record: served by nsd, and read by `--dns-zone` (offline)
  corpus/msgs/NNNNN.eml
  corpus/manifest.tsv  one line per message, tab-separated:
                     file ip helo hostname mail_from rcpt queue_id scenario
                     exp_spf exp_dkim exp_dmarc exp_policy
                     (exp_dkim is "domain:r,domain:r" with r in + - ~, or "none")
  corpus/expected.jsonl  the same and the details (author domain, alignment...)
  corpus/summary.json    counts per scenario and per expected outcome, sizes

Everything is derived from --seed: the RSA primes and Ed25519 seeds are drawn
from the seeded generator, Date headers start at a fixed epoch and the DKIM
t= tag is pinned, so the same seed gives byte-identical files.

The expected outcomes are computed from the generated DNS data, not copied
from the scenario label:
  SPF    an RFC 7208 check_host() over the zone (ip4, ip6, a, mx, include,
         redirect, all; 10-lookup limit; two records = permerror);
  DKIM   every signature verified with dkimpy against the zone
         (pass, fail, or permerror when the key is missing or unusable);
  DMARC  RFC 7489 / RFC 9989 without pct sampling: record at the author
         domain, else at its organizational domain (p, or sp there);
         relaxed or strict alignment; result pass / fail / none.

Needs Debian's /usr/bin/python3 with python3-dkim, python3-cryptography and
python3-nacl (dkimpy's Ed25519).
"""
import argparse
import base64
import hashlib
import ipaddress
import json
import math
import os
import random
import sys
import time
import types

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

FIXED_T = 1700000000            # pinned DKIM t= and the corpus clock (2023-11-14)
SUFFIXES = ["com", "co.uk", "org", "net", "com.au", "de"]
PUBLIC_SUFFIXES = {"com", "org", "net", "de", "uk", "co.uk", "au", "com.au", "example"}
WORDS = ("account invoice order shipping update meeting report weekly newsletter offer "
         "delivery payment receipt reminder project review team schedule confirm details "
         "please thanks regards customer service support ticket status change security "
         "notice password login device access policy terms privacy event webinar agenda "
         "quarter budget forecast draft final version attached document summary market "
         "product release feature price discount member welcome subscription renewal").split()
FIRST = "Anna Ben Clara David Emma Felix Greta Hugo Ines Jonas Kira Lars Mia Noah Olga Paul".split()
LAST = "Adams Becker Chen Dubois Evans Fischer Garcia Huber Ivanova Jensen Klein Lopez".split()
RCPT_DOMAIN = "inbound-bench.example"
OUR_MX = "mx1.inbound-bench.example"


# ----------------------------------------------------------------- keys
_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % q for q in range(2, int(p ** 0.5) + 1))]


def _is_probable_prime(n, rng):
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(24):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits, rng, e):
    while True:
        c = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if math.gcd(e, c - 1) == 1 and _is_probable_prime(c, rng):
            return c


def rsa_key_from_rng(rng, bits=2048):
    """An RSA private key whose primes come from rng (reproducible)."""
    e = 65537
    while True:
        p, q = _prime(bits // 2, rng, e), _prime(bits // 2, rng, e)
        if p != q and (p * q).bit_length() == bits:
            break
    if p < q:
        p, q = q, p
    d = pow(e, -1, (p - 1) * (q - 1))
    nums = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                 rsa.RSAPublicNumbers(e, p * q))
    return nums.private_key()


class Key:
    def __init__(self, domain, selector, alg, rng, keydir):
        self.domain, self.selector, self.alg = domain, selector, alg
        base = os.path.join(keydir, "%s._domainkey.%s" % (selector, domain))
        if alg == "rsa":
            k = rsa_key_from_rng(rng)
            self.priv = k.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
            pub = k.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
            self.txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
            path = base + ".pem"
        else:
            seed = rng.getrandbits(256).to_bytes(32, "big")
            k = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            pub = k.public_key().public_bytes(serialization.Encoding.Raw,
                                              serialization.PublicFormat.Raw)
            self.priv = base64.b64encode(seed)
            self.txt = "v=DKIM1; k=ed25519; p=" + base64.b64encode(pub).decode()
            path = base + ".ed25519"
        with open(path, "wb") as f:
            f.write(self.priv)

    @property
    def algname(self):
        return b"rsa-sha256" if self.alg == "rsa" else b"ed25519-sha256"


# ----------------------------------------------------------------- zone
class Zone:
    def __init__(self):
        self.rr = {}          # name -> type -> [rdata]

    def add(self, name, rtype, data):
        self.rr.setdefault(name.lower().rstrip("."), {}).setdefault(rtype, []).append(data)

    def get(self, name, rtype):
        return self.rr.get(name.lower().rstrip("."), {}).get(rtype, [])

    def exists(self, name):
        name = name.lower().rstrip(".")
        return name in self.rr or any(n.endswith("." + name) for n in self.rr)

    def txt(self, name):
        return ["".join(strings) for strings in self.get(name, "TXT")]

    @staticmethod
    def _txt_rdata(strings):
        out = []
        for s in strings:
            out.append('"%s"' % s.replace("\\", "\\\\").replace('"', '\\"'))
        return " ".join(out)

    def write(self, path):
        with open(path, "w") as f:
            f.write("; authscan benchmark zone (bench/gen_corpus.py): every record in one root zone\n")
            f.write("$ORIGIN .\n$TTL 3600\n")
            f.write(". 3600 IN SOA ns.bench-root.example. hostmaster.bench-root.example. "
                    "( 1 3600 600 86400 300 )\n")
            f.write(". 3600 IN NS ns.bench-root.example.\n")
            f.write("ns.bench-root.example. 3600 IN A 127.0.0.1\n")
            for name in sorted(self.rr):
                for rtype in sorted(self.rr[name]):
                    for d in self.rr[name][rtype]:
                        if rtype == "TXT":
                            d = self._txt_rdata(d)
                        f.write("%s. 3600 IN %s %s\n" % (name, rtype, d))

    def add_txt(self, name, text):
        self.add(name, "TXT", [text[i:i + 250] for i in range(0, len(text), 250)] or [""])


def org_domain(d):
    labels = d.lower().rstrip(".").split(".")
    for i in range(len(labels)):
        if ".".join(labels[i + 1:]) in PUBLIC_SUFFIXES or i == len(labels) - 1:
            return ".".join(labels[i:])
    return d


def reverse_name(ip):
    return ipaddress.ip_address(ip).reverse_pointer


# ----------------------------------------------------------------- SPF (RFC 7208)
class SPFPerm(Exception):
    pass


class SPFTemp(Exception):
    pass


def spf_records(zone, domain):
    return [t for t in zone.txt(domain) if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def spf_check(zone, ip, domain):
    """RFC 7208 check_host(): pass fail softfail neutral none permerror temperror."""
    state = {"lookups": 0, "void": 0}
    try:
        return _check_host(zone, ipaddress.ip_address(ip), domain.lower(), state)
    except SPFPerm:
        return "permerror"
    except SPFTemp:
        return "temperror"


def _count(state):
    state["lookups"] += 1
    if state["lookups"] > 10:
        raise SPFPerm("too many lookups")


def _addrs(zone, name, ip):
    rtype = "A" if ip.version == 4 else "AAAA"
    return [ipaddress.ip_address(a) for a in zone.get(name, rtype)]


def _check_host(zone, ip, domain, state):
    recs = spf_records(zone, domain)
    if not recs:
        return "none"
    if len(recs) > 1:
        raise SPFPerm("multiple records")
    terms = recs[0].split()[1:]
    redirect = None
    quals = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
    for term in terms:
        low = term.lower()
        if low.startswith("redirect="):
            redirect = term.split("=", 1)[1]
            continue
        if "=" in low.split(":")[0]:
            continue                       # other modifier (exp=)
        q = "+"
        if term[0] in quals:
            q, term = term[0], term[1:]
        mech, _, arg = term.partition(":")
        mech = mech.lower()
        match = False
        if mech == "all":
            match = True
        elif mech == "ip4":
            match = ip.version == 4 and ip in ipaddress.ip_network(arg, strict=False)
        elif mech == "ip6":
            match = ip.version == 6 and ip in ipaddress.ip_network(arg, strict=False)
        elif mech == "a":
            _count(state)
            match = ip in _addrs(zone, arg or domain, ip)
        elif mech == "mx":
            _count(state)
            hosts = [m.split()[1].rstrip(".") for m in zone.get(arg or domain, "MX")]
            if len(hosts) > 10:
                raise SPFPerm("too many MX")
            match = any(ip in _addrs(zone, h, ip) for h in hosts)
        elif mech == "include":
            _count(state)
            r = _check_host(zone, ip, arg.lower(), state)
            if r == "none":
                raise SPFPerm("include of a domain without SPF")
            match = r == "pass"
        else:
            raise SPFPerm("unknown mechanism " + mech)
        if match:
            return quals[q]
    if redirect:
        _count(state)
        r = _check_host(zone, ip, redirect.lower(), state)
        if r == "none":
            raise SPFPerm("redirect to a domain without SPF")
        return r
    return "neutral"


# ----------------------------------------------------------------- DMARC
def dmarc_record(zone, domain):
    recs = [t for t in zone.txt("_dmarc." + domain) if t.startswith("v=DMARC1")]
    if len(recs) != 1:
        return None
    tags = {}
    for part in recs[0].split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            tags[k.strip().lower()] = v.strip()
    if tags.get("p") not in ("none", "quarantine", "reject"):
        return None
    return tags


def dmarc_eval(zone, author, spf_result, spf_domain, dkim_results):
    """-> (result, policy, details)."""
    if not author:
        return "none", "-", {}
    org = org_domain(author)
    rec, at = dmarc_record(zone, author), author
    policy_tag = "p"
    if rec is None and org != author:
        rec, at = dmarc_record(zone, org), org
        policy_tag = "sp" if rec and rec.get("sp") in ("none", "quarantine", "reject") else "p"
    if rec is None:
        return "none", "-", {"org": org}
    policy = rec[policy_tag]
    aspf_s = rec.get("aspf", "r") == "s"
    adkim_s = rec.get("adkim", "r") == "s"

    def aligned(d, strict):
        d = d.lower()
        return d == author if strict else org_domain(d) == org
    spf_al = spf_result == "pass" and spf_domain and aligned(spf_domain, aspf_s)
    dkim_al = any(r == "pass" and aligned(d, adkim_s) for d, r in dkim_results)
    res = "pass" if (spf_al or dkim_al) else "fail"
    return res, policy, {"org": org, "policy_domain": at, "policy_tag": policy_tag,
                         "spf_aligned": bool(spf_al), "dkim_aligned": bool(dkim_al),
                         "pct": int(rec.get("pct", "100"))}


# ----------------------------------------------------------------- the world
class World:
    def __init__(self, rng, keydir):
        self.rng = rng
        self.keydir = keydir
        self.zone = Zone()
        self.keys = {}              # domain -> [Key]
        self.orgs = []
        self.v4_blocks = ([("192.0.2.%d" % (i * 8)) for i in range(1, 31)] +
                          [("198.51.100.%d" % (i * 8)) for i in range(1, 31)])
        self.v4_next = 0

    def block4(self):
        b = self.v4_blocks[self.v4_next]
        self.v4_next += 1
        return ipaddress.ip_network(b + "/29")

    def host(self, name, v4=None, v6=None):
        if v4:
            self.zone.add(name, "A", str(v4))
            self.zone.add(reverse_name(v4), "PTR", name + ".")
        if v6:
            self.zone.add(name, "AAAA", str(v6))
            self.zone.add(reverse_name(v6), "PTR", name + ".")

    def new_key(self, domain, alg, selector=None):
        rng = self.rng
        if selector is None:
            selector = rng.choice(["s1", "k1", "mail", "dkim", "google", "selector1", "mx",
                                   "2023q3", "s2048", "default", "sig1", "mta"])
            if alg == "ed":
                selector = "ed-" + selector
        k = Key(domain, selector, alg, rng, self.keydir)
        self.zone.add_txt("%s._domainkey.%s" % (selector, domain), k.txt)
        self.keys.setdefault(domain, []).append(k)
        return k

    def dmarc(self, domain, p, extra=""):
        rua = "; rua=mailto:dmarc-reports@%s" % domain if self.rng.random() < 0.6 else ""
        self.zone.add_txt("_dmarc." + domain, "v=DMARC1; p=%s%s%s" % (p, extra, rua))

    def build(self, n_orgs=48):
        rng = self.rng
        z = self.zone
        # ESPs, a mailing list host, a forwarder, spammers
        self.esps = []
        for i, (name, v4net, v6net) in enumerate([
                ("esp-mailer-1.net", "203.0.113.16/28", "2001:db8:e5::/48"),
                ("esp-mailer-2.com", "203.0.113.32/28", "2001:db8:e6::/48")]):
            net4, net6 = ipaddress.ip_network(v4net), ipaddress.ip_network(v6net)
            esp = {"domain": name, "net4": net4, "net6": net6,
                   "ips4": [net4[j] for j in range(1, 5)], "ips6": [net6[j] for j in range(1, 3)],
                   "bounce": "bnc." + name}
            for j, ip in enumerate(esp["ips4"]):
                self.host("out%d.%s" % (j + 1, name), ip)
            for j, ip in enumerate(esp["ips6"]):
                self.host("out%d.%s" % (j + 1, name), None, ip)
            z.add_txt("_spf." + name, "v=spf1 ip4:%s ip6:%s -all" % (net4, net6))
            z.add_txt(name, "v=spf1 include:_spf.%s -all" % name)
            z.add_txt(esp["bounce"], "v=spf1 include:_spf.%s -all" % name)
            esp["key"] = self.new_key(name, "rsa", "esp%d" % (i + 1))
            self.dmarc(name, "none")
            self.esps.append(esp)
        lst = {"domain": "lists.bench-lists.org", "ip4": ipaddress.ip_address("203.0.113.60"),
               "ip6": ipaddress.ip_address("2001:db8:11::25")}
        self.host("mail.lists.bench-lists.org", lst["ip4"], lst["ip6"])
        z.add_txt(lst["domain"], "v=spf1 a:mail.lists.bench-lists.org -all")
        z.add("lists.bench-lists.org", "MX", "10 mail.lists.bench-lists.org.")
        lst["key"] = self.new_key(lst["domain"], "rsa", "list")
        self.dmarc("bench-lists.org", "none")
        self.list = lst
        fwd = {"domain": "fwd-bench.net", "ip4": ipaddress.ip_address("203.0.113.70"),
               "ip6": ipaddress.ip_address("2001:db8:f0::70")}
        self.host("relay.fwd-bench.net", fwd["ip4"], fwd["ip6"])
        z.add_txt(fwd["domain"], "v=spf1 a:relay.fwd-bench.net ~all")
        self.fwd = fwd
        self.spammers = []
        for i in range(5):
            name = "cheap-deals-%d.%s" % (i + 1, ["com", "net", "biz.example", "info.example", "com"][i])
            ip = ipaddress.ip_address("203.0.113.%d" % (200 + i))
            self.host("smtp." + name, ip)
            sp = {"domain": name, "ip4": ip}
            if i == 0:
                z.add_txt(name, "v=spf1 +all")
            elif i == 1:
                z.add_txt(name, "v=spf1 ip4:%s -all" % ip)
            elif i == 2:
                z.add_txt(name, "v=spf1 a:smtp.%s ?all" % name)
            if i in (1, 3):
                sp["key"] = self.new_key(name, "rsa", "s1")
            self.spammers.append(sp)
        self.attack4 = [ipaddress.ip_address("203.0.113.%d" % k) for k in range(210, 250)]
        self.attack6 = [ipaddress.ip_address("2001:db8:bad::%x" % k) for k in range(1, 64)]
        for ip in self.attack4[:20]:
            z.add(reverse_name(ip), "PTR", "dyn-%s.isp-bench.example." % str(ip).replace(".", "-"))

        words = ["shop", "news", "bank", "corp", "travel", "media", "health", "school"]
        spf_styles = (["ip"] * 30 + ["mx_a"] * 12 + ["chain"] * 15 + ["redirect"] * 10 +
                      ["esp"] * 15 + ["exclude"] * 6 + ["none"] * 8 + ["double"] * 4)
        dkim_modes = ["rsa"] * 56 + ["dual"] * 26 + ["ed"] * 4 + ["none"] * 14
        for i in range(n_orgs):
            dom = "%s%d-bench.%s" % (words[i % len(words)], i + 1, SUFFIXES[i % len(SUFFIXES)])
            net4 = self.block4()
            net6 = ipaddress.ip_network("2001:db8:%x::/48" % (0x100 + i))
            o = {"domain": dom, "net4": net4, "net6": net6,
                 "ips4": [net4[1], net4[2]], "ips6": [net6[1], net6[2]],
                 "spf": rng.choice(spf_styles), "all": rng.choice(["-all"] * 55 + ["~all"] * 35 + ["?all"] * 10),
                 "dkim": rng.choice(dkim_modes), "subs": [], "esp": rng.choice(self.esps)}
            o["excluded"] = net4[3]
            self.host("mx." + dom, net4[1], net6[1])
            self.host("mta1." + dom, net4[2], net6[2])
            self.host("mta2." + dom, net4[3])
            z.add(dom, "MX", "10 mx.%s." % dom)
            z.add(dom, "A", str(net4[5]))
            z.add_txt(dom, "site-verification=%s" % hashlib.sha1(dom.encode()).hexdigest())
            self._spf(o)
            # HELO names have their own SPF (null-sender bounces are checked on them)
            z.add_txt("mta1." + dom, "v=spf1 a -all")
            if o["dkim"] in ("rsa", "dual"):
                o["rsa"] = self.new_key(dom, "rsa")
            if o["dkim"] in ("dual", "ed"):
                o["ed"] = self.new_key(dom, "ed")
            r = rng.random()
            if r < 0.12:
                o["dmarc"] = None
            else:
                p = rng.choice(["none"] * 35 + ["quarantine"] * 30 + ["reject"] * 35)
                extra = ""
                if rng.random() < 0.25:
                    extra += "; sp=%s" % rng.choice(["none", "quarantine", "reject"])
                if rng.random() < 0.15:
                    extra += "; adkim=s"
                if rng.random() < 0.15:
                    extra += "; aspf=s"
                if rng.random() < 0.10:
                    extra += "; pct=%d" % rng.choice([10, 25, 50])
                if rng.random() < 0.3:
                    extra += "; fo=1; ruf=mailto:dmarc-forensic@%s" % dom
                o["dmarc"] = p
                self.dmarc(dom, p, extra)
            if rng.random() < 0.5:
                for sub in rng.sample(["news", "mail", "billing", "info"], rng.randint(1, 2)):
                    sd = "%s.%s" % (sub, dom)
                    s = {"domain": sd, "key": None}
                    z.add_txt(sd, "v=spf1 include:%s %s" % (dom, o["all"]) if o["spf"] not in ("none", "double")
                              else "v=spf1 ip4:%s -all" % net4)
                    if o["dkim"] != "none" and rng.random() < 0.4:
                        s["key"] = self.new_key(sd, "rsa")
                    if o["dmarc"] and rng.random() < 0.3:
                        self.dmarc(sd, rng.choice(["none", "quarantine", "reject"]))
                    o["subs"].append(s)
            # envelope domain for bulk mail
            o["bounces"] = "bounces." + dom
            z.add_txt(o["bounces"], "v=spf1 include:_spf.%s ~all" % o["esp"]["domain"])
            self.orgs.append(o)

    def _spf(self, o):
        z, dom, a = self.zone, o["domain"], o["all"]
        n4, n6 = o["net4"], o["net6"]
        s = o["spf"]
        if s == "ip":
            z.add_txt(dom, "v=spf1 ip4:%s ip6:%s %s" % (n4, n6, a))
        elif s == "mx_a":
            z.add_txt(dom, "v=spf1 mx a:mta1.%s %s" % (dom, a))
        elif s == "chain":
            z.add_txt(dom, "v=spf1 include:_spf.%s %s" % (dom, a))
            z.add_txt("_spf." + dom, "v=spf1 ip4:%s include:_spf6.%s -all" % (n4, dom))
            z.add_txt("_spf6." + dom, "v=spf1 ip6:%s -all" % n6)
        elif s == "redirect":
            z.add_txt(dom, "v=spf1 redirect=_spf.%s" % dom)
            z.add_txt("_spf." + dom, "v=spf1 ip4:%s ip6:%s %s" % (n4, n6, a))
        elif s == "esp":
            z.add_txt(dom, "v=spf1 ip4:%s ip6:%s include:_spf.%s %s" % (n4, n6, o["esp"]["domain"], a))
        elif s == "exclude":
            z.add_txt(dom, "v=spf1 -ip4:%s ip4:%s ip6:%s %s" % (o["excluded"], n4, n6, a))
        elif s == "double":
            z.add_txt(dom, "v=spf1 ip4:%s -all" % n4)
            z.add_txt(dom, "v=spf1 ip4:%s ip6:%s ~all" % (n4, n6))
        # "none": no SPF record at all


# ----------------------------------------------------------------- messages
def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def paragraph_text(rng, nbytes):
    out, size = [], 0
    while size < nbytes:
        line = words(rng, rng.randint(8, 13)).capitalize() + "."
        out.append(line)
        size += len(line) + 2
        if rng.random() < 0.2:
            out.append("")
    return out


def qp_encode(line):
    out, cur = [], ""
    for ch in line.encode("utf-8"):
        c = chr(ch) if (33 <= ch <= 126 and ch != 61) or ch == 32 else "=%02X" % ch
        if len(cur) + len(c) > 75:
            out.append(cur + "=")
            cur = ""
        cur += c
    if cur.endswith(" "):
        cur = cur[:-1] + "=20"
    out.append(cur)
    return out


def mime_body(rng, target):
    """(content-type header value, body lines) of about target bytes."""
    b_alt = "=_alt_%016x" % rng.getrandbits(64)
    text_size = max(300, int(target * 0.30))
    html_size = max(500, int(target * 0.45))
    utf8 = rng.random() < 0.3
    qp = rng.random() < 0.5
    tlines = paragraph_text(rng, text_size)
    if utf8:
        tlines.insert(0, "Grüße aus Zürich, café ouvert – 10 € Rabatt.")
    alt = ["This is a multi-part message in MIME format.", "", "--" + b_alt]
    cs = "utf-8" if utf8 else "us-ascii"
    if qp or utf8:
        alt += ["Content-Type: text/plain; charset=%s" % cs, "Content-Transfer-Encoding: quoted-printable", ""]
        for ln in tlines:
            alt += qp_encode(ln)
    else:
        alt += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit", ""] + tlines
    hl = ["<!DOCTYPE html>", "<html><head><meta charset=\"%s\"><title>%s</title></head>" % (cs, words(rng, 3)),
          "<body style=\"font-family: Arial, sans-serif; color: #333333;\">", "<table width=\"600\">"]
    for ln in paragraph_text(rng, html_size - 300):
        if ln:
            hl.append("<tr><td style=\"padding: 4px 12px;\"><p>%s <a href=\"https://example.net/t/%x\">%s</a></p></td></tr>"
                      % (ln, rng.getrandbits(40), rng.choice(WORDS)))
    hl += ["</table></body></html>"]
    alt += ["", "--" + b_alt, "Content-Type: text/html; charset=%s" % cs,
            "Content-Transfer-Encoding: quoted-printable", ""]
    for ln in hl:
        alt += qp_encode(ln)
    alt += ["", "--%s--" % b_alt, ""]
    ct = 'multipart/alternative; boundary="%s"' % b_alt
    rest = target - sum(len(x) + 2 for x in alt)
    if rest > 3000:
        b_mix = "=_mix_%016x" % rng.getrandbits(64)
        name, mt = rng.choice([("invoice.pdf", "application/pdf"), ("photo.png", "image/png"),
                               ("report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
                               ("archive.zip", "application/zip"), ("invite.ics", "text/calendar")])
        raw = rng.getrandbits(8 * int(rest * 0.74)).to_bytes(int(rest * 0.74), "big")
        enc = base64.b64encode(raw).decode()
        body = ["This is a multi-part message in MIME format.", "", "--" + b_mix, "Content-Type: " + ct, ""]
        body += alt + ["--" + b_mix, 'Content-Type: %s; name="%s"' % (mt, name),
                       "Content-Transfer-Encoding: base64",
                       'Content-Disposition: attachment; filename="%s"' % name, ""]
        body += [enc[i:i + 76] for i in range(0, len(enc), 76)]
        body += ["", "--%s--" % b_mix, ""]
        return 'multipart/mixed; boundary="%s"' % b_mix, body, b_mix
    return ct, alt, b_alt


class Msg:
    def __init__(self):
        self.env = {}
        self.headers = []     # (name, value) top to bottom
        self.ctype = None
        self.body = []
        self.boundary = None

    def bytes(self):
        out = []
        for n, v in self.headers:
            out.append("%s: %s" % (n, v))
        out.append("")
        data = "\r\n".join(out) + "\r\n" + "\r\n".join(self.body)
        if not data.endswith("\r\n"):
            data += "\r\n"
        return data.encode("utf-8")


def rfc2822_date(ts):
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))


class Generator:
    def __init__(self, world, rng):
        self.w, self.rng = world, rng
        self.clock = FIXED_T - 86400
        self.stale = {}

    def stale_key(self, domain):
        """A signing key whose selector is not (or no longer) in DNS."""
        if domain not in self.stale:
            self.stale[domain] = Key(domain, "old2019", "rsa", self.rng, self.w.keydir)
        return self.stale[domain]

    def pick_ip(self, ips4, ips6):
        return self.rng.choice(ips6) if (ips6 and self.rng.random() < 0.2) else self.rng.choice(ips4)

    def person(self):
        return "%s %s" % (self.rng.choice(FIRST), self.rng.choice(LAST))

    def base(self, i, author_addr, author_name, env_from, ip, helo, hostname):
        rng = self.rng
        m = Msg()
        self.clock += rng.randint(5, 60)
        qid = "%010X" % rng.getrandbits(40)
        rcpt = "%s.%s@%s" % (rng.choice(FIRST).lower(), rng.choice(LAST).lower(), RCPT_DOMAIN)
        m.env = {"ip": str(ip), "helo": helo, "hostname": hostname or "unknown",
                 "mail_from": env_from, "rcpt": rcpt, "queue_id": qid}
        adom = author_addr.split("@")[1]
        hops = []
        for h in range(rng.randint(0, 3)):
            hops.append(("Received", "from app%d.internal.%s (app%d.internal.%s [10.%d.%d.%d])\r\n\tby %s with ESMTP id %X;\r\n\t%s"
                         % (h, adom, h, adom, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254),
                            helo, rng.getrandbits(32), rfc2822_date(self.clock - 5 * (h + 1)))))
        m.headers = hops
        m.headers += [
            ("From", '"%s" <%s>' % (author_name, author_addr)),
            ("To", "<%s>" % rcpt),
            ("Subject", "%s %s" % (words(rng, rng.randint(2, 6)).capitalize(), "#%d" % rng.randint(100, 99999))),
            ("Date", rfc2822_date(self.clock - 3)),
            ("Message-ID", "<%x.%d@%s>" % (rng.getrandbits(64), i, adom)),
            ("MIME-Version", "1.0"),
        ]
        if rng.random() < 0.3:
            m.headers.append(("Reply-To", "<support@%s>" % adom))
        if rng.random() < 0.2:
            m.headers.append(("X-Mailer", rng.choice(["BenchMailer 2.1", "Microsoft Outlook 16.0", "Thunderbird 115"])))
        target = int(min(200000, max(1500, rng.lognormvariate(math.log(4500), 0.95))))
        m.ctype, m.body, m.boundary = mime_body(rng, target)
        m.headers.append(("Content-Type", m.ctype))
        return m

    def sign(self, m, key, canon=None, oversign=False, wrong_key=None):
        rng = self.rng
        canon = canon or rng.choice([(b"relaxed", b"relaxed")] * 6 + [(b"relaxed", b"simple")] * 3 +
                                    [(b"simple", b"simple")] * 1)
        hdrs = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]
        if any(n == "Reply-To" for n, _ in m.headers):
            hdrs.append(b"reply-to")
        if any(n == "List-Id" for n, _ in m.headers):
            hdrs += [b"list-id", b"list-unsubscribe"]
        if oversign:
            hdrs += [b"from", b"subject", b"reply-to"]
        priv = (wrong_key or key).priv
        sig = dkim.sign(m.bytes(), key.selector.encode(), key.domain.encode(), priv,
                        canonicalize=canon, include_headers=hdrs, signature_algorithm=key.algname)
        name, value = sig.decode().rstrip("\r\n").split(":", 1)
        m.headers.insert(0, (name, value.lstrip(" ")))

    def received_top(self, m, ip, helo, hostname):
        m.headers.insert(0, ("Received", "from %s (%s [%s])\r\n\tby %s with ESMTPS id %s\r\n\tfor <%s>; %s"
                             % (helo, hostname or "unknown", ip, OUR_MX, m.env["queue_id"], m.env["rcpt"],
                                rfc2822_date(self.clock))))

    def org_sender(self, o, sub=False):
        rng = self.rng
        dom = o["domain"]
        key = o.get("rsa") or o.get("ed")
        if sub and o["subs"]:
            s = rng.choice(o["subs"])
            dom = s["domain"]
            key = s["key"] or key
        local = rng.choice(["info", "news", "noreply", "billing", "support", "alerts"] +
                           [rng.choice(FIRST).lower()] * 3)
        return dom, "%s@%s" % (local, dom), key

    def legit_ip(self, o):
        if o["spf"] == "mx_a":
            return self.pick_ip([o["ips4"][0], o["ips4"][1]], [o["ips6"][0], o["ips6"][1]]), None
        return self.pick_ip(o["ips4"], o["ips6"]), None

    def hostname_for(self, ip):
        ptr = self.w.zone.get(reverse_name(str(ip)), "PTR")
        return ptr[0].rstrip(".") if ptr else None

    # --- scenarios: each returns the message
    def make(self, i, scen):
        rng, w = self.rng, self.w
        orgs = w.orgs
        signing = [o for o in orgs if o["dkim"] != "none"]
        spf_ok = [o for o in orgs if o["spf"] not in ("none", "double")]
        keys_to_sign = []
        if scen in ("aligned_pass", "spf_only", "multi_dkim", "broken_body", "null_sender"):
            pool = {"aligned_pass": [o for o in signing if o in spf_ok], "spf_only": spf_ok,
                    "multi_dkim": signing, "broken_body": signing, "null_sender": spf_ok}[scen]
            pool = [o for o in pool if o["dmarc"] is not None] or pool
            o = rng.choice(pool)
            dom, addr, key = self.org_sender(o, sub=rng.random() < 0.25)
            ip, _ = self.legit_ip(o)
            helo = "mta1." + o["domain"]
            env = addr if rng.random() < 0.8 else "bounce-%x@%s" % (rng.getrandbits(24), dom)
            if scen == "null_sender":
                env = ""
                addr = "MAILER-DAEMON@mta1.%s" % o["domain"]
                ip = rng.choice([o["ips4"][1], o["ips6"][1]])
                key = None
            m = self.base(i, addr, "Mail Delivery System" if scen == "null_sender" else self.person(),
                          env, ip, helo, self.hostname_for(ip))
            if scen in ("aligned_pass", "broken_body") and key:
                keys_to_sign.append(key)
                if key is o.get("rsa") and o.get("ed") and scen == "aligned_pass":
                    keys_to_sign.append(o["ed"])          # dual-signed: RSA and Ed25519
            if scen == "multi_dkim":
                variant = rng.choice(["dual", "esp", "stale"])
                if variant == "dual" and o.get("rsa") and o.get("ed"):
                    keys_to_sign += [o["rsa"], o["ed"]]
                elif variant == "esp" or not key:
                    keys_to_sign += [k for k in [key, o["esp"]["key"]] if k]
                else:
                    keys_to_sign.append(key)
                    keys_to_sign.append("stale")
        elif scen == "dkim_only":
            o = rng.choice(signing)
            dom, addr, key = self.org_sender(o, sub=rng.random() < 0.2)
            variant = rng.choice(["unlisted", "excluded", "esp_bounce"])
            if variant == "excluded" and o["spf"] == "exclude":
                ip = o["excluded"]
                env = addr
                helo = "mta2." + o["domain"]
            elif variant == "esp_bounce":
                esp = o["esp"]
                ip = self.pick_ip(esp["ips4"], esp["ips6"])
                env = "b-%x@%s" % (rng.getrandbits(32), esp["bounce"])
                helo = "out1." + esp["domain"]
            else:
                ip = self.pick_ip(w.attack4[20:], w.attack6)   # a server missing from SPF
                env = addr
                helo = "smtp-new.%s" % o["domain"]
            m = self.base(i, addr, self.person(), env, ip, helo, self.hostname_for(ip))
            keys_to_sign.append(key)
        elif scen == "spoof":
            victim = rng.choice(orgs)
            dom, addr, vkey = self.org_sender(victim)
            variant = rng.choice(["victim_env", "attacker_env", "forged_sig", "attacker_sig",
                                  "excluded", "plusall"])
            spam = rng.choice(w.spammers)
            ip = self.pick_ip(w.attack4, w.attack6)
            env, helo = addr, "pc-%d.isp-bench.example" % rng.randint(1, 999)
            if variant == "attacker_env":
                env = "x%d@%s" % (rng.randint(1, 999), spam["domain"])
                ip = spam["ip4"]
            elif variant == "excluded" and victim["spf"] == "exclude":
                ip = victim["excluded"]
            elif variant == "plusall":
                spam = w.spammers[0]
                env = "offers@%s" % spam["domain"]
                if rng.random() < 0.5:
                    addr = "offers@%s" % spam["domain"]
            m = self.base(i, addr, self.person(), env, ip, helo, self.hostname_for(ip))
            if variant == "forged_sig" and vkey:
                attacker = w.spammers[1]["key"]
                keys_to_sign.append(("forged", vkey, attacker))
            elif variant == "attacker_sig":
                keys_to_sign.append(rng.choice([w.spammers[1]["key"], w.spammers[3]["key"]]))
        elif scen == "mailing_list":
            o = rng.choice(orgs)
            dom, addr, key = self.org_sender(o)
            lst = w.list
            lname = rng.choice(["users", "announce", "dev", "discuss"])
            ip = lst["ip6"] if rng.random() < 0.2 else lst["ip4"]
            env = "%s-bounces+%x@%s" % (lname, rng.getrandbits(24), lst["domain"])
            m = self.base(i, addr, self.person(), env, ip, "mail.lists.bench-lists.org",
                          "mail.lists.bench-lists.org")
            if key:
                self.sign(m, key, canon=(b"relaxed", b"relaxed"))
            tamper = rng.random() < 0.7
            lid = "<%s.lists.bench-lists.org>" % lname
            m.headers += [("List-Id", "%s list %s" % (lname.capitalize(), lid)),
                          ("List-Unsubscribe", "<mailto:%s-leave@%s>" % (lname, lst["domain"])),
                          ("List-Post", "<mailto:%s@%s>" % (lname, lst["domain"])),
                          ("Precedence", "list")]
            if tamper:
                m.headers = [(n, "[%s] %s" % (lname, v) if n == "Subject" else v) for n, v in m.headers]
                close = "--%s--" % m.boundary
                k = m.body.index(close)
                m.body[k:k + 1] = ["--" + m.boundary, "Content-Type: text/plain; charset=us-ascii", "",
                                   "_______________________________________________",
                                   "%s mailing list -- %s@%s" % (lname, lname, lst["domain"]),
                                   "To unsubscribe send an email to %s-leave@%s" % (lname, lst["domain"]),
                                   "", close]
            keys_to_sign.append(lst["key"])
        elif scen == "forwarded":
            o = rng.choice(signing if rng.random() < 0.85 else orgs)
            dom, addr, key = self.org_sender(o)
            f = w.fwd
            ip = f["ip6"] if rng.random() < 0.2 else f["ip4"]
            m = self.base(i, addr, self.person(), addr, ip, "relay.fwd-bench.net", "relay.fwd-bench.net")
            if key:
                keys_to_sign.append(key)
        elif scen == "esp_nonaligned":
            o = rng.choice(orgs)
            dom, addr, _ = self.org_sender(o, sub=rng.random() < 0.3)
            esp = o["esp"]
            ip = self.pick_ip(esp["ips4"], esp["ips6"])
            env = "b-%x@%s" % (rng.getrandbits(32), esp["bounce"])
            m = self.base(i, addr, self.person(), env, ip, "out1." + esp["domain"], self.hostname_for(ip))
            keys_to_sign.append(esp["key"])
        elif scen == "no_dmarc":
            pool = [o for o in orgs if o["dmarc"] is None] or orgs
            o = rng.choice(pool)
            dom, addr, key = self.org_sender(o)
            ip, _ = self.legit_ip(o)
            m = self.base(i, addr, self.person(), addr, ip, "mta1." + o["domain"], self.hostname_for(ip))
            if key and rng.random() < 0.7:
                keys_to_sign.append(key)
        else:
            raise ValueError(scen)

        for k in keys_to_sign:
            if k == "stale":
                self.sign(m, self.stale_key(keys_to_sign[0].domain))   # key not published: permerror
            elif isinstance(k, tuple):
                _, vkey, attacker = k
                self.sign(m, vkey if vkey.alg == "rsa" else vkey, wrong_key=attacker if vkey.alg == "rsa" else None)
                if vkey.alg != "rsa":
                    # forge an ed25519 signature: change 4 base64 characters in
                    # the middle of b= (same length and padding, wrong value)
                    n, v = m.headers[0]
                    b = v.rindex("b=") + 2 + 20
                    repl = "".join("B" if ch == "A" else "A" for ch in v[b:b + 4])
                    m.headers[0] = (n, v[:b] + repl + v[b + 4:])
            else:
                self.sign(m, k, oversign=rng.random() < 0.2)
        if scen == "broken_body":
            k = len(m.body) // 2
            m.body.insert(k, "Inserted by a content filter after signing.")
        if scen == "forwarded":
            self.received_top(m, m.env["ip"], "mx.%s" % m.env["mail_from"].split("@")[1], None)
            m.headers.insert(0, ("X-Forwarded-To", "<%s>" % m.env["rcpt"]))
        self.received_top(m, m.env["ip"], m.env["helo"], m.env["hostname"] if m.env["hostname"] != "unknown" else None)
        return m


# ----------------------------------------------------------------- expectations
def expected(world, m, raw):
    z = world.zone
    env = m.env
    mf = env["mail_from"]
    spf_domain = mf.split("@", 1)[1] if mf else env["helo"]
    spf = spf_check(z, env["ip"], spf_domain)

    def dnsfunc(name, timeout=5):
        t = z.txt(name.decode().rstrip("."))
        return t[0].encode() if t else None
    d = dkim.DKIM(raw, minkey=1024)
    sigs = []
    sig_hdrs = [v for n, v in d.headers if n.lower() == b"dkim-signature"]
    for idx, hv in enumerate(sig_hdrs):
        try:
            tags = dkim.util.parse_tag_value(hv)
            dom, sel = tags[b"d"].decode().lower(), tags[b"s"].decode().lower()
        except Exception:
            sigs.append(("?", "permerror"))
            continue
        if not dnsfunc(("%s._domainkey.%s" % (sel, dom)).encode()):
            res = "permerror"                  # no key published
        else:
            try:
                res = "pass" if d.verify(idx=idx, dnsfunc=dnsfunc) else "fail"
            except dkim.ValidationError:
                res = "fail"                   # body hash or signature mismatch
            except Exception as ex:
                # nacl's BadSignatureError: an Ed25519 signature that does not
                # verify; anything else is an unusable key or signature
                res = "fail" if "BadSignature" in type(ex).__name__ else "permerror"
        sigs.append((dom, res))
    author = None
    for n, v in m.headers:
        if n == "From":
            author = v.split("@")[-1].rstrip(">").lower()
    dres, pol, det = dmarc_eval(z, author, spf, spf_domain, sigs)
    return {"spf": spf, "spf_domain": spf_domain, "dkim": sigs, "dmarc": dres, "policy": pol,
            "author": author, **det}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    t0 = time.time()
    # dkimpy stamps t= with time.time(): pin it so the corpus is reproducible
    dkim.time = types.SimpleNamespace(time=lambda: FIXED_T)
    rng = random.Random(a.seed)
    keydir = os.path.join(a.out, "keys")
    msgdir = os.path.join(a.out, "corpus", "msgs")
    zonedir = os.path.join(a.out, "zone")
    for d in (keydir, msgdir, zonedir):
        os.makedirs(d, exist_ok=True)
    for f in os.listdir(msgdir):
        os.unlink(os.path.join(msgdir, f))
    w = World(rng, keydir)
    w.build()
    gen = Generator(w, rng)
    scen_weights = [("aligned_pass", 30), ("spf_only", 10), ("dkim_only", 9), ("spoof", 12),
                    ("mailing_list", 8), ("forwarded", 8), ("esp_nonaligned", 8), ("no_dmarc", 7),
                    ("multi_dkim", 6), ("broken_body", 1), ("null_sender", 1)]
    names = [s for s, k in scen_weights for _ in range(k)]
    manifest, exps, sizes, v6 = [], [], [], 0
    for i in range(1, a.n + 1):
        scen = rng.choice(names)
        m = gen.make(i, scen)
        raw = m.bytes()
        fn = "%05d.eml" % i
        with open(os.path.join(msgdir, fn), "wb") as f:
            f.write(raw)
        e = expected(w, m, raw)
        sizes.append(len(raw))
        v6 += ":" in m.env["ip"]
        dk = ",".join("%s:%s" % (d, {"pass": "+", "fail": "-", "permerror": "~"}[r]) for d, r in e["dkim"]) or "none"
        env = m.env
        manifest.append("\t".join([fn, env["ip"], env["helo"], env["hostname"], env["mail_from"] or "<>",
                                   env["rcpt"], env["queue_id"], scen, e["spf"], dk, e["dmarc"], e["policy"]]))
        exps.append({"file": fn, "scenario": scen, "env": env, "size": len(raw), "expected": e})
        if i % 250 == 0:
            print("  %d messages (%.0f s)" % (i, time.time() - t0), file=sys.stderr)
    w.zone.write(os.path.join(zonedir, "root.zone"))
    cdir = os.path.join(a.out, "corpus")
    with open(os.path.join(cdir, "manifest.tsv"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    with open(os.path.join(cdir, "expected.jsonl"), "w") as f:
        for e in exps:
            f.write(json.dumps(e, sort_keys=True) + "\n")
    ss = sorted(sizes)

    def count(key):
        out = {}
        for e in exps:
            v = key(e)
            out[v] = out.get(v, 0) + 1
        return dict(sorted(out.items()))
    summary = {
        "seed": a.seed, "messages": a.n, "bytes": sum(sizes),
        "size_min": ss[0], "size_median": ss[len(ss) // 2], "size_p90": ss[int(len(ss) * 0.9)],
        "size_max": ss[-1], "ipv6_share": round(v6 / a.n, 3),
        "scenarios": count(lambda e: e["scenario"]),
        "spf": count(lambda e: e["expected"]["spf"]),
        "dmarc": count(lambda e: "%s/%s" % (e["expected"]["dmarc"], e["expected"]["policy"])),
        "dkim_signatures": count(lambda e: len(e["expected"]["dkim"])),
        "dkim_results": count(lambda e: ",".join(sorted(r for _, r in e["expected"]["dkim"])) or "unsigned"),
        "ed25519_signed": sum(1 for e in exps if "k=ed25519" in "" or False),
        "zone_records": sum(len(v) for t in w.zone.rr.values() for v in t.values()),
        "seconds": round(time.time() - t0, 1),
    }
    summary["ed25519_signed"] = sum(
        1 for fn in os.listdir(msgdir) if b"a=ed25519-sha256" in open(os.path.join(msgdir, fn), "rb").read(20000))
    with open(os.path.join(cdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    print(json.dumps(summary, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
