/* lc-clickhandler: the seed's click rules with injected timings. A test client emits
 * changed_gpio_input with chosen timestamp_ns values (the clickhandler takes the edge's time
 * when it is given), so every case is exact and nothing sleeps; an lc-echo records the
 * clicks, and the edges too, to compare transactions. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(click, .init = h_setup, .fini = h_teardown, .timeout = 60);

#define MARKER_LINE 999

static proc_t *s_clicker; /* the lc-clickhandler of the test */
#define T0_NS 1000000000000LL /* an arbitrary start: edge times are only compared */

/* ---- Helpers ------------------------------------------------------------------------------ */

/* Starts lc-clickhandler (with `config` as its config: section when not NULL), waits until
 * it is active, and starts the recorder `rec`. Returns a connected client. */
static lc_client_t *s_start(const char *config)
{
    h_broker(NULL);
    h_echo_with("rec", "--listen", "pushed_*", "--listen", "doubleclick", "--listen",
                "changed_gpio_input", NULL);
    char sys[400];
    snprintf(sys, sizeof sys, "%s/system.yaml", h_dir);
    FILE *f = fopen(sys, "w");
    cr_assert(f);
    fprintf(f, "modules:\n  clickhandler:\n    program: lc-clickhandler\n");
    if (config)
        fprintf(f, "    config:\n%s", config);
    fclose(f);
    s_clicker = h_spawn("clickhandler", BIN("lc-clickhandler"), "--bus", h_bus, "--config", sys,
                        NULL);
    lc_client_t *c = h_client();
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *m = h_module(c, "clickhandler");
        const char *st = m ? json_string_value(json_object_get(m, "state")) : NULL;
        bool active = st && strcmp(st, "active") == 0;
        json_decref(m);
        if (active)
            break;
        cr_assert_lt(lc_mono_ms(), deadline, "lc-clickhandler did not become active");
    }
    return c;
}

/* Emits one edge of `line` at T0 + t_us microseconds. */
static void s_edge_named(lc_client_t *c, int line, const char *name, int seq, bool rising,
                         long long t_us)
{
    json_t *args = json_pack("{s:i, s:s?, s:i, s:b, s:I}", "line", line, "line_name", name,
                             "line_seq", seq, "rising_edge", rising, "timestamp_ns",
                             (json_int_t)(T0_NS + t_us * 1000));
    json_t *info = NULL;
    int rc = lc_emit_wait(c, "changed_gpio_input", args, 0, 5000, &info);
    cr_assert_eq(rc, 0, "emit changed_gpio_input: %s (%s)", lc_strerror(rc), h_dump(info));
    json_decref(info);
}

static void s_edge(lc_client_t *c, int line, bool rising, long long t_ms)
{
    s_edge_named(c, line, NULL, 0, rising, t_ms * 1000);
}

/* Everything recorded since the last call, up to and including the marker click (a short
 * click on MARKER_LINE sent now); the marker proves that nothing else is still coming, since
 * the clickhandler handles edges in order. */
static json_t *s_collect(lc_client_t *c)
{
    static long long marker_t;
    marker_t += 10000;
    s_edge(c, MARKER_LINE, true, marker_t);
    s_edge(c, MARKER_LINE, false, marker_t + 1);
    json_t *all = json_array();
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *res = NULL;
        int rc = lc_call(c, "rec.recorded", NULL, &res, 5000);
        cr_assert_eq(rc, 0, "rec.recorded: %s", lc_strerror(rc));
        json_array_extend(all, json_object_get(res, "entries"));
        json_decref(res);
        size_t n = json_array_size(all);
        json_t *last = n ? json_array_get(all, n - 1) : NULL;
        if (last && strcmp(h_str(last, "name"), "pushed_short") == 0 &&
            h_arg(last, "line") == MARKER_LINE)
            return all;
        cr_assert_lt(lc_mono_ms(), deadline, "no marker click; recorded: %s", h_dump(all));
    }
}

/* The click events among the entries (edges and the marker left out), as "a,b,c". */
static const char *s_clicks(json_t *entries)
{
    static char buf[512];
    buf[0] = 0;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *name = h_str(e, "name");
        if (strcmp(name, "changed_gpio_input") == 0 || h_arg(e, "line") == MARKER_LINE)
            continue;
        if (buf[0])
            strcat(buf, ",");
        strcat(buf, name);
    }
    return buf;
}

/* The n-th click (edges left out) of the entries; borrowed. */
static json_t *s_click(json_t *entries, int n)
{
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        if (strcmp(h_str(e, "name"), "changed_gpio_input") != 0 && n-- == 0)
            return e;
    }
    cr_assert_fail("no click %d in %s", n, h_dump(entries));
    return NULL;
}

/* A case: edges as (rising, time in ms) on one line, and the clicks expected. */
typedef struct {
    const char *what;
    int n;
    struct {
        bool rising;
        long long t_ms;
    } edges[8];
    const char *expect;
} case_t;

static void s_run_cases(lc_client_t *c, const case_t *cases, size_t ncases, bool inverted)
{
    for (size_t i = 0; i < ncases; i++) {
        int line = 100 + (int)i; /* a fresh button per case */
        for (int e = 0; e < cases[i].n; e++)
            s_edge(c, line, cases[i].edges[e].rising != inverted, cases[i].edges[e].t_ms);
        json_t *got = s_collect(c);
        cr_expect_str_eq(s_clicks(got), cases[i].expect, "%s: got \"%s\", want \"%s\"",
                         cases[i].what, s_clicks(got), cases[i].expect);
        json_decref(got);
    }
}

#define P(t) {true, t}
#define R(t) {false, t}

/* The seed's rules and boundaries (SEED-REFERENCE section 9). */
static const case_t s_rules[] = {
    {"short click", 2, {P(0), R(120)}, "pushed_short"},
    {"long push", 2, {P(0), R(1500)}, "pushed_long"},
    {"held exactly 1.0 s is short", 2, {P(0), R(1000)}, "pushed_short"},
    {"held 1.001 s is long", 2, {P(0), R(1001)}, "pushed_long"},
    {"double click: short first, then doubleclick", 4, {P(0), R(100), P(400), R(500)},
     "pushed_short,doubleclick"},
    {"gap exactly 0.5 s is still double", 4, {P(0), R(100), P(600), R(700)},
     "pushed_short,doubleclick"},
    {"gap over 0.5 s: two short clicks", 4, {P(0), R(100), P(601), R(700)},
     "pushed_short,pushed_short"},
    {"triple click", 6, {P(0), R(100), P(200), R(300), P(400), R(500)},
     "pushed_short,doubleclick,pushed_short"},
    {"second push held long", 4, {P(0), R(100), P(300), R(1400)}, "pushed_short,pushed_long"},
    {"second push held exactly 1.0 s is a double", 4, {P(0), R(100), P(300), R(1300)},
     "pushed_short,doubleclick"},
    {"long push, then a quick one: no double after a long", 4, {P(0), R(1500), P(1600), R(1700)},
     "pushed_long,pushed_short"},
    {"a release without a push sends nothing", 1, {R(0)}, ""},
    {"two releases after a short click", 3, {P(0), R(100), R(200)}, "pushed_short"},
    {"pushed twice: the hold counts from the second push", 3, {P(0), P(900), R(1800)},
     "pushed_short"},
};

/* ---- Tests -------------------------------------------------------------------------------- */

Test(click, the_seeds_rules_and_boundaries)
{
    lc_client_t *c = s_start(NULL);
    s_run_cases(c, s_rules, sizeof s_rules / sizeof s_rules[0], false);
    lc_client_destroy(&c);
}

Test(click, payload_keys_source_and_transaction)
{
    lc_client_t *c = s_start(NULL);
    s_edge_named(c, 22, "Input22_ForTestingPurposes", 7, true, 0);
    s_edge_named(c, 22, "Input22_ForTestingPurposes", 8, false, 250000);
    s_edge_named(c, 22, "Input22_ForTestingPurposes", 9, true, 550000);
    s_edge_named(c, 22, "Input22_ForTestingPurposes", 10, false, 600500);
    json_t *got = s_collect(c);
    cr_assert_str_eq(s_clicks(got), "pushed_short,doubleclick", "%s", h_dump(got));

    json_t *shortc = s_click(got, 0);
    json_t *args = json_object_get(shortc, "args");
    cr_assert_str_eq(h_str(shortc, "source"), "clickhandler", "%s", h_dump(shortc));
    /* The seed's keys, with its types ... */
    cr_assert_eq(h_int(args, "line"), 22);
    cr_assert_str_eq(h_str(args, "line_name"), "Input22_ForTestingPurposes");
    cr_assert_eq(h_int(args, "line_seq"), 8, "the releasing edge's sequence: %s", h_dump(args));
    /* ... and the ones added beside them. */
    cr_assert(json_is_real(json_object_get(args, "hold_ms")), "%s", h_dump(args));
    cr_assert_float_eq(json_real_value(json_object_get(args, "hold_ms")), 250.0, 1e-9);
    cr_assert_eq(h_int(args, "timestamp_ns"), T0_NS + 250000000LL);
    cr_assert_null(json_object_get(args, "gap_ms"), "%s", h_dump(args));

    json_t *dbl = json_object_get(s_click(got, 1), "args");
    cr_assert_eq(h_int(dbl, "line_seq"), 10);
    cr_assert_float_eq(json_real_value(json_object_get(dbl, "hold_ms")), 50.5, 1e-9,
                       "%s", h_dump(dbl));
    cr_assert_float_eq(json_real_value(json_object_get(dbl, "gap_ms")), 300.0, 1e-9,
                       "%s", h_dump(dbl));

    /* Each click continues the transaction of the edge that released it. */
    size_t i;
    json_t *e;
    json_int_t release_tx[2];
    int nrel = 0;
    json_array_foreach(got, i, e)
    {
        if (strcmp(h_str(e, "name"), "changed_gpio_input") == 0 && h_arg(e, "line") == 22 &&
            json_is_false(json_object_get(json_object_get(e, "args"), "rising_edge")))
            release_tx[nrel++] = h_int(e, "tx");
    }
    cr_assert_eq(nrel, 2, "%s", h_dump(got));
    cr_assert_eq(h_int(shortc, "tx"), release_tx[0], "%s", h_dump(got));
    cr_assert_eq(h_int(s_click(got, 1), "tx"), release_tx[1], "%s", h_dump(got));
    cr_assert_neq(release_tx[0], release_tx[1]);
    json_decref(got);
    lc_client_destroy(&c);
    /* It stops cleanly (under the sanitizers: without leaks). */
    int st = h_stop(s_clicker, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, h_log(s_clicker));
}

Test(click, unnamed_lines_and_lines_apart)
{
    lc_client_t *c = s_start(NULL);
    /* Two buttons at once, interleaved: each keeps its own state. */
    s_edge(c, 5, true, 0);
    s_edge(c, 6, true, 50);
    s_edge(c, 5, false, 100);
    s_edge(c, 6, false, 2000);
    json_t *got = s_collect(c);
    cr_assert_str_eq(s_clicks(got), "pushed_short,pushed_long", "%s", h_dump(got));
    json_t *a = json_object_get(s_click(got, 0), "args");
    cr_assert_eq(h_int(a, "line"), 5);
    cr_assert(json_is_null(json_object_get(a, "line_name")), "%s", h_dump(a));
    cr_assert_eq(h_int(json_object_get(s_click(got, 1), "args"), "line"), 6);
    json_decref(got);
    lc_client_destroy(&c);
}

Test(click, inverted_lines_from_the_config)
{
    /* With pull-up wiring a press is a falling edge: line 22 inverted, 23 not. */
    lc_client_t *c = s_start("      inversed_logic: [22, 100, 101, 102, 103, 104, 105, 106, 107, "
                             "108, 109, 110, 111, 112, 113]\n");
    s_edge(c, 22, false, 0);
    s_edge(c, 22, true, 100);
    s_edge(c, 23, false, 200);
    s_edge(c, 23, true, 300);
    json_t *got = s_collect(c);
    /* Line 23's falling edge was a release without a push: nothing; its rising edge a push
     * that nobody released yet. */
    cr_assert_str_eq(s_clicks(got), "pushed_short", "%s", h_dump(got));
    cr_assert_eq(h_arg(s_click(got, 0), "line"), 22);
    json_decref(got);
    /* Every rule holds the same with the edges flipped. */
    s_run_cases(c, s_rules, sizeof s_rules / sizeof s_rules[0], true);
    lc_client_destroy(&c);
}

Test(click, set_inversed_logic_and_status)
{
    lc_client_t *c = s_start("      inversed_logic: [3]\n");
    json_t *res = NULL;
    int rc = lc_call(c, "clickhandler.set_inversed_logic",
                     json_pack("{s:[i,i]}", "inversed_logic", 7, 8), &res, 5000);
    cr_assert_eq(rc, 0, "%s: %s", lc_strerror(rc), h_dump(res));
    cr_assert_eq(json_array_size(json_object_get(res, "inversed_logic")), 2, "%s", h_dump(res));
    json_decref(res);
    s_edge(c, 7, false, 0);
    s_edge(c, 7, true, 1200);
    s_edge(c, 3, true, 2000); /* no longer inverted */
    s_edge(c, 3, false, 2100);
    json_t *got = s_collect(c);
    cr_assert_str_eq(s_clicks(got), "pushed_long,pushed_short", "%s", h_dump(got));
    json_decref(got);

    /* The argument's name and type are checked; a bad entry is named. */
    rc = lc_call(c, "clickhandler.set_inversed_logic",
                 json_pack("{s:[i,s]}", "inversed_logic", 7, "x"), &res, 5000);
    cr_assert_eq(rc, LC_EHANDLER, "%s", lc_strerror(rc));
    cr_assert(strstr(h_str(res, "message"), "inversed_logic"), "%s", h_dump(res));
    cr_assert(strstr(h_str(res, "message"), "entry 1"), "%s", h_dump(res));
    json_decref(res);
    rc = lc_call(c, "clickhandler.set_inversed_logic", json_pack("{s:[i]}", "lines", 7), &res,
                 5000);
    cr_assert_neq(rc, 0, "an unknown argument is refused");
    json_decref(res);

    /* No argument: no line is inverted, as the seed's default []. */
    rc = lc_call(c, "clickhandler.set_inversed_logic", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(json_array_size(json_object_get(res, "inversed_logic")), 0, "%s", h_dump(res));
    json_decref(res);

    rc = lc_call(c, "clickhandler.status", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(h_int(res, "long_ms"), 1000, "%s", h_dump(res));
    cr_assert_eq(h_int(res, "double_ms"), 500, "%s", h_dump(res));
    json_t *buttons = json_object_get(res, "buttons");
    cr_assert_geq(json_array_size(buttons), 3, "%s", h_dump(res));
    cr_assert_str_eq(h_str(json_array_get(buttons, 0), "state"), "neutral", "%s", h_dump(res));
    json_decref(res);
    lc_client_destroy(&c);
    int st = h_stop(s_clicker, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, h_log(s_clicker));
}

Test(click, timings_from_the_config)
{
    lc_client_t *c = s_start("      long_ms: 200\n      double_ms: 100\n");
    static const case_t cases[] = {
        {"held 200 ms is short", 2, {P(0), R(200)}, "pushed_short"},
        {"held 201 ms is long", 2, {P(0), R(201)}, "pushed_long"},
        {"gap 100 ms is double", 4, {P(0), R(50), P(150), R(160)}, "pushed_short,doubleclick"},
        {"gap 101 ms is two clicks", 4, {P(0), R(50), P(151), R(160)},
         "pushed_short,pushed_short"},
    };
    s_run_cases(c, cases, sizeof cases / sizeof cases[0], false);
    lc_client_destroy(&c);
}

/* Without timestamp_ns the module's own monotonic clock times the edges (a long limit keeps
 * a slow machine from turning the click into a long push). */
Test(click, edges_without_timestamps_use_the_modules_clock)
{
    lc_client_t *c = s_start("      long_ms: 600000\n");
    for (int i = 0; i < 2; i++) {
        json_t *args = json_pack("{s:i, s:s, s:i, s:b}", "line", 4, "line_name", "B", "line_seq",
                                 i, "rising_edge", i == 0);
        cr_assert_eq(lc_emit_wait(c, "changed_gpio_input", args, 0, 5000, NULL), 0);
    }
    json_t *got = s_collect(c);
    cr_assert_str_eq(s_clicks(got), "pushed_short", "%s", h_dump(got));
    json_t *a = json_object_get(s_click(got, 0), "args");
    cr_assert_geq(json_real_value(json_object_get(a, "hold_ms")), 0.0, "%s", h_dump(a));
    cr_assert(json_is_integer(json_object_get(a, "timestamp_ns")), "%s", h_dump(a));
    json_decref(got);
    lc_client_destroy(&c);
}

Test(click, help_and_bad_arguments)
{
    proc_t *p = h_spawn("help", BIN("lc-clickhandler"), "--help", NULL);
    int st = h_wait_exit(p, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", h_log(p));
    cr_assert(strstr(h_log(p), "set_inversed_logic"), "%s", h_log(p));
    p = h_spawn("bad", BIN("lc-clickhandler"), "--bogus", NULL);
    st = h_wait_exit(p, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s", h_log(p));
}

/* SIGHUP reads the settings again: new timings, and the file's inverted lines replace the
 * ones set_inversed_logic gave. */
Test(click, sighup_reads_the_settings_again)
{
    lc_client_t *c = s_start("      long_ms: 200\n      inversed_logic: [1]\n");
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "clickhandler.set_inversed_logic",
                         json_pack("{s:[i]}", "inversed_logic", 9), &res, 5000),
                 0);
    json_decref(res);
    char sys[400];
    snprintf(sys, sizeof sys, "%s/system.yaml", h_dir);
    FILE *f = fopen(sys, "w");
    cr_assert(f);
    fputs("modules:\n  clickhandler:\n    program: lc-clickhandler\n    config:\n"
          "      long_ms: 5000\n      inversed_logic: [2]\n", f);
    fclose(f);
    kill(s_clicker->pid, SIGHUP);
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        cr_assert_eq(lc_call(c, "clickhandler.status", NULL, &res, 5000), 0);
        bool reloaded = h_int(res, "long_ms") == 5000;
        if (reloaded) {
            json_t *inv = json_object_get(res, "inversed_logic");
            cr_assert_eq(json_array_size(inv), 1, "%s", h_dump(res));
            cr_assert_eq(json_integer_value(json_array_get(inv, 0)), 2, "%s", h_dump(res));
        }
        json_decref(res);
        if (reloaded)
            break;
        cr_assert_lt(lc_mono_ms(), deadline, "the settings were not read again\n%s",
                     h_log(s_clicker));
    }
    s_edge(c, 2, false, 0); /* inverted now: a push */
    s_edge(c, 2, true, 3000);
    json_t *got = s_collect(c);
    cr_assert_str_eq(s_clicks(got), "pushed_short", "held 3 s, short under long_ms 5000: %s",
                     h_dump(got));
    json_decref(got);
    lc_client_destroy(&c);
}
