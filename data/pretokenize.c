/* data/pretokenize.c: the pre-tokenizer regexes through PCRE2 (JIT).
 *
 * The known patterns are GPT-2's and cl100k_base's (Llama 3 uses cl100k's).
 * Their sources write \s, whose meaning differs between engines: PCRE2's
 * UCP \s adds U+180E, JavaScript's adds U+FEFF and drops U+0085. We spell \s
 * out as Unicode's White_Space property, which is what tiktoken (Rust's
 * regex crate) and Python's regex module (GPT-2's encoder.py) use, so
 * PCRE2 splits exactly like them.
 *
 * Arbitrary bytes: patterns are compiled with PCRE2_MATCH_INVALID_UTF, so an
 * invalid UTF-8 sequence is never part of a match; tok_split hands each run
 * of unmatched bytes to the BPE as a piece of its own. The reference
 * tokenizers take only valid Unicode strings, so this is shardlm's rule:
 * invalid bytes never join their valid neighbours, and decoding returns the
 * original bytes.
 */
#include <string.h>

#include "data/tok_internal.h"

#define WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static const char gpt2_source[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char gpt2_pcre[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                                "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static const char cl100k_source[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char cl100k_pcre[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                  "\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS
                                  "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

const char *tok_pattern_text(tok_pretokenizer p) {
    return p == TOK_PRETOKENIZER_CL100K ? cl100k_pcre : gpt2_pcre;
}

const char *tok_pattern_source(tok_pretokenizer p) {
    return p == TOK_PRETOKENIZER_CL100K ? cl100k_source : gpt2_source;
}

sl_status tok_regex_compile(const char *pattern, pcre2_code **out, const char *src) {
    *out = NULL;
    int err = 0;
    PCRE2_SIZE erroff = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err,
                                   &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return sl_errorf(SL_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu: %s",
                         src, (size_t)erroff, (const char *)msg);
    }
    int rc = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    if (rc != 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        pcre2_code_free(re);
        return sl_errorf(SL_ERR_UNSUPPORTED,
                         "%s: PCRE2 JIT compilation of the pre-tokenizer failed: %s "
                         "(is libpcre2 built with JIT?)",
                         src, (const char *)msg);
    }
    *out = re;
    return SL_OK;
}

/* Length of the UTF-8 character at p (1 for an invalid lead byte). */
static size_t utf8_len(const uint8_t *p, size_t avail) {
    size_t n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 1;
    return n <= avail ? n : 1;
}

sl_status tok_split(const pcre2_code *re, pcre2_match_data *md, const uint8_t *text, size_t len,
                    tok_piece_fn fn, void *ctx) {
    size_t off = 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    while (off < len) {
        int rc = pcre2_jit_match(re, text, len, off, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) {
            SL_TRY(fn(ctx, text + off, len - off));
            break;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sl_errorf(SL_ERR_INTERNAL, "pre-tokenizer match failed at byte %zu: %s", off,
                             (const char *)msg);
        }
        size_t s = ov[0], e = ov[1];
        if (s > off)
            SL_TRY(fn(ctx, text + off, s - off)); /* bytes no alternative matches */
        if (e == s) {
            /* A pattern from a file that matches the empty string: the
             * character at s becomes a piece of its own. */
            e = s + utf8_len(text + s, len - s);
        }
        SL_TRY(fn(ctx, text + s, e - s));
        off = e;
    }
    return SL_OK;
}
