/* tests/gpu/test_nccl_comm.c: the NCCL backend of parallel/comm.h,
 * nccl-tests style: inputs whose exact result is known (small integers, exact
 * in every dtype including bf16 and in any summation order), wrong elements
 * counted on every rank and summed over the job, so every rank passes or
 * fails each check together. Fails through its exit code.
 *
 * Run under mpirun with one rank per visible GPU (NCCL refuses two ranks on
 * one GPU; ctest runs it as a singleton):
 *   mpirun -np $(nvidia-smi -L | wc -l) build/tests/test_nccl_comm
 * Rank i uses device local_rank % visible GPUs. With more ranks per node than
 * visible GPUs, two ranks share a GPU unless CUDA_VISIBLE_DEVICES differs
 * per rank: then it checks only that comm_create_nccl refuses with the
 * one-GPU-per-rank message, says so, and passes.
 *
 * Checks: every op x dtype (f32 f64 bf16 i32 i64 u8) x reduction (sum max
 * min), in place and out of place, counts 1, 1001 and 65539 (divisible by
 * nothing in particular); ordering against the compute stream (the input is
 * written on the compute stream behind long GEMMs, the result read on it
 * after a non-blocking wait); comm_work_test; host buffers (staged, done on
 * return); a count over 2^31 elements and bytes (skipped with a message when
 * device or host memory is short); run-to-run and cross-rank bitwise
 * reproducibility of an f32 sum; a split comm; the barrier.
 *
 * Without a CUDA device: prints "no CUDA device: skipped" and exits 77.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ops.h"
#include "parallel/comm.h"
#include "parallel/topology.h"
#include "runtime/log.h"

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t ck_e_ = (call);                                                               \
        if (ck_e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                  \
                    cudaGetErrorString(ck_e_));                                                   \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

typedef struct {
    topology t;
    sl_backend *be;
    cudaStream_t cs; /* the compute stream (be->stream) */
    comm *mpi, *nc;
    int k, r;
    int failed_checks, checks;
} ctx;

static const sl_dtype ALL_DT[] = {SL_DTYPE_F32, SL_DTYPE_F64, SL_DTYPE_BF16,
                                    SL_DTYPE_I32, SL_DTYPE_I64, SL_DTYPE_U8};
static const comm_redop ALL_OP[] = {COMM_REDOP_SUM, COMM_REDOP_MAX, COMM_REDOP_MIN};
static const char *const OP_NAME[] = {"sum", "max", "min"};
static const size_t COUNTS[] = {1, 1001, 65539};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rank p's input at index i: an integer in [1, 13]; sums over up to 19
 * ranks stay exact in bf16 (8 significant bits) and below 256 in u8. */
static double val(int p, size_t i) { return (double)((p * 7 + (i % 13) * 3) % 13 + 1); }

static uint16_t bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float f32_of_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void put(sl_dtype dt, void *b, size_t i, double x) {
    switch (dt) {
    case SL_DTYPE_F32: ((float *)b)[i] = (float)x; break;
    case SL_DTYPE_F64: ((double *)b)[i] = x; break;
    case SL_DTYPE_BF16: ((uint16_t *)b)[i] = bf16_of((float)x); break;
    case SL_DTYPE_I32: ((int32_t *)b)[i] = (int32_t)x; break;
    case SL_DTYPE_I64: ((int64_t *)b)[i] = (int64_t)x; break;
    default: ((uint8_t *)b)[i] = (uint8_t)x; break;
    }
}

static double get(sl_dtype dt, const void *b, size_t i) {
    switch (dt) {
    case SL_DTYPE_F32: return ((const float *)b)[i];
    case SL_DTYPE_F64: return ((const double *)b)[i];
    case SL_DTYPE_BF16: return f32_of_bf16(((const uint16_t *)b)[i]);
    case SL_DTYPE_I32: return ((const int32_t *)b)[i];
    case SL_DTYPE_I64: return (double)((const int64_t *)b)[i];
    default: return ((const uint8_t *)b)[i];
    }
}

/* op over ranks p of val(p, i). */
static double reduced(comm_redop op, int k, size_t i) {
    double acc = val(0, i);
    for (int p = 1; p < k; p++) {
        double x = val(p, i);
        acc = op == COMM_REDOP_SUM ? acc + x : op == COMM_REDOP_MAX ? fmax(acc, x) : fmin(acc, x);
    }
    return acc;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void *dalloc(size_t n) {
    void *p = NULL;
    CK(cudaMalloc(&p, n ? n : 1));
    return p;
}

/* Copies on the compute stream, as a training step would. */
static void h2d(ctx *x, void *d, const void *h, size_t n) { CK(cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, x->cs)); }
static void d2h(ctx *x, void *h, const void *d, size_t n) {
    CK(cudaMemcpyAsync(h, d, n, cudaMemcpyDeviceToHost, x->cs));
    CK(cudaStreamSynchronize(x->cs));
}

static long status_wrong(sl_status st, const char *what) {
    if (st == SL_OK)
        return 0;
    fprintf(stderr, "%s: %s [%s]\n", what, sl_error_message(), sl_status_name(st));
    return 1;
}

/* Sums wrong over the job; every rank records the same outcome. */
static void report(ctx *x, const char *name, long wrong) {
    long total = 0;
    MPI_Allreduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, x->t.comm);
    x->checks++;
    if (total)
        x->failed_checks++;
    if (x->r == 0) {
        if (total)
            printf("FAIL %s: %ld wrong elements over %d ranks\n", name, total, x->k);
        else
            printf("ok   %s\n", name);
        fflush(stdout);
    }
}

/* ---- every op, dtype, reduction, in and out of place ----------------------- */

static long one_all_gather(ctx *x, sl_dtype dt, size_t n, bool in_place) {
    size_t es = dtype_size(dt), kb = (size_t)x->k * n * es;
    unsigned char *h = xmalloc(kb), *hs = xmalloc(n * es);
    memset(h, 0xff, kb); /* poison: NaN or -1, never a valid input */
    for (size_t i = 0; i < n; i++)
        put(dt, in_place ? h + (size_t)x->r * n * es : hs, i, val(x->r, i));
    unsigned char *recv = dalloc(kb), *send = in_place ? recv + (size_t)x->r * n * es : dalloc(n * es);
    h2d(x, recv, h, kb);
    if (!in_place)
        h2d(x, send, hs, n * es);
    long wrong = status_wrong(comm_all_gather(x->nc, send, recv, n, dt), "all_gather");
    d2h(x, h, recv, kb);
    for (int p = 0; p < x->k; p++)
        for (size_t i = 0; i < n; i++)
            wrong += get(dt, h, (size_t)p * n + i) != val(p, i);
    if (!in_place)
        CK(cudaFree(send));
    CK(cudaFree(recv));
    free(h);
    free(hs);
    return wrong;
}

static long one_reduce_scatter(ctx *x, sl_dtype dt, comm_redop op, size_t n, bool in_place) {
    size_t es = dtype_size(dt), kn = (size_t)x->k * n;
    unsigned char *h = xmalloc(kn * es);
    for (size_t j = 0; j < kn; j++)
        put(dt, h, j, val(x->r, j));
    unsigned char *send = dalloc(kn * es), *recv = in_place ? send + (size_t)x->r * n * es : dalloc(n * es);
    h2d(x, send, h, kn * es);
    if (!in_place)
        CK(cudaMemsetAsync(recv, 0xff, n * es, x->cs));
    long wrong = status_wrong(comm_reduce_scatter(x->nc, send, recv, n, dt, op), "reduce_scatter");
    d2h(x, h, recv, n * es);
    for (size_t i = 0; i < n; i++)
        wrong += get(dt, h, i) != reduced(op, x->k, (size_t)x->r * n + i);
    if (!in_place)
        CK(cudaFree(recv));
    CK(cudaFree(send));
    free(h);
    return wrong;
}

static long one_all_reduce(ctx *x, sl_dtype dt, comm_redop op, size_t n, bool in_place) {
    size_t es = dtype_size(dt);
    unsigned char *h = xmalloc(n * es);
    for (size_t i = 0; i < n; i++)
        put(dt, h, i, val(x->r, i));
    unsigned char *send = dalloc(n * es), *recv = in_place ? send : dalloc(n * es);
    h2d(x, send, h, n * es);
    if (!in_place)
        CK(cudaMemsetAsync(recv, 0xff, n * es, x->cs));
    long wrong = status_wrong(comm_all_reduce(x->nc, send, recv, n, dt, op), "all_reduce");
    d2h(x, h, recv, n * es);
    for (size_t i = 0; i < n; i++)
        wrong += get(dt, h, i) != reduced(op, x->k, i);
    if (!in_place)
        CK(cudaFree(recv));
    CK(cudaFree(send));
    free(h);
    return wrong;
}

static long one_broadcast(ctx *x, sl_dtype dt, size_t n, int root) {
    size_t es = dtype_size(dt);
    unsigned char *h = xmalloc(n * es);
    memset(h, 0xff, n * es);
    if (x->r == root)
        for (size_t i = 0; i < n; i++)
            put(dt, h, i, val(root, i));
    unsigned char *buf = dalloc(n * es);
    h2d(x, buf, h, n * es);
    long wrong = status_wrong(comm_broadcast(x->nc, buf, n, dt, root), "broadcast");
    d2h(x, h, buf, n * es);
    for (size_t i = 0; i < n; i++)
        wrong += get(dt, h, i) != val(root, i);
    CK(cudaFree(buf));
    free(h);
    return wrong;
}

static void test_ops(ctx *x) {
    char name[160];
    for (size_t d = 0; d < sizeof ALL_DT / sizeof *ALL_DT; d++) {
        sl_dtype dt = ALL_DT[d];
        long ag = 0, bc = 0;
        for (size_t c = 0; c < sizeof COUNTS / sizeof *COUNTS; c++) {
            ag += one_all_gather(x, dt, COUNTS[c], false) + one_all_gather(x, dt, COUNTS[c], true);
            bc += one_broadcast(x, dt, COUNTS[c], 0) + one_broadcast(x, dt, COUNTS[c], x->k - 1);
        }
        snprintf(name, sizeof name, "all_gather %s (counts 1/1001/65539, in and out of place)",
                 dtype_name(dt));
        report(x, name, ag);
        snprintf(name, sizeof name, "broadcast %s (roots 0 and k-1)", dtype_name(dt));
        report(x, name, bc);
        for (size_t o = 0; o < sizeof ALL_OP / sizeof *ALL_OP; o++) {
            long rs = 0, ar = 0;
            for (size_t c = 0; c < sizeof COUNTS / sizeof *COUNTS; c++) {
                rs += one_reduce_scatter(x, dt, ALL_OP[o], COUNTS[c], false) +
                      one_reduce_scatter(x, dt, ALL_OP[o], COUNTS[c], true);
                ar += one_all_reduce(x, dt, ALL_OP[o], COUNTS[c], false) +
                      one_all_reduce(x, dt, ALL_OP[o], COUNTS[c], true);
            }
            snprintf(name, sizeof name, "reduce_scatter %s %s (in and out of place)", dtype_name(dt),
                     OP_NAME[o]);
            report(x, name, rs);
            snprintf(name, sizeof name, "all_reduce %s %s (in and out of place)", dtype_name(dt),
                     OP_NAME[o]);
            report(x, name, ar);
        }
    }
    report(x, "barrier", status_wrong(comm_barrier(x->nc), "barrier"));
}

/* ---- ordering against the compute stream, overlap, test ---------------------- */

/* n_gemm GEMMs of (m x m) bf16 on the compute stream: long-running work. */
static long enqueue_gemms(ctx *x, void *a, void *c, int64_t m, int n_gemm) {
    int64_t shape[2] = {m, m};
    sl_tensor ta = tensor_make(a, SL_DTYPE_BF16, SL_DEVICE_CUDA, 2, shape);
    sl_tensor tc = tensor_make(c, SL_DTYPE_BF16, SL_DEVICE_CUDA, 2, shape);
    for (int i = 0; i < n_gemm; i++)
        if (ops_matmul(x->be, tc, ta, ta, ops_none(), false, true, 1.0f, 0.0f) != SL_OK)
            return status_wrong(SL_ERR_CUDA, "ops_matmul");
    return 0;
}

static void test_ordering(ctx *x) {
    const size_t n = (size_t)1 << 24; /* 64 MiB of f32 */
    const int64_t m = 8192; /* 20 GEMMs: ~22 TFLOP, tens of ms on an H100 */
    float *h = xmalloc(n * sizeof(float));
    void *a = dalloc((size_t)(m * m * 2)), *c = dalloc((size_t)(m * m * 2));
    CK(cudaMemsetAsync(a, 0, (size_t)(m * m * 2), x->cs));
    float *in = dalloc(n * sizeof(float)), *out = dalloc(n * sizeof(float));
    CK(cudaMemsetAsync(in, 0xff, n * sizeof(float), x->cs));
    CK(cudaMemsetAsync(out, 0xff, n * sizeof(float), x->cs));
    for (size_t i = 0; i < n; i++)
        h[i] = (float)val(x->r, i);
    CK(cudaStreamSynchronize(x->cs));

    /* The input arrives on the compute stream behind long GEMMs: an op that
     * did not wait for the compute stream would reduce the poison. */
    double t0 = now_s();
    long wrong = enqueue_gemms(x, a, c, m, 20);
    h2d(x, in, h, n * sizeof(float));
    comm_work *w = NULL;
    wrong += status_wrong(comm_all_reduce_async(x->nc, in, out, n, SL_DTYPE_F32, COMM_REDOP_SUM, &w),
                          "all_reduce_async");
    double t_submit = now_s() - t0;
    wrong += enqueue_gemms(x, a, c, m, 20); /* compute that overlaps the collective */
    double t1 = now_s();
    if (w)
        wrong += status_wrong(comm_work_wait(w, 0), "wait");
    double t_wait = now_s() - t1;
    /* Read on the compute stream right after the wait, without any host sync. */
    CK(cudaMemcpyAsync(h, out, n * sizeof(float), cudaMemcpyDeviceToHost, x->cs));
    CK(cudaStreamSynchronize(x->cs));
    double t_all = now_s() - t0;
    for (size_t i = 0; i < n; i++)
        wrong += h[i] != (float)reduced(COMM_REDOP_SUM, x->k, i);
    if (x->r == 0)
        printf("     ordering: submit returned after %.2f ms, wait took %.2f ms, compute stream done after "
               "%.2f ms (wait does not block the host)\n",
               1e3 * t_submit, 1e3 * t_wait, 1e3 * t_all);
    report(x, "ordering: input written on the compute stream behind GEMMs, result read on it after wait",
           wrong);

    /* comm_work_test reports completion without waiting. */
    wrong = 0;
    for (size_t i = 0; i < n; i++)
        h[i] = (float)val(x->r, i + 5);
    h2d(x, in, h, n * sizeof(float));
    w = NULL;
    wrong += status_wrong(comm_all_reduce_async(x->nc, in, out, n, SL_DTYPE_F32, COMM_REDOP_MAX, &w),
                          "all_reduce_async");
    bool done = false;
    for (double t = now_s(); w && !done && now_s() - t < 60;)
        wrong += status_wrong(comm_work_test(w, &done), "test");
    wrong += !done;
    if (w)
        wrong += status_wrong(comm_work_wait(w, 0), "wait");
    d2h(x, h, out, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        wrong += h[i] != (float)reduced(COMM_REDOP_MAX, x->k, i + 5);
    report(x, "comm_work_test turns true, then the result is right", wrong);

    /* Several ops in flight at once, waited out of order. */
    wrong = 0;
    enum { NW = 4 };
    comm_work *ws[NW] = {0};
    size_t part = n / NW;
    for (size_t i = 0; i < n; i++)
        h[i] = (float)val(x->r, i);
    h2d(x, in, h, n * sizeof(float));
    for (int j = 0; j < NW; j++)
        wrong += status_wrong(comm_all_reduce_async(x->nc, in + j * part, out + j * part, part, SL_DTYPE_F32,
                                                    COMM_REDOP_SUM, &ws[j]),
                              "all_reduce_async");
    for (int j = NW - 1; j >= 0; j--)
        if (ws[j])
            wrong += status_wrong(comm_work_wait(ws[j], 0), "wait");
    d2h(x, h, out, n * sizeof(float));
    for (size_t i = 0; i < part * NW; i++)
        wrong += h[i] != (float)reduced(COMM_REDOP_SUM, x->k, i);
    report(x, "4 ops in flight, waited in reverse order", wrong);

    CK(cudaFree(a));
    CK(cudaFree(c));
    CK(cudaFree(in));
    CK(cudaFree(out));
    free(h);
}

/* ---- host buffers -------------------------------------------------------------- */

static void test_host(ctx *x) {
    int k = x->k, r = x->r;
    /* A control reduction on a host double, as the grad-norm sum does. */
    double norm = r + 1.5, want = 0;
    for (int p = 0; p < k; p++)
        want += p + 1.5;
    long wrong = status_wrong(comm_all_reduce(x->nc, &norm, &norm, 1, SL_DTYPE_F64, COMM_REDOP_SUM),
                              "host all_reduce");
    wrong += norm != want;
    report(x, "host double all_reduce sum (in place)", wrong);

    /* _async on host buffers: finished when the call returns. */
    const size_t n = 1001;
    int32_t *hi = xmalloc((size_t)k * n * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)k * n; i++)
        hi[i] = (size_t)r * n <= i && i < (size_t)(r + 1) * n ? (int32_t)val(r, i - (size_t)r * n) : -1;
    comm_work *w = NULL;
    wrong = status_wrong(comm_all_gather_async(x->nc, hi + (size_t)r * n, hi, n, SL_DTYPE_I32, &w),
                         "host all_gather_async");
    for (int p = 0; p < k; p++) /* checked before the wait: the contract says done on return */
        for (size_t i = 0; i < n; i++)
            wrong += hi[(size_t)p * n + i] != (int32_t)val(p, i);
    if (w)
        wrong += status_wrong(comm_work_wait(w, 0), "wait");
    report(x, "host i32 all_gather in place, _async done on return", wrong);

    float *hf = xmalloc((size_t)k * n * sizeof(float));
    for (size_t j = 0; j < (size_t)k * n; j++)
        hf[j] = (float)val(r, j);
    wrong = status_wrong(comm_reduce_scatter(x->nc, hf, hf + (size_t)r * n, n, SL_DTYPE_F32, COMM_REDOP_SUM),
                         "host reduce_scatter");
    for (size_t i = 0; i < n; i++)
        wrong += hf[(size_t)r * n + i] != (float)reduced(COMM_REDOP_SUM, k, (size_t)r * n + i);
    report(x, "host f32 reduce_scatter in place", wrong);

    uint8_t *hb = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        hb[i] = r == k - 1 ? (uint8_t)val(k - 1, i) : 0xff;
    wrong = status_wrong(comm_broadcast(x->nc, hb, n, SL_DTYPE_U8, k - 1), "host broadcast");
    for (size_t i = 0; i < n; i++)
        wrong += hb[i] != (uint8_t)val(k - 1, i);
    report(x, "host u8 broadcast from rank k-1", wrong);

    /* Mixed: device send, host recv; host send, device recv. */
    float *dsend = dalloc(n * sizeof(float)), *drecv = dalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        hf[i] = (float)val(r, i);
    h2d(x, dsend, hf, n * sizeof(float));
    memset(hf, 0xff, n * sizeof(float));
    wrong = status_wrong(comm_all_reduce(x->nc, dsend, hf, n, SL_DTYPE_F32, COMM_REDOP_MIN), "mixed");
    for (size_t i = 0; i < n; i++)
        wrong += hf[i] != (float)reduced(COMM_REDOP_MIN, k, i);
    for (size_t i = 0; i < n; i++)
        hf[i] = (float)val(r, i);
    wrong += status_wrong(comm_all_reduce(x->nc, hf, drecv, n, SL_DTYPE_F32, COMM_REDOP_MAX), "mixed");
    d2h(x, hf, drecv, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        wrong += hf[i] != (float)reduced(COMM_REDOP_MAX, k, i);
    report(x, "mixed device/host buffers (all_reduce min, max)", wrong);
    CK(cudaFree(dsend));
    CK(cudaFree(drecv));
    free(hi);
    free(hf);
    free(hb);
}

/* ---- a count over 2^31 ------------------------------------------------------------ */

static void test_large(ctx *x) {
    const size_t n = ((size_t)1 << 31) + 5; /* u8: > INT_MAX elements and bytes */
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    unsigned char *h = free_b > n + ((size_t)2 << 30) ? malloc(n) : NULL;
    int ok = h != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, x->t.comm);
    if (!all_ok) {
        if (x->r == 0)
            printf("skip large count: a rank lacks %zu bytes of host memory or %zu bytes of free device "
                   "memory (this rank: %zu free)\n",
                   n, n + ((size_t)2 << 30), free_b);
        free(h);
        return;
    }
    /* val has period 13 in i: fill one period block, then double it. */
    for (size_t i = 0; i < 13 * 4096 && i < n; i++)
        h[i] = (uint8_t)val(x->r, i);
    for (size_t have = 13 * 4096; have < n;) {
        size_t c = have < n - have ? have : n - have;
        memcpy(h + have, h, c);
        have += c;
    }
    unsigned char *d = dalloc(n);
    h2d(x, d, h, n);
    long wrong = status_wrong(comm_all_reduce(x->nc, d, d, n, SL_DTYPE_U8, COMM_REDOP_MAX), "large all_reduce");
    memset(h, 0, n);
    d2h(x, h, d, n);
    uint8_t want[13];
    for (size_t i = 0; i < 13; i++)
        want[i] = (uint8_t)reduced(COMM_REDOP_MAX, x->k, i);
    for (size_t i = 0; i < n; i++)
        wrong += h[i] != want[i % 13];
    CK(cudaFree(d));
    free(h);
    report(x, "all_reduce u8 max of 2^31+5 elements (in place)", wrong);
}

/* ---- reproducibility, split ---------------------------------------------------- */

static void test_reproducible(ctx *x) {
    const size_t n = (size_t)1 << 20;
    float *h = xmalloc(n * sizeof(float)), *r1 = xmalloc(n * sizeof(float)), *r2 = xmalloc(n * sizeof(float));
    uint64_t z = 0x9e3779b97f4a7c15ull ^ (uint64_t)x->r;
    for (size_t i = 0; i < n; i++) { /* non-integers: the sum order shows in the bits */
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = (float)((double)(z >> 40) / (double)(1ull << 24) - 0.5);
    }
    float *d = dalloc(n * sizeof(float)), *o = dalloc(n * sizeof(float));
    h2d(x, d, h, n * sizeof(float));
    long wrong = status_wrong(comm_all_reduce(x->nc, d, o, n, SL_DTYPE_F32, COMM_REDOP_SUM), "all_reduce");
    d2h(x, r1, o, n * sizeof(float));
    wrong += status_wrong(comm_all_reduce(x->nc, d, o, n, SL_DTYPE_F32, COMM_REDOP_SUM), "all_reduce");
    d2h(x, r2, o, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        wrong += memcmp(&r1[i], &r2[i], sizeof(float)) != 0;
    report(x, "f32 all_reduce sum bitwise equal run to run", wrong);
    /* ... and on every rank (compare with rank 0's bits). */
    MPI_Bcast(r2, (int)n, MPI_FLOAT, 0, x->t.comm);
    wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += memcmp(&r1[i], &r2[i], sizeof(float)) != 0;
    report(x, "f32 all_reduce sum bitwise equal on every rank", wrong);
    CK(cudaFree(d));
    CK(cudaFree(o));
    free(h);
    free(r1);
    free(r2);
}

static void test_split(ctx *x) {
    /* Parity groups, ordered by descending world rank (key = -rank). */
    comm *s = NULL;
    long wrong = status_wrong(comm_split(x->nc, x->r % 2, -x->r, "parity", NULL, &s), "comm_split");
    if (s) {
        int want_size = 0, want_rank = 0;
        for (int p = 0; p < x->k; p++)
            if (p % 2 == x->r % 2) {
                want_size++;
                want_rank += p > x->r;
            }
        wrong += comm_size(s) != want_size;
        wrong += comm_rank(s) != want_rank;
        int32_t me = x->r, *d = dalloc((size_t)want_size * sizeof(int32_t));
        int32_t *h = xmalloc((size_t)want_size * sizeof(int32_t));
        h2d(x, d + comm_rank(s), &me, sizeof me);
        wrong += status_wrong(comm_all_gather(s, NULL, d, 1, SL_DTYPE_I32), "split all_gather");
        d2h(x, h, d, (size_t)want_size * sizeof(int32_t));
        int expect = x->k - 1;
        for (int j = 0; j < want_size; j++) {
            while (expect % 2 != x->r % 2)
                expect--;
            wrong += h[j] != expect;
            expect--;
        }
        uint16_t one = bf16_of(1.0f), *db = dalloc(sizeof one);
        h2d(x, db, &one, sizeof one);
        wrong += status_wrong(comm_all_reduce(s, db, db, 1, SL_DTYPE_BF16, COMM_REDOP_SUM), "split all_reduce");
        d2h(x, &one, db, sizeof one);
        wrong += f32_of_bf16(one) != (float)want_size;
        CK(cudaFree(d));
        CK(cudaFree(db));
        free(h);
        comm_destroy(s);
    }
    report(x, "split by parity, reversed key (all_gather order, bf16 sum)", wrong);
}

/* comm_create_nccl failed. With more ranks on a node than visible GPUs that
 * is the expected one-GPU-per-rank refusal (the same on every rank): check
 * its message and pass; anything else fails. */
static int check_refusal(ctx *x, int n_dev, sl_status st) {
    bool shared = x->t.local_world > n_dev;
    long wrong = !shared || st != SL_ERR_COMM || !strstr(sl_error_message(), "one GPU per rank");
    if (wrong)
        fprintf(stderr, "rank %d: comm_create_nccl: %s [%s]\n", x->r, sl_error_message(), sl_status_name(st));
    else if (x->r == 0)
        printf("%d ranks on a node with %d visible GPU(s): NCCL needs one GPU per rank, so only the refusal is "
               "checked; run with -np <= %d for the collective tests\n",
               x->t.local_world, n_dev, n_dev);
    report(x, "comm_create_nccl refuses two ranks on one GPU", wrong);
    return x->failed_checks ? 1 : 0;
}

int main(int argc, char **argv) {
    ctx x;
    memset(&x, 0, sizeof x);
    if (topology_init(&x.t, &argc, &argv, 0) != SL_OK) {
        fprintf(stderr, "topology_init: %s\n", sl_error_message());
        return 1;
    }
    log_init(x.t.rank, x.t.host, LOG_LEVEL_WARN);
    x.k = x.t.world;
    x.r = x.t.rank;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    int have = e == cudaSuccess && n_dev > 0, all_have = 0;
    MPI_Allreduce(&have, &all_have, 1, MPI_INT, MPI_MIN, x.t.comm);
    if (!all_have) {
        if (x.r == 0 || !have)
            printf("no CUDA device: skipped (cudaGetDeviceCount: %s, %d devices)\n",
                   e == cudaSuccess ? "ok" : cudaGetErrorString(e), n_dev);
        topology_finalize(&x.t);
        return 77;
    }
    mem_accountant acct;
    mem_accountant_init(&acct);
    comm_opts o;
    comm_opts_default(&o);
    o.timeout_s = 120; /* a broken test ends the job instead of hanging ctest */
    o.mem = &acct;
    if (backend_create_cuda(x.t.local_rank % n_dev, 0, &acct, &x.be) != SL_OK ||
        comm_create_mpi(x.t.comm, &o, &x.mpi) != SL_OK) {
        fprintf(stderr, "setup: %s\n", sl_error_message());
        return 1;
    }
    x.cs = (cudaStream_t)x.be->stream;
    int rc;
    sl_status st = comm_create_nccl(x.mpi, x.cs, &o, &x.nc);
    if (st != SL_OK) {
        rc = check_refusal(&x, n_dev, st);
    } else {
        if (x.r == 0) {
            struct cudaDeviceProp prop;
            CK(cudaGetDeviceProperties(&prop, x.be->device_ordinal));
            int nv = 0;
            ncclGetVersion(&nv);
            printf("test_nccl_comm: %d ranks, rank 0 on %s, NCCL %d\n", x.k, prop.name, nv);
        }
        test_ops(&x);
        test_ordering(&x);
        test_host(&x);
        test_reproducible(&x);
        test_split(&x);
        test_large(&x);
        comm_destroy(x.nc);
        if (x.r == 0)
            printf("%d of %d checks failed; peak comm scratch %lld bytes\n", x.failed_checks, x.checks,
                   (long long)mem_peak(&acct, MEM_CATEGORY_COMM));
        rc = x.failed_checks ? 1 : 0;
    }
    comm_destroy(x.mpi);
    backend_destroy(x.be);
    topology_finalize(&x.t);
    return rc;
}
