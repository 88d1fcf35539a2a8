/* kernels/cpu/cpu_gemm.c: matmul and linear layers on OpenBLAS.
 *
 * Every GEMM is one cblas_sgemm in row-major order with the transposes
 * expressed through CblasTrans and the leading dimensions, so no operand is
 * ever copied or transposed in memory:
 *   forward   out (R, N)     = inp (R, K) weight(N, K)^T      NoTrans, Trans
 *   dinp      dinp (R, K)    = dout (R, N) weight (N, K)       NoTrans, NoTrans
 *   dweight   dweight (N, K) += dout(R, N)^T inp (R, K)        Trans,   NoTrans
 * The bias is broadcast into C before the GEMM (which then accumulates with
 * beta = 1), which costs one pass over C and keeps the GEMM a single call.
 */
#include <cblas.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

sl_status cpu_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc) {
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX ||
        ldc > INT_MAX)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "matmul: dims (m %" PRId64 ", n %" PRId64 ", k %" PRId64
                         ") exceed the 32-bit range of this OpenBLAS build; split the call",
                         m, n, k);
    if (m == 0 || n == 0)
        return SL_OK;
    if (k == 0) { /* BLAS rejects lda = 0; C = beta C by hand (beta = 0: never read C) */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return SL_OK;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda,
                b, (int)ldb, beta, c, (int)ldc);
    return SL_OK;
}

/* c (m, n) = beta c + bias (broadcast over rows); beta = 0 never reads c. */
static void bias_fill(const sl_backend *be, float *c, const float *bias, int64_t m, int64_t n,
                      float beta) {
#pragma omp parallel for num_threads(cpu_threads(be, m)) schedule(static)
    for (int64_t i = 0; i < m; i++) {
        float *row = c + i * n;
        if (beta == 0.0f) {
            memcpy(row, bias, (size_t)n * sizeof(float));
        } else {
            for (int64_t j = 0; j < n; j++)
                row[j] = beta * row[j] + bias[j];
        }
    }
}

sl_status cpu_matmul(sl_backend *be, sl_tensor c, sl_tensor a, sl_tensor b, sl_tensor bias,
                     bool trans_a, bool trans_b, float alpha, float beta) {
    int64_t m = cpu_rows(c), n = cpu_cols(c);
    int64_t k = trans_a ? cpu_rows(a) : cpu_cols(a);
    SL_CHECK_ARG(c.dtype == SL_DTYPE_F32 && (!bias.data || bias.dtype == SL_DTYPE_F32),
                 "ops_matmul (cpu): c and bias must be F32");
    float *cp = cpu_f32(c);
    if (bias.data) {
        bias_fill(be, cp, cpu_cf32(bias), m, n, beta);
        beta = 1.0f;
    }
    return cpu_sgemm(trans_a, trans_b, m, n, k, alpha, cpu_cf32(a), cpu_cols(a), cpu_cf32(b),
                     cpu_cols(b), beta, cp, n);
}

sl_status cpu_linear_forward(sl_backend *be, sl_tensor out, sl_tensor inp, sl_tensor weight,
                             sl_tensor bias) {
    return cpu_matmul(be, out, inp, weight, bias, false, true, 1.0f, 0.0f);
}

void cpu_column_sums(const sl_backend *be, float *dst, const float *src, int64_t rows,
                     int64_t cols) {
    /* Column blocks of 64 floats per task: each task walks all rows of its
     * block (contiguous 256-byte segments), summing in double. */
    const int64_t blk = 64;
    int64_t nblk = (cols + blk - 1) / blk;
#pragma omp parallel for num_threads(cpu_threads(be, nblk)) schedule(static)
    for (int64_t bi = 0; bi < nblk; bi++) {
        int64_t c0 = bi * blk, c1 = c0 + blk < cols ? c0 + blk : cols;
        double acc[64] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *row = src + r * cols;
            for (int64_t j = c0; j < c1; j++)
                acc[j - c0] += row[j];
        }
        for (int64_t j = c0; j < c1; j++)
            dst[j] += (float)acc[j - c0];
    }
}

sl_status cpu_linear_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight, sl_tensor dbias,
                              sl_tensor dout, sl_tensor inp, sl_tensor weight,
                              bool dinp_accumulate) {
    int64_t r = cpu_rows(dout), n = weight.shape[0], k = weight.shape[1];
    if (dinp.data)
        SL_TRY(cpu_sgemm(false, false, r, k, n, 1.0f, cpu_cf32(dout), n, cpu_cf32(weight), k,
                         dinp_accumulate ? 1.0f : 0.0f, cpu_f32(dinp), k));
    if (dweight.data)
        SL_TRY(cpu_sgemm(true, false, n, k, r, 1.0f, cpu_cf32(dout), n, cpu_cf32(inp), k, 1.0f,
                         cpu_f32(dweight), k));
    if (dbias.data)
        cpu_column_sums(be, cpu_f32(dbias), cpu_cf32(dout), r, n);
    return SL_OK;
}
