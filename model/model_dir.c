/* model/model_dir.c: load a model folder for inference (model_dir.h). */
#include "model/model_dir.h"

#include <inttypes.h>
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

sl_status model_dir_upload(const model_dir_params *m, sl_backend *be, void **out, size_t *bytes) {
    *out = NULL;
    *bytes = 0;
    int64_t n = m->layout->total_numel;
    size_t esz = dtype_size(be->act_dtype), total = (size_t)n * esz;
    int64_t chunk = n < ((int64_t)1 << 24) ? n : ((int64_t)1 << 24); /* floats staged at once */
    void *dst = NULL, *tmp = NULL;
    SL_TRY(backend_alloc(be, MEM_CATEGORY_PARAMS, total, &dst));
    sl_status st = backend_alloc(be, MEM_CATEGORY_WORKSPACE, (size_t)chunk * sizeof(float), &tmp);
    /* one stream: each chunk's copy into tmp waits for the previous cast */
    for (int64_t i = 0; i < n && st == SL_OK; i += chunk) {
        int64_t c = n - i < chunk ? n - i : chunk;
        st = backend_memcpy(be, tmp, m->params + i, (size_t)c * sizeof(float), BACKEND_COPY_H2D);
        if (st == SL_OK)
            st = ops_cast(be, ops_view1(be, be->act_dtype, (char *)dst + (size_t)i * esz, c),
                          ops_view1(be, SL_DTYPE_F32, tmp, c));
    }
    if (st == SL_OK)
        st = backend_synchronize(be);
    if (tmp)
        backend_free(be, MEM_CATEGORY_WORKSPACE, tmp, (size_t)chunk * sizeof(float));
    if (st != SL_OK) {
        backend_free(be, MEM_CATEGORY_PARAMS, dst, total);
        return sl_error_wrapf(st, "copying the %" PRId64 " parameters to the backend", n);
    }
    *out = dst;
    *bytes = total;
    return SL_OK;
}
