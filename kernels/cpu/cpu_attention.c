/* kernels/cpu/cpu_attention.c: causal attention with grouped-query heads.
 *
 * Layout: q (B, T, H, D), k/v (B, T, Hkv, D), exactly as the projections
 * produce them. A head's Q, K or V is a strided (T, D) matrix with leading
 * dimension H*D or Hkv*D, which cblas_sgemm takes directly: no transposes or
 * head-major copies.
 *
 * Variant chosen: per (batch, head) task, query rows in blocks of
 * ATTN_BLOCK. For a block of rows i0..i1-1 only keys 0..i1-1 can be attended,
 * so the scores are one (m x i1) GEMM (about half the FLOPs of the full T x T
 * product) and the scratch is ATTN_BLOCK x T floats per thread, never T x T.
 *   forward:  S = scale Q_blk K^T; P = softmax(S) (row max subtracted, causal
 *             mask); O_blk = P V; lse = max + log(sum) saved per row.
 *   backward: P recomputed from lse; dV += P^T dO; dP = dO V^T;
 *             dS = P (dP - rowsum(dO * O)) scale; dQ = dS K; dK += dS^T Q.
 * (Alternatives: materializing T x T scores per head costs T^2 memory per
 * thread and twice the GEMM work; a flash-style online softmax over key
 * blocks needs no lse pass in backward but turns each GEMM into many small
 * ones, which OpenBLAS runs far below peak at D = 64.)
 *
 * Parallelism: (batch, head) tasks across OpenMP threads, each GEMM single
 * threaded inside its task (OpenBLAS is set to one thread for the region, so
 * its pool does not oversubscribe the OpenMP threads). With GQA, dK/dV of the
 * H/Hkv query heads of a group are written to per-head scratch and summed in
 * head order afterwards, so results are deterministic and every query head is
 * its own task.
 */
/* Loops that call cpu_expf (kernels/cpu/cpu_math.h) contain float selects
 * that gcc only if-converts, and so vectorizes, when it may assume FP
 * operations do not trap; shardlm never enables FP traps or reads the FP
 * exception flags, so this changes no result. */
#pragma GCC optimize("no-trapping-math")

#include <cblas.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"

#define ATTN_BLOCK 64

/* Runs OpenBLAS single-threaded while OpenMP threads each call it. */
typedef struct {
    int saved;
} blas_serial;

static blas_serial blas_serial_begin(void) {
    blas_serial s = {openblas_get_num_threads()};
    if (s.saved != 1)
        openblas_set_num_threads(1);
    return s;
}

static void blas_serial_end(blas_serial s) {
    if (s.saved != 1)
        openblas_set_num_threads(s.saved);
}

static sl_status check_blas_dims(const char *op, int64_t t_len, int64_t ld) {
    if (t_len > INT_MAX / ATTN_BLOCK || ld > INT_MAX)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: sequence length %" PRId64 " or row stride %" PRId64
                         " exceeds the 32-bit range of OpenBLAS", op, t_len, ld);
    return SL_OK;
}

static void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m == 0 || n == 0 || k == 0)
        return; /* never happens for the shapes below (all >= 1) */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* One query head against its kv head. Query row i (0 <= i < tq) is at
 * absolute position q_off + i and attends keys 0..q_off + i. lse may be NULL.
 * s: scratch of ATTN_BLOCK * (q_off + tq) floats. */
static void head_forward(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                         int64_t ldv, float *o, int64_t ldo, float *lse, int64_t tq,
                         int64_t q_off, int64_t d, float scale, float *s) {
    for (int64_t i0 = 0; i0 < tq; i0 += ATTN_BLOCK) {
        int64_t i1 = i0 + ATTN_BLOCK < tq ? i0 + ATTN_BLOCK : tq;
        int64_t m = i1 - i0, n = q_off + i1;
        gemm(false, true, m, n, d, scale, q + i0 * ldq, ldq, k, ldk, 0.0f, s, n);
        for (int64_t r = 0; r < m; r++) {
            float *row = s + r * n;
            int64_t last = q_off + i0 + r; /* inclusive */
            float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
            for (int64_t j = 0; j <= last; j++)
                mx = row[j] > mx ? row[j] : mx;
            float sum = 0.0f; /* <= T terms in [0, 1], one of them 1 */
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j <= last; j++) {
                float e = cpu_expf(row[j] - mx);
                row[j] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
#pragma omp simd
            for (int64_t j = 0; j <= last; j++)
                row[j] *= inv;
            for (int64_t j = last + 1; j < n; j++)
                row[j] = 0.0f;
            if (lse)
                lse[i0 + r] = mx + logf(sum);
        }
        gemm(false, false, m, d, n, 1.0f, s, n, v, ldv, 0.0f, o + i0 * ldo, ldo);
    }
}

/* Backward of one query head (square causal case, t query rows and keys).
 * dk, dv are accumulated (+=); the caller zeroes them. p, dp: scratch of
 * ATTN_BLOCK * t floats each; dd: t floats. */
static void head_backward(const float *q, int64_t ldq, const float *k, int64_t ldk,
                          const float *v, int64_t ldv, const float *o, const float *dout,
                          int64_t ldo, const float *lse, float *dq, float *dk, int64_t lddk,
                          float *dv, int64_t t, int64_t d, float scale, float *p, float *dp,
                          float *dd) {
    for (int64_t i = 0; i < t; i++) { /* D_i = rowsum(dO * O) */
        const float *orow = o + i * ldo, *grow = dout + i * ldo;
        double acc = 0.0;
        for (int64_t j = 0; j < d; j++)
            acc += (double)(orow[j] * grow[j]);
        dd[i] = (float)acc;
    }
    for (int64_t i0 = 0; i0 < t; i0 += ATTN_BLOCK) {
        int64_t i1 = i0 + ATTN_BLOCK < t ? i0 + ATTN_BLOCK : t;
        int64_t m = i1 - i0, n = i1;
        const float *qb = q + i0 * ldq, *gb = dout + i0 * ldo;
        gemm(false, true, m, n, d, scale, qb, ldq, k, ldk, 0.0f, p, n);
        for (int64_t r = 0; r < m; r++) {
            float *row = p + r * n;
            int64_t last = i0 + r;
            float l = lse[i0 + r];
#pragma omp simd
            for (int64_t j = 0; j <= last; j++)
                row[j] = cpu_expf(row[j] - l);
            for (int64_t j = last + 1; j < n; j++)
                row[j] = 0.0f;
        }
        gemm(true, false, n, d, m, 1.0f, p, n, gb, ldo, 1.0f, dv, lddk);
        gemm(false, true, m, n, d, 1.0f, gb, ldo, v, ldv, 0.0f, dp, n);
        for (int64_t r = 0; r < m; r++) {
            const float *prow = p + r * n;
            float *drow = dp + r * n;
            float di = dd[i0 + r];
#pragma omp simd
            for (int64_t j = 0; j < n; j++)
                drow[j] = prow[j] * (drow[j] - di) * scale;
        }
        gemm(false, false, m, d, n, 1.0f, dp, n, k, ldk, 0.0f, dq + i0 * ldq, ldq);
        gemm(true, false, n, d, m, 1.0f, dp, n, qb, ldq, 1.0f, dk, lddk);
    }
}

/* One (b, h) task of an attention pass; s is the running thread's scratch. */
typedef void (*head_task_fn)(const void *ctx, int64_t task, float *s);

/* fn(ctx, task, scratch) for task 0..tasks-1 over the backend's threads
 * (dynamic, one task at a time), each thread with its own scratch of
 * `scratch` floats, BLAS serial inside. SL_ERR_NOMEM naming op when a
 * thread's scratch could not be allocated (the tasks it drew did not run). */
static sl_status run_head_tasks(sl_backend *be, const char *op, int64_t tasks, size_t scratch,
                                head_task_fn fn, const void *ctx) {
    int failed = 0;
    blas_serial bs = blas_serial_begin();
#pragma omp parallel num_threads(cpu_threads(be, tasks))
    {
        float *s = malloc(scratch * sizeof(float));
        if (!s) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; task++) {
            if (!s)
                continue;
            fn(ctx, task, s);
        }
        free(s);
    }
    blas_serial_end(bs);
    if (failed)
        return sl_errorf(SL_ERR_NOMEM, "%s: out of memory for %zu bytes of attention scratch "
                         "per thread", op, scratch * sizeof(float));
    return SL_OK;
}

/* The forward's view of its buffers: q, out (B, tq, H, D); k, v rows of
 * (B, tk_stride, Hkv, D); lse (B, H, tq) or NULL. */
typedef struct {
    const float *q, *k, *v;
    float *out, *lse;
    int64_t tq, tk_stride, q_off, h, group, d, ldq, ldk;
    float scale;
} forward_ctx;

static void forward_task(const void *ctx, int64_t task, float *s) {
    const forward_ctx *c = ctx;
    int64_t b = task / c->h, hh = task % c->h, kh = hh / c->group;
    int64_t d = c->d, ldq = c->ldq, ldk = c->ldk;
    const float *qh = c->q + b * c->tq * ldq + hh * d;
    const float *kb = c->k + b * c->tk_stride * ldk + kh * d;
    const float *vb = c->v + b * c->tk_stride * ldk + kh * d;
    float *oh = c->out + b * c->tq * ldq + hh * d;
    float *lh = c->lse ? c->lse + (b * c->h + hh) * c->tq : NULL;
    head_forward(qh, ldq, kb, ldk, vb, ldk, oh, ldq, lh, c->tq, c->q_off, d, c->scale, s);
}

/* Forward over all (b, h): q (B, tq, H, D); k, v rows 0..q_off+tq-1 of
 * (B, tk_stride, Hkv, D) buffers. */
static sl_status attention_run(sl_backend *be, const char *op, float *out, float *lse,
                               const float *q, const float *k, const float *v, int64_t bsz,
                               int64_t tq, int64_t tk_stride, int64_t q_off, int64_t h,
                               int64_t hkv, int64_t d) {
    SL_TRY(check_blas_dims(op, q_off + tq, h * d));
    forward_ctx c = {q, k, v, out, lse, tq, tk_stride, q_off, h, h / hkv, d, h * d, hkv * d,
                     (float)(1.0 / sqrt((double)d))};
    size_t scratch = (size_t)ATTN_BLOCK * (size_t)(q_off + tq);
    return run_head_tasks(be, op, bsz * h, scratch, forward_task, &c);
}

sl_status cpu_attention_forward(sl_backend *be, sl_tensor out, sl_tensor lse, sl_tensor q,
                                sl_tensor k, sl_tensor v) {
    int64_t t = q.shape[1];
    return attention_run(be, "ops_attention_forward", cpu_f32(out),
                         lse.data ? cpu_f32(lse) : NULL, cpu_cf32(q), cpu_cf32(k), cpu_cf32(v),
                         q.shape[0], t, t, 0, q.shape[2], k.shape[2], q.shape[3]);
}

sl_status cpu_attention_decode(sl_backend *be, sl_tensor out, sl_tensor q, sl_tensor k_cache,
                               sl_tensor v_cache, int64_t kv_len) {
    int64_t tq = q.shape[1];
    return attention_run(be, "ops_attention_decode", cpu_f32(out), NULL, cpu_cf32(q),
                         cpu_cf32(k_cache), cpu_cf32(v_cache), q.shape[0], tq,
                         k_cache.shape[1], kv_len - tq, q.shape[2], k_cache.shape[2],
                         q.shape[3]);
}

sl_status cpu_kv_cache_append(sl_backend *be, sl_tensor cache, sl_tensor src, int64_t pos) {
    int64_t bsz = cache.shape[0], s = cache.shape[1], tn = src.shape[1];
    int64_t row = cache.shape[2] * cache.shape[3];
    for (int64_t b = 0; b < bsz; b++)
        memcpy(cpu_f32(cache) + (b * s + pos) * row, cpu_cf32(src) + b * tn * row,
               (size_t)(tn * row) * sizeof(float));
    return SL_OK;
}

/* The backward's view of its buffers (fwd: q, k, v, out, lse; dout; dq, dk,
 * dv); gk, gv: the per-task (T, D) dk/dv slabs under GQA (NULL without). */
typedef struct {
    const float *q, *k, *v, *out, *dout, *lse;
    float *dq, *dk, *dv, *gk, *gv;
    size_t slab;
    int64_t t, h, group, d, ldq, ldk;
    float scale;
} backward_ctx;

static void backward_task(const void *ctx, int64_t task, float *p) {
    const backward_ctx *c = ctx;
    int64_t t = c->t, h = c->h, d = c->d, ldq = c->ldq, ldk = c->ldk;
    int64_t b = task / h, hh = task % h, kh = hh / c->group;
    float *dkh, *dvh;
    int64_t lddk;
    if (c->group > 1) {
        dkh = c->gk + (size_t)task * c->slab;
        dvh = c->gv + (size_t)task * c->slab;
        lddk = d;
        memset(dkh, 0, c->slab * sizeof(float));
        memset(dvh, 0, c->slab * sizeof(float));
    } else {
        dkh = c->dk + b * t * ldk + kh * d;
        dvh = c->dv + b * t * ldk + kh * d;
        lddk = ldk;
        for (int64_t i = 0; i < t; i++) {
            memset(dkh + i * ldk, 0, (size_t)d * sizeof(float));
            memset(dvh + i * ldk, 0, (size_t)d * sizeof(float));
        }
    }
    int64_t qoff = b * t * ldq + hh * d, koff = b * t * ldk + kh * d;
    head_backward(c->q + qoff, ldq, c->k + koff, ldk, c->v + koff, ldk, c->out + qoff,
                  c->dout + qoff, ldq, c->lse + (b * h + hh) * t, c->dq + qoff, dkh, lddk, dvh, t,
                  d, c->scale, p, p + ATTN_BLOCK * t, p + 2 * ATTN_BLOCK * t);
}

sl_status cpu_attention_backward(sl_backend *be, sl_tensor dq, sl_tensor dk, sl_tensor dv,
                                 sl_tensor dout, sl_tensor q, sl_tensor k, sl_tensor v,
                                 sl_tensor out, sl_tensor lse) {
    const char *op = "ops_attention_backward";
    int64_t bsz = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3];
    int64_t hkv = k.shape[2], group = h / hkv, tasks = bsz * h;
    int64_t ldq = h * d, ldk = hkv * d;
    SL_TRY(check_blas_dims(op, t, ldq));
    float scale = (float)(1.0 / sqrt((double)d));
    const float *qp = cpu_cf32(q), *kp = cpu_cf32(k), *vp = cpu_cf32(v), *op_ = cpu_cf32(out);
    const float *gp = cpu_cf32(dout), *lp = cpu_cf32(lse);
    float *dqp = cpu_f32(dq), *dkp = cpu_f32(dk), *dvp = cpu_f32(dv);

    /* Without GQA each task owns its (T, D) slice of dk/dv in place (stride
     * Hkv*D); with GQA it owns a contiguous (T, D) slab of the scratch. */
    float *gk = NULL, *gv = NULL;
    size_t slab = (size_t)(t * d);
    if (group > 1) {
        size_t bytes = (size_t)tasks * slab * sizeof(float);
        gk = malloc(bytes);
        gv = malloc(bytes);
        if (!gk || !gv) {
            free(gk);
            free(gv);
            return sl_errorf(SL_ERR_NOMEM, "%s: out of memory for 2 x %zu bytes of GQA "
                             "gradient scratch", op, bytes);
        }
    }
    backward_ctx c = {qp, kp, vp, op_, gp, lp, dqp, dkp, dvp, gk, gv, slab, t, h, group, d, ldq,
                      ldk, scale};
    size_t scratch = (size_t)ATTN_BLOCK * (size_t)t * 2 + (size_t)t;
    sl_status st = run_head_tasks(be, op, tasks, scratch, backward_task, &c);
    if (st == SL_OK && group > 1) {
        /* dk[b, i, kh, :] = sum over g of slab(b, kh*group + g)[i, :], g in order */
        int64_t rows = bsz * t;
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            int64_t b = r / t, i = r % t;
            for (int64_t kh = 0; kh < hkv; kh++) {
                float *dko = dkp + r * ldk + kh * d, *dvo = dvp + r * ldk + kh * d;
                for (int64_t j = 0; j < d; j++) {
                    dko[j] = 0.0f;
                    dvo[j] = 0.0f;
                }
                for (int64_t g = 0; g < group; g++) {
                    size_t base = (size_t)(b * h + kh * group + g) * slab + (size_t)(i * d);
                    for (int64_t j = 0; j < d; j++) {
                        dko[j] += gk[base + (size_t)j];
                        dvo[j] += gv[base + (size_t)j];
                    }
                }
            }
        }
    }
    free(gk);
    free(gv);
    return st;
}
