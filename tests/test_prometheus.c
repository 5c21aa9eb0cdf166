/* lc-prometheus: /metrics through a real broker (and lc-launch for restarts), checked by
 * tests/check_metrics.py (the Prometheus client library's parser plus strict checks of
 * the format); the broker's call-latency histogram; set_gauge_value with the seed's
 * arguments and its refusals (a refused call changes nothing); 404, 405 and HEAD; basic
 * auth with plain and crypt(3) passwords and malformed headers; TLS; the default listen
 * address; a scrape without a broker; SIGHUP (new credentials, settings with errors, and
 * settings that cannot serve: the old ones stay). */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define CHECKER LC_SOURCE_DIR "/tests/check_metrics.py"
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static proc_t *s_launcher; /* lc-launch, when a test runs one: stopped with SIGTERM */
static char s_base[256];   /* "http://127.0.0.1:PORT" of the running lc-prometheus */
static char s_sys[400];    /* the system file */

static void s_init(void)
{
    /* echo.crash aborts on purpose: no core files. */
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    h_setup();
    snprintf(s_sys, sizeof s_sys, "%s/system.yaml", h_dir);
    s_launcher = NULL;
    s_base[0] = 0;
}

static void s_fini(void)
{
    /* A launcher stops what it started on SIGTERM; SIGKILL would leave it running. */
    if (s_launcher && !s_launcher->exited)
        h_stop(s_launcher, SIGTERM, 15000);
    h_teardown();
}

TestSuite(prometheus, .init = s_init, .fini = s_fini, .timeout = 60);

/* ---- Helpers ------------------------------------------------------------------------ */

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s: %s", path, strerror(errno));
    cr_assert(fputs(text, f) >= 0);
    cr_assert_eq(fclose(f), 0);
}

/* The system file with lc-prometheus' settings: port 0 and the given lines (each
 * "key: value\n"), plus more of the file after them (other modules). */
static void s_system(const char *settings, const char *more)
{
    char text[8192];
    snprintf(text, sizeof text,
             "bus:\n  endpoint: %s\n"
             "modules:\n"
             "  prometheus:\n"
             "    program: lc-prometheus\n"
             "    config:\n"
             "      port: 0\n"
             "%s%s",
             h_bus, settings ? settings : "", more ? more : "");
    s_write(s_sys, text);
}

/* Takes the URL from the nth "serving http://ADDR:PORT/metrics" line of a log. */
static void s_base_from_nth(proc_t *p, int nth)
{
    char *text = h_wait_log(p, "serving ", nth, 15000);
    const char *at = text;
    for (int i = 0; i < nth; i++) {
        at = strstr(at, "serving ");
        cr_assert(at, "no \"serving\" line %d in:\n%s", i + 1, text);
        at += strlen("serving ");
    }
    const char *end = strstr(at, "/metrics");
    cr_assert(end && end - at < (long)sizeof s_base, "bad serving line in:\n%s", text);
    snprintf(s_base, sizeof s_base, "%.*s", (int)(end - at), at);
    free(text);
}

static void s_base_from(proc_t *p)
{
    s_base_from_nth(p, 1);
}

/* Starts lc-prometheus on h_bus with the system file as it is (each in a log of its own). */
static proc_t *s_prometheus(void)
{
    static int n;
    char log[32];
    snprintf(log, sizeof log, "prometheus-%d", ++n);
    proc_t *p = h_spawn(log, BIN("lc-prometheus"), "--bus", h_bus, "--config", s_sys, NULL);
    s_base_from(p);
    return p;
}

typedef struct {
    long status;
    char *body;
    size_t len;
    char *headers;
    size_t hlen;
    char ctype[128];
    CURLcode rc;
} resp_t;

static size_t s_gather(char *data, size_t size, size_t n, void *arg)
{
    char **buf = ((char **)arg);
    size_t *len = (size_t *)(buf + 1);
    char *more = realloc(*buf, *len + size * n + 1);
    cr_assert(more);
    memcpy(more + *len, data, size * n);
    *len += size * n;
    more[*len] = 0;
    *buf = more;
    return size * n;
}

typedef struct {
    const char *method;  /* NULL: GET */
    const char *userpwd; /* "user:password" for basic auth */
    const char *cafile;  /* TLS: the certificate to trust */
    const char *resolve; /* "localhost:PORT:127.0.0.1" */
    const char *header;  /* one more request header, "Name: value" */
} req_opts_t;

/* One request with libcurl; the connection is not reused. */
static resp_t s_request(const char *url, const req_opts_t *o)
{
    struct {
        char *buf;
        size_t len;
    } body = {NULL, 0}, head = {NULL, 0};
    resp_t r = {0};
    CURL *h = curl_easy_init();
    cr_assert(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_gather);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s_gather);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    struct curl_slist *resolve = NULL;
    if (o && o->method && strcmp(o->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (o && o->method && strcmp(o->method, "POST") == 0)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    else if (o && o->method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, o->method);
    if (o && o->userpwd) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERPWD, o->userpwd);
    }
    if (o && o->cafile)
        curl_easy_setopt(h, CURLOPT_CAINFO, o->cafile);
    struct curl_slist *extra = NULL;
    if (o && o->header) {
        extra = curl_slist_append(NULL, o->header);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, extra);
    }
    if (o && o->resolve) {
        resolve = curl_slist_append(NULL, o->resolve);
        curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
    }
    r.rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r.ctype, sizeof r.ctype, "%s", ct ? ct : "");
    curl_easy_cleanup(h);
    curl_slist_free_all(resolve);
    curl_slist_free_all(extra);
    r.body = body.buf ? body.buf : strdup("");
    r.len = body.len;
    r.headers = head.buf ? head.buf : strdup("");
    r.hlen = head.len;
    return r;
}

static void s_resp_free(resp_t *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
}

static resp_t s_get(const char *path, const req_opts_t *o)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", s_base, path);
    return s_request(url, o);
}

/* Runs the checker on an exposition: the samples as an object (name{labels} -> value),
 * or the test fails with the checker's complaints. */
static json_t *s_check(const char *text)
{
    static int n;
    char file[400], out[420], err[420], cmd[1400];
    snprintf(file, sizeof file, "%s/metrics-%d.txt", h_dir, ++n);
    snprintf(out, sizeof out, "%s.json", file);
    snprintf(err, sizeof err, "%s.err", file);
    s_write(file, text);
    snprintf(cmd, sizeof cmd, PYTHON " " CHECKER " %s >%s 2>%s", file, out, err);
    int st = system(cmd);
    char *complaints = h_slurp(err);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "check_metrics.py refuses the exposition (status 0x%x):\n%s\n--- text:\n%.6000s", st,
              complaints, text);
    free(complaints);
    json_error_t jerr;
    json_t *samples = json_load_file(out, 0, &jerr);
    cr_assert(json_is_object(samples), "check_metrics.py's output: %s", jerr.text);
    return samples;
}

/* GET /metrics, 200 and the content type checked, the text checked; returns the samples. */
static json_t *s_scrape_with(const req_opts_t *o, char **text)
{
    resp_t r = s_get("/metrics", o);
    cr_assert_eq(r.rc, CURLE_OK, "GET %s/metrics: %s", s_base, curl_easy_strerror(r.rc));
    cr_assert_eq(r.status, 200, "GET /metrics: %ld\n%s", r.status, r.body);
    cr_assert_str_eq(r.ctype, CONTENT_TYPE);
    json_t *samples = s_check(r.body);
    if (text)
        *text = strdup(r.body);
    s_resp_free(&r);
    return samples;
}

static json_t *s_scrape(void)
{
    return s_scrape_with(NULL, NULL);
}

static bool s_has(json_t *samples, const char *key)
{
    return json_object_get(samples, key) != NULL;
}

static double s_val(json_t *samples, const char *key)
{
    json_t *v = json_object_get(samples, key);
    cr_assert(json_is_number(v), "no sample %s in %.3000s", key, h_dump(samples));
    return json_number_value(v);
}

/* An lc_call that must fail with a handler error whose message holds `needle`. */
static void s_refused(lc_client_t *c, json_t *args, const char *needle)
{
    char *text = json_dumps(args, JSON_COMPACT);
    json_t *res = NULL;
    int rc = lc_call(c, "prometheus.set_gauge_value", args, &res, 5000);
    const char *msg = json_string_value(json_object_get(res, "message"));
    cr_assert_eq(rc, LC_EHANDLER, "set_gauge_value %s: %s, not refused", text, lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(res, "code")), 22, "%s", h_dump(res));
    cr_assert(msg && strstr(msg, needle), "set_gauge_value %s: \"%s\" lacks \"%s\"", text,
              msg ? msg : "", needle);
    free(text);
    json_decref(res);
}

static void s_gauge(lc_client_t *c, json_t *args)
{
    json_t *res = NULL;
    char *text = json_dumps(args, JSON_COMPACT);
    int rc = lc_call(c, "prometheus.set_gauge_value", args, &res, 5000);
    cr_assert_eq(rc, 0, "set_gauge_value %s: %s (%s)", text, lc_strerror(rc), h_dump(res));
    free(text);
    json_decref(res);
}

/* A broker, lc-prometheus with these settings, and a client. */
static lc_client_t *s_bus(const char *settings, proc_t **prom)
{
    h_broker(NULL);
    s_system(settings, NULL);
    proc_t *p = s_prometheus();
    if (prom)
        *prom = p;
    lc_client_t *c = h_client();
    h_wait_modules(c, "prometheus", NULL);
    return c;
}

/* ---- The exposition ------------------------------------------------------------------- */

Test(prometheus, serves_the_bus_metrics_in_the_text_format)
{
    proc_t *prom = NULL;
    lc_client_t *c = s_bus(NULL, &prom);
    h_echo("echo");
    for (int i = 0; i < 5; i++) {
        json_t *res = NULL;
        cr_assert_eq(lc_call(c, "echo.echo", json_pack("{s:i}", "i", i), &res, 5000), 0);
        json_decref(res);
    }
    char *text = NULL;
    json_t *m = s_scrape_with(NULL, &text);
    cr_assert_eq(s_val(m, "lc_broker_up"), 1);
    cr_assert_geq(s_val(m, "lc_messages_total{kind=\"calls\"}"), 5);
    cr_assert_geq(s_val(m, "lc_registrations_total"), 3);
    cr_assert_geq(s_val(m, "lc_modules"), 3);
    for (int p = 1; p <= 5; p++) {
        char key[64];
        snprintf(key, sizeof key, "lc_queue_length{priority=\"%d\"}", p);
        cr_assert_eq(s_val(m, key), 0);
    }
    cr_assert(s_has(m, "lc_errors_total{kind=\"unknown_target\"}"));
    cr_assert(s_has(m, "lc_refusals_total{reason=\"queue_full\"}"));
    cr_assert(s_has(m, "lc_dropped_total") && s_has(m, "lc_lost_total") &&
              s_has(m, "lc_ledger_done_total"));
    /* Every answered call is in the histogram, and only those. */
    cr_assert_eq(s_val(m, "lc_call_duration_seconds_count"),
                 s_val(m, "lc_messages_total{kind=\"replies\"}"));
    cr_assert_geq(s_val(m, "lc_call_duration_seconds_count"), 5);
    /* No launcher: its families are there, without samples, and that is no error. */
    cr_assert_eq(s_val(m, "lc_launcher_up"), 0);
    cr_assert(strstr(text, "# TYPE lc_module_restarts_total counter\n"));
    cr_assert(strstr(text, "# TYPE lc_module_up gauge\n"));
    cr_assert_null(strstr(text, "lc_module_up{"));
    cr_assert_null(strstr(h_log(prom), "WARNING"), "%s", h_log(prom));
    /* The process, as the Prometheus client libraries name it. */
    cr_assert_gt(s_val(m, "process_start_time_seconds"), 1.5e9);
    cr_assert_gt(s_val(m, "process_resident_memory_bytes"), 0);
    cr_assert_gt(s_val(m, "process_open_fds"), 0);
    free(text);
    json_decref(m);
    lc_client_destroy(&c);
}

Test(prometheus, backlog_per_module_and_queue_by_priority)
{
    lc_client_t *c = s_bus(NULL, NULL);
    h_echo("echo");
    /* echo holds the first task, so that the next ones wait in the broker. */
    json_t *res = NULL;
    h_enqueue_ok(c, "echo.hold", NULL, LC_PRIORITY_NORMAL);
    json_decref(h_wait_recorded(c, "echo", 1, 10000));
    /* The window (64) takes the next ones to the module: one more than it holds waits. */
    for (int i = 0; i < 70; i++)
        h_enqueue_ok(c, "echo.record", json_pack("{s:i}", "i", i),
                     i < 3 ? LC_PRIORITY_HIGH : LC_PRIORITY_LOW);
    json_t *m = s_scrape();
    double queued = s_val(m, "lc_queued");
    cr_assert_gt(queued, 0, "%s", h_dump(m));
    cr_assert_eq(s_val(m, "lc_backlog{module=\"echo\"}"), queued);
    double sum = 0;
    for (int p = 1; p <= 5; p++) {
        char key[64];
        snprintf(key, sizeof key, "lc_queue_length{priority=\"%d\"}", p);
        sum += s_val(m, key);
    }
    cr_assert_eq(sum, queued);
    cr_assert_gt(s_val(m, "lc_in_flight"), 0);
    json_decref(m);
    cr_assert_eq(lc_call(c, "echo.release", NULL, &res, 5000), 0);
    json_decref(res);
    lc_client_destroy(&c);
}

Test(prometheus, latency_histogram_counts_calls_through_the_bus)
{
    lc_client_t *c = s_bus(NULL, NULL);
    h_echo("echo");
    json_t *m0 = s_scrape();
    double count0 = s_val(m0, "lc_call_duration_seconds_count");
    double inf0 = s_val(m0, "lc_call_duration_seconds_bucket{le=\"+Inf\"}");
    double le25ms0 = s_val(m0, "lc_call_duration_seconds_bucket{le=\"0.025\"}");
    double sum0 = s_val(m0, "lc_call_duration_seconds_sum");
    json_t *res = NULL;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(lc_call(c, "echo.echo", NULL, &res, 5000), 0);
        json_decref(res);
    }
    /* An answer that takes about 60 ms (at least 55: the module's timers count whole
     * milliseconds), and a handler error: both are answers. */
    cr_assert_eq(lc_call(c, "echo.sleep", json_pack("{s:i}", "ms", 60), &res, 5000), 0);
    json_decref(res);
    cr_assert_eq(lc_call(c, "echo.fail", NULL, &res, 5000), LC_EHANDLER);
    json_decref(res);
    /* Calls the broker refuses or answers itself are not in it. */
    cr_assert_eq(lc_call(c, "nobody.here", NULL, &res, 5000), LC_ENOMODULE);
    json_decref(res);
    json_t *m = s_scrape();
    cr_assert_eq(s_val(m, "lc_call_duration_seconds_count") - count0, 12, "%s", h_dump(m));
    cr_assert_eq(s_val(m, "lc_call_duration_seconds_bucket{le=\"+Inf\"}") - inf0, 12);
    /* The sleep is slower than 25 ms whatever the machine: not in that bucket. */
    cr_assert_leq(s_val(m, "lc_call_duration_seconds_bucket{le=\"0.025\"}") - le25ms0, 11);
    cr_assert_geq(s_val(m, "lc_call_duration_seconds_sum") - sum0, 0.055);
    /* broker.stats carries it too. */
    json_t *st = NULL;
    cr_assert_eq(lc_call(c, "broker.stats", NULL, &st, 5000), 0);
    json_t *h = json_object_get(st, "call_duration");
    cr_assert_eq(json_array_size(json_object_get(h, "bounds_us")), 15, "%s", h_dump(st));
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(h, "bounds_us"), 0)), 100);
    cr_assert_eq(json_array_size(json_object_get(h, "buckets")), 15);
    cr_assert_eq(h_int(h, "count"), (json_int_t)s_val(m, "lc_call_duration_seconds_count"));
    cr_assert_geq(h_int(h, "sum_us"), 55000);
    json_decref(st);
    json_decref(m0);
    json_decref(m);
    lc_client_destroy(&c);
}

/* ---- set_gauge_value ------------------------------------------------------------------ */

Test(prometheus, set_gauge_value_as_the_seed_example)
{
    lc_client_t *c = s_bus(NULL, NULL);
    /* The seed's simple example, call by call. */
    s_gauge(c, json_pack("{s:s, s:s}", "metric", "example_metric", "documentation",
                         "An example metric"));
    s_gauge(c, json_pack("{s:s, s:i}", "metric", "example_metric", "value", 17));
    s_gauge(c, json_pack("{s:s, s:i, s:i, s:s}", "metric", "example_metric_with_label", "value", 17,
                         "label_instance", 1, "documentation", "An example with a label"));
    char *text = NULL;
    json_t *m = s_scrape_with(NULL, &text);
    cr_assert_eq(s_val(m, "example_metric"), 17);
    cr_assert_eq(s_val(m, "example_metric_with_label{instance=\"1\"}"), 17);
    cr_assert(strstr(text, "# HELP example_metric An example metric\n# TYPE example_metric "
                           "gauge\n"),
              "%s", text);
    cr_assert(strstr(text, "# HELP example_metric_with_label An example with a label\n"));
    free(text);
    json_decref(m);

    /* 0 is a value (the seed ignored it); later documentation is ignored (as the seed). */
    s_gauge(c, json_pack("{s:s, s:i, s:s}", "metric", "example_metric", "value", 0, "documentation",
                         "other words"));
    /* Without documentation: the seed's default text. More label sets, odd values. */
    s_gauge(c, json_pack("{s:s, s:f, s:s, s:s}", "metric", "room_temperature", "value", -2.5,
                         "label_room", "hall \"north\"\\\n", "label_floor", "1"));
    s_gauge(c, json_pack("{s:s, s:f, s:s, s:s}", "metric", "room_temperature", "value", 21.25,
                         "label_floor", "2", "label_room", "kitchen"));
    /* HELP text escapes its backslashes and line ends. */
    s_gauge(c, json_pack("{s:s, s:i, s:s}", "metric", "escaped_help", "value", 1, "documentation",
                         "two\nlines, one \\ backslash"));
    /* A labelled metric shows a label set once it has a value. */
    s_gauge(c, json_pack("{s:s, s:s}", "metric", "later", "label_x", "a"));
    m = s_scrape_with(NULL, &text);
    cr_assert_eq(s_val(m, "example_metric"), 0);
    cr_assert(strstr(text, "# HELP example_metric An example metric\n"));
    cr_assert(strstr(text, "# HELP room_temperature [no documentation provided]\n"));
    cr_assert_eq(s_val(m, "room_temperature{floor=\"1\",room=\"hall \\\"north\\\"\\\\\\n\"}"), -2.5,
                 "%s", h_dump(m));
    cr_assert_eq(s_val(m, "room_temperature{floor=\"2\",room=\"kitchen\"}"), 21.25);
    cr_assert(strstr(text, "# HELP escaped_help two\\nlines, one \\\\ backslash\n"), "%s", text);
    cr_assert(strstr(text, "# TYPE later gauge\n"));
    cr_assert_null(strstr(text, "later{"));
    free(text);
    json_decref(m);
    lc_client_destroy(&c);
}

Test(prometheus, set_gauge_value_refusals_say_why)
{
    lc_client_t *c = s_bus(NULL, NULL);
    s_gauge(
        c, json_pack("{s:s, s:i, s:s}", "metric", "with_label", "value", 1, "label_instance", "a"));
    /* The label names are fixed at the first use. */
    s_refused(c,
              json_pack("{s:s, s:i, s:s}", "metric", "with_label", "value", 2, "label_host", "b"),
              "has the labels {instance} since its first use; this call gives {host}");
    s_refused(c, json_pack("{s:s, s:i}", "metric", "with_label", "value", 2), "this call gives {}");
    s_refused(c,
              json_pack("{s:s, s:i, s:s, s:s}", "metric", "with_label", "value", 2,
                        "label_instance", "a", "label_host", "b"),
              "this call gives {host, instance}");
    s_refused(c, json_pack("{s:s, s:i, s:i}", "metric", "x", "value", 1, "foo", 1),
              "unexpected argument 'foo'");
    s_refused(c, json_pack("{s:i}", "value", 1), "argument 'metric'");
    s_refused(c, json_pack("{s:s, s:i}", "metric", "1abc", "value", 1),
              "'1abc' is not a valid metric name");
    s_refused(c, json_pack("{s:s, s:i}", "metric", "a-b", "value", 1), "not a valid metric name");
    s_refused(c, json_pack("{s:s, s:i, s:s}", "metric", "x", "value", 1, "label___x", "a"),
              "'label___x' does not name a valid label");
    s_refused(c, json_pack("{s:s, s:i, s:s}", "metric", "x", "value", 1, "label_a.b", "a"),
              "does not name a valid label");
    s_refused(c, json_pack("{s:s, s:i}", "metric", "lc_messages_total", "value", 1),
              "lc-prometheus' own");
    s_refused(c, json_pack("{s:s, s:s}", "metric", "x", "value", "17"), "must be a number");
    s_refused(c, json_pack("{s:s, s:i, s:n}", "metric", "x", "value", 1, "label_a"),
              "label_a must be a string, a number or a boolean");
    char long_text[1100];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = 0;
    s_refused(c, json_pack("{s:s, s:i, s:s}", "metric", "x", "value", 1, "label_a", long_text),
              "the value of label_a is longer than 1024 bytes");
    s_refused(c,
              json_pack("{s:s, s:i, s:s}", "metric", "x", "value", 1, "documentation", long_text),
              "documentation longer than 1024 bytes");
    long_text[300] = 0;
    s_refused(c, json_pack("{s:s, s:i}", "metric", long_text, "value", 1),
              "a metric name longer than 200 bytes");
    /* Nothing of that reached the exposition. */
    json_t *m = s_scrape();
    cr_assert_eq(s_val(m, "with_label{instance=\"a\"}"), 1);
    cr_assert_not(s_has(m, "x"));
    json_decref(m);
    lc_client_destroy(&c);
}

/* At the limit of label sets, a call that would create a metric with its first label set is
 * refused as a whole: the metric is not created either (its labels are not fixed by it). */
Test(prometheus, a_refused_first_label_set_creates_no_metric)
{
    lc_client_t *c = s_bus(NULL, NULL);
    for (int i = 0; i < 10000; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        s_gauge(c, json_pack("{s:s, s:i, s:s}", "metric", "many", "value", 1, "label_i", v));
    }
    s_refused(c, json_pack("{s:s, s:i, s:s}", "metric", "fresh", "value", 1, "label_a", "x"),
              "already 10000 label sets");
    /* Not created: another label set is refused for the limit, not for its labels. */
    s_refused(c, json_pack("{s:s, s:i, s:s}", "metric", "fresh", "value", 1, "label_b", "y"),
              "already 10000 label sets");
    json_t *m = s_scrape();
    cr_assert_not(s_has(m, "fresh{a=\"x\"}"));
    json_decref(m);
    resp_t r = s_get("/metrics", NULL);
    cr_assert_null(strstr(r.body, "# TYPE fresh gauge"), "fresh is in the exposition");
    s_resp_free(&r);
    lc_client_destroy(&c);
}

Test(prometheus, the_simple_example_sets_its_gauges)
{
    lc_client_t *c = s_bus(NULL, NULL);
    /* lc-simple's run makes the seed's three set_gauge_value calls. */
    h_spawn("simple", BIN("lc-simple"), "--bus", h_bus, NULL);
    int64_t deadline = lc_mono_ms() + 15000;
    json_t *m = NULL;
    char *text = NULL;
    for (;;) {
        m = s_scrape_with(NULL, &text);
        if (s_has(m, "example_metric_with_label{instance=\"1\"}"))
            break;
        cr_assert(lc_mono_ms() < deadline, "no gauges from lc-simple:\n%s", text);
        free(text);
        json_decref(m);
    }
    cr_assert(strstr(text, "# HELP example_metric an example gauge of lc-simple\n"), "%s", text);
    cr_assert(strstr(text, "# HELP example_metric_with_label an example gauge with a label\n"));
    cr_assert(s_has(m, "example_metric"));
    free(text);
    json_decref(m);
    lc_client_destroy(&c);
}

/* ---- HTTP ----------------------------------------------------------------------------- */

Test(prometheus, only_metrics_is_served)
{
    lc_client_t *c = s_bus(NULL, NULL);
    static const char *const paths[] = {"/", "/metricsx", "/metrics/", "/metrics?name=x",
                                        "/index.html"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        resp_t r = s_get(paths[i], NULL);
        cr_assert_eq(r.status, 404, "GET %s: %ld", paths[i], r.status);
        cr_assert(strstr(r.body, "/metrics"), "GET %s: no hint in \"%s\"", paths[i], r.body);
        s_resp_free(&r);
    }
    static const char *const methods[] = {"POST", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        resp_t r = s_get("/metrics", &(req_opts_t){.method = methods[i]});
        cr_assert_eq(r.status, 405, "%s /metrics: %ld", methods[i], r.status);
        cr_assert(strstr(r.headers, "Allow: GET, HEAD\r\n"), "%s", r.headers);
        s_resp_free(&r);
    }
    resp_t r = s_get("/metrics", &(req_opts_t){.method = "HEAD"});
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.ctype, CONTENT_TYPE);
    cr_assert_eq(r.len, 0);
    s_resp_free(&r);
    lc_client_destroy(&c);
}

Test(prometheus, listens_on_loopback_by_default)
{
    lc_client_t *c = s_bus(NULL, NULL);
    cr_assert(strncmp(s_base, "http://127.0.0.1:", 17) == 0, "%s", s_base);
    /* Bound to 127.0.0.1 itself: another loopback address is refused. */
    char url[300];
    snprintf(url, sizeof url, "http://127.0.0.2:%s/metrics", s_base + 17);
    resp_t r = s_request(url, NULL);
    cr_assert_eq(r.rc, CURLE_COULDNT_CONNECT, "%s: %s (status %ld)", url, curl_easy_strerror(r.rc),
                 r.status);
    s_resp_free(&r);
    lc_client_destroy(&c);
}

static void s_auth_cases(const char *password)
{
    /* No credentials: 401 naming the realm, as the seed. */
    resp_t r = s_get("/metrics", NULL);
    cr_assert_eq(r.status, 401, "%ld", r.status);
    cr_assert(strstr(r.headers, "WWW-Authenticate: Basic realm=\"Metrics\""), "%s", r.headers);
    s_resp_free(&r);
    /* Wrong user or password: 403. */
    r = s_get("/metrics", &(req_opts_t){.userpwd = "scraper:wrong"});
    cr_assert_eq(r.status, 403, "%ld", r.status);
    s_resp_free(&r);
    char up[128];
    snprintf(up, sizeof up, "someone:%s", password);
    r = s_get("/metrics", &(req_opts_t){.userpwd = up});
    cr_assert_eq(r.status, 403, "%ld", r.status);
    s_resp_free(&r);
    /* The right ones: the metrics. */
    snprintf(up, sizeof up, "scraper:%s", password);
    json_t *m = s_scrape_with(&(req_opts_t){.userpwd = up}, NULL);
    cr_assert_eq(s_val(m, "lc_broker_up"), 1);
    json_decref(m);
    /* Another scheme, bad base64, no ':' between user and password: 403, not the metrics. */
    static const char *const malformed[] = {
        "Authorization: Bearer c2NyYXBlcjpwdw==",
        "Authorization: Basic !!!not-base64!!!",
        "Authorization: Basic c2NyYXBlcg==", /* "scraper" */
        "Authorization: Basic",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        r = s_get("/metrics", &(req_opts_t){.header = malformed[i]});
        cr_assert_eq(r.status, 403, "%s: %ld", malformed[i], r.status);
        cr_assert_null(strstr(r.body, "lc_broker_up"));
        s_resp_free(&r);
    }
    /* Other paths ask for the credentials too. */
    r = s_get("/other", NULL);
    cr_assert_eq(r.status, 401, "%ld", r.status);
    s_resp_free(&r);
}

Test(prometheus, basic_auth_with_a_plain_password)
{
    lc_client_t *c = s_bus("      username: scraper\n      password: 's3cret pass'\n", NULL);
    s_auth_cases("s3cret pass");
    lc_client_destroy(&c);
}

/* A crypt(3) hash made by `openssl passwd` (-6: sha512crypt, -5: sha256crypt). */
static void s_hash(const char *alg, const char *password, char *hash, size_t size)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "openssl passwd %s '%s'", alg, password);
    FILE *f = popen(cmd, "r");
    cr_assert(f, "cannot run %s", cmd);
    cr_assert(fgets(hash, (int)size, f), "no output from %s", cmd);
    cr_assert_eq(pclose(f), 0, "%s failed", cmd);
    hash[strcspn(hash, "\n")] = 0;
    cr_assert(hash[0] == '$', "%s gave '%s'", cmd, hash);
}

Test(prometheus, basic_auth_with_crypt_hashes)
{
    char hash[256], settings[512];
    s_hash("-6", "hashed pass", hash, sizeof hash);
    cr_assert(strncmp(hash, "$6$", 3) == 0, "%s", hash);
    snprintf(settings, sizeof settings, "      username: scraper\n      password: '%s'\n", hash);
    proc_t *prom = NULL;
    lc_client_t *c = s_bus(settings, &prom);
    s_auth_cases("hashed pass");
    /* The hash itself is no password. */
    char up[300];
    snprintf(up, sizeof up, "scraper:%s", hash);
    resp_t r = s_get("/metrics", &(req_opts_t){.userpwd = up});
    cr_assert_eq(r.status, 403, "%ld", r.status);
    s_resp_free(&r);
    lc_client_destroy(&c);

    /* sha256crypt from openssl, and hashes made beforehand for "pw" by libcrypt itself:
     * yescrypt (Debian's default for passwd) and bcrypt; each on a new lc-prometheus. */
    h_stop(prom, SIGTERM, 10000);
    static const char *const made[] = {
        "$y$j9T$lR.rHTk8lWa99fUKw5y8S1$2SSfYKAaLhH6j/ntBlcag7Gz70CjvFFqVCxrT7bgF14",
        "$2b$05$AHau6gEKCkXS4TY6CD7mX.a.pLFR0NSH7riirhzZcrPRKcSuRXgDO",
    };
    for (int i = 0; i < 3; i++) {
        if (i == 0)
            s_hash("-5", "pw", hash, sizeof hash);
        else
            snprintf(hash, sizeof hash, "%s", made[i - 1]);
        snprintf(settings, sizeof settings, "      username: scraper\n      password: '%s'\n",
                 hash);
        s_system(settings, NULL);
        prom = s_prometheus();
        r = s_get("/metrics", &(req_opts_t){.userpwd = "scraper:pw"});
        cr_assert_eq(r.status, 200, "%s: %ld", hash, r.status);
        s_resp_free(&r);
        r = s_get("/metrics", &(req_opts_t){.userpwd = "scraper:pw2"});
        cr_assert_eq(r.status, 403, "%s: %ld", hash, r.status);
        s_resp_free(&r);
        h_stop(prom, SIGTERM, 10000);
    }
}

Test(prometheus, tls_with_a_self_signed_certificate)
{
    char cmd[1024], cert[300], key[300];
    snprintf(cert, sizeof cert, "%s/c.pem", h_dir);
    snprintf(key, sizeof key, "%s/k.pem", h_dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 "
             "-keyout %s -out %s >%s/openssl.log 2>&1",
             key, cert, h_dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    char settings[1024];
    snprintf(settings, sizeof settings,
             "      certfile: c.pem\n      keyfile: k.pem\n      username: scraper\n"
             "      password: pw\n");
    lc_client_t *c = s_bus(settings, NULL);
    cr_assert(strncmp(s_base, "https://127.0.0.1:", 18) == 0, "%s", s_base);
    int port = atoi(s_base + 18);
    char resolve[64], url[128];
    snprintf(resolve, sizeof resolve, "localhost:%d:127.0.0.1", port);
    snprintf(url, sizeof url, "https://localhost:%d", port);
    snprintf(s_base, sizeof s_base, "%s", url);
    /* The certificate checked against the one made here, and the name localhost. */
    json_t *m = s_scrape_with(
        &(req_opts_t){.userpwd = "scraper:pw", .cafile = cert, .resolve = resolve}, NULL);
    cr_assert_eq(s_val(m, "lc_broker_up"), 1);
    json_decref(m);
    resp_t r = s_get("/metrics", &(req_opts_t){.cafile = cert, .resolve = resolve});
    cr_assert_eq(r.status, 401, "%ld", r.status);
    s_resp_free(&r);
    /* Without trusting it, or in plain HTTP: no metrics. */
    r = s_get("/metrics", &(req_opts_t){.userpwd = "scraper:pw", .resolve = resolve});
    cr_assert_neq(r.rc, CURLE_OK);
    s_resp_free(&r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    r = s_request(url, &(req_opts_t){.userpwd = "scraper:pw"});
    cr_assert(r.rc != CURLE_OK || r.status != 200, "plain HTTP answered %ld", r.status);
    s_resp_free(&r);
    lc_client_destroy(&c);
}

Test(prometheus, bad_settings_are_refused_at_start)
{
    static const struct {
        const char *settings, *message;
    } cases[] = {
        {"      username: scraper\n", "username is set but password is not"},
        {"      password: x\n", "password is set but username is not"},
        {"      certfile: c.pem\n", "certfile is set but keyfile is not"},
        {"      passwd: x\n", "config.passwd: unknown setting"},
        {"      timeout_ms: 0\n", "timeout_ms: 0 is not 1 to 60000 ms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_system(cases[i].settings, NULL);
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        proc_t *p = h_spawn(name, BIN("lc-prometheus"), "--bus", h_bus, "--config", s_sys, NULL);
        int st = h_wait_exit(p, 10000);
        cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: status 0x%x\n%s",
                  cases[i].settings, st, h_log(p));
        cr_assert(strstr(h_log(p), cases[i].message), "no \"%s\" in:\n%s", cases[i].message,
                  h_log(p));
        cr_assert(strstr(h_log(p), s_sys), "the file is not named in:\n%s", h_log(p));
    }
}

Test(prometheus, a_port_in_use_ends_the_module_with_a_reason)
{
    h_broker(NULL);
    s_system(NULL, NULL);
    proc_t *first = s_prometheus();
    (void)first;
    char settings[64];
    snprintf(settings, sizeof settings, "      port: %s\n", strrchr(s_base, ':') + 1);
    /* A second file: the same port, given after port: 0 (the later key wins). */
    char text[1024];
    snprintf(text, sizeof text,
             "bus:\n  endpoint: %s\nmodules:\n  prom2:\n    program: lc-prometheus\n"
             "    config:\n%s",
             h_bus, settings);
    char sys2[400];
    snprintf(sys2, sizeof sys2, "%s/system2.yaml", h_dir);
    s_write(sys2, text);
    proc_t *p = h_spawn("prom2", BIN("lc-prometheus"), "--name", "prom2", "--bus", h_bus,
                        "--config", sys2, NULL);
    int st = h_wait_exit(p, 15000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "status 0x%x\n%s", st, h_log(p));
    cr_assert(strstr(h_log(p), "cannot serve HTTP on 127.0.0.1 port"), "%s", h_log(p));
}

Test(prometheus, a_scrape_without_the_broker_still_answers)
{
    proc_t *broker = h_broker(NULL);
    s_system("      timeout_ms: 300\n", NULL);
    s_prometheus();
    lc_client_t *c = h_client();
    h_wait_modules(c, "prometheus", NULL);
    s_gauge(c, json_pack("{s:s, s:i}", "metric", "kept", "value", 5));
    lc_client_destroy(&c);
    json_t *m = s_scrape();
    cr_assert_eq(s_val(m, "lc_broker_up"), 1);
    json_decref(m);
    /* The broker dies: the scrape says so, with the gauges and the process. */
    h_stop(broker, SIGKILL, 5000);
    m = s_scrape();
    cr_assert_eq(s_val(m, "lc_broker_up"), 0);
    cr_assert_eq(s_val(m, "lc_launcher_up"), 0);
    cr_assert_not(s_has(m, "lc_messages_total{kind=\"calls\"}"));
    cr_assert_eq(s_val(m, "kept"), 5);
    cr_assert_gt(s_val(m, "process_open_fds"), 0);
    json_decref(m);
}

Test(prometheus, serves_while_passive)
{
    h_broker(NULL);
    lc_client_t *c = h_client();
    /* The broker activates the expected modules together: while "ghost" does not come,
     * prometheus stays passive (the seed's server ran from start-up, passively). */
    json_t *res = NULL;
    int rc =
        lc_call(c, "broker.expect",
                json_pack("{s:[s,s], s:i}", "modules", "prometheus", "ghost", "timeout_ms", 60000),
                &res, 5000);
    cr_assert_eq(rc, 0, "broker.expect: %s", lc_strerror(rc));
    json_decref(res);
    s_system(NULL, NULL);
    s_prometheus();
    h_wait_modules(c, "prometheus", NULL);
    json_t *mod = h_module(c, "prometheus");
    cr_assert_str_eq(h_str(mod, "state"), "passive");
    json_decref(mod);
    s_gauge(c, json_pack("{s:s, s:i}", "metric", "while_passive", "value", 3));
    json_t *m = s_scrape();
    cr_assert_eq(s_val(m, "lc_broker_up"), 1);
    cr_assert_eq(s_val(m, "while_passive"), 3);
    json_decref(m);
    mod = h_module(c, "prometheus");
    cr_assert_str_eq(h_str(mod, "state"), "passive");
    json_decref(mod);
    lc_client_destroy(&c);
}

typedef struct {
    int rounds;
    int ok;
} scraper_t;

static void *s_scraper(void *arg)
{
    scraper_t *s = arg;
    for (int i = 0; i < s->rounds; i++) {
        resp_t r = s_get("/metrics", NULL);
        s->ok += r.rc == CURLE_OK && r.status == 200 && strstr(r.body, "# TYPE busy gauge\n");
        s_resp_free(&r);
    }
    return NULL;
}

Test(prometheus, scrapes_at_once_while_gauges_change)
{
    lc_client_t *c = s_bus(NULL, NULL);
    s_gauge(c, json_pack("{s:s, s:i, s:s}", "metric", "busy", "value", 0, "label_n", "0"));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    enum { THREADS = 4, ROUNDS = 15 };
    pthread_t t[THREADS];
    scraper_t sc[THREADS];
    for (int i = 0; i < THREADS; i++) {
        sc[i] = (scraper_t){ROUNDS, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, s_scraper, &sc[i]), 0);
    }
    for (int i = 0; i < 200; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d", i % 50);
        s_gauge(c, json_pack("{s:s, s:i, s:s}", "metric", "busy", "value", i, "label_n", n));
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(sc[i].ok, ROUNDS, "scraper %d: %d of %d scrapes answered", i, sc[i].ok,
                     ROUNDS);
    }
    json_t *m = s_scrape();
    for (int n = 0; n < 50; n++) {
        char key[64];
        snprintf(key, sizeof key, "busy{n=\"%d\"}", n);
        cr_assert_eq(s_val(m, key), 150 + n);
    }
    json_decref(m);
    curl_global_cleanup();
    lc_client_destroy(&c);
}

Test(prometheus, sighup_takes_new_credentials)
{
    proc_t *prom = NULL;
    lc_client_t *c = s_bus("      username: scraper\n      password: old\n", &prom);
    resp_t r = s_get("/metrics", &(req_opts_t){.userpwd = "scraper:old"});
    cr_assert_eq(r.status, 200, "%ld", r.status);
    s_resp_free(&r);
    /* Settings with an error are refused: the old ones stay. */
    s_system("      username: scraper\n", NULL);
    kill(prom->pid, SIGHUP);
    free(h_wait_log(prom, "the old ones stay", 1, 10000));
    r = s_get("/metrics", &(req_opts_t){.userpwd = "scraper:old"});
    cr_assert_eq(r.status, 200, "%ld", r.status);
    s_resp_free(&r);
    /* A new password: the server starts again with it (on another free port). */
    s_system("      username: scraper\n      password: new\n", NULL);
    kill(prom->pid, SIGHUP);
    s_base_from_nth(prom, 2);
    r = s_get("/metrics", &(req_opts_t){.userpwd = "scraper:old"});
    cr_assert_eq(r.status, 403, "%ld", r.status);
    s_resp_free(&r);
    json_t *m = s_scrape_with(&(req_opts_t){.userpwd = "scraper:new"}, NULL);
    cr_assert_eq(s_val(m, "lc_broker_up"), 1);
    json_decref(m);
    lc_client_destroy(&c);
}

/* Valid settings whose server cannot start (a certificate that cannot be read): the module
 * goes on serving with the old ones rather than ending without metrics. */
Test(prometheus, sighup_with_a_server_that_cannot_start_keeps_the_old_one)
{
    proc_t *prom = NULL;
    lc_client_t *c = s_bus(NULL, &prom);
    s_system("      certfile: missing-c.pem\n      keyfile: missing-k.pem\n", NULL);
    kill(prom->pid, SIGHUP);
    free(h_wait_log(prom, "back to the old settings", 1, 10000));
    s_base_from_nth(prom, 2);
    cr_assert(strncmp(s_base, "http://127.0.0.1:", 17) == 0, "%s", s_base);
    json_t *m = s_scrape();
    cr_assert_eq(s_val(m, "lc_broker_up"), 1);
    json_decref(m);
    cr_assert(strstr(h_log(prom), "missing-c.pem"), "the file is not named in:\n%s", h_log(prom));
    lc_client_destroy(&c);
}

/* ---- With lc-launch ------------------------------------------------------------------- */

Test(prometheus, module_restarts_and_states_from_the_launcher)
{
    s_system(NULL, "  echo:\n    program: lc-echo\n    restart: always\n"
                   "    backoff: {initial_ms: 50, max_ms: 400}\n");
    s_launcher = h_spawn("launch", BIN("lc-launch"), s_sys, NULL);
    s_base_from(s_launcher);
    lc_client_t *c = lc_client_new(NULL, h_bus);
    cr_assert(c);
    cr_assert_eq(lc_connect(c, 15000), 0, "%s", h_log(s_launcher));
    h_wait_modules(c, "launcher", "echo", "prometheus", NULL);
    json_t *m = s_scrape();
    cr_assert_eq(s_val(m, "lc_launcher_up"), 1);
    cr_assert_eq(s_val(m, "lc_module_up{module=\"echo\"}"), 1);
    cr_assert_eq(s_val(m, "lc_module_up{module=\"prometheus\"}"), 1);
    cr_assert_eq(s_val(m, "lc_module_up{module=\"broker\"}"), 1);
    cr_assert_eq(s_val(m, "lc_module_restarts_total{module=\"echo\"}"), 0);
    cr_assert_eq(s_val(m, "lc_module_state{module=\"echo\",state=\"running\"}"), 1);
    cr_assert_eq(s_val(m, "lc_module_state{module=\"echo\",state=\"failed\"}"), 0);
    json_decref(m);

    /* echo crashes; the launcher starts it again. */
    json_t *res = NULL;
    lc_call(c, "echo.crash", NULL, &res, 5000);
    json_decref(res);
    int64_t deadline = lc_mono_ms() + 15000;
    for (;;) {
        m = s_scrape();
        bool done = s_val(m, "lc_module_restarts_total{module=\"echo\"}") == 1 &&
                    s_val(m, "lc_module_up{module=\"echo\"}") == 1;
        if (done)
            break;
        cr_assert(lc_mono_ms() < deadline, "echo not restarted: %s\n%s", h_dump(m),
                  h_log(s_launcher));
        json_decref(m);
    }
    cr_assert_eq(s_val(m, "lc_module_state{module=\"echo\",state=\"running\"}"), 1);
    /* The crash call was answered "gone" by the broker. */
    cr_assert_geq(s_val(m, "lc_errors_total{kind=\"gone\"}"), 1);
    json_decref(m);
    lc_client_destroy(&c);
}
