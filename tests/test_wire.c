/* The wire format: raw ZeroMQ peers that break the protocol against a real broker, and
 * unit tests of the header codec, name rules and the private id map and heap. */
#include "harness.h"
#include "heap.h"
#include "idmap.h"
#include "wire.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

TestSuite(wire, .init = h_setup, .fini = h_teardown, .timeout = 60);
TestSuite(wire_unit, .timeout = 60);

/* ---- Raw peers -------------------------------------------------------------------------- */

typedef struct {
    void *ctx;
    void *sock;
} raw_t;

static raw_t s_raw_open(void)
{
    raw_t r;
    r.ctx = zmq_ctx_new();
    cr_assert(r.ctx);
    r.sock = zmq_socket(r.ctx, ZMQ_DEALER);
    cr_assert(r.sock);
    int zero = 0;
    zmq_setsockopt(r.sock, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(r.sock, h_bus), 0, "zmq_connect: %s", zmq_strerror(errno));
    return r;
}

static void s_raw_close(raw_t *r)
{
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
}

/* Sends the frames given as (data, size) pairs. */
static void s_raw_send(raw_t *r, int nframes, const void *const *data, const size_t *sizes)
{
    for (int i = 0; i < nframes; i++) {
        int rc = zmq_send(r->sock, data[i], sizes[i], i + 1 < nframes ? ZMQ_SNDMORE : 0);
        cr_assert_eq(rc, (int)sizes[i], "zmq_send frame %d: %s", i, zmq_strerror(errno));
    }
}

/* Sends a valid-looking message: header, address, empty source, payload. */
static void s_raw_send_msg(raw_t *r, const uint8_t *hdr, size_t hlen, const char *address,
                           const char *payload, size_t plen)
{
    const void *data[4] = {hdr, address, "", payload};
    size_t sizes[4] = {hlen, strlen(address), 0, plen};
    s_raw_send(r, 4, data, sizes);
}

typedef struct {
    uint8_t hdr[LC_HDR_SIZE];
    size_t hlen;
    int nframes;
    char payload[1024];
} reply_t;

/* Receives one message within timeout_ms. Returns false if none came. */
static bool s_raw_recv(raw_t *r, reply_t *out, int timeout_ms)
{
    memset(out, 0, sizeof *out);
    zmq_pollitem_t item = {r->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return false;
    int more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        cr_assert_geq(zmq_msg_recv(&f, r->sock, 0), 0);
        size_t n = zmq_msg_size(&f);
        if (out->nframes == 0) {
            out->hlen = n;
            memcpy(out->hdr, zmq_msg_data(&f), n < LC_HDR_SIZE ? n : LC_HDR_SIZE);
        } else if (out->nframes == LC_FRAME_PAYLOAD) {
            size_t k = n < sizeof out->payload - 1 ? n : sizeof out->payload - 1;
            memcpy(out->payload, zmq_msg_data(&f), k);
        }
        out->nframes++;
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    return true;
}

/* Expects an ERROR with the given status, answering seq. */
static void s_expect_error(raw_t *r, int status, uint32_t seq, const char *what)
{
    reply_t rep;
    cr_assert(s_raw_recv(r, &rep, 5000), "%s: no answer from the broker", what);
    cr_assert_eq(rep.nframes, LC_FRAMES, "%s: answer has %d frames", what, rep.nframes);
    cr_assert_eq(rep.hlen, LC_HDR_SIZE, "%s: header of %zu bytes", what, rep.hlen);
    lc_hdr_t h;
    cr_assert_eq(lc_hdr_decode(rep.hdr, rep.hlen, &h), LC_STATUS_OK, "%s: bad header", what);
    cr_assert_eq(h.type, LC_MSG_ERROR, "%s: answer of type %d", what, h.type);
    uint32_t got = lc_hdr_get_u32(rep.hdr, LC_OFF_STATUS);
    cr_assert_eq(got, (uint32_t)status, "%s: status %u (%s), expected %d (%s); %s", what, got,
                 lc_status_name((int)got), status, lc_status_name(status), rep.payload);
    cr_assert_eq(h.seq, seq, "%s: answers seq %u, not %u", what, h.seq, seq);
    json_t *p = json_loads(rep.payload, 0, NULL);
    cr_assert(json_is_string(json_object_get(p, "message")), "%s: payload %s", what, rep.payload);
    json_decref(p);
}

static void s_header(uint8_t *buf, int type, uint32_t seq)
{
    lc_hdr_t h = {.type = (uint8_t)type, .seq = seq, .timeout_ms = 1000};
    lc_hdr_encode(&h, buf);
}

static json_int_t s_stat(lc_client_t *c, const char *key)
{
    json_t *res = NULL;
    int rc = lc_call(c, "broker.stats", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "broker.stats: %s", lc_strerror(rc));
    json_t *v = json_object_get(res, key);
    cr_assert(json_is_integer(v), "broker.stats has no \"%s\"", key);
    json_int_t n = json_integer_value(v);
    json_decref(res);
    return n;
}

static void s_echo_ok(lc_client_t *c)
{
    json_t *res = NULL;
    int rc = lc_call(c, "echo.echo", json_pack("{s:i}", "k", 7), &res, 5000);
    cr_assert_eq(rc, 0, "echo.echo: %s", lc_strerror(rc));
    cr_assert_eq(json_integer_value(json_object_get(res, "k")), 7);
    json_decref(res);
}

Test(wire, wrong_signature_is_malformed)
{
    h_broker(NULL);
    raw_t r = s_raw_open();
    uint8_t hb[LC_HDR_SIZE];
    s_header(hb, LC_MSG_HELLO, 5);
    hb[0] = 'X';
    s_raw_send_msg(&r, hb, sizeof hb, "", "{}", 2);
    s_expect_error(&r, LC_STATUS_MALFORMED, 0, "wrong signature");
    s_raw_close(&r);
}

Test(wire, other_protocol_version_is_told_so)
{
    h_broker(NULL);
    raw_t r = s_raw_open();
    uint8_t hb[LC_HDR_SIZE];
    s_header(hb, LC_MSG_HELLO, 1);
    hb[LC_OFF_VERSION] = 2;
    s_raw_send_msg(&r, hb, sizeof hb, "", "{\"token\":\"0123456789abcdef\"}", 27);
    s_expect_error(&r, LC_STATUS_VERSION, 0, "version 2");
    /* A future version may have another header size: still told. */
    uint8_t longer[LC_HDR_SIZE + 8] = {0};
    memcpy(longer, hb, sizeof hb);
    s_raw_send_msg(&r, longer, sizeof longer, "", "", 0);
    s_expect_error(&r, LC_STATUS_VERSION, 0, "version 2, 64-byte header");
    s_raw_close(&r);
}

Test(wire, missing_frames_are_malformed)
{
    h_broker(NULL);
    raw_t r = s_raw_open();
    uint8_t hb[LC_HDR_SIZE];
    s_header(hb, LC_MSG_PING, 77);
    const void *data[1] = {hb};
    size_t sizes[1] = {sizeof hb};
    s_raw_send(&r, 1, data, sizes);
    s_expect_error(&r, LC_STATUS_MALFORMED, 77, "header only");
    /* Header, address and source, no payload. */
    const void *data3[3] = {hb, "echo.echo", ""};
    size_t sizes3[3] = {sizeof hb, 9, 0};
    s_raw_send(&r, 3, data3, sizes3);
    s_expect_error(&r, LC_STATUS_MALFORMED, 77, "three frames");
    /* Too many frames. */
    const void *data7[7] = {hb, "echo.echo", "", "{}", "x", "y", "z"};
    size_t sizes7[7] = {sizeof hb, 9, 0, 2, 1, 1, 1};
    s_raw_send(&r, 7, data7, sizes7);
    s_expect_error(&r, LC_STATUS_MALFORMED, 77, "seven frames");
    s_raw_close(&r);
}

Test(wire, garbage_frames_are_malformed)
{
    h_broker(NULL);
    raw_t r = s_raw_open();
    unsigned seed = 12345;
    for (int round = 0; round < 20; round++) {
        uint8_t g[4][100];
        size_t sizes[4];
        const void *data[4];
        int nframes = 1 + (int)(rand_r(&seed) % 4);
        for (int i = 0; i < nframes; i++) {
            sizes[i] = (size_t)(rand_r(&seed) % 100);
            for (size_t k = 0; k < sizes[i]; k++)
                g[i][k] = (uint8_t)rand_r(&seed);
            data[i] = g[i];
        }
        if (sizes[0] > 0 && g[0][0] == 'L')
            g[0][0] = 'l'; /* never the signature: then it is malformed, not a version */
        s_raw_send(&r, nframes, data, sizes);
        char what[64];
        snprintf(what, sizeof what, "garbage round %d (%d frames)", round, nframes);
        s_expect_error(&r, LC_STATUS_MALFORMED, 0, what);
    }
    /* A valid header of an unknown type, and one with reserved bits set. */
    uint8_t hb[LC_HDR_SIZE];
    s_header(hb, LC_MSG_CALL, 9);
    hb[LC_OFF_TYPE] = 200;
    s_raw_send_msg(&r, hb, sizeof hb, "echo.echo", "{}", 2);
    s_expect_error(&r, LC_STATUS_MALFORMED, 0, "unknown type");
    s_header(hb, LC_MSG_CALL, 9);
    lc_hdr_put_u32(hb, LC_OFF_RESERVED, 1);
    s_raw_send_msg(&r, hb, sizeof hb, "echo.echo", "{}", 2);
    s_expect_error(&r, LC_STATUS_MALFORMED, 0, "reserved bits");
    s_raw_close(&r);
}

Test(wire, call_before_hello_is_not_registered)
{
    h_broker(NULL);
    h_echo("echo");
    raw_t r = s_raw_open();
    uint8_t hb[LC_HDR_SIZE];
    s_header(hb, LC_MSG_CALL, 4242);
    s_raw_send_msg(&r, hb, sizeof hb, "echo.echo", "{}", 2);
    s_expect_error(&r, LC_STATUS_NOT_REGISTERED, 4242, "CALL before HELLO");
    /* A source frame filled in by the peer is refused too (the broker fills it). */
    const void *data[4] = {hb, "echo.echo", "mallory", "{}"};
    size_t sizes[4] = {sizeof hb, 9, 7, 2};
    s_raw_send(&r, 4, data, sizes);
    s_expect_error(&r, LC_STATUS_MALFORMED, 4242, "source frame set");
    s_raw_close(&r);
}

Test(wire, huge_frame_costs_the_connection_not_the_broker)
{
    h_broker(NULL);
    h_echo("echo");
    raw_t r = s_raw_open();
    void *mon = zmq_socket(r.ctx, ZMQ_PAIR);
    cr_assert_eq(zmq_socket_monitor(r.sock, "inproc://huge-monitor", ZMQ_EVENT_DISCONNECTED), 0);
    cr_assert_eq(zmq_connect(mon, "inproc://huge-monitor"), 0);
    size_t big = 8u << 20;
    char *payload = malloc(big);
    cr_assert(payload);
    memset(payload, '7', big);
    uint8_t hb[LC_HDR_SIZE];
    s_header(hb, LC_MSG_CALL, 3);
    s_raw_send_msg(&r, hb, sizeof hb, "echo.echo", payload, big);
    free(payload);
    /* Either the broker drops the connection or it answers TOO_LARGE; nothing else. */
    zmq_pollitem_t items[2] = {{r.sock, 0, ZMQ_POLLIN, 0}, {mon, 0, ZMQ_POLLIN, 0}};
    int n = zmq_poll(items, 2, 5000);
    cr_assert_gt(n, 0, "neither an answer nor a disconnection after an 8 MiB frame");
    if (items[0].revents) {
        reply_t rep;
        cr_assert(s_raw_recv(&r, &rep, 0));
        cr_assert_eq(rep.hdr[LC_OFF_TYPE], LC_MSG_ERROR);
        uint32_t st = lc_hdr_get_u32(rep.hdr, LC_OFF_STATUS);
        cr_assert_eq(st, LC_STATUS_TOO_LARGE, "status %u (%s)", st, lc_status_name((int)st));
    }
    zmq_socket_monitor(r.sock, NULL, 0);
    zmq_close(mon);
    s_raw_close(&r);
    lc_client_t *c = h_client();
    s_echo_ok(c);
    lc_client_destroy(&c);
}

/* All of it, then a normal client still gets served and the broker counted it all. */
Test(wire, broker_keeps_serving_after_abuse)
{
    h_broker(NULL);
    h_echo("echo");
    lc_client_t *c = h_client();
    json_int_t malformed0 = s_stat(c, "malformed"), version0 = s_stat(c, "version");
    raw_t r = s_raw_open();
    uint8_t hb[LC_HDR_SIZE];

    s_header(hb, LC_MSG_CALL, 1);
    hb[1] = 'X';
    s_raw_send_msg(&r, hb, sizeof hb, "echo.echo", "{}", 2);
    s_expect_error(&r, LC_STATUS_MALFORMED, 0, "signature");

    s_header(hb, LC_MSG_CALL, 2);
    hb[LC_OFF_VERSION] = 2;
    s_raw_send_msg(&r, hb, sizeof hb, "echo.echo", "{}", 2);
    s_expect_error(&r, LC_STATUS_VERSION, 0, "version");

    s_header(hb, LC_MSG_CALL, 3);
    const void *one[1] = {hb};
    size_t one_size[1] = {sizeof hb};
    s_raw_send(&r, 1, one, one_size);
    s_expect_error(&r, LC_STATUS_MALFORMED, 3, "header only");

    const void *junk[2] = {"\x01\x02\x03", "garbage"};
    size_t junk_size[2] = {3, 7};
    s_raw_send(&r, 2, junk, junk_size);
    s_expect_error(&r, LC_STATUS_MALFORMED, 0, "garbage");

    s_header(hb, LC_MSG_CALL, 5);
    s_raw_send_msg(&r, hb, sizeof hb, "echo.echo", "{}", 2);
    s_expect_error(&r, LC_STATUS_NOT_REGISTERED, 5, "call before hello");
    s_raw_close(&r);

    s_echo_ok(c);
    cr_assert_geq(s_stat(c, "malformed"), malformed0 + 3);
    cr_assert_gt(s_stat(c, "malformed"), 0);
    cr_assert_geq(s_stat(c, "version"), version0 + 1);
    lc_client_destroy(&c);
}

/* ---- Header codec ---------------------------------------------------------------------- */

Test(wire_unit, header_round_trip)
{
    lc_hdr_t in = {.type = LC_MSG_CALL,
                   .priority = LC_PRIORITY_LOWEST,
                   .flags = LC_FLAG_REPLY_MAIN | LC_FLAG_ATTACH,
                   .seq = 0xfedcba98u,
                   .status = LC_STATUS_INTERNAL,
                   .id = 0x0102030405060708ull,
                   .parent = 0xf0e0d0c0b0a09080ull,
                   .tx = UINT64_MAX,
                   .timeout_ms = 86400000u,
                   .time_us = 1700000000123456ull};
    uint8_t buf[LC_HDR_SIZE];
    memset(buf, 0xAA, sizeof buf);
    lc_hdr_encode(&in, buf);
    cr_assert_eq(buf[0], 'L');
    cr_assert_eq(buf[1], 'C');
    cr_assert_eq(buf[LC_OFF_VERSION], LC_WIRE_VERSION);
    cr_assert_eq(buf[LC_OFF_TYPE], LC_MSG_CALL);
    /* Little-endian on the wire. */
    cr_assert_eq(buf[LC_OFF_SEQ], 0x98);
    cr_assert_eq(buf[LC_OFF_SEQ + 3], 0xfe);
    cr_assert_eq(buf[LC_OFF_ID], 0x08);
    cr_assert_eq(buf[LC_OFF_ID + 7], 0x01);
    cr_assert_eq(lc_hdr_get_u32(buf, LC_OFF_RESERVED), 0);
    lc_hdr_t out;
    cr_assert_eq(lc_hdr_decode(buf, sizeof buf, &out), LC_STATUS_OK);
    cr_assert_eq(out.version, LC_WIRE_VERSION);
    cr_assert_eq(out.type, in.type);
    cr_assert_eq(out.priority, in.priority);
    cr_assert_eq(out.flags, in.flags);
    cr_assert_eq(out.seq, in.seq);
    cr_assert_eq(out.status, in.status);
    cr_assert_eq(out.id, in.id);
    cr_assert_eq(out.parent, in.parent);
    cr_assert_eq(out.tx, in.tx);
    cr_assert_eq(out.timeout_ms, in.timeout_ms);
    cr_assert_eq(out.time_us, in.time_us);

    /* Field patching as the broker does it. */
    lc_hdr_put_u32(buf, LC_OFF_SEQ, 7);
    lc_hdr_put_u64(buf, LC_OFF_ID, 0x1122334455667788ull);
    cr_assert_eq(lc_hdr_decode(buf, sizeof buf, &out), LC_STATUS_OK);
    cr_assert_eq(out.seq, 7);
    cr_assert_eq(out.id, 0x1122334455667788ull);
    cr_assert_eq(lc_hdr_get_u64(buf, LC_OFF_ID), 0x1122334455667788ull);
}

Test(wire_unit, header_decode_refuses)
{
    lc_hdr_t in = {.type = LC_MSG_REPLY, .seq = 1};
    uint8_t good[LC_HDR_SIZE], buf[LC_HDR_SIZE + 4];
    lc_hdr_encode(&in, good);
    lc_hdr_t out;

    cr_assert_eq(lc_hdr_decode(good, LC_HDR_SIZE - 1, &out), LC_STATUS_MALFORMED);
    memcpy(buf, good, LC_HDR_SIZE);
    buf[LC_HDR_SIZE] = 0;
    cr_assert_eq(lc_hdr_decode(buf, LC_HDR_SIZE + 1, &out), LC_STATUS_MALFORMED);
    cr_assert_eq(lc_hdr_decode(good, 0, &out), LC_STATUS_MALFORMED);
    cr_assert_eq(lc_hdr_decode(good, 3, &out), LC_STATUS_MALFORMED);

    struct {
        size_t off;
        uint8_t value;
        int status;
        const char *what;
    } cases[] = {
        {0, 'l', LC_STATUS_MALFORMED, "signature byte 0"},
        {1, 'c', LC_STATUS_MALFORMED, "signature byte 1"},
        {LC_OFF_VERSION, 2, LC_STATUS_VERSION, "version 2"},
        {LC_OFF_VERSION, 0, LC_STATUS_VERSION, "version 0"},
        {LC_OFF_TYPE, 0, LC_STATUS_MALFORMED, "type 0"},
        {LC_OFF_TYPE, LC_MSG_TYPE_MAX, LC_STATUS_MALFORMED, "type past the last"},
        {LC_OFF_PRIORITY, LC_PRIORITY_LOWEST + 1, LC_STATUS_MALFORMED, "priority 6"},
        {5, 1, LC_STATUS_MALFORMED, "byte 5 reserved"},
        {LC_OFF_FLAGS, 0x40, LC_STATUS_MALFORMED, "unknown flag"},
        {LC_OFF_FLAGS + 1, 0x80, LC_STATUS_MALFORMED, "unknown high flag"},
        {LC_OFF_RESERVED, 1, LC_STATUS_MALFORMED, "reserved field"},
        {LC_OFF_RESERVED + 3, 0x80, LC_STATUS_MALFORMED, "reserved field, high byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, good, LC_HDR_SIZE);
        buf[cases[i].off] = cases[i].value;
        int st = lc_hdr_decode(buf, LC_HDR_SIZE, &out);
        cr_assert_eq(st, cases[i].status, "%s: got %s", cases[i].what, lc_status_name(st));
    }
    /* Another version is recognised at any size, with version and type filled in. */
    memcpy(buf, good, LC_HDR_SIZE);
    buf[LC_OFF_VERSION] = 3;
    cr_assert_eq(lc_hdr_decode(buf, 4, &out), LC_STATUS_VERSION);
    cr_assert_eq(out.version, 3);
    cr_assert_eq(out.type, LC_MSG_REPLY);
    /* Every known type and priority decodes. */
    for (int t = 1; t < LC_MSG_TYPE_MAX; t++)
        for (int p = 0; p <= LC_PRIORITY_LOWEST; p++) {
            lc_hdr_t h = {.type = (uint8_t)t, .priority = (uint8_t)p};
            lc_hdr_encode(&h, buf);
            cr_assert_eq(lc_hdr_decode(buf, LC_HDR_SIZE, &out), LC_STATUS_OK, "type %d prio %d", t,
                         p);
        }
}

Test(wire_unit, status_codes_map_both_ways)
{
    for (int s = 1; s < LC_STATUS_MAX; s++) {
        int e = lc_status_to_errno(s);
        cr_assert_lt(e, 0, "status %d", s);
        cr_assert_str_neq(lc_status_name(s), "unknown_status");
        cr_assert_eq(lc_errno_to_status(e), s, "status %d -> %d -> %d", s, e,
                     lc_errno_to_status(e));
    }
    cr_assert_eq(lc_status_to_errno(LC_STATUS_GONE), LC_EGONE);
    cr_assert_eq(lc_status_to_errno(LC_STATUS_VERSION), LC_EVERSION);
    cr_assert_eq(lc_status_to_errno(LC_STATUS_MALFORMED), LC_EPROTO);
    cr_assert_eq(lc_status_to_errno(LC_STATUS_MAX), LC_EPROTO);
    cr_assert_str_eq(lc_status_name(LC_STATUS_UNKNOWN_MODULE), "unknown_module");
    cr_assert_str_eq(lc_status_name(-1), "unknown_status");
    cr_assert_eq(lc_errno_to_status(-12345), LC_STATUS_INTERNAL);
}

Test(wire_unit, names)
{
    cr_assert(lc_name_valid("a", 1));
    cr_assert(lc_name_valid("echo", 4));
    cr_assert(lc_name_valid("A-b_9", 5));
    cr_assert(!lc_name_valid("", 0));
    cr_assert(!lc_name_valid("9lives", 6));
    cr_assert(!lc_name_valid("-x", 2));
    cr_assert(!lc_name_valid("_anon1", 6)); /* the broker's names for anonymous clients */
    cr_assert(!lc_name_valid("a.b", 3));
    cr_assert(!lc_name_valid("a b", 3));
    cr_assert(!lc_name_valid("caf\xc3\xa9", 5));
    /* len counts, not the terminator. */
    cr_assert(lc_name_valid("echo.echo", 4));
    cr_assert(!lc_name_valid("ab\0c", 4));
    char name[LC_NAME_MAX + 2];
    memset(name, 'x', sizeof name);
    cr_assert(lc_name_valid(name, LC_NAME_MAX));
    cr_assert(!lc_name_valid(name, LC_NAME_MAX + 1));

    cr_assert(lc_method_name_valid("echo", 4));
    cr_assert(lc_method_name_valid("_private", 8));
    cr_assert(lc_method_name_valid("get_2", 5));
    cr_assert(!lc_method_name_valid("2get", 4));
    cr_assert(!lc_method_name_valid("a-b", 3));
    cr_assert(!lc_method_name_valid("", 0));
    cr_assert(lc_method_name_valid(name, LC_NAME_MAX));
    cr_assert(!lc_method_name_valid(name, LC_NAME_MAX + 1));

    /* The public API applies the same rule. */
    errno = 0;
    cr_assert_null(lc_client_new("9lives", "ipc:///nonexistent/bus"));
    cr_assert_eq(errno, EINVAL);
}

/* ---- idmap ------------------------------------------------------------------------------ */

#define NKEYS 10000

static uint64_t s_key(size_t i)
{
    /* Sequential ids and scattered ones, as the broker and client see them. */
    return i % 2 ? (uint64_t)i : ((uint64_t)i * 0x9E3779B97F4A7C15ull) | (1ull << 63);
}

Test(wire_unit, idmap_put_get_take)
{
    static int values[NKEYS];
    idmap_t m;
    idmap_init(&m);
    cr_assert_null(idmap_get(&m, 1));
    cr_assert_null(idmap_take(&m, 1));
    for (size_t i = 0; i < NKEYS; i++)
        cr_assert_eq(idmap_put(&m, s_key(i), &values[i]), 0);
    cr_assert_eq(m.count, NKEYS);
    for (size_t i = 0; i < NKEYS; i++)
        cr_assert_eq(idmap_get(&m, s_key(i)), &values[i], "key %zu", i);
    cr_assert_null(idmap_get(&m, 0));
    /* Replacing keeps the count. */
    cr_assert_eq(idmap_put(&m, s_key(5), &values[6]), 0);
    cr_assert_eq(m.count, NKEYS);
    cr_assert_eq(idmap_get(&m, s_key(5)), &values[6]);
    cr_assert_eq(idmap_put(&m, s_key(5), &values[5]), 0);
    /* Take every third; the rest stay reachable across the shifted runs. */
    for (size_t i = 0; i < NKEYS; i += 3)
        cr_assert_eq(idmap_take(&m, s_key(i)), &values[i], "take %zu", i);
    for (size_t i = 0; i < NKEYS; i++) {
        if (i % 3 == 0) {
            cr_assert_null(idmap_get(&m, s_key(i)), "key %zu still there", i);
            cr_assert_null(idmap_take(&m, s_key(i)));
        } else {
            cr_assert_eq(idmap_get(&m, s_key(i)), &values[i], "key %zu lost", i);
        }
    }
    cr_assert_eq(m.count, NKEYS - (NKEYS + 2) / 3);
    for (size_t i = 0; i < NKEYS; i++)
        if (i % 3)
            cr_assert_eq(idmap_take(&m, s_key(i)), &values[i]);
    cr_assert_eq(m.count, 0);
    for (size_t i = 0; i < m.cap; i++)
        cr_assert_null(m.values[i]);
    idmap_clear(&m);
    cr_assert_eq(m.cap, 0);
}

Test(wire_unit, idmap_take_at_during_iteration)
{
    static int values[NKEYS];
    static int seen[NKEYS];
    idmap_t m;
    idmap_init(&m);
    for (size_t i = 0; i < NKEYS; i++) {
        values[i] = (int)i;
        cr_assert_eq(idmap_put(&m, s_key(i), &values[i]), 0);
    }
    /* Take the even values while iterating, as the broker does; count the odd ones. */
    size_t taken = 0;
    for (size_t i = 0; i < m.cap; i++) {
        int *v = m.values[i];
        if (!v)
            continue;
        if (*v % 2 == 0) {
            cr_assert_eq(idmap_take_at(&m, &i), v);
            taken++;
        } else {
            seen[*v]++;
        }
    }
    cr_assert_eq(taken, NKEYS / 2);
    cr_assert_eq(m.count, NKEYS / 2);
    for (size_t i = 0; i < NKEYS; i++) {
        if (i % 2 == 0) {
            cr_assert_null(idmap_get(&m, s_key(i)), "even key %zu survived", i);
        } else {
            cr_assert_eq(idmap_get(&m, s_key(i)), &values[i], "odd key %zu lost", i);
            cr_assert_geq(seen[i], 1, "odd key %zu never visited", i);
        }
    }
    /* Now take everything by iteration. */
    for (size_t i = 0; i < m.cap; i++)
        if (m.values[i])
            cr_assert_not_null(idmap_take_at(&m, &i));
    cr_assert_eq(m.count, 0);
    size_t empty_slot = 0;
    cr_assert_null(idmap_take_at(&m, &empty_slot));
    idmap_clear(&m);
}

/* ---- heap ------------------------------------------------------------------------------- */

Test(wire_unit, heap_ordering)
{
    heap_t h;
    heap_init(&h);
    cr_assert_null(heap_top(&h));
    heap_pop(&h); /* harmless when empty */
    unsigned seed = 99;
    enum { N = 5000 };
    for (uint64_t k = 1; k <= N; k++)
        cr_assert_eq(heap_push(&h, (int64_t)(rand_r(&seed) % 1000) - 500, k), 0);
    cr_assert_eq(h.count, N);
    int64_t last_when = INT64_MIN;
    uint64_t last_key = 0;
    for (size_t n = 0; n < N; n++) {
        const heap_entry_t *top = heap_top(&h);
        cr_assert_not_null(top);
        cr_assert_geq(top->when, last_when, "pop %zu out of order", n);
        if (top->when == last_when)
            cr_assert_gt(top->key, last_key, "equal deadlines not in insertion order");
        last_when = top->when;
        last_key = top->key;
        heap_pop(&h);
    }
    cr_assert_null(heap_top(&h));
    /* Interleaved pushes and pops. */
    int64_t popped_max = INT64_MIN;
    for (uint64_t k = 1; k <= 1000; k++) {
        cr_assert_eq(heap_push(&h, (int64_t)k * 10, k), 0);
        cr_assert_eq(heap_push(&h, (int64_t)k * 10 - 5, k + 100000), 0);
        const heap_entry_t *top = heap_top(&h);
        cr_assert_geq(top->when, popped_max);
        popped_max = top->when;
        heap_pop(&h);
    }
    cr_assert_eq(h.count, 1000);
    heap_clear(&h);
    cr_assert_null(heap_top(&h));
}
