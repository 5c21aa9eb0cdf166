/* The module lifecycle: hook order across start and exit, activation together under an
 * expected list, sending while passive (decision 9), worker threads stopped by phase. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(lifecycle, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* ---- A journal shared by in-process modules -------------------------------------------- */

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_changed = PTHREAD_COND_INITIALIZER;
static char s_journal[64][48];
static int s_entries;

static void s_note(const char *module, const char *what)
{
    pthread_mutex_lock(&s_lock);
    if (s_entries < 64)
        snprintf(s_journal[s_entries++], sizeof s_journal[0], "%s.%s", module, what);
    pthread_cond_broadcast(&s_changed);
    pthread_mutex_unlock(&s_lock);
}

static int s_find(const char *entry)
{
    pthread_mutex_lock(&s_lock);
    int at = -1;
    for (int i = 0; i < s_entries && at < 0; i++)
        if (strcmp(s_journal[i], entry) == 0)
            at = i;
    pthread_mutex_unlock(&s_lock);
    return at;
}

/* Waits until the journal has entry, at most ms milliseconds. */
static bool s_wait_note(const char *entry, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s_lock);
    for (;;) {
        for (int i = 0; i < s_entries; i++)
            if (strcmp(s_journal[i], entry) == 0) {
                pthread_mutex_unlock(&s_lock);
                return true;
            }
        if (pthread_cond_timedwait(&s_changed, &s_lock, &until) != 0) {
            pthread_mutex_unlock(&s_lock);
            return false;
        }
    }
}

static void s_dump(void)
{
    for (int i = 0; i < s_entries; i++)
        cr_log_info("%2d %s", i, s_journal[i]);
}

typedef struct {
    char name[16];
    pthread_t tid;
    int rc;
    int passive_emit_timer;  /* lc_emit's result from a timer while passive */
    int passive_emit_thread; /* ... from a worker thread while passive */
    int expect_passive;      /* stay passive: test decision 9 */
} mod_t;

static void s_hook_note(lc_client_t *c, void *arg)
{
    s_note(lc_client_name(c), arg);
}

static void s_on_exit(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    s_note(lc_client_name(lc_request_client(req)), "on_exit");
}

static void s_active_worker(lc_thread_t *t, void *arg)
{
    (void)arg;
    struct pollfd p = {lc_thread_fd(t), POLLIN, 0};
    while (!lc_thread_stopping(t))
        poll(&p, 1, -1);
    s_note(lc_client_name(lc_thread_client(t)), "active_thread_end");
}

static void s_passive_worker(lc_thread_t *t, void *arg)
{
    mod_t *m = arg;
    if (m->expect_passive)
        m->passive_emit_thread = lc_emit(lc_thread_client(t), "from_thread", NULL, 0);
    struct pollfd p = {lc_thread_fd(t), POLLIN, 0};
    while (!lc_thread_stopping(t))
        poll(&p, 1, -1);
    s_note(lc_client_name(lc_thread_client(t)), "passive_thread_end");
}

static void s_start_active_thread(lc_client_t *c, void *arg)
{
    s_hook_note(c, "active");
    cr_assert(lc_thread_start(c, LC_STATE_ACTIVE, s_active_worker, arg));
}

static void s_timer_emit(lc_client_t *c, int id, void *arg)
{
    (void)id;
    mod_t *m = arg;
    m->passive_emit_timer = lc_emit(c, "from_timer", NULL, 0);
}

static void s_passive_hook(lc_client_t *c, void *arg)
{
    mod_t *m = arg;
    s_hook_note(c, "passive");
    cr_assert(lc_thread_start(c, LC_STATE_PASSIVE, s_passive_worker, m));
    if (m->expect_passive)
        lc_timer_add(c, 1, false, s_timer_emit, m);
}

/* A handler may send while its module is passive. */
static void s_emit_from_handler(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    int rc = lc_emit(lc_request_client(req), "from_handler", NULL, 0);
    lc_reply(req, json_pack("{s:i}", "rc", rc));
}

static void s_state(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    mod_t *m = arg;
    lc_reply(req, json_pack("{s:i, s:i, s:i}", "state", lc_state(lc_request_client(req)),
                            "timer", m->passive_emit_timer, "thread", m->passive_emit_thread));
}

static void *s_module(void *arg)
{
    mod_t *m = arg;
    lc_client_t *c = lc_client_new(m->name, h_bus);
    static char *names[] = {"startup", "passive", "active", "deactivate", "shutdown"};
    lc_hook(c, LC_HOOK_STARTUP, s_hook_note, names[0]);
    lc_hook(c, LC_HOOK_PASSIVE, s_passive_hook, m);
    lc_hook(c, LC_HOOK_ACTIVE, s_start_active_thread, names[2]);
    lc_hook(c, LC_HOOK_DEACTIVATE, s_hook_note, names[3]);
    lc_hook(c, LC_HOOK_SHUTDOWN, s_hook_note, names[4]);
    lc_on(c, "exit", s_on_exit, NULL);
    lc_method(c, "emit_from_handler", s_emit_from_handler, NULL);
    lc_method(c, "state", s_state, m);
    m->rc = lc_run(c);
    s_note(m->name, "returned");
    lc_client_destroy(&c);
    return NULL;
}

static void s_start(mod_t *m, lc_client_t *c)
{
    pthread_create(&m->tid, NULL, s_module, m);
    h_wait_modules(c, m->name, NULL);
}

Test(lifecycle, hooks_in_order_across_start_and_exit)
{
    proc_t *broker = h_broker(NULL);
    lc_client_t *c = h_client();
    mod_t mods[3] = {{.name = "a"}, {.name = "b"}, {.name = "c"}};
    /* Started one after the other: a, b, c is the start order. */
    for (int i = 0; i < 3; i++) {
        s_start(&mods[i], c);
        char active[160];
        snprintf(active, sizeof active, "%s.active", mods[i].name);
        cr_assert(s_wait_note(active, 5000), "%s was not activated", mods[i].name);
    }
    cr_assert_eq(lc_module_ready(c, "b"), 1);
    cr_assert_eq(lc_module_ready(c, "nobody"), 0);

    json_t *info = NULL;
    cr_assert_eq(lc_emit_wait(c, "exit", NULL, 0, 5000, &info), 0);
    json_decref(info);
    for (int i = 0; i < 3; i++) {
        pthread_join(mods[i].tid, NULL);
        cr_assert_eq(mods[i].rc, 0, "%s: lc_run returned %s", mods[i].name,
                     lc_strerror(mods[i].rc));
    }
    s_dump();
    for (int i = 0; i < 3; i++) {
        const char *n = mods[i].name;
        char e[8][160];
        const char *steps[] = {"startup", "passive", "active", "on_exit", "deactivate",
                               "active_thread_end", "shutdown", "passive_thread_end"};
        for (int k = 0; k < 8; k++) {
            snprintf(e[k], sizeof e[k], "%s.%s", n, steps[k]);
            cr_assert_geq(s_find(e[k]), 0, "%s missing", e[k]);
            if (k)
                cr_assert_lt(s_find(e[k - 1]), s_find(e[k]), "%s after %s", e[k - 1], e[k]);
        }
    }
    /* Shut down one at a time in reverse start order, after every module deactivated. */
    cr_assert_lt(s_find("a.deactivate"), s_find("c.shutdown"));
    cr_assert_lt(s_find("c.deactivate"), s_find("c.shutdown"));
    cr_assert_lt(s_find("c.passive_thread_end"), s_find("b.shutdown"));
    cr_assert_lt(s_find("b.passive_thread_end"), s_find("a.shutdown"));
    /* The broker leaves once the modules are gone. */
    int st = h_wait_exit(broker, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "broker: %d\n%s", st,
              h_log(broker));
    lc_client_destroy(&c);
}

Test(lifecycle, expected_modules_activated_together)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "broker.expect", json_pack("{s:[ss]}", "modules", "a", "b"), &res,
                         0),
                 0);
    json_decref(res);
    mod_t mods[2] = {{.name = "a"}, {.name = "b"}};
    s_start(&mods[0], c);
    /* a is passive and stays so while b is missing. */
    cr_assert(s_wait_note("a.passive", 5000), "a did not reach passive");
    cr_assert_eq(lc_call(c, "a.state", NULL, &res, 0), 0);
    cr_assert_eq(json_integer_value(json_object_get(res, "state")), LC_STATE_PASSIVE);
    json_decref(res);
    s_start(&mods[1], c);
    cr_assert(s_wait_note("a.active", 5000) && s_wait_note("b.active", 5000),
              "not activated together");
    cr_assert_lt(s_find("b.passive"), s_find("a.active"));
    lc_emit_wait(c, "exit", NULL, 0, 5000, NULL);
    pthread_join(mods[0].tid, NULL);
    pthread_join(mods[1].tid, NULL);
    lc_client_destroy(&c);
}

Test(lifecycle, passive_sends_only_from_handlers)
{
    h_broker("--start-timeout", "60000", NULL);
    lc_client_t *c = h_client();
    json_t *res = NULL;
    /* "never" does not come: p stays passive. */
    cr_assert_eq(lc_call(c, "broker.expect", json_pack("{s:[ss]}", "modules", "p", "never"), &res,
                         0),
                 0);
    json_decref(res);
    mod_t p = {.name = "p", .expect_passive = 1};
    s_start(&p, c);
    /* The timer and the thread tried to emit while passive: refused. */
    int64_t deadline = lc_mono_ms() + 5000;
    for (;;) {
        cr_assert_eq(lc_call(c, "p.state", NULL, &res, 0), 0);
        int timer = (int)json_integer_value(json_object_get(res, "timer"));
        int thread = (int)json_integer_value(json_object_get(res, "thread"));
        cr_assert_eq(json_integer_value(json_object_get(res, "state")), LC_STATE_PASSIVE);
        json_decref(res);
        if (timer && thread) {
            cr_assert_eq(timer, LC_ENOTACTIVE, "timer: %s", lc_strerror(timer));
            cr_assert_eq(thread, LC_ENOTACTIVE, "thread: %s", lc_strerror(thread));
            break;
        }
        cr_assert(lc_mono_ms() < deadline, "the timer or the thread did not try");
    }
    /* From inside a handler it may. */
    cr_assert_eq(lc_call(c, "p.emit_from_handler", NULL, &res, 0), 0);
    cr_assert_eq(json_integer_value(json_object_get(res, "rc")), 0);
    json_decref(res);
    /* The broker refuses too, for clients that skip the check: counted. */
    cr_assert_eq(lc_call(c, "broker.stats", NULL, &res, 0), 0);
    json_decref(res);
    lc_emit_wait(c, "exit", NULL, 0, 5000, NULL);
    pthread_join(p.tid, NULL);
    lc_client_destroy(&c);
}
