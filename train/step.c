/* train/step.c: one training step and eval (train.h).
 *
 * The step, as DESIGN section 8 draws it:
 *   for each parameter group: fsdp_begin_step
 *   for each micro-batch a: begin_micro on every group, forward + loss +
 *       backward through the groups' hooks (reduce-scatters start as units
 *       finish); pair objectives (dpo): train/pairs.h's micro-batch loop
 *       instead (reference rows, then the policy's row pass)
 *   finish_grads on every group -> per-rank non-finite flags (loss, local
 *   gradient norm) exchanged -> optim_step (global norm, clip, AdamW) or the
 *   step skipped on every rank
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/log.h"
#include "train/train.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void train_synthetic_tokens(uint64_t seed, int64_t first_row, int rows, int T, int V, uint32_t *inputs,
                            int32_t *targets) {
    uint64_t base = seed * 0x9E3779B97F4A7C15ull;
    for (int b = 0; b < rows; b++) {
        uint64_t row = ((uint64_t)first_row + (uint64_t)b) * (uint64_t)(T + 1);
        for (int t = 0; t <= T; t++) {
            uint32_t tok = (uint32_t)(splitmix64(base + row + (uint64_t)t) % (uint64_t)V);
            if (t < T)
                inputs[b * T + t] = tok;
            if (t > 0)
                targets[b * T + t - 1] = (int32_t)tok;
        }
    }
}

/* The next global batch's rows of this rank (data/loader.h order: rank r
 * holds rows [r B A, (r+1) B A) of the step's global batch). */
static sl_status next_batch(train_job *j) {
    const sl_config *c = j->cfg;
    int A = c->train.grad_accum, B = c->train.micro_batch, T = c->data.seq_len;
    size_t per = (size_t)B * (size_t)j->rows_per_sample * (size_t)T;
    if (j->synthetic && j->pobj)
        return sl_errorf(SL_ERR_UNSUPPORTED, "train.objective = %s has no synthetic data (shardlm bench): "
                                             "benchmark with train.objective = sft",
                         j->pobj->name);
    for (int a = 0; a < A; a++) {
        uint32_t *in = j->inputs + (size_t)a * per;
        int32_t *tg = j->targets + (size_t)a * per;
        if (j->synthetic) {
            int64_t first = (int64_t)j->step * j->plan.global_batch + ((int64_t)j->plan.dp_rank * A + a) * B;
            train_synthetic_tokens((uint64_t)c->train.seed, first, B, T, c->model.vocab_size, in, tg);
        } else {
            SL_TRY(loader_next(j->train_loader, in, tg));
        }
    }
    return SL_OK;
}

sl_status train_job_step(train_job *j, train_step_result *r) {
    /* a bad shard (an id past vocab_size, a corrupt chunk) is found by one
     * rank's loader: every rank learns it before the step's collectives,
     * and the first one prints it (no MPI_Abort) */
    SL_TRY(train_agree(j, next_batch(j)));
    return train_step_batch(j, j->inputs, j->targets, r);
}

/* "0, 3" from the ranks whose flags have bit `bit`. */
static void ranks_with(const int32_t *flags, int n, int32_t bit, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < n; i++)
        if (flags[i] & bit)
            snprintf(out + strlen(out), cap - strlen(out), "%s%d", out[0] ? ", " : "", i);
}

/* Per-rank non-finite flags (1: loss, 2: this rank's gradient shards),
 * exchanged so that the step is skipped everywhere or the fatal error names
 * the ranks; also sums the loss over the ranks. *what: "" when all is finite. */
static sl_status exchange_flags(train_job *j, double *loss_sum, char *what, size_t cap) {
    double grad_sq = 0;
    SL_TRY(optim_local_sq(j->opt, &grad_sq));
    int32_t bad = (isfinite(*loss_sum) ? 0 : 1) | (isfinite(grad_sq) ? 0 : 2);
    int32_t *flags = malloc(sizeof(int32_t) * (size_t)j->topo->world);
    SL_CHECK_ALLOC(flags, sizeof(int32_t) * (size_t)j->topo->world);
    sl_status st = comm_all_gather(j->world, &bad, flags, 1, SL_DTYPE_I32);
    if (st == SL_OK)
        st = comm_all_reduce(j->world, loss_sum, loss_sum, 1, SL_DTYPE_F64, COMM_REDOP_SUM);
    char bad_loss[256], bad_grad[256];
    ranks_with(flags, j->topo->world, 1, bad_loss, sizeof bad_loss);
    ranks_with(flags, j->topo->world, 2, bad_grad, sizeof bad_grad);
    /* a fatal stop is printed once, by the first rank that has the
     * non-finite value (every rank knows the flags) */
    for (int i = 0; i < j->topo->world; i++)
        if (flags[i]) {
            j->report_rank = i;
            break;
        }
    free(flags);
    SL_TRY(st);
    snprintf(what, cap, "%s%s%s%s%s", bad_loss[0] ? "loss on rank(s) " : "", bad_loss,
             bad_loss[0] && bad_grad[0] ? "; " : "", bad_grad[0] ? "local gradient norm on rank(s) " : "",
             bad_grad);
    return SL_OK;
}

static double exposed_comm_s(const train_job *j) {
    double s = 0;
    for (int g = 0; g < j->n_groups; g++)
        s += fsdp_exposed_comm_s(j->groups[g].fs);
    return s;
}

sl_status train_step_batch(train_job *j, const uint32_t *inputs, const int32_t *targets,
                           train_step_result *r) {
    const sl_config *c = j->cfg;
    memset(r, 0, sizeof *r);
    int A = c->train.grad_accum;
    int64_t B = c->train.micro_batch;
    size_t per = (size_t)B * (size_t)j->rows_per_sample * (size_t)c->data.seq_len;
    int step = j->step + 1;
    double t0 = sl_now();
    int64_t global_valid = 0;
    for (size_t i = 0; i < (size_t)A * per; i++)
        global_valid += targets[i] >= 0;
    /* grad_scale = 1 / (targets in the whole global batch), so gradients sum
     * across micro-steps and ranks to the mean loss's gradient. */
    SL_TRY(comm_all_reduce(j->world, &global_valid, &global_valid, 1, SL_DTYPE_I64, COMM_REDOP_SUM));
    float grad_scale = global_valid > 0 ? 1.0f / (float)global_valid : 0.0f;
    for (int g = 0; g < j->n_groups; g++) {
        fsdp_reset_comm_timer(j->groups[g].fs);
        SL_TRY(fsdp_begin_step(j->groups[g].fs, A));
    }
    optim_grads_changed(j->opt);
    double loss_sum = 0;
    /* the loss's denominator: targets (sft) or pairs (pair objectives) */
    int64_t denom = global_valid;
    if (j->pobj) {
        SL_TRY(pairs_accumulate(j, inputs, targets, step, &loss_sum, &denom, r->metrics));
        r->pairs = denom;
        r->n_metrics = j->pobj->n_metrics;
        /* global means (every rank's sums; a collective every rank runs) */
        SL_TRY(comm_all_reduce(j->world, r->metrics, r->metrics, (size_t)r->n_metrics, SL_DTYPE_F64,
                               COMM_REDOP_SUM));
        for (int i = 0; i < r->n_metrics; i++)
            r->metrics[i] = denom > 0 ? r->metrics[i] / (double)denom : NAN;
    }
    for (int a = 0; !j->pobj && a < A; a++) {
        for (int g = 0; g < j->n_groups; g++)
            SL_TRY(fsdp_begin_micro(j->groups[g].fs, a));
        /* LoRA dropout keys: row b of this micro-batch is sample
         * dp_rank*B*A + a*B + b of the global batch (data/loader.h), so the
         * masks do not depend on the world size or on grad_accum */
        model_dropout_ctx dc = {(uint64_t)c->train.seed, step, ((int64_t)j->plan.dp_rank * A + a) * B};
        SL_TRY(model_set_dropout_ctx(j->mdl, &dc));
        double ls = 0;
        int64_t nv = 0;
        SL_TRY(model_forward_backward(j->mdl, train_faults_hooks(&j->faults, &j->hooks, step),
                                      inputs + (size_t)a * per, targets + (size_t)a * per, grad_scale, &ls, &nv));
        loss_sum += ls;
    }
    for (int g = 0; g < j->n_groups; g++)
        SL_TRY(fsdp_finish_grads(j->groups[g].fs));
    bool changed = false;
    SL_TRY(train_faults_after_grads(&j->faults, j->lora_fs ? j->lora_fs : j->fs, j->be, step, &changed));
    if (changed)
        optim_grads_changed(j->opt);
    if (train_faults_loss(&j->faults, step))
        loss_sum = NAN;
    char bad[600];
    SL_TRY(exchange_flags(j, &loss_sum, bad, sizeof bad));
    r->loss = denom > 0 ? loss_sum / (double)denom : 0.0;
    r->tokens = global_valid;
    optim_step_stats os;
    memset(&os, 0, sizeof os);
    if (bad[0]) {
        if (c->train.nonfinite == NONFINITE_FATAL) {
            j->stop_agreed = true; /* every rank saw the same flags */
            return sl_errorf(SL_ERR_INVALID, "step %d: non-finite %s (train.nonfinite = fatal)", step, bad);
        }
        LOG_WARN0("step %d: non-finite %s: skipping the step on every rank", step, bad);
        os.skipped = true;
        os.grad_norm = NAN;
        os.lr = lr_schedule_at(&c->optim, step, c->train.steps);
    } else {
        SL_TRY(optim_step(j->opt, &c->optim, step, c->train.steps, &os));
        if (os.skipped && c->train.nonfinite == NONFINITE_FATAL) {
            j->stop_agreed = true; /* the norm is all-reduced: every rank sees it */
            return sl_errorf(SL_ERR_INVALID, "step %d: non-finite global gradient norm (train.nonfinite = fatal)",
                             step);
        }
        for (int g = 0; g < j->n_groups; g++)
            if (j->groups[g].trainable)
                fsdp_params_changed(j->groups[g].fs);
    }
    j->step = step;
    if (os.skipped)
        j->n_skipped++;
    r->skipped = os.skipped;
    r->grad_norm = os.grad_norm;
    r->clip_factor = os.clip_factor;
    r->lr = os.lr;
    /* the step ends when the device has finished it (the AdamW tail is
     * still queued on CUDA); a no-op on the CPU */
    SL_TRY(backend_synchronize(j->be));
    r->seconds = sl_now() - t0;
    r->exposed_comm_s = exposed_comm_s(j) + os.comm_s;
    return SL_OK;
}

sl_status train_job_eval(train_job *j, double *loss, int64_t *tokens) {
    *loss = NAN;
    *tokens = 0;
    if (!j->eval_loader)
        return SL_OK;
    const sl_config *c = j->cfg;
    SL_TRY(loader_state_set(j->eval_loader, (loader_state){0, 0}));
    /* loss sum, tokens (pair objectives: pairs), the pair metrics' sums */
    double sums[2 + PAIR_MAX_METRICS] = {0};
    int n_sums = 2 + (j->pobj ? j->pobj->n_metrics : 0);
    /* each eval sample counts once: a set smaller than train.eval_batches
     * global batches is evaluated whole (its last batch padded), never
     * wrapped around */
    int64_t nb = c->train.eval_batches, have = (int64_t)loader_batches_per_epoch(j->eval_loader);
    if (nb > have) {
        if (!j->eval_clamp_warned)
            LOG_WARN0("data.eval holds %llu samples: %lld global batch(es) of %lld, fewer than train.eval_batches "
                      "= %d; each eval covers every sample once",
                      (unsigned long long)loader_samples_per_epoch(j->eval_loader), (long long)have,
                      (long long)c->train.micro_batch * j->plan.dp_size, c->train.eval_batches);
        j->eval_clamp_warned = true;
        nb = have;
    }
    for (int64_t b = 0; b < nb; b++) {
        /* every rank agrees on each batch's data before the forward's
         * collectives (see train_job_step) */
        SL_TRY(train_agree(j, loader_next(j->eval_loader, j->inputs, j->targets)));
        double ls = 0;
        int64_t nv = 0;
        if (j->pobj)
            SL_TRY(pairs_eval_batch(j, j->inputs, j->targets, &ls, sums + 2, &nv));
        else
            SL_TRY(model_forward_loss(j->mdl, &j->hooks, j->inputs, j->targets, &ls, &nv));
        sums[0] += ls;
        sums[1] += (double)nv;
    }
    SL_TRY(comm_all_reduce(j->world, sums, sums, (size_t)n_sums, SL_DTYPE_F64, COMM_REDOP_SUM));
    *tokens = (int64_t)sums[1];
    *loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    for (int i = 2; i < n_sums; i++)
        j->eval_metrics[i - 2] = sums[1] > 0 ? sums[i] / sums[1] : NAN;
    j->eval_pairs = j->pobj ? (int64_t)sums[1] : 0;
    return SL_OK;
}
