/* lc-spy's view of a monitor record (docs/tracing.md): decoding, classifying, filtering and
 * printing. spy.c owns the sockets and files; this part knows nothing of them. */
#ifndef LC_SPY_TRACE_H
#define LC_SPY_TRACE_H

#include "idmap.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { REC_SENT = 1, REC_ACCEPTED = 2, REC_LOST = 3, REC_ATTACH = 4 };
#define REC_FIXED (32 + LC_HDR_SIZE)

/* Kinds, as --kind names them; a bit each. */
enum {
    K_CALL = 1,
    K_REPLY = 2,
    K_ERROR = 4,
    K_TASK = 8,
    K_EVENT = 16,
    K_CONTROL = 32,
    K_ALL = 63,
};

/* One record; the strings point into the record's bytes (not terminated). */
typedef struct {
    int what;
    uint64_t seq, tap_dropped;
    lc_hdr_t h;
    const char *address, *source, *to;
    size_t alen, slen, tolen;
    const uint8_t *payload;
    size_t plen;
} rec_t;

/* Returns 0, or -1 if the bytes are not a record of this version. */
int rec_decode(const uint8_t *data, size_t size, rec_t *r);

typedef struct {
    int kinds;              /* K_* bits to show */
    const char *module;     /* either side */
    const char *event_glob; /* events whose name matches */
    uint64_t tx;            /* 0: all */
    bool errors;            /* errors, refusals, losses and failed handlers only */
} filter_t;

typedef struct {
    FILE *out;
    bool json, color, full, tree;
    bool quiet; /* count, print nothing */
    int width;  /* 0: no cut */
    filter_t filter;
    /* Pairing: calls and queued items by id (time sent or accepted, and what they were). */
    idmap_t pending;
    idmap_t depth; /* --tx: id -> depth + 1, to draw the causal tree */
    uint64_t shown, dropped, next_seq;
    uint64_t lost_id; /* the event whose copies were last reported lost, and how many */
    int lost_n;
} trace_t;

void trace_init(trace_t *self);
void trace_clear(trace_t *self);

/* Checks the sequence (a gap is reported as dropped), pairs, filters and prints.
 * Returns true if the record was shown. */
bool trace_record(trace_t *self, const rec_t *r);

/* Writes "N messages dropped" in the output's format. */
void trace_dropped(trace_t *self, uint64_t n);

/* Parses "call,reply" into K_* bits; 0 on an unknown name. */
int trace_kinds_parse(const char *list);

#endif
