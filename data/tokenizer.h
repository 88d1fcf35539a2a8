/* data/tokenizer.h: BPE tokenizers: byte-level (GPT-2, cl100k, Llama 3, Qwen)
 * and SentencePiece-style (Llama 2, Mistral, Gemma 3) from tokenizer.json.
 *
 * defines: tokenizer, tok_load, tok_destroy, tok_encode, tok_decode,
 *          tok_vocab_size, tok_token_id, tok_special_id, tok_name, tok_hash,
 *          tok_bos_id, tok_eos_id
 *
 * Loads a Hugging Face tokenizer.json, GPT-2's encoder.json + vocab.bpe (a
 * folder holding both, or the path of either), or a tiktoken rank file
 * (base64 token + rank per line). Matches special tokens first (when
 * allowed), normalizes (tokenizer.json: Prepend, Replace, NFC, NFKC),
 * pre-tokenizes (the model's regex through PCRE2 JIT, or Metaspace / a
 * literal Split), then applies the BPE merges by rank (with <0xNN> byte
 * fallback for SentencePiece-style vocabularies). Output equals the reference tokenizers id
 * for id. A tokenizer is read-only after tok_load and may be used from many
 * threads at once (each call keeps its own scratch).
 */
#ifndef SL_DATA_TOKENIZER_H
#define SL_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

typedef struct tokenizer tokenizer;

typedef enum {
    TOK_PRETOKENIZER_GPT2 = 0, /* 's|'t|'re|... ?\p{L}+| ?\p{N}+ ... */
    TOK_PRETOKENIZER_CL100K,   /* cl100k_base / Llama-3 */
} tok_pretokenizer;

/* Opens path (file or folder, see above). Returns a tokenizer the caller
 * destroys with tok_destroy; on error *out is NULL and the message names the
 * file and what is wrong with it. */
sl_status tok_load(const char *path, tokenizer **out);
void tok_destroy(tokenizer *t);

/* Encodes len bytes of text (any bytes; invalid UTF-8 is encoded byte-wise
 * as the reference tokenizers do). When allow_special is nonzero, special
 * tokens written in the text (e.g. "<|endoftext|>") become their ids;
 * otherwise they are encoded as ordinary text.
 * ids: caller's buffer of cap entries; *n_ids receives the count. When the
 * buffer is too small returns SL_ERR_INVALID with *n_ids set to the count
 * needed. */
sl_status tok_encode(const tokenizer *t, const char *text, size_t len, int allow_special,
                     uint32_t *ids, size_t cap, size_t *n_ids);

/* Decodes ids to bytes (not NUL-terminated; *out_len set). Same buffer
 * convention as tok_encode. An id out of range is SL_ERR_INVALID naming it. */
sl_status tok_decode(const tokenizer *t, const uint32_t *ids, size_t n, char *out, size_t cap,
                     size_t *out_len);

uint32_t tok_vocab_size(const tokenizer *t); /* including special tokens */
/* Id of a special token by its text, or -1. */
int64_t tok_special_id(const tokenizer *t, const char *text);
/* Registers an extra special token (e.g. chat template markers) with the
 * given id, or the next free id when id < 0; returns the id used. */
sl_status tok_add_special(tokenizer *t, const char *text, int64_t id, uint32_t *out_id);
int64_t tok_bos_id(const tokenizer *t); /* -1 when the tokenizer has none */
int64_t tok_eos_id(const tokenizer *t);
const char *tok_name(const tokenizer *t);  /* "gpt2", "cl100k_base", or the file's name */
/* Content hash (hex, 16 chars) of the vocabulary, merges, specials and
 * pre-tokenizer: equal hashes mean equal encodings. */
const char *tok_hash(const tokenizer *t);

#endif
