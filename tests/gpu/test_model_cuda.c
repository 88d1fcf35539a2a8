/* tests/gpu/test_model_cuda.c: the whole model, forward and backward, bf16
 * on the CUDA backend against fp32 on the CPU backend (the reference).
 *
 * For a tiny GPT-2 (tied embeddings, LayerNorm, GELU, biases) and a tiny
 * Llama (GQA, RoPE, RMSNorm, SwiGLU, untied head), with the same random
 * weights on both backends (drawn by model_init_unit_range, norms and biases
 * perturbed, then rounded to bf16 once so that both see the same values):
 *   - model_forward_backward through model_local-style hooks (CPU: F32
 *     params; CUDA: BF16 params, F32 grads): the loss sum, and every unit's
 *     gradient by relative error of norms ||gpu - cpu|| / ||cpu||;
 *   - model_forward_logits: the logits, same measure;
 *   - the same model with activation recomputation on the GPU: bitwise the
 *     same loss and gradients as without (model.h promises it);
 *   - LoRA on every linear of the frozen base: loss and every adapter
 *     unit's gradient.
 * Tolerances, from the error model in support/gpu_util.h (tol_bf16(k) =
 * 4 U_BF16 sqrt(k / 3), k the bf16 roundings on the path; not yet
 * calibrated on a GPU, every measured error is printed):
 *   logits: K_FWD = 30 roundings. Per block: norm, QKV GEMM, RoPE, P and
 *     output in attention, projection, residual add, norm, up (and gate)
 *     GEMM, GELU/SwiGLU, down GEMM, residual add: 12; two blocks 24, plus
 *     the embedding, the final norm and the LM head: 27, rounded up to 30
 *     (weights are bf16-exact on both sides: no rounding). 4.9e-2.
 *   gradients, per unit: K_BWD = 60: the forward's 30 and as many again on
 *     the way back (each activation gradient is stored in bf16: the same
 *     ops in reverse, twice for norms and attention's dS and P). 7.0e-2.
 *   loss sum: loss_row = lse - z_target moves by (p - onehot) . dz; at
 *     this random init p is near uniform, so that is about dz_target, an
 *     absolute error of tol_logits z_rms; relative to the loss per token:
 *     tol_logits max(1, z_rms / loss_per_token) (z_rms measured on the CPU
 *     logits, printed). LoRA: the same model and tokens, tol_logits.
 * The seed is fixed (the weights come from model_init_unit_range's seed and
 * the tokens from a fixed xorshift), so a failure repeats.
 *
 * Without a usable CUDA device the test prints "skipped: no CUDA device
 * (...)" and exits 77 (ctest SKIP_RETURN_CODE).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/layout.h"
#include "model/lora.h"
#include "model/model.h"
#include "runtime/config.h"
#include "runtime/rng.h"
#include "support/gpu_util.h"

#define K_FWD 30 /* bf16 roundings from the inputs to the logits (header) */
#define K_BWD 60 /* ... to a parameter gradient */
#define TOL_LOGITS tol_bf16(K_FWD)
#define TOL_GRAD tol_bf16(K_BWD)

typedef gpu_test ctx;

static void check(ctx *t, const char *what, double err, double tol) {
    t->checked++;
    bool ok = err <= tol;
    printf("%s %s: %s rel err %.3g (tol %.2e)\n", ok ? "ok  " : "FAIL", t->test, what, err, tol);
    if (!ok)
        t->failed++;
}

static uint64_t xs(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* ---- device buffers ---- */

static void *dev_alloc(sl_backend *be, size_t bytes) {
    void *p = NULL;
    if (backend_alloc(be, MEM_CATEGORY_PARAMS, bytes, &p) != SL_OK)
        gpu_die("backend_alloc");
    return p;
}

/* bf16 device copy of n host floats (bf16-exact already). */
static void *dev_bf16(sl_backend *be, const float *x, size_t n) {
    uint16_t *h = malloc(n * 2 + 2);
    if (!h)
        gpu_die("malloc");
    bf16_from_f32_array(h, x, n);
    void *d = dev_alloc(be, n * 2 + 2);
    GPU_MUST(backend_memcpy(be, d, h, n * 2, BACKEND_COPY_H2D));
    GPU_MUST(backend_synchronize(be));
    free(h);
    return d;
}

static float *download_f32(sl_backend *be, const void *d, size_t n) {
    float *h = malloc(n * sizeof(float) + 4);
    if (!h)
        gpu_die("malloc");
    GPU_MUST(backend_memcpy(be, h, d, n * sizeof(float), BACKEND_COPY_D2H));
    return h;
}

/* ---- the model ---- */

typedef struct {
    sl_config cfg;
    model_layout *l;
    float *params; /* total_numel floats, bf16-exact */
    int B, T;
    uint32_t *inputs;
    int32_t *targets;
} fixture;

static void fixture_make(fixture *f, int arch) {
    memset(f, 0, sizeof *f);
    gpu_tiny_model(&f->cfg, arch, 128, 64, 0.05);
    const cfg_model *m = &f->cfg.model;
    GPU_MUST(config_finalize(&f->cfg));
    GPU_MUST(model_layout_create(m, false, &f->l));
    const model_layout *l = f->l;
    f->params = malloc((size_t)l->total_numel * sizeof(float));
    if (!f->params)
        gpu_die("malloc");
    gpu_tiny_params(l, 1234, f->params);
    f->B = 2;
    f->T = 64;
    size_t n = (size_t)f->B * (size_t)f->T;
    f->inputs = malloc(n * sizeof *f->inputs);
    f->targets = malloc(n * sizeof *f->targets);
    if (!f->inputs || !f->targets)
        gpu_die("malloc");
    uint64_t r = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < n; i++) {
        f->inputs[i] = (uint32_t)(xs(&r) % (uint64_t)m->vocab_size);
        f->targets[i] = (int32_t)(xs(&r) % (uint64_t)m->vocab_size);
        if (i % 7 == 3)
            f->targets[i] = -1; /* ignored positions */
    }
}

static void fixture_free(fixture *f) {
    free(f->params);
    free(f->inputs);
    free(f->targets);
    model_layout_destroy(f->l);
}

static int64_t count_valid(const fixture *f) {
    int64_t n = 0;
    for (int64_t i = 0; i < (int64_t)f->B * f->T; i++)
        n += f->targets[i] >= 0;
    return n;
}

/* One backend's results. */
typedef struct {
    double loss;
    int64_t n_valid;
    float *grads;  /* total_numel, host */
    float *logits; /* B*T*V, host (NULL: not computed) */
} run_out;

static void run_out_free(run_out *o) {
    free(o->grads);
    free(o->logits);
}

/* Forward/backward (and logits) of f's model on be, params of be->act_dtype. */
static void run_model(sl_backend *be, bool on_gpu, const fixture *f, bool recompute, bool logits,
                      run_out *out) {
    const model_layout *l = f->l;
    size_t n = (size_t)l->total_numel;
    memset(out, 0, sizeof *out);
    void *params = NULL;
    float *grads = NULL;
    if (on_gpu) {
        params = dev_bf16(be, f->params, n);
        grads = dev_alloc(be, n * sizeof(float));
    } else {
        params = f->params;
        grads = calloc(n, sizeof(float));
        if (!grads)
            gpu_die("calloc");
    }
    model *m = NULL;
    GPU_MUST(model_create(l, be, f->B, f->T, recompute, &m));
    model_local lh;
    model_unit_hooks hooks;
    GPU_MUST(model_local_init_typed(&lh, l, be->act_dtype, params, grads, &hooks));
    float scale = 1.0f / (float)count_valid(f);
    GPU_MUST(model_forward_backward(m, &hooks, f->inputs, f->targets, scale, &out->loss, &out->n_valid));
    GPU_MUST(backend_synchronize(be));
    out->grads = on_gpu ? download_f32(be, grads, n) : grads;
    if (logits) {
        size_t nl = (size_t)f->B * (size_t)f->T * (size_t)l->cfg.vocab_size;
        out->logits = malloc(nl * sizeof(float));
        if (!out->logits)
            gpu_die("malloc");
        GPU_MUST(model_forward_logits(m, &hooks, f->inputs, out->logits));
    }
    model_destroy(m);
    if (on_gpu) {
        backend_free(be, MEM_CATEGORY_PARAMS, params, n * 2 + 2);
        backend_free(be, MEM_CATEGORY_PARAMS, grads, n * sizeof(float));
    }
}

static void compare_units(ctx *t, const model_layout *l, const float *got, const float *want) {
    for (int u = 0; u < l->n_units; u++) {
        int64_t b = l->units[u].offset, n = l->units[u].numel;
        if (n == 0)
            continue;
        char what[64];
        snprintf(what, sizeof what, "grads of unit %d (%" PRId64 " elements)", u, n);
        check(t, what, gpu_rel_err(got + b, want + b, (size_t)n), TOL_GRAD);
    }
}

static void test_model(ctx *t, int arch) {
    fixture f;
    fixture_make(&f, arch);
    t->test = gpu_arch_name(arch, false);
    run_out cpu, gpu, gpu_rc;
    run_model(t->cpu, false, &f, false, true, &cpu);
    run_model(t->gpu, true, &f, false, true, &gpu);
    run_model(t->gpu, true, &f, true, false, &gpu_rc);
    printf("     %s: loss/token cpu %.6f gpu %.6f (%" PRId64 " targets)\n", t->test,
           cpu.loss / (double)cpu.n_valid, gpu.loss / (double)gpu.n_valid, cpu.n_valid);
    t->checked++;
    if (gpu.n_valid != cpu.n_valid) {
        printf("FAIL %s: n_valid gpu %" PRId64 " cpu %" PRId64 "\n", t->test, gpu.n_valid, cpu.n_valid);
        t->failed++;
    }
    size_t nl = (size_t)f.B * (size_t)f.T * (size_t)f.l->cfg.vocab_size;
    double zz = 0;
    for (size_t i = 0; i < nl; i++)
        zz += (double)cpu.logits[i] * cpu.logits[i];
    double z_rms = sqrt(zz / (double)nl), per_tok = fabs(cpu.loss) / (double)cpu.n_valid;
    double tol_loss = TOL_LOGITS * fmax(1.0, z_rms / per_tok);
    printf("     %s: logits rms %.4f, loss per token %.4f: loss tolerance %.2e\n", t->test, z_rms, per_tok,
           tol_loss);
    check(t, "loss sum", fabs(gpu.loss - cpu.loss) / fabs(cpu.loss), tol_loss);
    check(t, "logits", gpu_rel_err(gpu.logits, cpu.logits, nl), TOL_LOGITS);
    compare_units(t, f.l, gpu.grads, cpu.grads);
    /* recomputation is bitwise the same on one device */
    size_t n = (size_t)f.l->total_numel;
    check(t, "recompute vs stored activations: loss (bitwise)", gpu_rc.loss == gpu.loss ? 0.0 : 1.0, 0.0);
    check(t, "recompute vs stored activations: grads (bitwise)",
          memcmp(gpu_rc.grads, gpu.grads, n * sizeof(float)) == 0 ? 0.0 : 1.0, 0.0);
    run_out_free(&cpu);
    run_out_free(&gpu);
    run_out_free(&gpu_rc);
    fixture_free(&f);
}

/* ---- LoRA: frozen base, adapters on every linear ---- */

static void run_lora(sl_backend *be, bool on_gpu, const fixture *f, const lora_spec *spec,
                     const float *ad_host, double *loss, float **ad_grads) {
    const model_layout *l = f->l, *al = spec->layout;
    size_t n = (size_t)l->total_numel, na = (size_t)(al->total_numel > 0 ? al->total_numel : 1);
    void *params, *ap;
    float *ag;
    if (on_gpu) {
        params = dev_bf16(be, f->params, n);
        ap = dev_bf16(be, ad_host, na);
        ag = dev_alloc(be, na * sizeof(float));
    } else {
        params = f->params;
        ap = (void *)(uintptr_t)ad_host;
        ag = calloc(na, sizeof(float));
        if (!ag)
            gpu_die("calloc");
    }
    model *m = NULL;
    GPU_MUST(model_create(l, be, f->B, f->T, false, &m));
    GPU_MUST(model_attach_lora(m, spec));
    model_local bl, adl;
    model_unit_hooks bh, ah;
    GPU_MUST(model_local_init_typed(&bl, l, be->act_dtype, params, NULL, &bh));
    GPU_MUST(model_local_init_typed(&adl, al, be->act_dtype, ap, ag, &ah));
    bh.adapter = &ah;
    int64_t nv = 0;
    GPU_MUST(model_forward_backward(m, &bh, f->inputs, f->targets, 1.0f / (float)count_valid(f), loss, &nv));
    GPU_MUST(backend_synchronize(be));
    *ad_grads = on_gpu ? download_f32(be, ag, na) : ag;
    model_destroy(m);
    if (on_gpu) {
        backend_free(be, MEM_CATEGORY_PARAMS, params, n * 2 + 2);
        backend_free(be, MEM_CATEGORY_PARAMS, ap, na * 2 + 2);
        backend_free(be, MEM_CATEGORY_PARAMS, ag, na * sizeof(float));
    }
}

static void test_lora(ctx *t, int arch) {
    fixture f;
    fixture_make(&f, arch);
    t->test = gpu_arch_name(arch, true);
    cfg_lora lc = f.cfg.lora;
    lc.enabled = true;
    lc.r = 8;
    lc.alpha = 16;
    lc.dropout = 0;
    lc.targets.n = 1;
    snprintf(lc.targets.items[0], CFG_STR_MAX, "all-linear");
    lora_spec *spec = NULL;
    GPU_MUST(lora_create(f.l, &lc, &spec));
    const model_layout *al = spec->layout;
    size_t na = (size_t)(al->total_numel > 0 ? al->total_numel : 1);
    float *ad = calloc(na, sizeof(float));
    if (!ad)
        gpu_die("calloc");
    for (int u = 0; u < al->n_units; u++)
        GPU_MUST(model_init_unit_range(al, u, 0, al->units[u].numel, ad + al->units[u].offset, 99));
    /* B starts at zero; give it values so that the adapters change the output */
    uint64_t r = 12345;
    for (size_t i = 0; i < na; i++)
        if (ad[i] == 0.0f)
            ad[i] = 0.02f * (float)((double)(xs(&r) >> 11) / 9007199254740992.0 - 0.5);
    gpu_round_bf16(ad, na);
    double lc_cpu = 0, lc_gpu = 0;
    float *g_cpu = NULL, *g_gpu = NULL;
    run_lora(t->cpu, false, &f, spec, ad, &lc_cpu, &g_cpu);
    run_lora(t->gpu, true, &f, spec, ad, &lc_gpu, &g_gpu);
    printf("     %s: loss sum cpu %.6f gpu %.6f\n", t->test, lc_cpu, lc_gpu);
    check(t, "loss sum", fabs(lc_gpu - lc_cpu) / fabs(lc_cpu), TOL_LOGITS);
    compare_units(t, al, g_gpu, g_cpu);
    free(g_cpu);
    free(g_gpu);
    free(ad);
    lora_destroy(spec);
    fixture_free(&f);
}

static void run(ctx *t) {
    test_model(t, MODEL_ARCH_GPT2);
    test_model(t, MODEL_ARCH_LLAMA);
    test_lora(t, MODEL_ARCH_GPT2);
    test_lora(t, MODEL_ARCH_LLAMA);
    test_model(t, MODEL_ARCH_QWEN2); /* q/k/v biases */
    test_model(t, MODEL_ARCH_QWEN3); /* q/k norms, head_dim != d_model / n_head, llama3 rope */
    test_lora(t, MODEL_ARCH_QWEN3);
}

int main(void) {
    return gpu_test_main(run);
}
