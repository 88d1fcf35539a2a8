/* kernels/cuda/cuda_common.cuh: device helpers shared by the .cu files of the
 * CUDA backend (bf16 <-> fp32, 16-byte vector loads, warp/block reductions,
 * launch-size helpers). Internal; included only by the .cu files beside it.
 *
 * defines: bf16 (alias of __nv_bfloat16), ld_f32, st_bf16, vec8_ok, load8,
 *          store8, warp_sum, warp_max, grid_for
 *
 * Storage is bf16, arithmetic fp32: every kernel converts on load with
 * ld_f32 and rounds once on store with __float2bfloat16_rn (round to
 * nearest even, the same rounding as runtime/tensor.h's bf16_from_f32).
 */
#ifndef SL_KERNELS_CUDA_CUDA_COMMON_CUH
#define SL_KERNELS_CUDA_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ld_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ld_f32(float x) { return x; }
__device__ __forceinline__ bf16 st_bf16(float x) { return __float2bfloat16_rn(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return st_bf16(x); }

/* 8 bf16 = 16 bytes: one 128-bit load/store. */
struct __align__(16) bf16x8 {
    bf16 v[8];
};

/* True when p is 16-byte aligned, so 8-wide bf16 (or 4-wide fp32) access is
 * legal at p + 8 * i. Host and device. */
__host__ __device__ __forceinline__ bool aligned16(const void *p) {
    return ((uintptr_t)p & 15u) == 0;
}

__device__ __forceinline__ void load8(const bf16 *p, float out[8]) {
    bf16x8 v = *reinterpret_cast<const bf16x8 *>(p);
#pragma unroll
    for (int i = 0; i < 8; i++)
        out[i] = ld_f32(v.v[i]);
}

__device__ __forceinline__ void store8(bf16 *p, const float in[8]) {
    bf16x8 v;
#pragma unroll
    for (int i = 0; i < 8; i++)
        v.v[i] = st_bf16(in[i]);
    *reinterpret_cast<bf16x8 *>(p) = v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Blocks for a grid-stride loop over n items with `threads` per block:
 * enough to fill the device several times over, never more than needed. */
static inline unsigned grid_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    if (b > 65535LL * 16)
        b = 65535LL * 16;
    return (unsigned)b;
}

#endif
