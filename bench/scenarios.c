/* lc-bench: the scenarios that run through the bus, and the module they talk to. Every
 * scenario starts its own broker and modules on endpoints in the run's folder and stops
 * them at its end, so one scenario's leftovers cannot slow the next. */
#include "bench.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Broker options for scenarios that queue a lot: the limits must not be what is measured. */
#define BIG_QUEUE "--max-queue", "4000000", "--max-backlog", "2000000"

/* ---- The worker module (lc-bench --role worker) --------------------------------------------- */

static long s_items;         /* tasks and bench_ev events handled */
static int s_spin_us;        /* busy time of a prio_low event */
static int64_t *s_low_start; /* start times of prio_low handlers */
static size_t s_low_n, s_low_cap;

static void s_echo(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    lc_reply(req, json_incref(args));
}

/* Never answers: the caller waits until the module goes away (scenario k). */
static void s_hang(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    lc_defer(req);
    dprintf(1, "hang\n");
}

/* Tasks and bench_ev events: counted; the one marked "last" reports the count and the time
 * its handler returns. */
static void s_item(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)arg;
    s_items++;
    if (json_is_true(json_object_get(args, "last")))
        dprintf(1, "%ld %lld\n", s_items, (long long)now_us());
}

static void s_low(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)args;
    (void)arg;
    int64_t t = now_us();
    if (s_low_n == s_low_cap) {
        s_low_cap = s_low_cap ? s_low_cap * 2 : 16384;
        s_low_start = realloc(s_low_start, s_low_cap * sizeof *s_low_start);
        if (!s_low_start)
            abort();
    }
    s_low_start[s_low_n++] = t;
    while (now_us() - t < s_spin_us)
        ; /* a handler that is busy, not asleep */
}

/* The highest-priority event: reports how long after its sending it started, and how many
 * prio_low handlers started in between. */
static void s_high(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)arg;
    int64_t t = now_us();
    int64_t sent = (int64_t)json_integer_value(json_object_get(args, "sent_us"));
    long before = 0;
    for (size_t i = 0; i < s_low_n; i++)
        before += s_low_start[i] > sent;
    dprintf(1, "%lld %ld\n", (long long)(t - sent), before);
}

int role_worker(int argc, char **argv)
{
    lc_client_t *c = lc_module_new("w", &argc, argv);
    if (!c)
        return 2;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--spin-us") == 0)
            s_spin_us = atoi(argv[i + 1]);
    lc_method(c, "echo", s_echo, NULL);
    lc_method(c, "hang", s_hang, NULL);
    lc_method(c, "task", s_item, NULL);
    lc_on(c, "bench_ev", s_item, NULL);
    lc_on(c, "prio_low", s_low, NULL);
    lc_on(c, "prio_high", s_high, NULL);
    int rc = lc_run(c);
    if (rc < 0)
        fprintf(stderr, "lc-bench worker: cannot serve as '%s' on %s: %s\n", lc_client_name(c),
                lc_client_endpoint(c), lc_strerror(rc));
    lc_client_destroy(&c);
    free(s_low_start);
    return rc < 0;
}

/* A broker on a fresh endpoint, and workers named PREFIX0..PREFIX{n-1}, all ready. */
typedef struct {
    char ep[400];
    proc_t *broker;
    proc_t *spy;
    proc_t *w[16];
    int n;
    lc_client_t *c;
} bus_t;

static void s_bus_down(bus_t *b)
{
    lc_client_destroy(&b->c);
    proc_stop(&b->spy, SIGKILL, 1000);
    for (int i = 0; i < b->n; i++)
        proc_stop(&b->w[i], SIGKILL, 1000);
    proc_stop(&b->broker, SIGKILL, 1000);
}

bool spy_available(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lc-spy", cfg.bin);
    return access(path, X_OK) == 0;
}

static json_int_t s_stat(lc_client_t *c, const char *key, bool *have)
{
    json_t *res = NULL;
    json_int_t v = 0;
    *have = false;
    if (lc_call(c, "broker.stats", NULL, &res, 5000) == 0 && json_object_get(res, key)) {
        v = json_integer_value(json_object_get(res, key));
        *have = true;
    }
    json_decref(res);
    return v;
}

/* Attaches lc-spy (its records go to /dev/null) and waits until broker.stats counts one
 * more spy. */
static bool s_spy_attach(bus_t *b)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lc-spy", cfg.bin);
    char *argv[] = {path, "--bus", b->ep, "--json", NULL};
    bool have;
    json_int_t before = s_stat(b->c, "spies", &have);
    if (!have) {
        bench_fail("this broker counts no spies in broker.stats: is it older than lc-spy?");
        return false;
    }
    b->spy = proc_start("spy", argv, OUT_NULL);
    if (!b->spy)
        return false;
    int64_t deadline = now_us() + 10000000;
    while (s_stat(b->c, "spies", &have) <= before) {
        int st;
        if (now_us() > deadline || waitpid(b->spy->pid, &st, WNOHANG) == b->spy->pid) {
            bench_fail("lc-spy did not attach to %s within 10 s:\n%s", b->ep, proc_log(b->spy));
            return false;
        }
        usleep(2000);
    }
    return true;
}

/* Says so when the spy could not keep up (records the broker dropped for it). */
static void s_spy_check(bus_t *b)
{
    bool have;
    json_int_t lost = b->spy ? s_stat(b->c, "tap_dropped", &have) : 0;
    if (lost)
        fprintf(stderr,
                "\nlc-bench: note: the spy could not keep up; the broker dropped %lld "
                "records for it\n",
                (long long)lost);
}

/* opts: BUS_BIG (bounds raised for floods and large payloads), BUS_NO_TAP (a broker
 * without its monitor socket, the reference for what an idle tap costs). */
enum { BUS_BIG = 1, BUS_NO_TAP = 2 };

static bool s_bus_up(bus_t *b, const char *name, int n, const char *prefix, int opts, bool spy,
                     const char *const *extra)
{
    memset(b, 0, sizeof *b);
    endpoint(b->ep, sizeof b->ep, name);
    if (opts & BUS_BIG)
        b->broker = broker_start(b->ep, BIG_QUEUE, "--max-payload", "4194304", NULL);
    else if (opts & BUS_NO_TAP)
        b->broker = broker_start(b->ep, "--monitor", "none", NULL);
    else
        b->broker = broker_start(b->ep, NULL);
    if (!b->broker)
        return false;
    json_t *names = json_array();
    for (int i = 0; i < n; i++) {
        char wn[32];
        snprintf(wn, sizeof wn, "%s%d", prefix, i);
        json_array_append_new(names, json_string(wn));
        b->w[i] = proc_role(wn, "worker", "--name", wn, "--bus", b->ep, extra ? extra[0] : NULL,
                            extra ? extra[1] : NULL, NULL);
        b->n = i + 1;
        if (!b->w[i]) {
            json_decref(names);
            s_bus_down(b);
            return false;
        }
    }
    b->c = client_new(b->ep);
    int rc = b->c ? lc_call(b->c, "broker.wait", json_pack("{s:o}", "modules", names), NULL, 20000)
                  : LC_ENOBUS;
    if (rc < 0) {
        bench_fail("workers on %s did not become ready: %s\n%s", b->ep, lc_strerror(rc),
                   n ? proc_log(b->w[0]) : "");
        s_bus_down(b);
        return false;
    }
    if (spy && !s_spy_attach(b)) {
        s_bus_down(b);
        return false;
    }
    return true;
}

/* Runs the client's loop until *flag is set or timeout_ms passes; false on timeout. */
static bool s_dispatch_until(lc_client_t *c, const bool *flag, int timeout_ms)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    while (!*flag) {
        int64_t left = (deadline - now_us()) / 1000;
        if (left < 0)
            return false;
        int t = lc_timeout(c);
        struct pollfd pfd = {.fd = lc_fd(c), .events = POLLIN};
        poll(&pfd, 1, t >= 0 && t < left ? t : (int)left);
        if (lc_dispatch(c) < 0)
            return false;
    }
    return true;
}

/* ---- (a), (b), (g): calls ---------------------------------------------------------------------
 */

typedef struct {
    lc_client_t *c;
    json_t *args;
    int64_t warm, start, end, last;
    long done;
    int open;
    bool over, failed;
    lat_t lat;
} calls_t;

typedef struct {
    calls_t *k;
    int64_t sent;
} slot_t;

static void s_slot_done(lc_client_t *c, int rc, json_t *result, void *arg);

static void s_slot_send(slot_t *s)
{
    calls_t *k = s->k;
    s->sent = now_us();
    int rc = lc_call_async(k->c, "w0.echo", json_incref(k->args), 10000, s_slot_done, s);
    if (rc < 0) {
        k->failed = true;
        bench_fail("lc_call_async: %s", lc_strerror(rc));
    } else
        k->open++;
}

static void s_slot_done(lc_client_t *c, int rc, json_t *result, void *arg)
{
    (void)c;
    (void)result;
    slot_t *s = arg;
    calls_t *k = s->k;
    k->open--;
    if (rc < 0) {
        if (!k->failed)
            bench_fail("a pipelined call failed: %s", lc_strerror(rc));
        k->failed = true;
        return;
    }
    int64_t t = now_us();
    if (k->over)
        return; /* answers still open when the window closed */
    if (t >= k->warm) {
        if (!k->start) {
            k->start = t;
            k->end = t + (int64_t)(cfg.secs * 1e6);
        }
        k->done++;
        lat_add(&k->lat, t - s->sent);
        if (t >= k->end) {
            k->over = true;
            k->last = t;
        }
    }
    if (!k->over && !k->failed)
        s_slot_send(s);
}

static bool s_calls(bus_t *b, int depth, size_t size, double *rate, double *p50, double *p99)
{
    calls_t k = {.c = b->c, .args = payload_json(size)};
    k.warm = now_us() + (int64_t)(cfg.secs * 200000);
    int64_t t = 0;
    if (depth == 1) {
        for (;;) {
            int64_t s = now_us();
            int rc = lc_call(b->c, "w0.echo", json_incref(k.args), NULL, 10000);
            t = now_us();
            if (rc < 0) {
                bench_fail("a call to w0.echo failed: %s", lc_strerror(rc));
                k.failed = true;
                break;
            }
            if (t < k.warm)
                continue;
            if (!k.start) {
                k.start = s;
                k.end = s + (int64_t)(cfg.secs * 1e6);
            }
            k.done++;
            lat_add(&k.lat, t - s);
            if (t >= k.end)
                break;
        }
    } else {
        slot_t slots[64];
        for (int i = 0; i < depth && i < 64; i++) {
            slots[i].k = &k;
            s_slot_send(&slots[i]);
        }
        /* Runs until the window closes and the answers still open have arrived. */
        int64_t limit = k.warm + (int64_t)(cfg.secs * 1e6) + 30000000;
        bool never = false;
        while (k.open > 0 && !k.failed) {
            s_dispatch_until(b->c, &never, 100);
            if (now_us() > limit) {
                bench_fail("pipelined calls did not finish within 30 s of the window");
                k.failed = true;
            }
        }
        t = k.last;
    }
    if (!k.failed) {
        *rate = (double)k.done / ((double)(t - k.start) / 1e6);
        *p50 = lat_pct(&k.lat, 50);
        *p99 = lat_pct(&k.lat, 99);
    }
    lat_free(&k.lat);
    json_decref(k.args);
    return !k.failed;
}

void sc_call(int depth, size_t size, const char *key_rate, const char *key_p50, const char *key_p99)
{
    bus_t b;
    if (!s_bus_up(&b, "bus", 1, "w", size > 64, false, NULL))
        return;
    double rate, p50, p99;
    if (s_calls(&b, depth, size, &rate, &p50, &p99)) {
        bench_record(key_rate, rate);
        if (key_p50)
            bench_record(key_p50, p50);
        if (key_p99)
            bench_record(key_p99, p99);
    }
    s_bus_down(&b);
}

/* ---- (c): 8 threads calling through one client ------------------------------------------------
 */

typedef struct {
    lc_client_t *c;
    int64_t warm, end;
    atomic_long done;
    atomic_int running;
    atomic_bool failed;
} threads_t;

static void *s_caller(void *arg)
{
    threads_t *t = arg;
    json_t *args = payload_json(64);
    for (;;) {
        int rc = lc_call(t->c, "w0.echo", json_incref(args), NULL, 10000);
        int64_t now = now_us();
        if (rc < 0) {
            if (!atomic_exchange(&t->failed, true))
                bench_fail("a call from a thread failed: %s", lc_strerror(rc));
            break;
        }
        if (now >= t->end)
            break;
        if (now >= t->warm)
            atomic_fetch_add(&t->done, 1);
    }
    json_decref(args);
    atomic_fetch_sub(&t->running, 1);
    return NULL;
}

void sc_call_threads(void)
{
    bus_t b;
    if (!s_bus_up(&b, "bus", 1, "w", false, false, NULL))
        return;
    threads_t t = {.c = b.c};
    t.warm = now_us() + (int64_t)(cfg.secs * 200000);
    t.end = t.warm + (int64_t)(cfg.secs * 1e6);
    atomic_init(&t.running, 8);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, s_caller, &t);
    /* The loop thread keeps dispatching while the callers run (they use attached
     * connections, but the loop still owns the registration). */
    while (atomic_load(&t.running) > 0) {
        struct pollfd pfd = {.fd = lc_fd(b.c), .events = POLLIN};
        poll(&pfd, 1, 20);
        lc_dispatch(b.c);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    if (!atomic_load(&t.failed))
        bench_record("call_threads8_rate",
                     (double)atomic_load(&t.done) / ((double)(t.end - t.warm) / 1e6));
    s_bus_down(&b);
}

/* ---- (d): tasks
 * ----------------------------------------------------------------------------------- */

static long s_notices;

static void s_notice(lc_client_t *c, int rc, const char *target, json_t *info, void *arg)
{
    (void)c;
    (void)arg;
    if (s_notices++ == 0)
        bench_fail("the bus refused %s: %s (%s)", target, lc_strerror(rc),
                   json_string_value(json_object_get(info, "message")));
}

/* Sends n items (tasks to w0.task or bench_ev events), the last marked, and waits for every
 * worker's report. Returns the time of the last report, or 0. */
static int64_t s_send_items(bus_t *b, bool events, long n, long expect_total, int64_t *sent_end)
{
    json_t *args = payload_json(64);
    json_t *last = json_deep_copy(args);
    json_object_set_new(last, "last", json_true());
    for (long i = 0; i < n; i++) {
        json_t *a = json_incref(i == n - 1 ? last : args);
        int rc = events ? lc_emit(b->c, "bench_ev", a, 0) : lc_enqueue(b->c, "w0.task", a, 0);
        if (rc < 0) {
            bench_fail("cannot send item %ld: %s", i, lc_strerror(rc));
            break;
        }
        if ((i & 1023) == 1023)
            lc_dispatch(b->c); /* notices, if any */
    }
    *sent_end = now_us();
    json_decref(args);
    json_decref(last);
    int64_t latest = 0;
    for (int i = 0; i < b->n; i++) {
        const char *line = proc_read(b->w[i], 60000);
        long count = 0;
        long long t = 0;
        if (!line || sscanf(line, "%ld %lld", &count, &t) != 2) {
            bench_fail("%s did not report the end of the items:\n%s", b->w[i]->name,
                       proc_log(b->w[i]));
            return 0;
        }
        if (count != expect_total) {
            bench_fail("%s handled %ld items, %ld were sent: items were lost", b->w[i]->name, count,
                       expect_total);
            return 0;
        }
        if (t > latest)
            latest = t;
    }
    lc_dispatch(b->c);
    return s_notices ? 0 : latest;
}

void sc_tasks(void)
{
    bus_t b;
    if (!s_bus_up(&b, "bus", 1, "w", true, false, NULL))
        return;
    s_notices = 0;
    lc_on_notice(b.c, s_notice, NULL);
    long n = cfg.tasks, warm = n / 10;
    int64_t sent_end;
    if (s_send_items(&b, false, warm, warm, &sent_end)) {
        int64_t t0 = now_us();
        int64_t t1 = s_send_items(&b, false, n, warm + n, &sent_end);
        if (t1) {
            bench_record("tasks_rate", (double)n / ((double)(t1 - t0) / 1e6));
            bench_record("enqueue_rate", (double)n / ((double)(sent_end - t0) / 1e6));
        }
    }
    s_bus_down(&b);
}

/* ---- (e), (j): events to K subscribers
 * ------------------------------------------------------------ */

static bool s_events_run(int k, bool spy, double *rate)
{
    bus_t b;
    if (!s_bus_up(&b, "bus", k, "s", true, spy, NULL))
        return false;
    s_notices = 0;
    lc_on_notice(b.c, s_notice, NULL);
    /* About the same number of deliveries whatever K is. */
    long n = (long)(cfg.secs * 200000) / k, warm = n / 10 + 1;
    int64_t sent_end;
    bool ok = false;
    if (s_send_items(&b, true, warm, warm, &sent_end)) {
        int64_t t0 = now_us();
        int64_t t1 = s_send_items(&b, true, n, warm + n, &sent_end);
        if (t1) {
            *rate = (double)n * k / ((double)(t1 - t0) / 1e6);
            ok = true;
        }
    }
    s_spy_check(&b);
    s_bus_down(&b);
    return ok;
}

void sc_events(int k, const char *key, bool spy)
{
    double rate;
    if (s_events_run(k, spy, &rate))
        bench_record(key, rate);
}

/* ---- (f): priority under backlog
 * ------------------------------------------------------------------- */

void sc_priority(void)
{
    bus_t b;
    const char *const extra[] = {"--spin-us", "200"};
    if (!s_bus_up(&b, "bus", 1, "p", true, false, extra))
        return;
    s_notices = 0;
    lc_on_notice(b.c, s_notice, NULL);
    json_t *args = payload_json(64);
    int rc = 0;
    for (int i = 0; i < 9999 && rc == 0; i++)
        rc = lc_emit(b.c, "prio_low", json_incref(args), LC_PRIORITY_LOWEST);
    /* The last one confirmed: all 10,000 are in the broker before the urgent one leaves. */
    if (rc == 0)
        rc = lc_emit_wait(b.c, "prio_low", json_incref(args), LC_PRIORITY_LOWEST, 10000, NULL);
    json_decref(args);
    if (rc < 0) {
        bench_fail("cannot queue the lowest-priority events: %s", lc_strerror(rc));
    } else {
        rc = lc_emit(b.c, "prio_high", json_pack("{s:I}", "sent_us", (json_int_t)now_us()),
                     LC_PRIORITY_HIGHEST);
        const char *line = rc == 0 ? proc_read(b.w[0], 10000) : NULL;
        long long lat = 0;
        long before = 0;
        if (!line || sscanf(line, "%lld %ld", &lat, &before) != 2)
            bench_fail("the highest-priority event did not run within 10 s (%s):\n%s",
                       lc_strerror(rc), proc_log(b.w[0]));
        else {
            bench_record("priority_latency_us", (double)lat);
            bench_record("priority_lowest_before", (double)before);
        }
    }
    s_bus_down(&b);
}

/* ---- (k): death detection
 * ---------------------------------------------------------------------------- */

typedef struct {
    bool done;
    int rc;
    int64_t at;
} gone_t;

static void s_gone_cb(lc_client_t *c, int rc, json_t *result, void *arg)
{
    (void)c;
    (void)result;
    gone_t *g = arg;
    g->done = true;
    g->rc = rc;
    g->at = now_us();
}

void sc_gone(void)
{
    bus_t b;
    if (!s_bus_up(&b, "bus", 1, "g", false, false, NULL))
        return;
    gone_t g = {0};
    int rc = lc_call_async(b.c, "g0.hang", NULL, 10000, s_gone_cb, &g);
    const char *line = NULL;
    while (rc == 0 && !line && !g.done) {
        lc_dispatch(b.c);
        line = proc_read(b.w[0], 10);
    }
    if (!line) {
        bench_fail("g0.hang did not start (%s):\n%s", lc_strerror(rc), proc_log(b.w[0]));
    } else {
        int64_t t0 = now_us();
        kill(b.w[0]->pid, SIGKILL);
        if (!s_dispatch_until(b.c, &g.done, 10000))
            bench_fail("the call to a killed module was not answered within 10 s");
        else if (g.rc != LC_EGONE)
            bench_fail("the call to a killed module ended with %s, not \"gone\"",
                       lc_strerror(g.rc));
        else
            bench_record("gone_detect_ms", (double)(g.at - t0) / 1000.0);
    }
    s_bus_down(&b);
}

/* ---- (j): the cost of tracing
 * ---------------------------------------------------------------------- */

void sc_spy(void)
{
    bus_t b;
    double r0 = 0, r1 = 0, p50, p99;
    bool ok =
        s_bus_up(&b, "bus", 1, "w", false, false, NULL) && s_calls(&b, 1, 64, &r0, &p50, &p99);
    s_bus_down(&b);
    ok =
        ok && s_bus_up(&b, "bus", 1, "w", false, true, NULL) && s_calls(&b, 1, 64, &r1, &p50, &p99);
    if (ok)
        s_spy_check(&b);
    s_bus_down(&b);
    if (ok)
        bench_record("spy_call_ratio", r1 / r0);
    if (s_events_run(4, false, &r0) && s_events_run(4, true, &r1))
        bench_record("spy_events_ratio", r1 / r0);
    /* No spy: pipelined calls through a broker whose tap waits for one, against a broker
     * without a tap at all. */
    ok = s_bus_up(&b, "bus", 1, "w", BUS_NO_TAP, false, NULL) &&
         s_calls(&b, 16, 64, &r0, &p50, &p99);
    s_bus_down(&b);
    ok = ok && s_bus_up(&b, "bus", 1, "w", 0, false, NULL) && s_calls(&b, 16, 64, &r1, &p50, &p99);
    s_bus_down(&b);
    if (ok)
        bench_record("spy_none_call_ratio", r1 / r0);
}
