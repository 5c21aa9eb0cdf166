/* Robustness: modules and brokers that crash, restart or collide, reserved names,
 * payload limits and tcp endpoints, with real processes on real endpoints. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void s_init(void)
{
    /* echo.crash aborts on purpose: no core files. */
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    h_setup();
}

TestSuite(robust, .init = s_init, .fini = h_teardown, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------------------ */

/* The broker.list entry of module `name` (a new reference), or NULL if it is not listed. */
static json_t *s_module_entry(lc_client_t *c, const char *name)
{
    json_t *res = NULL;
    int rc = lc_call(c, "broker.list", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "broker.list: %s", lc_strerror(rc));
    json_t *found = NULL, *m;
    size_t i;
    json_array_foreach(json_object_get(res, "modules"), i, m)
    {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && strcmp(n, name) == 0)
            found = json_incref(m);
    }
    json_decref(res);
    return found;
}

/* Waits until broker.list shows `name` with integer field `key` equal to value. */
static void s_wait_listed(lc_client_t *c, const char *name, const char *key, json_int_t value,
                          int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    json_int_t last = -1;
    for (;;) {
        json_t *m = s_module_entry(c, name);
        if (m) {
            last = json_integer_value(json_object_get(m, key));
            json_decref(m);
            if (last == value)
                return;
        }
        cr_assert(lc_mono_ms() < deadline, "module %s: %s is %lld, not %lld, after %d ms", name,
                  key, (long long)last, (long long)value, timeout_ms);
    }
}

static void s_echo_ok(lc_client_t *c, const char *target)
{
    json_t *res = NULL;
    int rc = lc_call(c, target, json_pack("{s:s}", "ping", "pong"), &res, 5000);
    cr_assert_eq(rc, 0, "%s: %s (%s)", target, lc_strerror(rc),
                 json_string_value(json_object_get(res, "message")));
    cr_assert_str_eq(json_string_value(json_object_get(res, "ping")), "pong");
    json_decref(res);
}

static bool s_log_has(proc_t *p, const char *text)
{
    return strstr(h_log(p), text) != NULL;
}

/* ---- A callee that dies mid-call ---------------------------------------------------- */

Test(robust, callee_crash_mid_call_gives_gone)
{
    h_broker(NULL);
    proc_t *echo = h_echo("echo");
    lc_client_t *c = h_client();
    int64_t t0 = lc_mono_ms();
    json_t *res = NULL;
    int rc = lc_call(c, "echo.crash", NULL, &res, 10000);
    int64_t elapsed = lc_mono_ms() - t0;
    cr_assert_eq(rc, LC_EGONE, "got %s (%s)", lc_strerror(rc),
                 json_string_value(json_object_get(res, "message")));
    cr_assert_lt(elapsed, 5000, "LC_EGONE came only after %lld ms", (long long)elapsed);
    cr_assert(json_string_value(json_object_get(res, "message")));
    json_decref(res);
    int st = h_wait_exit(echo, 5000);
    cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "echo status %d", st);
    /* The name is free again; the module is no longer listed. */
    rc = lc_call(c, "echo.echo", NULL, &res, 2000);
    cr_assert_eq(rc, LC_ENOMODULE, "got %s", lc_strerror(rc));
    json_decref(res);
    lc_client_destroy(&c);
}

typedef struct {
    int calls;
    int rc;
    int64_t when;
    char message[256];
} outcome_t;

static void s_outcome(lc_client_t *self, int rc, json_t *result, void *arg)
{
    outcome_t *o = arg;
    o->calls++;
    o->rc = rc;
    o->when = lc_mono_ms();
    const char *m = json_string_value(json_object_get(result, "message"));
    snprintf(o->message, sizeof o->message, "%s", m ? m : "");
    lc_stop(self);
}

/* kill -9 of the callee while the call is open (forwarded by the broker, as broker.list's
 * calls_in shows): the caller learns LC_EGONE long before its deadline. */
static void s_kill_mid_call(const char *method)
{
    h_broker(NULL);
    proc_t *echo = h_echo("echo");
    lc_client_t *c = h_client();
    outcome_t o = {0};
    int64_t t0 = lc_mono_ms();
    int rc = lc_call_async(c, method, json_pack("{s:i}", "ms", 60000), 10000, s_outcome, &o);
    cr_assert_eq(rc, 0, "lc_call_async: %s", lc_strerror(rc));
    s_wait_listed(c, "echo", "calls_in", 1, 5000);
    cr_assert_eq(o.calls, 0, "the call ended before the kill: %s", lc_strerror(o.rc));
    int st = h_stop(echo, SIGKILL, 5000);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "echo status %d", st);
    rc = lc_run(c); /* until the callback stops it */
    cr_assert_eq(rc, 0, "lc_run: %s", lc_strerror(rc));
    cr_assert_eq(o.calls, 1);
    cr_assert_eq(o.rc, LC_EGONE, "got %s (%s)", lc_strerror(o.rc), o.message);
    cr_assert_lt(o.when - t0, 5000, "LC_EGONE came only after %lld ms", (long long)(o.when - t0));
    lc_client_destroy(&c);
}

Test(robust, kill9_during_block_gives_gone)
{
    s_kill_mid_call("echo.block");
}

Test(robust, kill9_during_deferred_sleep_gives_gone)
{
    s_kill_mid_call("echo.sleep");
}

/* ---- Names ---------------------------------------------------------------------------- */

Test(robust, duplicate_name_refused_while_holder_lives)
{
    h_broker(NULL);
    proc_t *first = h_echo("dup");
    proc_t *second = h_spawn("dup2", BIN("lc-echo"), "--name", "dup", "--bus", h_bus, NULL);
    int st = h_wait_exit(second, 10000);
    cr_assert_neq(st, -1, "the second lc-echo --name dup did not exit\n%s", h_log(second));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "second status %d\n%s", st, h_log(second));
    cr_assert(s_log_has(second, "taken"), "log does not say the name is taken:\n%s", h_log(second));
    cr_assert_eq(h_wait_exit(first, 0), -1, "the holder exited\n%s", h_log(first));

    lc_client_t *c = h_client();
    s_echo_ok(c, "dup.echo");
    json_t *m = s_module_entry(c, "dup");
    cr_assert(m);
    cr_assert_eq(json_integer_value(json_object_get(m, "pid")), first->pid);
    json_decref(m);

    /* An in-process client under the same name. */
    lc_client_t *d = lc_client_new("dup", h_bus);
    cr_assert(d);
    int rc = lc_connect(d, 5000);
    cr_assert_eq(rc, LC_ENAMETAKEN, "got %s", lc_strerror(rc));
    lc_client_destroy(&d);
    s_echo_ok(c, "dup.echo");
    lc_client_destroy(&c);
}

Test(robust, kill9_and_restart_under_same_name)
{
    h_broker(NULL);
    proc_t *old = h_echo("re");
    lc_client_t *c = h_client();
    s_echo_ok(c, "re.echo");
    int st = h_stop(old, SIGKILL, 5000);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    proc_t *fresh = h_spawn("re2", BIN("lc-echo"), "--name", "re", "--bus", h_bus, NULL);
    /* Registered as the new process: broker.list shows its pid. */
    s_wait_listed(c, "re", "pid", fresh->pid, 10000);
    cr_assert_eq(h_wait_exit(fresh, 0), -1, "the restarted module exited\n%s", h_log(fresh));
    cr_assert(!s_log_has(fresh, "taken"), "%s", h_log(fresh));
    h_wait_modules(c, "re", NULL); /* registered, then ready: its startup may take a moment */
    s_echo_ok(c, "re.echo");
    lc_client_destroy(&c);
}

Test(robust, reserved_names_denied)
{
    h_broker(NULL);
    lc_client_t *b = lc_client_new("broker", h_bus);
    cr_assert(b);
    int rc = lc_connect(b, 5000);
    cr_assert_eq(rc, LC_EDENIED, "broker: got %s", lc_strerror(rc));
    lc_client_destroy(&b);
    /* "launcher" only for the process that started the broker (this one, here). */
    proc_t *other = h_spawn("other", BIN("lc-echo"), "--name", "launcher", "--bus", h_bus, NULL);
    int st = h_wait_exit(other, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "another process took 'launcher'");
    cr_assert(strstr(h_log(other), "denied"), "%s", h_log(other));
    lc_client_t *l = lc_client_new("launcher", h_bus);
    lc_client_set_lifecycle(l, false);
    rc = lc_connect(l, 5000);
    cr_assert_eq(rc, 0, "the broker's parent as launcher: %s", lc_strerror(rc));
    cr_assert_eq(lc_state(l), LC_STATE_ACTIVE);
    lc_client_destroy(&l);
    /* The broker is unharmed. */
    lc_client_t *c = h_client();
    json_t *res = NULL;
    rc = lc_call(c, "broker.ping", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    json_decref(res);
    lc_client_destroy(&c);
}

/* ---- Broker restarts ------------------------------------------------------------------ */

Test(robust, broker_restart_modules_register_again)
{
    proc_t *b1 = h_broker(NULL);
    proc_t *echo = h_echo("echo");
    lc_client_t *c = h_client();
    s_echo_ok(c, "echo.echo");
    lc_client_destroy(&c);

    /* A broker that crashes and is started again (SIGTERM would stop the whole system). */
    int st = h_stop(b1, SIGKILL, 10000);
    cr_assert(WIFSIGNALED(st), "broker status %d\n%s", st, h_log(b1));
    h_broker(NULL);
    c = h_client();
    h_wait_modules(c, "echo", NULL);
    json_t *m = s_module_entry(c, "echo");
    cr_assert(m);
    cr_assert_eq(json_integer_value(json_object_get(m, "pid")), echo->pid,
                 "echo is registered by another process");
    json_decref(m);
    s_echo_ok(c, "echo.echo");
    cr_assert_eq(h_wait_exit(echo, 0), -1, "echo exited\n%s", h_log(echo));
    lc_client_destroy(&c);
}

Test(robust, broker_restart_after_kill9_and_second_broker_refused)
{
    char path[400];
    snprintf(path, sizeof path, "%s", h_bus + strlen("ipc://"));
    proc_t *b1 = h_broker(NULL);
    int st = h_stop(b1, SIGKILL, 5000);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "the killed broker left no socket file at %s", path);

    /* A new broker replaces the stale socket. */
    proc_t *b2 = h_broker(NULL);
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "broker.ping", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(res, "pid")), b2->pid);
    json_decref(res);

    /* A second broker while the first lives: refused, clearly. */
    proc_t *b3 = h_spawn("broker3", BIN("lc-broker"), "--endpoint", h_bus, NULL);
    st = h_wait_exit(b3, 10000);
    cr_assert_neq(st, -1, "the second broker did not exit\n%s", h_log(b3));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "second broker status %d\n%s", st, h_log(b3));
    cr_assert(s_log_has(b3, "already"), "unclear message:\n%s", h_log(b3));

    /* The first keeps serving, on the same socket. */
    cr_assert_eq(stat(path, &sb), 0, "the socket file is gone");
    cr_assert_eq(h_wait_exit(b2, 0), -1, "the serving broker exited\n%s", h_log(b2));
    lc_client_t *c2 = h_client();
    rc = lc_call(c2, "broker.ping", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(res, "pid")), b2->pid);
    json_decref(res);
    lc_client_destroy(&c2);
    lc_client_destroy(&c);
}

/* ---- Limits ----------------------------------------------------------------------------- */

Test(robust, payload_too_large_refused)
{
    h_broker("--max-payload", "1000", NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    char big[2001];
    memset(big, 'x', 2000);
    big[2000] = 0;
    json_t *res = NULL;
    int rc = lc_call(c, "echo.echo", json_pack("{s:s}", "s", big), &res, 5000);
    cr_assert_eq(rc, LC_ETOOBIG, "got %s", lc_strerror(rc));
    cr_assert(json_string_value(json_object_get(res, "message")));
    json_decref(res);
    s_echo_ok(c, "echo.echo");
    /* Just under the limit passes. */
    memset(big, 'y', 900);
    big[900] = 0;
    rc = lc_call(c, "echo.echo", json_pack("{s:s}", "s", big), &res, 5000);
    cr_assert_eq(rc, 0, "got %s", lc_strerror(rc));
    cr_assert_eq(strlen(json_string_value(json_object_get(res, "s"))), 900);
    json_decref(res);
    lc_client_destroy(&c);
}

/* ---- tcp ---------------------------------------------------------------------------- */

Test(robust, tcp_endpoint)
{
    char tcp[64];
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", h_free_port());
    proc_t *broker = h_broker("--endpoint", tcp, NULL);
    proc_t *techo = h_spawn("techo", BIN("lc-echo"), "--name", "techo", "--bus", tcp, NULL);
    h_echo("iecho");
    lc_client_t *c = h_client(); /* ipc */
    h_wait_modules(c, "techo", NULL);

    lc_client_t *t = lc_client_new(NULL, tcp);
    cr_assert(t);
    int rc = lc_connect(t, 10000);
    cr_assert_eq(rc, 0, "tcp client: %s\n%s", lc_strerror(rc), h_log(broker));
    s_echo_ok(t, "techo.echo"); /* tcp -> tcp */
    s_echo_ok(t, "iecho.echo"); /* tcp -> ipc */
    s_echo_ok(c, "techo.echo"); /* ipc -> tcp */
    /* A chain across both: ipc client -> tcp module -> ipc module. */
    json_t *res = NULL;
    rc = lc_call(c, "techo.call",
                 json_pack("{s:s, s:{s:i}}", "target", "iecho.echo", "args", "v", 5), &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(res, "v")), 5);
    json_decref(res);

    json_t *m = s_module_entry(c, "techo");
    cr_assert(m);
    cr_assert_str_eq(json_string_value(json_object_get(m, "liveness")), "heartbeat");
    json_decref(m);
    cr_assert_eq(h_wait_exit(techo, 0), -1, "%s", h_log(techo));
    lc_client_destroy(&t);
    lc_client_destroy(&c);
}

/* A task that crashes its module at once is reported, not delivered again after the
 * restart (its start notice may have died with the process). */
Test(robust, crashing_task_is_not_redelivered)
{
    h_broker(NULL);
    proc_t *first = h_echo("poison");
    lc_client_t *c = h_client();
    json_t *info = NULL;
    int rc = lc_enqueue_wait(c, "poison.crash", NULL, 0, 5000, &info);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    json_decref(info);
    int st = h_wait_exit(first, 10000);
    cr_assert(st != -1 && WIFSIGNALED(st), "the module did not crash");
    proc_t *again = h_echo("poison");
    /* It serves a call, so it has been active with its backlog delivered. */
    s_echo_ok(c, "poison.echo");
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "broker.stats", NULL, &res, 0), 0);
    cr_assert_geq(json_integer_value(json_object_get(res, "lost")), 1);
    json_decref(res);
    cr_assert_eq(h_wait_exit(again, 0), -1, "the crashing task ran again\n%s", h_log(again));
    lc_client_destroy(&c);
}

/* ---- The launcher dies ---------------------------------------------------------------- */

/* Whether a process has ended: it no longer exists, or it is a zombie waiting for whoever
 * inherited it (lc-launch's children go to init, or to a subreaper, when it dies). */
static bool s_gone(pid_t pid)
{
    if (kill(pid, 0) < 0)
        return true;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* the state follows the command's name */
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* lc-launch killed with SIGKILL: the broker and the modules it started get SIGTERM and
 * stop, instead of running on unsupervised and keeping a new lc-launch's broker from the
 * endpoint; a new lc-launch then runs the system again. */
Test(robust, a_killed_launcher_takes_its_system_down)
{
    char path[400];
    snprintf(path, sizeof path, "%s/system.yaml", h_dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "bus: {endpoint: %s}\nmodules:\n  echo: {program: %s}\n", h_bus, BIN("lc-echo"));
    fclose(f);
    proc_t *l = h_spawn("launch", BIN("lc-launch"), path, NULL);
    lc_client_t *c = lc_client_new(NULL, h_bus);
    cr_assert_eq(lc_connect(c, 10000), 0, "no bus:\n%s", h_log(l));
    h_wait_modules(c, "echo", NULL);
    json_t *st = NULL;
    cr_assert_eq(lc_call(c, "launcher.status", NULL, &st, 5000), 0);
    pid_t broker = (pid_t)h_int(json_object_get(st, "broker"), "pid");
    pid_t echo = (pid_t)h_module_int(c, "echo", "pid");
    json_decref(st);
    lc_client_destroy(&c);
    cr_assert_gt(broker, 0);
    cr_assert_gt(echo, 0);

    h_stop(l, SIGKILL, 5000);
    int64_t deadline = lc_mono_ms() + 15000;
    while (!s_gone(broker) || !s_gone(echo)) {
        cr_assert(lc_mono_ms() < deadline, "after lc-launch was killed, %s still runs",
                  s_gone(broker) ? "lc-echo" : "the broker");
        usleep(10000); /* polling a condition, with the deadline above */
    }
    /* The endpoint is free for the system's next start. */
    proc_t *l2 = h_spawn("launch2", BIN("lc-launch"), path, NULL);
    c = lc_client_new(NULL, h_bus);
    cr_assert_eq(lc_connect(c, 10000), 0, "no bus after a new start:\n%s", h_log(l2));
    h_wait_modules(c, "echo", NULL);
    lc_client_destroy(&c);
    h_stop(l2, SIGTERM, 15000);
}

/* A module told to stop (SIGTERM) while its broker is away stops: its hooks run and it
 * exits, instead of waiting (spinning) for a broker that may never come back. */
Test(robust, sigterm_while_the_broker_is_away_stops_the_module)
{
    proc_t *b = h_broker(NULL);
    proc_t *echo = h_echo("echo");
    h_stop(b, SIGKILL, 5000);
    /* The module notices the lost connection (liblc's socket monitor) ... */
    free(h_wait_log(echo, "connection to the broker", 1, 10000));
    /* ... and a SIGTERM then ends it, with its shutdown hooks. */
    kill(echo->pid, SIGTERM);
    int st = h_wait_exit(echo, 10000);
    cr_assert(st >= 0, "lc-echo did not stop within 10 s of its SIGTERM with the broker away\n%s",
              h_log(echo));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d\n%s", st, h_log(echo));
}
