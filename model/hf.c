/* model/hf.c: Hugging Face config.json and safetensors <-> layout (see hf.h). */
#include "model/hf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "model/hf_internal.h"
#include "runtime/safetensors.h"

/* ---- config.json ---- */

typedef struct {
    const cJSON *root;
    const char *path;
} jcfg;

static const cJSON *jget(const jcfg *j, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j->root, key);
    return cJSON_IsNull(x) ? NULL : x;
}

static sl_status jint(const jcfg *j, const char *key, int *out, bool required, int def) {
    const cJSON *x = jget(j, key);
    if (!x) {
        if (required)
            return sl_errorf(SL_ERR_FORMAT, "%s: required key \"%s\" is missing", j->path, key);
        *out = def;
        return SL_OK;
    }
    if (!cJSON_IsNumber(x) || x->valuedouble != (double)(int)x->valuedouble || x->valuedouble < 0)
        return sl_errorf(SL_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer", j->path, key);
    *out = (int)x->valuedouble;
    return SL_OK;
}

static sl_status jnum(const jcfg *j, const char *key, double *out, double def) {
    const cJSON *x = jget(j, key);
    if (!x) {
        *out = def;
        return SL_OK;
    }
    if (!cJSON_IsNumber(x))
        return sl_errorf(SL_ERR_FORMAT, "%s: \"%s\" must be a number", j->path, key);
    *out = x->valuedouble;
    return SL_OK;
}

static sl_status jbool(const jcfg *j, const char *key, bool *out, bool def) {
    const cJSON *x = jget(j, key);
    if (!x) {
        *out = def;
        return SL_OK;
    }
    if (!cJSON_IsBool(x))
        return sl_errorf(SL_ERR_FORMAT, "%s: \"%s\" must be true or false", j->path, key);
    *out = cJSON_IsTrue(x);
    return SL_OK;
}

static sl_status read_gpt2(const jcfg *j, cfg_model *c) {
    c->arch = MODEL_ARCH_GPT2;
    SL_TRY(jint(j, "n_layer", &c->n_layer, true, 0));
    SL_TRY(jint(j, "n_embd", &c->d_model, true, 0));
    SL_TRY(jint(j, "n_head", &c->n_head, true, 0));
    SL_TRY(jint(j, "n_inner", &c->d_ff, false, 4 * c->d_model));
    SL_TRY(jint(j, "vocab_size", &c->vocab_size, true, 0));
    int npos = 0;
    SL_TRY(jint(j, "n_ctx", &npos, false, 1024));
    SL_TRY(jint(j, "n_positions", &c->max_seq_len, false, npos));
    SL_TRY(jnum(j, "layer_norm_epsilon", &c->norm_eps, 1e-5));
    SL_TRY(jbool(j, "tie_word_embeddings", &c->tie_embeddings, true));
    c->n_kv_head = c->n_head;
    const cJSON *act = jget(j, "activation_function");
    if (act && (!cJSON_IsString(act) || (strcmp(act->valuestring, "gelu_new") != 0 &&
                                         strcmp(act->valuestring, "gelu_pytorch_tanh") != 0)))
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: activation_function %s is not supported (shardlm's gpt2 uses the tanh "
                         "GELU: gelu_new or gelu_pytorch_tanh)",
                         j->path, cJSON_IsString(act) ? act->valuestring : "(not a string)");
    return SL_OK;
}

/* A number member key of the object obj (named what in messages). */
static sl_status obj_num(const jcfg *j, const cJSON *obj, const char *what, const char *key, double *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(x))
        return sl_errorf(SL_ERR_FORMAT, "%s: %s.%s must be a number (%s)", j->path, what, key,
                         x ? "not a number" : "missing");
    *out = x->valuedouble;
    return SL_OK;
}

/* rope_scaling (transformers v4) or rope_parameters (v5): rope_type (or the
 * older "type") default, linear (factor) or llama3 (factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings), as transformers'
 * ROPE_INIT_FUNCTIONS reads them. The other types change the frequencies in
 * ways shardlm does not compute, so they are refused. */
static sl_status read_rope_obj(const jcfg *j, const cJSON *obj, const char *what, cfg_model *c) {
    if (!cJSON_IsObject(obj))
        return sl_errorf(SL_ERR_FORMAT, "%s: %s must be an object or null", j->path, what);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "rope_type");
    if (!t)
        t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : t ? "(not a string)" : "default";
    c->rope_scaling = ROPE_SCALING_NONE;
    if (strcmp(type, "default") == 0)
        return SL_OK;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling = ROPE_SCALING_LINEAR;
        return obj_num(j, obj, what, "factor", &c->rope_factor);
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_scaling = ROPE_SCALING_LLAMA3;
        double omax = 0;
        SL_TRY(obj_num(j, obj, what, "factor", &c->rope_factor));
        SL_TRY(obj_num(j, obj, what, "low_freq_factor", &c->rope_low_freq_factor));
        SL_TRY(obj_num(j, obj, what, "high_freq_factor", &c->rope_high_freq_factor));
        SL_TRY(obj_num(j, obj, what, "original_max_position_embeddings", &omax));
        if (omax < 1 || omax != (double)(int)omax)
            return sl_errorf(SL_ERR_FORMAT, "%s: %s.original_max_position_embeddings must be a positive integer",
                             j->path, what);
        c->rope_original_max_pos = (int)omax;
        return SL_OK;
    }
    return sl_errorf(SL_ERR_UNSUPPORTED,
                     "%s: %s with rope_type %s is not supported (shardlm computes default, linear and "
                     "llama3 RoPE frequencies; dynamic, yarn, longrope and the rest are refused rather "
                     "than approximated)",
                     j->path, what, type);
}

/* The llama-like families (config_arch_llama_like): llama, mistral, qwen2
 * (q/k/v biases), qwen3 (q/k norms; head_dim defaults to 128 as in
 * transformers' Qwen3Config). */
static sl_status read_llama(const jcfg *j, cfg_model *c, model_arch arch) {
    c->arch = arch;
    SL_TRY(jint(j, "num_hidden_layers", &c->n_layer, true, 0));
    SL_TRY(jint(j, "hidden_size", &c->d_model, true, 0));
    SL_TRY(jint(j, "num_attention_heads", &c->n_head, true, 0));
    SL_TRY(jint(j, "num_key_value_heads", &c->n_kv_head, false, c->n_head));
    SL_TRY(jint(j, "intermediate_size", &c->d_ff, true, 0));
    SL_TRY(jint(j, "vocab_size", &c->vocab_size, true, 0));
    SL_TRY(jint(j, "max_position_embeddings", &c->max_seq_len, false, 2048));
    SL_TRY(jnum(j, "rms_norm_eps", &c->norm_eps, 1e-6));
    SL_TRY(jbool(j, "tie_word_embeddings", &c->tie_embeddings, false));
    SL_TRY(jint(j, "head_dim", &c->head_dim, false, arch == MODEL_ARCH_QWEN3 ? 128 : 0));
    const cJSON *rp = jget(j, "rope_parameters");
    if (rp) {
        SL_TRY(read_rope_obj(j, rp, "rope_parameters", c));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rp, "rope_theta");
        if (!cJSON_IsNumber(t))
            return sl_errorf(SL_ERR_FORMAT, "%s: rope_parameters.rope_theta must be a number", j->path);
        c->rope_theta = t->valuedouble;
    } else {
        SL_TRY(jnum(j, "rope_theta", &c->rope_theta, 10000.0));
        const cJSON *rs = jget(j, "rope_scaling");
        if (rs)
            SL_TRY(read_rope_obj(j, rs, "rope_scaling", c));
    }
    /* qwen2's q/k/v biases are part of the architecture (no config key);
     * any other bias would be a tensor the layout lacks */
    static const char *const no_bias[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2 && arch != MODEL_ARCH_QWEN2; i++) {
        bool b = false;
        SL_TRY(jbool(j, no_bias[i], &b, false));
        if (b)
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: %s = true is not supported (%s has no such biases in shardlm; qwen2's "
                             "q/k/v biases are its own architecture)",
                             j->path, no_bias[i], config_enum_name("model.arch", arch));
    }
    const cJSON *act = jget(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: hidden_act must be \"silu\"", j->path);
    /* sliding-window attention: Mistral v0.1 always, Qwen only with
     * use_sliding_window; config_finalize refuses sequences longer than it */
    bool use_window = arch == MODEL_ARCH_MISTRAL;
    if (arch == MODEL_ARCH_QWEN2 || arch == MODEL_ARCH_QWEN3)
        SL_TRY(jbool(j, "use_sliding_window", &use_window, false));
    c->sliding_window = 0;
    if (use_window)
        SL_TRY(jint(j, "sliding_window", &c->sliding_window, false, 0));
    return SL_OK;
}

/* architectures naming a *ForSequenceClassification: a score head, which
 * shardlm has for num_labels 1 only (id2label of one entry, or num_labels
 * 1); anything else an LM head. pad_token_id: a number, or none. */
static sl_status read_head(const jcfg *j, cfg_model *c) {
    const cJSON *a = jget(j, "architectures");
    const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : "";
    const char *suffix = "ForSequenceClassification";
    size_t n = strlen(arch), k = strlen(suffix);
    c->head = n > k && strcmp(arch + n - k, suffix) == 0 ? MODEL_HEAD_SCORE : MODEL_HEAD_LM;
    if (c->head == MODEL_HEAD_SCORE) {
        int labels = 2; /* PretrainedConfig's default num_labels */
        const cJSON *id2 = jget(j, "id2label");
        if (cJSON_IsObject(id2))
            labels = cJSON_GetArraySize(id2);
        else
            SL_TRY(jint(j, "num_labels", &labels, false, 2));
        if (labels != 1)
            return sl_errorf(SL_ERR_UNSUPPORTED,
                             "%s: %s with %d labels: shardlm's score head is a reward model's single "
                             "output (num_labels 1, one id2label entry)",
                             j->path, arch, labels);
    }
    int pad = -1;
    const cJSON *pt = jget(j, "pad_token_id");
    if (pt && !cJSON_IsArray(pt))
        SL_TRY(jint(j, "pad_token_id", &pad, false, -1));
    c->pad_token_id = pad;
    return SL_OK;
}

sl_status hf_read_config(const char *dir, cfg_model *cfg, hf_info *info) {
    char path[PATH_CAP];
    SL_TRY(fs_join(path, sizeof path, dir, "config.json"));
    char *text = NULL;
    size_t len = 0;
    SL_TRY(fs_read_file(path, &text, &len, 16u << 20));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sl_errorf(SL_ERR_FORMAT, "%s: not a JSON object", path);
    }
    jcfg j = {root, path};
    const cJSON *mt = jget(&j, "model_type");
    sl_status st = SL_OK;
    char type[32] = "";
    if (!cJSON_IsString(mt)) {
        st = sl_errorf(SL_ERR_FORMAT, "%s: \"model_type\" (a string) is missing", path);
    } else {
        snprintf(type, sizeof type, "%s", mt->valuestring);
        if (strcmp(type, "gpt2") == 0)
            st = read_gpt2(&j, cfg);
        else if (strcmp(type, "llama") == 0)
            st = read_llama(&j, cfg, MODEL_ARCH_LLAMA);
        else if (strcmp(type, "mistral") == 0)
            st = read_llama(&j, cfg, MODEL_ARCH_MISTRAL);
        else if (strcmp(type, "qwen2") == 0)
            st = read_llama(&j, cfg, MODEL_ARCH_QWEN2);
        else if (strcmp(type, "qwen3") == 0)
            st = read_llama(&j, cfg, MODEL_ARCH_QWEN3);
        else
            st = sl_errorf(SL_ERR_UNSUPPORTED,
                           "%s: model_type \"%s\" is not supported (gpt2, llama, mistral, qwen2, qwen3)",
                           path, type);
    }
    if (st == SL_OK)
        st = jnum(&j, "initializer_range", &cfg->init_std, cfg->init_std);
    if (st == SL_OK)
        st = read_head(&j, cfg);
    cJSON_Delete(root);
    if (st == SL_OK && info) {
        memset(info, 0, sizeof *info);
        snprintf(info->model_type, sizeof info->model_type, "%s", type);
    }
    return st;
}

/* The rope_scaling object of c (transformers v4 form), or JSON null. */
static cJSON *rope_scaling_json(const cfg_model *c) {
    if (c->rope_scaling == ROPE_SCALING_NONE)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool l3 = c->rope_scaling == ROPE_SCALING_LLAMA3;
    cJSON_AddStringToObject(o, "rope_type", l3 ? "llama3" : "linear");
    cJSON_AddNumberToObject(o, "factor", c->rope_factor);
    if (l3) {
        cJSON_AddNumberToObject(o, "low_freq_factor", c->rope_low_freq_factor);
        cJSON_AddNumberToObject(o, "high_freq_factor", c->rope_high_freq_factor);
        cJSON_AddNumberToObject(o, "original_max_position_embeddings", c->rope_original_max_pos);
    }
    return o;
}

/* transformers' class per model_arch (model_type is config_enum_name's):
 * the causal LM, and the sequence classifier of a score model. */
static const char *const HF_CLASS[] = {"GPT2LMHeadModel", "LlamaForCausalLM", "Qwen2ForCausalLM",
                                       "Qwen3ForCausalLM", "MistralForCausalLM"};
static const char *const HF_SCORE_CLASS[] = {"GPT2ForSequenceClassification", "LlamaForSequenceClassification",
                                             "Qwen2ForSequenceClassification", "Qwen3ForSequenceClassification",
                                             "MistralForSequenceClassification"};

char *hf_config_json(const cfg_model *c) {
    cJSON *r = cJSON_CreateObject();
    if (!r)
        return NULL;
    bool score = c->head == MODEL_HEAD_SCORE;
    const char *cls = score ? HF_SCORE_CLASS[c->arch] : HF_CLASS[c->arch];
    cJSON_AddItemToObject(r, "architectures", cJSON_CreateStringArray((const char *[]){cls}, 1));
    cJSON_AddStringToObject(r, "model_type", config_enum_name("model.arch", c->arch));
    if (c->arch == MODEL_ARCH_GPT2) {
        cJSON_AddNumberToObject(r, "n_layer", c->n_layer);
        cJSON_AddNumberToObject(r, "n_embd", c->d_model);
        cJSON_AddNumberToObject(r, "n_head", c->n_head);
        cJSON_AddNumberToObject(r, "n_inner", c->d_ff);
        cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(r, "n_positions", c->max_seq_len);
        cJSON_AddNumberToObject(r, "layer_norm_epsilon", c->norm_eps);
        cJSON_AddStringToObject(r, "activation_function", "gelu_new");
    } else {
        cJSON_AddNumberToObject(r, "num_hidden_layers", c->n_layer);
        cJSON_AddNumberToObject(r, "hidden_size", c->d_model);
        cJSON_AddNumberToObject(r, "num_attention_heads", c->n_head);
        cJSON_AddNumberToObject(r, "num_key_value_heads", c->n_kv_head);
        /* Qwen3Config's default head_dim is 128, not hidden / heads: always explicit there */
        if (c->head_dim > 0 || c->arch == MODEL_ARCH_QWEN3)
            cJSON_AddNumberToObject(r, "head_dim", config_head_dim(c));
        cJSON_AddNumberToObject(r, "intermediate_size", c->d_ff);
        cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
        cJSON_AddNumberToObject(r, "max_position_embeddings", c->max_seq_len);
        cJSON_AddNumberToObject(r, "rms_norm_eps", c->norm_eps);
        cJSON_AddNumberToObject(r, "rope_theta", c->rope_theta);
        if (c->rope_scaling != ROPE_SCALING_NONE)
            cJSON_AddItemToObject(r, "rope_scaling", rope_scaling_json(c));
        cJSON_AddStringToObject(r, "hidden_act", "silu");
        if (c->arch == MODEL_ARCH_LLAMA || c->arch == MODEL_ARCH_QWEN3)
            cJSON_AddFalseToObject(r, "attention_bias");
        if (c->arch == MODEL_ARCH_LLAMA)
            cJSON_AddFalseToObject(r, "mlp_bias");
        if (c->arch == MODEL_ARCH_QWEN2 || c->arch == MODEL_ARCH_QWEN3)
            cJSON_AddBoolToObject(r, "use_sliding_window", c->sliding_window > 0);
        if (c->arch != MODEL_ARCH_LLAMA) {
            if (c->sliding_window > 0)
                cJSON_AddNumberToObject(r, "sliding_window", c->sliding_window);
            else
                cJSON_AddNullToObject(r, "sliding_window");
        }
    }
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddNumberToObject(r, "initializer_range", c->init_std);
    if (score) {
        /* num_labels 1 as PretrainedConfig.to_dict writes it: id2label and
         * label2id (num_labels is derived from them, not stored) */
        cJSON *id2 = cJSON_AddObjectToObject(r, "id2label");
        cJSON *l2id = cJSON_AddObjectToObject(r, "label2id");
        if (id2)
            cJSON_AddStringToObject(id2, "0", "LABEL_0");
        if (l2id)
            cJSON_AddNumberToObject(l2id, "LABEL_0", 0);
    }
    if (c->pad_token_id >= 0)
        cJSON_AddNumberToObject(r, "pad_token_id", c->pad_token_id);
    else if (score)
        cJSON_AddNullToObject(r, "pad_token_id");
    char *s = cJSON_Print(r);
    cJSON_Delete(r);
    return s;
}

sl_status hf_write_text(const char *dir, const char *name, const char *text) {
    char path[PATH_CAP];
    SL_TRY(fs_join(path, sizeof path, dir, name));
    return fs_write_atomic(path, text, strlen(text));
}

/* ---- tensors ---- */

static bool skippable(const char *name) {
    size_t n = strlen(name);
#define ENDS(s) (n >= sizeof(s) - 1 && strcmp(name + n - (sizeof(s) - 1), s) == 0)
    return ENDS(".attn.bias") || ENDS(".attn.masked_bias") || ENDS("rotary_emb.inv_freq");
#undef ENDS
}

/* dst (c, r) = src (r, c)^T for elements of esz bytes. */
void hf_transpose_raw(void *dst, const void *src, int64_t r, int64_t c, size_t esz) {
    const char *s = src;
    char *d = dst;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++)
            memcpy(d + ((size_t)(j * r + i)) * esz, s + ((size_t)(i * c + j)) * esz, esz);
}

void hf_to_f32(float *dst, const void *src, sl_dtype dt, size_t n) {
    if (dt == SL_DTYPE_F32)
        memcpy(dst, src, n * 4);
    else if (dt == SL_DTYPE_BF16)
        f32_from_bf16_array(dst, src, n);
    else
        f32_from_f16_array(dst, src, n);
}

/* Expected file shape of parameter p: HF orientation or shardlm's. */
void hf_file_shape(const model_param *p, bool hf, int64_t shape[2]) {
    bool t = hf && p->hf_transposed;
    shape[0] = t ? p->shape[1] : p->shape[0];
    shape[1] = t ? p->shape[0] : p->shape[1];
}

sl_status hf_check_tensor(const safetensors_tensor *t, const model_param *p, bool hf,
                              const char *file) {
    int64_t want[2];
    hf_file_shape(p, hf, want);
    bool ok = t->ndim == p->ndim && t->shape[0] == want[0] && (p->ndim == 1 || t->shape[1] == want[1]);
    if (!ok)
        return sl_errorf(SL_ERR_FORMAT,
                         "%s: tensor %s has shape [%lld%s%lld] with %d dims, the model config needs "
                         "[%lld, %lld] (1-D: [%lld]); does config.json match the weights?",
                         file, t->name, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                         t->ndim > 1 ? (long long)t->shape[1] : 0LL, t->ndim, (long long)want[0],
                         (long long)want[1], (long long)want[0]);
    if (t->dtype != SL_DTYPE_F32 && t->dtype != SL_DTYPE_BF16 && t->dtype != SL_DTYPE_F16)
        return sl_errorf(SL_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; parameters must be F32, BF16 or F16",
                         file, t->name, dtype_name(t->dtype));
    return SL_OK;
}

void hf_file_name(const model_param *p, bool hf, const char *prefix, char *out, size_t cap) {
    bool pre = hf && p->role != MODEL_ROLE_SCORE;
    snprintf(out, cap, "%s%s", pre ? prefix : "", hf ? p->hf_name : p->name);
}

const char *hf_write_prefix(const model_layout *l, const char *given) {
    if (l->fin.score_w >= 0 && l->cfg.arch == MODEL_ARCH_GPT2)
        return "transformer.";
    return given ? given : "";
}

/* Finds parameter p in ix under prefix + name (hf) or its shardlm name. */
const safetensors_tensor *hf_find_param(const safetensors_index *ix, const model_param *p, bool hf,
                                            const char *prefix) {
    char name[2 * MODEL_NAME_MAX];
    hf_file_name(p, hf, prefix, name, sizeof name);
    return safetensors_index_find(ix, name, NULL);
}

/* Every tensor of ix must be a parameter, a tied duplicate or skippable. */
sl_status hf_check_extras(const safetensors_index *ix, const model_layout *l, bool hf,
                              const char *prefix, const char *dir) {
    size_t plen = strlen(prefix);
    for (int i = 0; i < safetensors_index_count(ix); i++) {
        const char *n = safetensors_index_get(ix, i)->name;
        if (hf && skippable(n))
            continue;
        const char *bare = hf && plen && strncmp(n, prefix, plen) == 0 ? n + plen : n;
        int k = hf ? model_layout_find_hf(l, bare) : model_layout_find(l, n);
        if (k < 0 && hf && l->cfg.tie_embeddings && strcmp(n, "lm_head.weight") == 0)
            continue; /* a tied head saved anyway: checked equal to wte by the caller */
        if (k < 0 && hf && l->fin.score_w >= 0 && strcmp(n, "lm_head.weight") == 0)
            continue; /* a causal LM read as a reward model: its LM head is dropped */
        if (k < 0)
            return sl_errorf(SL_ERR_FORMAT,
                             "%s: tensor %s is not a parameter of this %s model (n_layer %d, %s head); "
                             "check config.json",
                             dir, n, config_enum_name("model.arch", l->cfg.arch), l->cfg.n_layer,
                             l->cfg.tie_embeddings ? "tied" : "untied");
    }
    return SL_OK;
}

sl_status hf_detect_prefix(const safetensors_index *ix, const model_layout *l, char *prefix, size_t cap) {
    prefix[0] = 0;
    if (l->cfg.arch != MODEL_ARCH_GPT2)
        return SL_OK;
    char name[2 * MODEL_NAME_MAX];
    snprintf(name, sizeof name, "transformer.%s", l->params[0].hf_name);
    if (safetensors_index_find(ix, name, NULL))
        snprintf(prefix, cap, "transformer.");
    return SL_OK;
}

/* The whole model into host: hf_stream.h's reader over every unit. */
static sl_status load_from(const char *dir, const model_layout *l, float *host, bool hf, hf_info *info) {
    hf_reader *r = NULL;
    SL_TRY(hf_reader_open_as(dir, l, hf, &r));
    sl_status st = SL_OK;
    for (int u = 0; u < l->n_units && st == SL_OK; u++)
        st = hf_reader_range(r, u, 0, l->units[u].numel, host + l->units[u].offset);
    if (info)
        *info = hf_reader_info(r);
    hf_reader_close(r);
    return st;
}

sl_status hf_load_params(const char *dir, const model_layout *l, float *host, hf_info *info) {
    return load_from(dir, l, host, true, info);
}

/* ---- writing ---- */

int hf_cmp_named(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

void hf_from_f32(void *dst, const float *src, sl_dtype dt, size_t n) {
    if (dt == SL_DTYPE_F32)
        memcpy(dst, src, n * 4);
    else if (dt == SL_DTYPE_BF16)
        bf16_from_f32_array(dst, src, n);
    else
        f16_from_f32_array(dst, src, n);
}

/* Writes the params of l to path, one tensor in memory at a time. Data for
 * each tensor comes from fill(ctx, p, buf), which fills buf (numel * esz
 * bytes) in file orientation. */
typedef sl_status (*fill_fn)(void *ctx, const model_param *p, void *buf);

static sl_status write_weights(const char *path, const model_layout *l, bool hf, const char *prefix,
                               sl_dtype (*dtype_of)(void *ctx, const model_param *p), fill_fn fill,
                               void *ctx, const char *const *meta) {
    named *order = calloc((size_t)l->n_params, sizeof *order);
    safetensors_writer *w = safetensors_writer_create();
    safetensors_stream *s = NULL;
    sl_status st = SL_OK;
    if (!order || !w)
        st = sl_errorf(SL_ERR_NOMEM, "out of memory preparing %s", path);
    for (int i = 0; i < l->n_params && st == SL_OK; i++) {
        order[i].p = &l->params[i];
        hf_file_name(&l->params[i], hf, prefix, order[i].name, sizeof order[i].name);
    }
    if (st == SL_OK)
        qsort(order, (size_t)l->n_params, sizeof *order, hf_cmp_named);
    for (int k = 0; meta && meta[k] && st == SL_OK; k += 2)
        st = safetensors_writer_set_metadata(w, meta[k], meta[k + 1]);
    for (int i = 0; i < l->n_params && st == SL_OK; i++) {
        int64_t shape[2];
        hf_file_shape(order[i].p, hf, shape);
        st = safetensors_writer_add_planned(w, order[i].name, dtype_of(ctx, order[i].p), order[i].p->ndim, shape);
    }
    if (st == SL_OK)
        st = safetensors_stream_open(w, path, &s);
    for (int i = 0; i < l->n_params && st == SL_OK; i++) {
        const model_param *p = order[i].p;
        size_t bytes = (size_t)p->numel * dtype_size(dtype_of(ctx, p));
        void *buf = malloc(bytes ? bytes : 1);
        if (!buf) {
            st = sl_errorf(SL_ERR_NOMEM, "out of memory for %s (%zu bytes)", order[i].name, bytes);
            break;
        }
        st = fill(ctx, p, buf);
        if (st == SL_OK)
            st = safetensors_stream_put(s, i, buf);
        free(buf);
    }
    if (st == SL_OK) {
        st = safetensors_stream_close(s);
        s = NULL;
    }
    safetensors_stream_abort(s);
    safetensors_writer_destroy(w);
    free(order);
    return st;
}

sl_status hf_save(const char *dir, const model_layout *l, const float *host, sl_dtype dtype,
                  const char *prefix) {
    hf_writer *w = NULL;
    SL_TRY(hf_writer_open(dir, l, dtype, prefix ? prefix : "", 0, &w));
    sl_status st = SL_OK;
    for (int u = 0; u < l->n_units && st == SL_OK; u++)
        st = hf_writer_put_unit(w, u, host + l->units[u].offset);
    if (st != SL_OK) {
        hf_writer_abort(w);
        return st;
    }
    return hf_writer_close(w);
}

/* ---- import / export: raw bytes, dtype kept ---- */

typedef struct {
    const safetensors_index *ix;
    bool src_hf;
    const char *prefix;
} raw_ctx;

static const safetensors_tensor *raw_find(raw_ctx *c, const model_param *p) {
    return hf_find_param(c->ix, p, c->src_hf, c->prefix);
}

static sl_dtype raw_dtype(void *ctx, const model_param *p) {
    return raw_find(ctx, p)->dtype;
}

static sl_status raw_fill(void *ctx, const model_param *p, void *buf) {
    const safetensors_tensor *t = raw_find(ctx, p);
    if (!p->hf_transposed) {
        memcpy(buf, t->data, t->nbytes);
        return SL_OK;
    }
    /* source orientation: HF (in, out) when importing, shardlm (out, in) when exporting */
    int64_t r = t->shape[0], c = t->shape[1];
    hf_transpose_raw(buf, t->data, r, c, dtype_size(t->dtype));
    return SL_OK;
}

static sl_status missing_param(const char *dir, const model_param *p, bool hf, const char *prefix) {
    char name[2 * MODEL_NAME_MAX];
    hf_file_name(p, hf, prefix, name, sizeof name);
    if (p->role == MODEL_ROLE_SCORE)
        return sl_errorf(SL_ERR_FORMAT,
                         "%s: parameter %s is missing: a reward model (model.head = score) needs the "
                         "score head of a *ForSequenceClassification folder (train.objective = reward "
                         "initializes a fresh one from a causal LM)",
                         dir, name);
    return sl_errorf(SL_ERR_FORMAT, "%s: parameter %s is missing", dir, name);
}

static sl_status open_checked(const char *dir, const model_layout *l, bool hf, safetensors_index **ix,
                              char *prefix, size_t cap) {
    char wpath[PATH_CAP];
    SL_TRY(fs_join(wpath, sizeof wpath, dir, MODEL_DIR_WEIGHTS));
    SL_TRY(safetensors_index_open(hf ? dir : wpath, ix));
    sl_status st = hf_detect_prefix(*ix, l, prefix, cap);
    if (st == SL_OK)
        st = hf_check_extras(*ix, l, hf, prefix, dir);
    for (int i = 0; i < l->n_params && st == SL_OK; i++) {
        const safetensors_tensor *t = hf_find_param(*ix, &l->params[i], hf, prefix);
        if (!t)
            st = missing_param(dir, &l->params[i], hf, prefix);
        else
            st = hf_check_tensor(t, &l->params[i], hf, dir);
    }
    if (st != SL_OK) {
        safetensors_index_close(*ix);
        *ix = NULL;
    }
    return st;
}

/* Lowers data.seq_len to what the model takes (max_seq_len, sliding_window),
 * so that the default 256 does not reject a small model. */
static void fit_seq_len(sl_config *cfg) {
    const cfg_model *m = &cfg->model;
    if (cfg->data.seq_len > m->max_seq_len)
        cfg->data.seq_len = m->max_seq_len;
    if (m->sliding_window > 0 && cfg->data.seq_len > m->sliding_window)
        cfg->data.seq_len = m->sliding_window;
}

static char *model_section_json(const cfg_model *m) {
    sl_config full;
    config_defaults(&full);
    full.model = *m;
    full.model.init_from[0] = 0;
    fit_seq_len(&full);
    char *all = config_to_json(&full);
    if (!all)
        return NULL;
    cJSON *root = cJSON_Parse(all);
    free(all);
    if (!root)
        return NULL;
    cJSON *out = cJSON_CreateObject();
    cJSON *model = cJSON_DetachItemFromObjectCaseSensitive(root, "model");
    cJSON_Delete(root);
    if (!out || !model) {
        cJSON_Delete(out);
        cJSON_Delete(model);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(model, "init_from");
    cJSON_AddItemToObject(out, "model", model);
    /* usable as --config on its own: the default data.seq_len may exceed a small model's */
    cJSON *data = cJSON_AddObjectToObject(out, "data");
    if (data)
        cJSON_AddNumberToObject(data, "seq_len", full.data.seq_len);
    char *s = cJSON_Print(out);
    cJSON_Delete(out);
    return s;
}

sl_status hf_import(const char *hf_dir, const char *out_dir) {
    sl_config cfg;
    config_defaults(&cfg);
    hf_info info;
    SL_TRY(hf_read_config(hf_dir, &cfg.model, &info));
    fit_seq_len(&cfg);
    SL_TRY(config_finalize(&cfg));
    model_layout *l = NULL;
    SL_TRY(model_layout_create(&cfg.model, false, &l));
    safetensors_index *ix = NULL;
    char prefix[32];
    char *hf_text = NULL, *sj = NULL;
    size_t len = 0;
    char path[PATH_CAP];
    sl_status st = open_checked(hf_dir, l, true, &ix, prefix, sizeof prefix);
    if (st == SL_OK)
        st = fs_join(path, sizeof path, hf_dir, "config.json");
    if (st == SL_OK)
        st = fs_read_file(path, &hf_text, &len, 16u << 20);
    if (st == SL_OK)
        st = fs_mkdirs(out_dir);
    if (st == SL_OK) {
        sj = model_section_json(&cfg.model);
        st = sj ? hf_write_text(out_dir, MODEL_DIR_CONFIG, sj) : sl_errorf(SL_ERR_NOMEM, "out of memory");
    }
    if (st == SL_OK)
        st = fs_join(path, sizeof path, out_dir, MODEL_DIR_WEIGHTS);
    if (st == SL_OK) {
        raw_ctx c = {ix, true, prefix};
        const char *const meta[] = {"format", "pt", "shardlm_format", "1", "hf_model_type", info.model_type,
                                    "hf_prefix", prefix, "hf_config", hf_text, NULL};
        st = write_weights(path, l, false, "", raw_dtype, raw_fill, &c, meta);
    }
    free(sj);
    free(hf_text);
    safetensors_index_close(ix);
    model_layout_destroy(l);
    return st;
}

sl_status model_config_from_dir(const char *dir, sl_config *cfg) {
    char path[PATH_CAP];
    SL_TRY(fs_join(path, sizeof path, dir, MODEL_DIR_CONFIG));
    if (fs_exists(path))
        SL_TRY(config_load_file(cfg, path));
    else
        SL_TRY(hf_read_config(dir, &cfg->model, NULL));
    fit_seq_len(cfg); /* the default must not reject a small model */
    return config_finalize(cfg);
}

sl_status hf_export(const char *model_dir, const char *hf_dir) {
    char path[PATH_CAP];
    SL_TRY(fs_join(path, sizeof path, model_dir, MODEL_DIR_CONFIG));
    if (!fs_exists(path))
        return sl_errorf(SL_ERR_INVALID,
                         "%s has no %s: not a shardlm model folder (shardlm import writes one)",
                         model_dir, MODEL_DIR_CONFIG);
    sl_config cfg;
    config_defaults(&cfg);
    SL_TRY(model_config_from_dir(model_dir, &cfg));
    model_layout *l = NULL;
    SL_TRY(model_layout_create(&cfg.model, false, &l));
    safetensors_index *ix = NULL;
    char unused[32];
    sl_status st = open_checked(model_dir, l, false, &ix, unused, sizeof unused);
    const safetensors_file *f = st == SL_OK ? safetensors_index_shard(ix, 0) : NULL;
    if (st == SL_OK)
        st = fs_mkdirs(hf_dir);
    if (st == SL_OK) {
        const char *hc = safetensors_metadata(f, "hf_config");
        char *gen = hc ? NULL : hf_config_json(&cfg.model);
        if (!hc && !gen)
            st = sl_errorf(SL_ERR_NOMEM, "out of memory");
        else
            st = hf_write_text(hf_dir, "config.json", hc ? hc : gen);
        free(gen);
    }
    if (st == SL_OK)
        st = fs_join(path, sizeof path, hf_dir, MODEL_DIR_WEIGHTS);
    if (st == SL_OK) {
        const char *pf = safetensors_metadata(f, "hf_prefix");
        raw_ctx c = {ix, false, ""};
        static const char *const meta[] = {"format", "pt", NULL};
        st = write_weights(path, l, true, hf_write_prefix(l, pf), raw_dtype, raw_fill, &c, meta);
    }
    safetensors_index_close(ix);
    model_layout_destroy(l);
    return st;
}

sl_status model_weights_load(const char *dir, const model_layout *l, float *host) {
    char path[PATH_CAP];
    SL_TRY(fs_join(path, sizeof path, dir, MODEL_DIR_CONFIG));
    return load_from(dir, l, host, !fs_exists(path), NULL);
}
