/* model/block.c: the transformer block forward and backward, the linear with
 * an optional LoRA adapter, and the norms (block.h). */
#include "model/block.h"

#include <stdlib.h>

#include "runtime/check.h"

sl_status block_ctx_init(block_ctx *c, const model_layout *l, sl_backend *be) {
    c->be = be;
    c->l = l;
    c->act = be->act_dtype;
    c->esz = dtype_size(c->act);
    c->C = l->cfg.d_model;
    c->F = l->cfg.d_ff;
    c->H = l->cfg.n_head;
    c->Hkv = l->cfg.n_kv_head;
    c->D = l->head_dim;
    c->B = c->T = 0;
    c->N = 0;
    c->lora = NULL;
    c->rope_freq = NULL;
    if (!config_arch_llama_like(l->cfg.arch))
        return SL_OK;
    size_t bytes = (size_t)(c->D / 2) * sizeof(float);
    float *host = malloc(bytes);
    SL_CHECK_ALLOC(host, bytes);
    model_layout_rope_freq(l, host);
    void *dev = NULL;
    sl_status st = backend_alloc(be, MEM_CATEGORY_ACTIVATIONS, bytes, &dev);
    if (st == SL_OK)
        st = backend_memcpy(be, dev, host, bytes, BACKEND_COPY_H2D);
    if (st == SL_OK)
        st = backend_synchronize(be); /* host is freed next */
    free(host);
    if (st != SL_OK) {
        if (dev)
            backend_free(be, MEM_CATEGORY_ACTIVATIONS, dev, bytes);
        return st;
    }
    c->rope_freq = dev;
    return SL_OK;
}

void block_ctx_free(block_ctx *c) {
    if (c->rope_freq)
        backend_free(c->be, MEM_CATEGORY_ACTIVATIONS, c->rope_freq, (size_t)(c->D / 2) * sizeof(float));
    c->rope_freq = NULL;
}

void block_ctx_rows(block_ctx *c, int B, int T) {
    c->B = B;
    c->T = T;
    c->N = (int64_t)B * T;
}

/* ---- arenas ---- */

void *block_carve(block_carver *cv, size_t bytes) {
    void *p = cv->base ? cv->base + cv->off : NULL;
    cv->off += (bytes + 63) & ~(size_t)63;
    return p;
}

sl_status block_arena_alloc(sl_backend *be, void (*carve)(void *obj, block_carver *cv), void *obj,
                            char **arena, size_t *bytes) {
    block_carver sizing = {NULL, 0};
    carve(obj, &sizing);
    *arena = NULL;
    *bytes = sizing.off;
    void *p = NULL;
    SL_TRY(backend_alloc(be, MEM_CATEGORY_ACTIVATIONS, sizing.off, &p));
    *arena = p;
    block_carver real = {p, 0};
    carve(obj, &real);
    return SL_OK;
}

void block_acts_carve(block_carver *cv, const model_layout *l, int64_t N, size_t esz,
                      bool for_backward, block_acts *a) {
    const cfg_model *cf = &l->cfg;
    size_t n = (size_t)N, C = (size_t)cf->d_model, F = (size_t)cf->d_ff;
    size_t HD = (size_t)l->head_dim * (size_t)cf->n_head;
    size_t KD = (size_t)l->head_dim * (size_t)cf->n_kv_head, f4 = sizeof(float);
    bool llama = config_arch_llama_like(cf->arch);
    a->ln1 = block_carve(cv, n * C * esz);
    a->ln1_mean = block_carve(cv, n * f4);
    a->ln1_rstd = block_carve(cv, n * f4);
    a->q = block_carve(cv, n * HD * esz);
    a->k = block_carve(cv, n * KD * esz);
    a->v = block_carve(cv, n * KD * esz);
    a->q_raw = a->k_raw = NULL;
    a->q_rstd = a->k_rstd = NULL;
    if (l->block.q_norm >= 0) {
        a->q_raw = block_carve(cv, n * HD * esz);
        a->k_raw = block_carve(cv, n * KD * esz);
        a->q_rstd = block_carve(cv, n * (size_t)cf->n_head * f4);
        a->k_rstd = block_carve(cv, n * (size_t)cf->n_kv_head * f4);
    }
    a->att = block_carve(cv, n * HD * esz);
    a->lse = for_backward ? block_carve(cv, n * (size_t)cf->n_head * f4) : NULL;
    a->res2 = block_carve(cv, n * C * esz);
    if (for_backward) {
        a->ln2 = block_carve(cv, n * C * esz);
        a->ln2_mean = block_carve(cv, n * f4);
        a->ln2_rstd = block_carve(cv, n * f4);
    } else { /* inference: ln1 is dead once q, k, v are computed */
        a->ln2 = a->ln1;
        a->ln2_mean = a->ln1_mean;
        a->ln2_rstd = a->ln1_rstd;
    }
    a->fc = block_carve(cv, n * F * esz);
    a->up = llama ? block_carve(cv, n * F * esz) : NULL;
    a->act = block_carve(cv, n * F * esz);
}

/* ---- norms ---- */

static bool is_llama(const block_ctx *c) { return config_arch_llama_like(c->l->cfg.arch); }

sl_status block_norm_forward(const block_ctx *c, int64_t n, void *out, float *mean, float *rstd,
                             const void *inp, const void *p, int64_t w, int64_t b) {
    int64_t C = c->C;
    float eps = (float)c->l->cfg.norm_eps;
    if (is_llama(c))
        return ops_rmsnorm_forward(c->be, act_view2(c, out, n, C), f32_view1(c, rstd, n),
                                   act_view2(c, inp, n, C), weight_view1(c, p, w, C), eps);
    return ops_layernorm_forward(c->be, act_view2(c, out, n, C), f32_view1(c, mean, n),
                                 f32_view1(c, rstd, n), act_view2(c, inp, n, C),
                                 weight_view1(c, p, w, C), weight_view1(c, p, b, C), eps);
}

sl_status block_norm_backward(const block_ctx *c, int64_t n, void *dinp, float *g, const void *dout,
                              const void *inp, const void *p, int64_t w, int64_t b,
                              const float *mean, const float *rstd, bool acc) {
    int64_t C = c->C;
    if (is_llama(c))
        return ops_rmsnorm_backward(c->be, act_view2(c, dinp, n, C), grad_view1(c, g, w, C),
                                    act_view2(c, dout, n, C), act_view2(c, inp, n, C),
                                    weight_view1(c, p, w, C), f32_view1(c, rstd, n), acc);
    return ops_layernorm_backward(c->be, act_view2(c, dinp, n, C), grad_view1(c, g, w, C),
                                  grad_view1(c, g, b, C), act_view2(c, dout, n, C),
                                  act_view2(c, inp, n, C), weight_view1(c, p, w, C),
                                  f32_view1(c, mean, n), f32_view1(c, rstd, n), acc);
}

/* ---- LoRA (model/lora.h): y += s (x A^T) B^T on a module's outputs ----
 * A module's outputs are split in parts (gpt2 c_attn: q, k, v, rows of B
 * [0, C), [C, 2C), [2C, 3C); otherwise one part). ap: the block's adapter
 * unit (params), ag: its gradient buffer. */

static bool lora_on(const block_ctx *c, lora_module mod) {
    return c->lora && mod < LORA_MOD_COUNT && c->lora->spec->site[mod].on;
}

static void *lora_t(const block_ctx *c, int layer, lora_module mod) {
    return c->lora->t[(size_t)layer * LORA_MOD_COUNT + (size_t)mod];
}

/* dst (N, in) = dropout(src) with the mask of (layer, mod) for this pass
 * (keys in lora.h: element (row n, feature f) has counter
 * (first_sample * T + n) * in + f). dst may be src. */
static sl_status lora_dropout(const block_ctx *c, int layer, lora_module mod, void *dst, const void *src) {
    const block_lora *lo = c->lora;
    int64_t in = lo->spec->site[mod].in;
    uint64_t seed = lora_dropout_seed(lo->drop.seed, lo->drop.step, layer, mod);
    uint64_t off = (uint64_t)lo->drop.first_sample * (uint64_t)c->T * (uint64_t)in;
    return ops_dropout(c->be, act_view2(c, dst, c->N, in), act_view2(c, src, c->N, in), lo->p, seed, off);
}

/* The adapter of mod over its n outputs ys (the rows of B in order). */
static sl_status lora_fwd(const block_ctx *c, int layer, const void *ap, lora_module mod, const void *x,
                          int n, const block_linear *ys) {
    const block_lora *lo = c->lora;
    const lora_site *st = &lo->spec->site[mod];
    int64_t r = lo->spec->r, N = c->N;
    void *t = lora_t(c, layer, mod);
    if (lo->drop_on) { /* the adapter sees dropout(x); the base path x */
        SL_TRY(lora_dropout(c, layer, mod, lo->xd, x));
        x = lo->xd;
    }
    /* t (N, r) = x A^T */
    SL_TRY(ops_matmul(c->be, act_view2(c, t, N, r), act_view2(c, x, N, st->in),
                      weight_view2(c, ap, st->a, r, st->in), ops_none(), false, true, 1.0f, 0.0f));
    int64_t row0 = 0;
    for (int i = 0; i < n; i++) {
        /* y_i += s t B_i^T */
        SL_TRY(ops_matmul(c->be, act_view2(c, ys[i].y, N, ys[i].rows), act_view2(c, t, N, r),
                          weight_view2(c, ap, st->b + row0 * r, ys[i].rows, r), ops_none(), false,
                          true, lo->spec->scale, 1.0f));
        row0 += ys[i].rows;
    }
    return SL_OK;
}

/* Given the outputs' gradients dy_i: dB_i += s dy_i^T t, dt = s sum_i dy_i B_i,
 * dA += dt^T x, dx += dt A (dx already holds the base linears' dinp). With
 * dropout: dA += dt^T dropout(x) (the forward's mask, recomputed) and
 * dx += dropout(dt A) (the same mask: dropout is linear and diagonal). */
static sl_status lora_bwd(const block_ctx *c, int layer, const void *ap, float *ag, lora_module mod,
                          const void *x, void *dx, int n, const block_linear *dys) {
    const block_lora *lo = c->lora;
    const lora_site *st = &lo->spec->site[mod];
    int64_t r = lo->spec->r, N = c->N;
    float s = lo->spec->scale;
    const void *t = lora_t(c, layer, mod);
    sl_tensor dt = act_view2(c, lo->dt, N, r);
    int64_t row0 = 0;
    for (int i = 0; i < n; i++) {
        sl_tensor dy = act_view2(c, dys[i].y, N, dys[i].rows);
        SL_TRY(ops_matmul(c->be, grad_view2(c, ag, st->b + row0 * r, dys[i].rows, r), dy,
                          act_view2(c, t, N, r), ops_none(), true, false, s, 1.0f));
        SL_TRY(ops_matmul(c->be, dt, dy, weight_view2(c, ap, st->b + row0 * r, dys[i].rows, r),
                          ops_none(), false, false, s, i == 0 ? 0.0f : 1.0f));
        row0 += dys[i].rows;
    }
    sl_tensor dA = grad_view2(c, ag, st->a, r, st->in);
    sl_tensor A = weight_view2(c, ap, st->a, r, st->in);
    if (lo->drop_on) {
        void *xd = lo->xd;
        SL_TRY(lora_dropout(c, layer, mod, xd, x));
        SL_TRY(ops_matmul(c->be, dA, dt, act_view2(c, xd, N, st->in), ops_none(), true, false, 1.0f, 1.0f));
        SL_TRY(ops_matmul(c->be, act_view2(c, xd, N, st->in), dt, A, ops_none(), false, false, 1.0f, 0.0f));
        SL_TRY(lora_dropout(c, layer, mod, xd, xd));
        return ops_add(c->be, act_view2(c, dx, N, st->in), act_view2(c, dx, N, st->in),
                       act_view2(c, xd, N, st->in));
    }
    SL_TRY(ops_matmul(c->be, dA, dt, act_view2(c, x, N, st->in), ops_none(), true, false, 1.0f, 1.0f));
    return ops_matmul(c->be, act_view2(c, dx, N, st->in), dt, A, ops_none(), false, false, 1.0f, 1.0f);
}

/* ---- the linear with optional adapter ---- */

/* Index one past the run of outputs starting at i that share outs[i].mod. */
static int adapter_run_end(int n, const block_linear *outs, int i) {
    int j = i + 1;
    while (j < n && outs[j].mod == outs[i].mod)
        j++;
    return j;
}

sl_status block_linear_forward(const block_ctx *c, int layer, const void *p, const void *ap,
                               const void *x, int64_t cols, int n, const block_linear *outs) {
    int64_t N = c->N;
    for (int i = 0; i < n; i++) {
        const block_linear *o = &outs[i];
        /* y (N, rows) = x (N, cols) W^T + b */
        SL_TRY(ops_linear_forward(c->be, act_view2(c, o->y, N, o->rows), act_view2(c, x, N, cols),
                                  weight_view2(c, p, o->w, o->rows, cols),
                                  weight_view1(c, p, o->b, o->rows)));
    }
    for (int i = 0, j; i < n; i = j) {
        j = adapter_run_end(n, outs, i);
        if (lora_on(c, outs[i].mod))
            SL_TRY(lora_fwd(c, layer, ap, outs[i].mod, x, j - i, outs + i));
    }
    return SL_OK;
}

sl_status block_linear_backward(const block_ctx *c, int layer, const void *p, float *g,
                                const void *ap, float *ag, const void *x, void *dx, int64_t cols,
                                int n, const block_linear *outs) {
    int64_t N = c->N;
    for (int i = 0; i < n; i++) {
        const block_linear *o = &outs[i];
        SL_TRY(ops_linear_backward(c->be, act_view2(c, dx, N, cols), grad_view2(c, g, o->w, o->rows, cols),
                                   grad_view1(c, g, o->b, o->rows), act_view2(c, o->y, N, o->rows),
                                   act_view2(c, x, N, cols), weight_view2(c, p, o->w, o->rows, cols),
                                   i > 0));
    }
    for (int i = 0, j; i < n; i = j) {
        j = adapter_run_end(n, outs, i);
        if (lora_on(c, outs[i].mod))
            SL_TRY(lora_bwd(c, layer, ap, ag, outs[i].mod, x, dx, j - i, outs + i));
    }
    return SL_OK;
}

/* ---- the block ---- */

/* q, k, v outputs of ln1: gpt2's are the row blocks of one c_attn (one
 * adapter over all three), llama's three modules. */
static void qkv_outputs(const block_ctx *c, void *q, void *k, void *v, block_linear out[3]) {
    const model_block_offsets *o = &c->l->block;
    int64_t HD = c->H * c->D, KD = c->Hkv * c->D;
    bool llama = is_llama(c);
    out[0] = block_linear1(q, o->q_w, o->q_b, HD, llama ? LORA_MOD_Q : LORA_MOD_QKV);
    out[1] = block_linear1(k, o->k_w, o->k_b, KD, llama ? LORA_MOD_K : LORA_MOD_QKV);
    out[2] = block_linear1(v, o->v_w, o->v_b, KD, llama ? LORA_MOD_V : LORA_MOD_QKV);
}

/* The MLP's input linears of ln2: gpt2 c_fc; llama gate (in fc) and up. Returns their count. */
static int mlp_outputs(const block_ctx *c, void *fc, void *up, block_linear out[2]) {
    const model_block_offsets *o = &c->l->block;
    out[0] = block_linear1(fc, o->fc_w, o->fc_b, c->F, LORA_MOD_FC);
    if (!is_llama(c))
        return 1;
    out[1] = block_linear1(up, o->up_w, -1, c->F, LORA_MOD_UP);
    return 2;
}

/* qwen3's per-head RMSNorm: out (N*heads, D) = RMSNorm(inp) with the
 * weight (D) at offset w; rstd (N*heads). A (N, heads*D) buffer is that
 * view, so the norm needs no kernel of its own. */
static sl_status head_norm_forward(const block_ctx *c, const void *p, int64_t w, int64_t heads, void *out,
                                   float *rstd, const void *inp) {
    int64_t R = c->N * heads, D = c->D;
    return ops_rmsnorm_forward(c->be, act_view2(c, out, R, D), f32_view1(c, rstd, R),
                               act_view2(c, inp, R, D), weight_view1(c, p, w, D),
                               (float)c->l->cfg.norm_eps);
}

/* dinp (N*heads, D) = its backward given dout, written; dweight into g. */
static sl_status head_norm_backward(const block_ctx *c, const void *p, float *g, int64_t w,
                                    int64_t heads, void *dinp, const void *dout, const void *inp,
                                    const float *rstd) {
    int64_t R = c->N * heads, D = c->D;
    return ops_rmsnorm_backward(c->be, act_view2(c, dinp, R, D), grad_view1(c, g, w, D),
                                act_view2(c, dout, R, D), act_view2(c, inp, R, D),
                                weight_view1(c, p, w, D), f32_view1(c, rstd, R), false);
}

sl_status block_forward(const block_ctx *c, int layer, const void *p, const void *ap, const void *x,
                        void *y, block_acts *a, int64_t pos, const block_kv *kv) {
    const model_block_offsets *o = &c->l->block;
    sl_backend *be = c->be;
    int64_t N = c->N, C = c->C, F = c->F, H = c->H, Hk = c->Hkv;
    block_linear lin[3];
    /* attention */
    SL_TRY(block_norm_forward(c, N, a->ln1, a->ln1_mean, a->ln1_rstd, x, p, o->ln1_w, o->ln1_b));
    bool qk_norm = o->q_norm >= 0;
    qkv_outputs(c, qk_norm ? a->q_raw : a->q, qk_norm ? a->k_raw : a->k, a->v, lin);
    SL_TRY(block_linear_forward(c, layer, p, ap, a->ln1, C, 3, lin));
    if (qk_norm) {
        SL_TRY(head_norm_forward(c, p, o->q_norm, H, a->q, a->q_rstd, a->q_raw));
        SL_TRY(head_norm_forward(c, p, o->k_norm, Hk, a->k, a->k_rstd, a->k_raw));
    }
    sl_tensor q4 = heads_view(c, a->q, H), k4 = heads_view(c, a->k, Hk), v4 = heads_view(c, a->v, Hk);
    if (is_llama(c)) {
        sl_tensor fr = f32_view1(c, c->rope_freq, c->D / 2);
        SL_TRY(ops_rope_forward(be, q4, q4, pos, fr));
        SL_TRY(ops_rope_forward(be, k4, k4, pos, fr));
    }
    if (kv) {
        sl_tensor kc = ops_view4(be, c->act, kv->k, c->B, kv->S, Hk, c->D);
        sl_tensor vc = ops_view4(be, c->act, kv->v, c->B, kv->S, Hk, c->D);
        SL_TRY(ops_kv_cache_append(be, kc, k4, pos));
        SL_TRY(ops_kv_cache_append(be, vc, v4, pos));
        SL_TRY(ops_attention_decode(be, heads_view(c, a->att, H), q4, kc, vc, pos + c->T));
    } else {
        SL_TRY(ops_attention_forward(be, heads_view(c, a->att, H),
                                     ops_view3(be, SL_DTYPE_F32, a->lse, c->B, H, c->T), q4, k4, v4));
    }
    lin[0] = block_linear1(a->res2, o->out_w, o->out_b, C, LORA_MOD_OUT);
    SL_TRY(block_linear_forward(c, layer, p, ap, a->att, H * c->D, 1, lin));
    SL_TRY(ops_add(be, act_view2(c, a->res2, N, C), act_view2(c, a->res2, N, C), act_view2(c, x, N, C)));
    /* MLP */
    SL_TRY(block_norm_forward(c, N, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, p, o->ln2_w, o->ln2_b));
    int nm = mlp_outputs(c, a->fc, a->up, lin);
    SL_TRY(block_linear_forward(c, layer, p, ap, a->ln2, C, nm, lin));
    if (is_llama(c))
        SL_TRY(ops_swiglu_forward(be, act_view2(c, a->act, N, F), act_view2(c, a->fc, N, F),
                                  act_view2(c, a->up, N, F)));
    else
        SL_TRY(ops_gelu_forward(be, act_view2(c, a->act, N, F), act_view2(c, a->fc, N, F)));
    lin[0] = block_linear1(y, o->proj_w, o->proj_b, C, LORA_MOD_PROJ);
    SL_TRY(block_linear_forward(c, layer, p, ap, a->act, F, 1, lin));
    return ops_add(be, act_view2(c, y, N, C), act_view2(c, y, N, C), act_view2(c, a->res2, N, C));
}

sl_status block_backward(const block_ctx *c, int layer, const void *p, float *g, const void *ap,
                         float *ag, const void *x, block_acts *a, block_grads *d) {
    const model_block_offsets *o = &c->l->block;
    sl_backend *be = c->be;
    int64_t N = c->N, F = c->F;
    block_linear lin[3];
    /* MLP */
    lin[0] = block_linear1(d->dres, o->proj_w, o->proj_b, c->C, LORA_MOD_PROJ);
    SL_TRY(block_linear_backward(c, layer, p, g, ap, ag, a->act, d->df, F, 1, lin));
    int nm;
    if (is_llama(c)) {
        /* dgate into fc, dup into up (in place; ops.h allows it) */
        SL_TRY(ops_swiglu_backward(be, act_view2(c, a->fc, N, F), act_view2(c, a->up, N, F),
                                   act_view2(c, d->df, N, F), act_view2(c, a->fc, N, F),
                                   act_view2(c, a->up, N, F)));
        nm = mlp_outputs(c, a->fc, a->up, lin);
    } else {
        SL_TRY(ops_gelu_backward(be, act_view2(c, d->df, N, F), act_view2(c, a->fc, N, F),
                                 act_view2(c, d->df, N, F)));
        nm = mlp_outputs(c, d->df, NULL, lin);
    }
    SL_TRY(block_linear_backward(c, layer, p, g, ap, ag, a->ln2, d->dc, c->C, nm, lin));
    SL_TRY(block_norm_backward(c, N, d->dres, g, d->dc, a->res2, p, o->ln2_w, o->ln2_b, a->ln2_mean,
                               a->ln2_rstd, true));
    /* attention */
    int64_t H = c->H, Hk = c->Hkv;
    lin[0] = block_linear1(d->dres, o->out_w, o->out_b, c->C, LORA_MOD_OUT);
    SL_TRY(block_linear_backward(c, layer, p, g, ap, ag, a->att, d->dc, H * c->D, 1, lin));
    SL_TRY(ops_attention_backward(be, heads_view(c, d->dq, H), heads_view(c, d->dk, Hk),
                                  heads_view(c, d->dv, Hk), heads_view(c, d->dc, H),
                                  heads_view(c, a->q, H), heads_view(c, a->k, Hk),
                                  heads_view(c, a->v, Hk), heads_view(c, a->att, H),
                                  ops_view3(be, SL_DTYPE_F32, a->lse, c->B, H, c->T)));
    if (is_llama(c)) {
        sl_tensor fr = f32_view1(c, c->rope_freq, c->D / 2);
        SL_TRY(ops_rope_backward(be, heads_view(c, d->dq, H), heads_view(c, d->dq, H), 0, fr));
        SL_TRY(ops_rope_backward(be, heads_view(c, d->dk, Hk), heads_view(c, d->dk, Hk), 0, fr));
    }
    void *dq = d->dq, *dk = d->dk;
    if (o->q_norm >= 0) { /* the norms' input grads go to a->q, a->k: dead after the attention backward */
        SL_TRY(head_norm_backward(c, p, g, o->q_norm, H, a->q, d->dq, a->q_raw, a->q_rstd));
        SL_TRY(head_norm_backward(c, p, g, o->k_norm, Hk, a->k, d->dk, a->k_raw, a->k_rstd));
        dq = a->q;
        dk = a->k;
    }
    qkv_outputs(c, dq, dk, d->dv, lin);
    SL_TRY(block_linear_backward(c, layer, p, g, ap, ag, a->ln1, d->dc, c->C, 3, lin));
    return block_norm_backward(c, N, d->dres, g, d->dc, x, p, o->ln1_w, o->ln1_b, a->ln1_mean,
                               a->ln1_rstd, true);
}
