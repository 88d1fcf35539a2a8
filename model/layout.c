/* model/layout.c: builds the parameter table (see layout.h for the order and
 * names) and the deterministic initialization. */
#include "model/layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"
#include "runtime/rng.h"

#define LAYOUT_TWO_PI 6.283185307179586 /* Python's 2 * math.pi */

typedef struct {
    model_layout *l;
    int cap;
    int unit; /* the unit being filled */
} builder;

sl_status model_layout_append_param(model_layout *l, int cap, int unit, model_role role, bool decay,
                                    bool hf_transposed, int64_t d0, int64_t d1, const char *name,
                                    const char *hf_name) {
    if (l->n_params >= cap)
        return sl_errorf(SL_ERR_INTERNAL, "layout: parameter table overflow at %s", name);
    model_unit *u = &l->units[unit];
    model_param *p = &l->params[l->n_params++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->hf_name, sizeof p->hf_name, "%s", hf_name);
    p->ndim = d1 > 0 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1 > 0 ? d1 : 0;
    p->numel = d1 > 0 ? d0 * d1 : d0;
    p->unit = unit;
    p->offset = u->numel;
    p->decay = decay;
    p->hf_transposed = hf_transposed;
    p->role = role;
    if (u->n_params == 0)
        u->first_param = l->n_params - 1;
    u->n_params++;
    u->numel += p->numel;
    return SL_OK;
}

void model_layout_place_units(model_layout *l) {
    l->total_numel = 0;
    for (int u = 0; u < l->n_units; u++) {
        l->units[u].offset = l->total_numel;
        l->total_numel += l->units[u].numel;
    }
}

static sl_status add_param(builder *b, model_role role, bool decay, bool hf_t, int64_t d0,
                           int64_t d1, const char *name, const char *hf_name) {
    return model_layout_append_param(b->l, b->cap, b->unit, role, decay, hf_t, d0, d1, name, hf_name);
}

static void next_unit(builder *b) { b->unit++; }

/* Unit L+1's head after the final norm (which ends at offset off): the
 * untied LM head, nothing (tied), or the score head of model.head = score. */
static sl_status add_head(builder *b, int64_t off) {
    const cfg_model *c = &b->l->cfg;
    int64_t C = c->d_model, V = c->vocab_size;
    b->l->fin.head_w = -1;
    b->l->fin.score_w = -1;
    if (c->head == MODEL_HEAD_SCORE) {
        b->l->fin.score_w = off;
        return add_param(b, MODEL_ROLE_SCORE, true, false, 1, C, "final.score.weight", "score.weight");
    }
    if (!c->tie_embeddings) {
        b->l->fin.head_w = off;
        return add_param(b, MODEL_ROLE_HEAD, true, false, V, C, "final.head.weight", "lm_head.weight");
    }
    return SL_OK;
}

#define NM(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

static sl_status build_gpt2(builder *b, bool de) {
    const cfg_model *c = &b->l->cfg;
    int64_t C = c->d_model, F = c->d_ff, V = c->vocab_size, P = c->max_seq_len;
    model_layout *l = b->l;
    SL_TRY(add_param(b, MODEL_ROLE_WTE, de, false, V, C, "embed.wte", "wte.weight"));
    SL_TRY(add_param(b, MODEL_ROLE_WPE, de, false, P, C, "embed.wpe", "wpe.weight"));
    l->fin.wte = 0;
    l->fin.wpe = V * C;
    char n[MODEL_NAME_MAX], h[MODEL_NAME_MAX];
    for (int i = 0; i < c->n_layer; i++) {
        next_unit(b);
#define P2(role, dec, t, d0, d1, sn, hn)                                     \
    do {                                                                     \
        NM(n, "blocks.%d.%s", i, sn);                                        \
        NM(h, "h.%d.%s", i, hn);                                             \
        SL_TRY(add_param(b, role, dec, t, d0, d1, n, h));                    \
    } while (0)
        P2(MODEL_ROLE_NORM_WEIGHT, false, false, C, 0, "ln1.weight", "ln_1.weight");
        P2(MODEL_ROLE_NORM_BIAS, false, false, C, 0, "ln1.bias", "ln_1.bias");
        P2(MODEL_ROLE_LINEAR_WEIGHT, true, true, 3 * C, C, "attn.qkv.weight", "attn.c_attn.weight");
        P2(MODEL_ROLE_LINEAR_BIAS, false, false, 3 * C, 0, "attn.qkv.bias", "attn.c_attn.bias");
        P2(MODEL_ROLE_RESID_WEIGHT, true, true, C, C, "attn.out.weight", "attn.c_proj.weight");
        P2(MODEL_ROLE_LINEAR_BIAS, false, false, C, 0, "attn.out.bias", "attn.c_proj.bias");
        P2(MODEL_ROLE_NORM_WEIGHT, false, false, C, 0, "ln2.weight", "ln_2.weight");
        P2(MODEL_ROLE_NORM_BIAS, false, false, C, 0, "ln2.bias", "ln_2.bias");
        P2(MODEL_ROLE_LINEAR_WEIGHT, true, true, F, C, "mlp.fc.weight", "mlp.c_fc.weight");
        P2(MODEL_ROLE_LINEAR_BIAS, false, false, F, 0, "mlp.fc.bias", "mlp.c_fc.bias");
        P2(MODEL_ROLE_RESID_WEIGHT, true, true, C, F, "mlp.proj.weight", "mlp.c_proj.weight");
        P2(MODEL_ROLE_LINEAR_BIAS, false, false, C, 0, "mlp.proj.bias", "mlp.c_proj.bias");
#undef P2
    }
    model_block_offsets *o = &l->block;
    int64_t x = 0;
    o->ln1_w = x, x += C;
    o->ln1_b = x, x += C;
    o->q_w = x, o->k_w = x + C * C, o->v_w = x + 2 * C * C, x += 3 * C * C;
    o->q_b = x, o->k_b = x + C, o->v_b = x + 2 * C, x += 3 * C;
    o->out_w = x, x += C * C;
    o->out_b = x, x += C;
    o->ln2_w = x, x += C;
    o->ln2_b = x, x += C;
    o->fc_w = x, x += F * C;
    o->fc_b = x, x += F;
    o->up_w = -1;
    o->q_norm = o->k_norm = -1;
    o->proj_w = x, x += C * F;
    o->proj_b = x;
    next_unit(b);
    SL_TRY(add_param(b, MODEL_ROLE_NORM_WEIGHT, false, false, C, 0, "final.norm.weight", "ln_f.weight"));
    SL_TRY(add_param(b, MODEL_ROLE_NORM_BIAS, false, false, C, 0, "final.norm.bias", "ln_f.bias"));
    l->fin.norm_w = 0;
    l->fin.norm_b = C;
    return add_head(b, 2 * C);
}

/* Llama-like blocks (llama, mistral, qwen2, qwen3). Block unit order: ln1,
 * q, k, v, [qwen2: q, k, v biases], [qwen3: q_norm, k_norm], out, ln2,
 * gate, up, down (llama's and mistral's units are the original llama order). */
static sl_status build_llama(builder *b, bool de) {
    const cfg_model *c = &b->l->cfg;
    int64_t C = c->d_model, F = c->d_ff, V = c->vocab_size;
    int64_t D = b->l->head_dim, HD = D * c->n_head, KD = D * c->n_kv_head;
    bool bias = c->arch == MODEL_ARCH_QWEN2, qk_norm = c->arch == MODEL_ARCH_QWEN3;
    model_layout *l = b->l;
    SL_TRY(add_param(b, MODEL_ROLE_WTE, de, false, V, C, "embed.wte", "model.embed_tokens.weight"));
    l->fin.wte = 0;
    l->fin.wpe = -1;
    char n[MODEL_NAME_MAX], h[MODEL_NAME_MAX];
    for (int i = 0; i < c->n_layer; i++) {
        next_unit(b);
#define P2(role, dec, d0, d1, sn, hn)                                        \
    do {                                                                     \
        NM(n, "blocks.%d.%s", i, sn);                                        \
        NM(h, "model.layers.%d.%s", i, hn);                                  \
        SL_TRY(add_param(b, role, dec, false, d0, d1, n, h));                \
    } while (0)
        P2(MODEL_ROLE_NORM_WEIGHT, false, C, 0, "ln1.weight", "input_layernorm.weight");
        P2(MODEL_ROLE_LINEAR_WEIGHT, true, HD, C, "attn.q.weight", "self_attn.q_proj.weight");
        P2(MODEL_ROLE_LINEAR_WEIGHT, true, KD, C, "attn.k.weight", "self_attn.k_proj.weight");
        P2(MODEL_ROLE_LINEAR_WEIGHT, true, KD, C, "attn.v.weight", "self_attn.v_proj.weight");
        if (bias) {
            P2(MODEL_ROLE_LINEAR_BIAS, false, HD, 0, "attn.q.bias", "self_attn.q_proj.bias");
            P2(MODEL_ROLE_LINEAR_BIAS, false, KD, 0, "attn.k.bias", "self_attn.k_proj.bias");
            P2(MODEL_ROLE_LINEAR_BIAS, false, KD, 0, "attn.v.bias", "self_attn.v_proj.bias");
        }
        if (qk_norm) {
            P2(MODEL_ROLE_NORM_WEIGHT, false, D, 0, "attn.q_norm.weight", "self_attn.q_norm.weight");
            P2(MODEL_ROLE_NORM_WEIGHT, false, D, 0, "attn.k_norm.weight", "self_attn.k_norm.weight");
        }
        P2(MODEL_ROLE_RESID_WEIGHT, true, C, HD, "attn.out.weight", "self_attn.o_proj.weight");
        P2(MODEL_ROLE_NORM_WEIGHT, false, C, 0, "ln2.weight", "post_attention_layernorm.weight");
        P2(MODEL_ROLE_LINEAR_WEIGHT, true, F, C, "mlp.gate.weight", "mlp.gate_proj.weight");
        P2(MODEL_ROLE_LINEAR_WEIGHT, true, F, C, "mlp.up.weight", "mlp.up_proj.weight");
        P2(MODEL_ROLE_RESID_WEIGHT, true, C, F, "mlp.down.weight", "mlp.down_proj.weight");
#undef P2
    }
    model_block_offsets *o = &l->block;
    int64_t x = 0;
    o->ln1_w = x, x += C;
    o->ln1_b = -1;
    o->q_w = x, x += HD * C;
    o->k_w = x, x += KD * C;
    o->v_w = x, x += KD * C;
    o->q_b = o->k_b = o->v_b = -1;
    if (bias) {
        o->q_b = x, x += HD;
        o->k_b = x, x += KD;
        o->v_b = x, x += KD;
    }
    o->q_norm = o->k_norm = -1;
    if (qk_norm) {
        o->q_norm = x, x += D;
        o->k_norm = x, x += D;
    }
    o->out_w = x, x += C * HD;
    o->out_b = -1;
    o->ln2_w = x, x += C;
    o->ln2_b = -1;
    o->fc_w = x, x += F * C;
    o->fc_b = -1;
    o->up_w = x, x += F * C;
    o->proj_w = x;
    o->proj_b = -1;
    next_unit(b);
    SL_TRY(add_param(b, MODEL_ROLE_NORM_WEIGHT, false, false, C, 0, "final.norm.weight", "model.norm.weight"));
    l->fin.norm_w = 0;
    l->fin.norm_b = -1;
    return add_head(b, C);
}

static sl_status check_cfg(const cfg_model *c) {
    SL_CHECK_ARG(c->n_layer >= 1 && c->d_model >= 1 && c->n_head >= 1 && c->vocab_size >= 2 &&
                     c->max_seq_len >= 1 && c->head_dim >= 0,
                 "model config: n_layer, d_model, n_head, vocab_size and max_seq_len must be positive");
    SL_CHECK_ARG(c->head_dim > 0 || c->d_model % c->n_head == 0,
                 "model config: d_model %d is not divisible by n_head %d", c->d_model, c->n_head);
    SL_CHECK_ARG(c->n_kv_head >= 1 && c->n_head % c->n_kv_head == 0,
                 "model config: n_kv_head %d must divide n_head %d (run config_finalize first)",
                 c->n_kv_head, c->n_head);
    SL_CHECK_ARG(c->d_ff >= 1, "model config: d_ff is %d (run config_finalize first)", c->d_ff);
    if (c->arch == MODEL_ARCH_GPT2)
        SL_CHECK_ARG(c->n_kv_head == c->n_head && config_head_dim(c) * c->n_head == c->d_model,
                     "model config: gpt2 needs n_kv_head == n_head and head_dim == d_model / n_head");
    else
        SL_CHECK_ARG(config_head_dim(c) % 2 == 0, "model config: head dim %d must be even for RoPE",
                     config_head_dim(c));
    return SL_OK;
}

sl_status model_layout_create(const cfg_model *cfg, bool decay_embeddings, model_layout **out) {
    *out = NULL;
    SL_TRY(check_cfg(cfg));
    model_layout *l = calloc(1, sizeof *l);
    SL_CHECK_ALLOC(l, sizeof *l);
    l->cfg = *cfg;
    l->head_dim = config_head_dim(cfg);
    l->n_units = cfg->n_layer + 2;
    int cap = 16 * cfg->n_layer + 8;
    l->params = calloc((size_t)cap, sizeof *l->params);
    l->units = calloc((size_t)l->n_units, sizeof *l->units);
    if (!l->params || !l->units) {
        model_layout_destroy(l);
        return sl_errorf(SL_ERR_NOMEM, "out of memory for the parameter table (%d params)", cap);
    }
    builder b = {l, cap, 0};
    sl_status st = cfg->arch == MODEL_ARCH_GPT2 ? build_gpt2(&b, decay_embeddings)
                                                : build_llama(&b, decay_embeddings);
    if (st != SL_OK) {
        model_layout_destroy(l);
        return st;
    }
    model_layout_place_units(l);
    *out = l;
    return SL_OK;
}

void model_layout_destroy(model_layout *l) {
    if (!l)
        return;
    free(l->params);
    free(l->units);
    free(l);
}

int model_layout_find(const model_layout *l, const char *name) {
    for (int i = 0; i < l->n_params; i++)
        if (strcmp(l->params[i].name, name) == 0)
            return i;
    return -1;
}

int model_layout_find_hf(const model_layout *l, const char *hf_name) {
    for (int i = 0; i < l->n_params; i++)
        if (strcmp(l->params[i].hf_name, hf_name) == 0)
            return i;
    return -1;
}

sl_status model_init_unit_range(const model_layout *l, int unit, int64_t start, int64_t count,
                                float *dst, uint64_t seed) {
    SL_CHECK_ARG(unit >= 0 && unit < l->n_units, "model_init_unit_range: unit %d outside 0..%d",
                 unit, l->n_units - 1);
    const model_unit *u = &l->units[unit];
    SL_CHECK_ARG(start >= 0 && count >= 0 && start + count <= u->numel,
                 "model_init_unit_range: range [%lld, %lld) outside unit %d of %lld elements",
                 (long long)start, (long long)(start + count), unit, (long long)u->numel);
    float std = (float)l->cfg.init_std;
    float resid_std = (float)(l->cfg.init_std / sqrt(2.0 * l->cfg.n_layer));
    int64_t end = start + count;
    for (int i = u->first_param; i < u->first_param + u->n_params; i++) {
        const model_param *p = &l->params[i];
        int64_t a = p->offset > start ? p->offset : start;
        int64_t z = p->offset + p->numel < end ? p->offset + p->numel : end;
        if (a >= z)
            continue;
        float *d = dst + (a - start);
        size_t n = (size_t)(z - a);
        switch (p->role) {
        case MODEL_ROLE_NORM_WEIGHT:
            for (size_t k = 0; k < n; k++)
                d[k] = 1.0f;
            break;
        case MODEL_ROLE_NORM_BIAS:
        case MODEL_ROLE_LINEAR_BIAS:
        case MODEL_ROLE_LORA_B:
            memset(d, 0, n * sizeof *d);
            break;
        case MODEL_ROLE_LORA_A: {
            rng_stream s = rng_stream_make(seed, RNG_PURPOSE_LORA, (uint32_t)i);
            float bound = (float)(1.0 / sqrt((double)p->shape[1]));
            rng_fill_uniform(&s, (uint64_t)(a - p->offset), d, n, -bound, bound);
            break;
        }
        default: {
            rng_stream s = rng_stream_make(seed, RNG_PURPOSE_INIT, (uint32_t)i);
            float sd = p->role == MODEL_ROLE_RESID_WEIGHT ? resid_std : std;
            rng_fill_normal(&s, (uint64_t)(a - p->offset), d, n, 0.0f, sd);
        }
        }
    }
    return SL_OK;
}

sl_status model_layout_decay_segments(const model_layout *l, int unit, model_decay_segment *segs,
                                      int cap, int *n) {
    SL_CHECK_ARG(unit >= 0 && unit < l->n_units, "model_layout_decay_segments: unit %d outside 0..%d",
                 unit, l->n_units - 1);
    const model_unit *u = &l->units[unit];
    int k = 0;
    bool prev = false;
    for (int i = u->first_param; i < u->first_param + u->n_params; i++) {
        const model_param *p = &l->params[i];
        if (k > 0 && prev == p->decay) {
            if (k <= cap)
                segs[k - 1].length += p->numel;
            continue;
        }
        if (k < cap) {
            segs[k].offset = p->offset;
            segs[k].length = p->numel;
            segs[k].decay = p->decay;
        }
        prev = p->decay;
        k++;
    }
    *n = k;
    if (k > cap && cap > 0)
        return sl_errorf(SL_ERR_INVALID,
                         "model_layout_decay_segments: unit %d has %d segments, room for %d", unit,
                         k, cap);
    return SL_OK;
}

int64_t model_layout_param_count(const model_layout *l) { return l->total_numel; }

double model_layout_flops_per_token(const model_layout *l, int seq_len) {
    const cfg_model *c = &l->cfg;
    double n = 0;
    for (int i = 0; i < l->n_params; i++) {
        model_role r = l->params[i].role;
        if (r != MODEL_ROLE_WTE && r != MODEL_ROLE_WPE && r != MODEL_ROLE_LORA_A && r != MODEL_ROLE_LORA_B)
            n += (double)l->params[i].numel;
    }
    if (c->tie_embeddings && l->fin.score_w < 0)
        n += (double)c->vocab_size * c->d_model; /* the head GEMM uses wte */
    /* the attention term's width is n_head * head_dim (= d_model unless head_dim is explicit) */
    double width = (double)c->n_head * l->head_dim;
    return 6.0 * n + 6.0 * c->n_layer * (double)seq_len * width;
}

void model_layout_rope_freq(const model_layout *l, float *inv) {
    const cfg_model *c = &l->cfg;
    int64_t d = l->head_dim, half = d / 2;
    float theta = (float)c->rope_theta;
    /* every step one fp32 operation, in transformers' order (a Python scalar
     * operand is rounded to fp32 first, as torch does with a float32 tensor) */
    for (int64_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)d;
        inv[i] = 1.0f / powf(theta, e);
    }
    if (c->rope_scaling == ROPE_SCALING_LINEAR) {
        for (int64_t i = 0; i < half; i++)
            inv[i] = inv[i] / (float)c->rope_factor;
    } else if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
        /* _compute_llama3_parameters: wavelength 2 pi / inv_freq; above
         * old / low_freq_factor divide by factor, below old / high_freq_factor
         * keep, in between blend with smooth = (old / wavelen - low) / (high - low) */
        double old = (double)c->rope_original_max_pos, lo = c->rope_low_freq_factor,
               hi = c->rope_high_freq_factor;
        float factor = (float)c->rope_factor;
        float low_wl = (float)(old / lo), high_wl = (float)(old / hi);
        for (int64_t i = 0; i < half; i++) {
            float wl = (1.0f / inv[i]) * (float)LAYOUT_TWO_PI;
            float scaled = wl > low_wl ? inv[i] / factor : inv[i];
            float smooth = ((1.0f / wl) * (float)old - (float)lo) / (float)(hi - lo);
            float blended = (1.0f - smooth) * scaled / factor + smooth * scaled;
            bool medium = !(wl < high_wl) && !(wl > low_wl);
            inv[i] = medium ? blended : scaled;
        }
    }
}
