/* The model against PyTorch: tests/reference/make_reference.py (run here, with
 * Debian's python3-torch) writes a Hugging Face folder and golden.h5 per
 * configuration; this test imports the folder through model/hf, and compares
 * logits (rel. error by norm <= 1e-5), the loss (<= 1e-6), every parameter
 * gradient (<= 1e-4 each) and every parameter after 3 AdamW steps with
 * warmup, cosine decay and active clipping (<= 1e-5 each). It also checks
 * that activation recomputation gives bitwise the same gradients, and that
 * hf_save and import -> export reproduce the folder's tensor data byte for
 * byte. Any failure fails the test through cmocka's exit code. */
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
#include "model/model.h"
#include "optim/optim.h"
#include "runtime/fsutil.h"
#include "runtime/safetensors.h"
#include "train/params.h"
#include "support/golden.h"

static char g_dir[512];

static int group_setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/shardlm_modelref.XXXXXX");
    return golden_make(g_dir, "make_reference.py");
}

static int group_teardown(void **state) {
    (void)state;
    fs_remove_tree(g_dir);
    return 0;
}

/* ---- comparisons ---- */

/* Each parameter of buf (model_local order) against group/<prefix><hf_name>
 * (HF layout); returns the worst relative error and names it. */
static double compare_params(hid_t f, const char *group, const model_layout *l, const char *prefix,
                             const float *buf, char *worst, size_t worst_cap) {
    double max_err = 0;
    float *tmp = NULL;
    for (int i = 0; i < l->n_params; i++) {
        const model_param *p = &l->params[i];
        int64_t base = l->units[p->unit].offset;
        char name[256];
        snprintf(name, sizeof name, "%s/%s%s", group, prefix, p->hf_name);
        size_t n = 0;
        double *want = golden_read(f, name, &n);
        assert_int_equal(n, (size_t)p->numel);
        const float *got = buf + base + p->offset;
        if (p->hf_transposed) { /* golden (in, out); ours (out, in) */
            tmp = realloc(tmp, n * sizeof *tmp);
            assert_non_null(tmp);
            for (int64_t r = 0; r < p->shape[0]; r++)
                for (int64_t c = 0; c < p->shape[1]; c++)
                    tmp[c * p->shape[0] + r] = got[r * p->shape[1] + c];
            got = tmp;
        }
        double e = golden_rel_err(got, want, n);
        if (e > max_err || isnan(e)) {
            max_err = e;
            snprintf(worst, worst_cap, "%s", name);
        }
        free(want);
    }
    free(tmp);
    return max_err;
}

/* Every tensor of a must be in b with equal dtype, shape and bytes. */
static void expect_same_tensors(const char *a_path, const char *b_path) {
    safetensors_file *a = NULL, *b = NULL;
    OK(safetensors_open(a_path, &a));
    OK(safetensors_open(b_path, &b));
    assert_int_equal(safetensors_count(a), safetensors_count(b));
    for (int i = 0; i < safetensors_count(a); i++) {
        const safetensors_tensor *x = safetensors_get(a, i);
        const safetensors_tensor *y = safetensors_find(b, x->name);
        if (!y)
            fail_msg("%s lacks tensor %s", b_path, x->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        for (int k = 0; k < x->ndim; k++)
            assert_int_equal(x->shape[k], y->shape[k]);
        assert_int_equal(x->nbytes, y->nbytes);
        if (memcmp(x->data, y->data, x->nbytes) != 0)
            fail_msg("tensor %s differs between %s and %s", x->name, a_path, b_path);
    }
    safetensors_close(a);
    safetensors_close(b);
}

/* ---- the test ---- */

static void run_config(const char *name) {
    char dir[700], hf[800], h5[800], tmp[800];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(h5, sizeof h5, "%s/golden.h5", dir);

    sl_config cfg;
    config_defaults(&cfg);
    OK(model_config_from_dir(hf, &cfg));
    model_layout *l = NULL;
    OK(model_layout_create(&cfg.model, false, &l));
    sl_backend *be = NULL;
    OK(backend_create_cpu(2, NULL, &be));
    size_t P = (size_t)l->total_numel;
    float *host = malloc(P * sizeof *host);
    float *tp = malloc(P * sizeof *tp), *tg_ = calloc(P, sizeof *tg_);
    float *tm = calloc(P, sizeof *tm), *tv = calloc(P, sizeof *tv);
    assert_true(host && tp && tg_ && tm && tv);
    hf_info info;
    OK(hf_load_params(hf, l, host, &info));
    memcpy(tp, host, P * sizeof *tp);
    model_local lh;
    model_unit_hooks hk;
    OK(model_local_init(&lh, l, tp, tg_, &hk));

    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hsize_t dims[3];
    size_t n_ids = 0, n_tg = 0, n_lg = 0, n1 = 0;
    int32_t *ids = golden_read_i32(f, "input_ids", &n_ids, dims);
    int32_t *tg = golden_read_i32(f, "targets", &n_tg, NULL);
    double *want_logits = golden_read(f, "logits", &n_lg);
    double *want_loss = golden_read(f, "loss", &n1);
    int S = (int)golden_attr(f, "steps");
    int V = cfg.model.vocab_size;
    int BT = (int)(n_lg / (size_t)V);
    assert_int_equal(n_ids, (size_t)S * BT);
    int B = (int)dims[1], T = (int)dims[2];
    uint32_t *inp = malloc(n_ids * sizeof *inp);
    assert_non_null(inp);
    for (size_t i = 0; i < n_ids; i++)
        inp[i] = (uint32_t)ids[i];

    /* logits */
    model *m = NULL, *mr = NULL;
    OK(model_create(l, be, B, T, false, &m));
    OK(model_create(l, be, B, T, true, &mr));
    float *logits = malloc(n_lg * sizeof *logits);
    assert_non_null(logits);
    OK(model_forward_logits(m, &hk, inp, logits));
    double e_logits = golden_rel_err(logits, want_logits, n_lg);

    /* loss and grads on batch 0 */
    int64_t nv = golden_count_valid(tg, (size_t)BT);
    double loss_sum = 0;
    int64_t n_valid = 0;
    memset(tg_, 0, P * sizeof *tg_);
    OK(model_forward_backward(m, &hk, inp, tg, (float)(1.0 / (double)nv), &loss_sum, &n_valid));
    assert_int_equal(n_valid, nv);
    double loss = loss_sum / (double)n_valid;
    double e_loss = fabs(loss - want_loss[0]) / fabs(want_loss[0]);
    char worst_g[256] = "", worst_p[256] = "";
    double e_grads = compare_params(f, "grads", l, info.prefix, tg_, worst_g, sizeof worst_g);

    /* recomputation: bitwise equal gradients */
    float *g0 = malloc(P * sizeof *g0);
    assert_non_null(g0);
    memcpy(g0, tg_, P * sizeof *g0);
    memset(tg_, 0, P * sizeof *tg_);
    double loss_sum_r = 0;
    OK(model_forward_backward(mr, &hk, inp, tg, (float)(1.0 / (double)nv), &loss_sum_r, &n_valid));
    assert_true(loss_sum_r == loss_sum);
    assert_memory_equal(g0, tg_, P * sizeof *g0);

    /* 3 AdamW steps: step 1 on batch 0's grads (already accumulated) */
    cfg_optim oc = cfg.optim;
    int total = golden_read_optim(f, &oc);
    optimizer *opt = NULL;
    OK(optim_create(be, NULL, &opt));
    OK(train_local_add_to_optim(opt, l, tp, tg_, tm, tv));
    for (int s = 1; s <= S; s++) {
        if (s > 1) {
            memset(tg_, 0, P * sizeof *tg_);
            int64_t nvs = golden_count_valid(tg + (size_t)(s - 1) * BT, (size_t)BT);
            OK(model_forward_backward(m, &hk, inp + (size_t)(s - 1) * BT,
                                      tg + (size_t)(s - 1) * BT, (float)(1.0 / (double)nvs), &loss_sum,
                                      &n_valid));
        }
        optim_step_stats stats;
        optim_grads_changed(opt);
        OK(optim_step(opt, &oc, s, total, &stats));
        assert_false(stats.skipped);
        assert_true(stats.clip_factor < 1.0); /* the reference checked clipping is active */
    }
    double e_params = compare_params(f, "params_after", l, info.prefix, tp, worst_p, sizeof worst_p);
    H5Fclose(f);

    printf("%-13s logits %.2e  loss %.2e  grads %.2e (worst %s)  params after %d steps %.2e (worst %s)\n",
           name, e_logits, e_loss, e_grads, worst_g, S, e_params, worst_p);
    assert_true(e_logits <= 1e-5);
    assert_true(e_loss <= 1e-6);
    assert_true(e_grads <= 1e-4);
    assert_true(e_params <= 1e-5);

    /* export: hf_save of the loaded params, and import -> export, both byte-identical */
    char src_w[900], out_w[900];
    snprintf(src_w, sizeof src_w, "%s/model.safetensors", hf);
    snprintf(tmp, sizeof tmp, "%s/saved", dir);
    OK(hf_save(tmp, l, host, SL_DTYPE_F32, info.prefix));
    snprintf(out_w, sizeof out_w, "%s/model.safetensors", tmp);
    expect_same_tensors(src_w, out_w);
    expect_same_tensors(out_w, src_w);
    snprintf(tmp, sizeof tmp, "%s/imported", dir);
    OK(hf_import(hf, tmp));
    float *host2 = calloc(P, sizeof *host2);
    assert_non_null(host2);
    OK(model_weights_load(tmp, l, host2));
    assert_memory_equal(host, host2, P * sizeof *host);
    char exp_dir[900];
    snprintf(exp_dir, sizeof exp_dir, "%s/exported", dir);
    OK(hf_export(tmp, exp_dir));
    snprintf(out_w, sizeof out_w, "%s/model.safetensors", exp_dir);
    expect_same_tensors(src_w, out_w);
    expect_same_tensors(out_w, src_w);

    free(host2);
    free(g0);
    free(logits);
    free(inp);
    free(ids);
    free(tg);
    free(want_logits);
    free(want_loss);
    free(host);
    model_destroy(m);
    model_destroy(mr);
    optim_destroy(opt);
    model_local_free(&lh);
    free(tp);
    free(tg_);
    free(tm);
    free(tv);
    backend_destroy(be);
    model_layout_destroy(l);
}

static void test_gpt2_tied(void **s) { (void)s; run_config("gpt2_tied"); }
static void test_gpt2_untied(void **s) { (void)s; run_config("gpt2_untied"); }
static void test_llama_gqa(void **s) { (void)s; run_config("llama_gqa"); }
static void test_llama_untied(void **s) { (void)s; run_config("llama_untied"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_tied),
        cmocka_unit_test(test_gpt2_untied),
        cmocka_unit_test(test_llama_gqa),
        cmocka_unit_test(test_llama_untied),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
