/* data/clean.c: the cleaning passes of clean.h. Each pass reads one buffer
 * and writes the other; the two are swapped between passes. */
#include "data/clean.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

#include "data/utf8.h"
#include "runtime/check.h"
#include "runtime/mem.h"

sl_status clean_buf_reserve(clean_buf *b, size_t cap) {
    return mem_grow_bytes(&b->p, &b->cap, cap + 1, 256);
}

sl_status clean_buf_append(clean_buf *b, const void *s, size_t n) {
    SL_TRY(clean_buf_reserve(b, b->len + n));
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return SL_OK;
}

void clean_buf_free(clean_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void swap_bufs(clean_buf *a, clean_buf *b) {
    clean_buf t = *a;
    *a = *b;
    *b = t;
}

/* ---- pass 1: UTF-8 validity and control characters ---- */

/* A pass wrote out->p up to d: its length, and the terminating NUL. */
static sl_status pass_end(clean_buf *out, const char *d) {
    out->len = (size_t)(d - out->p);
    out->p[out->len] = 0;
    return SL_OK;
}

static sl_status pass_utf8(const clean_opts *o, const unsigned char *s, size_t n, clean_buf *out,
                           clean_result *res) {
    SL_TRY(clean_buf_reserve(out, n * 3)); /* each invalid byte may become 3 */
    char *d = out->p;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == '\r') {
                *d++ = '\n';
                i += (i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
                continue;
            }
            if ((c >= 0x20 && c != 0x7f) || c == '\t' || c == '\n')
                *d++ = (char)c;
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            if (o->invalid_utf8 == CLEAN_UTF8_DROP) {
                res->dropped_invalid_utf8 = true;
                return pass_end(out, out->p);
            }
            res->repaired_utf8 = true;
            d += utf8_encode(0xFFFD, d);
            i++;
            continue;
        }
        if (!(cp >= 0x80 && cp <= 0x9f) && cp != 0xFEFF) {
            memcpy(d, s + i, k);
            d += k;
        }
        i += k;
    }
    return pass_end(out, d);
}

/* ---- pass 2: HTML ---- */

typedef struct {
    const char *name;
    uint32_t cp;
} entity;

static const entity entities[] = {
    {"amp", '&'},       {"lt", '<'},        {"gt", '>'},        {"quot", '"'},
    {"apos", '\''},     {"nbsp", 0xA0},     {"copy", 0xA9},     {"reg", 0xAE},
    {"trade", 0x2122},  {"hellip", 0x2026}, {"mdash", 0x2014},  {"ndash", 0x2013},
    {"lsquo", 0x2018},  {"rsquo", 0x2019},  {"ldquo", 0x201C},  {"rdquo", 0x201D},
    {"laquo", 0xAB},    {"raquo", 0xBB},    {"middot", 0xB7},   {"bull", 0x2022},
    {"euro", 0x20AC},   {"yen", 0xA5},      {"pound", 0xA3},    {"cent", 0xA2},
    {"deg", 0xB0},      {"times", 0xD7},    {"divide", 0xF7},   {"sect", 0xA7},
};

/* Tags whose end is a line break in the text; others vanish. */
static bool is_break_tag(const char *name, size_t len) {
    static const char *const tags[] = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4",
                                       "h5", "h6", "ul", "ol", "table", "blockquote", "pre",
                                       "section", "article", "header", "footer", "hr", "dd", "dt"};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (strlen(tags[i]) == len && strncasecmp(tags[i], name, len) == 0)
            return true;
    return false;
}

static const char *find_ci(const char *s, const char *end, const char *needle) {
    size_t nl = strlen(needle);
    for (; s + nl <= end; s++)
        if (strncasecmp(s, needle, nl) == 0)
            return s;
    return NULL;
}

/* Decodes the entity at s ('&'); returns bytes consumed (0: not an entity). */
static size_t decode_entity(const char *s, const char *end, char *d, size_t *dn) {
    const char *p = s + 1;
    uint32_t cp = 0;
    if (p < end && *p == '#') {
        p++;
        int hex = p < end && (*p == 'x' || *p == 'X');
        if (hex)
            p++;
        const char *digits = p;
        while (p < end && p - digits < 8 && (hex ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p))) {
            cp = cp * (hex ? 16u : 10u) +
                 (uint32_t)(isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10));
            p++;
        }
        if (p == digits || p >= end || *p != ';')
            return 0;
        p++;
        bool ok = cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) &&
                  (cp >= 0x20 || cp == '\n' || cp == '\t') && !(cp >= 0x7f && cp <= 0x9f);
        *dn = ok ? utf8_encode(cp, d) : 0;
        return (size_t)(p - s);
    }
    const char *name = p;
    while (p < end && p - name < 10 && isalnum((unsigned char)*p))
        p++;
    if (p == name || p >= end || *p != ';')
        return 0;
    for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++)
        if (strlen(entities[i].name) == (size_t)(p - name) &&
            strncmp(entities[i].name, name, (size_t)(p - name)) == 0) {
            *dn = utf8_encode(entities[i].cp, d);
            return (size_t)(p + 1 - s);
        }
    return 0;
}

static sl_status pass_html(const char *s, size_t n, clean_buf *out, clean_result *res) {
    SL_TRY(clean_buf_reserve(out, n));
    char *d = out->p;
    const char *end = s + n, *p = s;
    while (p < end) {
        if (*p == '&') {
            char tmp[8];
            size_t dn = 0, used = decode_entity(p, end, tmp, &dn);
            if (used) {
                memcpy(d, tmp, dn); /* an entity is never shorter than its decoding */
                d += dn;
                p += used;
                res->had_html = true;
                continue;
            }
        } else if (*p == '<' && p + 1 < end) {
            if (strncmp(p, "<!--", 4) == 0) {
                const char *e = find_ci(p + 4, end, "-->");
                p = e ? e + 3 : end;
                res->had_html = true;
                continue;
            }
            const char *q = p + 1;
            bool closing = *q == '/';
            if (closing)
                q++;
            if (q < end && (isalpha((unsigned char)*q) || *q == '!' || *q == '?')) {
                const char *name = q;
                while (q < end && isalnum((unsigned char)*q))
                    q++;
                size_t name_len = (size_t)(q - name);
                const char *gt = q;
                while (gt < end && *gt != '>' && *gt != '<' && gt - p < 4096)
                    gt++;
                if (gt < end && *gt == '>') {
                    res->had_html = true;
                    p = gt + 1;
                    if (!closing && ((name_len == 6 && strncasecmp(name, "script", 6) == 0) ||
                                     (name_len == 5 && strncasecmp(name, "style", 5) == 0))) {
                        const char *close = find_ci(p, end, name_len == 6 ? "</script" : "</style");
                        const char *cgt = close ? memchr(close, '>', (size_t)(end - close)) : NULL;
                        p = cgt ? cgt + 1 : end;
                    } else if (is_break_tag(name, name_len)) {
                        *d++ = '\n';
                    } else if ((name_len == 2 && (strncasecmp(name, "td", 2) == 0 ||
                                                  strncasecmp(name, "th", 2) == 0))) {
                        *d++ = ' ';
                    }
                    continue;
                }
            }
        }
        *d++ = *p++;
    }
    return pass_end(out, d);
}

/* ---- pass 3: NFKC ---- */

static sl_status pass_nfkc(const char *s, size_t n, clean_buf *out) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    if (r < 0) {
        free(dst);
        return sl_errorf(SL_ERR_INTERNAL, "utf8proc NFKC failed: %s", utf8proc_errmsg(r));
    }
    out->len = 0;
    sl_status st = clean_buf_append(out, dst, (size_t)r);
    free(dst);
    return st;
}

/* ---- pass 4: full-width punctuation ---- */

static sl_status pass_fullwidth(const char *s, size_t n, clean_buf *out) {
    SL_TRY(clean_buf_reserve(out, n));
    char *d = out->p;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k == 0)
            k = 1, cp = (unsigned char)s[i]; /* cannot happen after pass 1 */
        if (cp >= 0xFF01 && cp <= 0xFF5E && ispunct((int)(cp - 0xFEE0)))
            *d++ = (char)(cp - 0xFEE0);
        else if (cp == 0x3000)
            *d++ = ' ';
        else {
            memcpy(d, s + i, k);
            d += k;
        }
        i += k;
    }
    return pass_end(out, d);
}

/* ---- pass 5: whitespace ---- */

static bool is_hspace(uint32_t cp) {
    return cp == ' ' || cp == '\t' || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == '\v' || cp == '\f';
}

#define CLEAN_MAX_INDENT 64

static sl_status pass_space(const char *s, size_t n, clean_buf *out, size_t *n_chars) {
    SL_TRY(clean_buf_reserve(out, n));
    char *d = out->p;
    char indent[CLEAN_MAX_INDENT];
    size_t ni = 0, nl = 0, chars = 0, i = 0;
    bool line_start = true, pending_space = false, started = false;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k == 0)
            k = 1, cp = (unsigned char)s[i];
        if (cp == '\n') {
            if (started)
                nl++;
            line_start = true;
            ni = 0;
            pending_space = false;
        } else if (is_hspace(cp)) {
            if (line_start) {
                if (ni < CLEAN_MAX_INDENT)
                    indent[ni++] = cp == '\t' ? '\t' : ' ';
            } else {
                pending_space = true;
            }
        } else {
            if (nl) {
                size_t m = nl > 2 ? 2 : nl;
                memset(d, '\n', m);
                d += m;
                chars += m;
                nl = 0;
            }
            if (line_start) {
                if (started) {
                    memcpy(d, indent, ni);
                    d += ni;
                    chars += ni;
                }
                line_start = false;
            } else if (pending_space) {
                *d++ = ' ';
                chars++;
            }
            pending_space = false;
            memcpy(d, s + i, k);
            d += k;
            chars++;
            started = true;
        }
        i += k;
    }
    *n_chars = chars;
    return pass_end(out, d);
}

static bool all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

sl_status clean_text(const clean_opts *o, const char *in, size_t len, clean_buf *out,
                     clean_buf *scratch, clean_result *res) {
    memset(res, 0, sizeof *res);
    SL_TRY(pass_utf8(o, (const unsigned char *)in, len, out, res));
    if (res->dropped_invalid_utf8)
        return SL_OK;
    if (o->strip_html && (memchr(out->p, '<', out->len) || memchr(out->p, '&', out->len))) {
        SL_TRY(pass_html(out->p, out->len, scratch, res));
        swap_bufs(out, scratch);
    }
    bool ascii = all_ascii(out->p, out->len);
    if (o->nfkc && !ascii) {
        SL_TRY(pass_nfkc(out->p, out->len, scratch));
        swap_bufs(out, scratch);
    }
    if (o->fullwidth_punct && !ascii) {
        SL_TRY(pass_fullwidth(out->p, out->len, scratch));
        swap_bufs(out, scratch);
    }
    SL_TRY(pass_space(out->p, out->len, scratch, &res->n_chars));
    swap_bufs(out, scratch);
    return SL_OK;
}
