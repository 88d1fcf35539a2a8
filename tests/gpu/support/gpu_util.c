#include "gpu_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/device_info.h"

void gpu_die(const char *what) {
    fprintf(stderr, "FATAL %s: %s\n", what, sl_error_message());
    exit(1);
}

double gpu_rel_err(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * (double)want[i];
    }
    if (!isfinite(num))
        return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

void gpu_tiny_model(sl_config *cfg, int arch, int max_seq_len, int seq_len, double init_std) {
    config_defaults(cfg);
    cfg_model *m = &cfg->model;
    m->arch = arch;
    m->n_layer = 2;
    m->d_model = 128;
    m->n_head = 2;
    m->vocab_size = 512;
    m->max_seq_len = max_seq_len;
    if (arch != MODEL_ARCH_GPT2) {
        m->n_kv_head = 1;
        m->d_ff = 352;
        m->tie_embeddings = false;
        m->rope_theta = 10000.0;
        if (arch == MODEL_ARCH_QWEN3) { /* q/k norms, head_dim 96 != 128 / 2, llama3 rope scaling */
            m->head_dim = 96;
            m->rope_scaling = ROPE_SCALING_LLAMA3;
            m->rope_factor = 8;
            m->rope_original_max_pos = 64;
        }
    } else {
        m->n_kv_head = 0;
        m->d_ff = 0;
        m->tie_embeddings = true;
    }
    m->init_std = init_std;
    cfg->data.seq_len = seq_len;
}

const char *gpu_arch_name(int arch, bool lora) {
    static const char *const plain[] = {"gpt2", "llama", "qwen2", "qwen3", "mistral"};
    static const char *const with_lora[] = {"gpt2+lora", "llama+lora", "qwen2+lora", "qwen3+lora",
                                            "mistral+lora"};
    if (arch < 0 || arch > MODEL_ARCH_MISTRAL)
        return "?";
    return lora ? with_lora[arch] : plain[arch];
}

int64_t gpu_unit_base(const model_layout *l, int unit) {
    int64_t b = 0;
    for (int u = 0; u < unit; u++)
        b += l->units[u].numel;
    return b;
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
