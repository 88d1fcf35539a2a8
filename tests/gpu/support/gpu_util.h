/* tests/gpu/support/gpu_util.h: helpers the GPU-vs-CPU tests share.
 *
 * defines: gpu_die, GPU_MUST, gpu_rel_err, gpu_tiny_model, gpu_round_bf16,
 *          gpu_tiny_params, gpu_unit_base, gpu_backends_open, gpu_test,
 *          gpu_test_main
 *
 * Host-only (no CUDA calls): the tests compare host copies of results.
 */
#ifndef SL_TESTS_GPU_UTIL_H
#define SL_TESTS_GPU_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "runtime/config.h"
#include "runtime/status.h"

/* Prints "FATAL <what>: <the last error message>" and exits 1. */
void gpu_die(const char *what);

/* Exits through gpu_die unless call returns SL_OK. */
#define GPU_MUST(call)                                                                \
    do {                                                                              \
        if ((call) != SL_OK)                                                          \
            gpu_die(#call);                                                           \
    } while (0)

/* Relative error by norm ||got - want|| / ||want|| (absolute when want is 0);
 * +inf when got holds a NaN or an infinity. */
double gpu_rel_err(const float *got, const float *want, size_t n);

/* config_defaults, then the tiny model both GPU model tests use: 2 layers,
 * d_model 128, 2 heads (head dim 64, the fused attention's main case), vocab
 * 512; llama: 1 KV head, d_ff 352, untied, rope_theta 10000; gpt2: tied,
 * d_ff 4 d_model. Not finalized (the caller may change more first). */
void gpu_tiny_model(sl_config *cfg, int arch, int max_seq_len, int seq_len, double init_std);

/* Rounds each of x to the nearest bf16 (in place), so that both backends
 * see the same values. */
void gpu_round_bf16(float *x, size_t n);

/* tiny_model_params(l, seed, stride 100000) rounded to bf16: the same random
 * weights, norms and biases perturbed, for both backends. Exits through
 * gpu_die on error. */
void gpu_tiny_params(const model_layout *l, uint64_t seed, float *params);

/* Offset of unit's first element in a buffer of all units back to back. */
int64_t gpu_unit_base(const model_layout *l, int unit);

/* The two backends a GPU-vs-CPU test compares: the CPU reference and CUDA
 * device 0 (recording into acct). Returns 0 when both exist; 77 (the ctest
 * skip code) after printing "skipped: no CUDA device (...)" when no GPU is
 * visible; 1 after printing the error when creation fails. Prints the
 * device's name first. */
int gpu_backends_open(mem_accountant *acct, sl_backend **cpu, sl_backend **gpu);

/* What a GPU-vs-CPU test carries through its checks. */
typedef struct {
    sl_backend *cpu, *gpu;
    int failed, checked;
    const char *test; /* the case running, for the messages */
    double max_err;   /* the current case's largest error, where a test tracks it */
} gpu_test;

/* A GPU-vs-CPU test's main: opens both backends (gpu_backends_open, device
 * memory recorded), calls run, then prints the peak device memory, destroys
 * the backends and prints "<failed> of <checked> checks failed". Returns the
 * exit code: gpu_backends_open's when it is not 0, else 1 when a check
 * failed, else 0. */
int gpu_test_main(void (*run)(gpu_test *t));

#endif
