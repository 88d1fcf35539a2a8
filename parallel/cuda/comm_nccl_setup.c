/* parallel/cuda/comm_nccl_setup.c: creating and freeing an NCCL comm
 * (built only with CUDA). The ops, the watchdog and the design notes are in
 * comm_nccl.c; semantics are stated in comm.h, "The NCCL backend".
 *
 * comm_create_nccl, collective over `group` (a host-buffer comm of the same
 * ranks): (1) the ranks all-gather their GPU's PCI bus id and host name and
 * refuse two ranks on one GPU, on every rank; (2) each rank makes its comm
 * stream, barrier word and locks, and all agree that every rank got there;
 * (3) rank 0 gets the NCCL unique id and broadcasts it over group; (4) every
 * rank calls ncclCommInitRankConfig with blocking = 0, bounded by
 * timeout_s, and all agree again; (5) the watchdog thread starts. A failure
 * on one rank fails comm_create_nccl on every rank, so that none waits in
 * NCCL init for a peer that gave up.
 *
 * comm_nccl_state_free undoes any prefix of that (a failed create, or
 * comm_destroy after the ops in flight were waited for or given up): stops
 * the watchdog, finalizes the communicator with a bound (aborts it past
 * timeout_s), drains the comm stream with a bound and leaves its device
 * buffers allocated if it stays busy, then frees the rest.
 *
 * It does not submit, wait for or time out ops (comm_nccl.c does).
 *
 * defines: comm_create_nccl (declared in parallel/comm.h),
 *          comm_nccl_state_free (internal)
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cuda/cuda_check.h"
#include "parallel/comm.h"
#include "parallel/cuda/comm_nccl_internal.h"
#include "runtime/check.h"
#include "runtime/log.h"

/* cudaStreamSynchronize with a bound: cudaSuccess once st is idle, its error
 * if it failed, cudaErrorNotReady if still busy after `seconds`. */
static cudaError_t stream_drain(cudaStream_t st, double seconds) {
    double deadline = sl_now() + seconds;
    for (;;) {
        cudaError_t e = cudaStreamQuery(st);
        if (e != cudaErrorNotReady || sl_now() > deadline)
            return e;
        sl_sleep_us(DRAIN_NAP_US);
    }
}

void comm_nccl_state_free(comm *c) {
    nccl_state *s = c->impl;
    if (s) {
        if (s->watchdog_started) {
            pthread_mutex_lock(&s->mu);
            s->stop = true;
            pthread_cond_signal(&s->cv_work);
            pthread_mutex_unlock(&s->mu);
            pthread_join(s->watchdog, NULL);
        }
        if (s->nc_live) {
            /* Finalize flushes and may be in progress (nonblocking comm). */
            double deadline = sl_now() + c->opts.timeout_s;
            ncclResult_t r = ncclCommFinalize(s->nc);
            sl_status st = comm_nccl_settle_at(__FILE__, __LINE__, c, r, "ncclCommFinalize", deadline);
            if (st != SL_OK) {
                LOG_WARN("comm %s (nccl): %s; aborting the NCCL communicator", c->name, sl_error_message());
                ncclCommAbort(s->nc);
            } else if ((r = ncclCommDestroy(s->nc)) != ncclSuccess) {
                LOG_WARN("comm %s (nccl): ncclCommDestroy failed: %s", c->name, ncclGetErrorString(r));
            }
            s->nc_live = false;
            s->nc = NULL;
        }
        /* Bounded: after ops were given up the stream may never drain, and
         * cudaFree would then block; its buffers are left allocated instead
         * (cudaStreamDestroy and cudaEventDestroy return at once and release
         * their resources when the device is done with them). */
        bool drained = true;
        if (s->stream_ok) {
            double limit = s->abandoned ? comm_nccl_abort_grace_s(c) : c->opts.timeout_s;
            cudaError_t e = stream_drain(s->stream, limit);
            if (e == cudaErrorNotReady) {
                drained = false;
                LOG_WARN("comm %s (nccl): comm_destroy waited %.1f s for the comm stream and it is still "
                         "busy%s; leaving its device buffers (%zu bytes) allocated instead of blocking in cudaFree",
                         c->name, limit, s->abandoned ? " (ops given up after the NCCL abort)" : "",
                         s->scratch_bytes + (s->barrier_buf ? sizeof(int32_t) : 0));
            } else if (e != cudaSuccess) {
                LOG_WARN("comm %s (nccl): synchronizing the comm stream failed: %s", c->name,
                         cudaGetErrorString(e));
            }
            e = cudaStreamDestroy(s->stream);
            if (e != cudaSuccess)
                LOG_WARN("comm %s (nccl): cudaStreamDestroy failed: %s", c->name, cudaGetErrorString(e));
        }
        for (nccl_work *w = s->all, *nx; w; w = nx) {
            nx = w->all_next;
            cudaEventDestroy(w->ready);
            cudaEventDestroy(w->done);
            free(w);
        }
        if (s->scratch && drained) {
            cudaFree(s->scratch);
            mem_record_free(c->opts.mem, MEM_CATEGORY_COMM, s->scratch_bytes);
        }
        if (s->barrier_buf && drained) {
            cudaFree(s->barrier_buf);
            mem_record_free(c->opts.mem, MEM_CATEGORY_COMM, sizeof(int32_t));
        }
        if (s->sync_ready) {
            pthread_mutex_destroy(&s->mu);
            pthread_cond_destroy(&s->cv_work);
            pthread_cond_destroy(&s->cv_done);
        }
        if (s->owns_group)
            comm_destroy(s->group);
        free(s);
    }
    free(c);
}

/* What each rank tells the others before NCCL starts. */
typedef struct {
    int32_t ok;
    int32_t world_rank;
    int32_t device;
    char bus_id[BUSID_LEN];
    char host[HOST_LEN];
} peer_info;

static sl_status local_device_info(nccl_state *s, peer_info *me) {
    SL_CHECK_CUDA(cudaGetDevice(&s->device));
    me->device = s->device;
    SL_CHECK_CUDA(cudaDeviceGetPCIBusId(me->bus_id, BUSID_LEN, s->device));
    if (gethostname(me->host, HOST_LEN) != 0)
        snprintf(me->host, HOST_LEN, "?");
    me->host[HOST_LEN - 1] = 0;
    return SL_OK;
}

/* Streams, the barrier word, locks: everything but NCCL itself. */
static sl_status local_setup(comm *c) {
    nccl_state *s = c->impl;
    int lo = 0, hi = 0;
    SL_CHECK_CUDA(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    SL_CHECK_CUDA(cudaStreamCreateWithPriority(&s->stream, cudaStreamNonBlocking, hi));
    s->stream_ok = true;
    SL_CHECK_CUDA(cudaMalloc(&s->barrier_buf, sizeof(int32_t)));
    mem_record_alloc(c->opts.mem, MEM_CATEGORY_COMM, sizeof(int32_t));
    SL_CHECK_CUDA(cudaMemset(s->barrier_buf, 0, sizeof(int32_t)));
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return sl_errorf(SL_ERR_INTERNAL, "comm %s: pthread_condattr_init failed", c->name);
    bool ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
    ok = ok && pthread_mutex_init(&s->mu, NULL) == 0;
    ok = ok && pthread_cond_init(&s->cv_work, &ca) == 0;
    ok = ok && pthread_cond_init(&s->cv_done, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok)
        return sl_errorf(SL_ERR_INTERNAL, "comm %s: mutex/condition variable setup failed", c->name);
    s->sync_ready = true;
    return SL_OK;
}

/* Every rank learns whether every rank got this far (so that all fail
 * together instead of some waiting in NCCL init for the others). */
static sl_status agree(comm *c, bool ok_here, const char *stage) {
    nccl_state *s = c->impl;
    int32_t v = ok_here ? 1 : 0;
    char mine[1024];
    snprintf(mine, sizeof mine, "%s", ok_here ? "" : sl_error_message());
    SL_TRY(comm_all_reduce(s->group, &v, &v, 1, SL_DTYPE_I32, COMM_REDOP_MIN));
    if (!ok_here)
        return sl_errorf(SL_ERR_COMM, "%s", mine);
    if (!v)
        return sl_errorf(SL_ERR_COMM,
                         "comm_create_nccl %s: another rank of the group failed during %s (its log says why)",
                         c->name, stage);
    return SL_OK;
}

static sl_status check_one_gpu_per_rank(comm *c, const peer_info *all) {
    for (int i = 0; i < c->size; i++) {
        if (!all[i].ok)
            return sl_errorf(SL_ERR_COMM,
                             "comm_create_nccl %s: world rank %d could not query its CUDA device (its log says "
                             "why)",
                             c->name, all[i].world_rank);
    }
    for (int i = 0; i < c->size; i++)
        for (int j = i + 1; j < c->size; j++)
            if (strcmp(all[i].bus_id, all[j].bus_id) == 0 && strcmp(all[i].host, all[j].host) == 0)
                return sl_errorf(SL_ERR_COMM,
                                 "comm_create_nccl %s: world ranks %d and %d both use GPU %s (CUDA device %d "
                                 "and %d) on host %s; NCCL needs one GPU per rank: run one rank per GPU, with "
                                 "CUDA_VISIBLE_DEVICES set per local rank or each rank selecting device "
                                 "local_rank, and no more ranks per node than GPUs",
                                 c->name, all[i].world_rank, all[j].world_rank, all[i].bus_id, all[i].device,
                                 all[j].device, all[i].host);
    return SL_OK;
}

static sl_status state_init(comm *c) {
    nccl_state *s = c->impl;
    size_t k = (size_t)c->size;
    /* 1. Who uses which GPU: refuse two ranks on one device before NCCL
     * would hang or fail obscurely. */
    peer_info me;
    memset(&me, 0, sizeof me);
    me.world_rank = c->world_rank;
    me.ok = local_device_info(s, &me) == SL_OK;
    char why[1024] = "";
    if (!me.ok) {
        snprintf(why, sizeof why, "%s", sl_error_message());
        LOG_ERROR("comm_create_nccl %s: %s", c->name, why);
    }
    peer_info *all = calloc(k, sizeof *all);
    SL_CHECK_ALLOC(all, k * sizeof *all);
    sl_status st = comm_all_gather(s->group, &me, all, sizeof me, SL_DTYPE_U8);
    if (st == SL_OK)
        st = !me.ok ? sl_errorf(SL_ERR_CUDA, "comm_create_nccl %s: %s", c->name, why)
                    : check_one_gpu_per_rank(c, all);
    free(all);
    SL_TRY(st);

    /* 2. Local setup, then agree that every rank is ready. */
    SL_TRY(agree(c, local_setup(c) == SL_OK, "stream and memory setup"));

    /* 3. The unique id, from rank 0 over the group. */
    struct {
        int32_t ok;
        ncclUniqueId id;
    } uid;
    memset(&uid, 0, sizeof uid);
    if (c->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&uid.id);
        uid.ok = r == ncclSuccess;
        if (!uid.ok)
            LOG_ERROR("comm_create_nccl %s: ncclGetUniqueId failed: %s (%s)", c->name, ncclGetErrorString(r),
                      ncclGetLastError(NULL));
    }
    SL_TRY(comm_broadcast(s->group, &uid, sizeof uid, SL_DTYPE_U8, 0));
    if (!uid.ok)
        return sl_errorf(SL_ERR_COMM, "comm_create_nccl %s: rank 0 of the group could not get an NCCL unique "
                                      "id (ncclGetUniqueId; its log says why)",
                         c->name);

    /* 4. The communicator: nonblocking, so that init is bounded. */
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 27, 0)
    cfg.commName = c->name;
#endif
    double deadline = sl_now() + c->opts.timeout_s;
    ncclResult_t r = ncclCommInitRankConfig(&s->nc, c->size, uid.id, c->rank, &cfg);
    sl_status ist = r == ncclSuccess || r == ncclInProgress
                        ? comm_nccl_settle_at(__FILE__, __LINE__, c, r, "ncclCommInitRankConfig", deadline)
                        : comm_nccl_fail_at(__FILE__, __LINE__, c, r, "ncclCommInitRankConfig");
    if (ist != SL_OK) {
        if (s->nc)
            ncclCommAbort(s->nc);
        s->nc = NULL;
    } else {
        s->nc_live = true;
    }
    SL_TRY(agree(c, ist == SL_OK, "ncclCommInitRankConfig"));

    /* 5. The watchdog. */
    int err = pthread_create(&s->watchdog, NULL, comm_nccl_watchdog_main, c);
    if (err != 0)
        return sl_errorf(SL_ERR_INTERNAL, "comm %s: could not start the NCCL watchdog thread: %s", c->name,
                         strerror(err));
    s->watchdog_started = true;
    return SL_OK;
}

sl_status comm_create_nccl(comm *group, void *compute_stream, const comm_opts *o, comm **out) {
    *out = NULL;
    SL_CHECK_ARG(group != NULL, "comm_create_nccl: group is NULL (pass the MPI comm of the same ranks)");
    comm_opts opts;
    if (o)
        opts = *o;
    else
        comm_opts_default(&opts);
    SL_CHECK_ARG(opts.timeout_s > 0, "comm_create_nccl: timeout_s must be > 0 (parallel.comm_timeout_s), got %g",
                 opts.timeout_s);
    comm *c = calloc(1, sizeof *c);
    nccl_state *s = calloc(1, sizeof *s);
    if (!c || !s) {
        free(c);
        free(s);
        return sl_errorf(SL_ERR_NOMEM, "comm_create_nccl: out of memory");
    }
    s->group = group;
    s->compute = (cudaStream_t)compute_stream;
    c->ops = &comm_nccl_ops;
    c->impl = s;
    c->rank = group->rank;
    c->size = group->size;
    c->world_rank = group->world_rank;
    c->opts = opts;
    snprintf(c->name, sizeof c->name, "%s", opts.name ? opts.name : "world");
    c->opts.name = c->name;
    sl_status st = state_init(c);
    if (st != SL_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sl_error_message());
        comm_nccl_state_free(c);
        return sl_errorf(st, "%s", msg);
    }
    *out = c;
    return SL_OK;
}
