/* lc list, lc stats and lc wait on a live bus, through the real programs. */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(introspect, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* Runs lc with arguments; returns its exit status, its output in *out (static). */
static int s_lc(const char **out, const char *a1, const char *a2, const char *a3, const char *a4)
{
    static int n;
    char name[32];
    snprintf(name, sizeof name, "lc%d", n++);
    proc_t *p = h_spawn(name, BIN("lc"), "--bus", h_bus, a1, a2, a3, a4, NULL);
    int st = h_wait_exit(p, 20000);
    cr_assert(st != -1 && WIFEXITED(st), "lc %s did not end", a1);
    *out = h_log(p);
    return WEXITSTATUS(st);
}

Test(introspect, wait_returns_when_modules_are_ready)
{
    h_broker(NULL);
    proc_t *w = h_spawn("wait", BIN("lc"), "--bus", h_bus, "--timeout", "15000", "wait", "late",
                        "echo", NULL);
    /* Not yet: neither is there. */
    cr_assert_eq(h_wait_exit(w, 0), -1);
    h_echo("echo");
    cr_assert_eq(h_wait_exit(w, 0), -1, "returned before 'late' was there:\n%s", h_log(w));
    h_echo("late");
    int st = h_wait_exit(w, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d\n%s", st, h_log(w));
    const char *out;
    cr_assert_eq(s_lc(&out, "--timeout", "300", "wait", "nobody"), 4, "%s", out);
    cr_assert(strstr(out, "not all ready within 300 ms"), "%s", out);
}

Test(introspect, list_shows_modules_methods_and_subscriptions)
{
    h_broker(NULL);
    proc_t *e = h_spawn("e", BIN("lc-echo"), "--name", "e", "--bus", h_bus, "--listen", "door_*",
                        NULL);
    (void)e;
    lc_client_t *c = h_client();
    h_wait_modules(c, "e", NULL);
    lc_client_destroy(&c);
    const char *out;
    cr_assert_eq(s_lc(&out, "list", "--json", NULL, NULL), 0, "%s", out);
    json_t *res = json_loads(out, 0, NULL);
    cr_assert(res, "not JSON: %s", out);
    json_t *m, *found = NULL;
    size_t i;
    json_array_foreach(json_object_get(res, "modules"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "name")), "e") == 0)
            found = m;
    }
    cr_assert(found, "e not listed: %s", out);
    cr_assert_str_eq(json_string_value(json_object_get(found, "state")), "active");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(found, "events"), 0)),
                     "door_*");
    cr_assert_gt(json_array_size(json_object_get(found, "methods")), 5);
    cr_assert(json_object_get(found, "uid") && json_object_get(found, "pid"));
    json_decref(res);
    cr_assert_eq(s_lc(&out, "list", NULL, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "NAME") && strstr(out, "\ne ") && strstr(out, "events: door_*") &&
                  strstr(out, "sleep(ms: integer)"),
              "%s", out);
}

Test(introspect, stats_show_the_queue_per_priority_and_backlog)
{
    h_broker(NULL);
    proc_t *w = h_spawn("w", BIN("lc-echo"), "--name", "w", "--bus", h_bus, "--window", "1", NULL);
    (void)w;
    lc_client_t *c = h_client();
    h_wait_modules(c, "w", NULL);
    /* A held task fills the window of 1: what follows waits in the broker. */
    json_t *info = NULL;
    cr_assert_eq(lc_enqueue_wait(c, "w.hold", NULL, 0, 5000, &info), 0);
    json_decref(info);
    cr_assert_eq(lc_enqueue_wait(c, "w.record", NULL, LC_PRIORITY_HIGH, 5000, &info), 0);
    json_decref(info);
    cr_assert_eq(lc_enqueue_wait(c, "w.record", NULL, LC_PRIORITY_LOWEST, 5000, &info), 0);
    json_decref(info);
    cr_assert_eq(lc_enqueue_wait(c, "w.record", NULL, LC_PRIORITY_LOWEST, 5000, &info), 0);
    json_decref(info);
    const char *out;
    cr_assert_eq(s_lc(&out, "stats", "--json", NULL, NULL), 0, "%s", out);
    json_t *st = json_loads(out, 0, NULL);
    cr_assert(st, "not JSON: %s", out);
    json_t *q = json_object_get(st, "queued_by_priority");
    cr_assert_eq(json_array_size(q), 5);
    cr_assert_eq(json_integer_value(json_array_get(q, 1)), 1, "%s", out);
    cr_assert_eq(json_integer_value(json_array_get(q, 4)), 2, "%s", out);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "backlog"), "w")), 3);
    cr_assert_eq(json_integer_value(json_object_get(st, "in_flight")), 1, "%s", out);
    cr_assert_eq(json_integer_value(json_object_get(st, "tasks")), 4);
    json_decref(st);
    cr_assert_eq(s_lc(&out, "stats", NULL, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "by priority 1-5: 0 1 0 0 2") && strstr(out, "backlog: w 3"), "%s",
              out);
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "w.release", NULL, &res, 5000), 0);
    json_decref(res);
    lc_client_destroy(&c);
}

/* Declared arguments (lc_method_doc) are checked by the callee's library before its
 * handler runs; undeclared methods take anything. */
Test(introspect, declared_arguments_are_checked)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "echo.sleep", json_pack("{s:s}", "ms", "soon"), &res, 5000);
    cr_assert_eq(rc, LC_EHANDLER, "%s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(res, "code")), 22);
    const char *msg = json_string_value(json_object_get(res, "message"));
    cr_assert(strstr(msg, "'ms'") && strstr(msg, "integer") && strstr(msg, "a string"), "%s", msg);
    json_decref(res);
    rc = lc_call(c, "echo.fail", json_pack("{s:i}", "bogus", 1), &res, 5000);
    cr_assert_eq(rc, LC_EHANDLER);
    msg = json_string_value(json_object_get(res, "message"));
    cr_assert(strstr(msg, "unknown argument 'bogus'") && strstr(msg, "code: integer"), "%s", msg);
    json_decref(res);
    /* A declared argument of the right type, and an undeclared method, pass. */
    rc = lc_call(c, "echo.sleep", json_pack("{s:i}", "ms", 1), &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    json_decref(res);
    rc = lc_call(c, "echo.echo", json_pack("{s:s, s:[i]}", "anything", "x", "list", 1), &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    json_decref(res);
    lc_client_destroy(&c);
}
