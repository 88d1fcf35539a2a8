/* tests/gpu/support/gpu_util.h: helpers the GPU-vs-CPU tests share.
 *
 * defines: gpu_die, GPU_MUST, gpu_rel_err, gpu_tiny_model, gpu_round_bf16,
 *          gpu_tiny_params, gpu_arch_name, gpu_backends_open, gpu_test,
 *          gpu_test_main; the error model: U_BF16, U_F32, TOL_MARGIN,
 *          tol_bf16, tol_f32, tol_f32_sum
 *
 * Host-only (no CUDA calls): the tests compare host copies of results.
 */
#ifndef SL_TESTS_GPU_UTIL_H
#define SL_TESTS_GPU_UTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "runtime/config.h"
#include "runtime/status.h"

/* The error model every GPU tolerance is derived from (GPU: bf16 storage,
 * fp32 arithmetic; CPU: fp32; both from the same bf16-exact inputs).
 *   Unit roundoff: bf16 has 8 significand bits, U_BF16 = 2^-8 = 3.9e-3;
 *   fp32 U_F32 = 2^-24 = 6.0e-8.
 *   One rounding to bf16 multiplies a value by (1 + d), |d| <= u, d close to
 *   uniform: RMS u / sqrt(3). k independent roundings on the path from the
 *   common inputs to an output (each intermediate the GPU stores in bf16, P
 *   in attention, the output itself) give a relative error by norm of about
 *   u sqrt(k / 3); products of bf16 values are exact in fp32 and fp32
 *   accumulation adds n U_F32 at most, far below one bf16 rounding. A
 *   tolerance is TOL_MARGIN = 4 times the estimate:
 *     tol_bf16(k) = 4 U_BF16 sqrt(k / 3)   k = 1: 9.0e-3, 2: 1.3e-2, 3: 1.6e-2,
 *                                          30: 4.9e-2, 60: 7.0e-2
 *   fp32 outputs whose k roundings differ (FMA contraction, another formula
 *   order): tol_f32(k) = 4 U_F32 sqrt(k / 3).
 *   fp32 sums of n terms in another order (tree reductions, tensor-core
 *   adders that truncate instead of rounding): each add errs by at most
 *   U_F32 of a partial sum, so worst case n U_F32 of the sum of magnitudes;
 *   for the sums checked here (positive terms, or random-sign terms whose
 *   partial sums stay within the total's size) that bounds the relative
 *   error: tol_f32_sum(n) = 4 n U_F32   (n = 100: 2.4e-5, 1000: 2.4e-4).
 * An error far above its tolerance is a bug (wrong index, missing rescale,
 * a race); one just above it means a rounding the count missed: recount
 * before raising the number. */
#define U_BF16 0x1p-8
#define U_F32 0x1p-24
#define TOL_MARGIN 4.0
static inline double tol_bf16(double k) { return TOL_MARGIN * U_BF16 * sqrt(k / 3.0); }
static inline double tol_f32(double k) { return TOL_MARGIN * U_F32 * sqrt(k / 3.0); }
static inline double tol_f32_sum(double n) { return TOL_MARGIN * U_F32 * n; }

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

/* Rounds each of x to the nearest bf16 (in place), so that both backends
 * see the same values. */
void gpu_round_bf16(float *x, size_t n);

/* tiny_model_params(l, seed, stride 100000) rounded to bf16: the same random
 * weights, norms and biases perturbed, for both backends. Exits through
 * gpu_die on error. */
void gpu_tiny_params(const model_layout *l, uint64_t seed, float *params);

/* A test's name for model_arch arch ("qwen3", or "qwen3+lora" with lora): a
 * static string. */
const char *gpu_arch_name(int arch, bool lora);

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
