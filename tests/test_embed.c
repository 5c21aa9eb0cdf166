/* A module that keeps its own poll() loop: lc_fd(), lc_timeout() and lc_dispatch(). */
#include "harness.h"
#include "wire.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <unistd.h>

TestSuite(embed, .init = h_setup, .fini = h_teardown, .timeout = 60);

typedef struct {
    int stop_fd; /* the module's own descriptor beside lc_fd() */
    int tick_fd; /* written when the timer has fired three times */
    atomic_int ready;
    atomic_int ticks;
    int served;
} emb_t;

static void s_count(lc_request_t *req, json_t *args, void *arg)
{
    emb_t *e = arg;
    e->served++;
    lc_reply(req, json_pack("{s:i, s:O}", "served", e->served, "args", args));
}

static void s_tick(lc_client_t *c, int id, void *arg)
{
    (void)c;
    (void)id;
    emb_t *e = arg;
    if (atomic_fetch_add(&e->ticks, 1) + 1 == 3) {
        uint64_t one = 1;
        cr_assert_eq(write(e->tick_fd, &one, sizeof one), (ssize_t)sizeof one);
    }
}

static void *s_module(void *arg)
{
    emb_t *e = arg;
    lc_client_t *c = lc_client_new("emb", h_bus);
    lc_method(c, "count", s_count, e);
    int rc = lc_connect(c, 10000);
    cr_assert_eq(rc, 0);
    cr_assert_gt(lc_timer_add(c, 5, true, s_tick, e), 0);
    atomic_store(&e->ready, 1);
    for (;;) {
        struct pollfd fds[2] = {{lc_fd(c), POLLIN, 0}, {e->stop_fd, POLLIN, 0}};
        cr_assert_geq(fds[0].fd, 0);
        poll(fds, 2, lc_timeout(c));
        if (fds[1].revents)
            break;
        rc = lc_dispatch(c);
        cr_assert_geq(rc, 0, "lc_dispatch: %s", lc_strerror(rc));
    }
    lc_client_destroy(&c);
    return NULL;
}

Test(embed, own_poll_loop_serves_calls_and_timers)
{
    h_broker(NULL);
    emb_t e = {.stop_fd = eventfd(0, 0), .tick_fd = eventfd(0, 0)};
    pthread_t t;
    pthread_create(&t, NULL, s_module, &e);
    lc_client_t *c = h_client();
    h_wait_modules(c, "emb", NULL);
    for (int i = 1; i <= 200; i++) {
        json_t *res = NULL;
        int rc = lc_call(c, "emb.count", json_pack("{s:i}", "i", i), &res, 5000);
        cr_assert_eq(rc, 0, "call %d: %s", i, lc_strerror(rc));
        cr_assert_eq(json_integer_value(json_object_get(res, "served")), i);
        json_decref(res);
    }
    /* The 5 ms timer fires from the same loop while calls are served. */
    struct pollfd tick = {e.tick_fd, POLLIN, 0};
    cr_assert_eq(poll(&tick, 1, 5000), 1, "the timer did not fire three times in 5 s");
    uint64_t one = 1;
    cr_assert_eq(write(e.stop_fd, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(t, NULL);
    close(e.stop_fd);
    close(e.tick_fd);
    lc_client_destroy(&c);
}

static long s_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert(f);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* After a burst, the memory it freed goes back to the system once the loop has been quiet a
 * moment: glibc keeps freed memory below the last block in use, which only malloc_trim()
 * returns, and lc_timeout() brings an own loop back for it. */
Test(embed, a_quiet_loop_gives_freed_memory_back)
{
    if (LC_SANITIZE)
        cr_skip_test("a sanitizer's allocator keeps freed memory in its own quarantine");
    h_broker(NULL);
    lc_client_t *c = h_client();
    enum { BLOCKS = 4096, SIZE = 8192 }; /* 32 MiB in blocks malloc takes from its heap */
    char **blocks = malloc(BLOCKS * sizeof *blocks);
    cr_assert(blocks);
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(SIZE);
        cr_assert(blocks[i]);
        memset(blocks[i], i & 0xff, SIZE);
    }
    char *pin = malloc(100000); /* above them (no free chunk fits it): free() cannot give
                                  * them back from the top of the heap */
    cr_assert(pin);
    memset(pin, 1, 100000);
    long full = s_rss_kb();
    for (int i = 0; i < BLOCKS; i++)
        free(blocks[i]);
    free(blocks);
    /* Something read: the loop is active, and comes back when it has been quiet. */
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "broker.ping", NULL, &res, 5000), 0);
    json_decref(res);
    int t = lc_timeout(c);
    cr_assert(t >= 0 && t <= 1000, "lc_timeout() is %d after a message, not the trim's moment", t);
    long now = s_rss_kb();
    int64_t end = lc_mono_ms() + 10000;
    while (now > full - 16 * 1024 && lc_mono_ms() < end) {
        struct pollfd p = {lc_fd(c), POLLIN, 0};
        t = lc_timeout(c);
        poll(&p, 1, t < 0 || t > 100 ? 100 : t);
        cr_assert_geq(lc_dispatch(c), 0);
        now = s_rss_kb();
    }
    cr_assert_leq(now, full - 16 * 1024, "RSS %ld kB after the quiet moment, %ld kB with the blocks",
                  now, full);
    cr_assert_eq(lc_timeout(c), -1, "nothing left to wait for once trimmed");
    free(pin);
    lc_client_destroy(&c);
}
