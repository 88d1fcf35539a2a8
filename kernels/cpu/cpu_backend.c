/* kernels/cpu/cpu_backend.c: the CPU backend: creation, host memory, and the
 * struct kernel_ops table that points at the cpu_* kernels.
 *
 * Threads: OpenMP parallel regions use be->n_threads (a num_threads clause per
 * region, so other OpenMP users in the process are not affected); OpenBLAS's
 * own thread count is process-wide and is set to n_threads at creation.
 */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

static sl_status cpu_alloc(sl_backend *be, mem_category cat, size_t bytes, void **out) {
    void *p = mem_host_alloc(be->acct, cat, bytes ? bytes : 1);
    if (!p)
        return sl_errorf(SL_ERR_NOMEM, "CPU backend: out of memory allocating %zu bytes for %s",
                         bytes, mem_category_name(cat));
    *out = p;
    return SL_OK;
}

static void cpu_free(sl_backend *be, mem_category cat, void *ptr, size_t bytes) {
    mem_host_free(be->acct, cat, ptr, bytes ? bytes : 1);
}

static sl_status cpu_memcpy(sl_backend *be, void *dst, const void *src, size_t bytes,
                            backend_copy_kind kind) {
    memmove(dst, src, bytes);
    return SL_OK;
}

static sl_status cpu_memset_zero(sl_backend *be, void *dst, size_t bytes) {
    memset(dst, 0, bytes);
    return SL_OK;
}

static sl_status cpu_synchronize(sl_backend *be) { return SL_OK; }

static void cpu_destroy(sl_backend *be) { free(be); }

static const struct kernel_ops cpu_kernel_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memcpy = cpu_memcpy,
    .memset_zero = cpu_memset_zero,
    .synchronize = cpu_synchronize,
    .destroy = cpu_destroy,
    .matmul = cpu_matmul,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .attention_decode = cpu_attention_decode,
    .kv_cache_append = cpu_kv_cache_append,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .cross_entropy = cpu_cross_entropy,
    .xent_stats_chunk = cpu_xent_stats_chunk,
    .xent_loss = cpu_xent_loss,
    .xent_backward_chunk = cpu_xent_backward_chunk,
    .adamw = cpu_adamw,
    .cast = cpu_cast,
    .sq_norm = cpu_sq_norm,
    .scale = cpu_scale,
    .add = cpu_add,
    .dropout = cpu_dropout,
};

sl_status backend_create_cpu(int n_threads, mem_accountant *acct, sl_backend **out) {
    SL_CHECK_ARG(out != NULL, "backend_create_cpu: out is NULL");
    *out = NULL;
    if (n_threads <= 0)
        n_threads = omp_get_max_threads();
    SL_CHECK_ARG(n_threads >= 1 && n_threads <= 4096,
                 "backend_create_cpu: n_threads %d is out of range 1..4096", n_threads);
    sl_backend *be = calloc(1, sizeof *be);
    SL_CHECK_ALLOC(be, sizeof *be);
    be->kind = SL_BACKEND_CPU;
    be->device = SL_DEVICE_CPU;
    be->act_dtype = SL_DTYPE_F32;
    be->n_threads = n_threads;
    be->device_ordinal = -1;
    be->ops = &cpu_kernel_ops;
    be->acct = acct;
    openblas_set_num_threads(n_threads);
    *out = be;
    return SL_OK;
}
