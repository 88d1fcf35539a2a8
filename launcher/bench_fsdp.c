/* The distributed step benchmark: `[mpirun -np N] shardlm bench --fsdp`.
 *
 * Runs the real training job (launcher/train.h) on synthetic tokens at any
 * world size and FSDP mode: warmup steps, then timed steps, reporting the
 * median step time, global and per-rank tokens/s, the exposed comm time (the
 * main thread blocked on collectives) and the total comm time of one step
 * (the same collectives replayed without compute, fsdp_comm_only_step), so
 * overlap = 1 - exposed / total. Validation before timing: the step-0 loss
 * must be finite and every rank must agree on it (all-reduce MAX - MIN = 0). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/bench.h"
#include "launcher/cli.h"
#include "launcher/train.h"
#include "runtime/log.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static sl_status bench_loop(train_job *j, const bench_opts *o) {
    train_step_result r;
    SL_TRY(train_job_step(j, &r));
    double mm[2] = {r.loss, -r.loss};
    SL_TRY(comm_all_reduce(j->world, mm, mm, 2, COMM_DTYPE_F64, COMM_REDOP_MAX));
    if (!isfinite(r.loss) || mm[0] != -mm[1])
        return sl_errorf(SL_ERR_INTERNAL, "bench validation failed: step-0 loss %g (max %g, min %g over ranks)",
                         r.loss, mm[0], -mm[1]);
    double expect = log((double)j->cfg->model.vocab_size);
    LOG_INFO0("step-0 loss %.6f (ln V = %.4f), identical on every rank", r.loss, expect);
    for (int i = 0; i < o->warmup; i++)
        SL_TRY(train_job_step(j, &r));
    double *t = calloc((size_t)o->steps, sizeof *t), *e = calloc((size_t)o->steps, sizeof *e);
    double *c = calloc((size_t)o->steps, sizeof *c);
    if (!t || !e || !c) {
        free(t);
        free(e);
        free(c);
        return sl_errorf(SL_ERR_NOMEM, "out of memory");
    }
    sl_status st = SL_OK;
    for (int i = 0; i < o->steps && st == SL_OK; i++) {
        st = train_job_step(j, &r);
        t[i] = r.seconds;
        e[i] = r.exposed_comm_s;
    }
    for (int i = 0; i < o->steps && st == SL_OK; i++)
        st = fsdp_comm_only_step(j->fs, &c[i]);
    if (st == SL_OK && j->topo->rank == 0) {
        double ts = median(t, o->steps), es = median(e, o->steps), cs = median(c, o->steps);
        double tok = (double)j->plan.tokens_per_step / ts;
        printf("world %d, fsdp %s, %s %d layers d_model %d, micro_batch %d x seq %d x accum %d\n",
               j->plan.world, config_enum_name("parallel.fsdp_mode", j->plan.mode),
               config_enum_name("model.arch", j->cfg->model.arch), j->cfg->model.n_layer,
               j->cfg->model.d_model, j->cfg->train.micro_batch, j->cfg->data.seq_len,
               j->cfg->train.grad_accum);
        printf("median_step_s %.4f\n", ts);
        printf("tokens_per_s %.1f\n", tok);
        printf("tokens_per_s_per_rank %.1f\n", tok / j->plan.world);
        printf("exposed_comm_ms %.2f\n", 1e3 * es);
        printf("total_comm_ms %.2f\n", 1e3 * cs);
        printf("overlap_pct %.1f\n", cs > 0 ? 100.0 * (1.0 - es / cs) : 0.0);
        printf("peak_mib %.1f\n", (double)mem_peak_total(&j->acct) / (1 << 20));
    }
    free(t);
    free(e);
    free(c);
    return st;
}

int bench_fsdp_main(sl_config *cfg, const bench_opts *o, int *argc, char ***argv) {
    topology topo;
    sl_status st = topology_init(&topo, argc, argv, cfg->parallel.ranks_per_node);
    log_level lv = LOG_LEVEL_WARN;
    log_level_parse(cfg->logging.level, &lv);
    log_init(topo.rank, topo.host, lv < LOG_LEVEL_WARN ? lv : LOG_LEVEL_INFO);
    train_job *j = calloc(1, sizeof *j);
    if (st == SL_OK && !j)
        st = sl_errorf(SL_ERR_NOMEM, "out of memory");
    if (st == SL_OK)
        st = train_job_setup(j, cfg, &topo, true);
    if (st == SL_OK)
        st = bench_loop(j, o);
    int code = cli_exit_code(st);
    if (st != SL_OK) {
        LOG_ERROR("shardlm bench: %s [%s]", sl_error_message(), sl_status_name(st));
        if (topo.world > 1)
            topology_abort(&topo, code);
    }
    if (j)
        train_job_teardown(j);
    free(j);
    topology_finalize(&topo);
    return code;
}
