#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *prog = "lc";

void die(int status, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

json_t *args_from_argv(int argc, char **argv, char *err, size_t errlen)
{
    if (argc == 1 && argv[0][0] == '{') {
        json_error_t jerr;
        json_t *obj = json_loads(argv[0], 0, &jerr);
        if (!obj) {
            snprintf(err, errlen, "arguments are not valid JSON: %s (column %d)", jerr.text,
                     jerr.column);
            return NULL;
        }
        if (!json_is_object(obj)) {
            json_decref(obj);
            snprintf(err, errlen, "arguments must be a JSON object");
            return NULL;
        }
        return obj;
    }
    json_t *obj = json_object();
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            snprintf(err, errlen, "'%s' is neither key=value nor a JSON object", argv[i]);
            json_decref(obj);
            return NULL;
        }
        char key[256];
        size_t klen = (size_t)(eq - argv[i]);
        if (klen >= sizeof key) {
            snprintf(err, errlen, "key in '%.40s...' is too long", argv[i]);
            json_decref(obj);
            return NULL;
        }
        memcpy(key, argv[i], klen);
        key[klen] = 0;
        const char *text = eq + 1;
        json_t *value = json_loads(text, JSON_DECODE_ANY, NULL);
        /* JSON strings must be typed as plain words: "x" keeps its quotes as text. */
        if (!value || json_is_string(value)) {
            json_decref(value);
            value = json_string(text);
        }
        if (!value) {
            snprintf(err, errlen, "value of '%s' is not valid UTF-8", key);
            json_decref(obj);
            return NULL;
        }
        json_object_set_new(obj, key, value);
    }
    return obj;
}
