/* Golden-file helpers shared by the unit tests; see golden.h. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "golden.h"

int golden_run_python(const char *script, const char *args) {
    const char *py = getenv("PYTHON"), *src = getenv("SRC");
    if (!py || !src) {
        fprintf(stderr, "PYTHON and SRC must be set (ctest sets them)\n");
        return -1;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS %s %s/tests/%s %s", py, src,
             script, args);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "%s failed (status %d): %s\n", script, rc, cmd);
        return -1;
    }
    return 0;
}

int golden_make(char *dir_template, const char *script) {
    if (!getenv("PYTHON") || !getenv("SRC")) {
        fprintf(stderr, "PYTHON and SRC must be set (ctest sets them)\n");
        return -1;
    }
    if (!mkdtemp(dir_template)) {
        perror(dir_template);
        return -1;
    }
    char rel[512];
    snprintf(rel, sizeof rel, "reference/%s", script);
    return golden_run_python(rel, dir_template);
}

/* Dataset name as elem-byte elements of the native type; dims (when not
 * NULL) gets its 3 dims. */
static void *read_dataset(hid_t f, const char *name, hid_t type, size_t elem, size_t *n,
                          hsize_t dims[3]) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        fail_msg("golden file has no dataset %s", name);
    hid_t s = H5Dget_space(d);
    if (dims)
        assert_int_equal(H5Sget_simple_extent_dims(s, dims, NULL), 3);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    void *buf = malloc((size_t)(np > 0 ? np : 1) * elem);
    assert_non_null(buf);
    assert_true(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(s);
    H5Dclose(d);
    *n = (size_t)np;
    return buf;
}

double *golden_read(hid_t f, const char *name, size_t *n) {
    return read_dataset(f, name, H5T_NATIVE_DOUBLE, sizeof(double), n, NULL);
}

hid_t golden_open(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden.h5", dir);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        fail_msg("cannot open %s (written by the group setup's tests/reference script)", path);
    return f;
}

int32_t *golden_read_i32(hid_t f, const char *name, size_t *n, hsize_t dims[3]) {
    return read_dataset(f, name, H5T_NATIVE_INT32, sizeof(int32_t), n, dims);
}

uint32_t *golden_read_tokens(hid_t f, const char *name, size_t *n, hsize_t dims[3]) {
    int32_t *ids = golden_read_i32(f, name, n, dims);
    uint32_t *tokens = malloc((*n ? *n : 1) * sizeof *tokens);
    assert_non_null(tokens);
    for (size_t i = 0; i < *n; i++)
        tokens[i] = (uint32_t)ids[i];
    free(ids);
    return tokens;
}

double golden_attr(hid_t f, const char *name) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0)
        fail_msg("golden file has no attribute %s", name);
    double v = 0;
    assert_true(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    return v;
}

int golden_read_optim(hid_t f, cfg_optim *oc) {
    oc->lr = golden_attr(f, "lr");
    oc->lr_min = golden_attr(f, "lr_min");
    oc->lr_warmup = (int)golden_attr(f, "lr_warmup");
    oc->lr_schedule = LR_SCHEDULE_COSINE; /* the scripts' OPT["schedule"] */
    oc->beta1 = golden_attr(f, "beta1");
    oc->beta2 = golden_attr(f, "beta2");
    oc->eps = golden_attr(f, "eps");
    oc->weight_decay = golden_attr(f, "weight_decay");
    oc->grad_clip = golden_attr(f, "grad_clip");
    return (int)golden_attr(f, "total_steps");
}

double golden_rel_err(const float *got, const double *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double golden_rel_err_f(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * (double)want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

int64_t golden_count_valid(const int32_t *targets, size_t n) {
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v += targets[i] >= 0;
    return v;
}
