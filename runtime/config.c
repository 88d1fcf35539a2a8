#include "runtime/config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/config_schema.h"
#include "runtime/fsutil.h"

static void *field_ptr(sl_config *cfg, const cfg_field *f) { return (char *)cfg + f->offset; }
static const void *field_cptr(const sl_config *cfg, const cfg_field *f) {
    return (const char *)cfg + f->offset;
}

static const cfg_field *field_find(const char *path) {
    for (size_t i = 0; i < cfg_schema_count; i++)
        if (strcmp(cfg_schema[i].path, path) == 0)
            return &cfg_schema[i];
    return NULL;
}

static bool is_section(const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < cfg_schema_count; i++)
        if (strncmp(cfg_schema[i].path, name, n) == 0 && cfg_schema[i].path[n] == '.')
            return true;
    return false;
}

/* Levenshtein distance, for "did you mean". Paths are short. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 127 || lb > 127)
        return 1 << 20;
    int prev[128], cur[128];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

/* Nearest valid key (or section) to `path`; NULL when nothing is close. The
 * key part alone is also compared, so "lr_warmpu" at the top level still
 * finds "optim.lr_warmup". */
static const char *nearest_key(const char *path, bool want_section, char *buf, size_t bufsz) {
    int best = 1 << 20;
    const char *best_path = NULL;
    for (size_t i = 0; i < cfg_schema_count; i++) {
        const char *cand = cfg_schema[i].path;
        char sec[64];
        const char *dot = strchr(cand, '.');
        size_t sl = (size_t)(dot - cand);
        if (sl >= sizeof sec)
            continue;
        memcpy(sec, cand, sl);
        sec[sl] = 0;
        int d;
        if (want_section) {
            d = edit_distance(path, sec);
            if (d < best) {
                best = d;
                snprintf(buf, bufsz, "%s", sec);
                best_path = buf;
            }
            continue;
        }
        d = edit_distance(path, cand);
        const char *pdot = strrchr(path, '.');
        int dk = edit_distance(pdot ? pdot + 1 : path, dot + 1) + 1;
        if (dk < d)
            d = dk;
        if (d < best) {
            best = d;
            snprintf(buf, bufsz, "%s", cand);
            best_path = buf;
        }
    }
    int limit = (int)strlen(path) / 3;
    if (limit < 2)
        limit = 2;
    return best <= limit ? best_path : NULL;
}

static sl_status unknown_key(const char *path, bool section, const char *source) {
    char buf[128];
    const char *near = nearest_key(path, section, buf, sizeof buf);
    if (near)
        return sl_errorf(SL_ERR_INVALID, "unknown %s \"%s\" (did you mean \"%s\"?) in %s",
                         section ? "section" : "key", path, near, source);
    return sl_errorf(SL_ERR_INVALID,
                     "unknown %s \"%s\" in %s (run 'shardlm config keys' for the valid keys)",
                     section ? "section" : "key", path, source);
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsNull(v))
        return "null";
    return "an unknown value";
}

static const char *type_expectation(const cfg_field *f) {
    switch (f->type) {
    case CFG_INT:
    case CFG_I64:
        return "an integer";
    case CFG_FLOAT:
        return "a number";
    case CFG_BOOL:
        return "a boolean (true or false)";
    case CFG_STRING:
        return "a string";
    case CFG_ENUM:
        return "a string";
    case CFG_STRLIST:
        return "an array of strings (or a comma-separated string)";
    }
    return "?";
}

/* Index of `name` in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *name) {
    int idx = 0;
    const char *p = choices;
    size_t n = strlen(name);
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return idx;
        idx++;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

static const char *choice_name(const char *choices, int index, char *buf, size_t bufsz) {
    const char *p = choices;
    for (int i = 0; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (i == index) {
            if (len >= bufsz)
                len = bufsz - 1;
            memcpy(buf, p, len);
            buf[len] = 0;
            return buf;
        }
        if (!bar)
            break;
        p = bar + 1;
    }
    return "?";
}

static sl_status type_error(const cfg_field *f, const cJSON *v, const char *source) {
    return sl_errorf(SL_ERR_INVALID, "\"%s\" must be %s, got %s in %s", f->path,
                     type_expectation(f), json_type_name(v), source);
}

static sl_status set_string(char *dst, size_t cap, const char *s, const cfg_field *f, const char *source) {
    size_t n = strlen(s);
    if (n >= cap)
        return sl_errorf(SL_ERR_INVALID, "\"%s\" is %zu bytes long, at most %zu allowed, in %s",
                         f->path, n, cap - 1, source);
    memcpy(dst, s, n + 1);
    return SL_OK;
}

static sl_status set_list_from_csv(cfg_strlist *l, const char *s, const cfg_field *f, const char *source) {
    l->n = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len > 0) {
            if (l->n >= CFG_LIST_MAX)
                return sl_errorf(SL_ERR_INVALID, "\"%s\" has more than %d items in %s", f->path,
                                 CFG_LIST_MAX, source);
            if (len >= CFG_STR_MAX)
                return sl_errorf(SL_ERR_INVALID, "\"%s\" item %d is longer than %d bytes in %s",
                                 f->path, l->n, CFG_STR_MAX - 1, source);
            memcpy(l->items[l->n], p, len);
            l->items[l->n][len] = 0;
            l->n++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return SL_OK;
}

static sl_status check_range(const cfg_field *f, double x, const char *source) {
    if (x >= f->min && x <= f->max)
        return SL_OK;
    /* exact numbers: %g would print 1073741824 as 1.07374e+09 */
    if (f->type == CFG_INT || f->type == CFG_I64)
        return sl_errorf(SL_ERR_INVALID, "\"%s\" = %.17g is out of range [%.17g, %.17g] in %s", f->path, x,
                         f->min, f->max, source);
    return sl_errorf(SL_ERR_INVALID, "\"%s\" = %.15g is out of range [%.15g, %.15g] in %s", f->path, x,
                     f->min, f->max, source);
}

static int field_index(const cfg_field *f) { return (int)(f - cfg_schema); }

bool config_is_set(const sl_config *cfg, const char *path) {
    const cfg_field *f = field_find(path);
    return f && cfg->set[field_index(f)];
}

void config_mark_set(sl_config *cfg, const char *path, bool set) {
    const cfg_field *f = field_find(path);
    if (f)
        cfg->set[field_index(f)] = set;
}

static sl_status field_set_json(sl_config *cfg, const cfg_field *f, const cJSON *v, const char *source) {
    void *p = field_ptr(cfg, f);
    switch (f->type) {
    case CFG_INT:
    case CFG_I64: {
        if (!cJSON_IsNumber(v))
            return type_error(f, v, source);
        double x = v->valuedouble;
        if (x != floor(x))
            return sl_errorf(SL_ERR_INVALID, "\"%s\" must be an integer, got %g in %s", f->path, x, source);
        SL_TRY(check_range(f, x, source));
        if (f->type == CFG_INT)
            *(int *)p = (int)x;
        else
            *(int64_t *)p = (int64_t)x;
        return SL_OK;
    }
    case CFG_FLOAT:
        if (!cJSON_IsNumber(v))
            return type_error(f, v, source);
        SL_TRY(check_range(f, v->valuedouble, source));
        *(double *)p = v->valuedouble;
        return SL_OK;
    case CFG_BOOL:
        if (!cJSON_IsBool(v))
            return type_error(f, v, source);
        *(bool *)p = cJSON_IsTrue(v);
        return SL_OK;
    case CFG_STRING:
        if (!cJSON_IsString(v))
            return type_error(f, v, source);
        return set_string(p, f->size, v->valuestring, f, source);
    case CFG_ENUM: {
        if (!cJSON_IsString(v))
            return sl_errorf(SL_ERR_INVALID, "\"%s\" must be one of %s, got %s in %s", f->path,
                             f->choices, json_type_name(v), source);
        int idx = choice_index(f->choices, v->valuestring);
        if (idx < 0)
            return sl_errorf(SL_ERR_INVALID, "\"%s\" must be one of %s, got \"%s\" in %s", f->path,
                             f->choices, v->valuestring, source);
        *(int *)p = idx;
        return SL_OK;
    }
    case CFG_STRLIST: {
        cfg_strlist *l = p;
        if (cJSON_IsString(v))
            return set_list_from_csv(l, v->valuestring, f, source);
        if (!cJSON_IsArray(v))
            return type_error(f, v, source);
        int n = cJSON_GetArraySize(v);
        if (n > CFG_LIST_MAX)
            return sl_errorf(SL_ERR_INVALID, "\"%s\" has %d items, at most %d allowed, in %s",
                             f->path, n, CFG_LIST_MAX, source);
        cfg_strlist tmp = {0};
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it))
                return sl_errorf(SL_ERR_INVALID, "\"%s\"[%d] must be a string, got %s in %s",
                                 f->path, tmp.n, json_type_name(it), source);
            SL_TRY(set_string(tmp.items[tmp.n], CFG_STR_MAX, it->valuestring, f, source));
            tmp.n++;
        }
        *l = tmp;
        return SL_OK;
    }
    }
    return sl_errorf(SL_ERR_INTERNAL, "bad schema type for %s", f->path);
}

/* cJSON keeps every member of an object, duplicates included; reject them so
 * that a key set twice in one file is never silently resolved. */
static sl_status check_duplicates(const cJSON *obj, const char *prefix, const char *source) {
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                return sl_errorf(SL_ERR_INVALID, "duplicate key \"%s%s%s\" in %s", prefix,
                                 *prefix ? "." : "", a->string, source);
    return SL_OK;
}

static sl_status apply_object(sl_config *cfg, const cJSON *root, const char *source) {
    if (!cJSON_IsObject(root))
        return sl_errorf(SL_ERR_INVALID, "the config in %s must be a JSON object, got %s", source,
                         json_type_name(root));
    SL_TRY(check_duplicates(root, "", source));
    for (const cJSON *sec = root->child; sec; sec = sec->next) {
        if (!is_section(sec->string)) {
            if (!cJSON_IsObject(sec) || strchr(sec->string, '.'))
                return unknown_key(sec->string, false, source);
            return unknown_key(sec->string, true, source);
        }
        if (!cJSON_IsObject(sec))
            return sl_errorf(SL_ERR_INVALID, "\"%s\" must be an object of keys, got %s in %s",
                             sec->string, json_type_name(sec), source);
        SL_TRY(check_duplicates(sec, sec->string, source));
        for (const cJSON *kv = sec->child; kv; kv = kv->next) {
            char path[256];
            snprintf(path, sizeof path, "%s.%s", sec->string, kv->string);
            const cfg_field *f = field_find(path);
            if (!f)
                return unknown_key(path, false, source);
            SL_TRY(field_set_json(cfg, f, kv, source));
            cfg->set[field_index(f)] = 1;
        }
    }
    return SL_OK;
}

sl_status config_apply_json(sl_config *cfg, const char *json, const char *source) {
    const char *err_at = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &err_at, 1);
    if (!root) {
        size_t off = err_at ? (size_t)(err_at - json) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < off && json[i]; i++) {
            if (json[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return sl_errorf(SL_ERR_INVALID, "%s is not valid JSON: syntax error at line %d, column %d",
                         source, line, col);
    }
    sl_config tmp = *cfg; /* all or nothing */
    sl_status st = apply_object(&tmp, root, source);
    cJSON_Delete(root);
    if (st == SL_OK)
        *cfg = tmp;
    return st;
}

sl_status config_load_file(sl_config *cfg, const char *path) {
    char *text = NULL;
    size_t len = 0;
    sl_status st = fs_read_file(path, &text, &len, 16u << 20);
    if (st != SL_OK)
        return sl_error_wrapf(st, "cannot read config");
    st = config_apply_json(cfg, text, path);
    free(text);
    return st;
}

sl_status config_set_override(sl_config *cfg, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    char source[600];
    snprintf(source, sizeof source, "--set %s", assignment);
    if (!eq || eq == assignment)
        return sl_errorf(SL_ERR_INVALID, "%s: expected --set section.key=value", source);
    char path[256];
    size_t plen = (size_t)(eq - assignment);
    if (plen >= sizeof path)
        return sl_errorf(SL_ERR_INVALID, "%s: key too long", source);
    memcpy(path, assignment, plen);
    path[plen] = 0;
    const cfg_field *f = field_find(path);
    if (!f)
        return unknown_key(path, false, source);
    const char *val = eq + 1;
    cJSON *v = cJSON_Parse(val);
    if (!v || (f->type != CFG_INT && f->type != CFG_I64 && f->type != CFG_FLOAT &&
               f->type != CFG_BOOL && cJSON_IsNumber(v))) {
        /* not JSON, or a number given for a string key: take the text */
        cJSON_Delete(v);
        v = cJSON_CreateString(val);
    }
    sl_config tmp = *cfg;
    sl_status st = field_set_json(&tmp, f, v, source);
    cJSON_Delete(v);
    tmp.set[field_index(f)] = 1;
    if (st == SL_OK)
        *cfg = tmp;
    return st;
}

static sl_status apply_default(sl_config *cfg, const cfg_field *f) {
    if (f->type == CFG_STRING) {
        snprintf(field_ptr(cfg, f), f->size, "%s", f->def);
        return SL_OK;
    }
    if (f->type == CFG_STRLIST)
        return set_list_from_csv(field_ptr(cfg, f), f->def, f, "defaults");
    if (f->type == CFG_ENUM) {
        *(int *)field_ptr(cfg, f) = choice_index(f->choices, f->def);
        return SL_OK;
    }
    cJSON *v = cJSON_Parse(f->def);
    sl_status st = field_set_json(cfg, f, v, "defaults");
    cJSON_Delete(v);
    return st;
}

void config_defaults(sl_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < cfg_schema_count; i++)
        (void)apply_default(cfg, &cfg_schema[i]);
}

/* value must be one of the '|'-separated words of choices. */
static sl_status check_choice(const char *key, const char *value, const char *choices) {
    size_t n = strlen(value);
    for (const char *c = choices; *c;) {
        const char *end = strchr(c, '|');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len == n && strncmp(c, value, n) == 0)
            return SL_OK;
        c += len + (end ? 1 : 0);
    }
    return sl_errorf(SL_ERR_INVALID, "\"%s\" must be one of %s, got \"%s\"", key, choices, value);
}

sl_status config_apply_objective(sl_config *cfg) {
    if (cfg->train.objective == TRAIN_OBJECTIVE_REWARD)
        cfg->model.head = MODEL_HEAD_SCORE;
    if (cfg->model.head == MODEL_HEAD_SCORE)
        cfg->model.tie_embeddings = false; /* no LM head to tie */
    /* a pair objective (dpo, reward) reads pair shards, sft documents */
    bool pairs = cfg->train.objective != TRAIN_OBJECTIVE_SFT;
    char obj[64]; /* config_enum_name's buffer is reused by the next call */
    snprintf(obj, sizeof obj, "%s", config_enum_name("train.objective", cfg->train.objective));
    if (pairs && cfg->data.mode != DATA_MODE_PAIRS) {
        if (config_is_set(cfg, "data.mode"))
            return sl_errorf(SL_ERR_INVALID,
                             "train.objective = %s trains on preference pairs but \"data.mode\" = %s: set "
                             "data.mode = pairs (or leave it unset) and point data.train at pair shards "
                             "(shardlm prepare with chosen/rejected fields)",
                             obj, config_enum_name("data.mode", cfg->data.mode));
        cfg->data.mode = DATA_MODE_PAIRS;
    }
    if (!pairs && cfg->data.mode == DATA_MODE_PAIRS)
        return sl_errorf(SL_ERR_INVALID,
                         "\"data.mode\" = pairs loads preference pairs for train.objective = dpo or "
                         "reward; train.objective = %s trains token cross-entropy: set train.objective = "
                         "dpo or reward, or data.mode = sft|pretrain with document shards",
                         obj);
    return SL_OK;
}

/* The model section's cross-field checks (config_finalize). */
static sl_status finalize_model(cfg_model *m, int seq_len) {
    bool ll = config_arch_llama_like(m->arch);
    const char *arch = config_enum_name("model.arch", m->arch);
    if (m->n_kv_head == 0)
        m->n_kv_head = m->n_head;
    if (m->head_dim == 0 && m->d_model % m->n_head != 0)
        return sl_errorf(SL_ERR_INVALID,
                         "\"model.d_model\" = %d must be divisible by \"model.n_head\" = %d (or set "
                         "\"model.head_dim\")",
                         m->d_model, m->n_head);
    if (m->n_head % m->n_kv_head != 0)
        return sl_errorf(SL_ERR_INVALID,
                         "\"model.n_kv_head\" = %d must divide \"model.n_head\" = %d", m->n_kv_head,
                         m->n_head);
    if (!ll) {
        if (m->n_kv_head != m->n_head)
            return sl_errorf(SL_ERR_INVALID,
                             "\"model.n_kv_head\" = %d: gpt2 has no grouped-query attention (use %d or 0)",
                             m->n_kv_head, m->n_head);
        if (m->head_dim != 0 && m->head_dim * m->n_head != m->d_model)
            return sl_errorf(SL_ERR_INVALID,
                             "\"model.head_dim\" = %d: gpt2's heads split d_model %d (use 0)",
                             m->head_dim, m->d_model);
        if (m->rope_scaling != ROPE_SCALING_NONE || m->sliding_window != 0)
            return sl_errorf(SL_ERR_INVALID,
                             "gpt2 has no RoPE or sliding window: \"model.rope_scaling\" must be none "
                             "and \"model.sliding_window\" 0");
    }
    if (ll && config_head_dim(m) % 2 != 0)
        return sl_errorf(SL_ERR_INVALID, "%s head dim %d must be even for RoPE", arch, config_head_dim(m));
    if (m->rope_scaling == ROPE_SCALING_LLAMA3 && !(m->rope_high_freq_factor > m->rope_low_freq_factor))
        return sl_errorf(SL_ERR_INVALID,
                         "\"model.rope_high_freq_factor\" = %g must exceed \"model.rope_low_freq_factor\" "
                         "= %g (llama3 rope scaling)",
                         m->rope_high_freq_factor, m->rope_low_freq_factor);
    if (m->d_ff == 0) {
        if (ll)
            return sl_errorf(SL_ERR_INVALID, "\"model.d_ff\" must be set for %s (e.g. %d)", arch,
                             ((8 * m->d_model / 3) + 255) / 256 * 256);
        m->d_ff = 4 * m->d_model;
    }
    if (seq_len > m->max_seq_len)
        return sl_errorf(SL_ERR_INVALID,
                         "\"data.seq_len\" = %d exceeds \"model.max_seq_len\" = %d", seq_len,
                         m->max_seq_len);
    if (m->sliding_window > 0 && seq_len > m->sliding_window)
        return sl_errorf(SL_ERR_INVALID,
                         "\"data.seq_len\" = %d exceeds \"model.sliding_window\" = %d: shardlm's attention "
                         "is full causal, which equals sliding-window attention only while a sequence "
                         "fits in the window; use data.seq_len <= %d",
                         seq_len, m->sliding_window, m->sliding_window);
    return SL_OK;
}

sl_status config_finalize(sl_config *cfg) {
    SL_TRY(config_apply_objective(cfg));
    SL_TRY(finalize_model(&cfg->model, cfg->data.seq_len));
    /* The default floor (3e-5) is for the default peak (3e-4): below it,
     * as fine-tuning rates are, the floor follows the peak at the same
     * ratio unless the user set it. */
    if (cfg->optim.lr_min > cfg->optim.lr && !config_is_set(cfg, "optim.lr_min"))
        cfg->optim.lr_min = 0.1 * cfg->optim.lr;
    if (cfg->optim.lr_min > cfg->optim.lr)
        return sl_errorf(SL_ERR_INVALID, "\"optim.lr_min\" = %g exceeds \"optim.lr\" = %g",
                         cfg->optim.lr_min, cfg->optim.lr);
    if (cfg->prepare.minhash_perms % cfg->prepare.minhash_bands != 0)
        return sl_errorf(SL_ERR_INVALID,
                         "\"prepare.minhash_bands\" = %d must divide \"prepare.minhash_perms\" = %d",
                         cfg->prepare.minhash_bands, cfg->prepare.minhash_perms);
    SL_TRY(check_choice("logging.level", cfg->logging.level, "debug|info|warn|error"));
    SL_TRY(check_choice("prepare.format", cfg->prepare.format, "auto|text|jsonl"));
    return check_choice("prepare.chat_template", cfg->prepare.chat_template,
                        "auto|chatml|qwen3|llama3|llama2|mistral|inst|gemma");
}

static cJSON *field_to_json(const sl_config *cfg, const cfg_field *f) {
    const void *p = field_cptr(cfg, f);
    char buf[64];
    switch (f->type) {
    case CFG_INT:
        return cJSON_CreateNumber(*(const int *)p);
    case CFG_I64:
        return cJSON_CreateNumber((double)*(const int64_t *)p);
    case CFG_FLOAT:
        return cJSON_CreateNumber(*(const double *)p);
    case CFG_BOOL:
        return cJSON_CreateBool(*(const bool *)p);
    case CFG_STRING:
        return cJSON_CreateString(p);
    case CFG_ENUM:
        return cJSON_CreateString(choice_name(f->choices, *(const int *)p, buf, sizeof buf));
    case CFG_STRLIST: {
        const cfg_strlist *l = p;
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < l->n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(l->items[i]));
        return arr;
    }
    }
    return cJSON_CreateNull();
}

static cJSON *config_to_cjson(const sl_config *cfg, const char *only_section) {
    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; i < cfg_schema_count; i++) {
        const cfg_field *f = &cfg_schema[i];
        const char *dot = strchr(f->path, '.');
        char sec[64];
        size_t sl = (size_t)(dot - f->path);
        memcpy(sec, f->path, sl);
        sec[sl] = 0;
        if (only_section && *only_section && strcmp(sec, only_section) != 0)
            continue;
        cJSON *s = cJSON_GetObjectItemCaseSensitive(root, sec);
        if (!s)
            s = cJSON_AddObjectToObject(root, sec);
        cJSON_AddItemToObject(s, dot + 1, field_to_json(cfg, f));
    }
    return root;
}

char *config_to_json(const sl_config *cfg) {
    cJSON *root = config_to_cjson(cfg, NULL);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

sl_status config_write_file(const sl_config *cfg, const char *path) {
    char *s = config_to_json(cfg);
    if (!s)
        return sl_errorf(SL_ERR_NOMEM, "cannot serialize config");
    size_t n = strlen(s);
    s[n] = '\n';
    sl_status st = fs_write_atomic(path, s, n + 1);
    free(s);
    return st;
}

void config_hash(const sl_config *cfg, const char *section, char out[17]) {
    cJSON *root = config_to_cjson(cfg, section);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    uint64_t h = fs_hash64(s, strlen(s));
    free(s);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

const char *config_enum_name(const char *path, int value) {
    const cfg_field *f = field_find(path);
    if (!f || f->type != CFG_ENUM)
        return "?";
    static _Thread_local char buf[64];
    return choice_name(f->choices, value, buf, sizeof buf);
}

void config_print_keys(void *file) {
    FILE *fp = file;
    fprintf(fp, "| key | type | default | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < cfg_schema_count; i++) {
        const cfg_field *f = &cfg_schema[i];
        const char *t = "";
        switch (f->type) {
        case CFG_INT:
        case CFG_I64:
            t = "int";
            break;
        case CFG_FLOAT:
            t = "float";
            break;
        case CFG_BOOL:
            t = "bool";
            break;
        case CFG_STRING:
            t = "string";
            break;
        case CFG_ENUM:
            t = f->choices;
            break;
        case CFG_STRLIST:
            t = "list";
            break;
        }
        fprintf(fp, "| `%s` | ", f->path);
        for (const char *c = t; *c; c++) { /* escape '|' in choices for Markdown */
            if (*c == '|')
                fputs("\\|", fp);
            else
                fputc(*c, fp);
        }
        fprintf(fp, " | `%s` | %s |\n", f->def, f->doc);
    }
}
