/* launcher/bench.h: the training-step benchmark on synthetic data.
 *
 * defines: bench_opts, bench_result, bench_run, bench_tokens
 *
 * Single process: builds the model of cfg on the CPU backend, initializes it
 * (from model.init_from when set, else from train.seed), and runs warmup +
 * timed optimizer steps of train.micro_batch x data.seq_len tokens
 * (train.grad_accum micro-steps each): zero grads, forward/backward with
 * grad_scale = 1 / tokens, global-norm clipping, AdamW. The step-0 loss is
 * returned so that a peer implementation started from the same weights can
 * be checked before timing is trusted. `shardlm bench --fsdp` (and any run
 * under mpirun with more than one rank) uses bench_fsdp_main instead; the
 * command line lives in cmd_bench.c.
 */
#ifndef SL_LAUNCHER_BENCH_H
#define SL_LAUNCHER_BENCH_H

#include <stdint.h>

#include "runtime/config.h"
#include "runtime/status.h"

typedef struct {
    int warmup;             /* untimed steps after step 0 */
    int steps;              /* timed steps */
    int threads;            /* CPU threads (<= 0: OpenMP default) */
    const char *save_init;  /* when set: write the initial weights as a HF folder here */
} bench_opts;

typedef struct {
    double loss0;           /* mean loss of step 0, before any update */
    double median_step_s;
    double min_step_s;
    double tokens_per_s;    /* tokens per step / median step time */
    double flops_per_token;
    int64_t params;
    int64_t activation_bytes;
    int64_t peak_bytes;     /* memory accountant's total peak */
} bench_result;

/* Synthetic tokens of micro-step `index`: row b, position t of the (T+1)-token
 * window is splitmix64(seed * 0x9E3779B97F4A7C15 + (index*B + b)*(T+1) + t)
 * mod V (benchmarks/peers/torch_step.py computes the same); inputs are
 * positions 0..T-1, targets 1..T. */
void bench_tokens(uint64_t seed, int64_t index, int B, int T, int V, uint32_t *inputs,
                  int32_t *targets);

sl_status bench_run(const sl_config *cfg, const bench_opts *o, bench_result *r);

/* The FSDP benchmark at any world size (launcher/bench_fsdp.c): initializes
 * MPI, runs the training job on synthetic tokens, prints medians on rank 0;
 * returns the process exit code. */
int bench_fsdp_main(sl_config *cfg, const bench_opts *o, int *argc, char ***argv);

#endif
