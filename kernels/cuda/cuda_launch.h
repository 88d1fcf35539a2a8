/* kernels/cuda/cuda_launch.h: C-callable launchers of the CUDA backend's
 * kernels (internal; the backend's .c files call them, callers use
 * kernels/ops.h).
 *
 * defines: cuk_layernorm_*, cuk_rmsnorm_*, cuk_colsum*, cuk_gelu_*,
 *          cuk_swiglu_*, cuk_rope, cuk_add_bf16, cuk_scale, cuk_cast,
 *          cuk_bias_add, cuk_embedding_*, cuk_attention_*, cuk_xent_*,
 *          cuk_adamw, cuk_sq_norm, cuk_dropout (cuk_: CUDA kernel launcher)
 *
 * Why a C header of launchers: runtime/mem.h (included by kernels/ops.h) is
 * C11 (<stdatomic.h>, _Atomic) and does not compile as C++, so the .cu files
 * never see sl_tensor; the .c side checks and unpacks tensors and passes raw
 * device pointers and sizes here.
 *
 * Conventions: every pointer is device memory; "bf16" pointers are void *
 * holding __nv_bfloat16 (2 bytes, row-major, contiguous); every launcher
 * enqueues on stream s, does not synchronize, and returns cudaGetLastError()
 * after its launches (cudaSuccess when nothing was wrong), so a bad launch
 * configuration is reported at the op that made it. Sizes are int64_t; a
 * launcher that needs a narrower type checks and returns
 * cudaErrorInvalidValue.
 */
#ifndef SL_KERNELS_CUDA_CUDA_LAUNCH_H
#define SL_KERNELS_CUDA_CUDA_LAUNCH_H

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- cuda_norm.cu ---- */
/* out, inp (rows, c) bf16 (out may alias inp); mean, rstd (rows) f32;
 * weight, bias (c) bf16. */
cudaError_t cuk_layernorm_fwd(cudaStream_t s, void *out, float *mean, float *rstd,
                               const void *inp, const void *weight, const void *bias,
                               int64_t rows, int64_t c, float eps);
/* dinp (rows, c) bf16, written or += (accumulate). */
cudaError_t cuk_layernorm_bwd_dinp(cudaStream_t s, void *dinp, const void *dout, const void *inp,
                                    const void *weight, const float *mean, const float *rstd,
                                    int64_t rows, int64_t c, bool accumulate);
cudaError_t cuk_rmsnorm_fwd(cudaStream_t s, void *out, float *rstd, const void *inp,
                             const void *weight, int64_t rows, int64_t c, float eps);
cudaError_t cuk_rmsnorm_bwd_dinp(cudaStream_t s, void *dinp, const void *dout, const void *inp,
                                  const void *weight, const float *rstd, int64_t rows, int64_t c,
                                  bool accumulate);

/* Deterministic column sums over rows of (rows, c) bf16 data, ACCUMULATED
 * into f32 vectors (parameter gradients):
 *   CUDA_COLSUM_BIAS:      db += sum_r dout[r]
 *   CUDA_COLSUM_LAYERNORM: dw += sum_r dout[r] * (inp[r] - mean[r]) * rstd[r];
 *                          db += sum_r dout[r]   (dw or db may be NULL)
 *   CUDA_COLSUM_RMSNORM:   dw += sum_r dout[r] * inp[r] * rstd[r]
 * Two passes: n_split row chunks write partials (2 * n_split * c floats of
 * scratch), then each column sums its partials in chunk order. */
typedef enum { CUDA_COLSUM_BIAS = 0, CUDA_COLSUM_LAYERNORM, CUDA_COLSUM_RMSNORM } cuda_colsum_mode;
int cuk_colsum_splits(int64_t rows, int64_t c, int sm_count);
cudaError_t cuk_colsum(cudaStream_t s, cuda_colsum_mode mode, float *dw, float *db,
                        const void *dout, const void *inp, const float *mean, const float *rstd,
                        int64_t rows, int64_t c, float *partials, int n_split);

/* ---- cuda_elementwise.cu ---- (n elements; bf16 unless said) */
cudaError_t cuk_gelu_fwd(cudaStream_t s, void *out, const void *inp, int64_t n);
cudaError_t cuk_gelu_bwd(cudaStream_t s, void *dinp, const void *inp, const void *dout,
                          int64_t n);
cudaError_t cuk_swiglu_fwd(cudaStream_t s, void *out, const void *gate, const void *up,
                            int64_t n);
cudaError_t cuk_swiglu_bwd(cudaStream_t s, void *dgate, void *dup, const void *dout,
                            const void *gate, const void *up, int64_t n);
cudaError_t cuk_add_bf16(cudaStream_t s, void *out, const void *a, const void *b, int64_t n);
/* x *= scale; x f32 (x_bf16 false) or bf16. */
cudaError_t cuk_scale(cudaStream_t s, void *x, bool x_bf16, int64_t n, float scale);
/* dst = src converted; exactly one of dst_bf16 / src_bf16 is true. */
cudaError_t cuk_cast(cudaStream_t s, void *dst, bool dst_bf16, const void *src, bool src_bf16,
                      int64_t n);
/* c (rows, cols) += bias broadcast over rows; c and bias f32 or bf16. */
cudaError_t cuk_bias_add(cudaStream_t s, void *c, bool c_bf16, const void *bias, bool bias_bf16,
                          int64_t rows, int64_t cols);
/* inp/out (b, t, h, d) bf16, may alias; inv_freq (d/2) f32 device; sign +1
 * forward, -1 backward. */
cudaError_t cuk_rope(cudaStream_t s, void *out, const void *inp, int64_t b, int64_t t,
                      int64_t h, int64_t d, int64_t pos_offset, const float *inv_freq, float sign);
/* out (b, t, c) = wte[tokens] (+ wpe[pos_offset + t]); wpe may be NULL. A
 * token >= vocab writes zeros and records its flat index with atomicMin in
 * *bad_index (the caller sets it to 0xffffffff first). */
cudaError_t cuk_embedding_fwd(cudaStream_t s, void *out, const uint32_t *tokens,
                               const void *wte, const void *wpe, int64_t b, int64_t t, int64_t c,
                               int64_t vocab, int64_t pos_offset, uint32_t *bad_index);
/* dwte[token of segment i] += sum over rows[seg_start[i] .. seg_start[i+1])
 * of dout[row]: rows grouped by token (host-sorted, stable), so each dwte
 * row is written by one thread per column, in row order. */
cudaError_t cuk_embedding_bwd_wte(cudaStream_t s, float *dwte, const void *dout,
                                   const int32_t *rows, const int32_t *seg_token,
                                   const int32_t *seg_start, int64_t n_seg, int64_t c);
/* dwpe[pos_offset + t] += sum over batch entries (in order) of dout[b, t]. */
cudaError_t cuk_embedding_bwd_wpe(cudaStream_t s, float *dwpe, const void *dout, int64_t b,
                                   int64_t t, int64_t c, int64_t pos_offset);

/* ---- cuda_attention.cu ---- */
/* Largest head dim the fused kernels take (smaller dims are zero-padded to
 * 64 or 128 inside shared memory). */
#define CUDA_ATTN_MAX_HEAD_DIM 128
/* Enables the > 48 KiB dynamic shared memory the kernels need; call once per
 * device before the first attention launch. */
cudaError_t cuk_attention_init(void);
/* q (b, tq, h, d); k, v: rows 0..tk-1 of (b, tk_stride, hkv, d) buffers;
 * query row i sits at position q_off + i and sees keys 0..q_off + i.
 * out (b, tq, h, d) bf16; lse (b, h, tq) f32 or NULL. */
cudaError_t cuk_attention_fwd(cudaStream_t s, void *out, float *lse, const void *q,
                               const void *k, const void *v, int64_t b, int64_t tq, int64_t tk,
                               int64_t tk_stride, int64_t q_off, int64_t h, int64_t hkv,
                               int64_t d);
/* Square causal case. delta: (b, h, t) f32 scratch. dq, dk, dv written. */
cudaError_t cuk_attention_bwd(cudaStream_t s, void *dq, void *dk, void *dv, const void *dout,
                               const void *q, const void *k, const void *v, const void *out,
                               const float *lse, float *delta, int64_t b, int64_t t, int64_t h,
                               int64_t hkv, int64_t d);

/* ---- cuda_xent.cu ---- (logits bf16 (rows, cols), targets int32) */
/* Fused: losses (rows) f32 or NULL; row_loss (rows) double, written (0 for
 * ignored rows); dlogits bf16 or NULL (may alias logits). A target >= vocab
 * records its row in *bad_row (atomicMin; caller presets 0xffffffff). */
cudaError_t cuk_xent_fused(cudaStream_t s, float *losses, double *row_loss, void *dlogits,
                            const void *logits, const int32_t *targets, int64_t rows,
                            int64_t vocab, float grad_scale, uint32_t *bad_row);
cudaError_t cuk_xent_stats_chunk(cudaStream_t s, float *stats, const void *logits,
                                  const int32_t *targets, int64_t rows, int64_t vc, int64_t v0,
                                  bool first_chunk);
cudaError_t cuk_xent_loss(cudaStream_t s, float *losses, float *lse, double *row_loss,
                           const float *stats, const int32_t *targets, int64_t rows);
cudaError_t cuk_xent_bwd_chunk(cudaStream_t s, void *dlogits, const void *logits,
                                const float *lse, const int32_t *targets, int64_t rows,
                                int64_t vc, int64_t v0, float grad_scale);

/* ---- cuda_adamw.cu ---- */
/* One AdamW step over n f32 elements (ops_adamw_args semantics); copy (n)
 * bf16 (copy_bf16) or f32, or NULL. step_size = lr / (1 - beta1^step),
 * bc2_sqrt = sqrt(1 - beta2^step), decay = 1 - lr * weight_decay. */
cudaError_t cuk_adamw(cudaStream_t s, float *p, const float *g, float *m, float *v, void *copy,
                       bool copy_bf16, int64_t n, float beta1, float beta2, float eps,
                       float grad_scale, float step_size, float bc2_sqrt, float decay);
/* *out (device double) = sum of x^2 in double, x f32 or bf16; partials:
 * CUDA_SQNORM_BLOCKS doubles of scratch. Fixed grid: deterministic. */
#define CUDA_SQNORM_BLOCKS 1024
cudaError_t cuk_sq_norm(cudaStream_t s, const void *x, bool x_bf16, int64_t n, double *partials,
                         double *out);

/* ---- cuda_dropout.cu ---- */
/* out[i] = w(offset + i) >= threshold ? inp[i] * scale : 0 over n elements,
 * w as kernels/ops.h defines it for key `seed`; bf16 (bf16_data) or f32;
 * out may alias inp. */
cudaError_t cuk_dropout(cudaStream_t s, void *out, const void *inp, bool bf16_data, int64_t n,
                        uint64_t seed, uint64_t offset, uint32_t threshold, float scale);

#ifdef __cplusplus
}
#endif

#endif
