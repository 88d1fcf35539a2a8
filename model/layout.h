/* model/layout.h: the parameter table and FSDP units of a GPT-2 or llama-like
 * (llama, mistral, qwen2, qwen3) model.
 *
 * defines: model_param, model_unit, model_block_offsets, model_final_offsets,
 *          model_layout, model_layout_create, model_layout_destroy,
 *          model_layout_append_param, model_layout_place_units,
 *          model_layout_find, model_layout_find_hf, model_init_unit_range,
 *          model_layout_decay_segments, model_decay_segment,
 *          model_layout_param_count, model_layout_flops_per_token,
 *          model_layout_rope_freq
 *
 * Units (DESIGN section 5): unit 0 = embeddings (wte; wpe for gpt2), units
 * 1..L = blocks, unit L+1 = final norm (+ LM head when untied; a tied head
 * reuses unit 0's wte). Each unit is one flat fp32 buffer; a parameter is a
 * contiguous [offset, offset + numel) range of it, row-major in shardlm's
 * orientation: every linear weight is (out_features, in_features) like
 * nn.Linear. GPT-2's Hugging Face Conv1D weights are (in, out) and are
 * transposed by model/hf (hf_transposed says which). Parameters are packed
 * without padding, in the order listed in model_layout_create's comment;
 * every block unit has the same internal offsets (model_block_offsets).
 *
 * Parameter names. shardlm names: "embed.wte", "embed.wpe",
 * "blocks.<l>.{ln1,ln2}.{weight,bias}", gpt2 "blocks.<l>.attn.qkv.{weight,bias}",
 * llama-like "blocks.<l>.attn.{q,k,v}.weight" (qwen2 also ".bias"), qwen3
 * "blocks.<l>.attn.{q,k}_norm.weight", "blocks.<l>.attn.out.{weight,bias}",
 * gpt2 "blocks.<l>.mlp.{fc,proj}.{weight,bias}", llama
 * "blocks.<l>.mlp.{gate,up,down}.weight", "final.norm.{weight,bias}",
 * "final.head.weight". Hugging Face names (hf_name) are given without GPT-2's
 * optional "transformer." prefix (model/hf adds or strips it).
 *
 * Does not: allocate parameter memory (FSDP or the local hooks own the flat
 * buffers), run the model (model/model.h), or read files (model/hf.h).
 * A layout is immutable after creation and may be shared across threads.
 */
#ifndef SL_MODEL_LAYOUT_H
#define SL_MODEL_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"
#include "runtime/status.h"

#define MODEL_NAME_MAX 96

/* What a parameter is, so that init and the name maps need no string parsing. */
typedef enum {
    MODEL_ROLE_WTE = 0,
    MODEL_ROLE_WPE,
    MODEL_ROLE_NORM_WEIGHT,  /* ln1, ln2, final norm, qwen3 q/k norm (init 1) */
    MODEL_ROLE_NORM_BIAS,    /* init 0 */
    MODEL_ROLE_LINEAR_WEIGHT,
    MODEL_ROLE_RESID_WEIGHT, /* attn out and mlp proj/down: std / sqrt(2 L) */
    MODEL_ROLE_LINEAR_BIAS,  /* init 0 */
    MODEL_ROLE_HEAD,         /* untied LM head */
    MODEL_ROLE_SCORE,        /* score head (1, C) of model.head = score: normal(0, init_std) */
    MODEL_ROLE_LORA_A,       /* LoRA down-projection (r, in): U(-1/sqrt(in), 1/sqrt(in)) */
    MODEL_ROLE_LORA_B,       /* LoRA up-projection (out, r): zeros */
} model_role;

typedef struct {
    char name[MODEL_NAME_MAX];
    char hf_name[MODEL_NAME_MAX];
    int ndim;           /* 1 or 2 */
    int64_t shape[2];   /* shardlm orientation: (out, in) for weights */
    int unit;
    int64_t offset;     /* first element in the unit's flat buffer */
    int64_t numel;
    bool decay;         /* AdamW weight decay applies (see model_layout_create) */
    bool hf_transposed; /* stored (in, out) in Hugging Face files (GPT-2 Conv1D) */
    model_role role;
} model_param;

typedef struct {
    int64_t numel;      /* elements of the flat buffer */
    int64_t offset;     /* first element in the model's contiguous order (model_local,
                         * hf and checkpoint host buffers): the preceding units' numel summed */
    int first_param;    /* params [first_param, first_param + n_params) */
    int n_params;
} model_unit;

/* Element offsets inside a block unit (identical for every block); -1 where
 * the architecture has no such tensor. q/k/v weights are (H*D, C), (Hkv*D, C),
 * (Hkv*D, C), their biases (gpt2, qwen2) (H*D), (Hkv*D), (Hkv*D); for gpt2
 * they are the three row blocks of attn.qkv. q_norm, k_norm (qwen3): the
 * per-head RMSNorm weights (D). out is (C, H*D). fc is gpt2's c_fc or
 * llama's gate; up is llama's up (gpt2: -1); proj is c_proj / down. */
typedef struct {
    int64_t ln1_w, ln1_b;
    int64_t q_w, k_w, v_w, q_b, k_b, v_b;
    int64_t q_norm, k_norm;
    int64_t out_w, out_b;
    int64_t ln2_w, ln2_b;
    int64_t fc_w, fc_b, up_w;
    int64_t proj_w, proj_b;
} model_block_offsets;

/* Offsets inside unit 0 and unit L+1. head_w is in unit L+1, or -1 when tied
 * (the head is then unit 0's wte at offset wte) or when the model has a
 * score head instead (score_w >= 0, unit L+1; -1 on LM models). */
typedef struct {
    int64_t wte, wpe;          /* unit 0; wpe -1 for llama */
    int64_t norm_w, norm_b;    /* unit L+1; norm_b -1 for llama */
    int64_t head_w;            /* unit L+1, -1 when tied or a score model */
    int64_t score_w;           /* unit L+1: the (1, C) score head; -1 on LM models */
} model_final_offsets;

typedef struct {
    cfg_model cfg;        /* copy, finalized (n_kv_head, d_ff set) */
    int head_dim;         /* config_head_dim: model.head_dim or d_model / n_head */
    int n_params;
    model_param *params;  /* owned */
    int n_units;          /* n_layer + 2 */
    model_unit *units;    /* owned */
    int64_t total_numel;  /* sum over units (tied wte counted once) */
    model_block_offsets block;
    model_final_offsets fin;
} model_layout;

/* Builds the table for cfg, which must have passed config_finalize (checked
 * again here: divisibility, d_ff, n_kv_head). Weight decay: linear weights
 * and the untied head decay; norms and biases never; embeddings (wte, wpe,
 * and so a tied head) only when decay_embeddings. On error *out is NULL. */
sl_status model_layout_create(const cfg_model *cfg, bool decay_embeddings, model_layout **out);
void model_layout_destroy(model_layout *l); /* NULL is a no-op */

/* For builders of layouts (this file's and model/lora.c's adapter layout):
 * appends a parameter of shape (d0) (d1 = 0) or (d0, d1) at the end of unit
 * `unit` (offset = the unit's numel so far; numel = d0 or d0 * d1), growing
 * the unit. l->params has room for cap entries; SL_ERR_INTERNAL when full. */
sl_status model_layout_append_param(model_layout *l, int cap, int unit, model_role role, bool decay,
                                    bool hf_transposed, int64_t d0, int64_t d1, const char *name,
                                    const char *hf_name);
/* Sets every unit's offset (prefix sum of numel) and total_numel once all
 * parameters are appended. */
void model_layout_place_units(model_layout *l);

/* Index of the parameter with that shardlm (or Hugging Face, unprefixed)
 * name, or -1. */
int model_layout_find(const model_layout *l, const char *name);
int model_layout_find_hf(const model_layout *l, const char *hf_name);

/* Fills dst[0 .. count) with elements [start, start + count) of unit's flat
 * buffer at initialization. Element e of parameter p is a pure function of
 * (seed, p, e) (Philox stream RNG_PURPOSE_INIT, sub = p), so any sharding
 * gives identical weights. Normal(0, init_std) for linear weights and
 * embeddings, init_std / sqrt(2 n_layer) for residual output projections,
 * 1 for norm weights, 0 for biases. LoRA adapter layouts (model/lora.h):
 * A is uniform(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform(a=sqrt(5)))
 * from stream RNG_PURPOSE_LORA, sub = p; B is zero. dst is host memory. */
sl_status model_init_unit_range(const model_layout *l, int unit, int64_t start, int64_t count,
                                float *dst, uint64_t seed);

/* Weight-decay segments of a unit: maximal ranges of its flat buffer with
 * the same decay flag, in order, covering [0, numel) exactly. */
typedef struct {
    int64_t offset;
    int64_t length;
    bool decay;
} model_decay_segment;

/* Writes up to cap segments to segs (segs may be NULL when cap is 0) and sets
 * *n to the number there are; SL_ERR_INVALID when cap is too small (call
 * once with cap 0 to size it). */
sl_status model_layout_decay_segments(const model_layout *l, int unit, model_decay_segment *segs,
                                      int cap, int *n);

/* Trainable parameter count (tied wte counted once). */
int64_t model_layout_param_count(const model_layout *l);

/* RoPE inverse frequencies inv[0 .. head_dim/2) of a llama-like model, as
 * transformers' ROPE_INIT_FUNCTIONS computes them in fp32: default
 * 1 / theta^(2i/D), linear (that / rope_factor) or llama3
 * (_compute_llama3_parameters). inv is host memory. */
void model_layout_rope_freq(const model_layout *l, float *inv);

/* Training FLOPs per token for sequence length T: 6 N + 6 L T H D (PaLM
 * appendix B's 12 L T C attention term with C = H D, halved for the causal
 * mask, as llm.c counts). N is every parameter except the embedding lookups (wte, wpe) and
 * LoRA adapters, plus the head's V x C once when it is tied to wte: the count
 * of the PyTorch peer (benchmarks/peers/torch_gpu_bench.py), so MFU figures
 * of shardlm train, shardlm bench and the peer are comparable. */
double model_layout_flops_per_token(const model_layout *l, int seq_len);

#endif
