/* tests/gpu/support/gpu_util.h: helpers the GPU-vs-CPU tests share.
 *
 * defines: gpu_die, GPU_MUST, gpu_rel_err, gpu_tiny_model, gpu_unit_base,
 *          gpu_arch_name,
 *          gpu_backends_open
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
 * 512; llama-like: 1 KV head, d_ff 352, untied, rope_theta 10000 (qwen3:
 * head_dim 96, llama3 rope scaling factor 8 over 64 positions); gpt2: tied,
 * d_ff 4 d_model. Not finalized (the caller may change more first). */
void gpu_tiny_model(sl_config *cfg, int arch, int max_seq_len, int seq_len, double init_std);

/* A test's name for model_arch arch ("qwen3", or "qwen3+lora" with lora): a
 * static string. */
const char *gpu_arch_name(int arch, bool lora);

/* Offset of unit's first element in a buffer of all units back to back. */
int64_t gpu_unit_base(const model_layout *l, int unit);

/* The two backends a GPU-vs-CPU test compares: the CPU reference and CUDA
 * device 0 (recording into acct). Returns 0 when both exist; 77 (the ctest
 * skip code) after printing "skipped: no CUDA device (...)" when no GPU is
 * visible; 1 after printing the error when creation fails. Prints the
 * device's name first. */
int gpu_backends_open(mem_accountant *acct, sl_backend **cpu, sl_backend **gpu);

#endif
