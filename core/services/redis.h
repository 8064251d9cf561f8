/*
 * redis.h - the worker's Redis service: hiredis async on the worker's
 * event_base.
 *
 * One as_redis per engine (worker process).  It keeps redis.connections
 * long-lived connections to the one server of redis.servers and pipelines
 * every command on them: never a connection per message.  Commands go to
 * the ready connection used last (the others stand by), so the commands of
 * one loop iteration leave in one write(); writes wait up to 2 ms, or until
 * the next read, to share one too.  Plugins never
 * see this header: they call as_redis_command() (task-bound) and
 * as_redis_send() (fire-and-forget) from authscan/plugin.h, which
 * scan/task_redis.c builds on the functions below.
 *
 * Fail open, bounded:
 *   - every command that has a callback gets an answer within
 *     redis.timeout: the reply, an error reply, AS_REDIS_TIMEOUT (our own
 *     timer: hiredis async has none), or AS_REDIS_UNAVAILABLE (the
 *     connection went away first).  A reply that comes after its command
 *     timed out or was cancelled is dropped;
 *   - a connection that gets no reply for redis.timeout while commands
 *     are outstanding (or does not connect within it) is stuck: it is
 *     dropped and connected again;
 *   - reconnection backs off from 100 ms, doubling up to 5 s; the log
 *     gets one line when the service goes down and one when it is up
 *     again, never one per message;
 *   - commands with a callback are refused (as_redis_submit returns NULL)
 *     while no connection is up or connecting; writes without one wait
 *     in a queue of at most redis.queue_max commands, flushed when a
 *     connection is ready; what does not fit is dropped and counted.
 * AUTH (redis.password), SELECT (redis.db) and SCRIPT LOAD of every
 * registered script are the first commands on every connection; a
 * connection is ready when they succeed.
 *
 * Nothing connects before the event loop runs, so starting the service
 * (in --check-config, say) sends nothing.
 *
 * Ownership: the reply handed to an as_redis_done_fn belongs to the
 * service and is valid only during the callback.  A request handle is
 * valid until its callback runs or it is cancelled; as_redis_cancel() from
 * inside its own callback is a harmless no-op.  as_redis_free() answers
 * what is still pending with AS_REDIS_UNAVAILABLE (the engine frees its
 * tasks first, so no task sees that).
 *
 * Configuration keys: docs/config.md ("redis"); keys and memory:
 * docs/redis.md.
 */
#ifndef AS_REDIS_H
#define AS_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include "authscan/plugin.h"
#include "util/config.h"

struct event_base;
struct as_redis;
struct as_redis_req;

#define AS_REDIS_CONNECTIONS_MAX 16
#define AS_REDIS_QUEUE_MAX 1000000
#define AS_REDIS_PREFIX_MAX 64
#define AS_REDIS_SHARDS_MAX 16
#define AS_REDIS_SENTINELS_MAX 8
#define AS_REDIS_BACKOFF_MIN 0.1     /* seconds */
#define AS_REDIS_BACKOFF_MAX 5.0

/* Where a server (or a sentinel) listens. */
struct as_redis_addr {
    const char *name;             /* as written: the shard's name on the ring */
    const char *unix_path;        /* unix socket, or NULL for TCP */
    char host[64];                /* TCP: the IP address */
    int port;
};

struct as_redis_config {
    const char *server;           /* the first shard's name; NULL: the service is off */
    /* redis.servers, or with redis.sentinels the masters of
     * redis.master_name (name set, address found at run time) */
    struct as_redis_addr shards[AS_REDIS_SHARDS_MAX];
    size_t nshards;
    struct as_redis_addr sentinels[AS_REDIS_SENTINELS_MAX];
    size_t nsentinels;            /* 0: no Sentinel */
    const char *password;         /* NULL: no AUTH */
    int db;                       /* 0: no SELECT */
    const char *prefix;           /* of every key */
    double timeout;               /* per command, seconds */
    unsigned connections;         /* per shard */
    size_t queue_max;             /* per shard: writes held while it is down */
};

/* Config keys under "redis." (relative to that prefix). */
extern const struct as_config_key as_redis_config_keys[];
extern const size_t as_redis_config_nkeys;
/* Checks what the schema cannot (server syntax, ranges, a prefix that
 * would break hash tags, keys set without redis.servers), naming the
 * file and line.  Returns 0 or -1 with err. */
int as_redis_config_check(const struct as_config *cfg, char *err, size_t errlen);
/* Fills rc from the checked config (strings owned by cfg). */
void as_redis_config_from(const struct as_config *cfg, struct as_redis_config *rc);

/* The service; off (as_redis_enabled() 0) when rc->server is NULL. */
struct as_redis *as_redis_new(struct event_base *base, const struct as_redis_config *rc,
                              char *err, size_t errlen);
void as_redis_free(struct as_redis *r);
int as_redis_enabled(const struct as_redis *r);
const char *as_redis_prefix(const struct as_redis *r);
double as_redis_timeout(const struct as_redis *r);

enum as_redis_status;
struct as_redis_reply;
typedef void (*as_redis_done_fn)(enum as_redis_status st, const struct as_redis_reply *reply,
                                 void *arg);

/* Sends one command (argv-style: binary-safe, argvlen NULL means every
 * argument is a C string).  With cb: a read; cb runs later from the event
 * loop, never from inside this call; returns a handle, or NULL (no
 * callback then) when the service is off or no connection is up or
 * connecting.  Without cb: a write; returns a non-NULL marker when it was
 * sent or queued (the marker is not a handle: never cancel it), NULL when
 * it was dropped (off, or the queue full). */
struct as_redis_req *as_redis_submit(struct as_redis *r, size_t argc, const char *const *argv,
                                     const size_t *argvlen, as_redis_done_fn cb, void *arg);
/* The same to one shard, whatever the command's key (SCAN, which has
 * none, over every shard in turn).  shard < as_redis_shards(r). */
struct as_redis_req *as_redis_submit_to(struct as_redis *r, size_t shard, size_t argc,
                                        const char *const *argv, const size_t *argvlen,
                                        as_redis_done_fn cb, void *arg);
/* How many shards (redis.servers or redis.master_name entries); 0 when off. */
size_t as_redis_shards(const struct as_redis *r);

/* cb will not run after this; a late reply is dropped. */
void as_redis_cancel(struct as_redis_req *req);

/* Registers a Lua script: every connection loads it (SCRIPT LOAD) right
 * after AUTH/SELECT, before anything else is sent on it, so EVALSHA with
 * the returned SHA1 finds it, after a Redis restart too.  Returns the
 * SHA1 in hex (owned by r), or NULL when the service is off. */
const char *as_redis_script(struct as_redis *r, const char *body);

/* Sharding.  A command goes to the shard of its key's hash tag (the
 * text between the key's first '{' and the next '}', else the whole key:
 * Redis Cluster's rule, so all keys of one tag live on one shard and a
 * script over them works).  Shards sit on a consistent-hash ring, 160
 * points per shard placed by its name as written (redis.servers entry or
 * master name): adding a shard moves only the keys that now hash to it,
 * and a shard that is down keeps its place (its keys fail open; they do
 * not move elsewhere and come back when it does).  The functions below
 * are the routing alone, for a client that is not the service
 * (authscan report). */
struct as_redis_ring;
struct as_redis_ring *as_redis_ring_new(const struct as_redis_config *rc);
void as_redis_ring_free(struct as_redis_ring *ring);
/* The shard a command goes to: its key's (the first key of EVAL and
 * EVALSHA); 0 for a command without a key (PING, SCAN, SCRIPT...). */
size_t as_redis_ring_route(const struct as_redis_ring *ring, size_t argc,
                           const char *const *argv, const size_t *argvlen);
/* The shard of one key. */
size_t as_redis_ring_key(const struct as_redis_ring *ring, const char *key, size_t len);

struct as_redis_stats {
    uint64_t commands;        /* sent to Redis (handshake excluded) */
    uint64_t replies;         /* replies received (error replies included) */
    uint64_t errors;          /* error replies, and commands lost with a connection */
    uint64_t timeouts;        /* commands answered AS_REDIS_TIMEOUT */
    uint64_t refused;         /* reads refused: no connection */
    uint64_t queued;          /* writes waiting for a connection now */
    uint64_t dropped_writes;  /* writes dropped: queue full, or lost with a connection */
    uint64_t connects;        /* connections made ready */
    uint64_t disconnects;     /* connections lost or dropped */
    uint64_t switches;        /* Sentinel: master changes followed (+switch-master,
                                 READONLY, a master that was no longer one) */
    unsigned connections_up;  /* ready now */
    unsigned shards_up;       /* shards with a connection ready now */
};
void as_redis_get_stats(const struct as_redis *r, struct as_redis_stats *st);

/* The service descriptor (service.h): keys under "redis.", the "redis"
 * member of /stat. */
struct as_service;
extern const struct as_service as_redis_service;

#endif
