/* lc: the command line of the lc bus. */
#include "../common.h"
#include "lc.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Exit codes, documented in --help and lc(1). */
enum {
    EXIT_OK = 0,
    EXIT_HANDLER = 1,
    EXIT_USAGE = 2,
    EXIT_UNKNOWN = 3,
    EXIT_TIMEOUT = 4,
    EXIT_NOBUS = 5,
    EXIT_REFUSED = 6,
};

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc [--bus EP] COMMAND [ARGUMENT]...\n"
            "Talk to the modules of an lc bus.\n"
            "\n"
            "Commands:\n"
            "  call MODULE.METHOD [JSON | KEY=VALUE ...]\n"
            "        call a method and print its answer as JSON on stdout. Arguments are one\n"
            "        JSON object or KEY=VALUE words; a VALUE that reads as a JSON number,\n"
            "        true, false, null, array or object is taken as such, anything else as a\n"
            "        string.\n"
            "  enqueue MODULE.METHOD [JSON | KEY=VALUE ...]\n"
            "        queue a task; exits when the broker accepted or refused it\n"
            "  emit EVENT [JSON | KEY=VALUE ...]\n"
            "        queue an event for its subscribers; exits when the broker accepted or\n"
            "        refused it (subscribers that lost it are named on stderr)\n"
            "  list  the modules: state, pid, uid, uptime, window, in flight, backlog,\n"
            "        counters, methods with their arguments, subscriptions\n"
            "  stats the bus's counters: queue per priority, in flight, messages by kind,\n"
            "        errors by kind, losses, backlog per module (--watch: rates per second)\n"
            "  wait MODULE...\n"
            "        return when all are ready (passive or active), or exit 4 at --timeout\n"
            "  listen PATTERN...\n"
            "        subscribe to events (a name, or a prefix ending in '*'; '*' for all) and\n"
            "        print each with its metadata until interrupted or --count events\n"
            "\n"
            "Options:\n"
            "  -b, --bus EP        the bus endpoint (default: $LC_BUS, else\n"
            "                      ipc://$XDG_RUNTIME_DIR/lc/bus, else ipc:///tmp/lc-$UID/bus)\n"
            "  -t, --timeout MS    how long to wait for the answer (default 5000)\n"
            "  -p, --pretty        indent the JSON output\n"
            "  -P, --priority P    priority of a task or event: 1-5 or highest, high, normal,\n"
            "                      low, lowest (default normal)\n"
            "  -n, --count N       listen: stop after N events\n"
            "  -j, --json          listen, list, stats: JSON (listen: one object per line)\n"
            "  -w, --watch         stats: again every second, with rates\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "Exit status:\n"
            "  0  success\n"
            "  1  the handler returned an error (its code and message on stderr)\n"
            "  2  usage error\n"
            "  3  unknown, not ready or gone module or method\n"
            "  4  timeout: no answer within the deadline\n"
            "     (enqueue, emit: 0 accepted; 3 unknown module or method; 6 refused, e.g.\n"
            "     queue full)\n"
            "  5  bus unreachable: no broker at the endpoint\n"
            "  6  refused by the bus (payload too large, malformed, invalid name)\n"
            "\n"
            "Examples: lc call echo.echo text=hello n=3\n"
            "          lc emit door_opened door=front --priority high\n"
            "          lc listen 'gpio_*' --count 10 --json\n"
            "See lc(1).\n");
}

static int s_exit_code(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case LC_EHANDLER:
        return EXIT_HANDLER;
    case LC_ENOMODULE:
    case LC_ENOMETHOD:
    case LC_ENOTREADY:
    case LC_EGONE:
        return EXIT_UNKNOWN;
    case LC_ETIMEDOUT:
        return EXIT_TIMEOUT;
    case LC_ENOBUS:
        return EXIT_NOBUS;
    default:
        return EXIT_REFUSED;
    }
}

static void s_no_bus(lc_client_t *client, int timeout)
{
    fprintf(stderr, "%s: no broker answered at %s within %d ms (is lc-broker running? set "
            "LC_BUS or use --bus)\n", prog, lc_client_endpoint(client), timeout);
}

/* The arguments after the target (argv[0]) as an object, and an anonymous client. */
static lc_client_t *s_prepare(const char *bus, int argc, char **argv, json_t **args)
{
    char err[512];
    *args = args_from_argv(argc - 1, argv + 1, err, sizeof err);
    if (!*args)
        die(EXIT_USAGE, "%s", err);
    lc_client_t *client = lc_client_new(NULL, bus);
    if (!client)
        die(EXIT_USAGE, "invalid bus endpoint '%s'", bus ? bus : "(default)");
    return client;
}

static int s_call(const char *bus, int timeout, bool pretty, int argc, char **argv)
{
    if (argc < 1)
        die(EXIT_USAGE, "call needs MODULE.METHOD; try 'lc --help'");
    const char *target = argv[0];
    const char *dot = strchr(target, '.');
    if (!dot || dot == target || !dot[1])
        die(EXIT_USAGE, "'%s' is not MODULE.METHOD", target);
    json_t *args = NULL;
    lc_client_t *client = s_prepare(bus, argc, argv, &args);
    json_t *result = NULL;
    int rc = lc_call(client, target, args, &result, timeout);
    if (rc == 0) {
        char *text = json_dumps(result, JSON_ENCODE_ANY | (pretty ? JSON_INDENT(2) : JSON_COMPACT));
        printf("%s\n", text ? text : "null");
        free(text);
    } else if (rc == LC_ENOBUS) {
        s_no_bus(client, timeout);
    } else {
        json_t *code = json_object_get(result, "code");
        json_t *msg = json_object_get(result, "message");
        if (rc == LC_EHANDLER)
            fprintf(stderr, "%s: %s failed with code %lld: %s\n", prog, target,
                    (long long)json_integer_value(code), json_string_value(msg));
        else
            fprintf(stderr, "%s: %s: %s: %s\n", prog, target, lc_strerror(rc),
                    msg ? json_string_value(msg) : "");
    }
    json_decref(result);
    lc_client_destroy(&client);
    return s_exit_code(rc);
}

static int s_send(const char *cmd, const char *bus, int timeout, int priority, int argc,
                  char **argv)
{
    bool task = strcmp(cmd, "enqueue") == 0;
    if (argc < 1)
        die(EXIT_USAGE, "%s needs %s; try 'lc --help'", cmd, task ? "MODULE.METHOD" : "EVENT");
    const char *target = argv[0];
    if (task && !strchr(target, '.'))
        die(EXIT_USAGE, "'%s' is not MODULE.METHOD", target);
    json_t *args = NULL;
    lc_client_t *client = s_prepare(bus, argc, argv, &args);
    json_t *info = NULL;
    int rc = task ? lc_enqueue_wait(client, target, args, priority, timeout, &info)
                  : lc_emit_wait(client, target, args, priority, timeout, &info);
    const char *msg = json_string_value(json_object_get(info, "message"));
    if (rc == LC_ENOBUS)
        s_no_bus(client, timeout);
    else if (rc < 0)
        fprintf(stderr, "%s: %s %s: %s%s%s\n", prog, cmd, target, lc_strerror(rc),
                msg ? ": " : "", msg ? msg : "");
    else if (msg) /* accepted, but some subscribers lost it */
        fprintf(stderr, "%s: %s\n", prog, msg);
    json_decref(info);
    lc_client_destroy(&client);
    return s_exit_code(rc);
}

typedef struct {
    bool json;
    long count;
    long seen;
} listen_t;

static void s_print_event(lc_request_t *req, json_t *args, void *arg)
{
    listen_t *l = arg;
    uint64_t us = lc_request_time_us(req);
    if (l->json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:i, s:I, s:O}", "event",
                              lc_request_method(req), "source", lc_request_source(req), "id",
                              (json_int_t)lc_request_id(req), "tx", (json_int_t)lc_request_tx(req),
                              "parent", (json_int_t)lc_request_parent(req), "priority",
                              lc_request_priority(req), "time_us", (json_int_t)us, "args", args);
        char *text = json_dumps(o, JSON_COMPACT);
        printf("%s\n", text);
        free(text);
        json_decref(o);
    } else {
        time_t secs = (time_t)(us / 1000000);
        struct tm tm;
        localtime_r(&secs, &tm);
        char when[16];
        strftime(when, sizeof when, "%H:%M:%S", &tm);
        char *text = json_dumps(args, JSON_COMPACT);
        printf("%s.%03u %s from %s (priority %d, tx %llu): %s\n", when,
               (unsigned)(us / 1000 % 1000), lc_request_method(req), lc_request_source(req),
               lc_request_priority(req), (unsigned long long)lc_request_tx(req), text);
        free(text);
    }
    fflush(stdout);
    if (l->count > 0 && ++l->seen >= l->count)
        lc_stop(lc_request_client(req));
}

static int s_listen(const char *bus, int timeout, bool json, long count, int argc, char **argv)
{
    if (argc < 1)
        die(EXIT_USAGE, "listen needs at least one event name or pattern; try 'lc --help'");
    /* SIGTERM and SIGINT stop lc_run() through liblc's signal handling. */
    lc_client_t *client = lc_client_new(NULL, bus);
    if (!client)
        die(EXIT_USAGE, "invalid bus endpoint '%s'", bus ? bus : "(default)");
    listen_t l = {.json = json, .count = count};
    for (int i = 0; i < argc; i++)
        if (lc_on(client, argv[i], s_print_event, &l) < 0)
            die(EXIT_USAGE, "'%s' is not an event name or pattern ([a-z0-9_], '*' at the end)",
                argv[i]);
    lc_client_set_timeout(client, timeout);
    lc_client_set_log_level(client, LC_LOG_WARNING); /* Ctrl-C needs no comment */
    int rc = lc_run(client);
    if (rc == LC_ENOBUS)
        s_no_bus(client, timeout);
    else if (rc < 0)
        fprintf(stderr, "%s: listen: %s\n", prog, lc_strerror(rc));
    lc_client_destroy(&client);
    return s_exit_code(rc);
}

/* ---- Introspection -------------------------------------------------------------------- */

static json_t *s_ask(lc_client_t *client, const char *what, json_t *args, int timeout, int *rc)
{
    json_t *res = NULL;
    *rc = lc_call(client, what, args, &res, timeout);
    if (*rc == LC_ENOBUS)
        s_no_bus(client, timeout);
    else if (*rc < 0)
        fprintf(stderr, "%s: %s: %s: %s\n", prog, what, lc_strerror(*rc),
                json_string_value(json_object_get(res, "message")));
    return res;
}

static void s_print_json(json_t *v, bool pretty)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | (pretty ? JSON_INDENT(2) : JSON_COMPACT));
    printf("%s\n", text ? text : "null");
    free(text);
}

static int s_list(const char *bus, int timeout, bool json, bool pretty)
{
    lc_client_t *client = lc_client_new(NULL, bus);
    if (!client)
        die(EXIT_USAGE, "invalid bus endpoint '%s'", bus ? bus : "(default)");
    int rc;
    json_t *res = s_ask(client, "broker.list", NULL, timeout, &rc);
    if (rc == 0 && json) {
        s_print_json(res, pretty);
    } else if (rc == 0) {
        printf("%-16s %-8s %7s %5s %9s %6s %9s %7s %8s %8s %9s\n", "NAME", "STATE", "PID", "UID",
               "UPTIME", "WINDOW", "IN-FLIGHT", "BACKLOG", "CALLS-IN", "TASKS-IN", "EVENTS-IN");
        size_t i;
        json_t *m;
        uint64_t now = 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
        json_array_foreach(json_object_get(res, "modules"), i, m)
        {
            json_t *uid = json_object_get(m, "uid");
            char uidtxt[16] = "-";
            if (uid)
                snprintf(uidtxt, sizeof uidtxt, "%lld", (long long)json_integer_value(uid));
            double up = (double)(now - (uint64_t)json_integer_value(json_object_get(m, "since_us"))) / 1e6;
            printf("%-16s %-8s %7lld %5s %8.1fs %6lld %9lld %7lld %8lld %8lld %9lld\n",
                   json_string_value(json_object_get(m, "name")),
                   json_string_value(json_object_get(m, "state")),
                   (long long)json_integer_value(json_object_get(m, "pid")), uidtxt, up,
                   (long long)json_integer_value(json_object_get(m, "window")),
                   (long long)json_integer_value(json_object_get(m, "in_flight")),
                   (long long)json_integer_value(json_object_get(m, "backlog")),
                   (long long)json_integer_value(json_object_get(m, "calls_in")),
                   (long long)json_integer_value(json_object_get(m, "tasks_in")),
                   (long long)json_integer_value(json_object_get(m, "events_in")));
            size_t k;
            json_t *meth;
            json_array_foreach(json_object_get(m, "methods"), k, meth)
            {
                const char *help = json_string_value(json_object_get(meth, "help"));
                json_t *args = json_object_get(meth, "args");
                printf("    %s(", json_string_value(json_object_get(meth, "name")));
                const char *key;
                json_t *type;
                bool first = true;
                json_object_foreach(args, key, type)
                {
                    printf("%s%s: %s", first ? "" : ", ", key, json_string_value(type));
                    first = false;
                }
                printf(")%s%s\n", help ? "  " : "", help ? help : "");
            }
            json_t *events = json_object_get(m, "events");
            if (json_array_size(events)) {
                printf("    events:");
                json_t *e;
                json_array_foreach(events, k, e)
                {
                    printf(" %s", json_string_value(e));
                }
                printf("\n");
            }
        }
    }
    json_decref(res);
    lc_client_destroy(&client);
    return s_exit_code(rc);
}

static void s_stats_text(json_t *st, json_t *before, double secs)
{
    static const char *const rates[] = {"calls", "replies", "tasks", "events", "deliveries",
                                        "done", NULL};
    static const char *const errors[] = {"unknown_target", "timeouts", "queue_full", "malformed",
                                         "gone", "too_large", "not_active", "late_replies",
                                         "failed", NULL};
    json_t *q = json_object_get(st, "queued_by_priority");
    printf("modules %lld, queued %lld (by priority 1-5: %lld %lld %lld %lld %lld), in flight %lld\n",
           (long long)json_integer_value(json_object_get(st, "modules")),
           (long long)json_integer_value(json_object_get(st, "queued")),
           (long long)json_integer_value(json_array_get(q, 0)),
           (long long)json_integer_value(json_array_get(q, 1)),
           (long long)json_integer_value(json_array_get(q, 2)),
           (long long)json_integer_value(json_array_get(q, 3)),
           (long long)json_integer_value(json_array_get(q, 4)),
           (long long)json_integer_value(json_object_get(st, "in_flight")));
    printf("%s", before ? "per second:" : "totals:");
    for (int i = 0; rates[i]; i++) {
        long long now = (long long)json_integer_value(json_object_get(st, rates[i]));
        if (before)
            printf(" %s %.0f", rates[i],
                   (double)(now - json_integer_value(json_object_get(before, rates[i]))) / secs);
        else
            printf(" %s %lld", rates[i], now);
    }
    printf("\nerrors:");
    for (int i = 0; errors[i]; i++)
        printf(" %s %lld", errors[i], (long long)json_integer_value(json_object_get(st, errors[i])));
    printf("\nloss: dropped %lld, lost %lld, redelivered %lld; idle %lld times\n",
           (long long)json_integer_value(json_object_get(st, "dropped")),
           (long long)json_integer_value(json_object_get(st, "lost")),
           (long long)json_integer_value(json_object_get(st, "redelivered")),
           (long long)json_integer_value(json_object_get(st, "idle")));
    printf("spies: %lld attached now, %lld records dropped for spies that lagged\n",
           (long long)json_integer_value(json_object_get(st, "spies")),
           (long long)json_integer_value(json_object_get(st, "tap_dropped")));
    const char *name;
    json_t *n;
    bool any = false;
    json_object_foreach(json_object_get(st, "backlog"), name, n)
    {
        printf("%s %s %lld", any ? "," : "backlog:", name, (long long)json_integer_value(n));
        any = true;
    }
    if (any)
        printf("\n");
    fflush(stdout);
}

static int s_stats(const char *bus, int timeout, bool json, bool pretty, bool watch)
{
    lc_client_t *client = lc_client_new(NULL, bus);
    if (!client)
        die(EXIT_USAGE, "invalid bus endpoint '%s'", bus ? bus : "(default)");
    int rc;
    json_t *before = NULL;
    for (;;) {
        json_t *st = s_ask(client, "broker.stats", NULL, timeout, &rc);
        if (rc < 0) {
            json_decref(st);
            break;
        }
        if (json)
            s_print_json(st, pretty);
        else
            s_stats_text(st, before, 1.0);
        json_decref(before);
        before = st;
        if (!watch)
            break;
        if (!json)
            printf("\n");
        /* The refresh interval of a display, not a synchronisation. */
        struct timespec second = {1, 0};
        nanosleep(&second, NULL);
    }
    json_decref(before);
    lc_client_destroy(&client);
    return s_exit_code(rc);
}

static int s_wait(const char *bus, int timeout, int argc, char **argv)
{
    if (argc < 1)
        die(EXIT_USAGE, "wait needs at least one module name; try 'lc --help'");
    lc_client_t *client = lc_client_new(NULL, bus);
    if (!client)
        die(EXIT_USAGE, "invalid bus endpoint '%s'", bus ? bus : "(default)");
    json_t *names = json_array();
    for (int i = 0; i < argc; i++)
        json_array_append_new(names, json_string(argv[i]));
    json_t *res = NULL;
    int rc = lc_call(client, "broker.wait", json_pack("{s:O}", "modules", names), &res, timeout);
    if (rc == LC_ENOBUS) {
        s_no_bus(client, timeout);
    } else if (rc == LC_ETIMEDOUT) {
        char *text = json_dumps(names, JSON_COMPACT);
        fprintf(stderr, "%s: not all ready within %d ms: %s\n", prog, timeout, text);
        free(text);
    } else if (rc < 0) {
        fprintf(stderr, "%s: wait: %s: %s\n", prog, lc_strerror(rc),
                json_string_value(json_object_get(res, "message")));
    }
    json_decref(names);
    json_decref(res);
    lc_client_destroy(&client);
    return s_exit_code(rc);
}

static int s_priority(const char *text)
{
    static const char *const names[] = {"highest", "high", "normal", "low", "lowest"};
    for (int i = 0; i < 5; i++)
        if (strcmp(text, names[i]) == 0 || (text[0] == '1' + i && !text[1]))
            return i + 1;
    die(EXIT_USAGE, "--priority expects 1-5 or highest, high, normal, low, lowest, not '%s'",
        text);
}

int main(int argc, char **argv)
{
    prog = "lc";
    static const struct option longopts[] = {
        {"bus", required_argument, NULL, 'b'}, {"timeout", required_argument, NULL, 't'},
        {"pretty", no_argument, NULL, 'p'},
        {"priority", required_argument, NULL, 'P'},
        {"count", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"watch", no_argument, NULL, 'w'},    {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},   {NULL, 0, NULL, 0},
    };
    const char *bus = NULL;
    int timeout = LC_CALL_TIMEOUT_MS;
    bool pretty = false, json = false, watch = false;
    int priority = 0;
    long count = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "b:t:pP:n:jwhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            bus = optarg;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v <= 0 || v > 86400000)
                die(EXIT_USAGE, "--timeout expects milliseconds from 1 to 86400000, not '%s'",
                    optarg);
            timeout = (int)v;
            break;
        }
        case 'p':
            pretty = true;
            break;
        case 'P':
            priority = s_priority(optarg);
            break;
        case 'n': {
            char *end;
            count = strtol(optarg, &end, 10);
            if (!*optarg || *end || count <= 0)
                die(EXIT_USAGE, "--count expects a positive number, not '%s'", optarg);
            break;
        }
        case 'j':
            json = true;
            break;
        case 'w':
            watch = true;
            break;
        case 'h':
            s_usage(stdout);
            return EXIT_OK;
        case 'V':
            printf("lc %s\n", LC_VERSION);
            return EXIT_OK;
        default:
            fprintf(stderr, "Try 'lc --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        s_usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "call") == 0)
        return s_call(bus, timeout, pretty, argc - optind - 1, argv + optind + 1);
    if (strcmp(cmd, "enqueue") == 0 || strcmp(cmd, "emit") == 0)
        return s_send(cmd, bus, timeout, priority, argc - optind - 1, argv + optind + 1);
    if (strcmp(cmd, "listen") == 0)
        return s_listen(bus, timeout, json, count, argc - optind - 1, argv + optind + 1);
    if (strcmp(cmd, "list") == 0)
        return s_list(bus, timeout, json, pretty);
    if (strcmp(cmd, "stats") == 0)
        return s_stats(bus, timeout, json, pretty, watch);
    if (strcmp(cmd, "wait") == 0)
        return s_wait(bus, timeout, argc - optind - 1, argv + optind + 1);
    if (strcmp(cmd, "help") == 0) {
        s_usage(stdout);
        return EXIT_OK;
    }
    die(EXIT_USAGE, "unknown command '%s'; try 'lc --help'", cmd);
}
