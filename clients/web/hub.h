/* lc-web's event streams: each GET /api/events is a client of the hub, with its own filters
 * and its own bounded queue of server-sent-event frames. The tap thread (tap.c) feeds it the
 * broker's monitor records (frames of type "bus"), the module feeds it new log lines (type
 * "log"); the connection's thread reads the frames out with hub_read().
 *
 * The monitor is subscribed to only while a stream wants bus frames, so a broker with no
 * dashboard open records nothing for it. */
#ifndef LC_WEB_HUB_H
#define LC_WEB_HUB_H

#include "../spy/trace.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct hub hub_t;
typedef struct hub_client hub_client_t;

/* A stream's filters (GET /api/events?types=...&module=...&event=...&kind=...). */
typedef struct {
    bool bus, log;      /* the frame types wanted */
    const char *module; /* bus frames from or to this module (NULL: all) */
    const char *event;  /* bus frames of events matching this glob (NULL: all) */
    int kinds;          /* K_* bits of trace.h */
} hub_filter_t;

/* What the tap says about the monitor (hub_feed()). */
enum { FEED_OFF, FEED_ATTACHING, FEED_LIVE, FEED_NONE };

/* max_frames and max_bytes bound each stream's queue: a stream that falls further behind
 * loses frames and gets one "dropped" frame in their place. Caller owns it. */
hub_t *hub_new(size_t max_frames, size_t max_bytes);

/* Ends every stream (their readers return -1 at once) and refuses new ones. */
void hub_close(hub_t *self);

/* Frees the hub; every stream must have left (httpd_destroy() waits for them). */
void hub_destroy(hub_t **self_p);

/* A new stream, or NULL once the hub is closed or out of memory. Owned by the hub until
 * hub_leave(). */
hub_client_t *hub_join(hub_t *self, const hub_filter_t *filter);

/* Fills buf with at most max bytes of the stream's frames, waiting a little (at most
 * 200 ms) for some; writes a keepalive comment after 10 s of silence. Returns the number
 * of bytes, 0 when there is nothing yet, -1 once the hub is closed. */
ssize_t hub_read(hub_client_t *cl, char *buf, size_t max);

/* The stream's connection closed: forgets it and frees it. */
void hub_leave(hub_client_t *cl);

/* A new log line, for the streams that want type "log" (self may be NULL). */
void hub_log(hub_t *self, json_int_t position, const char *text);

/* ---- The tap's side ---- */

/* A descriptor that becomes readable when the number of streams wanting bus frames went
 * from 0 to more or back. */
int hub_tap_fd(hub_t *self);

/* Reads that descriptor and says whether the monitor should be subscribed now, given
 * whether it is (subscribed). The feed's state follows under the same lock, so a stream
 * joining meanwhile is counted or wakes the tap again: FEED_ATTACHING when the tap is to
 * subscribe (FEED_LIVE comes with the first ATTACH record after that), FEED_OFF when it is
 * to unsubscribe. */
bool hub_tap_sync(hub_t *self, bool subscribed);

/* Sets the feed's state: FEED_NONE when there is no monitor (why says so, for the streams'
 * comment line), FEED_OFF once there is one again. */
void hub_feed(hub_t *self, int state, const char *why);

/* One monitor record, for every live stream that wants bus frames (and passes its
 * filters). */
void hub_record(hub_t *self, const rec_t *r);

#endif
