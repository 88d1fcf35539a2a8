/* ckpt/ckpt_describe.c: describing a checkpoint for shardlm inspect:
 * meta.json printed, every rank file present with its recorded size and
 * every dataset read and verified (Fletcher32 + XXH3).
 *
 * Does not: load into a run (ckpt_load.c) or write (ckpt_save.c).
 *
 * defines: ckpt_looks_like, ckpt_describe
 */
#define _GNU_SOURCE
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_file.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"

bool ckpt_looks_like(const char *path) {
    if (!fs_is_dir(path))
        return false;
    char p[CKPT_PATH_MAX];
    if (fs_join(p, sizeof p, path, "meta.json") == SL_OK && fs_exists(p))
        return true;
    if (fs_join(p, sizeof p, path, "latest") == SL_OK && fs_exists(p))
        return true;
    int *steps, n;
    if (ckpt_list_complete(path, &steps, &n) != SL_OK)
        return false;
    free(steps);
    return n > 0;
}

/* Reads every dataset of a rank file (checksums and hashes); prints one
 * line per part, or the whole file when verbose. */
static sl_status describe_rank_file(const char *path, bool verbose, int64_t *bytes) {
    ckpt_reader *r;
    SL_TRY(ckpt_reader_open(path, &r));
    const ckpt_file_info *in = ckpt_reader_info(r);
    if (verbose) {
        printf("%s\n", path);
        printf("  format          %s version %d\n", CKPT_FILE_FORMAT_NAME, CKPT_FILE_FORMAT_VERSION);
        printf("  step            %" PRId64 "\n", in->step);
        printf("  rank            %d of %d (shard %d of %d, replica %d of %d, %s)\n", in->rank, in->world,
               in->shard_rank, in->shard_size, in->replicate_rank, in->replicate_size, in->fsdp_mode);
    }
    static const char *const part_names[] = {"model", "lora"};
    static const char *const names[] = {"param", "m", "v"};
    sl_status st = SL_OK;
    for (size_t pi = 0; pi < sizeof part_names / sizeof part_names[0] && st == SL_OK; pi++) {
        int nu = 0;
        st = ckpt_reader_n_units(r, part_names[pi], &nu);
        if (st != SL_OK || nu == 0)
            continue;
        int64_t elems = 0, valid = 0, n_ds = 0;
        bool has_opt = false;
        for (int u = 0; u < nu && st == SL_OK; u++) {
            ckpt_range rg;
            st = ckpt_reader_range(r, part_names[pi], u, &rg);
            if (st != SL_OK)
                break;
            float *buf = malloc((size_t)rg.len * sizeof(float));
            if (!buf) {
                st = sl_errorf(SL_ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            for (int d = 0; d < 3 && st == SL_OK; d++) {
                if (!ckpt_reader_has(r, part_names[pi], u, names[d])) {
                    if (d == 0)
                        st = sl_errorf(SL_ERR_FORMAT, "%s: %s unit %d has no param dataset", path,
                                       part_names[pi], u);
                    continue;
                }
                st = ckpt_reader_read(r, part_names[pi], u, names[d], buf);
                n_ds++;
                has_opt |= d > 0;
                *bytes += rg.len * (int64_t)sizeof(float);
            }
            free(buf);
            if (verbose && st == SL_OK)
                printf("  %s unit %-4d   [%" PRId64 ", %" PRId64 ") of %" PRId64 " (%" PRId64 " valid)\n",
                       part_names[pi], u, rg.start, rg.start + rg.len, rg.numel, rg.valid);
            elems += rg.len;
            valid += rg.valid;
        }
        if (st == SL_OK)
            printf("  %-15s %s: %d units, %" PRId64 " elements (%" PRId64 " valid), %s; %" PRId64
                   " datasets verified (Fletcher32 + XXH3)\n",
                   verbose ? "verified" : strrchr(path, '/') ? strrchr(path, '/') + 1 : path, part_names[pi],
                   nu, elems, valid, has_opt ? "params + AdamW m, v" : "params", n_ds);
    }
    ckpt_reader_close(r);
    return st;
}

static sl_status describe_step(const char *dir) {
    cJSON *meta;
    SL_TRY(ckpt_meta_read(dir, &meta));
    int64_t step = 0, skipped = 0, world = 0, shard = 0, repl = 0, bytes = 0;
    sl_status st = ckpt_meta_int(meta, "step", dir, &step);
    if (st == SL_OK)
        st = ckpt_meta_int(meta, "skipped_steps", dir, &skipped);
    if (st == SL_OK)
        st = ckpt_meta_int(meta, "world_size", dir, &world);
    if (st == SL_OK)
        st = ckpt_meta_int(meta, "shard_size", dir, &shard);
    if (st == SL_OK)
        st = ckpt_meta_int(meta, "replicate_size", dir, &repl);
    if (st == SL_OK)
        st = ckpt_meta_int(meta, "bytes", dir, &bytes);
    if (st == SL_OK) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(meta, "config");
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(c, "model");
        char *model_json = mo ? cJSON_PrintUnformatted(mo) : NULL;
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(meta, "loader");
        const cJSON *lh = cJSON_GetObjectItemCaseSensitive(meta, "layout_hash");
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(meta, "config_hash");
        printf("%s\n", dir);
        printf("  format          %s version %d\n", CKPT_META_FORMAT, CKPT_META_VERSION);
        printf("  step            %" PRId64 " (%" PRId64 " skipped for non-finite values)\n", step, skipped);
        const cJSON *os = cJSON_GetObjectItemCaseSensitive(meta, "optim_steps");
        printf("  optim steps     %" PRId64 " AdamW updates applied%s\n",
               cJSON_IsNumber(os) ? (int64_t)os->valuedouble : step - skipped,
               cJSON_IsNumber(os) ? "" : " (not recorded: step - skipped)");
        printf("  world           %" PRId64 " = shard %" PRId64 " x replicate %" PRId64 " (%s)\n", world,
               shard, repl, ckpt_meta_str(meta, "fsdp_mode"));
        if (cJSON_IsObject(ls))
            printf("  loader          epoch %.0f, next sample %.0f\n",
                   cJSON_GetObjectItemCaseSensitive(ls, "epoch")->valuedouble,
                   cJSON_GetObjectItemCaseSensitive(ls, "sample")->valuedouble);
        else
            printf("  loader          none (synthetic data)\n");
        const char *lh_model = ckpt_meta_str(lh, "model"), *lh_lora = ckpt_meta_str(lh, "lora");
        printf("  layout hash     model %s%s%s\n", lh_model[0] ? lh_model : "-", lh_lora[0] ? ", lora " : "",
               lh_lora);
        printf("  config hash     model %s, optim %s, data %s, lora %s\n", ckpt_meta_str(ch, "model"),
               ckpt_meta_str(ch, "optim"), ckpt_meta_str(ch, "data"), ckpt_meta_str(ch, "lora"));
        const char *tok = ckpt_meta_str(meta, "tokenizer_hash");
        printf("  tokenizer hash  %s\n", tok[0] ? tok : "- (synthetic data)");
        printf("  written by      shardlm %s (git %s)\n", ckpt_meta_str(meta, "shardlm_version"),
               ckpt_meta_str(meta, "git_hash"));
        printf("  model           %s\n", model_json ? model_json : "?");
        printf("  size            %.2f MB in %" PRId64 " rank files\n", (double)bytes / 1e6, world);
        free(model_json);
    }
    ckpt_old_run o;
    memset(&o, 0, sizeof o);
    if (st == SL_OK)
        st = ckpt_old_run_open(meta, dir, &o); /* every file present with its recorded size */
    int64_t read = 0;
    double t0 = sl_now();
    for (int r = 0; r < o.world && st == SL_OK; r++) {
        char path[CKPT_PATH_MAX];
        snprintf(path, sizeof path, "%s/rank_%05d.h5", dir, r);
        st = describe_rank_file(path, false, &read);
    }
    if (st == SL_OK)
        printf("  verified        %.2f MB of datasets in %.2f s\n", (double)read / 1e6, sl_now() - t0);
    ckpt_old_run_close(&o);
    cJSON_Delete(meta);
    return st;
}

sl_status ckpt_describe(const char *path) {
    if (!fs_is_dir(path)) {
        int64_t bytes = 0;
        return describe_rank_file(path, true, &bytes);
    }
    char p[CKPT_PATH_MAX];
    SL_TRY(fs_join(p, sizeof p, path, "meta.json"));
    if (fs_exists(p))
        return describe_step(path);
    int *steps, n;
    SL_TRY(ckpt_list_complete(path, &steps, &n));
    printf("%s: %d complete checkpoint%s", path, n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++)
        printf("%s step_%08d", i ? "," : ":", steps[i]);
    printf("\n");
    free(steps);
    char dir[CKPT_PATH_MAX];
    bool found = false;
    SL_TRY(ckpt_resolve_root(path, dir, sizeof dir, &found));
    if (!found)
        return sl_errorf(SL_ERR_FORMAT, "%s holds no complete checkpoint", path);
    printf("latest: ");
    return describe_step(dir);
}
