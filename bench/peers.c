/* lc-bench-peers: the same request/reply and fan-out workloads through the buses people
 * compare lc with: mosquitto (MQTT, QoS 0, a request topic and a response topic) and a
 * private dbus-daemon (sd-bus method calls and signals). Both run on private sockets in a
 * temporary folder or on 127.0.0.1 only. lc-bench --peers runs it and puts its figures in
 * its table; it prints "KEY VALUE" lines. Built and run by `make bench-peers` only, so that
 * the rest of lc needs neither library. */
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

static double s_secs = 1;
static char s_dir[256];
static char s_self[4096];
static int s_k = 4;

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void s_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lc-bench-peers: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* The same 64-byte JSON text as lc-bench's payloads. */
static char s_payload[65];

static void s_payload_init(void)
{
    memcpy(s_payload, "{\"d\":\"", 6);
    memset(s_payload + 6, 'x', 56);
    memcpy(s_payload + 62, "\"}", 3);
}

/* A helper: this program again with a role, stdout on a pipe for its one report line. */
typedef struct {
    pid_t pid;
    int out;
} child_t;

static child_t s_spawn(char *const argv[], bool pipe_out)
{
    int fds[2] = {-1, -1};
    if (pipe_out && pipe2(fds, O_CLOEXEC) < 0)
        s_die("pipe: %s", strerror(errno));
    child_t c = {.out = fds[0]};
    c.pid = fork();
    if (c.pid < 0)
        s_die("fork: %s", strerror(errno));
    if (c.pid == 0) {
        char log[400];
        snprintf(log, sizeof log, "%s/peers.log", s_dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(pipe_out ? fds[1] : fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    if (pipe_out)
        close(fds[1]);
    return c;
}

static bool s_read_line(child_t *c, char *buf, size_t size, int timeout_ms)
{
    size_t have = 0;
    int64_t deadline = s_now_us() + (int64_t)timeout_ms * 1000;
    while (have < size - 1) {
        struct pollfd p = {.fd = c->out, .events = POLLIN};
        int left = (int)((deadline - s_now_us()) / 1000);
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return false;
        if (read(c->out, buf + have, 1) != 1)
            return false;
        if (buf[have] == '\n') {
            buf[have] = 0;
            return true;
        }
        have++;
    }
    return false;
}

static void s_kill(child_t *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    if (c->out >= 0)
        close(c->out);
    c->pid = 0;
    c->out = -1;
}

/* ---- MQTT -------------------------------------------------------------------------------------
 */

/* Collects what each of the s_k subscribers reports ("count time_us", its count including
 * the closing message) and returns the copies delivered; *last: the latest report time. */
static long s_collect(child_t *subs, int timeout_ms, int64_t *last)
{
    char line[256];
    long got = 0;
    *last = 0;
    for (int i = 0; i < s_k; i++) {
        long c = 0;
        long long t = 0;
        if (s_read_line(&subs[i], line, sizeof line, timeout_ms) &&
            sscanf(line, "%ld %lld", &c, &t) == 2) {
            got += c - 1;
            if (t > *last)
                *last = t;
        }
    }
    return got;
}

static int s_port;

static void s_mq_connect(struct mosquitto *m)
{
    int64_t deadline = s_now_us() + 10000000;
    while (mosquitto_connect(m, "127.0.0.1", s_port, 60) != MOSQ_ERR_SUCCESS) {
        if (s_now_us() > deadline)
            s_die("cannot connect to mosquitto on 127.0.0.1:%d", s_port);
        usleep(5000);
    }
}

/* Worker: every message on bench/req is published again on bench/resp. */
static void s_mq_echo(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    (void)arg;
    mosquitto_publish(m, NULL, "bench/resp", msg->payloadlen, msg->payload, 0, false);
}

/* Subscriber: counts bench/ev; a payload "last" reports the count and the time. */
static long s_mq_count;
static void s_mq_sub(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    (void)m;
    (void)arg;
    s_mq_count++;
    if (msg->payloadlen == 4 && memcmp(msg->payload, "last", 4) == 0) {
        printf("%ld %lld\n", s_mq_count, (long long)s_now_us());
        fflush(stdout);
    }
}

static int s_role_mqtt(const char *what)
{
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(NULL, true, NULL);
    bool echo = strcmp(what, "mqtt-echo") == 0;
    mosquitto_message_callback_set(m, echo ? s_mq_echo : s_mq_sub);
    s_mq_connect(m);
    int mid;
    mosquitto_subscribe(m, &mid, echo ? "bench/req" : "bench/ev", 0);
    /* Says it is subscribed once the SUBACK is in: one more round of the loop. */
    for (int i = 0; i < 20; i++)
        mosquitto_loop(m, 10, 1);
    printf("ready\n");
    fflush(stdout);
    mosquitto_loop_forever(m, -1, 1);
    return 0;
}

typedef struct {
    struct mosquitto *m;
    int64_t warm, start, end;
    long done;
    bool over;
} mq_calls_t;

static void s_mq_reply(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    (void)msg;
    mq_calls_t *k = arg;
    int64_t t = s_now_us();
    if (k->over)
        return;
    if (t >= k->warm) {
        if (!k->start) {
            k->start = t;
            k->end = t + (int64_t)(s_secs * 1e6);
        }
        k->done++;
        if (t >= k->end) {
            k->over = true;
            k->end = t;
            mosquitto_disconnect(m);
            return;
        }
    }
    mosquitto_publish(m, NULL, "bench/req", 64, s_payload, 0, false);
}

static double s_mqtt_calls(int depth)
{
    char *argv[] = {s_self, "--role", "mqtt-echo", "--port", NULL, NULL};
    char port[16];
    snprintf(port, sizeof port, "%d", s_port);
    argv[4] = port;
    child_t w = s_spawn(argv, true);
    char line[128];
    if (!s_read_line(&w, line, sizeof line, 10000))
        s_die("the MQTT worker did not subscribe (see %s/peers.log)", s_dir);
    mq_calls_t k = {0};
    struct mosquitto *m = mosquitto_new(NULL, true, &k);
    k.m = m;
    mosquitto_message_callback_set(m, s_mq_reply);
    s_mq_connect(m);
    mosquitto_subscribe(m, NULL, "bench/resp", 0);
    for (int i = 0; i < 20; i++)
        mosquitto_loop(m, 10, 1);
    k.warm = s_now_us() + (int64_t)(s_secs * 200000);
    for (int i = 0; i < depth; i++)
        mosquitto_publish(m, NULL, "bench/req", 64, s_payload, 0, false);
    mosquitto_loop_forever(m, -1, 1);
    mosquitto_destroy(m);
    s_kill(&w);
    return k.start && k.end > k.start ? (double)k.done / ((double)(k.end - k.start) / 1e6) : 0;
}

static double s_mqtt_fanout(void)
{
    child_t subs[16];
    char port[16];
    snprintf(port, sizeof port, "%d", s_port);
    char *argv[] = {s_self, "--role", "mqtt-sub", "--port", port, NULL};
    char line[128];
    for (int i = 0; i < s_k; i++)
        subs[i] = s_spawn(argv, true);
    for (int i = 0; i < s_k; i++)
        if (!s_read_line(&subs[i], line, sizeof line, 10000))
            s_die("an MQTT subscriber did not subscribe (see %s/peers.log)", s_dir);
    struct mosquitto *m = mosquitto_new(NULL, true, NULL);
    s_mq_connect(m);
    mosquitto_loop_start(m);
    long n = (long)(s_secs * 200000) / s_k;
    int64_t t0 = s_now_us();
    for (long i = 0; i < n; i++)
        while (mosquitto_publish(m, NULL, "bench/ev", 64, s_payload, 0, false) == MOSQ_ERR_NOMEM)
            usleep(100);
    mosquitto_publish(m, NULL, "bench/ev", 4, "last", 0, false);
    int64_t last;
    long got = s_collect(subs, 30000, &last);
    if (got < n * s_k)
        fprintf(stderr, "lc-bench-peers: note: MQTT QoS 0 delivered %ld of %ld copies\n", got,
                n * s_k);
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, true);
    mosquitto_destroy(m);
    for (int i = 0; i < s_k; i++)
        s_kill(&subs[i]);
    return last > t0 ? (double)got / ((double)(last - t0) / 1e6) : 0;
}

static int s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        s_die("cannot find a free port on 127.0.0.1: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static void s_mqtt(void)
{
    const char *prog = access("/usr/sbin/mosquitto", X_OK) == 0 ? "/usr/sbin/mosquitto" : NULL;
    if (!prog) {
        fprintf(stderr, "lc-bench-peers: mosquitto is not installed: skipping MQTT\n");
        return;
    }
    s_port = s_free_port();
    char conf[400];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", s_dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        s_die("cannot write %s: %s", conf, strerror(errno));
    fprintf(f,
            "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nlog_dest stderr\nlog_type error\n",
            s_port);
    fclose(f);
    char *argv[] = {(char *)prog, "-c", conf, NULL};
    child_t broker = s_spawn(argv, false);
    mosquitto_lib_init();
    printf("mqtt_depth1_rate %.1f\n", s_mqtt_calls(1));
    printf("mqtt_depth16_rate %.1f\n", s_mqtt_calls(16));
    char key[32];
    snprintf(key, sizeof key, "mqtt_events_k%d_rate", s_k);
    printf("%s %.1f\n", key, s_mqtt_fanout());
    fflush(stdout);
    s_kill(&broker);
    mosquitto_lib_cleanup();
}

/* ---- D-Bus -------------------------------------------------------------------------------------
 */

static char s_dbus_addr[512];

static sd_bus *s_bus_open(void)
{
    sd_bus *b = NULL;
    int64_t deadline = s_now_us() + 10000000;
    for (;;) {
        int r = sd_bus_new(&b);
        if (r >= 0)
            r = sd_bus_set_address(b, s_dbus_addr);
        if (r >= 0)
            r = sd_bus_set_bus_client(b, 1);
        if (r >= 0)
            r = sd_bus_start(b);
        if (r >= 0)
            return b;
        sd_bus_unref(b);
        if (s_now_us() > deadline)
            s_die("cannot connect to the private dbus-daemon at %s: %s", s_dbus_addr, strerror(-r));
        usleep(5000);
    }
}

static int s_db_echo(sd_bus_message *m, void *arg, sd_bus_error *err)
{
    (void)arg;
    (void)err;
    const char *s;
    int r = sd_bus_message_read(m, "s", &s);
    if (r < 0)
        return r;
    return sd_bus_reply_method_return(m, "s", s);
}

static const sd_bus_vtable s_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Echo", "s", "s", s_db_echo, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL("Ev", "s", 0),
    SD_BUS_VTABLE_END,
};

static long s_db_count;
static int s_db_signal(sd_bus_message *m, void *arg, sd_bus_error *err)
{
    (void)arg;
    (void)err;
    const char *s = "";
    sd_bus_message_read(m, "s", &s);
    s_db_count++;
    if (strcmp(s, "last") == 0) {
        printf("%ld %lld\n", s_db_count, (long long)s_now_us());
        fflush(stdout);
    }
    return 0;
}

static int s_role_dbus(const char *what)
{
    sd_bus *b = s_bus_open();
    if (strcmp(what, "dbus-echo") == 0) {
        sd_bus_add_object_vtable(b, NULL, "/lc/bench", "lc.Bench", s_vtable, NULL);
        if (sd_bus_request_name(b, "lc.bench.worker", 0) < 0)
            s_die("cannot own lc.bench.worker");
    } else {
        if (sd_bus_match_signal(b, NULL, NULL, "/lc/bench", "lc.Bench", "Ev", s_db_signal, NULL) <
            0)
            s_die("cannot add the signal match");
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int r = sd_bus_process(b, NULL);
        if (r < 0)
            return 1;
        if (r == 0)
            sd_bus_wait(b, UINT64_MAX);
    }
}

typedef struct {
    sd_bus *b;
    int64_t warm, start, end;
    long done;
    int open;
    bool over;
} db_calls_t;

static int s_db_reply(sd_bus_message *m, void *arg, sd_bus_error *err);

static void s_db_send(db_calls_t *k)
{
    if (sd_bus_call_method_async(k->b, NULL, "lc.bench.worker", "/lc/bench", "lc.Bench", "Echo",
                                 s_db_reply, k, "s", s_payload) >= 0)
        k->open++;
}

static int s_db_reply(sd_bus_message *m, void *arg, sd_bus_error *err)
{
    (void)m;
    (void)err;
    db_calls_t *k = arg;
    k->open--;
    int64_t t = s_now_us();
    if (k->over)
        return 0;
    if (t >= k->warm) {
        if (!k->start) {
            k->start = t;
            k->end = t + (int64_t)(s_secs * 1e6);
        }
        k->done++;
        if (t >= k->end) {
            k->over = true;
            k->end = t;
            return 0;
        }
    }
    s_db_send(k);
    return 0;
}

static double s_dbus_calls(int depth)
{
    char *argv[] = {s_self, "--role", "dbus-echo", "--dbus", s_dbus_addr, NULL};
    child_t w = s_spawn(argv, true);
    char line[128];
    if (!s_read_line(&w, line, sizeof line, 10000))
        s_die("the D-Bus worker did not come up (see %s/peers.log)", s_dir);
    db_calls_t k = {.b = s_bus_open()};
    k.warm = s_now_us() + (int64_t)(s_secs * 200000);
    for (int i = 0; i < depth; i++)
        s_db_send(&k);
    while (k.open > 0) {
        int r = sd_bus_process(k.b, NULL);
        if (r < 0)
            break;
        if (r == 0)
            sd_bus_wait(k.b, 100000);
    }
    sd_bus_flush_close_unref(k.b);
    s_kill(&w);
    return k.start && k.end > k.start ? (double)k.done / ((double)(k.end - k.start) / 1e6) : 0;
}

static double s_dbus_fanout(void)
{
    child_t subs[16];
    char *argv[] = {s_self, "--role", "dbus-sub", "--dbus", s_dbus_addr, NULL};
    char line[128];
    for (int i = 0; i < s_k; i++)
        subs[i] = s_spawn(argv, true);
    for (int i = 0; i < s_k; i++)
        if (!s_read_line(&subs[i], line, sizeof line, 10000))
            s_die("a D-Bus subscriber did not come up (see %s/peers.log)", s_dir);
    sd_bus *b = s_bus_open();
    long n = (long)(s_secs * 200000) / s_k;
    int64_t t0 = s_now_us();
    for (long i = 0; i < n; i++) {
        sd_bus_emit_signal(b, "/lc/bench", "lc.Bench", "Ev", "s", s_payload);
        if ((i & 255) == 255)
            sd_bus_flush(b);
    }
    sd_bus_emit_signal(b, "/lc/bench", "lc.Bench", "Ev", "s", "last");
    sd_bus_flush(b);
    int64_t last;
    long got = s_collect(subs, 60000, &last);
    if (got < n * s_k)
        fprintf(stderr, "lc-bench-peers: note: D-Bus delivered %ld of %ld signals\n", got, n * s_k);
    sd_bus_flush_close_unref(b);
    for (int i = 0; i < s_k; i++)
        s_kill(&subs[i]);
    return last > t0 ? (double)got / ((double)(last - t0) / 1e6) : 0;
}

static void s_dbus(void)
{
    if (access("/usr/bin/dbus-daemon", X_OK) < 0) {
        fprintf(stderr, "lc-bench-peers: dbus-daemon is not installed: skipping D-Bus\n");
        return;
    }
    char conf[400], sock[400];
    snprintf(conf, sizeof conf, "%s/dbus.conf", s_dir);
    snprintf(sock, sizeof sock, "%s/dbus.sock", s_dir);
    snprintf(s_dbus_addr, sizeof s_dbus_addr, "unix:path=%s", sock);
    FILE *f = fopen(conf, "w");
    if (!f)
        s_die("cannot write %s: %s", conf, strerror(errno));
    fprintf(f,
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
            " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
            "<busconfig>\n  <type>session</type>\n  <listen>%s</listen>\n"
            "  <auth>EXTERNAL</auth>\n"
            "  <policy context=\"default\">\n    <allow send_destination=\"*\"/>\n"
            "    <allow receive_sender=\"*\"/>\n    <allow own=\"*\"/>\n  </policy>\n"
            "</busconfig>\n",
            s_dbus_addr);
    fclose(f);
    char cf[420];
    snprintf(cf, sizeof cf, "--config-file=%s", conf);
    char *argv[] = {"/usr/bin/dbus-daemon", cf, "--nofork", "--nopidfile", NULL};
    child_t daemon = s_spawn(argv, false);
    printf("dbus_depth1_rate %.1f\n", s_dbus_calls(1));
    printf("dbus_depth16_rate %.1f\n", s_dbus_calls(16));
    char key[32];
    snprintf(key, sizeof key, "dbus_signals_k%d_rate", s_k);
    printf("%s %.1f\n", key, s_dbus_fanout());
    fflush(stdout);
    s_kill(&daemon);
}

int main(int argc, char **argv)
{
    s_payload_init();
    const char *role = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf(
                "Usage: lc-bench-peers [--secs S] [--dir DIR]\n"
                "The request/reply and fan-out workloads of lc-bench through mosquitto (MQTT\n"
                "QoS 0) and a private dbus-daemon (sd-bus), on private sockets and 127.0.0.1.\n"
                "Prints KEY VALUE lines; `lc-bench --peers` (make bench-peers) runs it and puts\n"
                "them beside its own figures. See lc-bench(1), docs/performance.md.\n");
            return 0;
        } else if (strcmp(argv[i], "--secs") == 0 && v)
            s_secs = atof(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && v)
            snprintf(s_dir, sizeof s_dir, "%s", argv[++i]);
        else if (strcmp(argv[i], "--role") == 0 && v)
            role = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && v)
            s_port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dbus") == 0 && v)
            snprintf(s_dbus_addr, sizeof s_dbus_addr, "%s", argv[++i]);
        else {
            fprintf(stderr, "lc-bench-peers: unknown argument '%s'; try --help\n", argv[i]);
            return 2;
        }
    }
    if (role && strncmp(role, "mqtt", 4) == 0)
        return s_role_mqtt(role);
    if (role)
        return s_role_dbus(role);
    if (s_secs < 0.05)
        s_secs = 0.05;
    ssize_t n = readlink("/proc/self/exe", s_self, sizeof s_self - 1);
    if (n <= 0)
        s_die("cannot find its own program: %s", strerror(errno));
    s_self[n] = 0;
    bool own_dir = !s_dir[0];
    if (own_dir) {
        snprintf(s_dir, sizeof s_dir, "/tmp/lc-bench-peers-XXXXXX");
        if (!mkdtemp(s_dir))
            s_die("cannot create a temporary folder: %s", strerror(errno));
    }
    signal(SIGPIPE, SIG_IGN);
    s_mqtt();
    s_dbus();
    if (own_dir) {
        const char *files[] = {"peers.log", "mosquitto.conf", "dbus.conf", "dbus.sock"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char path[400];
            snprintf(path, sizeof path, "%s/%s", s_dir, files[i]);
            unlink(path);
        }
        rmdir(s_dir);
    }
    return 0;
}
