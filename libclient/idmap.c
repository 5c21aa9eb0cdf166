#include "idmap.h"

#include <errno.h>
#include <stdlib.h>

static size_t s_hash(uint64_t key, size_t cap)
{
    /* Fibonacci hashing: ids are often sequential, this spreads them. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

void idmap_init(idmap_t *self)
{
    self->keys = NULL;
    self->values = NULL;
    self->cap = 0;
    self->count = 0;
}

void idmap_clear(idmap_t *self)
{
    free(self->keys);
    free(self->values);
    idmap_init(self);
}

static int s_resize(idmap_t *self, size_t cap)
{
    uint64_t *keys = calloc(cap, sizeof *keys);
    void **values = calloc(cap, sizeof *values);
    if (!keys || !values) {
        free(keys);
        free(values);
        return -ENOMEM;
    }
    for (size_t i = 0; i < self->cap; i++) {
        if (!self->values[i])
            continue;
        size_t j = s_hash(self->keys[i], cap);
        while (values[j])
            j = (j + 1) & (cap - 1);
        keys[j] = self->keys[i];
        values[j] = self->values[i];
    }
    free(self->keys);
    free(self->values);
    self->keys = keys;
    self->values = values;
    self->cap = cap;
    return 0;
}

int idmap_put(idmap_t *self, uint64_t key, void *value)
{
    if ((self->count + 1) * 4 > self->cap * 3 && s_resize(self, self->cap ? self->cap * 2 : 16) < 0)
        return -ENOMEM;
    size_t i = s_hash(key, self->cap);
    while (self->values[i] && self->keys[i] != key)
        i = (i + 1) & (self->cap - 1);
    if (!self->values[i])
        self->count++;
    self->keys[i] = key;
    self->values[i] = value;
    return 0;
}

void *idmap_get(const idmap_t *self, uint64_t key)
{
    if (!self->cap)
        return NULL;
    size_t i = s_hash(key, self->cap);
    while (self->values[i]) {
        if (self->keys[i] == key)
            return self->values[i];
        i = (i + 1) & (self->cap - 1);
    }
    return NULL;
}

/* Removes slot i and shifts the following run back, so no tombstones are needed. */
static void s_remove(idmap_t *self, size_t i)
{
    size_t mask = self->cap - 1;
    self->values[i] = NULL;
    self->count--;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!self->values[j])
            return;
        size_t home = s_hash(self->keys[j], self->cap);
        /* Move j into the hole at i if its home is not in the cyclic range (i, j]. */
        if ((i <= j) ? (home <= i || home > j) : (home <= i && home > j)) {
            self->keys[i] = self->keys[j];
            self->values[i] = self->values[j];
            self->values[j] = NULL;
            i = j;
        }
    }
}

void *idmap_take(idmap_t *self, uint64_t key)
{
    if (!self->cap)
        return NULL;
    size_t i = s_hash(key, self->cap);
    while (self->values[i]) {
        if (self->keys[i] == key) {
            void *value = self->values[i];
            s_remove(self, i);
            return value;
        }
        i = (i + 1) & (self->cap - 1);
    }
    return NULL;
}

void *idmap_take_at(idmap_t *self, size_t *slot)
{
    void *value = self->values[*slot];
    if (!value)
        return NULL;
    s_remove(self, *slot);
    /* The shift may have moved an unvisited entry into this slot: visit it again. */
    if (self->values[*slot])
        (*slot)--;
    return value;
}

void idmap_shrink(idmap_t *self)
{
    size_t cap = self->cap;
    while (cap > IDMAP_MIN_SHRINK && self->count * 8 < cap)
        cap /= 2;
    if (cap < self->cap)
        s_resize(self, cap); /* out of memory: it stays as large as it was, which works */
}
