/*
 * proto.h - rspamd's HTTP scanning protocol, on top of http.h and task.h.
 *
 * Request: POST /checkv2 with the raw message as body and the envelope in
 * request headers (IP, Helo, Hostname, From, Rcpt (repeated), Queue-Id,
 * User, Settings-ID, MTA-Name; names case-insensitive) or the same names
 * in the query string (/checkv2?ip=1.2.3.4&from=a@b).  Reply: rspamd's
 * /checkv2 JSON (see docs/protocol.md for every key).
 *
 * The JSON writer is our own streaming writer (util.h as_json_string) and
 * not jansson: a reply is written once per message on the hot path, and a
 * tree of allocated nodes would cost more than the scan's own bookkeeping.
 * Inputs that are JSON (tests, settings) are parsed with jansson.
 */
#ifndef AS_PROTO_H
#define AS_PROTO_H

#include <stddef.h>
#include "net/http.h"
#include "scan/task.h"
#include "util/util.h"

/* Fills the task's envelope and message from the request.  Returns 0, or
 * the HTTP status to answer (400, 413) with a message in err. */
int as_proto_fill_task(struct as_task *t, const struct as_http_request *req, char *err,
                       size_t errlen);
/* Fills the envelope from name/value pairs (shared with the CLI). */
int as_proto_envelope_set(struct as_task *t, const char *name, const char *value, char *err,
                          size_t errlen);
/* The /checkv2 reply for a finished task. */
void as_proto_write_checkv2(const struct as_task *t, struct sbuf *out);
/* {"error":"..."} */
void as_proto_write_error(struct sbuf *out, const char *msg);
/* Percent-decodes a query-string component into out ('+' is a space).
 * out->data is always a NUL-terminated string afterwards, "" when empty. */
void as_proto_url_decode(const char *s, size_t len, struct sbuf *out);

#endif
