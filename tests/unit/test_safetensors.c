/* runtime/safetensors: round trips, byte-exact output against hand-written
 * bytes, interop with an independent Python writer/reader
 * (tests/tools/safetensors_py.py), every malformed-file case of the issue,
 * writer argument errors, and sharded checkpoints. */
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
#include "runtime/safetensors.h"

static char g_dir[] = "/tmp/sl_test_safetensors_XXXXXX";

static int setup(void **state) {
    (void)state;
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return fs_remove_tree(g_dir) == SL_OK ? 0 : -1;
}

static void path_in(char *out, size_t cap, const char *name) {
    assert_int_equal(fs_join(out, cap, g_dir, name), SL_OK);
}

static void write_bytes(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* File = u64 LE length (len_override when not ~0) + header + data_len bytes. */
static size_t build(uint8_t *buf, size_t cap, uint64_t len_override, const char *header, size_t data_len) {
    size_t n = strlen(header);
    uint64_t len = len_override != ~0ull ? len_override : n;
    assert_true(8 + n + data_len <= cap);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(len >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + n + i] = (uint8_t)(i * 7 + 1);
    return 8 + n + data_len;
}

/* Both entry points (file through mmap, and memory) must refuse the bytes
 * with SL_ERR_FORMAT and a message containing want. */
static void expect_bad_bytes(const uint8_t *buf, size_t len, const char *want) {
    char path[512];
    path_in(path, sizeof path, "bad.safetensors");
    write_bytes(path, buf, len);
    safetensors_file *f = (safetensors_file *)1;
    sl_status st = safetensors_open(path, &f);
    if (st != SL_ERR_FORMAT || !strstr(sl_error_message(), want) || !strstr(sl_error_message(), path))
        fail_msg("expected SL_ERR_FORMAT with \"%s\" and the path; got %s: %s", want,
                 sl_status_name(st), sl_error_message());
    assert_null(f);
    uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan catches over-reads */
    assert_non_null(copy);
    memcpy(copy, buf, len);
    st = safetensors_open_memory(copy, len, "mem", &f);
    if (st != SL_ERR_FORMAT || !strstr(sl_error_message(), want))
        fail_msg("memory: expected SL_ERR_FORMAT with \"%s\"; got %s: %s", want, sl_status_name(st),
                 sl_error_message());
    free(copy);
}

static void expect_bad(const char *header, size_t data_len, const char *want) {
    static uint8_t buf[4096];
    expect_bad_bytes(buf, build(buf, sizeof buf, ~0ull, header, data_len), want);
}

static void test_malformed(void **state) {
    (void)state;
    static uint8_t buf[4096];
    /* length and header framing */
    expect_bad_bytes((const uint8_t *)"", 0, "too short for the 8-byte header length");
    expect_bad_bytes((const uint8_t *)"\x02\0\0", 3, "too short");
    expect_bad_bytes(buf, build(buf, sizeof buf, 1000, "{}", 0), "runs past the end of the file");
    expect_bad_bytes(buf, build(buf, sizeof buf, ~0ull - 1, "{}", 0), "over the 100000000-byte limit");
    expect_bad_bytes(buf, build(buf, sizeof buf, 100000001, "{}", 0), "over the 100000000-byte limit");
    /* not JSON, or not an object */
    expect_bad("", 0, "is not valid JSON");
    expect_bad("not json at all", 0, "is not valid JSON");
    expect_bad("{\"a\":{\"dtype\":\"F32\"", 0, "is not valid JSON");
    expect_bad("[1, 2]", 0, "header is a JSON array, expected an object");
    expect_bad("{}  x", 0, "data after the JSON value, at file offset 12");
    expect_bad("{\"\xff\":1}", 0, "not valid UTF-8 at file offset 10");
    expect_bad("{\"a\":\x01{}}", 0, "control byte 0x01 at file offset 13");
    /* offsets */
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "\"a\" (file bytes 116..124) and \"b\" (file bytes 120..128) overlap");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}",
               10, "before tensor \"b\" belong to no tensor");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 9,
               "5 trailing bytes belong to no tensor");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[100,104]}}", 4,
               "tensor \"a\": data_offsets [100, 104] end at file offset");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "begin after end");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 4,
               "\"data_offsets\" must be [begin, end]");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 4,
               "\"data_offsets\" must be [begin, end]");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0.5,1]}}", 4,
               "\"data_offsets\" must be [begin, end]");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4,
               "\"data_offsets\" must be [begin, end]");
    /* dtype x shape against the byte range, overflow */
    expect_bad("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,10]}}", 10,
               "tensor \"w\": BF16 x shape [2, 3] is 12 bytes but data_offsets [0, 10]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
               "F32 x shape [4294967296, 4294967296] overflows 64 bits");
    expect_bad("{\"w\":{\"dtype\":\"I64\",\"shape\":[2305843009213693],\"data_offsets\":[0,8]}}", 8,
               "is 18446744073709544 bytes but data_offsets [0, 8]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               "shape[0] is not an integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
               "has 9 dims; shardlm reads at most 8");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4,
               "\"shape\" is a JSON object, expected an array");
    /* dtypes */
    expect_bad("{\"w\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor \"w\" has unknown dtype \"Q7\"");
    expect_bad("{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
               "tensor \"w\" has dtype F64, a safetensors dtype shardlm does not support");
    expect_bad("{\"w\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
               "\"dtype\" is a JSON number");
    /* structure */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, "tensor \"a\" appears twice");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
               "has field \"dtype\" twice");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "tensor \"a\" lacks \"data_offsets\"");
    expect_bad("{\"a\":[1]}", 1, "tensor \"a\" is a JSON array");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "\"__metadata__\" entry \"k\" is a JSON number");
    expect_bad("{\"__metadata__\":[]}", 0, "\"__metadata__\" is a JSON array");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" twice");

    /* truncated data: a valid file with its last bytes cut off */
    size_t n = build(buf, sizeof buf, ~0ull,
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                     "\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[16,24]}}",
                     24);
    safetensors_file *f = NULL;
    assert_int_equal(safetensors_open_memory(buf, n, "ok", &f), SL_OK);
    safetensors_close(f);
    expect_bad_bytes(buf, n - 3, "tensor \"b\": data_offsets [16, 24] end at file offset");
    expect_bad_bytes(buf, n - 24, "tensor \"a\": data_offsets [0, 16] end at file offset");
    expect_bad_bytes(buf, 20, "runs past the end of the file");
    /* a missing file is an I/O error naming it */
    assert_int_equal(safetensors_open("/nonexistent/x.safetensors", &f), SL_ERR_IO);
    assert_non_null(strstr(sl_error_message(), "/nonexistent/x.safetensors"));
    assert_int_equal(safetensors_open(g_dir, &f), SL_ERR_IO);
}

/* What the reference accepts beyond what our writer emits. */
static void test_valid_variants(void **state) {
    (void)state;
    /* the example file from the reference crate's documentation: header
     * length 60, not padded, 16 zero bytes of I32 data */
    static const uint8_t doc[] =
        "<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"
        "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    safetensors_file *f = NULL;
    assert_int_equal(safetensors_open_memory(doc, sizeof doc - 1, "doc", &f), SL_OK);
    const safetensors_tensor *t = safetensors_find(f, "test");
    assert_non_null(t);
    assert_int_equal(t->dtype, SL_DTYPE_I32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->nbytes, 16);
    assert_int_equal(t->begin, 68);
    assert_null(safetensors_find(f, "tes"));
    assert_null(safetensors_metadata(f, "format"));
    safetensors_close(f);

    /* zero-size tensors share offsets, entries in any order, unknown fields
     * ignored, null metadata, trailing whitespace, no tensors at all */
    static uint8_t buf[1024];
    size_t n = build(buf, sizeof buf, ~0ull,
                     "{\"z\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
                     "\"e1\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4],\"x\":1},"
                     "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                     "\"e0\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[0,0]},"
                     "\"__metadata__\":null}  \n ",
                     6);
    assert_int_equal(safetensors_open_memory(buf, n, "v", &f), SL_OK);
    assert_int_equal(safetensors_count(f), 4);
    const char *order[] = {"e0", "s", "e1", "z"}; /* by (begin, end) */
    for (int i = 0; i < 4; i++)
        assert_string_equal(safetensors_get(f, i)->name, order[i]);
    assert_null(safetensors_get(f, 4));
    assert_int_equal(safetensors_find(f, "s")->ndim, 0);
    assert_int_equal(safetensors_find(f, "e1")->nbytes, 0);
    safetensors_close(f);
    n = build(buf, sizeof buf, ~0ull, "{}", 0);
    assert_int_equal(safetensors_open_memory(buf, n, "empty", &f), SL_OK);
    assert_int_equal(safetensors_count(f), 0);
    safetensors_close(f);
}

static const float W[2] = {1.0f, -2.0f};
static const uint16_t B[2] = {0x3f80, 0x3f00}; /* bf16 1.0, 0.5 */
static const uint16_t H = 0x3c00;               /* f16 1.0 */

/* The bytes the reference writer produces for this content (tensors in its
 * order: dtype alignment descending, then name), written out by hand. */
static void test_byte_exact(void **state) {
    (void)state;
    safetensors_writer *w = safetensors_writer_create();
    assert_non_null(w);
    assert_int_equal(safetensors_writer_set_metadata(w, "note", "a\"b\n"), SL_OK);
    assert_int_equal(safetensors_writer_set_metadata(w, "format", "tf"), SL_OK);
    assert_int_equal(safetensors_writer_set_metadata(w, "format", "pt"), SL_OK); /* replaces */
    assert_int_equal(safetensors_writer_add(w, "w", SL_DTYPE_F32, 1, (int64_t[]){2}, W), SL_OK);
    assert_int_equal(safetensors_writer_add(w, "b", SL_DTYPE_BF16, 2, (int64_t[]){1, 2}, B), SL_OK);
    assert_int_equal(safetensors_writer_add(w, "h", SL_DTYPE_F16, 0, NULL, &H), SL_OK);
    char path[512];
    path_in(path, sizeof path, "exact.safetensors");
    assert_int_equal(safetensors_writer_write(w, path), SL_OK);
    safetensors_writer_destroy(w);

    static const char expect[] =
        "\xd8\0\0\0\0\0\0\0" /* 216 = 212 bytes of JSON + 4 spaces */
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"a\\\"b\\n\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[12,14]}}    "
        "\x00\x00\x80\x3f\x00\x00\x00\xc0" /* 1.0f, -2.0f */
        "\x80\x3f\x00\x3f"                 /* bf16 1.0, 0.5 */
        "\x00\x3c";                        /* f16 1.0 */
    char *got;
    size_t len;
    assert_int_equal(fs_read_file(path, &got, &len, 1 << 20), SL_OK);
    assert_int_equal(len, sizeof expect - 1);
    assert_memory_equal(got, expect, len);
    free(got);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    assert_false(fs_exists(tmp));

    /* an empty writer gives "{}" padded to 8 */
    w = safetensors_writer_create();
    assert_int_equal(safetensors_writer_write(w, path), SL_OK);
    safetensors_writer_destroy(w);
    assert_int_equal(fs_read_file(path, &got, &len, 1 << 20), SL_OK);
    assert_int_equal(len, 16);
    assert_memory_equal(got, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(got);
}

static void run_py(const char *verb, const char *path) {
    const char *py = getenv("PYTHON"), *src = getenv("SRC");
    if (!py || !src)
        fail_msg("PYTHON and SRC must be set (run through ctest)");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s/tests/tools/safetensors_py.py %s %s", py, src, verb, path);
    assert_int_equal(system(cmd), 0);
}

static const float BF16_SRC[5] = {1.0f, 3.14159f, -2.5e-3f, 65504.0f, 1e30f};
static const float F16_SRC[4] = {0.1f, -2.0f, 65504.0f, 6e-8f};

/* C writes, Python (json + numpy + torch's bf16 rounding) checks; Python
 * writes, C reads; and C reads back what C wrote. */
static void test_roundtrip_python(void **state) {
    (void)state;
    float f32[6];
    for (int i = 0; i < 6; i++)
        f32[i] = (float)i * 0.5f - 1.0f;
    uint16_t bf16[5], f16[4];
    bf16_from_f32_array(bf16, BF16_SRC, 5);
    f16_from_f32_array(f16, F16_SRC, 4);

    char path[512];
    path_in(path, sizeof path, "c.safetensors");
    safetensors_writer *w = safetensors_writer_create();
    assert_int_equal(safetensors_writer_add(w, "bf16", SL_DTYPE_BF16, 1, (int64_t[]){5}, bf16), SL_OK);
    assert_int_equal(safetensors_writer_add(w, "f32", SL_DTYPE_F32, 2, (int64_t[]){2, 3}, f32), SL_OK);
    assert_int_equal(safetensors_writer_add(w, "f16", SL_DTYPE_F16, 2, (int64_t[]){2, 2}, f16), SL_OK);
    assert_int_equal(safetensors_writer_set_metadata(w, "note", "round trip"), SL_OK);
    assert_int_equal(safetensors_writer_set_metadata(w, "format", "pt"), SL_OK);
    assert_int_equal(safetensors_writer_write(w, path), SL_OK);
    safetensors_writer_destroy(w);
    run_py("check", path);

    safetensors_file *f = NULL;
    assert_int_equal(safetensors_open(path, &f), SL_OK);
    assert_int_equal(safetensors_count(f), 3);
    assert_string_equal(safetensors_get(f, 0)->name, "bf16"); /* insertion order on disk */
    assert_string_equal(safetensors_metadata(f, "note"), "round trip");
    const safetensors_tensor *t = safetensors_find(f, "f32");
    assert_int_equal(t->dtype, SL_DTYPE_F32);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_memory_equal(t->data, f32, sizeof f32);
    assert_memory_equal(safetensors_find(f, "bf16")->data, bf16, sizeof bf16);
    assert_memory_equal(safetensors_find(f, "f16")->data, f16, sizeof f16);
    safetensors_close(f);

    path_in(path, sizeof path, "py.safetensors");
    run_py("write", path);
    assert_int_equal(safetensors_open(path, &f), SL_OK);
    assert_int_equal(safetensors_count(f), 3);
    assert_string_equal(safetensors_metadata(f, "source"), "python");
    assert_string_equal(safetensors_get(f, 0)->name, "f32"); /* sorted by offset, not header order */
    t = safetensors_find(f, "f32");
    assert_int_equal(t->nbytes, sizeof f32);
    assert_memory_equal(t->data, f32, sizeof f32);
    t = safetensors_find(f, "bf16");
    assert_int_equal(t->dtype, SL_DTYPE_BF16);
    assert_memory_equal(t->data, bf16, sizeof bf16); /* torch's rounding == ours */
    t = safetensors_find(f, "f16");
    assert_int_equal(t->dtype, SL_DTYPE_F16);
    assert_memory_equal(t->data, f16, sizeof f16); /* numpy's rounding == ours */
    safetensors_close(f);
}

static void test_writer_errors(void **state) {
    (void)state;
    float x[4] = {0};
    safetensors_writer *w = safetensors_writer_create();
    assert_int_equal(safetensors_writer_add(w, "a", SL_DTYPE_F32, 1, (int64_t[]){4}, x), SL_OK);
    assert_int_equal(safetensors_writer_add(w, "a", SL_DTYPE_F32, 1, (int64_t[]){4}, x), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "tensor \"a\" was already added"));
    assert_int_equal(safetensors_writer_add(w, "__metadata__", SL_DTYPE_F32, 1, (int64_t[]){4}, x),
                     SL_ERR_INVALID);
    assert_int_equal(safetensors_writer_add(w, "bad\xc3", SL_DTYPE_F32, 1, (int64_t[]){4}, x),
                     SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "not valid UTF-8"));
    assert_int_equal(safetensors_writer_add(w, "neg", SL_DTYPE_F32, 1, (int64_t[]){-4}, x), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "dim 0 is -4"));
    assert_int_equal(safetensors_writer_add(w, "null", SL_DTYPE_F32, 1, (int64_t[]){4}, NULL), SL_ERR_INVALID);
    assert_int_equal(safetensors_writer_add(w, "big", SL_DTYPE_F32, 2, (int64_t[]){INT64_MAX, 4}, x),
                     SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "overflows"));
    assert_int_equal(safetensors_writer_add(w, "d9", SL_DTYPE_F32, 9, (int64_t[9]){1}, x), SL_ERR_INVALID);
    assert_int_equal(safetensors_writer_add(w, "empty", SL_DTYPE_F32, 2, (int64_t[]){0, 3}, NULL), SL_OK);
    assert_int_equal(safetensors_writer_write(w, "/nonexistent/dir/x.safetensors"), SL_ERR_IO);
    assert_non_null(strstr(sl_error_message(), "/nonexistent/dir/x.safetensors"));
    safetensors_writer_destroy(w);
}

static void write_shard(const char *name, const char *const *tensors, int n) {
    static const float v[2] = {1.5f, 2.5f};
    safetensors_writer *w = safetensors_writer_create();
    for (int i = 0; i < n; i++)
        assert_int_equal(safetensors_writer_add(w, tensors[i], SL_DTYPE_F32, 1, (int64_t[]){2}, v), SL_OK);
    char path[512];
    path_in(path, sizeof path, name);
    assert_int_equal(safetensors_writer_write(w, path), SL_OK);
    safetensors_writer_destroy(w);
}

static void write_index(const char *json) {
    char path[512];
    path_in(path, sizeof path, "model.safetensors.index.json");
    write_bytes(path, json, strlen(json));
}

static void expect_index_error(const char *want) {
    safetensors_index *ix = (safetensors_index *)1;
    sl_status st = safetensors_index_open(g_dir, &ix);
    if (st != SL_ERR_FORMAT || !strstr(sl_error_message(), want))
        fail_msg("expected SL_ERR_FORMAT with \"%s\"; got %s: %s", want, sl_status_name(st),
                 sl_error_message());
    assert_null(ix);
}

static void test_index(void **state) {
    (void)state;
    /* a folder with only model.safetensors */
    write_shard("model.safetensors", (const char *[]){"x"}, 1);
    safetensors_index *ix = NULL;
    assert_int_equal(safetensors_index_open(g_dir, &ix), SL_OK);
    assert_int_equal(safetensors_index_count(ix), 1);
    assert_int_equal(safetensors_index_shard_count(ix), 1);
    safetensors_index_close(ix);

    /* two shards behind an index: found by name across shards */
    write_shard("model-00001-of-00002.safetensors", (const char *[]){"b.weight", "a.weight"}, 2);
    write_shard("model-00002-of-00002.safetensors", (const char *[]){"c.weight"}, 1);
    const char *good = "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                       "\"a.weight\":\"model-00001-of-00002.safetensors\","
                       "\"b.weight\":\"model-00001-of-00002.safetensors\","
                       "\"c.weight\":\"model-00002-of-00002.safetensors\"}}";
    write_index(good);
    assert_int_equal(safetensors_index_open(g_dir, &ix), SL_OK);
    assert_int_equal(safetensors_index_count(ix), 3);
    assert_int_equal(safetensors_index_shard_count(ix), 2);
    assert_string_equal(safetensors_index_get(ix, 0)->name, "a.weight");
    const safetensors_file *sh = NULL;
    const safetensors_tensor *t = safetensors_index_find(ix, "c.weight", &sh);
    assert_non_null(t);
    assert_ptr_equal(sh, safetensors_index_shard(ix, 1));
    assert_non_null(strstr(safetensors_path(sh), "model-00002-of-00002.safetensors"));
    assert_float_equal(((const float *)t->data)[1], 2.5f, 0.0f);
    assert_null(safetensors_index_find(ix, "d.weight", &sh));
    assert_null(sh);
    safetensors_index_close(ix);
    char path[512];
    path_in(path, sizeof path, "model.safetensors.index.json");
    assert_int_equal(safetensors_index_open(path, &ix), SL_OK); /* the .json itself */
    safetensors_index_close(ix);

    /* index and shards that disagree */
    write_index("{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\","
                "\"b.weight\":\"model-00001-of-00002.safetensors\","
                "\"c.weight\":\"model-00001-of-00002.safetensors\"}}");
    expect_index_error("maps tensor \"c.weight\" to model-00001-of-00002.safetensors, which has no such tensor");
    write_index("{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\","
                "\"b.weight\":\"model-00001-of-00002.safetensors\","
                "\"c.weight\":\"model-00002-of-00002.safetensors\","
                "\"c.weight\":\"model-00001-of-00002.safetensors\"}}");
    expect_index_error("maps tensor \"c.weight\" to model-00001-of-00002.safetensors, but it is in "
                       "model-00002-of-00002.safetensors");
    write_index("{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\"}}");
    expect_index_error("holds tensor \"b.weight\", which the weight_map of");
    write_index("{\"weight_map\":{\"a.weight\":\"../model-00001-of-00002.safetensors\"}}");
    expect_index_error("shards must be plain file names");
    write_index("{\"weight_map\":[]}");
    expect_index_error("has no \"weight_map\" object");
    write_index("{\"weight_map\":");
    expect_index_error("is not valid JSON");
    write_shard("model-00002-of-00002.safetensors", (const char *[]){"c.weight", "a.weight"}, 2);
    write_index(good);
    expect_index_error("tensor \"a.weight\" is in both");
    /* a malformed shard is reported with the shard's name */
    path_in(path, sizeof path, "model-00002-of-00002.safetensors");
    write_bytes(path, "\x02\0\0\0\0\0\0\0{", 9);
    expect_index_error("model-00002-of-00002.safetensors");

    assert_int_equal(fs_remove_tree(g_dir), SL_OK);
    assert_int_equal(fs_mkdirs(g_dir), SL_OK);
    assert_int_equal(safetensors_index_open(g_dir, &ix), SL_ERR_IO);
    assert_non_null(strstr(sl_error_message(), "neither model.safetensors.index.json nor model.safetensors"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_valid_variants),
        cmocka_unit_test(test_byte_exact),     cmocka_unit_test(test_roundtrip_python),
        cmocka_unit_test(test_writer_errors),  cmocka_unit_test(test_index),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
