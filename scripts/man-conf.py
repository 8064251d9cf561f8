#!/usr/bin/env python3
"""man-conf.py - writes authscand.conf(5) from docs/config.md.

The key tables of the docs (config.md, and the plugins' option tables in
spf.md, dkim.md, dmarc.md, reports.md) are the reference; the page repeats
them inside the text of
docs/man/authscand.conf.5.in.  The build runs it (CMakeLists.txt: the page
lands in <build>/man/authscand.conf.5), so the page never falls behind:

    scripts/man-conf.py [OUTPUT]        # default: stdout
"""
import os
import re
import sys

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def table(text, after):
    """The first Markdown table after the line that starts with `after`,
    as a list of {column: cell} (column names lower-cased)."""
    i = text.index(after)
    head, rows = None, []
    for line in text[i:].split("\n")[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if head is None:
                head = [c.lower() for c in cells]
            elif not set("".join(cells)) <= set("-: "):
                rows.append(dict(zip(head, cells)))
        elif rows:
            break
    return rows


def roff(t):
    t = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", t)
    t = t.replace("\\", "\\e")
    # a long list in code (arc.sign_headers' default) gets spaces after its
    # commas, or troff cannot fill the line
    t = re.sub(r"`([^`]+)`", lambda m: "\\fB" + (m.group(1).replace(",", ", ") if len(m.group(1)) > 40
                                                   else m.group(1)) + "\\fR", t)
    return t.replace("-", "\\-").replace("\u2014", "none")


# (title, file under docs/, the heading the table follows, prefix for keys
# the table names without their section).  Every key table of the docs, so
# that `man authscand.conf` answers for every key the daemon accepts.
SECTIONS = [
    ("Core Keys", "config.md", "## Core keys", ""),
    ("Poison Messages", "config.md", "### Poison messages", ""),
    ("Authentication\\-Results", "config.md", "### Authentication-Results", ""),
    ("DNS", "config.md", "## DNS (`dns.*`)", ""),
    ("Redis", "config.md", "## Redis (`redis.*`)", ""),
    ("Lua Rules", "config.md", "## Lua rules (`lua.*`)", ""),
    ("Milter", "config.md", "### Milter (`milter.*`)", ""),
    ("spamd", "config.md", "### spamd (`spamd.*`)", ""),
    ("The Controller", "config.md", "## The controller", ""),
    ("SPF Plugin", "spf.md", "## Options (`[spf]` section)", "spf."),
    ("DKIM Plugin", "dkim.md", "## Options (`[dkim]` section", "dkim."),
    ("DMARC Plugin", "dmarc.md", "## Options (`[dmarc]` section", "dmarc."),
    ("ARC Plugin", "config.md", "### ARC (`arc.*`", ""),
    ("History Plugin", "config.md", "The `history` plugin", ""),
    ("DMARC Reports", "reports.md", "## Options (`report.*`)", ""),
]


def key_names(cell, prefix):
    names = re.findall(r"`([^`]+)`", cell) or [cell]
    return [n if not prefix or n.startswith(prefix) else prefix + n for n in names]


def keys_body():
    out = []
    docs = {}
    for title, fname, anchor, prefix in SECTIONS:
        if fname not in docs:
            with open(os.path.join(SRC, "docs", fname)) as f:
                docs[fname] = f.read()
        rows = table(docs[fname], anchor)
        if not rows:
            raise SystemExit("man-conf.py: no key table after %r in docs/%s" % (anchor, fname))
        out.append('.SS "%s"' % title)
        for r in rows:
            keycell = r.get("key", r.get("option", ""))
            what = r.get("meaning", r.get("what", ""))
            typ = r.get("type")
            names = key_names(keycell, prefix)
            out.append(".TP\n.B %s" % ", ".join(n.replace("-", "\\-") for n in names))
            out.append("(%sdefault %s) %s" % ("%s, " % roff(typ) if typ else "",
                                              roff(r.get("default", "")), roff(what)))
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
