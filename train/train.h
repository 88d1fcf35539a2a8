/* launcher/train.h: the training job, composed in one place.
 *
 * defines: train_job, train_job_setup, train_job_run, train_job_teardown,
 *          train_step_result, train_job_eval, train_uses_cuda
 *
 * This is where the modules meet (DESIGN section 8):
 *   config -> topology -> parallel plan -> layout -> backend (train.backend:
 *   CPU fp32, or CUDA bf16 on the GPU of the local rank) -> comms (MPI; on
 *   CUDA the FSDP groups also get NCCL comms over them)
 *   -> fsdp shards (init or Hugging Face import) -> loader -> model
 *   -> resume (train/train_ckpt.h over ckpt/ckpt.h: checkpoint.resume / --resume)
 *   loop: preemption check (SIGTERM/SIGUSR1 on any rank: save, exit 75)
 *         -> grad_accum micro-batches -> forward/backward through the FSDP hooks
 *         -> reduce-scatter -> loss/non-finite flags all-gather -> clip +
 *         AdamW on shards (or skip the step everywhere) -> step line,
 *         metrics.jsonl, TensorBoard -> eval -> checkpoint every N steps
 *   end:  checkpoint, eval, export of the final model (Hugging Face folder).
 * `shardlm train` and `shardlm bench` (synthetic data) both drive it.
 * Every rank runs the same code; only rank 0 prints the step line and writes
 * metrics and exports.
 */
#ifndef SL_LAUNCHER_TRAIN_H
#define SL_LAUNCHER_TRAIN_H

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

typedef struct {
    sl_config *cfg; /* borrowed */
    topology *topo; /* borrowed */
    parallel_plan plan;
    mem_accountant acct;
    model_layout *layout;
    sl_backend *be;
    comm *world, *shard, *replicate; /* MPI (host memory); world carries host-side control */
    comm *dev_shard, *dev_replicate; /* CUDA: NCCL over shard/replicate, what FSDP uses; else NULL */
    bool use_cuda;   /* train.backend resolved (auto: CUDA for bf16 when a GPU is visible) */
    fsdp *fs;        /* frozen when lora.enabled (launcher/train_lora.h) */
    lora_spec *lora; /* lora.enabled: the adapters and their fsdp; else NULL */
    fsdp *lora_fs;
    model *mdl;
    loader *train_loader, *eval_loader;
    metrics_writer *metrics;
    bool synthetic;  /* bench: random tokens instead of a loader */
    uint32_t *inputs; /* grad_accum x micro_batch x seq_len */
    int32_t *targets;
    int step;        /* last completed optimizer step */
    int n_skipped;   /* steps skipped for non-finite values */
    int64_t optim_steps; /* updates AdamW applied (its bias-correction step
                          * count; a skipped step does not advance it):
                          * saved in checkpoints and restored on resume */
    int saved_step;  /* step of the last checkpoint saved or resumed from; -1 none */
    bool stop_agreed; /* every rank returns the same error at the same point
                       * (preemption, train.nonfinite = fatal, a failed
                       * checkpoint): no MPI_Abort needed */
    char tokenizer_hash[32]; /* of data.train's shards ("" for synthetic data) */
    /* Test-only fault injection (README "Testing hooks"), from the
     * environment at setup; -1 = off. */
    int fault_nan_rank, fault_nan_step; /* SHARDLM_FAULT_NAN_GRAD=rank:step */
    int fault_nan_loss_rank, fault_nan_loss_step; /* SHARDLM_FAULT_NAN_LOSS=rank:step */
    int fault_hang_rank, fault_hang_step; /* SHARDLM_FAULT_HANG=rank:step */
    int fault_kill_save_step;           /* SHARDLM_FAULT_KILL_IN_SAVE=step */
    model_unit_hooks fault_hooks;       /* SHARDLM_FAULT_HANG: wraps fsdp_hooks(fs) */
    double flops_per_token;
    double peak_flops; /* device peak for MFU; 0 when unknown */
} train_job;

typedef struct {
    double loss;        /* mean over the step's non-ignored targets */
    double grad_norm;
    double lr;
    double seconds;
    double exposed_comm_s;
    int64_t tokens;     /* non-ignored targets in the global batch */
    bool skipped;
} train_step_result;

/* Whether cfg trains on the CUDA backend: train.backend = cuda, or auto with
 * train.dtype = bf16 when di (device_info_query) sees a GPU. */
bool train_uses_cuda(const sl_config *cfg, const device_info *di);

/* Builds everything for cfg on topo. synthetic = true draws random tokens
 * (bench) instead of reading data.train. */
sl_status train_job_setup(train_job *j, sl_config *cfg, topology *topo, bool synthetic);
/* One optimizer step (collective). */
sl_status train_job_step(train_job *j, train_step_result *r);
/* Mean loss over eval_batches global batches of data.eval (collective). */
sl_status train_job_eval(train_job *j, double *loss, int64_t *tokens);
/* The whole `shardlm train` loop, with logging, eval and export. */
sl_status train_job_run(train_job *j);
void train_job_teardown(train_job *j);

#endif
