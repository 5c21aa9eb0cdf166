/* lc-broker: command line, signals, and the broker's loop. */
#include "broker.h"
#include "lc.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_ENDPOINTS 16

static void s_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: lc-broker [OPTION]...\n"
        "Route calls between the modules of an lc bus.\n"
        "\n"
        "  -e, --endpoint EP        listen on EP (ipc://PATH or tcp://HOST:PORT); may be\n"
        "                           given up to %d times. Default: $LC_BUS, else\n"
        "                           ipc://$XDG_RUNTIME_DIR/lc/bus, else ipc:///tmp/lc-$UID/bus\n"
        "      --max-payload BYTES  largest payload accepted (default 1048576)\n"
        "      --heartbeat MS       heartbeat interval asked of peers without kernel\n"
        "                           credentials, i.e. over tcp (default 1000); such a peer\n"
        "                           is dead after 3 silent intervals\n"
        "      --call-timeout MS    deadline of calls that carry none (default 5000)\n"
        "      --max-queue N        tasks and events queued for all modules together\n"
        "                           (default 100000)\n"
        "      --max-backlog N      tasks and events queued for one module (default 10000)\n"
        "      --max-sent N         tasks and events one module sent that may be queued\n"
        "                           or in flight at once (an event once, however many\n"
        "                           copies); beyond, its sends are refused (default:\n"
        "                           half of --max-queue)\n"
        "      --window N           items delivered to a module ahead of their completion\n"
        "                           (default 64; a module may ask for another)\n"
        "      --grace MS           how long the backlog of a module that went away waits\n"
        "                           for it to come back (default 30000)\n"
        "      --start-timeout MS   with a list of expected modules (broker.expect): how\n"
        "                           long to wait for all before activating those present\n"
        "                           (default 10000)\n"
        "      --drain MS           exit: how long queued items may still be handled\n"
        "                           (default 5000)\n"
        "      --stop-timeout MS    exit: how long one module may take to shut down before\n"
        "                           the next is asked (default 5000)\n"
        "      --exit-timeout MS    exit: how long modules have to shut down and leave\n"
        "                           (default 10000)\n"
        "      --monitor EP         where lc-spy attaches; 'none' for no monitor. Default:\n"
        "                           beside the first ipc endpoint, ipc://PATH.spy; none\n"
        "                           with only tcp endpoints\n"
        "      --monitor-queue N    batches of records (each up to 2 ms of traffic or\n"
        "                           64 KiB) held for a spy that lags before they are\n"
        "                           dropped and counted (default 1000)\n"
        "      --group GROUP        ipc sockets 0660 (not 0600) and the folders the broker\n"
        "                           creates for them 0710 (not 0700), owned by GROUP, so\n"
        "                           its members can reach the bus; they may use it only\n"
        "                           when allowed (below)\n"
        "      --allow-user USERS   users (names or uids, comma-separated) allowed to use\n"
        "                           the bus besides the broker's own; may be repeated\n"
        "      --allow-group GROUPS members of these groups are allowed too\n"
        "                           An ipc peer of any other user is refused at\n"
        "                           registration (tcp peers are not checked: use tcp on\n"
        "                           loopback or trusted networks only)\n"
        "  -q, --quiet              log warnings and errors only\n"
        "  -v, --verbose            log debugging detail too\n"
        "  -h, --help               show this help and exit\n"
        "  -V, --version            show the version and exit\n"
        "\n"
        "SIGTERM or SIGINT (or an 'exit' event) stops the system in order: 'exit' to its\n"
        "subscribers, every module deactivated, the queue drained, modules shut down in\n"
        "reverse start order; then the broker exits, removing its ipc socket files.\n"
        "A second signal exits at once.\n"
        "Exit status: 0 after a clean stop, 1 on a start-up or runtime error, 2 on a usage "
        "error.\n"
        "See lc-broker(1) and docs/protocol.md.\n",
        MAX_ENDPOINTS);
}

static long s_number(const char *opt, const char *value, long min, long max)
{
    char *end;
    long v = strtol(value, &end, 10);
    if (*value == 0 || *end || v < min || v > max) {
        fprintf(stderr, "lc-broker: %s expects a number from %ld to %ld, not '%s'\n", opt, min, max,
                value);
        exit(2);
    }
    return v;
}

/* Each module on ipc costs the broker two or three descriptors (its connection, the pidfd
 * of its process, and its ledger if it has one), and libzmq aborts the whole process when accepting a connection fails for lack
 * of descriptors: so the broker takes all the hard limit allows rather than the usual soft
 * limit of 1024, which a few hundred connections would exhaust. It uses no select(). */
static void s_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"max-payload", required_argument, NULL, 'P'},
        {"heartbeat", required_argument, NULL, 'H'},
        {"call-timeout", required_argument, NULL, 'T'},
        {"max-queue", required_argument, NULL, 'Q'},
        {"max-backlog", required_argument, NULL, 'B'},
        {"max-sent", required_argument, NULL, 'N'},
        {"window", required_argument, NULL, 'W'},
        {"grace", required_argument, NULL, 'G'},
        {"start-timeout", required_argument, NULL, 'S'},
        {"drain", required_argument, NULL, 'D'},
        {"exit-timeout", required_argument, NULL, 'X'},
        {"stop-timeout", required_argument, NULL, 'K'},
        {"monitor", required_argument, NULL, 'M'},
        {"monitor-queue", required_argument, NULL, 'm'},
        {"group", required_argument, NULL, 'g'},
        {"allow-user", required_argument, NULL, 'u'},
        {"allow-group", required_argument, NULL, 'a'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *endpoints[MAX_ENDPOINTS + 1] = {NULL};
    int nep = 0;
    broker_config_t cfg = {
        .endpoints = endpoints,
        .max_payload = 1024 * 1024,
        .heartbeat_ms = 1000,
        .call_timeout_ms = LC_CALL_TIMEOUT_MS,
        .max_queue = 100000,
        .max_backlog = 10000,
        .window = 64,
        .grace_ms = 30000,
        .start_timeout_ms = 10000,
        .drain_ms = 5000,
        .exit_ms = 10000,
        .stop_ms = 5000,
        .verbose = 1,
        .monitor_queue = 1000,
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "e:qvhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'e':
            if (nep == MAX_ENDPOINTS) {
                fprintf(stderr, "lc-broker: at most %d endpoints\n", MAX_ENDPOINTS);
                return 2;
            }
            endpoints[nep++] = optarg;
            break;
        case 'P':
            cfg.max_payload = (size_t)s_number("--max-payload", optarg, 1, 256L << 20);
            break;
        case 'H':
            cfg.heartbeat_ms = (int)s_number("--heartbeat", optarg, 10, 3600000);
            break;
        case 'T':
            cfg.call_timeout_ms = (int)s_number("--call-timeout", optarg, 1, 86400000);
            break;
        case 'Q':
            cfg.max_queue = (size_t)s_number("--max-queue", optarg, 1, 100000000);
            break;
        case 'B':
            cfg.max_backlog = (size_t)s_number("--max-backlog", optarg, 1, 100000000);
            break;
        case 'N':
            cfg.max_sent = (size_t)s_number("--max-sent", optarg, 1, 100000000);
            break;
        case 'W':
            cfg.window = (int)s_number("--window", optarg, 1, 100000);
            break;
        case 'G':
            cfg.grace_ms = (int)s_number("--grace", optarg, 0, 86400000);
            break;
        case 'S':
            cfg.start_timeout_ms = (int)s_number("--start-timeout", optarg, 0, 86400000);
            break;
        case 'D':
            cfg.drain_ms = (int)s_number("--drain", optarg, 0, 86400000);
            break;
        case 'K':
            cfg.stop_ms = (int)s_number("--stop-timeout", optarg, 0, 86400000);
            break;
        case 'X':
            cfg.exit_ms = (int)s_number("--exit-timeout", optarg, 0, 86400000);
            break;
        case 'M':
            cfg.monitor = strcmp(optarg, "none") == 0 ? "" : optarg;
            break;
        case 'm':
            cfg.monitor_queue = (int)s_number("--monitor-queue", optarg, 1, 10000000);
            break;
        case 'g':
            if (access_group_id(optarg, &cfg.group_id) < 0) {
                fprintf(stderr, "lc-broker: --group: no group '%s' on this system\n", optarg);
                return 2;
            }
            cfg.group = optarg;
            break;
        case 'u':
        case 'a': {
            char why[256];
            if ((opt == 'u' ? access_add_users : access_add_groups)(&cfg.allow, optarg, why,
                                                                   sizeof why) < 0) {
                fprintf(stderr, "lc-broker: --%s: %s\n", opt == 'u' ? "allow-user" : "allow-group",
                        why);
                return 2;
            }
            break;
        }
        case 'q':
            cfg.verbose = 0;
            break;
        case 'v':
            cfg.verbose = 2;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        case 'V':
            printf("lc-broker %s\n", LC_VERSION);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lc-broker: unexpected argument '%s'\n", argv[optind]);
        s_usage(stderr);
        return 2;
    }
    static char fallback[512];
    if (nep == 0) {
        if (lc_endpoint_default(fallback, sizeof fallback) < 0) {
            fprintf(stderr, "lc-broker: the default endpoint is too long; use --endpoint\n");
            return 2;
        }
        endpoints[nep++] = fallback;
    }

    /* One stuck consumer holds up to a backlog and a window of a sender's items: a share no
     * larger would let it refuse everything that sender sends. */
    size_t share = cfg.max_sent ? cfg.max_sent : (cfg.max_queue + 1) / 2;
    if (share <= cfg.max_backlog + (size_t)cfg.window)
        fprintf(stderr,
                "lc-broker: warning: a module's share of the queue (--max-sent, %zu) is not above "
                "--max-backlog + --window (%zu): one stuck consumer of its items can make all "
                "its sends refused\n",
                share, cfg.max_backlog + (size_t)cfg.window);

    /* Blocked before any thread starts, so that only the loop's signalfd sees them. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    s_raise_fd_limit();
    char err[1024];
    broker_t *broker = broker_new(&cfg, err, sizeof err);
    if (!broker) {
        fprintf(stderr, "lc-broker: %s\n", err);
        return 1;
    }
    int rc = broker_run(broker);
    broker_destroy(&broker);
    return rc == 0 ? 0 : 1;
}
