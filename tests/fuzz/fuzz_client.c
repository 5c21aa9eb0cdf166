/* libFuzzer harness: liblc's reading of what a broker sends. The harness plays the broker
 * on an ipc ROUTER socket: it welcomes the client, sends it the input as one multipart
 * message, then a valid CALL of the client's method "sync", and runs the client's loop
 * until that call is answered. A client that stops answering (a stall) aborts the run;
 * one the input told to shut down is made again. */
#include "frames.h"
#include "lc.h"
#include "wire.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_FRAMES 8

static void *ctx, *router;
static char endpoint[128];
static lc_client_t *client;
static uint8_t rid[256];
static size_t rid_len;
static uint64_t next_id = 1000, sync_id;
static bool synced;

static void s_send(const uint8_t *hdr, const char *address, const char *source, const char *payload)
{
    zmq_send(router, rid, rid_len, ZMQ_SNDMORE);
    zmq_send(router, hdr, LC_HDR_SIZE, ZMQ_SNDMORE);
    zmq_send(router, address, strlen(address), ZMQ_SNDMORE);
    zmq_send(router, source, strlen(source), ZMQ_SNDMORE);
    zmq_send(router, payload, strlen(payload), 0);
}

/* Answers what the client sent: a HELLO gets a WELCOME; an answer to the sync call ends
 * the round; everything else is read and dropped. */
static void s_serve(void)
{
    for (;;) {
        zmq_msg_t f[MAX_FRAMES];
        int n = 0;
        bool more = true;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, router, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&m);
                return;
            }
            more = zmq_msg_more(&m);
            if (n < MAX_FRAMES)
                f[n++] = m;
            else
                zmq_msg_close(&m);
        }
        lc_hdr_t h;
        if (n == 5 && lc_hdr_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &h) == LC_STATUS_OK) {
            if (h.type == LC_MSG_HELLO) {
                rid_len = zmq_msg_size(&f[0]) < sizeof rid ? zmq_msg_size(&f[0]) : sizeof rid;
                memcpy(rid, zmq_msg_data(&f[0]), rid_len);
                lc_hdr_t w = {.type = LC_MSG_WELCOME, .seq = h.seq, .id = next_id++,
                              .time_us = lc_now_us()};
                uint8_t hb[LC_HDR_SIZE];
                lc_hdr_encode(&w, hb);
                char payload[256];
                snprintf(payload, sizeof payload,
                         "{\"name\":\"fz\",\"heartbeat_ms\":0,\"max_payload\":1048576,"
                         "\"broker_pid\":%d,\"version\":\"0.1.0\",\"window\":64}",
                         (int)getpid());
                s_send(hb, "fz", "broker", payload);
            } else if ((h.type == LC_MSG_REPLY || h.type == LC_MSG_ERROR) && h.parent == sync_id) {
                synced = true;
            }
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
}

static atomic_bool welcoming;

static void *s_welcomer(void *arg)
{
    (void)arg;
    while (atomic_load(&welcoming)) {
        zmq_pollitem_t item = {router, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 5);
        s_serve();
    }
    return NULL;
}

static void s_sync(lc_request_t *req, json_t *args, void *arg)
{
    (void)args, (void)arg;
    lc_reply(req, json_true());
}

static void s_echo(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    lc_reply(req, json_incref(args));
}

static void s_any(lc_request_t *req, json_t *args, void *arg)
{
    (void)req, (void)args, (void)arg;
}

static void s_notice(lc_client_t *self, int rc, const char *target, json_t *info, void *arg)
{
    (void)self, (void)rc, (void)target, (void)info, (void)arg;
}

/* Runs the client's loop (and the fake broker) until *flag is set: 1, the client stopped
 * (lc_dispatch() said so): 0, or the deadline passed: -1. */
static int s_run_until(bool *flag, int ms)
{
    int64_t deadline = lc_mono_ms() + ms;
    while (!*flag) {
        if (lc_mono_ms() > deadline)
            return -1;
        zmq_pollitem_t items[2] = {{router, 0, ZMQ_POLLIN, 0}, {NULL, lc_fd(client), ZMQ_POLLIN, 0}};
        int t = lc_timeout(client);
        zmq_poll(items, 2, t < 0 || t > 10 ? 10 : t);
        s_serve();
        int rc = lc_dispatch(client);
        s_serve();
        if (rc != 0)
            return 0;
    }
    return 1;
}

static void s_client_new(void)
{
    lc_client_destroy(&client);
    s_serve();
    client = lc_client_new("fz", endpoint);
    if (!client) {
        perror("fuzz_client: lc_client_new");
        abort();
    }
    lc_client_set_log_level(client, LC_LOG_CRITICAL);
    lc_client_set_signals(client, false);
    lc_client_set_timeout(client, 2000);
    lc_method(client, "sync", s_sync, NULL);
    lc_method(client, "echo", s_echo, NULL);
    lc_on(client, "*", s_any, NULL);
    lc_on_notice(client, s_notice, NULL);
    /* Registration waits for the WELCOME: the fake broker answers from a thread meanwhile
     * (the socket is its alone until the join). */
    pthread_t t;
    atomic_store(&welcoming, true);
    pthread_create(&t, NULL, s_welcomer, NULL);
    int rc = lc_connect(client, 3000);
    atomic_store(&welcoming, false);
    pthread_join(t, NULL);
    if (rc != 0) {
        fprintf(stderr, "fuzz_client: the client did not register: %s\n", lc_strerror(rc));
        abort();
    }
}

static void s_cleanup(void)
{
    lc_client_destroy(&client);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static char dir[] = "/tmp/lc-fuzz-client-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("fuzz_client: mkdtemp");
        exit(1);
    }
    snprintf(endpoint, sizeof endpoint, "ipc://%s/bus", dir);
    ctx = zmq_ctx_new();
    router = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(router, endpoint) < 0) {
        fprintf(stderr, "fuzz_client: cannot bind %s: %s\n", endpoint, zmq_strerror(errno));
        exit(1);
    }
    s_client_new();
    unlink(endpoint + 6);
    rmdir(dir);
    atexit(s_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_frame_t fr[MAX_FRAMES];
    int total = fuzz_frames(data, size, fr, MAX_FRAMES);
    int n = total < MAX_FRAMES ? total : MAX_FRAMES;
    if (n > 0) {
        zmq_send(router, rid, rid_len, ZMQ_SNDMORE);
        for (int i = 0; i < n; i++)
            zmq_send(router, fr[i].data, fr[i].size, i + 1 < n ? ZMQ_SNDMORE : 0);
    }
    uint64_t id = next_id++;
    lc_hdr_t h = {.type = LC_MSG_CALL, .priority = LC_PRIORITY_NORMAL, .id = id, .tx = id,
                  .timeout_ms = 2000, .time_us = lc_now_us()};
    sync_id = h.id;
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_encode(&h, hb);
    s_send(hb, "fz.sync", "fuzz", "{}");
    synced = false;
    int rc = s_run_until(&synced, 20000);
    if (rc < 0) {
        fprintf(stderr, "fuzz_client: the client stalled: the sync call after the input was "
                        "not answered within 20 s\n");
        abort();
    }
    if (rc == 0) {
        /* Told to stop (a shutdown command, a refusal of its name): a new client must
         * answer at once. */
        s_client_new();
        h.id = sync_id = next_id++;
        lc_hdr_encode(&h, hb);
        synced = false;
        s_send(hb, "fz.sync", "fuzz", "{}");
        if (s_run_until(&synced, 20000) != 1) {
            fprintf(stderr, "fuzz_client: a new client did not answer the sync call\n");
            abort();
        }
    }
    return 0;
}
