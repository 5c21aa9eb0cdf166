/* A module's own file descriptors on the loop: lc_watch_fd() and lc_unwatch_fd(), with
 * lc_run() and with lc_fd()/lc_dispatch(). */
#include "harness.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

TestSuite(watch, .init = h_setup, .fini = h_teardown, .timeout = 60);

typedef struct {
    int fd;     /* watched */
    int ack_fd; /* written by the callback after each read, for the writer thread */
    int count;  /* loop thread only */
    int stop_at;
} wt_t;

/* Reads what is waiting, counts it, and after stop_at reads unwatches itself and stops
 * the loop. */
static void s_readable(lc_client_t *c, int fd, void *arg)
{
    wt_t *w = arg;
    cr_assert_eq(fd, w->fd);
    uint64_t v;
    cr_assert_eq(read(fd, &v, sizeof v), (ssize_t)sizeof v);
    int n = ++w->count;
    if (w->stop_at && n == w->stop_at) {
        cr_assert_eq(lc_unwatch_fd(c, fd), 0);
        lc_stop(c);
    }
    if (w->ack_fd >= 0) {
        uint64_t one = 1;
        cr_assert_eq(write(w->ack_fd, &one, sizeof one), (ssize_t)sizeof one);
    }
}

/* Writes to the watched descriptor stop_at times, each after the previous was read: the
 * loop has nothing else to do, so only the watched descriptor can wake it. */
static void *s_writer(void *arg)
{
    wt_t *w = arg;
    for (int i = 0; i < w->stop_at; i++) {
        uint64_t one = 1, v;
        cr_assert_eq(write(w->fd, &one, sizeof one), (ssize_t)sizeof one);
        struct pollfd p = {w->ack_fd, POLLIN, 0};
        cr_assert_eq(poll(&p, 1, 10000), 1, "write %d was not read within 10 s", i + 1);
        cr_assert_eq(read(w->ack_fd, &v, sizeof v), (ssize_t)sizeof v);
    }
    return NULL;
}

Test(watch, lc_run_wakes_for_a_watched_descriptor)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    lc_client_set_signals(c, false);
    wt_t w = {.fd = eventfd(0, EFD_NONBLOCK), .ack_fd = eventfd(0, 0), .stop_at = 3};
    cr_assert_eq(lc_watch_fd(c, w.fd, s_readable, &w), 0);
    pthread_t t;
    pthread_create(&t, NULL, s_writer, &w);
    cr_assert_eq(lc_run(c), 0);
    pthread_join(t, NULL);
    cr_assert_eq(w.count, 3);
    /* It unwatched itself: unwatching again is refused. */
    cr_assert_eq(lc_unwatch_fd(c, w.fd), LC_EINVAL);
    close(w.fd);
    close(w.ack_fd);
    lc_client_destroy(&c);
}

Test(watch, own_poll_loop_sees_watched_descriptors_until_unwatched)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    wt_t a = {.fd = eventfd(0, EFD_NONBLOCK), .ack_fd = -1};
    wt_t b = {.fd = eventfd(0, EFD_NONBLOCK), .ack_fd = -1};
    uint64_t one = 1;
    /* Watched before lc_fd() exists: lc_fd() includes it. */
    cr_assert_eq(lc_watch_fd(c, a.fd, s_readable, &a), 0);
    cr_assert_geq(lc_fd(c), 0);
    cr_assert_eq(write(a.fd, &one, sizeof one), (ssize_t)sizeof one);
    h_dispatch_until(c, &a.count, 1, 5000, "the callback of the first descriptor");
    /* Unwatched: a readable descriptor no longer calls. Watched after lc_fd(): it does. */
    cr_assert_eq(lc_unwatch_fd(c, a.fd), 0);
    cr_assert_eq(write(a.fd, &one, sizeof one), (ssize_t)sizeof one);
    cr_assert_eq(lc_watch_fd(c, b.fd, s_readable, &b), 0);
    cr_assert_eq(write(b.fd, &one, sizeof one), (ssize_t)sizeof one);
    h_dispatch_until(c, &b.count, 1, 5000, "the callback of the second descriptor");
    cr_assert_eq(lc_dispatch(c), 0);
    cr_assert_eq(a.count, 1, "an unwatched descriptor called its callback");
    cr_assert_eq(lc_unwatch_fd(c, b.fd), 0);
    close(a.fd);
    close(b.fd);
    lc_client_destroy(&c);
}

static void s_other(lc_client_t *c, int fd, void *arg)
{
    (void)c;
    (void)fd;
    (void)arg;
    cr_assert_fail("the replaced callback was called");
}

Test(watch, arguments_are_checked_and_a_second_watch_replaces_the_callback)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    wt_t w = {.fd = eventfd(0, EFD_NONBLOCK), .ack_fd = -1};
    cr_assert_eq(lc_watch_fd(c, -1, s_readable, &w), LC_EINVAL);
    cr_assert_eq(lc_watch_fd(c, w.fd, NULL, &w), LC_EINVAL);
    cr_assert_eq(lc_unwatch_fd(c, w.fd), LC_EINVAL);
    cr_assert_eq(lc_watch_fd(c, w.fd, s_other, NULL), 0);
    cr_assert_eq(lc_watch_fd(c, w.fd, s_readable, &w), 0);
    uint64_t one = 1;
    cr_assert_eq(write(w.fd, &one, sizeof one), (ssize_t)sizeof one);
    h_dispatch_until(c, &w.count, 1, 5000, "the replacing callback");
    cr_assert_eq(lc_unwatch_fd(c, w.fd), 0);
    close(w.fd);
    lc_client_destroy(&c);
}
