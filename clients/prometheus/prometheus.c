/* lc-prometheus: the bus's metrics for Prometheus at GET /metrics (the broker's counters,
 * queue, backlogs and call latencies, the launcher's modules, the gauges other modules set
 * with set_gauge_value, and this process), served through clients/httpd.c. */
#include "../common.h"
#include "../httpd.h"
#include "expo.h"
#include "gauges.h"
#include "lc.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define DEFAULT_PORT 9090
#define DEFAULT_TIMEOUT_MS 2000

static struct {
    lc_client_t *client;
    httpd_config_t cfg;
    atomic_int timeout_ms; /* for the scrape's calls (read by the connection threads) */
    httpd_t *http;         /* from the passive hook to the shutdown hook */
    gauges_t *gauges;
    bool failed; /* the server could not start: exit status 1 */
} P;

/* ---- What a scrape writes ------------------------------------------------------------- */

typedef struct {
    const char *label; /* the label's value (or the metric's name for a lone counter) */
    const char *key;   /* the key of broker.stats */
} stat_row_t;

static uint64_t s_u(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* A family whose samples are keys of broker.stats, told apart by one label. */
static void s_labelled(expo_t *e, json_t *st, const char *name, const char *type, const char *help,
                       const char *label, const stat_row_t *rows, size_t n)
{
    expo_family(e, name, type, help);
    for (size_t i = 0; st && i < n; i++)
        if (json_object_get(st, rows[i].key)) {
            const char *labels[] = {label, rows[i].label, NULL};
            expo_sample_u(e, name, labels, s_u(st, rows[i].key));
        }
}

/* A family of one sample without labels: broker.stats' key. */
static void s_single(expo_t *e, json_t *st, const char *name, const char *type, const char *help,
                     const char *key)
{
    expo_family(e, name, type, help);
    if (st && json_object_get(st, key))
        expo_sample_u(e, name, NULL, s_u(st, key));
}

static void s_histogram(expo_t *e, json_t *st)
{
    static const char name[] = "lc_call_duration_seconds";
    expo_family(e, name, "histogram",
                "Time from a call's arrival at the broker to its answer leaving it, for calls "
                "answered by their module");
    json_t *h = st ? json_object_get(st, "call_duration") : NULL;
    json_t *bounds = json_object_get(h, "bounds_us"), *buckets = json_object_get(h, "buckets");
    if (!json_is_array(bounds) || json_array_size(bounds) != json_array_size(buckets))
        return;
    size_t i;
    json_t *b;
    json_array_foreach(bounds, i, b)
    {
        char le[32];
        expo_number(le, sizeof le, (double)json_integer_value(b) / 1e6);
        const char *labels[] = {"le", le, NULL};
        json_t *c = json_array_get(buckets, i);
        expo_sample_u(e, "lc_call_duration_seconds_bucket", labels,
                      json_is_integer(c) ? (uint64_t)json_integer_value(c) : 0);
    }
    const char *inf[] = {"le", "+Inf", NULL};
    expo_sample_u(e, "lc_call_duration_seconds_bucket", inf, s_u(h, "count"));
    expo_sample(e, "lc_call_duration_seconds_sum", NULL, (double)s_u(h, "sum_us") / 1e6);
    expo_sample_u(e, "lc_call_duration_seconds_count", NULL, s_u(h, "count"));
}

static void s_broker(expo_t *e, json_t *st)
{
    static const stat_row_t messages[] = {
        {"calls", "calls"},   {"replies", "replies"},       {"tasks", "tasks"},
        {"events", "events"}, {"deliveries", "deliveries"}, {"done", "done"},
    };
    static const stat_row_t errors[] = {
        {"unknown_target", "unknown_target"},
        {"gone", "gone"},
        {"timeouts", "timeouts"},
        {"late_replies", "late_replies"},
        {"malformed", "malformed"},
        {"too_large", "too_large"},
        {"version", "version"},
        {"unroutable", "unroutable"},
        {"failed", "failed"},
    };
    static const stat_row_t refusals[] = {
        {"queue_full", "queue_full"},
        {"not_active", "not_active"},
        {"registration", "refused"},
    };
    expo_family(e, "lc_broker_up", "gauge",
                "1 when the broker answered broker.stats for this scrape, else 0");
    expo_sample(e, "lc_broker_up", NULL, st ? 1 : 0);
    s_labelled(e, st, "lc_messages_total", "counter",
               "Messages the broker handled, by kind (the keys of broker.stats)", "kind", messages,
               sizeof messages / sizeof messages[0]);
    s_labelled(e, st, "lc_errors_total", "counter",
               "Calls, messages and completions that went wrong, by kind (the keys of "
               "broker.stats)",
               "kind", errors, sizeof errors / sizeof errors[0]);
    s_labelled(e, st, "lc_refusals_total", "counter",
               "Tasks, events and registrations the broker refused, by reason", "reason", refusals,
               sizeof refusals / sizeof refusals[0]);
    s_single(e, st, "lc_dropped_total", "counter",
             "Event copies not queued because the subscriber's backlog was full", "dropped");
    s_single(e, st, "lc_lost_total", "counter",
             "Tasks and events discarded (in flight at a crash, past a grace time or the drain)",
             "lost");
    s_single(e, st, "lc_redelivered_total", "counter",
             "Delivered items put back in their queue after their module went away", "redelivered");
    s_single(e, st, "lc_ledger_done_total", "counter",
             "Items counted done from a dead module's ledger, their DONE lost with the process",
             "ledger_done");
    s_single(e, st, "lc_registrations_total", "counter", "Successful registrations of modules",
             "registrations");
    s_single(e, st, "lc_idle_total", "counter",
             "Busy to idle transitions of the bus (becoming_idle events)", "idle");
    s_single(e, st, "lc_monitor_dropped_total", "counter",
             "Monitor records dropped because a spy's queue was full", "tap_dropped");
    s_single(e, st, "lc_modules", "gauge",
             "Modules the broker knows, anonymous clients and gone modules' queues included",
             "modules");
    s_single(e, st, "lc_calls_open", "gauge", "Calls forwarded and not answered yet", "calls_open");
    s_single(e, st, "lc_queued", "gauge", "Tasks and events waiting in the broker", "queued");
    s_single(e, st, "lc_in_flight", "gauge", "Tasks and events delivered and not done yet",
             "in_flight");
    s_single(e, st, "lc_spies", "gauge", "Spies attached to the broker's monitor", "spies");

    expo_family(e, "lc_queue_length", "gauge",
                "Tasks and events waiting in the broker, by priority (1 highest, 5 lowest)");
    json_t *levels = st ? json_object_get(st, "queued_by_priority") : NULL;
    for (size_t i = 0; i < json_array_size(levels); i++) {
        char prio[24];
        snprintf(prio, sizeof prio, "%zu", i + 1);
        const char *labels[] = {"priority", prio, NULL};
        json_t *v = json_array_get(levels, i);
        expo_sample_u(e, "lc_queue_length", labels,
                      json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0);
    }
    expo_family(e, "lc_backlog", "gauge",
                "Tasks and events waiting in the broker for one module (modules with none are "
                "left out)");
    const char *module;
    json_t *v;
    json_object_foreach(st ? json_object_get(st, "backlog") : NULL, module, v)
    {
        const char *labels[] = {"module", module, NULL};
        expo_sample_u(e, "lc_backlog", labels,
                      json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0);
    }
    s_histogram(e, st);
}

/* The launcher's modules, and the broker it started, from launcher.status. */
static void s_launcher(expo_t *e, json_t *ls)
{
    static const char *const states[] = {"waiting", "running", "backoff", "stopped", "failed"};
    expo_family(e, "lc_launcher_up", "gauge",
                "1 when lc-launch answered launcher.status for this scrape, else 0 (no "
                "launcher on the bus)");
    expo_sample(e, "lc_launcher_up", NULL, ls ? 1 : 0);
    json_t *all = json_array();
    json_t *m;
    size_t i;
    json_array_foreach(json_object_get(ls, "modules"), i, m) json_array_append(all, m);
    if (json_is_object(json_object_get(ls, "broker")))
        json_array_append(all, json_object_get(ls, "broker"));

    expo_family(e, "lc_module_up", "gauge",
                "1 while the launcher has the module's process running, else 0");
    json_array_foreach(all, i, m)
    {
        const char *labels[] = {"module", json_string_value(json_object_get(m, "name")), NULL};
        const char *state = json_string_value(json_object_get(m, "state"));
        if (labels[1] && state)
            expo_sample(e, "lc_module_up", labels, strcmp(state, "running") == 0);
    }
    expo_family(e, "lc_module_state", "gauge",
                "The launcher's state of each module: 1 for the state it is in, 0 for the others");
    json_array_foreach(all, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *state = json_string_value(json_object_get(m, "state"));
        for (size_t s = 0; name && state && s < sizeof states / sizeof states[0]; s++) {
            const char *labels[] = {"module", name, "state", states[s], NULL};
            expo_sample(e, "lc_module_state", labels, strcmp(state, states[s]) == 0);
        }
    }
    expo_family(e, "lc_module_restarts_total", "counter",
                "Times the launcher restarted the module since it started");
    json_array_foreach(all, i, m)
    {
        const char *labels[] = {"module", json_string_value(json_object_get(m, "name")), NULL};
        if (labels[1])
            expo_sample_u(e, "lc_module_restarts_total", labels, s_u(m, "restarts"));
    }
    expo_family(e, "lc_module_uptime_seconds", "gauge",
                "How long the module's process has been running (0 when it is not)");
    json_array_foreach(all, i, m)
    {
        const char *labels[] = {"module", json_string_value(json_object_get(m, "name")), NULL};
        if (labels[1])
            expo_sample(e, "lc_module_uptime_seconds", labels, (double)s_u(m, "uptime_ms") / 1e3);
    }
    json_decref(all);
}

/* This process, under the names of the Prometheus client libraries' process collector. */
static void s_process(expo_t *e)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    double btime = 0;
    bool have_stat = false;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char line[1024];
        /* Fields after the command, which may hold spaces: it ends at the last ')'. */
        char *p = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
        have_stat = p && sscanf(p + 2,
                                "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
                                "%*d %*d %*d %*d %llu %llu %lld",
                                &utime, &stime, &start, &vsize, &rss) == 5;
        fclose(f);
    }
    f = fopen("/proc/stat", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "btime %lf", &btime) == 1)
                break;
        fclose(f);
    }
    expo_family(e, "process_cpu_seconds_total", "counter",
                "Total user and system CPU time spent in seconds.");
    if (have_stat && tick > 0)
        expo_sample(e, "process_cpu_seconds_total", NULL, (double)(utime + stime) / tick);
    expo_family(e, "process_start_time_seconds", "gauge",
                "Start time of the process since unix epoch in seconds.");
    if (have_stat && tick > 0 && btime > 0)
        expo_sample(e, "process_start_time_seconds", NULL, btime + (double)start / tick);
    expo_family(e, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    if (have_stat)
        expo_sample(e, "process_virtual_memory_bytes", NULL, (double)vsize);
    expo_family(e, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    if (have_stat && page > 0)
        expo_sample(e, "process_resident_memory_bytes", NULL, (double)rss * page);
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *de; (de = readdir(d));)
            fds += de->d_name[0] != '.';
        closedir(d);
        fds--; /* the folder's own descriptor */
    }
    expo_family(e, "process_open_fds", "gauge", "Number of open file descriptors.");
    if (d)
        expo_sample(e, "process_open_fds", NULL, fds);
    struct rlimit rl;
    expo_family(e, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        expo_sample(e, "process_max_fds", NULL,
                    rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
}

/* Asks target for its answer; NULL (after a debug line) when it does not answer. */
static json_t *s_ask(const char *target)
{
    json_t *res = NULL;
    int rc = lc_call(P.client, target, NULL, &res, atomic_load(&P.timeout_ms));
    if (rc == 0)
        return res;
    if (rc != LC_ENOMODULE || strcmp(target, "launcher.status") != 0)
        lc_log(P.client, LC_LOG_WARNING, "scrape: %s: %s (%s); its metrics are left out", target,
               lc_strerror(rc),
               json_string_value(json_object_get(res, "message"))
                   ? json_string_value(json_object_get(res, "message"))
                   : "no message");
    json_decref(res);
    return NULL;
}

/* The whole exposition (caller frees), or NULL when out of memory. */
static char *s_scrape(size_t *len)
{
    expo_t e;
    if (expo_open(&e) < 0)
        return NULL;
    json_t *st = s_ask("broker.stats");
    json_t *ls = s_ask("launcher.status");
    s_broker(&e, st);
    s_launcher(&e, ls);
    s_process(&e);
    gauges_write(P.gauges, &e);
    json_decref(st);
    json_decref(ls);
    return expo_close(&e, len);
}

/* ---- HTTP ----------------------------------------------------------------------------- */

/* Runs on the connection's own thread: lc_call() is safe there. */
static void s_http(httpd_req_t *req, void *arg)
{
    (void)arg;
    const char *method = httpd_method(req);
    lc_log(P.client, LC_LOG_DEBUG, "%s %s", method, httpd_path(req));
    if (strcmp(httpd_path(req), "/metrics") != 0 || httpd_has_query(req)) {
        static const char hint[] = "not found: the metrics are at /metrics (without a query "
                                   "string)\n";
        httpd_reply(req, 404, NULL, hint, sizeof hint - 1);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char text[] = "method not allowed: /metrics answers GET and HEAD\n";
        httpd_add_header(req, "Allow", "GET, HEAD");
        httpd_reply(req, 405, NULL, text, sizeof text - 1);
        return;
    }
    size_t len = 0;
    char *body = s_scrape(&len);
    if (!body) {
        static const char oom[] = "out of memory writing the metrics\n";
        httpd_reply(req, 500, NULL, oom, sizeof oom - 1);
        return;
    }
    httpd_reply(req, 200, EXPO_CONTENT_TYPE, body, len);
    free(body);
}

static bool s_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

/* Starts P.http with cfg. */
static int s_serve(lc_client_t *c, const httpd_config_t *cfg)
{
    char err[512];
    P.http = httpd_start(cfg, c, s_http, NULL, err, sizeof err);
    if (!P.http) {
        lc_log(c, LC_LOG_ERROR, "%s", err);
        return -1;
    }
    bool v6 = strchr(cfg->listen, ':') != NULL;
    lc_log(c, LC_LOG_INFO, "serving %s://%s%s%s:%d/metrics%s", cfg->certfile ? "https" : "http",
           v6 ? "[" : "", cfg->listen, v6 ? "]" : "", httpd_port(P.http),
           cfg->username ? " (basic auth)" : "");
    if (!s_loopback(cfg->listen) && (!cfg->username || !cfg->certfile))
        lc_log(c, LC_LOG_WARNING,
               "listening on %s%s%s: set username, password, certfile and keyfile, or listen "
               "on 127.0.0.1",
               cfg->listen, cfg->username ? "" : " without basic auth",
               cfg->certfile ? "" : " without TLS");
    return 0;
}

/* ---- Settings ------------------------------------------------------------------------- */

/* Reads the module's section into cfg; returns the number of errors (each logged). */
static int s_read_config(lc_client_t *c, httpd_config_t *cfg, int *timeout_ms)
{
    static const char *const keys[] = {"listen",     "port",    "username",       "password",
                                       "certfile",   "keyfile", "max_body_bytes", "max_connections",
                                       "timeout_ms", NULL};
    int errors = 0;
    const char *file = lc_config_file(c) ? lc_config_file(c) : "(no system file)";
    json_t *section = lc_config_json(c, "");
    const char *k;
    json_t *v;
    json_object_foreach(json_is_object(section) ? section : NULL, k, v)
    {
        bool known = false;
        for (int i = 0; keys[i] && !known; i++)
            known = strcmp(k, keys[i]) == 0;
        if (!known) {
            lc_log(c, LC_LOG_ERROR,
                   "%s: modules.%s.config.%s: unknown setting (lc-prometheus takes listen, "
                   "port, username, password, certfile, keyfile, max_body_bytes, "
                   "max_connections, timeout_ms)",
                   file, lc_client_name(c), k);
            errors++;
        }
    }
    json_decref(section);
    httpd_config_read(c, cfg, DEFAULT_PORT, "Metrics");
    long long t = lc_config_int(c, "timeout_ms", DEFAULT_TIMEOUT_MS);
    if (t < 1 || t > 60000) {
        lc_log(c, LC_LOG_ERROR, "%s: modules.%s.config.timeout_ms: %lld is not 1 to 60000 ms", file,
               lc_client_name(c), t);
        errors++;
    }
    *timeout_ms = (int)t;
    /* Half a credential would serve the metrics to anyone: refuse it instead. */
    if ((cfg->username != NULL) != (cfg->password != NULL)) {
        lc_log(c, LC_LOG_ERROR,
               "%s: modules.%s.config: %s is set but %s is not; set both for basic auth, or "
               "neither",
               file, lc_client_name(c), cfg->username ? "username" : "password",
               cfg->username ? "password" : "username");
        errors++;
    }
    if ((cfg->certfile != NULL) != (cfg->keyfile != NULL)) {
        lc_log(c, LC_LOG_ERROR,
               "%s: modules.%s.config: %s is set but %s is not; set both for TLS, or neither", file,
               lc_client_name(c), cfg->certfile ? "certfile" : "keyfile",
               cfg->certfile ? "keyfile" : "certfile");
        errors++;
    }
    if (cfg->port < 0 || cfg->port > 65535) {
        lc_log(c, LC_LOG_ERROR, "%s: modules.%s.config.port: %d is not a TCP port (0-65535)", file,
               lc_client_name(c), cfg->port);
        errors++;
    }
    return errors + lc_config_errors(c);
}

static bool s_str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool s_config_same(const httpd_config_t *a, const httpd_config_t *b)
{
    return s_str_same(a->listen, b->listen) && a->port == b->port &&
           s_str_same(a->username, b->username) && s_str_same(a->password, b->password) &&
           s_str_same(a->certfile, b->certfile) && s_str_same(a->keyfile, b->keyfile) &&
           a->body_max == b->body_max && a->max_connections == b->max_connections;
}

/* ---- The module ----------------------------------------------------------------------- */

/* The seed's prometheus.set_gauge_value(metric, value, documentation, label_<name>=...). */
static void s_set_gauge_value(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    char err[512];
    if (gauges_set(P.gauges, args, err, sizeof err) < 0)
        lc_reply_error(req, 22, "%s", err);
    else
        lc_reply(req, NULL);
}

/* As the seed's thread_run_passively: served from the passive state until shutdown. */
static void s_on_passive(lc_client_t *c, void *arg)
{
    (void)arg;
    if (s_serve(c, &P.cfg) < 0) {
        P.failed = true;
        lc_stop(c);
    }
}

static void s_on_shutdown(lc_client_t *c, void *arg)
{
    (void)c;
    (void)arg;
    httpd_destroy(&P.http);
}

/* SIGHUP: new settings take effect; the server starts again only if they changed. */
static void s_on_reload(lc_client_t *c, void *arg)
{
    (void)arg;
    httpd_config_t cfg;
    int timeout_ms;
    if (s_read_config(c, &cfg, &timeout_ms) > 0) {
        lc_log(c, LC_LOG_ERROR, "the new settings have errors (above): the old ones stay");
        httpd_config_clear(&cfg);
        return;
    }
    atomic_store(&P.timeout_ms, timeout_ms);
    if (s_config_same(&cfg, &P.cfg) || !P.http) {
        httpd_config_clear(&P.cfg);
        P.cfg = cfg;
        return;
    }
    /* The old server goes first: the new one may want the same port. */
    httpd_destroy(&P.http);
    if (s_serve(c, &cfg) == 0) {
        httpd_config_clear(&P.cfg);
        P.cfg = cfg;
        return;
    }
    /* A certificate that cannot be read, a port taken meanwhile...: metrics with the old
     * settings are better than none. */
    httpd_config_clear(&cfg);
    lc_log(c, LC_LOG_ERROR, "the new settings cannot serve (above): back to the old settings");
    if (s_serve(c, &P.cfg) < 0) {
        P.failed = true;
        lc_stop(c);
    }
}

static void s_usage(FILE *out)
{
    fprintf(out, "Usage: lc-prometheus [--name NAME] [--bus EP] [--config FILE] [--log-level L]\n"
                 "Serves the bus's metrics for Prometheus at GET /metrics: the broker's counters,\n"
                 "queues, backlogs and call latencies, the launcher's modules, and the gauges\n"
                 "other modules set with set_gauge_value.\n"
                 "\n"
                 "Settings (its config: section): listen (127.0.0.1), port (9090; 0: any free\n"
                 "port), username and password (basic auth; the password plain or a crypt(3)\n"
                 "hash), certfile and keyfile (TLS), timeout_ms (2000), max_body_bytes,\n"
                 "max_connections.\n"
                 "Method: set_gauge_value metric=NAME value=N [documentation=TEXT]\n"
                 "        [label_NAME=VALUE]...\n"
                 "\n"
                 "  --name NAME       module name (default: $LC_MODULE, else prometheus)\n"
                 "  --bus EP          bus endpoint (default: $LC_BUS or the per-user socket)\n"
                 "  --config FILE     system file (default: $LC_CONFIG)\n"
                 "  --log-level L     critical, error, warning, info or debug (default: info)\n"
                 "  -h, --help        show this help and exit\n"
                 "  -V, --version     show the version and exit\n"
                 "Stops on SIGTERM or SIGINT; SIGHUP reads the settings again. See "
                 "lc-prometheus(1).\n");
}

int main(int argc, char **argv)
{
    prog = "lc-prometheus";
    P.client = lc_module_new("prometheus", &argc, argv);
    if (!P.client)
        return 2;
    int status = module_options(&P.client, argc, argv, s_usage);
    if (status >= 0)
        return status;
    int timeout_ms;
    if (s_read_config(P.client, &P.cfg, &timeout_ms) > 0) {
        lc_log(P.client, LC_LOG_ERROR, "the settings of %s have errors (above): not started",
               lc_client_name(P.client));
        httpd_config_clear(&P.cfg);
        lc_client_destroy(&P.client);
        return 2;
    }
    atomic_store(&P.timeout_ms, timeout_ms);
    P.gauges = gauges_new();
    if (!P.gauges)
        die(1, "out of memory");
    lc_method(P.client, "set_gauge_value", s_set_gauge_value, NULL);
    lc_method_doc(P.client, "set_gauge_value",
                  "sets a gauge: metric, value, documentation, label_<name> (label names fixed "
                  "at the metric's first use)",
                  NULL);
    lc_hook(P.client, LC_HOOK_PASSIVE, s_on_passive, NULL);
    lc_hook(P.client, LC_HOOK_SHUTDOWN, s_on_shutdown, NULL);
    lc_hook(P.client, LC_HOOK_RELOAD, s_on_reload, NULL);

    int rc = lc_run(P.client);
    if (rc < 0)
        fprintf(stderr, "lc-prometheus: cannot serve as '%s' on %s: %s\n", lc_client_name(P.client),
                lc_client_endpoint(P.client), lc_strerror(rc));
    /* The connection threads call through the client: they end before it does. */
    httpd_destroy(&P.http);
    lc_client_destroy(&P.client);
    gauges_destroy(&P.gauges);
    httpd_config_clear(&P.cfg);
    return rc < 0 || P.failed;
}
