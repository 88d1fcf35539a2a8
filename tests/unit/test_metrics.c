/* metrics.jsonl + TensorBoard writer: CRC-32C known answer, and a run's files
 * parsed back by an independent Python decoder (tests/tools/tfevents_check.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fsutil.h"
#include "runtime/metrics.h"

static void test_crc32c(void **state) {
    (void)state;
    assert_int_equal(crc32c("123456789", 9), 0xE3069283u); /* the standard check value */
    assert_int_equal(crc32c("", 0), 0);
}

static void test_roundtrip(void **state) {
    (void)state;
    char dir[] = "/tmp/sl_test_metrics_XXXXXX";
    assert_non_null(mkdtemp(dir));
    metrics_writer *w = NULL;
    assert_int_equal(metrics_open(dir, true, &w), SL_OK);
    for (int s = 1; s <= 5; s++) {
        metric_kv kv[] = {{"loss", 4.0 / s}, {"lr", 1e-4 * s}, {"tok_per_s", 1234.5 * s}};
        assert_int_equal(metrics_write(w, s, kv, 3), SL_OK);
    }
    metric_kv nan_kv[] = {{"loss", 0.0 / 0.0}};
    assert_int_equal(metrics_write(w, 6, nan_kv, 1), SL_OK);
    metrics_close(w);
    const char *py = getenv("PYTHON"), *src = getenv("SRC");
    if (!py || !src)
        fail_msg("PYTHON and SRC must be set (run through ctest)");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s/tests/tools/tfevents_check.py %s", py, src, dir);
    assert_int_equal(system(cmd), 0);
    /* a flipped byte in the event file is caught by the CRC check */
    char pattern[300];
    snprintf(pattern, sizeof pattern, "f=$(ls %s/tb/events.out.tfevents.*); printf 'X' | dd of=$f bs=1 seek=60 conv=notrunc 2>/dev/null", dir);
    assert_int_equal(system(pattern), 0);
    assert_int_not_equal(system(cmd), 0);
    assert_int_equal(fs_remove_tree(dir), SL_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_crc32c), cmocka_unit_test(test_roundtrip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
