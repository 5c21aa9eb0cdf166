/* lc-web: its HTTP API (status codes, JSON bodies, errors), the seed's web example (log
 * list, Trigger action), the event stream (bus and log frames, in order, filtered), basic
 * auth and TLS, against a real broker, lc-web and lc-echo, over HTTP with libcurl. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(web, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* ---- lc-web ---------------------------------------------------------------------------- */

static char s_url[128]; /* "http://127.0.0.1:PORT" */
static char s_cafile[400];

/* Waits until lc-web (or the launcher that runs it) logs where it serves; sets s_url. */
static void s_wait_url(proc_t *p)
{
    char *log = h_wait_log(p, "web: serving http", 1, 15000);
    const char *at = strstr(log, "web: serving ") + strlen("web: serving ");
    size_t len = strcspn(at, "/ \n");
    len += strspn(at + len, "/"); /* "http://" */
    len += strcspn(at + len, "/ \n");
    snprintf(s_url, sizeof s_url, "%.*s", (int)len, at);
    free(log);
}

/* Starts lc-web with `config` as its section's settings (besides port 0) and waits until it
 * says where it serves. */
static proc_t *s_web_with(const char *config, ...)
{
    char sys[400];
    snprintf(sys, sizeof sys, "%s/system.yaml", h_dir);
    FILE *f = fopen(sys, "w");
    cr_assert(f, "cannot write %s", sys);
    fprintf(f, "modules:\n  web:\n    program: lc-web\n    config:\n      port: 0\n%s",
            config ? config : "");
    fclose(f);
    char *argv[16] = {BIN("lc-web"), "--bus", h_bus, "--config", sys};
    int n = 5;
    va_list ap;
    va_start(ap, config);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 15)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    proc_t *p = h_spawnv("web", argv);
    s_wait_url(p);
    /* Its passive hook started the server; it may send tasks and events once active. */
    lc_client_t *c = h_client();
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *m = h_module(c, "web");
        const char *st = m ? json_string_value(json_object_get(m, "state")) : NULL;
        bool active = st && strcmp(st, "active") == 0;
        json_decref(m);
        if (active)
            break;
        cr_assert_lt(lc_mono_ms(), deadline, "lc-web did not become active\n%s", h_log(p));
    }
    lc_client_destroy(&c);
    return p;
}

static proc_t *s_web(void)
{
    return s_web_with(NULL, NULL);
}

/* SIGTERM: lc-web must end cleanly (status 0; under ASan also without leaks). */
static void s_stop_web(proc_t *p)
{
    int st = h_stop(p, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lc-web ended with status %#x\n%s", st,
              h_log(p));
}

static void s_write(const char *name, const char *text)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", h_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* ---- HTTP ------------------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len;
} buf_t;

static size_t s_collect(char *p, size_t size, size_t n, void *arg)
{
    buf_t *b = arg;
    char *more = realloc(b->data, b->len + size * n + 1);
    if (!more)
        return 0;
    memcpy(more + b->len, p, size * n);
    b->data = more;
    b->len += size * n;
    b->data[b->len] = '\0';
    return size * n;
}

typedef struct {
    const char *method, *path, *body;
    const char *headers[4];
    const char *userpwd;
} hreq_t;

typedef struct {
    long status;
    buf_t body, head;
} hresp_t;

static void s_resp_free(hresp_t *r)
{
    free(r->body.data);
    free(r->head.data);
    memset(r, 0, sizeof *r);
}

static void s_do(const hreq_t *q, hresp_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *e = curl_easy_init();
    cr_assert(e);
    char url[1024];
    snprintf(url, sizeof url, "%s%s", s_url, q->path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
    if (strcmp(q->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(q->body ? strlen(q->body) : 0));
    }
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    for (int i = 0; i < 4 && q->headers[i]; i++)
        hl = curl_slist_append(hl, q->headers[i]);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    if (q->userpwd)
        curl_easy_setopt(e, CURLOPT_USERPWD, q->userpwd);
    if (s_cafile[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, s_cafile);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s_collect);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &r->head);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(e);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", q->method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(e);
    if (!r->body.data)
        r->body.data = strdup("");
    if (!r->head.data)
        r->head.data = strdup("");
}

/* The answer's JSON (a new reference), after checking the status and the final newline. */
static json_t *s_json(hresp_t *r, long status, const char *what)
{
    cr_assert_eq(r->status, status, "%s: status %ld, not %ld: %s", what, r->status, status,
                 r->body.data);
    cr_assert(r->body.len > 0 && r->body.data[r->body.len - 1] == '\n',
              "%s: the answer does not end with a newline: %s", what, r->body.data);
    json_error_t err;
    json_t *v = json_loads(r->body.data, JSON_DECODE_ANY, &err);
    cr_assert(v, "%s: not JSON (%s): %s", what, err.text, r->body.data);
    cr_assert(strstr(r->head.data, "Content-Type: application/json"), "%s: %s", what, r->head.data);
    return v;
}

static json_t *s_get(const char *path, long status)
{
    hresp_t r;
    s_do(&(hreq_t){.method = "GET", .path = path}, &r);
    json_t *v = s_json(&r, status, path);
    s_resp_free(&r);
    return v;
}

static json_t *s_post(const char *path, const char *body, long status)
{
    hresp_t r;
    s_do(&(hreq_t){.method = "POST", .path = path, .body = body}, &r);
    json_t *v = s_json(&r, status, path);
    s_resp_free(&r);
    return v;
}

/* An error answer: its status, and its error's name (and code when code != -1). */
static void s_expect_error(const char *method, const char *path, const char *body, long status,
                           const char *name, int code)
{
    hresp_t r;
    s_do(&(hreq_t){.method = method, .path = path, .body = body}, &r);
    json_t *v = s_json(&r, status, path);
    json_t *e = json_object_get(v, "error");
    cr_assert(json_is_object(e), "%s: no error object: %s", path, r.body.data);
    cr_assert_str_eq(h_str(e, "name"), name, "%s: %s", path, r.body.data);
    if (code != -1)
        cr_assert_eq(h_int(e, "code"), code, "%s: %s", path, r.body.data);
    cr_assert(strlen(h_str(e, "message")) > 0);
    json_decref(v);
    s_resp_free(&r);
}

/* ---- The event stream ------------------------------------------------------------------ */

typedef struct {
    CURLM *multi;
    CURL *easy;
    buf_t buf;
    bool ended;
} sse_t;

/* A small receive buffer: a stream that is not read fills its connection quickly. */
static int s_small_rcvbuf(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    (void)arg;
    (void)purpose;
    int size = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    return CURL_SOCKOPT_OK;
}

static void s_sse_open(sse_t *s, const char *query)
{
    memset(s, 0, sizeof *s);
    char url[512];
    snprintf(url, sizeof url, "%s/api/events%s", s_url, query ? query : "");
    s->multi = curl_multi_init();
    s->easy = curl_easy_init();
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, &s->buf);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_multi_add_handle(s->multi, s->easy);
}

/* Reads the stream until `needle` occurs n times in it (true), or for timeout_ms (false). */
static bool s_sse_poll(sse_t *s, const char *needle, int n, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        int running;
        curl_multi_perform(s->multi, &running);
        if (s->buf.data && h_count(s->buf.data, needle) >= n)
            return true;
        if (!running)
            s->ended = true;
        if (s->ended || lc_mono_ms() >= deadline)
            return false;
        curl_multi_poll(s->multi, NULL, 0, 50, NULL);
    }
}

/* Reads the stream until `needle` occurs n times in it; fails after timeout_ms. */
static void s_sse_wait(sse_t *s, const char *needle, int n, int timeout_ms)
{
    bool found = s_sse_poll(s, needle, n, timeout_ms);
    const char *text = s->buf.data ? s->buf.data : "";
    size_t len = strlen(text);
    cr_assert(found, "\"%s\" not %d times in the stream within %d ms%s; its end:\n%s", needle, n,
              timeout_ms, s->ended ? " (it ended)" : "", len > 4000 ? text + len - 4000 : text);
}

static void s_sse_close(sse_t *s)
{
    curl_multi_remove_handle(s->multi, s->easy);
    curl_easy_cleanup(s->easy);
    curl_multi_cleanup(s->multi);
    free(s->buf.data);
    memset(s, 0, sizeof *s);
}

/* The data lines of the frames of type `type`, in order, as JSON (a new array). */
static json_t *s_frames(sse_t *s, const char *type)
{
    json_t *out = json_array();
    char head[64];
    snprintf(head, sizeof head, "event: %s\ndata: ", type);
    for (const char *p = s->buf.data; p && (p = strstr(p, head));) {
        p += strlen(head);
        size_t len = strcspn(p, "\n");
        json_t *v = json_loadb(p, len, 0, NULL);
        cr_assert(v, "a %s frame's data is not JSON: %.*s", type, (int)len, p);
        json_array_append_new(out, v);
        p += len;
    }
    return out;
}

/* Every frame's id, in order, is 1, 2, 3, ... */
static void s_ids_consecutive(sse_t *s)
{
    long want = 1;
    for (const char *p = s->buf.data; (p = strstr(p, "id: ")); p += 4) {
        if (p != s->buf.data && p[-1] != '\n')
            continue;
        cr_assert_eq(atol(p + 4), want, "frame ids out of order:\n%.4000s", s->buf.data);
        want++;
    }
}

/* ---- Tests: the seed's example ----------------------------------------------------------- */

Test(web, info_log_and_defaults)
{
    h_broker(NULL);
    proc_t *web = s_web();
    /* listen's default is the loopback address. */
    cr_assert(strncmp(s_url, "http://127.0.0.1:", 17) == 0, "%s", s_url);
    json_t *info = s_get("/api/info", 200);
    cr_assert_str_eq(h_str(info, "module"), "web");
    cr_assert_str_eq(h_str(info, "title"), "LooselyCoupled");
    cr_assert_str_eq(h_str(info, "gpio"), "gpio");
    cr_assert_str_eq(h_str(info, "version"), LC_VERSION);
    cr_assert(json_is_null(json_object_get(info, "user")), "%s", h_dump(info));
    json_decref(info);
    json_t *log = s_get("/api/log", 200);
    cr_assert_eq(json_array_size(json_object_get(log, "entries")), 0, "%s", h_dump(log));
    cr_assert_str_eq(h_str(log, "empty_text"), "There is no data to show");
    json_decref(log);
    s_stop_web(web);
}

Test(web, add_log_entry_and_the_simple_event)
{
    h_broker(NULL);
    proc_t *web = s_web();
    lc_client_t *c = h_client();
    json_t *res = NULL;
    int rc = lc_call(c, "web.add_log_entry", json_pack("{s:s}", "text", "first"), &res, 5000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(res), 0);
    json_decref(res);
    rc = lc_call(c, "web.add_log_entry", json_pack("{s:s}", "text", "second"), &res, 5000);
    cr_assert_eq(json_integer_value(res), 1);
    json_decref(res);
    rc = lc_call(c, "web.add_log_entry", json_pack("{s:i}", "text", 5), &res, 5000);
    cr_assert_eq(rc, LC_EHANDLER, "a text that is not a string: %s", lc_strerror(rc));
    json_decref(res);
    json_t *info = NULL;
    rc = lc_emit_wait(c, "my_simple_example_event", json_pack("{s:s}", "param", "from the event"),
                      0, 5000, &info);
    cr_assert_eq(rc, 0);
    json_decref(info);
    int64_t deadline = lc_mono_ms() + 10000;
    json_t *log;
    while (json_array_size(json_object_get((log = s_get("/api/log", 200)), "entries")) < 3) {
        cr_assert_lt(lc_mono_ms(), deadline, "the event's line did not come: %s", h_dump(log));
        json_decref(log);
    }
    json_t *e = json_object_get(log, "entries");
    const char *texts[] = {"first", "second", "from the event"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(h_int(json_array_get(e, i), "position"), i);
        cr_assert_str_eq(h_str(json_array_get(e, i), "text"), texts[i]);
    }
    json_decref(log);
    lc_client_destroy(&c);
    s_stop_web(web);
}

Test(web, trigger_adds_two_lines_and_emits_webpage_trigger)
{
    h_broker(NULL);
    h_echo_with("ctl", "--listen", "webpage_trigger", NULL);
    proc_t *web = s_web();
    json_t *t = s_post("/api/trigger", NULL, 200);
    cr_assert_eq(h_int(t, "position"), 0, "%s", h_dump(t));
    cr_assert(json_is_true(json_object_get(t, "enqueued")), "%s", h_dump(t));
    cr_assert(json_is_true(json_object_get(t, "emitted")), "%s", h_dump(t));
    json_decref(t);
    /* The synchronous line is there at once; the enqueued one comes when the task runs. */
    int64_t deadline = lc_mono_ms() + 10000;
    json_t *log;
    while (json_array_size(json_object_get((log = s_get("/api/log", 200)), "entries")) < 2) {
        cr_assert_lt(lc_mono_ms(), deadline, "no second line: %s", h_dump(log));
        json_decref(log);
    }
    json_t *e = json_object_get(log, "entries");
    cr_assert(strstr(h_str(json_array_get(e, 0), "text"), "synchronously"), "%s", h_dump(log));
    cr_assert(strstr(h_str(json_array_get(e, 1), "text"), "asynchronously"), "%s", h_dump(log));
    json_decref(log);
    lc_client_t *c = h_client();
    json_t *got = h_wait_recorded(c, "ctl", 1, 10000);
    json_t *ev = json_array_get(got, 0);
    cr_assert_str_eq(h_str(ev, "kind"), "event");
    cr_assert_str_eq(h_str(ev, "name"), "webpage_trigger");
    cr_assert_str_eq(h_str(ev, "source"), "web");
    json_decref(got);
    lc_client_destroy(&c);
    /* A GET is not a trigger. */
    hresp_t r;
    s_do(&(hreq_t){.method = "GET", .path = "/api/trigger"}, &r);
    cr_assert_eq(r.status, 405);
    cr_assert(strstr(r.head.data, "Allow: POST"), "%s", r.head.data);
    s_resp_free(&r);
    s_stop_web(web);
}

/* ---- Tests: the API -------------------------------------------------------------------- */

Test(web, call_answers_and_errors)
{
    h_broker(NULL);
    h_echo("echo");
    proc_t *web = s_web_with("      max_body_bytes: 2000\n", NULL);
    json_t *v = s_post("/api/call/echo.echo", "{\"text\": \"hi\", \"n\": 3}", 200);
    cr_assert_str_eq(h_str(v, "text"), "hi");
    cr_assert_eq(h_int(v, "n"), 3);
    json_decref(v);
    v = s_post("/api/call/echo.echo", "", 200); /* no body: {} */
    cr_assert(json_is_object(v) && json_object_size(v) == 0, "%s", h_dump(v));
    json_decref(v);
    v = s_post("/api/call/echo.sleep", "{\"ms\": 1}", 200); /* any JSON: null here */
    cr_assert(json_is_null(v));
    json_decref(v);

    s_expect_error("POST", "/api/call/nosuch.x", "{}", 404, "ENOMODULE", -1);
    s_expect_error("POST", "/api/call/echo.nosuch", "{}", 404, "ENOMETHOD", -1);
    s_expect_error("POST", "/api/call/echo.fail", "{}", 502, "EHANDLER", 42);
    s_expect_error("POST", "/api/call/echo.fail", "{\"code\": 7, \"message\": \"seven\"}", 502,
                   "EHANDLER", 7);
    /* A declared argument of the wrong type is refused before the handler: the caller's
     * fault. */
    s_expect_error("POST", "/api/call/echo.sleep", "{\"ms\": \"soon\"}", 400, "EINVAL", 22);
    s_expect_error("POST", "/api/call/echo.sleep?timeout_ms=100", "{\"ms\": 3000}", 504,
                   "ETIMEDOUT", -1);
    s_expect_error("POST", "/api/call/echo.echo?timeout_ms=soon", "{}", 400, "EINVAL", 400);
    s_expect_error("POST", "/api/call/noDot", "{}", 400, "EINVAL", -1);

    /* Bad JSON: the parser's message and where. */
    hresp_t r;
    s_do(&(hreq_t){.method = "POST", .path = "/api/call/echo.echo", .body = "{\"a\": tru}"}, &r);
    v = s_json(&r, 400, "bad JSON");
    const char *msg = h_str(json_object_get(v, "error"), "message");
    cr_assert(strstr(msg, "not valid JSON") && strstr(msg, "position"), "%s", msg);
    json_decref(v);
    s_resp_free(&r);
    s_expect_error("POST", "/api/call/echo.echo", "[1, 2]", 400, "EINVAL", 400);

    /* Over max_body_bytes: 413 from the server, whatever the body. */
    char big[3000];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    s_do(&(hreq_t){.method = "POST", .path = "/api/call/echo.echo", .body = big}, &r);
    v = s_json(&r, 413, "big body");
    cr_assert_eq(h_int(json_object_get(v, "error"), "code"), 413);
    json_decref(v);
    s_resp_free(&r);

    /* Another site's page may not post. */
    s_do(&(hreq_t){.method = "POST",
                   .path = "/api/call/echo.echo",
                   .body = "{}",
                   .headers = {"Origin: http://elsewhere.example"}},
         &r);
    v = s_json(&r, 403, "cross-origin");
    cr_assert_str_eq(h_str(json_object_get(v, "error"), "name"), "EDENIED");
    json_decref(v);
    s_resp_free(&r);
    /* Its own pages may. */
    char origin[200];
    snprintf(origin, sizeof origin, "Origin: %s", s_url);
    s_do(
        &(hreq_t){
            .method = "POST", .path = "/api/call/echo.echo", .body = "{}", .headers = {origin}},
        &r);
    cr_assert_eq(r.status, 200, "%s: %s", origin, r.body.data);
    s_resp_free(&r);

    /* Paths and methods. */
    s_expect_error("GET", "/api/nothing", NULL, 404, "ENOTFOUND", 404);
    s_expect_error("GET", "/nothing", NULL, 404, "ENOTFOUND", 404);
    s_do(&(hreq_t){.method = "GET", .path = "/api/call/echo.echo"}, &r);
    cr_assert_eq(r.status, 405);
    cr_assert(strstr(r.head.data, "Allow: POST"), "%s", r.head.data);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "HEAD", .path = "/api/info"}, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body.len, 0);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "HEAD", .path = "/api/events"}, &r);
    cr_assert_eq(r.status, 405);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "DELETE", .path = "/api/modules"}, &r);
    cr_assert_eq(r.status, 405);
    cr_assert(strstr(r.head.data, "Allow: GET, HEAD"), "%s", r.head.data);
    s_resp_free(&r);
    s_stop_web(web);
}

Test(web, enqueue_and_emit)
{
    h_broker(NULL);
    h_echo_with("echo", "--listen", "door_*", NULL);
    proc_t *web = s_web();
    json_t *v = s_post("/api/enqueue/echo.record?priority=high", "{\"k\": 1}", 202);
    cr_assert(json_is_true(json_object_get(v, "accepted")), "%s", h_dump(v));
    json_decref(v);
    v = s_post("/api/enqueue/echo.record?priority=5", NULL, 202);
    json_decref(v);
    lc_client_t *c = h_client();
    json_t *got = h_wait_recorded(c, "echo", 2, 10000);
    json_t *first = json_array_get(got, 0), *second = json_array_get(got, 1);
    cr_assert_str_eq(h_str(first, "kind"), "task");
    cr_assert_str_eq(h_str(first, "source"), "web");
    cr_assert_eq(h_int(first, "priority"), 2);
    cr_assert_eq(h_arg(first, "k"), 1);
    cr_assert_eq(h_int(second, "priority"), 5);
    json_decref(got);
    s_expect_error("POST", "/api/enqueue/nosuch.x", "{}", 404, "ENOMODULE", -1);
    s_expect_error("POST", "/api/enqueue/echo.nosuch", "{}", 404, "ENOMETHOD", -1);
    s_expect_error("POST", "/api/enqueue/echo.record?priority=urgent", "{}", 400, "EINVAL", 400);
    s_expect_error("POST", "/api/enqueue/echo.record", "{\"a\":", 400, "EINVAL", 400);

    v = s_post("/api/emit/door_opened?priority=highest", "{\"door\": \"front\"}", 202);
    cr_assert_eq(h_int(v, "subscribers"), 1, "%s", h_dump(v));
    cr_assert_eq(json_array_size(json_object_get(v, "dropped")), 0, "%s", h_dump(v));
    json_decref(v);
    v = s_post("/api/emit/nobody_listens", NULL, 202);
    cr_assert_eq(h_int(v, "subscribers"), 0, "%s", h_dump(v));
    json_decref(v);
    got = h_wait_recorded(c, "echo", 3, 10000);
    json_t *ev = json_array_get(got, 2);
    cr_assert_str_eq(h_str(ev, "kind"), "event");
    cr_assert_str_eq(h_str(ev, "name"), "door_opened");
    cr_assert_str_eq(h_str(json_object_get(ev, "args"), "door"), "front");
    cr_assert_eq(h_int(ev, "priority"), 1);
    json_decref(got);
    s_expect_error("POST", "/api/emit/Bad-Name", "{}", 400, "EINVAL", -1);
    /* Reserved for the broker. */
    s_expect_error("POST", "/api/emit/module_state", "{}", 403, "EDENIED", -1);
    lc_client_destroy(&c);
    s_stop_web(web);
}

Test(web, modules_and_stats)
{
    h_broker(NULL);
    h_echo_with("echo", "--listen", "door_*", NULL);
    proc_t *web = s_web();
    json_t *v = s_get("/api/modules", 200);
    cr_assert(json_is_false(json_object_get(v, "launcher")), "%s", h_dump(v));
    json_t *mods = json_object_get(v, "modules");
    json_t *echo = NULL, *webm = NULL, *m;
    size_t i;
    json_array_foreach(mods, i, m)
    {
        const char *name = h_str(m, "name");
        cr_assert(name[0] != '_', "an anonymous client is listed: %s", h_dump(v));
        if (strcmp(name, "echo") == 0)
            echo = m;
        if (strcmp(name, "web") == 0)
            webm = m;
    }
    cr_assert(echo && webm, "%s", h_dump(v));
    cr_assert_str_eq(h_str(echo, "bus_state"), "active");
    cr_assert(json_is_null(json_object_get(echo, "state")), "no launcher: %s", h_dump(echo));
    cr_assert_gt(h_int(echo, "pid"), 0);
    cr_assert_geq(h_int(echo, "uptime_ms"), 0);
    const char *keys[] = {"restarts", "last_exit"};
    for (int k = 0; k < 2; k++)
        cr_assert(json_object_get(echo, keys[k]), "no %s: %s", keys[k], h_dump(echo));
    bool has_echo = false;
    json_array_foreach(json_object_get(echo, "methods"), i, m) has_echo |=
        strcmp(json_string_value(m), "echo") == 0;
    cr_assert(has_echo, "%s", h_dump(echo));
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(echo, "subscriptions"), 0)),
                     "door_*");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(webm, "subscriptions"), 0)),
                     "my_simple_example_event");
    json_decref(v);

    v = s_get("/api/stats", 200);
    cr_assert(json_is_integer(json_object_get(v, "calls")), "%s", h_dump(v));
    cr_assert(json_is_integer(json_object_get(v, "modules")), "%s", h_dump(v));
    json_decref(v);
    s_stop_web(web);
}

/* Under lc-launch: the launcher's states beside the broker's, in the launcher's order. */
Test(web, modules_under_a_launcher)
{
    char sys[400], text[1200];
    snprintf(sys, sizeof sys, "%s/system.yaml", h_dir);
    snprintf(text, sizeof text,
             "bus:\n  endpoint: %s\n"
             "modules:\n"
             "  echo:\n    program: lc-echo\n"
             "  web:\n    program: lc-web\n    after: [echo]\n    config:\n      port: 0\n",
             h_bus);
    s_write("system.yaml", text);
    proc_t *launch = h_spawn("launch", BIN("lc-launch"), sys, NULL);
    s_wait_url(launch);
    int64_t deadline = lc_mono_ms() + 15000;
    for (;;) {
        json_t *v = s_get("/api/modules", 200);
        json_t *mods = json_object_get(v, "modules");
        json_t *echo = json_array_get(mods, 0), *web = json_array_get(mods, 1);
        bool ready = json_is_true(json_object_get(v, "launcher")) && echo && web &&
                     json_is_string(json_object_get(echo, "bus_state")) &&
                     strcmp(h_str(echo, "bus_state"), "active") == 0 &&
                     strcmp(h_str(web, "bus_state"), "active") == 0;
        if (ready) {
            cr_assert_str_eq(h_str(echo, "name"), "echo", "%s", h_dump(v));
            cr_assert_str_eq(h_str(web, "name"), "web", "%s", h_dump(v));
            cr_assert_str_eq(h_str(echo, "state"), "running", "%s", h_dump(v));
            cr_assert_eq(h_int(echo, "restarts"), 0, "%s", h_dump(v));
            cr_assert(json_is_null(json_object_get(echo, "last_exit")), "%s", h_dump(v));
            cr_assert_gt(h_int(web, "pid"), 0);
            /* The launcher is a module on the bus too, after those it started. */
            json_t *last = json_array_get(mods, json_array_size(mods) - 1);
            cr_assert_str_eq(h_str(last, "name"), "launcher", "%s", h_dump(v));
            cr_assert_str_eq(h_str(last, "bus_state"), "active", "%s", h_dump(v));
            json_decref(v);
            break;
        }
        cr_assert_lt(lc_mono_ms(), deadline, "not both active under the launcher: %s", h_dump(v));
        json_decref(v);
    }
    int st = h_stop(launch, SIGTERM, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lc-launch ended with %#x\n%s", st,
              h_log(launch));
}

Test(web, static_files)
{
    h_broker(NULL);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/pages", h_dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    s_write("pages/index.html", "<!doctype html><title>t</title>\n");
    s_write("pages/app.js", "console.log(1);\n");
    s_write("pages/favicon.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>\n");
    s_write("secret.txt", "no\n");
    char cfg[600];
    snprintf(cfg, sizeof cfg, "      static_dir: %s\n", dir);
    proc_t *web = s_web_with(cfg, NULL);
    hresp_t r;
    s_do(&(hreq_t){.method = "GET", .path = "/"}, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body.data, "<!doctype html><title>t</title>\n");
    cr_assert(strstr(r.head.data, "Content-Type: text/html"), "%s", r.head.data);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "GET", .path = "/static/app.js"}, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head.data, "Content-Type: text/javascript"), "%s", r.head.data);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "GET", .path = "/favicon.ico"}, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head.data, "Content-Type: image/svg+xml"), "%s", r.head.data);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "GET", .path = "/static/missing.css"}, &r);
    cr_assert_eq(r.status, 404);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "GET", .path = "/static/%2e%2e/secret.txt"}, &r);
    cr_assert_eq(r.status, 404, "%s", r.body.data);
    s_resp_free(&r);
    s_stop_web(web);
}

/* ---- Tests: the event stream ------------------------------------------------------------- */

Test(web, events_in_order_with_log_frames)
{
    h_broker(NULL);
    proc_t *web = s_web();
    sse_t s;
    s_sse_open(&s, NULL);
    s_sse_wait(&s, ": bus feed attached", 1, 10000);
    lc_client_t *c = h_client();
    for (int i = 1; i <= 20; i++) {
        json_t *info = NULL;
        int rc = lc_emit_wait(c, "tick", json_pack("{s:i}", "n", i), 0, 5000, &info);
        cr_assert_eq(rc, 0);
        json_decref(info);
    }
    /* A frame larger than a read of the connection's (4 KiB) arrives whole. */
    char big[20001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_t *info = NULL;
    cr_assert_eq(lc_emit_wait(c, "big", json_pack("{s:s}", "text", big), 0, 5000, &info), 0);
    json_decref(info);
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "web.add_log_entry", json_pack("{s:s}", "text", "a line"), &res, 5000),
                 0);
    json_decref(res);
    s_sse_wait(&s, "\"type\":\"event\",\"source\":\"_anon", 21, 10000);
    s_sse_wait(&s, "event: log\n", 1, 10000);
    cr_assert(strstr(s.buf.data, "Content-Type") == NULL); /* only the body here */
    json_t *bus = s_frames(&s, "bus");
    int n = 0;
    size_t i;
    json_t *f;
    json_array_foreach(bus, i, f)
    {
        /* The broker's "accepted" notices name the event too. */
        if (strcmp(h_str(f, "target"), "tick") != 0 || strcmp(h_str(f, "type"), "event") != 0)
            continue;
        cr_assert_str_eq(h_str(f, "kind"), "event");
        cr_assert_eq(h_int(json_object_get(f, "payload"), "n"), ++n, "out of order: %s",
                     h_dump(bus));
    }
    cr_assert_eq(n, 20);
    bool whole = false;
    json_array_foreach(bus, i, f) if (strcmp(h_str(f, "target"), "big") == 0 &&
                                      strcmp(h_str(f, "type"), "event") == 0) whole =
        strcmp(h_str(json_object_get(f, "payload"), "text"), big) == 0;
    cr_assert(whole, "the big event's frame is not whole");
    json_decref(bus);
    json_t *log = s_frames(&s, "log");
    cr_assert_eq(json_array_size(log), 1, "%s", h_dump(log));
    cr_assert_eq(h_int(json_array_get(log, 0), "position"), 0);
    cr_assert_str_eq(h_str(json_array_get(log, 0), "text"), "a line");
    json_decref(log);
    s_ids_consecutive(&s);
    s_sse_close(&s);
    lc_client_destroy(&c);
    s_stop_web(web);
}

Test(web, events_filtered)
{
    h_broker(NULL);
    h_echo("echo");
    proc_t *web = s_web();
    sse_t doors, logs, calls;
    s_sse_open(&doors, "?types=bus&event=door_*");
    s_sse_open(&logs, "?types=log");
    s_sse_open(&calls, "?types=bus&module=echo&kind=call");
    s_sse_wait(&doors, ": bus feed attached", 1, 10000);
    s_sse_wait(&calls, ": bus feed attached", 1, 10000);
    s_sse_wait(&logs, ": lc-web event stream", 1, 10000);
    lc_client_t *c = h_client();
    json_t *info = NULL;
    cr_assert_eq(lc_emit_wait(c, "window_opened", NULL, 0, 5000, &info), 0);
    json_decref(info);
    cr_assert_eq(lc_emit_wait(c, "door_opened", NULL, 0, 5000, &info), 0);
    json_decref(info);
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "echo.echo", json_pack("{s:s}", "m", "one"), &res, 5000), 0);
    json_decref(res);
    cr_assert_eq(lc_call(c, "web.add_log_entry", json_pack("{s:s}", "text", "logged"), &res, 5000),
                 0);
    json_decref(res);
    cr_assert_eq(lc_emit_wait(c, "door_closed", NULL, 0, 5000, &info), 0);
    json_decref(info);
    cr_assert_eq(lc_call(c, "echo.echo", json_pack("{s:s}", "m", "end"), &res, 5000), 0);
    json_decref(res);

    s_sse_wait(&doors, "\"target\":\"door_closed\"", 1, 10000);
    cr_assert(strstr(doors.buf.data, "\"target\":\"door_opened\""), "%s", doors.buf.data);
    cr_assert_null(strstr(doors.buf.data, "window_opened"), "%s", doors.buf.data);
    cr_assert_null(strstr(doors.buf.data, "event: log"), "%s", doors.buf.data);
    cr_assert_null(strstr(doors.buf.data, "\"kind\":\"call\""), "%s", doors.buf.data);

    s_sse_wait(&calls, "\"payload\":{\"m\":\"end\"}", 1, 10000);
    json_t *frames = s_frames(&calls, "bus");
    size_t i;
    json_t *f;
    json_array_foreach(frames, i, f)
    {
        cr_assert_str_eq(h_str(f, "kind"), "call", "%s", h_dump(f));
        cr_assert_str_eq(h_str(f, "target"), i == 0 ? "echo.echo" : "echo.echo");
    }
    cr_assert_eq(json_array_size(frames), 2, "%s", calls.buf.data);
    json_decref(frames);
    cr_assert_null(strstr(calls.buf.data, "event: log"), "%s", calls.buf.data);

    s_sse_wait(&logs, "event: log\n", 1, 10000);
    cr_assert(strstr(logs.buf.data, "\"text\":\"logged\""), "%s", logs.buf.data);
    cr_assert_null(strstr(logs.buf.data, "event: bus"), "%s", logs.buf.data);
    cr_assert_null(strstr(logs.buf.data, "bus feed"), "%s", logs.buf.data);
    s_sse_close(&doors);
    s_sse_close(&logs);
    s_sse_close(&calls);

    s_expect_error("GET", "/api/events?types=bus,smoke", NULL, 400, "EINVAL", 400);
    s_expect_error("GET", "/api/events?kind=call,noise", NULL, 400, "EINVAL", 400);
    lc_client_destroy(&c);
    s_stop_web(web);
}

/* A stream that does not read: once the connection's buffers are full, its queue (8 frames
 * here) overflows, and it gets a "dropped" frame in place of what it missed; the frames it
 * does get keep their order and their ids stay consecutive. */
Test(web, a_slow_stream_gets_a_dropped_frame)
{
    h_broker(NULL);
    proc_t *web = s_web_with("      stream_queue: 8\n", NULL);
    sse_t s;
    s_sse_open(&s, "?types=bus&event=tick");
    curl_easy_setopt(s.easy, CURLOPT_SOCKOPTFUNCTION, s_small_rcvbuf);
    s_sse_wait(&s, ": bus feed attached", 1, 10000);
    lc_client_t *c = h_client();
    /* Not read meanwhile: far more than the connection's buffers hold (300 bytes each). */
    for (int i = 1; i <= 1000; i++)
        cr_assert_eq(lc_emit(c, "tick", json_pack("{s:i}", "n", i), 0), 0);
    s_sse_wait(&s, "event: dropped\n", 1, 20000);
    /* Once it reads again, it gets what comes next: a marker, emitted until one arrives
     * (one may still be dropped while the queue drains). */
    bool seen = false;
    for (int k = 0; k < 50 && !seen; k++) {
        json_t *info = NULL;
        cr_assert_eq(lc_emit_wait(c, "tick", json_pack("{s:i}", "n", 0), 0, 10000, &info), 0);
        json_decref(info);
        seen = s_sse_poll(&s, "\"payload\":{\"n\":0}", 1, 400);
    }
    cr_assert(seen, "the stream did not go on after its dropped frame");
    json_t *frames = s_frames(&s, "bus");
    json_int_t last = 0;
    size_t i;
    json_t *f;
    json_array_foreach(frames, i, f)
    {
        json_int_t n = h_int(json_object_get(f, "payload"), "n");
        if (n == 0)
            break;
        cr_assert_gt(n, last, "out of order after %lld", (long long)last);
        last = n;
    }
    cr_assert_lt(json_array_size(frames), 1001, "nothing was dropped");
    json_decref(frames);
    json_t *dropped = s_frames(&s, "dropped");
    cr_assert_gt(h_int(json_array_get(dropped, 0), "dropped"), 0, "%s", h_dump(dropped));
    json_decref(dropped);
    s_ids_consecutive(&s);
    s_sse_close(&s);
    lc_client_destroy(&c);
    s_stop_web(web);
}

/* Without a monitor, the stream says so and carries the log frames all the same. */
Test(web, events_without_a_monitor)
{
    h_broker("--monitor", "none", NULL);
    proc_t *web = s_web();
    sse_t s;
    s_sse_open(&s, NULL);
    s_sse_wait(&s, ": no bus feed: the broker has no monitor", 1, 10000);
    lc_client_t *c = h_client();
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "web.add_log_entry", json_pack("{s:s}", "text", "still"), &res, 5000),
                 0);
    json_decref(res);
    s_sse_wait(&s, "\"text\":\"still\"", 1, 10000);
    s_sse_close(&s);
    lc_client_destroy(&c);
    s_stop_web(web);
}

/* Streams open while lc-web stops: it ends them and exits at once, cleanly. */
Test(web, stops_with_streams_open)
{
    h_broker(NULL);
    proc_t *web = s_web();
    sse_t a, b;
    s_sse_open(&a, NULL);
    s_sse_open(&b, "?types=log");
    s_sse_wait(&a, ": bus feed attached", 1, 10000);
    s_sse_wait(&b, ": lc-web event stream", 1, 10000);
    int64_t t0 = lc_mono_ms();
    s_stop_web(web);
    cr_assert_lt(lc_mono_ms() - t0, 8000, "lc-web took long to stop with streams open");
    s_sse_close(&a);
    s_sse_close(&b);
}

/* ---- Tests: security --------------------------------------------------------------------- */

/* A crypt(3) hash of password with a SHA-512 setting, made with libcrypt (always on Debian). */
static void s_hash(const char *password, char *out, size_t size)
{
    void *lib = dlopen("libcrypt.so.1", RTLD_NOW);
    cr_assert(lib, "cannot load libcrypt.so.1: %s", dlerror());
    char *(*fn)(const char *, const char *) =
        (char *(*)(const char *, const char *))dlsym(lib, "crypt");
    cr_assert(fn, "no crypt in libcrypt");
    const char *h = fn(password, "$6$lcwebtestsalt$");
    cr_assert(h && h[0] == '$', "crypt failed");
    snprintf(out, size, "%s", h);
    dlclose(lib);
}

Test(web, basic_auth_with_a_crypt_hash)
{
    h_broker(NULL);
    char hash[200], cfg[400];
    s_hash("s3cret", hash, sizeof hash);
    snprintf(cfg, sizeof cfg, "      username: admin\n      password: '%s'\n", hash);
    proc_t *web = s_web_with(cfg, NULL);
    char *log = h_wait_log(web, "(basic auth)", 1, 5000);
    free(log);
    hresp_t r;
    s_do(&(hreq_t){.method = "GET", .path = "/api/info"}, &r);
    cr_assert_eq(r.status, 401);
    cr_assert(strstr(r.head.data, "WWW-Authenticate: Basic realm=\""), "%s", r.head.data);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "GET", .path = "/api/info", .userpwd = "admin:wrong"}, &r);
    cr_assert_eq(r.status, 403, "%s", r.body.data);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "GET", .path = "/api/info", .userpwd = "someone:s3cret"}, &r);
    cr_assert_eq(r.status, 403, "%s", r.body.data);
    s_resp_free(&r);
    s_do(&(hreq_t){.method = "GET", .path = "/api/info", .userpwd = "admin:s3cret"}, &r);
    json_t *v = s_json(&r, 200, "/api/info with the password");
    cr_assert_str_eq(h_str(v, "user"), "admin");
    json_decref(v);
    s_resp_free(&r);
    /* The stream asks for it too. */
    s_do(&(hreq_t){.method = "GET", .path = "/api/events"}, &r);
    cr_assert_eq(r.status, 401);
    s_resp_free(&r);
    s_stop_web(web);
}

Test(web, tls)
{
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        cr_skip_test("openssl (the command) is not installed: no certificate to test TLS with");
    h_broker(NULL);
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1 -days 1 -keyout k.pem -out c.pem "
             ">openssl.log 2>&1",
             h_dir);
    cr_assert_eq(system(cmd), 0, "openssl failed: %s/openssl.log", h_dir);
    /* Relative paths are taken from the system file's folder. */
    proc_t *web = s_web_with("      certfile: c.pem\n      keyfile: k.pem\n", NULL);
    cr_assert(strncmp(s_url, "https://127.0.0.1:", 18) == 0, "%s", s_url);
    snprintf(s_cafile, sizeof s_cafile, "%s/c.pem", h_dir);
    json_t *v = s_get("/api/info", 200);
    cr_assert_str_eq(h_str(v, "module"), "web");
    json_decref(v);
    s_cafile[0] = '\0';
    /* Plain HTTP on the TLS port is not answered with data. */
    char plain[160];
    snprintf(plain, sizeof plain, "http://%s", s_url + strlen("https://"));
    CURL *e = curl_easy_init();
    char url[200];
    snprintf(url, sizeof url, "%s/api/info", plain);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    buf_t b = {0};
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    cr_assert(rc != CURLE_OK || status != 200, "plain HTTP was answered on the TLS port");
    curl_easy_cleanup(e);
    free(b.data);
    s_stop_web(web);
}

Test(web, help_and_a_port_in_use)
{
    proc_t *p = h_spawn("help", BIN("lc-web"), "--help", NULL);
    int st = h_wait_exit(p, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert(strstr(h_log(p), "Usage: lc-web"), "%s", h_log(p));
    h_broker(NULL);
    proc_t *first = s_web();
    const char *port = strrchr(s_url, ':') + 1;
    char cfg[200];
    snprintf(cfg, sizeof cfg, "modules:\n  web2:\n    config:\n      port: %s\n", port);
    s_write("second.yaml", cfg);
    char sys[400];
    snprintf(sys, sizeof sys, "%s/second.yaml", h_dir);
    proc_t *second =
        h_spawn("web2", BIN("lc-web"), "--bus", h_bus, "--config", sys, "--name", "web2", NULL);
    st = h_wait_exit(second, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x\n%s", st, h_log(second));
    cr_assert(strstr(h_log(second), "cannot serve HTTP on 127.0.0.1 port"), "%s", h_log(second));
    s_stop_web(first);
}
