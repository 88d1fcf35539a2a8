/* train/faults.h: test-only fault injection for the training job (README
 * "Testing hooks"), read from the environment once at setup.
 *
 * defines: train_faults, train_faults_from_env, train_faults_hooks,
 *          train_faults_after_grads, train_faults_loss, train_faults_after_step
 *
 *   SHARDLM_FAULT_NAN_GRAD=RANK:STEP   that rank writes a NaN into its first
 *                                      non-empty trainable gradient shard
 *   SHARDLM_FAULT_NAN_LOSS=RANK:STEP   that rank's local loss becomes NaN
 *   SHARDLM_FAULT_HANG=RANK:STEP       that rank's first forward prefetch or
 *                                      acquire of the step submits its
 *                                      all-gather, then the rank sleeps forever
 *   SHARDLM_FAULT_KILL_IN_SAVE=STEP    rank 0 kills itself while saving that step
 *   SHARDLM_FAULT_STALL=STEP           every rank stops (sleeps forever) once
 *                                      that step is logged and checkpointed,
 *                                      so that a test's kill lands at a known
 *                                      step whatever the machine's speed
 * Steps are 1-based optimizer steps. Unset variables leave the fault off
 * (-1). The step itself only asks this module at three points; none of the
 * bookkeeping lives in the step.
 */
#ifndef SL_TRAIN_FAULTS_H
#define SL_TRAIN_FAULTS_H

#include <stdbool.h>

#include "kernels/ops.h"
#include "model/model.h"
#include "parallel/fsdp.h"
#include "runtime/status.h"

typedef struct {
    int rank;                            /* this process's world rank */
    int nan_grad_rank, nan_grad_step;
    int nan_loss_rank, nan_loss_step;
    int hang_rank, hang_step;
    int kill_save_step;
    int stall_step;
    model_unit_hooks hang_hooks;         /* the wrapped hooks of a hanging step */
    const model_unit_hooks *inner;
} train_faults;

/* Parses the variables (errors name the variable and the expected form). */
sl_status train_faults_from_env(train_faults *f, int rank);

/* The hooks for the step `step`: `in` itself, or on the hanging rank and
 * step a copy whose forward prefetch/acquire never returns. Valid until
 * the next call. */
const model_unit_hooks *train_faults_hooks(train_faults *f, const model_unit_hooks *in, int step);

/* After the gradients of `step` are reduced: SHARDLM_FAULT_NAN_GRAD writes
 * its NaN into the first shard of fs (a trainable instance) with valid
 * elements. *changed says whether it wrote. */
sl_status train_faults_after_grads(const train_faults *f, fsdp *fs, sl_backend *be, int step,
                                   bool *changed);

/* SHARDLM_FAULT_NAN_LOSS: true when this rank's loss of `step` is to be NaN. */
bool train_faults_loss(const train_faults *f, int step);

/* SHARDLM_FAULT_STALL: at the end of step `step` (logged, checkpointed),
 * never returns on the stalled step. */
void train_faults_after_step(const train_faults *f, int step);

#endif
