#include "common.h"

#include <getopt.h>
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

int module_options(lc_client_t **client, int argc, char **argv, void (*usage)(FILE *out))
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int opt, status = -1;
    while (status < 0 && (opt = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            status = 0;
        } else if (opt == 'V') {
            printf("%s %s\n", prog, LC_VERSION);
            status = 0;
        } else {
            fprintf(stderr, "Try '%s --help'.\n", prog);
            status = 2;
        }
    }
    if (status < 0 && optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'; try --help\n", prog, argv[optind]);
        status = 2;
    }
    if (status >= 0)
        lc_client_destroy(client);
    return status;
}
