/* Gauges set through set_gauge_value (see gauges.h). */
#include "gauges.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 16

typedef struct {
    char **values; /* one per label name of the metric */
    double value;
} series_t;

typedef struct {
    char *name, *help;
    char **labels; /* sorted */
    size_t nlabels;
    series_t *series;
    size_t nseries, cap;
} metric_t;

struct gauges {
    pthread_mutex_t lock;
    metric_t *metrics;
    size_t nmetrics, cap;
    size_t nseries; /* over all metrics */
};

gauges_t *gauges_new(void)
{
    gauges_t *self = calloc(1, sizeof *self);
    if (self)
        pthread_mutex_init(&self->lock, NULL);
    return self;
}

static void s_strings_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Frees what m holds, and its series from the count over all metrics. */
static void s_metric_free(gauges_t *self, metric_t *m)
{
    for (size_t s = 0; s < m->nseries; s++)
        s_strings_free(m->series[s].values, m->nlabels);
    self->nseries -= m->nseries;
    free(m->series);
    s_strings_free(m->labels, m->nlabels);
    free(m->name);
    free(m->help);
}

void gauges_destroy(gauges_t **self_p)
{
    gauges_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->nmetrics; i++)
        s_metric_free(self, &self->metrics[i]);
    free(self->metrics);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

/* One label of a call: its name (after "label_") and its value as text. */
typedef struct {
    const char *name;
    char value[64];
    const char *text; /* value, or the caller's string */
} label_t;

static int s_by_name(const void *a, const void *b)
{
    return strcmp(((const label_t *)a)->name, ((const label_t *)b)->name);
}

/* "{a, b}" for messages. */
static void s_names_text(char *buf, size_t size, const char *const *names, size_t stride, size_t n)
{
    size_t off = (size_t)snprintf(buf, size, "{");
    for (size_t i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? ", " : "",
                                *(const char *const *)((const char *)names + i * stride));
    if (off < size)
        snprintf(buf + off, size - off, "}");
}

/* A label's value as text: strings as they are, numbers and booleans written out (the
 * seed's label_instance=1 becomes "1"). */
static int s_label_value(label_t *l, json_t *v, char *err, size_t errlen)
{
    if (json_is_string(v)) {
        l->text = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(l->value, sizeof l->value, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        l->text = l->value;
    } else if (json_is_real(v)) {
        expo_number(l->value, sizeof l->value, json_real_value(v));
        l->text = l->value;
    } else if (json_is_boolean(v)) {
        l->text = json_is_true(v) ? "true" : "false";
    } else {
        snprintf(err, errlen,
                 "set_gauge_value: label_%s must be a string, a number or a boolean, not %s",
                 l->name, json_is_null(v) ? "null" : "an object or an array");
        return -1;
    }
    if (strlen(l->text) > GAUGES_MAX_TEXT) {
        snprintf(err, errlen, "set_gauge_value: the value of label_%s is longer than %d bytes",
                 l->name, GAUGES_MAX_TEXT);
        return -1;
    }
    return 0;
}

static metric_t *s_find(gauges_t *self, const char *name)
{
    for (size_t i = 0; i < self->nmetrics; i++)
        if (strcmp(self->metrics[i].name, name) == 0)
            return &self->metrics[i];
    return NULL;
}

static char **s_strdup_all(const label_t *labels, size_t n, bool names)
{
    char **v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++)
        if (!(v[i] = strdup(names ? labels[i].name : labels[i].text))) {
            s_strings_free(v, i);
            return NULL;
        }
    return v;
}

static int s_add_series(gauges_t *self, metric_t *m, const label_t *labels, double value)
{
    if (m->nseries == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        series_t *more = realloc(m->series, cap * sizeof *more);
        if (!more)
            return -1;
        m->series = more;
        m->cap = cap;
    }
    char **values = s_strdup_all(labels, m->nlabels, false);
    if (!values)
        return -1;
    m->series[m->nseries++] = (series_t){values, value};
    self->nseries++;
    return 0;
}

static metric_t *s_create(gauges_t *self, const char *name, const char *help, const label_t *labels,
                          size_t n)
{
    if (self->nmetrics == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        metric_t *more = realloc(self->metrics, cap * sizeof *more);
        if (!more)
            return NULL;
        self->metrics = more;
        self->cap = cap;
    }
    metric_t m = {.name = strdup(name), .help = strdup(help), .nlabels = n};
    m.labels = s_strdup_all(labels, n, true);
    if (!m.name || !m.help || !m.labels) {
        free(m.name);
        free(m.help);
        s_strings_free(m.labels, n);
        return NULL;
    }
    self->metrics[self->nmetrics] = m;
    return &self->metrics[self->nmetrics++];
}

/* Checks the arguments (no lock needed): fills metric, value, help and the sorted labels. */
static int s_parse(json_t *args, const char **metric, json_t **value, const char **help,
                   label_t *labels, size_t *nlabels, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    *metric = NULL;
    *value = NULL;
    *help = GAUGES_NO_DOC;
    *nlabels = 0;
    json_object_foreach(args, key, v)
    {
        if (strcmp(key, "metric") == 0) {
            *metric = json_string_value(v);
        } else if (strcmp(key, "value") == 0) {
            *value = v;
        } else if (strcmp(key, "documentation") == 0) {
            if (!json_is_string(v) && !json_is_null(v)) {
                snprintf(err, errlen, "set_gauge_value: documentation must be a string");
                return -1;
            }
            if (json_is_string(v))
                *help = json_string_value(v);
            if (strlen(*help) > GAUGES_MAX_TEXT) {
                snprintf(err, errlen, "set_gauge_value: documentation longer than %d bytes",
                         GAUGES_MAX_TEXT);
                return -1;
            }
        } else if (strncmp(key, "label_", 6) == 0) {
            if (*nlabels == MAX_LABELS) {
                snprintf(err, errlen, "set_gauge_value: at most %d labels per metric", MAX_LABELS);
                return -1;
            }
            label_t *l = &labels[(*nlabels)++];
            l->name = key + 6;
            if (strlen(l->name) > GAUGES_MAX_NAME) {
                snprintf(err, errlen, "set_gauge_value: a label name longer than %d bytes",
                         GAUGES_MAX_NAME);
                return -1;
            }
            if (!expo_label_name_ok(l->name)) {
                snprintf(err, errlen,
                         "set_gauge_value: '%s' does not name a valid label: after label_ "
                         "comes a name of letters, digits and '_', not starting with a digit "
                         "or with '__'",
                         key);
                return -1;
            }
            if (s_label_value(l, v, err, errlen) < 0)
                return -1;
        } else {
            snprintf(err, errlen,
                     "set_gauge_value: unexpected argument '%s' (it takes metric, value, "
                     "documentation and label_<name>)",
                     key);
            return -1;
        }
    }
    if (!*metric) {
        snprintf(err, errlen,
                 "set_gauge_value: argument 'metric' (the metric's name, a "
                 "string) is required");
        return -1;
    }
    if (strlen(*metric) > GAUGES_MAX_NAME) {
        snprintf(err, errlen, "set_gauge_value: a metric name longer than %d bytes",
                 GAUGES_MAX_NAME);
        return -1;
    }
    if (!expo_metric_name_ok(*metric)) {
        snprintf(err, errlen,
                 "set_gauge_value: '%s' is not a valid metric name: letters, digits, '_' and "
                 "':', not starting with a digit",
                 *metric);
        return -1;
    }
    if (strncmp(*metric, "lc_", 3) == 0 || strncmp(*metric, "process_", 8) == 0) {
        snprintf(err, errlen,
                 "set_gauge_value: metric '%s': names starting with lc_ or process_ are "
                 "lc-prometheus' own; choose another name",
                 *metric);
        return -1;
    }
    if (*value && !json_is_number(*value) && !json_is_boolean(*value) && !json_is_null(*value)) {
        snprintf(err, errlen, "set_gauge_value: value of '%s' must be a number", *metric);
        return -1;
    }
    if (json_is_null(*value))
        *value = NULL;
    qsort(labels, *nlabels, sizeof *labels, s_by_name);
    for (size_t i = 1; i < *nlabels; i++)
        if (strcmp(labels[i - 1].name, labels[i].name) == 0) {
            snprintf(err, errlen, "set_gauge_value: label '%s' given twice", labels[i].name);
            return -1;
        }
    return 0;
}

int gauges_set(gauges_t *self, json_t *args, char *err, size_t errlen)
{
    const char *name, *help;
    json_t *value;
    label_t labels[MAX_LABELS];
    size_t n;
    if (s_parse(args, &name, &value, &help, labels, &n, err, errlen) < 0)
        return -1;
    double v = json_is_boolean(value) ? (json_is_true(value) ? 1 : 0) : json_number_value(value);
    int rc = -1;
    bool created = false;
    pthread_mutex_lock(&self->lock);
    metric_t *m = s_find(self, name);
    if (m) {
        bool same = m->nlabels == n;
        for (size_t i = 0; same && i < n; i++)
            same = strcmp(m->labels[i], labels[i].name) == 0;
        if (!same) {
            char had[256], got[256];
            s_names_text(had, sizeof had, (const char *const *)m->labels, sizeof(char *),
                         m->nlabels);
            s_names_text(got, sizeof got, &labels[0].name, sizeof(label_t), n);
            snprintf(err, errlen,
                     "set_gauge_value: metric '%s' has the labels %s since its first use; this "
                     "call gives %s",
                     name, had, got);
            goto done;
        }
    } else {
        if (self->nmetrics >= GAUGES_MAX_METRICS) {
            snprintf(err, errlen,
                     "set_gauge_value: already %d metrics, the most lc-prometheus "
                     "keeps; '%s' is not created",
                     GAUGES_MAX_METRICS, name);
            goto done;
        }
        if (!(m = s_create(self, name, help, labels, n))) {
            snprintf(err, errlen, "set_gauge_value: out of memory");
            goto done;
        }
        created = true;
        /* As the Prometheus client library has it: a gauge without labels exists (at 0)
         * from its creation, a labelled one shows each label set once it is set. */
        if (n == 0 && s_add_series(self, m, labels, 0) < 0) {
            snprintf(err, errlen, "set_gauge_value: out of memory");
            goto done;
        }
    }
    if (value) {
        series_t *s = NULL;
        for (size_t i = 0; i < m->nseries && !s; i++) {
            bool same = true;
            for (size_t l = 0; same && l < n; l++)
                same = strcmp(m->series[i].values[l], labels[l].text) == 0;
            if (same)
                s = &m->series[i];
        }
        if (s) {
            s->value = v;
        } else if (self->nseries >= GAUGES_MAX_SERIES) {
            snprintf(err, errlen,
                     "set_gauge_value: already %d label sets in all, the most "
                     "lc-prometheus keeps; this one of '%s' is not created",
                     GAUGES_MAX_SERIES, name);
            goto done;
        } else if (s_add_series(self, m, labels, v) < 0) {
            snprintf(err, errlen, "set_gauge_value: out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    /* A refused call changes nothing: a metric it created (the last one) goes, or its
     * label names would stay fixed by a call that failed. */
    if (rc < 0 && created)
        s_metric_free(self, &self->metrics[--self->nmetrics]);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

void gauges_write(gauges_t *self, expo_t *e)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->nmetrics; i++) {
        metric_t *m = &self->metrics[i];
        expo_family(e, m->name, "gauge", m->help);
        for (size_t s = 0; s < m->nseries; s++) {
            const char *pairs[2 * MAX_LABELS + 1];
            for (size_t l = 0; l < m->nlabels; l++) {
                pairs[2 * l] = m->labels[l];
                pairs[2 * l + 1] = m->series[s].values[l];
            }
            pairs[2 * m->nlabels] = NULL;
            expo_sample(e, m->name, pairs, m->series[s].value);
        }
    }
    pthread_mutex_unlock(&self->lock);
}
