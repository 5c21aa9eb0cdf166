/* lc-controller: the Python package's controller example. It logs every input event (the
 * GPIO module's edges and the clickhandler's clicks), and drives the demo's outputs through
 * tasks to the GPIO module:
 *  - webpage_trigger: in a new transaction, line 4 on, line 17 through every state from off
 *    to blink_fast and back to off, line 27 toggled (the seed's modify_output_states);
 *  - pushed_short on line 22: line 27 toggled, in the click's transaction (a mapping the
 *    seed did not have, so that the demo reacts to its button). */
#include "../common.h"
#include "lc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    lc_client_t *client;
    char *gpio;            /* the GPIO module's name */
    json_int_t button;     /* a pushed_short on this line ... */
    json_int_t toggled;    /* ... toggles this output */
} controller_t;

/* Line 17's steps, as the seed's modify_output_states set them. */
static const char *const s_steps[] = {"off", "on", "blink_veryslow", "blink_slow",
                                      "blink", "blink_fast", "off"};

static const char *s_name_of(json_t *args)
{
    const char *name = json_string_value(json_object_get(args, "line_name"));
    return name ? name : "unnamed";
}

/* Queues a task for the GPIO module. Called from handlers only, so the task continues the
 * handled message's transaction. A refusal by the broker arrives at s_on_notice. */
static void s_gpio_task(controller_t *k, const char *method, json_t *args)
{
    char target[160];
    snprintf(target, sizeof target, "%s.%s", k->gpio, method);
    int rc = lc_enqueue(k->client, target, args, 0);
    if (rc < 0)
        lc_log(k->client, LC_LOG_ERROR, "task %s not sent: %s", target, lc_strerror(rc));
}

static void s_set(controller_t *k, int line, const char *state)
{
    s_gpio_task(k, "set_output_state", json_pack("{s:i, s:s}", "line", line, "state_new", state));
}

static void s_toggle(controller_t *k, json_int_t line)
{
    s_gpio_task(k, "toggle_output_state", json_pack("{s:I}", "line", line));
}

/* changed_gpio_input: {line, line_name, line_seq, rising_edge, timestamp_ns}. */
static void s_on_input(lc_request_t *req, json_t *args, void *arg)
{
    controller_t *k = arg;
    lc_log(k->client, LC_LOG_INFO, "input line %" JSON_INTEGER_FORMAT " (%s) seq %"
           JSON_INTEGER_FORMAT ": %s edge, tx %" PRIu64,
           json_integer_value(json_object_get(args, "line")), s_name_of(args),
           json_integer_value(json_object_get(args, "line_seq")),
           json_is_true(json_object_get(args, "rising_edge")) ? "rising" : "falling",
           lc_request_tx(req));
}

/* pushed_short, pushed_long, doubleclick: {line, line_name, line_seq, hold_ms, ...}. */
static void s_on_click(lc_request_t *req, json_t *args, void *arg)
{
    controller_t *k = arg;
    const char *event = lc_request_method(req);
    json_int_t line = json_integer_value(json_object_get(args, "line"));
    lc_log(k->client, LC_LOG_INFO, "%s on line %" JSON_INTEGER_FORMAT " (%s), tx %" PRIu64,
           event, line, s_name_of(args), lc_request_tx(req));
    if (strcmp(event, "pushed_short") == 0 && line == k->button) {
        lc_log(k->client, LC_LOG_INFO, "toggling line %" JSON_INTEGER_FORMAT ", tx %" PRIu64,
               k->toggled, lc_request_tx(req));
        s_toggle(k, k->toggled);
    }
}

/* webpage_trigger: the seed enqueued the GPIO module's modify_output_states. Here the
 * controller enqueues its own modify_output_states in a NEW transaction (the output changes
 * are work of their own, not part of the web request), and that task's handler sends the
 * GPIO tasks, which then all share that one new transaction. */
static void s_on_webpage_trigger(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    controller_t *k = arg;
    lc_log(k->client, LC_LOG_INFO, "webpage_trigger from %s, tx %" PRIu64 ": the outputs "
           "change in a new transaction", lc_request_source(req), lc_request_tx(req));
    int rc = lc_enqueue(k->client, "modify_output_states", NULL, LC_NEW_TX);
    if (rc < 0)
        lc_log(k->client, LC_LOG_ERROR, "task modify_output_states not sent: %s",
               lc_strerror(rc));
}

/* modify_output_states: the demo's output changes, queued in order on the GPIO module (its
 * queue is first-in first-out, so line 17 passes through every step and ends off). */
static void s_modify_output_states(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    controller_t *k = arg;
    lc_log(k->client, LC_LOG_INFO, "modify_output_states, tx %" PRIu64 ": line 4 on, line 17 "
           "off, on, blink_veryslow, blink_slow, blink, blink_fast, off; line 27 toggled",
           lc_request_tx(req));
    s_set(k, 4, "on");
    for (size_t i = 0; i < sizeof s_steps / sizeof s_steps[0]; i++)
        s_set(k, 17, s_steps[i]);
    s_toggle(k, 27);
}

/* A task the broker refused (no GPIO module on the bus, an unknown method, a full queue). */
static void s_on_notice(lc_client_t *c, int rc, const char *target, json_t *info, void *arg)
{
    controller_t *k = arg;
    const char *msg = json_string_value(json_object_get(info, "message"));
    lc_log(c, LC_LOG_ERROR, "task %s refused: %s (%s); is the module '%s' running?", target,
           lc_strerror(rc), msg ? msg : "no details", k->gpio);
}

static void s_on_active(lc_client_t *c, void *arg)
{
    controller_t *k = arg;
    lc_log(c, LC_LOG_INFO, "active: outputs through '%s'; pushed_short on line %"
           JSON_INTEGER_FORMAT " toggles line %" JSON_INTEGER_FORMAT, k->gpio, k->button,
           k->toggled);
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-controller [--name NAME] [--bus EP] [--config FILE] [--log-level L]\n"
            "The controller example: logs changed_gpio_input, pushed_short, pushed_long and\n"
            "doubleclick; on webpage_trigger changes the demo's outputs (line 4 on, line 17\n"
            "through its blink states, line 27 toggled) in a new transaction; a pushed_short\n"
            "on line 22 toggles line 27.\n"
            "\n"
            "Settings (its config: section): gpio (the GPIO module's name, gpio),\n"
            "button_line (22), toggle_line (27).\n"
            "Methods: modify_output_states.\n"
            "\n"
            "  --name NAME       module name (default: $LC_MODULE, else controller)\n"
            "  --bus EP          bus endpoint (default: $LC_BUS or the per-user socket)\n"
            "  --config FILE     system file (default: $LC_CONFIG)\n"
            "  --log-level L     critical, error, warning, info or debug (default: info)\n"
            "  -h, --help        show this help and exit\n"
            "  -V, --version     show the version and exit\n"
            "Stops on SIGTERM or SIGINT. See lc-controller(1).\n");
}

int main(int argc, char **argv)
{
    prog = "lc-controller";
    lc_client_t *client = lc_module_new("controller", &argc, argv);
    if (!client)
        return 2;
    int status = module_options(&client, argc, argv, s_usage);
    if (status >= 0)
        return status;

    /* Read once, at start. The name is copied: configuration strings are only borrowed until
     * the next load, and SIGHUP loads the file again. */
    controller_t k = {
        .client = client,
        .gpio = strdup(lc_config_str(client, "gpio", "gpio")),
        .button = lc_config_int(client, "button_line", 22),
        .toggled = lc_config_int(client, "toggle_line", 27),
    };
    lc_on(client, "changed_gpio_input", s_on_input, &k);
    lc_on(client, "pushed_short", s_on_click, &k);
    lc_on(client, "pushed_long", s_on_click, &k);
    lc_on(client, "doubleclick", s_on_click, &k);
    lc_on(client, "webpage_trigger", s_on_webpage_trigger, &k);
    lc_method(client, "modify_output_states", s_modify_output_states, &k);
    lc_method_doc(client, "modify_output_states",
                  "line 4 on, line 17 through its states to off, line 27 toggled", NULL);
    lc_on_notice(client, s_on_notice, &k);
    lc_hook(client, LC_HOOK_ACTIVE, s_on_active, &k);
    if (!k.gpio)
        die(1, "out of memory");

    int rc = lc_run(client);
    if (rc < 0)
        fprintf(stderr, "lc-controller: cannot serve as '%s' on %s: %s\n", lc_client_name(client),
                lc_client_endpoint(client), lc_strerror(rc));
    lc_client_destroy(&client);
    free(k.gpio);
    return rc < 0;
}
