/* Unit tests for data/textmetrics against published values: sacrebleu's test
 * suite (github.com/mjpost/sacrebleu, test/test_bleu.py and
 * test/test_sentence_bleu.py) and rouge-score's
 * (github.com/google-research/google-research, rouge/rouge_scorer_test.py
 * with rouge/testdata/{target,prediction}.txt, whose ROUGE-1.5.5 "ground
 * truth" the test file states). Edge cases (empty and one-word segments)
 * are worked from the formulas of sacrebleu's BLEU.compute_bleu and
 * rouge-score's _score_ngrams/_score_lcs, cited at each case. The wide
 * comparison on generated text is tests/integration/test_textmetrics_oracle.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "data/textmetrics.h"
#include "runtime/status.h"

static void check_ok(sl_status st) {
    if (st != SL_OK)
        fail_msg("%s: %s", sl_status_name(st), sl_error_message());
}

static void near(double got, double want, double tol, const char *what) {
    if (!(fabs(got - want) <= tol))
        fail_msg("%s = %.12g, expected %.12g (tolerance %g)", what, got, want, tol);
}

/* test_bleu.py: _refs / _hyps, the README example (two reference streams). */
static const char *readme_hyps[3] = {"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
static const char *readme_refs[6] = {
    "The dog bit the man.", "It was not unexpected.", "The man bit him first.",           /* stream 0 */
    "The dog had bit the man.", "No one was surprised.", "The man had bitten the dog.", /* stream 1 */
};

static void test_bleu_sacrebleu_corpus(void **state) {
    (void)state;
    textmetrics_bleu b;
    /* test_bleu.py test_corpus_bleu: (_hyps, _refs, {}, 48.530827) and
     * {'tokenize': '13a'} and {'smooth_method': 'none'}, EPSILON 1e-8;
     * test_max_ngram_order (4, ..., "48.53") */
    check_ok(textmetrics_corpus_bleu_multi(readme_hyps, readme_refs, 2, 3, TEXTMETRICS_SMOOTH_EXP, &b));
    near(b.score, 48.530827, 1e-6, "README example BLEU (exp)");
    check_ok(textmetrics_corpus_bleu_multi(readme_hyps, readme_refs, 2, 3, TEXTMETRICS_SMOOTH_NONE, &b));
    near(b.score, 48.530827, 1e-6, "README example BLEU (none)");
    /* (('', '', ''), _refs, {}, 0.0): empty hypotheses are not removed */
    const char *empty[3] = {"", "", ""};
    check_ok(textmetrics_corpus_bleu_multi(empty, readme_refs, 2, 3, TEXTMETRICS_SMOOTH_EXP, &b));
    assert_true(b.score == 0.0);
    assert_int_equal(b.sys_len, 0);
    assert_true(b.bp == 0.0); /* sys_len 0 < ref_len: bp 0 */
    assert_true(b.ref_len > 0);
}

static void test_bleu_sacrebleu_statistics(void **state) {
    (void)state;
    /* test_bleu.py test_statistics: counts [4, 2, 1, 0], totals [6, 5, 4, 3].
     * The test runs raw_corpus_bleu (tokenize='none'); 13a splits these
     * strings, which hold no punctuation, the same way. */
    const char *h[1] = {"am I am a character sequence"};
    const char *r[1] = {"I am a symbol string sequence a a"};
    textmetrics_bleu b;
    check_ok(textmetrics_corpus_bleu(h, r, 1, &b));
    const int64_t counts[4] = {4, 2, 1, 0}, totals[4] = {6, 5, 4, 3};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(b.counts[i], counts[i]);
        assert_int_equal(b.totals[i], totals[i]);
    }
    assert_int_equal(b.sys_len, 6);
    assert_int_equal(b.ref_len, 8);
    /* smooth_method='none' with a zero 4-gram count: my_log(0) makes it 0 */
    check_ok(textmetrics_corpus_bleu_smooth(h, r, 1, TEXTMETRICS_SMOOTH_NONE, &b));
    assert_true(b.score == 0.0);
}

static void test_bleu_sacrebleu_scoring(void **state) {
    (void)state;
    /* test_bleu.py test_scoring: BLEU.compute_bleu([9, 7, 5, 3], [10, 8, 6, 4],
     * 11, 11) (smooth_method 'none') / 100 = 0.8375922397, EPSILON 1e-8 */
    textmetrics_bleu b = {.sys_len = 11, .ref_len = 11, .counts = {9, 7, 5, 3}, .totals = {10, 8, 6, 4}};
    check_ok(textmetrics_bleu_from_stats(&b, TEXTMETRICS_SMOOTH_NONE));
    near(b.score / 100, 0.8375922397, 1e-8, "compute_bleu score");
    near(b.precisions[0], 90.0, 1e-12, "p1");
    near(b.bp, 1.0, 0, "bp");
    /* bad statistics are refused */
    textmetrics_bleu bad = {.sys_len = 1, .ref_len = 1, .counts = {2, 0, 0, 0}, .totals = {1, 0, 0, 0}};
    assert_int_equal(textmetrics_bleu_from_stats(&bad, TEXTMETRICS_SMOOTH_EXP), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "counts"));
}

static void test_bleu_sacrebleu_sentence(void **state) {
    (void)state;
    /* test_sentence_bleu.py (example from sacrebleu #98), EPSILON 1e-3:
     * ('exp', None, False, '13a', 8.493) and ('none', ..., 0.0). Those run
     * with use_effective_order=True, which changes nothing here: the
     * hypothesis has 14 tokens, so every order has n-grams. */
    const char *ref[1] = {"producţia de zahăr brut se exprimă în zahăr alb;"};
    const char *sys[1] = {"Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;"};
    textmetrics_bleu b;
    check_ok(textmetrics_corpus_bleu(sys, ref, 1, &b));
    near(b.score, 8.493, 1e-3, "sentence BLEU (exp)");
    assert_int_equal(b.sys_len, 14);
    check_ok(textmetrics_corpus_bleu_smooth(sys, ref, 1, TEXTMETRICS_SMOOTH_NONE, &b));
    assert_true(b.score == 0.0);
    /* test_cases_zero_bleu (#141): "this is a cat" vs "okay thanks" -> 0.0 */
    const char *s0[1] = {"this is a cat"}, *r0[1] = {"okay thanks"};
    check_ok(textmetrics_corpus_bleu(s0, r0, 1, &b));
    assert_true(b.score == 0.0);
    for (int i = 0; i < 4; i++)
        assert_true(b.precisions[i] == 0.0);
}

static void test_bleu_edges(void **state) {
    (void)state;
    textmetrics_bleu b;
    /* empty hypothesis and reference: sys_len == ref_len == 0, so bp stays
     * 1.0 (compute_bleu only lowers it when sys_len < ref_len); no match: 0 */
    const char *e[1] = {""};
    check_ok(textmetrics_corpus_bleu(e, e, 1, &b));
    assert_true(b.score == 0.0 && b.bp == 1.0);
    assert_int_equal(b.sys_len + b.ref_len + b.totals[0], 0);
    /* empty hypothesis, 3-token reference: bp = 0 (sys_len 0) */
    const char *r3[1] = {"a b c"};
    check_ok(textmetrics_corpus_bleu(e, r3, 1, &b));
    assert_true(b.score == 0.0 && b.bp == 0.0);
    assert_int_equal(b.ref_len, 3);
    /* empty reference: ref_len 0 <= sys_len, bp 1, nothing matches */
    check_ok(textmetrics_corpus_bleu(r3, e, 1, &b));
    assert_true(b.score == 0.0 && b.bp == 1.0);
    assert_int_equal(b.totals[2], 1);
    /* one word, matching: p1 = 100, then total[1] == 0 stops the loop with
     * p2..p4 = 0 and my_log(0) = -9999999999: the score is 0 (exp too) */
    const char *w[1] = {"word"};
    check_ok(textmetrics_corpus_bleu(w, w, 1, &b));
    assert_true(b.score == 0.0);
    near(b.precisions[0], 100.0, 0, "one-word p1");
    assert_true(b.precisions[1] == 0.0);
    assert_int_equal(b.counts[0], 1);
    /* 13a details: entities unescaped, "-\n" joined, trailing whitespace
     * (U+00A0 too, Python's rstrip) dropped, "." and "," split off unless
     * next to a digit, "-" after a digit split */
    const char *h13[1] = {"&quot;self-\nmade&quot; 3.14, 1,000 5-6 end.\u00a0 "};
    const char *r13[1] = {"\" selfmade \" 3.14 , 1,000 5 - 6 end ."};
    check_ok(textmetrics_corpus_bleu(h13, r13, 1, &b));
    assert_int_equal(b.sys_len, 11);
    assert_int_equal(b.counts[0], 11);
    assert_int_equal(b.counts[3], 8);
    near(b.score, 100.0, 1e-12, "13a-equivalent strings");
}

/* rouge/testdata/target.txt and prediction.txt, lines 0 and 1 as
 * f.readlines() gives them (with the newline) */
static const char *rouge_targets[2] = {
    "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr "
    "q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n",
    "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer "
    "HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion "
    "gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n",
};
static const char *rouge_predictions[2] = {
    "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n",
    "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed "
    "nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n",
};

static void expect_prf(const textmetrics_prf *got, double p, double r, double f, double tol, const char *what) {
    char b[128];
    snprintf(b, sizeof b, "%s precision", what);
    near(got->precision, p, tol, b);
    snprintf(b, sizeof b, "%s recall", what);
    near(got->recall, r, tol, b);
    snprintf(b, sizeof b, "%s f1", what);
    near(got->f1, f, tol, b);
}

static void test_rouge_scorer_published(void **state) {
    (void)state;
    textmetrics_rouge s;
    const double t = 1e-7; /* assertAlmostEqual's default: 7 places */
    /* testRouge1: score("testing one two", "testing") */
    check_ok(textmetrics_rouge_pair("testing", "testing one two", &s));
    expect_prf(&s.rouge1, 1, 1.0 / 3, 1.0 / 2, t, "testRouge1 rouge1");
    /* testRougeEmpty: score("testing one two", "") -> 0 for rouge1/2/L */
    check_ok(textmetrics_rouge_pair("", "testing one two", &s));
    expect_prf(&s.rouge1, 0, 0, 0, 0, "testRougeEmpty rouge1");
    expect_prf(&s.rouge2, 0, 0, 0, 0, "testRougeEmpty rouge2");
    expect_prf(&s.rougeL, 0, 0, 0, 0, "testRougeEmpty rougeL");
    /* testRouge2, testRougeLConsecutive, testMultipleRougeTypes:
     * score("testing one two", "testing one") */
    check_ok(textmetrics_rouge_pair("testing one", "testing one two", &s));
    expect_prf(&s.rouge2, 1, 1.0 / 2, 2.0 / 3, t, "testRouge2 rouge2");
    expect_prf(&s.rougeL, 1, 2.0 / 3, 4.0 / 5, t, "testRougeLConsecutive rougeL");
    expect_prf(&s.rouge1, 1, 2.0 / 3, 4.0 / 5, t, "testMultipleRougeTypes rouge1");
    /* testRougeLNonConsecutive: score("testing one two", "testing two") */
    check_ok(textmetrics_rouge_pair("testing two", "testing one two", &s));
    expect_prf(&s.rougeL, 1, 2.0 / 3, 4.0 / 5, t, "testRougeLNonConsecutive rougeL");
    /* testRouge1/2/LAgainstRouge155 (places=5) on the testdata lines */
    const double t5 = 5e-6;
    check_ok(textmetrics_rouge_pair(rouge_predictions[0], rouge_targets[0], &s));
    expect_prf(&s.rouge1, 0.68750, 0.40741, 0.51163, t5, "Rouge155 line 0 rouge1");
    expect_prf(&s.rouge2, 0.53333, 0.30769, 0.39024, t5, "Rouge155 line 0 rouge2");
    expect_prf(&s.rougeL, 0.68750, 0.40741, 0.51163, t5, "Rouge155 line 0 rougeL");
    check_ok(textmetrics_rouge_pair(rouge_predictions[1], rouge_targets[1], &s));
    expect_prf(&s.rouge1, 0.65385, 0.40476, 0.50000, t5, "Rouge155 line 1 rouge1");
    expect_prf(&s.rouge2, 0.48000, 0.29268, 0.36364, t5, "Rouge155 line 1 rouge2");
    expect_prf(&s.rougeL, 0.65385, 0.40476, 0.50000, t5, "Rouge155 line 1 rougeL");
    /* the corpus is the mean of the two pairs */
    textmetrics_rouge c;
    check_ok(textmetrics_corpus_rouge(rouge_predictions, rouge_targets, 2, &c));
    near(c.rouge2.recall, (0.30769 + 0.29268) / 2, t5, "corpus rouge2 recall");
    near(c.rougeL.f1, (0.51163 + 0.50000) / 2, t5, "corpus rougeL f1");
}

static void test_rouge_edges(void **state) {
    (void)state;
    textmetrics_rouge s;
    /* both empty: _score_ngrams gives 0/max(0,1) = 0, _score_lcs returns 0s */
    check_ok(textmetrics_rouge_pair("", "", &s));
    expect_prf(&s.rouge1, 0, 0, 0, 0, "empty/empty rouge1");
    expect_prf(&s.rougeL, 0, 0, 0, 0, "empty/empty rougeL");
    /* empty reference */
    check_ok(textmetrics_rouge_pair("a b", "", &s));
    expect_prf(&s.rouge1, 0, 0, 0, 0, "hyp/empty rouge1");
    /* one word each, equal up to case: rouge1 and rougeL 1; no bigrams, so
     * rouge2 is 0/max(0,1) = 0 */
    check_ok(textmetrics_rouge_pair("Word", "word.", &s));
    expect_prf(&s.rouge1, 1, 1, 1, 0, "one word rouge1");
    expect_prf(&s.rouge2, 0, 0, 0, 0, "one word rouge2");
    expect_prf(&s.rougeL, 1, 1, 1, 0, "one word rougeL");
    /* only non-[a-z0-9] characters ("/" as in testRougeLsum, accented and
     * CJK letters): no token, all 0 */
    check_ok(textmetrics_rouge_pair("/ 日本語 é", "w1 w2", &s));
    expect_prf(&s.rouge1, 0, 0, 0, 0, "non-alnum rouge1");
    /* "café" is the tokens "caf" ("é" separates); multiset overlap clips
     * "a a a" against one "a": P = 1/3, R = 1/2 */
    check_ok(textmetrics_rouge_pair("a a a", "a café", &s));
    expect_prf(&s.rouge1, 1.0 / 3, 1.0 / 2, 2 * (1.0 / 3) * (1.0 / 2) / (1.0 / 3 + 1.0 / 2), 1e-15,
               "clipped rouge1");
}

static void test_errors(void **state) {
    (void)state;
    textmetrics_bleu b;
    textmetrics_rouge r;
    const char *bad[2] = {"fine", "bad \xff byte"};
    const char *good[2] = {"fine", "ok"};
    assert_int_equal(textmetrics_corpus_bleu(bad, good, 2, &b), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "hypothesis 1 is not valid UTF-8 at byte offset 4"));
    assert_int_equal(textmetrics_corpus_rouge(good, bad, 2, &r), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "reference 1"));
    const char *nul[1] = {NULL};
    assert_int_equal(textmetrics_corpus_bleu(nul, good, 1, &b), SL_ERR_INVALID);
    assert_non_null(strstr(sl_error_message(), "is NULL"));
    assert_int_equal(textmetrics_corpus_bleu(good, good, 0, &b), SL_ERR_INVALID);
    assert_int_equal(textmetrics_corpus_rouge(good, good, 0, &r), SL_ERR_INVALID);
    assert_int_equal(textmetrics_corpus_bleu_smooth(good, good, 1, (textmetrics_smooth)7, &b), SL_ERR_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bleu_sacrebleu_corpus),    cmocka_unit_test(test_bleu_sacrebleu_statistics),
        cmocka_unit_test(test_bleu_sacrebleu_scoring),   cmocka_unit_test(test_bleu_sacrebleu_sentence),
        cmocka_unit_test(test_bleu_edges),               cmocka_unit_test(test_rouge_scorer_published),
        cmocka_unit_test(test_rouge_edges),              cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
