/* model/hf_stream.c: ranged reads and the streamed, sharded export
 * (hf_stream.h). */
#include "model/hf_stream.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/hf_internal.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"

/* ---- reading ---- */

struct hf_reader {
    const model_layout *l;
    safetensors_index *ix;
    bool hf;
    char prefix[32];
    hf_info info;
    const safetensors_tensor **t; /* per parameter; NULL: a fresh score head */
    uint64_t seed;                /* of that fresh head's init */
};

void hf_reader_close(hf_reader *r) {
    if (!r)
        return;
    safetensors_index_close(r->ix);
    free(r->t);
    free(r);
}

sl_status hf_reader_open_as(const char *dir, const model_layout *l, bool hf, hf_reader **out) {
    *out = NULL;
    hf_reader *r = calloc(1, sizeof *r);
    SL_CHECK_ALLOC(r, sizeof *r);
    r->l = l;
    r->hf = hf;
    r->t = calloc((size_t)l->n_params, sizeof *r->t);
    char wpath[PATH_CAP];
    sl_status st = r->t ? fs_join(wpath, sizeof wpath, dir, MODEL_DIR_WEIGHTS)
                        : sl_errorf(SL_ERR_NOMEM, "out of memory opening %s", dir);
    if (st == SL_OK)
        st = safetensors_index_open(hf ? dir : wpath, &r->ix);
    if (st == SL_OK)
        st = hf_detect_prefix(r->ix, l, r->prefix, sizeof r->prefix);
    if (st == SL_OK)
        st = hf_check_extras(r->ix, l, hf, r->prefix, dir);
    for (int i = 0; i < l->n_params && st == SL_OK; i++) {
        const model_param *p = &l->params[i];
        r->t[i] = hf_find_param(r->ix, p, hf, r->prefix);
        if (!r->t[i] && hf && p->role == MODEL_ROLE_SCORE) {
            /* a causal LM read as a reward model, as AutoModelForSequenceClassification
             * .from_pretrained does: the LM head dropped, the score head new */
            LOG_WARN0("%s has no %s (a causal LM, not a *ForSequenceClassification): its LM head is "
                     "dropped and the score head starts from normal(0, model.init_std = %g)",
                     dir, p->hf_name, l->cfg.init_std);
            continue;
        }
        if (!r->t[i])
            st = sl_errorf(SL_ERR_FORMAT, "%s: parameter %s%s is missing", dir, hf ? r->prefix : "",
                           hf ? p->hf_name : p->name);
        else
            st = hf_check_tensor(r->t[i], p, hf, dir);
    }
    if (st == SL_OK) {
        r->info.dtype = r->t[0]->dtype;
        snprintf(r->info.prefix, sizeof r->info.prefix, "%s", r->prefix);
    }
    if (st == SL_OK && hf && l->cfg.tie_embeddings) {
        const safetensors_tensor *h = safetensors_index_find(r->ix, "lm_head.weight", NULL);
        const safetensors_tensor *w = r->t[0];
        if (h && (h->nbytes != w->nbytes || memcmp(h->data, w->data, h->nbytes) != 0))
            st = sl_errorf(SL_ERR_FORMAT, "%s: tie_word_embeddings is true but lm_head.weight differs from %s%s",
                           dir, r->prefix, l->params[0].hf_name);
    }
    if (st != SL_OK) {
        hf_reader_close(r);
        return st;
    }
    *out = r;
    return SL_OK;
}

sl_status hf_reader_open(const char *dir, const model_layout *l, hf_reader **out) {
    char path[PATH_CAP];
    SL_TRY(fs_join(path, sizeof path, dir, MODEL_DIR_CONFIG));
    return hf_reader_open_as(dir, l, !fs_exists(path), out);
}

hf_info hf_reader_info(const hf_reader *r) { return r->info; }

void hf_reader_set_seed(hf_reader *r, uint64_t seed) { r->seed = seed; }

sl_status hf_reader_range(hf_reader *r, int unit, int64_t start, int64_t count, float *out) {
    const model_layout *l = r->l;
    SL_CHECK_ARG(unit >= 0 && unit < l->n_units && start >= 0 && count >= 0 &&
                     start + count <= l->units[unit].numel,
                 "hf_reader_range: [%lld, +%lld) of unit %d", (long long)start, (long long)count, unit);
    const model_unit *u = &l->units[unit];
    for (int i = u->first_param; i < u->first_param + u->n_params; i++) {
        const model_param *p = &l->params[i];
        int64_t lo = start > p->offset ? start : p->offset;
        int64_t hi = start + count < p->offset + p->numel ? start + count : p->offset + p->numel;
        if (lo >= hi)
            continue;
        const safetensors_tensor *t = r->t[i];
        if (!t) { /* a fresh score head (hf_reader_open): the layout's init */
            SL_TRY(model_init_unit_range(l, unit, lo, hi - lo, out + (lo - start), r->seed));
            continue;
        }
        size_t esz = dtype_size(t->dtype);
        const char *src = t->data;
        float *dst = out + (lo - start);
        int64_t a = lo - p->offset, n = hi - lo;
        if (!(r->hf && p->hf_transposed)) {
            hf_to_f32(dst, src + (size_t)a * esz, t->dtype, (size_t)n);
            continue;
        }
        /* ours (out, in) row-major; the file holds (in, out): element
         * (row, col) is the file's (col, row) */
        int64_t rows = p->shape[0], cols = p->shape[1];
        for (int64_t k = 0; k < n; k++) {
            int64_t idx = a + k, row = idx / cols, col = idx % cols;
            hf_to_f32(dst + k, src + (size_t)(col * rows + row) * esz, t->dtype, 1);
        }
    }
    return SL_OK;
}

/* ---- writing ---- */

struct hf_writer {
    const model_layout *l;
    sl_dtype dtype;
    char dir[PATH_CAP];
    int n_files;
    char (*file_name)[64];
    safetensors_stream **files;
    int *file_of, *index_of; /* per parameter */
    named *order;            /* the parameters sorted by file name */
    bool *unit_put;
    uint64_t total_bytes;
};

void hf_writer_abort(hf_writer *w) {
    if (!w)
        return;
    for (int f = 0; f < w->n_files && w->files; f++)
        safetensors_stream_abort(w->files[f]);
    free(w->files);
    free(w->file_name);
    free(w->file_of);
    free(w->index_of);
    free(w->order);
    free(w->unit_put);
    free(w);
}

/* Assigns every parameter (in name order) a file and an index inside it. */
static void plan_files(hf_writer *w, uint64_t max_bytes) {
    const model_layout *l = w->l;
    uint64_t cur = 0;
    int file = 0, idx = 0;
    for (int i = 0; i < l->n_params; i++) {
        const model_param *p = w->order[i].p;
        uint64_t bytes = (uint64_t)p->numel * dtype_size(w->dtype);
        if (max_bytes > 0 && cur > 0 && cur + bytes > max_bytes) {
            file++;
            idx = 0;
            cur = 0;
        }
        int pi = (int)(p - l->params);
        w->file_of[pi] = file;
        w->index_of[pi] = idx++;
        cur += bytes;
        w->total_bytes += bytes;
    }
    w->n_files = file + 1;
}

static sl_status open_file(hf_writer *w, int f) {
    safetensors_writer *sw = safetensors_writer_create();
    SL_CHECK_ALLOC(sw, 1);
    sl_status st = safetensors_writer_set_metadata(sw, "format", "pt");
    for (int i = 0; i < w->l->n_params && st == SL_OK; i++) {
        const model_param *p = w->order[i].p;
        if (w->file_of[p - w->l->params] != f)
            continue;
        int64_t shape[2];
        hf_file_shape(p, true, shape);
        st = safetensors_writer_add_planned(sw, w->order[i].name, w->dtype, p->ndim, shape);
    }
    char path[PATH_CAP];
    if (st == SL_OK)
        st = fs_join(path, sizeof path, w->dir, w->file_name[f]);
    if (st == SL_OK)
        st = safetensors_stream_open(sw, path, &w->files[f]);
    safetensors_writer_destroy(sw);
    return st;
}

sl_status hf_writer_open(const char *dir, const model_layout *l, sl_dtype dtype, const char *prefix,
                         uint64_t max_shard_bytes, hf_writer **out) {
    *out = NULL;
    SL_CHECK_ARG(dtype == SL_DTYPE_F32 || dtype == SL_DTYPE_BF16 || dtype == SL_DTYPE_F16,
                 "hf_writer_open: dtype %s is not F32, BF16 or F16", dtype_name(dtype));
    SL_CHECK_ARG(strlen(dir) < PATH_CAP - 80, "hf_writer_open: path too long: %s", dir);
    SL_TRY(fs_mkdirs(dir));
    char *cj = hf_config_json(&l->cfg);
    SL_CHECK_ALLOC(cj, 1);
    sl_status st = hf_write_text(dir, "config.json", cj);
    free(cj);
    SL_TRY(st);
    hf_writer *w = calloc(1, sizeof *w);
    SL_CHECK_ALLOC(w, sizeof *w);
    w->l = l;
    w->dtype = dtype;
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    size_t np = (size_t)l->n_params;
    w->order = calloc(np, sizeof *w->order);
    w->file_of = calloc(np, sizeof *w->file_of);
    w->index_of = calloc(np, sizeof *w->index_of);
    w->unit_put = calloc((size_t)l->n_units, sizeof *w->unit_put);
    if (!w->order || !w->file_of || !w->index_of || !w->unit_put) {
        hf_writer_abort(w);
        return sl_errorf(SL_ERR_NOMEM, "out of memory planning the export to %s", dir);
    }
    for (int i = 0; i < l->n_params; i++) {
        w->order[i].p = &l->params[i];
        hf_file_name(&l->params[i], true, hf_write_prefix(l, prefix), w->order[i].name, sizeof w->order[i].name);
    }
    qsort(w->order, np, sizeof *w->order, hf_cmp_named);
    plan_files(w, max_shard_bytes);
    w->files = calloc((size_t)w->n_files, sizeof *w->files);
    w->file_name = calloc((size_t)w->n_files, sizeof *w->file_name);
    if (!w->files || !w->file_name) {
        hf_writer_abort(w);
        return sl_errorf(SL_ERR_NOMEM, "out of memory planning the export to %s", dir);
    }
    for (int f = 0; f < w->n_files; f++) {
        if (w->n_files == 1)
            snprintf(w->file_name[f], sizeof w->file_name[f], "%s", MODEL_DIR_WEIGHTS);
        else
            snprintf(w->file_name[f], sizeof w->file_name[f], "model-%05d-of-%05d.safetensors", f + 1, w->n_files);
    }
    for (int f = 0; f < w->n_files && st == SL_OK; f++)
        st = open_file(w, f);
    if (st != SL_OK) {
        hf_writer_abort(w);
        return st;
    }
    *out = w;
    return SL_OK;
}

sl_status hf_writer_put_unit(hf_writer *w, int unit, const float *full) {
    const model_layout *l = w->l;
    SL_CHECK_ARG(unit >= 0 && unit < l->n_units, "hf_writer_put_unit: unit %d of %d", unit, l->n_units);
    const model_unit *u = &l->units[unit];
    size_t esz = dtype_size(w->dtype);
    sl_status st = SL_OK;
    for (int i = u->first_param; i < u->first_param + u->n_params && st == SL_OK; i++) {
        const model_param *p = &l->params[i];
        size_t n = (size_t)p->numel;
        void *buf = malloc(n * esz + 1);
        float *tmp = p->hf_transposed ? malloc(n * sizeof *tmp + 1) : NULL;
        if (!buf || (p->hf_transposed && !tmp)) {
            free(buf);
            free(tmp);
            return sl_errorf(SL_ERR_NOMEM, "out of memory converting %s (%zu elements)", p->hf_name, n);
        }
        const float *src = full + p->offset;
        if (tmp) { /* GPT-2 Conv1D: the file holds (in, out) */
            hf_transpose_raw(tmp, src, p->shape[0], p->shape[1], sizeof(float));
            src = tmp;
        }
        hf_from_f32(buf, src, w->dtype, n);
        st = safetensors_stream_put(w->files[w->file_of[i]], w->index_of[i], buf);
        free(buf);
        free(tmp);
    }
    if (st == SL_OK)
        w->unit_put[unit] = true;
    return st;
}

/* model.safetensors.index.json as transformers writes it: metadata.total_size
 * and weight_map (tensor name -> file), names sorted. */
static sl_status write_index(const hf_writer *w) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *map = cJSON_CreateObject();
    sl_status st = root && meta && map ? SL_OK : sl_errorf(SL_ERR_NOMEM, "out of memory writing the index");
    if (st == SL_OK) {
        cJSON_AddNumberToObject(meta, "total_size", (double)w->total_bytes);
        for (int i = 0; i < w->l->n_params; i++) {
            int pi = (int)(w->order[i].p - w->l->params);
            cJSON_AddStringToObject(map, w->order[i].name, w->file_name[w->file_of[pi]]);
        }
        cJSON_AddItemToObject(root, "metadata", meta);
        cJSON_AddItemToObject(root, "weight_map", map);
        meta = map = NULL;
        char *text = cJSON_Print(root);
        st = text ? hf_write_text(w->dir, HF_INDEX_NAME, text) : sl_errorf(SL_ERR_NOMEM, "out of memory");
        free(text);
    }
    cJSON_Delete(root);
    cJSON_Delete(meta);
    cJSON_Delete(map);
    return st;
}

sl_status hf_writer_close(hf_writer *w) {
    sl_status st = SL_OK;
    for (int u = 0; u < w->l->n_units && st == SL_OK; u++)
        if (!w->unit_put[u] && w->l->units[u].n_params > 0)
            st = sl_errorf(SL_ERR_INTERNAL, "hf_writer_close: unit %d of %s was never written", u, w->dir);
    for (int f = 0; f < w->n_files && st == SL_OK; f++) {
        st = safetensors_stream_close(w->files[f]);
        w->files[f] = NULL; /* closed or freed by the failed close */
    }
    /* the other layout's files from an earlier export would shadow or
     * contradict these: one file and an index never stand side by side */
    char stale[PATH_CAP];
    if (st == SL_OK && w->n_files > 1) {
        st = write_index(w);
        if (st == SL_OK && fs_join(stale, sizeof stale, w->dir, MODEL_DIR_WEIGHTS) == SL_OK && fs_exists(stale))
            st = fs_remove_tree(stale);
    } else if (st == SL_OK && fs_join(stale, sizeof stale, w->dir, HF_INDEX_NAME) == SL_OK && fs_exists(stale)) {
        st = fs_remove_tree(stale);
    }
    hf_writer_abort(w); /* frees; the closed files are already in place */
    return st;
}
