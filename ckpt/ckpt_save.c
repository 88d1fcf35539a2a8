/* ckpt/ckpt_save.c: the checkpoint root, saving (the collective protocol
 * in ckpt.h: rank files, meta.json, `latest`, retention), the agreement
 * every collective step ends with, and finding the checkpoint to resume
 * from, plus the folder helpers the other files share (ckpt_internal.h).
 *
 * Does not: read checkpoints back, check them against the run, reshard
 * (ckpt_load.c) or describe them (ckpt_describe.c).
 *
 * defines: ckpt_root, ckpt_step_path, ckpt_save, ckpt_write_rank_file,
 *          ckpt_commit, ckpt_agree, ckpt_find_resume; and, for the other
 *          files, ckpt_config_json, ckpt_list_complete, ckpt_resolve_root
 */
#define _GNU_SOURCE
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/ckpt_file.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/log.h"

sl_status ckpt_root(const sl_config *cfg, char *out, size_t cap) {
    int n = cfg->checkpoint.dir[0] ? snprintf(out, cap, "%s", cfg->checkpoint.dir)
                                   : snprintf(out, cap, "%s/checkpoints", cfg->train.run_dir);
    if (n < 0 || (size_t)n >= cap)
        return sl_errorf(SL_ERR_INVALID, "checkpoint folder path is too long (%d bytes)", n);
    return SL_OK;
}

/* Every rank learns whether any rank failed. A failing rank keeps its own
 * message; the others get one naming the lowest failing rank. */
sl_status ckpt_agree(ckpt_ctx *c, sl_status st, const char *what) {
    int32_t mine[2] = {st != SL_OK ? c->world_size - c->rank : 0, (int32_t)st};
    int32_t all[2];
    sl_status cst = comm_all_reduce(c->world, mine, all, 2, SL_DTYPE_I32, COMM_REDOP_MAX);
    if (cst != SL_OK)
        return st != SL_OK ? st : cst;
    if (all[0] == 0)
        return SL_OK;
    c->stop_agreed = true;
    c->failed_rank = c->world_size - all[0];
    if (st != SL_OK)
        return st;
    return sl_errorf((sl_status)all[1], "rank %d could not %s (its error is printed above)",
                     c->world_size - all[0], what);
}

sl_status ckpt_step_path(char *out, size_t cap, const char *root, int64_t step, const char *suffix) {
    int n = snprintf(out, cap, "%s/step_%08" PRId64 "%s", root, step, suffix);
    if (n < 0 || (size_t)n >= cap)
        return sl_errorf(SL_ERR_IO, "checkpoint path too long under %s", root);
    return SL_OK;
}

/* "step_NNNNNNNN" exactly -> step, else -1. */
static int parse_step_name(const char *name) {
    if (strncmp(name, "step_", 5) != 0 || strlen(name) != 13)
        return -1;
    int v = 0;
    for (int i = 5; i < 13; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

static bool step_complete(const char *root, const char *name) {
    char p[CKPT_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s/meta.json", root, name);
    return fs_exists(p);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Complete checkpoints' steps under root, ascending; *steps freed by the caller. */
sl_status ckpt_list_complete(const char *root, int **steps, int *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(root);
    if (!d)
        return SL_OK;
    int cap = 0;
    sl_status st = SL_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int s = parse_step_name(e->d_name);
        if (s < 0 || !step_complete(root, e->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int *g = realloc(*steps, (size_t)cap * sizeof(int));
            if (!g) {
                st = sl_errorf(SL_ERR_NOMEM, "out of memory listing %s", root);
                break;
            }
            *steps = g;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (*n > 1)
        qsort(*steps, (size_t)*n, sizeof(int), cmp_int);
    return st;
}

/* Removes *.tmp entries (half-written checkpoints of a crashed save). */
static sl_status remove_stale(const char *root) {
    DIR *d = opendir(root);
    if (!d)
        return SL_OK;
    sl_status st = SL_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL && st == SL_OK;) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "step_", 5) != 0 || n < 4 || strcmp(e->d_name + n - 4, ".tmp") != 0)
            continue;
        char p[CKPT_PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", root, e->d_name);
        LOG_INFO0("removing the incomplete checkpoint %s", p);
        st = fs_remove_tree(p);
    }
    closedir(d);
    return st;
}

/* The eval loss meta.json records for step (NaN when none or unreadable). */
static double step_eval_loss(const char *root, int step) {
    char dir[CKPT_PATH_MAX];
    cJSON *m = NULL;
    double v = NAN;
    if (ckpt_step_path(dir, sizeof dir, root, step, "") == SL_OK && ckpt_meta_read(dir, &m) == SL_OK) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(m, "eval_loss");
        if (cJSON_IsNumber(e))
            v = e->valuedouble;
    }
    cJSON_Delete(m);
    sl_error_clear();
    return v;
}

/* Retention: the last `keep` complete checkpoints by step, and never the
 * one just written (`latest` names it: a resume from an older checkpoint
 * makes it lower than older runs' steps) nor, with keep_best, the one with
 * the lowest eval loss (then named by <root>/best). */
static sl_status prune(const char *root, int keep, int64_t newest, bool keep_best) {
    int *steps, n;
    SL_TRY(ckpt_list_complete(root, &steps, &n));
    int best = -1;
    double best_loss = INFINITY;
    for (int i = 0; keep_best && i < n; i++) {
        double e = step_eval_loss(root, steps[i]);
        if (e == e && e < best_loss) {
            best_loss = e;
            best = steps[i];
        }
    }
    sl_status st = SL_OK;
    if (best >= 0) {
        char bp[CKPT_PATH_MAX], name[32];
        snprintf(name, sizeof name, "step_%08d\n", best);
        st = fs_join(bp, sizeof bp, root, "best");
        if (st == SL_OK)
            st = fs_write_atomic(bp, name, strlen(name));
    }
    for (int i = 0; i + keep < n && st == SL_OK; i++) {
        if (steps[i] == newest || steps[i] == best)
            continue;
        char p[CKPT_PATH_MAX];
        st = ckpt_step_path(p, sizeof p, root, steps[i], "");
        if (st == SL_OK)
            st = fs_remove_tree(p);
    }
    free(steps);
    return st;
}

/* ---- save ---- */

static sl_status check_parts(const ckpt_part *parts, int n_parts, bool need_fs) {
    for (int i = 0; i < n_parts; i++) {
        const ckpt_part *p = &parts[i];
        SL_CHECK_ARG(p->name && p->name[0] && p->layout_hash && p->layout_hash[0] && p->n_units >= 0 &&
                         (p->n_units == 0 || p->unit_numel),
                     "checkpoint part %d: missing name, layout hash or unit sizes", i);
        SL_CHECK_ARG(!need_fs || (p->fs && fsdp_n_units(p->fs) == p->n_units),
                     "checkpoint part \"%s\": %d units given, its fsdp instance has %d", p->name, p->n_units,
                     p->fs ? fsdp_n_units(p->fs) : -1);
    }
    return SL_OK;
}

sl_status ckpt_write_rank_file(const ckpt_ctx *c, const char *dir, const ckpt_part *parts, int n_parts,
                               int64_t step, int64_t *bytes) {
    SL_TRY(check_parts(parts, n_parts, true));
    char path[CKPT_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/rank_%05d.h5", dir, c->rank) >= (int)sizeof path)
        return sl_errorf(SL_ERR_IO, "checkpoint path too long under %s", dir);
    const parallel_plan *p = c->plan;
    ckpt_file_info info = {.rank = c->rank,
                           .world = c->world_size,
                           .shard_rank = p->shard_rank,
                           .shard_size = p->shard_size,
                           .replicate_rank = p->replicate_rank,
                           .replicate_size = p->replicate_size,
                           .step = step};
    snprintf(info.fsdp_mode, sizeof info.fsdp_mode, "%s", config_enum_name("parallel.fsdp_mode", p->mode));
    ckpt_writer *w;
    SL_TRY(ckpt_writer_open(path, &info, &w));
    /* the shards are backend memory (device on CUDA): stage them on the host,
     * so the files are the same whatever the backend (fp32 master, m, v) */
    int64_t max_len = 1;
    for (int i = 0; i < n_parts; i++)
        for (int u = 0; u < parts[i].n_units; u++) {
            int64_t len = fsdp_shard(parts[i].fs, u).len;
            max_len = len > max_len ? len : max_len;
        }
    float *host = malloc((size_t)max_len * 3 * sizeof(float));
    sl_status st = host ? SL_OK : sl_errorf(SL_ERR_NOMEM, "checkpoint: out of memory staging %lld floats",
                                            (long long)max_len * 3);
    for (int i = 0; i < n_parts && st == SL_OK; i++) {
        for (int u = 0; u < parts[i].n_units && st == SL_OK; u++) {
            fsdp_unit_shard s = fsdp_shard(parts[i].fs, u);
            ckpt_range r = {s.start, s.len, s.valid, parts[i].unit_numel[u]};
            float *hb[3] = {host, host + max_len, host + 2 * max_len};
            for (int d = 0; d < 3 && st == SL_OK; d++)
                st = fsdp_shard_read(parts[i].fs, u, (fsdp_buf)d, hb[d]);
            if (st == SL_OK)
                st = ckpt_writer_add_unit(w, parts[i].name, u, &r, hb[0], hb[1], hb[2]);
        }
    }
    free(host);
    if (st != SL_OK) {
        ckpt_writer_abort(w);
        return st;
    }
    SL_TRY(ckpt_writer_close(w));
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sl_errorf(SL_ERR_IO, "checkpoint file %s vanished after it was written", path);
    *bytes = (int64_t)sb.st_size;
    return SL_OK;
}

cJSON *ckpt_config_json(const sl_config *cfg) {
    char *s = config_to_json(cfg);
    cJSON *c = s ? cJSON_Parse(s) : NULL;
    free(s);
    return c;
}

/* meta.json (rank 0). */
static sl_status write_meta(const ckpt_ctx *c, const char *dir, const ckpt_part *ps, int np,
                            const ckpt_state *s, const ckpt_rank_file *files, double seconds) {
    const parallel_plan *p = c->plan;
    cJSON *m = cJSON_CreateObject();
    SL_CHECK_ALLOC(m, 1);
    cJSON_AddStringToObject(m, "format", CKPT_META_FORMAT);
    cJSON_AddNumberToObject(m, "version", CKPT_META_VERSION);
    cJSON_AddNumberToObject(m, "step", (double)s->step);
    cJSON_AddNumberToObject(m, "skipped_steps", (double)s->skipped_steps);
    cJSON_AddNumberToObject(m, "optim_steps", (double)s->optim_steps);
    if (s->eval_loss == s->eval_loss)
        cJSON_AddNumberToObject(m, "eval_loss", s->eval_loss);
    else
        cJSON_AddNullToObject(m, "eval_loss");
    cJSON_AddNumberToObject(m, "world_size", c->world_size);
    cJSON_AddStringToObject(m, "fsdp_mode", config_enum_name("parallel.fsdp_mode", p->mode));
    cJSON_AddNumberToObject(m, "shard_size", p->shard_size);
    cJSON_AddNumberToObject(m, "replicate_size", p->replicate_size);
    cJSON *fl = cJSON_AddArrayToObject(m, "files");
    int64_t total = 0;
    for (int r = 0; r < c->world_size; r++) {
        cJSON *f = cJSON_CreateObject();
        char name[32];
        snprintf(name, sizeof name, "rank_%05d.h5", r);
        cJSON_AddNumberToObject(f, "rank", r);
        cJSON_AddStringToObject(f, "file", name);
        cJSON_AddNumberToObject(f, "shard_rank", files[r].shard_rank);
        cJSON_AddNumberToObject(f, "replicate_rank", files[r].replicate_rank);
        cJSON_AddNumberToObject(f, "bytes", (double)files[r].bytes);
        cJSON_AddItemToArray(fl, f);
        total += files[r].bytes;
    }
    cJSON_AddNumberToObject(m, "bytes", (double)total);
    cJSON_AddNumberToObject(m, "write_seconds", seconds);
    if (s->has_loader) {
        cJSON *l = cJSON_AddObjectToObject(m, "loader");
        cJSON_AddNumberToObject(l, "epoch", (double)s->loader_epoch);
        cJSON_AddNumberToObject(l, "sample", (double)s->loader_sample);
    } else {
        cJSON_AddNullToObject(m, "loader");
    }
    cJSON *parts = cJSON_AddArrayToObject(m, "parts");
    cJSON *lh = cJSON_AddObjectToObject(m, "layout_hash");
    for (int i = 0; i < np; i++) {
        cJSON_AddItemToArray(parts, cJSON_CreateString(ps[i].name));
        cJSON_AddStringToObject(lh, ps[i].name, ps[i].layout_hash);
    }
    cJSON *ch = cJSON_AddObjectToObject(m, "config_hash");
    static const char *const sections[] = {"model", "optim", "data", "lora"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        char h[17];
        config_hash(c->cfg, sections[i], h);
        cJSON_AddStringToObject(ch, sections[i], h);
    }
    cJSON_AddStringToObject(m, "tokenizer_hash", c->tokenizer_hash ? c->tokenizer_hash : "");
    cJSON_AddStringToObject(m, "shardlm_version", SHARDLM_VERSION);
    cJSON_AddStringToObject(m, "git_hash", SHARDLM_GIT_HASH);
    cJSON *cj = ckpt_config_json(c->cfg);
    if (cj)
        cJSON_AddItemToObject(m, "config", cj);
    char *text = cJSON_Print(m);
    cJSON_Delete(m);
    SL_CHECK_ALLOC(text, 1);
    char path[CKPT_PATH_MAX];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    sl_status st = fs_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

/* Rank 0, step 4 of the protocol: meta.json, rename, latest, retention. */
sl_status ckpt_commit(const ckpt_ctx *c, const char *tmp, const ckpt_part *parts, int n_parts,
                      const ckpt_state *s, const ckpt_rank_file *files, double seconds) {
    SL_TRY(check_parts(parts, n_parts, false));
    char root[CKPT_PATH_MAX], final[CKPT_PATH_MAX], old[CKPT_PATH_MAX], latest[CKPT_PATH_MAX], name[32];
    SL_TRY(ckpt_root(c->cfg, root, sizeof root));
    SL_TRY(write_meta(c, tmp, parts, n_parts, s, files, seconds));
    SL_TRY(fs_fsync_path(tmp));
    SL_TRY(ckpt_step_path(final, sizeof final, root, s->step, ""));
    SL_TRY(ckpt_step_path(old, sizeof old, root, s->step, ".old.tmp"));
    /* A checkpoint of this step from an earlier attempt (a resume from an
     * older checkpoint) is moved aside first: rename cannot replace a
     * non-empty folder. */
    bool replaced = fs_exists(final);
    if (replaced)
        SL_TRY(fs_rename_atomic(final, old));
    SL_TRY(fs_rename_atomic(tmp, final));
    snprintf(name, sizeof name, "step_%08" PRId64 "\n", s->step);
    SL_TRY(fs_join(latest, sizeof latest, root, "latest"));
    SL_TRY(fs_write_atomic(latest, name, strlen(name)));
    if (replaced)
        SL_TRY(fs_remove_tree(old));
    return prune(root, c->cfg->checkpoint.keep, s->step, c->cfg->checkpoint.keep_best);
}

sl_status ckpt_save(ckpt_ctx *c, const ckpt_part *parts, int n_parts, const ckpt_state *s) {
    char root[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX];
    SL_TRY(ckpt_root(c->cfg, root, sizeof root));
    SL_TRY(ckpt_step_path(tmp, sizeof tmp, root, s->step, ".tmp"));
    double t0 = sl_now();
    sl_status st = SL_OK;
    if (c->rank == 0) {
        st = fs_mkdirs(root);
        if (st == SL_OK)
            st = remove_stale(root);
        if (st == SL_OK)
            st = fs_mkdirs(tmp);
    }
    SL_TRY(ckpt_agree(c, st, "create the checkpoint folder"));
    int64_t bytes = 0;
    st = ckpt_write_rank_file(c, tmp, parts, n_parts, s->step, &bytes);
    if (c->kill_in_save_step == s->step && c->rank == 0 && st == SL_OK) {
        LOG_WARN("SHARDLM_FAULT_KILL_IN_SAVE: killing this rank after writing its checkpoint file");
        raise(SIGKILL);
    }
    SL_TRY(ckpt_agree(c, st, "write its checkpoint file"));
    double secs = sl_now() - t0;
    SL_TRY(comm_all_reduce(c->world, &secs, &secs, 1, SL_DTYPE_F64, COMM_REDOP_MAX));
    int world = c->world_size;
    int64_t mine[3] = {c->plan->shard_rank, c->plan->replicate_rank, bytes};
    int64_t *per_rank = malloc(sizeof(int64_t) * 3 * (size_t)world);
    ckpt_rank_file *files = malloc(sizeof *files * (size_t)world);
    if (!per_rank || !files) {
        free(per_rank);
        free(files);
        return sl_errorf(SL_ERR_NOMEM, "checkpoint: out of memory for %d rank entries", world);
    }
    st = comm_all_gather(c->world, mine, per_rank, 3, SL_DTYPE_I64);
    int64_t total = 0;
    for (int r = 0; r < world; r++) {
        files[r] = (ckpt_rank_file){(int)per_rank[3 * r], (int)per_rank[3 * r + 1], per_rank[3 * r + 2]};
        total += files[r].bytes;
    }
    if (st == SL_OK && c->rank == 0)
        st = ckpt_commit(c, tmp, parts, n_parts, s, files, secs);
    free(per_rank);
    free(files);
    SL_TRY(ckpt_agree(c, st, "publish the checkpoint"));
    double all = sl_now() - t0;
    LOG_INFO0("checkpoint step %" PRId64 " saved to %s/step_%08" PRId64
              ": %.1f MB in %.2f s (%.0f MB/s; rank files %.2f s)",
              s->step, root, s->step, (double)total / 1e6, all, (double)total / 1e6 / all, secs);
    return SL_OK;
}

/* ---- find ---- */

/* Latest complete checkpoint under root: `latest` if it names a complete
 * one, else the highest complete step folder. */
sl_status ckpt_resolve_root(const char *root, char *dir, size_t cap, bool *found) {
    *found = false;
    char lp[CKPT_PATH_MAX];
    SL_TRY(fs_join(lp, sizeof lp, root, "latest"));
    char *text = NULL;
    size_t len = 0;
    if (fs_exists(lp) && fs_read_file(lp, &text, &len, 4096) == SL_OK) {
        text[strcspn(text, "\r\n")] = 0;
        bool ok = parse_step_name(text) >= 0 && step_complete(root, text);
        if (ok) {
            int n = snprintf(dir, cap, "%s/%s", root, text);
            free(text);
            if (n < 0 || (size_t)n >= cap)
                return sl_errorf(SL_ERR_IO, "checkpoint path too long under %s", root);
            *found = true;
            return SL_OK;
        }
        LOG_WARN0("%s names \"%s\", which is not a complete checkpoint; using the newest complete one", lp,
                  text);
        free(text);
    }
    int *steps, n;
    SL_TRY(ckpt_list_complete(root, &steps, &n));
    sl_status st = SL_OK;
    if (n > 0) {
        st = ckpt_step_path(dir, cap, root, steps[n - 1], "");
        *found = st == SL_OK;
    }
    free(steps);
    return st;
}

static sl_status find_local(const sl_config *cfg, char *dir, size_t cap, bool *found) {
    *found = false;
    const char *spec = cfg->checkpoint.resume;
    if (!spec[0] || strcmp(spec, "none") == 0)
        return SL_OK;
    char root[CKPT_PATH_MAX];
    if (strcmp(spec, "auto") == 0) {
        SL_TRY(ckpt_root(cfg, root, sizeof root));
        SL_TRY(ckpt_resolve_root(root, dir, cap, found));
        if (!*found)
            LOG_INFO0("checkpoint.resume = auto: no complete checkpoint in %s; starting at step 0", root);
        return SL_OK;
    }
    char meta[CKPT_PATH_MAX];
    SL_TRY(fs_join(meta, sizeof meta, spec, "meta.json"));
    if (fs_exists(meta)) {
        int n = snprintf(dir, cap, "%s", spec);
        if (n < 0 || (size_t)n >= cap)
            return sl_errorf(SL_ERR_INVALID, "\"checkpoint.resume\" path is too long");
        *found = true;
        return SL_OK;
    }
    if (fs_is_dir(spec)) {
        SL_TRY(ckpt_resolve_root(spec, dir, cap, found));
        if (*found)
            return SL_OK;
    }
    return sl_errorf(SL_ERR_INVALID,
                     "\"checkpoint.resume\" = %s: not a complete checkpoint (no meta.json) nor a folder "
                     "holding one; pass a step_NNNNNNNN folder, a checkpoints folder, auto or none",
                     spec);
}

/* Rank 0: the newest complete checkpoint in failed's folder below failed's step. */
static sl_status find_previous_local(const char *failed, char *dir, size_t cap, bool *found) {
    *found = false;
    char root[CKPT_PATH_MAX];
    if (snprintf(root, sizeof root, "%s", failed) >= (int)sizeof root)
        return sl_errorf(SL_ERR_INVALID, "checkpoint path too long: %s", failed);
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        root[--len] = 0;
    char *slash = strrchr(root, '/');
    int below = parse_step_name(slash ? slash + 1 : root);
    if (below < 0)
        return SL_OK;
    if (slash)
        *slash = 0;
    else
        snprintf(root, sizeof root, ".");
    int *steps, n;
    SL_TRY(ckpt_list_complete(root, &steps, &n));
    sl_status st = SL_OK;
    for (int i = n - 1; i >= 0; i--)
        if (steps[i] < below) {
            st = ckpt_step_path(dir, cap, root, steps[i], "");
            *found = st == SL_OK;
            break;
        }
    free(steps);
    return st;
}

static sl_status broadcast_found(ckpt_ctx *c, sl_status st, bool f, char *dir, size_t cap, bool *found) {
    struct {
        int32_t st, found;
        char dir[CKPT_PATH_MAX];
    } msg;
    memset(&msg, 0, sizeof msg);
    if (c->rank == 0) {
        msg.st = (int32_t)st;
        msg.found = f;
        snprintf(msg.dir, sizeof msg.dir, "%s", dir);
    }
    SL_TRY(comm_broadcast(c->world, &msg, sizeof msg, SL_DTYPE_U8, 0));
    if (msg.st != SL_OK) {
        c->stop_agreed = true;
        return c->rank == 0 ? st : sl_errorf((sl_status)msg.st, "rank 0 could not find a checkpoint (its error is above)");
    }
    *found = msg.found != 0;
    if (*found && snprintf(dir, cap, "%s", msg.dir) >= (int)cap)
        return sl_errorf(SL_ERR_INVALID, "checkpoint path too long: %s", msg.dir);
    return SL_OK;
}

sl_status ckpt_find_previous(ckpt_ctx *c, const char *failed, char *dir, size_t cap, bool *found) {
    char local[CKPT_PATH_MAX] = "";
    bool f = false;
    sl_status st = SL_OK;
    if (c->rank == 0)
        st = find_previous_local(failed, local, sizeof local, &f);
    SL_TRY(broadcast_found(c, st, f, local, sizeof local, found));
    if (*found && snprintf(dir, cap, "%s", local) >= (int)cap)
        return sl_errorf(SL_ERR_INVALID, "checkpoint path too long: %s", local);
    return SL_OK;
}

sl_status ckpt_find_resume(ckpt_ctx *c, char *dir, size_t cap, bool *found) {
    struct {
        int32_t st, found;
        char dir[CKPT_PATH_MAX];
    } msg;
    memset(&msg, 0, sizeof msg);
    sl_status st = SL_OK;
    if (c->rank == 0) {
        bool f = false;
        st = find_local(c->cfg, msg.dir, sizeof msg.dir, &f);
        msg.st = (int32_t)st;
        msg.found = f;
    }
    SL_TRY(comm_broadcast(c->world, &msg, sizeof msg, SL_DTYPE_U8, 0));
    if (msg.st != SL_OK) {
        c->stop_agreed = true;
        return c->rank == 0 ? st
                                  : sl_errorf((sl_status)msg.st,
                                              "rank 0 could not resolve checkpoint.resume (its error is above)");
    }
    *found = msg.found != 0;
    if (*found && snprintf(dir, cap, "%s", msg.dir) >= (int)cap)
        return sl_errorf(SL_ERR_INVALID, "checkpoint path too long: %s", msg.dir);
    return SL_OK;
}
