/* lc-simple: the Python package's simple example, step by step, as a starting point for a
 * module of your own. Copy this file, rename the module, keep what you need.
 *
 * What it shows, in the order it happens:
 *   1. reading its own settings from the system file (greeting, subject, count);
 *   2. methods that others (and the module itself) call or queue: myfunc answers at once,
 *      myfunc_async finishes later without blocking the module;
 *   3. once active, the example's steps, run as the task `run` so that they belong to one
 *      transaction: tasks to itself (in new transactions and in this one), a synchronous call
 *      and a task to the web module's add_log_entry, the event my_simple_example_event, and
 *      gauges through prometheus.set_gauge_value.
 * A module that is not on the bus (web, prometheus) makes a step fail with a clear message in
 * the log; the example goes on with the next step.
 *
 * Try it: lc call simple.myfunc param=hi; lc enqueue simple.run; lc listen my_simple_example_event.
 */
#include "lc.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything the module keeps. Handlers get it through their `arg` pointer rather than
 * through globals, so that the code still works if you ever run two clients in a process. */
typedef struct later later_t;

typedef struct {
    lc_client_t *client;
    later_t *later; /* myfunc_async requests not answered yet */
    char *greeting; /* myfunc's parameter in the example (the seed's "Hello") */
    char *subject;  /* myfunc_async's parameter (the seed's "World") */
    int count;      /* the value the example gives its gauges (the seed's 17) */
} simple_t;

/* Settings are read from the module's own section, modules.<name>.config of the system file.
 * Each getter has a default, so the module also runs without a file. The strings are
 * copied because the library's are only lent until the configuration is loaded again
 * (SIGHUP). */
static int s_read_config(simple_t *s)
{
    char *greeting = strdup(lc_config_str(s->client, "greeting", "Hello"));
    char *subject = strdup(lc_config_str(s->client, "subject", "World"));
    if (!greeting || !subject) {
        free(greeting);
        free(subject);
        return LC_ENOMEM;
    }
    free(s->greeting);
    free(s->subject);
    s->greeting = greeting;
    s->subject = subject;
    s->count = (int)lc_config_int(s->client, "count", 17);
    return 0;
}

/* ---- Methods -------------------------------------------------------------------------------
 * A handler serves calls (lc_call, `lc call`) and tasks (lc_enqueue, `lc enqueue`) alike. Its
 * arguments are one JSON object: the seed's keyword arguments, by the same names. */

/* myfunc(param): logs its parameter and answers it. */
static void s_myfunc(lc_request_t *req, json_t *args, void *arg)
{
    simple_t *s = arg;
    /* The argument was declared "param:string" (see main), so the library has already
     * refused a param of another type; it may still be missing. */
    const char *param = json_string_value(json_object_get(args, "param"));
    lc_log(s->client, LC_LOG_INFO, "myfunc: param=%s (tx %" PRIu64 ", from %s)",
           param ? param : "(none)", lc_request_tx(req), lc_request_source(req));
    /* A call's caller gets this value; for a task nobody waits for it. */
    lc_reply(req, json_pack("{s:s?}", "param", param));
}

/* The seed's coroutine method that awaits something: here, a request that is finished later,
 * from a timer, while the module keeps serving calls. */
struct later {
    later_t *next;
    simple_t *s;
    lc_request_t *req;
    int timer;
    char *param;
};

/* Answers a deferred request and forgets it. lc_reply answers a call and finishes a task
 * too; either way the library frees the request. */
static void s_later_finish(later_t *later)
{
    simple_t *s = later->s;
    for (later_t **p = &s->later; *p; p = &(*p)->next)
        if (*p == later) {
            *p = later->next;
            break;
        }
    lc_reply(later->req, json_pack("{s:s?}", "param", later->param));
    free(later->param);
    free(later);
}

static void s_myfunc_async_done(lc_client_t *c, int timer_id, void *arg)
{
    (void)timer_id;
    later_t *later = arg;
    lc_log(c, LC_LOG_INFO, "myfunc_async: param=%s, finished 100 ms later",
           later->param ? later->param : "(none)");
    s_later_finish(later);
}

/* myfunc_async(param): answers after 100 ms without holding up the module's loop. Until then
 * the request keeps its slot: with the default concurrency of 1, the module's next task
 * waits for it, as the next step of a coroutine would. */
static void s_myfunc_async(lc_request_t *req, json_t *args, void *arg)
{
    simple_t *s = arg;
    const char *param = json_string_value(json_object_get(args, "param"));
    lc_log(s->client, LC_LOG_INFO, "myfunc_async: param=%s (tx %" PRIu64 "), answering in 100 ms",
           param ? param : "(none)", lc_request_tx(req));
    later_t *later = calloc(1, sizeof *later);
    if (!later || (param && !(later->param = strdup(param)))) {
        free(later);
        lc_reply_error(req, 12, "myfunc_async: out of memory");
        return;
    }
    later->s = s;
    later->req = req;
    /* args is only lent for this call: what the timer needs was copied above. */
    later->timer = lc_timer_add(s->client, 100, false, s_myfunc_async_done, later);
    if (later->timer < 0) {
        lc_reply_error(req, 12, "myfunc_async: cannot start a timer");
        free(later->param);
        free(later);
        return;
    }
    lc_defer(req);
    later->next = s->later;
    s->later = later;
}

/* ---- The example's steps (the seed's run) ----------------------------------------------- */

/* Logs a failed call: what was called, the library's reason, the callee's message. */
static void s_log_call_error(simple_t *s, const char *target, int rc, json_t *result)
{
    const char *msg = json_string_value(json_object_get(result, "message"));
    lc_log(s->client, LC_LOG_ERROR, "%s failed: %s (%s); the example goes on", target,
           lc_strerror(rc), msg ? msg : "no details");
}

/* A synchronous call with a deadline. It never hangs: a module that is not on the bus
 * answers at once (LC_ENOMODULE), one that is stuck after timeout_ms (LC_ETIMEDOUT). */
static json_t *s_call(simple_t *s, const char *target, json_t *args)
{
    json_t *result = NULL;
    int rc = lc_call(s->client, target, args, &result, 2000);
    if (rc < 0) {
        s_log_call_error(s, target, rc, result);
        json_decref(result);
        return NULL;
    }
    return result;
}

/* Queues a task. What the library refuses at once (a bad name, no broker) is logged here;
 * what the broker refuses later arrives at s_on_notice. */
static void s_enqueue(simple_t *s, const char *target, json_t *args, int priority)
{
    int rc = lc_enqueue(s->client, target, args, priority);
    if (rc < 0)
        lc_log(s->client, LC_LOG_ERROR, "task %s not sent: %s; the example goes on", target,
               lc_strerror(rc));
}

/* run: the seed's run(), step by step. It runs as a task, not in the active hook, because
 * only what is sent while handling a message continues that message's transaction: sent from
 * here, the steps below are one transaction, which `lc-spy` or a log shows as one chain. */
static void s_run(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    simple_t *s = arg;
    lc_client_t *c = s->client;
    lc_log(c, LC_LOG_INFO, "run: the example's steps (tx %" PRIu64 ")", lc_request_tx(req));

    /* 1. Two tasks to this module's own methods (no dot: its own), each in a transaction of
     *    its own (LC_NEW_TX), as the seed's enqueue_task without metadata. They run after this
     *    handler returns: a module handles one task at a time. */
    s_enqueue(s, "myfunc", json_pack("{s:s}", "param", s->greeting), LC_NEW_TX);
    s_enqueue(s, "myfunc_async", json_pack("{s:s}", "param", s->subject), LC_NEW_TX);

    /* 2. The same two in this transaction (priority 0: inherit it, and the priority): the
     *    seed passed run's metadata on for this. */
    s_enqueue(s, "myfunc", json_pack("{s:s}", "param", s->greeting), 0);
    s_enqueue(s, "myfunc_async", json_pack("{s:s}", "param", s->subject), 0);

    /* 3. A synchronous call to the web module: it answers the position of the new line. */
    json_t *res = s_call(s, "web.add_log_entry",
                         json_pack("{s:s}", "text", "simple: this line was added synchronously"));
    if (res) {
        lc_log(c, LC_LOG_INFO, "web.add_log_entry: the line is at position %" JSON_INTEGER_FORMAT,
               json_integer_value(res));
        json_decref(res);
    }

    /* 4. The same as a task: lc_enqueue returns at once; if the broker refuses it (no such
     *    module or method), s_on_notice hears of it. */
    s_enqueue(s, "web.add_log_entry",
              json_pack("{s:s}", "text", "simple: this line was added asynchronously"), 0);

    /* 5. An event, to whoever subscribes (the web module shows its param). Nobody
     *    subscribing is not an error: an event is news, not a request. */
    int rc = lc_emit(c, "my_simple_example_event",
                     json_pack("{s:s}", "param", "simple: my_simple_example_event was triggered"),
                     0);
    if (rc < 0)
        lc_log(c, LC_LOG_ERROR, "my_simple_example_event not sent: %s; the example goes on",
               lc_strerror(rc));

    /* 6. Gauges: the seed's three calls, with set_gauge_value's argument names. The first
     *    creates the gauge with its documentation only; the second sets its value; the third
     *    makes a gauge with a label (label values are text). */
    json_decref(s_call(s, "prometheus.set_gauge_value",
                       json_pack("{s:s, s:s}", "metric", "example_metric", "documentation",
                                 "an example gauge of lc-simple")));
    json_decref(s_call(s, "prometheus.set_gauge_value",
                       json_pack("{s:s, s:i}", "metric", "example_metric", "value", s->count)));
    json_decref(s_call(s, "prometheus.set_gauge_value",
                       json_pack("{s:s, s:i, s:s, s:s}", "metric", "example_metric_with_label",
                                 "value", s->count, "label_instance", "1", "documentation",
                                 "an example gauge with a label")));
    lc_log(c, LC_LOG_INFO, "run: done; the queued tasks follow");
}

/* ---- Lifecycle ---------------------------------------------------------------------------- */

/* A task or event the broker refused after lc_enqueue/lc_emit returned (the module is not on
 * the bus, has no such method, the queue is full). Without this callback the library writes
 * such refusals to stderr itself; with it, the module says what they mean for it. */
static void s_on_notice(lc_client_t *c, int rc, const char *target, json_t *info, void *arg)
{
    (void)arg;
    const char *msg = json_string_value(json_object_get(info, "message"));
    lc_log(c, LC_LOG_ERROR, "%s was refused: %s (%s); the example goes on", target,
           lc_strerror(rc), msg ? msg : "no details");
}

/* Active: the module may now send on its own. The seed's run() did its work here; this one
 * queues it as the task `run` (see s_run for why). */
static void s_on_active(lc_client_t *c, void *arg)
{
    simple_t *s = arg;
    lc_log(c, LC_LOG_INFO, "active: greeting \"%s\", subject \"%s\", count %d", s->greeting,
           s->subject, s->count);
    int rc = lc_enqueue(c, "run", NULL, 0);
    if (rc < 0)
        lc_log(c, LC_LOG_ERROR, "cannot queue the task run: %s", lc_strerror(rc));
}

/* Shutdown: release everything. A request still deferred is answered now rather than left
 * open, and its timer goes with it. */
static void s_on_shutdown(lc_client_t *c, void *arg)
{
    simple_t *s = arg;
    while (s->later) {
        lc_timer_cancel(c, s->later->timer);
        s_later_finish(s->later);
    }
}

/* SIGHUP: the system file was read again; take the new settings. */
static void s_on_reload(lc_client_t *c, void *arg)
{
    simple_t *s = arg;
    if (s_read_config(s) < 0)
        lc_log(c, LC_LOG_ERROR, "reload: out of memory; the previous settings stay");
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-simple [--name NAME] [--bus EP] [--config FILE] [--log-level L]\n"
            "The simple example: once active it runs the task run, which queues myfunc and\n"
            "myfunc_async, calls and queues web.add_log_entry, emits my_simple_example_event\n"
            "and sets gauges through prometheus.set_gauge_value, logging each step.\n"
            "\n"
            "Settings (its config: section): greeting (Hello), subject (World), count (17).\n"
            "Methods: myfunc param=TEXT, myfunc_async param=TEXT, run.\n"
            "\n"
            "  --name NAME       module name (default: $LC_MODULE, else simple)\n"
            "  --bus EP          bus endpoint (default: $LC_BUS or the per-user socket)\n"
            "  --config FILE     system file (default: $LC_CONFIG)\n"
            "  --log-level L     critical, error, warning, info or debug (default: info)\n"
            "  -h, --help        show this help and exit\n"
            "  -V, --version     show the version and exit\n"
            "Stops on SIGTERM or SIGINT; SIGHUP reads the settings again. See lc-simple(1).\n");
}

int main(int argc, char **argv)
{
    /* The module's name, bus and system file: from lc-launch's environment, or --name, --bus
     * and --config; "simple" when nothing says otherwise. liblc takes those options out of
     * argv, so what is left is the module's own. */
    lc_client_t *client = lc_module_new("simple", &argc, argv);
    if (!client)
        return 2; /* lc_module_new said why on stderr */

    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            s_usage(stdout);
            lc_client_destroy(&client);
            return 0;
        case 'V':
            printf("lc-simple %s\n", LC_VERSION);
            lc_client_destroy(&client);
            return 0;
        default:
            fprintf(stderr, "Try 'lc-simple --help'.\n");
            lc_client_destroy(&client);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lc-simple: unexpected argument '%s'; try --help\n", argv[optind]);
        lc_client_destroy(&client);
        return 2;
    }

    simple_t s = {.client = client};
    if (s_read_config(&s) < 0) {
        fprintf(stderr, "lc-simple: out of memory\n");
        lc_client_destroy(&client);
        return 1;
    }

    /* Declarations come before lc_run: the broker learns them at registration. The doc line
     * and argument list show in `lc list`, and the library checks the arguments' types. */
    lc_method(client, "myfunc", s_myfunc, &s);
    lc_method_doc(client, "myfunc", "logs param and answers it", "param:string");
    lc_method(client, "myfunc_async", s_myfunc_async, &s);
    lc_method_doc(client, "myfunc_async", "logs param and answers it 100 ms later",
                  "param:string");
    lc_method(client, "run", s_run, &s);
    lc_method_doc(client, "run", "the example's steps, in one transaction", NULL);
    lc_on_notice(client, s_on_notice, &s);
    lc_hook(client, LC_HOOK_ACTIVE, s_on_active, &s);
    lc_hook(client, LC_HOOK_RELOAD, s_on_reload, &s);
    lc_hook(client, LC_HOOK_SHUTDOWN, s_on_shutdown, &s);

    /* Serves until SIGTERM/SIGINT or the system's exit, running the hooks on the way. */
    int rc = lc_run(client);
    if (rc < 0)
        fprintf(stderr, "lc-simple: cannot serve as '%s' on %s: %s\n", lc_client_name(client),
                lc_client_endpoint(client), lc_strerror(rc));
    lc_client_destroy(&client);
    free(s.greeting);
    free(s.subject);
    return rc < 0;
}
