/* The fuzzing corpora, replayed: every checked-in input (seeds, and the inputs of crashes
 * found and fixed) runs through its harness built with the suite's compiler and
 * sanitizers. `make fuzz` searches for new ones (docs/reliability.md). */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/wait.h>

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
