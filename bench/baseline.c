/* lc-bench: the baselines. What the transport costs before any lc code runs (a ZeroMQ
 * relay written as plainly as possible: DEALER client -> ROUTER relay -> DEALER worker and
 * back, over ipc://), and the floor under it (Unix sockets: a ping-pong between two
 * processes, and a poll() relay between three). */
#include "bench.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

/* ---- The relay's processes -------------------------------------------------------------- */

static const char *s_opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

/* One ROUTER, like the broker: the worker (routing id "W") and the clients connect to it.
 * A client's [id, payload] goes to the worker as [W, id, payload]; the worker's
 * [W, id, payload] goes back as [id, payload]. Frames move as zmq_msg_t, without copies. */
int role_zrelay(int argc, char **argv)
{
    const char *ep = s_opt(argc, argv, "--ep", NULL);
    if (!ep) {
        fprintf(stderr, "lc-bench --role zrelay: --ep ENDPOINT is required\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1;
    /* Blocks at the worker's high-water mark instead of dropping, as the broker's
     * window holds back instead of losing. */
    zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    if (zmq_bind(router, ep) < 0) {
        fprintf(stderr, "lc-bench zrelay: cannot bind %s: %s\n", ep, zmq_strerror(errno));
        return 1;
    }
    zmq_msg_t f[3];
    for (int i = 0; i < 3; i++)
        zmq_msg_init(&f[i]);
    for (;;) {
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t *m = &f[n < 3 ? n : 2];
            if (zmq_msg_recv(m, router, 0) < 0)
                return 1;
            more = zmq_msg_more(m);
            n++;
        }
        bool from_worker = zmq_msg_size(&f[0]) == 1 && *(char *)zmq_msg_data(&f[0]) == 'W';
        if (from_worker && n == 2) { /* hello */
            dprintf(1, "worker\n");
            continue;
        }
        if (from_worker && n == 3) {
            zmq_msg_send(&f[1], router, ZMQ_SNDMORE);
            zmq_msg_send(&f[2], router, 0);
        } else if (!from_worker && n == 2) {
            zmq_msg_t w;
            zmq_msg_init_size(&w, 1);
            *(char *)zmq_msg_data(&w) = 'W';
            zmq_msg_send(&w, router, ZMQ_SNDMORE);
            zmq_msg_send(&f[0], router, ZMQ_SNDMORE);
            zmq_msg_send(&f[1], router, 0);
        }
    }
}

/* Answers every [id, payload] with the same frames; with --oneway N only counts them and
 * reports "N TIME_US" on stdout at every N-th. */
int role_zworker(int argc, char **argv)
{
    const char *ep = s_opt(argc, argv, "--ep", NULL);
    long oneway = atol(s_opt(argc, argv, "--oneway", "0"));
    if (!ep) {
        fprintf(stderr, "lc-bench --role zworker: --ep ENDPOINT is required\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(d, ZMQ_ROUTING_ID, "W", 1);
    if (zmq_connect(d, ep) < 0) {
        fprintf(stderr, "lc-bench zworker: cannot connect to %s: %s\n", ep, zmq_strerror(errno));
        return 1;
    }
    zmq_send(d, "hello", 5, 0);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    long count = 0;
    for (;;) {
        if (zmq_msg_recv(&id, d, 0) < 0 || zmq_msg_recv(&body, d, 0) < 0)
            return 1;
        if (oneway) {
            if (++count % oneway == 0)
                dprintf(1, "%ld %lld\n", count, (long long)now_us());
            continue;
        }
        zmq_msg_send(&id, d, ZMQ_SNDMORE);
        zmq_msg_send(&body, d, 0);
    }
}

/* A relay and its worker, started and connected; NULL if they did not come up. */
static bool s_relay_up(proc_t **relay, proc_t **worker, char *ep, size_t eplen, long oneway)
{
    endpoint(ep, eplen, "relay");
    char n[32];
    snprintf(n, sizeof n, "%ld", oneway);
    *relay = proc_role("zrelay", "zrelay", "--ep", ep, NULL);
    *worker = proc_role("zworker", "zworker", "--ep", ep, "--oneway", n, NULL);
    if (!*relay || !*worker || !proc_read(*relay, 10000)) {
        bench_fail("the ZeroMQ relay did not come up:\n%s%s", *relay ? proc_log(*relay) : "",
                   *worker ? proc_log(*worker) : "");
        proc_stop(relay, SIGKILL, 1000);
        proc_stop(worker, SIGKILL, 1000);
        return false;
    }
    return true;
}

/* ---- Request/reply through the relay ----------------------------------------------------- */

void sc_relay_call(int depth, size_t size, const char *key_rate, const char *key_p50,
                   const char *key_p99)
{
    proc_t *relay, *worker;
    char ep[400];
    if (!s_relay_up(&relay, &worker, ep, sizeof ep, 0))
        return;
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    zmq_connect(d, ep);
    char *text = payload_text(size);
    int64_t *sent = calloc((size_t)depth, sizeof *sent); /* answers come back in order */
    char *rbuf = malloc(size + 16);
    lat_t lat = {0};
    long done = 0, head = 0;
    int64_t start = now_us(), warm = start + (int64_t)(cfg.secs * 200000), end = 0;
    for (int i = 0; i < depth; i++) {
        sent[i] = now_us();
        zmq_send(d, text, size, 0);
    }
    for (;;) {
        if (zmq_recv(d, rbuf, size + 16, 0) < 0) {
            bench_fail("relay baseline: receive failed: %s", zmq_strerror(errno));
            break;
        }
        int64_t t = now_us();
        if (t >= warm) {
            if (!end) {
                end = t + (int64_t)(cfg.secs * 1e6);
                start = t;
                done = 0;
                lat.n = 0;
            }
            lat_add(&lat, t - sent[head]);
            done++;
            if (t >= end)
                break;
        }
        sent[head] = now_us();
        head = (head + 1) % depth;
        zmq_send(d, text, size, 0);
    }
    double secs = (double)(now_us() - start) / 1e6;
    bench_record(key_rate, (double)done / secs);
    if (key_p50)
        bench_record(key_p50, lat_pct(&lat, 50));
    if (key_p99)
        bench_record(key_p99, lat_pct(&lat, 99));
    lat_free(&lat);
    free(rbuf);
    free(sent);
    free(text);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(d);
    zmq_ctx_term(ctx);
    proc_stop(&relay, SIGKILL, 1000);
    proc_stop(&worker, SIGKILL, 1000);
}

/* ---- One way: client -> relay -> worker ---------------------------------------------------- */

void sc_relay_oneway(void)
{
    long n = (long)(cfg.secs * 300000);
    if (n < 5000)
        n = 5000;
    proc_t *relay, *worker;
    char ep[400];
    if (!s_relay_up(&relay, &worker, ep, sizeof ep, n))
        return;
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    zmq_connect(d, ep);
    char *text = payload_text(64);
    for (int round = 0; round < 2; round++) { /* the first warms up */
        int64_t t0 = now_us();
        for (long i = 0; i < n; i++)
            zmq_send(d, text, 64, 0);
        const char *line = proc_read(worker, 30000);
        long long got = 0, t1 = 0;
        if (!line || sscanf(line, "%lld %lld", &got, &t1) != 2) {
            bench_fail("relay baseline (one way): the worker did not receive %ld messages:\n%s", n,
                       proc_log(worker));
            break;
        }
        if (round == 1)
            bench_record("relay_oneway_rate", (double)n / ((double)(t1 - t0) / 1e6));
    }
    free(text);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(d);
    zmq_ctx_term(ctx);
    proc_stop(&relay, SIGKILL, 1000);
    proc_stop(&worker, SIGKILL, 1000);
}

/* ---- Unix sockets ---------------------------------------------------------------------------- */

static bool s_full(int fd, char *buf, size_t n, bool writing)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = writing ? write(fd, buf + off, n - off) : read(fd, buf + off, n - off);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return false;
        }
        off += (size_t)r;
    }
    return true;
}

/* In a forked child: closes every descriptor but a and b, so that each side sees the
 * other's end when it closes. */
static void s_keep_only(int a, int b)
{
    for (int fd = 3; fd < 1024; fd++)
        if (fd != a && fd != b)
            close(fd);
}

/* Children here are forked without exec: they only read, write and poll. */
static pid_t s_fork_echo(int fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        s_keep_only(fd, fd);
        char buf[64];
        while (s_full(fd, buf, sizeof buf, false) && s_full(fd, buf, sizeof buf, true))
            ;
        _exit(0);
    }
    return pid;
}

/* Forwards whatever arrives on one side to the other, with poll(), until one side closes. */
static pid_t s_fork_relay(int a, int b)
{
    pid_t pid = fork();
    if (pid == 0) {
        s_keep_only(a, b);
        char buf[4096];
        struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
        for (;;) {
            if (poll(p, 2, -1) < 0 && errno != EINTR)
                _exit(1);
            for (int i = 0; i < 2; i++)
                if (p[i].revents) {
                    ssize_t r = read(p[i].fd, buf, sizeof buf);
                    if (r <= 0 || !s_full(p[1 - i].fd, buf, (size_t)r, true))
                        _exit(0);
                }
        }
    }
    return pid;
}

/* Round trips of 64 bytes on fd for the window; returns the rate. */
static double s_pingpong(int fd)
{
    char buf[64];
    memset(buf, 'x', sizeof buf);
    int64_t warm = now_us() + (int64_t)(cfg.secs * 200000);
    while (now_us() < warm)
        if (!s_full(fd, buf, 64, true) || !s_full(fd, buf, 64, false))
            return 0;
    long done = 0;
    int64_t start = now_us(), end = start + (int64_t)(cfg.secs * 1e6), t;
    do {
        if (!s_full(fd, buf, 64, true) || !s_full(fd, buf, 64, false))
            return 0;
        done++;
    } while ((t = now_us()) < end);
    return (double)done / ((double)(t - start) / 1e6);
}

void sc_uds_pingpong(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        bench_fail("socketpair: %s", strerror(errno));
        return;
    }
    pid_t echo = s_fork_echo(sv[1]);
    close(sv[1]);
    double rate = s_pingpong(sv[0]);
    close(sv[0]);
    waitpid(echo, NULL, 0);
    if (rate <= 0)
        bench_fail("Unix-socket ping-pong failed");
    else
        bench_record("uds_pingpong_rate", rate);
}

void sc_uds_relay(void)
{
    int c[2], w[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w) < 0) {
        bench_fail("socketpair: %s", strerror(errno));
        return;
    }
    pid_t echo = s_fork_echo(w[1]);
    close(w[1]);
    pid_t relay = s_fork_relay(c[1], w[0]);
    close(c[1]);
    close(w[0]);
    double rate = s_pingpong(c[0]);
    close(c[0]);
    waitpid(relay, NULL, 0);
    waitpid(echo, NULL, 0);
    if (rate <= 0)
        bench_fail("Unix-socket relay failed");
    else
        bench_record("uds_relay_rate", rate);
}
