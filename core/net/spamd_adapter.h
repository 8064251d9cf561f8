/*
 * spamd_adapter.h - the "spamd" protocol adapter: SpamAssassin's spamc
 * speaks to authscand as it would to spamd (SPAMC/1.5; listen spec
 * "spamd@ADDR", TCP or unix socket).  One request per connection, as
 * spamd does.
 *
 * Verbs (the request parser is spamd_proto.c):
 *   CHECK          "Spam: True ; S / R" only (spamc -c)
 *   SYMBOLS        and the symbol names, comma-separated (spamc -y)
 *   REPORT         and a text report: score, action, one line per symbol
 *   REPORT_IFSPAM  the report only when the message is spam (spamc -r)
 *   PROCESS        the message rewritten with our header fields: the
 *                  scan's header changes (Authentication-Results added,
 *                  forged ones removed, From munging), X-Spam-Flag: YES
 *                  when spam, X-Spam-Status always (X-Spam-* fields that
 *                  came with the message are removed, as SpamAssassin
 *                  does); spamc's default
 *   HEADERS        the same header block without the body (spamc
 *                  --headers appends the body itself)
 *   PING           "SPAMD/1.5 0 PONG"
 *   SKIP           nothing: the connection is closed
 *   TELL           refused with EX_UNAVAILABLE: authscan has nothing to
 *                  learn (it checks authentication; there is no Bayes)
 * "Spam" means the verdict's action is one of spamd.spam_actions (reject,
 * soft_reject, quarantine); S is the score and R the reject threshold.
 * Every reply but CHECK's carries a Content-length equal to its body.
 * "Compress: zlib" bodies are inflated (bounded by
 * limits.max_message_size); "User:" is logged (spamd's per-user settings
 * do not exist here).  Errors are "SPAMD/1.5 <code> EX_<NAME> <text>",
 * after which spamc passes the message through unchanged.
 *
 * spamc sends no envelope.  As SpamAssassin does, the client is the relay
 * named in the topmost Received field whose address is in neither
 * spamd.trusted_networks nor spamd.internal_networks (the site's own MTAs
 * and the relays it trusts), its HELO is from the same field, and MAIL
 * FROM is the Return-Path field.  With neither list nothing is trusted and
 * no client address is taken (SPF gives none, and the log says why).
 */
#ifndef AS_SPAMD_ADAPTER_H
#define AS_SPAMD_ADAPTER_H

struct as_protocol;

extern const struct as_protocol as_spamd_protocol;

#endif
