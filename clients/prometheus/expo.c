/* The Prometheus text format, version 0.0.4 (see expo.h). */
#include "expo.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int expo_open(expo_t *e)
{
    e->text = NULL;
    e->len = 0;
    e->f = open_memstream(&e->text, &e->len);
    return e->f ? 0 : -1;
}

char *expo_close(expo_t *e, size_t *len)
{
    bool ok = !ferror(e->f);
    ok = fclose(e->f) == 0 && ok;
    e->f = NULL;
    if (!ok) {
        free(e->text);
        e->text = NULL;
        return NULL;
    }
    *len = e->len;
    return e->text;
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static void s_escaped(FILE *f, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"' && quote)
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

void expo_family(expo_t *e, const char *name, const char *type, const char *help)
{
    fprintf(e->f, "# HELP %s ", name);
    s_escaped(e->f, help, false);
    fprintf(e->f, "\n# TYPE %s %s\n", name, type);
}

static void s_name_labels(expo_t *e, const char *name, const char *const *labels)
{
    fputs(name, e->f);
    if (!labels || !labels[0])
        return;
    fputc('{', e->f);
    for (size_t i = 0; labels[i] && labels[i + 1]; i += 2) {
        fprintf(e->f, "%s%s=\"", i ? "," : "", labels[i]);
        s_escaped(e->f, labels[i + 1], true);
        fputc('"', e->f);
    }
    fputc('}', e->f);
}

void expo_sample(expo_t *e, const char *name, const char *const *labels, double value)
{
    char num[32];
    expo_number(num, sizeof num, value);
    s_name_labels(e, name, labels);
    fprintf(e->f, " %s\n", num);
}

void expo_sample_u(expo_t *e, const char *name, const char *const *labels, uint64_t value)
{
    s_name_labels(e, name, labels);
    fprintf(e->f, " %" PRIu64 "\n", value);
}

void expo_number(char *buf, size_t size, double value)
{
    if (isnan(value)) {
        snprintf(buf, size, "NaN");
    } else if (isinf(value)) {
        snprintf(buf, size, value > 0 ? "+Inf" : "-Inf");
    } else {
        /* The shortest of %.15g .. %.17g that reads back as the same double. */
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(buf, size, "%.*g", digits, value);
            if (strtod(buf, NULL) == value)
                break;
        }
    }
}

static bool s_name_chars(const char *name, bool colon)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++) {
        char ch = *p;
        bool letter = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                      (colon && ch == ':');
        bool digit = ch >= '0' && ch <= '9';
        if (!letter && !(digit && p != name))
            return false;
    }
    return true;
}

bool expo_metric_name_ok(const char *name)
{
    return s_name_chars(name, true);
}

bool expo_label_name_ok(const char *name)
{
    return s_name_chars(name, false) && strncmp(name, "__", 2) != 0;
}
