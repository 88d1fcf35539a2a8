/* train/faults.c: test-only fault injection (faults.h). */
#include "train/faults.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/check.h"
#include "runtime/log.h"

/* RANK:STEP from the test hook variable name, or -1:-1 when it is unset. */
static sl_status parse_rank_step(const char *name, const char *what, int *rank, int *step) {
    *rank = *step = -1;
    const char *e = getenv(name);
    if (!e || !e[0])
        return SL_OK;
    if (sscanf(e, "%d:%d", rank, step) != 2 || *rank < 0 || *step < 1)
        return sl_errorf(SL_ERR_INVALID, "%s=%s: expected RANK:STEP (rank >= 0, step >= 1)", name, e);
    LOG_WARN0("test hook %s: rank %d %s at step %d", name, *rank, what, *step);
    return SL_OK;
}

sl_status train_faults_from_env(train_faults *f, int rank) {
    *f = (train_faults){.rank = rank, .kill_save_step = -1, .stall_step = -1};
    SL_TRY(parse_rank_step("SHARDLM_FAULT_NAN_GRAD", "writes a NaN into its gradient", &f->nan_grad_rank,
                           &f->nan_grad_step));
    SL_TRY(parse_rank_step("SHARDLM_FAULT_NAN_LOSS", "replaces its local loss by NaN", &f->nan_loss_rank,
                           &f->nan_loss_step));
    SL_TRY(parse_rank_step("SHARDLM_FAULT_HANG", "stops responding (sleeps forever) after its first forward gather",
                           &f->hang_rank, &f->hang_step));
    const char *e = getenv("SHARDLM_FAULT_KILL_IN_SAVE");
    if (e && e[0]) {
        if (sscanf(e, "%d", &f->kill_save_step) != 1)
            return sl_errorf(SL_ERR_INVALID, "SHARDLM_FAULT_KILL_IN_SAVE=%s: expected STEP", e);
        LOG_WARN0("test hook SHARDLM_FAULT_KILL_IN_SAVE: rank 0 kills itself while saving step %d",
                  f->kill_save_step);
    }
    e = getenv("SHARDLM_FAULT_STALL");
    if (e && e[0]) {
        if (sscanf(e, "%d", &f->stall_step) != 1 || f->stall_step < 1)
            return sl_errorf(SL_ERR_INVALID, "SHARDLM_FAULT_STALL=%s: expected STEP >= 1", e);
        LOG_WARN0("test hook SHARDLM_FAULT_STALL: every rank stops after step %d", f->stall_step);
    }
    return SL_OK;
}

/* SHARDLM_FAULT_HANG: the rank stops responding with a collective
 * submitted, as a wedged process does; the other ranks' comm timeout must
 * end the job. */
static void hang_forever(const train_faults *f) {
    LOG_WARN("SHARDLM_FAULT_HANG: rank %d stops responding in step %d (sleeping forever)", f->rank,
             f->hang_step);
    for (;;)
        sl_sleep_us(3600L * 1000000L); /* signals (SIGTERM is recorded by preempt) only wake it */
}

static sl_status hang_prefetch(void *ctx, int unit, int phase) {
    train_faults *f = ctx;
    SL_TRY(f->inner->prefetch ? f->inner->prefetch(f->inner->ctx, unit, phase) : SL_OK);
    if (phase == MODEL_PHASE_FORWARD)
        hang_forever(f);
    return SL_OK;
}

static sl_status hang_acquire(void *ctx, int unit, int phase, const void **params) {
    train_faults *f = ctx;
    SL_TRY(f->inner->acquire(f->inner->ctx, unit, phase, params));
    if (phase == MODEL_PHASE_FORWARD)
        hang_forever(f);
    return SL_OK;
}

const model_unit_hooks *train_faults_hooks(train_faults *f, const model_unit_hooks *in, int step) {
    if (f->hang_rank != f->rank || f->hang_step != step)
        return in;
    f->inner = in;
    f->hang_hooks = *in;
    f->hang_hooks.ctx = f;
    f->hang_hooks.prefetch = hang_prefetch;
    f->hang_hooks.acquire = hang_acquire;
    return &f->hang_hooks;
}

sl_status train_faults_after_grads(const train_faults *f, fsdp *fs, sl_backend *be, int step,
                                   bool *changed) {
    *changed = false;
    if (f->nan_grad_rank != f->rank || f->nan_grad_step != step)
        return SL_OK;
    for (int u = 0; u < fsdp_n_units(fs); u++) {
        fsdp_unit_shard s = fsdp_shard(fs, u);
        if (s.grad && s.valid > 0) {
            LOG_WARN("SHARDLM_FAULT_NAN_GRAD: writing a NaN into the gradient of unit %d at step %d", u, step);
            const float nan_value = NAN;
            SL_TRY(backend_memcpy(be, s.grad, &nan_value, sizeof nan_value, BACKEND_COPY_H2D));
            *changed = true;
            return backend_synchronize(be);
        }
    }
    return SL_OK;
}

void train_faults_after_step(const train_faults *f, int step) {
    if (f->stall_step != step)
        return;
    LOG_WARN("SHARDLM_FAULT_STALL: rank %d stops after step %d (sleeping until killed)", f->rank, step);
    for (;;)
        sl_sleep_us(3600L * 1000000L);
}

bool train_faults_loss(const train_faults *f, int step) {
    if (f->nan_loss_rank != f->rank || f->nan_loss_step != step)
        return false;
    LOG_WARN("SHARDLM_FAULT_NAN_LOSS: replacing this rank's loss by NaN at step %d", step);
    return true;
}
