/*
 * test_config.c - the configuration language: syntax, errors with their
 * exact "file:line: message" text, override and list rules across files,
 * includes, schema checks and the value parsers.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "util/config.h"
#include "util/util.h"

static char tmpdir[PATH_MAX];

static const char *tpath(const char *name)
{
    static char buf[4][PATH_MAX + 64];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_file(const char *name, const char *data, size_t len)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(2); }
    if (len && fwrite(data, 1, len, f) != len) { perror(p); exit(2); }
    fclose(f);
}

static void write_str(const char *name, const char *text) { write_file(name, text, strlen(text)); }

/* Items of a list key joined with '|', for compact comparison. */
static const char *joined(const struct as_config *cfg, const char *key)
{
    static char buf[1024];
    const char *const *items;
    size_t n = as_config_list(cfg, key, &items);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(buf, "|");
        strcat(buf, items[i]);
    }
    if (items[n] != NULL) strcat(buf, "<not NULL-terminated>");
    return buf;
}

/* ------------------------------------------------------------------ */

static void test_syntax(void)
{
    static const struct {
        const char *text, *key, *value;
        int quoted;
    } cases[] = {
        { "workers = 2", "workers", "2", 0 },
        { "workers=2", "workers", "2", 0 },
        { "  \tworkers\t=\t2  \t", "workers", "2", 0 },
        { "a = b c  d", "a", "b c  d", 0 },
        { "a = b # comment", "a", "b", 0 },
        { "a = b\t# comment", "a", "b", 0 },
        { "a = b#c", "a", "b#c", 0 },
        { "a = http://x/#frag", "a", "http://x/#frag", 0 },
        { "a = # only a comment", "a", "", 0 },
        { "a =", "a", "", 0 },
        { "a =#x", "a", "#x", 0 },
        { "a = \"q # not a comment\"", "a", "q # not a comment", 1 },
        { "a = \"q\" # comment", "a", "q", 1 },
        { "a = \"\"", "a", "", 1 },
        { "a = \"x\\\"y\\\\z\\n\\t\"", "a", "x\"y\\z\n\t", 1 },
        { "a = \"  padded  \"", "a", "  padded  ", 1 },
        { "a = x, \"b # c\", d # c", "a", "x, \"b # c\", d", 0 },
        { "a = \"b,c\", d", "a", "\"b,c\", d", 0 },
        { "dns.timeout = 1.5s", "dns.timeout", "1.5s", 0 },
        { "a-b_c.D9 = v", "a-b_c.D9", "v", 0 },
        { "[dns]\ntimeout = 3", "dns.timeout", "3", 0 },
        { "[ dns ]  # c\ntimeout = 3", "dns.timeout", "3", 0 },
        { "[dns]#c\ntimeout = 3", "dns.timeout", "3", 0 },
        { "[symbols.R_SPF_ALLOW]\nscore = -0.2", "symbols.R_SPF_ALLOW.score", "-0.2", 0 },
        { "[dns]\n[ ]\nworkers = 1", "workers", "1", 0 },
        { "[dns]\n[]\nworkers = 1", "workers", "1", 0 },
        { "[dns]\nx.y = 1", "dns.x.y", "1", 0 },
        { "# whole line\n   # indented\n\n\t\na = 1", "a", "1", 0 },
        { "a = 1\r\n", "a", "1", 0 },
        { "include = 5", "include", "5", 0 },
        { "include.x = 5", "include.x", "5", 0 },
        { "a += 1", "a", "1", 0 },
        { "a+=1", "a", "1", 0 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        struct as_config *cfg = as_config_new();
        char err[256] = "";
        int rc = as_config_load_string(cfg, "t.conf", cases[i].text, err, sizeof err);
        if (rc != 0) fprintf(stderr, "syntax case %zu: %s\n", i, err);
        CHECK_INT(rc, 0);
        const struct as_config_entry *e = as_config_find(cfg, cases[i].key);
        CHECK(e != NULL);
        if (e) {
            CHECK_STR(e->value, cases[i].value);
            CHECK_INT(e->quoted, cases[i].quoted);
            CHECK_STR(e->file, "t.conf");
        }
        as_config_free(cfg);
    }

    /* Line numbers count every line, blank and comment ones included. */
    struct as_config *cfg = as_config_new();
    char err[256];
    CHECK_INT(as_config_load_string(cfg, "n.conf", "# c\n\nx = 1\n[s]\n\ny = 2\n", err,
                                    sizeof err), 0);
    CHECK_INT(as_config_find(cfg, "x")->line, 3);
    CHECK_INT(as_config_find(cfg, "s.y")->line, 6);
    CHECK_INT(as_config_count(cfg), 2);
    CHECK_STR(as_config_at(cfg, 0)->key, "x");
    CHECK_STR(as_config_at(cfg, 1)->key, "s.y");
    CHECK(as_config_at(cfg, 2) == NULL);
    CHECK(as_config_find(cfg, "y") == NULL);
    as_config_free(cfg);
}

static void test_parse_errors(void)
{
    static const struct {
        const char *text, *err;
    } cases[] = {
        { "a = 1\nfoo", "a.conf:2: expected 'key = value'" },
        { "a 1", "a.conf:1: expected 'key = value'" },
        { "= 1", "a.conf:1: expected 'key = value'" },
        { "a : 1", "a.conf:1: expected 'key = value'" },
        { "a\n\n\n\n\n\n# x\n\"x\" = 1", "a.conf:1: expected 'key = value'" },
        { "x = 1\n\n\n\n\n\n\"x\" = 1", "a.conf:7: expected 'key = value'" },
        { "dns/x = 1", "a.conf:1: bad key 'dns/x'" },
        { "a b = 1", "a.conf:1: bad key 'a b'" },
        { "a..b = 1", "a.conf:1: bad key 'a..b'" },
        { ".a = 1", "a.conf:1: bad key '.a'" },
        { "a. = 1", "a.conf:1: bad key 'a.'" },
        { "a = 1\na = \"abc", "a.conf:2: unterminated quoted string" },
        { "a = x, \"abc", "a.conf:1: unterminated quoted string" },
        { "a = \"abc\\", "a.conf:1: unterminated quoted string" },
        { "a = \"a\\qb\"", "a.conf:1: bad escape in quoted string (use \\\" \\\\ \\n \\t)" },
        { "[dns", "a.conf:1: expected ']' to close the section name" },
        { "[dns] x", "a.conf:1: unexpected text after section name" },
        { "[d ns]", "a.conf:1: bad section name 'd ns'" },
        { "[dns.]", "a.conf:1: bad section name 'dns.'" },
        { "\n\ninclude \"x", "a.conf:3: unterminated quoted string" },
        { "include \"x\" y", "a.conf:1: unexpected text after the include pattern" },
        { "include \"\"", "a.conf:1: include needs a file name or pattern" },
        { "include \"/nonexistent/authscan-test.conf\"",
          "a.conf:1: include \"/nonexistent/authscan-test.conf\": no such file" },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        struct as_config *cfg = as_config_new();
        char err[256] = "";
        CHECK_INT(as_config_load_string(cfg, "a.conf", cases[i].text, err, sizeof err), -1);
        CHECK_STR(err, cases[i].err);
        as_config_free(cfg);
    }
}

static void test_limits(void)
{
    char err[256];
    struct as_config *cfg;

    /* A line of exactly 64 KiB is fine, one byte more is not. */
    size_t n = 64 * 1024;
    char *big = xmalloc(n + 16);
    memcpy(big, "a = ", 4);
    memset(big + 4, 'x', n - 4);
    big[n] = '\0';
    cfg = as_config_new();
    CHECK_INT(as_config_load_string(cfg, "l.conf", big, err, sizeof err), 0);
    CHECK_INT(strlen(as_config_str(cfg, "a", "")), n - 4);
    as_config_free(cfg);
    memcpy(big, "# c\nb = ", 8);
    memset(big + 8, 'x', n - 3);
    big[n + 5] = '\0';
    cfg = as_config_new();
    CHECK_INT(as_config_load_string(cfg, "l.conf", big, err, sizeof err), -1);
    CHECK_STR(err, "l.conf:2: line too long (limit 65536 bytes)");
    as_config_free(cfg);
    free(big);

    /* NUL bytes can only come from a file. */
    static const char nul[] = "a = 1\nb = x\0y\nc = 2\n";
    write_file("nul.conf", nul, sizeof nul - 1);
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("nul.conf"), err, sizeof err), -1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:2: NUL byte in line", tpath("nul.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);

    /* 16 MiB + 1 byte of comments. */
    size_t fsz = 16u * 1024 * 1024 + 1;
    char *huge = xmalloc(fsz);
    memset(huge, '\n', fsz);
    huge[0] = '#';
    write_file("huge.conf", huge, fsz);
    free(huge);
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("huge.conf"), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: file too large (limit 16 MiB)", tpath("huge.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);
    unlink(tpath("huge.conf"));

    /* Missing files and directories. */
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("missing.conf"), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory",
             tpath("missing.conf"));
    CHECK_STR(err, want);
    CHECK_INT(as_config_load_file(cfg, tmpdir, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot read: is a directory", tmpdir);
    CHECK_STR(err, want);
    as_config_free(cfg);

    /* A tiny error buffer is cut, never overrun. */
    char small[8];
    memset(small, 'Z', sizeof small);
    cfg = as_config_new();
    CHECK_INT(as_config_load_string(cfg, "a.conf", "junk", small, 6), -1);
    CHECK_STR(small, "a.con");
    CHECK(small[6] == 'Z' && small[7] == 'Z');
    CHECK_INT(as_config_load_string(cfg, "a.conf", "junk", NULL, 0), -1);
    as_config_free(cfg);
}

/* ------------------------------------------------------------------ */

static const struct as_config_key top_schema[] = {
    { "workers", AS_OPT_INT, "2", "worker processes" },
    { "enforce", AS_OPT_BOOL, "no", NULL },
    { "ratio", AS_OPT_DOUBLE, NULL, NULL },
    { "name", AS_OPT_STRING, NULL, NULL },
    { "timeout", AS_OPT_DURATION, "1s", NULL },
    { "max_size", AS_OPT_SIZE, "50M", NULL },
    { "servers", AS_OPT_LIST, NULL, NULL },
};

static const struct as_config_key sym_schema[] = {
    { "*.score", AS_OPT_DOUBLE, NULL, NULL },
    { "*.description", AS_OPT_STRING, NULL, NULL },
    { "R_SPECIAL.score", AS_OPT_STRING, NULL, NULL },     /* exact beats wildcard */
};

static void test_check_errors(void)
{
    static const struct {
        const char *text, *prefix, *err;     /* err NULL: passes */
    } cases[] = {
        { "[dns]\nserver = 1", "dns", NULL },
        { "[dns]\n\nsever = 1", "dns", "x.conf:3: unknown key 'dns.sever'" },
        { "dns.sever = 1", "dns.", "x.conf:1: unknown key 'dns.sever'" },
        { "workers = 4", "", NULL },
        { "workers = abc", "", "x.conf:1: bad value 'abc' for 'workers': expected an integer" },
        { "workers = 99999999999999999999",
          "", "x.conf:1: bad value '99999999999999999999' for 'workers': expected an integer" },
        { "enforce = maybe",
          "", "x.conf:1: bad value 'maybe' for 'enforce': expected yes/no, true/false, on/off or 1/0" },
        { "ratio = 1.5x", "", "x.conf:1: bad value '1.5x' for 'ratio': expected a number" },
        { "timeout = -1s",
          "", "x.conf:1: bad value '-1s' for 'timeout': expected a duration like 1.5s" },
        { "max_size = 1T", "", "x.conf:1: bad value '1T' for 'max_size': expected a size like 64k" },
        { "name = anything, really # c", "", NULL },
        { "workers = \"4\"", "", NULL },
        { "workers = 1\nname = x\nworkers = 2",
          "", "x.conf:3: duplicate key 'workers' (first set at line 1)" },
        { "workers = 1\n[ ]\nworkers = 1", "", "x.conf:3: duplicate key 'workers' (first set at line 1)" },
        { "workers += 3", "", "x.conf:1: '+=' used with 'workers', which is not a list" },
        { "servers = a\nservers = b\nservers += c", "", NULL },
        { "workers = 1\n\nunknown.key = 1", "", "x.conf:3: unknown key 'unknown.key'" },
        { "[symbols.R_A]\nscore = 1\ndescription = \"x\"", "symbols", NULL },
        { "[symbols.R_SPECIAL]\nscore = text", "symbols", NULL },
        { "[symbols.R_A]\nscore = high", "symbols",
          "x.conf:2: bad value 'high' for 'symbols.R_A.score': expected a number" },
        { "symbols.R_A.x.score = 1", "symbols", "x.conf:1: unknown key 'symbols.R_A.x.score'" },
        { "symbols.score = 1", "symbols", "x.conf:1: unknown key 'symbols.score'" },
        { "symbolsX.R_A.score = 1", "symbols", NULL },    /* not under the prefix */
        /* the first problem in load order wins */
        { "[symbols.R_A]\nscore = 1\nbogus = 2\nscore = 3", "symbols",
          "x.conf:3: unknown key 'symbols.R_A.bogus'" },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        struct as_config *cfg = as_config_new();
        char err[256] = "";
        CHECK_INT(as_config_load_string(cfg, "x.conf", cases[i].text, err, sizeof err), 0);
        int rc;
        if (strncmp(cases[i].prefix, "symbols", 7) == 0)
            rc = as_config_check(cfg, cases[i].prefix, sym_schema, AS_ARRAY_LEN(sym_schema),
                                 err, sizeof err);
        else if (strncmp(cases[i].prefix, "dns", 3) == 0) {
            static const struct as_config_key dns[] = { { "server", AS_OPT_STRING, NULL, NULL } };
            rc = as_config_check(cfg, cases[i].prefix, dns, 1, err, sizeof err);
        } else
            rc = as_config_check(cfg, "", top_schema, AS_ARRAY_LEN(top_schema), err, sizeof err);
        if (cases[i].err) {
            CHECK_INT(rc, -1);
            CHECK_STR(err, cases[i].err);
        } else {
            if (rc != 0) fprintf(stderr, "check case %zu: %s\n", i, err);
            CHECK_INT(rc, 0);
        }
        as_config_free(cfg);
    }

    /* A mistyped default in the code is caught. */
    static const struct as_config_key bad_def[] = { { "t", AS_OPT_DURATION, "soon", NULL } };
    struct as_config *cfg = as_config_new();
    char err[256];
    CHECK_INT(as_config_check(cfg, "plug", bad_def, 1, err, sizeof err), -1);
    CHECK_STR(err, "schema: bad default 'soon' for 'plug.t': expected a duration like 1.5s");

    /* Long bad values are cut in the message. */
    char text[400];
    snprintf(text, sizeof text, "workers = %0200d", 7);
    text[15] = 'z';
    CHECK_INT(as_config_load_string(cfg, "x.conf", text, err, sizeof err), 0);
    CHECK_INT(as_config_check(cfg, "", top_schema, AS_ARRAY_LEN(top_schema), err, sizeof err), -1);
    CHECK(strstr(err, "...' for 'workers': expected an integer") != NULL);
    as_config_free(cfg);
}

static void test_unclaimed(void)
{
    struct as_config *cfg = as_config_new();
    char err[256];
    CHECK_INT(as_config_load_string(cfg, "u.conf",
                                    "workers = 2\n[symbols.R_A]\nscore = 1\n"
                                    "[spf]\nmax_lookups = 10\n[ ]\nwrokers = 3\nspf.x = 1\n",
                                    err, sizeof err), 0);
    /* Nothing claimed yet: the first entry is reported. */
    CHECK_INT(as_config_check_unclaimed(cfg, err, sizeof err), -1);
    CHECK_STR(err, "u.conf:1: unknown key 'workers'");

    /* An empty prefix covers every key: the failing check still claims
     * "workers". */
    CHECK_INT(as_config_check(cfg, "", top_schema, AS_ARRAY_LEN(top_schema), err, sizeof err), -1);
    CHECK_STR(err, "u.conf:3: unknown key 'symbols.R_A.score'");
    CHECK_INT(as_config_check(cfg, "symbols.", sym_schema, AS_ARRAY_LEN(sym_schema), err,
                              sizeof err), 0);
    CHECK_INT(as_config_check_unclaimed(cfg, err, sizeof err), -1);
    CHECK_STR(err, "u.conf:5: unknown key 'spf.max_lookups'");

    /* A failing check still claims the keys it knows. */
    static const struct as_config_key spf[] = { { "max_lookups", AS_OPT_INT, "10", NULL } };
    CHECK_INT(as_config_check(cfg, "spf", spf, 1, err, sizeof err), -1);
    CHECK_STR(err, "u.conf:8: unknown key 'spf.x'");
    CHECK_INT(as_config_check_unclaimed(cfg, err, sizeof err), -1);
    CHECK_STR(err, "u.conf:7: unknown key 'wrokers'");

    /* Command-line keys are reported without a line number. */
    as_config_free(cfg);
    cfg = as_config_new();
    CHECK_INT(as_config_set(cfg, "bogus", "1", NULL, 0), 0);
    CHECK_INT(as_config_check_unclaimed(cfg, err, sizeof err), -1);
    CHECK_STR(err, "command line: unknown key 'bogus'");
    static const struct as_config_key b[] = { { "bogus", AS_OPT_INT, NULL, NULL } };
    CHECK_INT(as_config_check(cfg, "", b, 1, err, sizeof err), 0);
    CHECK_INT(as_config_check_unclaimed(cfg, err, sizeof err), 0);
    as_config_free(cfg);
}

/* ------------------------------------------------------------------ */

static void test_overrides(void)
{
    struct as_config *cfg = as_config_new();
    char err[256];
    CHECK_INT(as_config_load_string(cfg, "defaults.conf",
                                    "workers = 2\nname = shipped\ntimeout = 1s\n", err, sizeof err), 0);
    CHECK_INT(as_config_load_string(cfg, "site.conf", "workers = 8\n", err, sizeof err), 0);
    CHECK_INT(as_config_check(cfg, "", top_schema, AS_ARRAY_LEN(top_schema), err, sizeof err), 0);
    CHECK_INT(as_config_int(cfg, "workers", 0), 8);
    CHECK_STR(as_config_find(cfg, "workers")->file, "site.conf");
    CHECK_INT(as_config_find(cfg, "workers")->line, 1);
    CHECK_STR(as_config_str(cfg, "name", NULL), "shipped");

    /* Overridden entries are not listed. */
    CHECK_INT(as_config_count(cfg), 3);
    CHECK_STR(as_config_at(cfg, 0)->key, "name");
    CHECK_STR(as_config_at(cfg, 1)->key, "timeout");
    CHECK_STR(as_config_at(cfg, 2)->key, "workers");
    CHECK_STR(as_config_at(cfg, 2)->file, "site.conf");

    /* The command line overrides the files, and a later set the earlier. */
    CHECK_INT(as_config_set(cfg, "workers", "16", NULL, 0), 0);
    CHECK_INT(as_config_int(cfg, "workers", 0), 16);
    CHECK_STR(as_config_find(cfg, "workers")->file, "command line");
    CHECK_INT(as_config_find(cfg, "workers")->line, 0);
    CHECK_INT(as_config_set(cfg, "workers", "17", "--workers", 0), 0);
    CHECK_INT(as_config_int(cfg, "workers", 0), 17);
    CHECK_STR(as_config_find(cfg, "workers")->file, "--workers");
    CHECK_INT(as_config_check(cfg, "", top_schema, AS_ARRAY_LEN(top_schema), err, sizeof err), 0);
    CHECK_INT(as_config_count(cfg), 3);

    CHECK_INT(as_config_set(cfg, "bad key", "1", NULL, 0), -1);
    CHECK_INT(as_config_set(cfg, "", "1", NULL, 0), -1);
    CHECK_INT(as_config_set(cfg, "a..b", "1", NULL, 0), -1);
    CHECK_INT(as_config_set(cfg, "ok", NULL, NULL, 0), -1);

    /* A bad value on the command line is reported with its origin. */
    CHECK_INT(as_config_set(cfg, "timeout", "forever", "--timeout", 0), 0);
    CHECK_INT(as_config_check(cfg, "", top_schema, AS_ARRAY_LEN(top_schema), err, sizeof err), -1);
    CHECK_STR(err, "--timeout: bad value 'forever' for 'timeout': expected a duration like 1.5s");
    as_config_free(cfg);
}

static void test_lists(void)
{
    static const struct {
        const char *a, *b;           /* file a, then file b (NULL: none) */
        const char *want;
    } cases[] = {
        { "servers = x, y", NULL, "x|y" },
        { "servers = x\nservers = y\nservers += z", NULL, "x|y|z" },
        { "servers = x, y", "servers = z", "z" },
        { "servers = x, y", "servers += z", "x|y|z" },
        { "servers = x, y", "servers += z\nservers += w", "x|y|z|w" },
        { "servers = x, y", "servers += z\nservers = w", "z|w" },    /* a plain line: replace */
        { "servers = x, y", "workers = 1", "x|y" },
        { "servers = x, y", "servers =", "" },                       /* cleared */
        { "servers = x, \"b,c\", d", NULL, "x|b,c|d" },
        { "servers = \"b,c\"", NULL, "b,c" },
        { "servers = \"b,c\", d", NULL, "b,c|d" },
        { "servers = a,,b,", NULL, "a|b" },
        { "servers = a, \"\", b", NULL, "a||b" },
        { "servers = \" sp \" , x\\y", NULL, " sp |x\\y" },
        { "servers = \"q\\\"x\"y, z", NULL, "q\"xy|z" },
        { "[ ]\nservers = 1\n[]\nservers = 2", NULL, "1|2" },
        { "servers += a", "servers += b", "a|b" },
        { "servers = x", "servers = z\nservers += q\nservers = w", "z|q|w" },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(cases); i++) {
        struct as_config *cfg = as_config_new();
        char err[256];
        CHECK_INT(as_config_load_string(cfg, "a.conf", cases[i].a, err, sizeof err), 0);
        if (cases[i].b)
            CHECK_INT(as_config_load_string(cfg, "b.conf", cases[i].b, err, sizeof err), 0);
        CHECK_INT(as_config_check(cfg, "", top_schema, AS_ARRAY_LEN(top_schema), err, sizeof err), 0);
        const char *got = joined(cfg, "servers");
        if (strcmp(got, cases[i].want) != 0) fprintf(stderr, "list case %zu\n", i);
        CHECK_STR(got, cases[i].want);
        as_config_free(cfg);
    }

    /* Unset key: empty, NULL-terminated. */
    struct as_config *cfg = as_config_new();
    char err[256];
    const char *const *items = NULL;
    CHECK_INT(as_config_list(cfg, "servers", &items), 0);
    CHECK(items != NULL && items[0] == NULL);

    /* Pointers stay valid after later loads change the list. */
    CHECK_INT(as_config_load_string(cfg, "a.conf", "servers = a, b", err, sizeof err), 0);
    const char *const *first;
    CHECK_INT(as_config_list(cfg, "servers", &first), 2);
    CHECK_INT(as_config_list(cfg, "servers", &items), 2);
    CHECK(items == first);                                  /* cached */
    CHECK_INT(as_config_set(cfg, "servers", "c", NULL, 1), 0);
    CHECK_STR(joined(cfg, "servers"), "a|b|c");
    CHECK_STR(first[1], "b");
    CHECK_INT(as_config_set(cfg, "servers", "d, e", NULL, 0), 0);
    CHECK_STR(joined(cfg, "servers"), "d|e");
    CHECK_INT(as_config_count(cfg), 1);
    CHECK_STR(as_config_at(cfg, 0)->value, "d, e");
    as_config_free(cfg);

    /* Many lines for one key stay linear (a quadratic walk would take
     * minutes here under valgrind). */
    struct sbuf big = {0};
    for (int i = 0; i < 100000; i++) sbuf_printf(&big, "servers = s%d\n", i);
    cfg = as_config_new();
    double t0 = as_now();
    CHECK_INT(as_config_load_string(cfg, "big.conf", big.data, err, sizeof err), 0);
    CHECK_INT(as_config_load_string(cfg, "big2.conf", big.data, err, sizeof err), 0);
    CHECK_INT(as_config_list(cfg, "servers", &items), 100000);
    CHECK_STR(items[99999], "s99999");
    CHECK_INT(as_config_count(cfg), 100000);
    CHECK_STR(as_config_at(cfg, 0)->file, "big2.conf");
    CHECK(as_now() - t0 < 20);
    as_config_free(cfg);
    sbuf_free(&big);
}

/* ------------------------------------------------------------------ */

static void test_includes(void)
{
    char err[PATH_MAX + 256], want[PATH_MAX + 256];
    mkdir(tpath("inc"), 0700);
    mkdir(tpath("inc/local.d"), 0700);
    write_str("inc/main.conf",
              "workers = 2\nservers = a\n[dns]\ninclude \"local.d/*.conf\"  # overrides\n"
              "timeout = 5s\n");
    write_str("inc/local.d/20-b.conf", "workers = 4\nservers += c\n");
    write_str("inc/local.d/10-a.conf", "[x]\nworkers = 3\n[ ]\nservers += b\n");
    write_str("inc/local.d/ignored.txt", "workers = 99\n");

    struct as_config *cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/main.conf"), err, sizeof err), 0);
    CHECK_INT(as_config_int(cfg, "workers", 0), 4);                  /* 10-a, then 20-b */
    CHECK_STR(as_config_find(cfg, "workers")->file, tpath("inc/local.d/20-b.conf"));
    CHECK_INT(as_config_int(cfg, "x.workers", 0), 3);                /* own sections */
    CHECK_STR(joined(cfg, "servers"), "a|b|c");
    /* the includer's section is back after the include */
    CHECK_STR(as_config_str(cfg, "dns.timeout", NULL), "5s");
    CHECK_INT(as_config_find(cfg, "dns.timeout")->line, 5);
    CHECK_STR(as_config_find(cfg, "dns.timeout")->file, tpath("inc/main.conf"));
    static const struct as_config_key sch[] = {
        { "workers", AS_OPT_INT, NULL, NULL }, { "servers", AS_OPT_LIST, NULL, NULL },
        { "x.workers", AS_OPT_INT, NULL, NULL }, { "dns.timeout", AS_OPT_DURATION, NULL, NULL },
    };
    CHECK_INT(as_config_check(cfg, "", sch, AS_ARRAY_LEN(sch), err, sizeof err), 0);
    CHECK_INT(as_config_check_unclaimed(cfg, err, sizeof err), 0);
    as_config_free(cfg);

    /* A scalar set twice in one file is a duplicate even across an include. */
    write_str("inc/dup.conf", "workers = 1\ninclude \"local.d/10-a.conf\"\nworkers = 2\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/dup.conf"), err, sizeof err), 0);
    CHECK_INT(as_config_check(cfg, "", sch, AS_ARRAY_LEN(sch), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: duplicate key 'workers' (first set at line 1)",
             tpath("inc/dup.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);

    /* A list line after an include replaces what the included file said. */
    write_str("inc/after.conf", "servers = a\ninclude \"local.d/20-b.conf\"\nservers = z\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/after.conf"), err, sizeof err), 0);
    CHECK_STR(joined(cfg, "servers"), "z");
    as_config_free(cfg);

    /* An error inside an included file names that file and line. */
    as_config_free(NULL);                              /* allowed */
    mkdir(tpath("inc/bad.d"), 0700);
    write_str("inc/bad.d/x.conf", "ok = 1\n\nbroken line\n");
    write_str("inc/bad.conf", "include \"bad.d/*.conf\"\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/bad.conf"), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: expected 'key = value'", tpath("inc/bad.d/x.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);

    /* Patterns matching nothing are fine; a missing plain name is not. */
    write_str("inc/none.conf", "include \"nothing.d/*.conf\"\na = 1\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/none.conf"), err, sizeof err), 0);
    CHECK_STR(as_config_str(cfg, "a", NULL), "1");
    as_config_free(cfg);
    write_str("inc/miss.conf", "\ninclude \"nothing.conf\"\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/miss.conf"), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: include \"nothing.conf\": no such file",
             tpath("inc/miss.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);

    /* Absolute patterns and bare (unquoted) ones. */
    char text[PATH_MAX + 64];
    snprintf(text, sizeof text, "include %s # bare\n", tpath("inc/local.d/10-a.conf"));
    cfg = as_config_new();
    CHECK_INT(as_config_load_string(cfg, "<embedded:t>", text, err, sizeof err), 0);
    CHECK_INT(as_config_int(cfg, "x.workers", 0), 3);
    as_config_free(cfg);

    /* Cycles: direct and through another file. */
    write_str("inc/self.conf", "a = 1\ninclude \"self.conf\"\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/self.conf"), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: include cycle: \"%s\" is already being read",
             tpath("inc/self.conf"), tpath("inc/self.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);
    write_str("inc/ping.conf", "include \"pong.conf\"\n");
    write_str("inc/pong.conf", "\n\ninclude \"ping.conf\"\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/ping.conf"), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: include cycle: \"%s\" is already being read",
             tpath("inc/pong.conf"), tpath("inc/ping.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);

    /* Depth: d0 -> d1 -> ... ; 16 files open at once is the limit. */
    for (int i = 0; i < 20; i++) {
        char name[64], body[64];
        snprintf(name, sizeof name, "inc/d%d.conf", i);
        snprintf(body, sizeof body, "k%d = 1\ninclude \"d%d.conf\"\n", i, i + 1);
        write_str(name, body);
    }
    write_str("inc/d16.conf", "end = 1\n");          /* chain of 17 files: too deep */
    cfg = as_config_new();
    CHECK_INT(as_config_load_file(cfg, tpath("inc/d0.conf"), err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: include depth limit (16) exceeded by \"%s\"",
             tpath("inc/d15.conf"), tpath("inc/d16.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);
    cfg = as_config_new();                             /* 16 files: fine */
    CHECK_INT(as_config_load_file(cfg, tpath("inc/d1.conf"), err, sizeof err), 0);
    CHECK_STR(as_config_str(cfg, "end", NULL), "1");
    as_config_free(cfg);
}

static void test_load_dir(void)
{
    char err[PATH_MAX + 256], want[PATH_MAX + 256];
    mkdir(tpath("dir"), 0700);
    mkdir(tpath("dir/sub.conf"), 0700);                /* a directory: skipped */
    write_str("dir/b.conf", "workers = 2\nservers = b\n");
    write_str("dir/a.conf", "workers = 1\nservers = a\n");
    write_str("dir/c.conf.bak", "workers = 9\n");
    write_str("dir/.hidden.conf", "workers = 9\n");
    write_str("dir/B.conf", "name = upper\n");         /* 'B' < 'a' in byte order */

    struct as_config *cfg = as_config_new();
    CHECK_INT(as_config_load_dir(cfg, tpath("dir"), 0, err, sizeof err), 0);
    CHECK_INT(as_config_int(cfg, "workers", 0), 2);
    CHECK_STR(joined(cfg, "servers"), "b");
    CHECK_INT(as_config_count(cfg), 3);
    CHECK_STR(as_config_at(cfg, 0)->key, "name");      /* B.conf first */
    CHECK_STR(as_config_at(cfg, 1)->file, tpath("dir/b.conf"));

    CHECK_INT(as_config_load_dir(cfg, tpath("nodir"), 1, err, sizeof err), 0);
    CHECK_INT(as_config_load_dir(cfg, tpath("nodir"), 0, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot open directory: No such file or directory",
             tpath("nodir"));
    CHECK_STR(err, want);
    as_config_free(cfg);

    /* An error in one file stops the load and names it. */
    write_str("dir/z.conf", "ok = 1\nworkers = \"x\n");
    cfg = as_config_new();
    CHECK_INT(as_config_load_dir(cfg, tpath("dir"), 0, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: unterminated quoted string", tpath("dir/z.conf"));
    CHECK_STR(err, want);
    as_config_free(cfg);
}

/* ------------------------------------------------------------------ */

static void test_getters(void)
{
    struct as_config *cfg = as_config_new();
    char err[256];
    CHECK_INT(as_config_load_string(cfg, "g.conf",
                                    "b = on\ni = -42\nd = 2.5e1\ns = \"text\"\nt = 200ms\n"
                                    "z = 64k\nbad = xyz\n", err, sizeof err), 0);
    CHECK_INT(as_config_bool(cfg, "b", 0), 1);
    CHECK_INT(as_config_bool(cfg, "missing", 1), 1);
    CHECK_INT(as_config_bool(cfg, "bad", 0), 0);
    CHECK_INT(as_config_int(cfg, "i", 0), -42);
    CHECK_INT(as_config_int(cfg, "bad", 7), 7);
    CHECK_DBL(as_config_double(cfg, "d", 0), 25.0);
    CHECK_DBL(as_config_double(cfg, "missing", 1.25), 1.25);
    CHECK_STR(as_config_str(cfg, "s", NULL), "text");
    CHECK_STR(as_config_str(cfg, "missing", "def"), "def");
    CHECK_DBL(as_config_duration(cfg, "t", 0), 0.2);
    CHECK_DBL(as_config_duration(cfg, "bad", 3), 3);
    CHECK_INT(as_config_size(cfg, "z", 0), 65536);
    CHECK_INT(as_config_size(cfg, "bad", 9), 9);
    as_config_free(cfg);
}

static void test_parsers(void)
{
    static const struct { const char *s; int ok, v; } bools[] = {
        { "yes", 1, 1 }, { "no", 1, 0 }, { "true", 1, 1 }, { "false", 1, 0 },
        { "on", 1, 1 }, { "off", 1, 0 }, { "1", 1, 1 }, { "0", 1, 0 },
        { "YES", 1, 1 }, { "Off", 1, 0 }, { "", 0, 0 }, { "2", 0, 0 }, { "y", 0, 0 },
        { " yes", 0, 0 }, { "yes ", 0, 0 }, { "enable", 0, 0 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(bools); i++) {
        int v = -1;
        CHECK_INT(as_parse_bool(bools[i].s, &v), bools[i].ok ? 0 : -1);
        if (bools[i].ok) CHECK_INT(v, bools[i].v);
    }

    static const struct { const char *s; int ok; long long v; } ints[] = {
        { "0", 1, 0 }, { "42", 1, 42 }, { "-7", 1, -7 }, { "+7", 1, 7 }, { "007", 1, 7 },
        { "9223372036854775807", 1, LLONG_MAX }, { "-9223372036854775808", 1, LLONG_MIN },
        { "9223372036854775808", 0, 0 }, { "-9223372036854775809", 0, 0 },
        { "99999999999999999999999", 0, 0 }, { "", 0, 0 }, { "-", 0, 0 }, { "1.0", 0, 0 },
        { "0x10", 0, 0 }, { " 1", 0, 0 }, { "1 ", 0, 0 }, { "1k", 0, 0 }, { "1e3", 0, 0 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(ints); i++) {
        long long v = -1;
        int rc = as_parse_int(ints[i].s, &v);
        if (rc != (ints[i].ok ? 0 : -1)) fprintf(stderr, "int '%s'\n", ints[i].s);
        CHECK_INT(rc, ints[i].ok ? 0 : -1);
        if (ints[i].ok) CHECK_INT(v, ints[i].v);
    }

    static const struct { const char *s; int ok; double v; } dbls[] = {
        { "0", 1, 0 }, { "1.5", 1, 1.5 }, { "-0.2", 1, -0.2 }, { "+3", 1, 3 }, { ".5", 1, 0.5 },
        { "5.", 1, 5 }, { "1e3", 1, 1000 }, { "2.5E-1", 1, 0.25 }, { "-1e+2", 1, -100 },
        { "1e999", 0, 0 }, { "inf", 0, 0 }, { "nan", 0, 0 }, { "0x10", 0, 0 }, { "", 0, 0 },
        { ".", 0, 0 }, { "1.5.2", 0, 0 }, { "1e", 0, 0 }, { " 1", 0, 0 }, { "1,5", 0, 0 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(dbls); i++) {
        double v = -1;
        int rc = as_parse_double(dbls[i].s, &v);
        if (rc != (dbls[i].ok ? 0 : -1)) fprintf(stderr, "double '%s'\n", dbls[i].s);
        CHECK_INT(rc, dbls[i].ok ? 0 : -1);
        if (dbls[i].ok) CHECK_DBL(v, dbls[i].v);
    }

    static const struct { const char *s; int ok; double v; } durs[] = {
        { "3", 1, 3 }, { "1.5s", 1, 1.5 }, { "200ms", 1, 0.2 }, { "2m", 1, 120 },
        { "1h", 1, 3600 }, { "1d", 1, 86400 }, { "0", 1, 0 }, { "0.5m", 1, 30 },
        { ".25s", 1, 0.25 }, { "1500ms", 1, 1.5 },
        { "-1", 0, 0 }, { "-1s", 0, 0 }, { "+1s", 0, 0 }, { "", 0, 0 }, { "s", 0, 0 },
        { "1.5 s", 0, 0 }, { "1x", 0, 0 }, { "1S", 0, 0 }, { "1sec", 0, 0 }, { "1e3s", 0, 0 },
        { "1w", 0, 0 }, { "1ss", 0, 0 }, { "inf", 0, 0 }, { "0x1s", 0, 0 },
        { "1e400", 0, 0 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(durs); i++) {
        double v = -1;
        int rc = as_parse_duration(durs[i].s, &v);
        if (rc != (durs[i].ok ? 0 : -1)) fprintf(stderr, "duration '%s'\n", durs[i].s);
        CHECK_INT(rc, durs[i].ok ? 0 : -1);
        if (durs[i].ok) CHECK_DBL(v, durs[i].v);
    }
    /* A number too large to be finite once multiplied. */
    char huge[400];
    memset(huge, '9', 308);
    strcpy(huge + 308, "d");
    double dv;
    CHECK_INT(as_parse_duration(huge, &dv), -1);

    static const struct { const char *s; int ok; unsigned long long v; } sizes[] = {
        { "0", 1, 0 }, { "512", 1, 512 }, { "64k", 1, 65536 }, { "64K", 1, 65536 },
        { "50M", 1, 50ULL << 20 }, { "50m", 1, 50ULL << 20 }, { "1G", 1, 1ULL << 30 },
        { "2g", 1, 2ULL << 30 }, { "64kB", 1, 65536 }, { "64KB", 1, 65536 }, { "512B", 1, 512 },
        { "18446744073709551615", 1, ULLONG_MAX }, { "17179869183G", 1, 17179869183ULL << 30 },
        { "18446744073709551616", 0, 0 }, { "17179869184G", 0, 0 },
        { "", 0, 0 }, { "k", 0, 0 }, { "-1", 0, 0 }, { "+1", 0, 0 }, { "1.5M", 0, 0 },
        { "1T", 0, 0 }, { "1kk", 0, 0 }, { "1 k", 0, 0 }, { "1BB", 0, 0 }, { "1b", 0, 0 },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(sizes); i++) {
        unsigned long long v = 1;
        int rc = as_parse_size(sizes[i].s, &v);
        if (rc != (sizes[i].ok ? 0 : -1)) fprintf(stderr, "size '%s'\n", sizes[i].s);
        CHECK_INT(rc, sizes[i].ok ? 0 : -1);
        if (sizes[i].ok) CHECK(v == sizes[i].v);
    }

    static const struct { enum as_opt_type t; const char *v, *expected; } vok[] = {
        { AS_OPT_BOOL, "on", NULL },
        { AS_OPT_BOOL, "x", "expected yes/no, true/false, on/off or 1/0" },
        { AS_OPT_INT, "x", "expected an integer" },
        { AS_OPT_DOUBLE, "x", "expected a number" },
        { AS_OPT_DURATION, "x", "expected a duration like 1.5s" },
        { AS_OPT_SIZE, "x", "expected a size like 64k" },
        { AS_OPT_STRING, "", NULL },
        { AS_OPT_LIST, "a, \"b", NULL },
    };
    for (size_t i = 0; i < AS_ARRAY_LEN(vok); i++) {
        const char *exp = NULL;
        CHECK_INT(as_config_value_ok(vok[i].t, vok[i].v, &exp), vok[i].expected ? -1 : 0);
        CHECK_STR(exp, vok[i].expected);
    }
}

/* Robustness: random and truncated inputs never crash, and errors always
 * carry a location. */
static void test_garbage(void)
{
    static const char alphabet[] = "ab=+#\"\\[] \t\n.,*-x";
    unsigned seed = 12345;
    char text[200];
    int errors = 0, located = 0;
    for (int round = 0; round < 3000; round++) {
        size_t n = (size_t)(round % 150);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            text[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        text[n] = '\0';
        /* No includes: the garbage must not read files. */
        for (char *p = strstr(text, "include"); p; p = strstr(p, "include")) *p = 'I';
        struct as_config *cfg = as_config_new();
        char err[256] = "";
        if (as_config_load_string(cfg, "g.conf", text, err, sizeof err) < 0) {
            errors++;
            if (strncmp(err, "g.conf:", 7) == 0) located++;
        }
        const char *const *items;
        for (size_t i = 0; i < as_config_count(cfg); i++)
            as_config_list(cfg, as_config_at(cfg, i)->key, &items);
        as_config_free(cfg);
    }
    CHECK(errors > 100);
    CHECK_INT(located, errors);
}

/* as_config_find_item: the line that brought one item of a list, across
 * "+=" lines and files, and the effective entry for an item nobody wrote. */
static void test_find_item(void)
{
    struct as_config *cfg = as_config_new();
    char err[256];
    CHECK_INT(as_config_load_string(cfg, "a.conf", "l = one, two\nx = 1\nl += \"th,ree\"\n",
                                    err, sizeof err), 0);
    CHECK_INT(as_config_load_string(cfg, "b.conf", "l += four\n", err, sizeof err), 0);
    const struct as_config_entry *e = as_config_find_item(cfg, "l", "two");
    CHECK(e && strcmp(e->file, "a.conf") == 0 && e->line == 1);
    e = as_config_find_item(cfg, "l", "th,ree");
    CHECK(e && strcmp(e->file, "a.conf") == 0 && e->line == 3);
    e = as_config_find_item(cfg, "l", "four");
    CHECK(e && strcmp(e->file, "b.conf") == 0 && e->line == 1);
    e = as_config_find_item(cfg, "l", "five");           /* falls back to the last line */
    CHECK(e && strcmp(e->file, "b.conf") == 0);
    CHECK(as_config_find_item(cfg, "nokey", "one") == NULL);
    /* a later plain "=" replaces the list: the old line is not blamed */
    CHECK_INT(as_config_load_string(cfg, "c.conf", "\nl = two\n", err, sizeof err), 0);
    e = as_config_find_item(cfg, "l", "two");
    CHECK(e && strcmp(e->file, "c.conf") == 0 && e->line == 2);
    char at[64];
    CHECK_STR(as_config_where(e, at, sizeof at), "c.conf:2");
    CHECK_INT(as_config_set(cfg, "y", "1", NULL, 0), 0);
    CHECK_STR(as_config_where(as_config_find(cfg, "y"), at, sizeof at), "command line");
    as_config_free(cfg);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/authscan-test-config-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }

    test_syntax();
    test_parse_errors();
    test_limits();
    test_check_errors();
    test_unclaimed();
    test_overrides();
    test_lists();
    test_includes();
    test_load_dir();
    test_getters();
    test_find_item();
    test_parsers();
    test_garbage();

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done();
}
