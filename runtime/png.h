/* runtime/png.h: a minimal PNG writer (8-bit RGB, no interlace), for
 * `shardlm plot`. zlib (Debian's libz) compresses the image data; the
 * chunks (IHDR, IDAT, IEND) carry their CRC-32 as the PNG spec defines.
 *
 * defines: png_write_rgb
 *
 * Does not: read PNGs, write palettes or alpha.
 */
#ifndef SL_RUNTIME_PNG_H
#define SL_RUNTIME_PNG_H

#include <stdint.h>

#include "runtime/status.h"

/* rgb: h rows of w pixels, 3 bytes each (row-major, top row first).
 * Written atomically to path (temp file, fsync, rename). */
sl_status png_write_rgb(const char *path, int w, int h, const uint8_t *rgb);

#endif
