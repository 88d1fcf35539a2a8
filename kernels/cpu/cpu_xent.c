/* kernels/cpu/cpu_xent.c: softmax cross-entropy with an ignore index.
 *
 * Fused form (full logits rows present), per row, rows split across threads:
 *   pass 1: max;  pass 2: e = exp(z - max) written into dlogits (when wanted)
 *   and summed in double;  pass 3: dlogits = grad_scale * (e / sum - onehot).
 *   exp is evaluated once per logit. The target logit is read before pass 2,
 *   so dlogits may overwrite logits in place.
 * Vocab-chunked form: per chunk, the chunk's (max, sum exp) merges into the
 *   running (M, S) of each row: M' = max(M, m), S' = S e^(M - M') + s e^(m - M'),
 *   which is exact in real arithmetic whatever the chunk boundaries.
 * Loss sums are per-row losses in double, added in row order, so the result
 * does not depend on the thread count.
 */
/* Loops that call cpu_expf (kernels/cpu/cpu_math.h) contain float selects
 * that gcc only if-converts, and so vectorizes, when it may assume FP
 * operations do not trap; shardlm never enables FP traps or reads the FP
 * exception flags, so this changes no result. */
#pragma GCC optimize("no-trapping-math")

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"

static sl_status check_targets_lt(const int32_t *tgt, int64_t rows, int64_t vocab,
                                  const char *op) {
    for (int64_t r = 0; r < rows; r++)
        if (tgt[r] >= 0 && (int64_t)tgt[r] >= vocab)
            return sl_errorf(SL_ERR_INVALID,
                             "%s: target %" PRId32 " at row %" PRId64 " is >= vocab_size %" PRId64
                             " (use a negative target to ignore a position)",
                             op, tgt[r], r, vocab);
    return SL_OK;
}

static float row_max(const float *z, int64_t n) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++)
        mx = z[j] > mx ? z[j] : mx;
    return mx;
}

/* sum_j exp(z[j] - mx): fp32 partial sums across SIMD lanes, in double */
static double row_sum_exp(const float *z, int64_t n, float mx) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++)
        s += cpu_expf(z[j] - mx);
    return s;
}

/* Row r's loss: in double for the row-order sum, and in losses when wanted. */
static void put_loss(double *row_loss, float *lo, int64_t r, double loss) {
    row_loss[r] = loss;
    if (lo)
        lo[r] = (float)loss;
}

/* ops_xent_sum_losses, then frees row_loss. */
static sl_status sum_losses(double *row_loss, const int32_t *tgt, int64_t rows, double *sum,
                            int64_t *n_valid) {
    ops_xent_sum_losses(row_loss, tgt, rows, sum, n_valid);
    free(row_loss);
    return SL_OK;
}

sl_status cpu_cross_entropy(sl_backend *be, sl_tensor losses, sl_tensor dlogits, sl_tensor logits,
                            sl_tensor targets, float grad_scale, double *loss_sum,
                            int64_t *n_valid) {
    int64_t rows = cpu_rows(logits), vocab = cpu_cols(logits);
    const int32_t *tgt = (const int32_t *)targets.data;
    SL_TRY(check_targets_lt(tgt, rows, vocab, "ops_cross_entropy"));
    double *row_loss = malloc((size_t)(rows ? rows : 1) * sizeof(double));
    SL_CHECK_ALLOC(row_loss, (size_t)rows * sizeof(double));
    const float *z = cpu_cf32(logits);
    float *dz = dlogits.data ? cpu_f32(dlogits) : NULL;
    float *lo = losses.data ? cpu_f32(losses) : NULL;
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * vocab;
        int32_t t = tgt[r];
        if (t < 0) {
            put_loss(row_loss, lo, r, 0.0);
            if (dz)
                for (int64_t j = 0; j < vocab; j++)
                    dz[r * vocab + j] = 0.0f;
            continue;
        }
        float zt = zr[t];
        float mx = row_max(zr, vocab);
        double sum = 0.0;
        if (dz) {
            float *dr = dz + r * vocab;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < vocab; j++) {
                float e = cpu_expf(zr[j] - mx);
                dr[j] = e;
                sum += e;
            }
            float k = (float)((double)grad_scale / sum);
#pragma omp simd
            for (int64_t j = 0; j < vocab; j++)
                dr[j] *= k;
            dr[t] -= grad_scale;
        } else {
            sum = row_sum_exp(zr, vocab, mx);
        }
        double loss = (double)mx + log(sum) - (double)zt;
        put_loss(row_loss, lo, r, loss);
    }
    return sum_losses(row_loss, tgt, rows, loss_sum, n_valid);
}

sl_status cpu_xent_stats_chunk(sl_backend *be, sl_tensor stats, sl_tensor logits_chunk,
                               sl_tensor targets, int64_t vocab_offset, bool first_chunk) {
    int64_t rows = cpu_rows(logits_chunk), vc = cpu_cols(logits_chunk);
    const int32_t *tgt = (const int32_t *)targets.data;
    const float *z = cpu_cf32(logits_chunk);
    float *st = cpu_f32(stats);
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * vc;
        float *sr = st + r * OPS_XENT_STATS;
        if (first_chunk) {
            sr[0] = -INFINITY;
            sr[1] = 0.0f;
            sr[2] = 0.0f;
        }
        float mc = row_max(zr, vc);
        double sc = row_sum_exp(zr, vc, mc);
        float m_old = sr[0];
        if (sr[1] == 0.0f || mc > m_old) {
            double rescale = sr[1] == 0.0f ? 0.0 : exp((double)m_old - (double)mc);
            sr[1] = (float)((double)sr[1] * rescale + sc);
            sr[0] = mc;
        } else {
            sr[1] = (float)((double)sr[1] + sc * exp((double)mc - (double)m_old));
        }
        int64_t t = tgt[r];
        if (t >= vocab_offset && t < vocab_offset + vc)
            sr[2] = zr[t - vocab_offset];
    }
    return SL_OK;
}

sl_status cpu_xent_loss(sl_backend *be, sl_tensor losses, sl_tensor lse, sl_tensor stats,
                        sl_tensor targets, double *loss_sum, int64_t *n_valid) {
    int64_t rows = tensor_numel(&stats) / OPS_XENT_STATS;
    const int32_t *tgt = (const int32_t *)targets.data;
    const float *st = cpu_cf32(stats);
    float *ls = cpu_f32(lse), *lo = losses.data ? cpu_f32(losses) : NULL;
    double *row_loss = malloc((size_t)(rows ? rows : 1) * sizeof(double));
    SL_CHECK_ALLOC(row_loss, (size_t)rows * sizeof(double));
#pragma omp parallel for num_threads(cpu_threads(be, rows / 256 + 1)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *sr = st + r * OPS_XENT_STATS;
        double l = (double)sr[0] + log((double)sr[1]);
        ls[r] = (float)l;
        double loss = tgt[r] < 0 ? 0.0 : l - (double)sr[2];
        put_loss(row_loss, lo, r, loss);
    }
    return sum_losses(row_loss, tgt, rows, loss_sum, n_valid);
}

sl_status cpu_xent_backward_chunk(sl_backend *be, sl_tensor dlogits_chunk,
                                  sl_tensor logits_chunk, sl_tensor lse, sl_tensor targets,
                                  int64_t vocab_offset, float grad_scale) {
    int64_t rows = cpu_rows(logits_chunk), vc = cpu_cols(logits_chunk);
    const int32_t *tgt = (const int32_t *)targets.data;
    const float *z = cpu_cf32(logits_chunk), *ls = cpu_cf32(lse);
    float *dz = cpu_f32(dlogits_chunk);
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * vc;
        float *dr = dz + r * vc;
        int64_t t = tgt[r];
        if (t < 0) {
            for (int64_t j = 0; j < vc; j++)
                dr[j] = 0.0f;
            continue;
        }
        float l = ls[r];
#pragma omp simd
        for (int64_t j = 0; j < vc; j++)
            dr[j] = grad_scale * cpu_expf(zr[j] - l);
        if (t >= vocab_offset && t < vocab_offset + vc)
            dr[t - vocab_offset] -= grad_scale;
    }
    return SL_OK;
}
