/* lc-bench: what its files share. The program measures every path of the bus beside a
 * baseline measured in the same run; see bench/main.c and docs/performance.md. */
#ifndef LC_BENCH_H
#define LC_BENCH_H

#include "lc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- Settings of the run (main.c) ---------------------------------------------------- */

typedef struct {
    int reps;        /* repetitions of every scenario */
    double secs;     /* measuring window of the timed scenarios */
    bool quick;      /* every scenario briefly */
    const char *bin; /* folder of lc-broker, lc-echo, lc-launch (and lc-spy) */
    char self[4096]; /* this program, started again with --role for the helpers */
    char dir[256];   /* temporary folder of the run: endpoints, logs, system files */
    int tasks;       /* items of the tasks and queue-memory scenarios */
} bench_cfg_t;

extern bench_cfg_t cfg;

/* Records one measurement of figure `key` (one per repetition). */
void bench_record(const char *key, double value);

/* A scenario failed in a way that makes its figures wrong (lost events, a helper that
 * died): says so on stderr and makes the exit status 1. */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool bench_failed(void);

/* ---- Processes (util.c) ----------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    int out; /* its standard output (reports), or -1 */
    char name[64];
    char log[320];  /* its standard error goes here */
    char line[256]; /* the last report line read */
    char buf[4096];
    size_t have;
} proc_t;

/* Where a process's standard output goes: a pipe that proc_read() reads (a helper's
 * reports), its log file, or /dev/null (lc-spy's records). */
enum { OUT_PIPE, OUT_LOG, OUT_NULL };

/* Starts argv (NULL-terminated) with stderr to a log file in the run's folder, stdout as
 * out says. Returns NULL (after saying why) if it cannot. */
proc_t *proc_start(const char *name, char *const argv[], int out);
/* Starts this program in a helper role: `lc-bench --role ROLE ARGS...`. */
proc_t *proc_role(const char *name, const char *role, ...);
/* Reads the next report line within timeout_ms; returns it (in p->line) or NULL. */
const char *proc_read(proc_t *p, int timeout_ms);
/* Signals the process and waits up to timeout_ms for its end (SIGKILL after); frees it. */
void proc_stop(proc_t **p, int sig, int timeout_ms);
/* The last lines of the process's log, for error messages. */
const char *proc_log(proc_t *p);

/* lc-broker on endpoint ep with extra options (NULL-terminated), ready for registrations. */
proc_t *broker_start(const char *ep, ...);
/* An endpoint in the run's folder: ipc://DIR/NAME. */
const char *endpoint(char *buf, size_t size, const char *name);
/* A connected anonymous client; NULL (after saying why) if the broker does not answer. */
lc_client_t *client_new(const char *ep);
/* Waits until every module named (NULL-terminated) is ready, via broker.wait. */
int wait_modules(lc_client_t *c, ...);

/* Memory of a process in KiB: "VmRSS" from /proc/PID/status, "Pss" or "Private_Dirty"
 * from /proc/PID/smaps_rollup. -1 if unknown. */
long proc_kib(pid_t pid, const char *field);

/* ---- Measuring (util.c) ------------------------------------------------------------------ */

int64_t now_us(void); /* CLOCK_MONOTONIC, the same clock in every process */
/* A JSON object {"d": "xxx..."} whose compact text is `size` bytes (size >= 8). */
json_t *payload_json(size_t size);
/* The same text as bytes (for the baselines); caller frees. */
char *payload_text(size_t size);

/* Latencies of one window, for nearest-rank percentiles. */
typedef struct {
    uint32_t *us;
    size_t n, cap;
} lat_t;
void lat_add(lat_t *l, int64_t us);
double lat_pct(lat_t *l, int pct); /* sorts; nearest rank */
void lat_free(lat_t *l);

/* ---- Scenarios ----------------------------------------------------------------------------- */

/* baseline.c: raw ZeroMQ relay and Unix sockets. */
void sc_relay_call(int depth, size_t size, const char *key_rate, const char *key_p50,
                   const char *key_p99);
void sc_relay_oneway(void);
void sc_uds_pingpong(void);
void sc_uds_relay(void);
int role_zrelay(int argc, char **argv);
int role_zworker(int argc, char **argv);

/* scenarios.c: the bus itself. */
void sc_call(int depth, size_t size, const char *key_rate, const char *key_p50,
             const char *key_p99);
void sc_call_threads(void);
void sc_tasks(void);
void sc_events(int k, const char *key, bool spy);
void sc_priority(void);
void sc_spy(void);
void sc_gone(void);
bool spy_available(void);
int role_worker(int argc, char **argv);

/* system.c: lc-launch and memory. */
void sc_startup(void);
void sc_memory(void);
int role_many(int argc, char **argv);

#endif
