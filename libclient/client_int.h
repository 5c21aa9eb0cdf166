/* Private to liblc: the client's structures, shared by its files.
 *   client.c  creation, registration, the loop
 *   call.c    calls and answers
 *   thread.c  the connections of other threads, heartbeats
 *   timer.c   timers */
#ifndef LC_CLIENT_INT_H
#define LC_CLIENT_INT_H

#include "lc.h"
#include "heap.h"
#include "idmap.h"
#include "ledger.h"
#include "wire.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <zmq.h>

#define CLIENT_TAG 0x6c63636cu /* "lccl" */
#define DISPATCH_BATCH 256     /* messages per dispatch before timers get their turn */

typedef struct {
    char name[LC_NAME_MAX + 1];
    lc_method_fn *fn;
    void *arg;
    char *help;
    json_t *args; /* {"name": "type"} or NULL */
} method_t;

/* A received message: header, address, source and the payload frame. */
typedef struct inmsg {
    lc_hdr_t hdr;
    char address[LC_ADDRESS_MAX + 1];
    char source[LC_NAME_MAX + 1];
    zmq_msg_t payload;
} inmsg_t;

/* An open call, keyed by its sequence number. Either a synchronous waiter on the loop
 * thread (fn == NULL: the outcome is stored here) or an asynchronous one. */
typedef struct pending {
    uint32_t seq;
    lc_call_fn *fn;
    void *arg;
    int64_t deadline;
    char target[LC_ADDRESS_MAX + 1];
    int timeout_ms;
    bool done;
    int rc;
    json_t *result;
    struct pending *next_ready;
} pending_t;

typedef struct {
    int id;
    int interval;
    bool repeat;
    int64_t when;
    lc_timer_fn *fn;
    void *arg;
} timer_t_;

/* A file descriptor of the module's own, watched on the loop (lc_watch_fd). */
typedef struct {
    int fd;
    lc_fd_fn *fn;
    void *arg;
} watch_t;

/* A connection of its own for each other thread that sends, attached to the module. */
typedef struct sat {
    lc_client_t *client;
    void *sock;
    bool attached;
    uint64_t gen; /* registration generation it attached to */
    struct sat *next;
} sat_t;

enum { REG_NONE, REG_SENT, REG_DONE, REG_FAILED };

enum { REQ_ANSWERED = 1, REQ_SENT = 2, REQ_RETURNED = 4, REQ_DEFERRED = 8 };

struct lc_request {
    lc_client_t *client;
    lc_hdr_t hdr;
    char source[LC_NAME_MAX + 1];
    char method[LC_NAME_MAX + 1]; /* the method, or the event's name */
    int kind;                     /* LC_KIND_CALL, LC_KIND_TASK, LC_KIND_EVENT */
    bool failed;                  /* a task or event answered with lc_reply_error() */
    int ledger_slot;              /* a task or event: its slot in the ledger, or -1 */
    atomic_int state;
};

/* A subscription: an event name, or a prefix followed by '*'. */
typedef struct {
    char pattern[LC_NAME_MAX + 2];
    size_t len; /* without the '*' */
    bool wild;
    lc_method_fn *fn;
    void *arg;
} handler_t;

/* A task or event delivered by the broker, waiting for a free slot. */
typedef struct delivery {
    struct delivery *next;
    inmsg_t msg;
} delivery_t;

/* A completion not yet reported to the broker (16 bytes on the wire). */
typedef struct {
    uint64_t id;
    uint32_t status;
    int ledger_slot;
} done_t;

struct lc_client {
    uint32_t tag;
    char name[LC_NAME_MAX + 1];     /* requested; "" for anonymous */
    char reg_name[LC_NAME_MAX + 1]; /* as registered */
    char endpoint[512];
    void *ctx;
    void *sock;    /* main connection: loop thread only */
    void *monitor; /* events of the main connection */
    int wake_fd;
    int epoll_fd;
    int dispatching; /* inside lc_dispatch(), which re-arms lc_fd() at its end */
    pthread_t loop_thread;
    char token[17];
    int timeout_ms;
    bool is_tcp;

    int reg;
    int reg_error;
    uint32_t reg_seq;
    bool want_reg;       /* registration was asked for at least once */
    bool handshaken;     /* the main connection is up */
    int hb_ms;           /* heartbeat interval the broker asked for, 0: none */
    size_t max_payload;  /* the broker's limit, from WELCOME (0: not known yet) */
    pthread_t hb_thread; /* sends heartbeats when the broker asks for them (tcp) */
    bool hb_running;
    int hb_stop_fd;
    atomic_bool need_hello; /* the heartbeat thread learnt that the broker forgot us */
    char reg_message[256];

    method_t *methods;
    size_t nmethods, capmethods;

    atomic_uint seq;
    atomic_bool stop;

    /* lock guards: pending, deadlines, ready list, satellites, gen, reg_cond waits */
    pthread_mutex_t lock;
    pthread_cond_t reg_cond;
    uint64_t gen; /* counts successful main registrations */
    idmap_t pending;
    heap_t deadlines;
    pending_t *ready_head, *ready_tail; /* async calls finished, callbacks not yet run */

    idmap_t timers;
    heap_t timer_heap;
    int next_timer;

    pthread_key_t sat_key;
    sat_t *sats;

    handler_t *handlers; /* event subscriptions */
    size_t nhandlers, caphandlers;
    delivery_t *head[5], *tail[5]; /* delivered, not started: by priority */
    size_t queued;
    int concurrency; /* handlers of tasks and events running at once */
    int window;      /* asked of the broker */
    int running;     /* guarded by lock: deferred items finish from any thread */
    done_t *done;    /* guarded by lock */
    size_t ndone, capdone;
    ledger_t ledger; /* what started and finished, for the broker after a crash (ipc) */
    bool ledger_warned; /* said once that the ledger could not grow */
    int *sent_slots; /* loop thread: the ledger slots of the DONE being sent */
    size_t capsent;
    lc_request_t *current; /* the message whose handler runs now (loop thread) */
    int depth;             /* handlers running on the loop thread, nested */
    int state;        /* LC_STATE_*, as last reported to the broker */
    bool started;     /* the startup hook ran */
    bool lifecycle;   /* false: a tool, active from its registration */
    int cmds[8];      /* commands from the broker, run at the top of the loop */
    int ncmds;
    int cmd_budget; /* items that start before the first pending command is carried out */
    struct {
        lc_hook_fn *fn;
        void *arg;
    } hooks[6];
    int log_level;
    bool syslog;
    bool handle_signals;
    int signal_fd;
    struct {
        lc_signal_fn *fn;
        void *arg;
    } signals[64];
    struct cfg_node *cfg_root;    /* the system file, or NULL */
    struct cfg_node *cfg_section; /* modules.<name>.config in it */
    json_t *cfg_changes;          /* lc_config_set() since the last save */
    bool cfg_loaded;
    char *cfg_file, *state_file;
    char *cfg_path_buf; /* the last lc_config_path() result */
    int cfg_errors;
    struct lc_thread *threads;
    int nthreads, max_threads;
    watch_t *watches; /* lc_watch_fd(): loop thread only */
    size_t nwatches, capwatches;
    zmq_pollitem_t *poll_items; /* lc_run()'s poll set: 4 of its own, then the watched */
    lc_notice_fn *notice_fn;
    void *notice_arg;
    int64_t notice_second;
    int64_t active_ms, trim_ms; /* loop thread: the last message read; the last trim */
    bool trimmed;               /* nothing read since the last malloc_trim() */
    int notices_logged;
};

/* A worker thread started with lc_thread_start(). */
struct lc_thread {
    lc_client_t *client;
    pthread_t tid;
    int phase;
    int stop_fd;
    atomic_bool stopping;
    atomic_bool finished;
    lc_thread_fn *fn;
    void *arg;
    struct lc_thread *next;
};

enum { CMD_ACTIVATE = 1, CMD_DEACTIVATE, CMD_SHUTDOWN };

/* Internal functions (see each file for the contract). */
void lcc_on_state(lc_client_t *self, inmsg_t *m); /* a command from the broker */
void lcc_lifecycle_step(lc_client_t *self);       /* at the top of the loop */
void lcc_threads_stop(lc_client_t *self, int phase);
int lcc_signals_setup(lc_client_t *self);
void lcc_signals_read(lc_client_t *self);
void lcc_shutdown_self(lc_client_t *self);
const char *lcc_state_file(lc_client_t *self);
void lcc_config_free(lc_client_t *self);
void lcc_exception_record(lc_client_t *self, const lc_request_t *req, const char *why);
void lc_logv(lc_client_t *self, int level, const char *fmt, va_list ap);
int lcc_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg); /* signals blocked */
void lcc_block_signals(sigset_t *old); /* SIGTERM, SIGINT, SIGHUP in this thread */
void lcc_queue_push(lc_client_t *self, inmsg_t *m);     /* takes the payload */
void lcc_queue_run(lc_client_t *self);                   /* starts what the slots allow */
void lcc_queue_clear(lc_client_t *self);
void lcc_item_finished(lc_request_t *req, bool failed); /* a task or event is done */
void lcc_on_notice(lc_client_t *self, inmsg_t *m);
json_t *lcc_hello_events(lc_client_t *self);
int lcc_send_hello(lc_client_t *self);
int lcc_sat_await(sat_t *sat, uint32_t seq, inmsg_t *m, int64_t deadline);
void lcc_inherit(lc_client_t *self, lc_hdr_t *h, int priority); /* decision 6 */
void lcc_request_finish(lc_request_t *req);
/* Checks args against the method's declared arguments (lc_method_doc): 0, or -1 with why. */
int lcc_args_check(const method_t *method, json_t *args, char *why, size_t size);
void lcc_run_handler(lc_client_t *self, lc_request_t *req, lc_method_fn *fn, json_t *args,
                     void *arg);
int lcc_recv(void *sock, inmsg_t *m, int flags);
void lcc_copy(char *dst, size_t size, const char *src);
int lcc_check_target(const char *target);
int lcc_main_wait(lc_client_t *self, bool (*done)(lc_client_t *, void *), void *ctx,
                  int64_t deadline);
int lcc_connect_until(lc_client_t *self, int64_t deadline);
int lcc_send(void *sock, const lc_hdr_t *hdr, const char *address, const char *source,
             char *payload, size_t plen, int64_t deadline);
method_t *lcc_method_find(lc_client_t *self, const char *name);
int lcc_dump_args(json_t *args, char **out, size_t *len);
int lcc_int_timeout(int64_t deadline);
void lcc_rearm(lc_client_t *self);
/* lcc_send() on the main connection (loop thread), keeping lc_fd() armed. */
int lcc_send_main(lc_client_t *self, const lc_hdr_t *hdr, const char *address, char *payload,
                  size_t plen, int64_t deadline);
/* Receives and handles up to max messages waiting on the main connection. */
int lcc_drain_main(lc_client_t *self, int max);
void lcc_wake(lc_client_t *self);
bool lcc_on_loop(lc_client_t *self);
void lcc_inmsg_close(inmsg_t *m);
json_t *lcc_local_error(int status, const char *fmt, ...) LC_PRINTF(2, 3);
json_t *lcc_error_object(int status, const char *data, size_t len);
void lcc_pending_free(pending_t *p);
void lcc_handle_call(lc_client_t *self, inmsg_t *m);
void lcc_expire_calls(lc_client_t *self, int64_t now);
void lcc_run_ready(lc_client_t *self);
void lcc_fail_all_pending(lc_client_t *self, int rc, const char *why);
bool lcc_complete(lc_client_t *self, inmsg_t *m);
void lcc_heartbeat_start(lc_client_t *self);
int lcc_sat_call(lc_client_t *self, const char *target, char *payload, size_t plen, json_t **result,
                 int timeout_ms, int64_t deadline);
int lcc_sat_ready(sat_t *sat, int64_t deadline, json_t **err);
void lcc_sat_destroy(void *p);
sat_t *lcc_sat_get(lc_client_t *self);
void lcc_run_timers(lc_client_t *self, int64_t now);

#endif
