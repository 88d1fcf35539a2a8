/* train/run.c: the `shardlm train` loop: step line, metrics, eval,
 * checkpoints, preemption and the final export (train.h). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/handoff.h"
#include "model/hf.h"
#include "model/hf_stream.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"
#include "runtime/preempt.h"
#include "ckpt/ckpt.h"
#include "train/train_ckpt.h"
#include "train/train.h"
#include "train/train_lora.h"

static void fmt_thousands(char *buf, size_t cap, double x) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.0f", x);
    size_t n = strlen(tmp), o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        buf[o++] = tmp[i];
        if ((n - i - 1) % 3 == 0 && i + 1 < n && tmp[i] != '-')
            buf[o++] = ',';
    }
    buf[o] = 0;
}

/* Seconds left at the mean step time of this process's steps so far
 * (wall clock, evals and checkpoints included); < 0 when unknown. */
static double eta_seconds(const train_job *j) {
    int done = j->step - j->run_start_step;
    if (done <= 0 || j->run_start_time <= 0)
        return -1;
    return (sl_now() - j->run_start_time) / done * (double)(j->cfg->train.steps - j->step);
}

static void fmt_duration(char *buf, size_t cap, double s) {
    if (s < 0)
        snprintf(buf, cap, "?");
    else if (s < 60)
        snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

/* " | rewards/accuracies 0.75 | ..." for the pair objective's step-line
 * metrics; "" for sft. */
static void pair_metrics_text(const train_job *j, const double *m, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; j->pobj && i < j->pobj->n_metrics; i++)
        if (j->pobj->on_step_line[i])
            snprintf(out + strlen(out), cap - strlen(out), " | %s %.4f", j->pobj->metric_names[i], m[i]);
}

static void log_step(train_job *j, const train_step_result *r) {
    const sl_config *c = j->cfg;
    char eta[32];
    fmt_duration(eta, sizeof eta, eta_seconds(j));
    double tok_s = (double)j->plan.tokens_per_step * j->rows_per_sample / r->seconds; /* pairs: 2 rows each */
    char toks[48], mfu[32] = "", skipped[48] = "", exposed[32] = "n/a";
    fmt_thousands(toks, sizeof toks, tok_s);
    /* NCCL waits do not block the host, so the host-blocked share means
     * nothing on CUDA (parallel/fsdp.h) */
    if (!j->use_cuda)
        snprintf(exposed, sizeof exposed, "%.0f%%", 100.0 * r->exposed_comm_s / r->seconds);
    if (j->peak_flops > 0)
        snprintf(mfu, sizeof mfu, " | mfu %.1f%%",
                 100.0 * tok_s * j->flops_per_token / (j->peak_flops * j->plan.world));
    if (r->skipped)
        snprintf(skipped, sizeof skipped, " | SKIPPED (non-finite; %d so far)", j->n_skipped);
    char pm[256];
    pair_metrics_text(j, r->metrics, pm, sizeof pm);
    LOG_INFO0("step %d/%d | loss %.4f%s | lr %.2e | gnorm %.2f | %.0f ms | %s tok/s%s | mem %.2f GiB | "
              "comm exposed %s | eta %s%s",
              j->step, c->train.steps, r->loss, pm, r->lr, r->grad_norm, 1e3 * r->seconds, toks, mfu,
              (double)mem_peak_total(&j->acct) / (1024.0 * 1024.0 * 1024.0), exposed, eta, skipped);
}

static sl_status log_metrics(train_job *j, const train_step_result *r) {
    if (!j->metrics)
        return SL_OK;
    double tok_s = (double)j->plan.tokens_per_step * j->rows_per_sample / r->seconds; /* pairs: 2 rows each */
    metric_kv kv[] = {
        {"loss", r->loss},
        {"lr", r->lr},
        {"gnorm", r->grad_norm},
        {"step_ms", 1e3 * r->seconds},
        {"tok_per_s", tok_s},
        {"mem_gib", (double)mem_peak_total(&j->acct) / (1024.0 * 1024.0 * 1024.0)},
        {"skipped", r->skipped ? 1.0 : 0.0},
        {NULL, 0}, /* comm_exposed_pct: host-blocked time means nothing on CUDA (NCCL waits are stream-ordered) */
        {NULL, 0}, /* mfu_pct: where the device's peak is known */
        {NULL, 0}, /* eta_s: once a step's time is known */
        {NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}, /* pair objectives' metrics (TRL's names) */
        {NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0},
    };
    int n = 7;
    for (int i = 0; j->pobj && i < r->n_metrics; i++)
        kv[n++] = (metric_kv){j->pobj->metric_names[i], r->metrics[i]};
    if (!j->use_cuda)
        kv[n++] = (metric_kv){"comm_exposed_pct", 100.0 * r->exposed_comm_s / r->seconds};
    if (j->peak_flops > 0)
        kv[n++] = (metric_kv){"mfu_pct", 100.0 * tok_s * j->flops_per_token / (j->peak_flops * j->plan.world)};
    double eta = eta_seconds(j);
    if (eta >= 0)
        kv[n++] = (metric_kv){"eta_s", eta};
    return metrics_write_group(j->metrics, j->step, "train", kv, n);
}

static sl_status run_eval(train_job *j, const char *when) {
    if (!j->eval_loader)
        return SL_OK;
    double loss;
    int64_t tokens;
    SL_TRY(train_job_eval(j, &loss, &tokens));
    bool best = !(j->best_eval_loss <= loss);
    if (best)
        j->best_eval_loss = loss;
    j->last_eval_loss = loss;
    j->last_eval_step = j->step;
    if (j->pobj) {
        /* pair objectives: the objective's loss and metrics, over pairs */
        char pm[256];
        pair_metrics_text(j, j->eval_metrics, pm, sizeof pm);
        LOG_INFO0("eval %s (step %d) | %s loss %.4f%s | %lld pairs%s", when, j->step, j->pobj->name, loss, pm,
                  (long long)tokens, best && j->step > 0 ? " | best so far" : "");
        if (j->metrics) {
            metric_kv kv[1 + PAIR_MAX_METRICS] = {{"eval_loss", loss}};
            int n = 1;
            char names[PAIR_MAX_METRICS][64];
            for (int i = 0; i < j->pobj->n_metrics; i++) {
                /* TRL's eval names: "eval_rewards/accuracies" */
                snprintf(names[i], sizeof names[i], "eval_%s", j->pobj->metric_names[i]);
                kv[n++] = (metric_kv){names[i], j->eval_metrics[i]};
            }
            SL_TRY(metrics_write_group(j->metrics, j->step, "eval", kv, n));
        }
        return SL_OK;
    }
    LOG_INFO0("eval %s (step %d) | loss %.4f | ppl %.2f | %lld tokens%s", when, j->step, loss, exp(loss),
              (long long)tokens, best && j->step > 0 ? " | best so far" : "");
    if (j->metrics) {
        metric_kv kv[] = {{"eval_loss", loss}, {"eval_ppl", exp(loss)}};
        SL_TRY(metrics_write_group(j->metrics, j->step, "eval", kv, 2));
    }
    return SL_OK;
}

sl_status train_copy_tokenizer(const sl_config *c, const char *dir) {
    /* generation needs the tokenizer beside the weights: the hand-off files
     * (data/handoff.h) of every export, the run's and a checkpoint's alike */
    if (!c->data.tokenizer[0])
        return SL_OK;
    return tok_handoff_write(c->data.tokenizer, dir);
}

sl_status train_job_export(train_job *j, const char *dir) {
    if (j->lora)
        return train_lora_export(j, dir);
    /* streamed: one unit gathered at a time, written by rank 0 into files of
     * at most export.max_shard_size bytes */
    hf_writer *w = NULL;
    sl_status st = SL_OK;
    if (j->topo->rank == 0)
        st = hf_writer_open(dir, j->layout, j->cfg->export.dtype == COMPUTE_DTYPE_BF16 ? SL_DTYPE_BF16 : SL_DTYPE_F32,
                            "", (uint64_t)j->cfg->export.max_shard_size, &w);
    int32_t bad = st != SL_OK;
    SL_TRY(comm_all_reduce(j->world, &bad, &bad, 1, SL_DTYPE_I32, COMM_REDOP_MAX));
    if (bad) {
        j->stop_agreed = true;
        return st != SL_OK ? st : sl_errorf(SL_ERR_IO, "rank 0 could not start the export to %s", dir);
    }
    st = train_group_export(&j->groups[0], w, j->world);
    if (st != SL_OK) {
        hf_writer_abort(w);
        j->stop_agreed = true;
        return sl_error_wrapf(st, "exporting to %s", dir);
    }
    if (w)
        st = hf_writer_close(w);
    if (st == SL_OK && j->topo->rank == 0)
        st = train_copy_tokenizer(j->cfg, dir);
    return st;
}

static sl_status export_final(train_job *j) {
    char dir[CFG_STR_MAX + 16];
    snprintf(dir, sizeof dir, "%s/export", j->cfg->train.run_dir);
    SL_TRY(train_job_export(j, dir));
    if (!j->lora)
        LOG_INFO0("exported the final model to %s (Hugging Face layout)", dir);
    return SL_OK;
}

/* Step boundary: if any rank got SIGTERM/SIGUSR1 (runtime/preempt.h),
 * every rank saves and returns SL_ERR_INTERRUPTED (exit 75). */
static sl_status check_preempt(train_job *j) {
    int32_t sig = preempt_signal();
    SL_TRY(comm_all_reduce(j->world, &sig, &sig, 1, SL_DTYPE_I32, COMM_REDOP_MAX));
    if (sig == 0)
        return SL_OK;
    const char *name = sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1" : "a signal";
    LOG_WARN0("%s (%d) received: saving a checkpoint at step %d and stopping", name, sig, j->step);
    if (j->saved_step != j->step)
        SL_TRY(train_ckpt_save(j));
    j->stop_agreed = true;
    char root[CFG_STR_MAX + 32];
    SL_TRY(ckpt_root(j->cfg, root, sizeof root));
    return sl_errorf(SL_ERR_INTERRUPTED,
                     "stopped by %s at step %d; checkpoint %s/step_%08d is saved: relaunch with --resume auto "
                     "to continue",
                     name, j->step, root, j->step);
}

sl_status train_job_run(train_job *j) {
    const sl_config *c = j->cfg;
    char plan[256];
    parallel_plan_describe(&j->plan, plan, sizeof plan);
    LOG_INFO0("%s", plan);
    char where[512];
    topology_describe(j->topo, where, sizeof where);
    LOG_INFO0("%s", where);
    LOG_INFO0("model %s: %d layers, d_model %d, %d heads (%d kv), vocab %d, %.2fM parameters; "
              "seq %d, %lld tokens per step",
              config_enum_name("model.arch", c->model.arch), c->model.n_layer, c->model.d_model,
              c->model.n_head, c->model.n_kv_head, c->model.vocab_size,
              (double)model_layout_param_count(j->layout) / 1e6, c->data.seq_len,
              (long long)j->plan.tokens_per_step);
    if (j->topo->rank == 0) {
        char path[CFG_STR_MAX + 32];
        SL_TRY(fs_mkdirs(c->train.run_dir));
        snprintf(path, sizeof path, "%s/config.json", c->train.run_dir);
        SL_TRY(config_write_file(c, path));
        snprintf(path, sizeof path, "%s/metrics.jsonl", c->train.run_dir);
        bool earlier = fs_exists(path);
        SL_TRY(metrics_open(c->train.run_dir, c->logging.tensorboard, &j->metrics));
        /* lines of an earlier attempt stay: mark where this one starts, so
         * that repeated steps read as a restart */
        if (earlier) {
            char detail[CFG_STR_MAX + 64];
            snprintf(detail, sizeof detail, "%s at step %d",
                     j->step > 0 ? "resumed from a checkpoint" : "started again", j->step);
            SL_TRY(metrics_mark(j->metrics, j->step, "restart", detail));
        }
    }
    j->run_start_step = j->step;
    j->run_start_time = sl_now();
    if (j->step == 0) {
        SL_TRY(run_eval(j, "before training"));
        j->run_start_time = sl_now(); /* the ETA counts steps only */
    }
    while (j->step < c->train.steps) {
        SL_TRY(check_preempt(j));
        train_step_result r;
        SL_TRY(train_job_step(j, &r));
        if (j->step % c->logging.log_every == 0 || j->step == c->train.steps || r.skipped)
            log_step(j, &r);
        SL_TRY(log_metrics(j, &r));
        if (c->train.eval_every > 0 && j->step % c->train.eval_every == 0 && j->step < c->train.steps)
            SL_TRY(run_eval(j, "during training"));
        if (c->checkpoint.every > 0 && j->step % c->checkpoint.every == 0 && j->step < c->train.steps)
            SL_TRY(train_ckpt_save(j));
        train_faults_after_step(&j->faults, j->step);
    }
    /* the final eval first, so that the last checkpoint records its loss
     * (checkpoint.keep_best) */
    SL_TRY(run_eval(j, "after training"));
    if (j->saved_step != j->step)
        SL_TRY(train_ckpt_save(j));
    if (c->train.export_final)
        SL_TRY(export_final(j));
    if (j->n_skipped)
        LOG_WARN0("%d of %d steps were skipped for non-finite loss or gradient norm", j->n_skipped,
                  c->train.steps);
    if (j->pobj && j->train_loader) {
        /* pairs whose response data.seq_len cut off whole: a row without a target */
        int64_t cut = (int64_t)loader_pairs_truncated(j->train_loader);
        SL_TRY(comm_all_reduce(j->world, &cut, &cut, 1, SL_DTYPE_I64, COMM_REDOP_SUM));
        if (cut > 0)
            LOG_WARN0("%lld training pair(s) had a response cut off entirely by data.seq_len = %d (that row "
                      "has no target): raise data.seq_len or drop long prompts",
                      (long long)cut, c->data.seq_len);
    }
    /* every rank: what the process held at its peak (the accountant's
     * categories, the runtime, the loader), for comparing world sizes */
    LOG_INFO("peak RSS of this rank: %.1f MiB", (double)mem_process_peak_rss() / (1024.0 * 1024.0));
    return SL_OK;
}
