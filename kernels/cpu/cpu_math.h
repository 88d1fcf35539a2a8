/* kernels/cpu/cpu_math.h: a vectorizable expf for the CPU backend's hot
 * loops (softmax, cross-entropy, gelu, silu).
 *
 * defines: cpu_expf
 *
 * glibc's expf is a scalar call; inside a loop it blocks vectorization and
 * costs several ns per element, which made gelu 6x slower than PyTorch's
 * SLEEF-vectorized kernels. cpu_expf is branch-free arithmetic and bit
 * operations only, so gcc vectorizes loops that call it (SSE2 in the portable
 * build). Cephes expf scheme: n = round(x log2 e) by the 1.5*2^23 magic-number
 * trick, r = x - n ln2 in two parts (exact high part), exp(r) by a degree-6
 * polynomial on [-ln2/2, ln2/2], times 2^n built in the exponent bits.
 * Max relative error about 2 ulp on [-86, 88.7]; x < -86 gives 0 (true value
 * < 4.5e-38), x > 88.7 saturates at 3.4e38 (callers subtract the row max, so
 * their arguments are <= 0); NaN propagates.
 */
#ifndef SL_KERNELS_CPU_CPU_MATH_H
#define SL_KERNELS_CPU_CPU_MATH_H

#include <stdint.h>
#include <string.h>

static inline float cpu_expf(float x) {
    const float hi = 88.7228f, lo = -86.0f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t = xc * 1.44269504088896341f + magic;
    float n = t - magic;
    int32_t ti, mi;
    memcpy(&ti, &t, 4);
    memcpy(&mi, &magic, 4);
    int32_t ni = ti - mi; /* n as an integer, |n| <= 128 */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n in two steps so n = 128 (x near the top) does not overflow the
     * exponent field: 2^n = 2^(n-1) * 2 */
    uint32_t eb = (uint32_t)(ni - 1 + 127) << 23; /* unsigned: NaN input gives garbage
                                                     * bits here, never UB */
    float scale;
    memcpy(&scale, &eb, 4);
    float y = p * scale * 2.0f;
    return x < lo ? 0.0f : y;
}

#endif
