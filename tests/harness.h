/* Test harness: real lc processes on endpoints in a temporary folder per test. */
#ifndef LC_TEST_HARNESS_H
#define LC_TEST_HARNESS_H

#include "lc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

#define BIN(name) LC_BUILD_DIR "/bin/" name

typedef struct {
    pid_t pid;
    int pidfd;
    bool exited;
    int status; /* as from waitpid() */
    char log[512];
} proc_t;

/* The per-test folder (created by h_setup, removed with everything in it by h_teardown)
 * and the bus endpoint in it. */
extern char h_dir[256];
extern char h_bus[300];

void h_setup(void);
void h_teardown(void);

/* Starts a program with its arguments (NULL-terminated); its stdout and stderr go to
 * h_dir/<logname>.log. Never returns NULL (the test fails instead). */
proc_t *h_spawn(const char *logname, const char *prog, ...);
proc_t *h_spawnv(const char *logname, char *const argv[]);

/* Starts prog with `--bus h_bus` and then the given arguments (NULL-terminated). */
proc_t *h_spawn_bus(const char *logname, const char *prog, va_list args);

/* Waits up to timeout_ms for the process to end; returns its waitpid() status or -1. */
int h_wait_exit(proc_t *p, int timeout_ms);

/* Sends sig and waits for the end (SIGKILL after timeout_ms). Returns the status. */
int h_stop(proc_t *p, int sig, int timeout_ms);

/* Starts lc-broker on h_bus (plus extra arguments, NULL-terminated) and waits until it
 * accepts a registration. */
proc_t *h_broker(const char *extra, ...);

/* Starts lc-echo as `name` and waits until the broker lists it. */
proc_t *h_echo(const char *name);

/* Waits until every module named (NULL-terminated) is registered, via broker.wait. */
void h_wait_modules(lc_client_t *c, ...);

/* A connected anonymous client on h_bus. */
lc_client_t *h_client(void);

/* Starts lc-echo as `name` with extra options (NULL-terminated, e.g. "--window", "1") and
 * waits until the broker lists `name` as this very process (its pid), passive or active. */
proc_t *h_echo_with(const char *name, ...);

/* The broker.list entry of module `name` (a new reference), or NULL if it is not listed. */
json_t *h_module(lc_client_t *c, const char *name);

/* An integer field of module `name` in broker.list; -1 if the module is not listed. */
json_int_t h_module_int(lc_client_t *c, const char *name, const char *key);

/* Waits until broker.list shows `name` with integer field `key` equal to value. */
void h_wait_module_int(lc_client_t *c, const char *name, const char *key, json_int_t value,
                       int timeout_ms);

/* A counter of broker.stats. */
json_int_t h_stat(lc_client_t *c, const char *key);

/* What lc-echo `name` recorded so far (without clearing it): a new reference to the array. */
json_t *h_recorded(lc_client_t *c, const char *name);

/* Waits until lc-echo `name` recorded at least n entries; returns them (a new reference). */
json_t *h_wait_recorded(lc_client_t *c, const char *name, size_t n, int timeout_ms);

/* Runs the client's loop (poll on lc_fd, then lc_dispatch) until *count >= n; fails the test
 * after timeout_ms, naming `what`. Loop thread only. */
void h_dispatch_until(lc_client_t *c, const int *count, int n, int timeout_ms, const char *what);

/* Waits until the process log holds `needle` at least n times; fails the test after
 * timeout_ms, showing the log. Returns the log's text (caller frees). */
char *h_wait_log(proc_t *p, const char *needle, int n, int timeout_ms);

/* A tcp port free on 127.0.0.1 a moment ago. */
int h_free_port(void);

/* A whole file's text (caller frees); "" if it cannot be read (not written yet). */
char *h_slurp(const char *path);

/* How many times needle occurs in text. */
int h_count(const char *text, const char *needle);

/* Contents of a process log (static buffer), for failure messages. */
const char *h_log(proc_t *p);

/* Frees the process record (the process must have ended). */
void h_proc_free(proc_t **p);

/* Checked accessors of JSON answers (the test fails, naming the key, when absent). */
json_int_t h_int(json_t *o, const char *key);
const char *h_str(json_t *o, const char *key);
json_int_t h_arg(json_t *entry, const char *key); /* an integer argument of a recorded entry */
/* Compact JSON text of v in a static buffer (for failure messages). */
char *h_dump(json_t *v);
/* lc_enqueue_wait that must be accepted. Steals args. */
void h_enqueue_ok(lc_client_t *c, const char *target, json_t *args, int priority);

/* The outcome of an lc_call_async(): h_outcome counts the completions and keeps the last
 * code (arg is an h_outcome_t). */
typedef struct {
    int calls;
    int rc;
} h_outcome_t;
void h_outcome(lc_client_t *self, int rc, json_t *result, void *arg);

/* Joins n threads, then stops the client's loop: run it in a thread of its own while the
 * loop thread runs lc_run(). */
typedef struct {
    lc_client_t *client;
    pthread_t *threads;
    int n;
} h_stopper_t;
void *h_stopper(void *arg);

#endif
