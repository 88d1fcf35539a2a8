/* model/decode.h: autoregressive inference with a KV cache (generation).
 *
 * defines: decode, decode_create, decode_destroy, decode_reset, decode_prefill,
 *          decode_step, decode_pos, decode_cache_bytes
 *
 * The same GPT-2 / Llama block as model/model.c (model/block.h's
 * block_forward, called with the layer's KV cache), computed only for the new
 * positions: each layer appends the new tokens' keys and values (after RoPE
 * for Llama) to its cache and attends the new queries against every cached
 * position (ops_attention_decode). Only kernels/ops.h ops are used, so the
 * numbers are those of model_forward_logits up to summation order.
 *
 * Parameters: one full (not sharded) buffer, borrowed, in backend memory:
 * layout->total_numel elements of be->act_dtype (fp32 host memory on the CPU
 * backend, bf16 device memory on CUDA) in model_local order (unit u at
 * layout->units[u].offset; what model_weights_load fills, cast for CUDA).
 * A decode holds no parameters of its own and never writes them.
 *
 * Backends: only kernels/ops.h entries and backend_memcpy, never a test of
 * which backend it runs on. The cache and activations are act dtype in
 * backend memory; the LM head writes F32 logits (fp32 accumulation, not
 * rounded to bf16) on the backend, copied to the caller's host buffer once
 * per call. Calls return after the backend has finished (the host may read
 * the logits and reuse the token buffer).
 *
 * Batch: `batch` sequences of equal length advance together (one token each
 * per step); generate uses batch 1. Every row of a call shares the position.
 * Prompts of different lengths are not supported (no padding mask).
 *
 * Memory (backend, recorded under MEM_CATEGORY_ACTIVATIONS): the cache,
 * 2 x n_layer x batch x max_seq x n_kv_head x head_dim act elements, plus one
 * prefill chunk's activations (batch x prefill_chunk rows) and batch x
 * vocab_size F32 logits. Long prompts are prefilled prefill_chunk positions
 * at a time (exact: causal attention of a chunk against the cache of
 * everything before it).
 *
 * A reward model (model.head = score) has no LM head: decode_create refuses it.
 * Not here: sampling (model/sample.h), sharded parameters (gather them first),
 * speculative or paged caches. One decode is used by one thread at a time.
 */
#ifndef SL_MODEL_DECODE_H
#define SL_MODEL_DECODE_H

#include <stdint.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "runtime/status.h"

#define DECODE_DEFAULT_PREFILL_CHUNK 256

typedef struct decode decode;

/* layout, be and params are borrowed and must outlive the decode.
 * max_seq <= layout max_seq_len (GPT-2's wpe has no rows beyond it) and
 * <= model.sliding_window when set (attention is full causal, exact for a
 * sliding-window model only within the window: longer is SL_ERR_INVALID);
 * prefill_chunk <= 0 means min(max_seq, DECODE_DEFAULT_PREFILL_CHUNK).
 * On error *out is NULL and nothing is allocated. */
sl_status decode_create(const model_layout *layout, sl_backend *be, const void *params, int batch,
                        int max_seq, int prefill_chunk, decode **out);
void decode_destroy(decode *d); /* NULL is a no-op */

/* Forgets the cached positions (a new sequence starts at position 0). */
void decode_reset(decode *d);

/* Number of positions in the cache (the position the next token gets). */
int64_t decode_pos(const decode *d);

/* Cache bytes allocated (both K and V, every layer). */
int64_t decode_cache_bytes(const decode *d);

/* Appends n tokens per row at positions decode_pos .. decode_pos + n - 1.
 * tokens (batch * n) host, row-major (batch, n), each < vocab_size (errors
 * name the row and position); decode_pos + n <= max_seq. logits_last
 * (batch * vocab_size floats, host) receives the logits after each row's last
 * token; NULL skips the LM head. */
sl_status decode_prefill(decode *d, const uint32_t *tokens, int64_t n, float *logits_last);

/* decode_prefill with n = 1: tokens (batch) host, logits (batch * vocab_size). */
sl_status decode_step(decode *d, const uint32_t *tokens, float *logits);

#endif
