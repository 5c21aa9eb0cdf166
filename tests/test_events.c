/* Events: split horizon, exact and wildcard subscriptions, the default event name, the
 * per-subscriber backlog bound with its drops reported to the sender, becoming_idle once
 * per busy -> idle transition, many emitting threads. Real processes on a per-test bus. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(events, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------------------ */

/* Emits with lc_emit_wait, expects acceptance; returns the broker's info (caller owns). */
static json_t *s_emit_ok(lc_client_t *c, const char *event, json_t *args)
{
    json_t *info = NULL;
    int rc = lc_emit_wait(c, event, args, 0, 5000, &info);
    cr_assert_eq(rc, 0, "lc_emit_wait(%s): %s (%s)", event ? event : "NULL", lc_strerror(rc),
                 json_string_value(json_object_get(info, "message")));
    cr_assert(json_is_object(info), "lc_emit_wait(%s) gave no info", event ? event : "NULL");
    return info;
}

static void s_call_ok(lc_client_t *c, const char *target, json_t *args, json_t **res)
{
    json_t *r = NULL;
    int rc = lc_call(c, target, args, &r, 5000);
    cr_assert_eq(rc, 0, "%s: %s (%s)", target, lc_strerror(rc),
                 json_string_value(json_object_get(r, "message")));
    if (res)
        *res = r;
    else
        json_decref(r);
}

/* The recorded entries named `name` (a new array). */
static json_t *s_named(json_t *entries, const char *name)
{
    json_t *out = json_array(), *x;
    size_t i;
    json_array_foreach(entries, i, x)
    {
        if (strcmp(h_str(x, "name"), name) == 0)
            json_array_append(out, x);
    }
    return out;
}

/* Waits until lc-echo `module` recorded at least n events named `name`; returns them. */
static json_t *s_wait_named(lc_client_t *c, const char *module, const char *name, size_t n,
                            int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *all = h_recorded(c, module);
        json_t *some = s_named(all, name);
        if (json_array_size(some) >= n) {
            json_decref(all);
            return some;
        }
        bool late = lc_mono_ms() >= deadline;
        if (late)
            cr_log_error("%s recorded: %s", module, h_dump(all));
        json_decref(all);
        json_decref(some);
        cr_assert(!late, "%s did not record %zu '%s' within %d ms", module, n, name, timeout_ms);
    }
}

typedef struct {
    int count;
    int rc;
    char target[128];
    json_t *info;
} notices_t;

static void s_on_notice(lc_client_t *self, int rc, const char *target, json_t *info, void *arg)
{
    (void)self;
    notices_t *n = arg;
    if (n->count++ == 0) {
        n->rc = rc;
        snprintf(n->target, sizeof n->target, "%s", target ? target : "");
        n->info = json_incref(info);
    }
}

static bool s_array_has(json_t *array, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

/* ---- Split horizon -------------------------------------------------------------------- */

Test(events, split_horizon_sender_does_not_get_its_own)
{
    h_broker(NULL);
    h_echo_with("px", "--listen", "ping_x", NULL);
    h_echo_with("py", "--listen", "ping_x", NULL);
    lc_client_t *c = h_client();
    /* px emits ping_x from a handler: py gets it, px does not. */
    h_enqueue_ok(c, "px.forward", json_pack("{s:s, s:{s:i}}", "event", "ping_x", "args", "n", 1),
                 0);
    json_t *e = h_wait_recorded(c, "py", 1, 5000);
    json_t *x = json_array_get(e, 0);
    cr_assert_str_eq(h_str(x, "kind"), "event");
    cr_assert_str_eq(h_str(x, "name"), "ping_x");
    cr_assert_str_eq(h_str(x, "source"), "px");
    cr_assert_eq(h_arg(x, "n"), 1);
    json_decref(e);
    cr_assert_eq(h_module_int(c, "px", "events_in"), 0, "the broker queued px its own event");
    cr_assert_eq(h_module_int(c, "py", "events_in"), 1);
    /* Anything queued for px before a later task would have run before it. */
    h_enqueue_ok(c, "px.record", json_pack("{s:i}", "marker", 1), 0);
    e = h_wait_recorded(c, "px", 2, 5000);
    cr_assert_eq(json_array_size(e), 2, "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 0), "name"), "forward", "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 1), "name"), "record", "%s", h_dump(e));
    json_decref(e);

    /* The same from outside: an anonymous sender that is not subscribed reaches both. */
    json_t *info = s_emit_ok(c, "ping_x", json_pack("{s:i}", "n", 2));
    cr_assert_eq(h_int(info, "subscribers"), 2, "%s", h_dump(info));
    cr_assert_eq(json_array_size(json_object_get(info, "dropped")), 0, "%s", h_dump(info));
    json_decref(info);
    h_wait_module_int(c, "px", "events_in", 1, 5000);
    h_wait_module_int(c, "py", "events_in", 2, 5000);
    lc_client_destroy(&c);
}

/* ---- Wildcards ---------------------------------------------------------------------- */

Test(events, wildcard_prefix_subscription)
{
    h_broker(NULL);
    h_echo_with("dw", "--listen", "door_*", NULL);
    lc_client_t *c = h_client();
    json_t *m = h_module(c, "dw");
    cr_assert(m);
    cr_assert(s_array_has(json_object_get(m, "events"), "door_*"), "%s", h_dump(m));
    json_decref(m);
    static const struct {
        const char *name;
        int subscribers;
    } sends[] = {
        {"window_open", 0}, {"doorbell", 0}, {"door_open", 1}, {"door", 0}, {"door_close", 1}};
    for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
        json_t *info = s_emit_ok(c, sends[i].name, json_pack("{s:i}", "i", (int)i));
        cr_assert_eq(h_int(info, "subscribers"), sends[i].subscribers, "%s: %s", sends[i].name,
                     h_dump(info));
        json_decref(info);
    }
    json_t *e = h_wait_recorded(c, "dw", 2, 5000);
    cr_assert_eq(json_array_size(e), 2, "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 0), "name"), "door_open", "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 1), "name"), "door_close", "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 0), "kind"), "event");
    cr_assert_str_eq(h_str(json_array_get(e, 0), "source"), lc_client_name(c));
    json_decref(e);
    cr_assert_eq(h_module_int(c, "dw", "events_in"), 2);
    lc_client_destroy(&c);
}

Test(events, star_receives_everything_including_broker_events)
{
    h_broker(NULL);
    h_echo_with("all", "--listen", "*", NULL);
    h_echo_with("w", NULL);
    lc_client_t *c = h_client();
    static const char *const names[] = {"alpha", "beta_x", "door_open", "z9"};
    for (int i = 0; i < 4; i++) {
        json_t *info = s_emit_ok(c, names[i], json_pack("{s:i}", "i", i));
        cr_assert_eq(h_int(info, "subscribers"), 1, "%s: %s", names[i], h_dump(info));
        json_decref(info);
    }
    h_enqueue_ok(c, "w.record", NULL, 0);
    for (int i = 0; i < 4; i++) {
        json_t *got = s_wait_named(c, "all", names[i], 1, 5000);
        cr_assert_eq(json_array_size(got), 1, "%s", h_dump(got));
        cr_assert_eq(h_arg(json_array_get(got, 0), "i"), i);
        json_decref(got);
    }
    /* The work done, the bus went idle: the broker's own event reaches "*" too. */
    json_t *idle = s_wait_named(c, "all", "becoming_idle", 1, 5000);
    cr_assert_str_eq(h_str(json_array_get(idle, 0), "source"), "broker");
    cr_assert_str_eq(h_str(json_array_get(idle, 0), "kind"), "event");
    json_decref(idle);
    lc_client_destroy(&c);
}

/* One delivery per event: the exact handler, else the longest prefix; the broker sends one
 * copy even when several patterns of a module match. */
typedef struct {
    int exact, door, d, total;
} which_t;

static void s_h_exact(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)args;
    which_t *w = arg;
    w->exact++;
    w->total++;
}

static void s_h_door(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)args;
    which_t *w = arg;
    w->door++;
    w->total++;
}

static void s_h_d(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)args;
    which_t *w = arg;
    w->d++;
    w->total++;
}

Test(events, one_delivery_exact_then_longest_prefix)
{
    h_broker(NULL);
    lc_client_t *l = lc_client_new(NULL, h_bus);
    cr_assert(l);
    which_t w = {0};
    cr_assert_eq(lc_on(l, "door_open", s_h_exact, &w), 0);
    cr_assert_eq(lc_on(l, "door_*", s_h_door, &w), 0);
    cr_assert_eq(lc_on(l, "d*", s_h_d, &w), 0);
    cr_assert_eq(lc_on(l, "Bad-Name", s_h_d, &w), LC_EINVAL);
    cr_assert_eq(lc_on(l, "a*b", s_h_d, &w), LC_EINVAL);
    int rc = lc_connect(l, 10000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    lc_client_t *c = h_client();
    static const char *const sends[] = {"door_open", "door_close", "dx", "other"};
    for (int i = 0; i < 4; i++) {
        json_t *info = s_emit_ok(c, sends[i], NULL);
        cr_assert_eq(h_int(info, "subscribers"), i < 3 ? 1 : 0, "%s: %s", sends[i], h_dump(info));
        json_decref(info);
    }
    h_dispatch_until(l, &w.total, 3, 5000, "events handled");
    cr_assert_eq(w.exact, 1, "door_open: exact handler ran %d times", w.exact);
    cr_assert_eq(w.door, 1, "door_close: door_* handler ran %d times", w.door);
    cr_assert_eq(w.d, 1, "dx: d* handler ran %d times", w.d);
    /* Nothing more comes: one copy per event, not one per matching pattern. */
    json_t *m = h_module(c, lc_client_name(l));
    cr_assert(m);
    cr_assert_eq(h_int(m, "events_in"), 3, "%s", h_dump(m));
    json_decref(m);
    cr_assert_geq(lc_dispatch(l), 0);
    cr_assert_eq(w.total, 3);
    lc_client_destroy(&c);
    lc_client_destroy(&l);
}

/* ---- The default event name ------------------------------------------------------------ */

/* A named in-process client, registered and activated by the broker (it may then send from
 * outside a handler). */
static lc_client_t *s_named_client(const char *name)
{
    lc_client_t *c = lc_client_new(name, h_bus);
    cr_assert(c, "lc_client_new(%s)", name);
    int rc = lc_connect(c, 10000);
    cr_assert_eq(rc, 0, "%s: %s", name, lc_strerror(rc));
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        cr_assert_geq(lc_dispatch(c), 0);
        json_t *m = h_module(c, name);
        const char *st = m ? json_string_value(json_object_get(m, "state")) : NULL;
        bool active = !st || strcmp(st, "active") == 0; /* no state: no lifecycle */
        json_decref(m);
        if (active)
            return c;
        cr_assert_lt(lc_mono_ms(), deadline, "%s was not activated", name);
    }
}

Test(events, null_name_sends_module_event)
{
    h_broker(NULL);
    h_echo_with("lis", "--listen", "src_event", NULL);
    lc_client_t *src = s_named_client("src");
    json_t *info = s_emit_ok(src, NULL, json_pack("{s:i}", "v", 7));
    cr_assert_eq(h_int(info, "subscribers"), 1, "%s", h_dump(info));
    json_decref(info);
    json_t *e = h_wait_recorded(src, "lis", 1, 5000);
    json_t *x = json_array_get(e, 0);
    cr_assert_str_eq(h_str(x, "name"), "src_event");
    cr_assert_str_eq(h_str(x, "source"), "src");
    cr_assert_str_eq(h_str(x, "kind"), "event");
    cr_assert_eq(h_arg(x, "v"), 7);
    json_decref(e);
    /* Plain lc_emit with NULL too. */
    cr_assert_eq(lc_emit(src, NULL, json_pack("{s:i}", "v", 8), 0), 0);
    e = h_wait_recorded(src, "lis", 2, 5000);
    cr_assert_str_eq(h_str(json_array_get(e, 1), "name"), "src_event");
    cr_assert_eq(h_arg(json_array_get(e, 1), "v"), 8);
    json_decref(e);
    lc_client_destroy(&src);
}

Test(events, reserved_and_invalid_names_refused)
{
    h_broker(NULL);
    h_echo_with("all", "--listen", "*", NULL);
    lc_client_t *c = h_client();
    static const char *const reserved[] = {"becoming_idle", "module_lost", "module_state"};
    for (int i = 0; i < 3; i++) {
        json_t *info = NULL;
        int rc = lc_emit_wait(c, reserved[i], NULL, 0, 5000, &info);
        cr_assert_eq(rc, LC_EDENIED, "%s: %s", reserved[i], lc_strerror(rc));
        cr_assert(json_string_value(json_object_get(info, "message")), "%s", h_dump(info));
        json_decref(info);
    }
    char longname[80];
    memset(longname, 'a', 65);
    longname[65] = 0;
    const char *bad[] = {"Bad-Name", "", "a.b", "x*", longname};
    for (int i = 0; i < 5; i++) {
        json_t *info = NULL;
        int rc = lc_emit_wait(c, bad[i], NULL, 0, 5000, &info);
        cr_assert_eq(rc, LC_EINVAL, "'%s': %s", bad[i], lc_strerror(rc));
        json_decref(info);
        cr_assert_eq(lc_emit(c, bad[i], NULL, 0), LC_EINVAL, "'%s'", bad[i]);
    }
    /* Without waiting, the broker's refusal reaches the notice callback. */
    notices_t notes = {0};
    lc_on_notice(c, s_on_notice, &notes);
    cr_assert_eq(lc_emit(c, "becoming_idle", NULL, 0), 0);
    h_dispatch_until(c, &notes.count, 1, 5000, "the refusal notice");
    cr_assert_eq(notes.rc, LC_EDENIED, "%s", lc_strerror(notes.rc));
    cr_assert_str_eq(notes.target, "becoming_idle");
    json_decref(notes.info);
    /* Nobody received any of them from this client. */
    s_call_ok(c, "all.echo", NULL, NULL);
    json_t *e = h_recorded(c, "all");
    json_t *x;
    size_t i;
    json_array_foreach(e, i, x)
    {
        cr_assert_str_neq(h_str(x, "source"), lc_client_name(c), "%s", h_dump(x));
    }
    json_decref(e);
    lc_client_destroy(&c);
}

/* ---- 7. A subscriber's full backlog ------------------------------------------------ */

Test(events, full_backlog_drops_for_slow_subscriber_only)
{
    h_broker("--max-backlog", "5", NULL);
    h_echo_with("S1", "--window", "1", "--listen", "tick", NULL);
    h_echo_with("S2", "--listen", "tick", NULL);
    lc_client_t *c = h_client();
    /* S1's only slot is held: its copies wait in its backlog at the broker. */
    h_enqueue_ok(c, "S1.hold", NULL, 0);
    json_t *e = h_wait_recorded(c, "S1", 1, 5000);
    cr_assert_str_eq(h_str(json_array_get(e, 0), "name"), "hold");
    json_decref(e);
    json_int_t dropped0 = h_stat(c, "dropped");
    for (int i = 0; i < 10; i++) {
        json_t *info = s_emit_ok(c, "tick", json_pack("{s:i}", "i", i));
        json_t *dropped = json_object_get(info, "dropped");
        cr_assert_eq(h_int(info, "subscribers"), 2, "tick %d: %s", i, h_dump(info));
        cr_assert(json_is_array(dropped), "tick %d: %s", i, h_dump(info));
        if (i < 5) {
            cr_assert_eq(json_array_size(dropped), 0, "tick %d: %s", i, h_dump(info));
        } else {
            cr_assert_eq(json_array_size(dropped), 1, "tick %d: %s", i, h_dump(info));
            cr_assert(s_array_has(dropped, "S1"), "tick %d: %s", i, h_dump(info));
            cr_assert(json_string_value(json_object_get(info, "message")), "%s", h_dump(info));
        }
        json_decref(info);
    }
    json_t *s2 = h_wait_recorded(c, "S2", 10, 5000);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(h_arg(json_array_get(s2, (size_t)i), "i"), i, "%s", h_dump(s2));
    json_decref(s2);
    cr_assert_eq(h_module_int(c, "S1", "dropped"), 5);
    cr_assert_eq(h_module_int(c, "S1", "backlog"), 5);
    cr_assert_eq(h_module_int(c, "S2", "dropped"), 0);
    cr_assert_eq(h_stat(c, "dropped"), dropped0 + 5);

    /* A sender using plain lc_emit hears of it through its notice callback. */
    lc_client_t *em = h_client();
    notices_t notes = {0};
    lc_on_notice(em, s_on_notice, &notes);
    cr_assert_eq(lc_emit(em, "tick", json_pack("{s:i}", "i", 10), 0), 0);
    h_dispatch_until(em, &notes.count, 1, 5000, "the drop notice");
    cr_assert_eq(notes.rc, LC_EQUEUEFULL, "%s", lc_strerror(notes.rc));
    cr_assert_str_eq(notes.target, "tick");
    cr_assert(s_array_has(json_object_get(notes.info, "dropped"), "S1"), "%s", h_dump(notes.info));
    cr_assert(!s_array_has(json_object_get(notes.info, "dropped"), "S2"), "%s", h_dump(notes.info));
    json_decref(notes.info);
    s2 = h_wait_recorded(c, "S2", 11, 5000);
    json_decref(s2);
    cr_assert_eq(h_module_int(c, "S1", "dropped"), 6);
    cr_assert_eq(h_module_int(c, "S2", "dropped"), 0);

    /* Released, S1 handles what its backlog kept: ticks 0-4, nothing else. */
    json_t *res = NULL;
    s_call_ok(c, "S1.release", NULL, &res);
    json_decref(res);
    h_wait_module_int(c, "S1", "done", 6, 5000);
    s_call_ok(c, "S1.echo", NULL, NULL);
    e = h_recorded(c, "S1");
    cr_assert_eq(json_array_size(e), 6, "%s", h_dump(e));
    for (int i = 0; i < 5; i++)
        cr_assert_eq(h_arg(json_array_get(e, (size_t)i + 1), "i"), i, "%s", h_dump(e));
    json_decref(e);
    cr_assert_eq(notes.count, 1);
    lc_client_destroy(&em);
    lc_client_destroy(&c);
}

/* ---- 8. becoming_idle once per busy -> idle transition ----------------------------- */

Test(events, becoming_idle_once_per_transition)
{
    h_broker(NULL);
    h_echo_with("idl", "--listen", "becoming_idle", NULL);
    h_echo_with("w", NULL);
    lc_client_t *c = h_client();
    json_int_t idle0 = h_stat(c, "idle");
    json_t *e = h_recorded(c, "idl");
    cr_assert_eq((json_int_t)json_array_size(e), idle0, "before: %s", h_dump(e));
    json_decref(e);

    /* A burst of 50 behind a hold: the bus stays busy until the last one is done. */
    h_enqueue_ok(c, "w.hold", NULL, 0);
    for (int i = 0; i < 50; i++)
        h_enqueue_ok(c, "w.record", json_pack("{s:i}", "i", i), 0);
    json_t *res = NULL;
    s_call_ok(c, "w.release", NULL, &res);
    json_decref(res);
    h_wait_module_int(c, "w", "done", 51, 10000);
    e = h_wait_recorded(c, "idl", (size_t)idle0 + 1, 5000);
    json_t *x = json_array_get(e, json_array_size(e) - 1);
    cr_assert_str_eq(h_str(x, "name"), "becoming_idle");
    cr_assert_str_eq(h_str(x, "source"), "broker");
    cr_assert_str_eq(h_str(x, "kind"), "event");
    json_decref(e);
    /* Delivering becoming_idle is no work: no second one, however long we look. */
    h_wait_module_int(c, "idl", "done", idle0 + 1, 5000);
    s_call_ok(c, "broker.ping", NULL, NULL);
    s_call_ok(c, "idl.echo", NULL, NULL);
    s_call_ok(c, "broker.ping", NULL, NULL);
    e = h_recorded(c, "idl");
    cr_assert_eq((json_int_t)json_array_size(e), idle0 + 1, "%s", h_dump(e));
    json_decref(e);
    cr_assert_eq(h_stat(c, "idle"), idle0 + 1);

    /* One more task: one more transition, one more event. */
    h_enqueue_ok(c, "w.record", NULL, 0);
    e = h_wait_recorded(c, "idl", (size_t)idle0 + 2, 5000);
    json_decref(e);
    h_wait_module_int(c, "idl", "done", idle0 + 2, 5000);
    s_call_ok(c, "broker.ping", NULL, NULL);
    e = h_recorded(c, "idl");
    cr_assert_eq((json_int_t)json_array_size(e), idle0 + 2, "%s", h_dump(e));
    json_decref(e);
    cr_assert_eq(h_stat(c, "idle"), idle0 + 2);
    lc_client_destroy(&c);
}

/* ---- 11. Many threads emit on one client ------------------------------------------- */

#define EMIT_THREADS 4
#define EMIT_EACH 500

typedef struct {
    lc_client_t *client;
    int index;
    int ok;
    int first_rc;
} emitter_t;

static void *s_emitter(void *arg)
{
    emitter_t *me = arg;
    for (int i = 0; i < EMIT_EACH; i++) {
        int rc = lc_emit(me->client, "burst", json_pack("{s:i, s:i}", "t", me->index, "i", i), 0);
        if (rc == 0)
            me->ok++;
        else if (!me->first_rc)
            me->first_rc = rc;
    }
    return NULL;
}

Test(events, threads_emit_each_event_once)
{
    h_broker(NULL);
    h_echo_with("lis", "--listen", "burst", NULL);
    lc_client_t *c = h_client();
    notices_t notes = {0};
    lc_on_notice(c, s_on_notice, &notes);
    pthread_t th[EMIT_THREADS], stop;
    emitter_t em[EMIT_THREADS];
    for (int i = 0; i < EMIT_THREADS; i++) {
        em[i] = (emitter_t){.client = c, .index = i};
        cr_assert_eq(pthread_create(&th[i], NULL, s_emitter, &em[i]), 0);
    }
    h_stopper_t st = {c, th, EMIT_THREADS};
    cr_assert_eq(pthread_create(&stop, NULL, h_stopper, &st), 0);
    int rc = lc_run(c);
    pthread_join(stop, NULL);
    cr_assert_eq(rc, 0, "lc_run: %s", lc_strerror(rc));
    for (int i = 0; i < EMIT_THREADS; i++)
        cr_assert_eq(em[i].ok, EMIT_EACH, "thread %d: %d sent; first error %s", i, em[i].ok,
                     lc_strerror(em[i].first_rc));

    const int total = EMIT_THREADS * EMIT_EACH;
    h_wait_module_int(c, "lis", "done", total, 30000);
    cr_assert_eq(h_module_int(c, "lis", "events_in"), total);
    cr_assert_eq(h_module_int(c, "lis", "dropped"), 0);
    json_t *e = h_recorded(c, "lis");
    cr_assert_eq(json_array_size(e), (size_t)total);
    static char seen[EMIT_THREADS][EMIT_EACH];
    memset(seen, 0, sizeof seen);
    int last[EMIT_THREADS];
    for (int i = 0; i < EMIT_THREADS; i++)
        last[i] = -1;
    size_t j;
    json_t *x;
    json_array_foreach(e, j, x)
    {
        cr_assert_str_eq(h_str(x, "name"), "burst");
        json_int_t t = h_arg(x, "t"), i = h_arg(x, "i");
        cr_assert(t >= 0 && t < EMIT_THREADS && i >= 0 && i < EMIT_EACH, "bad entry %s", h_dump(x));
        cr_assert_eq(seen[t][i], 0, "event t=%lld i=%lld handled twice", (long long)t,
                     (long long)i);
        seen[t][i] = 1;
        cr_assert_gt(i, last[t], "thread %lld: event %lld after %d", (long long)t, (long long)i,
                     last[t]);
        last[t] = (int)i;
    }
    json_decref(e);
    cr_assert_eq(notes.count, 0, "a notice: %s %s", lc_strerror(notes.rc), notes.target);
    lc_client_destroy(&c);
}

/* ---- The total queue bound and fan-out ------------------------------------------------ */

/* Decision 4: an event is accepted when the total queue has room, and then counts once:
 * every subscriber gets its copy (they share the payload). The next event finds the bus
 * queue full and is refused, so the bound holds for what is accepted. */
Test(events, fanout_accepted_once_within_total_queue_bound)
{
    /* The total bound alone: a larger per-sender bound (--max-sent). */
    h_broker("--max-queue", "2", "--max-sent", "100", NULL);
    static const char *const names[] = {"s1", "s2", "s3", "s4"};
    lc_client_t *c = h_client();
    for (int i = 0; i < 4; i++) {
        h_echo_with(names[i], "--window", "1", "--listen", "tick", NULL);
        char target[32];
        snprintf(target, sizeof target, "%s.hold", names[i]);
        h_enqueue_ok(c, target, NULL, 0); /* in flight, not queued */
        json_t *e = h_wait_recorded(c, names[i], 1, 5000);
        json_decref(e);
    }
    cr_assert_eq(h_stat(c, "queued"), 0);
    json_t *info = NULL;
    int rc = lc_emit_wait(c, "tick", NULL, 0, 5000, &info);
    cr_assert_eq(rc, 0, "emit: %s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(info, "subscribers")), 4);
    cr_assert_eq(json_array_size(json_object_get(info, "dropped")), 0);
    json_decref(info);
    cr_assert_eq(h_stat(c, "queued"), 4, "each subscriber holds its copy");
    json_int_t full = h_stat(c, "queue_full");
    rc = lc_emit_wait(c, "tick", NULL, 0, 5000, &info);
    cr_assert_eq(rc, LC_EQUEUEFULL, "second emit: %s", lc_strerror(rc));
    json_decref(info);
    cr_assert_eq(h_stat(c, "queue_full"), full + 1);
    lc_client_destroy(&c);
}
