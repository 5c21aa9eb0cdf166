/* lc-broker: the ledgers of modules on ipc (wire.h, protocol.md "The ledger"). A module's
 * ledger is a memfd it keeps open; the broker opens its own reference through
 * /proc/PID/fd/N at registration, so it can still read it after the process has died, and
 * reads it only then: what the process had started and finished, including completions
 * whose DONE died with it. */
#include "broker_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int broker_ledger_open(broker_t *self, const module_t *m, json_t *hello)
{
    json_t *v = json_object_get(hello, "ledger");
    if (!json_is_integer(v) || m->pidfd < 0)
        return -1; /* no ledger offered, or no process the kernel vouches for (tcp) */
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%lld", m->pid, (long long)json_integer_value(v));
    /* Only a memfd that liblc made: a module must not get the broker to open its devices
     * or FIFOs (an open could block or have effects). */
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0 || (target[n] = '\0', strncmp(target, "/memfd:lc-ledger", 16) != 0)) {
        broker_log(self, L_DEBUG, "module %s: no ledger at %s (%s)", m->name, path,
                   n < 0 ? strerror(errno) : "not a ledger");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    char magic[8];
    const char *why = fd < 0                                        ? strerror(errno)
                      : fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ? "not a regular file"
                      : pread(fd, magic, 8, 0) != 8 || memcmp(magic, LC_LEDGER_MAGIC, 8) != 0
                          ? "not a ledger"
                          : NULL;
    /* The pid must still be the process that registered: its pidfd is quiet while it lives. */
    struct pollfd p = {.fd = m->pidfd, .events = POLLIN};
    if (!why && poll(&p, 1, 0) != 0)
        why = "the process has ended";
    if (why) {
        broker_log(self, L_DEBUG, "module %s: cannot use the ledger at %s: %s", m->name, path,
                   why);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

uint8_t *broker_ledger_read(int fd, uint32_t *nslots, bool *complete)
{
    uint8_t hdr[LC_LEDGER_HDR];
    if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
        memcmp(hdr, LC_LEDGER_MAGIC, 8) != 0)
        return NULL;
    uint32_t n, flags;
    memcpy(&n, hdr + 8, 4);
    memcpy(&flags, hdr + 12, 4);
    if (n == 0 || n > LC_LEDGER_MAX_SLOTS)
        return NULL;
    size_t size = (size_t)n * LC_LEDGER_SLOT;
    uint8_t *slots = malloc(size);
    /* A short read (the module shrank its memfd) leaves the ledger unusable, not the broker
     * hurt: it is read, never mapped. */
    if (!slots || pread(fd, slots, size, LC_LEDGER_HDR) != (ssize_t)size) {
        free(slots);
        return NULL;
    }
    *nslots = n;
    *complete = !(flags & LC_LEDGER_OVERFLOW);
    return slots;
}
