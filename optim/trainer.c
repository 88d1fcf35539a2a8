/* optim/trainer.c: single-process params/grads/AdamW state and the step. */
#include "optim/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"
#include "runtime/check.h"

struct trainer {
    const model_layout *l;
    sl_backend *be;
    size_t bytes;
    float *params, *grads, *m, *v;
    int64_t step_count;
    model_local local;
    model_unit_hooks hooks;
};

sl_status trainer_create(const model_layout *layout, sl_backend *be, trainer **out) {
    *out = NULL;
    trainer *t = calloc(1, sizeof *t);
    SL_CHECK_ALLOC(t, sizeof *t);
    t->l = layout;
    t->be = be;
    t->bytes = (size_t)layout->total_numel * sizeof(float);
    sl_status st = backend_alloc(be, MEM_CATEGORY_PARAMS, t->bytes, (void **)&t->params);
    if (st == SL_OK)
        st = backend_alloc(be, MEM_CATEGORY_GRADS, t->bytes, (void **)&t->grads);
    if (st == SL_OK)
        st = backend_alloc(be, MEM_CATEGORY_OPTIMIZER, t->bytes, (void **)&t->m);
    if (st == SL_OK)
        st = backend_alloc(be, MEM_CATEGORY_OPTIMIZER, t->bytes, (void **)&t->v);
    if (st == SL_OK)
        st = model_local_init(&t->local, layout, t->params, t->grads, &t->hooks);
    if (st != SL_OK) {
        trainer_destroy(t);
        return sl_error_wrapf(st, "trainer: %lld parameters", (long long)layout->total_numel);
    }
    *out = t;
    return SL_OK;
}

void trainer_destroy(trainer *t) {
    if (!t)
        return;
    if (t->params)
        backend_free(t->be, MEM_CATEGORY_PARAMS, t->params, t->bytes);
    if (t->grads)
        backend_free(t->be, MEM_CATEGORY_GRADS, t->grads, t->bytes);
    if (t->m)
        backend_free(t->be, MEM_CATEGORY_OPTIMIZER, t->m, t->bytes);
    if (t->v)
        backend_free(t->be, MEM_CATEGORY_OPTIMIZER, t->v, t->bytes);
    model_local_free(&t->local);
    free(t);
}

float *trainer_params(trainer *t) { return t->params; }
float *trainer_grads(trainer *t) { return t->grads; }
const model_unit_hooks *trainer_hooks(trainer *t) { return &t->hooks; }

sl_status trainer_load_params(trainer *t, const float *host) {
    return backend_memcpy(t->be, t->params, host, t->bytes, BACKEND_COPY_H2D);
}

sl_status trainer_init_params(trainer *t, uint64_t seed) {
    float *host = t->params;
    if (t->be->device != SL_DEVICE_CPU) {
        host = malloc(t->bytes);
        SL_CHECK_ALLOC(host, t->bytes);
    }
    sl_status st = SL_OK;
    for (int u = 0; u < t->l->n_units && st == SL_OK; u++)
        st = model_init_unit_range(t->l, u, 0, t->l->units[u].numel, host + t->local.unit_offset[u], seed);
    if (st == SL_OK && host != t->params)
        st = trainer_load_params(t, host);
    if (host != t->params)
        free(host);
    return st;
}

sl_status trainer_zero_grads(trainer *t) { return backend_memset_zero(t->be, t->grads, t->bytes); }

sl_status trainer_optimizer_step(trainer *t, const cfg_optim *cfg, int step, int total_steps,
                                 trainer_step_stats *stats) {
    memset(stats, 0, sizeof *stats);
    SL_TRY(optim_sq_norm(t->be, t->grads, t->l->total_numel, &stats->grad_sq_norm));
    stats->lr = lr_schedule_at(cfg, step, total_steps);
    if (!isfinite(stats->grad_sq_norm)) {
        stats->skipped = true;
        return SL_OK;
    }
    stats->clip_factor = optim_clip_factor(stats->grad_sq_norm, cfg->grad_clip);
    t->step_count++;
    for (int u = 0; u < t->l->n_units; u++) {
        int64_t o = t->local.unit_offset[u];
        SL_TRY(optim_adamw_segments(t->be, t->l, u, 0, t->l->units[u].numel, cfg, t->step_count,
                                    (float)stats->lr, (float)stats->clip_factor, t->params + o,
                                    t->grads + o, t->m + o, t->v + o, NULL));
    }
    return SL_OK;
}
