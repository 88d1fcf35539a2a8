/* kernels/cuda/cuda_attention.cu: fused causal attention with grouped-query
 * heads, FlashAttention-2 style (no T x T matrix in memory), forward (also
 * the KV-cache decode entry) and backward.
 *
 * Layout: q (B, T, H, D), k/v (B, T, Hkv, D) as the projections write them;
 * a head is a strided (T, D) matrix, loaded tile by tile into shared memory.
 * Tiles: Br = Bc = 64 rows, 4 warps of 16 rows, bf16 tensor-core MMAs
 * through WMMA (16x16x16, fp32 accumulation). Head dims up to 128 are
 * zero-padded to DP = 64 or 128 in shared memory (exact: padded columns add
 * 0 to every dot product and their outputs are not stored), which is the
 * generic path for dims other than 64 and 128.
 *
 * Forward (grid: query tile x head x batch): for each key tile up to the
 * diagonal, S = Q K^T (fp32, shared), online softmax per row (running max m
 * and sum l, the O rows rescaled by exp(m_old - m_new)), P rounded to bf16,
 * O += P V. l sums the fp32 p, not the rounded P (as FlashAttention-2 does):
 * lse then carries only fp32 rounding (backward recomputes P = exp(S - lse)
 * from it), and O = (P_bf16 V) / l is off by the bf16 rounding of P, a
 * relative 2^-9 per element that averages out over the key sum. O = O / l;
 * lse = m + log l is saved (natural log) for backward.
 * Backward, deterministic (no atomics; ops.h asks for bitwise reproducible
 * dK/dV): delta = rowsum(dO * O) first; then
 *   dkv kernel (grid: key tile x kv head x batch): dK, dV of a key tile stay
 *     in registers (WMMA accumulators) while it walks every query head of
 *     its GQA group and every query tile at or below the diagonal, in fixed
 *     order: P = exp(S - lse), dP = dO V^T, dS = P (dP - delta) / sqrt(D),
 *     dV += P^T dO, dK += dS^T Q;
 *   dq kernel (grid: query tile x head x batch): recomputes S, P, dP, dS for
 *     its row tile and accumulates dQ = dS K in registers.
 * FlashAttention-2 instead accumulates dQ with atomicAdd from the dkv
 * kernel; that saves recomputing S and dP (about 40% of backward FLOPs) but
 * makes dQ depend on the order blocks finish.
 *
 * Variants and why this one: (1) materialized S (cuBLAS QK^T, softmax, PV):
 * O(T^2) memory, rejected by the issue and by llama-scale T. (2) WMMA with
 * S, P and the forward O accumulator staged in shared memory (chosen): the
 * accumulator fragment's element-to-row map is opaque in WMMA, so the
 * per-row rescale happens in shared memory; simple to verify. (3)
 * mma.sync/wgmma with register-resident S and O (FlashAttention-2/3): the
 * fastest, but its register layouts cannot be checked without a GPU; it is
 * the next step once (2) is measured against torch SDPA
 * (benchmarks/peers/torch_attention_bench.py).
 */
#include <math.h>
#include <mma.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_launch.h"

using namespace nvcuda;

#define ATT_BR 64 /* query rows per tile */
#define ATT_BC 64 /* key rows per tile */
#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_LDS (ATT_BC + 4) /* fp32 (rows, Bc) buffers: padded against bank conflicts */
#define ATT_LDP (ATT_BC + 8) /* bf16 (rows, Bc) buffers */
#define LOG2E 1.4426950408889634f

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a_row;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> frag_a_col;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;

/* bf16 (rows, DP) tiles: row stride DP + 8 (16 bytes of padding keeps the
 * 32-byte WMMA alignment and spreads rows over banks). */
template <int DP> struct att_dims {
    static constexpr int LDH = DP + 8;
    static constexpr int LDO = DP + 4;
    static constexpr size_t tile_h = (size_t)ATT_BR * LDH * sizeof(bf16); /* Br == Bc */
    static constexpr size_t tile_s = (size_t)ATT_BR * ATT_LDS * sizeof(float);
    static constexpr size_t tile_p = (size_t)ATT_BR * ATT_LDP * sizeof(bf16);
    static constexpr size_t tile_o = (size_t)ATT_BR * LDO * sizeof(float);
    /* forward: Q, K, V, S, P, O, m, l */
    static constexpr size_t fwd_smem = 3 * tile_h + tile_s + tile_p + tile_o + 2 * ATT_BR * sizeof(float);
    /* dkv: K, V, Q, dO, S, dP, P, dS, lse, delta */
    static constexpr size_t dkv_smem = 4 * tile_h + 2 * tile_s + 2 * tile_p + 2 * ATT_BR * sizeof(float);
    /* dq: Q, dO, K, V, S, dP, dS, lse, delta */
    static constexpr size_t dq_smem = 4 * tile_h + 2 * tile_s + tile_p + 2 * ATT_BR * sizeof(float);
};

/* Loads rows [0, n_rows) of a (ROWS, d) strided head matrix into a (ROWS, DP)
 * shared tile, zero-filling rows >= n_rows and columns >= d. vec: d % 8 == 0
 * and 16-byte aligned rows, so 8 bf16 move per load. */
template <int DP>
__device__ void load_tile(bf16 *dst, const bf16 *src, int64_t row_stride, int n_rows, int d,
                          bool vec) {
    constexpr int LDH = att_dims<DP>::LDH;
    constexpr int CH = DP / 8;
    const bf16 zero = st_bf16(0.0f);
    for (int idx = threadIdx.x; idx < ATT_BR * CH; idx += ATT_THREADS) {
        int r = idx / CH, c = (idx % CH) * 8;
        bf16 *o = dst + r * LDH + c;
        if (r < n_rows && vec && c < d) {
            *reinterpret_cast<bf16x8 *>(o) =
                *reinterpret_cast<const bf16x8 *>(src + (int64_t)r * row_stride + c);
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++)
                o[j] = (r < n_rows && c + j < d) ? src[(int64_t)r * row_stride + c + j] : zero;
        }
    }
}

/* S (16 x Bc rows of warp w) = A_w (16 x DP) B^T with B a (Bc, DP) tile:
 * stored fp32 into s (ld ATT_LDS) at the warp's rows. */
template <int DP>
__device__ void warp_gemm_abt(float *s, const bf16 *a, const bf16 *b, int w) {
    constexpr int LDH = att_dims<DP>::LDH;
#pragma unroll
    for (int n = 0; n < ATT_BC / 16; n++) {
        frag_acc acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++) {
            frag_a_row fa;
            frag_b_col fb;
            wmma::load_matrix_sync(fa, a + (w * 16) * LDH + kk * 16, LDH);
            wmma::load_matrix_sync(fb, b + (n * 16) * LDH + kk * 16, LDH);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(s + (w * 16) * ATT_LDS + n * 16, acc, ATT_LDS, wmma::mem_row_major);
    }
}

/* ------------------------------------------------------------------------ */
/* forward */

template <int DP>
__global__ void __launch_bounds__(ATT_THREADS)
attn_fwd_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int tq,
                int tk, int64_t tk_stride, int q_off, int h, int hkv, int d, float scale_log2,
                bool vec) {
    typedef att_dims<DP> A;
    constexpr int LDH = A::LDH, LDO = A::LDO;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sK = (bf16 *)(smem + A::tile_h);
    bf16 *sV = (bf16 *)(smem + 2 * A::tile_h);
    float *sS = (float *)(smem + 3 * A::tile_h);
    bf16 *sP = (bf16 *)(smem + 3 * A::tile_h + A::tile_s);
    float *sO = (float *)(smem + 3 * A::tile_h + A::tile_s + A::tile_p);
    float *sM = (float *)(smem + 3 * A::tile_h + A::tile_s + A::tile_p + A::tile_o);
    float *sL = sM + ATT_BR;

    int qt = blockIdx.x, hh = blockIdx.y, b = blockIdx.z;
    int kh = hh / (h / hkv);
    int w = threadIdx.x / 32, lane = threadIdx.x & 31;
    int q0 = qt * ATT_BR;
    int q_rows = min(ATT_BR, tq - q0);
    int64_t ldq = (int64_t)h * d, ldk = (int64_t)hkv * d;
    const bf16 *qb = q + ((int64_t)b * tq + q0) * ldq + (int64_t)hh * d;
    const bf16 *kb = k + (int64_t)b * tk_stride * ldk + (int64_t)kh * d;
    const bf16 *vb = v + (int64_t)b * tk_stride * ldk + (int64_t)kh * d;

    load_tile<DP>(sQ, qb, ldq, q_rows, d, vec);
    for (int i = threadIdx.x; i < ATT_BR * LDO; i += ATT_THREADS)
        sO[i] = 0.0f;
    for (int i = threadIdx.x; i < ATT_BR; i += ATT_THREADS) {
        sM[i] = -INFINITY;
        sL[i] = 0.0f;
    }
    int last_key = q_off + q0 + q_rows - 1; /* the tile's last row sees keys 0..last_key */
    int n_kt = last_key / ATT_BC + 1;
    /* lane pair (2 rr, 2 rr + 1) owns row w*16 + rr, half hf of the columns */
    int rr = lane / 2, hf = lane & 1;
    int row = w * 16 + rr;
    int qpos = q_off + q0 + row;
    for (int kt = 0; kt < n_kt; kt++) {
        __syncthreads(); /* everyone is done with the previous K, V */
        int k0 = kt * ATT_BC;
        load_tile<DP>(sK, kb + (int64_t)k0 * ldk, ldk, min(ATT_BC, tk - k0), d, vec);
        load_tile<DP>(sV, vb + (int64_t)k0 * ldk, ldk, min(ATT_BC, tk - k0), d, vec);
        __syncthreads();
        warp_gemm_abt<DP>(sS, sQ, sK, w);
        __syncwarp();
        /* online softmax of the warp's rows, base 2 */
        float *srow = sS + row * ATT_LDS + hf * 32;
        float mt = -INFINITY;
        for (int j = 0; j < 32; j++) {
            int key = k0 + hf * 32 + j;
            float x = (key > qpos || key >= tk) ? -INFINITY : srow[j] * scale_log2;
            srow[j] = x;
            mt = fmaxf(mt, x);
        }
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
        float m_old = sM[row];
        float m_new = fmaxf(m_old, mt); /* finite: key 0 is visible to every row */
        bf16 *prow = sP + row * ATT_LDP + hf * 32;
        float ls = 0.0f;
        for (int j = 0; j < 32; j++) {
            float p = exp2f(srow[j] - m_new);
            prow[j] = st_bf16(p); /* P V takes bf16 P ... */
            ls += p;              /* ... l sums fp32 p (FlashAttention-2), so lse is fp32-exact */
        }
        ls += __shfl_xor_sync(0xffffffffu, ls, 1);
        float alpha = exp2f(m_old - m_new); /* m_old = -inf: 0 */
        float *orow = sO + row * LDO;
        for (int c = hf; c < DP; c += 2)
            orow[c] *= alpha;
        __syncwarp(); /* reads of sM/sL by both lanes of the pair precede the write */
        if (hf == 0) {
            sM[row] = m_new;
            sL[row] = sL[row] * alpha + ls;
        }
        __syncwarp();
        /* O_w += P_w V */
#pragma unroll
        for (int n = 0; n < DP / 16; n++) {
            frag_acc acc;
            wmma::load_matrix_sync(acc, sO + (w * 16) * LDO + n * 16, LDO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < ATT_BC / 16; kk++) {
                frag_a_row fa;
                frag_b_row fb;
                wmma::load_matrix_sync(fa, sP + (w * 16) * ATT_LDP + kk * 16, ATT_LDP);
                wmma::load_matrix_sync(fb, sV + (kk * 16) * LDH + n * 16, LDH);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(sO + (w * 16) * LDO + n * 16, acc, LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }
    /* epilogue: each warp writes its rows */
    for (int r = 0; r < 16; r++) {
        int lr = w * 16 + r;
        if (lr >= q_rows)
            break;
        float inv = 1.0f / sL[lr];
        bf16 *o = out + ((int64_t)b * tq + q0 + lr) * ldq + (int64_t)hh * d;
        for (int c = lane; c < d; c += 32)
            o[c] = st_bf16(sO[lr * LDO + c] * inv);
        if (lse && lane == 0)
            lse[((int64_t)b * h + hh) * tq + q0 + lr] = (sM[lr] + log2f(sL[lr])) / LOG2E;
    }
}

/* ------------------------------------------------------------------------ */
/* backward */

/* delta[b, h, i] = sum_c dO[b, i, h, c] * O[b, i, h, c]; one warp per row. */
__global__ void attn_delta_kernel(float *delta, const bf16 *dout, const bf16 *out, int t, int h,
                                  int d, int64_t rows) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= rows) /* r = (b * t + i) * h + hh */
        return;
    const bf16 *g = dout + r * d, *o = out + r * d;
    float acc = 0.0f;
    for (int c = lane; c < d; c += 32)
        acc += ld_f32(g[c]) * ld_f32(o[c]);
    acc = warp_sum(acc);
    if (lane == 0) {
        int64_t hh = r % h, bi = r / h;
        int64_t b = bi / t, i = bi % t;
        delta[(b * h + hh) * t + i] = acc;
    }
}

/* P (fp32, into s) and dS (bf16, into ds) of the warp's 16 query rows, given
 * S in s and dP in dp. Masked or padded entries give 0. Also writes P as
 * bf16 into p when p is not NULL. */
__device__ void attn_bwd_rows(float *s, const float *dp, bf16 *p, bf16 *ds, const float *slse,
                              const float *sdelta, int w, int lane, int q0, int k0, int t,
                              float scale, float scale_log2) {
    int rr = lane / 2, hf = lane & 1;
    int row = w * 16 + rr;
    int qpos = q0 + row;
    float l2 = slse[row] * LOG2E, dl = sdelta[row];
    for (int j = 0; j < 32; j++) {
        int col = hf * 32 + j, key = k0 + col;
        bool ok = qpos < t && key <= qpos;
        float pv = ok ? exp2f(s[row * ATT_LDS + col] * scale_log2 - l2) : 0.0f;
        if (p)
            p[row * ATT_LDP + col] = st_bf16(pv);
        ds[row * ATT_LDP + col] = st_bf16(pv * (dp[row * ATT_LDS + col] - dl) * scale);
    }
}

template <int DP>
__global__ void __launch_bounds__(ATT_THREADS)
attn_bwd_dkv_kernel(bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q, const bf16 *k,
                    const bf16 *v, const float *lse, const float *delta, int t, int h, int hkv,
                    int d, float scale, float scale_log2, bool vec) {
    typedef att_dims<DP> A;
    constexpr int LDH = A::LDH;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sK = (bf16 *)smem;
    bf16 *sV = (bf16 *)(smem + A::tile_h);
    bf16 *sQ = (bf16 *)(smem + 2 * A::tile_h);
    bf16 *sdO = (bf16 *)(smem + 3 * A::tile_h);
    float *sS = (float *)(smem + 4 * A::tile_h);
    float *sdP = (float *)(smem + 4 * A::tile_h + A::tile_s);
    bf16 *sP = (bf16 *)(smem + 4 * A::tile_h + 2 * A::tile_s);
    bf16 *sdS = (bf16 *)(smem + 4 * A::tile_h + 2 * A::tile_s + A::tile_p);
    float *sLse = (float *)(smem + 4 * A::tile_h + 2 * A::tile_s + 2 * A::tile_p);
    float *sDelta = sLse + ATT_BR;
    float *stage = (float *)sQ; /* epilogue: (Bc, DP + 4) fp32 over sQ + sdO */

    int kt = blockIdx.x, kh = blockIdx.y, b = blockIdx.z;
    int group = h / hkv;
    int w = threadIdx.x / 32, lane = threadIdx.x & 31;
    int k0 = kt * ATT_BC, k_rows = min(ATT_BC, t - k0);
    int64_t ldq = (int64_t)h * d, ldk = (int64_t)hkv * d;
    load_tile<DP>(sK, k + ((int64_t)b * t + k0) * ldk + (int64_t)kh * d, ldk, k_rows, d, vec);
    load_tile<DP>(sV, v + ((int64_t)b * t + k0) * ldk + (int64_t)kh * d, ldk, k_rows, d, vec);

    frag_acc acc_dk[DP / 16], acc_dv[DP / 16];
#pragma unroll
    for (int n = 0; n < DP / 16; n++) {
        wmma::fill_fragment(acc_dk[n], 0.0f);
        wmma::fill_fragment(acc_dv[n], 0.0f);
    }
    int n_qt = (t + ATT_BR - 1) / ATT_BR;
    for (int g = 0; g < group; g++) {
        int hh = kh * group + g;
        for (int qt = kt; qt < n_qt; qt++) { /* query tiles at or below the diagonal */
            int q0 = qt * ATT_BR, q_rows = min(ATT_BR, t - q0);
            __syncthreads(); /* previous tile's readers are done */
            int64_t qoff = ((int64_t)b * t + q0) * ldq + (int64_t)hh * d;
            load_tile<DP>(sQ, q + qoff, ldq, q_rows, d, vec);
            load_tile<DP>(sdO, dout + qoff, ldq, q_rows, d, vec);
            for (int i = threadIdx.x; i < ATT_BR; i += ATT_THREADS) {
                int64_t li = ((int64_t)b * h + hh) * t + q0 + i;
                sLse[i] = i < q_rows ? lse[li] : 0.0f;
                sDelta[i] = i < q_rows ? delta[li] : 0.0f;
            }
            __syncthreads();
            warp_gemm_abt<DP>(sS, sQ, sK, w);   /* S = Q K^T   (warp: query rows) */
            warp_gemm_abt<DP>(sdP, sdO, sV, w); /* dP = dO V^T */
            __syncwarp();
            attn_bwd_rows(sS, sdP, sP, sdS, sLse, sDelta, w, lane, q0, k0, t, scale, scale_log2);
            __syncthreads(); /* P, dS complete: warps now switch to key rows */
            /* dV_w += P^T dO, dK_w += dS^T Q (warp: key rows w*16..) */
#pragma unroll
            for (int kk = 0; kk < ATT_BR / 16; kk++) {
                frag_a_col fp, fds;
                wmma::load_matrix_sync(fp, sP + (kk * 16) * ATT_LDP + w * 16, ATT_LDP);
                wmma::load_matrix_sync(fds, sdS + (kk * 16) * ATT_LDP + w * 16, ATT_LDP);
#pragma unroll
                for (int n = 0; n < DP / 16; n++) {
                    frag_b_row fo, fq;
                    wmma::load_matrix_sync(fo, sdO + (kk * 16) * LDH + n * 16, LDH);
                    wmma::mma_sync(acc_dv[n], fp, fo, acc_dv[n]);
                    wmma::load_matrix_sync(fq, sQ + (kk * 16) * LDH + n * 16, LDH);
                    wmma::mma_sync(acc_dk[n], fds, fq, acc_dk[n]);
                }
            }
        }
    }
    __syncthreads(); /* stage overlays sQ/sdO */
    constexpr int LDST = DP + 4;
    for (int pass = 0; pass < 2; pass++) {
        frag_acc *acc = pass == 0 ? acc_dv : acc_dk;
        bf16 *dst = pass == 0 ? dv : dk;
#pragma unroll
        for (int n = 0; n < DP / 16; n++)
            wmma::store_matrix_sync(stage + (w * 16) * LDST + n * 16, acc[n], LDST,
                                    wmma::mem_row_major);
        __syncwarp();
        for (int r = 0; r < 16; r++) {
            int lr = w * 16 + r;
            if (lr >= k_rows)
                break;
            bf16 *o = dst + ((int64_t)b * t + k0 + lr) * ldk + (int64_t)kh * d;
            for (int c = lane; c < d; c += 32)
                o[c] = st_bf16(stage[lr * LDST + c]);
        }
        __syncwarp();
    }
}

template <int DP>
__global__ void __launch_bounds__(ATT_THREADS)
attn_bwd_dq_kernel(bf16 *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                   const float *lse, const float *delta, int t, int h, int hkv, int d,
                   float scale, float scale_log2, bool vec) {
    typedef att_dims<DP> A;
    constexpr int LDH = A::LDH;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sdO = (bf16 *)(smem + A::tile_h);
    bf16 *sK = (bf16 *)(smem + 2 * A::tile_h);
    bf16 *sV = (bf16 *)(smem + 3 * A::tile_h);
    float *sS = (float *)(smem + 4 * A::tile_h);
    float *sdP = (float *)(smem + 4 * A::tile_h + A::tile_s);
    bf16 *sdS = (bf16 *)(smem + 4 * A::tile_h + 2 * A::tile_s);
    float *sLse = (float *)(smem + 4 * A::tile_h + 2 * A::tile_s + A::tile_p);
    float *sDelta = sLse + ATT_BR;
    float *stage = sS; /* epilogue, per warp: 16 rows x (DP + 4) over sS + sdP */

    int qt = blockIdx.x, hh = blockIdx.y, b = blockIdx.z;
    int kh = hh / (h / hkv);
    int w = threadIdx.x / 32, lane = threadIdx.x & 31;
    int q0 = qt * ATT_BR, q_rows = min(ATT_BR, t - q0);
    int64_t ldq = (int64_t)h * d, ldk = (int64_t)hkv * d;
    int64_t qoff = ((int64_t)b * t + q0) * ldq + (int64_t)hh * d;
    load_tile<DP>(sQ, q + qoff, ldq, q_rows, d, vec);
    load_tile<DP>(sdO, dout + qoff, ldq, q_rows, d, vec);
    for (int i = threadIdx.x; i < ATT_BR; i += ATT_THREADS) {
        int64_t li = ((int64_t)b * h + hh) * t + q0 + i;
        sLse[i] = i < q_rows ? lse[li] : 0.0f;
        sDelta[i] = i < q_rows ? delta[li] : 0.0f;
    }
    frag_acc acc_dq[DP / 16];
#pragma unroll
    for (int n = 0; n < DP / 16; n++)
        wmma::fill_fragment(acc_dq[n], 0.0f);
    const bf16 *kb = k + (int64_t)b * t * ldk + (int64_t)kh * d;
    const bf16 *vb = v + (int64_t)b * t * ldk + (int64_t)kh * d;
    for (int kt = 0; kt <= qt; kt++) {
        int k0 = kt * ATT_BC;
        __syncthreads();
        load_tile<DP>(sK, kb + (int64_t)k0 * ldk, ldk, min(ATT_BC, t - k0), d, vec);
        load_tile<DP>(sV, vb + (int64_t)k0 * ldk, ldk, min(ATT_BC, t - k0), d, vec);
        __syncthreads();
        warp_gemm_abt<DP>(sS, sQ, sK, w);
        warp_gemm_abt<DP>(sdP, sdO, sV, w);
        __syncwarp();
        attn_bwd_rows(sS, sdP, NULL, sdS, sLse, sDelta, w, lane, q0, k0, t, scale, scale_log2);
        __syncwarp();
        /* dQ_w += dS_w K */
#pragma unroll
        for (int kk = 0; kk < ATT_BC / 16; kk++) {
            frag_a_row fa;
            wmma::load_matrix_sync(fa, sdS + (w * 16) * ATT_LDP + kk * 16, ATT_LDP);
#pragma unroll
            for (int n = 0; n < DP / 16; n++) {
                frag_b_row fb;
                wmma::load_matrix_sync(fb, sK + (kk * 16) * LDH + n * 16, LDH);
                wmma::mma_sync(acc_dq[n], fa, fb, acc_dq[n]);
            }
        }
    }
    __syncthreads(); /* stage overlays sS/sdP of every warp */
    constexpr int LDST = DP + 4;
#pragma unroll
    for (int n = 0; n < DP / 16; n++)
        wmma::store_matrix_sync(stage + (w * 16) * LDST + n * 16, acc_dq[n], LDST,
                                wmma::mem_row_major);
    __syncwarp();
    for (int r = 0; r < 16; r++) {
        int lr = w * 16 + r;
        if (lr >= q_rows)
            break;
        bf16 *o = dq + ((int64_t)b * t + q0 + lr) * ldq + (int64_t)hh * d;
        for (int c = lane; c < d; c += 32)
            o[c] = st_bf16(stage[lr * LDST + c]);
    }
}

/* The stage buffers must fit the regions they overlay. */
static_assert(att_dims<128>::tile_h * 2 >= (size_t)ATT_BC * (128 + 4) * sizeof(float), "dkv stage");
static_assert(att_dims<64>::tile_h * 2 >= (size_t)ATT_BC * (64 + 4) * sizeof(float), "dkv stage");
static_assert(att_dims<128>::tile_s * 2 >= (size_t)ATT_BR * (128 + 4) * sizeof(float), "dq stage");
static_assert(att_dims<64>::tile_s * 2 >= (size_t)ATT_BR * (64 + 4) * sizeof(float), "dq stage");
static_assert(ATT_BR == ATT_BC, "the causal tile walk assumes square tiles");

/* ------------------------------------------------------------------------ */
/* host side */

template <int DP> static cudaError_t attn_set_smem(void) {
    typedef att_dims<DP> A;
    cudaError_t e = cudaFuncSetAttribute(attn_fwd_kernel<DP>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)A::fwd_smem);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(attn_bwd_dkv_kernel<DP>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)A::dkv_smem);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(attn_bwd_dq_kernel<DP>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)A::dq_smem);
    return e;
}

extern "C" cudaError_t cuk_attention_init(void) {
    cudaError_t e = attn_set_smem<64>();
    return e == cudaSuccess ? attn_set_smem<128>() : e;
}

static bool attn_dims_ok(int64_t b, int64_t t, int64_t h, int64_t hkv, int64_t d) {
    return b > 0 && b <= 65535 && t > 0 && t <= 0x3fffffffLL && h > 0 && h <= 65535 &&
           hkv > 0 && h % hkv == 0 && d > 0 && d <= CUDA_ATTN_MAX_HEAD_DIM;
}

static bool attn_vec(int64_t d, const void *a, const void *b2, const void *c, const void *e) {
    return d % 8 == 0 && aligned16(a) && aligned16(b2) && aligned16(c) && (!e || aligned16(e));
}

extern "C" cudaError_t cuk_attention_fwd(cudaStream_t s, void *out, float *lse, const void *q,
                                          const void *k, const void *v, int64_t b, int64_t tq,
                                          int64_t tk, int64_t tk_stride, int64_t q_off, int64_t h,
                                          int64_t hkv, int64_t d) {
    if (!attn_dims_ok(b, tq, h, hkv, d) || tk < q_off + tq || tk > tk_stride ||
        tk_stride > 0x3fffffffLL || q_off < 0)
        return cudaErrorInvalidValue;
    float scale_log2 = (float)(1.0 / sqrt((double)d)) * LOG2E;
    bool vec = attn_vec(d, q, k, v, NULL);
    dim3 grid((unsigned)((tq + ATT_BR - 1) / ATT_BR), (unsigned)h, (unsigned)b);
    if (d <= 64)
        attn_fwd_kernel<64><<<grid, ATT_THREADS, att_dims<64>::fwd_smem, s>>>(
            (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (int)tq,
            (int)tk, tk_stride, (int)q_off, (int)h, (int)hkv, (int)d, scale_log2, vec);
    else
        attn_fwd_kernel<128><<<grid, ATT_THREADS, att_dims<128>::fwd_smem, s>>>(
            (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (int)tq,
            (int)tk, tk_stride, (int)q_off, (int)h, (int)hkv, (int)d, scale_log2, vec);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_attention_bwd(cudaStream_t s, void *dq, void *dk, void *dv,
                                          const void *dout, const void *q, const void *k,
                                          const void *v, const void *out, const float *lse,
                                          float *delta, int64_t b, int64_t t, int64_t h,
                                          int64_t hkv, int64_t d) {
    if (!attn_dims_ok(b, t, h, hkv, d))
        return cudaErrorInvalidValue;
    int64_t rows = b * t * h;
    attn_delta_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(
        delta, (const bf16 *)dout, (const bf16 *)out, (int)t, (int)h, (int)d, rows);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return e;
    float scale = (float)(1.0 / sqrt((double)d));
    float scale_log2 = scale * LOG2E;
    bool vec = attn_vec(d, q, k, v, dout);
    unsigned tiles = (unsigned)((t + ATT_BR - 1) / ATT_BR);
    dim3 grid_kv(tiles, (unsigned)hkv, (unsigned)b), grid_q(tiles, (unsigned)h, (unsigned)b);
    if (d <= 64) {
        attn_bwd_dkv_kernel<64><<<grid_kv, ATT_THREADS, att_dims<64>::dkv_smem, s>>>(
            (bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, (const bf16 *)q, (const bf16 *)k,
            (const bf16 *)v, lse, delta, (int)t, (int)h, (int)hkv, (int)d, scale, scale_log2,
            vec);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
        attn_bwd_dq_kernel<64><<<grid_q, ATT_THREADS, att_dims<64>::dq_smem, s>>>(
            (bf16 *)dq, (const bf16 *)dout, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
            lse, delta, (int)t, (int)h, (int)hkv, (int)d, scale, scale_log2, vec);
    } else {
        attn_bwd_dkv_kernel<128><<<grid_kv, ATT_THREADS, att_dims<128>::dkv_smem, s>>>(
            (bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, (const bf16 *)q, (const bf16 *)k,
            (const bf16 *)v, lse, delta, (int)t, (int)h, (int)hkv, (int)d, scale, scale_log2,
            vec);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
        attn_bwd_dq_kernel<128><<<grid_q, ATT_THREADS, att_dims<128>::dq_smem, s>>>(
            (bf16 *)dq, (const bf16 *)dout, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
            lse, delta, (int)t, (int)h, (int)hkv, (int)d, scale, scale_log2, vec);
    }
    return cudaGetLastError();
}
