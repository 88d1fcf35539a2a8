/* launcher/bench_device.c: device name, peak table, memory in use and the
 * peer's FLOP count for the step benchmark (see bench_device.h). */
#include "train/bench_device.h"

#include <stdio.h>
#include <string.h>

#ifdef SHARDLM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

typedef struct {
    const char *match; /* substring of the CUDA device name */
    double tflops;
} peak_row;

/* First match wins, so the specific forms come before the generic name.
 * Sources: NVIDIA H100 and H200 datasheets (bf16 tensor core, the sparsity
 * figure halved), A100 datasheet. "H100 80GB HBM3" is how the SXM part
 * names itself; "GH200" contains "H200" and has the SXM H100/H200 rate. */
static const peak_row peak_table[] = {
    {"H100 PCIe", 756.0}, {"H100 NVL", 835.0}, {"H200 NVL", 835.0},
    {"H100", 989.0},      {"H200", 989.0},     {"A100", 312.0},
};

double bench_peak_lookup(const char *name, const char **row) {
    if (row)
        *row = "";
    for (size_t i = 0; i < sizeof peak_table / sizeof peak_table[0]; i++) {
        if (strstr(name, peak_table[i].match)) {
            if (row)
                *row = peak_table[i].match;
            return peak_table[i].tflops;
        }
    }
    return 0.0;
}

sl_status bench_device_query(bool cuda, bench_device *d) {
    memset(d, 0, sizeof *d);
    if (!cuda) {
        snprintf(d->name, sizeof d->name, "cpu");
        return SL_OK;
    }
#ifdef SHARDLM_HAVE_CUDA
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    struct cudaDeviceProp prop;
    if (e == cudaSuccess)
        e = cudaGetDeviceProperties(&prop, dev);
    size_t free_b = 0, total_b = 0;
    if (e == cudaSuccess)
        e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess)
        return sl_errorf(SL_ERR_INTERNAL, "bench: querying the current CUDA device failed (%s); the backend "
                                          "was created, so the device should answer: check nvidia-smi",
                         cudaGetErrorString(e));
    d->is_gpu = true;
    snprintf(d->name, sizeof d->name, "%s", prop.name);
    const char *row = "";
    d->peak_tflops = bench_peak_lookup(d->name, &row);
    snprintf(d->peak_source, sizeof d->peak_source, "%s", row);
    d->mem_total = total_b;
    d->mem_used = total_b - free_b;
    return SL_OK;
#else
    return sl_errorf(SL_ERR_UNSUPPORTED, "bench: a CUDA device was asked for but this shardlm is built "
                                         "without CUDA (rebuild with -DSHARDLM_CUDA=ON)");
#endif
}
