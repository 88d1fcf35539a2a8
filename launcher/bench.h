/* launcher/bench.h: the training-step benchmark on synthetic data.
 *
 * defines: bench_opts, bench_result, bench_run, bench_tokens, bench_job_main
 *
 * Two drivers. bench_run (one process, CPU backend, fp32; the default for a
 * CPU config): builds the model of cfg on the CPU backend, initializes it
 * (from model.init_from when set, else from train.seed), and runs warmup +
 * timed optimizer steps of train.micro_batch x data.seq_len tokens
 * (train.grad_accum micro-steps each): zero grads, forward/backward with
 * grad_scale = 1 / tokens, global-norm clipping, AdamW. The step-0 loss is
 * returned so that a peer implementation started from the same weights can
 * be checked before timing is trusted. bench_job_main (launcher/bench_job.c)
 * runs the real training job instead (FSDP, model and optimizer of `shardlm
 * train`, any world size, CPU or CUDA backend): for train.backend = cuda
 * (--backend cuda), --fsdp, --find-batch, and any run under mpirun with more
 * than one rank. The command line lives in cmd_bench.c.
 */
#ifndef SL_LAUNCHER_BENCH_H
#define SL_LAUNCHER_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/config.h"
#include "runtime/status.h"

typedef struct {
    int warmup;             /* untimed steps after step 0 */
    int steps;              /* timed steps */
    int threads;            /* CPU threads (<= 0: OpenMP default) */
    const char *save_init;  /* when set: write the initial weights as a HF folder here (bench_run only) */
    double peak_tflops;     /* --peak: device peak for MFU; 0: the table of bench_device.h */
    bool find_batch;        /* bench_job_main: largest power-of-two micro_batch that fits first */
    double mem_cap_gib;     /* with find_batch: also require the accountant's peak <= this (0: none) */
    int max_batch;          /* with find_batch: stop doubling here (0: 65536) */
    bool repeat_check;      /* bench_job_main: compare steps 0-1 bitwise with a second run */
} bench_opts;

typedef struct {
    double loss0;           /* mean loss of step 0, before any update */
    double median_step_s;
    double min_step_s;
    double tokens_per_s;    /* tokens per step / median step time */
    double flops_per_token; /* model_layout_flops_per_token (the PyTorch peer's count) */
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

/* The training-job benchmark at any world size and backend
 * (launcher/bench_job.c): initializes MPI (a singleton without mpirun),
 * validates, runs the training job on synthetic tokens, prints medians,
 * MFU and memory on rank 0; returns the process exit code. */
int bench_job_main(sl_config *cfg, const bench_opts *o, int *argc, char ***argv);

#endif
