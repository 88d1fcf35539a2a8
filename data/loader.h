/* data/loader.h: the streaming training-data loader over token shards.
 *
 * defines: loader_opts, loader_state, loader, loader_create, loader_next,
 *          loader_state_get, loader_state_set, loader_samples_per_epoch,
 *          loader_batches_per_epoch, loader_pairs_truncated, loader_destroy,
 *          loader_expand_paths, loader_free_paths
 *
 * Samples (the shards' files are taken in the order given):
 *   pretrain  the documents of all shards are one token stream, each
 *             document followed by EOS. Sample i is stream[i*T, i*T + T + 1):
 *             inputs = its first T tokens, targets = the last T (consecutive
 *             samples overlap by one token, as llm.c's loader). Every target
 *             trains; /loss_mask is not used. The incomplete tail is dropped.
 *   sft       sample i is document i (global order over the shards), cut to
 *             T + 1 tokens; targets[j] = tokens[j+1] where loss_mask[j+1] is
 *             1, else -1; positions past the document are padding (input EOS,
 *             target -1).
 *   pairs     preference pairs (shards of layout "pairs", data/shard.h):
 *             sample i is pair i (global order over the shards), documents
 *             3i, 3i+1, 3i+2 = prompt, chosen, rejected. A sample is TWO
 *             rows: row 2b = prompt + chosen, row 2b+1 = prompt + rejected
 *             (b = the pair's place in the micro-batch), each that token
 *             sequence cut to T + 1 tokens and turned into inputs/targets as
 *             in sft (targets[j] = tokens[j+1] where loss_mask[j+1] is 1,
 *             else -1; padding: input EOS, target -1). So a micro-batch of B
 *             pairs is 2B rows and the caller's buffers are 2*B*T. A pair
 *             whose response T cuts off entirely (a row without any target)
 *             still loads; loader_pairs_truncated counts them.
 * A mode refuses the other layout: pretrain/sft on a pair shard and pairs
 * on a docs shard are SL_ERR_INVALID naming the file.
 * Order: each epoch a Philox-keyed permutation of the N sample indices
 * (runtime/rng.h, RNG_PURPOSE_SHUFFLE, sub = epoch). Global batch b is
 * perm[start + b*G, start + (b+1)*G) with G = micro_batch x grad_accum x
 * dp_size (in pairs mode: pairs, so a pair is never split across
 * micro-batches or ranks); the last N mod G samples of an epoch are skipped. Within a global
 * batch, rank r's micro-step k takes positions
 *   r*(micro_batch*grad_accum) + k*micro_batch + [0, micro_batch),
 * so the union over ranks and micro-steps is the global batch whatever
 * dp_size is, and the sequence of global batches depends only on (shards,
 * seq_len, G, seed).
 *
 * A background thread reads, decompresses and assembles up to `prefetch`
 * micro-batches ahead. Every token id is checked against vocab_size; an id
 * at or above it is an error naming the shard file and the token offset.
 * Memory: the open shards' document offsets (8 bytes per document), one
 * permutation (8 bytes per sample), prefetch x micro-batch buffers.
 */
#ifndef SL_DATA_LOADER_H
#define SL_DATA_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/status.h"

typedef struct {
    const char *const *paths; /* shard files, borrowed during loader_create only */
    int n_paths;
    int seq_len;     /* T */
    int micro_batch; /* B, samples per rank per micro-step */
    int grad_accum;
    int dp_rank, dp_size;
    uint64_t seed;
    int mode;            /* data_mode (runtime/config.h): DATA_MODE_PRETRAIN | DATA_MODE_SFT |
                          * DATA_MODE_PAIRS */
    uint32_t vocab_size; /* the model's; ids must be below it */
    int prefetch;        /* micro-batches prepared ahead, >= 1 */
    int64_t eos_id;      /* < 0: the shards' eos_id attribute */
    bool once;           /* eval: every sample once per epoch; the last global
                          * batch may be partial (its missing rows are padding
                          * with every target ignored), so a set smaller than
                          * one global batch is fine */
} loader_opts;

/* Where the next global batch starts: its epoch and the index of its first
 * sample in that epoch's permutation. */
typedef struct {
    uint64_t epoch;
    uint64_t sample;
} loader_state;

typedef struct loader loader;

/* Opens every shard (checks they agree on tokenizer hash and that the EOS id
 * is below vocab_size), starts the reader thread at (epoch 0, sample 0). */
sl_status loader_create(const loader_opts *o, loader **out);
/* This rank's next micro-batch: inputs[B*T] token ids, targets[B*T]
 * (< 0 = ignore); in pairs mode inputs[2*B*T] and targets[2*B*T] (rows
 * 2b, 2b+1 = pair b's prompt+chosen, prompt+rejected). An error of the reader thread (corrupt chunk, id out of
 * range) is returned here, naming the shard and offset. */
sl_status loader_next(loader *l, uint32_t *inputs, int32_t *targets);
/* The state to save in a checkpoint, taken at an optimizer-step boundary
 * (after grad_accum calls of loader_next). Mid-step it is the start of the
 * current global batch, which a restore replays from micro-step 0. */
loader_state loader_state_get(const loader *l);
/* Continues from a saved state (also with another dp_size). */
sl_status loader_state_set(loader *l, loader_state s);
uint64_t loader_samples_per_epoch(const loader *l);
uint64_t loader_batches_per_epoch(const loader *l);
/* Pairs mode: the pairs in the micro-batches loader_next has returned so far
 * (this rank, since create) with a row that has no target because seq_len
 * cut off its whole response (the caller warns: raise data.seq_len or drop
 * long prompts). 0 in the other modes. */
uint64_t loader_pairs_truncated(const loader *l);
void loader_destroy(loader *l);

/* Expands a data.train value: a .h5 file, a folder (its *.h5, sorted) or a
 * glob (sorted). *paths is an array of strings the caller frees with
 * loader_free_paths. No match is SL_ERR_INVALID naming the pattern. */
sl_status loader_expand_paths(const char *spec, char ***paths, int *n);
void loader_free_paths(char **paths, int n);

#endif
