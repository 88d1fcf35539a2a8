#include "tiny_model.h"

#include "runtime/rng.h"

void tiny_model_config(sl_config *cfg, int arch, const tiny_model_dims *d) {
    config_defaults(cfg);
    cfg_model *m = &cfg->model;
    m->arch = arch;
    m->n_layer = d->n_layer;
    m->d_model = d->d_model;
    m->n_head = d->n_head;
    m->vocab_size = d->vocab_size;
    m->max_seq_len = d->max_seq_len;
    if (arch != MODEL_ARCH_GPT2) { /* llama-like: llama, qwen2, qwen3, mistral */
        m->n_kv_head = d->n_kv_head;
        m->d_ff = d->d_ff;
        m->tie_embeddings = false;
        m->rope_theta = 10000.0;
    } else {
        m->n_kv_head = 0;
        m->d_ff = 0;
        m->tie_embeddings = true;
    }
    m->init_std = d->init_std;
    cfg->data.seq_len = d->seq_len;
}

sl_status tiny_model_params(const model_layout *l, uint64_t seed, int64_t stride, float *params) {
    for (int u = 0; u < l->n_units; u++)
        SL_TRY(model_init_unit_range(l, u, 0, l->units[u].numel, params + l->units[u].offset, seed));
    rng_stream s = rng_stream_make(7, RNG_PURPOSE_TEST, 0);
    for (int i = 0; i < l->n_params; i++) {
        const model_param *p = &l->params[i];
        if (p->role != MODEL_ROLE_NORM_WEIGHT && p->role != MODEL_ROLE_NORM_BIAS &&
            p->role != MODEL_ROLE_LINEAR_BIAS)
            continue;
        float *dst = params + l->units[p->unit].offset + p->offset;
        for (int64_t e = 0; e < p->numel; e++)
            dst[e] += 0.1f * rng_normal(&s, (uint64_t)(i * stride + e));
    }
    return SL_OK;
}
