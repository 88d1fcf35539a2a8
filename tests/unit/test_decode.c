/* KV-cache decoding against the full forward: for a tiny GPT-2 (tied head,
 * learned positions) and a tiny Llama (GQA 4:2, RoPE, untied head), random
 * init through model_init_unit_range, the logits that decode_prefill +
 * decode_step give at every position equal model_forward_logits on the whole
 * sequence (relative error by norm <= 1e-5 per position), with one-shot and
 * chunked prefill, batch 1 and 2 (rows differ), and after decode_reset. Also:
 * the cache refuses positions past max_seq and ids past the vocabulary, and a
 * failed call leaves the position unchanged. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/ops.h"
#include "model/decode.h"
#include "model/model.h"
#include "runtime/config.h"
#include "runtime/rng.h"
#include "support/golden.h"
#include "support/tiny_model.h"

typedef struct {
    sl_config cfg;
    model_layout *l;
    sl_backend *be;
    float *params;
} fixture;

static void fixture_make(fixture *f, int arch) {
    memset(f, 0, sizeof *f);
    /* init_std larger than usual so attention is far from uniform */
    tiny_model_config(&f->cfg, arch,
                      &(tiny_model_dims){.n_layer = 2, .d_model = 32, .n_head = 4,
                                         .vocab_size = 97, .max_seq_len = 24, .n_kv_head = 2,
                                         .d_ff = 48, .seq_len = 16, .init_std = 0.2});
    if (arch == MODEL_ARCH_QWEN3) { /* q/k norms, head_dim 12 != 32 / 4, llama3 rope scaling */
        f->cfg.model.head_dim = 12;
        f->cfg.model.rope_scaling = ROPE_SCALING_LLAMA3;
        f->cfg.model.rope_factor = 8;
        f->cfg.model.rope_original_max_pos = 64;
    }
    OK(config_finalize(&f->cfg));
    OK(model_layout_create(&f->cfg.model, false, &f->l));
    OK(backend_create_cpu(2, NULL, &f->be));
    f->params = malloc((size_t)f->l->total_numel * sizeof *f->params);
    assert_non_null(f->params);
    OK(tiny_model_params(f->l, 1234, 1000, f->params));
}

static void fixture_free(fixture *f) {
    free(f->params);
    backend_destroy(f->be);
    model_layout_destroy(f->l);
}

/* Reference logits (B, T, V) from the training forward. */
static float *reference_logits(fixture *f, const uint32_t *tokens, int B, int T) {
    model *m = NULL;
    OK(model_create(f->l, f->be, B, T, false, &m));
    model_local lh;
    model_unit_hooks hooks;
    OK(model_local_init(&lh, f->l, f->params, NULL, &hooks));
    int64_t V = f->l->cfg.vocab_size;
    float *lg = malloc((size_t)B * (size_t)T * (size_t)V * sizeof *lg);
    assert_non_null(lg);
    OK(model_forward_logits(m, &hooks, tokens, lg));
    model_destroy(m);
    return lg;
}

/* Prefill the first n0 tokens of each row (chunk size `chunk`), then step
 * through the rest; compare each position's logits with the reference. */
static void check_decode(fixture *f, const uint32_t *tokens, int B, int T, int n0, int chunk,
                         const float *ref) {
    int64_t V = f->l->cfg.vocab_size;
    decode *d = NULL;
    OK(decode_create(f->l, f->be, f->params, B, T, chunk, &d));
    assert_true(decode_cache_bytes(d) ==
                (int64_t)(2 * f->l->cfg.n_layer * B * T * f->l->cfg.n_kv_head * f->l->head_dim * 4));
    uint32_t *pre = malloc((size_t)B * (size_t)n0 * sizeof *pre);
    float *lg = malloc((size_t)B * (size_t)V * sizeof *lg);
    uint32_t step_tok[4];
    assert_non_null(pre);
    assert_non_null(lg);
    for (int round = 0; round < 2; round++) { /* the second round after decode_reset */
        for (int b = 0; b < B; b++)
            memcpy(pre + b * n0, tokens + b * T, (size_t)n0 * sizeof *pre);
        OK(decode_prefill(d, pre, n0, lg));
        for (int t = n0 - 1; t < T; t++) {
            if (t >= n0) {
                for (int b = 0; b < B; b++)
                    step_tok[b] = tokens[b * T + t];
                OK(decode_step(d, step_tok, lg));
            }
            assert_int_equal(decode_pos(d), t + 1);
            for (int b = 0; b < B; b++) {
                double e = golden_rel_err_f(lg + b * V, ref + ((int64_t)b * T + t) * V, (size_t)V);
                if (!(e <= 1e-5))
                    fail_msg("arch %d B %d n0 %d chunk %d: row %d position %d rel err %.3g > 1e-5",
                             f->l->cfg.arch, B, n0, chunk, b, t, e);
            }
        }
        decode_reset(d);
        assert_int_equal(decode_pos(d), 0);
    }
    free(pre);
    free(lg);
    decode_destroy(d);
}

static void run_arch(int arch) {
    fixture f;
    fixture_make(&f, arch);
    const int B = 2, T = 24;
    uint32_t tokens[2 * 24];
    rng_stream s = rng_stream_make(11, RNG_PURPOSE_TEST, (uint32_t)arch);
    for (int i = 0; i < B * T; i++)
        tokens[i] = (uint32_t)(rng_u64(&s, (uint64_t)i) % (uint64_t)f.l->cfg.vocab_size);
    float *ref2 = reference_logits(&f, tokens, B, T);
    float *ref1 = reference_logits(&f, tokens, 1, T);
    check_decode(&f, tokens, 1, T, 1, 0, ref1);   /* one token, then steps */
    check_decode(&f, tokens, 1, T, 10, 0, ref1);  /* one-shot prefill */
    check_decode(&f, tokens, 1, T, 17, 4, ref1);  /* prefill in chunks of 4 (last one partial) */
    check_decode(&f, tokens, 2, T, 9, 0, ref2);   /* two rows */
    check_decode(&f, tokens, 2, T, 24, 5, ref2);  /* the whole sequence, chunked */
    free(ref1);
    free(ref2);
    fixture_free(&f);
}

static void test_decode_gpt2(void **state) {
    (void)state;
    run_arch(MODEL_ARCH_GPT2);
}

static void test_decode_llama_gqa(void **state) {
    (void)state;
    run_arch(MODEL_ARCH_LLAMA);
}

static void test_decode_qwen2(void **state) { /* q/k/v biases */
    (void)state;
    run_arch(MODEL_ARCH_QWEN2);
}

static void test_decode_qwen3(void **state) {
    (void)state;
    run_arch(MODEL_ARCH_QWEN3);
}

/* a sliding-window model: generation past the window is refused, not approximated */
static void test_decode_window(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, MODEL_ARCH_MISTRAL);
    model_layout *l = NULL;
    cfg_model m = f.l->cfg;
    m.sliding_window = 16;
    OK(model_layout_create(&m, false, &l));
    decode *d = NULL;
    assert_int_equal(decode_create(l, f.be, f.params, 1, 17, 0, &d), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "model.sliding_window 16"));
    OK(decode_create(l, f.be, f.params, 1, 16, 0, &d));
    decode_destroy(d);
    model_layout_destroy(l);
    fixture_free(&f);
}

static void test_decode_limits(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, MODEL_ARCH_LLAMA);
    decode *d = NULL;
    assert_int_equal(decode_create(f.l, f.be, f.params, 1, 25, 0, &d), SL_ERR_INVALID);
    assert_null(d);
    OK(decode_create(f.l, f.be, f.params, 1, 8, 0, &d));
    uint32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float lg[97];
    assert_int_equal(decode_prefill(d, toks, 9, lg), SL_ERR_INVALID); /* past max_seq */
    assert_int_equal(decode_pos(d), 0);
    toks[3] = 97;
    assert_int_equal(decode_prefill(d, toks, 5, lg), SL_ERR_INVALID); /* id >= vocab */
    assert_non_null(strstr(sl_error_message(), "position 3"));
    assert_int_equal(decode_pos(d), 0);
    toks[3] = 4;
    OK(decode_prefill(d, toks, 8, NULL));
    assert_int_equal(decode_pos(d), 8);
    assert_int_equal(decode_step(d, toks, lg), SL_ERR_INVALID); /* cache full */
    decode_destroy(d);
    fixture_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_gpt2),
        cmocka_unit_test(test_decode_llama_gqa),
        cmocka_unit_test(test_decode_qwen2),
        cmocka_unit_test(test_decode_qwen3),
        cmocka_unit_test(test_decode_window),
        cmocka_unit_test(test_decode_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
