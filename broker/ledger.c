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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The device of the kernel's internal mount that holds every memfd (none of them on a
 * filesystem a process could mount or name), learnt from a memfd of the broker's own. */
static bool s_memfd_dev(uint32_t *major, uint32_t *minor)
{
    static int known = -1;
    static uint32_t maj, min;
    if (known < 0) {
        int fd = memfd_create("lc-ledger-probe", MFD_CLOEXEC);
        struct statx stx;
        known = fd >= 0 && statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, &stx) == 0;
        if (known)
            maj = stx.stx_dev_major, min = stx.stx_dev_minor;
        if (fd >= 0)
            close(fd);
    }
    *major = maj, *minor = min;
    return known == 1;
}

/* Opens the file behind the descriptor the module named, only if it is a memfd. The link
 * is first pinned with O_PATH (no open of the file itself) and its name and filesystem are
 * read without asking the filesystem (AT_STATX_DONT_SYNC): a module in its own mount
 * namespace can name any file "/memfd:lc-ledger", and can dup2 another descriptor onto the
 * number between two looks; a device or a FUSE file must never be opened, nor read, by the
 * broker (an open can block it for good, or act). Only then is the pinned file opened. */
static int s_open_memfd(const char *path, const char **why)
{
    int pin = open(path, O_PATH | O_CLOEXEC);
    if (pin < 0) {
        *why = strerror(errno);
        return -1;
    }
    char self_path[64], target[64];
    snprintf(self_path, sizeof self_path, "/proc/self/fd/%d", pin);
    ssize_t n = readlink(self_path, target, sizeof target - 1);
    struct statx stx;
    uint32_t major, minor;
    int fd = -1;
    if (n < 0 || (target[n] = '\0', strncmp(target, "/memfd:lc-ledger", 16) != 0))
        *why = "not a ledger";
    else if (!s_memfd_dev(&major, &minor))
        *why = "the broker cannot make a memfd to compare with";
    else if (statx(pin, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) < 0 ||
             !S_ISREG(stx.stx_mode) || stx.stx_dev_major != major || stx.stx_dev_minor != minor)
        *why = "not a memfd";
    else if ((fd = open(self_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0)
        *why = strerror(errno);
    close(pin);
    return fd;
}

int broker_ledger_open(broker_t *self, const module_t *m, json_t *hello)
{
    json_t *v = json_object_get(hello, "ledger");
    if (!json_is_integer(v) || m->pidfd < 0)
        return -1; /* no ledger offered, or no process the kernel vouches for (tcp) */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%lld", m->pid, (long long)json_integer_value(v));
    const char *why = NULL;
    int fd = s_open_memfd(path, &why);
    char magic[8];
    if (fd >= 0 && (pread(fd, magic, 8, 0) != 8 || memcmp(magic, LC_LEDGER_MAGIC, 8) != 0))
        why = "not a ledger";
    /* The pid must still be the process that registered: its pidfd is quiet while it lives. */
    struct pollfd p = {.fd = m->pidfd, .events = POLLIN};
    if (!why && poll(&p, 1, 0) != 0)
        why = "the process has ended";
    if (why) {
        broker_log(self, L_DEBUG, "module %s: cannot use the ledger at %s: %s", m->name, path, why);
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
