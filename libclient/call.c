/* liblc: synchronous and asynchronous calls, and answering them. */
#include "client_int.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_reply_send(lc_request_t *req, int type, int status, char *payload, size_t plen);

/* Queues a finished asynchronous call for its callback on the loop (lock held). */
static void s_ready_push(lc_client_t *self, pending_t *p)
{
    p->next_ready = NULL;
    if (self->ready_tail)
        self->ready_tail->next_ready = p;
    else
        self->ready_head = p;
    self->ready_tail = p;
}

void lcc_pending_free(pending_t *p)
{
    if (p) {
        json_decref(p->result);
        free(p);
    }
}

/* Every open call failed at once: the broker that was to answer it is gone. */
void lcc_fail_all_pending(lc_client_t *self, int rc, const char *why)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->pending.cap; i++) {
        pending_t *p = self->pending.values[i];
        if (!p)
            continue;
        idmap_take_at(&self->pending, &i);
        p->done = true;
        p->rc = rc;
        p->result = lcc_local_error(lc_errno_to_status(rc), "%s", why);
        if (p->fn)
            s_ready_push(self, p);
        /* A synchronous waiter's entry stays with the waiter, which sees done. */
    }
    pthread_mutex_unlock(&self->lock);
}

void lcc_request_finish(lc_request_t *req)
{
    int old = atomic_fetch_or(&req->state, REQ_RETURNED);
    if (!(old & REQ_ANSWERED) && !(old & REQ_DEFERRED))
        lc_reply(req, NULL);
    else if (old & REQ_SENT)
        free(req);
}

void lcc_handle_call(lc_client_t *self, inmsg_t *m)
{
    lc_request_t *req = calloc(1, sizeof *req);
    if (!req)
        return; /* the caller's deadline reports it */
    req->client = self;
    req->hdr = m->hdr;
    lcc_copy(req->source, sizeof req->source, m->source);
    const char *dot = strchr(m->address, '.');
    lcc_copy(req->method, sizeof req->method, dot ? dot + 1 : m->address);
    req->kind = LC_KIND_CALL;
    req->ledger_slot = -1;
    atomic_init(&req->state, 0);

    method_t *method = lcc_method_find(self, req->method);
    if (!method) {
        /* The broker checks methods; this only happens while a declaration is in flight. */
        json_t *e =
            json_pack("{s:s+++}", "message", "no method '", req->method, "' in ", self->reg_name);
        char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        atomic_fetch_or(&req->state, REQ_ANSWERED | REQ_RETURNED);
        s_reply_send(req, LC_MSG_ERROR, LC_STATUS_UNKNOWN_METHOD, text, text ? strlen(text) : 0);
        return;
    }
    size_t n = zmq_msg_size(&m->payload);
    json_t *args = n ? json_loadb(zmq_msg_data(&m->payload), n, 0, NULL) : json_object();
    if (!json_is_object(args)) {
        json_decref(args);
        lc_reply_error(req, -1, "arguments of %s.%s are not a JSON object", self->reg_name,
                       req->method);
        lcc_request_finish(req);
        return;
    }
    char why[400];
    if (lcc_args_check(method, args, why, sizeof why) < 0)
        lc_reply_error(req, 22, "%s.%s: %s", self->reg_name, req->method, why);
    else
        lcc_run_handler(self, req, method->fn, args, method->arg);
    json_decref(args);
    lcc_request_finish(req);
}

static bool s_type_ok(const char *type, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: return strcmp(type, "string") == 0;
    case JSON_INTEGER: return strcmp(type, "integer") == 0 || strcmp(type, "number") == 0;
    case JSON_REAL: return strcmp(type, "number") == 0;
    case JSON_TRUE:
    case JSON_FALSE: return strcmp(type, "boolean") == 0;
    case JSON_OBJECT: return strcmp(type, "object") == 0;
    case JSON_ARRAY: return strcmp(type, "array") == 0;
    case JSON_NULL: return strcmp(type, "null") == 0;
    }
    return false;
}

int lcc_args_check(const method_t *method, json_t *args, char *why, size_t size)
{
    if (!method->args)
        return 0; /* nothing declared: anything goes */
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v)
    {
        json_t *type = json_object_get(method->args, key);
        if (!type) {
            char known[256] = "";
            const char *k;
            json_t *t;
            json_object_foreach(method->args, k, t)
            {
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s: %s",
                         known[0] ? ", " : "", k, json_string_value(t));
            }
            snprintf(why, size, "unknown argument '%s' (it takes %s)", key,
                     known[0] ? known : "none");
            return -1;
        }
        const char *want = json_string_value(type);
        if (strcmp(want, "any") != 0 && !s_type_ok(want, v)) {
            static const char *const names[] = {"an object", "an array", "a string",
                                                "an integer", "a number", "true",
                                                "false", "null"};
            snprintf(why, size, "argument '%s' must be of type %s, not %s", key, want,
                     names[json_typeof(v)]);
            return -1;
        }
    }
    return 0;
}

void lcc_run_handler(lc_client_t *self, lc_request_t *req, lc_method_fn *fn, json_t *args,
                     void *arg)
{
    /* What the handler sends continues this message's transaction (decision 6). */
    lc_request_t *outer = self->current;
    self->current = req;
    self->depth++;
    fn(req, args, arg);
    self->depth--;
    self->current = outer;
}

/* Completes the call with sequence number seq; returns true if it was ours. */
bool lcc_complete(lc_client_t *self, inmsg_t *m)
{
    pthread_mutex_lock(&self->lock);
    pending_t *p = idmap_take(&self->pending, m->hdr.seq);
    if (!p) {
        pthread_mutex_unlock(&self->lock);
        return false; /* answered too late: the caller already gave up */
    }
    size_t n = zmq_msg_size(&m->payload);
    const char *d = zmq_msg_data(&m->payload);
    if (m->hdr.type == LC_MSG_NOTICE) {
        /* Accepted (possibly with subscribers that lost their copy), or refused. */
        bool ok = m->hdr.status == LC_STATUS_OK || (m->hdr.flags & LC_FLAG_PARTIAL);
        p->rc = ok ? 0 : lc_status_to_errno((int)m->hdr.status);
        p->result = n ? json_loadb(d, n, 0, NULL) : NULL;
        if (!json_is_object(p->result)) {
            json_decref(p->result);
            p->result = ok ? json_object()
                           : json_pack("{s:s}", "message", lc_status_name((int)m->hdr.status));
        }
        if (!ok && !json_object_get(p->result, "code"))
            json_object_set_new(p->result, "code", json_integer((json_int_t)m->hdr.status));
    } else if (m->hdr.type == LC_MSG_REPLY) {
        json_error_t err;
        p->result = n ? json_loadb(d, n, JSON_DECODE_ANY, &err) : json_null();
        p->rc = p->result ? 0 : LC_EPROTO;
        if (!p->result)
            p->result = lcc_local_error(LC_STATUS_MALFORMED, "answer of %s is not JSON: %s",
                                        p->target, err.text);
    } else {
        p->rc = lc_status_to_errno((int)m->hdr.status);
        p->result = lcc_error_object((int)m->hdr.status, d, n);
    }
    p->done = true;
    if (p->fn)
        s_ready_push(self, p);
    pthread_mutex_unlock(&self->lock);
    return true;
}

static bool s_call_done(lc_client_t *self, void *ctx)
{
    (void)self;
    return ((pending_t *)ctx)->done;
}

/* ---- Calls ---------------------------------------------------------------------------- */

static pending_t *s_pending_new(lc_client_t *self, const char *target, int timeout_ms,
                                lc_call_fn *fn, void *arg)
{
    pending_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->fn = fn;
    p->arg = arg;
    p->timeout_ms = timeout_ms > 0 ? timeout_ms : self->timeout_ms;
    p->deadline = lc_mono_ms() + p->timeout_ms;
    snprintf(p->target, sizeof p->target, "%s", target);
    p->seq = atomic_fetch_add(&self->seq, 1) + 1;
    return p;
}

int lc_call(lc_client_t *self, const char *target, json_t *args, json_t **result, int timeout_ms)
{
    assert(self && self->tag == CLIENT_TAG);
    if (result)
        *result = NULL;
    char *payload;
    size_t plen;
    int rc = lcc_check_target(target);
    if (rc < 0) {
        json_decref(args);
        if (result)
            *result = lcc_local_error(LC_STATUS_BAD_NAME,
                                      "invalid target '%s': expected "
                                      "module.method",
                                      target ? target : "(null)");
        return rc;
    }
    if ((rc = lcc_dump_args(args, &payload, &plen)) < 0) {
        if (result)
            *result = lcc_local_error(LC_STATUS_MALFORMED, "arguments must be a JSON object");
        return rc;
    }
    int tmo = timeout_ms > 0 ? timeout_ms : self->timeout_ms;
    int64_t deadline = lc_mono_ms() + tmo;
    if (self->max_payload && plen > self->max_payload) {
        free(payload);
        if (result)
            *result = lcc_local_error(LC_STATUS_TOO_LARGE,
                                      "arguments of %zu bytes are over the "
                                      "bus limit of %zu bytes",
                                      plen, self->max_payload);
        return LC_ETOOBIG;
    }
    if (!lcc_on_loop(self))
        return lcc_sat_call(self, target, payload, plen, result, tmo, deadline);

    if ((rc = lcc_connect_until(self, deadline)) == 0 && self->max_payload &&
        plen > self->max_payload) {
        free(payload);
        if (result)
            *result = lcc_local_error(LC_STATUS_TOO_LARGE,
                                      "arguments of %zu bytes are over the bus limit of %zu bytes",
                                      plen, self->max_payload);
        return LC_ETOOBIG;
    }
    if (rc < 0) {
        free(payload);
        if (result)
            *result = lcc_local_error(lc_errno_to_status(rc), "%s",
                                      rc == LC_ENOBUS ? "no broker answered at the endpoint"
                                                      : self->reg_message);
        lcc_rearm(self);
        return rc;
    }
    pending_t *p = s_pending_new(self, target, tmo, NULL, NULL);
    if (!p) {
        free(payload);
        return LC_ENOMEM;
    }
    pthread_mutex_lock(&self->lock);
    rc = idmap_put(&self->pending, p->seq, p);
    pthread_mutex_unlock(&self->lock);
    if (rc < 0) {
        free(payload);
        free(p);
        return LC_ENOMEM;
    }
    lc_hdr_t h = {.type = LC_MSG_CALL, .seq = p->seq, .timeout_ms = (uint32_t)tmo};
    lcc_inherit(self, &h, 0);
    rc = lcc_send(self->sock, &h, target, NULL, payload, plen, deadline);
    if (rc == 0) {
        rc = lcc_main_wait(self, s_call_done, p, deadline);
    }
    pthread_mutex_lock(&self->lock);
    if (!p->done) /* timed out or not sent: forget it */
        idmap_take(&self->pending, p->seq);
    pthread_mutex_unlock(&self->lock);
    if (p->done) {
        rc = p->rc;
        if (result) {
            *result = p->result;
            p->result = NULL;
        }
    } else if (result) {
        *result =
            rc == LC_ETIMEDOUT
                ? lcc_local_error(LC_STATUS_TIMEOUT, "no answer from %s within %d ms", target, tmo)
                : lcc_local_error(lc_errno_to_status(rc), "%s", lc_strerror(rc));
    }
    lcc_pending_free(p);
    lcc_rearm(self);
    return rc;
}

int lc_call_async(lc_client_t *self, const char *target, json_t *args, int timeout_ms,
                  lc_call_fn *fn, void *arg)
{
    assert(self && self->tag == CLIENT_TAG);
    char *payload;
    size_t plen;
    int rc = lcc_check_target(target);
    if (rc < 0 || !fn) {
        json_decref(args);
        return LC_EINVAL;
    }
    if ((rc = lcc_dump_args(args, &payload, &plen)) < 0)
        return rc;
    if (self->max_payload && plen > self->max_payload) {
        free(payload);
        return LC_ETOOBIG;
    }
    pending_t *p = s_pending_new(self, target, timeout_ms, fn, arg);
    if (!p) {
        free(payload);
        return LC_ENOMEM;
    }
    bool on_loop = lcc_on_loop(self);
    if (on_loop && (rc = lcc_connect_until(self, p->deadline)) < 0) {
        free(payload);
        free(p);
        return rc;
    }
    pthread_mutex_lock(&self->lock);
    rc = idmap_put(&self->pending, p->seq, p);
    if (rc == 0 && (rc = heap_push(&self->deadlines, p->deadline, p->seq)) < 0)
        idmap_take(&self->pending, p->seq);
    if (rc == 0) /* the entries of calls answered in time */
        heap_prune(&self->deadlines, &self->pending);
    pthread_mutex_unlock(&self->lock);
    if (rc < 0) {
        free(payload);
        free(p);
        return LC_ENOMEM;
    }
    lc_hdr_t h = {.type = LC_MSG_CALL, .seq = p->seq, .timeout_ms = (uint32_t)p->timeout_ms};
    lcc_inherit(self, &h, 0);
    if (on_loop) {
        rc = lcc_send_main(self, &h, target, payload, plen, p->deadline);
    } else {
        /* The answer goes to the loop thread, where the callback runs. */
        h.flags = LC_FLAG_REPLY_MAIN;
        sat_t *sat = lcc_sat_get(self);
        rc = !sat ? LC_ENOMEM : lcc_sat_ready(sat, p->deadline, NULL);
        if (rc == 0)
            rc = lcc_send(sat->sock, &h, target, NULL, payload, plen, p->deadline);
        else
            free(payload);
        lcc_wake(self); /* the loop's next timeout may now be this deadline */
    }
    if (rc < 0) {
        pthread_mutex_lock(&self->lock);
        p = idmap_take(&self->pending, h.seq);
        pthread_mutex_unlock(&self->lock);
        lcc_pending_free(p); /* NULL if the loop already completed it */
    }
    return rc;
}

/* ---- Answers (the callee side) -------------------------------------------------------- */

static int s_reply_send(lc_request_t *req, int type, int status, char *payload, size_t plen)
{
    lc_client_t *self = req->client;
    if (req->kind != LC_KIND_CALL) {
        /* A task or event: nothing goes back but its completion. */
        if (status != 0) {
            json_t *e = plen ? json_loadb(payload, plen, 0, NULL) : NULL;
            /* Decision 14: critical, with module, handler and transaction, and a record in
             * the exception log when the module has one (lc-launch sets it). */
            const char *why = json_string_value(json_object_get(e, "message"));
            lc_log(self, LC_LOG_CRITICAL, "%s %s (tx %llu, from %s) failed: %s",
                   req->kind == LC_KIND_TASK ? "task" : "event handler", req->method,
                   (unsigned long long)req->hdr.tx, req->source, why ? why : "");
            lcc_exception_record(self, req, why);
            json_decref(e);
        }
        free(payload);
        lcc_item_finished(req, status != 0);
        int old = atomic_fetch_or(&req->state, REQ_SENT);
        if (old & REQ_RETURNED)
            free(req);
        return 0;
    }
    if (self->max_payload && plen > self->max_payload) {
        /* The caller learns why instead of waiting for its deadline. */
        char *text = NULL;
        if (asprintf(&text, "{\"code\":-1,\"message\":\"answer of %zu bytes is over the bus "
                            "limit of %zu bytes\"}", plen, self->max_payload) < 0)
            text = NULL;
        free(payload);
        payload = text;
        plen = text ? strlen(text) : 0;
        type = LC_MSG_ERROR;
        status = LC_STATUS_HANDLER;
    }
    lc_hdr_t h = {.type = (uint8_t)type,
                  .status = (uint32_t)status,
                  .parent = req->hdr.id,
                  .tx = req->hdr.tx,
                  .priority = req->hdr.priority};
    h.seq = atomic_fetch_add(&self->seq, 1) + 1;
    int rc;
    if (lcc_on_loop(self)) {
        rc = lcc_send_main(self, &h, NULL, payload, plen, lc_mono_ms() + self->timeout_ms);
    } else {
        sat_t *sat = lcc_sat_get(self);
        int64_t deadline = lc_mono_ms() + self->timeout_ms;
        rc = !sat ? LC_ENOMEM : lcc_sat_ready(sat, deadline, NULL);
        if (rc == 0)
            rc = lcc_send(sat->sock, &h, NULL, NULL, payload, plen, deadline);
        else
            free(payload);
    }
    int old = atomic_fetch_or(&req->state, REQ_SENT);
    if (old & REQ_RETURNED)
        free(req);
    return rc;
}

int lc_reply(lc_request_t *req, json_t *result)
{
    assert(req);
    if (atomic_fetch_or(&req->state, REQ_ANSWERED) & REQ_ANSWERED) {
        json_decref(result);
        return LC_EINVAL; /* answered twice: the second answer is dropped */
    }
    char *text = json_dumps(result ? result : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(result);
    if (!text) {
        const char *fail = "{\"code\":-1,\"message\":\"the answer could not be encoded\"}";
        return s_reply_send(req, LC_MSG_ERROR, LC_STATUS_HANDLER, strdup(fail), strlen(fail));
    }
    return s_reply_send(req, LC_MSG_REPLY, 0, text, strlen(text));
}

int lc_reply_error(lc_request_t *req, int code, const char *fmt, ...)
{
    assert(req);
    if (atomic_fetch_or(&req->state, REQ_ANSWERED) & REQ_ANSWERED)
        return LC_EINVAL;
    char msg[1024] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    json_t *e = json_pack("{s:i, s:s}", "code", code, "message", msg);
    char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s_reply_send(req, LC_MSG_ERROR, LC_STATUS_HANDLER, text, text ? strlen(text) : 0);
}

int lc_done(lc_request_t *req)
{
    return lc_reply(req, NULL);
}

int lc_request_kind(const lc_request_t *req)
{
    return req->kind;
}

void lc_defer(lc_request_t *req)
{
    assert(req);
    atomic_fetch_or(&req->state, REQ_DEFERRED);
}

const char *lc_request_source(const lc_request_t *req)
{
    return req->source;
}
const char *lc_request_method(const lc_request_t *req)
{
    return req->method;
}
uint64_t lc_request_tx(const lc_request_t *req)
{
    return req->hdr.tx;
}
uint64_t lc_request_id(const lc_request_t *req)
{
    return req->hdr.id;
}
uint64_t lc_request_parent(const lc_request_t *req)
{
    return req->hdr.parent;
}
int lc_request_priority(const lc_request_t *req)
{
    return req->hdr.priority ? req->hdr.priority : LC_PRIORITY_NORMAL;
}
uint64_t lc_request_time_us(const lc_request_t *req)
{
    return req->hdr.time_us;
}
lc_client_t *lc_request_client(const lc_request_t *req)
{
    return req->client;
}

/* ---- The loop ------------------------------------------------------------------------- */

void lcc_expire_calls(lc_client_t *self, int64_t now)
{
    pthread_mutex_lock(&self->lock);
    const heap_entry_t *top;
    while ((top = heap_top(&self->deadlines)) && top->when <= now) {
        uint64_t seq = top->key;
        heap_pop(&self->deadlines);
        pending_t *p = idmap_take(&self->pending, seq);
        if (!p)
            continue; /* answered in time */
        p->done = true;
        p->rc = LC_ETIMEDOUT;
        p->result = lcc_local_error(LC_STATUS_TIMEOUT, "no answer from %s within %d ms", p->target,
                                    p->timeout_ms);
        s_ready_push(self, p);
    }
    pthread_mutex_unlock(&self->lock);
}

void lcc_run_ready(lc_client_t *self)
{
    for (;;) {
        pthread_mutex_lock(&self->lock);
        pending_t *p = self->ready_head;
        if (p) {
            self->ready_head = p->next_ready;
            if (!self->ready_head)
                self->ready_tail = NULL;
        }
        pthread_mutex_unlock(&self->lock);
        if (!p)
            return;
        p->fn(self, p->rc, p->result, p->arg);
        lcc_pending_free(p);
    }
}
