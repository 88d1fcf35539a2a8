/* model/model.h: GPT-2 and Llama forward and backward, one FSDP unit at a time.
 *
 * defines: model_phase, model_unit_hooks, model, model_create, model_destroy,
 *          model_forward_backward, model_forward_loss, model_forward_logits,
 *          model_activation_bytes, model_act_bytes, model_activation_plan,
 *          model_attach_lora, model_dropout_ctx,
 *          model_set_dropout_ctx, model_row_grad_fn, model_forward_rows,
 *          model_forward_backward_rows, model_local, model_local_init, model_local_init_typed
 *
 * A model owns its activation buffers, sized for (micro_batch B, seq_len T)
 * and allocated on the backend under MEM_CATEGORY_ACTIVATIONS; it owns no
 * parameters or gradients. Parameters arrive one unit at a time through
 * model_unit_hooks (FSDP gathers them; model_local_hooks serves one
 * contiguous buffer), so that a unit can be freed as soon as it is used.
 *
 * Hook protocol for one model_forward_backward call (L = n_layer):
 *   forward:  for u = 0 .. L+1: prefetch(u+1, FORWARD) (u+1 <= L+1), acquire(u,
 *             FORWARD), compute u, release(u, FORWARD) -- except unit 0 with
 *             tied embeddings, which stays acquired through the head's forward
 *             and backward and the embedding backward, and unit L+1, which
 *             stays acquired into the backward (its forward and backward are
 *             one computation: the chunked head needs both).
 *   backward: unit L+1 first (it is already acquired; released with phase
 *             BACKWARD), then for u = L .. 1: prefetch(u-1, BACKWARD) (u-1 >= 1),
 *             acquire(u, BACKWARD), grad_buffer(u), compute, grads_ready(u),
 *             release(u, BACKWARD); finally unit 0: grad_buffer(0), embedding
 *             backward, grads_ready(0), and with tied embeddings release(0,
 *             BACKWARD). (The embedding backward reads no parameters, so an
 *             untied unit 0 is not acquired again.)
 *   grads_ready(u) is called exactly once per unit per call, unit 0 last.
 *   grad_buffer(0) may be asked for during unit L+1's backward (tied head).
 * Parameters and grad buffers are backend memory (host on CPU, device on
 * CUDA), each the unit's full flat buffer (layout.h). Parameters are in the
 * backend's act dtype (be->act_dtype: F32 on CPU, BF16 on CUDA; element
 * offsets of the layout scale by its size); gradient buffers are F32 on
 * every backend (kernels/ops.h). The model reads device memory on the host
 * only through backend_memcpy.
 *
 * Losses are sums over non-ignored targets (target < 0 = ignore); the
 * backward computes d(loss_sum * grad_scale) and ACCUMULATES into the grad
 * buffers (kernels/ops.h, "Reductions and grad_scale").
 *
 * Activation recomputation (recompute = true): only each block's input is
 * kept during forward; backward reruns the block's forward into one shared
 * scratch before its backward. Results are bitwise identical either way.
 *
 * The LM head and cross-entropy run in vocab chunks when B*T*V floats would
 * exceed MODEL_LOGITS_BUDGET (the chunk's logits are recomputed in
 * backward); otherwise the full logits are kept and the fused op is used.
 *
 * On error the call returns at once: units it acquired are not released and
 * the grad buffers hold a partial sum; the caller discards the step.
 *
 * LoRA (model_attach_lora, model/lora.h): every targeted block linear adds
 * s (x A^T) B^T to its output. The adapters come through their own hook set,
 * hooks->adapter, over the adapter layout's units (same numbering; units 0
 * and L+1 are empty). When it is present the base is FROZEN: the base hooks'
 * grad_buffer and grads_ready are never called, no weight-gradient GEMM runs
 * for base linears, norms, head or embeddings (the embedding backward is
 * skipped); the adapter hooks follow the protocol above for units 1..L
 * (prefetch/acquire/release around each block's forward and backward,
 * grad_buffer before its backward) and get grads_ready for every unit L+1 ..
 * 0, in that order, unit 0 last. Without an attached spec, hooks->adapter
 * must be NULL, and the pass is exactly the one without LoRA.
 *
 * LoRA dropout (lora.dropout > 0; semantics and mask keys in model/lora.h)
 * runs in model_forward_backward only: model_forward_loss and
 * model_forward_logits never drop. Each model_forward_backward call needs
 * model_set_dropout_ctx first (the step and the global sample index key the
 * masks; the call consumes it). Masks are recomputed in backward, so
 * recomputation and the plain path stay bitwise equal.
 *
 * Not here: KV-cache decoding (model/decode.h, which runs no adapters: merge
 * them first), dropout anywhere but on LoRA adapter inputs.
 * One model is used by one thread at a time.
 */
#ifndef SL_MODEL_MODEL_H
#define SL_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "model/lora.h"
#include "runtime/status.h"

#define MODEL_LOGITS_BUDGET ((int64_t)64 << 20) /* floats of logits held at once */

typedef enum { MODEL_PHASE_FORWARD = 0, MODEL_PHASE_BACKWARD } model_phase;

typedef struct model_unit_hooks {
    void *ctx;
    /* Hint that unit will be acquired next (start an async gather). May be NULL. */
    sl_status (*prefetch)(void *ctx, int unit, int phase);
    /* Full params of unit in be->act_dtype (backend memory), valid until
     * release(unit). */
    sl_status (*acquire)(void *ctx, int unit, int phase, const void **params);
    sl_status (*release)(void *ctx, int unit, int phase);
    /* Full-size fp32 gradient buffer of unit to accumulate into (+=). */
    sl_status (*grad_buffer)(void *ctx, int unit, float **grads);
    /* All of this call's contributions to unit's grads are in. */
    sl_status (*grads_ready)(void *ctx, int unit);
    /* LoRA adapter units (see above); NULL = no adapters, base trainable. */
    const struct model_unit_hooks *adapter;
} model_unit_hooks;

typedef struct model model;

/* Allocates activations for (micro_batch, seq_len) on be (recorded in
 * be->acct). layout and be are borrowed and must outlive the model.
 * seq_len <= layout max_seq_len. On error *out is NULL. */
sl_status model_create(const model_layout *layout, sl_backend *be, int micro_batch, int seq_len,
                       bool recompute, model **out);
void model_destroy(model *m); /* NULL is a no-op */

/* Activation bytes model_create (and model_attach_lora) allocated: the
 * arena, the RoPE table and the adapter arena. */
int64_t model_activation_bytes(const model *m);

/* What model_create (+ model_attach_lora with lora, when not NULL) would
 * allocate under MEM_CATEGORY_ACTIVATIONS for act dtype act, computed by the
 * same sizing pass without allocating (train/plan.h's memory model). */
typedef struct {
    int64_t total;     /* arena + rope + lora: the activation bytes of the model */
    int64_t arena;     /* model_create's arena */
    int64_t rope;      /* the RoPE inverse-frequency table (llama-like archs; 0 for gpt2) */
    int64_t logits;    /* of it: the head's logits chunk and cross-entropy scratch */
    int64_t per_block; /* of it: one block's saved activations (L of them, 1 with recompute) */
    int64_t lora;      /* model_attach_lora's adapter arena (0 without lora) */
    int64_t vchunk;    /* vocabulary columns of logits held at once */
} model_act_bytes;
sl_status model_activation_plan(const model_layout *layout, const lora_spec *lora, sl_dtype act,
                                int micro_batch, int seq_len, bool recompute, model_act_bytes *out);

/* Runs the model with the adapters of spec (built on this model's layout;
 * borrowed, must outlive the model): allocates their activations ((B*T, r)
 * per adapted module per block, one block's worth with recompute; with
 * dropout one more (B*T, widest adapted input) scratch). At most once per
 * model. */
sl_status model_attach_lora(model *m, const lora_spec *spec);

/* Keys of the LoRA dropout masks of one model_forward_backward call. */
typedef struct {
    uint64_t seed;        /* train.seed */
    int64_t step;         /* the optimizer step being computed, 1-based */
    int64_t first_sample; /* index in the step's global batch (data/loader.h order) of
                           * this micro-batch's row 0; row b is first_sample + b */
} model_dropout_ctx;

/* Sets the keys for the next model_forward_backward (which consumes them).
 * Required before each call when the attached spec has dropout > 0, ignored
 * otherwise. Errors: step < 1 or first_sample < 0. */
sl_status model_set_dropout_ctx(model *m, const model_dropout_ctx *ctx);

/* One micro-step: forward, loss, backward. inputs (B*T) host token ids, each
 * < vocab_size; targets (B*T) host, < vocab_size or < 0 (ignored); errors
 * name the offending position. *loss_sum = sum of per-token losses (double),
 * *n_valid = number of non-ignored targets. */
sl_status model_forward_backward(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                                 const int32_t *targets, float grad_scale, double *loss_sum,
                                 int64_t *n_valid);

/* Forward and loss only (eval): same sums, no grads, hooks' grad entries unused. */
sl_status model_forward_loss(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                             const int32_t *targets, double *loss_sum, int64_t *n_valid);

/* Forward only; logits_host (B*T*V floats, host memory) receives the logits. */
sl_status model_forward_logits(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                               float *logits_host);

/* ---- row passes: sequence-level objectives (DPO, reward models) ----
 *
 * Row b of a micro-batch is the sequence inputs[b*T, (b+1)*T) with its
 * targets. Its value is the row's log-likelihood, the sum over its
 * non-ignored targets of log p(target) = minus its cross-entropy sum
 * (double; per-token fp32 losses added in position order), and row_valid[b]
 * how many targets count. An objective of the B row values (the DPO loss of
 * the pairs a micro-batch holds, say) gets its gradient through fn, called
 * once per model_forward_backward_rows between the forward and the
 * backward: fn fills row_grad[b] = d(objective) / d(row_value[b]) for the
 * row values it is given (scaled as the caller wants its gradient: the
 * backward accumulates d(objective) into the grad buffers, so a mean over
 * the global batch folds 1/(its size) into row_grad). Everything else is the
 * protocol of model_forward_backward (hooks, LoRA, dropout context).
 *
 * Forward-only calls (model_forward_rows, model_forward_loss,
 * model_forward_logits) whose hooks carry no adapter hooks run the base
 * model alone when LoRA is attached: the adapters switched off, which is
 * DPO's reference model of a LoRA run (no second copy of the weights).
 * Row passes always use the vocab-chunked cross-entropy (the fused one has
 * no per-row gradient scale); results equal the plain pass's up to
 * summation order.
 *
 * Reward models (layout with model.head = score, layout.h): the row value is
 * the scalar score r_b = score . lnf[b, pos_b] (double), pos_b the row's
 * last real token: the last position j with targets[b*T + j] >= 0, plus one
 * (its target is the input token there: a pair row's response end marker),
 * clamped to T - 1; row_valid[b] = 1, or 0 with value 0 and no gradient for
 * a row without a valid target. This equals transformers'
 * *ForSequenceClassification (the score at the rightmost input !=
 * pad_token_id) whenever the padding after a row is pad_token_id and the
 * row's last real token is not. The head runs as host arithmetic over
 * backend_memcpy (B x C), on every backend. model_forward_backward,
 * model_forward_loss and model_forward_logits refuse a score model (no LM
 * head), and so does model_attach_lora (not implemented: the new head would
 * have to train beside the adapters, PEFT's modules_to_save). */
typedef sl_status (*model_row_grad_fn)(void *ctx, int rows, const double *row_value,
                                       const int64_t *row_valid, double *row_grad);

/* Forward only: row_value[B], row_valid[B]. */
sl_status model_forward_rows(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                             const int32_t *targets, double *row_value, int64_t *row_valid);
/* Forward, fn, backward (see above); row_value and row_valid are filled too. */
sl_status model_forward_backward_rows(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                                      const int32_t *targets, model_row_grad_fn fn, void *ctx,
                                      double *row_value, int64_t *row_valid);

/* ---- local hooks: one process, every unit in one contiguous buffer ---- */

/* params and grads are backend buffers of layout->total_numel elements, unit
 * u at element offset layout->units[u].offset. params are of param_dtype
 * (which must be the model's be->act_dtype), grads F32; grads may be NULL
 * for forward-only use. */
typedef struct {
    const model_layout *layout;
    const void *params;      /* not owned */
    sl_dtype param_dtype;
    float *grads;            /* not owned; NULL = no backward */
} model_local;

/* Fills lh and hooks (hooks->ctx = lh) for F32 params (the CPU backend).
 * Nothing to free: lh and hooks live as long as the caller keeps them. */
sl_status model_local_init(model_local *lh, const model_layout *layout, float *params, float *grads,
                           model_unit_hooks *hooks);
/* The same for params of dtype param_dtype (e.g. BF16 device memory for the
 * CUDA backend). */
sl_status model_local_init_typed(model_local *lh, const model_layout *layout, sl_dtype param_dtype,
                                 const void *params, float *grads, model_unit_hooks *hooks);

#endif
