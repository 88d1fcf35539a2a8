/* model/decode.c: KV-cache inference (decode.h).
 *
 * For a chunk of tn new positions per row (R = batch * tn rows), p = pos:
 *   x     = wte[tok] (+ wpe[p + t])                        (B, tn, C)
 *   per layer l: x = block_forward(x, positions p .. p+tn-1, K[l], V[l])
 *     (model/block.h: k, v after RoPE go to K[l][:, p:p+tn], V[l][:, p:p+tn],
 *     (B, S, Hkv, D) caches, and q attends their rows 0 .. p+tn-1)
 *   logits = LN_f(x[:, tn-1]) Whead^T                      (B, V)
 * The block is the one training runs, without adapters (decode.h: merge them
 * first), over one scratch block_acts.
 */
#include "model/decode.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "runtime/check.h"

struct decode {
    const model_layout *l;
    sl_backend *be;
    block_ctx bc;           /* act dtype; rows B * tn of the current chunk */
    const char *params;     /* borrowed, act dtype */
    int B, S, chunk;
    int64_t pos;
    char *cache;            /* every K and V cache */
    size_t cache_bytes;
    char *arena;            /* the chunk's activations */
    size_t arena_bytes;
    block_kv *kv;           /* n_layer caches, (B, S, Hkv, D) each */
    uint32_t *tokens;       /* (B, chunk) backend */
    uint32_t *tokens_host;  /* (B, chunk) staging */
    void *x;                /* (B*chunk, C) residual stream */
    block_acts a;           /* (B*chunk) rows of block scratch; ln2 aliases ln1 */
    void *last;             /* (B, C) last position of each row */
    float *logits;          /* (B, V) F32 whatever the act dtype */
};

static void carve_acts(void *obj, block_carver *c) {
    decode *d = obj;
    const cfg_model *cf = &d->l->cfg;
    size_t R = (size_t)d->B * (size_t)d->chunk, C = (size_t)cf->d_model, e = d->bc.esz;
    d->tokens = block_carve(c, R * sizeof(uint32_t));
    d->x = block_carve(c, R * C * e);
    block_acts_carve(c, d->l, (int64_t)R, e, false, &d->a);
    d->last = block_carve(c, (size_t)d->B * C * e);
    d->logits = block_carve(c, (size_t)d->B * (size_t)cf->vocab_size * sizeof(float));
}

sl_status decode_create(const model_layout *layout, sl_backend *be, const void *params, int batch,
                        int max_seq, int prefill_chunk, decode **out) {
    *out = NULL;
    SL_CHECK_ARG(params != NULL, "decode_create: params is NULL");
    SL_CHECK_ARG(layout->fin.score_w < 0,
                 "decode_create: this is a reward model (model.head = score): it scores sequences and has "
                 "no LM head to generate with");
    SL_CHECK_ARG(batch >= 1 && max_seq >= 1, "decode_create: batch %d and max_seq %d must be >= 1", batch,
                 max_seq);
    SL_CHECK_ARG(max_seq <= layout->cfg.max_seq_len,
                 "decode_create: max_seq %d exceeds model.max_seq_len %d", max_seq,
                 layout->cfg.max_seq_len);
    int win = layout->cfg.sliding_window;
    SL_CHECK_ARG(win == 0 || max_seq <= win,
                 "decode_create: %d positions (prompt + new tokens) exceed model.sliding_window %d; "
                 "shardlm's attention is full causal, exact for sliding-window models only within "
                 "the window: shorten the prompt or the generation",
                 max_seq, win);
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
    sl_status st = block_ctx_init(&d->bc, layout, be); /* no adapters: bc.lora stays NULL */
    if (st != SL_OK) {
        free(d);
        return sl_error_wrapf(st, "decode_create: the RoPE frequency table");
    }
    int L = layout->cfg.n_layer;
    d->kv = calloc((size_t)L, sizeof *d->kv);
    d->tokens_host = malloc((size_t)batch * (size_t)d->chunk * sizeof *d->tokens_host);
    if (!d->kv || !d->tokens_host) {
        decode_destroy(d);
        return sl_errorf(SL_ERR_NOMEM, "decode_create: out of memory for host bookkeeping");
    }

    size_t per = (size_t)batch * (size_t)max_seq * (size_t)layout->cfg.n_kv_head *
                 (size_t)layout->head_dim * d->bc.esz;
    d->cache_bytes = 2 * (size_t)L * per;
    void *p = NULL;
    st = backend_alloc(be, MEM_CATEGORY_ACTIVATIONS, d->cache_bytes, &p);
    if (st != SL_OK) {
        decode_destroy(d);
        return sl_error_wrapf(st, "decode_create: KV cache for batch %d x %d positions x %d layers (%zu bytes)",
                              batch, max_seq, L, 2 * (size_t)L * per);
    }
    d->cache = p;
    for (int i = 0; i < L; i++) {
        d->kv[i].k = d->cache + (size_t)(2 * i) * per;
        d->kv[i].v = d->cache + (size_t)(2 * i + 1) * per;
        d->kv[i].S = max_seq;
    }
    st = block_arena_alloc(be, carve_acts, d, &d->arena, &d->arena_bytes);
    if (st != SL_OK) {
        size_t bytes = d->arena_bytes;
        int chunk = d->chunk;
        decode_destroy(d);
        return sl_error_wrapf(st, "decode_create: activations for %d x %d rows (%zu bytes)", batch, chunk,
                              bytes);
    }
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
    block_ctx_free(&d->bc);
    free(d->kv);
    free(d->tokens_host);
    free(d);
}

void decode_reset(decode *d) { d->pos = 0; }

int64_t decode_pos(const decode *d) { return d->pos; }

int64_t decode_cache_bytes(const decode *d) { return (int64_t)d->cache_bytes; }

static const void *unit_ptr(const decode *d, int unit) {
    return param_ptr(&d->bc, d->params, d->l->units[unit].offset);
}

/* Final norm and LM head on the last position of each row; logits to host.
 * The head is an ops_matmul into an F32 C (fp32 accumulation, no rounding to
 * the act dtype), so the host gets F32 logits from either backend with one
 * copy (backend_memcpy D2H returns once the data is on the host). */
static sl_status head(decode *d, int64_t tn, float *logits_host) {
    const model_layout *l = d->l;
    sl_backend *be = d->be;
    int64_t C = l->cfg.d_model, V = l->cfg.vocab_size, B = d->B;
    size_t row = (size_t)C * d->bc.esz;
    for (int64_t b = 0; b < B; b++)
        SL_TRY(backend_memcpy(be, (char *)d->last + (size_t)b * row,
                              (const char *)d->x + (size_t)(b * tn + tn - 1) * row, row, BACKEND_COPY_D2D));
    const void *pl = unit_ptr(d, l->n_units - 1);
    SL_TRY(block_norm_forward(&d->bc, B, d->last, d->a.ln1_mean, d->a.ln1_rstd, d->last, pl,
                              l->fin.norm_w, l->fin.norm_b));
    const void *hp = l->fin.head_w < 0 ? unit_ptr(d, 0) : pl;
    int64_t hoff = l->fin.head_w < 0 ? l->fin.wte : l->fin.head_w;
    /* logits (B, V) = last (B, C) head (V, C)^T */
    SL_TRY(ops_matmul(be, ops_view2(be, SL_DTYPE_F32, d->logits, B, V), act_view2(&d->bc, d->last, B, C),
                      weight_view2(&d->bc, hp, hoff, V, C), ops_none(), false, true, 1.0f, 0.0f));
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
    sl_tensor wte = weight_view2(&d->bc, p0, l->fin.wte, V, C);
    sl_tensor wpe = l->fin.wpe < 0 ? ops_none() : weight_view2(&d->bc, p0, l->fin.wpe, l->cfg.max_seq_len, C);
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
            st = ops_embedding_forward(be, ops_view3(be, d->bc.act, d->x, d->B, tn, C),
                                       ops_view2(be, SL_DTYPE_U32, d->tokens, d->B, tn), wte, wpe, d->pos);
        block_ctx_rows(&d->bc, d->B, (int)tn);
        for (int i = 0; i < l->cfg.n_layer && st == SL_OK; i++)
            st = block_forward(&d->bc, i, unit_ptr(d, i + 1), NULL, d->x, d->x, &d->a, d->pos, &d->kv[i]);
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
