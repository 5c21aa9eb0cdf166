/* lc-spy: every message on an lc bus, live from the broker's monitor or from a recording. */
#include "../common.h"
#include "lc.h"
#include "trace.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define RECORD_MAGIC "lc-spy record 1\n"
#define SPY_RCVHWM 100       /* batches (2 ms of traffic each) queued on the spy's side */
#define BATCHES_PER_ROUND 16 /* then signals, the clock and the output are looked at */
#define SILENT_WARN_MS 3000  /* no word from the monitor by then: say so */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-spy [OPTION]...\n"
            "Show every message on an lc bus as the broker routes it: calls, replies, errors,\n"
            "tasks, events, registrations, state changes, refusals and losses.\n"
            "\n"
            "Where from:\n"
            "  -b, --bus EP          the bus (default: $LC_BUS, else\n"
            "                        ipc://$XDG_RUNTIME_DIR/lc/bus, else ipc:///tmp/lc-$UID/bus);\n"
            "                        the spy attaches to its monitor, ipc://PATH.spy\n"
            "      --monitor EP      the broker's monitor endpoint, if not beside the bus (a\n"
            "                        tcp bus: see lc-broker --monitor)\n"
            "      --replay FILE     read a recording instead of a bus\n"
            "\n"
            "What to show (all given filters must match):\n"
            "  -m, --module NAME     messages from or to NAME\n"
            "  -e, --event GLOB      events whose name matches GLOB (e.g. 'pushed_*')\n"
            "  -k, --kind LIST       call, reply, error, task, event, control; comma-separated\n"
            "  -x, --tx ID           one transaction, drawn as a tree of causes\n"
            "  -E, --errors          errors, refusals, lost copies and failed handlers only\n"
            "\n"
            "How:\n"
            "  -j, --json            one JSON object per line (fields: lc-spy(1))\n"
            "  -f, --full            never cut payloads to the terminal's width\n"
            "      --color WHEN      auto (default: on a terminal, unless NO_COLOR is set),\n"
            "                        always or never\n"
            "  -r, --record FILE     also save every record, unfiltered, for --replay\n"
            "  -q, --quiet           print nothing (with --record)\n"
            "\n"
            "When to stop:\n"
            "  -n, --count N         after N messages shown\n"
            "  -d, --duration S      after S seconds (decimals allowed)\n"
            "  -h, --help            show this help and exit\n"
            "  -V, --version         show the version and exit\n"
            "\n"
            "If the spy cannot keep up, the broker drops records for it (the bus never waits\n"
            "for a spy) and the output says \"N messages dropped\" where they are missing.\n"
            "On stderr: a line once attached, and a summary at the end.\n"
            "Exit status: 0 when done or interrupted, 1 if the monitor or a file cannot be\n"
            "used, 2 on a usage error. See lc-spy(1) and docs/tracing.md.\n");
}

typedef struct {
    trace_t trace;
    FILE *record;
    bool quiet;
    uint64_t count; /* 0: no limit */
    int out_errno;  /* the first failed write of the output */
} spy_t;

/* Returns true when --count is reached. */
static bool s_take(spy_t *spy, const uint8_t *data, size_t size)
{
    if (spy->record) {
        uint8_t len[4] = {(uint8_t)size, (uint8_t)(size >> 8), (uint8_t)(size >> 16),
                          (uint8_t)(size >> 24)};
        if (fwrite(len, 4, 1, spy->record) != 1 || fwrite(data, size, 1, spy->record) != 1)
            die(EXIT_FAIL, "cannot write the recording: %s", strerror(errno));
    }
    rec_t r;
    if (rec_decode(data, size, &r) < 0) {
        fprintf(stderr,
                "lc-spy: a record of %zu bytes is not in the format this spy reads "
                "(is the broker of another version?); skipped\n",
                size);
        return false;
    }
    trace_record(&spy->trace, &r);
    return spy->count && spy->trace.shown >= spy->count;
}

static int s_replay(spy_t *spy, const char *path)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!in)
        die(EXIT_FAIL, "cannot open the recording %s: %s", path, strerror(errno));
    char magic[sizeof RECORD_MAGIC - 1];
    if (fread(magic, sizeof magic, 1, in) != 1 || memcmp(magic, RECORD_MAGIC, sizeof magic) != 0)
        die(EXIT_FAIL, "%s is not an lc-spy recording (made with lc-spy --record)", path);
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t n = 0;
    int rc = EXIT_OK;
    for (;;) {
        uint8_t len[4];
        size_t got = fread(len, 1, 4, in);
        if (got == 0)
            break;
        size_t size = got == 4 ? (size_t)len[0] | (size_t)len[1] << 8 | (size_t)len[2] << 16 |
                                     (size_t)len[3] << 24
                               : 0;
        if (size > cap) {
            uint8_t *p = realloc(buf, size);
            if (!p)
                die(EXIT_FAIL, "out of memory reading %s", path);
            buf = p;
            cap = size;
        }
        if (got != 4 || fread(buf, 1, size, in) != size) {
            fflush(stdout); /* what was shown comes before the complaint */
            fprintf(stderr, "lc-spy: %s ends in the middle of record %" PRIu64 " (cut short?)\n",
                    path, n + 1);
            rc = EXIT_FAIL;
            break;
        }
        n++;
        if (s_take(spy, buf, size))
            break;
    }
    free(buf);
    if (in != stdin)
        fclose(in);
    return rc;
}

/* The monitor beside an ipc bus; for tcp, the broker says where its monitor is. */
static void s_monitor_endpoint(const char *bus, char *out, size_t size)
{
    if (strncmp(bus, "ipc://", 6) == 0) {
        snprintf(out, size, "%s.spy", bus);
        return;
    }
    lc_client_t *c = lc_client_new(NULL, bus);
    if (!c || lc_connect(c, 3000) < 0)
        die(EXIT_FAIL,
            "cannot reach the broker at %s to ask for its monitor; is it running? "
            "(or give --monitor EP)",
            bus);
    json_t *res = NULL;
    int rc = lc_call(c, "broker.ping", NULL, &res, 3000);
    if (rc < 0)
        die(EXIT_FAIL,
            "cannot ask the broker at %s where its monitor is: broker.ping: %s "
            "(or give --monitor EP)",
            bus, lc_strerror(rc));
    const char *ep = json_string_value(json_object_get(res, "monitor"));
    if (!ep)
        die(EXIT_FAIL, "the broker at %s has no monitor; start it with --monitor EP", bus);
    snprintf(out, size, "%s", ep);
    json_decref(res);
    lc_client_destroy(&c);
}

static double s_seconds(const char *opt, const char *v)
{
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || d <= 0 || d > 1e7)
        die(EXIT_USAGE, "%s expects a positive number of seconds, not '%s'", opt, v);
    return d;
}

int main(int argc, char **argv)
{
    prog = "lc-spy";
    static const struct option longopts[] = {
        {"bus", required_argument, NULL, 'b'},      {"monitor", required_argument, NULL, 'M'},
        {"replay", required_argument, NULL, 'R'},   {"module", required_argument, NULL, 'm'},
        {"event", required_argument, NULL, 'e'},    {"kind", required_argument, NULL, 'k'},
        {"tx", required_argument, NULL, 'x'},       {"errors", no_argument, NULL, 'E'},
        {"json", no_argument, NULL, 'j'},           {"full", no_argument, NULL, 'f'},
        {"color", required_argument, NULL, 'C'},    {"record", required_argument, NULL, 'r'},
        {"quiet", no_argument, NULL, 'q'},          {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0},
    };
    spy_t spy = {0};
    trace_init(&spy.trace);
    const char *bus = NULL, *monitor = NULL, *replay = NULL, *record = NULL, *color = "auto";
    double duration = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "b:m:e:k:x:Ejfr:qn:d:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            bus = optarg;
            break;
        case 'M':
            monitor = optarg;
            break;
        case 'R':
            replay = optarg;
            break;
        case 'm':
            if (!lc_name_valid(optarg, strlen(optarg)))
                die(EXIT_USAGE, "--module: '%s' is not a module name", optarg);
            spy.trace.filter.module = optarg;
            break;
        case 'e':
            spy.trace.filter.event_glob = optarg;
            break;
        case 'k': {
            int bits = trace_kinds_parse(optarg);
            if (!bits)
                die(EXIT_USAGE,
                    "--kind expects call, reply, error, task, event or control "
                    "(comma-separated), not '%s'",
                    optarg);
            spy.trace.filter.kinds = bits;
            break;
        }
        case 'x': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno || v == 0)
                die(EXIT_USAGE, "--tx expects a transaction id (a decimal number), not '%s'",
                    optarg);
            spy.trace.filter.tx = v;
            spy.trace.tree = true;
            break;
        }
        case 'E':
            spy.trace.filter.errors = true;
            break;
        case 'j':
            spy.trace.json = true;
            break;
        case 'f':
            spy.trace.full = true;
            break;
        case 'C':
            if (strcmp(optarg, "auto") && strcmp(optarg, "always") && strcmp(optarg, "never"))
                die(EXIT_USAGE, "--color expects auto, always or never, not '%s'", optarg);
            color = optarg;
            break;
        case 'r':
            record = optarg;
            break;
        case 'q':
            spy.quiet = true;
            break;
        case 'n': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (!*optarg || *end || v == 0)
                die(EXIT_USAGE, "--count expects a positive number, not '%s'", optarg);
            spy.count = v;
            break;
        }
        case 'd':
            duration = s_seconds("--duration", optarg);
            break;
        case 'h':
            s_usage(stdout);
            return EXIT_OK;
        case 'V':
            printf("lc-spy %s\n", LC_VERSION);
            return EXIT_OK;
        default:
            s_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lc-spy: unexpected argument '%s'\n", argv[optind]);
        s_usage(stderr);
        return EXIT_USAGE;
    }
    if (spy.quiet && !record)
        die(EXIT_USAGE, "--quiet only makes sense with --record");
    spy.trace.quiet = spy.quiet;
    if (replay && record)
        die(EXIT_USAGE, "--replay and --record cannot be combined");
    bool tty = isatty(STDOUT_FILENO);
    spy.trace.color =
        !spy.trace.json && (strcmp(color, "always") == 0 ||
                            (strcmp(color, "auto") == 0 && tty && !getenv("NO_COLOR")));
    struct winsize ws;
    if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        spy.trace.width = ws.ws_col;

    if (replay) {
        int rc = s_replay(&spy, replay);
        trace_clear(&spy.trace);
        return rc;
    }

    char busbuf[512], ep[1024];
    if (!bus) {
        if (lc_endpoint_default(busbuf, sizeof busbuf) < 0)
            die(EXIT_USAGE, "the default endpoint is too long; use --bus");
        bus = busbuf;
    }
    if (monitor)
        snprintf(ep, sizeof ep, "%s", monitor);
    else
        s_monitor_endpoint(bus, ep, sizeof ep);
    struct stat st;
    if (strncmp(ep, "ipc://", 6) == 0 && stat(ep + 6, &st) < 0)
        die(EXIT_FAIL,
            "no monitor at %s (%s): is lc-broker running on %s? A broker started with "
            "--monitor none has none, one with --monitor EP has it elsewhere: "
            "'lc call broker.ping' names it, then use lc-spy --monitor EP",
            ep, strerror(errno), bus);

    if (record) {
        spy.record = fopen(record, "wb");
        if (!spy.record)
            die(EXIT_FAIL, "cannot create the recording %s: %s", record, strerror(errno));
        fputs(RECORD_MAGIC, spy.record);
    }

    /* Signals end the trace on the loop, so the summary and the recording are complete. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);

    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int hwm = SPY_RCVHWM, zero = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(sub, ep) < 0)
        die(EXIT_FAIL, "cannot attach to the monitor %s: %s", ep, zmq_strerror(errno));

    int64_t end = duration > 0 ? lc_mono_ms() + (int64_t)(duration * 1000) : 0;
    int64_t warn_at = lc_mono_ms() + SILENT_WARN_MS;
    bool attached = false, stop = false;
    int rc = EXIT_OK;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (!stop) {
        long timeout = -1;
        int64_t now = lc_mono_ms();
        if (end) {
            if (end <= now)
                break;
            timeout = end - now;
        }
        if (!attached) {
            if (warn_at && now >= warn_at) {
                fprintf(stderr,
                        "lc-spy: no word yet from the monitor at %s; is the broker running "
                        "(a socket file can outlive a killed broker)? If another spy of this "
                        "bus is stuck, the broker says hello once it has room\n",
                        ep);
                warn_at = 0;
            } else if (warn_at && (timeout < 0 || timeout > warn_at - now)) {
                timeout = warn_at - now;
            }
        }
        zmq_pollitem_t items[2] = {{sub, 0, ZMQ_POLLIN, 0}, {NULL, sigfd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, timeout) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "lc-spy: poll failed: %s\n", zmq_strerror(errno));
            rc = EXIT_FAIL;
            break;
        }
        if (items[1].revents)
            break;
        /* A few batches, then signals, the clock and the output get a look again. */
        for (int k = 0; k < BATCHES_PER_ROUND && !stop && !spy.out_errno &&
                        zmq_msg_recv(&msg, sub, ZMQ_DONTWAIT) >= 0;
             k++) {
            /* A frame is a batch: records, each after its u32 length. */
            const uint8_t *p = zmq_msg_data(&msg), *stop_at = p + zmq_msg_size(&msg);
            while (!stop && stop_at - p >= 4) {
                size_t size = lc_hdr_get_u32(p, 0);
                p += 4;
                if (size > (size_t)(stop_at - p)) {
                    fprintf(stderr, "lc-spy: a batch from the monitor ends inside a record; "
                                    "the rest of it is skipped\n");
                    break;
                }
                if (!attached && size > 3 && p[3] == REC_ATTACH) {
                    attached = true;
                    fprintf(stderr, "lc-spy: tracing %s (monitor %s)\n", bus, ep);
                }
                /* Before our own subscription arrived the picture is partial: skipped. */
                if (attached)
                    stop = s_take(&spy, p, size);
                p += size;
            }
            /* Once per batch from the broker, not per line. A reader that went away
             * (lc-spy | head) ends the trace normally. */
            if ((fflush(stdout) != 0 || ferror(stdout)) && !spy.out_errno)
                spy.out_errno = errno ? errno : EIO;
        }
        if (spy.out_errno) {
            if (spy.out_errno != EPIPE) {
                fprintf(stderr, "lc-spy: cannot write the output: %s\n", strerror(spy.out_errno));
                rc = EXIT_FAIL;
            }
            break;
        }
        /* A recording is complete up to the last batch, even while it is being written. */
        if (spy.record && fflush(spy.record) != 0)
            die(EXIT_FAIL, "cannot write the recording %s: %s", record, strerror(errno));
    }
    zmq_msg_close(&msg);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    close(sigfd);
    if (spy.record && fclose(spy.record) != 0) {
        fprintf(stderr, "lc-spy: cannot write the recording %s: %s\n", record, strerror(errno));
        rc = EXIT_FAIL;
    }
    fflush(stdout);
    fprintf(stderr, "lc-spy: %" PRIu64 " messages shown, %" PRIu64 " dropped\n", spy.trace.shown,
            spy.trace.dropped);
    trace_clear(&spy.trace);
    return rc;
}
