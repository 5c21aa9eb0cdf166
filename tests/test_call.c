/* Synchronous calls through a real broker and real module processes. */
#include "harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(call, .init = h_setup, .fini = h_teardown, .timeout = 60);

Test(call, round_trip)
{
    proc_t *broker = h_broker(NULL);
    proc_t *echo = h_echo("echo");
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "echo.echo", json_pack("{s:s, s:i}", "text", "hello", "n", 3), &res, 0);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_str_eq(json_string_value(json_object_get(res, "text")), "hello");
    cr_assert_eq(json_integer_value(json_object_get(res, "n")), 3);
    json_decref(res);
    /* No arguments arrive as {}. */
    rc = lc_call(c, "echo.echo", NULL, &res, 0);
    cr_assert_eq(rc, 0);
    cr_assert(json_is_object(res) && json_object_size(res) == 0);
    json_decref(res);
    lc_client_destroy(&c);
    /* Both stop cleanly on SIGTERM (and, in the sanitizer build, without leaks). */
    int st = h_stop(echo, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "echo exit status %d\n%s", st, h_log(echo));
    st = h_stop(broker, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "broker exit status %d\n%s", st,
              h_log(broker));
}

Test(call, unknown_module)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "nobody.echo", NULL, &res, 0);
    cr_assert_eq(rc, LC_ENOMODULE, "got %s", lc_strerror(rc));
    cr_assert(strstr(json_string_value(json_object_get(res, "message")), "nobody"));
    json_decref(res);
    lc_client_destroy(&c);
}

Test(call, unknown_method)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "echo.nothing", NULL, &res, 0);
    cr_assert_eq(rc, LC_ENOMETHOD, "got %s", lc_strerror(rc));
    cr_assert(strstr(json_string_value(json_object_get(res, "message")), "nothing"));
    json_decref(res);
    lc_client_destroy(&c);
}

Test(call, handler_error_code_and_message)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc =
        lc_call(c, "echo.fail", json_pack("{s:i, s:s}", "code", 7, "message", "bad line"), &res, 0);
    cr_assert_eq(rc, LC_EHANDLER, "got %s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(res, "code")), 7);
    cr_assert_str_eq(json_string_value(json_object_get(res, "message")), "bad line");
    json_decref(res);
    rc = lc_call(c, "echo.fail", NULL, &res, 0);
    cr_assert_eq(rc, LC_EHANDLER);
    cr_assert_eq(json_integer_value(json_object_get(res, "code")), 42);
    json_decref(res);
    lc_client_destroy(&c);
}

Test(call, timeout)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "echo.sleep", json_pack("{s:i}", "ms", 2000), &res, 100);
    cr_assert_eq(rc, LC_ETIMEDOUT, "got %s", lc_strerror(rc));
    json_decref(res);
    /* The module was not held up: it answers the next call at once. */
    rc = lc_call(c, "echo.echo", NULL, &res, 1000);
    cr_assert_eq(rc, 0, "got %s", lc_strerror(rc));
    json_decref(res);
    lc_client_destroy(&c);
}
