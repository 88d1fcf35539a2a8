/* train/bench.h: the training-step benchmark on synthetic data.
 *
 * defines: bench_opts, train_bench_run
 *
 * train_bench_run (train/bench.c) runs the training job of `shardlm train`
 * (FSDP, model and optimizer; any world size, CPU or CUDA backend; one
 * process without mpirun) on synthetic tokens (train_synthetic_tokens,
 * which benchmarks/peers/torch_step.py reproduces), validates before it
 * times and prints medians, MFU and memory on rank 0. The command line
 * lives in launcher/cmd_bench.c.
 */
#ifndef SL_TRAIN_BENCH_H
#define SL_TRAIN_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "parallel/topology.h"
#include "runtime/config.h"
#include "runtime/status.h"

typedef struct {
    int warmup;             /* untimed steps after step 0 */
    int steps;              /* timed steps */
    int threads;            /* CPU threads (<= 0: OpenMP default) */
    const char *save_init;  /* when set: write the initial weights as a HF folder here (one CPU process only) */
    double peak_tflops;     /* --peak: device peak for MFU; 0: the table of bench_device.h */
    bool find_batch;        /* train_bench_run: largest power-of-two micro_batch that fits first */
    double mem_cap_gib;     /* with find_batch: also require the accountant's peak <= this (0: none) */
    int max_batch;          /* with find_batch: stop doubling here (0: 65536) */
    bool repeat_check;      /* train_bench_run: compare steps 0-1 bitwise with a second run */
} bench_opts;

/* [--find-batch], a reference run for the repeat check, then the job:
 * validation, warmup, timed steps, the report (collective over topo). */
sl_status train_bench_run(sl_config *cfg, topology *topo, const bench_opts *o);

#endif
