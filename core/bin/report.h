/*
 * report.h - `authscan report`: DMARC aggregate and failure reports from
 * the counters the report plugin keeps in Redis (authscan/report.h).
 *
 *   authscan report aggregate [--date YYYY-MM-DD] [--out DIR] [--send]
 *                             [--format auto|rfc7489|dmarcbis] [config options]
 *   authscan report failure --send [config options]
 *
 * A command for cron or a systemd timer, outside any event loop: Redis is
 * spoken synchronously (hiredis), DNS goes through the engine's resolver
 * (the daemon's configuration, --dns-zone included) with the loop run
 * until the answer is in, and mail leaves through libcurl's SMTP client.
 * docs/reports.md is the user's description.
 *
 * report.c        the command, days, locks, rows -> XML -> gzip -> files
 * report_mail.c   destinations (rua/ruf parsing, external verification),
 *                 the report mail, SMTP with bounded retries, failure
 *                 reports
 */
#ifndef AS_BIN_REPORT_H
#define AS_BIN_REPORT_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include "scan/engine.h"
#include "services/redis.h"
#include "util/util.h"

struct event_base;

/* The report.* settings, read once from the checked configuration. */
struct rpt_conf {
    const char *org_name, *email, *domain, *smtp, *format;
    long long retries, failure_rate, ttl;
    double retry_delay, lock_ttl;
    int redact;
};

struct rpt {
    struct rpt_conf conf;
    struct as_engine *engine;
    struct event_base *base;
    struct as_redis_config rc;    /* redis.*: points into the engine's config */
    struct as_redis_ring *ring;   /* which shard holds a key */
    redisContext *shards[AS_REDIS_SHARDS_MAX];   /* connected on first use */
    int shard_failed[AS_REDIS_SHARDS_MAX];       /* not again in this run */
    const char *prefix;           /* redis.prefix */
    const char *format;           /* --format, or conf.format */
    const char *out_dir;          /* --out, or NULL */
    int send;                     /* --send */
    int status;                   /* exit status so far: 0, or 1 after a failure */
};

/* A Redis command, argv-style, sent to the shard of its key (the
 * service's ring, services/redis.h; with Sentinel to the master the
 * sentinels name); NULL (after printing why) when Redis did not answer
 * or answered an error.  The caller frees the reply. */
redisReply *rpt_redis(struct rpt *r, size_t argc, const char *const *argv);
/* redis.prefix + "{" tag "}" + name into b (reset first). */
const char *rpt_key(struct rpt *r, struct sbuf *b, const char *tag, const char *name);

/* One destination of rua= or ruf=. */
struct rpt_dest {
    char uri[512];                /* as written, without the size suffix */
    char addr[320];               /* the mailbox of a mailto: URI */
    const char *host;             /* points into addr: the domain part */
    unsigned long long max_size;  /* !size in bytes, 0 if none */
};

/* Splits a rua/ruf list into at most max destinations; items that are not
 * mailto: URIs are printed and skipped.  Returns the count. */
size_t rpt_parse_dests(const char *list, struct rpt_dest *out, size_t max, const char *pd);

enum rpt_verdict { RPT_VERIFIED, RPT_UNAUTHORISED, RPT_DEFER };
/* RFC 7489 7.1 / DMARCbis: a destination outside the policy domain's
 * Organizational Domain must publish v=DMARC1 at
 * <pd>._report._dmarc.<host> (a wildcard there is fine). */
enum rpt_verdict rpt_verify_dest(struct rpt *r, const char *pd, const struct rpt_dest *d);

enum rpt_sent { RPT_SENT, RPT_PERMANENT, RPT_TEMPORARY };
/* Mails `msg` (a whole RFC 5322 message) to one address through
 * report.smtp: up to report.smtp_retries tries while the failure is
 * temporary (4xx, connection), then gives up for this run. */
enum rpt_sent rpt_smtp_send(struct rpt *r, const char *rcpt, const char *msg, size_t len);

#define RPT_MAX_DESTS 16

/* Mails one aggregate report (fname, gz) to every destination of rua that
 * is verified and not marked sent in {pd}rs:DAY, and marks each one it
 * sent.  Returns 1 when every destination is done (sent now or before,
 * unauthorised, refused for good), 0 when one is left for a later run. */
int rpt_mail_aggregate(struct rpt *r, const char *pd, const char *day, const char *id,
                       const char *rua, const char *fname, const struct sbuf *gz, int bis);

/* Splits s in place at TAB into at most max fields; returns the count. */
size_t split_fields(char *s, char **out, size_t max);

/* RFC 5322 date of t in UTC into buf. */
void rpt_date(long long t, char *buf, size_t len);
/* Base64 with CRLF every 76 columns. */
void rpt_base64(struct sbuf *b, const unsigned char *p, size_t n);

/* authscan report failure --send */
int rpt_failure_run(struct rpt *r);

/* The entry point: argv[1] is "report". */
int as_report_main(int argc, char **argv);

#endif
