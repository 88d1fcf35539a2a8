/* runtime/rng.h: Philox4x32-10 counter-based random numbers.
 *
 * defines: philox4x32_10, rng_key, rng_uniform, rng_normal, rng_fill_normal,
 *          rng_fill_uniform, rng_u64
 *
 * Every draw is a pure function of (seed, purpose, index): there is no state
 * to save, and element i of a tensor gets the same value whatever the world
 * size or thread count that fills it. Purposes separate streams (init of
 * parameter p, dropout at step s, data shuffling of epoch e ...).
 */
#ifndef SL_RUNTIME_RNG_H
#define SL_RUNTIME_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t v[4];
} philox_ctr;

typedef struct {
    uint32_t v[2];
} philox_key;

/* The Random123 Philox4x32 with 10 rounds (Salmon et al., SC'11). */
philox_ctr philox4x32_10(philox_ctr ctr, philox_key key);

/* Stream ids, so that distinct uses never share counters. */
enum {
    RNG_PURPOSE_INIT = 1,    /* parameter init; sub = parameter index */
    RNG_PURPOSE_DROPOUT = 2, /* sub = step */
    RNG_PURPOSE_SHUFFLE = 3, /* sub = epoch */
    RNG_PURPOSE_SAMPLE = 4,  /* generation */
    RNG_PURPOSE_LORA = 5,    /* LoRA A init; sub = parameter index */
    RNG_PURPOSE_DEDUP = 6,   /* MinHash permutations */
    RNG_PURPOSE_TEST = 99,
};

/* A stream: key from the seed, counter words 2..3 from (purpose, sub). */
typedef struct {
    philox_key key;
    uint32_t purpose;
    uint32_t sub;
} rng_stream;

rng_stream rng_stream_make(uint64_t seed, uint32_t purpose, uint32_t sub);

/* The four 32-bit words at block `index` of the stream. */
philox_ctr rng_block(const rng_stream *s, uint64_t index);
/* 64 random bits for element index (words 0,1 of block index). */
uint64_t rng_u64(const rng_stream *s, uint64_t index);
/* Uniform in (0, 1), 24-bit resolution, never 0 or 1. */
float rng_uniform(const rng_stream *s, uint64_t index);
/* Standard normal for element index (Box-Muller on one block). */
float rng_normal(const rng_stream *s, uint64_t index);

/* dst[i] = mean + std * normal(first + i), for i in [0, n). */
void rng_fill_normal(const rng_stream *s, uint64_t first, float *dst, size_t n, float mean, float std);
/* dst[i] = lo + (hi - lo) * uniform(first + i). */
void rng_fill_uniform(const rng_stream *s, uint64_t first, float *dst, size_t n, float lo, float hi);

#endif
