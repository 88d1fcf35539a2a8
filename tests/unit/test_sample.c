/* Sampling (model/sample.h): temperature 0 and top-k 1 are greedy (ties go
 * to the lowest id); top-p keeps the shortest prefix reaching p and never
 * draws the tail; top-k never draws outside the k best (checked against a
 * full sort, with ties); the draw frequencies of temperature 1, temperature
 * 2, top-k 2 and top-p 0.75 match their distributions (chi-square over
 * 40000 draws with a fixed seed, 3 or fewer degrees of freedom, threshold at
 * p = 0.001); a seed reproduces its draws and another seed does not; -inf
 * logits are never drawn; NaN, +inf, all -inf and bad options are errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/sample.h"
#include "runtime/rng.h"
#include "support/golden.h"

static sampler *make(float temperature, int top_k, float top_p, uint64_t seed, int64_t V) {
    sample_opts o = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
    sampler *s = NULL;
    OK(sample_create(&o, V, &s));
    return s;
}

/* Random logits, quantized so that ties are common. */
static void random_logits(float *l, int64_t V, uint32_t sub) {
    rng_stream r = rng_stream_make(5, RNG_PURPOSE_TEST, sub);
    for (int64_t i = 0; i < V; i++)
        l[i] = roundf(rng_normal(&r, (uint64_t)i) * 4.0f) / 4.0f;
}

static void test_greedy(void **state) {
    (void)state;
    enum { V = 257 };
    float l[V];
    sampler *t0 = make(0.0f, 0, 1.0f, 1, V);
    sampler *k1 = make(1.3f, 1, 1.0f, 1, V);
    sampler *k1p = make(0.7f, 1, 0.9f, 2, V);
    for (uint32_t trial = 0; trial < 200; trial++) {
        random_logits(l, V, trial);
        uint32_t want = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[want])
                want = (uint32_t)i;
        assert_int_equal(sample_argmax(l, V), want);
        uint32_t a, b, c;
        OK(sample_next(t0, l, trial, &a));
        OK(sample_next(k1, l, trial, &b));
        OK(sample_next(k1p, l, trial, &c));
        assert_int_equal(a, want);
        assert_int_equal(b, want);
        assert_int_equal(c, want);
    }
    sample_destroy(t0);
    sample_destroy(k1);
    sample_destroy(k1p);
    /* an exact tie: the lowest id */
    float tie[5] = {1.0f, 3.0f, 2.0f, 3.0f, 3.0f};
    t0 = make(0.0f, 0, 1.0f, 1, 5);
    k1 = make(1.0f, 1, 1.0f, 1, 5);
    for (uint64_t i = 0; i < 50; i++) {
        uint32_t a, b;
        OK(sample_next(t0, tie, i, &a));
        OK(sample_next(k1, tie, i, &b));
        assert_int_equal(a, 1);
        assert_int_equal(b, 1);
    }
    sample_destroy(t0);
    sample_destroy(k1);
}

/* Draws n tokens from logits (V <= 8) and returns the chi-square statistic
 * against want[] (which must sum to 1; entries 0 must never be drawn). */
static double chi_square(sampler *s, const float *l, int V, const double *want, int n) {
    int count[8] = {0};
    for (int i = 0; i < n; i++) {
        uint32_t t;
        OK(sample_next(s, l, (uint64_t)i, &t));
        assert_true(t < (uint32_t)V);
        count[t]++;
    }
    double chi = 0;
    for (int i = 0; i < V; i++) {
        if (want[i] == 0) {
            if (count[i] != 0)
                fail_msg("token %d has probability 0 but was drawn %d times", i, count[i]);
            continue;
        }
        double e = want[i] * n;
        chi += (count[i] - e) * (count[i] - e) / e;
    }
    return chi;
}

static void test_distributions(void **state) {
    (void)state;
    const double p[4] = {0.5, 0.3, 0.15, 0.05};
    float l[4];
    for (int i = 0; i < 4; i++)
        l[i] = (float)log(p[i]) + 3.0f; /* a shift changes nothing */
    const int n = 40000;
    /* chi-square 0.999 quantiles: 1 dof 10.83, 3 dof 16.27 */
    sampler *s = make(1.0f, 0, 1.0f, 42, 4);
    double chi = chi_square(s, l, 4, p, n);
    assert_true(chi < 16.27);
    sample_destroy(s);

    double w2[4], z = 0;
    for (int i = 0; i < 4; i++)
        z += w2[i] = sqrt(p[i]);
    for (int i = 0; i < 4; i++)
        w2[i] /= z;
    s = make(2.0f, 0, 1.0f, 43, 4);
    chi = chi_square(s, l, 4, w2, n);
    assert_true(chi < 16.27);
    sample_destroy(s);

    const double k2[4] = {0.5 / 0.8, 0.3 / 0.8, 0, 0};
    s = make(1.0f, 2, 1.0f, 44, 4);
    chi = chi_square(s, l, 4, k2, n);
    assert_true(chi < 10.83);
    sample_destroy(s);

    /* top-p 0.75: 0.5 < 0.75 keeps id 1; 0.8 >= 0.75 drops ids 2 and 3 */
    s = make(1.0f, 0, 0.75f, 45, 4);
    chi = chi_square(s, l, 4, k2, n);
    assert_true(chi < 10.83);
    sample_destroy(s);

    /* top-p 0.45 < 0.5: only the most likely token */
    const double only0[4] = {1, 0, 0, 0};
    s = make(1.0f, 0, 0.45f, 46, 4);
    chi_square(s, l, 4, only0, 2000);
    sample_destroy(s);

    /* the uniform is fair: a wrong distribution is rejected by the same check */
    const double wrong[4] = {0.45, 0.35, 0.15, 0.05};
    s = make(1.0f, 0, 1.0f, 42, 4);
    chi = chi_square(s, l, 4, wrong, n);
    assert_true(chi > 16.27);
    sample_destroy(s);
}

static int cmp_desc_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y ? 1 : 0;
}

static void test_top_k_bounds(void **state) {
    (void)state;
    enum { V = 1000, K = 50 };
    float l[V], sorted[V];
    sampler *s = make(1.5f, K, 1.0f, 9, V);
    sampler *sp = make(1.5f, K, 0.6f, 9, V);
    for (uint32_t trial = 0; trial < 100; trial++) {
        random_logits(l, V, 1000 + trial);
        memcpy(sorted, l, sizeof l);
        qsort(sorted, V, sizeof *sorted, cmp_desc_float);
        float kth = sorted[K - 1];
        int above = 0, at = 0;
        for (int i = 0; i < V; i++) {
            above += l[i] > kth;
            at += l[i] == kth;
        }
        int ties_taken = K - above; /* of the ids at the k-th value, the lowest ones */
        for (int j = 0; j < 20; j++) {
            uint32_t t, tp;
            OK(sample_next(s, l, trial * 20 + (uint64_t)j, &t));
            OK(sample_next(sp, l, trial * 20 + (uint64_t)j, &tp));
            for (int r = 0; r < 2; r++) {
                uint32_t x = r ? tp : t;
                assert_true(l[x] >= kth);
                if (l[x] == kth) {
                    int rank = 0; /* how many ids at kth come before x */
                    for (uint32_t i = 0; i < x; i++)
                        rank += l[i] == kth;
                    assert_true(rank < ties_taken);
                }
            }
        }
        (void)at;
    }
    sample_destroy(s);
    sample_destroy(sp);
    /* all equal: top-k 3 keeps ids 0, 1, 2 */
    float flat[10] = {0};
    int seen[10] = {0};
    s = make(1.0f, 3, 1.0f, 3, 10);
    for (uint64_t i = 0; i < 3000; i++) {
        uint32_t t;
        OK(sample_next(s, flat, i, &t));
        seen[t]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(i < 3 ? seen[i] > 800 : seen[i] == 0);
    sample_destroy(s);
}

static void test_determinism(void **state) {
    (void)state;
    enum { V = 300, N = 200 };
    float l[V];
    random_logits(l, V, 77);
    uint32_t a[N], b[N], c[N];
    const float tp[3] = {1.0f, 0.9f, 0.5f};
    for (int variant = 0; variant < 3; variant++) {
        sampler *s1 = make(1.0f, variant == 1 ? 40 : 0, tp[variant], 1234, V);
        sampler *s2 = make(1.0f, variant == 1 ? 40 : 0, tp[variant], 1234, V);
        sampler *s3 = make(1.0f, variant == 1 ? 40 : 0, tp[variant], 1235, V);
        for (int i = 0; i < N; i++) {
            OK(sample_next(s1, l, (uint64_t)i, &a[i]));
            OK(sample_next(s3, l, (uint64_t)i, &c[i]));
        }
        for (int i = N - 1; i >= 0; i--) /* any call order: a pure function of the index */
            OK(sample_next(s2, l, (uint64_t)i, &b[i]));
        assert_memory_equal(a, b, sizeof a);
        assert_memory_not_equal(a, c, sizeof a);
        sample_destroy(s1);
        sample_destroy(s2);
        sample_destroy(s3);
    }
}

static void test_nonfinite_and_options(void **state) {
    (void)state;
    float l[4] = {-INFINITY, 0.0f, -INFINITY, 0.5f};
    sampler *s = make(1.0f, 0, 1.0f, 1, 4);
    for (uint64_t i = 0; i < 500; i++) {
        uint32_t t;
        OK(sample_next(s, l, i, &t));
        assert_true(t == 1 || t == 3);
    }
    uint32_t t;
    l[1] = NAN;
    assert_int_equal(sample_next(s, l, 0, &t), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "token 1"));
    l[1] = INFINITY;
    assert_int_equal(sample_next(s, l, 0, &t), SL_ERR_INVALID);
    float all[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(sample_next(s, all, 0, &t), SL_ERR_INVALID);
    sample_destroy(s);
    sampler *bad = NULL;
    sample_opts o = {.temperature = 1.0f, .top_k = 0, .top_p = 0.0f, .seed = 0};
    assert_int_equal(sample_create(&o, 4, &bad), SL_ERR_INVALID);
    o.top_p = 1.5f;
    assert_int_equal(sample_create(&o, 4, &bad), SL_ERR_INVALID);
    o.top_p = 1.0f;
    o.top_k = -1;
    assert_int_equal(sample_create(&o, 4, &bad), SL_ERR_INVALID);
    o.top_k = 0;
    o.temperature = NAN;
    assert_int_equal(sample_create(&o, 4, &bad), SL_ERR_INVALID);
    assert_null(bad);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_distributions),
        cmocka_unit_test(test_top_k_bounds),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_nonfinite_and_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
