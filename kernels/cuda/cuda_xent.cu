/* kernels/cuda/cuda_xent.cu: softmax cross-entropy with an ignore index, the
 * fused form (full bf16 logits rows) and the vocab-chunked form.
 *
 * Variant chosen: one 256-thread block per row; three passes over the row
 * (max, sum of exp, write dlogits), each a block reduction. Logits are bf16
 * in memory and fp32 in registers: no (rows, V) fp32 buffer ever exists, and
 * with the chunked entries only (rows, Vc) bf16 logits do. The second and
 * third passes re-read a row (100 KB for V = 50257) from L2. A single-pass
 * online-softmax variant (running max and rescaled sum per thread) saves one
 * read but cannot write dlogits without the final sum, so the write pass
 * stays; the saved pass is ~25% of this op's bytes and was left for
 * measurement on a GPU.
 * Per-row losses go to a double array that the host sums in row order (the
 * CPU backend's order), so loss sums match the reference to double rounding
 * of identical fp32 row losses.
 * In-place dlogits (aliasing logits): the target logit is read before the
 * first block barrier, and each element is read by the same thread that
 * overwrites it, after the reductions that needed the row.
 */
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_launch.h"

#define XENT_THREADS 256

/* Block-wide reduction; every thread gets the result. red: 32 floats of
 * shared scratch. */
template <bool MAX>
__device__ float block_reduce(float v, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    float r = lane < nw ? red[lane] : (MAX ? -INFINITY : 0.0f);
    return MAX ? warp_max(r) : warp_sum(r);
}

/* max and sum exp(z - max) of one row of n bf16 values. */
__device__ void row_max_sum(const bf16 *z, int64_t n, float *red, float *mx_out, float *sum_out) {
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        mx = fmaxf(mx, ld_f32(z[j]));
    mx = block_reduce<true>(mx, red);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        s += expf(ld_f32(z[j]) - mx);
    *sum_out = block_reduce<false>(s, red);
    *mx_out = mx;
}

__global__ void xent_fused_kernel(float *losses, double *row_loss, bf16 *dlogits,
                                  const bf16 *logits, const int32_t *targets, int64_t vocab,
                                  float gs, uint32_t *bad_row) {
    __shared__ float red[32];
    int64_t r = blockIdx.x;
    const bf16 *z = logits + r * vocab;
    bf16 *dz = dlogits ? dlogits + r * vocab : NULL;
    int32_t t = targets[r];
    if ((int64_t)t >= vocab) {
        if (threadIdx.x == 0)
            atomicMin(bad_row, (uint32_t)r);
        t = -1; /* reported to the caller; the row is treated as ignored */
    }
    if (t < 0) {
        if (threadIdx.x == 0) {
            row_loss[r] = 0.0;
            if (losses)
                losses[r] = 0.0f;
        }
        if (dz)
            for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
                dz[j] = st_bf16(0.0f);
        return;
    }
    float zt = ld_f32(z[t]); /* before any write to dz (may alias z) */
    float mx, sum;
    row_max_sum(z, vocab, red, &mx, &sum);
    if (dz) {
        float k = gs / sum;
        for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
            float d = expf(ld_f32(z[j]) - mx) * k;
            if (j == t)
                d -= gs;
            dz[j] = st_bf16(d);
        }
    }
    if (threadIdx.x == 0) {
        double loss = (double)mx + log((double)sum) - (double)zt;
        row_loss[r] = loss;
        if (losses)
            losses[r] = (float)loss;
    }
}

extern "C" cudaError_t cuk_xent_fused(cudaStream_t s, float *losses, double *row_loss,
                                       void *dlogits, const void *logits, const int32_t *targets,
                                       int64_t rows, int64_t vocab, float grad_scale,
                                       uint32_t *bad_row) {
    if (rows < 0 || rows > 0x7fffffffLL || vocab <= 0 || vocab > 0x7fffffffLL)
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    xent_fused_kernel<<<(unsigned)rows, XENT_THREADS, 0, s>>>(
        losses, row_loss, (bf16 *)dlogits, (const bf16 *)logits, targets, vocab, grad_scale,
        bad_row);
    return cudaGetLastError();
}

/* Merges the chunk's (max, sum) into the running stats exactly as the CPU
 * backend does (cpu_xent.c), so both follow the same rounding path. */
__global__ void xent_stats_kernel(float *stats, const bf16 *logits, const int32_t *targets,
                                  int64_t vc, int64_t v0, bool first) {
    __shared__ float red[32];
    int64_t r = blockIdx.x;
    const bf16 *z = logits + r * vc;
    float mc, sc;
    row_max_sum(z, vc, red, &mc, &sc);
    if (threadIdx.x != 0)
        return;
    float *sr = stats + r * 3;
    if (first) {
        sr[0] = -INFINITY;
        sr[1] = 0.0f;
        sr[2] = 0.0f;
    }
    float m_old = sr[0];
    if (sr[1] == 0.0f || mc > m_old) {
        double rescale = sr[1] == 0.0f ? 0.0 : exp((double)m_old - (double)mc);
        sr[1] = (float)((double)sr[1] * rescale + (double)sc);
        sr[0] = mc;
    } else {
        sr[1] = (float)((double)sr[1] + (double)sc * exp((double)mc - (double)m_old));
    }
    int64_t t = targets[r];
    if (t >= v0 && t < v0 + vc)
        sr[2] = ld_f32(z[t - v0]);
}

extern "C" cudaError_t cuk_xent_stats_chunk(cudaStream_t s, float *stats, const void *logits,
                                             const int32_t *targets, int64_t rows, int64_t vc,
                                             int64_t v0, bool first_chunk) {
    if (rows < 0 || rows > 0x7fffffffLL || vc <= 0)
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    xent_stats_kernel<<<(unsigned)rows, XENT_THREADS, 0, s>>>(stats, (const bf16 *)logits,
                                                              targets, vc, v0, first_chunk);
    return cudaGetLastError();
}

__global__ void xent_loss_kernel(float *losses, float *lse, double *row_loss, const float *stats,
                                 const int32_t *targets, int64_t rows) {
    int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    const float *sr = stats + r * 3;
    double l = (double)sr[0] + log((double)sr[1]);
    lse[r] = (float)l;
    double loss = targets[r] < 0 ? 0.0 : l - (double)sr[2];
    row_loss[r] = loss;
    if (losses)
        losses[r] = (float)loss;
}

extern "C" cudaError_t cuk_xent_loss(cudaStream_t s, float *losses, float *lse,
                                      double *row_loss, const float *stats,
                                      const int32_t *targets, int64_t rows) {
    if (rows < 0)
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    xent_loss_kernel<<<grid_for(rows, 256), 256, 0, s>>>(losses, lse, row_loss, stats, targets,
                                                         rows);
    return cudaGetLastError();
}

__global__ void xent_bwd_kernel(bf16 *dlogits, const bf16 *logits, const float *lse,
                                const int32_t *targets, int64_t vc, int64_t v0, float gs) {
    int64_t r = blockIdx.x;
    int64_t t = targets[r];
    const bf16 *z = logits + r * vc;
    bf16 *dz = dlogits + r * vc;
    float l = lse[r];
    for (int64_t j = threadIdx.x; j < vc; j += blockDim.x) {
        float d = 0.0f;
        if (t >= 0) {
            d = gs * expf(ld_f32(z[j]) - l);
            if (j + v0 == t)
                d -= gs;
        }
        dz[j] = st_bf16(d);
    }
}

extern "C" cudaError_t cuk_xent_bwd_chunk(cudaStream_t s, void *dlogits, const void *logits,
                                           const float *lse, const int32_t *targets, int64_t rows,
                                           int64_t vc, int64_t v0, float grad_scale) {
    if (rows < 0 || rows > 0x7fffffffLL || vc <= 0)
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    xent_bwd_kernel<<<(unsigned)rows, XENT_THREADS, 0, s>>>(
        (bf16 *)dlogits, (const bf16 *)logits, lse, targets, vc, v0, grad_scale);
    return cudaGetLastError();
}
