/* train/params.c: parameter groups (params.h). */
#include "train/params.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"

sl_status train_group_create(train_group *g, const char *name, const model_layout *layout,
                             const fsdp_opts *base, bool trainable) {
    *g = (train_group){name, NULL, layout, trainable};
    int64_t *numel = malloc(sizeof *numel * (size_t)layout->n_units);
    SL_CHECK_ALLOC(numel, sizeof *numel * (size_t)layout->n_units);
    for (int u = 0; u < layout->n_units; u++)
        numel[u] = layout->units[u].numel;
    fsdp_opts o = *base;
    o.unit_numel = numel;
    o.n_units = layout->n_units;
    o.frozen = !trainable;
    sl_status st = fsdp_create(&o, &g->fs);
    free(numel);
    return st;
}

/* ---- the model's hooks on an fsdp instance ---- */

static sl_status hk_prefetch(void *ctx, int unit, int phase) {
    return fsdp_prefetch(ctx, unit, (fsdp_phase)phase);
}
static sl_status hk_acquire(void *ctx, int unit, int phase, const void **params) {
    return fsdp_acquire(ctx, unit, (fsdp_phase)phase, params);
}
static sl_status hk_release(void *ctx, int unit, int phase) {
    return fsdp_release(ctx, unit, (fsdp_phase)phase);
}
static sl_status hk_grad_buffer(void *ctx, int unit, float **grads) { return fsdp_grad_buffer(ctx, unit, grads); }
static sl_status hk_grads_ready(void *ctx, int unit) { return fsdp_grads_ready(ctx, unit); }

_Static_assert((int)MODEL_PHASE_FORWARD == (int)FSDP_PHASE_FORWARD &&
                   (int)MODEL_PHASE_BACKWARD == (int)FSDP_PHASE_BACKWARD,
               "model and fsdp phases must agree");

void train_group_hooks(fsdp *f, model_unit_hooks *h) {
    *h = (model_unit_hooks){.ctx = f,
                            .prefetch = hk_prefetch,
                            .acquire = hk_acquire,
                            .release = hk_release,
                            .grad_buffer = hk_grad_buffer,
                            .grads_ready = hk_grads_ready,
                            .adapter = NULL};
}

/* ---- init, load, gather ---- */

typedef struct {
    const model_layout *l;
    uint64_t seed;
} init_ctx;

static sl_status init_range(void *ctx, int unit, int64_t start, int64_t count, float *out) {
    const init_ctx *c = ctx;
    return model_init_unit_range(c->l, unit, start, count, out, c->seed);
}

sl_status train_group_init(const train_group *g, uint64_t seed) {
    init_ctx c = {g->layout, seed};
    return fsdp_init_params(g->fs, init_range, &c);
}

sl_status train_group_load(const train_group *g, const float *host) {
    for (int u = 0; u < g->layout->n_units; u++)
        SL_TRY(fsdp_load_unit(g->fs, u, host + g->layout->units[u].offset));
    return SL_OK;
}

sl_status train_group_load_from(const train_group *g, hf_reader *r) {
    const model_layout *l = g->layout;
    int64_t max_len = 1;
    for (int u = 0; u < l->n_units; u++)
        max_len = fsdp_shard(g->fs, u).len > max_len ? fsdp_shard(g->fs, u).len : max_len;
    float *buf = malloc((size_t)max_len * sizeof *buf);
    SL_CHECK_ALLOC(buf, (size_t)max_len * sizeof *buf);
    sl_status st = SL_OK;
    for (int u = 0; u < l->n_units && st == SL_OK; u++) {
        fsdp_unit_shard s = fsdp_shard(g->fs, u);
        memset(buf, 0, (size_t)s.len * sizeof *buf); /* padding stays zero */
        st = hf_reader_range(r, u, s.start, s.valid, buf);
        if (st == SL_OK)
            st = fsdp_shard_write(g->fs, u, FSDP_BUF_PARAM, buf);
    }
    free(buf);
    return st;
}

sl_status train_group_export(const train_group *g, hf_writer *w, comm *world) {
    const model_layout *l = g->layout;
    int64_t max_numel = 1;
    for (int u = 0; u < l->n_units; u++)
        max_numel = l->units[u].numel > max_numel ? l->units[u].numel : max_numel;
    float *full = malloc((size_t)max_numel * sizeof *full);
    SL_CHECK_ALLOC(full, (size_t)max_numel * sizeof *full);
    sl_status st = SL_OK, wst = SL_OK;
    for (int u = 0; u < l->n_units && st == SL_OK; u++) {
        st = fsdp_gather_unit(g->fs, u, full);
        if (st == SL_OK && w && wst == SL_OK)
            wst = hf_writer_put_unit(w, u, full);
    }
    free(full);
    SL_TRY(st);
    /* the writer's error, on every rank */
    int32_t bad = wst != SL_OK;
    SL_TRY(comm_all_reduce(world, &bad, &bad, 1, SL_DTYPE_I32, COMM_REDOP_MAX));
    if (wst != SL_OK)
        return wst;
    if (bad)
        return sl_errorf(SL_ERR_IO, "the export failed on the writing rank (its log says why)");
    return SL_OK;
}

sl_status train_group_gather(const train_group *g, float *host) {
    for (int u = 0; u < g->layout->n_units; u++)
        SL_TRY(fsdp_gather_unit(g->fs, u, host + g->layout->units[u].offset));
    return SL_OK;
}

/* ---- the optimizer's shard list ---- */

/* Adds elements [start, start + count) of unit u (the pointers address
 * element start) with the layout's decay segments cut to that range. */
static sl_status add_range(optimizer *o, const model_layout *l, int u, int64_t start, int64_t count,
                           float *param, const float *grad, float *m, float *v, void *param_copy) {
    if (count == 0)
        return SL_OK;
    int n = 0;
    SL_TRY(model_layout_decay_segments(l, u, NULL, 0, &n));
    model_decay_segment *ls = calloc((size_t)n + 1, sizeof *ls);
    optim_segment *os = calloc((size_t)n + 1, sizeof *os);
    if (!ls || !os) {
        free(ls);
        free(os);
        return sl_errorf(SL_ERR_NOMEM, "out of memory (decay segments of unit %d)", u);
    }
    sl_status st = model_layout_decay_segments(l, u, ls, n, &n);
    int k = 0;
    for (int i = 0; i < n && st == SL_OK; i++) {
        int64_t a = ls[i].offset > start ? ls[i].offset : start;
        int64_t b = ls[i].offset + ls[i].length < start + count ? ls[i].offset + ls[i].length : start + count;
        if (a < b)
            os[k++] = (optim_segment){a - start, b - a, ls[i].decay};
    }
    optim_shard sh = {param, grad, m, v, param_copy, count, os, k};
    if (st == SL_OK)
        st = optim_add_shard(o, &sh);
    free(ls);
    free(os);
    return st;
}

sl_status train_group_add_to_optim(const train_group *g, optimizer *o) {
    for (int u = 0; u < g->layout->n_units; u++) {
        fsdp_unit_shard s = fsdp_shard(g->fs, u);
        SL_TRY(add_range(o, g->layout, u, s.start, s.valid, s.param, s.grad, s.m, s.v,
                         s.param_act != (void *)s.param ? s.param_act : NULL));
    }
    return SL_OK;
}

sl_status train_local_add_to_optim(optimizer *o, const model_layout *l, float *params, const float *grads,
                                   float *m, float *v) {
    for (int u = 0; u < l->n_units; u++) {
        int64_t off = l->units[u].offset;
        SL_TRY(add_range(o, l, u, 0, l->units[u].numel, params + off, grads + off, m + off, v + off, NULL));
    }
    return SL_OK;
}
