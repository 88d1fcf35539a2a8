/* Collective tests for parallel/comm.h, nccl-tests style: inputs whose exact
 * result is known, wrong elements counted on every rank and summed over the
 * job, so that every rank passes or fails the same check (a rank that failed
 * alone would leave the others waiting in the next collective).
 *
 * ctest runs this as a singleton (world size 1); tests/integration/
 * test_comm.sh runs it under mpirun at 2, 3 and 4 ranks.
 *
 * `test_comm --hang RANK:SECONDS [--timeout S]` is the fault-injection mode
 * of tests/integration/test_comm_timeout.sh: rank RANK sleeps before the
 * third collective; every other rank must time out and abort the job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "parallel/comm.h"
#include "parallel/topology.h"
#include "runtime/log.h"

typedef struct {
    topology t;
    comm *c;    /* default options */
    comm *tiny; /* 4 KiB scratch: reductions run in many segments (small counts only:
                 * each segment is one collective) */
} fixture;

static fixture *fx_of(void **state) { return *state; }

/* Sums `wrong` over every rank; every rank asserts the same total. */
static void expect_none_wrong(const fixture *fx, long wrong, const char *what) {
    long total = 0;
    assert_int_equal(MPI_Allreduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, fx->t.comm), MPI_SUCCESS);
    if (total != 0 && fx->t.rank == 0)
        fprintf(stderr, "%s: %ld wrong elements over %d ranks\n", what, total, fx->t.world);
    assert_int_equal(total, 0);
}

static long status_wrong(sl_status st, const char *what) {
    if (st == SL_OK)
        return 0;
    fprintf(stderr, "%s: %s [%s]\n", what, sl_error_message(), sl_status_name(st));
    return 1;
}

static uint8_t byte_at(int rank, size_t i) { return (uint8_t)(rank * 131 + i * 7 + 1); }

/* A float in [-1, 1) that any rank can compute for any (rank, index). */
static float rnd(int rank, size_t i) {
    uint64_t z = ((uint64_t)rank << 40) ^ (uint64_t)i ^ 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 23) - 1.0);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- all_gather ------------------------------------------------------- */

static long check_all_gather(comm *c, size_t count, sl_dtype dt, bool in_place) {
    int k = comm_size(c), r = comm_rank(c);
    size_t es = dtype_size(dt), chunk = count * es;
    uint8_t *recv = xmalloc(chunk * (size_t)k), *send = xmalloc(chunk);
    memset(recv, 0xee, chunk * (size_t)k);
    uint8_t *mine = in_place ? recv + (size_t)r * chunk : send;
    for (size_t i = 0; i < chunk; i++)
        mine[i] = byte_at(r, i);
    long wrong = status_wrong(comm_all_gather(c, mine, recv, count, dt), "all_gather");
    for (int src = 0; src < k && !wrong; src++)
        for (size_t i = 0; i < chunk; i++)
            wrong += recv[(size_t)src * chunk + i] != byte_at(src, i);
    free(recv);
    free(send);
    return wrong;
}

static void test_all_gather(void **state) {
    fixture *fx = fx_of(state);
    static const size_t counts[] = {0, 1, 7, 1000, 65537};
    static const sl_dtype dts[] = {SL_DTYPE_F32, SL_DTYPE_BF16, SL_DTYPE_I64, SL_DTYPE_U8};
    long wrong = 0;
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
            for (int ip = 0; ip < 2; ip++)
                wrong += check_all_gather(fx->c, counts[i], dts[d], ip);
    expect_none_wrong(fx, wrong, "all_gather");
}

/* ---- reduce_scatter / all_reduce with exact small-integer sums -------- */

/* Rank r's element i: (r+1) * (i % 251 + 1); the sum over k ranks is
 * (i % 251 + 1) * k(k+1)/2, exact in f32. MAX: (k) * (...); MIN: 1 * (...). */
static double exact_in(int r, size_t i) { return (double)(r + 1) * (double)(i % 251 + 1); }

static double exact_out(int k, size_t i, comm_redop op) {
    double base = (double)(i % 251 + 1);
    return op == COMM_REDOP_SUM ? base * k * (k + 1) / 2 : op == COMM_REDOP_MAX ? base * k : base;
}

static void put(void *buf, sl_dtype dt, size_t i, double v) {
    switch (dt) {
    case SL_DTYPE_F32: ((float *)buf)[i] = (float)v; break;
    case SL_DTYPE_F64: ((double *)buf)[i] = v; break;
    case SL_DTYPE_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case SL_DTYPE_I64: ((int64_t *)buf)[i] = (int64_t)v; break;
    default: fail_msg("dtype %s has no reduction", dtype_name(dt));
    }
}

static double get(const void *buf, sl_dtype dt, size_t i) {
    switch (dt) {
    case SL_DTYPE_F32: return ((const float *)buf)[i];
    case SL_DTYPE_F64: return ((const double *)buf)[i];
    case SL_DTYPE_I32: return ((const int32_t *)buf)[i];
    case SL_DTYPE_I64: return (double)((const int64_t *)buf)[i];
    default: return -1;
    }
}

static long check_reduce_scatter(comm *c, size_t count, sl_dtype dt, comm_redop op, bool in_place) {
    int k = comm_size(c), r = comm_rank(c);
    size_t es = dtype_size(dt), full = count * (size_t)k;
    uint8_t *send = xmalloc(full * es), *out = xmalloc(count * es);
    for (size_t i = 0; i < full; i++)
        put(send, dt, i, exact_in(r, i));
    uint8_t *recv = in_place ? send + (size_t)r * count * es : out;
    long wrong = status_wrong(comm_reduce_scatter(c, send, recv, count, dt, op), "reduce_scatter");
    for (size_t i = 0; i < count && !wrong; i++)
        wrong += get(recv, dt, i) != exact_out(k, (size_t)r * count + i, op);
    free(send);
    free(out);
    return wrong;
}

static long check_all_reduce(comm *c, size_t count, sl_dtype dt, comm_redop op, bool in_place) {
    int k = comm_size(c), r = comm_rank(c);
    size_t es = dtype_size(dt);
    uint8_t *send = xmalloc(count * es), *out = xmalloc(count * es);
    for (size_t i = 0; i < count; i++)
        put(send, dt, i, exact_in(r, i));
    uint8_t *recv = in_place ? send : out;
    long wrong = status_wrong(comm_all_reduce(c, send, recv, count, dt, op), "all_reduce");
    for (size_t i = 0; i < count && !wrong; i++)
        wrong += get(recv, dt, i) != exact_out(k, i, op);
    free(send);
    free(out);
    return wrong;
}

typedef struct {
    sl_dtype dt;
    comm_redop op;
} red_case;

static const red_case red_cases[] = {
    {SL_DTYPE_F32, COMM_REDOP_SUM}, {SL_DTYPE_F64, COMM_REDOP_SUM}, {SL_DTYPE_I64, COMM_REDOP_SUM},
    {SL_DTYPE_I32, COMM_REDOP_MAX}, {SL_DTYPE_F64, COMM_REDOP_MIN}, {SL_DTYPE_F32, COMM_REDOP_MAX},
};

/* check on both comms (the tiny-scratch one only for counts < 2000), every
 * count, every red_case, out of place and in place; the wrong elements. */
static long sweep_reductions(const fixture *fx, const size_t *counts, size_t n_counts,
                             long (*check)(comm *, size_t, sl_dtype, comm_redop, bool)) {
    comm *comms[2] = {fx->c, fx->tiny};
    long wrong = 0;
    for (int ci = 0; ci < 2; ci++)
        for (size_t i = 0; i < n_counts; i++)
            for (size_t rc = 0; rc < sizeof red_cases / sizeof red_cases[0]; rc++)
                for (int ip = 0; ip < 2 && (ci == 0 || counts[i] < 2000); ip++)
                    wrong += check(comms[ci], counts[i], red_cases[rc].dt, red_cases[rc].op, ip);
    return wrong;
}

static void test_reduce_scatter(void **state) {
    fixture *fx = fx_of(state);
    static const size_t counts[] = {1, 5, 1031, 70001};
    long wrong = sweep_reductions(fx, counts, sizeof counts / sizeof counts[0], check_reduce_scatter);
    expect_none_wrong(fx, wrong, "reduce_scatter");
}

static void test_all_reduce(void **state) {
    fixture *fx = fx_of(state);
    /* odd counts, counts below the group size, and several scratch segments */
    static const size_t counts[] = {0, 1, 2, 3, 7, 1001, 100003};
    long wrong = sweep_reductions(fx, counts, sizeof counts / sizeof counts[0], check_all_reduce);
    expect_none_wrong(fx, wrong, "all_reduce");
}

/* ---- determinism: random floats, the documented rank-order sum -------- */

static float rank_order_sum(int k, size_t i) {
    float acc = rnd(0, i);
    for (int r = 1; r < k; r++)
        acc += rnd(r, i);
    return acc;
}

static void test_sum_order_bitwise(void **state) {
    fixture *fx = fx_of(state);
    comm *comms[2] = {fx->c, fx->tiny};
    long wrong = 0;
    for (int ci = 0; ci < 2; ci++) {
        comm *c = comms[ci];
        int k = comm_size(c), r = comm_rank(c);
        size_t count = ci == 0 ? 10007 : 3001;
        float *full = xmalloc(sizeof(float) * count * (size_t)k), *shard = xmalloc(sizeof(float) * count);
        for (size_t i = 0; i < count * (size_t)k; i++)
            full[i] = rnd(r, i);
        wrong += status_wrong(comm_reduce_scatter(c, full, shard, count, SL_DTYPE_F32, COMM_REDOP_SUM), "rs");
        for (size_t i = 0; i < count; i++) {
            float want = rank_order_sum(k, (size_t)r * count + i);
            wrong += memcmp(&shard[i], &want, sizeof want) != 0;
        }
        for (size_t i = 0; i < count; i++)
            full[i] = rnd(r, i);
        wrong += status_wrong(comm_all_reduce(c, full, full, count, SL_DTYPE_F32, COMM_REDOP_SUM), "ar");
        for (size_t i = 0; i < count; i++) {
            float want = rank_order_sum(k, i);
            wrong += memcmp(&full[i], &want, sizeof want) != 0;
        }
        free(full);
        free(shard);
    }
    expect_none_wrong(fx, wrong, "bitwise rank-order sums");
}

/* ---- broadcast, barrier -------------------------------------------------- */

static void test_broadcast(void **state) {
    fixture *fx = fx_of(state);
    comm *c = fx->c;
    static const size_t counts[] = {1, 3, 1000003};
    long wrong = 0;
    for (int root = 0; root < comm_size(c); root++)
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
            size_t n = counts[i];
            uint8_t *buf = xmalloc(n);
            for (size_t j = 0; j < n; j++)
                buf[j] = comm_rank(c) == root ? byte_at(root, j) : 0;
            wrong += status_wrong(comm_broadcast(c, buf, n, SL_DTYPE_U8, root), "broadcast");
            for (size_t j = 0; j < n; j++)
                wrong += buf[j] != byte_at(root, j);
            free(buf);
        }
    double x[3] = {0};
    if (comm_rank(c) == 0)
        x[0] = 1.5, x[1] = -2.25, x[2] = 1e300;
    wrong += status_wrong(comm_broadcast(c, x, 3, SL_DTYPE_F64, 0), "broadcast f64");
    wrong += x[0] != 1.5 || x[1] != -2.25 || x[2] != 1e300;
    wrong += status_wrong(comm_barrier(c), "barrier");
    expect_none_wrong(fx, wrong, "broadcast");
}

/* ---- async: several in flight, computed over, waited out of order ----- */

static void test_async(void **state) {
    fixture *fx = fx_of(state);
    comm *c = fx->c;
    int k = comm_size(c), r = comm_rank(c);
    size_t n = 50000;
    uint8_t *ag = xmalloc(n * (size_t)k);
    float *rs_in = xmalloc(sizeof(float) * n * (size_t)k), *rs_out = xmalloc(sizeof(float) * n);
    int64_t *ar = xmalloc(sizeof(int64_t) * 777);
    float *bc = xmalloc(sizeof(float) * 999);
    double tiny_val = (double)r;
    for (size_t i = 0; i < n; i++)
        ag[(size_t)r * n + i] = byte_at(r, i);
    for (size_t i = 0; i < n * (size_t)k; i++)
        rs_in[i] = (float)exact_in(r, i);
    for (size_t i = 0; i < 777; i++)
        ar[i] = (int64_t)exact_in(r, i);
    for (size_t i = 0; i < 999; i++)
        bc[i] = r == k - 1 ? (float)i : -1.f;

    uint64_t seq0 = comm_last_seq(c);
    comm_work *w[6];
    long wrong = 0;
    wrong += status_wrong(comm_all_gather_async(c, NULL, ag, n, SL_DTYPE_U8, &w[0]), "ag async");
    wrong += status_wrong(comm_reduce_scatter_async(c, rs_in, rs_out, n, SL_DTYPE_F32, COMM_REDOP_SUM, &w[1]),
                          "rs async");
    wrong += status_wrong(comm_all_reduce_async(c, ar, ar, 777, SL_DTYPE_I64, COMM_REDOP_SUM, &w[2]), "ar async");
    wrong += status_wrong(comm_broadcast_async(c, bc, 999, SL_DTYPE_F32, k - 1, &w[3]), "bc async");
    /* an op on another comm (its own thread) in flight at the same time */
    wrong += status_wrong(comm_all_reduce_async(fx->tiny, &tiny_val, &tiny_val, 1, SL_DTYPE_F64,
                                                COMM_REDOP_MAX, &w[4]),
                          "tiny async");
    wrong += status_wrong(comm_barrier_async(c, &w[5]), "barrier async");
    if (wrong) {
        expect_none_wrong(fx, wrong, "async submit");
        return;
    }
    wrong += comm_last_seq(c) != seq0 + 5;

    /* compute while the comm threads work */
    volatile double sink = 0;
    for (int i = 0; i < 2000000; i++)
        sink += (double)i * 1e-9;
    (void)sink;
    bool done = false;
    for (int polls = 0; !done && polls < 1000000; polls++)
        assert_int_equal(comm_work_test(w[0], &done), SL_OK);
    wrong += !done;

    /* out of order: the barrier last submitted first, then the rest */
    static const int order[] = {5, 3, 1, 4, 0, 2};
    for (int i = 0; i < 6; i++)
        wrong += status_wrong(comm_work_wait(w[order[i]], 0), "wait");

    for (int src = 0; src < k; src++)
        for (size_t i = 0; i < n; i++)
            wrong += ag[(size_t)src * n + i] != byte_at(src, i);
    for (size_t i = 0; i < n; i++)
        wrong += rs_out[i] != (float)exact_out(k, (size_t)r * n + i, COMM_REDOP_SUM);
    for (size_t i = 0; i < 777; i++)
        wrong += ar[i] != (int64_t)exact_out(k, i, COMM_REDOP_SUM);
    for (size_t i = 0; i < 999; i++)
        wrong += bc[i] != (float)i;
    wrong += tiny_val != (double)(k - 1);

    /* and in order, with the handles reused from the pool */
    for (int rep = 0; rep < 3; rep++) {
        wrong += status_wrong(comm_all_gather_async(c, NULL, ag, n, SL_DTYPE_U8, &w[0]), "ag");
        wrong += status_wrong(comm_all_reduce_async(c, ar, ar, 777, SL_DTYPE_I64, COMM_REDOP_MAX, &w[1]), "ar");
        wrong += status_wrong(comm_work_wait(w[0], 0), "wait ag");
        wrong += status_wrong(comm_work_wait(w[1], 0), "wait ar");
    }
    for (size_t i = 0; i < 777; i++)
        wrong += ar[i] != (int64_t)exact_out(k, i, COMM_REDOP_SUM);
    free(ag);
    free(rs_in);
    free(rs_out);
    free(ar);
    free(bc);
    expect_none_wrong(fx, wrong, "async");
}

/* ---- sub-communicators ----------------------------------------------------- */

static void test_split(void **state) {
    fixture *fx = fx_of(state);
    int wr = fx->t.rank, k = fx->t.world;
    comm *sub = NULL;
    long wrong = status_wrong(comm_split(fx->c, wr % 2, -wr, "parity", NULL, &sub), "split");
    if (wrong) {
        expect_none_wrong(fx, wrong, "split");
        return;
    }
    int n_same = (k - wr % 2 + 1) / 2;
    wrong += comm_size(sub) != n_same;
    wrong += strcmp(comm_name(sub), "parity") != 0;
    /* key = -world rank: the highest world rank of the parity is rank 0 */
    wrong += comm_rank(sub) != (k - 1 - wr) / 2;
    int64_t sum = wr, want = 0;
    for (int q = wr % 2; q < k; q += 2)
        want += q;
    wrong += status_wrong(comm_all_reduce(sub, &sum, &sum, 1, SL_DTYPE_I64, COMM_REDOP_SUM), "sub ar");
    wrong += sum != want;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)n_same);
    int32_t me = wr;
    wrong += status_wrong(comm_all_gather(sub, &me, ids, 1, SL_DTYPE_I32), "sub ag");
    for (int i = 0; i < n_same && !wrong; i++)
        wrong += ids[i] != ids[0] - 2 * i;
    free(ids);
    comm_destroy(sub);
    expect_none_wrong(fx, wrong, "split");
}

/* ---- argument errors: same on every rank, no sequence number used ------ */

static void test_invalid(void **state) {
    fixture *fx = fx_of(state);
    comm *c = fx->c;
    uint64_t seq = comm_last_seq(c);
    float f[8] = {0};
    uint16_t h[4] = {0};
    comm_work *w = NULL;
    assert_int_equal(comm_broadcast(c, f, 1, SL_DTYPE_F32, comm_size(c)), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "root"));
    assert_int_equal(comm_all_reduce_async(c, h, h, 4, SL_DTYPE_BF16, COMM_REDOP_SUM, &w), SL_ERR_UNSUPPORTED);
    assert_null(w);
    assert_non_null(strstr(sl_error_message(), "bf16"));
    assert_int_equal(comm_all_reduce(c, f, f + 1, 4, SL_DTYPE_F32, COMM_REDOP_SUM), SL_ERR_INVALID);
    assert_int_equal(comm_all_reduce(c, f, f, 4, SL_DTYPE_F32, (comm_redop)9), SL_ERR_INVALID);
    assert_int_equal(comm_last_seq(c), seq);
    comm_opts o;
    comm_opts_default(&o);
    o.timeout_s = 0;
    comm *bad = NULL;
    assert_int_equal(comm_create_mpi(MPI_COMM_WORLD, &o, &bad), SL_ERR_INVALID);
    assert_null(bad);
    assert_non_null(strstr(sl_error_message(), "comm_timeout_s"));
}

/* The comm thread progresses a collective while the main thread makes no
 * comm call at all: submit, then sleep 400 ms and spin 100 ms (no test, no
 * wait), then ONE comm_work_test must say done. A backend that moved data
 * only inside test/wait would fail here (test_async polls in a loop, which
 * such a backend would pass). 4 MiB per rank: far above the eager limits of
 * shared-memory transports, so the transfer needs progress on both sides. */
static void test_progress_without_calls(void **state) {
    fixture *fx = fx_of(state);
    comm *c = fx->c;
    int k = comm_size(c), r = comm_rank(c);
    size_t n = (size_t)1 << 20;
    float *buf = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)exact_in(r, i);
    /* line the ranks up, so that every peer submits within the quiet window */
    assert_int_equal(MPI_Barrier(fx->t.comm), MPI_SUCCESS);
    comm_work *w = NULL;
    long wrong = status_wrong(comm_all_reduce_async(c, buf, buf, n, SL_DTYPE_F32, COMM_REDOP_SUM, &w),
                              "progress: submit");
    if (wrong) {
        free(buf);
        expect_none_wrong(fx, wrong, "progress submit");
        return;
    }
    sl_sleep_us(400000);
    double until = sl_now() + 0.1;
    volatile double sink = 0;
    while (sl_now() < until)
        sink += 1e-9;
    (void)sink;
    bool done = false;
    assert_int_equal(comm_work_test(w, &done), SL_OK);
    if (!done)
        fprintf(stderr, "rank %d: a 4 MiB all_reduce over %d ranks was not done after 500 ms without comm "
                        "calls: the backend does not progress on its own\n", r, k);
    wrong += !done;
    wrong += status_wrong(comm_work_wait(w, 0), "progress: wait");
    for (size_t i = 0; i < n; i++)
        wrong += buf[i] != (float)exact_out(k, i, COMM_REDOP_SUM);
    free(buf);
    expect_none_wrong(fx, wrong, "progress without comm calls");
}

/* ---- fault injection for test_comm_timeout.sh ------------------------- */

static int run_hang(fixture *fx, int hang_rank, double sleep_s) {
    int64_t x = fx->t.rank;
    uint8_t buf[64 * 3 * 8];
    if (comm_all_gather(fx->c, &x, buf, 1, SL_DTYPE_I64) != SL_OK ||
        comm_all_reduce(fx->c, &x, &x, 1, SL_DTYPE_I64, COMM_REDOP_SUM) != SL_OK) {
        fprintf(stderr, "hang test: setup collectives failed: %s\n", sl_error_message());
        return 1;
    }
    if (fx->t.rank == hang_rank) {
        LOG_INFO("hang test: sleeping %.0f s before collective #3", sleep_s);
        sleep((unsigned)sleep_s);
        LOG_INFO("hang test: woke up (the job should have been aborted by now)");
    }
    int64_t y = fx->t.rank;
    sl_status st = comm_all_gather(fx->c, &y, buf, 1, SL_DTYPE_I64);
    LOG_INFO("hang test: collective #3 returned %s", sl_status_name(st));
    return 3; /* reaching here means no abort happened */
}

int main(int argc, char **argv) {
    int hang_rank = -1;
    double hang_s = 0, timeout_s = 60;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--hang") == 0 && sscanf(argv[i + 1], "%d:%lf", &hang_rank, &hang_s) != 2) {
            fprintf(stderr, "--hang wants RANK:SECONDS\n");
            return 2;
        }
        if (strcmp(argv[i], "--timeout") == 0)
            timeout_s = atof(argv[i + 1]);
    }
    fixture fx;
    memset(&fx, 0, sizeof fx);
    if (topology_init(&fx.t, &argc, &argv, 0) != SL_OK) {
        fprintf(stderr, "topology_init: %s\n", sl_error_message());
        return 1;
    }
    log_init(fx.t.rank, fx.t.host, LOG_LEVEL_INFO);
    comm_opts o;
    comm_opts_default(&o);
    o.timeout_s = timeout_s; /* a broken test aborts instead of hanging ctest */
    if (comm_create_mpi(fx.t.comm, &o, &fx.c) != SL_OK) {
        fprintf(stderr, "comm_create_mpi: %s\n", sl_error_message());
        return 1;
    }
    o.scratch_bytes = 4096;
    o.name = "tiny";
    if (comm_create_mpi(fx.t.comm, &o, &fx.tiny) != SL_OK) {
        fprintf(stderr, "comm_create_mpi: %s\n", sl_error_message());
        return 1;
    }
    int rc;
    if (hang_rank >= 0) {
        rc = run_hang(&fx, hang_rank, hang_s);
    } else {
        void *st = &fx;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_prestate(test_all_gather, st),
            cmocka_unit_test_prestate(test_reduce_scatter, st),
            cmocka_unit_test_prestate(test_all_reduce, st),
            cmocka_unit_test_prestate(test_sum_order_bitwise, st),
            cmocka_unit_test_prestate(test_broadcast, st),
            cmocka_unit_test_prestate(test_async, st),
            cmocka_unit_test_prestate(test_progress_without_calls, st),
            cmocka_unit_test_prestate(test_split, st),
            cmocka_unit_test_prestate(test_invalid, st),
        };
        rc = cmocka_run_group_tests_name("comm", tests, NULL, NULL);
    }
    comm_destroy(fx.tiny);
    comm_destroy(fx.c);
    topology_finalize(&fx.t);
    return rc;
}
