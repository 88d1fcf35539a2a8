/* Unit tests for runtime/: RNG known answers, bf16/f16 rounding, status and
 * error propagation, memory accounting, atomic file writes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/fsutil.h"
#include "runtime/mem.h"
#include "runtime/rng.h"
#include "runtime/status.h"
#include "runtime/tensor.h"

/* Random123 tests/kat_vectors, the three "philox4x32 10" lines:
 * counter (4 words), key (2 words) -> output (4 words). */
static void test_philox_kat(void **state) {
    (void)state;
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        philox_ctr c = {{kat[i][0], kat[i][1], kat[i][2], kat[i][3]}};
        philox_key k = {{kat[i][4], kat[i][5]}};
        philox_ctr r = philox4x32_10(c, k);
        for (int j = 0; j < 4; j++)
            assert_int_equal(r.v[j], kat[i][6 + j]);
    }
}

static void test_rng_streams(void **state) {
    (void)state;
    rng_stream a = rng_stream_make(42, RNG_PURPOSE_INIT, 3);
    rng_stream b = rng_stream_make(42, RNG_PURPOSE_INIT, 4);
    rng_stream c = rng_stream_make(43, RNG_PURPOSE_INIT, 3);
    /* pure function of (seed, purpose, sub, index) */
    assert_true(rng_u64(&a, 7) == rng_u64(&a, 7));
    assert_true(rng_u64(&a, 7) != rng_u64(&b, 7));
    assert_true(rng_u64(&a, 7) != rng_u64(&c, 7));
    /* filling a range in pieces equals filling it at once */
    float whole[64], part[64];
    rng_fill_normal(&a, 100, whole, 64, 0.0f, 1.0f);
    rng_fill_normal(&a, 100, part, 20, 0.0f, 1.0f);
    rng_fill_normal(&a, 120, part + 20, 44, 0.0f, 1.0f);
    assert_memory_equal(whole, part, sizeof whole);
    /* moments of 200k draws */
    double s = 0, s2 = 0, umin = 1, umax = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = rng_normal(&a, (uint64_t)i);
        s += x;
        s2 += x * x;
        double u = rng_uniform(&b, (uint64_t)i);
        umin = u < umin ? u : umin;
        umax = u > umax ? u : umax;
    }
    assert_true(fabs(s / n) < 0.01);
    assert_true(fabs(s2 / n - 1.0) < 0.02);
    assert_true(umin > 0.0 && umax < 1.0);
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_bf16_rounding(void **state) {
    (void)state;
    /* exact values pass through */
    assert_int_equal(bf16_from_f32(1.0f), 0x3f80);
    assert_int_equal(bf16_from_f32(-2.0f), 0xc000);
    assert_int_equal(bf16_from_f32(0.0f), 0x0000);
    assert_int_equal(bf16_from_f32(-0.0f), 0x8000);
    /* ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> 1 (even) */
    assert_int_equal(bf16_from_f32(from_bits(0x3f808000)), 0x3f80);
    /* halfway with odd lower neighbour rounds up to even */
    assert_int_equal(bf16_from_f32(from_bits(0x3f818000)), 0x3f82);
    /* just above halfway rounds up, just below rounds down */
    assert_int_equal(bf16_from_f32(from_bits(0x3f808001)), 0x3f81);
    assert_int_equal(bf16_from_f32(from_bits(0x3f807fff)), 0x3f80);
    /* Inf stays Inf; the largest finite float rounds to Inf */
    assert_int_equal(bf16_from_f32(INFINITY), 0x7f80);
    assert_int_equal(bf16_from_f32(-INFINITY), 0xff80);
    assert_int_equal(bf16_from_f32(from_bits(0x7f7fffff)), 0x7f80);
    /* the largest bf16 is exact */
    assert_int_equal(bf16_from_f32(from_bits(0x7f7f0000)), 0x7f7f);
    /* NaN stays NaN, also a NaN whose payload would round into Inf */
    uint16_t n1 = bf16_from_f32(NAN);
    assert_true((n1 & 0x7f80) == 0x7f80 && (n1 & 0x7f) != 0);
    uint16_t n2 = bf16_from_f32(from_bits(0x7f800001)); /* signalling NaN, tiny payload */
    assert_true((n2 & 0x7f80) == 0x7f80 && (n2 & 0x7f) != 0);
    uint16_t n3 = bf16_from_f32(from_bits(0xffffffff));
    assert_true((n3 & 0x7f80) == 0x7f80 && (n3 & 0x7f) != 0 && (n3 & 0x8000));
    assert_true(isnan(f32_from_bf16(n2)));
    /* subnormals round like everything else */
    assert_int_equal(bf16_from_f32(from_bits(0x00000001)), 0x0000);
    assert_int_equal(bf16_from_f32(from_bits(0x00018000)), 0x0002);
    /* round trip of every bf16 value that is not NaN */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = f32_from_bf16((uint16_t)h);
        if (isnan(f))
            continue;
        assert_int_equal(bf16_from_f32(f), h);
    }
    assert_int_equal(bits(f32_from_bf16(0x3f80)), 0x3f800000);
}

static void test_f16_rounding(void **state) {
    (void)state;
    assert_int_equal(f16_from_f32(1.0f), 0x3c00);
    assert_int_equal(f16_from_f32(65504.0f), 0x7bff);
    assert_int_equal(f16_from_f32(65520.0f), 0x7c00); /* rounds to Inf */
    assert_int_equal(f16_from_f32(65519.0f), 0x7bff);
    assert_int_equal(f16_from_f32(from_bits(0x33800000)), 0x0001); /* 2^-24 smallest subnormal */
    assert_int_equal(f16_from_f32(from_bits(0x33000000)), 0x0000); /* 2^-25 ties to even 0 */
    assert_true(isnan(f32_from_f16(f16_from_f32(NAN))));
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = f32_from_f16((uint16_t)h);
        if (isnan(f))
            continue;
        assert_int_equal(f16_from_f32(f), h);
    }
}

static sl_status inner_fail(int x) {
    if (x < 0)
        return sl_errorf(SL_ERR_FORMAT, "bad value %d at offset %d", x, 17);
    return SL_OK;
}

static sl_status outer(int x) {
    SL_TRY(inner_fail(x));
    return SL_OK;
}

static sl_status check_arg(int n) {
    SL_CHECK_ARG(n > 0, "n must be positive, got %d", n);
    return SL_OK;
}

static void test_status_propagation(void **state) {
    (void)state;
    sl_error_clear();
    assert_int_equal(outer(1), SL_OK);
    assert_string_equal(sl_error_message(), "");
    assert_int_equal(outer(-3), SL_ERR_FORMAT);
    assert_non_null(strstr(sl_error_message(), "bad value -3 at offset 17"));
    assert_non_null(strstr(sl_error_message(), "test_runtime.c:"));
    sl_error_wrapf(SL_ERR_FORMAT, "reading shard %s", "a.h5");
    assert_non_null(strstr(sl_error_message(), "reading shard a.h5: "));
    assert_non_null(strstr(sl_error_message(), "bad value -3"));
    assert_int_equal(check_arg(0), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "n must be positive, got 0"));
    assert_string_equal(sl_status_name(SL_ERR_TIMEOUT), "SL_ERR_TIMEOUT");
    assert_string_equal(sl_status_name((sl_status)999), "SL_ERR_UNKNOWN");
}

static void test_mem_accountant(void **state) {
    (void)state;
    mem_accountant acct;
    mem_accountant_init(&acct);
    void *a = mem_host_alloc(&acct, MEM_CATEGORY_PARAMS, 1000);
    void *b = mem_host_alloc(&acct, MEM_CATEGORY_ACTIVATIONS, 500);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(((uintptr_t)a & 63) == 0);
    assert_int_equal(mem_current(&acct, MEM_CATEGORY_PARAMS), 1000);
    assert_int_equal(mem_current_total(&acct), 1500);
    mem_host_free(&acct, MEM_CATEGORY_ACTIVATIONS, b, 500);
    void *c = mem_host_alloc(&acct, MEM_CATEGORY_ACTIVATIONS, 200);
    assert_int_equal(mem_peak(&acct, MEM_CATEGORY_ACTIVATIONS), 500);
    assert_int_equal(mem_peak_total(&acct), 1500);
    assert_int_equal(mem_current_total(&acct), 1200);
    mem_host_free(&acct, MEM_CATEGORY_ACTIVATIONS, c, 200);
    mem_host_free(&acct, MEM_CATEGORY_PARAMS, a, 1000);
    assert_int_equal(mem_current_total(&acct), 0);
    assert_string_equal(mem_category_name(MEM_CATEGORY_OPTIMIZER), "optimizer");
}

static void test_fs_atomic(void **state) {
    (void)state;
    char dir[] = "/tmp/sl_test_fs_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[256], path[300];
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    assert_int_equal(fs_mkdirs(sub), SL_OK);
    assert_true(fs_is_dir(sub));
    snprintf(path, sizeof path, "%s/file.txt", sub);
    assert_int_equal(fs_write_atomic(path, "hello", 5), SL_OK);
    assert_int_equal(fs_write_atomic(path, "world!", 6), SL_OK);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(fs_read_file(path, &buf, &len, 100), SL_OK);
    assert_int_equal(len, 6);
    assert_string_equal(buf, "world!");
    free(buf);
    assert_int_equal(fs_read_file(path, &buf, &len, 3), SL_ERR_IO);
    assert_non_null(strstr(sl_error_message(), "more than the 3 allowed"));
    /* no temporary file left behind */
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    assert_false(fs_exists(tmp));
    /* writing into a missing folder fails and names the path */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/x", dir);
    assert_int_equal(fs_write_atomic(bad, "x", 1), SL_ERR_IO);
    assert_non_null(strstr(sl_error_message(), "missing"));
    assert_int_equal(fs_remove_tree(dir), SL_OK);
    assert_false(fs_exists(dir));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_kat),     cmocka_unit_test(test_rng_streams),
        cmocka_unit_test(test_bf16_rounding),  cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_status_propagation), cmocka_unit_test(test_mem_accountant),
        cmocka_unit_test(test_fs_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
