/* Unit tests for runtime/config: defaults, files, overrides, and every error
 * path (unknown key with suggestion, wrong type, range, duplicate, bad JSON,
 * cross-field checks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/config.h"
#include "runtime/fsutil.h"

static sl_config cfg;

static void expect_error(const char *json, const char *needle) {
    config_defaults(&cfg);
    sl_status st = config_apply_json(&cfg, json, "x.json");
    if (st == SL_OK || !strstr(sl_error_message(), needle))
        fail_msg("json %s: expected error containing [%s], got status %d message [%s]", json, needle,
                 st, sl_error_message());
}

static void test_defaults(void **state) {
    (void)state;
    config_defaults(&cfg);
    assert_int_equal(cfg.model.arch, MODEL_ARCH_GPT2);
    assert_int_equal(cfg.train.micro_batch, 4);
    assert_int_equal(cfg.parallel.fsdp_mode, FSDP_MODE_FULL_SHARD);
    assert_true(cfg.model.tie_embeddings);
    assert_float_equal(cfg.optim.lr, 3e-4, 1e-12);
    assert_int_equal(cfg.lora.targets.n, 2);
    assert_string_equal(cfg.lora.targets.items[1], "v_proj");
    assert_string_equal(cfg.logging.level, "info");
    assert_int_equal(config_finalize(&cfg), SL_OK);
    assert_int_equal(cfg.model.n_kv_head, cfg.model.n_head);
    assert_int_equal(cfg.model.d_ff, 4 * cfg.model.d_model);
}

static void test_good_file_and_overrides(void **state) {
    (void)state;
    config_defaults(&cfg);
    const char *json = "{\"model\": {\"arch\": \"llama\", \"n_layer\": 3, \"d_model\": 96, \"n_head\": 6,"
                       " \"n_kv_head\": 2, \"d_ff\": 256, \"rope_theta\": 500000},"
                       " \"optim\": {\"lr\": 1e-3, \"lr_warmup\": 10, \"lr_schedule\": \"linear\"},"
                       " \"lora\": {\"targets\": [\"q_proj\", \"k_proj\", \"o_proj\"]},"
                       " \"parallel\": {\"fsdp_mode\": \"hybrid\"}}";
    assert_int_equal(config_apply_json(&cfg, json, "x.json"), SL_OK);
    assert_int_equal(config_set_override(&cfg, "optim.lr=2e-4"), SL_OK);
    assert_int_equal(config_set_override(&cfg, "train.run_dir=/tmp/run 1"), SL_OK);
    assert_int_equal(config_set_override(&cfg, "lora.targets=gate_proj, up_proj"), SL_OK);
    assert_int_equal(config_set_override(&cfg, "model.tie_embeddings=false"), SL_OK);
    assert_int_equal(config_set_override(&cfg, "data.train=123"), SL_OK); /* number as string key */
    assert_int_equal(config_finalize(&cfg), SL_OK);
    assert_int_equal(cfg.model.arch, MODEL_ARCH_LLAMA);
    assert_int_equal(cfg.model.n_kv_head, 2);
    assert_float_equal(cfg.model.rope_theta, 500000, 0);
    assert_float_equal(cfg.optim.lr, 2e-4, 1e-15);
    assert_int_equal(cfg.optim.lr_warmup, 10);
    assert_int_equal(cfg.optim.lr_schedule, LR_SCHEDULE_LINEAR);
    assert_int_equal(cfg.parallel.fsdp_mode, FSDP_MODE_HYBRID);
    assert_string_equal(cfg.train.run_dir, "/tmp/run 1");
    assert_string_equal(cfg.data.train, "123");
    assert_false(cfg.model.tie_embeddings);
    assert_int_equal(cfg.lora.targets.n, 2);
    assert_string_equal(cfg.lora.targets.items[0], "gate_proj");
    assert_string_equal(cfg.lora.targets.items[1], "up_proj");
    assert_string_equal(config_enum_name("parallel.fsdp_mode", cfg.parallel.fsdp_mode), "hybrid");
}

static void test_unknown_keys(void **state) {
    (void)state;
    expect_error("{\"optim\": {\"lr_warmpu\": 5}}",
                 "unknown key \"optim.lr_warmpu\" (did you mean \"optim.lr_warmup\"?) in x.json");
    expect_error("{\"optm\": {\"lr\": 5}}", "unknown section \"optm\" (did you mean \"optim\"?)");
    expect_error("{\"model\": {\"n_layers\": 2}}", "did you mean \"model.n_layer\"?");
    expect_error("{\"zzzzzzzz\": {\"q\": 1}}", "unknown section \"zzzzzzzz\" in x.json (run 'shardlm config keys'");
    expect_error("{\"lr\": 1}", "unknown key \"lr\" (did you mean \"optim.lr\"?)");
    config_defaults(&cfg);
    assert_int_equal(config_set_override(&cfg, "optim.lrr=1"), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "did you mean \"optim.lr\"?) in --set optim.lrr=1"));
    assert_int_equal(config_set_override(&cfg, "novalue"), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "expected --set section.key=value"));
}

static void test_type_errors(void **state) {
    (void)state;
    expect_error("{\"optim\": {\"lr\": \"fast\"}}", "\"optim.lr\" must be a number, got a string in x.json");
    expect_error("{\"train\": {\"steps\": 1.5}}", "\"train.steps\" must be an integer, got 1.5");
    expect_error("{\"train\": {\"steps\": true}}", "\"train.steps\" must be an integer, got a boolean");
    expect_error("{\"model\": {\"tie_embeddings\": 1}}", "\"model.tie_embeddings\" must be a boolean (true or false), got a number");
    expect_error("{\"model\": {\"arch\": \"gpt3\"}}", "\"model.arch\" must be one of gpt2|llama|qwen2|qwen3|mistral, got \"gpt3\"");
    expect_error("{\"data\": {\"train\": [1]}}", "\"data.train\" must be a string, got an array");
    expect_error("{\"lora\": {\"targets\": [\"q_proj\", 3]}}", "\"lora.targets\"[1] must be a string, got a number");
    expect_error("{\"optim\": 3}", "\"optim\" must be an object of keys, got a number");
    expect_error("[1, 2]", "must be a JSON object, got an array");
    config_defaults(&cfg);
    assert_int_equal(config_set_override(&cfg, "train.steps=many"), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "\"train.steps\" must be an integer, got a string in --set"));
}

static void test_range_and_duplicates(void **state) {
    (void)state;
    expect_error("{\"optim\": {\"lr\": -1}}", "\"optim.lr\" = -1 is out of range [0, 10] in x.json");
    expect_error("{\"model\": {\"n_layer\": 0}}", "\"model.n_layer\" = 0 is out of range");
    expect_error("{\"optim\": {\"lr\": 1e-4, \"lr\": 2e-4}}", "duplicate key \"optim.lr\" in x.json");
    expect_error("{\"optim\": {\"lr\": 1e-4}, \"optim\": {\"eps\": 1e-6}}", "duplicate key \"optim\" in x.json");
    expect_error("{\"optim\": {\"lr\": 1e-4,}}", "x.json is not valid JSON: syntax error at line 1");
    expect_error("{\n\"optim\": {\n\"lr\": oops}}", "syntax error at line 3, column");
    /* all or nothing: a failed apply leaves the config as it was */
    config_defaults(&cfg);
    assert_int_not_equal(config_apply_json(&cfg, "{\"optim\": {\"lr\": 0.5, \"eps\": -1}}", "y.json"), SL_OK);
    assert_float_equal(cfg.optim.lr, 3e-4, 1e-12);
}

static void test_finalize_checks(void **state) {
    (void)state;
    struct {
        const char *json;
        const char *needle;
    } cases[] = {
        {"{\"model\": {\"d_model\": 100, \"n_head\": 3}}", "\"model.d_model\" = 100 must be divisible by \"model.n_head\" = 3"},
        {"{\"model\": {\"arch\": \"llama\", \"n_head\": 6, \"n_kv_head\": 4, \"d_model\": 96, \"d_ff\": 64}}", "\"model.n_kv_head\" = 4 must divide \"model.n_head\" = 6"},
        {"{\"model\": {\"arch\": \"llama\", \"d_model\": 64, \"n_head\": 4}}", "\"model.d_ff\" must be set for llama"},
        {"{\"model\": {\"n_kv_head\": 2}}", "gpt2 has no grouped-query attention"},
        {"{\"model\": {\"head_dim\": 32}}", "\"model.head_dim\" = 32: gpt2's heads split d_model 64"},
        {"{\"model\": {\"arch\": \"qwen3\", \"d_model\": 40, \"n_head\": 4, \"head_dim\": 9, \"d_ff\": 64}}", "qwen3 head dim 9 must be even"},
        {"{\"model\": {\"arch\": \"llama\", \"d_ff\": 64, \"rope_scaling\": \"llama3\", \"rope_low_freq_factor\": 4}}", "\"model.rope_high_freq_factor\" = 4 must exceed \"model.rope_low_freq_factor\" = 4"},
        {"{\"model\": {\"arch\": \"mistral\", \"d_ff\": 64, \"sliding_window\": 128}}", "\"data.seq_len\" = 256 exceeds \"model.sliding_window\" = 128"},
        {"{\"model\": {\"max_seq_len\": 128}, \"data\": {\"seq_len\": 256}}", "\"data.seq_len\" = 256 exceeds \"model.max_seq_len\" = 128"},
        {"{\"optim\": {\"lr\": 1e-4, \"lr_min\": 1e-3}}", "\"optim.lr_min\" = 0.001 exceeds \"optim.lr\" = 0.0001"},
        {"{\"prepare\": {\"minhash_perms\": 100, \"minhash_bands\": 16}}", "must divide \"prepare.minhash_perms\""},
        {"{\"logging\": {\"level\": \"loud\"}}", "\"logging.level\" must be one of debug|info|warn|error"},
        {"{\"prepare\": {\"format\": \"xml\"}}", "\"prepare.format\" must be one of auto|text|jsonl, got \"xml\""},
        {"{\"prepare\": {\"chat_template\": \"vicuna\"}}", "\"prepare.chat_template\" must be one of auto|chatml"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_defaults(&cfg);
        assert_int_equal(config_apply_json(&cfg, cases[i].json, "x.json"), SL_OK);
        sl_status st = config_finalize(&cfg);
        if (st == SL_OK || !strstr(sl_error_message(), cases[i].needle))
            fail_msg("case %zu: expected [%s], got [%s]", i, cases[i].needle, sl_error_message());
    }
}

static void test_roundtrip_and_files(void **state) {
    (void)state;
    char dir[] = "/tmp/sl_test_cfg_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/resolved.json", dir);
    config_defaults(&cfg);
    assert_int_equal(config_set_override(&cfg, "model.n_layer=7"), SL_OK);
    assert_int_equal(config_set_override(&cfg, "parallel.fsdp_mode=no_shard"), SL_OK);
    assert_int_equal(config_write_file(&cfg, path), SL_OK);
    sl_config *back = malloc(sizeof *back);
    config_defaults(back);
    assert_int_equal(config_load_file(back, path), SL_OK);
    assert_int_equal(back->model.n_layer, 7);
    assert_int_equal(back->parallel.fsdp_mode, FSDP_MODE_NO_SHARD);
    char h1[17], h2[17], h3[17];
    config_hash(&cfg, "model", h1);
    config_hash(back, "model", h2);
    assert_string_equal(h1, h2);
    back->model.n_layer = 8;
    config_hash(back, "model", h3);
    assert_string_not_equal(h1, h3);
    free(back);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope.json", dir);
    config_defaults(&cfg);
    assert_int_equal(config_load_file(&cfg, missing), SL_ERR_IO);
    assert_non_null(strstr(sl_error_message(), "nope.json"));
    assert_int_equal(fs_remove_tree(dir), SL_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_good_file_and_overrides),
        cmocka_unit_test(test_unknown_keys),    cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_range_and_duplicates), cmocka_unit_test(test_finalize_checks),
        cmocka_unit_test(test_roundtrip_and_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
