/*
 * lc.h - the client library of the lc message bus (liblc).
 *
 * This is the only header a module includes. Build with `pkg-config --cflags --libs lc`.
 *
 * Conventions used throughout:
 *  - Functions return 0 (or a count) on success and a negative error code on failure:
 *    one of the LC_E* codes below, which are negative errno values. lc_strerror() names them.
 *  - JSON values are jansson's json_t. "Steals" means the function takes over the caller's
 *    reference (as json_object_set_new() does): the caller must not json_decref() it
 *    afterwards, whether the function succeeds or not. "Borrowed" means the value stays the
 *    caller's (for arguments) or the library's (for values it hands to a callback), and is
 *    valid only for the duration of the call or callback.
 *  - A client belongs to the thread that created it, its "loop thread": lc_run(),
 *    lc_dispatch() and every handler and callback run there. The calling functions
 *    (lc_call(), lc_call_async(), lc_reply() and friends) may be used from any thread.
 */
#ifndef LC_H
#define LC_H

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LC_EXPORT __attribute__((visibility("default")))
#define LC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LC_EXPORT
#define LC_PRINTF(f, a)
#endif

#define LC_VERSION "0.1.0"

/* ---- Error codes (negative errno values) -------------------------------------------- */

#define LC_EINVAL (-EINVAL)            /* invalid argument or name */
#define LC_ENOMEM (-ENOMEM)            /* out of memory */
#define LC_EHANDLER (-EREMOTEIO)       /* the handler answered with an error */
#define LC_ENOMODULE (-ENOENT)         /* no module of that name is registered */
#define LC_ENOMETHOD (-ENOSYS)         /* the module has no method of that name */
#define LC_ENOTREADY (-EAGAIN)         /* the module is registered but not ready */
#define LC_EGONE (-ECONNRESET)         /* the module went away while the call was open */
#define LC_ETIMEDOUT (-ETIMEDOUT)      /* no answer before the deadline */
#define LC_ETOOBIG (-EMSGSIZE)         /* payload larger than the bus allows */
#define LC_EPROTO (-EPROTO)            /* malformed message */
#define LC_EVERSION (-EPROTONOSUPPORT) /* the peer speaks another protocol version */
#define LC_ENAMETAKEN (-EADDRINUSE)    /* a live module already holds that name */
#define LC_ENOBUS (-ENOTCONN)          /* no broker reachable, or the connection was lost */
#define LC_EQUEUEFULL (-ENOBUFS)       /* a queue bound was reached */
#define LC_ENOTACTIVE (-EPERM)         /* sending not allowed in this module state */
#define LC_EDENIED (-EACCES)           /* reserved name or forbidden operation */
#define LC_EBUSY (-EBUSY)              /* the operation is not possible right now */

/* Returns a short English description of an lc error code (or of any errno value). */
LC_EXPORT const char *lc_strerror(int code);

/* ---- Priorities (the seed's numbers) ----------------------------------------------- */

#define LC_PRIORITY_HIGHEST 1
#define LC_PRIORITY_HIGH 2
#define LC_PRIORITY_NORMAL 3
#define LC_PRIORITY_LOW 4
#define LC_PRIORITY_LOWEST 5

/* Or'ed into a priority argument: start a new transaction instead of continuing the one
 * being handled. */
#define LC_NEW_TX 0x100

/* ---- Clients ------------------------------------------------------------------------ */

typedef struct lc_client lc_client_t;
typedef struct lc_request lc_request_t;

/* Default per-call timeout in milliseconds. */
#define LC_CALL_TIMEOUT_MS 5000

/* Writes the default bus endpoint into buf: $LC_BUS if set, else
 * ipc://$XDG_RUNTIME_DIR/lc/bus, else ipc:///tmp/lc-$UID/bus.
 * Returns 0, or LC_EINVAL if it does not fit into size bytes. */
LC_EXPORT int lc_endpoint_default(char *buf, size_t size);

/* Creates a client. name: the module name to register under (1-64 characters of
 * [A-Za-z0-9_-], starting with a letter; "broker" and "launcher" are reserved), or NULL
 * for an anonymous client that only makes calls (the broker assigns it a name).
 * endpoint: a ZeroMQ endpoint (ipc://... or tcp://...), or NULL for lc_endpoint_default().
 * Does not contact the broker yet: registration happens in lc_connect(), or at the first
 * lc_run(), lc_dispatch() or call. Returns NULL with errno set (EINVAL for a bad name).
 * Caller owns return value and must destroy it with lc_client_destroy(). */
LC_EXPORT lc_client_t *lc_client_new(const char *name, const char *endpoint);

/* Says goodbye to the broker, frees the client and sets *self_p to NULL. Accepts NULL.
 * Other threads must have stopped using the client. Call from the loop thread. */
LC_EXPORT void lc_client_destroy(lc_client_t **self_p);

/* The name the client is registered under (for an anonymous client, the name the broker
 * assigned, or "" before registration). Borrowed; valid until the client is destroyed. */
LC_EXPORT const char *lc_client_name(lc_client_t *self);

/* The endpoint the client talks to. Borrowed. */
LC_EXPORT const char *lc_client_endpoint(lc_client_t *self);

/* Sets the default timeout for calls that pass timeout_ms = 0. */
LC_EXPORT void lc_client_set_timeout(lc_client_t *self, int timeout_ms);

/* Registers with the broker, waiting at most timeout_ms (0: the client's call timeout).
 * Returns 0, LC_ENOBUS if no broker answered in time, LC_ENAMETAKEN if a live module holds
 * the name, LC_EDENIED for a reserved name. Called implicitly by lc_run(), lc_dispatch() and
 * the call functions. After a broker restart the client registers again by itself. */
LC_EXPORT int lc_connect(lc_client_t *self, int timeout_ms);

/* ---- Methods (the callee side) ------------------------------------------------------ */

/* A method handler. args is the call's argument object (borrowed; {} when the caller sent
 * none). Answer with lc_reply() or lc_reply_error(); returning without an answer replies
 * null, unless the handler called lc_defer(req). Runs on the loop thread. */
typedef void(lc_method_fn)(lc_request_t *req, json_t *args, void *arg);

/* Offers method `method` (1-64 characters of [A-Za-z0-9_], not starting with a digit).
 * Declaring a method that exists replaces its handler. May be called after registration:
 * the broker's table is updated. Loop thread only; not for anonymous clients.
 * Returns 0, LC_EINVAL, LC_ENOMEM. */
LC_EXPORT int lc_method(lc_client_t *self, const char *method, lc_method_fn *fn, void *arg);

/* Describes a declared method for introspection: a one-line help text and its arguments as
 * "name:type" words separated by spaces or commas, type one of string, integer, number,
 * boolean, object, array, null, any (e.g. "line:integer state_new:string"). Either may be
 * NULL. Once arguments are declared, a call or task with an argument not among them, or of
 * another type, is refused before the handler runs (error code 22, with a message naming
 * the argument and what the method takes); declared arguments stay optional.
 * Returns 0, LC_EINVAL (unknown method, bad spec), LC_ENOMEM. */
LC_EXPORT int lc_method_doc(lc_client_t *self, const char *method, const char *help,
                            const char *args);

/* Answers a call. Steals result (NULL means JSON null). Frees req: it must not be used
 * afterwards. May be called from any thread for a deferred request. Returns 0 or an error
 * (the request is freed either way). */
LC_EXPORT int lc_reply(lc_request_t *req, json_t *result);

/* Answers a call with an error: code is the handler's own number (the caller sees it as
 * "code" with LC_EHANDLER), message a printf format. Frees req like lc_reply(). */
LC_EXPORT int lc_reply_error(lc_request_t *req, int code, const char *fmt, ...) LC_PRINTF(3, 4);

/* Keeps the request after the handler returns: the handler (or a timer, or another thread)
 * answers later with lc_reply() or lc_reply_error(). The caller's deadline still applies. */
LC_EXPORT void lc_defer(lc_request_t *req);

/* What a request is: a call (answered with lc_reply), a task or an event (finished when
 * the handler returns, or with lc_done() after lc_defer()). */
#define LC_KIND_CALL 1
#define LC_KIND_TASK 2
#define LC_KIND_EVENT 3
LC_EXPORT int lc_request_kind(const lc_request_t *req);

/* Metadata of the message being handled. Strings are borrowed from req. */
LC_EXPORT const char *lc_request_source(const lc_request_t *req); /* sending module */
LC_EXPORT const char *lc_request_method(const lc_request_t *req); /* method name */
LC_EXPORT uint64_t lc_request_tx(const lc_request_t *req);        /* transaction id */
LC_EXPORT uint64_t lc_request_id(const lc_request_t *req);        /* message id */
LC_EXPORT uint64_t lc_request_parent(const lc_request_t *req);    /* parent message id, or 0 */
LC_EXPORT int lc_request_priority(const lc_request_t *req);       /* 1..5 */
LC_EXPORT uint64_t lc_request_time_us(const lc_request_t *req);   /* broker time, µs since epoch */
LC_EXPORT lc_client_t *lc_request_client(const lc_request_t *req);

/* ---- Calls (the caller side) -------------------------------------------------------- */

/* Calls target ("module.method") synchronously and waits for the answer.
 * args: the argument object, stolen (NULL means {}). timeout_ms: 0 for the client default.
 * On success returns 0 and, if result is not NULL, stores the answer there (caller owns it).
 * On failure returns LC_EHANDLER, LC_ENOMODULE, LC_ENOMETHOD, LC_ENOTREADY, LC_EGONE,
 * LC_ETIMEDOUT, LC_ETOOBIG, LC_ENOBUS, LC_EINVAL, ... and, if result is not NULL, stores an
 * object {"code": int, "message": string} describing it (for LC_EHANDLER, code is the
 * handler's own). Safe from any thread. On the loop thread, incoming calls keep being
 * served while waiting (A -> B -> A works); other work waits until the outer handler returns. */
LC_EXPORT int lc_call(lc_client_t *self, const char *target, json_t *args, json_t **result,
                      int timeout_ms);

/* Completion of lc_call_async(): rc and result as lc_call() returns them; result is
 * borrowed (json_incref() it to keep it). Runs on the loop thread. */
typedef void(lc_call_fn)(lc_client_t *self, int rc, json_t *result, void *arg);

/* Starts a call and returns at once; fn runs on the loop thread when the answer, an error
 * or the deadline arrives (exactly once, unless the client is destroyed first).
 * Steals args. Returns 0, or an error if the call could not be sent (fn is then not run). */
LC_EXPORT int lc_call_async(lc_client_t *self, const char *target, json_t *args, int timeout_ms,
                            lc_call_fn *fn, void *arg);

/* ---- Tasks and events --------------------------------------------------------------- */

/* Every send made on the loop thread while a handler runs continues the handled message's
 * transaction (its id, with the handled message as parent) and priority, unless the
 * priority argument says otherwise: 0 inherits (or LC_PRIORITY_NORMAL outside a handler),
 * 1-5 sets one, and LC_NEW_TX (or'ed in) starts a new transaction. */

/* Queues a task: target "module.method", or "method" for this module's own. args are
 * stolen (NULL means {}). Returns after local checks without waiting for the broker
 * (LC_EINVAL, LC_ETOOBIG, LC_ENOBUS); a refusal by the broker (unknown module or method,
 * queue full, ...) reaches the notice callback. Safe from any thread. */
LC_EXPORT int lc_enqueue(lc_client_t *self, const char *target, json_t *args, int priority);

/* Like lc_enqueue(), but waits up to timeout_ms (0: the client's call timeout) for the
 * broker to accept or refuse it: returns 0 or the refusal (LC_ENOMODULE, LC_ENOMETHOD,
 * LC_EQUEUEFULL, LC_ETOOBIG, LC_ENOTACTIVE, LC_ETIMEDOUT, ...). If info is not NULL it
 * receives an object with "message" (and, for events, "subscribers" and "dropped"). */
LC_EXPORT int lc_enqueue_wait(lc_client_t *self, const char *target, json_t *args, int priority,
                              int timeout_ms, json_t **info);

/* Queues an event for every module subscribed to it, except this one. event: 1-64
 * characters of [a-z0-9_], or NULL for "<module>_event". args stolen (NULL means {}).
 * Returns like lc_enqueue(). A subscriber whose backlog is full loses its copy; the notice
 * callback hears of it (LC_EQUEUEFULL with "dropped" naming them). */
LC_EXPORT int lc_emit(lc_client_t *self, const char *event, json_t *args, int priority);
LC_EXPORT int lc_emit_wait(lc_client_t *self, const char *event, json_t *args, int priority,
                           int timeout_ms, json_t **info);

/* Subscribes fn to an event name, or to every event starting with a prefix when pattern
 * ends in '*' ("gpio_*"; "*" alone: every event). One delivery runs one handler: the exact
 * subscription, else the longest matching prefix. The handler finishes the event by
 * returning, or later with lc_done() after lc_defer(). Loop thread only. */
LC_EXPORT int lc_on(lc_client_t *self, const char *pattern, lc_method_fn *fn, void *arg);

/* Finishes a deferred task or event (from any thread); frees req. For a call it answers
 * null, like lc_reply(req, NULL). */
LC_EXPORT int lc_done(lc_request_t *req);

/* Told of refusals and losses of what this client sent: rc is the error, target the
 * task's target or the event's name, info an object with "message" (borrowed). Runs on
 * the loop thread. Without one, each is written to stderr (at most 10 lines a second). */
typedef void(lc_notice_fn)(lc_client_t *self, int rc, const char *target, json_t *info,
                           void *arg);
LC_EXPORT void lc_on_notice(lc_client_t *self, lc_notice_fn *fn, void *arg);

/* How many task and event handlers may run at once (default 1; a deferred handler holds
 * its slot until lc_done()), and how many items the broker may deliver ahead (default 64).
 * Set before registration. */
LC_EXPORT void lc_client_set_concurrency(lc_client_t *self, int n);
LC_EXPORT void lc_client_set_window(lc_client_t *self, int n);

/* ---- Lifecycle ---------------------------------------------------------------------- */

/* Module states, with the seed's numbers. */
#define LC_STATE_INACTIVE 1 /* registered, starting or stopped: receives nothing */
#define LC_STATE_PASSIVE 2  /* may receive; sends only from inside handlers */
#define LC_STATE_ACTIVE 3   /* may receive and send */

/* Lifecycle hooks, all optional, run on the loop thread in the seed's order:
 *  LC_HOOK_STARTUP     after the first registration: read configuration, open hardware
 *  LC_HOOK_PASSIVE     then, now passive: start work that runs while passive
 *  LC_HOOK_ACTIVE      when the broker activates the module: it may now send
 *  LC_HOOK_DEACTIVATE  active -> passive (the system is stopping): stop producing
 *  LC_HOOK_SHUTDOWN    last: release everything; lc_run() then returns 0
 * An anonymous client has no lifecycle: it is active from its registration. */
enum {
    LC_HOOK_STARTUP,
    LC_HOOK_PASSIVE,
    LC_HOOK_ACTIVE,
    LC_HOOK_DEACTIVATE,
    LC_HOOK_SHUTDOWN,
    LC_HOOK_RELOAD /* SIGHUP, after the configuration was read again */
};
typedef void(lc_hook_fn)(lc_client_t *self, void *arg);
LC_EXPORT int lc_hook(lc_client_t *self, int which, lc_hook_fn *fn, void *arg);

/* A named client without a lifecycle: a tool (like lc-launch) that is active from its
 * registration, gets no lifecycle commands and is not waited for when the bus exits.
 * Set before registration. Anonymous clients are always like this. */
LC_EXPORT void lc_client_set_lifecycle(lc_client_t *self, bool on);

/* This module's state, as it last reported it (LC_STATE_*; 0 before registration). */
LC_EXPORT int lc_state(lc_client_t *self);

/* Whether module `name` is registered and passive or active (the seed's
 * is_ready_module): 1 yes, 0 no, or an error such as LC_ENOBUS. Asks the broker. */
LC_EXPORT int lc_module_ready(lc_client_t *self, const char *name);

/* ---- Worker threads (the seed's ModuleThreaded) ------------------------------------- */

typedef struct lc_thread lc_thread_t;
typedef void(lc_thread_fn)(lc_thread_t *thread, void *arg);

/* Starts fn in a thread of its own for a phase: LC_STATE_ACTIVE (asked to stop at
 * deactivation) or LC_STATE_PASSIVE (asked to stop at shutdown). The thread talks to the
 * bus with the usual functions (they are safe from any thread), watches
 * lc_thread_stopping() or polls lc_thread_fd(), and returns when asked; the library then
 * joins it, waiting at most 5 s. At most lc_client_set_max_threads() threads run at once
 * (default 10): reaching the limit is an error (LC_EBUSY, logged). Loop thread only.
 * The thread record belongs to the client. */
LC_EXPORT lc_thread_t *lc_thread_start(lc_client_t *self, int phase, lc_thread_fn *fn,
                                       void *arg);
LC_EXPORT bool lc_thread_stopping(lc_thread_t *thread);
LC_EXPORT int lc_thread_fd(lc_thread_t *thread); /* readable once asked to stop */
LC_EXPORT lc_client_t *lc_thread_client(lc_thread_t *thread);
LC_EXPORT void lc_client_set_max_threads(lc_client_t *self, int n);

/* ---- A module's process: name, log, signals, configuration --------------------------- */

/* For a module's main(): takes --name NAME, --bus EP, --config FILE and --log-level LEVEL
 * out of argv (removing them; *argc is updated), falling back on LC_MODULE, LC_BUS,
 * LC_CONFIG and LC_LOG_LEVEL from the environment (set by lc-launch), then on
 * default_name and the default endpoint. Returns the client, or NULL with errno set and a
 * message on stderr. Caller owns it (lc_client_destroy()). */
LC_EXPORT lc_client_t *lc_module_new(const char *default_name, int *argc, char **argv);

/* Log levels, most severe first. */
enum { LC_LOG_CRITICAL, LC_LOG_ERROR, LC_LOG_WARNING, LC_LOG_INFO, LC_LOG_DEBUG };

/* Writes "time module LEVEL: message" to stderr (one write per line; lc-launch collects
 * it), or to syslog. Messages below the client's level (default LC_LOG_INFO, or
 * $LC_LOG_LEVEL) are skipped. self may be NULL. Safe from any thread. */
LC_EXPORT void lc_log(lc_client_t *self, int level, const char *fmt, ...) LC_PRINTF(3, 4);
LC_EXPORT void lc_client_set_log_level(lc_client_t *self, int level);
LC_EXPORT void lc_client_set_syslog(lc_client_t *self, bool on);
/* "critical", "error", "warning", "info", "debug" (any case) -> LC_LOG_*, or -1. */
LC_EXPORT int lc_log_level_parse(const char *name);

/* Signals arrive on the loop as ordinary callbacks (through a signalfd; never inside a
 * signal handler). By default lc_run() takes SIGTERM and SIGINT (the module shuts down:
 * deactivate and shutdown hooks, then lc_run() returns 0) and SIGHUP (the configuration
 * is read again, then LC_HOOK_RELOAD). lc_on_signal() takes any other signal, or replaces
 * those defaults. The signals are blocked in the loop thread and in liblc's threads; a
 * module that starts threads of its own before lc_client_new() must block them there.
 * lc_client_set_signals(self, false) leaves signals alone. Loop thread only. */
typedef void(lc_signal_fn)(lc_client_t *self, int signum, void *arg);
LC_EXPORT int lc_on_signal(lc_client_t *self, int signum, lc_signal_fn *fn, void *arg);
LC_EXPORT void lc_client_set_signals(lc_client_t *self, bool handle);

/* Configuration: the module's own section of the system file (modules.<name>.config),
 * read at the first getter from $LC_CONFIG (or lc_config_load()). Paths are dotted
 * ("outputs.17.initial"); one starting with '/' reads from the file's root. Missing or
 * null gives the default; a value of another type is logged with file:line:col and gives
 * the default too (lc_config_errors() counts them). Without a system file the module
 * runs on its defaults, with a warning. Strings are borrowed until the next load. */
LC_EXPORT int lc_config_load(lc_client_t *self, const char *path);
LC_EXPORT int lc_config_reload(lc_client_t *self);
LC_EXPORT const char *lc_config_file(lc_client_t *self); /* NULL without one */
LC_EXPORT const char *lc_config_str(lc_client_t *self, const char *path, const char *def);
LC_EXPORT long long lc_config_int(lc_client_t *self, const char *path, long long def);
LC_EXPORT double lc_config_double(lc_client_t *self, const char *path, double def);
LC_EXPORT bool lc_config_bool(lc_client_t *self, const char *path, bool def);
/* A file name: a relative value is taken from the system file's folder. The result is
 * valid until the next lc_config_path() call. */
LC_EXPORT const char *lc_config_path(lc_client_t *self, const char *path, const char *def);
/* A list or map (or any value) as JSON; NULL if missing. Caller owns it. */
LC_EXPORT json_t *lc_config_json(lc_client_t *self, const char *path);
LC_EXPORT int lc_config_errors(lc_client_t *self);

/* Changes a setting of the module's own section (value stolen) for the getters at once,
 * and lc_config_save() keeps the changes in the module's state file
 * (<folder of the system file>/<module>.state.json, or $LC_STATE_DIR), which is laid
 * over the section at every load. The system file itself is never rewritten. */
LC_EXPORT int lc_config_set(lc_client_t *self, const char *path, json_t *value);
LC_EXPORT int lc_config_save(lc_client_t *self);

/* ---- Timers ------------------------------------------------------------------------- */

/* A timer callback; runs on the loop thread. */
typedef void(lc_timer_fn)(lc_client_t *self, int timer_id, void *arg);

/* Runs fn after ms milliseconds, and every ms milliseconds after that if repeat is true
 * (scheduled from the first expiry, so a repeating timer does not drift).
 * Returns a timer id (> 0) or LC_EINVAL / LC_ENOMEM. Loop thread only. */
LC_EXPORT int lc_timer_add(lc_client_t *self, int ms, bool repeat, lc_timer_fn *fn, void *arg);

/* Cancels a timer. Returns 0, or LC_EINVAL if no such timer is pending. Loop thread only. */
LC_EXPORT int lc_timer_cancel(lc_client_t *self, int timer_id);

/* ---- File descriptors of the module's own ------------------------------------------ */

/* Called on the loop thread when a watched descriptor is readable. It must read what is
 * waiting (the watch is level-triggered: an unread descriptor calls it again). */
typedef void(lc_fd_fn)(lc_client_t *self, int fd, void *arg);

/* Watches fd (a device, a pipe, an eventfd, a socket...) for input on the loop: lc_run()
 * waits on it with the bus's own descriptors, and lc_fd() includes it, so a module that
 * runs its own poll loop sees it too; lc_dispatch() then calls fn. fn runs between
 * handlers, like a timer (never inside lc_call()'s wait). Watching a watched fd again
 * replaces its fn and arg. Unwatch a descriptor before closing it. Loop thread only.
 * Returns 0, LC_EINVAL (fd < 0, fn NULL, another thread), LC_ENOMEM, or -errno from
 * epoll when lc_fd() is in use and refuses fd. */
LC_EXPORT int lc_watch_fd(lc_client_t *self, int fd, lc_fd_fn *fn, void *arg);

/* Stops watching fd. Returns 0, or LC_EINVAL if fd is not watched. Loop thread only. */
LC_EXPORT int lc_unwatch_fd(lc_client_t *self, int fd);

/* ---- Running the loop --------------------------------------------------------------- */

/* Registers if needed and serves calls, timers and completions until lc_stop().
 * Returns 0 after lc_stop(), or an error (LC_ENAMETAKEN, LC_ENOBUS at the first
 * registration, ...). Loop thread only. */
LC_EXPORT int lc_run(lc_client_t *self);

/* Makes lc_run() return. Safe from any thread and from signal handlers' threads. */
LC_EXPORT void lc_stop(lc_client_t *self);

/* For a module's own poll loop: a file descriptor that becomes readable when
 * lc_dispatch() has work; poll it for POLLIN with the timeout lc_timeout() gives. */
LC_EXPORT int lc_fd(lc_client_t *self);

/* Milliseconds until lc_dispatch() must run again even if lc_fd() stays quiet
 * (timers, call deadlines, work waiting for a slot, and once, 250 ms after the last
 * message, giving freed memory back to the system); -1 for no limit. */
LC_EXPORT int lc_timeout(lc_client_t *self);

/* Does all pending work without waiting for more (and calls the lc_watch_fd() callbacks
 * of readable descriptors). The first call registers the client if
 * lc_connect() was not called, which waits for the broker up to the call timeout.
 * Returns 0, 1 if lc_stop() was called, or an error. Loop thread only. */
LC_EXPORT int lc_dispatch(lc_client_t *self);

#ifdef __cplusplus
}
#endif
#endif
