/* kernels/cuda/cuda_norm.cu: layernorm and rmsnorm (forward, backward) and
 * the deterministic column sums that produce their dweight/dbias and the
 * linear layers' dbias.
 *
 * Variants considered (llm.c dev/cuda/layernorm_forward.cu has the same
 * ladder):
 *   1. one thread per row: too little parallelism for B*T of a few thousand
 *      rows and uncoalesced loads. Rejected.
 *   2. one block per row with shared-memory reductions: two __syncthreads per
 *      reduction and idle threads for C = 768. Rejected.
 *   3. one warp per row (chosen): lanes stride the row with 16-byte loads
 *      (8 bf16, when C % 8 == 0 and the pointers are 16-byte aligned; a
 *      scalar path otherwise), reductions are register shuffles. Statistics
 *      are two-pass (mean, then the centered second moment) in fp32; the
 *      second and third passes re-read the row from L1/L2, not from DRAM.
 * Parameter gradients: a per-row kernel cannot own a column, and atomics
 * would make the sums order-dependent (ops.h asks for bitwise reproducible
 * results). So dweight/dbias come from cuk_colsum: a (column block x row
 * chunk) grid writes fp32 partials, then one thread per column adds its
 * partials in chunk order. The number of chunks depends only on the shape
 * and the SM count, so results repeat bitwise on the same device.
 * (cuBLASLt's BGRADB epilogue overwrites instead of accumulating and would
 * need the same extra pass; it was not used for dbias for that reason.)
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_launch.h"

#define NORM_WARPS 4 /* rows per block */

/* Sums f(x_i) over a row with lanes striding; VEC: 8 elements per lane step. */
template <bool VEC, typename F>
__device__ __forceinline__ float row_reduce(const bf16 *x, int c, int lane, F f) {
    float acc = 0.0f;
    if (VEC) {
        for (int i = lane * 8; i < c; i += 32 * 8) {
            float v[8];
            load8(x + i, v);
#pragma unroll
            for (int j = 0; j < 8; j++)
                acc += f(v[j], i + j);
        }
    } else {
        for (int i = lane; i < c; i += 32)
            acc += f(ld_f32(x[i]), i);
    }
    return warp_sum(acc);
}

template <bool VEC>
__global__ void layernorm_fwd_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp,
                                     const bf16 *w, const bf16 *b, int64_t rows, int c,
                                     float eps) {
    int64_t row = (int64_t)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const bf16 *x = inp + row * c;
    float m = row_reduce<VEC>(x, c, lane, [](float v, int) { return v; }) / (float)c;
    float var = row_reduce<VEC>(x, c, lane, [m](float v, int) { return (v - m) * (v - m); });
    float r = rsqrtf(var / (float)c + eps);
    bf16 *y = out + row * c; /* may alias x: every read of the row happened above */
    if (VEC) {
        for (int i = lane * 8; i < c; i += 32 * 8) {
            float v[8], wv[8], bv[8];
            load8(x + i, v);
            load8(w + i, wv);
            load8(b + i, bv);
#pragma unroll
            for (int j = 0; j < 8; j++)
                v[j] = (v[j] - m) * r * wv[j] + bv[j];
            store8(y + i, v);
        }
    } else {
        for (int i = lane; i < c; i += 32)
            y[i] = st_bf16((ld_f32(x[i]) - m) * r * ld_f32(w[i]) + ld_f32(b[i]));
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

/* dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w;
 * RMS: xhat = x * rstd and no mean(g) term. */
template <bool VEC, bool RMS>
__global__ void norm_bwd_dinp_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp, const bf16 *w,
                                     const float *mean, const float *rstd, int64_t rows, int c,
                                     bool accumulate) {
    int64_t row = (int64_t)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const bf16 *x = inp + row * c, *dy = dout + row * c;
    float m = RMS ? 0.0f : mean[row], r = rstd[row];
    float sg = 0.0f, sgx = 0.0f;
    if (VEC) {
        for (int i = lane * 8; i < c; i += 32 * 8) {
            float xv[8], dv[8], wv[8];
            load8(x + i, xv);
            load8(dy + i, dv);
            load8(w + i, wv);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float g = dv[j] * wv[j];
                sg += g;
                sgx += g * ((xv[j] - m) * r);
            }
        }
    } else {
        for (int i = lane; i < c; i += 32) {
            float g = ld_f32(dy[i]) * ld_f32(w[i]);
            sg += g;
            sgx += g * ((ld_f32(x[i]) - m) * r);
        }
    }
    float mg = RMS ? 0.0f : warp_sum(sg) / (float)c;
    float mgx = warp_sum(sgx) / (float)c;
    bf16 *dx = dinp + row * c;
    if (VEC) {
        for (int i = lane * 8; i < c; i += 32 * 8) {
            float xv[8], dv[8], wv[8], o[8];
            load8(x + i, xv);
            load8(dy + i, dv);
            load8(w + i, wv);
            if (accumulate)
                load8(dx + i, o);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float val = r * (dv[j] * wv[j] - mg - (xv[j] - m) * r * mgx);
                o[j] = accumulate ? o[j] + val : val;
            }
            store8(dx + i, o);
        }
    } else {
        for (int i = lane; i < c; i += 32) {
            float val = r * (ld_f32(dy[i]) * ld_f32(w[i]) - mg - (ld_f32(x[i]) - m) * r * mgx);
            dx[i] = st_bf16(accumulate ? ld_f32(dx[i]) + val : val);
        }
    }
}

static bool norm_vec_ok(int64_t c, const void *a, const void *b, const void *d, const void *e) {
    return c % 8 == 0 && aligned16(a) && aligned16(b) && aligned16(d) && (!e || aligned16(e));
}

static unsigned norm_blocks(int64_t rows) { return (unsigned)((rows + NORM_WARPS - 1) / NORM_WARPS); }

static bool norm_dims_ok(int64_t rows, int64_t c) {
    return rows >= 0 && c > 0 && c <= (1 << 30) && (rows + NORM_WARPS - 1) / NORM_WARPS <= 0x7fffffffLL;
}

extern "C" cudaError_t cuk_layernorm_fwd(cudaStream_t s, void *out, float *mean, float *rstd,
                                          const void *inp, const void *weight, const void *bias,
                                          int64_t rows, int64_t c, float eps) {
    if (!norm_dims_ok(rows, c))
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)inp, *w = (const bf16 *)weight, *b = (const bf16 *)bias;
    if (norm_vec_ok(c, out, inp, weight, bias))
        layernorm_fwd_kernel<true><<<norm_blocks(rows), NORM_WARPS * 32, 0, s>>>(
            o, mean, rstd, x, w, b, rows, (int)c, eps);
    else
        layernorm_fwd_kernel<false><<<norm_blocks(rows), NORM_WARPS * 32, 0, s>>>(
            o, mean, rstd, x, w, b, rows, (int)c, eps);
    return cudaGetLastError();
}

template <bool RMS>
static cudaError_t norm_bwd_launch(cudaStream_t s, void *dinp, const void *dout, const void *inp,
                                   const void *weight, const float *mean, const float *rstd,
                                   int64_t rows, int64_t c, bool accumulate) {
    if (!norm_dims_ok(rows, c))
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    bf16 *dx = (bf16 *)dinp;
    const bf16 *dy = (const bf16 *)dout, *x = (const bf16 *)inp, *w = (const bf16 *)weight;
    if (norm_vec_ok(c, dinp, dout, inp, weight))
        norm_bwd_dinp_kernel<true, RMS><<<norm_blocks(rows), NORM_WARPS * 32, 0, s>>>(
            dx, dy, x, w, mean, rstd, rows, (int)c, accumulate);
    else
        norm_bwd_dinp_kernel<false, RMS><<<norm_blocks(rows), NORM_WARPS * 32, 0, s>>>(
            dx, dy, x, w, mean, rstd, rows, (int)c, accumulate);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_layernorm_bwd_dinp(cudaStream_t s, void *dinp, const void *dout,
                                               const void *inp, const void *weight,
                                               const float *mean, const float *rstd,
                                               int64_t rows, int64_t c, bool accumulate) {
    return norm_bwd_launch<false>(s, dinp, dout, inp, weight, mean, rstd, rows, c, accumulate);
}

template <bool VEC>
__global__ void rmsnorm_fwd_kernel(bf16 *out, float *rstd, const bf16 *inp, const bf16 *w,
                                   int64_t rows, int c, float eps) {
    int64_t row = (int64_t)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const bf16 *x = inp + row * c;
    float ss = row_reduce<VEC>(x, c, lane, [](float v, int) { return v * v; });
    float r = rsqrtf(ss / (float)c + eps);
    bf16 *y = out + row * c;
    /* Hugging Face LlamaRMSNorm order: weight * (x * rstd) */
    if (VEC) {
        for (int i = lane * 8; i < c; i += 32 * 8) {
            float v[8], wv[8];
            load8(x + i, v);
            load8(w + i, wv);
#pragma unroll
            for (int j = 0; j < 8; j++)
                v[j] = wv[j] * (v[j] * r);
            store8(y + i, v);
        }
    } else {
        for (int i = lane; i < c; i += 32)
            y[i] = st_bf16(ld_f32(w[i]) * (ld_f32(x[i]) * r));
    }
    if (lane == 0)
        rstd[row] = r;
}

extern "C" cudaError_t cuk_rmsnorm_fwd(cudaStream_t s, void *out, float *rstd, const void *inp,
                                        const void *weight, int64_t rows, int64_t c, float eps) {
    if (!norm_dims_ok(rows, c))
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)inp, *w = (const bf16 *)weight;
    if (norm_vec_ok(c, out, inp, weight, NULL))
        rmsnorm_fwd_kernel<true><<<norm_blocks(rows), NORM_WARPS * 32, 0, s>>>(o, rstd, x, w,
                                                                               rows, (int)c, eps);
    else
        rmsnorm_fwd_kernel<false><<<norm_blocks(rows), NORM_WARPS * 32, 0, s>>>(o, rstd, x, w,
                                                                                rows, (int)c, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_rmsnorm_bwd_dinp(cudaStream_t s, void *dinp, const void *dout,
                                             const void *inp, const void *weight,
                                             const float *rstd, int64_t rows, int64_t c,
                                             bool accumulate) {
    return norm_bwd_launch<true>(s, dinp, dout, inp, weight, NULL, rstd, rows, c, accumulate);
}

/* ------------------------------------------------------------------------ */
/* column sums */

#define COLSUM_COLS 64 /* columns per block: 32 lanes x 2 */
#define COLSUM_ROWS 8  /* row lanes per block (blockDim.y) */

/* partials: [0, n_split * c) for dw, [n_split * c, 2 n_split c) for db. */
__global__ void colsum_partial_kernel(int mode, float *partials, const bf16 *dout, const bf16 *inp,
                                      const float *mean, const float *rstd, int64_t rows, int c,
                                      int n_split) {
    __shared__ float sw[COLSUM_ROWS][COLSUM_COLS];
    __shared__ float sb[COLSUM_ROWS][COLSUM_COLS];
    int tx = threadIdx.x, ty = threadIdx.y;
    int split = blockIdx.y;
    int64_t per = (rows + n_split - 1) / n_split;
    int64_t r0 = (int64_t)split * per, r1 = r0 + per < rows ? r0 + per : rows;
    float aw[2] = {0.0f, 0.0f}, ab[2] = {0.0f, 0.0f};
    for (int64_t r = r0 + ty; r < r1; r += COLSUM_ROWS) {
        float mu = mode == CUDA_COLSUM_LAYERNORM ? mean[r] : 0.0f;
        float rs = mode == CUDA_COLSUM_BIAS ? 0.0f : rstd[r];
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int col = blockIdx.x * COLSUM_COLS + tx * 2 + j;
            if (col < c) {
                float g = ld_f32(dout[r * c + col]);
                ab[j] += g;
                if (mode != CUDA_COLSUM_BIAS)
                    aw[j] += g * ((ld_f32(inp[r * c + col]) - mu) * rs);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        sw[ty][tx * 2 + j] = aw[j];
        sb[ty][tx * 2 + j] = ab[j];
    }
    __syncthreads();
    if (ty == 0) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int cc = tx * 2 + j, col = blockIdx.x * COLSUM_COLS + cc;
            float w = 0.0f, b = 0.0f;
            for (int y = 0; y < COLSUM_ROWS; y++) { /* fixed order */
                w += sw[y][cc];
                b += sb[y][cc];
            }
            if (col < c) {
                partials[(int64_t)split * c + col] = w;
                partials[((int64_t)n_split + split) * c + col] = b;
            }
        }
    }
}

__global__ void colsum_final_kernel(float *dw, float *db, const float *partials, int c,
                                    int n_split) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c)
        return;
    float w = 0.0f, b = 0.0f;
    for (int i = 0; i < n_split; i++) {
        w += partials[(int64_t)i * c + col];
        b += partials[((int64_t)n_split + i) * c + col];
    }
    if (dw)
        dw[col] += w;
    if (db)
        db[col] += b;
}

extern "C" int cuk_colsum_splits(int64_t rows, int64_t c, int sm_count) {
    int64_t col_blocks = (c + COLSUM_COLS - 1) / COLSUM_COLS;
    int64_t want = (4LL * (sm_count > 0 ? sm_count : 1) + col_blocks - 1) / col_blocks;
    int64_t max_by_rows = (rows + 4 * COLSUM_ROWS - 1) / (4 * COLSUM_ROWS); /* >= 32 rows each */
    if (want > max_by_rows)
        want = max_by_rows;
    if (want > 1024)
        want = 1024;
    return want < 1 ? 1 : (int)want;
}

extern "C" cudaError_t cuk_colsum(cudaStream_t s, cuda_colsum_mode mode, float *dw, float *db,
                                   const void *dout, const void *inp, const float *mean,
                                   const float *rstd, int64_t rows, int64_t c, float *partials,
                                   int n_split) {
    if (c <= 0 || c > (1 << 30) || n_split < 1 || n_split > 65535 || rows < 0)
        return cudaErrorInvalidValue;
    if (!dw && !db)
        return cudaSuccess;
    dim3 grid((unsigned)((c + COLSUM_COLS - 1) / COLSUM_COLS), (unsigned)n_split);
    dim3 block(COLSUM_COLS / 2, COLSUM_ROWS);
    colsum_partial_kernel<<<grid, block, 0, s>>>((int)mode, partials, (const bf16 *)dout,
                                                 (const bf16 *)inp, mean, rstd, rows, (int)c,
                                                 n_split);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return e;
    colsum_final_kernel<<<(unsigned)((c + 255) / 256), 256, 0, s>>>(dw, db, partials, (int)c,
                                                                      n_split);
    return cudaGetLastError();
}
