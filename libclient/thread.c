/* liblc: a connection of its own for every other thread that sends, and the heartbeat
 * thread. Each thread's connection is attached to the module with its token. */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>

/* Heartbeats come from a thread of their own, on its own connection, so that a module
 * busy in a long handler is not taken for dead: only a dead process stops them. */
static void *s_heartbeat(void *arg)
{
    lc_client_t *self = arg;
    sat_t *sat = lcc_sat_get(self);
    int64_t next = lc_mono_ms();
    while (sat) {
        zmq_pollitem_t items[2] = {{sat->sock, 0, ZMQ_POLLIN, 0},
                                   {NULL, self->hb_stop_fd, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, lcc_int_timeout(next));
        if (items[1].revents)
            break;
        inmsg_t m;
        while (lcc_recv(sat->sock, &m, ZMQ_DONTWAIT) == 0) {
            if (m.hdr.type == LC_MSG_ERROR && m.hdr.status == LC_STATUS_NOT_REGISTERED) {
                sat->attached = false;
                atomic_store(&self->need_hello, true);
                lcc_wake(self);
            }
            lcc_inmsg_close(&m);
        }
        if (lc_mono_ms() < next)
            continue;
        next = lc_mono_ms() + self->hb_ms;
        if (lcc_sat_ready(sat, next, NULL) == 0) {
            lc_hdr_t h = {.type = LC_MSG_PING, .seq = atomic_fetch_add(&self->seq, 1) + 1};
            lcc_send(sat->sock, &h, NULL, NULL, NULL, 0, 0);
        }
    }
    return NULL; /* the connection closes with the thread (lcc_sat_destroy) */
}

void lcc_heartbeat_start(lc_client_t *self)
{
    if (self->hb_stop_fd < 0)
        self->hb_stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->hb_stop_fd >= 0 && lcc_thread_create(&self->hb_thread, s_heartbeat, self) == 0)
        self->hb_running = true;
}

/* ---- Satellite connections for other threads ------------------------------------------ */

void lcc_sat_destroy(void *p)
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
        lcc_send(sat->sock, &h, NULL, NULL, NULL, 0, 0);
    }
    zmq_close(sat->sock);
    free(sat);
}

sat_t *lcc_sat_get(lc_client_t *self)
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
    int one = 1, linger = 1000, hwm = 100000, ivl = 10, ivl_max = 100;
    zmq_setsockopt(sat->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(sat->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sat->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    /* As the main connection: the first retry soon, then backing off to 100 ms. */
    zmq_setsockopt(sat->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(sat->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
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
int lcc_sat_await(sat_t *sat, uint32_t seq, inmsg_t *m, int64_t deadline)
{
    for (;;) {
        zmq_pollitem_t item = {sat->sock, 0, ZMQ_POLLIN, 0};
        int t = lcc_int_timeout(deadline);
        if (zmq_poll(&item, 1, t) < 0 && errno != EINTR)
            return LC_ENOBUS;
        if (item.revents) {
            int rc = lcc_recv(sat->sock, m, ZMQ_DONTWAIT);
            if (rc == 0) {
                if (m->hdr.seq == seq)
                    return 0;
                lcc_inmsg_close(m); /* a late answer to an earlier call */
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
    while (self->reg != REG_DONE) {
        if (self->reg == REG_FAILED) {
            pthread_mutex_unlock(&self->lock);
            return self->reg_error;
        }
        /* The loop thread registers; wait for it, bounded by the deadline. */
        int t = lcc_int_timeout(deadline);
        if (t == 0) {
            pthread_mutex_unlock(&self->lock);
            if (err)
                *err = lcc_local_error(LC_STATUS_NOT_REGISTERED,
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
    int rc = lcc_send(sat->sock, &h, name, NULL, strdup(text), strlen(text), deadline);
    if (rc < 0)
        return rc;
    inmsg_t m;
    rc = lcc_sat_await(sat, seq, &m, deadline);
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
            *err = lcc_error_object((int)m.hdr.status, zmq_msg_data(&m.payload),
                                    zmq_msg_size(&m.payload));
    }
    lcc_inmsg_close(&m);
    return rc;
}

/* Makes sure the thread's connection is attached to the current registration (after a
 * broker restart the module registers anew, and so must its threads' connections). */
int lcc_sat_ready(sat_t *sat, int64_t deadline, json_t **err)
{
    lc_client_t *self = sat->client;
    pthread_mutex_lock(&self->lock);
    bool current = sat->attached && sat->gen == self->gen && self->reg == REG_DONE;
    pthread_mutex_unlock(&self->lock);
    if (current)
        return 0;
    sat->attached = false;
    return s_sat_attach(sat, deadline, err);
}

/* A synchronous call from a thread other than the loop thread. */
int lcc_sat_call(lc_client_t *self, const char *target, char *payload, size_t plen, json_t **result,
                 int timeout_ms, int64_t deadline)
{
    json_t *err = NULL;
    sat_t *sat = lcc_sat_get(self);
    if (!sat) {
        free(payload);
        return LC_ENOMEM;
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((rc = lcc_sat_ready(sat, deadline, &err)) < 0)
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
        rc = lcc_send(sat->sock, &h, target, NULL, attempt == 0 ? copy : payload, plen, deadline);
        if (attempt == 1)
            payload = NULL;
        if (rc < 0)
            break;
        inmsg_t m;
        rc = lcc_sat_await(sat, seq, &m, deadline);
        if (rc < 0) {
            err = lcc_local_error(LC_STATUS_TIMEOUT, "no answer from %s within %d ms", target,
                                  timeout_ms);
            break;
        }
        if (m.hdr.type == LC_MSG_ERROR && m.hdr.status == LC_STATUS_NOT_REGISTERED &&
            attempt == 0) {
            sat->attached = false; /* the broker restarted: attach again, once */
            lcc_inmsg_close(&m);
            continue;
        }
        size_t n = zmq_msg_size(&m.payload);
        if (m.hdr.type == LC_MSG_REPLY) {
            err = n ? json_loadb(zmq_msg_data(&m.payload), n, JSON_DECODE_ANY, NULL) : json_null();
            rc = err ? 0 : LC_EPROTO;
        } else {
            rc = lc_status_to_errno((int)m.hdr.status);
            err = lcc_error_object((int)m.hdr.status, zmq_msg_data(&m.payload), n);
        }
        lcc_inmsg_close(&m);
        break;
    }
    free(payload);
    if (result)
        *result = err;
    else
        json_decref(err);
    return rc;
}

int lcc_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    /* The loop's signals stay blocked in every thread liblc starts. */
    sigset_t old;
    lcc_block_signals(&old);
    int rc = pthread_create(tid, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void lcc_block_signals(sigset_t *old)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, old);
}
