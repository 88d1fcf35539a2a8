/* data/prepare.h: the `shardlm prepare` pipeline: read, clean, filter,
 * deduplicate, mask PII, apply the chat template, tokenize, write shards.
 *
 * defines: prepare_drop, prepare_report, prepare_run, prepare_report_json,
 *          prepare_report_print, prepare_drop_name
 *
 * Inputs (cfg_prepare.inputs: files, folders (their .txt/.jsonl/.json
 * files, sorted) or globs): plain text, a document per blank-line block or
 * per file (prepare.text_split); JSONL records with a `text` field,
 * instruction/input/output, prompt/response, or a `messages` list of
 * {role, content} (field names configurable); or preference pairs: records
 * with prepare.chosen_field and prepare.rejected_field (data/prepare_pairs.h;
 * a run holds pairs or documents, not both, else an error names the first
 * record of the other kind), written as shards of layout "pairs" (the
 * prompt, chosen and rejected of a pair as 3 documents in one shard). Records are read in order by
 * the calling thread and processed in batches by a pool of OpenMP threads
 * (clean, PII, length filter, tokenize, dedup signature); the verdicts that
 * need order (duplicates, eval split, shard boundaries) are taken in record
 * order afterwards, so the shards are identical for any thread count.
 * Memory: one batch (at most PREPARE_BATCH_RECORDS records or
 * PREPARE_BATCH_BYTES bytes) plus per-document dedup state (data/dedup.h),
 * independent of the input size otherwise.
 * Output: <output>/train-NNNNN.h5 (and eval-NNNNN.h5 with eval_fraction > 0)
 * in the format of data/shard.h, and <output>/report.json.
 */
#ifndef SL_DATA_PREPARE_H
#define SL_DATA_PREPARE_H

#include <stdint.h>
#include <stdio.h>

#include "data/pii.h"
#include "runtime/config.h"
#include "runtime/status.h"

#define PREPARE_BATCH_RECORDS 4096
#define PREPARE_BATCH_BYTES ((size_t)16 << 20)

typedef enum {
    PREPARE_DROP_BAD_JSON = 0,   /* a JSONL line that does not parse */
    PREPARE_DROP_NO_FIELDS,      /* no known fields, wrong types, unknown role */
    PREPARE_DROP_INVALID_UTF8,   /* with prepare.invalid_utf8 = drop */
    PREPARE_DROP_EMPTY,          /* nothing left after cleaning */
    PREPARE_DROP_SHORT_CHARS,
    PREPARE_DROP_LONG_CHARS,
    PREPARE_DROP_SHORT_TOKENS,
    PREPARE_DROP_LONG_TOKENS,
    PREPARE_DROP_EXACT_DUP,
    PREPARE_DROP_NEAR_DUP,
    PREPARE_DROP_PROMPT_MISMATCH, /* a pair whose chosen and rejected prompts differ */
    PREPARE_DROP_IDENTICAL_PAIR,  /* a pair whose chosen and rejected responses are equal */
    PREPARE_DROP_COUNT
} prepare_drop;

const char *prepare_drop_name(prepare_drop d);

typedef struct {
    uint64_t files, bytes_read, records;
    uint64_t dropped[PREPARE_DROP_COUNT];
    uint64_t repaired_utf8, had_html;
    uint64_t pii[PII_TYPE_COUNT]; /* in written documents */
    uint64_t docs_text, docs_chat;
    uint64_t docs_written, tokens_written, trained_tokens;
    uint64_t eval_docs, eval_tokens;
    uint64_t pairs_written, eval_pairs; /* preference pairs (3 documents each) */
    int train_shards, eval_shards;
    char tokenizer_name[128], tokenizer_hash[32];
    uint32_t vocab_size;
    int64_t eos_id, im_start_id, im_end_id;
    int threads;
    double seconds;
    uint64_t peak_rss_bytes, dedup_bytes;
    /* where the first PREPARE_BAD_JSON_SHOWN lines that are not JSON objects
     * were ("file:line") */
    int n_bad_json_shown;
    char bad_json_at[5][320];
} prepare_report;
#define PREPARE_BAD_JSON_SHOWN 5

/* Runs the pipeline; fills rep (also partially on error). */
sl_status prepare_run(const cfg_prepare *cfg, prepare_report *rep);
/* The report as JSON text (caller frees). */
char *prepare_report_json(const prepare_report *rep);
void prepare_report_print(const prepare_report *rep, FILE *out);

#endif
