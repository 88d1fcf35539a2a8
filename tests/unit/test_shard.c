/* Unit tests for data/shard: round trip, h5py reads our shards, a flipped
 * byte in a chunk and a truncated file give errors naming file and chunk. */
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

#include "runtime/h5io.h"
#include "data/shard.h"
#include "runtime/fsutil.h"
#include "runtime/status.h"

#define VOCAB 50257u
#define CHUNK 1024u
#define N_DOCS 300

static uint32_t tok_at(uint64_t i) { return (uint32_t)((i * 7919 + 13) % VOCAB); }
static uint8_t mask_at(uint64_t i) { return i % 3 != 0; }
static size_t doc_len(int d) { return (size_t)((d * 37) % 101 + 1); }

static void check_ok(sl_status st) {
    if (st != SL_OK)
        fail_msg("%s: %s", sl_status_name(st), sl_error_message());
}

static void test_meta(shard_meta *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->tokenizer_name, sizeof m->tokenizer_name, "gpt2");
    snprintf(m->tokenizer_hash, sizeof m->tokenizer_hash, "0123456789abcdef");
    m->vocab_size = VOCAB;
    m->bos_id = -1;
    m->eos_id = 50256;
    m->im_start_id = -1;
    m->im_end_id = -1;
    snprintf(m->source, sizeof m->source, "test_shard");
}

/* Writes the pattern shard_check.py expects; returns the token count. */
static uint64_t write_pattern(const char *path) {
    shard_meta m;
    test_meta(&m);
    shard_writer *w;
    check_ok(shard_writer_open(path, &m, CHUNK, 3, true, &w));
    uint32_t ids[128];
    uint8_t mask[128];
    uint64_t pos = 0;
    for (int d = 0; d < N_DOCS; d++) {
        size_t n = doc_len(d);
        for (size_t i = 0; i < n; i++) {
            ids[i] = tok_at(pos + i);
            mask[i] = mask_at(pos + i);
        }
        check_ok(shard_writer_add_doc(w, ids, mask, n));
        pos += n;
    }
    assert_int_equal(shard_writer_tokens(w), pos);
    assert_int_equal(shard_writer_docs(w), N_DOCS);
    check_ok(shard_writer_close(w));
    return pos;
}

static void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "/tmp/shardlm_test_shard_%d_%s", (int)getpid(), name);
}

static void test_roundtrip(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "rt.h5");
    uint64_t n = write_pattern(path);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(fs_exists(tmp));
    shard_reader *r;
    check_ok(shard_open(path, &r));
    const shard_info *in = shard_info_get(r);
    assert_int_equal(in->n_tokens, n);
    assert_int_equal(in->n_docs, N_DOCS);
    assert_true(in->has_loss_mask);
    assert_string_equal(in->meta.tokenizer_name, "gpt2");
    assert_int_equal(in->meta.eos_id, 50256);
    assert_int_equal(in->meta.im_end_id, -1);
    /* a range across chunk boundaries */
    uint32_t ids[3000];
    uint8_t mask[3000];
    check_ok(shard_read_tokens(r, 1000, 3000, ids, mask));
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(ids[i], tok_at(1000 + (uint64_t)i));
        assert_int_equal(mask[i], mask_at(1000 + (uint64_t)i));
    }
    const uint64_t *off = shard_doc_offsets(r);
    for (int d = 0; d < N_DOCS; d++)
        assert_int_equal(off[d + 1] - off[d], doc_len(d));
    shard_verify_stats vs;
    check_ok(shard_verify(r, &vs));
    assert_int_equal(vs.chunks, (n + CHUNK - 1) / CHUNK);
    assert_int_equal(vs.min_doc, 1);
    assert_int_equal(vs.max_doc, 101);
    assert_true(vs.stored_bytes > 0);
    /* out of range */
    assert_int_equal(shard_read_tokens(r, n - 1, 2, ids, NULL), SL_ERR_INVALID);
    shard_close(r);
    unlink(path);
}

/* h5py reads the same tokens, masks and offsets: once through HDF5's filter
 * pipeline (our filter as a plugin), once independently of data/h5io.c with
 * no plugin path (raw chunks, Fletcher32 in Python, Debian's zstd CLI). */
static void test_h5py_reads(void **state) {
    (void)state;
    const char *py = getenv("PYTHON"), *src = getenv("SRC"), *build = getenv("BUILD");
    if (!py || !src || !build)
        fail_msg("PYTHON, SRC and BUILD must be set (ctest sets them)");
    char path[256];
    tmp_path(path, sizeof path, "py.h5");
    write_pattern(path);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "HDF5_PLUGIN_PATH=%s %s %s/tests/tools/shard_check.py %s", build, py,
             src, path);
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd, "env -u HDF5_PLUGIN_PATH %s %s/tests/tools/shard_check.py --raw %s",
             py, src, path);
    int rc_raw = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_int_equal(rc_raw, 0);
}

/* Byte offset of chunk idx of /tokens in the file. */
static long chunk_file_offset(const char *path, hsize_t idx, hsize_t *size) {
    h5io_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t off[1];
    unsigned fm;
    haddr_t addr = 0;
    herr_t rc = H5Dget_chunk_info(d, sp, idx, off, &fm, &addr, size);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    h5io_unlock();
    assert_true(rc >= 0);
    return (long)addr;
}

static void test_flipped_byte(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "flip.h5");
    write_pattern(path);
    check_ok(h5io_init());
    hsize_t size = 0;
    long at = chunk_file_offset(path, 5, &size);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, at + (long)size / 2, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, at + (long)size / 2, SEEK_SET), 0);
    fputc(c ^ 0x10, f);
    fclose(f);

    shard_reader *r;
    check_ok(shard_open(path, &r)); /* attributes and offsets are intact */
    sl_status st = shard_verify(r, NULL);
    assert_int_equal(st, SL_ERR_FORMAT);
    const char *msg = sl_error_message();
    assert_non_null(strstr(msg, path));
    print_message("flipped byte: %s\n", msg);
    assert_non_null(strstr(msg, "/tokens chunk 5 "));
    assert_non_null(strstr(msg, "checksum"));
    /* chunk 4 still reads; a read touching chunk 5 fails the same way */
    uint32_t ids[CHUNK];
    check_ok(shard_read_tokens(r, 4 * CHUNK, CHUNK, ids, NULL));
    assert_int_equal(shard_read_tokens(r, 5 * CHUNK + 10, 4, ids, NULL), SL_ERR_FORMAT);
    assert_non_null(strstr(sl_error_message(), "chunk 5 "));
    shard_close(r);
    unlink(path);
}

static void test_truncated(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "trunc.h5");
    write_pattern(path);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size / 2), 0);
    shard_reader *r = NULL;
    assert_int_equal(shard_open(path, &r), SL_ERR_FORMAT);
    assert_null(r);
    const char *msg = sl_error_message();
    assert_non_null(strstr(msg, path));
    print_message("truncated: %s\n", msg);
    assert_non_null(strstr(msg, "truncated"));
    unlink(path);
}

static void test_writer_refuses_bad_ids(void **state) {
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "bad.h5");
    shard_meta m;
    test_meta(&m);
    shard_writer *w;
    check_ok(shard_writer_open(path, &m, CHUNK, 1, false, &w));
    uint32_t ids[2] = {1, VOCAB};
    assert_int_equal(shard_writer_add_doc(w, ids, NULL, 2), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "50257"));
    shard_writer_abort(w);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(fs_exists(tmp));
    assert_false(fs_exists(path));
    /* missing file */
    shard_reader *r;
    assert_int_equal(shard_open(path, &r), SL_ERR_FORMAT);
    assert_non_null(strstr(sl_error_message(), path));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_h5py_reads),
        cmocka_unit_test(test_flipped_byte),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_writer_refuses_bad_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
