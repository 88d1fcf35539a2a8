/* launcher/bench.c: the single-process step benchmark (see bench.h). */
#include "launcher/bench.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "train/bench_device.h"
#include "model/hf.h"
#include "model/layout.h"
#include "model/model.h"
#include "optim/trainer.h"
#include "runtime/check.h"
#include "runtime/log.h"
#include "runtime/mem.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void bench_tokens(uint64_t seed, int64_t index, int B, int T, int V, uint32_t *inputs,
                  int32_t *targets) {
    uint64_t base = seed * 0x9E3779B97F4A7C15ull;
    for (int b = 0; b < B; b++) {
        uint64_t row = ((uint64_t)index * (uint64_t)B + (uint64_t)b) * (uint64_t)(T + 1);
        for (int t = 0; t <= T; t++) {
            uint32_t tok = (uint32_t)(splitmix64(base + row + (uint64_t)t) % (uint64_t)V);
            if (t < T)
                inputs[b * T + t] = tok;
            if (t > 0)
                targets[b * T + t - 1] = (int32_t)tok;
        }
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    mem_accountant acct;
    sl_backend *be;
    model_layout *l;
    trainer *t;
    model *m;
    uint32_t *inp;
    int32_t *tgt;
    double *times;
    float *host;
} bench_state;

static void state_free(bench_state *s) {
    free(s->inp);
    free(s->tgt);
    free(s->times);
    free(s->host);
    model_destroy(s->m);
    trainer_destroy(s->t);
    model_layout_destroy(s->l);
    backend_destroy(s->be);
}

static sl_status one_step(bench_state *s, const sl_config *cfg, int step, int total, double *loss) {
    int B = cfg->train.micro_batch, T = cfg->data.seq_len, A = cfg->train.grad_accum;
    double sum = 0;
    int64_t nv_total = (int64_t)A * B * T; /* synthetic targets are never ignored */
    SL_TRY(trainer_zero_grads(s->t));
    for (int a = 0; a < A; a++) {
        bench_tokens((uint64_t)cfg->train.seed, (int64_t)step * A + a, B, T, cfg->model.vocab_size, s->inp,
                     s->tgt);
        double ls = 0;
        int64_t nv = 0;
        SL_TRY(model_forward_backward(s->m, trainer_hooks(s->t), s->inp, s->tgt, (float)(1.0 / (double)nv_total),
                                      &ls, &nv));
        sum += ls;
    }
    trainer_step_stats st;
    SL_TRY(trainer_optimizer_step(s->t, &cfg->optim, step + 1, total, &st));
    if (st.skipped)
        return sl_errorf(SL_ERR_INVALID, "bench: non-finite gradient norm at step %d", step);
    *loss = sum / (double)nv_total;
    return SL_OK;
}

static sl_status run(bench_state *s, const sl_config *cfg, const bench_opts *o, bench_result *r) {
    mem_accountant_init(&s->acct);
    SL_TRY(backend_create_cpu(o->threads, &s->acct, &s->be));
    SL_TRY(model_layout_create(&cfg->model, cfg->optim.decay_embeddings, &s->l));
    SL_TRY(trainer_create(s->l, s->be, &s->t));
    size_t P = (size_t)s->l->total_numel;
    if (cfg->model.init_from[0]) {
        s->host = malloc(P * sizeof *s->host);
        SL_CHECK_ALLOC(s->host, P * sizeof *s->host);
        SL_TRY(model_weights_load(cfg->model.init_from, s->l, s->host));
        SL_TRY(trainer_load_params(s->t, s->host));
    } else {
        SL_TRY(trainer_init_params(s->t, (uint64_t)cfg->train.seed));
    }
    if (o->save_init)
        SL_TRY(hf_save(o->save_init, s->l, trainer_params(s->t), SL_DTYPE_F32, ""));
    int B = cfg->train.micro_batch, T = cfg->data.seq_len;
    SL_TRY(model_create(s->l, s->be, B, T, cfg->train.recompute, &s->m));
    s->inp = malloc((size_t)B * T * sizeof *s->inp);
    s->tgt = malloc((size_t)B * T * sizeof *s->tgt);
    s->times = calloc((size_t)(o->steps > 0 ? o->steps : 1), sizeof *s->times);
    SL_CHECK_ALLOC(s->inp && s->tgt && s->times ? s->inp : NULL, (size_t)B * T * 8);
    int total = 1 + o->warmup + o->steps;
    double loss = 0;
    SL_TRY(one_step(s, cfg, 0, total, &r->loss0));
    for (int i = 0; i < o->warmup; i++)
        SL_TRY(one_step(s, cfg, 1 + i, total, &loss));
    for (int i = 0; i < o->steps; i++) {
        double t0 = sl_now();
        SL_TRY(one_step(s, cfg, 1 + o->warmup + i, total, &loss));
        s->times[i] = sl_now() - t0;
        LOG_INFO("bench step %d: loss %.4f, %.3f s", i + 1, loss, s->times[i]);
    }
    if (o->steps > 0) {
        qsort(s->times, (size_t)o->steps, sizeof *s->times, cmp_double);
        r->median_step_s = o->steps % 2 ? s->times[o->steps / 2]
                                        : 0.5 * (s->times[o->steps / 2 - 1] + s->times[o->steps / 2]);
        r->min_step_s = s->times[0];
        r->tokens_per_s = (double)B * T * cfg->train.grad_accum / r->median_step_s;
    }
    r->flops_per_token = model_layout_flops_per_token(s->l, T);
    r->params = model_layout_param_count(s->l);
    r->activation_bytes = model_activation_bytes(s->m);
    r->peak_bytes = mem_peak_total(&s->acct);
    return SL_OK;
}

sl_status bench_run(const sl_config *cfg, const bench_opts *o, bench_result *r) {
    memset(r, 0, sizeof *r);
    bench_state s;
    memset(&s, 0, sizeof s);
    sl_status st = run(&s, cfg, o, r);
    state_free(&s);
    return st;
}
