/* lc-broker's routing table: connections, modules, registration and liveness. */
#include "broker_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HELLO_MAX 65536 /* bytes of a registration payload */

/* ---- Connections ---------------------------------------------------------------------- */

conn_t *broker_conn_find(broker_t *self, const void *rid, size_t len)
{
    uint64_t h = broker_hash(rid, len);
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
    c->hash = broker_hash(rid, len);
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
    broker_calls_drop_conn(self, c);
    free(c);
}

/* ---- Modules -------------------------------------------------------------------------- */

module_t *broker_module_find(broker_t *self, const char *name, size_t len)
{
    uint64_t h = broker_hash(name, len);
    for (module_t *m = idmap_get(&self->modules, h); m; m = m->next_hash)
        if (strlen(m->name) == len && memcmp(m->name, name, len) == 0)
            return m;
    return NULL;
}

const method_t *broker_method_find(const module_t *m, const char *name, size_t len)
{
    uint64_t h = broker_hash(name, len);
    for (size_t i = 0; i < m->nmethods; i++)
        if (m->methods[i].hash == h && strlen(m->methods[i].name) == len &&
            memcmp(m->methods[i].name, name, len) == 0)
            return &m->methods[i];
    return NULL;
}

static void s_close_pidfd(broker_t *self, module_t *m)
{
    if (m->pidfd >= 0) {
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, m->pidfd, NULL);
        close(m->pidfd);
        m->pidfd = -1;
    }
    if (m->ledger_fd >= 0) {
        close(m->ledger_fd);
        m->ledger_fd = -1;
    }
    if (m->hb_ms > 0) {
        self->nbeating--;
        m->hb_ms = 0;
    }
}

/* Drops every connection of the module. */
static void s_conns_drop(broker_t *self, module_t *m)
{
    while (m->sats) {
        conn_t *c = m->sats;
        m->sats = c->next_sat;
        s_conn_remove(self, c);
    }
    if (m->main) {
        s_conn_remove(self, m->main);
        m->main = NULL;
    }
}

/* Takes the module out of the table and frees it. */
static void s_module_delete(broker_t *self, module_t *m)
{
    module_t *head = idmap_take(&self->modules, m->hash), **pp = &head;
    while (*pp && *pp != m)
        pp = &(*pp)->next_hash;
    if (*pp)
        *pp = m->next_hash;
    if (head)
        idmap_put(&self->modules, m->hash, head);
    self->nmodules--;
    broker_subs_clear(self, m);
    broker_queue_discard(self, m);
    s_close_pidfd(self, m);
    idmap_clear(&m->inflight);
    json_decref(m->doc);
    free(m->methods);
    free(m);
}

void broker_module_lost(broker_t *self, module_t *m, const char *why, bool crashed)
{
    if (m->state == MS_GONE)
        return;
    broker_log(self, m->anonymous ? L_DEBUG : L_INFO, "module %s (pid %d) %s", m->name, m->pid,
               why);
    if (m->unreachable) {
        m->unreachable = false;
        self->unreachable--;
    }
    if (m->exited_at) {
        m->exited_at = 0;
        self->exiting--;
    }
    broker_calls_gone(self, m, why);
    broker_inflight_lost(self, m, crashed);
    s_conns_drop(self, m);
    s_close_pidfd(self, m);
    broker_set_state(self, m, MS_GONE);
    if (m->queue.count > 0 && !m->tool) {
        /* Its backlog waits for a module registering under the same name. */
        m->gone_since = lc_mono_ms();
        broker_log(self, L_INFO, "keeping %zu queued items for %s for %d ms", m->queue.count,
                   m->name, self->cfg.grace_ms);
    } else {
        s_module_delete(self, m);
    }
    broker_waiters_check(self);
}

void broker_on_bye(broker_t *self, conn_t *c)
{
    if (c->is_main) {
        /* Its DONEs came before its BYE and are taken as they are: the ledger is not read
         * (a completion made after the BYE, as at a clean exit, is not counted done). */
        if (c->module->ledger_fd >= 0) {
            close(c->module->ledger_fd);
            c->module->ledger_fd = -1;
        }
        broker_module_lost(self, c->module, "said goodbye", false);
        return;
    }
    module_t *m = c->module;
    for (conn_t **pp = &m->sats; *pp; pp = &(*pp)->next_sat)
        if (*pp == c) {
            *pp = c->next_sat;
            break;
        }
    s_conn_remove(self, c);
}

static bool s_module_alive(broker_t *self, module_t *m)
{
    if (m->state == MS_GONE || !m->main)
        return false;
    if (m->pidfd >= 0) {
        /* A pidfd is readable once the process has exited. */
        struct pollfd p = {.fd = m->pidfd, .events = POLLIN};
        return poll(&p, 1, 0) == 0;
    }
    /* No pidfd (tcp): a process that died has had its connection closed by the kernel, so a
     * message to it is refused at once. */
    lc_hdr_t probe = {.type = LC_MSG_PONG, .id = broker_next_id(self), .time_us = lc_now_us()};
    if (broker_send_json(self, m->main, &probe, NULL, NULL) == -EHOSTUNREACH)
        return false;
    return m->hb_ms <= 0 || lc_mono_ms() - m->last_seen <= (int64_t)m->hb_ms * DEAD_AFTER_BEATS;
}

void broker_on_pidfd(broker_t *self, int fd)
{
    for (size_t i = 0; i < self->modules.cap; i++)
        for (module_t *m = self->modules.values[i]; m; m = m->next_hash)
            if (m->pidfd == fd) {
                /* Its goodbye may still be on its way through the socket: it gets a moment
                 * (EXIT_GRACE_MS) before the exit counts as a crash. */
                epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
                if (!m->exited_at) {
                    m->exited_at = lc_mono_ms();
                    self->exiting++;
                }
                return;
            }
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL); /* already removed */
}

static module_t *s_find_expired(broker_t *self, int64_t now)
{
    for (size_t i = 0; i < self->modules.cap; i++)
        for (module_t *m = self->modules.values[i]; m; m = m->next_hash) {
            if (m->hb_ms > 0 && now - m->last_seen > (int64_t)m->hb_ms * DEAD_AFTER_BEATS)
                return m;
            if (m->state == MS_GONE && now - m->gone_since > self->cfg.grace_ms)
                return m;
        }
    return NULL;
}

static module_t *s_find_unreachable(broker_t *self)
{
    for (size_t i = 0; i < self->modules.cap; i++)
        for (module_t *m = self->modules.values[i]; m; m = m->next_hash)
            if (m->unreachable)
                return m;
    return NULL;
}

static module_t *s_find_exited(broker_t *self, int64_t now)
{
    for (size_t i = 0; i < self->modules.cap; i++)
        for (module_t *m = self->modules.values[i]; m; m = m->next_hash)
            if (m->exited_at && now - m->exited_at >= EXIT_GRACE_MS)
                return m;
    return NULL;
}

/* A process that lives on may close its connection without a goodbye: nothing the broker
 * watches says so (its pidfd stays quiet, and ZeroMQ tells no disconnection). So every
 * PROBE_MS, each main connection silent that long gets a probe (a PONG with seq 0, which
 * clients ignore); ROUTER_MANDATORY refuses it for a connection that is gone, and the module
 * is then removed as disconnected at the next liveness check. */
void broker_probe_silent(broker_t *self, int64_t now)
{
    if (now - self->last_probe < PROBE_MS)
        return;
    self->last_probe = now;
    for (size_t i = 0; i < self->modules.cap; i++)
        for (module_t *m = self->modules.values[i]; m; m = m->next_hash) {
            if (m->state == MS_GONE || !m->main || m->unreachable || m->exited_at ||
                now - m->last_seen < PROBE_MS)
                continue;
            /* Sent quietly: a connection whose queue is full (a module that stopped
             * reading) is alive, not unroutable, and is not logged every sweep. */
            lc_hdr_t probe = {.type = LC_MSG_PONG, .id = broker_next_id(self),
                              .time_us = lc_now_us()};
            uint8_t hb[LC_HDR_SIZE];
            lc_hdr_encode(&probe, hb);
            if (zmq_send(self->router, m->main->rid, m->main->rid_len,
                         ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
                if (errno == EHOSTUNREACH) {
                    self->stats.unroutable++;
                    m->unreachable = true;
                    self->unreachable++;
                }
                continue;
            }
            zmq_send(self->router, hb, LC_HDR_SIZE, ZMQ_SNDMORE);
            zmq_send(self->router, "", 0, ZMQ_SNDMORE);
            zmq_send(self->router, "broker", 6, ZMQ_SNDMORE);
            zmq_send(self->router, "", 0, 0);
        }
}

void broker_check_liveness(broker_t *self, int64_t now)
{
    module_t *m;
    while (self->exiting && (m = s_find_exited(self, now)))
        broker_module_lost(self, m, "exited", true);
    while (self->unreachable && (m = s_find_unreachable(self))) {
        m->unreachable = false;
        self->unreachable--;
        broker_module_lost(self, m, "disconnected", true);
    }
    if (self->expected && now >= self->expect_deadline)
        broker_activate_check(self, NULL);
    if (!self->nbeating && !self->queued)
        return;
    while ((m = s_find_expired(self, now))) {
        if (m->state != MS_GONE) {
            /* Peers without a pidfd are dead after DEAD_AFTER_BEATS silent intervals. */
            broker_module_lost(self, m, "missed its heartbeats", true);
            continue;
        }
        size_t lost = m->queue.count;
        broker_log(self, L_WARNING,
                   "module %s did not come back within %d ms: %zu queued items "
                   "discarded",
                   m->name, self->cfg.grace_ms, lost);
        char name[LC_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", m->name);
        s_module_delete(self, m);
        broker_emit(self, "module_lost",
                    json_pack("{s:s, s:I, s:s}", "module", name, "lost", (json_int_t)lost, "reason",
                              "not back within the grace time"));
    }
}

/* Reads uid, gid and pid from the connection's "Peer-Address": on ipc libzmq gives
 * "<host>:<uid>:<gid>:<pid>" from SO_PEERCRED. Exactly three colons and three decimal
 * fields rule out an IPv6 address (which needs "::" with so few colons). False for a peer
 * without kernel credentials (tcp). */
static bool s_peer_ids(zmq_msg_t *frame, int *uid, int *gid, int *pid)
{
    const char *pa = zmq_msg_gets(frame, "Peer-Address");
    if (!pa)
        return false;
    int colons = 0;
    for (const char *p = pa; *p; p++)
        colons += *p == ':';
    if (colons != 3)
        return false;
    const char *field = strchr(pa, ':') + 1;
    long v[3];
    for (int i = 0; i < 3; i++) {
        char *end;
        if (*field < '0' || *field > '9')
            return false;
        v[i] = strtol(field, &end, 10);
        if ((i < 2 && *end != ':') || (i == 2 && *end) || v[i] < 0 || v[i] > INT32_MAX)
            return false;
        field = end + 1;
    }
    *uid = (int)v[0];
    *gid = (int)v[1];
    *pid = (int)v[2];
    return true;
}

/* The kernel's credentials, when the pid is also the one the module names. */
static bool s_peer_creds(zmq_msg_t *frame, int claimed_pid, int *uid, int *gid, int *pid)
{
    int u, g, p;
    if (claimed_pid <= 0 || !s_peer_ids(frame, &u, &g, &p) || p != claimed_pid)
        return false;
    *uid = u;
    *gid = g;
    *pid = p;
    return true;
}

static int s_methods_load(method_t **out, size_t *count, json_t *list, char *err, size_t errlen)
{
    size_t n = json_array_size(list);
    method_t *methods = n ? calloc(n, sizeof *methods) : NULL;
    if (n && !methods)
        return LC_STATUS_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(list, i), "name"));
        if (!name || !lc_method_name_valid(name, strlen(name))) {
            snprintf(err, errlen,
                     "method %zu has no valid name (1-64 characters of "
                     "[A-Za-z0-9_], not starting with a digit)",
                     i);
            free(methods);
            return LC_STATUS_BAD_NAME;
        }
        snprintf(methods[i].name, sizeof methods[i].name, "%s", name);
        methods[i].hash = broker_hash(name, strlen(name));
    }
    *out = methods;
    *count = n;
    return 0;
}

/* Checks what a HELLO declares (methods, subscriptions, window) without applying it. */
static int s_validate(json_t *hello, char *err, size_t errlen)
{
    json_t *methods = json_object_get(hello, "methods");
    json_t *events = json_object_get(hello, "events");
    json_t *window = json_object_get(hello, "window");
    if ((methods && !json_is_array(methods)) || (events && !json_is_array(events)) ||
        (window && (!json_is_integer(window) || json_integer_value(window) < 1 ||
                    json_integer_value(window) > 100000))) {
        snprintf(err, errlen, "\"methods\" and \"events\" must be arrays, \"window\" an "
                 "integer from 1 to 100000");
        return LC_STATUS_MALFORMED;
    }
    json_t *ledger = json_object_get(hello, "ledger");
    if (ledger && (!json_is_integer(ledger) || json_integer_value(ledger) < 0 ||
                   json_integer_value(ledger) > INT32_MAX)) {
        snprintf(err, errlen, "\"ledger\" must be a file descriptor number (an integer >= 0)");
        return LC_STATUS_MALFORMED;
    }
    method_t *list = NULL;
    size_t n = 0;
    int st = s_methods_load(&list, &n, methods, err, errlen);
    free(list);
    return st ? st : broker_subs_validate(events, err, errlen);
}

static bool s_is_parent(json_t *hello, zmq_msg_t *frame)
{
    int uid, gid, pid;
    int claimed = (int)json_integer_value(json_object_get(hello, "pid"));
    return s_peer_creds(frame, claimed, &uid, &gid, &pid) && pid == (int)getppid();
}

/* Applies what a HELLO declares (methods, subscriptions, window) to m. */
static int s_declare(broker_t *self, module_t *m, json_t *hello, char *err, size_t errlen)
{
    json_t *methods = json_object_get(hello, "methods");
    json_t *events = json_object_get(hello, "events");
    json_t *window = json_object_get(hello, "window");
    if ((methods && !json_is_array(methods)) || (events && !json_is_array(events)) ||
        (window && (!json_is_integer(window) || json_integer_value(window) < 1 ||
                    json_integer_value(window) > 100000))) {
        snprintf(err, errlen,
                 "\"methods\" and \"events\" must be arrays, \"window\" an "
                 "integer from 1 to 100000");
        return LC_STATUS_MALFORMED;
    }
    method_t *list = NULL;
    size_t n = 0;
    int st = s_methods_load(&list, &n, methods, err, errlen);
    if (st)
        return st;
    if ((st = broker_subs_set(self, m, events, err, errlen))) {
        free(list);
        return st;
    }
    free(m->methods);
    m->methods = list;
    m->nmethods = n;
    json_decref(m->doc);
    m->doc = methods ? json_incref(methods) : json_array();
    m->window = window ? (int)json_integer_value(window) : self->cfg.window;
    return 0;
}

/* ---- Registration --------------------------------------------------------------------- */

static void s_welcome(broker_t *self, conn_t *c, uint32_t seq)
{
    module_t *m = c->module;
    lc_hdr_t h = {
        .type = LC_MSG_WELCOME, .seq = seq, .id = broker_next_id(self), .time_us = lc_now_us()};
    broker_send_json(self, c, &h, m->name,
                     json_pack("{s:s, s:i, s:I, s:i, s:s, s:i}", "name", m->name, "heartbeat_ms",
                               m->hb_ms, "max_payload", (json_int_t)self->cfg.max_payload,
                               "broker_pid", (int)getpid(), "version", LC_VERSION, "window",
                               m->window));
}

static void s_attach(broker_t *self, zmq_msg_t *f, conn_t *c, const conn_t *to, const lc_hdr_t *h,
                     const char *name, const char *token)
{
    module_t *m = broker_module_find(self, name, strlen(name));
    if (!m || m->state == MS_GONE) {
        self->stats.refused++;
        broker_error(self, to, h, 0, LC_STATUS_NOT_REGISTERED, "no module '%s' to attach to", name);
    } else if (strcmp(m->token, token) != 0) {
        self->stats.refused++;
        broker_error(self, to, h, 0, LC_STATUS_DENIED, "token does not match module '%s'", name);
    } else if (c && c->module != m) {
        broker_error(self, to, h, 0, LC_STATUS_DENIED, "connection already belongs to module '%s'",
                     c->module->name);
    } else {
        if (!c && (c = s_conn_add(self, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), m, false))) {
            c->next_sat = m->sats;
            m->sats = c;
        }
        if (c)
            s_welcome(self, c, h->seq);
        else
            broker_error(self, to, h, 0, LC_STATUS_INTERNAL, "broker out of memory");
    }
}

void broker_on_hello(broker_t *self, zmq_msg_t *f, conn_t *c, const lc_hdr_t *h)
{
    conn_t tmp;
    if (!c) {
        tmp.rid_len = zmq_msg_size(&f[0]);
        memcpy(tmp.rid, zmq_msg_data(&f[0]), tmp.rid_len);
        tmp.module = NULL;
    }
    const conn_t *to = c ? c : &tmp;
    /* Who may use the bus: checked at every HELLO, registration or attachment, since
     * nothing else can be sent before one is accepted. */
    int uid, gid, pid;
    bool creds = s_peer_ids(&f[1], &uid, &gid, &pid);
    if (!creds && !self->has_tcp) {
        /* Only ipc endpoints, where the kernel names every peer: a peer it does not name
         * cannot be checked, so it is not let in. */
        self->stats.refused++;
        broker_error(self, to, h, 0, LC_STATUS_DENIED,
                     "no kernel credentials for this connection: the broker cannot tell who "
                     "it is, so it may not use this bus");
        return;
    }
    if (creds && !access_allowed(&self->cfg.allow, (uid_t)uid, (gid_t)gid, (pid_t)pid)) {
        self->stats.refused++;
        if (broker_log_allowed(self, LOG_DENIED))
            broker_log(self, L_WARNING,
                       "refused pid %d of uid %d (gid %d): not the broker's user and not in "
                       "--allow-user/--allow-group",
                       pid, uid, gid);
        broker_error(self, to, h, 0, LC_STATUS_DENIED,
                     "uid %d may not use this bus: only the broker's user (uid %u) and those "
                     "allowed by lc-broker --allow-user/--allow-group (bus.allow_users, "
                     "bus.allow_groups) may",
                     uid, (unsigned)geteuid());
        return;
    }
    size_t nlen = zmq_msg_size(&f[2]);
    char name[LC_NAME_MAX + 1] = "";
    if (nlen > LC_NAME_MAX) {
        self->stats.refused++;
        broker_error(self, to, h, 0, LC_STATUS_BAD_NAME, "module name longer than %d bytes",
                     LC_NAME_MAX);
        return;
    }
    memcpy(name, zmq_msg_data(&f[2]), nlen);
    name[nlen] = 0;

    size_t plen = zmq_msg_size(&f[4]);
    if (plen > HELLO_MAX) {
        self->stats.malformed++;
        broker_error(self, to, h, 0, LC_STATUS_MALFORMED, "HELLO payload over %d bytes", HELLO_MAX);
        return;
    }
    json_t *hello = json_loadb(zmq_msg_data(&f[4]), plen, 0, NULL);
    const char *token = json_string_value(json_object_get(hello, "token"));
    if (!json_is_object(hello) || !token || strlen(token) != 16) {
        self->stats.malformed++;
        broker_error(self, to, h, 0, LC_STATUS_MALFORMED,
                     "HELLO payload must be a JSON object with a 16-character \"token\"");
        json_decref(hello);
        return;
    }
    char err[256] = "";
    int st = 0;

    if (h->flags & LC_FLAG_ATTACH) {
        /* Another thread of a registered module opens its own connection. */
        s_attach(self, f, c, to, h, name, token);
        goto done;
    }
    if (c && !c->is_main) {
        broker_error(self, to, h, 0, LC_STATUS_DENIED, "an attached connection cannot register");
        goto done;
    }
    if (c && nlen && strcmp(c->module->name, name) != 0) {
        broker_error(self, to, h, 0, LC_STATUS_BAD_NAME, "connection already registered as '%s'",
                     c->module->name);
        goto done;
    }
    if (c) {
        /* The same connection registers again: new methods, subscriptions, window. */
        if ((st = s_declare(self, c->module, hello, err, sizeof err)))
            broker_error(self, to, h, 0, st, "%s", err);
        else
            s_welcome(self, c, h->seq);
        goto done;
    }
    if (!nlen) {
        snprintf(name, sizeof name, "_anon%" PRIu64, ++self->anon_count);
        nlen = strlen(name);
    } else if (!lc_name_valid(name, nlen)) {
        self->stats.refused++;
        broker_error(self, to, h, 0, LC_STATUS_BAD_NAME,
                     "invalid module name '%s': use 1-64 characters of [A-Za-z0-9_-], starting "
                     "with a letter",
                     name);
        goto done;
    } else if (strcmp(name, "broker") == 0 ||
               (strcmp(name, "launcher") == 0 && !s_is_parent(hello, &f[1]))) {
        /* "launcher" is for the process that started this broker, seen by the kernel. */
        self->stats.refused++;
        broker_error(self, to, h, 0, LC_STATUS_DENIED, "module name '%s' is reserved", name);
        goto done;
    }

    /* A faulty HELLO must not cost a running module its registration. */
    if ((st = s_validate(hello, err, sizeof err))) {
        self->stats.refused++;
        broker_error(self, to, h, 0, st, "%s", err);
        goto done;
    }
    module_t *m = broker_module_find(self, name, nlen);
    if (m && m->state != MS_GONE) {
        if (strcmp(m->token, token) == 0) {
            broker_module_lost(self, m, "reconnected", false);
        } else if (!s_module_alive(self, m)) {
            broker_module_lost(self, m, "is dead; its name is taken over", true);
        } else {
            self->stats.refused++;
            if (m->has_creds)
                broker_error(self, to, h, 0, LC_STATUS_NAME_TAKEN,
                             "module name '%s' is held by a live process (pid %d)", name, m->pid);
            else
                broker_error(self, to, h, 0, LC_STATUS_NAME_TAKEN,
                             "module name '%s' is held by a live module", name);
            goto done;
        }
        m = broker_module_find(self, name, nlen); /* kept if it had a backlog */
    }
    bool fresh = !m;
    if (fresh) {
        m = calloc(1, sizeof *m);
        if (!m) {
            broker_error(self, to, h, 0, LC_STATUS_INTERNAL, "broker out of memory");
            goto done;
        }
        m->pidfd = -1;
        m->ledger_fd = -1;
        m->state = MS_GONE; /* until registration completes */
        snprintf(m->name, sizeof m->name, "%s", name);
        m->hash = broker_hash(name, nlen);
        m->anonymous = name[0] == '_';
        broker_queue_init(&m->queue);
        idmap_init(&m->inflight);
        m->next_hash = idmap_get(&self->modules, m->hash);
        if (idmap_put(&self->modules, m->hash, m) < 0) {
            free(m);
            broker_error(self, to, h, 0, LC_STATUS_INTERNAL, "broker out of memory");
            goto done;
        }
        self->nmodules++;
    }
    if ((st = s_declare(self, m, hello, err, sizeof err)) == 0 &&
        !(m->main = s_conn_add(self, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), m, true))) {
        st = LC_STATUS_INTERNAL;
        snprintf(err, sizeof err, "broker out of memory");
    }
    if (st) {
        self->stats.refused++;
        broker_error(self, to, h, 0, st, "%s", err);
        if (fresh)
            s_module_delete(self, m);
        goto done;
    }
    snprintf(m->token, sizeof m->token, "%s", token);
    m->last_seen = lc_mono_ms();
    m->since_us = lc_now_us();
    int claimed = (int)json_integer_value(json_object_get(hello, "pid"));
    m->has_creds = s_peer_creds(&f[1], claimed, &m->uid, &m->gid, &m->pid);
    if (m->has_creds) {
        m->pidfd = (int)syscall(SYS_pidfd_open, m->pid, 0);
        if (m->pidfd >= 0 && broker_watch_pidfd(self, m->pidfd) < 0) {
            close(m->pidfd);
            m->pidfd = -1;
        }
        m->ledger_fd = broker_ledger_open(self, m, hello);
    } else {
        m->pid = claimed;
    }
    /* Without a pidfd only heartbeats tell that a module died. */
    m->hb_ms = m->pidfd >= 0 ? 0 : self->cfg.heartbeat_ms;
    if (m->hb_ms > 0)
        self->nbeating++;
    m->order = ++self->order_count;
    m->unreachable = false;
    self->stats.registrations++;
    broker_log(self, m->anonymous ? L_DEBUG : L_INFO,
               "module %s registered (pid %d%s, %zu methods)", m->name, m->pid,
               m->has_creds ? "" : ", heartbeats", m->nmethods);
    s_welcome(self, m->main, h->seq);
    /* Anonymous clients are tools: active at once. A module says where it is in its
     * lifecycle (after a broker restart it may already be passive or active). */
    const char *st_name = json_string_value(json_object_get(hello, "state"));
    m->tool = m->anonymous || json_is_false(json_object_get(hello, "lifecycle"));
    int st0 = m->tool ? MS_ACTIVE : st_name ? broker_state_parse(st_name) : MS_INACTIVE;
    broker_set_state(self, m, st0 ? st0 : MS_INACTIVE);
    if (m->state == MS_PASSIVE)
        broker_activate_check(self, m);
    broker_pump(self, m);
    broker_waiters_check(self);
done:
    json_decref(hello);
}

/* ---- Introspection and teardown ------------------------------------------------------- */

json_t *broker_module_info(const broker_t *self, const module_t *m)
{
    json_t *events = json_array();
    for (const sub_t *s = m->subs; s; s = s->next_of_module) {
        char pat[LC_NAME_MAX + 2];
        snprintf(pat, sizeof pat, "%s%s", s->pattern, s->wild ? "*" : "");
        json_array_append_new(events, json_string(pat));
    }
    json_t *o = json_pack("{s:s, s:s, s:i, s:O, s:o, s:I, s:b, s:s, s:i}", "name", m->name, "state",
                          broker_state_name(m->state), "pid", m->pid, "methods", m->doc, "events",
                          events, "since_us", (json_int_t)m->since_us, "anonymous", m->anonymous,
                          "liveness", m->pidfd >= 0 ? "pidfd" : "heartbeat", "window", m->window);
    json_object_set_new(o, "ledger", json_boolean(m->ledger_fd >= 0));
    if (m->has_creds) {
        json_object_set_new(o, "uid", json_integer(m->uid));
        json_object_set_new(o, "gid", json_integer(m->gid));
    }
    json_object_set_new(o, "backlog", json_integer((json_int_t)m->queue.count));
    json_object_set_new(o, "in_flight", json_integer((json_int_t)m->inflight.count));
    json_object_set_new(o, "calls_in", json_integer((json_int_t)m->count.calls_in));
    json_object_set_new(o, "calls_out", json_integer((json_int_t)m->count.calls_out));
    json_object_set_new(o, "tasks_in", json_integer((json_int_t)m->count.tasks_in));
    json_object_set_new(o, "events_in", json_integer((json_int_t)m->count.events_in));
    json_object_set_new(o, "delivered", json_integer((json_int_t)m->count.delivered));
    json_object_set_new(o, "done", json_integer((json_int_t)m->count.done));
    json_object_set_new(o, "failed", json_integer((json_int_t)m->count.failed));
    json_object_set_new(o, "dropped", json_integer((json_int_t)m->count.dropped));
    json_object_set_new(o, "lost", json_integer((json_int_t)m->count.lost));
    json_object_set_new(o, "redelivered", json_integer((json_int_t)m->count.redelivered));
    json_object_set_new(o, "sent_queued",
                        json_integer((json_int_t)broker_sent_queued(self, m->name)));
    json_object_set_new(o, "sends_refused", json_integer((json_int_t)m->count.sends_refused));
    return o;
}

void broker_registry_clear(broker_t *self)
{
    for (;;) {
        module_t *m = NULL;
        for (size_t i = 0; i < self->modules.cap && !m; i++)
            m = self->modules.values[i];
        if (!m)
            break;
        s_conns_drop(self, m);
        broker_inflight_lost(self, m, false);
        s_module_delete(self, m);
    }
}
