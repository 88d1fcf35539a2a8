/* optim/optim.c: AdamW (host and backend), LR schedules, clipping. */
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>

#include "runtime/check.h"

adamw_params adamw_params_from_cfg(const cfg_optim *cfg) {
    adamw_params p;
    p.beta1 = (float)cfg->beta1;
    p.beta2 = (float)cfg->beta2;
    p.eps = (float)cfg->eps;
    p.grad_scale = 1.0f;
    return p;
}

void adamw_update(const adamw_params *p, int64_t step, float lr, float *param, const float *grad,
                  float *m, float *v, size_t n, float weight_decay) {
    float b1 = p->beta1, b2 = p->beta2, eps = p->eps, gs = p->grad_scale;
    float bc1 = 1.0f - powf(b1, (float)step);
    float bc2_sqrt = sqrtf(1.0f - powf(b2, (float)step));
    float step_size = lr / bc1;
    float decay = 1.0f - lr * weight_decay;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * gs;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float pi = param[i] * decay;
        param[i] = pi - step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

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

sl_status optim_sq_norm(sl_backend *be, const float *x, int64_t n, double *out) {
    *out = 0;
    if (n == 0)
        return SL_OK;
    return ops_sq_norm(be, ops_view1(be, SL_DTYPE_F32, x, n), out);
}

sl_status optim_adamw_segments(sl_backend *be, const model_layout *l, int unit, int64_t start,
                               int64_t count, const cfg_optim *cfg, int64_t step, float lr,
                               float grad_scale, float *params, const float *grads, float *m,
                               float *v, void *param_copy) {
    int n = 0;
    SL_TRY(model_layout_decay_segments(l, unit, NULL, 0, &n));
    model_decay_segment *segs = calloc((size_t)n, sizeof *segs);
    SL_CHECK_ALLOC(segs, sizeof *segs * (size_t)n);
    sl_status st = model_layout_decay_segments(l, unit, segs, n, &n);
    ops_adamw_args a = {lr, (float)cfg->beta1, (float)cfg->beta2, (float)cfg->eps, 0.0f, grad_scale, step};
    int64_t end = start + count;
    for (int i = 0; i < n && st == SL_OK; i++) {
        int64_t s0 = segs[i].offset > start ? segs[i].offset : start;
        int64_t s1 = segs[i].offset + segs[i].length < end ? segs[i].offset + segs[i].length : end;
        if (s0 >= s1)
            continue;
        a.weight_decay = segs[i].decay ? (float)cfg->weight_decay : 0.0f;
        int64_t k = s0 - start, len = s1 - s0;
        st = ops_adamw(be, ops_view1(be, SL_DTYPE_F32, params + k, len),
                       ops_view1(be, SL_DTYPE_F32, grads + k, len), ops_view1(be, SL_DTYPE_F32, m + k, len),
                       ops_view1(be, SL_DTYPE_F32, v + k, len),
                       param_copy ? ops_view1(be, be->act_dtype,
                                              (char *)param_copy + (size_t)k * dtype_size(be->act_dtype), len)
                                  : ops_none(),
                       &a);
    }
    free(segs);
    return st;
}
