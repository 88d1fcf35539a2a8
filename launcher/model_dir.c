/* launcher/model_dir.c: load a model folder for inference (model_dir.h). */
#include "launcher/model_dir.h"

#include <stdlib.h>
#include <string.h>

#include "model/hf.h"
#include "runtime/check.h"

sl_status model_dir_open(const char *dir, model_dir_params *out) {
    memset(out, 0, sizeof *out);
    config_defaults(&out->cfg);
    sl_status st = model_config_from_dir(dir, &out->cfg);
    if (st == SL_OK)
        st = model_layout_create(&out->cfg.model, false, &out->layout);
    if (st == SL_OK) {
        size_t bytes = (size_t)out->layout->total_numel * sizeof(float);
        out->params = malloc(bytes);
        if (!out->params)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for the %zu bytes of fp32 parameters", bytes);
    }
    if (st == SL_OK)
        st = model_weights_load(dir, out->layout, out->params);
    if (st != SL_OK) {
        model_dir_close(out);
        return sl_error_wrapf(st, "model folder \"%s\"", dir);
    }
    return SL_OK;
}

void model_dir_close(model_dir_params *m) {
    free(m->params);
    model_layout_destroy(m->layout);
    m->params = NULL;
    m->layout = NULL;
}
