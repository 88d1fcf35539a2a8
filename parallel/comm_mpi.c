/* parallel/comm_mpi.c: the MPI backend of comm.h (host buffers).
 *
 * One comm thread per comm runs the queued ops in submission order. Each op
 * is one or more nonblocking MPI collectives on a private duplicate of the
 * group (`data`), completed with MPI_Test in progress_wait(), which also
 * answers timeout queries on a second duplicate (`ctrl`). A third duplicate
 * (`setup`) is only used by the caller's thread (comm_split), so that no
 * blocking collective ever runs on a communicator with nonblocking
 * collectives in flight from another thread.
 *
 * Reductions: see "Determinism" in comm.h. Segments of at most
 * scratch_bytes/2 are exchanged with MPI_Ialltoall(v) into one half of the
 * scratch while the other half, received before, is reduced.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "parallel/comm.h"
#include "runtime/check.h"
#include "runtime/log.h"

enum { TAG_QUERY = 7301, TAG_REPLY = 7302 };
enum { REPLY_WORDS = 4 }; /* started seq, done seq, current kind, current bytes */
/* MPI_Test calls without progress before the comm thread starts napping. */
enum { SPIN_TESTS = 256, NAP_US = 20, IDLE_POLL_US = 5000 };

typedef struct mpi_work {
    comm_work base; /* first: comm_work* and mpi_work* convert */
    struct mpi_work *next;     /* queue or pool */
    struct mpi_work *all_next; /* every work ever allocated, for destroy */
    bool done;                 /* under mu */
    sl_status st;
    char err[512];
} mpi_work;

typedef struct {
    MPI_Comm data, ctrl, setup;
    int *world_of; /* (size) group rank -> world rank */
    char (*host_of)[64]; /* (size) group rank -> host name, for timeout reports */
    pthread_mutex_t mu;
    pthread_cond_t cv_queue; /* submit -> comm thread */
    pthread_cond_t cv_done;  /* comm thread -> waiters */
    bool sync_ready, thread_started;
    pthread_t thread;
    mpi_work *head, *tail; /* queued, not started; under mu */
    mpi_work *pool;        /* released works; under mu */
    mpi_work *all;         /* under mu */
    bool stop;             /* under mu */
    bool failed;           /* under mu */
    char fail_msg[512];
    /* Where this rank is; read by the query answerer and describe_stall. */
    _Atomic uint64_t started_seq, done_seq;
    _Atomic int cur_kind;
    _Atomic uint64_t cur_bytes;
    /* Comm thread only. */
    unsigned char *scratch; /* (scratch_bytes) two halves */
    size_t scratch_bytes;
    MPI_Request q_req;
    int64_t q_buf;
    int64_t *reply_buf;     /* (size, REPLY_WORDS) */
    MPI_Request *reply_req; /* (size) */
    bool serving;
    int *v[2][4]; /* alltoallv send counts, send displs, recv counts, recv displs, per in-flight segment */
    int *g[2];    /* allgatherv counts, displs (bytes) */
} mpi_state;

/* ---- answering "where are you?" (comm thread) --------------------------- */

static void serve_queries(comm *c) {
    mpi_state *s = c->impl;
    while (s->serving) {
        int flag = 0;
        MPI_Status stt;
        if (MPI_Test(&s->q_req, &flag, &stt) != MPI_SUCCESS) {
            LOG_WARN("comm %s: timeout query receive failed; this rank will not answer peers' queries", c->name);
            s->serving = false;
            return;
        }
        if (!flag)
            return;
        int p = stt.MPI_SOURCE;
        if (s->reply_req[p] != MPI_REQUEST_NULL) {
            int f2 = 0;
            if (MPI_Test(&s->reply_req[p], &f2, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                s->reply_req[p] = MPI_REQUEST_NULL;
        }
        if (s->reply_req[p] == MPI_REQUEST_NULL) {
            int64_t *b = &s->reply_buf[(size_t)p * REPLY_WORDS];
            b[0] = (int64_t)atomic_load(&s->started_seq);
            b[1] = (int64_t)atomic_load(&s->done_seq);
            b[2] = atomic_load(&s->cur_kind);
            b[3] = (int64_t)atomic_load(&s->cur_bytes);
            if (MPI_Isend(b, REPLY_WORDS, MPI_INT64_T, p, TAG_REPLY, s->ctrl, &s->reply_req[p]) != MPI_SUCCESS)
                s->reply_req[p] = MPI_REQUEST_NULL;
        }
        if (MPI_Irecv(&s->q_buf, 1, MPI_INT64_T, MPI_ANY_SOURCE, TAG_QUERY, s->ctrl, &s->q_req) != MPI_SUCCESS) {
            LOG_WARN("comm %s: timeout query receive failed; this rank will not answer peers' queries", c->name);
            s->serving = false;
        }
    }
}

/* Completes req, answering queries meanwhile (comm thread). */
static sl_status progress_wait(comm *c, MPI_Request *req) {
    for (long tests = 0;; tests++) {
        int flag = 0;
        SL_CHECK_MPI(MPI_Test(req, &flag, MPI_STATUS_IGNORE));
        if (flag)
            return SL_OK;
        serve_queries(c);
        if (tests > SPIN_TESTS)
            sl_sleep_us(NAP_US);
    }
}

/* ---- the ops (comm thread) ---------------------------------------------- */

/* dst (len) = op over parts (k, len) in part order. dst never aliases parts. */
#define REDUCE_PARTS(T)                                                          \
    do {                                                                         \
        T *d = dst;                                                              \
        const T *p = parts;                                                      \
        memcpy(d, p, len * sizeof(T));                                           \
        for (int r = 1; r < k; r++) {                                            \
            const T *q = p + (size_t)r * len;                                    \
            if (op == COMM_REDOP_SUM)                                            \
                for (size_t i = 0; i < len; i++)                                 \
                    d[i] += q[i];                                                \
            else if (op == COMM_REDOP_MAX)                                       \
                for (size_t i = 0; i < len; i++)                                 \
                    d[i] = q[i] > d[i] ? q[i] : d[i];                            \
            else                                                                 \
                for (size_t i = 0; i < len; i++)                                 \
                    d[i] = q[i] < d[i] ? q[i] : d[i];                            \
        }                                                                        \
    } while (0)

static void reduce_parts(void *dst, const void *parts, int k, size_t len, sl_dtype dt, comm_redop op) {
    switch (dt) {
    case SL_DTYPE_F32:
        REDUCE_PARTS(float);
        break;
    case SL_DTYPE_F64:
        REDUCE_PARTS(double);
        break;
    case SL_DTYPE_I32:
        REDUCE_PARTS(int32_t);
        break;
    case SL_DTYPE_I64:
        REDUCE_PARTS(int64_t);
        break;
    default: /* rejected at submit */
        break;
    }
}

/* Elements per rank-part in one segment: a half of the scratch holds k parts. */
static size_t segment_elems(const comm *c, size_t es) {
    const mpi_state *s = c->impl;
    return s->scratch_bytes / 2 / ((size_t)c->size * es);
}

/* Ialltoall of elements [off, off+len) of every chunk (chunk = count elems). */
static sl_status issue_rs_segment(comm *c, const comm_request *rq, size_t off, size_t len, void *dst,
                                  MPI_Request *req) {
    mpi_state *s = c->impl;
    size_t es = dtype_size(rq->dtype);
    MPI_Datatype block, strided;
    SL_CHECK_MPI(MPI_Type_contiguous((int)(len * es), MPI_BYTE, &block));
    int rc = MPI_Type_create_resized(block, 0, (MPI_Aint)(rq->count * es), &strided);
    MPI_Type_free(&block);
    SL_CHECK_MPI(rc);
    rc = MPI_Type_commit(&strided);
    if (rc == MPI_SUCCESS)
        rc = MPI_Ialltoall((const char *)rq->send + off * es, 1, strided, dst, (int)(len * es), MPI_BYTE,
                           s->data, req);
    MPI_Type_free(&strided); /* a pending op keeps its own reference */
    SL_CHECK_MPI(rc);
    return SL_OK;
}

static sl_status run_reduce_scatter(comm *c, const comm_request *rq) {
    mpi_state *s = c->impl;
    size_t es = dtype_size(rq->dtype), seg = segment_elems(c, es), half = s->scratch_bytes / 2;
    size_t nseg = (rq->count + seg - 1) / seg;
    MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (nseg == 0)
        return SL_OK;
    SL_TRY(issue_rs_segment(c, rq, 0, rq->count < seg ? rq->count : seg, s->scratch, &req[0]));
    for (size_t j = 0; j < nseg; j++) {
        size_t off = j * seg, len = rq->count - off < seg ? rq->count - off : seg;
        SL_TRY(progress_wait(c, &req[j % 2]));
        if (j + 1 < nseg) {
            size_t noff = off + seg, nlen = rq->count - noff < seg ? rq->count - noff : seg;
            SL_TRY(issue_rs_segment(c, rq, noff, nlen, s->scratch + ((j + 1) % 2) * half, &req[(j + 1) % 2]));
        }
        reduce_parts((char *)rq->recv + off * es, s->scratch + (j % 2) * half, c->size, len, rq->dtype,
                     rq->redop);
    }
    return SL_OK;
}

/* Part d of an all_reduce buffer is [count*d/k, count*(d+1)/k). */
static size_t part_lo(size_t count, int d, int k) { return count * (size_t)d / (size_t)k; }

static size_t part_seg_len(size_t count, int d, int k, size_t off, size_t seg) {
    size_t len = part_lo(count, d + 1, k) - part_lo(count, d, k);
    return len > off ? (len - off < seg ? len - off : seg) : 0;
}

static sl_status issue_ar_segment(comm *c, const comm_request *rq, size_t off, size_t seg, int slot,
                                  void *dst, MPI_Request *req) {
    mpi_state *s = c->impl;
    int k = c->size;
    size_t es = dtype_size(rq->dtype);
    size_t mine = part_seg_len(rq->count, c->rank, k, off, seg);
    int *sc = s->v[slot][0], *sd = s->v[slot][1], *rc = s->v[slot][2], *rd = s->v[slot][3];
    for (int d = 0; d < k; d++) {
        sc[d] = (int)(part_seg_len(rq->count, d, k, off, seg) * es);
        sd[d] = sc[d] ? (int)((part_lo(rq->count, d, k) + off) * es) : 0;
        rc[d] = (int)(mine * es);
        rd[d] = (int)((size_t)d * mine * es);
    }
    SL_CHECK_MPI(MPI_Ialltoallv(rq->send, sc, sd, MPI_BYTE, dst, rc, rd, MPI_BYTE, s->data, req));
    return SL_OK;
}

static sl_status run_all_reduce(comm *c, const comm_request *rq) {
    mpi_state *s = c->impl;
    int k = c->size, me = c->rank;
    size_t es = dtype_size(rq->dtype), seg = segment_elems(c, es), half = s->scratch_bytes / 2;
    size_t max_part = (rq->count + (size_t)k - 1) / (size_t)k;
    size_t nseg = (max_part + seg - 1) / seg;
    MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (nseg == 0)
        return SL_OK;
    /* Phase 1: reduce-scatter of the k parts, segment by segment. */
    SL_TRY(issue_ar_segment(c, rq, 0, seg, 0, s->scratch, &req[0]));
    for (size_t j = 0; j < nseg; j++) {
        size_t off = j * seg;
        SL_TRY(progress_wait(c, &req[j % 2]));
        if (j + 1 < nseg)
            SL_TRY(issue_ar_segment(c, rq, off + seg, seg, (int)((j + 1) % 2),
                                    s->scratch + ((j + 1) % 2) * half, &req[(j + 1) % 2]));
        size_t len = part_seg_len(rq->count, me, k, off, seg);
        if (len > 0)
            reduce_parts((char *)rq->recv + (part_lo(rq->count, me, k) + off) * es,
                         s->scratch + (j % 2) * half, k, len, rq->dtype, rq->redop);
    }
    /* Phase 2: every rank gathers the reduced parts. */
    for (int d = 0; d < k; d++) {
        s->g[0][d] = (int)((part_lo(rq->count, d + 1, k) - part_lo(rq->count, d, k)) * es);
        s->g[1][d] = (int)(part_lo(rq->count, d, k) * es);
    }
    SL_CHECK_MPI(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_BYTE, rq->recv, s->g[0], s->g[1], MPI_BYTE, s->data,
                                 &req[0]));
    return progress_wait(c, &req[0]);
}

static sl_status run_op(comm *c, const comm_request *rq) {
    mpi_state *s = c->impl;
    int bytes = (int)(rq->count * dtype_size(rq->dtype)); /* <= INT_MAX, checked at submit */
    MPI_Request req = MPI_REQUEST_NULL;
    switch (rq->kind) {
    case COMM_OP_ALL_GATHER:
        SL_CHECK_MPI(MPI_Iallgather(rq->send ? rq->send : MPI_IN_PLACE, bytes, MPI_BYTE, rq->recv, bytes,
                                    MPI_BYTE, s->data, &req));
        return progress_wait(c, &req);
    case COMM_OP_REDUCE_SCATTER:
        return run_reduce_scatter(c, rq);
    case COMM_OP_ALL_REDUCE:
        return run_all_reduce(c, rq);
    case COMM_OP_BROADCAST:
        SL_CHECK_MPI(MPI_Ibcast(rq->recv, bytes, MPI_BYTE, rq->root, s->data, &req));
        return progress_wait(c, &req);
    case COMM_OP_BARRIER:
        SL_CHECK_MPI(MPI_Ibarrier(s->data, &req));
        return progress_wait(c, &req);
    default:
        return sl_errorf(SL_ERR_INTERNAL, "comm: unknown op %d", (int)rq->kind);
    }
}

static void *comm_thread_main(void *arg) {
    comm *c = arg;
    mpi_state *s = c->impl;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop) {
            struct timespec dl = sl_deadline_in(IDLE_POLL_US * 1e-6);
            pthread_cond_timedwait(&s->cv_queue, &s->mu, &dl);
            if (!s->head) {
                pthread_mutex_unlock(&s->mu);
                serve_queries(c);
                pthread_mutex_lock(&s->mu);
            }
        }
        if (!s->head)
            break; /* stop, queue drained */
        mpi_work *w = s->head;
        s->head = w->next;
        if (!s->head)
            s->tail = NULL;
        bool failed = s->failed;
        pthread_mutex_unlock(&s->mu);

        const comm_request *rq = &w->base.rq;
        atomic_store(&s->cur_kind, (int)rq->kind);
        atomic_store(&s->cur_bytes, (uint64_t)(rq->count * dtype_size(rq->dtype)));
        atomic_store(&s->started_seq, rq->seq);
        sl_status st = failed ? sl_errorf(SL_ERR_COMM, "not run: an earlier op on this comm failed (%s)",
                                          s->fail_msg)
                              : run_op(c, rq);
        if (st != SL_OK)
            snprintf(w->err, sizeof w->err, "%s", sl_error_message());
        atomic_store(&s->done_seq, rq->seq);

        pthread_mutex_lock(&s->mu);
        w->st = st;
        w->done = true;
        if (st != SL_OK && !s->failed) {
            s->failed = true;
            snprintf(s->fail_msg, sizeof s->fail_msg, "%s #%llu: %s", comm_op_name(rq->kind),
                     (unsigned long long)rq->seq, w->err);
        }
        pthread_cond_broadcast(&s->cv_done);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the table ----------------------------------------------------------- */

static sl_status mpi_submit(comm *c, const comm_request *rq, comm_work **work) {
    mpi_state *s = c->impl;
    const char *op = comm_op_name(rq->kind);
    size_t bytes = rq->count * dtype_size(rq->dtype);
    if (bytes > INT_MAX)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "comm %s on %s: %zu bytes per %s; the MPI backend moves at most %d bytes per "
                         "call (MPI counts are int): split the buffer",
                         op, c->name, bytes,
                         rq->kind == COMM_OP_ALL_GATHER || rq->kind == COMM_OP_REDUCE_SCATTER ? "chunk"
                                                                                             : "buffer",
                         INT_MAX);
    pthread_mutex_lock(&s->mu);
    if (s->failed) {
        sl_status st = sl_errorf(SL_ERR_COMM, "comm %s on %s: the comm failed earlier (%s); the job cannot "
                                              "continue",
                                 op, c->name, s->fail_msg);
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    mpi_work *w = s->pool;
    if (w) {
        s->pool = w->next;
    } else {
        w = calloc(1, sizeof *w);
        if (!w) {
            pthread_mutex_unlock(&s->mu);
            return sl_errorf(SL_ERR_NOMEM, "comm %s on %s: out of memory for a work handle", op, c->name);
        }
        w->all_next = s->all;
        s->all = w;
    }
    comm_work_begin(c, &w->base, rq);
    w->next = NULL;
    w->done = false;
    w->st = SL_OK;
    w->err[0] = 0;
    if (s->tail)
        s->tail->next = w;
    else
        s->head = w;
    s->tail = w;
    pthread_cond_signal(&s->cv_queue);
    pthread_mutex_unlock(&s->mu);
    *work = &w->base;
    return SL_OK;
}

static sl_status mpi_wait(comm *c, comm_work *bw, double timeout_s) {
    mpi_state *s = c->impl;
    mpi_work *w = (mpi_work *)bw;
    struct timespec dl = sl_deadline_in(timeout_s);
    pthread_mutex_lock(&s->mu);
    while (!w->done) {
        int rc = pthread_cond_timedwait(&s->cv_done, &s->mu, &dl);
        if (rc == ETIMEDOUT && !w->done) {
            pthread_mutex_unlock(&s->mu);
            return SL_ERR_TIMEOUT;
        }
    }
    sl_status st = w->st;
    pthread_mutex_unlock(&s->mu);
    if (st != SL_OK)
        return sl_errorf(st, "collective %s #%llu on %s failed: %s", comm_op_name(bw->rq.kind),
                         (unsigned long long)bw->rq.seq, c->name, w->err);
    return SL_OK;
}

static sl_status mpi_test(comm *c, comm_work *bw, bool *done) {
    mpi_state *s = c->impl;
    pthread_mutex_lock(&s->mu);
    *done = ((mpi_work *)bw)->done;
    pthread_mutex_unlock(&s->mu);
    return SL_OK;
}

static void mpi_release(comm *c, comm_work *bw) {
    mpi_state *s = c->impl;
    mpi_work *w = (mpi_work *)bw;
    pthread_mutex_lock(&s->mu);
    w->next = s->pool;
    s->pool = w;
    pthread_mutex_unlock(&s->mu);
}

/* Appends to buf (always terminated). */
static void append(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t n, const char *fmt, ...) {
    size_t used = strlen(buf);
    if (used + 1 >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, n - used, fmt, ap);
    va_end(ap);
}

static void mpi_describe_stall(comm *c, const comm_request *rq, char *buf, size_t n) {
    mpi_state *s = c->impl;
    int k = c->size, me = c->rank;
    buf[0] = 0;
    int64_t *rep = calloc((size_t)k * REPLY_WORDS, sizeof *rep);
    MPI_Request *req = malloc(sizeof *req * 2 * (size_t)k);
    if (!rep || !req) {
        free(rep);
        free(req);
        snprintf(buf, n, "peers could not be asked (out of memory)");
        return;
    }
    int64_t query = (int64_t)rq->seq;
    bool mpi_ok = true;
    for (int p = 0; p < k; p++) {
        req[2 * p] = req[2 * p + 1] = MPI_REQUEST_NULL;
        if (p == me || !mpi_ok)
            continue;
        mpi_ok = MPI_Irecv(&rep[(size_t)p * REPLY_WORDS], REPLY_WORDS, MPI_INT64_T, p, TAG_REPLY, s->ctrl,
                           &req[2 * p]) == MPI_SUCCESS &&
                 MPI_Isend(&query, 1, MPI_INT64_T, p, TAG_QUERY, s->ctrl, &req[2 * p + 1]) == MPI_SUCCESS;
    }
    /* The peers' comm threads answer within a few ms when they are alive. */
    double grace = c->opts.timeout_s / 4;
    grace = grace < 0.5 ? 0.5 : grace > 2.0 ? 2.0 : grace;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int answered = 0;
    bool *got = calloc((size_t)k, sizeof *got);
    for (;;) {
        answered = 0;
        for (int p = 0; p < k && got; p++) {
            if (p == me)
                continue;
            if (!got[p] && req[2 * p] != MPI_REQUEST_NULL) {
                int flag = 0;
                if (MPI_Test(&req[2 * p], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag)
                    got[p] = true;
            }
            answered += got[p];
        }
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (!got || answered == k - 1 || el > grace)
            break;
        sl_sleep_us(1000);
    }
    uint64_t seq = rq->seq;
    uint64_t my_bytes = (uint64_t)(rq->count * dtype_size(rq->dtype));
    int missing = 0;
    append(buf, n, "ranks that did not arrive (world ranks):");
    for (int p = 0; p < k; p++) {
        if (p == me)
            continue;
        const int64_t *r = &rep[(size_t)p * REPLY_WORDS];
        if (!got || !got[p]) {
            append(buf, n,
                   " r%d (no answer in %.1f s: process stopped, its comm thread is blocked, or its host "
                   "is unreachable) on %s;",
                   s->world_of[p], grace, s->host_of[p]);
            missing++;
        } else if ((uint64_t)r[0] < seq) {
            if (r[0] == r[1])
                append(buf, n, " r%d (finished #%lld, has not submitted #%llu) on %s;", s->world_of[p],
                       (long long)r[1], (unsigned long long)seq, s->host_of[p]);
            else
                append(buf, n, " r%d (still in #%lld %s) on %s;", s->world_of[p], (long long)r[0],
                       comm_op_name((comm_op_kind)r[2]), s->host_of[p]);
            missing++;
        }
    }
    if (missing == 0)
        append(buf, n, " none: every rank reached #%llu, so it is stuck inside MPI (a failed link, or "
                       "ranks that submitted different ops)",
               (unsigned long long)seq);
    else if (buf[strlen(buf) - 1] == ';')
        buf[strlen(buf) - 1] = 0;
    for (int p = 0; p < k && got; p++) {
        const int64_t *r = &rep[(size_t)p * REPLY_WORDS];
        if (p != me && got[p] && (uint64_t)r[0] == seq && r[0] != r[1] &&
            (r[2] != (int64_t)rq->kind || (uint64_t)r[3] != my_bytes))
            append(buf, n, "; r%d runs #%llu as %s of %lld bytes (this rank: %s of %llu bytes): ranks "
                           "submitted different ops",
                   s->world_of[p], (unsigned long long)seq, comm_op_name((comm_op_kind)r[2]),
                   (long long)r[3], comm_op_name(rq->kind), (unsigned long long)my_bytes);
    }
    uint64_t mine = atomic_load(&s->started_seq);
    if (mine < seq)
        append(buf, n, "; this rank (r%d) is itself still in #%llu %s", s->world_of[me],
               (unsigned long long)mine, comm_op_name((comm_op_kind)atomic_load(&s->cur_kind)));
    if (!mpi_ok)
        append(buf, n, " (some peers could not be asked: MPI error)");
    free(got);
    free(rep);
    free(req); /* the job aborts next; pending requests are not completed */
}

static void state_free(comm *c);

static sl_status mpi_split(comm *c, int color, int key, const comm_opts *o, comm **out) {
    mpi_state *s = c->impl;
    MPI_Comm nc = MPI_COMM_NULL;
    SL_CHECK_MPI(MPI_Comm_split(s->setup, color, key, &nc));
    sl_status st = comm_create_mpi(nc, o, out);
    MPI_Comm_free(&nc);
    return st;
}

static void mpi_destroy(comm *c) {
    mpi_state *s = c->impl;
    /* Ops run in order: once a final barrier completes, every earlier op
     * has. A stuck op turns into the barrier's timeout report. */
    pthread_mutex_lock(&s->mu);
    bool failed = s->failed;
    pthread_mutex_unlock(&s->mu);
    if (!failed && comm_barrier(c) != SL_OK)
        LOG_WARN("comm %s: final barrier failed: %s", c->name, sl_error_message());
    state_free(c);
}

static const struct comm_ops mpi_ops = {
    .name = "mpi",
    .reduce_dtypes = 1u << SL_DTYPE_F32 | 1u << SL_DTYPE_F64 | 1u << SL_DTYPE_I32 | 1u << SL_DTYPE_I64,
    .submit = mpi_submit,
    .wait = mpi_wait,
    .test = mpi_test,
    .release = mpi_release,
    .describe_stall = mpi_describe_stall,
    .split = mpi_split,
    .destroy = mpi_destroy,
};

/* ---- create / free ---------------------------------------------------------- */

/* Frees whatever was set up (create's error path and destroy). */
static void state_free(comm *c) {
    mpi_state *s = c->impl;
    if (s) {
        if (s->thread_started) {
            pthread_mutex_lock(&s->mu);
            s->stop = true;
            pthread_cond_signal(&s->cv_queue);
            pthread_mutex_unlock(&s->mu);
            pthread_join(s->thread, NULL);
        }
        if (s->serving && s->q_req != MPI_REQUEST_NULL) {
            MPI_Cancel(&s->q_req);
            MPI_Wait(&s->q_req, MPI_STATUS_IGNORE);
        }
        for (int p = 0; s->reply_req && p < c->size; p++)
            if (s->reply_req[p] != MPI_REQUEST_NULL)
                MPI_Wait(&s->reply_req[p], MPI_STATUS_IGNORE);
        if (s->sync_ready) {
            pthread_mutex_destroy(&s->mu);
            pthread_cond_destroy(&s->cv_queue);
            pthread_cond_destroy(&s->cv_done);
        }
        for (mpi_work *w = s->all, *nx; w; w = nx) {
            nx = w->all_next;
            free(w);
        }
        if (s->scratch)
            mem_host_free(c->opts.mem, MEM_CATEGORY_COMM, s->scratch, s->scratch_bytes);
        for (int i = 0; i < 2; i++) {
            for (int j = 0; j < 4; j++)
                free(s->v[i][j]);
            free(s->g[i]);
        }
        free(s->reply_buf);
        free(s->reply_req);
        free(s->world_of);
        free(s->host_of);
        MPI_Comm *comms[3] = {&s->data, &s->ctrl, &s->setup};
        for (int i = 0; i < 3; i++)
            if (*comms[i] != MPI_COMM_NULL)
                MPI_Comm_free(comms[i]);
        free(s);
    }
    free(c);
}

static sl_status state_init(comm *c, MPI_Comm base) {
    mpi_state *s = c->impl;
    SL_CHECK_MPI(MPI_Comm_dup(base, &s->data));
    SL_CHECK_MPI(MPI_Comm_dup(base, &s->ctrl));
    SL_CHECK_MPI(MPI_Comm_dup(base, &s->setup));
    MPI_Comm *comms[3] = {&s->data, &s->ctrl, &s->setup};
    for (int i = 0; i < 3; i++)
        SL_CHECK_MPI(MPI_Comm_set_errhandler(*comms[i], MPI_ERRORS_RETURN));
    SL_CHECK_MPI(MPI_Comm_rank(s->data, &c->rank));
    SL_CHECK_MPI(MPI_Comm_size(s->data, &c->size));
    SL_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &c->world_rank));
    size_t k = (size_t)c->size;

    s->world_of = malloc(sizeof(int) * k);
    int *ids = malloc(sizeof(int) * k);
    if (!s->world_of || !ids) {
        free(ids);
        return sl_errorf(SL_ERR_NOMEM, "comm %s: out of memory for %zu ranks", c->name, k);
    }
    for (int i = 0; i < c->size; i++)
        ids[i] = i;
    MPI_Group g = MPI_GROUP_NULL, gw = MPI_GROUP_NULL;
    int rc = MPI_Comm_group(s->data, &g);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_group(MPI_COMM_WORLD, &gw);
    if (rc == MPI_SUCCESS)
        rc = MPI_Group_translate_ranks(g, c->size, ids, gw, s->world_of);
    free(ids);
    if (g != MPI_GROUP_NULL)
        MPI_Group_free(&g);
    if (gw != MPI_GROUP_NULL)
        MPI_Group_free(&gw);
    SL_CHECK_MPI(rc);
    /* Host names, so that a timeout report says where the missing ranks run. */
    s->host_of = calloc(k, sizeof *s->host_of);
    SL_CHECK_ALLOC(s->host_of, k * sizeof *s->host_of);
    char me[64] = {0};
    if (gethostname(me, sizeof me - 1) != 0)
        snprintf(me, sizeof me, "unknown");
    SL_CHECK_MPI(MPI_Allgather(me, (int)sizeof me, MPI_CHAR, s->host_of, (int)sizeof me, MPI_CHAR, s->setup));

    /* A half must hold one element of every rank's part. */
    s->scratch_bytes = c->opts.scratch_bytes;
    if (s->scratch_bytes < 2 * k * 8)
        s->scratch_bytes = 2 * k * 8;
    s->scratch = mem_host_alloc(c->opts.mem, MEM_CATEGORY_COMM, s->scratch_bytes);
    SL_CHECK_ALLOC(s->scratch, s->scratch_bytes);
    s->reply_buf = calloc(k * REPLY_WORDS, sizeof *s->reply_buf);
    SL_CHECK_ALLOC(s->reply_buf, k * REPLY_WORDS * sizeof *s->reply_buf);
    s->reply_req = malloc(sizeof *s->reply_req * k);
    SL_CHECK_ALLOC(s->reply_req, sizeof *s->reply_req * k);
    for (size_t p = 0; p < k; p++)
        s->reply_req[p] = MPI_REQUEST_NULL;
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4; j++) {
            s->v[i][j] = calloc(k, sizeof(int));
            SL_CHECK_ALLOC(s->v[i][j], k * sizeof(int));
        }
        s->g[i] = calloc(k, sizeof(int));
        SL_CHECK_ALLOC(s->g[i], k * sizeof(int));
    }

    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return sl_errorf(SL_ERR_INTERNAL, "comm %s: pthread_condattr_init failed", c->name);
    bool ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
    ok = ok && pthread_mutex_init(&s->mu, NULL) == 0;
    ok = ok && pthread_cond_init(&s->cv_queue, &ca) == 0;
    ok = ok && pthread_cond_init(&s->cv_done, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok)
        return sl_errorf(SL_ERR_INTERNAL, "comm %s: mutex/condition variable setup failed", c->name);
    s->sync_ready = true;

    SL_CHECK_MPI(MPI_Irecv(&s->q_buf, 1, MPI_INT64_T, MPI_ANY_SOURCE, TAG_QUERY, s->ctrl, &s->q_req));
    s->serving = true;
    int err = pthread_create(&s->thread, NULL, comm_thread_main, c);
    if (err != 0)
        return sl_errorf(SL_ERR_INTERNAL, "comm %s: could not start the comm thread: %s", c->name,
                         strerror(err));
    s->thread_started = true;
    return SL_OK;
}

sl_status comm_create_mpi(MPI_Comm base, const comm_opts *o, comm **out) {
    *out = NULL;
    comm_opts opts;
    if (o)
        opts = *o;
    else
        comm_opts_default(&opts);
    SL_CHECK_ARG(opts.timeout_s > 0, "comm_create_mpi: timeout_s must be > 0 (parallel.comm_timeout_s), got %g",
                 opts.timeout_s);
    SL_CHECK_ARG(opts.scratch_bytes >= 4096, "comm_create_mpi: scratch_bytes must be >= 4096, got %zu",
                 opts.scratch_bytes);
    int level = 0;
    SL_CHECK_MPI(MPI_Query_thread(&level));
    if (level < MPI_THREAD_MULTIPLE)
        return sl_errorf(SL_ERR_COMM,
                         "comm_create_mpi: MPI was initialized with thread level %d; the comm thread needs "
                         "MPI_THREAD_MULTIPLE (initialize through topology_init)",
                         level);
    comm *c = calloc(1, sizeof *c);
    mpi_state *s = calloc(1, sizeof *s);
    if (!c || !s) {
        free(c);
        free(s);
        return sl_errorf(SL_ERR_NOMEM, "comm_create_mpi: out of memory");
    }
    s->data = s->ctrl = s->setup = MPI_COMM_NULL;
    s->q_req = MPI_REQUEST_NULL;
    c->ops = &mpi_ops;
    c->impl = s;
    c->opts = opts;
    snprintf(c->name, sizeof c->name, "%s", opts.name ? opts.name : "world");
    c->opts.name = c->name;
    sl_status st = state_init(c, base);
    if (st != SL_OK) {
        state_free(c);
        return st;
    }
    *out = c;
    return SL_OK;
}
