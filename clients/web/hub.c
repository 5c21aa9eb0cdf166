/* lc-web's event streams (see hub.h). One mutex guards the hub and every stream's queue:
 * the producers (the tap thread, the module's loop) hold it only to format and append, the
 * readers only to copy out, so nobody waits on anyone for long. */
#include "hub.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define READ_WAIT_MS 200   /* a reader's longest wait: it must notice the server stopping */
#define KEEPALIVE_MS 10000 /* a comment after this much silence keeps proxies open */

typedef struct frame {
    struct frame *next;
    size_t len, off; /* off: what the reader already took */
    char data[];
} frame_t;

struct hub_client {
    hub_t *hub;
    hub_client_t *next;
    hub_filter_t filter;
    char *module, *event;
    trace_t trace; /* pairing and filtering as lc-spy's, JSON lines */
    bool live;     /* the monitor is attached for it: bus frames flow */
    frame_t *head, *tail;
    size_t nframes, bytes;
    uint64_t next_id, dropped;
    int64_t last_write_ms;
    pthread_cond_t cond;
};

struct hub {
    pthread_mutex_t lock;
    hub_client_t *clients;
    size_t max_frames, max_bytes;
    bool closed;
    int feed;
    char why[1024];
    int nbus; /* streams that want bus frames */
    int efd;  /* tells the tap when nbus went to or from 0 */
};

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

hub_t *hub_new(size_t max_frames, size_t max_bytes)
{
    hub_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (self->efd < 0) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->max_frames = max_frames;
    self->max_bytes = max_bytes;
    self->feed = FEED_OFF;
    return self;
}

static void s_frames_free(hub_client_t *cl)
{
    while (cl->head) {
        frame_t *f = cl->head;
        cl->head = f->next;
        free(f);
    }
    cl->tail = NULL;
    cl->nframes = cl->bytes = 0;
}

static void s_client_free(hub_client_t *cl)
{
    s_frames_free(cl);
    trace_clear(&cl->trace);
    pthread_cond_destroy(&cl->cond);
    free(cl->module);
    free(cl->event);
    free(cl);
}

void hub_close(hub_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->closed = true;
    for (hub_client_t *cl = self->clients; cl; cl = cl->next)
        pthread_cond_broadcast(&cl->cond);
    pthread_mutex_unlock(&self->lock);
}

void hub_destroy(hub_t **self_p)
{
    hub_t *self = *self_p;
    if (!self)
        return;
    /* httpd_destroy() has waited for every connection, so every stream has left. */
    while (self->clients) {
        hub_client_t *cl = self->clients;
        self->clients = cl->next;
        s_client_free(cl);
    }
    close(self->efd);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

/* ---- Queues (hub locked) ---- */

static bool s_append(hub_client_t *cl, const char *text, size_t len)
{
    frame_t *f = malloc(sizeof *f + len);
    if (!f)
        return false;
    f->next = NULL;
    f->len = len;
    f->off = 0;
    memcpy(f->data, text, len);
    if (cl->tail)
        cl->tail->next = f;
    else
        cl->head = f;
    cl->tail = f;
    cl->nframes++;
    cl->bytes += len;
    pthread_cond_signal(&cl->cond);
    return true;
}

/* One server-sent event: "id: N\nevent: TYPE\ndata: LINE\n\n". data must hold no newline. */
static bool s_append_event(hub_client_t *cl, const char *type, const char *data, size_t len)
{
    char head[96];
    int hn =
        snprintf(head, sizeof head, "id: %" PRIu64 "\nevent: %s\ndata: ", cl->next_id + 1, type);
    size_t total = (size_t)hn + len + 2;
    char *text = malloc(total);
    if (!text)
        return false;
    memcpy(text, head, (size_t)hn);
    memcpy(text + hn, data, len);
    memcpy(text + hn + len, "\n\n", 2);
    bool ok = s_append(cl, text, total);
    free(text);
    if (ok)
        cl->next_id++;
    return ok;
}

static bool s_append_dropped(hub_client_t *cl)
{
    char data[64];
    int n = snprintf(data, sizeof data, "{\"dropped\":%" PRIu64 "}", cl->dropped);
    if (!s_append_event(cl, "dropped", data, (size_t)n))
        return false;
    cl->dropped = 0;
    return true;
}

/* A frame for the stream, or a count of what it lost when it is too far behind. The frames
 * it lost are replaced by one "dropped" frame, before the next frame that fits. */
static void s_push(hub_client_t *cl, const char *type, const char *data, size_t len)
{
    hub_t *hub = cl->hub;
    if (cl->nframes >= hub->max_frames || cl->bytes + len > hub->max_bytes) {
        cl->dropped++;
        return;
    }
    if (cl->dropped && !s_append_dropped(cl)) {
        cl->dropped++;
        return;
    }
    if (!s_append_event(cl, type, data, len))
        cl->dropped++;
}

static void s_comment(hub_client_t *cl, const char *text)
{
    char line[1100];
    int n = snprintf(line, sizeof line, ": %s\n\n", text);
    s_append(cl, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void s_feed_comment(hub_t *self, hub_client_t *cl)
{
    if (self->feed == FEED_LIVE)
        s_comment(cl, "bus feed attached");
    else if (self->feed == FEED_NONE)
        s_comment(cl, self->why);
}

/* ---- Streams ---- */

hub_client_t *hub_join(hub_t *self, const hub_filter_t *filter)
{
    hub_client_t *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->hub = self;
    cl->filter = *filter;
    cl->module = filter->module ? strdup(filter->module) : NULL;
    cl->event = filter->event ? strdup(filter->event) : NULL;
    if ((filter->module && !cl->module) || (filter->event && !cl->event)) {
        free(cl->module);
        free(cl->event);
        free(cl);
        return NULL;
    }
    cl->filter.module = cl->module;
    cl->filter.event = cl->event;
    trace_init(&cl->trace);
    cl->trace.json = true;
    cl->trace.filter.kinds = filter->kinds ? filter->kinds : K_ALL;
    cl->trace.filter.module = cl->module;
    cl->trace.filter.event_glob = cl->event;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->cond, &attr);
    pthread_condattr_destroy(&attr);
    cl->last_write_ms = s_now_ms();

    pthread_mutex_lock(&self->lock);
    if (self->closed) {
        pthread_mutex_unlock(&self->lock);
        s_client_free(cl);
        return NULL;
    }
    cl->next = self->clients;
    self->clients = cl;
    /* The first bytes: the client sees the stream open before anything happens. */
    s_comment(cl, "lc-web event stream");
    if (cl->filter.bus) {
        cl->live = self->feed == FEED_LIVE;
        s_feed_comment(self, cl);
        if (self->nbus++ == 0) {
            uint64_t one = 1;
            if (write(self->efd, &one, sizeof one) < 0) {
                /* Full counter: the tap has a wake-up pending anyway. */
            }
        }
    }
    pthread_mutex_unlock(&self->lock);
    return cl;
}

void hub_leave(hub_client_t *cl)
{
    if (!cl)
        return;
    hub_t *self = cl->hub;
    pthread_mutex_lock(&self->lock);
    for (hub_client_t **p = &self->clients; *p; p = &(*p)->next)
        if (*p == cl) {
            *p = cl->next;
            break;
        }
    if (cl->filter.bus && --self->nbus == 0) {
        uint64_t one = 1;
        if (write(self->efd, &one, sizeof one) < 0) {
            /* as above */
        }
    }
    pthread_mutex_unlock(&self->lock);
    s_client_free(cl);
}

ssize_t hub_read(hub_client_t *cl, char *buf, size_t max)
{
    hub_t *self = cl->hub;
    pthread_mutex_lock(&self->lock);
    if (!self->closed && !cl->head && !cl->dropped) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)READ_WAIT_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!self->closed && !cl->head && !cl->dropped)
            if (pthread_cond_timedwait(&cl->cond, &self->lock, &until) == ETIMEDOUT)
                break;
    }
    if (self->closed) {
        pthread_mutex_unlock(&self->lock);
        return -1;
    }
    int64_t now = s_now_ms();
    if (!cl->head && cl->dropped)
        s_append_dropped(cl);
    if (!cl->head && now - cl->last_write_ms >= KEEPALIVE_MS)
        s_comment(cl, "keepalive");
    size_t n = 0;
    while (cl->head && n < max) {
        frame_t *f = cl->head;
        size_t k = f->len - f->off;
        if (k > max - n)
            k = max - n;
        memcpy(buf + n, f->data + f->off, k);
        f->off += k;
        n += k;
        if (f->off == f->len) {
            cl->head = f->next;
            if (!cl->head)
                cl->tail = NULL;
            cl->nframes--;
            cl->bytes -= f->len;
            free(f);
        }
    }
    if (n)
        cl->last_write_ms = now;
    pthread_mutex_unlock(&self->lock);
    return (ssize_t)n;
}

void hub_log(hub_t *self, json_int_t position, const char *text)
{
    if (!self)
        return;
    json_t *o = json_pack("{s:I, s:s}", "position", position, "text", text);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line)
        return;
    size_t len = strlen(line);
    pthread_mutex_lock(&self->lock);
    if (!self->closed)
        for (hub_client_t *cl = self->clients; cl; cl = cl->next)
            if (cl->filter.log)
                s_push(cl, "log", line, len);
    pthread_mutex_unlock(&self->lock);
    free(line);
}

/* ---- The tap's side ---- */

int hub_tap_fd(hub_t *self)
{
    return self->efd;
}

void hub_feed(hub_t *self, int state, const char *why)
{
    pthread_mutex_lock(&self->lock);
    int old = self->feed;
    self->feed = state;
    if (why)
        snprintf(self->why, sizeof self->why, "%s", why);
    for (hub_client_t *cl = self->clients; cl; cl = cl->next) {
        if (!cl->filter.bus)
            continue;
        cl->live = state == FEED_LIVE;
        if (state != old)
            s_feed_comment(self, cl);
    }
    pthread_mutex_unlock(&self->lock);
}

/* Splits what trace_record() wrote (whole JSON lines) into one frame per line. */
static void s_push_lines(hub_client_t *cl, const char *text, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t k = nl ? (size_t)(nl - text) : len;
        if (k > 0)
            s_push(cl, "bus", text, k);
        if (!nl)
            break;
        len -= k + 1;
        text += k + 1;
    }
}

void hub_record(hub_t *self, const rec_t *r)
{
    pthread_mutex_lock(&self->lock);
    if (self->closed || (self->feed != FEED_LIVE && self->feed != FEED_ATTACHING)) {
        pthread_mutex_unlock(&self->lock);
        return;
    }
    if (self->feed == FEED_ATTACHING) {
        /* What came before our ATTACH may be the tail of a picture we did not see from
         * its start: it is skipped, as lc-spy does. */
        if (r->what == REC_ATTACH) {
            self->feed = FEED_LIVE;
            for (hub_client_t *cl = self->clients; cl; cl = cl->next)
                if (cl->filter.bus && !cl->live) {
                    cl->live = true;
                    s_feed_comment(self, cl);
                }
        }
        pthread_mutex_unlock(&self->lock);
        return;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *out = NULL;
    for (hub_client_t *cl = self->clients; cl; cl = cl->next) {
        if (!cl->filter.bus || !cl->live)
            continue;
        if (!out && !(out = open_memstream(&buf, &len)))
            break;
        fflush(out);
        size_t before = len;
        cl->trace.out = out;
        trace_record(&cl->trace, r);
        fflush(out);
        if (len > before)
            s_push_lines(cl, buf + before, len - before);
    }
    pthread_mutex_unlock(&self->lock);
    if (out)
        fclose(out);
    free(buf);
}

bool hub_tap_sync(hub_t *self, bool subscribed)
{
    uint64_t n;
    if (read(self->efd, &n, sizeof n) < 0) {
        /* Nothing pending: the answer below is the same. */
    }
    pthread_mutex_lock(&self->lock);
    bool wanted = self->nbus > 0 && !self->closed;
    if (wanted && !subscribed)
        self->feed = FEED_ATTACHING;
    if (!wanted && subscribed) {
        self->feed = FEED_OFF;
        for (hub_client_t *cl = self->clients; cl; cl = cl->next)
            cl->live = false;
    }
    pthread_mutex_unlock(&self->lock);
    return wanted;
}
