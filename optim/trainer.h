/* optim/trainer.h: single-process training state and step.
 *
 * defines: trainer, trainer_create, trainer_destroy, trainer_params,
 *          trainer_grads, trainer_init_params, trainer_load_params,
 *          trainer_zero_grads, trainer_optimizer_step,
 *          trainer_hooks, trainer_step_stats
 *
 * One process holds every unit: params, grads, AdamW m and v, each one
 * contiguous fp32 backend buffer of layout->total_numel floats (unit u at
 * offset trainer's unit_offset[u], as model_local lays them out). The step is
 * the one parallel/fsdp runs on shards, on the whole buffer: global squared
 * norm (double) -> clip factor -> AdamW per unit over its decay segments at
 * the scheduled LR. Used by `shardlm bench`, the reference tests and
 * single-process training.
 *
 * Ownership: the trainer owns its four buffers (MEM_CATEGORY_PARAMS, GRADS,
 * OPTIMIZER in be->acct); layout, be and cfg are borrowed and must outlive it.
 */
#ifndef SL_OPTIM_TRAINER_H
#define SL_OPTIM_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "model/model.h"
#include "runtime/config.h"
#include "runtime/status.h"

typedef struct trainer trainer;

typedef struct {
    double grad_sq_norm; /* before clipping */
    double clip_factor;
    double lr;
    bool skipped;        /* non-finite gradient norm: no update was made */
} trainer_step_stats;

/* Allocates zeroed params/grads/m/v for layout on be. On error *out is NULL. */
sl_status trainer_create(const model_layout *layout, sl_backend *be, trainer **out);
void trainer_destroy(trainer *t); /* NULL is a no-op */

/* The flat buffers (backend memory), layout->total_numel floats each. */
float *trainer_params(trainer *t);
float *trainer_grads(trainer *t);

/* Fills the params by model_init_unit_range with seed (host staging on CUDA). */
sl_status trainer_init_params(trainer *t, uint64_t seed);
/* Copies host params (total_numel floats, model_local order) in. */
sl_status trainer_load_params(trainer *t, const float *host);

/* Hooks serving the buffers to model_forward_backward. Valid while t lives. */
const model_unit_hooks *trainer_hooks(trainer *t);

sl_status trainer_zero_grads(trainer *t);

/* One optimizer step (1-based step of total_steps) on the accumulated grads.
 * A non-finite gradient norm skips the update (stats->skipped) and returns
 * SL_OK; the caller decides whether that is fatal (train.nonfinite). */
sl_status trainer_optimizer_step(trainer *t, const cfg_optim *cfg, int step, int total_steps,
                                 trainer_step_stats *stats);

#endif
