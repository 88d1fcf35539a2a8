/* kernels/ops.h: the backend-neutral op API (DESIGN section 4).
 *
 * defines: sl_backend, sl_backend_kind, struct kernel_ops,
 *          backend_create_cpu, backend_create_cuda, backend_destroy,
 *          backend_alloc, backend_free, backend_memcpy, backend_memset_zero,
 *          backend_synchronize, ops_view1..ops_view4, ops_none,
 *          and one ops_* entry per op (forward and backward):
 *          matmul, linear, layernorm, rmsnorm, gelu, swiglu, rope, attention
 *          (+ KV-cache decode and append), embedding, cross-entropy (fused
 *          and vocab-chunked), adamw, cast, sq_norm, scale, add, dropout
 *          (+ ops_dropout_threshold, ops_dropout_scale; for the backends'
 *          loss sums: ops_xent_sum_losses).
 *
 * Does not: own model memory (callers own every buffer; tensors are views),
 * know about layers, FSDP units or communication, or pick a backend for the
 * caller (launcher/ does, from the config).
 *
 * How a call flows. ops_foo(be, ...) checks ranks, shapes, dtypes and
 * aliasing rules that hold for every backend (SL_ERR_INVALID naming the op
 * and the tensor), then calls be->ops->foo. A backend checks only what is
 * specific to it (the CPU backend accepts F32 for every float tensor and
 * returns SL_ERR_UNSUPPORTED otherwise). Callers never test be->kind.
 *
 * Tensors. Every buffer argument is an sl_tensor view (runtime/tensor.h)
 * passed by value; an optional argument is "absent" when its data is NULL
 * (ops_none()). Views are contiguous row-major. Shapes below are the logical
 * shapes; where an op says "(R, C)" any ndim is accepted whose last dim is C,
 * and R is the product of the leading dims (so (B, T, C) is (B*T, C)).
 *   - "act" = be->act_dtype: the storage dtype of activations, their
 *     gradients and the gathered compute-dtype parameters. CPU: F32.
 *     CUDA: BF16.
 *   - Saved statistics (layernorm mean/rstd, rmsnorm rstd, attention lse,
 *     cross-entropy stats and losses), the AdamW state and the fp32 master
 *     params are always F32.
 *   - Parameter gradients (dweight, dbias of every op) are F32 on every
 *     backend and are ACCUMULATED into (+=): the owner zeroes them at step
 *     start, micro-batches and tied weights add up.
 *   - Token ids are U32, targets I32 (target < 0: ignore this position).
 *
 * Reductions and grad_scale. Losses are SUMS over non-ignored positions; the
 * backward of the loss is d(loss_sum * grad_scale). With grad_scale = 1 / (the
 * number of non-ignored targets in the whole optimizer step, all ranks and
 * micro-batches) the gradients SUM across micro-batches and ranks to the
 * gradient of the mean loss, whatever the world size.
 *
 * Numerics (every backend): accumulation in fp32 or wider; softmax subtracts
 * the row max; attention saves the log-sum-exp per query row and recomputes
 * probabilities in backward; layernorm statistics are two-pass; squared norms
 * accumulate in double.
 *
 * CUDA backend expectations (kernels/cuda fills the same table):
 *   - Storage: act tensors in BF16, arithmetic in fp32 (cuBLASLt with
 *     CUBLAS_COMPUTE_32F; elementwise kernels load bf16, compute fp32, store
 *     bf16 with round-to-nearest-even). Parameter grads, statistics, optimizer
 *     state and master weights are F32 (matmul writes F32 output for dweight
 *     with beta = 1 from BF16 inputs).
 *   - Ordering: every op is enqueued on be->stream and returns without
 *     waiting; buffers must stay valid until the stream reaches that point.
 *     Ops that return host scalars (ops_cross_entropy loss sums, ops_xent_loss,
 *     ops_sq_norm) synchronize be->stream before returning. Other streams
 *     (the FSDP comm stream) order themselves against be->stream with events.
 *   - Determinism: results are bitwise reproducible run to run on the same
 *     device and shapes (no atomics whose order changes the sum for
 *     embedding, bias or attention dK/dV gradients).
 *   - Errors: launch errors are checked after each launch (SL_ERR_CUDA).
 * CPU backend: fp32, GEMMs through OpenBLAS cblas_sgemm, OpenMP elsewhere with
 * be->n_threads threads; every op is synchronous. CPU results are the
 * reference the CUDA backend is tested against (relative error by norm).
 *
 * Thread safety: one backend is used by one compute thread at a time. The
 * CPU backend's ops do not use any mutable global state of their own.
 */
#ifndef SL_KERNELS_OPS_H
#define SL_KERNELS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/mem.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

typedef enum {
    SL_BACKEND_CPU = 0,
    SL_BACKEND_CUDA,
} sl_backend_kind;

struct kernel_ops;

/* A compute backend. Created by backend_create_*, freed by backend_destroy.
 * Fields are read-only to callers. */
typedef struct sl_backend {
    sl_backend_kind kind;
    sl_device device;              /* SL_DEVICE_CPU or SL_DEVICE_CUDA */
    sl_dtype act_dtype;            /* F32 (CPU) or BF16 (CUDA); see "act" above */
    int n_threads;                 /* CPU: OpenMP/OpenBLAS threads; CUDA: 1 */
    int device_ordinal;            /* CUDA device index; -1 on CPU */
    const struct kernel_ops *ops;  /* the backend's table (static, not owned) */
    mem_accountant *acct;          /* where backend_alloc records; may be NULL; not owned */
    void *stream;                  /* cudaStream_t (owned by the backend); NULL on CPU */
    void *blas_handle;             /* cublasLtHandle_t (owned); NULL on CPU */
    void *workspace;               /* cuBLASLt workspace on the device (owned); NULL on CPU */
    size_t workspace_bytes;
    void *impl;                    /* backend-private state (owned) */
} sl_backend;

/* Which way backend_memcpy copies. HOST = ordinary host memory. */
typedef enum {
    BACKEND_COPY_H2D = 0,
    BACKEND_COPY_D2H,
    BACKEND_COPY_D2D,
} backend_copy_kind;

/* AdamW hyper-parameters for one call (PyTorch torch.optim.AdamW semantics,
 * decoupled weight decay):
 *   p -= lr * weight_decay * p
 *   g  = grad * grad_scale
 *   m  = beta1 m + (1 - beta1) g
 *   v  = beta2 v + (1 - beta2) g^2
 *   p -= lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)  */
typedef struct {
    float lr;
    float beta1, beta2;
    float eps;
    float weight_decay;   /* 0 for no-decay segments (norms, biases) */
    float grad_scale;     /* e.g. the clipping factor; 1 = unchanged */
    int64_t step;         /* 1-based step for bias correction */
} ops_adamw_args;

/* Number of F32 values per row in the cross-entropy running statistics:
 * [0] running max of the logits, [1] sum of exp(logit - running max),
 * [2] the target's logit (0 for ignored rows until seen). */
#define OPS_XENT_STATS 3

/* The table each backend fills. Entries receive arguments already checked by
 * the ops_* wrappers below (same names, same argument meaning); call the
 * wrappers, not the table. Every entry is non-NULL in a complete backend. */
struct kernel_ops {
    const char *name; /* "cpu", "cuda" */

    /* memory and ordering */
    sl_status (*alloc)(sl_backend *be, mem_category cat, size_t bytes, void **out);
    void (*free)(sl_backend *be, mem_category cat, void *ptr, size_t bytes);
    sl_status (*memcpy)(sl_backend *be, void *dst, const void *src, size_t bytes,
                        backend_copy_kind kind);
    sl_status (*memset_zero)(sl_backend *be, void *dst, size_t bytes);
    sl_status (*synchronize)(sl_backend *be);
    void (*destroy)(sl_backend *be);

    /* GEMM and linear layers */
    sl_status (*matmul)(sl_backend *be, sl_tensor c, sl_tensor a, sl_tensor b, sl_tensor bias,
                        bool trans_a, bool trans_b, float alpha, float beta);
    sl_status (*linear_forward)(sl_backend *be, sl_tensor out, sl_tensor inp, sl_tensor weight,
                                sl_tensor bias);
    sl_status (*linear_backward)(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                 sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                 sl_tensor weight, bool dinp_accumulate);

    /* normalization */
    sl_status (*layernorm_forward)(sl_backend *be, sl_tensor out, sl_tensor mean, sl_tensor rstd,
                                   sl_tensor inp, sl_tensor weight, sl_tensor bias, float eps);
    sl_status (*layernorm_backward)(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                    sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                    sl_tensor weight, sl_tensor mean, sl_tensor rstd,
                                    bool dinp_accumulate);
    sl_status (*rmsnorm_forward)(sl_backend *be, sl_tensor out, sl_tensor rstd, sl_tensor inp,
                                 sl_tensor weight, float eps);
    sl_status (*rmsnorm_backward)(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                  sl_tensor dout, sl_tensor inp, sl_tensor weight,
                                  sl_tensor rstd, bool dinp_accumulate);

    /* activations */
    sl_status (*gelu_forward)(sl_backend *be, sl_tensor out, sl_tensor inp);
    sl_status (*gelu_backward)(sl_backend *be, sl_tensor dinp, sl_tensor inp, sl_tensor dout);
    sl_status (*swiglu_forward)(sl_backend *be, sl_tensor out, sl_tensor gate, sl_tensor up);
    sl_status (*swiglu_backward)(sl_backend *be, sl_tensor dgate, sl_tensor dup, sl_tensor dout,
                                 sl_tensor gate, sl_tensor up);

    /* rotary embedding */
    sl_status (*rope_forward)(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                              sl_tensor inv_freq);
    sl_status (*rope_backward)(sl_backend *be, sl_tensor dinp, sl_tensor dout, int64_t pos_offset,
                               sl_tensor inv_freq);

    /* attention */
    sl_status (*attention_forward)(sl_backend *be, sl_tensor out, sl_tensor lse, sl_tensor q,
                                   sl_tensor k, sl_tensor v);
    sl_status (*attention_backward)(sl_backend *be, sl_tensor dq, sl_tensor dk, sl_tensor dv,
                                    sl_tensor dout, sl_tensor q, sl_tensor k, sl_tensor v,
                                    sl_tensor out, sl_tensor lse);
    sl_status (*attention_decode)(sl_backend *be, sl_tensor out, sl_tensor q, sl_tensor k_cache,
                                  sl_tensor v_cache, int64_t kv_len);
    sl_status (*kv_cache_append)(sl_backend *be, sl_tensor cache, sl_tensor src, int64_t pos);

    /* embeddings */
    sl_status (*embedding_forward)(sl_backend *be, sl_tensor out, sl_tensor tokens, sl_tensor wte,
                                   sl_tensor wpe, int64_t pos_offset);
    sl_status (*embedding_backward)(sl_backend *be, sl_tensor dwte, sl_tensor dwpe,
                                    sl_tensor dout, sl_tensor tokens, int64_t pos_offset);

    /* cross-entropy */
    sl_status (*cross_entropy)(sl_backend *be, sl_tensor losses, sl_tensor dlogits,
                               sl_tensor logits, sl_tensor targets, float grad_scale,
                               double *loss_sum, int64_t *n_valid);
    sl_status (*xent_stats_chunk)(sl_backend *be, sl_tensor stats, sl_tensor logits_chunk,
                                  sl_tensor targets, int64_t vocab_offset, bool first_chunk);
    sl_status (*xent_loss)(sl_backend *be, sl_tensor losses, sl_tensor lse, sl_tensor stats,
                           sl_tensor targets, double *loss_sum, int64_t *n_valid);
    sl_status (*xent_backward_chunk)(sl_backend *be, sl_tensor dlogits_chunk,
                                     sl_tensor logits_chunk, sl_tensor lse, sl_tensor targets,
                                     int64_t vocab_offset, float grad_scale);

    /* optimizer and reductions */
    sl_status (*adamw)(sl_backend *be, sl_tensor param, sl_tensor grad, sl_tensor m, sl_tensor v,
                       sl_tensor param_copy, const ops_adamw_args *args);
    sl_status (*cast)(sl_backend *be, sl_tensor dst, sl_tensor src);
    sl_status (*sq_norm)(sl_backend *be, sl_tensor x, double *out);
    sl_status (*scale)(sl_backend *be, sl_tensor x, float s);
    sl_status (*add)(sl_backend *be, sl_tensor out, sl_tensor a, sl_tensor b);
    sl_status (*dropout)(sl_backend *be, sl_tensor out, sl_tensor inp, float p, uint64_t seed,
                         uint64_t offset);
};

/* ------------------------------------------------------------------------ */
/* Backends */

/* CPU backend with n_threads OpenMP/OpenBLAS threads (n_threads <= 0: the
 * OpenMP default, i.e. OMP_NUM_THREADS or the core count). Sets OpenBLAS's
 * (process-wide) thread count to n_threads. acct (may be NULL, not owned,
 * must outlive the backend) receives backend_alloc's records. On error *out
 * is NULL and nothing is allocated. */
sl_status backend_create_cpu(int n_threads, mem_accountant *acct, sl_backend **out);

/* CUDA backend on device `device_ordinal` with its own compute stream, a
 * cuBLASLt handle and a workspace of workspace_bytes (0: 32 MiB). In a build
 * without CUDA this returns SL_ERR_UNSUPPORTED with a message saying so. */
sl_status backend_create_cuda(int device_ordinal, size_t workspace_bytes, mem_accountant *acct,
                              sl_backend **out);

/* Synchronizes and frees everything the backend owns. NULL is a no-op. */
void backend_destroy(sl_backend *be);

/* Backend memory (host memory on CPU, device memory on CUDA), zero-filled,
 * 64-byte aligned at least, recorded under cat in be->acct. On error *out is
 * NULL. Free with backend_free with the same cat and bytes. */
sl_status backend_alloc(sl_backend *be, mem_category cat, size_t bytes, void **out);
void backend_free(sl_backend *be, mem_category cat, void *ptr, size_t bytes);
/* Copies on be->stream. CUDA: D2D is asynchronous; D2H returns when dst
 * holds the data (it synchronizes the stream); H2D from ordinary (pageable)
 * host memory returns once CUDA has copied src to its staging memory, so src
 * may be reused or freed at once (CUDA's documented cudaMemcpyAsync
 * behaviour for pageable memory; callers never pass pinned memory). */
sl_status backend_memcpy(sl_backend *be, void *dst, const void *src, size_t bytes,
                         backend_copy_kind kind);
sl_status backend_memset_zero(sl_backend *be, void *dst, size_t bytes);
/* Waits until every op enqueued on the backend has finished (CPU: no-op). */
sl_status backend_synchronize(sl_backend *be);

/* ------------------------------------------------------------------------ */
/* Views. The data pointer may be const in the caller; the op documents which
 * tensors it writes. */

static inline sl_tensor ops_none(void) {
    sl_tensor t;
    memset(&t, 0, sizeof t);
    return t;
}

static inline sl_tensor ops_view4(const sl_backend *be, sl_dtype dt, const void *data, int64_t d0,
                                  int64_t d1, int64_t d2, int64_t d3) {
    sl_tensor t;
    t.data = (void *)(uintptr_t)data;
    t.dtype = dt;
    t.ndim = 4;
    t.shape[0] = d0;
    t.shape[1] = d1;
    t.shape[2] = d2;
    t.shape[3] = d3;
    t.dev = be->device;
    return t;
}

static inline sl_tensor ops_view3(const sl_backend *be, sl_dtype dt, const void *data, int64_t d0,
                                  int64_t d1, int64_t d2) {
    sl_tensor t = ops_view4(be, dt, data, d0, d1, d2, 1);
    t.ndim = 3;
    return t;
}

static inline sl_tensor ops_view2(const sl_backend *be, sl_dtype dt, const void *data, int64_t d0,
                                  int64_t d1) {
    sl_tensor t = ops_view4(be, dt, data, d0, d1, 1, 1);
    t.ndim = 2;
    return t;
}

static inline sl_tensor ops_view1(const sl_backend *be, sl_dtype dt, const void *data, int64_t d0) {
    sl_tensor t = ops_view4(be, dt, data, d0, 1, 1, 1);
    t.ndim = 1;
    return t;
}

/* ------------------------------------------------------------------------ */
/* GEMM and linear layers.
 *
 * ops_matmul: C = alpha * op(A) op(B) + beta * C (+ bias broadcast over rows).
 *   op(A) is (M, K): A is (M, K), or (K, M) when trans_a.
 *   op(B) is (K, N): B is (K, N), or (N, K) when trans_b.
 *   C (M, N), written; bias (N) or absent. Matrices are 2-D (R, cols) views
 *   in the sense above. beta = 0 overwrites C (its old content is never
 *   read, NaNs included); beta = 1 accumulates (gradient accumulation).
 *   dtypes: A, B act; C act or F32 (F32 + beta = 1 for weight gradients).
 *   bias act or F32. C must not overlap A or B. */
sl_status ops_matmul(sl_backend *be, sl_tensor c, sl_tensor a, sl_tensor b, sl_tensor bias,
                     bool trans_a, bool trans_b, float alpha, float beta);

/* ops_linear_forward: out = inp weight^T + bias (nn.Linear; weight is
 *   (out_features, in_features) for GPT-2 and Llama alike, GPT-2's Conv1D
 *   weights being transposed at import).
 *   out (R, N) act, written; inp (R, K) act; weight (N, K) act; bias (N) or absent. */
sl_status ops_linear_forward(sl_backend *be, sl_tensor out, sl_tensor inp, sl_tensor weight,
                             sl_tensor bias);

/* ops_linear_backward, given dout (R, N) act:
 *   dinp (R, K) act   = dout weight          (+= when dinp_accumulate; absent: skipped)
 *   dweight (N, K) F32 += dout^T inp         (absent: skipped, e.g. frozen LoRA base)
 *   dbias (N) F32      += sum over rows of dout (absent: skipped)
 *   inp (R, K) act, weight (N, K) act. */
sl_status ops_linear_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight, sl_tensor dbias,
                              sl_tensor dout, sl_tensor inp, sl_tensor weight,
                              bool dinp_accumulate);

/* ------------------------------------------------------------------------ */
/* Normalization over the last dim C, rows R.
 *
 * ops_layernorm_forward: out = (inp - mean) * rstd * weight + bias,
 *   mean = sum(x)/C, var = sum((x - mean)^2)/C (biased), rstd = 1/sqrt(var + eps).
 *   out (R, C) act, written; mean (R) F32, rstd (R) F32, written (saved for
 *   backward); inp (R, C) act; weight (C), bias (C) act. out may alias inp. */
sl_status ops_layernorm_forward(sl_backend *be, sl_tensor out, sl_tensor mean, sl_tensor rstd,
                                sl_tensor inp, sl_tensor weight, sl_tensor bias, float eps);

/* ops_layernorm_backward: with xhat = (inp - mean) * rstd, g = dout * weight:
 *   dinp (R, C) act  = rstd * (g - mean_C(g) - xhat * mean_C(g * xhat))
 *                      (+= when dinp_accumulate, e.g. into the residual grad)
 *   dweight (C) F32 += sum_rows(dout * xhat);  dbias (C) F32 += sum_rows(dout)
 *   dweight/dbias may be absent (frozen). dinp must not alias dout or inp. */
sl_status ops_layernorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                                 sl_tensor dbias, sl_tensor dout, sl_tensor inp,
                                 sl_tensor weight, sl_tensor mean, sl_tensor rstd,
                                 bool dinp_accumulate);

/* ops_rmsnorm_forward (Llama): out = inp * rstd * weight,
 *   rstd = 1/sqrt(sum(x^2)/C + eps). out (R, C) act, written; rstd (R) F32,
 *   written; inp (R, C) act; weight (C) act. out may alias inp. */
sl_status ops_rmsnorm_forward(sl_backend *be, sl_tensor out, sl_tensor rstd, sl_tensor inp,
                              sl_tensor weight, float eps);

/* ops_rmsnorm_backward: with xhat = inp * rstd, g = dout * weight:
 *   dinp (R, C) act  = rstd * (g - xhat * mean_C(g * xhat))  (+= when dinp_accumulate)
 *   dweight (C) F32 += sum_rows(dout * xhat)  (may be absent)
 *   dinp must not alias dout or inp. */
sl_status ops_rmsnorm_backward(sl_backend *be, sl_tensor dinp, sl_tensor dweight,
                               sl_tensor dout, sl_tensor inp, sl_tensor weight, sl_tensor rstd,
                               bool dinp_accumulate);

/* ------------------------------------------------------------------------ */
/* Elementwise activations (any shape; all tensors the same numel, act).
 *
 * ops_gelu_forward: out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *   (GPT-2's "gelu_new" / PyTorch gelu(approximate="tanh")). out may alias inp.
 * ops_gelu_backward: dinp = dout * gelu'(inp), written. dinp may alias dout. */
sl_status ops_gelu_forward(sl_backend *be, sl_tensor out, sl_tensor inp);
sl_status ops_gelu_backward(sl_backend *be, sl_tensor dinp, sl_tensor inp, sl_tensor dout);

/* ops_swiglu_forward (Llama MLP): out = silu(gate) * up, silu(x) = x sigmoid(x).
 *   out, gate, up (R, F) act. out may alias gate or up.
 * ops_swiglu_backward: dgate = dout * up * silu'(gate), dup = dout * silu(gate),
 *   both written. dgate may alias gate and dup may alias up (in place);
 *   neither may alias dout. */
sl_status ops_swiglu_forward(sl_backend *be, sl_tensor out, sl_tensor gate, sl_tensor up);
sl_status ops_swiglu_backward(sl_backend *be, sl_tensor dgate, sl_tensor dup, sl_tensor dout,
                              sl_tensor gate, sl_tensor up);

/* ------------------------------------------------------------------------ */
/* Rotary position embedding, Hugging Face rotate_half pairing: element i of a
 * head is paired with element i + D/2 (not interleaved pairs). For position
 * p = pos_offset + t and i < D/2, with angle = p * inv_freq[i] (one fp32
 * product, as transformers computes it):
 *   out[i]       = x[i] cos(angle) - x[i + D/2] sin(angle)
 *   out[i + D/2] = x[i + D/2] cos(angle) + x[i] sin(angle)
 * inv_freq (D/2) F32 in backend memory: the inverse frequencies, e.g.
 * 1 / theta^(2i/D), or a scaled table (model_layout_rope_freq: linear,
 * llama3); the op takes the table, not theta, so that every scaling runs the
 * same kernel. inp/out (B, T, H, D) act, D even; out may alias inp (in
 * place). H may be n_head (q) or n_kv_head (k). pos_offset >= 0 (KV-cache
 * decoding). ops_rope_backward applies the inverse rotation: dinp = R^T dout
 * (written; may alias dout). */
sl_status ops_rope_forward(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                           sl_tensor inv_freq);
sl_status ops_rope_backward(sl_backend *be, sl_tensor dinp, sl_tensor dout, int64_t pos_offset,
                            sl_tensor inv_freq);

/* ------------------------------------------------------------------------ */
/* Causal self-attention with grouped-query heads.
 *   q (B, T, H, D), k and v (B, T, Hkv, D), H a multiple of Hkv; query head h
 *   uses kv head h / (H / Hkv) (Hugging Face repeat_kv order). These are the
 *   natural (B*T, H*D) outputs of the q/k/v projections: no transposes needed.
 *   scale = 1/sqrt(D); query t attends keys 0..t.
 * ops_attention_forward: out (B, T, H, D) act, written;
 *   lse (B, H, T) F32, written: log(sum_j exp(scale q.k_j)) per query row,
 *   saved for backward (absent: not saved, inference). out must not alias q,k,v.
 * ops_attention_backward, given dout (B, T, H, D) act, and q, k, v, out, lse
 *   of the forward: dq (B, T, H, D), dk, dv (B, T, Hkv, D) act, all written
 *   (dk/dv sum over the H/Hkv query heads of each group). */
sl_status ops_attention_forward(sl_backend *be, sl_tensor out, sl_tensor lse, sl_tensor q,
                                sl_tensor k, sl_tensor v);
sl_status ops_attention_backward(sl_backend *be, sl_tensor dq, sl_tensor dk, sl_tensor dv,
                                 sl_tensor dout, sl_tensor q, sl_tensor k, sl_tensor v,
                                 sl_tensor out, sl_tensor lse);

/* KV-cache decoding (no backward). k_cache, v_cache (B, S, Hkv, D) act hold
 * positions 0..kv_len-1 in their first kv_len rows of each batch entry.
 * q (B, Tq, H, D) are the queries of positions kv_len-Tq .. kv_len-1 (their
 * keys already appended), 1 <= Tq <= kv_len <= S. out (B, Tq, H, D) act.
 * ops_kv_cache_append copies src (B, Tn, Hkv, D) into rows pos .. pos+Tn-1
 * of cache (B, S, Hkv, D); pos + Tn <= S. */
sl_status ops_attention_decode(sl_backend *be, sl_tensor out, sl_tensor q, sl_tensor k_cache,
                               sl_tensor v_cache, int64_t kv_len);
sl_status ops_kv_cache_append(sl_backend *be, sl_tensor cache, sl_tensor src, int64_t pos);

/* ------------------------------------------------------------------------ */
/* Embeddings.
 * ops_embedding_forward: out[b,t] = wte[tokens[b,t]] (+ wpe[pos_offset + t]).
 *   out (B, T, C) act, written; tokens (B, T) U32, each < V (checked:
 *   SL_ERR_INVALID naming the position); wte (V, C) act; wpe (P, C) act or
 *   absent (Llama), pos_offset + T <= P.
 * ops_embedding_backward: dwte (V, C) F32 += scatter-add of dout rows by token;
 *   dwpe (P, C) F32 += sum over b of dout[b, t] at row pos_offset + t (absent:
 *   skipped); dout (B, T, C) act. Deterministic (no atomics). */
sl_status ops_embedding_forward(sl_backend *be, sl_tensor out, sl_tensor tokens, sl_tensor wte,
                                sl_tensor wpe, int64_t pos_offset);
sl_status ops_embedding_backward(sl_backend *be, sl_tensor dwte, sl_tensor dwpe, sl_tensor dout,
                                 sl_tensor tokens, int64_t pos_offset);

/* ------------------------------------------------------------------------ */
/* Softmax cross-entropy with ignore index (target < 0), summed.
 *
 * Fused form, when the full logits (R, V) exist:
 * ops_cross_entropy: for each row r with targets[r] >= 0:
 *   losses[r] = logsumexp(logits[r]) - logits[r, targets[r]], and
 *   dlogits[r] = grad_scale * (softmax(logits[r]) - onehot(targets[r]));
 *   ignored rows get losses[r] = 0 and dlogits[r] = 0.
 *   *loss_sum = sum of losses (double), *n_valid = number of rows with a target.
 *   losses (R) F32 or absent; dlogits (R, V) act or absent (forward only),
 *   may alias logits (in place); targets (R) I32, each < V (checked). */
sl_status ops_cross_entropy(sl_backend *be, sl_tensor losses, sl_tensor dlogits, sl_tensor logits,
                            sl_tensor targets, float grad_scale, double *loss_sum,
                            int64_t *n_valid);

/* Vocab-chunked form, when only a chunk of columns [v0, v0 + Vc) of the logits
 * exists at a time (e.g. logits_chunk = x W[v0:v0+Vc]^T):
 *   1. for every chunk: ops_xent_stats_chunk(stats, logits_chunk, targets, v0,
 *      first_chunk = (v0 == 0)) updates the online max / sum-exp and picks
 *      the target logit; stats (R, OPS_XENT_STATS) F32; logits_chunk (R, Vc) act.
 *   2. ops_xent_loss(losses, lse, stats, targets, &loss_sum, &n_valid):
 *      lse (R) F32 written; losses (R) F32 written or absent; same sums as
 *      ops_cross_entropy.
 *   3. for every chunk (recomputed logits): ops_xent_backward_chunk(
 *      dlogits_chunk, logits_chunk, lse, targets, v0, grad_scale) writes
 *      grad_scale * (exp(logit - lse) - onehot) for the chunk's columns (0 for
 *      ignored rows); dlogits_chunk may alias logits_chunk.
 * Targets must be < the full vocab size; the caller checks that (the chunked
 * ops do not know V). */
sl_status ops_xent_stats_chunk(sl_backend *be, sl_tensor stats, sl_tensor logits_chunk,
                               sl_tensor targets, int64_t vocab_offset, bool first_chunk);
sl_status ops_xent_loss(sl_backend *be, sl_tensor losses, sl_tensor lse, sl_tensor stats,
                        sl_tensor targets, double *loss_sum, int64_t *n_valid);
sl_status ops_xent_backward_chunk(sl_backend *be, sl_tensor dlogits_chunk, sl_tensor logits_chunk,
                                  sl_tensor lse, sl_tensor targets, int64_t vocab_offset,
                                  float grad_scale);

/* For the backends (host memory): *sum = the row losses of rows with
 * target >= 0, added in row order (so the sum does not depend on how the
 * rows were split); *n_valid = how many there are. */
void ops_xent_sum_losses(const double *row_loss, const int32_t *targets, int64_t rows,
                         double *sum, int64_t *n_valid);

/* ------------------------------------------------------------------------ */
/* Optimizer, casts, reductions, elementwise helpers.
 *
 * ops_adamw: one AdamW step (formula at ops_adamw_args) over a flat range:
 *   param, grad, m, v (n) F32 (param is the fp32 master; m, v updated in
 *   place); param_copy (n) act or absent: receives the updated param in the
 *   compute dtype (CUDA: the bf16 shard; CPU: absent or an F32 copy).
 *   Weight decay per segment: call once per decay/no-decay range. */
sl_status ops_adamw(sl_backend *be, sl_tensor param, sl_tensor grad, sl_tensor m, sl_tensor v,
                    sl_tensor param_copy, const ops_adamw_args *args);

/* ops_cast: dst = src converted (F32 <-> BF16 round-to-nearest-even, or a
 * copy when the dtypes are equal); same numel. F16 is not supported. */
sl_status ops_cast(sl_backend *be, sl_tensor dst, sl_tensor src);

/* ops_sq_norm: *out = sum of x^2 accumulated in double (x F32 or act). */
sl_status ops_sq_norm(sl_backend *be, sl_tensor x, double *out);

/* ops_scale: x *= s in place (x F32 or act). */
sl_status ops_scale(sl_backend *be, sl_tensor x, float s);

/* ops_add: out = a + b (residual connections); same numel, act; out may alias
 * a or b. */
sl_status ops_add(sl_backend *be, sl_tensor out, sl_tensor a, sl_tensor b);

/* ------------------------------------------------------------------------ */
/* Dropout with a counter-based mask (inverted scaling, as torch.nn.Dropout in
 * training):
 *   out[i] = keep(j) ? inp[i] * scale : 0,   j = offset + i (flat index),
 *   keep(j) = w(j) >= ops_dropout_threshold(p),  scale = ops_dropout_scale(p),
 *   w(j) = word (j mod 4) of philox4x32_10(counter {lo32(j/4), hi32(j/4), 0,
 *          RNG_PURPOSE_DROPOUT}, key {lo32(seed), hi32(seed)})
 * (runtime/rng.h: rng_block(rng_stream_make(seed, RNG_PURPOSE_DROPOUT, 0),
 * j/4).v[j % 4]). So P(keep) = 1 - p to within 2^-32, and the mask is a pure
 * function of (seed, j): the same on every backend, thread count and split
 * of a tensor into calls (call k of a split passes offset + its first
 * index). There is no mask tensor: the backward of a dropout is the same call
 * on dout with the same (p, seed, offset), dinp = ops_dropout(dout).
 *   out, inp: the same numel, act; out may alias inp (in place).
 *   0 <= p < 1; p = 0 copies inp exactly (scale 1). On CUDA the product is
 *   computed in fp32 and rounded once to bf16. */
sl_status ops_dropout(sl_backend *be, sl_tensor out, sl_tensor inp, float p, uint64_t seed,
                      uint64_t offset);

/* round(p * 2^32) clamped to 2^32 - 1: element j is kept iff w(j) >= it. */
static inline uint32_t ops_dropout_threshold(float p) {
    double t = (double)p * 4294967296.0 + 0.5;
    if (t <= 0.0)
        return 0;
    return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}

/* 1 / (1 - p) computed in double, rounded once to float. */
static inline float ops_dropout_scale(float p) { return (float)(1.0 / (1.0 - (double)p)); }

#endif
