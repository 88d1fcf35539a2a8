#include "launcher/train.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "kernels/device_info.h"
#include "launcher/bench_device.h"
#include "launcher/checkpoint.h"
#include "launcher/train_lora.h"
#include "model/hf.h"
#include "optim/optim.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"
#include "runtime/preempt.h"
#include "runtime/rng.h"

/* ---- setup ---- */

static sl_status make_comms(train_job *j) {
    comm_opts co;
    comm_opts_default(&co);
    co.timeout_s = j->cfg->parallel.comm_timeout_s;
    co.mem = &j->acct;
    co.name = "world";
    SL_TRY(comm_create_mpi(j->topo->comm, &co, &j->world));
    const parallel_plan *p = &j->plan;
    switch (p->mode) {
    case FSDP_MODE_FULL_SHARD:
    case FSDP_MODE_SHARD_GRAD_OP:
        j->shard = j->world;
        break;
    case FSDP_MODE_NO_SHARD:
        SL_TRY(comm_split(j->world, j->topo->rank, 0, "shard", NULL, &j->shard));
        j->replicate = p->replicate_size > 1 ? j->world : NULL;
        break;
    case FSDP_MODE_HYBRID:
        SL_TRY(comm_split(j->world, p->replicate_rank, p->shard_rank, "shard", NULL, &j->shard));
        if (p->replicate_size > 1)
            SL_TRY(comm_split(j->world, p->shard_rank, p->replicate_rank, "replicate", NULL,
                              &j->replicate));
        break;
    }
    if (!j->use_cuda)
        return SL_OK;
    /* CUDA: the FSDP collectives move device memory, so they run on NCCL
     * communicators over the same groups; the MPI world comm stays for the
     * host-side control traffic (flags, loss sums, checkpoint coordination). */
    co.name = "shard";
    SL_TRY(comm_create_nccl(j->shard, j->be->stream, &co, &j->dev_shard));
    if (j->replicate) {
        co.name = "replicate";
        SL_TRY(comm_create_nccl(j->replicate, j->be->stream, &co, &j->dev_replicate));
    }
    return SL_OK;
}

bool train_uses_cuda(const sl_config *cfg, const device_info *di) {
    if (cfg->train.backend == BACKEND_KIND_AUTO)
        return cfg->train.dtype == COMPUTE_DTYPE_BF16 && di->count > 0;
    return cfg->train.backend == BACKEND_KIND_CUDA;
}

/* The backend train.backend and train.dtype ask for: one GPU per local rank
 * on CUDA (which computes in bf16), the CPU otherwise (fp32). auto picks
 * CUDA when train.dtype = bf16 and this build sees a GPU. */
static sl_status make_backend(train_job *j) {
    const sl_config *cfg = j->cfg;
    device_info di;
    device_info_query(&di);
    j->use_cuda = train_uses_cuda(cfg, &di);
    if (!j->use_cuda) {
        if (cfg->train.dtype != COMPUTE_DTYPE_F32)
            return sl_errorf(SL_ERR_UNSUPPORTED, "train.dtype = bf16 needs the CUDA backend (train.backend = "
                                                 "cuda or auto on a GPU machine); the CPU backend computes in fp32");
        return backend_create_cpu(0, &j->acct, &j->be);
    }
    if (cfg->train.dtype != COMPUTE_DTYPE_BF16)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "train.backend = cuda with train.dtype = fp32: the CUDA kernels compute in bf16 "
                         "(activations and gathered weights bf16, fp32 master weights, gradients and "
                         "optimizer state); set train.dtype = bf16, or train.backend = cpu for fp32");
    if (di.count <= 0)
        return sl_errorf(SL_ERR_UNSUPPORTED, "train.backend = cuda on rank %d (%s): no usable GPU (%s)",
                         j->topo->rank, j->topo->host, di.note);
    int dev = device_info_pick(&di, j->topo->local_rank, j->topo->local_world);
    if (dev < 0)
        return sl_errorf(SL_ERR_INVALID,
                         "train.backend = cuda: %d ranks run on node %s but %d GPU(s) are visible there; "
                         "shardlm uses one GPU per local rank: start at most %d ranks per node (mpirun "
                         "-npernode, srun --ntasks-per-node), or bind one GPU to each rank "
                         "(srun --gpus-per-task=1), or check CUDA_VISIBLE_DEVICES",
                         j->topo->local_world, j->topo->host, di.count, di.count);
    sl_status st = backend_create_cuda(dev, 0, &j->acct, &j->be);
    if (st != SL_OK)
        return sl_error_wrapf(st, "rank %d (local rank %d on %s)", j->topo->rank, j->topo->local_rank,
                              j->topo->host);
    return SL_OK;
}

/* Model section from model.init_from (a shardlm or Hugging Face folder). */
static sl_status resolve_init_model(sl_config *cfg) {
    if (!cfg->model.init_from[0])
        return SL_OK;
    sl_config *tmp = malloc(sizeof *tmp);
    SL_CHECK_ALLOC(tmp, sizeof *tmp);
    config_defaults(tmp);
    sl_status st = model_config_from_dir(cfg->model.init_from, tmp);
    if (st == SL_OK) {
        char from[CFG_STR_MAX];
        memcpy(from, cfg->model.init_from, sizeof from);
        cfg->model = tmp->model;
        memcpy(cfg->model.init_from, from, sizeof from);
        if (cfg->data.seq_len > cfg->model.max_seq_len)
            st = sl_errorf(SL_ERR_INVALID,
                           "\"data.seq_len\" = %d exceeds max_seq_len %d of the model in %s",
                           cfg->data.seq_len, cfg->model.max_seq_len, cfg->model.init_from);
    } else {
        st = sl_error_wrapf(st, "model.init_from = %s", cfg->model.init_from);
    }
    free(tmp);
    return st;
}

static sl_status load_init_weights(train_job *j) {
    const model_layout *l = j->layout;
    float *host = malloc((size_t)l->total_numel * sizeof(float));
    SL_CHECK_ALLOC(host, (size_t)l->total_numel * sizeof(float));
    sl_status st = model_weights_load(j->cfg->model.init_from, l, host);
    int64_t off = 0;
    for (int u = 0; u < l->n_units && st == SL_OK; u++) {
        st = fsdp_load_unit(j->fs, u, host + off);
        off += l->units[u].numel;
    }
    free(host);
    return st;
}

static sl_status open_loader(train_job *j, const char *spec, bool eval, loader **out) {
    char **paths = NULL;
    int n = 0;
    SL_TRY(loader_expand_paths(spec, &paths, &n));
    const sl_config *c = j->cfg;
    loader_opts o = {
        .paths = (const char *const *)paths,
        .n_paths = n,
        .seq_len = c->data.seq_len,
        .micro_batch = c->train.micro_batch,
        .grad_accum = eval ? 1 : c->train.grad_accum,
        .dp_rank = j->plan.dp_rank,
        .dp_size = j->plan.dp_size,
        .seed = (uint64_t)c->train.seed + (eval ? 7919u : 0u),
        .mode = c->data.mode,
        .vocab_size = (uint32_t)c->model.vocab_size,
        .prefetch = c->data.prefetch,
        .eos_id = -1,
    };
    sl_status st = loader_create(&o, out);
    loader_free_paths(paths, n);
    if (st != SL_OK)
        return sl_error_wrapf(st, "%s data \"%s\"", eval ? "data.eval" : "data.train", spec);
    return SL_OK;
}

/* The tokenizer hash of data.train (the loader checks its shards agree). */
static sl_status data_tokenizer_hash(const char *spec, char *out, size_t cap) {
    char **paths = NULL;
    int n = 0;
    SL_TRY(loader_expand_paths(spec, &paths, &n));
    shard_reader *r = NULL;
    sl_status st = shard_open(paths[0], &r);
    if (st == SL_OK)
        snprintf(out, cap, "%s", shard_info_get(r)->meta.tokenizer_hash);
    shard_close(r);
    loader_free_paths(paths, n);
    return st;
}

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

/* Test-only fault injection from the environment (README "Testing hooks"). */
static sl_status parse_faults(train_job *j) {
    j->fault_kill_save_step = -1;
    SL_TRY(parse_rank_step("SHARDLM_FAULT_NAN_GRAD", "writes a NaN into its gradient", &j->fault_nan_rank,
                           &j->fault_nan_step));
    SL_TRY(parse_rank_step("SHARDLM_FAULT_NAN_LOSS", "replaces its local loss by NaN",
                           &j->fault_nan_loss_rank, &j->fault_nan_loss_step));
    SL_TRY(parse_rank_step("SHARDLM_FAULT_HANG", "stops responding (sleeps forever) after its first forward gather",
                           &j->fault_hang_rank, &j->fault_hang_step));
    const char *e = getenv("SHARDLM_FAULT_KILL_IN_SAVE");
    if (e && e[0]) {
        if (sscanf(e, "%d", &j->fault_kill_save_step) != 1)
            return sl_errorf(SL_ERR_INVALID, "SHARDLM_FAULT_KILL_IN_SAVE=%s: expected STEP", e);
        LOG_WARN0("test hook SHARDLM_FAULT_KILL_IN_SAVE: rank 0 kills itself while saving step %d",
                  j->fault_kill_save_step);
    }
    return SL_OK;
}

sl_status train_job_setup(train_job *j, sl_config *cfg, topology *topo, bool synthetic) {
    memset(j, 0, sizeof *j);
    j->cfg = cfg;
    j->topo = topo;
    j->synthetic = synthetic;
    j->saved_step = -1;
    SL_TRY(parse_faults(j));
    mem_accountant_init(&j->acct);
    SL_TRY(resolve_init_model(cfg));
    SL_TRY(parallel_plan_make(cfg, topo, &j->plan));
    SL_TRY(model_layout_create(&cfg->model, cfg->optim.decay_embeddings, &j->layout));
    SL_TRY(make_backend(j));
    if (j->use_cuda)
        LOG_INFO0("backend cuda (one GPU per local rank; rank 0 on device %d), compute dtype %s",
                  j->be->device_ordinal, dtype_name(j->be->act_dtype));
    else
        LOG_INFO0("backend cpu, compute dtype %s", dtype_name(j->be->act_dtype));
    SL_TRY(make_comms(j));
    fsdp_opts fo = {.layout = j->layout,
                    .be = j->be,
                    .plan = &j->plan,
                    .shard_comm = j->dev_shard ? j->dev_shard : j->shard,
                    .replicate_comm = j->dev_replicate ? j->dev_replicate : j->replicate,
                    .gather_buffers = cfg->parallel.gather_buffers,
                    .overlap = cfg->parallel.overlap,
                    .frozen = cfg->lora.enabled};
    SL_TRY(fsdp_create(&fo, &j->fs));
    char resume_dir[1100];
    bool resume = false;
    if (!synthetic)
        SL_TRY(ckpt_find_resume(j, resume_dir, sizeof resume_dir, &resume));
    /* A resumed run takes its weights from the checkpoint, except a LoRA
     * run's frozen base, which checkpoints do not hold. */
    if (cfg->model.init_from[0] && (!resume || cfg->lora.enabled))
        SL_TRY(load_init_weights(j));
    else if (!resume || cfg->lora.enabled)
        SL_TRY(fsdp_init_params(j->fs, (uint64_t)cfg->train.seed));
    if (cfg->lora.enabled)
        SL_TRY(train_lora_setup(j, &fo));
    if (!synthetic) {
        if (!cfg->data.train[0])
            return sl_errorf(SL_ERR_INVALID, "\"data.train\" is empty: set it to the shards written by shardlm prepare");
        SL_TRY(open_loader(j, cfg->data.train, false, &j->train_loader));
        SL_TRY(data_tokenizer_hash(cfg->data.train, j->tokenizer_hash, sizeof j->tokenizer_hash));
        if (cfg->data.eval[0])
            SL_TRY(open_loader(j, cfg->data.eval, true, &j->eval_loader));
    }
    SL_TRY(model_create(j->layout, j->be, cfg->train.micro_batch, cfg->data.seq_len,
                        cfg->train.recompute, &j->mdl));
    if (j->lora)
        SL_TRY(model_attach_lora(j->mdl, j->lora));
    size_t n = (size_t)cfg->train.grad_accum * (size_t)cfg->train.micro_batch * (size_t)cfg->data.seq_len;
    j->inputs = malloc(n * sizeof *j->inputs);
    j->targets = malloc(n * sizeof *j->targets);
    SL_CHECK_ALLOC(j->inputs && j->targets ? j->inputs : NULL, n * 8);
    j->flops_per_token = model_layout_flops_per_token(j->layout, cfg->data.seq_len);
    /* MFU in the step line: the device's datasheet bf16 peak (launcher/bench_device.h);
     * none on the CPU or on a GPU the table lacks */
    bench_device dev;
    SL_TRY(bench_device_query(j->use_cuda, &dev));
    j->peak_flops = dev.peak_tflops * 1e12;
    if (resume)
        SL_TRY(ckpt_load(j, resume_dir));
    return SL_OK;
}

void train_job_teardown(train_job *j) {
    metrics_close(j->metrics);
    loader_destroy(j->train_loader);
    loader_destroy(j->eval_loader);
    model_destroy(j->mdl);
    train_lora_teardown(j);
    fsdp_destroy(j->fs);
    comm_destroy(j->dev_replicate); /* before the MPI groups they were made over */
    comm_destroy(j->dev_shard);
    if (j->replicate && j->replicate != j->world)
        comm_destroy(j->replicate);
    if (j->shard && j->shard != j->world)
        comm_destroy(j->shard);
    comm_destroy(j->world);
    backend_destroy(j->be);
    model_layout_destroy(j->layout);
    free(j->inputs);
    free(j->targets);
    memset(j, 0, sizeof *j);
}

/* ---- one step ---- */

/* Synthetic batches for bench: the same global batch whatever the world size
 * (token of global sequence s, position t from Philox). */
static void synthetic_batch(train_job *j, int micro, uint32_t *in, int32_t *tg) {
    const sl_config *c = j->cfg;
    int B = c->train.micro_batch, T = c->data.seq_len;
    rng_stream rs = rng_stream_make((uint64_t)c->train.seed, RNG_PURPOSE_TEST, (uint32_t)j->step);
    for (int b = 0; b < B; b++) {
        uint64_t seq = (uint64_t)j->plan.dp_rank * (uint64_t)(B * c->train.grad_accum) +
                       (uint64_t)micro * (uint64_t)B + (uint64_t)b;
        for (int t = 0; t <= T; t++) {
            uint32_t tok = (uint32_t)(rng_u64(&rs, seq * (uint64_t)(T + 1) + (uint64_t)t) %
                                      (uint64_t)c->model.vocab_size);
            if (t < T)
                in[b * T + t] = tok;
            if (t > 0)
                tg[b * T + t - 1] = (int32_t)tok;
        }
    }
}

/* SHARDLM_FAULT_NAN_GRAD: a NaN in this rank's first non-empty gradient shard. */
static sl_status inject_nan_grad(const train_job *j, fsdp *f) {
    for (int u = 0; u < fsdp_n_units(f); u++) {
        fsdp_unit_shard s = fsdp_shard(f, u);
        if (s.grad && s.valid > 0) {
            LOG_WARN("SHARDLM_FAULT_NAN_GRAD: writing a NaN into the gradient of unit %d at step %d", u,
                     j->step + 1);
            const float nan_value = NAN;
            SL_TRY(backend_memcpy(j->be, s.grad, &nan_value, sizeof nan_value, BACKEND_COPY_H2D));
            return backend_synchronize(j->be);
        }
    }
    return SL_OK;
}

/* SHARDLM_FAULT_HANG: fsdp_hooks(fs) with prefetch and acquire wrapped, so
 * that on the faulted rank and step the first forward prefetch or acquire
 * (which submits the step's first all-gather) returns into a sleep that never
 * ends: the rank stops responding with a collective submitted, as a wedged
 * process does. The other ranks' comm timeout must end the job. */
static void hang_forever(const train_job *j) {
    LOG_WARN("SHARDLM_FAULT_HANG: rank %d stops responding in step %d (sleeping forever)", j->topo->rank,
             j->step + 1);
    for (;;)
        sl_sleep_us(3600L * 1000000L); /* signals (SIGTERM is recorded by preempt) only wake it */
}

static sl_status hang_prefetch(void *ctx, int unit, int phase) {
    train_job *j = ctx;
    const model_unit_hooks *in = fsdp_hooks(j->fs);
    SL_TRY(in->prefetch ? in->prefetch(in->ctx, unit, phase) : SL_OK);
    if (phase == MODEL_PHASE_FORWARD)
        hang_forever(j);
    return SL_OK;
}

static sl_status hang_acquire(void *ctx, int unit, int phase, const void **params) {
    train_job *j = ctx;
    const model_unit_hooks *in = fsdp_hooks(j->fs);
    SL_TRY(in->acquire(in->ctx, unit, phase, params));
    if (phase == MODEL_PHASE_FORWARD)
        hang_forever(j);
    return SL_OK;
}

static const model_unit_hooks *step_hooks(train_job *j) {
    const model_unit_hooks *in = fsdp_hooks(j->fs);
    if (j->fault_hang_rank != j->topo->rank || j->fault_hang_step != j->step + 1)
        return in;
    j->fault_hooks = *in;
    j->fault_hooks.ctx = j;
    j->fault_hooks.prefetch = hang_prefetch;
    j->fault_hooks.acquire = hang_acquire;
    return &j->fault_hooks;
}

sl_status train_job_step(train_job *j, train_step_result *r) {
    const sl_config *c = j->cfg;
    memset(r, 0, sizeof *r);
    int A = c->train.grad_accum;
    size_t per = (size_t)c->train.micro_batch * (size_t)c->data.seq_len;
    double t0 = sl_now();
    fsdp_reset_comm_timer(j->fs);
    int64_t local_valid = 0;
    for (int a = 0; a < A; a++) {
        uint32_t *in = j->inputs + (size_t)a * per;
        int32_t *tg = j->targets + (size_t)a * per;
        if (j->synthetic)
            synthetic_batch(j, a, in, tg);
        else
            SL_TRY(loader_next(j->train_loader, in, tg));
        for (size_t i = 0; i < per; i++)
            local_valid += tg[i] >= 0;
    }
    /* grad_scale = 1 / (targets in the whole global batch), so gradients sum
     * across micro-steps and ranks to the mean loss's gradient. */
    int64_t global_valid = local_valid;
    SL_TRY(comm_all_reduce(j->world, &global_valid, &global_valid, 1, COMM_DTYPE_I64, COMM_REDOP_SUM));
    float grad_scale = global_valid > 0 ? 1.0f / (float)global_valid : 0.0f;
    SL_TRY(fsdp_begin_step(j->fs, A));
    double loss_sum = 0;
    for (int a = 0; a < A; a++) {
        SL_TRY(fsdp_begin_micro(j->fs, a));
        double ls = 0;
        int64_t nv = 0;
        /* LoRA dropout keys: row b of this micro-batch is sample
         * dp_rank*B*A + a*B + b of the global batch (data/loader.h), so the
         * masks do not depend on the world size or on grad_accum */
        int64_t B = c->train.micro_batch;
        model_dropout_ctx dc = {(uint64_t)c->train.seed, (int64_t)j->step + 1,
                                ((int64_t)j->plan.dp_rank * A + a) * B};
        SL_TRY(model_set_dropout_ctx(j->mdl, &dc));
        SL_TRY(model_forward_backward(j->mdl, step_hooks(j), j->inputs + (size_t)a * per,
                                      j->targets + (size_t)a * per, grad_scale, &ls, &nv));
        loss_sum += ls;
    }
    SL_TRY(fsdp_finish_grads(j->fs));
    fsdp *trainable = j->lora_fs ? j->lora_fs : j->fs;
    if (j->fault_nan_rank == j->topo->rank && j->fault_nan_step == j->step + 1)
        SL_TRY(inject_nan_grad(j, trainable));
    if (j->fault_nan_loss_rank == j->topo->rank && j->fault_nan_loss_step == j->step + 1) {
        LOG_WARN("SHARDLM_FAULT_NAN_LOSS: replacing this rank's loss by NaN at step %d", j->step + 1);
        loss_sum = NAN;
    }
    /* Per-rank non-finite flags (1: loss, 2: this rank's gradient shard), so
     * the step is skipped everywhere or the fatal error names the ranks. */
    double grad_sq = 0;
    SL_TRY(fsdp_local_grad_sq(j->fs, &grad_sq));
    int32_t bad = (isfinite(loss_sum) ? 0 : 1) | (isfinite(grad_sq) ? 0 : 2);
    int32_t *flags = malloc(sizeof(int32_t) * (size_t)j->topo->world);
    SL_CHECK_ALLOC(flags, sizeof(int32_t) * (size_t)j->topo->world);
    sl_status st = comm_all_gather(j->world, &bad, flags, 1, COMM_DTYPE_I32);
    if (st == SL_OK)
        st = comm_all_reduce(j->world, &loss_sum, &loss_sum, 1, COMM_DTYPE_F64, COMM_REDOP_SUM);
    char bad_loss[256] = "", bad_grad[256] = "";
    for (int i = 0; i < j->topo->world && st == SL_OK; i++) {
        if (flags[i] & 1)
            snprintf(bad_loss + strlen(bad_loss), sizeof bad_loss - strlen(bad_loss), "%s%d",
                     bad_loss[0] ? ", " : "", i);
        if (flags[i] & 2)
            snprintf(bad_grad + strlen(bad_grad), sizeof bad_grad - strlen(bad_grad), "%s%d",
                     bad_grad[0] ? ", " : "", i);
    }
    free(flags);
    SL_TRY(st);
    r->loss = global_valid > 0 ? loss_sum / (double)global_valid : 0.0;
    r->tokens = global_valid;
    int step = j->step + 1;
    fsdp_step_stats fst;
    if (bad_loss[0] || bad_grad[0]) {
        char what[600];
        snprintf(what, sizeof what, "%s%s%s%s%s", bad_loss[0] ? "loss on rank(s) " : "", bad_loss,
                 bad_loss[0] && bad_grad[0] ? "; " : "", bad_grad[0] ? "local gradient norm on rank(s) " : "",
                 bad_grad);
        if (c->train.nonfinite == NONFINITE_FATAL) {
            j->stop_agreed = true; /* every rank saw the same flags */
            return sl_errorf(SL_ERR_INVALID, "step %d: non-finite %s (train.nonfinite = fatal)", step, what);
        }
        LOG_WARN0("step %d: non-finite %s: skipping the step on every rank", step, what);
        memset(&fst, 0, sizeof fst);
        fst.skipped = true;
        fst.grad_norm = NAN;
        fst.lr = lr_schedule_at(&c->optim, step, c->train.steps);
    } else {
        SL_TRY(fsdp_optimizer_step(j->fs, &c->optim, step, c->train.steps, &fst));
        if (fst.skipped && c->train.nonfinite == NONFINITE_FATAL) {
            j->stop_agreed = true; /* the norm is all-reduced: every rank sees it */
            return sl_errorf(SL_ERR_INVALID,
                             "step %d: non-finite global gradient norm (train.nonfinite = fatal)", step);
        }
    }
    j->step = step;
    if (fst.skipped)
        j->n_skipped++;
    r->skipped = fst.skipped;
    r->grad_norm = fst.grad_norm;
    r->lr = fst.lr;
    /* the step ends when the device has finished it (the AdamW tail is
     * still queued on CUDA); a no-op on the CPU */
    SL_TRY(backend_synchronize(j->be));
    r->seconds = sl_now() - t0;
    r->exposed_comm_s = fsdp_exposed_comm_s(j->fs);
    return SL_OK;
}

sl_status train_job_eval(train_job *j, double *loss, int64_t *tokens) {
    *loss = NAN;
    *tokens = 0;
    if (!j->eval_loader)
        return SL_OK;
    const sl_config *c = j->cfg;
    SL_TRY(loader_state_set(j->eval_loader, (loader_state){0, 0}));
    size_t per = (size_t)c->train.micro_batch * (size_t)c->data.seq_len;
    double sums[2] = {0, 0}; /* loss sum, tokens */
    for (int b = 0; b < c->train.eval_batches; b++) {
        SL_TRY(loader_next(j->eval_loader, j->inputs, j->targets));
        double ls = 0;
        int64_t nv = 0;
        SL_TRY(model_forward_loss(j->mdl, fsdp_hooks(j->fs), j->inputs, j->targets, &ls, &nv));
        sums[0] += ls;
        sums[1] += (double)nv;
    }
    (void)per;
    SL_TRY(comm_all_reduce(j->world, sums, sums, 2, COMM_DTYPE_F64, COMM_REDOP_SUM));
    *tokens = (int64_t)sums[1];
    *loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    return SL_OK;
}

/* ---- the loop ---- */

static void fmt_thousands(char *buf, size_t cap, double x) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.0f", x);
    size_t n = strlen(tmp), o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        buf[o++] = tmp[i];
        if ((n - i - 1) % 3 == 0 && i + 1 < n && tmp[i] != '-')
            buf[o++] = ',';
    }
    buf[o] = 0;
}

static void log_step(train_job *j, const train_step_result *r) {
    const sl_config *c = j->cfg;
    double tok_s = (double)j->plan.tokens_per_step / r->seconds;
    char toks[48], mfu[32] = "", skipped[48] = "", exposed[32] = "n/a";
    fmt_thousands(toks, sizeof toks, tok_s);
    /* NCCL waits do not block the host, so the host-blocked share means
     * nothing on CUDA (parallel/fsdp.h) */
    if (!j->use_cuda)
        snprintf(exposed, sizeof exposed, "%.0f%%", 100.0 * r->exposed_comm_s / r->seconds);
    if (j->peak_flops > 0)
        snprintf(mfu, sizeof mfu, " | mfu %.1f%%",
                 100.0 * tok_s * j->flops_per_token / (j->peak_flops * j->plan.world));
    if (r->skipped)
        snprintf(skipped, sizeof skipped, " | SKIPPED (non-finite; %d so far)", j->n_skipped);
    LOG_INFO0("step %d/%d | loss %.4f | lr %.2e | gnorm %.2f | %.0f ms | %s tok/s%s | mem %.2f GiB | "
              "comm exposed %s%s",
              j->step, c->train.steps, r->loss, r->lr, r->grad_norm, 1e3 * r->seconds, toks, mfu,
              (double)mem_peak_total(&j->acct) / (1024.0 * 1024.0 * 1024.0), exposed, skipped);
}

static sl_status log_metrics(train_job *j, const train_step_result *r) {
    if (!j->metrics)
        return SL_OK;
    double tok_s = (double)j->plan.tokens_per_step / r->seconds;
    metric_kv kv[] = {
        {"loss", r->loss},
        {"lr", r->lr},
        {"gnorm", r->grad_norm},
        {"step_ms", 1e3 * r->seconds},
        {"tok_per_s", tok_s},
        {"mem_gib", (double)mem_peak_total(&j->acct) / (1024.0 * 1024.0 * 1024.0)},
        {"skipped", r->skipped ? 1.0 : 0.0},
        {NULL, 0}, /* comm_exposed_pct: host-blocked time means nothing on CUDA (NCCL waits are stream-ordered) */
        {NULL, 0}, /* mfu_pct: where the device's peak is known */
    };
    int n = 7;
    if (!j->use_cuda)
        kv[n++] = (metric_kv){"comm_exposed_pct", 100.0 * r->exposed_comm_s / r->seconds};
    if (j->peak_flops > 0)
        kv[n++] = (metric_kv){"mfu_pct", 100.0 * tok_s * j->flops_per_token / (j->peak_flops * j->plan.world)};
    return metrics_write(j->metrics, j->step, kv, n);
}

static sl_status run_eval(train_job *j, const char *when) {
    if (!j->eval_loader)
        return SL_OK;
    double loss;
    int64_t tokens;
    SL_TRY(train_job_eval(j, &loss, &tokens));
    LOG_INFO0("eval %s (step %d) | loss %.4f | ppl %.2f | %lld tokens", when, j->step, loss, exp(loss),
              (long long)tokens);
    if (j->metrics) {
        metric_kv kv[] = {{"eval_loss", loss}, {"eval_ppl", exp(loss)}};
        SL_TRY(metrics_write(j->metrics, j->step, kv, 2));
    }
    return SL_OK;
}

/* Gathers every unit (collective) and writes a Hugging Face folder on rank 0. */
static sl_status export_final(train_job *j) {
    const model_layout *l = j->layout;
    char dir[CFG_STR_MAX + 16];
    snprintf(dir, sizeof dir, "%s/export", j->cfg->train.run_dir);
    if (j->lora)
        return train_lora_export(j, dir);
    float *host = malloc((size_t)l->total_numel * sizeof(float));
    SL_CHECK_ALLOC(host, (size_t)l->total_numel * sizeof(float));
    sl_status st = SL_OK;
    int64_t off = 0;
    for (int u = 0; u < l->n_units && st == SL_OK; u++) {
        st = fsdp_gather_unit(j->fs, u, host + off);
        off += l->units[u].numel;
    }
    if (st == SL_OK && j->topo->rank == 0) {
        st = hf_save(dir, l, host, SL_DTYPE_F32, "");
        if (st == SL_OK && j->cfg->data.tokenizer[0]) {
            /* generation needs the tokenizer beside the weights */
            char *text = NULL;
            size_t len = 0;
            char dst[CFG_STR_MAX + 64];
            const char *src = j->cfg->data.tokenizer;
            if (!fs_is_dir(src) && fs_read_file(src, &text, &len, (size_t)1 << 30) == SL_OK) {
                const char *base = strrchr(src, '/');
                snprintf(dst, sizeof dst, "%s/%s", dir, base ? base + 1 : src);
                st = fs_write_atomic(dst, text, len);
                free(text);
            }
        }
        if (st == SL_OK)
            LOG_INFO0("exported the final model to %s (Hugging Face layout)", dir);
    }
    free(host);
    return st;
}

/* Step boundary: if any rank got SIGTERM/SIGUSR1 (runtime/preempt.h),
 * every rank saves and returns SL_ERR_INTERRUPTED (exit 75). */
static sl_status check_preempt(train_job *j) {
    int32_t sig = preempt_signal();
    SL_TRY(comm_all_reduce(j->world, &sig, &sig, 1, COMM_DTYPE_I32, COMM_REDOP_MAX));
    if (sig == 0)
        return SL_OK;
    const char *name = sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1" : "a signal";
    LOG_WARN0("%s (%d) received: saving a checkpoint at step %d and stopping", name, sig, j->step);
    if (j->saved_step != j->step)
        SL_TRY(ckpt_save(j));
    j->stop_agreed = true;
    char root[CFG_STR_MAX + 32];
    SL_TRY(ckpt_root(j->cfg, root, sizeof root));
    return sl_errorf(SL_ERR_INTERRUPTED,
                     "stopped by %s at step %d; checkpoint %s/step_%08d is saved: relaunch with --resume auto "
                     "to continue",
                     name, j->step, root, j->step);
}

sl_status train_job_run(train_job *j) {
    const sl_config *c = j->cfg;
    char plan[256];
    parallel_plan_describe(&j->plan, plan, sizeof plan);
    LOG_INFO0("%s", plan);
    char where[512];
    topology_describe(j->topo, where, sizeof where);
    LOG_INFO0("%s", where);
    LOG_INFO0("model %s: %d layers, d_model %d, %d heads (%d kv), vocab %d, %.2fM parameters; "
              "seq %d, %lld tokens per step",
              config_enum_name("model.arch", c->model.arch), c->model.n_layer, c->model.d_model,
              c->model.n_head, c->model.n_kv_head, c->model.vocab_size,
              (double)model_layout_param_count(j->layout) / 1e6, c->data.seq_len,
              (long long)j->plan.tokens_per_step);
    if (j->topo->rank == 0) {
        char path[CFG_STR_MAX + 32];
        SL_TRY(fs_mkdirs(c->train.run_dir));
        snprintf(path, sizeof path, "%s/config.json", c->train.run_dir);
        SL_TRY(config_write_file(c, path));
        SL_TRY(metrics_open(c->train.run_dir, c->logging.tensorboard, &j->metrics));
    }
    if (j->step == 0)
        SL_TRY(run_eval(j, "before training"));
    while (j->step < c->train.steps) {
        SL_TRY(check_preempt(j));
        train_step_result r;
        SL_TRY(train_job_step(j, &r));
        if (j->step % c->logging.log_every == 0 || j->step == c->train.steps || r.skipped)
            log_step(j, &r);
        SL_TRY(log_metrics(j, &r));
        if (c->train.eval_every > 0 && j->step % c->train.eval_every == 0 && j->step < c->train.steps)
            SL_TRY(run_eval(j, "during training"));
        if (c->checkpoint.every > 0 && j->step % c->checkpoint.every == 0)
            SL_TRY(ckpt_save(j));
    }
    if (j->saved_step != j->step)
        SL_TRY(ckpt_save(j));
    SL_TRY(run_eval(j, "after training"));
    if (c->train.export_final)
        SL_TRY(export_final(j));
    if (j->n_skipped)
        LOG_WARN0("%d of %d steps were skipped for non-finite loss or gradient norm", j->n_skipped,
                  c->train.steps);
    return SL_OK;
}
