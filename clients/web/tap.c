/* lc-web's monitor reader (see tap.h). */
#include "tap.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define PING_RETRY_MS 5000 /* how often a broker without a monitor, or none, is asked again */

/* Asks the broker where its monitor is. Returns true with ep filled, or false with why. */
static bool s_monitor(lc_client_t *c, char *ep, size_t size, char *why, size_t whylen)
{
    json_t *res = NULL;
    int rc = lc_call(c, "broker.ping", NULL, &res, 3000);
    const char *mon = rc == 0 ? json_string_value(json_object_get(res, "monitor")) : NULL;
    if (mon)
        snprintf(ep, size, "%s", mon);
    else if (rc == 0)
        snprintf(why, whylen,
                 "no bus feed: the broker has no monitor (started with --monitor none, or a "
                 "tcp bus without --monitor EP)");
    else
        snprintf(why, whylen, "no bus feed: broker.ping failed: %s; asking again in %d s",
                 lc_strerror(rc), PING_RETRY_MS / 1000);
    json_decref(res);
    return mon != NULL;
}

/* Hands every record of a batch to the hub: each is its length (4 bytes, little-endian)
 * and its bytes. */
static void s_batch(hub_t *hub, const uint8_t *p, size_t size)
{
    const uint8_t *end = p + size;
    while (end - p >= 4) {
        size_t n = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
        p += 4;
        if (n > (size_t)(end - p))
            return; /* a cut batch: nothing after it can be trusted */
        rec_t r;
        if (rec_decode(p, n, &r) == 0)
            hub_record(hub, &r);
        p += n;
    }
}

void tap_run(lc_thread_t *thread, void *arg)
{
    hub_t *hub = arg;
    lc_client_t *c = lc_thread_client(thread);
    int stop_fd = lc_thread_fd(thread);
    char ep[512], why[1024], last_why[1024] = "";
    while (!s_monitor(c, ep, sizeof ep, why, sizeof why)) {
        if (strcmp(why, last_why) != 0) {
            lc_log(c, LC_LOG_WARNING, "web: %s", why);
            snprintf(last_why, sizeof last_why, "%s", why);
        }
        hub_feed(hub, FEED_NONE, why);
        struct pollfd p = {.fd = stop_fd, .events = POLLIN};
        if (poll(&p, 1, PING_RETRY_MS) != 0 || lc_thread_stopping(thread))
            return;
    }
    hub_feed(hub, FEED_OFF, NULL);

    void *ctx = zmq_ctx_new();
    void *sub = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sub || zmq_connect(sub, ep) < 0) {
        snprintf(why, sizeof why, "no bus feed: cannot attach to the monitor %s: %s", ep,
                 zmq_strerror(errno));
        lc_log(c, LC_LOG_ERROR, "web: %s", why);
        hub_feed(hub, FEED_NONE, why);
        if (sub)
            zmq_close(sub);
        if (ctx)
            zmq_ctx_term(ctx);
        return;
    }
    int hwm = 100, zero = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    lc_log(c, LC_LOG_INFO, "web: bus feed from the monitor %s (attached while a stream is open)",
           ep);

    bool subscribed = false;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (!lc_thread_stopping(thread)) {
        bool want = hub_tap_sync(hub, subscribed);
        if (want != subscribed) {
            /* The broker counts each subscription as a spy arriving, each unsubscription as
             * one leaving: exactly one of each, on the empty prefix. */
            zmq_setsockopt(sub, want ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, "", 0);
            subscribed = want;
        }
        zmq_pollitem_t items[3] = {{sub, 0, ZMQ_POLLIN, 0},
                                   {NULL, stop_fd, ZMQ_POLLIN, 0},
                                   {NULL, hub_tap_fd(hub), ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            lc_log(c, LC_LOG_ERROR, "web: polling the monitor %s failed: %s; the bus feed ends", ep,
                   zmq_strerror(errno));
            break;
        }
        if (items[1].revents)
            break;
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        /* A bounded number of batches per round, so a change of subscription is not held
         * up by a busy bus. */
        for (int i = 0; i < 100 && zmq_msg_recv(&msg, sub, ZMQ_DONTWAIT) >= 0; i++)
            s_batch(hub, zmq_msg_data(&msg), zmq_msg_size(&msg));
    }
    zmq_msg_close(&msg);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}
