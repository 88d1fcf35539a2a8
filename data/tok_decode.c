/* data/tok_decode.c: tok_decode.
 *
 * Byte-level tokenizers: the tokens' bytes, concatenated (the ByteLevel
 * decoder; invalid UTF-8 comes out as the bytes it was).
 * SentencePiece-style (chars) tokenizers: the file's decoder steps run over
 * the list of token strings as Hugging Face's decode_chain does
 * (decoders/{replace,byte_fallback,fuse,strip}.rs, pre_tokenizers/
 * metaspace.rs), then the strings are concatenated. A run of <0xNN> tokens
 * that is not valid UTF-8 becomes one U+FFFD per byte, as there.
 */
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "data/utf8.h"
#include "runtime/check.h"

/* A list of strings in one buffer. */
typedef struct {
    char *p;
    size_t len, cap;
    size_t *off; /* [n + 1] */
    size_t n, n_cap;
} strlist;

static void sl_free(strlist *l) {
    free(l->p);
    free(l->off);
    *l = (strlist){0};
}

static sl_status sl_bytes(strlist *l, const char *s, size_t n) {
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + n)
            cap *= 2;
        char *p = realloc(l->p, cap);
        SL_CHECK_ALLOC(p, cap);
        l->p = p;
        l->cap = cap;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
    return SL_OK;
}

/* Ends the current string (started at off[n]); sl_reset first. */
static sl_status sl_end(strlist *l) {
    if (l->n + 2 > l->n_cap) {
        size_t cap = l->n_cap ? 2 * l->n_cap : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        SL_CHECK_ALLOC(o, cap * sizeof *o);
        l->off = o;
        l->n_cap = cap;
    }
    l->off[++l->n] = l->len;
    return SL_OK;
}

/* Empties l, keeping its memory; off[0] = 0. */
static sl_status sl_reset(strlist *l) {
    l->len = 0;
    l->n = 0;
    if (!l->off) {
        l->off = malloc(64 * sizeof *l->off);
        SL_CHECK_ALLOC(l->off, 64 * sizeof *l->off);
        l->n_cap = 64;
    }
    l->off[0] = 0;
    return SL_OK;
}

static sl_status sl_push(strlist *l, const char *s, size_t n) {
    SL_TRY(sl_bytes(l, s, n));
    return sl_end(l);
}

#define ITEM(l, i) ((l)->p + (l)->off[i])
#define ITEM_LEN(l, i) ((l)->off[(i) + 1] - (l)->off[i])

static const char fffd[] = "\xEF\xBF\xBD";

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                               : -1;
}

/* "<0xNN>" -> NN, else -1 (ByteFallback's test: 6 bytes, "<0x" ... ">"). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int a = hexval((uint8_t)s[3]), b = hexval((uint8_t)s[4]);
    return a < 0 || b < 0 ? -1 : a * 16 + b;
}

static int valid_utf8(const uint8_t *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

static sl_status flush_bytes(strlist *out, uint8_t *bytes, size_t *nb) {
    if (!*nb)
        return SL_OK;
    if (valid_utf8(bytes, *nb)) {
        SL_TRY(sl_push(out, (const char *)bytes, *nb));
    } else {
        for (size_t i = 0; i < *nb; i++)
            SL_TRY(sl_push(out, fffd, 3));
    }
    *nb = 0;
    return SL_OK;
}

static size_t char_len(const char *s, size_t n) {
    uint32_t cp;
    size_t k = utf8_decode((const uint8_t *)s, n, &cp);
    return k ? k : 1;
}

/* Length of the last character of s[0..n). */
static size_t last_char_len(const char *s, size_t n) {
    size_t k = n - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80 && n - k < 4)
        k--;
    return n - k;
}

static sl_status dec_step(const tok_dec *d, const strlist *in, strlist *out) {
    uint8_t *bytes = NULL;
    size_t nb = 0;
    sl_status st = SL_OK;
    if (d->kind == TOK_DEC_BYTE_FALLBACK) {
        bytes = malloc(in->n + 1);
        SL_CHECK_ALLOC(bytes, in->n + 1);
    }
    if (d->kind == TOK_DEC_FUSE) {
        st = sl_push(out, in->p, in->len);
        return st;
    }
    size_t fl = d->from ? strlen(d->from) : 0;
    for (size_t i = 0; i < in->n && st == SL_OK; i++) {
        const char *s = ITEM(in, i);
        size_t n = ITEM_LEN(in, i);
        switch (d->kind) {
        case TOK_DEC_BYTE_FALLBACK: {
            int b = byte_token(s, n);
            if (b >= 0) {
                bytes[nb++] = (uint8_t)b;
                continue;
            }
            st = flush_bytes(out, bytes, &nb);
            if (st == SL_OK)
                st = sl_push(out, s, n);
            break;
        }
        case TOK_DEC_REPLACE:
        case TOK_DEC_METASPACE: {
            const char *to = d->kind == TOK_DEC_REPLACE ? d->to : " ";
            int drop = d->kind == TOK_DEC_METASPACE && i == 0 && d->prepend;
            for (size_t k = 0; k < n && st == SL_OK;) {
                if (k + fl <= n && memcmp(s + k, d->from, fl) == 0) {
                    if (!drop)
                        st = sl_bytes(out, to, strlen(to));
                    k += fl;
                } else {
                    st = sl_bytes(out, s + k, 1);
                    k++;
                }
            }
            if (st == SL_OK)
                st = sl_end(out);
            break;
        }
        case TOK_DEC_STRIP: {
            size_t a = 0, e = n;
            for (uint32_t k = 0; k < d->start && a < e; k++) {
                size_t cl = char_len(s + a, e - a);
                if (cl != fl || memcmp(s + a, d->from, fl) != 0)
                    break;
                a += cl;
            }
            for (uint32_t k = 0; k < d->stop && e > a; k++) {
                size_t cl = last_char_len(s + a, e - a);
                if (cl != fl || memcmp(s + e - cl, d->from, fl) != 0)
                    break;
                e -= cl;
            }
            st = sl_push(out, s + a, e - a);
            break;
        }
        case TOK_DEC_FUSE:
            break;
        }
    }
    if (st == SL_OK && d->kind == TOK_DEC_BYTE_FALLBACK)
        st = flush_bytes(out, bytes, &nb);
    free(bytes);
    return st;
}

static sl_status check_id(const tokenizer *t, uint32_t id, size_t i) {
    if (id >= t->n_ids || t->kind[id] == TOK_KIND_GAP)
        return sl_errorf(SL_ERR_INVALID,
                         "tok_decode: id %u at position %zu is not in tokenizer %s "
                         "(vocabulary of %u ids)",
                         id, i, t->name, t->n_ids);
    return SL_OK;
}

static sl_status copy_out(const char *s, size_t total, char *out, size_t cap, size_t *out_len) {
    *out_len = total;
    if (total > cap)
        return sl_errorf(SL_ERR_INVALID, "tok_decode: %zu bytes do not fit in a buffer of %zu",
                         total, cap);
    if (total)
        memcpy(out, s, total);
    return SL_OK;
}

static sl_status decode_chain(const tokenizer *t, const uint32_t *ids, size_t n, char *out,
                              size_t cap, size_t *out_len) {
    strlist a = {0}, b = {0};
    sl_status st = sl_reset(&a);
    if (st == SL_OK)
        st = sl_reset(&b);
    for (size_t i = 0; i < n && st == SL_OK; i++) {
        st = check_id(t, ids[i], i);
        if (st == SL_OK)
            st = sl_push(&a, tok_bytes(t, ids[i]), t->len[ids[i]]);
    }
    for (int k = 0; k < t->n_dec && st == SL_OK; k++) {
        st = sl_reset(&b);
        if (st == SL_OK)
            st = dec_step(&t->dec[k], &a, &b);
        strlist tmp = a;
        a = b;
        b = tmp;
    }
    if (st == SL_OK)
        st = copy_out(a.p, a.len, out, cap, out_len);
    sl_free(&a);
    sl_free(&b);
    return st;
}

sl_status tok_decode(const tokenizer *t, const uint32_t *ids, size_t n, char *out, size_t cap,
                     size_t *out_len) {
    *out_len = 0;
    if (t->model == TOK_MODEL_CHARS)
        return decode_chain(t, ids, n, out, cap, out_len);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        SL_TRY(check_id(t, id, i));
        if (total + t->len[id] <= cap)
            memcpy(out + total, tok_bytes(t, id), t->len[id]);
        total += t->len[id];
    }
    *out_len = total;
    if (total > cap)
        return sl_errorf(SL_ERR_INVALID, "tok_decode: %zu bytes do not fit in a buffer of %zu",
                         total, cap);
    return SL_OK;
}
