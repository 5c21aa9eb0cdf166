/* The gauges other modules set through prometheus.set_gauge_value (the seed's method and
 * argument names), kept under a mutex shared by the method and the scrapes. */
#ifndef LC_PROMETHEUS_GAUGES_H
#define LC_PROMETHEUS_GAUGES_H

#include "expo.h"

#include <jansson.h>
#include <stddef.h>

/* Bounds, so that a module cannot grow lc-prometheus without limit. */
#define GAUGES_MAX_METRICS 1000
#define GAUGES_MAX_SERIES 10000
#define GAUGES_MAX_NAME 200  /* bytes of a metric or label name */
#define GAUGES_MAX_TEXT 1024 /* bytes of a label value or of the documentation */

#define GAUGES_NO_DOC "[no documentation provided]"

typedef struct gauges gauges_t;

/* Caller owns the result (gauges_destroy()); NULL when out of memory. */
gauges_t *gauges_new(void);
void gauges_destroy(gauges_t **self_p);

/* set_gauge_value's arguments (borrowed): metric, value, documentation and any
 * label_<name>. Creates the metric at its first use (with that documentation and that set
 * of label names, both kept), then sets the value when one is given (0 included).
 * Returns 0, or -1 after writing the reason into err. */
int gauges_set(gauges_t *self, json_t *args, char *err, size_t errlen);

/* Writes every metric, in the order of their first use, each series in its own order. */
void gauges_write(gauges_t *self, expo_t *e);

#endif
