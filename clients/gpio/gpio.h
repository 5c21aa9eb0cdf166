/* lc-gpio: what the module (gpio.c) and its two backends (sim.c, the simulated chip;
 * gpiod.c, libgpiod 1.6) share. docs/modules/gpio.md describes the module. */
#ifndef LC_GPIO_H
#define LC_GPIO_H

#include "lc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Output states, with the seed's numbers. */
enum {
    GPIO_OFF = 0,
    GPIO_BLINK_VERYSLOW = 1,
    GPIO_BLINK_SLOW = 2,
    GPIO_BLINK = 3,
    GPIO_BLINK_FAST = 4,
    GPIO_BLINK_VERYFAST = 5,
    GPIO_ON = 6,
    GPIO_NSTATES
};

enum { GPIO_BIAS_DISABLED, GPIO_BIAS_PULL_UP, GPIO_BIAS_PULL_DOWN };
enum { GPIO_EDGE_RISING = 1, GPIO_EDGE_FALLING = 2, GPIO_EDGE_BOTH = 3 };

/* One configured line. Values are logical (1: active), active-low already applied. */
typedef struct gpio_line {
    unsigned offset;
    char *name; /* NULL when the configuration gives none */
    bool output;
    bool active_low;
    /* inputs */
    int bias;        /* GPIO_BIAS_* */
    int edges;       /* GPIO_EDGE_*: which edges become events */
    int debounce_ms; /* 0: every edge at once */
    int level;       /* the last settled level (reported or not) */
    int64_t seq;     /* events sent for this line */
    int debounce_timer;
    uint64_t last_edge_ns;
    int fd; /* its edge descriptor (shared by all inputs of the simulated chip), or -1 */
    /* outputs */
    int initial; /* state at start-up */
    int state;   /* GPIO_OFF .. GPIO_ON */
    int value;   /* last written */
    void *hw;    /* the backend's handle */
} gpio_line_t;

/* Called by a backend for each edge it reads: rising is the logical direction, ts_ns its
 * CLOCK_MONOTONIC time. */
typedef void(gpio_edge_fn)(gpio_line_t *line, bool rising, uint64_t ts_ns, void *arg);

/* A chip: the real one through libgpiod, or the simulated one. Functions that fail fill
 * err with a message naming the chip and the line and return -1. */
typedef struct gpio_backend gpio_backend_t;
struct gpio_backend {
    const char *kind; /* "gpiod" or "sim" */
    char chip[256];
    int (*open)(gpio_backend_t *b, const char *chip, char *err, size_t size);
    /* Requests a line as an output (written 0) or as an input reporting both edges on
     * line->fd, and keeps a pointer to it. */
    int (*request)(gpio_backend_t *b, gpio_line_t *line, char *err, size_t size);
    int (*set)(gpio_backend_t *b, gpio_line_t *line, int value); /* 0 or -errno */
    int (*get)(gpio_backend_t *b, gpio_line_t *line);            /* 0, 1 or -errno */
    /* Reads the edges waiting on fd (without blocking) and calls fn for each. Returns 0, or
     * -errno when the descriptor failed (the chip went away): it will not recover. */
    int (*read_edges)(gpio_backend_t *b, int fd, gpio_edge_fn *fn, void *arg);
    /* Releases the lines and the chip, frees b and sets *b_p to NULL. */
    void (*destroy)(gpio_backend_t **b_p);
};

/* The real chip (gpiod.c). */
gpio_backend_t *gpio_gpiod_new(void);

/* "line 17 (Output17_ForBlinking)" or "line 17", into buf, for messages. */
const char *gpio_line_text(const gpio_line_t *line, char *buf, size_t size);

/* The simulated chip (sim.c): records every output transition (at most log_max, the
 * oldest dropped first; also appended to log_file as JSON lines when it is not NULL). */
gpio_backend_t *gpio_sim_new(const char *log_file, size_t log_max, char *err, size_t size);
/* The recorded transitions, oldest first: [{line, line_name, value, timestamp_ns}].
 * Caller owns the result. */
json_t *gpio_sim_log(gpio_backend_t *b, bool clear);
/* Sets the physical level of input `line`; a change makes an edge on its descriptor.
 * Returns 1 for an edge, 0 for none, -1 (err filled) on failure. */
int gpio_sim_drive(gpio_backend_t *b, gpio_line_t *line, int physical, char *err, size_t size);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t gpio_now_ns(void);

#endif
