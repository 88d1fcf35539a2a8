/* runtime/config.h: the typed run configuration.
 *
 * defines: sl_config (sections model, data, prepare, train, optim, parallel,
 *          checkpoint, lora, logging), config_defaults, config_load_file,
 *          config_apply_json, config_set_override, config_finalize, config_apply_objective,
 *          config_to_json, config_write_file, config_hash, config_print_keys,
 *          config_enum_name, config_arch_llama_like, config_head_dim,
 *          model_arch, rope_scaling, config_is_set, config_mark_set
 *
 * A config is filled in three layers: the defaults of the schema in
 * config_schema.c, then JSON files (each may set any subset), then
 * `--set a.b.c=value` overrides. Unknown keys are rejected with the nearest
 * valid key suggested, duplicate keys are rejected, and every type or range
 * error names the JSON path and the file. Does not know about world sizes:
 * parallel/plan.h checks the factors that involve ranks.
 */
#ifndef SL_RUNTIME_CONFIG_H
#define SL_RUNTIME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

#define CFG_STR_MAX 512
#define CFG_NAME_MAX 32
#define CFG_LIST_MAX 32

typedef struct {
    int n;
    char items[CFG_LIST_MAX][CFG_STR_MAX];
} cfg_strlist;

/* gpt2: LayerNorm, GELU, learned positions. The rest are "llama-like"
 * (RMSNorm, RoPE, SwiGLU, GQA): llama and mistral as such, qwen2 with q/k/v
 * biases, qwen3 with a per-head RMSNorm of q and k before RoPE. Values are
 * the position in model.arch's choices (config_schema.c). */
typedef enum {
    MODEL_ARCH_GPT2 = 0,
    MODEL_ARCH_LLAMA,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_QWEN3,
    MODEL_ARCH_MISTRAL,
} model_arch;
/* RoPE frequency scaling (transformers' rope_type): none = "default". */
typedef enum { ROPE_SCALING_NONE = 0, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3 } rope_scaling;
typedef enum { DATA_MODE_PRETRAIN = 0, DATA_MODE_SFT, DATA_MODE_PAIRS } data_mode;
typedef enum { LR_SCHEDULE_COSINE = 0, LR_SCHEDULE_LINEAR, LR_SCHEDULE_CONSTANT } lr_schedule;
/* When FSDP reduce-scatters gradients (parallel/fsdp.h): each micro-step,
 * or once per optimizer step from full-size accumulation (FSDP's no_sync). */
typedef enum { GRAD_SYNC_PER_MICROSTEP = 0, GRAD_SYNC_PER_STEP } grad_sync;
typedef enum {
    FSDP_MODE_FULL_SHARD = 0, /* ZeRO-3 */
    FSDP_MODE_SHARD_GRAD_OP,  /* ZeRO-2 */
    FSDP_MODE_NO_SHARD,       /* DDP */
    FSDP_MODE_HYBRID,         /* full shard in a node, replicate across */
} fsdp_mode;
typedef enum { BACKEND_KIND_AUTO = 0, BACKEND_KIND_CPU, BACKEND_KIND_CUDA } backend_kind;
typedef enum { NONFINITE_SKIP = 0, NONFINITE_FATAL } nonfinite_policy;
/* The model's output: the LM head over the vocabulary, or a scalar score
 * (reward model: transformers' *ForSequenceClassification, num_labels 1). */
typedef enum { MODEL_HEAD_LM = 0, MODEL_HEAD_SCORE } model_head;
typedef enum { TRAIN_OBJECTIVE_SFT = 0, TRAIN_OBJECTIVE_DPO, TRAIN_OBJECTIVE_REWARD } train_objective;
typedef enum { DPO_LOSS_SIGMOID = 0, DPO_LOSS_IPO, DPO_LOSS_ROBUST } dpo_loss;
typedef enum { COMPUTE_DTYPE_F32 = 0, COMPUTE_DTYPE_BF16 } compute_dtype;
typedef enum { PREPARE_TEXT_SPLIT_BLANK_LINE = 0, PREPARE_TEXT_SPLIT_FILE } prepare_text_split;
typedef enum { PREPARE_INVALID_UTF8_REPAIR = 0, PREPARE_INVALID_UTF8_DROP } prepare_invalid_utf8;

typedef struct {
    int arch; /* model_arch */
    int n_layer;
    int d_model;
    int n_head;
    int n_kv_head; /* 0: same as n_head */
    int d_ff;      /* 0: 4*d_model (gpt2); required for llama-like archs */
    int head_dim;  /* 0: d_model / n_head (config_head_dim) */
    int vocab_size;
    int max_seq_len;
    double norm_eps;
    double rope_theta;
    int rope_scaling;           /* rope_scaling */
    double rope_factor;         /* linear and llama3 */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_original_max_pos;  /* llama3: original_max_position_embeddings */
    int sliding_window;         /* 0: none; else data.seq_len must not exceed it */
    bool tie_embeddings;
    int head;                   /* model_head; score forces tie_embeddings false */
    int pad_token_id;           /* -1: none; written to config.json (score models need it in transformers) */
    double init_std;
    char init_from[CFG_STR_MAX]; /* Hugging Face model folder to start from */
} cfg_model;

typedef struct {
    char train[CFG_STR_MAX]; /* shard file, folder or glob */
    char eval[CFG_STR_MAX];
    char tokenizer[CFG_STR_MAX];
    int seq_len;
    int mode; /* data_mode */
    int prefetch;
} cfg_data;

typedef struct {
    cfg_strlist inputs;
    char output[CFG_STR_MAX];
    char tokenizer[CFG_STR_MAX];
    char format[CFG_NAME_MAX]; /* auto | text | jsonl */
    char text_field[CFG_NAME_MAX];
    char instruction_field[CFG_NAME_MAX];
    char input_field[CFG_NAME_MAX];
    char output_field[CFG_NAME_MAX];
    char prompt_field[CFG_NAME_MAX];
    char response_field[CFG_NAME_MAX];
    char chosen_field[CFG_NAME_MAX];   /* preference pairs */
    char rejected_field[CFG_NAME_MAX];
    char messages_field[CFG_NAME_MAX];
    char role_field[CFG_NAME_MAX];
    char content_field[CFG_NAME_MAX];
    char chat_template[CFG_NAME_MAX];
    int text_split;   /* prepare_text_split */
    int invalid_utf8; /* prepare_invalid_utf8 */
    int min_chars;
    int max_chars;
    int min_tokens;
    int max_tokens;
    bool nfkc;
    bool fullwidth_punct;
    bool strip_html;
    bool dedup_exact;
    bool dedup_near;
    double near_threshold;
    int minhash_perms;
    int minhash_bands;
    bool pii;
    int64_t shard_tokens;
    int zstd_level;
    double eval_fraction;
    int threads;
} cfg_prepare;

typedef struct {
    int steps;
    int micro_batch;
    int grad_accum;
    int64_t seed;
    int eval_every;
    int eval_batches;
    bool recompute;
    int dtype;   /* compute_dtype */
    int backend; /* backend_kind */
    int nonfinite; /* nonfinite_policy */
    int objective; /* train_objective */
    char run_dir[CFG_STR_MAX];
    bool export_final;
} cfg_train;

typedef struct {
    double lr;
    double lr_min;
    int lr_warmup;
    int lr_schedule; /* lr_schedule */
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    double grad_clip; /* 0: no clipping */
    bool decay_embeddings;
} cfg_optim;

typedef struct {
    int fsdp_mode; /* fsdp_mode */
    int ranks_per_node; /* 0: from MPI shared-memory groups */
    double comm_timeout_s;
    bool overlap;
    int gather_buffers;
    int grad_sync; /* grad_sync */
} cfg_parallel;

typedef struct {
    int every;
    int keep;
    bool keep_best; /* also keep the lowest eval loss */
    char dir[CFG_STR_MAX]; /* "": <run_dir>/checkpoints */
    char resume[CFG_STR_MAX]; /* none | auto | path */
} cfg_checkpoint;

typedef struct {
    bool enabled;
    int r;
    double alpha;
    double dropout;
    cfg_strlist targets;
    bool rslora;
    char init_from[CFG_STR_MAX]; /* PEFT adapter folder */
} cfg_lora;

typedef struct {
    double beta;            /* temperature of the implicit reward */
    int loss;               /* dpo_loss */
    double label_smoothing; /* robust: the assumed label noise */
} cfg_dpo;

typedef struct {
    char level[CFG_NAME_MAX];
    int log_every;
    bool tensorboard;
} cfg_logging;

#define CFG_FIELDS_MAX 192

typedef struct {
    int64_t max_shard_size; /* bytes per safetensors file of an export (0: one file) */
    int dtype;              /* compute_dtype: of the exported weights */
} cfg_export;

typedef struct {
    cfg_model model;
    cfg_data data;
    cfg_prepare prepare;
    cfg_train train;
    cfg_optim optim;
    cfg_parallel parallel;
    cfg_checkpoint checkpoint;
    cfg_lora lora;
    cfg_dpo dpo;
    cfg_logging logging;
    cfg_export export;
    /* set[i]: schema key i was given by a config file or --set (not a
     * default); config_is_set reads it. Not part of the JSON or hashes. */
    unsigned char set[CFG_FIELDS_MAX];
} sl_config;

/* Fills every field with its documented default. */
void config_defaults(sl_config *cfg);

/* Applies a JSON file on top of cfg. Errors name the file and JSON path. */
sl_status config_load_file(sl_config *cfg, const char *path);
/* Applies JSON text; `source` names it in errors ("x.json", "--set"). */
sl_status config_apply_json(sl_config *cfg, const char *json, const char *source);
/* Applies one "a.b.c=value" override. The value is parsed as JSON when it
 * is valid JSON, otherwise taken as a string; lists also accept "a,b,c". */
sl_status config_set_override(sl_config *cfg, const char *assignment);
/* Cross-field checks and derived defaults (n_kv_head, d_ff ...). */
sl_status config_finalize(sl_config *cfg);
/* What train.objective implies (config_finalize runs it; run it again after
 * replacing cfg->model): reward sets model.head = score, and a score head has
 * no tied LM head (tie_embeddings false); dpo and reward read pair shards
 * (data.mode = pairs when unset; another data.mode, or pairs with sft, is
 * SL_ERR_INVALID naming both keys). */
sl_status config_apply_objective(sl_config *cfg);

/* The whole config as pretty JSON; caller frees with free(). */
char *config_to_json(const sl_config *cfg);
/* Writes config_to_json to path (atomically: temp file, fsync, rename). */
sl_status config_write_file(const sl_config *cfg, const char *path);
/* 64-bit hash of a section's JSON ("" for the whole config), hex in out[17]. */
void config_hash(const sl_config *cfg, const char *section, char out[17]);

/* Prints the key table (path, type, default, description) as Markdown. */
void config_print_keys(void *file);

/* Whether key ("optim.lr_min") was given by a config file or --set rather
 * than left at its default. */
bool config_is_set(const sl_config *cfg, const char *path);
/* Marks key as given (or not): a value derived from another source (a
 * model folder) stops counting as the user's. */
void config_mark_set(sl_config *cfg, const char *path, bool set);

/* Name of an enum value of a field ("optim.lr_schedule", 0 -> "cosine"). */
const char *config_enum_name(const char *path, int value);

/* Every arch but gpt2 is llama-like (model_arch). */
static inline bool config_arch_llama_like(int arch) { return arch != MODEL_ARCH_GPT2; }
/* The attention head size: model.head_dim, or d_model / n_head when 0. */
static inline int config_head_dim(const cfg_model *m) {
    return m->head_dim > 0 ? m->head_dim : m->d_model / (m->n_head > 0 ? m->n_head : 1);
}

#endif
