/* The fuzzing corpora, replayed: every checked-in input (seeds, and the inputs of crashes
 * found and fixed) runs through its harness built with the suite's compiler and
 * sanitizers. `make fuzz` searches for new ones (docs/reliability.md). */
#include "harness.h"
#include "wire.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void s_replay(const char *name)
{
    char bin[512], corpus[512];
    snprintf(bin, sizeof bin, "%s/tests/fuzz-replay-%s", LC_BUILD_DIR, name);
    snprintf(corpus, sizeof corpus, "%s/tests/fuzz/corpus/%s", LC_SOURCE_DIR, name);
    char *argv[] = {bin, corpus, NULL};
    char log[64];
    snprintf(log, sizeof log, "replay-%s", name);
    proc_t *p = h_spawnv(log, argv);
    int status = h_wait_exit(p, 120000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "%s over %s ended with status %d; its output: %s/%s.log", bin, corpus, status, h_dir,
              log);
}

TestSuite(fuzz, .init = h_setup, .fini = h_teardown);

Test(fuzz, broker_corpus_replays)
{
    s_replay("broker");
}

Test(fuzz, client_corpus_replays)
{
    s_replay("client");
}

Test(fuzz, yaml_corpus_replays)
{
    s_replay("yaml");
}

Test(fuzz, args_corpus_replays)
{
    s_replay("args");
}

/* ---- The live fuzz -------------------------------------------------------------------- */

static long s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* How many live_tick events from this test's client (source `from`) `module` handled. */
static int s_ticks(lc_client_t *c, const char *module, const char *from)
{
    json_t *e = h_recorded(c, module);
    int n = 0;
    size_t i;
    json_t *entry;
    json_array_foreach(e, i, entry)
    {
        const char *name = json_string_value(json_object_get(entry, "name"));
        const char *source = json_string_value(json_object_get(entry, "source"));
        if (name && source && strcmp(name, "live_tick") == 0 && strcmp(source, from) == 0)
            n++;
    }
    json_decref(e);
    return n;
}

/* A process sends random and mutated messages to the broker while two well-behaved modules
 * exchange calls and events: every call between them is answered right, every event
 * reaches both, and the broker's memory stays bounded and it exits cleanly. */
Test(fuzz, live_fuzz_leaves_the_modules_unharmed, .timeout = 7200)
{
    proc_t *b = h_broker(NULL);
    h_echo_with("a", "--listen", "live_tick", NULL);
    h_echo_with("b", "--listen", "live_tick", NULL);
    lc_client_t *c = h_client();
    long rss0 = s_rss_kb(b->pid), rss_max = rss0;
    char corpus[512];
    snprintf(corpus, sizeof corpus, "%s/tests/fuzz/corpus/broker", LC_SOURCE_DIR);
    /* `make fuzz` runs it longer: LC_LIVE_FUZZ_SECONDS. */
    const char *secs = getenv("LC_LIVE_FUZZ_SECONDS");
    proc_t *f = secs ? h_spawn("live", LC_BUILD_DIR "/tests/lc-fuzz-live", "--bus", h_bus,
                               "--seconds", secs, "--corpus", corpus, NULL)
                     : h_spawn("live", LC_BUILD_DIR "/tests/lc-fuzz-live", "--bus", h_bus,
                               "--messages", "100000", "--seed", "7", "--corpus", corpus, NULL);
    int calls = 0, events = 0;
    while (h_wait_exit(f, 0) < 0) {
        json_t *res = NULL;
        int rc = lc_call(c, "a.call",
                         json_pack("{s:s, s:{s:i}}", "target", "b.echo", "args", "i", calls), &res,
                         10000);
        cr_assert_eq(rc, 0, "call %d a -> b during the fuzz: %s %s", calls, lc_strerror(rc),
                     h_dump(res));
        cr_assert_eq(h_int(res, "i"), calls, "%s", h_dump(res));
        json_decref(res);
        calls++;
        json_t *info = NULL;
        rc = lc_emit_wait(c, "live_tick", json_pack("{s:i}", "i", events), 0, 10000, &info);
        cr_assert_eq(rc, 0, "event %d during the fuzz: %s %s", events, lc_strerror(rc),
                     h_dump(info));
        json_decref(info);
        events++;
        long rss = s_rss_kb(b->pid);
        if (rss > rss_max)
            rss_max = rss;
    }
    int status = h_wait_exit(f, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lc-fuzz-live: %d\n%s", status,
              h_log(f));
    cr_log_info("%s; %d calls and %d events meanwhile; broker RSS %ld kB at the start, at most "
                "%ld kB",
                h_log(f), calls, events, rss0, rss_max);
    cr_assert_gt(calls, 0);
    const char *me = lc_client_name(c);
    int64_t deadline = lc_mono_ms() + 20000;
    while (s_ticks(c, "a", me) < events || s_ticks(c, "b", me) < events) {
        cr_assert(lc_mono_ms() < deadline, "events lost: a has %d, b has %d of %d",
                  s_ticks(c, "a", me), s_ticks(c, "b", me), events);
        usleep(10000); /* polling a condition, with the deadline above */
    }
    /* Bounded: the fuzz's registrations, calls and queued items are cleaned up or capped;
     * the sanitizers' own bookkeeping grows by itself, so only the plain build checks it. */
    if (!LC_SANITIZE)
        cr_expect_lt(rss_max - rss0, 64 * 1024, "broker RSS grew from %ld kB to %ld kB", rss0,
                     rss_max);
    lc_client_destroy(&c);
    status = h_stop(b, SIGTERM, 15000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "broker: %d\n%s", status, h_log(b));
}
