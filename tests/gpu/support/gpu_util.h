/* tests/gpu/support/gpu_util.h: helpers the GPU-vs-CPU tests share.
 *
 * defines: gpu_die, GPU_MUST, gpu_rel_err
 *
 * Host-only (no CUDA calls): the tests compare host copies of results.
 */
#ifndef SL_TESTS_GPU_UTIL_H
#define SL_TESTS_GPU_UTIL_H

#include <stddef.h>

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

#endif
