/* lc-echo: an example module for people trying the bus, and for its tests. */
#include "../common.h"
#include "lc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- The journal and the busy time of tasks and events (--journal, --busy) ----------- */

static int s_journal = -1; /* --journal FILE, opened O_APPEND */
static int s_busy_ms;      /* --busy MS */

/* One JSON line per task or event, written before its handler runs with a single write(2):
 * a line is whole even when the process is killed a moment later, so a test can tell what
 * a module had started. */
static void s_journal_write(lc_request_t *req, json_t *args)
{
    static const char *const kinds[] = {"", "call", "task", "event"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *line = json_pack(
        "{s:s, s:i, s:I, s:s, s:s, s:s, s:I, s:I, s:i, s:O}", "module",
        lc_client_name(lc_request_client(req)), "pid", (int)getpid(), "time_us",
        (json_int_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, "kind", kinds[lc_request_kind(req)],
        "name", lc_request_method(req), "source", lc_request_source(req), "id",
        (json_int_t)lc_request_id(req), "tx", (json_int_t)lc_request_tx(req), "priority",
        lc_request_priority(req), "args", args);
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (!text)
        return;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps' terminator becomes the line's end */
    if (write(s_journal, text, n + 1) != (ssize_t)(n + 1))
        lc_log(lc_request_client(req), LC_LOG_ERROR, "cannot append to the journal: %s",
               strerror(errno));
    free(text);
}

typedef struct {
    lc_method_fn *fn;
} handler_t;

/* Every handler runs through here: a task or event is journalled and takes its busy time
 * first; calls go straight on. */
static void s_dispatch(lc_request_t *req, json_t *args, void *arg)
{
    const handler_t *h = arg;
    if (lc_request_kind(req) != LC_KIND_CALL) {
        if (s_journal >= 0)
            s_journal_write(req, args);
        if (s_busy_ms > 0) {
            struct timespec ts = {s_busy_ms / 1000, (long)(s_busy_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) < 0)
                ;
        }
    }
    h->fn(req, args, NULL);
}

static handler_t s_handlers[16];
static int s_nhandlers;

static void s_method(lc_client_t *client, const char *name, lc_method_fn *fn)
{
    handler_t *h = &s_handlers[s_nhandlers++];
    h->fn = fn;
    lc_method(client, name, s_dispatch, h);
}

static void s_echo(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    lc_reply(req, json_incref(args));
}

static void s_fail(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    json_t *code = json_object_get(args, "code");
    const char *msg = json_string_value(json_object_get(args, "message"));
    lc_reply_error(req, json_is_integer(code) ? (int)json_integer_value(code) : 42, "%s",
                   msg ? msg : "echo.fail fails on purpose");
}

static int s_ms_arg(lc_request_t *req, json_t *args)
{
    json_t *ms = json_object_get(args, "ms");
    if (!json_is_integer(ms) || json_integer_value(ms) < 0 || json_integer_value(ms) > 3600000) {
        lc_reply_error(req, 22, "argument \"ms\" must be an integer from 0 to 3600000");
        return -1;
    }
    return (int)json_integer_value(ms);
}

static void s_sleep_done(lc_client_t *client, int timer_id, void *arg)
{
    (void)client;
    (void)timer_id;
    lc_request_t *req = arg;
    lc_reply(req, NULL);
}

/* Answers after ms milliseconds without holding up the module: a deferred reply. */
static void s_sleep(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    int ms = s_ms_arg(req, args);
    if (ms < 0)
        return;
    lc_defer(req);
    if (lc_timer_add(lc_request_client(req), ms, false, s_sleep_done, req) < 0)
        lc_reply_error(req, 12, "cannot start a timer");
}

/* Holds the module's loop for ms milliseconds: a stuck handler, on purpose. */
static void s_block(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    int ms = s_ms_arg(req, args);
    if (ms < 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0)
        ;
    lc_reply(req, NULL);
}

static void s_crash(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)args;
    (void)arg;
    abort();
}

/* Calls another method and answers with its result: for chains such as A -> B -> A. */
static void s_call(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    const char *target = json_string_value(json_object_get(args, "target"));
    if (!target) {
        lc_reply_error(req, 22, "argument \"target\" (module.method) is required");
        return;
    }
    json_t *inner = json_object_get(args, "args");
    json_t *result = NULL;
    int rc = lc_call(lc_request_client(req), target, json_incref(inner), &result, 0);
    if (rc == 0)
        lc_reply(req, result);
    else {
        /* The inner handler's own code, or the bus status number (see lc_call()). */
        const char *msg = json_string_value(json_object_get(result, "message"));
        lc_reply_error(req, (int)json_integer_value(json_object_get(result, "code")), "%s: %s: %s",
                       target, lc_strerror(rc), msg ? msg : "");
        json_decref(result);
    }
}

/* ---- Recording, for tests and demonstrations of ordering and transactions ------------ */

static json_t *s_log;        /* what record handled, in order */
static json_t *s_held;       /* requests kept by hold, as integers (pointers) */

static void s_record_entry(lc_request_t *req, json_t *args)
{
    static const char *const kinds[] = {"", "call", "task", "event"};
    json_array_append_new(
        s_log, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:O}", "kind",
                         kinds[lc_request_kind(req)], "name", lc_request_method(req), "source",
                         lc_request_source(req), "tx", (json_int_t)lc_request_tx(req), "id",
                         (json_int_t)lc_request_id(req), "parent",
                         (json_int_t)lc_request_parent(req), "priority", lc_request_priority(req),
                         "args", args));
}

static void s_record(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    s_record_entry(req, args);
}

static handler_t s_record_handler = {s_record};

static void s_recorded(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    lc_reply(req, json_pack("{s:O}", "entries", s_log));
    if (!json_is_false(json_object_get(args, "clear")))
        json_array_clear(s_log);
}

/* Sends a task or an event from inside a handler, so it continues the transaction. */
static void s_forward(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    s_record_entry(req, args);
    lc_client_t *c = lc_request_client(req);
    const char *task = json_string_value(json_object_get(args, "task"));
    const char *event = json_string_value(json_object_get(args, "event"));
    json_t *inner = json_incref(json_object_get(args, "args"));
    int priority = (int)json_integer_value(json_object_get(args, "priority"));
    if (json_is_true(json_object_get(args, "new_tx")))
        priority |= LC_NEW_TX;
    if (json_is_true(json_object_get(args, "wait"))) {
        /* Answers once the broker took it or refused it: the acceptance's info. */
        json_t *info = NULL;
        int rc = task ? lc_enqueue_wait(c, task, inner, priority, 0, &info)
                      : lc_emit_wait(c, event, inner, priority, 0, &info);
        if (rc < 0) {
            const char *msg = json_string_value(json_object_get(info, "message"));
            lc_reply_error(req, rc, "forward: %s: %s", lc_strerror(rc), msg ? msg : "");
            json_decref(info);
        } else {
            lc_reply(req, info);
        }
        return;
    }
    int rc = task ? lc_enqueue(c, task, inner, priority)
                  : lc_emit(c, event, inner, priority);
    if (rc < 0)
        lc_reply_error(req, rc, "forward: %s", lc_strerror(rc));
}

/* Keeps the request open (holding its slot) until release is called. */
static void s_hold(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    s_record_entry(req, args);
    lc_defer(req);
    json_array_append_new(s_held, json_integer((json_int_t)(intptr_t)req));
}

static size_t s_release_all(void)
{
    size_t i, n = json_array_size(s_held);
    json_t *v;
    json_array_foreach(s_held, i, v)
    {
        lc_done((lc_request_t *)(intptr_t)json_integer_value(v));
    }
    json_array_clear(s_held);
    return n;
}

static void s_release(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    lc_reply(req, json_pack("{s:I}", "released", (json_int_t)s_release_all()));
}

static void s_on_active(lc_client_t *client, void *arg)
{
    (void)arg;
    lc_log(client, LC_LOG_INFO, "active on %s: methods echo, fail, sleep, block, crash, call, "
           "record, recorded, forward, hold, release", lc_client_endpoint(client));
}

static void s_usage(FILE *out)
{
    fprintf(out, "Usage: lc-echo [--name NAME] [--bus EP] [--config FILE] [OPTION]...\n"
                 "An example module. Methods:\n"
                 "  echo          answers with its arguments\n"
                 "  fail          answers with error code 42 (or \"code\") and a message\n"
                 "  sleep ms=N    answers after N ms, without holding up the module (deferred)\n"
                 "  block ms=N    holds the module's loop for N ms, then answers\n"
                 "  crash         aborts the process\n"
                 "  call target=MODULE.METHOD [args=OBJECT]  calls another method, answers with "
                 "its result\n"
                 "\n"
                 "  --name NAME       module name (default: $LC_MODULE, else echo)\n"

            "  --config FILE     system file (default: $LC_CONFIG)\n"
            "  --log-level L     critical, error, warning, info or debug (default: info)\n"
            "  -l, --listen PAT  record events matching PAT (a name or a prefix ending in '*');\n"
            "                    may be repeated\n"
            "  -c, --concurrency N  task and event handlers at once (default 1)\n"
            "  -w, --window N    items the broker may deliver ahead (default 64)\n"
            "  -j, --journal FILE  append a JSON line for every task and event, before its\n"
            "                    handler runs\n"
            "  -b, --busy MS     every task and event first holds the loop MS ms (default 0)\n"
                 "  --bus EP          bus endpoint (default: $LC_BUS or the per-user socket)\n"
                 "  -h, --help        show this help and exit\n"
                 "  -V, --version     show the version and exit\n"
                 "Stops on SIGTERM or SIGINT. See lc-echo(1).\n");
}

int main(int argc, char **argv)
{
    prog = "lc-echo";
    /* --name, --bus, --config and --log-level (or LC_MODULE, LC_BUS, LC_CONFIG,
     * LC_LOG_LEVEL) are taken out of argv by liblc first. */
    lc_client_t *client = lc_module_new("echo", &argc, argv);
    if (!client)
        return 2;
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"concurrency", required_argument, NULL, 'c'},
        {"window", required_argument, NULL, 'w'},
        {"journal", required_argument, NULL, 'j'},
        {"busy", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *patterns[16];
    int npatterns = 0, concurrency = 1, window = 64;
    int opt;
    while ((opt = getopt_long(argc, argv, "l:c:w:j:b:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (npatterns == 16)
                die(2, "at most 16 --listen patterns");
            patterns[npatterns++] = optarg;
            break;
        case 'c':
            concurrency = atoi(optarg);
            if (concurrency < 1)
                die(2, "--concurrency expects a positive number");
            break;
        case 'w':
            window = atoi(optarg);
            if (window < 1)
                die(2, "--window expects a positive number");
            break;
        case 'j':
            if (s_journal >= 0)
                close(s_journal);
            s_journal = open(optarg, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (s_journal < 0)
                die(2, "cannot open the journal %s: %s", optarg, strerror(errno));
            break;
        case 'b': {
            char *end;
            long ms = strtol(optarg, &end, 10);
            if (*optarg == 0 || *end || ms < 0 || ms > 3600000)
                die(2, "--busy expects milliseconds from 0 to 3600000");
            s_busy_ms = (int)ms;
            break;
        }
        case 'h':
            s_usage(stdout);
            lc_client_destroy(&client);
            return 0;
        case 'V':
            printf("lc-echo %s\n", LC_VERSION);
            lc_client_destroy(&client);
            return 0;
        default:
            fprintf(stderr, "Try 'lc-echo --help'.\n");
            lc_client_destroy(&client);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lc-echo: unexpected argument '%s'\n", argv[optind]);
        lc_client_destroy(&client);
        return 2;
    }
    s_method(client, "echo", s_echo);
    lc_method_doc(client, "echo", "answers with its arguments", NULL);
    s_method(client, "fail", s_fail);
    lc_method_doc(client, "fail", "answers with an error", "code:integer message:string");
    s_method(client, "sleep", s_sleep);
    lc_method_doc(client, "sleep", "answers after ms milliseconds (deferred)", "ms:integer");
    s_method(client, "block", s_block);
    lc_method_doc(client, "block", "holds the module's loop for ms milliseconds", "ms:integer");
    s_method(client, "crash", s_crash);
    lc_method_doc(client, "crash", "aborts the process", NULL);
    s_method(client, "call", s_call);
    lc_method_doc(client, "call", "calls target with args and answers with its result",
                  "target:string args:object");
    s_log = json_array();
    s_held = json_array();
    s_method(client, "record", s_record);
    lc_method_doc(client, "record", "records what it handled, with its metadata", NULL);
    s_method(client, "recorded", s_recorded);
    lc_method_doc(client, "recorded", "answers the recorded entries and clears them",
                  "clear:boolean");
    s_method(client, "forward", s_forward);
    lc_method_doc(client, "forward", "records, then queues a task or an event",
                  "task:string event:string args:object priority:integer new_tx:boolean wait:boolean");
    s_method(client, "hold", s_hold);
    lc_method_doc(client, "hold", "records and keeps the request open until release", NULL);
    s_method(client, "release", s_release);
    lc_method_doc(client, "release", "finishes every held request", NULL);
    for (int i = 0; i < npatterns; i++)
        if (lc_on(client, patterns[i], s_dispatch, &s_record_handler) < 0)
            die(2, "invalid event pattern '%s'", patterns[i]);
    lc_hook(client, LC_HOOK_ACTIVE, s_on_active, NULL);
    lc_client_set_concurrency(client, concurrency);
    lc_client_set_window(client, window);

    /* SIGTERM or SIGINT shut the module down through liblc; lc_run then returns 0. */
    int rc = lc_run(client);
    s_release_all(); /* nothing is left open at the end */
    if (rc < 0) {
        fprintf(stderr, "lc-echo: cannot serve as '%s' on %s: %s\n", lc_client_name(client),
                lc_client_endpoint(client), lc_strerror(rc));
        lc_client_destroy(&client);
        json_decref(s_log);
        json_decref(s_held);
        if (s_journal >= 0)
            close(s_journal);
        return 1;
    }
    lc_client_destroy(&client);
    json_decref(s_log);
    json_decref(s_held);
    if (s_journal >= 0)
        close(s_journal);
    return 0;
}
