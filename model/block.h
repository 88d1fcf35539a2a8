/* model/block.h (internal to model/): the transformer block that training,
 * eval and KV-cache decoding share, and the named tensor views they use.
 *
 * defines: block_ctx, block_ctx_init, block_ctx_free, block_ctx_rows, act_view2, f32_view1,
 *          param_ptr, weight_view2, weight_view1, grad_view2, grad_view1,
 *          heads_view, block_carver, block_carve, block_arena_alloc, block_acts,
 *          block_acts_carve,
 *          block_kv, block_lora, block_grads, block_linear, block_linear1,
 *          block_linear_forward, block_linear_backward, block_norm_forward,
 *          block_norm_backward, block_forward, block_backward
 *
 * Block (gpt2 | llama-like: llama, mistral, qwen2, qwen3) over rows N = B*T,
 * positions pos .. pos+T-1 of each of B sequences, x (N, C) in, y (N, C) out
 * (y may be x); D = head_dim (H*D = C for gpt2, any even D otherwise):
 *   h    = LN(x) | RMSNorm(x)
 *   q,k,v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)   [biases: gpt2, qwen2]
 *   q, k = RMSNorm_D(q), RMSNorm_D(k) per head         [qwen3: q_norm, k_norm]
 *   q, k = RoPE(q), RoPE(k) at pos + t                 [llama-like; the
 *          ctx's inverse-frequency table, model_layout_rope_freq]
 *   a    = causal_attention(q, k, v)                   (GQA for llama-like)
 *          with a KV cache: k, v written to cache rows pos .. pos+T-1, then q
 *          attends cache rows 0 .. pos+T-1 (ops_attention_decode)
 *   r    = x + a Wo^T (+bo)
 *   h2   = LN(r) | RMSNorm(r)
 *   f    = gelu(h2 Wfc^T + bfc) | silu(h2 Wg^T) * (h2 Wu^T)
 *   y    = r + f Wp^T (+bp)
 * Every linear may carry a LoRA adapter (model/lora.h): y_lin += s (x A^T) B^T,
 * composed in block_linear_forward/backward; with block_ctx.lora NULL none
 * runs (decode, or a model without model_attach_lora).
 *
 * Training (model.c) keeps one block_acts per layer for the backward (or one
 * shared scratch with recomputation, since block_forward is deterministic:
 * rerunning it gives the same bits); decode (decode.c) runs one scratch
 * block_acts whose ln2 aliases ln1 and which has no lse. The op sequence is
 * the same in both, so decode's numbers are model_forward_logits' up to the
 * attention kernel (ops_attention_decode vs ops_attention_forward).
 *
 * Not here: embeddings, the final norm's callers and the LM head (model.c,
 * decode.c), the hook protocol (model.h), parameter memory.
 */
#ifndef SL_MODEL_BLOCK_H
#define SL_MODEL_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "model/lora.h"
#include "model/model.h"
#include "runtime/status.h"

typedef struct block_lora block_lora;

/* What every block op needs: the backend, the model shape, the act dtype and
 * the rows of the current call. Borrowed pointers; the owner (model or
 * decode) outlives it. */
typedef struct {
    sl_backend *be;
    const model_layout *l;
    sl_dtype act;            /* be->act_dtype: activations and parameters */
    size_t esz;              /* dtype_size(act) */
    int64_t C, F;            /* d_model, d_ff */
    int64_t H, Hkv, D;       /* n_head, n_kv_head, head_dim */
    int B, T;                /* B sequences of T positions this call */
    int64_t N;               /* rows: B * T */
    const block_lora *lora;  /* adapters; NULL = none */
    float *rope_freq;        /* (D/2) F32 backend memory, owned; NULL for gpt2 */
} block_ctx;

/* Fills c for l on be and, for a llama-like model, allocates and uploads
 * its RoPE inverse frequencies (MEM_CATEGORY_ACTIVATIONS). On error nothing
 * is held. block_ctx_free releases the table (safe on a zeroed ctx). */
sl_status block_ctx_init(block_ctx *c, const model_layout *l, sl_backend *be);
void block_ctx_free(block_ctx *c);
/* Sets the rows of the next calls (decode changes T per chunk). */
void block_ctx_rows(block_ctx *c, int B, int T);


/* ---- views ---- */

/* (rows, cols) activation in the act dtype */
static inline sl_tensor act_view2(const block_ctx *c, const void *p, int64_t rows, int64_t cols) {
    return ops_view2(c->be, c->act, p, rows, cols);
}
/* (n) fp32 statistics (norm mean/rstd, lse) */
static inline sl_tensor f32_view1(const block_ctx *c, const float *p, int64_t n) {
    return ops_view1(c->be, SL_DTYPE_F32, p, n);
}
/* parameter at element offset off of a unit's flat buffer (act dtype) */
static inline const void *param_ptr(const block_ctx *c, const void *unit, int64_t off) {
    return (const char *)unit + (size_t)off * c->esz;
}
/* weight (rows, cols) at offset off of a unit */
static inline sl_tensor weight_view2(const block_ctx *c, const void *unit, int64_t off, int64_t rows,
                                     int64_t cols) {
    return ops_view2(c->be, c->act, param_ptr(c, unit, off), rows, cols);
}
/* vector (n) at offset off of a unit; off < 0 (no such tensor) = none */
static inline sl_tensor weight_view1(const block_ctx *c, const void *unit, int64_t off, int64_t n) {
    return off < 0 ? ops_none() : ops_view1(c->be, c->act, param_ptr(c, unit, off), n);
}
/* fp32 gradient (rows, cols) at offset off of a unit's grad buffer g; g NULL
 * (frozen base: no dW) = none */
static inline sl_tensor grad_view2(const block_ctx *c, float *g, int64_t off, int64_t rows,
                                   int64_t cols) {
    return g ? ops_view2(c->be, SL_DTYPE_F32, g + off, rows, cols) : ops_none();
}
/* fp32 gradient (n); off < 0 or g NULL = none */
static inline sl_tensor grad_view1(const block_ctx *c, float *g, int64_t off, int64_t n) {
    return off < 0 || !g ? ops_none() : ops_view1(c->be, SL_DTYPE_F32, g + off, n);
}
/* (B, T, heads, head_dim) view of (N, heads * head_dim) rows */
static inline sl_tensor heads_view(const block_ctx *c, const void *p, int64_t heads) {
    return ops_view4(c->be, c->act, p, c->B, c->T, heads, c->D);
}

/* ---- activation arenas ---- */

/* Carves 64-byte aligned buffers out of base; base NULL only sizes (off is
 * then the bytes to allocate). */
typedef struct {
    char *base;
    size_t off;
} block_carver;

void *block_carve(block_carver *cv, size_t bytes);

/* Sizes an arena with carve(obj, sizing carver), allocates it on be under
 * MEM_CATEGORY_ACTIVATIONS and carves obj's buffers out of it. *bytes is set
 * even on failure (for the caller's message); *arena is NULL then. */
sl_status block_arena_alloc(sl_backend *be, void (*carve)(void *obj, block_carver *cv), void *obj,
                            char **arena, size_t *bytes);

/* One block's activations for N rows. */
typedef struct {
    void *ln1;                  /* (N, C) */
    float *ln1_mean, *ln1_rstd; /* (N) */
    void *q;                    /* (N, H*D), after q_norm and RoPE for llama-like */
    void *k, *v;                /* (N, Hkv*D) */
    void *q_raw, *k_raw;        /* qwen3: q, k before their norms; else NULL */
    float *q_rstd, *k_rstd;     /* qwen3: (N*H), (N*Hkv) norm statistics; else NULL */
    void *att;                  /* (N, H*D) attention output */
    float *lse;                 /* (B, H, T); NULL with a KV cache (not written) */
    void *res2;                 /* (N, C) residual after attention */
    void *ln2;                  /* (N, C) */
    float *ln2_mean, *ln2_rstd; /* (N) */
    void *fc;                   /* (N, F): gpt2 pre-gelu, llama gate */
    void *up;                   /* (N, F): llama up; NULL for gpt2 */
    void *act;                  /* (N, F): gelu or swiglu output */
} block_acts;

/* Carves a's buffers for N rows of elements esz bytes. for_backward: every
 * buffer distinct and lse kept (training); otherwise the inference scratch:
 * ln2 and its statistics alias ln1's (dead by then) and lse is NULL. */
void block_acts_carve(block_carver *cv, const model_layout *l, int64_t N, size_t esz,
                      bool for_backward, block_acts *a);

/* One layer's KV cache: (B, S, Hkv, D) each, act dtype. */
typedef struct {
    void *k, *v;
    int S; /* capacity in positions */
} block_kv;

/* LoRA state of a model (model_attach_lora); owned by the model. */
struct block_lora {
    const lora_spec *spec;
    void **t;                /* [layer * LORA_MOD_COUNT + mod] -> (N, r) x A^T; aliased when recompute */
    void *dt;                /* (N, r) */
    float p;                 /* dropout probability; 0 = none */
    void *xd;                /* (N, max in) dropout(x) or dropout(dt A); NULL when p = 0 */
    bool drop_on;            /* this pass applies dropout (training, p > 0) */
    model_dropout_ctx drop;  /* keys of the masks (model.h) */
};

/* Backward scratch (training only). */
typedef struct {
    void *dres;         /* (N, C) dL/d residual stream, carried across blocks */
    void *dc;           /* (N, max(C, H*D)): dL/d ln input, and dL/d attention output */
    void *dq, *dk, *dv; /* (N, H*D), (N, Hkv*D) x2 */
    void *df;           /* (N, F) */
} block_grads;

/* ---- the linear with optional adapter ---- */

/* One output of a group of linears that read the same input x (N, cols). */
typedef struct {
    void *y;         /* (N, rows): the output (forward) or its gradient (backward) */
    int64_t w, b;    /* W (rows, cols) and bias (rows) offsets in the block unit; b -1 = none */
    int64_t rows;
    lora_module mod; /* adapter site on this output, LORA_MOD_COUNT = none. Consecutive
                      * outputs with the same mod share one adapter whose B rows they
                      * split in order (gpt2's c_attn over q, k, v) */
} block_linear;

static inline block_linear block_linear1(void *y, int64_t w, int64_t b, int64_t rows, lora_module mod) {
    return (block_linear){y, w, b, rows, mod};
}

/* y_i = x W_i^T + b_i for each of the n outputs, then every adapted module
 * adds s (x' A^T) B^T to its outputs (x' = dropout(x) in training with
 * dropout, else x). p: the block unit, ap: its adapter unit (NULL without
 * adapters). */
sl_status block_linear_forward(const block_ctx *c, int layer, const void *p, const void *ap,
                               const void *x, int64_t cols, int n, const block_linear *outs);

/* Given dy_i in outs[i].y: dx (N, cols) = (acc ? dx : 0) + sum_i dy_i W_i
 * (+ each adapter's dt A), dW_i, db_i into g (NULL: frozen base, no dW),
 * dA, dB into ag. Order: the base outputs in order, then the adapters in
 * order, so the sums' rounding does not depend on which are adapted. */
sl_status block_linear_backward(const block_ctx *c, int layer, const void *p, float *g,
                                const void *ap, float *ag, const void *x, void *dx, int64_t cols,
                                int n, const block_linear *outs);

/* ---- norms ---- */

/* out (n, C) = LN(inp) | RMSNorm(inp) with the weight (and gpt2 bias) at
 * offsets w, b of unit p (b -1: none), eps = model.norm_eps; mean (gpt2 only)
 * and rstd (n) fp32. out may be inp. */
sl_status block_norm_forward(const block_ctx *c, int64_t n, void *out, float *mean, float *rstd,
                             const void *inp, const void *p, int64_t w, int64_t b);

/* dinp (n, C) (= or += when acc), dweight/dbias into g (NULL: none). */
sl_status block_norm_backward(const block_ctx *c, int64_t n, void *dinp, float *g, const void *dout,
                              const void *inp, const void *p, int64_t w, int64_t b,
                              const float *mean, const float *rstd, bool acc);

/* ---- the block ---- */

/* Block `layer` (0-based) over c's rows at positions pos .. pos+T-1: reads x,
 * writes y (may equal x) and a's buffers. kv NULL: causal attention among the
 * rows themselves (training, eval; lse kept for the backward); else the
 * layer's cache (decode). p: block unit params, ap: adapter unit (NULL
 * without adapters). */
sl_status block_forward(const block_ctx *c, int layer, const void *p, const void *ap, const void *x,
                        void *y, block_acts *a, int64_t pos, const block_kv *kv);

/* Given d->dres = dL/dy, accumulates the block's parameter grads into g
 * (NULL: frozen base, no dW) and the adapters' into ag, and leaves dL/dx in
 * d->dres. x and a as block_forward left them (pos 0, no cache). Overwrites
 * a's fc/up/act (dead after this). */
sl_status block_backward(const block_ctx *c, int layer, const void *p, float *g, const void *ap,
                         float *ag, const void *x, block_acts *a, block_grads *d);

#endif
