/* parallel/comm.c: the backend-neutral half of comm.h: argument checks, the
 * blocking forms, waits and the timeout report. */
#include "parallel/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/log.h"

void comm_opts_default(comm_opts *o) {
    memset(o, 0, sizeof *o);
    o->timeout_s = 300.0;
    o->scratch_bytes = (size_t)8 << 20;
    o->mem = NULL;
    o->name = "world";
}

const char *comm_op_name(comm_op_kind kind) {
    static const char *const names[COMM_OP_COUNT] = {"all_gather", "reduce_scatter", "all_reduce",
                                                     "broadcast", "barrier"};
    return (unsigned)kind < COMM_OP_COUNT ? names[kind] : "?";
}

int comm_rank(const comm *c) { return c->rank; }
int comm_size(const comm *c) { return c->size; }
const char *comm_name(const comm *c) { return c->name; }

static bool overlaps(const void *a, size_t na, const void *b, size_t nb) {
    const char *pa = a, *pb = b;
    return pa < pb + nb && pb < pa + na;
}

/* Collective messages name element types in lower case ("bf16", "f32"). */
static void lower(char *s) {
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Checks what holds for every backend, then submits. */
static sl_status submit(comm *c, comm_request *rq, comm_work **work) {
    *work = NULL;
    const char *op = comm_op_name(rq->kind);
    SL_CHECK_ARG((unsigned)rq->dtype < SL_DTYPE_COUNT, "comm %s: unknown dtype %d", op, (int)rq->dtype);
    SL_CHECK_ARG((unsigned)rq->redop < COMM_REDOP_COUNT, "comm %s: unknown reduction %d", op,
                 (int)rq->redop);
    size_t es = dtype_size(rq->dtype), k = (size_t)c->size, r = (size_t)c->rank;
    SL_CHECK_ARG(rq->count <= SIZE_MAX / es / k, "comm %s: count %zu overflows", op, rq->count);
    size_t bytes = rq->count * es;
    bool has_data = rq->count > 0;
    bool reduces = rq->kind == COMM_OP_REDUCE_SCATTER || rq->kind == COMM_OP_ALL_REDUCE;
    if (reduces && !(c->ops->reduce_dtypes & (1u << rq->dtype))) {
        char can[96] = "", got[16];
        for (int d = 0; d < SL_DTYPE_COUNT; d++)
            if (c->ops->reduce_dtypes & (1u << d))
                snprintf(can + strlen(can), sizeof can - strlen(can), "%s%s", can[0] ? ", " : "",
                         dtype_name((sl_dtype)d));
        snprintf(got, sizeof got, "%s", dtype_name(rq->dtype));
        lower(can);
        lower(got);
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "comm %s on %s: the %s backend reduces %s, not %s (convert to f32 first)", op,
                         c->name, c->ops->name, can, got);
    }
    switch (rq->kind) {
    case COMM_OP_ALL_GATHER:
        SL_CHECK_ARG(!has_data || rq->recv, "comm all_gather: recv is NULL");
        if (rq->send == (const char *)rq->recv + r * bytes)
            rq->send = NULL; /* in place */
        SL_CHECK_ARG(!rq->send || !has_data || !overlaps(rq->send, bytes, rq->recv, k * bytes),
                     "comm all_gather: send overlaps recv without being chunk %zu of it (in place)", r);
        break;
    case COMM_OP_REDUCE_SCATTER:
        SL_CHECK_ARG(!has_data || (rq->send && rq->recv), "comm reduce_scatter: send or recv is NULL");
        SL_CHECK_ARG(!has_data || rq->recv == (const char *)rq->send + r * bytes ||
                         !overlaps(rq->send, k * bytes, rq->recv, bytes),
                     "comm reduce_scatter: recv overlaps send without being chunk %zu of it (in place)", r);
        break;
    case COMM_OP_ALL_REDUCE:
        SL_CHECK_ARG(!has_data || (rq->send && rq->recv), "comm all_reduce: send or recv is NULL");
        SL_CHECK_ARG(!has_data || rq->recv == rq->send || !overlaps(rq->send, bytes, rq->recv, bytes),
                     "comm all_reduce: send and recv overlap without being equal (in place)");
        break;
    case COMM_OP_BROADCAST:
        SL_CHECK_ARG(!has_data || rq->recv, "comm broadcast: buf is NULL");
        SL_CHECK_ARG(rq->root >= 0 && rq->root < c->size,
                     "comm broadcast: root %d is not a rank of comm %s (size %d)", rq->root, c->name,
                     c->size);
        break;
    case COMM_OP_BARRIER:
        break;
    default:
        return sl_errorf(SL_ERR_INVALID, "comm: unknown op %d", (int)rq->kind);
    }
    return c->ops->submit(c, rq, work);
}

static sl_status wait_now(comm *c, comm_request *rq) {
    comm_work *w;
    SL_TRY(submit(c, rq, &w));
    return comm_work_wait(w, 0);
}

sl_status comm_all_gather_async(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                                comm_work **work) {
    comm_request rq = {.kind = COMM_OP_ALL_GATHER, .send = send, .recv = recv, .count = count, .dtype = dt};
    return submit(c, &rq, work);
}

sl_status comm_all_gather(comm *c, const void *send, void *recv, size_t count, sl_dtype dt) {
    comm_request rq = {.kind = COMM_OP_ALL_GATHER, .send = send, .recv = recv, .count = count, .dtype = dt};
    return wait_now(c, &rq);
}

sl_status comm_reduce_scatter_async(comm *c, const void *send, void *recv, size_t count,
                                    sl_dtype dt, comm_redop op, comm_work **work) {
    comm_request rq = {.kind = COMM_OP_REDUCE_SCATTER, .send = send, .recv = recv, .count = count,
                       .dtype = dt, .redop = op};
    return submit(c, &rq, work);
}

sl_status comm_reduce_scatter(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                              comm_redop op) {
    comm_request rq = {.kind = COMM_OP_REDUCE_SCATTER, .send = send, .recv = recv, .count = count,
                       .dtype = dt, .redop = op};
    return wait_now(c, &rq);
}

sl_status comm_all_reduce_async(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                                comm_redop op, comm_work **work) {
    comm_request rq = {.kind = COMM_OP_ALL_REDUCE, .send = send, .recv = recv, .count = count,
                       .dtype = dt, .redop = op};
    return submit(c, &rq, work);
}

sl_status comm_all_reduce(comm *c, const void *send, void *recv, size_t count, sl_dtype dt,
                          comm_redop op) {
    comm_request rq = {.kind = COMM_OP_ALL_REDUCE, .send = send, .recv = recv, .count = count,
                       .dtype = dt, .redop = op};
    return wait_now(c, &rq);
}

sl_status comm_broadcast_async(comm *c, void *buf, size_t count, sl_dtype dt, int root,
                               comm_work **work) {
    comm_request rq = {.kind = COMM_OP_BROADCAST, .recv = buf, .count = count, .dtype = dt, .root = root};
    return submit(c, &rq, work);
}

sl_status comm_broadcast(comm *c, void *buf, size_t count, sl_dtype dt, int root) {
    comm_request rq = {.kind = COMM_OP_BROADCAST, .recv = buf, .count = count, .dtype = dt, .root = root};
    return wait_now(c, &rq);
}

sl_status comm_barrier_async(comm *c, comm_work **work) {
    comm_request rq = {.kind = COMM_OP_BARRIER, .dtype = SL_DTYPE_U8};
    return submit(c, &rq, work);
}

sl_status comm_barrier(comm *c) {
    comm_request rq = {.kind = COMM_OP_BARRIER, .dtype = SL_DTYPE_U8};
    return wait_now(c, &rq);
}

/* Bytes this rank contributes, as nccl-tests counts "size". */
static size_t request_bytes(const comm *c, const comm_request *rq) {
    size_t b = rq->count * dtype_size(rq->dtype);
    return rq->kind == COMM_OP_ALL_GATHER || rq->kind == COMM_OP_REDUCE_SCATTER ? b * (size_t)c->size : b;
}

void comm_timeout_abort(comm *c, const comm_request *rq, double timeout_s) {
    char why[1536];
    c->ops->describe_stall(c, rq, why, sizeof why);
    LOG_ERROR("collective %s #%llu on %s (%zu bytes, group of %d ranks) did not complete in %.1f s; %s. "
              "Aborting the job (exit code %d). Check the named ranks' logs; raise "
              "parallel.comm_timeout_s if they were only slow",
              comm_op_name(rq->kind), (unsigned long long)rq->seq, c->name, request_bytes(c, rq),
              c->size, timeout_s, why, SL_EXIT_TIMEOUT);
    fflush(stdout);
    fflush(stderr);
    if (c->ops->abort)
        c->ops->abort(c);
    MPI_Abort(MPI_COMM_WORLD, SL_EXIT_TIMEOUT);
    /* MPI_Abort does not return under mpirun; a singleton exits here. */
    _Exit(SL_EXIT_TIMEOUT);
}

void comm_work_begin(comm *c, comm_work *w, const comm_request *rq) {
    w->c = c;
    w->rq = *rq;
    w->rq.seq = ++c->seq;
}

sl_status comm_work_wait(comm_work *w, double timeout_s) {
    comm *c = w->c;
    double t = timeout_s > 0 ? timeout_s : c->opts.timeout_s;
    sl_status st = c->ops->wait(c, w, t);
    if (st == SL_ERR_TIMEOUT)
        comm_timeout_abort(c, &w->rq, t);
    c->ops->release(c, w);
    return st;
}

sl_status comm_work_test(comm_work *w, bool *done) { return w->c->ops->test(w->c, w, done); }

sl_status comm_split(comm *c, int color, int key, const char *name, const comm_opts *o, comm **out) {
    *out = NULL;
    SL_CHECK_ARG(color >= 0, "comm_split: color %d must be >= 0", color);
    comm_opts opts = o ? *o : c->opts;
    opts.name = name ? name : c->name;
    return c->ops->split(c, color, key, &opts, out);
}

void comm_destroy(comm *c) {
    if (c)
        c->ops->destroy(c);
}

uint64_t comm_last_seq(const comm *c) { return c->seq; }

#ifndef SHARDLM_HAVE_CUDA
/* The NCCL backend (parallel/cuda/comm_nccl.c) is compiled only with CUDA. */
sl_status comm_create_nccl(comm *group, void *compute_stream, const comm_opts *o, comm **out) {
    (void)group;
    (void)compute_stream;
    (void)o;
    *out = NULL;
    return sl_errorf(SL_ERR_UNSUPPORTED,
                     "comm_create_nccl: shardlm was built without CUDA, so there is no NCCL backend; "
                     "rebuild with -DSHARDLM_CUDA=ON on a machine with the CUDA toolkit and NCCL, or use "
                     "the MPI backend");
}
#endif
