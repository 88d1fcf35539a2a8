/* tests/gpu/test_cuda_ops.c: every op of kernels/ops.h on the CUDA backend
 * against the CPU backend (the reference), on fresh random inputs.
 *
 * Inputs are drawn in fp32 and rounded to bf16 once, so both backends see
 * the same values (the CPU in fp32, the GPU in bf16). Outputs are compared
 * by relative error of norms, ||gpu - cpu|| / ||cpu||, with one tolerance
 * per check from the error model in support/gpu_util.h (U_BF16 = 2^-8):
 *   bf16 outputs: tol_bf16(k), k = the bf16 roundings on the GPU's path,
 *     counted at each check (1 for an op that computes in fp32 and rounds
 *     its output once: 9.0e-3)
 *   fp32 outputs that sum n terms (dweight, dbias, stats, lse, losses):
 *     tol_f32_sum(n) = 4 n U_F32, n counted at each check
 *   exact ops (casts, copies, masks)  0
 * Outputs the op must write are poisoned with NaN first, so an unwritten
 * element fails. The seed is printed (SHARDLM_TEST_SEED=<n> repeats a run).
 * Attention and embedding backward are also run twice and compared bitwise
 * (ops.h promises run-to-run reproducibility). Dropout masks must equal the
 * CPU's exactly (same Philox counters).
 *
 * Without a usable CUDA device the test prints "skipped: no CUDA device
 * (cudaGetDeviceCount: ...)" and exits 77 (ctest SKIP_RETURN_CODE).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/device_info.h"
#include "kernels/ops.h"
#include "support/gpu_util.h"

#define MAX_BUFS 64

typedef struct {
    sl_backend *cpu, *gpu;
    uint64_t rng;
    int failed, checked;
    void *bufs[MAX_BUFS];
    size_t sizes[MAX_BUFS];
    int n_bufs;
    const char *test;
} ctx;

static float urand(ctx *t) { /* xorshift64*: uniform in [-1, 1) */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    uint64_t x = t->rng * 0x2545F4914F6CDD1DULL;
    return (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float bf(float x) { return f32_from_bf16(bf16_from_f32(x)); }

static float *host_rand(ctx *t, size_t n, float scale) {
    float *x = malloc(n * sizeof(float) + 4);
    if (!x) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        x[i] = bf(urand(t) * scale);
    return x;
}

static void fail(ctx *t, const char *what) {
    fprintf(stderr, "FAIL %s: %s: %s\n", t->test, what, sl_error_message());
    t->failed++;
}

#define TRY(t, call)                                                                  \
    do {                                                                              \
        if ((call) != SL_OK) {                                                        \
            fail(t, #call);                                                           \
            return;                                                                   \
        }                                                                             \
    } while (0)

static void *dev_alloc(ctx *t, size_t bytes) {
    void *p = NULL;
    if (t->n_bufs >= MAX_BUFS || backend_alloc(t->gpu, MEM_CATEGORY_ACTIVATIONS, bytes, &p) != SL_OK) {
        fprintf(stderr, "device allocation of %zu bytes failed: %s\n", bytes, sl_error_message());
        exit(1);
    }
    t->bufs[t->n_bufs] = p;
    t->sizes[t->n_bufs++] = bytes;
    return p;
}

static void dev_free_all(ctx *t) {
    for (int i = 0; i < t->n_bufs; i++)
        backend_free(t->gpu, MEM_CATEGORY_ACTIVATIONS, t->bufs[i], t->sizes[i]);
    t->n_bufs = 0;
}

static void upload(ctx *t, void *dst, const void *src, size_t bytes) {
    if (backend_memcpy(t->gpu, dst, src, bytes, BACKEND_COPY_H2D) != SL_OK ||
        backend_synchronize(t->gpu) != SL_OK) {
        fprintf(stderr, "upload failed: %s\n", sl_error_message());
        exit(1);
    }
}

static void download(ctx *t, void *dst, const void *src, size_t bytes) {
    if (backend_memcpy(t->gpu, dst, src, bytes, BACKEND_COPY_D2H) != SL_OK) {
        fprintf(stderr, "download failed (an earlier kernel may have faulted): %s\n",
                sl_error_message());
        exit(1);
    }
}

/* bf16 device copy of host floats (already bf16-exact). */
static void *dev_bf16(ctx *t, const float *x, size_t n) {
    uint16_t *h = malloc(n * 2 + 2);
    bf16_from_f32_array(h, x, n);
    void *d = dev_alloc(t, n * 2);
    upload(t, d, h, n * 2);
    free(h);
    return d;
}

static void *dev_f32(ctx *t, const float *x, size_t n) {
    void *d = dev_alloc(t, n * 4);
    upload(t, d, x, n * 4);
    return d;
}

static void *dev_raw(ctx *t, const void *x, size_t bytes) {
    void *d = dev_alloc(t, bytes);
    upload(t, d, x, bytes);
    return d;
}

/* Output buffer filled with NaN (0xff bytes: NaN in bf16 and fp32). */
static void *dev_poison(ctx *t, size_t bytes) {
    unsigned char *h = malloc(bytes + 1);
    memset(h, 0xff, bytes);
    void *d = dev_alloc(t, bytes);
    upload(t, d, h, bytes);
    free(h);
    return d;
}

static float *down_bf16(ctx *t, const void *d, size_t n) {
    uint16_t *h = malloc(n * 2 + 2);
    float *f = malloc(n * 4 + 4);
    download(t, h, d, n * 2);
    f32_from_bf16_array(f, h, n);
    free(h);
    return f;
}

static float *down_f32(ctx *t, const void *d, size_t n) {
    float *f = malloc(n * 4 + 4);
    download(t, f, d, n * 4);
    return f;
}

static void check(ctx *t, const char *name, const float *gpu, const float *cpu, size_t n,
                  double tol) {
    double num = 0.0, den = 0.0;
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        double d = (double)gpu[i] - (double)cpu[i];
        if (!isfinite(gpu[i]) && bad == n)
            bad = i;
        num += d * d;
        den += (double)cpu[i] * cpu[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    t->checked++;
    if (bad < n || !(rel <= tol)) {
        t->failed++;
        fprintf(stderr, "FAIL %s: %s: rel err %.3e > tol %.2e%s", t->test, name, rel, tol,
                bad < n ? " (non-finite output" : "");
        if (bad < n)
            fprintf(stderr, " at %zu: %g)", bad, (double)gpu[bad]);
        fprintf(stderr, "\n");
    } else {
        printf("  ok %-28s %-24s rel %.2e (tol %.2e)\n", t->test, name, rel, tol);
    }
}

static void check_free(ctx *t, const char *name, float *gpu, const float *cpu, size_t n,
                       double tol) {
    check(t, name, gpu, cpu, n, tol);
    free(gpu);
}

/* views: C* on the CPU (F32), G* on the GPU (BF16 unless F32 given) */
static sl_tensor c1(ctx *t, float *p, int64_t a) { return ops_view1(t->cpu, SL_DTYPE_F32, p, a); }
static sl_tensor c2(ctx *t, float *p, int64_t a, int64_t b) { return ops_view2(t->cpu, SL_DTYPE_F32, p, a, b); }
static sl_tensor c4(ctx *t, float *p, int64_t a, int64_t b, int64_t c, int64_t d) {
    return ops_view4(t->cpu, SL_DTYPE_F32, p, a, b, c, d);
}
static sl_tensor g1(ctx *t, sl_dtype dt, void *p, int64_t a) { return ops_view1(t->gpu, dt, p, a); }
static sl_tensor g2(ctx *t, sl_dtype dt, void *p, int64_t a, int64_t b) { return ops_view2(t->gpu, dt, p, a, b); }
static sl_tensor g4(ctx *t, void *p, int64_t a, int64_t b, int64_t c, int64_t d) {
    return ops_view4(t->gpu, SL_DTYPE_BF16, p, a, b, c, d);
}
#define BF SL_DTYPE_BF16
#define F32 SL_DTYPE_F32

/* ------------------------------------------------------------------------ */

static void test_matmul(ctx *t, int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool f32out) {
    t->test = "matmul";
    float *a = host_rand(t, (size_t)(m * k), 1.0f), *b = host_rand(t, (size_t)(k * n), 1.0f);
    float *bias = host_rand(t, (size_t)n, 1.0f), *c0 = host_rand(t, (size_t)(m * n), 1.0f);
    float *cc = malloc((size_t)(m * n) * 4);
    memcpy(cc, c0, (size_t)(m * n) * 4);
    float alpha = 0.75f, beta = f32out ? 1.0f : 0.0f;
    TRY(t, ops_matmul(t->cpu, c2(t, cc, m, n), ta ? c2(t, a, k, m) : c2(t, a, m, k),
                      tb ? c2(t, b, n, k) : c2(t, b, k, n), c1(t, bias, n), ta, tb, alpha, beta));
    void *da = dev_bf16(t, a, (size_t)(m * k)), *db = dev_bf16(t, b, (size_t)(k * n));
    void *dbias = f32out ? dev_f32(t, bias, (size_t)n) : dev_bf16(t, bias, (size_t)n);
    void *dc = f32out ? dev_f32(t, c0, (size_t)(m * n)) : dev_poison(t, (size_t)(m * n) * 2);
    TRY(t, ops_matmul(t->gpu, g2(t, f32out ? F32 : BF, dc, m, n),
                      ta ? g2(t, BF, da, k, m) : g2(t, BF, da, m, k),
                      tb ? g2(t, BF, db, n, k) : g2(t, BF, db, k, n),
                      g1(t, f32out ? F32 : BF, dbias, n), ta, tb, alpha, beta));
    char name[64];
    snprintf(name, sizeof name, "%" PRId64 "x%" PRId64 "x%" PRId64 " %c%c %s", m, n, k,
             ta ? 'T' : 'N', tb ? 'T' : 'N', f32out ? "f32+=" : "bf16");
    /* fp32 output: only the order of the k products' sum (+ beta C) differs
     * (products of bf16 are exact in fp32); bf16 output: one rounding */
    check_free(t, name, f32out ? down_f32(t, dc, (size_t)(m * n)) : down_bf16(t, dc, (size_t)(m * n)),
               cc, (size_t)(m * n), f32out ? tol_f32_sum((double)k + 1) : tol_bf16(1));
    free(a), free(b), free(bias), free(c0), free(cc);
    dev_free_all(t);
}

static void test_linear(ctx *t, int64_t r, int64_t k, int64_t n) {
    t->test = "linear";
    float *x = host_rand(t, (size_t)(r * k), 1.0f), *w = host_rand(t, (size_t)(n * k), 0.5f);
    float *bias = host_rand(t, (size_t)n, 1.0f), *dy = host_rand(t, (size_t)(r * n), 1.0f);
    float *dx0 = host_rand(t, (size_t)(r * k), 1.0f), *dw0 = host_rand(t, (size_t)(n * k), 1.0f);
    float *db0 = host_rand(t, (size_t)n, 1.0f);
    float *y = malloc((size_t)(r * n) * 4), *dx = malloc((size_t)(r * k) * 4);
    float *dw = malloc((size_t)(n * k) * 4), *dbb = malloc((size_t)n * 4);
    memcpy(dx, dx0, (size_t)(r * k) * 4);
    memcpy(dw, dw0, (size_t)(n * k) * 4);
    memcpy(dbb, db0, (size_t)n * 4);
    TRY(t, ops_linear_forward(t->cpu, c2(t, y, r, n), c2(t, x, r, k), c2(t, w, n, k), c1(t, bias, n)));
    TRY(t, ops_linear_backward(t->cpu, c2(t, dx, r, k), c2(t, dw, n, k), c1(t, dbb, n),
                               c2(t, dy, r, n), c2(t, x, r, k), c2(t, w, n, k), true));
    void *gx = dev_bf16(t, x, (size_t)(r * k)), *gw = dev_bf16(t, w, (size_t)(n * k));
    void *gb = dev_bf16(t, bias, (size_t)n), *gdy = dev_bf16(t, dy, (size_t)(r * n));
    void *gy = dev_poison(t, (size_t)(r * n) * 2), *gdx = dev_bf16(t, dx0, (size_t)(r * k));
    void *gdw = dev_f32(t, dw0, (size_t)(n * k)), *gdb = dev_f32(t, db0, (size_t)n);
    TRY(t, ops_linear_forward(t->gpu, g2(t, BF, gy, r, n), g2(t, BF, gx, r, k), g2(t, BF, gw, n, k),
                              g1(t, BF, gb, n)));
    TRY(t, ops_linear_backward(t->gpu, g2(t, BF, gdx, r, k), g2(t, F32, gdw, n, k), g1(t, F32, gdb, n),
                               g2(t, BF, gdy, r, n), g2(t, BF, gx, r, k), g2(t, BF, gw, n, k), true));
    /* out: fp32 GEMM + bias epilogue, one rounding; dinp: fp32 GEMM + the bf16
     * dx0, one rounding; dweight, dbias: fp32 sums over the r rows (+ the
     * previous value) */
    check_free(t, "out", down_bf16(t, gy, (size_t)(r * n)), y, (size_t)(r * n), tol_bf16(1));
    check_free(t, "dinp (+=)", down_bf16(t, gdx, (size_t)(r * k)), dx, (size_t)(r * k), tol_bf16(1));
    check_free(t, "dweight (f32 +=)", down_f32(t, gdw, (size_t)(n * k)), dw, (size_t)(n * k),
               tol_f32_sum((double)r + 1));
    check_free(t, "dbias (f32 +=)", down_f32(t, gdb, (size_t)n), dbb, (size_t)n, tol_f32_sum((double)r + 1));
    free(x), free(w), free(bias), free(dy), free(dx0), free(dw0), free(db0);
    free(y), free(dx), free(dw), free(dbb);
    dev_free_all(t);
}

static void test_norm(ctx *t, bool rms, int64_t r, int64_t c, bool acc) {
    t->test = rms ? "rmsnorm" : "layernorm";
    size_t n = (size_t)(r * c);
    float *x = host_rand(t, n, 2.0f), *w = host_rand(t, (size_t)c, 1.0f);
    float *b = host_rand(t, (size_t)c, 1.0f), *dy = host_rand(t, n, 1.0f);
    float *dx0 = host_rand(t, n, 1.0f), *dw0 = host_rand(t, (size_t)c, 1.0f);
    for (size_t i = 0; i < n; i++) /* a row offset, so the two-pass variance matters */
        x[i] = bf(x[i] + 3.0f);
    float *y = malloc(n * 4), *mean = malloc((size_t)r * 4), *rstd = malloc((size_t)r * 4);
    float *dx = malloc(n * 4), *dw = malloc((size_t)c * 4), *dbb = malloc((size_t)c * 4);
    memcpy(dx, dx0, n * 4);
    memcpy(dw, dw0, (size_t)c * 4);
    memcpy(dbb, dw0, (size_t)c * 4);
    void *gx = dev_bf16(t, x, n), *gw = dev_bf16(t, w, (size_t)c), *gb = dev_bf16(t, b, (size_t)c);
    void *gdy = dev_bf16(t, dy, n), *gy = dev_poison(t, n * 2);
    void *gmean = dev_poison(t, (size_t)r * 4), *grstd = dev_poison(t, (size_t)r * 4);
    void *gdx = acc ? dev_bf16(t, dx0, n) : dev_poison(t, n * 2);
    void *gdw = dev_f32(t, dw0, (size_t)c), *gdb = dev_f32(t, dw0, (size_t)c);
    if (rms) {
        TRY(t, ops_rmsnorm_forward(t->cpu, c2(t, y, r, c), c1(t, rstd, r), c2(t, x, r, c), c1(t, w, c), 1e-5f));
        TRY(t, ops_rmsnorm_backward(t->cpu, c2(t, dx, r, c), c1(t, dw, c), c2(t, dy, r, c), c2(t, x, r, c),
                                    c1(t, w, c), c1(t, rstd, r), acc));
        TRY(t, ops_rmsnorm_forward(t->gpu, g2(t, BF, gy, r, c), g1(t, F32, grstd, r), g2(t, BF, gx, r, c),
                                   g1(t, BF, gw, c), 1e-5f));
        TRY(t, ops_rmsnorm_backward(t->gpu, g2(t, BF, gdx, r, c), g1(t, F32, gdw, c), g2(t, BF, gdy, r, c),
                                    g2(t, BF, gx, r, c), g1(t, BF, gw, c), g1(t, F32, grstd, r), acc));
    } else {
        TRY(t, ops_layernorm_forward(t->cpu, c2(t, y, r, c), c1(t, mean, r), c1(t, rstd, r), c2(t, x, r, c),
                                     c1(t, w, c), c1(t, b, c), 1e-5f));
        TRY(t, ops_layernorm_backward(t->cpu, c2(t, dx, r, c), c1(t, dw, c), c1(t, dbb, c), c2(t, dy, r, c),
                                      c2(t, x, r, c), c1(t, w, c), c1(t, mean, r), c1(t, rstd, r), acc));
        TRY(t, ops_layernorm_forward(t->gpu, g2(t, BF, gy, r, c), g1(t, F32, gmean, r), g1(t, F32, grstd, r),
                                     g2(t, BF, gx, r, c), g1(t, BF, gw, c), g1(t, BF, gb, c), 1e-5f));
        TRY(t, ops_layernorm_backward(t->gpu, g2(t, BF, gdx, r, c), g1(t, F32, gdw, c), g1(t, F32, gdb, c),
                                      g2(t, BF, gdy, r, c), g2(t, BF, gx, r, c), g1(t, BF, gw, c),
                                      g1(t, F32, gmean, r), g1(t, F32, grstd, r), acc));
        /* mean: an fp32 sum of c terms; dbias: of r rows */
        check_free(t, "mean", down_f32(t, gmean, (size_t)r), mean, (size_t)r, tol_f32_sum((double)c));
        check_free(t, "dbias (f32 +=)", down_f32(t, gdb, (size_t)c), dbb, (size_t)c, tol_f32_sum((double)r + 1));
    }
    /* out, dinp: fp32 from the row stats, one rounding (dinp +=: the bf16 dx0
     * added in fp32, still one); rstd: sums of c terms (two passes: mean,
     * then squares); dweight: a sum over r rows of dy x_hat, x_hat carrying
     * rstd's error */
    check_free(t, "out", down_bf16(t, gy, n), y, n, tol_bf16(1));
    check_free(t, "rstd", down_f32(t, grstd, (size_t)r), rstd, (size_t)r, tol_f32_sum(2.0 * (double)c));
    check_free(t, acc ? "dinp (+=)" : "dinp", down_bf16(t, gdx, n), dx, n, tol_bf16(1));
    check_free(t, "dweight (f32 +=)", down_f32(t, gdw, (size_t)c), dw, (size_t)c,
               tol_f32_sum((double)r + 1 + 2.0 * (double)c));
    free(x), free(w), free(b), free(dy), free(dx0), free(dw0);
    free(y), free(mean), free(rstd), free(dx), free(dw), free(dbb);
    dev_free_all(t);
}

static void test_elementwise(ctx *t, int64_t n) {
    t->test = "elementwise";
    size_t un = (size_t)n;
    float *x = host_rand(t, un, 3.0f), *u = host_rand(t, un, 2.0f), *dy = host_rand(t, un, 1.0f);
    float *y = malloc(un * 4), *y2 = malloc(un * 4);
    void *gx = dev_bf16(t, x, un), *gu = dev_bf16(t, u, un), *gdy = dev_bf16(t, dy, un);
    void *o1 = dev_poison(t, un * 2), *o2 = dev_poison(t, un * 2);
    sl_tensor cx = c1(t, x, n), cu = c1(t, u, n), cdy = c1(t, dy, n), cy = c1(t, y, n), cy2 = c1(t, y2, n);
    sl_tensor tx = g1(t, BF, gx, n), tu = g1(t, BF, gu, n), tdy = g1(t, BF, gdy, n);
    sl_tensor t1 = g1(t, BF, o1, n), t2 = g1(t, BF, o2, n);

    /* each op computes in fp32 from bf16 inputs and rounds its output once
     * (__expf's few ulp are fp32-sized): tol_bf16(1) */
    TRY(t, ops_gelu_forward(t->cpu, cy, cx));
    TRY(t, ops_gelu_forward(t->gpu, t1, tx));
    check_free(t, "gelu", down_bf16(t, o1, un), y, un, tol_bf16(1));
    TRY(t, ops_gelu_backward(t->cpu, cy, cx, cdy));
    TRY(t, ops_gelu_backward(t->gpu, t1, tx, tdy));
    check_free(t, "gelu backward", down_bf16(t, o1, un), y, un, tol_bf16(1));
    TRY(t, ops_swiglu_forward(t->cpu, cy, cx, cu));
    TRY(t, ops_swiglu_forward(t->gpu, t1, tx, tu));
    check_free(t, "swiglu", down_bf16(t, o1, un), y, un, tol_bf16(1));
    TRY(t, ops_swiglu_backward(t->cpu, cy, cy2, cdy, cx, cu));
    TRY(t, ops_swiglu_backward(t->gpu, t1, t2, tdy, tx, tu));
    check_free(t, "swiglu dgate", down_bf16(t, o1, un), y, un, tol_bf16(1));
    check_free(t, "swiglu dup", down_bf16(t, o2, un), y2, un, tol_bf16(1));
    TRY(t, ops_add(t->cpu, cy, cx, cu));
    TRY(t, ops_add(t->gpu, t1, tx, tu));
    check_free(t, "add", down_bf16(t, o1, un), y, un, tol_bf16(1));
    /* scale in place, bf16 and f32 */
    memcpy(y, x, un * 4);
    TRY(t, ops_scale(t->cpu, cy, -0.37f));
    TRY(t, ops_scale(t->gpu, tx, -0.37f));
    check_free(t, "scale bf16", down_bf16(t, gx, un), y, un, tol_bf16(1));
    void *gf = dev_f32(t, x, un);
    memcpy(y, x, un * 4);
    TRY(t, ops_scale(t->cpu, cy, 1.7f));
    TRY(t, ops_scale(t->gpu, g1(t, F32, gf, n), 1.7f));
    check_free(t, "scale f32", down_f32(t, gf, un), y, un, tol_f32(1)); /* one fp32 product */
    /* casts: exact (f32 -> bf16 is round-to-nearest-even on both sides) */
    float *xf = malloc(un * 4);
    for (size_t i = 0; i < un; i++)
        xf[i] = urand(t) * 10.0f; /* not bf16-exact */
    void *gxf = dev_f32(t, xf, un);
    TRY(t, ops_cast(t->gpu, t1, g1(t, F32, gxf, n)));
    for (size_t i = 0; i < un; i++)
        y[i] = bf(xf[i]);
    check_free(t, "cast f32->bf16 (exact)", down_bf16(t, o1, un), y, un, 0.0);
    void *gback = dev_poison(t, un * 4);
    TRY(t, ops_cast(t->gpu, g1(t, F32, gback, n), t1));
    check_free(t, "cast bf16->f32 (exact)", down_f32(t, gback, un), y, un, 0.0);
    free(xf), free(x), free(u), free(dy), free(y), free(y2);
    dev_free_all(t);
}

static void test_rope(ctx *t, int64_t b, int64_t tl, int64_t h, int64_t d, int64_t off) {
    t->test = "rope";
    size_t n = (size_t)(b * tl * h * d);
    float *x = host_rand(t, n, 1.0f), *y = malloc(n * 4), *z = malloc(n * 4);
    /* the default table 1 / 10000^(2i/d) with its last quarter divided by 8
     * (a llama3-like scaled table): both backends rotate by the given table */
    float *inv = malloc((size_t)(d / 2) * 4);
    for (int64_t i = 0; i < d / 2; i++)
        inv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)d) / (i >= 3 * d / 8 ? 8.0f : 1.0f);
    void *gx = dev_bf16(t, x, n), *gy = dev_poison(t, n * 2), *ginv = dev_f32(t, inv, (size_t)(d / 2));
    sl_tensor cf = c1(t, inv, d / 2), gf = g1(t, SL_DTYPE_F32, ginv, d / 2);
    TRY(t, ops_rope_forward(t->cpu, c4(t, y, b, tl, h, d), c4(t, x, b, tl, h, d), off, cf));
    TRY(t, ops_rope_forward(t->gpu, g4(t, gy, b, tl, h, d), g4(t, gx, b, tl, h, d), off, gf));
    check_free(t, "forward", down_bf16(t, gy, n), y, n, tol_bf16(1));
    TRY(t, ops_rope_backward(t->cpu, c4(t, z, b, tl, h, d), c4(t, x, b, tl, h, d), off, cf));
    TRY(t, ops_rope_backward(t->gpu, g4(t, gx, b, tl, h, d), g4(t, gx, b, tl, h, d), off, gf));
    check_free(t, "backward (in place)", down_bf16(t, gx, n), z, n, tol_bf16(1));
    free(x), free(y), free(z), free(inv);
    dev_free_all(t);
}

static void test_attention(ctx *t, int64_t b, int64_t tl, int64_t h, int64_t hkv, int64_t d) {
    t->test = "attention";
    size_t nq = (size_t)(b * tl * h * d), nk = (size_t)(b * tl * hkv * d), nl = (size_t)(b * h * tl);
    float *q = host_rand(t, nq, 1.0f), *k = host_rand(t, nk, 1.0f), *v = host_rand(t, nk, 1.0f);
    float *dy = host_rand(t, nq, 1.0f);
    float *o = malloc(nq * 4), *lse = malloc(nl * 4), *dq = malloc(nq * 4);
    float *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    TRY(t, ops_attention_forward(t->cpu, c4(t, o, b, tl, h, d), c1(t, lse, (int64_t)nl),
                                 c4(t, q, b, tl, h, d), c4(t, k, b, tl, hkv, d), c4(t, v, b, tl, hkv, d)));
    /* the GPU backward gets the CPU forward's output rounded to bf16, as
     * the model would store it */
    for (size_t i = 0; i < nq; i++)
        o[i] = bf(o[i]);
    TRY(t, ops_attention_backward(t->cpu, c4(t, dq, b, tl, h, d), c4(t, dk, b, tl, hkv, d),
                                  c4(t, dv, b, tl, hkv, d), c4(t, dy, b, tl, h, d), c4(t, q, b, tl, h, d),
                                  c4(t, k, b, tl, hkv, d), c4(t, v, b, tl, hkv, d), c4(t, o, b, tl, h, d),
                                  c1(t, lse, (int64_t)nl)));
    void *gq = dev_bf16(t, q, nq), *gk = dev_bf16(t, k, nk), *gv = dev_bf16(t, v, nk);
    void *gdy = dev_bf16(t, dy, nq), *go = dev_poison(t, nq * 2), *glse = dev_poison(t, nl * 4);
    TRY(t, ops_attention_forward(t->gpu, g4(t, go, b, tl, h, d), g1(t, F32, glse, (int64_t)nl),
                                 g4(t, gq, b, tl, h, d), g4(t, gk, b, tl, hkv, d), g4(t, gv, b, tl, hkv, d)));
    char name[96];
    snprintf(name, sizeof name, "fwd B%" PRId64 " T%" PRId64 " H%" PRId64 "/%" PRId64 " D%" PRId64, b,
             tl, h, hkv, d);
    /* out: P rounded to bf16 for P V, then the output: k = 2. lse = m + log l,
     * l an fp32 sum of up to tl positive terms (the fp32 p, not the rounded
     * P: the bf16 sum erred by ~1e-4 at T 64), S from d-term fp32 dot
     * products: |dlse| <= (tl + d) U_F32 of lse's size */
    check_free(t, name, down_bf16(t, go, nq), o, nq, tol_bf16(2));
    check_free(t, "lse", down_f32(t, glse, nl), lse, nl, tol_f32_sum((double)(tl + d)));
    void *gob = dev_bf16(t, o, nq), *glc = dev_f32(t, lse, nl); /* backward from the same o, lse */
    void *gdq = dev_poison(t, nq * 2), *gdk = dev_poison(t, nk * 2), *gdv = dev_poison(t, nk * 2);
    uint16_t *first = malloc(nk * 2), *second = malloc(nk * 2);
    for (int rep = 0; rep < 2; rep++) {
        TRY(t, ops_attention_backward(t->gpu, g4(t, gdq, b, tl, h, d), g4(t, gdk, b, tl, hkv, d),
                                      g4(t, gdv, b, tl, hkv, d), g4(t, gdy, b, tl, h, d),
                                      g4(t, gq, b, tl, h, d), g4(t, gk, b, tl, hkv, d),
                                      g4(t, gv, b, tl, hkv, d), g4(t, gob, b, tl, h, d),
                                      g1(t, F32, glc, (int64_t)nl)));
        download(t, rep ? second : first, gdk, nk * 2);
    }
    t->checked++;
    if (memcmp(first, second, nk * 2)) {
        t->failed++;
        fprintf(stderr, "FAIL attention: dk differs between two identical backward runs\n");
    }
    free(first), free(second);
    /* dv = P^T dO: P rounded, output rounded: k = 2; dq = dS K, dk = dS^T Q:
     * P rounded (dS = P (dP - delta) in fp32), dS rounded, output rounded:
     * k = 3 */
    check_free(t, "dq", down_bf16(t, gdq, nq), dq, nq, tol_bf16(3));
    check_free(t, "dk", down_bf16(t, gdk, nk), dk, nk, tol_bf16(3));
    check_free(t, "dv", down_bf16(t, gdv, nk), dv, nk, tol_bf16(2));
    free(q), free(k), free(v), free(dy), free(o), free(lse), free(dq), free(dk), free(dv);
    dev_free_all(t);
}

static void test_decode(ctx *t, int64_t b, int64_t s, int64_t kv_len, int64_t tq, int64_t h,
                        int64_t hkv, int64_t d) {
    t->test = "attention_decode";
    size_t nq = (size_t)(b * tq * h * d), nc = (size_t)(b * s * hkv * d), nn = (size_t)(b * tq * hkv * d);
    float *q = host_rand(t, nq, 1.0f), *kc = host_rand(t, nc, 1.0f), *vc = host_rand(t, nc, 1.0f);
    float *kn = host_rand(t, nn, 1.0f), *o = malloc(nq * 4);
    void *gq = dev_bf16(t, q, nq), *gk = dev_bf16(t, kc, nc), *gv = dev_bf16(t, vc, nc);
    void *gkn = dev_bf16(t, kn, nn), *go = dev_poison(t, nq * 2);
    /* append the new keys at kv_len - tq on both sides, then attend */
    TRY(t, ops_kv_cache_append(t->cpu, c4(t, kc, b, s, hkv, d), c4(t, kn, b, tq, hkv, d), kv_len - tq));
    TRY(t, ops_kv_cache_append(t->gpu, g4(t, gk, b, s, hkv, d), g4(t, gkn, b, tq, hkv, d), kv_len - tq));
    check_free(t, "kv_cache_append (exact)", down_bf16(t, gk, nc), kc, nc, 0.0);
    TRY(t, ops_attention_decode(t->cpu, c4(t, o, b, tq, h, d), c4(t, q, b, tq, h, d),
                                c4(t, kc, b, s, hkv, d), c4(t, vc, b, s, hkv, d), kv_len));
    TRY(t, ops_attention_decode(t->gpu, g4(t, go, b, tq, h, d), g4(t, gq, b, tq, h, d),
                                g4(t, gk, b, s, hkv, d), g4(t, gv, b, s, hkv, d), kv_len));
    check_free(t, "decode out", down_bf16(t, go, nq), o, nq, tol_bf16(2)); /* P and output: k = 2 */
    free(q), free(kc), free(vc), free(kn), free(o);
    dev_free_all(t);
}

static void test_embedding(ctx *t, int64_t b, int64_t tl, int64_t c, int64_t vocab) {
    t->test = "embedding";
    size_t n = (size_t)(b * tl), nw = (size_t)(vocab * c);
    uint32_t *tok = malloc(n * 4);
    for (size_t i = 0; i < n; i++) /* few distinct ids: many repeats to scatter-add */
        tok[i] = (uint32_t)((urand(t) + 1.0f) * 0.5f * (float)(vocab / 4)) % (uint32_t)vocab;
    float *wte = host_rand(t, nw, 1.0f), *wpe = host_rand(t, (size_t)(tl + 3) * (size_t)c, 1.0f);
    float *dy = host_rand(t, n * (size_t)c, 1.0f), *y = malloc(n * (size_t)c * 4);
    float *dwte = host_rand(t, nw, 1.0f), *dwte0 = malloc(nw * 4), *dwpe = host_rand(t, (size_t)(tl + 3) * (size_t)c, 1.0f);
    memcpy(dwte0, dwte, nw * 4);
    void *gtok = dev_raw(t, tok, n * 4), *gwte = dev_bf16(t, wte, nw);
    void *gwpe = dev_bf16(t, wpe, (size_t)(tl + 3) * (size_t)c), *gdy = dev_bf16(t, dy, n * (size_t)c);
    void *gy = dev_poison(t, n * (size_t)c * 2), *gdwte = dev_f32(t, dwte, nw);
    void *gdwpe = dev_f32(t, dwpe, (size_t)(tl + 3) * (size_t)c);
    sl_tensor ctok = ops_view2(t->cpu, SL_DTYPE_U32, tok, b, tl), gt = ops_view2(t->gpu, SL_DTYPE_U32, gtok, b, tl);
    TRY(t, ops_embedding_forward(t->cpu, ops_view3(t->cpu, F32, y, b, tl, c), ctok, c2(t, wte, vocab, c),
                                 c2(t, wpe, tl + 3, c), 2));
    TRY(t, ops_embedding_forward(t->gpu, ops_view3(t->gpu, BF, gy, b, tl, c), gt, g2(t, BF, gwte, vocab, c),
                                 g2(t, BF, gwpe, tl + 3, c), 2));
    check_free(t, "forward (+wpe)", down_bf16(t, gy, n * (size_t)c), y, n * (size_t)c, tol_bf16(1)); /* fp32 add, one rounding */
    TRY(t, ops_embedding_backward(t->cpu, c2(t, dwte, vocab, c), c2(t, dwpe, tl + 3, c),
                                  ops_view3(t->cpu, F32, dy, b, tl, c), ctok, 2));
    float *runs[2];
    for (int rep = 0; rep < 2; rep++) { /* same start, two runs: bitwise equal */
        upload(t, gdwte, dwte0, nw * 4);
        TRY(t, ops_embedding_backward(t->gpu, g2(t, F32, gdwte, vocab, c),
                                      rep ? ops_none() : g2(t, F32, gdwpe, tl + 3, c),
                                      ops_view3(t->gpu, BF, gdy, b, tl, c), gt, 2));
        runs[rep] = down_f32(t, gdwte, nw);
    }
    t->checked++;
    if (memcmp(runs[0], runs[1], nw * 4)) {
        t->failed++;
        fprintf(stderr, "FAIL embedding: dwte differs between two identical backward runs\n");
    }
    free(runs[1]);
    /* fp32 sums: a row of dwte gets at most all n positions (+ its old value),
     * a row of dwpe the b batch rows (+ its old value) */
    check_free(t, "dwte (f32 +=)", runs[0], dwte, nw, tol_f32_sum((double)n + 1));
    check_free(t, "dwpe (f32 +=)", down_f32(t, gdwpe, (size_t)(tl + 3) * (size_t)c), dwpe,
               (size_t)(tl + 3) * (size_t)c, tol_f32_sum((double)b + 1));
    /* an id >= vocab is reported, naming the position */
    tok[n - 1] = (uint32_t)vocab;
    upload(t, gtok, tok, n * 4);
    t->checked++;
    if (ops_embedding_forward(t->gpu, ops_view3(t->gpu, BF, gy, b, tl, c), gt, g2(t, BF, gwte, vocab, c),
                              ops_none(), 0) != SL_ERR_INVALID ||
        !strstr(sl_error_message(), "token id")) {
        t->failed++;
        fprintf(stderr, "FAIL embedding: token id >= vocab not reported (%s)\n", sl_error_message());
    }
    free(tok), free(wte), free(wpe), free(dy), free(y), free(dwte), free(dwte0), free(dwpe);
    dev_free_all(t);
}

static void test_xent(ctx *t, int64_t r, int64_t vocab, int64_t chunk) {
    t->test = "cross_entropy";
    size_t n = (size_t)(r * vocab);
    float *z = host_rand(t, n, 4.0f), *dz = malloc(n * 4), *loss = malloc((size_t)r * 4);
    int32_t *tg = malloc((size_t)r * 4);
    for (int64_t i = 0; i < r; i++)
        tg[i] = i % 5 == 3 ? -1 : (int32_t)(((urand(t) + 1.0f) * 0.5f) * (float)(vocab - 1));
    float gs = 1.0f / (float)r;
    double ls_c, ls_g;
    int64_t nv_c, nv_g;
    TRY(t, ops_cross_entropy(t->cpu, c1(t, loss, r), c2(t, dz, r, vocab), c2(t, z, r, vocab),
                             ops_view1(t->cpu, SL_DTYPE_I32, tg, r), gs, &ls_c, &nv_c));
    void *gz = dev_bf16(t, z, n), *gdz = dev_poison(t, n * 2), *gl = dev_poison(t, (size_t)r * 4);
    void *gt = dev_raw(t, tg, (size_t)r * 4);
    sl_tensor gtt = ops_view1(t->gpu, SL_DTYPE_I32, gt, r);
    TRY(t, ops_cross_entropy(t->gpu, g1(t, F32, gl, r), g2(t, BF, gdz, r, vocab), g2(t, BF, gz, r, vocab),
                             gtt, gs, &ls_g, &nv_g));
    float a = (float)ls_g, c = (float)ls_c;
    /* loss_i = lse_i - z_t, lse over vocab positive fp32 terms: |dloss_i| <=
     * vocab U_F32 (absolute, of lse's order; every loss here is > 1, so also
     * relative), the sum over rows in double */
    double tol_loss = tol_f32_sum((double)vocab);
    check(t, "fused loss sum", &a, &c, 1, tol_loss);
    t->checked++;
    if (nv_g != nv_c) {
        t->failed++;
        fprintf(stderr, "FAIL cross_entropy: n_valid %" PRId64 " vs %" PRId64 "\n", nv_g, nv_c);
    }
    check_free(t, "fused losses", down_f32(t, gl, (size_t)r), loss, (size_t)r, tol_loss);
    /* dlogits = (softmax - onehot) / rows in fp32, one rounding */
    check_free(t, "fused dlogits", down_bf16(t, gdz, n), dz, n, tol_bf16(1));
    /* chunked: stats over column chunks (copied to contiguous chunk buffers) */
    void *gstats = dev_poison(t, (size_t)r * 3 * 4), *glse = dev_poison(t, (size_t)r * 4);
    float *zc = malloc((size_t)(r * chunk) * 4);
    void *gzc = dev_poison(t, (size_t)(r * chunk) * 2);
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t v0 = 0; v0 < vocab; v0 += chunk) {
            int64_t vc = v0 + chunk < vocab ? chunk : vocab - v0;
            for (int64_t i = 0; i < r; i++)
                memcpy(zc + i * vc, z + i * vocab + v0, (size_t)vc * 4);
            void *tmp = dev_bf16(t, zc, (size_t)(r * vc));
            if (pass == 0) {
                TRY(t, ops_xent_stats_chunk(t->gpu, g1(t, F32, gstats, r * 3), g2(t, BF, tmp, r, vc), gtt,
                                            v0, v0 == 0));
            } else {
                TRY(t, ops_xent_backward_chunk(t->gpu, g2(t, BF, gzc, r, vc), g2(t, BF, tmp, r, vc),
                                               g1(t, F32, glse, r), gtt, v0, gs));
                float *got = down_bf16(t, gzc, (size_t)(r * vc));
                for (int64_t i = 0; i < r; i++)
                    memcpy(zc + i * vc, dz + i * vocab + v0, (size_t)vc * 4);
                check_free(t, "chunked dlogits", got, zc, (size_t)(r * vc), tol_bf16(1));
            }
        }
        if (pass == 0) {
            TRY(t, ops_xent_loss(t->gpu, g1(t, F32, gl, r), g1(t, F32, glse, r), g1(t, F32, gstats, r * 3), gtt,
                                 &ls_g, &nv_g));
            a = (float)ls_g;
            check(t, "chunked loss sum", &a, &c, 1, tol_loss);
        }
    }
    free(zc), free(z), free(dz), free(loss), free(tg);
    dev_free_all(t);
}

static void test_adamw_norm(ctx *t, int64_t n) {
    t->test = "adamw";
    size_t un = (size_t)n;
    float *p = host_rand(t, un, 1.0f), *g = host_rand(t, un, 1.0f), *m = host_rand(t, un, 0.1f);
    float *v = host_rand(t, un, 0.1f), *cp = malloc(un * 4);
    for (size_t i = 0; i < un; i++)
        v[i] = fabsf(v[i]);
    void *gp = dev_f32(t, p, un), *gg = dev_f32(t, g, un), *gm = dev_f32(t, m, un), *gv = dev_f32(t, v, un);
    void *gc = dev_poison(t, un * 2);
    ops_adamw_args args = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                           .grad_scale = 0.5f, .step = 7};
    TRY(t, ops_adamw(t->cpu, c1(t, p, n), c1(t, g, n), c1(t, m, n), c1(t, v, n), c1(t, cp, n), &args));
    TRY(t, ops_adamw(t->gpu, g1(t, F32, gp, n), g1(t, F32, gg, n), g1(t, F32, gm, n), g1(t, F32, gv, n),
                     g1(t, BF, gc, n), &args));
    /* m, v: scale, product, sum: 3 fp32 roundings that FMA contraction may
     * place differently; param: the update (about 8 roundings, sqrt, divide)
     * is 1e-3 of the param, so p's own rounding dominates: count 3 */
    check_free(t, "param (f32)", down_f32(t, gp, un), p, un, tol_f32(3));
    check_free(t, "m", down_f32(t, gm, un), m, un, tol_f32(3));
    check_free(t, "v", down_f32(t, gv, un), v, un, tol_f32(4));
    for (size_t i = 0; i < un; i++)
        cp[i] = bf(cp[i]);
    /* both round an fp32 param to bf16; they differ only where the two
     * params straddle a rounding boundary (a 2^-8 step, rare): below
     * one rounding's RMS by norm */
    check_free(t, "bf16 copy", down_bf16(t, gc, un), cp, un, U_BF16);
    t->test = "sq_norm";
    double sc, sg;
    TRY(t, ops_sq_norm(t->cpu, c1(t, g, n), &sc));
    TRY(t, ops_sq_norm(t->gpu, g1(t, F32, gg, n), &sg));
    float a = (float)sg, c = (float)sc;
    /* double accumulation on both sides; the two doubles are then rounded to
     * float for the check: 2 fp32 roundings, up to 2^-23 apart */
    check(t, "f32 (double accumulation)", &a, &c, 1, 2.0 * (double)U_F32 * 2.0);
    void *gb = dev_bf16(t, g, un);
    TRY(t, ops_sq_norm(t->gpu, g1(t, BF, gb, n), &sg));
    a = (float)sg;
    check(t, "bf16 input", &a, &c, 1, 2.0 * (double)U_F32 * 2.0); /* squares of bf16 exact in fp32 */
    free(p), free(g), free(m), free(v), free(cp);
    dev_free_all(t);
}

/* Dropout: the GPU's Philox mask must equal the CPU's element for element
 * (inputs are non-zero, so zero outputs are exactly the dropped ones); kept
 * values within bf16 rounding of x / (1 - p). Also in place, and an offset
 * that is not a multiple of 4 (the group of the first element is partial). */
static void test_dropout(ctx *t, int64_t n, float p, uint64_t seed, uint64_t offset) {
    t->test = "dropout";
    size_t un = (size_t)n;
    float *x = host_rand(t, un, 2.0f), *y = malloc(un * 4);
    for (size_t i = 0; i < un; i++)
        if (x[i] == 0.0f)
            x[i] = 0.5f;
    void *gx = dev_bf16(t, x, un), *o = dev_poison(t, un * 2);
    TRY(t, ops_dropout(t->cpu, c1(t, y, n), c1(t, x, n), p, seed, offset));
    for (int pass = 0; pass < 2; pass++) { /* out of place, then in place */
        void *dst = pass == 0 ? o : gx;
        TRY(t, ops_dropout(t->gpu, g1(t, BF, dst, n), g1(t, BF, gx, n), p, seed, offset));
        float *g = down_bf16(t, dst, un);
        size_t differ = 0, first = un;
        for (size_t i = 0; i < un; i++)
            if ((g[i] == 0.0f) != (y[i] == 0.0f)) {
                differ++;
                first = first < i ? first : i;
            }
        t->checked++;
        if (differ) {
            t->failed++;
            fprintf(stderr, "FAIL dropout: %zu of %zu mask elements differ from the CPU's (first at %zu)\n",
                    differ, un, first);
        } else {
            printf("  ok %-28s %-24s mask equal (%zu elements)\n", t->test, pass ? "mask (in place)" : "mask", un);
        }
        check_free(t, pass ? "values (in place)" : "values", g, y, un, tol_bf16(1)); /* x / (1 - p), one rounding */
    }
    free(x), free(y);
    dev_free_all(t);
}

int main(void) {
    device_info info;
    device_info_query(&info);
    if (info.count <= 0) {
        printf("skipped: no CUDA device (cudaGetDeviceCount: %s)\n", info.note);
        return 77;
    }
    ctx t;
    memset(&t, 0, sizeof t);
    const char *seed_env = getenv("SHARDLM_TEST_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10)
                             : (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    t.rng = seed | 1;
    printf("device: %s (cc %d.%d); seed %" PRIu64 " (SHARDLM_TEST_SEED to repeat)\n", info.name0,
           info.cc_major, info.cc_minor, seed);
    mem_accountant acct;
    mem_accountant_init(&acct);
    if (backend_create_cpu(0, NULL, &t.cpu) != SL_OK ||
        backend_create_cuda(0, 0, &acct, &t.gpu) != SL_OK) {
        fprintf(stderr, "FAIL: backend creation: %s\n", sl_error_message());
        return 1;
    }
    test_matmul(&t, 37, 50, 72, false, false, false);
    test_matmul(&t, 37, 50, 72, true, false, true);
    test_matmul(&t, 128, 256, 64, false, true, false);
    test_matmul(&t, 64, 96, 128, true, true, true);
    test_linear(&t, 96, 128, 72);
    test_linear(&t, 33, 40, 24);
    test_norm(&t, false, 64, 768, false);
    test_norm(&t, false, 37, 100, true);
    test_norm(&t, true, 64, 512, true);
    test_norm(&t, true, 29, 60, false);
    test_elementwise(&t, 4096 + 5);
    test_rope(&t, 2, 33, 3, 64, 0);
    test_rope(&t, 1, 17, 2, 128, 1000);
    test_attention(&t, 2, 200, 4, 2, 64);
    test_attention(&t, 1, 130, 4, 1, 128);
    test_attention(&t, 1, 64, 2, 2, 40);
    test_attention(&t, 1, 1024, 2, 2, 64);
    test_decode(&t, 2, 150, 100, 3, 4, 2, 64);
    test_embedding(&t, 3, 40, 72, 97);
    test_xent(&t, 24, 1000, 384);
    test_adamw_norm(&t, 10003);
    test_dropout(&t, 100003, 0.1f, 0x0123456789abcdefull, 0);
    test_dropout(&t, 4099, 0.5f, 7, ((uint64_t)1 << 35) + 3);
    printf("peak device memory recorded: %lld bytes\n", (long long)mem_peak_total(&acct));
    backend_destroy(t.gpu);
    backend_destroy(t.cpu);
    printf("%d of %d checks failed\n", t.failed, t.checked);
    return t.failed ? 1 : 0;
}
