/* kernels/cpu/cpu_ops.h: internal declarations shared by the CPU backend's
 * files (not a public header; callers use kernels/ops.h).
 *
 * defines: the cpu_* entries of the CPU struct kernel_ops, cpu_threads,
 *          cpu_f32 / cpu_cf32 (data pointer of a checked F32 view)
 *
 * Every entry receives arguments already checked by kernels/ops.c (presence,
 * shapes, dtype == act dtype, aliasing); the CPU backend's act dtype is F32,
 * so the entries only check what is CPU specific (BLAS int ranges, token ids,
 * BF16 where a table entry allows F32 or act).
 */
#ifndef SL_KERNELS_CPU_CPU_OPS_H
#define SL_KERNELS_CPU_CPU_OPS_H

#include "kernels/ops.h"
#include "runtime/check.h"

static inline float *cpu_f32(sl_tensor t) { return (float *)t.data; }
static inline const float *cpu_cf32(sl_tensor t) { return (const float *)t.data; }


static inline int64_t cpu_cols(sl_tensor t) { return t.shape[t.ndim - 1]; }
static inline int64_t cpu_rows(sl_tensor t) { return tensor_numel(&t) / (cpu_cols(t) ? cpu_cols(t) : 1); }

/* OpenMP thread count for an op over `work` independent items: never more
 * threads than items, never more than the backend's. */
static inline int cpu_threads(const sl_backend *be, int64_t work) {
    int n = be->n_threads;
    if (work < n)
        n = work > 1 ? (int)work : 1;
    return n;
}

/* cpu_gemm.c */
sl_status cpu_matmul(sl_backend *be, sl_tensor c, sl_tensor a, sl_tensor b, sl_tensor bias,
                     bool trans_a, bool trans_b, float alpha, float beta);
sl_status cpu_linear_forward(sl_backend *be, sl_tensor out, sl_tensor inp, sl_tensor weight,
                             sl_tensor bias);
sl_status cpu_linear_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight, sl_tensor dbias,
                              sl_tensor dout, sl_tensor inp, sl_tensor weight,
                              bool dinp_accumulate);
/* C (m, n, ldc) = alpha op(A) op(B) + beta C through cblas_sgemm, row-major,
 * with a range check on BLAS's int dims; beta = 0 never reads C. */
sl_status cpu_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc);

/* cpu_norm.c */
sl_status cpu_layernorm_forward(sl_backend *be, sl_tensor out, sl_tensor mean, sl_tensor rstd,
                                sl_tensor inp, sl_tensor weight, sl_tensor bias, float eps);
sl_status cpu_layernorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                 sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                 sl_tensor weight, sl_tensor mean, sl_tensor rstd,
                                 bool dinp_accumulate);
sl_status cpu_rmsnorm_forward(sl_backend *be, sl_tensor out, sl_tensor rstd, sl_tensor inp,
                              sl_tensor weight, float eps);
sl_status cpu_rmsnorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                               sl_tensor dout, sl_tensor inp, sl_tensor weight, sl_tensor rstd,
                               bool dinp_accumulate);
/* dst[c] += sum over rows r of src[r, c] (src is (rows, cols)), summed in
 * double; columns are split across threads so the sum order is fixed. */
void cpu_column_sums(const sl_backend *be, float *dst, const float *src, int64_t rows,
                     int64_t cols);

/* cpu_elementwise.c */
sl_status cpu_gelu_forward(sl_backend *be, sl_tensor out, sl_tensor inp);
sl_status cpu_gelu_backward(sl_backend *be, sl_tensor dinp, sl_tensor inp, sl_tensor dout);
sl_status cpu_swiglu_forward(sl_backend *be, sl_tensor out, sl_tensor gate, sl_tensor up);
sl_status cpu_swiglu_backward(sl_backend *be, sl_tensor dgate, sl_tensor dup, sl_tensor dout,
                              sl_tensor gate, sl_tensor up);
sl_status cpu_rope_forward(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                           sl_tensor inv_freq);
sl_status cpu_rope_backward(sl_backend *be, sl_tensor dinp, sl_tensor dout, int64_t pos_offset,
                            sl_tensor inv_freq);
sl_status cpu_embedding_forward(sl_backend *be, sl_tensor out, sl_tensor tokens, sl_tensor wte,
                                sl_tensor wpe, int64_t pos_offset);
sl_status cpu_embedding_backward(sl_backend *be, sl_tensor dwte, sl_tensor dwpe, sl_tensor dout,
                                 sl_tensor tokens, int64_t pos_offset);
sl_status cpu_adamw(sl_backend *be, sl_tensor param, sl_tensor grad, sl_tensor m, sl_tensor v,
                    sl_tensor param_copy, const ops_adamw_args *args);
sl_status cpu_cast(sl_backend *be, sl_tensor dst, sl_tensor src);
sl_status cpu_sq_norm(sl_backend *be, sl_tensor x, double *out);
sl_status cpu_scale(sl_backend *be, sl_tensor x, float s);
sl_status cpu_add(sl_backend *be, sl_tensor out, sl_tensor a, sl_tensor b);
sl_status cpu_dropout(sl_backend *be, sl_tensor out, sl_tensor inp, float p, uint64_t seed,
                      uint64_t offset);

/* cpu_attention.c */
sl_status cpu_attention_forward(sl_backend *be, sl_tensor out, sl_tensor lse, sl_tensor q,
                                sl_tensor k, sl_tensor v);
sl_status cpu_attention_backward(sl_backend *be, sl_tensor dq, sl_tensor dk, sl_tensor dv,
                                 sl_tensor dout, sl_tensor q, sl_tensor k, sl_tensor v,
                                 sl_tensor out, sl_tensor lse);
sl_status cpu_attention_decode(sl_backend *be, sl_tensor out, sl_tensor q, sl_tensor k_cache,
                               sl_tensor v_cache, int64_t kv_len);
sl_status cpu_kv_cache_append(sl_backend *be, sl_tensor cache, sl_tensor src, int64_t pos);

/* cpu_xent.c */
sl_status cpu_cross_entropy(sl_backend *be, sl_tensor losses, sl_tensor dlogits, sl_tensor logits,
                            sl_tensor targets, float grad_scale, double *loss_sum,
                            int64_t *n_valid);
sl_status cpu_xent_stats_chunk(sl_backend *be, sl_tensor stats, sl_tensor logits_chunk,
                               sl_tensor targets, int64_t vocab_offset, bool first_chunk);
sl_status cpu_xent_loss(sl_backend *be, sl_tensor losses, sl_tensor lse, sl_tensor stats,
                        sl_tensor targets, double *loss_sum, int64_t *n_valid);
sl_status cpu_xent_backward_chunk(sl_backend *be, sl_tensor dlogits_chunk,
                                  sl_tensor logits_chunk, sl_tensor lse, sl_tensor targets,
                                  int64_t vocab_offset, float grad_scale);

#endif
