/* data/tok_train.c: byte-level BPE training (see tok_train.h). */
#include "data/tok_train.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "data/tok_internal.h"
#include "runtime/check.h"
#include "runtime/fsutil.h"
#include "runtime/mem.h"

typedef struct {
    uint32_t *v;
    uint32_t n, cap;
} u32_list;

static sl_status list_push(u32_list *l, uint32_t x) {
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 4;
        uint32_t *v = realloc(l->v, cap * sizeof *v);
        SL_CHECK_ALLOC(v, cap * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return SL_OK;
}

typedef struct {
    int64_t count;
    uint64_t key; /* left << 32 | right */
} heap_ent;

struct tok_trainer {
    tok_train_opts o;
    char **specials;
    pcre2_code *re;
    pcre2_match_data *md;

    /* unique words: bytes in warena, counts, and a hash table of indices */
    char *warena;
    size_t warena_len, warena_cap;
    uint64_t *woff;
    uint32_t *wlen;
    uint64_t *wcount;
    size_t n_words, cap_words;
    uint32_t *wtab;
    size_t wtab_cap;
    uint64_t bytes, words;

    /* after run: merges (left, right) for ids 256.., their bytes, and the
     * words' final symbol counts */
    uint32_t *ml, *mr;
    uint32_t n_merges;
    uint64_t *tok_off;
    uint32_t *tok_len;
    char *tarena;
    uint64_t tokens;
    int ran;
};

sl_status tok_train_create(const tok_train_opts *o, tok_trainer **out) {
    *out = NULL;
    SL_CHECK_ARG(o->vocab_size >= 256 + o->n_specials,
                 "tokenizer train: --vocab-size %u leaves no room for the 256 byte tokens and %zu "
                 "special tokens",
                 o->vocab_size, o->n_specials);
    tok_trainer *tr = calloc(1, sizeof *tr);
    SL_CHECK_ALLOC(tr, sizeof *tr);
    tr->o = *o;
    tr->specials = calloc(o->n_specials + 1, sizeof *tr->specials);
    sl_status st = tr->specials ? SL_OK : sl_errorf(SL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < o->n_specials && st == SL_OK; i++) {
        if (!o->specials[i][0])
            st = sl_errorf(SL_ERR_INVALID, "tokenizer train: empty special token");
        else if (!(tr->specials[i] = strdup(o->specials[i])))
            st = sl_errorf(SL_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < i && st == SL_OK; k++)
            if (strcmp(o->specials[k], o->specials[i]) == 0)
                st = sl_errorf(SL_ERR_INVALID, "tokenizer train: special token \"%s\" given twice",
                               o->specials[i]);
    }
    tr->o.specials = (const char *const *)tr->specials;
    if (st == SL_OK)
        st = tok_regex_compile(tok_pattern_text(o->pretok), &tr->re, "tokenizer train");
    if (st == SL_OK && !(tr->md = pcre2_match_data_create_from_pattern(tr->re, NULL)))
        st = sl_errorf(SL_ERR_NOMEM, "out of memory for PCRE2 match data");
    if (st != SL_OK) {
        tok_train_destroy(tr);
        return st;
    }
    *out = tr;
    return SL_OK;
}

void tok_train_destroy(tok_trainer *tr) {
    if (!tr)
        return;
    for (size_t i = 0; tr->specials && i < tr->o.n_specials; i++)
        free(tr->specials[i]);
    free(tr->specials);
    pcre2_match_data_free(tr->md);
    pcre2_code_free(tr->re);
    free(tr->warena);
    free(tr->woff);
    free(tr->wlen);
    free(tr->wcount);
    free(tr->wtab);
    free(tr->ml);
    free(tr->mr);
    free(tr->tok_off);
    free(tr->tok_len);
    free(tr->tarena);
    free(tr);
}

/* ---- counting words ---- */

static sl_status wtab_rehash(tok_trainer *tr, size_t cap) {
    uint32_t *tab = malloc(cap * sizeof *tab);
    SL_CHECK_ALLOC(tab, cap * sizeof *tab);
    memset(tab, 0xff, cap * sizeof *tab);
    for (size_t w = 0; w < tr->n_words; w++) {
        size_t i = (size_t)XXH3_64bits(tr->warena + tr->woff[w], tr->wlen[w]) & (cap - 1);
        while (tab[i] != UINT32_MAX)
            i = (i + 1) & (cap - 1);
        tab[i] = (uint32_t)w;
    }
    free(tr->wtab);
    tr->wtab = tab;
    tr->wtab_cap = cap;
    return SL_OK;
}

static sl_status count_word(void *ctx, const uint8_t *p, size_t len) {
    tok_trainer *tr = ctx;
    tr->bytes += len;
    tr->words++;
    if ((tr->n_words + 1) * 2 > tr->wtab_cap)
        SL_TRY(wtab_rehash(tr, tr->wtab_cap ? 2 * tr->wtab_cap : 1 << 16));
    size_t mask = tr->wtab_cap - 1, i = (size_t)XXH3_64bits(p, len) & mask;
    for (uint32_t w; (w = tr->wtab[i]) != UINT32_MAX; i = (i + 1) & mask) {
        if (tr->wlen[w] == len && memcmp(tr->warena + tr->woff[w], p, len) == 0) {
            tr->wcount[w]++;
            return SL_OK;
        }
    }
    if (len > UINT32_MAX / 2 || tr->n_words >= UINT32_MAX / 2)
        return sl_errorf(SL_ERR_INVALID, "tokenizer train: too many or too long words");
    if (tr->n_words == tr->cap_words) {
        size_t cap = tr->cap_words ? 2 * tr->cap_words : 1 << 14;
        uint64_t *woff = realloc(tr->woff, cap * sizeof *woff);
        if (woff)
            tr->woff = woff;
        uint32_t *wlen = realloc(tr->wlen, cap * sizeof *wlen);
        if (wlen)
            tr->wlen = wlen;
        uint64_t *wcount = realloc(tr->wcount, cap * sizeof *wcount);
        if (wcount)
            tr->wcount = wcount;
        if (!woff || !wlen || !wcount)
            return sl_errorf(SL_ERR_NOMEM, "out of memory for %zu words", cap);
        tr->cap_words = cap;
    }
    SL_TRY(mem_grow_bytes(&tr->warena, &tr->warena_cap, tr->warena_len + len, 1 << 20));
    memcpy(tr->warena + tr->warena_len, p, len);
    size_t w = tr->n_words++;
    tr->woff[w] = tr->warena_len;
    tr->wlen[w] = (uint32_t)len;
    tr->wcount[w] = 1;
    tr->warena_len += len;
    tr->wtab[i] = (uint32_t)w;
    return SL_OK;
}

sl_status tok_train_feed(tok_trainer *tr, const char *text, size_t len) {
    SL_CHECK_ARG(!tr->ran, "tok_train_feed after tok_train_run");
    const uint8_t *u = (const uint8_t *)text;
    size_t seg = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < tr->o.n_specials; k++) {
            size_t sl = strlen(tr->specials[k]);
            if (sl <= len - i && memcmp(text + i, tr->specials[k], sl) == 0) {
                SL_TRY(tok_split(tr->re, tr->md, u + seg, i - seg, count_word, tr));
                seg = i + sl;
                i = seg - 1;
                break;
            }
        }
    }
    return tok_split(tr->re, tr->md, u + seg, len - seg, count_word, tr);
}

/* ---- learning the merges ---- */

typedef struct {
    uint64_t *keys; /* TOK_PAIR_EMPTY when free */
    uint32_t *idx;
    size_t cap, n;
    int64_t *count; /* by pair index */
    u32_list *words;
    uint64_t *key_of;
    size_t n_pairs, cap_pairs;
} pair_stats;

static void stats_free(pair_stats *s) {
    for (size_t i = 0; i < s->n_pairs; i++)
        free(s->words[i].v);
    free(s->keys);
    free(s->idx);
    free(s->count);
    free(s->words);
    free(s->key_of);
}

static sl_status stats_rehash(pair_stats *s, size_t cap) {
    uint64_t *keys = malloc(cap * sizeof *keys);
    uint32_t *idx = malloc(cap * sizeof *idx);
    if (!keys || !idx) {
        free(keys);
        free(idx);
        return sl_errorf(SL_ERR_NOMEM, "out of memory for %zu pair slots", cap);
    }
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t p = 0; p < s->n_pairs; p++) {
        size_t i = (size_t)tok_pair_hash(s->key_of[p]) & (cap - 1);
        while (keys[i] != TOK_PAIR_EMPTY)
            i = (i + 1) & (cap - 1);
        keys[i] = s->key_of[p];
        idx[i] = (uint32_t)p;
    }
    free(s->keys);
    free(s->idx);
    s->keys = keys;
    s->idx = idx;
    s->cap = cap;
    return SL_OK;
}

/* The index of pair key, created with count 0 when new. */
static sl_status stats_get(pair_stats *s, uint64_t key, uint32_t *out) {
    if ((s->n_pairs + 1) * 2 > s->cap)
        SL_TRY(stats_rehash(s, s->cap ? 2 * s->cap : 1 << 16));
    size_t mask = s->cap - 1, i = (size_t)tok_pair_hash(key) & mask;
    while (s->keys[i] != TOK_PAIR_EMPTY) {
        if (s->keys[i] == key) {
            *out = s->idx[i];
            return SL_OK;
        }
        i = (i + 1) & mask;
    }
    if (s->n_pairs == s->cap_pairs) {
        size_t cap = s->cap_pairs ? 2 * s->cap_pairs : 1 << 14;
        int64_t *count = realloc(s->count, cap * sizeof *count);
        if (count)
            s->count = count;
        u32_list *words = realloc(s->words, cap * sizeof *words);
        if (words)
            s->words = words;
        uint64_t *key_of = realloc(s->key_of, cap * sizeof *key_of);
        if (key_of)
            s->key_of = key_of;
        if (!count || !words || !key_of)
            return sl_errorf(SL_ERR_NOMEM, "out of memory for %zu pairs", cap);
        s->cap_pairs = cap;
    }
    uint32_t p = (uint32_t)s->n_pairs++;
    s->count[p] = 0;
    s->words[p] = (u32_list){0};
    s->key_of[p] = key;
    s->keys[i] = key;
    s->idx[i] = p;
    *out = p;
    return SL_OK;
}

typedef struct {
    heap_ent *v;
    size_t n, cap;
} max_heap;

static int ent_before(heap_ent a, heap_ent b) {
    return a.count > b.count || (a.count == b.count && a.key < b.key);
}

static sl_status heap_push(max_heap *h, heap_ent e) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1 << 14;
        heap_ent *v = realloc(h->v, cap * sizeof *v);
        SL_CHECK_ALLOC(v, cap * sizeof *v);
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && ent_before(e, h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
    return SL_OK;
}

static heap_ent heap_pop(max_heap *h) {
    heap_ent top = h->v[0], e = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && ent_before(h->v[c + 1], h->v[c]))
            c++;
        if (!ent_before(h->v[c], e))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = e;
    return top;
}

/* Adds delta * (pairs of word w's symbols) to the counts; when adding, the
 * pairs holding only_id (or every pair when only_id is TOK_NONE) record w
 * and go on the heap with their new count. */
static sl_status apply_word(pair_stats *s, max_heap *h, const uint32_t *sym, uint32_t n, uint32_t w,
                            int64_t delta, uint32_t only_id) {
    for (uint32_t i = 0; i + 1 < n; i++) {
        uint64_t key = (uint64_t)sym[i] << 32 | sym[i + 1];
        uint32_t p;
        SL_TRY(stats_get(s, key, &p));
        s->count[p] += delta;
        if (delta > 0 && (only_id == TOK_NONE || sym[i] == only_id || sym[i + 1] == only_id)) {
            u32_list *l = &s->words[p];
            if (!l->n || l->v[l->n - 1] != w)
                SL_TRY(list_push(l, w));
            SL_TRY(heap_push(h, (heap_ent){s->count[p], key}));
        }
    }
    return SL_OK;
}

static sl_status learn(tok_trainer *tr, uint32_t *sym, const uint64_t *soff, uint32_t *slen,
                       pair_stats *s, max_heap *h, uint32_t *stamp) {
    uint32_t target = tr->o.vocab_size - 256 - (uint32_t)tr->o.n_specials;
    for (size_t w = 0; w < tr->n_words; w++)
        SL_TRY(apply_word(s, h, sym + soff[w], slen[w], (uint32_t)w, (int64_t)tr->wcount[w],
                          TOK_NONE));
    while (tr->n_merges < target && h->n) {
        heap_ent e = heap_pop(h);
        uint32_t p;
        SL_TRY(stats_get(s, e.key, &p));
        if (s->count[p] != e.count) { /* stale: re-file with the current count */
            if (s->count[p] > 0)
                SL_TRY(heap_push(h, (heap_ent){s->count[p], e.key}));
            continue;
        }
        if (e.count <= 0)
            break;
        uint32_t left = (uint32_t)(e.key >> 32), right = (uint32_t)e.key;
        uint32_t id = 256 + tr->n_merges;
        tr->ml[tr->n_merges] = left;
        tr->mr[tr->n_merges] = right;
        tr->n_merges++;
        /* copy the list: apply_word may grow this pair's own list */
        u32_list todo = s->words[p];
        s->words[p] = (u32_list){0};
        sl_status st = SL_OK;
        for (uint32_t k = 0; k < todo.n && st == SL_OK; k++) {
            uint32_t w = todo.v[k];
            if (stamp[w] == id)
                continue;
            stamp[w] = id;
            uint32_t *ws = sym + soff[w], n = slen[w], o = 0;
            int hit = 0;
            for (uint32_t i = 0; i + 1 < n; i++)
                hit |= ws[i] == left && ws[i + 1] == right;
            if (!hit)
                continue;
            st = apply_word(s, h, ws, n, w, -(int64_t)tr->wcount[w], TOK_NONE);
            for (uint32_t i = 0; i < n; i++) {
                if (i + 1 < n && ws[i] == left && ws[i + 1] == right) {
                    ws[o++] = id;
                    i++;
                } else {
                    ws[o++] = ws[i];
                }
            }
            slen[w] = o;
            if (st == SL_OK)
                st = apply_word(s, h, ws, o, w, (int64_t)tr->wcount[w], id);
        }
        free(todo.v);
        SL_TRY(st);
    }
    return SL_OK;
}

sl_status tok_train_run(tok_trainer *tr) {
    SL_CHECK_ARG(!tr->ran, "tok_train_run called twice");
    tr->ran = 1;
    uint32_t target = tr->o.vocab_size - 256 - (uint32_t)tr->o.n_specials;
    size_t n_sym = tr->warena_len;
    uint32_t *sym = malloc((n_sym + 1) * sizeof *sym);
    uint64_t *soff = malloc((tr->n_words + 1) * sizeof *soff);
    uint32_t *slen = malloc((tr->n_words + 1) * sizeof *slen);
    uint32_t *stamp = malloc((tr->n_words + 1) * sizeof *stamp);
    tr->ml = malloc((target + 1) * sizeof *tr->ml);
    tr->mr = malloc((target + 1) * sizeof *tr->mr);
    pair_stats s = {0};
    max_heap h = {0};
    sl_status st = SL_OK;
    if (!sym || !soff || !slen || !stamp || !tr->ml || !tr->mr)
        st = sl_errorf(SL_ERR_NOMEM, "out of memory for training on %zu bytes", n_sym);
    if (st == SL_OK) {
        for (size_t i = 0; i < n_sym; i++)
            sym[i] = (uint8_t)tr->warena[i];
        for (size_t w = 0; w < tr->n_words; w++) {
            soff[w] = tr->woff[w];
            slen[w] = tr->wlen[w];
            stamp[w] = 0;
        }
        st = learn(tr, sym, soff, slen, &s, &h, stamp);
    }
    tr->tokens = 0;
    for (size_t w = 0; st == SL_OK && w < tr->n_words; w++)
        tr->tokens += tr->wcount[w] * slen[w];
    free(sym);
    free(soff);
    free(slen);
    free(stamp);
    stats_free(&s);
    free(h.v);
    SL_TRY(st);
    /* bytes of every id: merges concatenate earlier ids */
    uint32_t n_ids = 256 + tr->n_merges;
    tr->tok_off = malloc(n_ids * sizeof *tr->tok_off);
    tr->tok_len = malloc(n_ids * sizeof *tr->tok_len);
    size_t total = 256;
    if (!tr->tok_off || !tr->tok_len)
        return sl_errorf(SL_ERR_NOMEM, "out of memory for %u tokens", n_ids);
    for (uint32_t b = 0; b < 256; b++)
        tr->tok_len[b] = 1;
    for (uint32_t m = 0; m < tr->n_merges; m++) {
        tr->tok_len[256 + m] = tr->tok_len[tr->ml[m]] + tr->tok_len[tr->mr[m]];
        total += tr->tok_len[256 + m];
    }
    tr->tarena = malloc(total);
    SL_CHECK_ALLOC(tr->tarena, total);
    size_t off = 0;
    for (uint32_t id = 0; id < n_ids; id++) {
        tr->tok_off[id] = off;
        if (id < 256) {
            tr->tarena[off] = (char)id;
        } else {
            uint32_t l = tr->ml[id - 256], r = tr->mr[id - 256];
            memcpy(tr->tarena + off, tr->tarena + tr->tok_off[l], tr->tok_len[l]);
            memcpy(tr->tarena + off + tr->tok_len[l], tr->tarena + tr->tok_off[r], tr->tok_len[r]);
        }
        off += tr->tok_len[id];
    }
    return SL_OK;
}

void tok_train_get_stats(const tok_trainer *tr, tok_train_stats *out) {
    *out = (tok_train_stats){.bytes = tr->bytes,
                             .words = tr->words,
                             .unique_words = tr->n_words,
                             .tokens = tr->tokens,
                             .merges = tr->n_merges};
}

/* ---- tokenizer.json ---- */

static cJSON *bytelevel_json(const tok_trainer *tr, const tok_alphabet *a, uint32_t id, char *buf) {
    tok_bytelevel_encode(a, (const uint8_t *)tr->tarena + tr->tok_off[id], tr->tok_len[id], buf);
    return cJSON_CreateString(buf);
}

static cJSON *build_json(const tok_trainer *tr) {
    tok_alphabet a;
    tok_alphabet_init(&a);
    uint32_t n_ids = 256 + tr->n_merges, maxlen = 1;
    for (uint32_t id = 0; id < n_ids; id++)
        maxlen = tr->tok_len[id] > maxlen ? tr->tok_len[id] : maxlen;
    char *buf = malloc(4 * (size_t)maxlen + 4);
    cJSON *root = cJSON_CreateObject();
    if (!buf || !root) {
        free(buf);
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (size_t i = 0; i < tr->o.n_specials; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", n_ids + (double)i);
        cJSON_AddStringToObject(t, "content", tr->specials[i]);
        cJSON_AddFalseToObject(t, "single_word");
        cJSON_AddFalseToObject(t, "lstrip");
        cJSON_AddFalseToObject(t, "rstrip");
        cJSON_AddFalseToObject(t, "normalized");
        cJSON_AddTrueToObject(t, "special");
        cJSON_AddItemToArray(added, t);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    if (tr->o.pretok == TOK_PRETOKENIZER_GPT2) {
        cJSON_AddStringToObject(pre, "type", "ByteLevel");
        cJSON_AddFalseToObject(pre, "add_prefix_space");
        cJSON_AddTrueToObject(pre, "trim_offsets");
        cJSON_AddTrueToObject(pre, "use_regex");
    } else {
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers");
        cJSON *split = cJSON_CreateObject();
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex",
                                tok_pattern_source(tr->o.pretok));
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddFalseToObject(split, "invert");
        cJSON_AddItemToArray(list, split);
        cJSON *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddFalseToObject(bl, "add_prefix_space");
        cJSON_AddTrueToObject(bl, "trim_offsets");
        cJSON_AddFalseToObject(bl, "use_regex");
        cJSON_AddItemToArray(list, bl);
    }
    cJSON *post = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(post, "type", "ByteLevel");
    cJSON_AddTrueToObject(post, "add_prefix_space");
    cJSON_AddFalseToObject(post, "trim_offsets");
    cJSON_AddTrueToObject(post, "use_regex");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddTrueToObject(dec, "add_prefix_space");
    cJSON_AddTrueToObject(dec, "trim_offsets");
    cJSON_AddTrueToObject(dec, "use_regex");
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (uint32_t id = 0; id < n_ids; id++) {
        tok_bytelevel_encode(&a, (const uint8_t *)tr->tarena + tr->tok_off[id], tr->tok_len[id],
                             buf);
        cJSON_AddNumberToObject(vocab, buf, id);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (uint32_t m = 0; m < tr->n_merges; m++) {
        cJSON *l = bytelevel_json(tr, &a, tr->ml[m], buf);
        cJSON *r = bytelevel_json(tr, &a, tr->mr[m], buf);
        size_t ll = strlen(l->valuestring), rl = strlen(r->valuestring);
        char *s = malloc(ll + rl + 2);
        if (s) {
            memcpy(s, l->valuestring, ll);
            s[ll] = ' ';
            memcpy(s + ll + 1, r->valuestring, rl + 1);
            cJSON_AddItemToArray(merges, cJSON_CreateString(s));
        }
        free(s);
        cJSON_Delete(l);
        cJSON_Delete(r);
    }
    free(buf);
    return root;
}

sl_status tok_train_write(const tok_trainer *tr, const char *path) {
    SL_CHECK_ARG(tr->ran, "tok_train_write before tok_train_run");
    cJSON *root = build_json(tr);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return sl_errorf(SL_ERR_NOMEM, "out of memory writing %s", path);
    sl_status st = fs_write_atomic(path, text, strlen(text));
    cJSON_free(text);
    return st;
}

static sl_status feed_string(tok_trainer *tr, const cJSON *v) {
    if (cJSON_IsString(v) && v->valuestring[0])
        return tok_train_feed(tr, v->valuestring, strlen(v->valuestring));
    return SL_OK;
}

sl_status tok_train_feed_jsonl(tok_trainer *tr, const char *text, size_t len, uint64_t *bad) {
    static const char *const keys[] = {"text", "instruction", "input", "output", "prompt", "response", NULL};
    *bad = 0;
    size_t i = 0;
    char *line = NULL;
    size_t cap = 0;
    sl_status st = SL_OK;
    while (i < len && st == SL_OK) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        if (n + 1 > cap) {
            char *q = realloc(line, n + 1);
            if (!q) {
                st = sl_errorf(SL_ERR_NOMEM, "out of memory for a %zu-byte JSONL line", n);
                break;
            }
            line = q;
            cap = n + 1;
        }
        memcpy(line, text + i, n);
        line[n] = 0;
        i += n + 1;
        if (strspn(line, " \t\r") == n)
            continue;
        cJSON *o = cJSON_Parse(line);
        if (!cJSON_IsObject(o)) {
            (*bad)++;
            cJSON_Delete(o);
            continue;
        }
        for (int k = 0; keys[k] && st == SL_OK; k++)
            st = feed_string(tr, cJSON_GetObjectItemCaseSensitive(o, keys[k]));
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "messages"), *it;
        if (cJSON_IsArray(m))
            cJSON_ArrayForEach(it, m) {
                if (st == SL_OK)
                    st = feed_string(tr, cJSON_GetObjectItemCaseSensitive(it, "content"));
            }
        cJSON_Delete(o);
    }
    free(line);
    return st;
}
