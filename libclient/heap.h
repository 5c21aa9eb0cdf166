/* Private: a binary min-heap of (when, key) pairs, for timers and call deadlines.
 * Entries are never removed one by one from the middle: a cancelled timer or a call
 * answered in time leaves its entry behind, and whoever pops it checks that it is still
 * wanted. heap_prune() drops such entries in bulk once they are most of the heap. */
#ifndef LC_HEAP_H
#define LC_HEAP_H

#include "idmap.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t when;
    uint64_t key;
} heap_entry_t;

typedef struct {
    heap_entry_t *items;
    size_t count, cap;
} heap_t;

void heap_init(heap_t *self);
void heap_clear(heap_t *self);
int heap_push(heap_t *self, int64_t when, uint64_t key); /* 0 or -ENOMEM */
const heap_entry_t *heap_top(const heap_t *self);        /* NULL when empty */
void heap_pop(heap_t *self);
/* Drops the entries whose key is no longer in `live` when they outnumber the live ones
 * (and there are more than a few), and gives back the unused part of the array. */
void heap_prune(heap_t *self, const idmap_t *live);

#endif
