/* lc-broker: synchronous calls, routed at once, and the methods of module "broker". */
#include "broker_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Upper bounds of the call-latency buckets, in microseconds: 100 µs to 5 s, the range
 * between a local answer and the default call timeout. */
static const uint32_t s_call_bounds_us[BROKER_CALL_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000};

static int64_t s_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Counts one answered call in its bucket: the first whose bound it does not exceed. */
static void s_call_latency(broker_stats_t *s, int64_t arrived_ns)
{
    int64_t ns = s_mono_ns() - arrived_ns;
    uint64_t us = ns > 0 ? (uint64_t)(ns + 500) / 1000 : 0;
    int b = 0;
    while (b < BROKER_CALL_BUCKETS && us > s_call_bounds_us[b])
        b++;
    s->call_buckets[b]++;
    s->call_sum_us += us;
}

/* broker.stats' "call_duration": bounds, cumulative counts (as Prometheus has them), the
 * total count and the sum. */
static json_t *s_call_histogram(const broker_stats_t *s)
{
    json_t *bounds = json_array(), *buckets = json_array();
    uint64_t total = 0;
    for (int b = 0; b < BROKER_CALL_BUCKETS; b++) {
        total += s->call_buckets[b];
        json_array_append_new(bounds, json_integer(s_call_bounds_us[b]));
        json_array_append_new(buckets, json_integer((json_int_t)total));
    }
    total += s->call_buckets[BROKER_CALL_BUCKETS];
    return json_pack("{s:o, s:o, s:I, s:I}", "bounds_us", bounds, "buckets", buckets, "count",
                     (json_int_t)total, "sum_us", (json_int_t)s->call_sum_us);
}

/* Where answers for this CALL go: the module's main connection when the sender asked
 * (an asynchronous call from another thread, whose callback runs on the loop). */
static conn_t *s_answer_to(conn_t *c, const lc_hdr_t *h)
{
    return (h->flags & LC_FLAG_REPLY_MAIN) && c->module->main ? c->module->main : c;
}

static void s_reply(broker_t *self, const conn_t *to, const lc_hdr_t *req, uint64_t parent,
                    uint64_t tx, json_t *result)
{
    lc_hdr_t h = {.type = LC_MSG_REPLY,
                  .seq = req->seq,
                  .id = broker_next_id(self),
                  .parent = parent,
                  .tx = tx,
                  .priority = req->priority,
                  .time_us = lc_now_us()};
    broker_send_json(self, to, &h, NULL, result);
}

/* An error of a built-in method: status HANDLER with the method's own code. */
static void s_method_error(broker_t *self, const conn_t *to, const lc_hdr_t *req, uint64_t id,
                           const char *message)
{
    lc_hdr_t h = {.type = LC_MSG_ERROR,
                  .seq = req->seq,
                  .id = broker_next_id(self),
                  .parent = id,
                  .tx = req->tx,
                  .status = LC_STATUS_HANDLER,
                  .time_us = lc_now_us()};
    broker_send_json(self, to, &h, NULL, json_pack("{s:i, s:s}", "code", 22, "message", message));
}

static bool s_all_registered(broker_t *self, json_t *names)
{
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        const char *n = json_string_value(v);
        module_t *m = n ? broker_module_find(self, n, strlen(n)) : NULL;
        if (!m || m->state == MS_GONE || m->state == MS_INACTIVE || m->exited_at)
            return false;
    }
    return true;
}

void broker_waiters_check(broker_t *self)
{
    int64_t now = lc_mono_ms();
    for (waiter_t **wp = &self->waiters; *wp;) {
        waiter_t *w = *wp;
        bool ready = s_all_registered(self, w->modules);
        lc_hdr_t req = {.seq = w->seq, .tx = w->tx};
        if (ready)
            s_reply(self, w->caller, &req, w->id, w->tx, json_pack("{s:O}", "ready", w->modules));
        else if (now >= w->deadline)
            broker_error(self, w->caller, &req, w->id, LC_STATUS_TIMEOUT,
                         "modules not registered before the deadline");
        if (ready || now >= w->deadline) {
            *wp = w->next;
            json_decref(w->modules);
            free(w);
        } else {
            wp = &w->next;
        }
    }
}

static json_t *s_stats(broker_t *self)
{
    const broker_stats_t *s = &self->stats;
    json_t *o = json_object();
    struct {
        const char *key;
        uint64_t value;
    } rows[] = {
        {"modules", self->nmodules},
        {"calls_open", self->calls.count},
        {"queued", self->queued},
        {"calls", s->calls},
        {"replies", s->replies},
        {"unknown_target", s->unknown_target},
        {"gone", s->gone},
        {"timeouts", s->timeouts},
        {"late_replies", s->late_replies},
        {"malformed", s->malformed},
        {"too_large", s->too_large},
        {"version", s->version},
        {"unroutable", s->unroutable},
        {"registrations", s->registrations},
        {"refused", s->refused},
        {"tasks", s->tasks},
        {"events", s->events},
        {"deliveries", s->deliveries},
        {"done", s->done},
        {"failed", s->failed},
        {"queue_full", s->queue_full},
        {"dropped", s->dropped},
        {"lost", s->lost},
        {"redelivered", s->redelivered},
        {"ledger_done", s->ledger_done},
        {"idle", s->idle},
        {"not_active", s->not_active},
        {"spies", self->tap.spies},
        {"spies_attached", s->spies_attached},
        {"tap_dropped", s->tap_dropped},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        json_object_set_new(o, rows[i].key, json_integer((json_int_t)rows[i].value));
    /* Queue length per priority, what is in flight, and each module's backlog. */
    size_t levels[BQ_PRIORITIES] = {0}, inflight = 0;
    json_t *backlog = json_object();
    for (size_t k = 0; k < self->modules.cap; k++)
        for (module_t *m = self->modules.values[k]; m; m = m->next_hash) {
            for (int l = 0; l < BQ_PRIORITIES; l++)
                levels[l] += m->queue.level_count[l];
            inflight += m->inflight.count;
            if (m->queue.count)
                json_object_set_new(backlog, m->name, json_integer((json_int_t)m->queue.count));
        }
    json_object_set_new(o, "queued_by_priority",
                        json_pack("[I,I,I,I,I]", (json_int_t)levels[0], (json_int_t)levels[1],
                                  (json_int_t)levels[2], (json_int_t)levels[3],
                                  (json_int_t)levels[4]));
    json_object_set_new(o, "in_flight", json_integer((json_int_t)inflight));
    json_object_set_new(o, "backlog", backlog);
    json_object_set_new(o, "call_duration", s_call_histogram(s));
    return o;
}

static void s_builtin(broker_t *self, conn_t *to, const lc_hdr_t *h, uint64_t id, uint64_t tx,
                      const char *method, zmq_msg_t *payload)
{
    size_t n = zmq_msg_size(payload);
    json_t *args = n ? json_loadb(zmq_msg_data(payload), n, 0, NULL) : json_object();
    if (!json_is_object(args)) {
        broker_error(self, to, h, id, LC_STATUS_MALFORMED, "arguments must be a JSON object");
    } else if (strcmp(method, "ping") == 0) {
        s_reply(self, to, h, id, tx,
                json_pack("{s:s, s:i, s:I, s:i, s:s?}", "version", LC_VERSION, "pid",
                          (int)getpid(), "uptime_ms", (json_int_t)(lc_mono_ms() - self->started),
                          "protocol", LC_WIRE_VERSION, "monitor", self->tap.endpoint));
    } else if (strcmp(method, "ready") == 0) {
        const char *name = json_string_value(json_object_get(args, "module"));
        if (!name)
            s_method_error(self, to, h, id, "broker.ready expects {\"module\": name}");
        else {
            json_t *one = json_pack("[s]", name);
            s_reply(self, to, h, id, tx, json_boolean(s_all_registered(self, one)));
            json_decref(one);
        }
    } else if (strcmp(method, "wait") == 0) {
        json_t *mods = json_object_get(args, "modules");
        waiter_t *w = NULL;
        bool names = json_is_array(mods);
        size_t i;
        json_t *v;
        json_array_foreach(mods, i, v)
        {
            names = names && json_is_string(v);
        }
        if (!names) {
            s_method_error(self, to, h, id, "broker.wait expects {\"modules\": [names]}");
        } else if (s_all_registered(self, mods)) {
            s_reply(self, to, h, id, tx, json_pack("{s:O}", "ready", mods));
        } else if (!(w = calloc(1, sizeof *w))) {
            broker_error(self, to, h, id, LC_STATUS_INTERNAL, "broker out of memory");
        } else {
            w->caller = to;
            w->seq = h->seq;
            w->id = id;
            w->tx = tx;
            w->modules = json_incref(mods);
            w->deadline = lc_mono_ms() +
                          (h->timeout_ms ? h->timeout_ms : (uint32_t)self->cfg.call_timeout_ms);
            w->next = self->waiters;
            self->waiters = w;
        }
    } else if (strcmp(method, "list") == 0) {
        json_t *list = json_array();
        for (size_t i = 0; i < self->modules.cap; i++)
            for (module_t *m = self->modules.values[i]; m; m = m->next_hash)
                json_array_append_new(list, broker_module_info(self, m));
        s_reply(self, to, h, id, tx, json_pack("{s:o}", "modules", list));
    } else if (strcmp(method, "expect") == 0) {
        json_t *mods = json_object_get(args, "modules");
        json_t *tmo = json_object_get(args, "timeout_ms");
        bool names = json_is_array(mods);
        size_t i;
        json_t *v;
        json_array_foreach(mods, i, v)
        {
            const char *mod = json_string_value(v);
            names = names && mod && lc_name_valid(mod, strlen(mod));
        }
        if (!names || (tmo && !json_is_integer(tmo))) {
            s_method_error(self, to, h, id,
                           "broker.expect expects {\"modules\": [names], \"timeout_ms\": n}");
        } else {
            broker_expect(self, mods, (int)json_integer_value(tmo));
            s_reply(self, to, h, id, tx, NULL);
        }
    } else if (strcmp(method, "stats") == 0) {
        s_reply(self, to, h, id, tx, s_stats(self));
    } else {
        self->stats.unknown_target++;
        broker_error(self, to, h, id, LC_STATUS_UNKNOWN_METHOD,
                     "module 'broker' has no method '%s' (it has ping, ready, wait, list, stats, "
                     "expect)",
                     method);
    }
    json_decref(args);
}

/* Frees a call, and the reason of its "gone" answer with the last call that shares it. */
static void s_call_free(call_t *call)
{
    if (call->why && --call->why->refs == 0)
        free(call->why);
    free(call);
}

void broker_on_call(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    int64_t arrived_ns = s_mono_ns();
    conn_t *to = s_answer_to(c, h);
    const char *addr = zmq_msg_data(&f[2]);
    size_t alen = zmq_msg_size(&f[2]);
    const char *dot = alen ? memchr(addr, '.', alen) : NULL;
    size_t mlen = dot ? (size_t)(dot - addr) : 0;
    if (!dot || !lc_name_valid(addr, mlen) || !lc_method_name_valid(dot + 1, alen - mlen - 1)) {
        self->stats.malformed++;
        broker_error(self, to, h, 0, LC_STATUS_BAD_NAME,
                     "invalid call target '%.*s': expected module.method",
                     (int)(alen > 200 ? 200 : alen), addr);
        return;
    }
    uint64_t id = broker_next_id(self);
    uint64_t tx = h->tx ? h->tx : id;
    lc_hdr_t req = *h;
    req.tx = tx;
    const char *method = dot + 1;
    size_t method_len = alen - mlen - 1;
    c->module->count.calls_out++;
    if (broker_tapping(self)) {
        /* Every call once, as taken in, whether it is forwarded, answered by the broker or
         * refused: a spy pairs the answer with it by id. */
        lc_hdr_t t = req;
        t.id = id;
        t.time_us = lc_now_us();
        t.flags = 0;
        t.timeout_ms = h->timeout_ms ? h->timeout_ms : (uint32_t)self->cfg.call_timeout_ms;
        if (!t.priority)
            t.priority = LC_PRIORITY_NORMAL;
        uint8_t tb[LC_HDR_SIZE];
        lc_hdr_encode(&t, tb);
        broker_tap_record(self, TAP_ACCEPTED, tb, addr, alen, c->module->name, addr, mlen,
                          zmq_msg_data(&f[4]), zmq_msg_size(&f[4]));
    }
    if (mlen == 6 && memcmp(addr, "broker", 6) == 0) {
        char name[LC_NAME_MAX + 1];
        memcpy(name, method, method_len);
        name[method_len] = 0;
        s_builtin(self, to, &req, id, tx, name, &f[4]);
        return;
    }
    module_t *callee = broker_module_find(self, addr, mlen);
    if (!callee) {
        self->stats.unknown_target++;
        broker_error(self, to, &req, id, LC_STATUS_UNKNOWN_MODULE, "no module '%.*s' on the bus",
                     (int)mlen, addr);
        return;
    }
    if (!broker_method_find(callee, method, method_len)) {
        self->stats.unknown_target++;
        broker_error(self, to, &req, id, LC_STATUS_UNKNOWN_METHOD,
                     "module '%s' has no method '%.*s'", callee->name, (int)method_len, method);
        return;
    }
    if (callee->exited_at) {
        /* Its process has ended; only its goodbye may still be on the way. */
        self->stats.gone++;
        broker_error(self, to, &req, id, LC_STATUS_GONE, "module '%s' has exited", callee->name);
        return;
    }
    if (callee->state != MS_PASSIVE && callee->state != MS_ACTIVE) {
        broker_error(self, to, &req, id, LC_STATUS_NOT_READY, "module '%s' is %s", callee->name,
                     callee->state == MS_GONE ? "not running (its queue waits for it)"
                                              : "starting up");
        return;
    }
    call_t *call = malloc(sizeof *call);
    if (!call) {
        broker_error(self, to, &req, id, LC_STATUS_INTERNAL, "broker out of memory");
        return;
    }
    call->id = id;
    call->why = NULL;
    call->arrived_ns = arrived_ns;
    call->caller = to;
    call->caller_module = c->module;
    call->callee = callee;
    call->seq = h->seq;
    call->tx = tx;
    call->priority = h->priority ? h->priority : LC_PRIORITY_NORMAL;
    uint32_t tmo = h->timeout_ms ? h->timeout_ms : (uint32_t)self->cfg.call_timeout_ms;
    call->deadline = lc_mono_ms() + tmo;
    size_t tl = alen < LC_ADDRESS_MAX ? alen : LC_ADDRESS_MAX;
    memcpy(call->target, addr, tl);
    call->target[tl] = 0;
    if (idmap_put(&self->calls, id, call) < 0 ||
        heap_push(&self->deadlines, call->deadline, id) < 0) {
        idmap_take(&self->calls, id);
        free(call);
        broker_error(self, to, &req, id, LC_STATUS_INTERNAL, "broker out of memory");
        return;
    }
    heap_prune(&self->deadlines, &self->calls); /* the entries of calls answered in time */
    /* Forward: the header is patched in place, the payload moves without a copy. */
    uint8_t *hb = zmq_msg_data(&f[1]);
    lc_hdr_put_u64(hb, LC_OFF_ID, id);
    lc_hdr_put_u64(hb, LC_OFF_TX, tx);
    lc_hdr_put_u64(hb, LC_OFF_TIME, lc_now_us());
    lc_hdr_put_u32(hb, LC_OFF_TIMEOUT, tmo);
    hb[LC_OFF_FLAGS] = hb[LC_OFF_FLAGS + 1] = 0;
    if (!hb[LC_OFF_PRIORITY])
        hb[LC_OFF_PRIORITY] = LC_PRIORITY_NORMAL;
    int rc = broker_send(self, callee->main, hb, addr, alen, c->module->name, &f[4]);
    if (rc < 0) {
        idmap_take(&self->calls, id);
        free(call);
        if (rc == -EHOSTUNREACH) {
            self->stats.gone++;
            broker_error(self, to, &req, id, LC_STATUS_GONE, "module '%s' is no longer connected",
                         callee->name);
            if (!callee->unreachable) {
                callee->unreachable = true;
                self->unreachable++;
            }
        } else {
            broker_error(self, to, &req, id, LC_STATUS_NOT_READY,
                         "module '%s' is not reading its messages", callee->name);
        }
        return;
    }
    callee->count.calls_in++;
    self->stats.calls++;
}

void broker_on_reply(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    call_t *call = idmap_get(&self->calls, h->parent);
    if (!call || call->callee != c->module) {
        /* Too late (the caller's deadline passed, or it went away), or not its call. */
        self->stats.late_replies++;
        return;
    }
    idmap_take(&self->calls, h->parent);
    uint8_t *hb = zmq_msg_data(&f[1]);
    lc_hdr_put_u32(hb, LC_OFF_SEQ, call->seq);
    lc_hdr_put_u64(hb, LC_OFF_ID, broker_next_id(self));
    lc_hdr_put_u64(hb, LC_OFF_TIME, lc_now_us());
    hb[LC_OFF_FLAGS] = hb[LC_OFF_FLAGS + 1] = 0;
    if (broker_send(self, call->caller, hb, NULL, 0, c->module->name, &f[4]) == 0) {
        self->stats.replies++;
        s_call_latency(&self->stats, call->arrived_ns);
    }
    free(call);
}

void broker_calls_expire(broker_t *self, int64_t now)
{
    const heap_entry_t *top;
    while ((top = heap_top(&self->deadlines)) && top->when <= now) {
        call_t *call = idmap_take(&self->calls, top->key);
        heap_pop(&self->deadlines);
        if (call) {
            /* The caller has its own deadline and has stopped waiting: just forget it. */
            self->stats.timeouts++;
            free(call);
        }
    }
    if (self->waiters)
        broker_waiters_check(self);
    /* Once most calls are over (answered, forgotten or gone), the table gives back its
     * slots: a module or connection that goes scans all of them, and after 100,000 calls
     * open at once there were 262,144 (0.2-0.4 ms a scan, for good). */
    idmap_shrink(&self->calls);
}

void broker_calls_drop_conn(broker_t *self, const conn_t *c)
{
    /* Calls from this connection can no longer be answered. */
    for (size_t i = 0; i < self->calls.cap; i++) {
        call_t *call = self->calls.values[i];
        if (call && call->caller == c) {
            idmap_take_at(&self->calls, &i);
            free(call);
        }
    }
    for (waiter_t **wp = &self->waiters; *wp;) {
        waiter_t *w = *wp;
        if (w->caller == c) {
            *wp = w->next;
            json_decref(w->modules);
            free(w);
        } else {
            wp = &w->next;
        }
    }
    /* Nor can the "gone" answers owed to it be sent: they would name a freed connection. */
    call_t *last = NULL;
    for (call_t **cp = &self->gone_head; *cp;) {
        call_t *call = *cp;
        if (call->caller == c) {
            *cp = call->next_gone;
            s_call_free(call);
        } else {
            last = call;
            cp = &call->next_gone;
        }
    }
    self->gone_last = last;
}

/* The calls open to m leave the table at once, so that nothing routes to them any more and
 * calls_open is right; their callers' "gone" answers are owed, GONE_BATCH of them now and as
 * many per loop round after (broker_run), so that a module leaving with 100,000 calls open
 * (what a full send queue holds) does not stop the broker serving everyone else. Taking
 * them out costs no allocation: the calls themselves wait, sharing one reason. */
void broker_calls_gone(broker_t *self, module_t *m, const char *why)
{
    gone_why_t *reason = NULL;
    for (size_t i = 0; i < self->calls.cap; i++) {
        call_t *call = self->calls.values[i];
        if (!call || call->callee != m)
            continue;
        idmap_take_at(&self->calls, &i);
        if (call->caller_module == m) {
            free(call); /* its own call: nobody left to answer */
            continue;
        }
        if (!reason) {
            int n = snprintf(NULL, 0, "module '%s' %s", m->name, why);
            if (n < 0 || !(reason = malloc(sizeof *reason + (size_t)n + 1))) {
                free(call); /* out of memory: the caller learns it at its own deadline */
                continue;
            }
            reason->refs = 0;
            snprintf(reason->text, (size_t)n + 1, "module '%s' %s", m->name, why);
        }
        self->stats.gone++;
        reason->refs++;
        call->why = reason;
        call->next_gone = NULL;
        if (self->gone_head)
            self->gone_last->next_gone = call;
        else
            self->gone_head = call;
        self->gone_last = call;
    }
    broker_calls_send_gone(self, GONE_BATCH);
}

void broker_calls_send_gone(broker_t *self, size_t max)
{
    for (size_t n = 0; n < max && self->gone_head; n++) {
        call_t *call = self->gone_head;
        self->gone_head = call->next_gone;
        if (!self->gone_head)
            self->gone_last = NULL;
        lc_hdr_t req = {.seq = call->seq, .tx = call->tx, .priority = call->priority};
        broker_error(self, call->caller, &req, call->id, LC_STATUS_GONE,
                     "%s before answering %s", call->why->text, call->target);
        s_call_free(call);
    }
}

void broker_calls_clear(broker_t *self)
{
    for (size_t i = 0; i < self->calls.cap; i++)
        free(self->calls.values[i]);
    idmap_clear(&self->calls);
    while (self->waiters) {
        waiter_t *w = self->waiters;
        self->waiters = w->next;
        json_decref(w->modules);
        free(w);
    }
    while (self->gone_head) {
        call_t *call = self->gone_head;
        self->gone_head = call->next_gone;
        s_call_free(call);
    }
    self->gone_last = NULL;
}
