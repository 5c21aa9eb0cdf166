/* Private: a map from 64-bit ids to pointers (open addressing, linear probing).
 * Used on hot paths (pending calls by id or sequence number), where a general
 * hash table would allocate a key per entry. Not thread-safe. */
#ifndef LC_IDMAP_H
#define LC_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *keys;
    void **values; /* NULL marks an empty slot */
    size_t cap;    /* power of two, or 0 */
    size_t count;
} idmap_t;

void idmap_init(idmap_t *self);
void idmap_clear(idmap_t *self); /* frees the storage, not the values */

/* Inserts or replaces. value must not be NULL. Returns 0 or -ENOMEM. */
int idmap_put(idmap_t *self, uint64_t key, void *value);
void *idmap_get(const idmap_t *self, uint64_t key);
/* Removes key and returns its value, or NULL if absent. */
void *idmap_take(idmap_t *self, uint64_t key);

/* Gives back most of the table once it is less than an eighth full, down to
 * IDMAP_MIN_SHRINK slots: a map otherwise keeps the size of its busiest moment (a window
 * of 4,000 events in flight is 8,192 slots, 128 kB). Grown again at three quarters full,
 * so a map does not go back and forth. Moves entries: not while iterating. */
#define IDMAP_MIN_SHRINK 64
void idmap_shrink(idmap_t *self);

/* Iteration: for (size_t i = 0; i < m.cap; i++) if (m.values[i]) ... ;
 * the map must not change while iterating, except through idmap_take_at(), after which
 * an entry already visited may be visited again (so test before taking). */
void *idmap_take_at(idmap_t *self, size_t *slot);

#endif
