/* lc-gpio on its simulated chip: methods and their errors, output states and blink
 * rhythms (periods, phase, a change shows at once, everything off at the end), input
 * edges with their payload, sequence numbers, edge filter, active-low and debounce; the
 * real backend's message for a chip that does not exist, and configuration errors. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

TestSuite(gpio, .init = h_setup, .fini = h_teardown, .timeout = 90);

/* ---- Helpers ----------------------------------------------------------------------------- */

static void s_clear_env(void)
{
    unsetenv("LC_MODULE");
    unsetenv("LC_BUS");
    unsetenv("LC_CONFIG");
    unsetenv("LC_LOG_LEVEL");
    unsetenv("LC_STATE_DIR");
}

static uint64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Writes a system file whose module gpio has the given config: section (YAML lines
 * indented by six spaces) and returns its path (static buffer). */
static const char *s_system(const char *config)
{
    static char path[400];
    snprintf(path, sizeof path, "%s/system.yaml", h_dir);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fprintf(f, "modules:\n  gpio:\n    program: lc-gpio\n    config:\n%s", config);
    cr_assert_eq(fclose(f), 0);
    return path;
}

/* Waits until the broker lists lc-gpio (this very process) in state `state`. */
static void s_wait_state(proc_t *p, const char *state)
{
    lc_client_t *c = h_client();
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        cr_assert_eq(h_wait_exit(p, 0), -1, "lc-gpio exited\n%s", h_log(p));
        json_t *m = h_module(c, "gpio");
        const char *st = m ? json_string_value(json_object_get(m, "state")) : NULL;
        bool there =
            st && strcmp(st, state) == 0 && json_integer_value(json_object_get(m, "pid")) == p->pid;
        json_decref(m);
        if (there)
            break;
        cr_assert(lc_mono_ms() < deadline, "lc-gpio is not %s after 10 s\n%s", state, h_log(p));
    }
    lc_client_destroy(&c);
}

static proc_t *s_gpio_start(const char *config)
{
    s_clear_env();
    return h_spawn("gpio", BIN("lc-gpio"), "--bus", h_bus, "--config", s_system(config), NULL);
}

/* Starts lc-gpio on the system file and waits until the broker lists it active. */
static proc_t *s_gpio(const char *config)
{
    proc_t *p = s_gpio_start(config);
    s_wait_state(p, "active");
    return p;
}

/* Calls gpio.<method> and returns its result (a new reference); the call must succeed. */
static json_t *s_call(lc_client_t *c, const char *method, json_t *args)
{
    char target[100];
    snprintf(target, sizeof target, "gpio.%s", method);
    json_t *res = NULL;
    int rc = lc_call(c, target, args, &res, 5000);
    cr_assert_eq(rc, 0, "%s: %s %s", target, lc_strerror(rc), h_dump(res));
    return res;
}

static void s_call_ok(lc_client_t *c, const char *method, json_t *args)
{
    json_decref(s_call(c, method, args));
}

/* Calls gpio.<method>, which must fail with the handler's message `message`. */
static void s_call_fails(lc_client_t *c, const char *method, json_t *args, const char *message)
{
    char target[100];
    snprintf(target, sizeof target, "gpio.%s", method);
    json_t *res = NULL;
    int rc = lc_call(c, target, args, &res, 5000);
    cr_assert_eq(rc, LC_EHANDLER, "%s: %s %s", target, lc_strerror(rc), h_dump(res));
    cr_assert(strstr(h_str(res, "message"), message), "%s answered '%s', not '%s'", target,
              h_str(res, "message"), message);
    json_decref(res);
}

static json_int_t s_state(lc_client_t *c, json_t *line)
{
    json_t *res = s_call(c, "get_output_state", json_pack("{s:O}", "line", line));
    json_decref(line);
    cr_assert(json_is_integer(res), "get_output_state answered %s", h_dump(res));
    json_int_t v = json_integer_value(res);
    json_decref(res);
    return v;
}

/* The simulated chip's transitions of one line: a new array. */
static json_t *s_transitions(json_t *log, int line)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        if (h_int(e, "line") == line)
            json_array_append(out, e);
    }
    return out;
}

/* Waits until line has at least n transitions recorded after from_ns; returns the whole
 * log (a new reference). */
static json_t *s_wait_transitions(lc_client_t *c, int line, uint64_t from_ns, size_t n,
                                  int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *log = s_call(c, "sim_output_log", NULL);
        json_t *mine = s_transitions(log, line);
        size_t have = 0, i;
        json_t *e;
        json_array_foreach(mine, i, e)
        {
            have += (uint64_t)h_int(e, "timestamp_ns") >= from_ns;
        }
        json_decref(mine);
        if (have >= n)
            return log;
        cr_assert(lc_mono_ms() < deadline, "line %d has %zu transitions, not %zu, after %d ms: %s",
                  line, have, n, timeout_ms, h_dump(log));
        json_decref(log);
    }
}

/* The last transition of a line in a log (borrowed from it), or NULL. */
static json_t *s_last(json_t *log, int line)
{
    json_t *last = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        if (h_int(e, "line") == line)
            last = e;
    }
    return last;
}

static const char *s_outputs = "      backend: sim\n"
                               "      chip: simchip\n"
                               "      outputs:\n"
                               "        4:  {name: Output4_NothingSpecial, initial: off}\n"
                               "        17: {name: Output17_ForBlinking}\n"
                               "        27: {name: Output27_NothingSpecial}\n"
                               "      inputs:\n"
                               "        22: {name: Input22_ForTestingPurposes, debounce_ms: 0}\n";

/* ---- Outputs ----------------------------------------------------------------------------- */

Test(gpio, methods_take_a_line_by_offset_or_name_and_states_by_name_or_number)
{
    h_broker(NULL);
    s_gpio(s_outputs);
    lc_client_t *c = h_client();
    cr_assert_eq(s_state(c, json_integer(4)), 0);
    s_call_ok(c, "set_output_state", json_pack("{s:i, s:s}", "line", 4, "state_new", "on"));
    cr_assert_eq(s_state(c, json_string("Output4_NothingSpecial")), 6);
    s_call_ok(c, "set_output_state",
              json_pack("{s:s, s:i}", "line", "Output17_ForBlinking", "state_new", 2));
    cr_assert_eq(s_state(c, json_integer(17)), 2, "state 2 is blink_slow");
    s_call_ok(c, "set_output_state",
              json_pack("{s:i, s:s}", "line", 17, "state_new", "BLINK_FAST"));
    cr_assert_eq(s_state(c, json_integer(17)), 4);
    /* Toggle: off becomes on, anything else off. */
    s_call_ok(c, "toggle_output_state", json_pack("{s:i}", "line", 17));
    cr_assert_eq(s_state(c, json_integer(17)), 0);
    s_call_ok(c, "toggle_output_state", json_pack("{s:s}", "line", "Output17_ForBlinking"));
    cr_assert_eq(s_state(c, json_integer(17)), 6);
    /* The seed's error texts. */
    s_call_fails(c, "set_output_state",
                 json_pack("{s:s, s:s}", "line", "NoSuchLine", "state_new", "on"),
                 "line name unknown");
    s_call_fails(c, "set_output_state", json_pack("{s:i, s:s}", "line", 5, "state_new", "on"),
                 "output line not handled");
    s_call_fails(c, "get_output_state", json_pack("{s:i}", "line", 22), "output line not handled");
    s_call_fails(c, "toggle_output_state", json_pack("{s:s}", "line", "nope"), "line name unknown");
    s_call_fails(c, "set_output_state", json_pack("{s:i, s:s}", "line", 4, "state_new", "dim"),
                 "unknown state 'dim'");
    s_call_fails(c, "set_output_state", json_pack("{s:i, s:i}", "line", 4, "state_new", 7),
                 "unknown state '7'");
    s_call_fails(c, "get_input", json_pack("{s:i}", "line", 4), "input line not handled");
    /* Every line, in the configuration's order: inputs, then outputs. */
    json_t *lines = s_call(c, "get_lines", NULL);
    cr_assert_eq(json_array_size(lines), 4, "%s", h_dump(lines));
    json_t *in22 = json_array_get(lines, 0), *out17 = json_array_get(lines, 2);
    cr_assert_eq(h_int(in22, "line"), 22);
    cr_assert_str_eq(h_str(in22, "direction"), "input");
    cr_assert_eq(h_int(in22, "value"), 1);
    cr_assert_eq(h_int(out17, "line"), 17);
    cr_assert_str_eq(h_str(out17, "line_name"), "Output17_ForBlinking");
    cr_assert_str_eq(h_str(out17, "direction"), "output");
    cr_assert_eq(h_int(out17, "state"), 6);
    cr_assert_str_eq(h_str(out17, "state_name"), "on");
    cr_assert_eq(h_int(out17, "value"), 1);
    json_decref(lines);
    /* An input is pulled up by default: it reads 1. */
    json_t *in = s_call(c, "get_input", json_pack("{s:s}", "line", "Input22_ForTestingPurposes"));
    cr_assert_eq(json_integer_value(in), 1, "get_input answered %s", h_dump(in));
    json_decref(in);
    lc_client_destroy(&c);
}

Test(gpio, a_change_of_state_shows_at_once_and_the_same_state_again_does_nothing)
{
    h_broker(NULL);
    s_gpio(s_outputs);
    lc_client_t *c = h_client();
    uint64_t before = s_now_ns();
    s_call_ok(c, "set_output_state", json_pack("{s:i, s:s}", "line", 4, "state_new", "on"));
    /* Entering a blink state flips the output at once. */
    s_call_ok(c, "set_output_state",
              json_pack("{s:i, s:s}", "line", 17, "state_new", "blink_veryslow"));
    uint64_t after = s_now_ns();
    json_t *log = s_call(c, "sim_output_log", NULL);
    for (int line = 4; line <= 17; line += 13) {
        /* The change itself, while the call ran (line 17's rhythm may toggle right after). */
        bool seen = false;
        size_t i;
        json_t *e;
        json_array_foreach(log, i, e)
        {
            uint64_t ts = (uint64_t)h_int(e, "timestamp_ns");
            seen = seen || (h_int(e, "line") == line && h_int(e, "value") == 1 && ts >= before &&
                            ts <= after);
        }
        cr_assert(seen, "line %d did not change while the call ran (%llu..%llu): %s", line,
                  (unsigned long long)before, (unsigned long long)after, h_dump(log));
    }
    cr_assert_str_eq(h_str(s_last(log, 4), "line_name"), "Output4_NothingSpecial");
    size_t n = json_array_size(log);
    json_decref(log);
    s_call_ok(c, "set_output_state", json_pack("{s:i, s:s}", "line", 4, "state_new", "on"));
    s_call_ok(c, "set_output_state", json_pack("{s:i, s:i}", "line", 17, "state_new", 1));
    log = s_call(c, "sim_output_log", json_pack("{s:b}", "clear", 1));
    /* A toggle of the very slow rhythm may have come meanwhile (every 2 s), nothing else. */
    for (size_t i = n; i < json_array_size(log); i++)
        cr_assert_eq(h_int(json_array_get(log, i), "line"), 17, "%s", h_dump(log));
    cr_assert_leq(json_array_size(log), n + 1, "%s", h_dump(log));
    json_decref(log);
    /* cleared */
    log = s_call(c, "sim_output_log", NULL);
    cr_assert_leq(json_array_size(log), 1, "%s", h_dump(log));
    json_decref(log);
    lc_client_destroy(&c);
}

Test(gpio, the_output_log_keeps_the_newest_transitions)
{
    h_broker(NULL);
    s_gpio("      backend: sim\n"
           "      sim_log_max: 3\n"
           "      outputs: {4: {}, 5: {}}\n");
    lc_client_t *c = h_client();
    /* Two requests at start-up, then four changes: the last three stay, oldest first. */
    for (int i = 0; i < 4; i++)
        s_call_ok(c, "toggle_output_state", json_pack("{s:i}", "line", i < 2 ? 4 : 5));
    json_t *log = s_call(c, "sim_output_log", NULL);
    cr_assert_eq(json_array_size(log), 3, "%s", h_dump(log));
    int want[3][2] = {{4, 0}, {5, 1}, {5, 0}};
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(log, (size_t)i);
        cr_assert_eq(h_int(e, "line"), want[i][0], "%s", h_dump(log));
        cr_assert_eq(h_int(e, "value"), want[i][1], "%s", h_dump(log));
        if (i)
            cr_assert_geq(h_int(e, "timestamp_ns"),
                          h_int(json_array_get(log, (size_t)i - 1), "timestamp_ns"));
    }
    json_decref(log);
    lc_client_destroy(&c);
}

Test(gpio, blink_periods_hold_and_outputs_in_the_same_state_are_in_phase)
{
    h_broker(NULL);
    s_gpio(s_outputs);
    lc_client_t *c = h_client();
    uint64_t start = s_now_ns();
    s_call_ok(c, "set_output_state",
              json_pack("{s:i, s:s}", "line", 17, "state_new", "blink_veryfast"));
    s_call_ok(c, "set_output_state",
              json_pack("{s:s, s:i}", "line", "Output27_NothingSpecial", "state_new", 5));
    s_call_ok(c, "set_output_state", json_pack("{s:i, s:s}", "line", 4, "state_new", "blink_fast"));
    /* The flip at once, then 12 toggles of the rhythm: 11 intervals, more than 5 periods. */
    json_t *log = s_wait_transitions(c, 17, start, 13, 20000);
    json_t *a = s_transitions(log, 17), *b = s_transitions(log, 27);
    size_t first = json_array_size(a) - 13 + 1; /* the first toggle of the rhythm */
    const double half = 400e6;                  /* ns: blink_veryfast is 400 ms on, 400 off */
    /* Each toggle flips the value on the rhythm's grid of half periods, counted from the
     * start: a loaded machine may wake one toggle late, and the next is then on time again
     * (not late for it). So the toggles' offsets from the grid stay within half a period of
     * each other, however late one was woken. */
    double lo = 0, hi = 0;
    int64_t t0 = h_int(json_array_get(a, first), "timestamp_ns");
    for (size_t i = first + 1; i < json_array_size(a); i++) {
        json_t *prev = json_array_get(a, i - 1), *cur = json_array_get(a, i);
        double off = (double)(h_int(cur, "timestamp_ns") - t0) - (double)(i - first) * half;
        lo = off < lo ? off : lo;
        hi = off > hi ? off : hi;
        cr_assert(hi - lo < half, "toggle %zu is %.1f ms off the rhythm of the others: %s", i,
                  (hi - lo) / 1e6, h_dump(a));
        cr_assert_neq(h_int(cur, "value"), h_int(prev, "value"));
    }
    /* No drift: a toggle is never early, only sometimes late, so the earliest offset of the
     * first five toggles and that of the last five agree within 5 % of the five periods
     * between them (a period of 820 ms instead of 800 would show 100 ms there). */
    size_t n = json_array_size(a);
    double early_first = 1e18, early_last = 1e18;
    for (size_t i = first; i < n; i++) {
        double off = (double)(h_int(json_array_get(a, i), "timestamp_ns") - t0) -
                     (double)(i - first) * half;
        if (i < first + 5 && off < early_first)
            early_first = off;
        if (i + 5 >= n && off < early_last)
            early_last = off;
    }
    cr_assert(early_last - early_first < 10 * half * 0.05 &&
                  early_first - early_last < 10 * half * 0.05,
              "the rhythm drifted by %.1f ms over %zu toggles: %s",
              (early_last - early_first) / 1e6, n - first, h_dump(a));
    /* Line 27 took every toggle of the same rhythm, with the same value at the same time. */
    for (size_t i = first; i < json_array_size(a); i++) {
        json_t *ea = json_array_get(a, i);
        bool found = false;
        for (size_t j = 0; j < json_array_size(b) && !found; j++) {
            json_t *eb = json_array_get(b, j);
            json_int_t d = h_int(eb, "timestamp_ns") - h_int(ea, "timestamp_ns");
            found = d > -5000000 && d < 5000000 && h_int(eb, "value") == h_int(ea, "value");
        }
        cr_assert(found, "line 27 has no toggle to %lld beside line 17's at %lld: %s",
                  (long long)h_int(ea, "value"), (long long)h_int(ea, "timestamp_ns"), h_dump(b));
    }
    /* All rhythms count from the same start in phase off: each toggle of blink_fast (800 ms,
     * toggle k at 2k toggles of blink_veryfast, which are off then) meets line 17 going off. */
    json_t *f = s_transitions(log, 4);
    size_t nf = 0;
    for (size_t i = 0; i < json_array_size(f); i++) {
        json_t *ef = json_array_get(f, i);
        if (i < 2)
            continue; /* the request at start-up and the flip at once */
        nf++;
        bool found = false;
        for (size_t j = first; j < json_array_size(a) && !found; j++) {
            json_t *ea = json_array_get(a, j);
            json_int_t d = h_int(ea, "timestamp_ns") - h_int(ef, "timestamp_ns");
            found = d > -5000000 && d < 5000000 && h_int(ea, "value") == 0;
        }
        cr_assert(found, "line 4 (blink_fast) toggled at %lld without line 17 going off: %s",
                  (long long)h_int(ef, "timestamp_ns"), h_dump(log));
    }
    cr_assert_geq(nf, 3, "line 4 toggled %zu times: %s", nf, h_dump(f));
    json_decref(f);
    json_decref(a);
    json_decref(b);
    json_decref(log);
    lc_client_destroy(&c);
}

Test(gpio, every_output_is_off_at_shut_down)
{
    char file[400];
    snprintf(file, sizeof file, "%s/outputs.jsonl", h_dir);
    char config[1200];
    snprintf(config, sizeof config,
             "      backend: sim\n"
             "      sim_log_file: outputs.jsonl\n" /* beside the system file */
             "      outputs:\n"
             "        4:  {initial: on}\n"
             "        17: {initial: blink_veryfast}\n"
             "        27: {initial: 6, active_low: true}\n");
    h_broker(NULL);
    proc_t *p = s_gpio(config);
    lc_client_t *c = h_client();
    json_t *log = s_wait_transitions(c, 17, 0, 3, 10000); /* requested, flipped, one toggle */
    json_decref(log);
    lc_client_destroy(&c);
    int status = h_stop(p, SIGTERM, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lc-gpio ended with %#x\n%s", status,
              h_log(p));
    FILE *f = fopen(file, "r");
    cr_assert(f, "no %s\n%s", file, h_log(p));
    json_t *all = json_array();
    char buf[512];
    while (fgets(buf, sizeof buf, f)) {
        json_t *e = json_loads(buf, 0, NULL);
        cr_assert(e, "not JSON: %s", buf);
        json_array_append_new(all, e);
    }
    fclose(f);
    int lines[] = {4, 17, 27};
    for (int i = 0; i < 3; i++) {
        json_t *mine = s_transitions(all, lines[i]);
        cr_assert_geq(json_array_size(mine), 3, "line %d: %s", lines[i], h_dump(mine));
        bool was_on = false;
        for (size_t k = 0; k < json_array_size(mine); k++)
            was_on = was_on || h_int(json_array_get(mine, k), "value") == 1;
        cr_assert(was_on, "line %d was never on: %s", lines[i], h_dump(mine));
        cr_assert_eq(h_int(s_last(mine, lines[i]), "value"), 0, "line %d is left on: %s", lines[i],
                     h_dump(mine));
        cr_assert(json_is_null(json_object_get(s_last(mine, lines[i]), "line_name")));
        json_decref(mine);
    }
    json_decref(all);
}

/* ---- Inputs ------------------------------------------------------------------------------ */

static void s_drive(lc_client_t *c, json_t *line, int value)
{
    s_call_ok(c, "sim_set_input", json_pack("{s:o, s:i}", "line", line, "value", value));
}

static const char *s_inputs =
    "      backend: sim\n"
    "      inputs:\n"
    "        22: {name: Input22_ForTestingPurposes, debounce_ms: 0}\n"
    "        23: {edges: rising, debounce_ms: 0}\n"
    "        24: {name: Low, active_low: true, bias: pull-up, edges: both, debounce_ms: 0}\n"
    "        25: {name: Down, bias: pull-down, edges: falling, debounce_ms: 0}\n";

Test(gpio, edges_become_events_with_the_seeds_keys_and_sequence_numbers)
{
    h_broker(NULL);
    h_echo_with("rec", "--listen", "changed_gpio_input", NULL);
    s_gpio(s_inputs);
    lc_client_t *c = h_client();
    uint64_t before = s_now_ns();
    s_drive(c, json_integer(22), 0);                          /* falling: event 1 of 22 */
    s_drive(c, json_string("Input22_ForTestingPurposes"), 1); /* rising: event 2 */
    s_drive(c, json_integer(22), 1);                          /* no change: no edge */
    s_drive(c, json_integer(23), 0);                          /* falling, filtered out */
    s_drive(c, json_integer(23), 1);                          /* rising: event 1 of 23 */
    s_drive(c, json_string("Low"), 0);                        /* pin low, active-low: rising */
    s_drive(c, json_string("Down"), 1);                       /* rising, filtered out */
    s_drive(c, json_string("Down"), 0);                       /* falling: event 1 of 25 */
    uint64_t after = s_now_ns();
    json_t *got = h_wait_recorded(c, "rec", 5, 10000);
    struct {
        int line;
        const char *name;
        int seq;
        bool rising;
    } want[] = {{22, "Input22_ForTestingPurposes", 1, false},
                {22, "Input22_ForTestingPurposes", 2, true},
                {23, NULL, 1, true},
                {24, "Low", 1, true},
                {25, "Down", 1, false}};
    cr_assert_eq(json_array_size(got), 5, "%s", h_dump(got));
    uint64_t last_ts = 0;
    for (size_t i = 0; i < 5; i++) {
        json_t *e = json_array_get(got, i);
        cr_assert_str_eq(h_str(e, "name"), "changed_gpio_input");
        cr_assert_str_eq(h_str(e, "source"), "gpio");
        json_t *a = json_object_get(e, "args");
        cr_assert_eq(json_object_size(a), 5, "keys: %s", h_dump(a));
        cr_assert_eq(h_int(a, "line"), want[i].line, "%zu: %s", i, h_dump(got));
        if (want[i].name)
            cr_assert_str_eq(h_str(a, "line_name"), want[i].name);
        else
            cr_assert(json_is_null(json_object_get(a, "line_name")), "%s", h_dump(a));
        cr_assert_eq(h_int(a, "line_seq"), want[i].seq, "%zu: %s", i, h_dump(got));
        cr_assert(json_is_boolean(json_object_get(a, "rising_edge")));
        cr_assert_eq(json_is_true(json_object_get(a, "rising_edge")), want[i].rising, "%zu: %s", i,
                     h_dump(got));
        uint64_t ts = (uint64_t)h_int(a, "timestamp_ns");
        cr_assert(ts >= before && ts <= after && ts >= last_ts, "%zu: timestamp %llu: %s", i,
                  (unsigned long long)ts, h_dump(got));
        last_ts = ts;
    }
    json_decref(got);
    /* Levels now, logical: 22 high, 23 high, 24 pin low = active, 25 low. */
    int levels[][2] = {{22, 1}, {23, 1}, {24, 1}, {25, 0}};
    for (int i = 0; i < 4; i++) {
        json_t *v = s_call(c, "get_input", json_pack("{s:i}", "line", levels[i][0]));
        cr_assert_eq(json_integer_value(v), levels[i][1], "line %d: %s", levels[i][0], h_dump(v));
        json_decref(v);
    }
    s_call_fails(c, "sim_set_input", json_pack("{s:i, s:i}", "line", 22, "value", 2),
                 "argument \"value\"");
    s_call_fails(c, "sim_set_input", json_pack("{s:s, s:i}", "line", "x", "value", 1),
                 "line name unknown");
    lc_client_destroy(&c);
}

Test(gpio, bounces_shorter_than_the_debounce_time_give_no_event)
{
    h_broker(NULL);
    h_echo_with("rec", "--listen", "changed_gpio_input", NULL);
    s_gpio("      backend: sim\n"
           "      inputs:\n"
           "        22: {name: Button, debounce_ms: 500}\n");
    lc_client_t *c = h_client();
    /* Bounces: away and back, well within 500 ms, twice. */
    s_drive(c, json_integer(22), 0);
    s_drive(c, json_integer(22), 1);
    s_drive(c, json_integer(22), 0);
    s_drive(c, json_integer(22), 1);
    /* A real press: low, and it stays low. */
    uint64_t press = s_now_ns();
    s_drive(c, json_integer(22), 0);
    json_t *got = h_wait_recorded(c, "rec", 1, 10000);
    cr_assert_eq(json_array_size(got), 1, "the bounces made events: %s", h_dump(got));
    json_t *a = json_object_get(json_array_get(got, 0), "args");
    cr_assert_eq(h_int(a, "line_seq"), 1, "%s", h_dump(a));
    cr_assert(json_is_false(json_object_get(a, "rising_edge")), "%s", h_dump(a));
    cr_assert_geq((uint64_t)h_int(a, "timestamp_ns"), press,
                  "the event is stamped with the "
                  "press's edge: %s",
                  h_dump(a));
    json_decref(got);
    /* Then a release, with a bounce in it: one rising event, number 2. */
    s_drive(c, json_integer(22), 1);
    s_drive(c, json_integer(22), 0);
    s_drive(c, json_integer(22), 1);
    got = h_wait_recorded(c, "rec", 2, 10000);
    cr_assert_eq(json_array_size(got), 2, "%s", h_dump(got));
    a = json_object_get(json_array_get(got, 1), "args");
    cr_assert_eq(h_int(a, "line_seq"), 2, "%s", h_dump(a));
    cr_assert(json_is_true(json_object_get(a, "rising_edge")), "%s", h_dump(a));
    json_decref(got);
    lc_client_destroy(&c);
}

Test(gpio, edges_while_the_module_is_passive_make_no_event)
{
    h_broker(NULL);
    h_echo_with("rec", "--listen", "changed_gpio_input", NULL);
    lc_client_t *c = h_client();
    /* The broker keeps gpio passive until "late" is there too. */
    json_t *res = NULL;
    int rc = lc_call(c, "broker.expect",
                     json_pack("{s:[s, s], s:i}", "modules", "gpio", "late", "timeout_ms", 60000),
                     &res, 5000);
    cr_assert_eq(rc, 0, "broker.expect: %s %s", lc_strerror(rc), h_dump(res));
    json_decref(res);
    proc_t *p = s_gpio_start("      backend: sim\n"
                             "      inputs: {22: {name: Button, debounce_ms: 0}}\n");
    s_wait_state(p, "passive");
    s_drive(c, json_integer(22), 0); /* falling, while passive */
    json_t *v = s_call(c, "get_input", json_pack("{s:i}", "line", 22));
    cr_assert_eq(json_integer_value(v), 0, "the level follows while passive: %s", h_dump(v));
    json_decref(v);
    h_echo_with("late", NULL);
    s_wait_state(p, "active");
    s_drive(c, json_integer(22), 1); /* rising, while active */
    json_t *got = h_wait_recorded(c, "rec", 1, 10000);
    cr_assert_eq(json_array_size(got), 1, "%s", h_dump(got));
    json_t *a = json_object_get(json_array_get(got, 0), "args");
    cr_assert(json_is_true(json_object_get(a, "rising_edge")), "the passive edge was sent: %s",
              h_dump(got));
    cr_assert_eq(h_int(a, "line_seq"), 1, "%s", h_dump(got));
    cr_assert(strstr(h_log(p), "line 22 (Button): falling edge while the module is not active"),
              "%s", h_log(p));
    json_decref(got);
    lc_client_destroy(&c);
}

/* ---- The real backend and the configuration ------------------------------------------------ */

Test(gpio, a_missing_chip_is_named_and_the_module_exits_non_zero)
{
    s_clear_env();
    proc_t *p = h_spawn("gpio", BIN("lc-gpio"), "--bus", h_bus, "--config",
                        s_system("      backend: gpiod\n"
                                 "      chip: /dev/gpiochip-does-not-exist\n"
                                 "      outputs: {4: {name: Lamp}}\n"),
                        NULL);
    int status = h_wait_exit(p, 10000);
    cr_assert(status != -1, "lc-gpio did not end\n%s", h_log(p));
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x\n%s", status, h_log(p));
    cr_assert(strstr(h_log(p), "cannot open GPIO chip /dev/gpiochip-does-not-exist"), "%s",
              h_log(p));
    cr_assert(strstr(h_log(p), "backend: sim"), "no advice: %s", h_log(p));
}

Test(gpio, the_launcher_reports_a_missing_chip)
{
    s_clear_env();
    char path[400];
    snprintf(path, sizeof path, "%s/launch.yaml", h_dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f,
            "bus: {endpoint: \"%s\"}\n"
            "modules:\n"
            "  gpio:\n"
            "    program: %s\n"
            "    restart: never\n"
            "    config:\n"
            "      chip: /dev/gpiochip-does-not-exist\n"
            "      outputs: {4: {name: Lamp}}\n",
            h_bus, BIN("lc-gpio"));
    cr_assert_eq(fclose(f), 0);
    proc_t *p = h_spawn("launch", BIN("lc-launch"), path, NULL);
    char *log = h_wait_log(p, ") ended: exit code 1", 1, 10000);
    cr_assert(strstr(log, "gpio (pid"), "%s", log);
    cr_assert(strstr(log, "cannot open GPIO chip /dev/gpiochip-does-not-exist"), "%s", log);
    free(log);
    int status = h_stop(p, SIGTERM, 10000);
    cr_assert(WIFEXITED(status), "lc-launch ended with %#x\n%s", status, h_log(p));
}

Test(gpio, simulate_runs_a_system_written_for_the_real_chip)
{
    h_broker(NULL);
    s_clear_env();
    proc_t *p = h_spawn("gpio", BIN("lc-gpio"), "--simulate", "--bus", h_bus, "--config",
                        s_system("      backend: gpiod\n"
                                 "      chip: /dev/gpiochip-does-not-exist\n"
                                 "      outputs: {4: {name: Lamp, initial: on}}\n"),
                        NULL);
    s_wait_state(p, "active");
    lc_client_t *c = h_client();
    json_t *log = s_call(c, "sim_output_log", NULL);
    json_t *last = s_last(log, 4);
    cr_assert(last && h_int(last, "value") == 1, "%s", h_dump(log));
    json_decref(log);
    lc_client_destroy(&c);
}

Test(gpio, configuration_errors_name_file_line_and_setting)
{
    s_clear_env();
    proc_t *p = h_spawn("gpio", BIN("lc-gpio"), "--bus", h_bus, "--config",
                        s_system("      backend: sim\n"
                                 "      inputs:\n"
                                 "        22: {bias: sideways}\n"
                                 "        x: {}\n"
                                 "      outputs:\n"
                                 "        4: {initial: dim, colour: red}\n"
                                 "        22: {}\n"),
                        NULL);
    int status = h_wait_exit(p, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status %#x\n%s", status, h_log(p));
    const char *log = h_log(p);
    const char *expect[] = {"system.yaml:7:",
                            "'inputs.22.bias': 'sideways' is not one of",
                            "system.yaml:8:9:",
                            "'x' is not a line offset",
                            "'outputs.4.initial': 'dim' is not a state",
                            "'outputs.4.colour': unknown setting",
                            "line 22 is configured twice"};
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++)
        cr_assert(strstr(log, expect[i]), "no '%s' in:\n%s", expect[i], log);
}

Test(gpio, help_and_version)
{
    s_clear_env();
    proc_t *p = h_spawn("help", BIN("lc-gpio"), "--help", NULL);
    int status = h_wait_exit(p, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert(strstr(h_log(p), "set_output_state"), "%s", h_log(p));
    proc_t *q = h_spawn("bad", BIN("lc-gpio"), "--frobnicate", NULL);
    status = h_wait_exit(q, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s", h_log(q));
}
