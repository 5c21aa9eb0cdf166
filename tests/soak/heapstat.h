/* The figures lc-soak-heap.so (heapstat.c) publishes in the file LC_SOAK_HEAP names, and
 * lc-soak reads. */
#ifndef LC_SOAK_HEAPSTAT_H
#define LC_SOAK_HEAPSTAT_H

#include <stdatomic.h>
#include <stdint.h>

#define LC_HEAPSTAT_MAGIC 0x6c63686561707374ull /* "lcheapst" */

typedef struct {
    uint64_t magic;
    _Atomic uint64_t seq; /* odd while the figures are written */
    uint64_t live;        /* bytes in blocks allocated and not freed (usable sizes) */
    uint64_t allocs;      /* blocks allocated so far */
    uint64_t system;      /* glibc: bytes malloc got from the system (arena + hblkhd) */
    uint64_t malloc_free; /* glibc: of those, free bytes malloc keeps (fordblks) */
} lc_heapstat_t;

#endif
