#include "runtime/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

philox_ctr philox4x32_10(philox_ctr c, philox_key k) {
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* the key is bumped between rounds */
            k.v[0] += PHILOX_W0;
            k.v[1] += PHILOX_W1;
        }
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c.v[0], &hi0, &lo0);
        mulhilo(PHILOX_M1, c.v[2], &hi1, &lo1);
        philox_ctr o;
        o.v[0] = hi1 ^ c.v[1] ^ k.v[0];
        o.v[1] = lo1;
        o.v[2] = hi0 ^ c.v[3] ^ k.v[1];
        o.v[3] = lo0;
        c = o;
    }
    return c;
}

rng_stream rng_stream_make(uint64_t seed, uint32_t purpose, uint32_t sub) {
    rng_stream s;
    s.key.v[0] = (uint32_t)seed;
    s.key.v[1] = (uint32_t)(seed >> 32);
    s.purpose = purpose;
    s.sub = sub;
    return s;
}

philox_ctr rng_block(const rng_stream *s, uint64_t index) {
    philox_ctr c = {{(uint32_t)index, (uint32_t)(index >> 32), s->sub, s->purpose}};
    return philox4x32_10(c, s->key);
}

uint64_t rng_u64(const rng_stream *s, uint64_t index) {
    philox_ctr r = rng_block(s, index);
    return ((uint64_t)r.v[1] << 32) | r.v[0];
}

/* (x + 0.5) / 2^24 with the top 24 bits: strictly inside (0, 1). */
static inline float u01(uint32_t x) { return ((float)(x >> 8) + 0.5f) * (1.0f / 16777216.0f); }

float rng_uniform(const rng_stream *s, uint64_t index) { return u01(rng_block(s, index).v[0]); }

float rng_normal(const rng_stream *s, uint64_t index) {
    philox_ctr r = rng_block(s, index);
    /* Box-Muller in double so that the tail is not clipped by float log. */
    double u1 = ((double)r.v[0] + 0.5) * (1.0 / 4294967296.0);
    double u2 = ((double)r.v[1] + 0.5) * (1.0 / 4294967296.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void rng_fill_normal(const rng_stream *s, uint64_t first, float *dst, size_t n, float mean, float std) {
    for (size_t i = 0; i < n; i++)
        dst[i] = mean + std * rng_normal(s, first + i);
}

void rng_fill_uniform(const rng_stream *s, uint64_t first, float *dst, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        dst[i] = lo + (hi - lo) * rng_uniform(s, first + i);
}
