/* lc-gpio: the real chip, through libgpiod 1.6 (its v1 API, as Debian 12 ships it).
 *
 * Inputs are requested for both edges whatever the configuration says: the module filters
 * them, and needs every change to know the level a debounce settles on. With active-low,
 * the kernel reports edges and values already inverted (logical), as the module wants. */
#include "gpio.h"

#include <errno.h>
#include <fcntl.h>
#include <gpiod.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    gpio_backend_t base; /* first: the module holds a gpio_backend_t * */
    struct gpiod_chip *chip;
    gpio_line_t **lines;
    size_t nlines, caplines;
} real_t;


static const char *s_hint(int err)
{
    switch (err) {
    case ENOENT:
    case ENODEV:
        return "check 'chip' in the module's configuration: a name such as gpiochip0, a path "
               "such as /dev/gpiochip0, a label or a number (gpiodetect lists the chips); on a "
               "machine without GPIO use 'backend: sim'";
    case EACCES:
    case EPERM:
        return "the user running lc-gpio may not use it: add it to the group that owns "
               "/dev/gpiochip* (often 'gpio') or adjust the udev rules";
    case EBUSY:
        return "another program holds the line (gpioinfo shows its consumer): stop it, or "
               "choose another line";
    default:
        return "check the chip, the line and the kernel's GPIO support (gpioinfo)";
    }
}

static int s_open(gpio_backend_t *b, const char *chip, char *err, size_t size)
{
    real_t *r = (real_t *)b;
    snprintf(b->chip, sizeof b->chip, "%s", chip);
    errno = 0;
    r->chip = gpiod_chip_open_lookup(chip);
    if (!r->chip) {
        int e = errno ? errno : ENOENT;
        snprintf(err, size, "cannot open GPIO chip %s: %s; %s", chip, strerror(e), s_hint(e));
        return -1;
    }
    return 0;
}

static int s_request(gpio_backend_t *b, gpio_line_t *line, char *err, size_t size)
{
    real_t *r = (real_t *)b;
    char what[320];
    gpio_line_text(line, what, sizeof what);
    if (r->nlines == r->caplines) {
        size_t cap = r->caplines ? 2 * r->caplines : 8;
        gpio_line_t **lines = realloc(r->lines, cap * sizeof *lines);
        if (!lines) {
            snprintf(err, size, "GPIO chip %s, %s: out of memory", b->chip, what);
            return -1;
        }
        r->lines = lines;
        r->caplines = cap;
    }
    struct gpiod_line *gl = gpiod_chip_get_line(r->chip, line->offset);
    if (!gl) {
        snprintf(err, size,
                 "GPIO chip %s has no %s: it has %u lines, numbered from 0; check "
                 "the module's configuration (gpioinfo lists them)",
                 b->chip, what, gpiod_chip_num_lines(r->chip));
        return -1;
    }
    struct gpiod_line_request_config cfg = {0};
    if (line->active_low)
        cfg.flags |= GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW;
    if (line->output) {
        cfg.consumer = "lc-gpio-out";
        cfg.request_type = GPIOD_LINE_REQUEST_DIRECTION_OUTPUT;
    } else {
        cfg.consumer = "lc-gpio-in";
        cfg.request_type = GPIOD_LINE_REQUEST_EVENT_BOTH_EDGES;
        cfg.flags |= line->bias == GPIO_BIAS_PULL_UP     ? GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP
                     : line->bias == GPIO_BIAS_PULL_DOWN ? GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN
                                                         : GPIOD_LINE_REQUEST_FLAG_BIAS_DISABLE;
    }
    if (gpiod_line_request(gl, &cfg, 0) < 0) {
        int e = errno;
        snprintf(err, size, "cannot request %s of GPIO chip %s as an %s: %s; %s", what, b->chip,
                 line->output ? "output" : "input", strerror(e), s_hint(e));
        return -1;
    }
    line->hw = gl;
    if (line->output) {
        line->value = 0;
    } else {
        line->fd = gpiod_line_event_get_fd(gl);
        if (line->fd < 0) {
            snprintf(err, size, "GPIO chip %s, %s: no event descriptor: %s", b->chip, what,
                     strerror(errno));
            gpiod_line_release(gl);
            line->hw = NULL;
            return -1;
        }
        /* The loop must never block in a read: a wake-up without an event finds EAGAIN. */
        int fl = fcntl(line->fd, F_GETFL);
        if (fl >= 0)
            fcntl(line->fd, F_SETFL, fl | O_NONBLOCK);
    }
    r->lines[r->nlines++] = line;
    return 0;
}

static int s_set(gpio_backend_t *b, gpio_line_t *line, int value)
{
    (void)b;
    if (!line->hw)
        return -EINVAL;
    return gpiod_line_set_value(line->hw, value) < 0 ? -errno : 0;
}

static int s_get(gpio_backend_t *b, gpio_line_t *line)
{
    (void)b;
    if (!line->hw)
        return -EINVAL;
    int v = gpiod_line_get_value(line->hw);
    return v < 0 ? -errno : v;
}

static int s_read_edges(gpio_backend_t *b, int fd, gpio_edge_fn *fn, void *arg)
{
    real_t *r = (real_t *)b;
    gpio_line_t *line = NULL;
    for (size_t i = 0; i < r->nlines && !line; i++)
        if (!r->lines[i]->output && r->lines[i]->fd == fd)
            line = r->lines[i];
    struct gpiod_line_event ev[16];
    int n = gpiod_line_event_read_fd_multiple(fd, ev, 16);
    for (int i = 0; line && i < n; i++) {
        /* Kernels since 5.7 stamp v1 events with CLOCK_MONOTONIC. */
        uint64_t ts = (uint64_t)ev[i].ts.tv_sec * 1000000000u + (uint64_t)ev[i].ts.tv_nsec;
        fn(line, ev[i].event_type == GPIOD_LINE_EVENT_RISING_EDGE, ts, arg);
    }
    return n < 0 && errno != EAGAIN && errno != EINTR ? -errno : 0;
}

static void s_destroy(gpio_backend_t **b_p)
{
    real_t *r = (real_t *)*b_p;
    if (!r)
        return;
    for (size_t i = 0; i < r->nlines; i++) {
        if (r->lines[i]->hw)
            gpiod_line_release(r->lines[i]->hw);
        r->lines[i]->hw = NULL;
    }
    if (r->chip)
        gpiod_chip_close(r->chip);
    free(r->lines);
    free(r);
    *b_p = NULL;
}

gpio_backend_t *gpio_gpiod_new(void)
{
    real_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base = (gpio_backend_t){.kind = "gpiod",
                               .open = s_open,
                               .request = s_request,
                               .set = s_set,
                               .get = s_get,
                               .read_edges = s_read_edges,
                               .destroy = s_destroy};
    return &r->base;
}
