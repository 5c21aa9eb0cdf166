/* Tasks: priority queues in the broker and in the module, the delivery window, transactions
 * along a chain, deferred tasks holding their slot, redelivery after a crash, the grace
 * time of a gone module's backlog, queue bounds, many sending threads, stuck handlers.
 * Real processes on a per-test bus; lc-echo's record/hold/release methods show what ran. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(queue, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------------------ */

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

/* Releases every held request of lc-echo `name`; returns how many there were. */
static json_int_t s_release(lc_client_t *c, const char *name)
{
    char target[128];
    snprintf(target, sizeof target, "%s.release", name);
    json_t *res = NULL;
    s_call_ok(c, target, NULL, &res);
    json_int_t n = h_int(res, "released");
    json_decref(res);
    return n;
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

/* Waits until lc-echo `name` recorded at least one entry, and checks it is the hold. */
static void s_wait_holding(lc_client_t *c, const char *name)
{
    json_t *e = h_wait_recorded(c, name, 1, 5000);
    cr_assert_str_eq(h_str(json_array_get(e, 0), "name"), "hold", "%s", h_dump(e));
    json_decref(e);
}

/* ---- 1. Strict priority order out of the broker's backlog --------------------------- */

Test(queue, priority_order_under_backlog)
{
    h_broker(NULL);
    h_echo_with("w", "--window", "1", NULL);
    lc_client_t *c = h_client();
    /* The hold keeps the module's only window slot: everything after waits in the broker. */
    h_enqueue_ok(c, "w.hold", NULL, 0);
    static const int prio[] = {5, 3, 1, 4, 2, 3, 5, 1, 2, 4, 1, 4, 5, 2, 3, 3, 1, 5, 2, 4};
    const int n = (int)(sizeof prio / sizeof prio[0]);
    for (int i = 0; i < n; i++)
        h_enqueue_ok(c, "w.record", json_pack("{s:i, s:i}", "seq", i, "p", prio[i]), prio[i]);
    h_wait_module_int(c, "w", "backlog", n, 5000);
    cr_assert_eq(h_module_int(c, "w", "in_flight"), 1);
    s_wait_holding(c, "w");
    cr_assert_eq(s_release(c, "w"), 1);

    h_wait_module_int(c, "w", "done", n + 1, 10000);
    json_t *e = h_wait_recorded(c, "w", (size_t)n + 1, 5000);
    cr_assert_eq(json_array_size(e), (size_t)n + 1, "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 0), "name"), "hold");
    /* Expected: by priority, FIFO (enqueue order) within a level. */
    int k = 1;
    for (int p = 1; p <= 5; p++)
        for (int i = 0; i < n; i++) {
            if (prio[i] != p)
                continue;
            json_t *x = json_array_get(e, (size_t)k);
            cr_assert_str_eq(h_str(x, "name"), "record");
            cr_assert_str_eq(h_str(x, "kind"), "task");
            cr_assert_eq(h_arg(x, "seq"), i,
                         "entry %d: seq %lld, expected %d (priority %d); all: %s", k,
                         (long long)h_arg(x, "seq"), i, p, h_dump(e));
            cr_assert_eq(h_int(x, "priority"), p, "entry %d has priority %lld, sent with %d", k,
                         (long long)h_int(x, "priority"), p);
            k++;
        }
    json_decref(e);
    cr_assert_eq(h_module_int(c, "w", "backlog"), 0);
    cr_assert_eq(h_module_int(c, "w", "in_flight"), 0);
    lc_client_destroy(&c);
}

/* ---- 2. Highest priority overtakes what is already inside the window ---------------- */

Test(queue, highest_overtakes_items_in_window)
{
    h_broker(NULL);
    h_echo_with("w", NULL); /* default window 64 */
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "w.hold", NULL, 0);
    s_wait_holding(c, "w");
    for (int i = 0; i < 20; i++)
        h_enqueue_ok(c, "w.record", json_pack("{s:i}", "seq", i), LC_PRIORITY_LOWEST);
    h_enqueue_ok(c, "w.record", json_pack("{s:i}", "seq", 100), LC_PRIORITY_HIGHEST);
    /* All delivered into the module's local queue: nothing waits in the broker. */
    h_wait_module_int(c, "w", "in_flight", 22, 5000);
    cr_assert_eq(h_module_int(c, "w", "backlog"), 0);
    cr_assert_eq(s_release(c, "w"), 1);

    h_wait_module_int(c, "w", "done", 22, 10000);
    json_t *e = h_wait_recorded(c, "w", 22, 5000);
    cr_assert_eq(json_array_size(e), 22, "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 0), "name"), "hold");
    cr_assert_eq(h_arg(json_array_get(e, 1), "seq"), 100,
                 "the highest-priority task did not run right after the hold: %s", h_dump(e));
    cr_assert_eq(h_int(json_array_get(e, 1), "priority"), LC_PRIORITY_HIGHEST);
    for (int i = 0; i < 20; i++) {
        json_t *x = json_array_get(e, (size_t)i + 2);
        cr_assert_eq(h_arg(x, "seq"), i, "lowest-priority tasks out of order: %s", h_dump(e));
        cr_assert_eq(h_int(x, "priority"), LC_PRIORITY_LOWEST);
    }
    json_decref(e);
    lc_client_destroy(&c);
}

/* ---- 3. Priority and transaction along a chain a -> b -> c -------------------------- */

/* The single entry of c (waits for it), checked against b's entry: same tx, parent b. */
static json_t *s_chain_run(lc_client_t *c, json_t *b_args, int priority)
{
    h_enqueue_ok(c, "a.forward", json_pack("{s:s, s:o}", "task", "b.forward", "args", b_args),
                 priority);
    json_t *ce = h_wait_recorded(c, "c", 1, 5000);
    json_t *recorded = NULL;
    s_call_ok(c, "a.recorded", NULL, &recorded); /* and clears */
    json_t *ae = json_incref(json_object_get(recorded, "entries"));
    json_decref(recorded);
    s_call_ok(c, "b.recorded", NULL, &recorded);
    json_t *be = json_incref(json_object_get(recorded, "entries"));
    json_decref(recorded);
    s_call_ok(c, "c.recorded", NULL, &recorded);
    json_decref(recorded);
    cr_assert_eq(json_array_size(ae), 1, "a: %s", h_dump(ae));
    cr_assert_eq(json_array_size(be), 1, "b: %s", h_dump(be));
    cr_assert_eq(json_array_size(ce), 1, "c: %s", h_dump(ce));
    json_t *out = json_pack("{s:O, s:O, s:O}", "a", json_array_get(ae, 0), "b",
                            json_array_get(be, 0), "c", json_array_get(ce, 0));
    json_decref(ae);
    json_decref(be);
    json_decref(ce);
    return out;
}

Test(queue, chain_inherits_priority_and_transaction)
{
    h_broker(NULL);
    h_echo_with("a", NULL);
    h_echo_with("b", NULL);
    h_echo_with("c", "--listen", "chain_ev", NULL);
    lc_client_t *c = h_client();

    /* Inherited: tx and priority along the chain, parents following the ids. */
    json_t *r = s_chain_run(c, json_pack("{s:s, s:{s:i}}", "task", "c.record", "args", "m", 1),
                            LC_PRIORITY_HIGH);
    json_t *a = json_object_get(r, "a"), *b = json_object_get(r, "b"), *x = json_object_get(r, "c");
    cr_assert_str_eq(h_str(a, "kind"), "task");
    cr_assert_str_eq(h_str(a, "source"), lc_client_name(c));
    cr_assert_eq(h_int(a, "parent"), 0, "%s", h_dump(r));
    cr_assert_neq(h_int(a, "tx"), 0);
    cr_assert_str_eq(h_str(b, "source"), "a");
    cr_assert_str_eq(h_str(x, "source"), "b");
    cr_assert_str_eq(h_str(x, "name"), "record");
    cr_assert_eq(h_arg(x, "m"), 1);
    cr_assert_eq(h_int(b, "tx"), h_int(a, "tx"), "%s", h_dump(r));
    cr_assert_eq(h_int(x, "tx"), h_int(a, "tx"), "%s", h_dump(r));
    cr_assert_eq(h_int(b, "parent"), h_int(a, "id"), "%s", h_dump(r));
    cr_assert_eq(h_int(x, "parent"), h_int(b, "id"), "%s", h_dump(r));
    cr_assert(h_int(a, "id") != h_int(b, "id") && h_int(b, "id") != h_int(x, "id"));
    cr_assert_eq(h_int(a, "priority"), LC_PRIORITY_HIGH, "%s", h_dump(r));
    cr_assert_eq(h_int(b, "priority"), LC_PRIORITY_HIGH, "%s", h_dump(r));
    cr_assert_eq(h_int(x, "priority"), LC_PRIORITY_HIGH, "%s", h_dump(r));
    json_int_t first_tx = h_int(a, "tx");
    json_decref(r);

    /* b sets priority 5 explicitly: c gets 5, the transaction goes on. */
    r = s_chain_run(
        c, json_pack("{s:s, s:i, s:{s:i}}", "task", "c.record", "priority", 5, "args", "m", 2),
        LC_PRIORITY_HIGH);
    a = json_object_get(r, "a");
    b = json_object_get(r, "b");
    x = json_object_get(r, "c");
    cr_assert_eq(h_arg(x, "m"), 2);
    cr_assert_eq(h_int(b, "priority"), LC_PRIORITY_HIGH, "%s", h_dump(r));
    cr_assert_eq(h_int(x, "priority"), 5, "%s", h_dump(r));
    cr_assert_eq(h_int(x, "tx"), h_int(a, "tx"), "%s", h_dump(r));
    cr_assert_eq(h_int(x, "parent"), h_int(b, "id"), "%s", h_dump(r));
    cr_assert_neq(h_int(a, "tx"), first_tx, "two enqueues from outside share a transaction");
    json_decref(r);

    /* b starts a new transaction: c's tx differs, no parent; the priority is still inherited. */
    r = s_chain_run(
        c, json_pack("{s:s, s:b, s:{s:i}}", "task", "c.record", "new_tx", 1, "args", "m", 3),
        LC_PRIORITY_HIGH);
    a = json_object_get(r, "a");
    b = json_object_get(r, "b");
    x = json_object_get(r, "c");
    cr_assert_eq(h_arg(x, "m"), 3);
    cr_assert_eq(h_int(b, "tx"), h_int(a, "tx"), "%s", h_dump(r));
    cr_assert_neq(h_int(x, "tx"), 0, "%s", h_dump(r));
    cr_assert_neq(h_int(x, "tx"), h_int(a, "tx"), "new_tx kept the transaction: %s", h_dump(r));
    cr_assert_eq(h_int(x, "parent"), 0, "new_tx kept a parent: %s", h_dump(r));
    cr_assert_eq(h_int(x, "priority"), LC_PRIORITY_HIGH, "%s", h_dump(r));
    json_decref(r);

    /* An event emitted inside a handler continues the transaction too. */
    h_enqueue_ok(c, "a.forward", json_pack("{s:s, s:{s:i}}", "event", "chain_ev", "args", "m", 4),
                 LC_PRIORITY_LOW);
    json_t *ce = h_wait_recorded(c, "c", 1, 5000);
    json_t *ae = h_recorded(c, "a");
    cr_assert_eq(json_array_size(ae), 1, "%s", h_dump(ae));
    a = json_array_get(ae, 0);
    x = json_array_get(ce, 0);
    cr_assert_str_eq(h_str(x, "kind"), "event");
    cr_assert_str_eq(h_str(x, "name"), "chain_ev");
    cr_assert_str_eq(h_str(x, "source"), "a");
    cr_assert_eq(h_arg(x, "m"), 4);
    cr_assert_eq(h_int(x, "tx"), h_int(a, "tx"));
    cr_assert_eq(h_int(x, "parent"), h_int(a, "id"));
    cr_assert_eq(h_int(x, "priority"), LC_PRIORITY_LOW);
    json_decref(ae);
    json_decref(ce);

    /* A call to the same handler is a call, not a task. */
    json_t *res = NULL;
    s_call_ok(c, "c.recorded", NULL, NULL);
    s_call_ok(c, "c.record", json_pack("{s:i}", "m", 5), &res);
    json_decref(res);
    ce = h_recorded(c, "c");
    cr_assert_eq(json_array_size(ce), 1);
    cr_assert_str_eq(h_str(json_array_get(ce, 0), "kind"), "call");
    json_decref(ce);
    lc_client_destroy(&c);
}

/* ---- 4. A deferred task holds its slot --------------------------------------------- */

Test(queue, deferred_task_holds_its_slot)
{
    h_broker(NULL);
    h_echo_with("d", NULL); /* concurrency 1 */
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "d.hold", NULL, 0);
    h_enqueue_ok(c, "d.record", json_pack("{s:i}", "n", 1), 0);
    s_wait_holding(c, "d");
    h_wait_module_int(c, "d", "in_flight", 2, 5000); /* the record reached the module */
    s_call_ok(c, "d.echo", NULL, NULL);
    s_call_ok(c, "broker.ping", NULL, NULL);
    json_t *e = h_recorded(c, "d");
    cr_assert_eq(json_array_size(e), 1, "the record ran while the hold kept the only slot: %s",
                 h_dump(e));
    json_decref(e);
    cr_assert_eq(h_module_int(c, "d", "done"), 0);

    cr_assert_eq(s_release(c, "d"), 1);
    e = h_wait_recorded(c, "d", 2, 5000);
    cr_assert_str_eq(h_str(json_array_get(e, 1), "name"), "record", "%s", h_dump(e));
    cr_assert_eq(h_arg(json_array_get(e, 1), "n"), 1);
    json_decref(e);
    h_wait_module_int(c, "d", "done", 2, 5000);
    cr_assert_eq(h_module_int(c, "d", "in_flight"), 0);
    lc_client_destroy(&c);
}

Test(queue, concurrency_2_runs_beside_a_held_task)
{
    h_broker(NULL);
    h_echo_with("d", "--concurrency", "2", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "d.hold", NULL, 0);
    h_enqueue_ok(c, "d.record", json_pack("{s:i}", "n", 1), 0);
    json_t *e = h_wait_recorded(c, "d", 2, 5000);
    cr_assert_str_eq(h_str(json_array_get(e, 0), "name"), "hold", "%s", h_dump(e));
    cr_assert_str_eq(h_str(json_array_get(e, 1), "name"), "record", "%s", h_dump(e));
    json_decref(e);
    /* The record finished while the hold is still open. */
    h_wait_module_int(c, "d", "done", 1, 5000);
    cr_assert_eq(h_module_int(c, "d", "in_flight"), 1);
    /* A third runs in the second slot too; the hold is still open. */
    h_enqueue_ok(c, "d.record", json_pack("{s:i}", "n", 2), 0);
    h_wait_module_int(c, "d", "done", 2, 5000);
    cr_assert_eq(h_module_int(c, "d", "in_flight"), 1);
    cr_assert_eq(s_release(c, "d"), 1);
    h_wait_module_int(c, "d", "done", 3, 5000);
    cr_assert_eq(h_module_int(c, "d", "in_flight"), 0);
    lc_client_destroy(&c);
}

/* ---- 5. A crash: delivered-but-not-started items go again to the restarted module ---- */

Test(queue, crash_redelivers_items_not_started)
{
    h_broker(NULL);
    proc_t *k = h_echo_with("k", "--window", "64", NULL);
    lc_client_t *c = h_client();
    json_int_t lost0 = h_stat(c, "lost"), redelivered0 = h_stat(c, "redelivered");
    h_enqueue_ok(c, "k.hold", NULL, 0);
    s_wait_holding(c, "k"); /* started: the broker was told so before this answer */
    for (int i = 0; i < 5; i++)
        h_enqueue_ok(c, "k.record", json_pack("{s:i}", "seq", i), 0);
    h_wait_module_int(c, "k", "in_flight", 6, 5000);
    cr_assert_eq(h_module_int(c, "k", "backlog"), 0);

    int st = h_stop(k, SIGKILL, 5000);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "k status %d", st);
    h_echo_with("k", NULL);

    json_t *e = h_wait_recorded(c, "k", 5, 5000);
    h_wait_module_int(c, "k", "done", 5, 5000);
    json_decref(e);
    s_call_ok(c, "k.echo", NULL, NULL);
    e = h_recorded(c, "k");
    cr_assert_eq(json_array_size(e), 5, "the restarted k got %s", h_dump(e));
    for (int i = 0; i < 5; i++) {
        json_t *x = json_array_get(e, (size_t)i);
        cr_assert_str_eq(h_str(x, "name"), "record", "the started hold came again: %s", h_dump(e));
        cr_assert_eq(h_arg(x, "seq"), i, "redelivered out of order: %s", h_dump(e));
    }
    json_decref(e);
    cr_assert_geq(h_stat(c, "lost"), lost0 + 1);
    cr_assert_geq(h_stat(c, "redelivered"), redelivered0 + 5);
    cr_assert_eq(h_module_int(c, "k", "lost"), 1);
    cr_assert_eq(h_module_int(c, "k", "redelivered"), 5);
    cr_assert_eq(h_module_int(c, "k", "in_flight"), 0);
    lc_client_destroy(&c);
}

/* ---- 9. Queue bounds ------------------------------------------------------------------ */

Test(queue, bus_queue_full_refused)
{
    /* The total bound alone: a larger per-sender bound (--max-sent). */
    h_broker("--max-queue", "3", "--max-sent", "100", NULL);
    h_echo_with("q", "--window", "1", NULL);
    lc_client_t *c = h_client();
    notices_t notes = {0};
    lc_on_notice(c, s_on_notice, &notes);
    h_enqueue_ok(c, "q.hold", NULL, 0); /* in flight: not queued */
    s_wait_holding(c, "q");
    for (int i = 0; i < 3; i++)
        h_enqueue_ok(c, "q.record", json_pack("{s:i}", "seq", i), 0);
    json_int_t full0 = h_stat(c, "queue_full");
    cr_assert_eq(h_stat(c, "queued"), 3);
    for (int i = 3; i < 5; i++) {
        json_t *info = NULL;
        int rc = lc_enqueue_wait(c, "q.record", json_pack("{s:i}", "seq", i), 0, 5000, &info);
        cr_assert_eq(rc, LC_EQUEUEFULL, "enqueue %d: %s", i, lc_strerror(rc));
        cr_assert(json_string_value(json_object_get(info, "message")), "%s", h_dump(info));
        json_decref(info);
    }
    cr_assert_eq(h_stat(c, "queue_full"), full0 + 2);
    /* An event is refused the same way. */
    json_t *info = NULL;
    int rc = lc_emit_wait(c, "some_event", NULL, 0, 5000, &info);
    cr_assert_eq(rc, LC_EQUEUEFULL, "emit: %s", lc_strerror(rc));
    json_decref(info);
    cr_assert_eq(h_stat(c, "queue_full"), full0 + 3);

    /* Without waiting: lc_enqueue succeeds locally, the refusal reaches the notice callback. */
    cr_assert_eq(lc_enqueue(c, "q.record", json_pack("{s:i}", "seq", 9), 0), 0);
    h_dispatch_until(c, &notes.count, 1, 5000, "the refusal notice");
    cr_assert_eq(notes.rc, LC_EQUEUEFULL, "notice %s", lc_strerror(notes.rc));
    cr_assert_str_eq(notes.target, "q.record");
    cr_assert(json_string_value(json_object_get(notes.info, "message")), "%s", h_dump(notes.info));
    json_decref(notes.info);
    cr_assert_eq(h_stat(c, "queue_full"), full0 + 4);

    /* Released, the accepted ones run; the refused ones never do; room again. */
    cr_assert_eq(s_release(c, "q"), 1);
    h_wait_module_int(c, "q", "done", 4, 5000);
    h_enqueue_ok(c, "q.record", json_pack("{s:i}", "seq", 10), 0);
    h_wait_module_int(c, "q", "done", 5, 5000);
    json_t *e = h_recorded(c, "q");
    cr_assert_eq(json_array_size(e), 5, "%s", h_dump(e));
    static const int want[] = {0, 1, 2, 10};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(h_arg(json_array_get(e, (size_t)i + 1), "seq"), want[i], "%s", h_dump(e));
    json_decref(e);
    cr_assert_eq(notes.count, 1);
    lc_client_destroy(&c);
}

Test(queue, module_backlog_full_refuses_tasks_for_that_module_only)
{
    h_broker("--max-backlog", "2", NULL);
    h_echo_with("q", "--window", "1", NULL);
    h_echo_with("r", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "q.hold", NULL, 0);
    s_wait_holding(c, "q");
    h_enqueue_ok(c, "q.record", NULL, 0);
    h_enqueue_ok(c, "q.record", NULL, 0);
    json_int_t full0 = h_stat(c, "queue_full");
    json_t *info = NULL;
    int rc = lc_enqueue_wait(c, "q.record", NULL, 0, 5000, &info);
    cr_assert_eq(rc, LC_EQUEUEFULL, "%s", lc_strerror(rc));
    cr_assert(strstr(json_string_value(json_object_get(info, "message")), "q"), "%s", h_dump(info));
    json_decref(info);
    cr_assert_eq(h_stat(c, "queue_full"), full0 + 1);
    /* Another module is not affected. */
    for (int i = 0; i < 5; i++)
        h_enqueue_ok(c, "r.record", NULL, 0);
    h_wait_module_int(c, "r", "done", 5, 5000);
    cr_assert_eq(s_release(c, "q"), 1);
    h_wait_module_int(c, "q", "done", 3, 5000);
    lc_client_destroy(&c);
}

/* ---- 10. The grace time of a gone module's backlog ----------------------------------- */

/* g (window 1) holds a task; three more wait in the broker for it. */
static void s_g_with_backlog(lc_client_t *c)
{
    h_enqueue_ok(c, "g.hold", NULL, 0);
    s_wait_holding(c, "g");
    for (int i = 0; i < 3; i++)
        h_enqueue_ok(c, "g.record", json_pack("{s:i}", "seq", i), 0);
    cr_assert_eq(h_module_int(c, "g", "backlog"), 3);
}

static void s_wait_state(lc_client_t *c, const char *name, const char *state, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *m = h_module(c, name);
        const char *s = m ? json_string_value(json_object_get(m, "state")) : NULL;
        bool ok = s && strcmp(s, state) == 0;
        char now[64];
        snprintf(now, sizeof now, "%s", s ? s : m ? "(none)" : "(not listed)");
        json_decref(m);
        if (ok)
            return;
        cr_assert(lc_mono_ms() < deadline, "module %s is %s, not %s, after %d ms", name, now, state,
                  timeout_ms);
    }
}

Test(queue, grace_restart_within_grace_gets_backlog)
{
    h_broker("--grace", "2000", NULL);
    proc_t *g = h_echo_with("g", "--window", "1", NULL);
    lc_client_t *c = h_client();
    json_int_t lost0 = h_stat(c, "lost");
    s_g_with_backlog(c);
    /* A clean stop (SIGTERM) with a task held: the hold is lost, the backlog kept. */
    int st = h_stop(g, SIGTERM, 5000);
    cr_assert(WIFEXITED(st), "g status %d\n%s", st, h_log(g));
    s_wait_state(c, "g", "gone", 2000);
    cr_assert_eq(h_module_int(c, "g", "backlog"), 3);
    /* Meanwhile calls to that name fail with "not ready" (lc-broker(1), --grace). */
    json_t *res = NULL;
    int rc = lc_call(c, "g.echo", NULL, &res, 5000);
    cr_assert_eq(rc, LC_ENOTREADY, "a call to g during its grace time: %s", lc_strerror(rc));
    json_decref(res);
    h_echo_with("g", NULL);
    json_t *e = h_wait_recorded(c, "g", 3, 5000);
    h_wait_module_int(c, "g", "done", 3, 5000);
    json_decref(e);
    e = h_recorded(c, "g");
    cr_assert_eq(json_array_size(e), 3, "%s", h_dump(e));
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(h_str(json_array_get(e, (size_t)i), "name"), "record", "%s", h_dump(e));
        cr_assert_eq(h_arg(json_array_get(e, (size_t)i), "seq"), i, "%s", h_dump(e));
    }
    json_decref(e);
    cr_assert_eq(h_stat(c, "lost"), lost0 + 1, "only the started hold is lost");
    lc_client_destroy(&c);
}

Test(queue, grace_restart_after_kill9_gets_backlog)
{
    h_broker("--grace", "2000", NULL);
    proc_t *g = h_echo_with("g", "--window", "1", NULL);
    lc_client_t *c = h_client();
    s_g_with_backlog(c);
    h_stop(g, SIGKILL, 5000);
    h_echo_with("g", NULL); /* at once: the broker may not have seen the death yet */
    json_t *e = h_wait_recorded(c, "g", 3, 5000);
    json_decref(e);
    h_wait_module_int(c, "g", "done", 3, 5000);
    e = h_recorded(c, "g");
    cr_assert_eq(json_array_size(e), 3, "%s", h_dump(e));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(h_arg(json_array_get(e, (size_t)i), "seq"), i, "%s", h_dump(e));
    json_decref(e);
    lc_client_destroy(&c);
}

Test(queue, grace_expired_emits_module_lost)
{
    h_broker("--grace", "300", NULL);
    h_echo_with("ml", "--listen", "module_lost", NULL);
    proc_t *g = h_echo_with("g", "--window", "1", NULL);
    lc_client_t *c = h_client();
    json_int_t lost0 = h_stat(c, "lost");
    s_g_with_backlog(c);
    int64_t t0 = lc_mono_ms();
    h_stop(g, SIGKILL, 5000);
    json_t *e = h_wait_recorded(c, "ml", 1, 5000);
    int64_t elapsed = lc_mono_ms() - t0;
    json_t *x = json_array_get(e, 0);
    cr_assert_str_eq(h_str(x, "kind"), "event");
    cr_assert_str_eq(h_str(x, "name"), "module_lost");
    cr_assert_str_eq(h_str(x, "source"), "broker");
    json_t *args = json_object_get(x, "args");
    cr_assert_str_eq(h_str(args, "module"), "g", "%s", h_dump(e));
    cr_assert_eq(h_int(args, "lost"), 3, "%s", h_dump(e));
    cr_assert_geq(elapsed, 250, "module_lost after %lld ms, before the grace time",
                  (long long)elapsed);
    json_decref(e);
    cr_assert(!h_module(c, "g"), "g is still listed after its grace time");
    cr_assert_eq(h_stat(c, "lost"), lost0 + 4, "the hold and the 3 queued tasks");
    cr_assert_eq(h_stat(c, "queued"), 0);
    /* Only once. */
    s_call_ok(c, "broker.ping", NULL, NULL);
    e = h_recorded(c, "ml");
    cr_assert_eq(json_array_size(e), 1, "%s", h_dump(e));
    json_decref(e);
    lc_client_destroy(&c);
}

/* ---- 11. Many threads enqueue on one client ----------------------------------------- */

#define SEND_THREADS 4
#define SEND_EACH 500

typedef struct {
    lc_client_t *client;
    int index;
    int ok;
    int first_rc;
} sender_t;

static void *s_sender(void *arg)
{
    sender_t *me = arg;
    for (int i = 0; i < SEND_EACH; i++) {
        int rc = lc_enqueue(me->client, "rec.record",
                            json_pack("{s:i, s:i}", "t", me->index, "i", i), 0);
        if (rc == 0)
            me->ok++;
        else if (!me->first_rc)
            me->first_rc = rc;
    }
    return NULL;
}

Test(queue, threads_enqueue_each_task_once)
{
    h_broker(NULL);
    h_echo_with("rec", NULL);
    lc_client_t *c = h_client();
    notices_t notes = {0};
    lc_on_notice(c, s_on_notice, &notes);
    pthread_t th[SEND_THREADS], stop;
    sender_t senders[SEND_THREADS];
    for (int i = 0; i < SEND_THREADS; i++) {
        senders[i] = (sender_t){.client = c, .index = i};
        cr_assert_eq(pthread_create(&th[i], NULL, s_sender, &senders[i]), 0);
    }
    h_stopper_t st = {c, th, SEND_THREADS};
    cr_assert_eq(pthread_create(&stop, NULL, h_stopper, &st), 0);
    int rc = lc_run(c);
    pthread_join(stop, NULL);
    cr_assert_eq(rc, 0, "lc_run: %s", lc_strerror(rc));
    for (int i = 0; i < SEND_THREADS; i++)
        cr_assert_eq(senders[i].ok, SEND_EACH, "thread %d: %d sent; first error %s", i,
                     senders[i].ok, lc_strerror(senders[i].first_rc));

    const int total = SEND_THREADS * SEND_EACH;
    h_wait_module_int(c, "rec", "done", total, 30000);
    cr_assert_eq(h_module_int(c, "rec", "tasks_in"), total);
    json_t *e = h_recorded(c, "rec");
    cr_assert_eq(json_array_size(e), (size_t)total);
    static char seen[SEND_THREADS][SEND_EACH];
    memset(seen, 0, sizeof seen);
    int last[SEND_THREADS];
    for (int i = 0; i < SEND_THREADS; i++)
        last[i] = -1;
    size_t j;
    json_t *x;
    json_array_foreach(e, j, x)
    {
        cr_assert_str_eq(h_str(x, "kind"), "task");
        json_int_t t = h_arg(x, "t"), i = h_arg(x, "i");
        cr_assert(t >= 0 && t < SEND_THREADS && i >= 0 && i < SEND_EACH, "bad entry %s", h_dump(x));
        cr_assert_eq(seen[t][i], 0, "task t=%lld i=%lld ran twice", (long long)t, (long long)i);
        seen[t][i] = 1;
        /* One sender's tasks of one priority keep their order. */
        cr_assert_gt(i, last[t], "thread %lld: task %lld ran after %d", (long long)t, (long long)i,
                     last[t]);
        last[t] = (int)i;
    }
    json_decref(e);
    cr_assert_eq(notes.count, 0, "a refusal: %s %s", lc_strerror(notes.rc), notes.target);
    lc_client_destroy(&c);
}

/* ---- 12. A handler that never returns stalls only its own module -------------------- */

static void s_others_keep_working(lc_client_t *c)
{
    int64_t t0 = lc_mono_ms();
    for (int i = 0; i < 10; i++) {
        h_enqueue_ok(c, "ok.record", json_pack("{s:i}", "task", i), 0);
        json_t *info = NULL;
        int rc = lc_emit_wait(c, "ok_ping", json_pack("{s:i}", "event", i), 0, 5000, &info);
        cr_assert_eq(rc, 0, "emit: %s", lc_strerror(rc));
        cr_assert_eq(h_int(info, "subscribers"), 1, "%s", h_dump(info));
        json_decref(info);
        json_t *res = NULL;
        s_call_ok(c, "ok.echo", json_pack("{s:i}", "call", i), &res);
        cr_assert_eq(h_int(res, "call"), i);
        json_decref(res);
    }
    json_t *e = h_wait_recorded(c, "ok", 20, 5000);
    cr_assert_eq(json_array_size(e), 20, "%s", h_dump(e));
    json_decref(e);
    int64_t elapsed = lc_mono_ms() - t0;
    cr_assert_lt(elapsed, 5000, "the other module took %lld ms", (long long)elapsed);
    s_call_ok(c, "broker.ping", NULL, NULL);
}

Test(queue, stuck_call_handler_does_not_stall_others)
{
    h_broker(NULL);
    h_echo_with("stuck", NULL);
    h_echo_with("ok", "--listen", "ok_ping", NULL);
    lc_client_t *c = h_client();
    h_outcome_t o = {0};
    int rc = lc_call_async(c, "stuck.block", json_pack("{s:i}", "ms", 60000), 60000, h_outcome, &o);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    h_wait_module_int(c, "stuck", "calls_in", 1, 5000);
    h_enqueue_ok(c, "stuck.record", NULL, 0); /* waits behind it, harmlessly */
    s_others_keep_working(c);
    cr_assert_eq(o.calls, 0);
    lc_client_destroy(&c);
}

Test(queue, stuck_task_handler_does_not_stall_others)
{
    h_broker(NULL);
    h_echo_with("stuck", "--listen", "ok_ping", NULL); /* also a subscriber of ok's events */
    h_echo_with("ok", "--listen", "ok_ping", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "stuck.block", json_pack("{s:i}", "ms", 60000), 0);
    h_wait_module_int(c, "stuck", "in_flight", 1, 5000);
    /* The events also queue up for the stuck subscriber; the other one gets them at once. */
    int64_t t0 = lc_mono_ms();
    for (int i = 0; i < 10; i++) {
        h_enqueue_ok(c, "ok.record", json_pack("{s:i}", "task", i), 0);
        json_t *info = NULL;
        int rc = lc_emit_wait(c, "ok_ping", json_pack("{s:i}", "event", i), 0, 5000, &info);
        cr_assert_eq(rc, 0, "emit: %s", lc_strerror(rc));
        cr_assert_eq(h_int(info, "subscribers"), 2, "%s", h_dump(info));
        json_decref(info);
        s_call_ok(c, "ok.echo", NULL, NULL);
    }
    json_t *e = h_wait_recorded(c, "ok", 20, 5000);
    json_decref(e);
    cr_assert_lt(lc_mono_ms() - t0, 5000);
    cr_assert_eq(h_module_int(c, "stuck", "in_flight"), 11);
    lc_client_destroy(&c);
}

/* ---- An in-process module: deferred tasks finished from another thread ------------- */

typedef struct {
    lc_client_t *client;
    int handled;
    int finished; /* read with __atomic_load_n by h_dispatch_until */
    int kinds_ok;
    int order[8];
    uint64_t kick_id, kick_tx, job_parent, job_tx;
    char job_source[64];
    pthread_t threads[8];
    int nthreads;
} svc_t;

typedef struct {
    lc_request_t *req;
    svc_t *svc;
} later_t;

static void *s_finisher(void *arg)
{
    later_t *l = arg;
    svc_t *svc = l->svc;
    int rc = lc_done(l->req); /* from another thread: frees the slot, wakes the loop */
    free(l);
    if (rc == 0)
        __atomic_add_fetch(&svc->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void s_job(lc_request_t *req, json_t *args, void *arg)
{
    svc_t *svc = arg;
    if (lc_request_kind(req) == LC_KIND_TASK)
        svc->kinds_ok++;
    if (svc->handled < 8)
        svc->order[svc->handled] = (int)json_integer_value(json_object_get(args, "n"));
    svc->handled++;
    if (json_object_get(args, "from")) {
        svc->job_parent = lc_request_parent(req);
        svc->job_tx = lc_request_tx(req);
        snprintf(svc->job_source, sizeof svc->job_source, "%s", lc_request_source(req));
    }
    lc_defer(req);
    later_t *l = calloc(1, sizeof *l);
    cr_assert(l);
    l->req = req;
    l->svc = svc;
    cr_assert(svc->nthreads < 8);
    cr_assert_eq(pthread_create(&svc->threads[svc->nthreads++], NULL, s_finisher, l), 0);
}

/* A task that enqueues "job" by its bare name: this module's own method. */
static void s_kick(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    svc_t *svc = arg;
    svc->kick_id = lc_request_id(req);
    svc->kick_tx = lc_request_tx(req);
    int rc = lc_enqueue(lc_request_client(req), "job",
                        json_pack("{s:i, s:s}", "n", 9, "from", "kick"), 0);
    cr_assert_eq(rc, 0, "lc_enqueue(job): %s", lc_strerror(rc));
}

Test(queue, in_process_deferred_tasks_done_from_other_threads)
{
    h_broker(NULL);
    svc_t svc = {0};
    lc_client_t *m = lc_client_new("svc", h_bus);
    cr_assert(m);
    cr_assert_eq(lc_method(m, "job", s_job, &svc), 0);
    cr_assert_eq(lc_method(m, "kick", s_kick, &svc), 0);
    int rc = lc_connect(m, 10000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    lc_client_t *c = h_client();
    h_wait_modules(c, "svc", NULL);
    /* Three deferred tasks, queued before the module's loop runs: by priority. */
    h_enqueue_ok(c, "svc.job", json_pack("{s:i}", "n", 3), LC_PRIORITY_LOW);
    h_enqueue_ok(c, "svc.job", json_pack("{s:i}", "n", 1), LC_PRIORITY_HIGH);
    h_enqueue_ok(c, "svc.job", json_pack("{s:i}", "n", 2), LC_PRIORITY_NORMAL);
    h_wait_module_int(c, "svc", "in_flight", 3, 10000); /* all three sent to the module */
    h_dispatch_until(m, &svc.finished, 3, 5000, "deferred tasks finished by other threads");
    cr_assert_eq(svc.handled, 3);
    cr_assert_eq(svc.kinds_ok, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(svc.order[i], i + 1, "task %d ran as number %d", svc.order[i], i + 1);

    /* A bare method name from inside a handler: the module's own, in the same transaction. */
    h_enqueue_ok(c, "svc.kick", NULL, 0);
    h_dispatch_until(m, &svc.finished, 4, 5000, "the job enqueued by kick");
    cr_assert_eq(svc.order[3], 9);
    cr_assert_str_eq(svc.job_source, "svc");
    cr_assert_eq(svc.job_parent, svc.kick_id);
    cr_assert_eq(svc.job_tx, svc.kick_tx);

    /* Every completion reached the broker. */
    int64_t deadline = lc_mono_ms() + 5000;
    while (h_module_int(c, "svc", "done") != 5) {
        cr_assert_geq(lc_dispatch(m), 0);
        cr_assert_lt(lc_mono_ms(), deadline, "svc done %lld, not 5",
                     (long long)h_module_int(c, "svc", "done"));
    }
    cr_assert_eq(h_module_int(c, "svc", "in_flight"), 0);
    for (int i = 0; i < svc.nthreads; i++)
        pthread_join(svc.threads[i], NULL);
    lc_client_destroy(&c);
    lc_client_destroy(&m);
}

/* ---- A full window does not starve the loop ------------------------------------------ */

typedef struct {
    int tasks, ticks, tasks_at_first_tick;
} busy_t;

static void s_busy_task(lc_request_t *req, json_t *args, void *arg)
{
    (void)req, (void)args;
    busy_t *b = arg;
    /* A handler that works (500 us of CPU), not one that sleeps. */
    int64_t until = lc_now_us() + 500;
    while ((int64_t)lc_now_us() < until)
        ;
    b->tasks++;
}

static void s_busy_tick(lc_client_t *c, int id, void *arg)
{
    (void)c, (void)id;
    busy_t *b = arg;
    if (b->ticks++ == 0)
        b->tasks_at_first_tick = b->tasks;
}

Test(queue, timers_run_while_the_broker_keeps_the_window_full)
{
    h_broker(NULL);
    busy_t b = {0};
    lc_client_t *m = lc_client_new("busy", h_bus);
    cr_assert(m);
    cr_assert_eq(lc_method(m, "work", s_busy_task, &b), 0);
    cr_assert_eq(lc_connect(m, 10000), 0);
    lc_client_t *c = h_client();
    h_wait_modules(c, "busy", NULL);
    /* A backlog far larger than the window: the broker refills it as items finish. */
    const int n = 2000;
    for (int i = 0; i < n - 1; i++)
        cr_assert_eq(lc_enqueue(c, "busy.work", NULL, 0), 0);
    h_enqueue_ok(c, "busy.work", NULL, 0);
    cr_assert_geq(lc_timer_add(m, 5, true, s_busy_tick, &b), 0);
    h_dispatch_until(m, &b.tasks, n, 60000, "the backlog handled");
    /* The timer had its turn long before the backlog was done (a run of the queue ends
     * after 10 ms), not only after it. */
    cr_assert(b.ticks > 0 && b.tasks_at_first_tick < n / 2,
              "first tick after %d of %d tasks (%d ticks)", b.tasks_at_first_tick, n, b.ticks);
    lc_client_destroy(&c);
    lc_client_destroy(&m);
}
