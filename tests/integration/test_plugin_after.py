#!/usr/bin/python3
"""ABI 1.3: struct as_plugin .after, the soft ordering the dmarc plugin
uses to read the arc result (issue 20).

tests/data/plugins/after_probe.c is built twice against the installed
headers (which must include authscan/arc.h): slow_probe publishes its
result after a 300 ms timer; after_probe names slow_probe and a plugin
that does not exist in .after.  Checks: after_probe waits for slow_probe
(it sees the result), a missing or disabled plugin named in .after is no
error, and after_probe reads the arc result.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_plugin_stages import build_plugin, check, install, opts  # noqa: E402

T = harness.Tests("plugin_after")
MSG = os.path.join(harness.DATA, "demo", "02-spoofed.eml")


def main():
    tmp = tempfile.mkdtemp(prefix="authscan-after-")
    prefix = install(tmp)
    T.check("installed authscan/arc.h",
            os.path.exists(os.path.join(prefix, "include", "authscan", "arc.h")))
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins)
    # the install tree mirrors the build tree (lib/authscan/plugins-abiN)
    shipped = os.path.join(prefix, os.path.relpath(harness.PLUGINS, harness.BUILD))
    for so in sorted(os.listdir(shipped)):
        os.symlink(os.path.join(shipped, so), os.path.join(plugins, so))
    src = os.path.join(harness.DATA, "plugins", "after_probe.c")
    # a_ sorts first: loaded (and without .after, started) before slow_probe
    build_plugin(prefix, src, os.path.join(plugins, "a_after_probe.so"))
    build_plugin(prefix, src, os.path.join(plugins, "z_slow_probe.so"), ["-DPROBE_SLOW"])

    r, _ = check(prefix, plugins, MSG)
    T.eq("after_probe ran after slow_probe", opts(r, "AFTER_PROBE"), ["saw", "none"])
    T.check("slow_probe ran", "SLOW_PROBE" in r["symbols"], r["symbols"].keys())
    r, _ = check(prefix, plugins, MSG, ["-s", "plugins.disable=slow_probe"])
    T.eq("slow_probe disabled: after_probe runs alone", opts(r, "AFTER_PROBE")[:1], ["missed"])
    r, _ = check(prefix, plugins, MSG, ["-s", "plugins.disable=arc"])
    T.eq("arc disabled: no arc result", opts(r, "AFTER_PROBE"), ["saw", "no-arc"])
    # control: the same plugin without .after does not wait
    build_plugin(prefix, src, os.path.join(plugins, "a_after_probe.so"), ["-DPROBE_NO_AFTER"])
    r, _ = check(prefix, plugins, MSG)
    T.eq("without .after: after_probe did not wait", opts(r, "AFTER_PROBE")[:1], ["missed"])
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
