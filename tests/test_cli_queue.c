/* The command line for tasks and events: `lc enqueue`, `lc emit` and `lc listen`, their
 * exit statuses and output, as real processes against a real broker. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(cli_queue, .init = h_setup, .fini = h_teardown, .timeout = 60);

#define LC BIN("lc")

typedef struct {
    int status;
    char out[8192];
} run_t;

/* Runs `lc --bus h_bus ARGS...` (NULL-terminated) to its end; output goes to
 * h_dir/<logname>.log. Fails the test unless it exits normally within 15 s. */
static run_t s_lc(const char *logname, ...)
{
    va_list ap;
    va_start(ap, logname);
    proc_t *p = h_spawn_bus(logname, LC, ap);
    va_end(ap);
    int st = h_wait_exit(p, 15000);
    cr_assert_neq(st, -1, "lc (%s) did not end\n%s", logname, h_log(p));
    cr_assert(WIFEXITED(st), "lc (%s) ended by signal %d\n%s", logname,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, h_log(p));
    run_t r;
    r.status = WEXITSTATUS(st);
    snprintf(r.out, sizeof r.out, "%s", h_log(p));
    h_proc_free(&p);
    return r;
}

static void s_expect(const run_t *r, int status, const char *text, const char *what)
{
    cr_assert_eq(r->status, status, "%s: exit status %d, expected %d; output:\n%s", what, r->status,
                 status, r->out);
    if (text)
        cr_assert(strstr(r->out, text), "%s: output lacks \"%s\":\n%s", what, text, r->out);
}

/* ---- lc enqueue ----------------------------------------------------------------------- */

Test(cli_queue, enqueue_exit_codes)
{
    h_broker(NULL);
    h_echo_with("echo", NULL);
    run_t r = s_lc("ok", "enqueue", "echo.record", "n=1", NULL);
    s_expect(&r, 0, NULL, "lc enqueue echo.record n=1");
    lc_client_t *c = h_client();
    json_t *e = h_wait_recorded(c, "echo", 1, 5000);
    cr_assert_eq(json_array_size(e), 1, "%s", h_dump(e));
    json_t *x = json_array_get(e, 0);
    cr_assert_str_eq(json_string_value(json_object_get(x, "kind")), "task");
    cr_assert_str_eq(json_string_value(json_object_get(x, "name")), "record");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(x, "args"), "n")), 1, "%s",
                 h_dump(x));
    cr_assert_eq(json_integer_value(json_object_get(x, "priority")), LC_PRIORITY_NORMAL);
    json_decref(e);

    r = s_lc("prio", "enqueue", "echo.record", "n=2", "--priority", "lowest", NULL);
    s_expect(&r, 0, NULL, "lc enqueue --priority lowest");
    e = h_wait_recorded(c, "echo", 2, 5000);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(e, 1), "priority")),
                 LC_PRIORITY_LOWEST, "%s", h_dump(e));
    json_decref(e);

    r = s_lc("nomodule", "enqueue", "nobody.x", NULL);
    s_expect(&r, 3, "nobody", "lc enqueue nobody.x");
    r = s_lc("nomethod", "enqueue", "echo.nope", NULL);
    s_expect(&r, 3, "nope", "lc enqueue echo.nope");
    r = s_lc("nodot", "enqueue", "echo", NULL);
    s_expect(&r, 2, NULL, "lc enqueue without a dot");
    r = s_lc("badprio", "enqueue", "echo.record", "--priority", "urgent", NULL);
    s_expect(&r, 2, "--priority", "lc enqueue --priority urgent");
    r = s_lc("badprio0", "enqueue", "echo.record", "--priority", "0", NULL);
    s_expect(&r, 2, "--priority", "lc enqueue --priority 0");
    /* None of the refused ones ran. */
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "echo.echo", NULL, &res, 5000), 0);
    json_decref(res);
    e = h_recorded(c, "echo");
    cr_assert_eq(json_array_size(e), 2, "%s", h_dump(e));
    json_decref(e);
    lc_client_destroy(&c);
}

Test(cli_queue, enqueue_queue_full_exits_6)
{
    h_broker("--max-queue", "1", NULL);
    h_echo_with("echo", "--window", "1", NULL);
    run_t r = s_lc("hold", "enqueue", "echo.hold", NULL);
    s_expect(&r, 0, NULL, "lc enqueue echo.hold");
    lc_client_t *c = h_client();
    json_t *e = h_wait_recorded(c, "echo", 1, 5000); /* the hold runs: not queued */
    json_decref(e);
    r = s_lc("first", "enqueue", "echo.record", NULL);
    s_expect(&r, 0, NULL, "the first queued task");
    r = s_lc("full", "enqueue", "echo.record", NULL);
    s_expect(&r, 6, "full", "lc enqueue into a full queue");
    r = s_lc("fullemit", "emit", "some_event", NULL);
    s_expect(&r, 6, "full", "lc emit into a full queue");
    lc_client_destroy(&c);
}

/* ---- lc emit -------------------------------------------------------------------------- */

Test(cli_queue, emit_exit_codes)
{
    h_broker(NULL);
    run_t r = s_lc("ok", "emit", "some_event", "a=1", NULL);
    s_expect(&r, 0, NULL, "lc emit some_event");
    r = s_lc("reserved", "emit", "becoming_idle", NULL);
    s_expect(&r, 6, "becoming_idle", "lc emit becoming_idle");
    r = s_lc("reserved2", "emit", "module_lost", NULL);
    s_expect(&r, 6, NULL, "lc emit module_lost");
    r = s_lc("badname", "emit", "Bad-Name", NULL);
    s_expect(&r, 6, "Bad-Name", "lc emit Bad-Name");
    r = s_lc("noname", "emit", NULL);
    s_expect(&r, 2, NULL, "lc emit without a name");
    r = s_lc("badprio", "emit", "some_event", "--priority", "9", NULL);
    s_expect(&r, 2, "--priority", "lc emit --priority 9");
    r = s_lc("badargs", "emit", "some_event", "novalue", NULL);
    s_expect(&r, 2, "novalue", "lc emit with a bad key=value");
}

Test(cli_queue, emit_names_subscribers_that_lost_it)
{
    h_broker("--max-backlog", "1", NULL);
    h_echo_with("slow", "--window", "1", "--listen", "tick", NULL);
    lc_client_t *c = h_client();
    json_t *info = NULL;
    int rc = lc_enqueue_wait(c, "slow.hold", NULL, 0, 5000, &info);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    json_decref(info);
    json_t *e = h_wait_recorded(c, "slow", 1, 5000);
    json_decref(e);
    run_t r = s_lc("first", "emit", "tick", NULL); /* fills slow's backlog of 1 */
    s_expect(&r, 0, NULL, "lc emit tick");
    r = s_lc("lost", "emit", "tick", NULL);
    s_expect(&r, 0, "lost", "lc emit tick, with a full subscriber");
    cr_assert_eq(h_module_int(c, "slow", "dropped"), 1);
    lc_client_destroy(&c);
}

/* ---- lc listen ------------------------------------------------------------------------ */

/* Waits until the broker lists an anonymous module subscribed to `pattern`. */
static void s_wait_listener(lc_client_t *c, const char *pattern, proc_t *p)
{
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *res = NULL;
        int rc = lc_call(c, "broker.list", NULL, &res, 5000);
        cr_assert_eq(rc, 0, "broker.list: %s", lc_strerror(rc));
        bool found = false;
        size_t i, k;
        json_t *m, *ev;
        json_array_foreach(json_object_get(res, "modules"), i, m)
        {
            if (!json_is_true(json_object_get(m, "anonymous")))
                continue;
            json_array_foreach(json_object_get(m, "events"), k, ev)
            {
                if (json_is_string(ev) && strcmp(json_string_value(ev), pattern) == 0)
                    found = true;
            }
        }
        json_decref(res);
        if (found)
            return;
        cr_assert_eq(h_wait_exit(p, 0), -1, "lc listen exited\n%s", h_log(p));
        cr_assert_lt(lc_mono_ms(), deadline, "no listener for %s is listed\n%s", pattern, h_log(p));
    }
}

/* The JSON lines of a process log (a new array). */
static json_t *s_json_lines(proc_t *p)
{
    json_t *lines = json_array();
    char *text = strdup(h_log(p));
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] != '{')
            continue;
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        cr_assert(o, "not JSON (%s): %s", err.text, line);
        json_array_append_new(lines, o);
    }
    free(text);
    return lines;
}

Test(cli_queue, listen_prints_json_lines_and_stops_after_count)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    proc_t *l =
        h_spawn("listen", LC, "--bus", h_bus, "listen", "door_*", "--count", "2", "--json", NULL);
    s_wait_listener(c, "door_*", l);
    run_t r = s_lc("e0", "emit", "window_open", "x=0", NULL); /* not matched */
    s_expect(&r, 0, NULL, "lc emit window_open");
    r = s_lc("e1", "emit", "door_open", "side=front", "n=1", "--priority", "high", NULL);
    s_expect(&r, 0, NULL, "lc emit door_open --priority high");
    r = s_lc("e2", "emit", "door_close", "{\"side\": \"back\", \"n\": 2}", NULL);
    s_expect(&r, 0, NULL, "lc emit door_close");
    int st = h_wait_exit(l, 10000);
    cr_assert_neq(st, -1, "lc listen --count 2 did not stop\n%s", h_log(l));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lc listen status %d\n%s", st, h_log(l));

    json_t *lines = s_json_lines(l);
    cr_assert_eq(json_array_size(lines), 2, "%s\n%s", h_dump(lines), h_log(l));
    static const char *const names[] = {"door_open", "door_close"};
    static const char *const sides[] = {"front", "back"};
    static const int prios[] = {LC_PRIORITY_HIGH, LC_PRIORITY_NORMAL};
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_array_get(lines, i);
        cr_assert_str_eq(json_string_value(json_object_get(o, "event")), names[i], "%s", h_dump(o));
        const char *source = json_string_value(json_object_get(o, "source"));
        cr_assert(source && strncmp(source, "_anon", 5) == 0, "source: %s", h_dump(o));
        cr_assert(json_is_integer(json_object_get(o, "tx")), "%s", h_dump(o));
        cr_assert_gt(json_integer_value(json_object_get(o, "tx")), 0, "%s", h_dump(o));
        cr_assert(json_is_integer(json_object_get(o, "id")), "%s", h_dump(o));
        cr_assert_eq(json_integer_value(json_object_get(o, "priority")), prios[i], "%s", h_dump(o));
        json_t *args = json_object_get(o, "args");
        cr_assert_str_eq(json_string_value(json_object_get(args, "side")), sides[i], "%s",
                         h_dump(o));
        cr_assert_eq(json_integer_value(json_object_get(args, "n")), (json_int_t)i + 1, "%s",
                     h_dump(o));
    }
    cr_assert_neq(json_integer_value(json_object_get(json_array_get(lines, 0), "tx")),
                  json_integer_value(json_object_get(json_array_get(lines, 1), "tx")),
                  "two separate emits share a transaction");
    json_decref(lines);
    lc_client_destroy(&c);
}

Test(cli_queue, listen_several_patterns_plain_text_until_sigterm)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    proc_t *l = h_spawn("listen", LC, "--bus", h_bus, "listen", "alarm", "gpio_*", NULL);
    s_wait_listener(c, "gpio_*", l);
    json_t *info = NULL;
    int rc = lc_emit_wait(c, "alarm", json_pack("{s:s}", "zone", "north"), 0, 5000, &info);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(info, "subscribers")), 1, "%s", h_dump(info));
    json_decref(info);
    rc = lc_emit_wait(c, "gpio_17", json_pack("{s:i}", "level", 1), LC_PRIORITY_LOW, 5000, &info);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    json_decref(info);
    /* Both handled (the broker counts them done) before it is stopped. */
    json_t *res = NULL;
    int64_t deadline = lc_mono_ms() + 5000;
    for (;;) {
        cr_assert_eq(lc_call(c, "broker.stats", NULL, &res, 5000), 0);
        json_int_t done = json_integer_value(json_object_get(res, "done"));
        json_decref(res);
        if (done >= 2)
            break;
        cr_assert_lt(lc_mono_ms(), deadline, "the listener did not finish 2 events");
    }
    int st = h_stop(l, SIGTERM, 5000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lc listen status %d\n%s", st, h_log(l));
    const char *out = h_log(l);
    cr_assert(strstr(out, "alarm from _anon"), "%s", out);
    cr_assert(strstr(out, "\"zone\":\"north\""), "%s", out);
    cr_assert(strstr(out, "gpio_17 from _anon"), "%s", out);
    cr_assert(strstr(out, "priority 4"), "%s", out);
    lc_client_destroy(&c);
}

Test(cli_queue, listen_usage_errors)
{
    h_broker(NULL);
    run_t r = s_lc("nopattern", "listen", NULL);
    s_expect(&r, 2, NULL, "lc listen without a pattern");
    r = s_lc("badpattern", "listen", "Door-*", NULL);
    s_expect(&r, 2, "Door-*", "lc listen with a bad pattern");
    r = s_lc("badcount", "listen", "x", "--count", "0", NULL);
    s_expect(&r, 2, "--count", "lc listen --count 0");
}
