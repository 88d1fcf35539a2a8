/* train/train.c: the job's setup and teardown (train.h). */
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "kernels/device_info.h"
#include "train/bench_device.h"
#include "train/plan.h"
#include "train/train_check.h"
#include "train/train_ckpt.h"
#include "train/train_model.h"
#include "train/train_lora.h"
#include "model/hf.h"
#include "model/hf_stream.h"
#include "runtime/check.h"
#include "runtime/log.h"

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
static sl_status make_backend(train_job *j, int cpu_threads) {
    const sl_config *cfg = j->cfg;
    device_info di;
    device_info_query(&di);
    j->use_cuda = train_uses_cuda(cfg, &di);
    if (!j->use_cuda) {
        if (cfg->train.dtype != COMPUTE_DTYPE_F32)
            return sl_errorf(SL_ERR_UNSUPPORTED, "train.dtype = bf16 needs the CUDA backend (train.backend = "
                                                 "cuda or auto on a GPU machine); the CPU backend computes in fp32");
        return backend_create_cpu(cpu_threads, &j->acct, &j->be);
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

/* The initial weights of model.init_from. A model folder streams: each rank
 * reads only the elements of its own shards from the (mapped) safetensors
 * files, one unit at a time. A checkpoint step folder (train/train_model.h)
 * is gathered whole into host memory first. */
static sl_status load_init_weights(train_job *j, const train_group *g) {
    const model_layout *l = j->layout;
    char step[1200];
    if (!train_model_is_checkpoint(j->cfg->model.init_from, step, sizeof step)) {
        hf_reader *r = NULL;
        SL_TRY(hf_reader_open(j->cfg->model.init_from, l, &r));
        hf_reader_set_seed(r, (uint64_t)j->cfg->train.seed); /* a reward model's new score head */
        sl_status st = train_group_load_from(g, r);
        hf_reader_close(r);
        return st;
    }
    model_dir_params md;
    SL_TRY(train_model_open(j->cfg->model.init_from, &md));
    sl_status st = SL_OK;
    if (md.layout->total_numel != l->total_numel)
        st = sl_errorf(SL_ERR_INVALID, "model.init_from = %s holds %lld parameters, the model %lld",
                       j->cfg->model.init_from, (long long)md.layout->total_numel, (long long)l->total_numel);
    if (st == SL_OK)
        st = train_group_load(g, md.params);
    model_dir_close(&md);
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
        .once = eval,
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

/* data.train (and its tokenizer hash) and data.eval. */
static sl_status open_data(train_job *j) {
    const sl_config *cfg = j->cfg;
    if (!cfg->data.train[0])
        return sl_errorf(SL_ERR_INVALID, "\"data.train\" is empty: set it to the shards written by shardlm prepare");
    SL_TRY(open_loader(j, cfg->data.train, false, &j->train_loader)); /* checks the layout */
    /* (train_config_resolve matched data.mode to train.objective: pair rows
     * only for a pair objective) */
    SL_TRY(data_tokenizer_hash(cfg->data.train, j->tokenizer_hash, sizeof j->tokenizer_hash));
    if (cfg->data.eval[0])
        SL_TRY(open_loader(j, cfg->data.eval, true, &j->eval_loader));
    return SL_OK;
}

/* A group's initial weights: model.init_from (every rank reads the
 * folder), else the seeded initialization. */
static sl_status init_weights(train_job *j, const train_group *g) {
    if (j->cfg->model.init_from[0])
        return train_agree(j, load_init_weights(j, g));
    return train_group_init(g, (uint64_t)j->cfg->train.seed);
}

/* The groups' hooks (LoRA: the adapters' ride on the base's) and the
 * optimizer over the trainable groups. */
static sl_status compose_groups(train_job *j) {
    train_group_hooks(j->fs, &j->hooks);
    if (j->lora_fs) {
        train_group_hooks(j->lora_fs, &j->adapter_hooks);
        j->hooks.adapter = &j->adapter_hooks;
    }
    SL_TRY(optim_create(j->be, j->dev_shard ? j->dev_shard : j->shard, &j->opt));
    for (int g = 0; g < j->n_groups; g++)
        if (j->groups[g].trainable)
            SL_TRY(train_group_add_to_optim(&j->groups[g], j->opt));
    return SL_OK;
}

sl_status train_agree(train_job *j, sl_status st) {
    int32_t mine[2] = {st != SL_OK ? j->topo->world - j->topo->rank : 0, (int32_t)st}, all[2];
    sl_status cst = comm_all_reduce(j->world, mine, all, 2, SL_DTYPE_I32, COMM_REDOP_MAX);
    if (cst != SL_OK)
        return st != SL_OK ? st : cst;
    if (all[0] == 0)
        return SL_OK;
    j->stop_agreed = true;
    j->report_rank = j->topo->world - all[0];
    if (st != SL_OK)
        return st;
    return sl_errorf((sl_status)all[1], "rank %d failed (its error is printed)", j->report_rank);
}

/* --overwrite: rank 0 moves a used run_dir aside before anything is
 * written (train_check.h); every rank learns the outcome. */
static sl_status prepare_run_dir(train_job *j, bool overwrite) {
    sl_status st = SL_OK;
    if (j->topo->rank == 0) {
        char moved[CFG_STR_MAX + 64];
        st = train_run_dir_prepare(j->cfg, overwrite, moved, sizeof moved);
        if (st == SL_OK && moved[0])
            LOG_WARN0("--overwrite: moved the previous run in %s to %s", j->cfg->train.run_dir, moved);
    }
    return train_agree(j, st);
}

sl_status train_job_setup(train_job *j, sl_config *cfg, topology *topo, const train_setup_opts *o) {
    memset(j, 0, sizeof *j);
    j->cfg = cfg;
    j->topo = topo;
    bool synthetic = o && o->synthetic;
    j->synthetic = synthetic;
    j->saved_step = -1;
    j->best_eval_loss = NAN;
    j->last_eval_loss = NAN;
    j->last_eval_step = -1;
    SL_TRY(train_faults_from_env(&j->faults, topo->rank));
    mem_accountant_init(&j->acct);
    SL_TRY(train_config_resolve(cfg));
    SL_TRY(pair_objective_for(cfg, &j->pobj));
    if (cfg->model.head == MODEL_HEAD_SCORE && cfg->model.pad_token_id < 0)
        LOG_WARN0("model.pad_token_id is not set: the exported reward model's config.json gets "
                  "pad_token_id null, and transformers then scores one sequence per batch only; set "
                  "model.pad_token_id to the tokenizer's pad (or EOS) id");
    j->rows_per_sample = j->pobj ? 2 : 1;
    SL_TRY(parallel_plan_make(cfg, topo, &j->plan));
    SL_TRY(model_layout_create(&cfg->model, cfg->optim.decay_embeddings, &j->layout));
    SL_TRY(make_backend(j, o ? o->cpu_threads : 0));
    if (j->use_cuda)
        LOG_INFO0("backend cuda (one GPU per local rank; rank 0 on device %d), compute dtype %s",
                  j->be->device_ordinal, dtype_name(j->be->act_dtype));
    else
        LOG_INFO0("backend cpu, compute dtype %s", dtype_name(j->be->act_dtype));
    SL_TRY(make_comms(j));
    /* before the first large allocation: refuse what cannot fit (train/plan.h) */
    sl_status pf = plan_preflight(cfg, topo, j->use_cuda, j->world);
    if (pf != SL_OK) {
        j->stop_agreed = pf == SL_ERR_INVALID; /* every rank refuses together */
        return pf;
    }
    fsdp_opts fo = {.be = j->be,
                    .plan = &j->plan,
                    .shard_comm = j->dev_shard ? j->dev_shard : j->shard,
                    .replicate_comm = j->dev_replicate ? j->dev_replicate : j->replicate,
                    .gather_buffers = cfg->parallel.gather_buffers,
                    .overlap = cfg->parallel.overlap,
                    .grad_sync_per_step = cfg->parallel.grad_sync == GRAD_SYNC_PER_STEP};
    SL_TRY(train_group_create(&j->groups[0], "model", j->layout, &fo, !cfg->lora.enabled));
    j->fs = j->groups[0].fs;
    j->n_groups = 1;
    char resume_dir[1100];
    bool resume = false;
    if (!synthetic)
        SL_TRY(prepare_run_dir(j, o && o->overwrite));
    if (!synthetic)
        SL_TRY(train_ckpt_find_resume(j, resume_dir, sizeof resume_dir, &resume));
    /* A resumed run takes its weights from the checkpoint, except a LoRA
     * run's frozen base, which checkpoints do not hold. */
    if (!resume || cfg->lora.enabled)
        SL_TRY(init_weights(j, &j->groups[0]));
    /* DPO's reference for full fine-tuning: a frozen copy of the policy's
     * start, sharded like it (LoRA's is the base with the adapters off) */
    if (j->pobj && j->pobj->needs_reference && !cfg->lora.enabled) {
        SL_TRY(train_group_create(&j->ref, "reference", j->layout, &fo, false));
        j->ref_fs = j->ref.fs;
        SL_TRY(init_weights(j, &j->ref));
        train_group_hooks(j->ref_fs, &j->ref_hooks);
    }
    if (cfg->lora.enabled)
        SL_TRY(train_lora_setup(j, &fo));
    SL_TRY(compose_groups(j));
    /* every rank opens the same shards: a bad one is reported once */
    if (!synthetic)
        SL_TRY(train_agree(j, open_data(j)));
    /* pair objectives: a micro-batch of micro_batch pairs is twice as many rows */
    SL_TRY(model_create(j->layout, j->be, cfg->train.micro_batch * j->rows_per_sample, cfg->data.seq_len,
                        cfg->train.recompute, &j->mdl));
    if (j->lora)
        SL_TRY(model_attach_lora(j->mdl, j->lora));
    size_t n = (size_t)cfg->train.grad_accum * (size_t)cfg->train.micro_batch * (size_t)j->rows_per_sample *
               (size_t)cfg->data.seq_len;
    j->inputs = malloc(n * sizeof *j->inputs);
    j->targets = malloc(n * sizeof *j->targets);
    SL_CHECK_ALLOC(j->inputs && j->targets ? j->inputs : NULL, n * 8);
    j->flops_per_token = model_layout_flops_per_token(j->layout, cfg->data.seq_len);
    /* MFU in the step line: the device's datasheet bf16 peak (train/bench_device.h);
     * none on the CPU or on a GPU the table lacks */
    bench_device dev;
    SL_TRY(bench_device_query(j->use_cuda, &dev));
    j->peak_flops = dev.peak_tflops * 1e12;
    if (resume)
        SL_TRY(train_ckpt_resume(j, resume_dir));
    return SL_OK;
}

void train_job_teardown(train_job *j) {
    metrics_close(j->metrics);
    loader_destroy(j->train_loader);
    loader_destroy(j->eval_loader);
    model_destroy(j->mdl);
    optim_destroy(j->opt);
    train_lora_teardown(j);
    fsdp_destroy(j->fs);
    fsdp_destroy(j->ref_fs);
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

