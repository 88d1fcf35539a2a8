/* model/lora.h: LoRA adapters over a base model's linear layers, and PEFT files.
 *
 * defines: lora_module, lora_site, lora_spec, lora_create, lora_destroy,
 *          lora_module_path, lora_dropout_seed, lora_merge, lora_peft_read_config,
 *          lora_peft_save, lora_peft_load, LORA_PEFT_CONFIG, LORA_PEFT_WEIGHTS
 *
 * For each targeted linear W (out x in) of every block, a trainable A (r x in)
 * and B (out x r) with (DESIGN section 5, PEFT's LoRA Linear):
 *     y = x W^T + s (x A^T) B^T,   s = alpha / r  (alpha / sqrt(r) with rslora)
 * B starts at zero (so the adapted model starts equal to the base) and A at
 * uniform(-1/sqrt(in), 1/sqrt(in)), PEFT's kaiming_uniform_(a = sqrt(5)).
 *
 * The adapters form their own model_layout (lora_spec.layout) with the base's
 * unit numbering: unit 0 (embeddings) and unit L+1 (final norm/head) are
 * empty, block unit l+1 holds, per targeted module in lora_module order, A
 * then B. Parameter names are "<base param name>.lora_A"/".lora_B" (e.g.
 * "blocks.0.attn.q.weight.lora_A"), hf_name is the PEFT tensor name
 * ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
 * GPT-2: "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"), the
 * roles are MODEL_ROLE_LORA_A/B and both decay (optim.weight_decay), so
 * parallel/fsdp shards, initializes (model_init_unit_range) and updates them
 * like any model. GPT-2's c_attn is one module over the fused (3C x C) qkv
 * weight, as in PEFT: one A (r x C) and one B (3C x r) whose row blocks feed
 * q, k and v.
 *
 * Targets are matched as PEFT matches target_modules given as a list: a
 * module path inside a block ("self_attn.q_proj", "mlp.c_proj", ...) matches
 * target t when it equals t or ends with "." t; so GPT-2's "c_proj" adapts
 * both attn.c_proj and mlp.c_proj, and "attn.c_proj" only the first.
 * "all-linear" adapts every block linear (PEFT excludes the LM head too).
 * A target matching no module is an error listing the valid ones.
 *
 * PEFT adapter folder (what lora_peft_save writes, lora_peft_load reads):
 *   adapter_config.json        peft_type "LORA", task_type "CAUSAL_LM", r,
 *                              lora_alpha, lora_dropout, target_modules (the
 *                              configured list), use_rslora, bias "none",
 *                              fan_in_fan_out (true for GPT-2's Conv1D),
 *                              base_model_name_or_path, init_lora_weights true
 *   adapter_model.safetensors  F32 "base_model.model.<module>.lora_A.weight"
 *                              (r, in) and ".lora_B.weight" (out, r): PEFT
 *                              keeps this orientation for Conv1D as well and
 *                              applies fan_in_fan_out only to the merged
 *                              delta (W_conv1d += s (B A)^T).
 *
 * Dropout (lora.dropout = p > 0), as PEFT's lora_dropout: in training only,
 *     y = x W^T + s (dropout(x) A^T) B^T,
 * dropout on the adapter's input alone (the base path sees x), inverted
 * scaling (kept values x / (1 - p)), one independent mask per adapted module
 * (GPT-2's fused c_attn: one mask for its one input). Eval, generation,
 * forward_logits and merged models run no dropout. The mask is keyed so that
 * it does not depend on world size, micro-batching, threads or activation
 * recomputation: for optimizer step `step` (1-based), block `layer`, module
 * m, the GLOBAL sample index g of a sequence in its global batch (the
 * loader's order, data/loader.h), position t < T and input feature f < in,
 *     kernels/ops.h's ops_dropout with seed = lora_dropout_seed(train.seed,
 *     step, layer, m) and element counter (g * T + t) * in + f.
 * Nothing extra is stored: the forward writes dropout(x) into one scratch
 * (N, max in) shared by every module and block, and the backward recomputes
 * it (dA += dt^T dropout(x)) and applies the same mask to dt A before adding
 * it to dx. Regenerating a counter-based mask costs one Philox block per
 * four elements, far less than keeping (N, in) per adapted module (which
 * activation recomputation would have to drop again anyway).
 *
 * Not supported (refused with an error): bias other than "none", DoRA,
 * per-module rank/alpha patterns, adapters on embeddings or the LM head.
 * Does not run the model (model/model.h takes a spec through
 * model_attach_lora) or own parameter memory.
 */
#ifndef SL_MODEL_LORA_H
#define SL_MODEL_LORA_H

#include <stdbool.h>
#include <stdint.h>

#include "model/layout.h"
#include "runtime/config.h"
#include "runtime/status.h"

#define LORA_PEFT_CONFIG "adapter_config.json"
#define LORA_PEFT_WEIGHTS "adapter_model.safetensors"

/* The block linears an adapter can sit on. */
typedef enum {
    LORA_MOD_QKV = 0, /* gpt2 attn.c_attn (fused q, k, v rows); "llama" below = every llama-like arch */
    LORA_MOD_Q,       /* llama self_attn.q_proj */
    LORA_MOD_K,       /* llama self_attn.k_proj */
    LORA_MOD_V,       /* llama self_attn.v_proj */
    LORA_MOD_OUT,     /* llama self_attn.o_proj, gpt2 attn.c_proj */
    LORA_MOD_FC,      /* llama mlp.gate_proj, gpt2 mlp.c_fc */
    LORA_MOD_UP,      /* llama mlp.up_proj */
    LORA_MOD_PROJ,    /* llama mlp.down_proj, gpt2 mlp.c_proj */
    LORA_MOD_COUNT
} lora_module;

/* One module's place in every block unit (identical for every block). */
typedef struct {
    bool on;         /* adapted */
    int64_t a, b;    /* offsets of A (r, in) and B (out, r) in the adapter block unit */
    int64_t in, out; /* W's shape (out, in) */
    int64_t base_w;  /* offset of W in the base block unit */
} lora_site;

typedef struct {
    cfg_lora cfg;            /* copy */
    int r;
    float scale;             /* alpha / r, or alpha / sqrt(r) with rslora */
    const model_layout *base; /* borrowed; must outlive the spec */
    model_layout *layout;    /* the adapters (owned) */
    lora_site site[LORA_MOD_COUNT];
} lora_spec;

/* Builds the adapter spec for base from cfg (r >= 1, 0 <= dropout < 1,
 * targets valid for the architecture). On error *out is NULL. */
sl_status lora_create(const model_layout *base, const cfg_lora *cfg, lora_spec **out);
void lora_destroy(lora_spec *s); /* NULL is a no-op */

/* The module's path inside block `layer` as Hugging Face names it (e.g.
 * "model.layers.3.self_attn.q_proj", "transformer.h.3.attn.c_attn"); NULL
 * when the architecture has no such module. */
const char *lora_module_path(const model_layout *base, lora_module m, int layer, char *buf,
                             size_t cap);

/* The ops_dropout seed of module m in block `layer` at optimizer step `step`
 * (1-based) of a run with train.seed `seed`:
 *     h = mix(seed ^ mix(step)),  result = mix(h ^ (layer << 8 | m)),
 * mix = splitmix64's finalizer (z += 0x9E3779B97F4A7C15, then xor-shift-
 * multiply by 0xBF58476D1CE4E5B9 and 0x94D049BB133111EB, shifts 30/27/31);
 * m is the lora_module value. tests/reference/philox.py computes the same. */
uint64_t lora_dropout_seed(uint64_t seed, int64_t step, int layer, lora_module m);

/* Merges the adapters into base weights: W += s B A for every adapted module
 * of every block. base_host: base->total_numel floats (model_local order);
 * adapter_host: s->layout->total_numel floats (same order). */
sl_status lora_merge(const lora_spec *s, float *base_host, const float *adapter_host);

/* Reads dir/adapter_config.json into cfg's r, alpha, targets, rslora and
 * dropout (lora_dropout; 0 when absent, as PEFT's default; continuing an
 * adapter trains it as PEFT's is_trainable load would), enabled and init_from
 * untouched, checking peft_type "LORA",
 * bias "none", no DoRA and no rank/alpha patterns; errors name the file and
 * key. arch: the base model's, to check fan_in_fan_out (true only for gpt2). */
sl_status lora_peft_read_config(const char *dir, model_arch arch, cfg_lora *cfg);

/* Writes a PEFT adapter folder (created) from adapter_host (the adapter
 * layout's total_numel floats). base_model names the base in the config
 * ("" writes null). */
sl_status lora_peft_save(const char *dir, const lora_spec *s, const float *adapter_host,
                         const char *base_model);

/* Loads dir/adapter_model.safetensors into adapter_host (total_numel floats,
 * F32/BF16/F16 converted); every adapter tensor must be there with its exact
 * shape, and no other tensor may be (errors name tensor and file). */
sl_status lora_peft_load(const char *dir, const lora_spec *s, float *adapter_host);

#endif
