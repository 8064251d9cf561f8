#!/usr/bin/python3
"""Plugin ABI 1.2 from the outside: the tree is installed with
`cmake --install` into a temporary prefix, and plugins are built against
that prefix's headers alone (authscan/plugin.h and the typed results
authscan/spf.h, authscan/dmarc.h installed beside it):

  - tests/data/plugins/stages_probe.c uses the postfilter stage (reads the
    verdict, the symbols, the SPF and DMARC results; adds a symbol and
    forces an action, after which the verdict is recomputed) and the finish
    stage (read-only; async work that the reply to the MTA does not wait
    for), through the installed `authscan check` and `authscand`, with its
    deadline (limits.scan_timeout) and a worker that must exit while finish
    work is outstanding (both checked free of sanitizer reports);
  - tests/data/plugins/old_abi.c, built as ABI 1.0 and 1.1 plugins (the old,
    shorter struct as_plugin), still loads and scans;
and, through the same probe, three core defects of issue 12: symbol options
past the bounds are marked, not dropped silently; milter.remove_headers
expresses every removal of one name under one key; the DMARC plugin leaves
libc's random() alone.  Also: a redis.* key without redis.servers is
rejected with file:line (it would have no effect).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("plugin_stages")
DEMO = os.path.join(harness.DATA, "demo")
SPOOF = os.path.join(DEMO, "02-spoofed.eml")
MTA = "mx.receiver.test"


def install(tmp):
    prefix = os.path.join(tmp, "prefix")
    cmake = shutil.which("cmake")
    p = subprocess.run([cmake, "--install", harness.BUILD, "--prefix", prefix],
                       capture_output=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit("cmake --install failed: %s" % p.stderr.decode()[-800:])
    return prefix


def build_plugin(prefix, src, out, defs=()):
    cc = shutil.which("cc") or shutil.which("gcc")
    cmd = [cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror",
           "-I", os.path.join(prefix, "include")] + list(defs) + [src, "-o", out]
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit("building %s failed: %s" % (src, p.stderr.decode()[-1500:]))


def check(prefix, plugins, msg, args=(), mta=MTA):
    cmd = [os.path.join(prefix, "bin", "authscan"), "check", "--json", "--plugins-dir", plugins,
           "--dns-zone", os.path.join(DEMO, "demo.zone"), "--mta-name", mta] + list(args)
    p = subprocess.run(cmd + [msg], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("authscan check failed: %s" % p.stderr.decode()[-800:])
    import json
    return json.loads(p.stdout), p.stderr.decode()


def opts(reply, name):
    return (reply["symbols"].get(name) or {}).get("options", [])


def fnv1a(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%x" % h


def records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [dict(kv.split("=", 1) for kv in line.rstrip("\n").split("\t")) for line in f]


def main():
    tmp = tempfile.mkdtemp(prefix="authscan-stages-")
    try:
        prefix = install(tmp)
        for h in ("plugin.h", "spf.h", "dkim.h", "dmarc.h"):
            T.check("installed authscan/%s" % h,
                    os.path.exists(os.path.join(prefix, "include", "authscan", h)))
        plugins = os.path.join(tmp, "plugins")
        os.makedirs(plugins)
        # the install tree mirrors the build tree (lib/authscan/plugins-abiN)
        shipped = os.path.join(prefix, os.path.relpath(harness.PLUGINS, harness.BUILD))
        for so in sorted(os.listdir(shipped)):
            os.symlink(os.path.join(shipped, so), os.path.join(plugins, so))
        src = os.path.join(harness.DATA, "plugins")
        build_plugin(prefix, os.path.join(src, "stages_probe.c"),
                     os.path.join(plugins, "a_probe.so"))
        for minor in (0, 1):
            build_plugin(prefix, os.path.join(src, "old_abi.c"),
                         os.path.join(plugins, "old_abi_1_%d.so" % minor),
                         ["-DOLD_MINOR=%d" % minor])
        log = os.path.join(tmp, "finish.log")
        env = ["--ip", "203.0.113.66", "--helo", "mail.evil.example",
               "--from", "bounce@evil.example", "-s", "probe.log=" + log]

        # 1. postfilter sees the verdict and the typed results; finish sees
        #    the final verdict, read-only, after the reply
        r, _ = check(prefix, plugins, SPOOF, env)
        T.eq("spoof: action", r["action"], "reject")
        po = opts(r, "PROBE_POSTFILTER")
        T.check("postfilter read the verdict", "pre_action=reject" in po, po)
        T.check("postfilter read the SPF result", "spf=none" in po, po)
        T.check("postfilter read the DMARC result", "dmarc=published" in po, po)
        T.check("postfilter stage", "stage=1" in po, po)
        n_pre = [o for o in po if o.startswith("pre_symbols=")]
        T.check("postfilter iterated the symbols",
                n_pre and int(n_pre[0].split("=")[1]) == len(r["symbols"]) - 1, (n_pre, r["symbols"].keys()))
        T.check("ABI 1.0 plugin loads and scans", "OLD_ABI_1_0" in r["symbols"], r["symbols"].keys())
        T.check("ABI 1.1 plugin loads and scans", "OLD_ABI_1_1" in r["symbols"], r["symbols"].keys())
        T.eq("libc random() untouched by the plugins", opts(r, "PROBE_RANDOM"), ["intact"])
        rec = records(log)
        T.eq("one finish record", len(rec), 1)
        if rec:
            T.eq("finish: final action", rec[0]["action"], r["action"])
            T.eq("finish: forced by", rec[0]["forced_by"], r.get("passthrough_module", "-"))
            T.eq("finish: stage", rec[0]["stage"], "2")
            T.eq("finish: read-only", rec[0]["readonly"], "1")
            T.eq("finish: symbols", sorted(rec[0]["symbols"].split(",")), sorted(r["symbols"]))
            T.eq("finish: score", float(rec[0]["score"]), round(r["score"], 2))

        # 2. a postfilter force wins over DMARC's, and the verdict is recomputed
        os.unlink(log)
        r, _ = check(prefix, plugins, SPOOF, env + ["-s", "probe.force=quarantine"])
        T.eq("postfilter force: action", r["action"], "quarantine")
        T.eq("postfilter force: module", r.get("passthrough_module"), "probe")
        T.eq("postfilter force: SMTP text", r.get("messages", {}).get("smtp_message"),
             "4.7.1 held by the probe")
        T.check("postfilter symbol counted in the score",
                abs(r["score"] - sum(s["score"] for s in r["symbols"].values())) < 1e-6 and
                r["symbols"]["PROBE_POSTFILTER"]["score"] == 0.5, r["score"])
        rec = records(log)
        T.check("finish saw the recomputed verdict",
                rec and rec[0]["action"] == "quarantine" and rec[0]["forced_by"] == "probe" and
                rec[0]["smtp"] == "4.7.1 held by the probe", rec)

        # 3. option bounds are marked; every removal of one name is kept
        m = os.path.join(tmp, "probe.eml")
        with open(m, "wb") as f:
            f.write(b"From: a@example.com\r\n" + b"".join(b"X-Probe: %d\r\n" % i for i in range(4)) +
                    b"Subject: x\r\n\r\nhi\r\n")
        r, err = check(prefix, plugins, m, ["-s", "probe.burst=yes", "--log-level", "notice"])
        o = opts(r, "PROBE_OPTS")
        T.eq("options: 64 kept plus the marker", len(o), 65)
        T.eq("options: the marker is last", o[-1] if o else None, "...")
        T.check("options: a long one is cut to 1024 bytes and marked",
                o and len(o[0]) == 1024 and o[0].endswith("...") and o[0].startswith("bbb"), o[:1])
        T.check("options: bounds are logged", "more than 64 options" in err and
                "more than 1024 bytes" in err, err[-600:])
        rm = r.get("milter", {}).get("remove_headers", {})
        T.eq("remove_headers: 3, 1 and -1 of 4 under one key", rm.get("X-Probe"), [4, 3, 1])
        T.check("remove_headers: one key per name", "x-probe" not in rm, rm)

        # 4. DMARC removes forged A-R fields 1 and 3 of 3 (2 is foreign)
        m = os.path.join(tmp, "forged.eml")
        with open(SPOOF, "rb") as f:
            spoof = f.read()
        ar = (b"Authentication-Results: %s; dmarc=pass header.from=example.com\r\n"
              b"Authentication-Results: other.example; spf=pass smtp.mailfrom=x.test\r\n"
              b"Authentication-Results: %s; dkim=pass header.d=example.com\r\n") % (
                  MTA.encode(), MTA.encode())
        with open(m, "wb") as f:
            f.write(ar + spoof)
        r, _ = check(prefix, plugins, m, env)
        T.eq("forged A-R 1 and 3 removed", r.get("milter", {}).get("remove_headers", {})
             .get("Authentication-Results"), [3, 1])

        # 5. finish work does not delay the reply (installed authscand)
        harness.AUTHSCAND = os.path.join(prefix, "sbin", "authscand")
        os.unlink(log) if os.path.exists(log) else None
        cfg = "[probe]\nlog = %s\nfinish_delay = 1500ms\n" % log
        with harness.Daemon(workers=1, config=cfg, plugins_dir=plugins,
                            zone=open(os.path.join(DEMO, "demo.zone")).read()) as d:
            with open(SPOOF, "rb") as f:
                body = f.read()
            t0 = time.time()
            status, reply = d.checkv2(body, headers={"IP": "203.0.113.66",
                                                     "From": "bounce@evil.example"})
            took = time.time() - t0
            T.eq("daemon: status", status, 200)
            T.eq("daemon: action", reply.get("action"), "reject")
            T.check("daemon: reply did not wait for the finish stage (1.5 s)", took < 1.0, took)
            T.check("daemon: no finish record yet at reply time", not records(log), records(log))
            # a second message of the same size while the first one's finish
            # stage waits: the memory of the first request may be reused
            other = body.replace(b"Subject:", b"Subjekt:")
            status2, _ = d.checkv2(other, headers={"IP": "203.0.113.66",
                                                   "From": "bounce@evil.example"})
            T.eq("daemon: second status", status2, 200)
            harness.wait_for(lambda: len(records(log)) >= 2, timeout=10, what="finish records")
            rec = records(log)
            T.check("daemon: finish record after the delay",
                    rec and rec[0]["action"] == "reject" and rec[0]["readonly"] == "1", rec)
            T.eq("daemon: the finish stage reads the message it was sent, after the reply",
                 sorted(r.get("raw") for r in rec), sorted([fnv1a(body), fnv1a(other)]))
            code, _, stat_body = d.request("GET", "/stat")
            import json
            st = json.loads(stat_body)
            T.check("/stat: scan counted, dns service member present",
                    st.get("scanned") == 2 and "queries" in st.get("dns", {}), st)

        # 5b. the finish stage has a deadline (limits.scan_timeout): work
        #     still outstanding then is cancelled, the worker carries on
        os.unlink(log) if os.path.exists(log) else None
        cfg = "[limits]\nscan_timeout = 1s\n[probe]\nlog = %s\nfinish_delay = 20s\n" % log
        with harness.Daemon(workers=1, config=cfg, plugins_dir=plugins,
                            zone=open(os.path.join(DEMO, "demo.zone")).read()) as d:
            resp, reply = d.checkv2(body, headers={"IP": "203.0.113.66",
                                                   "From": "bounce@evil.example"})
            T.check("finish deadline: reply", reply and reply.get("action") == "reject", reply)
            d.wait_log(r"finish stage deadline \(1\.0s\) reached; 1 plugin\(s\) cut short",
                       timeout=10)
            T.check("finish deadline: the cut-short work wrote nothing", not records(log),
                    records(log))
            T.check("finish deadline: worker still answers", d.ping())
            T.eq("finish deadline: clean exit", d.stop(), 0)
            T.check("finish deadline: no sanitizer report",
                    "Sanitizer" not in d.log() and "runtime error" not in d.log(), d.log()[-2000:])

        # 5c. a worker that must exit (shutdown_timeout) ends finish-stage
        #     work still running, cleanly
        cfg = ("shutdown_timeout = 1s\n[limits]\nscan_timeout = 20s\n"
               "[probe]\nlog = %s\nfinish_delay = 10s\n" % log)
        with harness.Daemon(workers=1, config=cfg, plugins_dir=plugins,
                            zone=open(os.path.join(DEMO, "demo.zone")).read()) as d:
            resp, reply = d.checkv2(body, headers={"IP": "203.0.113.66",
                                                   "From": "bounce@evil.example"})
            T.check("shutdown: reply", reply and reply.get("action") == "reject", reply)
            t0 = time.time()
            T.eq("shutdown: clean exit", d.stop(), 0)
            T.check("shutdown: waited for shutdown_timeout, not the finish work",
                    0.5 < time.time() - t0 < 8, time.time() - t0)
            T.check("shutdown: finish work cut short",
                    "engine shutting down: finish stage cut short" in d.log(), d.log()[-1500:])
            T.check("shutdown: no sanitizer report",
                    "Sanitizer" not in d.log() and "runtime error" not in d.log(), d.log()[-2000:])

        # 6. a redis.* key that has no effect (no redis.servers) is
        # refused with file:line, not ignored
        for key, val, want in (("redis.timeout", "1s", "has no effect without redis.servers"),):
            conf = os.path.join(tmp, "reserved.conf")
            sect, k = key.split(".", 1)
            with open(conf, "w") as f:
                f.write("# site config\n[%s]\n%s = %s\n" % (sect, k, val))
            p = subprocess.run([os.path.join(prefix, "sbin", "authscand"), "--check-config",
                                "-c", conf], capture_output=True, timeout=60)
            e = p.stderr.decode()
            T.check("%s refused" % key, p.returncode != 0 and "%s:3:" % conf in e and
                    want in e, (p.returncode, e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    T.run(main)
    sys.exit(T.finish())
