/* parallel/cuda/comm_nccl_internal.h: what the two halves of the NCCL
 * backend share (built only with CUDA; not a public header: include it only
 * from parallel/cuda/comm_nccl*.c). comm_nccl.c holds the ops and the
 * watchdog, comm_nccl_setup.c creation and freeing; the design notes are at
 * the top of comm_nccl.c.
 *
 * defines: nccl_work, nccl_state, the backend's timing and size constants,
 *          comm_nccl_ops, comm_nccl_watchdog_main, comm_nccl_state_free,
 *          comm_nccl_fail_at, comm_nccl_settle_at, comm_nccl_abort_grace_s
 *
 * Ownership: a comm's nccl_state (c->impl) owns the NCCL communicator, the
 * comm stream, the device scratch and barrier word (MEM_CATEGORY_COMM), the
 * work structs and their events, and the watchdog thread; all on the CUDA
 * device `device`. Fields marked "under mu" are read and written only with
 * mu held.
 */
#ifndef SL_PARALLEL_CUDA_COMM_NCCL_INTERNAL_H
#define SL_PARALLEL_CUDA_COMM_NCCL_INTERNAL_H

#include <cuda_runtime.h>
#include <nccl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parallel/comm.h"
#include "runtime/status.h"

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

/* The backend's ops table (comm_nccl.c); comm_create_nccl installs it. */
extern const struct comm_ops comm_nccl_ops;

/* The watchdog thread's body, arg = the comm (comm_nccl.c). */
void *comm_nccl_watchdog_main(void *arg);

/* Frees c and its nccl_state after any prefix of setup; bounded waits only
 * (comm_nccl_setup.c). */
void comm_nccl_state_free(comm *c);

/* An NCCL call's failure r as SL_ERR_COMM at file:line, with NCCL's last
 * error (comm_nccl.c). */
sl_status comm_nccl_fail_at(const char *file, int line, comm *c, ncclResult_t r, const char *call);

/* Polls a nonblocking call's ncclInProgress until it settles, at most until
 * `deadline` (SL_ERR_TIMEOUT); caller holds mu or owns nc alone (comm_nccl.c). */
sl_status comm_nccl_settle_at(const char *file, int line, comm *c, ncclResult_t r, const char *call,
                              double deadline);

/* How long, after the comm failed, ops in flight get before they are given
 * up: min(timeout_s, ABORT_GRACE_S) (comm_nccl.c). */
double comm_nccl_abort_grace_s(const comm *c);

#endif
