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
 *
 * This file: the ops (submit, wait, test, release, describe_stall, abort,
 * split, destroy's wait for the ops in flight) and the watchdog. Setup and
 * teardown (device check, unique id, ncclCommInitRankConfig, freeing) are in
 * comm_nccl_setup.c; the state both share is in comm_nccl_internal.h.
 *
 * defines: comm_nccl_ops, comm_nccl_watchdog_main, comm_nccl_fail_at,
 *          comm_nccl_settle_at, comm_nccl_abort_grace_s (all internal)
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

#include "kernels/cuda/cuda_check.h"
#include "parallel/comm.h"
#include "parallel/cuda/comm_nccl_internal.h"
#include "runtime/check.h"
#include "runtime/log.h"

/* ---- NCCL calls ---------------------------------------------------------- */

sl_status comm_nccl_fail_at(const char *file, int line, comm *c, ncclResult_t r, const char *call) {
    nccl_state *s = c->impl;
    return sl_errorf_at(file, line, SL_ERR_COMM, "comm %s (nccl, rank %d of %d): %s failed: %s (%s)", c->name,
                        c->rank, c->size, call, ncclGetErrorString(r),
                        s && s->nc ? ncclGetLastError(s->nc) : ncclGetLastError(NULL));
}

/* A call on the nonblocking communicator may return ncclInProgress: poll
 * ncclCommGetAsyncError until it settles, at most until `deadline` (then
 * SL_ERR_TIMEOUT with a message). Caller holds mu (or owns nc alone). */
sl_status comm_nccl_settle_at(const char *file, int line, comm *c, ncclResult_t r, const char *call,
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
        return comm_nccl_fail_at(file, line, c, r, call);
    return SL_OK;
}

#define NCCL_TRY(c, call, deadline) SL_TRY(comm_nccl_settle_at(__FILE__, __LINE__, (c), (call), #call, (deadline)))

static ncclDataType_t nccl_dtype(sl_dtype dt) {
    switch (dt) {
    case SL_DTYPE_F32:
        return ncclFloat32;
    case SL_DTYPE_F64:
        return ncclFloat64;
    case SL_DTYPE_BF16:
        return ncclBfloat16;
    case SL_DTYPE_I32:
        return ncclInt32;
    case SL_DTYPE_I64:
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
    size_t n = rq->count, bytes = n * dtype_size(rq->dtype);
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
double comm_nccl_abort_grace_s(const comm *c) {
    return c->opts.timeout_s < ABORT_GRACE_S ? c->opts.timeout_s : ABORT_GRACE_S;
}

/* The comm failed more than comm_nccl_abort_grace_s ago and ops are still
 * in flight: the aborted kernels did not let their `done` events complete (a
 * kernel that ignores the abort, a dead device). Finishes every op in flight
 * with SL_ERR_COMM and the failure reason, so that waiters (a barrier, a
 * staged submit, comm_destroy) return instead of waiting forever. Their
 * events may still be pending on the comm stream: that is why they are never
 * recorded again (submit refuses once the comm failed) and
 * comm_nccl_state_free bounds its wait for the stream. Caller holds mu. */
static void abandon_in_flight_locked(comm *c) {
    nccl_state *s = c->impl;
    if (!s->fl_head)
        return;
    double grace = comm_nccl_abort_grace_s(c);
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

void *comm_nccl_watchdog_main(void *arg) {
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
        if (s->failed && sl_now() - s->t_failed > comm_nccl_abort_grace_s(c)) {
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
    size_t b = rq->count * dtype_size(rq->dtype), k = (size_t)c->size;
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
    size_t send_b, recv_b, b = rq->count * dtype_size(rq->dtype);
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
    comm_work_begin(c, &w->base, rq);
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
        if (s->failed && now - s->t_failed > comm_nccl_abort_grace_s(c)) {
            abandon_in_flight_locked(c); /* as the watchdog would: whoever comes first */
            break;
        }
        double until = s->failed ? s->t_failed + comm_nccl_abort_grace_s(c) : deadline;
        struct timespec dl = sl_deadline_in(until > now ? until - now + 1e-3 : 1e-3);
        pthread_cond_timedwait(&s->cv_done, &s->mu, &dl);
    }
    pthread_mutex_unlock(&s->mu);
    comm_nccl_state_free(c);
}

const struct comm_ops comm_nccl_ops = {
    .name = "nccl",
    .reduce_dtypes = 1u << SL_DTYPE_F32 | 1u << SL_DTYPE_F64 | 1u << SL_DTYPE_BF16 |
                     1u << SL_DTYPE_I32 | 1u << SL_DTYPE_I64 | 1u << SL_DTYPE_U8,
    .submit = nccl_submit,
    .wait = nccl_wait,
    .test = nccl_test,
    .release = nccl_release,
    .describe_stall = nccl_describe_stall,
    .split = nccl_split,
    .destroy = nccl_destroy,
    .abort = nccl_abort,
};
