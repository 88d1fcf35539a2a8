/* data/textmetrics.h: generation metrics of text against references: corpus
 * BLEU as sacrebleu computes it by default and ROUGE-1/2/L as Google's
 * rouge-score computes it without stemming.
 *
 * defines: textmetrics_bleu, textmetrics_smooth, textmetrics_corpus_bleu,
 *          textmetrics_corpus_bleu_smooth, textmetrics_corpus_bleu_multi,
 *          textmetrics_bleu_from_stats, textmetrics_prf, textmetrics_rouge,
 *          textmetrics_rouge_pair, textmetrics_corpus_rouge
 *
 * Strings are UTF-8 and NUL-terminated; a string that is not valid UTF-8 (or
 * a NULL pointer) is refused with SL_ERR_INVALID naming its index. Pure
 * functions: no state, any number of threads at once. Nothing here reads
 * files or prints.
 *
 * BLEU (sacrebleu 2.x, sacrebleu/metrics/bleu.py, BLEU() with its defaults:
 * tokenize='13a', lowercase=False, smooth_method='exp', effective_order=False,
 * max_ngram_order=4). Each segment is right-stripped of Python whitespace
 * (str.rstrip), then tokenized as sacrebleu's Tokenizer13a: "<skipped>" and
 * "-\n" are removed, "\n" becomes a space, &quot; &amp; &lt; &gt; are
 * unescaped (in that order), and TokenizerRegexp's four substitutions run on
 * " line ": every char of {|}~ [\]^_` space!"#$%& ()*+ :;<=>?@ / gets spaces
 * around it; "." and "," are split off unless preceded or followed by a
 * digit (two passes); "-" after a digit is split off; the result is split on
 * Python whitespace (str.split: Unicode White_Space plus U+001C..U+001F).
 * Case is kept. Per segment: correct[k] = sum over distinct hypothesis
 * k+1-grams of min(count in hypothesis, max count in a reference), total[k]
 * = number of hypothesis k+1-grams, sys_len += hypothesis tokens, ref_len +=
 * the length of the reference closest to it (ties: the shorter). Over the
 * corpus the sums give
 *   bp = 1 if sys_len >= ref_len, 0 if sys_len == 0, else exp(1 - ref/sys)
 *   all correct == 0: score 0, precisions 0 (sacrebleu #141)
 *   for n = 1..4, stopping at the first total[n] == 0 (later precisions 0):
 *     p_n = 100 * correct/total; a zero correct gives, with 'exp' smoothing,
 *     p_n = 100 / (2^k * total) for the k-th zero order (mteval-v13a's
 *     NIST smoothing), and 0 without smoothing
 *   score = bp * exp(sum_n mylog(p_n) / 4), mylog(0) = -9999999999
 * So a corpus whose hypotheses hold under 4 tokens in all scores 0; an
 * empty hypothesis still counts its reference's length (sacrebleu does
 * not drop empty lines).
 * Default: smooth_method='exp', sacrebleu's default for BLEU() and
 * corpus_bleu (sacrebleu/metrics/bleu.py, sacrebleu/compat.py), so
 * "sacrebleu's default" and "smoothing off" differ; on corpora where every
 * n-gram order has a match the two give the same score.
 * textmetrics_corpus_bleu_smooth picks 'none' or 'exp'.
 *
 * ROUGE (rouge-score 0.1.2, rouge/rouge_scorer.py + tokenize.py, DefaultTokenizer
 * with use_stemmer=False): text.lower() (Python's full Unicode lowercase),
 * runs of [^a-z0-9] become one space, tokens are the remaining [a-z0-9]+
 * runs: ASCII letters and digits only, so accented and non-Latin letters
 * separate tokens and vanish (U+0130 and the Kelvin sign U+212A lowercase
 * to ASCII i and k and do count, as in Python). ROUGE-N: overlap = sum over
 * target n-grams of min(count in target, count in prediction); precision =
 * overlap / max(#prediction n-grams, 1), recall = overlap / max(#target
 * n-grams, 1). ROUGE-L: LCS of the token sequences; precision = lcs/|pred|,
 * recall = lcs/|target|, all 0 when either side has no token. F1 = 2PR/(P+R),
 * 0 when P+R == 0. The corpus values are the plain means over the pairs
 * (what rouge-score's BootstrapAggregator reports as "mid" up to its
 * resampling noise).
 */
#ifndef SL_DATA_TEXTMETRICS_H
#define SL_DATA_TEXTMETRICS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

/* one reference per hypothesis; strings are UTF-8, NUL-terminated */
typedef struct {
    double score;         /* 0..100, sacrebleu's BLEU.score */
    double precisions[4]; /* 0..100 */
    double bp;            /* brevity penalty */
    int64_t sys_len, ref_len;
    int64_t counts[4], totals[4];
} textmetrics_bleu;

typedef enum {
    TEXTMETRICS_SMOOTH_NONE = 0, /* sacrebleu smooth_method='none' */
    TEXTMETRICS_SMOOTH_EXP = 1,  /* sacrebleu smooth_method='exp' (its default) */
} textmetrics_smooth;

/* sacrebleu.corpus_bleu(hyps, [refs]) with every default: 13a, mixed case,
 * 'exp' smoothing. n >= 1. */
sl_status textmetrics_corpus_bleu(const char *const *hyps, const char *const *refs, size_t n,
                                  textmetrics_bleu *out);
/* The same with smooth_method 'none' or 'exp'. */
sl_status textmetrics_corpus_bleu_smooth(const char *const *hyps, const char *const *refs, size_t n,
                                         textmetrics_smooth smooth, textmetrics_bleu *out);
/* Several references per hypothesis: refs[r * n + i] is reference stream r's
 * segment i (sacrebleu's refs[r][i]), r < n_refs. */
sl_status textmetrics_corpus_bleu_multi(const char *const *hyps, const char *const *refs, size_t n_refs,
                                        size_t n, textmetrics_smooth smooth, textmetrics_bleu *out);
/* sacrebleu's BLEU.compute_bleu: score, precisions and bp from b's
 * sys_len, ref_len, counts and totals (sums over segments, so statistics
 * gathered in parts, say one per rank, can be added and scored once). */
sl_status textmetrics_bleu_from_stats(textmetrics_bleu *b, textmetrics_smooth smooth);

typedef struct {
    double precision, recall, f1;
} textmetrics_prf;
typedef struct {
    textmetrics_prf rouge1, rouge2, rougeL; /* mean over the n pairs of rouge-score's per-pair scores (0..1) */
} textmetrics_rouge;
/* per-pair scores, as rouge_scorer.RougeScorer(['rouge1','rouge2','rougeL'], use_stemmer=False).score(target=ref, prediction=hyp) */
sl_status textmetrics_rouge_pair(const char *hyp, const char *ref, textmetrics_rouge *out);
/* corpus: the mean of the per-pair values; n >= 1 */
sl_status textmetrics_corpus_rouge(const char *const *hyps, const char *const *refs, size_t n,
                                   textmetrics_rouge *out);

#endif
