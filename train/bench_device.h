/* launcher/bench_device.h: what the step benchmark needs to know about the
 * device it runs on: its name, the dense bf16 peak it is rated for (a small
 * table of datasheet figures, for MFU) and its memory in use. (FLOPs per
 * token: model_layout_flops_per_token, the PyTorch peer's count.)
 *
 * defines: bench_device, bench_device_query, bench_peak_lookup
 *
 * Does not: select or initialize a device (the CUDA backend does; query after
 * it exists so that the context is counted in the memory in use), or time
 * anything. Without CUDA (or for the CPU backend) the device is "cpu" with
 * no peak and no device memory figures. No ownership: plain values. Device
 * and stream: reads the calling thread's current CUDA device (properties,
 * cudaMemGetInfo) and enqueues nothing on any stream.
 */
#ifndef SL_LAUNCHER_BENCH_DEVICE_H
#define SL_LAUNCHER_BENCH_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/status.h"

typedef struct {
    char name[256];       /* "NVIDIA H200", or "cpu" */
    bool is_gpu;
    double peak_tflops;   /* dense bf16 from the table; 0: unknown device */
    char peak_source[64]; /* the table row that matched, "" when none */
    size_t mem_total;     /* bytes (GPU only; 0 otherwise) */
    size_t mem_used;      /* total - free by cudaMemGetInfo: every process and
                           * the CUDA context, not only shardlm's buffers */
} bench_device;

/* The device of the calling thread's current CUDA context when cuda is true
 * (the backend has made it current), else the host. */
sl_status bench_device_query(bool cuda, bench_device *d);

/* Dense (no sparsity) bf16 tensor-core peak of a device by its CUDA name, in
 * TFLOP/s, from vendor datasheets: H100 SXM and H200 (SXM) 989, H100 NVL and
 * H200 NVL 835, H100 PCIe 756, A100 (any form) 312. Returns 0 and leaves
 * *row "" for a name the table lacks ("unknown device": pass --peak). */
double bench_peak_lookup(const char *name, const char **row);


#endif
