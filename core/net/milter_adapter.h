/*
 * milter_adapter.h - the "milter" protocol adapter: Postfix's and
 * Sendmail's content filter protocol (version 6), spoken on the worker's
 * event loop.  Listen spec "milter@ADDR" (TCP or unix socket).
 *
 * One connection carries one SMTP session (Postfix opens one per smtpd
 * session and may reuse it after QUIT_NC); each message in it becomes a
 * scan session (session.h) at end of message, and the verdict goes back
 * as milter replies:
 *   negotiation  actions ADDHDRS, CHGHDRS, QUARANTINE and the "no reply"
 *                steps, HDR_LEADSPC (header values byte for byte, so
 *                DKIM's simple canonicalisation sees what was signed), all
 *                masked against what the MTA offers;
 *   envelope     connect (client address and PTR name), HELO, MAIL, RCPT
 *                and the macros i (queue id), {auth_authen} (user), j (the
 *                MTA's name: MTA-Name, the default authserv-id),
 *                {client_addr}/{client_name} (when connect lacks them),
 *                {daemon_name}, {tls_version}/{cipher} (logged);
 *   verdict      milter.on.<action> says what each action does (accept,
 *                add_header, quarantine, tempfail, reject, discard);
 *                reject replies "<milter.reject_code> <text>", tempfail
 *                "<milter.tempfail_code> <text>" with the verdict's SMTP
 *                text (escaped: as_milter_reply_text), quarantine holds
 *                the message (QUARANTINE), add_header adds
 *                milter.spam_header ("Yes") and milter.status_header;
 *                header changes of the scan (Authentication-Results,
 *                forged ones removed by index, From munging) are applied
 *                with INSHEADER/CHGHEADER whenever the message is kept.
 * Bounds: packets up to the message size limit plus a margin, the message
 * up to limits.max_message_size (beyond it: accepted unscanned, logged),
 * at most MILTER_MAX_RCPTS recipients kept per message, an MTA that
 * completes no packet for milter.timeout is dropped (silent, or trickling
 * bytes: a slow-loris), a malformed packet closes the connection
 * with one log line.  See docs/protocol.md.
 */
#ifndef AS_MILTER_ADAPTER_H
#define AS_MILTER_ADAPTER_H

struct as_protocol;

extern const struct as_protocol as_milter_protocol;

#endif
