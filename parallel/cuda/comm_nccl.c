/* parallel/cuda/comm_nccl.c: the NCCL backend of comm.h (device buffers;
 * built only with CUDA). Semantics are stated in comm.h, "The NCCL backend".
 *
 * Per comm: one NCCL communicator (nonblocking config, so that init, enqueue
 * and finalize can be bounded by the timeout), one comm stream (highest
 * priority, non-blocking w.r.t. the legacy stream), and a watchdog thread.
 * An op: event `ready` recorded on the compute stream, the comm stream waits
 * on it, the NCCL call on the comm stream, event `done` recorded after it.
 * The op is then "in flight" (a FIFO, oldest first) until the watchdog sees
 * `done` complete. The watchdog also polls ncclCommGetAsyncError (an error
 * fails the comm and aborts the NCCL communicator, which makes its kernels
 * exit) and times the oldest op from the moment its `ready` completed: past
 * timeout_s it calls comm_timeout_abort (log, ncclCommAbort, MPI_Abort).
 * After an abort the ops in flight normally complete their `done` events
 * (the aborted kernels exit); those that have not within the grace period
 * (min(timeout_s, ABORT_GRACE_S)) are given up: finished with SL_ERR_COMM so
 * that their waiters and comm_destroy return, and the comm stream is then
 * drained only with a bound (its device buffers are left allocated if it
 * stays busy, rather than blocking in cudaFree).
 * Every NCCL call on the communicator is made under `mu`, so the watchdog's
 * abort never races an enqueue.
 *
 * Work structs own their two events and return to the pool only when both
 * the caller's wait is over (released) and the watchdog saw them finish, so
 * an event is never re-recorded while a stream may still wait on it.
 *
 * Host buffers are staged through one device scratch buffer (grown on
 * demand, recorded under MEM_CATEGORY_COMM) and the op finishes inside
 * submit, so no two ops ever share the scratch. Such a submit first waits
 * (mu released) for the comm's ops in flight: its copies and scratch growth
 * may block on the comm stream while holding mu, which must never wait on a
 * stuck op the watchdog could otherwise time out.
 */
#include <cuda_runtime.h>
#include <errno.h>
#include <nccl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cuda/cuda_check.h"
#include "parallel/comm.h"
#include "runtime/check.h"
#include "runtime/log.h"

enum {
    WATCH_IDLE_MS = 20,
    WATCH_BUSY_US = 100,
    SETTLE_NAP_US = 50,
    DRAIN_NAP_US = 200,
    BUSID_LEN = 32,
    HOST_LEN = 64,
    ABORT_GRACE_S = 10 /* at most this long (and at most timeout_s) for aborted ops to finish */
};

typedef struct nccl_work {
    comm_work base;               /* first: comm_work* and nccl_work* convert */
    struct nccl_work *next;       /* in-flight FIFO or pool; under mu */
    struct nccl_work *all_next;   /* every work ever allocated, for destroy */
    cudaEvent_t ready, done;
    bool in_flight; /* under mu: the watchdog has not seen `done` complete */
    bool released;  /* under mu: the caller's wait is over */
    bool started;   /* under mu, written by the watchdog: `ready` completed at t_ready */
    double t_ready;
    bool staged; /* host buffers: finished (and copied back) inside submit */
    sl_status st; /* under mu; final once !in_flight */
    char err[512];
} nccl_work;

typedef struct {
    comm *group;     /* host-buffer comm of the same ranks (setup only) */
    bool owns_group; /* split: the group was made for this comm */
    ncclComm_t nc;
    bool nc_live; /* under mu: nc exists and was neither aborted nor destroyed */
    int device;
    cudaStream_t stream, compute;
    bool stream_ok;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* submit -> watchdog */
    pthread_cond_t cv_done; /* watchdog -> waiters */
    bool sync_ready;
    pthread_t watchdog;
    bool watchdog_started, stop;    /* stop: under mu */
    nccl_work *fl_head, *fl_tail;   /* in flight, oldest first; under mu */
    nccl_work *pool, *all;          /* under mu */
    bool failed;                    /* under mu */
    char fail_msg[512];
    double t_failed; /* under mu: when failed became true (sl_now) */
    bool abandoned;  /* under mu: ops were given up after the abort; the comm stream may stay busy */
    _Atomic uint64_t done_seq; /* last op the watchdog saw finish */
    void *scratch;             /* (scratch_bytes) device staging for host buffers */
    size_t scratch_bytes;
    void *barrier_buf; /* one int32 on the device */
} nccl_state;

/* ---- NCCL calls ---------------------------------------------------------- */

static sl_status nccl_fail_at(const char *file, int line, comm *c, ncclResult_t r, const char *call) {
    nccl_state *s = c->impl;
    return sl_errorf_at(file, line, SL_ERR_COMM, "comm %s (nccl, rank %d of %d): %s failed: %s (%s)", c->name,
                        c->rank, c->size, call, ncclGetErrorString(r),
                        s && s->nc ? ncclGetLastError(s->nc) : ncclGetLastError(NULL));
}

/* A call on the nonblocking communicator may return ncclInProgress: poll
 * ncclCommGetAsyncError until it settles, at most until `deadline` (then
 * SL_ERR_TIMEOUT with a message). Caller holds mu (or owns nc alone). */
static sl_status nccl_settle_at(const char *file, int line, comm *c, ncclResult_t r, const char *call,
                                double deadline) {
    nccl_state *s = c->impl;
    while (r == ncclInProgress) {
        if (sl_now() > deadline)
            return sl_errorf_at(file, line, SL_ERR_TIMEOUT,
                                "comm %s (nccl, rank %d of %d): %s still in progress after %.1f s", c->name,
                                c->rank, c->size, call, c->opts.timeout_s);
        sl_sleep_us(SETTLE_NAP_US);
        ncclResult_t q = ncclCommGetAsyncError(s->nc, &r);
        if (q != ncclSuccess)
            r = q;
    }
    if (r != ncclSuccess)
        return nccl_fail_at(file, line, c, r, call);
    return SL_OK;
}

#define NCCL_TRY(c, call, deadline) SL_TRY(nccl_settle_at(__FILE__, __LINE__, (c), (call), #call, (deadline)))

static ncclDataType_t nccl_dtype(comm_dtype dt) {
    switch (dt) {
    case COMM_DTYPE_F32:
        return ncclFloat32;
    case COMM_DTYPE_F64:
        return ncclFloat64;
    case COMM_DTYPE_BF16:
        return ncclBfloat16;
    case COMM_DTYPE_I32:
        return ncclInt32;
    case COMM_DTYPE_I64:
        return ncclInt64;
    default:
        return ncclUint8;
    }
}

static ncclRedOp_t nccl_redop(comm_redop op) {
    return op == COMM_REDOP_MAX ? ncclMax : op == COMM_REDOP_MIN ? ncclMin : ncclSum;
}

/* Enqueues the collective of rq with device pointers send/recv on the comm
 * stream. send == NULL: all_gather in place. Caller holds mu. */
static sl_status enqueue_op(comm *c, const comm_request *rq, const void *send, void *recv, double deadline) {
    nccl_state *s = c->impl;
    size_t n = rq->count, bytes = n * comm_dtype_size(rq->dtype);
    ncclDataType_t dt = nccl_dtype(rq->dtype);
    switch (rq->kind) {
    case COMM_OP_ALL_GATHER:
        if (n == 0)
            return SL_OK;
        NCCL_TRY(c, ncclAllGather(send ? send : (const char *)recv + (size_t)c->rank * bytes, recv, n, dt, s->nc,
                                  s->stream),
                 deadline);
        return SL_OK;
    case COMM_OP_REDUCE_SCATTER:
        if (n == 0)
            return SL_OK;
        NCCL_TRY(c, ncclReduceScatter(send, recv, n, dt, nccl_redop(rq->redop), s->nc, s->stream), deadline);
        return SL_OK;
    case COMM_OP_ALL_REDUCE:
        if (n == 0)
            return SL_OK;
        NCCL_TRY(c, ncclAllReduce(send, recv, n, dt, nccl_redop(rq->redop), s->nc, s->stream), deadline);
        return SL_OK;
    case COMM_OP_BROADCAST:
        if (n == 0)
            return SL_OK;
        NCCL_TRY(c, ncclBroadcast(recv, recv, n, dt, rq->root, s->nc, s->stream), deadline);
        return SL_OK;
    case COMM_OP_BARRIER:
        NCCL_TRY(c, ncclAllReduce(s->barrier_buf, s->barrier_buf, 1, ncclInt32, ncclSum, s->nc, s->stream),
                 deadline);
        return SL_OK;
    default:
        return sl_errorf(SL_ERR_INTERNAL, "comm %s: unknown op %d", c->name, (int)rq->kind);
    }
}

/* ---- failure and the watchdog --------------------------------------------- */

/* Marks the comm failed (first message wins) and aborts the NCCL
 * communicator so that its kernels exit and streams waiting on them move
 * on. Caller holds mu. */
static void fail_locked(comm *c, const char *msg) {
    nccl_state *s = c->impl;
    if (!s->failed) {
        s->failed = true;
        snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
        s->t_failed = sl_now();
        LOG_ERROR("comm %s (nccl): %s; the comm is failed, its later ops return an error", c->name, msg);
        pthread_cond_broadcast(&s->cv_done); /* a staged submit draining the ops in flight stops */
    }
    if (s->nc_live) {
        ncclCommAbort(s->nc);
        s->nc_live = false;
        s->nc = NULL;
    }
}

/* w, the oldest op in flight, is over: its `done` completed (completed =
 * true), or it failed or was given up. Caller holds mu. */
static void finish_locked(comm *c, nccl_work *w, bool completed, sl_status st, const char *err) {
    nccl_state *s = c->impl;
    s->fl_head = w->next;
    if (!s->fl_head)
        s->fl_tail = NULL;
    w->next = NULL;
    w->in_flight = false;
    if (st == SL_OK && s->failed) {
        st = SL_ERR_COMM;
        err = s->fail_msg;
    }
    w->st = st;
    if (st != SL_OK)
        snprintf(w->err, sizeof w->err, "%s", err);
    if (completed)
        atomic_store(&s->done_seq, w->base.rq.seq);
    if (w->released) {
        w->next = s->pool;
        s->pool = w;
    }
    pthread_cond_broadcast(&s->cv_done);
}

/* How long, after the comm failed (and the communicator was aborted), the
 * ops in flight get to complete their `done` events before they are given up. */
static double abort_grace_s(const comm *c) {
    return c->opts.timeout_s < ABORT_GRACE_S ? c->opts.timeout_s : ABORT_GRACE_S;
}

/* The comm failed more than abort_grace_s ago and ops are still in flight:
 * the aborted kernels did not let their `done` events complete (a kernel
 * that ignores the abort, a dead device). Finishes every op in flight with
 * SL_ERR_COMM and the failure reason, so that waiters (a barrier, a staged
 * submit, comm_destroy) return instead of waiting forever. Their events may
 * still be pending on the comm stream: that is why they are never recorded
 * again (submit refuses once the comm failed) and state_free bounds its wait
 * for the stream. Caller holds mu. */
static void abandon_in_flight_locked(comm *c) {
    nccl_state *s = c->impl;
    if (!s->fl_head)
        return;
    double grace = abort_grace_s(c);
    uint64_t first = s->fl_head->base.rq.seq, last = s->fl_tail->base.rq.seq;
    LOG_ERROR("comm %s (nccl): ops #%llu..#%llu did not complete within %.1f s after the NCCL communicator "
              "was aborted; giving them up (their waiters get SL_ERR_COMM, their buffers' contents are "
              "undefined, the comm stream may stay blocked: restart the job)",
              c->name, (unsigned long long)first, (unsigned long long)last, grace);
    char err[sizeof s->fail_msg + 128];
    snprintf(err, sizeof err, "given up %.1f s after the NCCL abort: %s", grace, s->fail_msg);
    while (s->fl_head)
        finish_locked(c, s->fl_head, false, SL_ERR_COMM, err);
    s->abandoned = true;
}

static void *watchdog_main(void *arg) {
    comm *c = arg;
    nccl_state *s = c->impl;
    char msg[512];
    /* Events and the communicator belong to the comm's device. */
    cudaError_t de = cudaSetDevice(s->device);
    if (de != cudaSuccess)
        LOG_WARN("comm %s (nccl): watchdog cudaSetDevice(%d) failed: %s", c->name, s->device,
                 cudaGetErrorString(de));
    pthread_mutex_lock(&s->mu);
    for (;;) {
        nccl_work *w = s->fl_head;
        if (!w) {
            if (s->stop)
                break;
            struct timespec dl = sl_deadline_in(WATCH_IDLE_MS * 1e-3);
            pthread_cond_timedwait(&s->cv_work, &s->mu, &dl);
            continue;
        }
        cudaError_t e = cudaEventQuery(w->done);
        if (e == cudaSuccess) {
            finish_locked(c, w, true, SL_OK, NULL);
            continue;
        }
        if (e != cudaErrorNotReady) {
            snprintf(msg, sizeof msg, "%s #%llu: cudaEventQuery on its completion event failed: %s: %s",
                     comm_op_name(w->base.rq.kind), (unsigned long long)w->base.rq.seq, cudaGetErrorName(e),
                     cudaGetErrorString(e));
            fail_locked(c, msg);
            finish_locked(c, w, false, SL_ERR_COMM, msg);
            continue;
        }
        if (!w->started && cudaEventQuery(w->ready) == cudaSuccess) {
            w->started = true;
            w->t_ready = sl_now();
        }
        if (s->nc_live) {
            ncclResult_t ae = ncclSuccess;
            ncclResult_t q = ncclCommGetAsyncError(s->nc, &ae);
            if (q != ncclSuccess)
                ae = q;
            if (ae != ncclSuccess && ae != ncclInProgress) {
                snprintf(msg, sizeof msg, "NCCL reported an asynchronous error during %s #%llu: %s (%s)",
                         comm_op_name(w->base.rq.kind), (unsigned long long)w->base.rq.seq,
                         ncclGetErrorString(ae), ncclGetLastError(s->nc));
                fail_locked(c, msg); /* the aborted kernels normally let `done` complete */
                continue;
            }
        }
        if (s->failed && sl_now() - s->t_failed > abort_grace_s(c)) {
            abandon_in_flight_locked(c); /* they did not: do not poll forever */
            continue;
        }
        if (w->started && !s->failed && sl_now() - w->t_ready > c->opts.timeout_s) {
            comm_request rq = w->base.rq;
            pthread_mutex_unlock(&s->mu);
            comm_timeout_abort(c, &rq, c->opts.timeout_s); /* does not return */
        }
        pthread_mutex_unlock(&s->mu);
        sl_sleep_us(WATCH_BUSY_US);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- submit ---------------------------------------------------------------- */

static sl_status is_host_ptr(const void *p, bool *host) {
    struct cudaPointerAttributes a;
    SL_CHECK_CUDA(cudaPointerGetAttributes(&a, p));
    *host = a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged;
    return SL_OK;
}

static sl_status scratch_reserve(comm *c, size_t bytes) {
    nccl_state *s = c->impl;
    if (bytes <= s->scratch_bytes)
        return SL_OK;
    size_t want = bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : bytes;
    if (s->scratch) {
        SL_CHECK_CUDA(cudaStreamSynchronize(s->stream));
        SL_CHECK_CUDA(cudaFree(s->scratch));
        mem_record_free(c->opts.mem, MEM_CATEGORY_COMM, s->scratch_bytes);
        s->scratch = NULL;
        s->scratch_bytes = 0;
    }
    SL_CHECK_CUDA(cudaMalloc(&s->scratch, want));
    s->scratch_bytes = want;
    mem_record_alloc(c->opts.mem, MEM_CATEGORY_COMM, want);
    return SL_OK;
}

/* Byte extents of rq's buffers: send (0 when in place or none), recv. */
static void extents(const comm *c, const comm_request *rq, size_t *send_b, size_t *recv_b) {
    size_t b = rq->count * comm_dtype_size(rq->dtype), k = (size_t)c->size;
    *send_b = *recv_b = 0;
    switch (rq->kind) {
    case COMM_OP_ALL_GATHER:
        *send_b = rq->send ? b : 0;
        *recv_b = k * b;
        break;
    case COMM_OP_REDUCE_SCATTER:
        *send_b = k * b;
        *recv_b = b;
        break;
    case COMM_OP_ALL_REDUCE:
        *send_b = rq->send == rq->recv ? 0 : b;
        *recv_b = b;
        break;
    case COMM_OP_BROADCAST:
        *recv_b = b;
        break;
    default:
        break;
    }
}

/* Host buffers: copies in, runs the op through the device scratch, waits
 * for it (through the watchdog, which enforces the timeout), copies out.
 * In-place forms stay in place inside the scratch. Caller holds mu and has
 * put w in flight after this returns its enqueue part; see nccl_submit. */
static sl_status stage_in_and_enqueue(comm *c, nccl_work *w, bool send_host, bool recv_host, void **dev_out,
                                      double deadline) {
    nccl_state *s = c->impl;
    const comm_request *rq = &w->base.rq;
    size_t send_b, recv_b, b = rq->count * comm_dtype_size(rq->dtype);
    extents(c, rq, &send_b, &recv_b);
    bool rs_in_place = rq->kind == COMM_OP_REDUCE_SCATTER && rq->recv == (const char *)rq->send + c->rank * b;
    /* Scratch layout: [recv area | send area]; in place: one area. */
    size_t recv_area = recv_host ? (rs_in_place ? send_b : recv_b) : 0;
    size_t send_area = send_host && !rs_in_place ? send_b : 0;
    SL_TRY(scratch_reserve(c, recv_area + send_area + 16));
    char *sc = s->scratch;
    const void *dsend = rq->send;
    void *drecv = rq->recv;
    cudaStream_t st = s->stream;
    if (rs_in_place) { /* send and recv are one host buffer */
        SL_CHECK_CUDA(cudaMemcpyAsync(sc, rq->send, send_b, cudaMemcpyHostToDevice, st));
        dsend = sc;
        drecv = sc + c->rank * b;
    } else {
        if (recv_host) {
            drecv = sc;
            /* Inputs that live in recv: in-place all_gather's chunk r,
             * in-place all_reduce, the broadcast buffer (root's matters). */
            if (rq->kind == COMM_OP_ALL_GATHER && !rq->send)
                SL_CHECK_CUDA(cudaMemcpyAsync(sc + c->rank * b, (const char *)rq->recv + c->rank * b, b,
                                              cudaMemcpyHostToDevice, st));
            else if ((rq->kind == COMM_OP_ALL_REDUCE && rq->send == rq->recv) ||
                     (rq->kind == COMM_OP_BROADCAST && rq->root == c->rank))
                SL_CHECK_CUDA(cudaMemcpyAsync(sc, rq->recv, recv_b, cudaMemcpyHostToDevice, st));
        }
        if (rq->kind == COMM_OP_ALL_REDUCE && rq->send == rq->recv)
            dsend = drecv;
        else if (send_host && send_b) {
            SL_CHECK_CUDA(cudaMemcpyAsync(sc + recv_area, rq->send, send_b, cudaMemcpyHostToDevice, st));
            dsend = sc + recv_area;
        }
    }
    *dev_out = drecv;
    return enqueue_op(c, rq, dsend, drecv, deadline);
}

static sl_status nccl_submit(comm *c, const comm_request *rq, comm_work **work) {
    nccl_state *s = c->impl;
    const char *op = comm_op_name(rq->kind);
    bool send_host = false, recv_host = false;
    if (rq->count > 0 && rq->kind != COMM_OP_BARRIER) {
        if (rq->send)
            SL_TRY(is_host_ptr(rq->send, &send_host));
        SL_TRY(is_host_ptr(rq->recv, &recv_host));
    }
    bool staged = send_host || recv_host;
    double deadline = sl_now() + c->opts.timeout_s;
    int dev = -1;
    SL_CHECK_CUDA(cudaGetDevice(&dev));
    if (dev != s->device)
        return sl_errorf(SL_ERR_INVALID,
                         "comm %s on %s (nccl): submitted from a thread whose current CUDA device is %d; the comm "
                         "lives on device %d (cudaSetDevice(%d) in that thread first)",
                         op, c->name, dev, s->device, s->device);

    pthread_mutex_lock(&s->mu);
    /* A staged op makes blocking CUDA calls under mu (a pageable H2D copy may
     * synchronize with the comm stream; growing the scratch synchronizes and
     * frees). Let the ops in flight finish first, with mu released while
     * waiting, so that the watchdog can still time out a stuck one instead
     * of the job hanging silently. It costs nothing: a staged op waits for
     * them anyway (the comm stream runs in order). */
    while (staged && s->fl_head && !s->failed)
        pthread_cond_wait(&s->cv_done, &s->mu);
    if (s->failed) {
        sl_status st = sl_errorf(SL_ERR_COMM, "comm %s on %s (nccl): the comm failed earlier (%s); the job "
                                              "cannot continue",
                                 op, c->name, s->fail_msg);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    nccl_work *w = s->pool;
    if (w) {
        s->pool = w->next;
    } else {
        w = calloc(1, sizeof *w);
        cudaError_t e1 = w ? cudaEventCreateWithFlags(&w->ready, cudaEventDisableTiming) : cudaSuccess;
        cudaError_t e2 = w && e1 == cudaSuccess ? cudaEventCreateWithFlags(&w->done, cudaEventDisableTiming)
                                                : cudaSuccess;
        if (!w || e1 != cudaSuccess || e2 != cudaSuccess) {
            if (w && e1 == cudaSuccess)
                cudaEventDestroy(w->ready);
            free(w);
            pthread_mutex_unlock(&s->mu);
            if (!w)
                return sl_errorf(SL_ERR_NOMEM, "comm %s on %s: out of memory for a work handle", op, c->name);
            return sl_errorf(SL_ERR_CUDA, "comm %s on %s: cudaEventCreateWithFlags failed: %s", op, c->name,
                             cudaGetErrorString(e1 != cudaSuccess ? e1 : e2));
        }
        w->all_next = s->all;
        s->all = w;
    }
    w->base.c = c;
    w->base.rq = *rq;
    w->base.rq.seq = ++c->seq;
    w->next = NULL;
    w->in_flight = w->released = w->started = false;
    w->staged = staged;
    w->st = SL_OK;
    w->err[0] = 0;

    void *dev_recv = NULL;
    sl_status st = SL_OK;
    cudaError_t e = cudaEventRecord(w->ready, s->compute);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent(s->stream, w->ready, 0);
    if (e != cudaSuccess)
        st = sl_errorf(SL_ERR_CUDA, "comm %s #%llu on %s: ordering after the compute stream failed: %s", op,
                       (unsigned long long)w->base.rq.seq, c->name, cudaGetErrorString(e));
    if (st == SL_OK)
        st = staged ? stage_in_and_enqueue(c, w, send_host, recv_host, &dev_recv, deadline)
                    : enqueue_op(c, &w->base.rq, rq->send, rq->recv, deadline);
    if (st == SL_OK && (e = cudaEventRecord(w->done, s->stream)) != cudaSuccess)
        st = sl_errorf(SL_ERR_CUDA, "comm %s #%llu on %s: cudaEventRecord after the op failed: %s", op,
                       (unsigned long long)w->base.rq.seq, c->name, cudaGetErrorString(e));
    if (st != SL_OK) {
        /* The op sequence is broken on this rank: fail the comm (as the MPI
         * backend does), then end the job if it was a timeout. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s #%llu: %s", op, (unsigned long long)w->base.rq.seq, sl_error_message());
        comm_request failed_rq = w->base.rq;
        w->next = s->pool;
        s->pool = w;
        fail_locked(c, msg);
        pthread_mutex_unlock(&s->mu);
        if (st == SL_ERR_TIMEOUT)
            comm_timeout_abort(c, &failed_rq, c->opts.timeout_s);
        return sl_errorf(st, "%s", msg);
    }
    w->in_flight = true;
    if (s->fl_tail)
        s->fl_tail->next = w;
    else
        s->fl_head = w;
    s->fl_tail = w;
    pthread_cond_signal(&s->cv_work);
    if (staged) {
        /* The watchdog ends the job if the op stalls past the timeout. */
        while (w->in_flight)
            pthread_cond_wait(&s->cv_done, &s->mu);
        size_t send_b, recv_b;
        extents(c, &w->base.rq, &send_b, &recv_b);
        if (w->st == SL_OK && recv_host && recv_b > 0) {
            e = cudaMemcpyAsync(rq->recv, dev_recv, recv_b, cudaMemcpyDeviceToHost, s->stream);
            if (e == cudaSuccess)
                e = cudaStreamSynchronize(s->stream);
            if (e != cudaSuccess) {
                w->st = SL_ERR_CUDA;
                snprintf(w->err, sizeof w->err, "copying the result to host memory failed: %s",
                         cudaGetErrorString(e));
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    *work = &w->base;
    return SL_OK;
}

static sl_status work_error(comm *c, nccl_work *w) {
    return sl_errorf(w->st, "collective %s #%llu on %s (nccl) failed: %s", comm_op_name(w->base.rq.kind),
                     (unsigned long long)w->base.rq.seq, c->name, w->err);
}

static sl_status nccl_wait(comm *c, comm_work *bw, double timeout_s) {
    nccl_state *s = c->impl;
    nccl_work *w = (nccl_work *)bw;
    pthread_mutex_lock(&s->mu);
    if (w->staged) { /* finished inside submit */
        sl_status st = w->st == SL_OK ? SL_OK : work_error(c, w);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    if (bw->rq.kind == COMM_OP_BARRIER) { /* a barrier holds the host: see comm.h */
        struct timespec dl = sl_deadline_in(timeout_s);
        while (w->in_flight) {
            int rc = pthread_cond_timedwait(&s->cv_done, &s->mu, &dl);
            if (rc == ETIMEDOUT && w->in_flight) {
                pthread_mutex_unlock(&s->mu);
                return SL_ERR_TIMEOUT;
            }
        }
    }
    if (!w->in_flight && w->st != SL_OK) {
        sl_status st = work_error(c, w);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    if (s->failed || !s->nc_live) {
        sl_status st = sl_errorf(SL_ERR_COMM, "collective %s #%llu on %s (nccl): the comm failed (%s)",
                                 comm_op_name(bw->rq.kind), (unsigned long long)bw->rq.seq, c->name,
                                 s->fail_msg);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    ncclResult_t ae = ncclSuccess;
    ncclResult_t q = ncclCommGetAsyncError(s->nc, &ae);
    if (q != ncclSuccess)
        ae = q;
    if (ae != ncclSuccess && ae != ncclInProgress) {
        char msg[512];
        snprintf(msg, sizeof msg, "NCCL reported an asynchronous error: %s (%s)", ncclGetErrorString(ae),
                 ncclGetLastError(s->nc));
        fail_locked(c, msg);
        pthread_mutex_unlock(&s->mu);
        return sl_errorf(SL_ERR_COMM, "collective %s #%llu on %s (nccl): %s", comm_op_name(bw->rq.kind),
                         (unsigned long long)bw->rq.seq, c->name, msg);
    }
    pthread_mutex_unlock(&s->mu);
    /* Work enqueued on the compute stream from now on sees the result. */
    SL_CHECK_CUDA(cudaStreamWaitEvent(s->compute, w->done, 0));
    return SL_OK;
}

static sl_status nccl_test(comm *c, comm_work *bw, bool *done) {
    nccl_state *s = c->impl;
    nccl_work *w = (nccl_work *)bw;
    pthread_mutex_lock(&s->mu);
    bool in_flight = w->in_flight;
    pthread_mutex_unlock(&s->mu);
    if (!in_flight) {
        *done = true;
        return SL_OK;
    }
    cudaError_t e = cudaEventQuery(w->done);
    if (e != cudaSuccess && e != cudaErrorNotReady)
        SL_CHECK_CUDA(e);
    *done = e == cudaSuccess;
    return SL_OK;
}

static void nccl_release(comm *c, comm_work *bw) {
    nccl_state *s = c->impl;
    nccl_work *w = (nccl_work *)bw;
    pthread_mutex_lock(&s->mu);
    w->released = true;
    if (!w->in_flight) {
        w->next = s->pool;
        s->pool = w;
    }
    pthread_mutex_unlock(&s->mu);
}

/* NCCL cannot be asked where the peers are, so this reports this rank's
 * own position; every rank whose watchdog fires logs the same way. */
static void nccl_describe_stall(comm *c, const comm_request *rq, char *buf, size_t n) {
    nccl_state *s = c->impl;
    uint64_t done = atomic_load(&s->done_seq);
    snprintf(buf, n,
             "NCCL backend, GPU %d: this rank (r%d) submitted up to #%llu and its comm stream finished up to "
             "#%llu, so #%llu is stuck inside NCCL (a peer that never submitted it, ranks that submitted "
             "different ops, or a failed link). Ranks of this group that log no such line did not reach #%llu. "
             "NCCL's last error: %s",
             s->device, c->world_rank, (unsigned long long)c->seq, (unsigned long long)done,
             (unsigned long long)rq->seq, (unsigned long long)rq->seq,
             s->nc ? ncclGetLastError(s->nc) : "none");
}

/* Just before MPI_Abort: kernels stuck in NCCL exit. Waits at most 1 s for
 * a submit that holds mu (the job ends anyway). Polls with trylock:
 * pthread_mutex_timedlock takes a CLOCK_REALTIME deadline, and
 * sl_deadline_in's is CLOCK_MONOTONIC (long past on that clock). */
static void nccl_abort(comm *c) {
    nccl_state *s = c->impl;
    double deadline = sl_now() + 1.0;
    while (pthread_mutex_trylock(&s->mu) != 0) {
        if (sl_now() > deadline)
            return;
        sl_sleep_us(DRAIN_NAP_US);
    }
    if (s->nc_live) {
        ncclCommAbort(s->nc);
        s->nc_live = false;
        s->nc = NULL;
    }
    pthread_mutex_unlock(&s->mu);
}

static sl_status nccl_split(comm *c, int color, int key, const comm_opts *o, comm **out) {
    nccl_state *s = c->impl;
    comm *g = NULL;
    SL_TRY(comm_split(s->group, color, key, o->name, o, &g));
    sl_status st = comm_create_nccl(g, s->compute, o, out);
    if (st != SL_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sl_error_message());
        comm_destroy(g);
        return sl_errorf(st, "%s", msg);
    }
    ((nccl_state *)(*out)->impl)->owns_group = true;
    return SL_OK;
}

static void state_free(comm *c);

/* Waits for the ops in flight, at most timeout_s from now. An op whose
 * inputs became ready before this call is timed out by the watchdog first
 * (comm_timeout_abort); one whose `ready` came later or never (compute
 * stream stuck) reaches this deadline instead: the comm fails (the NCCL
 * communicator is aborted, as for an asynchronous error) and what is still
 * in flight after the abort grace period is given up. */
static void nccl_destroy(comm *c) {
    nccl_state *s = c->impl;
    double deadline = sl_now() + c->opts.timeout_s;
    pthread_mutex_lock(&s->mu);
    while (s->fl_head) {
        double now = sl_now();
        if (!s->failed && now > deadline) {
            const nccl_work *w = s->fl_head;
            char ready[96], msg[256];
            if (w->started)
                snprintf(ready, sizeof ready, "its inputs were ready %.1f s earlier", now - w->t_ready);
            else
                snprintf(ready, sizeof ready, "its inputs on the compute stream never became ready");
            snprintf(msg, sizeof msg, "comm_destroy: %s #%llu was still in flight after %.1f s (%s)",
                     comm_op_name(w->base.rq.kind), (unsigned long long)w->base.rq.seq, c->opts.timeout_s,
                     ready);
            fail_locked(c, msg);
            continue;
        }
        if (s->failed && now - s->t_failed > abort_grace_s(c)) {
            abandon_in_flight_locked(c); /* as the watchdog would: whoever comes first */
            break;
        }
        double until = s->failed ? s->t_failed + abort_grace_s(c) : deadline;
        struct timespec dl = sl_deadline_in(until > now ? until - now + 1e-3 : 1e-3);
        pthread_cond_timedwait(&s->cv_done, &s->mu, &dl);
    }
    pthread_mutex_unlock(&s->mu);
    state_free(c);
}

static const struct comm_ops nccl_ops = {
    .name = "nccl",
    .reduce_dtypes = 1u << COMM_DTYPE_F32 | 1u << COMM_DTYPE_F64 | 1u << COMM_DTYPE_BF16 |
                     1u << COMM_DTYPE_I32 | 1u << COMM_DTYPE_I64 | 1u << COMM_DTYPE_U8,
    .submit = nccl_submit,
    .wait = nccl_wait,
    .test = nccl_test,
    .release = nccl_release,
    .describe_stall = nccl_describe_stall,
    .split = nccl_split,
    .destroy = nccl_destroy,
    .abort = nccl_abort,
};

/* ---- create / free ------------------------------------------------------------ */

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

static void state_free(comm *c) {
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
            sl_status st = nccl_settle_at(__FILE__, __LINE__, c, r, "ncclCommFinalize", deadline);
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
            double limit = s->abandoned ? abort_grace_s(c) : c->opts.timeout_s;
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
    SL_TRY(comm_all_reduce(s->group, &v, &v, 1, COMM_DTYPE_I32, COMM_REDOP_MIN));
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
    sl_status st = comm_all_gather(s->group, &me, all, sizeof me, COMM_DTYPE_U8);
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
    SL_TRY(comm_broadcast(s->group, &uid, sizeof uid, COMM_DTYPE_U8, 0));
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
                        ? nccl_settle_at(__FILE__, __LINE__, c, r, "ncclCommInitRankConfig", deadline)
                        : nccl_fail_at(__FILE__, __LINE__, c, r, "ncclCommInitRankConfig");
    if (ist != SL_OK) {
        if (s->nc)
            ncclCommAbort(s->nc);
        s->nc = NULL;
    } else {
        s->nc_live = true;
    }
    SL_TRY(agree(c, ist == SL_OK, "ncclCommInitRankConfig"));

    /* 5. The watchdog. */
    int err = pthread_create(&s->watchdog, NULL, watchdog_main, c);
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
    c->ops = &nccl_ops;
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
        state_free(c);
        return sl_errorf(st, "%s", msg);
    }
    *out = c;
    return SL_OK;
}
