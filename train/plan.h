/* train/plan.h: the memory plan (DESIGN section 11): what a training run
 * needs per rank before it runs, and the pre-flight check that refuses one
 * that cannot fit.
 *
 * defines: plan_gpu, plan_device, plan_device_get, plan_device_parse,
 *          plan_opts, plan_result, plan_compute, plan_max_micro_batch,
 *          plan_host_limit, plan_limit, plan_preflight,
 *          PLAN_GPU_RESERVE_BYTES, PLAN_CPU_RUNTIME_BYTES
 *
 * Memory. plan_compute mirrors, byte for byte, what the training job
 * allocates through the backend and records in the memory accountant
 * (runtime/mem.h), by the accountant's categories, on one rank:
 *   params, grads, optimizer  each FSDP group's shards (parallel/fsdp.h:
 *       per unit L_u = ceil(N_u / k) elements, k the shard group size; the
 *       fp32 master, plus the act-dtype copy when the act dtype is not F32;
 *       m and v; the fp32 gradient shard; a frozen LoRA base holds the
 *       parameter shard only, bf16 alone on CUDA)
 *   gathered   the full-size buffers: parallel.gather_buffers pool slots of
 *       max P_u act elements (SHARD_GRAD_OP: one P_u buffer per unit
 *       instead), and by parallel.grad_sync the 3-slot F32 gradient pool of
 *       max P_u (per_microstep) or a P_u F32 buffer per unit (per_step);
 *       nothing at k = 1
 *   activations   model_activation_plan (model/model.h: the same sizing
 *       pass as model_create's arena, plus model_attach_lora's), with and
 *       without train.recompute; logits/cross-entropy scratch is part of it
 *   comm       the gradient pool's shard-size receive buffers (3 x max L_u
 *       F32) and each MPI communicator's reduction scratch (8 MiB: world,
 *       plus the shard/replicate splits of NO_SHARD and HYBRID; host memory,
 *       so outside the device total on CUDA), NCCL's barrier words
 *   workspace  CUDA only: the cuBLASLt workspace (32 MiB), the backend's
 *       flag word and its growable scratch (the attention backward's
 *       (B H T) F32 rows, +25%); the CPU backend has none
 * What the accountant does not see is stated separately: on a GPU the CUDA
 * context, cuBLASLt and NCCL internals (PLAN_GPU_RESERVE_BYTES, subtracted
 * from the device memory), on the CPU the runtime (libraries, MPI, OpenBLAS
 * buffers, the batch; PLAN_CPU_RUNTIME_BYTES, added to the need).
 * bench's accountant peaks are compared with this in
 * tests/integration/test_plan.sh (within 5% in total; params, grads and
 * optimizer exactly).
 *
 * Time. FLOPs per token are model_layout_flops_per_token (6 N + 6 L T C, the
 * count MFU is quoted against); the FLOPs executed add a block forward with
 * recomputation (2 N_blocks + 2 L T C) and drop the frozen weights'
 * gradient GEMMs under LoRA (- 2 N, + 6 x adapter parameters). compute
 * time = executed FLOPs per rank / (MFU x peak); comm time = the bus bytes
 * of every collective of the step (nccl-tests' busbw convention: (k-1)/k of
 * an all-gather's or reduce-scatter's full size, 2 (r-1)/r of an
 * all-reduce's) / the bus bandwidth, the one within a node for the shard
 * group when it fits in a node, the one across nodes otherwise; the step is
 * max(compute, comm) (FSDP's prefetch and the async reduce-scatters overlap
 * the two). Every assumption is a field of plan_result and is printed.
 *
 * Pre-flight. plan_preflight runs in train_job_setup after the backend and
 * the comms exist and before the parameter groups allocate: the need of
 * plan_compute (with the job's topology and backend) against what this rank
 * can use: on the CPU the host memory available to the process (MemAvailable
 * and the cgroup's memory.max - memory.current, v2 or v1, divided among the
 * ranks sharing the host; RLIMIT_AS minus the address space in use), on a
 * GPU the free device memory. Collective over the world comm: every rank
 * refuses together (SL_ERR_INVALID, exit 2) with the need by category, the
 * limit and what to change. SHARDLM_NO_PREFLIGHT=1 skips it.
 */
#ifndef SL_TRAIN_PLAN_H
#define SL_TRAIN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "parallel/comm.h"
#include "parallel/plan.h"
#include "parallel/topology.h"
#include "runtime/config.h"
#include "runtime/mem.h"
#include "runtime/status.h"

#define PLAN_GPU_RESERVE_BYTES ((int64_t)1 << 30)  /* CUDA context, cuBLASLt, NCCL: outside the accountant */
#define PLAN_CPU_RUNTIME_BYTES ((int64_t)96 << 20) /* libraries, MPI, OpenBLAS: outside the accountant */

typedef enum {
    PLAN_GPU_CPU = 0,
    PLAN_GPU_A100_40G,
    PLAN_GPU_A100_80G,
    PLAN_GPU_H100,
    PLAN_GPU_H200,
    PLAN_GPU_COUNT
} plan_gpu;

/* A device kind and the defaults of its assumptions. */
typedef struct {
    const char *name;          /* --gpu value: "cpu", "a100-40g", "a100-80g", "h100", "h200" */
    const char *label;         /* what it stands for */
    bool is_gpu;               /* bf16 CUDA backend; else the CPU backend (fp32) */
    int64_t mem_bytes;         /* device memory per GPU (0: cpu, the host's is measured) */
    double peak_tflops;        /* dense bf16 datasheet (bench_device.h); cpu: per core, measured */
    double mfu;                /* default MFU */
    double busbw_node_gbps;    /* default bus bandwidth within a node */
    double busbw_cross_gbps;   /* default bus bandwidth across nodes */
    double price;              /* default USD per GPU-hour (cpu: 0) */
    const char *source;        /* where the defaults come from */
} plan_device;

const plan_device *plan_device_get(plan_gpu g);
/* "a100-80g" -> PLAN_GPU_A100_80G; SL_ERR_INVALID naming the valid ones. */
sl_status plan_device_parse(const char *name, plan_gpu *out);

typedef struct {
    int nodes, per_node;  /* world = nodes x per_node ranks (one GPU each) */
    plan_gpu gpu;
    double mfu;           /* <= 0: the device's default */
    double busbw_gbps;    /* <= 0: the device's defaults (within / across nodes) */
    double price;         /* < 0: the device's default */
    int cpu_cores;        /* cpu: cores of the host (<= 0: this machine's) */
} plan_opts;

typedef struct {
    parallel_plan plan;
    bool is_gpu;
    int64_t params_total;              /* parameters of the model (the base under LoRA) */
    int64_t lora_params;               /* adapter parameters (0 without LoRA) */
    int64_t bytes[MEM_CATEGORY_COUNT]; /* per rank, device memory on a GPU (host on the CPU) */
    int64_t total;                     /* their sum: the accountant's peak during training */
    int64_t host_bytes;                /* on a GPU: accounted host memory (MPI scratch), not in total */
    int64_t act_recompute, act_full;   /* activations with and without train.recompute */
    int64_t act_logits;                /* of the activations: logits chunk and cross-entropy scratch */
    int64_t vchunk;                    /* vocabulary columns held at once */
    int64_t shard_bytes_per_param;     /* params + grads + optimizer bytes per parameter (16 full FT on CPU) */
    /* communication per rank per step (payload = full-size buffer bytes) */
    double ag_bytes, rs_bytes, ar_bytes;
    double bus_bytes_node, bus_bytes_cross; /* nccl-tests bus bytes over the node / cross-node links */
    int64_t n_collectives;
    /* FLOPs and time */
    double flops_per_token;  /* model_layout_flops_per_token: what MFU counts */
    double flops_per_step;   /* x global tokens per step */
    double exec_flops_per_step; /* what runs: + recomputation, - frozen dW under LoRA */
    double mfu, peak_tflops, busbw_node_gbps, busbw_cross_gbps, price;
    double compute_s, comm_s, step_s, tokens_per_s, gpu_hours, cost;
} plan_result;

/* The plan of cfg (finalized) on o's world and device. */
sl_status plan_compute(const sl_config *cfg, const plan_opts *o, plan_result *r);

/* The largest train.micro_batch (up to 65536) whose total plus extra_bytes
 * stays within limit_bytes; 0 when not even 1 fits. */
sl_status plan_max_micro_batch(const sl_config *cfg, const plan_opts *o, int64_t limit_bytes, int64_t extra_bytes,
                               int *best);

/* What one rank may use on this host (CPU). */
typedef struct {
    int64_t bytes;      /* the smallest limit below; INT64_MAX when none is known */
    char why[320];      /* each limit read, e.g. "MemAvailable 11.8 GiB / 2 ranks; RLIMIT_AS ..." */
} plan_limit;

/* Host memory this process can still use, with ranks_on_host ranks sharing
 * the host's and the cgroup's memory. */
void plan_host_limit(int ranks_on_host, plan_limit *out);

/* The pre-flight check of train_job_setup (see above) for cfg on topology t
 * with the backend the job made (cuda: its device is current); collective
 * over world. */
sl_status plan_preflight(const sl_config *cfg, const topology *t, bool cuda, comm *world);

#endif
