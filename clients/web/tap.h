/* lc-web's reader of the broker's monitor (docs/tracing.md): a thread of the module's
 * passive phase that feeds the hub's streams with the records, subscribed only while a
 * stream wants them. */
#ifndef LC_WEB_TAP_H
#define LC_WEB_TAP_H

#include "hub.h"
#include "lc.h"

/* The thread's function for lc_thread_start(client, LC_STATE_PASSIVE, tap_run, hub). */
void tap_run(lc_thread_t *thread, void *hub);

#endif
