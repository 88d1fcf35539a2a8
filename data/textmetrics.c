/* data/textmetrics.c: corpus BLEU (sacrebleu's defaults) and ROUGE-1/2/L
 * (rouge-score without stemming); semantics in data/textmetrics.h.
 *
 * Tokens are spans of a byte buffer; n-grams are tuples of token ids, ids
 * assigned by sorting the spans of one segment pair (or one hypothesis and
 * its references) so equal strings get equal ids. N-gram multisets are
 * sorted arrays, compared by merging: O(L log L) per segment, no hashing.
 *
 * The 13a regexes run on UTF-8 bytes, not code points. Each has a fixed
 * width of two (or one) characters of which the one that must be ASCII is
 * fixed, and [^0-9] matches any code point: a byte scan finds the same
 * matches at the same places (a multi-byte character next to '.' matches at
 * its last or first byte, and no match can start inside it), so the output
 * bytes are the same as Python's re.sub on the decoded string.
 */
#include "data/textmetrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "data/utf8.h"

/* ------------------------------------------------------------------------ */
/* Growable byte buffer and token list                                       */

typedef struct {
    char *p;
    size_t n, cap;
} tm_buf;

typedef struct {
    size_t off, len; /* span in the owning buffer */
    uint32_t id;
} tm_tok;

typedef struct {
    tm_tok *t;
    size_t n, cap;
} tm_toks;

static sl_status buf_reserve(tm_buf *b, size_t extra) {
    if (b->n + extra <= b->cap)
        return SL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return sl_errorf(SL_ERR_NOMEM, "textmetrics: cannot allocate %zu bytes for a segment", cap);
    b->p = p;
    b->cap = cap;
    return SL_OK;
}

static sl_status buf_put(tm_buf *b, const char *s, size_t n) {
    SL_TRY(buf_reserve(b, n));
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return SL_OK;
}

static sl_status buf_putc(tm_buf *b, char c) {
    SL_TRY(buf_reserve(b, 1));
    b->p[b->n++] = c;
    return SL_OK;
}

static sl_status toks_push(tm_toks *t, size_t off, size_t len) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        tm_tok *p = realloc(t->t, cap * sizeof *p);
        if (!p)
            return sl_errorf(SL_ERR_NOMEM, "textmetrics: cannot allocate %zu tokens", cap);
        t->t = p;
        t->cap = cap;
    }
    t->t[t->n++] = (tm_tok){off, len, 0};
    return SL_OK;
}

/* Python's str.isspace / the separators of str.split() and str.rstrip(). */
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static sl_status check_utf8(const char *s, const char *what, size_t index) {
    if (!s)
        return sl_errorf(SL_ERR_INVALID, "textmetrics: %s %zu is NULL; pass \"\" for an empty segment", what, index);
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(u + i, n - i, &cp);
        if (!k)
            return sl_errorf(SL_ERR_INVALID,
                             "textmetrics: %s %zu is not valid UTF-8 at byte offset %zu (byte 0x%02X); "
                             "decode or repair the text before scoring",
                             what, index, i, u[i]);
        i += k;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* sacrebleu's 13a tokenizer                                                 */

/* dst = src with every non-overlapping pat replaced by rep (str.replace). */
static sl_status replace_all(const char *src, size_t n, const char *pat, const char *rep, tm_buf *dst) {
    size_t pl = strlen(pat), rl = strlen(rep);
    dst->n = 0;
    SL_TRY(buf_reserve(dst, n + 1));
    for (size_t i = 0; i < n;) {
        if (i + pl <= n && memcmp(src + i, pat, pl) == 0) {
            SL_TRY(buf_put(dst, rep, rl));
            i += pl;
        } else {
            SL_TRY(buf_putc(dst, src[i]));
            i++;
        }
    }
    return SL_OK;
}

/* TokenizerRegexp's first pattern: [\{-\~\[-\` -\&\(-\+\:-\@\/] -> " \1 " */
static bool re13a_punct(unsigned char c) {
    return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_dot_comma(unsigned char c) { return c == '.' || c == ','; }

/* Tokenizes s as sacrebleu's BLEU._preprocess_segment (lowercase off):
 * Tokenizer13a()(s.rstrip()). Token spans index into a->p. */
static sl_status tok_13a(const char *s, tm_buf *a, tm_buf *b, tm_toks *toks) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), end = 0;
    for (size_t i = 0; i < n;) { /* rstrip: end after the last non-space */
        uint32_t cp = 0;
        size_t k = utf8_decode(u + i, n - i, &cp);
        if (!k)
            k = 1; /* validated by the caller */
        i += k;
        if (!py_space(cp))
            end = i;
    }
    /* language-independent part of Tokenizer13a.__call__ */
    SL_TRY(replace_all(s, end, "<skipped>", "", a));
    SL_TRY(replace_all(a->p, a->n, "-\n", "", b));
    SL_TRY(replace_all(b->p, b->n, "\n", " ", a));
    if (memchr(a->p, '&', a->n)) {
        SL_TRY(replace_all(a->p, a->n, "&quot;", "\"", b));
        SL_TRY(replace_all(b->p, b->n, "&amp;", "&", a));
        SL_TRY(replace_all(a->p, a->n, "&lt;", "<", b));
        SL_TRY(replace_all(b->p, b->n, "&gt;", ">", a));
    }
    /* f' {line} ' and pattern 1 in one pass, into b */
    b->n = 0;
    SL_TRY(buf_reserve(b, 3 * a->n + 8));
    const char sp = ' ';
    for (size_t i = 0; i < a->n + 2; i++) {
        char c = i == 0 || i == a->n + 1 ? sp : a->p[i - 1];
        if (re13a_punct((unsigned char)c)) {
            b->p[b->n++] = ' ';
            b->p[b->n++] = c;
            b->p[b->n++] = ' ';
        } else {
            b->p[b->n++] = c;
        }
    }
    /* pattern 2: ([^0-9])([\.,]) -> "\1 \2 ", scanned left to right without
     * overlap as re.sub does; b -> a */
    a->n = 0;
    SL_TRY(buf_reserve(a, 2 * b->n + 8));
    for (size_t i = 0; i < b->n;) {
        unsigned char c = (unsigned char)b->p[i];
        if (i + 1 < b->n && !is_digit(c) && is_dot_comma((unsigned char)b->p[i + 1])) {
            a->p[a->n++] = (char)c;
            a->p[a->n++] = ' ';
            a->p[a->n++] = b->p[i + 1];
            a->p[a->n++] = ' ';
            i += 2;
        } else {
            a->p[a->n++] = (char)c;
            i++;
        }
    }
    /* pattern 3: ([\.,])([^0-9]) -> " \1 \2"; a -> b */
    b->n = 0;
    SL_TRY(buf_reserve(b, 2 * a->n + 8));
    for (size_t i = 0; i < a->n;) {
        unsigned char c = (unsigned char)a->p[i];
        if (i + 1 < a->n && is_dot_comma(c) && !is_digit((unsigned char)a->p[i + 1])) {
            b->p[b->n++] = ' ';
            b->p[b->n++] = (char)c;
            b->p[b->n++] = ' ';
            b->p[b->n++] = a->p[i + 1];
            i += 2;
        } else {
            b->p[b->n++] = (char)c;
            i++;
        }
    }
    /* pattern 4: ([0-9])(-) -> "\1 \2 "; b -> a */
    a->n = 0;
    SL_TRY(buf_reserve(a, 2 * b->n + 8));
    for (size_t i = 0; i < b->n;) {
        unsigned char c = (unsigned char)b->p[i];
        if (i + 1 < b->n && is_digit(c) && b->p[i + 1] == '-') {
            a->p[a->n++] = (char)c;
            a->p[a->n++] = ' ';
            a->p[a->n++] = '-';
            a->p[a->n++] = ' ';
            i += 2;
        } else {
            a->p[a->n++] = (char)c;
            i++;
        }
    }
    /* ' '.join(line.split()).split(): tokens between Python whitespace */
    toks->n = 0;
    const unsigned char *v = (const unsigned char *)a->p;
    size_t start = 0;
    bool in = false;
    for (size_t i = 0; i < a->n;) {
        uint32_t cp = 0;
        size_t k = utf8_decode(v + i, a->n - i, &cp);
        if (!k)
            return sl_errorf(SL_ERR_INTERNAL, "textmetrics: 13a output is not UTF-8 at byte %zu", i);
        if (py_space(cp)) {
            if (in)
                SL_TRY(toks_push(toks, start, i - start));
            in = false;
        } else if (!in) {
            in = true;
            start = i;
        }
        i += k;
    }
    if (in)
        SL_TRY(toks_push(toks, start, a->n - start));
    return SL_OK;
}

/* ------------------------------------------------------------------------ */
/* Token ids and n-gram multisets                                            */

typedef struct {
    const char *s;
    size_t len;
    uint32_t *id; /* where the id goes */
} tm_ref;

static int span_cmp(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c)
        return c;
    return al < bl ? -1 : al > bl;
}

static int tm_ref_cmp(const void *x, const void *y) {
    const tm_ref *a = x, *b = y;
    return span_cmp(a->s, a->len, b->s, b->len);
}

/* Gives the tokens of m token lists (lists[i] over bufs[i]) ids, equal ids
 * for equal strings. */
static sl_status assign_ids(tm_toks *const *lists, const tm_buf *const *bufs, size_t m) {
    size_t total = 0;
    for (size_t i = 0; i < m; i++)
        total += lists[i]->n;
    if (!total)
        return SL_OK;
    tm_ref *r = malloc(total * sizeof *r);
    if (!r)
        return sl_errorf(SL_ERR_NOMEM, "textmetrics: cannot allocate %zu token refs", total);
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < lists[i]->n; j++) {
            tm_tok *t = &lists[i]->t[j];
            r[k++] = (tm_ref){bufs[i]->p + t->off, t->len, &t->id};
        }
    qsort(r, total, sizeof *r, tm_ref_cmp);
    uint32_t id = 0;
    for (size_t i = 0; i < total; i++) {
        if (i > 0 && tm_ref_cmp(&r[i - 1], &r[i]) != 0)
            id++;
        *r[i].id = id;
    }
    free(r);
    return SL_OK;
}

typedef struct {
    uint32_t id[4];
} tm_gram;

static int gram_cmp(const void *x, const void *y) {
    const tm_gram *a = x, *b = y;
    for (int i = 0; i < 4; i++)
        if (a->id[i] != b->id[i])
            return a->id[i] < b->id[i] ? -1 : 1;
    return 0;
}

/* The k-grams of t, sorted, into *g (grown as needed); returns the count. */
static sl_status grams_sorted(const tm_toks *t, int k, tm_gram **g, size_t *cap, size_t *count) {
    size_t n = t->n >= (size_t)k ? t->n - (size_t)k + 1 : 0;
    if (n > *cap) {
        tm_gram *p = realloc(*g, n * sizeof *p);
        if (!p)
            return sl_errorf(SL_ERR_NOMEM, "textmetrics: cannot allocate %zu n-grams", n);
        *g = p;
        *cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        tm_gram x = {{UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX}};
        for (int j = 0; j < k; j++)
            x.id[j] = t->t[i + (size_t)j].id;
        (*g)[i] = x;
    }
    if (n > 1)
        qsort(*g, n, sizeof **g, gram_cmp);
    *count = n;
    return SL_OK;
}

/* Occurrences of x in the sorted g[0..n). */
static size_t gram_count(const tm_gram *g, size_t n, const tm_gram *x) {
    size_t lo = 0, hi = n;
    while (lo < hi) { /* first >= x */
        size_t mid = lo + (hi - lo) / 2;
        if (gram_cmp(&g[mid], x) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t c = 0;
    while (lo + c < n && gram_cmp(&g[lo + c], x) == 0)
        c++;
    return c;
}

/* ------------------------------------------------------------------------ */
/* BLEU                                                                      */

/* sacrebleu.utils.my_log */
static double my_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

sl_status textmetrics_bleu_from_stats(textmetrics_bleu *b, textmetrics_smooth smooth) {
    SL_CHECK_ARG(b, "textmetrics_bleu_from_stats: NULL statistics");
    SL_CHECK_ARG(smooth == TEXTMETRICS_SMOOTH_NONE || smooth == TEXTMETRICS_SMOOTH_EXP,
                 "textmetrics: smoothing %d is not 0 (none) or 1 (exp)", (int)smooth);
    SL_CHECK_ARG(b->sys_len >= 0 && b->ref_len >= 0, "textmetrics: negative lengths (sys %lld, ref %lld)",
                 (long long)b->sys_len, (long long)b->ref_len);
    for (int i = 0; i < 4; i++)
        SL_CHECK_ARG(b->counts[i] >= 0 && b->counts[i] <= b->totals[i],
                     "textmetrics: %d-gram counts %lld not within 0..totals %lld", i + 1,
                     (long long)b->counts[i], (long long)b->totals[i]);
    /* BLEU.compute_bleu */
    double bp = 1.0;
    if (b->sys_len < b->ref_len)
        bp = b->sys_len > 0 ? exp(1.0 - (double)b->ref_len / (double)b->sys_len) : 0.0;
    b->bp = bp;
    for (int i = 0; i < 4; i++)
        b->precisions[i] = 0.0;
    b->score = 0.0;
    if (!b->counts[0] && !b->counts[1] && !b->counts[2] && !b->counts[3])
        return SL_OK; /* early stop if there are no matches (sacrebleu #141) */
    double smooth_mteval = 1.0;
    for (int n = 0; n < 4; n++) {
        if (b->totals[n] == 0)
            break;
        if (b->counts[n] == 0) {
            if (smooth == TEXTMETRICS_SMOOTH_EXP) {
                smooth_mteval *= 2;
                b->precisions[n] = 100.0 / (smooth_mteval * (double)b->totals[n]);
            }
        } else {
            b->precisions[n] = 100.0 * (double)b->counts[n] / (double)b->totals[n];
        }
    }
    double s = 0.0; /* Python's sum() from int 0, left to right */
    for (int n = 0; n < 4; n++)
        s += my_log(b->precisions[n]);
    b->score = bp * exp(s / 4);
    return SL_OK;
}

sl_status textmetrics_corpus_bleu_multi(const char *const *hyps, const char *const *refs, size_t n_refs,
                                        size_t n, textmetrics_smooth smooth, textmetrics_bleu *out) {
    SL_CHECK_ARG(out && hyps && refs, "textmetrics_corpus_bleu: NULL argument");
    SL_CHECK_ARG(n >= 1, "textmetrics: BLEU of an empty corpus (0 hypotheses) is undefined; pass n >= 1");
    SL_CHECK_ARG(n_refs >= 1, "textmetrics: BLEU needs at least one reference stream, got 0");
    SL_CHECK_ARG(smooth == TEXTMETRICS_SMOOTH_NONE || smooth == TEXTMETRICS_SMOOTH_EXP,
                 "textmetrics: smoothing %d is not 0 (none) or 1 (exp)", (int)smooth);
    for (size_t i = 0; i < n; i++)
        SL_TRY(check_utf8(hyps[i], "hypothesis", i));
    for (size_t r = 0; r < n_refs; r++)
        for (size_t i = 0; i < n; i++)
            SL_TRY(check_utf8(refs[r * n + i], "reference", r * n + i));

    memset(out, 0, sizeof *out);
    sl_status st = SL_OK;
    size_t m = n_refs + 1; /* token lists: the hypothesis, then its references */
    tm_buf *bufs = calloc(m, sizeof *bufs);
    tm_toks *toks = calloc(m, sizeof *toks);
    const tm_buf **bp = calloc(m, sizeof *bp);
    tm_toks **tp = calloc(m, sizeof *tp);
    tm_buf scratch = {0};
    tm_gram *hg = NULL, *rg = NULL;
    size_t hcap = 0, rcap = 0;
    if (!bufs || !toks || !bp || !tp) {
        st = sl_errorf(SL_ERR_NOMEM, "textmetrics: cannot allocate %zu token lists", m);
        goto done;
    }
    for (size_t j = 0; j < m; j++) {
        bp[j] = &bufs[j];
        tp[j] = &toks[j];
    }
    for (size_t i = 0; i < n; i++) {
        if ((st = tok_13a(hyps[i], &bufs[0], &scratch, &toks[0])) != SL_OK)
            goto done;
        for (size_t r = 0; r < n_refs; r++)
            if ((st = tok_13a(refs[r * n + i], &bufs[r + 1], &scratch, &toks[r + 1])) != SL_OK)
                goto done;
        if ((st = assign_ids(tp, bp, m)) != SL_OK)
            goto done;
        /* BLEU._get_closest_ref_len: the closest length, ties to the shorter */
        int64_t hyp_len = (int64_t)toks[0].n, closest = -1, diff = -1;
        for (size_t r = 0; r < n_refs; r++) {
            int64_t rl = (int64_t)toks[r + 1].n, d = rl > hyp_len ? rl - hyp_len : hyp_len - rl;
            if (diff < 0 || d < diff || (d == diff && rl < closest)) {
                diff = d;
                closest = rl;
            }
        }
        out->sys_len += hyp_len;
        out->ref_len += closest;
        for (int k = 1; k <= 4; k++) {
            size_t nh = 0;
            if ((st = grams_sorted(&toks[0], k, &hg, &hcap, &nh)) != SL_OK)
                goto done;
            out->totals[k - 1] += (int64_t)nh;
            /* clip each distinct hypothesis n-gram by its max count over the
             * references (BLEU._extract_reference_info merges with max) */
            size_t *maxc = NULL;
            if (nh) {
                maxc = calloc(nh, sizeof *maxc);
                if (!maxc) {
                    st = sl_errorf(SL_ERR_NOMEM, "textmetrics: cannot allocate %zu counts", nh);
                    goto done;
                }
            }
            for (size_t r = 0; r < n_refs && nh; r++) {
                size_t nr = 0;
                if ((st = grams_sorted(&toks[r + 1], k, &rg, &rcap, &nr)) != SL_OK) {
                    free(maxc);
                    goto done;
                }
                for (size_t a = 0; a < nh;) {
                    size_t c = gram_count(rg, nr, &hg[a]);
                    if (c > maxc[a])
                        maxc[a] = c;
                    size_t e = a + 1;
                    while (e < nh && gram_cmp(&hg[e], &hg[a]) == 0)
                        e++;
                    a = e;
                }
            }
            for (size_t a = 0; a < nh;) {
                size_t e = a + 1;
                while (e < nh && gram_cmp(&hg[e], &hg[a]) == 0)
                    e++;
                size_t hc = e - a;
                out->counts[k - 1] += (int64_t)(hc < maxc[a] ? hc : maxc[a]);
                a = e;
            }
            free(maxc);
        }
    }
    st = textmetrics_bleu_from_stats(out, smooth);
done:
    for (size_t j = 0; bufs && j < m; j++)
        free(bufs[j].p);
    for (size_t j = 0; toks && j < m; j++)
        free(toks[j].t);
    free(bufs);
    free(toks);
    free(bp);
    free(tp);
    free(scratch.p);
    free(hg);
    free(rg);
    return st;
}

sl_status textmetrics_corpus_bleu_smooth(const char *const *hyps, const char *const *refs, size_t n,
                                         textmetrics_smooth smooth, textmetrics_bleu *out) {
    return textmetrics_corpus_bleu_multi(hyps, refs, 1, n, smooth, out);
}

sl_status textmetrics_corpus_bleu(const char *const *hyps, const char *const *refs, size_t n,
                                  textmetrics_bleu *out) {
    return textmetrics_corpus_bleu_multi(hyps, refs, 1, n, TEXTMETRICS_SMOOTH_EXP, out);
}

/* ------------------------------------------------------------------------ */
/* ROUGE                                                                     */

/* rouge_score tokenize.tokenize(text, stemmer=None): the [a-z0-9]+ runs of
 * text.lower(). Only ASCII and two code points lowercase to ASCII letters
 * or digits in Python 3.11's Unicode 14 tables: U+0130 -> "i\u0307" (an i,
 * then a separator) and U+212A KELVIN SIGN -> "k". */
static sl_status tok_rouge(const char *s, tm_buf *buf, tm_toks *toks) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    buf->n = 0;
    toks->n = 0;
    SL_TRY(buf_reserve(buf, n + 1));
    bool in = false;
    size_t start = 0;
#define TM_END_TOKEN()                                          \
    do {                                                        \
        if (in)                                                 \
            SL_TRY(toks_push(toks, start, buf->n - start));     \
        in = false;                                             \
    } while (0)
#define TM_ADD_CHAR(c)                                          \
    do {                                                        \
        if (!in) {                                              \
            in = true;                                          \
            start = buf->n;                                     \
        }                                                       \
        buf->p[buf->n++] = (c);                                 \
    } while (0)
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t k = utf8_decode(u + i, n - i, &cp);
        if (!k)
            return sl_errorf(SL_ERR_INTERNAL, "textmetrics: unvalidated UTF-8 at byte %zu", i);
        i += k;
        if (cp >= 'A' && cp <= 'Z') {
            TM_ADD_CHAR((char)(cp - 'A' + 'a'));
        } else if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
            TM_ADD_CHAR((char)cp);
        } else if (cp == 0x212A) {
            TM_ADD_CHAR('k');
        } else if (cp == 0x130) {
            TM_ADD_CHAR('i');
            TM_END_TOKEN();
        } else {
            TM_END_TOKEN();
        }
    }
    TM_END_TOKEN();
#undef TM_ADD_CHAR
#undef TM_END_TOKEN
    return SL_OK;
}

/* scoring.fmeasure */
static double fmeasure(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }

/* rouge_scorer._score_ngrams over the n-grams of target t and prediction p */
static sl_status score_ngrams(const tm_toks *t, const tm_toks *p, int k, tm_gram **tg, size_t *tcap, tm_gram **pg,
                              size_t *pcap, textmetrics_prf *out) {
    size_t nt = 0, np = 0;
    SL_TRY(grams_sorted(t, k, tg, tcap, &nt));
    SL_TRY(grams_sorted(p, k, pg, pcap, &np));
    size_t inter = 0, a = 0, b = 0; /* sum over n-grams of min(count_t, count_p) */
    while (a < nt && b < np) {
        int c = gram_cmp(&(*tg)[a], &(*pg)[b]);
        if (c == 0) {
            inter++;
            a++;
            b++;
        } else if (c < 0) {
            a++;
        } else {
            b++;
        }
    }
    out->precision = (double)inter / (double)(np > 1 ? np : 1);
    out->recall = (double)inter / (double)(nt > 1 ? nt : 1);
    out->f1 = fmeasure(out->precision, out->recall);
    return SL_OK;
}

/* rouge_scorer._score_lcs */
static sl_status score_lcs(const tm_toks *t, const tm_toks *p, textmetrics_prf *out) {
    if (t->n == 0 || p->n == 0) {
        *out = (textmetrics_prf){0, 0, 0};
        return SL_OK;
    }
    size_t cols = p->n;
    uint32_t *prev = calloc(2 * (cols + 1), sizeof *prev);
    if (!prev)
        return sl_errorf(SL_ERR_NOMEM, "textmetrics: cannot allocate an LCS row of %zu", cols + 1);
    uint32_t *cur = prev + cols + 1;
    for (size_t i = 1; i <= t->n; i++) {
        cur[0] = 0;
        for (size_t j = 1; j <= cols; j++) {
            if (t->t[i - 1].id == p->t[j - 1].id)
                cur[j] = prev[j - 1] + 1;
            else
                cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
        }
        uint32_t *x = prev;
        prev = cur;
        cur = x;
    }
    double lcs = (double)prev[cols];
    free(prev < cur ? prev : cur);
    out->precision = lcs / (double)p->n;
    out->recall = lcs / (double)t->n;
    out->f1 = fmeasure(out->precision, out->recall);
    return SL_OK;
}

typedef struct {
    tm_buf tb, pb;
    tm_toks tt, pt;
    tm_gram *tg, *pg;
    size_t tcap, pcap;
} rouge_ws;

static void rouge_ws_free(rouge_ws *w) {
    free(w->tb.p);
    free(w->pb.p);
    free(w->tt.t);
    free(w->pt.t);
    free(w->tg);
    free(w->pg);
}

static sl_status rouge_pair_ws(const char *hyp, const char *ref, rouge_ws *w, textmetrics_rouge *out) {
    SL_TRY(tok_rouge(ref, &w->tb, &w->tt));
    SL_TRY(tok_rouge(hyp, &w->pb, &w->pt));
    tm_toks *lists[2] = {&w->tt, &w->pt};
    const tm_buf *bufs[2] = {&w->tb, &w->pb};
    SL_TRY(assign_ids(lists, bufs, 2));
    SL_TRY(score_ngrams(&w->tt, &w->pt, 1, &w->tg, &w->tcap, &w->pg, &w->pcap, &out->rouge1));
    SL_TRY(score_ngrams(&w->tt, &w->pt, 2, &w->tg, &w->tcap, &w->pg, &w->pcap, &out->rouge2));
    SL_TRY(score_lcs(&w->tt, &w->pt, &out->rougeL));
    return SL_OK;
}

sl_status textmetrics_rouge_pair(const char *hyp, const char *ref, textmetrics_rouge *out) {
    SL_CHECK_ARG(out, "textmetrics_rouge_pair: NULL output");
    SL_TRY(check_utf8(hyp, "hypothesis", 0));
    SL_TRY(check_utf8(ref, "reference", 0));
    rouge_ws w = {0};
    sl_status st = rouge_pair_ws(hyp, ref, &w, out);
    rouge_ws_free(&w);
    return st;
}

sl_status textmetrics_corpus_rouge(const char *const *hyps, const char *const *refs, size_t n,
                                   textmetrics_rouge *out) {
    SL_CHECK_ARG(out && hyps && refs, "textmetrics_corpus_rouge: NULL argument");
    SL_CHECK_ARG(n >= 1, "textmetrics: ROUGE of an empty corpus (0 pairs) is undefined; pass n >= 1");
    for (size_t i = 0; i < n; i++) {
        SL_TRY(check_utf8(hyps[i], "hypothesis", i));
        SL_TRY(check_utf8(refs[i], "reference", i));
    }
    textmetrics_rouge sum = {0};
    rouge_ws w = {0};
    sl_status st = SL_OK;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        textmetrics_rouge one;
        st = rouge_pair_ws(hyps[i], refs[i], &w, &one);
        if (st != SL_OK) {
            bad = i;
            break;
        }
        textmetrics_prf *s[3] = {&sum.rouge1, &sum.rouge2, &sum.rougeL};
        const textmetrics_prf *o[3] = {&one.rouge1, &one.rouge2, &one.rougeL};
        for (int k = 0; k < 3; k++) {
            s[k]->precision += o[k]->precision;
            s[k]->recall += o[k]->recall;
            s[k]->f1 += o[k]->f1;
        }
    }
    rouge_ws_free(&w);
    if (st != SL_OK)
        return sl_error_wrapf(st, "textmetrics: ROUGE of pair %zu", bad);
    textmetrics_prf *s[3] = {&sum.rouge1, &sum.rouge2, &sum.rougeL};
    for (int k = 0; k < 3; k++) {
        s[k]->precision /= (double)n;
        s[k]->recall /= (double)n;
        s[k]->f1 /= (double)n;
    }
    *out = sum;
    return SL_OK;
}
