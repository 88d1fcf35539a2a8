#include "runtime/tensor.h"

static const size_t dtype_sizes[SL_DTYPE_COUNT] = {4, 2, 2, 1, 2, 4, 4, 8, 8};
static const char *const dtype_names[SL_DTYPE_COUNT] = {"F32", "BF16", "F16", "U8",
                                                       "U16", "U32",  "I32", "I64", "F64"};

size_t dtype_size(sl_dtype dt) { return (unsigned)dt < SL_DTYPE_COUNT ? dtype_sizes[dt] : 0; }

const char *dtype_name(sl_dtype dt) { return (unsigned)dt < SL_DTYPE_COUNT ? dtype_names[dt] : "?"; }

bool dtype_parse(const char *name, sl_dtype *out) {
    for (int i = 0; i < SL_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_names[i]) == 0) {
            *out = (sl_dtype)i;
            return true;
        }
    }
    return false;
}

sl_tensor tensor_make(void *data, sl_dtype dt, sl_device dev, int ndim, const int64_t *shape) {
    sl_tensor t = {.data = data, .dtype = dt, .ndim = ndim, .dev = dev};
    for (int i = 0; i < SL_TENSOR_MAX_DIMS; i++)
        t.shape[i] = i < ndim ? shape[i] : 1;
    return t;
}

int64_t tensor_numel(const sl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t tensor_nbytes(const sl_tensor *t) { return (size_t)tensor_numel(t) * dtype_size(t->dtype); }

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa. Round to nearest
 * even, subnormals handled, overflow to Inf, NaN kept quiet. */
uint16_t f16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((absu >> 13) & 0x3ffu));
    if (absu >= 0x477ff000u) /* >= 65520 rounds to Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (absu < 0x38800000u) { /* below the smallest normal half: subnormal */
        if (absu < 0x33000000u)
            return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(absu >> 23); /* 14..24 */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t v = absu - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t lsb = (v >> 13) & 1u;
    v += 0xfffu + lsb;
    return (uint16_t)(sign | (v >> 13));
}

float f32_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void bf16_from_f32_array(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_from_f32(src[i]);
}

void f32_from_bf16_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = f32_from_bf16(src[i]);
}

void f16_from_f32_array(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = f16_from_f32(src[i]);
}

void f32_from_f16_array(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = f32_from_f16(src[i]);
}
