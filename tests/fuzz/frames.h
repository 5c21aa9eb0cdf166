/* The input format of the message harnesses: a multipart message as a list of frames,
 * each a 16-bit little-endian length followed by that many bytes (a length running past
 * the end takes what is left). Shared by fuzz_broker.c and fuzz_client.c. */
#ifndef LC_FUZZ_FRAMES_H
#define LC_FUZZ_FRAMES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *data;
    size_t size;
} fuzz_frame_t;

/* Splits data into at most max frames; returns how many there were in all (which may be
 * more than max: the rest are counted, not stored). */
static inline int fuzz_frames(const uint8_t *data, size_t size, fuzz_frame_t *out, int max)
{
    int n = 0;
    size_t at = 0;
    while (at < size) {
        size_t len = data[at];
        if (at + 1 < size)
            len |= (size_t)data[at + 1] << 8;
        at += 2;
        if (at > size)
            at = size;
        if (len > size - at)
            len = size - at;
        if (n < max)
            out[n] = (fuzz_frame_t){data + at, len};
        n++;
        at += len;
    }
    return n;
}

#endif
