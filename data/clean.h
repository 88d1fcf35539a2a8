/* data/clean.h: text cleaning for shardlm prepare.
 *
 * defines: clean_buf (growable byte buffer, also used by data/pii and
 *          data/chat), clean_buf_reserve, clean_buf_append, clean_buf_free,
 *          clean_opts, clean_result, clean_text, clean_utf8_policy
 *
 * clean_text, in this order:
 *   1. UTF-8: invalid sequences (bad bytes, overlongs, surrogates, > U+10FFFF,
 *      truncation) become U+FFFD, or the document is dropped (policy).
 *      Control characters go: C0 but \t and \n, DEL, C1, U+FEFF; \r\n and a
 *      lone \r become \n.
 *   2. HTML (strip_html): <script>/<style> elements and <!-- comments -->
 *      removed, tags removed (<br>, </p>, </div>, </li>, </tr>, </h1..6>
 *      become a line break), entities decoded (named: the common set;
 *      numeric: decimal and hex; a control character or invalid code point
 *      decodes to nothing). Text like "a < b" is not a tag and stays.
 *   3. NFKC (utf8proc), when nfkc.
 *   4. Full-width ASCII punctuation U+FF01..U+FF5E (not letters or digits) and
 *      the ideographic space U+3000 to their ASCII forms, when
 *      fullwidth_punct (NFKC already maps them; this is for nfkc = false).
 *   5. Whitespace: Unicode spaces become ' ', runs of spaces and tabs inside
 *      a line become one space (a line's leading indentation stays), trailing
 *      spaces go, more than two line breaks become two, both ends trimmed.
 * Does not filter by length or language (the caller does, with n_chars).
 * Pure functions of their input; safe from many threads with separate
 * buffers.
 */
#ifndef SL_DATA_CLEAN_H
#define SL_DATA_CLEAN_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/status.h"

/* A growable buffer owned by its user; p is NUL-terminated after each call
 * of this module. Zero-initialize; free with clean_buf_free. */
typedef struct {
    char *p;
    size_t len, cap;
} clean_buf;

sl_status clean_buf_reserve(clean_buf *b, size_t cap);
sl_status clean_buf_append(clean_buf *b, const void *s, size_t n);
void clean_buf_free(clean_buf *b);

typedef enum { CLEAN_UTF8_REPAIR = 0, CLEAN_UTF8_DROP } clean_utf8_policy;

typedef struct {
    bool nfkc;
    bool fullwidth_punct;
    bool strip_html;
    int invalid_utf8; /* clean_utf8_policy */
} clean_opts;

typedef struct {
    bool dropped_invalid_utf8; /* policy DROP and the input was not UTF-8 */
    bool repaired_utf8;        /* policy REPAIR replaced something */
    bool had_html;             /* a tag or entity was removed or decoded */
    size_t n_chars;            /* code points of the output */
} clean_result;

/* Cleans in[0..len) into out (replaced, NUL-terminated). scratch is a second
 * buffer the function uses freely. */
sl_status clean_text(const clean_opts *o, const char *in, size_t len, clean_buf *out,
                     clean_buf *scratch, clean_result *res);

#endif
