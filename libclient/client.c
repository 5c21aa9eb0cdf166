/* liblc: the client side of the lc bus. See lc.h for the contract and
 * docs/architecture.md for the threads and sockets involved. */
#include "lc.h"
#include "heap.h"
#include "idmap.h"
#include "wire.h"

#include <assert.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

#define CLIENT_TAG 0x6c63636cu /* "lccl" */
#define DISPATCH_BATCH 256     /* messages per dispatch before timers get their turn */

typedef struct {
    char name[LC_NAME_MAX + 1];
    lc_method_fn *fn;
    void *arg;
    char *help;
    json_t *args; /* {"name": "type"} or NULL */
} method_t;

/* A received message: header, address, source and the payload frame. */
typedef struct inmsg {
    lc_hdr_t hdr;
    char address[LC_ADDRESS_MAX + 1];
    char source[LC_NAME_MAX + 1];
    zmq_msg_t payload;
} inmsg_t;

/* An open call, keyed by its sequence number. Either a synchronous waiter on the loop
 * thread (fn == NULL: the outcome is stored here) or an asynchronous one. */
typedef struct pending {
    uint32_t seq;
    lc_call_fn *fn;
    void *arg;
    int64_t deadline;
    char target[LC_ADDRESS_MAX + 1];
    int timeout_ms;
    bool done;
    int rc;
    json_t *result;
    struct pending *next_ready;
} pending_t;

typedef struct {
    int id;
    int interval;
    bool repeat;
    int64_t when;
    lc_timer_fn *fn;
    void *arg;
} timer_t_;

/* A connection of its own for each other thread that sends, attached to the module. */
typedef struct sat {
    lc_client_t *client;
    void *sock;
    bool attached;
    uint64_t gen; /* registration generation it attached to */
    struct sat *next;
} sat_t;

enum { REG_NONE, REG_SENT, REG_DONE, REG_FAILED };

enum { REQ_ANSWERED = 1, REQ_SENT = 2, REQ_RETURNED = 4, REQ_DEFERRED = 8 };

struct lc_request {
    lc_client_t *client;
    lc_hdr_t hdr;
    char source[LC_NAME_MAX + 1];
    char method[LC_NAME_MAX + 1];
    atomic_int state;
};

struct lc_client {
    uint32_t tag;
    char name[LC_NAME_MAX + 1];     /* requested; "" for anonymous */
    char reg_name[LC_NAME_MAX + 1]; /* as registered */
    char endpoint[512];
    void *ctx;
    void *sock;    /* main connection: loop thread only */
    void *monitor; /* events of the main connection */
    int wake_fd;
    int epoll_fd;
    pthread_t loop_thread;
    char token[17];
    int timeout_ms;
    bool is_tcp;

    int reg;
    int reg_error;
    uint32_t reg_seq;
    bool want_reg;      /* registration was asked for at least once */
    bool handshaken;    /* the main connection is up */
    int hb_ms;          /* heartbeat interval the broker asked for, 0: none */
    int64_t last_send;  /* monotonic ms */
    char reg_message[256];

    method_t *methods;
    size_t nmethods, capmethods;

    atomic_uint seq;
    atomic_bool stop;

    /* lock guards: pending, deadlines, ready list, satellites, gen, reg_cond waits */
    pthread_mutex_t lock;
    pthread_cond_t reg_cond;
    uint64_t gen; /* counts successful main registrations */
    idmap_t pending;
    heap_t deadlines;
    pending_t *ready_head, *ready_tail; /* async calls finished, callbacks not yet run */

    idmap_t timers;
    heap_t timer_heap;
    int next_timer;

    pthread_key_t sat_key;
    sat_t *sats;
};

/* ---- Small helpers -------------------------------------------------------------------- */

const char *lc_strerror(int code)
{
    switch (code) {
    case 0: return "success";
    case LC_EINVAL: return "invalid argument or name";
    case LC_ENOMEM: return "out of memory";
    case LC_EHANDLER: return "the handler returned an error";
    case LC_ENOMODULE: return "unknown module";
    case LC_ENOMETHOD: return "unknown method";
    case LC_ENOTREADY: return "module not ready";
    case LC_EGONE: return "module gone";
    case LC_ETIMEDOUT: return "timed out";
    case LC_ETOOBIG: return "payload too large";
    case LC_EPROTO: return "malformed message";
    case LC_EVERSION: return "protocol version not supported";
    case LC_ENAMETAKEN: return "name taken by a live module";
    case LC_ENOBUS: return "bus unreachable";
    case LC_EQUEUEFULL: return "queue full";
    case LC_ENOTACTIVE: return "module not active";
    case LC_EDENIED: return "denied";
    case LC_EBUSY: return "busy";
    default: return strerror(code < 0 ? -code : code);
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
static void s_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

static bool s_on_loop(lc_client_t *self)
{
    return pthread_equal(pthread_self(), self->loop_thread);
}

static void s_wake(lc_client_t *self)
{
    uint64_t one = 1;
    ssize_t n = write(self->wake_fd, &one, sizeof one);
    (void)n; /* a full counter still wakes the loop */
}

static int s_int_timeout(int64_t deadline)
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
static int s_send(void *sock, const lc_hdr_t *hdr, const char *address, const char *source,
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
        zmq_poll(&item, 1, s_int_timeout(deadline));
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
static int s_recv(void *sock, inmsg_t *m, int flags)
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

static void s_inmsg_close(inmsg_t *m)
{
    zmq_msg_close(&m->payload);
}

/* Parses an error payload into {"code", "message"}; status is the wire status. */
static json_t *s_error_object(int status, const char *data, size_t len)
{
    json_t *p = len ? json_loadb(data, len, 0, NULL) : NULL;
    json_t *msg = json_is_object(p) ? json_object_get(p, "message") : NULL;
    json_t *code = json_is_object(p) ? json_object_get(p, "code") : NULL;
    json_t *out = json_pack("{s:I, s:s}", "code",
                            (json_int_t)(status == LC_STATUS_HANDLER && json_is_integer(code)
                                             ? json_integer_value(code)
                                             : status),
                            "message", json_is_string(msg) ? json_string_value(msg)
                                                           : lc_status_name(status));
    json_decref(p);
    return out;
}

static json_t *s_local_error(int status, const char *fmt, ...) LC_PRINTF(2, 3);
static json_t *s_local_error(int status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return json_pack("{s:i, s:s}", "code", status, "message", buf);
}

/* Serialises args (stolen; NULL means {}) into a malloc'd buffer. */
static int s_dump_args(json_t *args, char **out, size_t *len)
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

static int s_check_target(const char *target)
{
    if (!target)
        return LC_EINVAL;
    const char *dot = strchr(target, '.');
    if (!dot || !lc_name_valid(target, (size_t)(dot - target)) ||
        !lc_method_name_valid(dot + 1, strlen(dot + 1)))
        return LC_EINVAL;
    return 0;
}

/* ---- Creation and destruction --------------------------------------------------------- */

static void s_sat_destroy(void *p);

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
    self->wake_fd = self->epoll_fd = -1;
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
    uint64_t token = 0;
    if (getrandom(&token, sizeof token, 0) != sizeof token)
        token = (uint64_t)lc_now_us() ^ ((uint64_t)getpid() << 32);
    snprintf(self->token, sizeof self->token, "%016" PRIx64, token);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->reg_cond, NULL);
    idmap_init(&self->pending);
    idmap_init(&self->timers);
    heap_init(&self->deadlines);
    heap_init(&self->timer_heap);
    if (pthread_key_create(&self->sat_key, s_sat_destroy) != 0) {
        free(self);
        errno = EAGAIN;
        return NULL;
    }

    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->ctx = zmq_ctx_new();
    if (self->wake_fd < 0 || !self->ctx)
        goto fail;
    zmq_ctx_set(self->ctx, ZMQ_BLOCKY, 0);
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!self->sock)
        goto fail;
    int one = 1, linger = 1000, hwm = 100000, ivl = 100;
    zmq_setsockopt(self->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
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

static void s_pending_free(pending_t *p)
{
    if (p) {
        json_decref(p->result);
        free(p);
    }
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
        s_send(self->sock, &h, NULL, NULL, NULL, 0, 0);
    }
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
            s_pending_free(self->pending.values[i]);
    idmap_clear(&self->pending);
    while (self->ready_head) {
        pending_t *p = self->ready_head;
        self->ready_head = p->next_ready;
        s_pending_free(p);
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

static int64_t s_deadline(lc_client_t *self, int timeout_ms)
{
    return lc_mono_ms() + (timeout_ms > 0 ? timeout_ms : self->timeout_ms);
}

/* ---- Methods -------------------------------------------------------------------------- */

static method_t *s_method_find(lc_client_t *self, const char *name)
{
    for (size_t i = 0; i < self->nmethods; i++)
        if (strcmp(self->methods[i].name, name) == 0)
            return &self->methods[i];
    return NULL;
}

static int s_send_hello(lc_client_t *self);

int lc_method(lc_client_t *self, const char *method, lc_method_fn *fn, void *arg)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!method || !fn || !lc_method_name_valid(method, strlen(method)) || !self->name[0])
        return LC_EINVAL;
    method_t *m = s_method_find(self, method);
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
    if (self->reg == REG_DONE && s_on_loop(self))
        return s_send_hello(self);
    return 0;
}

static const char *const s_types[] = {"string", "integer", "number", "boolean", "object",
                                      "array",  "null",    "any",    NULL};

int lc_method_doc(lc_client_t *self, const char *method, const char *help, const char *args)
{
    assert(self && self->tag == CLIENT_TAG);
    method_t *m = method ? s_method_find(self, method) : NULL;
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

static int s_send_hello(lc_client_t *self)
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
    json_t *hello = json_pack("{s:s, s:i, s:s, s:o}", "token", self->token, "pid", (int)getpid(),
                              "version", LC_VERSION, "methods", methods);
    char *text = hello ? json_dumps(hello, JSON_COMPACT) : NULL;
    json_decref(hello);
    if (!text)
        return LC_ENOMEM;
    self->reg_seq = atomic_fetch_add(&self->seq, 1) + 1;
    lc_hdr_t h = {.type = LC_MSG_HELLO, .seq = self->reg_seq};
    int rc = s_send(self->sock, &h, self->name, NULL, text, strlen(text), 0);
    if (rc == 0) {
        s_set_reg(self, REG_SENT);
        self->last_send = lc_mono_ms();
    }
    return rc;
}

/* Every open call failed at once: the broker that was to answer it is gone. */
static void s_fail_all_pending(lc_client_t *self, int rc, const char *why)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->pending.cap; i++) {
        pending_t *p = self->pending.values[i];
        if (!p)
            continue;
        idmap_take_at(&self->pending, &i);
        p->done = true;
        p->rc = rc;
        p->result = s_local_error(lc_errno_to_status(rc), "%s", why);
        if (p->fn) {
            p->next_ready = NULL;
            if (self->ready_tail)
                self->ready_tail->next_ready = p;
            else
                self->ready_head = p;
            self->ready_tail = p;
        }
        /* A synchronous waiter's entry stays with the waiter, which sees done. */
    }
    pthread_mutex_unlock(&self->lock);
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
                s_send_hello(self);
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            self->handshaken = false;
            if (self->reg == REG_DONE || self->reg == REG_SENT)
                s_set_reg(self, REG_NONE);
            char why[600];
            snprintf(why, sizeof why, "connection to the broker at %s lost", self->endpoint);
            s_fail_all_pending(self, LC_ENOBUS, why);
        }
    }
}

/* ---- Handling what arrives on the main connection ------------------------------------- */

static int s_reply_send(lc_request_t *req, int type, int status, char *payload, size_t plen);

static void s_request_finish(lc_request_t *req)
{
    int old = atomic_fetch_or(&req->state, REQ_RETURNED);
    if (!(old & REQ_ANSWERED) && !(old & REQ_DEFERRED))
        lc_reply(req, NULL);
    else if (old & REQ_SENT)
        free(req);
}

static void s_handle_call(lc_client_t *self, inmsg_t *m)
{
    lc_request_t *req = calloc(1, sizeof *req);
    if (!req)
        return; /* the caller's deadline reports it */
    req->client = self;
    req->hdr = m->hdr;
    s_copy(req->source, sizeof req->source, m->source);
    const char *dot = strchr(m->address, '.');
    s_copy(req->method, sizeof req->method, dot ? dot + 1 : m->address);
    atomic_init(&req->state, 0);

    method_t *method = s_method_find(self, req->method);
    if (!method) {
        /* The broker checks methods; this only happens while a declaration is in flight. */
        json_t *e = json_pack("{s:s+++}", "message", "no method '", req->method, "' in ",
                              self->reg_name);
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
        s_request_finish(req);
        return;
    }
    method->fn(req, args, method->arg);
    json_decref(args);
    s_request_finish(req);
}

/* Completes the call with sequence number seq; returns true if it was ours. */
static bool s_complete(lc_client_t *self, inmsg_t *m)
{
    pthread_mutex_lock(&self->lock);
    pending_t *p = idmap_take(&self->pending, m->hdr.seq);
    if (!p) {
        pthread_mutex_unlock(&self->lock);
        return false; /* answered too late: the caller already gave up */
    }
    size_t n = zmq_msg_size(&m->payload);
    const char *d = zmq_msg_data(&m->payload);
    if (m->hdr.type == LC_MSG_REPLY) {
        json_error_t err;
        p->result = n ? json_loadb(d, n, JSON_DECODE_ANY, &err) : json_null();
        p->rc = p->result ? 0 : LC_EPROTO;
        if (!p->result)
            p->result = s_local_error(LC_STATUS_MALFORMED, "answer of %s is not JSON: %s",
                                      p->target, err.text);
    } else {
        p->rc = lc_status_to_errno((int)m->hdr.status);
        p->result = s_error_object((int)m->hdr.status, d, n);
    }
    p->done = true;
    if (p->fn) {
        p->next_ready = NULL;
        if (self->ready_tail)
            self->ready_tail->next_ready = p;
        else
            self->ready_head = p;
        self->ready_tail = p;
    }
    pthread_mutex_unlock(&self->lock);
    return true;
}

static void s_handle_main(lc_client_t *self, inmsg_t *m)
{
    switch (m->hdr.type) {
    case LC_MSG_CALL:
        s_handle_call(self, m);
        break;
    case LC_MSG_REPLY:
        s_complete(self, m);
        break;
    case LC_MSG_ERROR:
        if (self->reg == REG_SENT && m->hdr.seq == self->reg_seq) {
            self->reg_error = lc_status_to_errno((int)m->hdr.status);
            json_t *e = s_error_object((int)m->hdr.status, zmq_msg_data(&m->payload),
                                       zmq_msg_size(&m->payload));
            snprintf(self->reg_message, sizeof self->reg_message, "%s",
                     json_string_value(json_object_get(e, "message")));
            json_decref(e);
            s_set_reg(self, REG_FAILED);
        } else {
            s_complete(self, m);
            /* The broker does not know us (it restarted, or declared us dead): again. */
            if (m->hdr.status == LC_STATUS_NOT_REGISTERED && self->reg == REG_DONE) {
                s_set_reg(self, REG_NONE);
                if (self->handshaken)
                    s_send_hello(self);
            }
        }
        break;
    case LC_MSG_WELCOME:
        if (self->reg == REG_SENT && m->hdr.seq == self->reg_seq) {
            s_copy(self->reg_name, sizeof self->reg_name, m->address);
            json_t *w = json_loadb(zmq_msg_data(&m->payload), zmq_msg_size(&m->payload), 0, NULL);
            self->hb_ms = (int)json_integer_value(json_object_get(w, "heartbeat_ms"));
            json_decref(w);
            s_set_reg(self, REG_DONE);
        }
        break;
    default:
        break; /* PONG, and types a later version may add */
    }
}

/* Receives and handles everything waiting on the main connection, up to max messages.
 * Returns the number handled. */
static int s_drain_main(lc_client_t *self, int max)
{
    int n = 0;
    while (n < max) {
        inmsg_t m;
        int rc = s_recv(self->sock, &m, ZMQ_DONTWAIT);
        if (rc == -EAGAIN || rc == -EINTR || rc == -ETERM)
            break;
        n++;
        if (rc < 0)
            continue;
        s_handle_main(self, &m);
        s_inmsg_close(&m);
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
static int s_main_wait(lc_client_t *self, bool (*done)(lc_client_t *, void *), void *ctx,
                       int64_t deadline)
{
    while (!done(self, ctx)) {
        int t = s_int_timeout(deadline);
        zmq_pollitem_t items[2] = {{self->sock, 0, ZMQ_POLLIN, 0},
                                   {self->monitor, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, t) < 0 && errno != EINTR)
            return LC_ENOBUS;
        if (items[1].revents)
            s_monitor_events(self);
        if (items[0].revents)
            s_drain_main(self, DISPATCH_BATCH);
        if (!done(self, ctx) && lc_mono_ms() >= deadline)
            return LC_ETIMEDOUT;
    }
    return 0;
}

static bool s_call_done(lc_client_t *self, void *ctx)
{
    (void)self;
    return ((pending_t *)ctx)->done;
}

/* After blocking work on the loop thread outside lc_dispatch(), make sure lc_fd() shows
 * what arrived meanwhile: the ZeroMQ descriptor only signals new arrivals. */
static void s_rearm(lc_client_t *self)
{
    if (self->ready_head || s_has_input(self->sock) || s_has_input(self->monitor))
        s_wake(self);
}

static bool s_reg_settled(lc_client_t *self, void *ctx)
{
    (void)ctx;
    return self->reg == REG_DONE || self->reg == REG_FAILED;
}

/* Registers (once; after that the client re-registers by itself when the connection comes
 * back). The HELLO goes out as soon as the connection's handshake is reported. */
static int s_connect_until(lc_client_t *self, int64_t deadline)
{
    if (self->reg == REG_DONE)
        return 0;
    if (self->reg == REG_FAILED)
        return self->reg_error;
    self->want_reg = true;
    if (self->reg == REG_NONE && self->handshaken)
        s_send_hello(self);
    int rc = s_main_wait(self, s_reg_settled, NULL, deadline);
    if (rc < 0)
        return LC_ENOBUS;
    return self->reg == REG_DONE ? 0 : self->reg_error;
}

int lc_connect(lc_client_t *self, int timeout_ms)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!s_on_loop(self))
        return LC_EINVAL;
    int rc = s_connect_until(self, s_deadline(self, timeout_ms));
    s_rearm(self);
    return rc;
}

/* ---- Satellite connections for other threads ------------------------------------------ */

static void s_sat_destroy(void *p)
{
    sat_t *sat = p;
    lc_client_t *self = sat->client;
    pthread_mutex_lock(&self->lock);
    for (sat_t **pp = &self->sats; *pp; pp = &(*pp)->next)
        if (*pp == sat) {
            *pp = sat->next;
            break;
        }
    pthread_mutex_unlock(&self->lock);
    if (sat->attached) {
        lc_hdr_t h = {.type = LC_MSG_BYE, .flags = LC_FLAG_ATTACH};
        s_send(sat->sock, &h, NULL, NULL, NULL, 0, 0);
    }
    zmq_close(sat->sock);
    free(sat);
}

static sat_t *s_sat_get(lc_client_t *self)
{
    sat_t *sat = pthread_getspecific(self->sat_key);
    if (sat)
        return sat;
    sat = calloc(1, sizeof *sat);
    if (!sat)
        return NULL;
    sat->client = self;
    sat->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!sat->sock) {
        free(sat);
        return NULL;
    }
    int one = 1, linger = 1000, hwm = 100000;
    zmq_setsockopt(sat->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(sat->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sat->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_connect(sat->sock, self->endpoint) < 0) {
        zmq_close(sat->sock);
        free(sat);
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    sat->next = self->sats;
    self->sats = sat;
    pthread_mutex_unlock(&self->lock);
    pthread_setspecific(self->sat_key, sat);
    return sat;
}

/* Waits for one message answering seq on the satellite. */
static int s_sat_await(sat_t *sat, uint32_t seq, inmsg_t *m, int64_t deadline)
{
    for (;;) {
        zmq_pollitem_t item = {sat->sock, 0, ZMQ_POLLIN, 0};
        int t = s_int_timeout(deadline);
        if (zmq_poll(&item, 1, t) < 0 && errno != EINTR)
            return LC_ENOBUS;
        if (item.revents) {
            int rc = s_recv(sat->sock, m, ZMQ_DONTWAIT);
            if (rc == 0) {
                if (m->hdr.seq == seq)
                    return 0;
                s_inmsg_close(m); /* a late answer to an earlier call */
            }
            continue;
        }
        if (lc_mono_ms() >= deadline)
            return LC_ETIMEDOUT;
    }
}

/* Attaches the thread's connection to the registered module. */
static int s_sat_attach(sat_t *sat, int64_t deadline, json_t **err)
{
    lc_client_t *self = sat->client;
    pthread_mutex_lock(&self->lock);
    /* A new registration is needed after a broker restart, not just the old one. */
    while (self->reg != REG_DONE || self->gen == sat->gen) {
        if (self->reg == REG_FAILED) {
            pthread_mutex_unlock(&self->lock);
            return self->reg_error;
        }
        /* The loop thread registers; wait for it, bounded by the deadline. */
        int t = s_int_timeout(deadline);
        if (t == 0) {
            pthread_mutex_unlock(&self->lock);
            if (err)
                *err = s_local_error(LC_STATUS_NOT_REGISTERED,
                                     "client not registered with the broker at %s: call "
                                     "lc_connect() or lc_run() on its loop thread",
                                     self->endpoint);
            return LC_ENOBUS;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += t / 1000;
        ts.tv_nsec += (long)(t % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&self->reg_cond, &self->lock, &ts);
    }
    uint64_t gen = self->gen;
    char name[LC_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", self->reg_name);
    pthread_mutex_unlock(&self->lock);

    char text[64];
    snprintf(text, sizeof text, "{\"token\":\"%s\"}", self->token);
    uint32_t seq = atomic_fetch_add(&self->seq, 1) + 1;
    lc_hdr_t h = {.type = LC_MSG_HELLO, .flags = LC_FLAG_ATTACH, .seq = seq};
    int rc = s_send(sat->sock, &h, name, NULL, strdup(text), strlen(text), deadline);
    if (rc < 0)
        return rc;
    inmsg_t m;
    rc = s_sat_await(sat, seq, &m, deadline);
    if (rc == LC_ETIMEDOUT)
        rc = LC_ENOBUS;
    if (rc < 0)
        return rc;
    if (m.hdr.type == LC_MSG_WELCOME) {
        sat->attached = true;
        sat->gen = gen;
    } else {
        rc = lc_status_to_errno((int)m.hdr.status);
        if (err)
            *err = s_error_object((int)m.hdr.status, zmq_msg_data(&m.payload),
                                  zmq_msg_size(&m.payload));
    }
    s_inmsg_close(&m);
    return rc;
}

/* A synchronous call from a thread other than the loop thread. */
static int s_sat_call(lc_client_t *self, const char *target, char *payload, size_t plen,
                      json_t **result, int timeout_ms, int64_t deadline)
{
    json_t *err = NULL;
    sat_t *sat = s_sat_get(self);
    if (!sat) {
        free(payload);
        return LC_ENOMEM;
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!sat->attached && (rc = s_sat_attach(sat, deadline, &err)) < 0)
            break;
        uint32_t seq = atomic_fetch_add(&self->seq, 1) + 1;
        lc_hdr_t h = {.type = LC_MSG_CALL, .seq = seq, .timeout_ms = (uint32_t)timeout_ms};
        char *copy = NULL;
        if (attempt == 0 && payload) {
            copy = malloc(plen);
            if (!copy) {
                rc = LC_ENOMEM;
                break;
            }
            memcpy(copy, payload, plen);
        }
        rc = s_send(sat->sock, &h, target, NULL, attempt == 0 ? copy : payload, plen, deadline);
        if (attempt == 1)
            payload = NULL;
        if (rc < 0)
            break;
        inmsg_t m;
        rc = s_sat_await(sat, seq, &m, deadline);
        if (rc < 0) {
            err = s_local_error(LC_STATUS_TIMEOUT, "no answer from %s within %d ms", target,
                                timeout_ms);
            break;
        }
        if (m.hdr.type == LC_MSG_ERROR && m.hdr.status == LC_STATUS_NOT_REGISTERED &&
            attempt == 0) {
            sat->attached = false; /* the broker restarted: attach again, once */
            s_inmsg_close(&m);
            continue;
        }
        size_t n = zmq_msg_size(&m.payload);
        if (m.hdr.type == LC_MSG_REPLY) {
            err = n ? json_loadb(zmq_msg_data(&m.payload), n, JSON_DECODE_ANY, NULL)
                    : json_null();
            rc = err ? 0 : LC_EPROTO;
        } else {
            rc = lc_status_to_errno((int)m.hdr.status);
            err = s_error_object((int)m.hdr.status, zmq_msg_data(&m.payload), n);
        }
        s_inmsg_close(&m);
        break;
    }
    free(payload);
    if (result)
        *result = err;
    else
        json_decref(err);
    return rc;
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

int lc_call(lc_client_t *self, const char *target, json_t *args, json_t **result,
            int timeout_ms)
{
    assert(self && self->tag == CLIENT_TAG);
    if (result)
        *result = NULL;
    char *payload;
    size_t plen;
    int rc = s_check_target(target);
    if (rc < 0) {
        json_decref(args);
        if (result)
            *result = s_local_error(LC_STATUS_BAD_NAME, "invalid target '%s': expected "
                                    "module.method", target ? target : "(null)");
        return rc;
    }
    if ((rc = s_dump_args(args, &payload, &plen)) < 0) {
        if (result)
            *result = s_local_error(LC_STATUS_MALFORMED, "arguments must be a JSON object");
        return rc;
    }
    int tmo = timeout_ms > 0 ? timeout_ms : self->timeout_ms;
    int64_t deadline = lc_mono_ms() + tmo;
    if (!s_on_loop(self))
        return s_sat_call(self, target, payload, plen, result, tmo, deadline);

    if ((rc = s_connect_until(self, deadline)) < 0) {
        free(payload);
        if (result)
            *result = s_local_error(lc_errno_to_status(rc), "%s",
                                    rc == LC_ENOBUS ? "no broker answered at the endpoint"
                                                    : self->reg_message);
        s_rearm(self);
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
    rc = s_send(self->sock, &h, target, NULL, payload, plen, deadline);
    if (rc == 0) {
        self->last_send = lc_mono_ms();
        rc = s_main_wait(self, s_call_done, p, deadline);
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
        *result = rc == LC_ETIMEDOUT
                      ? s_local_error(LC_STATUS_TIMEOUT, "no answer from %s within %d ms",
                                      target, tmo)
                      : s_local_error(lc_errno_to_status(rc), "%s", lc_strerror(rc));
    }
    s_pending_free(p);
    s_rearm(self);
    return rc;
}

int lc_call_async(lc_client_t *self, const char *target, json_t *args, int timeout_ms,
                  lc_call_fn *fn, void *arg)
{
    assert(self && self->tag == CLIENT_TAG);
    char *payload;
    size_t plen;
    int rc = s_check_target(target);
    if (rc < 0 || !fn) {
        json_decref(args);
        return LC_EINVAL;
    }
    if ((rc = s_dump_args(args, &payload, &plen)) < 0)
        return rc;
    pending_t *p = s_pending_new(self, target, timeout_ms, fn, arg);
    if (!p) {
        free(payload);
        return LC_ENOMEM;
    }
    bool on_loop = s_on_loop(self);
    if (on_loop && (rc = s_connect_until(self, p->deadline)) < 0) {
        free(payload);
        free(p);
        return rc;
    }
    pthread_mutex_lock(&self->lock);
    rc = idmap_put(&self->pending, p->seq, p);
    if (rc == 0 && (rc = heap_push(&self->deadlines, p->deadline, p->seq)) < 0)
        idmap_take(&self->pending, p->seq);
    pthread_mutex_unlock(&self->lock);
    if (rc < 0) {
        free(payload);
        free(p);
        return LC_ENOMEM;
    }
    lc_hdr_t h = {.type = LC_MSG_CALL, .seq = p->seq, .timeout_ms = (uint32_t)p->timeout_ms};
    if (on_loop) {
        rc = s_send(self->sock, &h, target, NULL, payload, plen, p->deadline);
        self->last_send = lc_mono_ms();
    } else {
        /* The answer goes to the loop thread, where the callback runs. */
        h.flags = LC_FLAG_REPLY_MAIN;
        sat_t *sat = s_sat_get(self);
        rc = !sat ? LC_ENOMEM : sat->attached ? 0 : s_sat_attach(sat, p->deadline, NULL);
        if (rc == 0)
            rc = s_send(sat->sock, &h, target, NULL, payload, plen, p->deadline);
        else
            free(payload);
        s_wake(self); /* the loop's next timeout may now be this deadline */
    }
    if (rc < 0) {
        pthread_mutex_lock(&self->lock);
        p = idmap_take(&self->pending, h.seq);
        pthread_mutex_unlock(&self->lock);
        s_pending_free(p); /* NULL if the loop already completed it */
    }
    return rc;
}

/* ---- Answers (the callee side) -------------------------------------------------------- */

static int s_reply_send(lc_request_t *req, int type, int status, char *payload, size_t plen)
{
    lc_client_t *self = req->client;
    lc_hdr_t h = {.type = (uint8_t)type,
                  .status = (uint32_t)status,
                  .parent = req->hdr.id,
                  .tx = req->hdr.tx,
                  .priority = req->hdr.priority};
    h.seq = atomic_fetch_add(&self->seq, 1) + 1;
    int rc;
    if (s_on_loop(self)) {
        rc = s_send(self->sock, &h, NULL, NULL, payload, plen, lc_mono_ms() + self->timeout_ms);
        self->last_send = lc_mono_ms();
    } else {
        sat_t *sat = s_sat_get(self);
        int64_t deadline = lc_mono_ms() + self->timeout_ms;
        rc = !sat ? LC_ENOMEM : sat->attached ? 0 : s_sat_attach(sat, deadline, NULL);
        if (rc == 0)
            rc = s_send(sat->sock, &h, NULL, NULL, payload, plen, deadline);
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
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
    va_end(ap);
    json_t *e = json_pack("{s:i, s:s}", "code", code, "message", msg);
    char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s_reply_send(req, LC_MSG_ERROR, LC_STATUS_HANDLER, text, text ? strlen(text) : 0);
}

void lc_defer(lc_request_t *req)
{
    assert(req);
    atomic_fetch_or(&req->state, REQ_DEFERRED);
}

const char *lc_request_source(const lc_request_t *req) { return req->source; }
const char *lc_request_method(const lc_request_t *req) { return req->method; }
uint64_t lc_request_tx(const lc_request_t *req) { return req->hdr.tx; }
uint64_t lc_request_id(const lc_request_t *req) { return req->hdr.id; }
uint64_t lc_request_parent(const lc_request_t *req) { return req->hdr.parent; }
int lc_request_priority(const lc_request_t *req)
{
    return req->hdr.priority ? req->hdr.priority : LC_PRIORITY_NORMAL;
}
uint64_t lc_request_time_us(const lc_request_t *req) { return req->hdr.time_us; }
lc_client_t *lc_request_client(const lc_request_t *req) { return req->client; }

/* ---- Timers --------------------------------------------------------------------------- */

int lc_timer_add(lc_client_t *self, int ms, bool repeat, lc_timer_fn *fn, void *arg)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!fn || ms < 0 || (repeat && ms == 0) || !s_on_loop(self))
        return LC_EINVAL;
    timer_t_ *t = calloc(1, sizeof *t);
    if (!t)
        return LC_ENOMEM;
    if (++self->next_timer <= 0)
        self->next_timer = 1;
    t->id = self->next_timer;
    t->interval = ms;
    t->repeat = repeat;
    t->when = lc_mono_ms() + ms;
    t->fn = fn;
    t->arg = arg;
    if (idmap_put(&self->timers, (uint64_t)t->id, t) < 0 ||
        heap_push(&self->timer_heap, t->when, (uint64_t)t->id) < 0) {
        idmap_take(&self->timers, (uint64_t)t->id);
        free(t);
        return LC_ENOMEM;
    }
    return t->id;
}

int lc_timer_cancel(lc_client_t *self, int timer_id)
{
    assert(self && self->tag == CLIENT_TAG);
    timer_t_ *t = timer_id > 0 ? idmap_take(&self->timers, (uint64_t)timer_id) : NULL;
    if (!t)
        return LC_EINVAL;
    free(t); /* its heap entry is skipped when it comes up */
    return 0;
}

static void s_run_timers(lc_client_t *self, int64_t now)
{
    const heap_entry_t *top;
    while ((top = heap_top(&self->timer_heap)) && top->when <= now) {
        int64_t when = top->when;
        uint64_t id = top->key;
        heap_pop(&self->timer_heap);
        timer_t_ *t = idmap_get(&self->timers, id);
        if (!t || t->when != when)
            continue; /* cancelled */
        if (t->repeat) {
            t->when += t->interval;
            if (t->when <= now) /* fell behind by whole periods: skip them, keep the phase */
                t->when += ((now - t->when) / t->interval + 1) * t->interval;
            heap_push(&self->timer_heap, t->when, id);
            t->fn(self, t->id, t->arg);
        } else {
            idmap_take(&self->timers, id);
            lc_timer_fn *fn = t->fn;
            void *arg = t->arg;
            int tid = t->id;
            free(t);
            fn(self, tid, arg);
        }
    }
}

/* ---- The loop ------------------------------------------------------------------------- */

static void s_expire_calls(lc_client_t *self, int64_t now)
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
        p->result = s_local_error(LC_STATUS_TIMEOUT, "no answer from %s within %d ms",
                                  p->target, p->timeout_ms);
        p->next_ready = NULL;
        if (self->ready_tail)
            self->ready_tail->next_ready = p;
        else
            self->ready_head = p;
        self->ready_tail = p;
    }
    pthread_mutex_unlock(&self->lock);
}

static void s_run_ready(lc_client_t *self)
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
        s_pending_free(p);
    }
}

static int s_dispatch(lc_client_t *self)
{
    if (!self->want_reg || self->reg == REG_FAILED) {
        int rc = s_connect_until(self, s_deadline(self, 0));
        if (rc < 0)
            return rc;
    }
    uint64_t count;
    while (read(self->wake_fd, &count, sizeof count) > 0)
        ;
    s_monitor_events(self);
    if (self->reg == REG_FAILED)
        return self->reg_error;
    int handled = s_drain_main(self, DISPATCH_BATCH);
    int64_t now = lc_mono_ms();
    s_expire_calls(self, now);
    s_run_ready(self);
    s_run_timers(self, now);
    if (self->hb_ms > 0 && self->reg == REG_DONE && now - self->last_send >= self->hb_ms) {
        lc_hdr_t h = {.type = LC_MSG_PING, .seq = atomic_fetch_add(&self->seq, 1) + 1};
        if (s_send(self->sock, &h, NULL, NULL, NULL, 0, 0) == 0)
            self->last_send = now;
    }
    /* More may have arrived while handlers ran; a full batch means the same. */
    if (handled == DISPATCH_BATCH || self->ready_head || s_has_input(self->sock) ||
        s_has_input(self->monitor))
        s_wake(self);
    return atomic_load(&self->stop) ? 1 : 0;
}

int lc_dispatch(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!s_on_loop(self))
        return LC_EINVAL;
    return s_dispatch(self);
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
    if (self->ready_head)
        next = now;
    pthread_mutex_unlock(&self->lock);
    if (self->hb_ms > 0 && self->last_send + self->hb_ms < next)
        next = self->last_send + self->hb_ms;
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
    int fds[3] = {self->wake_fd, -1, -1};
    size_t len = sizeof(int);
    zmq_getsockopt(self->sock, ZMQ_FD, &fds[1], &len);
    len = sizeof(int);
    zmq_getsockopt(self->monitor, ZMQ_FD, &fds[2], &len);
    for (int i = 0; i < 3; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        if (epoll_ctl(efd, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
            int err = errno;
            close(efd);
            return -err;
        }
    }
    self->epoll_fd = efd;
    s_wake(self); /* whatever is already queued must show */
    return efd;
}

int lc_run(lc_client_t *self)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!s_on_loop(self))
        return LC_EINVAL;
    int rc = s_connect_until(self, s_deadline(self, 0));
    if (rc < 0)
        return rc;
    while (!atomic_load(&self->stop)) {
        zmq_pollitem_t items[3] = {{self->sock, 0, ZMQ_POLLIN, 0},
                                   {self->monitor, 0, ZMQ_POLLIN, 0},
                                   {NULL, self->wake_fd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 3, lc_timeout(self)) < 0 && errno != EINTR)
            return LC_ENOBUS;
        rc = s_dispatch(self);
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
    s_wake(self);
}
