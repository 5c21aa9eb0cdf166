/* lc-web: the seed's web example (a log list fed by add_log_entry and by
 * my_simple_example_event, and a "Trigger action"), a dashboard's HTTP API to the bus, and
 * server-sent events of the bus's traffic. docs/modules/web.md describes the API. */
#include "../common.h"
#include "../httpd.h"
#include "hub.h"
#include "lc.h"
#include "tap.h"
#include "wire.h" /* lc_errno_to_status() */

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EMPTY_TEXT "There is no data to show" /* the seed's empty list */
#define STREAM_BYTES (8u << 20)               /* a stream's queue at most */

typedef struct {
    lc_client_t *client;
    const char *name;
    httpd_config_t cfg;
    httpd_t *http;
    hub_t *hub;
    char *static_dir, *title, *gpio;
    bool failed; /* the server could not start: lc-web exits 1 */

    pthread_mutex_t lock; /* the log list: the loop adds, the connections read */
    json_t *lines;        /* texts, the oldest first */
    json_int_t first;     /* the position of lines[0] */
    size_t max_lines;
} web_t;

/* ---- The log list ---- */

static json_int_t s_add_line(web_t *w, const char *text)
{
    pthread_mutex_lock(&w->lock);
    json_array_append_new(w->lines, json_string(text));
    json_int_t pos = w->first + (json_int_t)json_array_size(w->lines) - 1;
    /* Positions keep counting; only the oldest lines are forgotten. */
    while (json_array_size(w->lines) > w->max_lines) {
        json_array_remove(w->lines, 0);
        w->first++;
    }
    pthread_mutex_unlock(&w->lock);
    hub_log(w->hub, pos, text);
    return pos;
}

/* add_log_entry(text) -> the new line's 0-based position */
static void s_m_add_log_entry(lc_request_t *req, json_t *args, void *arg)
{
    web_t *w = arg;
    const char *text = json_string_value(json_object_get(args, "text"));
    if (!text) {
        lc_reply_error(req, 22, "add_log_entry: argument \"text\" (a string) is required");
        return;
    }
    lc_reply(req, json_integer(s_add_line(w, text)));
}

/* my_simple_example_event(param): the param becomes a line. */
static void s_on_simple_event(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    web_t *w = arg;
    json_t *param = json_object_get(args, "param");
    if (json_is_string(param)) {
        s_add_line(w, json_string_value(param));
        return;
    }
    char *text = json_dumps(param ? param : args, JSON_COMPACT | JSON_ENCODE_ANY);
    s_add_line(w, text ? text : "?");
    free(text);
}

/* ---- Answers ---- */

/* {"error": {"code": code, "name": name, "message": ...}} */
static void s_fail(httpd_req_t *req, int status, int code, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void s_fail(httpd_req_t *req, int status, int code, const char *name, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    httpd_reply_json(
        req, status,
        json_pack("{s:{s:i, s:s, s:s}}", "error", "code", code, "name", name, "message", message));
}

static const char *s_error_name(int rc)
{
    static const struct {
        int rc;
        const char *name;
    } names[] = {
        {LC_EINVAL, "EINVAL"},       {LC_ENOMEM, "ENOMEM"},         {LC_EHANDLER, "EHANDLER"},
        {LC_ENOMODULE, "ENOMODULE"}, {LC_ENOMETHOD, "ENOMETHOD"},   {LC_ENOTREADY, "ENOTREADY"},
        {LC_EGONE, "EGONE"},         {LC_ETIMEDOUT, "ETIMEDOUT"},   {LC_ETOOBIG, "ETOOBIG"},
        {LC_EPROTO, "EPROTO"},       {LC_EVERSION, "EVERSION"},     {LC_ENAMETAKEN, "ENAMETAKEN"},
        {LC_ENOBUS, "ENOBUS"},       {LC_EQUEUEFULL, "EQUEUEFULL"}, {LC_ENOTACTIVE, "ENOTACTIVE"},
        {LC_EDENIED, "EDENIED"},     {LC_EBUSY, "EBUSY"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].rc == rc)
            return names[i].name;
    return "EINTERNAL";
}

static int s_http_status(int rc, int code)
{
    switch (rc) {
    case LC_ENOMODULE:
    case LC_ENOMETHOD:
        return 404;
    case LC_EINVAL:
        return 400;
    case LC_ETOOBIG:
        return 413;
    case LC_ETIMEDOUT:
        return 504;
    case LC_ENOBUS:
    case LC_ENOTREADY:
    case LC_ENOTACTIVE:
    case LC_EGONE:
    case LC_EQUEUEFULL:
        return 503;
    case LC_EDENIED:
        return 403;
    case LC_EHANDLER:
        /* Code 22 is how a method refuses its arguments (also liblc's check of declared
         * arguments, before the handler runs): the request's fault. */
        return code == 22 ? 400 : 502;
    default:
        return 500;
    }
}

/* A bus error as HTTP: result is what lc_call() or the _wait functions gave (borrowed; its
 * "code" is the handler's own for EHANDLER, else the bus status number). */
static void s_bus_fail(httpd_req_t *req, int rc, json_t *result, const char *what)
{
    json_t *code = json_object_get(result, "code");
    int c = json_is_integer(code) ? (int)json_integer_value(code) : lc_errno_to_status(rc);
    const char *msg = json_string_value(json_object_get(result, "message"));
    int status = s_http_status(rc, c);
    const char *name = rc == LC_EHANDLER && status == 400 ? "EINVAL" : s_error_name(rc);
    s_fail(req, status, c, name, "%s: %s", what, msg && *msg ? msg : lc_strerror(rc));
}

/* ---- Request helpers ---- */

static bool s_method_is(httpd_req_t *req, const char *allowed)
{
    const char *m = httpd_method(req);
    bool ok = strcmp(m, allowed) == 0 || (strcmp(allowed, "GET") == 0 && strcmp(m, "HEAD") == 0);
    if (!ok) {
        httpd_add_header(req, "Allow", strcmp(allowed, "GET") == 0 ? "GET, HEAD" : allowed);
        s_fail(req, 405, 405, "ENOTALLOWED", "%s %s: use %s", m, httpd_path(req), allowed);
    }
    return ok;
}

/* POST endpoints: the method, and no other site's page behind the request. */
static bool s_post_ok(httpd_req_t *req)
{
    if (!s_method_is(req, "POST"))
        return false;
    if (httpd_cross_origin(req)) {
        const char *origin = httpd_header(req, "Origin");
        s_fail(req, 403, 403, "EDENIED",
               "%s: a request from another site (Origin %s) is refused; call the API from "
               "lc-web's own pages or without an Origin header",
               httpd_path(req), origin ? origin : "(cross-site)");
        return false;
    }
    return true;
}

/* The body as a JSON object ({} when empty), or NULL after answering 400. */
static json_t *s_body_object(httpd_req_t *req)
{
    const char *body = httpd_body(req);
    size_t len = httpd_body_len(req);
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]))
        i++;
    if (i == len)
        return json_object();
    json_error_t err;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY, &err);
    if (!v) {
        s_fail(req, 400, 400, "EINVAL",
               "the body is not valid JSON: %s (line %d, column %d, position %d)", err.text,
               err.line, err.column, err.position);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        s_fail(req, 400, 400, "EINVAL", "the body must be a JSON object (the arguments), or empty");
        return NULL;
    }
    return v;
}

/* priority=1..5 or highest, high, normal, low, lowest; 0 when absent; -1 after a 400. */
static int s_priority(httpd_req_t *req)
{
    static const char *const names[] = {"highest", "high", "normal", "low", "lowest"};
    const char *p = httpd_query(req, "priority");
    if (!p)
        return 0;
    for (int i = 0; i < 5; i++)
        if (strcasecmp(p, names[i]) == 0)
            return i + 1;
    if (p[0] >= '1' && p[0] <= '5' && !p[1])
        return p[0] - '0';
    s_fail(req, 400, 400, "EINVAL",
           "priority '%s' is not 1-5 or highest, high, normal, low, lowest", p);
    return -1;
}

/* timeout_ms=N (1 to 60000); 0 when absent (the client's default); -1 after a 400. A stop
 * of lc-web waits for the calls in progress, so their deadline is kept short. */
static int s_timeout(httpd_req_t *req)
{
    const char *t = httpd_query(req, "timeout_ms");
    if (!t)
        return 0;
    char *end;
    long v = strtol(t, &end, 10);
    if (!*t || *end || v < 1 || v > 60000) {
        s_fail(req, 400, 400, "EINVAL", "timeout_ms '%s' is not a number of ms from 1 to 60000", t);
        return -1;
    }
    return (int)v;
}

/* ---- The API ---- */

static void s_api_info(web_t *w, httpd_req_t *req)
{
    const char *user = httpd_user(req);
    httpd_reply_json(req, 200,
                     json_pack("{s:s, s:s, s:s, s:o, s:s}", "module", w->name, "title", w->title,
                               "gpio", w->gpio, "user", user ? json_string(user) : json_null(),
                               "version", LC_VERSION));
}

static void s_api_log(web_t *w, httpd_req_t *req)
{
    json_t *entries = json_array();
    pthread_mutex_lock(&w->lock);
    size_t i;
    json_t *line;
    json_array_foreach(w->lines, i, line) json_array_append_new(
        entries, json_pack("{s:I, s:O}", "position", w->first + (json_int_t)i, "text", line));
    pthread_mutex_unlock(&w->lock);
    httpd_reply_json(req, 200,
                     json_pack("{s:o, s:s}", "entries", entries, "empty_text", EMPTY_TEXT));
}

/* The seed's Trigger Action: a synchronous add_log_entry, an enqueued one, and the event
 * webpage_trigger (the controller steps the GPIO outputs on it). */
static void s_api_trigger(web_t *w, httpd_req_t *req)
{
    char target[LC_ADDRESS_MAX + 1], sync_text[256], async_text[256];
    snprintf(target, sizeof target, "%s.add_log_entry", w->name);
    snprintf(sync_text, sizeof sync_text,
             "This line was synchronously added by the module \"%s\" from its web server", w->name);
    snprintf(async_text, sizeof async_text,
             "This line was asynchronously added by the module \"%s\" from its web server",
             w->name);
    json_t *res = NULL;
    int rc = lc_call(w->client, target, json_pack("{s:s}", "text", sync_text), &res, 0);
    if (rc < 0) {
        s_bus_fail(req, rc, res, target);
        json_decref(res);
        return;
    }
    json_t *answer = json_pack("{s:O}", "position", res ? res : json_null());
    json_decref(res);
    json_t *info = NULL;
    rc = lc_enqueue_wait(w->client, target, json_pack("{s:s}", "text", async_text), 0, 0, &info);
    json_object_set_new(answer, "enqueued", json_boolean(rc == 0));
    if (rc < 0)
        json_object_set_new(
            answer, "enqueue_error",
            json_sprintf("%s: %s", lc_strerror(rc),
                         json_string_value(json_object_get(info, "message")) ?: ""));
    json_decref(info);
    info = NULL;
    rc = lc_emit_wait(w->client, "webpage_trigger", NULL, 0, 0, &info);
    json_object_set_new(answer, "emitted", json_boolean(rc == 0));
    if (rc < 0)
        json_object_set_new(
            answer, "emit_error",
            json_sprintf("%s: %s", lc_strerror(rc),
                         json_string_value(json_object_get(info, "message")) ?: ""));
    json_decref(info);
    httpd_reply_json(req, 200, answer);
}

static void s_api_call(web_t *w, httpd_req_t *req, const char *target)
{
    int timeout = s_timeout(req);
    if (timeout < 0)
        return;
    json_t *args = s_body_object(req);
    if (!args)
        return;
    json_t *res = NULL;
    int rc = lc_call(w->client, target, args, &res, timeout);
    if (rc < 0)
        s_bus_fail(req, rc, res, target);
    else
        httpd_reply_json(req, 200, res ? json_incref(res) : json_null());
    json_decref(res);
}

static void s_api_enqueue(web_t *w, httpd_req_t *req, const char *target)
{
    int prio = s_priority(req);
    if (prio < 0)
        return;
    json_t *args = s_body_object(req);
    if (!args)
        return;
    json_t *info = NULL;
    int rc = lc_enqueue_wait(w->client, target, args, prio, 0, &info);
    if (rc < 0)
        s_bus_fail(req, rc, info, target);
    else
        httpd_reply_json(req, 202, json_pack("{s:b}", "accepted", 1));
    json_decref(info);
}

static void s_api_emit(web_t *w, httpd_req_t *req, const char *event)
{
    int prio = s_priority(req);
    if (prio < 0)
        return;
    json_t *args = s_body_object(req);
    if (!args)
        return;
    json_t *info = NULL;
    int rc = lc_emit_wait(w->client, event, args, prio, 0, &info);
    if (rc < 0) {
        s_bus_fail(req, rc, info, event);
    } else {
        /* The broker's notice: how many subscribers were offered a copy, who lost it. */
        json_t *subs = json_object_get(info, "subscribers");
        json_t *dropped = json_object_get(info, "dropped");
        json_t *answer = json_pack("{s:O, s:O}", "subscribers", subs ? subs : json_integer(0),
                                   "dropped", dropped ? dropped : json_array());
        const char *msg = json_string_value(json_object_get(info, "message"));
        if (msg)
            json_object_set_new(answer, "message", json_string(msg));
        httpd_reply_json(req, 202, answer);
    }
    json_decref(info);
}

static json_t *s_names(json_t *list, const char *key)
{
    json_t *names = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        json_t *n = key ? json_object_get(v, key) : v;
        if (json_is_string(n))
            json_array_append(names, n);
    }
    return names;
}

/* One dashboard row from the launcher's entry (or NULL) and the broker's (or NULL). */
static json_t *s_module_row(const char *name, json_t *child, json_t *bus)
{
    json_t *row = json_pack("{s:s}", "name", name);
    json_object_set(row, "state", child ? json_object_get(child, "state") : json_null());
    json_t *bstate = json_object_get(bus, "state");
    json_object_set_new(row, "bus_state", bstate ? json_incref(bstate) : json_string("absent"));
    json_int_t pid = 0, uptime = 0;
    if (child) {
        pid = json_integer_value(json_object_get(child, "pid"));
        uptime = json_integer_value(json_object_get(child, "uptime_ms"));
    } else if (bus) {
        pid = json_integer_value(json_object_get(bus, "pid"));
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        json_int_t now_us = (json_int_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        json_int_t since = json_integer_value(json_object_get(bus, "since_us"));
        uptime = since > 0 && now_us > since ? (now_us - since) / 1000 : 0;
    }
    json_object_set_new(row, "pid", json_integer(pid));
    json_object_set_new(row, "uptime_ms", json_integer(uptime));
    json_object_set(row, "restarts", child ? json_object_get(child, "restarts") : json_null());
    json_t *last = child ? json_object_get(child, "last_exit") : NULL;
    json_object_set(row, "last_exit", last ? last : json_null());
    json_object_set_new(row, "methods", s_names(json_object_get(bus, "methods"), "name"));
    json_object_set_new(row, "subscriptions", s_names(json_object_get(bus, "events"), NULL));
    return row;
}

static json_t *s_find(json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, name) == 0)
            return v;
    }
    return NULL;
}

/* The launcher's view (its start order) and the broker's together; modules on the bus that
 * the launcher did not start come after, anonymous clients not at all. */
static void s_api_modules(web_t *w, httpd_req_t *req)
{
    json_t *list = NULL, *status = NULL;
    int rc = lc_call(w->client, "broker.list", NULL, &list, 0);
    if (rc < 0) {
        s_bus_fail(req, rc, list, "broker.list");
        json_decref(list);
        return;
    }
    int lrc = lc_call(w->client, "launcher.status", NULL, &status, 0);
    bool launcher = lrc == 0;
    json_t *children = launcher ? json_object_get(status, "modules") : NULL;
    json_t *bus = json_object_get(list, "modules");
    json_t *rows = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(children, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (name)
            json_array_append_new(rows, s_module_row(name, v, s_find(bus, name)));
    }
    json_array_foreach(bus, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (!name || json_is_true(json_object_get(v, "anonymous")) || s_find(children, name))
            continue;
        json_array_append_new(rows, s_module_row(name, NULL, v));
    }
    json_decref(list);
    json_decref(status);
    httpd_reply_json(req, 200, json_pack("{s:o, s:b}", "modules", rows, "launcher", launcher));
}

static void s_api_stats(web_t *w, httpd_req_t *req)
{
    json_t *res = NULL;
    int rc = lc_call(w->client, "broker.stats", NULL, &res, 0);
    if (rc < 0)
        s_bus_fail(req, rc, res, "broker.stats");
    else
        httpd_reply_json(req, 200, json_incref(res));
    json_decref(res);
}

static ssize_t s_stream_read(void *cls, char *buf, size_t max)
{
    return hub_read(cls, buf, max);
}

static void s_stream_done(void *cls)
{
    hub_leave(cls);
}

/* GET /api/events?types=bus,log&module=M&event=GLOB&kind=call,reply,... */
static void s_api_events(web_t *w, httpd_req_t *req)
{
    hub_filter_t f = {.bus = true, .log = true, .kinds = K_ALL};
    const char *types = httpd_query(req, "types");
    if (types) {
        f.bus = f.log = false;
        for (const char *p = types; *p;) {
            size_t n = strcspn(p, ",");
            if (n == 3 && strncmp(p, "bus", 3) == 0)
                f.bus = true;
            else if (n == 3 && strncmp(p, "log", 3) == 0)
                f.log = true;
            else if (n > 0) {
                s_fail(req, 400, 400, "EINVAL", "types: '%.*s' is not bus or log", (int)n, p);
                return;
            }
            p += n + (p[n] == ',');
        }
    }
    const char *kind = httpd_query(req, "kind");
    if (kind && !(f.kinds = trace_kinds_parse(kind))) {
        s_fail(req, 400, 400, "EINVAL",
               "kind '%s' is not a list of call, reply, error, task, event, control", kind);
        return;
    }
    f.module = httpd_query(req, "module");
    f.event = httpd_query(req, "event");
    if (f.module && !*f.module)
        f.module = NULL;
    if (f.event && !*f.event)
        f.event = NULL;
    hub_client_t *cl = hub_join(w->hub, &f);
    if (!cl) {
        s_fail(req, 503, 503, "ENOTREADY", "the event streams are closed: lc-web is stopping");
        return;
    }
    httpd_add_header(req, "X-Accel-Buffering", "no");
    httpd_reply_stream(req, "text/event-stream", s_stream_read, s_stream_done, cl);
}

/* ---- Routing ---- */

static bool s_prefix(const char *path, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return false;
    *rest = path + n;
    return true;
}

static void s_handle(httpd_req_t *req, void *arg)
{
    web_t *w = arg;
    const char *path = httpd_path(req), *rest;
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        if (s_method_is(req, "GET"))
            httpd_reply_file(req, w->static_dir, "index.html");
    } else if (strcmp(path, "/favicon.ico") == 0) {
        if (s_method_is(req, "GET"))
            httpd_reply_file(req, w->static_dir, "favicon.svg");
    } else if (s_prefix(path, "/static/", &rest)) {
        if (s_method_is(req, "GET"))
            httpd_reply_file(req, w->static_dir, rest);
    } else if (strcmp(path, "/api/info") == 0) {
        if (s_method_is(req, "GET"))
            s_api_info(w, req);
    } else if (strcmp(path, "/api/log") == 0) {
        if (s_method_is(req, "GET"))
            s_api_log(w, req);
    } else if (strcmp(path, "/api/trigger") == 0) {
        if (s_post_ok(req))
            s_api_trigger(w, req);
    } else if (s_prefix(path, "/api/call/", &rest)) {
        if (s_post_ok(req))
            s_api_call(w, req, rest);
    } else if (s_prefix(path, "/api/enqueue/", &rest)) {
        if (s_post_ok(req))
            s_api_enqueue(w, req, rest);
    } else if (s_prefix(path, "/api/emit/", &rest)) {
        if (s_post_ok(req))
            s_api_emit(w, req, rest);
    } else if (strcmp(path, "/api/modules") == 0) {
        if (s_method_is(req, "GET"))
            s_api_modules(w, req);
    } else if (strcmp(path, "/api/stats") == 0) {
        if (s_method_is(req, "GET"))
            s_api_stats(w, req);
    } else if (strcmp(path, "/api/events") == 0) {
        /* Not HEAD: a stream without a body would hold its connection for nothing. */
        if (strcmp(httpd_method(req), "HEAD") == 0) {
            httpd_add_header(req, "Allow", "GET");
            s_fail(req, 405, 405, "ENOTALLOWED", "HEAD /api/events: use GET");
        } else if (s_method_is(req, "GET")) {
            s_api_events(w, req);
        }
    } else if (s_prefix(path, "/api/", &rest)) {
        s_fail(req, 404, 404, "ENOTFOUND",
               "no API at %s: see /api/info, /api/log, /api/modules, /api/stats, /api/events, "
               "/api/trigger, /api/call/M.m, /api/enqueue/M.m, /api/emit/EVENT",
               path);
    } else {
        s_fail(req, 404, 404, "ENOTFOUND", "no page at %s: the pages are at / and /static/", path);
    }
}

/* ---- Lifecycle ---- */

static bool s_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* static_dir from the config, else <prefix>/share/lc/web beside the installed program,
 * else the source tree's pages. */
static char *s_static_dir(lc_client_t *c)
{
    const char *set = lc_config_str(c, "static_dir", NULL);
    if (set && *set)
        return strdup(lc_config_path(c, "static_dir", NULL));
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char dir[PATH_MAX + 32];
            snprintf(dir, sizeof dir, "%s/../share/lc/web", exe);
            if (s_is_dir(dir))
                return realpath(dir, NULL);
        }
    }
    return strdup(LC_WEB_SOURCE_STATIC);
}

static void s_on_startup(lc_client_t *c, void *arg)
{
    web_t *w = arg;
    httpd_config_read(c, &w->cfg, 8080, "lc-web");
    w->title = strdup(lc_config_str(c, "title", "LooselyCoupled"));
    w->gpio = strdup(lc_config_str(c, "gpio", "gpio"));
    long long max = lc_config_int(c, "log_lines", 1000);
    w->max_lines = max > 0 ? (size_t)max : 1000;
    w->static_dir = s_static_dir(c);
    long long frames = lc_config_int(c, "stream_queue", 4096);
    w->hub = hub_new(frames > 0 ? (size_t)frames : 4096, STREAM_BYTES);
    if (!w->hub) {
        lc_log(c, LC_LOG_CRITICAL, "web: out of memory");
        w->failed = true;
        lc_stop(c);
    }
    if (s_is_dir(w->static_dir))
        lc_log(c, LC_LOG_INFO, "web: pages from %s", w->static_dir);
    else
        lc_log(c, LC_LOG_WARNING,
               "web: the pages' folder %s does not exist; / and /static/ answer 404 (set "
               "static_dir in the config)",
               w->static_dir);
}

/* The server starts with the passive phase: the page is there while the system starts. */
static void s_on_passive(lc_client_t *c, void *arg)
{
    web_t *w = arg;
    if (w->failed)
        return;
    char err[512];
    w->http = httpd_start(&w->cfg, c, s_handle, w, err, sizeof err);
    if (!w->http) {
        lc_log(c, LC_LOG_CRITICAL, "web: %s", err);
        w->failed = true;
        lc_stop(c);
        return;
    }
    bool tls = w->cfg.certfile != NULL;
    bool v6 = strchr(w->cfg.listen, ':') != NULL;
    bool auth = w->cfg.username && w->cfg.password;
    lc_log(c, LC_LOG_INFO, "web: serving %s://%s%s%s:%d/%s", tls ? "https" : "http", v6 ? "[" : "",
           w->cfg.listen, v6 ? "]" : "", httpd_port(w->http), auth ? " (basic auth)" : "");
    if (strcmp(w->cfg.listen, "127.0.0.1") != 0 && strcmp(w->cfg.listen, "::1") != 0 &&
        (!auth || !tls))
        lc_log(c, LC_LOG_WARNING,
               "web: %s is open beyond this host %s: whoever reaches it can use the whole bus; "
               "set username and password, and certfile and keyfile (docs/modules/web.md, "
               "Security)",
               w->cfg.listen, !auth ? "without a password" : "with the password in clear text");
    if (!lc_thread_start(c, LC_STATE_PASSIVE, tap_run, w->hub))
        lc_log(c, LC_LOG_ERROR,
               "web: cannot start the bus feed's thread; the event streams "
               "carry log frames only");
}

/* Streams first (their readers return at once), then the server, which waits for every
 * connection; the hub is freed after lc_run(), once the tap thread was joined. */
static void s_stop_http(web_t *w)
{
    hub_close(w->hub);
    httpd_destroy(&w->http);
}

static void s_on_shutdown(lc_client_t *c, void *arg)
{
    (void)c;
    s_stop_http(arg);
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-web [--name NAME] [--bus EP] [--config FILE] [--log-level LEVEL]\n"
            "The dashboard and HTTP API of an lc bus (module 'web' by default): the seed's web\n"
            "example (method add_log_entry, event my_simple_example_event, Trigger action),\n"
            "the modules' states, calls, tasks and events from the browser or curl, and the\n"
            "bus's traffic live as server-sent events (GET /api/events).\n"
            "\n"
            "Settings (modules.NAME.config): listen (127.0.0.1), port (8080; 0: any free port),\n"
            "username, password (plain or a crypt(3) hash), certfile, keyfile (TLS),\n"
            "max_body_bytes (1048576), max_connections (64), static_dir, gpio (gpio),\n"
            "title (LooselyCoupled), log_lines (1000), stream_queue (4096).\n"
            "\n"
            "  --name NAME       module name (default: $LC_MODULE, else web)\n"
            "  --bus EP          bus endpoint (default: $LC_BUS or the per-user socket)\n"
            "  --config FILE     system file (default: $LC_CONFIG)\n"
            "  --log-level L     critical, error, warning, info or debug (default: info)\n"
            "  -h, --help        show this help and exit\n"
            "  -V, --version     show the version and exit\n"
            "Logs 'web: serving http://ADDRESS:PORT/' once it listens. Stops on SIGTERM or\n"
            "SIGINT. See lc-web(1) and docs/modules/web.md.\n");
}

int main(int argc, char **argv)
{
    prog = "lc-web";
    lc_client_t *c = lc_module_new("web", &argc, argv);
    if (!c)
        return 2;
    int status = module_options(&c, argc, argv, s_usage);
    if (status >= 0)
        return status;
    web_t w = {.client = c, .name = lc_client_name(c), .max_lines = 1000};
    pthread_mutex_init(&w.lock, NULL);
    w.lines = json_array();
    if (!w.lines)
        die(1, "out of memory");
    lc_method(c, "add_log_entry", s_m_add_log_entry, &w);
    lc_method_doc(c, "add_log_entry", "appends a line to the web page's list; answers its position",
                  "text:string");
    lc_on(c, "my_simple_example_event", s_on_simple_event, &w);
    lc_hook(c, LC_HOOK_STARTUP, s_on_startup, &w);
    lc_hook(c, LC_HOOK_PASSIVE, s_on_passive, &w);
    lc_hook(c, LC_HOOK_SHUTDOWN, s_on_shutdown, &w);

    int rc = lc_run(c);
    if (rc < 0)
        fprintf(stderr, "lc-web: cannot serve as '%s' on %s: %s\n", lc_client_name(c),
                lc_client_endpoint(c), lc_strerror(rc));
    s_stop_http(&w);
    lc_client_destroy(&c); /* joins the tap thread if it still runs */
    hub_destroy(&w.hub);
    httpd_config_clear(&w.cfg);
    free(w.static_dir);
    free(w.title);
    free(w.gpio);
    json_decref(w.lines);
    pthread_mutex_destroy(&w.lock);
    return rc < 0 || w.failed ? 1 : 0;
}
