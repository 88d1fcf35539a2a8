/* defines: the helpers the unit tests share to check shardlm against golden
 * files a tests/reference/ script writes (OK, golden_make, golden_run_python,
 * golden_open, golden_read, golden_read_i32, golden_read_tokens, golden_attr,
 * golden_read_optim, golden_rel_err, golden_rel_err_f, golden_count_valid).
 * Every helper but golden_make and golden_run_python fails the running cmocka
 * test (fail_msg/assert_*) instead of returning an error, so it may only be
 * called from inside a cmocka test or group setup. It does not compare
 * models or parameters (support/golden_job.h holds the loop the model-layout
 * tests share; a test with its own layout owns its loop).
 *
 * Linked into every tests/unit/test_*.c executable (tests/CMakeLists.txt). A
 * test that includes this must include <setjmp.h>, <stdarg.h>, <stddef.h>
 * and <cmocka.h> first, as cmocka requires. */
#pragma once

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config.h"
#include "runtime/status.h"

/* Fails the test, naming the call, its status and the error message, unless
 * expr returns SL_OK. */
#define OK(expr)                                                                              \
    do {                                                                                      \
        sl_status st_ = (expr);                                                               \
        if (st_ != SL_OK)                                                                     \
            fail_msg("%s -> %s: %s", #expr, sl_status_name(st_), sl_error_message());         \
    } while (0)

/* Makes a fresh directory from dir_template (ending in XXXXXX; rewritten in
 * place) and runs `$PYTHON $SRC/tests/reference/<script> <dir>` there with the
 * sanitizer environment removed (Python does not load the ASan runtime).
 * Returns 0, or -1 after printing why to stderr (for a cmocka group setup). */
int golden_make(char *dir_template, const char *script);

/* Runs `$PYTHON $SRC/tests/<script> <args>` (script relative to tests/, e.g.
 * "tools/reward_hf_check.py": a checker of what shardlm wrote) with the
 * sanitizer environment removed, as golden_make does. Returns 0 when it
 * exits 0, else -1 after printing the command to stderr. */
int golden_run_python(const char *script, const char *args);

/* Opens <dir>/golden.h5 read-only; fails the test naming the path when it
 * cannot. The caller closes it (H5Fclose). */
hid_t golden_open(const char *dir);

/* Dataset `name` of the open golden file as doubles; *n gets its element
 * count. Caller frees. Fails the test if the dataset is missing. */
double *golden_read(hid_t f, const char *name, size_t *n);

/* Dataset `name` as int32; *n gets its element count and, when dims is not
 * NULL, dims[0..2] its shape, which must have rank 3. Caller frees. */
int32_t *golden_read_i32(hid_t f, const char *name, size_t *n, hsize_t dims[3]);

/* Dataset `name` (token ids, rank 3) as the uint32 tokens the model takes;
 * *n and dims as golden_read_i32. Caller frees. */
uint32_t *golden_read_tokens(hid_t f, const char *name, size_t *n, hsize_t dims[3]);

/* Scalar double attribute `name` of the file's root. */
double golden_attr(hid_t f, const char *name);

/* Overwrites the optimizer settings the reference scripts store as root
 * attributes (lr, lr_min, lr_warmup, beta1, beta2, eps, weight_decay,
 * grad_clip; the schedule is cosine, as both scripts use) and returns the
 * attribute total_steps. */
int golden_read_optim(hid_t f, cfg_optim *oc);

/* Relative error by norm, ||got - want|| / ||want|| (the absolute norm when
 * want is all zero); float results against the golden doubles. */
double golden_rel_err(const float *got, const double *want, size_t n);

/* The same between two float buffers. */
double golden_rel_err_f(const float *got, const float *want, size_t n);

/* How many of the n targets count in the loss (target >= 0). */
int64_t golden_count_valid(const int32_t *targets, size_t n);
