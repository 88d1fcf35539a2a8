/* Unit tests of data/tokenizer on small tokenizer.json files written here:
 * the heap merge loop against a naive BPE on random merges and words, merge
 * order and ties, special tokens, buffer conventions, arbitrary bytes,
 * tok_add_special, content hashes, threads, and load errors. The real GPT-2
 * and cl100k vocabularies are compared with their reference encoders in
 * tests/integration/test_tokenizer_*.sh. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
// clang-format off
#include <cmocka.h>
// clang-format on
#include <cjson/cJSON.h>

#include "data/tokenizer.h"
#include "runtime/fsutil.h"
#include "runtime/rng.h"

/* A sequential draw from a counter-based Philox stream. */
typedef struct {
    rng_stream s;
    uint64_t i;
} test_rng;
static void rng_seq_init(test_rng *r, uint64_t seed, uint32_t purpose, uint32_t sub) {
    r->s = rng_stream_make(seed, purpose, sub);
    r->i = 0;
}
static uint32_t rng_seq_next(test_rng *r) { return (uint32_t)rng_u64(&r->s, r->i++); }

/* GPT-2's bytes_to_unicode, written out again here (independent of the
 * library's copy): printable bytes stand for themselves, the rest map to
 * U+0100.. in byte order. */
static void byte_str(const char *bytes, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int b = (uint8_t)bytes[i], cp = b;
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
            int n = 0;
            for (int c = 0; c < b; c++)
                n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255));
            cp = 256 + n;
        }
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else {
            out[o++] = (char)(0xc0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[o] = 0;
}

/* A small BPE: 256 byte tokens (id = byte), then merges in rank order. */
#define MAXTOK 512
typedef struct {
    char str[MAXTOK][64];
    size_t len[MAXTOK];
    int n;
    int ml[MAXTOK], mr[MAXTOK], mres[MAXTOK]; /* merge k: ml+mr -> mres */
    int n_merges;
} mini_bpe;

static int mini_find(const mini_bpe *m, const char *s, size_t len) {
    for (int i = 0; i < m->n; i++)
        if (m->len[i] == len && memcmp(m->str[i], s, len) == 0)
            return i;
    return -1;
}

static void mini_init(mini_bpe *m) {
    memset(m, 0, sizeof *m);
    for (int b = 0; b < 256; b++) {
        m->str[b][0] = (char)b;
        m->len[b] = 1;
    }
    m->n = 256;
}

static void mini_merge(mini_bpe *m, int l, int r) {
    char s[128];
    memcpy(s, m->str[l], m->len[l]);
    memcpy(s + m->len[l], m->str[r], m->len[r]);
    size_t len = m->len[l] + m->len[r];
    int id = mini_find(m, s, len);
    if (id < 0) {
        id = m->n++;
        memcpy(m->str[id], s, len);
        m->len[id] = len;
    }
    m->ml[m->n_merges] = l;
    m->mr[m->n_merges] = r;
    m->mres[m->n_merges++] = id;
}

/* Writes the tokenizer.json; extra_added is a JSON array text or NULL. */
static void mini_write(const mini_bpe *m, const char *path, const char *added) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "added_tokens", added ? cJSON_Parse(added) : cJSON_CreateArray());
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pt = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pt, "type", "ByteLevel");
    cJSON_AddFalseToObject(pt, "add_prefix_space");
    cJSON_AddTrueToObject(pt, "use_regex");
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    char a[256], b[256];
    for (int i = 0; i < m->n; i++) {
        byte_str(m->str[i], m->len[i], a);
        cJSON_AddNumberToObject(vocab, a, i);
    }
    for (int k = 0; k < m->n_merges; k++) {
        byte_str(m->str[m->ml[k]], m->len[m->ml[k]], a);
        byte_str(m->str[m->mr[k]], m->len[m->mr[k]], b);
        if (k % 2) { /* both spellings of a merge: "a b" and ["a", "b"] */
            char s[600];
            snprintf(s, sizeof s, "%s %s", a, b);
            cJSON_AddItemToArray(merges, cJSON_CreateString(s));
        } else {
            const char *pair[2] = {a, b};
            cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
        }
    }
    char *text = cJSON_PrintUnformatted(root);
    assert_int_equal(fs_write_atomic(path, text, strlen(text)), SL_OK);
    free(text);
    cJSON_Delete(root);
}

/* The naive BPE: merge the lowest-rank adjacent pair, leftmost on ties. */
static size_t naive_bpe(const mini_bpe *m, const char *s, size_t len, uint32_t *out) {
    size_t n = len;
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)s[i];
    for (;;) {
        int best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++)
            for (int k = 0; k < m->n_merges; k++)
                if (m->ml[k] == (int)out[i] && m->mr[k] == (int)out[i + 1] && (best < 0 || k < best)) {
                    best = k;
                    at = i;
                }
        if (best < 0)
            return n;
        out[at] = (uint32_t)m->mres[best];
        memmove(out + at + 1, out + at + 2, (n - at - 2) * sizeof *out);
        n--;
    }
}

static char tmpdir[64];

static int setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/shardlm_tok_unit.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state) {
    fs_remove_tree(tmpdir);
    return 0;
}

static tokenizer *load_mini(const mini_bpe *m, const char *name, const char *added) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    mini_write(m, path, added);
    tokenizer *t = NULL;
    sl_status st = tok_load(path, &t);
    if (st != SL_OK)
        fail_msg("tok_load: %s", sl_error_message());
    return t;
}

static size_t encode(const tokenizer *t, const char *s, size_t len, int special, uint32_t *ids,
                     size_t cap) {
    size_t n = 0;
    sl_status st = tok_encode(t, s, len, special, ids, cap, &n);
    if (st != SL_OK)
        fail_msg("tok_encode: %s", sl_error_message());
    return n;
}

static void test_merge_order_and_ties(void **state) {
    mini_bpe m;
    mini_init(&m);
    mini_merge(&m, 'a', 'a');      /* 256 "aa" rank 0 */
    mini_merge(&m, 'b', 'c');      /* 257 "bc" rank 1 */
    mini_merge(&m, 'a', 257);      /* 258 "abc" rank 2 */
    mini_merge(&m, 256, 'b');      /* 259 "aab" rank 3: loses to "bc" */
    tokenizer *t = load_mini(&m, "order.json", NULL);
    uint32_t ids[16];
    assert_int_equal(encode(t, "aaa", 3, 0, ids, 16), 2); /* leftmost pair first */
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 'a');
    assert_int_equal(encode(t, "aabc", 4, 0, ids, 16), 2); /* aa, bc (rank 1 before 3) */
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 257);
    assert_int_equal(encode(t, "abc", 3, 0, ids, 16), 1);
    assert_int_equal(ids[0], 258);
    /* "aab" is a token the merges never build whole here: a+a, then aa+b (rank 3) */
    assert_int_equal(encode(t, "aab", 3, 0, ids, 16), 1);
    assert_int_equal(ids[0], 259);
    tok_destroy(t);
}

static void test_random_against_naive(void **state) {
    test_rng rng;
    rng_seq_init(&rng, 1234, 7, 0);
    static mini_bpe m;
    mini_init(&m);
    const char alpha[] = "abcd";
    while (m.n_merges < 200) { /* merges of existing letter tokens, as training makes them */
        int l = (int)(rng_seq_next(&rng) % (uint32_t)m.n), r = (int)(rng_seq_next(&rng) % (uint32_t)m.n);
        if (l < 256 && !strchr(alpha, l))
            l = alpha[l % 4];
        if (r < 256 && !strchr(alpha, r))
            r = alpha[r % 4];
        if (m.len[l] + m.len[r] > 40)
            continue;
        int dup = 0;
        for (int k = 0; k < m.n_merges; k++)
            dup |= m.ml[k] == l && m.mr[k] == r;
        if (!dup)
            mini_merge(&m, l, r);
    }
    tokenizer *t = load_mini(&m, "random.json", NULL);
    char word[400];
    uint32_t got[400], want[400];
    for (int trial = 0; trial < 300; trial++) {
        size_t len = 1 + rng_seq_next(&rng) % 200;
        for (size_t i = 0; i < len; i++)
            word[i] = alpha[rng_seq_next(&rng) % 4];
        size_t n = encode(t, word, len, 0, got, 400);
        size_t nw = naive_bpe(&m, word, len, want);
        assert_int_equal(n, nw);
        assert_memory_equal(got, want, n * sizeof *got);
    }
    tok_destroy(t);
}

static const char added_json[] =
    "[{\"id\":300,\"content\":\"<|endoftext|>\",\"special\":true,\"lstrip\":false,\"rstrip\":false},"
    "{\"id\":301,\"content\":\"<sep>\",\"special\":false}]";

static void test_specials_and_buffers(void **state) {
    mini_bpe m;
    mini_init(&m);
    mini_merge(&m, 'x', 'y');
    tokenizer *t = load_mini(&m, "specials.json", added_json);
    assert_int_equal(tok_vocab_size(t), 302);
    assert_int_equal(tok_special_id(t, "<|endoftext|>"), 300);
    assert_int_equal(tok_eos_id(t), 300);
    assert_int_equal(tok_bos_id(t), -1);
    uint32_t ids[64];
    const char *s = "xy<|endoftext|>xy<sep>";
    size_t n = encode(t, s, strlen(s), 1, ids, 64);
    assert_int_equal(n, 4);
    assert_int_equal(ids[1], 300);
    assert_int_equal(ids[3], 301);
    /* not allowed: the special is text; the non-special added token still splits */
    n = encode(t, s, strlen(s), 0, ids, 64);
    assert_int_equal(ids[n - 1], 301);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 300);
    /* buffer too small: SL_ERR_INVALID and the count needed */
    size_t need = 0;
    assert_int_equal(tok_encode(t, s, strlen(s), 1, ids, 2, &need), SL_ERR_INVALID);
    assert_int_equal(need, 4);
    char out[64];
    size_t out_len = 0;
    uint32_t four[4] = {256, 300, 256, 301};
    assert_int_equal(tok_decode(t, four, 4, out, sizeof out, &out_len), SL_OK);
    assert_int_equal(out_len, strlen(s));
    assert_memory_equal(out, s, out_len);
    assert_int_equal(tok_decode(t, four, 4, out, 3, &out_len), SL_ERR_INVALID);
    assert_int_equal(out_len, strlen(s));
    uint32_t bad[2] = {65, 999};
    assert_int_equal(tok_decode(t, bad, 2, out, sizeof out, &out_len), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "id 999 at position 1"));
    tok_destroy(t);
}

static void test_add_special_and_hash(void **state) {
    mini_bpe m;
    mini_init(&m);
    mini_merge(&m, 'x', 'y');
    tokenizer *a = load_mini(&m, "h1.json", NULL);
    tokenizer *b = load_mini(&m, "h2.json", NULL);
    assert_string_equal(tok_hash(a), tok_hash(b));
    assert_int_equal(strlen(tok_hash(a)), 16);
    uint32_t id = 0;
    assert_int_equal(tok_add_special(b, "<|im_start|>", -1, &id), SL_OK);
    assert_int_equal(id, 257);
    assert_int_equal(tok_vocab_size(b), 258);
    assert_string_not_equal(tok_hash(a), tok_hash(b));
    assert_int_equal(tok_add_special(b, "<|im_start|>", -1, &id), SL_OK); /* idempotent */
    assert_int_equal(id, 257);
    assert_int_equal(tok_add_special(b, "<|other|>", 'x', &id), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "is an ordinary token"));
    uint32_t ids[8];
    assert_int_equal(encode(b, "<|im_start|>xy", 14, 1, ids, 8), 2);
    assert_int_equal(ids[0], 257);
    mini_merge(&m, 'y', 'z');
    tokenizer *c = load_mini(&m, "h3.json", NULL);
    assert_string_not_equal(tok_hash(a), tok_hash(c));
    tok_destroy(a);
    tok_destroy(b);
    tok_destroy(c);
}

/* Arbitrary bytes never fail and decode back to themselves. */
static void test_arbitrary_bytes(void **state) {
    mini_bpe m;
    mini_init(&m);
    mini_merge(&m, 0xc3, 0xa9); /* é */
    mini_merge(&m, ' ', 'a');
    tokenizer *t = load_mini(&m, "bytes.json", added_json);
    test_rng rng;
    rng_seq_init(&rng, 99, 1, 0);
    char text[2048], back[2048];
    uint32_t ids[2048];
    for (int trial = 0; trial < 300; trial++) {
        size_t len = rng_seq_next(&rng) % 2000;
        for (size_t i = 0; i < len; i++) {
            uint32_t r = rng_seq_next(&rng);
            text[i] = (char)(r % 3 == 0 ? "a \n\xc3\xa9<|"[r / 3 % 8] : (int)(r >> 8));
        }
        size_t n = 0, out_len = 0;
        assert_int_equal(tok_encode(t, text, len, trial % 2, ids, 2048, &n), SL_OK);
        assert_int_equal(tok_decode(t, ids, n, back, sizeof back, &out_len), SL_OK);
        assert_int_equal(out_len, len);
        assert_memory_equal(back, text, len);
    }
    /* an invalid byte is a piece of its own: " a\xff" is [" a", 0xff] */
    assert_int_equal(encode(t, " a\xff", 3, 0, ids, 8), 2);
    assert_int_equal(ids[0], 257);
    assert_int_equal(ids[1], 0xff);
    tok_destroy(t);
}

typedef struct {
    const tokenizer *t;
    const char *text;
    size_t len, n;
    uint32_t ids[4096];
} thread_job;

static void *encode_thread(void *p) {
    thread_job *j = p;
    for (int r = 0; r < 20; r++)
        if (tok_encode(j->t, j->text, j->len, 1, j->ids, 4096, &j->n) != SL_OK)
            j->n = SIZE_MAX;
    return NULL;
}

static void test_threads(void **state) {
    mini_bpe m;
    mini_init(&m);
    mini_merge(&m, 'a', 'b');
    mini_merge(&m, 256, 'c');
    tokenizer *t = load_mini(&m, "threads.json", added_json);
    char text[3000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = "abc d<|endoftext|>"[i % 18];
    static thread_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){.t = t, .text = text, .len = sizeof text};
        assert_int_equal(pthread_create(&th[i], NULL, encode_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(jobs[i].n, jobs[0].n);
        assert_memory_equal(jobs[i].ids, jobs[0].ids, jobs[0].n * sizeof(uint32_t));
    }
    tok_destroy(t);
}

static void expect_load_error(const char *name, const char *json, const char *needle) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    assert_int_equal(fs_write_atomic(path, json, strlen(json)), SL_OK);
    tokenizer *t = (tokenizer *)1;
    assert_int_not_equal(tok_load(path, &t), SL_OK);
    assert_null(t);
    if (!strstr(sl_error_message(), needle))
        fail_msg("error \"%s\" lacks \"%s\"", sl_error_message(), needle);
    if (!strstr(sl_error_message(), path))
        fail_msg("error \"%s\" does not name %s", sl_error_message(), path);
}

static void test_load_errors(void **state) {
    mini_bpe m;
    mini_init(&m);
    char path[256];
    snprintf(path, sizeof path, "%s/base.json", tmpdir);
    mini_write(&m, path, NULL);
    char *base;
    size_t len;
    assert_int_equal(fs_read_file(path, &base, &len, 1 << 20), SL_OK);
    cJSON *j = cJSON_Parse(base);
    free(base);
    cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges");
    cJSON_AddItemToArray(merges, cJSON_CreateString("a q"));
    char *s = cJSON_PrintUnformatted(j);
    expect_load_error("nomerge.json", s, "model.merges[0] \"a q\": the merged token is not in the vocabulary");
    free(s);
    cJSON_DeleteItemFromArray(merges, 0);
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_Parse("{\"type\":\"Lowercase\"}"));
    s = cJSON_PrintUnformatted(j);
    expect_load_error("norm.json", s, "normalizer: normalizer \"Lowercase\" is not supported");
    free(s);
    /* NFC is implemented; a Prepend before a ByteLevel pre-tokenizer is not */
    cJSON_ReplaceItemInObject(j, "normalizer",
                              cJSON_Parse("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":"
                                          "\"NFC\"},{\"type\":\"Prepend\",\"prepend\":\"x\"}]}"));
    s = cJSON_PrintUnformatted(j);
    expect_load_error("norm2.json", s, "only NFC or NFKC is supported before a ByteLevel");
    free(s);
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_CreateNull());
    cJSON_ReplaceItemInObject(j, "added_tokens",
                              cJSON_Parse("[{\"id\":256,\"content\":\"<m>\",\"lstrip\":true}]"));
    s = cJSON_PrintUnformatted(j);
    expect_load_error("lstrip.json", s, "sets lstrip, which shardlm does not implement");
    free(s);
    cJSON_Delete(j);
    expect_load_error("trunc.json", "{\"model\": {\"vocab\": {", "invalid JSON");
    expect_load_error("bytes.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                                    "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
                      "no token for the single byte 0x00");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_order_and_ties), cmocka_unit_test(test_random_against_naive),
        cmocka_unit_test(test_specials_and_buffers), cmocka_unit_test(test_add_special_and_hash),
        cmocka_unit_test(test_arbitrary_bytes),      cmocka_unit_test(test_threads),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
