/* Initialization and learning-rate schedules against what the model issue
 * specifies, from closed forms written here (not from the code under test):
 * - model_init_unit_range, GPT-2 and Llama, 4 layers: every linear weight,
 *   embedding and untied head is Normal(0, 0.02); the residual output
 *   projections (attention out, MLP c_proj / down_proj) Normal(0, 0.02 /
 *   sqrt(2 n_layer)); norm weights exactly 1; biases exactly 0. Normal
 *   means: sample mean, sample std and the share within one std agree with
 *   the target within 5 standard errors of each estimate. Also: a unit
 *   initialized in pieces is bitwise the unit initialized at once (any
 *   sharding gives the same weights), and another seed gives other weights.
 *   Each unit's offset is the sum of the preceding units' sizes.
 * - lr_schedule_at for cosine, linear and constant: linear warmup
 *   lr * step / warmup, then each decay's formula over progress
 *   (step - warmup) / (total - warmup), the lr_min floor, no warmup, and
 *   steps past the end. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/layout.h"
#include "optim/optim.h"
#include "runtime/config.h"
#include "support/golden.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static model_layout *make_layout(int arch, bool tied) {
    sl_config cfg;
    config_defaults(&cfg);
    cfg_model *m = &cfg.model;
    m->arch = arch;
    m->n_layer = 4;
    m->d_model = 64;
    m->n_head = 4;
    m->n_kv_head = arch == MODEL_ARCH_LLAMA ? 2 : 0;
    m->d_ff = arch == MODEL_ARCH_LLAMA ? 160 : 0;
    m->vocab_size = 512;
    m->max_seq_len = 128;
    m->tie_embeddings = tied;
    cfg.data.seq_len = 64;
    OK(config_finalize(&cfg));
    assert_true(fabs(m->init_std - 0.02) < 1e-12); /* the default the issue names */
    model_layout *l = NULL;
    OK(model_layout_create(m, false, &l));
    return l;
}

/* The init the issue specifies for a parameter, by its name: -1 = normal
 * with std *sd, else the constant value. */
static double expected_init(const model_layout *l, const model_param *p, double *sd) {
    const char *n = p->name;
    *sd = 0;
    if (ends_with(n, ".bias"))
        return 0.0;
    if (ends_with(n, "ln1.weight") || ends_with(n, "ln2.weight") || ends_with(n, "norm.weight"))
        return 1.0;
    *sd = 0.02;
    if (ends_with(n, "attn.out.weight") || ends_with(n, "mlp.proj.weight") || ends_with(n, "mlp.down.weight"))
        *sd = 0.02 / sqrt(2.0 * l->cfg.n_layer);
    return -1.0;
}

static void check_layout_init(int arch, bool tied) {
    model_layout *l = make_layout(arch, tied);
    /* model_unit.offset: the preceding units' numel summed (model_local order) */
    int64_t prefix = 0;
    for (int u = 0; u < l->n_units; u++) {
        assert_int_equal(l->units[u].offset, prefix);
        prefix += l->units[u].numel;
    }
    assert_int_equal(prefix, l->total_numel);
    int n_normal = 0, n_resid = 0, n_const = 0;
    for (int u = 0; u < l->n_units; u++) {
        int64_t numel = l->units[u].numel;
        float *w = malloc((size_t)numel * sizeof *w);
        assert_non_null(w);
        OK(model_init_unit_range(l, u, 0, numel, w, 1234));
        for (int i = l->units[u].first_param; i < l->units[u].first_param + l->units[u].n_params; i++) {
            const model_param *p = &l->params[i];
            const float *x = w + p->offset;
            double sd;
            double c = expected_init(l, p, &sd);
            if (c >= 0) {
                for (int64_t e = 0; e < p->numel; e++)
                    if (x[e] != (float)c)
                        fail_msg("%s[%lld] = %g, expected exactly %g", p->name, (long long)e, x[e], c);
                n_const++;
                continue;
            }
            double n = (double)p->numel, s1 = 0, s2 = 0, within = 0;
            for (int64_t e = 0; e < p->numel; e++) {
                s1 += x[e];
                s2 += (double)x[e] * x[e];
                within += fabs(x[e]) <= sd;
            }
            double mean = s1 / n, std = sqrt(s2 / n - mean * mean), frac = within / n;
            const double p1 = 0.682689492137; /* P(|Z| <= 1) */
            /* 5 standard errors: of the mean sd/sqrt(n), of the std ~ sd/sqrt(2n),
             * of the share p1 sqrt(p1 (1 - p1) / n) */
            if (fabs(mean) > 5 * sd / sqrt(n) || fabs(std - sd) > 5 * sd / sqrt(2 * n) ||
                fabs(frac - p1) > 5 * sqrt(p1 * (1 - p1) / n))
                fail_msg("%s (%lld elements): mean %.3g, std %.5g, share within 1 std %.4f; expected "
                         "Normal(0, %.5g) (share %.4f)",
                         p->name, (long long)p->numel, mean, std, frac, sd, sd, p1);
            n_normal++;
            n_resid += sd < 0.02;
        }
        free(w);
    }
    /* every block has 2 residual projections; norms and (GPT-2) biases are constants */
    assert_int_equal(n_resid, 2 * l->cfg.n_layer);
    assert_true(n_const >= 2 * l->cfg.n_layer + 1);
    assert_int_equal(n_normal + n_const, l->n_params);
    model_layout_destroy(l);
}

static void test_init_gpt2(void **state) {
    (void)state;
    check_layout_init(MODEL_ARCH_GPT2, true);
    check_layout_init(MODEL_ARCH_GPT2, false);
}

static void test_init_llama(void **state) {
    (void)state;
    check_layout_init(MODEL_ARCH_LLAMA, false);
    check_layout_init(MODEL_ARCH_LLAMA, true);
}

/* Pieces with odd boundaries (crossing parameters) equal the whole; a
 * different seed differs. */
static void test_init_sharding_and_seed(void **state) {
    (void)state;
    model_layout *l = make_layout(MODEL_ARCH_LLAMA, false);
    for (int u = 0; u < l->n_units; u++) {
        int64_t numel = l->units[u].numel;
        float *whole = malloc((size_t)numel * sizeof(float)), *parts = malloc((size_t)numel * sizeof(float));
        float *other = malloc((size_t)numel * sizeof(float));
        assert_true(whole && parts && other);
        OK(model_init_unit_range(l, u, 0, numel, whole, 99));
        int64_t cuts[] = {0, numel / 7 + 3, numel / 3 + 1, numel / 3 + 1, (2 * numel) / 3 - 5, numel};
        for (int k = 0; k + 1 < 6; k++) {
            int64_t a = cuts[k] < numel ? cuts[k] : numel, z = cuts[k + 1] < numel ? cuts[k + 1] : numel;
            OK(model_init_unit_range(l, u, a, z - a, parts + a, 99));
        }
        assert_memory_equal(whole, parts, (size_t)numel * sizeof(float));
        OK(model_init_unit_range(l, u, 0, numel, other, 100));
        int64_t differ = 0;
        for (int64_t e = 0; e < numel; e++)
            differ += whole[e] != other[e];
        assert_true(differ > numel / 2); /* only the constants (norms) agree */
        free(whole);
        free(parts);
        free(other);
    }
    float x;
    assert_int_equal(model_init_unit_range(l, 1, l->units[1].numel, 1, &x, 1), SL_ERR_INVALID);
    model_layout_destroy(l);
}

/* ---- learning-rate schedules ---- */

static cfg_optim optim_cfg(int schedule, double lr, double lr_min, int warmup) {
    sl_config cfg;
    config_defaults(&cfg);
    cfg.optim.lr_schedule = schedule;
    cfg.optim.lr = lr;
    cfg.optim.lr_min = lr_min;
    cfg.optim.lr_warmup = warmup;
    return cfg.optim;
}

static void expect_lr(const cfg_optim *c, int step, int total, double want) {
    double got = lr_schedule_at(c, step, total);
    if (fabs(got - want) > 1e-12 * fabs(want) + 1e-18)
        fail_msg("lr_schedule_at(%s, lr %g, min %g, warmup %d; step %d of %d) = %.17g, expected %.17g",
                 config_enum_name("optim.lr_schedule", c->lr_schedule), c->lr, c->lr_min, c->lr_warmup,
                 step, total, got, want);
}

static void test_lr_warmup(void **state) {
    (void)state;
    const int sched[] = {LR_SCHEDULE_COSINE, LR_SCHEDULE_LINEAR, LR_SCHEDULE_CONSTANT};
    for (int k = 0; k < 3; k++) {
        cfg_optim c = optim_cfg(sched[k], 1e-3, 1e-4, 5);
        for (int s = 1; s <= 5; s++)
            expect_lr(&c, s, 25, 1e-3 * s / 5.0); /* below the floor is allowed during warmup */
    }
}

static void test_lr_linear(void **state) {
    (void)state;
    const double lr = 1e-3, lo = 1e-4;
    cfg_optim c = optim_cfg(LR_SCHEDULE_LINEAR, lr, lo, 5);
    for (int s = 6; s <= 25; s++)
        expect_lr(&c, s, 25, lr - (lr - lo) * (s - 5) / 20.0);
    expect_lr(&c, 15, 25, 0.5 * (lr + lo)); /* halfway */
    expect_lr(&c, 25, 25, lo);
    expect_lr(&c, 40, 25, lo); /* past the end: the floor */
    cfg_optim z = optim_cfg(LR_SCHEDULE_LINEAR, lr, 0.0, 0); /* no warmup, no floor */
    for (int s = 1; s <= 10; s++)
        expect_lr(&z, s, 10, lr * (1.0 - s / 10.0));
}

static void test_lr_constant(void **state) {
    (void)state;
    cfg_optim c = optim_cfg(LR_SCHEDULE_CONSTANT, 3e-4, 1e-5, 4);
    for (int s = 5; s <= 30; s++)
        expect_lr(&c, s, 20, 3e-4);
    cfg_optim n = optim_cfg(LR_SCHEDULE_CONSTANT, 3e-4, 1e-5, 0);
    expect_lr(&n, 1, 20, 3e-4);
    cfg_optim f = optim_cfg(LR_SCHEDULE_CONSTANT, 1e-5, 1e-4, 0); /* lr under the floor: the floor wins */
    expect_lr(&f, 3, 20, 1e-4);
}

static void test_lr_cosine(void **state) {
    (void)state;
    const double lr = 6e-4, lo = 6e-5, pi = 3.14159265358979323846;
    cfg_optim c = optim_cfg(LR_SCHEDULE_COSINE, lr, lo, 10);
    for (int s = 11; s <= 110; s++)
        expect_lr(&c, s, 110, lo + (lr - lo) * 0.5 * (1 + cos(pi * (s - 10) / 100.0)));
    expect_lr(&c, 60, 110, 0.5 * (lr + lo));
    expect_lr(&c, 110, 110, lo);
    expect_lr(&c, 200, 110, lo);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_gpt2),
        cmocka_unit_test(test_init_llama),
        cmocka_unit_test(test_init_sharding_and_seed),
        cmocka_unit_test(test_lr_warmup),
        cmocka_unit_test(test_lr_linear),
        cmocka_unit_test(test_lr_constant),
        cmocka_unit_test(test_lr_cosine),
    };
    return cmocka_run_group_tests_name("init_schedule", tests, NULL, NULL);
}
