/*
 * lc-soak: a long run of calls and events through one broker and a few lc-echo modules,
 * watching every process's memory (VmRSS) and open file descriptors as it goes
 * (docs/reliability.md).
 *
 * One program in four roles. The driver (the default) starts lc-broker, the lc-echo
 * modules and, by running itself again with --role, the load: callers that call
 * echo.echo and check every answer, an emitter that emits soak_tick events, and
 * subscribers that check they get every one, in order. Each is a process of its own so
 * that each one's memory and descriptors are measured apart. The driver asks the load's
 * processes for their progress over the bus (method `progress`) and samples /proc each
 * interval; at the end it stops everything, checks exit statuses (and leak reports, under
 * valgrind or an ASan build) and compares each process from the warm-up point to the end.
 */
#include "heapstat.h"
#include "lc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EVENT "soak_tick"
#define MAX_TARGETS 16
/* Events an emitter may be ahead of its slowest subscriber: well below the broker's
 * default backlog of 10000 per module, so that a healthy bus never drops one. */
#define EMIT_LAG 4000
/* Progress questions and registration get long deadlines: under valgrind everything is
 * slow, and a timeout there would be a false failure. The calls of the load keep the bus's
 * default (--call-timeout-ms): the caller's and the broker's deadline heaps hold an entry
 * per call until its deadline, so their memory settles only after one timeout. */
#define CALL_TIMEOUT_MS 60000

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_ASAN 1
#endif
#endif
#ifndef SOAK_ASAN
#define SOAK_ASAN 0
#endif

static struct {
    long long calls, events;
    int modules, callers, subscribers, inflight, interval_ms, warmup_pct, stall_ms;
    int call_timeout_ms;
    long long rate;        /* calls, and events, per second; 0: as fast as they go */
    double max_rss_growth; /* percent; < 0: not judged */
    int max_fd_growth;
    const char *dir, *bindir, *csv, *json;
    char *wrap; /* --wrap: a command (words split at spaces) every process runs under */
    bool keep, valgrind, quiet;
    /* the roles' own options */
    const char *role, *name, *bus, *targets;
    long long count;
    long long leak_bytes;   /* --leak-bytes: a caller loses this many bytes per answer */
    double max_heap_growth; /* percent; < 0: not judged */
} o = {
    .calls = 1000000,
    .events = 1000000,
    .modules = 2,
    .callers = 2,
    .subscribers = 2,
    .inflight = 32,
    .interval_ms = 1000,
    .warmup_pct = 20,
    .stall_ms = 60000,
    .call_timeout_ms = LC_CALL_TIMEOUT_MS,
    .rate = 20000,
    .max_rss_growth = -1.0,
    .max_heap_growth = 1.0,
    .max_fd_growth = 0,
};

static void s_kill_all(void);

/* A usage or start-up error: says so, ends what the driver started, exits 2. */
static void s_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void s_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lc-soak: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    s_kill_all();
    exit(2);
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How many sends the rate allows since *start: a steady load, so that the memory a rate
 * needs (open calls, deadline heaps, queues) is the same after warm-up as at the end. A
 * process held back (a busy machine) does not catch up later in a burst: it may be at most
 * 50 ms of sends behind, and *start moves on for the rest. */
static long long s_allowed(int64_t *start, long long sent)
{
    if (o.rate <= 0)
        return LLONG_MAX;
    long long allowed = (s_now_ms() - *start) * o.rate / 1000 + 1;
    long long cap = sent + o.rate / 20 + 1;
    if (allowed > cap) {
        *start += (allowed - cap) * 1000 / o.rate;
        allowed = cap;
    }
    return allowed;
}

/* Splits a comma-separated list into at most MAX_TARGETS names (in place). */
static int s_split(char *list, char **out)
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && n < MAX_TARGETS;
         t = strtok_r(NULL, ",", &save))
        out[n++] = t;
    return n;
}

/* A client of the load: named, without a lifecycle (active at once, SIGTERM stops it). */
static lc_client_t *s_role_client(void)
{
    if (!o.name || !o.bus)
        s_die("--role needs --name and --bus");
    lc_client_t *c = lc_client_new(o.name, o.bus);
    if (!c)
        s_die("cannot create client '%s' on %s: %s", o.name, o.bus, strerror(errno));
    lc_client_set_lifecycle(c, false);
    lc_client_set_timeout(c, CALL_TIMEOUT_MS);
    return c;
}

static int s_role_connect(lc_client_t *c)
{
    int rc = lc_connect(c, CALL_TIMEOUT_MS);
    if (rc < 0)
        fprintf(stderr, "lc-soak %s: cannot register on %s: %s\n", o.name, o.bus, lc_strerror(rc));
    return rc;
}

/* Whether the load is held (method `pause`): the driver drains the bus at warm-up to
 * measure every process's heap with nothing in flight, as it is at the end. */
static bool s_paused;

static void s_pause(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    json_t *v = json_object_get(args, "pause");
    if (!json_is_boolean(v)) {
        lc_reply_error(req, 1, "pause expects {\"pause\": true or false}");
        return;
    }
    s_paused = json_is_true(v);
    lc_reply(req, json_pack("{s:b}", "paused", s_paused));
}

/* ---- Caller: calls echo.echo, at most `inflight` at once, and checks every answer ---- */

static struct {
    lc_client_t *c;
    char *targets[MAX_TARGETS];
    int ntargets;
    long long sent, answered, ok, bad, failed;
    int64_t start;
    char error[256];
} k;

static json_t *s_call_args(long long n)
{
    char s[96];
    snprintf(s, sizeof s, "soak %s %lld", o.name, n);
    return json_pack("{s:I, s:s}", "n", (json_int_t)n, "s", s);
}

static void s_call_next(void);

/* --leak-bytes: the last block lost, kept where the compiler cannot drop the allocation. */
static void *volatile s_leaked;

static void s_answered(lc_client_t *c, int rc, json_t *result, void *arg)
{
    (void)c;
    long long n = (long long)(intptr_t)arg;
    k.answered++;
    if (o.leak_bytes > 0) { /* a leak on purpose, to show that the soak finds one */
        void *b = malloc((size_t)o.leak_bytes);
        if (b)
            memset(b, 0x5a, (size_t)o.leak_bytes);
        s_leaked = b;
    }
    if (rc < 0) {
        k.failed++;
        if (!k.error[0])
            snprintf(k.error, sizeof k.error, "call %lld: %s (%s)", n, lc_strerror(rc),
                     json_string_value(json_object_get(result, "message")));
    } else {
        json_t *want = s_call_args(n);
        if (json_equal(want, result))
            k.ok++;
        else {
            k.bad++;
            if (!k.error[0]) {
                char *got = json_dumps(result, JSON_COMPACT);
                snprintf(k.error, sizeof k.error, "call %lld answered %s", n, got ? got : "?");
                free(got);
            }
        }
        json_decref(want);
    }
    s_call_next();
}

/* Keeps `inflight` calls open, as far as the rate allows. */
static void s_refill(lc_client_t *c, int timer_id, void *arg)
{
    (void)c;
    (void)timer_id;
    (void)arg;
    while (!s_paused && k.sent - k.answered < o.inflight && k.sent < o.count &&
           k.sent < s_allowed(&k.start, k.sent))
        s_call_next();
}

static void s_call_next(void)
{
    if (s_paused || k.sent >= o.count || k.sent >= s_allowed(&k.start, k.sent))
        return;
    long long n = k.sent++;
    char target[96];
    snprintf(target, sizeof target, "%s.echo", k.targets[n % k.ntargets]);
    int rc = lc_call_async(k.c, target, s_call_args(n), o.call_timeout_ms, s_answered,
                           (void *)(intptr_t)n);
    if (rc < 0) /* not sent: no callback will come */
        s_answered(k.c, rc, NULL, (void *)(intptr_t)n);
}

static void s_caller_progress(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    lc_reply(req, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "count", (json_int_t)o.count,
                            "sent", (json_int_t)k.sent, "answered", (json_int_t)k.answered, "ok",
                            (json_int_t)k.ok, "bad", (json_int_t)k.bad, "failed",
                            (json_int_t)k.failed, "error", k.error));
}

static int s_run_caller(void)
{
    char *list = strdup(o.targets ? o.targets : "");
    k.ntargets = s_split(list, k.targets);
    if (k.ntargets == 0)
        s_die("--role caller needs --targets MODULE[,MODULE...]");
    k.c = s_role_client();
    lc_method(k.c, "progress", s_caller_progress, NULL);
    lc_method(k.c, "pause", s_pause, NULL);
    int rc = s_role_connect(k.c);
    if (rc == 0) {
        k.start = s_now_ms();
        s_refill(k.c, 0, NULL);
        lc_timer_add(k.c, 1, true, s_refill, NULL);
        rc = lc_run(k.c);
    }
    lc_client_destroy(&k.c);
    free(list);
    return rc < 0;
}

/* ---- Emitter: emits soak_tick {n}, never more than EMIT_LAG ahead of its subscribers - */

static struct {
    lc_client_t *c;
    char *subs[MAX_TARGETS];
    int nsubs;
    long long emitted, refused, low; /* low: the slowest subscriber's count, last asked */
    long long got[MAX_TARGETS];
    int asking;
    int64_t start;
    char error[256];
} e;

static void s_emitter_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_emitter_note(const char *fmt, ...)
{
    if (e.error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.error, sizeof e.error, fmt, ap);
    va_end(ap);
}

static void s_notice(lc_client_t *c, int rc, const char *target, json_t *info, void *arg)
{
    (void)c;
    (void)arg;
    e.refused++;
    s_emitter_note("%s: %s (%s)", target, lc_strerror(rc),
                   json_string_value(json_object_get(info, "message")));
}

static void s_sub_answered(lc_client_t *c, int rc, json_t *result, void *arg)
{
    (void)c;
    int i = (int)(intptr_t)arg;
    if (rc == 0)
        e.got[i] = json_integer_value(json_object_get(result, "received"));
    else
        s_emitter_note("%s.progress: %s", e.subs[i], lc_strerror(rc));
    if (--e.asking == 0) {
        e.low = e.got[0];
        for (int j = 1; j < e.nsubs; j++)
            if (e.got[j] < e.low)
                e.low = e.got[j];
    }
}

static void s_ask_subscribers(void)
{
    char target[96];
    for (int i = 0; i < e.nsubs; i++) {
        snprintf(target, sizeof target, "%s.progress", e.subs[i]);
        if (lc_call_async(e.c, target, NULL, o.call_timeout_ms, s_sub_answered,
                          (void *)(intptr_t)i) == 0)
            e.asking++;
    }
}

static void s_emitter_progress(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    lc_reply(req,
             json_pack("{s:I, s:I, s:I, s:s}", "count", (json_int_t)o.count, "emitted",
                       (json_int_t)e.emitted, "refused", (json_int_t)e.refused, "error", e.error));
}

static int s_run_emitter(void)
{
    char *list = strdup(o.targets ? o.targets : "");
    e.nsubs = s_split(list, e.subs);
    if (e.nsubs == 0)
        s_die("--role emitter needs --targets SUBSCRIBER[,SUBSCRIBER...]");
    e.c = s_role_client();
    lc_method(e.c, "progress", s_emitter_progress, NULL);
    lc_method(e.c, "pause", s_pause, NULL);
    lc_on_notice(e.c, s_notice, NULL);
    int rc = s_role_connect(e.c);
    int fd = rc == 0 ? lc_fd(e.c) : -1;
    if (rc == 0 && fd < 0) {
        fprintf(stderr, "lc-soak %s: lc_fd: %s\n", o.name, lc_strerror(fd));
        rc = fd;
    }
    /* Our own loop: emit between rounds of the client's work, as far as the lag allows. */
    e.start = s_now_ms();
    while (rc == 0) {
        long long allowed = s_allowed(&e.start, e.emitted);
        for (int burst = 0; burst < 256 && !s_paused && e.emitted < o.count &&
                            e.emitted - e.low < EMIT_LAG && e.emitted < allowed;
             burst++) {
            int r = lc_emit(e.c, EVENT, json_pack("{s:I}", "n", (json_int_t)e.emitted), 0);
            if (r < 0) {
                e.refused++;
                s_emitter_note("lc_emit %lld: %s", e.emitted, lc_strerror(r));
            }
            e.emitted++;
        }
        if (!e.asking && e.emitted - e.low > EMIT_LAG / 4)
            s_ask_subscribers();
        bool more = !s_paused && e.emitted < o.count && e.emitted - e.low < EMIT_LAG;
        int t = lc_timeout(e.c);
        if (more) /* now, or in a millisecond when the rate holds it back */
            t = e.emitted < s_allowed(&e.start, e.emitted) ? 0 : (t < 0 || t > 1) ? 1 : t;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, t);
        rc = lc_dispatch(e.c);
    }
    lc_client_destroy(&e.c);
    free(list);
    return rc < 0;
}

/* ---- Subscriber: counts soak_tick events and checks their order --------------------- */

static struct {
    long long received, next, gaps, dups;
} sub;

static void s_tick(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)arg;
    long long n = (long long)json_integer_value(json_object_get(args, "n"));
    sub.received++;
    if (n > sub.next)
        sub.gaps += n - sub.next;
    else if (n < sub.next)
        sub.dups++;
    if (n >= sub.next)
        sub.next = n + 1;
}

static void s_sub_progress(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    lc_reply(req, json_pack("{s:I, s:I, s:I, s:I}", "received", (json_int_t)sub.received, "next",
                            (json_int_t)sub.next, "gaps", (json_int_t)sub.gaps, "dups",
                            (json_int_t)sub.dups));
}

static int s_run_subscriber(void)
{
    lc_client_t *c = s_role_client();
    lc_method(c, "progress", s_sub_progress, NULL);
    lc_on(c, EVENT, s_tick, NULL);
    int rc = s_role_connect(c);
    if (rc == 0)
        rc = lc_run(c);
    lc_client_destroy(&c);
    return rc < 0;
}

/* ---- Driver: the processes ------------------------------------------------------------ */

enum { P_BROKER, P_MODULE, P_CALLER, P_EMITTER, P_SUBSCRIBER };

typedef struct {
    char name[32];
    int kind;
    pid_t pid;
    bool exited;
    int status;
    char log[PATH_MAX];
    char vglog[PATH_MAX];
    char heapfile[PATH_MAX]; /* where lc-soak-heap.so publishes its heap, if preloaded */
    json_t *progress;        /* the last answer of its `progress` method */
} proc_t;

#define MAX_PROCS 64
static proc_t s_procs[MAX_PROCS];
static int s_nprocs;
static char s_dir[200];
static char s_bus[220];
static char s_self[PATH_MAX];
/* LD_PRELOAD=lc-soak-heap.so for every process, when the heap is measured */
static char s_preload[PATH_MAX + 32];
extern char **environ;

static void s_kill_all(void)
{
    for (int i = 0; i < s_nprocs; i++)
        if (!s_procs[i].exited) {
            kill(s_procs[i].pid, SIGKILL);
            waitpid(s_procs[i].pid, &s_procs[i].status, 0);
            s_procs[i].exited = true;
        }
}

static proc_t *s_spawn(const char *name, int kind, const char *prog, ...)
{
    if (s_nprocs == MAX_PROCS)
        s_die("more than %d processes", MAX_PROCS);
    proc_t *p = &s_procs[s_nprocs++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = kind;
    snprintf(p->log, sizeof p->log, "%s/%s.log", s_dir, name);
    /* The environment is made before fork(): the driver has libzmq's threads, and a child
     * of a threaded process should not allocate before it execs. */
    char heapenv[PATH_MAX + 16];
    char *envp[256];
    int ne = 0;
    if (s_preload[0]) {
        snprintf(p->heapfile, sizeof p->heapfile, "%s/%s.heap", s_dir, name);
        snprintf(heapenv, sizeof heapenv, "LC_SOAK_HEAP=%s", p->heapfile);
        envp[ne++] = s_preload;
        envp[ne++] = heapenv;
    }
    for (char **env = environ; *env && ne < 255; env++)
        if (!s_preload[0] ||
            (strncmp(*env, "LD_PRELOAD=", 11) && strncmp(*env, "LC_SOAK_HEAP=", 13)))
            envp[ne++] = *env;
    envp[ne] = NULL;
    char *argv[48];
    int n = 0;
    char vgarg[PATH_MAX + 16];
    if (o.valgrind) {
        snprintf(p->vglog, sizeof p->vglog, "%s/%s.valgrind", s_dir, name);
        snprintf(vgarg, sizeof vgarg, "--log-file=%s", p->vglog);
        argv[n++] = "valgrind";
        argv[n++] = "--leak-check=full";
        argv[n++] = "--show-leak-kinds=definite,indirect";
        argv[n++] = "--errors-for-leak-kinds=definite,indirect";
        argv[n++] = "--error-exitcode=99";
        argv[n++] = vgarg;
    }
    char wrap[512];
    if (o.wrap) {
        snprintf(wrap, sizeof wrap, "%s", o.wrap);
        for (char *save = NULL, *w = strtok_r(wrap, " ", &save); w && n < 24;
             w = strtok_r(NULL, " ", &save))
            argv[n++] = w;
    }
    argv[n++] = (char *)prog;
    va_list ap;
    va_start(ap, prog);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 47)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    fflush(NULL);
    p->pid = fork();
    if (p->pid < 0)
        s_die("cannot start %s: fork: %s", name, strerror(errno));
    if (p->pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvpe(argv[0], argv, envp);
        fprintf(stderr, "lc-soak: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return p;
}

static proc_t *s_spawn_role(const char *role, const char *name, int kind, long long count,
                            const char *targets)
{
    char cnt[32], inflight[16], tmo[16], rate[32], leak[32];
    /* The callers share the rate of calls; the emitter has the rate of events. */
    snprintf(rate, sizeof rate, "%lld", kind == P_CALLER ? o.rate / o.callers : o.rate);
    snprintf(cnt, sizeof cnt, "%lld", count);
    snprintf(inflight, sizeof inflight, "%d", o.inflight);
    snprintf(tmo, sizeof tmo, "%d", o.call_timeout_ms);
    snprintf(leak, sizeof leak, "%lld", kind == P_CALLER ? o.leak_bytes : 0);
    return s_spawn(name, kind, s_self, "--role", role, "--name", name, "--bus", s_bus, "--count",
                   cnt, "--inflight", inflight, "--call-timeout-ms", tmo, "--rate", rate,
                   "--targets", targets, "--leak-bytes", leak, NULL);
}

/* Reaps the processes that ended; returns how many are still running. */
static int s_reap(void)
{
    int running = 0;
    for (int i = 0; i < s_nprocs; i++) {
        proc_t *p = &s_procs[i];
        if (!p->exited && waitpid(p->pid, &p->status, WNOHANG) == p->pid)
            p->exited = true;
        running += !p->exited;
    }
    return running;
}

/* Sends sig to every process of one kind and waits for them to end (SIGKILL at the
 * deadline, counted as a failure by the exit status). */
static void s_stop_kind(int kind, int timeout_ms)
{
    for (int i = 0; i < s_nprocs; i++)
        if (s_procs[i].kind == kind && !s_procs[i].exited)
            kill(s_procs[i].pid, SIGTERM);
    int64_t deadline = s_now_ms() + timeout_ms;
    for (;;) {
        s_reap();
        bool left = false;
        for (int i = 0; i < s_nprocs; i++)
            left |= s_procs[i].kind == kind && !s_procs[i].exited;
        if (!left)
            return;
        if (s_now_ms() >= deadline) {
            for (int i = 0; i < s_nprocs; i++)
                if (s_procs[i].kind == kind && !s_procs[i].exited) {
                    fprintf(stderr,
                            "lc-soak: %s (pid %d) did not stop within %d ms of SIGTERM; "
                            "killing it\n",
                            s_procs[i].name, (int)s_procs[i].pid, timeout_ms);
                    kill(s_procs[i].pid, SIGKILL);
                    waitpid(s_procs[i].pid, &s_procs[i].status, 0);
                    s_procs[i].exited = true;
                }
            return;
        }
        poll(NULL, 0, 10); /* the reaping interval of a wait with a deadline */
    }
}

/* ---- Driver: sampling ----------------------------------------------------------------- */

typedef struct {
    double t;        /* seconds since the load started */
    double progress; /* 0..1 of all calls and events */
    long long calls, events;
    long rss[MAX_PROCS];  /* VmRSS, kB; -1 if unreadable */
    long anon[MAX_PROCS]; /* RssAnon, kB: without the pages of files (the libraries' code) */
    long heap[MAX_PROCS]; /* kB held through malloc (lc-soak-heap.so); -1 if not measured */
    int fds[MAX_PROCS];
} sample_t;

static sample_t *s_samples;
static int s_nsamples, s_capsamples;

/* Reads what lc-soak-heap.so published for p; false when it is not there (not preloaded,
 * or the process has not started it yet). */
static bool s_read_heap(const proc_t *p, lc_heapstat_t *out)
{
    if (!p->heapfile[0])
        return false;
    int fd = open(p->heapfile, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = false;
    for (int tries = 0; tries < 100 && !ok; tries++) {
        uint64_t seq;
        ok = pread(fd, out, sizeof *out, 0) == (ssize_t)sizeof *out &&
             out->magic == LC_HEAPSTAT_MAGIC && !((seq = atomic_load(&out->seq)) & 1) &&
             pread(fd, out, sizeof *out, 0) == (ssize_t)sizeof *out &&
             atomic_load(&out->seq) == seq;
    }
    close(fd);
    return ok;
}

static long s_rss_kb(pid_t pid, long *anon)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    *anon = -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1 || sscanf(line, "RssAnon: %ld", anon) == 1)
            if (kb >= 0 && *anon >= 0)
                break;
    fclose(f);
    return kb;
}

static int s_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Asks every process of the load for its progress; returns false if one did not answer. */
static bool s_ask(lc_client_t *c, long long *calls, long long *events, bool *done)
{
    bool all = true;
    long long answered = 0, low = -1;
    bool finished = true;
    for (int i = 0; i < s_nprocs; i++) {
        proc_t *p = &s_procs[i];
        if (p->kind < P_CALLER)
            continue;
        char target[64];
        snprintf(target, sizeof target, "%.32s.progress", p->name);
        json_t *res = NULL;
        int rc = lc_call(c, target, NULL, &res, CALL_TIMEOUT_MS);
        if (rc < 0) {
            fprintf(stderr, "lc-soak: %s: %s; see %s\n", target, lc_strerror(rc), p->log);
            json_decref(res);
            all = false;
            continue;
        }
        json_decref(p->progress);
        p->progress = res;
        if (p->kind == P_CALLER) {
            long long a = json_integer_value(json_object_get(res, "answered"));
            answered += a;
            finished &= a >= json_integer_value(json_object_get(res, "count"));
        } else if (p->kind == P_SUBSCRIBER) {
            long long r = json_integer_value(json_object_get(res, "received"));
            if (low < 0 || r < low)
                low = r;
            finished &= r >= o.events;
        }
    }
    *calls = answered;
    *events = low < 0 ? 0 : low;
    *done = finished;
    return all;
}

static sample_t *s_sample(double t, long long calls, long long events)
{
    if (s_nsamples == s_capsamples) {
        s_capsamples = s_capsamples ? 2 * s_capsamples : 256;
        s_samples = realloc(s_samples, (size_t)s_capsamples * sizeof *s_samples);
        if (!s_samples)
            s_die("out of memory");
    }
    sample_t *s = &s_samples[s_nsamples++];
    s->t = t;
    s->calls = calls;
    s->events = events;
    long long total = o.calls + o.events;
    s->progress = total ? (double)(calls + events) / (double)total : 1.0;
    for (int i = 0; i < s_nprocs; i++) {
        s->anon[i] = -1;
        s->rss[i] = s_procs[i].exited ? -1 : s_rss_kb(s_procs[i].pid, &s->anon[i]);
        s->fds[i] = s_procs[i].exited ? -1 : s_fd_count(s_procs[i].pid);
        lc_heapstat_t h;
        s->heap[i] =
            !s_procs[i].exited && s_read_heap(&s_procs[i], &h) ? (long)(h.live / 1024) : -1;
    }
    return s;
}

static void s_print_header(void)
{
    printf("%7s %6s %6s", "time", "calls", "events");
    for (int i = 0; i < s_nprocs; i++)
        printf(" %14s", s_procs[i].name);
    printf("\n%7s %6s %6s", "s", "%", "%");
    for (int i = 0; i < s_nprocs; i++)
        printf(" %14s", "RSS kB/fds");
    printf("\n");
}

static void s_print_row(const sample_t *s)
{
    printf("%7.1f %6.1f %6.1f", s->t, o.calls ? 100.0 * (double)s->calls / (double)o.calls : 100.0,
           o.events ? 100.0 * (double)s->events / (double)o.events : 100.0);
    for (int i = 0; i < s_nprocs; i++) {
        char cell[32];
        snprintf(cell, sizeof cell, "%ld/%d", s->rss[i], s->fds[i]);
        printf(" %14s", cell);
    }
    printf("\n");
    fflush(stdout);
}

static void s_write_csv(void)
{
    FILE *f = fopen(o.csv, "w");
    if (!f) {
        fprintf(stderr, "lc-soak: cannot write %s: %s\n", o.csv, strerror(errno));
        return;
    }
    fprintf(f, "time_s,calls,events");
    for (int i = 0; i < s_nprocs; i++)
        fprintf(f, ",%s_rss_kb,%s_anon_kb,%s_heap_kb,%s_fds", s_procs[i].name, s_procs[i].name,
                s_procs[i].name, s_procs[i].name);
    fprintf(f, "\n");
    for (int j = 0; j < s_nsamples; j++) {
        const sample_t *s = &s_samples[j];
        fprintf(f, "%.3f,%lld,%lld", s->t, s->calls, s->events);
        for (int i = 0; i < s_nprocs; i++)
            fprintf(f, ",%ld,%ld,%ld,%d", s->rss[i], s->anon[i], s->heap[i], s->fds[i]);
        fprintf(f, "\n");
    }
    fclose(f);
}

static long long s_int(json_t *o_, const char *key)
{
    return (long long)json_integer_value(json_object_get(o_, key));
}

/* ---- Driver: the checkpoints --------------------------------------------------------- */

/* Every process's memory at a moment when the bus holds nothing in flight: at warm-up (the
 * load paused for it) and at the end. What a process holds at a moment of the load
 * depends on what is queued or in flight at that moment (the broker's queue alone moves by
 * megabytes), so the heaps are compared where that is nothing, both times. */
typedef struct {
    bool taken;
    double t;
    long long live[MAX_PROCS];        /* bytes held through malloc; -1: not measured */
    long long system[MAX_PROCS];      /* bytes glibc's malloc got from the system */
    long long malloc_free[MAX_PROCS]; /* of those, free bytes malloc keeps */
    long rss[MAX_PROCS], anon[MAX_PROCS];
} checkpoint_t;

static checkpoint_t s_cp_warm, s_cp_end;

static int s_cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Pauses (pause true) or resumes the callers and the emitter. */
static bool s_pause_load(lc_client_t *c, bool pause)
{
    bool ok = true;
    for (int i = 0; i < s_nprocs; i++) {
        proc_t *p = &s_procs[i];
        if (p->kind != P_CALLER && p->kind != P_EMITTER)
            continue;
        char target[64];
        snprintf(target, sizeof target, "%.32s.pause", p->name);
        json_t *res = NULL;
        int rc = lc_call(c, target, json_pack("{s:b}", "pause", pause), &res, CALL_TIMEOUT_MS);
        json_decref(res);
        if (rc < 0) {
            fprintf(stderr, "lc-soak: %s: %s; see %s\n", target, lc_strerror(rc), p->log);
            ok = false;
        }
    }
    return ok;
}

/* Whether every call sent was answered and every subscriber has every event emitted, by
 * the answers of the last s_ask(). */
static bool s_drained(void)
{
    long long emitted = 0;
    for (int i = 0; i < s_nprocs; i++)
        if (s_procs[i].kind == P_EMITTER)
            emitted = s_int(s_procs[i].progress, "emitted");
    for (int i = 0; i < s_nprocs; i++) {
        json_t *pr = s_procs[i].progress;
        if (s_procs[i].kind == P_CALLER && s_int(pr, "answered") < s_int(pr, "sent"))
            return false;
        if (s_procs[i].kind == P_SUBSCRIBER && s_int(pr, "received") < emitted)
            return false;
    }
    return true;
}

/* Waits until nothing is in flight (pausing the load first if `pause`), lets the processes
 * settle for half a second, takes the median of three readings 200 ms apart, and resumes
 * the load. Returns false if the bus did not drain within --stall-ms. */
static bool s_checkpoint(lc_client_t *c, checkpoint_t *cp, bool pause, int64_t start)
{
    if (pause && !s_pause_load(c, true))
        return false;
    int64_t deadline = s_now_ms() + o.stall_ms;
    for (;;) {
        long long calls, events;
        bool done;
        if (!s_ask(c, &calls, &events, &done))
            return false;
        if (s_drained())
            break;
        if (s_now_ms() >= deadline) {
            fprintf(stderr, "lc-soak: the bus did not drain within %d ms for a checkpoint\n",
                    o.stall_ms);
            return false;
        }
        poll(NULL, 0, 100); /* the interval of a wait with a deadline */
    }
    poll(NULL, 0, 500); /* settle: libzmq frees what it sent a moment after the send */
    enum { READINGS = 3 };
    long long live[MAX_PROCS][READINGS], sys[MAX_PROCS][READINGS], mfree[MAX_PROCS][READINGS];
    long long rss[MAX_PROCS][READINGS], anon[MAX_PROCS][READINGS];
    for (int r = 0; r < READINGS; r++) {
        if (r)
            poll(NULL, 0, 200);
        for (int i = 0; i < s_nprocs; i++) {
            lc_heapstat_t h;
            bool have = !s_procs[i].exited && s_read_heap(&s_procs[i], &h);
            live[i][r] = have ? (long long)h.live : -1;
            sys[i][r] = have ? (long long)h.system : -1;
            mfree[i][r] = have ? (long long)h.malloc_free : -1;
            long a = -1;
            rss[i][r] = s_procs[i].exited ? -1 : s_rss_kb(s_procs[i].pid, &a);
            anon[i][r] = a;
        }
    }
    for (int i = 0; i < s_nprocs; i++) {
        qsort(live[i], READINGS, sizeof(long long), s_cmp_ll);
        qsort(sys[i], READINGS, sizeof(long long), s_cmp_ll);
        qsort(mfree[i], READINGS, sizeof(long long), s_cmp_ll);
        qsort(rss[i], READINGS, sizeof(long long), s_cmp_ll);
        qsort(anon[i], READINGS, sizeof(long long), s_cmp_ll);
        cp->live[i] = live[i][READINGS / 2];
        cp->system[i] = sys[i][READINGS / 2];
        cp->malloc_free[i] = mfree[i][READINGS / 2];
        cp->rss[i] = (long)rss[i][READINGS / 2];
        cp->anon[i] = (long)anon[i][READINGS / 2];
    }
    cp->t = (double)(s_now_ms() - start) / 1000.0;
    cp->taken = true;
    return !pause || s_pause_load(c, false);
}

/* ---- Driver: the verdict -------------------------------------------------------------- */

/* Whether a process's log holds a leak report (LeakSanitizer or valgrind). */
static bool s_leak_report(const proc_t *p)
{
    const char *files[2] = {p->log, p->vglog[0] ? p->vglog : NULL};
    bool found = false;
    for (int i = 0; i < 2 && files[i]; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f)
            continue;
        char line[1024];
        while (fgets(line, sizeof line, f))
            found |= strstr(line, "ERROR: LeakSanitizer") || strstr(line, "definitely lost in") ||
                     strstr(line, "indirectly lost in") || strstr(line, "ERROR: AddressSanitizer");
        fclose(f);
    }
    return found;
}

static double s_pct(long from, long to)
{
    return from > 0 ? 100.0 * (double)(to - from) / (double)from : 0.0;
}

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int s_run_driver(void)
{
    ssize_t n = readlink("/proc/self/exe", s_self, sizeof s_self - 1);
    if (n <= 0)
        s_die("cannot find my own program: readlink /proc/self/exe: %s", strerror(errno));
    s_self[n] = 0;
    char bindir[PATH_MAX];
    if (o.bindir)
        snprintf(bindir, sizeof bindir, "%s", o.bindir);
    else {
        /* Built as BUILD/tests/lc-soak beside BUILD/bin/. */
        snprintf(bindir, sizeof bindir, "%s", s_self);
        char *slash = strrchr(bindir, '/');
        if (slash)
            *slash = 0;
        strncat(bindir, "/../bin", sizeof bindir - strlen(bindir) - 1);
    }
    char broker_bin[PATH_MAX + 16], echo_bin[PATH_MAX + 16];
    snprintf(broker_bin, sizeof broker_bin, "%s/lc-broker", bindir);
    snprintf(echo_bin, sizeof echo_bin, "%s/lc-echo", bindir);
    if (access(broker_bin, X_OK) < 0 || access(echo_bin, X_OK) < 0)
        s_die("no lc-broker or lc-echo in %s: build them (make all) or give --bin DIR", bindir);

    if (o.dir) {
        /* An ipc socket's path has at most 107 bytes. */
        if (strlen(o.dir) > 90)
            s_die("--dir %s: at most 90 characters (the bus socket lives there)", o.dir);
        snprintf(s_dir, sizeof s_dir, "%s", o.dir);
        if (mkdir(s_dir, 0700) < 0 && errno != EEXIST)
            s_die("cannot create %s: %s", s_dir, strerror(errno));
    } else {
        snprintf(s_dir, sizeof s_dir, "/tmp/lc-soak-XXXXXX");
        if (!mkdtemp(s_dir))
            s_die("cannot create a folder in /tmp: %s", strerror(errno));
    }
    snprintf(s_bus, sizeof s_bus, "ipc://%s/bus", s_dir);
    signal(SIGPIPE, SIG_IGN);

    bool judge_rss = o.max_rss_growth >= 0 && !o.valgrind && !o.wrap && !SOAK_ASAN;
    /* The heap is counted by a preloaded malloc, which valgrind and the sanitizers (their
     * own malloc) and a --wrap (a profiler's) exclude. */
    bool heap = !o.valgrind && !o.wrap && !SOAK_ASAN;
    if (heap) {
        /* Built as BUILD/tests/lc-soak-heap.so beside this program. */
        const char *slash = strrchr(s_self, '/');
        int dirlen = slash ? (int)(slash - s_self) : 0;
        snprintf(s_preload, sizeof s_preload, "LD_PRELOAD=%.*s/lc-soak-heap.so", dirlen, s_self);
        if (access(s_preload + 11, R_OK) < 0)
            s_die("no %s: build it (make tests) to measure the heaps", s_preload + 11);
    }
    bool judge_heap = heap && o.max_heap_growth >= 0;
    if (!o.quiet)
        printf("lc-soak: %lld calls and %lld events through one broker, %d lc-echo modules, "
               "%d callers, %d subscribers%s; logs in %s\n",
               o.calls, o.events, o.modules, o.callers, o.subscribers,
               o.valgrind  ? ", every process under valgrind"
               : SOAK_ASAN ? " (ASan build)"
                           : "",
               s_dir);

    s_spawn("broker", P_BROKER, broker_bin, "--endpoint", s_bus, "--quiet", NULL);
    lc_client_t *c = lc_client_new(NULL, s_bus);
    if (!c)
        s_die("cannot create a client: %s", strerror(errno));
    int rc = lc_connect(c, CALL_TIMEOUT_MS);
    if (rc < 0)
        s_die("the broker did not come up on %s: %s; see %s", s_bus, lc_strerror(rc),
              s_procs[0].log);

    char names[512] = "", subs[512] = "", name[32];
    json_t *wait = json_array();
    for (int i = 1; i <= o.modules; i++) {
        snprintf(name, sizeof name, "echo%d", i);
        s_spawn(name, P_MODULE, echo_bin, "--name", name, "--bus", s_bus, NULL);
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i > 1 ? "," : "",
                 name);
        json_array_append_new(wait, json_string(name));
    }
    for (int i = 1; i <= o.subscribers; i++) {
        snprintf(name, sizeof name, "soak_sub%d", i);
        s_spawn_role("subscriber", name, P_SUBSCRIBER, 0, "-");
        snprintf(subs + strlen(subs), sizeof subs - strlen(subs), "%s%s", i > 1 ? "," : "", name);
        json_array_append_new(wait, json_string(name));
    }
    /* The subscribers and the modules are there before the first call or event. */
    json_t *res = NULL;
    rc = lc_call(c, "broker.wait", json_pack("{s:o}", "modules", wait), &res, CALL_TIMEOUT_MS);
    json_decref(res);
    if (rc < 0)
        s_die("the modules and subscribers did not register: %s; see the logs in %s",
              lc_strerror(rc), s_dir);
    int64_t start = s_now_ms();
    for (int i = 1; i <= o.callers; i++) {
        snprintf(name, sizeof name, "soak_caller%d", i);
        long long share = o.calls / o.callers + (i <= o.calls % o.callers);
        s_spawn_role("caller", name, P_CALLER, share, names);
    }
    s_spawn_role("emitter", "soak_emitter", P_EMITTER, o.events, subs);
    json_t *started = json_array();
    for (int i = 0; i < s_nprocs; i++)
        if (s_procs[i].kind == P_CALLER || s_procs[i].kind == P_EMITTER)
            json_array_append_new(started, json_string(s_procs[i].name));
    rc = lc_call(c, "broker.wait", json_pack("{s:o}", "modules", started), &res, CALL_TIMEOUT_MS);
    json_decref(res);
    if (rc < 0)
        s_die("the callers and the emitter did not register: %s; see the logs in %s",
              lc_strerror(rc), s_dir);

    if (!o.quiet)
        s_print_header();
    /* Sample each interval until every call is answered and every subscriber has every
     * event, or nothing moves for stall_ms. */
    bool done = false, stalled = false, lost = false;
    long long last_total = -1;
    int64_t last_move = s_now_ms();
    double next_print = 0;
    int warm = -1, end = -1;
    int64_t paused_ms = 0;
    while (!done) {
        long long calls = 0, events = 0;
        if (!s_ask(c, &calls, &events, &done))
            lost = true;
        sample_t *s = s_sample((double)(s_now_ms() - start) / 1000.0, calls, events);
        if (warm < 0 && s->progress * 100.0 >= o.warmup_pct && !done) {
            warm = s_nsamples - 1;
            int64_t t0 = s_now_ms();
            if (!s_checkpoint(c, &s_cp_warm, true, start)) {
                lost = true;
                break;
            }
            paused_ms = s_now_ms() - t0;
            last_move = s_now_ms();
        }
        if (!o.quiet && (s->progress >= next_print || done)) {
            s_print_row(s);
            next_print = s->progress + 0.05;
        }
        if (s_reap() < s_nprocs) {
            for (int i = 0; i < s_nprocs; i++)
                if (s_procs[i].exited)
                    fprintf(stderr, "lc-soak: %s ended during the run (status %d); see %s\n",
                            s_procs[i].name, s_procs[i].status, s_procs[i].log);
            lost = true;
            break;
        }
        if (lost)
            break;
        if (calls + events != last_total) {
            last_total = calls + events;
            last_move = s_now_ms();
        } else if (s_now_ms() - last_move > o.stall_ms) {
            fprintf(stderr,
                    "lc-soak: no progress for %d ms (calls %lld of %lld, events %lld of "
                    "%lld); see the logs in %s\n",
                    o.stall_ms, calls, o.calls, events, o.events, s_dir);
            stalled = true;
            break;
        }
        if (!done)
            poll(NULL, 0, o.interval_ms); /* the sampling interval, not a synchronisation */
    }
    end = s_nsamples - 1;
    double seconds = (double)(s_now_ms() - start - paused_ms) / 1000.0;
    if (done && !stalled && !lost)
        s_checkpoint(c, &s_cp_end, false, start);
    lc_client_destroy(&c);

    /* Stop the load, then the modules, then the broker; each must exit 0. */
    int stop_ms = o.valgrind ? 60000 : 20000;
    s_stop_kind(P_CALLER, stop_ms);
    s_stop_kind(P_EMITTER, stop_ms);
    s_stop_kind(P_SUBSCRIBER, stop_ms);
    s_stop_kind(P_MODULE, stop_ms);
    s_stop_kind(P_BROKER, stop_ms);

    /* The verdict. */
    bool ok = done && !stalled && !lost;
    long long ok_calls = 0, bad = 0, failed = 0, emitted = 0, refused = 0;
    json_t *summary = json_object(), *jprocs = json_array(), *jsubs = json_array();
    for (int i = 0; i < s_nprocs; i++) {
        proc_t *p = &s_procs[i];
        if (p->kind == P_CALLER) {
            ok_calls += s_int(p->progress, "ok");
            bad += s_int(p->progress, "bad");
            failed += s_int(p->progress, "failed");
            const char *err = json_string_value(json_object_get(p->progress, "error"));
            if (err && *err)
                printf("%s: first failure: %s\n", p->name, err);
        } else if (p->kind == P_EMITTER) {
            emitted = s_int(p->progress, "emitted");
            refused = s_int(p->progress, "refused");
            const char *err = json_string_value(json_object_get(p->progress, "error"));
            if (err && *err)
                printf("%s: first refusal: %s\n", p->name, err);
        } else if (p->kind == P_SUBSCRIBER) {
            json_array_append_new(jsubs,
                                  json_pack("{s:s, s:I, s:I, s:I}", "name", p->name, "received",
                                            (json_int_t)s_int(p->progress, "received"), "gaps",
                                            (json_int_t)s_int(p->progress, "gaps"), "dups",
                                            (json_int_t)s_int(p->progress, "dups")));
            ok &= s_int(p->progress, "received") == o.events && !s_int(p->progress, "gaps") &&
                  !s_int(p->progress, "dups");
        }
    }
    ok &= ok_calls == o.calls && !bad && !failed && emitted == o.events && !refused;

    printf("\ncalls: %lld of %lld answered correctly, %lld wrong, %lld failed\n", ok_calls, o.calls,
           bad, failed);
    printf("events: %lld of %lld emitted, %lld refused or dropped;", emitted, o.events, refused);
    size_t si;
    json_t *js;
    json_array_foreach(jsubs, si, js)
    {
        printf(" %s got %lld (%lld missing, %lld out of order)",
               json_string_value(json_object_get(js, "name")), s_int(js, "received"),
               s_int(js, "gaps"), s_int(js, "dups"));
    }
    printf("\nrun: %.1f s, %.0f calls/s, %.0f events/s; %d samples every %d ms\n", seconds,
           (double)ok_calls / seconds, (double)emitted / seconds, s_nsamples, o.interval_ms);
    if (warm < 0 || warm > end)
        warm = end;
    const sample_t *w = &s_samples[warm], *z = &s_samples[end];
    const checkpoint_t *cw = &s_cp_warm, *ce = &s_cp_end;
    bool cps = cw->taken && ce->taken;
    if (!cps && ok) {
        printf("the load ended before warm-up (%d%% of the work), or the bus did not drain: "
               "growth cannot be judged; run longer\n",
               o.warmup_pct);
        ok = false;
    }
    if (cps)
        printf(
            "\nmemory with nothing in flight, at warm-up (%.0f%% of the work, the load paused; "
            "%.1f s) and at the end (%.1f s):\nheap: bytes held through malloc, and their growth "
            "against the process's size (VmRSS at warm-up), which is judged; malloc: what "
            "glibc's malloc got from the system, and of it free at the end; RSS: VmRSS, and "
            "its largest sample; fds: at warm-up and at the end\n",
            100.0 * w->progress, cw->t, ce->t);
    printf("%-14s %7s %11s %11s %10s %8s %10s %10s %10s %10s %10s %8s %10s %5s %5s %5s %4s  %s\n",
           "process", "pid", "heap warm", "heap end", "growth", "of size", "malloc w", "malloc end",
           "free end", "RSS warm", "RSS end", "growth", "RSS max", "fds@w", "fds", "fdmax", "exit",
           "verdict");
    bool leaks_any = false;
    for (int i = 0; i < s_nprocs; i++) {
        proc_t *p = &s_procs[i];
        long rmax = 0;
        int fmax = 0;
        for (int j = warm; j <= end; j++) {
            if (s_samples[j].rss[i] > rmax)
                rmax = s_samples[j].rss[i];
            if (s_samples[j].fds[i] > fmax)
                fmax = s_samples[j].fds[i];
        }
        bool have_heap = cps && cw->live[i] > 0 && ce->live[i] > 0;
        long rss_warm = cps ? cw->rss[i] : w->rss[i], rss_end = cps ? ce->rss[i] : z->rss[i];
        /* The goal is the process's growth against its size, as with RSS; but counting
         * only what it holds, not what malloc keeps for it. */
        long long heap_delta = have_heap ? ce->live[i] - cw->live[i] : 0;
        double heap_growth =
            have_heap && rss_warm > 0 ? 100.0 * (double)heap_delta / (1024.0 * rss_warm) : 0.0;
        double growth = s_pct(rss_warm, rss_end);
        int fd_growth = z->fds[i] - w->fds[i];
        bool leaks = s_leak_report(p);
        int code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
        char verdict[128] = "";
        if (judge_heap && cps && !have_heap)
            snprintf(verdict + strlen(verdict), sizeof verdict - strlen(verdict),
                     "heap not measured ");
        if (judge_heap && have_heap && heap_growth >= o.max_heap_growth)
            snprintf(verdict + strlen(verdict), sizeof verdict - strlen(verdict),
                     "heap grew %.1f kB, %.2f%% of its size ", (double)heap_delta / 1024.0,
                     heap_growth);
        if (judge_rss && cps && growth >= o.max_rss_growth)
            snprintf(verdict + strlen(verdict), sizeof verdict - strlen(verdict),
                     "RSS grew %.2f%% ", growth);
        if (fd_growth > o.max_fd_growth)
            snprintf(verdict + strlen(verdict), sizeof verdict - strlen(verdict), "%d more fds ",
                     fd_growth);
        if (leaks)
            snprintf(verdict + strlen(verdict), sizeof verdict - strlen(verdict), "leaks ");
        if (code != 0)
            snprintf(verdict + strlen(verdict), sizeof verdict - strlen(verdict), "exit %d ", code);
        leaks_any |= leaks;
        ok &= !verdict[0];
        char hw[24] = "-", he[24] = "-", hd[24] = "-", hg[16] = "-", mw[24] = "-", me[24] = "-",
             mf[24] = "-";
        if (have_heap) {
            snprintf(hw, sizeof hw, "%.1f kB", (double)cw->live[i] / 1024.0);
            snprintf(he, sizeof he, "%.1f kB", (double)ce->live[i] / 1024.0);
            snprintf(hd, sizeof hd, "%+.1f kB", (double)heap_delta / 1024.0);
            snprintf(hg, sizeof hg, "%+.2f%%", heap_growth);
            snprintf(mw, sizeof mw, "%lld kB", cw->system[i] / 1024);
            snprintf(me, sizeof me, "%lld kB", ce->system[i] / 1024);
            snprintf(mf, sizeof mf, "%lld kB", ce->malloc_free[i] / 1024);
        }
        printf("%-14s %7d %11s %11s %10s %8s %10s %10s %10s %7ld kB %7ld kB %+7.2f%% %7ld kB %5d "
               "%5d %5d %4d  %s\n",
               p->name, (int)p->pid, hw, he, hd, hg, mw, me, mf, rss_warm, rss_end, growth, rmax,
               w->fds[i], z->fds[i], fmax, code, verdict[0] ? verdict : "ok");
        if (verdict[0])
            printf("%14s see %s%s%s\n", "", p->log, p->vglog[0] ? " and " : "", p->vglog);
        json_t *jp = json_pack(
            "{s:s, s:i, s:I, s:I, s:I, s:f, s:I, s:I, s:i, s:i, s:i, s:i, s:b}", "name", p->name,
            "pid", (int)p->pid, "rss_warm_kb", (json_int_t)rss_warm, "rss_end_kb",
            (json_int_t)rss_end, "rss_max_kb", (json_int_t)rmax, "rss_growth_pct", growth,
            "anon_warm_kb", (json_int_t)(cps ? cw->anon[i] : w->anon[i]), "anon_end_kb",
            (json_int_t)(cps ? ce->anon[i] : z->anon[i]), "fds_warm", w->fds[i], "fds_end",
            z->fds[i], "fds_max", fmax, "exit", code, "leaks", leaks);
        if (have_heap) {
            json_object_set_new(jp, "heap_warm_bytes", json_integer(cw->live[i]));
            json_object_set_new(jp, "heap_end_bytes", json_integer(ce->live[i]));
            json_object_set_new(jp, "heap_growth_bytes", json_integer(heap_delta));
            json_object_set_new(jp, "heap_growth_pct_of_rss", json_real(heap_growth));
            json_object_set_new(jp, "malloc_system_warm_bytes", json_integer(cw->system[i]));
            json_object_set_new(jp, "malloc_system_end_bytes", json_integer(ce->system[i]));
            json_object_set_new(jp, "malloc_free_end_bytes", json_integer(ce->malloc_free[i]));
        }
        json_array_append_new(jprocs, jp);
    }
    if (!heap)
        printf("heap not measured (%s)\n", o.valgrind ? "under valgrind"
                                           : o.wrap   ? "under --wrap"
                                                      : "an ASan build has its own malloc");
    else if (!judge_heap)
        printf("heap growth not judged (--max-heap-growth below 0)\n");
    if (!judge_rss)
        printf("RSS growth not judged (%s)\n", o.valgrind  ? "under valgrind"
                                               : o.wrap    ? "under --wrap"
                                               : SOAK_ASAN ? "an ASan build holds freed memory "
                                                             "in its quarantine"
                                                           : "shown only: see --max-rss-growth");
    printf("leak check: %s\n",
           o.valgrind  ? (leaks_any ? "valgrind reported leaks" : "valgrind: no leaks")
           : SOAK_ASAN ? (leaks_any ? "LeakSanitizer reported leaks" : "LeakSanitizer: no leaks")
                       : "none (use --valgrind or an ASan build)");
    printf("%s\n", ok ? "soak: PASSED" : "soak: FAILED");

    json_object_set_new(summary, "ok", json_boolean(ok));
    json_object_set_new(summary, "calls",
                        json_pack("{s:I, s:I, s:I, s:I}", "count", (json_int_t)o.calls, "ok",
                                  (json_int_t)ok_calls, "bad", (json_int_t)bad, "failed",
                                  (json_int_t)failed));
    json_object_set_new(summary, "events",
                        json_pack("{s:I, s:I, s:I, s:o}", "count", (json_int_t)o.events, "emitted",
                                  (json_int_t)emitted, "refused", (json_int_t)refused,
                                  "subscribers", jsubs));
    json_object_set_new(summary, "processes", jprocs);
    json_object_set_new(summary, "seconds", json_real(seconds));
    json_object_set_new(summary, "samples", json_integer(s_nsamples));
    json_object_set_new(summary, "stalled", json_boolean(stalled));
    if (o.json && json_dump_file(summary, o.json, JSON_INDENT(2)) < 0)
        fprintf(stderr, "lc-soak: cannot write %s\n", o.json);
    json_decref(summary);
    if (o.csv)
        s_write_csv();
    for (int i = 0; i < s_nprocs; i++)
        json_decref(s_procs[i].progress);
    free(s_samples);
    if (ok && !o.keep && !o.dir)
        nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    else if (!ok)
        printf("logs kept in %s\n", s_dir);
    return ok ? 0 : 1;
}

/* ---- Options -------------------------------------------------------------------------- */

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-soak [OPTION]...\n"
            "Runs many calls and events through one lc-broker and a few lc-echo modules and\n"
            "watches each process's memory (VmRSS) and open file descriptors.\n"
            "\n"
            "  --calls N            calls to echo.echo, each answer checked (default 1000000)\n"
            "  --events N           soak_tick events, each subscriber checks it gets all, in\n"
            "                       order (default 1000000)\n"
            "  --modules N          lc-echo modules answering the calls (default 2)\n"
            "  --callers N          processes making the calls (default 2)\n"
            "  --subscribers N      processes subscribed to the events (default 2)\n"
            "  --inflight N         calls each caller keeps open at once (default 32)\n"
            "  --rate N             calls per second, and events per second, at most: a steady\n"
            "                       load (default 20000; 0: as fast as they go)\n"
            "  --call-timeout-ms MS deadline of each call (default 5000, the bus's default)\n"
            "  --interval-ms MS     sampling interval (default 1000)\n"
            "  --warmup PCT         compare from the first sample at PCT%% of the work\n"
            "                       (default 20)\n"
            "  --max-heap-growth PCT goal per process: what it holds through malloc, with\n"
            "                       nothing in flight, grows from warm-up to the end by less\n"
            "                       than PCT%% of its size (VmRSS at warm-up) (default 1;\n"
            "                       below 0: not judged; not measured under valgrind or ASan)\n"
            "  --max-rss-growth PCT the same for VmRSS (default: shown, not judged; it counts\n"
            "                       what malloc keeps after a peak, see docs/reliability.md)\n"
            "  --max-fd-growth N    goal per process (default 0)\n"
            "  --stall-ms MS        give up when nothing moves for MS (default 60000)\n"
            "  --valgrind           run every process under valgrind memcheck; a leak\n"
            "                       (definite or indirect) fails the run\n"
            "  --wrap CMD           run every process under CMD, e.g. 'heaptrack' or\n"
            "                       'valgrind --tool=massif' (memory is then not judged)\n"
            "  --bin DIR            where lc-broker and lc-echo are (default: ../bin beside\n"
            "                       this program)\n"
            "  --dir DIR            folder for the bus and the logs (default: a new folder\n"
            "                       in /tmp, removed after a passed run)\n"
            "  --keep               keep that folder\n"
            "  --csv FILE           write every sample to FILE\n"
            "  --json FILE          write the summary to FILE\n"
            "  -q, --quiet          print the summary only\n"
            "  -h, --help           show this help and exit\n"
            "\n"
            "Exit status: 0 when every call was answered correctly, every subscriber got every\n"
            "event, every process stayed within the goals and exited 0 without leak reports;\n"
            "1 otherwise; 2 on a usage or start-up error. See docs/reliability.md.\n");
}

static long long s_num(const char *opt, const char *v, long long min)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min)
        s_die("%s expects a number of at least %lld, not '%s'", opt, min, v);
    return n;
}

int main(int argc, char **argv)
{
    enum {
        O_CALLS = 256,
        O_EVENTS,
        O_MODULES,
        O_CALLERS,
        O_SUBS,
        O_INFLIGHT,
        O_INTERVAL,
        O_WARMUP,
        O_RSS,
        O_FD,
        O_STALL,
        O_VALGRIND,
        O_BIN,
        O_DIR,
        O_KEEP,
        O_CSV,
        O_JSON,
        O_ROLE,
        O_NAME,
        O_BUS,
        O_COUNT,
        O_TARGETS,
        O_CALL_TIMEOUT,
        O_RATE,
        O_WRAP,
        O_HEAP,
        O_LEAK
    };
    static const struct option longopts[] = {
        {"calls", required_argument, NULL, O_CALLS},
        {"events", required_argument, NULL, O_EVENTS},
        {"modules", required_argument, NULL, O_MODULES},
        {"callers", required_argument, NULL, O_CALLERS},
        {"subscribers", required_argument, NULL, O_SUBS},
        {"inflight", required_argument, NULL, O_INFLIGHT},
        {"call-timeout-ms", required_argument, NULL, O_CALL_TIMEOUT},
        {"rate", required_argument, NULL, O_RATE},
        {"interval-ms", required_argument, NULL, O_INTERVAL},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"max-rss-growth", required_argument, NULL, O_RSS},
        {"max-heap-growth", required_argument, NULL, O_HEAP},
        /* not in --help: a caller loses N bytes per answer, to show the soak finds it */
        {"leak-bytes", required_argument, NULL, O_LEAK},
        {"max-fd-growth", required_argument, NULL, O_FD},
        {"stall-ms", required_argument, NULL, O_STALL},
        {"valgrind", no_argument, NULL, O_VALGRIND},
        {"wrap", required_argument, NULL, O_WRAP},
        {"bin", required_argument, NULL, O_BIN},
        {"dir", required_argument, NULL, O_DIR},
        {"keep", no_argument, NULL, O_KEEP},
        {"csv", required_argument, NULL, O_CSV},
        {"json", required_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        /* the load's processes: lc-soak runs itself with these */
        {"role", required_argument, NULL, O_ROLE},
        {"name", required_argument, NULL, O_NAME},
        {"bus", required_argument, NULL, O_BUS},
        {"count", required_argument, NULL, O_COUNT},
        {"targets", required_argument, NULL, O_TARGETS},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (opt) {
        case O_CALLS:
            o.calls = s_num("--calls", optarg, 0);
            break;
        case O_EVENTS:
            o.events = s_num("--events", optarg, 0);
            break;
        case O_MODULES:
            o.modules = (int)s_num("--modules", optarg, 1);
            break;
        case O_CALLERS:
            o.callers = (int)s_num("--callers", optarg, 1);
            break;
        case O_SUBS:
            o.subscribers = (int)s_num("--subscribers", optarg, 1);
            break;
        case O_INFLIGHT:
            o.inflight = (int)s_num("--inflight", optarg, 1);
            break;
        case O_CALL_TIMEOUT:
            o.call_timeout_ms = (int)s_num("--call-timeout-ms", optarg, 1);
            break;
        case O_RATE:
            o.rate = s_num("--rate", optarg, 0);
            break;
        case O_INTERVAL:
            o.interval_ms = (int)s_num("--interval-ms", optarg, 10);
            break;
        case O_WARMUP:
            o.warmup_pct = (int)s_num("--warmup", optarg, 0);
            break;
        case O_RSS:
            o.max_rss_growth = atof(optarg);
            break;
        case O_FD:
            o.max_fd_growth = (int)s_num("--max-fd-growth", optarg, 0);
            break;
        case O_STALL:
            o.stall_ms = (int)s_num("--stall-ms", optarg, 100);
            break;
        case O_VALGRIND:
            o.valgrind = true;
            break;
        case O_HEAP:
            o.max_heap_growth = atof(optarg);
            break;
        case O_LEAK:
            o.leak_bytes = s_num("--leak-bytes", optarg, 0);
            break;
        case O_WRAP:
            o.wrap = optarg;
            break;
        case O_BIN:
            o.bindir = optarg;
            break;
        case O_DIR:
            o.dir = optarg;
            break;
        case O_KEEP:
            o.keep = true;
            break;
        case O_CSV:
            o.csv = optarg;
            break;
        case O_JSON:
            o.json = optarg;
            break;
        case 'q':
            o.quiet = true;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        case O_ROLE:
            o.role = optarg;
            break;
        case O_NAME:
            o.name = optarg;
            break;
        case O_BUS:
            o.bus = optarg;
            break;
        case O_COUNT:
            o.count = s_num("--count", optarg, 0);
            break;
        case O_TARGETS:
            o.targets = optarg;
            break;
        default:
            fprintf(stderr, "Try 'lc-soak --help'.\n");
            return 2;
        }
    }
    if (optind < argc)
        s_die("unexpected argument '%s'; try 'lc-soak --help'", argv[optind]);
    if (o.modules > MAX_TARGETS || o.subscribers > MAX_TARGETS || o.callers > MAX_TARGETS)
        s_die("at most %d modules, callers and subscribers each", MAX_TARGETS);
    if (o.warmup_pct > 90)
        s_die("--warmup expects at most 90 (percent), not %d", o.warmup_pct);
    if (!o.role)
        return s_run_driver();
    if (strcmp(o.role, "caller") == 0)
        return s_run_caller();
    if (strcmp(o.role, "emitter") == 0)
        return s_run_emitter();
    if (strcmp(o.role, "subscriber") == 0)
        return s_run_subscriber();
    s_die("unknown --role '%s' (caller, emitter or subscriber)", o.role);
}
