/* kernels/cuda/cuda_ops.h: internal declarations shared by the CUDA
 * backend's C files (not a public header; callers use kernels/ops.h).
 *
 * defines: cuda_impl, cuda_be_impl, cuda_stream, cuda_scratch,
 *          cuda_host_scratch, and the cuda_* entries of the CUDA
 *          struct kernel_ops
 *
 * Entries receive arguments already checked by kernels/ops.c (presence,
 * shapes, dtype == act dtype = BF16, aliasing) and check only what is CUDA
 * specific (head dim limits, index ranges of device-resident ids).
 *
 * Scratch. Ops that need temporary device memory (column-sum partials,
 * attention delta, per-row losses, embedding segments) take it from one
 * backend-owned buffer through cuda_scratch, which grows it on demand (after
 * synchronizing the stream, since queued kernels may still use the old one)
 * and records it under MEM_CATEGORY_WORKSPACE. An op calls cuda_scratch once
 * and carves its pieces from that block: a second call may move the buffer.
 * Host scratch (pinned, for device-to-host results) works the same way.
 */
#ifndef SL_KERNELS_CUDA_CUDA_OPS_H
#define SL_KERNELS_CUDA_CUDA_OPS_H

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_launch.h"
#include "kernels/ops.h"

#define CUDA_GEMM_CACHE 64 /* cached cuBLASLt algorithms (by shape) */

typedef struct {
    uint8_t key[64]; /* packed shape/type/alignment key; all-zero = empty */
    cublasLtMatmulAlgo_t algo;
} cuda_gemm_entry;

typedef struct {
    int sm_count;
    int cc_major, cc_minor;
    void *scratch; /* device */
    size_t scratch_bytes;
    void *host_scratch; /* pinned host */
    size_t host_scratch_bytes;
    uint32_t *flag;   /* device: first bad index (0xffffffff = none) */
    double *dsum;     /* device: one double result */
    void *host_aux;   /* pinned host: 64 bytes for flag and dsum read-backs */
    cuda_gemm_entry gemm_cache[CUDA_GEMM_CACHE];
    int gemm_next;    /* round-robin replacement index */
} cuda_impl;

static inline cuda_impl *cuda_be_impl(const sl_backend *be) { return (cuda_impl *)be->impl; }
static inline cudaStream_t cuda_stream(const sl_backend *be) { return (cudaStream_t)be->stream; }

static inline int64_t cuda_cols(sl_tensor t) { return t.shape[t.ndim - 1]; }
static inline int64_t cuda_rows(sl_tensor t) {
    return cuda_cols(t) ? tensor_numel(&t) / cuda_cols(t) : 0;
}

sl_status cuda_scratch(sl_backend *be, size_t bytes, void **out);
sl_status cuda_host_scratch(sl_backend *be, size_t bytes, void **out);

/* cuda_gemm.c */
sl_status cuda_matmul(sl_backend *be, sl_tensor c, sl_tensor a, sl_tensor b, sl_tensor bias,
                      bool trans_a, bool trans_b, float alpha, float beta);
sl_status cuda_linear_forward(sl_backend *be, sl_tensor out, sl_tensor inp, sl_tensor weight,
                              sl_tensor bias);
sl_status cuda_linear_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                               sl_tensor dbias, sl_tensor dout, sl_tensor inp, sl_tensor weight,
                               bool dinp_accumulate);

/* cuda_ops.c */
sl_status cuda_layernorm_forward(sl_backend *be, sl_tensor out, sl_tensor mean, sl_tensor rstd,
                                 sl_tensor inp, sl_tensor weight, sl_tensor bias, float eps);
sl_status cuda_layernorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                  sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                  sl_tensor weight, sl_tensor mean, sl_tensor rstd,
                                  bool dinp_accumulate);
sl_status cuda_rmsnorm_forward(sl_backend *be, sl_tensor out, sl_tensor rstd, sl_tensor inp,
                               sl_tensor weight, float eps);
sl_status cuda_rmsnorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                sl_tensor dout, sl_tensor inp, sl_tensor weight, sl_tensor rstd,
                                bool dinp_accumulate);
sl_status cuda_gelu_forward(sl_backend *be, sl_tensor out, sl_tensor inp);
sl_status cuda_gelu_backward(sl_backend *be, sl_tensor dinp, sl_tensor inp, sl_tensor dout);
sl_status cuda_swiglu_forward(sl_backend *be, sl_tensor out, sl_tensor gate, sl_tensor up);
sl_status cuda_swiglu_backward(sl_backend *be, sl_tensor dgate, sl_tensor dup, sl_tensor dout,
                               sl_tensor gate, sl_tensor up);
sl_status cuda_rope_forward(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                            sl_tensor inv_freq);
sl_status cuda_rope_backward(sl_backend *be, sl_tensor dinp, sl_tensor dout, int64_t pos_offset,
                             sl_tensor inv_freq);
sl_status cuda_attention_forward(sl_backend *be, sl_tensor out, sl_tensor lse, sl_tensor q,
                                 sl_tensor k, sl_tensor v);
sl_status cuda_attention_backward(sl_backend *be, sl_tensor dq, sl_tensor dk, sl_tensor dv,
                                  sl_tensor dout, sl_tensor q, sl_tensor k, sl_tensor v,
                                  sl_tensor out, sl_tensor lse);
sl_status cuda_attention_decode(sl_backend *be, sl_tensor out, sl_tensor q, sl_tensor k_cache,
                                sl_tensor v_cache, int64_t kv_len);
sl_status cuda_kv_cache_append(sl_backend *be, sl_tensor cache, sl_tensor src, int64_t pos);
sl_status cuda_embedding_forward(sl_backend *be, sl_tensor out, sl_tensor tokens, sl_tensor wte,
                                 sl_tensor wpe, int64_t pos_offset);
sl_status cuda_embedding_backward(sl_backend *be, sl_tensor dwte, sl_tensor dwpe, sl_tensor dout,
                                  sl_tensor tokens, int64_t pos_offset);
sl_status cuda_cross_entropy(sl_backend *be, sl_tensor losses, sl_tensor dlogits,
                             sl_tensor logits, sl_tensor targets, float grad_scale,
                             double *loss_sum, int64_t *n_valid);
sl_status cuda_xent_stats_chunk(sl_backend *be, sl_tensor stats, sl_tensor logits_chunk,
                                sl_tensor targets, int64_t vocab_offset, bool first_chunk);
sl_status cuda_xent_loss(sl_backend *be, sl_tensor losses, sl_tensor lse, sl_tensor stats,
                         sl_tensor targets, double *loss_sum, int64_t *n_valid);
sl_status cuda_xent_backward_chunk(sl_backend *be, sl_tensor dlogits_chunk,
                                   sl_tensor logits_chunk, sl_tensor lse, sl_tensor targets,
                                   int64_t vocab_offset, float grad_scale);
sl_status cuda_adamw(sl_backend *be, sl_tensor param, sl_tensor grad, sl_tensor m, sl_tensor v,
                     sl_tensor param_copy, const ops_adamw_args *args);
sl_status cuda_cast(sl_backend *be, sl_tensor dst, sl_tensor src);
sl_status cuda_sq_norm(sl_backend *be, sl_tensor x, double *out);
sl_status cuda_scale(sl_backend *be, sl_tensor x, float s);
sl_status cuda_add(sl_backend *be, sl_tensor out, sl_tensor a, sl_tensor b);
sl_status cuda_dropout(sl_backend *be, sl_tensor out, sl_tensor inp, float p, uint64_t seed,
                       uint64_t offset);

#endif
