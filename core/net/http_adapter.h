/*
 * http_adapter.h - the "http" protocol adapter: rspamd's HTTP scanning
 * protocol, on top of the HTTP framing (http.h) and scan sessions
 * (session.h).  Listen specs "http@ADDR" and bare "ADDR" reach it.
 *
 * Commands: POST /checkv2 with the raw message as body and the envelope in
 * request headers (IP, Helo, Hostname, From, Rcpt (repeated), Queue-Id,
 * User, Settings-ID, MTA-Name; names case-insensitive) or the same names
 * in the query string (/checkv2?ip=1.2.3.4&from=a@b), answered with
 * rspamd's /checkv2 JSON (see docs/protocol.md for every key); GET /ping
 * ("pong"); GET /stat (the daemon-wide counters, stats.h); GET /metrics
 * (the same in the Prometheus text format, or OpenMetrics when the Accept
 * header names it).  Session errors become
 * 400, 413, 415, 404 and 405 with {"error":"..."}.
 *
 * The JSON writer is our own streaming writer (util.h as_json_string) and
 * not jansson: a reply is written once per message on the hot path, and a
 * tree of allocated nodes would cost more than the scan's own bookkeeping.
 * Inputs that are JSON (tests, settings) are parsed with jansson.
 */
#ifndef AS_HTTP_ADAPTER_H
#define AS_HTTP_ADAPTER_H

#include <stddef.h>
#include "scan/task.h"
#include "util/util.h"

struct as_protocol;

extern const struct as_protocol as_http_protocol;

/* The /checkv2 reply for a finished task (shared with the CLI). */
void as_http_adapter_write_checkv2(const struct as_task *t, struct sbuf *out);
/* Answers a /metrics request: the format the Accept header asks for
 * (shared with the controller). */
struct as_engine;
struct as_http_conn;
struct as_http_request;
void as_http_adapter_reply_metrics(struct as_http_conn *c, const struct as_http_request *req,
                                   const struct as_engine *e);
/* {"error":"..."} */
void as_http_adapter_write_error(struct sbuf *out, const char *msg);
/* Percent-decodes a query-string component into out ('+' is a space).
 * out->data is always a NUL-terminated string afterwards, "" when empty. */
void as_http_adapter_url_decode(const char *s, size_t len, struct sbuf *out);

#endif
