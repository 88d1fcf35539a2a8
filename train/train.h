/* train/train.h: the training job, composed in one place.
 *
 * defines: train_job, train_setup_opts, train_step_result, train_job_setup,
 *          train_job_step, train_step_batch, train_job_eval, train_job_run,
 *          train_job_export, train_job_teardown, train_uses_cuda,
 *          train_synthetic_tokens, train_agree
 *
 * This is where the modules meet (DESIGN section 8):
 *   config -> topology -> parallel plan -> layout -> backend (train.backend:
 *   CPU fp32, or CUDA bf16 on the GPU of the local rank) -> comms (MPI; on
 *   CUDA the FSDP groups also get NCCL comms over them)
 *   -> parameter groups (train/params.h: the model's fsdp, frozen under LoRA,
 *   and the adapters' fsdp; init, Hugging Face or PEFT import)
 *   -> optimizer (optim/optim.h over the trainable groups' shards)
 *   -> loader -> model -> resume (train/train_ckpt.h over ckpt/ckpt.h:
 *   checkpoint.resume / --resume)
 *   loop: preemption check (SIGTERM/SIGUSR1 on any rank: save, exit 75)
 *         -> the step (train_step_batch: grad_accum micro-batches, forward/
 *         backward through the groups' hooks (train.objective = dpo: the
 *         pair driver of train/pairs.h, reference rows then the policy's row
 *         pass), reduce-scatter, non-finite flags, optim_step) -> step line, metrics.jsonl, TensorBoard
 *         (train/run.c) -> eval -> checkpoint every N steps
 *   end:  checkpoint, eval, export of the final model (Hugging Face folder).
 * `shardlm train` and `shardlm bench` (synthetic tokens) both drive it.
 * Every rank runs the same code; only rank 0 prints the step line and writes
 * metrics and exports. Test-only faults: train/faults.h.
 */
#ifndef SL_TRAIN_TRAIN_H
#define SL_TRAIN_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "data/loader.h"
#include "kernels/device_info.h"
#include "kernels/ops.h"
#include "model/layout.h"
#include "model/lora.h"
#include "model/model.h"
#include "parallel/comm.h"
#include "parallel/fsdp.h"
#include "parallel/plan.h"
#include "parallel/topology.h"
#include "runtime/config.h"
#include "runtime/mem.h"
#include "runtime/metrics.h"
#include "optim/optim.h"
#include "train/faults.h"
#include "train/pairs.h"
#include "train/params.h"

typedef struct {
    bool synthetic;  /* random tokens (train_synthetic_tokens: bench) instead of data.train */
    int cpu_threads; /* threads of the CPU backend; <= 0: the OpenMP default */
    bool overwrite;  /* --overwrite: move a used train.run_dir aside (train/train_check.h) */
} train_setup_opts;

typedef struct train_job_s {
    sl_config *cfg; /* borrowed */
    topology *topo; /* borrowed */
    parallel_plan plan;
    mem_accountant acct;
    model_layout *layout;
    sl_backend *be;
    comm *world, *shard, *replicate; /* MPI (host memory); world carries host-side control */
    comm *dev_shard, *dev_replicate; /* CUDA: NCCL over shard/replicate, what FSDP uses; else NULL */
    bool use_cuda;   /* train.backend resolved (auto: CUDA for bf16 when a GPU is visible) */
    fsdp *fs;        /* the model's parameters; frozen when lora.enabled */
    lora_spec *lora; /* lora.enabled: the adapters (train/train_lora.h); else NULL */
    fsdp *lora_fs;   /* their parameters */
    train_group groups[2]; /* the model's, then the adapters' (lora.enabled) */
    int n_groups;
    model_unit_hooks hooks, adapter_hooks; /* the model's unit protocol on the groups */
    const pair_objective *pobj; /* train.objective on pairs (train/pairs.h); NULL: sft */
    train_group ref;  /* full fine-tuning with a reference (dpo): the frozen policy start,
                       * not in the optimizer, not checkpointed (rebuilt at resume) */
    fsdp *ref_fs;     /* ref.fs; NULL without one (sft; LoRA: the base with adapters off) */
    model_unit_hooks ref_hooks;
    int rows_per_sample; /* model rows per loader sample: 1, or 2 for pairs */
    optimizer *opt;  /* over the trainable groups' shards */
    model *mdl;
    loader *train_loader, *eval_loader;
    metrics_writer *metrics;
    bool synthetic;  /* bench: random tokens instead of a loader */
    uint32_t *inputs; /* grad_accum x micro_batch x rows_per_sample x seq_len */
    int32_t *targets;
    int step;        /* last completed optimizer step */
    int n_skipped;   /* steps skipped for non-finite values */
    int saved_step;  /* step of the last checkpoint saved or resumed from; -1 none */
    bool stop_agreed; /* every rank returns the same error at the same point
                       * (preemption, train.nonfinite = fatal, a failed
                       * checkpoint): no MPI_Abort needed */
    int report_rank;  /* with stop_agreed: the rank that prints the error
                       * (the lowest failing one; 0 when every rank has it) */
    int run_start_step; /* the step this process started (or resumed) at */
    double run_start_time; /* sl_now() at the first step of this process */
    double best_eval_loss; /* lowest eval loss so far (NaN: none) */
    double last_eval_loss; /* the eval loss at last_eval_step (NaN: none) */
    double eval_metrics[PAIR_MAX_METRICS]; /* pair objectives: the last eval's (pobj's names) */
    int64_t eval_pairs; /* pair objectives: the last eval's counted pairs */
    int last_eval_step;
    bool eval_clamp_warned; /* the eval set is smaller than train.eval_batches (said once) */
    char tokenizer_hash[32]; /* of data.train's shards ("" for synthetic data) */
    train_faults faults;
    double flops_per_token;
    double peak_flops; /* device peak for MFU; 0 when unknown */
} train_job;

typedef struct {
    double loss;        /* mean over the step's non-ignored targets */
    double grad_norm;
    double clip_factor; /* the gradients' scale in the update (clip_grad_norm_'s;
                         * 1: not clipped); 0 when skipped */
    double lr;
    double seconds;
    double exposed_comm_s;
    int64_t tokens;     /* non-ignored targets in the global batch */
    bool skipped;
    /* pair objectives (train/pairs.h): the loss is the mean over the global
     * batch's pairs; metrics (pobj->metric_names) are global means */
    int64_t pairs;
    int n_metrics;
    double metrics[PAIR_MAX_METRICS];
} train_step_result;

/* Whether cfg trains on the CUDA backend: train.backend = cuda, or auto with
 * train.dtype = bf16 when di (device_info_query) sees a GPU. */
bool train_uses_cuda(const sl_config *cfg, const device_info *di);

/* Synthetic tokens (bench; benchmarks/peers/torch_step.py computes the
 * same): global row g of the run (g = step * global_batch + the row's index
 * in the step's global batch, data/loader.h order) is the (T+1)-token window
 *     tok[t] = splitmix64(seed * 0x9E3779B97F4A7C15 + g * (T+1) + t) mod V,
 * inputs positions 0..T-1, targets 1..T; rows first_row .. first_row+rows-1
 * into inputs/targets (rows x T each). The same global batch at every world
 * size. */
void train_synthetic_tokens(uint64_t seed, int64_t first_row, int rows, int T, int V, uint32_t *inputs,
                            int32_t *targets);

/* Every rank learns whether any rank failed (collective): a failing rank
 * keeps its error; the others get one naming the lowest failing rank,
 * which j->report_rank records; sets j->stop_agreed on failure. */
sl_status train_agree(train_job *j, sl_status st);

/* Builds everything for cfg on topo. */
sl_status train_job_setup(train_job *j, sl_config *cfg, topology *topo, const train_setup_opts *o);
/* One optimizer step on the next batch (data.train or synthetic; collective). */
sl_status train_job_step(train_job *j, train_step_result *r);
/* One optimizer step on this rank's part of a global batch: inputs/targets
 * hold its train.grad_accum micro-batches (micro_batch x seq_len each; pair
 * objectives: 2 x micro_batch rows, chosen and rejected of each pair), as
 * the loader would give them (collective). */
sl_status train_step_batch(train_job *j, const uint32_t *inputs, const int32_t *targets,
                           train_step_result *r);
/* Mean loss over eval_batches global batches of data.eval (collective).
 * Pair objectives: the mean pair loss, *tokens the pairs counted, and
 * j->eval_metrics the mean metrics. */
sl_status train_job_eval(train_job *j, double *loss, int64_t *tokens);
/* Gathers the model (collective) and writes it on rank 0 as a Hugging Face
 * folder (with the tokenizer hand-off of data.tokenizer), or the PEFT
 * adapter folder of a LoRA run. */
sl_status train_job_export(train_job *j, const char *dir);
/* Writes the tokenizer half of a Hugging Face export of data.tokenizer into
 * dir (data/handoff.h: tokenizer.json with the chat markers prepare
 * registered, tokenizer_config.json, generation_config.json; GPT-2 and
 * tiktoken files copied unchanged); nothing when data.tokenizer is unset.
 * Rank 0's job. */
sl_status train_copy_tokenizer(const sl_config *c, const char *dir);
/* The whole `shardlm train` loop, with logging, eval and export. */
sl_status train_job_run(train_job *j);
void train_job_teardown(train_job *j);

#endif
