/* kernels/cuda/cuda_check.h: CUDA, cuBLASLt and NCCL return codes as
 * sl_status, in the style of runtime/check.h (built only with CUDA).
 *
 * defines: SL_CHECK_CUDA, SL_CHECK_LAUNCH, SL_CHECK_CUBLAS, SL_CHECK_NCCL,
 *          sl_check_cuda_fail, sl_check_cublas_fail, sl_check_nccl_fail
 *
 * Each macro evaluates the call once; on failure it records "<call> failed:
 * <library error name>: <library message>" at the caller's file:line and
 * returns SL_ERR_CUDA from the enclosing function. SL_CHECK_LAUNCH wraps the
 * kernels/cuda/cuda_launch.h launchers, which return cudaGetLastError()
 * after their launches, so every launch is checked where it is made.
 * Asynchronous faults (an illegal address inside a kernel) surface at the
 * next synchronizing call, which these macros check too.
 */
#ifndef SL_KERNELS_CUDA_CUDA_CHECK_H
#define SL_KERNELS_CUDA_CUDA_CHECK_H

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "runtime/status.h"

#ifdef __cplusplus
extern "C" {
#endif

sl_status sl_check_cuda_fail(const char *file, int line, cudaError_t err, const char *call);
sl_status sl_check_cublas_fail(const char *file, int line, cublasStatus_t st, const char *call);
sl_status sl_check_nccl_fail(const char *file, int line, ncclResult_t r, const char *call);

#ifdef __cplusplus
}
#endif

#define SL_CHECK_CUDA(call)                                                        \
    do {                                                                           \
        cudaError_t sl_cuda_rc_ = (call);                                          \
        if (sl_cuda_rc_ != cudaSuccess)                                            \
            return sl_check_cuda_fail(__FILE__, __LINE__, sl_cuda_rc_, #call);     \
    } while (0)

#define SL_CHECK_LAUNCH(call) SL_CHECK_CUDA(call)

#define SL_CHECK_CUBLAS(call)                                                      \
    do {                                                                           \
        cublasStatus_t sl_cublas_rc_ = (call);                                     \
        if (sl_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                \
            return sl_check_cublas_fail(__FILE__, __LINE__, sl_cublas_rc_, #call); \
    } while (0)

#define SL_CHECK_NCCL(call)                                                        \
    do {                                                                           \
        ncclResult_t sl_nccl_rc_ = (call);                                         \
        if (sl_nccl_rc_ != ncclSuccess)                                            \
            return sl_check_nccl_fail(__FILE__, __LINE__, sl_nccl_rc_, #call);     \
    } while (0)

#endif
