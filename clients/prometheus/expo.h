/* The Prometheus text format (version 0.0.4) for lc-prometheus: a family's HELP and TYPE
 * lines, samples with escaped labels, numbers as Prometheus writes them, and the rules
 * for metric and label names. */
#ifndef LC_PROMETHEUS_EXPO_H
#define LC_PROMETHEUS_EXPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXPO_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* An exposition being written into memory. */
typedef struct {
    FILE *f;
    char *text;
    size_t len;
} expo_t;

/* Opens an empty exposition. Returns 0, or -1 when out of memory. */
int expo_open(expo_t *e);

/* Ends it: returns the text (caller frees) and its length in *len; NULL when out of
 * memory. The exposition is closed either way. */
char *expo_close(expo_t *e, size_t *len);

/* "# HELP name help" and "# TYPE name type": type is counter, gauge or histogram. */
void expo_family(expo_t *e, const char *name, const char *type, const char *help);

/* "name{k="v",...} value": labels is NULL, or pairs of name and value ended by NULL. */
void expo_sample(expo_t *e, const char *name, const char *const *labels, double value);

/* The same for a counter's exact integer value. */
void expo_sample_u(expo_t *e, const char *name, const char *const *labels, uint64_t value);

/* value as Prometheus reads it: the shortest decimal that reads back the same, or NaN,
 * +Inf, -Inf. buf needs 32 bytes. */
void expo_number(char *buf, size_t size, double value);

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
bool expo_metric_name_ok(const char *name);

/* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved for Prometheus itself). */
bool expo_label_name_ok(const char *name);

#endif
