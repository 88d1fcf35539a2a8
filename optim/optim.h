/* optim/optim.h: the optimizer step over shard lists: global gradient norm,
 * clipping, skipping a non-finite step, AdamW; learning-rate schedules.
 *
 * defines: optim_segment, optim_shard, optimizer, optim_step_stats,
 *          optim_create, optim_destroy, optim_add_shard, optim_local_sq,
 *          optim_grads_changed, optim_step, optim_steps_applied,
 *          optim_set_steps_applied, lr_schedule_at, optim_clip_factor
 *
 * One step (optim_step), the only one in shardlm (training, bench and the
 * PyTorch reference tests all run it):
 *   sq    = sum over this rank's shards of sum(grad^2)   (double, shard order)
 *   sq    = all_reduce(sq, SUM) over norm_comm           (the shards of one
 *           replica partition the trainable parameters; replicas are equal)
 *   norm  = sqrt(sq); not finite -> the step is skipped on every rank
 *   clip  = min(1, grad_clip / (norm + 1e-6))            (clip_grad_norm_)
 *   AdamW (torch.optim.AdamW; formula at ops_adamw_args in kernels/ops.h)
 *   on every segment of every shard, weight decay on decay segments only,
 *   grad_scale = clip, at the LR of the 1-based global step.
 * Skipped steps follow PyTorch (a GradScaler-style skip does not call
 * optimizer.step()): Adam's step count, which drives the bias correction,
 * counts APPLIED updates only, while the LR schedule (scheduler.step() is
 * called every iteration) follows the global step. optim_steps_applied is
 * that count; checkpoints save and restore it.
 *
 * A shard is what one rank updates of one FSDP unit (or any flat buffer):
 * fp32 master, gradient, m and v, and optionally the compute-dtype copy the
 * update also writes (ops_adamw's param_copy: the bf16 shard on CUDA), all
 * backend memory. Its decay segments say which elements weight decay
 * applies to, in shard-local coordinates: the caller (train/) intersects
 * the model's parameter table with the rank's shard range, since optim/
 * does not know models (DESIGN section 1).
 *
 * Does not: own parameter, gradient or moment memory (the shards are
 * borrowed, usually fsdp's), shard anything, or decide what is trainable.
 * Ownership: the optimizer owns its copy of the shard list and segments;
 * be and norm_comm are borrowed and must outlive it.
 */
#ifndef SL_OPTIM_OPTIM_H
#define SL_OPTIM_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "parallel/comm.h"
#include "runtime/config.h"
#include "runtime/status.h"

/* Elements [offset, offset + length) of a shard; decay: weight decay applies. */
typedef struct {
    int64_t offset, length;
    bool decay;
} optim_segment;

typedef struct {
    float *param;       /* n fp32 (the master) */
    const float *grad;  /* n fp32 */
    float *m, *v;       /* n fp32 each */
    void *param_copy;   /* n of be->act_dtype written with the update, or NULL */
    int64_t n;          /* elements updated (a shard's padding is left out) */
    const optim_segment *segs; /* covering [0, n) in order; copied by optim_add_shard */
    int n_segs;
} optim_shard;

typedef struct optimizer optimizer;

typedef struct {
    double grad_norm;   /* global, before clipping; NaN/inf when skipped */
    double clip_factor; /* 1 when not clipping */
    double lr;          /* of the global step */
    bool skipped;       /* non-finite norm: nothing was updated on any rank */
    int64_t adam_step;  /* the bias-correction step used (applied updates, 1-based); 0 when skipped */
    double comm_s;      /* seconds spent in the norm's all-reduce */
} optim_step_stats;

/* norm_comm: the group whose ranks' shards together make one replica (the
 * FSDP shard group); NULL or a comm of size 1 for a local norm. */
sl_status optim_create(sl_backend *be, comm *norm_comm, optimizer **out);
void optim_destroy(optimizer *o); /* NULL is a no-op */

/* Adds a shard (copied with its segments; n = 0 is ignored). Segments must
 * lie in [0, n), ascending, without overlap. */
sl_status optim_add_shard(optimizer *o, const optim_shard *s);

/* This rank's sum of squared gradients (double; not finite exactly when a
 * shard holds a NaN or an infinity), computed once and cached until
 * optim_grads_changed or optim_step: the per-rank non-finite check and the
 * step's norm share one pass. */
sl_status optim_local_sq(optimizer *o, double *sq);
/* The gradients were written since the last optim_local_sq. */
void optim_grads_changed(optimizer *o);

/* One optimizer step at the 1-based global `step` of total_steps (collective
 * over norm_comm). A non-finite global norm skips it (stats->skipped; the
 * applied-step count does not advance) and returns SL_OK: whether that is
 * fatal is the caller's (train.nonfinite). */
sl_status optim_step(optimizer *o, const cfg_optim *cfg, int step, int total_steps,
                     optim_step_stats *stats);

/* Updates applied so far (Adam's step count); set on checkpoint resume. */
int64_t optim_steps_applied(const optimizer *o);
void optim_set_steps_applied(optimizer *o, int64_t n);

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

#endif
