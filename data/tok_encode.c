/* data/tok_encode.c: tok_encode, the encode pipeline of tokenizer.h.
 *
 * As Hugging Face tokenizers runs it: added (special) tokens are cut out of
 * the text first; each stretch between them is, in order, made valid UTF-8
 * (U+FFFD for each maximal invalid subpart, the WHATWG and Rust
 * from_utf8_lossy rule; only for tokenizers with a normalizer or a
 * SentencePiece-style vocabulary, whose reference takes only strings),
 * normalized (Prepend, Replace, NFC, NFKC through utf8proc), split into
 * pre-tokens (the byte-level regex, or Metaspace / a literal Split for the
 * chars model), and each pre-token goes through BPE (bpe.c). Byte-level
 * tokenizers without a normalizer keep encoding raw bytes as before.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/tok_internal.h"
#include "data/utf8.h"
#include "runtime/check.h"

typedef struct {
    char *p;
    size_t len, cap;
} enc_buf;

typedef struct {
    const tokenizer *t;
    bpe_scratch bs;
    pcre2_match_data *md;
    uint32_t *ids;
    size_t cap, n;
    enc_buf buf[2]; /* normalization ping-pong */
} enc_ctx;

static sl_status buf_reserve(enc_buf *b, size_t n) {
    if (n <= b->cap)
        return SL_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    SL_CHECK_ALLOC(p, cap);
    b->p = p;
    b->cap = cap;
    return SL_OK;
}

static inline void emit(enc_ctx *c, uint32_t id) {
    if (c->n < c->cap)
        c->ids[c->n] = id;
    c->n++;
}

/* ---- BPE of one pre-token ---- */

static sl_status merge_chars(const tokenizer *t, bpe_scratch *s, const uint8_t *p, size_t len,
                             const uint32_t **ids, size_t *n) {
    SL_TRY(bpe_reserve(s, len));
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cl = utf8_decode(p + i, len - i, &cp);
        if (!cl)
            cl = 1; /* cannot happen after the U+FFFD pass; fall back byte-wise */
        uint32_t id = tok_bytemap_get(t, p + i, cl);
        if (id != TOK_NONE) {
            s->id[k++] = id;
        } else {
            for (size_t b = 0; b < cl; b++)
                s->id[k++] = t->byte_id[p[i + b]];
        }
        i += cl;
    }
    return bpe_merge_symbols(t, s, k, ids, n);
}

sl_status tok_merge_piece(const tokenizer *t, bpe_scratch *s, const uint8_t *piece, size_t len,
                          const uint32_t **ids, size_t *n) {
    if (t->model == TOK_MODEL_BYTELEVEL)
        return bpe_merge(t, s, piece, len, ids, n);
    if (t->ignore_merges) {
        uint32_t whole = tok_bytemap_get(t, piece, len);
        if (whole != TOK_NONE) {
            SL_TRY(bpe_reserve(s, 1));
            s->id[0] = whole;
            *ids = s->id;
            *n = 1;
            return SL_OK;
        }
    }
    return merge_chars(t, s, piece, len, ids, n);
}

static sl_status on_piece(void *ctx, const uint8_t *p, size_t len) {
    enc_ctx *c = ctx;
    const tokenizer *t = c->t;
    if (len == 0)
        return SL_OK;
    if (len == 1 && t->model == TOK_MODEL_BYTELEVEL) {
        emit(c, t->byte_id[p[0]]);
        return SL_OK;
    }
    uint32_t whole = tok_bytemap_get(t, p, len);
    if (whole != TOK_NONE && t->self_merges[whole]) {
        emit(c, whole);
        return SL_OK;
    }
    const uint32_t *ids;
    size_t n;
    SL_TRY(tok_merge_piece(t, &c->bs, p, len, &ids, &n));
    for (size_t i = 0; i < n; i++)
        emit(c, ids[i]);
    return SL_OK;
}

/* ---- text passes ---- */

static int utf8_valid(const uint8_t *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* Invalid UTF-8 -> U+FFFD per maximal subpart (WHATWG "decode"). */
static sl_status replace_invalid(const uint8_t *s, size_t n, enc_buf *out) {
    SL_TRY(buf_reserve(out, 3 * n + 1));
    uint8_t *o = (uint8_t *)out->p;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            o[k++] = b;
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            lo = b == 0xE0 ? 0xA0 : 0x80;
            hi = b == 0xED ? 0x9F : 0xBF;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            lo = b == 0xF0 ? 0x90 : 0x80;
            hi = b == 0xF4 ? 0x8F : 0xBF;
        } else {
            need = 0;
        }
        size_t j = i + 1, got = 0;
        while (need && got < need && j < n && s[j] >= lo && s[j] <= hi) {
            j++;
            got++;
            lo = 0x80;
            hi = 0xBF;
        }
        if (need && got == need) {
            memcpy(o + k, s + i, j - i);
            k += j - i;
        } else {
            o[k++] = 0xEF, o[k++] = 0xBF, o[k++] = 0xBD;
        }
        i = j;
    }
    out->len = k;
    return SL_OK;
}

static sl_status replace_all(const char *s, size_t n, const char *from, const char *to,
                             enc_buf *out) {
    size_t fl = strlen(from), tl = strlen(to);
    size_t hits = 0;
    for (size_t i = 0; i + fl <= n;)
        if (memcmp(s + i, from, fl) == 0)
            hits++, i += fl;
        else
            i++;
    SL_TRY(buf_reserve(out, n + hits * tl + 1));
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + fl <= n && memcmp(s + i, from, fl) == 0) {
            memcpy(out->p + k, to, tl);
            k += tl;
            i += fl;
        } else {
            out->p[k++] = s[i++];
        }
    }
    out->len = k;
    return SL_OK;
}

static sl_status norm_step(const tok_norm *st, const char *s, size_t n, enc_buf *out) {
    switch (st->kind) {
    case TOK_NORM_PREPEND: {
        size_t pl = strlen(st->to);
        SL_TRY(buf_reserve(out, n + pl + 1));
        memcpy(out->p, st->to, pl);
        memcpy(out->p + pl, s, n);
        out->len = n + pl;
        return SL_OK;
    }
    case TOK_NORM_REPLACE:
        return replace_all(s, n, st->from, st->to, out);
    case TOK_NORM_NFC:
    case TOK_NORM_NFKC: {
        utf8proc_uint8_t *dst = NULL;
        int opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                  (st->kind == TOK_NORM_NFKC ? UTF8PROC_COMPAT : 0);
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                          (utf8proc_option_t)opt);
        if (r < 0)
            return sl_errorf(SL_ERR_INTERNAL, "utf8proc normalization failed: %s",
                             utf8proc_errmsg(r));
        sl_status rc = buf_reserve(out, (size_t)r + 1);
        if (rc == SL_OK) {
            memcpy(out->p, dst, (size_t)r);
            out->len = (size_t)r;
        }
        free(dst);
        return rc;
    }
    }
    return sl_errorf(SL_ERR_INTERNAL, "unknown normalizer step %d", (int)st->kind);
}

/* The chars model's pre-tokenizer over one normalized stretch. */
static sl_status split_chars(enc_ctx *c, const char *s, size_t n, int at_start, enc_buf *tmp) {
    const tokenizer *t = c->t;
    const char *d = t->split_str;
    size_t dl = strlen(d);
    if (t->split == TOK_SPLIT_NONE)
        return on_piece(c, (const uint8_t *)s, n);
    if (t->split == TOK_SPLIT_METASPACE) {
        SL_TRY(replace_all(s, n, " ", d, tmp));
        int starts = tmp->len >= dl && memcmp(tmp->p, d, dl) == 0;
        int pre = !starts && (t->prepend == TOK_PREPEND_ALWAYS ||
                              (t->prepend == TOK_PREPEND_FIRST && at_start));
        if (pre) {
            SL_TRY(buf_reserve(tmp, tmp->len + dl + 1));
            memmove(tmp->p + dl, tmp->p, tmp->len);
            memcpy(tmp->p, d, dl);
            tmp->len += dl;
        }
        s = tmp->p;
        n = tmp->len;
        if (!t->split_on)
            return on_piece(c, (const uint8_t *)s, n);
    }
    /* Split at each occurrence of d: Metaspace merges it with the next
     * piece; a Split keeps it by its behavior. */
    tok_split_behavior b =
        t->split == TOK_SPLIT_METASPACE ? TOK_SPLIT_MERGED_WITH_NEXT : t->split_behavior;
    size_t start = 0;
    for (size_t i = 0; i + dl <= n;) {
        if (memcmp(s + i, d, dl) != 0) {
            i++;
            continue;
        }
        if (b == TOK_SPLIT_MERGED_WITH_NEXT) {
            SL_TRY(on_piece(c, (const uint8_t *)s + start, i - start));
            start = i;
        } else if (b == TOK_SPLIT_MERGED_WITH_PREVIOUS) {
            SL_TRY(on_piece(c, (const uint8_t *)s + start, i + dl - start));
            start = i + dl;
        } else {
            SL_TRY(on_piece(c, (const uint8_t *)s + start, i - start));
            SL_TRY(on_piece(c, (const uint8_t *)s + i, dl));
            start = i + dl;
        }
        i += dl;
    }
    return on_piece(c, (const uint8_t *)s + start, n - start);
}

/* One stretch of text between added tokens; at_start: it begins at offset
 * 0 of the input (Metaspace's prepend_scheme "first"). */
static sl_status encode_stretch(enc_ctx *c, const uint8_t *text, size_t len, int at_start) {
    const tokenizer *t = c->t;
    if (len == 0)
        return SL_OK; /* Hugging Face drops empty splits before normalizing */
    const char *s = (const char *)text;
    size_t n = len;
    int cur = 0;
    if (t->replace_invalid && !utf8_valid(text, len)) {
        SL_TRY(replace_invalid(text, len, &c->buf[cur]));
        s = c->buf[cur].p, n = c->buf[cur].len, cur ^= 1;
    }
    for (int k = 0; k < t->n_norm; k++) {
        SL_TRY(norm_step(&t->norm[k], s, n, &c->buf[cur]));
        s = c->buf[cur].p, n = c->buf[cur].len, cur ^= 1;
    }
    if (t->model == TOK_MODEL_BYTELEVEL)
        return tok_split(t->re, c->md, (const uint8_t *)s, n, on_piece, c);
    return split_chars(c, s, n, at_start, &c->buf[cur]);
}

/* The special token starting at text[i] (longest first), or NULL. */
static const tok_special *special_at(const tokenizer *t, const char *text, size_t len, size_t i,
                                     int allow_special) {
    for (size_t k = 0; k < t->n_specials; k++) {
        const tok_special *s = &t->specials[k];
        if ((allow_special || s->always) && s->len <= len - i &&
            memcmp(text + i, s->text, s->len) == 0)
            return s;
    }
    return NULL;
}

sl_status tok_encode(const tokenizer *t, const char *text, size_t len, int allow_special,
                     uint32_t *ids, size_t cap, size_t *n_ids) {
    *n_ids = 0;
    SL_CHECK_ARG(t && (text || len == 0) && (ids || cap == 0), "tok_encode: NULL argument");
    enc_ctx c = {.t = t, .ids = ids, .cap = cap};
    if (t->re) {
        c.md = pcre2_match_data_create_from_pattern(t->re, NULL);
        SL_CHECK_ALLOC(c.md, 256);
    }
    int any = 0;
    for (size_t k = 0; k < t->n_specials; k++)
        any |= allow_special || t->specials[k].always;
    const uint8_t *u = (const uint8_t *)text;
    sl_status st = SL_OK;
    size_t seg = 0;
    if (any) {
        for (size_t i = 0; i < len && st == SL_OK; i++) {
            if (!t->special_first[u[i]])
                continue;
            const tok_special *s = special_at(t, text, len, i, allow_special);
            if (!s)
                continue;
            st = encode_stretch(&c, u + seg, i - seg, seg == 0);
            emit(&c, s->id);
            seg = i + s->len;
            i = seg - 1;
        }
    }
    if (st == SL_OK)
        st = encode_stretch(&c, u + seg, len - seg, seg == 0);
    if (c.md)
        pcre2_match_data_free(c.md);
    bpe_scratch_free(&c.bs);
    free(c.buf[0].p);
    free(c.buf[1].p);
    SL_TRY(st);
    *n_ids = c.n;
    if (c.n > cap)
        return sl_errorf(SL_ERR_INVALID, "tok_encode: %zu ids do not fit in a buffer of %zu", c.n,
                         cap);
    return SL_OK;
}
