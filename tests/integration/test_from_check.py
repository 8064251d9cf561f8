#!/usr/bin/python3
"""The example plugin (plugins/from_check) through `authscan check --json`:
MISSING_FROM, MULTIPLE_FROM (two fields; two mailboxes without Sender; two
mailboxes with Sender, which is allowed unless
from_check.allow_multiple_authors=no), FROM_INVALID with its reason as the
option (empty, group, invalid, no_domain for a domain literal), a clean message with none of
them, the symbols' default scores and group, and the plugin's option being
validated, and its postfilter override (from_check.unusable_from_action).  Prints "N passed, N failed"; exits non-zero on failure."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

T = harness.Tests("from_check")
FROM_SYMS = ("MISSING_FROM", "MULTIPLE_FROM", "FROM_INVALID")


def msg(headers, body=b"body\r\n"):
    return b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


BASE = [b"To: Bob <bob@example.org>", b"Subject: test",
        b"Date: Thu, 5 Dec 2019 18:22:18 +0300", b"Message-ID: <fc@example.com>"]


def scan(m, args=()):
    rc, out, err = harness.run_check(m, args)
    if rc != 0 or not isinstance(out, dict):
        raise AssertionError("authscan check failed (rc %d): %s %s" % (rc, out, err))
    return out


def from_syms(reply):
    """{symbol: options} of the plugin's symbols only."""
    return {k: v.get("options", []) for k, v in reply["symbols"].items() if k in FROM_SYMS}


def expect(name, m, want, args=()):
    got = from_syms(scan(m, args))
    T.check(name, got == want, "got %r, want %r" % (got, want))


def test_clean():
    expect("clean sample", harness.read_data("clean.eml"), {})
    expect("plain address", msg([b"From: a@example.com"] + BASE), {})
    expect("display name, comment, encoded word",
           msg([b"From: =?utf-8?q?J=C3=B6rg?= (home) <joerg@example.com>"] + BASE), {})
    expect("folded From", msg([b"From: \"Alice, the first\"\r\n <alice@example.com>"] + BASE), {})
    expect("lower-case field name", msg([b"from: a@example.com"] + BASE), {})
    expect("Sender with a single author", msg([b"From: a@example.com",
                                              b"Sender: s@example.net"] + BASE), {})


def test_missing():
    out = scan(harness.read_data("missing-from.eml"))
    T.check("MISSING_FROM sample", "MISSING_FROM" in out["symbols"], out["symbols"])
    s = out["symbols"].get("MISSING_FROM", {})
    T.eq("MISSING_FROM has no options", s.get("options", []), [])
    T.eq("MISSING_FROM default score", s.get("score"), 2)
    T.eq("MISSING_FROM metric_score", s.get("metric_score"), 2)
    T.check("MISSING_FROM description", "From" in s.get("description", ""), s)
    T.check("only MISSING_FROM", set(from_syms(out)) == {"MISSING_FROM"}, from_syms(out))
    # Sender or Resent-From do not stand in for From
    expect("Sender is not From", msg([b"Sender: s@example.com",
                                      b"Resent-From: r@example.com"] + BASE),
           {"MISSING_FROM": []})
    # a "From " mbox line is not a header field
    expect("mbox From_ line is not From",
           b"From alice@example.com Thu Dec  5 18:22:18 2019\r\n" + msg(BASE),
           {"MISSING_FROM": []})
    # a From in the body does not count
    expect("From in the body", msg(BASE, b"From: a@example.com\r\n"), {"MISSING_FROM": []})


def test_multiple():
    out = scan(harness.read_data("multiple-from.eml"))
    T.eq("two From fields", from_syms(out), {"MULTIPLE_FROM": ["fields=2"]})
    s = out["symbols"].get("MULTIPLE_FROM", {})
    T.eq("MULTIPLE_FROM default score", s.get("score"), 8)
    T.eq("score and action agree", out["score"], sum(v["score"] for v in out["symbols"].values()))
    T.eq("MULTIPLE_FROM weight 8 gives add header", out["action"], "add header")
    expect("three From fields", msg([b"From: a@example.com", b"FROM: b@example.com",
                                     b"from: c@example.com"] + BASE),
           {"MULTIPLE_FROM": ["fields=3"]})
    expect("two fields even with Sender",
           msg([b"From: a@example.com", b"From: b@example.com", b"Sender: a@example.com"] + BASE),
           {"MULTIPLE_FROM": ["fields=2"]})
    expect("two mailboxes without Sender",
           msg([b"From: a@example.com, Bob <b@example.net>"] + BASE),
           {"MULTIPLE_FROM": ["mailboxes=2"]})
    expect("three mailboxes without Sender",
           msg([b"From: a@example.com, b@example.net, \"C, D\" <c@example.org>"] + BASE),
           {"MULTIPLE_FROM": ["mailboxes=3"]})
    expect("two mailboxes with Sender (sample)",
           harness.read_data("multiple-authors-sender.eml"), {})
    expect("two mailboxes with two Sender fields",
           msg([b"From: a@example.com, b@example.net", b"Sender: a@example.com",
                b"Sender: b@example.net"] + BASE),
           {"MULTIPLE_FROM": ["mailboxes=2"]})
    off = ["--set", "from_check.allow_multiple_authors=no"]
    expect("allow_multiple_authors=no: Sender does not help",
           harness.read_data("multiple-authors-sender.eml"), {"MULTIPLE_FROM": ["mailboxes=2"]},
           off)
    expect("allow_multiple_authors=no: single author still clean",
           harness.read_data("clean.eml"), {}, off)
    expect("allow_multiple_authors=yes explicitly",
           harness.read_data("multiple-authors-sender.eml"), {},
           ["--set", "from_check.allow_multiple_authors=yes"])


def test_invalid():
    out = scan(harness.read_data("from-empty-group.eml"))
    T.eq("empty group", from_syms(out), {"FROM_INVALID": ["empty"]})
    s = out["symbols"].get("FROM_INVALID", {})
    T.eq("FROM_INVALID default score", s.get("score"), 2)
    expect("empty From", msg([b"From: "] + BASE), {"FROM_INVALID": ["empty"]})
    expect("blank From", msg([b"From:   \t"] + BASE), {"FROM_INVALID": ["empty"]})
    expect("group with a member", msg([b"From: Team: a@example.com;"] + BASE),
           {"FROM_INVALID": ["group"]})
    expect("unparseable", msg([b"From: <<<@@@>>>"] + BASE), {"FROM_INVALID": ["invalid"]})
    expect("unterminated quote", msg([b"From: \"Alice <alice@example.com>"] + BASE),
           {"FROM_INVALID": ["invalid"]})
    expect("address without @", msg([b"From: alice"] + BASE), {"FROM_INVALID": ["invalid"]})
    expect("domain literal", msg([b"From: alice@[192.0.2.1]"] + BASE),
           {"FROM_INVALID": ["no_domain"]})


def test_option_checked():
    rc, out, err = harness.run_check(harness.read_data("clean.eml"),
                                     ["--set", "from_check.allow_multiple_authors=maybe"])
    T.check("bad boolean is refused", rc != 0, (rc, out))
    T.check("error names the key", "allow_multiple_authors" in err, err)
    rc, out, err = harness.run_check(harness.read_data("clean.eml"),
                                     ["--set", "from_check.no_such_option=1"])
    T.check("unknown plugin option is refused", rc != 0 and "no_such_option" in err, (rc, err))


def test_text_output():
    rc, out, err = harness.run_check(harness.read_data("multiple-from.eml"), json_out=False)
    T.eq("text output exit status", rc, 0)
    T.check("text output lists the symbol and option",
            "MULTIPLE_FROM" in out and "fields=2" in out and "add header" in out, out)


def test_disabled():
    """With the plugin disabled none of its symbols appear."""
    out = scan(harness.read_data("missing-from.eml"), ["--set", "plugins.disable=from_check"])
    T.eq("disabled plugin adds nothing", from_syms(out), {})


def test_postfilter_override():
    """from_check.unusable_from_action: the postfilter raises the final
    verdict for an unusable From, and leaves a usable one alone."""
    opt = ["--set", "from_check.unusable_from_action=quarantine"]
    out = scan(harness.read_data("missing-from.eml"), opt)
    T.eq("unusable From: action raised", out["action"], "quarantine")
    T.eq("unusable From: forced by", out.get("passthrough_module"), "from_check")
    out = scan(harness.read_data("missing-from.eml"))
    T.eq("default: no override", out["action"], "no action")
    out = scan(harness.read_data("clean.eml"), opt)
    T.eq("usable From: untouched", out["action"], "no action")
    rc, out, err = harness.run_check(harness.read_data("clean.eml"),
                                     ["--set", "from_check.unusable_from_action=maybe"])
    T.check("unknown action is refused", rc != 0 and "unusable_from_action" in err, (rc, err))


def main():
    for fn in (test_clean, test_missing, test_multiple, test_invalid, test_option_checked,
               test_text_output, test_disabled, test_postfilter_override):
        T.run(fn)
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
