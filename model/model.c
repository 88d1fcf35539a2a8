/* model/model.c: activations, the hook protocol and the pass of GPT-2 and
 * Llama, one unit at a time (protocol in model.h): embeddings, the blocks
 * (model/block.h's block_forward and block_backward, shared with decoding),
 * the final norm and the LM head with the loss.
 *
 * Backward walks the units in reverse; the residual gradient dres is carried
 * through the stream and the norms' input gradients are accumulated into it
 * (ops' dinp_accumulate).
 */
#include "model/model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "model/lora.h"
#include "runtime/check.h"

struct model {
    const model_layout *l;
    sl_backend *be;
    block_ctx bc;           /* act dtype, rows N = B*T; bc.lora = &lora once attached */
    bool recompute;
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
    float *xloss;           /* (N) per-token losses of the row passes */
    /* the row passes (model_forward_rows, model_forward_backward_rows) */
    model_row_grad_fn row_fn;
    void *row_ctx;
    double *row_value;      /* (B) caller's */
    int64_t *row_valid;     /* (B) caller's */
    const int32_t *row_targets; /* host targets of the call */
    block_grads d;          /* backward scratch; d.dc doubles as dL/d lnf */
    /* LoRA (model_attach_lora); lora.spec NULL = none. Dropout (lora.h, p > 0
     * only): masks recomputed, never stored */
    block_lora lora;
    char *lora_arena;
    size_t lora_bytes;
    bool drop_set;          /* lora.drop was set since the last model_forward_backward */
};

/* ---- arena ---- */

/* Vocabulary columns of logits held at once (MODEL_LOGITS_BUDGET). */
static int64_t logits_chunk_cols(int64_t V, int64_t N) {
    if (N * V <= MODEL_LOGITS_BUDGET)
        return V;
    int64_t vc = MODEL_LOGITS_BUDGET / N;
    if (vc >= 64)
        vc -= vc % 64;
    return vc < 1 ? 1 : vc;
}

static void carve_all(void *obj, block_carver *c) {
    model *m = obj;
    const cfg_model *cf = &m->l->cfg;
    size_t N = (size_t)m->bc.N, C = (size_t)cf->d_model, F = (size_t)cf->d_ff;
    size_t HD = (size_t)m->l->head_dim * (size_t)cf->n_head;
    size_t KD = (size_t)m->l->head_dim * (size_t)cf->n_kv_head;
    size_t e = m->bc.esz, f4 = sizeof(float);
    int L = cf->n_layer;
    m->tokens = block_carve(c, N * sizeof(uint32_t));
    m->targets = block_carve(c, N * sizeof(int32_t));
    for (int i = 0; i <= L; i++) {
        void *p = block_carve(c, N * C * e);
        if (m->res)
            m->res[i] = p;
    }
    int distinct = m->recompute ? 1 : L;
    for (int i = 0; i < distinct; i++) {
        block_acts a;
        block_acts_carve(c, m->l, m->bc.N, e, true, &a);
        if (m->acts)
            m->acts[i] = a;
    }
    if (m->acts && m->recompute)
        for (int i = 1; i < L; i++)
            m->acts[i] = m->acts[0];
    m->lnf = block_carve(c, N * C * e);
    m->lnf_mean = block_carve(c, N * f4);
    m->lnf_rstd = block_carve(c, N * f4);
    m->logits = block_carve(c, N * (size_t)m->vchunk * e);
    m->xstats = block_carve(c, N * OPS_XENT_STATS * f4);
    m->xlse = block_carve(c, N * f4);
    m->xloss = block_carve(c, N * f4);
    m->d.dres = block_carve(c, N * C * e);
    m->d.dc = block_carve(c, N * (HD > C ? HD : C) * e); /* dL/d att (N, H*D), then dL/d ln (N, C) */
    m->d.dq = block_carve(c, N * HD * e);
    m->d.dk = block_carve(c, N * KD * e);
    m->d.dv = block_carve(c, N * KD * e);
    m->d.df = block_carve(c, N * F * e);
}

sl_status model_create(const model_layout *layout, sl_backend *be, int micro_batch, int seq_len,
                       bool recompute, model **out) {
    *out = NULL;
    SL_CHECK_ARG(micro_batch >= 1 && seq_len >= 1, "model_create: micro_batch %d and seq_len %d must be >= 1",
                 micro_batch, seq_len);
    SL_CHECK_ARG(seq_len <= layout->cfg.max_seq_len,
                 "model_create: seq_len %d exceeds model.max_seq_len %d", seq_len,
                 layout->cfg.max_seq_len);
    SL_CHECK_ARG(layout->cfg.sliding_window == 0 || seq_len <= layout->cfg.sliding_window,
                 "model_create: seq_len %d exceeds model.sliding_window %d (attention is full causal, "
                 "exact only within the window)",
                 seq_len, layout->cfg.sliding_window);
    model *m = calloc(1, sizeof *m);
    SL_CHECK_ALLOC(m, sizeof *m);
    m->l = layout;
    m->be = be;
    m->recompute = recompute;
    sl_status st = block_ctx_init(&m->bc, layout, be);
    if (st != SL_OK) {
        free(m);
        return sl_error_wrapf(st, "model_create: the RoPE frequency table");
    }
    block_ctx_rows(&m->bc, micro_batch, seq_len);
    m->vchunk = logits_chunk_cols(layout->cfg.vocab_size, m->bc.N);
    int L = layout->cfg.n_layer;
    m->res = calloc((size_t)L + 1, sizeof *m->res);
    m->acts = calloc((size_t)L, sizeof *m->acts);
    if (!m->res || !m->acts) {
        model_destroy(m);
        return sl_errorf(SL_ERR_NOMEM, "model_create: out of memory for %d layers' pointers", L);
    }
    st = block_arena_alloc(be, carve_all, m, &m->arena, &m->arena_bytes);
    if (st != SL_OK) {
        size_t bytes = m->arena_bytes;
        model_destroy(m);
        return sl_error_wrapf(st, "model_create: activations for micro_batch %d x seq_len %d (%zu bytes)",
                              micro_batch, seq_len, bytes);
    }
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
    block_ctx_free(&m->bc);
    free(m->lora.t);
    free(m->res);
    free(m->acts);
    free(m);
}

/* block_ctx_init's (D/2) F32 inverse frequencies, on the llama-like archs */
static int64_t rope_table_bytes(const model_layout *l) {
    return config_arch_llama_like(l->cfg.arch) ? (int64_t)(l->head_dim / 2) * (int64_t)sizeof(float) : 0;
}

int64_t model_activation_bytes(const model *m) {
    return (int64_t)(m->arena_bytes + m->lora_bytes) + rope_table_bytes(m->l);
}

/* The adapter arena: a (N, r) tensor per adapted module per distinct block
 * plus one for dt, and with dropout one (N, widest adapted input) scratch;
 * *tb and *xb are the first and the last, 64-byte rounded. */
static size_t lora_arena_bytes(const lora_spec *spec, int64_t N, size_t esz, int distinct, size_t *tb,
                               size_t *xb) {
    *tb = ((size_t)N * (size_t)spec->r * esz + 63) & ~(size_t)63;
    int on = 0;
    int64_t max_in = 0;
    for (int k = 0; k < LORA_MOD_COUNT; k++) {
        on += spec->site[k].on;
        if (spec->site[k].on && spec->site[k].in > max_in)
            max_in = spec->site[k].in;
    }
    /* dropout scratch: the widest adapted input, one for every module */
    *xb = spec->cfg.dropout > 0 ? ((size_t)N * (size_t)max_in * esz + 63) & ~(size_t)63 : 0;
    return *tb * ((size_t)distinct * (size_t)on + 1) + *xb;
}

sl_status model_activation_plan(const model_layout *layout, const lora_spec *lora, sl_dtype act,
                                int micro_batch, int seq_len, bool recompute, model_act_bytes *out) {
    memset(out, 0, sizeof *out);
    SL_CHECK_ARG(micro_batch >= 1 && seq_len >= 1, "model_activation_plan: micro_batch %d and seq_len %d "
                 "must be >= 1", micro_batch, seq_len);
    /* the sizing pass of model_create's arena: carve_all over a model that
     * has the fields it reads and no buffers (res and acts NULL) */
    model m;
    memset(&m, 0, sizeof m);
    m.l = layout;
    m.recompute = recompute;
    m.bc.l = layout;
    m.bc.act = act;
    m.bc.esz = dtype_size(act);
    block_ctx_rows(&m.bc, micro_batch, seq_len);
    m.vchunk = logits_chunk_cols(layout->cfg.vocab_size, m.bc.N);
    block_carver sizing = {NULL, 0};
    carve_all(&m, &sizing);
    out->arena = (int64_t)sizing.off;
    size_t N = (size_t)m.bc.N, r64 = 63;
    out->logits = (int64_t)(((N * (size_t)m.vchunk * m.bc.esz + r64) & ~r64) +
                            ((N * OPS_XENT_STATS * sizeof(float) + r64) & ~r64) +
                            ((N * sizeof(float) + r64) & ~r64));
    out->vchunk = m.vchunk;
    block_carver one = {NULL, 0};
    block_acts a;
    block_acts_carve(&one, layout, m.bc.N, m.bc.esz, true, &a);
    out->per_block = (int64_t)one.off;
    if (lora) {
        size_t tb, xb;
        out->lora = (int64_t)lora_arena_bytes(lora, m.bc.N, m.bc.esz, recompute ? 1 : layout->cfg.n_layer,
                                              &tb, &xb);
    }
    out->rope = rope_table_bytes(layout);
    out->total = out->arena + out->rope + out->lora;
    return SL_OK;
}

sl_status model_attach_lora(model *m, const lora_spec *spec) {
    SL_CHECK_ARG(spec && spec->base == m->l, "model_attach_lora: the spec was built for another layout");
    SL_CHECK_ARG(m->l->fin.score_w < 0,
                 "LoRA on a reward model (model.head = score) is not implemented: the new score head "
                 "must train in full beside the adapters (PEFT's modules_to_save = [\"score\"]); train "
                 "the reward model without lora.enabled");
    SL_CHECK_ARG(!m->lora.spec, "model_attach_lora: a LoRA spec is already attached");
    block_lora *lo = &m->lora;
    int L = m->l->cfg.n_layer, distinct = m->recompute ? 1 : L;
    size_t tb, xb;
    size_t bytes = lora_arena_bytes(spec, m->bc.N, m->bc.esz, distinct, &tb, &xb);
    lo->t = calloc((size_t)L * LORA_MOD_COUNT, sizeof *lo->t);
    SL_CHECK_ALLOC(lo->t, sizeof *lo->t * (size_t)L * LORA_MOD_COUNT);
    void *arena = NULL;
    sl_status st = backend_alloc(m->be, MEM_CATEGORY_ACTIVATIONS, bytes, &arena);
    if (st != SL_OK) {
        free(lo->t);
        lo->t = NULL;
        return sl_error_wrapf(st, "model_attach_lora: adapter activations (%zu bytes)", bytes);
    }
    m->lora_arena = arena;
    m->lora_bytes = bytes;
    char *c = arena;
    lo->dt = c;
    c += tb;
    if (xb) {
        lo->xd = c;
        c += xb;
        lo->p = (float)spec->cfg.dropout;
    }
    for (int i = 0; i < L; i++)
        for (int k = 0; k < LORA_MOD_COUNT; k++) {
            size_t idx = (size_t)i * LORA_MOD_COUNT + (size_t)k;
            if (!spec->site[k].on)
                continue;
            if (i < distinct) {
                lo->t[idx] = c;
                c += tb;
            } else {
                lo->t[idx] = lo->t[k]; /* recompute: one block's worth */
            }
        }
    lo->spec = spec;
    m->bc.lora = lo;
    return SL_OK;
}

sl_status model_set_dropout_ctx(model *m, const model_dropout_ctx *ctx) {
    SL_CHECK_ARG(ctx->step >= 1 && ctx->first_sample >= 0,
                 "model_set_dropout_ctx: step %lld must be >= 1 and first_sample %lld >= 0",
                 (long long)ctx->step, (long long)ctx->first_sample);
    m->lora.drop = *ctx;
    m->drop_set = true;
    return SL_OK;
}

/* ---- hooks ---- */

static sl_status h_prefetch(const model_unit_hooks *h, int unit, int phase) {
    return h->prefetch ? h->prefetch(h->ctx, unit, phase) : SL_OK;
}

/* ---- the pass ---- */

/* PASS_ROWS: forward, per-row log-likelihoods; PASS_TRAIN_ROWS: the same,
 * then the caller's per-row gradient (row_fn) and the backward. */
typedef enum { PASS_LOGITS = 0, PASS_LOSS, PASS_TRAIN, PASS_ROWS, PASS_TRAIN_ROWS } pass_kind;

static bool pass_trains(pass_kind k) { return k == PASS_TRAIN || k == PASS_TRAIN_ROWS; }

static sl_status check_ids(const model *m, const uint32_t *inputs, const int32_t *targets) {
    int64_t V = m->l->cfg.vocab_size;
    for (int64_t i = 0; i < m->bc.N; i++) {
        if ((int64_t)inputs[i] >= V)
            return sl_errorf(SL_ERR_INVALID,
                             "input token id %" PRIu32 " at batch row %" PRId64 ", position %" PRId64
                             " is >= model.vocab_size %" PRId64,
                             inputs[i], i / m->bc.T, i % m->bc.T, V);
        if (targets && (int64_t)targets[i] >= V)
            return sl_errorf(SL_ERR_INVALID,
                             "target id %" PRId32 " at batch row %" PRId64 ", position %" PRId64
                             " is >= model.vocab_size %" PRId64,
                             targets[i], i / m->bc.T, i % m->bc.T, V);
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
    const block_ctx *c = &m->bc;
    int64_t C = m->l->cfg.d_model;
    /* logits (N, vc) = lnf (N, C) head[v0 : v0 + vc] (vc, C)^T */
    return ops_linear_forward(m->be, act_view2(c, m->logits, c->N, vc), act_view2(c, m->lnf, c->N, C),
                              weight_view2(c, hp, hoff + v0 * C, vc, C), ops_none());
}

static sl_status copy_logits_out(model *m, float *host, int64_t v0, int64_t vc) {
    int64_t V = m->l->cfg.vocab_size;
    size_t row = (size_t)vc * m->bc.esz;
    char *tmp = NULL;
    if (m->bc.act != SL_DTYPE_F32) {
        tmp = malloc(row);
        SL_CHECK_ALLOC(tmp, row);
    }
    for (int64_t r = 0; r < m->bc.N; r++) {
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

/* Row passes: the per-row sums of log p(target) from the per-token losses
 * (host, double, in position order), then the caller's gradient per row. */
static sl_status rows_from_losses(model *m) {
    int64_t B = m->bc.B, T = m->bc.T, N = m->bc.N;
    float *loss = malloc(sizeof(float) * (size_t)N);
    SL_CHECK_ALLOC(loss, sizeof(float) * (size_t)N);
    sl_status st = backend_memcpy(m->be, loss, m->xloss, sizeof(float) * (size_t)N, BACKEND_COPY_D2H);
    for (int64_t b = 0; st == SL_OK && b < B; b++) {
        double v = 0;
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++)
            if (m->row_targets[b * T + t] >= 0) {
                v -= (double)loss[b * T + t];
                n++;
            }
        m->row_value[b] = v;
        m->row_valid[b] = n;
    }
    free(loss);
    return st;
}

/* Head forward (and, for the training passes, its backward into dc = dL/d
 * lnf and the head weight's grads). PASS_TRAIN: d(loss_sum * grad_scale);
 * PASS_TRAIN_ROWS: d(objective), the objective's gradient with respect to
 * row b's log-likelihood being row_grad[b] (so each token's cross-entropy
 * gradient is scaled by -row_grad[b]). */
static sl_status head_pass(model *m, pass_kind kind, const model_unit_hooks *h, const void *p0,
                           const void *pl, float grad_scale, float *logits_host, double *loss_sum,
                           int64_t *n_valid) {
    const block_ctx *c = &m->bc;
    int64_t V = m->l->cfg.vocab_size, C = m->l->cfg.d_model, N = c->N;
    int64_t hoff;
    const void *hp = head_unit(m, p0, pl, &hoff);
    sl_backend *be = m->be;
    bool rows = kind == PASS_ROWS || kind == PASS_TRAIN_ROWS;
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
    if (pass_trains(kind) && !h->adapter)
        SL_TRY(h->grad_buffer(h->ctx, m->l->fin.head_w < 0 ? 0 : m->l->n_units - 1, &hg));
    if (m->vchunk == V && !rows) {
        SL_TRY(logits_chunk(m, hp, hoff, 0, V));
        sl_tensor lg = act_view2(c, m->logits, N, V);
        SL_TRY(ops_cross_entropy(be, ops_none(), kind == PASS_TRAIN ? lg : ops_none(), lg, tg, grad_scale,
                                 loss_sum, n_valid));
        if (kind == PASS_TRAIN)
            SL_TRY(ops_linear_backward(be, act_view2(c, m->d.dc, N, C), grad_view2(c, hg, hoff, V, C),
                                       ops_none(), lg, act_view2(c, m->lnf, N, C),
                                       weight_view2(c, hp, hoff, V, C), false));
        return SL_OK;
    }
    sl_tensor st = ops_view2(be, SL_DTYPE_F32, m->xstats, N, OPS_XENT_STATS);
    sl_tensor lse = f32_view1(c, m->xlse, N);
    for (int64_t v0 = 0; v0 < V; v0 += m->vchunk) {
        int64_t vc = V - v0 < m->vchunk ? V - v0 : m->vchunk;
        SL_TRY(logits_chunk(m, hp, hoff, v0, vc));
        SL_TRY(ops_xent_stats_chunk(be, st, act_view2(c, m->logits, N, vc), tg, v0, v0 == 0));
    }
    SL_TRY(ops_xent_loss(be, rows ? f32_view1(c, m->xloss, N) : ops_none(), lse, st, tg, loss_sum, n_valid));
    if (!pass_trains(kind) && !rows)
        return SL_OK;
    if (rows) {
        SL_TRY(rows_from_losses(m));
        if (kind == PASS_ROWS)
            return SL_OK;
    }
    double *rg = NULL;
    if (kind == PASS_TRAIN_ROWS) {
        rg = calloc((size_t)c->B, sizeof *rg);
        SL_CHECK_ALLOC(rg, sizeof *rg * (size_t)c->B);
        sl_status s = m->row_fn(m->row_ctx, (int)c->B, m->row_value, m->row_valid, rg);
        if (s != SL_OK) {
            free(rg);
            return s;
        }
    }
    sl_status s = SL_OK;
    for (int64_t v0 = 0; s == SL_OK && v0 < V; v0 += m->vchunk) {
        int64_t vc = V - v0 < m->vchunk ? V - v0 : m->vchunk;
        s = logits_chunk(m, hp, hoff, v0, vc);
        sl_tensor lg = act_view2(c, m->logits, N, vc);
        if (s == SL_OK && !rg)
            s = ops_xent_backward_chunk(be, lg, lg, lse, tg, v0, grad_scale);
        /* row b's T positions, its cross-entropy scaled by -row_grad[b] */
        for (int64_t b = 0; rg && s == SL_OK && b < c->B; b++) {
            int64_t r0 = b * c->T;
            sl_tensor lgb = act_view2(c, (char *)m->logits + (size_t)(r0 * vc) * c->esz, c->T, vc);
            s = ops_xent_backward_chunk(be, lgb, lgb, f32_view1(c, m->xlse + r0, c->T),
                                        ops_view1(be, SL_DTYPE_I32, m->targets + r0, c->T), v0,
                                        (float)-rg[b]);
        }
        if (s == SL_OK)
            s = ops_linear_backward(be, act_view2(c, m->d.dc, N, C), grad_view2(c, hg, hoff + v0 * C, vc, C),
                                    ops_none(), lg, act_view2(c, m->lnf, N, C),
                                    weight_view2(c, hp, hoff + v0 * C, vc, C), v0 > 0);
    }
    free(rg);
    return s;
}

/* ---- the score head (model.head = score) ----
 *
 * Row b's value is r_b = score . lnf[b, pos_b] (transformers'
 * *ForSequenceClassification: the score linear at the last non-padding
 * token). pos_b is the row's last real token: targets[b*T + j] >= 0 for the
 * last time at j, whose target is the input token at j + 1 (a pair row's
 * response end marker), so pos_b = j + 1, clamped to T - 1 (a row cut at T
 * ends at its last input). A row without a valid target has value 0,
 * row_valid 0 and no gradient. Everything is (B rows x C) host arithmetic
 * over backend_memcpy: no kernel, any backend. */

/* The row's pooled position, or -1 when it has no valid target. */
static int64_t score_pos(const int32_t *targets, int64_t b, int64_t T) {
    for (int64_t j = T - 1; j >= 0; j--)
        if (targets[b * T + j] >= 0)
            return j + 1 < T ? j + 1 : T - 1;
    return -1;
}

/* n act-dtype elements at src (backend) into dst (host fp32). */
static sl_status act_to_host(model *m, float *dst, const void *src, int64_t n) {
    if (m->bc.act == SL_DTYPE_F32)
        return backend_memcpy(m->be, dst, src, (size_t)n * sizeof(float), BACKEND_COPY_D2H);
    uint16_t *tmp = malloc((size_t)n * sizeof *tmp);
    SL_CHECK_ALLOC(tmp, (size_t)n * sizeof *tmp);
    sl_status st = backend_memcpy(m->be, tmp, src, (size_t)n * sizeof *tmp, BACKEND_COPY_D2H);
    if (st == SL_OK)
        f32_from_bf16_array(dst, tmp, (size_t)n);
    free(tmp);
    return st;
}

static sl_status act_from_host(model *m, void *dst, const float *src, int64_t n) {
    if (m->bc.act == SL_DTYPE_F32)
        return backend_memcpy(m->be, dst, src, (size_t)n * sizeof(float), BACKEND_COPY_H2D);
    uint16_t *tmp = malloc((size_t)n * sizeof *tmp);
    SL_CHECK_ALLOC(tmp, (size_t)n * sizeof *tmp);
    bf16_from_f32_array(tmp, src, (size_t)n);
    sl_status st = backend_memcpy(m->be, dst, tmp, (size_t)n * sizeof *tmp, BACKEND_COPY_H2D);
    free(tmp);
    return st;
}

/* Forward of the score head (row values), and for PASS_TRAIN_ROWS the
 * caller's row gradients, dc = dL/d lnf (zero but at the pooled rows,
 * row_grad_b * w) and the score weight's grad += sum_b row_grad_b lnf[pos_b]. */
static sl_status score_pass_host(model *m, pass_kind kind, const model_unit_hooks *h, const void *pl,
                                 double *buf) {
    const block_ctx *c = &m->bc;
    int64_t B = c->B, T = c->T, C = m->l->cfg.d_model;
    double *rg = buf;                     /* (B) row gradients */
    int64_t *pos = (int64_t *)(rg + B);   /* (B) pooled positions */
    float *w = (float *)(pos + B);        /* (C) the score weight */
    float *x = w + C;                     /* (B, C) the pooled lnf rows */
    SL_TRY(backend_synchronize(m->be));
    SL_TRY(act_to_host(m, w, (const char *)pl + (size_t)m->l->fin.score_w * c->esz, C));
    for (int64_t b = 0; b < B; b++) {
        pos[b] = score_pos(m->row_targets, b, T);
        double r = 0;
        if (pos[b] >= 0) {
            SL_TRY(act_to_host(m, x + b * C, (const char *)m->lnf + (size_t)((b * T + pos[b]) * C) * c->esz, C));
            for (int64_t k = 0; k < C; k++)
                r += (double)w[k] * (double)x[b * C + k];
        }
        m->row_value[b] = r;
        m->row_valid[b] = pos[b] >= 0 ? 1 : 0;
    }
    if (kind != PASS_TRAIN_ROWS)
        return SL_OK;
    memset(rg, 0, sizeof *rg * (size_t)B);
    SL_TRY(m->row_fn(m->row_ctx, (int)B, m->row_value, m->row_valid, rg));
    /* dlnf: zero, row pos_b = row_grad_b * w */
    SL_TRY(backend_memset_zero(m->be, m->d.dc, (size_t)(c->N * C) * c->esz));
    float *row = x; /* x is not read after the weight grad: its first row is the scratch */
    float *g = NULL;
    SL_TRY(h->grad_buffer(h->ctx, m->l->n_units - 1, &g));
    float *dw = malloc((size_t)C * sizeof *dw);
    SL_CHECK_ALLOC(dw, (size_t)C * sizeof *dw);
    sl_status st = backend_memcpy(m->be, dw, g + m->l->fin.score_w, (size_t)C * sizeof *dw, BACKEND_COPY_D2H);
    for (int64_t k = 0; st == SL_OK && k < C; k++) {
        double acc = 0;
        for (int64_t b = 0; b < B; b++)
            if (pos[b] >= 0)
                acc += rg[b] * (double)x[b * C + k];
        dw[k] += (float)acc;
    }
    if (st == SL_OK)
        st = backend_memcpy(m->be, g + m->l->fin.score_w, dw, (size_t)C * sizeof *dw, BACKEND_COPY_H2D);
    free(dw);
    for (int64_t b = 0; st == SL_OK && b < B; b++) {
        if (pos[b] < 0)
            continue;
        for (int64_t k = 0; k < C; k++)
            row[k] = (float)(rg[b] * (double)w[k]);
        st = act_from_host(m, (char *)m->d.dc + (size_t)((b * T + pos[b]) * C) * c->esz, row, C);
    }
    return st;
}

static sl_status score_pass(model *m, pass_kind kind, const model_unit_hooks *h, const void *pl) {
    int64_t B = m->bc.B, C = m->l->cfg.d_model;
    size_t bytes = (size_t)B * (sizeof(double) + sizeof(int64_t)) + (size_t)(C + B * C) * sizeof(float);
    double *buf = malloc(bytes);
    SL_CHECK_ALLOC(buf, bytes);
    sl_status st = score_pass_host(m, kind, h, pl, buf);
    free(buf);
    return st;
}

static sl_status run_pass(model *m, pass_kind kind, const model_unit_hooks *h, const uint32_t *inputs,
                          const int32_t *targets, float grad_scale, float *logits_host, double *loss_sum,
                          int64_t *n_valid) {
    const model_layout *l = m->l;
    int L = l->cfg.n_layer, last = L + 1;
    bool score = l->fin.score_w >= 0;
    bool tied = l->fin.head_w < 0 && !score;
    sl_backend *be = m->be;
    if (score && kind != PASS_ROWS && kind != PASS_TRAIN_ROWS)
        return sl_errorf(SL_ERR_INVALID,
                         "model: this is a reward model (model.head = score): it has no LM head, so no "
                         "token loss or logits; score sequences with the row passes (shardlm eval --reward)");
    int64_t N = m->bc.N, C = l->cfg.d_model;
    const int FW = MODEL_PHASE_FORWARD, BW = MODEL_PHASE_BACKWARD;
    const model_unit_hooks *ha = h->adapter; /* LoRA adapters; the base is then frozen */
    if ((ha != NULL) != (m->bc.lora != NULL))
        return sl_errorf(SL_ERR_INVALID, "%s",
                         ha ? "model: adapter hooks given but no LoRA spec attached (model_attach_lora)"
                            : "model: LoRA attached but the hooks carry no adapter hooks");
    if (loss_sum)
        *loss_sum = 0;
    if (n_valid)
        *n_valid = 0;
    /* LoRA dropout: training passes only, keyed by the context set for this
     * call (consumed here, so a stale step or sample index cannot be reused) */
    m->lora.drop_on = pass_trains(kind) && m->lora.p > 0;
    if (pass_trains(kind)) {
        bool was_set = m->drop_set;
        m->drop_set = false;
        if (m->lora.drop_on && !was_set)
            return sl_errorf(SL_ERR_INVALID,
                             "model: lora.dropout = %g needs model_set_dropout_ctx (train seed, step, "
                             "global sample index) before each model_forward_backward",
                             (double)m->lora.p);
    }
    SL_TRY(check_ids(m, inputs, kind == PASS_LOGITS ? NULL : targets));
    SL_TRY(backend_memcpy(be, m->tokens, inputs, (size_t)N * sizeof(uint32_t), BACKEND_COPY_H2D));
    if (kind != PASS_LOGITS)
        SL_TRY(backend_memcpy(be, m->targets, targets, (size_t)N * sizeof(int32_t), BACKEND_COPY_H2D));

    /* forward: embeddings */
    const void *p0 = NULL, *p = NULL;
    SL_TRY(h_prefetch(h, 1, FW));
    SL_TRY(h->acquire(h->ctx, 0, FW, &p0));
    sl_tensor wpe = l->fin.wpe < 0 ? ops_none() : weight_view2(&m->bc, p0, l->fin.wpe, l->cfg.max_seq_len, C);
    SL_TRY(ops_embedding_forward(be, ops_view3(be, m->bc.act, m->res[0], m->bc.B, m->bc.T, C),
                                 ops_view2(be, SL_DTYPE_U32, m->tokens, m->bc.B, m->bc.T),
                                 weight_view2(&m->bc, p0, l->fin.wte, l->cfg.vocab_size, C), wpe, 0));
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
        SL_TRY(block_forward(&m->bc, u - 1, p, pa, m->res[u - 1], m->res[u], &m->acts[u - 1], 0, NULL));
        if (ha)
            SL_TRY(ha->release(ha->ctx, u, FW));
        SL_TRY(h->release(h->ctx, u, FW));
    }
    /* final norm and head */
    const void *pl = NULL;
    SL_TRY(h->acquire(h->ctx, last, FW, &pl));
    SL_TRY(block_norm_forward(&m->bc, N, m->lnf, m->lnf_mean, m->lnf_rstd, m->res[L], pl, l->fin.norm_w,
                              l->fin.norm_b));
    if (score)
        SL_TRY(score_pass(m, kind, h, pl));
    else
        SL_TRY(head_pass(m, kind, h, p0, pl, grad_scale, logits_host, loss_sum, n_valid));
    if (!pass_trains(kind)) {
        SL_TRY(h->release(h->ctx, last, FW));
        if (tied)
            SL_TRY(h->release(h->ctx, 0, FW));
        return backend_synchronize(be);
    }

    /* backward: final unit (head grads were accumulated by head_pass or
     * score_pass, which left dL/d lnf in d.dc). With
     * adapters the base is frozen: no base grad buffers, no dW, and the
     * adapters' grads_ready covers every unit (units 0 and L+1 hold none). */
    float *g = NULL, *ga = NULL;
    SL_TRY(h_prefetch(h, L, BW));
    if (ha)
        SL_TRY(h_prefetch(ha, L, BW));
    else
        SL_TRY(h->grad_buffer(h->ctx, last, &g));
    SL_TRY(block_norm_backward(&m->bc, N, m->d.dres, g, m->d.dc, m->res[L], pl, l->fin.norm_w,
                               l->fin.norm_b, m->lnf_mean, m->lnf_rstd, false));
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
            SL_TRY(block_forward(&m->bc, u - 1, p, pa, m->res[u - 1], m->res[u], &m->acts[u - 1], 0, NULL));
        SL_TRY(block_backward(&m->bc, u - 1, p, g, pa, ga, m->res[u - 1], &m->acts[u - 1], &m->d));
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
    sl_tensor dwpe = l->fin.wpe < 0 ? ops_none() : grad_view2(&m->bc, g, l->fin.wpe, l->cfg.max_seq_len, C);
    SL_TRY(ops_embedding_backward(be, grad_view2(&m->bc, g, l->fin.wte, l->cfg.vocab_size, C), dwpe,
                                  ops_view3(be, m->bc.act, m->d.dres, m->bc.B, m->bc.T, C),
                                  ops_view2(be, SL_DTYPE_U32, m->tokens, m->bc.B, m->bc.T), 0));
    SL_TRY(backend_synchronize(be));
    SL_TRY(h->grads_ready(h->ctx, 0));
    if (tied)
        SL_TRY(h->release(h->ctx, 0, BW));
    return SL_OK;
}

/* Forward-only passes without adapter hooks on a model with LoRA attached
 * run the base model alone (the adapters switched off). */
static sl_status run(model *m, pass_kind kind, const model_unit_hooks *h, const uint32_t *inputs,
                     const int32_t *targets, float grad_scale, float *logits_host, double *loss_sum,
                     int64_t *n_valid) {
    const block_lora *saved = m->bc.lora;
    if (!h->adapter && saved && !pass_trains(kind))
        m->bc.lora = NULL;
    sl_status st = run_pass(m, kind, h, inputs, targets, grad_scale, logits_host, loss_sum, n_valid);
    m->bc.lora = saved;
    return st;
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

static sl_status row_pass(model *m, pass_kind kind, const model_unit_hooks *hooks, const uint32_t *inputs,
                          const int32_t *targets, model_row_grad_fn fn, void *ctx, double *row_value,
                          int64_t *row_valid) {
    m->row_fn = fn;
    m->row_ctx = ctx;
    m->row_value = row_value;
    m->row_valid = row_valid;
    m->row_targets = targets;
    double loss_sum = 0;
    int64_t n_valid = 0;
    sl_status st = run(m, kind, hooks, inputs, targets, 0.0f, NULL, &loss_sum, &n_valid);
    m->row_fn = NULL;
    m->row_ctx = NULL;
    m->row_value = NULL;
    m->row_valid = NULL;
    m->row_targets = NULL;
    return st;
}

sl_status model_forward_rows(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                             const int32_t *targets, double *row_value, int64_t *row_valid) {
    return row_pass(m, PASS_ROWS, hooks, inputs, targets, NULL, NULL, row_value, row_valid);
}

sl_status model_forward_backward_rows(model *m, const model_unit_hooks *hooks, const uint32_t *inputs,
                                      const int32_t *targets, model_row_grad_fn fn, void *ctx,
                                      double *row_value, int64_t *row_valid) {
    if (!fn)
        return sl_errorf(SL_ERR_INVALID, "model_forward_backward_rows: no row gradient function");
    return row_pass(m, PASS_TRAIN_ROWS, hooks, inputs, targets, fn, ctx, row_value, row_valid);
}

/* ---- local hooks ---- */

static sl_status local_acquire(void *ctx, int unit, int phase, const void **params) {
    (void)phase;
    model_local *lh = ctx;
    *params = (const char *)lh->params + (size_t)lh->layout->units[unit].offset * dtype_size(lh->param_dtype);
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
    *grads = lh->grads + lh->layout->units[unit].offset;
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
    memset(hooks, 0, sizeof *hooks);
    hooks->ctx = lh;
    hooks->acquire = local_acquire;
    hooks->release = local_release;
    hooks->grad_buffer = local_grad_buffer;
    hooks->grads_ready = local_grads_ready;
    return SL_OK;
}

