/* Threads and the loop: deferred replies from other threads, re-entrant call chains,
 * many threads sharing one client, asynchronous calls and timers on the loop thread. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(threads, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* ---- A deferred request answered from another thread ---------------------------------- */

#define MAX_WORKERS 64

typedef struct {
    lc_client_t *client; /* set by the service thread before lc_run */
    int run_rc;
    pthread_mutex_t lock;
    pthread_t workers[MAX_WORKERS];
    int nworkers;
    atomic_int replied_ok;
} svc_t;

typedef struct {
    lc_request_t *req;
    json_int_t x;
    svc_t *svc;
} job_t;

static void *s_worker(void *arg)
{
    job_t *job = arg;
    int rc = lc_reply(job->req, json_pack("{s:I, s:s}", "x", job->x * 2, "from", "worker"));
    if (rc == 0)
        atomic_fetch_add(&job->svc->replied_ok, 1);
    free(job);
    return NULL;
}

static void s_later(lc_request_t *req, json_t *args, void *arg)
{
    svc_t *svc = arg;
    job_t *job = calloc(1, sizeof *job);
    job->req = req;
    job->x = json_integer_value(json_object_get(args, "x")); /* args are borrowed */
    job->svc = svc;
    lc_defer(req);
    pthread_mutex_lock(&svc->lock);
    if (svc->nworkers < MAX_WORKERS &&
        pthread_create(&svc->workers[svc->nworkers], NULL, s_worker, job) == 0)
        svc->nworkers++;
    else
        lc_reply_error(req, 1, "cannot start a worker");
    pthread_mutex_unlock(&svc->lock);
}

static void *s_svc_thread(void *arg)
{
    svc_t *svc = arg;
    /* The client belongs to the thread that creates it: this one. */
    lc_client_t *c = lc_client_new("svc", h_bus);
    if (!c) {
        svc->run_rc = LC_ENOMEM;
        return NULL;
    }
    lc_method(c, "later", s_later, svc);
    __atomic_store_n(&svc->client, c, __ATOMIC_RELEASE);
    svc->run_rc = lc_run(c);
    pthread_mutex_lock(&svc->lock);
    for (int i = 0; i < svc->nworkers; i++)
        pthread_join(svc->workers[i], NULL);
    svc->nworkers = 0;
    pthread_mutex_unlock(&svc->lock);
    lc_client_destroy(&c);
    return NULL;
}

Test(threads, deferred_reply_from_another_thread)
{
    h_broker(NULL);
    svc_t svc = {.run_rc = 1};
    pthread_mutex_init(&svc.lock, NULL);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, s_svc_thread, &svc), 0);
    lc_client_t *c = h_client();
    h_wait_modules(c, "svc", NULL);
    for (int i = 1; i <= 5; i++) {
        json_t *res = NULL;
        int rc = lc_call(c, "svc.later", json_pack("{s:i}", "x", i), &res, 5000);
        cr_assert_eq(rc, 0, "call %d: %s (%s)", i, lc_strerror(rc),
                     json_string_value(json_object_get(res, "message")));
        cr_assert_eq(json_integer_value(json_object_get(res, "x")), 2 * i);
        cr_assert_str_eq(json_string_value(json_object_get(res, "from")), "worker");
        json_decref(res);
    }
    lc_client_destroy(&c);
    lc_client_t *svc_client = __atomic_load_n(&svc.client, __ATOMIC_ACQUIRE);
    cr_assert(svc_client);
    lc_stop(svc_client);
    pthread_join(t, NULL);
    cr_assert_eq(svc.run_rc, 0, "lc_run of svc: %s", lc_strerror(svc.run_rc));
    cr_assert_eq(atomic_load(&svc.replied_ok), 5);
    pthread_mutex_destroy(&svc.lock);
}

/* ---- A -> B -> A ------------------------------------------------------------------------- */

Test(threads, recursive_chain_between_processes)
{
    h_broker(NULL);
    h_echo("a");
    h_echo("b");
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "a.call",
                     json_pack("{s:s, s:{s:s, s:{s:i}}}", "target", "b.call", "args", "target",
                               "a.echo", "args", "x", 1),
                     &res, 5000);
    cr_assert_eq(rc, 0, "%s (%s)", lc_strerror(rc),
                 json_string_value(json_object_get(res, "message")));
    json_t *want = json_pack("{s:i}", "x", 1);
    cr_assert(json_equal(res, want), "got %s", json_dumps(res, JSON_COMPACT));
    json_decref(want);
    json_decref(res);
    lc_client_destroy(&c);
}

static void s_ping(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    atomic_int *count = arg;
    atomic_fetch_add(count, 1);
    lc_reply(req, json_pack("{s:s, s:s}", "pong", "t", "from", lc_request_source(req)));
}

Test(threads, recursive_chain_in_process)
{
    h_broker(NULL);
    h_echo("echo");
    atomic_int pings = 0;
    lc_client_t *t = lc_client_new("t", h_bus);
    cr_assert(t);
    cr_assert_eq(lc_method(t, "ping", s_ping, &pings), 0);
    int rc = lc_connect(t, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    /* From the loop thread: t -> echo.call -> t.ping, served while t waits. */
    json_t *res = NULL;
    rc = lc_call(t, "echo.call", json_pack("{s:s}", "target", "t.ping"), &res, 5000);
    cr_assert_eq(rc, 0, "%s (%s)", lc_strerror(rc),
                 json_string_value(json_object_get(res, "message")));
    cr_assert_str_eq(json_string_value(json_object_get(res, "pong")), "t");
    cr_assert_str_eq(json_string_value(json_object_get(res, "from")), "echo");
    cr_assert_eq(atomic_load(&pings), 1);
    json_decref(res);
    lc_client_destroy(&t);
}

/* ---- Many threads, one client -------------------------------------------------------- */

#define NTHREADS 8
#define NCALLS 1000

typedef struct {
    lc_client_t *client;
    int index;
    int ok;
    int first_rc;
    char first_error[256];
} caller_t;

static void *s_caller(void *arg)
{
    caller_t *me = arg;
    for (int i = 0; i < NCALLS; i++) {
        json_t *res = NULL;
        int rc = lc_call(me->client, "echo.echo", json_pack("{s:i, s:i}", "t", me->index, "i", i),
                         &res, 10000);
        if (rc == 0 && json_integer_value(json_object_get(res, "t")) == me->index &&
            json_integer_value(json_object_get(res, "i")) == i && json_object_size(res) == 2) {
            me->ok++;
        } else if (me->first_rc == 0 && !me->first_error[0]) {
            char *text = res ? json_dumps(res, JSON_COMPACT) : NULL;
            me->first_rc = rc;
            snprintf(me->first_error, sizeof me->first_error, "call %d: %s: %s", i, lc_strerror(rc),
                     text ? text : "(null)");
            free(text);
        }
        json_decref(res);
    }
    return NULL;
}

Test(threads, eight_threads_share_one_client)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client(); /* created and connected on this (the loop) thread */
    pthread_t th[NTHREADS];
    caller_t callers[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        callers[i] = (caller_t){.client = c, .index = i};
        cr_assert_eq(pthread_create(&th[i], NULL, s_caller, &callers[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        total += callers[i].ok;
    }
    for (int i = 0; i < NTHREADS; i++)
        cr_expect_eq(callers[i].ok, NCALLS, "thread %d: %d correct; first failure %s", i,
                     callers[i].ok, callers[i].first_error);
    cr_assert_eq(total, NTHREADS * NCALLS);
    /* The loop thread can still call. */
    json_t *res = NULL;
    int rc = lc_call(c, "echo.echo", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    json_decref(res);
    lc_client_destroy(&c);
}

/* ---- Asynchronous calls on the loop thread ------------------------------------------- */

#define NASYNC 100

typedef struct {
    int calls[NASYNC];
    int ok[NASYNC];
    int done;
    char first_error[256];
} async_t;

typedef struct {
    async_t *a;
    int i;
} async_arg_t;

static void s_async_done(lc_client_t *self, int rc, json_t *result, void *arg)
{
    async_arg_t *aa = arg;
    async_t *a = aa->a;
    a->calls[aa->i]++;
    if (rc == 0 && json_integer_value(json_object_get(result, "i")) == aa->i)
        a->ok[aa->i] = 1;
    else if (!a->first_error[0])
        snprintf(a->first_error, sizeof a->first_error, "call %d: %s", aa->i, lc_strerror(rc));
    if (++a->done == NASYNC)
        lc_stop(self);
}

static void s_start_async(lc_client_t *c, async_t *a, async_arg_t *args)
{
    for (int i = 0; i < NASYNC; i++) {
        args[i] = (async_arg_t){a, i};
        int rc =
            lc_call_async(c, "echo.echo", json_pack("{s:i}", "i", i), 5000, s_async_done, &args[i]);
        cr_assert_eq(rc, 0, "lc_call_async %d: %s", i, lc_strerror(rc));
    }
}

static void s_check_async(async_t *a)
{
    for (int i = 0; i < NASYNC; i++) {
        cr_assert_eq(a->calls[i], 1, "callback %d ran %d times", i, a->calls[i]);
        cr_assert_eq(a->ok[i], 1, "call %d failed; first failure: %s", i, a->first_error);
    }
    cr_assert_eq(a->done, NASYNC);
}

Test(threads, async_calls_with_lc_run)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    static async_t a;
    static async_arg_t args[NASYNC];
    memset(&a, 0, sizeof a);
    s_start_async(c, &a, args);
    cr_assert_eq(a.done, 0, "callbacks ran before the loop did");
    int rc = lc_run(c);
    cr_assert_eq(rc, 0, "lc_run: %s", lc_strerror(rc));
    s_check_async(&a);
    /* Nothing more arrives: a dispatch runs no callback again. */
    cr_assert_geq(lc_dispatch(c), 0);
    s_check_async(&a);
    lc_client_destroy(&c);
}

Test(threads, async_calls_with_own_poll_loop)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    static async_t a;
    static async_arg_t args[NASYNC];
    memset(&a, 0, sizeof a);
    int fd = lc_fd(c);
    cr_assert_geq(fd, 0, "lc_fd: %s", lc_strerror(fd));
    s_start_async(c, &a, args);
    int64_t deadline = lc_mono_ms() + 10000;
    int rc = 0;
    while (rc == 0) {
        cr_assert_lt(lc_mono_ms(), deadline, "only %d of %d callbacks ran", a.done, NASYNC);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int t = lc_timeout(c);
        poll(&p, 1, t < 0 || t > 1000 ? 1000 : t);
        rc = lc_dispatch(c);
        cr_assert_geq(rc, 0, "lc_dispatch: %s", lc_strerror(rc));
    }
    cr_assert_eq(rc, 1, "lc_dispatch does not report lc_stop()");
    s_check_async(&a);
    lc_client_destroy(&c);
}

/* ---- Timers ------------------------------------------------------------------------------ */

typedef struct {
    int fired;
    int id;
    int cancel_rc;
    int64_t last;
} ticker_t;

#define TICKS 5
#define TICK_MS 10

static void s_tick(lc_client_t *self, int timer_id, void *arg)
{
    ticker_t *t = arg;
    cr_assert_eq(timer_id, t->id);
    t->fired++;
    t->last = lc_mono_ms();
    if (t->fired == TICKS) {
        t->cancel_rc = lc_timer_cancel(self, timer_id);
        lc_stop(self);
    }
}

Test(threads, repeating_timer_fires_then_cancels_itself)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    ticker_t t = {.cancel_rc = 1};
    int64_t t0 = lc_mono_ms();
    t.id = lc_timer_add(c, TICK_MS, true, s_tick, &t);
    cr_assert_gt(t.id, 0, "lc_timer_add: %s", lc_strerror(t.id));
    int rc = lc_run(c);
    cr_assert_eq(rc, 0, "lc_run: %s", lc_strerror(rc));
    cr_assert_eq(t.fired, TICKS);
    cr_assert_eq(t.cancel_rc, 0);
    cr_assert_geq(t.last - t0, TICKS * TICK_MS, "%d ticks of %d ms took only %lld ms", TICKS,
                  TICK_MS, (long long)(t.last - t0));
    /* Cancelled: it is gone, and does not fire again. */
    cr_assert_eq(lc_timer_cancel(c, t.id), LC_EINVAL);
    int fired = t.fired;
    cr_assert_geq(lc_dispatch(c), 0);
    cr_assert_eq(t.fired, fired);
    lc_client_destroy(&c);
}

typedef struct {
    int order[3];
    int n;
} order_t;

static void s_one_shot(lc_client_t *self, int timer_id, void *arg)
{
    order_t *o = arg;
    if (o->n < 3)
        o->order[o->n] = timer_id; /* the test knows which id has which delay */
    o->n++;
    if (o->n >= 3)
        lc_stop(self);
}

Test(threads, one_shot_timers_fire_in_deadline_order)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    order_t o = {{0}, 0};
    int late = lc_timer_add(c, 30, false, s_one_shot, &o);
    int early = lc_timer_add(c, 5, false, s_one_shot, &o);
    int middle = lc_timer_add(c, 15, false, s_one_shot, &o);
    int never = lc_timer_add(c, 20, false, s_one_shot, &o);
    cr_assert(late > 0 && early > 0 && middle > 0 && never > 0);
    cr_assert_eq(lc_timer_cancel(c, never), 0);
    cr_assert_eq(lc_timer_add(c, 0, true, s_one_shot, &o), LC_EINVAL);
    int rc = lc_run(c);
    cr_assert_eq(rc, 0, "lc_run: %s", lc_strerror(rc));
    cr_assert_eq(o.n, 3);
    cr_assert_eq(o.order[0], early);
    cr_assert_eq(o.order[1], middle);
    cr_assert_eq(o.order[2], late);
    lc_client_destroy(&c);
}
