/* Private: the lc wire format shared by liblc and lc-broker.
 * docs/protocol.md is the normative description; this header mirrors it. */
#ifndef LC_WIRE_H
#define LC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LC_WIRE_VERSION 1
#define LC_HDR_SIZE 56
#define LC_NAME_MAX 64     /* module, method and event names, in bytes */
#define LC_ADDRESS_MAX 255 /* "module.method" */

/* Frames after the ROUTER routing id (broker side) or as sent (client side). */
enum { LC_FRAME_HEADER, LC_FRAME_ADDRESS, LC_FRAME_SOURCE, LC_FRAME_PAYLOAD, LC_FRAMES };

enum lc_msg_type {
    LC_MSG_HELLO = 1,
    LC_MSG_WELCOME = 2,
    LC_MSG_CALL = 3,
    LC_MSG_REPLY = 4,
    LC_MSG_ERROR = 5,
    LC_MSG_TASK = 6,      /* reserved for the queue */
    LC_MSG_EVENT = 7,     /* reserved for the queue */
    LC_MSG_DONE = 8,      /* reserved for the queue */
    LC_MSG_SUBSCRIBE = 9, /* reserved for the queue */
    LC_MSG_PING = 10,
    LC_MSG_PONG = 11,
    LC_MSG_BYE = 12,
    LC_MSG_STATE = 13,  /* reserved for the lifecycle */
    LC_MSG_NOTICE = 14, /* reserved for acknowledgements */
    LC_MSG_TYPE_MAX
};

/* Header flags. Bits not listed here must be zero. */
#define LC_FLAG_REPLY_MAIN 0x0001u /* CALL: deliver the answer to the module's main connection */
#define LC_FLAG_ATTACH 0x0002u     /* HELLO: attach a thread's connection to a registered module */
#define LC_FLAG_CONFIRM 0x0004u    /* TASK, EVENT: answer with a NOTICE, also when accepted */
#define LC_FLAG_PARTIAL 0x0008u    /* NOTICE: accepted, but some subscribers lost their copy */
#define LC_FLAG_IN_HANDLER 0x0010u /* TASK, EVENT: sent while handling a message */
#define LC_FLAG_KNOWN                                                                            \
    (LC_FLAG_REPLY_MAIN | LC_FLAG_ATTACH | LC_FLAG_CONFIRM | LC_FLAG_PARTIAL | LC_FLAG_IN_HANDLER)

/* The ledger (protocol.md, "The ledger"): a memfd that a module on ipc shares with its broker.
 * liblc records in it each task and event it starts and finishes, with plain stores, before
 * it tells the broker; the kernel keeps the page when the process dies, so the broker knows
 * what ran even when the last DONE died in the process's queue. Native byte order: both ends
 * run on the same machine. */
#define LC_LEDGER_MAGIC "lcledg01" /* 8 bytes, no terminator in the file */
#define LC_LEDGER_HDR 16           /* magic[8], u32 slots, u32 flags */
#define LC_LEDGER_SLOT 16          /* u64 id, u32 state, u32 zero */
#define LC_LEDGER_MAX_SLOTS 200100u
#define LC_LEDGER_OVERFLOW 1u /* flags: a start found no slot, so the ledger is incomplete */
enum lc_ledger_state {
    LC_LEDGER_FREE = 0,
    LC_LEDGER_STARTED = 1, /* its handler was called, no completion yet */
    LC_LEDGER_DONE = 2,    /* finished, status 0 */
    LC_LEDGER_FAILED = 3,  /* finished, failed */
};

/* Wire status codes (header field "status" of ERROR messages). Stable: never renumbered. */
enum lc_status {
    LC_STATUS_OK = 0,
    LC_STATUS_HANDLER = 1,
    LC_STATUS_UNKNOWN_MODULE = 2,
    LC_STATUS_UNKNOWN_METHOD = 3,
    LC_STATUS_NOT_READY = 4,
    LC_STATUS_GONE = 5,
    LC_STATUS_TIMEOUT = 6,
    LC_STATUS_TOO_LARGE = 7,
    LC_STATUS_MALFORMED = 8,
    LC_STATUS_VERSION = 9,
    LC_STATUS_NAME_TAKEN = 10,
    LC_STATUS_BAD_NAME = 11,
    LC_STATUS_NOT_REGISTERED = 12,
    LC_STATUS_QUEUE_FULL = 13,
    LC_STATUS_NOT_ACTIVE = 14,
    LC_STATUS_DENIED = 15,
    LC_STATUS_INTERNAL = 16,
    LC_STATUS_MAX
};

typedef struct {
    uint8_t version;
    uint8_t type;
    uint8_t priority;
    uint16_t flags;
    uint32_t seq;
    uint32_t status;
    uint64_t id;
    uint64_t parent;
    uint64_t tx;
    uint32_t timeout_ms;
    uint64_t time_us;
} lc_hdr_t;

/* Encodes hdr into buf (LC_HDR_SIZE bytes), little-endian, with the signature. */
void lc_hdr_encode(const lc_hdr_t *hdr, uint8_t *buf);

/* Decodes a header frame. Returns LC_STATUS_OK, LC_STATUS_MALFORMED (wrong size or
 * signature, unknown type, reserved bits set) or LC_STATUS_VERSION (another version:
 * only hdr->version and hdr->type are then filled in). */
int lc_hdr_decode(const uint8_t *buf, size_t size, lc_hdr_t *hdr);

/* Patches single fields of an encoded header in place (the broker's fast path). */
void lc_hdr_put_u32(uint8_t *buf, size_t offset, uint32_t value);
void lc_hdr_put_u64(uint8_t *buf, size_t offset, uint64_t value);
uint32_t lc_hdr_get_u32(const uint8_t *buf, size_t offset);
uint64_t lc_hdr_get_u64(const uint8_t *buf, size_t offset);

/* Byte offsets of the header fields. */
enum {
    LC_OFF_VERSION = 2,
    LC_OFF_TYPE = 3,
    LC_OFF_PRIORITY = 4,
    LC_OFF_FLAGS = 6,
    LC_OFF_SEQ = 8,
    LC_OFF_STATUS = 12,
    LC_OFF_ID = 16,
    LC_OFF_PARENT = 24,
    LC_OFF_TX = 32,
    LC_OFF_TIMEOUT = 40,
    LC_OFF_RESERVED = 44,
    LC_OFF_TIME = 48,
};

/* Names: a module name is 1..LC_NAME_MAX bytes of [A-Za-z0-9_-] starting with a letter;
 * a method name is 1..LC_NAME_MAX bytes of [A-Za-z0-9_] starting with a letter or '_'. */
bool lc_name_valid(const char *name, size_t len);
bool lc_method_name_valid(const char *name, size_t len);
bool lc_event_name_valid(const char *name, size_t len); /* 1..64 bytes of [a-z0-9_] */

/* Module states on the wire (STATE, module_state): 1 inactive, 2 passive, 3 active, and
 * 4 gone (the broker's word for a module that went away); "" for anything else. */
const char *lc_state_name(int state);
int lc_state_parse(const char *name); /* inactive, passive, active -> 1..3; else 0 */

/* Writes the local time as "YYYY-MM-DD HH:MM:SS.mmm" (or .ffffff with micro: the
 * exception log's form, as the Python package wrote it) into buf (32 bytes will do). */
void lc_timestamp(char *buf, size_t size, bool micro);

const char *lc_status_name(int status); /* "unknown_module" */
int lc_status_to_errno(int status);     /* LC_STATUS_GONE -> LC_EGONE */
int lc_errno_to_status(int code);       /* the reverse, LC_STATUS_INTERNAL if unknown */

uint64_t lc_now_us(void); /* CLOCK_REALTIME, microseconds */
int64_t lc_mono_ms(void); /* CLOCK_MONOTONIC, milliseconds */

#endif
