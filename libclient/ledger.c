/* liblc: the ledger, a memfd shared with the broker (ledger.h). Slots are reused in the order
 * their completions were sent. That order is safe: the broker keeps at most `window` items in
 * flight, and every slot that is started and not finished, or finished and not yet seen by
 * the broker in a DONE, belongs to one of them. With more slots than the window, some slot
 * finished and sent has therefore reached the broker; DONEs arrive in the order they were
 * sent, so the oldest sent has. */
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
    if (!self->map)
        return -1;
    uint32_t slot;
    if (self->unused < self->nslots) {
        slot = self->unused++;
    } else if (self->sent_count) {
        slot = self->sent[self->sent_head];
        self->sent_head = (self->sent_head + 1) % self->nslots;
        self->sent_count--;
    } else {
        _Atomic uint32_t *flags = (_Atomic uint32_t *)(self->map + 12);
        atomic_fetch_or(flags, LC_LEDGER_OVERFLOW);
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
