/* train/plan.c: the memory, comm and time model of a training run
 * (train/plan.h). Each byte count names the allocation it mirrors. */
#include "train/plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/layout.h"
#include "model/lora.h"
#include "model/model.h"
#include "runtime/check.h"

#define MPI_SCRATCH_BYTES ((int64_t)8 << 20)  /* comm_opts_default's scratch_bytes, per MPI comm */
#define NCCL_STAGING_BYTES ((int64_t)1 << 20) /* comm_nccl's smallest staging scratch (host operands:
                                                * the optimizer's norm all-reduce) */
#define CUBLASLT_WORKSPACE ((int64_t)32 << 20) /* backend_create_cuda's default */
#define FSDP_GRAD_POOL 3                      /* parallel/fsdp.c FSDP_GRAD_SLOTS */

/* Defaults. GPUs: HBM as nvidia-smi reports it, dense bf16 datasheet peaks
 * (train/bench_device.h's table), MFU and bus bandwidths assumed (no GPU
 * figure in benchmarks/RESULTS.md yet), prices typical on-demand rates.
 * cpu: RESULTS.md's measured figures on the dev VM (2026-11-29: 90 GFLOP/s
 * on 2 cores; 2026-11-22 collectives: 0.1-4 GB/s busbw at 1-16 MiB). */
/* the MFU assumption every GPU row shares until shardlm measures one */
#define PLAN_ASSUMED_MFU \
    "assumed: MFU 40% (FSDP Llama training as torchtitan/Megatron report it; shardlm has no GPU " \
    "measurement yet), "

static const plan_device devices[PLAN_GPU_COUNT] = {
    {"cpu", "CPU backend (fp32)", false, 0, 0.045, 1.0, 1.0, 1.0, 0.0,
     "benchmarks/RESULTS.md: 45 GFLOP/s per core sustained (CPU step, 2026-11-29), MPI busbw ~1 GB/s "
     "(collectives, 2026-11-22)"},
    {"a100-40g", "NVIDIA A100 40GB (SXM)", true, (int64_t)40960 << 20, 312.0, 0.40, 230.0, 100.0, 1.30,
     PLAN_ASSUMED_MFU "busbw 230 GB/s NVLink3 / 100 GB/s 8x HDR InfiniBand"},
    {"a100-80g", "NVIDIA A100 80GB (SXM)", true, (int64_t)81920 << 20, 312.0, 0.40, 230.0, 100.0, 1.80,
     PLAN_ASSUMED_MFU "busbw 230 GB/s NVLink3 / 100 GB/s 8x HDR InfiniBand"},
    {"h100", "NVIDIA H100 80GB (SXM)", true, (int64_t)81559 << 20, 989.0, 0.40, 370.0, 200.0, 2.50,
     PLAN_ASSUMED_MFU "busbw 370 GB/s NVLink4 / 200 GB/s 8x NDR InfiniBand"},
    {"h200", "NVIDIA H200 141GB (SXM)", true, (int64_t)143771 << 20, 989.0, 0.40, 370.0, 200.0, 3.50,
     PLAN_ASSUMED_MFU "busbw 370 GB/s NVLink4 / 200 GB/s 8x NDR InfiniBand"},
};

const plan_device *plan_device_get(plan_gpu g) {
    return (unsigned)g < PLAN_GPU_COUNT ? &devices[g] : &devices[PLAN_GPU_CPU];
}

sl_status plan_device_parse(const char *name, plan_gpu *out) {
    for (int i = 0; i < PLAN_GPU_COUNT; i++)
        if (strcmp(name, devices[i].name) == 0) {
            *out = (plan_gpu)i;
            return SL_OK;
        }
    return sl_errorf(SL_ERR_INVALID, "--gpu %s: expected one of cpu, a100-40g, a100-80g, h100, h200", name);
}

/* ---- memory: one FSDP group (parallel/fsdp.c fsdp_create) ---- */

typedef struct {
    int k;            /* shard group size */
    int mode;         /* fsdp_mode */
    bool per_step;    /* parallel.grad_sync = per_step */
    int gather_buffers;
    size_t esz;       /* act dtype size */
    bool act_is_master;
} group_shape;

static void group_bytes(const model_layout *l, const group_shape *g, bool frozen, int64_t b[MEM_CATEGORY_COUNT]) {
    int64_t max_p = 0, max_l = 0, k = g->k;
    for (int u = 0; u < l->n_units; u++) {
        int64_t len = (l->units[u].numel + k - 1) / k;
        if (len == 0)
            len = 1; /* an empty unit still takes part in collectives */
        int64_t padded = len * k;
        max_p = padded > max_p ? padded : max_p;
        max_l = len > max_l ? len : max_l;
        if (!frozen || g->act_is_master)
            b[MEM_CATEGORY_PARAMS] += len * 4; /* the fp32 master */
        if (!g->act_is_master)
            b[MEM_CATEGORY_PARAMS] += len * (int64_t)g->esz; /* the act copy the gathers move */
        if (!frozen) {
            b[MEM_CATEGORY_OPTIMIZER] += 2 * len * 4; /* m, v */
            b[MEM_CATEGORY_GRADS] += len * 4;         /* the gradient shard */
            if (g->per_step && k > 1)
                b[MEM_CATEGORY_GATHERED] += padded * 4; /* per_step's full-size accumulation */
        }
        if (k > 1 && g->mode == FSDP_MODE_SHARD_GRAD_OP)
            b[MEM_CATEGORY_GATHERED] += padded * (int64_t)g->esz; /* kept from forward to backward */
    }
    if (!frozen && !g->per_step && k > 1) { /* the per-microstep gradient pool */
        b[MEM_CATEGORY_GATHERED] += FSDP_GRAD_POOL * max_p * 4;
        b[MEM_CATEGORY_COMM] += FSDP_GRAD_POOL * max_l * 4;
    }
    if (k > 1 && g->mode != FSDP_MODE_SHARD_GRAD_OP)
        b[MEM_CATEGORY_GATHERED] += g->gather_buffers * max_p * (int64_t)g->esz;
}

/* ---- communication: the collectives of one step (parallel/fsdp.c, model/model.c's call order) ---- */

typedef struct {
    int k, rep, micro, mode;
    bool per_step, shard_cross, rep_cross; /* which links the shard / replicate groups cross */
    size_t esz;
} comm_shape;

static void add_bus(plan_result *r, bool cross, double bytes) {
    if (cross)
        r->bus_bytes_cross += bytes;
    else
        r->bus_bytes_node += bytes;
}

/* adapters: the LoRA group (units 0 and L+1 empty, never acquired). */
static void group_comm(const model_layout *l, const comm_shape *c, bool trainable, bool adapters, bool tied,
                       plan_result *r) {
    int last = l->n_units - 1;
    double k = c->k, rep = c->rep;
    bool sgo = c->mode == FSDP_MODE_SHARD_GRAD_OP;
    for (int u = 0; u < l->n_units; u++) {
        int64_t len = (l->units[u].numel + c->k - 1) / c->k;
        len = len ? len : 1;
        double padded = (double)len * k;
        /* all-gathers per step: a block twice per micro-step (forward, backward; once kept
         * by SHARD_GRAD_OP); unit 0 and L+1 once (a tied unit 0 stays gathered through the
         * pass; an untied one kept by SHARD_GRAD_OP is never released: once per step) */
        double gathers = 0;
        if (c->k > 1) {
            bool block = u >= 1 && u < last;
            if (block)
                gathers = (sgo ? 1 : 2) * c->micro;
            else if (!adapters)
                gathers = (u == 0 && !tied && sgo) ? 1 : c->micro;
        }
        r->ag_bytes += gathers * padded * (double)c->esz;
        add_bus(r, c->shard_cross, gathers * padded * (double)c->esz * (k - 1) / k);
        r->n_collectives += (int64_t)gathers;
        if (!trainable)
            continue;
        double rs = c->k > 1 ? (c->per_step ? 1 : c->micro) : 0;
        r->rs_bytes += rs * padded * 4;
        add_bus(r, c->shard_cross, rs * padded * 4 * (k - 1) / k);
        r->n_collectives += (int64_t)rs;
        if (c->rep > 1) {
            r->ar_bytes += (double)len * 4;
            add_bus(r, c->rep_cross, 2.0 * (rep - 1) / rep * (double)len * 4);
            r->n_collectives++;
        }
    }
}

/* ---- the plan ---- */

static int64_t block_numel(const model_layout *l) {
    int64_t n = 0;
    for (int u = 1; u < l->n_units - 1; u++)
        n += l->units[u].numel;
    return n;
}

static void plan_time(const sl_config *cfg, const plan_opts *o, const model_layout *l, plan_result *r) {
    const plan_device *d = plan_device_get(o->gpu);
    const cfg_model *m = &l->cfg;
    double T = cfg->data.seq_len, attn = (double)m->n_layer * T * m->d_model;
    r->flops_per_token = model_layout_flops_per_token(l, cfg->data.seq_len);
    double exec = r->flops_per_token;
    if (cfg->train.recompute) /* one more block forward */
        exec += 2.0 * (double)block_numel(l) + 2.0 * attn;
    if (cfg->lora.enabled) /* frozen weights: no dW GEMM; adapters: forward, dx, dA and dB */
        exec += -2.0 * (r->flops_per_token - 6.0 * attn) / 6.0 + 6.0 * (double)r->lora_params;
    double tokens = (double)r->plan.tokens_per_step;
    if (cfg->train.objective != TRAIN_OBJECTIVE_SFT)
        tokens *= 2; /* pairs: a chosen and a rejected row per sample */
    if (cfg->train.objective == TRAIN_OBJECTIVE_DPO)
        exec += r->flops_per_token / 3.0; /* the reference's forward (a third of 6N + attention) */
    r->flops_per_step = r->flops_per_token * tokens;
    r->exec_flops_per_step = exec * tokens;
    r->mfu = o->mfu > 0 ? o->mfu : d->mfu;
    r->peak_tflops = d->peak_tflops;
    if (!d->is_gpu) { /* per core: a rank gets the host's cores / its ranks */
        long cores = o->cpu_cores > 0 ? o->cpu_cores : sysconf(_SC_NPROCESSORS_ONLN);
        r->peak_tflops = d->peak_tflops * (double)(cores > 0 ? cores : 1) / (double)o->per_node;
    }
    r->busbw_node_gbps = o->busbw_gbps > 0 ? o->busbw_gbps : d->busbw_node_gbps;
    r->busbw_cross_gbps = o->busbw_gbps > 0 ? o->busbw_gbps : d->busbw_cross_gbps;
    r->price = o->price >= 0 ? o->price : d->price;
    r->compute_s = r->exec_flops_per_step / r->plan.world / (r->mfu * r->peak_tflops * 1e12);
    r->comm_s = r->bus_bytes_node / (r->busbw_node_gbps * 1e9) + r->bus_bytes_cross / (r->busbw_cross_gbps * 1e9);
    r->step_s = r->compute_s > r->comm_s ? r->compute_s : r->comm_s;
    r->tokens_per_s = tokens / r->step_s;
    r->gpu_hours = (double)cfg->train.steps * r->step_s * r->plan.world / 3600.0;
    r->cost = r->gpu_hours * r->price;
}

static sl_status plan_memory(const sl_config *cfg, const plan_opts *o, const model_layout *l, const lora_spec *ls,
                             plan_result *r) {
    const plan_device *d = plan_device_get(o->gpu);
    const parallel_plan *p = &r->plan;
    sl_dtype act = d->is_gpu ? SL_DTYPE_BF16 : SL_DTYPE_F32;
    group_shape g = {.k = p->shard_size,
                     .mode = p->mode,
                     .per_step = cfg->parallel.grad_sync == GRAD_SYNC_PER_STEP,
                     .gather_buffers = cfg->parallel.gather_buffers,
                     .esz = dtype_size(act),
                     .act_is_master = act == SL_DTYPE_F32};
    group_bytes(l, &g, cfg->lora.enabled, r->bytes);
    if (ls)
        group_bytes(ls->layout, &g, false, r->bytes);
    /* DPO (train/pairs.h): full fine-tuning holds a frozen reference
     * instance of the model (LoRA's reference is the base with the adapters
     * off); the model runs 2 rows (chosen, rejected) per pair */
    bool pairs = cfg->train.objective != TRAIN_OBJECTIVE_SFT;
    if (cfg->train.objective == TRAIN_OBJECTIVE_DPO && !cfg->lora.enabled)
        group_bytes(l, &g, true, r->bytes);
    int rows = cfg->train.micro_batch * (pairs ? 2 : 1);
    model_act_bytes a;
    SL_TRY(model_activation_plan(l, ls, act, rows, cfg->data.seq_len, true, &a));
    r->act_recompute = a.total;
    SL_TRY(model_activation_plan(l, ls, act, rows, cfg->data.seq_len, false, &a));
    r->act_full = a.total;
    r->act_logits = a.logits;
    r->vchunk = a.vchunk;
    r->bytes[MEM_CATEGORY_ACTIVATIONS] = cfg->train.recompute ? r->act_recompute : r->act_full;
    /* train.c make_comms: the world comm, NO_SHARD's shard split, HYBRID's shard and replicate
     * splits (MPI, host memory); on CUDA NCCL comms over the shard and replicate groups */
    bool has_rep = p->replicate_size > 1;
    int n_mpi = 1 + (p->mode == FSDP_MODE_NO_SHARD) + (p->mode == FSDP_MODE_HYBRID ? 1 + has_rep : 0);
    if (d->is_gpu) {
        r->host_bytes = n_mpi * MPI_SCRATCH_BYTES;
        r->bytes[MEM_CATEGORY_COMM] += NCCL_STAGING_BYTES + 4 + (has_rep ? 4 : 0); /* + barrier words */
        /* cuBLASLt workspace, flag word, op scratch (attention backward (B H T) F32, +25%) */
        int64_t scratch = (int64_t)rows * cfg->data.seq_len * l->cfg.n_head * 4;
        r->bytes[MEM_CATEGORY_WORKSPACE] = CUBLASLT_WORKSPACE + 64 + scratch + scratch / 4;
    } else {
        r->bytes[MEM_CATEGORY_COMM] += n_mpi * MPI_SCRATCH_BYTES;
    }
    r->total = 0;
    for (int c = 0; c < MEM_CATEGORY_COUNT; c++)
        r->total += r->bytes[c];
    return SL_OK;
}

sl_status plan_compute(const sl_config *cfg, const plan_opts *o, plan_result *r) {
    memset(r, 0, sizeof *r);
    SL_CHECK_ARG(o->nodes >= 1 && o->per_node >= 1, "plan: %d nodes x %d ranks per node: both must be >= 1",
                 o->nodes, o->per_node);
    const plan_device *d = plan_device_get(o->gpu);
    r->is_gpu = d->is_gpu;
    topology t;
    memset(&t, 0, sizeof t);
    t.world = o->nodes * o->per_node;
    t.local_world = o->per_node;
    t.n_nodes = o->nodes;
    t.uniform = true;
    SL_TRY(parallel_plan_make(cfg, &t, &r->plan));
    model_layout *l = NULL;
    SL_TRY(model_layout_create(&cfg->model, cfg->optim.decay_embeddings, &l));
    lora_spec *ls = NULL;
    sl_status st = cfg->lora.enabled ? lora_create(l, &cfg->lora, &ls) : SL_OK;
    if (st == SL_OK) {
        r->params_total = model_layout_param_count(l);
        r->lora_params = ls ? ls->layout->total_numel : 0;
        st = plan_memory(cfg, o, l, ls, r);
    }
    if (st == SL_OK) {
        const parallel_plan *p = &r->plan;
        comm_shape c = {.k = p->shard_size,
                        .rep = p->replicate_size,
                        .micro = cfg->train.grad_accum,
                        .mode = p->mode,
                        .per_step = cfg->parallel.grad_sync == GRAD_SYNC_PER_STEP,
                        .shard_cross = p->shard_size > o->per_node,
                        .rep_cross = o->nodes > 1,
                        .esz = d->is_gpu ? 2 : 4};
        group_comm(l, &c, !cfg->lora.enabled, false, cfg->model.tie_embeddings, r);
        if (ls)
            group_comm(ls->layout, &c, true, true, false, r);
        plan_time(cfg, o, l, r);
    }
    lora_destroy(ls);
    model_layout_destroy(l);
    return st;
}

sl_status plan_max_micro_batch(const sl_config *cfg, const plan_opts *o, int64_t limit_bytes, int64_t extra_bytes,
                               int *best) {
    *best = 0;
    sl_config *c = malloc(sizeof *c);
    SL_CHECK_ALLOC(c, sizeof *c);
    *c = *cfg;
    plan_result r;
    sl_status st = SL_OK;
    int lo = 0, hi = 1; /* lo fits (0: none known), hi is the next to try */
    while (st == SL_OK && hi <= 65536) { /* double until one does not fit */
        c->train.micro_batch = hi;
        st = plan_compute(c, o, &r);
        if (st != SL_OK || r.total + extra_bytes > limit_bytes)
            break;
        lo = hi;
        hi *= 2;
    }
    while (st == SL_OK && hi <= 65536 && hi - lo > 1) { /* then bisect (lo fits, hi does not) */
        int mid = lo + (hi - lo) / 2;
        c->train.micro_batch = mid;
        st = plan_compute(c, o, &r);
        if (st == SL_OK && r.total + extra_bytes <= limit_bytes)
            lo = mid;
        else
            hi = mid;
    }
    free(c);
    *best = lo;
    return st;
}
