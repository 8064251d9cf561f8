/*
 * worker.h - one scanning worker process.
 *
 * A worker owns an event_base, an engine (built after fork from the
 * config the master validated) and a connection server (server.h)
 * accepting on the listening sockets it inherited, each served by the
 * protocol adapter its listen spec named (protocol.h).  It tells the master it is ready by
 * writing one byte to ready_fd, then serves until:
 *   SIGTERM/SIGQUIT  drain: stop accepting, finish in-flight scans (each
 *                    answered, then its connection closed), then exit 0; after
 *                    shutdown_timeout it exits anyway;
 *   AS_WORKER_MSG_STOP on the ready pipe: the daemon stops; drain as for
 *                    SIGTERM, and first accept what the kernel queued and
 *                    shut the listening sockets down, so that connections
 *                    made from now on are refused, not queued and reset;
 *   the master dies  (its end of the ready pipe closes): as for
 *                    AS_WORKER_MSG_STOP.
 * Exit codes: 0 normal, 78 (EX_CONFIG) if the engine could not be built.
 */
#ifndef AS_WORKER_H
#define AS_WORKER_H

#include <stddef.h>

struct as_config;
struct as_protocol;

/* One inherited listening socket and the protocol that serves it. */
struct as_worker_socket {
    int fd;
    const struct as_protocol *proto;
};

#define AS_WORKER_EXIT_CONFIG 78
/* Master to worker on the ready pipe: the daemon stops (see above). */
#define AS_WORKER_MSG_STOP 'S'

/* Runs a worker in the current (forked) process; never returns. */
void as_worker_main(struct as_config *cfg, const struct as_worker_socket *socks, size_t nsocks,
                    int ready_fd, int index) __attribute__((noreturn));

#endif
