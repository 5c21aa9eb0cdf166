/* lc-gpio: the simulated chip, for machines without GPIO (the demo, the tests).
 *
 * Outputs: every transition is recorded with its CLOCK_MONOTONIC time in a bounded ring
 * (and, when configured, appended to a file as JSON lines, so that what happened up to the
 * very end can be read after the process is gone).
 * Inputs: each has a physical level, idle as its bias says. A change of level becomes an
 * edge written into a pipe, which the module watches on its loop and reads through
 * read_edges(), exactly as it reads libgpiod's event descriptors: edge filter, active-low
 * and debounce are then the module's common code, the same for both chips. */
#include "gpio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    unsigned offset;
    int value;
    uint64_t ts_ns;
    gpio_line_t *line; /* for its name */
} entry_t;

/* What travels through the pipe: one edge. */
typedef struct {
    unsigned offset;
    int rising;
    uint64_t ts_ns;
} edge_rec_t;

typedef struct {
    gpio_backend_t base; /* first: the module holds a gpio_backend_t * */
    int pipe_rd, pipe_wr;
    gpio_line_t **lines;
    size_t nlines, caplines;
    int *physical; /* per line (inputs): the level on the pin */
    entry_t *ring;
    size_t ring_max, ring_start, ring_len;
    FILE *log_file;
} sim_t;

uint64_t gpio_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int s_index(sim_t *s, gpio_line_t *line)
{
    for (size_t i = 0; i < s->nlines; i++)
        if (s->lines[i] == line)
            return (int)i;
    return -1;
}

static int s_open(gpio_backend_t *b, const char *chip, char *err, size_t size)
{
    (void)err;
    (void)size;
    snprintf(b->chip, sizeof b->chip, "%s", chip);
    return 0;
}

static void s_record(sim_t *s, gpio_line_t *line, int value)
{
    entry_t e = {line->offset, value, gpio_now_ns(), line};
    if (s->ring_len == s->ring_max) {
        s->ring[s->ring_start] = e;
        s->ring_start = (s->ring_start + 1) % s->ring_max;
    } else {
        s->ring[(s->ring_start + s->ring_len++) % s->ring_max] = e;
    }
    if (s->log_file) {
        /* One line per transition, flushed: a reader after the end sees every one. */
        json_t *o = json_pack("{s:i, s:o, s:i, s:I}", "line", (int)line->offset, "line_name",
                              line->name ? json_string(line->name) : json_null(), "value", value,
                              "timestamp_ns", (json_int_t)e.ts_ns);
        if (o && json_dumpf(o, s->log_file, JSON_COMPACT) == 0)
            fputc('\n', s->log_file);
        json_decref(o);
        fflush(s->log_file);
    }
}

static int s_request(gpio_backend_t *b, gpio_line_t *line, char *err, size_t size)
{
    sim_t *s = (sim_t *)b;
    if (s->nlines == s->caplines) {
        size_t cap = s->caplines ? 2 * s->caplines : 8;
        gpio_line_t **lines = realloc(s->lines, cap * sizeof *lines);
        int *phys = lines ? realloc(s->physical, cap * sizeof *phys) : NULL;
        if (lines)
            s->lines = lines;
        if (!lines || !phys) {
            snprintf(err, size, "simulated chip %s: out of memory for line %u", b->chip,
                     line->offset);
            return -1;
        }
        s->physical = phys;
        s->caplines = cap;
    }
    s->lines[s->nlines] = line;
    if (line->output) {
        s->physical[s->nlines++] = line->active_low;
        line->value = 0;
        s_record(s, line, 0);
    } else {
        /* An open input reads low, like a real pin without a pull. */
        s->physical[s->nlines++] = line->bias == GPIO_BIAS_PULL_UP ? 1 : 0;
        line->fd = s->pipe_rd;
    }
    return 0;
}

static int s_set(gpio_backend_t *b, gpio_line_t *line, int value)
{
    sim_t *s = (sim_t *)b;
    int i = s_index(s, line);
    if (i < 0 || !line->output)
        return -EINVAL;
    s->physical[i] = value ^ line->active_low;
    s_record(s, line, value);
    return 0;
}

static int s_get(gpio_backend_t *b, gpio_line_t *line)
{
    sim_t *s = (sim_t *)b;
    int i = s_index(s, line);
    if (i < 0)
        return -EINVAL;
    return s->physical[i] ^ line->active_low;
}

int gpio_sim_drive(gpio_backend_t *b, gpio_line_t *line, int physical, char *err, size_t size)
{
    sim_t *s = (sim_t *)b;
    int i = s_index(s, line);
    if (i < 0 || line->output) {
        snprintf(err, size, "input line not handled");
        return -1;
    }
    if (s->physical[i] == physical)
        return 0;
    edge_rec_t rec = {line->offset, (physical ^ line->active_low) == 1, gpio_now_ns()};
    /* A record is far below PIPE_BUF: written whole or not at all. */
    if (write(s->pipe_wr, &rec, sizeof rec) != (ssize_t)sizeof rec) {
        snprintf(err, size, "simulated chip %s: line %u: too many edges waiting (%s)", b->chip,
                 line->offset, strerror(errno));
        return -1;
    }
    s->physical[i] = physical;
    return 1;
}

static int s_read_edges(gpio_backend_t *b, int fd, gpio_edge_fn *fn, void *arg)
{
    sim_t *s = (sim_t *)b;
    edge_rec_t recs[64];
    ssize_t n = read(fd, recs, sizeof recs);
    for (ssize_t k = 0; n > 0 && k < n / (ssize_t)sizeof recs[0]; k++) {
        for (size_t i = 0; i < s->nlines; i++)
            if (!s->lines[i]->output && s->lines[i]->offset == recs[k].offset)
                fn(s->lines[i], recs[k].rising != 0, recs[k].ts_ns, arg);
    }
    return n < 0 && errno != EAGAIN && errno != EINTR ? -errno : 0;
}

json_t *gpio_sim_log(gpio_backend_t *b, bool clear)
{
    sim_t *s = (sim_t *)b;
    json_t *list = json_array();
    for (size_t k = 0; k < s->ring_len; k++) {
        entry_t *e = &s->ring[(s->ring_start + k) % s->ring_max];
        json_array_append_new(list,
                              json_pack("{s:i, s:o, s:i, s:I}", "line", (int)e->offset, "line_name",
                                        e->line->name ? json_string(e->line->name) : json_null(),
                                        "value", e->value, "timestamp_ns", (json_int_t)e->ts_ns));
    }
    if (clear)
        s->ring_start = s->ring_len = 0;
    return list;
}

static void s_destroy(gpio_backend_t **b_p)
{
    sim_t *s = (sim_t *)*b_p;
    if (!s)
        return;
    if (s->pipe_rd >= 0)
        close(s->pipe_rd);
    if (s->pipe_wr >= 0)
        close(s->pipe_wr);
    if (s->log_file)
        fclose(s->log_file);
    free(s->lines);
    free(s->physical);
    free(s->ring);
    free(s);
    *b_p = NULL;
}

gpio_backend_t *gpio_sim_new(const char *log_file, size_t log_max, char *err, size_t size)
{
    sim_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, size, "simulated chip: out of memory");
        return NULL;
    }
    s->pipe_rd = s->pipe_wr = -1;
    s->base = (gpio_backend_t){.kind = "sim",
                               .open = s_open,
                               .request = s_request,
                               .set = s_set,
                               .get = s_get,
                               .read_edges = s_read_edges,
                               .destroy = s_destroy};
    gpio_backend_t *b = &s->base;
    s->ring_max = log_max > 0 ? log_max : 1;
    s->ring = calloc(s->ring_max, sizeof *s->ring);
    int fds[2];
    if (!s->ring || pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, size, "simulated chip: %s", strerror(errno ? errno : ENOMEM));
        s_destroy(&b);
        return NULL;
    }
    s->pipe_rd = fds[0];
    s->pipe_wr = fds[1];
    if (log_file) {
        s->log_file = fopen(log_file, "a");
        if (!s->log_file) {
            snprintf(err, size, "simulated chip: cannot open sim_log_file %s: %s", log_file,
                     strerror(errno));
            s_destroy(&b);
            return NULL;
        }
    }
    return b;
}
