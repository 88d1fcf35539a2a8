/* parallel/comm.h: collectives within a group of ranks (DESIGN section 6).
 *
 * defines: comm, comm_work, comm_opts, comm_redop, comm_op_kind,
 *          comm_request, struct comm_ops, comm_opts_default, comm_create_mpi,
 *          comm_create_nccl, comm_split, comm_destroy, comm_rank, comm_size, comm_name,
 *          comm_all_gather[_async], comm_reduce_scatter[_async],
 *          comm_all_reduce[_async], comm_broadcast[_async], comm_barrier[_async],
 *          comm_work_wait, comm_work_test, comm_work_begin, comm_timeout_abort,
 *          comm_last_seq, comm_op_name
 *
 * Does not: pad buffers (FSDP pads units to a multiple of the group size),
 * pick groups (parallel/plan and parallel/fsdp decide who shards with whom),
 * or move data between host and device (the NCCL backend stages host
 * buffers for its own use only). Two backends fill struct comm_ops: MPI
 * (host buffers, comm_create_mpi) and NCCL (device buffers, comm_create_nccl,
 * built with CUDA only; see "The NCCL backend" at the end); callers do not
 * test which one they have.
 *
 * Ops. Counts are in elements of `dtype`; k = comm_size(c), r = comm_rank(c).
 *   all_gather(send, recv, count):   recv (k*count) = concat over ranks of send (count).
 *                                    In place: send == recv + r*count elements
 *                                    (or send == NULL): chunk r of recv already holds it.
 *   reduce_scatter(send, recv, count, op): recv (count) = op over ranks of chunk r of
 *                                    send (k*count). In place: recv == send + r*count.
 *   all_reduce(send, recv, count, op): recv (count) = op over ranks of send (count).
 *                                    In place: send == recv. Any count (odd, < k).
 *   broadcast(buf, count, root):     buf on every rank = buf of root.
 *   barrier:                         returns once every rank of the group entered it.
 * Reductions: SUM, MAX, MIN. Which dtypes reduce is a backend capability
 * (struct comm_ops.reduce_dtypes, checked in comm.c): MPI reduces F32, F64,
 * I32, I64 (BF16 and U8 move but do not reduce: SL_ERR_UNSUPPORTED); NCCL
 * reduces all six. A chunk (all_gather, reduce_scatter) or a whole buffer
 * (all_reduce, broadcast) is at most 2^31-1 bytes on the MPI backend (MPI
 * counts are int); callers split larger. NCCL takes size_t counts: no such
 * limit.
 *
 * Determinism (MPI backend). reduce_scatter and all_reduce sum in rank order:
 * out[i] = ((x_0[i] + x_1[i]) + x_2[i]) + ... in the element type, computed by
 * the one rank that owns element i's chunk, then (all_reduce) all-gathered.
 * So the result is bitwise identical on every rank, the same run to run, and
 * does not depend on timing or on which algorithm MPI picks for a message
 * size (Open MPI's MPI_Iallreduce and MPI_Ireduce_scatter_block choose by
 * size and group, which changes the association order). The MPI backend
 * implements them as MPI_Ialltoall(v) of segments into a double-buffered
 * scratch area (comm_opts.scratch_bytes) and reduces each segment on the comm
 * thread while the next one is in flight: the same bytes on the wire as a
 * ring reduce-scatter. Sums at k ranks differ from k = 1 by rounding only.
 *
 * Async and ownership. Each op has a blocking form and an _async form that
 * returns a comm_work handle. The handle belongs to the comm; the caller
 * passes it to comm_work_wait exactly once, which returns the handle to the
 * comm's pool whatever the outcome (it is invalid afterwards). comm_work_test
 * polls without releasing. The caller's buffers must stay valid and
 * untouched (recv) until comm_work_wait returns. Ops are submitted by one
 * thread at a time, in the same order on every rank of the group (the MPI
 * rule); waits may come in any order and from any thread. Ops run in
 * submission order. Each op gets the next sequence number of its comm (1, 2,
 * ...), the same on every rank, which names it in timeout reports.
 *
 * The comm thread (MPI backend). Every comm owns one thread that issues the
 * nonblocking MPI collective of each op in submission order and drives it to
 * completion with MPI_Test, sleeping briefly between tests when nothing
 * moves (Open MPI's nonblocking collectives progress only inside MPI calls,
 * so without this thread a collective would stall while the main thread
 * computes). One thread per comm rather than one per process: the shard and
 * replicate groups of HYBRID sharding then progress independently, and a
 * comm's queue, scratch buffers and failure state stay private to it; an idle
 * thread sleeps on a condition variable (waking every few ms to answer
 * timeout queries, below). Nonblocking collectives + MPI_Test rather than
 * blocking collectives run one by one on the thread: the loop must keep
 * answering peers' "where are you?" queries while it waits for a missing
 * rank, which a thread blocked in MPI_Allgather cannot do. The overlap each
 * variant achieves was not measured conclusively: on the 2-core dev VM (load
 * ~10 from other jobs) `shardlm bench comm --overlap` varied from 0 to 100%
 * between neighbouring sizes for both shardlm and plain MPI; measure it on
 * the target machine with that flag before relying on a number.
 *
 * Timeouts (stated failure behaviour). comm_work_wait and every blocking op
 * wait at most timeout_s (<= 0: comm_opts.timeout_s, from
 * parallel.comm_timeout_s). When it expires, the waiting rank asks every peer
 * of the group (point-to-point on a private communicator, answered by the
 * peers' comm threads) which op it has reached, logs
 *   "collective <op> #<seq> on <name> (<bytes> bytes, group of <k> ranks) did
 *    not complete in <t> s; ranks that did not arrive: ..."
 * naming world ranks, and calls MPI_Abort(MPI_COMM_WORLD, SL_EXIT_TIMEOUT) so
 * that mpirun/srun end every process of the job. It does not return: after a
 * missed collective the group's op sequence is broken on every rank, MPI
 * cannot cancel a pending collective, and MPI would still write into the
 * caller's buffers. Other failures (an MPI error) return SL_ERR_COMM with
 * MPI's message; the comm is then failed and later ops return SL_ERR_COMM.
 *
 * The NCCL backend (parallel/cuda/comm_nccl.c, comm_nccl_setup.c; verified
 * by compiling only until tests/gpu/test_nccl_comm runs on a GPU machine).
 * - Setup (comm_create_nccl, collective over `group`): the ranks all-gather
 *   their GPU's PCI bus id and host name over group and refuse, on every
 *   rank, two ranks on one GPU (SL_ERR_COMM naming both world ranks: one GPU
 *   per rank, CUDA_VISIBLE_DEVICES per local rank); rank 0 calls
 *   ncclGetUniqueId and broadcasts it over group; every rank calls
 *   ncclCommInitRankConfig with blocking = 0, so that init (and finalize)
 *   give up after timeout_s instead of hanging. A failure on one rank fails
 *   comm_create_nccl on every rank (an all_reduce over group agrees first).
 * - Buffers: device (or managed) memory of the comm's device. Host memory
 *   (cudaPointerGetAttributes says neither) is staged through one device
 *   scratch buffer, grown on demand and recorded under MEM_CATEGORY_COMM,
 *   and that op is synchronous for the host: it has finished, its result
 *   copied back, when the call (blocking or _async) returns (it first
 *   waits, on the host, for the comm's earlier ops to finish, and runs
 *   after the compute-stream work enqueued before it). So small
 *   control reductions on host variables (a grad-norm sum, a flag) work as
 *   on the MPI backend.
 * - Ordering (device buffers). Submitting an op records an event on
 *   compute_stream, makes the comm stream wait on it, enqueues the NCCL
 *   call on the comm stream and records a `done` event: the op sees all
 *   compute work enqueued before its submission, and compute keeps running
 *   meanwhile. comm_work_wait does not block the host: it checks
 *   ncclCommGetAsyncError, then makes compute_stream wait on `done`, so work
 *   enqueued on compute_stream after the wait sees the result (the host sees
 *   it after synchronizing compute_stream). The blocking forms are submit +
 *   wait, hence stream-ordered in the same way: the host does NOT see
 *   results when they return (device buffers are read through the compute
 *   stream anyway). The exception is barrier: its wait blocks the host until
 *   every rank reached it (bounded by the timeout). comm_work_test reports
 *   whether `done` completed (cudaEventQuery). The caller must not write
 *   send buffers on any stream before the op is done, nor read recv on a
 *   stream other than compute_stream before a wait.
 * - In place: as under "Ops"; NCCL supports those forms directly.
 * - Determinism: NCCL sums in its own algorithm's order (ring or tree, split
 *   over channels), not in rank order: results are reproducible run to run
 *   on the same topology, NCCL version and environment (NCCL_ALGO and
 *   NCCL_PROTO fixed), but not bitwise equal to the MPI backend's, and
 *   all_reduce results are identical on every rank.
 * - Failures: a thread per comm (the watchdog) follows the ops in flight.
 *   When ncclCommGetAsyncError reports an error, the comm is failed: the
 *   NCCL communicator is aborted (its kernels exit, so streams waiting on
 *   them move on with undefined buffer contents) and the op's wait, or the
 *   next op on the comm, returns SL_ERR_COMM with NCCL's error string and
 *   last error. An error that happens after a wait returned is reported by
 *   the next op or wait on the comm. The ops in flight at the abort get a
 *   grace period of min(timeout_s, 10 s) for their kernels to exit; one
 *   that still has not finished then (a kernel that ignores the abort, a
 *   lost device) is given up: it is marked failed with SL_ERR_COMM and the
 *   abort's reason ("given up ... after the NCCL abort: <reason>"), so that
 *   a barrier's wait, a host-staged op and comm_destroy return instead of
 *   waiting forever; the comm stream may stay blocked and the job should
 *   end (restart it). An op whose inputs have been ready
 *   (its compute event completed) for longer than timeout_s is reported
 *   like an MPI timeout ("collective <op> #<seq> ... did not complete"),
 *   then ncclCommAbort, then MPI_Abort(MPI_COMM_WORLD, SL_EXIT_TIMEOUT).
 *   NCCL cannot be asked which peers arrived, so the report gives this
 *   rank's own position (submitted and finished sequence numbers); every
 *   rank that is stuck logs the same way, and a rank that logs nothing did
 *   not reach the op.
 * - comm_split: splits the MPI group (same color/key rule) and creates a
 *   fresh NCCL comm over the new group, which it owns; the result is an
 *   NCCL comm on the same device and compute stream.
 * - comm_destroy: waits for the ops in flight, at most timeout_s from the
 *   call (an op whose inputs were ready before it is timed out by the
 *   watchdog first, as above). If ops are still in flight then (their
 *   inputs on the compute stream became ready late or never), the comm is
 *   failed as for an NCCL error ("comm_destroy: <op> #<seq> was still in
 *   flight ..." logged, communicator aborted) and they get the abort's
 *   grace period, then are given up. Then it stops the watchdog, runs
 *   ncclCommFinalize + ncclCommDestroy (bounded by timeout_s; abort if
 *   finalize times out) unless the communicator was aborted, waits for the
 *   comm stream at most timeout_s (the grace period after ops were given
 *   up), destroys the stream and events, and frees the scratch; if the
 *   stream is still busy its device buffers are left allocated (logged)
 *   rather than freed with a cudaFree that would block. Every wait in it
 *   is bounded (by timeout_s or the grace period), so it returns whatever
 *   the device does, unless ncclCommAbort itself blocks (NCCL states no
 *   bound for it).
 * - Threads: ops are submitted by one thread at a time, as for MPI; that
 *   thread's current CUDA device must be the comm's device.
 */
#ifndef SL_PARALLEL_COMM_H
#define SL_PARALLEL_COMM_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/mem.h"
#include "runtime/tensor.h"
#include "runtime/status.h"

/* Element types are the tensors' sl_dtype (runtime/tensor.h); a backend
 * says which it reduces (comm_ops.reduce_dtypes), every one can be moved. */

typedef enum { COMM_REDOP_SUM = 0, COMM_REDOP_MAX, COMM_REDOP_MIN, COMM_REDOP_COUNT } comm_redop;

typedef enum {
    COMM_OP_ALL_GATHER = 0,
    COMM_OP_REDUCE_SCATTER,
    COMM_OP_ALL_REDUCE,
    COMM_OP_BROADCAST,
    COMM_OP_BARRIER,
    COMM_OP_COUNT
} comm_op_kind;

typedef struct {
    double timeout_s;     /* default wait limit; parallel.comm_timeout_s */
    size_t scratch_bytes; /* reduction staging per comm (two halves); >= 4 KiB */
    mem_accountant *mem;  /* records scratch under MEM_CATEGORY_COMM; may be NULL */
    const char *name;     /* "world", "shard", "replicate": used in messages; copied */
} comm_opts;

/* timeout_s 300, scratch_bytes 8 MiB, mem NULL, name "world". */
void comm_opts_default(comm_opts *o);

typedef struct comm comm;

/* One op as submitted; backends read it, callers use the functions below. */
typedef struct {
    comm_op_kind kind;
    const void *send; /* NULL for broadcast, barrier, in-place all_gather */
    void *recv;       /* broadcast: the buffer */
    size_t count;     /* see "Ops" above */
    sl_dtype dtype;
    comm_redop redop;
    int root;         /* broadcast */
    uint64_t seq;     /* set at submission */
} comm_request;

/* A submitted op. Backends embed it as the first member of their own work
 * struct and own its memory. */
typedef struct comm_work {
    comm *c;
    comm_request rq;
} comm_work;

/* The backend table. Callers never use it directly nor test which backend a
 * comm has. Arguments were checked by comm.c (ranks, aliasing, sizes). */
struct comm_ops {
    const char *name; /* "mpi", "nccl" */
    /* Bit (1u << dtype) for each dtype this backend reduces (reduce_scatter,
     * all_reduce); comm.c refuses the others with SL_ERR_UNSUPPORTED. */
    unsigned reduce_dtypes;
    /* Queues rq (assigning rq.seq) and returns its work. */
    sl_status (*submit)(comm *c, const comm_request *rq, comm_work **work);
    /* SL_OK when done (its status otherwise); SL_ERR_TIMEOUT leaves w pending. */
    sl_status (*wait)(comm *c, comm_work *w, double timeout_s);
    sl_status (*test)(comm *c, comm_work *w, bool *done);
    /* Returns a finished work to the pool. */
    void (*release)(comm *c, comm_work *w);
    /* After a timeout: asks the peers where they are and writes a sentence
     * naming the ranks that did not arrive at rq.seq. */
    void (*describe_stall)(comm *c, const comm_request *rq, char *buf, size_t n);
    /* Collective over c: a new comm of the ranks with the same color. */
    sl_status (*split)(comm *c, int color, int key, const comm_opts *o, comm **out);
    /* Waits for submitted ops, stops the comm thread, frees everything. */
    void (*destroy)(comm *c);
    /* After a timeout, just before MPI_Abort: stops what the backend still
     * runs (ncclCommAbort). NULL: nothing to stop. */
    void (*abort)(comm *c);
};

struct comm {
    const struct comm_ops *ops;
    void *impl; /* backend state, owned */
    int rank;   /* in this group */
    int size;
    int world_rank;
    comm_opts opts;
    char name[32];
    uint64_t seq; /* last submitted op; written by the backend's submit */
};

/* Collective over base: a comm of base's ranks. base is duplicated (the
 * caller keeps and frees its own). Starts the comm thread. Needs MPI
 * initialized with MPI_THREAD_MULTIPLE (topology_init). On error *out is
 * NULL and nothing is left allocated. */
sl_status comm_create_mpi(MPI_Comm base, const comm_opts *o, comm **out);
/* Collective over group (an MPI-backed comm: comm_create_mpi or comm_split of
 * one): an NCCL communicator over the same ranks in the same order, on the
 * calling process's current CUDA device, with its own comm stream.
 * compute_stream (cudaStream_t of the backend, may be NULL = the legacy
 * default stream) is the stream ops are ordered against (see "The NCCL
 * backend"). o as comm_create_mpi (name, timeout_s, mem; scratch_bytes is
 * unused). group stays the caller's and must outlive the result (timeout
 * reports ask the peers over it). Without CUDA in the build:
 * SL_ERR_UNSUPPORTED "built without CUDA". On error *out is NULL. */
sl_status comm_create_nccl(comm *group, void *compute_stream, const comm_opts *o, comm **out);
/* Collective over c (submitted ops need not be finished): ranks with the
 * same color form a new comm, ordered by key then rank. o may be NULL (c's
 * options, with name). The new comm is independent: destroy it before or
 * after c. */
sl_status comm_split(comm *c, int color, int key, const char *name, const comm_opts *o, comm **out);
/* Collective. Waits (with timeout) for every submitted op; handles not yet
 * waited become invalid. NULL is a no-op. */
void comm_destroy(comm *c);

int comm_rank(const comm *c);
int comm_size(const comm *c);
const char *comm_name(const comm *c);
/* Sequence number of the last op submitted on c (0 before the first). */
uint64_t comm_last_seq(const comm *c);

sl_status comm_all_gather(comm *c, const void *send, void *recv, size_t count, sl_dtype dt);
sl_status comm_all_gather_async(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                                comm_work **work);
sl_status comm_reduce_scatter(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                              comm_redop op);
sl_status comm_reduce_scatter_async(comm *c, const void *send, void *recv, size_t count,
                                    sl_dtype dt, comm_redop op, comm_work **work);
sl_status comm_all_reduce(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                          comm_redop op);
sl_status comm_all_reduce_async(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                                comm_redop op, comm_work **work);
sl_status comm_broadcast(comm *c, void *buf, size_t count, sl_dtype dt, int root);
sl_status comm_broadcast_async(comm *c, void *buf, size_t count, sl_dtype dt, int root,
                               comm_work **work);
sl_status comm_barrier(comm *c);
sl_status comm_barrier_async(comm *c, comm_work **work);

/* Waits until w is done or timeout_s (<= 0: the comm's timeout) passes, then
 * releases w. Returns the op's status. On timeout: logs, aborts the job with
 * SL_EXIT_TIMEOUT, does not return (see "Timeouts"). */
sl_status comm_work_wait(comm_work *w, double timeout_s);
/* *done = whether w has finished; w stays owned by the caller's wait. */
sl_status comm_work_test(comm_work *w, bool *done);
/* For backends whose own thread sees an op stall (the NCCL watchdog): logs
 * the timeout report of "Timeouts" for rq (describe_stall, then abort) and
 * ends the job with SL_EXIT_TIMEOUT. Does not return. */
void comm_timeout_abort(comm *c, const comm_request *rq, double timeout_s) __attribute__((noreturn));
/* For backends' submit: w is c's next op, rq stamped with c's next sequence
 * number (rq.seq = ++c->seq). Call with the backend's lock held. */
void comm_work_begin(comm *c, comm_work *w, const comm_request *rq);

const char *comm_op_name(comm_op_kind kind);

#endif
