/* Runs a fuzzing harness over files without libFuzzer: the test suite's replay of each
 * checked-in corpus, built with the project's usual compiler and sanitizers.
 *   fuzz-replay-NAME FILE|FOLDER...   (exit 0 when every input ran; a crash aborts) */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int s_run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz-replay: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *more = realloc(data, cap);
            if (!more) {
                free(data);
                fclose(f);
                return -1;
            }
            data = more;
        }
        size_t n = fread(data + size, 1, cap - size, f);
        if (n == 0)
            break;
        size += n;
    }
    fclose(f);
    /* An exact-size copy, so that reading past the input is caught. */
    uint8_t *exact = malloc(size ? size : 1);
    if (exact && size)
        memcpy(exact, data, size);
    free(data);
    if (!exact)
        return -1;
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 0;
}

static int s_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("Usage: %s FILE|FOLDER...\nRuns the harness over every file given or found in "
               "the folders (not recursive).\n", argv[0]);
        return argc < 2 ? 2 : 0;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    long count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "fuzz-replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (s_run_file(argv[i]) < 0)
                return 1;
            count++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "fuzz-replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        char **names = NULL;
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char **more = realloc(names, (n + 1) * sizeof *names);
            if (!more)
                return 1;
            names = more;
            names[n] = malloc(strlen(argv[i]) + strlen(e->d_name) + 2);
            sprintf(names[n], "%s/%s", argv[i], e->d_name);
            n++;
        }
        closedir(d);
        /* Sorted: the harnesses keep state between inputs, so the order is part of a run. */
        qsort(names, n, sizeof *names, s_compare);
        for (size_t j = 0; j < n; j++) {
            if (s_run_file(names[j]) < 0)
                return 1;
            count++;
            free(names[j]);
        }
        free(names);
    }
    printf("%s: %ld inputs, no crash\n", argv[0], count);
    return 0;
}
