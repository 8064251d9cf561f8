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
import signal
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
# checked, never connected to: --check-config sends nothing
[redis]
servers = 127.0.0.1:1
password = "p w"
db = 2
prefix = site1:
timeout = 250ms
connections = 3
queue_max = 0
[history]
half_life = 14d
min_observations = 3
"""

# (name, file text, line the error must name, words the message must contain)
BROKEN = [
    ("unknown key", "# comment\nworkers = 2\nworkres = 2\n", 3, ["workres"]),
    ("redis server host name", "[redis]\nservers = redis.example:6379\n", 2,
     ["redis.servers", "redis.example:6379", "host names"]),
    ("redis server twice", "redis.servers = 127.0.0.1:6379, 127.0.0.2\n[redis]\n"
     "servers += 127.0.0.1:6379\n", 1, ["redis.servers", "twice"]),
    ("redis servers and sentinels", "redis.servers = 127.0.0.1\n[redis]\nsentinels = 127.0.0.1\n"
     "master_name = m\n", 3, ["redis.servers", "Sentinel", "use one"]),
    ("redis master name without sentinels", "redis.master_name = m\n", 1,
     ["redis.master_name", "redis.sentinels"]),
    ("redis timeout zero", "redis.servers = 127.0.0.1\n\nredis.timeout = 0\n", 3,
     ["redis.timeout"]),
    ("redis db out of range", "redis.servers = 127.0.0.1\nredis.db = 70000\n", 2, ["redis.db"]),
    ("redis prefix with a brace", "redis.servers = 127.0.0.1\nredis.prefix = \"a{\"\n", 2,
     ["redis.prefix", "hash tag"]),
    ("redis key without servers", "# x\nredis.password = secret\n", 2,
     ["redis.password", "has no effect without redis.servers"]),
    ("history option out of range", "history.pass_ratio = 1.5\n", 1, ["history.pass_ratio"]),
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
    ("controller without a password off loopback",
     "workers = 1\nlisten = 127.0.0.1:1\nlisten = controller@0.0.0.0:2\n", 3,
     ["controller", "password", "0.0.0.0:2"]),
    ("controller key without a controller listener", "workers = 1\n\ncontroller.password = x\n", 3,
     ["controller.password", "controller@"]),
    ("empty controller password",
     "listen = controller@127.0.0.1:1\ncontroller.enable_password = \"\"\n", 2,
     ["controller.enable_password", "empty"]),
    ("bad plugins.allow_no_auth", "\nplugins.allow_no_auth = maybe\n", 2,
     ["plugins.allow_no_auth", "maybe"]),
    ("bad rules.allow_unknown_symbols", "[rules]\nallow_unknown_symbols = 2\n", 2,
     ["rules.allow_unknown_symbols"]),
    ("no authentication plugin enabled", "workers = 1\nplugins.enable = from_check\n", 2,
     ["no authentication plugin", "plugins.allow_no_auth"]),
    ("every authentication plugin disabled", "plugins.disable = spf, dkim\nplugins.disable += dmarc\n",
     2, ["no authentication plugin", "plugins.allow_no_auth"]),
]


# Errors only a plugin's init() can find: --check-config must run it (the
# check builds the whole engine) and the message must name file:line.
PLUGIN_INIT = [
    ("dmarc max_rounds 0", "workers = 1\n\ndmarc.max_rounds = 0\n", 3,
     ["dmarc.max_rounds = 0", "expected 1 to 100"]),
    ("spf bad network on a += line", "[spf]\ntrusted_relays = 10.0.0.0/8\n"
     "trusted_relays += 192.0.2.0/24, 1.2.3.4/99\n", 3,
     ["spf.trusted_relays", "1.2.3.4/99"]),
    ("spf bad local network", "spf.local_networks = 127.0.0.0/8, not-a-net\n", 1,
     ["spf.local_networks", "not-a-net"]),
    ("dmarc munge_lists item without @", "[dmarc]\nmunge_lists = talk@lists.example\n"
     "munge_lists += talk\n", 3, ["dmarc.munge_lists", "'talk'"]),
    ("dkim body_length", "\ndkim.body_length = sometimes\n", 2,
     ["dkim.body_length = sometimes", "accept, complete or never"]),
    ("dkim verify", "dkim.verify = magic\n", 1, ["dkim.verify = magic"]),
    ("dkim max below min", "dkim.min_rsa_bits = 2048\ndkim.max_rsa_bits = 1024\n", 2,
     ["dkim.max_rsa_bits", "dkim.min_rsa_bits"]),
    ("dmarc discovery", "# x\ndmarc.discovery = guess\n", 2, ["dmarc.discovery = guess"]),
    ("dmarc PSL file missing", "dmarc.discovery = psl\n"
     "dmarc.public_suffix_list = /nonexistent/psl.dat\n", 2,
     ["dmarc.public_suffix_list", "/nonexistent/psl.dat"]),
    ("dmarc action", "dmarc.reject_action = explode\n", 1, ["dmarc.reject_action = explode"]),
    ("spf default_explanation", "spf.default_explanation = \"bad %{z} macro\"\n", 1,
     ["spf.default_explanation", "macro-string"]),
    ("from_check action", "\n\nfrom_check.unusable_from_action = destroy\n", 3,
     ["from_check.unusable_from_action = destroy"]),
]

# Integer, size and duration values past the range of the type they end
# up in: refused with the bounds instead of wrapping into a valid-looking
# value (4294967297 into an int is 1).  One row per key that is narrowed.
INT_WRAP = [
    ("spf.max_rounds wraps to 1", "spf.max_rounds = 4294967297\n", 1,
     ["spf.max_rounds", "1 to 100"]),
    ("spf.max_dns_terms wraps to 1", "spf.max_dns_terms = 4294967297\n", 1,
     ["spf.max_dns_terms", "1 to 10"]),
    ("spf.max_void_lookups wraps to 2", "\nspf.max_void_lookups = 4294967298\n", 2,
     ["spf.max_void_lookups", "0 to 10"]),
    ("spf.max_record_size", "spf.max_record_size = 4294967297\n", 1,
     ["spf.max_record_size", "64 to 4096"]),
    ("dmarc.max_rounds wraps to 1", "[dmarc]\nmax_rounds = 4294967297\n", 2,
     ["dmarc.max_rounds", "1 to 100"]),
    ("dmarc.max_author_domains wraps to 1", "dmarc.max_author_domains = 4294967297\n", 1,
     ["dmarc.max_author_domains", "1 to 16"]),
    ("dkim.max_signatures", "dkim.max_signatures = 4294967297\n", 1,
     ["dkim.max_signatures", "1 to 100"]),
    ("dkim.key_cache_size", "dkim.key_cache_size = -1\n", 1, ["dkim.key_cache_size", "0 to"]),
    ("dkim.max_header_list", "dkim.max_header_list = 99999999999\n", 1,
     ["dkim.max_header_list", "1 to 100000"]),
    ("workers", "workers = 4294967297\n", 1, ["workers", "0 to 256"]),
    ("int past long long", "workers = 99999999999999999999\n", 1, ["workers", "integer"]),
    ("limits.max_headers negative", "limits.max_headers = -1\n", 1,
     ["limits.max_headers", "0 (no limit) to 1000000"]),
    ("limits.max_connections", "limits.max_connections = 18446744073709551\n", 1,
     ["limits.max_connections", "to 1000000"]),
    ("limits.max_connections_per_ip", "limits.max_connections_per_ip = 4294967296\n", 1,
     ["limits.max_connections_per_ip", "to 1000000"]),
    ("dns.cache_size", "[dns]\ncache_size = 4294967297\n", 2, ["dns.cache_size", "0 to"]),
    ("dns.max_queries", "dns.max_queries = 4294967297\n", 1, ["dns.max_queries", "0 to"]),
    ("dns.plugin_reserve", "dns.plugin_reserve = 4294967297\n", 1,
     ["dns.plugin_reserve", "0 to"]),
    ("size", "limits.max_message_size = 4096G\n", 1, ["limits.max_message_size", "1 to 2G"]),
    ("size past 64 bits", "limits.max_header_size = 99999999999999999999k\n", 1,
     ["limits.max_header_size", "size"]),
    ("duration past time_t", "limits.scan_timeout = 99999999999999999999999s\n", 1,
     ["limits.scan_timeout", "0 to 1d"]),
    ("shutdown_timeout", "shutdown_timeout = 400d\n", 1, ["shutdown_timeout", "0 to 1d"]),
    ("idle_timeout", "limits.idle_timeout = 10000000000h\n", 1, ["limits.idle_timeout"]),
]

# Keys that only one mode reads: set in another mode they would be accepted
# and do nothing, so they are refused naming their own line.
MODE_ONLY = [
    ("public_suffix_list in tree mode", "workers = 1\ndmarc.public_suffix_list = %s\n", 2,
     ["dmarc.public_suffix_list", "discovery = tree", "discovery = psl"]),
    ("key_cache_size in library mode", "dkim.verify = library\n\ndkim.key_cache_size = 10\n", 3,
     ["dkim.key_cache_size", "verify = library"]),
    ("munge_style without munge_lists", "dmarc.munge_style = invalid\n", 1,
     ["dmarc.munge_style", "munge_lists"]),
    ("munge_pass_only without munge_lists", "# x\ndmarc.munge_pass_only = no\n", 2,
     ["dmarc.munge_pass_only", "munge_lists"]),
    ("dns.servers with dns.zone_file", "dns.zone_file = %s\ndns.servers = 127.0.0.1\n", 2,
     ["dns.servers", "dns.zone_file"]),
    ("dns.cache_size with dns.zone_file", "dns.cache_size = 10\ndns.zone_file = %s\n", 1,
     ["dns.cache_size", "dns.zone_file"]),
    ("dns.servers with dns.recursive", "dns.recursive = yes\n\ndns.servers = 127.0.0.1\n", 3,
     ["dns.servers", "dns.recursive"]),
    ("dns.resolv_conf with dns.servers", "dns.servers = 127.0.0.1\n"
     "dns.resolv_conf = /etc/resolv.conf\n", 2, ["dns.resolv_conf", "dns.servers"]),
    ("poison.ttl with poison.enable = no", "poison.enable = no\npoison.ttl = 2h\n", 2,
     ["poison.ttl", "poison.enable = no"]),
    ("poison.action with poison.enable = no", "poison.action = reject\npoison.enable = off\n",
     1, ["poison.action", "poison.enable = no"]),
]

# ... and the same keys where their mode uses them are fine.
MODE_OK = [
    ("public_suffix_list with discovery = psl", "dmarc.discovery = psl\n"
     "dmarc.public_suffix_list = %s\n"),
    ("key_cache_size with verify = cached", "dkim.verify = cached\ndkim.key_cache_size = 10\n"),
    ("munge_style with munge_lists", "dmarc.munge_lists = talk@lists.example\n"
     "dmarc.munge_style = invalid\ndmarc.munge_pass_only = no\n"),
    ("authserv_id with add_auth_results", "dmarc.add_auth_results = no\n"
     "dmarc.authserv_id = mx.example\n"),
    ("poison.ttl with poison enabled", "poison.enable = yes\npoison.ttl = 2h\n"),
    ("dns.recursive = no with servers", "dns.recursive = no\ndns.servers = 127.0.0.1\n"),
    ("dns.zone_file alone", "dns.zone_file = %s\ndns.timeout = 1s\n"),
    ("integers at their bounds", "spf.max_rounds = 100\ndmarc.max_rounds = 1\n"
     "spf.max_void_lookups = 0\nworkers = 256\nlimits.max_message_size = 2G\n"
     "limits.scan_timeout = 1d\ndns.cache_size = 0\n"),
]

PSL = os.path.join(harness.SRC, "tests", "data", "dmarc", "public_suffix_list.dat")


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


def run_broken(table, fill=""):
    """Each (name, text, line, words) row fails --check-config with its
    first line naming file:line and holding the words.  '%s' in the text
    is replaced by fill."""
    for name, text, line, words in table:
        if "%s" in text:
            text = text % fill
        fname = "broken-%s.conf" % re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        rc, out, err = check_config(text, name=fname)
        T.check("%s: exit non-zero" % name, rc != 0,
                "got rc=%d (out=%r err=%r), want non-zero" % (rc, out, err))
        want = "%s:%d:" % (fname, line)
        first = (err.strip().splitlines() or [""])[0]
        T.check("%s: message names %s" % (name, want), want in err,
                "got %r, want %r in it" % (err, want))
        for w in words:
            T.check("%s: message contains %r" % (name, w), w in err,
                    "got %r, want %r in it" % (err, w))
        T.check("%s: the message is the first line" % name, want in first,
                "got first line %r, want %r in it" % (first, want))


def test_broken_table():
    run_broken(BROKEN)


def test_plugin_init_errors():
    """--check-config runs every plugin's init(): what only the plugin can
    judge is refused with file:line (before, it passed the check and the
    workers failed at start)."""
    run_broken(PLUGIN_INIT)
    # a --set value an init() refuses names the command line
    rc, out, err = check_config("", ["--set", "dmarc.max_rounds=0"])
    T.check("--set refused by init: names the command line",
            rc != 0 and err.startswith("authscand: command line: dmarc.max_rounds = 0"),
            "got rc=%d %r, want 'command line: dmarc.max_rounds = 0'" % (rc, err))


def test_int_wrap():
    run_broken(INT_WRAP)


def test_mode_only_keys():
    zone = os.path.join(TMP, "mode.zone")
    with open(zone, "w") as f:
        f.write("$ORIGIN example.\n$TTL 300\n@ IN TXT \"v=spf1 -all\"\n")
    run_broken(MODE_ONLY[:1], PSL)
    run_broken(MODE_ONLY[1:], zone)
    for name, text in MODE_OK:
        if "%s" in text:
            text = text % (PSL if "public_suffix" in text else zone)
        rc, out, err = check_config(text)
        T.check("%s: accepted" % name, rc == 0, "got rc=%d %r, want 0" % (rc, err))
    # --dns-zone takes a production config offline for one run on purpose
    rc, out, err = check_config("dns.servers = 127.0.0.1\ndns.cache_size = 10\n",
                                ["--dns-zone", zone])
    T.check("--dns-zone over a config with dns.servers: accepted", rc == 0,
            "got rc=%d %r, want 0" % (rc, err))


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


PROBE_PLUGIN = r"""
#include <authscan/plugin.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static const struct as_option_def opts[] = {
    { "marker", AS_OPT_STRING, NULL, "file that init and fini append to" },
    { "level", AS_OPT_INT, "3", "1 to 5" },
    { "words", AS_OPT_LIST, "", "no item may start with x" },
    { "crash", AS_OPT_BOOL, "no", "die in init" },
    { "extra", AS_OPT_STRING, NULL, "only with level 5" },
};
static void mark(const char *path, const char *what) {
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) { fprintf(f, "%s %d\n", what, (int)getpid()); fclose(f); }
}
static int init(struct as_plugin_ctx *c, void **state) {
    const char *m = as_plugin_opt_string(c, "marker");
    mark(m, "init");
    if (as_plugin_opt_bool(c, "crash")) kill(getpid(), SIGKILL);
    long long level;
    if (as_plugin_opt_int_range(c, "level", 1, 5, &level) < 0) return -1;
    const char *const *w;
    size_t n = as_plugin_opt_list(c, "words", &w);
    for (size_t i = 0; i < n; i++)
        if (w[i][0] == 'x') return as_plugin_opt_item_error(c, "words", w[i], "starts with x");
    if (level != 5 && as_plugin_opt_is_set(c, "extra"))
        return as_plugin_opt_error(c, "extra", "has no effect below level 5");
    *state = (void *)m;
    return 0;
}
static void fini(void *state) { mark(state, "fini"); }
const struct as_plugin authscan_plugin = {
    AS_PLUGIN_HEADER, .name = "probe", .version = "1",
    .options = opts, .noptions = sizeof opts / sizeof opts[0],
    .init = init, .fini = fini,
};
"""


def test_probe_plugin():
    """A third-party plugin uses the ABI 1.2 option errors; the check runs
    its init() and fini() in a child that is gone afterwards, and a plugin
    that dies in init() fails the check naming it."""
    if not shutil.which("gcc"):
        T.check("gcc is installed", False)
        return
    d = make_plugin_dir("probe")
    gcc(PROBE_PLUGIN, os.path.join(d, "probe.so"))
    marker = os.path.join(TMP, "probe.marker")
    rc, out, err = check_config("probe.marker = %s\n" % marker, plugins_dir=d)
    T.eq("probe: config OK", (rc, err), (0, ""))
    lines = open(marker).read().split() if os.path.exists(marker) else []
    T.eq("probe: the check ran init then fini", lines[0::2], ["init", "fini"])
    T.check("probe: in a child, not in the checking process",
            len(lines) == 4 and lines[1] == lines[3] and int(lines[1]) != os.getpid(),
            "got %r" % lines)
    rows = [
        ("probe level wraps", "probe.level = 4294967298\n", 1,
         ["probe.level = 4294967298", "expected 1 to 5"]),
        ("probe list item", "[probe]\nwords = a, b\nwords += c\nwords += d, xylophone\n", 4,
         ["probe.words item 'xylophone'", "starts with x"]),
        ("probe key without effect", "probe.level = 4\n\nprobe.extra = 1\n", 3,
         ["probe.extra = 1", "level 5"]),
    ]
    for name, text, line, words in rows:
        rc, out, err = check_config(text, plugins_dir=d, name="probe.conf")
        want = "%s:%d:" % (os.path.join(TMP, "probe.conf"), line)
        T.check("%s: refused naming %s" % (name, want), rc != 0 and
                err.startswith("authscand: " + want),
                "got rc=%d %r, want an error starting with %r" % (rc, err, want))
        for w in words:
            T.check("%s: message contains %r" % (name, w), w in err,
                    "got %r, want %r in it" % (err, w))
    rc, out, err = check_config("probe.crash = yes\n", plugins_dir=d)
    T.check("plugin killed in init(): refused naming the plugin and init()",
            rc != 0 and "probe.so" in err and "init()" in err and "signal 9" in err,
            "got rc=%d %r" % (rc, err))


def test_daemon_start_runs_init():
    """The daemon refuses a config a plugin's init() refuses before it
    starts any worker, with file:line."""
    path = os.path.join(TMP, "init.conf")
    with open(path, "w") as f:
        f.write("workers = 1\n\ndmarc.max_rounds = 4294967297\n")
    port = harness.free_port()
    try:
        p = subprocess.run([harness.AUTHSCAND, "--foreground", "-c", path, "--listen",
                            "127.0.0.1:%d" % port, "--plugins-dir", harness.PLUGINS,
                            "--log-level", "info"],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                           start_new_session=True)
        err = p.stderr.decode("utf-8", "replace")
        T.check("daemon: exits non-zero", p.returncode != 0,
                "got rc=%d, want non-zero" % p.returncode)
        T.check("daemon: names init.conf:3 and the key",
                "init.conf:3: dmarc.max_rounds = 4294967297" in err, "got %r" % err)
        T.check("daemon: no worker started", "started worker" not in err, "got %r" % err)
    except subprocess.TimeoutExpired:
        T.check("daemon with a value init() refuses exits at once", False)


def test_reload_runs_init():
    """A reload whose new config a plugin's init() refuses is aborted before
    any worker is replaced, naming file:line."""
    good = "workers = 1\n[symbols.MULTIPLE_FROM]\nscore = 8\n"
    with harness.Daemon(workers=None, config=good, expect_workers=1) as d:
        before = d.worker_pids()
        for name, text, words in [
                ("value init() refuses", "workers = 1\n\ndmarc.max_rounds = 0\n",
                 "%s:3: dmarc.max_rounds = 0" % d.config_path),
                ("integer that wraps", "workers = 1\nspf.max_rounds = 4294967297\n",
                 "%s:2: spf.max_rounds = 4294967297" % d.config_path),
                ("key without effect", "workers = 1\ndmarc.public_suffix_list = %s\n" % PSL,
                 "%s:2: dmarc.public_suffix_list" % d.config_path)]:
            d.write_config(text)
            mark = d.log_mark()
            d.signal(signal.SIGHUP)
            try:
                m = d.wait_log(r"reload (aborted|failed)[^\n]*", since=mark)
                got = m.group(0)
            except Exception:
                got = d.log()[mark:]
            T.check("reload, %s: aborted naming file:line" % name,
                    got.startswith("reload aborted") and words in got,
                    "got %r, want 'reload aborted ... %s'" % (got, words))
            T.eq("reload, %s: same workers" % name, d.worker_pids(), before)
            T.check("reload, %s: no new generation" % name,
                    "started worker" not in d.log()[mark:], d.log()[mark:])
        st, j = d.checkv2(harness.MULTI_FROM_MSG)
        T.eq("old config still serves", (st, j["symbols"]["MULTIPLE_FROM"]["score"]), (200, 8))


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
                            "127.0.0.1:%d" % busy, "--plugins-dir", harness.PLUGINS]
                           + harness.user_args(),
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
        for fn in (test_valid, test_broken_table, test_plugin_init_errors, test_int_wrap,
                   test_mode_only_keys, test_overrides, test_plugins_enable,
                   test_plugin_set, test_bad_plugins, test_probe_plugin,
                   test_daemon_start_runs_init, test_reload_runs_init,
                   test_daemon_refuses_to_start):
            T.run(fn)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
