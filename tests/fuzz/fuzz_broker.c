/* libFuzzer harness: the broker's intake of one multipart message (broker_on_message),
 * from one of four peers whose registrations persist between inputs, so sequences of
 * HELLO, CALL, TASK, EVENT, DONE, STATE and BYE meet the state earlier inputs left. The
 * four peers are real DEALER connections with those routing ids, so what the broker sends
 * them (deliveries, answers) goes out and items go in flight; the harness drains them and
 * runs the broker's timed checks (deadlines, the "gone" answers owed, liveness) after every
 * input. */
#include "broker.h"
#include "broker_int.h"
#include "frames.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_FRAMES 8

#define PEERS 4

static broker_t *broker;
static void *ctx, *peers[PEERS];

/* Routing ids set by the application must not start with a zero byte. */
static void s_rid(int i, uint8_t rid[4])
{
    rid[0] = 'F', rid[1] = 'Z', rid[2] = 'Z', rid[3] = (uint8_t)('0' + i);
}

static void s_drain(void)
{
    for (int i = 0; i < PEERS; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, peers[i], ZMQ_DONTWAIT) >= 0)
            ;
        zmq_msg_close(&m);
    }
}

static void s_cleanup(void)
{
    broker_destroy(&broker);
    for (int i = 0; i < PEERS; i++)
        zmq_close(peers[i]);
    if (ctx)
        zmq_ctx_term(ctx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static char dir[] = "/tmp/lc-fuzz-broker-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("fuzz_broker: mkdtemp");
        exit(1);
    }
    static char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/bus", dir);
    /* A tcp endpoint too: the harness's messages carry no kernel credentials, which a broker
     * with only ipc endpoints refuses at HELLO. */
    static const char *endpoints[3];
    endpoints[0] = endpoint;
    endpoints[1] = "tcp://127.0.0.1:*";
    /* Small bounds keep the memory of queued items flat over millions of inputs. */
    broker_config_t cfg = {
        .endpoints = endpoints,
        .max_payload = 64 * 1024,
        .heartbeat_ms = 1000,
        .call_timeout_ms = 5000,
        .max_queue = 2000,
        .max_backlog = 200,
        .window = 8,
        .grace_ms = 30000,
        .start_timeout_ms = 10000,
        .drain_ms = 5000,
        .exit_ms = 10000,
        .stop_ms = 5000,
        .verbose = 0,
        .monitor = "",
        .monitor_queue = 10,
    };
    char err[512];
    broker = broker_new(&cfg, err, sizeof err);
    if (!broker) {
        fprintf(stderr, "fuzz_broker: %s\n", err);
        exit(1);
    }
    /* The peers connect before the socket file goes; the broker knows one once a message
     * to it is accepted (ROUTER_MANDATORY refuses it until the handshake is done). */
    ctx = zmq_ctx_new();
    for (int i = 0; i < PEERS; i++) {
        uint8_t rid[4];
        s_rid(i, rid);
        peers[i] = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt(peers[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(peers[i], ZMQ_ROUTING_ID, rid, sizeof rid);
        if (zmq_connect(peers[i], endpoint) < 0) {
            fprintf(stderr, "fuzz_broker: cannot connect to %s\n", endpoint);
            exit(1);
        }
        int64_t deadline = lc_mono_ms() + 10000;
        while (zmq_send(broker->router, rid, sizeof rid, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            if (lc_mono_ms() > deadline) {
                fprintf(stderr, "fuzz_broker: peer %d never connected\n", i);
                exit(1);
            }
            usleep(1000); /* the I/O threads' handshake, once at start-up */
        }
        zmq_send(broker->router, "", 0, 0);
    }
    s_drain();
    /* The socket file is gone with the folder; the broker itself is freed at exit. */
    unlink(endpoint + 6);
    rmdir(dir);
    atexit(s_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The first byte picks the peer. */
    uint8_t rid[4];
    s_rid(data[0] & 3, rid);
    fuzz_frame_t fr[MAX_FRAMES];
    int total = fuzz_frames(data + 1, size - 1, fr, MAX_FRAMES - 1);
    int n = total < MAX_FRAMES - 1 ? total : MAX_FRAMES - 1;
    zmq_msg_t f[MAX_FRAMES];
    zmq_msg_init_size(&f[0], sizeof rid);
    memcpy(zmq_msg_data(&f[0]), rid, sizeof rid);
    for (int i = 0; i < n; i++) {
        zmq_msg_init_size(&f[i + 1], fr[i].size);
        if (fr[i].size)
            memcpy(zmq_msg_data(&f[i + 1]), fr[i].data, fr[i].size);
    }
    broker_on_message(broker, f, n + 1, total > n);
    for (int i = 0; i < n + 1; i++)
        zmq_msg_close(&f[i]);
    int64_t now = lc_mono_ms();
    broker_calls_expire(broker, now);
    broker_calls_send_gone(broker, GONE_BATCH); /* as each loop round: the answers owed */
    broker_check_liveness(broker, now);
    s_drain();
    return 0;
}
