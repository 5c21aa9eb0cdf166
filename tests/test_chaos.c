/* kill -9 under load: the short version of `make chaos` (lc-chaos, tests/chaos/chaos.c),
 * and the lc-echo options it relies on (--journal, --busy, forward with wait). */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

TestSuite(chaos, .init = h_setup, .fini = h_teardown, .timeout = 180);

/* Waits until the file holds at least n lines; returns its text (caller frees). */
static char *s_wait_lines(const char *path, int n, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        char *text = h_slurp(path);
        if (h_count(text, "\n") >= n)
            return text;
        cr_assert(lc_mono_ms() < deadline, "%s: fewer than %d lines after %d ms:\n%s", path, n,
                  timeout_ms, text);
        free(text);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL); /* between two looks at the file */
    }
}

/* Each journal line is one JSON object; returns line i (a new reference). */
static json_t *s_line(const char *text, int i)
{
    const char *p = text;
    for (int k = 0; k < i; k++)
        p = strchr(p, '\n') + 1;
    const char *end = strchr(p, '\n');
    json_error_t err;
    json_t *j = json_loadb(p, (size_t)(end - p), 0, &err);
    cr_assert(j, "journal line %d is not JSON (%s): %.*s", i, err.text, (int)(end - p), p);
    return j;
}

Test(chaos, echo_journal_has_a_whole_line_per_task_and_event)
{
    h_broker(NULL);
    char journal[400];
    snprintf(journal, sizeof journal, "%s/e.journal", h_dir);
    proc_t *e = h_echo_with("e", "--journal", journal, "--listen", "x_*", "--busy", "1", NULL);
    lc_client_t *c = h_client();
    /* A call is not journalled; a task and an event are, before their handlers run. */
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "e.record", json_pack("{s:i}", "n", 0), &res, 0), 0);
    json_decref(res);
    h_enqueue_ok(c, "e.record", json_pack("{s:i}", "n", 1), LC_PRIORITY_HIGH);
    cr_assert_eq(lc_emit_wait(c, "x_one", json_pack("{s:i}", "n", 2), 0, 0, NULL), 0);
    char *text = s_wait_lines(journal, 2, 10000);
    json_t *task = s_line(text, 0), *event = s_line(text, 1);
    cr_assert_str_eq(h_str(task, "module"), "e");
    cr_assert_eq(h_int(task, "pid"), e->pid);
    cr_assert_str_eq(h_str(task, "kind"), "task");
    cr_assert_str_eq(h_str(task, "name"), "record");
    cr_assert_str_eq(h_str(task, "source"), lc_client_name(c));
    cr_assert_eq(h_int(task, "priority"), LC_PRIORITY_HIGH);
    cr_assert(h_int(task, "id") > 0 && h_int(task, "time_us") > 0);
    cr_assert_eq(h_arg(task, "n"), 1);
    cr_assert_str_eq(h_str(event, "kind"), "event");
    cr_assert_str_eq(h_str(event, "name"), "x_one");
    cr_assert_eq(h_arg(event, "n"), 2);
    json_decref(task);
    json_decref(event);
    free(text);
    lc_client_destroy(&c);
    int st = h_stop(e, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lc-echo: status %d\n%s", st, h_log(e));
}

Test(chaos, echo_journal_and_busy_refuse_bad_values)
{
    proc_t *p = h_spawn("busy", BIN("lc-echo"), "--bus", h_bus, "--busy", "x", NULL);
    int st = h_wait_exit(p, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d\n%s", st, h_log(p));
    cr_assert(strstr(h_log(p), "--busy expects milliseconds"), "%s", h_log(p));
    char bad[400];
    snprintf(bad, sizeof bad, "%s/no/such/folder/j", h_dir);
    p = h_spawn("journal", BIN("lc-echo"), "--bus", h_bus, "--journal", bad, NULL);
    st = h_wait_exit(p, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d\n%s", st, h_log(p));
    cr_assert(strstr(h_log(p), "cannot open the journal"), "%s", h_log(p));
}

Test(chaos, echo_forward_waits_for_the_acceptance)
{
    h_broker(NULL);
    h_echo_with("a", NULL);
    h_echo_with("b", "--listen", "y_*", NULL);
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "a.forward",
                     json_pack("{s:s, s:{s:i}, s:b}", "event", "y_two", "args", "n", 1, "wait", 1),
                     &res, 0);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(h_int(res, "subscribers"), 1, "%s", h_dump(res));
    json_decref(res);
    /* A refusal is the answer: an error with the negative lc code. */
    rc = lc_call(c, "a.forward", json_pack("{s:s, s:b}", "task", "nobody.x", "wait", 1), &res, 0);
    cr_assert_eq(rc, LC_EHANDLER, "%s", lc_strerror(rc));
    cr_assert_eq(h_int(res, "code"), LC_ENOMODULE, "%s", h_dump(res));
    json_decref(res);
    json_t *got = h_wait_recorded(c, "b", 1, 10000);
    cr_assert_eq(h_arg(json_array_get(got, 0), "n"), 1);
    json_decref(got);
    lc_client_destroy(&c);
}

/* An lc_call_async() outcome with the handler's code. */
typedef struct {
    int calls, rc, code;
} s_answer_t;

static void s_answered(lc_client_t *self, int rc, json_t *result, void *arg)
{
    (void)self;
    s_answer_t *a = arg;
    a->rc = rc;
    a->code = (int)json_integer_value(json_object_get(result, "code"));
    a->calls++;
}

/* Why lc-chaos never opens a cycle of sleep calls. lc-echo's sleep answers from a timer,
 * and a module waiting in a call serves incoming calls but runs no timer until its handler
 * returns (decision 10, docs/architecture.md "Re-entrancy"). With a.call{b.sleep} and
 * b.call{a.sleep} open at once, a waits for b's timer and b for a's: a's inner call ends
 * at its deadline (5 s), code 6, and only then can b get its answer. This was the call
 * that "waited for its deadline after a broker restart" in the chaos runs: the callers'
 * calls, held while the broker was away, all arrived at once. */
Test(chaos, crossed_sleep_calls_wait_for_the_inner_deadline)
{
    h_broker(NULL);
    h_echo("a");
    h_echo("b");
    lc_client_t *c = h_client();
    s_answer_t ab = {0}, ba = {0};
    /* b's timer would answer a after 3 s if b's loop were free. */
    int rc = lc_call_async(c, "a.call",
                           json_pack("{s:s, s:{s:i}}", "target", "b.sleep", "args", "ms", 3000),
                           20000, s_answered, &ab);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    h_wait_module_int(c, "b", "calls_in", 1, 10000); /* b's timer is set */
    rc = lc_call_async(c, "b.call",
                       json_pack("{s:s, s:{s:i}}", "target", "a.sleep", "args", "ms", 0), 20000,
                       s_answered, &ba);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    h_wait_module_int(c, "a", "calls_in", 2, 10000); /* b waits in its call to a.sleep */
    h_dispatch_until(c, &ab.calls, 1, 20000, "a.call{b.sleep}");
    h_dispatch_until(c, &ba.calls, 1, 20000, "b.call{a.sleep}");
    cr_assert_eq(ab.rc, LC_EHANDLER, "a.call{b.sleep}: %s", lc_strerror(ab.rc));
    cr_assert_eq(ab.code, 6, "a.call{b.sleep}: code %d, not the inner deadline", ab.code);
    /* b's own inner call ends at its deadline too, or a moment before, answered by a's
     * timer once a's handler returned. */
    cr_assert(ba.rc == 0 || (ba.rc == LC_EHANDLER && ba.code == 6), "b.call{a.sleep}: %s (code %d)",
              lc_strerror(ba.rc), ba.code);
    lc_client_destroy(&c);
}

/* 50 kills, the broker's among them, under a steady load: every goal of `make chaos`. */
Test(chaos, fifty_kills_lose_nothing_unaccounted)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/run", h_dir);
    proc_t *p = h_spawn("lc-chaos", LC_BUILD_DIR "/tests/lc-chaos", "--kills", "50",
                        "--broker-every", "25", "--bin", LC_BUILD_DIR "/bin", "--dir", dir, NULL);
    int st = h_wait_exit(p, 150000);
    char *log = h_slurp(p->log);
    cr_assert(WIFEXITED(st), "lc-chaos did not end (status %d):\n%s", st, log);
    /* Every goal, strictly. The two misses this version once accepted are gone: an item
     * run twice when the DONE announcing its start died with the process (the broker now
     * reads the dead module's ledger instead of presuming, docs/protocol.md "The ledger"),
     * and calls that waited for their deadline, a cycle of sleep calls waiting for each
     * other's timers (chaos::crossed_sleep_calls_wait_for_the_inner_deadline), which
     * lc-chaos no longer makes. */
    cr_assert(WEXITSTATUS(st) == 0, "lc-chaos missed a goal (status %d):\n%s", WEXITSTATUS(st),
              log);
    cr_assert(strstr(log, "kills: 50 in"), "%s", log);
    cr_assert(strstr(log, "48 modules, 2 the broker"), "%s", log);
    cr_assert(strstr(log, "never back: 0 (goal 0)"), "%s", log);
    cr_assert(strstr(log, "calls between survivors that failed: 0 (goal 0)"), "%s", log);
    cr_assert(strstr(log, "not answered gone (or refused before it was reached, or answered "
                          "before the kill): 0 (goal 0)"),
              "%s", log);
    cr_assert(strstr(log, "calls that hit their deadline: 0 (goal 0)"), "%s", log);
    cr_assert(strstr(log, "unaccounted copies: 0 (goal 0); delivered twice: 0 (goal 0)"), "%s",
              log);
    cr_assert(strstr(log, "records the spy missed: 0 (goal 0)"), "%s", log);
    cr_assert(strstr(log, "lc-launch stopped the system cleanly"), "%s", log);
    cr_assert(strstr(log, "because the crash presumption reported an item that had already run "
                          "and put back the one running: 0 (goal 0"),
              "%s", log);
    cr_assert(strstr(log, "lc-chaos: all goals met"), "%s", log);
    free(log);
}
