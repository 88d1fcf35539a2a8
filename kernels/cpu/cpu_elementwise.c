/* kernels/cpu/cpu_elementwise.c: elementwise and gather/scatter ops of the
 * CPU backend: gelu, swiglu, rope, embedding, adamw, cast, sq_norm, scale, add,
 * dropout.
 *
 * All loops are flat OpenMP loops over contiguous memory with a static
 * schedule; reductions (sq_norm) sum fixed contiguous chunks in double and
 * combine the chunk sums in chunk order, so results do not depend on the
 * thread count. Scatter-adds (embedding backward) are split by column block
 * (dwte) or by position (dwpe) so that no two threads touch the same element
 * and each element's sum order is fixed.
 */
/* Loops that call cpu_expf (kernels/cpu/cpu_math.h) contain float selects
 * that gcc only if-converts, and so vectorizes, when it may assume FP
 * operations do not trap; shardlm never enables FP traps or reads the FP
 * exception flags, so this changes no result. */
#pragma GCC optimize("no-trapping-math")

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"
#include "runtime/rng.h"

/* Elements per task for flat elementwise loops: large enough to amortize
 * the scheduling, small enough to balance two threads on small tensors. */
#define CPU_ELEM_CHUNK 16384

static int64_t n_chunks(int64_t n) { return (n + CPU_ELEM_CHUNK - 1) / CPU_ELEM_CHUNK; }

/* ------------------------------------------------------------------------ */
/* gelu (tanh form) */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f

/* 0.5 (1 + tanh(u)) = sigmoid(2u), so gelu(x) = x sigmoid(2u) with
 * u = sqrt(2/pi) (x + 0.044715 x^3): one exp instead of a tanh, and exact
 * identities (no accuracy lost). Derivative:
 *   gelu'(x) = s + 2 x s (1 - s) du/dx,  s = sigmoid(2u). */
#pragma omp declare simd
static inline float gelu_u(float x) { return GELU_SCALE * (x + GELU_CUBIC * x * x * x); }

sl_status cpu_gelu_forward(sl_backend *be, sl_tensor out, sl_tensor inp) {
    int64_t n = tensor_numel(&inp);
    const float *x = cpu_cf32(inp);
    float *y = cpu_f32(out);
#pragma omp parallel for simd num_threads(cpu_threads(be, n_chunks(n))) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i], u = gelu_u(xi);
        y[i] = xi / (1.0f + cpu_expf(-2.0f * u));
    }
    return SL_OK;
}

sl_status cpu_gelu_backward(sl_backend *be, sl_tensor dinp, sl_tensor inp, sl_tensor dout) {
    int64_t n = tensor_numel(&inp);
    const float *x = cpu_cf32(inp), *dy = cpu_cf32(dout);
    float *dx = cpu_f32(dinp);
#pragma omp parallel for simd num_threads(cpu_threads(be, n_chunks(n))) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i], u = gelu_u(xi);
        float s = 1.0f / (1.0f + cpu_expf(-2.0f * u));
        float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * xi * xi);
        dx[i] = dy[i] * (s + 2.0f * xi * s * (1.0f - s) * du);
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* swiglu: out = silu(gate) * up */

sl_status cpu_swiglu_forward(sl_backend *be, sl_tensor out, sl_tensor gate, sl_tensor up) {
    int64_t n = tensor_numel(&gate);
    const float *g = cpu_cf32(gate), *u = cpu_cf32(up);
    float *y = cpu_f32(out);
#pragma omp parallel for simd num_threads(cpu_threads(be, n_chunks(n))) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], ui = u[i];
        y[i] = gi / (1.0f + cpu_expf(-gi)) * ui;
    }
    return SL_OK;
}

sl_status cpu_swiglu_backward(sl_backend *be, sl_tensor dgate, sl_tensor dup, sl_tensor dout,
                              sl_tensor gate, sl_tensor up) {
    int64_t n = tensor_numel(&gate);
    const float *g = cpu_cf32(gate), *u = cpu_cf32(up), *dy = cpu_cf32(dout);
    float *dg = cpu_f32(dgate), *du = cpu_f32(dup);
#pragma omp parallel for simd num_threads(cpu_threads(be, n_chunks(n))) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], ui = u[i], d = dy[i]; /* read before dg/du (may alias) are written */
        float sig = 1.0f / (1.0f + cpu_expf(-gi));
        float silu = gi * sig;
        dg[i] = d * ui * sig * (1.0f + gi * (1.0f - sig));
        du[i] = d * silu;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* rope (Hugging Face rotate_half pairing) */

/* cos/sin tables (T, D/2) for positions pos_offset..pos_offset+T-1, computed
 * as transformers does in fp32: angle = float(p) * inv_freq (one rounded
 * fp32 product), then cos/sin of that fp32 angle (evaluated in double and
 * rounded, i.e. within 1 ulp of torch's). */
static sl_status rope_tables(int64_t t_len, int64_t d, int64_t pos_offset, const float *inv,
                             float **cos_out, float **sin_out) {
    int64_t half = d / 2;
    size_t bytes = (size_t)(t_len * half) * sizeof(float) * 2;
    float *buf = malloc(bytes ? bytes : 1);
    SL_CHECK_ALLOC(buf, bytes);
    float *cs = buf, *sn = buf + t_len * half;
    for (int64_t t = 0; t < t_len; t++) {
        float p = (float)(pos_offset + t);
        for (int64_t i = 0; i < half; i++) {
            float ang = p * inv[i];
            cs[t * half + i] = (float)cos((double)ang);
            sn[t * half + i] = (float)sin((double)ang);
        }
    }
    *cos_out = cs;
    *sin_out = sn;
    return SL_OK;
}

/* sign = +1: forward rotation; -1: its transpose (backward). */
static sl_status rope_apply(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                            sl_tensor inv_freq, float sign) {
    int64_t bsz = inp.shape[0], t_len = inp.shape[1], h = inp.shape[2], d = inp.shape[3];
    int64_t half = d / 2;
    float *cs = NULL, *sn = NULL;
    SL_TRY(rope_tables(t_len, d, pos_offset, cpu_cf32(inv_freq), &cs, &sn));
    const float *x = cpu_cf32(inp);
    float *y = cpu_f32(out);
    int64_t rows = bsz * t_len;
#pragma omp parallel for num_threads(cpu_threads(be, rows)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = r % t_len;
        const float *c = cs + t * half, *s = sn + t * half;
        for (int64_t hh = 0; hh < h; hh++) {
            const float *xr = x + (r * h + hh) * d;
            float *yr = y + (r * h + hh) * d;
            for (int64_t i = 0; i < half; i++) {
                float x1 = xr[i], x2 = xr[i + half], si = sign * s[i];
                yr[i] = x1 * c[i] - x2 * si;
                yr[i + half] = x2 * c[i] + x1 * si;
            }
        }
    }
    free(cs); /* cs is the start of the one table buffer */
    return SL_OK;
}

sl_status cpu_rope_forward(sl_backend *be, sl_tensor out, sl_tensor inp, int64_t pos_offset,
                           sl_tensor inv_freq) {
    return rope_apply(be, out, inp, pos_offset, inv_freq, 1.0f);
}

sl_status cpu_rope_backward(sl_backend *be, sl_tensor dinp, sl_tensor dout, int64_t pos_offset,
                            sl_tensor inv_freq) {
    return rope_apply(be, dinp, dout, pos_offset, inv_freq, -1.0f);
}

/* ------------------------------------------------------------------------ */
/* embeddings */

static sl_status check_token_ids(const uint32_t *tok, int64_t n, int64_t t_len, int64_t vocab,
                                 const char *op) {
    for (int64_t i = 0; i < n; i++)
        if ((int64_t)tok[i] >= vocab)
            return sl_errorf(SL_ERR_INVALID,
                             "%s: token id %" PRIu32 " at (b %" PRId64 ", t %" PRId64
                             ") is >= vocab_size %" PRId64 "; the data does not match the model's "
                             "vocabulary",
                             op, tok[i], i / t_len, i % t_len, vocab);
    return SL_OK;
}

sl_status cpu_embedding_forward(sl_backend *be, sl_tensor out, sl_tensor tokens, sl_tensor wte,
                                sl_tensor wpe, int64_t pos_offset) {
    int64_t bsz = out.shape[0], t_len = out.shape[1], c = out.shape[2], vocab = wte.shape[0];
    const uint32_t *tok = (const uint32_t *)tokens.data;
    SL_TRY(check_token_ids(tok, bsz * t_len, t_len, vocab, "ops_embedding_forward"));
    const float *te = cpu_cf32(wte), *pe = wpe.data ? cpu_cf32(wpe) : NULL;
    float *y = cpu_f32(out);
    int64_t rows = bsz * t_len;
#pragma omp parallel for num_threads(cpu_threads(be, rows / 16 + 1)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *er = te + (int64_t)tok[r] * c;
        float *yr = y + r * c;
        if (pe) {
            const float *pr = pe + (pos_offset + r % t_len) * c;
            for (int64_t i = 0; i < c; i++)
                yr[i] = er[i] + pr[i];
        } else {
            memcpy(yr, er, (size_t)c * sizeof(float));
        }
    }
    return SL_OK;
}

sl_status cpu_embedding_backward(sl_backend *be, sl_tensor dwte, sl_tensor dwpe, sl_tensor dout,
                                 sl_tensor tokens, int64_t pos_offset) {
    int64_t bsz = dout.shape[0], t_len = dout.shape[1], c = dout.shape[2];
    int64_t rows = bsz * t_len;
    const uint32_t *tok = (const uint32_t *)tokens.data;
    const float *dy = cpu_cf32(dout);
    if (dwte.data) {
        SL_TRY(check_token_ids(tok, rows, t_len, dwte.shape[0], "ops_embedding_backward"));
        float *dte = cpu_f32(dwte);
        const int64_t blk = 64;
        int64_t nblk = (c + blk - 1) / blk;
#pragma omp parallel for num_threads(cpu_threads(be, nblk)) schedule(static)
        for (int64_t bi = 0; bi < nblk; bi++) {
            int64_t c0 = bi * blk, c1 = c0 + blk < c ? c0 + blk : c;
            for (int64_t r = 0; r < rows; r++) {
                float *dr = dte + (int64_t)tok[r] * c;
                const float *gr = dy + r * c;
                for (int64_t i = c0; i < c1; i++)
                    dr[i] += gr[i];
            }
        }
    }
    if (dwpe.data) {
        float *dpe = cpu_f32(dwpe);
#pragma omp parallel for num_threads(cpu_threads(be, t_len)) schedule(static)
        for (int64_t t = 0; t < t_len; t++) {
            float *dr = dpe + (pos_offset + t) * c;
            for (int64_t b = 0; b < bsz; b++) {
                const float *gr = dy + (b * t_len + t) * c;
                for (int64_t i = 0; i < c; i++)
                    dr[i] += gr[i];
            }
        }
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* AdamW (torch.optim.AdamW, single-tensor path, same operation order) */

sl_status cpu_adamw(sl_backend *be, sl_tensor param, sl_tensor grad, sl_tensor m, sl_tensor v,
                    sl_tensor param_copy, const ops_adamw_args *a) {
    int64_t n = tensor_numel(&param);
    float *p = cpu_f32(param), *mp = cpu_f32(m), *vp = cpu_f32(v);
    const float *g = cpu_cf32(grad);
    float *pc = param_copy.data ? cpu_f32(param_copy) : NULL;
    double bc1 = 1.0 - pow((double)a->beta1, (double)a->step);
    double bc2 = 1.0 - pow((double)a->beta2, (double)a->step);
    float step_size = (float)((double)a->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - a->lr * a->weight_decay;
    float b1 = a->beta1, b2 = a->beta2, ob1 = 1.0f - a->beta1, ob2 = 1.0f - a->beta2;
    float eps = a->eps, gs = a->grad_scale;
#pragma omp parallel for num_threads(cpu_threads(be, n_chunks(n))) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gs;
        float pi = p[i] * decay;
        float mi = b1 * mp[i] + ob1 * gi;
        float vi = b2 * vp[i] + ob2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        pi -= step_size * (mi / denom);
        p[i] = pi;
        mp[i] = mi;
        vp[i] = vi;
        if (pc)
            pc[i] = pi;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* casts and reductions */

sl_status cpu_cast(sl_backend *be, sl_tensor dst, sl_tensor src) {
    int64_t n = tensor_numel(&src), nc = n_chunks(n);
#pragma omp parallel for num_threads(cpu_threads(be, nc)) schedule(static)
    for (int64_t ci = 0; ci < nc; ci++) {
        int64_t i0 = ci * CPU_ELEM_CHUNK;
        size_t cnt = (size_t)(i0 + CPU_ELEM_CHUNK < n ? CPU_ELEM_CHUNK : n - i0);
        if (dst.dtype == src.dtype)
            memcpy((char *)dst.data + (size_t)i0 * dtype_size(dst.dtype),
                   (const char *)src.data + (size_t)i0 * dtype_size(src.dtype),
                   cnt * dtype_size(src.dtype));
        else if (dst.dtype == SL_DTYPE_BF16)
            bf16_from_f32_array((uint16_t *)dst.data + i0, (const float *)src.data + i0, cnt);
        else
            f32_from_bf16_array((float *)dst.data + i0, (const uint16_t *)src.data + i0, cnt);
    }
    return SL_OK;
}

sl_status cpu_sq_norm(sl_backend *be, sl_tensor x, double *out) {
    SL_CHECK_ARG(x.dtype == SL_DTYPE_F32, "ops_sq_norm (cpu): x must be F32, got %s",
                 dtype_name(x.dtype));
    int64_t n = tensor_numel(&x), nc = n_chunks(n);
    const float *p = cpu_cf32(x);
    double stack_part[64];
    double *part = nc <= 64 ? stack_part : malloc((size_t)nc * sizeof(double));
    SL_CHECK_ALLOC(part, (size_t)nc * sizeof(double));
#pragma omp parallel for num_threads(cpu_threads(be, nc)) schedule(static)
    for (int64_t ci = 0; ci < nc; ci++) {
        int64_t i0 = ci * CPU_ELEM_CHUNK, i1 = i0 + CPU_ELEM_CHUNK < n ? i0 + CPU_ELEM_CHUNK : n;
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++)
            s += (double)p[i] * (double)p[i];
        part[ci] = s;
    }
    double total = 0.0;
    for (int64_t ci = 0; ci < nc; ci++)
        total += part[ci];
    if (part != stack_part)
        free(part);
    *out = total;
    return SL_OK;
}

sl_status cpu_scale(sl_backend *be, sl_tensor x, float s) {
    SL_CHECK_ARG(x.dtype == SL_DTYPE_F32, "ops_scale (cpu): x must be F32, got %s",
                 dtype_name(x.dtype));
    int64_t n = tensor_numel(&x);
    float *p = cpu_f32(x);
#pragma omp parallel for num_threads(cpu_threads(be, n_chunks(n))) schedule(static)
    for (int64_t i = 0; i < n; i++)
        p[i] *= s;
    return SL_OK;
}

sl_status cpu_add(sl_backend *be, sl_tensor out, sl_tensor a, sl_tensor b) {
    int64_t n = tensor_numel(&a);
    const float *x = cpu_cf32(a), *y = cpu_cf32(b);
    float *o = cpu_f32(out);
#pragma omp parallel for num_threads(cpu_threads(be, n_chunks(n))) schedule(static)
    for (int64_t i = 0; i < n; i++)
        o[i] = x[i] + y[i];
    return SL_OK;
}

/* Dropout (mask definition in kernels/ops.h). Each task owns a contiguous
 * range of elements and draws one Philox block per 4 counters, so the mask
 * depends only on (seed, offset + i), never on the thread split. */
sl_status cpu_dropout(sl_backend *be, sl_tensor out, sl_tensor inp, float p, uint64_t seed,
                      uint64_t offset) {
    int64_t n = tensor_numel(&inp);
    const float *x = cpu_cf32(inp);
    float *y = cpu_f32(out);
    const uint32_t thr = ops_dropout_threshold(p);
    const float scale = ops_dropout_scale(p);
    const rng_stream rs = rng_stream_make(seed, RNG_PURPOSE_DROPOUT, 0);
    int64_t nc = n_chunks(n);
#pragma omp parallel for num_threads(cpu_threads(be, nc)) schedule(static)
    for (int64_t c = 0; c < nc; c++) {
        int64_t i0 = c * CPU_ELEM_CHUNK, i1 = i0 + CPU_ELEM_CHUNK < n ? i0 + CPU_ELEM_CHUNK : n;
        philox_ctr blk = rng_block(&rs, (offset + (uint64_t)i0) >> 2);
        for (int64_t i = i0; i < i1; i++) {
            uint64_t j = offset + (uint64_t)i;
            if ((j & 3) == 0 && i > i0)
                blk = rng_block(&rs, j >> 2);
            y[i] = blk.v[j & 3] >= thr ? x[i] * scale : 0.0f;
        }
    }
    return SL_OK;
}
