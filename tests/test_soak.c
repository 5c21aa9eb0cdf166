/* The soak, short: lc-soak (tests/soak/soak.c) with 20,000 calls and 20,000 events through
 * one broker, two lc-echo modules, two callers, an emitter and two subscribers. Every
 * answer is right, every event reaches every subscriber in order, no process opens more
 * descriptors after warm-up, what each holds through malloc grows by less than 3% of its
 * size (`make soak`: 1%; the warm-up of a run of a second comes before each of libzmq's
 * pipes has taken its spare chunk of 16 kB, which the broker's heap shows as 32 to 48 kB,
 * 0.6%), and every process exits 0 (under the ASan build: with no leak report). RSS only
 * with a generous bound: a short run on a shared machine says little about it.
 * A caller that loses 64 bytes a call fails the run. And the two structures the soak
 * found keeping their largest size: the deadline heap and the idmap (docs/reliability.md). */
#include "harness.h"
#include "heap.h"
#include "idmap.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define SOAK_BIN LC_BUILD_DIR "/tests/lc-soak"

TestSuite(soak, .init = h_setup, .fini = h_teardown, .timeout = 180);

Test(soak, short_run_answers_delivers_and_stays_flat)
{
    char dir[300], json[300];
    snprintf(dir, sizeof dir, "%s/soak", h_dir);
    snprintf(json, sizeof json, "%s/soak.json", h_dir);
    proc_t *p = h_spawn("lc-soak", SOAK_BIN, "--calls", "20000", "--events", "20000",
                        "--interval-ms", "50", "--max-rss-growth", "50", "--max-heap-growth", "3",
                        "--dir", dir, "--json", json, NULL);
    int status = h_wait_exit(p, 170000);
    cr_assert_neq(status, -1, "lc-soak still runs after 170 s; its output: %s", p->log);

    json_error_t err;
    json_t *sum = json_load_file(json, 0, &err);
    cr_assert(sum, "no summary from lc-soak (%s): %s\n%s", json, err.text, h_log(p));
    cr_log_info("lc-soak: %s", h_dump(sum));

    json_t *calls = json_object_get(sum, "calls");
    cr_expect_eq(h_int(calls, "ok"), 20000, "calls answered correctly: %s", h_dump(calls));
    cr_expect_eq(h_int(calls, "bad"), 0);
    cr_expect_eq(h_int(calls, "failed"), 0);

    json_t *events = json_object_get(sum, "events");
    cr_expect_eq(h_int(events, "emitted"), 20000, "events: %s", h_dump(events));
    cr_expect_eq(h_int(events, "refused"), 0, "events refused or dropped: %s", h_dump(events));
    json_t *subs = json_object_get(events, "subscribers");
    cr_assert_eq(json_array_size(subs), 2, "subscribers: %s", h_dump(subs));
    size_t i;
    json_t *s;
    json_array_foreach(subs, i, s)
    {
        cr_expect_eq(h_int(s, "received"), 20000, "%s", h_dump(s));
        cr_expect_eq(h_int(s, "gaps"), 0, "%s", h_dump(s));
        cr_expect_eq(h_int(s, "dups"), 0, "%s", h_dump(s));
    }

    /* broker, 2 modules, 2 subscribers, 2 callers, the emitter */
    json_t *procs = json_object_get(sum, "processes");
    cr_assert_eq(json_array_size(procs), 8, "processes: %s", h_dump(procs));
    json_array_foreach(procs, i, s)
    {
        const char *name = h_str(s, "name");
        cr_expect_eq(h_int(s, "fds_end"), h_int(s, "fds_warm"),
                     "%s's descriptors went from %lld to %lld", name,
                     (long long)h_int(s, "fds_warm"), (long long)h_int(s, "fds_end"));
        cr_expect_eq(h_int(s, "exit"), 0, "%s exited with %lld; see %s/%s.log", name,
                     (long long)h_int(s, "exit"), dir, name);
        cr_expect(json_is_false(json_object_get(s, "leaks")), "%s reported leaks; see %s/%s.log",
                  name, dir, name);
    }
    cr_expect(json_is_true(json_object_get(sum, "ok")), "lc-soak failed:\n%s", h_log(p));
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lc-soak exited with status %d:\n%s",
              status, h_log(p));
    json_decref(sum);
}

Test(soak, help_lists_the_options)
{
    proc_t *p = h_spawn("help", SOAK_BIN, "--help", NULL);
    int status = h_wait_exit(p, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lc-soak --help: status %d", status);
    char *text = h_slurp(p->log);
    cr_expect(strstr(text, "--calls N") && strstr(text, "--events N") &&
                  strstr(text, "--valgrind") && strstr(text, "--max-rss-growth"),
              "%s", text);
    free(text);
}

Test(soak, bad_option_is_a_usage_error)
{
    proc_t *p = h_spawn("bad", SOAK_BIN, "--calls", "many", NULL);
    int status = h_wait_exit(p, 10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status %d", status);
    char *text = h_slurp(p->log);
    cr_expect(strstr(text, "--calls expects a number"), "%s", text);
    free(text);
}

/* Found by the soak: a module running its own poll loop on lc_fd() that sends outside
 * lc_dispatch() (here lc_emit between rounds) lets libzmq take in the answer that
 * arrived meanwhile without signalling its descriptor again; lc_fd() must still show it. */
static int s_answers;

static void s_answer(lc_client_t *c, int rc, json_t *result, void *arg)
{
    (void)c;
    (void)result;
    (void)arg;
    cr_expect_eq(rc, 0, "echo.echo: %s", lc_strerror(rc));
    s_answers++;
}

Test(soak, outside_loop_sees_an_answer_that_came_before_a_send)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    int fd = lc_fd(c);
    cr_assert_geq(fd, 0, "lc_fd: %s", lc_strerror(fd));
    s_answers = 0;
    for (int round = 0; round < 20; round++) {
        int rc =
            lc_call_async(c, "echo.echo", json_pack("{s:i}", "n", round), 5000, s_answer, NULL);
        cr_assert_eq(rc, 0, "lc_call_async: %s", lc_strerror(rc));
        /* The answer is there once lc_fd() is readable; nothing dispatches it yet. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 5000), 1, "round %d: no answer within 5 s", round);
        /* Not a synchronisation: libzmq takes in its commands at a send only when more
         * than about 1 ms passed since it last did; this lets that happen. */
        poll(NULL, 0, 2);
        rc = lc_emit(c, "soak_nobody_listens", NULL, 0);
        cr_assert_eq(rc, 0, "lc_emit: %s", lc_strerror(rc));
        cr_assert_eq(poll(&p, 1, 2000), 1,
                     "round %d: lc_fd() not readable after a send, with an answer waiting", round);
        h_dispatch_until(c, &s_answers, round + 1, 5000, "answers");
    }
    lc_client_destroy(&c);
}

/* A soak that does not see a leak proves nothing: a caller losing 64 bytes per answer
 * (lc-soak's --leak-bytes, not in its --help) must fail it, by its heap (about 500 kB more
 * at the end than at warm-up) or, in an ASan build, by LeakSanitizer's report. */
Test(soak, a_caller_that_leaks_fails_the_run)
{
    char dir[300], json[300];
    snprintf(dir, sizeof dir, "%s/leaky", h_dir);
    snprintf(json, sizeof json, "%s/leaky.json", h_dir);
    proc_t *p =
        h_spawn("lc-soak", SOAK_BIN, "--calls", "20000", "--events", "2000", "--interval-ms", "50",
                "--leak-bytes", "64", "--dir", dir, "--json", json, NULL);
    int status = h_wait_exit(p, 170000);
    cr_assert_neq(status, -1, "lc-soak still runs after 170 s; its output: %s", p->log);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "lc-soak exited with %d:\n%s", status,
              h_log(p));
    json_error_t err;
    json_t *sum = json_load_file(json, 0, &err);
    cr_assert(sum, "no summary from lc-soak (%s): %s\n%s", json, err.text, h_log(p));
    cr_expect(json_is_false(json_object_get(sum, "ok")), "%s", h_dump(sum));
    cr_expect_eq(h_int(json_object_get(sum, "calls"), "ok"), 20000, "%s", h_dump(sum));
    size_t i;
    json_t *s;
    int callers = 0;
    json_array_foreach(json_object_get(sum, "processes"), i, s)
    {
        const char *name = h_str(s, "name");
        bool caller = strncmp(name, "soak_caller", 11) == 0;
        callers += caller;
        if (LC_SANITIZE) {
            cr_expect_eq(json_is_true(json_object_get(s, "leaks")), caller, "%s", h_dump(s));
        } else {
            /* Warm-up comes at 20% of the work (22,000 calls and events), so each caller
             * makes at least 5,600 of its 10,000 calls after it, each losing a block of 64
             * bytes or more. The others' heaps may hold a spare chunk of 16 kB per libzmq
             * pipe that first held 256 messages after warm-up (docs/reliability.md). */
            long long grew = h_int(s, "heap_growth_bytes");
            if (caller)
                cr_expect_geq(grew, 5600 * 64, "%s", h_dump(s));
            else
                cr_expect_lt(grew, 5600 * 64 / 2, "%s", h_dump(s));
        }
    }
    cr_expect_eq(callers, 2, "%s", h_dump(sum));
    json_decref(sum);
}

/* A call answered in time leaves its deadline entry behind; the heap drops those in bulk
 * once they outnumber the open calls, and gives back its array, so it follows the open
 * calls and not the calls made within one timeout (100,000 entries, 2 MB, at 20,000
 * calls/s with 5 s deadlines). */
Test(soak, deadline_heap_keeps_the_open_calls_and_gives_back_the_rest)
{
    heap_t h;
    idmap_t open;
    heap_init(&h);
    idmap_init(&open);
    int dummy;
    /* 100,000 calls, each 10th still open, pushed with deadlines out of order */
    for (uint64_t k = 1; k <= 100000; k++) {
        if (k % 10 == 0)
            cr_assert_eq(idmap_put(&open, k, &dummy), 0);
        cr_assert_eq(heap_push(&h, (int64_t)((k * 7919) % 100003), k), 0);
        heap_prune(&h, &open);
        cr_assert_leq(h.count, 2 * open.count + 64, "after %llu pushes", (unsigned long long)k);
    }
    cr_expect_leq(h.cap, 4 * 2 * open.count + 256, "cap %zu for %zu open", h.cap, open.count);
    /* the calls get answered: the heap gives back its array */
    for (uint64_t k = 10; k <= 100000; k += 10)
        if (k % 1000)
            idmap_take(&open, k);
    heap_prune(&h, &open);
    cr_expect_leq(h.count, 100, "%zu entries for %zu open calls", h.count, open.count);
    cr_expect_leq(h.cap, 512, "cap %zu", h.cap);
    /* what is left comes out in deadline order, every open call among it */
    int64_t last = INT64_MIN;
    size_t seen = 0;
    for (const heap_entry_t *t; (t = heap_top(&h)); heap_pop(&h)) {
        cr_assert_geq(t->when, last);
        last = t->when;
        seen += idmap_get(&open, t->key) != NULL;
    }
    cr_expect_eq(seen, open.count);
    /* a few entries are not worth a pass */
    for (uint64_t k = 1; k <= 40; k++)
        cr_assert_eq(heap_push(&h, (int64_t)k, k + 200000), 0);
    heap_prune(&h, &open);
    cr_expect_eq(h.count, 40);
    heap_clear(&h);
    idmap_clear(&open);
}

/* A map that once held a window of 4,000 events in flight gives its table back when they
 * are done, and keeps working. */
Test(soak, idmap_gives_back_its_table_when_mostly_empty)
{
    idmap_t m;
    idmap_init(&m);
    int v[8];
    for (uint64_t k = 1; k <= 4000; k++)
        cr_assert_eq(idmap_put(&m, k, &v[k % 8]), 0);
    cr_assert_geq(m.cap, 4096);
    for (uint64_t k = 1; k <= 4000; k++) {
        cr_assert_eq(idmap_take(&m, k), &v[k % 8]);
        idmap_shrink(&m);
        if (k < 4000)
            cr_assert_eq(idmap_get(&m, 4000), &v[0], "after taking %llu", (unsigned long long)k);
        cr_assert(m.cap == IDMAP_MIN_SHRINK || m.count * 8 >= m.cap, "%zu in %zu slots", m.count,
                  m.cap);
    }
    cr_expect_eq(m.count, 0);
    cr_expect_eq(m.cap, IDMAP_MIN_SHRINK);
    idmap_shrink(&m); /* at its smallest: nothing to do */
    cr_expect_eq(m.cap, IDMAP_MIN_SHRINK);
    for (uint64_t k = 1; k <= 100; k++)
        cr_assert_eq(idmap_put(&m, k * 1000003, &v[1]), 0);
    for (uint64_t k = 1; k <= 100; k++)
        cr_assert_eq(idmap_get(&m, k * 1000003), &v[1]);
    idmap_clear(&m);
}
