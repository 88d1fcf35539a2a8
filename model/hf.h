/* model/hf.h: Hugging Face interop and the shardlm model folder.
 *
 * defines: hf_info, hf_read_config, hf_load_params, hf_save, hf_import,
 *          hf_export, model_weights_load, model_config_from_dir,
 *          MODEL_DIR_CONFIG, MODEL_DIR_WEIGHTS
 *
 * A Hugging Face folder is config.json plus model.safetensors or a sharded
 * model.safetensors.index.json (runtime/safetensors.h validates every file).
 * Supported: model_type "gpt2" (GPT2LMHeadModel; Conv1D weights stored
 * (in, out) are transposed; the "transformer." prefix may or may not be
 * there) and the llama-like "llama", "mistral", "qwen2" (q/k/v biases) and
 * "qwen3" (q_norm/k_norm; head_dim defaults to 128 as in Qwen3Config):
 * "rope_theta" + "rope_scaling" or transformers v5's "rope_parameters", of
 * rope_type default, linear or llama3 (others are refused); an explicit
 * "head_dim"; "sliding_window" (mistral; qwen with use_sliding_window) goes
 * to model.sliding_window, beyond which config_finalize and decode refuse
 * sequences. export without the source's config.json (a trained model)
 * writes the arch's own (LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM, Qwen3ForCausalLM with these keys).
 * Reward models (model.head = score): a folder whose architectures[0] ends
 * in ForSequenceClassification (num_labels 1: one id2label entry) reads as
 * a score model, its "score.weight" (1, hidden) loaded; export writes
 * <Arch>ForSequenceClassification (GPT2ForSequenceClassification with
 * "transformer.*" names, the llama-likes "model.*"; "score.weight" top-level
 * in both, as transformers' modules are named), config.json with id2label
 * {"0": "LABEL_0"}, label2id {"LABEL_0": 0} and pad_token_id
 * (model.pad_token_id; null when unset, and transformers then scores batches
 * of one only). A causal-LM folder read for a score layout drops its
 * lm_head and starts a fresh score head (hf_stream.h, hf_reader_set_seed).
 * Tensors may be F32, BF16 or F16. Known non-parameter buffers (GPT-2's
 * attn.bias / attn.masked_bias, rotary_emb.inv_freq) are skipped; any other
 * tensor the layout does not have is an error naming it.
 *
 * The shardlm model folder (what `shardlm import` writes and `shardlm export`
 * reads):
 *   shardlm.json       a shardlm config holding the "model" section and a
 *                      data.seq_len <= max_seq_len (usable as --config)
 *   model.safetensors  one tensor per layout parameter under its shardlm
 *                      name (layout.h), in shardlm orientation (every linear
 *                      weight (out, in)), in the dtype the source had;
 *                      __metadata__ keeps format "pt", shardlm_format "1",
 *                      hf_model_type, hf_prefix and hf_config (the source's
 *                      config.json text), so that export restores the folder.
 * Import then export gives byte-identical tensor data (transposes are
 * permutations and dtypes are kept); export writes one model.safetensors
 * with tensors sorted by name (sharded export is not implemented).
 *
 * Does not: allocate model memory beyond temporaries (callers pass host
 * buffers of layout->total_numel floats in model_local order: unit u at the
 * prefix sum of unit sizes), or talk to the network.
 */
#ifndef SL_MODEL_HF_H
#define SL_MODEL_HF_H

#include "model/layout.h"
#include "runtime/config.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

#define MODEL_DIR_CONFIG "shardlm.json"
#define MODEL_DIR_WEIGHTS "model.safetensors"

typedef struct {
    char model_type[32]; /* "gpt2", "llama", "mistral" */
    char prefix[32];     /* parameter name prefix found (GPT-2 "transformer." or "") */
    sl_dtype dtype;      /* dtype of the first parameter read */
} hf_info;

/* Reads dir/config.json into the model fields of *cfg (others untouched;
 * n_kv_head and d_ff set explicitly). info may be NULL. Errors name the
 * file and the key. */
sl_status hf_read_config(const char *dir, cfg_model *cfg, hf_info *info);

/* Loads every layout parameter from the Hugging Face folder dir into host
 * (total_numel floats), converting to fp32 and transposing Conv1D weights.
 * Shapes must match the layout exactly (errors name tensor and file). */
sl_status hf_load_params(const char *dir, const model_layout *l, float *host, hf_info *info);

/* Writes a Hugging Face folder (config.json generated from l->cfg, and
 * model.safetensors in dtype F32, BF16 or F16) from host params. prefix is
 * prepended to GPT-2 names ("" for the hub layout). Creates dir. */
sl_status hf_save(const char *dir, const model_layout *l, const float *host, sl_dtype dtype,
                  const char *prefix);

/* Hugging Face folder -> shardlm model folder (out_dir created). */
sl_status hf_import(const char *hf_dir, const char *out_dir);
/* shardlm model folder -> Hugging Face folder (out_dir created). */
sl_status hf_export(const char *model_dir, const char *hf_dir);

/* Model config of a folder of either kind: shardlm.json's model section, or
 * config.json. *cfg must hold defaults; it is finalized on return (data.seq_len
 * is lowered to the model's max_seq_len when it exceeds it). */
sl_status model_config_from_dir(const char *dir, sl_config *cfg);

/* Loads params from a folder of either kind (shardlm.json present: shardlm
 * model folder; else Hugging Face) into host. */
sl_status model_weights_load(const char *dir, const model_layout *l, float *host);

#endif
