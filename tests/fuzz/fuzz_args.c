/* libFuzzer harness: `lc`'s arguments (args_from_argv): the input is split at NUL bytes
 * into words, read as one JSON object or as key=value words. */
#include "common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[64];
    int argc = 0;
    for (size_t at = 0; at <= size && argc < 64;) {
        argv[argc++] = copy + at;
        at += strlen(copy + at) + 1;
    }
    if (size == 0)
        argc = 0;
    char err[256];
    json_t *args = args_from_argv(argc, argv, err, sizeof err);
    if (args) {
        char *text = json_dumps(args, JSON_COMPACT);
        free(text);
        json_decref(args);
    }
    free(copy);
    return 0;
}
