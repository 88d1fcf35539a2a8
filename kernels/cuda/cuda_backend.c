/* kernels/cuda/cuda_backend.c: the CUDA backend: creation on one device, its
 * compute stream, cuBLASLt handle and workspace, device memory recorded in
 * the mem_accountant (categories of DESIGN section 3, current and peak), the
 * growable scratch buffers, and the struct kernel_ops table.
 *
 * Device selection: backend_create_cuda calls cudaSetDevice(ordinal) on the
 * calling thread; one backend per process (one GPU per local rank, DESIGN
 * section 6). A thread other than the creator that enqueues work on the
 * backend (the FSDP comm thread) must call cudaSetDevice itself.
 * Allocation: plain cudaMalloc (no managed memory, no caching allocator):
 * FSDP and the model allocate their buffers once and reuse them, so a
 * caching layer would add fragmentation for nothing. Zero-filling is
 * enqueued on the compute stream and waited for, so a fresh buffer is zero
 * for every stream.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.h"
#include "runtime/check.h"

static sl_status cuda_alloc(sl_backend *be, mem_category cat, size_t bytes, void **out) {
    void *p = NULL;
    size_t nb = bytes ? bytes : 1;
    cudaError_t e = cudaMalloc(&p, nb);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* out-of-memory is not sticky; clear it */
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        return sl_errorf(SL_ERR_NOMEM,
                         "CUDA backend: cudaMalloc of %zu bytes for %s failed (%s); device %d "
                         "has %zu of %zu bytes free, shardlm holds %lld; lower micro_batch or "
                         "seq_len, enable recompute, or shard over more GPUs",
                         bytes, mem_category_name(cat), cudaGetErrorString(e),
                         be->device_ordinal, free_b, total_b,
                         be->acct ? (long long)mem_current_total(be->acct) : -1LL);
    }
    e = cudaMemsetAsync(p, 0, nb, cuda_stream(be));
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(cuda_stream(be));
    if (e != cudaSuccess) {
        cudaFree(p);
        return sl_check_cuda_fail(__FILE__, __LINE__, e, "zero-filling a new device buffer");
    }
    if (be->acct)
        mem_record_alloc(be->acct, cat, nb);
    *out = p;
    return SL_OK;
}

static void cuda_free_mem(sl_backend *be, mem_category cat, void *ptr, size_t bytes) {
    /* cudaFree waits for the device; the caller's pending work on ptr is done */
    cudaFree(ptr);
    if (be->acct)
        mem_record_free(be->acct, cat, bytes ? bytes : 1);
}

static sl_status cuda_memcpy_op(sl_backend *be, void *dst, const void *src, size_t bytes,
                                backend_copy_kind kind) {
    static const enum cudaMemcpyKind kinds[] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                                cudaMemcpyDeviceToDevice};
    SL_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, kinds[kind], cuda_stream(be)));
    if (kind == BACKEND_COPY_D2H) /* the caller reads dst next */
        SL_CHECK_CUDA(cudaStreamSynchronize(cuda_stream(be)));
    return SL_OK;
}

static sl_status cuda_memset_zero_op(sl_backend *be, void *dst, size_t bytes) {
    SL_CHECK_CUDA(cudaMemsetAsync(dst, 0, bytes, cuda_stream(be)));
    return SL_OK;
}

static sl_status cuda_synchronize_op(sl_backend *be) {
    SL_CHECK_CUDA(cudaStreamSynchronize(cuda_stream(be)));
    return SL_OK;
}

sl_status cuda_scratch(sl_backend *be, size_t bytes, void **out) {
    cuda_impl *im = cuda_be_impl(be);
    if (bytes > im->scratch_bytes) {
        size_t want = bytes + bytes / 4; /* headroom against many small growth steps */
        SL_CHECK_CUDA(cudaStreamSynchronize(cuda_stream(be)));
        if (im->scratch) {
            cuda_free_mem(be, MEM_CATEGORY_WORKSPACE, im->scratch, im->scratch_bytes);
            im->scratch = NULL;
            im->scratch_bytes = 0;
        }
        SL_TRY(cuda_alloc(be, MEM_CATEGORY_WORKSPACE, want, &im->scratch));
        im->scratch_bytes = want;
    }
    *out = im->scratch;
    return SL_OK;
}

sl_status cuda_host_scratch(sl_backend *be, size_t bytes, void **out) {
    cuda_impl *im = cuda_be_impl(be);
    if (bytes > im->host_scratch_bytes) {
        size_t want = bytes + bytes / 4;
        SL_CHECK_CUDA(cudaStreamSynchronize(cuda_stream(be)));
        if (im->host_scratch) {
            cudaFreeHost(im->host_scratch);
            if (be->acct)
                mem_record_free(be->acct, MEM_CATEGORY_WORKSPACE, im->host_scratch_bytes);
            im->host_scratch = NULL;
            im->host_scratch_bytes = 0;
        }
        SL_CHECK_CUDA(cudaHostAlloc(&im->host_scratch, want, cudaHostAllocDefault));
        im->host_scratch_bytes = want;
        if (be->acct)
            mem_record_alloc(be->acct, MEM_CATEGORY_WORKSPACE, want);
    }
    *out = im->host_scratch;
    return SL_OK;
}

static void cuda_destroy(sl_backend *be) {
    cuda_impl *im = cuda_be_impl(be);
    if (be->stream)
        cudaStreamSynchronize(cuda_stream(be));
    if (im) {
        if (im->scratch)
            cuda_free_mem(be, MEM_CATEGORY_WORKSPACE, im->scratch, im->scratch_bytes);
        if (im->host_scratch) {
            cudaFreeHost(im->host_scratch);
            if (be->acct)
                mem_record_free(be->acct, MEM_CATEGORY_WORKSPACE, im->host_scratch_bytes);
        }
        if (im->flag)
            cuda_free_mem(be, MEM_CATEGORY_WORKSPACE, im->flag, 64);
        if (im->host_aux)
            cudaFreeHost(im->host_aux);
        free(im);
    }
    if (be->workspace)
        cuda_free_mem(be, MEM_CATEGORY_WORKSPACE, be->workspace, be->workspace_bytes);
    if (be->blas_handle)
        cublasLtDestroy((cublasLtHandle_t)be->blas_handle);
    if (be->stream)
        cudaStreamDestroy(cuda_stream(be));
    free(be);
}

static const struct kernel_ops cuda_kernel_ops = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free_mem,
    .memcpy = cuda_memcpy_op,
    .memset_zero = cuda_memset_zero_op,
    .synchronize = cuda_synchronize_op,
    .destroy = cuda_destroy,
    .matmul = cuda_matmul,
    .linear_forward = cuda_linear_forward,
    .linear_backward = cuda_linear_backward,
    .layernorm_forward = cuda_layernorm_forward,
    .layernorm_backward = cuda_layernorm_backward,
    .rmsnorm_forward = cuda_rmsnorm_forward,
    .rmsnorm_backward = cuda_rmsnorm_backward,
    .gelu_forward = cuda_gelu_forward,
    .gelu_backward = cuda_gelu_backward,
    .swiglu_forward = cuda_swiglu_forward,
    .swiglu_backward = cuda_swiglu_backward,
    .rope_forward = cuda_rope_forward,
    .rope_backward = cuda_rope_backward,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .attention_decode = cuda_attention_decode,
    .kv_cache_append = cuda_kv_cache_append,
    .embedding_forward = cuda_embedding_forward,
    .embedding_backward = cuda_embedding_backward,
    .cross_entropy = cuda_cross_entropy,
    .xent_stats_chunk = cuda_xent_stats_chunk,
    .xent_loss = cuda_xent_loss,
    .xent_backward_chunk = cuda_xent_backward_chunk,
    .adamw = cuda_adamw,
    .cast = cuda_cast,
    .sq_norm = cuda_sq_norm,
    .scale = cuda_scale,
    .add = cuda_add,
    .dropout = cuda_dropout,
};

/* Everything after the device checks; on error the caller destroys be. */
static sl_status cuda_init(sl_backend *be, size_t workspace_bytes) {
    cuda_impl *im = cuda_be_impl(be);
    cudaStream_t stream = NULL;
    SL_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    be->stream = stream;
    cublasLtHandle_t lt = NULL;
    SL_CHECK_CUBLAS(cublasLtCreate(&lt));
    be->blas_handle = lt;
    SL_TRY(cuda_alloc(be, MEM_CATEGORY_WORKSPACE, workspace_bytes, &be->workspace));
    be->workspace_bytes = workspace_bytes;
    void *aux = NULL;
    SL_TRY(cuda_alloc(be, MEM_CATEGORY_WORKSPACE, 64, &aux));
    im->flag = (uint32_t *)aux;
    im->dsum = (double *)((char *)aux + 8);
    SL_CHECK_CUDA(cudaHostAlloc(&im->host_aux, 64, cudaHostAllocDefault));
    SL_CHECK_CUDA(cuk_attention_init());
    return SL_OK;
}

sl_status backend_create_cuda(int device_ordinal, size_t workspace_bytes, mem_accountant *acct,
                              sl_backend **out) {
    SL_CHECK_ARG(out != NULL, "backend_create_cuda: out is NULL");
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return sl_errorf(SL_ERR_CUDA,
                         "CUDA backend: cudaGetDeviceCount failed: %s (%s); no usable GPU: check "
                         "nvidia-smi, the driver, and CUDA_VISIBLE_DEVICES, or use the CPU backend",
                         cudaGetErrorName(e), cudaGetErrorString(e));
    }
    SL_CHECK_ARG(device_ordinal >= 0 && device_ordinal < n,
                 "backend_create_cuda: device %d requested but %d CUDA device(s) are visible "
                 "(CUDA_VISIBLE_DEVICES); one GPU per local rank is expected",
                 device_ordinal, n);
    SL_CHECK_CUDA(cudaSetDevice(device_ordinal));
    int major = 0, minor = 0, sms = 0;
    SL_CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_ordinal));
    SL_CHECK_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_ordinal));
    SL_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_ordinal));
    if (major < 8)
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "CUDA backend: device %d has compute capability %d.%d; the bf16 "
                         "tensor-core kernels need 8.0 or newer (A100, H100, H200)",
                         device_ordinal, major, minor);
    sl_backend *be = calloc(1, sizeof *be);
    SL_CHECK_ALLOC(be, sizeof *be);
    cuda_impl *im = calloc(1, sizeof *im);
    if (!im) {
        free(be);
        return sl_errorf(SL_ERR_NOMEM, "out of memory allocating %zu bytes", sizeof *im);
    }
    be->kind = SL_BACKEND_CUDA;
    be->device = SL_DEVICE_CUDA;
    be->act_dtype = SL_DTYPE_BF16;
    be->n_threads = 1;
    be->device_ordinal = device_ordinal;
    be->ops = &cuda_kernel_ops;
    be->acct = acct;
    be->impl = im;
    im->sm_count = sms;
    im->cc_major = major;
    im->cc_minor = minor;
    sl_status st = cuda_init(be, workspace_bytes ? workspace_bytes : ((size_t)32 << 20));
    if (st != SL_OK) {
        cuda_destroy(be);
        return st;
    }
    *out = be;
    return SL_OK;
}
