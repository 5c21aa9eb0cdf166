/* The broker's queue of tasks and events: items, shared payloads, interned names, and
 * one priority queue per target module (FIFO within a priority, strict across them). */
#ifndef LC_BROKER_QUEUE_H
#define LC_BROKER_QUEUE_H

#include "idmap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BQ_PRIORITIES 5

/* A payload shared by every copy of an event (reference counted). */
typedef struct {
    _Atomic uint32_t refs; /* ZeroMQ's I/O thread drops its reference after sending */
    uint32_t len;
    uint32_t counted; /* copies counted against the sender (broker thread only; --max-sent) */
    char data[];
} blob_t;

blob_t *blob_new(const void *data, size_t len); /* NULL when out of memory */
blob_t *blob_ref(blob_t *self);
void blob_unref(blob_t **self_p);

/* Interned, reference-counted strings: names repeat on every item, so each item holds a
 * pointer instead of a copy. */
typedef struct {
    idmap_t map; /* hash -> chain of entries */
} strpool_t;

void strpool_init(strpool_t *self);
void strpool_clear(strpool_t *self);                                 /* frees every entry */
const char *strpool_get(strpool_t *self, const char *s, size_t len); /* NULL: out of memory */
void strpool_put(strpool_t *self, const char *s);

enum { BQ_TASK = 1, BQ_EVENT = 2 };

/* One task, or one subscriber's copy of an event. */
typedef struct bq_item {
    struct bq_item *next;
    uint64_t id, tx, parent, time_us;
    blob_t *payload;
    const char *source; /* interned */
    const char *name;   /* interned: the method of a task, the name of an event */
    uint8_t kind;       /* BQ_TASK or BQ_EVENT */
    uint8_t priority;   /* 1 (highest) .. 5 */
    bool work;          /* false for the broker's own events: they never make the bus busy */
    bool started;       /* the module said it began handling it */
    bool counted;       /* counts against its sender's sent_queued (--max-sent) */
} bq_item_t;

typedef struct {
    bq_item_t *head[BQ_PRIORITIES], *tail[BQ_PRIORITIES];
    size_t count;
    size_t level_count[BQ_PRIORITIES]; /* per priority, for lc stats */
} broker_queue_t;

void broker_queue_init(broker_queue_t *self);
void broker_queue_push(broker_queue_t *self, bq_item_t *item);       /* at the back of its level */
void broker_queue_push_front(broker_queue_t *self, bq_item_t *item); /* at the front of its level */
bq_item_t *broker_queue_pop(broker_queue_t *self);                   /* NULL when empty */

/* Frees an item and drops its references. */
void bq_item_free(strpool_t *pool, bq_item_t *item);

#endif
