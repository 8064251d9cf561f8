/*
 * fuzz_report.c - libFuzzer target for what `authscan report` parses
 * (core/bin/report.c, report_mail.c).  Everything it reads came from mail
 * or DNS: rows and policies the report plugin wrote to Redis (domains,
 * selectors, envelope addresses, the published record), rua/ruf lists
 * from _dmarc records, failure-queue entries.  The first byte picks:
 *
 *   0  a rua/ruf list: rpt_parse_dests()
 *   1  a policy line, then row lines: decoded as report_domain() does,
 *      written as XML in both formats and gzipped; the XML must be
 *      well-formed (libxml2 reads it back) whatever the rows hold
 *   2  a failure-queue entry: split and unescaped as failure_one() does,
 *      then the ARF mail; its head must keep its seven fields (no field
 *      or line injected from the entry) and no bare CR or LF
 *
 * The program's sources are compiled into this file: the parsers are
 * static, and this tests the very code the command runs.
 *
 *   cmake -DAUTHSCAN_FUZZ=ON (clang), or scripts/fuzz
 */
#include "../../core/bin/report.c"
#include "../../core/bin/report_mail.c"

#include <libxml/parser.h>

static struct rpt fuzz_rpt(void)
{
    struct rpt r = {0};
    r.conf.org_name = "Fuzz Org";
    r.conf.email = "dmarc@receiver.test";
    r.conf.domain = "receiver.test";
    r.conf.redact = 1;
    r.format = "auto";
    return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    xmlInitParser();
    return 0;
}

static void fuzz_dests(char *s)
{
    struct rpt_dest d[RPT_MAX_DESTS];
    size_t n = rpt_parse_dests(s, d, RPT_MAX_DESTS, "example.org");
    if (n > RPT_MAX_DESTS) abort();
    for (size_t i = 0; i < n; i++)
        if (strlen(d[i].uri) >= sizeof d[i].uri || strlen(d[i].addr) >= sizeof d[i].addr ||
            (d[i].host && (d[i].host < d[i].addr || d[i].host > d[i].addr + strlen(d[i].addr))))
            abort();
}

static void fuzz_rows(char *s)
{
    char *lines[64];
    size_t n = split(s, '\n', lines, AS_ARRAY_LEN(lines));
    if (n < 2) return;
    struct rpt_policy pol;
    if (split(lines[0], '\t', pol.f, AS_REPORT_POLICY_FIELDS) != AS_REPORT_POLICY_FIELDS ||
        strcmp(pol.f[0], AS_REPORT_ROW_VERSION) != 0)
        return;
    for (size_t i = 1; i < AS_REPORT_POLICY_FIELDS; i++) unesc(pol.f[i]);
    struct rpt r = fuzz_rpt();
    struct rpt_row rows[64];
    size_t nrows = 0;
    for (size_t i = 1; i < n; i++)
        if (row_decode(lines[i], (long long)i, &rows[nrows]) == 0) nrows++;
    if (nrows == 0) return;
    qsort(rows, nrows, sizeof *rows, cmp_rows);
    for (int fmt = FMT_RFC7489; fmt <= FMT_DMARCBIS; fmt++) {
        struct rpt_report rep = { .pd = "example.org", .day = "20261205", .id = "fuzz",
                                  .begin = 1796428800, .end = 1796428800 + 86399,
                                  .fmt = (enum rpt_format)fmt, .pol = &pol, .rows = rows,
                                  .nrows = nrows };
        struct sbuf xml = {0}, gz = {0};
        if (write_xml(&r, &rep, &xml) == 0) {
            xmlDocPtr doc = xmlReadMemory(xml.data, (int)xml.len, "report.xml", NULL,
                                          XML_PARSE_NONET | XML_PARSE_NOERROR |
                                          XML_PARSE_NOWARNING);
            if (!doc) {   /* our writer made something no reader takes */
                const char *dump = getenv("FUZZ_REPORT_DUMP");
                FILE *fp = dump ? fopen(dump, "wb") : NULL;
                if (fp) {
                    fwrite(xml.data, 1, xml.len, fp);
                    fclose(fp);
                }
                abort();
            }
            xmlFreeDoc(doc);
            if (gzip_buf(&xml, &gz) < 0) abort();
        }
        sbuf_free(&xml);
        sbuf_free(&gz);
    }
    for (size_t i = 0; i < nrows; i++) row_free(&rows[i]);
}

static void fuzz_failure(char *entry)
{
    char *f[F__COUNT];
    if (split_fields(entry, f, F__COUNT) != F__COUNT || strcmp(f[F_VER], "1") != 0) return;
    for (int i = 0; i < F__COUNT; i++)
        if (i != F_DKIM && *f[i]) as_report_unescape(f[i], strlen(f[i]));
    struct rpt_dest d[RPT_MAX_DESTS];
    rpt_parse_dests(f[F_RUF], d, RPT_MAX_DESTS, f[F_PD]);
    struct rpt r = fuzz_rpt();
    struct sbuf m = {0};
    build_arf(&r, f, "ruf@example.org", &m);
    const char *end = m.data ? strstr(m.data, "\r\n\r\n") : NULL;
    if (!end) abort();
    size_t fields = 0;
    for (const char *p = m.data; p <= end;) {
        if (*p != ' ' && *p != '\t') fields++;   /* a continuation line adds no field */
        const char *nl = strstr(p, "\r\n");
        if (!nl) break;
        p = nl + 2;
    }
    if (fields != 7) abort();   /* From To Date Subject Message-ID MIME-Version Content-Type */
    for (size_t i = 0; i < m.len; i++) {
        if (m.data[i] == '\n' && (i == 0 || m.data[i - 1] != '\r')) abort();
        if (m.data[i] == '\r' && (i + 1 >= m.len || m.data[i + 1] != '\n')) abort();
    }
    /* the MIME structure is ours: three parts, whatever the entry holds */
    size_t bounds = 0;
    for (const char *p = m.data; (p = strstr(p, "\r\n--authscan-arf-part")); p += 2) bounds++;
    if (bounds != 4) abort();
    /* and so are the feedback report's fields: one line each */
    const char *fb = strstr(m.data, "Content-Type: message/feedback-report\r\n\r\n");
    if (!fb) abort();
    fb += strlen("Content-Type: message/feedback-report\r\n\r\n");
    static const char *const known[] = {
        "Feedback-Type:", "User-Agent:", "Version:", "Original-Mail-From:", "Original-Rcpt-To:",
        "Arrival-Date:", "Source-IP:", "Reported-Domain:", "Authentication-Results:",
        "Auth-Failure:", "Identity-Alignment:", "DKIM-Domain:", "DKIM-Selector:", "SPF-DNS:",
    };
    for (const char *p = fb; strncmp(p, "\r\n", 2) != 0;) {
        size_t k = 0;
        while (k < AS_ARRAY_LEN(known) && strncmp(p, known[k], strlen(known[k])) != 0) k++;
        if (k == AS_ARRAY_LEN(known)) abort();
        p = strstr(p, "\r\n");
        if (!p) abort();
        p += 2;
    }
    sbuf_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (len < 1) return 0;
    char *s = malloc(len);
    if (!s) return 0;
    memcpy(s, buf + 1, len - 1);
    s[len - 1] = '\0';
    switch (buf[0] % 3) {
    case 0: fuzz_dests(s); break;
    case 1: fuzz_rows(s); break;
    default: fuzz_failure(s); break;
    }
    free(s);
    return 0;
}
