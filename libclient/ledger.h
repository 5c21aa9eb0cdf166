/* Private: the module's side of the ledger (wire.h, protocol.md "The ledger"): a shared page
 * where each task and event is marked started before its handler runs and finished when it
 * completes, so that a broker that sees the process die knows what ran, even if the DONE
 * saying so died in the process's socket queue. */
#ifndef LC_LEDGER_H
#define LC_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;       /* the memfd, kept open: the broker opens it through /proc/PID/fd */
    uint8_t *map; /* header and slots, shared */
    uint32_t nslots;
    uint32_t unused; /* slots never used yet: [unused, nslots) */
    uint32_t *sent;  /* ring of slots whose completion went out in a DONE, oldest first */
    uint32_t sent_head, sent_count;
    uint32_t lost; /* slots never given back: their completion's DONE was not sent */
    bool frozen;   /* it could not grow as needed: nothing more is recorded (incomplete) */
} ledger_t;

void ledger_init(ledger_t *self);                 /* empty: no fd */
int ledger_open(ledger_t *self, uint32_t nslots); /* 0, or -errno */
void ledger_close(ledger_t *self);
bool ledger_ready(const ledger_t *self);
/* Makes it hold at least nslots slots (a larger window or concurrency at a new HELLO): the
 * memfd grows in place for the broker, the slots keep their place. On failure the ledger is
 * frozen: flagged incomplete, nothing more recorded. 0, or -errno. Under the client's lock. */
int ledger_reserve(ledger_t *self, uint32_t nslots);
/* Slots that reuse safely needs besides `window`: what a HELLO must reserve (ledger.c). */
uint64_t ledger_need(uint32_t window, uint64_t busy, uint32_t lost);

/* Marks id started and returns its slot, or -1 (no ledger, or no slot: the ledger is then
 * flagged incomplete and the broker falls back to its presumption). Loop thread. */
int ledger_start(ledger_t *self, uint64_t id);
/* Marks a started slot finished. Any thread, under the client's lock. */
void ledger_finish(ledger_t *self, int slot, bool failed);
/* The completion of slot has been handed to the socket in a DONE: once the broker has seen
 * it, the slot may be used again. Loop thread. */
void ledger_sent(ledger_t *self, int slot);
/* The completion of slot will never go out in a DONE (a send failed, memory ran out): the
 * slot stays taken for good, and the next HELLO reserves one more. Under the client's lock. */
void ledger_lost(ledger_t *self, int slot);

#endif
