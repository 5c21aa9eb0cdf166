/*
 * lc-soak-heap.so: counts the bytes a process holds through malloc, for lc-soak
 * (docs/reliability.md, "Soak"). lc-soak preloads it (LD_PRELOAD) into every process it
 * starts, the broker and the lc-echo modules included, with LC_SOAK_HEAP naming a file.
 *
 * RSS cannot tell memory a process holds from memory glibc's malloc keeps after it was
 * freed (a peak's pages, fragmentation, the arenas of other threads), and that is what
 * moved in the soak. So this counts the heap in use exactly: every allocation function
 * adds the block's usable size, every free subtracts it. A thread copies the count, with
 * glibc's own view (mallinfo2), into the file every 100 ms, where lc-soak reads it.
 *
 * It calls glibc's __libc_* functions, not dlsym(RTLD_NEXT): dlsym may itself allocate.
 * It must not be used with valgrind or the sanitizers, which replace malloc themselves.
 */
#include "heapstat.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

static _Atomic uint64_t s_live, s_allocs;

static void *s_count(void *p)
{
    if (p) {
        atomic_fetch_add_explicit(&s_live, malloc_usable_size(p), memory_order_relaxed);
        atomic_fetch_add_explicit(&s_allocs, 1, memory_order_relaxed);
    }
    return p;
}

static void s_uncount(void *p)
{
    if (p)
        atomic_fetch_sub_explicit(&s_live, malloc_usable_size(p), memory_order_relaxed);
}

__attribute__((visibility("default"))) void *malloc(size_t size)
{
    return s_count(__libc_malloc(size));
}

__attribute__((visibility("default"))) void *calloc(size_t n, size_t size)
{
    return s_count(__libc_calloc(n, size));
}

__attribute__((visibility("default"))) void free(void *p)
{
    s_uncount(p);
    __libc_free(p);
}

__attribute__((visibility("default"))) void *realloc(void *p, size_t size)
{
    size_t old = p ? malloc_usable_size(p) : 0;
    void *q = __libc_realloc(p, size);
    if (!q)
        return p && size == 0 ? (atomic_fetch_sub(&s_live, old), NULL) : NULL;
    atomic_fetch_sub_explicit(&s_live, old, memory_order_relaxed);
    atomic_fetch_add_explicit(&s_live, malloc_usable_size(q), memory_order_relaxed);
    atomic_fetch_add_explicit(&s_allocs, p == NULL, memory_order_relaxed);
    return q;
}

__attribute__((visibility("default"))) void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

__attribute__((visibility("default"))) void *memalign(size_t align, size_t size)
{
    return s_count(__libc_memalign(align, size));
}

__attribute__((visibility("default"))) void *aligned_alloc(size_t align, size_t size)
{
    return s_count(__libc_memalign(align, size));
}

__attribute__((visibility("default"))) int posix_memalign(void **out, size_t align, size_t size)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = s_count(__libc_memalign(align, size));
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

__attribute__((visibility("default"))) void *valloc(size_t size)
{
    return s_count(__libc_memalign((size_t)sysconf(_SC_PAGESIZE), size));
}

__attribute__((visibility("default"))) void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return s_count(__libc_memalign(page, (size + page - 1) & ~(page - 1)));
}

static lc_heapstat_t *s_page;

static void *s_publish(void *arg)
{
    (void)arg;
    for (;;) {
        struct mallinfo2 mi = mallinfo2();
        lc_heapstat_t *h = s_page;
        atomic_fetch_add(&h->seq, 1); /* odd: being written */
        h->live = atomic_load(&s_live);
        h->allocs = atomic_load(&s_allocs);
        h->system = mi.arena + mi.hblkhd;
        h->malloc_free = mi.fordblks;
        atomic_fetch_add(&h->seq, 1);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

__attribute__((constructor)) static void s_start(void)
{
    const char *path = getenv("LC_SOAK_HEAP");
    if (!path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    void *m = MAP_FAILED;
    if (ftruncate(fd, sizeof(lc_heapstat_t)) == 0)
        m = mmap(NULL, sizeof(lc_heapstat_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return;
    s_page = m;
    s_page->magic = LC_HEAPSTAT_MAGIC;
    /* The thread takes no signal: liblc and the broker take theirs through a signalfd,
     * which needs every thread to block them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &attr, s_publish, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
