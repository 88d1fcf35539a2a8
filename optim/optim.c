/* optim/optim.c: the optimizer step over shard lists (optim.h). */
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/log.h"

struct optimizer {
    sl_backend *be;
    comm *norm_comm;
    optim_shard *shards; /* segs point into segs_store */
    int n_shards, cap_shards;
    int64_t applied;     /* Adam's step count */
    double local_sq;
    bool local_sq_valid;
};

sl_status optim_create(sl_backend *be, comm *norm_comm, optimizer **out) {
    *out = NULL;
    SL_CHECK_ARG(be, "optim_create: no backend");
    optimizer *o = calloc(1, sizeof *o);
    SL_CHECK_ALLOC(o, sizeof *o);
    o->be = be;
    o->norm_comm = norm_comm && comm_size(norm_comm) > 1 ? norm_comm : NULL;
    *out = o;
    return SL_OK;
}

void optim_destroy(optimizer *o) {
    if (!o)
        return;
    for (int i = 0; i < o->n_shards; i++)
        free((void *)o->shards[i].segs);
    free(o->shards);
    free(o);
}

sl_status optim_add_shard(optimizer *o, const optim_shard *s) {
    if (s->n == 0)
        return SL_OK;
    SL_CHECK_ARG(s->param && s->grad && s->m && s->v && s->n > 0 && s->n_segs >= 0,
                 "optim_add_shard: a shard needs param, grad, m, v and n > 0");
    int64_t end = 0;
    for (int i = 0; i < s->n_segs; i++) {
        const optim_segment *g = &s->segs[i];
        SL_CHECK_ARG(g->offset >= end && g->length >= 0 && g->offset + g->length <= s->n,
                     "optim_add_shard: segment %d [%lld, +%lld) is not ascending inside [0, %lld)", i,
                     (long long)g->offset, (long long)g->length, (long long)s->n);
        end = g->offset + g->length;
    }
    if (o->n_shards == o->cap_shards) {
        int cap = o->cap_shards ? 2 * o->cap_shards : 16;
        optim_shard *p = realloc(o->shards, sizeof *p * (size_t)cap);
        SL_CHECK_ALLOC(p, sizeof *p * (size_t)cap);
        o->shards = p;
        o->cap_shards = cap;
    }
    optim_segment *segs = NULL;
    if (s->n_segs > 0) {
        segs = malloc(sizeof *segs * (size_t)s->n_segs);
        SL_CHECK_ALLOC(segs, sizeof *segs * (size_t)s->n_segs);
        memcpy(segs, s->segs, sizeof *segs * (size_t)s->n_segs);
    }
    o->shards[o->n_shards] = *s;
    o->shards[o->n_shards].segs = segs;
    o->n_shards++;
    o->local_sq_valid = false;
    return SL_OK;
}

sl_status optim_local_sq(optimizer *o, double *sq) {
    if (!o->local_sq_valid) {
        double total = 0;
        for (int i = 0; i < o->n_shards; i++) {
            const optim_shard *s = &o->shards[i];
            double x = 0;
            SL_TRY(ops_sq_norm(o->be, ops_view1(o->be, SL_DTYPE_F32, s->grad, s->n), &x));
            total += x;
        }
        o->local_sq = total;
        o->local_sq_valid = true;
    }
    *sq = o->local_sq;
    return SL_OK;
}

void optim_grads_changed(optimizer *o) { o->local_sq_valid = false; }

/* AdamW over one shard's segments. */
static sl_status adamw_shard(optimizer *o, const optim_shard *s, const cfg_optim *cfg, float lr,
                             float grad_scale, int64_t adam_step) {
    sl_backend *be = o->be;
    size_t esz = dtype_size(be->act_dtype);
    ops_adamw_args a = {lr, (float)cfg->beta1, (float)cfg->beta2, (float)cfg->eps, 0.0f, grad_scale, adam_step};
    for (int i = 0; i < s->n_segs; i++) {
        const optim_segment *g = &s->segs[i];
        if (g->length == 0)
            continue;
        int64_t k = g->offset, n = g->length;
        a.weight_decay = g->decay ? (float)cfg->weight_decay : 0.0f;
        SL_TRY(ops_adamw(be, ops_view1(be, SL_DTYPE_F32, s->param + k, n),
                         ops_view1(be, SL_DTYPE_F32, s->grad + k, n), ops_view1(be, SL_DTYPE_F32, s->m + k, n),
                         ops_view1(be, SL_DTYPE_F32, s->v + k, n),
                         s->param_copy ? ops_view1(be, be->act_dtype, (char *)s->param_copy + (size_t)k * esz, n)
                                       : ops_none(),
                         &a));
    }
    return SL_OK;
}

sl_status optim_step(optimizer *o, const cfg_optim *cfg, int step, int total_steps,
                     optim_step_stats *stats) {
    memset(stats, 0, sizeof *stats);
    double sq = 0;
    SL_TRY(optim_local_sq(o, &sq));
    o->local_sq_valid = false; /* the next step brings new gradients */
    if (o->norm_comm) {
        double t0 = sl_now();
        SL_TRY(comm_all_reduce(o->norm_comm, &sq, &sq, 1, SL_DTYPE_F64, COMM_REDOP_SUM));
        stats->comm_s = sl_now() - t0;
    }
    stats->grad_norm = sqrt(sq);
    stats->lr = lr_schedule_at(cfg, step, total_steps);
    if (!isfinite(sq)) {
        stats->skipped = true;
        return SL_OK;
    }
    stats->clip_factor = optim_clip_factor(sq, cfg->grad_clip);
    stats->adam_step = o->applied + 1;
    for (int i = 0; i < o->n_shards; i++)
        SL_TRY(adamw_shard(o, &o->shards[i], cfg, (float)stats->lr, (float)stats->clip_factor,
                           stats->adam_step));
    o->applied = stats->adam_step;
    return SL_OK;
}

int64_t optim_steps_applied(const optimizer *o) { return o->applied; }
void optim_set_steps_applied(optimizer *o, int64_t n) { o->applied = n; }

double lr_schedule_at(const cfg_optim *cfg, int step, int total_steps) {
    double lr = cfg->lr, lo = cfg->lr_min;
    int w = cfg->lr_warmup;
    if (w > 0 && step <= w)
        return lr * (double)step / (double)w;
    double progress = 1.0;
    if (total_steps > w)
        progress = (double)(step - w) / (double)(total_steps - w);
    if (progress < 0)
        progress = 0;
    if (progress > 1)
        progress = 1;
    double out = lr;
    switch (cfg->lr_schedule) {
    case LR_SCHEDULE_COSINE:
        out = lo + (lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
        break;
    case LR_SCHEDULE_LINEAR:
        out = lr - (lr - lo) * progress;
        break;
    default:
        out = lr;
    }
    return out < lo ? lo : out;
}

double optim_clip_factor(double total_sq_norm, double max_norm) {
    if (max_norm <= 0)
        return 1.0;
    double f = max_norm / (sqrt(total_sq_norm) + 1e-6);
    return f < 1.0 ? f : 1.0;
}
