/* Private to lc-broker: the structures shared by its files.
 *   broker.c    the loop, endpoints, reading and sending, logging
 *   registry.c  connections, modules, registration, liveness
 *   calls.c     synchronous calls and the built-in methods of module "broker"
 *   delivery.c  tasks, events, subscriptions, delivery windows, idle
 *   queue.c     the queue's data structures */
#ifndef LC_BROKER_INT_H
#define LC_BROKER_INT_H

#include "broker.h"
#include "heap.h"
#include "idmap.h"
#include "lc.h"
#include "queue.h"
#include "wire.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#define DEAD_AFTER_BEATS 3 /* a heartbeat peer is dead after this many silent intervals */
#define EXIT_GRACE_MS 20   /* after its process ended, how long a module's goodbye may take */
#define PROBE_MS 5000      /* a connection silent this long is probed (broker_probe_silent) */

typedef struct module module_t;

/* One ZeroMQ connection, known by its routing id. */
typedef struct conn {
    uint8_t rid[256];
    size_t rid_len;
    uint64_t hash;
    module_t *module;
    bool is_main;
    struct conn *next_sat;  /* the module's other connections */
    struct conn *next_hash; /* same hash */
} conn_t;

typedef struct {
    uint64_t hash;
    char name[LC_NAME_MAX + 1];
} method_t;

/* A subscription: an event name, or a prefix followed by '*'. */
typedef struct sub {
    module_t *module;
    const char *pattern; /* interned, without the '*' */
    size_t len;
    bool wild;
    struct sub *next;           /* same hash (exact) or the wildcard list */
    struct sub *next_of_module; /* the module's subscriptions */
} sub_t;

/* Module states; the first three are the seed's numbers. */
enum { MS_INACTIVE = 1, MS_PASSIVE = 2, MS_ACTIVE = 3, MS_GONE = 4 };

struct module {
    char name[LC_NAME_MAX + 1];
    uint64_t hash;
    char token[17];
    int state;
    conn_t *main; /* NULL while gone */
    conn_t *sats;
    method_t *methods;
    size_t nmethods;
    json_t *doc; /* the methods as registered, for broker.list */
    sub_t *subs;
    bool anonymous;
    bool tool; /* no lifecycle: anonymous clients and "lifecycle": false (the launcher) */
    bool has_creds;
    int pid, uid, gid;
    int pidfd;
    int ledger_fd; /* its ledger (wire.h), opened through /proc/PID/fd; -1: none */
    int hb_ms;
    int64_t last_seen;
    int64_t gone_since;
    uint64_t since_us;
    broker_queue_t queue; /* waiting for the delivery window */
    idmap_t inflight;     /* delivered, not done: id -> bq_item_t */
    int window;
    uint64_t emit_mark; /* de-duplicates an event matched by several patterns */
    uint64_t order;     /* registration order: shutdown goes the other way */
    bool unreachable;   /* a send found its connection closed: removed at the loop's top */
    bool shutdown_asked; /* exit: this module was told to shut down */
    int64_t exited_at;   /* its process ended (pidfd); removed EXIT_GRACE_MS later */
    struct {
        uint64_t calls_in, calls_out, tasks_in, events_in, delivered, done, failed, dropped, lost,
            redelivered, sends_refused;
    } count;
    module_t *next_hash;
};

/* Why the calls to a module are answered "gone": shared by all of them. */
typedef struct {
    size_t refs;
    char text[]; /* "module 'x' said goodbye" */
} gone_why_t;

/* A call routed to a module and not answered yet, keyed by its message id. */
typedef struct call {
    uint64_t id;
    conn_t *caller; /* where the answer goes */
    module_t *caller_module;
    module_t *callee;
    uint32_t seq;
    uint64_t tx;
    uint8_t priority;
    int64_t deadline;
    int64_t arrived_ns; /* CLOCK_MONOTONIC: the start of its latency */
    char target[LC_ADDRESS_MAX + 1];
    /* Once its module went away: out of the table, its "gone" answer owed (broker_calls_gone). */
    struct call *next_gone;
    gone_why_t *why;
} call_t;

/* broker.wait: answered when all named modules are registered. */
typedef struct waiter {
    conn_t *caller;
    uint32_t seq;
    uint64_t id, tx;
    json_t *modules;
    int64_t deadline;
    struct waiter *next;
} waiter_t;

/* What one sender has in the queue (--max-sent), kept by its name rather than by its
 * registration: a module that registers again (a new connection, a restart, a takeover)
 * still finds the items it sent before counted. Lives while it counts any. */
typedef struct sender {
    struct sender *next; /* same hash */
    size_t queued; /* tasks and events it sent that are queued or in flight (an event once,
                      however many copies) */
    char name[LC_NAME_MAX + 1];
} sender_t;

enum {
    LOG_MALFORMED,
    LOG_VERSION,
    LOG_TOO_LARGE,
    LOG_UNREGISTERED,
    LOG_UNROUTABLE,
    LOG_LOST,
    LOG_DENIED,
    LOG_KINDS
};
enum { L_ERROR, L_WARNING, L_INFO, L_DEBUG };

struct broker {
    broker_config_t cfg;
    int64_t last_probe; /* broker_probe_silent's last sweep */
    bool has_tcp;       /* some endpoint is tcp: peers without kernel credentials may come */
    void *ctx;
    void *router;
    int epfd;
    int sigfd;
    char **ipc_paths;
    size_t nipc;

    idmap_t conns;   /* rid hash -> conn chain */
    idmap_t modules; /* name hash -> module chain */
    size_t nmodules;
    size_t nbeating; /* modules whose liveness comes from heartbeats */
    idmap_t calls;   /* message id -> call */
    heap_t deadlines;
    waiter_t *waiters;
    call_t *gone_head, *gone_last; /* calls whose "gone" answers are owed, oldest first */

    strpool_t pool;
    idmap_t subs_exact; /* event name hash -> sub chain */
    sub_t *subs_wild;
    size_t queued; /* items in all module queues */
    size_t work;   /* work items queued or in flight */
    bool busy;
    uint64_t emit_seq;
    idmap_t senders; /* name hash -> sender chain */

    uint64_t next_id;
    int64_t active_ms, trim_ms; /* the last message read; the last malloc_trim() */
    bool trimmed;               /* nothing read since the last malloc_trim() */
    uint64_t anon_count;
    uint64_t order_count;

    /* Start-up with a launcher: activate together once all expected are passive. */
    json_t *expected; /* names, or NULL with a bare broker */
    json_t *stop_order; /* the launcher's start order: shutdown goes the other way */
    int64_t expect_deadline;

    /* The exit sequence (decision 11). */
    int exit_phase;
    int64_t drain_deadline, exit_deadline;
    char exit_current[LC_NAME_MAX + 1]; /* the module shutting down now */
    int64_t exit_current_deadline;
    int64_t tools_deadline; /* exit: how long the last events may take to reach tools */
    bool exit_now;                       /* leave the loop */
    size_t unreachable;                  /* modules flagged unreachable */
    size_t exiting;                      /* modules whose process ended, not yet removed */
    int64_t started;
    broker_stats_t stats;
    struct {
        void *sock;   /* XPUB for lc-spy, or NULL */
        char *path;   /* its ipc socket file, removed at exit */
        char *endpoint; /* as given, for broker.ping */
        size_t spies; /* subscribers now: with none, nothing is copied */
        uint64_t seq; /* records published (or dropped) so far */
        uint8_t *buf; /* the batch being gathered: records, each after its u32 length */
        size_t len, cap, count;
        int64_t first_ms; /* when the batch's first record was added */
        bool attach_owed; /* an ATTACH is in a batch that has not left yet */
    } tap;
    struct {
        int64_t second;
        int count;
        uint64_t suppressed;
    } log_rate[LOG_KINDS];
};

/* broker.c */
void broker_log(broker_t *self, int level, const char *fmt, ...) LC_PRINTF(3, 4);
bool broker_log_allowed(broker_t *self, int kind);
uint64_t broker_next_id(broker_t *self);
uint64_t broker_hash(const void *data, size_t len);
int broker_watch_pidfd(broker_t *self, int fd); /* readable when the process ends */
int broker_send(broker_t *self, const conn_t *to, const uint8_t *hdr, const char *address,
                size_t alen, const char *source, zmq_msg_t *payload);
int broker_send_json(broker_t *self, const conn_t *to, const lc_hdr_t *h, const char *address,
                     json_t *body);
void broker_error(broker_t *self, const conn_t *to, const lc_hdr_t *req, uint64_t parent,
                  int status, const char *fmt, ...) LC_PRINTF(6, 7);

int broker_prepare_ipc(const char *path, long gid, char *err, size_t errlen);

/* tap.c: the copy of the traffic for lc-spy (docs/tracing.md). */
enum {
    TAP_SENT = 1,     /* the broker sent this message to `to` */
    TAP_ACCEPTED = 2, /* the broker took this message in from `source` (`to`: its recipients) */
    TAP_LOST = 3,     /* a queued copy for `to` was lost: backlog full, grace over, exit drain */
    TAP_ATTACH = 4,   /* a spy's subscription arrived */
};
#define TAP_VERSION 1
#define TAP_FLUSH_MS 2 /* the longest a record waits in the broker for the next batch */
#define TAP_FIXED (32 + LC_HDR_SIZE) /* bytes before the address */
int broker_tap_open(broker_t *self, const char *endpoint, char *err, size_t errlen);
void broker_tap_close(broker_t *self);
void broker_tap_read(broker_t *self);
void broker_tap_flush(broker_t *self); /* publishes the batch; the loop calls it before sleeping */
void broker_tap_record(broker_t *self, int what, const uint8_t *hdr, const char *address,
                       size_t alen, const char *source, const char *to, size_t tolen,
                       const void *payload, size_t plen);
void broker_tap_sent(broker_t *self, const conn_t *to, const uint8_t *hdr, const char *address,
                     size_t alen, const char *source, zmq_msg_t *payload);
/* The one test every tap point pays when no spy listens. */
static inline bool broker_tapping(const broker_t *self)
{
    return self->tap.spies != 0;
}

/* broker.c: one message as read from the ROUTER socket (f[0] is the peer's routing id;
 * truncated: it had more than MAX_FRAMES frames). Also the entry of the fuzzing harness. */
void broker_on_message(broker_t *self, zmq_msg_t *f, int nframes, bool truncated);

/* registry.c */
conn_t *broker_conn_find(broker_t *self, const void *rid, size_t len);
module_t *broker_module_find(broker_t *self, const char *name, size_t len);
const method_t *broker_method_find(const module_t *m, const char *name, size_t len);
void broker_on_hello(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h);
void broker_on_bye(broker_t *self, conn_t *c);
/* crashed: the process died or vanished (not a goodbye): its first unstarted item may have
 * started without the broker hearing of it. */
void broker_module_lost(broker_t *self, module_t *m, const char *why, bool crashed);
void broker_on_pidfd(broker_t *self, int fd);
void broker_check_liveness(broker_t *self, int64_t now);
void broker_probe_silent(broker_t *self, int64_t now);
void broker_registry_clear(broker_t *self);
json_t *broker_module_info(const broker_t *self, const module_t *m);

/* calls.c */
void broker_on_call(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h);
void broker_on_reply(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h);
void broker_calls_expire(broker_t *self, int64_t now);
void broker_calls_drop_conn(broker_t *self, const conn_t *c);
void broker_calls_gone(broker_t *self, module_t *m, const char *why);
/* "Gone" answers are sent GONE_BATCH per loop round, so that a module leaving with a hundred
 * thousand calls open does not hold up everyone else. */
#define GONE_BATCH 1024
void broker_calls_send_gone(broker_t *self, size_t max); /* the oldest max owed answers */
void broker_waiters_check(broker_t *self);
void broker_calls_clear(broker_t *self);

/* lifecycle.c */
enum { EXIT_NONE, EXIT_DRAIN, EXIT_SHUTDOWN, EXIT_WAIT };
void broker_on_state(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h);
void broker_set_state(broker_t *self, module_t *m, int state);
void broker_activate_check(broker_t *self, module_t *joined);
void broker_exit_start(broker_t *self, const char *why, bool emit);
void broker_exit_step(broker_t *self, int64_t now);
void broker_expect(broker_t *self, json_t *modules, int timeout_ms);
int broker_state_parse(const char *name);
const char *broker_state_name(int state);

/* delivery.c */
void broker_on_task(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h);
void broker_on_event(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h);
void broker_on_done(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h);
void broker_emit(broker_t *self, const char *event, json_t *args); /* source "broker" */
void broker_pump(broker_t *self, module_t *m);
size_t broker_sent_queued(const broker_t *self, const char *name); /* its share in use */
void broker_senders_clear(broker_t *self);
void broker_idle_check(broker_t *self);
int broker_subs_validate(json_t *patterns, char *err, size_t errlen);
int broker_subs_set(broker_t *self, module_t *m, json_t *patterns, char *err, size_t errlen);
void broker_subs_clear(broker_t *self, module_t *m);
void broker_inflight_lost(broker_t *self, module_t *m, bool crashed);
/* ledger.c: the ledger a module on ipc named in its HELLO (-1 when there is none or it cannot
 * be opened), and what it holds: the slots, or NULL. */
int broker_ledger_open(broker_t *self, const module_t *m, json_t *hello);
uint8_t *broker_ledger_read(int fd, uint32_t *nslots, bool *complete);
void broker_queue_discard(broker_t *self, module_t *m);

#endif
