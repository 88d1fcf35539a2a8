/* kernels/cuda/cuda_ops.c: the CUDA backend's op entries other than GEMMs:
 * they unpack the checked sl_tensor views, pick scratch, launch the kernels
 * of kernels/cuda/cuda_launch.h and check every launch.
 *
 * Host synchronization happens only where ops.h says a host value is
 * returned (cross-entropy loss sums, sq_norm) and where an id that lives on
 * the device must be validated or grouped: embedding forward reads back one
 * "first bad token" word, embedding backward copies the token ids to the
 * host to group rows by token (a stable sort by (token, row); deterministic
 * sums without atomics, see cuda_elementwise.cu). Both are once per step.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.h"

#define NO_BAD 0xffffffffu

/* ------------------------------------------------------------------------ */
/* normalization */

static sl_status norm_param_grads(sl_backend *be, cuda_colsum_mode mode, sl_tensor dweight,
                                  sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                  const float *mean, const float *rstd) {
    if (!dweight.data && !dbias.data)
        return SL_OK;
    int64_t rows = cuda_rows(inp), c = cuda_cols(inp);
    if (rows == 0)
        return SL_OK;
    int splits = cuk_colsum_splits(rows, c, cuda_be_impl(be)->sm_count);
    void *part = NULL;
    SL_TRY(cuda_scratch(be, (size_t)2 * (size_t)splits * (size_t)c * sizeof(float), &part));
    SL_CHECK_LAUNCH(cuk_colsum(cuda_stream(be), mode, (float *)dweight.data, (float *)dbias.data,
                                dout.data, inp.data, mean, rstd, rows, c, (float *)part, splits));
    return SL_OK;
}

sl_status cuda_layernorm_forward(sl_backend *be, sl_tensor out, sl_tensor mean, sl_tensor rstd,
                                 sl_tensor inp, sl_tensor weight, sl_tensor bias, float eps) {
    SL_CHECK_LAUNCH(cuk_layernorm_fwd(cuda_stream(be), out.data, (float *)mean.data,
                                       (float *)rstd.data, inp.data, weight.data, bias.data,
                                       cuda_rows(inp), cuda_cols(inp), eps));
    return SL_OK;
}

sl_status cuda_layernorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                  sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                  sl_tensor weight, sl_tensor mean, sl_tensor rstd,
                                  bool dinp_accumulate) {
    SL_CHECK_LAUNCH(cuk_layernorm_bwd_dinp(cuda_stream(be), dinp.data, dout.data, inp.data,
                                            weight.data, (const float *)mean.data,
                                            (const float *)rstd.data, cuda_rows(inp),
                                            cuda_cols(inp), dinp_accumulate));
    return norm_param_grads(be, CUDA_COLSUM_LAYERNORM, dweight, dbias, dout, inp,
                            (const float *)mean.data, (const float *)rstd.data);
}

sl_status cuda_rmsnorm_forward(sl_backend *be, sl_tensor out, sl_tensor rstd, sl_tensor inp,
                               sl_tensor weight, float eps) {
    SL_CHECK_LAUNCH(cuk_rmsnorm_fwd(cuda_stream(be), out.data, (float *)rstd.data, inp.data,
                                     weight.data, cuda_rows(inp), cuda_cols(inp), eps));
    return SL_OK;
}

sl_status cuda_rmsnorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                sl_tensor dout, sl_tensor inp, sl_tensor weight, sl_tensor rstd,
                                bool dinp_accumulate) {
    SL_CHECK_LAUNCH(cuk_rmsnorm_bwd_dinp(cuda_stream(be), dinp.data, dout.data, inp.data,
                                          weight.data, (const float *)rstd.data, cuda_rows(inp),
                                          cuda_cols(inp), dinp_accumulate));
    return norm_param_grads(be, CUDA_COLSUM_RMSNORM, dweight, ops_none(), dout, inp, NULL,
                            (const float *)rstd.data);
}

/* ------------------------------------------------------------------------ */
/* activations, rope */

sl_status cuda_gelu_forward(sl_backend *be, sl_tensor out, sl_tensor inp) {
    SL_CHECK_LAUNCH(cuk_gelu_fwd(cuda_stream(be), out.data, inp.data, tensor_numel(&inp)));
    return SL_OK;
}

sl_status cuda_gelu_backward(sl_backend *be, sl_tensor dinp, sl_tensor inp, sl_tensor dout) {
    SL_CHECK_LAUNCH(cuk_gelu_bwd(cuda_stream(be), dinp.data, inp.data, dout.data,
                                  tensor_numel(&inp)));
    return SL_OK;
}

sl_status cuda_swiglu_forward(sl_backend *be, sl_tensor out, sl_tensor gate, sl_tensor up) {
    SL_CHECK_LAUNCH(cuk_swiglu_fwd(cuda_stream(be), out.data, gate.data, up.data,
                                    tensor_numel(&gate)));
    return SL_OK;
}

sl_status cuda_swiglu_backward(sl_backend *be, sl_tensor dgate, sl_tensor dup, sl_tensor dout,
                               sl_tensor gate, sl_tensor up) {
    SL_CHECK_LAUNCH(cuk_swiglu_bwd(cuda_stream(be), dgate.data, dup.data, dout.data, gate.data,
                                    up.data, tensor_numel(&gate)));
    return SL_OK;
}

sl_status cuda_rope_forward(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                            sl_tensor inv_freq) {
    SL_CHECK_LAUNCH(cuk_rope(cuda_stream(be), out.data, inp.data, inp.shape[0], inp.shape[1],
                              inp.shape[2], inp.shape[3], pos_offset, (const float *)inv_freq.data,
                              1.0f));
    return SL_OK;
}

sl_status cuda_rope_backward(sl_backend *be, sl_tensor dinp, sl_tensor dout, int64_t pos_offset,
                             sl_tensor inv_freq) {
    SL_CHECK_LAUNCH(cuk_rope(cuda_stream(be), dinp.data, dout.data, dout.shape[0],
                              dout.shape[1], dout.shape[2], dout.shape[3], pos_offset,
                              (const float *)inv_freq.data, -1.0f));
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* attention */

static sl_status check_head_dim(const char *op, int64_t d) {
    if (d > CUDA_ATTN_MAX_HEAD_DIM)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s (cuda): head dim %" PRId64 " is above the %d the fused attention "
                         "kernels support; use a model with head_dim <= %d or the CPU backend",
                         op, d, CUDA_ATTN_MAX_HEAD_DIM, CUDA_ATTN_MAX_HEAD_DIM);
    return SL_OK;
}

sl_status cuda_attention_forward(sl_backend *be, sl_tensor out, sl_tensor lse, sl_tensor q,
                                 sl_tensor k, sl_tensor v) {
    int64_t b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3];
    SL_TRY(check_head_dim("ops_attention_forward", d));
    if (b * t == 0)
        return SL_OK;
    SL_CHECK_LAUNCH(cuk_attention_fwd(cuda_stream(be), out.data, (float *)lse.data, q.data,
                                       k.data, v.data, b, t, t, t, 0, h, k.shape[2], d));
    return SL_OK;
}

sl_status cuda_attention_backward(sl_backend *be, sl_tensor dq, sl_tensor dk, sl_tensor dv,
                                  sl_tensor dout, sl_tensor q, sl_tensor k, sl_tensor v,
                                  sl_tensor out, sl_tensor lse) {
    int64_t b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3];
    SL_TRY(check_head_dim("ops_attention_backward", d));
    if (b * t == 0)
        return SL_OK;
    void *delta = NULL;
    SL_TRY(cuda_scratch(be, (size_t)(b * h * t) * sizeof(float), &delta));
    SL_CHECK_LAUNCH(cuk_attention_bwd(cuda_stream(be), dq.data, dk.data, dv.data, dout.data,
                                       q.data, k.data, v.data, out.data,
                                       (const float *)lse.data, (float *)delta, b, t, h,
                                       k.shape[2], d));
    return SL_OK;
}

sl_status cuda_attention_decode(sl_backend *be, sl_tensor out, sl_tensor q, sl_tensor k_cache,
                                sl_tensor v_cache, int64_t kv_len) {
    int64_t b = q.shape[0], tq = q.shape[1], h = q.shape[2], d = q.shape[3];
    SL_TRY(check_head_dim("ops_attention_decode", d));
    SL_CHECK_LAUNCH(cuk_attention_fwd(cuda_stream(be), out.data, NULL, q.data, k_cache.data,
                                       v_cache.data, b, tq, kv_len, k_cache.shape[1],
                                       kv_len - tq, h, k_cache.shape[2], d));
    return SL_OK;
}

sl_status cuda_kv_cache_append(sl_backend *be, sl_tensor cache, sl_tensor src, int64_t pos) {
    int64_t b = cache.shape[0], s = cache.shape[1], tn = src.shape[1];
    size_t row = (size_t)(cache.shape[2] * cache.shape[3]) * sizeof(uint16_t);
    if (b == 0 || tn == 0 || row == 0)
        return SL_OK;
    /* one strided 2-D copy: b rows of tn * row bytes, destination pitch s * row */
    SL_CHECK_CUDA(cudaMemcpy2DAsync((char *)cache.data + (size_t)pos * row, (size_t)s * row,
                                    src.data, (size_t)tn * row, (size_t)tn * row, (size_t)b,
                                    cudaMemcpyDeviceToDevice, cuda_stream(be)));
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* embeddings */

/* Reads back *flag; on a recorded bad index copies the offending id (4
 * bytes at ids + index) and returns its index and value. */
static sl_status read_flag(sl_backend *be, const void *ids, uint32_t *bad, int32_t *value) {
    cuda_impl *im = cuda_be_impl(be);
    cudaStream_t s = cuda_stream(be);
    SL_CHECK_CUDA(cudaMemcpyAsync(im->host_aux, im->flag, 4, cudaMemcpyDeviceToHost, s));
    SL_CHECK_CUDA(cudaStreamSynchronize(s));
    memcpy(bad, im->host_aux, 4);
    *value = 0;
    if (*bad != NO_BAD) {
        SL_CHECK_CUDA(cudaMemcpyAsync(im->host_aux, (const char *)ids + (size_t)*bad * 4, 4,
                                      cudaMemcpyDeviceToHost, s));
        SL_CHECK_CUDA(cudaStreamSynchronize(s));
        memcpy(value, im->host_aux, 4);
    }
    return SL_OK;
}

sl_status cuda_embedding_forward(sl_backend *be, sl_tensor out, sl_tensor tokens, sl_tensor wte,
                                 sl_tensor wpe, int64_t pos_offset) {
    int64_t b = out.shape[0], t = out.shape[1], c = out.shape[2], vocab = wte.shape[0];
    if (b * t == 0)
        return SL_OK;
    cuda_impl *im = cuda_be_impl(be);
    SL_CHECK_CUDA(cudaMemsetAsync(im->flag, 0xff, 4, cuda_stream(be)));
    SL_CHECK_LAUNCH(cuk_embedding_fwd(cuda_stream(be), out.data, (const uint32_t *)tokens.data,
                                       wte.data, wpe.data, b, t, c, vocab, pos_offset, im->flag));
    uint32_t bad;
    int32_t val;
    SL_TRY(read_flag(be, tokens.data, &bad, &val));
    if (bad != NO_BAD)
        return sl_errorf(SL_ERR_INVALID,
                         "ops_embedding_forward: token id %" PRIu32 " at (b %" PRId64 ", t %" PRId64
                         ") is >= vocab_size %" PRId64 "; the data does not match the model's "
                         "vocabulary",
                         (uint32_t)val, (int64_t)bad / t, (int64_t)bad % t, vocab);
    return SL_OK;
}

typedef struct {
    uint32_t token;
    int32_t row;
} tok_row;

static int tok_row_cmp(const void *pa, const void *pb) {
    const tok_row *a = pa, *b = pb;
    if (a->token != b->token)
        return a->token < b->token ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row); /* stable: row order within a token */
}

static sl_status embedding_bwd_wte(sl_backend *be, sl_tensor dwte, sl_tensor dout,
                                   sl_tensor tokens) {
    int64_t b = dout.shape[0], t = dout.shape[1], c = dout.shape[2], vocab = dwte.shape[0];
    int64_t n = b * t;
    SL_CHECK_ARG(n < INT32_MAX / 2, "ops_embedding_backward (cuda): %" PRId64 " tokens exceed "
                 "the 2^30 this op groups at once", n);
    cudaStream_t s = cuda_stream(be);
    /* host: ids (n u32) | pairs (n tok_row) | rows (n) | seg_token (n) | seg_start (n + 1) */
    size_t host_bytes = (size_t)n * (4 + sizeof(tok_row) + 4 + 4 + 4) + 4;
    void *hs = NULL;
    SL_TRY(cuda_host_scratch(be, host_bytes, &hs));
    uint32_t *ids = hs;
    tok_row *pairs = (tok_row *)(ids + n);
    int32_t *rows = (int32_t *)(pairs + n);
    int32_t *seg_token = rows + n, *seg_start = seg_token + n;
    SL_CHECK_CUDA(cudaMemcpyAsync(ids, tokens.data, (size_t)n * 4, cudaMemcpyDeviceToHost, s));
    SL_CHECK_CUDA(cudaStreamSynchronize(s));
    for (int64_t i = 0; i < n; i++) {
        if ((int64_t)ids[i] >= vocab)
            return sl_errorf(SL_ERR_INVALID,
                             "ops_embedding_backward: token id %" PRIu32 " at (b %" PRId64
                             ", t %" PRId64 ") is >= vocab_size %" PRId64,
                             ids[i], i / t, i % t, vocab);
        pairs[i].token = ids[i];
        pairs[i].row = (int32_t)i;
    }
    qsort(pairs, (size_t)n, sizeof *pairs, tok_row_cmp);
    int64_t n_seg = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || pairs[i].token != pairs[i - 1].token) {
            seg_token[n_seg] = (int32_t)pairs[i].token;
            seg_start[n_seg] = (int32_t)i;
            n_seg++;
        }
        rows[i] = pairs[i].row;
    }
    seg_start[n_seg] = (int32_t)n;
    /* device: rows (n) | seg_token (n_seg) | seg_start (n_seg + 1) */
    void *ds = NULL;
    SL_TRY(cuda_scratch(be, (size_t)(n + 2 * n_seg + 1) * 4, &ds));
    int32_t *d_rows = ds, *d_tok = d_rows + n, *d_start = d_tok + n_seg;
    SL_CHECK_CUDA(cudaMemcpyAsync(d_rows, rows, (size_t)n * 4, cudaMemcpyHostToDevice, s));
    SL_CHECK_CUDA(cudaMemcpyAsync(d_tok, seg_token, (size_t)n_seg * 4, cudaMemcpyHostToDevice, s));
    SL_CHECK_CUDA(cudaMemcpyAsync(d_start, seg_start, (size_t)(n_seg + 1) * 4,
                                  cudaMemcpyHostToDevice, s));
    /* the host scratch stays untouched until the next op that synchronizes first */
    SL_CHECK_LAUNCH(cuk_embedding_bwd_wte(s, (float *)dwte.data, dout.data, d_rows, d_tok,
                                           d_start, n_seg, c));
    return SL_OK;
}

sl_status cuda_embedding_backward(sl_backend *be, sl_tensor dwte, sl_tensor dwpe, sl_tensor dout,
                                  sl_tensor tokens, int64_t pos_offset) {
    int64_t b = dout.shape[0], t = dout.shape[1], c = dout.shape[2];
    if (b * t == 0)
        return SL_OK;
    if (dwte.data)
        SL_TRY(embedding_bwd_wte(be, dwte, dout, tokens));
    if (dwpe.data)
        SL_CHECK_LAUNCH(cuk_embedding_bwd_wpe(cuda_stream(be), (float *)dwpe.data, dout.data, b,
                                               t, c, pos_offset));
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* cross-entropy */

/* Copies per-row losses and targets back and sums in row order (the CPU
 * backend's order). */
static sl_status sum_row_losses(sl_backend *be, const double *d_row_loss,
                                const int32_t *d_targets, int64_t rows, double *loss_sum,
                                int64_t *n_valid) {
    cudaStream_t s = cuda_stream(be);
    void *hs = NULL;
    SL_TRY(cuda_host_scratch(be, (size_t)rows * (sizeof(double) + 4), &hs));
    double *rl = hs;
    int32_t *tg = (int32_t *)(rl + rows);
    SL_CHECK_CUDA(cudaMemcpyAsync(rl, d_row_loss, (size_t)rows * sizeof(double),
                                  cudaMemcpyDeviceToHost, s));
    SL_CHECK_CUDA(cudaMemcpyAsync(tg, d_targets, (size_t)rows * 4, cudaMemcpyDeviceToHost, s));
    SL_CHECK_CUDA(cudaStreamSynchronize(s));
    ops_xent_sum_losses(rl, tg, rows, loss_sum, n_valid);
    return SL_OK;
}

sl_status cuda_cross_entropy(sl_backend *be, sl_tensor losses, sl_tensor dlogits,
                             sl_tensor logits, sl_tensor targets, float grad_scale,
                             double *loss_sum, int64_t *n_valid) {
    int64_t rows = cuda_rows(logits), vocab = cuda_cols(logits);
    *loss_sum = 0.0;
    *n_valid = 0;
    if (rows == 0)
        return SL_OK;
    cuda_impl *im = cuda_be_impl(be);
    void *rl = NULL;
    SL_TRY(cuda_scratch(be, (size_t)rows * sizeof(double), &rl));
    SL_CHECK_CUDA(cudaMemsetAsync(im->flag, 0xff, 4, cuda_stream(be)));
    SL_CHECK_LAUNCH(cuk_xent_fused(cuda_stream(be), (float *)losses.data, (double *)rl,
                                    dlogits.data, logits.data, (const int32_t *)targets.data,
                                    rows, vocab, grad_scale, im->flag));
    uint32_t bad;
    int32_t val;
    SL_TRY(read_flag(be, targets.data, &bad, &val));
    if (bad != NO_BAD)
        return sl_errorf(SL_ERR_INVALID,
                         "ops_cross_entropy: target %" PRId32 " at row %" PRIu32
                         " is >= vocab_size %" PRId64
                         " (use a negative target to ignore a position)",
                         val, bad, vocab);
    return sum_row_losses(be, (const double *)rl, (const int32_t *)targets.data, rows, loss_sum,
                          n_valid);
}

sl_status cuda_xent_stats_chunk(sl_backend *be, sl_tensor stats, sl_tensor logits_chunk,
                                sl_tensor targets, int64_t vocab_offset, bool first_chunk) {
    SL_CHECK_LAUNCH(cuk_xent_stats_chunk(cuda_stream(be), (float *)stats.data,
                                          logits_chunk.data, (const int32_t *)targets.data,
                                          cuda_rows(logits_chunk), cuda_cols(logits_chunk),
                                          vocab_offset, first_chunk));
    return SL_OK;
}

sl_status cuda_xent_loss(sl_backend *be, sl_tensor losses, sl_tensor lse, sl_tensor stats,
                         sl_tensor targets, double *loss_sum, int64_t *n_valid) {
    int64_t rows = tensor_numel(&stats) / OPS_XENT_STATS;
    *loss_sum = 0.0;
    *n_valid = 0;
    if (rows == 0)
        return SL_OK;
    void *rl = NULL;
    SL_TRY(cuda_scratch(be, (size_t)rows * sizeof(double), &rl));
    SL_CHECK_LAUNCH(cuk_xent_loss(cuda_stream(be), (float *)losses.data, (float *)lse.data,
                                   (double *)rl, (const float *)stats.data,
                                   (const int32_t *)targets.data, rows));
    return sum_row_losses(be, (const double *)rl, (const int32_t *)targets.data, rows, loss_sum,
                          n_valid);
}

sl_status cuda_xent_backward_chunk(sl_backend *be, sl_tensor dlogits_chunk,
                                   sl_tensor logits_chunk, sl_tensor lse, sl_tensor targets,
                                   int64_t vocab_offset, float grad_scale) {
    SL_CHECK_LAUNCH(cuk_xent_bwd_chunk(cuda_stream(be), dlogits_chunk.data, logits_chunk.data,
                                        (const float *)lse.data, (const int32_t *)targets.data,
                                        cuda_rows(logits_chunk), cuda_cols(logits_chunk),
                                        vocab_offset, grad_scale));
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* optimizer, casts, reductions */

sl_status cuda_adamw(sl_backend *be, sl_tensor param, sl_tensor grad, sl_tensor m, sl_tensor v,
                     sl_tensor param_copy, const ops_adamw_args *a) {
    /* bias corrections in double on the host, as the CPU backend does */
    double bc1 = 1.0 - pow((double)a->beta1, (double)a->step);
    double bc2 = 1.0 - pow((double)a->beta2, (double)a->step);
    float step_size = (float)((double)a->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - a->lr * a->weight_decay;
    SL_CHECK_LAUNCH(cuk_adamw(cuda_stream(be), (float *)param.data, (const float *)grad.data,
                               (float *)m.data, (float *)v.data, param_copy.data,
                               param_copy.data && param_copy.dtype == SL_DTYPE_BF16,
                               tensor_numel(&param), a->beta1, a->beta2, a->eps, a->grad_scale,
                               step_size, bc2_sqrt, decay));
    return SL_OK;
}

sl_status cuda_cast(sl_backend *be, sl_tensor dst, sl_tensor src) {
    int64_t n = tensor_numel(&src);
    if (dst.dtype == src.dtype) {
        if (n > 0)
            SL_CHECK_CUDA(cudaMemcpyAsync(dst.data, src.data, (size_t)n * dtype_size(src.dtype),
                                          cudaMemcpyDeviceToDevice, cuda_stream(be)));
        return SL_OK;
    }
    SL_CHECK_LAUNCH(cuk_cast(cuda_stream(be), dst.data, dst.dtype == SL_DTYPE_BF16, src.data,
                              src.dtype == SL_DTYPE_BF16, n));
    return SL_OK;
}

sl_status cuda_sq_norm(sl_backend *be, sl_tensor x, double *out) {
    cuda_impl *im = cuda_be_impl(be);
    cudaStream_t s = cuda_stream(be);
    void *part = NULL;
    SL_TRY(cuda_scratch(be, CUDA_SQNORM_BLOCKS * sizeof(double), &part));
    SL_CHECK_LAUNCH(cuk_sq_norm(s, x.data, x.dtype == SL_DTYPE_BF16, tensor_numel(&x),
                                 (double *)part, im->dsum));
    SL_CHECK_CUDA(cudaMemcpyAsync(im->host_aux, im->dsum, sizeof(double), cudaMemcpyDeviceToHost,
                                  s));
    SL_CHECK_CUDA(cudaStreamSynchronize(s));
    memcpy(out, im->host_aux, sizeof(double));
    return SL_OK;
}

sl_status cuda_scale(sl_backend *be, sl_tensor x, float s) {
    SL_CHECK_LAUNCH(cuk_scale(cuda_stream(be), x.data, x.dtype == SL_DTYPE_BF16, tensor_numel(&x),
                               s));
    return SL_OK;
}

sl_status cuda_add(sl_backend *be, sl_tensor out, sl_tensor a, sl_tensor b) {
    SL_CHECK_LAUNCH(cuk_add_bf16(cuda_stream(be), out.data, a.data, b.data, tensor_numel(&a)));
    return SL_OK;
}

sl_status cuda_dropout(sl_backend *be, sl_tensor out, sl_tensor inp, float p, uint64_t seed,
                       uint64_t offset) {
    SL_CHECK_LAUNCH(cuk_dropout(cuda_stream(be), out.data, inp.data, inp.dtype == SL_DTYPE_BF16,
                                tensor_numel(&inp), seed, offset, ops_dropout_threshold(p),
                                ops_dropout_scale(p)));
    return SL_OK;
}
