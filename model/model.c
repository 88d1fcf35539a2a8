/* model/model.c: activations, and forward/backward of GPT-2 and Llama one
 * unit at a time (protocol in model.h).
 *
 * Block (gpt2 | llama), rows N = B*T, x = res[l]:
 *   h    = LN(x) | RMSNorm(x)
 *   q,k,v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)   [llama: RoPE on q, k]
 *   a    = causal_attention(q, k, v)                   (GQA for llama)
 *   r    = x + a Wo^T (+bo)
 *   h2   = LN(r) | RMSNorm(r)
 *   f    = gelu(h2 Wfc^T + bfc) | silu(h2 Wg^T) * (h2 Wu^T)
 *   res[l+1] = r + f Wp^T (+bp)
 * Backward walks the same list in reverse; the residual gradient dres is
 * carried through the stream and the norms' input gradients are accumulated
 * into it (ops' dinp_accumulate).
 */
#include "model/model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"
#include "runtime/check.h"

typedef struct {
    void *ln1;              /* (N, C) */
    float *ln1_mean, *ln1_rstd; /* (N) */
    void *q;                /* (N, H*D), after RoPE for llama */
    void *k, *v;            /* (N, Hkv*D) */
    void *att;              /* (N, H*D) attention output */
    float *lse;             /* (B, H, T) */
    void *res2;             /* (N, C) residual after attention */
    void *ln2;              /* (N, C) */
    float *ln2_mean, *ln2_rstd;
    void *fc;               /* (N, F): gpt2 pre-gelu, llama gate */
    void *up;               /* (N, F): llama up; NULL for gpt2 */
    void *act;              /* (N, F): gelu or swiglu output */
} block_acts;

struct model {
    const model_layout *l;
    sl_backend *be;
    int B, T;
    int64_t N;
    bool recompute;
    sl_dtype act;           /* be->act_dtype */
    size_t esz;             /* its size */
    char *arena;            /* every buffer below lives in it */
    size_t arena_bytes;
    uint32_t *tokens;       /* (N) backend copy of the inputs */
    int32_t *targets;       /* (N) */
    void **res;             /* L+1 pointers to (N, C) */
    block_acts *acts;       /* L entries; all alias one scratch when recompute */
    void *lnf;              /* (N, C) */
    float *lnf_mean, *lnf_rstd;
    void *logits;           /* (N, vchunk) */
    int64_t vchunk;
    float *xstats;          /* (N, OPS_XENT_STATS) */
    float *xlse;            /* (N) */
    void *dres, *dc;        /* (N, C) */
    void *dq, *dk, *dv;     /* (N, H*D), (N, Hkv*D) x2 */
    void *df;               /* (N, F) */
    /* LoRA (model_attach_lora); lora NULL = none */
    const lora_spec *lora;
    char *lora_arena;
    size_t lora_bytes;
    void **lora_t;          /* [layer * LORA_MOD_COUNT + mod] -> (N, r) x A^T; aliased when recompute */
    void *lora_dt;          /* (N, r) */
    /* LoRA dropout (lora.h): p > 0 only; masks recomputed, never stored */
    float lora_p;
    void *lora_xd;          /* (N, max in) dropout(x) or dropout(dt A); NULL when p = 0 */
    model_dropout_ctx drop; /* keys of the next model_forward_backward */
    bool drop_set;          /* drop was set since the last model_forward_backward */
    bool drop_on;           /* this pass applies dropout (training, p > 0) */
};

/* ---- arena ---- */

typedef struct {
    char *base;
    size_t off;
} carver;

static void *carve(carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 63) & ~(size_t)63;
    return p;
}

static void carve_all(model *m, carver *c) {
    const cfg_model *cf = &m->l->cfg;
    size_t N = (size_t)m->N, C = (size_t)cf->d_model, F = (size_t)cf->d_ff;
    size_t HD = C, KD = (size_t)m->l->head_dim * (size_t)cf->n_kv_head;
    size_t e = m->esz, f4 = sizeof(float);
    bool llama = cf->arch == MODEL_ARCH_LLAMA;
    int L = cf->n_layer;
    m->tokens = carve(c, N * sizeof(uint32_t));
    m->targets = carve(c, N * sizeof(int32_t));
    for (int i = 0; i <= L; i++) {
        void *p = carve(c, N * C * e);
        if (m->res)
            m->res[i] = p;
    }
    int distinct = m->recompute ? 1 : L;
    for (int i = 0; i < distinct; i++) {
        block_acts a;
        a.ln1 = carve(c, N * C * e);
        a.ln1_mean = carve(c, N * f4);
        a.ln1_rstd = carve(c, N * f4);
        a.q = carve(c, N * HD * e);
        a.k = carve(c, N * KD * e);
        a.v = carve(c, N * KD * e);
        a.att = carve(c, N * HD * e);
        a.lse = carve(c, N * (size_t)cf->n_head * f4);
        a.res2 = carve(c, N * C * e);
        a.ln2 = carve(c, N * C * e);
        a.ln2_mean = carve(c, N * f4);
        a.ln2_rstd = carve(c, N * f4);
        a.fc = carve(c, N * F * e);
        a.up = llama ? carve(c, N * F * e) : NULL;
        a.act = carve(c, N * F * e);
        if (m->acts)
            m->acts[i] = a;
    }
    if (m->acts && m->recompute)
        for (int i = 1; i < L; i++)
            m->acts[i] = m->acts[0];
    m->lnf = carve(c, N * C * e);
    m->lnf_mean = carve(c, N * f4);
    m->lnf_rstd = carve(c, N * f4);
    m->logits = carve(c, N * (size_t)m->vchunk * e);
    m->xstats = carve(c, N * OPS_XENT_STATS * f4);
    m->xlse = carve(c, N * f4);
    m->dres = carve(c, N * C * e);
    m->dc = carve(c, N * C * e);
    m->dq = carve(c, N * HD * e);
    m->dk = carve(c, N * KD * e);
    m->dv = carve(c, N * KD * e);
    m->df = carve(c, N * F * e);
}

sl_status model_create(const model_layout *layout, sl_backend *be, int micro_batch, int seq_len,
                       bool recompute, model **out) {
    *out = NULL;
    SL_CHECK_ARG(micro_batch >= 1 && seq_len >= 1, "model_create: micro_batch %d and seq_len %d must be >= 1",
                 micro_batch, seq_len);
    SL_CHECK_ARG(seq_len <= layout->cfg.max_seq_len,
                 "model_create: seq_len %d exceeds model.max_seq_len %d", seq_len,
                 layout->cfg.max_seq_len);
    model *m = calloc(1, sizeof *m);
    SL_CHECK_ALLOC(m, sizeof *m);
    m->l = layout;
    m->be = be;
    m->B = micro_batch;
    m->T = seq_len;
    m->N = (int64_t)micro_batch * seq_len;
    m->recompute = recompute;
    m->act = be->act_dtype;
    m->esz = dtype_size(m->act);
    int64_t V = layout->cfg.vocab_size;
    m->vchunk = V;
    if (m->N * V > MODEL_LOGITS_BUDGET) {
        m->vchunk = MODEL_LOGITS_BUDGET / m->N;
        if (m->vchunk >= 64)
            m->vchunk -= m->vchunk % 64;
        if (m->vchunk < 1)
            m->vchunk = 1;
    }
    int L = layout->cfg.n_layer;
    m->res = calloc((size_t)L + 1, sizeof *m->res);
    m->acts = calloc((size_t)L, sizeof *m->acts);
    if (!m->res || !m->acts) {
        model_destroy(m);
        return sl_errorf(SL_ERR_NOMEM, "model_create: out of memory for %d layers' pointers", L);
    }
    carver sizing = {NULL, 0};
    carve_all(m, &sizing);
    m->arena_bytes = sizing.off;
    void *arena = NULL;
    sl_status st = backend_alloc(be, MEM_CATEGORY_ACTIVATIONS, m->arena_bytes, &arena);
    if (st != SL_OK) {
        model_destroy(m);
        return sl_error_wrapf(st, "model_create: activations for micro_batch %d x seq_len %d (%zu bytes)",
                              micro_batch, seq_len, sizing.off);
    }
    m->arena = arena;
    carver real = {m->arena, 0};
    carve_all(m, &real);
    *out = m;
    return SL_OK;
}

void model_destroy(model *m) {
    if (!m)
        return;
    if (m->arena)
        backend_free(m->be, MEM_CATEGORY_ACTIVATIONS, m->arena, m->arena_bytes);
    if (m->lora_arena)
        backend_free(m->be, MEM_CATEGORY_ACTIVATIONS, m->lora_arena, m->lora_bytes);
    free(m->lora_t);
    free(m->res);
    free(m->acts);
    free(m);
}

int64_t model_activation_bytes(const model *m) { return (int64_t)(m->arena_bytes + m->lora_bytes); }

sl_status model_attach_lora(model *m, const lora_spec *spec) {
    SL_CHECK_ARG(spec && spec->base == m->l, "model_attach_lora: the spec was built for another layout");
    SL_CHECK_ARG(!m->lora, "model_attach_lora: a LoRA spec is already attached");
    int L = m->l->cfg.n_layer, distinct = m->recompute ? 1 : L;
    size_t tb = ((size_t)m->N * (size_t)spec->r * m->esz + 63) & ~(size_t)63;
    int on = 0;
    for (int k = 0; k < LORA_MOD_COUNT; k++)
        on += spec->site[k].on;
    m->lora_t = calloc((size_t)L * LORA_MOD_COUNT, sizeof *m->lora_t);
    SL_CHECK_ALLOC(m->lora_t, sizeof *m->lora_t * (size_t)L * LORA_MOD_COUNT);
    size_t bytes = tb * ((size_t)distinct * (size_t)on + 1);
    /* dropout scratch: the widest adapted input, one for every module */
    int64_t max_in = 0;
    for (int k = 0; k < LORA_MOD_COUNT; k++)
        if (spec->site[k].on && spec->site[k].in > max_in)
            max_in = spec->site[k].in;
    size_t xb = spec->cfg.dropout > 0 ? ((size_t)m->N * (size_t)max_in * m->esz + 63) & ~(size_t)63 : 0;
    bytes += xb;
    void *arena = NULL;
    sl_status st = backend_alloc(m->be, MEM_CATEGORY_ACTIVATIONS, bytes, &arena);
    if (st != SL_OK) {
        free(m->lora_t);
        m->lora_t = NULL;
        return sl_error_wrapf(st, "model_attach_lora: adapter activations (%zu bytes)", bytes);
    }
    m->lora_arena = arena;
    m->lora_bytes = bytes;
    char *c = arena;
    m->lora_dt = c;
    c += tb;
    if (xb) {
        m->lora_xd = c;
        c += xb;
        m->lora_p = (float)spec->cfg.dropout;
    }
    for (int i = 0; i < L; i++)
        for (int k = 0; k < LORA_MOD_COUNT; k++) {
            size_t idx = (size_t)i * LORA_MOD_COUNT + (size_t)k;
            if (!spec->site[k].on)
                continue;
            if (i < distinct) {
                m->lora_t[idx] = c;
                c += tb;
            } else {
                m->lora_t[idx] = m->lora_t[k]; /* recompute: one block's worth */
            }
        }
    m->lora = spec;
    return SL_OK;
}

sl_status model_set_dropout_ctx(model *m, const model_dropout_ctx *ctx) {
    SL_CHECK_ARG(ctx->step >= 1 && ctx->first_sample >= 0,
                 "model_set_dropout_ctx: step %lld must be >= 1 and first_sample %lld >= 0",
                 (long long)ctx->step, (long long)ctx->first_sample);
    m->drop = *ctx;
    m->drop_set = true;
    return SL_OK;
}

/* ---- views ---- */

static sl_tensor A2(const model *m, const void *p, int64_t r, int64_t c) {
    return ops_view2(m->be, m->act, p, r, c);
}
static sl_tensor F1(const model *m, const float *p, int64_t n) {
    return ops_view1(m->be, SL_DTYPE_F32, p, n);
}
/* parameter view at element offset off of a unit buffer (act dtype) */
static const void *PP(const model *m, const void *unit, int64_t off) {
    return (const char *)unit + (size_t)off * m->esz;
}
static sl_tensor W2(const model *m, const void *unit, int64_t off, int64_t r, int64_t c) {
    return ops_view2(m->be, m->act, PP(m, unit, off), r, c);
}
static sl_tensor W1(const model *m, const void *unit, int64_t off, int64_t n) {
    return off < 0 ? ops_none() : ops_view1(m->be, m->act, PP(m, unit, off), n);
}
/* gradient views; g NULL = frozen (no dW) */
static sl_tensor G2(const model *m, float *g, int64_t off, int64_t r, int64_t c) {
    return g ? ops_view2(m->be, SL_DTYPE_F32, g + off, r, c) : ops_none();
}
static sl_tensor G1(const model *m, float *g, int64_t off, int64_t n) {
    return off < 0 || !g ? ops_none() : ops_view1(m->be, SL_DTYPE_F32, g + off, n);
}
static sl_tensor Q4(const model *m, const void *p, int64_t h) {
    return ops_view4(m->be, m->act, p, m->B, m->T, h, m->l->head_dim);
}

/* ---- hooks ---- */

static sl_status h_prefetch(const model_unit_hooks *h, int unit, int phase) {
    return h->prefetch ? h->prefetch(h->ctx, unit, phase) : SL_OK;
}

/* ---- block forward / backward ---- */

static bool is_llama(const model *m) { return m->l->cfg.arch == MODEL_ARCH_LLAMA; }

static sl_status norm_fwd(model *m, void *out, float *mean, float *rstd, const void *inp,
                          const void *p, int64_t w, int64_t b) {
    int64_t C = m->l->cfg.d_model;
    float eps = (float)m->l->cfg.norm_eps;
    if (is_llama(m))
        return ops_rmsnorm_forward(m->be, A2(m, out, m->N, C), F1(m, rstd, m->N), A2(m, inp, m->N, C),
                                   W1(m, p, w, C), eps);
    return ops_layernorm_forward(m->be, A2(m, out, m->N, C), F1(m, mean, m->N), F1(m, rstd, m->N),
                                 A2(m, inp, m->N, C), W1(m, p, w, C), W1(m, p, b, C), eps);
}

static sl_status norm_bwd(model *m, void *dinp, float *g, const void *dout, const void *inp,
                          const void *p, int64_t w, int64_t b, const float *mean,
                          const float *rstd, bool acc) {
    int64_t C = m->l->cfg.d_model;
    if (is_llama(m))
        return ops_rmsnorm_backward(m->be, A2(m, dinp, m->N, C), G1(m, g, w, C), A2(m, dout, m->N, C),
                                    A2(m, inp, m->N, C), W1(m, p, w, C), F1(m, rstd, m->N), acc);
    return ops_layernorm_backward(m->be, A2(m, dinp, m->N, C), G1(m, g, w, C), G1(m, g, b, C),
                                  A2(m, dout, m->N, C), A2(m, inp, m->N, C), W1(m, p, w, C),
                                  F1(m, mean, m->N), F1(m, rstd, m->N), acc);
}

/* out (N, rows) = inp (N, cols) W[w]^T + b[b] */
static sl_status lin_fwd(model *m, void *out, const void *inp, const void *p, int64_t w, int64_t b,
                         int64_t rows, int64_t cols) {
    return ops_linear_forward(m->be, A2(m, out, m->N, rows), A2(m, inp, m->N, cols),
                              W2(m, p, w, rows, cols), W1(m, p, b, rows));
}

static sl_status lin_bwd(model *m, void *dinp, float *g, const void *dout, const void *inp,
                         const void *p, int64_t w, int64_t b, int64_t rows, int64_t cols, bool acc) {
    return ops_linear_backward(m->be, A2(m, dinp, m->N, cols), G2(m, g, w, rows, cols),
                               G1(m, g, b, rows), A2(m, dout, m->N, rows), A2(m, inp, m->N, cols),
                               W2(m, p, w, rows, cols), acc);
}

/* ---- LoRA (model/lora.h): y += s (x A^T) B^T on a projection's outputs ----
 * A module's outputs are split in parts (gpt2 c_attn: q, k, v, rows of B
 * [0, C), [C, 2C), [2C, 3C); otherwise one part). ap: the block's adapter
 * unit (params), ag: its gradient buffer. */

typedef struct {
    int n;
    void *y[3];       /* (N, rows[i]) outputs (forward) or their gradients (backward) */
    int64_t rows[3];
} lora_parts;

static bool lora_on(const model *m, lora_module mod) { return m->lora && m->lora->site[mod].on; }

static void *lora_t(const model *m, int layer, lora_module mod) {
    return m->lora_t[(size_t)layer * LORA_MOD_COUNT + (size_t)mod];
}

/* dst (N, in) = dropout(src) with the mask of (layer, mod) for this pass
 * (keys in lora.h: element (row n, feature f) has counter
 * (first_sample * T + n) * in + f). dst may be src. */
static sl_status lora_dropout(model *m, int layer, lora_module mod, void *dst, const void *src) {
    int64_t in = m->lora->site[mod].in;
    uint64_t seed = lora_dropout_seed(m->drop.seed, m->drop.step, layer, mod);
    uint64_t off = (uint64_t)m->drop.first_sample * (uint64_t)m->T * (uint64_t)in;
    return ops_dropout(m->be, A2(m, dst, m->N, in), A2(m, src, m->N, in), m->lora_p, seed, off);
}

static sl_status lora_fwd(model *m, int layer, const void *ap, lora_module mod, const void *x,
                          lora_parts parts) {
    if (!lora_on(m, mod))
        return SL_OK;
    const lora_site *st = &m->lora->site[mod];
    int64_t r = m->lora->r, N = m->N;
    void *t = lora_t(m, layer, mod);
    if (m->drop_on) { /* the adapter sees dropout(x); the base path x */
        SL_TRY(lora_dropout(m, layer, mod, m->lora_xd, x));
        x = m->lora_xd;
    }
    /* t (N, r) = x A^T */
    SL_TRY(ops_matmul(m->be, A2(m, t, N, r), A2(m, x, N, st->in), W2(m, ap, st->a, r, st->in),
                      ops_none(), false, true, 1.0f, 0.0f));
    int64_t row0 = 0;
    for (int i = 0; i < parts.n; i++) {
        /* y_i += s t B_i^T */
        SL_TRY(ops_matmul(m->be, A2(m, parts.y[i], N, parts.rows[i]), A2(m, t, N, r),
                          W2(m, ap, st->b + row0 * r, parts.rows[i], r), ops_none(), false, true,
                          m->lora->scale, 1.0f));
        row0 += parts.rows[i];
    }
    return SL_OK;
}

/* Given the outputs' gradients dy_i: dB_i += s dy_i^T t, dt = s sum_i dy_i B_i,
 * dA += dt^T x, dx += dt A (dx already holds the base linear's dinp). With
 * dropout: dA += dt^T dropout(x) (the forward's mask, recomputed) and
 * dx += dropout(dt A) (the same mask: dropout is linear and diagonal). */
static sl_status lora_bwd(model *m, int layer, const void *ap, float *ag, lora_module mod,
                          const void *x, void *dx, lora_parts dys) {
    if (!lora_on(m, mod))
        return SL_OK;
    const lora_site *st = &m->lora->site[mod];
    int64_t r = m->lora->r, N = m->N;
    float s = m->lora->scale;
    const void *t = lora_t(m, layer, mod);
    sl_tensor dt = A2(m, m->lora_dt, N, r);
    int64_t row0 = 0;
    for (int i = 0; i < dys.n; i++) {
        sl_tensor dy = A2(m, dys.y[i], N, dys.rows[i]);
        SL_TRY(ops_matmul(m->be, ops_view2(m->be, SL_DTYPE_F32, ag + st->b + row0 * r, dys.rows[i], r),
                          dy, A2(m, t, N, r), ops_none(), true, false, s, 1.0f));
        SL_TRY(ops_matmul(m->be, dt, dy, W2(m, ap, st->b + row0 * r, dys.rows[i], r), ops_none(),
                          false, false, s, i == 0 ? 0.0f : 1.0f));
        row0 += dys.rows[i];
    }
    if (m->drop_on) {
        void *xd = m->lora_xd;
        SL_TRY(lora_dropout(m, layer, mod, xd, x));
        SL_TRY(ops_matmul(m->be, ops_view2(m->be, SL_DTYPE_F32, ag + st->a, r, st->in), dt,
                          A2(m, xd, N, st->in), ops_none(), true, false, 1.0f, 1.0f));
        SL_TRY(ops_matmul(m->be, A2(m, xd, N, st->in), dt, W2(m, ap, st->a, r, st->in), ops_none(),
                          false, false, 1.0f, 0.0f));
        SL_TRY(lora_dropout(m, layer, mod, xd, xd));
        return ops_add(m->be, A2(m, dx, N, st->in), A2(m, dx, N, st->in), A2(m, xd, N, st->in));
    }
    SL_TRY(ops_matmul(m->be, ops_view2(m->be, SL_DTYPE_F32, ag + st->a, r, st->in), dt,
                      A2(m, x, N, st->in), ops_none(), true, false, 1.0f, 1.0f));
    return ops_matmul(m->be, A2(m, dx, N, st->in), dt, W2(m, ap, st->a, r, st->in), ops_none(),
                      false, false, 1.0f, 1.0f);
}

#define PART1(p, rows) ((lora_parts){1, {(p), NULL, NULL}, {(rows), 0, 0}})

static sl_status block_forward(model *m, int layer, const void *p, const void *ap) {
    const cfg_model *c = &m->l->cfg;
    const model_block_offsets *o = &m->l->block;
    block_acts *a = &m->acts[layer];
    int64_t C = c->d_model, F = c->d_ff, H = c->n_head, Hk = c->n_kv_head;
    int64_t D = m->l->head_dim, KD = Hk * D;
    const void *x = m->res[layer];
    SL_TRY(norm_fwd(m, a->ln1, a->ln1_mean, a->ln1_rstd, x, p, o->ln1_w, o->ln1_b));
    SL_TRY(lin_fwd(m, a->q, a->ln1, p, o->q_w, o->q_b, H * D, C));
    SL_TRY(lin_fwd(m, a->k, a->ln1, p, o->k_w, o->k_b, KD, C));
    SL_TRY(lin_fwd(m, a->v, a->ln1, p, o->v_w, o->v_b, KD, C));
    if (m->lora) {
        SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_QKV, a->ln1,
                        (lora_parts){3, {a->q, a->k, a->v}, {C, C, C}}));
        SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_Q, a->ln1, PART1(a->q, H * D)));
        SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_K, a->ln1, PART1(a->k, KD)));
        SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_V, a->ln1, PART1(a->v, KD)));
    }
    if (is_llama(m)) {
        float theta = (float)c->rope_theta;
        SL_TRY(ops_rope_forward(m->be, Q4(m, a->q, H), Q4(m, a->q, H), 0, theta));
        SL_TRY(ops_rope_forward(m->be, Q4(m, a->k, Hk), Q4(m, a->k, Hk), 0, theta));
    }
    SL_TRY(ops_attention_forward(m->be, Q4(m, a->att, H), ops_view3(m->be, SL_DTYPE_F32, a->lse, m->B, H, m->T),
                                 Q4(m, a->q, H), Q4(m, a->k, Hk), Q4(m, a->v, Hk)));
    SL_TRY(lin_fwd(m, a->res2, a->att, p, o->out_w, o->out_b, C, H * D));
    SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_OUT, a->att, PART1(a->res2, C)));
    SL_TRY(ops_add(m->be, A2(m, a->res2, m->N, C), A2(m, a->res2, m->N, C), A2(m, x, m->N, C)));
    SL_TRY(norm_fwd(m, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, p, o->ln2_w, o->ln2_b));
    SL_TRY(lin_fwd(m, a->fc, a->ln2, p, o->fc_w, o->fc_b, F, C));
    SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_FC, a->ln2, PART1(a->fc, F)));
    if (is_llama(m)) {
        SL_TRY(lin_fwd(m, a->up, a->ln2, p, o->up_w, -1, F, C));
        SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_UP, a->ln2, PART1(a->up, F)));
        SL_TRY(ops_swiglu_forward(m->be, A2(m, a->act, m->N, F), A2(m, a->fc, m->N, F), A2(m, a->up, m->N, F)));
    } else {
        SL_TRY(ops_gelu_forward(m->be, A2(m, a->act, m->N, F), A2(m, a->fc, m->N, F)));
    }
    void *y = m->res[layer + 1];
    SL_TRY(lin_fwd(m, y, a->act, p, o->proj_w, o->proj_b, C, F));
    SL_TRY(lora_fwd(m, layer, ap, LORA_MOD_PROJ, a->act, PART1(y, C)));
    return ops_add(m->be, A2(m, y, m->N, C), A2(m, y, m->N, C), A2(m, a->res2, m->N, C));
}

/* Given dres = dL/d res[layer+1], accumulates the block's parameter grads
 * into g (NULL: frozen base, no dW) and the adapters' into ag, and leaves
 * dL/d res[layer] in dres. Overwrites the block's activations fc/up/act
 * (they are dead after this). */
static sl_status block_backward(model *m, int layer, const void *p, float *g, const void *ap,
                                float *ag) {
    const cfg_model *c = &m->l->cfg;
    const model_block_offsets *o = &m->l->block;
    block_acts *a = &m->acts[layer];
    int64_t C = c->d_model, F = c->d_ff, H = c->n_head, Hk = c->n_kv_head;
    int64_t D = m->l->head_dim, KD = Hk * D;
    sl_backend *be = m->be;
    /* MLP */
    SL_TRY(lin_bwd(m, m->df, g, m->dres, a->act, p, o->proj_w, o->proj_b, C, F, false));
    SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_PROJ, a->act, m->df, PART1(m->dres, C)));
    if (is_llama(m)) {
        /* dgate into fc, dup into up (in place; ops.h allows it) */
        SL_TRY(ops_swiglu_backward(be, A2(m, a->fc, m->N, F), A2(m, a->up, m->N, F), A2(m, m->df, m->N, F),
                                   A2(m, a->fc, m->N, F), A2(m, a->up, m->N, F)));
        SL_TRY(lin_bwd(m, m->dc, g, a->fc, a->ln2, p, o->fc_w, -1, F, C, false));
        SL_TRY(lin_bwd(m, m->dc, g, a->up, a->ln2, p, o->up_w, -1, F, C, true));
        SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_FC, a->ln2, m->dc, PART1(a->fc, F)));
        SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_UP, a->ln2, m->dc, PART1(a->up, F)));
    } else {
        SL_TRY(ops_gelu_backward(be, A2(m, m->df, m->N, F), A2(m, a->fc, m->N, F), A2(m, m->df, m->N, F)));
        SL_TRY(lin_bwd(m, m->dc, g, m->df, a->ln2, p, o->fc_w, o->fc_b, F, C, false));
        SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_FC, a->ln2, m->dc, PART1(m->df, F)));
    }
    SL_TRY(norm_bwd(m, m->dres, g, m->dc, a->res2, p, o->ln2_w, o->ln2_b, a->ln2_mean, a->ln2_rstd, true));
    /* attention */
    SL_TRY(lin_bwd(m, m->dc, g, m->dres, a->att, p, o->out_w, o->out_b, C, H * D, false));
    SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_OUT, a->att, m->dc, PART1(m->dres, C)));
    SL_TRY(ops_attention_backward(be, Q4(m, m->dq, H), Q4(m, m->dk, Hk), Q4(m, m->dv, Hk), Q4(m, m->dc, H),
                                  Q4(m, a->q, H), Q4(m, a->k, Hk), Q4(m, a->v, Hk), Q4(m, a->att, H),
                                  ops_view3(be, SL_DTYPE_F32, a->lse, m->B, H, m->T)));
    if (is_llama(m)) {
        float theta = (float)c->rope_theta;
        SL_TRY(ops_rope_backward(be, Q4(m, m->dq, H), Q4(m, m->dq, H), 0, theta));
        SL_TRY(ops_rope_backward(be, Q4(m, m->dk, Hk), Q4(m, m->dk, Hk), 0, theta));
    }
    SL_TRY(lin_bwd(m, m->dc, g, m->dq, a->ln1, p, o->q_w, o->q_b, H * D, C, false));
    SL_TRY(lin_bwd(m, m->dc, g, m->dk, a->ln1, p, o->k_w, o->k_b, KD, C, true));
    SL_TRY(lin_bwd(m, m->dc, g, m->dv, a->ln1, p, o->v_w, o->v_b, KD, C, true));
    if (m->lora) {
        SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_QKV, a->ln1, m->dc,
                        (lora_parts){3, {m->dq, m->dk, m->dv}, {C, C, C}}));
        SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_Q, a->ln1, m->dc, PART1(m->dq, H * D)));
        SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_K, a->ln1, m->dc, PART1(m->dk, KD)));
        SL_TRY(lora_bwd(m, layer, ap, ag, LORA_MOD_V, a->ln1, m->dc, PART1(m->dv, KD)));
    }
    return norm_bwd(m, m->dres, g, m->dc, m->res[layer], p, o->ln1_w, o->ln1_b, a->ln1_mean,
                    a->ln1_rstd, true);
}

/* ---- the pass ---- */

typedef enum { PASS_LOGITS = 0, PASS_LOSS, PASS_TRAIN } pass_kind;

static sl_status check_ids(const model *m, const uint32_t *inputs, const int32_t *targets) {
    int64_t V = m->l->cfg.vocab_size;
    for (int64_t i = 0; i < m->N; i++) {
        if ((int64_t)inputs[i] >= V)
            return sl_errorf(SL_ERR_INVALID,
                             "input token id %" PRIu32 " at batch row %" PRId64 ", position %" PRId64
                             " is >= model.vocab_size %" PRId64,
                             inputs[i], i / m->T, i % m->T, V);
        if (targets && (int64_t)targets[i] >= V)
            return sl_errorf(SL_ERR_INVALID,
                             "target id %" PRId32 " at batch row %" PRId64 ", position %" PRId64
                             " is >= model.vocab_size %" PRId64,
                             targets[i], i / m->T, i % m->T, V);
    }
    return SL_OK;
}

/* Head weight: unit 0's wte when tied, else unit L+1's head. */
static const void *head_unit(const model *m, const void *p0, const void *pl, int64_t *off) {
    if (m->l->fin.head_w < 0) {
        *off = m->l->fin.wte;
        return p0;
    }
    *off = m->l->fin.head_w;
    return pl;
}

static sl_status logits_chunk(model *m, const void *hp, int64_t hoff, int64_t v0, int64_t vc) {
    int64_t C = m->l->cfg.d_model;
    return ops_linear_forward(m->be, A2(m, m->logits, m->N, vc), A2(m, m->lnf, m->N, C),
                              W2(m, hp, hoff + v0 * C, vc, C), ops_none());
}

static sl_status copy_logits_out(model *m, float *host, int64_t v0, int64_t vc) {
    int64_t V = m->l->cfg.vocab_size;
    size_t row = (size_t)vc * m->esz;
    char *tmp = NULL;
    if (m->act != SL_DTYPE_F32) {
        tmp = malloc(row);
        SL_CHECK_ALLOC(tmp, row);
    }
    for (int64_t r = 0; r < m->N; r++) {
        const char *src = (const char *)m->logits + (size_t)r * row;
        float *dst = host + r * V + v0;
        sl_status st = backend_memcpy(m->be, tmp ? (void *)tmp : (void *)dst, src, row, BACKEND_COPY_D2H);
        if (st != SL_OK) {
            free(tmp);
            return st;
        }
        if (tmp)
            f32_from_bf16_array(dst, (const uint16_t *)tmp, (size_t)vc);
    }
    free(tmp);
    return SL_OK;
}

/* Head forward (and, for PASS_TRAIN, its backward into dc = dL/d lnf and the
 * head weight's grads). */
static sl_status head_pass(model *m, pass_kind kind, const model_unit_hooks *h, const void *p0,
                           const void *pl, float grad_scale, float *logits_host, double *loss_sum,
                           int64_t *n_valid) {
    int64_t V = m->l->cfg.vocab_size, C = m->l->cfg.d_model, N = m->N;
    int64_t hoff;
    const void *hp = head_unit(m, p0, pl, &hoff);
    sl_backend *be = m->be;
    sl_tensor tg = ops_view1(be, SL_DTYPE_I32, m->targets, N);
    if (kind == PASS_LOGITS) {
        for (int64_t v0 = 0; v0 < V; v0 += m->vchunk) {
            int64_t vc = V - v0 < m->vchunk ? V - v0 : m->vchunk;
            SL_TRY(logits_chunk(m, hp, hoff, v0, vc));
            SL_TRY(copy_logits_out(m, logits_host, v0, vc));
        }
        return SL_OK;
    }
    float *hg = NULL;
    if (kind == PASS_TRAIN && !h->adapter)
        SL_TRY(h->grad_buffer(h->ctx, m->l->fin.head_w < 0 ? 0 : m->l->n_units - 1, &hg));
    if (m->vchunk == V) {
        SL_TRY(logits_chunk(m, hp, hoff, 0, V));
        sl_tensor lg = A2(m, m->logits, N, V);
        SL_TRY(ops_cross_entropy(be, ops_none(), kind == PASS_TRAIN ? lg : ops_none(), lg, tg, grad_scale,
                                 loss_sum, n_valid));
        if (kind == PASS_TRAIN)
            SL_TRY(ops_linear_backward(be, A2(m, m->dc, N, C), G2(m, hg, hoff, V, C), ops_none(), lg,
                                       A2(m, m->lnf, N, C), W2(m, hp, hoff, V, C), false));
        return SL_OK;
    }
    sl_tensor st = ops_view2(be, SL_DTYPE_F32, m->xstats, N, OPS_XENT_STATS);
    sl_tensor lse = F1(m, m->xlse, N);
    for (int64_t v0 = 0; v0 < V; v0 += m->vchunk) {
        int64_t vc = V - v0 < m->vchunk ? V - v0 : m->vchunk;
        SL_TRY(logits_chunk(m, hp, hoff, v0, vc));
        SL_TRY(ops_xent_stats_chunk(be, st, A2(m, m->logits, N, vc), tg, v0, v0 == 0));
    }
    SL_TRY(ops_xent_loss(be, ops_none(), lse, st, tg, loss_sum, n_valid));
    if (kind != PASS_TRAIN)
        return SL_OK;
    for (int64_t v0 = 0; v0 < V; v0 += m->vchunk) {
        int64_t vc = V - v0 < m->vchunk ? V - v0 : m->vchunk;
        SL_TRY(logits_chunk(m, hp, hoff, v0, vc));
        sl_tensor lg = A2(m, m->logits, N, vc);
        SL_TRY(ops_xent_backward_chunk(be, lg, lg, lse, tg, v0, grad_scale));
        SL_TRY(ops_linear_backward(be, A2(m, m->dc, N, C), G2(m, hg, hoff + v0 * C, vc, C), ops_none(), lg,
                                   A2(m, m->lnf, N, C), W2(m, hp, hoff + v0 * C, vc, C), v0 > 0));
    }
    return SL_OK;
}

static sl_status run(model *m, pass_kind kind, const model_unit_hooks *h, const uint32_t *inputs,
                     const int32_t *targets, float grad_scale, float *logits_host, double *loss_sum,
                     int64_t *n_valid) {
    const model_layout *l = m->l;
    int L = l->cfg.n_layer, last = L + 1;
    bool tied = l->fin.head_w < 0;
    sl_backend *be = m->be;
    int64_t N = m->N, C = l->cfg.d_model;
    const int FW = MODEL_PHASE_FORWARD, BW = MODEL_PHASE_BACKWARD;
    const model_unit_hooks *ha = h->adapter; /* LoRA adapters; the base is then frozen */
    if ((ha != NULL) != (m->lora != NULL))
        return sl_errorf(SL_ERR_INVALID, "%s",
                         ha ? "model: adapter hooks given but no LoRA spec attached (model_attach_lora)"
                            : "model: LoRA attached but the hooks carry no adapter hooks");
    if (loss_sum)
        *loss_sum = 0;
    if (n_valid)
        *n_valid = 0;
    /* LoRA dropout: training passes only, keyed by the context set for this
     * call (consumed here, so a stale step or sample index cannot be reused) */
    m->drop_on = kind == PASS_TRAIN && m->lora_p > 0;
    if (kind == PASS_TRAIN) {
        bool was_set = m->drop_set;
        m->drop_set = false;
        if (m->drop_on && !was_set)
            return sl_errorf(SL_ERR_INVALID,
                             "model: lora.dropout = %g needs model_set_dropout_ctx (train seed, step, "
                             "global sample index) before each model_forward_backward",
                             (double)m->lora_p);
    }
    SL_TRY(check_ids(m, inputs, kind == PASS_LOGITS ? NULL : targets));
    SL_TRY(backend_memcpy(be, m->tokens, inputs, (size_t)N * sizeof(uint32_t), BACKEND_COPY_H2D));
    if (kind != PASS_LOGITS)
        SL_TRY(backend_memcpy(be, m->targets, targets, (size_t)N * sizeof(int32_t), BACKEND_COPY_H2D));

    /* forward: embeddings */
    const void *p0 = NULL, *p = NULL;
    SL_TRY(h_prefetch(h, 1, FW));
    SL_TRY(h->acquire(h->ctx, 0, FW, &p0));
    sl_tensor wpe = l->fin.wpe < 0 ? ops_none() : W2(m, p0, l->fin.wpe, l->cfg.max_seq_len, C);
    SL_TRY(ops_embedding_forward(be, ops_view3(be, m->act, m->res[0], m->B, m->T, C),
                                 ops_view2(be, SL_DTYPE_U32, m->tokens, m->B, m->T),
                                 W2(m, p0, l->fin.wte, l->cfg.vocab_size, C), wpe, 0));
    if (!tied)
        SL_TRY(h->release(h->ctx, 0, FW));
    /* forward: blocks */
    const void *pa = NULL;
    if (ha)
        SL_TRY(h_prefetch(ha, 1, FW));
    for (int u = 1; u <= L; u++) {
        SL_TRY(h_prefetch(h, u + 1, FW));
        SL_TRY(h->acquire(h->ctx, u, FW, &p));
        if (ha) {
            if (u + 1 <= L)
                SL_TRY(h_prefetch(ha, u + 1, FW));
            SL_TRY(ha->acquire(ha->ctx, u, FW, &pa));
        }
        SL_TRY(block_forward(m, u - 1, p, pa));
        if (ha)
            SL_TRY(ha->release(ha->ctx, u, FW));
        SL_TRY(h->release(h->ctx, u, FW));
    }
    /* final norm and head */
    const void *pl = NULL;
    SL_TRY(h->acquire(h->ctx, last, FW, &pl));
    SL_TRY(norm_fwd(m, m->lnf, m->lnf_mean, m->lnf_rstd, m->res[L], pl, l->fin.norm_w, l->fin.norm_b));
    SL_TRY(head_pass(m, kind, h, p0, pl, grad_scale, logits_host, loss_sum, n_valid));
    if (kind != PASS_TRAIN) {
        SL_TRY(h->release(h->ctx, last, FW));
        if (tied)
            SL_TRY(h->release(h->ctx, 0, FW));
        return backend_synchronize(be);
    }

    /* backward: final unit (head grads were accumulated by head_pass). With
     * adapters the base is frozen: no base grad buffers, no dW, and the
     * adapters' grads_ready covers every unit (units 0 and L+1 hold none). */
    float *g = NULL, *ga = NULL;
    SL_TRY(h_prefetch(h, L, BW));
    if (ha)
        SL_TRY(h_prefetch(ha, L, BW));
    else
        SL_TRY(h->grad_buffer(h->ctx, last, &g));
    SL_TRY(norm_bwd(m, m->dres, g, m->dc, m->res[L], pl, l->fin.norm_w, l->fin.norm_b, m->lnf_mean,
                    m->lnf_rstd, false));
    SL_TRY(ha ? ha->grads_ready(ha->ctx, last) : h->grads_ready(h->ctx, last));
    SL_TRY(h->release(h->ctx, last, BW));
    /* backward: blocks */
    for (int u = L; u >= 1; u--) {
        if (u - 1 >= 1)
            SL_TRY(h_prefetch(h, u - 1, BW));
        SL_TRY(h->acquire(h->ctx, u, BW, &p));
        if (ha) {
            if (u - 1 >= 1)
                SL_TRY(h_prefetch(ha, u - 1, BW));
            SL_TRY(ha->acquire(ha->ctx, u, BW, &pa));
            SL_TRY(ha->grad_buffer(ha->ctx, u, &ga));
        } else {
            SL_TRY(h->grad_buffer(h->ctx, u, &g));
        }
        if (m->recompute)
            SL_TRY(block_forward(m, u - 1, p, pa));
        SL_TRY(block_backward(m, u - 1, p, g, pa, ga));
        if (ha) {
            SL_TRY(ha->grads_ready(ha->ctx, u));
            SL_TRY(ha->release(ha->ctx, u, BW));
        } else {
            SL_TRY(h->grads_ready(h->ctx, u));
        }
        SL_TRY(h->release(h->ctx, u, BW));
    }
    if (ha) {
        /* frozen embeddings: no embedding backward */
        SL_TRY(backend_synchronize(be));
        SL_TRY(ha->grads_ready(ha->ctx, 0));
        if (tied)
            SL_TRY(h->release(h->ctx, 0, BW));
        return SL_OK;
    }
    /* backward: embeddings */
    SL_TRY(h->grad_buffer(h->ctx, 0, &g));
    sl_tensor dwpe = l->fin.wpe < 0 ? ops_none() : G2(m, g, l->fin.wpe, l->cfg.max_seq_len, C);
    SL_TRY(ops_embedding_backward(be, G2(m, g, l->fin.wte, l->cfg.vocab_size, C), dwpe,
                                  ops_view3(be, m->act, m->dres, m->B, m->T, C),
                                  ops_view2(be, SL_DTYPE_U32, m->tokens, m->B, m->T), 0));
    SL_TRY(backend_synchronize(be));
    SL_TRY(h->grads_ready(h->ctx, 0));
    if (tied)
        SL_TRY(h->release(h->ctx, 0, BW));
    return SL_OK;
}

sl_status model_forward_backward(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                                 const int32_t *targets, float grad_scale, double *loss_sum,
                                 int64_t *n_valid) {
    return run(m, PASS_TRAIN, hooks, inputs, targets, grad_scale, NULL, loss_sum, n_valid);
}

sl_status model_forward_loss(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                             const int32_t *targets, double *loss_sum, int64_t *n_valid) {
    return run(m, PASS_LOSS, hooks, inputs, targets, 0.0f, NULL, loss_sum, n_valid);
}

sl_status model_forward_logits(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                               float *logits_host) {
    return run(m, PASS_LOGITS, hooks, inputs, NULL, 0.0f, logits_host, NULL, NULL);
}

/* ---- local hooks ---- */

static sl_status local_acquire(void *ctx, int unit, int phase, const void **params) {
    (void)phase;
    model_local *lh = ctx;
    *params = (const char *)lh->params + (size_t)lh->unit_offset[unit] * dtype_size(lh->param_dtype);
    return SL_OK;
}

static sl_status local_release(void *ctx, int unit, int phase) {
    (void)ctx, (void)unit, (void)phase;
    return SL_OK;
}

static sl_status local_grad_buffer(void *ctx, int unit, float **grads) {
    model_local *lh = ctx;
    if (!lh->grads)
        return sl_errorf(SL_ERR_INVALID, "model_local: unit %d's grads requested but none were given", unit);
    *grads = lh->grads + lh->unit_offset[unit];
    return SL_OK;
}

static sl_status local_grads_ready(void *ctx, int unit) {
    (void)ctx, (void)unit;
    return SL_OK;
}

sl_status model_local_init(model_local *lh, const model_layout *layout, float *params, float *grads,
                           model_unit_hooks *hooks) {
    return model_local_init_typed(lh, layout, SL_DTYPE_F32, params, grads, hooks);
}

sl_status model_local_init_typed(model_local *lh, const model_layout *layout, sl_dtype param_dtype,
                                 const void *params, float *grads, model_unit_hooks *hooks) {
    memset(lh, 0, sizeof *lh);
    lh->layout = layout;
    lh->params = params;
    lh->param_dtype = param_dtype;
    lh->grads = grads;
    lh->unit_offset = calloc((size_t)layout->n_units + 1, sizeof *lh->unit_offset);
    SL_CHECK_ALLOC(lh->unit_offset, sizeof *lh->unit_offset * ((size_t)layout->n_units + 1));
    for (int u = 0; u < layout->n_units; u++)
        lh->unit_offset[u + 1] = lh->unit_offset[u] + layout->units[u].numel;
    memset(hooks, 0, sizeof *hooks);
    hooks->ctx = lh;
    hooks->acquire = local_acquire;
    hooks->release = local_release;
    hooks->grad_buffer = local_grad_buffer;
    hooks->grads_ready = local_grads_ready;
    return SL_OK;
}

void model_local_free(model_local *lh) {
    free(lh->unit_offset);
    lh->unit_offset = NULL;
}
