#include "queue.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

blob_t *blob_new(const void *data, size_t len)
{
    blob_t *b = malloc(sizeof *b + len);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = (uint32_t)len;
    b->counted = 0;
    if (len)
        memcpy(b->data, data, len);
    return b;
}

blob_t *blob_ref(blob_t *self)
{
    if (self)
        atomic_fetch_add(&self->refs, 1);
    return self;
}

void blob_unref(blob_t **self_p)
{
    blob_t *b = *self_p;
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
    *self_p = NULL;
}

typedef struct pooled {
    struct pooled *next;
    uint64_t hash;
    uint32_t refs;
    char s[];
} pooled_t;

static uint64_t s_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void strpool_init(strpool_t *self)
{
    idmap_init(&self->map);
}

void strpool_clear(strpool_t *self)
{
    for (size_t i = 0; i < self->map.cap; i++)
        for (pooled_t *p = self->map.values[i]; p;) {
            pooled_t *next = p->next;
            free(p);
            p = next;
        }
    idmap_clear(&self->map);
}

const char *strpool_get(strpool_t *self, const char *s, size_t len)
{
    uint64_t h = s_hash(s, len);
    pooled_t *head = idmap_get(&self->map, h);
    for (pooled_t *p = head; p; p = p->next)
        if (strncmp(p->s, s, len) == 0 && p->s[len] == 0) {
            p->refs++;
            return p->s;
        }
    pooled_t *p = malloc(sizeof *p + len + 1);
    if (!p)
        return NULL;
    p->hash = h;
    p->refs = 1;
    memcpy(p->s, s, len);
    p->s[len] = 0;
    p->next = head;
    if (idmap_put(&self->map, h, p) < 0) {
        free(p);
        return NULL;
    }
    return p->s;
}

void strpool_put(strpool_t *self, const char *s)
{
    if (!s)
        return;
    pooled_t *p = (pooled_t *)(s - offsetof(pooled_t, s));
    if (--p->refs)
        return;
    pooled_t *head = idmap_take(&self->map, p->hash), **pp = &head;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    if (head)
        idmap_put(&self->map, p->hash, head);
    free(p);
}

void broker_queue_init(broker_queue_t *self)
{
    memset(self, 0, sizeof *self);
}

static int s_level(const bq_item_t *item)
{
    int p = item->priority;
    return (p < 1 ? 3 : p > BQ_PRIORITIES ? BQ_PRIORITIES : p) - 1;
}

void broker_queue_push(broker_queue_t *self, bq_item_t *item)
{
    int l = s_level(item);
    item->next = NULL;
    if (self->tail[l])
        self->tail[l]->next = item;
    else
        self->head[l] = item;
    self->tail[l] = item;
    self->count++;
    self->level_count[l]++;
}

void broker_queue_push_front(broker_queue_t *self, bq_item_t *item)
{
    int l = s_level(item);
    item->next = self->head[l];
    self->head[l] = item;
    if (!self->tail[l])
        self->tail[l] = item;
    self->count++;
    self->level_count[l]++;
}

bq_item_t *broker_queue_pop(broker_queue_t *self)
{
    for (int l = 0; l < BQ_PRIORITIES; l++) {
        bq_item_t *item = self->head[l];
        if (!item)
            continue;
        self->head[l] = item->next;
        if (!self->head[l])
            self->tail[l] = NULL;
        item->next = NULL;
        self->count--;
        self->level_count[l]--;
        return item;
    }
    return NULL;
}

void bq_item_free(strpool_t *pool, bq_item_t *item)
{
    if (!item)
        return;
    blob_unref(&item->payload);
    strpool_put(pool, item->source);
    strpool_put(pool, item->name);
    free(item);
}
