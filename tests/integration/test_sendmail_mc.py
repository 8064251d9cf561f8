#!/usr/bin/python3
"""The Sendmail snippet of docs/protocol.md, as written there, through
Sendmail's own m4 configuration (Debian's sendmail-cf): it must give the
filter definition and the macro lists authscand's milter adapter reads.

The Sendmail daemon itself is not run: Debian's sendmail-bin and postfix
conflict as packages, and test_milter_postfix.py needs Postfix.  What
reaches authscand from Sendmail is the same milter protocol miltertest
and Postfix speak (test_milter.py, test_milter_postfix.py); what differs
is configuration, and that is what this checks.
Prints "N passed, N failed"; exits non-zero on failure."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("sendmail_mc")
CF = "/usr/share/sendmail/cf/m4/cf.m4"


def snippet():
    """The sendmail.mc block of docs/protocol.md ("### Sendmail")."""
    with open(os.path.join(harness.SRC, "docs", "protocol.md")) as f:
        doc = f.read()
    m = re.search(r"### Sendmail\n+```\n(dnl sendmail\.mc\n.*?)```", doc, re.S)
    return m.group(1) if m else None


def test_render():
    text = snippet()
    if not T.check("docs/protocol.md has the sendmail.mc snippet", text, "not found"):
        return
    for tool in ("m4",):
        if not T.check("%s installed (scripts/install-deps)" % tool, shutil.which(tool), tool):
            return
    if not T.check("sendmail-cf installed (scripts/install-deps)", os.path.exists(CF), CF):
        return
    mc = ("divert(-1)\ndivert(0)dnl\ninclude(`%s')dnl\nOSTYPE(`linux')dnl\n"
          "DOMAIN(`generic')dnl\n%sMAILER(`local')dnl\nMAILER(`smtp')dnl\n" % (CF, text))
    with tempfile.TemporaryDirectory(prefix="authscan-sendmail-") as tmp:
        path = os.path.join(tmp, "sendmail.mc")
        with open(path, "w") as f:
            f.write(mc)
        p = subprocess.run(["m4", path], capture_output=True, text=True, timeout=60)
    T.eq("m4 renders it (stderr %s)" % p.stderr.strip()[-300:], (p.returncode, p.stderr.strip()),
         (0, ""))
    cf = p.stdout
    T.check("the filter, with the socket and timeouts as written",
            "\nXauthscan, S=inet:11332@127.0.0.1, F=T, T=C:10s;S:30s;R:30s;E:5m\n" in cf,
            [l for l in cf.splitlines() if l.startswith("X")])
    T.check("the filter is used for incoming mail", "\nO InputMailFilters=authscan\n" in cf,
            [l for l in cf.splitlines() if "InputMailFilters" in l])
    # the macros the adapter reads (docs/protocol.md, "Macros"): the
    # queue id ({i}), the client, the daemon, the authenticated user
    connect = re.search(r"\nO Milter\.macros\.connect=(.*)\n", cf)
    envfrom = re.search(r"\nO Milter\.macros\.envfrom=(.*)\n", cf)
    T.eq("connect macros", connect and [x.strip() for x in connect.group(1).split(",")],
         ["j", "{daemon_name}", "{client_addr}", "{client_name}"])
    T.eq("envfrom macros", envfrom and [x.strip() for x in envfrom.group(1).split(",")],
         ["i", "{auth_authen}"])


def main():
    T.run(test_render)
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
