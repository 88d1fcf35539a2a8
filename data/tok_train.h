/* data/tok_train.h: learns a byte-level BPE vocabulary from text.
 *
 * defines: tok_trainer, tok_train_opts, tok_train_create, tok_train_feed,
 *          tok_train_feed_jsonl,
 *          tok_train_run, tok_train_stats, tok_train_write, tok_train_destroy
 *
 * The classic algorithm (Sennrich et al.; Hugging Face's BpeTrainer): the
 * text is pre-tokenized with the GPT-2 or cl100k regex into words counted
 * once each; every word starts as its bytes (ids 0..255 = byte values); the
 * most frequent adjacent pair is merged into a new id, repeatedly, until the
 * vocabulary is full or no pair is left. Pair counts are updated
 * incrementally for the words that hold the merged pair only (a pair ->
 * words index), and the best pair comes from a max-heap with lazy deletion,
 * so one merge costs the size of the words it touches, not of the corpus.
 * Ties go to the smaller (left id, right id): the result is deterministic.
 * Special tokens are cut out of the text before pre-tokenization (never
 * learned from) and get the ids after the merges.
 *
 * The output is a Hugging Face tokenizer.json (model BPE with vocab and "a b"
 * merges, ByteLevel pre-tokenizer and decoder, added_tokens for specials)
 * that tok_load reads back and that Hugging Face tokenizers can load. Not
 * thread-safe: one trainer per thread.
 */
#ifndef SL_DATA_TOK_TRAIN_H
#define SL_DATA_TOK_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "runtime/status.h"

typedef struct tok_trainer tok_trainer;

typedef struct {
    uint32_t vocab_size;             /* all ids: 256 bytes + merges + specials */
    tok_pretokenizer pretok;         /* the regex words are split with */
    const char *const *specials;     /* n_specials NUL-terminated texts, or NULL */
    size_t n_specials;
} tok_train_opts;

typedef struct {
    uint64_t bytes;        /* text fed, specials excluded */
    uint64_t words;        /* pre-tokens counted */
    uint64_t unique_words;
    uint64_t tokens;       /* the fed text's token count after the merges */
    uint32_t merges;       /* merges learned (fewer than asked when pairs ran out) */
} tok_train_stats;

/* The caller owns *out (tok_train_destroy). vocab_size must leave room for
 * the 256 bytes and the specials. */
sl_status tok_train_create(const tok_train_opts *o, tok_trainer **out);
void tok_train_destroy(tok_trainer *tr);
/* Counts the words of one text (a document or a file); call before run. */
sl_status tok_train_feed(tok_trainer *tr, const char *text, size_t len);
/* JSONL (one object per line, as shardlm prepare reads it): feeds the text
 * of the fields prepare trains on (text; instruction, input, output;
 * prompt, response; messages[].content), each on its own, never the JSON
 * syntax. *bad counts lines that are not JSON objects (skipped). */
sl_status tok_train_feed_jsonl(tok_trainer *tr, const char *text, size_t len, uint64_t *bad);
/* Learns the merges; call once, after the last feed. */
sl_status tok_train_run(tok_trainer *tr);
void tok_train_get_stats(const tok_trainer *tr, tok_train_stats *out);
/* Writes tokenizer.json atomically (after run). */
sl_status tok_train_write(const tok_trainer *tr, const char *path);

#endif
