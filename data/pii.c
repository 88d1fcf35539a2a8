/* data/pii.c: PCRE2 (JIT) candidates, then a validator per type; one pass
 * per type over the text, in the order of pii.h. */
#include "data/pii.h"

#include <arpa/inet.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/check.h"

static const char *const pii_names[PII_TYPE_COUNT] = {"email", "ipv6", "ipv4", "cn_id", "card", "phone"};
static const char *const pii_tags[PII_TYPE_COUNT] = {"<EMAIL>", "<IPV6>", "<IPV4>", "<CN_ID>", "<CARD>", "<PHONE>"};

#define PII_B "(?<![0-9A-Za-z])"  /* nothing alphanumeric before */
#define PII_E "(?![0-9A-Za-z])"   /* nothing alphanumeric after */
#define PII_OCTET "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

static const char *const pii_patterns[PII_TYPE_COUNT] = {
    /* email */
    "(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    "(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])",
    /* ipv6 candidates; inet_pton decides */
    "(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:" PII_OCTET "(?:\\." PII_OCTET "){3}|[0-9A-Fa-f]{0,4})"
    "(?![0-9A-Za-z:]|\\.[0-9])",
    /* ipv4 */
    "(?<![0-9A-Za-z.])" PII_OCTET "(?:\\." PII_OCTET "){3}(?![0-9A-Za-z]|\\.[0-9])",
    /* cn id: region, yyyymmdd, sequence, check */
    PII_B "[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]" PII_E,
    /* card: 13..19 digits, or groups 4-4-4-4(-1..4), 4-4-4-(1..4), 4-6-5 */
    PII_B "(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,4})?|[0-9]{4}[ -][0-9]{6}[ -][0-9]{5})" PII_E,
    /* phone: CN mobile, E.164 */
    "(?<![0-9A-Za-z+])(?:(?:(?:\\+|00)86[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})"
    "|\\+[1-9](?:[ -]?[0-9]){6,14})" PII_E,
};

struct pii_masker {
    pcre2_code *re[PII_TYPE_COUNT];
};

struct pii_scratch {
    pcre2_match_data *md;
    clean_buf tmp;
};

const char *pii_type_name(pii_type t) { return t < PII_TYPE_COUNT ? pii_names[t] : "?"; }
const char *pii_tag(pii_type t) { return t < PII_TYPE_COUNT ? pii_tags[t] : "?"; }

void pii_destroy(pii_masker *m) {
    if (!m)
        return;
    for (int i = 0; i < PII_TYPE_COUNT; i++)
        pcre2_code_free(m->re[i]);
    free(m);
}

sl_status pii_create(pii_masker **out) {
    *out = NULL;
    pii_masker *m = calloc(1, sizeof *m);
    SL_CHECK_ALLOC(m, sizeof *m);
    for (int i = 0; i < PII_TYPE_COUNT; i++) {
        int err;
        PCRE2_SIZE at;
        m->re[i] = pcre2_compile((PCRE2_SPTR)pii_patterns[i], PCRE2_ZERO_TERMINATED, 0, &err, &at, NULL);
        if (!m->re[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            pii_destroy(m);
            return sl_errorf(SL_ERR_INTERNAL, "PII pattern %s does not compile at %zu: %s",
                             pii_names[i], (size_t)at, (const char *)msg);
        }
        /* without JIT the interpreter gives the same matches, only slower */
        (void)pcre2_jit_compile(m->re[i], PCRE2_JIT_COMPLETE);
    }
    *out = m;
    return SL_OK;
}

sl_status pii_scratch_create(const pii_masker *m, pii_scratch **out) {
    *out = NULL;
    pii_scratch *s = calloc(1, sizeof *s);
    SL_CHECK_ALLOC(s, sizeof *s);
    s->md = pcre2_match_data_create(4, NULL);
    if (!s->md) {
        free(s);
        return sl_errorf(SL_ERR_NOMEM, "out of memory for PCRE2 match data");
    }
    (void)m;
    *out = s;
    return SL_OK;
}

void pii_scratch_destroy(pii_scratch *s) {
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    clean_buf_free(&s->tmp);
    free(s);
}

/* ---- validators ---- */

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

bool pii_cn_id_valid(const char *s) {
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    static const char check[11] = {'1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'};
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        sum += (s[i] - '0') * w[i];
    }
    char c = s[17] == 'x' ? 'X' : s[17];
    if (c != check[sum % 11])
        return false;
    int y = (s[6] - '0') * 1000 + (s[7] - '0') * 100 + (s[8] - '0') * 10 + (s[9] - '0');
    int mo = (s[10] - '0') * 10 + (s[11] - '0');
    int d = (s[12] - '0') * 10 + (s[13] - '0');
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1800 || y > 2099 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return false;
    return !(mo == 2 && d == 29 && !is_leap(y));
}

bool pii_luhn_valid(const char *digits, size_t n) {
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = digits[n - 1 - i] - '0';
        if (v < 0 || v > 9)
            return false;
        if (i % 2 == 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return n > 0 && sum % 10 == 0;
}

static size_t only_digits(const char *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= '0' && s[i] <= '9') {
            if (k == cap)
                return cap + 1;
            out[k++] = s[i];
        }
    return k;
}

static bool validate(pii_type t, const char *s, size_t n) {
    char buf[64];
    switch (t) {
    case PII_EMAIL:
    case PII_IPV4:
    case PII_PHONE:
        return true; /* the pattern is the whole rule (E.164 length is in it) */
    case PII_IPV6: {
        if (n >= sizeof buf)
            return false;
        /* two hex digits, one of them decimal: "::1" and words like
         * "a::b" or "dead::beef" stay */
        size_t hex = 0, dec = 0;
        for (size_t i = 0; i < n; i++) {
            hex += s[i] != ':' && s[i] != '.';
            dec += s[i] >= '0' && s[i] <= '9';
        }
        if (hex < 2 || dec == 0)
            return false;
        memcpy(buf, s, n);
        buf[n] = 0;
        unsigned char addr[16];
        return inet_pton(AF_INET6, buf, addr) == 1;
    }
    case PII_CN_ID:
        return n == 18 && pii_cn_id_valid(s);
    case PII_CARD: {
        size_t k = only_digits(s, n, buf, 19);
        return k >= 13 && k <= 19 && pii_luhn_valid(buf, k);
    }
    default:
        return false;
    }
}

static sl_status mask_pass(const pii_masker *m, pii_scratch *s, pii_type t, clean_buf *text,
                           uint64_t *count) {
    PCRE2_SIZE off = 0, copied = 0, len = text->len;
    size_t found = 0;
    s->tmp.len = 0;
    while (off <= len) {
        int rc = pcre2_match(m->re[t], (PCRE2_SPTR)text->p, len, off, 0, s->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sl_errorf(SL_ERR_INTERNAL, "PII %s match failed: %s", pii_names[t], (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        PCRE2_SIZE a = ov[0], b = ov[1];
        if (b > a && validate(t, text->p + a, b - a)) {
            SL_TRY(clean_buf_append(&s->tmp, text->p + copied, a - copied));
            SL_TRY(clean_buf_append(&s->tmp, pii_tags[t], strlen(pii_tags[t])));
            copied = b;
            found++;
            off = b;
        } else {
            off = a + 1;
        }
    }
    if (found == 0)
        return SL_OK;
    SL_TRY(clean_buf_append(&s->tmp, text->p + copied, len - copied));
    clean_buf t2 = *text;
    *text = s->tmp;
    s->tmp = t2;
    *count += found;
    return SL_OK;
}

sl_status pii_mask(const pii_masker *m, pii_scratch *s, clean_buf *text,
                   uint64_t counts[PII_TYPE_COUNT]) {
    bool at = memchr(text->p, '@', text->len) != NULL;
    bool colon = memchr(text->p, ':', text->len) != NULL;
    bool digit = false;
    for (size_t i = 0; i < text->len && !digit; i++)
        digit = text->p[i] >= '0' && text->p[i] <= '9';
    for (int t = 0; t < PII_TYPE_COUNT; t++) {
        if (t == PII_EMAIL ? !at : t == PII_IPV6 ? !colon : !digit)
            continue;
        SL_TRY(mask_pass(m, s, (pii_type)t, text, &counts[t]));
    }
    return SL_OK;
}
