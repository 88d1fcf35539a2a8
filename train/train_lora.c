/* train/train_lora.c: LoRA setup and export for the training job
 * (train_lora.h). */
#include "train/train_lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"
#include "runtime/check.h"
#include "runtime/log.h"

static sl_status load_adapter(train_job *j) {
    const model_layout *al = j->lora->layout;
    size_t n = (size_t)(al->total_numel > 0 ? al->total_numel : 1);
    float *host = calloc(n, sizeof *host);
    SL_CHECK_ALLOC(host, n * sizeof *host);
    sl_status st = lora_peft_load(j->cfg->lora.init_from, j->lora, host);
    if (st == SL_OK)
        st = train_group_load(&j->groups[1], host);
    free(host);
    if (st != SL_OK)
        return sl_error_wrapf(st, "lora.init_from = %s", j->cfg->lora.init_from);
    return SL_OK;
}

sl_status train_lora_setup(train_job *j, const fsdp_opts *base_opts) {
    sl_config *c = j->cfg;
    if (!c->model.init_from[0])
        LOG_WARN0("lora.enabled without model.init_from: the frozen base keeps its random "
                  "initialization (fine for benchmarks, useless for fine-tuning)");
    if (c->lora.init_from[0]) {
        sl_status st = lora_peft_read_config(c->lora.init_from, c->model.arch, &c->lora);
        if (st != SL_OK)
            return sl_error_wrapf(st, "lora.init_from = %s", c->lora.init_from);
    }
    SL_TRY(lora_create(j->layout, &c->lora, &j->lora));
    SL_TRY(train_group_create(&j->groups[1], "lora", j->lora->layout, base_opts, true));
    j->lora_fs = j->groups[1].fs;
    j->n_groups = 2;
    if (c->lora.init_from[0])
        SL_TRY(load_adapter(j));
    else
        SL_TRY(train_group_init(&j->groups[1], (uint64_t)c->train.seed));
    char targets[256] = "";
    for (int i = 0; i < c->lora.targets.n; i++)
        snprintf(targets + strlen(targets), sizeof targets - strlen(targets), "%s%s", i ? "," : "",
                 c->lora.targets.items[i]);
    LOG_INFO0("LoRA: r %d, alpha %g, scale %g%s, dropout %g, targets %s: %.3fM trainable parameters "
              "(%.2f%% of the frozen %.2fM)%s%s",
              j->lora->r, c->lora.alpha, (double)j->lora->scale, c->lora.rslora ? " (rsLoRA)" : "",
              c->lora.dropout, targets, (double)j->lora->layout->total_numel / 1e6,
              100.0 * (double)j->lora->layout->total_numel / (double)j->layout->total_numel,
              (double)j->layout->total_numel / 1e6, c->lora.init_from[0] ? "; adapters from " : "",
              c->lora.init_from);
    return SL_OK;
}

sl_status train_lora_export(train_job *j, const char *dir) {
    const model_layout *al = j->lora->layout;
    size_t n = (size_t)(al->total_numel > 0 ? al->total_numel : 1);
    float *host = malloc(n * sizeof *host);
    SL_CHECK_ALLOC(host, n * sizeof *host);
    sl_status st = train_group_gather(&j->groups[1], host);
    if (st == SL_OK && j->topo->rank == 0) {
        st = lora_peft_save(dir, j->lora, host, j->cfg->model.init_from);
        if (st == SL_OK)
            st = train_copy_tokenizer(j->cfg, dir);
        if (st == SL_OK)
            LOG_INFO0("exported the LoRA adapter to %s (PEFT layout; merge with: shardlm lora merge "
                      "%s %s OUT_DIR)",
                      dir, j->cfg->model.init_from[0] ? j->cfg->model.init_from : "BASE_DIR", dir);
    }
    free(host);
    return st;
}

void train_lora_teardown(train_job *j) {
    fsdp_destroy(j->lora_fs);
    lora_destroy(j->lora);
    j->lora_fs = NULL;
    j->lora = NULL;
}
