/* LoRA against PyTorch: tests/reference/make_lora_reference.py (run here with
 * Debian's python3-torch) writes a base Hugging Face folder, a PEFT adapter
 * folder and golden.h5 for a tiny gpt2 (c_attn, c_proj, c_fc), a tiny
 * llama (all seven linears, rsLoRA) and a tiny llama with lora_dropout 0.1
 * (the script reproduces shardlm's Philox masks, tests/reference/philox.py,
 * so the training passes compare exactly). This test reads the adapter through
 * lora_peft_read_config/lora_peft_load, runs the frozen base + adapters
 * (base hooks without grads, adapter hooks with grads) and compares:
 *   logits (rel. error by norm <= 1e-5), loss (<= 1e-6), every lora_A/lora_B
 *   gradient (<= 1e-4 each), every adapter after 3 AdamW steps with clipping
 *   over the adapters (<= 1e-5 each), the eval loss (model_forward_loss:
 *   no dropout, <= 1e-6); the base parameters are unchanged. With dropout the
 *   logits and eval loss are the no-dropout ones (only training drops), and
 *   a training call without model_set_dropout_ctx is refused.
 * Then: recomputation gives bitwise the same adapter gradients; the merged
 * model (lora_merge, no adapters) gives the adapter model's logits (1e-5);
 * the adapter written by lora_peft_save loads back bit for bit and, applied
 * by tests/reference/peft_apply.py with PEFT's formula, gives the same
 * logits (1e-5); fresh adapters (model_init_unit_range) have B = 0 and A in
 * PEFT's kaiming bound, so the adapted model starts equal to the base; and
 * bad targets and dropout outside [0, 1) are refused. */
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/ops.h"
#include "model/hf.h"
#include "model/lora.h"
#include "model/model.h"
#include "optim/optim.h"
#include "train/params.h"
#include "support/golden.h"
#include "support/golden_job.h"

static char g_dir[512];

/* Every adapter tensor of buf (adapter layout order) against group/<peft name>. */
static double compare_adapters(hid_t f, const char *group, const model_layout *al, const float *buf,
                               char *worst, size_t cap) {
    double w = 0;
    for (int i = 0; i < al->n_params; i++) {
        const model_param *p = &al->params[i];
        int64_t base = al->units[p->unit].offset;
        char name[256];
        snprintf(name, sizeof name, "%s/%s", group, p->hf_name);
        size_t n = 0;
        double *want = golden_read(f, name, &n);
        assert_int_equal(n, (size_t)p->numel);
        double e = golden_rel_err(buf + base + p->offset, want, n);
        if (e > w) {
            w = e;
            snprintf(worst, cap, "%s", p->hf_name);
        }
        free(want);
    }
    return w;
}

typedef struct {
    model_local base_l, ad_l;
    model_unit_hooks base_h, ad_h;
} lora_hooks;

/* base hooks without grads (frozen) carrying the adapter hooks */
static void hooks_init(lora_hooks *h, const model_layout *l, float *params, const lora_spec *spec,
                       float *ap, float *ag) {
    OK(model_local_init(&h->base_l, l, params, NULL, &h->base_h));
    OK(model_local_init(&h->ad_l, spec->layout, ap, ag, &h->ad_h));
    h->base_h.adapter = &h->ad_h;
}

/* model_forward_backward of optimizer step `step` (dropout keys: the
 * golden's seed, batch row b = global sample b) */
static sl_status train_call(model *m, const model_unit_hooks *hk, const uint32_t *inp, const int32_t *tg,
                            double nv, uint64_t seed, int step, double *loss_sum, int64_t *n_valid) {
    model_dropout_ctx dc = {seed, step, 0};
    OK(model_set_dropout_ctx(m, &dc));
    return model_forward_backward(m, hk, inp, tg, (float)(1.0 / nv), loss_sum, n_valid);
}

static void run_config(const char *name) {
    char dir[700], hf[800], ad[800], h5[800], out[800];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(ad, sizeof ad, "%s/adapter", dir);
    snprintf(h5, sizeof h5, "%s/golden.h5", dir);

    sl_config cfg;
    config_defaults(&cfg);
    OK(model_config_from_dir(hf, &cfg));
    model_layout *l = NULL;
    OK(model_layout_create(&cfg.model, false, &l));
    OK(lora_peft_read_config(ad, cfg.model.arch, &cfg.lora));
    lora_spec *spec = NULL;
    OK(lora_create(l, &cfg.lora, &spec));
    const model_layout *al = spec->layout;
    sl_backend *be = NULL;
    OK(backend_create_cpu(2, NULL, &be));
    size_t P = (size_t)l->total_numel, PA = (size_t)al->total_numel;
    float *params = malloc(P * sizeof *params), *params0 = malloc(P * sizeof *params);
    float *ap = calloc(PA, sizeof *ap), *ag = calloc(PA, sizeof *ag), *ag0 = calloc(PA, sizeof *ag);
    float *am = calloc(PA, sizeof *am), *av = calloc(PA, sizeof *av);
    assert_true(params && params0 && ap && ag && ag0 && am && av);
    OK(hf_load_params(hf, l, params, NULL));
    memcpy(params0, params, P * sizeof *params);
    OK(lora_peft_load(ad, spec, ap));

    hid_t f = golden_open(dir);
    hsize_t dims[3];
    size_t n_ids = 0, n_tg = 0, n_lg = 0, n1 = 0;
    uint32_t *inp = golden_read_tokens(f, "input_ids", &n_ids, dims);
    int32_t *tg = golden_read_i32(f, "targets", &n_tg, dims);
    double *want_logits = golden_read(f, "logits", &n_lg);
    double *want_loss = golden_read(f, "loss", &n1);
    int S = (int)dims[0], B = (int)dims[1], T = (int)dims[2], BT = B * T;
    assert_true(fabs(golden_attr(f, "scale") - spec->scale) < 1e-6);
    assert_true(golden_attr(f, "dropout") == cfg.lora.dropout); /* lora_dropout was read */
    uint64_t dseed = (uint64_t)golden_attr(f, "dropout_seed");
    double want_eval = golden_attr(f, "eval_loss");

    model *m = NULL, *mr = NULL, *plain = NULL;
    OK(model_create(l, be, B, T, false, &m));
    OK(model_create(l, be, B, T, true, &mr));
    OK(model_create(l, be, B, T, false, &plain));
    OK(model_attach_lora(m, spec));
    OK(model_attach_lora(mr, spec));
    lora_hooks h;
    hooks_init(&h, l, params, spec, ap, ag);

    float *logits = malloc(n_lg * sizeof *logits), *logits2 = malloc(n_lg * sizeof *logits);
    assert_true(logits && logits2);
    OK(model_forward_logits(m, &h.base_h, inp, logits));
    double e_logits = golden_rel_err(logits, want_logits, n_lg);

    /* forward-only without adapter hooks runs the base alone (the adapters
     * switched off: DPO's reference model), bitwise the model without LoRA;
     * a training pass refuses it, and a model without LoRA refuses adapters */
    model_unit_hooks bare = h.base_h;
    bare.adapter = NULL;
    float *logits3 = malloc(n_lg * sizeof *logits3);
    assert_non_null(logits3);
    OK(model_forward_logits(m, &bare, inp, logits2));
    OK(model_forward_logits(plain, &bare, inp, logits3));
    assert_memory_equal(logits2, logits3, n_lg * sizeof *logits2);
    free(logits3);
    {
        double ls = 0;
        int64_t nvb = 0;
        assert_int_equal(model_forward_backward(m, &bare, inp, tg, 1.0f, &ls, &nvb), SL_ERR_INVALID);
    }
    assert_int_equal(model_forward_logits(plain, &h.base_h, inp, logits2), SL_ERR_INVALID);

    int64_t nv = golden_count_valid(tg, (size_t)BT);
    double loss_sum = 0, loss_sum_r = 0;
    int64_t n_valid = 0;
    if (cfg.lora.dropout > 0) /* training with dropout needs the mask keys */
        assert_int_equal(model_forward_backward(m, &h.base_h, inp, tg, 1.0f, &loss_sum, &n_valid), SL_ERR_INVALID);
    OK(train_call(m, &h.base_h, inp, tg, (double)nv, dseed, 1, &loss_sum, &n_valid));
    double e_loss = fabs(loss_sum / (double)n_valid - want_loss[0]) / fabs(want_loss[0]);
    char worst_g[256] = "", worst_p[256] = "";
    double e_grads = compare_adapters(f, "grads", al, ag, worst_g, sizeof worst_g);
    /* eval: no dropout whatever lora.dropout is */
    double eval_sum = 0;
    OK(model_forward_loss(m, &h.base_h, inp, tg, &eval_sum, &n_valid));
    double e_eval = fabs(eval_sum / (double)n_valid - want_eval) / fabs(want_eval);
    memcpy(ag0, ag, PA * sizeof *ag);
    memset(ag, 0, PA * sizeof *ag);
    OK(train_call(mr, &h.base_h, inp, tg, (double)nv, dseed, 1, &loss_sum_r, &n_valid));
    assert_true(loss_sum_r == loss_sum);
    assert_memory_equal(ag0, ag, PA * sizeof *ag);

    /* 3 AdamW steps on the adapters; clipping over their norm only */
    cfg_optim oc = cfg.optim;
    int total = golden_read_optim(f, &oc);
    optimizer *opt = NULL; /* the production step (optim/optim.h) over the adapters */
    OK(optim_create(be, NULL, &opt));
    OK(train_local_add_to_optim(opt, al, ap, ag, am, av));
    for (int s = 1; s <= S; s++) {
        if (s > 1) {
            memset(ag, 0, PA * sizeof *ag);
            size_t o = (size_t)(s - 1) * (size_t)BT;
            double nvs = (double)golden_count_valid(tg + o, (size_t)BT);
            OK(train_call(m, &h.base_h, inp + o, tg + o, nvs, dseed, s, &loss_sum, &n_valid));
        }
        optim_grads_changed(opt);
        optim_step_stats os;
        OK(optim_step(opt, &oc, s, total, &os));
        assert_false(os.skipped);
    }
    optim_destroy(opt);
    double e_params = compare_adapters(f, "params_after", al, ap, worst_p, sizeof worst_p);
    assert_memory_equal(params, params0, P * sizeof *params); /* the base is frozen */

    /* merged model == base + adapters */
    OK(model_forward_logits(m, &h.base_h, inp, logits));
    float *merged = malloc(P * sizeof *merged);
    assert_non_null(merged);
    memcpy(merged, params, P * sizeof *params);
    OK(lora_merge(spec, merged, ap));
    model_local ml;
    model_unit_hooks mh;
    OK(model_local_init(&ml, l, merged, NULL, &mh));
    OK(model_forward_logits(plain, &mh, inp, logits2));
    double e_merged = golden_rel_err_f(logits2, logits, n_lg);

    /* export -> load back bitwise; PEFT's formula in PyTorch gives the same logits */
    snprintf(out, sizeof out, "%s/exported", dir);
    OK(lora_peft_save(out, spec, ap, "tiny-base"));
    float *ap2 = calloc(PA, sizeof *ap2);
    assert_non_null(ap2);
    cfg_lora lc2 = cfg.lora;
    OK(lora_peft_read_config(out, cfg.model.arch, &lc2));
    assert_int_equal(lc2.r, cfg.lora.r);
    assert_true(lc2.alpha == cfg.lora.alpha && lc2.rslora == cfg.lora.rslora);
    assert_true(lc2.dropout == cfg.lora.dropout);
    assert_int_equal(lc2.targets.n, cfg.lora.targets.n);
    OK(lora_peft_load(out, spec, ap2));
    assert_memory_equal(ap, ap2, PA * sizeof *ap);
    char args[4096], peft_h5[900];
    snprintf(peft_h5, sizeof peft_h5, "%s/peft_logits.h5", dir);
    snprintf(args, sizeof args, "%s %s %s %s", hf, out, h5, peft_h5);
    assert_int_equal(golden_run_python("reference/peft_apply.py", args), 0);
    hid_t pf = H5Fopen(peft_h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(pf >= 0);
    size_t n_pl = 0;
    double *peft_logits = golden_read(pf, "logits", &n_pl);
    H5Fclose(pf);
    assert_int_equal(n_pl, n_lg);
    double e_peft = golden_rel_err(logits, peft_logits, n_lg);

    /* fresh adapters: B = 0, |A| <= 1/sqrt(in); the model starts as the base */
    for (int u = 0; u < al->n_units; u++)
        OK(model_init_unit_range(al, u, 0, al->units[u].numel, ap + al->units[u].offset, 11));
    int nonzero_a = 0;
    for (int i = 0; i < al->n_params; i++) {
        const model_param *p = &al->params[i];
        const float *x = ap + al->units[p->unit].offset + p->offset;
        float bound = 1.0f / sqrtf((float)p->shape[1]);
        for (int64_t k = 0; k < p->numel; k++) {
            if (p->role == MODEL_ROLE_LORA_B)
                assert_true(x[k] == 0.0f);
            else {
                assert_true(fabsf(x[k]) <= bound);
                nonzero_a += x[k] != 0.0f;
            }
        }
    }
    assert_true(nonzero_a > 0);
    OK(model_forward_logits(m, &h.base_h, inp, logits));
    OK(model_local_init(&ml, l, params, NULL, &mh));
    OK(model_forward_logits(plain, &mh, inp, logits2));
    assert_memory_equal(logits, logits2, n_lg * sizeof *logits);
    H5Fclose(f);

    printf("%-6s dropout %g  logits %.2e  loss %.2e  eval loss %.2e  grads %.2e (worst %s)  adapters after %d "
           "steps %.2e (worst %s)  merged %.2e  peft %.2e\n",
           name, cfg.lora.dropout, e_logits, e_loss, e_eval, e_grads, worst_g, S, e_params, worst_p, e_merged,
           e_peft);
    assert_true(e_logits <= 1e-5);
    assert_true(e_loss <= 1e-6);
    assert_true(e_eval <= 1e-6);
    assert_true(e_grads <= 1e-4);
    assert_true(e_params <= 1e-5);
    assert_true(e_merged <= 1e-5);
    assert_true(e_peft <= 1e-5);

    free(peft_logits);
    free(ap2);
    free(merged);
    free(logits);
    free(logits2);
    free(inp);
    free(tg);
    free(want_logits);
    free(want_loss);
    free(params);
    free(params0);
    free(ap);
    free(ag);
    free(ag0);
    free(am);
    free(av);
    model_destroy(m);
    model_destroy(mr);
    model_destroy(plain);
    backend_destroy(be);
    lora_destroy(spec);
    model_layout_destroy(l);
}

static void test_gpt2(void **s) { (void)s; run_config("gpt2"); }
static void test_llama(void **s) { (void)s; run_config("llama"); }
static void test_llama_dropout(void **s) { (void)s; run_config("llama_dropout"); }

static void test_config_errors(void **s) {
    (void)s;
    sl_config cfg;
    config_defaults(&cfg);
    cfg.model.arch = MODEL_ARCH_GPT2;
    cfg.model.n_layer = 2;
    cfg.model.d_model = 16;
    cfg.model.n_head = 2;
    cfg.model.vocab_size = 32;
    cfg.model.max_seq_len = 8;
    cfg.data.seq_len = 8;
    OK(config_finalize(&cfg));
    model_layout *l = NULL;
    OK(model_layout_create(&cfg.model, false, &l));
    lora_spec *spec = NULL;
    cfg.lora.targets.n = 1;
    snprintf(cfg.lora.targets.items[0], CFG_STR_MAX, "q_proj"); /* a llama name */
    assert_int_equal(lora_create(l, &cfg.lora, &spec), SL_ERR_INVALID);
    assert_null(spec);
    assert_non_null(strstr(sl_error_message(), "c_attn"));
    snprintf(cfg.lora.targets.items[0], CFG_STR_MAX, "attn.c_proj");
    cfg.lora.dropout = 1.0;
    assert_int_equal(lora_create(l, &cfg.lora, &spec), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "lora.dropout"));
    cfg.lora.dropout = -0.1;
    assert_int_equal(lora_create(l, &cfg.lora, &spec), SL_ERR_INVALID);
    cfg.lora.dropout = 0.1;
    OK(lora_create(l, &cfg.lora, &spec));
    /* attn.c_proj alone: one module, not mlp.c_proj */
    assert_true(spec->site[LORA_MOD_OUT].on);
    assert_false(spec->site[LORA_MOD_PROJ].on);
    assert_int_equal(spec->layout->n_params, 2 * cfg.model.n_layer);
    assert_int_equal(spec->layout->units[0].numel, 0);
    assert_int_equal(spec->layout->units[cfg.model.n_layer + 1].numel, 0);
    assert_string_equal(spec->layout->params[0].hf_name,
                        "base_model.model.transformer.h.0.attn.c_proj.lora_A.weight");
    lora_destroy(spec);
    model_layout_destroy(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_llama_dropout),
        cmocka_unit_test(test_config_errors),
    };
    static const golden_suite suite = {"test_lora_reference", "/tmp/shardlm_loraref.XXXXXX", "make_lora_reference.py"};
    return golden_suite_main(NULL, NULL, &suite, NULL, g_dir, sizeof g_dir, tests, sizeof tests / sizeof tests[0]);
}
