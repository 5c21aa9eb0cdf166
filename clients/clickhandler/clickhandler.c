/* lc-clickhandler: turns the GPIO module's edges (changed_gpio_input) into clicks:
 * pushed_short, pushed_long and doubleclick, by the Python package's rules (see
 * docs/modules/clickhandler.md). Everything is decided at edges: there is no timer, so every
 * click event is emitted at a release. */
#include "../common.h"
#include "lc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The seed's states (its HOLD state was never entered and is left out). */
enum { NEUTRAL, PUSHED, RELEASED, PUSHEDAGAIN };
static const char *const s_state_names[] = {"neutral", "pushed", "released", "pushedagain"};

/* One button: the seed tracks a state per (line, line_name). */
typedef struct {
    json_int_t line;
    char *line_name; /* NULL when the events carry none */
    int state;
    int64_t pushed_ns;   /* time of the last push */
    int64_t released_ns; /* time of the release that entered RELEASED */
} button_t;

typedef struct {
    lc_client_t *client;
    int64_t long_ns;   /* a push held longer than this is long; exactly this is still short */
    int64_t double_ns; /* a push within this after a short click's release makes a double */
    json_t *inversed;  /* line offsets whose edges are flipped: an array of integers */
    button_t *buttons;
    size_t n, cap;
} clicker_t;

static int64_t s_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double s_ms(int64_t ns)
{
    return (double)ns / 1e6;
}

/* A list of line offsets, or NULL with the reason in err. */
static json_t *s_offsets(json_t *list, char *err, size_t errlen)
{
    if (!json_is_array(list)) {
        snprintf(err, errlen, "must be a list of line offsets, e.g. [22]");
        return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            snprintf(err, errlen, "entry %zu is not a line offset (a number from 0): %s", i,
                     json_is_string(v) ? json_string_value(v) : "not a number");
            return NULL;
        }
    }
    return json_deep_copy(list);
}

/* Reads the settings: at start and again after SIGHUP (which drops what set_inversed_logic
 * changed since, as a reload drops every change that was not saved). */
static void s_configure(clicker_t *k)
{
    lc_client_t *c = k->client;
    long long long_ms = lc_config_int(c, "long_ms", 1000);
    long long double_ms = lc_config_int(c, "double_ms", 500);
    if (long_ms < 1 || double_ms < 1) {
        lc_log(c, LC_LOG_ERROR, "config: long_ms and double_ms must be at least 1 (they are %lld "
               "and %lld); using 1000 and 500", long_ms, double_ms);
        long_ms = 1000;
        double_ms = 500;
    }
    k->long_ns = long_ms * 1000000;
    k->double_ns = double_ms * 1000000;
    json_decref(k->inversed);
    k->inversed = NULL;
    json_t *list = lc_config_json(c, "inversed_logic");
    if (list) {
        char err[160];
        k->inversed = s_offsets(list, err, sizeof err);
        if (!k->inversed)
            lc_log(c, LC_LOG_ERROR, "config: inversed_logic %s; no line is inverted", err);
        json_decref(list);
    }
    if (!k->inversed)
        k->inversed = json_array();
}

static bool s_is_inversed(clicker_t *k, json_int_t line)
{
    size_t i;
    json_t *v;
    json_array_foreach(k->inversed, i, v)
    {
        if (json_integer_value(v) == line)
            return true;
    }
    return false;
}

static bool s_same_name(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The button of (line, line_name), created NEUTRAL at its first edge; NULL if out of memory. */
static button_t *s_button(clicker_t *k, json_int_t line, const char *name)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->buttons[i].line == line && s_same_name(k->buttons[i].line_name, name))
            return &k->buttons[i];
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 8;
        button_t *more = realloc(k->buttons, cap * sizeof *more);
        if (!more)
            return NULL;
        k->buttons = more;
        k->cap = cap;
    }
    button_t *b = &k->buttons[k->n];
    *b = (button_t){.line = line, .state = NEUTRAL};
    if (name && !(b->line_name = strdup(name)))
        return NULL;
    k->n++;
    return b;
}

/* Emits a click with the seed's keys (line, line_name, line_seq) and, beside them, what a
 * tracer wants to see: how long the button was held, when it was released, and for a
 * double click the pause between the clicks. Sent from inside the edge's handler, so the
 * click continues the edge's transaction. */
static void s_emit(clicker_t *k, const char *event, const button_t *b, json_t *edge,
                   int64_t now, int64_t gap_ns)
{
    json_t *line_seq = json_object_get(edge, "line_seq");
    json_t *args = json_pack("{s:I, s:s?, s:O?, s:f, s:I}", "line", b->line, "line_name",
                             b->line_name, "line_seq", line_seq ? line_seq : json_null(),
                             "hold_ms", s_ms(now - b->pushed_ns), "timestamp_ns",
                             (json_int_t)now);
    if (args && gap_ns >= 0)
        json_object_set_new(args, "gap_ms", json_real(s_ms(gap_ns)));
    if (!args) {
        lc_log(k->client, LC_LOG_ERROR, "%s on line %lld: out of memory, not sent", event,
               (long long)b->line);
        return;
    }
    lc_log(k->client, LC_LOG_INFO, "%s on line %lld (%s), held %.1f ms", event,
           (long long)b->line, b->line_name ? b->line_name : "unnamed", s_ms(now - b->pushed_ns));
    int rc = lc_emit(k->client, event, args, 0);
    if (rc < 0)
        lc_log(k->client, LC_LOG_ERROR, "%s on line %lld not sent: %s", event,
               (long long)b->line, lc_strerror(rc));
}

static void s_push(clicker_t *k, button_t *b, int64_t now)
{
    /* A short click's release waits at most double_ns for a second push; later, the next
     * push starts afresh. Exactly double_ns still counts as a double click. */
    if (b->state == RELEASED && now - b->released_ns > k->double_ns)
        b->state = NEUTRAL;
    if (b->state == NEUTRAL)
        b->state = PUSHED;
    else if (b->state == RELEASED)
        b->state = PUSHEDAGAIN;
    else
        lc_log(k->client, LC_LOG_WARNING, "line %lld (%s): pushed again without a release "
               "(state %s); the hold time starts anew", (long long)b->line,
               b->line_name ? b->line_name : "unnamed", s_state_names[b->state]);
    b->pushed_ns = now;
}

static void s_release(clicker_t *k, button_t *b, json_t *edge, int64_t now)
{
    int64_t hold = now - b->pushed_ns;
    /* A second push held long is a long push of its own, not a double click. */
    if (b->state == PUSHEDAGAIN && hold > k->long_ns)
        b->state = PUSHED;
    switch (b->state) {
    case PUSHED:
        if (hold <= k->long_ns) {
            s_emit(k, "pushed_short", b, edge, now, -1);
            b->state = RELEASED;
            b->released_ns = now;
        } else {
            s_emit(k, "pushed_long", b, edge, now, -1);
            b->state = NEUTRAL;
        }
        break;
    case PUSHEDAGAIN:
        s_emit(k, "doubleclick", b, edge, now, b->pushed_ns - b->released_ns);
        b->state = NEUTRAL;
        break;
    default:
        lc_log(k->client, LC_LOG_WARNING, "line %lld (%s): released without a push (state %s); "
               "ignored", (long long)b->line, b->line_name ? b->line_name : "unnamed",
               s_state_names[b->state]);
    }
}

/* changed_gpio_input: {line, line_name, line_seq, rising_edge, timestamp_ns}. */
static void s_on_input(lc_request_t *req, json_t *args, void *arg)
{
    clicker_t *k = arg;
    json_t *line = json_object_get(args, "line");
    json_t *rising = json_object_get(args, "rising_edge");
    if (!json_is_integer(line) || !json_is_boolean(rising)) {
        lc_log(k->client, LC_LOG_WARNING, "changed_gpio_input from %s without an integer "
               "\"line\" and a boolean \"rising_edge\": ignored", lc_request_source(req));
        return;
    }
    /* The edge's own time when the GPIO module gives it (the kernel's, or the simulated
     * chip's), so that the clicks do not depend on how fast the bus delivers; else now. */
    json_t *ts = json_object_get(args, "timestamp_ns");
    int64_t now = json_is_integer(ts) ? (int64_t)json_integer_value(ts) : s_mono_ns();
    json_int_t offset = json_integer_value(line);
    button_t *b = s_button(k, offset, json_string_value(json_object_get(args, "line_name")));
    if (!b) {
        lc_log(k->client, LC_LOG_ERROR, "line %lld: out of memory, edge ignored",
               (long long)offset);
        return;
    }
    /* With pull-up wiring a press pulls the line low: inverted, its falling edge is a push. */
    bool push = json_is_true(rising) != s_is_inversed(k, offset);
    if (push)
        s_push(k, b, now);
    else
        s_release(k, b, args, now);
}

/* set_inversed_logic(inversed_logic): the lines whose edges are flipped from now on; no
 * argument (or []) means none, as in the seed. Answers the list. */
static void s_set_inversed_logic(lc_request_t *req, json_t *args, void *arg)
{
    clicker_t *k = arg;
    json_t *list = json_object_get(args, "inversed_logic");
    char err[160];
    json_t *copy = list ? s_offsets(list, err, sizeof err) : json_array();
    if (!copy) {
        lc_reply_error(req, 22, "argument \"inversed_logic\" %s", err);
        return;
    }
    json_decref(k->inversed);
    k->inversed = copy;
    char *text = json_dumps(copy, JSON_COMPACT);
    lc_log(k->client, LC_LOG_INFO, "inversed logic on lines %s", text ? text : "?");
    free(text);
    lc_reply(req, json_pack("{s:O}", "inversed_logic", copy));
}

/* status: the settings and every button seen so far. */
static void s_status(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    clicker_t *k = arg;
    json_t *buttons = json_array();
    for (size_t i = 0; i < k->n; i++)
        json_array_append_new(buttons,
                              json_pack("{s:I, s:s?, s:s}", "line", k->buttons[i].line,
                                        "line_name", k->buttons[i].line_name, "state",
                                        s_state_names[k->buttons[i].state]));
    lc_reply(req, json_pack("{s:I, s:I, s:O, s:o}", "long_ms", (json_int_t)(k->long_ns / 1000000),
                            "double_ms", (json_int_t)(k->double_ns / 1000000), "inversed_logic",
                            k->inversed, "buttons", buttons));
}

static void s_on_reload(lc_client_t *c, void *arg)
{
    (void)c;
    s_configure(arg);
}

static void s_on_active(lc_client_t *c, void *arg)
{
    clicker_t *k = arg;
    char *text = json_dumps(k->inversed, JSON_COMPACT);
    lc_log(c, LC_LOG_INFO, "active: clicks from changed_gpio_input (long after %lld ms, double "
           "within %lld ms, inversed logic on %s)", (long long)(k->long_ns / 1000000),
           (long long)(k->double_ns / 1000000), text ? text : "?");
    free(text);
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-clickhandler [--name NAME] [--bus EP] [--config FILE] [--log-level L]\n"
            "Turns changed_gpio_input edges into the events pushed_short, pushed_long and\n"
            "doubleclick ({line, line_name, line_seq, hold_ms, timestamp_ns}).\n"
            "\n"
            "Settings (its config: section): long_ms (1000), double_ms (500),\n"
            "inversed_logic (a list of line offsets whose edges are flipped).\n"
            "Methods: set_inversed_logic inversed_logic=[22], status.\n"
            "\n"
            "  --name NAME       module name (default: $LC_MODULE, else clickhandler)\n"
            "  --bus EP          bus endpoint (default: $LC_BUS or the per-user socket)\n"
            "  --config FILE     system file (default: $LC_CONFIG)\n"
            "  --log-level L     critical, error, warning, info or debug (default: info)\n"
            "  -h, --help        show this help and exit\n"
            "  -V, --version     show the version and exit\n"
            "Stops on SIGTERM or SIGINT; SIGHUP reads the settings again. See "
            "lc-clickhandler(1).\n");
}

int main(int argc, char **argv)
{
    prog = "lc-clickhandler";
    lc_client_t *client = lc_module_new("clickhandler", &argc, argv);
    if (!client)
        return 2;
    int status = module_options(&client, argc, argv, s_usage);
    if (status >= 0)
        return status;

    clicker_t k = {.client = client};
    s_configure(&k);
    lc_on(client, "changed_gpio_input", s_on_input, &k);
    lc_method(client, "set_inversed_logic", s_set_inversed_logic, &k);
    lc_method_doc(client, "set_inversed_logic",
                  "flips the edges of these line offsets (none without the argument)",
                  "inversed_logic:array");
    lc_method(client, "status", s_status, &k);
    lc_method_doc(client, "status", "the settings and the state of every button seen", NULL);
    lc_hook(client, LC_HOOK_ACTIVE, s_on_active, &k);
    lc_hook(client, LC_HOOK_RELOAD, s_on_reload, &k);

    int rc = lc_run(client);
    if (rc < 0)
        fprintf(stderr, "lc-clickhandler: cannot serve as '%s' on %s: %s\n",
                lc_client_name(client), lc_client_endpoint(client), lc_strerror(rc));
    lc_client_destroy(&client);
    for (size_t i = 0; i < k.n; i++)
        free(k.buttons[i].line_name);
    free(k.buttons);
    json_decref(k.inversed);
    return rc < 0;
}
