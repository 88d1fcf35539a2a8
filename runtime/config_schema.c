/* The config schema: every key, its type, default, range and meaning.
 * README's config reference is printed from this table (shardlm config keys). */
#include "runtime/config_schema.h"

#include <stddef.h>

#define F(sec, fld) offsetof(sl_config, sec.fld)
#define SZ(sec, fld) sizeof(((sl_config *)0)->sec.fld)

#define INT(path, sec, fld, def, lo, hi, doc) {path, CFG_INT, F(sec, fld), SZ(sec, fld), def, lo, hi, NULL, doc}
#define I64(path, sec, fld, def, lo, hi, doc) {path, CFG_I64, F(sec, fld), SZ(sec, fld), def, lo, hi, NULL, doc}
#define FLT(path, sec, fld, def, lo, hi, doc) {path, CFG_FLOAT, F(sec, fld), SZ(sec, fld), def, lo, hi, NULL, doc}
#define BOOL(path, sec, fld, def, doc) {path, CFG_BOOL, F(sec, fld), SZ(sec, fld), def, 0, 1, NULL, doc}
#define STR(path, sec, fld, def, doc) {path, CFG_STRING, F(sec, fld), SZ(sec, fld), def, 0, 0, NULL, doc}
#define ENUM(path, sec, fld, def, choices, doc) {path, CFG_ENUM, F(sec, fld), SZ(sec, fld), def, 0, 0, choices, doc}
#define LIST(path, sec, fld, def, doc) {path, CFG_STRLIST, F(sec, fld), SZ(sec, fld), def, 0, 0, NULL, doc}

#define BIG 1e15

const cfg_field cfg_schema[] = {
    /* model */
    ENUM("model.arch", model, arch, "gpt2", "gpt2|llama|qwen2|qwen3|mistral", "architecture: gpt2 (LayerNorm, GELU, learned positions); llama and mistral (RMSNorm, RoPE, SwiGLU, GQA); qwen2 (llama + q/k/v biases); qwen3 (llama + per-head RMSNorm of q and k before RoPE)"),
    INT("model.n_layer", model, n_layer, "2", 1, 1024, "transformer blocks"),
    INT("model.d_model", model, d_model, "64", 1, 65536, "hidden size"),
    INT("model.n_head", model, n_head, "4", 1, 1024, "attention heads"),
    INT("model.n_kv_head", model, n_kv_head, "0", 0, 1024, "key/value heads for grouped-query attention; 0 = n_head; must divide n_head"),
    INT("model.d_ff", model, d_ff, "0", 0, 1 << 20, "MLP inner size; 0 = 4*d_model for gpt2 (required for the llama-like archs)"),
    INT("model.head_dim", model, head_dim, "0", 0, 65536, "attention head size; 0 = d_model/n_head (gpt2 only takes that); q/k/v have n_head*head_dim and n_kv_head*head_dim outputs"),
    INT("model.vocab_size", model, vocab_size, "50257", 2, 1 << 24, "vocabulary size (token ids must be below it)"),
    INT("model.max_seq_len", model, max_seq_len, "1024", 1, 1 << 20, "longest sequence (gpt2: size of the position table)"),
    FLT("model.norm_eps", model, norm_eps, "1e-5", 0, 1, "epsilon of LayerNorm/RMSNorm"),
    FLT("model.rope_theta", model, rope_theta, "10000", 1, BIG, "RoPE base (llama-like)"),
    ENUM("model.rope_scaling", model, rope_scaling, "none", "none|linear|llama3", "RoPE frequency scaling as transformers' rope_type: none (default), linear (inv_freq / rope_factor) or llama3 (Llama-3.1's per-band scaling)"),
    FLT("model.rope_factor", model, rope_factor, "1", 1e-6, BIG, "rope scaling factor (linear, llama3)"),
    FLT("model.rope_low_freq_factor", model, rope_low_freq_factor, "1", 1e-6, BIG, "llama3 rope scaling: low_freq_factor"),
    FLT("model.rope_high_freq_factor", model, rope_high_freq_factor, "4", 1e-6, BIG, "llama3 rope scaling: high_freq_factor (> low_freq_factor)"),
    INT("model.rope_original_max_pos", model, rope_original_max_pos, "8192", 1, 1 << 30, "llama3 rope scaling: original_max_position_embeddings"),
    INT("model.sliding_window", model, sliding_window, "0", 0, 1 << 30, "sliding-window attention span (Mistral v0.1); 0 = none. Attention is full causal, exact only while data.seq_len and generation stay within the window: longer is refused"),
    BOOL("model.tie_embeddings", model, tie_embeddings, "true", "LM head shares the token embedding matrix"),
    ENUM("model.head", model, head, "lm", "lm|score", "lm: next-token LM head; score: a scalar score on the last real token (a reward model, transformers' *ForSequenceClassification with num_labels 1); train.objective = reward sets score"),
    INT("model.pad_token_id", model, pad_token_id, "-1", -1, 1 << 24, "pad_token_id written to config.json (-1 = none); transformers' *ForSequenceClassification needs one to score batches: use the tokenizer's pad (or EOS) id"),
    FLT("model.init_std", model, init_std, "0.02", 0, 10, "std of the normal init; residual output projections get init_std/sqrt(2*n_layer)"),
    STR("model.init_from", model, init_from, "", "model to start from: a Hugging Face (config.json + safetensors) or shardlm folder, or a checkpoint step folder; sets model.*; empty = random init"),

    /* data */
    STR("data.train", data, train, "", "training shards: a .h5 file, a folder of them, or a glob"),
    STR("data.eval", data, eval, "", "held-out shards for eval loss and perplexity; empty = no eval"),
    STR("data.tokenizer", data, tokenizer, "", "tokenizer used for generation and to check the shards' tokenizer hash"),
    INT("data.seq_len", data, seq_len, "256", 1, 1 << 20, "tokens per sample (<= model.max_seq_len)"),
    ENUM("data.mode", data, mode, "pretrain", "pretrain|sft|pairs", "pretrain: pack documents with EOS; sft: whole documents, loss only on answer tokens; pairs: preference pairs (shards of layout pairs), rows prompt+chosen and prompt+rejected, for train.objective dpo or reward"),
    INT("data.prefetch", data, prefetch, "4", 1, 1024, "batches the background reader keeps ready"),

    /* prepare */
    LIST("prepare.inputs", prepare, inputs, "", "input files, folders or globs (.txt, .jsonl)"),
    STR("prepare.output", prepare, output, "", "output folder for shards and report.json"),
    STR("prepare.tokenizer", prepare, tokenizer, "", "tokenizer.json, a folder with encoder.json + vocab.bpe, or a tiktoken rank file"),
    STR("prepare.format", prepare, format, "auto", "auto (by extension), text or jsonl"),
    STR("prepare.text_field", prepare, text_field, "text", "JSONL field with plain text"),
    STR("prepare.instruction_field", prepare, instruction_field, "instruction", "JSONL field of instruction/input/output triples"),
    STR("prepare.input_field", prepare, input_field, "input", "JSONL field of instruction/input/output triples"),
    STR("prepare.output_field", prepare, output_field, "output", "JSONL field of instruction/input/output triples"),
    STR("prepare.prompt_field", prepare, prompt_field, "prompt", "JSONL field of prompt/response pairs"),
    STR("prepare.response_field", prepare, response_field, "response", "JSONL field of prompt/response pairs"),
    STR("prepare.chosen_field", prepare, chosen_field, "chosen", "JSONL field of a preference pair's preferred response (a record with it and prepare.rejected_field is a pair; see README)"),
    STR("prepare.rejected_field", prepare, rejected_field, "rejected", "JSONL field of a preference pair's dispreferred response"),
    STR("prepare.messages_field", prepare, messages_field, "messages", "JSONL field holding a list of chat messages"),
    STR("prepare.role_field", prepare, role_field, "role", "role key inside a message"),
    STR("prepare.content_field", prepare, content_field, "content", "content key inside a message"),
    STR("prepare.chat_template", prepare, chat_template, "auto", "chat template for prompt/response and messages: auto (from tokenizer_config.json, else chatml), chatml, qwen3, llama3, llama2, gemma (see README)"),
    ENUM("prepare.text_split", prepare, text_split, "blank_line", "blank_line|file", "text files: a document per blank-line-separated block, or a document per file"),
    ENUM("prepare.invalid_utf8", prepare, invalid_utf8, "repair", "repair|drop", "invalid UTF-8: replace each bad byte with U+FFFD, or drop the document (counted)"),
    INT("prepare.min_chars", prepare, min_chars, "1", 0, 1 << 30, "drop documents shorter than this (characters, after cleaning)"),
    INT("prepare.max_chars", prepare, max_chars, "1000000", 1, 1 << 30, "drop documents longer than this (characters)"),
    INT("prepare.min_tokens", prepare, min_tokens, "1", 0, 1 << 30, "drop documents with fewer tokens"),
    INT("prepare.max_tokens", prepare, max_tokens, "1000000", 1, 1 << 30, "drop documents with more tokens"),
    BOOL("prepare.nfkc", prepare, nfkc, "true", "Unicode NFKC normalization"),
    BOOL("prepare.fullwidth_punct", prepare, fullwidth_punct, "false", "map full-width ASCII punctuation to half-width (NFKC does this too)"),
    BOOL("prepare.strip_html", prepare, strip_html, "true", "remove HTML tags and decode entities"),
    BOOL("prepare.dedup_exact", prepare, dedup_exact, "true", "drop exact duplicates (hash of normalized text)"),
    BOOL("prepare.dedup_near", prepare, dedup_near, "true", "drop near duplicates (MinHash LSH)"),
    FLT("prepare.near_threshold", prepare, near_threshold, "0.8", 0, 1, "estimated Jaccard similarity above which a document is a near duplicate"),
    INT("prepare.minhash_perms", prepare, minhash_perms, "128", 8, 1024, "MinHash permutations (= bands x rows)"),
    INT("prepare.minhash_bands", prepare, minhash_bands, "16", 1, 1024, "LSH bands; must divide minhash_perms"),
    BOOL("prepare.pii", prepare, pii, "true", "mask e-mail, phone, ID, card numbers and IPs with typed tags"),
    I64("prepare.shard_tokens", prepare, shard_tokens, "67108864", 1024, BIG, "tokens per output shard"),
    INT("prepare.zstd_level", prepare, zstd_level, "3", 1, 22, "zstd compression level of /tokens"),
    FLT("prepare.eval_fraction", prepare, eval_fraction, "0", 0, 0.5, "fraction of documents written to eval shards"),
    INT("prepare.threads", prepare, threads, "0", 0, 1024, "worker threads; 0 = all cores"),

    /* train */
    INT("train.steps", train, steps, "100", 0, 1 << 30, "optimizer steps"),
    INT("train.micro_batch", train, micro_batch, "4", 1, 1 << 20, "sequences per rank per micro-step"),
    INT("train.grad_accum", train, grad_accum, "1", 1, 1 << 20, "micro-steps per optimizer step"),
    I64("train.seed", train, seed, "1234", 0, BIG, "seed of init, data order and dropout"),
    INT("train.eval_every", train, eval_every, "0", 0, 1 << 30, "eval every N steps; 0 = at the end only"),
    INT("train.eval_batches", train, eval_batches, "8", 1, 1 << 20, "batches per eval"),
    BOOL("train.recompute", train, recompute, "false", "recompute each block's activations in backward"),
    ENUM("train.dtype", train, dtype, "fp32", "fp32|bf16", "compute dtype: fp32 on the CPU backend, bf16 on CUDA (fp32 master weights, grads and AdamW state either way)"),
    ENUM("train.backend", train, backend, "auto", "auto|cpu|cuda", "auto: CUDA when train.dtype = bf16 and a GPU is visible, else the CPU (which refuses bf16); cuda: one GPU per local rank, NCCL for FSDP"),
    ENUM("train.nonfinite", train, nonfinite, "skip", "skip|fatal", "non-finite loss or gradient norm: skip the step on every rank, or stop naming the rank"),
    ENUM("train.objective", train, objective, "sft", "sft|dpo|reward", "sft: next-token cross-entropy (pretraining and supervised fine-tuning); dpo: Direct Preference Optimization on pair shards (dpo.*); reward: a reward model (scalar score head, Bradley-Terry loss) on pair shards"),
    STR("train.run_dir", train, run_dir, "runs/default", "run directory: resolved config, metrics, checkpoints, export"),
    BOOL("train.export_final", train, export_final, "true", "export the final model in Hugging Face format to <run_dir>/export"),

    /* optim */
    FLT("optim.lr", optim, lr, "3e-4", 0, 10, "peak learning rate"),
    FLT("optim.lr_min", optim, lr_min, "3e-5", 0, 10, "floor of the schedule; when not set and above optim.lr: 0.1 x optim.lr"),
    INT("optim.lr_warmup", optim, lr_warmup, "0", 0, 1 << 30, "linear warmup steps"),
    ENUM("optim.lr_schedule", optim, lr_schedule, "cosine", "cosine|linear|constant", "decay after warmup"),
    FLT("optim.beta1", optim, beta1, "0.9", 0, 0.999999, "AdamW beta1"),
    FLT("optim.beta2", optim, beta2, "0.95", 0, 0.999999999, "AdamW beta2"),
    FLT("optim.eps", optim, eps, "1e-8", 0, 1, "AdamW epsilon"),
    FLT("optim.weight_decay", optim, weight_decay, "0.1", 0, 10, "decoupled weight decay (not on norms and biases)"),
    FLT("optim.grad_clip", optim, grad_clip, "1.0", 0, BIG, "clip the global gradient norm to this; 0 = off"),
    BOOL("optim.decay_embeddings", optim, decay_embeddings, "false", "apply weight decay to embedding tables too"),

    /* parallel */
    ENUM("parallel.fsdp_mode", parallel, fsdp_mode, "full_shard", "full_shard|shard_grad_op|no_shard|hybrid", "FULL_SHARD (ZeRO-3), SHARD_GRAD_OP (ZeRO-2), NO_SHARD (DDP), HYBRID (shard in node, replicate across)"),
    INT("parallel.ranks_per_node", parallel, ranks_per_node, "0", 0, 1 << 20, "ranks per node for HYBRID; 0 = detect from shared memory"),
    FLT("parallel.comm_timeout_s", parallel, comm_timeout_s, "300", 0.1, BIG, "a collective that does not complete in this time aborts the job"),
    BOOL("parallel.overlap", parallel, overlap, "true", "prefetch gathers and overlap reduce-scatters with compute"),
    INT("parallel.gather_buffers", parallel, gather_buffers, "3", 2, 8, "gathered-unit buffers in the pool"),
    ENUM("parallel.grad_sync", parallel, grad_sync, "per_microstep", "per_microstep|per_step", "per_microstep: reduce-scatter each unit's gradient as its backward ends, every micro-step (gradient memory: the shards + 3 unit buffers); per_step: accumulate full-size gradients over the micro-steps and reduce-scatter once per step (4 bytes per parameter on every rank, fewer collectives)"),

    /* checkpoint */
    INT("checkpoint.every", checkpoint, every, "0", 0, 1 << 30, "save every N steps; 0 = only at the end and on preemption"),
    INT("checkpoint.keep", checkpoint, keep, "3", 1, 1 << 20, "complete checkpoints to keep (the newest and the one `latest` names are never deleted)"),
    BOOL("checkpoint.keep_best", checkpoint, keep_best, "false", "also keep the checkpoint with the lowest eval loss (data.eval; named by <checkpoints>/best)"),
    STR("checkpoint.dir", checkpoint, dir, "", "checkpoint folder; empty = <run_dir>/checkpoints"),
    STR("checkpoint.resume", checkpoint, resume, "none", "none, auto (latest complete checkpoint if any), a step folder or a checkpoints folder (its latest)"),

    /* lora */
    BOOL("lora.enabled", lora, enabled, "false", "train LoRA adapters on frozen base weights"),
    INT("lora.r", lora, r, "8", 1, 65536, "adapter rank"),
    FLT("lora.alpha", lora, alpha, "16", 0, BIG, "scaling numerator: scale = alpha/r (alpha/sqrt(r) with rslora)"),
    FLT("lora.dropout", lora, dropout, "0", 0, 0.99, "dropout probability on the adapter input (training only; PEFT lora_dropout)"),
    LIST("lora.targets", lora, targets, "q_proj,v_proj", "modules to adapt: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (llama, mistral, qwen2, qwen3); c_attn c_proj c_fc (gpt2)"),
    BOOL("lora.rslora", lora, rslora, "false", "rank-stabilized scaling alpha/sqrt(r)"),
    STR("lora.init_from", lora, init_from, "", "PEFT adapter folder to continue from"),

    /* dpo */
    FLT("dpo.beta", dpo, beta, "0.1", 1e-9, BIG, "DPO beta: scale of the implicit reward beta * (log pi - log pi_ref), TRL's beta"),
    ENUM("dpo.loss", dpo, loss, "sigmoid", "sigmoid|ipo|robust", "TRL's loss_type: sigmoid -log sigmoid(beta h) (label-smoothed by dpo.label_smoothing), ipo (h - 1/(2 beta))^2, robust (the unbiased estimate under label noise dpo.label_smoothing)"),
    FLT("dpo.label_smoothing", dpo, label_smoothing, "0", 0, 0.499999, "assumed probability that a pair's preference label is flipped (sigmoid: conservative DPO; robust: robust DPO); 0 = none"),

    /* logging */
    STR("logging.level", logging, level, "info", "debug, info, warn or error"),
    INT("logging.log_every", logging, log_every, "1", 1, 1 << 30, "print a step line every N steps"),
    BOOL("logging.tensorboard", logging, tensorboard, "true", "write TensorBoard scalars to <run_dir>/tb"),

    /* export */
    I64("export.max_shard_size", export, max_shard_size, "5000000000", 0, BIG, "bytes per safetensors file of the final export, as transformers' max_shard_size (5GB); a larger model is written as model-0000K-of-0000N.safetensors + model.safetensors.index.json; 0 = one file"),
    ENUM("export.dtype", export, dtype, "fp32", "fp32|bf16", "dtype of the exported weights"),
};

const size_t cfg_schema_count = sizeof cfg_schema / sizeof cfg_schema[0];
_Static_assert(sizeof cfg_schema / sizeof cfg_schema[0] <= CFG_FIELDS_MAX, "sl_config.set is too small");
