/* kernels/cuda/cuda_adamw.cu: the fused AdamW step over a flat fp32 shard
 * (also writing the bf16 compute copy) and the squared-norm reduction.
 *
 * AdamW: one pass reads p, g, m, v (16 bytes per element) and writes p, m, v
 * and the bf16 copy (14 bytes): the minimum for this update. Variant chosen:
 * 4 elements per thread per step with float4 loads/stores (16 bytes) when
 * every pointer is 16-byte aligned, scalar otherwise. Per-element formula
 * and operation order are the CPU backend's (torch.optim.AdamW single-tensor
 * path), so master weights agree to fp32 rounding (FMA contraction aside).
 * The alternative of a multi-tensor launch over a list of shards (PyTorch's
 * fused/foreach) is not needed: FSDP hands the optimizer one flat shard per
 * unit, split only at weight-decay segment boundaries.
 * sq_norm: a fixed grid of CUDA_SQNORM_BLOCKS blocks sums x^2 in double
 * (grid-stride, so the element-to-thread map depends only on n), block
 * partials in shared memory in a fixed tree, then one thread adds the
 * partials in order: bitwise reproducible.
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_launch.h"

struct adamw_hp {
    float b1, b2, ob1, ob2, eps, gs, step_size, bc2_sqrt, decay;
};

__device__ __forceinline__ float adamw_one(float &p, float g, float &m, float &v,
                                           const adamw_hp &h) {
    float gi = g * h.gs;
    float pi = p * h.decay;
    float mi = h.b1 * m + h.ob1 * gi;
    float vi = h.b2 * v + h.ob2 * gi * gi;
    float denom = sqrtf(vi) / h.bc2_sqrt + h.eps;
    pi -= h.step_size * (mi / denom);
    p = pi;
    m = mi;
    v = vi;
    return pi;
}

template <typename TC>
__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, TC *copy, int64_t n,
                             adamw_hp h, bool vec) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        int64_t nv = n / 4;
        for (int64_t i = tid; i < nv; i += stride) {
            float4 pp = reinterpret_cast<float4 *>(p)[i];
            float4 gg = reinterpret_cast<const float4 *>(g)[i];
            float4 mm = reinterpret_cast<float4 *>(m)[i];
            float4 vv = reinterpret_cast<float4 *>(v)[i];
            float o0 = adamw_one(pp.x, gg.x, mm.x, vv.x, h);
            float o1 = adamw_one(pp.y, gg.y, mm.y, vv.y, h);
            float o2 = adamw_one(pp.z, gg.z, mm.z, vv.z, h);
            float o3 = adamw_one(pp.w, gg.w, mm.w, vv.w, h);
            reinterpret_cast<float4 *>(p)[i] = pp;
            reinterpret_cast<float4 *>(m)[i] = mm;
            reinterpret_cast<float4 *>(v)[i] = vv;
            if (copy) {
                copy[i * 4 + 0] = from_f32<TC>(o0);
                copy[i * 4 + 1] = from_f32<TC>(o1);
                copy[i * 4 + 2] = from_f32<TC>(o2);
                copy[i * 4 + 3] = from_f32<TC>(o3);
            }
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride) {
        float pi = p[i], mi = m[i], vi = v[i];
        float o = adamw_one(pi, g[i], mi, vi, h);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
        if (copy)
            copy[i] = from_f32<TC>(o);
    }
}

extern "C" cudaError_t cuk_adamw(cudaStream_t s, float *p, const float *g, float *m, float *v,
                                  void *copy, bool copy_bf16, int64_t n, float beta1, float beta2,
                                  float eps, float grad_scale, float step_size, float bc2_sqrt,
                                  float decay) {
    if (n < 0)
        return cudaErrorInvalidValue;
    if (n == 0)
        return cudaSuccess;
    adamw_hp h = {beta1, beta2, 1.0f - beta1, 1.0f - beta2, eps, grad_scale, step_size, bc2_sqrt,
                  decay};
    /* the copy is written 4 elements at a time only through scalar stores,
     * so its alignment does not matter */
    bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
    unsigned blocks = grid_for(vec ? (n + 3) / 4 : n, 256);
    if (copy_bf16)
        adamw_kernel<bf16><<<blocks, 256, 0, s>>>(p, g, m, v, (bf16 *)copy, n, h, vec);
    else
        adamw_kernel<float><<<blocks, 256, 0, s>>>(p, g, m, v, (float *)copy, n, h, vec);
    return cudaGetLastError();
}

#define SQ_THREADS 256

template <typename T>
__global__ void sq_norm_partial_kernel(const T *x, int64_t n, double *partials) {
    __shared__ double red[SQ_THREADS];
    double acc = 0.0;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        double v = (double)ld_f32(x[i]);
        acc += v * v;
    }
    red[threadIdx.x] = acc;
    __syncthreads();
    for (int w = SQ_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w)
            red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        partials[blockIdx.x] = red[0];
}

__global__ void sq_norm_final_kernel(const double *partials, int n, double *out) {
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += partials[i];
    *out = s;
}

extern "C" cudaError_t cuk_sq_norm(cudaStream_t s, const void *x, bool x_bf16, int64_t n,
                                    double *partials, double *out) {
    if (n < 0)
        return cudaErrorInvalidValue;
    if (x_bf16)
        sq_norm_partial_kernel<<<CUDA_SQNORM_BLOCKS, SQ_THREADS, 0, s>>>((const bf16 *)x, n,
                                                                         partials);
    else
        sq_norm_partial_kernel<<<CUDA_SQNORM_BLOCKS, SQ_THREADS, 0, s>>>((const float *)x, n,
                                                                         partials);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return e;
    sq_norm_final_kernel<<<1, 1, 0, s>>>(partials, CUDA_SQNORM_BLOCKS, out);
    return cudaGetLastError();
}
