/* benchmarks/bench_cuda_attention.c: the CUDA backend's fused causal
 * attention (ops_attention_forward / _backward) on one GPU, the shardlm side
 * of benchmarks/peers/torch_attention_bench.py (torch SDPA, flash).
 *
 * Configs follow the FlashAttention benchmarks: 16384 tokens per batch
 * (B = 16384 / T), model width 2048 (H = 2048 / D), causal, bf16; D in
 * {64, 128}, T in {1024, 2048, 4096, 8192}. FLOPs: forward 4 B H T^2 D / 2
 * (causal half), backward 2.5x forward. Each config is validated first: a
 * (B=1, T=256) slice is compared with the CPU backend (relative error by
 * norm < 1e-2), then 3 warm-up and 20 timed runs; the median is reported.
 * Timing: backend_synchronize before and after each run and a monotonic host
 * clock, so launch overhead is included as a user would see it.
 * Without a CUDA device (or in a CPU-only build) it says so and exits 77.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ops.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 88172645463325252ULL;
static float urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void *dev_random(sl_backend *g, size_t n, float *keep) {
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = bf16_from_f32(urand());
        if (keep)
            keep[i] = f32_from_bf16(h[i]);
    }
    void *d = NULL;
    if (backend_alloc(g, MEM_CATEGORY_ACTIVATIONS, n * 2, &d) != SL_OK ||
        backend_memcpy(g, d, h, n * 2, BACKEND_COPY_H2D) != SL_OK) {
        fprintf(stderr, "bench_cuda_attention: %s\n", sl_error_message());
        exit(1);
    }
    free(h);
    return d;
}

/* out of a (1, 256, H, D) problem on the GPU vs the CPU backend */
static int validate(sl_backend *cpu, sl_backend *g, int64_t h, int64_t d) {
    int64_t t = 256;
    size_t n = (size_t)(t * h * d);
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *o = malloc(n * 4);
    void *gq = dev_random(g, n, q), *gk = dev_random(g, n, k), *gv = dev_random(g, n, v);
    void *go = dev_random(g, n, NULL);
    int bad = 1;
    if (ops_attention_forward(cpu, ops_view4(cpu, SL_DTYPE_F32, o, 1, t, h, d), ops_none(),
                              ops_view4(cpu, SL_DTYPE_F32, q, 1, t, h, d),
                              ops_view4(cpu, SL_DTYPE_F32, k, 1, t, h, d),
                              ops_view4(cpu, SL_DTYPE_F32, v, 1, t, h, d)) == SL_OK &&
        ops_attention_forward(g, ops_view4(g, SL_DTYPE_BF16, go, 1, t, h, d), ops_none(),
                              ops_view4(g, SL_DTYPE_BF16, gq, 1, t, h, d),
                              ops_view4(g, SL_DTYPE_BF16, gk, 1, t, h, d),
                              ops_view4(g, SL_DTYPE_BF16, gv, 1, t, h, d)) == SL_OK) {
        uint16_t *hb = malloc(n * 2);
        if (backend_memcpy(g, hb, go, n * 2, BACKEND_COPY_D2H) == SL_OK) {
            double num = 0, den = 0;
            for (size_t i = 0; i < n; i++) {
                double e = (double)f32_from_bf16(hb[i]) - o[i];
                num += e * e;
                den += (double)o[i] * o[i];
            }
            double rel = sqrt(num / den);
            bad = !(rel < 1e-2);
            printf("# validate D=%" PRId64 ": rel err %.2e vs CPU %s\n", d, rel, bad ? "FAIL" : "ok");
        }
        free(hb);
    }
    backend_free(g, MEM_CATEGORY_ACTIVATIONS, gq, n * 2);
    backend_free(g, MEM_CATEGORY_ACTIVATIONS, gk, n * 2);
    backend_free(g, MEM_CATEGORY_ACTIVATIONS, gv, n * 2);
    backend_free(g, MEM_CATEGORY_ACTIVATIONS, go, n * 2);
    free(q), free(k), free(v), free(o);
    return bad;
}

int main(void) {
    sl_backend *g = NULL, *cpu = NULL;
    if (backend_create_cuda(0, 0, NULL, &g) != SL_OK) {
        printf("skipped: %s\n", sl_error_message());
        return 77;
    }
    if (backend_create_cpu(0, NULL, &cpu) != SL_OK)
        return 1;
    printf("%-4s %-5s %-3s %-3s %10s %10s %10s %10s\n", "D", "T", "B", "H", "fwd_ms", "fwd_TF/s",
           "bwd_ms", "bwd_TF/s");
    int failed = 0;
    const int64_t dims[2] = {64, 128}, lens[4] = {1024, 2048, 4096, 8192};
    for (int di = 0; di < 2; di++) {
        int64_t d = dims[di], h = 2048 / d;
        failed |= validate(cpu, g, h, d);
        for (int li = 0; li < 4; li++) {
            int64_t t = lens[li], b = 16384 / t;
            size_t n = (size_t)(b * t * h * d), nl = (size_t)(b * h * t);
            void *q = dev_random(g, n, NULL), *k = dev_random(g, n, NULL), *v = dev_random(g, n, NULL);
            void *o = dev_random(g, n, NULL), *dout = dev_random(g, n, NULL);
            void *dq = dev_random(g, n, NULL), *dk = dev_random(g, n, NULL), *dv = dev_random(g, n, NULL);
            void *lse = NULL;
            if (backend_alloc(g, MEM_CATEGORY_ACTIVATIONS, nl * 4, &lse) != SL_OK)
                return 1;
#define V4(p) ops_view4(g, SL_DTYPE_BF16, p, b, t, h, d)
            double tf[23], tb[23];
            for (int it = 0; it < 23; it++) {
                double t0 = now_s();
                if (ops_attention_forward(g, V4(o), ops_view1(g, SL_DTYPE_F32, lse, (int64_t)nl), V4(q), V4(k),
                                          V4(v)) != SL_OK ||
                    backend_synchronize(g) != SL_OK)
                    goto fail;
                double t1 = now_s();
                if (ops_attention_backward(g, V4(dq), V4(dk), V4(dv), V4(dout), V4(q), V4(k), V4(v), V4(o),
                                           ops_view1(g, SL_DTYPE_F32, lse, (int64_t)nl)) != SL_OK ||
                    backend_synchronize(g) != SL_OK)
                    goto fail;
                tf[it] = t1 - t0;
                tb[it] = now_s() - t1;
            }
            qsort(tf + 3, 20, sizeof(double), cmp_d);
            qsort(tb + 3, 20, sizeof(double), cmp_d);
            double flops = 4.0 * (double)b * (double)h * (double)t * (double)t * (double)d / 2.0;
            double mf = (tf[12] + tf[13]) / 2, mb = (tb[12] + tb[13]) / 2;
            printf("%-4" PRId64 " %-5" PRId64 " %-3" PRId64 " %-3" PRId64 " %10.3f %10.1f %10.3f %10.1f\n",
                   d, t, b, h, mf * 1e3, flops / mf / 1e12, mb * 1e3, 2.5 * flops / mb / 1e12);
            void *bufs[8] = {q, k, v, o, dout, dq, dk, dv};
            for (int i = 0; i < 8; i++)
                backend_free(g, MEM_CATEGORY_ACTIVATIONS, bufs[i], n * 2);
            backend_free(g, MEM_CATEGORY_ACTIVATIONS, lse, nl * 4);
        }
    }
    backend_destroy(g);
    backend_destroy(cpu);
    return failed;
fail:
    fprintf(stderr, "bench_cuda_attention: %s\n", sl_error_message());
    return 1;
}
