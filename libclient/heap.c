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

static void s_sift_down(heap_t *self, size_t i)
{
    heap_entry_t e = self->items[i];
    size_t n = self->count;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && s_less(&self->items[child + 1], &self->items[child]))
            child++;
        if (!s_less(&self->items[child], &e))
            break;
        self->items[i] = self->items[child];
        i = child;
    }
    self->items[i] = e;
}

void heap_pop(heap_t *self)
{
    if (!self->count)
        return;
    heap_entry_t last = self->items[--self->count];
    if (self->count) {
        self->items[0] = last;
        s_sift_down(self, 0);
    }
}

/* A call's deadline entry stays until its deadline even when the call was answered at
 * once, so without this the heap holds one entry per call made within the last timeout
 * (rate x timeout: 100,000 entries, 2 MB, at 20,000 calls/s with 5 s deadlines) and keeps
 * that array at its largest for good. Pruning when the dead entries outnumber the open
 * calls costs O(n) every n/2 pushes or more: amortised O(1) per push. */
void heap_prune(heap_t *self, const idmap_t *live)
{
    if (self->count < 64 || self->count < 2 * live->count)
        return;
    size_t n = 0;
    for (size_t i = 0; i < self->count; i++)
        if (idmap_get(live, self->items[i].key))
            self->items[n++] = self->items[i];
    self->count = n;
    for (size_t i = n / 2; i-- > 0;)
        s_sift_down(self, i);
    /* Give back the array when it is mostly empty, keeping room to grow twice over. */
    size_t cap = self->cap;
    while (cap > 64 && cap / 4 > n)
        cap /= 2;
    if (cap < self->cap) {
        heap_entry_t *items = realloc(self->items, cap * sizeof *items);
        if (items) {
            self->items = items;
            self->cap = cap;
        }
    }
}
