/* kernels/cpu/cpu_norm.c: layernorm and rmsnorm, forward and backward.
 *
 * Rows (B*T) are split across threads. Row statistics are two-pass sums in
 * double (mean first, then the centered second moment), so a row with a large
 * mean and a small variance keeps its precision; the elementwise work is
 * fp32. Parameter gradients (dweight, dbias) are column reductions done in a
 * second, column-blocked pass with double accumulators: every column is
 * summed over rows in row order by exactly one thread, so the result does not
 * depend on the thread count (no per-thread partial buffers to combine).
 */
#include <math.h>
#include <stddef.h>

#include "kernels/cpu/cpu_ops.h"

sl_status cpu_layernorm_forward(sl_backend *be, sl_tensor out, sl_tensor mean, sl_tensor rstd,
                                sl_tensor inp, sl_tensor weight, sl_tensor bias, float eps) {
    int64_t rows = cpu_rows(inp), c = cpu_cols(inp);
    const float *x = cpu_cf32(inp), *w = cpu_cf32(weight), *b = cpu_cf32(bias);
    float *y = cpu_f32(out), *mu = cpu_f32(mean), *rs = cpu_f32(rstd);
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        double s = 0.0;
        for (int64_t i = 0; i < c; i++)
            s += xr[i];
        double m = s / (double)c;
        double v = 0.0;
        for (int64_t i = 0; i < c; i++) {
            double d = (double)xr[i] - m;
            v += d * d;
        }
        float mf = (float)m;
        float rf = (float)(1.0 / sqrt(v / (double)c + (double)eps));
        float *yr = y + r * c; /* may alias xr: each element is read before it is written */
        for (int64_t i = 0; i < c; i++)
            yr[i] = (xr[i] - mf) * rf * w[i] + b[i];
        mu[r] = mf;
        rs[r] = rf;
    }
    return SL_OK;
}

/* dweight[i] += sum_r dout[r,i] * (x[r,i] - mean[r]) * rstd[r];
 * dbias[i] += sum_r dout[r,i]. mean NULL: rmsnorm (no centering). */
static void norm_param_grads(const sl_backend *be, float *dweight, float *dbias,
                             const float *dout, const float *x, const float *mean,
                             const float *rstd, int64_t rows, int64_t c) {
    const int64_t blk = 64;
    int64_t nblk = (c + blk - 1) / blk;
#pragma omp parallel for num_threads(cpu_threads(be, nblk)) schedule(static)
    for (int64_t bi = 0; bi < nblk; bi++) {
        int64_t c0 = bi * blk, c1 = c0 + blk < c ? c0 + blk : c, n = c1 - c0;
        double aw[64] = {0}, ab[64] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *dr = dout + r * c + c0, *xr = x + r * c + c0;
            float mu = mean ? mean[r] : 0.0f, rs = rstd[r];
            for (int64_t j = 0; j < n; j++) {
                aw[j] += (double)(dr[j] * ((xr[j] - mu) * rs));
                ab[j] += dr[j];
            }
        }
        for (int64_t j = 0; j < n; j++) {
            if (dweight)
                dweight[c0 + j] += (float)aw[j];
            if (dbias)
                dbias[c0 + j] += (float)ab[j];
        }
    }
}

sl_status cpu_layernorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                 sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                 sl_tensor weight, sl_tensor mean, sl_tensor rstd,
                                 bool dinp_accumulate) {
    int64_t rows = cpu_rows(inp), c = cpu_cols(inp);
    const float *x = cpu_cf32(inp), *w = cpu_cf32(weight), *dy = cpu_cf32(dout);
    const float *mu = cpu_cf32(mean), *rs = cpu_cf32(rstd);
    float *dx = cpu_f32(dinp);
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dyr = dy + r * c;
        float m = mu[r], s = rs[r];
        double sum_g = 0.0, sum_gx = 0.0;
        for (int64_t i = 0; i < c; i++) {
            float g = dyr[i] * w[i];
            sum_g += g;
            sum_gx += (double)(g * ((xr[i] - m) * s));
        }
        float mg = (float)(sum_g / (double)c), mgx = (float)(sum_gx / (double)c);
        float *dxr = dx + r * c;
        if (dinp_accumulate) {
            for (int64_t i = 0; i < c; i++)
                dxr[i] += s * (dyr[i] * w[i] - mg - (xr[i] - m) * s * mgx);
        } else {
            for (int64_t i = 0; i < c; i++)
                dxr[i] = s * (dyr[i] * w[i] - mg - (xr[i] - m) * s * mgx);
        }
    }
    if (dweight.data || dbias.data)
        norm_param_grads(be, dweight.data ? cpu_f32(dweight) : NULL,
                         dbias.data ? cpu_f32(dbias) : NULL, dy, x, mu, rs, rows, c);
    return SL_OK;
}

sl_status cpu_rmsnorm_forward(sl_backend *be, sl_tensor out, sl_tensor rstd, sl_tensor inp,
                              sl_tensor weight, float eps) {
    int64_t rows = cpu_rows(inp), c = cpu_cols(inp);
    const float *x = cpu_cf32(inp), *w = cpu_cf32(weight);
    float *y = cpu_f32(out), *rs = cpu_f32(rstd);
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        double ss = 0.0;
        for (int64_t i = 0; i < c; i++)
            ss += (double)xr[i] * (double)xr[i];
        float rf = (float)(1.0 / sqrt(ss / (double)c + (double)eps));
        float *yr = y + r * c;
        /* Hugging Face LlamaRMSNorm order: weight * (x * rstd) */
        for (int64_t i = 0; i < c; i++)
            yr[i] = w[i] * (xr[i] * rf);
        rs[r] = rf;
    }
    return SL_OK;
}

sl_status cpu_rmsnorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                               sl_tensor dout, sl_tensor inp, sl_tensor weight, sl_tensor rstd,
                               bool dinp_accumulate) {
    int64_t rows = cpu_rows(inp), c = cpu_cols(inp);
    const float *x = cpu_cf32(inp), *w = cpu_cf32(weight), *dy = cpu_cf32(dout);
    const float *rs = cpu_cf32(rstd);
    float *dx = cpu_f32(dinp);
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c, *dyr = dy + r * c;
        float s = rs[r];
        double sum_gx = 0.0;
        for (int64_t i = 0; i < c; i++)
            sum_gx += (double)(dyr[i] * w[i] * (xr[i] * s));
        float mgx = (float)(sum_gx / (double)c);
        float *dxr = dx + r * c;
        if (dinp_accumulate) {
            for (int64_t i = 0; i < c; i++)
                dxr[i] += s * (dyr[i] * w[i] - xr[i] * s * mgx);
        } else {
            for (int64_t i = 0; i < c; i++)
                dxr[i] = s * (dyr[i] * w[i] - xr[i] * s * mgx);
        }
    }
    if (dweight.data)
        norm_param_grads(be, cpu_f32(dweight), NULL, dy, x, NULL, rs, rows, c);
    return SL_OK;
}
