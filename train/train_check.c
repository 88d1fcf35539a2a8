/* train/train_check.c: checks before MPI starts (train_check.h). */
#define _GNU_SOURCE
#include "train/train_check.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/chat.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/device_info.h"
#include "model/layout.h"
#include "model/lora.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "train/train.h"
#include "train/train_model.h"

/* Appends "model.K: you set A, the folder has B" for each model.* key the
 * user set that differs from the folder's. */
static void model_conflicts(const sl_config *mine, const sl_config *folder, char *out, size_t cap, int *n) {
    char *a = config_to_json(mine), *b = config_to_json(folder);
    cJSON *ja = a ? cJSON_Parse(a) : NULL, *jb = b ? cJSON_Parse(b) : NULL;
    free(a);
    free(b);
    const cJSON *ma = cJSON_GetObjectItemCaseSensitive(ja, "model");
    const cJSON *mb = cJSON_GetObjectItemCaseSensitive(jb, "model");
    for (const cJSON *e = ma ? ma->child : NULL; e; e = e->next) {
        char key[128];
        snprintf(key, sizeof key, "model.%s", e->string);
        /* init_std only shapes a random init, which init_from replaces; head
         * (score: a causal LM becomes a reward model) and pad_token_id (the
         * config.json key) are the user's to set over the folder's */
        if (strcmp(e->string, "init_from") == 0 || strcmp(e->string, "init_std") == 0 ||
            strcmp(e->string, "head") == 0 || strcmp(e->string, "pad_token_id") == 0 ||
            !config_is_set(mine, key))
            continue;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(mb, e->string);
        if (o && cJSON_Compare(e, o, true))
            continue;
        char *ev = cJSON_PrintUnformatted(e), *ov = o ? cJSON_PrintUnformatted(o) : NULL;
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s\"%s\" = %s, the folder's model has %s", *n ? "; " : "", key,
                 ev ? ev : "?", ov ? ov : "none");
        free(ev);
        free(ov);
        (*n)++;
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
}

/* lora.init_from: the adapter folder's adapter_config.json sets lora.r,
 * alpha, targets, dropout and rslora, before anything (the pre-flight plan)
 * sizes the adapters. */
static sl_status resolve_adapter(sl_config *cfg) {
    if (!cfg->lora.enabled || !cfg->lora.init_from[0])
        return SL_OK;
    sl_status st = lora_peft_read_config(cfg->lora.init_from, cfg->model.arch, &cfg->lora);
    if (st != SL_OK)
        return sl_error_wrapf(st, "lora.init_from = %s", cfg->lora.init_from);
    return SL_OK;
}

static sl_status resolve_model(sl_config *cfg);

sl_status train_config_resolve(sl_config *cfg) {
    SL_TRY(resolve_model(cfg));
    return resolve_adapter(cfg);
}

static sl_status resolve_model(sl_config *cfg) {
    if (!cfg->model.init_from[0])
        return SL_OK;
    sl_config *tmp = malloc(sizeof *tmp);
    SL_CHECK_ALLOC(tmp, sizeof *tmp);
    sl_status st = train_model_config(cfg->model.init_from, tmp);
    if (st != SL_OK) {
        free(tmp);
        return sl_error_wrapf(st == SL_ERR_IO ? SL_ERR_INVALID : st, "model.init_from = %s",
                              cfg->model.init_from);
    }
    char diff[2048] = "";
    int n = 0;
    model_conflicts(cfg, tmp, diff, sizeof diff, &n);
    if (n > 0) {
        st = sl_errorf(SL_ERR_INVALID,
                       "model.init_from = %s sets the model, but the config also sets: %s. Remove those "
                       "model.* keys (the folder's model is trained) or use a folder of that model",
                       cfg->model.init_from, diff);
        free(tmp);
        return st;
    }
    char from[CFG_STR_MAX];
    memcpy(from, cfg->model.init_from, sizeof from);
    int head = cfg->model.head, pad = cfg->model.pad_token_id;
    cfg->model = tmp->model;
    if (config_is_set(cfg, "model.head"))
        cfg->model.head = head;
    if (config_is_set(cfg, "model.pad_token_id"))
        cfg->model.pad_token_id = pad;
    memcpy(cfg->model.init_from, from, sizeof from);
    free(tmp);
    SL_TRY(config_apply_objective(cfg)); /* a causal LM trained as a reward model gets a score head */
    if (cfg->data.seq_len > cfg->model.max_seq_len)
        return sl_errorf(SL_ERR_INVALID, "\"data.seq_len\" = %d exceeds max_seq_len %d of the model in %s",
                         cfg->data.seq_len, cfg->model.max_seq_len, cfg->model.init_from);
    return SL_OK;
}

static sl_status check_backend(const sl_config *cfg) {
    device_info di;
    memset(&di, 0, sizeof di);
    /* the CPU needs no device query (no CUDA runtime before MPI starts) */
    bool may_cuda = cfg->train.backend == BACKEND_KIND_CUDA ||
                    (cfg->train.backend == BACKEND_KIND_AUTO && cfg->train.dtype == COMPUTE_DTYPE_BF16);
    if (may_cuda)
        device_info_query(&di);
    bool cuda = train_uses_cuda(cfg, &di);
    if (!cuda && cfg->train.dtype != COMPUTE_DTYPE_F32)
        return sl_errorf(SL_ERR_INVALID, "train.dtype = bf16 needs the CUDA backend (train.backend = cuda or "
                                         "auto on a GPU machine); the CPU backend computes in fp32");
    if (cuda && cfg->train.dtype != COMPUTE_DTYPE_BF16)
        return sl_errorf(SL_ERR_INVALID, "train.backend = cuda with train.dtype = fp32: the CUDA kernels "
                                         "compute in bf16; set train.dtype = bf16, or train.backend = cpu");
    if (cuda && di.count <= 0)
        return sl_errorf(SL_ERR_INVALID, "train.backend = cuda: no usable GPU on this machine (%s); use "
                                         "train.backend = cpu (with train.dtype = fp32) or auto",
                         di.note);
    return SL_OK;
}

static sl_status check_lora(const sl_config *cfg) {
    if (!cfg->lora.enabled || cfg->lora.init_from[0])
        return SL_OK; /* an adapter folder's config sets the targets at setup */
    model_layout *l = NULL;
    SL_TRY(model_layout_create(&cfg->model, false, &l));
    lora_spec *s = NULL;
    sl_status st = lora_create(l, &cfg->lora, &s);
    lora_destroy(s);
    model_layout_destroy(l);
    return st;
}

static sl_status check_tokenizer(const sl_config *cfg) {
    if (!cfg->data.tokenizer[0] || !cfg->data.train[0])
        return SL_OK;
    char **paths = NULL;
    int n = 0;
    if (loader_expand_paths(cfg->data.train, &paths, &n) != SL_OK || n == 0) {
        sl_error_clear(); /* the loader reports a missing data.train at setup */
        return SL_OK;
    }
    shard_reader *r = NULL;
    char data_hash[32] = "", name[128] = "";
    sl_status st = shard_open(paths[0], &r);
    if (st == SL_OK) {
        snprintf(data_hash, sizeof data_hash, "%s", shard_info_get(r)->meta.tokenizer_hash);
        snprintf(name, sizeof name, "%s", shard_info_get(r)->meta.tokenizer_name);
    }
    shard_close(r);
    char first[CFG_STR_MAX];
    snprintf(first, sizeof first, "%s", n ? paths[0] : "");
    loader_free_paths(paths, n);
    if (st != SL_OK) {
        sl_error_clear();
        return SL_OK;
    }
    tokenizer *t = NULL;
    st = tok_load(cfg->data.tokenizer, &t);
    if (st != SL_OK)
        return sl_error_wrapf(SL_ERR_INVALID, "\"data.tokenizer\" = %s", cfg->data.tokenizer);
    /* prepare registers the chat markers (at the next free ids when the
     * file lacks them) before it hashes: the file's hash as it is, and as
     * prepare saw it, both count */
    char mine[32], prepared[32] = "";
    snprintf(mine, sizeof mine, "%s", tok_hash(t));
    chat_template chat;
    char tmpl[32]; /* the template prepare resolves ("auto": from tokenizer_config.json) */
    snprintf(tmpl, sizeof tmpl, "%s", cfg->prepare.chat_template);
    if (strcmp(tmpl, "auto") != 0 || chat_template_detect(cfg->data.tokenizer, tmpl, sizeof tmpl) == SL_OK)
        if (chat_template_init(tmpl, t, &chat) == SL_OK)
            snprintf(prepared, sizeof prepared, "%s", tok_hash(t));
    sl_error_clear();
    tok_destroy(t);
    if (data_hash[0] && strcmp(mine, data_hash) != 0 && strcmp(prepared, data_hash) != 0)
        return sl_errorf(SL_ERR_INVALID,
                         "\"data.tokenizer\" = %s has tokenizer hash %s, but the shards of data.train (%s) "
                         "were tokenized with %s (hash %s): the export would ship the wrong tokenizer. Set "
                         "data.tokenizer to the file shardlm prepare used, or prepare the data again",
                         cfg->data.tokenizer, mine, first, name[0] ? name : "another tokenizer", data_hash);
    return SL_OK;
}

/* Whether dir exists and holds any entry. */
static bool dir_non_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool any = false;
    for (struct dirent *e; !any && (e = readdir(d)) != NULL;)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return any;
}

static bool fresh_run(const sl_config *cfg) {
    return !cfg->checkpoint.resume[0] || strcmp(cfg->checkpoint.resume, "none") == 0;
}

sl_status train_config_check(sl_config *cfg, const train_check_opts *o) {
    SL_TRY(train_config_resolve(cfg));
    SL_TRY(check_backend(cfg));
    SL_TRY(check_lora(cfg));
    const pair_objective *po = NULL;
    SL_TRY(pair_objective_for(cfg, &po)); /* an objective without an implementation */
    SL_TRY(check_tokenizer(cfg));
    if (o && o->run_dir && !o->overwrite && fresh_run(cfg) && dir_non_empty(cfg->train.run_dir))
        return sl_errorf(SL_ERR_INVALID,
                         "train.run_dir %s already holds a run (config.json, metrics, checkpoints or "
                         "export); a new run would mix with it. Continue it with --resume auto, or set "
                         "another train.run_dir, or pass --overwrite to move the old one aside (to "
                         "%s.old-<time>; nothing is deleted)",
                         cfg->train.run_dir, cfg->train.run_dir);
    return SL_OK;
}

sl_status train_run_dir_prepare(const sl_config *cfg, bool overwrite, char *moved, size_t cap) {
    moved[0] = 0;
    const char *dir = cfg->train.run_dir;
    if (!overwrite || !fresh_run(cfg) || !dir_non_empty(dir))
        return SL_OK;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    for (int i = 0; i < 1000; i++) {
        int n = i ? snprintf(moved, cap, "%.*s.old-%s-%d", (int)len, dir, stamp, i)
                  : snprintf(moved, cap, "%.*s.old-%s", (int)len, dir, stamp);
        if (n < 0 || (size_t)n >= cap)
            return sl_errorf(SL_ERR_INVALID, "train.run_dir %s: path too long", dir);
        if (!fs_exists(moved)) {
            char from[CFG_STR_MAX];
            snprintf(from, sizeof from, "%.*s", (int)len, dir);
            sl_status st = fs_rename_atomic(from, moved);
            if (st != SL_OK)
                return sl_error_wrapf(st, "--overwrite: moving %s aside", dir);
            return SL_OK;
        }
    }
    return sl_errorf(SL_ERR_IO, "--overwrite: no free name for %s.old-%s", dir, stamp);
}
