/* liblc: timers on the loop. */
#include "client_int.h"

#include <assert.h>
#include <stdlib.h>

/* ---- Timers --------------------------------------------------------------------------- */

int lc_timer_add(lc_client_t *self, int ms, bool repeat, lc_timer_fn *fn, void *arg)
{
    assert(self && self->tag == CLIENT_TAG);
    if (!fn || ms < 0 || (repeat && ms == 0) || !lcc_on_loop(self))
        return LC_EINVAL;
    timer_t_ *t = calloc(1, sizeof *t);
    if (!t)
        return LC_ENOMEM;
    if (++self->next_timer <= 0)
        self->next_timer = 1;
    t->id = self->next_timer;
    t->interval = ms;
    t->repeat = repeat;
    t->when = lc_mono_ms() + ms;
    t->fn = fn;
    t->arg = arg;
    if (idmap_put(&self->timers, (uint64_t)t->id, t) < 0 ||
        heap_push(&self->timer_heap, t->when, (uint64_t)t->id) < 0) {
        idmap_take(&self->timers, (uint64_t)t->id);
        free(t);
        return LC_ENOMEM;
    }
    return t->id;
}

int lc_timer_cancel(lc_client_t *self, int timer_id)
{
    assert(self && self->tag == CLIENT_TAG);
    timer_t_ *t = timer_id > 0 ? idmap_take(&self->timers, (uint64_t)timer_id) : NULL;
    if (!t)
        return LC_EINVAL;
    free(t); /* its heap entry is skipped when it comes up */
    return 0;
}

void lcc_run_timers(lc_client_t *self, int64_t now)
{
    const heap_entry_t *top;
    while ((top = heap_top(&self->timer_heap)) && top->when <= now) {
        int64_t when = top->when;
        uint64_t id = top->key;
        heap_pop(&self->timer_heap);
        timer_t_ *t = idmap_get(&self->timers, id);
        if (!t || t->when != when)
            continue; /* cancelled */
        if (t->repeat) {
            t->when += t->interval;
            if (t->when <= now) /* fell behind by whole periods: skip them, keep the phase */
                t->when += ((now - t->when) / t->interval + 1) * t->interval;
            heap_push(&self->timer_heap, t->when, id);
            t->fn(self, t->id, t->arg);
        } else {
            idmap_take(&self->timers, id);
            lc_timer_fn *fn = t->fn;
            void *arg = t->arg;
            int tid = t->id;
            free(t);
            fn(self, tid, arg);
        }
    }
}
