/* liblc: tasks and events. Sending them; and, on the receiving side, the local priority
 * queue of what the broker delivered within the window, run one handler at a time (or
 * `concurrency` at a time), highest priority first, with completions going back as DONE. */
#include "client_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DONE_RECORD 16
#define NOTICE_LOG_PER_SECOND 10

/* ---- Names ---------------------------------------------------------------------------- */

void lcc_inherit(lc_client_t *self, lc_hdr_t *h, int priority)
{
    int prio = priority & 0xff;
    lc_request_t *cur = lcc_on_loop(self) ? self->current : NULL;
    if (cur && !(priority & LC_NEW_TX)) {
        h->tx = cur->hdr.tx;
        h->parent = cur->hdr.id;
    }
    if (prio >= LC_PRIORITY_HIGHEST && prio <= LC_PRIORITY_LOWEST)
        h->priority = (uint8_t)prio;
    else
        h->priority = cur && cur->hdr.priority ? cur->hdr.priority : LC_PRIORITY_NORMAL;
}

/* ---- Sending -------------------------------------------------------------------------- */

static bool s_answered(lc_client_t *self, void *ctx)
{
    (void)self;
    return ((pending_t *)ctx)->done;
}

static int s_fail(json_t **info, int rc, const char *fmt, const char *arg)
{
    if (info)
        *info = lcc_local_error(lc_errno_to_status(rc), fmt, arg);
    return rc;
}

/* Sends a TASK or EVENT; with confirm, waits for the broker's NOTICE. */
static int s_send_item(lc_client_t *self, int type, const char *address, json_t *args,
                       int priority, bool confirm, int timeout_ms, json_t **info)
{
    if (info)
        *info = NULL;
    int prio = priority & ~LC_NEW_TX;
    if (prio < 0 || prio > LC_PRIORITY_LOWEST) {
        json_decref(args);
        return s_fail(info, LC_EINVAL, "priority must be 0 (inherit) or 1-5%s", "");
    }
    char *payload;
    size_t plen;
    int rc = lcc_dump_args(args, &payload, &plen);
    if (rc < 0)
        return s_fail(info, rc, "arguments of %s must be a JSON object", address);

    /* Decision 9: a module that is not active sends only while handling something. */
    bool in_handler = lcc_on_loop(self) && self->depth > 0;
    if (self->lifecycle && self->state != LC_STATE_ACTIVE && !in_handler) {
        free(payload);
        lc_log(self, LC_LOG_ERROR, "%s %s refused: the module is %s, not active (send from a "
               "handler, or after activation)", type == LC_MSG_TASK ? "task" : "event", address,
               self->state ? lc_state_name(self->state) : "not started");
        return s_fail(info, LC_ENOTACTIVE, "the module is not active: %s refused", address);
    }
    int tmo = timeout_ms > 0 ? timeout_ms : self->timeout_ms;
    int64_t deadline = lc_mono_ms() + tmo;
    lc_hdr_t h = {.type = (uint8_t)type, .seq = atomic_fetch_add(&self->seq, 1) + 1};
    lcc_inherit(self, &h, priority);
    if (confirm)
        h.flags |= LC_FLAG_CONFIRM;
    if (in_handler)
        h.flags |= LC_FLAG_IN_HANDLER; /* a reaction, allowed while passive (decision 9) */

    if (!lcc_on_loop(self)) {
        sat_t *sat = lcc_sat_get(self);
        json_t *err = NULL;
        rc = !sat ? LC_ENOMEM : lcc_sat_ready(sat, deadline, &err);
        if (rc == 0 && self->max_payload && plen > self->max_payload)
            rc = LC_ETOOBIG;
        if (rc == 0)
            rc = lcc_send(sat->sock, &h, address, NULL, payload, plen, deadline);
        else
            free(payload);
        if (rc == 0 && confirm) {
            inmsg_t m;
            rc = lcc_sat_await(sat, h.seq, &m, deadline);
            if (rc == 0) {
                bool ok = m.hdr.status == LC_STATUS_OK || (m.hdr.flags & LC_FLAG_PARTIAL);
                rc = ok ? 0 : lc_status_to_errno((int)m.hdr.status);
                err = json_loadb(zmq_msg_data(&m.payload), zmq_msg_size(&m.payload), 0, NULL);
                lcc_inmsg_close(&m);
            }
        }
        if (info && !*info)
            *info = err;
        else
            json_decref(err);
        return rc;
    }

    if ((rc = lcc_connect_until(self, deadline)) < 0) {
        free(payload);
        lcc_rearm(self);
        return s_fail(info, rc, "%s", "no broker answered at the endpoint");
    }
    if (self->max_payload && plen > self->max_payload) {
        free(payload);
        return s_fail(info, LC_ETOOBIG, "arguments of %s are over the bus limit", address);
    }
    pending_t *p = NULL;
    if (confirm) {
        p = calloc(1, sizeof *p);
        if (!p) {
            free(payload);
            return LC_ENOMEM;
        }
        p->seq = h.seq;
        p->timeout_ms = tmo;
        lcc_copy(p->target, sizeof p->target, address);
        pthread_mutex_lock(&self->lock);
        rc = idmap_put(&self->pending, p->seq, p);
        pthread_mutex_unlock(&self->lock);
        if (rc < 0) {
            free(payload);
            free(p);
            return LC_ENOMEM;
        }
    }
    rc = lcc_send_main(self, &h, address, payload, plen, deadline);
    if (confirm) {
        if (rc == 0)
            rc = lcc_main_wait(self, s_answered, p, deadline);
        pthread_mutex_lock(&self->lock);
        if (!p->done)
            idmap_take(&self->pending, p->seq);
        pthread_mutex_unlock(&self->lock);
        if (p->done) {
            rc = p->rc;
            if (info) {
                *info = p->result;
                p->result = NULL;
            }
        } else if (rc == LC_ETIMEDOUT) {
            s_fail(info, rc, "no answer from the broker about %s", address);
        }
        lcc_pending_free(p);
        lcc_rearm(self);
    }
    return rc;
}

static int s_task_target(lc_client_t *self, const char *target, char *out, size_t size)
{
    if (!target)
        return LC_EINVAL;
    if (strchr(target, '.'))
        snprintf(out, size, "%s", target);
    else /* the seed's rule: a bare method is this module's own */
        snprintf(out, size, "%s.%s", lc_client_name(self), target);
    return lcc_check_target(out);
}

static int s_enqueue(lc_client_t *self, const char *target, json_t *args, int priority,
                     bool confirm, int timeout_ms, json_t **info)
{
    assert(self);
    char address[LC_ADDRESS_MAX + 1];
    if (s_task_target(self, target, address, sizeof address) < 0) {
        json_decref(args);
        return s_fail(info, LC_EINVAL, "invalid task target '%s': expected module.method",
                      target ? target : "(null)");
    }
    return s_send_item(self, LC_MSG_TASK, address, args, priority, confirm, timeout_ms, info);
}

int lc_enqueue(lc_client_t *self, const char *target, json_t *args, int priority)
{
    return s_enqueue(self, target, args, priority, false, 0, NULL);
}

int lc_enqueue_wait(lc_client_t *self, const char *target, json_t *args, int priority,
                    int timeout_ms, json_t **info)
{
    return s_enqueue(self, target, args, priority, true, timeout_ms, info);
}

static int s_emit(lc_client_t *self, const char *event, json_t *args, int priority, bool confirm,
                  int timeout_ms, json_t **info)
{
    assert(self);
    char name[LC_NAME_MAX + 16];
    if (event)
        snprintf(name, sizeof name, "%s", event);
    else /* the seed's default: <module>_event */
        snprintf(name, sizeof name, "%s_event", lc_client_name(self));
    if (!lc_event_name_valid(name, strlen(name))) {
        json_decref(args);
        return s_fail(info, LC_EINVAL, "invalid event name '%s': use 1-64 characters of [a-z0-9_]",
                      name);
    }
    return s_send_item(self, LC_MSG_EVENT, name, args, priority, confirm, timeout_ms, info);
}

int lc_emit(lc_client_t *self, const char *event, json_t *args, int priority)
{
    return s_emit(self, event, args, priority, false, 0, NULL);
}

int lc_emit_wait(lc_client_t *self, const char *event, json_t *args, int priority, int timeout_ms,
                 json_t **info)
{
    return s_emit(self, event, args, priority, true, timeout_ms, info);
}

/* ---- Subscriptions -------------------------------------------------------------------- */

int lc_on(lc_client_t *self, const char *pattern, lc_method_fn *fn, void *arg)
{
    assert(self);
    size_t len = pattern ? strlen(pattern) : 0;
    bool wild = len && pattern[len - 1] == '*';
    if (!fn || !lcc_on_loop(self) || !len ||
        (wild ? (len > 1 && !lc_event_name_valid(pattern, len - 1))
              : !lc_event_name_valid(pattern, len)))
        return LC_EINVAL;
    handler_t *hd = NULL;
    for (size_t i = 0; i < self->nhandlers; i++)
        if (strcmp(self->handlers[i].pattern, pattern) == 0)
            hd = &self->handlers[i];
    if (!hd) {
        if (self->nhandlers == self->caphandlers) {
            size_t cap = self->caphandlers ? self->caphandlers * 2 : 8;
            handler_t *hs = realloc(self->handlers, cap * sizeof *hs);
            if (!hs)
                return LC_ENOMEM;
            self->handlers = hs;
            self->caphandlers = cap;
        }
        hd = &self->handlers[self->nhandlers++];
        snprintf(hd->pattern, sizeof hd->pattern, "%s", pattern);
        hd->len = wild ? len - 1 : len;
        hd->wild = wild;
    }
    hd->fn = fn;
    hd->arg = arg;
    /* Already registered: a repeated HELLO updates the broker's table. */
    if (self->reg == REG_DONE)
        return lcc_send_hello(self);
    return 0;
}

json_t *lcc_hello_events(lc_client_t *self)
{
    json_t *list = json_array();
    for (size_t i = 0; i < self->nhandlers; i++)
        json_array_append_new(list, json_string(self->handlers[i].pattern));
    return list;
}

/* The exact subscription, else the longest matching prefix. */
static const handler_t *s_handler_find(lc_client_t *self, const char *event)
{
    size_t len = strlen(event);
    const handler_t *best = NULL;
    for (size_t i = 0; i < self->nhandlers; i++) {
        const handler_t *hd = &self->handlers[i];
        if (!hd->wild) {
            if (hd->len == len && memcmp(hd->pattern, event, len) == 0)
                return hd;
        } else if (len >= hd->len && memcmp(hd->pattern, event, hd->len) == 0 &&
                   (!best || hd->len > best->len)) {
            best = hd;
        }
    }
    return best;
}

/* ---- Notices -------------------------------------------------------------------------- */

void lc_on_notice(lc_client_t *self, lc_notice_fn *fn, void *arg)
{
    assert(self);
    self->notice_fn = fn;
    self->notice_arg = arg;
}

void lcc_on_notice(lc_client_t *self, inmsg_t *m)
{
    if (lcc_complete(self, m))
        return; /* a sender waiting for it */
    bool partial = m->hdr.flags & LC_FLAG_PARTIAL;
    if (m->hdr.status == LC_STATUS_OK && !partial)
        return; /* an acceptance nobody waits for any more */
    int rc = partial ? LC_EQUEUEFULL : lc_status_to_errno((int)m->hdr.status);
    json_t *info = json_loadb(zmq_msg_data(&m->payload), zmq_msg_size(&m->payload), 0, NULL);
    if (!json_is_object(info)) {
        json_decref(info);
        info = json_pack("{s:s}", "message", lc_status_name((int)m->hdr.status));
    }
    if (self->notice_fn) {
        self->notice_fn(self, rc, m->address, info, self->notice_arg);
    } else {
        int64_t second = lc_mono_ms() / 1000;
        if (second != self->notice_second) {
            self->notice_second = second;
            self->notices_logged = 0;
        }
        if (self->notices_logged++ < NOTICE_LOG_PER_SECOND)
            lc_log(self, LC_LOG_ERROR, "%s %s: %s", m->address, partial ? "partly lost" : "refused",
                   json_string_value(json_object_get(info, "message")));
    }
    json_decref(info);
}

/* ---- The local queue ------------------------------------------------------------------ */

static int s_level(const lc_hdr_t *h)
{
    int p = h->priority;
    return (p < 1 || p > 5 ? LC_PRIORITY_NORMAL : p) - 1;
}

void lcc_queue_push(lc_client_t *self, inmsg_t *m)
{
    delivery_t *d = malloc(sizeof *d);
    if (!d)
        return; /* the broker re-delivers it if this module dies; otherwise it is lost */
    d->next = NULL;
    d->msg.hdr = m->hdr;
    memcpy(d->msg.address, m->address, sizeof d->msg.address);
    memcpy(d->msg.source, m->source, sizeof d->msg.source);
    zmq_msg_init(&d->msg.payload);
    zmq_msg_move(&d->msg.payload, &m->payload);
    int l = s_level(&m->hdr);
    if (self->tail[l])
        self->tail[l]->next = d;
    else
        self->head[l] = d;
    self->tail[l] = d;
    self->queued++;
}

static delivery_t *s_pop(lc_client_t *self)
{
    for (int l = 0; l < 5; l++) {
        delivery_t *d = self->head[l];
        if (!d)
            continue;
        self->head[l] = d->next;
        if (!self->head[l])
            self->tail[l] = NULL;
        self->queued--;
        return d;
    }
    return NULL;
}

void lcc_queue_clear(lc_client_t *self)
{
    delivery_t *d;
    while ((d = s_pop(self))) {
        zmq_msg_close(&d->msg.payload);
        free(d);
    }
}

void lcc_item_finished(lc_request_t *req, bool failed)
{
    lc_client_t *self = req->client;
    pthread_mutex_lock(&self->lock);
    if (self->ndone == self->capdone) {
        size_t cap = self->capdone ? self->capdone * 2 : 64;
        done_t *done = realloc(self->done, cap * sizeof *done);
        if (done) {
            self->done = done;
            self->capdone = cap;
        }
    }
    ledger_finish(&self->ledger, req->ledger_slot, failed);
    if (self->ndone < self->capdone)
        self->done[self->ndone++] = (done_t){req->hdr.id, failed ? 1u : 0u, req->ledger_slot};
    else
        ledger_lost(&self->ledger, req->ledger_slot); /* no DONE will report it */
    self->running--;
    pthread_mutex_unlock(&self->lock);
    if (!lcc_on_loop(self))
        lcc_wake(self); /* the loop reports it and starts the next */
}

/* Reports the completions so far and, if started is not 0, the item that starts now: the
 * broker then knows which delivered items never ran (decision 2). */
static void s_flush_done(lc_client_t *self, uint64_t started)
{
    pthread_mutex_lock(&self->lock);
    size_t n = self->ndone;
    char *payload = n ? malloc(n * DONE_RECORD) : NULL;
    /* The loop thread's own buffer: no allocation per DONE on the hot path. */
    if (payload && ledger_ready(&self->ledger) && n > self->capsent) {
        int *grown = realloc(self->sent_slots, n * sizeof *grown);
        if (grown) {
            self->sent_slots = grown;
            self->capsent = n;
        }
    }
    int *slots = payload && ledger_ready(&self->ledger) && n <= self->capsent ? self->sent_slots
                                                                               : NULL;
    if (payload) {
        for (size_t i = 0; i < n; i++) {
            lc_hdr_put_u64((uint8_t *)payload, i * DONE_RECORD, self->done[i].id);
            lc_hdr_put_u32((uint8_t *)payload, i * DONE_RECORD + 8, self->done[i].status);
            lc_hdr_put_u32((uint8_t *)payload, i * DONE_RECORD + 12, 0);
            if (slots)
                slots[i] = self->done[i].ledger_slot;
        }
        self->ndone = 0;
    }
    pthread_mutex_unlock(&self->lock);
    if (!payload && !started)
        return;
    lc_hdr_t h = {.type = LC_MSG_DONE, .seq = atomic_fetch_add(&self->seq, 1) + 1,
                  .parent = started};
    int rc = lcc_send_main(self, &h, NULL, payload, payload ? n * DONE_RECORD : 0,
                           lc_mono_ms() + self->timeout_ms);
    /* Their slots may be used again once the broker has seen this DONE (ledger.c). A slot
     * whose DONE could not be sent (or whose number was lost to malloc failing) is never
     * reused, and counted: the next HELLO reserves a slot more for each. */
    if (slots && rc == 0) {
        for (size_t i = 0; i < n; i++)
            ledger_sent(&self->ledger, slots[i]);
    } else if (payload && ledger_ready(&self->ledger)) {
        pthread_mutex_lock(&self->lock);
        for (size_t i = 0; i < n; i++)
            ledger_lost(&self->ledger, slots ? slots[i] : 0);
        pthread_mutex_unlock(&self->lock);
    }
}

static void s_start(lc_client_t *self, delivery_t *d, int slot)
{
    inmsg_t *m = &d->msg;
    lc_request_t *req = calloc(1, sizeof *req);
    if (!req) {
        pthread_mutex_lock(&self->lock);
        ledger_lost(&self->ledger, slot); /* marked started for good: never finished */
        self->running--;
        pthread_mutex_unlock(&self->lock);
        return;
    }
    req->client = self;
    req->hdr = m->hdr;
    req->kind = m->hdr.type == LC_MSG_TASK ? LC_KIND_TASK : LC_KIND_EVENT;
    req->ledger_slot = slot;
    lcc_copy(req->source, sizeof req->source, m->source);
    lcc_copy(req->method, sizeof req->method, m->address);
    atomic_init(&req->state, 0);

    lc_method_fn *fn = NULL;
    void *arg = NULL;
    if (req->kind == LC_KIND_TASK) {
        method_t *method = lcc_method_find(self, req->method);
        if (method)
            fn = method->fn, arg = method->arg;
    } else {
        const handler_t *hd = s_handler_find(self, req->method);
        if (hd)
            fn = hd->fn, arg = hd->arg;
    }
    size_t n = zmq_msg_size(&m->payload);
    json_t *args = n ? json_loadb(zmq_msg_data(&m->payload), n, 0, NULL) : json_object();
    char why[400] = "";
    if (!fn || !json_is_object(args) ||
        (req->kind == LC_KIND_TASK && lcc_args_check(lcc_method_find(self, req->method), args,
                                                     why, sizeof why) < 0)) {
        lc_reply_error(req, -1, "%s",
                       !fn                   ? "no handler"
                       : !json_is_object(args) ? "arguments are not a JSON object"
                                               : why);
        lcc_request_finish(req);
    } else {
        lcc_run_handler(self, req, fn, args, arg);
        lcc_request_finish(req);
    }
    json_decref(args);
}

#define DRAIN_EVERY_US 100
/* A run of the queue ends after this long, so that timers, signals, lifecycle commands and
 * answers get their turn even while the broker keeps the window full. lc_timeout() is 0
 * while items wait, so the next run follows at once. */
#define RUN_BUDGET_US 10000

static int64_t s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void lcc_queue_run(lc_client_t *self)
{
    /* Inside a handler (a nested wait) items wait for the outer handler (decision 10). */
    if (self->depth > 0)
        return;
    /* Items delivered meanwhile join the local queue between handlers, so that an urgent
     * one overtakes those already here (decision 2) — at most every DRAIN_EVERY_US, so
     * that short handlers do not pay a system call each. */
    int64_t began = s_mono_us(), drained = began;
    for (;;) {
        int64_t now = s_mono_us();
        /* A pending lifecycle command waits for the items that were here when it came (its
         * budget), not for new ones: then it is the loop's turn. */
        if (now - began >= RUN_BUDGET_US || (self->ncmds && self->cmd_budget <= 0))
            break;
        if (!self->ncmds && self->queued && now - drained >= DRAIN_EVERY_US) {
            lcc_drain_main(self, DISPATCH_BATCH);
            drained = s_mono_us();
        }
        pthread_mutex_lock(&self->lock);
        /* After lc_stop() nothing more starts: the rest waits (or is redelivered). */
        bool go = self->queued && self->running < self->concurrency && !atomic_load(&self->stop);
        if (go)
            self->running++;
        pthread_mutex_unlock(&self->lock);
        if (!go)
            break;
        delivery_t *d = s_pop(self);
        if (self->ncmds && self->cmd_budget > 0)
            self->cmd_budget--;
        /* In the ledger before anything else: a crash from here on leaves it marked. */
        int slot = ledger_start(&self->ledger, d->msg.hdr.id);
        s_flush_done(self, d->msg.hdr.id);
        s_start(self, d, slot);
        zmq_msg_close(&d->msg.payload);
        free(d);
    }
    s_flush_done(self, 0);
}
