#!/usr/bin/env python3
"""test_manpages.py - the man pages say what the programs and docs say.

  - every long option that `authscand --help` / `authscan --help` prints is
    in authscand(8) / authscan(1), and the pages describe no option the
    programs lack; the same for short options;
  - authscand.conf(5), which the build generates from the key tables of
    docs/config.md (scripts/man-conf.py), has every core key;
  - the pages render without a warning from man(1) (groff -ww).
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("manpages")
MAN = os.path.join(harness.SRC, "docs", "man")


def help_text(prog):
    p = subprocess.run([prog, "--help"], capture_output=True, timeout=30)
    return p.stdout.decode()


def options(text):
    """(long options, short options) named in a --help text or a page."""
    longs = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text))
    shorts = set(re.findall(r"(?<![\w-])-([a-zA-Z])\b(?!-)", text))
    return longs, shorts


def page_path(name):
    """Written pages are in docs/man, generated ones in <build>/man."""
    built = os.path.join(harness.BUILD, "man", name)
    return built if os.path.exists(built) else os.path.join(MAN, name)


def page_text(name):
    """The page's source with roff escapes for '-' undone and fonts dropped."""
    src = open(page_path(name)).read()
    src = re.sub(r"\\f[BIRP]", "", src)
    return src.replace("\\-", "-").replace("\\e", "\\")


def compare(prog, page, ignore_short=()):
    hl, hs = options(help_text(prog))
    text = page_text(page)
    opts = text[text.index(".SH OPTIONS"):]
    opts = opts[:opts.index("\n.SH ", 1)]
    ml, ms = options(opts)
    T.eq("%s: long options in --help but not in %s" % (os.path.basename(prog), page),
         sorted(hl - ml), [])
    T.eq("%s: long options in %s but not in --help" % (os.path.basename(prog), page),
         sorted(ml - hl), [])
    hs -= set(ignore_short)
    ms -= set(ignore_short)
    T.eq("%s: short options in --help but not in %s" % (os.path.basename(prog), page),
         sorted(hs - ms), [])
    T.eq("%s: short options in %s but not in --help" % (os.path.basename(prog), page),
         sorted(ms - hs), [])
    return hl


def test_options():
    longs = compare(harness.AUTHSCAND, "authscand.8")
    T.check("authscand --help lists --check-config", "check-config" in longs, longs)
    longs = compare(harness.AUTHSCAN, "authscan.1")
    T.check("authscan --help lists --settings-id", "settings-id" in longs, longs)
    # the subcommands
    text = page_text("authscan.1")
    for cmd in re.findall(r"^\s+authscan (\w+)", help_text(harness.AUTHSCAN).replace(
            "usage:", " "), re.M):
        T.check("authscan(1) has 'authscan %s'" % cmd, ".B authscan %s" % cmd in text, cmd)


def test_conf_page():
    T.check("the build generated authscand.conf.5",
            os.path.exists(os.path.join(harness.BUILD, "man", "authscand.conf.5")), harness.BUILD)
    text = page_text("authscand.conf.5")
    # every key of the Core keys table of the docs
    md = open(os.path.join(harness.SRC, "docs", "config.md")).read()
    core = md[md.index("## Core keys"):]
    core = core[:core.index("\n\n", core.index("| key"))]
    keys = re.findall(r"^\| `([a-z_.]+)` \|", core, re.M)
    T.check("docs/config.md core keys found (%d)" % len(keys), len(keys) > 20, keys)
    for k in keys:
        T.check("authscand.conf(5) has %s" % k, ("\n.B %s\n" % k) in text, k)
    for k in ("user", "group", "log.ident", "log.facility"):
        T.check("authscand.conf(5) has %s" % k, ("\n.B %s\n" % k) in text, k)
    # one key of each section and plugin table, so that a table the
    # generator stops finding fails here
    for k in ("redis.servers", "lua.dir", "milter.reject_code", "spamd.trusted_networks",
              "controller.password", "spf.trusted_relays", "dkim.min_rsa_bits",
              "dmarc.discovery", "arc.sign_domain", "history.cache_ttl", "report.enabled"):
        T.check("authscand.conf(5) has %s" % k, re.search(r"\n\.B (.*, )?%s(,|\n)" % re.escape(k), text), k)


def test_render():
    if not shutil.which("man"):
        T.check("man is installed (scripts/install-deps: man-db)", False)
        return
    for page in ("authscand.8", "authscan.1", "authscand.conf.5"):
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        env.pop("MAN_KEEP_FORMATTING", None)
        p = subprocess.run(["man", "--warnings", "-l", page_path(page)], env=env,
                           capture_output=True, timeout=60)
        T.check("%s renders" % page, p.returncode == 0 and b"NAME" in p.stdout, p.stderr[-500:])
        T.eq("%s: no warnings" % page, p.stderr.decode(), "")


if __name__ == "__main__":
    T.run(test_options)
    T.run(test_conf_page)
    T.run(test_render)
    sys.exit(T.finish())
