/* defines: what the CPU op tests (tests/unit/test_ops_cpu*.c) share: seeded
 * random fp32 inputs (rand_f), double copies and zeroed buffers (to_d,
 * zeros_d, zeros_f), the relative error by norm (rel_err, ASSERT_REL), the
 * forward tolerance TOL_FWD, the group setup/teardown that owns a 2-thread CPU
 * backend, and the F32/V1..V4 view shorthands. OK comes from golden.h.
 * It does not hold finite differences or double references of ops: each test
 * file keeps the ones it uses.
 *
 * Header-only (static inline), so each test executable has its own copy and
 * its own random stream, seeded the same; buffers from these helpers are host
 * memory the caller frees. Include <setjmp.h>, <stdarg.h>, <stddef.h> and
 * <cmocka.h> first, as cmocka requires; the V* macros need a local
 * `sl_backend *be`. */
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "golden.h"

#define TOL_FWD 1e-5

/* The inputs' random stream (splitmix64), per executable; tests draw from it
 * in the order cmocka runs them. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t splitmix(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline float urand(void) {
    return (float)((double)(splitmix() >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static inline float *rand_f(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = urand() * scale;
    return p;
}

static inline double *to_d(const float *p, int64_t n) {
    double *d = malloc((size_t)(n ? n : 1) * sizeof(double));
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++)
        d[i] = p[i];
    return d;
}

static inline double *zeros_d(int64_t n) {
    double *d = calloc((size_t)(n ? n : 1), sizeof(double));
    assert_non_null(d);
    return d;
}

static inline float *zeros_f(int64_t n) {
    float *p = calloc((size_t)(n ? n : 1), sizeof(float));
    assert_non_null(p);
    return p;
}

/* ||got - want|| / max(||want||, 1e-30). Not golden_rel_err: that one falls
 * back to the absolute norm when want is all zero, where this one fails any
 * got that is not exactly zero. */
static inline double rel_err(const float *got, const double *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

#define ASSERT_REL(got, want, n, tol, what)                                                      \
    do {                                                                                         \
        double e_ = rel_err((got), (want), (n));                                                 \
        if (!(e_ <= (tol))) {                                                                    \
            fprintf(stderr, "%s: relative error %.3e exceeds %.1e\n", (what), e_, (double)(tol)); \
            fail();                                                                              \
        }                                                                                        \
    } while (0)

/* cmocka group setup: *state gets a CPU backend with 2 threads, so that the
 * parallel paths run; teardown destroys it. */
static inline int setup(void **state) {
    sl_backend *be = NULL;
    if (backend_create_cpu(2, NULL, &be) != SL_OK)
        return -1;
    *state = be;
    return 0;
}

static inline int teardown(void **state) {
    backend_destroy(*state);
    return 0;
}

#define F32 SL_DTYPE_F32
#define V1(p, a) ops_view1(be, F32, (p), (a))
#define V2(p, a, b) ops_view2(be, F32, (p), (a), (b))
#define V3(p, a, b, c) ops_view3(be, F32, (p), (a), (b), (c))
#define V4(p, a, b, c, d) ops_view4(be, F32, (p), (a), (b), (c), (d))
