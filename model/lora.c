/* model/lora.c: the adapter layout, merging, and PEFT adapter files
 * (see lora.h for the formats). */
#include "model/lora.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"

/* Module paths inside a block, per architecture (NULL: no such module). */
static const char *const LLAMA_MOD[LORA_MOD_COUNT] = {
    NULL, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
static const char *const GPT2_MOD[LORA_MOD_COUNT] = {
    "attn.c_attn", NULL, NULL, NULL, "attn.c_proj", "mlp.c_fc", NULL, "mlp.c_proj"};

static const char *mod_name(model_arch arch, lora_module m) {
    return arch == MODEL_ARCH_GPT2 ? GPT2_MOD[m] : LLAMA_MOD[m];
}

const char *lora_module_path(const model_layout *base, lora_module m, int layer, char *buf,
                             size_t cap) {
    const char *n = mod_name(base->cfg.arch, m);
    if (!n)
        return NULL;
    if (base->cfg.arch == MODEL_ARCH_GPT2)
        snprintf(buf, cap, "transformer.h.%d.%s", layer, n);
    else
        snprintf(buf, cap, "model.layers.%d.%s", layer, n);
    return buf;
}

/* PEFT's list matching: key == target or key ends with "." + target. */
static bool target_matches(const char *path, const char *t) {
    size_t lp = strlen(path), lt = strlen(t);
    if (lp == lt)
        return strcmp(path, t) == 0;
    return lp > lt && path[lp - lt - 1] == '.' && strcmp(path + lp - lt, t) == 0;
}

static void valid_targets(model_arch arch, char *buf, size_t cap) {
    buf[0] = 0;
    for (int m = 0; m < LORA_MOD_COUNT; m++) {
        const char *n = mod_name(arch, (lora_module)m);
        if (n)
            snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", buf[0] ? ", " : "",
                     strchr(n, '.') + 1);
    }
    snprintf(buf + strlen(buf), cap - strlen(buf), ", all-linear");
}

/* base weight offset in a block unit, its (out, in) */
static void base_site(const model_layout *b, lora_module m, lora_site *s) {
    const model_block_offsets *o = &b->block;
    const cfg_model *c = &b->cfg;
    int64_t C = c->d_model, F = c->d_ff, HD = (int64_t)b->head_dim * c->n_head;
    int64_t KD = (int64_t)b->head_dim * c->n_kv_head;
    switch (m) {
    case LORA_MOD_QKV: s->base_w = o->q_w, s->out = 3 * C, s->in = C; break;
    case LORA_MOD_Q: s->base_w = o->q_w, s->out = HD, s->in = C; break;
    case LORA_MOD_K: s->base_w = o->k_w, s->out = KD, s->in = C; break;
    case LORA_MOD_V: s->base_w = o->v_w, s->out = KD, s->in = C; break;
    case LORA_MOD_OUT: s->base_w = o->out_w, s->out = C, s->in = HD; break;
    case LORA_MOD_FC: s->base_w = o->fc_w, s->out = F, s->in = C; break;
    case LORA_MOD_UP: s->base_w = o->up_w, s->out = F, s->in = C; break;
    case LORA_MOD_PROJ: s->base_w = o->proj_w, s->out = C, s->in = F; break;
    default: break;
    }
}

/* Base parameter index of module m in block `layer`. */
static int base_param(const model_layout *b, lora_module m, int layer) {
    lora_site s;
    memset(&s, 0, sizeof s);
    base_site(b, m, &s);
    const model_unit *u = &b->units[layer + 1];
    for (int i = u->first_param; i < u->first_param + u->n_params; i++)
        if (b->params[i].offset == s.base_w)
            return i;
    return -1;
}

void lora_destroy(lora_spec *s) {
    if (!s)
        return;
    model_layout_destroy(s->layout);
    free(s);
}

static sl_status build(lora_spec *s) {
    const model_layout *b = s->base;
    model_layout *l = s->layout;
    int L = b->cfg.n_layer, cap = l->n_params;
    l->n_params = 0;
    for (int u = 0; u < l->n_units; u++)
        l->units[u] = (model_unit){0};
    for (int layer = 0; layer < L; layer++) {
        const model_unit *u = &l->units[layer + 1];
        for (int m = 0; m < LORA_MOD_COUNT; m++) {
            lora_site *st = &s->site[m];
            if (!st->on)
                continue;
            int bp = base_param(b, (lora_module)m, layer);
            if (bp < 0)
                return sl_errorf(SL_ERR_INTERNAL, "lora: no base weight for module %d", m);
            char path[MODEL_NAME_MAX], n[MODEL_NAME_MAX + 16], h[MODEL_NAME_MAX + 48];
            lora_module_path(b, (lora_module)m, layer, path, sizeof path);
            /* A (r, in) then B (out, r); every block has them at the same offsets */
            const struct {
                char ab;
                model_role role;
                int64_t d0, d1;
                int64_t *off;
            } t[2] = {{'A', MODEL_ROLE_LORA_A, s->r, st->in, &st->a},
                      {'B', MODEL_ROLE_LORA_B, st->out, s->r, &st->b}};
            for (int k = 0; k < 2; k++) {
                if (layer == 0)
                    *t[k].off = u->numel;
                snprintf(n, sizeof n, "%s.lora_%c", b->params[bp].name, t[k].ab);
                snprintf(h, sizeof h, "base_model.model.%s.lora_%c.weight", path, t[k].ab);
                SL_TRY(model_layout_append_param(l, cap, layer + 1, t[k].role, true, false, t[k].d0,
                                                 t[k].d1, n, h));
            }
        }
    }
    model_layout_place_units(l);
    return SL_OK;
}

sl_status lora_create(const model_layout *base, const cfg_lora *cfg, lora_spec **out) {
    *out = NULL;
    model_arch arch = base->cfg.arch;
    SL_CHECK_ARG(cfg->r >= 1, "\"lora.r\" = %d must be >= 1", cfg->r);
    SL_CHECK_ARG(cfg->dropout >= 0.0 && cfg->dropout < 1.0,
                 "\"lora.dropout\" = %g must be in [0, 1) (the probability of zeroing an adapter input)",
                 cfg->dropout);
    SL_CHECK_ARG(cfg->targets.n >= 1, "\"lora.targets\" is empty: name the modules to adapt");
    lora_spec *s = calloc(1, sizeof *s);
    SL_CHECK_ALLOC(s, sizeof *s);
    s->cfg = *cfg;
    s->base = base;
    s->r = cfg->r;
    s->scale = (float)(cfg->rslora ? cfg->alpha / sqrt((double)cfg->r) : cfg->alpha / cfg->r);
    for (int t = 0; t < cfg->targets.n; t++) {
        const char *tg = cfg->targets.items[t];
        bool any = false;
        for (int m = 0; m < LORA_MOD_COUNT; m++) {
            const char *n = mod_name(arch, (lora_module)m);
            if (n && (strcmp(tg, "all-linear") == 0 || target_matches(n, tg))) {
                s->site[m].on = true;
                any = true;
            }
        }
        if (!any) {
            char valid[256];
            valid_targets(arch, valid, sizeof valid);
            lora_destroy(s);
            return sl_errorf(SL_ERR_INVALID,
                             "\"lora.targets\" item \"%s\" matches no %s module; valid: %s", tg,
                             config_enum_name("model.arch", arch), valid);
        }
    }
    for (int m = 0; m < LORA_MOD_COUNT; m++) {
        s->site[m].a = s->site[m].b = -1;
        base_site(base, (lora_module)m, &s->site[m]);
    }
    s->layout = calloc(1, sizeof *s->layout);
    sl_status st = s->layout ? SL_OK : sl_errorf(SL_ERR_NOMEM, "out of memory (lora layout)");
    if (st == SL_OK) {
        model_layout *l = s->layout;
        l->cfg = base->cfg;
        l->head_dim = base->head_dim;
        l->n_units = base->n_units;
        l->n_params = 2 * LORA_MOD_COUNT * base->cfg.n_layer;
        l->params = calloc((size_t)l->n_params, sizeof *l->params);
        l->units = calloc((size_t)l->n_units, sizeof *l->units);
        l->block = base->block;
        l->fin = base->fin;
        if (!l->params || !l->units)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory (lora layout of %d params)", l->n_params);
    }
    if (st == SL_OK)
        st = build(s);
    if (st != SL_OK) {
        lora_destroy(s);
        return st;
    }
    *out = s;
    return SL_OK;
}

/* splitmix64's finalizer: a bijection on 64 bits that mixes every input bit
 * into every output bit. */
static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t lora_dropout_seed(uint64_t seed, int64_t step, int layer, lora_module m) {
    uint64_t h = mix64(seed ^ mix64((uint64_t)step));
    return mix64(h ^ (((uint64_t)(uint32_t)layer << 8) | (uint64_t)m));
}

sl_status lora_merge(const lora_spec *s, float *base_host, const float *adapter_host) {
    const model_layout *b = s->base, *a = s->layout;
    int r = s->r;
    for (int u = 1; u <= b->cfg.n_layer; u++) { /* the block units */
        int64_t boff = b->units[u].offset, aoff = a->units[u].offset;
        for (int m = 0; m < LORA_MOD_COUNT; m++) {
            const lora_site *st = &s->site[m];
            if (!st->on)
                continue;
            float *W = base_host + boff + st->base_w;  /* (out, in) */
            const float *A = adapter_host + aoff + st->a; /* (r, in) */
            const float *B = adapter_host + aoff + st->b; /* (out, r) */
            /* W += s B A in double, rounded once */
            for (int64_t o = 0; o < st->out; o++)
                for (int64_t i = 0; i < st->in; i++) {
                    double acc = 0;
                    for (int k = 0; k < r; k++)
                        acc += (double)B[o * r + k] * (double)A[(int64_t)k * st->in + i];
                    W[o * st->in + i] = (float)((double)W[o * st->in + i] + s->scale * acc);
                }
        }
    }
    return SL_OK;
}

/* ---- PEFT files ---- */

static sl_status read_json(const char *path, cJSON **out) {
    char *text = NULL;
    size_t len = 0;
    SL_TRY(fs_read_file(path, &text, &len, (size_t)16 << 20));
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!*out)
        return sl_errorf(SL_ERR_FORMAT, "%s: not valid JSON", path);
    return SL_OK;
}

sl_status lora_peft_read_config(const char *dir, model_arch arch, cfg_lora *cfg) {
    char path[CFG_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_CONFIG);
    cJSON *j = NULL;
    SL_TRY(read_json(path, &j));
    sl_status st = SL_OK;
    const cJSON *x;
#define BAD(...) (st = sl_errorf(SL_ERR_FORMAT, __VA_ARGS__))
    x = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (!cJSON_IsString(x) || strcmp(x->valuestring, "LORA") != 0)
        BAD("%s: \"peft_type\" must be \"LORA\"", path);
    x = cJSON_GetObjectItemCaseSensitive(j, "r");
    if (st == SL_OK && (!cJSON_IsNumber(x) || x->valuedouble < 1 || x->valuedouble != floor(x->valuedouble)))
        BAD("%s: \"r\" must be a positive integer", path);
    else if (st == SL_OK)
        cfg->r = (int)x->valuedouble;
    x = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    if (st == SL_OK && !cJSON_IsNumber(x))
        BAD("%s: \"lora_alpha\" must be a number", path);
    else if (st == SL_OK)
        cfg->alpha = x->valuedouble;
    x = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    if (st == SL_OK)
        cfg->rslora = cJSON_IsTrue(x);
    x = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    if (st == SL_OK && x && !cJSON_IsNull(x) &&
        (!cJSON_IsNumber(x) || !(x->valuedouble >= 0.0 && x->valuedouble < 1.0)))
        BAD("%s: \"lora_dropout\" must be a number in [0, 1)", path);
    else if (st == SL_OK)
        cfg->dropout = cJSON_IsNumber(x) ? x->valuedouble : 0.0;
    x = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (st == SL_OK && x && !cJSON_IsNull(x) && (!cJSON_IsString(x) || strcmp(x->valuestring, "none") != 0))
        BAD("%s: \"bias\" must be \"none\" (adapter biases are not supported)", path);
    x = cJSON_GetObjectItemCaseSensitive(j, "use_dora");
    if (st == SL_OK && cJSON_IsTrue(x))
        BAD("%s: \"use_dora\" is true; DoRA is not supported", path);
    const char *pats[] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2 && st == SL_OK; i++) {
        x = cJSON_GetObjectItemCaseSensitive(j, pats[i]);
        if (x && !cJSON_IsNull(x) && cJSON_GetArraySize(x) > 0)
            BAD("%s: \"%s\" is not empty; per-module ranks and alphas are not supported", path, pats[i]);
    }
    x = cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out");
    if (st == SL_OK && x && cJSON_IsTrue(x) != (arch == MODEL_ARCH_GPT2))
        BAD("%s: \"fan_in_fan_out\" is %s but the base model is %s (true exactly for GPT-2's Conv1D)",
            path, cJSON_IsTrue(x) ? "true" : "false", config_enum_name("model.arch", arch));
    x = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    if (st == SL_OK) {
        if (cJSON_IsString(x)) {
            if (strcmp(x->valuestring, "all-linear") != 0)
                BAD("%s: \"target_modules\" as a regular expression is not supported; give a list",
                    path);
            else {
                cfg->targets.n = 1;
                snprintf(cfg->targets.items[0], CFG_STR_MAX, "all-linear");
            }
        } else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) >= 1 && cJSON_GetArraySize(x) <= CFG_LIST_MAX) {
            cfg->targets.n = 0;
            const cJSON *it;
            cJSON_ArrayForEach(it, x) {
                if (!cJSON_IsString(it)) {
                    BAD("%s: \"target_modules\" items must be strings", path);
                    break;
                }
                snprintf(cfg->targets.items[cfg->targets.n++], CFG_STR_MAX, "%s", it->valuestring);
            }
        } else {
            BAD("%s: \"target_modules\" must be a list of 1..%d module names", path, CFG_LIST_MAX);
        }
    }
#undef BAD
    cJSON_Delete(j);
    return st;
}

sl_status lora_peft_save(const char *dir, const lora_spec *s, const float *adapter_host,
                         const char *base_model) {
    SL_TRY(fs_mkdirs(dir));
    cJSON *j = cJSON_CreateObject();
    SL_CHECK_ALLOC(j, 64);
    /* PEFT expands only the string "all-linear"; in a list it is a module name */
    bool all_linear = false;
    for (int i = 0; i < s->cfg.targets.n; i++)
        all_linear |= strcmp(s->cfg.targets.items[i], "all-linear") == 0;
    cJSON *tm = all_linear ? cJSON_CreateString("all-linear") : cJSON_CreateArray();
    for (int i = 0; i < s->cfg.targets.n && tm && !all_linear; i++)
        cJSON_AddItemToArray(tm, cJSON_CreateString(s->cfg.targets.items[i]));
    bool ok = tm != NULL;
    if (base_model && base_model[0])
        ok = ok && cJSON_AddStringToObject(j, "base_model_name_or_path", base_model);
    else
        ok = ok && cJSON_AddNullToObject(j, "base_model_name_or_path");
    ok = ok && cJSON_AddStringToObject(j, "bias", "none");
    ok = ok && cJSON_AddBoolToObject(j, "fan_in_fan_out", s->base->cfg.arch == MODEL_ARCH_GPT2);
    ok = ok && cJSON_AddBoolToObject(j, "inference_mode", true);
    ok = ok && cJSON_AddBoolToObject(j, "init_lora_weights", true);
    ok = ok && cJSON_AddNumberToObject(j, "lora_alpha", s->cfg.alpha);
    ok = ok && cJSON_AddNumberToObject(j, "lora_dropout", s->cfg.dropout);
    ok = ok && cJSON_AddStringToObject(j, "peft_type", "LORA");
    ok = ok && cJSON_AddNumberToObject(j, "r", s->r);
    if (ok)
        cJSON_AddItemToObject(j, "target_modules", tm);
    else
        cJSON_Delete(tm);
    ok = ok && cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    ok = ok && cJSON_AddBoolToObject(j, "use_dora", false);
    ok = ok && cJSON_AddBoolToObject(j, "use_rslora", s->cfg.rslora);
    char *text = ok ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        return sl_errorf(SL_ERR_NOMEM, "out of memory writing %s", LORA_PEFT_CONFIG);
    char path[CFG_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_CONFIG);
    size_t n = strlen(text);
    text[n] = 0;
    sl_status st = fs_write_atomic(path, text, n);
    cJSON_free(text);
    SL_TRY(st);
    /* tensors sorted by name, as PEFT's save_file output reads back */
    const model_layout *l = s->layout;
    int *order = malloc(sizeof(int) * (size_t)(l->n_params ? l->n_params : 1));
    SL_CHECK_ALLOC(order, sizeof(int) * (size_t)l->n_params);
    for (int i = 0; i < l->n_params; i++)
        order[i] = i;
    for (int i = 1; i < l->n_params; i++)
        for (int k = i; k > 0 && strcmp(l->params[order[k - 1]].hf_name, l->params[order[k]].hf_name) > 0; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    safetensors_writer *w = safetensors_writer_create();
    st = w ? SL_OK : sl_errorf(SL_ERR_NOMEM, "out of memory writing %s", LORA_PEFT_WEIGHTS);
    for (int i = 0; i < l->n_params && st == SL_OK; i++) {
        const model_param *p = &l->params[order[i]];
        st = safetensors_writer_add(w, p->hf_name, SL_DTYPE_F32, 2, p->shape,
                                    adapter_host + l->units[p->unit].offset + p->offset);
    }
    if (st == SL_OK)
        st = safetensors_writer_set_metadata(w, "format", "pt");
    snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_WEIGHTS);
    if (st == SL_OK)
        st = safetensors_writer_write(w, path);
    safetensors_writer_destroy(w);
    free(order);
    return st;
}

sl_status lora_peft_load(const char *dir, const lora_spec *s, float *adapter_host) {
    char path[CFG_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, LORA_PEFT_WEIGHTS);
    safetensors_file *f = NULL;
    SL_TRY(safetensors_open(path, &f));
    const model_layout *l = s->layout;
    sl_status st = SL_OK;
    for (int i = 0; i < l->n_params && st == SL_OK; i++) {
        const model_param *p = &l->params[i];
        const safetensors_tensor *t = safetensors_find(f, p->hf_name);
        if (!t) {
            st = sl_errorf(SL_ERR_FORMAT, "%s: tensor %s is missing (is lora.targets/r the adapter's?)",
                           path, p->hf_name);
            break;
        }
        if (t->ndim != 2 || t->shape[0] != p->shape[0] || t->shape[1] != p->shape[1]) {
            st = sl_errorf(SL_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]",
                           path, p->hf_name, (long long)t->shape[0], (long long)t->shape[1],
                           (long long)p->shape[0], (long long)p->shape[1]);
            break;
        }
        float *dst = adapter_host + l->units[p->unit].offset + p->offset;
        size_t n = (size_t)p->numel;
        if (t->dtype == SL_DTYPE_F32) {
            memcpy(dst, t->data, n * sizeof(float));
        } else if (t->dtype == SL_DTYPE_BF16 || t->dtype == SL_DTYPE_F16) {
            uint16_t *tmp = malloc(n * sizeof *tmp);
            if (!tmp) {
                st = sl_errorf(SL_ERR_NOMEM, "out of memory converting %s", p->hf_name);
                break;
            }
            memcpy(tmp, t->data, n * sizeof *tmp);
            if (t->dtype == SL_DTYPE_BF16)
                f32_from_bf16_array(dst, tmp, n);
            else
                f32_from_f16_array(dst, tmp, n);
            free(tmp);
        } else {
            st = sl_errorf(SL_ERR_FORMAT, "%s: tensor %s has dtype %s; F32, BF16 or F16 expected", path,
                           p->hf_name, dtype_name(t->dtype));
        }
    }
    if (st == SL_OK && safetensors_count(f) != l->n_params) {
        for (int i = 0; i < safetensors_count(f); i++) {
            const char *n = safetensors_get(f, i)->name;
            if (model_layout_find_hf(l, n) < 0) {
                st = sl_errorf(SL_ERR_FORMAT,
                               "%s: tensor %s is not an adapter of this configuration (lora.targets "
                               "or the base model differ from the adapter's)",
                               path, n);
                break;
            }
        }
    }
    safetensors_close(f);
    return st;
}
