/* DPO through the production training step against PyTorch with TRL's
 * formulas: tests/reference/make_dpo_reference.py (run here, with Debian's
 * python3-torch; the formulas mirror TRL v0.23.0's DPOTrainer, cited
 * there) writes a Hugging Face folder, for LoRA a PEFT adapter, and
 * golden.h5 per configuration: sigmoid, sigmoid with label smoothing, ipo
 * (per-token averaged logps) and robust, each for full fine-tuning (the
 * reference a frozen copy of the start) and LoRA (the reference the base
 * with the adapters off), 3 steps of torch.optim.AdamW with
 * clip_grad_norm_ on 4 preference pairs per global batch.
 *
 * This test builds the training job (train/train.h: train.objective = dpo,
 * model.init_from = the folder, lora.init_from = the adapter, CPU fp32,
 * FSDP over the ranks of this run: world size 1 from ctest, 2 and 4 under
 * mpirun from tests/integration/test_dpo_reference_mpi.sh; each rank holds
 * its pairs of every global batch in data/loader.h order, in grad_accum
 * micro-batches where it has 2 or more) and compares
 *   each step's DPO loss (train_step_batch)           (rel. <= 1e-5)
 *   step 1's TRL metrics (rewards/chosen ... logps/rejected: error / max(1, value)
 *   <= 1e-5; accuracies exact)
 *   every trainable tensor's step-1 gradient, gathered (rel. by norm <= 1e-5)
 *   every trainable tensor after 3 steps              (rel. by norm <= 1e-5)
 * and, where the policy starts equal to the reference (full fine-tuning;
 * LoRA with B = 0), that step 1's sigmoid/robust loss is ln 2 to 1e-12
 * (h = 0 exactly: the reference rows are computed by the same kernels on
 * the same weights), and that the full fine-tuning reference is still the
 * starting model bit for bit after the updates. Every rank compares the
 * same gathered data. */
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

#include "model/hf.h"
#include "parallel/topology.h"
#include "train/train.h"
#include "support/golden.h"
#include "support/golden_job.h"

#define STEPS 3

static topology g_topo;
static char g_dir[512];

static void run_config(const char *name) {
    char dir[700], hf[800], adapter[800];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(adapter, sizeof adapter, "%s/adapter", dir);
    hid_t f = golden_open(dir);
    hsize_t dims[3];
    size_t n_ids = 0, n_tg = 0, n_l = 0, n_m = 0;
    uint32_t *inputs = golden_read_tokens(f, "input_ids", &n_ids, dims);
    int32_t *tg = golden_read_i32(f, "targets", &n_tg, NULL);
    double *want_loss = golden_read(f, "losses", &n_l);
    double *want_m = golden_read(f, "metrics1", &n_m);
    assert_int_equal((int)dims[0], STEPS);
    assert_int_equal(n_l, STEPS);
    int rows = (int)dims[1], T = (int)dims[2], NP = rows / 2;
    bool lora = golden_attr(f, "lora") != 0;
    bool same_start = golden_attr(f, "policy_is_reference") != 0;
    if (NP % g_topo.world != 0)
        fail_msg("%s: %d pairs do not split over %d ranks", name, NP, g_topo.world);
    int mine = NP / g_topo.world, A = mine >= 2 ? 2 : 1, B = mine / A;

    sl_config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    golden_job_config(cfg, hf, f, B, A, T);
    cfg->train.objective = TRAIN_OBJECTIVE_DPO;
    cfg->dpo.beta = golden_attr(f, "beta");
    cfg->dpo.loss = (int)golden_attr(f, "loss_type");
    cfg->dpo.label_smoothing = golden_attr(f, "label_smoothing");
    if (lora) {
        cfg->lora.enabled = true;
        snprintf(cfg->lora.init_from, sizeof cfg->lora.init_from, "%s", adapter);
    }

    train_job j;
    OK(train_job_setup(&j, cfg, &g_topo, &(train_setup_opts){.synthetic = true}));
    assert_non_null(j.pobj);
    assert_true(lora ? j.ref_fs == NULL : j.ref_fs != NULL);
    const train_group *tg_group = &j.groups[lora ? 1 : 0];
    const model_layout *l = tg_group->layout;
    size_t P = (size_t)l->total_numel;
    float *grads = calloc(P, sizeof *grads), *params = calloc(P, sizeof *params);
    assert_true(grads && params);
    double loss[STEPS], metrics[PAIR_MAX_METRICS];
    bool clipped[STEPS];
    /* this rank's pairs: [rank * mine, (rank + 1) * mine) of each global batch */
    size_t first = (size_t)g_topo.rank * (size_t)mine * 2 * (size_t)T;
    for (int s = 1; s <= STEPS; s++) {
        size_t off = (size_t)(s - 1) * (size_t)rows * (size_t)T + first;
        train_step_result r;
        OK(train_step_batch(&j, inputs + off, tg + off, &r));
        assert_false(r.skipped);
        assert_int_equal(r.pairs, NP);
        loss[s - 1] = r.loss;
        clipped[s - 1] = r.clip_factor < 1.0;
        if (s == 1) {
            memcpy(metrics, r.metrics, sizeof metrics);
            assert_int_equal(r.n_metrics, 6);
            golden_gather_grads(j.shard, tg_group->fs, l, grads);
        }
    }
    OK(train_group_gather(tg_group, params));
    /* the full fine-tuning reference is the start, untouched */
    bool ref_intact = true;
    if (!lora) {
        float *ref = malloc(j.layout->total_numel * sizeof *ref), *start = malloc(j.layout->total_numel * sizeof *start);
        assert_true(ref && start);
        OK(train_group_gather(&j.ref, ref));
        hf_info info;
        OK(hf_load_params(hf, j.layout, start, &info));
        ref_intact = memcmp(ref, start, j.layout->total_numel * sizeof *ref) == 0;
        free(ref);
        free(start);
    }
    char wg[300] = "", wp[300] = "";
    double e_grads = golden_compare_params(f, "grads", l, "", grads, wg, sizeof wg);
    double e_params = golden_compare_params(f, "params_after", l, "", params, wp, sizeof wp);
    train_job_teardown(&j); /* l was the job's */
    double e_loss = 0, e_metric = 0;
    for (int s = 0; s < STEPS; s++)
        e_loss = fmax(e_loss, fabs(loss[s] - want_loss[s]) / fabs(want_loss[s]));
    for (int i = 0; i < 6; i++)
        if (i != 2)
            e_metric = fmax(e_metric, fabs(metrics[i] - want_m[i]) / fmax(1.0, fabs(want_m[i])));
    if (g_topo.rank == 0) {
        printf("%-22s loss %.2e (step 1 %.15f)  metrics %.2e  acc %.2f  grads %.2e (%s)  params %.2e (%s)\n", name,
               e_loss, loss[0], e_metric, metrics[2], e_grads, wg, e_params, wp);
        fflush(stdout);
    }
    for (int s = 0; s < STEPS; s++)
        if (!clipped[s])
            fail_msg("%s step %d: not clipped (the reference clipped every step)", name, s + 1);
    assert_true(e_loss <= 1e-5);
    assert_true(e_metric <= 1e-5);
    assert_true(metrics[2] == want_m[2]);
    assert_true(e_grads <= 1e-5);
    assert_true(e_params <= 1e-5);
    assert_true(ref_intact);
    if (same_start && cfg->dpo.loss != DPO_LOSS_IPO)
        assert_true(fabs(loss[0] - log(2.0)) <= 1e-12);
    H5Fclose(f);
    free(grads);
    free(params);
    free(inputs);
    free(tg);
    free(want_loss);
    free(want_m);
    free(cfg);
}

static void test_full_gpt2_sigmoid(void **s) { (void)s; run_config("full_gpt2_sigmoid"); }
static void test_full_llama_sigmoid_ls(void **s) { (void)s; run_config("full_llama_sigmoid_ls"); }
static void test_full_llama_ipo(void **s) { (void)s; run_config("full_llama_ipo"); }
static void test_full_gpt2_robust(void **s) { (void)s; run_config("full_gpt2_robust"); }
static void test_lora_llama_sigmoid(void **s) { (void)s; run_config("lora_llama_sigmoid"); }
static void test_lora_gpt2_robust(void **s) { (void)s; run_config("lora_gpt2_robust"); }
static void test_lora_llama_ipo(void **s) { (void)s; run_config("lora_llama_ipo"); }
static void test_lora_gpt2_fresh(void **s) { (void)s; run_config("lora_gpt2_fresh"); }

/* train.objective = reward has its own entry (train/pairs.h; tested against
 * PyTorch by test_reward_train): no reference model, TRL RewardTrainer's
 * metric names; with LoRA it is refused, naming the key. */
static void test_reward_entry(void **s) {
    (void)s;
    sl_config c;
    config_defaults(&c);
    c.train.objective = TRAIN_OBJECTIVE_REWARD;
    assert_int_equal(config_apply_objective(&c), SL_OK);
    const pair_objective *o = NULL;
    OK(pair_objective_for(&c, &o));
    assert_string_equal(o->name, "reward");
    assert_false(o->needs_reference);
    assert_string_equal(o->metric_names[0], "accuracy");
    c.lora.enabled = true;
    assert_int_equal(pair_objective_for(&c, &o), SL_ERR_INVALID);
    assert_null(o);
    assert_non_null(strstr(sl_error_message(), "train.objective = reward with lora.enabled is not implemented"));
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_gpt2_sigmoid),  cmocka_unit_test(test_full_llama_sigmoid_ls),
        cmocka_unit_test(test_full_llama_ipo),     cmocka_unit_test(test_full_gpt2_robust),
        cmocka_unit_test(test_lora_llama_sigmoid), cmocka_unit_test(test_lora_gpt2_robust),
        cmocka_unit_test(test_lora_llama_ipo),     cmocka_unit_test(test_lora_gpt2_fresh),
        cmocka_unit_test(test_reward_entry),
    };
    static const golden_suite suite = {"test_dpo_reference", "/tmp/shardlm_dporef.XXXXXX", "make_dpo_reference.py"};
    return golden_suite_main(&argc, &argv, &suite, &g_topo, g_dir, sizeof g_dir, tests, sizeof tests / sizeof tests[0]);
}
