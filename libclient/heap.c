#include "heap.h"

#include <errno.h>
#include <stdlib.h>

void heap_init(heap_t *self)
{
    self->items = NULL;
    self->count = self->cap = 0;
}

void heap_clear(heap_t *self)
{
    free(self->items);
    heap_init(self);
}

static int s_less(const heap_entry_t *a, const heap_entry_t *b)
{
    /* Ties by key keep equal deadlines in the order they were added (keys grow). */
    return a->when < b->when || (a->when == b->when && a->key < b->key);
}

int heap_push(heap_t *self, int64_t when, uint64_t key)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        heap_entry_t *items = realloc(self->items, cap * sizeof *items);
        if (!items)
            return -ENOMEM;
        self->items = items;
        self->cap = cap;
    }
    size_t i = self->count++;
    heap_entry_t e = {when, key};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_less(&e, &self->items[parent]))
            break;
        self->items[i] = self->items[parent];
        i = parent;
    }
    self->items[i] = e;
    return 0;
}

const heap_entry_t *heap_top(const heap_t *self)
{
    return self->count ? &self->items[0] : NULL;
}

void heap_pop(heap_t *self)
{
    if (!self->count)
        return;
    heap_entry_t last = self->items[--self->count];
    size_t i = 0, n = self->count;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && s_less(&self->items[child + 1], &self->items[child]))
            child++;
        if (!s_less(&self->items[child], &last))
            break;
        self->items[i] = self->items[child];
        i = child;
    }
    if (n)
        self->items[i] = last;
}
