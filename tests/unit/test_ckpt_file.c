/* Unit tests for ckpt/ckpt_file: a rank file round-trips bitwise across
 * units of several chunks (uneven lengths, a part without optimizer state),
 * the attributes come back, a flipped data byte fails Fletcher32 and a
 * wrong stored hash fails XXH3 (both naming file and dataset), a missing or
 * truncated file is refused, and the overlap helper used by resharding. */
#include <hdf5.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt/ckpt_file.h"
#include "runtime/h5io.h"
#include "runtime/fsutil.h"
#include "runtime/status.h"

static void check_ok(sl_status st) {
    if (st != SL_OK)
        fail_msg("%s: %s", sl_status_name(st), sl_error_message());
}

static float val(int unit, int which, int64_t i) {
    return (float)(unit * 1000 + which * 100) + (float)i * 1e-3f;
}

/* Units: 3 chunks + a bit, exactly one chunk, 7 elements. */
static const int64_t lens[3] = {3 * CKPT_FILE_CHUNK + 5, CKPT_FILE_CHUNK, 7};

static void write_file(const char *path) {
    unlink(path); /* a leftover of an interrupted run */
    ckpt_file_info in = {.rank = 1, .world = 4, .shard_rank = 1, .shard_size = 2, .replicate_rank = 0,
                         .replicate_size = 2, .step = 42};
    snprintf(in.fsdp_mode, sizeof in.fsdp_mode, "hybrid");
    ckpt_writer *w;
    check_ok(ckpt_writer_open(path, &in, &w));
    for (int u = 0; u < 3; u++) {
        int64_t n = lens[u];
        float *d[3];
        for (int k = 0; k < 3; k++) {
            d[k] = malloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++)
                d[k][i] = val(u, k, i);
        }
        ckpt_range r = {.start = n * 1, .len = n, .valid = n - 2, .numel = 2 * n - 2};
        check_ok(ckpt_writer_add_unit(w, "model", u, &r, d[0], d[1], d[2]));
        if (u == 2) /* a part without optimizer state */
            check_ok(ckpt_writer_add_unit(w, "lora", 0, &r, d[0], NULL, NULL));
        for (int k = 0; k < 3; k++)
            free(d[k]);
    }
    assert_false(fs_exists(path)); /* only under the temporary name until closed */
    check_ok(ckpt_writer_close(w));
    assert_true(fs_exists(path));
}

static void test_round_trip(void **state) {
    (void)state;
    char path[] = "/tmp/test_ckpt_file_rt.h5";
    write_file(path);
    ckpt_reader *r;
    check_ok(ckpt_reader_open(path, &r));
    const ckpt_file_info *in = ckpt_reader_info(r);
    assert_int_equal(in->rank, 1);
    assert_int_equal(in->world, 4);
    assert_int_equal(in->shard_size, 2);
    assert_int_equal(in->replicate_size, 2);
    assert_int_equal(in->step, 42);
    assert_string_equal(in->fsdp_mode, "hybrid");
    int n = 0;
    check_ok(ckpt_reader_n_units(r, "model", &n));
    assert_int_equal(n, 3);
    check_ok(ckpt_reader_n_units(r, "lora", &n));
    assert_int_equal(n, 1);
    check_ok(ckpt_reader_n_units(r, "absent", &n));
    assert_int_equal(n, 0);
    static const char *const names[3] = {"param", "m", "v"};
    for (int u = 0; u < 3; u++) {
        ckpt_range rg;
        check_ok(ckpt_reader_range(r, "model", u, &rg));
        assert_int_equal(rg.len, lens[u]);
        assert_int_equal(rg.start, lens[u]);
        assert_int_equal(rg.valid, lens[u] - 2);
        float *buf = malloc((size_t)rg.len * sizeof(float));
        for (int k = 0; k < 3; k++) {
            check_ok(ckpt_reader_read(r, "model", u, names[k], buf));
            for (int64_t i = 0; i < rg.len; i++)
                if (buf[i] != val(u, k, i))
                    fail_msg("unit %d %s element %lld: %g", u, names[k], (long long)i, (double)buf[i]);
        }
        free(buf);
    }
    assert_true(ckpt_reader_has(r, "lora", 0, "param"));
    assert_false(ckpt_reader_has(r, "lora", 0, "m"));
    assert_false(ckpt_reader_has(r, "model", 7, "param"));
    ckpt_range rg;
    assert_int_equal(ckpt_reader_range(r, "model", 7, &rg), SL_ERR_FORMAT);
    assert_non_null(strstr(sl_error_message(), "has no group /model/00007"));
    ckpt_reader_close(r);
    unlink(path);
}

/* Byte offset of the first chunk of a dataset (h5py's get_chunk_info). */
static long long chunk_offset(const char *path, const char *dset) {
    check_ok(h5io_init());
    h5io_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    haddr_t addr = 0;
    hsize_t size = 0;
    unsigned mask = 0;
    hsize_t off[1] = {0};
    hid_t sp = H5Dget_space(d);
    herr_t rc = H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    h5io_unlock();
    assert_true(rc >= 0);
    return (long long)addr;
}

static void test_flipped_byte(void **state) {
    (void)state;
    char path[] = "/tmp/test_ckpt_file_flip.h5";
    write_file(path);
    long long off = chunk_offset(path, "/model/00000/m") + 1000;
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, off, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, off, SEEK_SET);
    fputc(c ^ 0x01, fp);
    fclose(fp);
    ckpt_reader *r;
    check_ok(ckpt_reader_open(path, &r));
    float *buf = malloc((size_t)lens[0] * sizeof(float));
    check_ok(ckpt_reader_read(r, "model", 0, "param", buf)); /* other datasets still read */
    assert_int_equal(ckpt_reader_read(r, "model", 0, "m", buf), SL_ERR_FORMAT);
    assert_non_null(strstr(sl_error_message(), "/model/00000/m cannot be read: a chunk fails its Fletcher32"));
    assert_non_null(strstr(sl_error_message(), path));
    free(buf);
    ckpt_reader_close(r);
    unlink(path);
}

static void test_wrong_hash(void **state) {
    (void)state;
    char path[] = "/tmp/test_ckpt_file_hash.h5";
    write_file(path);
    check_ok(h5io_init());
    h5io_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/model/00002/v", H5P_DEFAULT);
    hid_t a = H5Aopen(d, "xxh3", H5P_DEFAULT);
    uint64_t h = 0;
    H5Aread(a, H5T_NATIVE_UINT64, &h);
    h ^= 1;
    herr_t rc = H5Awrite(a, H5T_NATIVE_UINT64, &h);
    H5Aclose(a);
    H5Dclose(d);
    H5Fclose(f);
    h5io_unlock();
    assert_true(rc >= 0);
    ckpt_reader *r;
    check_ok(ckpt_reader_open(path, &r));
    float buf[7];
    assert_int_equal(ckpt_reader_read(r, "model", 2, "v", buf), SL_ERR_FORMAT);
    assert_non_null(strstr(sl_error_message(), "dataset /model/00002/v has XXH3"));
    ckpt_reader_close(r);
    unlink(path);
}

static void test_missing_truncated(void **state) {
    (void)state;
    ckpt_reader *r = NULL;
    assert_int_equal(ckpt_reader_open("/tmp/test_ckpt_file_none.h5", &r), SL_ERR_IO);
    assert_non_null(strstr(sl_error_message(), "is missing"));
    char path[] = "/tmp/test_ckpt_file_trunc.h5";
    write_file(path);
    assert_int_equal(truncate(path, 2048), 0);
    assert_int_not_equal(ckpt_reader_open(path, &r), SL_OK);
    assert_null(r);
    assert_non_null(strstr(sl_error_message(), path));
    unlink(path);
}

static void test_overlap(void **state) {
    (void)state;
    /* a unit of 10 elements: old shards of 4 (k = 3: [0,4) [4,8) [8,10)+2 padding),
     * new shards of 5 (k = 2) */
    ckpt_range old2 = {8, 4, 2, 10}, new0 = {0, 5, 5, 10}, new1 = {5, 5, 5, 10}, old1 = {4, 4, 4, 10};
    int64_t lo, hi;
    ckpt_range_overlap(&new0, &old2, &lo, &hi);
    assert_true(hi <= lo);
    ckpt_range_overlap(&new1, &old2, &lo, &hi);
    assert_int_equal(lo, 8);
    assert_int_equal(hi, 10);
    ckpt_range_overlap(&new0, &old1, &lo, &hi);
    assert_int_equal(lo, 4);
    assert_int_equal(hi, 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_flipped_byte),
        cmocka_unit_test(test_wrong_hash),     cmocka_unit_test(test_missing_truncated),
        cmocka_unit_test(test_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
