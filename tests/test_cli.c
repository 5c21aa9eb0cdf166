/* The command line: every exit status of `lc`, argument typing, and --help of all three
 * programs, run as real processes against a real broker. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

static void s_init(void)
{
    struct rlimit none = {0, 0}; /* echo.crash aborts on purpose: no core files */
    setrlimit(RLIMIT_CORE, &none);
    h_setup();
}

TestSuite(cli, .init = s_init, .fini = h_teardown, .timeout = 60);

typedef struct {
    int status; /* exit status */
    char out[4096];
    int64_t ms;
} run_t;

/* Runs a program (NULL-terminated arguments) to its end; its output (stdout and stderr)
 * goes to h_dir/<logname>.log. Fails the test unless it exits normally in time. */
static run_t s_run(const char *logname, const char *prog, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)prog;
    va_list ap;
    va_start(ap, prog);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    run_t r = {0};
    int64_t t0 = lc_mono_ms();
    proc_t *p = h_spawnv(logname, argv);
    int st = h_wait_exit(p, 15000);
    r.ms = lc_mono_ms() - t0;
    cr_assert_neq(st, -1, "%s (%s) did not end\n%s", prog, logname, h_log(p));
    cr_assert(WIFEXITED(st), "%s (%s) ended by signal %d\n%s", prog, logname,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, h_log(p));
    r.status = WEXITSTATUS(st);
    snprintf(r.out, sizeof r.out, "%s", h_log(p));
    h_proc_free(&p);
    return r;
}

#define LC BIN("lc")

static void s_expect(const run_t *r, int status, const char *text, const char *what)
{
    cr_assert_eq(r->status, status, "%s: exit status %d, expected %d; output:\n%s", what, r->status,
                 status, r->out);
    if (text)
        cr_assert(strstr(r->out, text), "%s: output lacks \"%s\":\n%s", what, text, r->out);
}

Test(cli, exit_0_success_prints_json)
{
    h_broker(NULL);
    h_echo("echo");
    run_t r = s_run("ok", LC, "--bus", h_bus, "call", "echo.echo", "text=hello", NULL);
    s_expect(&r, 0, NULL, "lc call echo.echo");
    json_error_t err;
    json_t *out = json_loads(r.out, 0, &err);
    cr_assert(out, "output is not one JSON value (%s):\n%s", err.text, r.out);
    cr_assert_str_eq(json_string_value(json_object_get(out, "text")), "hello");
    cr_assert_eq(json_object_size(out), 1);
    json_decref(out);
    /* --pretty indents, the value is the same. */
    r = s_run("pretty", LC, "--bus", h_bus, "--pretty", "call", "echo.echo", "a=1", NULL);
    s_expect(&r, 0, "\n  \"a\": 1", "lc --pretty");
    /* A built-in method of the broker. */
    r = s_run("ping", LC, "--bus", h_bus, "call", "broker.ping", NULL);
    s_expect(&r, 0, "\"version\"", "lc call broker.ping");
}

Test(cli, exit_1_handler_error)
{
    h_broker(NULL);
    h_echo("echo");
    run_t r =
        s_run("fail", LC, "--bus", h_bus, "call", "echo.fail", "code=7", "message=bad line", NULL);
    s_expect(&r, 1, "bad line", "lc call echo.fail");
    cr_assert(strstr(r.out, "7"), "the handler's code is not shown:\n%s", r.out);
    r = s_run("fail2", LC, "--bus", h_bus, "call", "echo.fail", NULL);
    s_expect(&r, 1, "42", "lc call echo.fail (default code)");
}

Test(cli, exit_2_usage_errors)
{
    /* No broker is needed to refuse bad usage; give one anyway, so that only usage counts. */
    h_broker(NULL);
    run_t r = s_run("noargs", LC, NULL);
    s_expect(&r, 2, "Usage", "lc without arguments");
    r = s_run("nobus", LC, "--bus", h_bus, NULL);
    s_expect(&r, 2, NULL, "lc --bus EP without a command");
    r = s_run("badkv", LC, "--bus", h_bus, "call", "echo.echo", "novalue", NULL);
    s_expect(&r, 2, "novalue", "bad key=value");
    r = s_run("emptykey", LC, "--bus", h_bus, "call", "echo.echo", "=3", NULL);
    s_expect(&r, 2, NULL, "empty key");
    r = s_run("badjson", LC, "--bus", h_bus, "call", "echo.echo", "{\"a\":", NULL);
    s_expect(&r, 2, "JSON", "broken JSON object");
    r = s_run("badtimeout", LC, "--bus", h_bus, "--timeout", "abc", "call", "echo.echo", NULL);
    s_expect(&r, 2, "--timeout", "bad --timeout");
    r = s_run("zerotimeout", LC, "--bus", h_bus, "--timeout", "0", "call", "echo.echo", NULL);
    s_expect(&r, 2, "--timeout", "--timeout 0");
    r = s_run("notarget", LC, "--bus", h_bus, "call", NULL);
    s_expect(&r, 2, NULL, "call without a target");
    r = s_run("nodot", LC, "--bus", h_bus, "call", "echo", NULL);
    s_expect(&r, 2, NULL, "target without a dot");
    r = s_run("unknowncmd", LC, "--bus", h_bus, "frobnicate", NULL);
    s_expect(&r, 2, "frobnicate", "unknown command");
    r = s_run("badopt", LC, "--no-such-option", NULL);
    s_expect(&r, 2, NULL, "unknown option");
}

Test(cli, exit_3_unknown_module_method_or_gone)
{
    h_broker(NULL);
    proc_t *echo = h_echo("echo");
    run_t r = s_run("nomodule", LC, "--bus", h_bus, "call", "nobody.echo", NULL);
    s_expect(&r, 3, "nobody", "unknown module");
    r = s_run("nomethod", LC, "--bus", h_bus, "call", "echo.nothing", NULL);
    s_expect(&r, 3, "nothing", "unknown method");
    r = s_run("crash", LC, "--bus", h_bus, "--timeout", "10000", "call", "echo.crash", NULL);
    s_expect(&r, 3, NULL, "echo.crash (gone)");
    cr_assert_lt(r.ms, 5000, "gone reported only after %lld ms", (long long)r.ms);
    int st = h_wait_exit(echo, 5000);
    cr_assert(st != -1 && WIFSIGNALED(st), "echo did not crash: %d", st);
}

Test(cli, exit_4_timeout)
{
    h_broker(NULL);
    h_echo("echo");
    run_t r = s_run("timeout", LC, "--bus", h_bus, "--timeout", "200", "call", "echo.sleep",
                    "ms=5000", NULL);
    s_expect(&r, 4, NULL, "echo.sleep ms=5000 --timeout 200");
    cr_assert_lt(r.ms, 4000, "a 200 ms timeout took %lld ms", (long long)r.ms);
    cr_assert_geq(r.ms, 200, "gave up after only %lld ms", (long long)r.ms);
}

Test(cli, exit_5_bus_unreachable)
{
    char bus[400];
    snprintf(bus, sizeof bus, "ipc://%s/nobody-here", h_dir);
    run_t r = s_run("nobus", LC, "--bus", bus, "--timeout", "500", "call", "echo.echo", NULL);
    s_expect(&r, 5, "nobody-here", "no broker");
    cr_assert_lt(r.ms, 3000, "took %lld ms", (long long)r.ms);
    /* A broker that went away counts the same. */
    proc_t *b = h_broker(NULL);
    h_stop(b, SIGKILL, 5000);
    r = s_run("gonebus", LC, "--bus", h_bus, "--timeout", "500", "call", "echo.echo", NULL);
    s_expect(&r, 5, NULL, "killed broker");
    cr_assert_lt(r.ms, 3000, "took %lld ms", (long long)r.ms);
}

Test(cli, key_value_typing)
{
    h_broker(NULL);
    h_echo("echo");
    run_t r = s_run("typed", LC, "--bus", h_bus, "call", "echo.echo", "n=3", "b=true", "s=abc",
                    "f=2.5", "z=null", "q=\"x\"", "a=[1,2]", "o={\"k\":1}", "e=", "neg=-4", NULL);
    s_expect(&r, 0, NULL, "typed key=value");
    json_error_t err;
    json_t *o = json_loads(r.out, 0, &err);
    cr_assert(o, "output is not JSON (%s):\n%s", err.text, r.out);
    json_t *v;
    v = json_object_get(o, "n");
    cr_assert(json_is_integer(v) && json_integer_value(v) == 3, "n: %s", r.out);
    v = json_object_get(o, "b");
    cr_assert(json_is_true(v), "b: %s", r.out);
    v = json_object_get(o, "s");
    cr_assert(json_is_string(v) && strcmp(json_string_value(v), "abc") == 0, "s: %s", r.out);
    v = json_object_get(o, "f");
    cr_assert(json_is_real(v) && json_real_value(v) == 2.5, "f: %s", r.out);
    cr_assert(json_is_null(json_object_get(o, "z")), "z: %s", r.out);
    /* A quoted word stays text, quotes included. */
    v = json_object_get(o, "q");
    cr_assert(json_is_string(v) && strcmp(json_string_value(v), "\"x\"") == 0, "q: %s", r.out);
    v = json_object_get(o, "a");
    cr_assert(json_is_array(v) && json_array_size(v) == 2, "a: %s", r.out);
    v = json_object_get(o, "o");
    cr_assert(json_is_object(v) && json_integer_value(json_object_get(v, "k")) == 1, "o: %s",
              r.out);
    v = json_object_get(o, "e");
    cr_assert(json_is_string(v) && json_string_length(v) == 0, "e: %s", r.out);
    v = json_object_get(o, "neg");
    cr_assert(json_is_integer(v) && json_integer_value(v) == -4, "neg: %s", r.out);
    cr_assert_eq(json_object_size(o), 10);
    json_decref(o);
}

Test(cli, json_object_argument)
{
    h_broker(NULL);
    h_echo("echo");
    const char *arg = "{\"n\":3,\"s\":\"abc\",\"l\":[true,null,{\"x\":1.5}],\"o\":{}}";
    run_t r = s_run("json", LC, "--bus", h_bus, "call", "echo.echo", arg, NULL);
    s_expect(&r, 0, NULL, "JSON object argument");
    json_t *want = json_loads(arg, 0, NULL);
    json_t *got = json_loads(r.out, 0, NULL);
    cr_assert(got, "output is not JSON:\n%s", r.out);
    cr_assert(json_equal(want, got), "sent %s, got %s", arg, r.out);
    json_decref(want);
    json_decref(got);
    /* JSON that is not an object is refused as usage. */
    r = s_run("jsonarray", LC, "--bus", h_bus, "call", "echo.echo", "[1,2]", NULL);
    s_expect(&r, 2, NULL, "JSON array argument");
}

Test(cli, help_of_every_program)
{
    const char *progs[] = {BIN("lc"), BIN("lc-broker"), BIN("lc-echo")};
    for (size_t i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "help%zu", i);
        run_t r = s_run(name, progs[i], "--help", NULL);
        s_expect(&r, 0, "Usage", progs[i]);
        snprintf(name, sizeof name, "version%zu", i);
        r = s_run(name, progs[i], "--version", NULL);
        s_expect(&r, 0, LC_VERSION, progs[i]);
    }
    /* lc's help documents its exit statuses. */
    run_t r = s_run("lchelp", LC, "--help", NULL);
    s_expect(&r, 0, "Exit status", "lc --help");
    r = s_run("lchelpcmd", LC, "help", NULL);
    s_expect(&r, 0, "Usage", "lc help");
}
