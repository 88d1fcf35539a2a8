/* model/decode.c: KV-cache inference (decode.h).
 *
 * For a chunk of tn new positions per row (R = batch * tn rows), p = pos:
 *   x     = wte[tok] (+ wpe[p + t])                        (B, tn, C)
 *   per layer l:
 *     h   = LN(x) | RMSNorm(x)
 *     q,k,v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)    [llama: RoPE at p + t]
 *     K[l][:, p:p+tn], V[l][:, p:p+tn] = k, v             (B, S, Hkv, D) caches
 *     a   = attention of q against K[l], V[l] rows 0 .. p+tn-1 (causal)
 *     r   = x + a Wo^T (+bo)
 *     f   = gelu(LN(r) Wfc^T + bfc) | silu(N(r) Wg^T) * (N(r) Wu^T)
 *     x   = r + f Wp^T (+bp)
 *   logits = LN_f(x[:, tn-1]) Whead^T                      (B, V)
 * The same sequence of ops as model.c's block_forward, only over new rows.
 */
#include "model/decode.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"

struct decode {
    const model_layout *l;
    sl_backend *be;
    const char *params;     /* borrowed, act dtype */
    int64_t *unit_off;      /* n_units + 1 element offsets */
    int B, S, chunk;
    int64_t pos;
    sl_dtype act;
    size_t esz;
    char *cache;            /* every K and V cache */
    size_t cache_bytes;
    char *arena;            /* the chunk's activations */
    size_t arena_bytes;
    void **kc, **vc;        /* n_layer pointers to (B, S, Hkv, D) */
    uint32_t *tokens;       /* (B, chunk) backend */
    uint32_t *tokens_host;  /* (B, chunk) staging */
    void *x, *h, *r;        /* (B*chunk, C) */
    float *mean, *rstd;     /* (B*chunk) */
    void *q, *att;          /* (B*chunk, H*D) */
    void *k, *v;            /* (B*chunk, Hkv*D) */
    void *fc, *up, *f;      /* (B*chunk, F); up NULL for gpt2 */
    void *last;             /* (B, C) last position of each row */
    float *logits;          /* (B, V) F32 whatever the act dtype */
};

typedef struct {
    char *base;
    size_t off;
} carver;

static void *carve(carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 63) & ~(size_t)63;
    return p;
}

static void carve_acts(decode *d, carver *c) {
    const cfg_model *cf = &d->l->cfg;
    size_t R = (size_t)d->B * (size_t)d->chunk, C = (size_t)cf->d_model, F = (size_t)cf->d_ff;
    size_t KD = (size_t)d->l->head_dim * (size_t)cf->n_kv_head, e = d->esz;
    d->tokens = carve(c, R * sizeof(uint32_t));
    d->x = carve(c, R * C * e);
    d->h = carve(c, R * C * e);
    d->r = carve(c, R * C * e);
    d->mean = carve(c, R * sizeof(float));
    d->rstd = carve(c, R * sizeof(float));
    d->q = carve(c, R * C * e);
    d->att = carve(c, R * C * e);
    d->k = carve(c, R * KD * e);
    d->v = carve(c, R * KD * e);
    d->fc = carve(c, R * F * e);
    d->up = cf->arch == MODEL_ARCH_LLAMA ? carve(c, R * F * e) : NULL;
    d->f = carve(c, R * F * e);
    d->last = carve(c, (size_t)d->B * C * e);
    d->logits = carve(c, (size_t)d->B * (size_t)cf->vocab_size * sizeof(float));
}

sl_status decode_create(const model_layout *layout, sl_backend *be, const void *params, int batch,
                        int max_seq, int prefill_chunk, decode **out) {
    *out = NULL;
    SL_CHECK_ARG(params != NULL, "decode_create: params is NULL");
    SL_CHECK_ARG(batch >= 1 && max_seq >= 1, "decode_create: batch %d and max_seq %d must be >= 1", batch,
                 max_seq);
    SL_CHECK_ARG(max_seq <= layout->cfg.max_seq_len,
                 "decode_create: max_seq %d exceeds model.max_seq_len %d", max_seq,
                 layout->cfg.max_seq_len);
    decode *d = calloc(1, sizeof *d);
    SL_CHECK_ALLOC(d, sizeof *d);
    d->l = layout;
    d->be = be;
    d->params = params;
    d->B = batch;
    d->S = max_seq;
    d->chunk = prefill_chunk > 0 ? prefill_chunk : DECODE_DEFAULT_PREFILL_CHUNK;
    if (d->chunk > max_seq)
        d->chunk = max_seq;
    d->act = be->act_dtype;
    d->esz = dtype_size(d->act);
    int L = layout->cfg.n_layer;
    d->unit_off = calloc((size_t)layout->n_units + 1, sizeof *d->unit_off);
    d->kc = calloc((size_t)L, sizeof *d->kc);
    d->vc = calloc((size_t)L, sizeof *d->vc);
    d->tokens_host = malloc((size_t)batch * (size_t)d->chunk * sizeof *d->tokens_host);
    if (!d->unit_off || !d->kc || !d->vc || !d->tokens_host) {
        decode_destroy(d);
        return sl_errorf(SL_ERR_NOMEM, "decode_create: out of memory for host bookkeeping");
    }
    for (int u = 0; u < layout->n_units; u++)
        d->unit_off[u + 1] = d->unit_off[u] + layout->units[u].numel;

    size_t per = (size_t)batch * (size_t)max_seq * (size_t)layout->cfg.n_kv_head *
                 (size_t)layout->head_dim * d->esz;
    d->cache_bytes = 2 * (size_t)L * per;
    void *p = NULL;
    sl_status st = backend_alloc(be, MEM_CATEGORY_ACTIVATIONS, d->cache_bytes, &p);
    if (st != SL_OK) {
        decode_destroy(d);
        return sl_error_wrapf(st, "decode_create: KV cache for batch %d x %d positions x %d layers (%zu bytes)",
                              batch, max_seq, L, 2 * (size_t)L * per);
    }
    d->cache = p;
    for (int i = 0; i < L; i++) {
        d->kc[i] = d->cache + (size_t)(2 * i) * per;
        d->vc[i] = d->cache + (size_t)(2 * i + 1) * per;
    }
    carver sizing = {NULL, 0};
    carve_acts(d, &sizing);
    st = backend_alloc(be, MEM_CATEGORY_ACTIVATIONS, sizing.off, &p);
    if (st != SL_OK) {
        decode_destroy(d);
        return sl_error_wrapf(st, "decode_create: activations for %d x %d rows (%zu bytes)", batch,
                              d->chunk, sizing.off);
    }
    d->arena = p;
    d->arena_bytes = sizing.off;
    carver real = {d->arena, 0};
    carve_acts(d, &real);
    *out = d;
    return SL_OK;
}

void decode_destroy(decode *d) {
    if (!d)
        return;
    if (d->arena)
        backend_free(d->be, MEM_CATEGORY_ACTIVATIONS, d->arena, d->arena_bytes);
    if (d->cache)
        backend_free(d->be, MEM_CATEGORY_ACTIVATIONS, d->cache, d->cache_bytes);
    free(d->unit_off);
    free(d->kc);
    free(d->vc);
    free(d->tokens_host);
    free(d);
}

void decode_reset(decode *d) { d->pos = 0; }

int64_t decode_pos(const decode *d) { return d->pos; }

int64_t decode_cache_bytes(const decode *d) { return (int64_t)d->cache_bytes; }

/* ---- views (rows R of the current chunk) ---- */

static sl_tensor A2(const decode *d, const void *p, int64_t r, int64_t c) {
    return ops_view2(d->be, d->act, p, r, c);
}
static const void *unit_ptr(const decode *d, int unit) {
    return d->params + (size_t)d->unit_off[unit] * d->esz;
}
static sl_tensor W2(const decode *d, const void *unit, int64_t off, int64_t r, int64_t c) {
    return ops_view2(d->be, d->act, (const char *)unit + (size_t)off * d->esz, r, c);
}
static sl_tensor W1(const decode *d, const void *unit, int64_t off, int64_t n) {
    return off < 0 ? ops_none() : ops_view1(d->be, d->act, (const char *)unit + (size_t)off * d->esz, n);
}

static bool is_llama(const decode *d) { return d->l->cfg.arch == MODEL_ARCH_LLAMA; }

static sl_status norm(decode *d, void *out, const void *inp, int64_t R, const void *p, int64_t w,
                      int64_t b) {
    int64_t C = d->l->cfg.d_model;
    float eps = (float)d->l->cfg.norm_eps;
    sl_tensor rstd = ops_view1(d->be, SL_DTYPE_F32, d->rstd, R);
    if (is_llama(d))
        return ops_rmsnorm_forward(d->be, A2(d, out, R, C), rstd, A2(d, inp, R, C), W1(d, p, w, C), eps);
    return ops_layernorm_forward(d->be, A2(d, out, R, C), ops_view1(d->be, SL_DTYPE_F32, d->mean, R), rstd,
                                 A2(d, inp, R, C), W1(d, p, w, C), W1(d, p, b, C), eps);
}

static sl_status lin(decode *d, void *out, const void *inp, int64_t R, const void *p, int64_t w,
                     int64_t b, int64_t rows, int64_t cols) {
    return ops_linear_forward(d->be, A2(d, out, R, rows), A2(d, inp, R, cols), W2(d, p, w, rows, cols),
                              W1(d, p, b, rows));
}

static sl_status block(decode *d, int layer, int64_t tn) {
    const cfg_model *c = &d->l->cfg;
    const model_block_offsets *o = &d->l->block;
    const void *p = unit_ptr(d, layer + 1);
    sl_backend *be = d->be;
    int64_t R = (int64_t)d->B * tn, C = c->d_model, F = c->d_ff, H = c->n_head, Hk = c->n_kv_head;
    int64_t D = d->l->head_dim, KD = Hk * D;
    sl_tensor q4 = ops_view4(be, d->act, d->q, d->B, tn, H, D);
    sl_tensor k4 = ops_view4(be, d->act, d->k, d->B, tn, Hk, D);
    sl_tensor v4 = ops_view4(be, d->act, d->v, d->B, tn, Hk, D);
    sl_tensor kc = ops_view4(be, d->act, d->kc[layer], d->B, d->S, Hk, D);
    sl_tensor vc = ops_view4(be, d->act, d->vc[layer], d->B, d->S, Hk, D);

    SL_TRY(norm(d, d->h, d->x, R, p, o->ln1_w, o->ln1_b));
    SL_TRY(lin(d, d->q, d->h, R, p, o->q_w, o->q_b, H * D, C));
    SL_TRY(lin(d, d->k, d->h, R, p, o->k_w, o->k_b, KD, C));
    SL_TRY(lin(d, d->v, d->h, R, p, o->v_w, o->v_b, KD, C));
    if (is_llama(d)) {
        float theta = (float)c->rope_theta;
        SL_TRY(ops_rope_forward(be, q4, q4, d->pos, theta));
        SL_TRY(ops_rope_forward(be, k4, k4, d->pos, theta));
    }
    SL_TRY(ops_kv_cache_append(be, kc, k4, d->pos));
    SL_TRY(ops_kv_cache_append(be, vc, v4, d->pos));
    SL_TRY(ops_attention_decode(be, ops_view4(be, d->act, d->att, d->B, tn, H, D), q4, kc, vc, d->pos + tn));
    SL_TRY(lin(d, d->r, d->att, R, p, o->out_w, o->out_b, C, H * D));
    SL_TRY(ops_add(be, A2(d, d->r, R, C), A2(d, d->r, R, C), A2(d, d->x, R, C)));
    SL_TRY(norm(d, d->h, d->r, R, p, o->ln2_w, o->ln2_b));
    SL_TRY(lin(d, d->fc, d->h, R, p, o->fc_w, o->fc_b, F, C));
    if (is_llama(d)) {
        SL_TRY(lin(d, d->up, d->h, R, p, o->up_w, -1, F, C));
        SL_TRY(ops_swiglu_forward(be, A2(d, d->f, R, F), A2(d, d->fc, R, F), A2(d, d->up, R, F)));
    } else {
        SL_TRY(ops_gelu_forward(be, A2(d, d->f, R, F), A2(d, d->fc, R, F)));
    }
    SL_TRY(lin(d, d->x, d->f, R, p, o->proj_w, o->proj_b, C, F));
    return ops_add(be, A2(d, d->x, R, C), A2(d, d->x, R, C), A2(d, d->r, R, C));
}

/* Final norm and LM head on the last position of each row; logits to host.
 * The head is an ops_matmul into an F32 C (fp32 accumulation, no rounding to
 * the act dtype), so the host gets F32 logits from either backend with one
 * copy (backend_memcpy D2H returns once the data is on the host). */
static sl_status head(decode *d, int64_t tn, float *logits_host) {
    const model_layout *l = d->l;
    sl_backend *be = d->be;
    int64_t C = l->cfg.d_model, V = l->cfg.vocab_size, B = d->B;
    size_t row = (size_t)C * d->esz;
    for (int64_t b = 0; b < B; b++)
        SL_TRY(backend_memcpy(be, (char *)d->last + (size_t)b * row,
                              (const char *)d->x + (size_t)(b * tn + tn - 1) * row, row, BACKEND_COPY_D2D));
    const void *pl = unit_ptr(d, l->n_units - 1);
    SL_TRY(norm(d, d->last, d->last, B, pl, l->fin.norm_w, l->fin.norm_b));
    const void *hp = l->fin.head_w < 0 ? unit_ptr(d, 0) : pl;
    int64_t hoff = l->fin.head_w < 0 ? l->fin.wte : l->fin.head_w;
    /* logits (B, V) = last (B, C) head (V, C)^T */
    SL_TRY(ops_matmul(be, ops_view2(be, SL_DTYPE_F32, d->logits, B, V), A2(d, d->last, B, C),
                      W2(d, hp, hoff, V, C), ops_none(), false, true, 1.0f, 0.0f));
    return backend_memcpy(be, logits_host, d->logits, (size_t)(B * V) * sizeof(float), BACKEND_COPY_D2H);
}

sl_status decode_prefill(decode *d, const uint32_t *tokens, int64_t n, float *logits_last) {
    const model_layout *l = d->l;
    int64_t V = l->cfg.vocab_size, C = l->cfg.d_model;
    SL_CHECK_ARG(n >= 1, "decode_prefill: n = %" PRId64 ", expected >= 1 token per row", n);
    SL_CHECK_ARG(d->pos + n <= d->S,
                 "decode_prefill: positions %" PRId64 "..%" PRId64 " do not fit the cache of %d "
                 "positions (max_seq); start a new sequence or create a longer cache",
                 d->pos, d->pos + n - 1, d->S);
    for (int64_t b = 0; b < d->B; b++)
        for (int64_t t = 0; t < n; t++)
            if ((int64_t)tokens[b * n + t] >= V)
                return sl_errorf(SL_ERR_INVALID,
                                 "decode_prefill: token id %" PRIu32 " at row %" PRId64 ", position %" PRId64
                                 " is >= model.vocab_size %" PRId64,
                                 tokens[b * n + t], b, d->pos + t, V);
    sl_backend *be = d->be;
    const void *p0 = unit_ptr(d, 0);
    sl_tensor wte = W2(d, p0, l->fin.wte, V, C);
    sl_tensor wpe = l->fin.wpe < 0 ? ops_none() : W2(d, p0, l->fin.wpe, l->cfg.max_seq_len, C);
    /* On error the cache may hold rows past pos; pos does not move, so the
     * next call overwrites them. */
    int64_t start = d->pos;
    for (int64_t t0 = 0; t0 < n; t0 += d->chunk) {
        int64_t tn = n - t0 < d->chunk ? n - t0 : d->chunk;
        for (int64_t b = 0; b < d->B; b++)
            memcpy(d->tokens_host + b * tn, tokens + b * n + t0, (size_t)tn * sizeof *tokens);
        sl_status st = backend_memcpy(be, d->tokens, d->tokens_host, (size_t)(d->B * tn) * sizeof(uint32_t),
                                      BACKEND_COPY_H2D);
        if (st == SL_OK)
            st = ops_embedding_forward(be, ops_view3(be, d->act, d->x, d->B, tn, C),
                                       ops_view2(be, SL_DTYPE_U32, d->tokens, d->B, tn), wte, wpe, d->pos);
        for (int i = 0; i < l->cfg.n_layer && st == SL_OK; i++)
            st = block(d, i, tn);
        if (st == SL_OK && logits_last && t0 + tn == n)
            st = head(d, tn, logits_last);
        if (st == SL_OK)
            st = backend_synchronize(be); /* the staging buffer is reused next chunk */
        if (st != SL_OK) {
            d->pos = start;
            return st;
        }
        d->pos += tn;
    }
    return SL_OK;
}

sl_status decode_step(decode *d, const uint32_t *tokens, float *logits) {
    return decode_prefill(d, tokens, 1, logits);
}
