/*
 * controller_adapter.h - the "controller" protocol: the operator's HTTP
 * listener (controller@ADDR), apart from the scanning port.
 *
 * It serves, over the HTTP framing (http.h):
 *   GET  /stat, /metrics        the daemon-wide counters (stats.h), as on
 *                               the scanning port;
 *   GET  /api/v1/...            a JSON API over the Redis data (history,
 *                               report status), docs/stats.md;
 *   POST /api/v1/sender/clear   a write: forgets a sender's history;
 *   POST /login, /logout        the browser's session;
 *   GET  /, /app.js, /style.css the dashboard, shipped in the binary
 *                               (dashboard/: no CDN, works offline).
 *
 * Access (docs/security.md):
 *   - controller.password gives read access, controller.enable_password
 *     read and write (with only `password` set, it gives both, as in
 *     rspamd).  API clients send it in a `Password` header (rspamd's
 *     controller clients) or as `Authorization: Bearer` (Prometheus);
 *     a wrong one is refused with 403, never downgraded.  Comparisons are
 *     in constant time (HMACs of both sides compared with CRYPTO_memcmp);
 *   - the browser logs in once (POST /login) and gets a session cookie
 *     (HttpOnly, SameSite=Strict) holding an HMAC-signed token: level,
 *     expiry, and a MAC that also covers the passwords, so changing them
 *     ends every session.  The key is drawn by the master before it forks
 *     (as_controller_keygen): every worker, and every generation after a
 *     reload, accepts the same tokens;
 *   - a write with a session also needs the X-CSRF-Token header, a MAC of
 *     the session token given by /login and /api/v1/session: a page of
 *     another site can make the browser send the cookie, never the header;
 *   - without any password the controller may listen only on loopback or
 *     a unix socket (the config check refuses anything else, naming the
 *     listen entry); a write then still needs a custom header (Password:
 *     any value, or the session's CSRF token).
 *
 * Redis: the worker's Redis service (services/redis.h); a request whose
 * client goes away cancels its commands.  Without Redis the API answers
 * 503 {"error": ...}.
 */
#ifndef AS_CONTROLLER_ADAPTER_H
#define AS_CONTROLLER_ADAPTER_H

struct as_protocol;

extern const struct as_protocol as_controller_protocol;

/* Draws the session key; the master calls it before forking. */
void as_controller_keygen(void);

#endif
