/* train/train_ckpt.c: the job -> ckpt/ adapter (train_ckpt.h): the job's
 * parts with their unit sizes and layout hashes, the context (config,
 * world comm, rank, plan, tokenizer hash, kill-in-save hook) and the
 * recorded state; on resume, the state applied back to the job and its
 * loader.
 *
 * Does not: implement any of the protocol (ckpt/ckpt_save.c, ckpt_load.c).
 *
 * defines: train_ckpt_save, train_ckpt_find_resume, train_ckpt_load,
 *          train_ckpt_layout_hash
 */
#include "train/train_ckpt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"
#include <math.h>

void train_ckpt_layout_hash(const model_layout *l, char out[17]) {
    size_t cap = (size_t)l->n_params * (MODEL_NAME_MAX + 96) + 64, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(out, 17, "%016x", 0);
        return;
    }
    n += (size_t)snprintf(buf + n, cap - n, "units %d;", l->n_units);
    for (int u = 0; u < l->n_units; u++)
        n += (size_t)snprintf(buf + n, cap - n, "%" PRId64 ",", l->units[u].numel);
    for (int i = 0; i < l->n_params; i++) {
        const model_param *p = &l->params[i];
        n += (size_t)snprintf(buf + n, cap - n, "%s:%" PRId64 "x%" PRId64 ":%d:%" PRId64 ";", p->name,
                              p->shape[0], p->ndim > 1 ? p->shape[1] : 0, p->unit, p->offset);
    }
    snprintf(out, 17, "%016" PRIx64, fs_hash64(buf, n));
    free(buf);
}

/* The parts a job saves: its trainable parameter groups (a frozen LoRA base
 * is model.init_from, reloaded at setup), with the storage their
 * descriptions point to. */
typedef struct {
    ckpt_part parts[2];
    int n;
    int64_t *numel[2];
    char hash[2][17];
} job_parts;

static void job_parts_free(job_parts *p) {
    for (int i = 0; i < 2; i++)
        free(p->numel[i]);
}

static sl_status job_parts_make(const train_job *j, job_parts *p) {
    memset(p, 0, sizeof *p);
    for (int g = 0; g < j->n_groups; g++) {
        const train_group *gr = &j->groups[g];
        if (!gr->trainable)
            continue;
        const model_layout *l = gr->layout;
        int i = p->n++;
        p->numel[i] = malloc(sizeof(int64_t) * (size_t)l->n_units);
        if (!p->numel[i]) {
            job_parts_free(p);
            return sl_errorf(SL_ERR_NOMEM, "out of memory (checkpoint part %s)", gr->name);
        }
        for (int u = 0; u < l->n_units; u++)
            p->numel[i][u] = l->units[u].numel;
        train_ckpt_layout_hash(l, p->hash[i]);
        p->parts[i] = (ckpt_part){gr->name, gr->fs, l->n_units, p->numel[i], p->hash[i]};
    }
    return SL_OK;
}

static ckpt_ctx job_ctx(const train_job *j) {
    return (ckpt_ctx){.cfg = j->cfg,
                      .world = j->world,
                      .rank = j->topo->rank,
                      .world_size = j->topo->world,
                      .plan = &j->plan,
                      .tokenizer_hash = j->tokenizer_hash,
                      .kill_in_save_step = j->faults.kill_save_step};
}

/* After a ckpt/ call: every rank agreed on a failure; the lowest failing
 * rank prints it. */
static void note_agreed(train_job *j, const ckpt_ctx *c) {
    if (c->stop_agreed && !j->stop_agreed) {
        j->stop_agreed = true;
        j->report_rank = c->failed_rank;
    }
}

sl_status train_ckpt_save(train_job *j) {
    job_parts p;
    SL_TRY(job_parts_make(j, &p));
    ckpt_ctx c = job_ctx(j);
    ckpt_state s = {.step = j->step,
                    .skipped_steps = j->n_skipped,
                    .optim_steps = optim_steps_applied(j->opt),
                    .eval_loss = j->last_eval_step == j->step ? j->last_eval_loss : NAN};
    if (j->train_loader) {
        loader_state ls = loader_state_get(j->train_loader);
        s.has_loader = true;
        s.loader_epoch = (int64_t)ls.epoch;
        s.loader_sample = (int64_t)ls.sample;
    }
    sl_status st = ckpt_save(&c, p.parts, p.n, &s);
    note_agreed(j, &c);
    job_parts_free(&p);
    SL_TRY(st);
    j->saved_step = j->step;
    return SL_OK;
}

sl_status train_ckpt_find_resume(train_job *j, char *dir, size_t cap, bool *found) {
    ckpt_ctx c = job_ctx(j);
    sl_status st = ckpt_find_resume(&c, dir, cap, found);
    note_agreed(j, &c);
    return st;
}

sl_status train_ckpt_load(train_job *j, const char *dir) {
    job_parts p;
    SL_TRY(job_parts_make(j, &p));
    ckpt_ctx c = job_ctx(j);
    ckpt_state s;
    bool own_root = false;
    sl_status st = ckpt_load(&c, dir, p.parts, p.n, j->train_loader != NULL, &s, &own_root);
    job_parts_free(&p);
    if (st == SL_OK && j->train_loader) {
        st = loader_state_set(j->train_loader,
                              (loader_state){(uint64_t)s.loader_epoch, (uint64_t)s.loader_sample});
        st = ckpt_agree(&c, st, "load the checkpoint");
    }
    note_agreed(j, &c);
    SL_TRY(st);
    j->step = (int)s.step;
    j->n_skipped = (int)s.skipped_steps;
    optim_set_steps_applied(j->opt, s.optim_steps);
    j->saved_step = own_root ? j->step : -1;
    return SL_OK;
}

sl_status train_ckpt_resume(train_job *j, const char *first) {
    char dir[CKPT_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", first);
    bool auto_resume = strcmp(j->cfg->checkpoint.resume, "auto") == 0;
    for (;;) {
        sl_status st = train_ckpt_load(j, dir);
        if (st == SL_OK)
            return SL_OK;
        /* a checkpoint that cannot be read (truncated, a missing or corrupt
         * rank file) is refused (exit 2); `auto` falls back to the previous
         * complete one. Another model or tokenizer is refused as it is. */
        bool damaged = st == SL_ERR_IO || st == SL_ERR_FORMAT;
        if (!damaged || !auto_resume || !j->stop_agreed)
            return damaged && j->stop_agreed ? sl_error_wrapf(SL_ERR_INVALID, "resume refused") : st;
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", sl_error_message());
        ckpt_ctx c = job_ctx(j);
        char prev[CKPT_PATH_MAX];
        bool found = false;
        j->stop_agreed = false;
        SL_TRY(ckpt_find_previous(&c, dir, prev, sizeof prev, &found));
        if (!found) {
            j->stop_agreed = true;
            return sl_errorf(SL_ERR_INVALID, "resume refused: %s; and no older complete checkpoint is there", msg);
        }
        LOG_WARN0("checkpoint.resume = auto: %s cannot be loaded (%s); falling back to %s", dir, msg, prev);
        snprintf(dir, sizeof dir, "%s", prev);
    }
}
