/* data/tokenizer.c: the tokenizer object and tok_load's dispatch by file
 * kind. The file formats are in tok_load.c and tok_hf.c, encode in
 * tok_encode.c, decode in tok_decode.c, the merge loop in bpe.c, the
 * regexes in pretokenize.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "data/tok_internal.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/mem.h"
#include "runtime/sort.h"

/* ---- hash maps ---- */

sl_status tok_pairmap_init(tok_pairmap *m, size_t expected) {
    size_t cap = 64;
    while (cap < expected * 2)
        cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a merge table of %zu pairs", expected);
    for (size_t i = 0; i < cap; i++)
        m->slots[i].key = TOK_PAIR_EMPTY;
    m->cap = cap;
    m->count = 0;
    return SL_OK;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->slots);
    *m = (tok_pairmap){0};
}

static sl_status pairmap_grow(tok_pairmap *m) {
    tok_pairmap n = {0};
    SL_TRY(tok_pairmap_init(&n, m->cap));
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != TOK_PAIR_EMPTY)
            SL_TRY(tok_pairmap_put(&n, (uint32_t)(m->slots[i].key >> 32), (uint32_t)m->slots[i].key,
                                   m->slots[i].rank, m->slots[i].merged));
    tok_pairmap_free(m);
    *m = n;
    return SL_OK;
}

sl_status tok_pairmap_put(tok_pairmap *m, uint32_t left, uint32_t right, uint32_t rank,
                          uint32_t merged) {
    if (!m->cap)
        SL_TRY(tok_pairmap_init(m, 1024));
    if ((m->count + 1) * 2 > m->cap)
        SL_TRY(pairmap_grow(m));
    uint64_t key = (uint64_t)left << 32 | right;
    size_t mask = m->cap - 1, i = (size_t)tok_pair_hash(key) & mask;
    while (m->slots[i].key != TOK_PAIR_EMPTY && m->slots[i].key != key)
        i = (i + 1) & mask;
    if (m->slots[i].key == key) {
        if (rank < m->slots[i].rank) {
            m->slots[i].rank = rank;
            m->slots[i].merged = merged;
        }
        return SL_OK;
    }
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].merged = merged;
    m->count++;
    return SL_OK;
}


uint32_t tok_bytemap_get(const tokenizer *t, const void *bytes, size_t len) {
    const tok_bytemap *m = &t->bytes;
    if (!m->cap)
        return TOK_NONE;
    uint64_t h = XXH3_64bits(bytes, len), tag = h >> 32;
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    for (;;) {
        uint64_t e = m->slots[i];
        if (e == UINT64_MAX)
            return TOK_NONE;
        uint32_t id = (uint32_t)e;
        if (e >> 32 == tag && t->len[id] == len && memcmp(tok_bytes(t, id), bytes, len) == 0)
            return id;
        i = (i + 1) & mask;
    }
}

/* ---- construction ---- */

sl_status tok_new(tokenizer **out) {
    tokenizer *t = calloc(1, sizeof *t);
    SL_CHECK_ALLOC(t, sizeof *t);
    t->bos_id = t->eos_id = -1;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = TOK_NONE;
    *out = t;
    return SL_OK;
}

static sl_status grow_ids(tokenizer *t, uint32_t n) {
    if (n <= t->n_ids)
        return SL_OK;
    uint8_t *kind = realloc(t->kind, n);
    if (kind)
        t->kind = kind;
    uint64_t *off = realloc(t->off, n * sizeof *off);
    if (off)
        t->off = off;
    uint32_t *len = realloc(t->len, n * sizeof *len);
    if (len)
        t->len = len;
    if (!kind || !off || !len)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for a vocabulary of %u ids", n);
    for (uint32_t i = t->n_ids; i < n; i++) {
        t->kind[i] = TOK_KIND_GAP;
        t->off[i] = 0;
        t->len[i] = 0;
    }
    t->n_ids = n;
    return SL_OK;
}

sl_status tok_set_token(tokenizer *t, uint32_t id, const void *bytes, size_t len, tok_kind kind) {
    if (id >= (1u << 30))
        return sl_errorf(SL_ERR_FORMAT, "token id %u is too large (ids must be below 2^30)", id);
    if (len == 0 || len > UINT32_MAX / 2)
        return sl_errorf(SL_ERR_FORMAT, "token id %u has %zu bytes", id, len);
    if (id >= t->n_ids) {
        uint32_t n = t->n_ids ? t->n_ids : 256;
        while (n <= id)
            n *= 2;
        SL_TRY(grow_ids(t, n));
    }
    SL_TRY(mem_grow_bytes(&t->arena, &t->arena_cap, t->arena_len + len, 1 << 16));
    memcpy(t->arena + t->arena_len, bytes, len);
    t->off[id] = t->arena_len;
    t->len[id] = (uint32_t)len;
    t->kind[id] = (uint8_t)kind;
    t->arena_len += len;
    return SL_OK;
}

sl_status tok_put_special(tokenizer *t, const char *text, size_t len, uint32_t id, int always) {
    for (size_t i = 0; i < t->n_specials; i++) {
        tok_special *s = &t->specials[i];
        if (s->len == len && memcmp(s->text, text, len) == 0) {
            if (s->id == id)
                return SL_OK;
            return sl_errorf(SL_ERR_INVALID, "special token \"%.*s\" already has id %u, not %u",
                             (int)len, text, s->id, id);
        }
        if (s->id == id)
            return sl_errorf(SL_ERR_INVALID, "id %u is already the special token \"%s\"", id,
                             s->text);
    }
    if (t->n_specials == t->cap_specials) {
        size_t cap = t->cap_specials ? 2 * t->cap_specials : 16;
        tok_special *s = realloc(t->specials, cap * sizeof *s);
        SL_CHECK_ALLOC(s, cap * sizeof *s);
        t->specials = s;
        t->cap_specials = cap;
    }
    char *copy = malloc(len + 1);
    SL_CHECK_ALLOC(copy, len + 1);
    memcpy(copy, text, len);
    copy[len] = 0;
    t->specials[t->n_specials++] = (tok_special){copy, len, id, always};
    return tok_set_token(t, id, text, len, TOK_KIND_SPECIAL);
}

sl_status tok_index_vocab(tokenizer *t, const char *src) {
    size_t n = 0;
    for (uint32_t id = 0; id < t->n_ids; id++)
        n += t->kind[id] == TOK_KIND_ORDINARY;
    size_t cap = 64;
    while (cap < 2 * n)
        cap *= 2;
    free(t->bytes.slots);
    t->bytes.slots = malloc(cap * sizeof *t->bytes.slots);
    SL_CHECK_ALLOC(t->bytes.slots, cap * sizeof *t->bytes.slots);
    memset(t->bytes.slots, 0xff, cap * sizeof *t->bytes.slots);
    t->bytes.cap = cap;
    t->bytes.count = 0;
    size_t mask = cap - 1;
    for (uint32_t id = 0; id < t->n_ids; id++) {
        if (t->kind[id] != TOK_KIND_ORDINARY)
            continue;
        const char *b = tok_bytes(t, id);
        uint64_t h = XXH3_64bits(b, t->len[id]);
        size_t i = (size_t)h & mask;
        while (t->bytes.slots[i] != UINT64_MAX) {
            uint32_t o = (uint32_t)t->bytes.slots[i];
            if (t->len[o] == t->len[id] && memcmp(tok_bytes(t, o), b, t->len[id]) == 0)
                return sl_errorf(SL_ERR_FORMAT, "%s: ids %u and %u are the same token", src, o,
                                 id);
            i = (i + 1) & mask;
        }
        t->bytes.slots[i] = (h >> 32) << 32 | id;
        t->bytes.count++;
        if (t->len[id] == 1 && t->model == TOK_MODEL_BYTELEVEL)
            t->byte_id[(uint8_t)b[0]] = id;
    }
    for (int b = 0; b < 256 && t->model == TOK_MODEL_BYTELEVEL; b++)
        if (t->byte_id[b] == TOK_NONE)
            return sl_errorf(SL_ERR_FORMAT,
                             "%s: no token for the single byte 0x%02x; a byte-level BPE "
                             "vocabulary needs all 256",
                             src, b);
    return SL_OK;
}

sl_status tok_derive_rank_pairs(tokenizer *t) {
    tok_pairmap_free(&t->pairs);
    SL_TRY(tok_pairmap_init(&t->pairs, 4 * (size_t)t->n_ids));
    for (uint32_t id = 0; id < t->n_ids; id++) {
        if (t->kind[id] != TOK_KIND_ORDINARY || t->len[id] < 2)
            continue;
        const char *b = tok_bytes(t, id);
        for (uint32_t k = 1; k < t->len[id]; k++) {
            uint32_t l = tok_bytemap_get(t, b, k);
            if (l == TOK_NONE)
                continue;
            uint32_t r = tok_bytemap_get(t, b + k, t->len[id] - k);
            if (r != TOK_NONE)
                SL_TRY(tok_pairmap_put(&t->pairs, l, r, id, id));
        }
    }
    return SL_OK;
}

sl_status tok_set_pattern(tokenizer *t, tok_pretokenizer known, const char *pattern,
                          const char *src) {
    const char *compile = tok_pattern_text(known);
    t->pretok = known;
    t->pattern_custom = 0;
    if (pattern) {
        if (strcmp(pattern, tok_pattern_source(TOK_PRETOKENIZER_GPT2)) == 0) {
            t->pretok = TOK_PRETOKENIZER_GPT2;
        } else if (strcmp(pattern, tok_pattern_source(TOK_PRETOKENIZER_CL100K)) == 0) {
            t->pretok = TOK_PRETOKENIZER_CL100K;
        } else {
            t->pattern_custom = 1;
        }
        compile = t->pattern_custom ? pattern : tok_pattern_text(t->pretok);
    }
    free(t->pattern);
    t->pattern = strdup(t->pattern_custom ? pattern : tok_pattern_source(t->pretok));
    SL_CHECK_ALLOC(t->pattern, strlen(compile) + 1);
    if (t->re)
        pcre2_code_free(t->re);
    t->re = NULL;
    return tok_regex_compile(compile, &t->re, src);
}

static int cmp_special_len(const void *a, const void *b) {
    const tok_special *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_pair_slot(const void *a, const void *b, void *ctx) {
    const tok_pairmap *m = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (m->slots[i].rank != m->slots[j].rank)
        return m->slots[i].rank < m->slots[j].rank ? -1 : 1;
    return m->slots[i].key < m->slots[j].key ? -1 : m->slots[i].key > m->slots[j].key;
}

static sl_status compute_hash(tokenizer *t) {
    XXH3_state_t *st = XXH3_createState();
    SL_CHECK_ALLOC(st, sizeof(void *));
    XXH3_64bits_reset(st);
    static const char magic[] = "shardlm-tokenizer-v1";
    XXH3_64bits_update(st, magic, sizeof magic);
    uint32_t head[4] = {(uint32_t)t->merge_mode, (uint32_t)t->ignore_merges, t->n_ids,
                        (uint32_t)t->pattern_custom};
    XXH3_64bits_update(st, head, sizeof head);
    if (t->pattern)
        XXH3_64bits_update(st, t->pattern, strlen(t->pattern) + 1);
    if (t->pipeline) /* only set for files with a normalizer or a chars model:
                        the hashes of plain byte-level files stay as they were */
        XXH3_64bits_update(st, t->pipeline, strlen(t->pipeline) + 1);
    for (uint32_t id = 0; id < t->n_ids; id++) {
        uint32_t rec[2] = {t->kind[id], t->len[id]};
        XXH3_64bits_update(st, rec, sizeof rec);
        XXH3_64bits_update(st, tok_bytes(t, id), t->len[id]);
    }
    for (size_t i = 0; i < t->n_specials; i++) {
        /* specials are sorted (length, id) by now: a canonical order */
        uint32_t rec[2] = {t->specials[i].id, (uint32_t)t->specials[i].always};
        XXH3_64bits_update(st, rec, sizeof rec);
    }
    size_t n = t->pairs.count, k = 0;
    size_t *slots = malloc((2 * n + 1) * sizeof *slots);
    if (!slots) {
        XXH3_freeState(st);
        return sl_errorf(SL_ERR_NOMEM, "out of memory hashing %zu merges", n);
    }
    for (size_t i = 0; i < t->pairs.cap; i++)
        if (t->pairs.slots[i].key != TOK_PAIR_EMPTY)
            slots[k++] = i;
    sort_stable(slots, slots + n, n, sizeof *slots, cmp_pair_slot, &t->pairs);
    for (size_t i = 0; i < n; i++) {
        size_t s = slots[i];
        uint32_t rec[4] = {(uint32_t)(t->pairs.slots[s].key >> 32), (uint32_t)t->pairs.slots[s].key,
                           t->pairs.slots[s].rank, t->pairs.slots[s].merged};
        XXH3_64bits_update(st, rec, sizeof rec);
    }
    free(slots);
    snprintf(t->hash, sizeof t->hash, "%016llx", (unsigned long long)XXH3_64bits_digest(st));
    XXH3_freeState(st);
    return SL_OK;
}

static void index_specials(tokenizer *t) {
    if (t->n_specials > 1)
        qsort(t->specials, t->n_specials, sizeof *t->specials, cmp_special_len);
    memset(t->special_first, 0, sizeof t->special_first);
    for (size_t i = 0; i < t->n_specials; i++)
        t->special_first[(uint8_t)t->specials[i].text[0]] = 1;
}

static void trim_ids(tokenizer *t) {
    uint32_t top = 0;
    for (uint32_t i = 0; i < t->n_ids; i++)
        if (t->kind[i] != TOK_KIND_GAP)
            top = i + 1;
    t->n_ids = top; /* grow_ids rounds the allocation up; the id space is max id + 1 */
}

sl_status tok_finish(tokenizer *t) {
    trim_ids(t);
    if (!t->pairs.cap)
        SL_TRY(tok_pairmap_init(&t->pairs, 1));
    index_specials(t);
    free(t->self_merges);
    t->self_merges = calloc(t->n_ids ? t->n_ids : 1, 1);
    SL_CHECK_ALLOC(t->self_merges, t->n_ids);
    bpe_scratch s = {0};
    for (uint32_t id = 0; id < t->n_ids; id++) {
        if (t->kind[id] != TOK_KIND_ORDINARY)
            continue;
        if (t->ignore_merges || (t->len[id] == 1 && t->model == TOK_MODEL_BYTELEVEL)) {
            t->self_merges[id] = 1;
            continue;
        }
        const uint32_t *ids;
        size_t n;
        sl_status st =
            tok_merge_piece(t, &s, (const uint8_t *)tok_bytes(t, id), t->len[id], &ids, &n);
        if (st != SL_OK) {
            bpe_scratch_free(&s);
            return st;
        }
        t->self_merges[id] = n == 1 && ids[0] == id;
    }
    bpe_scratch_free(&s);
    for (size_t i = 0; i < t->n_specials; i++) {
        const char *x = t->specials[i].text;
        if (t->bos_id < 0 && (!strcmp(x, "<|begin_of_text|>") || !strcmp(x, "<s>")))
            t->bos_id = t->specials[i].id;
        if (t->eos_id < 0 && (!strcmp(x, "<|end_of_text|>") || !strcmp(x, "<|endoftext|>") ||
                              !strcmp(x, "</s>")))
            t->eos_id = t->specials[i].id;
    }
    return compute_hash(t);
}

/* ---- load, dispatch by what the path is ---- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* name = base name without extension; "tokenizer" becomes the folder's name. */
static void set_name_from_path(tokenizer *t, const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = 0;
    char *base = strrchr(buf, '/');
    char *name = base ? base + 1 : buf;
    char *dot = strrchr(name, '.');
    if (dot && dot != name)
        *dot = 0;
    if (strcmp(name, "tokenizer") == 0 && base) {
        *base = 0;
        char *up = strrchr(buf, '/');
        if (*buf)
            name = up ? up + 1 : buf;
    }
    snprintf(t->name, sizeof t->name, "%s", name);
}

static sl_status sibling(char *out, size_t cap, const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        return fs_join(out, cap, ".", name);
    int n = snprintf(out, cap, "%.*s/%s", (int)(slash - path), path, name);
    if (n < 0 || (size_t)n >= cap)
        return sl_errorf(SL_ERR_INVALID, "path too long: %s", path);
    return SL_OK;
}

static sl_status load_into(tokenizer *t, const char *path) {
    char a[4096], b[4096];
    if (fs_is_dir(path)) {
        SL_TRY(fs_join(a, sizeof a, path, "tokenizer.json"));
        if (fs_exists(a)) {
            set_name_from_path(t, a);
            return tok_load_json(t, a);
        }
        SL_TRY(fs_join(a, sizeof a, path, "encoder.json"));
        SL_TRY(fs_join(b, sizeof b, path, "vocab.bpe"));
        if (fs_exists(a) && fs_exists(b)) {
            snprintf(t->name, sizeof t->name, "gpt2");
            return tok_load_gpt2_files(t, a, b);
        }
        return sl_errorf(SL_ERR_IO,
                         "folder %s holds neither tokenizer.json nor encoder.json + vocab.bpe",
                         path);
    }
    if (!fs_exists(path))
        return sl_errorf(SL_ERR_IO, "tokenizer %s does not exist", path);
    if (ends_with(path, "encoder.json") || ends_with(path, "vocab.bpe")) {
        SL_TRY(sibling(a, sizeof a, path, "encoder.json"));
        SL_TRY(sibling(b, sizeof b, path, "vocab.bpe"));
        snprintf(t->name, sizeof t->name, "gpt2");
        return tok_load_gpt2_files(t, a, b);
    }
    set_name_from_path(t, path);
    if (ends_with(path, ".json"))
        return tok_load_json(t, path);
    return tok_load_tiktoken_ranks(t, path, t->name);
}

sl_status tok_load(const char *path, tokenizer **out) {
    *out = NULL;
    tokenizer *t;
    SL_TRY(tok_new(&t));
    sl_status st = load_into(t, path);
    if (st == SL_OK)
        st = tok_finish(t);
    if (st != SL_OK) {
        tok_destroy(t);
        return st;
    }
    *out = t;
    return SL_OK;
}

void tok_destroy(tokenizer *t) {
    if (!t)
        return;
    free(t->self_merges);
    free(t->kind);
    free(t->off);
    free(t->len);
    free(t->arena);
    free(t->bytes.slots);
    tok_pairmap_free(&t->pairs);
    for (size_t i = 0; i < t->n_specials; i++)
        free(t->specials[i].text);
    free(t->specials);
    free(t->pattern);
    if (t->re)
        pcre2_code_free(t->re);
    tok_pipeline_free(t);
    free(t);
}

uint32_t tok_vocab_size(const tokenizer *t) { return t->n_ids; }

int64_t tok_special_id(const tokenizer *t, const char *text) {
    size_t len = strlen(text);
    for (size_t i = 0; i < t->n_specials; i++)
        if (t->specials[i].len == len && memcmp(t->specials[i].text, text, len) == 0)
            return t->specials[i].id;
    return -1;
}

sl_status tok_add_special(tokenizer *t, const char *text, int64_t id, uint32_t *out_id) {
    size_t len = strlen(text);
    SL_CHECK_ARG(len > 0, "tok_add_special: empty special token");
    int64_t have = tok_special_id(t, text);
    if (have >= 0 && (id < 0 || id == have)) {
        *out_id = (uint32_t)have;
        return SL_OK;
    }
    if (id < 0)
        id = t->n_ids;
    SL_CHECK_ARG(id < (1 << 30), "tok_add_special: id %lld is too large", (long long)id);
    if ((uint32_t)id < t->n_ids && t->kind[id] == TOK_KIND_ORDINARY)
        return sl_errorf(SL_ERR_INVALID,
                         "tok_add_special: id %lld of \"%s\" is an ordinary token of %s; pick an "
                         "unused id or pass -1",
                         (long long)id, text, t->name);
    SL_TRY(tok_put_special(t, text, len, (uint32_t)id, 0));
    trim_ids(t);
    index_specials(t);
    SL_TRY(compute_hash(t));
    *out_id = (uint32_t)id;
    return SL_OK;
}

int64_t tok_bos_id(const tokenizer *t) { return t->bos_id; }
int64_t tok_eos_id(const tokenizer *t) { return t->eos_id; }
const char *tok_name(const tokenizer *t) { return t->name; }
const char *tok_hash(const tokenizer *t) { return t->hash; }
