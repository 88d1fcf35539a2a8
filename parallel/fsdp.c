#include "parallel/fsdp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/log.h"

typedef struct {
    int64_t numel;  /* N_u */
    int64_t padded; /* P_u */
    int64_t len;    /* L_u = P_u / k */
    int64_t start;  /* r * L_u */
    int64_t valid;  /* owned elements below N_u */
    float *param;   /* len F32: the master; NULL on a frozen instance with act != F32 */
    void *param_act; /* len act dtype: what is gathered; == param when act is F32 */
    float *m, *v, *grad_shard;         /* len each: the step's gradient shard */
    float *grad_full;                  /* padded: per_step's full-size accumulation, else NULL */
    int grad_slot;                     /* per-microstep: gradient pool slot held now, -1 none */
    int last_slot;                     /* its slot whose reduce-scatter ends the step, -1 none */
    void *kept;         /* SHARD_GRAD_OP: gathered from forward to backward (padded, act) */
    fsdp_unit_state state;
    int slot;           /* pool slot of a GATHERING/GATHERED unit (not SHARD_GRAD_OP), else -1 */
    comm_work *gather;  /* the all-gather of a GATHERING unit */
    comm_work *rs;      /* per_step: pending reduce-scatter (last micro-step) */
    comm_work *ar;      /* pending replicate all-reduce (HYBRID, NO_SHARD) */
    bool ready;         /* grads_ready seen on this step's last micro-step */
    bool prefetched;    /* its gather was started by fsdp_prefetch and it is not acquired yet */
} fsdp_unit;

/* A gradient pool slot (per-microstep sync, k > 1): the full-size buffer a
 * unit's backward accumulates into, then the source of its reduce-scatter
 * until that completes. */
typedef struct {
    float *full;        /* max P_u F32 (MEM_CATEGORY_GATHERED) */
    float *recv;        /* max L_u F32 (MEM_CATEGORY_COMM): the reduce-scatter output of micro-steps
                         * after the first, added into the unit's shard when it completes */
    int unit;           /* holder, -1 free */
    bool add_recv;      /* on completion: grad_shard += recv (else it wrote grad_shard itself) */
    comm_work *rs;      /* in flight; NULL when not submitted */
} grad_slot;

#define FSDP_GRAD_SLOTS 3 /* a unit held across the backward (tied embeddings), one computing, one reducing */

struct fsdp {
    fsdp_opts o;
    int k, r;          /* shard group size and rank */
    sl_dtype act;      /* be->act_dtype: gathered parameters */
    size_t esz;        /* its size */
    sl_dtype act_comm; /* the same as a comm dtype */
    bool act_is_master; /* act == F32: param_act is the master itself */
    int n_units;
    fsdp_unit *units;
    int n_slots;
    int64_t slot_numel;
    void **slots;       /* act dtype, slot_numel each */
    int *slot_owner;   /* unit or -1 */
    bool per_step;      /* grad_sync per_step (full-size accumulation), else per micro-step */
    grad_slot gslots[FSDP_GRAD_SLOTS];
    int n_gslots;       /* 0 unless per micro-step with k > 1 */
    int64_t gslot_padded, gslot_len;
    int fifo[FSDP_GRAD_SLOTS]; /* submitted slots, oldest first: completed in this order */
    int n_fifo;
    int n_micro, micro;
    int next_ar_unit;  /* replicate all-reduces are submitted in descending unit order */
    double exposed_s;
};

static bool last_micro(const fsdp *f) { return f->micro == f->n_micro - 1; }

static sl_status wait_work(fsdp *f, comm_work **w) {
    if (!*w)
        return SL_OK;
    double t0 = sl_now();
    sl_status st = comm_work_wait(*w, 0);
    f->exposed_s += sl_now() - t0;
    *w = NULL;
    return st;
}

static sl_status alloc_f32(fsdp *f, mem_category cat, int64_t n, float **out) {
    void *p = NULL;
    SL_TRY(backend_alloc(f->o.be, cat, (size_t)n * sizeof(float), &p));
    *out = p;
    return SL_OK;
}

static void free_f32(fsdp *f, mem_category cat, float *p, int64_t n) {
    if (p)
        backend_free(f->o.be, cat, p, (size_t)n * sizeof(float));
}

static sl_status alloc_act(fsdp *f, mem_category cat, int64_t n, void **out) {
    return backend_alloc(f->o.be, cat, (size_t)n * f->esz, out);
}

static void free_act(fsdp *f, mem_category cat, void *p, int64_t n) {
    if (p)
        backend_free(f->o.be, cat, p, (size_t)n * f->esz);
}

/* ---- the unit protocol ---- */

static sl_status take_slot(fsdp *f, int unit, int *slot) {
    for (int s = 0; s < f->n_slots; s++) {
        if (f->slot_owner[s] < 0) {
            f->slot_owner[s] = unit;
            *slot = s;
            return SL_OK;
        }
    }
    *slot = -1;
    return SL_OK;
}

static void *gather_dst(fsdp *f, fsdp_unit *u) {
    if (f->o.plan->mode == FSDP_MODE_SHARD_GRAD_OP)
        return u->kept;
    return u->slot >= 0 ? f->slots[u->slot] : NULL;
}

/* SHARDED -> GATHERING: starts the all-gather of unit into a pool slot (or
 * its kept buffer); *started false when no slot is free. */
static sl_status start_gather(fsdp *f, int unit, bool *started) {
    fsdp_unit *u = &f->units[unit];
    *started = false;
    if (f->o.plan->mode != FSDP_MODE_SHARD_GRAD_OP) {
        SL_TRY(take_slot(f, unit, &u->slot));
        if (u->slot < 0)
            return SL_OK;
    }
    SL_TRY(comm_all_gather_async(f->o.shard_comm, u->param_act, gather_dst(f, u), (size_t)u->len,
                                 f->act_comm, &u->gather));
    u->state = FSDP_UNIT_GATHERING;
    *started = true;
    return SL_OK;
}

/* GATHERED or GATHERING -> SHARDED (the pool slot returns to the pool). */
static void drop_gathered(fsdp *f, fsdp_unit *u) {
    u->prefetched = false;
    if (u->slot >= 0) {
        f->slot_owner[u->slot] = -1;
        u->slot = -1;
    }
    u->state = FSDP_UNIT_SHARDED;
}

sl_status fsdp_prefetch(fsdp *f, int unit, fsdp_phase phase) {
    (void)phase;
    if (f->k == 1 || !f->o.overlap || unit < 0 || unit >= f->n_units)
        return SL_OK;
    if (f->units[unit].state != FSDP_UNIT_SHARDED)
        return SL_OK;
    /* The caller prefetches the next unit before it acquires the current
     * one (model order: prefetch(u + 1), acquire(u)). The last free slot is
     * the current unit's unless a prefetched unit, the one acquired next, is
     * already waiting in a slot: taking it would exhaust the pool (a tied
     * head keeps unit 0 gathered through the whole pass, so with 2 slots the
     * prefetch of u + 1 would otherwise take what unit u needs). */
    if (f->o.plan->mode != FSDP_MODE_SHARD_GRAD_OP) {
        int free_slots = 0;
        bool waiting = false;
        for (int s = 0; s < f->n_slots; s++)
            free_slots += f->slot_owner[s] < 0;
        for (int i = 0; i < f->n_units; i++)
            waiting = waiting || f->units[i].prefetched;
        if (free_slots <= 1 && !waiting)
            return SL_OK;
    }
    bool started;
    SL_TRY(start_gather(f, unit, &started));
    f->units[unit].prefetched = started;
    return SL_OK;
}

sl_status fsdp_acquire(fsdp *f, int unit, fsdp_phase phase, const void **params) {
    (void)phase;
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units, "fsdp_acquire: unit %d of %d", unit, f->n_units);
    fsdp_unit *u = &f->units[unit];
    if (f->k == 1) {
        *params = u->param_act;
        return SL_OK;
    }
    if (u->state == FSDP_UNIT_SHARDED) {
        bool started;
        SL_TRY(start_gather(f, unit, &started));
        if (!started)
            return sl_errorf(SL_ERR_INVALID,
                             "FSDP gather pool exhausted acquiring unit %d (%d slots, all held); "
                             "raise parallel.gather_buffers",
                             unit, f->n_slots);
    }
    SL_TRY(wait_work(f, &u->gather));
    u->state = FSDP_UNIT_GATHERED;
    u->prefetched = false;
    *params = gather_dst(f, u);
    return SL_OK;
}

sl_status fsdp_release(fsdp *f, int unit, fsdp_phase phase) {
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units, "fsdp_release: unit %d of %d", unit, f->n_units);
    if (f->k == 1)
        return SL_OK;
    /* SHARD_GRAD_OP keeps a unit from its forward to its backward */
    if (f->o.plan->mode == FSDP_MODE_SHARD_GRAD_OP && phase == FSDP_PHASE_FORWARD)
        return SL_OK;
    drop_gathered(f, &f->units[unit]);
    return SL_OK;
}

/* Completes the oldest submitted reduce-scatter of the gradient pool: waits
 * for it, adds its output into the unit's shard (micro-steps after the
 * first) and frees the slot. FIFO order keeps every unit's additions in
 * micro-step order. */
static sl_status complete_oldest(fsdp *f) {
    grad_slot *g = &f->gslots[f->fifo[0]];
    SL_TRY(wait_work(f, &g->rs));
    fsdp_unit *u = &f->units[g->unit];
    if (g->add_recv) {
        sl_backend *be = f->o.be;
        sl_tensor sh = ops_view1(be, SL_DTYPE_F32, u->grad_shard, u->len);
        SL_TRY(ops_add(be, sh, sh, ops_view1(be, SL_DTYPE_F32, g->recv, u->len)));
    }
    if (u->last_slot == f->fifo[0])
        u->last_slot = -1;
    g->unit = -1;
    memmove(f->fifo, f->fifo + 1, sizeof f->fifo[0] * (size_t)(f->n_fifo - 1));
    f->n_fifo--;
    return SL_OK;
}

/* A free pool slot for unit, zeroed over its P_u elements; completes the
 * oldest reduce-scatters while none is free. */
static sl_status take_grad_slot(fsdp *f, int unit) {
    fsdp_unit *u = &f->units[unit];
    for (;;) {
        for (int s = 0; s < f->n_gslots; s++) {
            if (f->gslots[s].unit < 0) {
                f->gslots[s].unit = unit;
                u->grad_slot = s;
                return backend_memset_zero(f->o.be, f->gslots[s].full, (size_t)u->padded * sizeof(float));
            }
        }
        if (f->n_fifo == 0)
            return sl_errorf(SL_ERR_INTERNAL, "fsdp: gradient pool exhausted for unit %d (%d slots held by units "
                                              "still computing)", unit, f->n_gslots);
        SL_TRY(complete_oldest(f));
    }
}

sl_status fsdp_grad_buffer(fsdp *f, int unit, float **grads) {
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units, "fsdp_grad_buffer: unit %d of %d", unit, f->n_units);
    if (f->o.frozen)
        return sl_errorf(SL_ERR_INTERNAL, "fsdp: gradients of unit %d requested from a frozen instance", unit);
    fsdp_unit *u = &f->units[unit];
    if (f->per_step) {
        *grads = u->grad_full;
        return SL_OK;
    }
    if (f->k == 1) { /* the shard is the whole unit: accumulate in place */
        *grads = u->grad_shard;
        return SL_OK;
    }
    if (u->grad_slot < 0)
        SL_TRY(take_grad_slot(f, unit));
    *grads = f->gslots[u->grad_slot].full;
    return SL_OK;
}

/* Replicate all-reduces go out in descending unit order (the order
 * grads_ready arrives in), each once the unit's shard holds the step's sum
 * (its last reduce-scatter done and added); submitted opportunistically here
 * and completed in fsdp_finish_grads. The set submitted at any moment
 * depends on timing, but the ORDER never does. */
static sl_status submit_ready_all_reduces(fsdp *f, bool block) {
    if (!f->o.replicate_comm)
        return SL_OK;
    while (f->next_ar_unit >= 0) {
        fsdp_unit *u = &f->units[f->next_ar_unit];
        if (!u->ready)
            return SL_OK;
        while (u->last_slot >= 0) { /* per micro-step: its reduce-scatter is in the pool's FIFO */
            if (!block) {
                bool done = false;
                SL_TRY(comm_work_test(f->gslots[f->fifo[0]].rs, &done));
                if (!done)
                    return SL_OK;
            }
            SL_TRY(complete_oldest(f));
        }
        if (u->rs) { /* per_step */
            if (!block) {
                bool done = false;
                SL_TRY(comm_work_test(u->rs, &done));
                if (!done)
                    return SL_OK;
            }
            SL_TRY(wait_work(f, &u->rs));
        }
        SL_TRY(comm_all_reduce_async(f->o.replicate_comm, u->grad_shard, u->grad_shard,
                                     (size_t)u->len, SL_DTYPE_F32, COMM_REDOP_SUM, &u->ar));
        if (!f->o.overlap)
            SL_TRY(wait_work(f, &u->ar));
        f->next_ar_unit--;
    }
    return SL_OK;
}

sl_status fsdp_grads_ready(fsdp *f, int unit) {
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units, "fsdp_grads_ready: unit %d of %d", unit, f->n_units);
    if (f->o.frozen)
        return sl_errorf(SL_ERR_INTERNAL, "fsdp: grads_ready(%d) on a frozen instance", unit);
    fsdp_unit *u = &f->units[unit];
    if (f->per_step) {
        if (!last_micro(f))
            return SL_OK; /* accumulate in grad_full; reduce once per step */
        u->ready = true;
        if (f->k > 1) {
            SL_TRY(comm_reduce_scatter_async(f->o.shard_comm, u->grad_full, u->grad_shard, (size_t)u->len,
                                             SL_DTYPE_F32, COMM_REDOP_SUM, &u->rs));
            if (!f->o.overlap)
                SL_TRY(wait_work(f, &u->rs));
        }
        return submit_ready_all_reduces(f, false);
    }
    if (f->k > 1) {
        /* reduce-scatter this micro-step's gradient out of its pool slot: the
         * first micro-step writes the shard, later ones add into it */
        if (u->grad_slot < 0) /* a unit with no gradient this pass (an empty adapter unit) */
            SL_TRY(take_grad_slot(f, unit));
        int s = u->grad_slot;
        grad_slot *g = &f->gslots[s];
        g->add_recv = f->micro > 0;
        SL_TRY(comm_reduce_scatter_async(f->o.shard_comm, g->full, g->add_recv ? g->recv : u->grad_shard,
                                         (size_t)u->len, SL_DTYPE_F32, COMM_REDOP_SUM, &g->rs));
        f->fifo[f->n_fifo++] = s;
        u->grad_slot = -1;
        if (last_micro(f))
            u->last_slot = s;
        if (!f->o.overlap)
            while (f->n_fifo > 0)
                SL_TRY(complete_oldest(f));
    }
    if (last_micro(f))
        u->ready = true;
    return submit_ready_all_reduces(f, false);
}

/* ---- lifecycle ---- */

void fsdp_destroy(fsdp *f) {
    if (!f)
        return;
    for (int i = 0; i < f->n_units; i++) {
        fsdp_unit *u = &f->units[i];
        comm_work **pend[] = {&u->gather, &u->rs, &u->ar};
        for (int p = 0; p < 3; p++)
            if (*pend[p])
                (void)comm_work_wait(*pend[p], 0);
        if (u->param_act != (void *)u->param)
            free_act(f, MEM_CATEGORY_PARAMS, u->param_act, u->len);
        free_f32(f, MEM_CATEGORY_PARAMS, u->param, u->len);
        free_f32(f, MEM_CATEGORY_OPTIMIZER, u->m, u->len);
        free_f32(f, MEM_CATEGORY_OPTIMIZER, u->v, u->len);
        if (u->grad_full != u->grad_shard)
            free_f32(f, MEM_CATEGORY_GATHERED, u->grad_full, u->padded);
        free_f32(f, MEM_CATEGORY_GRADS, u->grad_shard, u->len);
        free_act(f, MEM_CATEGORY_GATHERED, u->kept, u->padded);
    }
    for (int s = 0; s < f->n_gslots; s++) {
        if (f->gslots[s].rs)
            (void)comm_work_wait(f->gslots[s].rs, 0);
        free_f32(f, MEM_CATEGORY_GATHERED, f->gslots[s].full, f->gslot_padded);
        free_f32(f, MEM_CATEGORY_COMM, f->gslots[s].recv, f->gslot_len);
    }
    for (int s = 0; s < f->n_slots && f->slots; s++)
        free_act(f, MEM_CATEGORY_GATHERED, f->slots[s], f->slot_numel);
    free(f->slots);
    free(f->slot_owner);
    free(f->units);
    free(f);
}

sl_status fsdp_create(const fsdp_opts *o, fsdp **out) {
    *out = NULL;
    SL_CHECK_ARG(o->unit_numel && o->n_units >= 1 && o->be && o->plan && o->shard_comm,
                 "fsdp_create: missing unit sizes, backend, plan or comm");
    SL_CHECK_ARG(comm_size(o->shard_comm) == o->plan->shard_size,
                 "fsdp_create: shard comm has %d ranks, plan says %d", comm_size(o->shard_comm),
                 o->plan->shard_size);
    SL_CHECK_ARG((o->replicate_comm != NULL) == (o->plan->replicate_size > 1),
                 "fsdp_create: replicate comm must exist exactly when replicate_size > 1");
    SL_CHECK_ARG(o->gather_buffers >= 2, "fsdp_create: gather_buffers must be >= 2, got %d",
                 o->gather_buffers);
    fsdp *f = calloc(1, sizeof *f);
    SL_CHECK_ALLOC(f, sizeof *f);
    f->o = *o;
    f->k = comm_size(o->shard_comm);
    f->r = comm_rank(o->shard_comm);
    f->act = o->be->act_dtype;
    f->esz = dtype_size(f->act);
    f->act_is_master = f->act == SL_DTYPE_F32;
    f->per_step = o->grad_sync_per_step;
    f->n_units = o->n_units;
    f->units = calloc((size_t)f->n_units, sizeof *f->units);
    sl_status st = f->units ? SL_OK : sl_errorf(SL_ERR_NOMEM, "out of memory (fsdp units)");
    if (st == SL_OK && f->act == SL_DTYPE_F32)
        f->act_comm = SL_DTYPE_F32;
    else if (st == SL_OK && f->act == SL_DTYPE_BF16)
        f->act_comm = SL_DTYPE_BF16;
    else if (st == SL_OK)
        st = sl_errorf(SL_ERR_UNSUPPORTED, "fsdp_create: backend \"%s\" computes in %s; FSDP gathers "
                       "F32 or BF16 parameters only", o->be->ops->name, dtype_name(f->act));
    int64_t max_padded = 0, max_len = 0;
    for (int i = 0; i < f->n_units && st == SL_OK; i++) {
        fsdp_unit *u = &f->units[i];
        u->slot = -1;
        u->grad_slot = u->last_slot = -1;
        u->numel = o->unit_numel[i];
        u->len = (u->numel + f->k - 1) / f->k;
        if (u->len == 0)
            u->len = 1; /* an empty unit still takes part in collectives */
        u->padded = u->len * f->k;
        u->start = (int64_t)f->r * u->len;
        int64_t end = u->start + u->len < u->numel ? u->start + u->len : u->numel;
        u->valid = end > u->start ? end - u->start : 0;
        if (u->padded > max_padded)
            max_padded = u->padded;
        if (u->len > max_len)
            max_len = u->len;
        /* the fp32 master exists when the shard trains, or when it is the act copy */
        if (st == SL_OK && (!o->frozen || f->act_is_master))
            st = alloc_f32(f, MEM_CATEGORY_PARAMS, u->len, &u->param);
        if (st == SL_OK && f->act_is_master)
            u->param_act = u->param;
        else if (st == SL_OK)
            st = alloc_act(f, MEM_CATEGORY_PARAMS, u->len, &u->param_act);
        if (o->frozen) {
            /* no optimizer state, no gradients */
        } else if (st == SL_OK)
            st = alloc_f32(f, MEM_CATEGORY_OPTIMIZER, u->len, &u->m);
        if (st == SL_OK && !o->frozen)
            st = alloc_f32(f, MEM_CATEGORY_OPTIMIZER, u->len, &u->v);
        if (st == SL_OK && !o->frozen)
            st = alloc_f32(f, MEM_CATEGORY_GRADS, u->len, &u->grad_shard);
        if (st == SL_OK && !o->frozen && f->per_step && f->k > 1)
            st = alloc_f32(f, MEM_CATEGORY_GATHERED, u->padded, &u->grad_full);
        else if (st == SL_OK && !o->frozen && f->per_step)
            u->grad_full = u->grad_shard; /* k = 1: the shard is the whole unit */
        if (st == SL_OK && f->k > 1 && o->plan->mode == FSDP_MODE_SHARD_GRAD_OP)
            st = alloc_act(f, MEM_CATEGORY_GATHERED, u->padded, &u->kept);
    }
    /* the gradient pool of per-microstep sync: full-size buffers only for the
     * units whose backward is running or whose reduce-scatter is in flight */
    if (st == SL_OK && !o->frozen && !f->per_step && f->k > 1) {
        f->n_gslots = FSDP_GRAD_SLOTS;
        f->gslot_padded = max_padded;
        f->gslot_len = max_len;
        for (int s = 0; s < f->n_gslots && st == SL_OK; s++) {
            f->gslots[s].unit = -1;
            st = alloc_f32(f, MEM_CATEGORY_GATHERED, max_padded, &f->gslots[s].full);
            if (st == SL_OK)
                st = alloc_f32(f, MEM_CATEGORY_COMM, max_len, &f->gslots[s].recv);
        }
    }
    if (st == SL_OK && f->k > 1 && o->plan->mode != FSDP_MODE_SHARD_GRAD_OP) {
        f->n_slots = o->gather_buffers;
        f->slot_numel = max_padded;
        f->slots = calloc((size_t)f->n_slots, sizeof *f->slots);
        f->slot_owner = malloc(sizeof(int) * (size_t)f->n_slots);
        if (!f->slots || !f->slot_owner)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory (fsdp pool)");
        for (int s = 0; s < f->n_slots && st == SL_OK; s++) {
            f->slot_owner[s] = -1;
            st = alloc_act(f, MEM_CATEGORY_GATHERED, max_padded, &f->slots[s]);
        }
    }
    if (st != SL_OK) {
        fsdp_destroy(f);
        return st;
    }
    f->o.unit_numel = NULL; /* borrowed for create only: the units hold the sizes */
    f->n_micro = 1;
    *out = f;
    return SL_OK;
}

/* SHARD_GRAD_OP keeps gathered units until their backward; a unit the
 * backward never acquires (an untied unit 0) or a forward-only pass (eval)
 * would otherwise keep serving parameters from before an update. */
static void invalidate_gathered(fsdp *f) {
    if (f->o.plan->mode != FSDP_MODE_SHARD_GRAD_OP)
        return;
    for (int i = 0; i < f->n_units; i++)
        if (f->units[i].state == FSDP_UNIT_GATHERED)
            f->units[i].state = FSDP_UNIT_SHARDED;
}

void fsdp_params_changed(fsdp *f) { invalidate_gathered(f); }

/* Refreshes unit u's act copy from its fp32 master (no-op when they are one
 * buffer). On the CUDA backend this is the bf16 shard the all-gathers move. */
static sl_status refresh_act(fsdp *f, fsdp_unit *u) {
    if (f->act_is_master || !u->param)
        return SL_OK;
    sl_backend *be = f->o.be;
    return ops_cast(be, ops_view1(be, f->act, u->param_act, u->len),
                    ops_view1(be, SL_DTYPE_F32, u->param, u->len));
}

/* Sets unit u's parameter shard from host (len floats, padding zero): the
 * master (H2D) and its act copy, or, on a frozen instance without a master,
 * the act copy through a temporary F32 device buffer. */
static sl_status upload_param(fsdp *f, fsdp_unit *u, const float *host) {
    sl_backend *be = f->o.be;
    size_t bytes = (size_t)u->len * sizeof(float);
    if (u->param) {
        SL_TRY(backend_memcpy(be, u->param, host, bytes, BACKEND_COPY_H2D));
        return refresh_act(f, u);
    }
    float *tmp = NULL;
    SL_TRY(alloc_f32(f, MEM_CATEGORY_COMM, u->len, &tmp));
    sl_status st = backend_memcpy(be, tmp, host, bytes, BACKEND_COPY_H2D);
    if (st == SL_OK)
        st = ops_cast(be, ops_view1(be, f->act, u->param_act, u->len), ops_view1(be, SL_DTYPE_F32, tmp, u->len));
    if (st == SL_OK)
        st = backend_synchronize(be); /* tmp is freed next */
    free_f32(f, MEM_CATEGORY_COMM, tmp, u->len);
    return st;
}

/* host (n floats) = backend buffer src of dtype dt, n elements. */
static sl_status download_f32(fsdp *f, const void *src, sl_dtype dt, int64_t n, float *host) {
    sl_backend *be = f->o.be;
    if (n == 0)
        return SL_OK;
    if (dt == SL_DTYPE_F32)
        return backend_memcpy(be, host, src, (size_t)n * sizeof(float), BACKEND_COPY_D2H);
    float *tmp = NULL;
    SL_TRY(alloc_f32(f, MEM_CATEGORY_COMM, n, &tmp));
    sl_status st = ops_cast(be, ops_view1(be, SL_DTYPE_F32, tmp, n), ops_view1(be, dt, src, n));
    if (st == SL_OK)
        st = backend_memcpy(be, host, tmp, (size_t)n * sizeof(float), BACKEND_COPY_D2H);
    free_f32(f, MEM_CATEGORY_COMM, tmp, n);
    return st;
}

sl_status fsdp_init_params(fsdp *f, fsdp_init_fn fn, void *ctx) {
    invalidate_gathered(f);
    int64_t max_len = 1;
    for (int i = 0; i < f->n_units; i++)
        max_len = f->units[i].len > max_len ? f->units[i].len : max_len;
    /* the init function writes host memory: stage, then upload */
    float *host = malloc((size_t)max_len * sizeof(float));
    SL_CHECK_ALLOC(host, (size_t)max_len * sizeof(float));
    sl_status st = SL_OK;
    for (int i = 0; i < f->n_units && st == SL_OK; i++) {
        fsdp_unit *u = &f->units[i];
        memset(host, 0, (size_t)u->len * sizeof(float));
        if (u->valid > 0)
            st = fn(ctx, i, u->start, u->valid, host);
        if (st == SL_OK)
            st = upload_param(f, u, host);
    }
    if (st == SL_OK)
        st = backend_synchronize(f->o.be); /* host is freed next */
    free(host);
    return st;
}

sl_status fsdp_load_unit(fsdp *f, int unit, const float *full) {
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units, "fsdp_load_unit: unit %d out of range", unit);
    fsdp_unit *u = &f->units[unit];
    invalidate_gathered(f);
    float *host = calloc((size_t)u->len, sizeof(float));
    SL_CHECK_ALLOC(host, (size_t)u->len * sizeof(float));
    if (u->valid > 0)
        memcpy(host, full + u->start, (size_t)u->valid * sizeof(float));
    sl_status st = upload_param(f, u, host);
    if (st == SL_OK)
        st = backend_synchronize(f->o.be);
    free(host);
    return st;
}

sl_status fsdp_gather_unit(fsdp *f, int unit, float *full) {
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units, "fsdp_gather_unit: unit %d out of range", unit);
    fsdp_unit *u = &f->units[unit];
    /* the fp32 master where there is one, else (frozen, act != F32) the act copy */
    const void *src = u->param ? (const void *)u->param : u->param_act;
    sl_dtype dt = u->param ? SL_DTYPE_F32 : f->act;
    if (f->k == 1)
        return download_f32(f, src, dt, u->numel, full);
    size_t esz = dtype_size(dt);
    void *tmp = NULL;
    SL_TRY(backend_alloc(f->o.be, MEM_CATEGORY_COMM, (size_t)u->padded * esz, &tmp));
    sl_status st = comm_all_gather(f->o.shard_comm, src, tmp, (size_t)u->len,
                                   u->param ? SL_DTYPE_F32 : f->act_comm);
    if (st == SL_OK)
        st = download_f32(f, tmp, dt, u->numel, full);
    backend_free(f->o.be, MEM_CATEGORY_COMM, tmp, (size_t)u->padded * esz);
    return st;
}

static float *shard_buf(fsdp_unit *u, fsdp_buf which) {
    switch (which) {
    case FSDP_BUF_PARAM:
        return u->param;
    case FSDP_BUF_M:
        return u->m;
    case FSDP_BUF_V:
        return u->v;
    case FSDP_BUF_GRAD:
        return u->grad_shard;
    }
    return NULL;
}

static const char *const buf_names[] = {"param", "m", "v", "grad"};

sl_status fsdp_shard_read(fsdp *f, int unit, fsdp_buf which, float *host) {
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units && which >= FSDP_BUF_PARAM && which <= FSDP_BUF_GRAD,
                 "fsdp_shard_read: unit %d / buffer %d out of range", unit, (int)which);
    fsdp_unit *u = &f->units[unit];
    float *b = shard_buf(u, which);
    if (!b)
        return sl_errorf(SL_ERR_INVALID, "fsdp_shard_read: unit %d has no %s shard (frozen instance)", unit,
                         buf_names[which]);
    return backend_memcpy(f->o.be, host, b, (size_t)u->len * sizeof(float), BACKEND_COPY_D2H);
}

sl_status fsdp_shard_write(fsdp *f, int unit, fsdp_buf which, const float *host) {
    SL_CHECK_ARG(unit >= 0 && unit < f->n_units && which >= FSDP_BUF_PARAM && which <= FSDP_BUF_GRAD,
                 "fsdp_shard_write: unit %d / buffer %d out of range", unit, (int)which);
    fsdp_unit *u = &f->units[unit];
    if (which == FSDP_BUF_PARAM) {
        invalidate_gathered(f);
        SL_TRY(upload_param(f, u, host));
        return backend_synchronize(f->o.be);
    }
    float *b = shard_buf(u, which);
    if (!b)
        return sl_errorf(SL_ERR_INVALID, "fsdp_shard_write: unit %d has no %s shard (frozen instance)", unit,
                         buf_names[which]);
    SL_TRY(backend_memcpy(f->o.be, b, host, (size_t)u->len * sizeof(float), BACKEND_COPY_H2D));
    return backend_synchronize(f->o.be);
}

sl_status fsdp_begin_step(fsdp *f, int n_micro) {
    SL_CHECK_ARG(n_micro >= 1, "fsdp_begin_step: n_micro must be >= 1");
    f->n_micro = n_micro;
    f->micro = 0;
    for (int i = 0; i < f->n_units && !f->o.frozen; i++) {
        fsdp_unit *u = &f->units[i];
        u->ready = false;
        if (f->per_step)
            SL_TRY(backend_memset_zero(f->o.be, u->grad_full, (size_t)u->padded * sizeof(float)));
        else /* k = 1 accumulates in place; k > 1 overwrites it with the first reduce-scatter */
            SL_TRY(backend_memset_zero(f->o.be, u->grad_shard, (size_t)u->len * sizeof(float)));
    }
    f->next_ar_unit = f->n_units - 1;
    return SL_OK;
}

sl_status fsdp_begin_micro(fsdp *f, int i) {
    SL_CHECK_ARG(i >= 0 && i < f->n_micro, "fsdp_begin_micro: micro-step %d of %d", i, f->n_micro);
    f->micro = i;
    return SL_OK;
}

sl_status fsdp_finish_grads(fsdp *f) {
    if (f->o.frozen)
        return SL_OK;
    /* model order is L+1 .. 0; wait in the same order */
    for (int i = f->n_units - 1; i >= 0; i--) {
        if (!f->units[i].ready)
            return sl_errorf(SL_ERR_INTERNAL, "fsdp_finish_grads: unit %d never reported its gradients", i);
        SL_TRY(wait_work(f, &f->units[i].rs));
    }
    while (f->n_fifo > 0)
        SL_TRY(complete_oldest(f));
    SL_TRY(submit_ready_all_reduces(f, true));
    for (int i = f->n_units - 1; i >= 0; i--)
        SL_TRY(wait_work(f, &f->units[i].ar));
    return SL_OK;
}

fsdp_unit_shard fsdp_shard(fsdp *f, int unit) {
    fsdp_unit *u = &f->units[unit];
    return (fsdp_unit_shard){.start = u->start,
                             .len = u->len,
                             .valid = u->valid,
                             .param = u->param,
                             .param_act = u->param_act,
                             .m = u->m,
                             .v = u->v,
                             .grad = u->grad_shard};
}

int64_t fsdp_padded_numel(const fsdp *f, int unit) { return f->units[unit].padded; }
int fsdp_n_units(const fsdp *f) { return f->n_units; }
fsdp_unit_state fsdp_unit_state_of(const fsdp *f, int unit) { return f->units[unit].state; }

double fsdp_exposed_comm_s(const fsdp *f) { return f->exposed_s; }
void fsdp_reset_comm_timer(fsdp *f) { f->exposed_s = 0; }

/* Buffers of fsdp_comm_only_step: allocated, zeroed (uninitialized floats
 * could hold NaNs or denormals, which slow a CPU reduction) and synchronized
 * before its clock starts, freed after it stops, so that its time is the
 * collectives only. NULL where a pass does not run. */
typedef struct {
    void *gather;       /* (max padded) act dtype: all-gather destination */
    float *rs_send;     /* (max padded) F32: reduce-scatter input; == gather when act is F32 */
    float *rs_recv;     /* (max padded) F32: reduce-scatter output */
    float *ar;          /* (max len) F32: the replicate all-reduces, in place; may alias rs_* */
    bool ar_owned;      /* ar was allocated for itself */
    int64_t n_padded, n_len;
} comm_only_bufs;

static void comm_only_free(fsdp *f, comm_only_bufs *b) {
    if (b->ar_owned)
        free_f32(f, MEM_CATEGORY_COMM, b->ar, b->n_len);
    free_f32(f, MEM_CATEGORY_COMM, b->rs_recv, b->n_padded);
    if (b->rs_send != b->gather)
        free_f32(f, MEM_CATEGORY_COMM, b->rs_send, b->n_padded);
    free_act(f, MEM_CATEGORY_COMM, b->gather, b->n_padded);
    memset(b, 0, sizeof *b);
}

static sl_status comm_only_alloc(fsdp *f, comm_only_bufs *b) {
    memset(b, 0, sizeof *b);
    for (int i = 0; i < f->n_units; i++) {
        b->n_padded = f->units[i].padded > b->n_padded ? f->units[i].padded : b->n_padded;
        b->n_len = f->units[i].len > b->n_len ? f->units[i].len : b->n_len;
    }
    bool trainable = !f->o.frozen;
    sl_status st = SL_OK;
    if (f->k > 1) {
        st = alloc_act(f, MEM_CATEGORY_COMM, b->n_padded, &b->gather);
        if (st == SL_OK)
            st = backend_memset_zero(f->o.be, b->gather, (size_t)b->n_padded * f->esz);
        /* reduce-scatters move F32 gradients: the act buffer serves when it is F32 */
        if (st == SL_OK && trainable && f->act_is_master)
            b->rs_send = b->gather;
        else if (st == SL_OK && trainable)
            st = alloc_f32(f, MEM_CATEGORY_COMM, b->n_padded, &b->rs_send);
        if (st == SL_OK && trainable && b->rs_send != b->gather)
            st = backend_memset_zero(f->o.be, b->rs_send, (size_t)b->n_padded * sizeof(float));
        if (st == SL_OK && trainable)
            st = alloc_f32(f, MEM_CATEGORY_COMM, b->n_padded, &b->rs_recv);
    }
    /* The all-reduces run after the reduce-scatters (one after the other,
     * also on CUDA: blocking ops order through the compute stream), so they
     * reuse a shard-pass buffer and the peak stays that of the shard pass:
     * the zeroed F32 send buffer, which the out-of-place reduce-scatters
     * only read (it stays zero), else their output (finite sums). */
    if (st == SL_OK && f->o.replicate_comm && trainable) {
        if (b->rs_send && b->rs_send != b->gather) {
            b->ar = b->rs_send;
        } else if (b->rs_recv) {
            b->ar = b->rs_recv;
        } else {
            st = alloc_f32(f, MEM_CATEGORY_COMM, b->n_len, &b->ar);
            b->ar_owned = st == SL_OK;
            if (st == SL_OK)
                st = backend_memset_zero(f->o.be, b->ar, (size_t)b->n_len * sizeof(float));
        }
    }
    /* also lets the compute work queued before this call finish off the clock */
    if (st == SL_OK)
        st = backend_synchronize(f->o.be);
    if (st != SL_OK)
        comm_only_free(f, b);
    return st;
}

sl_status fsdp_comm_only_step(fsdp *f, double *seconds) {
    comm_only_bufs b;
    SL_TRY(comm_only_alloc(f, &b));
    sl_status st = SL_OK;
    double t0 = sl_now();
    if (f->k > 1) {
        int passes = f->o.plan->mode == FSDP_MODE_SHARD_GRAD_OP ? 1 : 2;
        for (int p = 0; p < passes && st == SL_OK; p++)
            for (int i = 0; i < f->n_units && st == SL_OK; i++)
                st = comm_all_gather(f->o.shard_comm, f->units[i].param_act, b.gather,
                                     (size_t)f->units[i].len, f->act_comm);
        /* per micro-step sync reduce-scatters every micro-step of the last step */
        int rs_passes = f->per_step ? 1 : f->n_micro;
        for (int p = 0; p < rs_passes && st == SL_OK; p++)
            for (int i = f->n_units - 1; i >= 0 && st == SL_OK && b.rs_recv; i--)
                st = comm_reduce_scatter(f->o.shard_comm, b.rs_send, b.rs_recv, (size_t)f->units[i].len,
                                         SL_DTYPE_F32, COMM_REDOP_SUM);
    }
    for (int i = f->n_units - 1; i >= 0 && st == SL_OK && b.ar; i--)
        st = comm_all_reduce(f->o.replicate_comm, b.ar, b.ar, (size_t)f->units[i].len, SL_DTYPE_F32,
                             COMM_REDOP_SUM);
    /* the collectives are stream-ordered on CUDA: done once the backend is */
    if (st == SL_OK)
        st = backend_synchronize(f->o.be);
    *seconds = sl_now() - t0;
    comm_only_free(f, &b);
    return st;
}
