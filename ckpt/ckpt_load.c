/* ckpt/ckpt_load.c: resuming from a checkpoint: meta.json checked against
 * the run's config, the parts' layout hashes and the tokenizer hash; every
 * rank file present with its recorded size; each rank's shards filled from
 * the old shards that overlap them, so across world sizes and FSDP modes;
 * the recorded step, skipped and optimizer steps and loader state returned.
 * Also reads meta.json and the old run's file list for ckpt_describe.c.
 *
 * Does not: write checkpoints or decide which one to resume from
 * (ckpt_save.c), apply the loader state (the caller owns the loader); the
 * layout and protocol are in ckpt.h.
 *
 * defines: ckpt_load; and, for ckpt_describe.c, ckpt_meta_read,
 *          ckpt_meta_int, ckpt_meta_str, ckpt_old_run_open,
 *          ckpt_old_run_close
 */
#define _GNU_SOURCE
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/ckpt_file.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"

#define CKPT_META_MAX_BYTES ((size_t)64 << 20)

/* ---- load ---- */

sl_status ckpt_meta_read(const char *dir, cJSON **out) {
    *out = NULL;
    char path[CKPT_PATH_MAX];
    SL_TRY(fs_join(path, sizeof path, dir, "meta.json"));
    char *text = NULL;
    size_t len = 0;
    sl_status st = fs_read_file(path, &text, &len, CKPT_META_MAX_BYTES);
    if (st != SL_OK)
        return sl_error_wrapf(st, "checkpoint %s is incomplete or unreadable", dir);
    cJSON *m = cJSON_ParseWithLength(text, len);
    free(text);
    if (!m || !cJSON_IsObject(m)) {
        cJSON_Delete(m);
        return sl_errorf(SL_ERR_FORMAT, "%s is not valid JSON: the checkpoint is corrupted", path);
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(m, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(m, "version");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, CKPT_META_FORMAT) != 0 || !cJSON_IsNumber(ver)) {
        cJSON_Delete(m);
        return sl_errorf(SL_ERR_FORMAT, "%s: \"format\" is not \"%s\"", path, CKPT_META_FORMAT);
    }
    if (ver->valueint != CKPT_META_VERSION) {
        cJSON_Delete(m);
        return sl_errorf(SL_ERR_FORMAT, "%s has version %d; this shardlm reads version %d", path,
                         ver->valueint, CKPT_META_VERSION);
    }
    *out = m;
    return SL_OK;
}

sl_status ckpt_meta_int(const cJSON *o, const char *key, const char *dir, int64_t *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x))
        return sl_errorf(SL_ERR_FORMAT, "%s/meta.json: \"%s\" is missing or not a number", dir, key);
    *v = (int64_t)x->valuedouble;
    return SL_OK;
}

const char *ckpt_meta_str(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : "";
}

/* Appends "section.key: checkpoint A, now B" for each key of a or b that
 * differs (keys in skip ignored). */
static void json_diff(const cJSON *a, const cJSON *b, const char *section, const char *const *skip,
                      char *out, size_t cap, int *n) {
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *x = pass == 0 ? a : b, *y = pass == 0 ? b : a;
        for (const cJSON *e = x ? x->child : NULL; e; e = e->next) {
            bool skipped = false;
            for (int s = 0; skip && skip[s]; s++)
                skipped |= strcmp(skip[s], e->string) == 0;
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(y, e->string);
            if (skipped || (pass == 1 && o) || (o && cJSON_Compare(e, o, true)))
                continue;
            char *ev = cJSON_PrintUnformatted(e), *ov = o ? cJSON_PrintUnformatted(o) : NULL;
            size_t used = strlen(out);
            snprintf(out + used, cap - used, "%s%s.%s: checkpoint %s, now %s", *n ? "; " : "", section,
                     e->string, pass == 0 ? ev : (ov ? ov : "absent"),
                     pass == 0 ? (ov ? ov : "absent") : ev);
            free(ev);
            free(ov);
            (*n)++;
        }
    }
}

static sl_status check_config(const ckpt_ctx *c, const cJSON *meta, const char *dir) {
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(meta, "config");
    if (!cJSON_IsObject(old))
        return sl_errorf(SL_ERR_FORMAT, "%s/meta.json lacks the resolved \"config\"", dir);
    cJSON *now = ckpt_config_json(c->cfg);
    SL_CHECK_ALLOC(now, 1);
    char diff[2048] = "";
    int n = 0;
    /* The base weights of a LoRA run come from model.init_from, so there it
     * must match; a full-parameter run only used it for the initial weights. */
    static const char *const skip_model[] = {"init_from", NULL};
    /* DPO's reference model is rebuilt from model.init_from at resume, so
     * there it must match too */
    bool init_matters = c->cfg->lora.enabled || c->cfg->train.objective == TRAIN_OBJECTIVE_DPO;
    json_diff(cJSON_GetObjectItemCaseSensitive(old, "model"), cJSON_GetObjectItemCaseSensitive(now, "model"),
              "model", init_matters ? NULL : skip_model, diff, sizeof diff, &n);
    static const char *const skip_lora[] = {"init_from", NULL};
    json_diff(cJSON_GetObjectItemCaseSensitive(old, "lora"), cJSON_GetObjectItemCaseSensitive(now, "lora"),
              "lora", skip_lora, diff, sizeof diff, &n);
    sl_status st = SL_OK;
    if (n > 0) {
        st = sl_errorf(SL_ERR_INVALID,
                       "checkpoint %s was made for another model: %s. Resume with the checkpoint's model "
                       "and lora settings (its config is in meta.json), or use a new train.run_dir",
                       dir, diff);
    } else {
        char warn[2048] = "";
        int w = 0;
        json_diff(cJSON_GetObjectItemCaseSensitive(old, "optim"), cJSON_GetObjectItemCaseSensitive(now, "optim"),
                  "optim", NULL, warn, sizeof warn, &w);
        /* the objective (train.objective, below) and its settings */
        json_diff(cJSON_GetObjectItemCaseSensitive(old, "dpo"), cJSON_GetObjectItemCaseSensitive(now, "dpo"),
                  "dpo", NULL, warn, sizeof warn, &w);
        static const char *const skip_data[] = {"prefetch", "eval", "tokenizer", NULL};
        json_diff(cJSON_GetObjectItemCaseSensitive(old, "data"), cJSON_GetObjectItemCaseSensitive(now, "data"),
                  "data", skip_data, warn, sizeof warn, &w);
        /* micro_batch and grad_accum may change with the world size as long
         * as the global batch stays: the sample order depends only on it */
        static const char *const skip_train[] = {"steps",       "eval_every", "eval_batches",
                                                 "run_dir",     "export_final", "nonfinite",
                                                 "recompute",   "micro_batch", "grad_accum",
                                                 NULL};
        json_diff(cJSON_GetObjectItemCaseSensitive(old, "train"), cJSON_GetObjectItemCaseSensitive(now, "train"),
                  "train", skip_train, warn, sizeof warn, &w);
        const cJSON *ot = cJSON_GetObjectItemCaseSensitive(old, "train");
        const cJSON *mb = cJSON_GetObjectItemCaseSensitive(ot, "micro_batch");
        const cJSON *ga = cJSON_GetObjectItemCaseSensitive(ot, "grad_accum");
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(meta, "world_size");
        if (cJSON_IsNumber(mb) && cJSON_IsNumber(ga) && cJSON_IsNumber(ws)) {
            int64_t gb = (int64_t)mb->valuedouble * (int64_t)ga->valuedouble * (int64_t)ws->valuedouble;
            if (gb != c->plan->global_batch) {
                size_t used = strlen(warn);
                snprintf(warn + used, sizeof warn - used,
                         "%sglobal batch: checkpoint %" PRId64 " sequences, now %" PRId64, w ? "; " : "", gb,
                         c->plan->global_batch);
                w++;
            }
        }
        if (w > 0)
            LOG_WARN0("resuming from %s with changed settings (training will not match an uninterrupted "
                      "run): %s",
                      dir, warn);
    }
    cJSON_Delete(now);
    return st;
}

static sl_status check_hashes(const ckpt_ctx *c, const ckpt_part *parts, int np, const cJSON *meta,
                              const char *dir) {
    const cJSON *lh = cJSON_GetObjectItemCaseSensitive(meta, "layout_hash");
    for (int i = 0; i < np; i++) {
        const char *h = parts[i].layout_hash;
        const char *want = ckpt_meta_str(lh, parts[i].name);
        if (!want[0])
            return sl_errorf(SL_ERR_INVALID, "checkpoint %s holds no \"%s\" part, which this run trains",
                             dir, parts[i].name);
        if (strcmp(want, h) != 0)
            return sl_errorf(SL_ERR_INVALID,
                             "checkpoint %s: the %s parameter layout differs (layout hash %s, this run %s) "
                             "although the model config matches; it was written by shardlm %s (git %s)",
                             dir, parts[i].name, want, h, ckpt_meta_str(meta, "shardlm_version"),
                             ckpt_meta_str(meta, "git_hash"));
    }
    const char *tok = ckpt_meta_str(meta, "tokenizer_hash");
    const char *mine = c->tokenizer_hash ? c->tokenizer_hash : "";
    if (tok[0] && mine[0] && strcmp(tok, mine) != 0)
        return sl_errorf(SL_ERR_INVALID,
                         "checkpoint %s was trained on data tokenized with tokenizer hash %s, but "
                         "data.train (%s) has tokenizer hash %s: the token ids mean different things; "
                         "prepare the data with the checkpoint's tokenizer",
                         dir, tok, c->cfg->data.train, mine);
    return SL_OK;
}

sl_status ckpt_old_run_open(const cJSON *meta, const char *dir, ckpt_old_run *o) {
    memset(o, 0, sizeof *o);
    o->dir = dir;
    int64_t world = 0, shard_size = 0;
    SL_TRY(ckpt_meta_int(meta, "world_size", dir, &world));
    SL_TRY(ckpt_meta_int(meta, "shard_size", dir, &shard_size));
    SL_TRY(ckpt_meta_int(meta, "step", dir, &o->step));
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(meta, "files");
    if (world < 1 || world > (1 << 20) || shard_size < 1 || shard_size > world || !cJSON_IsArray(files) ||
        cJSON_GetArraySize(files) != world)
        return sl_errorf(SL_ERR_FORMAT, "%s/meta.json: world_size %" PRId64 ", shard_size %" PRId64
                         " and the files list (%d entries) disagree",
                         dir, world, shard_size, cJSON_GetArraySize(files));
    o->world = (int)world;
    o->shard_size = (int)shard_size;
    o->shard_rank = calloc((size_t)world, sizeof(int));
    o->readers = calloc((size_t)world, sizeof(ckpt_reader *));
    SL_CHECK_ALLOC(o->shard_rank && o->readers ? o->readers : NULL, (size_t)world * 16);
    for (int r = 0; r < o->world; r++) {
        const cJSON *f = cJSON_GetArrayItem(files, r);
        int64_t rank = 0, sr = 0, bytes = 0;
        SL_TRY(ckpt_meta_int(f, "rank", dir, &rank));
        SL_TRY(ckpt_meta_int(f, "shard_rank", dir, &sr));
        SL_TRY(ckpt_meta_int(f, "bytes", dir, &bytes));
        if (rank != r || sr < 0 || sr >= shard_size)
            return sl_errorf(SL_ERR_FORMAT, "%s/meta.json: files[%d] has rank %" PRId64 ", shard_rank %" PRId64,
                             dir, r, rank, sr);
        o->shard_rank[r] = (int)sr;
        char path[CKPT_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, ckpt_meta_str(f, "file"));
        struct stat sb;
        if (stat(path, &sb) != 0)
            return sl_errorf(SL_ERR_IO, "checkpoint %s is incomplete: rank file %s is missing", dir, path);
        if ((int64_t)sb.st_size != bytes)
            return sl_errorf(SL_ERR_FORMAT,
                             "checkpoint rank file %s is %lld bytes, meta.json records %" PRId64
                             ": the file is truncated or was replaced; resume from another checkpoint",
                             path, (long long)sb.st_size, bytes);
    }
    return SL_OK;
}

void ckpt_old_run_close(ckpt_old_run *o) {
    for (int r = 0; o->readers && r < o->world; r++)
        ckpt_reader_close(o->readers[r]);
    free(o->readers);
    free(o->shard_rank);
}

/* The old file holding shard q: this rank's own when it held q, else the
 * first rank that did (replicas hold equal shards). */
static sl_status ckpt_old_run_reader(ckpt_old_run *o, int me, int q, ckpt_reader **out) {
    int fi = me < o->world && o->shard_rank[me] == q ? me : -1;
    for (int r = 0; r < o->world && fi < 0; r++)
        if (o->shard_rank[r] == q)
            fi = r;
    if (fi < 0)
        return sl_errorf(SL_ERR_FORMAT, "checkpoint %s: no rank file holds shard %d of %d", o->dir, q,
                         o->shard_size);
    if (!o->readers[fi]) {
        char path[CKPT_PATH_MAX];
        snprintf(path, sizeof path, "%s/rank_%05d.h5", o->dir, fi);
        SL_TRY(ckpt_reader_open(path, &o->readers[fi]));
        const ckpt_file_info *in = ckpt_reader_info(o->readers[fi]);
        if (in->rank != fi || in->world != o->world || in->step != o->step || in->shard_rank != q)
            return sl_errorf(SL_ERR_FORMAT,
                             "checkpoint rank file %s says rank %d of %d, shard %d, step %" PRId64
                             "; meta.json says rank %d of %d, shard %d, step %" PRId64,
                             path, in->rank, in->world, in->shard_rank, in->step, fi, o->world, q, o->step);
    }
    *out = o->readers[fi];
    return SL_OK;
}

/* Fills this rank's shards of one part from the old run's overlapping shards. */
static sl_status load_part(const ckpt_ctx *c, const ckpt_part *p, ckpt_old_run *o, int64_t *bytes_read) {
    int k = o->shard_size;
    int64_t scratch_len = 0;
    for (int u = 0; u < p->n_units; u++) {
        int64_t L = (p->unit_numel[u] + k - 1) / k;
        scratch_len = L > scratch_len ? L : scratch_len;
    }
    /* this rank's shards are backend memory: assemble them on the host
     * (dst, 3 x the largest shard), then upload (fsdp_shard_write, which
     * also refreshes the act-dtype copy of the parameters) */
    int64_t dst_len = 1;
    for (int u = 0; u < p->n_units; u++) {
        int64_t len = fsdp_shard(p->fs, u).len;
        dst_len = len > dst_len ? len : dst_len;
    }
    float *scratch = malloc((size_t)(scratch_len > 0 ? scratch_len : 1) * sizeof(float));
    float *staging = malloc((size_t)dst_len * 3 * sizeof(float));
    if (!scratch || !staging) {
        free(scratch);
        free(staging);
        return sl_errorf(SL_ERR_NOMEM, "checkpoint: out of memory staging %lld floats",
                         (long long)(scratch_len + 3 * dst_len));
    }
    sl_status st = SL_OK;
    for (int u = 0; u < p->n_units && st == SL_OK; u++) {
        fsdp_unit_shard s = fsdp_shard(p->fs, u);
        int64_t numel = p->unit_numel[u];
        ckpt_range nr = {s.start, s.len, s.valid, numel};
        float *dst[3] = {staging, s.m ? staging + dst_len : NULL, s.v ? staging + 2 * dst_len : NULL};
        static const char *const names[3] = {"param", "m", "v"};
        for (int d = 0; d < 3; d++)
            if (dst[d])
                memset(dst[d], 0, (size_t)s.len * sizeof(float));
        int64_t L = (numel + k - 1) / k;
        for (int q = 0; q < k && st == SL_OK; q++) {
            int64_t ostart = (int64_t)q * L, ovalid = numel - ostart;
            ovalid = ovalid < 0 ? 0 : (ovalid > L ? L : ovalid);
            ckpt_range want = {ostart, L, ovalid, numel}, got;
            int64_t lo, hi;
            ckpt_range_overlap(&nr, &want, &lo, &hi);
            if (hi <= lo)
                continue;
            ckpt_reader *rd = NULL;
            st = ckpt_old_run_reader(o, c->rank, q, &rd);
            if (st == SL_OK)
                st = ckpt_reader_range(rd, p->name, u, &got);
            if (st == SL_OK && (got.start != want.start || got.len != want.len || got.valid != want.valid ||
                                got.numel != numel))
                st = sl_errorf(SL_ERR_FORMAT,
                               "checkpoint file %s: %s unit %d holds [%" PRId64 ", +%" PRId64 ") of %" PRId64
                               " elements; shard %d of %d of a %" PRId64 "-element unit is [%" PRId64
                               ", +%" PRId64 ")",
                               ckpt_reader_path(rd), p->name, u, got.start, got.len, got.numel, q, k, numel,
                               want.start, want.len);
            bool exact = got.start == nr.start && got.len == nr.len;
            for (int d = 0; d < 3 && st == SL_OK; d++) {
                if (!dst[d])
                    continue;
                st = ckpt_reader_read(rd, p->name, u, names[d], exact ? dst[d] : scratch);
                if (st == SL_OK && !exact)
                    memcpy(dst[d] + (lo - nr.start), scratch + (lo - got.start),
                           (size_t)(hi - lo) * sizeof(float));
                *bytes_read += got.len * (int64_t)sizeof(float);
            }
        }
        for (int d = 0; d < 3 && st == SL_OK; d++)
            if (dst[d])
                st = fsdp_shard_write(p->fs, u, (fsdp_buf)d, dst[d]);
    }
    free(scratch);
    free(staging);
    return st;
}

/* Whether step folder dir lies in this run's checkpoint folder (then the
 * step is already saved there; a checkpoint taken from elsewhere is saved
 * again at the next save point, at this run's world size). */
static bool in_own_root(const sl_config *cfg, const char *dir) {
    char root[CKPT_PATH_MAX], parent[CKPT_PATH_MAX];
    if (ckpt_root(cfg, root, sizeof root) != SL_OK ||
        snprintf(parent, sizeof parent, "%s/..", dir) >= (int)sizeof parent)
        return false;
    char *a = realpath(root, NULL), *b = realpath(parent, NULL);
    bool same = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    return same;
}

static sl_status load_local(const ckpt_ctx *c, const char *dir, const ckpt_part *parts, int np,
                            bool want_loader, ckpt_state *out, int64_t *bytes_read) {
    cJSON *meta;
    SL_TRY(ckpt_meta_read(dir, &meta));
    ckpt_old_run o;
    memset(&o, 0, sizeof o);
    sl_status st = check_config(c, meta, dir);
    if (st == SL_OK)
        st = check_hashes(c, parts, np, meta, dir);
    if (st == SL_OK)
        st = ckpt_old_run_open(meta, dir, &o);
    int64_t skipped = 0, optim_steps = 0;
    if (st == SL_OK)
        st = ckpt_meta_int(meta, "skipped_steps", dir, &skipped);
    /* optim_steps came later: a checkpoint without it applied every step
     * that was not skipped */
    if (st == SL_OK)
        st = cJSON_GetObjectItemCaseSensitive(meta, "optim_steps")
                 ? ckpt_meta_int(meta, "optim_steps", dir, &optim_steps)
                 : (optim_steps = o.step - skipped, SL_OK);
    if (st == SL_OK && o.step > c->cfg->train.steps)
        st = sl_errorf(SL_ERR_INVALID, "checkpoint %s is at step %" PRId64 ", past \"train.steps\" = %d",
                       dir, o.step, c->cfg->train.steps);
    for (int i = 0; i < np && st == SL_OK; i++)
        st = load_part(c, &parts[i], &o, bytes_read);
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(meta, "loader");
    int64_t epoch = 0, sample = 0;
    if (st == SL_OK && want_loader) {
        if (!cJSON_IsObject(ls))
            st = sl_errorf(SL_ERR_INVALID, "checkpoint %s has no loader state (it was made on synthetic data)",
                           dir);
        if (st == SL_OK)
            st = ckpt_meta_int(ls, "epoch", dir, &epoch);
        if (st == SL_OK)
            st = ckpt_meta_int(ls, "sample", dir, &sample);
    }
    if (st == SL_OK) {
        *out = (ckpt_state){.step = o.step,
                            .skipped_steps = skipped,
                            .optim_steps = optim_steps,
                            .has_loader = cJSON_IsObject(ls) && want_loader,
                            .loader_epoch = epoch,
                            .loader_sample = sample};
        const char *mode = config_enum_name("parallel.fsdp_mode", c->plan->mode);
        if (o.world != c->world_size || strcmp(ckpt_meta_str(meta, "fsdp_mode"), mode) != 0)
            LOG_INFO0("resharded checkpoint from world %d (%s, shard %d) to world %d (%s, shard %d)", o.world,
                      ckpt_meta_str(meta, "fsdp_mode"), o.shard_size, c->world_size, mode,
                      c->plan->shard_size);
    }
    ckpt_old_run_close(&o);
    cJSON_Delete(meta);
    return st;
}

sl_status ckpt_load(ckpt_ctx *c, const char *dir, const ckpt_part *parts, int n_parts, bool want_loader,
                    ckpt_state *out, bool *own_root) {
    double t0 = sl_now();
    int64_t bytes = 0;
    memset(out, 0, sizeof *out);
    sl_status st = SL_OK;
    for (int i = 0; i < n_parts && st == SL_OK; i++)
        if (!parts[i].fs || fsdp_n_units(parts[i].fs) != parts[i].n_units || !parts[i].layout_hash)
            st = sl_errorf(SL_ERR_INVALID, "ckpt_load: part \"%s\" lacks its fsdp instance or layout hash, or "
                           "its unit count differs from the instance's", parts[i].name);
    if (st == SL_OK)
        st = load_local(c, dir, parts, n_parts, want_loader, out, &bytes);
    SL_TRY(ckpt_agree(c, st, "load the checkpoint"));
    SL_TRY(comm_all_reduce(c->world, &bytes, &bytes, 1, SL_DTYPE_I64, COMM_REDOP_SUM));
    double secs = sl_now() - t0;
    SL_TRY(comm_all_reduce(c->world, &secs, &secs, 1, SL_DTYPE_F64, COMM_REDOP_MAX));
    *own_root = in_own_root(c->cfg, dir);
    LOG_INFO0("resumed from %s at step %" PRId64 ": read %.1f MB in %.2f s (%.0f MB/s)", dir, out->step,
              (double)bytes / 1e6, secs, (double)bytes / 1e6 / secs);
    return SL_OK;
}

/* ---- checkpoints as models ---- */

bool ckpt_is_step_dir(const char *path, char *step_dir, size_t cap) {
    char meta[CKPT_PATH_MAX];
    if (fs_join(meta, sizeof meta, path, "meta.json") == SL_OK && fs_exists(meta)) {
        cJSON *m = NULL;
        bool ok = ckpt_meta_read(path, &m) == SL_OK;
        cJSON_Delete(m);
        sl_error_clear();
        return ok && snprintf(step_dir, cap, "%s", path) < (int)cap;
    }
    bool found = false;
    if (fs_is_dir(path) && ckpt_resolve_root(path, step_dir, cap, &found) == SL_OK && found)
        return true;
    sl_error_clear();
    return false;
}

sl_status ckpt_read_config(const char *dir, sl_config *cfg) {
    cJSON *meta;
    SL_TRY(ckpt_meta_read(dir, &meta));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(meta, "config");
    char *text = cJSON_IsObject(c) ? cJSON_PrintUnformatted(c) : NULL;
    cJSON_Delete(meta);
    if (!text)
        return sl_errorf(SL_ERR_FORMAT, "%s/meta.json lacks the resolved \"config\"", dir);
    char source[CKPT_PATH_MAX + 32];
    snprintf(source, sizeof source, "%s/meta.json \"config\"", dir);
    sl_status st = config_apply_json(cfg, text, source);
    free(text);
    SL_TRY(st);
    return config_finalize(cfg);
}

sl_status ckpt_read_params(const char *dir, const char *name, int n_units, const int64_t *unit_numel,
                           const int64_t *unit_offset, float *out) {
    cJSON *meta;
    SL_TRY(ckpt_meta_read(dir, &meta));
    ckpt_old_run o;
    sl_status st = ckpt_old_run_open(meta, dir, &o);
    const cJSON *lh = cJSON_GetObjectItemCaseSensitive(meta, "layout_hash");
    if (st == SL_OK && !ckpt_meta_str(lh, name)[0])
        st = sl_errorf(SL_ERR_INVALID, "checkpoint %s holds no \"%s\" part", dir, name);
    int k = o.shard_size > 0 ? o.shard_size : 1; /* 0 when the open failed */
    int64_t L_max = 1;
    for (int u = 0; st == SL_OK && u < n_units; u++)
        L_max = (unit_numel[u] + k - 1) / k > L_max ? (unit_numel[u] + k - 1) / k : L_max;
    float *scratch = st == SL_OK ? malloc((size_t)L_max * sizeof(float)) : NULL;
    if (st == SL_OK && !scratch)
        st = sl_errorf(SL_ERR_NOMEM, "checkpoint: out of memory staging %lld floats", (long long)L_max);
    for (int u = 0; u < n_units && st == SL_OK; u++) {
        int64_t numel = unit_numel[u], L = (numel + k - 1) / k;
        for (int q = 0; q < k && st == SL_OK; q++) {
            int64_t start = (int64_t)q * L, valid = numel - start;
            valid = valid < 0 ? 0 : (valid > L ? L : valid);
            if (valid == 0)
                continue;
            ckpt_reader *rd = NULL;
            ckpt_range got;
            st = ckpt_old_run_reader(&o, 0, q, &rd);
            if (st == SL_OK)
                st = ckpt_reader_range(rd, name, u, &got);
            if (st == SL_OK && (got.start != start || got.len != L || got.numel != numel))
                st = sl_errorf(SL_ERR_FORMAT,
                               "checkpoint file %s: %s unit %d holds [%" PRId64 ", +%" PRId64 ") of %" PRId64
                               " elements; expected [%" PRId64 ", +%" PRId64 ") of %" PRId64
                               " (is it this model's checkpoint?)",
                               ckpt_reader_path(rd), name, u, got.start, got.len, got.numel, start, L, numel);
            if (st == SL_OK)
                st = ckpt_reader_read(rd, name, u, "param", scratch);
            if (st == SL_OK)
                memcpy(out + unit_offset[u] + start, scratch, (size_t)valid * sizeof(float));
        }
    }
    free(scratch);
    ckpt_old_run_close(&o);
    cJSON_Delete(meta);
    return st;
}
