/* lc-broker: the bus states of modules (decision 7: the broker owns them) — activation,
 * with or without a launcher's list of expected modules — and the exit sequence
 * (decision 11). */
#include "broker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *broker_state_name(int state)
{
    const char *n = lc_state_name(state);
    return n[0] ? n : "unknown";
}

int broker_state_parse(const char *name)
{
    return lc_state_parse(name);
}

static void s_command(broker_t *self, module_t *m, const char *cmd)
{
    if (!m->main)
        return;
    lc_hdr_t h = {.type = LC_MSG_STATE, .id = broker_next_id(self), .time_us = lc_now_us()};
    broker_send_json(self, m->main, &h, cmd, NULL);
}

void broker_set_state(broker_t *self, module_t *m, int state)
{
    if (m->state == state)
        return;
    m->state = state;
    if (!m->tool)
        broker_emit(self, "module_state",
                    json_pack("{s:s, s:s}", "module", m->name, "state", broker_state_name(state)));
    broker_pump(self, m); /* a passive module may receive */
    broker_waiters_check(self);
}

static bool s_expected(broker_t *self, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(self->expected, i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            return true;
    }
    return false;
}

/* Activates passive modules: at once with a bare broker, or together once every expected
 * module is passive (or the start timeout passed). Nothing is activated while exiting. */
void broker_activate_check(broker_t *self, module_t *joined)
{
    if (self->exit_phase != EXIT_NONE)
        return;
    if (!self->expected) {
        if (joined && joined->state == MS_PASSIVE)
            s_command(self, joined, "activate");
        return;
    }
    size_t i;
    json_t *v;
    bool all = true;
    json_array_foreach(self->expected, i, v)
    {
        const char *n = json_string_value(v);
        module_t *m = broker_module_find(self, n, strlen(n));
        all = all && m && (m->state == MS_PASSIVE || m->state == MS_ACTIVE);
    }
    bool late = lc_mono_ms() >= self->expect_deadline;
    if (!all && !late) {
        /* A module that is not on the list joins whenever it is ready. */
        if (joined && joined->state == MS_PASSIVE && !s_expected(self, joined->name))
            s_command(self, joined, "activate");
        return;
    }
    if (!all) {
        char missing[512] = "";
        json_array_foreach(self->expected, i, v)
        {
            const char *n = json_string_value(v);
            module_t *m = broker_module_find(self, n, strlen(n));
            if (!m || (m->state != MS_PASSIVE && m->state != MS_ACTIVE))
                snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                         missing[0] ? ", " : "", n);
        }
        broker_log(self, L_WARNING, "start timeout: activating without %s", missing);
    }
    /* From now on every module, expected or late, is activated as soon as it is passive. */
    json_decref(self->expected);
    self->expected = NULL;
    for (size_t k = 0; k < self->modules.cap; k++)
        for (module_t *m = self->modules.values[k]; m; m = m->next_hash)
            if (m->state == MS_PASSIVE)
                s_command(self, m, "activate");
}

void broker_expect(broker_t *self, json_t *modules, int timeout_ms)
{
    json_decref(self->expected);
    self->expected = json_incref(modules);
    json_decref(self->stop_order);
    self->stop_order = json_incref(modules);
    self->expect_deadline = lc_mono_ms() + (timeout_ms > 0 ? timeout_ms : self->cfg.start_timeout_ms);
    broker_activate_check(self, NULL);
}

void broker_on_state(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    module_t *m = c->module;
    char name[16] = "";
    size_t n = zmq_msg_size(&f[2]);
    if (n < sizeof name)
        memcpy(name, zmq_msg_data(&f[2]), n);
    int state = broker_state_parse(name);
    if (!c->is_main || m->tool || !state) {
        self->stats.malformed++;
        broker_error(self, c, h, 0, LC_STATUS_MALFORMED,
                     "STATE must come from a module's main connection and name inactive, "
                     "passive or active");
        return;
    }
    int prev = m->state;
    broker_set_state(self, m, state);
    /* A module that starts is activated; one that deactivated itself stays passive. */
    if (state == MS_PASSIVE && prev == MS_INACTIVE)
        broker_activate_check(self, m);
}

/* ---- Exit ----------------------------------------------------------------------------- */

void broker_exit_start(broker_t *self, const char *why, bool emit)
{
    if (self->exit_phase != EXIT_NONE)
        return;
    int64_t now = lc_mono_ms();
    broker_log(self, L_INFO, "exit sequence: %s", why);
    self->exit_phase = EXIT_DRAIN;
    self->drain_deadline = now + self->cfg.drain_ms;
    self->exit_deadline = now + self->cfg.exit_ms;
    if (emit)
        broker_emit(self, "exit", json_pack("{s:s}", "reason", why));
    for (size_t k = 0; k < self->modules.cap; k++)
        for (module_t *m = self->modules.values[k]; m; m = m->next_hash)
            if (m->state == MS_ACTIVE && !m->tool)
                s_command(self, m, "deactivate");
}

static bool s_any_active(broker_t *self)
{
    for (size_t k = 0; k < self->modules.cap; k++)
        for (module_t *m = self->modules.values[k]; m; m = m->next_hash)
            if (!m->tool && m->main && m->state == MS_ACTIVE)
                return true;
    return false;
}

/* The next module to shut down: the latest registered that is still there. */
static module_t *s_next_to_stop(broker_t *self)
{
    /* The launcher's order (its dependency order) goes first, backwards... */
    for (size_t i = json_array_size(self->stop_order); i-- > 0;) {
        const char *n = json_string_value(json_array_get(self->stop_order, i));
        module_t *m = n ? broker_module_find(self, n, strlen(n)) : NULL;
        if (m && !m->tool && m->main && !m->shutdown_asked)
            return m;
    }
    /* ...then the others, the latest registered first. */
    module_t *best = NULL;
    for (size_t k = 0; k < self->modules.cap; k++)
        for (module_t *m = self->modules.values[k]; m; m = m->next_hash)
            if (!m->tool && m->main && !m->shutdown_asked &&
                (!best || m->order > best->order))
                best = m;
    return best;
}

static bool s_tools_busy(broker_t *self)
{
    for (size_t k = 0; k < self->modules.cap; k++)
        for (module_t *m = self->modules.values[k]; m; m = m->next_hash)
            if (m->tool && m->main && (m->inflight.count || m->queue.count))
                return true;
    return false;
}

static size_t s_named_connected(broker_t *self, char *names, size_t size)
{
    size_t n = 0;
    if (size)
        names[0] = 0;
    for (size_t k = 0; k < self->modules.cap; k++)
        for (module_t *m = self->modules.values[k]; m; m = m->next_hash)
            if (!m->tool && m->main) {
                n++;
                size_t len = strlen(names);
                snprintf(names + len, size - len, "%s%s", len ? ", " : "", m->name);
            }
    return n;
}

void broker_exit_step(broker_t *self, int64_t now)
{
    if (self->exit_phase == EXIT_NONE)
        return;
    char names[512];
    if (now >= self->exit_deadline) {
        if (s_named_connected(self, names, sizeof names))
            broker_log(self, L_WARNING, "exit timeout: still connected: %s", names);
        self->exit_now = true;
        return;
    }
    if (self->exit_phase == EXIT_DRAIN) {
        /* Every module deactivated and the queue drained, before any shutdown. */
        if ((self->work > 0 || s_any_active(self)) && now < self->drain_deadline)
            return;
        if (now >= self->drain_deadline)
            broker_log(self, L_WARNING, "drain timeout: %zu items of work left, %s",
                       self->work, s_any_active(self) ? "a module still active" : "no module active");
        if (self->work > 0) {
            broker_log(self, L_WARNING, "drain timeout: %zu queued items discarded (%zu items "
                       "of work were left, queued or in flight)", self->queued, self->work);
            for (size_t k = 0; k < self->modules.cap; k++)
                for (module_t *m = self->modules.values[k]; m; m = m->next_hash)
                    broker_queue_discard(self, m);
        }
        self->exit_phase = EXIT_SHUTDOWN;
        self->exit_current[0] = 0;
    }
    if (self->exit_phase == EXIT_SHUTDOWN) {
        /* One at a time, in reverse start order: wait for the current one to finish. */
        module_t *cur = self->exit_current[0]
                            ? broker_module_find(self, self->exit_current, strlen(self->exit_current))
                            : NULL;
        /* One module at a time, each for at most the stop timeout. */
        if (cur && cur->main && cur->state != MS_INACTIVE && now < self->exit_current_deadline)
            return;
        if (cur && cur->main && cur->state != MS_INACTIVE)
            broker_log(self, L_WARNING, "module %s did not shut down within %d ms; going on",
                       cur->name, self->cfg.stop_ms);
        module_t *next = s_next_to_stop(self);
        if (next) {
            snprintf(self->exit_current, sizeof self->exit_current, "%s", next->name);
            self->exit_current_deadline = now + self->cfg.stop_ms;
            next->shutdown_asked = true;
            s_command(self, next, "shutdown");
            return;
        }
        self->exit_phase = EXIT_WAIT;
    }
    if (self->exit_phase == EXIT_WAIT && s_named_connected(self, names, sizeof names) == 0) {
        /* The last events (module_state of the last module) are still on their way to the
         * tools that listen (lc listen, the launcher): a moment for them to be handled. */
        if (!self->tools_deadline)
            self->tools_deadline = now + 1000;
        if (s_tools_busy(self) && now < self->tools_deadline)
            return;
        self->exit_now = true;
    }
}
