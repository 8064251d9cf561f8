/*
 * authscan/report.h - what the "report" plugin stores in Redis for DMARC
 * reporting, and how a reader (authscan report, a site's own tooling)
 * decodes it.  docs/reports.md describes the same with examples.
 *
 * Keys (every one built with as_redis_key(): redis.prefix, then a hash
 * tag, then the name; DAY is the UTC day as YYYYMMDD):
 *
 *   {PD}rr:DAY   HASH  aggregate rows of policy domain PD: field = one
 *                      encoded row (below), value = message count.  One
 *                      HINCRBY per message: rows are aggregated when they
 *                      are written, and two rows that differ in any one
 *                      identifier are two fields.
 *   {PD}rp:DAY   HASH  the policy PD published that day: field = one
 *                      encoded policy (below), value = messages seen with
 *                      it (a record that changed during the day is two
 *                      fields; the report uses the most frequent).
 *   {PD}rs:DAY   HASH  reports sent (written by authscan report):
 *                      field = destination URI, value = Report-ID.
 *   {report:}rd:DAY SET  policy domains with rows that day: the index the
 *                      report command reads instead of SCANning Redis.
 *   {report:}rl:DAY STRING  the lock of one report run for DAY (SET NX PX).
 *   {report:}fq  LIST  failure reports waiting to be sent (LPUSH/RPOP),
 *                      trimmed to report.failure_queue_max entries.
 *   {report:}fr:DAY HASH  failure reports sent per destination that day.
 *
 * Every key the plugin writes gets report.ttl (EXPIRE) on each write, so
 * data that is never reported goes away by itself.
 *
 * Encoding: fields separated by TAB; inside a field, list items by ','
 * and parts of an item by ';' (reasons: "type" or "type=comment").  Every
 * byte outside 0x21..0x7e and each of % , ; = TAB is written as %XX, so
 * no value from a message can add a field or an item.
 *
 * Row (version 1, first field "1"):
 *   1  source IP as text
 *   2  disposition applied: pass | none | quarantine | reject
 *   3  DMARC-aligned DKIM: pass | fail
 *   4  DMARC-aligned SPF: pass | fail
 *   5  override reasons: mailing_list, local_policy, trusted_forwarder,
 *      sampled_out, policy_test_mode, other; each may carry "=comment"
 *   6  header_from (the Author Domain)
 *   7  envelope_from (MAIL FROM domain; empty for the null sender)
 *   8  envelope_to (first RCPT TO domain; empty unless report.envelope_to)
 *   9  SPF: "domain;scope;result" (scope mfrom | helo), empty if unchecked
 *  10  DKIM: "domain;selector;result" for every signature evaluated
 *
 * Policy (version 1, first field "1"):
 *   1  discovery: psl | tree
 *   2  p, 3 sp, 4 np: none | quarantine | reject | "" (absent)
 *   5  adkim, 6 aspf: r | s
 *   7  pct (0..100)
 *   8  psd: y | n | u
 *   9  testing: y | n
 *  10  rua, 11 ruf (raw URI lists, "" if absent), 12 fo
 *
 * Failure report queue entry: the same escaping, fields separated by TAB,
 * see docs/reports.md ("Failure reports").
 */
#ifndef AUTHSCAN_REPORT_H
#define AUTHSCAN_REPORT_H

#include <stddef.h>

#define AS_REPORT_ROW_VERSION "1"
#define AS_REPORT_ROW_FIELDS 11      /* version + 10 */
#define AS_REPORT_POLICY_FIELDS 13   /* version + 12 */
#define AS_REPORT_INDEX_TAG "report:"

/* 1 if byte c must be written as %XX inside a field. */
static inline int as_report_must_escape(unsigned char c)
{
    return c < 0x21 || c > 0x7e || c == '%' || c == ',' || c == ';' || c == '=' ||
           c == '\t';
}

/* Bytes as_report_escape() writes for s (without the NUL). */
static inline size_t as_report_escaped_len(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) n += as_report_must_escape((unsigned char)*s) ? 3 : 1;
    return n;
}

/* Writes s escaped at out (room for as_report_escaped_len(s) bytes);
 * returns the end.  NULL s writes nothing. */
static inline char *as_report_escape(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (as_report_must_escape(c)) {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        } else {
            *out++ = (char)c;
        }
    }
    return out;
}

/* Decodes %XX in place over [s, s+len) and NUL-terminates; returns the
 * new length.  A '%' not followed by two hex digits is kept as it is. */
static inline size_t as_report_unescape(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int h = -1, l = -1;
        if (s[i] == '%' && i + 2 < len) {
            char a = s[i + 1], b = s[i + 2];
            h = a >= '0' && a <= '9' ? a - '0' : a >= 'A' && a <= 'F' ? a - 'A' + 10
                : a >= 'a' && a <= 'f' ? a - 'a' + 10 : -1;
            l = b >= '0' && b <= '9' ? b - '0' : b >= 'A' && b <= 'F' ? b - 'A' + 10
                : b >= 'a' && b <= 'f' ? b - 'a' + 10 : -1;
        }
        if (h >= 0 && l >= 0) {
            s[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = 0;
    return o;
}

#endif /* AUTHSCAN_REPORT_H */
