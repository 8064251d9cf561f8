#!/usr/bin/env python3
"""man-conf.py - writes docs/man/authscand.conf.5 from docs/config.md.

The key tables of docs/config.md ("Core keys", poison, Authentication-
Results, DNS) are the reference; the man page repeats them.  Run after
changing a table:

    scripts/man-conf.py > docs/man/authscand.conf.5

tests/integration/test_manpages.py fails while the two differ.
"""
import os
import re
import sys

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
md = open(os.path.join(SRC, "docs", "config.md")).read()


def table(after):
    i = md.index(after)
    rows = []
    for line in md[i:].split("\n")[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] == "key" or set(cells[0]) <= set("-"):
                continue
            rows.append(cells)
        elif rows:
            break
    return rows


def roff(t):
    t = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", t)
    t = t.replace("\\", "\\e")
    t = re.sub(r"`([^`]+)`", lambda m: "\\fB" + m.group(1) + "\\fR", t)
    return t.replace("-", "\\-").replace("\u2014", "none")


SECTIONS = [("Core Keys", "## Core keys"), ("Poison Messages", "### Poison messages"),
            ("Authentication\\-Results", "### Authentication-Results"),
            ("DNS", "## DNS (`dns.*`)")]


def keys_body():
    out = []
    for title, anchor in SECTIONS:
        out.append('.SS "%s"' % title)
        for cells in table(anchor):
            key = cells[0].strip("`")
            out.append(".TP\n.B %s\n(%s, default %s) %s" % (key.replace("-", "\\-"),
                       roff(cells[1]), roff(cells[2]), roff(cells[3])))
    return "\n".join(out)


def main():
    tmpl = open(os.path.join(SRC, "docs", "man", "authscand.conf.5.in")).read()
    sys.stdout.write(tmpl.replace("@KEYS@\n", keys_body() + "\n"))


if __name__ == "__main__":
    main()
