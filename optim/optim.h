/* optim/optim.h: AdamW, learning-rate schedules and global-norm clipping.
 *
 * defines: adamw_params, adamw_params_from_cfg, adamw_update, lr_schedule_at,
 *          optim_clip_factor, optim_sq_norm, optim_adamw_segments
 *
 * AdamW is PyTorch's torch.optim.AdamW (decoupled weight decay, bias
 * correction; formula at ops_adamw_args in kernels/ops.h). adamw_update is
 * the host (plain C, OpenMP) form over one flat range; optim_adamw_segments
 * runs the backend's ops_adamw over a unit's decay/no-decay segments, which
 * is what both the single-process trainer and the FSDP shards use.
 *
 * Does not: own optimizer state (callers own m and v), shard anything
 * (parallel/fsdp does), or know the data-parallel world (the squared norm is
 * local; the caller all-reduces it before optim_clip_factor).
 */
#ifndef SL_OPTIM_OPTIM_H
#define SL_OPTIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "runtime/config.h"
#include "runtime/status.h"

typedef struct {
    float beta1, beta2, eps;
    float grad_scale; /* multiplies every gradient before use (the clipping factor); 1 = none */
} adamw_params;

/* beta1, beta2, eps from cfg; grad_scale 1. */
adamw_params adamw_params_from_cfg(const cfg_optim *cfg);

/* One AdamW step over n elements (host memory), step 1-based:
 *   p -= lr*wd*p; g = grad*grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= lr * (m/(1-b1^step)) / (sqrt(v/(1-b2^step)) + eps)   */
void adamw_update(const adamw_params *p, int64_t step, float lr, float *param, const float *grad,
                  float *m, float *v, size_t n, float weight_decay);

/* Learning rate of the 1-based optimizer step `step` of total_steps:
 * linear warmup lr * step / lr_warmup for step <= lr_warmup, then with
 * progress = (step - lr_warmup) / (total_steps - lr_warmup) in [0, 1]:
 *   cosine:   lr_min + (lr - lr_min) * 0.5 * (1 + cos(pi * progress))
 *   linear:   lr - (lr - lr_min) * progress
 *   constant: lr
 * and never below lr_min after warmup (the floor). */
double lr_schedule_at(const cfg_optim *cfg, int step, int total_steps);

/* torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6))
 * with norm = sqrt(total_sq_norm); 1 when max_norm <= 0 (clipping off). */
double optim_clip_factor(double total_sq_norm, double max_norm);

/* Sum of squares of n floats of backend memory, accumulated in double. */
sl_status optim_sq_norm(sl_backend *be, const float *x, int64_t n, double *out);

/* AdamW over unit `unit`'s flat buffers (params, grads, m, v all backend
 * memory of the unit's numel floats, or of a sub-range: [start, start+count)
 * of the unit, the pointers addressing element `start`). Weight decay
 * (cfg->weight_decay) applies on the layout's decay segments only.
 * param_copy (same range, be->act_dtype, or NULL) receives the updated
 * params in the compute dtype (ops_adamw's param_copy: the bf16 shard). */
sl_status optim_adamw_segments(sl_backend *be, const model_layout *l, int unit, int64_t start,
                               int64_t count, const cfg_optim *cfg, int64_t step, float lr,
                               float grad_scale, float *params, const float *grads, float *m,
                               float *v, void *param_copy);

#endif
