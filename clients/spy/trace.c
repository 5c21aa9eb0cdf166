/* Decoding, filtering and printing of monitor records. */
#include "trace.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PENDING_MAX 65536 /* calls and items remembered for pairing; then forgotten */

typedef struct {
    uint64_t time_us;
    int refs; /* replies or completions still expected */
    char what[LC_ADDRESS_MAX + 8];
} pend_t;

static uint16_t s_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int rec_decode(const uint8_t *data, size_t size, rec_t *r)
{
    if (size < REC_FIXED || data[0] != 'L' || data[1] != 'S' || data[2] != 1)
        return -1;
    memset(r, 0, sizeof *r);
    r->what = data[3];
    r->alen = s_get16(data + 4);
    r->tolen = s_get16(data + 6);
    r->slen = data[8];
    r->seq = lc_hdr_get_u64(data, 16);
    r->tap_dropped = lc_hdr_get_u64(data, 24);
    if (REC_FIXED + r->alen + r->slen + r->tolen > size)
        return -1;
    /* The header is the broker's own, so only its layout is read here. */
    const uint8_t *h = data + 32;
    r->h.type = h[3];
    r->h.priority = h[4];
    r->h.flags = (uint16_t)(h[6] | h[7] << 8);
    r->h.seq = lc_hdr_get_u32(h, 8);
    r->h.status = lc_hdr_get_u32(h, 12);
    r->h.id = lc_hdr_get_u64(h, 16);
    r->h.parent = lc_hdr_get_u64(h, 24);
    r->h.tx = lc_hdr_get_u64(h, 32);
    r->h.timeout_ms = lc_hdr_get_u32(h, 40);
    r->h.time_us = lc_hdr_get_u64(h, 48);
    const uint8_t *p = data + REC_FIXED;
    r->address = (const char *)p;
    p += r->alen;
    r->source = (const char *)p;
    p += r->slen;
    r->to = (const char *)p;
    p += r->tolen;
    r->payload = p;
    r->plen = size - (size_t)(p - data);
    return 0;
}

void trace_init(trace_t *self)
{
    memset(self, 0, sizeof *self);
    self->out = stdout;
    self->filter.kinds = K_ALL;
    idmap_init(&self->pending);
    idmap_init(&self->depth);
}

static void s_pending_clear(trace_t *self)
{
    for (size_t i = 0; i < self->pending.cap; i++)
        free(self->pending.values[i]);
    idmap_clear(&self->pending);
    idmap_init(&self->pending);
}

void trace_clear(trace_t *self)
{
    s_pending_clear(self);
    idmap_clear(&self->depth);
}

int trace_kinds_parse(const char *list)
{
    static const struct {
        const char *name;
        int bit;
    } kinds[] = {{"call", K_CALL}, {"reply", K_REPLY}, {"error", K_ERROR},
                 {"task", K_TASK}, {"event", K_EVENT}, {"control", K_CONTROL}};
    int bits = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        int bit = 0;
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (strlen(kinds[i].name) == n && strncmp(kinds[i].name, p, n) == 0)
                bit = kinds[i].bit;
        if (!bit)
            return 0;
        bits |= bit;
        p += n;
        if (*p == ',')
            p++;
    }
    return bits;
}

/* ---- Classification ------------------------------------------------------------------- */

static int s_kind(const rec_t *r, const char **label)
{
    int t = r->h.type;
    if (r->what == REC_LOST) {
        *label = "lost";
        return K_ERROR;
    }
    switch (t) {
    case LC_MSG_CALL:
        *label = "call";
        return K_CALL;
    case LC_MSG_REPLY:
        *label = "reply";
        return K_REPLY;
    case LC_MSG_ERROR:
        *label = "error";
        return K_ERROR;
    case LC_MSG_TASK:
        *label = "task";
        return K_TASK;
    case LC_MSG_EVENT:
        *label = "event";
        return K_EVENT;
    case LC_MSG_NOTICE:
        *label = r->h.status ? "refused" : "accepted";
        if (r->h.flags & LC_FLAG_PARTIAL)
            *label = "partial";
        return r->h.status ? K_ERROR : K_CONTROL;
    case LC_MSG_DONE:
        *label = r->plen ? "done" : "start";
        return K_CONTROL;
    case LC_MSG_STATE:
        *label = "state";
        return K_CONTROL;
    case LC_MSG_BYE:
        *label = "bye";
        return K_CONTROL;
    case LC_MSG_WELCOME:
        *label = "welcome";
        return K_CONTROL;
    default:
        *label = "other";
        return K_CONTROL;
    }
}

static bool s_done_failed(const rec_t *r)
{
    for (size_t off = 0; off + 16 <= r->plen; off += 16)
        if (lc_hdr_get_u32(r->payload, off + 8))
            return true;
    return false;
}

/* Is name one of the comma-separated names in list? */
static bool s_in_list(const char *list, size_t len, const char *name)
{
    size_t n = strlen(name);
    const char *p = list, *end = list + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t k = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (k == n && memcmp(p, name, n) == 0)
            return true;
        p += k + 1;
    }
    return false;
}

static bool s_module_matches(const rec_t *r, const char *m)
{
    size_t n = strlen(m);
    if (r->slen == n && memcmp(r->source, m, n) == 0)
        return true;
    if (s_in_list(r->to, r->tolen, m))
        return true;
    /* The target of a call or task, the module a WELCOME names. */
    if (r->alen > n && r->address[n] == '.' && memcmp(r->address, m, n) == 0)
        return r->h.type == LC_MSG_CALL || r->h.type == LC_MSG_TASK || r->h.type == LC_MSG_NOTICE;
    return r->h.type == LC_MSG_WELCOME && r->alen == n && memcmp(r->address, m, n) == 0;
}

static bool s_in_tx(trace_t *self, const rec_t *r)
{
    if (r->h.tx == self->filter.tx)
        return true;
    /* A completion belongs to the transaction of the items it finishes. */
    if (r->h.type == LC_MSG_DONE)
        for (size_t off = 0; off + 16 <= r->plen; off += 16)
            if (idmap_get(&self->depth, lc_hdr_get_u64(r->payload, off)))
                return true;
    return false;
}

static bool s_wanted(trace_t *self, const rec_t *r, int kind)
{
    const filter_t *f = &self->filter;
    if (!(f->kinds & kind))
        return false;
    if (f->errors && kind != K_ERROR && !(r->h.type == LC_MSG_DONE && s_done_failed(r)))
        return false;
    if (f->module && !s_module_matches(r, f->module))
        return false;
    if (f->event_glob) {
        if (r->h.type != LC_MSG_EVENT)
            return false;
        char name[LC_ADDRESS_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)r->alen, r->address);
        if (fnmatch(f->event_glob, name, 0) != 0)
            return false;
    }
    if (f->tx && !s_in_tx(self, r))
        return false;
    return true;
}

/* ---- Pairing -------------------------------------------------------------------------- */

static void s_remember(trace_t *self, uint64_t id, uint64_t time_us, int refs, const char *what,
                       size_t len)
{
    if (!id || refs <= 0)
        return;
    if (self->pending.count >= PENDING_MAX)
        s_pending_clear(self); /* answers that never came (the caller timed out) */
    pend_t *p = calloc(1, sizeof *p);
    if (!p)
        return;
    p->time_us = time_us;
    p->refs = refs;
    snprintf(p->what, sizeof p->what, "%.*s", (int)len, what);
    free(idmap_take(&self->pending, id));
    if (idmap_put(&self->pending, id, p) < 0)
        free(p);
}

/* Latency of an answer or completion, or -1; forgets the id after its last one. */
static int64_t s_pair(trace_t *self, uint64_t id, uint64_t time_us, char *what, size_t size)
{
    pend_t *p = idmap_get(&self->pending, id);
    if (!p)
        return -1;
    int64_t lat = (int64_t)(time_us - p->time_us);
    if (what)
        snprintf(what, size, "%s", p->what);
    if (--p->refs <= 0)
        free(idmap_take(&self->pending, id));
    return lat < 0 ? 0 : lat;
}

static size_t s_count_names(const char *list, size_t len)
{
    if (!len)
        return 0;
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += list[i] == ',';
    return n;
}

/* ---- Output --------------------------------------------------------------------------- */

#define C_RESET "\033[0m"
#define C_DIM "\033[2m"

static const char *s_color(int kind)
{
    switch (kind) {
    case K_CALL:
        return "\033[36m"; /* cyan */
    case K_REPLY:
        return "\033[32m"; /* green */
    case K_ERROR:
        return "\033[1;31m"; /* bold red */
    case K_TASK:
        return "\033[33m"; /* yellow */
    case K_EVENT:
        return "\033[35m"; /* magenta */
    default:
        return "\033[34m"; /* blue */
    }
}

static void s_id(char *buf, size_t size, uint64_t v)
{
    snprintf(buf, size, "%" PRIu64, v);
}

/* The length of the valid UTF-8 sequence at p (1-4), or 0. */
static size_t s_utf8_len(const uint8_t *p, size_t n)
{
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xE0) == 0xC0 ? 2
                 : (p[0] & 0xF0) == 0xE0 ? 3
                 : (p[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (!len || len > n || (len == 2 && p[0] < 0xC2) || (len == 4 && p[0] > 0xF4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if ((len == 3 && p[0] == 0xE0 && p[1] < 0xA0) || (len == 3 && p[0] == 0xED && p[1] > 0x9F) ||
        (len == 4 && p[0] == 0xF0 && p[1] < 0x90) || (len == 4 && p[0] == 0xF4 && p[1] > 0x8F))
        return 0; /* overlong, surrogate, beyond U+10FFFF */
    return len;
}

/* The payload as JSON; a payload that is not JSON (the broker does not check payloads) as a
 * string, its bytes that are not UTF-8 replaced by U+FFFD. */
static json_t *s_payload_json(const rec_t *r)
{
    if (!r->plen)
        return json_null();
    json_t *v = json_loadb((const char *)r->payload, r->plen, JSON_DECODE_ANY, NULL);
    if (v)
        return v;
    char *text = malloc(r->plen * 3 + 1);
    if (!text)
        return json_null();
    size_t n = 0;
    for (size_t i = 0; i < r->plen;) {
        size_t k = s_utf8_len(r->payload + i, r->plen - i);
        if (k) {
            memcpy(text + n, r->payload + i, k);
            n += k;
            i += k;
        } else {
            memcpy(text + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        }
    }
    v = json_stringn(text, n);
    free(text);
    return v ? v : json_null();
}

/* A finished item of a DONE record, paired with what the spy saw of it. */
typedef struct {
    uint64_t id;
    uint32_t status;
    int64_t latency_us; /* -1: not seen accepted */
    char name[LC_ADDRESS_MAX + 8];
} fin_t;

/* ---- JSON lines ------------------------------------------------------------------------
 * Written by hand rather than through jansson: a busy bus makes hundreds of thousands of
 * records a second, and building and dumping a json_t for each made --json five times
 * slower than the text lines. A payload that is valid JSON in printable ASCII (what liblc
 * sends) is copied as it is, after a check that allocates nothing; any other goes through
 * jansson (s_payload_json). The output is the same JSON either way. */

/* A JSON string of n bytes, ASCII only: other characters as \uXXXX, bytes that are not
 * UTF-8 as \uFFFD. */
static void s_put_str(FILE *out, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    putc('"', out);
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            putc(c, out);
            i++;
        } else if (c == '"' || c == '\\') {
            putc('\\', out);
            putc(c, out);
            i++;
        } else if (c < 0x80) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else {
            size_t k = s_utf8_len(p + i, n - i);
            uint32_t cp = 0xFFFD;
            if (k == 2)
                cp = (uint32_t)(c & 0x1F) << 6 | (p[i + 1] & 0x3F);
            else if (k == 3)
                cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(p[i + 1] & 0x3F) << 6 |
                     (p[i + 2] & 0x3F);
            else if (k == 4)
                cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[i + 1] & 0x3F) << 12 |
                     (uint32_t)(p[i + 2] & 0x3F) << 6 | (p[i + 3] & 0x3F);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                fprintf(out, "\\u%04X\\u%04X", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                fprintf(out, "\\u%04X", cp);
            }
            i += k ? k : 1;
        }
    }
    putc('"', out);
}

/* A JSON syntax check without allocation (RFC 8259; nesting up to 64 levels). */
typedef struct {
    const uint8_t *p, *end;
    int depth;
} js_t;

static void js_ws(js_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool js_lit(js_t *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool js_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool js_string(js_t *j)
{
    j->p++; /* the opening quote */
    while (j->p < j->end) {
        uint8_t c = *j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (++j->p >= j->end)
                return false;
            c = *j->p;
            if (c == 'u') {
                if (j->end - j->p < 5)
                    return false;
                for (int i = 1; i <= 4; i++)
                    if (!js_hex(j->p[i]))
                        return false;
                j->p += 5;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                       c == 'r' || c == 't') {
                j->p++;
            } else {
                return false;
            }
        } else if (c >= 0x80) {
            size_t k = s_utf8_len(j->p, (size_t)(j->end - j->p));
            if (!k)
                return false;
            j->p += k;
        } else {
            j->p++;
        }
    }
    return false;
}

static bool js_digits(js_t *j)
{
    const uint8_t *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > start;
}

static bool js_number(js_t *j)
{
    if (*j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!js_digits(j))
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!js_digits(j))
            return false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!js_digits(j))
            return false;
    }
    return true;
}

static bool js_value(js_t *j)
{
    js_ws(j);
    if (j->p >= j->end)
        return false;
    uint8_t c = *j->p;
    if (c == '"')
        return js_string(j);
    if (c == 't')
        return js_lit(j, "true");
    if (c == 'f')
        return js_lit(j, "false");
    if (c == 'n')
        return js_lit(j, "null");
    if (c == '-' || (c >= '0' && c <= '9'))
        return js_number(j);
    if (c != '{' && c != '[')
        return false;
    if (++j->depth > 64)
        return false;
    uint8_t close = c == '{' ? '}' : ']';
    j->p++;
    js_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return true;
    }
    for (;;) {
        if (c == '{') {
            js_ws(j);
            if (j->p >= j->end || *j->p != '"' || !js_string(j))
                return false;
            js_ws(j);
            if (j->p >= j->end || *j->p != ':')
                return false;
            j->p++;
        }
        if (!js_value(j))
            return false;
        js_ws(j);
        if (j->p >= j->end)
            return false;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p != close)
            return false;
        j->p++;
        j->depth--;
        return true;
    }
}

/* Valid JSON made of printable ASCII: it can go into the line as it is. */
static bool s_payload_verbatim(const rec_t *r)
{
    for (size_t i = 0; i < r->plen; i++)
        if (r->payload[i] < 0x20 || r->payload[i] > 0x7E)
            return false;
    js_t j = {r->payload, r->payload + r->plen, 0};
    if (!js_value(&j))
        return false;
    js_ws(&j);
    return j.p == j.end;
}

static void s_put_payload(FILE *out, const rec_t *r)
{
    if (!r->plen) {
        fputs("null", out);
    } else if (s_payload_verbatim(r)) {
        fwrite(r->payload, 1, r->plen, out);
    } else {
        json_t *v = s_payload_json(r);
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
        fputs(text ? text : "null", out);
        free(text);
        json_decref(v);
    }
}

/* One record as a JSON line; fields and their order are documented in docs/tracing.md. */
static void s_print_json(trace_t *self, const rec_t *r, int kind, const char *label, int64_t lat,
                         const fin_t *fins, size_t nfins)
{
    static const char *const kinds[] = {"call", "reply", "error", "task", "event", "control"};
    const char *kname = "control";
    for (int i = 0; i < 6; i++)
        if (kind == 1 << i)
            kname = kinds[i];
    FILE *out = self->out;
    fprintf(out,
            "{\"seq\":%" PRIu64 ",\"time_us\":%" PRIu64 ",\"kind\":\"%s\",\"type\":\"%s\","
            "\"source\":",
            r->seq, r->h.time_us, kname, label);
    s_put_str(out, r->source, r->slen);
    fputs(",\"target\":", out);
    s_put_str(out, r->address, r->alen);
    fputs(",\"to\":[", out);
    for (const char *p = r->to, *end = r->to + r->tolen; p < end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t k = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (p != r->to)
            putc(',', out);
        s_put_str(out, p, k);
        p += k + 1;
    }
    fprintf(out,
            "],\"priority\":%u,\"id\":\"%" PRIu64 "\",\"parent\":\"%" PRIu64 "\",\"tx\":\"%" PRIu64
            "\",\"status\":%u,\"status_name\":\"%s\",\"bytes\":%zu",
            r->h.priority, r->h.id, r->h.parent, r->h.tx, (unsigned)r->h.status,
            lc_status_name((int)r->h.status), r->plen);
    if (lat >= 0)
        fprintf(out, ",\"latency_us\":%" PRId64, lat);
    if (r->h.type == LC_MSG_CALL)
        fprintf(out, ",\"timeout_ms\":%u", (unsigned)r->h.timeout_ms);
    if (r->h.type == LC_MSG_DONE) {
        fputs(",\"done\":[", out);
        for (size_t i = 0; i < nfins; i++) {
            fprintf(out, "%s{\"id\":\"%" PRIu64 "\",\"status\":%u", i ? "," : "", fins[i].id,
                    (unsigned)fins[i].status);
            if (fins[i].latency_us >= 0)
                fprintf(out, ",\"latency_us\":%" PRId64, fins[i].latency_us);
            if (fins[i].name[0]) {
                fputs(",\"name\":", out);
                s_put_str(out, fins[i].name, strlen(fins[i].name));
            }
            putc('}', out);
        }
        putc(']', out);
    } else {
        fputs(",\"payload\":", out);
        s_put_payload(out, r);
    }
    fputs("}\n", out);
}

/* Columns a UTF-8 string takes (one per character: enough for names and JSON). */
static size_t s_cols(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* The byte length of the longest prefix of s that fits in cols columns. */
static size_t s_fit(const char *s, size_t len, size_t cols)
{
    size_t n = 0, i = 0;
    for (; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == cols)
                break;
            n++;
        }
    }
    return i;
}

static void s_print_text(trace_t *self, const rec_t *r, int kind, const char *label, int64_t lat,
                         int depth, const char *route, const char *body, size_t blen)
{
    char when[16] = "";
    time_t secs = (time_t)(r->h.time_us / 1000000);
    struct tm tm;
    if (localtime_r(&secs, &tm))
        snprintf(when, sizeof when, "%02d:%02d:%02d.%03u", tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (unsigned)(r->h.time_us / 1000 % 1000));
    char meta[96] = "";
    size_t m = 0;
    if (lat >= 0)
        m += (size_t)snprintf(meta + m, sizeof meta - m, " %.3f ms", lat / 1000.0);
    if (r->h.priority)
        m += (size_t)snprintf(meta + m, sizeof meta - m, " p%u", r->h.priority);
    if (r->h.tx)
        snprintf(meta + m, sizeof meta - m, " tx %" PRIu64, r->h.tx);
    char indent[64] = "";
    if (depth > 0) {
        int d = depth > 10 ? 10 : depth;
        int k = 0;
        for (int i = 1; i < d; i++)
            k += snprintf(indent + k, sizeof indent - (size_t)k, "  ");
        snprintf(indent + k, sizeof indent - (size_t)k, "└ ");
    }
    size_t hsize = strlen(route) + sizeof when + sizeof meta + sizeof indent + 16;
    char *head = malloc(hsize);
    if (!head)
        return;
    int hl = snprintf(head, hsize, "%s %s%-8s %s%s", when, indent, label, route, meta);
    if (hl < 0) {
        free(head);
        return;
    }
    size_t hcols = s_cols(head, strlen(head));
    size_t room = blen;
    bool cut = false;
    if (self->width > 0 && !self->full) {
        size_t avail = (size_t)self->width > hcols + 2 ? (size_t)self->width - hcols - 2 : 0;
        if (s_cols(body, blen) > avail) {
            room = avail ? s_fit(body, blen, avail - 1) : 0;
            cut = true;
        }
    }
    if (self->color)
        fprintf(self->out, C_DIM "%s" C_RESET " %s%s%-8s" C_RESET " %s" C_DIM "%s" C_RESET, when,
                indent, s_color(kind), label, route, meta);
    else
        fputs(head, self->out);
    if (room || cut)
        fprintf(self->out, "  %.*s%s", (int)room, body, cut ? "…" : "");
    fputc('\n', self->out);
    free(head);
}

void trace_dropped(trace_t *self, uint64_t n)
{
    self->dropped += n;
    if (self->quiet)
        return;
    if (self->json)
        fprintf(self->out, "{\"kind\":\"dropped\",\"count\":%" PRIu64 "}\n", n);
    else
        fprintf(self->out, "%s%" PRIu64 " messages dropped: the spy could not keep up%s\n",
                self->color ? "\033[1;31m" : "", n, self->color ? C_RESET : "");
}

/* The payload on one line: control characters become spaces. */
static char *s_flat(const rec_t *r, size_t *len)
{
    char *s = malloc(r->plen + 1);
    if (!s) {
        *len = 0;
        return NULL;
    }
    for (size_t i = 0; i < r->plen; i++)
        s[i] = r->payload[i] < 0x20 ? ' ' : (char)r->payload[i];
    s[r->plen] = 0;
    *len = r->plen;
    return s;
}

bool trace_record(trace_t *self, const rec_t *r)
{
    /* Records come in order from one broker: a lower number means a new broker run. */
    if (self->next_seq && r->seq > self->next_seq)
        trace_dropped(self, r->seq - self->next_seq);
    self->next_seq = r->seq + 1;
    if (r->what == REC_ATTACH)
        return false;
    if (self->quiet) {
        self->shown++;
        return true;
    }

    const char *label;
    int kind = s_kind(r, &label);
    int t = r->h.type;
    bool call_answer = r->what == REC_SENT && (t == LC_MSG_REPLY || t == LC_MSG_ERROR);

    /* Pairing happens whether the record is shown or not. */
    int64_t lat = -1;
    char what[LC_ADDRESS_MAX + 8] = "";
    if (t == LC_MSG_CALL)
        s_remember(self, r->h.id, r->h.time_us, 1, r->address, r->alen);
    else if (call_answer && r->h.parent)
        lat = s_pair(self, r->h.parent, r->h.time_us, what, sizeof what);
    else if (r->what == REC_ACCEPTED && (t == LC_MSG_TASK || t == LC_MSG_EVENT)) {
        int refs = t == LC_MSG_TASK ? 1 : (int)s_count_names(r->to, r->tolen);
        s_remember(self, r->h.id, r->h.time_us, refs, r->address, r->alen);
    }
    fin_t *fins = NULL;
    size_t nfins = 0;
    if (t == LC_MSG_DONE && r->plen >= 16) {
        fins = calloc(r->plen / 16, sizeof *fins);
        for (size_t off = 0; fins && off + 16 <= r->plen; off += 16, nfins++) {
            fin_t *f = &fins[nfins];
            f->id = lc_hdr_get_u64(r->payload, off);
            f->status = lc_hdr_get_u32(r->payload, off + 8);
            f->latency_us = s_pair(self, f->id, r->h.time_us, f->name, sizeof f->name);
        }
    }

    /* A copy lost after its acceptance will never be done: one completion less to wait
     * for. (A fan-out's lost copies come before the event, which counts only the queued.) */
    if (r->what == REC_LOST && r->h.id && idmap_get(&self->pending, r->h.id))
        s_pair(self, r->h.id, r->h.time_us, NULL, 0);
    /* A fan-out's lost copies are recorded before the event itself. */
    if (r->what == REC_LOST && t == LC_MSG_EVENT) {
        self->lost_n = self->lost_id == r->h.id ? self->lost_n + 1 : 1;
        self->lost_id = r->h.id;
    }
    int lost =
        r->what == REC_ACCEPTED && t == LC_MSG_EVENT && self->lost_id == r->h.id ? self->lost_n : 0;

    int depth = 0;
    if (self->filter.tx && r->h.tx == self->filter.tx && r->h.id) {
        uintptr_t pd = (uintptr_t)idmap_get(&self->depth, r->h.parent);
        depth = pd ? (int)pd : 0;
        if (!idmap_get(&self->depth, r->h.id))
            idmap_put(&self->depth, r->h.id, (void *)(uintptr_t)(depth + 1));
    }

    bool show = s_wanted(self, r, kind);
    if (show && self->json) {
        s_print_json(self, r, kind, label, lat, fins, nfins);
    } else if (show) {
        /* Long enough for every name a fan-out lists: a line is never cut here. */
        size_t rsize = r->tolen + 2 * (size_t)LC_ADDRESS_MAX + 600;
        char *route = malloc(rsize);
        if (!route) {
            fprintf(stderr, "lc-spy: out of memory for record %" PRIu64 "\n", r->seq);
            free(fins);
            return false;
        }
        const char *src = r->slen ? r->source : "?";
        int sl = r->slen ? (int)r->slen : 1;
        switch (t) {
        case LC_MSG_CALL:
        case LC_MSG_TASK:
            snprintf(route, rsize, "%.*s → %.*s", sl, src, (int)r->alen, r->address);
            break;
        case LC_MSG_EVENT:
            if (r->what == REC_LOST)
                snprintf(route, rsize, "%.*s → %.*s, copy for %.*s", sl, src, (int)r->alen,
                         r->address, (int)r->tolen, r->to);
            else if (lost)
                snprintf(route, rsize, "%.*s → %.*s ⇒ %.*s%s(%d lost)", sl, src, (int)r->alen,
                         r->address, (int)r->tolen, r->to, r->tolen ? " " : "", lost);
            else
                snprintf(route, rsize, "%.*s → %.*s ⇒ %s%.*s", sl, src, (int)r->alen, r->address,
                         r->tolen ? "" : "(no subscriber)", (int)r->tolen, r->to);
            break;
        case LC_MSG_REPLY:
        case LC_MSG_ERROR:
            /* The call it answers, when the spy saw it. */
            snprintf(route, rsize, "%.*s → %.*s%s%s%s%s%s", sl, src, (int)r->tolen, r->to,
                     *what ? " (" : "", what, *what ? ")" : "", t == LC_MSG_ERROR ? " " : "",
                     t == LC_MSG_ERROR ? lc_status_name((int)r->h.status) : "");
            break;
        case LC_MSG_NOTICE:
            snprintf(route, rsize, "%.*s → %.*s about %.*s%s%s", sl, src, (int)r->tolen, r->to,
                     (int)r->alen, r->address, r->h.status ? " " : "",
                     r->h.status ? lc_status_name((int)r->h.status) : "");
            break;
        case LC_MSG_STATE:
            snprintf(route, rsize, "%.*s%s%.*s: %.*s", sl, src, r->what == REC_SENT ? " → " : "",
                     (int)r->tolen, r->to, (int)r->alen, r->address);
            break;
        case LC_MSG_WELCOME:
            snprintf(route, rsize, "%.*s → %.*s: registered", sl, src, (int)r->alen, r->address);
            break;
        default:
            snprintf(route, rsize, "%.*s%s%.*s", sl, src, r->tolen ? " → " : "", (int)r->tolen,
                     r->to);
        }
        if (t == LC_MSG_DONE) {
            /* Each finished item, with its time from acceptance to completion. */
            char body[4096];
            size_t n = 0;
            for (size_t i = 0; i < nfins; i++) {
                char ids[24];
                s_id(ids, sizeof ids, fins[i].id);
                int k =
                    snprintf(body + n, sizeof body - n, "%s%s%s", i ? ", " : "",
                             fins[i].name[0] ? fins[i].name : ids, fins[i].status ? " FAILED" : "");
                if (k > 0 && (size_t)k < sizeof body - n)
                    n += (size_t)k;
                if (fins[i].latency_us >= 0 && n < sizeof body) {
                    k = snprintf(body + n, sizeof body - n, " %.3f ms",
                                 fins[i].latency_us / 1000.0);
                    if (k > 0 && (size_t)k < sizeof body - n)
                        n += (size_t)k;
                }
            }
            /* The item the module starts next (DONE's parent), if the spy saw it queued. */
            pend_t *next = r->h.parent ? idmap_get(&self->pending, r->h.parent) : NULL;
            if (next || r->h.parent) {
                char ids[24];
                s_id(ids, sizeof ids, r->h.parent);
                int k = snprintf(body + n, sizeof body - n, "%snext: %s", n ? "; " : "",
                                 next ? next->what : ids);
                if (k > 0 && (size_t)k < sizeof body - n)
                    n += (size_t)k;
            }
            s_print_text(self, r, kind, label, -1, depth, route, body, n);
        } else {
            size_t blen;
            char *body = s_flat(r, &blen);
            s_print_text(self, r, kind, label, lat, depth, route, body ? body : "", blen);
            free(body);
        }
        free(route);
    }
    free(fins);
    if (show)
        self->shown++;
    return show;
}
