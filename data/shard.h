/* data/shard.h: token shards in HDF5 (DESIGN section 7, README "Token shards").
 *
 * defines: shard_meta, shard_writer, shard_writer_open, shard_writer_add_doc,
 *          shard_writer_tokens, shard_writer_docs, shard_writer_close,
 *          shard_writer_abort, shard_reader, shard_info, shard_open,
 *          shard_info_get, shard_read_tokens, shard_doc_offsets, shard_verify,
 *          shard_verify_stats, shard_close
 *
 * One file per shard:
 *   /tokens       uint32 [n_tokens], chunked, zstd (filter 32015) then
 *                 Fletcher32 over the compressed bytes
 *   /doc_offsets  uint64 [n_docs + 1], doc d = tokens [off[d], off[d+1])
 *   /loss_mask    uint8 [n_tokens] (optional; absent = all ones), 1 = train on
 *                 this token as a target
 * Root attributes: format ("shardlm-tokens"), version (1), tokenizer_name,
 * tokenizer_hash, vocab_size, bos_id, eos_id, im_start_id, im_end_id (-1 when
 * absent), n_tokens, n_docs, chunk_tokens, source, and layout: "docs" (also
 * when the attribute is absent) or "pairs".
 * Layout "pairs" (preference data, data.mode = pairs): the documents come in
 * threes, one triple per pair: prompt, chosen response, rejected response;
 * n_docs is 3 x pairs and /loss_mask is present (0 over the prompt; 1 over
 * the response tokens a model learns to produce). The reader refuses a pair
 * shard whose n_docs is not a multiple of 3 or that lacks /loss_mask.
 *
 * Fletcher32 runs after zstd, on the stored bytes: one flipped byte anywhere
 * in a chunk fails its checksum before zstd sees it, so corruption is always
 * a clear "checksum" error naming the chunk, never garbage or a zstd error.
 *
 * The writer streams: it holds one chunk of tokens and masks and one chunk of
 * offsets, whatever the shard size. It writes "<path>.tmp" and renames it to
 * path on close, so a shard that exists is complete.
 * A reader is not thread-safe; every HDF5 call goes through data/h5io's lock,
 * so readers in different threads may run at once.
 */
#ifndef SL_DATA_SHARD_H
#define SL_DATA_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

#define SHARD_FORMAT_NAME "shardlm-tokens"
#define SHARD_FORMAT_VERSION 1
#define SHARD_DEFAULT_CHUNK_TOKENS 65536

typedef struct {
    char tokenizer_name[128];
    char tokenizer_hash[32];
    uint32_t vocab_size;         /* every id is below it */
    int64_t bos_id, eos_id;      /* -1: none */
    int64_t im_start_id, im_end_id; /* chat template markers; -1: none */
    char source[256];            /* free text: what produced the shard */
    bool pairs;                  /* layout "pairs": (prompt, chosen, rejected) triples */
} shard_meta;

/* ---- writer ---- */

typedef struct shard_writer shard_writer;

/* chunk_tokens: tokens per HDF5 chunk (0: SHARD_DEFAULT_CHUNK_TOKENS);
 * zstd_level 1..22; with_loss_mask: write /loss_mask. */
sl_status shard_writer_open(const char *path, const shard_meta *meta, uint32_t chunk_tokens,
                            int zstd_level, bool with_loss_mask, shard_writer **out);
/* Appends one document. mask may be NULL (all ones); ignored without
 * /loss_mask. Ids >= meta.vocab_size are refused. With meta.pairs the writer
 * needs with_loss_mask, and close refuses a document count that is not a
 * multiple of 3. */
sl_status shard_writer_add_doc(shard_writer *w, const uint32_t *ids, const uint8_t *mask, size_t n);
uint64_t shard_writer_tokens(const shard_writer *w);
uint64_t shard_writer_docs(const shard_writer *w);
/* Flushes, writes the counts, closes and renames into place; frees w
 * (also on error, when the temporary file is removed). */
sl_status shard_writer_close(shard_writer *w);
/* Closes and removes the temporary file; frees w. NULL is a no-op. */
void shard_writer_abort(shard_writer *w);

/* ---- reader ---- */

typedef struct shard_reader shard_reader;

typedef struct {
    shard_meta meta;
    char format[64];
    int version;
    uint64_t n_tokens;
    uint64_t n_docs;
    uint32_t chunk_tokens;
    bool has_loss_mask;
    bool pairs; /* layout "pairs" (= meta.pairs): n_docs / 3 preference pairs */
} shard_info;

/* Opens and validates the attributes and /doc_offsets (read whole: 8 bytes
 * per document). Errors name the file and what is wrong. */
/* The layout as written in the attribute: "pairs" or "docs". */
const char *shard_layout_name(bool pairs);
sl_status shard_open(const char *path, shard_reader **out);
void shard_close(shard_reader *r);
const shard_info *shard_info_get(const shard_reader *r);
const char *shard_path(const shard_reader *r);
/* n_docs + 1 offsets, owned by the reader. */
const uint64_t *shard_doc_offsets(const shard_reader *r);

/* Reads tokens [start, start + count) into ids (and the mask into mask when
 * not NULL; ones when the shard has none). A chunk that fails its checksum
 * or does not decompress is SL_ERR_FORMAT naming the file and the chunk. */
sl_status shard_read_tokens(shard_reader *r, uint64_t start, uint64_t count, uint32_t *ids,
                            uint8_t *mask);

typedef struct {
    uint64_t chunks;       /* chunks of /tokens read and checked */
    uint64_t stored_bytes; /* bytes on disk of /tokens and /loss_mask */
    uint32_t max_id;
    uint64_t mask_ones;    /* tokens with loss_mask 1 */
    uint64_t min_doc, max_doc; /* document lengths in tokens */
} shard_verify_stats;

/* Reads every chunk of every dataset, checks checksums, that ids are below
 * vocab_size and the mask is 0/1. Fills st (may be NULL). */
sl_status shard_verify(shard_reader *r, shard_verify_stats *st);

#endif
