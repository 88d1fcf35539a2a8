/* runtime/png.c: PNG writer (png.h). */
#include "runtime/png.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int err;
} obuf;

static void put(obuf *b, const void *d, size_t n) {
    if (b->err)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->err = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_be32(obuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

/* length, type, data, CRC-32 of type + data */
static void chunk(obuf *b, const char *type, const uint8_t *data, size_t n) {
    put_be32(b, (uint32_t)n);
    put(b, type, 4);
    if (n)
        put(b, data, n);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (n)
        crc = crc32(crc, data, (uInt)n);
    put_be32(b, (uint32_t)crc);
}

sl_status png_write_rgb(const char *path, int w, int h, const uint8_t *rgb) {
    SL_CHECK_ARG(w > 0 && h > 0 && w <= 1 << 15 && h <= 1 << 15, "png: %d x %d pixels", w, h);
    size_t row = (size_t)w * 3 + 1, raw_n = row * (size_t)h;
    uint8_t *raw = malloc(raw_n);
    uLongf zn = compressBound((uLong)raw_n);
    uint8_t *z = malloc(zn);
    if (!raw || !z) {
        free(raw);
        free(z);
        return sl_errorf(SL_ERR_NOMEM, "png: out of memory for %d x %d pixels", w, h);
    }
    for (int y = 0; y < h; y++) { /* filter type 0 (none) on every row */
        raw[(size_t)y * row] = 0;
        memcpy(raw + (size_t)y * row + 1, rgb + (size_t)y * w * 3, (size_t)w * 3);
    }
    int zr = compress2(z, &zn, raw, (uLong)raw_n, 9);
    free(raw);
    if (zr != Z_OK) {
        free(z);
        return sl_errorf(SL_ERR_INTERNAL, "png: zlib compress2 failed (%d)", zr);
    }
    obuf b = {0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    put(&b, sig, 8);
    uint8_t ihdr[13];
    uint32_t W = (uint32_t)w, H = (uint32_t)h;
    uint8_t hdr[13] = {(uint8_t)(W >> 24), (uint8_t)(W >> 16), (uint8_t)(W >> 8), (uint8_t)W,
                       (uint8_t)(H >> 24), (uint8_t)(H >> 16), (uint8_t)(H >> 8), (uint8_t)H,
                       8, 2, 0, 0, 0}; /* 8 bits, truecolor, deflate, filter 0, no interlace */
    memcpy(ihdr, hdr, 13);
    chunk(&b, "IHDR", ihdr, 13);
    chunk(&b, "IDAT", z, zn);
    chunk(&b, "IEND", NULL, 0);
    free(z);
    sl_status st = b.err ? sl_errorf(SL_ERR_NOMEM, "png: out of memory") : fs_write_atomic(path, b.p, b.n);
    free(b.p);
    return st;
}
