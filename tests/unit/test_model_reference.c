/* The model and the production training step against PyTorch:
 * tests/reference/make_reference.py (run here, with Debian's python3-torch)
 * writes a Hugging Face folder and golden.h5 per configuration; this test
 * builds the training job on it (train/train.h: model.init_from = the folder,
 * CPU fp32, FSDP over the ranks of this run: world size 1 from ctest,
 * 2 under mpirun from tests/integration/test_model_reference_mpi.sh, each
 * rank holding B / world rows of every global batch) and compares
 *   logits through the job's model and FSDP hooks  (rel. error by norm <= 1e-5)
 *   the loss of step 1 (train_step_batch)           (<= 1e-6)
 *   every parameter gradient of step 1, read from the FSDP gradient shards
 *   and all-gathered over the shard group           (<= 1e-4 each)
 *   every parameter after all steps (warmup, cosine decay, active clipping;
 *   train_group_gather)                             (<= 1e-5 each).
 * llama_skip's step 2 gets a NaN gradient (train/faults.h, rank 0): the step
 * must report skipped and the parameters after 4 steps must match PyTorch's
 * AdamW, which does not count the skipped step; its golden file also holds
 * the parameters the step count would give if it advanced on the skip, and
 * those must differ from ours by far more than the tolerance.
 * The configurations cover gpt2, llama (GQA, tied/untied, rope_parameters,
 * llama3 and linear rope scaling), qwen2 (q/k/v biases, tied and untied),
 * qwen3 (q/k norms, head_dim != d_model / n_head, GQA) and mistral (a
 * sliding window longer than the sequences, explicit head_dim).
 * It also checks that activation recomputation gives bitwise the same loss,
 * gradients and parameters, that hf_save and import -> export reproduce
 * the folder's tensor data byte for byte and import -> export its
 * config.json byte for byte (rank 0), and (test_hf_refusals) that configs
 * shardlm cannot compute exactly are refused with a message naming the key.
 * Every rank compares the
 * same gathered data, so every rank passes or fails the same assertions, and
 * any failure fails the test through cmocka's exit code. */
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "model/hf.h"
#include "model/model.h"
#include "parallel/topology.h"
#include "runtime/fsutil.h"
#include "runtime/safetensors.h"
#include "train/train.h"
#include "support/golden.h"
#include "support/golden_job.h"

#define MAX_STEPS 8

static topology g_topo;
static char g_dir[512];

/* ---- comparisons ---- */

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

/* a/name and b/name have the same bytes. */
static void expect_same_file(const char *a, const char *b, const char *name) {
    char pa[900], pb[900];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    OK(fs_read_file(pa, &x, &nx, 1u << 20));
    OK(fs_read_file(pb, &y, &ny, 1u << 20));
    if (nx != ny || memcmp(x, y, nx) != 0)
        fail_msg("%s and %s differ", pa, pb);
    free(x);
    free(y);
}

/* ---- one configuration's golden data ---- */

typedef struct {
    char hf[800];
    hid_t f;
    int S, B, T, V;
    int skip_step;    /* 1-based step whose gradient is made non-finite; 0: none */
    size_t BT;        /* one global batch, B * T */
    uint32_t *inputs; /* (S, B, T): batch s - 1 is optimizer step s's */
    int32_t *targets; /* (S, B, T), -100 = ignored */
} golden_case;

/* What one run of the training job gives, gathered on every rank. */
typedef struct {
    float *logits;  /* (B, T, V) of batch 0 before step 1 */
    double loss1;   /* step 1's loss */
    float *grads;   /* step 1's reduced gradient, the layout's host order */
    float *params;  /* after S steps, the layout's host order */
    bool skipped[MAX_STEPS];
    double clip[MAX_STEPS];
    int64_t adam_steps; /* Adam's step count after S steps */
} job_run;

static void job_run_free(job_run *r) {
    free(r->logits);
    free(r->grads);
    free(r->params);
}

/* The job's config for gc on this run's world size (see the file comment). */
static void job_config(const golden_case *gc, bool recompute, sl_config *cfg) {
    golden_job_config(cfg, gc->hf, gc->f, gc->B / g_topo.world, 1, gc->T);
    cfg->train.recompute = recompute;
}

/* Builds the training job for gc, computes batch 0's logits through its
 * model and hooks, then runs S production steps (train_step_batch) on this
 * rank's rows of batches 0 .. S-1, with a NaN gradient on rank 0 at
 * gc->skip_step. */
static void run_job(const golden_case *gc, bool recompute, job_run *out) {
    memset(out, 0, sizeof *out);
    assert_true(gc->S <= MAX_STEPS);
    sl_config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    job_config(gc, recompute, cfg);
    train_job j;
    OK(train_job_setup(&j, cfg, &g_topo, &(train_setup_opts){.synthetic = true}));
    if (gc->skip_step > 0) {
        j.faults.nan_grad_rank = 0;
        j.faults.nan_grad_step = gc->skip_step;
    }
    const model_layout *l = j.layout;
    size_t P = (size_t)l->total_numel;
    size_t rows = (size_t)cfg->train.micro_batch * (size_t)gc->T; /* this rank's tokens per batch */
    size_t first = (size_t)g_topo.rank * rows;                    /* its first, in a global batch */
    float *mine = malloc(rows * (size_t)gc->V * sizeof *mine);
    out->logits = malloc(gc->BT * (size_t)gc->V * sizeof *out->logits);
    out->grads = malloc(P * sizeof *out->grads);
    out->params = malloc(P * sizeof *out->params);
    assert_true(mine && out->logits && out->grads && out->params);

    /* ranks hold consecutive rows, so the all-gather is the global batch */
    OK(model_forward_logits(j.mdl, &j.hooks, gc->inputs + first, mine));
    OK(comm_all_gather(j.world, mine, out->logits, rows * (size_t)gc->V, SL_DTYPE_F32));
    free(mine);

    for (int s = 1; s <= gc->S; s++) {
        size_t off = (size_t)(s - 1) * gc->BT + first;
        train_step_result r;
        OK(train_step_batch(&j, gc->inputs + off, gc->targets + off, &r));
        out->skipped[s - 1] = r.skipped;
        out->clip[s - 1] = r.clip_factor;
        if (s == 1) {
            out->loss1 = r.loss;
            golden_gather_grads(j.shard, j.fs, j.layout, out->grads);
        }
    }
    OK(train_group_gather(&j.groups[0], out->params));
    out->adam_steps = optim_steps_applied(j.opt);
    train_job_teardown(&j);
    free(cfg);
}

/* ---- the test ---- */

static void run_config(const char *name) {
    char dir[700], tmp[800];
    golden_case gc;
    memset(&gc, 0, sizeof gc);
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(gc.hf, sizeof gc.hf, "%s/hf", dir);

    /* the layout and the folder's weights, for the comparisons and the export */
    sl_config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    config_defaults(cfg);
    OK(model_config_from_dir(gc.hf, cfg));
    model_layout *l = NULL;
    OK(model_layout_create(&cfg->model, false, &l));
    size_t P = (size_t)l->total_numel;
    float *host = malloc(P * sizeof *host);
    assert_non_null(host);
    hf_info info;
    OK(hf_load_params(gc.hf, l, host, &info));

    gc.f = golden_open(dir);
    hsize_t dims[3];
    size_t n_ids = 0, n_tg = 0, n_lg = 0, n1 = 0;
    gc.inputs = golden_read_tokens(gc.f, "input_ids", &n_ids, dims);
    gc.targets = golden_read_i32(gc.f, "targets", &n_tg, NULL);
    double *want_logits = golden_read(gc.f, "logits", &n_lg);
    double *want_loss = golden_read(gc.f, "loss", &n1);
    gc.S = (int)golden_attr(gc.f, "steps");
    gc.skip_step = H5Aexists(gc.f, "skip_step") > 0 ? (int)golden_attr(gc.f, "skip_step") : 0;
    gc.B = (int)dims[1];
    gc.T = (int)dims[2];
    gc.V = cfg->model.vocab_size;
    gc.BT = (size_t)gc.B * (size_t)gc.T;
    assert_int_equal(dims[0], (hsize_t)gc.S);
    assert_int_equal(n_lg, gc.BT * (size_t)gc.V);
    if (gc.B % g_topo.world != 0)
        fail_msg("%s: batch %d does not split over %d ranks (make_reference.py: choose B divisible by "
                 "the world sizes this test runs at)", name, gc.B, g_topo.world);

    job_run a, rc;
    run_job(&gc, false, &a);
    double e_logits = golden_rel_err(a.logits, want_logits, n_lg);
    double e_loss = fabs(a.loss1 - want_loss[0]) / fabs(want_loss[0]);
    char worst_g[256] = "", worst_p[256] = "", worst_adv[256] = "";
    double e_grads = golden_compare_params(gc.f, "grads", l, info.prefix, a.grads, worst_g, sizeof worst_g);
    double e_params = golden_compare_params(gc.f, "params_after", l, info.prefix, a.params, worst_p, sizeof worst_p);
    double e_advance = 0;
    if (gc.skip_step > 0)
        e_advance = golden_compare_params(gc.f, "params_after_advance", l, info.prefix, a.params, worst_adv,
                                   sizeof worst_adv);

    /* recomputation: bitwise the same loss, gradients and updates */
    run_job(&gc, true, &rc);
    assert_true(rc.loss1 == a.loss1);
    assert_memory_equal(rc.grads, a.grads, P * sizeof *a.grads);
    assert_memory_equal(rc.params, a.params, P * sizeof *a.params);
    H5Fclose(gc.f);

    if (g_topo.rank == 0) {
        printf("%-13s logits %.2e  loss %.2e  grads %.2e (worst %s)  params after %d steps %.2e (worst %s)\n",
               name, e_logits, e_loss, e_grads, worst_g, gc.S, e_params, worst_p);
        if (gc.skip_step > 0)
            printf("%-13s step %d skipped, Adam's step count %lld after %d steps; had the count advanced on "
                   "the skip: params %.2e (worst %s)\n",
                   name, gc.skip_step, (long long)a.adam_steps, gc.S, e_advance, worst_adv);
        fflush(stdout);
    }
    for (int s = 1; s <= gc.S; s++) {
        if (a.skipped[s - 1] != (s == gc.skip_step))
            fail_msg("%s step %d: skipped = %d, expected %d", name, s, a.skipped[s - 1], s == gc.skip_step);
        if (s != gc.skip_step && !(a.clip[s - 1] < 1.0)) /* the reference checked clipping is active */
            fail_msg("%s step %d: clip factor %g, expected < 1 (clipping active)", name, s, a.clip[s - 1]);
    }
    assert_true(e_logits <= 1e-5);
    assert_true(e_loss <= 1e-6);
    assert_true(e_grads <= 1e-4);
    assert_true(e_params <= 1e-5);
    assert_int_equal(a.adam_steps, gc.S - (gc.skip_step > 0));
    /* a step count that advanced on the skip misses by far more than the
     * tolerance: this comparison can tell the semantics apart */
    if (gc.skip_step > 0)
        assert_true(e_advance > 1e-3);

    /* export: hf_save of the loaded params, and import -> export, both
     * byte-identical (local: rank 0, after the last collective) */
    if (g_topo.rank == 0) {
        char src_w[900], out_w[900];
        snprintf(src_w, sizeof src_w, "%s/model.safetensors", gc.hf);
        snprintf(tmp, sizeof tmp, "%s/saved", dir);
        OK(hf_save(tmp, l, host, SL_DTYPE_F32, info.prefix));
        snprintf(out_w, sizeof out_w, "%s/model.safetensors", tmp);
        expect_same_tensors(src_w, out_w);
        expect_same_tensors(out_w, src_w);
        snprintf(tmp, sizeof tmp, "%s/imported", dir);
        OK(hf_import(gc.hf, tmp));
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
        expect_same_file(gc.hf, exp_dir, "config.json");
        free(host2);
    }

    job_run_free(&a);
    job_run_free(&rc);
    free(gc.inputs);
    free(gc.targets);
    free(want_logits);
    free(want_loss);
    free(host);
    free(cfg);
    model_layout_destroy(l);
}

static void test_gpt2_tied(void **s) { (void)s; run_config("gpt2_tied"); }
static void test_gpt2_untied(void **s) { (void)s; run_config("gpt2_untied"); }
static void test_llama_gqa(void **s) { (void)s; run_config("llama_gqa"); }
static void test_llama_untied(void **s) { (void)s; run_config("llama_untied"); }
static void test_llama_skip(void **s) { (void)s; run_config("llama_skip"); }
static void test_llama3_rope(void **s) { (void)s; run_config("llama3_rope"); }
static void test_llama_linear(void **s) { (void)s; run_config("llama_linear"); }
static void test_qwen2_tied(void **s) { (void)s; run_config("qwen2_tied"); }
static void test_qwen2_untied(void **s) { (void)s; run_config("qwen2_untied"); }
static void test_qwen3_gqa(void **s) { (void)s; run_config("qwen3_gqa"); }
static void test_mistral(void **s) { (void)s; run_config("mistral"); }

/* hf_read_config of a config.json that is the mistral golden one with
 * `edit` merged in (a JSON object; null members are removed) must fail with
 * status st and a message containing want; want NULL: must succeed (then
 * the config is returned in out). Each rank uses its own folder. */
static void hf_config_case(const char *edit, sl_status st, const char *want, sl_config *out) {
    char base[800], dir[600], path[700];
    snprintf(base, sizeof base, "%s/mistral/hf/config.json", g_dir);
    snprintf(dir, sizeof dir, "%s/refuse.%d", g_dir, g_topo.rank);
    OK(fs_mkdirs(dir));
    char *text = NULL;
    size_t len = 0;
    OK(fs_read_file(base, &text, &len, 1u << 20));
    cJSON *root = cJSON_Parse(text), *e = cJSON_Parse(edit);
    free(text);
    assert_true(root && e);
    for (cJSON *it = e->child; it; it = it->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, it->string);
        if (!cJSON_IsNull(it))
            cJSON_AddItemToObject(root, it->string, cJSON_Duplicate(it, true));
    }
    char *js = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/config.json", dir);
    OK(fs_write_atomic(path, js, strlen(js)));
    free(js);
    cJSON_Delete(root);
    cJSON_Delete(e);
    sl_config cfg;
    config_defaults(&cfg);
    cfg.data.seq_len = 100; /* <= the golden max_position_embeddings 128 */
    sl_status got = hf_read_config(dir, &cfg.model, NULL);
    if (got == SL_OK && want)
        got = config_finalize(&cfg);
    if (!want) {
        if (got != SL_OK)
            fail_msg("%s: unexpected error %s", edit, sl_error_message());
        if (out)
            *out = cfg;
        return;
    }
    if (got != st || !strstr(sl_error_message(), want))
        fail_msg("%s: status %d, message \"%s\"; expected %d and \"%s\"", edit, got,
                 got == SL_OK ? "" : sl_error_message(), st, want);
}

static void test_hf_refusals(void **s) {
    (void)s;
    /* a window shorter than the default data.seq_len 256: refused, never silently ignored */
    hf_config_case("{\"sliding_window\": 64}", SL_ERR_INVALID, "exceeds \"model.sliding_window\" = 64", NULL);
    hf_config_case("{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", SL_ERR_UNSUPPORTED,
                   "rope_scaling with rope_type yarn is not supported", NULL);
    hf_config_case("{\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}", SL_ERR_FORMAT,
                   "rope_scaling.low_freq_factor must be a number", NULL);
    hf_config_case("{\"model_type\": \"qwen3\", \"attention_bias\": true}", SL_ERR_UNSUPPORTED,
                   "attention_bias = true is not supported", NULL);
    hf_config_case("{\"model_type\": \"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 8}",
                   SL_ERR_INVALID, "exceeds \"model.sliding_window\" = 8", NULL);
    hf_config_case("{\"model_type\": \"gemma\"}", SL_ERR_UNSUPPORTED, "model_type \"gemma\" is not supported", NULL);
    /* Qwen3Config's default head_dim is 128, not hidden / heads */
    sl_config c;
    hf_config_case("{\"model_type\": \"qwen3\", \"head_dim\": null}", SL_OK, NULL, &c);
    assert_int_equal(c.model.arch, MODEL_ARCH_QWEN3);
    assert_int_equal(config_head_dim(&c.model), 128);
    /* Mistral v0.2+: sliding_window null is no window */
    hf_config_case("{\"sliding_window\": null}", SL_OK, NULL, &c);
    assert_int_equal(c.model.sliding_window, 0);
    assert_int_equal(c.model.arch, MODEL_ARCH_MISTRAL);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_tied),
        cmocka_unit_test(test_gpt2_untied),
        cmocka_unit_test(test_llama_gqa),
        cmocka_unit_test(test_llama_untied),
        cmocka_unit_test(test_llama_skip),
        cmocka_unit_test(test_llama3_rope),
        cmocka_unit_test(test_llama_linear),
        cmocka_unit_test(test_qwen2_tied),
        cmocka_unit_test(test_qwen2_untied),
        cmocka_unit_test(test_qwen3_gqa),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_hf_refusals),
    };
    static const golden_suite suite = {"test_model_reference", "/tmp/shardlm_modelref.XXXXXX", "make_reference.py"};
    return golden_suite_main(&argc, &argv, &suite, &g_topo, g_dir, sizeof g_dir, tests, sizeof tests / sizeof tests[0]);
}
