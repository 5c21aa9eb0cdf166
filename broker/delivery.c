/* lc-broker: tasks and events go into per-module priority queues and reach each module
 * within its delivery window; completions come back as DONE. docs/architecture.md. */
#include "broker_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DONE_RECORD 16 /* u64 id, u32 status, u32 reserved */

/* Events only the broker may send (decision 5); "exit" may come from a module. */
static bool s_reserved_event(const char *name, size_t len)
{
    static const char *const reserved[] = {"becoming_idle", "module_state", "module_lost", NULL};
    for (int i = 0; reserved[i]; i++)
        if (strlen(reserved[i]) == len && memcmp(reserved[i], name, len) == 0)
            return true;
    return false;
}

/* ---- Subscriptions -------------------------------------------------------------------- */

void broker_subs_clear(broker_t *self, module_t *m)
{
    while (m->subs) {
        sub_t *s = m->subs;
        m->subs = s->next_of_module;
        if (s->wild) {
            for (sub_t **pp = &self->subs_wild; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                    *pp = s->next;
                    break;
                }
        } else {
            uint64_t h = broker_hash(s->pattern, s->len);
            sub_t *head = idmap_take(&self->subs_exact, h), **pp = &head;
            while (*pp && *pp != s)
                pp = &(*pp)->next;
            if (*pp)
                *pp = s->next;
            if (head)
                idmap_put(&self->subs_exact, h, head);
        }
        strpool_put(&self->pool, s->pattern);
        free(s);
    }
}

int broker_subs_validate(json_t *patterns, char *err, size_t errlen)
{
    size_t i;
    json_t *v;
    json_array_foreach(patterns, i, v)
    {
        const char *p = json_string_value(v);
        size_t len = p ? strlen(p) : 0;
        bool wild = len && p[len - 1] == '*';
        if (!p || (wild ? (len > 1 && !lc_event_name_valid(p, len - 1))
                        : !lc_event_name_valid(p, len))) {
            snprintf(err, errlen, "invalid subscription %zu: an event name of [a-z0-9_], or a "
                     "prefix of one followed by '*'", i);
            return LC_STATUS_BAD_NAME;
        }
    }
    return 0;
}

int broker_subs_set(broker_t *self, module_t *m, json_t *patterns, char *err, size_t errlen)
{
    size_t i;
    json_t *v;
    int st = broker_subs_validate(patterns, err, errlen);
    if (st)
        return st;
    broker_subs_clear(self, m);
    json_array_foreach(patterns, i, v)
    {
        const char *p = json_string_value(v);
        size_t len = strlen(p);
        sub_t *s = calloc(1, sizeof *s);
        if (!s)
            return LC_STATUS_INTERNAL;
        s->module = m;
        s->wild = p[len - 1] == '*';
        s->len = s->wild ? len - 1 : len;
        s->pattern = strpool_get(&self->pool, p, s->len);
        if (!s->pattern) {
            free(s);
            return LC_STATUS_INTERNAL;
        }
        if (s->wild) {
            s->next = self->subs_wild;
            self->subs_wild = s;
        } else {
            uint64_t h = broker_hash(p, s->len);
            s->next = idmap_get(&self->subs_exact, h);
            if (idmap_put(&self->subs_exact, h, s) < 0) {
                strpool_put(&self->pool, s->pattern);
                free(s);
                return LC_STATUS_INTERNAL;
            }
        }
        s->next_of_module = m->subs;
        m->subs = s;
    }
    return 0;
}

/* ---- Items ---------------------------------------------------------------------------- */

static bq_item_t *s_item_new(broker_t *self, int kind, const char *name, size_t len,
                             const char *source, blob_t *payload, const lc_hdr_t *h, uint64_t id,
                             bool work)
{
    bq_item_t *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->kind = (uint8_t)kind;
    it->id = id;
    it->tx = h && h->tx ? h->tx : id;
    it->parent = h ? h->parent : 0;
    it->priority = h && h->priority ? h->priority : LC_PRIORITY_NORMAL;
    it->time_us = lc_now_us();
    it->work = work;
    it->name = strpool_get(&self->pool, name, len);
    it->source = strpool_get(&self->pool, source, strlen(source));
    it->payload = blob_ref(payload);
    if (!it->name || !it->source) {
        bq_item_free(&self->pool, it);
        return NULL;
    }
    return it;
}

/* ---- Senders' shares (--max-sent) ------------------------------------------------------ */

static sender_t *s_sender(const broker_t *self, const char *name)
{
    for (sender_t *s = idmap_get(&self->senders, broker_hash(name, strlen(name))); s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

size_t broker_sent_queued(const broker_t *self, const char *name)
{
    const sender_t *s = s_sender(self, name);
    return s ? s->queued : 0;
}

/* One more item of this sender in the queue; false when out of memory (not counted). */
static bool s_sender_add(broker_t *self, const char *name)
{
    sender_t *s = s_sender(self, name);
    if (!s) {
        uint64_t h = broker_hash(name, strlen(name));
        if (!(s = calloc(1, sizeof *s)))
            return false;
        snprintf(s->name, sizeof s->name, "%s", name);
        s->next = idmap_get(&self->senders, h);
        if (idmap_put(&self->senders, h, s) < 0) {
            free(s);
            return false;
        }
    }
    s->queued++;
    return true;
}

static void s_sender_remove(broker_t *self, const char *name)
{
    uint64_t h = broker_hash(name, strlen(name));
    sender_t *head = idmap_get(&self->senders, h), **pp = &head;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    sender_t *s = *pp;
    if (!s || --s->queued > 0)
        return;
    /* Nothing of it is left: the record goes, whether or not the sender is registered. */
    *pp = s->next;
    free(s);
    if (head) {
        idmap_put(&self->senders, h, head);
    } else {
        idmap_take(&self->senders, h);
        /* Each anonymous client is a new name: after a burst of them the table would keep
         * the size of its busiest moment. */
        idmap_shrink(&self->senders);
    }
}

void broker_senders_clear(broker_t *self)
{
    for (size_t i = 0; i < self->senders.cap; i++)
        for (sender_t *s = self->senders.values[i], *next; s; s = next) {
            next = s->next;
            free(s);
        }
    idmap_clear(&self->senders);
}

static void s_enqueue(broker_t *self, module_t *m, bq_item_t *it)
{
    broker_queue_push(&m->queue, it);
    self->queued++;
    if (it->work) {
        self->work++;
        self->busy = true;
        /* Counted against its sender's name until it is done or discarded (--max-sent): an
         * event once, however many copies (they share the payload), so that subscribers
         * that are slow or gone do not multiply it. */
        if (it->payload->counted == 0 && !s_sender_add(self, it->source))
            return; /* out of memory: this one is not counted */
        it->counted = true;
        it->payload->counted++;
    }
}

/* Frees an item that is done or discarded, keeping the work count right. */
static void s_item_retire(broker_t *self, bq_item_t *it)
{
    if (it->work)
        self->work--;
    if (it->counted && --it->payload->counted == 0)
        s_sender_remove(self, it->source);
    bq_item_free(&self->pool, it);
}

/* One module's sends may hold at most max_sent items of the queue (half of it by default),
 * so that a module flooding the bus is refused before it fills the queue for everyone. */
static size_t s_max_sent(const broker_t *self)
{
    return self->cfg.max_sent ? self->cfg.max_sent : (self->cfg.max_queue + 1) / 2;
}

/* The record of a queued item for lc-spy, as it would be delivered. */
static void s_tap_item(broker_t *self, int what, const bq_item_t *it, const char *address,
                       const char *to, size_t tolen);

/* A lost copy, named as the sender addressed it: module.method for a task. */
static void s_tap_lost(broker_t *self, const bq_item_t *it, const module_t *m)
{
    char addr[LC_ADDRESS_MAX + 1];
    if (it->kind == BQ_TASK)
        snprintf(addr, sizeof addr, "%s.%s", m->name, it->name);
    else
        snprintf(addr, sizeof addr, "%s", it->name);
    s_tap_item(self, TAP_LOST, it, addr, m->name, strlen(m->name));
}

static void s_tap_item(broker_t *self, int what, const bq_item_t *it, const char *address,
                       const char *to, size_t tolen)
{
    lc_hdr_t h = {.type = it->kind == BQ_TASK ? LC_MSG_TASK : LC_MSG_EVENT,
                  .priority = it->priority,
                  .id = it->id,
                  .tx = it->tx,
                  .parent = it->parent,
                  .time_us = what == TAP_ACCEPTED ? it->time_us : lc_now_us()};
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_encode(&h, hb);
    broker_tap_record(self, what, hb, address, strlen(address), it->source, to, tolen,
                      it->payload->data, it->payload->len);
}

static void s_blob_free(void *data, void *hint)
{
    (void)data;
    blob_t *b = hint;
    blob_unref(&b);
}

void broker_pump(broker_t *self, module_t *m)
{
    if ((m->state != MS_PASSIVE && m->state != MS_ACTIVE) || !m->main || m->exited_at)
        return;
    while (m->inflight.count < (size_t)m->window && m->queue.count) {
        bq_item_t *it = broker_queue_pop(&m->queue);
        self->queued--;
        lc_hdr_t h = {.type = it->kind == BQ_TASK ? LC_MSG_TASK : LC_MSG_EVENT,
                      .priority = it->priority,
                      .id = it->id,
                      .tx = it->tx,
                      .parent = it->parent,
                      .time_us = it->time_us};
        uint8_t hb[LC_HDR_SIZE];
        lc_hdr_encode(&h, hb);
        /* The payload is shared with the other copies: ZeroMQ sends from it directly. */
        zmq_msg_t pm;
        if (it->payload->len) {
            blob_ref(it->payload);
            zmq_msg_init_data(&pm, it->payload->data, it->payload->len, s_blob_free, it->payload);
        } else {
            zmq_msg_init(&pm);
        }
        int rc = broker_send(self, m->main, hb, it->name, strlen(it->name), it->source, &pm);
        if (rc < 0) {
            broker_queue_push_front(&m->queue, it);
            self->queued++;
            /* Not removed here: this may run inside a fan-out over the subscriptions. */
            if (rc == -EHOSTUNREACH && !m->unreachable) {
                m->unreachable = true;
                self->unreachable++;
            }
            return;
        }
        if (idmap_put(&m->inflight, it->id, it) < 0) {
            s_item_retire(self, it); /* out of memory: nothing to remember it by */
            continue;
        }
        m->count.delivered++;
        self->stats.deliveries++;
    }
}

/* ---- Acknowledgements ----------------------------------------------------------------- */

static void s_notice(broker_t *self, const conn_t *to, const lc_hdr_t *req, uint64_t id, int status,
                     uint16_t flags, const char *address, json_t *body)
{
    lc_hdr_t h = {.type = LC_MSG_NOTICE,
                  .seq = req->seq,
                  .status = (uint32_t)status,
                  .flags = flags,
                  .id = id,
                  .tx = req->tx,
                  .priority = req->priority,
                  .time_us = lc_now_us()};
    broker_send_json(self, to, &h, address, body);
}

/* A refusal goes to the sender's loop (its refusal callback), unless the sender waits for
 * the answer on the connection it sent from. */
static void s_refuse(broker_t *self, conn_t *c, const lc_hdr_t *h, const char *address, int status,
                     const char *fmt, ...) LC_PRINTF(6, 7);
static void s_refuse(broker_t *self, conn_t *c, const lc_hdr_t *h, const char *address, int status,
                     const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (status == LC_STATUS_QUEUE_FULL)
        self->stats.queue_full++;
    const conn_t *to = (h->flags & LC_FLAG_CONFIRM) || !c->module->main ? c : c->module->main;
    s_notice(self, to, h, 0, status, 0, address, json_pack("{s:s}", "message", msg));
}

/* ---- Tasks ---------------------------------------------------------------------------- */

void broker_on_task(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    char addr[LC_ADDRESS_MAX + 1];
    size_t alen = zmq_msg_size(&f[2]);
    memcpy(addr, zmq_msg_data(&f[2]), alen);
    addr[alen] = 0;
    const char *dot = strchr(addr, '.');
    size_t mlen = dot ? (size_t)(dot - addr) : 0;
    if (!dot || !lc_name_valid(addr, mlen) || !lc_method_name_valid(dot + 1, alen - mlen - 1)) {
        self->stats.malformed++;
        s_refuse(self, c, h, addr, LC_STATUS_BAD_NAME,
                 "invalid task target '%.200s': expected module.method", addr);
        return;
    }
    module_t *m = broker_module_find(self, addr, mlen);
    if (!m) {
        self->stats.unknown_target++;
        s_refuse(self, c, h, addr, LC_STATUS_UNKNOWN_MODULE, "no module '%.*s' on the bus",
                 (int)mlen, addr);
        return;
    }
    if (!broker_method_find(m, dot + 1, alen - mlen - 1)) {
        self->stats.unknown_target++;
        s_refuse(self, c, h, addr, LC_STATUS_UNKNOWN_METHOD, "module '%s' has no method '%s'",
                 m->name, dot + 1);
        return;
    }
    if (c->module->state != MS_ACTIVE && !h->parent && !(h->flags & LC_FLAG_IN_HANDLER)) {
        self->stats.not_active++;
        s_refuse(self, c, h, addr, LC_STATUS_NOT_ACTIVE,
                 "module '%s' is %s: it may send tasks only from a handler", c->module->name,
                 broker_state_name(c->module->state));
        return;
    }
    size_t own = broker_sent_queued(self, c->module->name);
    if (own >= s_max_sent(self)) {
        c->module->count.sends_refused++;
        s_refuse(self, c, h, addr, LC_STATUS_QUEUE_FULL,
                 "module '%s' has %zu tasks and events of its own queued or in flight, its "
                 "limit (--max-sent)",
                 c->module->name, own);
        return;
    }
    if (self->queued >= self->cfg.max_queue) {
        s_refuse(self, c, h, addr, LC_STATUS_QUEUE_FULL, "the bus queue is full (%zu items)",
                 self->cfg.max_queue);
        return;
    }
    if (m->queue.count >= self->cfg.max_backlog) {
        s_refuse(self, c, h, addr, LC_STATUS_QUEUE_FULL,
                 "module '%s' has %zu items waiting, its limit", m->name, m->queue.count);
        return;
    }
    blob_t *payload = blob_new(zmq_msg_data(&f[4]), zmq_msg_size(&f[4]));
    uint64_t id = broker_next_id(self);
    bq_item_t *it = payload ? s_item_new(self, BQ_TASK, dot + 1, alen - mlen - 1, c->module->name,
                                         payload, h, id, true)
                            : NULL;
    blob_unref(&payload);
    if (!it) {
        s_refuse(self, c, h, addr, LC_STATUS_INTERNAL, "broker out of memory");
        return;
    }
    if (broker_tapping(self))
        s_tap_item(self, TAP_ACCEPTED, it, addr, m->name, strlen(m->name));
    s_enqueue(self, m, it);
    m->count.tasks_in++;
    self->stats.tasks++;
    /* Delivered (if the window allows) before the sender hears that it was accepted. */
    broker_pump(self, m);
    if (h->flags & LC_FLAG_CONFIRM)
        s_notice(self, c, h, id, LC_STATUS_OK, 0, addr, NULL);
}

/* ---- Events --------------------------------------------------------------------------- */

typedef struct {
    broker_t *self;
    const module_t *source;
    bq_item_t proto; /* what every copy shares */
    size_t offered, queued;
    json_t *dropped; /* names of subscribers whose backlog was full */
    char *to;        /* with a spy: the recipients, comma-separated */
    size_t tolen, tocap;
} fanout_t;

static void s_fanout_note(fanout_t *fo, const char *name)
{
    size_t n = strlen(name);
    if (fo->tolen + n + 2 > fo->tocap) {
        size_t cap = fo->tocap ? fo->tocap * 2 : 256;
        while (cap < fo->tolen + n + 2)
            cap *= 2;
        char *p = realloc(fo->to, cap);
        if (!p)
            return; /* the record names fewer recipients; the traffic is unaffected */
        fo->to = p;
        fo->tocap = cap;
    }
    if (fo->tolen)
        fo->to[fo->tolen++] = ',';
    memcpy(fo->to + fo->tolen, name, n);
    fo->tolen += n;
}

static void s_offer(fanout_t *fo, module_t *m)
{
    broker_t *self = fo->self;
    if (m == fo->source || m->emit_mark == self->emit_seq)
        return; /* split horizon; or already matched by another pattern */
    if (!fo->proto.work && m->state == MS_GONE)
        return; /* the broker's own news is for those present */
    m->emit_mark = self->emit_seq;
    fo->offered++;
    if (m->queue.count >= self->cfg.max_backlog) {
        /* Blame the slow consumer: count against it, tell the sender, serve the others. */
        m->count.dropped++;
        self->stats.dropped++;
        if (fo->dropped)
            json_array_append_new(fo->dropped, json_string(m->name));
        if (broker_tapping(self))
            s_tap_lost(self, &fo->proto, m);
        return;
    }
    bq_item_t *it = calloc(1, sizeof *it);
    if (!it) {
        m->count.dropped++;
        self->stats.dropped++;
        return;
    }
    *it = fo->proto;
    /* The copy holds its own references to the shared strings and payload. */
    strpool_get(&self->pool, it->name, strlen(it->name));
    strpool_get(&self->pool, it->source, strlen(it->source));
    blob_ref(it->payload);
    s_enqueue(self, m, it);
    m->count.events_in++;
    fo->queued++;
    if (broker_tapping(self))
        s_fanout_note(fo, m->name);
    broker_pump(self, m);
}

/* Queues a copy for every subscriber; returns the number of subscribers offered one. */
static size_t s_fanout(broker_t *self, const char *event, size_t len, const module_t *source,
                       const char *source_name, blob_t *payload, const lc_hdr_t *h, uint64_t id,
                       bool work, json_t *dropped)
{
    fanout_t fo = {.self = self, .source = source, .dropped = dropped};
    uint64_t hash = broker_hash(event, len);
    sub_t *exact = idmap_get(&self->subs_exact, hash);
    bq_item_t *proto = NULL;
    if (!exact && !self->subs_wild) {
        /* Nobody listens: the common case costs one lookup (and a record for a spy). */
        if (broker_tapping(self) &&
            (proto = s_item_new(self, BQ_EVENT, event, len, source_name, payload, h, id, work))) {
            s_tap_item(self, TAP_ACCEPTED, proto, proto->name, NULL, 0);
            bq_item_free(&self->pool, proto);
        }
        return 0;
    }
    proto = s_item_new(self, BQ_EVENT, event, len, source_name, payload, h, id, work);
    if (!proto)
        return 0;
    fo.proto = *proto;
    self->emit_seq++;
    for (sub_t *s = exact; s; s = s->next)
        if (s->len == len && memcmp(s->pattern, event, len) == 0)
            s_offer(&fo, s->module);
    for (sub_t *s = self->subs_wild; s; s = s->next)
        if (len >= s->len && memcmp(s->pattern, event, s->len) == 0)
            s_offer(&fo, s->module);
    if (broker_tapping(self))
        s_tap_item(self, TAP_ACCEPTED, proto, proto->name, fo.to, fo.tolen);
    free(fo.to);
    bq_item_free(&self->pool, proto);
    return fo.offered;
}

void broker_on_event(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    char name[LC_ADDRESS_MAX + 1];
    size_t len = zmq_msg_size(&f[2]);
    memcpy(name, zmq_msg_data(&f[2]), len);
    name[len] = 0;
    if (!lc_event_name_valid(name, len)) {
        self->stats.malformed++;
        s_refuse(self, c, h, name, LC_STATUS_BAD_NAME,
                 "invalid event name '%.200s': use 1-64 characters of [a-z0-9_]", name);
        return;
    }
    if (s_reserved_event(name, len)) {
        s_refuse(self, c, h, name, LC_STATUS_DENIED, "only the broker sends '%s'", name);
        return;
    }
    if (c->module->state != MS_ACTIVE && !h->parent && !(h->flags & LC_FLAG_IN_HANDLER)) {
        self->stats.not_active++;
        s_refuse(self, c, h, name, LC_STATUS_NOT_ACTIVE,
                 "module '%s' is %s: it may send events only from a handler", c->module->name,
                 broker_state_name(c->module->state));
        return;
    }
    size_t own = broker_sent_queued(self, c->module->name);
    if (own >= s_max_sent(self)) {
        c->module->count.sends_refused++;
        s_refuse(self, c, h, name, LC_STATUS_QUEUE_FULL,
                 "module '%s' has %zu tasks and events of its own queued or in flight, its "
                 "limit (--max-sent)",
                 c->module->name, own);
        return;
    }
    if (self->queued >= self->cfg.max_queue) {
        s_refuse(self, c, h, name, LC_STATUS_QUEUE_FULL, "the bus queue is full (%zu items)",
                 self->cfg.max_queue);
        return;
    }
    uint64_t id = broker_next_id(self);
    bool is_exit = len == 4 && memcmp(name, "exit", 4) == 0;
    if (!idmap_get(&self->subs_exact, broker_hash(name, len)) && !self->subs_wild && !is_exit) {
        /* Nobody listens: no copy, no allocation. */
        self->stats.events++;
        if (broker_tapping(self)) {
            blob_t *b = blob_new(zmq_msg_data(&f[4]), zmq_msg_size(&f[4]));
            bq_item_t *it = b ? s_item_new(self, BQ_EVENT, name, len, c->module->name, b, h, id,
                                           false)
                              : NULL;
            if (it)
                s_tap_item(self, TAP_ACCEPTED, it, name, NULL, 0);
            bq_item_free(&self->pool, it);
            blob_unref(&b);
        }
        if (h->flags & LC_FLAG_CONFIRM)
            s_notice(self, c, h, id, LC_STATUS_OK, 0, name,
                     json_pack("{s:i, s:[]}", "subscribers", 0, "dropped"));
        return;
    }
    blob_t *payload = blob_new(zmq_msg_data(&f[4]), zmq_msg_size(&f[4]));
    if (!payload) {
        s_refuse(self, c, h, name, LC_STATUS_INTERNAL, "broker out of memory");
        return;
    }
    json_t *dropped = json_array();
    lc_hdr_t hx = *h;
    if (is_exit)
        hx.priority = LC_PRIORITY_HIGHEST; /* decision 11: exit goes first */
    size_t offered =
        s_fanout(self, name, len, c->module, c->module->name, payload, &hx, id, true, dropped);
    blob_unref(&payload);
    self->stats.events++;
    size_t ndropped = json_array_size(dropped);
    if ((h->flags & LC_FLAG_CONFIRM) || ndropped) {
        const conn_t *to = (h->flags & LC_FLAG_CONFIRM) ? c : c->module->main;
        json_t *body =
            json_pack("{s:I, s:O}", "subscribers", (json_int_t)offered, "dropped", dropped);
        if (ndropped)
            json_object_set_new(body, "message",
                                json_sprintf("%zu of %zu subscribers of '%s' had a full backlog "
                                             "and lost this event",
                                             ndropped, offered, name));
        s_notice(self, to ? to : c, h, id, ndropped ? LC_STATUS_QUEUE_FULL : LC_STATUS_OK,
                 ndropped ? LC_FLAG_PARTIAL : 0, name, body);
    }
    json_decref(dropped);
    if (is_exit) {
        char why[128];
        snprintf(why, sizeof why, "'exit' emitted by %s", c->module->name);
        broker_exit_start(self, why, false);
    }
}

void broker_emit(broker_t *self, const char *event, json_t *args)
{
    json_t *body = args ? args : json_object();
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    blob_t *payload = text ? blob_new(text, strlen(text)) : NULL;
    free(text);
    if (!payload)
        return;
    lc_hdr_t h = {.priority =
                      strcmp(event, "exit") == 0 ? LC_PRIORITY_HIGHEST : LC_PRIORITY_NORMAL};
    /* The broker's own events never count as work, so idle cannot loop (decision 5). */
    s_fanout(self, event, strlen(event), NULL, "broker", payload, &h, broker_next_id(self), false,
             NULL);
    blob_unref(&payload);
}

/* ---- Completions ---------------------------------------------------------------------- */

void broker_on_done(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    module_t *m = c->module;
    size_t n = zmq_msg_size(&f[4]);
    if (n % DONE_RECORD) {
        self->stats.malformed++;
        broker_error(self, c, h, 0, LC_STATUS_MALFORMED, "DONE payload must be records of %d bytes",
                     DONE_RECORD);
        return;
    }
    const uint8_t *p = zmq_msg_data(&f[4]);
    if (broker_tapping(self)) {
        lc_hdr_t d = {.type = LC_MSG_DONE, .parent = h->parent, .time_us = lc_now_us()};
        uint8_t hb[LC_HDR_SIZE];
        lc_hdr_encode(&d, hb);
        broker_tap_record(self, TAP_ACCEPTED, hb, NULL, 0, m->name, NULL, 0, p, n);
    }
    for (size_t off = 0; off < n; off += DONE_RECORD) {
        bq_item_t *it = idmap_take(&m->inflight, lc_hdr_get_u64(p, off));
        if (!it)
            continue; /* not (or no longer) in flight to this module */
        if (lc_hdr_get_u32(p, off + 8) != 0) {
            m->count.failed++;
            self->stats.failed++;
        }
        m->count.done++;
        self->stats.done++;
        s_item_retire(self, it);
    }
    /* The completion names the item the module started next (decision 2). */
    if (h->parent) {
        bq_item_t *it = idmap_get(&m->inflight, h->parent);
        if (it)
            it->started = true;
    }
    idmap_shrink(&m->inflight); /* not the size of its largest backlog for good */
    broker_pump(self, m);
}

void broker_idle_check(broker_t *self)
{
    if (self->busy && self->work == 0) {
        self->busy = false;
        self->stats.idle++;
        broker_emit(self, "becoming_idle", NULL);
    }
}

/* ---- A module went away --------------------------------------------------------------- */

static int s_by_id_desc(const void *a, const void *b)
{
    uint64_t x = (*(bq_item_t *const *)a)->id, y = (*(bq_item_t *const *)b)->id;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* With no start on record, the item the module would have started first is presumed to
 * have started: its start notice may have died with the process. So a task that crashes
 * its module at once is not delivered again and again. */
static void s_presume_started(module_t *m)
{
    bq_item_t *first = NULL;
    for (size_t i = 0; i < m->inflight.cap; i++) {
        bq_item_t *it = m->inflight.values[i];
        if (!it)
            continue;
        if (it->started)
            return;
        if (!first || it->priority < first->priority ||
            (it->priority == first->priority && it->id < first->id))
            first = it;
    }
    if (first)
        first->started = true;
}

/* What the module's ledger says of its items in flight: those it finished count as done
 * (their DONE died with its process, or is still on its old connection), those it started
 * are marked so. True when the ledger is complete, so that nothing needs presuming. */
static bool s_ledger_apply(broker_t *self, module_t *m)
{
    uint32_t n = 0;
    bool complete = false;
    uint8_t *slots = broker_ledger_read(m->ledger_fd, &n, &complete);
    if (!slots)
        return false;
    size_t done = 0, started = 0;
    for (uint32_t i = 0; i < n && m->inflight.count; i++) {
        const uint8_t *s = slots + (size_t)i * LC_LEDGER_SLOT;
        uint64_t id;
        uint32_t state;
        memcpy(&id, s, 8);
        memcpy(&state, s + 8, 4);
        if (state == LC_LEDGER_STARTED) {
            bq_item_t *it = idmap_get(&m->inflight, id);
            if (it && !it->started) {
                it->started = true;
                started++;
            }
        } else if (state == LC_LEDGER_DONE || state == LC_LEDGER_FAILED) {
            bq_item_t *it = idmap_take(&m->inflight, id);
            if (!it)
                continue; /* its DONE arrived, or an item of an earlier broker */
            if (state == LC_LEDGER_FAILED) {
                m->count.failed++;
                self->stats.failed++;
            }
            m->count.done++;
            self->stats.done++;
            self->stats.ledger_done++;
            done++;
            s_item_retire(self, it);
        }
    }
    free(slots);
    if (done || started)
        broker_log(self, L_DEBUG, "module %s: its ledger shows %zu item(s) finished whose DONE "
                   "never arrived, %zu started%s", m->name, done, started,
                   complete ? "" : " (incomplete: it ran out of slots)");
    return complete;
}

void broker_inflight_lost(broker_t *self, module_t *m, bool crashed)
{
    /* The ledger tells exactly what ran (it is closed at a BYE): after a crash the DONEs
     * that died with the process, after a new registration of the same client on another
     * connection the DONE naming the item it started, which may still be on the old one.
     * Without a complete ledger, a dead process's start is presumed. */
    bool exact = m->ledger_fd >= 0 && m->inflight.count && s_ledger_apply(self, m);
    if (crashed && !exact)
        s_presume_started(m);
    size_t n = m->inflight.count, k = 0;
    bq_item_t **back = n ? malloc(n * sizeof *back) : NULL;
    for (size_t i = 0; i < m->inflight.cap; i++) {
        bq_item_t *it = m->inflight.values[i];
        if (!it)
            continue;
        if (it->started || !back) {
            /* It ran, or may have: reported, never delivered twice. */
            m->count.lost++;
            self->stats.lost++;
            if (broker_log_allowed(self, LOG_LOST))
                broker_log(self, L_WARNING,
                           "%s %s (id %llu, from %s) was being handled by %s "
                           "when it went away; it is not delivered again",
                           it->kind == BQ_TASK ? "task" : "event", it->name,
                           (unsigned long long)it->id, it->source, m->name);
            if (broker_tapping(self))
                s_tap_lost(self, it, m);
            s_item_retire(self, it);
        } else {
            back[k++] = it;
        }
    }
    idmap_clear(&m->inflight);
    /* Delivered but never started: back to the front, in their original order. */
    if (k)
        qsort(back, k, sizeof *back, s_by_id_desc);
    for (size_t i = 0; i < k; i++) {
        broker_queue_push_front(&m->queue, back[i]);
        self->queued++;
        m->count.redelivered++;
        self->stats.redelivered++;
    }
    free(back);
}

void broker_queue_discard(broker_t *self, module_t *m)
{
    bq_item_t *it;
    while ((it = broker_queue_pop(&m->queue))) {
        self->queued--;
        m->count.lost++;
        self->stats.lost++;
        if (broker_tapping(self))
            s_tap_lost(self, it, m);
        s_item_retire(self, it);
    }
}
