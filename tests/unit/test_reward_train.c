/* Reward-model training (train.objective = reward) through the production
 * job against PyTorch: tests/reference/make_reward_reference.py's golden
 * data (a GPT2ForSequenceClassification and a LlamaForSequenceClassification
 * folder, pair batches, TRL RewardTrainer's -logsigmoid(r_c - r_r).mean(),
 * every gradient, and 3 steps of torch.optim.AdamW + clip_grad_norm_ +
 * LambdaLR; see that script). The job starts from the folder
 * (model.init_from; model.head = score from its architectures), runs 3
 * train_step_batch calls on this rank's pairs of each global batch (pairs
 * [r P/N, (r+1) P/N): rows 2p, 2p+1 of a pair stay together), in one
 * micro-batch and, where a rank has 2 pairs or more, in 2 (grad_accum), and
 * compares:
 * step 1's loss (<= 1e-5) and accuracy / margin metrics, step 1's reduced
 * gradient (every parameter <= 1e-5), every parameter after 3 steps
 * (<= 1e-5), and the job's export (train_job_export): a
 * <Arch>ForSequenceClassification folder with the reference's tensor names,
 * shapes and config keys (tests/tools/reward_hf_check.py --layout-only)
 * whose weights, read back, are the trained ones bit for bit.
 * World size 1 is the ctest run; tests/integration/test_reward_train_mpi.sh
 * runs it at 2 and 4 ranks (FSDP full_shard over every rank). */
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
#include "model/model.h"
#include "parallel/topology.h"
#include "train/train.h"
#include "support/golden.h"
#include "support/golden_job.h"

static topology g_topo;
static char g_dir[512];

static void run_config(const char *name, int accum) {
    char dir[700], hf[800], out[800];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    hid_t f = golden_open(dir);
    hsize_t dims[3];
    size_t n_ids = 0, n_tg = 0, n1 = 0;
    uint32_t *inp = golden_read_tokens(f, "input_ids", &n_ids, dims);
    int32_t *tg = golden_read_i32(f, "targets", &n_tg, NULL);
    double *want_loss = golden_read(f, "loss", &n1);
    int S = (int)golden_attr(f, "steps"), B = (int)dims[1], T = (int)dims[2];
    int pairs = B / 2;
    assert_true(pairs % g_topo.world == 0);

    sl_config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    golden_job_config(cfg, hf, f, pairs / g_topo.world / accum, accum, T); /* pairs per micro-batch */
    cfg->train.objective = TRAIN_OBJECTIVE_REWARD;
    cfg->data.mode = DATA_MODE_PAIRS;
    OK(config_finalize(cfg));
    train_job j;
    OK(train_job_setup(&j, cfg, &g_topo, &(train_setup_opts){.synthetic = true}));
    assert_int_equal(cfg->model.head, MODEL_HEAD_SCORE);
    assert_string_equal(j.pobj->name, "reward");
    const model_layout *l = j.layout;
    size_t P = (size_t)l->total_numel;
    float *grads = malloc(P * sizeof *grads), *params = malloc(P * sizeof *params);
    float *back = malloc(P * sizeof *back);
    assert_true(grads && params && back);

    /* this rank's tokens per global batch: accum micro-batches of 2 rows per pair, consecutive */
    size_t rows = (size_t)2 * (size_t)cfg->train.micro_batch * (size_t)accum * (size_t)T;
    size_t first = (size_t)g_topo.rank * rows, BT = (size_t)B * (size_t)T;
    double loss1 = 0, acc1 = 0, margin1 = 0;
    int64_t pairs1 = 0;
    for (int s = 1; s <= S; s++) {
        train_step_result r;
        size_t off = (size_t)(s - 1) * BT + first;
        OK(train_step_batch(&j, inp + off, tg + off, &r));
        assert_false(r.skipped);
        if (s == 1) {
            loss1 = r.loss;
            pairs1 = r.pairs;
            acc1 = r.metrics[0];
            margin1 = r.metrics[1];
            golden_gather_grads(j.shard, j.fs, l, grads);
        }
    }
    OK(train_group_gather(&j.groups[0], params));
    char worst_g[256] = "", worst_p[256] = "";
    const char *prefix = cfg->model.arch == MODEL_ARCH_GPT2 ? "transformer." : "";
    double e_grads = golden_compare_params(f, "grads", l, prefix, grads, worst_g, sizeof worst_g);
    double e_params = golden_compare_params(f, "params_after", l, prefix, params, worst_p, sizeof worst_p);
    double e_loss = fabs(loss1 - want_loss[0]) / fabs(want_loss[0]);
    double want_acc = golden_attr(f, "accuracy"), want_margin = golden_attr(f, "margin");
    H5Fclose(f);

    /* the export: transformers' names and config, the trained weights */
    snprintf(out, sizeof out, "%s/export_w%d_a%d", dir, g_topo.world, accum);
    OK(train_job_export(&j, out));
    MPI_Barrier(g_topo.comm);
    if (g_topo.rank == 0) {
        char args[2048];
        snprintf(args, sizeof args, "--layout-only %s %s", out, hf);
        assert_int_equal(golden_run_python("tools/reward_hf_check.py", args), 0);
        OK(hf_load_params(out, l, back, NULL));
        assert_memory_equal(back, params, P * sizeof *back);
    }
    train_job_teardown(&j);

    if (g_topo.rank == 0)
        printf("%-6s world %d accum %d  loss %.6f (%.2e)  accuracy %.3f  margin %.4f  grads %.2e (worst %s)  params "
               "after %d steps %.2e (worst %s)\n",
               name, g_topo.world, accum, loss1, e_loss, acc1, margin1, e_grads, worst_g, S, e_params, worst_p);
    assert_int_equal(pairs1, pairs);
    assert_true(e_loss <= 1e-5);
    assert_true(fabs(acc1 - want_acc) < 1e-12);
    assert_true(fabs(margin1 - want_margin) <= 1e-5 * (fabs(want_margin) + 1e-3));
    assert_true(e_grads <= 1e-5);
    assert_true(e_params <= 1e-5);
    free(grads);
    free(params);
    free(back);
    free(cfg);
    free(inp);
    free(tg);
    free(want_loss);
}

/* gradient accumulation over 2 micro-batches where each rank has 2 pairs or more */
static void test_gpt2(void **s) {
    (void)s;
    run_config("gpt2", 1);
    if (4 / g_topo.world >= 2)
        run_config("gpt2", 2);
}
static void test_llama(void **s) {
    (void)s;
    run_config("llama", 1);
    if (4 / g_topo.world >= 2)
        run_config("llama", 2);
}

/* LoRA with a reward model is refused with a clear message (not implemented) */
static void test_lora_refused(void **s) {
    (void)s;
    sl_config cfg;
    config_defaults(&cfg);
    cfg.train.objective = TRAIN_OBJECTIVE_REWARD;
    cfg.lora.enabled = true;
    OK(config_finalize(&cfg));
    assert_int_equal(cfg.model.head, MODEL_HEAD_SCORE);
    const pair_objective *o = NULL;
    assert_int_equal(pair_objective_for(&cfg, &o), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "modules_to_save"));
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_lora_refused),
    };
    static const golden_suite suite = {"test_reward_train", "/tmp/shardlm_rmtrain.XXXXXX",
                                       "make_reward_reference.py"};
    return golden_suite_main(&argc, &argv, &suite, &g_topo, g_dir, sizeof g_dir, tests, sizeof tests / sizeof tests[0]);
}
