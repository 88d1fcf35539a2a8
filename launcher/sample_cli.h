/* launcher/sample_cli.h: the sampling options that shardlm generate and
 * shardlm eval --generate share (they mean the same in both): parsed and
 * checked once, turned into the sampler's options (model/sample.h).
 *
 * defines: sample_cli, sample_cli_parse, sample_cli_sampler, sample_cli_pick
 *
 * Not here: each command's own options (--model, --prompt, --batch ...) and
 * its usage text.
 */
#ifndef SL_LAUNCHER_SAMPLE_CLI_H
#define SL_LAUNCHER_SAMPLE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "launcher/cli.h"
#include "model/sample.h"
#include "runtime/status.h"

typedef struct {
    const char *system, *stop; /* --system TEXT (needs --chat), --stop TEXT (non-empty); or NULL */
    bool chat, bos;            /* --chat, --bos */
    bool cuda;                 /* --backend cuda */
    int max_new;               /* --max-new-tokens (default 128) */
    int top_k;                 /* --top-k (default 0: all) */
    int threads;               /* --threads (default 0: the backend's) */
    float temperature, top_p;  /* --temperature (default 1, 0 = greedy), --top-p (default 1) */
    uint64_t seed;             /* --seed (default 0) */
} sample_cli;

/* Fills *s from a: --system, --stop, --chat, --bos, then checks, in this
 * order, --system needs --chat, --stop non-empty, --max-new-tokens in
 * [1, 2^24], --top-k in [0, 2^30], --threads in [0, 4096], --seed >= 0,
 * --temperature and --top-p numbers, --backend cpu|cuda, --temperature >= 0,
 * --top-p in (0, 1]. The first failing check is SL_ERR_INVALID naming the
 * option. */
sl_status sample_cli_parse(const cli_args *a, sample_cli *s);

/* The sampler's options (sub-stream 0). */
sample_opts sample_cli_sampler(const sample_cli *s);

/* One generated token of a row, as both commands pick it: the logits of ids
 * at or past the tokenizer's vocabulary (tok_vocab, below the model's V; a
 * padded vocabulary's ids decode to nothing) set to -inf in place, then
 * sample_next at element `step`; *end: the id is end_id_a or end_id_b (EOS,
 * a chat prompt's end-of-turn; < 0 = none). */
sl_status sample_cli_pick(sampler *smp, float *logits, int64_t V, int64_t tok_vocab, uint64_t step,
                          int64_t end_id_a, int64_t end_id_b, uint32_t *id, bool *end);

#endif
