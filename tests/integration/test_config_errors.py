#!/usr/bin/python3
"""`authscand --check-config`: a valid file passes (exit 0); each broken
file in a table fails (exit non-zero) with a message naming the file and
the right line; --set overrides the file (and is itself checked); an
unknown plugin in plugins.enable; an empty or wrong plugins directory (no
spf, dkim or dmarc plugin) and rules or profiles naming symbols no loaded
plugin declares are refused unless plugins.allow_no_auth /
rules.allow_unknown_symbols say so, while symbols of plugins switched off
by plugins.enable/disable are accepted; a plugins directory holding a .so that is
not a plugin, a plugin built for another ABI major (compiled here with gcc
against core/include) or a file that is not a shared object is refused
with an error naming the file (and "ABI"); the daemon itself refuses to
start with a broken file and the same message.
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("config_errors")
TMP = tempfile.mkdtemp(prefix="authscan-cfgtest-")

VALID = """# a valid configuration exercising most value types
workers = 2
listen = 127.0.0.1:11333, unix:/tmp/authscan-test.sock
shutdown_timeout = 1.5s
[log]
level = info
target = stderr
[limits]
max_message_size = 20M
max_headers = 500
scan_timeout = 200ms
[actions]
reject = 20
add_header = 7.5
greylist = none
[messages]
reject = "5.7.1 Go away"
[symbols.MULTIPLE_FROM]
score = 9
description = "Two authors"
[ ]
from_check.allow_multiple_authors = no
"""

# (name, file text, line the error must name, words the message must contain)
BROKEN = [
    ("unknown key", "# comment\nworkers = 2\nworkres = 2\n", 3, ["workres"]),
    ("unknown key in a section", "[limits]\nmax_message_size = 1M\nmax_mesage_size = 2M\n", 3,
     ["limits.max_mesage_size"]),
    ("bad value for workers", "\nworkers = abc\n", 2, ["workers", "abc"]),
    ("workers out of range", "\n\n\nworkers = 1000\n", 4, ["workers", "1000"]),
    ("negative workers", "workers = -3\n", 1, ["workers"]),
    ("bad duration", "# x\nshutdown_timeout = 5 s\n", 2, ["shutdown_timeout"]),
    ("bad duration unit", "[limits]\n\nscan_timeout = 3 weeks\n", 3, ["limits.scan_timeout"]),
    ("negative duration", "limits.read_timeout = -1s\n", 1, ["limits.read_timeout"]),
    ("bad size", "workers = 1\nlimits.max_message_size = 10q\n", 2,
     ["limits.max_message_size"]),
    ("bad integer for max_headers", "limits.max_headers = many\n", 1, ["limits.max_headers"]),
    ("bad header_timeout", "[limits]\nheader_timeout = soon\n", 2, ["limits.header_timeout", "soon"]),
    ("negative max_connections_per_ip", "\nlimits.max_connections_per_ip = -1\n", 2,
     ["limits.max_connections_per_ip", "-1"]),
    ("negative max_connections", "limits.max_connections = -5\n", 1, ["limits.max_connections"]),
    ("bad max_connections_per_ip", "limits.max_connections_per_ip = lots\n", 1,
     ["limits.max_connections_per_ip", "lots"]),
    ("bad listen address", "# x\n\nlisten = nohost\n", 3, ["nohost"]),
    ("listen port out of range", "listen = 127.0.0.1:1234\nlisten = 127.0.0.1:99999\n", 2,
     ["99999"]),
    ("bad listen IP", "\nlisten = 300.1.2.3:11333\n", 2, ["300.1.2.3"]),
    ("unknown action name", "[actions]\nreject = 15\nrejetc = 10\n", 3, ["rejetc"]),
    ("bad action threshold", "[actions]\n\nreject = lots\n", 3, ["actions.reject", "lots"]),
    ("unknown action in messages", "messages.discard = \"x\"\n", 1, ["discard"]),
    ("bad symbol score", "[symbols.MISSING_FROM]\nscore = high\n", 2,
     ["symbols.MISSING_FROM.score", "high"]),
    ("bad symbol key", "[symbols.MISSING_FROM]\nscore = 1\nweight = 2\n", 3,
     ["symbols.MISSING_FROM.weight"]),
    ("unterminated quote", "# x\nlog.level = info\nmessages.reject = \"5.7.1 no\n", 3,
     ["unterminated"]),
    ("missing '='", "workers = 2\n\nworkers 2\n", 3, ["key = value"]),
    ("bad escape", "\nmessages.reject = \"a\\qb\"\n", 2, ["escape"]),
    ("duplicate key", "workers = 2\nlisten = 127.0.0.1:1\nworkers = 3\n", 3,
     ["duplicate", "workers"]),
    ("bad log level", "\nlog.level = loud\n", 2, ["log.level", "loud"]),
    ("bad log target", "log.target = printer\n", 1, ["log.target", "printer"]),
    ("bad plugin option", "\n[from_check]\nallow_multiple_authors = maybe\n", 3,
     ["allow_multiple_authors", "maybe"]),
    ("unknown plugin option", "from_check.allow_everything = yes\n", 1,
     ["from_check.allow_everything"]),
    ("bad dns timeout", "# x\n[dns]\ntimeout = 0\n", 3, ["timeout"]),
    ("bad dns server", "\ndns.servers = notanip\n", 2, ["notanip"]),
    ("missing include", "workers = 1\ninclude \"nope.conf\"\n", 2, ["nope.conf"]),
    ("+= on a scalar", "workers = 1\nshutdown_timeout += 2s\n", 2, ["+="]),
    ("NUL byte", "workers = 1\nlog.level = in\0fo\n", 2, ["NUL"]),
    # issue 10.5: a weight for a symbol nothing emits is lost silently
    ("rule for an undeclared symbol", "# typo\n[symbols.R_SPF_ALOW]\nscore = 5\n", 3,
     ["R_SPF_ALOW", "rules.allow_unknown_symbols"]),
    ("bad plugins.allow_no_auth", "\nplugins.allow_no_auth = maybe\n", 2,
     ["plugins.allow_no_auth", "maybe"]),
    ("bad rules.allow_unknown_symbols", "[rules]\nallow_unknown_symbols = 2\n", 2,
     ["rules.allow_unknown_symbols"]),
    ("no authentication plugin enabled", "workers = 1\nplugins.enable = from_check\n", 2,
     ["no authentication plugin", "plugins.allow_no_auth"]),
    ("every authentication plugin disabled", "plugins.disable = spf, dkim\nplugins.disable += dmarc\n",
     2, ["no authentication plugin", "plugins.allow_no_auth"]),
]


def authscand(args, timeout=60):
    p = subprocess.run([harness.AUTHSCAND] + args, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check_config(text, extra=(), name="test.conf", plugins_dir=harness.PLUGINS):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    args = ["--check-config", "-c", path]
    if plugins_dir:
        args += ["--plugins-dir", plugins_dir]
    return authscand(args + list(extra))


def test_valid():
    rc, out, err = check_config(VALID)
    T.eq("valid file: exit 0", rc, 0)
    T.check("valid file: says OK", "OK" in out + err, (out, err))
    rc, out, err = authscand(["--check-config", "--plugins-dir", harness.PLUGINS])
    T.check("no config file at all: the defaults are valid", rc == 0, err)
    rc, out, err = check_config("")
    T.check("empty file is valid", rc == 0, err)
    rc, out, err = check_config("# only comments\r\n\r\n   \r\n[ ]\r\nworkers = 1\r\n")
    T.check("CRLF lines and an empty section are valid", rc == 0, err)


def test_broken_table():
    for name, text, line, words in BROKEN:
        fname = "broken-%s.conf" % re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        rc, out, err = check_config(text, name=fname)
        T.check("%s: exit non-zero" % name, rc != 0, "rc=%d out=%r err=%r" % (rc, out, err))
        want = "%s:%d:" % (fname, line)
        T.check("%s: message names %s" % (name, want), want in err, err)
        for w in words:
            T.check("%s: message contains %r" % (name, w), w in err, err)
        T.check("%s: the message is the first line" % name,
                want in (err.strip().splitlines() or [""])[0], err)


def test_overrides():
    rc, out, err = check_config("workers = 1000\n", ["--set", "workers=2"])
    T.check("--set replaces a bad file value", rc == 0, err)
    rc, out, err = check_config("workers = 2\n", ["--set", "workers=1000"])
    T.check("--set value is checked", rc != 0 and "workers" in err and "1000" in err, err)
    T.check("--set error says command line", "command line" in err, err)
    T.check("--set error has no bogus line 0", ":0:" not in err, err)
    rc, out, err = check_config("workers = 2\n", ["--set", "workres=2"])
    T.check("--set unknown key", rc != 0 and "workres" in err, err)
    rc, out, err = check_config("workers = 2\n", ["--set", "workers"])
    T.check("--set without '='", rc != 0 and "workers" in err, err)
    rc, out, err = check_config("workers = 2\n", ["--workers", "x"])
    T.check("--workers is checked", rc != 0 and "workers" in err, err)
    rc, out, err = check_config("workers = 2\n", ["--listen", "bogus"])
    T.check("--listen is checked", rc != 0 and "bogus" in err, err)
    rc, out, err = check_config("listen = nohost\n", ["--listen", "127.0.0.1:2000"])
    T.check("--listen replaces the file's listen", rc == 0, err)
    rc, out, err = check_config("from_check.allow_multiple_authors = yes\n",
                                ["--set", "from_check.allow_multiple_authors=maybe"])
    T.check("--set plugin option is checked",
            rc != 0 and "command line" in err and "maybe" in err, err)
    rc, out, err = check_config("", ["--set", "limits.max_message_size=10k",
                                     "--set", "limits.max_headers=20000"])
    T.check("--set limits", rc == 0, err)
    # a site file included later overrides the shipped value
    os.makedirs(os.path.join(TMP, "local.d"), exist_ok=True)
    with open(os.path.join(TMP, "local.d", "10-site.conf"), "w") as f:
        f.write("# site\nworkers = 300\n")
    rc, out, err = check_config("workers = 2\ninclude \"local.d/*.conf\"\n", name="main.conf")
    T.check("error in an included file names that file and line",
            rc != 0 and "10-site.conf:2:" in err, err)


def test_plugins_enable():
    rc, out, err = check_config("plugins.enable = from_check, nosuchplugin\n")
    T.check("unknown plugin in plugins.enable", rc != 0 and "nosuchplugin" in err, err)
    rc, out, err = check_config("plugins.enable = from_check, spf\n")
    T.check("known plugins in plugins.enable", rc == 0, err)
    # without an authentication plugin only with the explicit key
    rc, out, err = check_config("plugins.enable = from_check\nplugins.allow_no_auth = yes\n")
    T.check("plugins.enable = from_check with plugins.allow_no_auth", rc == 0, err)
    rc, out, err = check_config("plugins.enable = from_check\nplugins.allow_no_auth = yes\n"
                                "from_check.allow_multiple_authors = no\n")
    T.check("enabled plugin's option", rc == 0, err)


def test_plugin_set():
    """issue 10.5: an empty or wrong plugins directory, rules naming
    symbols no plugin declares, and the clean ways to run with less."""
    empty = os.path.join(TMP, "empty-plugins")
    os.makedirs(empty, exist_ok=True)
    rc, out, err = check_config("", plugins_dir=empty)
    T.check("empty plugins directory: refused", rc != 0, (rc, out, err))
    T.check("empty plugins directory: says no authentication plugin, names the directory",
            "no authentication plugin" in err and empty in err and "loaded: none" in err, err)
    T.check("empty plugins directory: names the key that allows it",
            "plugins.allow_no_auth" in err, err)
    rc, out, err = check_config("plugins.allow_no_auth = yes\n", plugins_dir=empty)
    T.check("empty plugins directory with plugins.allow_no_auth = yes", rc == 0, err)
    # plugins.dir in the file: the error names that line
    rc, out, err = check_config("workers = 1\n\nplugins.dir = %s\n" % empty, plugins_dir=None,
                                name="emptydir.conf")
    T.check("plugins.dir of an empty directory: names emptydir.conf:3",
            rc != 0 and "emptydir.conf:3:" in err and "no authentication plugin" in err, err)

    # a wrong directory: only the example plugin
    wrong = os.path.join(TMP, "wrong-plugins")
    os.makedirs(wrong, exist_ok=True)
    shutil.copy(os.path.join(harness.PLUGINS, "from_check.so"), wrong)
    rc, out, err = check_config("", plugins_dir=wrong)
    T.check("directory with from_check only: refused naming what it loaded",
            rc != 0 and "no authentication plugin" in err and "loaded: from_check" in err, err)
    # the daemon refuses to start too (at once, not with workers that fail)
    port = harness.free_port()
    try:
        p = subprocess.run([harness.AUTHSCAND, "--foreground", "--workers", "1", "--listen",
                            "127.0.0.1:%d" % port, "--plugins-dir", wrong],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                           start_new_session=True)
        e = p.stderr.decode("utf-8", "replace")
        T.check("daemon with from_check only: exits non-zero saying why",
                p.returncode != 0 and "no authentication plugin" in e, (p.returncode, e))
    except subprocess.TimeoutExpired:
        T.check("daemon with from_check only: exits at once", False)
    # and authscan check, which would otherwise print "no action"
    rc, out, err = harness.run_check(harness.SIMPLE_MSG, plugins_dir=wrong)
    T.check("authscan check with from_check only: refused",
            rc != 0 and "no authentication plugin" in err, (rc, out, err))
    rc, out, err = harness.run_check(harness.SIMPLE_MSG, plugins_dir=wrong,
                                     args=["--set", "plugins.allow_no_auth=yes"])
    T.check("authscan check with from_check only and plugins.allow_no_auth", rc == 0, err)

    # a site rule for a symbol of a plugin missing from the directory
    spf_only = os.path.join(TMP, "spf-only")
    os.makedirs(spf_only, exist_ok=True)
    shutil.copy(os.path.join(harness.PLUGINS, "spf.so"), spf_only)
    rc, out, err = check_config("", plugins_dir=spf_only)
    T.check("spf only, dkim and dmarc absent without a word: refused naming the first",
            rc != 0 and "authentication plugin 'dkim' is not in" in err and spf_only in err
            and "plugins.disable = dkim" in err, err)
    rc, out, err = check_config("plugins.disable = dkim, dmarc\n", plugins_dir=spf_only)
    T.check("spf only with plugins.disable = dkim, dmarc: accepted, shipped rules of the "
            "missing plugins are not errors", rc == 0, err)
    rc, out, err = check_config("plugins.enable = spf\n", plugins_dir=spf_only)
    T.check("spf only with plugins.enable = spf: accepted", rc == 0, err)
    rc, out, err = check_config("plugins.disable = dmarc\n", plugins_dir=spf_only)
    T.check("spf only, dmarc switched off but dkim absent: refused naming dkim",
            rc != 0 and "'dkim' is not in" in err, err)
    rc, out, err = check_config("[symbols.DMARC_POLICY_REJECT]\nscore = 20\n"
                                "[plugins]\ndisable = dkim, dmarc\n",
                                plugins_dir=spf_only, name="site.conf")
    T.check("site rule for a symbol of a missing plugin: refused with file:line",
            rc != 0 and "site.conf:2:" in err and "DMARC_POLICY_REJECT" in err, err)
    rc, out, err = check_config("rules.allow_unknown_symbols = yes\n"
                                "plugins.enable = spf\n"
                                "[symbols.DMARC_POLICY_REJECT]\nscore = 20\n",
                                plugins_dir=spf_only)
    T.check("... accepted with rules.allow_unknown_symbols = yes", rc == 0, err)
    T.check("... with a warning naming the line",
            "test.conf:4:" in err and "DMARC_POLICY_REJECT" in err, err)

    # an unknown symbol in rules.local_dir names that file
    local = os.path.join(TMP, "local-rules")
    os.makedirs(local, exist_ok=True)
    with open(os.path.join(local, "50-site.conf"), "w") as f:
        f.write("# site weights\n[symbols.R_DKIM_ALOW]\nscore = -1\n")
    rc, out, err = check_config("rules.local_dir = %s\n" % local)
    T.check("unknown symbol in rules.local_dir: names 50-site.conf:3",
            rc != 0 and "50-site.conf:3:" in err and "R_DKIM_ALOW" in err, err)

    # plugins switched off on purpose: their symbols in rules and profiles are fine
    text = ("plugins.disable = dmarc\n"
            "[symbols.DMARC_POLICY_REJECT]\nscore = 20\n"
            "[settings.outbound]\nplugins_disabled = dmarc, spf\n"
            "symbols_disabled = DMARC_NA, R_SPF_NA\n")
    rc, out, err = check_config(text)
    T.check("disabled plugin's symbols in rules and settings profiles are accepted", rc == 0, err)
    rc, out, err = check_config("plugins.enable = spf, from_check\n"
                                "[settings.x]\nsymbols_disabled = R_DKIM_NA\n")
    T.check("a plugin left out by plugins.enable: its symbols too", rc == 0, err)
    rc, out, err = check_config("plugins.disable = dmarc\n"
                                "[settings.x]\nsymbols_disabled = DMARC_NOPE\n", name="prof.conf")
    T.check("an unknown symbol in a profile is still an error",
            rc != 0 and "prof.conf:3:" in err and "DMARC_NOPE" in err, err)
    # a profile that switches every authentication plugin off is explicit: allowed
    rc, out, err = check_config("[settings.internal]\nplugins_disabled = spf, dkim, dmarc\n")
    T.check("a profile without authentication plugins is allowed", rc == 0, err)
    # the disabled plugin really does not run
    rc, out, err = harness.run_check(harness.SIMPLE_MSG, args=["--set", "plugins.disable=dmarc",
                                     "--set", "symbols.DMARC_NA.score=5"])
    T.check("plugins.disable = dmarc: no DMARC symbol, scan works",
            rc == 0 and isinstance(out, dict) and
            not any(k.startswith("DMARC") for k in out["symbols"]), (rc, out, err))


def make_plugin_dir(name):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(harness.PLUGINS):
        if f.endswith(".so"):
            shutil.copy(os.path.join(harness.PLUGINS, f), d)
    return d


def gcc(src_text, out):
    src = out[:-3] + ".c"
    with open(src, "w") as f:
        f.write(src_text)
    inc = os.path.join(harness.SRC, "core", "include")
    p = subprocess.run(["gcc", "-shared", "-fPIC", "-I", inc, "-o", out, src],
                       capture_output=True, timeout=120)
    os.unlink(src)
    if p.returncode != 0:
        raise RuntimeError("gcc failed: %s" % p.stderr.decode())


def test_bad_plugins():
    if not shutil.which("gcc"):
        T.check("gcc is installed", False)
        return
    # not a plugin: a shared object without authscan_plugin
    d = make_plugin_dir("notplugin")
    gcc("int some_function(void) { return 42; }\n", os.path.join(d, "libnotplugin.so"))
    rc, out, err = authscand(["--check-config", "--plugins-dir", d])
    T.check("non-plugin .so: exit non-zero", rc != 0, (rc, err))
    T.check("non-plugin .so: names the file", "libnotplugin.so" in err, err)
    T.check("non-plugin .so: says why", "authscan_plugin" in err or "not an authscan plugin" in err,
            err)

    # a plugin built for ABI major 99
    d = make_plugin_dir("abi99")
    gcc('#include <authscan/plugin.h>\n'
        'const struct as_plugin authscan_plugin = {\n'
        '    .abi_major = 99, .abi_minor = 0, .name = "future", .version = "9.9",\n'
        '};\n', os.path.join(d, "future.so"))
    rc, out, err = authscand(["--check-config", "--plugins-dir", d])
    T.check("ABI 99: exit non-zero", rc != 0, (rc, err))
    T.check("ABI 99: names the file", "future.so" in err, err)
    T.check("ABI 99: says ABI", "ABI" in err, err)
    T.check("ABI 99: gives both versions", "99" in err and "1." in err, err)

    # a newer ABI minor than the host's is refused too
    d = make_plugin_dir("abiminor")
    gcc('#include <authscan/plugin.h>\n'
        'const struct as_plugin authscan_plugin = {\n'
        '    .abi_major = AS_PLUGIN_ABI_MAJOR, .abi_minor = AS_PLUGIN_ABI_MINOR + 1,\n'
        '    .name = "newer", .version = "1",\n'
        '};\n', os.path.join(d, "newer.so"))
    rc, out, err = authscand(["--check-config", "--plugins-dir", d])
    T.check("newer ABI minor: refused naming file and ABI",
            rc != 0 and "newer.so" in err and "ABI" in err, (rc, err))

    # garbage named .so
    d = make_plugin_dir("junk")
    with open(os.path.join(d, "junk.so"), "wb") as f:
        f.write(b"this is not an ELF file\n")
    rc, out, err = authscand(["--check-config", "--plugins-dir", d])
    T.check("junk .so: refused naming the file", rc != 0 and "junk.so" in err, (rc, err))

    # a plugin that depends on a plugin that does not exist
    d = make_plugin_dir("deps")
    gcc('#include <authscan/plugin.h>\n'
        'static const char *const deps[] = { "nonexistent_dep", 0 };\n'
        'const struct as_plugin authscan_plugin = {\n'
        '    AS_PLUGIN_HEADER, .name = "needy", .version = "1", .depends = deps,\n'
        '};\n', os.path.join(d, "needy.so"))
    rc, out, err = authscand(["--check-config", "--plugins-dir", d])
    T.check("missing dependency: refused naming it",
            rc != 0 and "nonexistent_dep" in err, (rc, err))

    # a valid extra plugin is accepted (the checks above are not blanket refusals)
    d = make_plugin_dir("good")
    gcc('#include <authscan/plugin.h>\n'
        'static const struct as_symbol_def syms[] = {\n'
        '    { "HELLO_WORLD", 0.5, "example", "Says hello", 0 },\n'
        '};\n'
        'static void scan(struct as_task *t, void *state) {\n'
        '    (void)state; as_task_add_symbol(t, "HELLO_WORLD", 1.0, "hi", (const char *)0);\n'
        '}\n'
        'const struct as_plugin authscan_plugin = {\n'
        '    AS_PLUGIN_HEADER, .name = "hello", .version = "1.0",\n'
        '    .symbols = syms, .nsymbols = 1, .scan = scan,\n'
        '};\n', os.path.join(d, "hello.so"))
    rc, out, err = authscand(["--check-config", "--plugins-dir", d])
    T.check("plugin built from plugin.h's example is accepted", rc == 0, err)
    rc, out, err = harness.run_check(b"From: a@example.com\r\n\r\nx\r\n", plugins_dir=d)
    T.check("and it runs", rc == 0 and isinstance(out, dict) and
            out["symbols"].get("HELLO_WORLD", {}).get("options") == ["hi"], (rc, out, err))


def test_daemon_refuses_to_start():
    path = os.path.join(TMP, "start.conf")
    with open(path, "w") as f:
        f.write("workers = 1\n\nbogus_key = 1\n")
    port = harness.free_port()
    try:
        p = subprocess.run([harness.AUTHSCAND, "--foreground", "-c", path, "--listen",
                            "127.0.0.1:%d" % port, "--plugins-dir", harness.PLUGINS],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                           start_new_session=True)
        err = p.stderr.decode("utf-8", "replace")
        T.check("daemon with a broken config exits non-zero", p.returncode != 0, err)
        T.check("daemon names file:line", "start.conf:3:" in err and "bogus_key" in err, err)
    except subprocess.TimeoutExpired:
        T.check("daemon with a broken config exits at once", False)
    # a config file that does not exist
    rc, out, err = authscand(["--check-config", "-c", os.path.join(TMP, "missing.conf")])
    T.check("missing -c file", rc != 0 and "missing.conf" in err, err)
    # a listen address that cannot be bound is an error at start, not a hang
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    try:
        p = subprocess.run([harness.AUTHSCAND, "--foreground", "--workers", "1", "--listen",
                            "127.0.0.1:%d" % busy, "--plugins-dir", harness.PLUGINS],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                           start_new_session=True)
        err = p.stderr.decode("utf-8", "replace")
        T.check("busy port: exit non-zero naming the address",
                p.returncode != 0 and str(busy) in err, (p.returncode, err))
    except subprocess.TimeoutExpired:
        T.check("busy port: exits at once", False)
    finally:
        blocker.close()


def main():
    try:
        for fn in (test_valid, test_broken_table, test_overrides, test_plugins_enable,
                   test_plugin_set, test_bad_plugins, test_daemon_refuses_to_start):
            T.run(fn)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
