/* parallel/fsdp.h: fully sharded data parallelism over a model's units.
 *
 * defines: fsdp, fsdp_opts, fsdp_phase, fsdp_unit_state, fsdp_unit_shard,
 *          fsdp_buf, fsdp_init_fn, fsdp_create, fsdp_destroy, fsdp_prefetch,
 *          fsdp_acquire, fsdp_release, fsdp_grad_buffer, fsdp_grads_ready,
 *          fsdp_init_params, fsdp_load_unit, fsdp_gather_unit,
 *          fsdp_begin_step, fsdp_begin_micro, fsdp_finish_grads,
 *          fsdp_params_changed, fsdp_shard, fsdp_shard_read, fsdp_shard_write,
 *          fsdp_padded_numel, fsdp_n_units, fsdp_unit_state_of,
 *          fsdp_exposed_comm_s, fsdp_reset_comm_timer, fsdp_comm_only_step
 *
 * FSDP knows units as sizes, not as model types (DESIGN section 1): the
 * caller gives the numel of each unit; which model the units belong to, how
 * they are initialized (fsdp_init_fn) and which elements decay (optim/) are
 * the caller's. train/ composes an instance with the model (its unit hooks
 * call fsdp_prefetch/acquire/release/grad_buffer/grads_ready) and with the
 * optimizer (fsdp_shard lists the shards optim_step updates).
 *
 * Each unit u (numel N_u) is padded to P_u = ceil(N_u / k) * k
 * with k = the shard group size, and rank r of the group owns elements
 * [r L_u, (r+1) L_u) with L_u = P_u / k (elements past N_u are padding that
 * stays zero). Per unit a rank owns: the fp32 master parameter shard, the
 * AdamW m and v shards, the fp32 gradient shard, and the shard in the
 * backend's act dtype (be->act_dtype) that the all-gathers move and the
 * model computes with. On the CPU backend (act F32) the act shard IS the
 * master (one buffer, no copy). With act BF16 (CUDA) it is a separate bf16
 * shard that ops_adamw writes through its param_copy on every update and
 * that is cast from the master after init, load and checkpoint resume; the
 * all-gathers then move half the bytes (SL_DTYPE_BF16) while the
 * reduce-scatters and all-reduces of gradients stay F32.
 *
 * Full-size buffers (MEM_CATEGORY_GATHERED) exist only for the units being
 * computed: a pool of gathered units (parallel.gather_buffers slots of max
 * P_u elements of the act dtype; SHARD_GRAD_OP instead keeps one per unit
 * from forward to backward) and, for gradients, by parallel.grad_sync:
 *   per_microstep (default)  a pool of FSDP_GRAD_SLOTS (3) F32 buffers of max
 *     P_u: a unit's backward accumulates into a zeroed slot, grads_ready
 *     reduce-scatters it (async) into the unit's shard (the first micro-step
 *     writes the shard, later ones add a shard-size output into it), and the
 *     slot is reused once that completes (oldest first). Gradient memory per
 *     rank: 4 bytes x sum L_u (the shards) + 3 x 4 x max P_u; a reduce-scatter
 *     per unit per micro-step. With k = 1 (world 1, NO_SHARD) the shard is
 *     the whole unit and the backward accumulates into it directly.
 *   per_step (FSDP's no_sync)  one F32 buffer of P_u per unit for the whole
 *     run, accumulated over the micro-steps and reduce-scattered once, on the
 *     last micro-step: fewer collectives with gradient accumulation, 4 bytes
 *     per parameter on every rank whatever the world size.
 * params, grads and optimizer (the other categories) are exactly the
 * shards: per unit L_u elements of the master, the act copy (when not the
 * master), m, v and the gradient shard.
 *
 * Device residency. Every buffer above is backend memory (device memory on
 * CUDA) and every access goes through the backend: backend_memcpy for host
 * staging (fsdp_init_fn writes host memory, which is uploaded;
 * fsdp_load_unit, fsdp_gather_unit, fsdp_shard_read/_write stage through
 * host buffers), backend_memset_zero for zeroing, ops_* for the rest.
 * Collectives on device buffers rely on the comm ordering itself against
 * be->stream (the NCCL backend does, with events).
 *
 * Modes (parallel/plan.h decides the groups):
 *   FULL_SHARD    gather a unit for forward, free it, gather again for backward
 *   SHARD_GRAD_OP keep units gathered from forward to their backward
 *   NO_SHARD      k = 1: every rank holds everything; gradients all-reduced
 *   HYBRID        FULL_SHARD inside the shard group (a node), then the
 *                 gradient shards are all-reduced across the replicate group
 *
 * Unit states (fsdp_unit_state): SHARDED (only this rank's shard is
 * here), GATHERING (an all-gather into a pool slot, or the kept buffer of
 * SHARD_GRAD_OP, is in flight), GATHERED (the full unit is readable there).
 * prefetch and acquire move SHARDED -> GATHERING -> GATHERED, release moves
 * back to SHARDED (SHARD_GRAD_OP: only after the backward), and
 * fsdp_params_changed drops every GATHERED copy, which after an update would
 * serve stale parameters. With k = 1 nothing is gathered: acquire returns the
 * shard itself.
 *
 * Overlap. The caller (train/'s unit hooks, in the model's fixed call order)
 * turns prefetch(u) into an async all-gather into a free pool slot
 * (skipped when none is free, and when only one is and no prefetched unit
 * is waiting for its acquire: that slot is the one the unit acquired next
 * needs, e.g. with 2 slots and a tied head holding unit 0) and grads_ready(u) on the last micro-step into
 * an async reduce-scatter, both progressed by the comm thread while the main
 * thread computes the next unit. Every decision depends only on the call
 * order, never on timing, so every rank submits the same collectives in the
 * same order. fsdp_exposed_comm_s counts the time the main thread spent
 * blocked on communication; fsdp_comm_only_step replays one step's
 * collectives without compute, which is the total comm time to compare.
 * On the NCCL comm (CUDA backend) a wait only makes the compute stream wait
 * (comm.h), so the main thread almost never blocks and fsdp_exposed_comm_s
 * stays near 0 whatever the overlap: there it is not a measure of exposed
 * communication (that needs a device-side timeline, e.g. Nsight Systems).
 * fsdp_comm_only_step synchronizes the backend, so its total is valid.
 *
 * Frozen instances (a LoRA base, DESIGN section 5). With opts.frozen the
 * instance holds parameter shards only: no m, v or gradient buffers;
 * fsdp_grad_buffer/fsdp_grads_ready are errors, fsdp_begin_step,
 * fsdp_begin_micro and fsdp_finish_grads do nothing else than count
 * micro-steps, and its comm-only step has no reduce-scatters. A LoRA run is
 * two instances on the same comms, the frozen base and the trainable
 * adapters, driven uniformly by train/ (its parameter groups).
 * A frozen instance keeps no fp32 master when the act dtype is not F32: its
 * units hold only the act shard (bf16 on CUDA, half the memory), written
 * from host fp32 through a temporary device buffer at init/load;
 * fsdp_shard().param is then NULL and fsdp_gather_unit returns the act
 * values widened to fp32. With act F32 the act shard is the master anyway.
 *
 * Ownership: fsdp owns every buffer above (backend memory recorded in
 * be->acct: params/grads/optimizer/comm categories). unit_numel, be, the comms
 * and opts' pointers are borrowed and must outlive it. The comms must move
 * the backend's memory: the MPI comm moves host memory (CPU backend), the
 * NCCL comm device memory (CUDA backend).
 */
#ifndef SL_PARALLEL_FSDP_H
#define SL_PARALLEL_FSDP_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "parallel/comm.h"
#include "parallel/plan.h"
#include "runtime/status.h"

typedef struct fsdp fsdp;

typedef struct {
    const int64_t *unit_numel; /* n_units entries: N_u */
    int n_units;
    sl_backend *be;
    const parallel_plan *plan;
    comm *shard_comm;     /* the group a unit is sharded over (size plan->shard_size) */
    comm *replicate_comm; /* across shard groups; NULL when plan->replicate_size == 1 */
    int gather_buffers;   /* pool slots (>= 2) */
    bool overlap;         /* false: every collective is waited at once */
    bool frozen;          /* parameters only: no optimizer state, no grads (LoRA base) */
    bool grad_sync_per_step; /* parallel.grad_sync = per_step: full-size gradients accumulate
                              * over the micro-steps, one reduce-scatter per step (no_sync) */
} fsdp_opts;

/* Which pass an acquire or release belongs to (SHARD_GRAD_OP keeps a unit
 * gathered from its forward to its backward). */
typedef enum { FSDP_PHASE_FORWARD = 0, FSDP_PHASE_BACKWARD } fsdp_phase;

typedef enum { FSDP_UNIT_SHARDED = 0, FSDP_UNIT_GATHERING, FSDP_UNIT_GATHERED } fsdp_unit_state;

/* Writes elements [start, start + count) of unit `unit`'s initial values
 * into out (host memory, count floats). */
typedef sl_status (*fsdp_init_fn)(void *ctx, int unit, int64_t start, int64_t count, float *out);

/* This rank's shard of one unit. */
typedef struct {
    int64_t start;   /* first element of the unit owned here */
    int64_t len;     /* owned elements, padding included (L_u) */
    int64_t valid;   /* owned elements below N_u (<= len) */
    float *param;    /* len floats each, backend memory: the fp32 master (NULL: frozen, act != F32) */
    void *param_act; /* len elements of be->act_dtype (== param when that is F32) */
    float *m;
    float *v;
    float *grad;
} fsdp_unit_shard;

/* The fp32 shard buffers fsdp_shard_read/_write move. */
typedef enum { FSDP_BUF_PARAM = 0, FSDP_BUF_M, FSDP_BUF_V, FSDP_BUF_GRAD } fsdp_buf;

sl_status fsdp_create(const fsdp_opts *o, fsdp **out);
void fsdp_destroy(fsdp *f); /* NULL is a no-op */

/* ---- the unit protocol (the model's hooks, in its call order) ---- */

/* Hint that unit will be acquired after the current one: starts its
 * all-gather into a free pool slot (nothing when none is free, when the
 * last free one may be the current unit's, when k = 1 or overlap is off). */
sl_status fsdp_prefetch(fsdp *f, int unit, fsdp_phase phase);
/* The full unit in be->act_dtype (backend memory), valid until release:
 * waits for (or starts and waits for) its all-gather. */
sl_status fsdp_acquire(fsdp *f, int unit, fsdp_phase phase, const void **params);
sl_status fsdp_release(fsdp *f, int unit, fsdp_phase phase);
/* The unit's full-size fp32 gradient buffer to accumulate into (+=). */
sl_status fsdp_grad_buffer(fsdp *f, int unit, float **grads);
/* This micro-step's contributions to unit's gradient are in: on the last
 * micro-step, starts its reduce-scatter (and HYBRID's all-reduce). */
sl_status fsdp_grads_ready(fsdp *f, int unit);

/* Init of this rank's shards: fn writes each owned range (a deterministic fn
 * gives the same weights at every world size and mode). */
sl_status fsdp_init_params(fsdp *f, fsdp_init_fn fn, void *ctx);
/* Sets unit u's shards from the full unit (host, N_u floats, e.g. from a
 * Hugging Face import). Local: every rank passes the same data. */
sl_status fsdp_load_unit(fsdp *f, int unit, const float *full);
/* Collective over the shard group: writes the full unit (N_u floats, host)
 * into full on every rank. */
sl_status fsdp_gather_unit(fsdp *f, int unit, float *full);

/* Starts an optimizer step of n_micro micro-steps: zeroes the gradients. */
sl_status fsdp_begin_step(fsdp *f, int n_micro);
/* Before micro-step i (0-based) of the step. */
sl_status fsdp_begin_micro(fsdp *f, int i);
/* After the last micro-step: waits for the reduce-scatters (and HYBRID's
 * all-reduces); the gradient shards then hold the step's summed gradient. */
sl_status fsdp_finish_grads(fsdp *f);
/* The shards' parameters were updated in place (the optimizer step): drops
 * gathered copies (SHARD_GRAD_OP keeps units gathered across calls). */
void fsdp_params_changed(fsdp *f);

/* This rank's shard of unit u (backend memory: do not dereference on the
 * host; use fsdp_shard_read/_write); m, v and grad are NULL on a frozen
 * instance. */
fsdp_unit_shard fsdp_shard(fsdp *f, int unit);
/* Copies shard buffer `which` of unit u (len floats, padding included)
 * to/from host memory (checkpoints, non-finite checks, tests). Writing
 * FSDP_BUF_PARAM also refreshes the act shard and drops gathered copies.
 * SL_ERR_INVALID for a buffer a frozen instance does not have. */
sl_status fsdp_shard_read(fsdp *f, int unit, fsdp_buf which, float *host);
sl_status fsdp_shard_write(fsdp *f, int unit, fsdp_buf which, const float *host);
/* Padded size P_u of unit u; number of units; unit u's state. */
int64_t fsdp_padded_numel(const fsdp *f, int unit);
int fsdp_n_units(const fsdp *f);
fsdp_unit_state fsdp_unit_state_of(const fsdp *f, int unit);

/* Seconds the main thread waited on communication since the last reset. */
double fsdp_exposed_comm_s(const fsdp *f);
void fsdp_reset_comm_timer(fsdp *f);
/* Runs the collectives of one training step (gathers for forward and
 * backward as FULL_SHARD/SHARD_GRAD_OP would, the reduce-scatters, HYBRID's
 * all-reduces) back to back with no compute, on zeroed buffers of its own;
 * *seconds = wall time of the collectives and the backend_synchronize that
 * completes them (the buffers are allocated, zeroed and the backend
 * synchronized before the clock starts, and freed after it stops).
 * Collective. */
sl_status fsdp_comm_only_step(fsdp *f, double *seconds);

#endif
