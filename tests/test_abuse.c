/* Abusive and unlucky peers against a real broker: a module that stops reading (and one
 * whose socket is full), event floods, silent and garbage connections, a thousand
 * connections at once, a handler that runs forever, names at and beyond the limits,
 * payloads that are not JSON, a broker restart under all of it, a broker short of
 * descriptors, and a connection closed without BYE (a known defect, disabled).
 * docs/reliability.md ("Abusive and unlucky peers") says what each test proves. */
#include "harness.h"
#include "wire.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

TestSuite(abuse, .init = h_setup, .fini = h_teardown, .timeout = 120);

/* ---- Raw peers: ZeroMQ DEALERs that speak the protocol by hand -------------------------- */

typedef struct {
    void *sock;
    uint32_t seq;
} raw_t;

static void *s_ctx;

static void *s_context(void)
{
    if (!s_ctx) {
        s_ctx = zmq_ctx_new();
        cr_assert(s_ctx);
        /* Room for the thousand-connection test and its helpers. */
        zmq_ctx_set(s_ctx, ZMQ_MAX_SOCKETS, 4096);
    }
    return s_ctx;
}

static void s_context_end(void)
{
    if (s_ctx)
        zmq_ctx_term(s_ctx);
    s_ctx = NULL;
}

/* rcvhwm: how many messages it may hold unread (0: no bound), -1 for libzmq's default. */
static raw_t *s_raw_open_hwm(int rcvhwm)
{
    raw_t *r = calloc(1, sizeof *r);
    cr_assert(r);
    r->sock = zmq_socket(s_context(), ZMQ_DEALER);
    cr_assert(r->sock, "zmq_socket: %s", zmq_strerror(errno));
    int zero = 0;
    zmq_setsockopt(r->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (rcvhwm >= 0)
        zmq_setsockopt(r->sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    cr_assert_eq(zmq_connect(r->sock, h_bus), 0, "zmq_connect: %s", zmq_strerror(errno));
    return r;
}

static raw_t *s_raw_open(void)
{
    return s_raw_open_hwm(-1);
}

static void s_raw_close(raw_t **r)
{
    zmq_close((*r)->sock);
    free(*r);
    *r = NULL;
}

/* Sends one lc message: header, address, empty source, payload. Returns its seq. */
static uint32_t s_raw_send(raw_t *r, int type, uint16_t flags, const char *address,
                           const void *payload, size_t plen)
{
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_t h = {.type = (uint8_t)type, .seq = ++r->seq, .flags = flags};
    if (type == LC_MSG_CALL)
        h.timeout_ms = 5000;
    lc_hdr_encode(&h, hb);
    const void *data[4] = {hb, address, "", payload};
    size_t sizes[4] = {sizeof hb, strlen(address), 0, plen};
    for (int i = 0; i < 4; i++) {
        int rc = zmq_send(r->sock, data[i], sizes[i], i < 3 ? ZMQ_SNDMORE : 0);
        cr_assert_eq(rc, (int)sizes[i], "zmq_send frame %d: %s", i, zmq_strerror(errno));
    }
    return h.seq;
}

/* A HELLO with a fresh token and this process's pid (so the broker watches it by pidfd);
 * extra: more keys of the payload, as JSON members ("" for none). */
static uint32_t s_raw_hello_token(raw_t *r, const char *name, const char *token,
                                  const char *extra)
{
    char payload[1024];
    snprintf(payload, sizeof payload, "{\"token\":\"%s\",\"pid\":%d%s%s}", token,
             (int)getpid(), *extra ? "," : "", extra);
    return s_raw_send(r, LC_MSG_HELLO, 0, name, payload, strlen(payload));
}

static uint32_t s_raw_hello(raw_t *r, const char *name, const char *extra)
{
    static unsigned n;
    char token[17];
    snprintf(token, sizeof token, "%016x", ++n + 0x1000u);
    return s_raw_hello_token(r, name, token, extra);
}

typedef struct {
    lc_hdr_t h;
    char address[300];
    char payload[2048];
} rmsg_t;

/* Receives one message within timeout_ms; false if none came. */
static bool s_raw_recv(raw_t *r, rmsg_t *out, int timeout_ms)
{
    memset(out, 0, sizeof *out);
    zmq_pollitem_t item = {r->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return false;
    int nframes = 0, more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        cr_assert_geq(zmq_msg_recv(&f, r->sock, 0), 0);
        size_t n = zmq_msg_size(&f);
        if (nframes == LC_FRAME_HEADER)
            cr_assert_eq(lc_hdr_decode(zmq_msg_data(&f), n, &out->h), LC_STATUS_OK);
        else if (nframes == LC_FRAME_ADDRESS)
            memcpy(out->address, zmq_msg_data(&f), n < 299 ? n : 299);
        else if (nframes == LC_FRAME_PAYLOAD)
            memcpy(out->payload, zmq_msg_data(&f), n < 2047 ? n : 2047);
        nframes++;
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    cr_assert_eq(nframes, LC_FRAMES);
    return true;
}

/* Receives until a message of `type` answering seq comes (skipping others, such as
 * deliveries); fails after 5 s. */
static void s_raw_expect(raw_t *r, int type, uint32_t seq, rmsg_t *out, const char *what)
{
    int64_t end = lc_mono_ms() + 5000;
    for (;;) {
        int64_t left = end - lc_mono_ms();
        cr_assert(left > 0 && s_raw_recv(r, out, (int)left), "%s: no answer of type %d", what,
                  type);
        if (out->h.type == type && out->h.seq == seq)
            return;
        if (out->h.type == LC_MSG_ERROR && out->h.seq == seq)
            cr_assert_fail("%s: ERROR status %u (%s): %s", what, out->h.status,
                           lc_status_name((int)out->h.status), out->payload);
    }
}

static void s_raw_expect_error(raw_t *r, uint32_t seq, int status, const char *what)
{
    rmsg_t m;
    int64_t end = lc_mono_ms() + 5000;
    for (;;) {
        int64_t left = end - lc_mono_ms();
        cr_assert(left > 0 && s_raw_recv(r, &m, (int)left), "%s: no answer", what);
        if (m.h.seq != seq || (m.h.type != LC_MSG_ERROR && m.h.type != LC_MSG_WELCOME &&
                               m.h.type != LC_MSG_REPLY && m.h.type != LC_MSG_NOTICE))
            continue;
        cr_assert(m.h.type == LC_MSG_ERROR || m.h.type == LC_MSG_NOTICE,
                  "%s: accepted (type %d), expected status %d (%s)", what, m.h.type, status,
                  lc_status_name(status));
        cr_assert_eq(m.h.status, (uint32_t)status, "%s: status %u (%s), expected %d (%s): %s", what,
                     m.h.status, lc_status_name((int)m.h.status), status, lc_status_name(status),
                     m.payload);
        return;
    }
}

/* ---- Helpers ------------------------------------------------------------------------ */

static void s_call_ok(lc_client_t *c, const char *target, json_t *args, json_t **res)
{
    json_t *r = NULL;
    int rc = lc_call(c, target, args, &r, 5000);
    cr_assert_eq(rc, 0, "%s: %s %s", target, lc_strerror(rc), r ? h_dump(r) : "");
    if (res)
        *res = r;
    else
        json_decref(r);
}

/* Calls, tasks and events of other modules still go through, in order. */
static void s_others_served(lc_client_t *c, const char *module, const char *event, int rounds)
{
    json_int_t done0 = h_module_int(c, module, "done");
    char target[128];
    for (int i = 0; i < rounds; i++) {
        json_t *res = NULL;
        snprintf(target, sizeof target, "%s.echo", module);
        s_call_ok(c, target, json_pack("{s:i}", "i", i), &res);
        cr_assert_eq(h_int(res, "i"), i);
        json_decref(res);
        snprintf(target, sizeof target, "%s.record", module);
        h_enqueue_ok(c, target, json_pack("{s:i}", "task", i), 0);
        if (event) {
            json_t *info = NULL;
            int rc = lc_emit_wait(c, event, json_pack("{s:i}", "event", i), 0, 5000, &info);
            cr_assert_eq(rc, 0, "emit %s: %s %s", event, lc_strerror(rc), h_dump(info));
            json_decref(info);
        }
    }
    h_wait_module_int(c, module, "done", done0 + rounds * (event ? 2 : 1), 10000);
}

/* Open descriptors of a process. */
static int s_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    cr_assert(d, "%s: %m", path);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Waits until the process has at most n descriptors open. */
static void s_wait_fds_at_most(pid_t pid, int n, int timeout_ms, const char *what)
{
    int64_t end = lc_mono_ms() + timeout_ms;
    int now;
    while ((now = s_fd_count(pid)) > n) {
        cr_assert(lc_mono_ms() < end, "%s: the broker still has %d descriptors, %d at the start",
                  what, now, n);
        usleep(10000); /* polling a condition, with the deadline above */
    }
}

static json_t *s_list(lc_client_t *c)
{
    json_t *res = NULL;
    s_call_ok(c, "broker.list", NULL, &res);
    json_t *mods = json_incref(json_object_get(res, "modules"));
    json_decref(res);
    cr_assert(json_is_array(mods));
    return mods;
}

/* Stops the broker with SIGTERM (the exit sequence stops the modules too) and checks that
 * it exits with 0: in the sanitizer build, also without errors or leaks after the abuse. */
static void s_broker_exits_cleanly(proc_t *b)
{
    int st = h_stop(b, SIGTERM, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "broker exit status %d\n%s", st, h_log(b));
}

/* ---- A module that stops reading ------------------------------------------------------ */

/* A raw module registers (window 1, one method, one subscription) and then never reads a
 * byte: its first task stays in flight, the next ones fill its backlog up to
 * --max-backlog, then are refused with queue_full; its event copies are dropped and counted
 * against it; calls to it reach their deadline; everyone else is served as before. */
Test(abuse, a_module_that_stops_reading_is_bounded_and_others_served)
{
    proc_t *b = h_broker("--max-backlog", "5", NULL);
    h_echo_with("ok", "--listen", "deaf_news", NULL);
    lc_client_t *c = h_client();

    raw_t *deaf = s_raw_open();
    s_raw_hello(deaf, "deaf",
                "\"lifecycle\":false,\"window\":1,\"methods\":[{\"name\":\"m\"}],"
                "\"events\":[\"deaf_news\"]");
    h_wait_modules(c, "deaf", NULL);
    json_int_t full0 = h_stat(c, "queue_full"), dropped0 = h_stat(c, "dropped");

    h_enqueue_ok(c, "deaf.m", NULL, 0);
    h_wait_module_int(c, "deaf", "in_flight", 1, 5000);
    for (int i = 0; i < 5; i++)
        h_enqueue_ok(c, "deaf.m", json_pack("{s:i}", "i", i), 0);
    cr_assert_eq(h_module_int(c, "deaf", "backlog"), 5);
    for (int i = 0; i < 3; i++) {
        json_t *info = NULL;
        int rc = lc_enqueue_wait(c, "deaf.m", NULL, 0, 5000, &info);
        cr_assert_eq(rc, LC_EQUEUEFULL, "task %d beyond the backlog: %s", i, lc_strerror(rc));
        cr_assert(strstr(h_str(info, "message"), "deaf"), "%s", h_dump(info));
        json_decref(info);
    }
    cr_assert_eq(h_stat(c, "queue_full"), full0 + 3);

    /* Its event copies are dropped and counted against it; the other subscriber gets all. */
    for (int i = 0; i < 4; i++) {
        json_t *info = NULL;
        int rc = lc_emit_wait(c, "deaf_news", json_pack("{s:i}", "i", i), 0, 5000, &info);
        /* Accepted all the same (the other subscriber is served); the info names the loser. */
        cr_assert_eq(rc, 0, "event %d: %s %s", i, lc_strerror(rc), h_dump(info));
        cr_assert_eq(h_int(info, "subscribers"), 2, "%s", h_dump(info));
        json_t *dropped = json_object_get(info, "dropped");
        cr_assert(json_array_size(dropped) == 1 &&
                      !strcmp(json_string_value(json_array_get(dropped, 0)), "deaf"),
                  "%s", h_dump(info));
        json_decref(info);
    }
    cr_assert_eq(h_module_int(c, "deaf", "dropped"), 4);
    cr_assert_eq(h_module_int(c, "ok", "dropped"), 0);
    cr_assert_eq(h_stat(c, "dropped"), dropped0 + 4);
    json_decref(h_wait_recorded(c, "ok", 4, 5000));

    /* A call to it reaches the caller's deadline; the broker forgets it at its own. */
    json_t *res = NULL;
    int rc = lc_call(c, "deaf.m", NULL, &res, 300);
    cr_assert_eq(rc, LC_ETIMEDOUT, "%s", lc_strerror(rc));
    json_decref(res);

    s_others_served(c, "ok", "deaf_news", 20);
    cr_assert_eq(h_module_int(c, "deaf", "backlog"), 5, "the bound holds");
    cr_assert_eq(h_module_int(c, "deaf", "dropped"), 24);

    /* When it goes (BYE), its items are counted and nothing of it is left. */
    s_raw_send(deaf, LC_MSG_BYE, 0, "", "", 0);
    s_raw_close(&deaf);
    s_context_end();
    h_wait_module_int(c, "deaf", "backlog", -1, 5000);
    s_call_ok(c, "ok.echo", NULL, NULL);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* Reads the refusals (not_ready) the raw caller has been sent so far; adds them to
 * *refused. Anything else fails the test. */
static void s_read_refusals(raw_t *caller, int *refused)
{
    rmsg_t m;
    while (s_raw_recv(caller, &m, 0)) {
        cr_assert_eq(m.h.type, LC_MSG_ERROR, "an answer of type %d", m.h.type);
        cr_assert_eq(m.h.status, LC_STATUS_NOT_READY, "status %u: %s", m.h.status, m.payload);
        (*refused)++;
    }
}

/* Calls deaf.m from the raw caller (each with a deadline of timeout_ms), 1,000 at a time
 * without waiting for answers, until the broker refuses one as not_ready: its send queue to
 * the module that never reads is full. Returns how many calls were sent; the refusals read
 * are added to *refused. */
static int s_fill_deaf(raw_t *caller, uint32_t timeout_ms, int *refused)
{
    uint8_t hb[LC_HDR_SIZE];
    int sent = 0;
    int64_t end = lc_mono_ms() + 240000;
    while (!*refused) {
        cr_assert(sent < 400000 && lc_mono_ms() < end,
                  "%d calls to a module that never reads, and none refused", sent);
        for (int i = 0; i < 1000; i++, sent++) {
            lc_hdr_t h = {.type = LC_MSG_CALL, .seq = ++caller->seq, .timeout_ms = timeout_ms};
            lc_hdr_encode(&h, hb);
            zmq_send(caller->sock, hb, sizeof hb, ZMQ_SNDMORE);
            zmq_send(caller->sock, "deaf.m", 6, ZMQ_SNDMORE);
            zmq_send(caller->sock, "", 0, ZMQ_SNDMORE);
            zmq_send(caller->sock, "", 0, 0);
        }
        s_read_refusals(caller, refused);
    }
    return sent;
}

/* The same module's socket filled to the brim: calls to it are forwarded until the
 * broker's send queue to it (100,000 messages, plus what the kernel and the peer's receive
 * queue hold) is full; from then on each call is refused at once with not_ready (status 4,
 * LC_ENOTREADY) and counted in `unroutable`, while the broker keeps serving the others. */
Test(abuse, a_full_socket_refuses_calls_with_not_ready, .timeout = 300)
{
    proc_t *b = h_broker(NULL);
    h_echo_with("ok", NULL);
    lc_client_t *c = h_client();
    raw_t *deaf = s_raw_open();
    s_raw_hello(deaf, "deaf", "\"lifecycle\":false,\"methods\":[{\"name\":\"m\"}]");
    h_wait_modules(c, "deaf", NULL);
    json_int_t unroutable0 = h_stat(c, "unroutable");

    raw_t *caller = s_raw_open();
    rmsg_t m;
    uint32_t seq = s_raw_hello(caller, "", "");
    s_raw_expect(caller, LC_MSG_WELCOME, seq, &m, "the caller's HELLO");
    /* The broker answers nothing at a call's deadline, so only refusals come back. The
     * deadline is short so that the broker has forgotten the calls before the module goes
     * (the next test has it go with its calls open). */
    int refused = 0;
    int sent = s_fill_deaf(caller, 1000, &refused);
    printf("abuse: the first call refused as not_ready came after about %d calls to a module "
           "that never reads\n",
           sent);
    cr_assert_gt(h_stat(c, "unroutable"), unroutable0);
    s_others_served(c, "ok", NULL, 10);
    /* Another call is refused at once too. */
    json_t *res = NULL;
    int rc = lc_call(c, "deaf.m", NULL, &res, 5000);
    cr_assert_eq(rc, LC_ENOTREADY, "%s", lc_strerror(rc));
    cr_assert(strstr(h_str(res, "message"), "deaf"), "%s", h_dump(res));
    json_decref(res);

    int64_t gone_by = lc_mono_ms() + 60000;
    while (h_stat(c, "calls_open") > 0)
        cr_assert(lc_mono_ms() < gone_by, "the broker still has %lld calls open after 60 s",
                  (long long)h_stat(c, "calls_open"));
    s_raw_send(deaf, LC_MSG_BYE, 0, "", "", 0);
    s_raw_close(&deaf);
    s_raw_close(&caller);
    s_context_end();
    h_wait_module_int(c, "deaf", "calls_in", -1, 10000);
    s_others_served(c, "ok", NULL, 3);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* The deaf module, its socket full, comes back (a new connection with its token takes its
 * name over) with about 100,000 calls open to it. They leave the broker's table at once
 * (calls_open is 0 when the new connection is welcomed), and every caller gets its "gone"
 * answer, but spread over loop rounds: the new connection's broker.ping, sent right after
 * its HELLO, is answered before the last of them. The broker's message ids grow with every
 * message it sends, so they show the order without timing anything. */
Test(abuse, calls_open_to_a_module_that_goes_are_answered_gone_between_others,
     .timeout = 300)
{
    static const char token[] = "00000000feedf00d";
    const char *decl = "\"lifecycle\":false,\"methods\":[{\"name\":\"m\"}]";
    proc_t *b = h_broker(NULL);
    lc_client_t *c = h_client();
    raw_t *deaf = s_raw_open();
    s_raw_hello_token(deaf, "deaf", token, decl);
    h_wait_modules(c, "deaf", NULL);
    json_int_t gone0 = h_stat(c, "gone");

    /* No bound on what the caller holds unread: the "gone" answers all fit. */
    raw_t *caller = s_raw_open_hwm(0);
    rmsg_t m;
    uint32_t seq = s_raw_hello(caller, "", "");
    s_raw_expect(caller, LC_MSG_WELCOME, seq, &m, "the caller's HELLO");
    int refused = 0;
    int sent = s_fill_deaf(caller, 600000, &refused);
    /* Every call is either open or refused once the broker has read them all. */
    json_int_t open = 0;
    int64_t end = lc_mono_ms() + 60000;
    while ((open = h_stat(c, "calls_open")) + refused < sent) {
        cr_assert(lc_mono_ms() < end, "%d calls sent, %lld open and %d refused after 60 s", sent,
                  (long long)open, refused);
        s_read_refusals(caller, &refused);
    }
    cr_assert_eq(open + refused, sent);
    cr_assert_gt(open, 10000, "only %lld calls open", (long long)open);

    raw_t *again = s_raw_open();
    int64_t t0 = lc_now_us();
    seq = s_raw_hello_token(again, "deaf", token, decl);
    uint32_t ping = s_raw_send(again, LC_MSG_CALL, 0, "broker.ping", "{}", 2);
    s_raw_expect(again, LC_MSG_WELCOME, seq, &m, "the module's HELLO again");
    s_raw_expect(again, LC_MSG_REPLY, ping, &m, "broker.ping after the HELLO");
    int64_t ping_us = lc_now_us() - t0;
    uint64_t ping_id = m.h.id;
    int64_t s0 = lc_now_us();
    json_int_t open_after = h_stat(c, "calls_open");
    int64_t stats_us = lc_now_us() - s0;
    cr_assert_eq(open_after, 0, "the calls leave the table at once");

    json_int_t gone = 0, after = 0;
    end = lc_mono_ms() + 120000;
    while (gone < open) {
        int64_t left = end - lc_mono_ms();
        cr_assert(left > 0 && s_raw_recv(caller, &m, (int)left),
                  "%lld of %lld calls answered gone after 120 s", (long long)gone,
                  (long long)open);
        cr_assert_eq(m.h.type, LC_MSG_ERROR, "an answer of type %d", m.h.type);
        if (m.h.status == LC_STATUS_NOT_READY)
            continue; /* a refusal of before */
        cr_assert_eq(m.h.status, LC_STATUS_GONE, "status %u: %s", m.h.status, m.payload);
        cr_assert(strstr(m.payload, "deaf") && strstr(m.payload, "reconnected"), "%s",
                  m.payload);
        gone++;
        after += m.h.id > ping_id;
    }
    int64_t spread_us = lc_now_us() - t0;
    cr_assert(!s_raw_recv(caller, &m, 100), "an answer more than the calls: status %u %s",
              m.h.status, m.payload);
    cr_assert_gt(after, 0, "every gone answer left before the ping's reply");
    cr_assert_eq(h_stat(c, "gone"), gone0 + open);
    printf("abuse: %lld calls open to a module that came back were answered gone in %.2f s; "
           "a broker.ping sent with its HELLO was answered in %.1f ms, before %lld of them; a "
           "broker.stats from another client took %.1f ms\n",
           (long long)open, (double)spread_us / 1e6, (double)ping_us / 1000, (long long)after,
           (double)stats_us / 1000);

    s_raw_send(again, LC_MSG_BYE, 0, "", "", 0);
    s_raw_close(&again);
    s_raw_close(&deaf);
    s_raw_close(&caller);
    s_context_end();
    h_wait_module_int(c, "deaf", "calls_in", -1, 10000);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* n calls to target from the raw peer, each with a deadline of timeout_ms, without waiting
 * for answers. */
static void s_raw_calls(raw_t *r, const char *target, int n, uint32_t timeout_ms)
{
    uint8_t hb[LC_HDR_SIZE];
    for (int i = 0; i < n; i++) {
        lc_hdr_t h = {.type = LC_MSG_CALL, .seq = ++r->seq, .timeout_ms = timeout_ms};
        lc_hdr_encode(&h, hb);
        zmq_send(r->sock, hb, sizeof hb, ZMQ_SNDMORE);
        zmq_send(r->sock, target, strlen(target), ZMQ_SNDMORE);
        zmq_send(r->sock, "", 0, ZMQ_SNDMORE);
        zmq_send(r->sock, "", 0, 0);
    }
}

/* Reads what the raw peer has been sent within timeout_ms: "gone" answers are counted in
 * *gone; anything else but a probe of a silent connection fails the test. True once one
 * came. */
static bool s_read_gone(raw_t *r, int timeout_ms, int *gone)
{
    rmsg_t m;
    bool any = false;
    while (s_raw_recv(r, &m, any ? 0 : timeout_ms)) {
        if (m.h.type == LC_MSG_PONG)
            continue;
        cr_assert(m.h.type == LC_MSG_ERROR && m.h.status == LC_STATUS_GONE, "type %d status %u: %s",
                  m.h.type, m.h.status, m.payload);
        (*gone)++;
        any = true;
    }
    return any;
}

/* The "gone" answers still owed when their callers' connections go are dropped with them
 * (they would name freed connections): callers with thousands of calls open to a module
 * that says BYE say BYE themselves as soon as the first answers come, while most are still
 * owed; one is an attached connection, one an anonymous client, one the main connection of
 * a module (which goes itself, its connections with it). All the calls count as gone at
 * once; each connection registered anew on the same socket hears nothing of before after
 * its welcome; and the broker exits cleanly (in the sanitizer build: nothing freed was
 * used). */
Test(abuse, gone_answers_owed_to_connections_that_go_are_dropped_with_them, .timeout = 300)
{
    enum { CALLS = 20000, CALLERS = 3 };
    static const char token[] = "00000000cafe0001";
    const char *decl = "\"lifecycle\":false,\"methods\":[{\"name\":\"m\"}]";
    proc_t *b = h_broker(NULL);
    lc_client_t *c = h_client();
    rmsg_t m;
    raw_t *deaf = s_raw_open();
    uint32_t seq = s_raw_hello(deaf, "deaf", decl);
    s_raw_expect(deaf, LC_MSG_WELCOME, seq, &m, "the deaf module's HELLO");

    /* callers[0]: the module "caller"; [1]: a connection attached to it; [2]: anonymous.
     * None bounds what it holds unread. */
    raw_t *callers[CALLERS];
    for (int i = 0; i < CALLERS; i++)
        callers[i] = s_raw_open_hwm(0);
    seq = s_raw_hello_token(callers[0], "caller", token, "\"lifecycle\":false");
    s_raw_expect(callers[0], LC_MSG_WELCOME, seq, &m, "the caller's HELLO");
    char payload[128];
    snprintf(payload, sizeof payload, "{\"token\":\"%s\",\"pid\":%d}", token, (int)getpid());
    seq = s_raw_send(callers[1], LC_MSG_HELLO, LC_FLAG_ATTACH, "caller", payload, strlen(payload));
    s_raw_expect(callers[1], LC_MSG_WELCOME, seq, &m, "the attached connection's HELLO");
    seq = s_raw_hello(callers[2], "", "");
    s_raw_expect(callers[2], LC_MSG_WELCOME, seq, &m, "the anonymous caller's HELLO");
    json_int_t gone0 = h_stat(c, "gone");

    for (int i = 0; i < CALLERS; i++)
        s_raw_calls(callers[i], "deaf.m", CALLS, 600000);
    json_int_t open = 0;
    int64_t end = lc_mono_ms() + 60000;
    while ((open = h_stat(c, "calls_open")) < CALLERS * CALLS)
        cr_assert(lc_mono_ms() < end, "%lld of %d calls open after 60 s", (long long)open,
                  CALLERS * CALLS);

    /* The deaf module goes; once its first "gone" answers arrive, the callers go too. */
    s_raw_send(deaf, LC_MSG_BYE, 0, "", "", 0);
    int got[CALLERS] = {0};
    bool first = false;
    end = lc_mono_ms() + 60000;
    while (!first) {
        cr_assert(lc_mono_ms() < end, "no gone answer 60 s after the module's BYE");
        for (int i = 0; i < CALLERS; i++)
            first |= s_read_gone(callers[i], 10, &got[i]);
    }
    for (int i = CALLERS; i-- > 0;)
        s_raw_send(callers[i], LC_MSG_BYE, 0, "", "", 0);
    cr_assert_eq(h_stat(c, "calls_open"), 0);
    cr_assert_eq(h_stat(c, "gone"), gone0 + CALLERS * CALLS, "every call counts as gone");

    /* Each socket registers again (anonymously): its answers of before came before its
     * BYE, so before the welcome; after it, only the answer to its broker.ping. */
    for (int i = 0; i < CALLERS; i++) {
        seq = s_raw_hello(callers[i], "", "");
        for (;;) {
            cr_assert(s_raw_recv(callers[i], &m, 10000), "caller %d: no welcome", i);
            if (m.h.type == LC_MSG_WELCOME && m.h.seq == seq)
                break;
            if (m.h.type == LC_MSG_PONG)
                continue; /* a probe: the connection was silent a while */
            cr_assert(m.h.type == LC_MSG_ERROR && m.h.status == LC_STATUS_GONE,
                      "caller %d: type %d status %u: %s", i, m.h.type, m.h.status, m.payload);
            got[i]++;
        }
        uint32_t ping = s_raw_send(callers[i], LC_MSG_CALL, 0, "broker.ping", "{}", 2);
        do
            cr_assert(s_raw_recv(callers[i], &m, 10000), "caller %d: no answer to its ping", i);
        while (m.h.type == LC_MSG_PONG);
        cr_assert(m.h.type == LC_MSG_REPLY && m.h.seq == ping,
                  "caller %d, after its welcome: type %d seq %u status %u: %s", i, m.h.type,
                  m.h.seq, m.h.status, m.payload);
    }
    int total = 0;
    for (int i = 0; i < CALLERS; i++) {
        bool more;
        while ((more = s_raw_recv(callers[i], &m, i ? 0 : 200)) && m.h.type == LC_MSG_PONG)
            ;
        cr_assert(!more, "caller %d, after its ping: type %d status %u: %s", i, m.h.type,
                  m.h.status, m.payload);
        total += got[i];
    }
    printf("abuse: %d calls open to a module that said goodbye; %d of their gone answers "
           "reached their callers before these went (module %d, attached %d, anonymous %d)\n",
           CALLERS * CALLS, total, got[0], got[1], got[2]);

    for (int i = 0; i < CALLERS; i++) {
        s_raw_send(callers[i], LC_MSG_BYE, 0, "", "", 0);
        s_raw_close(&callers[i]);
    }
    s_raw_close(&deaf);
    s_context_end();
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* A broker with an anonymous caller (which does not hold up its exit) whose `calls` calls
 * to the module "deaf" were open when that module said BYE, most of their "gone" answers
 * still owed; the broker is then sent `signals` SIGTERMs at once. Returns the caller; the
 * answers it has read so far are counted in *got. */
static raw_t *s_exit_with_answers_owed(proc_t *b, int calls, int signals, int *got)
{
    rmsg_t m;
    lc_client_t *c = h_client();
    raw_t *deaf = s_raw_open();
    uint32_t seq = s_raw_hello(deaf, "deaf", "\"lifecycle\":false,\"methods\":[{\"name\":\"m\"}]");
    s_raw_expect(deaf, LC_MSG_WELCOME, seq, &m, "the deaf module's HELLO");
    raw_t *caller = s_raw_open_hwm(0);
    seq = s_raw_hello(caller, "", "");
    s_raw_expect(caller, LC_MSG_WELCOME, seq, &m, "the caller's HELLO");
    s_raw_calls(caller, "deaf.m", calls, 600000);
    int64_t end = lc_mono_ms() + 60000;
    json_int_t open;
    while ((open = h_stat(c, "calls_open")) < calls)
        cr_assert(lc_mono_ms() < end, "%lld of %d calls open after 60 s", (long long)open, calls);
    lc_client_destroy(&c);
    s_raw_send(deaf, LC_MSG_BYE, 0, "", "", 0);
    s_raw_close(&deaf);
    while (!s_read_gone(caller, 10, got))
        cr_assert(lc_mono_ms() < end, "no gone answer after the module's BYE");
    for (int i = 0; i < signals; i++)
        kill(b->pid, SIGTERM);
    return caller;
}

/* At the broker's exit the "gone" answers still owed all go out before it closes. */
Test(abuse, gone_answers_still_owed_go_out_at_exit)
{
    enum { CALLS = 30000 };
    proc_t *b = h_broker(NULL);
    int got = 0;
    raw_t *caller = s_exit_with_answers_owed(b, CALLS, 1, &got);
    int st = h_wait_exit(b, 20000); /* no second signal: that would end it at once */
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "broker exit status %d\n%s", st, h_log(b));
    while (s_read_gone(caller, 2000, &got))
        ;
    cr_assert_eq(got, CALLS, "%d of %d calls answered gone", got, CALLS);
    s_raw_close(&caller);
    s_context_end();
}

/* A second signal ends the broker at once: the answers still owed are freed with it (in
 * the sanitizer build: nothing leaks). */
Test(abuse, gone_answers_still_owed_are_freed_by_a_second_signal)
{
    proc_t *b = h_broker(NULL);
    int got = 0;
    raw_t *caller = s_exit_with_answers_owed(b, 30000, 2, &got);
    int st = h_wait_exit(b, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "broker exit status %d\n%s", st, h_log(b));
    s_raw_close(&caller);
    s_context_end();
}

/* ---- An event flood ------------------------------------------------------------------- */

typedef struct {
    int count, partial;
} flood_notes_t;

static void s_flood_notice(lc_client_t *self, int rc, const char *target, json_t *info, void *arg)
{
    (void)self;
    (void)target;
    flood_notes_t *n = arg;
    n->count++;
    if (rc == LC_EQUEUEFULL && json_array_size(json_object_get(info, "dropped")) == 1)
        n->partial++;
}

/* A named tool client "flooder" that emits n events "flood" {i} without waiting; its
 * notices (refusals, losses) are counted in *notes. */
static lc_client_t *s_flood(int n, flood_notes_t *notes)
{
    lc_client_t *flooder = lc_client_new("flooder", h_bus);
    cr_assert(flooder);
    lc_client_set_lifecycle(flooder, false);
    cr_assert_eq(lc_connect(flooder, 5000), 0);
    lc_on_notice(flooder, s_flood_notice, notes);
    for (int i = 0; i < n; i++)
        cr_assert_eq(lc_emit(flooder, "flood", json_pack("{s:i}", "i", i), 0), 0);
    return flooder;
}

/* A module floods an event whose one subscriber is stuck: the subscriber's backlog bound
 * caps what the broker keeps, each lost copy is counted and told to the flooder, and the
 * rest of the bus goes on. */
Test(abuse, an_event_flood_is_bounded_and_others_unaffected)
{
    enum { FLOOD = 2000, BACKLOG = 20 };
    proc_t *b = h_broker("--max-backlog", "20", NULL);
    h_echo_with("slow", "--listen", "flood", "--window", "1", NULL);
    h_echo_with("ok", "--listen", "ok_ping", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "slow.hold", NULL, 0);
    h_wait_module_int(c, "slow", "in_flight", 1, 5000);
    json_int_t events0 = h_stat(c, "events");

    flood_notes_t notes = {0};
    lc_client_t *flooder = s_flood(FLOOD, &notes);
    /* While the flood is being taken in, the others are served. */
    s_others_served(c, "ok", "ok_ping", 10);
    h_dispatch_until(flooder, &notes.count, FLOOD - BACKLOG, 30000, "the flood's notices");

    cr_assert_eq(notes.partial, FLOOD - BACKLOG);
    cr_assert_eq(h_module_int(c, "slow", "backlog"), BACKLOG);
    cr_assert_eq(h_module_int(c, "slow", "dropped"), FLOOD - BACKLOG);
    cr_assert_eq(h_stat(c, "events"), events0 + FLOOD + 10, "every event was accepted once");
    cr_assert_leq(h_stat(c, "queued"), BACKLOG, "what the broker keeps is bounded");
    s_others_served(c, "ok", "ok_ping", 10);

    /* Released, the stuck subscriber works through what it was allowed to keep, in order. */
    s_call_ok(c, "slow.release", NULL, NULL);
    h_wait_module_int(c, "slow", "done", 1 + BACKLOG, 10000);
    json_t *e = h_recorded(c, "slow");
    cr_assert_eq(json_array_size(e), 1 + BACKLOG, "%s", h_dump(e));
    for (int i = 0; i < BACKLOG; i++)
        cr_assert_eq(h_arg(json_array_get(e, (size_t)i + 1), "i"), i, "%s", h_dump(e));
    json_decref(e);
    lc_client_destroy(&flooder);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* A flooder meets its own bound (--max-sent: the tasks and events it sent that may be
 * queued or in flight) before the shared total queue fills: its sends are refused (status
 * 13), counted against it (`sends_refused` in broker.list) and in `queue_full`; everyone
 * else's tasks, events and calls go on. When its items drain it may send again. */
Test(abuse, a_flooder_is_refused_at_its_own_limit_and_others_are_not)
{
    enum { FLOOD = 200, SENT = 10 };
    proc_t *b = h_broker("--max-queue", "30", "--max-sent", "10", NULL);
    h_echo_with("slow", "--listen", "flood", "--window", "1", NULL);
    h_echo_with("ok", "--listen", "ok_ping", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "slow.hold", NULL, 0);
    h_wait_module_int(c, "slow", "in_flight", 1, 5000);
    json_int_t full0 = h_stat(c, "queue_full");

    flood_notes_t notes = {0};
    lc_client_t *flooder = s_flood(FLOOD, &notes);
    h_dispatch_until(flooder, &notes.count, FLOOD - SENT, 30000, "the flood's refusals");
    cr_assert_eq(h_stat(c, "queue_full"), full0 + FLOOD - SENT);
    cr_assert_eq(h_module_int(c, "flooder", "sends_refused"), FLOOD - SENT);
    cr_assert_eq(h_module_int(c, "flooder", "sent_queued"), SENT);
    cr_assert_eq(h_module_int(c, "slow", "backlog"), SENT);

    /* The others: calls, tasks and events, all served while the flooder is held. */
    s_others_served(c, "ok", "ok_ping", 5);
    json_t *res = NULL;
    s_call_ok(c, "ok.echo", json_pack("{s:i}", "k", 1), &res);
    cr_assert_eq(h_int(res, "k"), 1);
    json_decref(res);
    cr_assert_eq(h_module_int(c, "ok", "sends_refused"), 0);

    /* Drained, the flooder may send again. */
    s_call_ok(c, "slow.release", NULL, NULL);
    h_wait_module_int(c, "slow", "done", 1 + SENT, 10000);
    h_wait_module_int(c, "flooder", "sent_queued", 0, 5000);
    json_t *info = NULL;
    int rc = lc_emit_wait(flooder, "flood", json_pack("{s:i}", "i", FLOOD), 0, 5000, &info);
    cr_assert_eq(rc, 0, "after the drain: %s %s", lc_strerror(rc), h_dump(info));
    json_decref(info);
    lc_client_destroy(&flooder);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* The share follows the sender's name, not its registration: a flooder at its share
 * that leaves and registers again (a restart) still finds its items counted, and its
 * sends are refused until they drain. */
Test(abuse, a_flooder_that_registers_again_keeps_its_share)
{
    enum { FLOOD = 50, SENT = 10 };
    proc_t *b = h_broker("--max-queue", "30", "--max-sent", "10", NULL);
    h_echo_with("slow", "--listen", "flood", "--window", "1", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "slow.hold", NULL, 0);
    h_wait_module_int(c, "slow", "in_flight", 1, 5000);

    flood_notes_t notes = {0};
    lc_client_t *flooder = s_flood(FLOOD, &notes);
    h_dispatch_until(flooder, &notes.count, FLOOD - SENT, 30000, "the flood's refusals");
    cr_assert_eq(h_module_int(c, "flooder", "sent_queued"), SENT);

    /* It goes (BYE) and comes back under the same name. */
    lc_client_destroy(&flooder);
    h_wait_module_int(c, "flooder", "sent_queued", -1, 5000);
    for (int round = 0; round < 2; round++) {
        flooder = lc_client_new("flooder", h_bus);
        cr_assert(flooder);
        lc_client_set_lifecycle(flooder, false);
        cr_assert_eq(lc_connect(flooder, 5000), 0);
        cr_assert_eq(h_module_int(c, "flooder", "sent_queued"), SENT,
                     "registration %d: the items of before still count", round + 2);
        json_t *info = NULL;
        int rc = lc_emit_wait(flooder, "flood", json_pack("{s:i}", "i", FLOOD + round), 0, 5000,
                              &info);
        cr_assert_eq(rc, LC_EQUEUEFULL, "an event after registering again: %s %s",
                     lc_strerror(rc), h_dump(info));
        cr_assert(strstr(h_str(info, "message"), "--max-sent"), "%s", h_dump(info));
        json_decref(info);
        rc = lc_enqueue_wait(flooder, "slow.record", NULL, 0, 5000, &info);
        cr_assert_eq(rc, LC_EQUEUEFULL, "a task after registering again: %s %s",
                     lc_strerror(rc), h_dump(info));
        json_decref(info);
        cr_assert_eq(h_module_int(c, "flooder", "sends_refused"), 2);
        if (round == 0) {
            lc_client_destroy(&flooder);
            h_wait_module_int(c, "flooder", "sent_queued", -1, 5000);
        }
    }
    cr_assert_eq(h_module_int(c, "slow", "backlog"), SENT);

    /* Drained, the name's share is free again. */
    s_call_ok(c, "slow.release", NULL, NULL);
    h_wait_module_int(c, "slow", "done", 1 + SENT, 10000);
    h_wait_module_int(c, "flooder", "sent_queued", 0, 5000);
    json_t *info = NULL;
    int rc = lc_emit_wait(flooder, "flood", json_pack("{s:i}", "i", FLOOD + 2), 0, 5000, &info);
    cr_assert_eq(rc, 0, "after the drain: %s %s", lc_strerror(rc), h_dump(info));
    json_decref(info);
    lc_client_destroy(&flooder);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* A sender's share counts an event once however many subscribers hold a copy, and each
 * way a copy leaves gives its part back: here the copies of a subscriber that died and did
 * not come back within the grace time are discarded, while the other subscriber's still
 * count; once those are done the share is free. */
Test(abuse, a_share_counts_an_event_once_until_its_last_copy_goes)
{
    enum { FLOOD = 30, SENT = 10 };
    proc_t *b = h_broker("--max-queue", "100", "--max-sent", "10", "--grace", "300", NULL);
    proc_t *dies = h_echo_with("dies", "--listen", "flood", "--window", "1", NULL);
    h_echo_with("slow", "--listen", "flood", "--window", "1", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "dies.hold", NULL, 0);
    h_enqueue_ok(c, "slow.hold", NULL, 0);
    h_wait_module_int(c, "dies", "in_flight", 1, 5000);
    h_wait_module_int(c, "slow", "in_flight", 1, 5000);

    flood_notes_t notes = {0};
    lc_client_t *flooder = s_flood(FLOOD, &notes);
    h_dispatch_until(flooder, &notes.count, FLOOD - SENT, 30000, "the flood's refusals");
    cr_assert_eq(h_module_int(c, "flooder", "sent_queued"), SENT, "an event counts once");
    cr_assert_eq(h_module_int(c, "dies", "backlog"), SENT);
    cr_assert_eq(h_module_int(c, "slow", "backlog"), SENT);

    /* One subscriber dies; its backlog waits for it 300 ms, then is discarded. */
    h_stop(dies, SIGKILL, 10000);
    h_wait_module_int(c, "dies", "backlog", -1, 10000);
    cr_assert_eq(h_module_int(c, "flooder", "sent_queued"), SENT, "the other copies still count");
    json_t *info = NULL;
    int rc = lc_emit_wait(flooder, "flood", json_pack("{s:i}", "i", FLOOD), 0, 5000, &info);
    cr_assert_eq(rc, LC_EQUEUEFULL, "while copies are queued: %s %s", lc_strerror(rc),
                 h_dump(info));
    json_decref(info);

    /* The other works through its copies: the share is free again. */
    s_call_ok(c, "slow.release", NULL, NULL);
    h_wait_module_int(c, "slow", "done", 1 + SENT, 10000);
    h_wait_module_int(c, "flooder", "sent_queued", 0, 5000);
    info = NULL;
    rc = lc_emit_wait(flooder, "flood", json_pack("{s:i}", "i", FLOOD + 1), 0, 5000, &info);
    cr_assert_eq(rc, 0, "after the last copy: %s %s", lc_strerror(rc), h_dump(info));
    json_decref(info);
    h_wait_module_int(c, "slow", "done", 2 + SENT, 10000);
    h_wait_module_int(c, "flooder", "sent_queued", 0, 5000);
    lc_client_destroy(&flooder);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* Without --max-sent, a module's sends may hold half of the total queue: one flooder
 * cannot fill it for the others. */
Test(abuse, by_default_a_flooder_holds_at_most_half_the_queue)
{
    enum { FLOOD = 100, QUEUE = 30 };
    proc_t *b = h_broker("--max-queue", "30", NULL);
    h_echo_with("slow", "--listen", "flood", "--window", "1", NULL);
    h_echo_with("ok", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "slow.hold", NULL, 0);
    h_wait_module_int(c, "slow", "in_flight", 1, 5000);

    flood_notes_t notes = {0};
    lc_client_t *flooder = s_flood(FLOOD, &notes);
    h_dispatch_until(flooder, &notes.count, FLOOD - QUEUE / 2, 30000, "the flood's refusals");
    cr_assert_eq(h_module_int(c, "flooder", "sent_queued"), QUEUE / 2);
    /* The rest of the queue is everyone else's. */
    for (int i = 0; i < 5; i++)
        h_enqueue_ok(c, "ok.record", NULL, 0);
    s_call_ok(c, "slow.release", NULL, NULL);
    lc_client_destroy(&flooder);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* ---- Silent and garbage connections --------------------------------------------------- */

static int s_unix_connect(void)
{
    cr_assert(!strncmp(h_bus, "ipc://", 6));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(h_bus + 6);
    cr_assert_lt(len, sizeof a.sun_path, "socket path too long: %s", h_bus);
    memcpy(a.sun_path, h_bus + 6, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %m");
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect %s: %m", a.sun_path);
    return fd;
}

/* Peers that connect and say nothing, send bytes that are not ZMTP, or stop in the middle
 * of the greeting change nothing for the others; when they close, the broker's
 * descriptors are back to what they were. (A DEALER cannot send half a message: libzmq
 * sends a multipart message only when its last frame is given.) */
Test(abuse, silent_and_garbage_connections_change_nothing)
{
    proc_t *b = h_broker(NULL);
    h_echo_with("ok", "--listen", "ok_ping", NULL);
    lc_client_t *c = h_client();
    s_call_ok(c, "ok.echo", NULL, NULL);
    int fds0 = s_fd_count(b->pid);
    json_int_t regs0 = h_stat(c, "registrations"), mods0 = h_stat(c, "modules");

    raw_t *silent = s_raw_open();
    int quiet = s_unix_connect();
    int junk = s_unix_connect();
    static const char garbage[] = "GET / HTTP/1.1\r\nHost: bus\r\n\r\n\x00\xff\xfe\x01garbage";
    cr_assert_eq(write(junk, garbage, sizeof garbage), (ssize_t)sizeof garbage);
    int half = s_unix_connect();
    /* The first 11 bytes of a ZMTP 3 greeting (signature and major version), then nothing. */
    static const unsigned char greeting[] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3};
    cr_assert_eq(write(half, greeting, sizeof greeting), (ssize_t)sizeof greeting);
    int flood = s_unix_connect();
    char noise[65536];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (char)(i * 7919u);
    for (int i = 0; i < 16; i++)
        if (write(flood, noise, sizeof noise) < 0)
            break; /* the broker closed it: that is allowed */

    s_others_served(c, "ok", "ok_ping", 20);
    cr_assert_eq(h_stat(c, "registrations"), regs0);
    cr_assert_eq(h_stat(c, "modules"), mods0);
    cr_assert_eq(h_wait_exit(b, 0), -1, "the broker exited\n%s", h_log(b));

    s_raw_close(&silent);
    s_context_end();
    close(quiet);
    close(junk);
    close(half);
    close(flood);
    s_wait_fds_at_most(b->pid, fds0, 10000, "after the peers closed");
    s_others_served(c, "ok", NULL, 5);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* ---- A thousand connections at once --------------------------------------------------- */

/* 1,000 raw connections each register anonymously and call ok.echo, all at once: every
 * one is welcomed and answered, and after their BYE and close the broker's descriptors
 * return to where they were. On ipc the broker holds two descriptors per registered
 * connection (the socket and the pidfd of its process). */
Test(abuse, a_thousand_connections_at_once)
{
    enum { N = 1000 };
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 8192) {
        /* Our 1,000 sockets need about 2,000 descriptors, the broker (started after this,
         * so it inherits it) about 2,000 more. */
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "setrlimit: %m");
    }
    cr_assert_geq(rl.rlim_cur, 4 * N + 200, "RLIMIT_NOFILE %lu is too low for this test",
                  (unsigned long)rl.rlim_cur);
    proc_t *b = h_broker(NULL);
    h_echo_with("ok", NULL);
    lc_client_t *c = h_client();
    s_call_ok(c, "ok.echo", NULL, NULL);
    int fds0 = s_fd_count(b->pid);
    json_int_t regs0 = h_stat(c, "registrations");

    raw_t **peers = calloc(N, sizeof *peers);
    uint32_t *call_seq = calloc(N, sizeof *call_seq);
    int *got = calloc(N, sizeof *got); /* bit 1: WELCOME, bit 2: the answer */
    zmq_pollitem_t *items = calloc(N, sizeof *items);
    cr_assert(peers && call_seq && got && items);
    for (int i = 0; i < N; i++) {
        peers[i] = s_raw_open();
        s_raw_hello(peers[i], "", "");
        char args[32];
        snprintf(args, sizeof args, "{\"i\":%d}", i);
        call_seq[i] = s_raw_send(peers[i], LC_MSG_CALL, 0, "ok.echo", args, strlen(args));
        items[i] = (zmq_pollitem_t){peers[i]->sock, 0, ZMQ_POLLIN, 0};
    }
    int complete = 0;
    int64_t end = lc_mono_ms() + 60000;
    while (complete < N) {
        int64_t left = end - lc_mono_ms();
        cr_assert(left > 0, "only %d of %d connections were welcomed and answered", complete, N);
        if (zmq_poll(items, N, (long)left) <= 0)
            continue;
        for (int i = 0; i < N; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            rmsg_t m;
            while (s_raw_recv(peers[i], &m, 0)) {
                int before = got[i];
                if (m.h.type == LC_MSG_WELCOME)
                    got[i] |= 1;
                else if (m.h.type == LC_MSG_PONG && m.h.seq == 0)
                    continue; /* the broker's probe of a connection silent for 5 s */
                else if (m.h.type == LC_MSG_REPLY && m.h.seq == call_seq[i]) {
                    json_t *p = json_loads(m.payload, 0, NULL);
                    cr_assert_eq(json_integer_value(json_object_get(p, "i")), i, "%s", m.payload);
                    json_decref(p);
                    got[i] |= 2;
                } else
                    cr_assert_fail("connection %d: unexpected type %d status %u: %s", i, m.h.type,
                                   m.h.status, m.payload);
                if (before != 3 && got[i] == 3)
                    complete++;
            }
        }
    }
    cr_assert_eq(h_stat(c, "registrations"), regs0 + N);
    printf("abuse: %d connections registered and answered; the broker had %d descriptors "
           "open before, %d with them\n",
           N, fds0, s_fd_count(b->pid));
    for (int i = 0; i < N; i++) {
        s_raw_send(peers[i], LC_MSG_BYE, 0, "", "", 0);
        s_raw_close(&peers[i]);
    }
    s_context_end();
    free(peers);
    free(call_seq);
    free(got);
    free(items);
    s_wait_fds_at_most(b->pid, fds0, 30000, "after 1,000 connections closed");
    json_t *mods = s_list(c);
    cr_assert_eq(json_array_size(mods), 2, "left registered: %s", h_dump(mods));
    json_decref(mods);
    s_call_ok(c, "ok.echo", NULL, NULL);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* ---- A handler that runs forever ----------------------------------------------------- */

/* A call holds the module's loop (echo `block`): later callers get their own deadline
 * (LC_ETIMEDOUT), which the broker counts in `timeouts` and forgets; the module's tasks wait
 * and are accounted (its window in flight, the rest in its backlog); others are served; and
 * when the stuck module is killed its caller hears "gone" at once. (tests/test_queue.c's
 * stuck_*_handler_does_not_stall_others cover events and a stuck task.) */
Test(abuse, a_handler_that_runs_forever)
{
    proc_t *b = h_broker(NULL);
    proc_t *stuck = h_echo_with("stuck", "--window", "4", NULL);
    h_echo_with("ok", "--listen", "ok_ping", NULL);
    lc_client_t *c = h_client();
    h_outcome_t first = {0};
    int rc = lc_call_async(c, "stuck.block", json_pack("{s:i}", "ms", 600000), 600000, h_outcome,
                           &first);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    h_wait_module_int(c, "stuck", "calls_in", 1, 5000);
    json_int_t timeouts0 = h_stat(c, "timeouts");
    for (int i = 0; i < 3; i++) {
        json_t *res = NULL;
        rc = lc_call(c, "stuck.echo", NULL, &res, 200);
        cr_assert_eq(rc, LC_ETIMEDOUT, "call %d: %s", i, lc_strerror(rc));
        json_decref(res);
    }
    for (int i = 0; i < 10; i++)
        h_enqueue_ok(c, "stuck.record", json_pack("{s:i}", "task", i), 0);
    cr_assert_eq(h_module_int(c, "stuck", "in_flight"), 4);
    cr_assert_eq(h_module_int(c, "stuck", "backlog"), 6);
    /* The broker's deadlines are the callers': it forgets the three calls. */
    int64_t end = lc_mono_ms() + 5000;
    while (h_stat(c, "timeouts") < timeouts0 + 3)
        cr_assert(lc_mono_ms() < end, "the broker counted %lld timeouts, not 3",
                  (long long)(h_stat(c, "timeouts") - timeouts0));
    cr_assert_eq(h_stat(c, "calls_open"), 1, "only the blocked call is open");
    s_others_served(c, "ok", "ok_ping", 10);
    cr_assert_eq(first.calls, 0);

    h_stop(stuck, SIGKILL, 5000);
    h_dispatch_until(c, &first.calls, 1, 5000, "the blocked call's end");
    cr_assert_eq(first.rc, LC_EGONE, "%s", lc_strerror(first.rc));
    cr_assert_eq(h_stat(c, "calls_open"), 0);
    s_others_served(c, "ok", NULL, 3);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* ---- Names at and beyond the limits ----------------------------------------------------- */

static char *s_repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* Module, method and event names of 64 bytes work everywhere; 65 bytes, bytes that are not
 * UTF-8, dots and slashes are refused with bad_name (11, LC_EINVAL); an empty name
 * registers an anonymous client. */
Test(abuse, names_at_and_beyond_the_limits)
{
    proc_t *b = h_broker(NULL);
    char *n64 = s_repeat('a', 64), *n65 = s_repeat('a', 65);
    char *e64 = s_repeat('e', 64), *e65 = s_repeat('e', 65);
    h_echo_with(n64, "--listen", e64, NULL);
    lc_client_t *c = h_client();

    /* Registration, by hand. */
    raw_t *r = s_raw_open();
    rmsg_t m;
    uint32_t seq = s_raw_hello(r, n65, "");
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "HELLO with 65 bytes");
    static const char *const bad[] = {"caf\xc3\xa9", "a\xff", "a.b", "a/b",
                                      "../bus",      "-a",    "1a",  "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        seq = s_raw_hello(r, bad[i], "");
        s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, bad[i]);
    }
    seq = s_raw_hello(r, "", "");
    s_raw_expect(r, LC_MSG_WELCOME, seq, &m, "empty name");
    cr_assert(!strncmp(m.address, "_anon", 5), "named %s", m.address);
    /* Now registered: calls and tasks to bad targets, events with bad names. */
    char target[200];
    snprintf(target, sizeof target, "%s.echo", n65);
    seq = s_raw_send(r, LC_MSG_CALL, 0, target, "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "CALL to a 65-byte module");
    seq = s_raw_send(r, LC_MSG_CALL, 0, "a\xff.echo", "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "CALL to a name that is not UTF-8");
    seq = s_raw_send(r, LC_MSG_CALL, 0, "a/b.echo", "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "CALL with a slash");
    seq = s_raw_send(r, LC_MSG_CALL, 0, ".echo", "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "CALL with an empty module");
    seq = s_raw_send(r, LC_MSG_TASK, 0, "a\xff.record", "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "TASK to a name that is not UTF-8");
    seq = s_raw_send(r, LC_MSG_EVENT, 0, e65, "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "EVENT of 65 bytes");
    seq = s_raw_send(r, LC_MSG_EVENT, 0, "e\xff", "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "EVENT not UTF-8");
    seq = s_raw_send(r, LC_MSG_EVENT, 0, "", "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "EVENT with an empty name");
    seq = s_raw_send(r, LC_MSG_EVENT, 0, "a.b", "", 0);
    s_raw_expect_error(r, seq, LC_STATUS_BAD_NAME, "EVENT with a dot");
    s_raw_send(r, LC_MSG_BYE, 0, "", "", 0);
    s_raw_close(&r);

    /* Method names and subscriptions in a HELLO: 65 bytes are refused, 64 work. */
    char *m64 = s_repeat('m', 64), *m65 = s_repeat('m', 65);
    char extra[512];
    raw_t *mod = s_raw_open();
    snprintf(extra, sizeof extra, "\"lifecycle\":false,\"methods\":[{\"name\":\"%s\"}]", m65);
    seq = s_raw_hello(mod, "meth", extra);
    s_raw_expect_error(mod, seq, LC_STATUS_BAD_NAME, "HELLO with a method of 65 bytes");
    snprintf(extra, sizeof extra, "\"lifecycle\":false,\"events\":[\"%s\"]", e65);
    seq = s_raw_hello(mod, "meth", extra);
    s_raw_expect_error(mod, seq, LC_STATUS_BAD_NAME, "HELLO with a subscription of 65 bytes");
    snprintf(extra, sizeof extra, "\"lifecycle\":false,\"methods\":[{\"name\":\"%s\"}]", m64);
    seq = s_raw_hello(mod, "meth", extra);
    s_raw_expect(mod, LC_MSG_WELCOME, seq, &m, "HELLO with a method of 64 bytes");
    h_outcome_t o = {0};
    snprintf(target, sizeof target, "meth.%s", m64);
    cr_assert_eq(lc_call_async(c, target, NULL, 5000, h_outcome, &o), 0);
    cr_assert(s_raw_recv(mod, &m, 5000), "the call of a 64-byte method did not arrive");
    cr_assert_eq(m.h.type, LC_MSG_CALL);
    cr_assert_str_eq(m.address, target); /* a CALL keeps its address */
    uint8_t hb[LC_HDR_SIZE];
    lc_hdr_t rh = {.type = LC_MSG_REPLY,
                   .seq = ++mod->seq,
                   .parent = m.h.id,
                   .tx = m.h.tx,
                   .priority = m.h.priority};
    lc_hdr_encode(&rh, hb);
    const void *data[4] = {hb, "", "", "7"};
    size_t sizes[4] = {sizeof hb, 0, 0, 1};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(zmq_send(mod->sock, data[i], sizes[i], i < 3 ? ZMQ_SNDMORE : 0),
                     (int)sizes[i]);
    h_dispatch_until(c, &o.calls, 1, 5000, "the answer of a 64-byte method");
    cr_assert_eq(o.rc, 0, "%s", lc_strerror(o.rc));
    s_raw_send(mod, LC_MSG_BYE, 0, "", "", 0);
    s_raw_close(&mod);
    free(m64);
    s_context_end();

    /* Through liblc: 64 bytes work for calls, tasks and events... */
    snprintf(target, sizeof target, "%s.echo", n64);
    json_t *res = NULL;
    s_call_ok(c, target, json_pack("{s:s}", "k", "v"), &res);
    cr_assert_str_eq(h_str(res, "k"), "v");
    json_decref(res);
    snprintf(target, sizeof target, "%s.record", n64);
    h_enqueue_ok(c, target, json_pack("{s:i}", "task", 1), 0);
    json_t *info = NULL;
    int rc = lc_emit_wait(c, e64, json_pack("{s:i}", "event", 1), 0, 5000, &info);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(h_int(info, "subscribers"), 1, "%s", h_dump(info));
    json_decref(info);
    json_decref(h_wait_recorded(c, n64, 2, 5000));
    /* ...65 bytes and the rest are refused with LC_EINVAL, before or by the broker. */
    json_int_t calls_in0 = h_module_int(c, n64, "calls_in");
    cr_assert_null(lc_client_new(n65, h_bus));
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(lc_client_new("a\xff", h_bus));
    cr_assert_null(lc_client_new("a.b", h_bus));
    cr_assert_null(lc_client_new("", h_bus));
    snprintf(target, sizeof target, "%s.echo", n65);
    rc = lc_call(c, target, NULL, &res, 5000);
    cr_assert_eq(rc, LC_EINVAL, "call to 65 bytes: %s", lc_strerror(rc));
    json_decref(res);
    snprintf(target, sizeof target, "%s.%s", n64, m65);
    rc = lc_call(c, target, NULL, &res, 5000);
    cr_assert_eq(rc, LC_EINVAL, "method of 65 bytes: %s", lc_strerror(rc));
    json_decref(res);
    snprintf(target, sizeof target, "%s.record", n65);
    rc = lc_enqueue_wait(c, target, NULL, 0, 5000, &info);
    cr_assert_eq(rc, LC_EINVAL, "task to 65 bytes: %s", lc_strerror(rc));
    json_decref(info);
    rc = lc_emit_wait(c, e65, NULL, 0, 5000, &info);
    cr_assert_eq(rc, LC_EINVAL, "event of 65 bytes: %s", lc_strerror(rc));
    json_decref(info);
    rc = lc_emit_wait(c, "Upper", NULL, 0, 5000, &info);
    cr_assert_eq(rc, LC_EINVAL, "event with capitals: %s", lc_strerror(rc));
    json_decref(info);
    json_int_t calls_in = h_module_int(c, n64, "calls_in");
    cr_assert_eq(calls_in, calls_in0, "none of them reached the module: %lld", (long long)calls_in);
    free(m65);
    free(n64);
    free(n65);
    free(e64);
    free(e65);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* ---- Payloads that are not JSON ------------------------------------------------------- */

/* The broker moves payloads unchanged and does not parse them (docs/protocol.md, Frames):
 * a CALL with garbage reaches the module, whose liblc answers ERROR status 1 code -1; a
 * TASK or EVENT with garbage is accepted and delivered, and the module reports it failed.
 * Only what the broker reads itself (calls of module "broker", HELLO) is refused as
 * malformed. */
Test(abuse, payloads_that_are_not_json)
{
    proc_t *b = h_broker(NULL);
    h_echo_with("ok", "--listen", "ok_ping", NULL);
    lc_client_t *c = h_client();
    json_int_t malformed0 = h_stat(c, "malformed");
    static const char junk[] = "\x00\xff not json {{{";

    raw_t *r = s_raw_open();
    rmsg_t m;
    /* A HELLO whose payload is not JSON is refused. */
    uint32_t seq = s_raw_send(r, LC_MSG_HELLO, 0, "", junk, sizeof junk - 1);
    s_raw_expect_error(r, seq, LC_STATUS_MALFORMED, "HELLO with garbage");
    cr_assert_eq(h_stat(c, "malformed"), malformed0 + 1);
    seq = s_raw_hello(r, "", "");
    s_raw_expect(r, LC_MSG_WELCOME, seq, &m, "HELLO");

    seq = s_raw_send(r, LC_MSG_CALL, 0, "ok.echo", junk, sizeof junk - 1);
    s_raw_expect_error(r, seq, LC_STATUS_HANDLER, "CALL with garbage");
    cr_assert_eq(h_module_int(c, "ok", "calls_in"), 1, "the broker forwarded it");

    seq = s_raw_send(r, LC_MSG_CALL, 0, "broker.ping", junk, sizeof junk - 1);
    s_raw_expect_error(r, seq, LC_STATUS_MALFORMED, "broker.ping with garbage");

    json_int_t failed0 = h_module_int(c, "ok", "failed");
    seq = s_raw_send(r, LC_MSG_TASK, LC_FLAG_CONFIRM, "ok.record", junk, sizeof junk - 1);
    s_raw_expect(r, LC_MSG_NOTICE, seq, &m, "TASK with garbage");
    cr_assert_eq(m.h.status, 0, "TASK refused: %s", m.payload);
    seq = s_raw_send(r, LC_MSG_EVENT, LC_FLAG_CONFIRM, "ok_ping", junk, sizeof junk - 1);
    s_raw_expect(r, LC_MSG_NOTICE, seq, &m, "EVENT with garbage");
    cr_assert_eq(m.h.status, 0, "EVENT refused: %s", m.payload);
    h_wait_module_int(c, "ok", "failed", failed0 + 2, 5000);
    /* A JSON value that is not an object is refused the same way by the callee. */
    seq = s_raw_send(r, LC_MSG_CALL, 0, "ok.echo", "[1,2]", 5);
    s_raw_expect_error(r, seq, LC_STATUS_HANDLER, "CALL with an array");
    s_raw_send(r, LC_MSG_BYE, 0, "", "", 0);
    s_raw_close(&r);
    s_context_end();

    s_others_served(c, "ok", "ok_ping", 5);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}

/* ---- A broker restart in the middle of it all ------------------------------------------ */

/* Several modules, one holding a task, one with a call blocked in its handler for a while,
 * and a silent raw peer: the broker is killed and started again. Each module registers
 * again by itself; the time from the new broker's start until broker.list shows them is
 * printed (not asserted: the deadline is generous). */
Test(abuse, broker_restart_every_module_registers_again)
{
    enum { PLAIN = 6 };
    proc_t *b = h_broker(NULL);
    char names[PLAIN][16];
    for (int i = 0; i < PLAIN; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        h_echo_with(names[i], "--listen", "restart_ping", NULL);
    }
    h_echo_with("holder", "--window", "1", NULL);
    h_echo_with("blocked", NULL);
    lc_client_t *c = h_client();
    h_enqueue_ok(c, "holder.hold", NULL, 0);
    h_wait_module_int(c, "holder", "in_flight", 1, 5000);
    h_enqueue_ok(c, "blocked.block", json_pack("{s:i}", "ms", 1500), 0);
    h_wait_module_int(c, "blocked", "in_flight", 1, 5000);
    raw_t *silent = s_raw_open();
    lc_client_destroy(&c);

    int st = h_stop(b, SIGKILL, 10000);
    cr_assert(WIFSIGNALED(st), "broker status %d\n%s", st, h_log(b));
    int64_t t0 = lc_mono_ms();
    h_broker(NULL);
    c = h_client();
    int64_t t_plain = -1, t_all = -1;
    int64_t end = t0 + 20000;
    while (t_all < 0) {
        cr_assert(lc_mono_ms() < end, "not every module registered again within 20 s");
        int n = 0;
        bool holder = false, blocked = false;
        json_t *mods = s_list(c);
        size_t i;
        json_t *mod;
        json_array_foreach(mods, i, mod)
        {
            const char *name = h_str(mod, "name");
            if (name[0] == 'm' && strlen(name) == 2)
                n++;
            holder |= !strcmp(name, "holder");
            blocked |= !strcmp(name, "blocked");
        }
        json_decref(mods);
        int64_t now = lc_mono_ms();
        if (t_plain < 0 && n == PLAIN && holder)
            t_plain = now - t0;
        if (t_plain >= 0 && blocked)
            t_all = now - t0;
        if (t_all < 0)
            usleep(5000); /* polling broker.list, with the deadline above */
    }
    printf("abuse: after a broker restart, %d idle modules and one holding a task were "
           "registered again %lld ms after the new broker was started; the module blocked "
           "in a handler (1500 ms) %lld ms after\n",
           PLAIN, (long long)t_plain, (long long)t_all);
    /* They work: calls, events to all subscribers. */
    for (int i = 0; i < PLAIN; i++) {
        char target[128];
        snprintf(target, sizeof target, "%s.echo", names[i]);
        s_call_ok(c, target, NULL, NULL);
    }
    json_t *info = NULL;
    int rc = lc_emit_wait(c, "restart_ping", NULL, 0, 5000, &info);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_eq(h_int(info, "subscribers"), PLAIN, "%s", h_dump(info));
    json_decref(info);
    s_call_ok(c, "blocked.echo", NULL, NULL);
    s_call_ok(c, "holder.echo", NULL, NULL);
    s_raw_close(&silent);
    s_context_end();
    lc_client_destroy(&c);
}

/* ---- A connection closed without BYE by a process that lives on ------------------------ */

/* On ipc the broker learns that a module went away from its pidfd (the process ended) or
 * from a BYE; a connection closed without BYE by a process that lives on is found by the
 * broker's probe of connections silent for PROBE_MS (5 s): the probe is refused for a closed
 * connection and the module is removed as disconnected, its socket closed. */
Test(abuse, closed_without_bye_is_forgotten, .timeout = 60)
{
    enum { N = 20 };
    proc_t *b = h_broker(NULL);
    lc_client_t *c = h_client();
    int fds0 = s_fd_count(b->pid);
    json_int_t mods0 = h_stat(c, "modules");
    raw_t *peers[N];
    for (int i = 0; i < N; i++) {
        peers[i] = s_raw_open();
        rmsg_t m;
        uint32_t seq = s_raw_hello(peers[i], "", "");
        s_raw_expect(peers[i], LC_MSG_WELCOME, seq, &m, "HELLO");
    }
    cr_assert_eq(h_stat(c, "modules"), mods0 + N);
    for (int i = 0; i < N; i++)
        s_raw_close(&peers[i]); /* no BYE */
    s_context_end();
    /* Silent for 5 s, probed at the next sweep (every 5 s): gone within about 10 s. */
    int64_t end = lc_mono_ms() + 25000;
    json_int_t mods;
    while ((mods = h_stat(c, "modules")) != mods0) {
        cr_assert(lc_mono_ms() < end,
                  "%lld connections closed without BYE are still registered after 25 s",
                  (long long)(mods - mods0));
        usleep(10000); /* polling a condition, with the deadline above */
    }
    s_wait_fds_at_most(b->pid, fds0, 10000, "after the connections closed without BYE");
    lc_client_destroy(&c);
}

/* A broker started with the usual soft limit of descriptors (here lowered to 64) takes
 * what the hard limit allows: before it did, libzmq aborted the broker ("Too many open
 * files (src/ipc_listener.cpp:325)") as soon as connections exhausted the soft limit, a
 * crash any peer allowed on the socket could cause by opening connections. */
Test(abuse, a_low_soft_fd_limit_does_not_crash_the_broker)
{
    enum { N = 300 };
    struct rlimit rl, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_geq(rl.rlim_max, 4 * N + 200, "the hard limit of descriptors (%lu) is too low",
                  (unsigned long)rl.rlim_max);
    low = rl;
    low.rlim_cur = 64;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0, "setrlimit: %m");
    proc_t *b = h_broker(NULL); /* inherits the low soft limit */
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "setrlimit: %m");
    h_echo_with("ok", NULL);
    lc_client_t *c = h_client();
    int fds0 = s_fd_count(b->pid);

    raw_t *peers[N];
    uint32_t seqs[N];
    for (int i = 0; i < N; i++) {
        peers[i] = s_raw_open();
        rmsg_t m;
        uint32_t seq = s_raw_hello(peers[i], "", "");
        s_raw_expect(peers[i], LC_MSG_WELCOME, seq, &m, "HELLO");
        seqs[i] = s_raw_send(peers[i], LC_MSG_CALL, 0, "ok.echo", "{\"n\":1}", 7);
    }
    for (int i = 0; i < N; i++) {
        rmsg_t m;
        s_raw_expect(peers[i], LC_MSG_REPLY, seqs[i], &m, "ok.echo");
    }
    cr_assert_gt(s_fd_count(b->pid), 2 * N, "the broker holds %d descriptors", s_fd_count(b->pid));
    for (int i = 0; i < N; i++) {
        s_raw_send(peers[i], LC_MSG_BYE, 0, "", "", 0);
        s_raw_close(&peers[i]);
    }
    s_context_end();
    s_wait_fds_at_most(b->pid, fds0, 30000, "after the connections closed");
    s_call_ok(c, "ok.echo", NULL, NULL);
    lc_client_destroy(&c);
    s_broker_exits_cleanly(b);
}
