/* liblc: the ledger, a memfd shared with the broker (ledger.h). Slots are reused in the order
 * their completions were sent. Reusing a slot is safe once the broker has seen the DONE that
 * reported its item, or when that item is not in flight at the current registration (an item
 * of an earlier broker, or of a registration that ended: the broker put its items back).
 * Suppose the oldest sent slot S were neither. DONEs arrive in the order they were sent, so
 * every slot sent after S is unseen too, and the broker counts in flight: each of those, each
 * item running or finished but not yet sent, each whose DONE was lost, and the item starting
 * now, except those delivered before this registration. Those are at most the items running
 * or waiting to be sent when it began and those then waiting in the client's queue, which it
 * still runs (together `busy`), and the slots lost before it. So with window + busy + lost +
 * 1 slots or more, all taken, S would make more than `window` items in flight: impossible.
 * Each HELLO therefore reserves window + busy + lost + 16 (ledger_need): the window or the
 * concurrency may have grown since the ledger was made, and a slot whose DONE was never sent
 * is never reused. */
#include "ledger.h"
#include "wire.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void ledger_init(ledger_t *self)
{
    memset(self, 0, sizeof *self);
    self->fd = -1;
}

static size_t s_size(uint32_t nslots)
{
    return LC_LEDGER_HDR + (size_t)nslots * LC_LEDGER_SLOT;
}

int ledger_open(ledger_t *self, uint32_t nslots)
{
    if (nslots == 0 || nslots > LC_LEDGER_MAX_SLOTS)
        return -EINVAL;
    int fd = memfd_create("lc-ledger", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t size = s_size(nslots);
    void *map = MAP_FAILED;
    uint32_t *sent = calloc(nslots, sizeof *sent);
    if (sent && ftruncate(fd, (off_t)size) == 0)
        map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        int err = sent ? errno : ENOMEM;
        free(sent);
        close(fd);
        return -err;
    }
    /* A fresh memfd reads as zeros: every slot is free. */
    memcpy(map, LC_LEDGER_MAGIC, 8);
    memcpy((uint8_t *)map + 8, &nslots, 4);
    self->fd = fd;
    self->map = map;
    self->nslots = nslots;
    self->unused = 0;
    self->sent = sent;
    self->sent_head = self->sent_count = 0;
    return 0;
}

uint64_t ledger_need(uint32_t window, uint64_t busy, uint32_t lost)
{
    return (uint64_t)window + busy + lost + 16;
}

static void s_freeze(ledger_t *self)
{
    atomic_fetch_or((_Atomic uint32_t *)(self->map + 12), LC_LEDGER_OVERFLOW);
    self->frozen = true;
}

int ledger_reserve(ledger_t *self, uint32_t nslots)
{
    if (!self->map || self->frozen)
        return self->map ? -ENOSPC : -EINVAL;
    if (nslots <= self->nslots)
        return 0;
    int err = ENOSPC;
    uint32_t *sent = nslots <= LC_LEDGER_MAX_SLOTS ? malloc(nslots * sizeof *sent) : NULL;
    void *map = MAP_FAILED;
    if (sent && ftruncate(self->fd, (off_t)s_size(nslots)) == 0)
        map = mremap(self->map, s_size(self->nslots), s_size(nslots), MREMAP_MAYMOVE);
    if (map == MAP_FAILED) {
        if (sent)
            err = errno;
        free(sent);
        s_freeze(self);
        return -err;
    }
    /* The ring, oldest first from 0; the new slots read as zeros (free) and come after. */
    for (uint32_t i = 0; i < self->sent_count; i++)
        sent[i] = self->sent[(self->sent_head + i) % self->nslots];
    free(self->sent);
    self->sent = sent;
    self->sent_head = 0;
    self->map = map;
    self->nslots = nslots;
    atomic_store_explicit((_Atomic uint32_t *)(self->map + 8), nslots, memory_order_release);
    return 0;
}

void ledger_close(ledger_t *self)
{
    if (self->map)
        munmap(self->map, s_size(self->nslots));
    if (self->fd >= 0)
        close(self->fd);
    free(self->sent);
    ledger_init(self);
}

bool ledger_ready(const ledger_t *self)
{
    return self->map != NULL;
}

static _Atomic uint32_t *s_state(ledger_t *self, uint32_t slot)
{
    return (_Atomic uint32_t *)(self->map + LC_LEDGER_HDR + (size_t)slot * LC_LEDGER_SLOT + 8);
}

static _Atomic uint64_t *s_id(ledger_t *self, uint32_t slot)
{
    return (_Atomic uint64_t *)(self->map + LC_LEDGER_HDR + (size_t)slot * LC_LEDGER_SLOT);
}

int ledger_start(ledger_t *self, uint64_t id)
{
    if (!self->map || self->frozen)
        return -1;
    uint32_t slot;
    if (self->unused < self->nslots) {
        slot = self->unused++;
    } else if (self->sent_count) {
        slot = self->sent[self->sent_head];
        self->sent_head = (self->sent_head + 1) % self->nslots;
        self->sent_count--;
    } else {
        atomic_fetch_or((_Atomic uint32_t *)(self->map + 12), LC_LEDGER_OVERFLOW);
        return -1;
    }
    /* Free first, so that a process killed between the two stores never shows the new id
     * with the old item's state. */
    atomic_store_explicit(s_state(self, slot), LC_LEDGER_FREE, memory_order_release);
    atomic_store_explicit(s_id(self, slot), id, memory_order_release);
    atomic_store_explicit(s_state(self, slot), LC_LEDGER_STARTED, memory_order_release);
    return (int)slot;
}

void ledger_finish(ledger_t *self, int slot, bool failed)
{
    if (!self->map || slot < 0 || (uint32_t)slot >= self->nslots)
        return;
    atomic_store_explicit(s_state(self, (uint32_t)slot), failed ? LC_LEDGER_FAILED : LC_LEDGER_DONE,
                          memory_order_release);
}

void ledger_sent(ledger_t *self, int slot)
{
    if (!self->map || slot < 0 || (uint32_t)slot >= self->nslots ||
        self->sent_count == self->nslots)
        return;
    self->sent[(self->sent_head + self->sent_count) % self->nslots] = (uint32_t)slot;
    self->sent_count++;
}

void ledger_lost(ledger_t *self, int slot)
{
    if (self->map && slot >= 0 && (uint32_t)slot < self->nslots)
        self->lost++;
}
