#!/usr/bin/env python3
"""man-conf.py - writes authscand.conf(5) from docs/config.md.

The key tables of docs/config.md ("Core keys", poison, Authentication-
Results, DNS) are the reference; the page repeats them inside the text of
docs/man/authscand.conf.5.in.  The build runs it (CMakeLists.txt: the page
lands in <build>/man/authscand.conf.5), so the page never falls behind:

    scripts/man-conf.py [OUTPUT]        # default: stdout
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
    page = tmpl.replace("@KEYS@\n", keys_body() + "\n")
    if len(sys.argv) > 1:
        os.makedirs(os.path.dirname(os.path.abspath(sys.argv[1])), exist_ok=True)
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(page)
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    else:
        sys.stdout.write(page)


if __name__ == "__main__":
    main()
