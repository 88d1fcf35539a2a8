/* shardlm bench comm: collective bandwidth as nccl-tests reports it.
 *
 * defines: bench_comm_main, bench_comm_usage (called by `shardlm bench comm`)
 *
 * For each op and size: validate once (exact small-integer inputs, wrong
 * elements counted over every rank; any wrong element fails the command),
 * warm up, then time each iteration on every rank and report the median of
 * the per-iteration maximum over ranks. The peer in the same run is plain MPI
 * (MPI_Allgather, MPI_Reduce_scatter_block, MPI_Allreduce, MPI_Bcast, blocking)
 * called from the main thread on a duplicate of the same group.
 *   size   = bytes of the full buffer (all_gather: output, reduce_scatter:
 *            input, all_reduce and broadcast: the buffer), f32 elements
 *   algbw  = size / time
 *   busbw  = algbw * (n-1)/n (all_gather, reduce_scatter), * 2(n-1)/n
 *            (all_reduce), * 1 (broadcast)
 * --backend nccl measures the NCCL backend instead (comm_create_nccl over the
 * MPI group, one GPU per rank: device local_rank): buffers on the device,
 * each iteration = submit + wait + synchronize the compute stream, timed on
 * the host (as nccl-tests does with its stream synchronize); same
 * validation, same algbw/busbw definitions; no plain-MPI peer column (the
 * peer for NCCL is nccl-tests itself, run separately). Builds without CUDA
 * refuse it with a message.
 * --overlap adds, per size, how much of the collective hides behind compute
 * on the main thread: comm alone, compute alone (a loop calibrated to the
 * comm time), and async op + compute + wait; overlap = (t_comm + t_compute -
 * t_both) / min(t_comm, t_compute). The MPI peer there is the nonblocking
 * collective issued from the main thread and waited after the compute, with
 * no comm thread to progress it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/device_info.h"
#include "kernels/ops.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "parallel/comm.h"
#include "parallel/topology.h"
#include "runtime/check.h"
#include "runtime/log.h"
#include "runtime/metrics.h"

void bench_comm_usage(FILE *out) {
    fprintf(out,
            "usage: [mpirun -np N] shardlm bench comm [--op all_gather|reduce_scatter|all_reduce|broadcast|all]\n"
            "           [--sizes 1K..16M | --sizes 4K,1M,...] [--factor 4] [--iters 20] [--warmup 5]\n"
            "           [--overlap] [--backend mpi|nccl] [--config FILE] [--set parallel.comm_timeout_s=S]\n\n"
            "Measures the shardlm collectives (MPI backend, comm thread) and plain MPI in the same\n"
            "run: median time, algbw and busbw (nccl-tests definitions) per size, after validating\n"
            "the result. --op all (default) runs all_gather, reduce_scatter and all_reduce.\n"
            "--overlap also measures how much of each collective hides behind main-thread compute.\n"
            "--backend nccl measures the NCCL backend on device buffers instead (one GPU per rank,\n"
            "device = local rank; needs a CUDA build; no MPI peer column, no --overlap).\n");
}

typedef struct {
    size_t sizes[64];
    int n_sizes;
    comm_op_kind ops[4];
    int n_ops;
    int iters, warmup;
    bool overlap;
    bool nccl; /* --backend nccl */
} bench_opts;

typedef struct {
    topology *t;
    comm *c;
    MPI_Comm peer; /* the plain-MPI comparison */
    const bench_opts *o;
    float *send, *recv; /* (max size) each, host */
    sl_backend *be;     /* --backend nccl: the CUDA backend (compute stream), else NULL */
    comm *group;        /* --backend nccl: the MPI comm under the NCCL one */
    float *dsend, *drecv; /* --backend nccl: device copies of send/recv */
    size_t dbytes;        /* each */
    double *times;      /* (iters) */
    float *work;        /* compute kernel's data */
} bench_ctx;

static sl_status parse_size(const char *s, size_t *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    double mul = 1;
    if (end && (*end == 'K' || *end == 'k'))
        mul = 1024.0, end++;
    else if (end && (*end == 'M' || *end == 'm'))
        mul = 1024.0 * 1024.0, end++;
    else if (end && (*end == 'G' || *end == 'g'))
        mul = 1024.0 * 1024.0 * 1024.0, end++;
    if (!end || end == s || *end != 0 || v <= 0 || v * mul > 1024.0 * 1024.0 * 1024.0)
        return sl_errorf(SL_ERR_INVALID, "--sizes: \"%s\" is not a size in bytes between 1 and 1G (e.g. 4K, 16M)", s);
    *out = (size_t)(v * mul);
    return SL_OK;
}

static sl_status parse_opts(const cli_args *a, bench_opts *o) {
    memset(o, 0, sizeof *o);
    const char *v = cli_get(a, "iters");
    o->iters = v ? atoi(v) : 20;
    v = cli_get(a, "warmup");
    o->warmup = v ? atoi(v) : 5;
    SL_CHECK_ARG(o->iters >= 1 && o->iters <= 100000, "--iters must be 1..100000");
    SL_CHECK_ARG(o->warmup >= 0 && o->warmup <= 100000, "--warmup must be 0..100000");
    o->overlap = cli_has(a, "overlap");
    const char *be = cli_get(a, "backend");
    SL_CHECK_ARG(!be || strcmp(be, "mpi") == 0 || strcmp(be, "nccl") == 0,
                 "--backend \"%s\": expected mpi or nccl", be ? be : "");
    o->nccl = be && strcmp(be, "nccl") == 0;
    if (o->nccl && !device_build_has_cuda())
        return sl_errorf(SL_ERR_UNSUPPORTED, "--backend nccl: this shardlm was built without CUDA, so it has no "
                                             "NCCL backend; rebuild with -DSHARDLM_CUDA=ON (CUDA toolkit and "
                                             "NCCL installed) or use --backend mpi");
    SL_CHECK_ARG(!(o->nccl && o->overlap),
                 "--overlap measures main-thread compute against the MPI backend; drop it with --backend nccl");
    v = cli_get(a, "factor");
    int factor = v ? atoi(v) : 4;
    SL_CHECK_ARG(factor >= 2, "--factor must be >= 2, got %s", v ? v : "");

    char spec[256];
    snprintf(spec, sizeof spec, "%s", cli_get(a, "sizes") ? cli_get(a, "sizes") : "1K..16M");
    char *dots = strstr(spec, "..");
    if (dots) {
        *dots = 0;
        size_t lo, hi;
        SL_TRY(parse_size(spec, &lo));
        SL_TRY(parse_size(dots + 2, &hi));
        SL_CHECK_ARG(lo <= hi, "--sizes %s..%s: the first size is larger than the last", spec, dots + 2);
        for (size_t s = lo; s <= hi && o->n_sizes < 64; s *= (size_t)factor)
            o->sizes[o->n_sizes++] = s;
    } else {
        for (char *tok = strtok(spec, ","); tok && o->n_sizes < 64; tok = strtok(NULL, ","))
            SL_TRY(parse_size(tok, &o->sizes[o->n_sizes++]));
    }
    SL_CHECK_ARG(o->n_sizes > 0, "--sizes: no size given");

    const char *op = cli_get(a, "op");
    if (!op || strcmp(op, "all") == 0) {
        o->ops[0] = COMM_OP_ALL_GATHER, o->ops[1] = COMM_OP_REDUCE_SCATTER, o->ops[2] = COMM_OP_ALL_REDUCE;
        o->n_ops = 3;
        return SL_OK;
    }
    for (int k = 0; k < COMM_OP_BARRIER; k++)
        if (strcmp(op, comm_op_name((comm_op_kind)k)) == 0) {
            o->ops[0] = (comm_op_kind)k;
            o->n_ops = 1;
            return SL_OK;
        }
    return sl_errorf(SL_ERR_INVALID, "--op \"%s\": expected all_gather, reduce_scatter, all_reduce, broadcast or all", op);
}

/* Elements per rank chunk (all_gather, reduce_scatter) or in the buffer. */
static size_t op_count(comm_op_kind op, size_t bytes, int n) {
    size_t elems = bytes / sizeof(float);
    return op == COMM_OP_ALL_GATHER || op == COMM_OP_REDUCE_SCATTER ? elems / (size_t)n : elems;
}

static size_t op_bytes(comm_op_kind op, size_t count, int n) {
    size_t b = count * sizeof(float);
    return op == COMM_OP_ALL_GATHER || op == COMM_OP_REDUCE_SCATTER ? b * (size_t)n : b;
}

static double bus_factor(comm_op_kind op, int n) {
    switch (op) {
    case COMM_OP_ALL_GATHER:
    case COMM_OP_REDUCE_SCATTER:
        return (double)(n - 1) / n;
    case COMM_OP_ALL_REDUCE:
        return 2.0 * (n - 1) / n;
    default:
        return 1.0;
    }
}

/* Inputs: element i of rank r = (r+1) * (i % 251 + 1): sums are exact. */
static void fill_inputs(bench_ctx *b, comm_op_kind op, size_t count) {
    int n = b->t->world, r = b->t->rank;
    size_t in = op == COMM_OP_REDUCE_SCATTER ? count * (size_t)n : count;
    for (size_t i = 0; i < in; i++)
        b->send[i] = (float)((r + 1) * (int)(i % 251 + 1));
    if (op == COMM_OP_BROADCAST)
        for (size_t i = 0; i < count; i++)
            b->recv[i] = r == 0 ? b->send[i] : 0.f;
}

static long count_wrong(const bench_ctx *b, comm_op_kind op, size_t count) {
    int n = b->t->world, r = b->t->rank;
    double tri = (double)n * (n + 1) / 2;
    long wrong = 0;
    switch (op) {
    case COMM_OP_ALL_GATHER:
        for (int src = 0; src < n; src++)
            for (size_t i = 0; i < count; i++)
                wrong += b->recv[(size_t)src * count + i] != (float)((src + 1) * (int)(i % 251 + 1));
        break;
    case COMM_OP_REDUCE_SCATTER:
        for (size_t i = 0; i < count; i++)
            wrong += b->recv[i] != (float)(tri * (double)(((size_t)r * count + i) % 251 + 1));
        break;
    case COMM_OP_ALL_REDUCE:
        for (size_t i = 0; i < count; i++)
            wrong += b->recv[i] != (float)(tri * (double)(i % 251 + 1));
        break;
    default:
        for (size_t i = 0; i < count; i++)
            wrong += b->recv[i] != (float)(i % 251 + 1);
        break;
    }
    return wrong;
}

static sl_status run_shardlm(bench_ctx *b, comm_op_kind op, size_t count, comm_work **w) {
    const float *send = b->be ? b->dsend : b->send;
    float *recv = b->be ? b->drecv : b->recv;
    switch (op) {
    case COMM_OP_ALL_GATHER:
        return comm_all_gather_async(b->c, send, recv, count, SL_DTYPE_F32, w);
    case COMM_OP_REDUCE_SCATTER:
        return comm_reduce_scatter_async(b->c, send, recv, count, SL_DTYPE_F32, COMM_REDOP_SUM, w);
    case COMM_OP_ALL_REDUCE:
        return comm_all_reduce_async(b->c, send, recv, count, SL_DTYPE_F32, COMM_REDOP_SUM, w);
    default:
        return comm_broadcast_async(b->c, recv, count, SL_DTYPE_F32, 0, w);
    }
}

/* Plain MPI on the main thread: blocking (MPI picks its tuned algorithm), or
 * nonblocking for the overlap comparison (*req is then pending). */
static sl_status run_mpi(bench_ctx *b, comm_op_kind op, size_t count, bool blocking, MPI_Request *req) {
    int c = (int)count;
    switch (op) {
    case COMM_OP_ALL_GATHER:
        if (blocking)
            SL_CHECK_MPI(MPI_Allgather(b->send, c, MPI_FLOAT, b->recv, c, MPI_FLOAT, b->peer));
        else
            SL_CHECK_MPI(MPI_Iallgather(b->send, c, MPI_FLOAT, b->recv, c, MPI_FLOAT, b->peer, req));
        break;
    case COMM_OP_REDUCE_SCATTER:
        if (blocking)
            SL_CHECK_MPI(MPI_Reduce_scatter_block(b->send, b->recv, c, MPI_FLOAT, MPI_SUM, b->peer));
        else
            SL_CHECK_MPI(MPI_Ireduce_scatter_block(b->send, b->recv, c, MPI_FLOAT, MPI_SUM, b->peer, req));
        break;
    case COMM_OP_ALL_REDUCE:
        if (blocking)
            SL_CHECK_MPI(MPI_Allreduce(b->send, b->recv, c, MPI_FLOAT, MPI_SUM, b->peer));
        else
            SL_CHECK_MPI(MPI_Iallreduce(b->send, b->recv, c, MPI_FLOAT, MPI_SUM, b->peer, req));
        break;
    default:
        if (blocking)
            SL_CHECK_MPI(MPI_Bcast(b->recv, c, MPI_FLOAT, 0, b->peer));
        else
            SL_CHECK_MPI(MPI_Ibcast(b->recv, c, MPI_FLOAT, 0, b->peer, req));
        break;
    }
    return SL_OK;
}

/* Compute stand-in: passes over an L2-sized array, reps times. */
static double compute(bench_ctx *b, long reps) {
    float *x = b->work;
    double t0 = MPI_Wtime();
    for (long r = 0; r < reps; r++)
        for (int i = 0; i < 65536; i++)
            x[i] = x[i] * 0.999f + 0.001f;
    return MPI_Wtime() - t0;
}

typedef enum { MODE_COMM, MODE_COMPUTE, MODE_BOTH } mode;

/* One timed iteration of impl (0 = shardlm, 1 = MPI). */
static sl_status one(bench_ctx *b, int impl, comm_op_kind op, size_t count, mode m, long reps, double *dt) {
    double t0 = MPI_Wtime();
    comm_work *w = NULL;
    MPI_Request req = MPI_REQUEST_NULL;
    if (m != MODE_COMPUTE) {
        if (impl == 0)
            SL_TRY(run_shardlm(b, op, count, &w));
        else
            SL_TRY(run_mpi(b, op, count, m == MODE_COMM, &req));
    }
    if (m != MODE_COMM)
        compute(b, reps);
    if (w)
        SL_TRY(comm_work_wait(w, 0));
    if (b->be) /* NCCL: the wait only orders the compute stream; the op is done when it is */
        SL_TRY(backend_synchronize(b->be));
    if (req != MPI_REQUEST_NULL)
        SL_CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    *dt = MPI_Wtime() - t0;
    return SL_OK;
}

/* Median over iterations of the slowest rank's time. */
static sl_status timed(bench_ctx *b, int impl, comm_op_kind op, size_t count, mode m, long reps, double *med) {
    for (int i = 0; i < b->o->warmup; i++)
        SL_TRY(one(b, impl, op, count, m, reps, &b->times[0]));
    SL_CHECK_MPI(MPI_Barrier(b->t->comm));
    for (int i = 0; i < b->o->iters; i++)
        SL_TRY(one(b, impl, op, count, m, reps, &b->times[i]));
    SL_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, b->times, b->o->iters, MPI_DOUBLE, MPI_MAX, b->t->comm));
    *med = metrics_median(b->times, b->o->iters);
    return SL_OK;
}

static sl_status validate(bench_ctx *b, int impl, comm_op_kind op, size_t count, long *wrong) {
    fill_inputs(b, op, count);
    if (b->be) { /* fresh device inputs, and recv poisoned so that an unwritten element fails */
        size_t nb = b->dbytes;
        SL_TRY(backend_memcpy(b->be, b->dsend, b->send, nb, BACKEND_COPY_H2D));
        if (op == COMM_OP_BROADCAST)
            SL_TRY(backend_memcpy(b->be, b->drecv, b->recv, nb, BACKEND_COPY_H2D));
        else {
            for (size_t i = 0; i < nb / sizeof(float); i++)
                b->recv[i] = -1.0f;
            SL_TRY(backend_memcpy(b->be, b->drecv, b->recv, nb, BACKEND_COPY_H2D));
        }
        SL_TRY(backend_synchronize(b->be));
    }
    double dt;
    SL_TRY(one(b, impl, op, count, MODE_COMM, 0, &dt));
    if (b->be) {
        SL_TRY(backend_memcpy(b->be, b->recv, b->drecv, b->dbytes, BACKEND_COPY_D2H));
        SL_TRY(backend_synchronize(b->be));
    }
    long mine = count_wrong(b, op, count);
    SL_CHECK_MPI(MPI_Allreduce(&mine, wrong, 1, MPI_LONG, MPI_SUM, b->t->comm));
    if (*wrong != 0)
        return sl_errorf(SL_ERR_INTERNAL, "%s %s of %zu bytes: %ld wrong elements over %d ranks",
                         impl == 0 ? "shardlm" : "MPI", comm_op_name(op), op_bytes(op, count, b->t->world),
                         *wrong, b->t->world);
    return SL_OK;
}

static sl_status bench_overlap(bench_ctx *b, comm_op_kind op, size_t count, double t_comm[2]) {
    /* calibrate the compute loop to the shardlm comm time */
    double t1 = 0;
    long reps = 1;
    while ((t1 = compute(b, reps)) < 2e-3 && reps < (1L << 30))
        reps *= 2;
    reps = (long)((double)reps * t_comm[0] / t1) + 1;
    SL_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &reps, 1, MPI_LONG, MPI_MAX, b->t->comm));
    double t_cmp, both[2], ov[2];
    SL_TRY(timed(b, 0, op, count, MODE_COMPUTE, reps, &t_cmp));
    for (int impl = 0; impl < 2; impl++) {
        SL_TRY(timed(b, impl, op, count, MODE_BOTH, reps, &both[impl]));
        double lo = t_comm[impl] < t_cmp ? t_comm[impl] : t_cmp;
        ov[impl] = 100.0 * (t_comm[impl] + t_cmp - both[impl]) / lo;
        ov[impl] = ov[impl] < 0 ? 0 : ov[impl] > 100 ? 100 : ov[impl];
    }
    if (b->t->rank == 0)
        printf("%12s %-15s compute %9.1f us | shardlm comm+compute %9.1f us, overlap %5.1f%% | "
               "MPI comm+compute %9.1f us, overlap %5.1f%%\n",
               "", "  overlap", t_cmp * 1e6, both[0] * 1e6, ov[0], both[1] * 1e6, ov[1]);
    return SL_OK;
}

static sl_status bench_run(bench_ctx *b) {
    const bench_opts *o = b->o;
    int n = b->t->world;
    if (b->t->rank == 0 && b->be) {
        device_info di;
        device_info_query(&di);
        printf("shardlm bench comm --backend nccl: %d ranks (%d nodes), one GPU each (%s, NCCL %d), f32 "
               "device buffers, %d iters after %d warmup, median of the slowest rank; each iteration is "
               "submit + wait + stream synchronize\n",
               n, b->t->n_nodes, di.name0, di.nccl_version, o->iters, o->warmup);
        printf("%12s %-15s %10s %11s %10s %10s\n", "size(B)", "op", "count", "time(us)", "algbw", "busbw");
        printf("%12s %-15s %10s %11s %10s %10s\n", "", "", "(elems)", "", "(GB/s)", "(GB/s)");
    } else if (b->t->rank == 0) {
        printf("shardlm bench comm: %d ranks (%d nodes), f32, %d iters after %d warmup, median of the "
               "slowest rank; MPI = plain MPI collectives in the same run\n",
               n, b->t->n_nodes, o->iters, o->warmup);
        printf("%12s %-15s %10s %11s %10s %10s | %11s %10s %10s\n", "size(B)", "op", "count",
               "time(us)", "algbw", "busbw", "MPI time", "algbw", "busbw");
        printf("%12s %-15s %10s %11s %10s %10s | %11s %10s %10s\n", "", "", "(elems)", "", "(GB/s)",
               "(GB/s)", "(us)", "(GB/s)", "(GB/s)");
    }
    for (int oi = 0; oi < o->n_ops; oi++) {
        comm_op_kind op = o->ops[oi];
        for (int si = 0; si < o->n_sizes; si++) {
            size_t count = op_count(op, o->sizes[si], n);
            if (count == 0)
                continue;
            size_t bytes = op_bytes(op, count, n);
            double t[2];
            for (int impl = 0; impl < (b->be ? 1 : 2); impl++) {
                long wrong = 0;
                SL_TRY(validate(b, impl, op, count, &wrong));
                SL_TRY(timed(b, impl, op, count, MODE_COMM, 0, &t[impl]));
            }
            if (b->t->rank == 0 && b->be) {
                double bf = bus_factor(op, n);
                printf("%12zu %-15s %10zu %11.1f %10.3f %10.3f\n", bytes, comm_op_name(op), count, t[0] * 1e6,
                       (double)bytes / t[0] * 1e-9, (double)bytes / t[0] * 1e-9 * bf);
                fflush(stdout);
            } else if (b->t->rank == 0) {
                double bf = bus_factor(op, n);
                printf("%12zu %-15s %10zu %11.1f %10.3f %10.3f | %11.1f %10.3f %10.3f\n", bytes, comm_op_name(op),
                       count, t[0] * 1e6, (double)bytes / t[0] * 1e-9, (double)bytes / t[0] * 1e-9 * bf,
                       t[1] * 1e6, (double)bytes / t[1] * 1e-9, (double)bytes / t[1] * 1e-9 * bf);
                fflush(stdout);
            }
            if (o->overlap)
                SL_TRY(bench_overlap(b, op, count, t));
        }
    }
    if (b->t->rank == 0)
        printf("all results validated (exact sums, 0 wrong elements)\n");
    return SL_OK;
}

static sl_status bench_setup_and_run(topology *t, const bench_opts *o, const sl_config *cfg) {
    bench_ctx b = {.t = t, .o = o, .peer = MPI_COMM_NULL};
    size_t max = 0;
    for (int i = 0; i < o->n_sizes; i++)
        max = o->sizes[i] > max ? o->sizes[i] : max;
    size_t elems = max / sizeof(float) + (size_t)t->world;
    b.send = calloc(elems, sizeof(float));
    b.recv = calloc(elems, sizeof(float));
    b.times = calloc((size_t)(o->iters > 1 ? o->iters : 1), sizeof(double));
    b.work = calloc(65536, sizeof(float));
    sl_status st = SL_OK;
    if (!b.send || !b.recv || !b.times || !b.work)
        st = sl_errorf(SL_ERR_NOMEM, "bench comm: out of memory for two buffers of %zu bytes", elems * sizeof(float));
    comm_opts co;
    comm_opts_default(&co);
    co.timeout_s = cfg->parallel.comm_timeout_s;
    if (st == SL_OK && !o->nccl)
        st = comm_create_mpi(t->comm, &co, &b.c);
    if (st == SL_OK && o->nccl) {
        device_info di;
        device_info_query(&di);
        b.dbytes = elems * sizeof(float);
        if (di.count <= 0)
            st = sl_errorf(SL_ERR_UNSUPPORTED, "--backend nccl: rank %d on %s sees no CUDA device (%s)", t->rank,
                           t->host, di.note);
        /* Device local_rank (modulo what is visible, for CUDA_VISIBLE_DEVICES
         * set per rank); comm_create_nccl refuses two ranks on one GPU. */
        if (st == SL_OK)
            st = backend_create_cuda(t->local_rank % di.count, 0, NULL, &b.be);
        if (st == SL_OK)
            st = backend_alloc(b.be, MEM_CATEGORY_COMM, b.dbytes, (void **)&b.dsend);
        if (st == SL_OK)
            st = backend_alloc(b.be, MEM_CATEGORY_COMM, b.dbytes, (void **)&b.drecv);
        if (st == SL_OK)
            st = comm_create_mpi(t->comm, &co, &b.group);
        if (st == SL_OK)
            st = comm_create_nccl(b.group, b.be->stream, &co, &b.c);
    }
    if (st == SL_OK && MPI_Comm_dup(t->comm, &b.peer) != MPI_SUCCESS)
        st = sl_errorf(SL_ERR_COMM, "bench comm: MPI_Comm_dup failed");
    if (st == SL_OK)
        st = bench_run(&b);
    if (b.peer != MPI_COMM_NULL)
        MPI_Comm_free(&b.peer);
    comm_destroy(b.c);
    comm_destroy(b.group);
    if (b.dsend)
        backend_free(b.be, MEM_CATEGORY_COMM, b.dsend, b.dbytes);
    if (b.drecv)
        backend_free(b.be, MEM_CATEGORY_COMM, b.drecv, b.dbytes);
    backend_destroy(b.be);
    free(b.send);
    free(b.recv);
    free(b.times);
    free(b.work);
    return st;
}

int bench_comm_main(int argc, char **argv) {
    cli_args a;
    static const char *const flags[] = {"overlap", NULL};
    static const char *const known[] = {"op",      "sizes",   "factor", "iters", "warmup",
                                        "overlap", "backend", "config", "set",   NULL};
    bench_opts o;
    sl_config cfg;
    sl_status st = cli_parse(&a, argc, argv, flags);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK)
        st = parse_opts(&a, &o);
    if (st == SL_OK)
        st = cli_load_config(&a, &cfg);
    if (st != SL_OK) {
        cli_report("bench comm", st);
        bench_comm_usage(stderr);
        return SL_EXIT_USAGE;
    }
    topology t;
    st = topology_init(&t, &argc, &argv, cfg.parallel.ranks_per_node);
    if (st == SL_OK) {
        log_init(t.rank, t.host, LOG_LEVEL_INFO);
        st = bench_setup_and_run(&t, &o, &cfg);
    }
    int code = cli_report("bench comm", st);
    if (code != SL_EXIT_OK && t.world > 1)
        topology_abort(&t, code);
    topology_finalize(&t);
    return code;
}
