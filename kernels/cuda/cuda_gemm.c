/* kernels/cuda/cuda_gemm.c: matmul and linear layers through cuBLASLt, bf16
 * operands, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 or fp32 output.
 *
 * Row-major to cuBLAS's column-major: a row-major (r, c) matrix is a
 * column-major (c, r) one, so C = op(A) op(B) is computed as
 * C^T = op(B)^T op(A)^T with the operands swapped and no data moved:
 *   forward   out (R, N)      = inp (R, K) weight (N, K)^T
 *   dinp      dinp (R, K)     = dout (R, N) weight (N, K)    (beta 1: accumulate)
 *   dweight   dweight (N, K) += dout (R, N)^T inp (R, K)     (fp32 output, beta 1)
 * Epilogues: the bias is fused (CUBLASLT_EPILOGUE_BIAS; in the transposed
 * view it runs along D's rows, i.e. one value per output column), with a
 * separate bias-add kernel when cuBLASLt has no algorithm for that
 * combination (fp32 bias into a bf16 output, say). dbias is a deterministic
 * column sum (cuk_colsum) rather than the BGRADB epilogue, which overwrites
 * instead of accumulating into the fp32 gradient. A GELU epilogue would need
 * a fused linear+gelu entry in kernels/ops.h, which the op table does not
 * have (the model calls linear then gelu).
 * Algorithm choice: cublasLtMatmulAlgoGetHeuristic costs tens of
 * microseconds, so its answer is cached per (transposes, m, n, k, types,
 * epilogue, operand alignments) in the backend (CUDA_GEMM_CACHE entries,
 * round-robin replacement).
 */
#include <inttypes.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.h"

/* Largest power of two (<= 256) dividing the address. */
static uint32_t ptr_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    uint32_t a = 256;
    while (a > 1 && (u & (a - 1)))
        a >>= 1;
    return a;
}

typedef struct {
    bool ta, tb, c_f32, bias_f32, has_bias;
    int64_t m, n, k;
    uint32_t align[4];
} gemm_key;

static void key_pack(const gemm_key *k, uint8_t out[64]) {
    memset(out, 0, 64);
    out[0] = 1; /* never all-zero */
    out[1] = (uint8_t)(k->ta | k->tb << 1 | k->c_f32 << 2 | k->bias_f32 << 3 | k->has_bias << 4);
    memcpy(out + 8, &k->m, 8);
    memcpy(out + 16, &k->n, 8);
    memcpy(out + 24, &k->k, 8);
    memcpy(out + 32, k->align, sizeof k->align);
}

typedef struct {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulPreference_t pref;
} lt_descs;

static void descs_free(lt_descs *d) {
    if (d->pref)
        cublasLtMatmulPreferenceDestroy(d->pref);
    if (d->lc)
        cublasLtMatrixLayoutDestroy(d->lc);
    if (d->lb)
        cublasLtMatrixLayoutDestroy(d->lb);
    if (d->la)
        cublasLtMatrixLayoutDestroy(d->la);
    if (d->op)
        cublasLtMatmulDescDestroy(d->op);
}

/* Builds the descriptors for C (m, n, ldc) = alpha op(A) op(B) + beta C
 * (+ bias) in row-major terms. */
static sl_status descs_make(sl_backend *be, lt_descs *d, const gemm_key *k, const void *bias,
                            int64_t lda, int64_t ldb, int64_t ldc) {
    SL_CHECK_CUBLAS(cublasLtMatmulDescCreate(&d->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS "A" is our B */
    cublasOperation_t opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    SL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                                   sizeof opa));
    SL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                                   sizeof opb));
    if (k->has_bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        int32_t bt = k->bias_f32 ? CUDA_R_32F : CUDA_R_16BF;
        SL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep,
                                                       sizeof ep));
        SL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof bias));
        SL_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
            d->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    /* cuBLAS A = our B stored (tb ? (n, k) : (k, n)) row-major */
    uint64_t a_rows = (uint64_t)(k->tb ? k->k : k->n), a_cols = (uint64_t)(k->tb ? k->n : k->k);
    uint64_t b_rows = (uint64_t)(k->ta ? k->m : k->k), b_cols = (uint64_t)(k->ta ? k->k : k->m);
    SL_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&d->la, CUDA_R_16BF, a_rows, a_cols, ldb));
    SL_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&d->lb, CUDA_R_16BF, b_rows, b_cols, lda));
    SL_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&d->lc, k->c_f32 ? CUDA_R_32F : CUDA_R_16BF,
                                               (uint64_t)k->n, (uint64_t)k->m, ldc));
    SL_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&d->pref));
    uint64_t ws = be->workspace_bytes;
    SL_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
        d->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    static const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        SL_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(d->pref, attrs[i], &k->align[i],
                                                             sizeof k->align[i]));
    return SL_OK;
}

/* Finds (cached) or asks for an algorithm; *found false when cuBLASLt has
 * none for this combination. */
static sl_status algo_get(sl_backend *be, const gemm_key *k, lt_descs *d,
                          cublasLtMatmulAlgo_t *algo, bool *found) {
    cuda_impl *im = cuda_be_impl(be);
    uint8_t key[64];
    key_pack(k, key);
    for (int i = 0; i < CUDA_GEMM_CACHE; i++)
        if (memcmp(im->gemm_cache[i].key, key, 64) == 0) {
            *algo = im->gemm_cache[i].algo;
            *found = true;
            return SL_OK;
        }
    cublasLtMatmulHeuristicResult_t res;
    int n_res = 0;
    memset(&res, 0, sizeof res);
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)be->blas_handle, d->op,
                                                       d->la, d->lb, d->lc, d->lc, d->pref, 1,
                                                       &res, &n_res);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && n_res == 0)) {
        *found = false;
        return SL_OK;
    }
    SL_CHECK_CUBLAS(st);
    cuda_gemm_entry *e = &im->gemm_cache[im->gemm_next];
    im->gemm_next = (im->gemm_next + 1) % CUDA_GEMM_CACHE;
    memcpy(e->key, key, 64);
    e->algo = res.algo;
    *algo = res.algo;
    *found = true;
    return SL_OK;
}

/* One cuBLASLt call (or two kernels when no fused algorithm exists). */
static sl_status lt_gemm(sl_backend *be, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                         float alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                         float beta, void *c, bool c_f32, int64_t ldc, const void *bias,
                         bool bias_f32) {
    if (m == 0 || n == 0)
        return SL_OK;
    cudaStream_t s = cuda_stream(be);
    if (k == 0) { /* C = beta C (+ bias); cuBLAS rejects k = 0 layouts */
        if (beta == 0.0f)
            SL_CHECK_CUDA(cudaMemsetAsync(c, 0, (size_t)(m * n) * (c_f32 ? 4u : 2u), s));
        else if (beta != 1.0f)
            SL_CHECK_LAUNCH(cuk_scale(s, c, !c_f32, m * n, beta));
        if (bias)
            SL_CHECK_LAUNCH(cuk_bias_add(s, c, !c_f32, bias, !bias_f32, m, n));
        return SL_OK;
    }
    gemm_key key;
    memset(&key, 0, sizeof key);
    key.ta = ta;
    key.tb = tb;
    key.c_f32 = c_f32;
    key.bias_f32 = bias_f32;
    key.has_bias = bias != NULL;
    key.m = m;
    key.n = n;
    key.k = k;
    key.align[0] = ptr_align(b); /* cuBLAS A */
    key.align[1] = ptr_align(a);
    key.align[2] = key.align[3] = ptr_align(c);
    for (int attempt = 0; attempt < 2; attempt++) {
        lt_descs d;
        memset(&d, 0, sizeof d);
        sl_status st = descs_make(be, &d, &key, bias, lda, ldb, ldc);
        cublasLtMatmulAlgo_t algo;
        bool found = false;
        if (st == SL_OK)
            st = algo_get(be, &key, &d, &algo, &found);
        if (st == SL_OK && found) {
            cublasStatus_t cs = cublasLtMatmul((cublasLtHandle_t)be->blas_handle, d.op, &alpha,
                                               b, d.la, a, d.lb, &beta, c, d.lc, c, d.lc, &algo,
                                               be->workspace, be->workspace_bytes, s);
            if (cs != CUBLAS_STATUS_SUCCESS)
                st = sl_check_cublas_fail(__FILE__, __LINE__, cs, "cublasLtMatmul");
        }
        descs_free(&d);
        SL_TRY(st);
        if (found) {
            if (!key.has_bias && bias) /* second attempt: bias as its own pass */
                SL_CHECK_LAUNCH(cuk_bias_add(s, c, !c_f32, bias, !bias_f32, m, n));
            return SL_OK;
        }
        if (!key.has_bias)
            break;
        key.has_bias = false; /* no fused algorithm: plain GEMM + bias kernel */
    }
    return sl_errorf(SL_ERR_UNSUPPORTED,
                     "matmul: cuBLASLt has no algorithm for op(A) (%" PRId64 " x %" PRId64
                     ")%s x op(B)%s into a %s C (lda %" PRId64 ", ldb %" PRId64 ", ldc %" PRId64
                     ", alignments %u/%u/%u bytes)",
                     m, k, ta ? " transposed" : "", tb ? " transposed" : "",
                     c_f32 ? "F32" : "BF16", lda, ldb, ldc, key.align[1], key.align[0],
                     key.align[2]);
}

sl_status cuda_matmul(sl_backend *be, sl_tensor c, sl_tensor a, sl_tensor b, sl_tensor bias,
                      bool trans_a, bool trans_b, float alpha, float beta) {
    int64_t m = cuda_rows(c), n = cuda_cols(c);
    int64_t k = trans_a ? cuda_rows(a) : cuda_cols(a);
    return lt_gemm(be, trans_a, trans_b, m, n, k, alpha, a.data, cuda_cols(a), b.data,
                   cuda_cols(b), beta, c.data, c.dtype == SL_DTYPE_F32, n, bias.data,
                   bias.data && bias.dtype == SL_DTYPE_F32);
}

sl_status cuda_linear_forward(sl_backend *be, sl_tensor out, sl_tensor inp, sl_tensor weight,
                              sl_tensor bias) {
    return cuda_matmul(be, out, inp, weight, bias, false, true, 1.0f, 0.0f);
}

sl_status cuda_linear_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                               sl_tensor dbias, sl_tensor dout, sl_tensor inp, sl_tensor weight,
                               bool dinp_accumulate) {
    int64_t r = cuda_rows(dout), n = weight.shape[0], k = weight.shape[1];
    if (dinp.data)
        SL_TRY(lt_gemm(be, false, false, r, k, n, 1.0f, dout.data, n, weight.data, k,
                       dinp_accumulate ? 1.0f : 0.0f, dinp.data, false, k, NULL, false));
    if (dweight.data)
        SL_TRY(lt_gemm(be, true, false, n, k, r, 1.0f, dout.data, n, inp.data, k, 1.0f,
                       dweight.data, true, k, NULL, false));
    if (dbias.data && r > 0) {
        cuda_impl *im = cuda_be_impl(be);
        int splits = cuk_colsum_splits(r, n, im->sm_count);
        void *part = NULL;
        SL_TRY(cuda_scratch(be, (size_t)2 * (size_t)splits * (size_t)n * sizeof(float), &part));
        SL_CHECK_LAUNCH(cuk_colsum(cuda_stream(be), CUDA_COLSUM_BIAS, NULL, (float *)dbias.data,
                                    dout.data, NULL, NULL, NULL, r, n, (float *)part, splits));
    }
    return SL_OK;
}
