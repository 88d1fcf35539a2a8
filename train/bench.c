/* The training-step benchmark, `shardlm bench`: one process on the CPU or
 * one GPU, or any world under mpirun. It drives the real training job
 * (train/train.h: FSDP, model, the one optimizer step of `shardlm train`;
 * world 1 is a job of one rank) on synthetic tokens
 * (train_synthetic_tokens), on the CPU backend (fp32) or the CUDA backend
 * (bf16).
 *
 * Order: [--find-batch: the largest micro-batch that fits] -> a reference
 * run of steps 0 and 1 (setup, two steps, teardown) -> the measured run:
 * step 0 validated (finite, identical on every rank, within 1 of ln V for a
 * random init), step 1, both compared bitwise with the reference run's
 * losses (the CUDA kernels, MPI sums and NCCL on a fixed topology are
 * deterministic, so any difference is a bug, not noise) -> W warmup steps
 * -> N timed steps. Each timed step is bracketed by backend_synchronize and
 * timed on the host clock, so it holds all of its device work. Reported:
 * median and minimum step, tokens/s (global and per rank), MFU (the peer's
 * FLOPs per token, bench_device.h, over the datasheet peak of the device or
 * --peak), exposed and total comm, the memory accountant's peak (in total
 * and by category: peak_bytes_<category>, peak_bytes_total, over setup and
 * the training steps) and the device memory in use (cudaMemGetInfo). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/log.h"
#include "runtime/metrics.h"
#include "train/bench.h"
#include "train/bench_device.h"
#include "train/train.h"

#define REF_STEPS 2 /* steps of the reference run compared bitwise */

/* Setup, n steps (losses into loss[0..n)), teardown. */
static sl_status reference_run(sl_config *cfg, topology *topo, int threads, int n, double *loss) {
    train_job *j = calloc(1, sizeof *j);
    SL_CHECK_ALLOC(j, sizeof *j);
    train_setup_opts so = {.synthetic = true, .cpu_threads = threads};
    sl_status st = train_job_setup(j, cfg, topo, &so);
    for (int i = 0; i < n && st == SL_OK; i++) {
        train_step_result r;
        st = train_job_step(j, &r);
        loss[i] = r.loss;
    }
    train_job_teardown(j);
    free(j);
    return st;
}

/* Whether micro_batch B fits: setup and one step succeed (an allocation
 * failure, device or host, means no) and the accountant's peak is within
 * cap_bytes when that is > 0. Other errors are returned. */
static sl_status try_batch(sl_config *cfg, topology *topo, int threads, int B, int64_t cap_bytes, bool *fits,
                           int64_t *peak) {
    cfg->train.micro_batch = B;
    train_job *j = calloc(1, sizeof *j);
    SL_CHECK_ALLOC(j, sizeof *j);
    train_setup_opts so = {.synthetic = true, .cpu_threads = threads};
    sl_status st = train_job_setup(j, cfg, topo, &so);
    train_step_result r;
    if (st == SL_OK)
        st = train_job_step(j, &r);
    if (st == SL_OK && j->be)
        st = backend_synchronize(j->be);
    *peak = mem_peak_total(&j->acct);
    train_job_teardown(j);
    free(j);
    *fits = st == SL_OK && (cap_bytes <= 0 || *peak <= cap_bytes);
    if (st == SL_ERR_NOMEM) {
        printf("find_batch %d: does not fit (%s)\n", B, sl_error_message());
        sl_error_clear();
        return SL_OK;
    }
    SL_TRY(st);
    printf("find_batch %d: %s (peak %.1f MiB%s)\n", B, *fits ? "fits" : "over --mem-cap",
           (double)*peak / (1 << 20), cap_bytes > 0 ? " by the accountant" : "");
    return SL_OK;
}

/* Doubles train.micro_batch from 1 until a batch does not fit, then keeps
 * the last that did (world 1 only: an allocation failure on one rank would
 * leave the others waiting in a collective). */
static sl_status find_batch(sl_config *cfg, topology *topo, const bench_opts *o) {
    if (topo->world != 1)
        return sl_errorf(SL_ERR_INVALID, "--find-batch runs in one process (world 1, found %d ranks): an "
                                         "allocation failure on one rank would strand the others",
                         topo->world);
    int64_t cap = (int64_t)(o->mem_cap_gib * 1073741824.0);
    log_level lv = log_get_level();
    log_set_level(LOG_LEVEL_WARN); /* one setup per probe: keep its lines out */
    int good = 0;
    sl_status st = SL_OK;
    int max_b = o->max_batch > 0 ? o->max_batch : 65536;
    for (int B = 1; B <= max_b && st == SL_OK; B *= 2) {
        bool fits = false;
        int64_t peak = 0;
        st = try_batch(cfg, topo, o->threads, B, cap, &fits, &peak);
        if (st != SL_OK || !fits)
            break;
        good = B;
    }
    log_set_level(lv);
    SL_TRY(st);
    if (good == 0)
        return sl_errorf(SL_ERR_NOMEM, "--find-batch: not even micro_batch 1 fits (seq_len %d%s); lower "
                                       "data.seq_len, set train.recompute = true, or shard over more GPUs",
                         cfg->data.seq_len, cap > 0 ? ", within --mem-cap" : "");
    cfg->train.micro_batch = good;
    printf("find_batch result: micro_batch %d (the largest power of two that fits%s)\n", good,
           good * 2 > max_b ? ", capped by --max-batch" : "");
    return SL_OK;
}

static sl_status validate(train_job *j, const bench_opts *o, const double *ref, double *loss0) {
    const sl_config *c = j->cfg;
    train_step_result r;
    SL_TRY(train_job_step(j, &r));
    double mm[2] = {r.loss, -r.loss};
    SL_TRY(comm_all_reduce(j->world, mm, mm, 2, SL_DTYPE_F64, COMM_REDOP_MAX));
    if (!isfinite(r.loss) || mm[0] != -mm[1])
        return sl_errorf(SL_ERR_INTERNAL, "bench validation failed: step-0 loss %g (max %g, min %g over ranks)",
                         r.loss, mm[0], -mm[1]);
    double lnv = log((double)c->model.vocab_size);
    if (!c->model.init_from[0] && fabs(r.loss - lnv) > 1.0)
        return sl_errorf(SL_ERR_INTERNAL,
                         "bench validation failed: step-0 loss %.6f of a random init is not within 1 of "
                         "ln V = %.4f (logits should start near uniform): the forward pass or the loss is "
                         "wrong on this backend",
                         r.loss, lnv);
    *loss0 = r.loss;
    LOG_INFO0("step-0 loss %.6f (ln V = %.4f), identical on every rank", r.loss, lnv);
    if (!o->repeat_check)
        return SL_OK;
    double got[REF_STEPS] = {r.loss};
    for (int i = 1; i < REF_STEPS; i++) {
        SL_TRY(train_job_step(j, &r));
        got[i] = r.loss;
    }
    for (int i = 0; i < REF_STEPS; i++)
        if (memcmp(&got[i], &ref[i], sizeof got[i]) != 0)
            return sl_errorf(SL_ERR_INTERNAL,
                             "bench validation failed: step %d loss %.17g differs from %.17g of an identical "
                             "earlier run; the kernels and collectives are meant to be bitwise reproducible, "
                             "so this is a bug to report (--no-repeat-check skips the check)",
                             i, got[i], ref[i]);
    return SL_OK;
}

typedef struct {
    double loss0, step_s, min_s, exposed_s, comm_s;
    int64_t peak[MEM_CATEGORY_COUNT], peak_total; /* the accountant's, over setup and the training steps */
} job_times;

static sl_status timed_steps(train_job *j, const bench_opts *o, job_times *out) {
    train_step_result r;
    for (int i = 0; i < o->warmup; i++)
        SL_TRY(train_job_step(j, &r));
    size_t n = (size_t)o->steps;
    double *t = calloc(n, sizeof *t), *e = calloc(n, sizeof *e), *c = calloc(n, sizeof *c);
    sl_status st = t && e && c ? backend_synchronize(j->be) : sl_errorf(SL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < o->steps && st == SL_OK; i++) {
        double t0 = sl_now();
        st = train_job_step(j, &r);
        if (st == SL_OK)
            st = backend_synchronize(j->be);
        t[i] = sl_now() - t0;
        e[i] = r.exposed_comm_s;
    }
    /* the memory of training, before the comm-only replay adds its own buffers */
    for (int cat = 0; cat < MEM_CATEGORY_COUNT; cat++)
        out->peak[cat] = mem_peak(&j->acct, (mem_category)cat);
    out->peak_total = mem_peak_total(&j->acct);
    for (int i = 0; i < o->steps && st == SL_OK; i++) {
        c[i] = 0;
        for (int g = 0; g < j->n_groups && st == SL_OK; g++) {
            double s = 0;
            st = fsdp_comm_only_step(j->groups[g].fs, &s);
            c[i] += s;
        }
    }
    if (st == SL_OK) {
        out->step_s = metrics_median(t, o->steps);
        out->min_s = t[0]; /* sorted by metrics_median */
        out->exposed_s = metrics_median(e, o->steps);
        out->comm_s = metrics_median(c, o->steps);
    }
    free(t);
    free(e);
    free(c);
    return st;
}

static void report(const train_job *j, const bench_opts *o, const job_times *tm, const bench_device *d) {
    const sl_config *c = j->cfg;
    double tok = (double)j->plan.tokens_per_step / tm->step_s;
    double fpt = model_layout_flops_per_token(j->layout, c->data.seq_len);
    double peak = o->peak_tflops > 0 ? o->peak_tflops : d->peak_tflops;
    printf("device %s | backend %s | compute %s\n", d->name, j->use_cuda ? "cuda" : "cpu",
           dtype_name(j->be->act_dtype));
    if (o->peak_tflops > 0)
        printf("peak_tflops %g (--peak)\n", peak);
    else if (peak > 0)
        printf("peak_tflops %g (dense bf16 datasheet, table row \"%s\")\n", peak, d->peak_source);
    else
        printf("peak_tflops n/a (unknown device \"%s\": pass --peak TFLOPS for MFU)\n", d->name);
    /* config_enum_name returns one static buffer: one call per printf */
    printf("world %d, fsdp %s, ", j->plan.world, config_enum_name("parallel.fsdp_mode", j->plan.mode));
    printf("%s %d layers d_model %d, micro_batch %d x seq %d x accum %d\n",
           config_enum_name("model.arch", c->model.arch), c->model.n_layer, c->model.d_model,
           c->train.micro_batch, c->data.seq_len, c->train.grad_accum);
    printf("params %lld\n", (long long)model_layout_param_count(j->layout));
    printf("loss0 %.6f\n", tm->loss0);
    printf("loss0_ln_v %.6f\n", log((double)c->model.vocab_size));
    printf("repeat_check %s\n", o->repeat_check ? "bitwise (steps 0 and 1 of a second run)" : "off");
    printf("timed_steps %d (after %d warmup; host clock, backend_synchronize before and after each)\n",
           o->steps, o->warmup);
    printf("median_step_s %.4f\n", tm->step_s);
    printf("min_step_s %.4f\n", tm->min_s);
    printf("tokens_per_s %.1f\n", tok);
    printf("tokens_per_s_per_rank %.1f\n", tok / j->plan.world);
    printf("flops_per_token %.6g\n", fpt);
    printf("tflops_per_s_per_rank %.2f\n", tok * fpt / j->plan.world / 1e12);
    if (peak > 0)
        printf("mfu_pct %.1f\n", 100.0 * tok * fpt / (peak * 1e12 * j->plan.world));
    else
        printf("mfu_pct n/a\n");
    if (j->use_cuda) { /* NCCL waits are stream-ordered: the host never blocks (fsdp.h) */
        printf("exposed_comm_ms n/a (NCCL waits do not block the host; use a device timeline)\n");
        printf("total_comm_ms %.2f\n", 1e3 * tm->comm_s);
        printf("overlap_pct n/a\n");
    } else {
        printf("exposed_comm_ms %.2f\n", 1e3 * tm->exposed_s);
        printf("total_comm_ms %.2f\n", 1e3 * tm->comm_s);
        if (j->plan.world > 1 && tm->comm_s > 0)
            printf("overlap_pct %.1f\n", 100.0 * (1.0 - tm->exposed_s / tm->comm_s));
        else
            printf("overlap_pct n/a (no collectives at world size 1)\n");
    }
    printf("peak_mib %.1f\n", (double)mem_peak_total(&j->acct) / (1 << 20));
    /* this rank's (rank 0's) accountant peaks during setup and the training steps, by
     * category (peak_mib above also covers the comm-only replay's buffers) */
    for (int cat = 0; cat < MEM_CATEGORY_COUNT; cat++)
        printf("peak_bytes_%s %lld\n", mem_category_name((mem_category)cat), (long long)tm->peak[cat]);
    printf("peak_bytes_total %lld\n", (long long)tm->peak_total);
    if (d->is_gpu) {
        printf("device_used_mib %.1f\n", (double)d->mem_used / (1 << 20));
        printf("device_total_mib %.1f\n", (double)d->mem_total / (1 << 20));
    }
}

static sl_status bench_job(sl_config *cfg, topology *topo, const bench_opts *o, train_job *j) {
    if (o->find_batch)
        SL_TRY(find_batch(cfg, topo, o));
    double ref[REF_STEPS] = {0};
    if (o->repeat_check)
        SL_TRY(reference_run(cfg, topo, o->threads, REF_STEPS, ref));
    train_setup_opts so = {.synthetic = true, .cpu_threads = o->threads};
    SL_TRY(train_job_setup(j, cfg, topo, &so));
    if (o->save_init) {
        SL_TRY(train_job_export(j, o->save_init));
        LOG_INFO0("wrote the initial weights to %s (--save-init)", o->save_init);
    }
    job_times tm;
    memset(&tm, 0, sizeof tm);
    SL_TRY(validate(j, o, ref, &tm.loss0));
    SL_TRY(timed_steps(j, o, &tm));
    bench_device d;
    SL_TRY(bench_device_query(j->use_cuda, &d));
    if (topo->rank == 0)
        report(j, o, &tm, &d);
    return SL_OK;
}

sl_status train_bench_run(sl_config *cfg, topology *topo, const bench_opts *o) {
    train_job *j = calloc(1, sizeof *j);
    SL_CHECK_ALLOC(j, sizeof *j);
    sl_status st = bench_job(cfg, topo, o, j);
    train_job_teardown(j);
    free(j);
    return st;
}
