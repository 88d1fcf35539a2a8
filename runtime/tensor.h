/* runtime/tensor.h: dtypes, tensor views, and fp32 <-> bf16/fp16 conversion.
 *
 * defines: sl_dtype, sl_device, sl_tensor, dtype_size, dtype_name,
 *          dtype_parse, tensor_make, tensor_numel, tensor_nbytes,
 *          bf16_from_f32, f32_from_bf16, f16_from_f32, f32_from_f16,
 *          and array forms of the conversions
 *
 * An sl_tensor is a view: it never owns memory. Owners are arenas and flat
 * FSDP buffers (see runtime/mem.h and parallel/fsdp.h).
 */
#ifndef SL_RUNTIME_TENSOR_H
#define SL_RUNTIME_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/status.h"

typedef enum {
    SL_DTYPE_F32 = 0,
    SL_DTYPE_BF16,
    SL_DTYPE_F16,
    SL_DTYPE_U8,
    SL_DTYPE_U16,
    SL_DTYPE_U32,
    SL_DTYPE_I32,
    SL_DTYPE_I64,
    SL_DTYPE_F64, /* host-side reductions (loss sums, gradient norms) */
    SL_DTYPE_COUNT
} sl_dtype;

typedef enum {
    SL_DEVICE_CPU = 0,
    SL_DEVICE_CUDA,
} sl_device;

#define SL_TENSOR_MAX_DIMS 4

typedef struct {
    void *data;
    sl_dtype dtype;
    int ndim;
    int64_t shape[SL_TENSOR_MAX_DIMS];
    sl_device dev;
} sl_tensor;

size_t dtype_size(sl_dtype dt);
/* Safetensors spelling: "F32", "BF16", "F16", "U8", "U16", "U32", "I32", "I64". */
const char *dtype_name(sl_dtype dt);
bool dtype_parse(const char *name, sl_dtype *out);

/* A view over data with up to 4 dims; unused dims are 1. */
sl_tensor tensor_make(void *data, sl_dtype dt, sl_device dev, int ndim, const int64_t *shape);
int64_t tensor_numel(const sl_tensor *t);
size_t tensor_nbytes(const sl_tensor *t);

/* Round-to-nearest-even; NaN stays NaN (quiet bit set), +-Inf stays Inf,
 * values that round past the largest bf16 become Inf as IEEE requires. */
static inline uint16_t bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign, force quiet bit */
        return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return (uint16_t)(u >> 16);
}

static inline float f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f16_from_f32(float f);
float f32_from_f16(uint16_t h);

void bf16_from_f32_array(uint16_t *dst, const float *src, size_t n);
void f32_from_bf16_array(float *dst, const uint16_t *src, size_t n);
void f16_from_f32_array(uint16_t *dst, const float *src, size_t n);
void f32_from_f16_array(float *dst, const uint16_t *src, size_t n);

#endif
