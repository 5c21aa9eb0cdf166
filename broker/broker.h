/* lc-broker's core: the routing table and the routing of calls. */
#ifndef LC_BROKER_H
#define LC_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "access.h"

typedef struct broker broker_t;

typedef struct {
    const char **endpoints; /* NULL-terminated */
    size_t max_payload;     /* bytes */
    int heartbeat_ms;       /* for peers without kernel credentials (tcp) */
    int call_timeout_ms;    /* for calls that carry no timeout */
    size_t max_queue;       /* items queued for all modules together */
    size_t max_backlog;     /* items queued for one module */
    size_t max_sent;        /* tasks and events one module's sends may have queued or in flight,
                               an event once (0: half of max_queue) */
    int window;             /* items delivered to a module ahead of completion */
    int grace_ms;           /* how long a gone module's backlog waits for it */
    int start_timeout_ms;   /* expected modules not passive by then are named, others go on */
    int drain_ms;           /* exit: how long queued items may still drain */
    int exit_ms;            /* exit: how long modules have to disconnect */
    int stop_ms;            /* exit: how long one module may take to shut down */
    int verbose;            /* 0: warnings and errors, 1: info, 2: debug */
    const char *monitor;    /* lc-spy's endpoint; NULL: beside the first ipc endpoint; "": none */
    int monitor_queue;      /* batches queued per spy before they are dropped */
    const char *group;      /* ipc sockets 0660 and created folders 0710 with this group */
    gid_t group_id;
    access_list_t allow;    /* who else may register (the broker's own uid always may) */
} broker_config_t;

/* The call-latency histogram: upper bounds in microseconds (calls.c), one more bucket for
 * slower answers. */
#define BROKER_CALL_BUCKETS 15

/* Counters, shown by broker.stats and lc stats. */
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
    uint64_t tasks;          /* tasks accepted */
    uint64_t events;         /* events accepted */
    uint64_t deliveries;     /* tasks and event copies delivered to modules */
    uint64_t done;           /* deliveries completed */
    uint64_t failed;         /* deliveries whose handler failed */
    uint64_t queue_full;     /* tasks and events refused: a queue bound was reached */
    uint64_t dropped;        /* event copies lost to a subscriber's full backlog */
    uint64_t lost;           /* items discarded: in flight at a crash, or past the grace time */
    uint64_t redelivered;    /* delivered items put back after their module went away */
    uint64_t ledger_done;    /* completions read from a dead module's ledger, its DONE lost */
    uint64_t idle;           /* busy -> idle transitions */
    uint64_t not_active;     /* sends refused because the sender was not active */
    uint64_t tap_dropped;    /* monitor records a spy could not take in time */
    uint64_t spies_attached; /* spies that attached since the start */
    /* Answered calls by time from the call's arrival to its answer leaving: per bucket (not
     * cumulative), and the sum of those times. */
    uint64_t call_buckets[BROKER_CALL_BUCKETS + 1];
    uint64_t call_sum_us;
} broker_stats_t;

/* Creates a broker bound to every endpoint of cfg. On failure returns NULL after
 * writing a message (what failed, where, what to do) into err. */
broker_t *broker_new(const broker_config_t *cfg, char *err, size_t errlen);

/* Serves until SIGTERM or SIGINT (which the caller has blocked). Returns 0 or -1. */
int broker_run(broker_t *self);

/* Closes the sockets, removes the ipc socket files and frees everything. */
void broker_destroy(broker_t **self_p);


#endif
