/* lc-broker: one ROUTER socket bound to every endpoint, a routing table of modules and
 * their connections, and the calls in flight between them. docs/architecture.md tells
 * the life of a call; docs/protocol.md the frames. */
#include "broker.h"
#include "heap.h"
#include "idmap.h"
#include "lc.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_FRAMES 8       /* frames read per message before it is called malformed */
#define RECV_BATCH 1024    /* messages per wake-up before other sources get a turn */
#define HELLO_MAX 65536    /* bytes of a registration payload */
#define DEAD_AFTER_BEATS 3 /* a heartbeat peer is dead after this many silent intervals */
#define LOG_BURST 10       /* error lines per kind per second */

typedef struct module module_t;

/* One ZeroMQ connection, known by its routing id. */
typedef struct conn {
    uint8_t rid[256];
    size_t rid_len;
    uint64_t hash;
    module_t *module;
    bool is_main;
    struct conn *next_sat;  /* the module's other connections */
    struct conn *next_hash; /* same hash */
} conn_t;

typedef struct {
    uint64_t hash;
    char name[LC_NAME_MAX + 1];
} method_t;

struct module {
    char name[LC_NAME_MAX + 1];
    uint64_t hash;
    char token[17];
    conn_t *main;
    conn_t *sats;
    method_t *methods;
    size_t nmethods;
    json_t *doc; /* the methods as registered, for broker.list */
    bool anonymous;
    bool has_creds;
    int pid, uid, gid;
    int pidfd;
    int hb_ms;
    int64_t last_seen;
    uint64_t since_us;
    uint64_t calls_in, calls_out;
    module_t *next_hash;
};

/* A call routed to a module and not answered yet, keyed by its message id. */
typedef struct {
    uint64_t id;
    conn_t *caller;
    module_t *caller_module;
    module_t *callee;
    uint32_t seq;
    bool reply_main;
    int64_t deadline;
    char target[LC_ADDRESS_MAX + 1];
} call_t;

/* broker.wait: answered when all named modules are registered. */
typedef struct waiter {
    conn_t *caller;
    uint32_t seq;
    uint64_t id, tx;
    json_t *modules;
    int64_t deadline;
    struct waiter *next;
} waiter_t;

enum { EP_SIGNAL = 1, EP_PIDFD = 2 };

struct broker {
    broker_config_t cfg;
    void *ctx;
    void *router;
    int epfd;
    int sigfd;
    char **ipc_paths;
    size_t nipc;

    idmap_t conns;   /* rid hash -> conn chain */
    idmap_t modules; /* name hash -> module chain */
    size_t nmodules;
    size_t nbeating; /* modules whose liveness comes from heartbeats */
    idmap_t calls; /* message id -> call */
    heap_t deadlines;
    waiter_t *waiters;

    uint64_t next_id;
    uint64_t anon_count;
    int64_t started;
    broker_stats_t stats;
    struct {
        int64_t second;
        int count;
        uint64_t suppressed;
    } log_rate[8];
};

/* ---- Logging -------------------------------------------------------------------------- */

static void s_log(broker_t *self, int level, const char *fmt, ...) LC_PRINTF(3, 4);
static void s_log(broker_t *self, int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > self->cfg.verbose + 1)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ld lc-broker %s: %s\n", when, ts.tv_nsec / 1000000, names[level], msg);
}

enum { LOG_MALFORMED, LOG_VERSION, LOG_TOO_LARGE, LOG_UNREGISTERED, LOG_UNROUTABLE, LOG_KINDS };

/* At most LOG_BURST lines per kind per second; the rest are counted and summed up. */
static bool s_log_allowed(broker_t *self, int kind)
{
    int64_t second = lc_mono_ms() / 1000;
    if (self->log_rate[kind].second != second) {
        if (self->log_rate[kind].suppressed)
            s_log(self, 1, "%" PRIu64 " more messages of this kind were not logged",
                  self->log_rate[kind].suppressed);
        self->log_rate[kind].second = second;
        self->log_rate[kind].count = 0;
        self->log_rate[kind].suppressed = 0;
    }
    if (self->log_rate[kind].count++ < LOG_BURST)
        return true;
    self->log_rate[kind].suppressed++;
    return false;
}

/* ---- Tables --------------------------------------------------------------------------- */

static uint64_t s_fnv(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static conn_t *s_conn_find(broker_t *self, const void *rid, size_t len)
{
    uint64_t h = s_fnv(rid, len);
    for (conn_t *c = idmap_get(&self->conns, h); c; c = c->next_hash)
        if (c->rid_len == len && memcmp(c->rid, rid, len) == 0)
            return c;
    return NULL;
}

static conn_t *s_conn_add(broker_t *self, const void *rid, size_t len, module_t *m, bool main)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    memcpy(c->rid, rid, len);
    c->rid_len = len;
    c->hash = s_fnv(rid, len);
    c->module = m;
    c->is_main = main;
    c->next_hash = idmap_get(&self->conns, c->hash);
    if (idmap_put(&self->conns, c->hash, c) < 0) {
        free(c);
        return NULL;
    }
    return c;
}

static void s_conn_remove(broker_t *self, conn_t *c)
{
    conn_t *head = idmap_take(&self->conns, c->hash), **pp = &head;
    while (*pp && *pp != c)
        pp = &(*pp)->next_hash;
    if (*pp)
        *pp = c->next_hash;
    if (head)
        idmap_put(&self->conns, c->hash, head);
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
    free(c);
}

static module_t *s_module_find(broker_t *self, const char *name, size_t len)
{
    uint64_t h = s_fnv(name, len);
    for (module_t *m = idmap_get(&self->modules, h); m; m = m->next_hash)
        if (strlen(m->name) == len && memcmp(m->name, name, len) == 0)
            return m;
    return NULL;
}

static const method_t *s_method_find(const module_t *m, const char *name, size_t len)
{
    uint64_t h = s_fnv(name, len);
    for (size_t i = 0; i < m->nmethods; i++)
        if (m->methods[i].hash == h && strlen(m->methods[i].name) == len &&
            memcmp(m->methods[i].name, name, len) == 0)
            return &m->methods[i];
    return NULL;
}

static uint64_t s_next_id(broker_t *self)
{
    return ++self->next_id;
}

/* ---- Sending -------------------------------------------------------------------------- */

/* Sends [rid][header][address][source][payload] to conn. The payload message is moved
 * (zero copy) and closed in every case. Returns 0 or -errno (EHOSTUNREACH: the peer is no
 * longer connected; EAGAIN: its queue is full). */
static int s_send(broker_t *self, const conn_t *to, const uint8_t *hdr, const char *address,
                  size_t alen, const char *source, zmq_msg_t *payload)
{
    if (zmq_send(self->router, to->rid, to->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int err = errno;
        if (payload)
            zmq_msg_close(payload);
        self->stats.unroutable++;
        if (s_log_allowed(self, LOG_UNROUTABLE))
            s_log(self, 1, "cannot deliver to %s: %s", to->module ? to->module->name : "a peer",
                  err == EAGAIN ? "its queue is full" : "it is no longer connected");
        return -err;
    }
    zmq_send(self->router, hdr, LC_HDR_SIZE, ZMQ_SNDMORE);
    zmq_send(self->router, address ? address : "", address ? alen : 0, ZMQ_SNDMORE);
    zmq_send(self->router, source ? source : "", source ? strlen(source) : 0, ZMQ_SNDMORE);
    if (payload) {
        zmq_msg_send(payload, self->router, 0);
        zmq_msg_close(payload);
    } else {
        zmq_send(self->router, "", 0, 0);
    }
    return 0;
}

static int s_send_json(broker_t *self, const conn_t *to, const lc_hdr_t *h, const char *address,
                       json_t *body /* stolen */)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    zmq_msg_t pm;
    zmq_msg_init_size(&pm, text ? strlen(text) : 0);
    if (text)
        memcpy(zmq_msg_data(&pm), text, strlen(text));
    free(text);
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_encode(h, hb);
    return s_send(self, to, hb, address, address ? strlen(address) : 0, "broker", &pm);
}

/* Sends an ERROR with status and a message to conn, answering seq (and message parent). */
static void s_error(broker_t *self, const conn_t *to, uint32_t seq, uint64_t parent, int status,
                    const char *fmt, ...) LC_PRINTF(6, 7);
static void s_error(broker_t *self, const conn_t *to, uint32_t seq, uint64_t parent, int status,
                    const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lc_hdr_t h = {.type = LC_MSG_ERROR,
                  .seq = seq,
                  .status = (uint32_t)status,
                  .id = s_next_id(self),
                  .parent = parent,
                  .time_us = lc_now_us()};
    s_send_json(self, to, &h, NULL, json_pack("{s:s}", "message", msg));
}

/* ---- Modules -------------------------------------------------------------------------- */

static void s_waiters_check(broker_t *self);

static void s_module_free(module_t *m)
{
    if (m->pidfd >= 0)
        close(m->pidfd);
    json_decref(m->doc);
    free(m->methods);
    free(m);
}

/* Removes a module: its callers learn at once that it is gone, its name becomes free. */
static void s_module_remove(broker_t *self, module_t *m, const char *why)
{
    s_log(self, 2, "module %s (pid %d) %s", m->name, m->pid, why);
    for (size_t i = 0; i < self->calls.cap; i++) {
        call_t *call = self->calls.values[i];
        if (!call || (call->callee != m && call->caller_module != m))
            continue;
        idmap_take_at(&self->calls, &i);
        if (call->callee == m && call->caller_module != m) {
            self->stats.gone++;
            const conn_t *to = call->reply_main ? call->caller_module->main : call->caller;
            s_error(self, to, call->seq, call->id, LC_STATUS_GONE,
                    "module '%s' %s before answering %s", m->name, why, call->target);
        }
        free(call);
    }
    if (m->pidfd >= 0)
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, m->pidfd, NULL);
    while (m->sats) {
        conn_t *c = m->sats;
        m->sats = c->next_sat;
        s_conn_remove(self, c);
    }
    if (m->main)
        s_conn_remove(self, m->main);
    module_t *head = idmap_take(&self->modules, m->hash), **pp = &head;
    while (*pp && *pp != m)
        pp = &(*pp)->next_hash;
    if (*pp)
        *pp = m->next_hash;
    if (head)
        idmap_put(&self->modules, m->hash, head);
    self->nmodules--;
    if (m->hb_ms > 0)
        self->nbeating--;
    s_module_free(m);
}

static bool s_module_alive(broker_t *self, module_t *m)
{
    (void)self;
    if (m->pidfd >= 0) {
        /* A pidfd is readable once the process has exited. */
        struct pollfd p = {.fd = m->pidfd, .events = POLLIN};
        return poll(&p, 1, 0) == 0;
    }
    return m->hb_ms <= 0 || lc_mono_ms() - m->last_seen <= (int64_t)m->hb_ms * DEAD_AFTER_BEATS;
}

/* Reads uid, gid and pid from the connection's "Peer-Address" (libzmq appends them from
 * SO_PEERCRED on ipc), and trusts them only if the pid is the one the module names. */
static bool s_peer_creds(zmq_msg_t *frame, int claimed_pid, int *uid, int *gid, int *pid)
{
    const char *pa = zmq_msg_gets(frame, "Peer-Address");
    if (!pa)
        return false;
    long v[3];
    const char *end = pa + strlen(pa);
    for (int i = 2; i >= 0; i--) {
        const char *colon = end;
        while (colon > pa && colon[-1] != ':')
            colon--;
        if (colon == pa || colon == end)
            return false;
        char num[24];
        size_t n = (size_t)(end - colon);
        if (n >= sizeof num)
            return false;
        memcpy(num, colon, n);
        num[n] = 0;
        char *e;
        v[i] = strtol(num, &e, 10);
        if (*e || v[i] < 0)
            return false;
        end = colon - 1;
    }
    if (v[2] != claimed_pid || claimed_pid <= 0)
        return false;
    *uid = (int)v[0];
    *gid = (int)v[1];
    *pid = (int)v[2];
    return true;
}

static int s_methods_load(module_t *m, json_t *list, char *err, size_t errlen)
{
    size_t n = json_array_size(list);
    m->methods = n ? calloc(n, sizeof *m->methods) : NULL;
    if (n && !m->methods)
        return LC_STATUS_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(list, i);
        const char *name = json_string_value(json_object_get(o, "name"));
        if (!name || !lc_method_name_valid(name, strlen(name))) {
            snprintf(err, errlen, "method %zu has no valid name (1-64 characters of "
                     "[A-Za-z0-9_], not starting with a digit)", i);
            return LC_STATUS_BAD_NAME;
        }
        snprintf(m->methods[i].name, sizeof m->methods[i].name, "%s", name);
        m->methods[i].hash = s_fnv(name, strlen(name));
    }
    m->nmethods = n;
    m->doc = json_incref(list);
    return 0;
}

/* ---- Registration --------------------------------------------------------------------- */

static void s_welcome(broker_t *self, conn_t *c, uint32_t seq)
{
    module_t *m = c->module;
    lc_hdr_t h = {.type = LC_MSG_WELCOME, .seq = seq, .id = s_next_id(self), .time_us = lc_now_us()};
    s_send_json(self, c, &h, m->name,
                json_pack("{s:s, s:i, s:I, s:i, s:s}", "name", m->name, "heartbeat_ms", m->hb_ms,
                          "max_payload", (json_int_t)self->cfg.max_payload, "broker_pid",
                          (int)getpid(), "version", LC_VERSION));
}

static void s_on_hello(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    const void *rid = zmq_msg_data(&f[0]);
    size_t rlen = zmq_msg_size(&f[0]);
    size_t nlen = zmq_msg_size(&f[2]);
    char name[LC_NAME_MAX + 1] = "";
    conn_t tmp = {.rid_len = rlen};
    memcpy(tmp.rid, rid, rlen);
    const conn_t *to = c ? c : &tmp;
    if (nlen > LC_NAME_MAX) {
        self->stats.refused++;
        s_error(self, to, h->seq, 0, LC_STATUS_BAD_NAME, "module name longer than %d bytes",
                LC_NAME_MAX);
        return;
    }
    memcpy(name, zmq_msg_data(&f[2]), nlen);
    name[nlen] = 0;

    size_t plen = zmq_msg_size(&f[4]);
    json_error_t jerr;
    json_t *hello = plen <= HELLO_MAX ? json_loadb(zmq_msg_data(&f[4]), plen, 0, &jerr) : NULL;
    const char *token = json_string_value(json_object_get(hello, "token"));
    if (!json_is_object(hello) || !token || strlen(token) != 16) {
        self->stats.malformed++;
        s_error(self, to, h->seq, 0, LC_STATUS_MALFORMED,
                "HELLO payload must be a JSON object with a 16-character \"token\"");
        json_decref(hello);
        return;
    }

    if (h->flags & LC_FLAG_ATTACH) {
        /* Another thread of a registered module opens its own connection. */
        module_t *m = s_module_find(self, name, nlen);
        if (!m || strcmp(m->token, token) != 0) {
            self->stats.refused++;
            s_error(self, to, h->seq, 0, m ? LC_STATUS_DENIED : LC_STATUS_NOT_REGISTERED,
                    m ? "token does not match module '%s'" : "no module '%s' to attach to",
                    name);
        } else if (c && c->module != m) {
            s_error(self, to, h->seq, 0, LC_STATUS_DENIED,
                    "connection already belongs to module '%s'", c->module->name);
        } else {
            if (!c && (c = s_conn_add(self, rid, rlen, m, false))) {
                c->next_sat = m->sats;
                m->sats = c;
            }
            if (c)
                s_welcome(self, c, h->seq);
        }
        json_decref(hello);
        return;
    }

    if (c && !c->is_main) {
        s_error(self, to, h->seq, 0, LC_STATUS_DENIED, "an attached connection cannot register");
        json_decref(hello);
        return;
    }
    if (c && nlen && strcmp(c->module->name, name) != 0) {
        s_error(self, to, h->seq, 0, LC_STATUS_BAD_NAME,
                "connection already registered as '%s'", c->module->name);
        json_decref(hello);
        return;
    }
    if (!nlen) {
        if (c) { /* an anonymous client saying hello again */
            s_welcome(self, c, h->seq);
            json_decref(hello);
            return;
        }
        snprintf(name, sizeof name, "_anon%" PRIu64, ++self->anon_count);
        nlen = strlen(name);
    } else if (!lc_name_valid(name, nlen)) {
        self->stats.refused++;
        s_error(self, to, h->seq, 0, LC_STATUS_BAD_NAME,
                "invalid module name '%s': use 1-64 characters of [A-Za-z0-9_-], starting with "
                "a letter", name);
        json_decref(hello);
        return;
    } else if (strcmp(name, "broker") == 0 || strcmp(name, "launcher") == 0) {
        self->stats.refused++;
        s_error(self, to, h->seq, 0, LC_STATUS_DENIED, "module name '%s' is reserved", name);
        json_decref(hello);
        return;
    }

    json_t *methods = json_object_get(hello, "methods");
    if (methods && !json_is_array(methods)) {
        self->stats.malformed++;
        s_error(self, to, h->seq, 0, LC_STATUS_MALFORMED, "\"methods\" must be an array");
        json_decref(hello);
        return;
    }

    if (c) {
        /* The same connection registers again: a new method table. */
        module_t *m = c->module;
        module_t fresh = {0};
        char err[200] = "";
        int st = s_methods_load(&fresh, methods, err, sizeof err);
        if (st) {
            free(fresh.methods);
            json_decref(fresh.doc);
            s_error(self, to, h->seq, 0, st, "%s", err);
        } else {
            free(m->methods);
            json_decref(m->doc);
            m->methods = fresh.methods;
            m->nmethods = fresh.nmethods;
            m->doc = fresh.doc;
            s_welcome(self, c, h->seq);
        }
        json_decref(hello);
        return;
    }

    module_t *old = s_module_find(self, name, nlen);
    if (old) {
        if (strcmp(old->token, token) == 0) {
            s_module_remove(self, old, "reconnected");
        } else if (!s_module_alive(self, old)) {
            s_module_remove(self, old, "is dead; its name is taken over");
        } else {
            self->stats.refused++;
            if (old->has_creds)
                s_error(self, to, h->seq, 0, LC_STATUS_NAME_TAKEN,
                        "module name '%s' is held by a live process (pid %d)", name, old->pid);
            else
                s_error(self, to, h->seq, 0, LC_STATUS_NAME_TAKEN,
                        "module name '%s' is held by a live module", name);
            json_decref(hello);
            return;
        }
    }

    module_t *m = calloc(1, sizeof *m);
    if (!m) {
        s_error(self, to, h->seq, 0, LC_STATUS_INTERNAL, "broker out of memory");
        json_decref(hello);
        return;
    }
    m->pidfd = -1;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->hash = s_fnv(name, nlen);
    snprintf(m->token, sizeof m->token, "%s", token);
    m->anonymous = name[0] == '_';
    m->last_seen = lc_mono_ms();
    m->since_us = lc_now_us();
    char err[200] = "";
    int st = s_methods_load(m, methods ? methods : json_array(), err, sizeof err);
    if (!methods)
        json_decref(m->doc), m->doc = json_array();
    if (st) {
        self->stats.refused++;
        s_error(self, to, h->seq, 0, st, "%s", err);
        s_module_free(m);
        json_decref(hello);
        return;
    }
    int claimed = (int)json_integer_value(json_object_get(hello, "pid"));
    json_decref(hello);
    m->has_creds = s_peer_creds(&f[1], claimed, &m->uid, &m->gid, &m->pid);
    if (m->has_creds) {
        m->pidfd = (int)syscall(SYS_pidfd_open, m->pid, 0);
        if (m->pidfd >= 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)EP_PIDFD << 32)};
            ev.data.u64 |= (uint32_t)m->pidfd;
            epoll_ctl(self->epfd, EPOLL_CTL_ADD, m->pidfd, &ev);
        }
    } else {
        m->pid = claimed;
    }
    /* Without a pidfd only heartbeats tell that a module died. */
    m->hb_ms = m->pidfd >= 0 ? 0 : self->cfg.heartbeat_ms;
    m->main = s_conn_add(self, rid, rlen, m, true);
    m->next_hash = idmap_get(&self->modules, m->hash);
    if (!m->main || idmap_put(&self->modules, m->hash, m) < 0) {
        if (m->main)
            s_conn_remove(self, m->main);
        s_error(self, to, h->seq, 0, LC_STATUS_INTERNAL, "broker out of memory");
        s_module_free(m);
        return;
    }
    self->nmodules++;
    if (m->hb_ms > 0)
        self->nbeating++;
    self->stats.registrations++;
    s_log(self, 2, "module %s registered (pid %d%s, %zu methods)", m->name, m->pid,
          m->has_creds ? "" : ", heartbeats", m->nmethods);
    s_welcome(self, m->main, h->seq);
    s_waiters_check(self);
}

/* ---- Built-in methods of the module "broker" ------------------------------------------ */

static json_t *s_module_info(module_t *m)
{
    json_t *o = json_pack("{s:s, s:i, s:O, s:I, s:b, s:s}", "name", m->name, "pid", m->pid,
                          "methods", m->doc, "since_us", (json_int_t)m->since_us, "anonymous",
                          m->anonymous, "liveness", m->pidfd >= 0 ? "pidfd" : "heartbeat");
    if (m->has_creds) {
        json_object_set_new(o, "uid", json_integer(m->uid));
        json_object_set_new(o, "gid", json_integer(m->gid));
    }
    json_object_set_new(o, "calls_in", json_integer((json_int_t)m->calls_in));
    json_object_set_new(o, "calls_out", json_integer((json_int_t)m->calls_out));
    return o;
}

static bool s_all_registered(broker_t *self, json_t *names)
{
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        const char *n = json_string_value(v);
        if (!n || !s_module_find(self, n, strlen(n)))
            return false;
    }
    return true;
}

static void s_reply(broker_t *self, const conn_t *to, uint32_t seq, uint64_t parent, uint64_t tx,
                    json_t *result)
{
    lc_hdr_t h = {.type = LC_MSG_REPLY, .seq = seq, .id = s_next_id(self), .parent = parent,
                  .tx = tx, .time_us = lc_now_us()};
    s_send_json(self, to, &h, NULL, result);
}

static void s_waiters_check(broker_t *self)
{
    int64_t now = lc_mono_ms();
    for (waiter_t **wp = &self->waiters; *wp;) {
        waiter_t *w = *wp;
        bool ready = s_all_registered(self, w->modules);
        if (ready)
            s_reply(self, w->caller, w->seq, w->id, w->tx, json_pack("{s:O}", "ready", w->modules));
        else if (now >= w->deadline)
            s_error(self, w->caller, w->seq, w->id, LC_STATUS_TIMEOUT,
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

static void s_builtin(broker_t *self, conn_t *c, const lc_hdr_t *h, uint64_t id, uint64_t tx,
                      const char *method, zmq_msg_t *payload)
{
    size_t n = zmq_msg_size(payload);
    json_t *args = n ? json_loadb(zmq_msg_data(payload), n, 0, NULL) : json_object();
    if (!json_is_object(args)) {
        s_error(self, c, h->seq, id, LC_STATUS_MALFORMED, "arguments must be a JSON object");
    } else if (strcmp(method, "ping") == 0) {
        s_reply(self, c, h->seq, id, tx,
                json_pack("{s:s, s:i, s:I, s:i}", "version", LC_VERSION, "pid", (int)getpid(),
                          "uptime_ms", (json_int_t)(lc_mono_ms() - self->started),
                          "protocol", LC_WIRE_VERSION));
    } else if (strcmp(method, "ready") == 0) {
        const char *name = json_string_value(json_object_get(args, "module"));
        if (!name)
            s_error(self, c, h->seq, id, LC_STATUS_HANDLER,
                    "{\"module\": name} expected"); /* status HANDLER: the method's own error */
        else
            s_reply(self, c, h->seq, id, tx,
                    json_boolean(s_module_find(self, name, strlen(name)) != NULL));
    } else if (strcmp(method, "wait") == 0) {
        json_t *mods = json_object_get(args, "modules");
        if (!json_is_array(mods)) {
            s_error(self, c, h->seq, id, LC_STATUS_HANDLER, "{\"modules\": [names]} expected");
        } else if (s_all_registered(self, mods)) {
            s_reply(self, c, h->seq, id, tx, json_pack("{s:O}", "ready", mods));
        } else {
            waiter_t *w = calloc(1, sizeof *w);
            if (w) {
                w->caller = c;
                w->seq = h->seq;
                w->id = id;
                w->tx = tx;
                w->modules = json_incref(mods);
                w->deadline = lc_mono_ms() +
                              (h->timeout_ms ? h->timeout_ms : (uint32_t)self->cfg.call_timeout_ms);
                w->next = self->waiters;
                self->waiters = w;
            }
        }
    } else if (strcmp(method, "list") == 0) {
        json_t *list = json_array();
        for (size_t i = 0; i < self->modules.cap; i++)
            for (module_t *m = self->modules.values[i]; m; m = m->next_hash)
                json_array_append_new(list, s_module_info(m));
        s_reply(self, c, h->seq, id, tx, json_pack("{s:o}", "modules", list));
    } else if (strcmp(method, "stats") == 0) {
        const broker_stats_t *s = &self->stats;
        s_reply(self, c, h->seq, id, tx,
                json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                          "modules", (json_int_t)self->nmodules, "calls_open",
                          (json_int_t)self->calls.count, "calls", (json_int_t)s->calls, "replies",
                          (json_int_t)s->replies, "unknown_target", (json_int_t)s->unknown_target,
                          "gone", (json_int_t)s->gone, "timeouts", (json_int_t)s->timeouts,
                          "late_replies", (json_int_t)s->late_replies, "malformed",
                          (json_int_t)s->malformed, "too_large", (json_int_t)s->too_large,
                          "version", (json_int_t)s->version, "unroutable",
                          (json_int_t)s->unroutable, "registrations",
                          (json_int_t)s->registrations, "refused", (json_int_t)s->refused));
    } else {
        self->stats.unknown_target++;
        s_error(self, c, h->seq, id, LC_STATUS_UNKNOWN_METHOD,
                "module 'broker' has no method '%s' (it has ping, ready, wait, list, stats)",
                method);
    }
    json_decref(args);
}

/* ---- Calls and replies ---------------------------------------------------------------- */

static void s_on_call(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    const char *addr = zmq_msg_data(&f[2]);
    size_t alen = zmq_msg_size(&f[2]);
    const char *dot = alen ? memchr(addr, '.', alen) : NULL;
    char target[LC_ADDRESS_MAX + 1];
    memcpy(target, addr, alen > LC_ADDRESS_MAX ? LC_ADDRESS_MAX : alen);
    target[alen > LC_ADDRESS_MAX ? LC_ADDRESS_MAX : alen] = 0;
    size_t mlen = dot ? (size_t)(dot - addr) : 0;
    if (!dot || !lc_name_valid(addr, mlen) ||
        !lc_method_name_valid(dot + 1, alen - mlen - 1)) {
        self->stats.malformed++;
        s_error(self, c, h->seq, 0, LC_STATUS_BAD_NAME,
                "invalid call target '%.*s': expected module.method", (int)(alen > 200 ? 200 : alen),
                addr);
        return;
    }
    uint64_t id = s_next_id(self);
    uint64_t tx = h->tx ? h->tx : id;
    const char *method = dot + 1;
    size_t method_len = alen - mlen - 1;
    c->module->calls_out++;
    if (mlen == 6 && memcmp(addr, "broker", 6) == 0) {
        s_builtin(self, c, h, id, tx, target + 7, &f[4]);
        return;
    }
    module_t *callee = s_module_find(self, addr, mlen);
    if (!callee) {
        self->stats.unknown_target++;
        s_error(self, c, h->seq, id, LC_STATUS_UNKNOWN_MODULE, "no module '%.*s' on the bus",
                (int)mlen, addr);
        return;
    }
    if (!s_method_find(callee, method, method_len)) {
        self->stats.unknown_target++;
        s_error(self, c, h->seq, id, LC_STATUS_UNKNOWN_METHOD, "module '%s' has no method '%.*s'",
                callee->name, (int)method_len, method);
        return;
    }
    call_t *call = malloc(sizeof *call);
    if (!call) {
        s_error(self, c, h->seq, id, LC_STATUS_INTERNAL, "broker out of memory");
        return;
    }
    call->id = id;
    call->caller = c;
    call->caller_module = c->module;
    call->callee = callee;
    call->seq = h->seq;
    call->reply_main = (h->flags & LC_FLAG_REPLY_MAIN) != 0;
    uint32_t tmo = h->timeout_ms ? h->timeout_ms : (uint32_t)self->cfg.call_timeout_ms;
    call->deadline = lc_mono_ms() + tmo;
    memcpy(call->target, target, sizeof call->target);
    if (idmap_put(&self->calls, id, call) < 0 || heap_push(&self->deadlines, call->deadline, id) < 0) {
        idmap_take(&self->calls, id);
        free(call);
        s_error(self, c, h->seq, id, LC_STATUS_INTERNAL, "broker out of memory");
        return;
    }
    /* Forward: the header is patched in place, the payload moves without a copy. */
    uint8_t *hb = zmq_msg_data(&f[1]);
    lc_hdr_put_u64(hb, LC_OFF_ID, id);
    lc_hdr_put_u64(hb, LC_OFF_TX, tx);
    lc_hdr_put_u64(hb, LC_OFF_TIME, lc_now_us());
    lc_hdr_put_u32(hb, LC_OFF_TIMEOUT, tmo);
    hb[LC_OFF_FLAGS] = hb[LC_OFF_FLAGS + 1] = 0;
    if (!hb[LC_OFF_PRIORITY])
        hb[LC_OFF_PRIORITY] = LC_PRIORITY_NORMAL;
    int rc = s_send(self, callee->main, hb, addr, alen, c->module->name, &f[4]);
    if (rc < 0) {
        idmap_take(&self->calls, id);
        free(call);
        if (rc == -EHOSTUNREACH) {
            self->stats.gone++;
            s_error(self, c, h->seq, id, LC_STATUS_GONE, "module '%s' is no longer connected",
                    callee->name);
            s_module_remove(self, callee, "disconnected");
        } else {
            s_error(self, c, h->seq, id, LC_STATUS_NOT_READY,
                    "module '%s' is not reading its messages", callee->name);
        }
        return;
    }
    callee->calls_in++;
    self->stats.calls++;
}

static void s_on_reply(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    call_t *call = idmap_get(&self->calls, h->parent);
    if (!call || call->callee != c->module) {
        /* Too late (the caller's deadline passed, or it went away), or not its call. */
        self->stats.late_replies++;
        return;
    }
    idmap_take(&self->calls, h->parent);
    const conn_t *to = call->reply_main ? call->caller_module->main : call->caller;
    uint8_t *hb = zmq_msg_data(&f[1]);
    lc_hdr_put_u32(hb, LC_OFF_SEQ, call->seq);
    lc_hdr_put_u64(hb, LC_OFF_ID, s_next_id(self));
    lc_hdr_put_u64(hb, LC_OFF_TIME, lc_now_us());
    hb[LC_OFF_FLAGS] = hb[LC_OFF_FLAGS + 1] = 0;
    if (s_send(self, to, hb, NULL, 0, c->module->name, &f[4]) == 0)
        self->stats.replies++;
    free(call);
}

static module_t *s_find_silent(broker_t *self, int64_t now)
{
    for (size_t i = 0; i < self->modules.cap; i++)
        for (module_t *m = self->modules.values[i]; m; m = m->next_hash)
            if (m->hb_ms > 0 && now - m->last_seen > (int64_t)m->hb_ms * DEAD_AFTER_BEATS)
                return m;
    return NULL;
}

static void s_expire(broker_t *self, int64_t now)
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
        s_waiters_check(self);
    /* Peers without a pidfd are dead after DEAD_AFTER_BEATS silent heartbeat intervals. */
    module_t *dead;
    while ((dead = s_find_silent(self, now)))
        s_module_remove(self, dead, "missed its heartbeats");
}

/* ---- Reading -------------------------------------------------------------------------- */

static void s_on_message(broker_t *self, zmq_msg_t *f, int nframes, bool truncated)
{
    conn_t *c = s_conn_find(self, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]));
    conn_t tmp; /* where to answer a peer that is not registered */
    if (!c) {
        tmp.rid_len = zmq_msg_size(&f[0]);
        memcpy(tmp.rid, zmq_msg_data(&f[0]), tmp.rid_len);
        tmp.module = NULL;
    }
    const conn_t *to = c ? c : &tmp;
    lc_hdr_t h;
    int st = nframes >= 2 ? lc_hdr_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &h)
                          : LC_STATUS_MALFORMED;
    if (st == LC_STATUS_VERSION) {
        self->stats.version++;
        if (s_log_allowed(self, LOG_VERSION))
            s_log(self, 1, "peer%s%s speaks protocol version %u; this broker speaks %d",
                  c ? " " : "", c ? c->module->name : "", h.version, LC_WIRE_VERSION);
        s_error(self, to, 0, 0, LC_STATUS_VERSION,
                "protocol version %u is not supported; this broker speaks version %d", h.version,
                LC_WIRE_VERSION);
        return;
    }
    const char *what = NULL;
    if (truncated)
        what = "more than 5 frames";
    else if (nframes != LC_FRAMES + 1)
        what = "wrong number of frames (expected header, address, source, payload)";
    else if (st != LC_STATUS_OK)
        what = "invalid header frame (signature, size, type, priority or reserved bits)";
    else if (zmq_msg_size(&f[3]) != 0)
        what = "source frame must be empty: the broker fills it in";
    else if (zmq_msg_size(&f[2]) > LC_ADDRESS_MAX)
        what = "address frame longer than 255 bytes";
    if (what) {
        self->stats.malformed++;
        if (s_log_allowed(self, LOG_MALFORMED))
            s_log(self, 1, "malformed message from %s: %s", c ? c->module->name : "a peer", what);
        s_error(self, to, st == LC_STATUS_OK ? h.seq : 0, 0, LC_STATUS_MALFORMED,
                "malformed message: %s", what);
        return;
    }
    if (zmq_msg_size(&f[4]) > self->cfg.max_payload) {
        self->stats.too_large++;
        if (s_log_allowed(self, LOG_TOO_LARGE))
            s_log(self, 1, "payload of %zu bytes from %s refused (limit %zu)",
                  zmq_msg_size(&f[4]), c ? c->module->name : "a peer", self->cfg.max_payload);
        s_error(self, to, h.seq, 0, LC_STATUS_TOO_LARGE,
                "payload of %zu bytes is over the bus limit of %zu bytes", zmq_msg_size(&f[4]),
                self->cfg.max_payload);
        return;
    }
    if (h.type == LC_MSG_HELLO) {
        s_on_hello(self, f, c, &h);
        return;
    }
    if (!c) {
        if (h.type == LC_MSG_BYE || h.type == LC_MSG_REPLY || h.type == LC_MSG_ERROR)
            return; /* nothing to answer */
        if (s_log_allowed(self, LOG_UNREGISTERED))
            s_log(self, 2, "message of type %u from an unregistered peer", h.type);
        s_error(self, to, h.seq, 0, LC_STATUS_NOT_REGISTERED,
                "not registered: send HELLO first");
        return;
    }
    c->module->last_seen = lc_mono_ms();
    switch (h.type) {
    case LC_MSG_CALL:
        s_on_call(self, f, c, &h);
        break;
    case LC_MSG_REPLY:
    case LC_MSG_ERROR:
        s_on_reply(self, f, c, &h);
        break;
    case LC_MSG_PING: {
        lc_hdr_t pong = {.type = LC_MSG_PONG, .seq = h.seq, .id = s_next_id(self),
                         .time_us = lc_now_us()};
        s_send_json(self, c, &pong, NULL, NULL);
        break;
    }
    case LC_MSG_BYE:
        if (c->is_main) {
            s_module_remove(self, c->module, "said goodbye");
        } else {
            module_t *m = c->module;
            for (conn_t **pp = &m->sats; *pp; pp = &(*pp)->next_sat)
                if (*pp == c) {
                    *pp = c->next_sat;
                    break;
                }
            s_conn_remove(self, c);
        }
        break;
    default:
        self->stats.malformed++;
        s_error(self, c, h.seq, 0, LC_STATUS_MALFORMED,
                "message type %u is not accepted by this broker", h.type);
    }
}

static void s_read_router(broker_t *self)
{
    for (int n = 0; n < RECV_BATCH; n++) {
        zmq_msg_t f[MAX_FRAMES];
        zmq_msg_init(&f[0]);
        if (zmq_msg_recv(&f[0], self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f[0]);
            return;
        }
        int count = 1;
        bool truncated = false;
        bool more = zmq_msg_more(&f[0]);
        while (more) {
            if (count < MAX_FRAMES) {
                zmq_msg_init(&f[count]);
                zmq_msg_recv(&f[count], self->router, 0);
                more = zmq_msg_more(&f[count]);
                count++;
            } else {
                zmq_msg_t extra;
                zmq_msg_init(&extra);
                zmq_msg_recv(&extra, self->router, 0);
                more = zmq_msg_more(&extra);
                zmq_msg_close(&extra);
                truncated = true;
            }
        }
        s_on_message(self, f, count, truncated);
        for (int i = 0; i < count; i++)
            zmq_msg_close(&f[i]);
    }
}

static void s_on_pidfd(broker_t *self, int fd)
{
    for (size_t i = 0; i < self->modules.cap; i++)
        for (module_t *m = self->modules.values[i]; m; m = m->next_hash)
            if (m->pidfd == fd) {
                s_module_remove(self, m, "exited");
                return;
            }
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL); /* already removed */
}

/* ---- Endpoints ------------------------------------------------------------------------ */

/* Creates the missing folders of path with mode 0700. */
static int s_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* Prepares an ipc:// endpoint: its folder exists; a socket file left by a dead broker is
 * removed; a live broker there is an error. */
static int s_prepare_ipc(const char *path, char *err, size_t errlen)
{
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "socket path %s is longer than %zu bytes; choose a shorter one",
                 path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return -1;
    }
    if (s_mkdirs(path) < 0) {
        snprintf(err, errlen, "cannot create the folder of %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int rc = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int cerr = errno;
    if (fd >= 0)
        close(fd);
    if (rc == 0) {
        snprintf(err, errlen, "another broker is already serving ipc://%s; stop it first or "
                 "choose another endpoint with --endpoint", path);
        return -1;
    }
    if (cerr == ECONNREFUSED || cerr == ENOTSOCK) {
        if (unlink(path) < 0) {
            snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "cannot check %s: %s", path, strerror(cerr));
    return -1;
}

broker_t *broker_new(const broker_config_t *cfg, char *err, size_t errlen)
{
    broker_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    self->epfd = self->sigfd = -1;
    self->started = lc_mono_ms();
    /* Ids keep growing across restarts: they start from the clock (16 per microsecond). */
    self->next_id = lc_now_us() << 4;
    idmap_init(&self->conns);
    idmap_init(&self->modules);
    idmap_init(&self->calls);
    heap_init(&self->deadlines);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    self->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->sigfd < 0 || self->epfd < 0) {
        snprintf(err, errlen, "cannot set up the event loop: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)EP_SIGNAL << 32};
    epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->sigfd, &ev);

    self->ctx = zmq_ctx_new();
    self->router = self->ctx ? zmq_socket(self->ctx, ZMQ_ROUTER) : NULL;
    if (!self->router) {
        snprintf(err, errlen, "cannot create the ZeroMQ socket: %s", zmq_strerror(errno));
        goto fail;
    }
    int one = 1, zero = 0, hwm = 100000;
    int64_t maxmsg = (int64_t)cfg->max_payload * 2 + 4096;
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* Frames far over the payload limit cost the peer its connection, not our memory. */
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);

    for (const char **ep = cfg->endpoints; *ep; ep++) {
        if (strncmp(*ep, "ipc://", 6) == 0) {
            const char *path = *ep + 6;
            if (s_prepare_ipc(path, err, errlen) < 0)
                goto fail;
            char **paths = realloc(self->ipc_paths, (self->nipc + 1) * sizeof *paths);
            if (!paths)
                goto fail;
            self->ipc_paths = paths;
            self->ipc_paths[self->nipc++] = strdup(path);
        }
        if (zmq_bind(self->router, *ep) < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s%s", *ep, zmq_strerror(errno),
                     errno == EADDRINUSE ? " (another broker may be running there)" : "");
            if (strncmp(*ep, "ipc://", 6) == 0)
                free(self->ipc_paths[--self->nipc]);
            goto fail;
        }
        if (strncmp(*ep, "ipc://", 6) == 0)
            chmod(*ep + 6, 0700); /* access to the bus is access to the socket */
        s_log(self, 2, "listening on %s", *ep);
    }
    return self;
fail:
    broker_destroy(&self);
    return NULL;
}

int broker_run(broker_t *self)
{
    for (;;) {
        int timeout = -1;
        const heap_entry_t *top = heap_top(&self->deadlines);
        int64_t now = lc_mono_ms();
        if (top)
            timeout = top->when <= now ? 0 : (int)(top->when - now);
        if ((self->nbeating || self->waiters) && (timeout < 0 || timeout > 200))
            timeout = 200;
        zmq_pollitem_t items[2] = {{self->router, 0, ZMQ_POLLIN, 0},
                                   {NULL, self->epfd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, timeout) < 0) {
            if (errno == EINTR)
                continue;
            s_log(self, 0, "poll failed: %s", zmq_strerror(errno));
            return -1;
        }
        if (items[0].revents)
            s_read_router(self);
        if (items[1].revents) {
            struct epoll_event evs[16];
            int n = epoll_wait(self->epfd, evs, 16, 0);
            for (int i = 0; i < n; i++) {
                uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32);
                if (kind == EP_SIGNAL) {
                    struct signalfd_siginfo si;
                    if (read(self->sigfd, &si, sizeof si) == sizeof si) {
                        s_log(self, 2, "signal %u: exiting", si.ssi_signo);
                        return 0;
                    }
                } else if (kind == EP_PIDFD) {
                    s_on_pidfd(self, (int)(uint32_t)evs[i].data.u64);
                }
            }
        }
        s_expire(self, lc_mono_ms());
    }
}

const broker_stats_t *broker_stats(const broker_t *self)
{
    return &self->stats;
}

void broker_destroy(broker_t **self_p)
{
    broker_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->modules.cap; i++) {
        module_t *m = self->modules.values[i];
        while (m) {
            module_t *next = m->next_hash;
            while (m->sats) {
                conn_t *c = m->sats;
                m->sats = c->next_sat;
                free(c);
            }
            free(m->main);
            s_module_free(m);
            m = next;
        }
    }
    for (size_t i = 0; i < self->calls.cap; i++)
        free(self->calls.values[i]);
    while (self->waiters) {
        waiter_t *w = self->waiters;
        self->waiters = w->next;
        json_decref(w->modules);
        free(w);
    }
    idmap_clear(&self->conns);
    idmap_clear(&self->modules);
    idmap_clear(&self->calls);
    heap_clear(&self->deadlines);
    if (self->router)
        zmq_close(self->router);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    for (size_t i = 0; i < self->nipc; i++) {
        unlink(self->ipc_paths[i]);
        free(self->ipc_paths[i]);
    }
    free(self->ipc_paths);
    if (self->sigfd >= 0)
        close(self->sigfd);
    if (self->epfd >= 0)
        close(self->epfd);
    free(self);
    *self_p = NULL;
}
