/* lc-broker's core: the routing table and the routing of calls. */
#ifndef LC_BROKER_H
#define LC_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct broker broker_t;

typedef struct {
    const char **endpoints; /* NULL-terminated */
    size_t max_payload;     /* bytes */
    int heartbeat_ms;       /* for peers without kernel credentials (tcp) */
    int call_timeout_ms;    /* for calls that carry no timeout */
    int verbose;            /* 0: warnings and errors, 1: info, 2: debug */
} broker_config_t;

/* Counters, shown by broker.stats and (later) lc stats. */
typedef struct {
    uint64_t calls;          /* calls routed to a module */
    uint64_t replies;        /* replies and handler errors routed back */
    uint64_t unknown_target; /* unknown module or method */
    uint64_t gone;           /* calls answered "gone" because the callee went away */
    uint64_t timeouts;       /* calls whose deadline passed in the broker */
    uint64_t late_replies;   /* replies after the deadline or to unknown calls */
    uint64_t malformed;      /* rejected frames and messages */
    uint64_t too_large;      /* payloads over the limit */
    uint64_t version;        /* peers of another protocol version */
    uint64_t unroutable;     /* messages to a peer that was no longer connected */
    uint64_t registrations;  /* successful registrations */
    uint64_t refused;        /* refused registrations */
} broker_stats_t;

/* Creates a broker bound to every endpoint of cfg. On failure returns NULL after
 * writing a message (what failed, where, what to do) into err. */
broker_t *broker_new(const broker_config_t *cfg, char *err, size_t errlen);

/* Serves until SIGTERM or SIGINT (which the caller has blocked). Returns 0 or -1. */
int broker_run(broker_t *self);

/* Closes the sockets, removes the ipc socket files and frees everything. */
void broker_destroy(broker_t **self_p);

const broker_stats_t *broker_stats(const broker_t *self);

#endif
