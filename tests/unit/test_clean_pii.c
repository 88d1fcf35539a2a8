/* Unit tests for data/clean and data/pii: each cleaning step, and a table of
 * PII cases that must be masked and look-alikes that must stay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/clean.h"
#include "data/pii.h"
#include "runtime/status.h"

static void check_ok(sl_status st) {
    if (st != SL_OK)
        fail_msg("%s: %s", sl_status_name(st), sl_error_message());
}

static const clean_opts default_opts = {.nfkc = true, .fullwidth_punct = false, .strip_html = true,
                                        .invalid_utf8 = CLEAN_UTF8_REPAIR};

static void expect_clean(const clean_opts *o, const char *in, size_t len, const char *want) {
    clean_buf out = {0}, scratch = {0};
    clean_result r;
    check_ok(clean_text(o, in, len, &out, &scratch, &r));
    if (strcmp(out.p, want) != 0)
        fail_msg("clean(\"%s\") = \"%s\", expected \"%s\"", in, out.p, want);
    clean_buf_free(&out);
    clean_buf_free(&scratch);
}

#define EXPECT_CLEAN(o, in, want) expect_clean(o, in, sizeof(in) - 1, want)

static void test_clean_steps(void **state) {
    (void)state;
    const clean_opts *o = &default_opts;
    /* whitespace */
    EXPECT_CLEAN(o, "  hello   world  \n\n\n\n  next\tline \n", "hello world\n\n  next line");
    EXPECT_CLEAN(o, "a\r\nb\rc", "a\nb\nc");
    /* control characters, C1, BOM */
    EXPECT_CLEAN(o, "a\x01" "b\x7f" "c\xc2\x85" "d\xef\xbb\xbf" "e", "abcde");
    /* HTML */
    EXPECT_CLEAN(o, "<p>Hello <b>world</b> &amp; friends</p><script>var x = 1 < 2;</script>bye",
                 "Hello world & friends\nbye");
    EXPECT_CLEAN(o, "a < b and c > d; x &lt; y &#x41;&#66; &bogus; &#1;end", "a < b and c > d; x < y AB &bogus; end");
    EXPECT_CLEAN(o, "one<br>two<!-- hidden --><style>p{}</style>three", "one\ntwothree");
    /* NFKC: full-width letters and punctuation, ligature, compatibility digits */
    EXPECT_CLEAN(o, "\xef\xbc\xa1\xef\xbc\x81 \xef\xac\x81 \xe2\x91\xa0", "A! fi 1");
    /* NFKC keeps CJK text and the ideographic full stop */
    EXPECT_CLEAN(o, "\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x82", "\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x82");
    /* full-width punctuation without NFKC: punctuation maps, letters stay */
    clean_opts fw = default_opts;
    fw.nfkc = false;
    fw.fullwidth_punct = true;
    EXPECT_CLEAN(&fw, "\xef\xbc\xa1\xef\xbc\x81\xe3\x80\x80\xef\xbc\x9f", "\xef\xbc\xa1! ?");
    fw.fullwidth_punct = false;
    EXPECT_CLEAN(&fw, "\xef\xbc\x81", "\xef\xbc\x81");
}

static void test_clean_utf8(void **state) {
    (void)state;
    static const char bad[] = "ok\xff" "x\xc0\xaf" "y\xed\xa0\x80" "z\xe4\xbd";
    clean_buf out = {0}, scratch = {0};
    clean_result r;
    check_ok(clean_text(&default_opts, bad, sizeof bad - 1, &out, &scratch, &r));
    assert_true(r.repaired_utf8);
    assert_false(r.dropped_invalid_utf8);
    /* each invalid byte becomes U+FFFD */
    assert_string_equal(out.p, "ok\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz"
                               "\xef\xbf\xbd\xef\xbf\xbd");
    clean_opts drop = default_opts;
    drop.invalid_utf8 = CLEAN_UTF8_DROP;
    check_ok(clean_text(&drop, bad, sizeof bad - 1, &out, &scratch, &r));
    assert_true(r.dropped_invalid_utf8);
    static const char good[] = "caf\xc3\xa9 \xf0\x9f\x98\x80";
    check_ok(clean_text(&drop, good, sizeof good - 1, &out, &scratch, &r));
    assert_false(r.dropped_invalid_utf8);
    assert_int_equal(r.n_chars, 6);
    clean_buf_free(&out);
    clean_buf_free(&scratch);
}

typedef struct {
    const char *in;
    const char *want;
    int type; /* counted type, -1 when nothing is masked */
} pii_case;

static const pii_case pii_cases[] = {
    /* e-mail */
    {"mail john.doe+x@example.co.uk now", "mail <EMAIL> now", PII_EMAIL},
    {"\xe9\x82\xae\xe7\xae\xb1zhang_san@mail.qq.com\xe3\x80\x82", "\xe9\x82\xae\xe7\xae\xb1<EMAIL>\xe3\x80\x82", PII_EMAIL},
    {"user@localhost and @handle", "user@localhost and @handle", -1},
    /* Chinese resident ID: valid checksums (digit and X) */
    {"ID 11010519491231002X.", "ID <CN_ID>.", PII_CN_ID},
    {"\xe8\xba\xab\xe4\xbb\xbd\xe8\xaf\x81" "440524188001010014", "\xe8\xba\xab\xe4\xbb\xbd\xe8\xaf\x81<CN_ID>", PII_CN_ID},
    {"id 11010519491231002x end", "id <CN_ID> end", PII_CN_ID},
    /* invalid ID checksum, impossible date: stay (and are not cards either) */
    {"order 110105194912310021 shipped", "order 110105194912310021 shipped", -1},
    {"id 110105194902300023", "id 110105194902300023", -1},
    /* cards: Luhn valid */
    {"card 4111111111111111 exp", "card <CARD> exp", PII_CARD},
    {"card 4111 1111 1111 1111.", "card <CARD>.", PII_CARD},
    {"amex 3782-822463-10005", "amex <CARD>", PII_CARD},
    /* Luhn invalid, or not grouped like a card: stay */
    {"tracking 4111111111111112", "tracking 4111111111111112", -1},
    {"years 2019 2020 2021 2022", "years 2019 2020 2021 2022", -1},
    /* phones */
    {"call 13812345678 today", "call <PHONE> today", PII_PHONE},
    {"call +86 138-1234-5678", "call <PHONE>", PII_PHONE},
    {"\xe7\x94\xb5\xe8\xaf\x9d""15912345678\xef\xbc\x8c", "\xe7\x94\xb5\xe8\xaf\x9d<PHONE>\xef\xbc\x8c", PII_PHONE},
    {"us +1 415 555 2671", "us <PHONE>", PII_PHONE},
    {"uk +442071838750.", "uk <PHONE>.", PII_PHONE},
    /* look-alikes: not a mobile prefix, part of a longer number, too short */
    {"code 12812345678", "code 12812345678", -1},
    {"ref 913812345678", "ref 913812345678", -1},
    {"tel 1381234567", "tel 1381234567", -1},
    {"x+12345", "x+12345", -1},
    /* IPv4 */
    {"from 192.168.1.20, to 8.8.8.8.", "from <IPV4>, to <IPV4>.", PII_IPV4},
    {"version 1.2.3.4.5 and 999.1.1.1 and 1.2.3", "version 1.2.3.4.5 and 999.1.1.1 and 1.2.3", -1},
    /* IPv6 */
    {"host 2001:db8::8a2e:370:7334 up", "host <IPV6> up", PII_IPV6},
    {"lo ::1 and fe80::1%eth0", "lo ::1 and <IPV6>%eth0", PII_IPV6}, /* ::1 names no host */
    {"std::vector at 12:30:45 in a::b", "std::vector at 12:30:45 in a::b", -1},
};

static void test_pii_table(void **state) {
    (void)state;
    pii_masker *m;
    pii_scratch *s;
    check_ok(pii_create(&m));
    check_ok(pii_scratch_create(m, &s));
    clean_buf b = {0};
    for (size_t i = 0; i < sizeof pii_cases / sizeof pii_cases[0]; i++) {
        const pii_case *c = &pii_cases[i];
        b.len = 0;
        check_ok(clean_buf_append(&b, c->in, strlen(c->in)));
        uint64_t counts[PII_TYPE_COUNT] = {0};
        check_ok(pii_mask(m, s, &b, counts));
        if (strcmp(b.p, c->want) != 0)
            fail_msg("case %zu: pii(\"%s\") = \"%s\", expected \"%s\"", i, c->in, b.p, c->want);
        for (int t = 0; t < PII_TYPE_COUNT; t++) {
            int expect_some = t == c->type;
            if ((counts[t] > 0) != expect_some)
                fail_msg("case %zu (\"%s\"): %s count %llu", i, c->in, pii_type_name((pii_type)t),
                         (unsigned long long)counts[t]);
        }
    }
    clean_buf_free(&b);
    pii_scratch_destroy(s);
    pii_destroy(m);
}

static void test_validators(void **state) {
    (void)state;
    assert_true(pii_cn_id_valid("11010519491231002X"));
    assert_true(pii_cn_id_valid("440524188001010014"));
    assert_false(pii_cn_id_valid("110105194912310021"));
    assert_false(pii_cn_id_valid("11010519490229001X")); /* 1949 is no leap year */
    assert_true(pii_luhn_valid("79927398713", 11));
    assert_false(pii_luhn_valid("79927398710", 11));
    assert_true(pii_luhn_valid("378282246310005", 15));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_steps),
        cmocka_unit_test(test_clean_utf8),
        cmocka_unit_test(test_pii_table),
        cmocka_unit_test(test_validators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
