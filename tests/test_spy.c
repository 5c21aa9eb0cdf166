/* lc-spy and the broker's monitor tap: what is seen, filters, JSON, recording, drops. */
#include "harness.h"
#include "wire.h"

#include <criterion/criterion.h>
#include <zmq.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(spy, .init = h_setup, .fini = h_teardown, .timeout = 120);

/* Starts lc-spy on the test bus with extra options (NULL-terminated) and waits until it has
 * attached, so that everything sent afterwards reaches it. */
static proc_t *s_spy(const char *logname, ...)
{
    va_list ap;
    va_start(ap, logname);
    proc_t *p = h_spawn_bus(logname, BIN("lc-spy"), ap);
    va_end(ap);
    free(h_wait_log(p, "lc-spy: tracing", 1, 10000));
    return p;
}

/* The JSON lines of a spy's log (its stderr lines start with "lc-spy:"). */
static json_t *s_lines(proc_t *p)
{
    char *text = h_slurp(p->log);
    cr_assert(text);
    json_t *all = json_array();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != '{')
            continue;
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        cr_assert(o, "not JSON: %s (%s)", line, e.text);
        json_array_append_new(all, o);
    }
    free(text);
    return all;
}

/* The first record whose string fields equal the given pairs (NULL-terminated). */
static json_t *s_find(json_t *lines, ...)
{
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        va_list ap;
        va_start(ap, lines);
        bool ok = true;
        const char *k;
        while (ok && (k = va_arg(ap, const char *))) {
            const char *v = va_arg(ap, const char *);
            const char *have = json_string_value(json_object_get(o, k));
            ok = have && strcmp(have, v) == 0;
        }
        va_end(ap);
        if (ok)
            return o;
    }
    return NULL;
}

static size_t s_count_type(json_t *lines, const char *type)
{
    size_t n = 0, i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        const char *t = json_string_value(json_object_get(o, "type"));
        n += t && strcmp(t, type) == 0;
    }
    return n;
}

static bool s_to_has(json_t *rec, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "to"), i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            return true;
    }
    return false;
}

static void s_call_ok(lc_client_t *c, const char *target, json_t *args)
{
    json_t *res = NULL;
    int rc = lc_call(c, target, args, &res, 10000);
    cr_assert_eq(rc, 0, "%s: %s", target, lc_strerror(rc));
    json_decref(res);
}

/* A marker event: once the spy shows it, it has shown everything sent before it. */
static void s_mark(lc_client_t *c, proc_t *spy, const char *name, int nth)
{
    int rc = lc_emit_wait(c, name, NULL, 0, 10000, NULL);
    cr_assert_eq(rc, 0, "emit %s: %s", name, lc_strerror(rc));
    char needle[96];
    snprintf(needle, sizeof needle, "\"target\":\"%s\"", name);
    free(h_wait_log(spy, needle, nth, 10000));
}

Test(spy, sees_every_kind_with_source_target_priority_and_tx)
{
    h_broker(NULL);
    h_echo_with("e1", "--listen", "news", NULL);
    proc_t *spy = s_spy("spy", "--json", NULL);
    lc_client_t *c = h_client();
    const char *me = lc_client_name(c);

    s_call_ok(c, "e1.echo", json_pack("{s:i}", "x", 7));
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "e1.fail", NULL, &res, 10000), LC_EHANDLER);
    json_decref(res);
    cr_assert_eq(lc_call(c, "nobody.echo", NULL, NULL, 10000), LC_ENOMODULE);
    h_enqueue_ok(c, "e1.record", json_pack("{s:s}", "k", "task"), 2);
    cr_assert_eq(lc_enqueue_wait(c, "nobody.echo", NULL, 0, 10000, NULL), LC_ENOMODULE);
    cr_assert_eq(lc_emit_wait(c, "news", json_pack("{s:i}", "n", 1), 4, 10000, NULL), 0);
    json_decref(h_wait_recorded(c, "e1", 2, 10000));
    s_mark(c, spy, "the_end", 1);

    json_t *lines = s_lines(spy);
    json_t *call = s_find(lines, "type", "call", "target", "e1.echo", "source", me, NULL);
    cr_assert(call, "no call record:\n%s", h_log(spy));
    cr_assert_str_eq(json_string_value(json_object_get(call, "kind")), "call");
    cr_assert(s_to_has(call, "e1"));
    cr_assert_eq(h_int(call, "priority"), 3);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(call, "payload"), "x")), 7);
    cr_assert_eq(h_int(call, "timeout_ms"), 10000);

    /* The reply names its call (parent) and its latency. */
    json_t *reply = s_find(lines, "type", "reply", "parent", h_str(call, "id"), NULL);
    cr_assert(reply, "no reply to the call:\n%s", h_dump(lines));
    cr_assert_str_eq(h_str(reply, "source"), "e1");
    cr_assert(s_to_has(reply, me));
    cr_assert_str_eq(h_str(reply, "tx"), h_str(call, "tx"));
    cr_assert(h_int(reply, "latency_us") >= 0);
    cr_assert(h_int(reply, "time_us") >= h_int(call, "time_us"));

    /* A handler's error, and the broker's own. */
    json_t *fcall = s_find(lines, "type", "call", "target", "e1.fail", NULL);
    cr_assert(fcall);
    json_t *ferr = s_find(lines, "type", "error", "parent", h_str(fcall, "id"), NULL);
    cr_assert(ferr);
    cr_assert_str_eq(h_str(ferr, "status_name"), "handler");
    cr_assert_str_eq(h_str(ferr, "kind"), "error");
    cr_assert_str_eq(h_str(ferr, "source"), "e1");
    json_t *ncall = s_find(lines, "type", "call", "target", "nobody.echo", NULL);
    cr_assert(ncall);
    json_t *nerr = s_find(lines, "type", "error", "parent", h_str(ncall, "id"), NULL);
    cr_assert(nerr);
    cr_assert_str_eq(h_str(nerr, "source"), "broker");
    cr_assert_str_eq(h_str(nerr, "status_name"), "unknown_module");

    /* A task with its priority and recipient; a refused one; an event with its subscriber. */
    json_t *task = s_find(lines, "type", "task", "target", "e1.record", NULL);
    cr_assert(task, "%s", h_dump(lines));
    cr_assert_str_eq(h_str(task, "source"), me);
    cr_assert_eq(h_int(task, "priority"), 2);
    cr_assert(s_to_has(task, "e1"));
    json_t *refused = s_find(lines, "type", "refused", "target", "nobody.echo", NULL);
    cr_assert(refused);
    cr_assert_str_eq(h_str(refused, "kind"), "error");
    cr_assert_str_eq(h_str(refused, "status_name"), "unknown_module");
    json_t *ev = s_find(lines, "type", "event", "target", "news", NULL);
    cr_assert(ev);
    cr_assert_eq(h_int(ev, "priority"), 4);
    cr_assert(s_to_has(ev, "e1"));
    cr_assert_str_eq(h_str(ev, "source"), me);

    /* Completions name what they finish, with the time from acceptance. */
    size_t i;
    json_t *o;
    bool task_done = false, event_done = false;
    json_array_foreach(lines, i, o)
    {
        size_t j;
        json_t *d;
        json_array_foreach(json_object_get(o, "done"), j, d)
        {
            const char *id = h_str(d, "id");
            task_done |= strcmp(id, h_str(task, "id")) == 0 &&
                         strcmp(h_str(d, "name"), "e1.record") == 0 &&
                         json_integer_value(json_object_get(d, "latency_us")) >= 0;
            event_done |= strcmp(id, h_str(ev, "id")) == 0;
        }
    }
    cr_assert(task_done && event_done, "%s", h_dump(lines));

    /* Registrations and state changes. */
    cr_assert(s_find(lines, "type", "welcome", "target", me, NULL), "%s", h_dump(lines));
    json_decref(lines);

    /* A module's whole life, from a second spy. */
    proc_t *spy2 = s_spy("spy2", "--json", "--kind", "control", NULL);
    proc_t *e2 = h_echo_with("e2", NULL);
    h_stop(e2, SIGTERM, 10000);
    s_mark(c, spy, "after_e2", 1);
    free(h_wait_log(spy2, "\"type\":\"bye\"", 1, 10000));
    lines = s_lines(spy2);
    cr_assert(s_find(lines, "type", "welcome", "target", "e2", NULL));
    cr_assert(s_find(lines, "type", "state", "source", "e2", "target", "passive", NULL));
    cr_assert(s_find(lines, "type", "state", "source", "broker", "target", "activate", NULL));
    cr_assert(s_find(lines, "type", "bye", "source", "e2", NULL));
    cr_assert_eq(s_count_type(lines, "call") + s_count_type(lines, "event"), 0,
                 "--kind control shows control only");
    json_decref(lines);
    lc_client_destroy(&c);
}

Test(spy, text_lines_pair_calls_with_latency)
{
    h_broker(NULL);
    h_echo("e1");
    proc_t *spy = s_spy("spy", "--color", "never", NULL);
    lc_client_t *c = h_client();
    s_call_ok(c, "e1.echo", json_pack("{s:s}", "word", "hello"));
    char *log = h_wait_log(spy, " reply ", 1, 10000);
    cr_assert(strstr(log, " call     "), "%s", log);
    cr_assert(strstr(log, "→ e1.echo"), "%s", log);
    cr_assert(strstr(log, "{\"word\":\"hello\"}"), "%s", log);
    cr_assert(strstr(log, "e1 → ") && strstr(log, "(e1.echo)"), "%s", log);
    cr_assert(strstr(log, " ms p3 tx "), "%s", log);
    cr_assert(!strstr(log, "\033["), "no colors when asked for none: %s", log);
    free(log);
    lc_client_destroy(&c);
}

Test(spy, filters_by_module_event_kind_and_errors)
{
    h_broker(NULL);
    h_echo_with("e1", "--listen", "pushed_*", NULL);
    h_echo_with("e2", "--listen", "*", NULL);
    proc_t *by_module = s_spy("module", "--json", "--module", "e1", NULL);
    proc_t *by_event = s_spy("event", "--json", "--event", "pushed_s*", NULL);
    proc_t *by_kind = s_spy("kind", "--json", "--kind", "task,reply", NULL);
    proc_t *errors = s_spy("errors", "--json", "--errors", NULL);
    lc_client_t *c = h_client();

    s_call_ok(c, "e1.echo", NULL);
    s_call_ok(c, "e2.echo", NULL);
    h_enqueue_ok(c, "e2.record", NULL, 0);
    cr_assert_eq(lc_emit_wait(c, "pushed_short", NULL, 0, 10000, NULL), 0);
    cr_assert_eq(lc_emit_wait(c, "pushed_long", NULL, 0, 10000, NULL), 0);
    cr_assert_eq(lc_call(c, "e2.fail", NULL, NULL, 10000), LC_EHANDLER);
    cr_assert_eq(lc_call(c, "e2.nothing", NULL, NULL, 10000), LC_ENOMETHOD);
    /* The last message every spy shows, whatever its filter. */
    cr_assert_eq(lc_emit_wait(c, "pushed_short", json_pack("{s:b}", "last", 1), 0, 10000, NULL), 0);
    cr_assert_eq(lc_call(c, "e1.fail", NULL, NULL, 10000), LC_EHANDLER);
    free(h_wait_log(by_module, "\"status_name\":\"handler\"", 1, 10000));
    free(h_wait_log(by_event, "\"last\":true", 1, 10000));
    free(h_wait_log(errors, "\"source\":\"e1\"", 1, 10000));
    json_decref(h_wait_recorded(c, "e2", 4, 10000));
    h_enqueue_ok(c, "e2.record", json_pack("{s:b}", "final_task", 1), 0);
    free(h_wait_log(by_kind, "\"type\":\"task\",\"source\"", 2, 10000));

    json_t *lines = s_lines(by_module);
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        const char *target = h_str(o, "target");
        cr_assert(strcmp(h_str(o, "source"), "e1") == 0 || s_to_has(o, "e1") ||
                      strncmp(target, "e1.", 3) == 0,
                  "--module e1 showed %s", h_dump(o));
    }
    cr_assert(s_find(lines, "type", "call", "target", "e1.echo", NULL));
    cr_assert(s_find(lines, "type", "event", "target", "pushed_long", NULL), "e1 gets it");
    cr_assert(!s_find(lines, "type", "call", "target", "e2.echo", NULL));
    json_decref(lines);

    lines = s_lines(by_event);
    cr_assert_eq(json_array_size(lines), 2, "%s", h_dump(lines));
    json_array_foreach(lines, i, o)
    {
        cr_assert_str_eq(h_str(o, "target"), "pushed_short");
    }
    json_decref(lines);

    lines = s_lines(by_kind);
    json_array_foreach(lines, i, o)
    {
        const char *t = h_str(o, "type");
        cr_assert(strcmp(t, "task") == 0 || strcmp(t, "reply") == 0, "%s", h_dump(o));
    }
    cr_assert_eq(s_count_type(lines, "task"), 2, "%s", h_dump(lines));
    cr_assert(s_count_type(lines, "reply") >= 2);
    json_decref(lines);

    lines = s_lines(errors);
    json_array_foreach(lines, i, o)
    {
        cr_assert_str_eq(h_str(o, "kind"), "error", "%s", h_dump(o));
    }
    cr_assert(s_find(lines, "status_name", "handler", "source", "e2", NULL));
    cr_assert(s_find(lines, "status_name", "unknown_method", NULL));
    json_decref(lines);
    lc_client_destroy(&c);
}

Test(spy, record_then_replay_with_a_transaction_tree)
{
    h_broker(NULL);
    h_echo_with("e1", NULL);
    h_echo_with("e2", "--listen", "chain", NULL);
    char rec[300];
    snprintf(rec, sizeof rec, "%s/trace.rec", h_dir);
    proc_t *spy = s_spy("live", "--json", "--record", rec, NULL);
    lc_client_t *c = h_client();
    /* One transaction: a task to e1 that emits an event handled by e2; and a call chain
     * e1 -> e2 in another. */
    h_enqueue_ok(c, "e1.forward", json_pack("{s:s}", "event", "chain"), 0);
    s_call_ok(c, "e1.call", json_pack("{s:s, s:{}}", "target", "e2.echo", "args"));
    json_decref(h_wait_recorded(c, "e2", 1, 10000));
    s_mark(c, spy, "the_end", 1);
    h_stop(spy, SIGTERM, 10000);
    json_t *live = s_lines(spy);
    char *log = h_slurp(spy->log);
    cr_assert(strstr(log, "messages shown, 0 dropped"), "%s", log);
    free(log);

    /* The replay shows exactly what the live spy showed. */
    proc_t *replay = h_spawn("replay", BIN("lc-spy"), "--replay", rec, "--json", NULL);
    cr_assert_eq(h_wait_exit(replay, 10000), 0, "%s", h_log(replay));
    json_t *again = s_lines(replay);
    cr_assert(json_equal(live, again), "live:\n%s\nreplay: %zu lines", h_dump(live),
              json_array_size(again));

    /* The task's transaction: the task, the event it caused (a child), their completions. */
    json_t *task = s_find(live, "type", "task", "target", "e1.forward", NULL);
    cr_assert(task);
    const char *tx = h_str(task, "tx");
    proc_t *tree =
        h_spawn("tree", BIN("lc-spy"), "--replay", rec, "--tx", tx, "--color", "never", NULL);
    cr_assert_eq(h_wait_exit(tree, 10000), 0, "%s", h_log(tree));
    const char *out = h_log(tree);
    cr_assert(strstr(out, "task     ") && strstr(out, "→ e1.forward"), "%s", out);
    cr_assert(strstr(out, "└ event") && strstr(out, "→ chain ⇒ e2"), "the event is a child:\n%s",
              out);
    cr_assert(!strstr(out, "e1.call"), "another transaction:\n%s", out);
    json_t *ev = s_find(live, "type", "event", "target", "chain", NULL);
    cr_assert(ev);
    cr_assert_str_eq(h_str(ev, "tx"), tx);
    cr_assert_str_eq(h_str(ev, "parent"), h_str(task, "id"));

    /* The call chain shares one transaction too. */
    json_t *outer = s_find(live, "type", "call", "target", "e1.call", NULL);
    json_t *inner = s_find(live, "type", "call", "target", "e2.echo", NULL);
    cr_assert(outer && inner);
    cr_assert_str_eq(h_str(inner, "tx"), h_str(outer, "tx"));
    cr_assert_str_eq(h_str(inner, "parent"), h_str(outer, "id"));
    cr_assert_str_eq(h_str(inner, "source"), "e1");

    /* A recording cut inside a record replays up to there, then says so. */
    char cut[300];
    snprintf(cut, sizeof cut, "%s/cut.rec", h_dir);
    char *whole = NULL;
    size_t size = 0;
    FILE *in = fopen(rec, "rb");
    cr_assert(in);
    FILE *mem = open_memstream(&whole, &size);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, in)) > 0)
        fwrite(chunk, 1, got, mem);
    fclose(in);
    fclose(mem);
    FILE *cutf = fopen(cut, "wb");
    cr_assert(cutf && size > 20);
    fwrite(whole, 1, size - 5, cutf);
    fclose(cutf);
    free(whole);
    proc_t *short_replay = h_spawn("short", BIN("lc-spy"), "--replay", cut, "--json", NULL);
    cr_assert_eq(WEXITSTATUS(h_wait_exit(short_replay, 10000)), 1, "%s", h_log(short_replay));
    char *slog = h_slurp(short_replay->log);
    cr_assert(strstr(slog, "ends in the middle of record"), "%s", slog);
    json_t *partial = s_lines(short_replay);
    cr_assert_eq(json_array_size(partial), json_array_size(live) - 1, "all but the cut record");
    json_decref(partial);
    free(slog);

    /* A replay of a file that is not a recording says so. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.rec", h_dir);
    FILE *f = fopen(bad, "w");
    fputs("hello\n", f);
    fclose(f);
    proc_t *wrong = h_spawn("wrong", BIN("lc-spy"), "--replay", bad, NULL);
    cr_assert_eq(WEXITSTATUS(h_wait_exit(wrong, 10000)), 1);
    cr_assert(strstr(h_log(wrong), "is not an lc-spy recording"), "%s", h_log(wrong));
    json_decref(live);
    json_decref(again);
    lc_client_destroy(&c);
}

Test(spy, count_and_duration_stop_by_themselves)
{
    h_broker(NULL);
    h_echo("e1");
    proc_t *counted = s_spy("count", "--json", "--count", "3", "--kind", "call", NULL);
    proc_t *timed = s_spy("duration", "--duration", "0.3", NULL);
    lc_client_t *c = h_client();
    for (int i = 0; i < 5; i++)
        s_call_ok(c, "e1.echo", json_pack("{s:i}", "i", i));
    cr_assert_eq(h_wait_exit(counted, 10000), 0, "%s", h_log(counted));
    json_t *lines = s_lines(counted);
    cr_assert_eq(json_array_size(lines), 3, "%s", h_dump(lines));
    json_decref(lines);
    cr_assert_eq(h_wait_exit(timed, 10000), 0, "%s", h_log(timed));
    cr_assert(strstr(h_log(timed), "messages shown"), "%s", h_log(timed));
    lc_client_destroy(&c);
}

/* Many events at once: the spy shows each, or says exactly how many it missed, and its count
 * agrees with the broker's. */
Test(spy, a_fast_stream_is_shown_or_its_losses_counted)
{
    h_broker(NULL);
    proc_t *spy = s_spy("spy", "--json", "--kind", "event", NULL);
    lc_client_t *c = h_client();
    const int n = 30000;
    for (int i = 0; i < n; i++)
        cr_assert_eq(lc_emit(c, "tick", json_pack("{s:i}", "i", i), 0), 0);
    s_mark(c, spy, "the_end", 1);
    h_stop(spy, SIGTERM, 10000);
    json_t *lines = s_lines(spy);
    size_t ticks = 0, i;
    json_int_t dropped = 0, next = 0;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        if (json_object_get(o, "count")) {
            dropped += json_integer_value(json_object_get(o, "count"));
            continue;
        }
        if (strcmp(h_str(o, "target"), "tick") != 0)
            continue;
        /* In order, none twice. */
        json_int_t k = json_integer_value(json_object_get(json_object_get(o, "payload"), "i"));
        cr_assert(k >= next, "tick %lld after %lld", (long long)k, (long long)next - 1);
        next = k + 1;
        ticks++;
    }
    cr_assert_eq(h_stat(c, "tap_dropped"), dropped);
    cr_assert(ticks + (size_t)dropped >= (size_t)n && ticks <= (size_t)n,
              "%zu shown, %lld reported dropped, of %d", ticks, (long long)dropped, n);
    char summary[96], *log = h_slurp(spy->log);
    snprintf(summary, sizeof summary, "messages shown, %lld dropped", (long long)dropped);
    cr_assert(strstr(log, summary), "%s", log);
    free(log);
    json_decref(lines);
    lc_client_destroy(&c);
}

/* A spy that stops reading costs the bus nothing: the broker drops its records and counts
 * them, and the spy reports them when it reads again. */
Test(spy, a_stopped_spy_never_slows_the_bus)
{
    h_broker("--monitor-queue", "100", NULL);
    h_echo("e1");
    proc_t *spy = s_spy("spy", "--json", "--kind", "call", NULL);
    proc_t *text = s_spy("text", "--color", "never", "--kind", "call", NULL);
    lc_client_t *c = h_client();
    kill(spy->pid, SIGSTOP);
    kill(text->pid, SIGSTOP);
    /* Enough records to fill the spy's socket and the broker's queue for it many times. */
    int64_t deadline = lc_mono_ms() + 60000;
    int calls = 0;
    while (h_stat(c, "tap_dropped") == 0) {
        for (int i = 0; i < 200; i++, calls++)
            s_call_ok(c, "e1.echo", json_pack("{s:i}", "i", calls));
        cr_assert(lc_mono_ms() < deadline, "nothing dropped after %d calls", calls);
    }
    json_int_t dropped = h_stat(c, "tap_dropped");
    kill(spy->pid, SIGCONT);
    kill(text->pid, SIGCONT);
    /* Until it has drained its backlog, what is sent meanwhile may be dropped too: probe
     * until a call reaches it, then mark the end. */
    deadline = lc_mono_ms() + 20000;
    for (int probe = 0;; probe++) {
        s_call_ok(c, "e1.echo", json_pack("{s:i}", "probe", probe));
        char *log = h_slurp(spy->log);
        bool through = log && strstr(log, "\"probe\":");
        free(log);
        if (through)
            break;
        cr_assert(lc_mono_ms() < deadline, "no call reached the spy after it resumed");
        poll(NULL, 0, 5); /* the interval of a wait that has a deadline */
    }
    s_call_ok(c, "e1.echo", json_pack("{s:b}", "last", 1));
    free(h_wait_log(spy, "\"last\":true", 1, 20000));
    free(h_wait_log(text, "{\"last\":true}", 1, 20000));
    /* In text, the gap is a line of its own where the records are missing. */
    free(h_wait_log(text, " messages dropped: the spy could not keep up", 1, 10000));
    h_stop(spy, SIGTERM, 10000);
    json_t *lines = s_lines(spy);
    json_int_t reported = 0;
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        reported += json_integer_value(json_object_get(o, "count"));
    }
    cr_assert(reported >= dropped, "broker dropped %lld, spy reported %lld", (long long)dropped,
              (long long)reported);
    cr_assert_eq(reported, h_stat(c, "tap_dropped"));
    json_decref(lines);
    lc_client_destroy(&c);
}

Test(spy, attaching_and_detaching_does_not_disturb_the_bus)
{
    h_broker(NULL);
    h_echo("e1");
    lc_client_t *c = h_client();
    for (int round = 0; round < 15; round++) {
        char name[16];
        snprintf(name, sizeof name, "spy%d", round);
        proc_t *spy = s_spy(name, "--json", NULL);
        s_call_ok(c, "e1.echo", json_pack("{s:i}", "round", round));
        h_enqueue_ok(c, "e1.record", NULL, 0);
        int st = h_stop(spy, round % 2 ? SIGKILL : SIGTERM, 10000);
        cr_assert_eq(st & 0x7f, round % 2 ? SIGKILL : 0, "round %d: status 0x%x\n%s", round, st,
                     h_log(spy));
        h_proc_free(&spy);
    }
    s_call_ok(c, "e1.echo", NULL);
    json_t *rec = h_wait_recorded(c, "e1", 15, 10000);
    cr_assert_eq(json_array_size(rec), 15);
    json_decref(rec);
    /* Every spy's departure is noticed. */
    int64_t deadline = lc_mono_ms() + 10000;
    while (h_stat(c, "spies") != 0)
        cr_assert(lc_mono_ms() < deadline, "spies still counted: %lld",
                  (long long)h_stat(c, "spies"));
    cr_assert_eq(h_stat(c, "spies_attached"), 15);
    cr_assert_eq(h_stat(c, "tap_dropped"), 0);
    lc_client_destroy(&c);
}

Test(spy, a_tcp_bus_names_its_monitor)
{
    char tcp[64], mon[300];
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", h_free_port());
    snprintf(mon, sizeof mon, "ipc://%s/mon", h_dir);
    h_broker("--endpoint", tcp, "--monitor", mon, NULL);
    lc_client_t *c = h_client();
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "broker.ping", NULL, &res, 10000), 0);
    cr_assert_str_eq(h_str(res, "monitor"), mon);
    json_decref(res);
    /* Over tcp the spy asks the broker where its monitor is. */
    proc_t *spy = h_spawn("spy", BIN("lc-spy"), "--bus", tcp, "--json", NULL);
    free(h_wait_log(spy, "lc-spy: tracing", 1, 10000));
    s_call_ok(c, "broker.ping", json_pack("{s:i}", "after", 1));
    free(h_wait_log(spy, "\"after\":1", 1, 10000));
    lc_client_destroy(&c);
}

Test(spy, clear_errors_for_bad_use)
{
    proc_t *p = h_spawn("help", BIN("lc-spy"), "--help", NULL);
    cr_assert_eq(h_wait_exit(p, 10000), 0);
    cr_assert(strstr(h_log(p), "Usage: lc-spy"));
    p = h_spawn("kind", BIN("lc-spy"), "--kind", "calls", NULL);
    cr_assert_eq(WEXITSTATUS(h_wait_exit(p, 10000)), 2);
    cr_assert(strstr(h_log(p), "--kind expects call, reply, error"), "%s", h_log(p));
    p = h_spawn("nobus", BIN("lc-spy"), "--bus", h_bus, NULL);
    cr_assert_eq(WEXITSTATUS(h_wait_exit(p, 10000)), 1);
    cr_assert(strstr(h_log(p), "no monitor at ipc://") && strstr(h_log(p), "is lc-broker running"),
              "%s", h_log(p));
    p = h_spawn("quiet", BIN("lc-spy"), "--quiet", NULL);
    cr_assert_eq(WEXITSTATUS(h_wait_exit(p, 10000)), 2);
    cr_assert(strstr(h_log(p), "--quiet only makes sense with --record"), "%s", h_log(p));
}

static void s_ignore(lc_client_t *self, int rc, json_t *result, void *arg)
{
    (void)self, (void)rc, (void)result, (void)arg;
}

/* A subscriber whose backlog is full loses its copy: the spy shows the loss, names the
 * module, and says the event reached nobody rather than that nobody listened. */
Test(spy, lost_copies_are_shown_with_their_module)
{
    h_broker("--max-backlog", "1", NULL);
    h_echo_with("e1", "--listen", "ev", "--window", "1", NULL);
    proc_t *text = s_spy("text", "--color", "never", "--event", "ev", NULL);
    proc_t *json = s_spy("json", "--json", "--errors", NULL);
    lc_client_t *c = h_client();
    /* e1's loop is held, so one copy waits in its window, one in its backlog. */
    cr_assert_eq(
        lc_call_async(c, "e1.block", json_pack("{s:i}", "ms", 3000), 10000, s_ignore, NULL), 0);
    h_wait_module_int(c, "e1", "calls_in", 1, 10000);
    for (int i = 0; i < 3; i++) {
        json_t *info = NULL;
        int rc = lc_emit_wait(c, "ev", json_pack("{s:i}", "i", i), 0, 10000, &info);
        cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
        json_decref(info);
    }
    char *log = h_wait_log(text, "(1 lost)", 1, 10000);
    cr_assert(strstr(log, "lost     ") && strstr(log, "→ ev, copy for e1"), "%s", log);
    free(log);
    free(h_wait_log(json, "\"type\":\"lost\"", 1, 10000));
    json_t *lines = s_lines(json);
    json_t *lost = s_find(lines, "type", "lost", NULL);
    cr_assert(lost && s_to_has(lost, "e1") && strcmp(h_str(lost, "target"), "ev") == 0, "%s",
              h_dump(lines));
    json_decref(lines);
    lc_client_destroy(&c);
}

/* A spy that attaches while another one lags (its batches dropped, the hello to the new spy
 * among them) still hears that it is attached, and shows what comes after. */
Test(spy, a_spy_attaching_beside_a_stuck_one_still_starts)
{
    h_broker("--monitor-queue", "2", NULL);
    h_echo("e1");
    proc_t *stuck = s_spy("stuck", "--json", NULL);
    lc_client_t *c = h_client();
    kill(stuck->pid, SIGSTOP);
    int64_t deadline = lc_mono_ms() + 60000;
    while (h_stat(c, "tap_dropped") == 0) {
        for (int i = 0; i < 100; i++)
            s_call_ok(c, "e1.echo", NULL);
        cr_assert(lc_mono_ms() < deadline, "nothing dropped for the stopped spy");
    }
    proc_t *fresh = h_spawn("fresh", BIN("lc-spy"), "--bus", h_bus, "--json", NULL);
    while (h_stat(c, "spies") < 2)
        cr_assert(lc_mono_ms() < deadline, "the new spy's subscription did not arrive");
    /* More traffic: the batch with the new spy's hello is dropped too. */
    json_int_t before = h_stat(c, "tap_dropped");
    while (h_stat(c, "tap_dropped") == before) {
        s_call_ok(c, "e1.echo", NULL);
        cr_assert(lc_mono_ms() < deadline, "no batch dropped after the new spy came");
    }
    kill(stuck->pid, SIGCONT);
    free(h_wait_log(fresh, "lc-spy: tracing", 1, 20000));
    s_call_ok(c, "e1.echo", json_pack("{s:b}", "after", 1));
    free(h_wait_log(fresh, "\"after\":true", 1, 20000));
    lc_client_destroy(&c);
}

/* The broker does not check payloads: one that is not JSON, not even UTF-8, still makes a
 * valid JSON line, as a string with U+FFFD for the bad bytes. */
Test(spy, a_payload_that_is_not_utf8_is_still_shown)
{
    h_broker(NULL);
    proc_t *spy = s_spy("spy", "--json", NULL);
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    cr_assert_eq(zmq_connect(sock, h_bus), 0);
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_t h = {.type = LC_MSG_HELLO, .seq = 1};
    lc_hdr_encode(&h, hb);
    const char *hello = "{\"token\":\"0123456789abcdef\"}";
    zmq_send(sock, hb, sizeof hb, ZMQ_SNDMORE);
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, hello, strlen(hello), 0);
    h = (lc_hdr_t){.type = LC_MSG_EVENT, .seq = 2};
    lc_hdr_encode(&h, hb);
    zmq_send(sock, hb, sizeof hb, ZMQ_SNDMORE);
    zmq_send(sock, "raw", 3, ZMQ_SNDMORE);
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, "\xff\xfe{", 3, 0);
    char *log = h_wait_log(spy, "\"target\":\"raw\"", 1, 10000);
    cr_assert(strstr(log, "\"payload\":\"\\uFFFD\\uFFFD{\""), "%s", log);
    free(log);
    json_t *lines = s_lines(spy);
    cr_assert(s_find(lines, "type", "event", "target", "raw", NULL), "%s", h_dump(lines));
    json_decref(lines);
    zmq_close(sock);
    zmq_ctx_term(ctx);
}
