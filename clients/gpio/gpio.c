/* lc-gpio: GPIO lines as a module of the bus (the seed's GPIO module, section 8 of its
 * reference). Inputs become `changed_gpio_input` events; outputs are set to off, on or one
 * of five blink rhythms by method. The chip is the real one (libgpiod 1.6) or a simulated
 * one; see gpio.h and docs/modules/gpio.md. Everything here runs on the loop thread. */
#include "gpio.h"
#include "../common.h"
#include "cfg.h" /* positions of configuration values, for errors */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EVENT_NAME "changed_gpio_input"
#define ARG_ERROR 22 /* the handler's code for a bad argument */

static const char *const s_state_names[GPIO_NSTATES] = {
    "off", "blink_veryslow", "blink_slow", "blink", "blink_fast", "blink_veryfast", "on"};

/* Half a period of each blink state: as long on as off (the seed's table). */
static const int s_half_ms[GPIO_NSTATES] = {0, 2000, 1600, 1200, 800, 400, 0};

/* One shared rhythm per blink state: every output in the state takes its value at each
 * toggle. Toggle k happens at t0 + k * half (k >= 1) and sets the value k % 2: rhythms
 * start at start-up in phase "off". Only a rhythm with outputs in its state has a timer. */
typedef struct {
    int timer;       /* 0: not armed */
    uint64_t next_k; /* the toggle the timer is for */
} rhythm_t;

typedef struct {
    lc_client_t *client;
    gpio_backend_t *backend;
    gpio_line_t *lines;
    size_t nlines;
    rhythm_t rhythms[GPIO_NSTATES];
    uint64_t t0_ns;
    bool outputs_started;
    bool stopped;
    bool failed; /* the chip failed while running: exit status 1 */
    /* configuration checking */
    cfg_node_t *cfg_root; /* the system file again, only for the positions of errors */
    bool cfg_tried;
    int cfg_errors;
} gpio_t;

static gpio_t G;

/* ---- Configuration -------------------------------------------------------------------- */

/* "file:line:col: " of the value (or of its key) at path of the module's section, or the
 * file alone, or "" without a system file. */
static const char *s_where(const char *path, bool key, char *buf, size_t size)
{
    const char *file = lc_config_file(G.client);
    if (!file)
        return "";
    if (!G.cfg_tried) {
        G.cfg_tried = true;
        cfg_error_t err;
        G.cfg_root = cfg_load(file, &err);
    }
    char full[512];
    snprintf(full, sizeof full, "modules.%s.config%s%s", lc_client_name(G.client), *path ? "." : "",
             path);
    cfg_node_t *n = G.cfg_root ? cfg_find(G.cfg_root, full, NULL) : NULL;
    if (n && (key ? n->key_line : n->line) > 0)
        snprintf(buf, size, "%s:%d:%d: ", file, key ? n->key_line : n->line,
                 key ? n->key_col : n->col);
    else
        snprintf(buf, size, "%s: ", file);
    return buf;
}

static void s_cfg_error(const char *path, bool key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_cfg_error(const char *path, bool key, const char *fmt, ...)
{
    char where[700], msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lc_log(G.client, LC_LOG_ERROR, "%sconfiguration of %s, '%s': %s",
           s_where(path, key, where, sizeof where), lc_client_name(G.client), path, msg);
    G.cfg_errors++;
}

/* A state by name (any case; "BLINK_SLOW" as the seed spells it) or by number; -1 if none. */
static int s_state_parse(const char *text)
{
    char *end;
    long n = strtol(text, &end, 10);
    if (*text && !*end)
        return n >= 0 && n < GPIO_NSTATES ? (int)n : -1;
    for (int i = 0; i < GPIO_NSTATES; i++)
        if (strcasecmp(text, s_state_names[i]) == 0)
            return i;
    return -1;
}

static const char *s_states_text(void)
{
    return "off, on, blink_veryslow, blink_slow, blink, blink_fast, blink_veryfast (or 0-6)";
}

/* A choice among words; returns its index or -1 after an error. */
static int s_choice(const char *path, const char *def, const char *const *words, int n)
{
    const char *v = lc_config_str(G.client, path, def);
    for (int i = 0; i < n; i++)
        if (strcasecmp(v, words[i]) == 0)
            return i;
    char list[200] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", words[i]);
    s_cfg_error(path, false, "'%s' is not one of %s", v, list);
    return -1;
}

static void s_check_keys(const char *path, json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool ok = false;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok) {
            char sub[300];
            snprintf(sub, sizeof sub, "%s.%s", path, k);
            char list[200] = "";
            for (int i = 0; allowed[i]; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                         allowed[i]);
            s_cfg_error(sub, true, "unknown setting '%s' (a line takes %s)", k, list);
        }
    }
}

static gpio_line_t *s_find_offset(unsigned offset)
{
    for (size_t i = 0; i < G.nlines; i++)
        if (G.lines[i].offset == offset)
            return &G.lines[i];
    return NULL;
}

static gpio_line_t *s_find_name(const char *name)
{
    for (size_t i = 0; i < G.nlines; i++)
        if (G.lines[i].name && strcmp(G.lines[i].name, name) == 0)
            return &G.lines[i];
    return NULL;
}

/* Reads one line's settings (path "inputs.22"); settings may be null for the defaults. */
static void s_line_config(const char *path, unsigned offset, bool output, json_t *settings)
{
    static const char *const in_keys[] = {"name",        "bias",       "edges",
                                          "debounce_ms", "active_low", NULL};
    static const char *const out_keys[] = {"name", "initial", "active_low", NULL};
    static const char *const biases[] = {"disabled", "pull-up", "pull-down"};
    static const char *const edges[] = {"", "rising", "falling", "both"};
    if (settings && !json_is_object(settings)) {
        s_cfg_error(path, false, "a line's settings are a map (or nothing, for the defaults)");
        return;
    }
    if (settings)
        s_check_keys(path, settings, output ? out_keys : in_keys);
    if (s_find_offset(offset)) {
        s_cfg_error(path, true, "line %u is configured twice (a line is an input or an output)",
                    offset);
        return;
    }
    gpio_line_t *l = &G.lines[G.nlines++];
    *l = (gpio_line_t){.offset = offset, .output = output, .fd = -1};
    char p[300];
    snprintf(p, sizeof p, "%s.name", path);
    const char *name = lc_config_str(G.client, p, NULL);
    if (name && *name) {
        if (s_find_name(name))
            s_cfg_error(p, false, "the name '%s' is given to two lines", name);
        l->name = strdup(name);
    }
    snprintf(p, sizeof p, "%s.active_low", path);
    l->active_low = lc_config_bool(G.client, p, false);
    if (output) {
        snprintf(p, sizeof p, "%s.initial", path);
        const char *initial = lc_config_str(G.client, p, "off");
        l->initial = s_state_parse(initial);
        if (l->initial < 0) {
            s_cfg_error(p, false, "'%s' is not a state: %s", initial, s_states_text());
            l->initial = GPIO_OFF;
        }
        return;
    }
    /* The seed's defaults for an input: pull-up, both edges, 10 ms debounce. */
    snprintf(p, sizeof p, "%s.bias", path);
    l->bias = s_choice(p, "pull-up", biases, 3);
    snprintf(p, sizeof p, "%s.edges", path);
    l->edges = s_choice(p, "both", edges + 1, 3) + 1;
    snprintf(p, sizeof p, "%s.debounce_ms", path);
    long long ms = lc_config_int(G.client, p, 10);
    if (ms < 0 || ms > 60000)
        s_cfg_error(p, false, "%lld is not a debounce time from 0 to 60000 ms", ms);
    else
        l->debounce_ms = (int)ms;
}

/* inputs: or outputs:, a map from offsets to settings, or a list of offsets (defaults). */
static void s_lines_config(const char *key, bool output)
{
    json_t *j = lc_config_json(G.client, key);
    if (!j || json_is_null(j)) {
        json_decref(j);
        return;
    }
    size_t n = json_is_object(j) ? json_object_size(j) : json_is_array(j) ? json_array_size(j) : 0;
    gpio_line_t *lines = realloc(G.lines, (G.nlines + n) * sizeof *lines);
    if (!lines && n)
        die(1, "out of memory");
    G.lines = lines;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            char path[300], *end;
            snprintf(path, sizeof path, "%s.%s", key, k);
            unsigned long off = strtoul(k, &end, 10);
            if (!isdigit((unsigned char)k[0]) || *end || off > 65535)
                s_cfg_error(path, true, "'%s' is not a line offset (a number from 0)", k);
            else
                s_line_config(path, (unsigned)off, output, json_is_null(v) ? NULL : v);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            char path[300];
            snprintf(path, sizeof path, "%s.%zu", key, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
                s_cfg_error(path, false, "a list of %s holds line offsets (numbers from 0)", key);
            else
                s_line_config(path, (unsigned)json_integer_value(v), output, NULL);
        }
    } else {
        s_cfg_error(key, false, "'%s' is a map from line offsets to their settings", key);
    }
    json_decref(j);
}

/* ---- Outputs -------------------------------------------------------------------------- */

const char *gpio_line_text(const gpio_line_t *line, char *buf, size_t size)
{
    if (line->name)
        snprintf(buf, size, "line %u (%s)", line->offset, line->name);
    else
        snprintf(buf, size, "line %u", line->offset);
    return buf;
}

static void s_write(gpio_line_t *line, int value)
{
    if (line->value == value)
        return;
    int rc = G.backend->set(G.backend, line, value);
    if (rc < 0) {
        char what[320];
        lc_log(G.client, LC_LOG_ERROR, "cannot set %s of chip %s to %d: %s",
               gpio_line_text(line, what, sizeof what), G.backend->chip, value, strerror(-rc));
        return;
    }
    line->value = value;
}

static size_t s_members(int state)
{
    size_t n = 0;
    for (size_t i = 0; i < G.nlines; i++)
        n += G.lines[i].output && G.lines[i].state == state;
    return n;
}

static void s_rhythm_fire(lc_client_t *c, int id, void *arg);

/* Arms the rhythm's timer for toggle k, or for the next one to come if k is past:
 * toggles are counted from the rhythm's start, so late wake-ups never add up to drift. */
static void s_rhythm_arm(int state, uint64_t k)
{
    rhythm_t *r = &G.rhythms[state];
    uint64_t half = (uint64_t)s_half_ms[state] * 1000000u, now = gpio_now_ns();
    uint64_t due = (now - G.t0_ns) / half + 1;
    if (k < due)
        k = due;
    uint64_t at = G.t0_ns + k * half;
    int ms = (int)((at - now + 999999) / 1000000);
    r->next_k = k;
    r->timer = lc_timer_add(G.client, ms, false, s_rhythm_fire, (void *)(intptr_t)state);
    if (r->timer < 0) {
        lc_log(G.client, LC_LOG_ERROR, "cannot start the %s rhythm: %s", s_state_names[state],
               lc_strerror(r->timer));
        r->timer = 0;
    }
}

static void s_rhythm_fire(lc_client_t *c, int id, void *arg)
{
    (void)c;
    (void)id;
    int state = (int)(intptr_t)arg;
    rhythm_t *r = &G.rhythms[state];
    r->timer = 0;
    int value = (int)(r->next_k & 1);
    for (size_t i = 0; i < G.nlines; i++)
        if (G.lines[i].output && G.lines[i].state == state)
            s_write(&G.lines[i], value);
    if (s_members(state))
        s_rhythm_arm(state, r->next_k + 1);
}

static void s_set_state(gpio_line_t *line, int state)
{
    if (line->state == state)
        return;
    int old = line->state;
    line->state = state;
    if (state == GPIO_OFF || state == GPIO_ON) {
        s_write(line, state == GPIO_ON);
    } else {
        s_write(line, !line->value); /* seen at once; the rhythm takes over at its next toggle */
        if (!G.rhythms[state].timer)
            s_rhythm_arm(state, 0);
    }
    rhythm_t *r = &G.rhythms[old];
    if (r->timer && !s_members(old)) {
        lc_timer_cancel(G.client, r->timer);
        r->timer = 0;
    }
    char what[320];
    lc_log(G.client, LC_LOG_INFO, "%s: %s", gpio_line_text(line, what, sizeof what),
           s_state_names[state]);
}

/* Everything off and quiet: at shut-down, and once more after the loop in any case. */
static void s_stop(void)
{
    if (G.stopped)
        return;
    G.stopped = true;
    for (size_t i = 0; i < G.nlines; i++) {
        gpio_line_t *l = &G.lines[i];
        if (l->output) {
            l->state = GPIO_OFF;
            s_write(l, 0);
        } else {
            if (l->debounce_timer)
                lc_timer_cancel(G.client, l->debounce_timer);
            l->debounce_timer = 0;
            if (l->fd >= 0)
                lc_unwatch_fd(G.client, l->fd); /* LC_EINVAL for a shared one seen already */
        }
    }
    for (int s = 0; s < GPIO_NSTATES; s++)
        if (G.rhythms[s].timer) {
            lc_timer_cancel(G.client, G.rhythms[s].timer);
            G.rhythms[s].timer = 0;
        }
}

/* ---- Inputs --------------------------------------------------------------------------- */

/* The level of an input has settled: an event if it changed, the edge is wanted and the
 * module may send (while it is not active, the level is followed but nothing is sent). */
static void s_settle(gpio_line_t *line, int level, uint64_t ts_ns)
{
    if (level == line->level)
        return; /* a bounce that came back */
    line->level = level;
    bool rising = level == 1;
    if (!(line->edges & (rising ? GPIO_EDGE_RISING : GPIO_EDGE_FALLING)))
        return;
    char what[320];
    gpio_line_text(line, what, sizeof what);
    if (lc_state(G.client) != LC_STATE_ACTIVE) {
        lc_log(G.client, LC_LOG_INFO, "%s: %s edge while the module is not active: no event", what,
               rising ? "rising" : "falling");
        return;
    }
    line->seq++;
    lc_log(G.client, LC_LOG_INFO, "%s: %s edge, sequence %lld", what, rising ? "rising" : "falling",
           (long long)line->seq);
    json_t *args =
        json_pack("{s:i, s:o, s:I, s:b, s:I}", "line", (int)line->offset, "line_name",
                  line->name ? json_string(line->name) : json_null(), "line_seq",
                  (json_int_t)line->seq, "rising_edge", rising, "timestamp_ns", (json_int_t)ts_ns);
    int rc = lc_emit(G.client, EVENT_NAME, args, 0);
    if (rc < 0)
        lc_log(G.client, LC_LOG_ERROR, "%s: cannot emit %s: %s", what, EVENT_NAME, lc_strerror(rc));
}

static void s_debounced(lc_client_t *c, int id, void *arg)
{
    (void)c;
    (void)id;
    gpio_line_t *line = arg;
    line->debounce_timer = 0;
    int level = G.backend->get(G.backend, line);
    if (level < 0) {
        char what[320];
        lc_log(G.client, LC_LOG_ERROR, "cannot read %s of chip %s: %s",
               gpio_line_text(line, what, sizeof what), G.backend->chip, strerror(-level));
        return;
    }
    s_settle(line, level, line->last_edge_ns);
}

/* Every edge of a chip comes here. Without debounce it settles at once; with it, each edge
 * restarts the wait, and the level is read when it has been stable for debounce_ms. */
static void s_on_edge(gpio_line_t *line, bool rising, uint64_t ts_ns, void *arg)
{
    (void)arg;
    if (G.stopped)
        return;
    if (line->debounce_ms == 0) {
        s_settle(line, rising, ts_ns);
        return;
    }
    line->last_edge_ns = ts_ns;
    if (line->debounce_timer)
        lc_timer_cancel(G.client, line->debounce_timer);
    uint64_t span = (uint64_t)line->debounce_ms * 1000000u, now = gpio_now_ns();
    uint64_t left = ts_ns + span > now ? ts_ns + span - now : 0;
    if (left > span)
        left = span; /* an edge stamped by another clock waits the whole time */
    line->debounce_timer =
        lc_timer_add(G.client, (int)((left + 999999) / 1000000), false, s_debounced, line);
    if (line->debounce_timer < 0) {
        line->debounce_timer = 0;
        s_debounced(G.client, 0, line);
    }
}

/* A descriptor that fails would be readable forever: the module stops, switching its
 * outputs off, and exits with status 1 so that the launcher restarts it by its policy. */
static void s_readable(lc_client_t *c, int fd, void *arg)
{
    (void)arg;
    int rc = G.backend->read_edges(G.backend, fd, s_on_edge, NULL);
    if (rc < 0) {
        lc_log(c, LC_LOG_CRITICAL, "cannot read the edges of chip %s: %s; stopping",
               G.backend->chip, strerror(-rc));
        lc_unwatch_fd(c, fd);
        G.failed = true;
        lc_stop(c);
    }
}

/* ---- Methods -------------------------------------------------------------------------- */

/* The line a method names by offset or by name, or NULL after answering the error. */
static gpio_line_t *s_line_arg(lc_request_t *req, json_t *args, bool output)
{
    json_t *v = json_object_get(args, "line");
    gpio_line_t *line = NULL;
    if (json_is_integer(v)) {
        json_int_t off = json_integer_value(v);
        line = off >= 0 && off <= 65535 ? s_find_offset((unsigned)off) : NULL;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        line = s_find_name(s);
        char *end;
        unsigned long off = strtoul(s, &end, 10);
        if (!line && isdigit((unsigned char)s[0]) && !*end && off <= 65535)
            line = s_find_offset((unsigned)off); /* "17" from a form or a shell */
        else if (!line) {
            lc_reply_error(req, ARG_ERROR, "line name unknown");
            return NULL;
        }
    } else {
        lc_reply_error(req, ARG_ERROR, "argument \"line\" is required: a line offset or name");
        return NULL;
    }
    if (!line || line->output != output) {
        lc_reply_error(req, ARG_ERROR,
                       output ? "output line not handled" : "input line not handled");
        return NULL;
    }
    return line;
}

static void s_get_output_state(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    gpio_line_t *line = s_line_arg(req, args, true);
    if (line)
        lc_reply(req, json_integer(line->state));
}

static void s_set_output_state(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    gpio_line_t *line = s_line_arg(req, args, true);
    if (!line)
        return;
    json_t *v = json_object_get(args, "state_new");
    int state = -1;
    char text[64] = "";
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        state = n >= 0 && n < GPIO_NSTATES ? (int)n : -1;
        snprintf(text, sizeof text, "%lld", (long long)n);
    } else if (json_is_string(v)) {
        state = s_state_parse(json_string_value(v));
        snprintf(text, sizeof text, "%s", json_string_value(v));
    } else {
        lc_reply_error(req, ARG_ERROR, "argument \"state_new\" is required: %s", s_states_text());
        return;
    }
    if (state < 0) {
        lc_reply_error(req, ARG_ERROR, "unknown state '%s': %s", text, s_states_text());
        return;
    }
    if (!G.stopped)
        s_set_state(line, state);
    lc_reply(req, NULL);
}

static void s_toggle_output_state(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    gpio_line_t *line = s_line_arg(req, args, true);
    if (!line)
        return;
    if (!G.stopped)
        s_set_state(line, line->state == GPIO_OFF ? GPIO_ON : GPIO_OFF);
    lc_reply(req, NULL);
}

static void s_get_input(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    gpio_line_t *line = s_line_arg(req, args, false);
    if (!line)
        return;
    int level = G.backend->get(G.backend, line);
    if (level < 0)
        lc_reply_error(req, -level, "cannot read line %u of chip %s: %s", line->offset,
                       G.backend->chip, strerror(-level));
    else
        lc_reply(req, json_integer(level));
}

/* Every configured line and where it stands now: for a dashboard, or a person. */
static void s_get_lines(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    json_t *list = json_array();
    for (size_t i = 0; i < G.nlines; i++) {
        gpio_line_t *l = &G.lines[i];
        json_t *o = json_pack("{s:i, s:o, s:s, s:b}", "line", (int)l->offset, "line_name",
                              l->name ? json_string(l->name) : json_null(), "direction",
                              l->output ? "output" : "input", "active_low", l->active_low);
        if (l->output) {
            json_object_set_new(o, "state", json_integer(l->state));
            json_object_set_new(o, "state_name", json_string(s_state_names[l->state]));
            json_object_set_new(o, "value", json_integer(l->value));
        } else {
            int level = G.backend->get(G.backend, l);
            json_object_set_new(o, "value", level < 0 ? json_null() : json_integer(level));
            json_object_set_new(o, "line_seq", json_integer(l->seq));
        }
        json_array_append_new(list, o);
    }
    lc_reply(req, list);
}

static void s_sim_output_log(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    lc_reply(req, gpio_sim_log(G.backend, json_is_true(json_object_get(args, "clear"))));
}

static void s_sim_set_input(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    gpio_line_t *line = s_line_arg(req, args, false);
    if (!line)
        return;
    json_t *v = json_object_get(args, "value");
    int value = json_is_boolean(v) ? json_is_true(v)
                : json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)
                    ? (int)json_integer_value(v)
                    : -1;
    if (value < 0) {
        lc_reply_error(req, ARG_ERROR,
                       "argument \"value\" is required: 0 or 1 (the level on "
                       "the pin, before active-low)");
        return;
    }
    char err[300];
    if (gpio_sim_drive(G.backend, line, value, err, sizeof err) < 0)
        lc_reply_error(req, ARG_ERROR, "%s", err);
    else
        lc_reply(req, NULL);
}

/* ---- Lifecycle ------------------------------------------------------------------------ */

/* Outputs start when the module becomes passive, as in the seed: rhythms begin now. */
static void s_on_passive(lc_client_t *c, void *arg)
{
    (void)c;
    (void)arg;
    if (G.outputs_started)
        return;
    G.outputs_started = true;
    G.t0_ns = gpio_now_ns();
    for (size_t i = 0; i < G.nlines; i++)
        if (G.lines[i].output)
            s_set_state(&G.lines[i], G.lines[i].initial);
}

static void s_on_active(lc_client_t *c, void *arg)
{
    (void)arg;
    size_t in = 0;
    for (size_t i = 0; i < G.nlines; i++)
        in += !G.lines[i].output;
    lc_log(c, LC_LOG_INFO, "active: %zu inputs, %zu outputs on chip %s (backend %s)", in,
           G.nlines - in, G.backend->chip, G.backend->kind);
}

static void s_on_shutdown(lc_client_t *c, void *arg)
{
    (void)c;
    (void)arg;
    s_stop();
}

static void s_on_reload(lc_client_t *c, void *arg)
{
    (void)arg;
    lc_log(c, LC_LOG_WARNING,
           "the configuration was read again; lc-gpio takes changes of its "
           "chip and lines at its next start");
}

/* ---- Main ----------------------------------------------------------------------------- */

static void s_usage(FILE *out)
{
    fprintf(out, "Usage: lc-gpio [--name NAME] [--bus EP] [--config FILE] [--log-level LEVEL]\n"
                 "               [--simulate]\n"
                 "GPIO lines as a module of the lc bus: input edges become changed_gpio_input\n"
                 "events; outputs are switched off, on or blinking by method. The chip and the\n"
                 "lines come from the module's section of the system file (see lc-gpio(1)).\n"
                 "Methods: get_input, get_output_state, set_output_state, toggle_output_state,\n"
                 "get_lines; "
                 "with 'backend: sim' also sim_set_input and sim_output_log.\n"
                 "\n"
                 "  --name NAME       module name (default: $LC_MODULE, else gpio)\n"
                 "  --bus EP          bus endpoint (default: $LC_BUS or the per-user socket)\n"
                 "  --config FILE     system file (default: $LC_CONFIG)\n"
                 "  --log-level L     critical, error, warning, info or debug (default: info)\n"
                 "  -s, --simulate    use the simulated chip, whatever 'backend' says\n"
                 "  -h, --help        show this help and exit\n"
                 "  -V, --version     show the version and exit\n"
                 "Stops on SIGTERM or SIGINT, switching every output off. Exit status: 0 after a\n"
                 "stop, 1 when the chip or a line cannot be used or the bus fails, 2 for a wrong\n"
                 "command line or configuration.\n");
}

static void s_free(void)
{
    if (G.backend)
        G.backend->destroy(&G.backend);
    for (size_t i = 0; i < G.nlines; i++)
        free(G.lines[i].name);
    free(G.lines);
    G.lines = NULL;
    G.nlines = 0;
    cfg_free(&G.cfg_root);
    lc_client_destroy(&G.client);
}

static void s_declare(void)
{
    lc_client_t *c = G.client;
    lc_method(c, "get_output_state", s_get_output_state, NULL);
    lc_method_doc(c, "get_output_state", "an output's state (0 off .. 6 on)", "line:any");
    lc_method(c, "set_output_state", s_set_output_state, NULL);
    lc_method_doc(c, "set_output_state",
                  "sets an output to off, on or a blink state (a name or the seed's number)",
                  "line:any state_new:any");
    lc_method(c, "toggle_output_state", s_toggle_output_state, NULL);
    lc_method_doc(c, "toggle_output_state", "off becomes on, any other state off", "line:any");
    lc_method(c, "get_lines", s_get_lines, NULL);
    lc_method_doc(c, "get_lines", "every line: offset, name, direction, state or level", NULL);
    lc_method(c, "get_input", s_get_input, NULL);
    lc_method_doc(c, "get_input", "an input's level now (1 active)", "line:any");
    if (strcmp(G.backend->kind, "sim") == 0) {
        lc_method(c, "sim_output_log", s_sim_output_log, NULL);
        lc_method_doc(c, "sim_output_log", "the simulated chip's output transitions, oldest first",
                      "clear:boolean");
        lc_method(c, "sim_set_input", s_sim_set_input, NULL);
        lc_method_doc(c, "sim_set_input", "sets the level on a simulated input's pin",
                      "line:any value:any");
    }
    lc_hook(c, LC_HOOK_PASSIVE, s_on_passive, NULL);
    lc_hook(c, LC_HOOK_ACTIVE, s_on_active, NULL);
    lc_hook(c, LC_HOOK_SHUTDOWN, s_on_shutdown, NULL);
    lc_hook(c, LC_HOOK_RELOAD, s_on_reload, NULL);
}

/* Reads the configuration and opens the chip; on failure says why and returns the exit
 * status (2: configuration, 1: hardware). */
static int s_setup(bool simulate)
{
    static const char *const top_keys[] = {"backend",      "chip",        "inputs", "outputs",
                                           "sim_log_file", "sim_log_max", NULL};
    lc_client_t *c = G.client;
    json_t *section = lc_config_json(c, "");
    if (json_is_object(section)) {
        const char *k;
        json_t *v;
        json_object_foreach(section, k, v)
        {
            bool ok = false;
            for (int i = 0; top_keys[i] && !ok; i++)
                ok = strcmp(k, top_keys[i]) == 0;
            if (!ok)
                s_cfg_error(k, true,
                            "unknown setting (lc-gpio takes backend, chip, inputs, "
                            "outputs, sim_log_file, sim_log_max)");
        }
    }
    json_decref(section);
    static const char *const backends[] = {"gpiod", "sim"};
    int backend = s_choice("backend", "gpiod", backends, 2);
    if (simulate)
        backend = 1;
    const char *chip = lc_config_str(c, "chip", "gpiochip0");
    long long log_max = lc_config_int(c, "sim_log_max", 10000);
    if (log_max < 1 || log_max > 10000000)
        s_cfg_error("sim_log_max", false, "%lld is not a number of entries from 1 to 10000000",
                    log_max);
    char *log_file = NULL;
    const char *lf = lc_config_path(c, "sim_log_file", NULL);
    if (lf && *lf)
        log_file = strdup(lf);
    s_lines_config("inputs", false);
    s_lines_config("outputs", true);
    if (G.cfg_errors || lc_config_errors(c)) {
        lc_log(c, LC_LOG_ERROR, "the configuration of %s has %d error(s), above: not started",
               lc_client_name(c), G.cfg_errors + lc_config_errors(c));
        free(log_file);
        return 2;
    }
    char err[1024];
    if (backend == 1) {
        G.backend = gpio_sim_new(log_file, (size_t)log_max, err, sizeof err);
    } else {
        G.backend = gpio_gpiod_new();
        snprintf(err, sizeof err, "out of memory");
    }
    free(log_file);
    if (!G.backend || G.backend->open(G.backend, chip, err, sizeof err) < 0) {
        lc_log(c, LC_LOG_ERROR, "%s", err);
        return 1;
    }
    for (size_t i = 0; i < G.nlines; i++) {
        gpio_line_t *l = &G.lines[i];
        if (G.backend->request(G.backend, l, err, sizeof err) < 0) {
            lc_log(c, LC_LOG_ERROR, "%s", err);
            return 1;
        }
        if (l->output)
            continue;
        int level = G.backend->get(G.backend, l);
        l->level = level > 0;
        int rc = lc_watch_fd(c, l->fd, s_readable, NULL);
        if (rc < 0) {
            lc_log(c, LC_LOG_ERROR, "cannot watch the edges of line %u: %s", l->offset,
                   lc_strerror(rc));
            return 1;
        }
    }
    lc_log(c, LC_LOG_INFO, "chip %s (backend %s): %zu lines", G.backend->chip, G.backend->kind,
           G.nlines);
    return 0;
}

int main(int argc, char **argv)
{
    prog = "lc-gpio";
    G.client = lc_module_new("gpio", &argc, argv);
    if (!G.client)
        return 2;
    static const struct option longopts[] = {
        {"simulate", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    bool simulate = false;
    while ((opt = getopt_long(argc, argv, "shV", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            simulate = true;
            break;
        case 'h':
            s_usage(stdout);
            s_free();
            return 0;
        case 'V':
            printf("lc-gpio %s\n", LC_VERSION);
            s_free();
            return 0;
        default:
            fprintf(stderr, "Try 'lc-gpio --help'.\n");
            s_free();
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lc-gpio: unexpected argument '%s'\nTry 'lc-gpio --help'.\n", argv[optind]);
        s_free();
        return 2;
    }
    int status = s_setup(simulate);
    if (status) {
        s_free();
        return status;
    }
    s_declare();
    /* SIGTERM or SIGINT shut the module down through liblc (the shutdown hook switches the
     * outputs off); lc_run then returns 0. */
    int rc = lc_run(G.client);
    s_stop();
    if (G.failed)
        status = 1;
    if (rc < 0) {
        fprintf(stderr, "lc-gpio: cannot serve as '%s' on %s: %s\n", lc_client_name(G.client),
                lc_client_endpoint(G.client), lc_strerror(rc));
        status = 1;
    }
    s_free();
    return status;
}
