/* lc-broker: one ROUTER socket bound to every endpoint, and the loop that reads it.
 * docs/architecture.md tells the life of a message; docs/protocol.md the frames. */
#include "broker_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAMES 8    /* frames read per message before it is called malformed */
#define RECV_BATCH 1024 /* messages per wake-up before other sources get a turn */
#define LOG_BURST 10    /* error lines per kind per second */

enum { EP_SIGNAL = 1, EP_PIDFD = 2 };

/* ---- Logging -------------------------------------------------------------------------- */

void broker_log(broker_t *self, int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > self->cfg.verbose + 1)
        return;
    char when[32], msg[1024];
    lc_timestamp(when, sizeof when, false);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s lc-broker %s: %s\n", when, names[level], msg);
}

/* At most LOG_BURST lines per kind per second; the rest are counted and summed up. */
bool broker_log_allowed(broker_t *self, int kind)
{
    int64_t second = lc_mono_ms() / 1000;
    if (self->log_rate[kind].second != second) {
        if (self->log_rate[kind].suppressed)
            broker_log(self, L_WARNING, "%" PRIu64 " more messages of this kind were not logged",
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

uint64_t broker_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t broker_next_id(broker_t *self)
{
    return ++self->next_id;
}

/* ---- Sending -------------------------------------------------------------------------- */

int broker_send(broker_t *self, const conn_t *to, const uint8_t *hdr, const char *address,
                size_t alen, const char *source, zmq_msg_t *payload)
{
    if (!to || zmq_send(self->router, to->rid, to->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int err = to ? errno : EHOSTUNREACH;
        if (payload)
            zmq_msg_close(payload);
        self->stats.unroutable++;
        if (broker_log_allowed(self, LOG_UNROUTABLE))
            broker_log(self, L_WARNING, "cannot deliver to %s: %s",
                       to && to->module ? to->module->name : "a peer",
                       err == EAGAIN ? "its queue is full" : "it is no longer connected");
        return -err;
    }
    if (broker_tapping(self))
        broker_tap_sent(self, to, hdr, address, alen, source, payload);
    /* Once the routing id is accepted, ZeroMQ takes the rest of the message. */
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

int broker_send_json(broker_t *self, const conn_t *to, const lc_hdr_t *h, const char *address,
                     json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    size_t len = text ? strlen(text) : 0;
    zmq_msg_t pm;
    zmq_msg_init_size(&pm, len);
    if (len)
        memcpy(zmq_msg_data(&pm), text, len);
    free(text);
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_encode(h, hb);
    return broker_send(self, to, hb, address, address ? strlen(address) : 0, "broker", &pm);
}

void broker_error(broker_t *self, const conn_t *to, const lc_hdr_t *req, uint64_t parent,
                  int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lc_hdr_t h = {.type = LC_MSG_ERROR,
                  .seq = req ? req->seq : 0,
                  .tx = req ? req->tx : 0,
                  .priority = req ? req->priority : 0,
                  .status = (uint32_t)status,
                  .id = broker_next_id(self),
                  .parent = parent,
                  .time_us = lc_now_us()};
    broker_send_json(self, to, &h, NULL, json_pack("{s:s}", "message", msg));
}

/* ---- Reading -------------------------------------------------------------------------- */

/* A module's own control message (STATE, BYE) as the broker took it in, for lc-spy. */
static void s_tap_in(broker_t *self, const conn_t *c, const lc_hdr_t *h, zmq_msg_t *f)
{
    lc_hdr_t t = *h;
    t.time_us = lc_now_us();
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_encode(&t, hb);
    broker_tap_record(self, TAP_ACCEPTED, hb, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]),
                      c->module->name, NULL, 0, zmq_msg_data(&f[4]), zmq_msg_size(&f[4]));
}

void broker_on_message(broker_t *self, zmq_msg_t *f, int nframes, bool truncated)
{
    conn_t *c = broker_conn_find(self, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]));
    conn_t tmp; /* where to answer a peer that is not registered */
    if (!c) {
        tmp.rid_len = zmq_msg_size(&f[0]);
        memcpy(tmp.rid, zmq_msg_data(&f[0]), tmp.rid_len);
        tmp.module = NULL;
    }
    const conn_t *to = c ? c : &tmp;
    const char *who = c ? c->module->name : "an unregistered peer";
    lc_hdr_t h;
    int st = nframes >= 2 ? lc_hdr_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &h)
                          : LC_STATUS_MALFORMED;
    if (st == LC_STATUS_VERSION) {
        self->stats.version++;
        if (broker_log_allowed(self, LOG_VERSION))
            broker_log(self, L_WARNING, "%s speaks protocol version %u; this broker speaks %d", who,
                       h.version, LC_WIRE_VERSION);
        broker_error(self, to, NULL, 0, LC_STATUS_VERSION,
                     "protocol version %u is not supported; this broker speaks version %d",
                     h.version, LC_WIRE_VERSION);
        return;
    }
    const char *what = NULL;
    if (truncated)
        what = "more than 8 frames";
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
        if (broker_log_allowed(self, LOG_MALFORMED))
            broker_log(self, L_WARNING, "malformed message from %s: %s", who, what);
        broker_error(self, to, st == LC_STATUS_OK ? &h : NULL, 0, LC_STATUS_MALFORMED,
                     "malformed message: %s", what);
        return;
    }
    /* The limit is for what is routed; HELLO and DONE have bounds of their own. */
    if (zmq_msg_size(&f[4]) > self->cfg.max_payload && h.type != LC_MSG_HELLO &&
        h.type != LC_MSG_DONE) {
        self->stats.too_large++;
        if (broker_log_allowed(self, LOG_TOO_LARGE))
            broker_log(self, L_WARNING, "payload of %zu bytes from %s refused (limit %zu)",
                       zmq_msg_size(&f[4]), who, self->cfg.max_payload);
        broker_error(self, to, &h, 0, LC_STATUS_TOO_LARGE,
                     "payload of %zu bytes is over the bus limit of %zu bytes", zmq_msg_size(&f[4]),
                     self->cfg.max_payload);
        return;
    }
    if (h.type == LC_MSG_HELLO) {
        broker_on_hello(self, f, c, &h);
        return;
    }
    if (!c) {
        if (h.type == LC_MSG_BYE || h.type == LC_MSG_REPLY || h.type == LC_MSG_ERROR ||
            h.type == LC_MSG_DONE)
            return; /* nothing to answer */
        if (broker_log_allowed(self, LOG_UNREGISTERED))
            broker_log(self, L_DEBUG, "message of type %u from an unregistered peer", h.type);
        broker_error(self, to, &h, 0, LC_STATUS_NOT_REGISTERED, "not registered: send HELLO first");
        return;
    }
    c->module->last_seen = lc_mono_ms();
    switch (h.type) {
    case LC_MSG_CALL:
        broker_on_call(self, f, c, &h);
        break;
    case LC_MSG_REPLY:
    case LC_MSG_ERROR:
        broker_on_reply(self, f, c, &h);
        break;
    case LC_MSG_TASK:
        broker_on_task(self, f, c, &h);
        break;
    case LC_MSG_EVENT:
        broker_on_event(self, f, c, &h);
        break;
    case LC_MSG_DONE:
        broker_on_done(self, f, c, &h);
        break;
    case LC_MSG_PING: {
        lc_hdr_t pong = {
            .type = LC_MSG_PONG, .seq = h.seq, .id = broker_next_id(self), .time_us = lc_now_us()};
        broker_send_json(self, c, &pong, NULL, NULL);
        break;
    }
    case LC_MSG_BYE:
        if (broker_tapping(self))
            s_tap_in(self, c, &h, f);
        broker_on_bye(self, c);
        break;
    case LC_MSG_STATE:
        if (broker_tapping(self))
            s_tap_in(self, c, &h, f);
        broker_on_state(self, f, c, &h);
        break;
    default:
        self->stats.malformed++;
        broker_error(self, c, &h, 0, LC_STATUS_MALFORMED,
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
        broker_on_message(self, f, count, truncated);
        for (int i = 0; i < count; i++)
            zmq_msg_close(&f[i]);
    }
}

/* ---- Endpoints ------------------------------------------------------------------------ */

/* tcp://127.x.x.x:PORT, tcp://[::1]:PORT or tcp://localhost:PORT. */
static bool s_loopback(const char *ep)
{
    const char *host = ep + 6;
    return strncmp(host, "127.", 4) == 0 || strncmp(host, "[::1]:", 6) == 0 ||
           strncmp(host, "localhost:", 10) == 0;
}

/* Creates the missing folders of path, mode 0700 (0710 with group gid >= 0, so that its
 * members can reach the socket); an existing last folder must be ours. */
static int s_mkdirs(const char *path, long gid, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    for (char *p = buf + 1; p <= slash; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0700) == 0) {
            if (gid >= 0 && (chown(buf, (uid_t)-1, (gid_t)gid) < 0 || chmod(buf, 0710) < 0)) {
                snprintf(err, errlen, "cannot give the folder %s to group %ld: %s", buf, gid,
                         strerror(errno));
                return -1;
            }
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create the folder %s: %s", buf, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    *slash = 0;
    struct stat st;
    if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a folder", buf);
        return -1;
    }
    /* A folder someone else controls, or that others (a group too) may write to, would let
     * them replace our socket. */
    if ((st.st_uid != geteuid() && st.st_uid != 0) ||
        ((st.st_mode & (S_IWOTH | S_IWGRP)) && !(st.st_mode & S_ISVTX))) {
        snprintf(err, errlen, "folder %s belongs to uid %u or is writable by others (mode %04o); "
                 "use a folder of your own (e.g. $XDG_RUNTIME_DIR) or remove it", buf,
                 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    /* With a group, its members must be able to pass through the folder. */
    if (gid >= 0 && !((st.st_mode & S_IXOTH) || ((st.st_mode & S_IXGRP) && st.st_gid == gid)))
        fprintf(stderr, "lc-broker: warning: members of group %ld cannot reach %s/: the folder "
                "is mode %04o, group %u; give it to the group with mode 0710\n", gid, buf,
                (unsigned)(st.st_mode & 07777), (unsigned)st.st_gid);
    return 0;
}

/* Prepares an ipc:// endpoint: its folder exists; a socket file left by a dead broker is
 * removed; a live broker there is an error. */
int broker_prepare_ipc(const char *path, long gid, char *err, size_t errlen)
{
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "socket path %s is longer than %zu bytes; choose a shorter one", path,
                 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return -1;
    }
    if (s_mkdirs(path, gid, err, errlen) < 0)
        return -1;
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
        snprintf(err, errlen,
                 "another broker is already serving ipc://%s; stop it first or "
                 "choose another endpoint with --endpoint",
                 path);
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
    idmap_init(&self->subs_exact);
    idmap_init(&self->senders);
    heap_init(&self->deadlines);
    strpool_init(&self->pool);

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
        bool ipc = strncmp(*ep, "ipc://", 6) == 0;
        if (ipc) {
            if (broker_prepare_ipc(*ep + 6, cfg->group ? (long)cfg->group_id : -1, err,
                                   errlen) < 0)
                goto fail;
            char **paths = realloc(self->ipc_paths, (self->nipc + 1) * sizeof *paths);
            if (!paths)
                goto fail;
            self->ipc_paths = paths;
        }
        /* The socket file is created 0600: reaching the bus means reaching the socket. */
        mode_t old = umask(0177);
        int rc = zmq_bind(self->router, *ep);
        int berr = errno;
        umask(old);
        if (rc < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s%s", *ep, zmq_strerror(berr),
                     berr == EADDRINUSE ? " (another broker may be running there)" : "");
            goto fail;
        }
        if (ipc)
            self->ipc_paths[self->nipc++] = strdup(*ep + 6);
        /* The folder is writable by us alone, so the socket just made cannot be swapped for
         * a link before it is given to the group; lstat makes sure it is that socket. */
        struct stat ss;
        errno = 0;
        if (ipc && cfg->group && (*ep)[6] != '@' &&
            (lstat(*ep + 6, &ss) < 0 || !S_ISSOCK(ss.st_mode) || ss.st_uid != geteuid() ||
             chown(*ep + 6, (uid_t)-1, cfg->group_id) < 0 || chmod(*ep + 6, 0660) < 0)) {
            snprintf(err, errlen, "cannot give the socket %s to group %s: %s (--group)", *ep + 6,
                     cfg->group, errno ? strerror(errno) : "it is not the broker's socket");
            goto fail;
        }
        if (ipc && (*ep)[6] == '@')
            broker_log(self, L_WARNING,
                       "%s is an abstract socket: it has no file permissions, so every local "
                       "user can connect (the broker still refuses users not allowed at "
                       "registration); it gets no monitor by default",
                       *ep);
        if (!ipc)
            self->has_tcp = true;
        if (!ipc && s_loopback(*ep))
            broker_log(self, L_WARNING,
                       "%s has no authentication yet: every local user can use the bus "
                       "through it (the allow-list applies to ipc only)",
                       *ep);
        else if (!ipc)
            broker_log(self, L_WARNING,
                       "%s is reachable from the network and tcp has no authentication yet: "
                       "any host that reaches it can use the bus; bind tcp to 127.0.0.1 or a "
                       "trusted network only",
                       *ep);
        broker_log(self, L_INFO, "listening on %s", *ep);
    }
    const char *monitor = cfg->monitor;
    char derived[PATH_MAX + 16];
    if (!monitor && self->nipc && self->ipc_paths[0][0] == '@') {
        /* An abstract socket has no permissions: a monitor there would show the whole
         * traffic to every local user. */
        broker_log(self, L_WARNING, "no monitor for lc-spy beside the abstract socket %s: it "
                   "would be readable by every local user; give one with --monitor",
                   self->ipc_paths[0]);
    } else if (!monitor && self->nipc) {
        snprintf(derived, sizeof derived, "ipc://%s.spy", self->ipc_paths[0]);
        monitor = derived;
        /* The bus must not fail for want of its optional monitor. */
        if (strlen(derived + 6) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            broker_log(self, L_WARNING, "no monitor for lc-spy: %s is too long for a socket "
                       "path; give a shorter one with --monitor", derived);
            monitor = NULL;
        }
    }
    if (monitor && *monitor && strncmp(monitor, "ipc://@", 7) == 0)
        broker_log(self, L_WARNING, "the monitor %s is an abstract socket: every local user can "
                   "attach and see the whole traffic; prefer a path", monitor);
    if (monitor && *monitor && broker_tap_open(self, monitor, err, errlen) < 0)
        goto fail;
    return self;
fail:
    broker_destroy(&self);
    return NULL;
}

/* glibc keeps what a burst freed for reuse, so a broker's RSS would stay at its busiest
 * moment. Once nothing has been read for TRIM_QUIET_MS it gives the free memory back
 * (malloc_trim), at most once every TRIM_EVERY_MS: a few hundred microseconds, and some page
 * faults when the next burst comes. */
#define TRIM_QUIET_MS 250
#define TRIM_EVERY_MS 1000

static int64_t s_trim_due(const broker_t *self)
{
    int64_t quiet = self->active_ms + TRIM_QUIET_MS, spaced = self->trim_ms + TRIM_EVERY_MS;
    return quiet > spaced ? quiet : spaced;
}

int broker_run(broker_t *self)
{
    for (;;) {
        int timeout = -1;
        const heap_entry_t *top = heap_top(&self->deadlines);
        int64_t now = lc_mono_ms();
        if (top)
            timeout = top->when <= now ? 0 : (int)(top->when - now);
        /* Heartbeats, broker.wait deadlines and grace times are checked a few times a second. */
        if ((self->nbeating || self->waiters || self->queued || self->expected) &&
            (timeout < 0 || timeout > 200))
            timeout = 200;
        /* Silent connections are probed every PROBE_MS (broker_probe_silent). */
        if (self->nmodules && (timeout < 0 || timeout > PROBE_MS))
            timeout = PROBE_MS;
        if (self->exit_phase != EXIT_NONE && (timeout < 0 || timeout > 50))
            timeout = 50;
        if (self->exiting && (timeout < 0 || timeout > EXIT_GRACE_MS))
            timeout = EXIT_GRACE_MS;
        if (!self->trimmed) {
            int64_t due = s_trim_due(self);
            if (due <= now) {
                malloc_trim(0);
                self->trimmed = true;
                self->trim_ms = now;
            } else if (timeout < 0 || timeout > due - now) {
                timeout = (int)(due - now);
            }
        }
        /* "Gone" answers still owed go out a batch per round, between reads. */
        if (self->gone_head)
            timeout = 0;
        /* The tap's batch leaves when it is TAP_FLUSH_MS old: a spy wakes a few hundred
         * times a second at most, however busy the bus. */
        if (self->tap.len) {
            int64_t due = self->tap.first_ms + TAP_FLUSH_MS;
            if (due <= now)
                broker_tap_flush(self);
            else if (timeout < 0 || timeout > due - now)
                timeout = (int)(due - now);
        }
        zmq_pollitem_t items[3] = {{self->router, 0, ZMQ_POLLIN, 0},
                                   {NULL, self->epfd, ZMQ_POLLIN, 0},
                                   {self->tap.sock, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, self->tap.sock ? 3 : 2, timeout) < 0) {
            if (errno == EINTR)
                continue;
            broker_log(self, L_ERROR, "poll failed: %s", zmq_strerror(errno));
            return -1;
        }
        if (items[0].revents || items[1].revents || items[2].revents) {
            self->active_ms = lc_mono_ms();
            self->trimmed = false;
        }
        if (items[2].revents)
            broker_tap_read(self);
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
                        /* The first signal stops the system in order, a second at once. */
                        if (self->exit_phase != EXIT_NONE) {
                            broker_log(self, L_INFO, "signal %u again: exiting now",
                                       si.ssi_signo);
                            return 0;
                        }
                        char why[64];
                        snprintf(why, sizeof why, "signal %u", si.ssi_signo);
                        broker_exit_start(self, why, true);
                    }
                } else if (kind == EP_PIDFD) {
                    broker_on_pidfd(self, (int)(uint32_t)evs[i].data.u64);
                }
            }
        }
        now = lc_mono_ms();
        broker_calls_expire(self, now);
        broker_calls_send_gone(self, GONE_BATCH);
        broker_probe_silent(self, now);
        broker_check_liveness(self, now);
        broker_idle_check(self);
        broker_exit_step(self, now);
        if (self->exit_now) {
            broker_calls_send_gone(self, SIZE_MAX); /* nobody is left to wait for */
            broker_tap_flush(self);
            return 0;
        }
    }
}

void broker_destroy(broker_t **self_p)
{
    broker_t *self = *self_p;
    if (!self)
        return;
    broker_calls_clear(self);
    broker_registry_clear(self);
    broker_senders_clear(self); /* empty by now: every item was retired with its module */
    json_decref(self->expected);
    json_decref(self->stop_order);
    idmap_clear(&self->conns);
    idmap_clear(&self->modules);
    idmap_clear(&self->calls);
    idmap_clear(&self->subs_exact);
    heap_clear(&self->deadlines);
    strpool_clear(&self->pool);
    broker_tap_close(self);
    if (self->router) {
        /* A moment for the last words (module_state, errors) to leave, even on a busy
         * machine; peers that are gone do not hold it up. */
        int linger = 1000;
        zmq_setsockopt(self->router, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(self->router);
    }
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

int broker_watch_pidfd(broker_t *self, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = ((uint64_t)EP_PIDFD << 32) | (uint32_t)fd};
    return epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev);
}
