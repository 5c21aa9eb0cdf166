/* lc-fuzz-live: random and mutated multipart messages sent to a running broker over its
 * endpoint, from a handful of connections that come and go, for the live fuzz of
 * docs/reliability.md (suite fuzz, and `make fuzz`). It reads and drops what the broker
 * answers. It never sends the event `exit`, which stops the system by design. The messages are mutations of the broker corpus (tests/fuzz/corpus/broker: one
 * peer byte, then [u16 length][bytes] frames) and of headers made here, and plain noise.
 *   lc-fuzz-live --bus EP [--messages N] [--seconds S] [--seed N] [--corpus DIR] */
#include "frames.h"
#include "wire.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define PEERS 4
#define MAX_SEEDS 4096
#define MAX_MSG 8192

typedef struct {
    uint8_t *data;
    size_t size;
} seed_t;

static seed_t seeds[MAX_SEEDS];
static int nseeds;
static uint64_t rng;

static uint64_t s_rand(void)
{
    /* xorshift64*: reproducible from --seed */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static void s_load_corpus(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "lc-fuzz-live: cannot read the corpus %s: %s\n", dir, strerror(errno));
        exit(2);
    }
    struct dirent *e;
    while ((e = readdir(d)) && nseeds < MAX_SEEDS) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        uint8_t buf[MAX_MSG];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        if (n < 2)
            continue;
        seeds[nseeds].data = malloc(n);
        memcpy(seeds[nseeds].data, buf, n);
        seeds[nseeds].size = n;
        nseeds++;
    }
    closedir(d);
}

/* One message into buf as frames: a corpus entry mutated, a header of a random type with
 * random fields, or noise. Returns the number of frames (at most 10). */
static int s_make(uint8_t *buf, size_t *sizes, size_t cap)
{
    uint64_t how = s_rand() % 10;
    size_t at = 0;
    int n = 0;
    if (how < 6 && nseeds) {
        const seed_t *s = &seeds[s_rand() % (uint64_t)nseeds];
        fuzz_frame_t fr[10];
        int total = fuzz_frames(s->data + 1, s->size - 1, fr, 10);
        n = total < 10 ? total : 10;
        for (int i = 0; i < n; i++) {
            size_t len = fr[i].size;
            if (at + len > cap)
                len = cap - at;
            memcpy(buf + at, fr[i].data, len);
            sizes[i] = len;
            at += len;
        }
        /* A few mutations: flipped bits, changed bytes, a cut or grown frame, a frame
         * dropped or repeated. */
        for (int k = (int)(s_rand() % 4); k >= 0 && at > 0; k--) {
            uint64_t m = s_rand() % 5;
            size_t pos = (size_t)(s_rand() % at);
            if (m == 0)
                buf[pos] ^= (uint8_t)(1u << (s_rand() % 8));
            else if (m == 1)
                buf[pos] = (uint8_t)s_rand();
            else if (m == 2 && n > 0)
                sizes[s_rand() % (uint64_t)n] /= 2; /* the frame loses its tail (bytes shift) */
            else if (m == 3 && n > 1)
                n--;
            else if (m == 4 && n < 10 && at + sizes[0] <= cap) {
                memcpy(buf + at, buf, sizes[0]);
                sizes[n++] = sizes[0];
                at += sizes[0];
            }
        }
    } else if (how < 9) {
        lc_hdr_t h = {.type = (uint8_t)(1 + s_rand() % (LC_MSG_TYPE_MAX + 1)),
                      .priority = (uint8_t)(s_rand() % 7),
                      .flags = (uint16_t)(s_rand() % 3 ? 0 : s_rand()),
                      .seq = (uint32_t)s_rand(),
                      .status = (uint32_t)(s_rand() % 20),
                      .id = s_rand() % 1000,
                      .parent = s_rand() % 3 ? 0 : s_rand(),
                      .tx = s_rand() % 2 ? 0 : s_rand(),
                      .timeout_ms = (uint32_t)(s_rand() % 3000)};
        lc_hdr_encode(&h, buf);
        sizes[0] = LC_HDR_SIZE;
        static const char *const addresses[] = {"a.echo", "b.echo", "broker.list", "broker.wait",
                                                "x", "", "live_tick", "a.call", "b.nosuch"};
        const char *addr = addresses[s_rand() % (sizeof addresses / sizeof addresses[0])];
        size_t alen = strlen(addr);
        memcpy(buf + LC_HDR_SIZE, addr, alen);
        sizes[1] = alen;
        sizes[2] = 0;
        static const char *const payloads[] = {
            "{}", "{\"text\":\"fuzz\"}", "", "[1,2", "null", "{\"token\":\"0123456789abcdef\"}",
            "{\"modules\":[\"a\",\"b\"],\"timeout_ms\":5}", "\xff\xfe"};
        const char *p = payloads[s_rand() % (sizeof payloads / sizeof payloads[0])];
        memcpy(buf + LC_HDR_SIZE + alen, p, strlen(p));
        sizes[3] = strlen(p);
        n = 4;
    } else {
        n = 1 + (int)(s_rand() % 6);
        for (int i = 0; i < n; i++) {
            size_t len = (size_t)(s_rand() % 300);
            if (at + len > cap)
                len = cap - at;
            for (size_t j = 0; j < len; j++)
                buf[at + j] = (uint8_t)s_rand();
            sizes[i] = len;
            at += len;
        }
    }
    return n;
}

/* The event `exit` is the documented way for any registered module to stop the whole
 * system (the exit sequence); the fuzzer finds it (a registration, then the event), and it
 * is not what this fuzz is about: such a message is not sent. */
static bool s_is_exit(const uint8_t *buf, const size_t *sizes, int n)
{
    lc_hdr_t h;
    return n >= 2 && lc_hdr_decode(buf, sizes[0], &h) == LC_STATUS_OK && h.type == LC_MSG_EVENT &&
           sizes[1] == 4 && memcmp(buf + sizes[0], "exit", 4) == 0;
}

static void *s_peer_new(void *ctx, const char *bus)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, hwm = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_connect(s, bus) < 0) {
        fprintf(stderr, "lc-fuzz-live: cannot connect to %s: %s\n", bus, zmq_strerror(errno));
        exit(2);
    }
    return s;
}

static void s_usage(FILE *out)
{
    fprintf(out, "Usage: lc-fuzz-live --bus EP [--messages N] [--seconds S] [--seed N] "
                 "[--corpus DIR]\n"
                 "Sends random and mutated lc messages to the broker at EP from %d connections "
                 "that come and go,\nreading and dropping the answers, until N messages "
                 "(default 100000) or S seconds.\nExit status: 0 when done, 2 on a usage "
                 "error.\n",
                 PEERS);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"bus", required_argument, NULL, 'b'},
                                         {"messages", required_argument, NULL, 'n'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"seed", required_argument, NULL, 'r'},
                                         {"corpus", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *bus = NULL, *corpus = NULL;
    long messages = 100000, seconds = 0;
    rng = (uint64_t)time(NULL) * 2654435761u + 1;
    int o;
    while ((o = getopt_long(argc, argv, "b:n:s:r:c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'b':
            bus = optarg;
            break;
        case 'n':
            messages = atol(optarg);
            break;
        case 's':
            seconds = atol(optarg);
            break;
        case 'r':
            rng = strtoull(optarg, NULL, 10) | 1;
            break;
        case 'c':
            corpus = optarg;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (!bus || messages <= 0 || seconds < 0) {
        s_usage(stderr);
        return 2;
    }
    if (corpus)
        s_load_corpus(corpus);
    void *ctx = zmq_ctx_new();
    void *peers[PEERS];
    for (int i = 0; i < PEERS; i++)
        peers[i] = s_peer_new(ctx, bus);
    int64_t end = seconds ? lc_mono_ms() + seconds * 1000 : 0;
    long sent = 0, answers = 0, reconnects = 0;
    uint8_t buf[MAX_MSG];
    size_t sizes[10];
    while (seconds ? lc_mono_ms() < end : sent < messages) {
        int p = (int)(s_rand() % PEERS);
        /* Now and then a connection goes away (without BYE) and a new one comes. */
        if (s_rand() % 200 == 0) {
            zmq_close(peers[p]);
            peers[p] = s_peer_new(ctx, bus);
            reconnects++;
        }
        int n = s_make(buf, sizes, sizeof buf);
        if (s_is_exit(buf, sizes, n))
            continue;
        size_t at = 0;
        bool ok = true;
        for (int i = 0; i < n && ok; i++) {
            ok = zmq_send(peers[p], buf + at, sizes[i], ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0)) >= 0;
            at += sizes[i];
        }
        sent += ok;
        for (int i = 0; i < PEERS; i++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            while (zmq_msg_recv(&m, peers[i], ZMQ_DONTWAIT) >= 0)
                answers += !zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
    }
    for (int i = 0; i < PEERS; i++)
        zmq_close(peers[i]);
    zmq_ctx_term(ctx);
    for (int i = 0; i < nseeds; i++)
        free(seeds[i].data);
    printf("lc-fuzz-live: %ld messages sent, %ld answers read, %ld reconnections\n", sent,
           answers, reconnects);
    return 0;
}
