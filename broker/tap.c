/* The monitor tap: a copy of what the broker routes, published for lc-spy.
 *
 * One XPUB socket beside the bus. Its subscriptions tell the broker how many spies listen;
 * with none, every tap point costs one test of a counter. Records are gathered for up to
 * TAP_FLUSH_MS and published as one frame (so a spy never sees half a record, and a busy bus
 * costs a spy a few hundred messages a second, not one per record). Each record carries a
 * consecutive number, so a spy counts exactly what it missed. The socket never blocks the
 * broker: when a spy's queue is full the batch is dropped for all and counted (tap_dropped).
 * docs/tracing.md describes the frame and the record byte by byte. */
#include "broker_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int broker_tap_open(broker_t *self, const char *endpoint, char *err, size_t errlen)
{
    self->tap.sock = zmq_socket(self->ctx, ZMQ_XPUB);
    if (!self->tap.sock) {
        snprintf(err, errlen, "cannot create the monitor socket: %s", zmq_strerror(errno));
        return -1;
    }
    int one = 1, zero = 0, hwm = self->cfg.monitor_queue > 0 ? self->cfg.monitor_queue : 1000;
    /* Every subscribe and unsubscribe reaches us, so the count of spies is exact. */
    zmq_setsockopt(self->tap.sock, ZMQ_XPUB_VERBOSER, &one, sizeof one);
    /* A full spy makes zmq_send fail instead of losing records without a trace. */
    zmq_setsockopt(self->tap.sock, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt(self->tap.sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->tap.sock, ZMQ_LINGER, &zero, sizeof zero);
    bool ipc = strncmp(endpoint, "ipc://", 6) == 0;
    if (ipc && broker_prepare_ipc(endpoint + 6, -1, err, errlen) < 0)
        return -1;
    /* Whoever may open the socket file may see the traffic: the owner alone (0600), also
     * with --group. */
    mode_t old = umask(0177);
    int rc = zmq_bind(self->tap.sock, endpoint);
    int berr = errno;
    umask(old);
    if (rc < 0) {
        snprintf(err, errlen, "cannot open the monitor endpoint %s: %s", endpoint,
                 zmq_strerror(berr));
        return -1;
    }
    if (ipc)
        self->tap.path = strdup(endpoint + 6);
    self->tap.endpoint = strdup(endpoint);
    broker_log(self, L_INFO, "monitor (lc-spy) on %s", endpoint);
    return 0;
}

static void s_free_batch(void *data, void *hint)
{
    (void)hint;
    free(data);
}

void broker_tap_close(broker_t *self)
{
    if (self->tap.sock) {
        broker_tap_flush(self);
        /* A moment for the last batch to reach the spies. */
        int linger = 100;
        zmq_setsockopt(self->tap.sock, ZMQ_LINGER, &linger, sizeof linger);
    }
    free(self->tap.buf);
    self->tap.buf = NULL;
    self->tap.len = self->tap.cap = self->tap.count = 0;
    if (self->tap.sock)
        zmq_close(self->tap.sock);
    self->tap.sock = NULL;
    if (self->tap.path)
        unlink(self->tap.path);
    free(self->tap.path);
    self->tap.path = NULL;
    free(self->tap.endpoint);
    self->tap.endpoint = NULL;
}

/* Tells a new spy (and the others) that its subscription has arrived: a spy shows nothing
 * before. Owed until a batch with it has left, so that a spy attaching while another lags
 * (its batches dropped) still hears it. */
static void s_attach_record(broker_t *self)
{
    lc_hdr_t h = {.type = 0, .time_us = lc_now_us()};
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_encode(&h, hb);
    broker_tap_record(self, TAP_ATTACH, hb, NULL, 0, "broker", NULL, 0, NULL, 0);
    self->tap.attach_owed = true;
}

/* Subscriptions: byte 1 then a topic, unsubscriptions: byte 0. Spies subscribe to everything
 * (filters are theirs), so each message is one spy arriving or leaving. */
void broker_tap_read(broker_t *self)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->tap.sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        const uint8_t *p = zmq_msg_data(&m);
        if (zmq_msg_size(&m) >= 1 && p[0] == 1) {
            self->tap.spies++;
            self->stats.spies_attached++;
            s_attach_record(self);
        } else if (zmq_msg_size(&m) >= 1 && p[0] == 0 && self->tap.spies > 0) {
            self->tap.spies--;
        }
        zmq_msg_close(&m);
    }
}

static void s_put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void s_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Records wait in a batch until it is TAP_FLUSH_MS old or this big: one message through
 * ZeroMQ per batch instead of per record. */
#define TAP_BATCH_MAX (64 * 1024)

void broker_tap_flush(broker_t *self)
{
    if (!self->tap.len)
        return;
    zmq_msg_t m;
    /* ZeroMQ takes the buffer as it is (freed when sent); the next batch gets a new one. */
    if (zmq_msg_init_data(&m, self->tap.buf, self->tap.len, s_free_batch, NULL) < 0) {
        self->stats.tap_dropped += self->tap.count;
        self->tap.len = self->tap.count = 0;
        return;
    }
    self->tap.buf = NULL;
    self->tap.cap = 0;
    bool sent = zmq_msg_send(&m, self->tap.sock, ZMQ_DONTWAIT) >= 0;
    if (!sent) {
        /* A spy's queue is full: the whole batch is dropped for all, and counted. Each
         * record's number tells the spies exactly how many they missed. */
        zmq_msg_close(&m);
        self->stats.tap_dropped += self->tap.count;
    }
    self->tap.len = self->tap.count = 0;
    if (sent)
        self->tap.attach_owed = false;
    else if (self->tap.attach_owed)
        s_attach_record(self);
}

void broker_tap_record(broker_t *self, int what, const uint8_t *hdr, const char *address,
                       size_t alen, const char *source, const char *to, size_t tolen,
                       const void *payload, size_t plen)
{
    size_t slen = source ? strlen(source) : 0;
    if (alen > LC_ADDRESS_MAX)
        alen = LC_ADDRESS_MAX;
    if (slen > 255)
        slen = 255;
    if (tolen > 65535)
        tolen = 65535;
    size_t size = TAP_FIXED + alen + slen + tolen + plen;
    if (self->tap.len && self->tap.len + 4 + size > TAP_BATCH_MAX)
        broker_tap_flush(self);
    if (self->tap.len + 4 + size > self->tap.cap) {
        size_t cap = self->tap.cap ? self->tap.cap : 4096;
        while (cap < self->tap.len + 4 + size)
            cap *= 2;
        uint8_t *b = realloc(self->tap.buf, cap);
        if (!b) {
            self->stats.tap_dropped++;
            ++self->tap.seq;
            return;
        }
        self->tap.buf = b;
        self->tap.cap = cap;
    }
    if (!self->tap.len)
        self->tap.first_ms = lc_mono_ms();
    uint8_t *p = self->tap.buf + self->tap.len;
    lc_hdr_put_u32(p, 0, (uint32_t)size);
    p += 4;
    p[0] = 'L';
    p[1] = 'S';
    p[2] = TAP_VERSION;
    p[3] = (uint8_t)what;
    s_put16(p + 4, alen);
    s_put16(p + 6, tolen);
    p[8] = (uint8_t)slen;
    memset(p + 9, 0, 7);
    s_put64(p + 16, ++self->tap.seq);
    s_put64(p + 24, self->stats.tap_dropped);
    memcpy(p + 32, hdr, LC_HDR_SIZE);
    uint8_t *q = p + TAP_FIXED;
    if (alen)
        memcpy(q, address, alen);
    q += alen;
    if (slen)
        memcpy(q, source, slen);
    q += slen;
    if (tolen)
        memcpy(q, to, tolen);
    q += tolen;
    if (plen)
        memcpy(q, payload, plen);
    self->tap.len += 4 + size;
    self->tap.count++;
}

void broker_tap_sent(broker_t *self, const conn_t *to, const uint8_t *hdr, const char *address,
                     size_t alen, const char *source, zmq_msg_t *payload)
{
    /* Deliveries of queued items are not copied one by one: the TASK or EVENT was recorded
     * when accepted (naming its recipients) and the DONE records say when each ran. That
     * keeps a spy's cost on a fan-out to one record per event. PONG is heartbeat noise. */
    uint8_t type = hdr[3];
    if (type == LC_MSG_CALL || type == LC_MSG_TASK || type == LC_MSG_EVENT || type == LC_MSG_PONG)
        return; /* calls are recorded once, as taken in (calls.c) */
    const char *name = to && to->module ? to->module->name : "";
    broker_tap_record(self, TAP_SENT, hdr, address, alen, source, name, strlen(name),
                      payload ? zmq_msg_data(payload) : NULL, payload ? zmq_msg_size(payload) : 0);
}
