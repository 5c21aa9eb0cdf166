/* libFuzzer harness: the broker's intake of one multipart message (broker_on_message),
 * from one of four peers whose registrations persist between inputs, so sequences of
 * HELLO, CALL, TASK, EVENT, DONE, STATE and BYE meet the state earlier inputs left. */
#include "broker.h"
#include "broker_int.h"
#include "frames.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_FRAMES 8

static broker_t *broker;

static void s_cleanup(void)
{
    broker_destroy(&broker);
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
    /* The first byte picks the peer; its routing id is as ZeroMQ makes them (5 bytes). */
    uint8_t rid[5] = {0, 'f', 'z', 'z', (uint8_t)('0' + (data[0] & 3))};
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
    return 0;
}
