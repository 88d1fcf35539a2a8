#include "kernels/device_info.h"

#include <stdio.h>
#include <string.h>

#ifdef SHARDLM_HAVE_CUDA
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>
#endif

bool device_build_has_cuda(void) {
#ifdef SHARDLM_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

void device_info_query(device_info *info) {
    memset(info, 0, sizeof *info);
#ifdef SHARDLM_HAVE_CUDA
    cudaRuntimeGetVersion(&info->runtime_version);
    cudaDriverGetVersion(&info->driver_version);
    ncclGetVersion(&info->nccl_version);
    info->cublaslt_version = cublasLtGetVersion();
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(info->note, sizeof info->note, "%s", cudaGetErrorString(err));
        cudaGetLastError(); /* clear the sticky-free error state */
        return;
    }
    info->count = n;
    if (n > 0) {
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
            snprintf(info->name0, sizeof info->name0, "%s", prop.name);
            info->mem0_bytes = prop.totalGlobalMem;
            info->cc_major = prop.major;
            info->cc_minor = prop.minor;
        }
    } else {
        snprintf(info->note, sizeof info->note, "no CUDA device visible");
    }
#else
    snprintf(info->note, sizeof info->note, "built without CUDA");
#endif
}

int device_info_pick(const device_info *info, int local_rank, int local_world) {
    if (info->count <= 0)
        return -1;
    if (info->count == 1)
        return 0;
    return local_world <= info->count ? local_rank : -1;
}
