/* liblc: clients, registration and the loop. See lc.h for the contract and
 * docs/architecture.md for the threads and sockets involved. */
#include "client_int.h"

#include <assert.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

/* ---- Small helpers -------------------------------------------------------------------- */

const char *lc_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case LC_EINVAL:
        return "invalid argument or name";
    case LC_ENOMEM:
        return "out of memory";
    case LC_EHANDLER:
        return "the handler returned an error";
    case LC_ENOMODULE:
        return "unknown module";
    case LC_ENOMETHOD:
        return "unknown method";
    case LC_ENOTREADY:
        return "module not ready";
    case LC_EGONE:
        return "module gone";
    case LC_ETIMEDOUT:
        return "timed out";
    case LC_ETOOBIG:
        return "payload too large";
    case LC_EPROTO:
        return "malformed message";
    case LC_EVERSION:
        return "protocol version not supported";
    case LC_ENAMETAKEN:
        return "name taken by a live module";
    case LC_ENOBUS:
        return "bus unreachable";
    case LC_EQUEUEFULL:
        return "queue full";
    case LC_ENOTACTIVE:
        return "module not active";
    case LC_EDENIED:
        return "denied";
    case LC_EBUSY:
        return "busy";
    default:
        return strerror(code < 0 ? -code : code);
    }
}

int lc_endpoint_default(char *buf, size_t size)
{
    const char *env = getenv("LC_BUS");
    int n;
    if (env && *env)
        n = snprintf(buf, size, "%s", env);
    else if (getenv("XDG_RUNTIME_DIR") && *getenv("XDG_RUNTIME_DIR"))
        n = snprintf(buf, size, "ipc://%s/lc/bus", getenv("XDG_RUNTIME_DIR"));
    else
        n = snprintf(buf, size, "ipc:///tmp/lc-%u/bus", (unsigned)getuid());
    return (n < 0 || (size_t)n >= size) ? LC_EINVAL : 0;
}

/* Copies a string, cutting it to fit (names are checked elsewhere; this only bounds). */
void lcc_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

bool lcc_on_loop(lc_client_t *self)
{
    return pthread_equal(pthread_self(), self->loop_thread);
}

void lcc_wake(lc_client_t *self)
{
    uint64_t one = 1;
    ssize_t n = write(self->wake_fd, &one, sizeof one);
    (void)n; /* a full counter still wakes the loop */
}

int lcc_int_timeout(int64_t deadline)
{
    int64_t left = deadline - lc_mono_ms();
    if (left < 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

static void s_free_frame(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends one message as its four frames. payload is malloc'd and stolen (may be NULL).
 * Waits for room until deadline (monotonic ms; 0: do not wait). */
int lcc_send(void *sock, const lc_hdr_t *hdr, const char *address, const char *source,
             char *payload, size_t plen, int64_t deadline)
{
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_encode(hdr, hb);
    for (;;) {
        if (zmq_send(sock, hb, sizeof hb, ZMQ_SNDMORE | ZMQ_DONTWAIT) == (int)sizeof hb)
            break;
        if (errno != EAGAIN || deadline == 0 || lc_mono_ms() >= deadline) {
            free(payload);
            return errno == EAGAIN ? LC_ENOBUS : -errno;
        }
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLOUT, 0};
        zmq_poll(&item, 1, lcc_int_timeout(deadline));
    }
    /* Once the first frame is accepted, ZeroMQ accepts the rest of the message. */
    zmq_send(sock, address ? address : "", address ? strlen(address) : 0, ZMQ_SNDMORE);
    zmq_send(sock, source ? source : "", source ? strlen(source) : 0, ZMQ_SNDMORE);
    zmq_msg_t pm;
    if (payload && plen) {
        zmq_msg_init_data(&pm, payload, plen, s_free_frame, NULL);
    } else {
        free(payload);
        zmq_msg_init(&pm);
    }
    zmq_msg_send(&pm, sock, 0);
    return 0;
}

/* Receives one message. Returns 0, -EAGAIN when nothing is waiting, LC_EPROTO for a
 * message that is not a valid lc message (it is consumed and dropped). */
int lcc_recv(void *sock, inmsg_t *m, int flags)
{
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, sock, flags) < 0) {
        zmq_msg_close(&f);
        return -errno;
    }
    int part = 0, rc = 0;
    zmq_msg_init(&m->payload);
    for (;;) {
        size_t n = zmq_msg_size(&f);
        const uint8_t *d = zmq_msg_data(&f);
        switch (part) {
        case LC_FRAME_HEADER:
            if (lc_hdr_decode(d, n, &m->hdr) != LC_STATUS_OK)
                rc = LC_EPROTO;
            break;
        case LC_FRAME_ADDRESS:
        case LC_FRAME_SOURCE: {
            char *dst = part == LC_FRAME_ADDRESS ? m->address : m->source;
            size_t max = part == LC_FRAME_ADDRESS ? LC_ADDRESS_MAX : LC_NAME_MAX;
            if (n > max) {
                rc = LC_EPROTO;
                n = 0;
            }
            memcpy(dst, d, n);
            dst[n] = 0;
            break;
        }
        case LC_FRAME_PAYLOAD:
            zmq_msg_move(&m->payload, &f);
            break;
        default:
            rc = LC_EPROTO;
        }
        part++;
        bool more = zmq_msg_more(&f);
        if (!more)
            break;
        zmq_msg_recv(&f, sock, 0);
    }
    zmq_msg_close(&f);
    if (part != LC_FRAMES)
        rc = LC_EPROTO;
    if (rc)
        zmq_msg_close(&m->payload);
    return rc;
}

void lcc_inmsg_close(inmsg_t *m)
{
    zmq_msg_close(&m->payload);
}

/* Parses an error payload into {"code", "message"}; status is the wire status. */
json_t *lcc_error_object(int status, const char *data, size_t len)
{
    json_t *p = len ? json_loadb(data, len, 0, NULL) : NULL;
    json_t *msg = json_is_object(p) ? json_object_get(p, "message") : NULL;
    json_t *code = json_is_object(p) ? json_object_get(p, "code") : NULL;
    json_t *out = json_pack(
        "{s:I, s:s}", "code",
        (json_int_t)(status == LC_STATUS_HANDLER && json_is_integer(code) ? json_integer_value(code)
                                                                          : status),
        "message", json_is_string(msg) ? json_string_value(msg) : lc_status_name(status));
    json_decref(p);
    return out;
}

json_t *lcc_local_error(int status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return json_pack("{s:i, s:s}", "code", status, "message", buf);
}

/* Serialises args (stolen; NULL means {}) into a malloc'd buffer. */
int lcc_dump_args(json_t *args, char **out, size_t *len)
{
    if (!args) {
        *out = NULL;
        *len = 0;
        return 0;
    }
    if (!json_is_object(args)) {
        json_decref(args);
        return LC_EINVAL;
    }
    *out = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(args);
    if (!*out)
        return LC_ENOMEM;
    *len = strlen(*out);
    return 0;
}

int lcc_check_target(const char *target)
{
    if (!target)
        return LC_EINVAL;
    const char *dot = strchr(target, '.');
    if (!dot || !lc_name_valid(target, (size_t)(dot - target)) ||
        !lc_method_name_valid(dot + 1, strlen(dot + 1)))
        return LC_EINVAL;
    return 0;
}

lc_client_t *lc_client_new(const char *name, const char *endpoint)
{
    if (name && (!lc_name_valid(name, strlen(name)))) {
        errno = EINVAL;
        return NULL;
    }
    lc_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->tag = CLIENT_TAG;
    self->wake_fd = self->epoll_fd = self->hb_stop_fd = -1;
    snprintf(self->name, sizeof self->name, "%s", name ? name : "");
    if (endpoint) {
        if (strlen(endpoint) >= sizeof self->endpoint) {
            free(self);
            errno = EINVAL;
            return NULL;
        }
        snprintf(self->endpoint, sizeof self->endpoint, "%s", endpoint);
    } else if (lc_endpoint_default(self->endpoint, sizeof self->endpoint) < 0) {
        free(self);
        errno = EINVAL;
        return NULL;
    }
    self->is_tcp = strncmp(self->endpoint, "tcp://", 6) == 0;
    self->loop_thread = pthread_self();
    self->timeout_ms = LC_CALL_TIMEOUT_MS;
    self->concurrency = 1;
    self->window = 64;
    uint64_t token = 0;
    if (getrandom(&token, sizeof token, 0) != sizeof token)
        token = (uint64_t)lc_now_us() ^ ((uint64_t)getpid() << 32);
    snprintf(self->token, sizeof self->token, "%016" PRIx64, token);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->reg_cond, NULL);
    idmap_init(&self->pending);
    idmap_init(&self->timers);
    heap_init(&self->deadlines);
    ledger_init(&self->ledger);
    heap_init(&self->timer_heap);
    if (pthread_key_create(&self->sat_key, lcc_sat_destroy) != 0) {
        free(self);
        errno = EAGAIN;
        return NULL;
    }

    self->signal_fd = -1;
    self->handle_signals = true;
    self->lifecycle = self->name[0] != 0;
    self->log_level = LC_LOG_INFO;
    const char *level = getenv("LC_LOG_LEVEL");
    if (level && lc_log_level_parse(level) >= 0)
        self->log_level = lc_log_level_parse(level);
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->ctx = zmq_ctx_new();
    if (self->wake_fd < 0 || !self->ctx)
        goto fail;
    zmq_ctx_set(self->ctx, ZMQ_BLOCKY, 0);
    /* ZeroMQ starts its I/O thread with the first socket: with the loop's signals blocked,
     * so that they reach the loop's signalfd and never that thread. */
    sigset_t old;
    lcc_block_signals(&old);
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!self->sock)
        goto fail;
    /* A module started beside its broker often connects a moment before the broker binds:
     * the first retry comes soon (10 ms), later ones back off to 100 ms. */
    int one = 1, linger = 1000, hwm = 100000, ivl = 10, ivl_max = 100;
    zmq_setsockopt(self->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    if (self->is_tcp) {
        /* ZMTP heartbeats notice a broker host that vanished without closing. */
        int hb = 1000, hbt = 3000;
        zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb);
        zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_TIMEOUT, &hbt, sizeof hbt);
    }
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://lc-monitor-%p", (void *)self);
    if (zmq_socket_monitor(self->sock, mon,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) < 0)
        goto fail;
    self->monitor = zmq_socket(self->ctx, ZMQ_PAIR);
    if (!self->monitor || zmq_connect(self->monitor, mon) < 0)
        goto fail;
    if (zmq_connect(self->sock, self->endpoint) < 0)
        goto fail;
    return self;
fail:;
    int err = errno ? errno : ENOMEM;
    lc_client_destroy(&self);
    errno = err == EPROTONOSUPPORT || err == ENOENT ? EINVAL : err;
    return NULL;
}

void lc_client_destroy(lc_client_t **self_p)
{
    assert(self_p);
    lc_client_t *self = *self_p;
    if (!self)
        return;
    assert(self->tag == CLIENT_TAG);
    if (self->sock && self->reg == REG_DONE) {
        lc_hdr_t h = {.type = LC_MSG_BYE, .seq = atomic_fetch_add(&self->seq, 1) + 1};
        lcc_send(self->sock, &h, NULL, NULL, NULL, 0, 0);
    }
    lcc_threads_stop(self, 0);
    if (self->hb_running) {
        uint64_t one = 1;
        if (write(self->hb_stop_fd, &one, sizeof one) == sizeof one)
            pthread_join(self->hb_thread, NULL);
    }
    if (self->hb_stop_fd >= 0)
        close(self->hb_stop_fd);
    pthread_key_delete(self->sat_key);
    while (self->sats) {
        sat_t *s = self->sats;
        self->sats = s->next;
        zmq_close(s->sock);
        free(s);
    }
    if (self->sock)
        zmq_socket_monitor(self->sock, NULL, 0);
    if (self->monitor)
        zmq_close(self->monitor);
    if (self->sock)
        zmq_close(self->sock);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    if (self->epoll_fd >= 0)
        close(self->epoll_fd);
    for (size_t i = 0; i < self->pending.cap; i++)
        if (self->pending.values[i])
            lcc_pending_free(self->pending.values[i]);
    idmap_clear(&self->pending);
    while (self->ready_head) {
        pending_t *p = self->ready_head;
        self->ready_head = p->next_ready;
        lcc_pending_free(p);
    }
    for (size_t i = 0; i < self->timers.cap; i++)
        free(self->timers.values[i]);
    idmap_clear(&self->timers);
    heap_clear(&self->deadlines);
    heap_clear(&self->timer_heap);
    for (size_t i = 0; i < self->nmethods; i++) {
        free(self->methods[i].help);
        json_decref(self->methods[i].args);
    }
    free(self->methods);
    lcc_queue_clear(self);
    lcc_config_free(self);
    if (self->signal_fd >= 0)
        close(self->signal_fd);
    free(self->handlers);
    free(self->done);
    ledger_close(&self->ledger);
    free(self->sent_slots);
    free(self->watches);
    free(self->poll_items);
    pthread_cond_destroy(&self->reg_cond);
    pthread_mutex_destroy(&self->lock);
    self->tag = 0xDeadBeef;
    free(self);
    *self_p = NULL;
}

const char *lc_client_name(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    return self->reg_name[0] ? self->reg_name : self->name;
}

const char *lc_client_endpoint(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    return self->endpoint;
}

void lc_client_set_timeout(lc_client_t *self, int timeout_ms)
{
    assert(self && self->tag == CLIENT_TAG);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : LC_CALL_TIMEOUT_MS;
}

void lc_client_set_lifecycle(lc_client_t *self, bool on)
{
    assert(self && self->tag == CLIENT_TAG);
    self->lifecycle = on && self->name[0];
}

void lc_client_set_concurrency(lc_client_t *self, int n)
{
    assert(self && self->tag == CLIENT_TAG);
    self->concurrency = n > 0 ? n : 1;
}

void lc_client_set_window(lc_client_t *self, int n)
{
    assert(self && self->tag == CLIENT_TAG);
    self->window = n > 0 && n <= 100000 ? n : 64;
}

static int64_t s_deadline(lc_client_t *self, int timeout_ms)
{
    return lc_mono_ms() + (timeout_ms > 0 ? timeout_ms : self->timeout_ms);
}

/* ---- Methods -------------------------------------------------------------------------- */

method_t *lcc_method_find(lc_client_t *self, const char *name)
{
    for (size_t i = 0; i < self->nmethods; i++)
        if (strcmp(self->methods[i].name, name) == 0)
            return &self->methods[i];
    return NULL;
}

int lc_method(lc_client_t *self, const char *method, lc_method_fn *fn, void *arg)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!method || !fn || !lc_method_name_valid(method, strlen(method)) || !self->name[0] ||
        !lcc_on_loop(self))
        return LC_EINVAL;
    method_t *m = lcc_method_find(self, method);
    if (!m) {
        if (self->nmethods == self->capmethods) {
            size_t cap = self->capmethods ? self->capmethods * 2 : 8;
            method_t *ms = realloc(self->methods, cap * sizeof *ms);
            if (!ms)
                return LC_ENOMEM;
            self->methods = ms;
            self->capmethods = cap;
        }
        m = &self->methods[self->nmethods++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", method);
    }
    m->fn = fn;
    m->arg = arg;
    /* Already registered: a repeated HELLO from the same connection updates the table. */
    if (self->reg == REG_DONE && lcc_on_loop(self))
        return lcc_send_hello(self);
    return 0;
}

static const char *const s_types[] = {"string", "integer", "number", "boolean", "object",
                                      "array",  "null",    "any",    NULL};

int lc_method_doc(lc_client_t *self, const char *method, const char *help, const char *args)
{
    assert(self && self->tag == CLIENT_TAG);
    method_t *m = method ? lcc_method_find(self, method) : NULL;
    if (!m || (help && strchr(help, '\n')))
        return LC_EINVAL;
    json_t *spec = NULL;
    if (args) {
        spec = json_object();
        char *copy = strdup(args), *save = NULL;
        if (!spec || !copy) {
            json_decref(spec);
            free(copy);
            return LC_ENOMEM;
        }
        for (char *w = strtok_r(copy, " ,", &save); w; w = strtok_r(NULL, " ,", &save)) {
            char *colon = strchr(w, ':');
            bool ok = colon && lc_method_name_valid(w, (size_t)(colon - w));
            if (ok) {
                *colon = 0;
                ok = false;
                for (int i = 0; s_types[i]; i++)
                    ok = ok || strcmp(colon + 1, s_types[i]) == 0;
            }
            if (!ok) {
                json_decref(spec);
                free(copy);
                return LC_EINVAL;
            }
            json_object_set_new(spec, w, json_string(colon + 1));
        }
        free(copy);
    }
    free(m->help);
    m->help = help ? strdup(help) : NULL;
    json_decref(m->args);
    m->args = spec;
    return 0;
}

/* ---- Registration --------------------------------------------------------------------- */

static void s_set_reg(lc_client_t *self, int state)
{
    pthread_mutex_lock(&self->lock);
    self->reg = state;
    if (state == REG_DONE)
        self->gen++;
    pthread_cond_broadcast(&self->reg_cond);
    pthread_mutex_unlock(&self->lock);
}

int lcc_send_hello(lc_client_t *self)
{
    json_t *methods = json_array();
    for (size_t i = 0; i < self->nmethods; i++) {
        method_t *m = &self->methods[i];
        json_t *o = json_pack("{s:s}", "name", m->name);
        if (m->help)
            json_object_set_new(o, "help", json_string(m->help));
        if (m->args)
            json_object_set(o, "args", m->args);
        json_array_append_new(methods, o);
    }
    /* On ipc the broker can open the ledger through /proc (same machine, its user); it is
     * made once and kept across reconnections, as item ids never repeat. Each HELLO may
     * bring a larger window (or follow a larger concurrency, or lost DONEs): the ledger
     * grows to keep its slot reuse safe (ledger.c). */
    if (!self->is_tcp) {
        pthread_mutex_lock(&self->lock);
        uint64_t busy = (uint64_t)self->running + self->ndone;
        if (busy < (uint64_t)self->concurrency)
            busy = (uint64_t)self->concurrency;
        busy += self->queued; /* deliveries of an ended registration still run */
        uint64_t need = ledger_need((uint32_t)self->window, busy, self->ledger.lost);
        uint32_t n = need > LC_LEDGER_MAX_SLOTS ? LC_LEDGER_MAX_SLOTS + 1 : (uint32_t)need;
        bool had = ledger_ready(&self->ledger);
        int rc = had ? ledger_reserve(&self->ledger, n) : ledger_open(&self->ledger, n);
        pthread_mutex_unlock(&self->lock);
        if (rc < 0 && !had)
            lc_log(self, LC_LOG_DEBUG, "no ledger of %u slots (%s): after a crash the broker "
                   "presumes which item ran", n, strerror(-rc));
        else if (rc < 0 && !self->ledger_warned) {
            self->ledger_warned = true;
            lc_log(self, LC_LOG_WARNING, "the ledger cannot grow to %u slots (%s): after a "
                   "crash the broker will presume which item ran; a smaller window or "
                   "concurrency avoids it", n, strerror(-rc));
        }
    }
    /* After a broker restart the module says which state it is in. */
    json_t *hello = json_pack("{s:s, s:i, s:s, s:o, s:o, s:i, s:s, s:b}", "token", self->token,
                              "pid", (int)getpid(), "version", LC_VERSION, "methods", methods,
                              "events", lcc_hello_events(self), "window", self->window, "state",
                              !self->lifecycle ? "active"
                              : self->started  ? lc_state_name(self->state)
                                               : "inactive",
                              "lifecycle", self->lifecycle);
    if (hello && ledger_ready(&self->ledger))
        json_object_set_new(hello, "ledger", json_integer(self->ledger.fd));
    char *text = hello ? json_dumps(hello, JSON_COMPACT) : NULL;
    json_decref(hello);
    if (!text)
        return LC_ENOMEM;
    self->reg_seq = atomic_fetch_add(&self->seq, 1) + 1;
    lc_hdr_t h = {.type = LC_MSG_HELLO, .seq = self->reg_seq};
    int rc = lcc_send_main(self, &h, self->name, text, strlen(text), 0);
    if (rc == 0) {
        s_set_reg(self, REG_SENT);
    }
    return rc;
}

static void s_monitor_events(lc_client_t *self)
{
    for (;;) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, self->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&f) >= 2)
            memcpy(&event, zmq_msg_data(&f), 2);
        while (zmq_msg_more(&f))
            zmq_msg_recv(&f, self->monitor, 0);
        zmq_msg_close(&f);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            self->handshaken = true;
            if (self->want_reg && self->reg != REG_FAILED)
                lcc_send_hello(self);
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            self->handshaken = false;
            if (self->reg == REG_DONE || self->reg == REG_SENT)
                s_set_reg(self, REG_NONE);
            char why[600];
            snprintf(why, sizeof why, "connection to the broker at %s lost", self->endpoint);
            lc_log(self, LC_LOG_WARNING, "%s; registering again when it is back", why);
            lcc_fail_all_pending(self, LC_ENOBUS, why);
        }
    }
}

static void s_handle_main(lc_client_t *self, inmsg_t *m)
{
    switch (m->hdr.type) {
    case LC_MSG_CALL:
        lcc_handle_call(self, m);
        break;
    case LC_MSG_TASK:
    case LC_MSG_EVENT:
        lcc_queue_push(self, m); /* run from the loop, when a slot is free */
        break;
    case LC_MSG_NOTICE:
        lcc_on_notice(self, m);
        break;
    case LC_MSG_STATE:
        lcc_on_state(self, m);
        break;
    case LC_MSG_REPLY:
        lcc_complete(self, m);
        break;
    case LC_MSG_ERROR:
        if (self->reg == REG_SENT && m->hdr.seq == self->reg_seq) {
            self->reg_error = lc_status_to_errno((int)m->hdr.status);
            json_t *e = lcc_error_object((int)m->hdr.status, zmq_msg_data(&m->payload),
                                         zmq_msg_size(&m->payload));
            snprintf(self->reg_message, sizeof self->reg_message, "%s",
                     json_string_value(json_object_get(e, "message")));
            json_decref(e);
            s_set_reg(self, REG_FAILED);
        } else {
            lcc_complete(self, m);
            /* The broker does not know us (it restarted, or declared us dead): again. */
            if (m->hdr.status == LC_STATUS_NOT_REGISTERED && self->reg == REG_DONE) {
                s_set_reg(self, REG_NONE);
                if (self->handshaken)
                    lcc_send_hello(self);
            }
        }
        break;
    case LC_MSG_WELCOME:
        if (self->reg == REG_SENT && m->hdr.seq == self->reg_seq) {
            lcc_copy(self->reg_name, sizeof self->reg_name, m->address);
            json_t *w = json_loadb(zmq_msg_data(&m->payload), zmq_msg_size(&m->payload), 0, NULL);
            self->hb_ms = (int)json_integer_value(json_object_get(w, "heartbeat_ms"));
            self->max_payload = (size_t)json_integer_value(json_object_get(w, "max_payload"));
            json_decref(w);
            if (!self->lifecycle)
                self->state = LC_STATE_ACTIVE; /* tools have no lifecycle */
            s_set_reg(self, REG_DONE);
            if (self->hb_ms > 0 && !self->hb_running)
                lcc_heartbeat_start(self);
        }
        break;
    default:
        break; /* PONG, and types a later version may add */
    }
}

/* Receives and handles everything waiting on the main connection, up to max messages.
 * Returns the number handled. */
int lcc_drain_main(lc_client_t *self, int max)
{
    int n = 0;
    while (n < max) {
        inmsg_t m;
        int rc = lcc_recv(self->sock, &m, ZMQ_DONTWAIT);
        if (rc == -EAGAIN || rc == -EINTR || rc == -ETERM)
            break;
        n++;
        if (rc < 0)
            continue;
        s_handle_main(self, &m);
        lcc_inmsg_close(&m);
    }
    return n;
}

static bool s_has_input(void *sock)
{
    int events = 0;
    size_t len = sizeof events;
    zmq_getsockopt(sock, ZMQ_EVENTS, &events, &len);
    return events & ZMQ_POLLIN;
}

/* Waits on the main connection (loop thread) until done(self, ctx) holds or the deadline
 * passes, serving incoming calls meanwhile (and only those: see decision 10 in
 * docs/architecture.md). */
int lcc_main_wait(lc_client_t *self, bool (*done)(lc_client_t *, void *), void *ctx,
                  int64_t deadline)
{
    while (!done(self, ctx)) {
        int t = lcc_int_timeout(deadline);
        zmq_pollitem_t items[2] = {{self->sock, 0, ZMQ_POLLIN, 0},
                                   {self->monitor, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, t) < 0 && errno != EINTR)
            return LC_ENOBUS;
        if (items[1].revents)
            s_monitor_events(self);
        if (items[0].revents)
            lcc_drain_main(self, DISPATCH_BATCH);
        if (!done(self, ctx) && lc_mono_ms() >= deadline)
            return LC_ETIMEDOUT;
    }
    return 0;
}

/* After blocking work on the loop thread outside lc_dispatch(), make sure lc_fd() shows
 * what arrived meanwhile: the ZeroMQ descriptor only signals new arrivals. */
void lcc_rearm(lc_client_t *self)
{
    if (self->ready_head || s_has_input(self->sock) || s_has_input(self->monitor))
        lcc_wake(self);
}

/* A send lets libzmq take in its pending commands, among them the news of input that
 * arrived meanwhile, without signalling its descriptor again. lc_dispatch() re-arms at its
 * end; a send made outside it, by a program running its own loop on lc_fd(), must re-arm
 * here, or lc_fd() stays quiet with an answer waiting. */
int lcc_send_main(lc_client_t *self, const lc_hdr_t *hdr, const char *address, char *payload,
                  size_t plen, int64_t deadline)
{
    int rc = lcc_send(self->sock, hdr, address, NULL, payload, plen, deadline);
    if (self->epoll_fd >= 0 && !self->dispatching)
        lcc_rearm(self);
    return rc;
}

static bool s_reg_settled(lc_client_t *self, void *ctx)
{
    (void)ctx;
    return self->reg == REG_DONE || self->reg == REG_FAILED;
}

/* Registers (once; after that the client re-registers by itself when the connection comes
 * back). The HELLO goes out as soon as the connection's handshake is reported. */
int lcc_connect_until(lc_client_t *self, int64_t deadline)
{
    if (self->reg == REG_DONE)
        return 0;
    if (self->reg == REG_FAILED)
        return self->reg_error;
    self->want_reg = true;
    if (self->reg == REG_NONE && self->handshaken)
        lcc_send_hello(self);
    int rc = lcc_main_wait(self, s_reg_settled, NULL, deadline);
    if (rc < 0)
        return LC_ENOBUS;
    return self->reg == REG_DONE ? 0 : self->reg_error;
}

int lc_connect(lc_client_t *self, int timeout_ms)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!lcc_on_loop(self))
        return LC_EINVAL;
    int rc = lcc_connect_until(self, s_deadline(self, timeout_ms));
    if (rc == 0)
        lcc_lifecycle_step(self);
    lcc_rearm(self);
    return rc;
}

/* ---- File descriptors of the module's own ------------------------------------------- */

static watch_t *s_watch_find(lc_client_t *self, int fd)
{
    for (size_t i = 0; i < self->nwatches; i++)
        if (self->watches[i].fd == fd)
            return &self->watches[i];
    return NULL;
}

int lc_watch_fd(lc_client_t *self, int fd, lc_fd_fn *fn, void *arg)
{
    assert(self && self->tag == CLIENT_TAG);
    if (fd < 0 || !fn || !lcc_on_loop(self))
        return LC_EINVAL;
    watch_t *w = s_watch_find(self, fd);
    if (w) {
        w->fn = fn;
        w->arg = arg;
        return 0;
    }
    if (self->nwatches == self->capwatches) {
        size_t cap = self->capwatches ? self->capwatches * 2 : 4;
        watch_t *ws = realloc(self->watches, cap * sizeof *ws);
        if (!ws)
            return LC_ENOMEM;
        self->watches = ws;
        zmq_pollitem_t *items = realloc(self->poll_items, (4 + cap) * sizeof *items);
        if (!items)
            return LC_ENOMEM;
        self->poll_items = items;
        self->capwatches = cap;
    }
    if (self->epoll_fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
            return -errno;
    }
    self->watches[self->nwatches++] = (watch_t){.fd = fd, .fn = fn, .arg = arg};
    lcc_wake(self); /* a poll already under way does not know the descriptor yet */
    return 0;
}

int lc_unwatch_fd(lc_client_t *self, int fd)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!lcc_on_loop(self))
        return LC_EINVAL;
    watch_t *w = s_watch_find(self, fd);
    if (!w)
        return LC_EINVAL;
    if (self->epoll_fd >= 0)
        epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    *w = self->watches[--self->nwatches];
    return 0;
}

/* Calls the callbacks of the watched descriptors that are readable now. A callback may
 * watch or unwatch descriptors: each one is looked up again before its call. */
static void s_watch_run(lc_client_t *self)
{
    struct pollfd fds[32];
    for (size_t from = 0; from < self->nwatches; from += 32) {
        nfds_t n = 0;
        for (size_t i = from; i < self->nwatches && n < 32; i++)
            fds[n++] = (struct pollfd){.fd = self->watches[i].fd, .events = POLLIN};
        if (poll(fds, n, 0) <= 0)
            continue;
        for (nfds_t i = 0; i < n; i++) {
            if (!fds[i].revents)
                continue;
            watch_t *w = s_watch_find(self, fds[i].fd);
            if (w)
                w->fn(self, w->fd, w->arg);
        }
    }
}

/* What lc_run()'s poll saw readable; an outside loop (lc_dispatch()) knows none of it. */
enum { IN_SOCK = 1, IN_MONITOR = 2, IN_WAKE = 4, IN_ALL = 7 };

/* One round of the loop. `in` spares the reads that would find nothing: each costs libzmq a
 * poll of its mailbox (docs/performance.md). `rearm`: make lc_fd() show what is still
 * pending, for an outside loop; lc_run()'s zmq_poll() checks pending input itself. */
/* glibc keeps what a burst freed (libzmq's I/O thread allocates in an arena of its own), so
 * a module's RSS would stay at its busiest moment. Once the loop has read nothing for
 * TRIM_QUIET_MS it gives the free memory back, at most once every TRIM_EVERY_MS; lc_timeout()
 * includes that moment, so a module's own loop comes back for it. */
#define TRIM_QUIET_MS 250
#define TRIM_EVERY_MS 1000

static int64_t s_trim_due(const lc_client_t *self)
{
    int64_t quiet = self->active_ms + TRIM_QUIET_MS, spaced = self->trim_ms + TRIM_EVERY_MS;
    return quiet > spaced ? quiet : spaced;
}

static int s_dispatch(lc_client_t *self, int in, bool rearm)
{
    if (!self->want_reg || self->reg == REG_FAILED) {
        int rc = lcc_connect_until(self, s_deadline(self, 0));
        if (rc < 0)
            return rc;
    }
    uint64_t count;
    if (in & IN_WAKE)
        while (read(self->wake_fd, &count, sizeof count) > 0)
            ;
    if (in & IN_MONITOR)
        s_monitor_events(self);
    if (self->reg == REG_FAILED)
        return self->reg_error;
    int handled = (in & IN_SOCK) ? lcc_drain_main(self, DISPATCH_BATCH) : 0;
    int64_t now = lc_mono_ms();
    if (handled > 0) {
        self->active_ms = now;
        self->trimmed = false;
    } else if (!self->trimmed && now >= s_trim_due(self)) {
        malloc_trim(0);
        self->trimmed = true;
        self->trim_ms = now;
    }
    lcc_expire_calls(self, now);
    lcc_run_ready(self);
    s_watch_run(self);
    lcc_run_timers(self, now);
    lcc_queue_run(self);
    lcc_lifecycle_step(self); /* after the queue: an exit event runs before deactivation */
    if (atomic_exchange(&self->need_hello, false) && self->reg == REG_DONE) {
        s_set_reg(self, REG_NONE);
        if (self->handshaken)
            lcc_send_hello(self);
    }
    /* More may have arrived while handlers ran; a full batch means the same. */
    if (rearm && (handled == DISPATCH_BATCH || self->ready_head || s_has_input(self->sock) ||
                  s_has_input(self->monitor)))
        lcc_wake(self);
    return atomic_load(&self->stop) ? 1 : 0;
}

int lc_dispatch(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!lcc_on_loop(self))
        return LC_EINVAL;
    if (self->signal_fd >= 0)
        lcc_signals_read(self);
    self->dispatching++;
    int rc = s_dispatch(self, IN_ALL, true);
    self->dispatching--;
    return rc;
}

int lc_timeout(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    int64_t now = lc_mono_ms(), next = INT64_MAX;
    const heap_entry_t *top = heap_top(&self->timer_heap);
    if (top)
        next = top->when;
    pthread_mutex_lock(&self->lock);
    top = heap_top(&self->deadlines);
    if (top && top->when < next)
        next = top->when;
    if (!self->trimmed && s_trim_due(self) < next)
        next = s_trim_due(self);
    bool startup = !self->started && self->lifecycle && self->reg == REG_DONE;
    /* ndone: completions reported by lc_done() on the loop thread outside a queue run (a
     * timer, a hook) leave with the next round. */
    if (self->ready_head || self->ncmds || startup || self->ndone ||
        (self->queued && self->running < self->concurrency))
        next = now;
    pthread_mutex_unlock(&self->lock);
    if (next == INT64_MAX)
        return -1;
    return next <= now ? 0 : (int)(next - now > INT32_MAX ? INT32_MAX : next - now);
}

int lc_fd(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    if (self->epoll_fd >= 0)
        return self->epoll_fd;
    int efd = epoll_create1(EPOLL_CLOEXEC);
    if (efd < 0)
        return -errno;
    if (self->handle_signals && self->signal_fd < 0)
        lcc_signals_setup(self);
    int fds[4] = {self->wake_fd, -1, -1, self->signal_fd};
    size_t len = sizeof(int);
    zmq_getsockopt(self->sock, ZMQ_FD, &fds[1], &len);
    len = sizeof(int);
    zmq_getsockopt(self->monitor, ZMQ_FD, &fds[2], &len);
    for (size_t i = 0; i < 4 + self->nwatches; i++) {
        int fd = i < 4 ? fds[i] : self->watches[i - 4].fd;
        if (fd < 0)
            continue;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(efd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            int err = errno;
            close(efd);
            return -err;
        }
    }
    self->epoll_fd = efd;
    lcc_wake(self); /* whatever is already queued must show */
    return efd;
}

int lc_run(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!lcc_on_loop(self))
        return LC_EINVAL;
    if (self->handle_signals && self->signal_fd < 0 && lcc_signals_setup(self) < 0)
        lc_log(self, LC_LOG_WARNING, "signals are not handled: %s", strerror(errno));
    int rc = lcc_connect_until(self, s_deadline(self, 0));
    if (rc < 0)
        return rc;
    while (!atomic_load(&self->stop)) {
        zmq_pollitem_t fixed[4];
        zmq_pollitem_t *items = self->nwatches ? self->poll_items : fixed;
        int n = 0;
        items[n++] = (zmq_pollitem_t){self->sock, 0, ZMQ_POLLIN, 0};
        items[n++] = (zmq_pollitem_t){self->monitor, 0, ZMQ_POLLIN, 0};
        items[n++] = (zmq_pollitem_t){NULL, self->wake_fd, ZMQ_POLLIN, 0};
        int sig = self->signal_fd >= 0 ? n : -1;
        if (sig >= 0)
            items[n++] = (zmq_pollitem_t){NULL, self->signal_fd, ZMQ_POLLIN, 0};
        /* Watched descriptors only wake the poll: s_dispatch() finds which are readable. */
        for (size_t i = 0; i < self->nwatches; i++)
            items[n++] = (zmq_pollitem_t){NULL, self->watches[i].fd, ZMQ_POLLIN, 0};
        if (zmq_poll(items, n, lc_timeout(self)) < 0 && errno != EINTR)
            return LC_ENOBUS;
        if (sig >= 0 && items[sig].revents)
            lcc_signals_read(self);
        int in = (items[0].revents ? IN_SOCK : 0) | (items[1].revents ? IN_MONITOR : 0) |
                 (items[2].revents ? IN_WAKE : 0);
        rc = s_dispatch(self, in, false);
        if (rc < 0)
            return rc;
    }
    atomic_store(&self->stop, false);
    return 0;
}

void lc_stop(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    atomic_store(&self->stop, true);
    lcc_wake(self);
}
