#include "gpu_util.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/device_info.h"
#include "support/golden.h"
#include "support/tiny_model.h"

void gpu_die(const char *what) {
    fprintf(stderr, "FATAL %s: %s\n", what, sl_error_message());
    exit(1);
}

/* golden_rel_err_f is not finite exactly when the squared error sum is not. */
double gpu_rel_err(const float *got, const float *want, size_t n) {
    double e = golden_rel_err_f(got, want, n);
    return isfinite(e) ? e : INFINITY;
}

void gpu_tiny_model(sl_config *cfg, int arch, int max_seq_len, int seq_len, double init_std) {
    tiny_model_config(cfg, arch,
                      &(tiny_model_dims){.n_layer = 2, .d_model = 128, .n_head = 2,
                                         .vocab_size = 512, .max_seq_len = max_seq_len,
                                         .n_kv_head = 1, .d_ff = 352, .seq_len = seq_len,
                                         .init_std = init_std});
    if (arch == MODEL_ARCH_QWEN3) { /* q/k norms, head_dim 96 != 128 / 2, llama3 rope scaling */
        cfg->model.head_dim = 96;
        cfg->model.rope_scaling = ROPE_SCALING_LLAMA3;
        cfg->model.rope_factor = 8;
        cfg->model.rope_original_max_pos = 64;
    }
}

const char *gpu_arch_name(int arch, bool lora) {
    static const char *const plain[] = {"gpt2", "llama", "qwen2", "qwen3", "mistral"};
    static const char *const with_lora[] = {"gpt2+lora", "llama+lora", "qwen2+lora", "qwen3+lora",
                                            "mistral+lora"};
    if (arch < 0 || arch > MODEL_ARCH_MISTRAL)
        return "?";
    return lora ? with_lora[arch] : plain[arch];
}

void gpu_round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = f32_from_bf16(bf16_from_f32(x[i]));
}

void gpu_tiny_params(const model_layout *l, uint64_t seed, float *params) {
    GPU_MUST(tiny_model_params(l, seed, 100000, params));
    gpu_round_bf16(params, (size_t)l->total_numel);
}

int gpu_backends_open(mem_accountant *acct, sl_backend **cpu, sl_backend **gpu) {
    device_info info;
    device_info_query(&info);
    if (info.count <= 0) {
        printf("skipped: no CUDA device (%s)\n", info.note);
        return 77;
    }
    printf("device: %s (cc %d.%d)\n", info.name0, info.cc_major, info.cc_minor);
    if (backend_create_cpu(0, NULL, cpu) != SL_OK || backend_create_cuda(0, 0, acct, gpu) != SL_OK) {
        fprintf(stderr, "FAIL: backend creation: %s\n", sl_error_message());
        return 1;
    }
    return 0;
}

int gpu_test_main(void (*run)(gpu_test *t)) {
    gpu_test t;
    memset(&t, 0, sizeof t);
    mem_accountant acct;
    mem_accountant_init(&acct);
    int rc = gpu_backends_open(&acct, &t.cpu, &t.gpu);
    if (rc != 0)
        return rc;
    run(&t);
    printf("peak device memory recorded: %lld bytes\n", (long long)mem_peak_total(&acct));
    backend_destroy(t.gpu);
    backend_destroy(t.cpu);
    printf("%d of %d checks failed\n", t.failed, t.checked);
    return t.failed ? 1 : 0;
}
