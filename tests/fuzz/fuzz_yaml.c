/* libFuzzer harness: the YAML loader (cfg_parse) and the system file built on it
 * (system_load, lc-launch's reading of modules, programs, order and settings), with
 * every typed getter on a few paths of the tree. */
#include "cfg.h"
#include "system.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfg_error_t err;
    cfg_node_t *root = cfg_parse((const char *)data, size, "fuzz.yaml", &err);
    if (root) {
        static const char *paths[] = {"", "modules", "modules.a.config.x", "bus.endpoint", "a.0.b",
                                      "/x"};
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
            const char *s;
            long long n;
            double d;
            bool b;
            cfg_get_str(root, paths[i], "d", &s, &err);
            cfg_get_int(root, paths[i], 0, &n, &err);
            cfg_get_double(root, paths[i], 0, &d, &err);
            cfg_get_bool(root, paths[i], false, &b, &err);
        }
        cfg_free(&root);
    }
    /* The system file reads from a path: the input goes to an in-memory file. */
    int fd = memfd_create("fuzz.yaml", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    system_t *sys = system_load(path, &err);
    if (sys) {
        system_find(sys, "a");
        system_free(&sys);
    }
    close(fd);
    return 0;
}
