/* Unit tests for kernels/ops.h on the CPU backend: the optimizer and
 * elementwise tail (AdamW, bf16 casts, squared norm, add, scale, dropout),
 * the backend itself (allocation accounting, the CUDA refusal without CUDA,
 * the per-op dtype/device/overlap checks), cpu_expf and device_info_pick.
 *
 * It does not test the layer ops (matmul, norms, activations, rope,
 * attention, embedding, cross-entropy): tests/unit/test_ops_cpu.c does,
 * against double references and finite differences.
 *
 * defines: test_adamw, test_cast_norm_scale_add, test_dropout,
 * test_backend_and_validation, test_cpu_expf, test_device_pick and main.
 * Errors are relative by norm (tests/unit/support/ops_check.h). Tolerances:
 *   AdamW vs the formula in double             1e-6
 *   add, scale vs double                       1e-5 (fp32 arithmetic)
 *   bf16 cast: within half a bf16 ulp; sq_norm within 1e-12 relative
 * The backend runs with 2 threads so the parallel paths are exercised.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/cpu/cpu_math.h"
#include "kernels/device_info.h"
#include "kernels/ops.h"
#include "runtime/rng.h"
#include "support/ops_check.h"

/* ------------------------------------------------------------------------ */
/* AdamW, casts, reductions */

static void test_adamw(void **state) {
    sl_backend *be = *state;
    const int64_t n = 40000; /* several parallel chunks */
    float *p = rand_f(n, 1), *g = rand_f(n, 1), *m = rand_f(n, 0.1f), *v = rand_f(n, 0.1f);
    for (int64_t i = 0; i < n; i++)
        v[i] = fabsf(v[i]);
    float *pc = zeros_f(n);
    double *wp = to_d(p, n), *wm = to_d(m, n), *wv = to_d(v, n);
    ops_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                        .weight_decay = 0.1f, .grad_scale = 0.5f, .step = 3};
    for (int64_t i = 0; i < n; i++) {
        double gi = (double)g[i] * 0.5;
        wp[i] *= 1 - 1e-2 * 0.1;
        wm[i] = 0.9 * wm[i] + 0.1 * gi;
        wv[i] = 0.95 * wv[i] + 0.05 * gi * gi;
        double mh = wm[i] / (1 - pow(0.9, 3)), vh = wv[i] / (1 - pow(0.95, 3));
        wp[i] -= 1e-2 * mh / (sqrt(vh) + 1e-8);
    }
    OK(ops_adamw(be, V1(p, n), V1(g, n), V1(m, n), V1(v, n), V1(pc, n), &a));
    ASSERT_REL(p, wp, n, 1e-6, "adamw param");
    ASSERT_REL(m, wm, n, 1e-6, "adamw m");
    ASSERT_REL(v, wv, n, 1e-6, "adamw v");
    assert_memory_equal(p, pc, (size_t)n * sizeof(float));
    a.step = 0;
    assert_int_equal(ops_adamw(be, V1(p, n), V1(g, n), V1(m, n), V1(v, n), ops_none(), &a),
                     SL_ERR_INVALID);
    free(p), free(g), free(m), free(v), free(pc), free(wp), free(wm), free(wv);
}

static void test_cast_norm_scale_add(void **state) {
    sl_backend *be = *state;
    const int64_t n = 50001;
    float *x = rand_f(n, 3), *back = zeros_f(n);
    x[0] = 1.00390625f; /* exactly halfway between two bf16: ties to even (1.0) */
    x[1] = 1.01171875f; /* halfway, rounds up to even (1.015625) */
    uint16_t *h = calloc((size_t)n, sizeof(uint16_t)), *h2 = calloc((size_t)n, sizeof(uint16_t));
    OK(ops_cast(be, ops_view1(be, SL_DTYPE_BF16, h, n), V1(x, n)));
    OK(ops_cast(be, V1(back, n), ops_view1(be, SL_DTYPE_BF16, h, n)));
    OK(ops_cast(be, ops_view1(be, SL_DTYPE_BF16, h2, n), V1(back, n)));
    assert_memory_equal(h, h2, (size_t)n * sizeof(uint16_t)); /* bf16 -> f32 -> bf16 is exact */
    assert_true(back[0] == 1.0f && back[1] == 1.015625f);
    for (int64_t i = 0; i < n; i++) /* round to nearest: within half a bf16 ulp (2^-8 rel) */
        assert_true(fabsf(back[i] - x[i]) <= fabsf(x[i]) * (1.0f / 256.0f));
    double sq = 0, want = 0;
    for (int64_t i = 0; i < n; i++)
        want += (double)x[i] * x[i];
    OK(ops_sq_norm(be, V1(x, n), &sq));
    assert_true(fabs(sq - want) <= 1e-12 * want);
    float *y = rand_f(n, 1), *o = zeros_f(n);
    double *ws = zeros_d(n);
    for (int64_t i = 0; i < n; i++)
        ws[i] = (double)x[i] + y[i];
    OK(ops_add(be, V1(o, n), V1(x, n), V1(y, n)));
    ASSERT_REL(o, ws, n, TOL_FWD, "add");
    OK(ops_add(be, V1(x, n), V1(x, n), V1(y, n))); /* in place */
    ASSERT_REL(x, ws, n, TOL_FWD, "add in place");
    for (int64_t i = 0; i < n; i++)
        ws[i] *= -0.25;
    OK(ops_scale(be, V1(x, n), -0.25f));
    ASSERT_REL(x, ws, n, TOL_FWD, "scale");
    free(x), free(back), free(h), free(h2), free(y), free(o), free(ws);
}

/* Dropout: the mask of kernels/ops.h (checked element by element against
 * runtime/rng's Philox), the keep fraction within 5 sigma of 1 - p, kept
 * values scaled exactly, p = 0 the identity, reproducible, splittable by
 * offset, in place, the same with 1 and 2 threads, and its own backward. */
static void test_dropout(void **state) {
    sl_backend *be = *state;
    const int64_t n = 100003; /* 7 chunks of the CPU loop, not a multiple of 4 */
    const uint64_t seed = 0x1234abcd5678ef01ull, off = ((uint64_t)1 << 40) + 3;
    float *x = rand_f(n, 2), *y = zeros_f(n), *y2 = zeros_f(n), *dy = rand_f(n, 1), *dx = zeros_f(n);
    for (int64_t i = 0; i < n; i++)
        if (x[i] == 0.0f)
            x[i] = 1.0f; /* so that "dropped" and "zero" are distinguishable */
    const float ps[] = {0.1f, 0.5f, 0.9f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k], sc = ops_dropout_scale(p);
        uint32_t thr = ops_dropout_threshold(p);
        assert_true(sc == (float)(1.0 / (1.0 - (double)p)));
        assert_true(fabs((double)thr / 4294967296.0 - (double)p) < 1e-9);
        OK(ops_dropout(be, V1(y, n), V1(x, n), p, seed, off));
        rng_stream rs = rng_stream_make(seed, RNG_PURPOSE_DROPOUT, 0);
        int64_t kept = 0;
        for (int64_t i = 0; i < n; i++) {
            uint64_t j = off + (uint64_t)i;
            bool keep = rng_block(&rs, j >> 2).v[j & 3] >= thr;
            if (keep ? y[i] != x[i] * sc : y[i] != 0.0f) {
                fprintf(stderr, "dropout p %g: element %lld is %g, expected %g\n", (double)p,
                        (long long)i, (double)y[i], keep ? (double)(x[i] * sc) : 0.0);
                fail();
            }
            kept += keep;
        }
        double mean = (double)n * (1.0 - p), sd = sqrt((double)n * p * (1.0 - p));
        if (fabs((double)kept - mean) > 5.0 * sd) {
            fprintf(stderr, "dropout p %g: kept %lld of %lld, expected %.0f +- %.0f\n", (double)p,
                    (long long)kept, (long long)n, mean, 5.0 * sd);
            fail();
        }
        /* backward: the same call on dy applies the same mask and scale */
        OK(ops_dropout(be, V1(dx, n), V1(dy, n), p, seed, off));
        for (int64_t i = 0; i < n; i++)
            assert_true(dx[i] == (y[i] != 0.0f ? dy[i] * sc : 0.0f));
    }
    /* reproducible; another seed or offset gives another mask */
    const float p = 0.3f;
    OK(ops_dropout(be, V1(y, n), V1(x, n), p, seed, off));
    OK(ops_dropout(be, V1(y2, n), V1(x, n), p, seed, off));
    assert_memory_equal(y, y2, (size_t)n * sizeof(float));
    OK(ops_dropout(be, V1(y2, n), V1(x, n), p, seed + 1, off));
    assert_memory_not_equal(y, y2, (size_t)n * sizeof(float));
    OK(ops_dropout(be, V1(y2, n), V1(x, n), p, seed, off + 1));
    assert_memory_not_equal(y, y2, (size_t)n * sizeof(float));
    /* split into two calls at an index that is not a multiple of 4 */
    const int64_t cut = 12345;
    OK(ops_dropout(be, V1(y2, cut), V1(x, cut), p, seed, off));
    OK(ops_dropout(be, V1(y2 + cut, n - cut), V1(x + cut, n - cut), p, seed, off + (uint64_t)cut));
    assert_memory_equal(y, y2, (size_t)n * sizeof(float));
    /* one thread gives the two threads' result */
    sl_backend *b1 = NULL;
    OK(backend_create_cpu(1, NULL, &b1));
    memset(y2, 0, (size_t)n * sizeof(float));
    OK(ops_dropout(b1, ops_view1(b1, F32, y2, n), ops_view1(b1, F32, x, n), p, seed, off));
    backend_destroy(b1);
    assert_memory_equal(y, y2, (size_t)n * sizeof(float));
    /* in place */
    memcpy(y2, x, (size_t)n * sizeof(float));
    OK(ops_dropout(be, V1(y2, n), V1(y2, n), p, seed, off));
    assert_memory_equal(y, y2, (size_t)n * sizeof(float));
    /* p = 0 is the identity */
    OK(ops_dropout(be, V1(y2, n), V1(x, n), 0.0f, seed, off));
    assert_memory_equal(x, y2, (size_t)n * sizeof(float));
    /* refused: p outside [0, 1), partial overlap, a counter that wraps */
    assert_int_equal(ops_dropout(be, V1(y, n), V1(x, n), 1.0f, seed, 0), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "ops_dropout"));
    assert_int_equal(ops_dropout(be, V1(y, n), V1(x, n), -0.1f, seed, 0), SL_ERR_INVALID);
    assert_int_equal(ops_dropout(be, V1(x + 1, n - 1), V1(x, n - 1), p, seed, 0), SL_ERR_INVALID);
    assert_int_equal(ops_dropout(be, V1(y, n), V1(x, n), p, seed, UINT64_MAX - 10), SL_ERR_INVALID);
    free(x), free(y), free(y2), free(dy), free(dx);
}

static void test_backend_and_validation(void **state) {
    sl_backend *be = *state;
    assert_int_equal(be->kind, SL_BACKEND_CPU);
    assert_int_equal(be->act_dtype, SL_DTYPE_F32);
    assert_int_equal(be->n_threads, 2);
    mem_accountant acct;
    mem_accountant_init(&acct);
    sl_backend *b2 = NULL;
    OK(backend_create_cpu(1, &acct, &b2));
    void *p = NULL;
    OK(backend_alloc(b2, MEM_CATEGORY_ACTIVATIONS, 4096, &p));
    assert_int_equal(mem_current(&acct, MEM_CATEGORY_ACTIVATIONS), 4096);
    OK(backend_memset_zero(b2, p, 4096));
    OK(backend_synchronize(b2));
    backend_free(b2, MEM_CATEGORY_ACTIVATIONS, p, 4096);
    assert_int_equal(mem_current(&acct, MEM_CATEGORY_ACTIVATIONS), 0);
    backend_destroy(b2);
#ifndef SHARDLM_HAVE_CUDA
    assert_int_equal(backend_create_cuda(0, 0, NULL, &b2), SL_ERR_UNSUPPORTED);
    assert_null(b2);
#endif
    /* dtype, device and missing-tensor checks name the op and the tensor */
    float x[4] = {0};
    uint16_t hb[4] = {0};
    assert_int_equal(ops_gelu_forward(be, V1(x, 4), ops_view1(be, SL_DTYPE_BF16, hb, 4)),
                     SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "ops_gelu_forward: tensor 'inp' has dtype BF16"));
    sl_tensor gpu = V1(x, 4);
    gpu.dev = SL_DEVICE_CUDA;
    assert_int_equal(ops_gelu_forward(be, V1(x, 4), gpu), SL_ERR_INVALID);
    assert_int_equal(ops_gelu_forward(be, V1(x, 4), ops_none()), SL_ERR_INVALID);
    assert_int_equal(ops_gelu_forward(be, V1(x, 4), V1(x + 1, 3)), SL_ERR_INVALID);
}

/* The vectorizable exp used by softmax, cross-entropy, gelu and silu:
 * within 4 ulp (relative 5e-7) of exp over the range it promises. */
static void test_cpu_expf(void **state) {
    (void)state;
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -86.0f + (88.7f + 86.0f) * (float)i / 200000.0f;
        double want = exp((double)x), got = cpu_expf(x);
        worst = fmax(worst, fabs(got - want) / want);
    }
    if (!(worst <= 5e-7)) {
        fprintf(stderr, "cpu_expf: max relative error %.3e exceeds 5e-7\n", worst);
        fail();
    }
    assert_true(cpu_expf(0.0f) == 1.0f);
    assert_true(cpu_expf(-1000.0f) == 0.0f && cpu_expf(-INFINITY) == 0.0f);
    assert_true(isnan(cpu_expf(NAN)));
    assert_true(cpu_expf(1000.0f) > 3e38f);
}

/* device_info_pick: one GPU per local rank, or one bound to each rank. */
static void test_device_pick(void **state) {
    (void)state;
    device_info di = {0};
    assert_int_equal(device_info_pick(&di, 0, 1), -1); /* no GPU */
    di.count = 1;
    assert_int_equal(device_info_pick(&di, 0, 1), 0);
    assert_int_equal(device_info_pick(&di, 3, 8), 0); /* srun --gpus-per-task=1 */
    di.count = 8;
    assert_int_equal(device_info_pick(&di, 3, 8), 3); /* mpirun -npernode 8 */
    assert_int_equal(device_info_pick(&di, 5, 6), 5);
    di.count = 2;
    assert_int_equal(device_info_pick(&di, 1, 4), -1); /* 4 ranks, 2 GPUs */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_and_validation),
        cmocka_unit_test(test_cpu_expf),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_cast_norm_scale_add),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_device_pick),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
