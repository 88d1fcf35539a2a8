/* kernels/cuda/cuda_dropout.cu: the dropout op of the CUDA backend (mask
 * definition in kernels/ops.h).
 *
 * The device Philox4x32-10 below is runtime/rng.c's, word for word (same
 * multipliers, Weyl constants, round structure and counter layout), so the
 * GPU mask equals the CPU mask bit for bit; tests/gpu/test_cuda_ops checks
 * that. One thread per Philox block: it draws the block of counter q once
 * and applies its four words to elements 4q .. 4q+3 (those inside
 * [offset, offset + n)). Variant chosen: scalar bf16 loads; a 4-element
 * group whose start depends on offset is not 16-byte aligned in general,
 * and at ~20 integer multiplies per 4 elements the kernel stays memory-bound
 * on A100/H100 without vector loads (the adapter input it masks is a
 * fraction of the step's traffic).
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_launch.h"

#define DROPOUT_THREADS 256
#define DROPOUT_PURPOSE 2u /* RNG_PURPOSE_DROPOUT of runtime/rng.h */

__device__ __forceinline__ uint4 philox4x32_10_dev(uint4 c, uint32_t k0, uint32_t k1) {
#pragma unroll
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint32_t lo0 = 0xD2511F53u * c.x, hi0 = __umulhi(0xD2511F53u, c.x);
        uint32_t lo1 = 0xCD9E8D57u * c.z, hi1 = __umulhi(0xCD9E8D57u, c.z);
        uint4 o;
        o.x = hi1 ^ c.y ^ k0;
        o.y = lo1;
        o.z = hi0 ^ c.w ^ k1;
        o.w = lo0;
        c = o;
    }
    return c;
}

template <typename T>
__global__ void dropout_kernel(T *out, const T *inp, int64_t n, uint64_t offset, uint32_t k0,
                               uint32_t k1, uint32_t thr, float scale) {
    uint64_t q0 = offset >> 2, q_end = (offset + (uint64_t)n + 3) >> 2;
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t q = q0 + (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; q < q_end; q += stride) {
        uint4 w = philox4x32_10_dev(make_uint4((uint32_t)q, (uint32_t)(q >> 32), 0u, DROPOUT_PURPOSE),
                                    k0, k1);
        uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint64_t j = q * 4 + (uint64_t)k;
            if (j < offset || j >= offset + (uint64_t)n)
                continue;
            int64_t i = (int64_t)(j - offset);
            float x = ld_f32(inp[i]);
            out[i] = from_f32<T>(words[k] >= thr ? x * scale : 0.0f);
        }
    }
}

extern "C" cudaError_t cuk_dropout(cudaStream_t s, void *out, const void *inp, bool bf16_data,
                                    int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold,
                                    float scale) {
    if (n < 0)
        return cudaErrorInvalidValue;
    if (n == 0)
        return cudaSuccess;
    int64_t blocks4 = (int64_t)(((offset + (uint64_t)n + 3) >> 2) - (offset >> 2));
    unsigned grid = grid_for(blocks4, DROPOUT_THREADS);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    if (bf16_data)
        dropout_kernel<bf16><<<grid, DROPOUT_THREADS, 0, s>>>((bf16 *)out, (const bf16 *)inp, n, offset,
                                                             k0, k1, threshold, scale);
    else
        dropout_kernel<float><<<grid, DROPOUT_THREADS, 0, s>>>((float *)out, (const float *)inp, n,
                                                              offset, k0, k1, threshold, scale);
    return cudaGetLastError();
}
