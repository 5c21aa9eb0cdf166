#include "wire.h"
#include "lc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void lc_hdr_put_u32(uint8_t *buf, size_t offset, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        buf[offset + i] = (uint8_t)(value >> (8 * i));
}

void lc_hdr_put_u64(uint8_t *buf, size_t offset, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        buf[offset + i] = (uint8_t)(value >> (8 * i));
}

uint32_t lc_hdr_get_u32(const uint8_t *buf, size_t offset)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | buf[offset + i];
    return v;
}

uint64_t lc_hdr_get_u64(const uint8_t *buf, size_t offset)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | buf[offset + i];
    return v;
}

void lc_hdr_encode(const lc_hdr_t *hdr, uint8_t *buf)
{
    buf[0] = 'L';
    buf[1] = 'C';
    buf[LC_OFF_VERSION] = LC_WIRE_VERSION;
    buf[LC_OFF_TYPE] = hdr->type;
    buf[LC_OFF_PRIORITY] = hdr->priority;
    buf[5] = 0;
    buf[LC_OFF_FLAGS] = (uint8_t)hdr->flags;
    buf[LC_OFF_FLAGS + 1] = (uint8_t)(hdr->flags >> 8);
    lc_hdr_put_u32(buf, LC_OFF_SEQ, hdr->seq);
    lc_hdr_put_u32(buf, LC_OFF_STATUS, hdr->status);
    lc_hdr_put_u64(buf, LC_OFF_ID, hdr->id);
    lc_hdr_put_u64(buf, LC_OFF_PARENT, hdr->parent);
    lc_hdr_put_u64(buf, LC_OFF_TX, hdr->tx);
    lc_hdr_put_u32(buf, LC_OFF_TIMEOUT, hdr->timeout_ms);
    lc_hdr_put_u32(buf, LC_OFF_RESERVED, 0);
    lc_hdr_put_u64(buf, LC_OFF_TIME, hdr->time_us);
}

int lc_hdr_decode(const uint8_t *buf, size_t size, lc_hdr_t *hdr)
{
    memset(hdr, 0, sizeof *hdr);
    /* The first four bytes keep their meaning in every version, so that a peer
     * of another version can be told so instead of being ignored. */
    if (size < 4 || buf[0] != 'L' || buf[1] != 'C')
        return LC_STATUS_MALFORMED;
    hdr->version = buf[LC_OFF_VERSION];
    hdr->type = buf[LC_OFF_TYPE];
    if (hdr->version != LC_WIRE_VERSION)
        return LC_STATUS_VERSION;
    if (size != LC_HDR_SIZE)
        return LC_STATUS_MALFORMED;
    hdr->priority = buf[LC_OFF_PRIORITY];
    hdr->flags = (uint16_t)(buf[LC_OFF_FLAGS] | buf[LC_OFF_FLAGS + 1] << 8);
    hdr->seq = lc_hdr_get_u32(buf, LC_OFF_SEQ);
    hdr->status = lc_hdr_get_u32(buf, LC_OFF_STATUS);
    hdr->id = lc_hdr_get_u64(buf, LC_OFF_ID);
    hdr->parent = lc_hdr_get_u64(buf, LC_OFF_PARENT);
    hdr->tx = lc_hdr_get_u64(buf, LC_OFF_TX);
    hdr->timeout_ms = lc_hdr_get_u32(buf, LC_OFF_TIMEOUT);
    hdr->time_us = lc_hdr_get_u64(buf, LC_OFF_TIME);
    if (hdr->type == 0 || hdr->type >= LC_MSG_TYPE_MAX || hdr->priority > LC_PRIORITY_LOWEST ||
        buf[5] != 0 || (hdr->flags & ~LC_FLAG_KNOWN) || lc_hdr_get_u32(buf, LC_OFF_RESERVED) != 0)
        return LC_STATUS_MALFORMED;
    return LC_STATUS_OK;
}

static bool s_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool s_alnum(char c)
{
    return s_alpha(c) || (c >= '0' && c <= '9');
}

bool lc_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > LC_NAME_MAX || !s_alpha(name[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!s_alnum(name[i]) && name[i] != '_' && name[i] != '-')
            return false;
    return true;
}

bool lc_method_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > LC_NAME_MAX || !(s_alpha(name[0]) || name[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!s_alnum(name[i]) && name[i] != '_')
            return false;
    return true;
}

bool lc_event_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > LC_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static const char *const s_state_names[] = {"", "inactive", "passive", "active", "gone"};

const char *lc_state_name(int state)
{
    return state >= 1 && state <= 4 ? s_state_names[state] : "";
}

int lc_state_parse(const char *name)
{
    for (int s = 1; s <= 3; s++)
        if (strcmp(name, s_state_names[s]) == 0)
            return s;
    return 0;
}

void lc_timestamp(char *buf, size_t size, bool micro)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    if (micro)
        snprintf(buf, size, "%s.%06ld", when, ts.tv_nsec / 1000);
    else
        snprintf(buf, size, "%s.%03ld", when, ts.tv_nsec / 1000000);
}

static const struct {
    const char *name;
    int code;
} s_status[LC_STATUS_MAX] = {
    [LC_STATUS_OK] = {"ok", 0},
    [LC_STATUS_HANDLER] = {"handler", LC_EHANDLER},
    [LC_STATUS_UNKNOWN_MODULE] = {"unknown_module", LC_ENOMODULE},
    [LC_STATUS_UNKNOWN_METHOD] = {"unknown_method", LC_ENOMETHOD},
    [LC_STATUS_NOT_READY] = {"not_ready", LC_ENOTREADY},
    [LC_STATUS_GONE] = {"gone", LC_EGONE},
    [LC_STATUS_TIMEOUT] = {"timeout", LC_ETIMEDOUT},
    [LC_STATUS_TOO_LARGE] = {"too_large", LC_ETOOBIG},
    [LC_STATUS_MALFORMED] = {"malformed", LC_EPROTO},
    [LC_STATUS_VERSION] = {"version", LC_EVERSION},
    [LC_STATUS_NAME_TAKEN] = {"name_taken", LC_ENAMETAKEN},
    [LC_STATUS_BAD_NAME] = {"bad_name", LC_EINVAL},
    [LC_STATUS_NOT_REGISTERED] = {"not_registered", LC_ENOBUS},
    [LC_STATUS_QUEUE_FULL] = {"queue_full", LC_EQUEUEFULL},
    [LC_STATUS_NOT_ACTIVE] = {"not_active", LC_ENOTACTIVE},
    [LC_STATUS_DENIED] = {"denied", LC_EDENIED},
    [LC_STATUS_INTERNAL] = {"internal", LC_ENOMEM},
};

const char *lc_status_name(int status)
{
    if (status < 0 || status >= LC_STATUS_MAX)
        return "unknown_status";
    return s_status[status].name;
}

int lc_status_to_errno(int status)
{
    if (status <= 0 || status >= LC_STATUS_MAX)
        return LC_EPROTO;
    return s_status[status].code;
}

int lc_errno_to_status(int code)
{
    for (int i = 1; i < LC_STATUS_MAX; i++)
        if (s_status[i].code == code)
            return i;
    return LC_STATUS_INTERNAL;
}

uint64_t lc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t lc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
