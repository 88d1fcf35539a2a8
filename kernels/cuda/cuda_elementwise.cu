/* kernels/cuda/cuda_elementwise.cu: memory-bound ops of the CUDA backend:
 * gelu, swiglu, add, scale, cast, bias add, rope, embedding forward/backward.
 *
 * Variant chosen: one grid-stride kernel template (ew_kernel) that moves 8
 * bf16 (16 bytes) per thread per step when every pointer is 16-byte aligned,
 * with a scalar tail for n % 8, and a scalar path otherwise. 16-byte accesses
 * are what reach DRAM bandwidth on A100/H100 (llm.c's "x128" packing); 4- and
 * 8-byte versions issue 2-4x the load instructions for the same bytes. The
 * grid is capped (grid_for) so each thread handles several vectors.
 * gelu uses 0.5 (1 + tanh u) = sigmoid(2u) (one __expf) like the CPU backend;
 * __expf's 2-ulp error is far below bf16's 8 bits.
 * Embedding backward: atomics on dwte would make the fp32 sums depend on
 * scheduling, so the host groups rows by token (stable sort, see
 * cuda_ops.c) and one block per distinct token sums its rows in row order.
 */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_launch.h"

#define EW_THREADS 256

/* Applies f(in[NIN], out[NOUT]) elementwise. Outputs may alias inputs at
 * the same index (every input of an index is loaded before its outputs are
 * stored). */
template <int NIN, int NOUT, typename F>
__global__ void ew_kernel(F f, bf16 *o0, bf16 *o1, const bf16 *i0, const bf16 *i1,
                          const bf16 *i2, int64_t n, bool vec) {
    bf16 *outs[2] = {o0, o1};
    const bf16 *ins[3] = {i0, i1, i2};
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        int64_t nv = n / 8;
        for (int64_t v = tid; v < nv; v += stride) {
            float a[NIN > 0 ? NIN : 1][8], r[NOUT][8];
#pragma unroll
            for (int k = 0; k < NIN; k++)
                load8(ins[k] + v * 8, a[k]);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float x[NIN > 0 ? NIN : 1], y[NOUT];
#pragma unroll
                for (int k = 0; k < NIN; k++)
                    x[k] = a[k][j];
                f(x, y);
#pragma unroll
                for (int k = 0; k < NOUT; k++)
                    r[k][j] = y[k];
            }
#pragma unroll
            for (int k = 0; k < NOUT; k++)
                store8(outs[k] + v * 8, r[k]);
        }
        done = nv * 8;
    }
    for (int64_t i = done + tid; i < n; i += stride) {
        float x[NIN > 0 ? NIN : 1], y[NOUT];
#pragma unroll
        for (int k = 0; k < NIN; k++)
            x[k] = ld_f32(ins[k][i]);
        f(x, y);
#pragma unroll
        for (int k = 0; k < NOUT; k++)
            outs[k][i] = st_bf16(y[k]);
    }
}

template <int NIN, int NOUT, typename F>
static cudaError_t ew_launch(cudaStream_t s, F f, void *o0, void *o1, const void *i0,
                             const void *i1, const void *i2, int64_t n) {
    if (n < 0)
        return cudaErrorInvalidValue;
    if (n == 0)
        return cudaSuccess;
    bool vec = aligned16(o0) && (!o1 || aligned16(o1)) && (!i0 || aligned16(i0)) &&
               (!i1 || aligned16(i1)) && (!i2 || aligned16(i2));
    unsigned blocks = grid_for(vec ? (n + 7) / 8 : n, EW_THREADS);
    ew_kernel<NIN, NOUT, F><<<blocks, EW_THREADS, 0, s>>>(f, (bf16 *)o0, (bf16 *)o1,
                                                          (const bf16 *)i0, (const bf16 *)i1,
                                                          (const bf16 *)i2, n, vec);
    return cudaGetLastError();
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f

struct gelu_fwd_op {
    __device__ void operator()(const float *x, float *y) const {
        float u = GELU_SCALE * (x[0] + GELU_CUBIC * x[0] * x[0] * x[0]);
        y[0] = x[0] / (1.0f + __expf(-2.0f * u));
    }
};

/* in: x, dout. gelu'(x) = s + 2 x s (1 - s) du/dx with s = sigmoid(2u). */
struct gelu_bwd_op {
    __device__ void operator()(const float *in, float *y) const {
        float x = in[0];
        float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
        float sg = 1.0f / (1.0f + __expf(-2.0f * u));
        float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
        y[0] = in[1] * (sg + 2.0f * x * sg * (1.0f - sg) * du);
    }
};

struct swiglu_fwd_op {
    __device__ void operator()(const float *in, float *y) const {
        float g = in[0];
        y[0] = g / (1.0f + __expf(-g)) * in[1];
    }
};

/* in: gate, up, dout; out: dgate, dup. */
struct swiglu_bwd_op {
    __device__ void operator()(const float *in, float *y) const {
        float g = in[0], u = in[1], d = in[2];
        float sig = 1.0f / (1.0f + __expf(-g));
        y[0] = d * u * sig * (1.0f + g * (1.0f - sig));
        y[1] = d * g * sig;
    }
};

struct add_op {
    __device__ void operator()(const float *in, float *y) const { y[0] = in[0] + in[1]; }
};

struct scale_op {
    float s;
    __device__ void operator()(const float *in, float *y) const { y[0] = in[0] * s; }
};

extern "C" cudaError_t cuk_gelu_fwd(cudaStream_t s, void *out, const void *inp, int64_t n) {
    return ew_launch<1, 1>(s, gelu_fwd_op{}, out, NULL, inp, NULL, NULL, n);
}

extern "C" cudaError_t cuk_gelu_bwd(cudaStream_t s, void *dinp, const void *inp,
                                     const void *dout, int64_t n) {
    return ew_launch<2, 1>(s, gelu_bwd_op{}, dinp, NULL, inp, dout, NULL, n);
}

extern "C" cudaError_t cuk_swiglu_fwd(cudaStream_t s, void *out, const void *gate,
                                       const void *up, int64_t n) {
    return ew_launch<2, 1>(s, swiglu_fwd_op{}, out, NULL, gate, up, NULL, n);
}

extern "C" cudaError_t cuk_swiglu_bwd(cudaStream_t s, void *dgate, void *dup, const void *dout,
                                       const void *gate, const void *up, int64_t n) {
    return ew_launch<3, 2>(s, swiglu_bwd_op{}, dgate, dup, gate, up, dout, n);
}

extern "C" cudaError_t cuk_add_bf16(cudaStream_t s, void *out, const void *a, const void *b,
                                     int64_t n) {
    return ew_launch<2, 1>(s, add_op{}, out, NULL, a, b, NULL, n);
}

/* ------------------------------------------------------------------------ */
/* f32 paths: scale, casts */

__global__ void scale_f32_kernel(float *x, int64_t n, float sc, bool vec) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        int64_t nv = n / 4;
        for (int64_t v = tid; v < nv; v += stride) {
            float4 a = reinterpret_cast<float4 *>(x)[v];
            a.x *= sc;
            a.y *= sc;
            a.z *= sc;
            a.w *= sc;
            reinterpret_cast<float4 *>(x)[v] = a;
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride)
        x[i] *= sc;
}

extern "C" cudaError_t cuk_scale(cudaStream_t s, void *x, bool x_bf16, int64_t n, float sc) {
    if (x_bf16)
        return ew_launch<1, 1>(s, scale_op{sc}, x, NULL, x, NULL, NULL, n);
    if (n < 0)
        return cudaErrorInvalidValue;
    if (n == 0)
        return cudaSuccess;
    bool vec = aligned16(x);
    scale_f32_kernel<<<grid_for(vec ? (n + 3) / 4 : n, EW_THREADS), EW_THREADS, 0, s>>>(
        (float *)x, n, sc, vec);
    return cudaGetLastError();
}

/* 8 elements per step: two float4 <-> one bf16x8. */
template <bool TO_BF16>
__global__ void cast_kernel(void *dst, const void *src, int64_t n, bool vec) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        int64_t nv = n / 8;
        for (int64_t v = tid; v < nv; v += stride) {
            float a[8];
            if (TO_BF16) {
                const float4 *p = reinterpret_cast<const float4 *>(src) + v * 2;
                float4 lo = p[0], hi = p[1];
                a[0] = lo.x, a[1] = lo.y, a[2] = lo.z, a[3] = lo.w;
                a[4] = hi.x, a[5] = hi.y, a[6] = hi.z, a[7] = hi.w;
                store8((bf16 *)dst + v * 8, a);
            } else {
                load8((const bf16 *)src + v * 8, a);
                float4 *p = reinterpret_cast<float4 *>(dst) + v * 2;
                p[0] = make_float4(a[0], a[1], a[2], a[3]);
                p[1] = make_float4(a[4], a[5], a[6], a[7]);
            }
        }
        done = nv * 8;
    }
    for (int64_t i = done + tid; i < n; i += stride) {
        if (TO_BF16)
            ((bf16 *)dst)[i] = st_bf16(((const float *)src)[i]);
        else
            ((float *)dst)[i] = ld_f32(((const bf16 *)src)[i]);
    }
}

extern "C" cudaError_t cuk_cast(cudaStream_t s, void *dst, bool dst_bf16, const void *src,
                                 bool src_bf16, int64_t n) {
    if (n < 0 || dst_bf16 == src_bf16)
        return cudaErrorInvalidValue;
    if (n == 0)
        return cudaSuccess;
    bool vec = aligned16(dst) && aligned16(src);
    unsigned blocks = grid_for(vec ? (n + 7) / 8 : n, EW_THREADS);
    if (dst_bf16)
        cast_kernel<true><<<blocks, EW_THREADS, 0, s>>>(dst, src, n, vec);
    else
        cast_kernel<false><<<blocks, EW_THREADS, 0, s>>>(dst, src, n, vec);
    return cudaGetLastError();
}

template <typename TC, typename TB>
__global__ void bias_add_kernel(TC *c, const TB *bias, int64_t rows, int64_t cols) {
    int64_t n = rows * cols;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        c[i] = from_f32<TC>(ld_f32(c[i]) + ld_f32(bias[i % cols]));
}

extern "C" cudaError_t cuk_bias_add(cudaStream_t s, void *c, bool c_bf16, const void *bias,
                                     bool bias_bf16, int64_t rows, int64_t cols) {
    if (rows < 0 || cols <= 0)
        return cudaErrorInvalidValue;
    if (rows == 0)
        return cudaSuccess;
    unsigned blocks = grid_for(rows * cols, EW_THREADS);
    if (c_bf16 && bias_bf16)
        bias_add_kernel<<<blocks, EW_THREADS, 0, s>>>((bf16 *)c, (const bf16 *)bias, rows, cols);
    else if (c_bf16)
        bias_add_kernel<<<blocks, EW_THREADS, 0, s>>>((bf16 *)c, (const float *)bias, rows, cols);
    else if (bias_bf16)
        bias_add_kernel<<<blocks, EW_THREADS, 0, s>>>((float *)c, (const bf16 *)bias, rows, cols);
    else
        bias_add_kernel<<<blocks, EW_THREADS, 0, s>>>((float *)c, (const float *)bias, rows, cols);
    return cudaGetLastError();
}

/* ------------------------------------------------------------------------ */
/* rope: one thread per (row of (B*T*H), pair i < D/2). The angle is computed
 * as transformers does in fp32: angle = float(p) * inv_freq[i], from the
 * caller's (D/2) F32 table (default or scaled frequencies); sincosf does a
 * full range reduction (angles reach thousands of radians at long context,
 * where __sincosf is wrong). */
__global__ void rope_kernel(bf16 *out, const bf16 *inp, int64_t rows, int64_t t_len, int h,
                            int d, int64_t pos_offset, const float *inv_freq, float sign) {
    int half = d / 2;
    int64_t n = rows * half;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        int64_t r = idx / half;
        int i = (int)(idx % half);
        int64_t t = (r / h) % t_len;
        float ang = (float)(pos_offset + t) * inv_freq[i];
        float sn, cs;
        sincosf(ang, &sn, &cs);
        sn *= sign;
        const bf16 *x = inp + r * d;
        float x1 = ld_f32(x[i]), x2 = ld_f32(x[i + half]);
        bf16 *y = out + r * d; /* may alias x: this thread read both before writing */
        y[i] = st_bf16(x1 * cs - x2 * sn);
        y[i + half] = st_bf16(x2 * cs + x1 * sn);
    }
}

extern "C" cudaError_t cuk_rope(cudaStream_t s, void *out, const void *inp, int64_t b,
                                 int64_t t, int64_t h, int64_t d, int64_t pos_offset,
                                 const float *inv_freq, float sign) {
    if (b < 0 || t < 0 || h <= 0 || d <= 0 || d % 2 || d > (1 << 20) || h > (1 << 20))
        return cudaErrorInvalidValue;
    int64_t rows = b * t * h;
    if (rows == 0)
        return cudaSuccess;
    rope_kernel<<<grid_for(rows * (d / 2), EW_THREADS), EW_THREADS, 0, s>>>(
        (bf16 *)out, (const bf16 *)inp, rows, t, (int)h, (int)d, pos_offset, inv_freq, sign);
    return cudaGetLastError();
}

/* ------------------------------------------------------------------------ */
/* embeddings */

__global__ void embedding_fwd_kernel(bf16 *out, const uint32_t *tokens, const bf16 *wte,
                                     const bf16 *wpe, int64_t rows, int64_t t_len, int64_t c,
                                     int64_t vocab, int64_t pos_offset, uint32_t *bad_index) {
    int64_t n = rows * c;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        int64_t r = idx / c, i = idx % c;
        uint32_t tok = tokens[r];
        if ((int64_t)tok >= vocab) {
            if (i == 0)
                atomicMin(bad_index, (uint32_t)r);
            out[idx] = st_bf16(0.0f);
            continue;
        }
        float v = ld_f32(wte[(int64_t)tok * c + i]);
        if (wpe)
            v += ld_f32(wpe[(pos_offset + r % t_len) * c + i]);
        out[idx] = st_bf16(v);
    }
}

extern "C" cudaError_t cuk_embedding_fwd(cudaStream_t s, void *out, const uint32_t *tokens,
                                          const void *wte, const void *wpe, int64_t b, int64_t t,
                                          int64_t c, int64_t vocab, int64_t pos_offset,
                                          uint32_t *bad_index) {
    if (b < 0 || t < 0 || c <= 0 || b * t >= 0xffffffffLL)
        return cudaErrorInvalidValue;
    int64_t rows = b * t;
    if (rows == 0)
        return cudaSuccess;
    embedding_fwd_kernel<<<grid_for(rows * c, EW_THREADS), EW_THREADS, 0, s>>>(
        (bf16 *)out, tokens, (const bf16 *)wte, (const bf16 *)wpe, rows, t, c, vocab, pos_offset,
        bad_index);
    return cudaGetLastError();
}

/* grid.x = segment (distinct token), threads stride the columns. */
__global__ void embedding_bwd_wte_kernel(float *dwte, const bf16 *dout, const int32_t *rows,
                                         const int32_t *seg_token, const int32_t *seg_start,
                                         int64_t c) {
    int seg = blockIdx.x;
    int r0 = seg_start[seg], r1 = seg_start[seg + 1];
    float *dst = dwte + (int64_t)seg_token[seg] * c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
        float acc = 0.0f;
        for (int k = r0; k < r1; k++) /* rows in increasing order: fixed sum order */
            acc += ld_f32(dout[(int64_t)rows[k] * c + i]);
        dst[i] += acc;
    }
}

extern "C" cudaError_t cuk_embedding_bwd_wte(cudaStream_t s, float *dwte, const void *dout,
                                              const int32_t *rows, const int32_t *seg_token,
                                              const int32_t *seg_start, int64_t n_seg,
                                              int64_t c) {
    if (n_seg < 0 || n_seg > 0x7fffffffLL || c <= 0)
        return cudaErrorInvalidValue;
    if (n_seg == 0)
        return cudaSuccess;
    embedding_bwd_wte_kernel<<<(unsigned)n_seg, 256, 0, s>>>(dwte, (const bf16 *)dout, rows,
                                                             seg_token, seg_start, c);
    return cudaGetLastError();
}

__global__ void embedding_bwd_wpe_kernel(float *dwpe, const bf16 *dout, int64_t bsz,
                                         int64_t t_len, int64_t c, int64_t pos_offset) {
    int64_t n = t_len * c;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        int64_t t = idx / c, i = idx % c;
        float acc = 0.0f;
        for (int64_t b = 0; b < bsz; b++)
            acc += ld_f32(dout[(b * t_len + t) * c + i]);
        dwpe[(pos_offset + t) * c + i] += acc;
    }
}

extern "C" cudaError_t cuk_embedding_bwd_wpe(cudaStream_t s, float *dwpe, const void *dout,
                                              int64_t b, int64_t t, int64_t c,
                                              int64_t pos_offset) {
    if (b < 0 || t < 0 || c <= 0)
        return cudaErrorInvalidValue;
    if (b * t == 0)
        return cudaSuccess;
    embedding_bwd_wpe_kernel<<<grid_for(t * c, EW_THREADS), EW_THREADS, 0, s>>>(
        dwpe, (const bf16 *)dout, b, t, c, pos_offset);
    return cudaGetLastError();
}
