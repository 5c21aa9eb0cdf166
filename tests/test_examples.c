/* The examples: lc-simple (the seed's simple example, with and without the modules it talks
 * to) and lc-controller (against a stand-in GPIO module that records its tasks), and the
 * demo chain end to end with the real lc-gpio on its simulated chip. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(examples, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------------------------ */

static void s_write_system(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Stand-in modules in this process: each records what it handles into one shared log. */
typedef struct {
    json_t *log; /* [{module, method, kind, tx, source, args}] */
    int n;
    int position; /* add_log_entry's answer */
} fake_t;

static void s_fake_record(lc_request_t *req, json_t *args, void *arg)
{
    fake_t *f = arg;
    const char *method = lc_request_method(req);
    json_array_append_new(
        f->log, json_pack("{s:s, s:s, s:i, s:I, s:s, s:O}", "module",
                          lc_client_name(lc_request_client(req)), "method", method, "kind",
                          lc_request_kind(req), "tx", (json_int_t)lc_request_tx(req), "source",
                          lc_request_source(req), "args", args));
    __atomic_add_fetch(&f->n, 1, __ATOMIC_RELEASE);
    if (strcmp(method, "add_log_entry") == 0 && lc_request_kind(req) == LC_KIND_CALL)
        lc_reply(req, json_integer(f->position++));
}

/* A named module without a lifecycle (active at once) offering `methods` (NULL-terminated)
 * and subscribed to `event` when not NULL. */
static lc_client_t *s_fake(const char *name, fake_t *f, const char *event, ...)
{
    lc_client_t *c = lc_client_new(name, h_bus);
    cr_assert(c, "lc_client_new(%s)", name);
    lc_client_set_lifecycle(c, false);
    va_list ap;
    va_start(ap, event);
    const char *m;
    while ((m = va_arg(ap, const char *)))
        cr_assert_eq(lc_method(c, m, s_fake_record, f), 0, "%s.%s", name, m);
    va_end(ap);
    if (event)
        cr_assert_eq(lc_on(c, event, s_fake_record, f), 0);
    int rc = lc_connect(c, 10000);
    cr_assert_eq(rc, 0, "%s: %s", name, lc_strerror(rc));
    return c;
}

/* Runs the loops of n in-process clients until f->n reaches want. */
static void s_serve(lc_client_t **cs, int n, fake_t *f, int want, int timeout_ms,
                    const char *what)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    while (__atomic_load_n(&f->n, __ATOMIC_ACQUIRE) < want) {
        int64_t left = deadline - lc_mono_ms();
        if (left <= 0) {
            cr_log_error("recorded: %s", h_dump(f->log));
            cr_assert_fail("%s: %d of %d within %d ms", what, f->n, want, timeout_ms);
        }
        struct pollfd p[4];
        int t = (int)left;
        for (int i = 0; i < n; i++) {
            p[i] = (struct pollfd){.fd = lc_fd(cs[i]), .events = POLLIN};
            int ct = lc_timeout(cs[i]);
            if (ct >= 0 && ct < t)
                t = ct;
        }
        poll(p, (nfds_t)n, t);
        for (int i = 0; i < n; i++)
            cr_assert_geq(lc_dispatch(cs[i]), 0);
    }
}

static json_t *s_entry(fake_t *f, int i)
{
    json_t *e = json_array_get(f->log, (size_t)i);
    cr_assert(e, "no entry %d in %s", i, h_dump(f->log));
    return e;
}

/* Waits until module `name` is listed active. */
static void s_wait_active(lc_client_t *c, const char *name)
{
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *m = h_module(c, name);
        const char *st = m ? json_string_value(json_object_get(m, "state")) : NULL;
        bool active = st && strcmp(st, "active") == 0;
        json_decref(m);
        if (active)
            return;
        cr_assert_lt(lc_mono_ms(), deadline, "%s did not become active", name);
    }
}

/* ---- lc-simple ------------------------------------------------------------------------------ */

static const char s_simple_sys[] = "modules:\n"
                                   "  simple:\n"
                                   "    program: lc-simple\n"
                                   "    config:\n"
                                   "      greeting: Servus\n"
                                   "      subject: Welt\n"
                                   "      count: 5\n";

/* Without web and prometheus on the bus: each of their steps logs why it failed, and the
 * example goes on to the end. Its settings come from the system file; the second pair of
 * tasks shares run's transaction, the first pair does not. */
Test(examples, simple_goes_on_without_web_and_prometheus)
{
    h_broker(NULL);
    h_echo_with("rec", "--listen", "my_simple_example_event", NULL);
    char sys[400];
    snprintf(sys, sizeof sys, "%s/system.yaml", h_dir);
    s_write_system(sys, s_simple_sys);
    proc_t *p = h_spawn("simple", BIN("lc-simple"), "--bus", h_bus, "--config", sys, NULL);
    lc_client_t *c = h_client();
    json_t *got = h_wait_recorded(c, "rec", 1, 10000);
    json_t *ev = json_array_get(got, 0);
    cr_assert_str_eq(h_str(ev, "source"), "simple");
    cr_assert_str_eq(h_str(json_object_get(ev, "args"), "param"),
                     "simple: my_simple_example_event was triggered", "%s", h_dump(ev));
    json_int_t tx = h_int(ev, "tx");
    json_decref(got);

    char *log = h_wait_log(p, "myfunc_async: param=Welt, finished", 2, 10000);
    cr_assert_eq(h_count(log, "web.add_log_entry failed: unknown module"), 1, "%s", log);
    cr_assert_eq(h_count(log, "web.add_log_entry was refused: unknown module"), 1, "%s", log);
    cr_assert_eq(h_count(log, "prometheus.set_gauge_value failed: unknown module"), 3, "%s",
                 log);
    cr_assert(strstr(log, "the example goes on"), "%s", log);
    cr_assert(strstr(log, "run: done"), "%s", log);
    cr_assert_eq(h_count(log, "myfunc: param=Servus (tx "), 2, "%s", log);
    char shared[64];
    snprintf(shared, sizeof shared, "myfunc: param=Servus (tx %lld,", (long long)tx);
    cr_assert_eq(h_count(log, shared), 1, "one myfunc in run's transaction %lld:\n%s",
                 (long long)tx, log);
    snprintf(shared, sizeof shared, "myfunc_async: param=Welt (tx %lld)", (long long)tx);
    cr_assert_eq(h_count(log, shared), 1, "one myfunc_async in run's transaction:\n%s", log);
    free(log);

    /* Its methods, called: the argument names are the seed's. */
    json_t *res = NULL;
    int rc = lc_call(c, "simple.myfunc", json_pack("{s:s}", "param", "hi"), &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_str_eq(h_str(res, "param"), "hi");
    json_decref(res);
    rc = lc_call(c, "simple.myfunc_async", json_pack("{s:s}", "param", "later"), &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_str_eq(h_str(res, "param"), "later");
    json_decref(res);
    rc = lc_call(c, "simple.myfunc", json_pack("{s:i}", "param", 3), &res, 5000);
    cr_assert_neq(rc, 0, "param must be text");
    json_decref(res);

    int st = h_stop(p, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, h_log(p));
    lc_client_destroy(&c);
}

/* With stand-ins for web and prometheus: the seed's calls, tasks and event, by its names. */
Test(examples, simple_talks_to_web_and_prometheus)
{
    h_broker(NULL);
    fake_t f = {.log = json_array()};
    lc_client_t *fakes[2] = {
        s_fake("web", &f, "my_simple_example_event", "add_log_entry", NULL),
        s_fake("prometheus", &f, NULL, "set_gauge_value", NULL),
    };
    char sys[400];
    snprintf(sys, sizeof sys, "%s/system.yaml", h_dir);
    s_write_system(sys, s_simple_sys);
    proc_t *p = h_spawn("simple", BIN("lc-simple"), "--bus", h_bus, "--config", sys, NULL);
    s_serve(fakes, 2, &f, 6, 10000, "web and prometheus hear from simple");

    /* Each stand-in sees run's requests in the order run sent them (the task and the event
     * go through the queue, the call does not, so only the order per module is fixed). */
    json_t *web = json_array(), *prom = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(f.log, i, e)
    {
        json_array_append(strcmp(h_str(e, "module"), "web") == 0 ? web : prom, e);
    }
    cr_assert_eq(json_array_size(web), 3, "%s", h_dump(f.log));
    cr_assert_eq(json_array_size(prom), 3, "%s", h_dump(f.log));
    json_t *call = json_array_get(web, 0);
    cr_assert_str_eq(h_str(call, "method"), "add_log_entry", "%s", h_dump(f.log));
    cr_assert_eq(h_int(call, "kind"), LC_KIND_CALL);
    cr_assert_str_eq(h_str(json_object_get(call, "args"), "text"),
                     "simple: this line was added synchronously");
    json_int_t tx = h_int(call, "tx");
    json_t *task = json_array_get(web, 1);
    cr_assert_str_eq(h_str(task, "method"), "add_log_entry", "%s", h_dump(f.log));
    cr_assert_eq(h_int(task, "kind"), LC_KIND_TASK, "%s", h_dump(f.log));
    cr_assert_str_eq(h_str(json_object_get(task, "args"), "text"),
                     "simple: this line was added asynchronously");
    json_t *ev = json_array_get(web, 2);
    cr_assert_eq(h_int(ev, "kind"), LC_KIND_EVENT, "%s", h_dump(f.log));
    cr_assert_str_eq(h_str(ev, "method"), "my_simple_example_event");
    cr_assert_str_eq(h_str(json_object_get(ev, "args"), "param"),
                     "simple: my_simple_example_event was triggered");
    static const char *const gauges[] = {
        "{\"metric\":\"example_metric\",\"documentation\":\"an example gauge of lc-simple\"}",
        "{\"metric\":\"example_metric\",\"value\":5}",
        "{\"metric\":\"example_metric_with_label\",\"value\":5,\"label_instance\":\"1\","
        "\"documentation\":\"an example gauge with a label\"}",
    };
    for (int k = 0; k < 3; k++) {
        json_t *g = json_array_get(prom, (size_t)k);
        cr_assert_str_eq(h_str(g, "method"), "set_gauge_value");
        cr_assert_eq(h_int(g, "kind"), LC_KIND_CALL);
        json_t *want = json_loads(gauges[k], 0, NULL);
        cr_assert(json_equal(json_object_get(g, "args"), want), "gauge %d: %s", k, h_dump(g));
        json_decref(want);
    }
    /* All of it is run's one transaction, sent by simple. */
    json_array_foreach(f.log, i, e)
    {
        cr_assert_eq(h_int(e, "tx"), tx, "one transaction: %s", h_dump(f.log));
        cr_assert_str_eq(h_str(e, "source"), "simple");
    }
    json_decref(web);
    json_decref(prom);

    char *log = h_wait_log(p, "web.add_log_entry: the line is at position 0", 1, 10000);
    cr_assert_eq(h_count(log, "ERROR"), 0, "%s", log);
    free(log);
    h_stop(p, SIGTERM, 10000);
    lc_client_destroy(&fakes[0]);
    lc_client_destroy(&fakes[1]);
    json_decref(f.log);
}

/* ---- lc-controller -------------------------------------------------------------------------- */

Test(examples, controller_drives_the_outputs)
{
    h_broker(NULL);
    h_echo_with("rec", "--listen", "webpage_trigger", "--listen", "pushed_short", NULL);
    fake_t f = {.log = json_array()};
    lc_client_t *gpio = s_fake("gpio", &f, NULL, "set_output_state", "toggle_output_state",
                               NULL);
    proc_t *p = h_spawn("controller", BIN("lc-controller"), "--bus", h_bus, NULL);
    lc_client_t *c = h_client();
    s_wait_active(c, "controller");

    /* webpage_trigger: the seed's modify_output_states, in order, in one new transaction. */
    cr_assert_eq(lc_emit_wait(c, "webpage_trigger", NULL, 0, 5000, NULL), 0);
    s_serve(&gpio, 1, &f, 9, 10000, "the output changes");
    static const char *const want[] = {
        "set_output_state {\"line\":4,\"state_new\":\"on\"}",
        "set_output_state {\"line\":17,\"state_new\":\"off\"}",
        "set_output_state {\"line\":17,\"state_new\":\"on\"}",
        "set_output_state {\"line\":17,\"state_new\":\"blink_veryslow\"}",
        "set_output_state {\"line\":17,\"state_new\":\"blink_slow\"}",
        "set_output_state {\"line\":17,\"state_new\":\"blink\"}",
        "set_output_state {\"line\":17,\"state_new\":\"blink_fast\"}",
        "set_output_state {\"line\":17,\"state_new\":\"off\"}",
        "toggle_output_state {\"line\":27}",
    };
    json_int_t tx = h_int(s_entry(&f, 0), "tx");
    for (int i = 0; i < 9; i++) {
        json_t *e = s_entry(&f, i);
        char got[200];
        char *args = json_dumps(json_object_get(e, "args"), JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(got, sizeof got, "%s %s", h_str(e, "method"), args);
        free(args);
        cr_assert_str_eq(got, want[i], "task %d", i);
        cr_assert_eq(h_int(e, "kind"), LC_KIND_TASK);
        cr_assert_str_eq(h_str(e, "source"), "controller");
        cr_assert_eq(h_int(e, "tx"), tx, "one transaction: %s", h_dump(f.log));
    }
    json_t *trig = h_wait_recorded(c, "rec", 1, 5000);
    cr_assert_neq(h_int(json_array_get(trig, 0), "tx"), tx, "a new transaction, not the "
                  "trigger's: %s", h_dump(trig));
    json_decref(trig);

    /* pushed_short on line 22 toggles line 27 in the click's transaction; other clicks and
     * lines change nothing. */
    static const char *const clicks[][2] = {
        {"pushed_long", "22"}, {"doubleclick", "22"}, {"pushed_short", "23"},
        {"pushed_short", "22"}};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(lc_emit_wait(c, clicks[i][0],
                                  json_pack("{s:i, s:s, s:i}", "line", atoi(clicks[i][1]),
                                            "line_name", "Input22_ForTestingPurposes",
                                            "line_seq", i),
                                  0, 5000, NULL),
                     0);
    s_serve(&gpio, 1, &f, 10, 10000, "the toggle");
    json_t *toggle = s_entry(&f, 9);
    cr_assert_str_eq(h_str(toggle, "method"), "toggle_output_state");
    cr_assert_eq(h_arg(toggle, "line"), 27);
    json_t *rec = h_wait_recorded(c, "rec", 3, 5000);
    json_t *short22 = json_array_get(rec, 2);
    cr_assert_eq(h_arg(short22, "line"), 22, "%s", h_dump(rec));
    cr_assert_eq(h_int(toggle, "tx"), h_int(short22, "tx"), "the click's transaction");
    json_decref(rec);

    /* Every input event is logged. */
    cr_assert_eq(lc_emit_wait(c, "changed_gpio_input",
                              json_pack("{s:i, s:s, s:i, s:b, s:I}", "line", 22, "line_name",
                                        "Input22_ForTestingPurposes", "line_seq", 3,
                                        "rising_edge", 0, "timestamp_ns", (json_int_t)1),
                              0, 5000, NULL),
                 0);
    char *log = h_wait_log(p, "input line 22 (Input22_ForTestingPurposes) seq 3: falling edge",
                           1, 10000);
    cr_assert(strstr(log, "pushed_long on line 22"), "%s", log);
    cr_assert(strstr(log, "doubleclick on line 22"), "%s", log);
    free(log);
    cr_assert_eq(f.n, 10, "nothing more: %s", h_dump(f.log));

    int st = h_stop(p, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, h_log(p));
    lc_client_destroy(&gpio);
    lc_client_destroy(&c);
    json_decref(f.log);
}

/* Without a GPIO module the controller says which task was refused and what to check. */
Test(examples, controller_without_gpio_says_so)
{
    h_broker(NULL);
    proc_t *p = h_spawn("controller", BIN("lc-controller"), "--bus", h_bus, NULL);
    lc_client_t *c = h_client();
    s_wait_active(c, "controller");
    cr_assert_eq(lc_emit_wait(c, "pushed_short", json_pack("{s:i}", "line", 22), 0, 5000, NULL),
                 0);
    char *log = h_wait_log(p, "task gpio.toggle_output_state refused", 1, 10000);
    cr_assert(strstr(log, "is the module 'gpio' running?"), "%s", log);
    free(log);
    lc_client_destroy(&c);
}

Test(examples, help)
{
    static const char *const progs[] = {BIN("lc-controller"), BIN("lc-simple")};
    for (int i = 0; i < 2; i++) {
        proc_t *p = h_spawn("help", progs[i], "--help", NULL);
        int st = h_wait_exit(p, 10000);
        cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_log(p));
        cr_assert(strstr(h_log(p), "Usage: "), "%s", h_log(p));
        p = h_spawn("bad", progs[i], "extra", NULL);
        st = h_wait_exit(p, 10000);
        cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s", h_log(p));
    }
}

/* ---- The demo chain, end to end ------------------------------------------------------------ */

static const char s_chain_sys[] =
    "modules:\n"
    "  gpio:\n"
    "    program: lc-gpio\n"
    "    config:\n"
    "      backend: sim\n"
    "      inputs:\n"
    "        22: {name: Input22_ForTestingPurposes, bias: pull-up, edges: both, debounce_ms: 10}\n"
    "      outputs:\n"
    "        4: {name: Output4_NothingSpecial}\n"
    "        17: {name: Output17_ForBlinking}\n"
    "        27: {name: Output27_NothingSpecial}\n"
    "  clickhandler:\n"
    "    program: lc-clickhandler\n"
    "    config:\n"
    "      inversed_logic: [22]\n"
    "      long_ms: 600000\n" /* a slow machine must not turn the click into a long push */
    "  controller:\n"
    "    program: lc-controller\n";

/* The entries of `rec` named `name`, once there are n of them (a new reference). */
static json_t *s_wait_named(lc_client_t *c, const char *name, size_t n)
{
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *all = h_recorded(c, "rec"), *named = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(all, i, e)
        {
            if (strcmp(h_str(e, "name"), name) == 0)
                json_array_append(named, e);
        }
        if (json_array_size(named) >= n) {
            json_decref(all);
            return named;
        }
        cr_assert_lt(lc_mono_ms(), deadline, "%zu %s, not %zu: %s", json_array_size(named), name,
                     n, h_dump(all));
        json_decref(all);
        json_decref(named);
    }
}

/* The simulated chip's output log once line `line` has changed to `value` there. */
static json_t *s_wait_output(lc_client_t *c, int line, int value)
{
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *log = NULL;
        int rc = lc_call(c, "gpio.sim_output_log", NULL, &log, 5000);
        cr_assert_eq(rc, 0, "gpio.sim_output_log: %s", lc_strerror(rc));
        size_t i;
        json_t *e;
        json_array_foreach(log, i, e)
        {
            if (h_int(e, "line") == line && h_int(e, "value") == value)
                return log;
        }
        cr_assert_lt(lc_mono_ms(), deadline, "line %d never became %d: %s", line, value,
                     h_dump(log));
        json_decref(log);
    }
}

/* Starts lc-spy --json on the bus and waits until it shows what is routed (an event sent
 * for the purpose appears in its output). */
static proc_t *s_spy(lc_client_t *c)
{
    proc_t *spy = h_spawn("spy", BIN("lc-spy"), "--bus", h_bus, "--json", "--kind", "task,event",
                          NULL);
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        cr_assert_eq(lc_emit_wait(c, "spy_probe", NULL, 0, 5000, NULL), 0);
        int64_t until = lc_mono_ms() + 200;
        while (lc_mono_ms() < until) {
            char *text = h_slurp(spy->log);
            bool seen = strstr(text, "\"target\":\"spy_probe\"") != NULL;
            free(text);
            if (seen)
                return spy;
            poll(NULL, 0, 5);
        }
        cr_assert_lt(lc_mono_ms(), deadline, "lc-spy shows nothing:\n%s", h_log(spy));
    }
}

/* The first record of lc-spy's JSON output whose target is `target` (a new reference). */
static json_t *s_wait_spied(proc_t *spy, const char *target)
{
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        char *text = h_slurp(spy->log);
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            json_t *rec = json_loads(line, 0, NULL);
            const char *t = json_string_value(json_object_get(rec, "target"));
            if (t && strcmp(t, target) == 0) {
                free(text);
                return rec;
            }
            json_decref(rec);
        }
        free(text);
        cr_assert_lt(lc_mono_ms(), deadline, "lc-spy never showed %s:\n%s", target,
                     h_log(spy));
        poll(NULL, 0, 5);
    }
}

/* A press and release of the simulated button: gpio's edges -> clickhandler's pushed_short
 * -> controller's task -> line 27 on in the simulated chip's log, all one transaction. */
Test(examples, button_to_lamp_end_to_end)
{
    h_broker(NULL);
    h_echo_with("rec", "--listen", "changed_gpio_input", "--listen", "pushed_short", NULL);
    char sys[400];
    snprintf(sys, sizeof sys, "%s/system.yaml", h_dir);
    s_write_system(sys, s_chain_sys);
    proc_t *procs[3];
    static const char *const names[] = {"gpio", "clickhandler", "controller"};
    for (int i = 0; i < 3; i++) {
        char prog[300];
        snprintf(prog, sizeof prog, "%s/bin/lc-%s", LC_BUILD_DIR, names[i]);
        procs[i] = h_spawn(names[i], prog, "--bus", h_bus, "--config", sys, NULL);
    }
    lc_client_t *c = h_client();
    for (int i = 0; i < 3; i++)
        s_wait_active(c, names[i]);
    proc_t *spy = s_spy(c);
    json_t *before = s_wait_output(c, 27, 0);
    json_decref(before);

    /* Pressed: the pin goes low. The release waits for the press's event, since a change
     * back within the debounce time would be a bounce. */
    cr_assert_eq(lc_call(c, "gpio.sim_set_input", json_pack("{s:i, s:i}", "line", 22, "value", 0),
                         NULL, 5000),
                 0);
    json_decref(s_wait_named(c, "changed_gpio_input", 1));
    cr_assert_eq(lc_call(c, "gpio.sim_set_input", json_pack("{s:i, s:i}", "line", 22, "value", 1),
                         NULL, 5000),
                 0);
    json_t *clicks = s_wait_named(c, "pushed_short", 1);
    json_t *edges = s_wait_named(c, "changed_gpio_input", 2);
    json_t *log = s_wait_output(c, 27, 1);

    json_t *press = json_array_get(edges, 0), *release = json_array_get(edges, 1);
    json_t *click = json_array_get(clicks, 0);
    cr_assert_str_eq(h_str(press, "source"), "gpio");
    cr_assert(json_is_false(json_object_get(json_object_get(press, "args"), "rising_edge")),
              "pull-up: a press is a falling edge: %s", h_dump(press));
    cr_assert_str_eq(h_str(json_object_get(release, "args"), "line_name"),
                     "Input22_ForTestingPurposes");
    cr_assert_str_eq(h_str(click, "source"), "clickhandler");
    cr_assert_eq(h_arg(click, "line"), 22);
    cr_assert_eq(h_arg(click, "line_seq"), h_arg(release, "line_seq"));
    json_int_t tx = h_int(release, "tx");
    cr_assert_eq(h_int(click, "tx"), tx, "the click continues the release's transaction");
    /* The controller's task to gpio continues it too: the broker's monitor (lc-spy) shows
     * every routed message with its transaction. */
    json_t *task = s_wait_spied(spy, "gpio.toggle_output_state");
    cr_assert_str_eq(h_str(task, "source"), "controller", "%s", h_dump(task));
    cr_assert_eq(h_int(json_object_get(task, "payload"), "line"), 27, "%s", h_dump(task));
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)tx);
    cr_assert_str_eq(h_str(task, "tx"), want, "one transaction from the edge to the output: %s",
                     h_dump(task));
    json_decref(task);
    /* Line 27 went on after the release. */
    size_t i;
    json_t *e;
    json_int_t on_ns = 0;
    json_array_foreach(log, i, e)
    {
        if (h_int(e, "line") == 27 && h_int(e, "value") == 1)
            on_ns = h_int(e, "timestamp_ns");
    }
    cr_assert_geq(on_ns, h_arg(release, "timestamp_ns"), "%s", h_dump(log));
    json_decref(log);
    json_decref(clicks);
    json_decref(edges);

    for (int k = 2; k >= 0; k--) {
        int st = h_stop(procs[k], SIGTERM, 10000);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status 0x%x\n%s", names[k], st,
                  h_log(procs[k]));
    }
    lc_client_destroy(&c);
}

/* The demo system as `make run` starts it: a button press shows in the log as edges, a click
 * and the output change, and SIGTERM stops it all cleanly. */
Test(examples, demo_system_runs_and_stops)
{
    setenv("LC_BUS", h_bus, 1);
    setenv("LC_DEMO_DIR", h_dir, 1);
    setenv("LC_WEB_PORT", "0", 1); /* any free ports: 8080 and 9090 may be taken */
    setenv("LC_PROMETHEUS_PORT", "0", 1);
    proc_t *p = h_spawn("launch", BIN("lc-launch"), LC_SOURCE_DIR "/config/demo.yaml", NULL);
    lc_client_t *c = h_client();
    static const char *const names[] = {"echo",       "listener", "gpio",       "clickhandler",
                                        "controller", "web",      "prometheus", "simple"};
    for (int i = 0; i < 8; i++)
        s_wait_active(c, names[i]);
    cr_assert_eq(lc_call(c, "gpio.sim_set_input", json_pack("{s:i, s:i}", "line", 22, "value", 0),
                         NULL, 5000),
                 0);
    free(h_wait_log(p, "controller INFO: input line 22 (Input22_ForTestingPurposes) seq 1: "
                       "falling edge", 1, 10000));
    cr_assert_eq(lc_call(c, "gpio.sim_set_input", json_pack("{s:i, s:i}", "line", 22, "value", 1),
                         NULL, 5000),
                 0);
    char *log = h_wait_log(p, "Output27_NothingSpecial): on", 1, 10000);
    cr_assert(strstr(log, "clickhandler INFO: pushed_short on line 22"), "%s", log);
    cr_assert(strstr(log, "controller INFO: toggling line 27"), "%s", log);
    free(log);
    free(h_wait_log(p, "simple INFO: run: done", 1, 10000));
    lc_client_destroy(&c);
    int st = h_stop(p, SIGTERM, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, h_log(p));
    log = h_slurp(p->log);
    cr_assert(strstr(log, "launcher     | stopped"), "%s", log);
    /* The eight modules and the broker. */
    cr_assert_eq(h_count(log, "ended: exit code 0"), 9, "%s", log);
    free(log);
}
