/* train/train_model.c: models from model folders or checkpoints (train_model.h). */
#include "train/train_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "model/hf.h"
#include "model/lora.h"
#include "runtime/check.h"
#include "train/train.h"

bool train_model_is_checkpoint(const char *path, char *step_dir, size_t cap) {
    return ckpt_is_step_dir(path, step_dir, cap);
}

sl_status train_model_config(const char *path, sl_config *cfg) {
    char step[CKPT_PATH_MAX];
    config_defaults(cfg);
    if (!train_model_is_checkpoint(path, step, sizeof step))
        return model_config_from_dir(path, cfg);
    SL_TRY(ckpt_read_config(step, cfg));
    return SL_OK;
}

static void unit_sizes(const model_layout *l, int64_t *numel, int64_t *offset) {
    for (int u = 0; u < l->n_units; u++) {
        numel[u] = l->units[u].numel;
        offset[u] = l->units[u].offset;
    }
}

/* A LoRA checkpoint: its base (model.init_from) with the adapters merged. */
static sl_status open_lora(const char *step, const sl_config *ck, model_dir_params *out) {
    if (!ck->model.init_from[0])
        return sl_errorf(SL_ERR_INVALID,
                         "checkpoint %s holds LoRA adapters on a randomly initialized base (no "
                         "model.init_from): there is no model to merge them into",
                         step);
    SL_TRY(model_dir_open(ck->model.init_from, out));
    lora_spec *spec = NULL;
    sl_status st = lora_create(out->layout, &ck->lora, &spec);
    float *ad = NULL;
    int64_t *numel = NULL, *offset = NULL;
    if (st == SL_OK) {
        const model_layout *al = spec->layout;
        ad = malloc((size_t)al->total_numel * sizeof(float));
        numel = malloc(sizeof(int64_t) * (size_t)al->n_units);
        offset = malloc(sizeof(int64_t) * (size_t)al->n_units);
        if (!ad || !numel || !offset)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for the adapters of %s", step);
        if (st == SL_OK) {
            unit_sizes(al, numel, offset);
            st = ckpt_read_params(step, "lora", al->n_units, numel, offset, ad);
        }
    }
    if (st == SL_OK)
        st = lora_merge(spec, out->params, ad);
    free(ad);
    free(numel);
    free(offset);
    lora_destroy(spec);
    if (st != SL_OK) {
        model_dir_close(out);
        return sl_error_wrapf(st, "LoRA checkpoint %s (base %s)", step, ck->model.init_from);
    }
    /* the checkpoint's data settings (seq_len, mode, tokenizer) over the base's */
    out->cfg.data = ck->data;
    return SL_OK;
}

sl_status train_model_open(const char *path, model_dir_params *out) {
    char step[CKPT_PATH_MAX];
    if (!train_model_is_checkpoint(path, step, sizeof step))
        return model_dir_open(path, out);
    memset(out, 0, sizeof *out);
    sl_config *ck = malloc(sizeof *ck);
    SL_CHECK_ALLOC(ck, sizeof *ck);
    config_defaults(ck);
    sl_status st = ckpt_read_config(step, ck);
    if (st == SL_OK && ck->lora.enabled) {
        st = open_lora(step, ck, out);
        free(ck);
        return st;
    }
    if (st == SL_OK) {
        out->cfg = *ck;
        st = model_layout_create(&out->cfg.model, false, &out->layout);
    }
    free(ck);
    int64_t *numel = NULL, *offset = NULL;
    if (st == SL_OK) {
        const model_layout *l = out->layout;
        out->params = malloc((size_t)l->total_numel * sizeof(float));
        numel = malloc(sizeof(int64_t) * (size_t)l->n_units);
        offset = malloc(sizeof(int64_t) * (size_t)l->n_units);
        if (!out->params || !numel || !offset)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for the %lld fp32 parameters of %s",
                           (long long)l->total_numel, step);
    }
    if (st == SL_OK) {
        unit_sizes(out->layout, numel, offset);
        st = ckpt_read_params(step, "model", out->layout->n_units, numel, offset, out->params);
    }
    free(numel);
    free(offset);
    if (st != SL_OK) {
        model_dir_close(out);
        return sl_error_wrapf(st, "checkpoint \"%s\"", step);
    }
    return SL_OK;
}

sl_status train_model_export(const char *path, const char *out) {
    model_dir_params md;
    SL_TRY(train_model_open(path, &md));
    sl_status st = hf_save(out, md.layout, md.params, SL_DTYPE_F32, "");
    if (st == SL_OK)
        st = train_copy_tokenizer(&md.cfg, out);
    model_dir_close(&md);
    return st;
}
