/* Reward models against PyTorch: tests/reference/make_reward_reference.py
 * (Debian's python3-torch) writes a tiny gpt2 and a tiny llama as transformers'
 * *ForSequenceClassification folders (num_labels 1, pad_token_id), the same
 * bodies as causal LMs, and golden.h5: pair rows (row 2p chosen, 2p+1
 * rejected; one row without padding), the rewards (the score at the
 * rightmost input != pad_token_id, as transformers pools it), TRL's
 * RewardTrainer loss -logsigmoid(r_c - r_r).mean(), every gradient, and the
 * parameters after 3 steps of torch.optim.AdamW + clip_grad_norm_ + LambdaLR.
 * This test reads the folder (model_config_from_dir: model.head = score from
 * architectures; hf_load_params: score.weight), runs
 * model_forward_backward_rows with the Bradley-Terry row gradient, and
 * compares: rewards (rel. error by norm <= 1e-5), loss (<= 1e-5), every
 * gradient (<= 1e-5 each), every parameter after 3 production AdamW steps
 * (optim.h, <= 1e-5 each). Then: recomputation and model_forward_rows give
 * bitwise the same; a row without a valid target scores 0 with row_valid 0;
 * the plain passes, decoding and LoRA refuse a score model; the causal-LM
 * folder read for a score layout keeps the body bit for bit and starts the
 * score head from model_init_unit_range; and hf_save's export matches the
 * reference folder's tensor names, shapes and values and its config.json
 * (architectures, id2label, label2id, pad_token_id), checked by
 * tests/tools/reward_hf_check.py, and reads back bit for bit. */
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
#include "model/decode.h"
#include "model/hf.h"
#include "model/hf_stream.h"
#include "model/lora.h"
#include "model/model.h"
#include "optim/optim.h"
#include "train/params.h"
#include "support/golden.h"
#include "support/golden_job.h"

static char g_dir[512];

/* The Bradley-Terry loss of TRL's RewardTrainer over the global batch's
 * pairs: L = mean_p -log sigmoid(d_p), d_p = r_2p - r_2p+1, so dL/dr_2p =
 * -sigmoid(-d_p) / P and dL/dr_2p+1 = +sigmoid(-d_p) / P. */
typedef struct {
    int pairs; /* P of the global batch */
    double loss;
} bt_ctx;

static sl_status bt_grad(void *ctx, int rows, const double *r, const int64_t *valid, double *g) {
    bt_ctx *c = ctx;
    (void)valid;
    for (int p = 0; p < rows / 2; p++) {
        double d = r[2 * p] - r[2 * p + 1];
        double s = 1.0 / (1.0 + exp(d)); /* sigmoid(-d) */
        c->loss += (d > 0 ? log1p(exp(-d)) : -d + log1p(exp(d))) / c->pairs;
        g[2 * p] = -s / c->pairs;
        g[2 * p + 1] = s / c->pairs;
    }
    return SL_OK;
}

static double rel_err_d(const double *got, const double *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void run_config(const char *name) {
    char dir[700], hf[800], lm[800], out[800];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(lm, sizeof lm, "%s/lm", dir);

    sl_config cfg;
    config_defaults(&cfg);
    OK(model_config_from_dir(hf, &cfg));
    assert_int_equal(cfg.model.head, MODEL_HEAD_SCORE); /* from architectures */
    model_layout *l = NULL;
    OK(model_layout_create(&cfg.model, false, &l));
    int last = l->n_units - 1;
    assert_true(l->fin.score_w >= 0 && l->fin.head_w < 0);
    const model_param *sp = &l->params[model_layout_find(l, "final.score.weight")];
    assert_true(sp->shape[0] == 1 && sp->shape[1] == cfg.model.d_model && sp->unit == last);
    assert_int_equal(model_layout_find(l, "final.head.weight"), -1);

    sl_backend *be = NULL;
    OK(backend_create_cpu(2, NULL, &be));
    size_t P = (size_t)l->total_numel;
    float *params = malloc(P * sizeof *params), *grads = calloc(P, sizeof *grads);
    float *grads2 = calloc(P, sizeof *grads2), *mom = calloc(P, sizeof *mom), *var = calloc(P, sizeof *var);
    assert_true(params && grads && grads2 && mom && var);
    hf_info info;
    OK(hf_load_params(hf, l, params, &info));

    hid_t f = golden_open(dir);
    hsize_t dims[3];
    size_t n_ids = 0, n_tg = 0, n_r = 0, n1 = 0;
    uint32_t *inp = golden_read_tokens(f, "input_ids", &n_ids, dims);
    int32_t *tg = golden_read_i32(f, "targets", &n_tg, dims);
    double *want_r = golden_read(f, "logits", &n_r);
    double *want_loss = golden_read(f, "loss", &n1);
    int S = (int)dims[0], B = (int)dims[1], T = (int)dims[2], BT = B * T;
    assert_int_equal(n_r, (size_t)B);
    assert_int_equal(cfg.model.pad_token_id, (int)golden_attr(f, "pad_token_id"));

    model *m = NULL, *mr = NULL;
    OK(model_create(l, be, B, T, false, &m));
    OK(model_create(l, be, B, T, true, &mr));
    model_local lh;
    model_unit_hooks h;
    OK(model_local_init(&lh, l, params, grads, &h));

    double *rv = calloc((size_t)B, sizeof *rv), *rv2 = calloc((size_t)B, sizeof *rv2);
    int64_t *valid = calloc((size_t)B, sizeof *valid);
    assert_true(rv && rv2 && valid);
    bt_ctx bc = {B / 2, 0};
    OK(model_forward_backward_rows(m, &h, inp, tg, bt_grad, &bc, rv, valid));
    for (int b = 0; b < B; b++)
        assert_int_equal(valid[b], 1);
    double e_r = rel_err_d(rv, want_r, (size_t)B);
    double e_loss = fabs(bc.loss - want_loss[0]) / fabs(want_loss[0]);
    char worst_g[256] = "", worst_p[256] = "";
    double e_grads = golden_compare_params(f, "grads", l, info.prefix, grads, worst_g, sizeof worst_g);
    int correct = 0;
    double margin = 0;
    for (int p = 0; p < B / 2; p++) {
        correct += rv[2 * p] > rv[2 * p + 1];
        margin += (rv[2 * p] - rv[2 * p + 1]) / (B / 2);
    }
    assert_true(fabs((double)correct / (B / 2) - golden_attr(f, "accuracy")) < 1e-12);
    assert_true(fabs(margin - golden_attr(f, "margin")) <= 1e-5 * (fabs(margin) + 1e-3));

    /* recomputation and the forward-only pass: bitwise the same */
    OK(model_local_init(&lh, l, params, grads2, &h));
    bt_ctx bc2 = {B / 2, 0};
    OK(model_forward_backward_rows(mr, &h, inp, tg, bt_grad, &bc2, rv2, valid));
    assert_memory_equal(rv, rv2, (size_t)B * sizeof *rv);
    assert_memory_equal(grads, grads2, P * sizeof *grads);
    OK(model_forward_rows(m, &h, inp, tg, rv2, valid));
    assert_memory_equal(rv, rv2, (size_t)B * sizeof *rv);
    /* a row without a valid target: value 0, row_valid 0 */
    int32_t *tg0 = malloc((size_t)BT * sizeof *tg0);
    assert_non_null(tg0);
    memcpy(tg0, tg, (size_t)BT * sizeof *tg0);
    for (int t = 0; t < T; t++)
        tg0[T + t] = -1;
    OK(model_forward_rows(m, &h, inp, tg0, rv2, valid));
    assert_true(rv2[1] == 0.0 && valid[1] == 0 && valid[0] == 1 && rv2[0] == rv[0]);
    free(tg0);

    /* a score model has no LM head: the plain passes, decoding and LoRA refuse it */
    double ls = 0;
    int64_t nv = 0;
    float *lg = malloc((size_t)BT * (size_t)cfg.model.vocab_size * sizeof *lg);
    assert_non_null(lg);
    assert_int_equal(model_forward_loss(m, &h, inp, tg, &ls, &nv), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "reward model"));
    assert_int_equal(model_forward_logits(m, &h, inp, lg), SL_ERR_INVALID);
    assert_int_equal(model_forward_backward(m, &h, inp, tg, 1.0f, &ls, &nv), SL_ERR_INVALID);
    free(lg);
    decode *dec = NULL;
    assert_int_equal(decode_create(l, be, params, 1, T, 8, &dec), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "reward model"));
    cfg_lora lc = cfg.lora;
    lc.enabled = true;
    lc.targets.n = 1;
    snprintf(lc.targets.items[0], CFG_STR_MAX, "%s", cfg.model.arch == MODEL_ARCH_GPT2 ? "c_attn" : "q_proj");
    lora_spec *spec = NULL;
    OK(lora_create(l, &lc, &spec));
    assert_int_equal(model_attach_lora(m, spec), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "modules_to_save"));
    lora_destroy(spec);

    /* 3 production AdamW steps (optim.h) on the golden's batches */
    cfg_optim oc = cfg.optim;
    int total = golden_read_optim(f, &oc);
    optimizer *opt = NULL;
    OK(optim_create(be, NULL, &opt));
    OK(model_local_init(&lh, l, params, grads, &h));
    float *params0 = malloc(P * sizeof *params0);
    assert_non_null(params0);
    memcpy(params0, params, P * sizeof *params);
    OK(train_local_add_to_optim(opt, l, params, grads, mom, var));
    for (int s = 1; s <= S; s++) {
        if (s > 1) {
            memset(grads, 0, P * sizeof *grads);
            size_t o = (size_t)(s - 1) * (size_t)BT;
            bt_ctx bs = {B / 2, 0};
            OK(model_forward_backward_rows(m, &h, inp + o, tg + o, bt_grad, &bs, rv2, valid));
        }
        optim_grads_changed(opt);
        optim_step_stats os;
        OK(optim_step(opt, &oc, s, total, &os));
        assert_false(os.skipped);
    }
    optim_destroy(opt);
    double e_params = golden_compare_params(f, "params_after", l, info.prefix, params, worst_p, sizeof worst_p);
    H5Fclose(f);

    /* the causal LM read as a reward model: body bit for bit, a fresh score head */
    sl_config lcfg;
    config_defaults(&lcfg);
    OK(model_config_from_dir(lm, &lcfg));
    assert_int_equal(lcfg.model.head, MODEL_HEAD_LM);
    lcfg.train.objective = TRAIN_OBJECTIVE_REWARD;
    assert_int_equal(config_apply_objective(&lcfg), SL_OK);
    assert_int_equal(lcfg.model.head, MODEL_HEAD_SCORE);
    model_layout *l2 = NULL;
    OK(model_layout_create(&lcfg.model, false, &l2));
    assert_int_equal(l2->total_numel, l->total_numel);
    hf_reader *rd = NULL;
    OK(hf_reader_open(lm, l2, &rd));
    hf_reader_set_seed(rd, 77);
    float *fresh = malloc(P * sizeof *fresh), *init = malloc((size_t)cfg.model.d_model * sizeof *init);
    assert_true(fresh && init);
    for (int u = 0; u < l2->n_units; u++)
        OK(hf_reader_range(rd, u, 0, l2->units[u].numel, fresh + l2->units[u].offset));
    hf_reader_close(rd);
    size_t so = (size_t)(l2->units[last].offset + l2->fin.score_w);
    assert_memory_equal(fresh, params0, so * sizeof *fresh); /* everything before the score head */
    OK(model_init_unit_range(l2, last, l2->fin.score_w, cfg.model.d_model, init, 77));
    assert_memory_equal(fresh + so, init, (size_t)cfg.model.d_model * sizeof *init);
    double sq = 0;
    for (int k = 0; k < cfg.model.d_model; k++)
        sq += (double)init[k] * init[k];
    assert_true(sq > 0);
    free(fresh);
    free(init);
    model_layout_destroy(l2);

    /* export: the reference folder's names, shapes, values and config keys */
    snprintf(out, sizeof out, "%s/exported", dir);
    OK(hf_save(out, l, params0, SL_DTYPE_F32, info.prefix));
    char args[2048];
    snprintf(args, sizeof args, "%s %s", out, hf);
    assert_int_equal(golden_run_python("tools/reward_hf_check.py", args), 0);
    sl_config ecfg;
    config_defaults(&ecfg);
    OK(model_config_from_dir(out, &ecfg));
    assert_int_equal(ecfg.model.head, MODEL_HEAD_SCORE);
    assert_int_equal(ecfg.model.pad_token_id, cfg.model.pad_token_id);
    float *back = malloc(P * sizeof *back);
    assert_non_null(back);
    OK(hf_load_params(out, l, back, NULL));
    assert_memory_equal(back, params0, P * sizeof *back);
    free(back);

    printf("%-6s rewards %.2e  loss %.2e (%.6f)  grads %.2e (worst %s)  params after %d steps %.2e (worst %s)\n",
           name, e_r, e_loss, bc.loss, e_grads, worst_g, S, e_params, worst_p);
    assert_true(e_r <= 1e-5);
    assert_true(e_loss <= 1e-5);
    assert_true(e_grads <= 1e-5);
    assert_true(e_params <= 1e-5);

    model_destroy(m);
    model_destroy(mr);
    backend_destroy(be);
    free(params);
    free(params0);
    free(grads);
    free(grads2);
    free(mom);
    free(var);
    free(rv);
    free(rv2);
    free(valid);
    free(inp);
    free(tg);
    free(want_r);
    free(want_loss);
    model_layout_destroy(l);
}

static void test_gpt2(void **s) { (void)s; run_config("gpt2"); }
static void test_llama(void **s) { (void)s; run_config("llama"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama),
    };
    static const golden_suite suite = {"test_reward_reference", "/tmp/shardlm_rmref.XXXXXX",
                                       "make_reward_reference.py"};
    return golden_suite_main(NULL, NULL, &suite, NULL, g_dir, sizeof g_dir, tests, sizeof tests / sizeof tests[0]);
}
