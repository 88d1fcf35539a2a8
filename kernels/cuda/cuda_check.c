/* kernels/cuda/cuda_check.c: the failure paths of kernels/cuda/cuda_check.h. */
#include "kernels/cuda/cuda_check.h"

sl_status sl_check_cuda_fail(const char *file, int line, cudaError_t err, const char *call) {
    return sl_errorf_at(file, line, SL_ERR_CUDA, "%s failed: %s: %s%s", call,
                        cudaGetErrorName(err), cudaGetErrorString(err),
                        err == cudaErrorMemoryAllocation
                            ? " (the GPU is out of memory: lower micro_batch or seq_len, or "
                              "enable activation recomputation)"
                            : "");
}

sl_status sl_check_cublas_fail(const char *file, int line, cublasStatus_t st, const char *call) {
    return sl_errorf_at(file, line, SL_ERR_CUDA, "%s failed: %s: %s", call,
                        cublasLtGetStatusName(st), cublasLtGetStatusString(st));
}

sl_status sl_check_nccl_fail(const char *file, int line, ncclResult_t r, const char *call) {
    return sl_errorf_at(file, line, SL_ERR_CUDA, "%s failed: NCCL error %d: %s (%s)", call, (int)r,
                        ncclGetErrorString(r), ncclGetLastError(NULL));
}
