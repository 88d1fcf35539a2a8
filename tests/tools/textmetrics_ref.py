"""Oracle side of tests/integration/test_textmetrics_oracle.sh.

  textmetrics_ref.py gen DIR     writes the test corpora (deterministic) and
                                 DIR/corpora.txt, one corpus name a line
  textmetrics_ref.py check DIR   compares DIR/<c>.ours.json (textmetrics_cli)
                                 with nltk (BLEU) and DIR/<c>.jsrouge.json
                                 (js-rouge, tests/tools/rouge_ref.js)

BLEU oracle: Debian's python3-nltk 3.8, nltk.translate.bleu_score, on tokens
from tok_13a below, a transcription of sacrebleu 2.x's Tokenizer13a
(sacrebleu/tokenizers/tokenizer_13a.py) and TokenizerRegexp
(tokenizer_re.py), applied after str.rstrip() as BLEU._preprocess_segment
does (sacrebleu/metrics/bleu.py).
- Corpora whose hypotheses all have >= 4 tokens: nltk's corpus_bleu with
  SmoothingFunction().method3 is sacrebleu's smooth_method='exp' (both are
  mteval-v13a's 1/(2^k * total) for the k-th zero count), same clipping,
  closest reference length and brevity penalty: scores compared directly.
  smooth_method='none' is nltk's method0 where every order matched; where
  one did not, sacrebleu gives exactly 0 and method0 a number below 1e-60
  (it puts sys.float_info.min in for the zero precision).
- nltk cannot score corpora with shorter hypotheses as sacrebleu does:
  modified_precision's denominator is max(1, #n-grams) per sentence, so a
  1-token hypothesis adds 1 to nltk's bigram total and 0 to sacrebleu's.
  For those (and all) corpora, the statistics are compared with nltk's
  (clipped numerators of modified_precision, n-gram counts of
  nltk.util.ngrams, closest_ref_length) and the score with sacrebleu's
  BLEU.compute_bleu transcribed below.
ROUGE oracle: npm js-rouge@3.2.3 set up as rouge-score (see rouge_ref.js).
Tolerance: 1e-9 relative (1e-12 absolute near 0) on every score.
"""
import json
import math
import os
import random
import re
import sys

# --- sacrebleu Tokenizer13a + TokenizerRegexp, transcribed -----------------
_RE13A = [
    (re.compile(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])'), r' \1 '),
    (re.compile(r'([^0-9])([\.,])'), r'\1 \2 '),
    (re.compile(r'([\.,])([^0-9])'), r' \1 \2'),
    (re.compile(r'([0-9])(-)'), r'\1 \2 '),
]


def tok_13a(sent):
    line = sent.rstrip()  # BLEU._preprocess_segment (lowercase=False)
    line = line.replace('<skipped>', '')
    line = line.replace('-\n', '')
    line = line.replace('\n', ' ')
    if '&' in line:
        line = line.replace('&quot;', '"')
        line = line.replace('&amp;', '&')
        line = line.replace('&lt;', '<')
        line = line.replace('&gt;', '>')
    line = f' {line} '
    for rx, repl in _RE13A:
        line = rx.sub(repl, line)
    return ' '.join(line.split()).split()


# --- sacrebleu BLEU.compute_bleu, transcribed (max_ngram_order=4) ---------
def my_log(x):
    return -9999999999 if x == 0.0 else math.log(x)


def compute_bleu(correct, total, sys_len, ref_len, smooth):
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * 4
    if not any(correct):
        return 0.0, precisions, bp
    smooth_mteval = 1.
    for n in range(1, 5):
        if total[n - 1] == 0:
            break
        if correct[n - 1] == 0:
            if smooth == 'exp':
                smooth_mteval *= 2
                precisions[n - 1] = 100. / (smooth_mteval * total[n - 1])
        else:
            precisions[n - 1] = 100. * correct[n - 1] / total[n - 1]
    score = bp * math.exp(sum([my_log(p) for p in precisions]) / 4)
    return score, precisions, bp


# --- the corpora ------------------------------------------------------------
WORDS = ['the', 'The', 'cat', 'sat', 'on', 'mat', 'dog', 'bit', 'man', 'It', 'was', 'not',
         'a', 'an', 'of', 'and', 'to', 'in', 'is', 'that', 'model', 'Model', 'MODEL',
         "don't", "it's", 'e.g.', 'U.S.', 'end.', 'end', 'Hello,', 'world!', '(yes)',
         '3.14', '1,000', '5-6', '2-3', 'x-ray', 'co-op', 'a/b', '$5', '100%', 'R&D',
         '&amp;', '&quot;quoted&quot;', '&lt;tag&gt;', '&amp;lt;', '<skipped>', 'café',
         'naïve', 'Über', 'über', 'straße', '日本語', 'İstanbul', '\u212a', 'ﬁne',
         'foo_bar', 'a.b,c', '...', '--', '"', "'", 'well-known', 'self-\nmade',
         '{x}', '[1]', 'a^b', '`c`', '~', 'a|b', 'c\\d', '@home', '#tag', '?!', 'x;y:z',
         'a=b+c*d', '9.', ',7', '8,', '.5']
SEPS = [' ', ' ', ' ', ' ', '  ', '\t', '\n', '\u00a0', '\u2003', ' \u001f ']


def make_text(rng, words):
    out = ''
    for i, w in enumerate(words):
        out += (rng.choice(SEPS) if i else '') + w
    return out


def mutate(rng, words):
    w = list(words)
    for _ in range(rng.randint(0, 4)):
        op = rng.random()
        if op < 0.3 and w:
            del w[rng.randrange(len(w))]
        elif op < 0.6 and w:
            w[rng.randrange(len(w))] = rng.choice(WORDS)
        elif op < 0.8:
            w.insert(rng.randint(0, len(w)), rng.choice(WORDS))
        elif len(w) > 1:
            i = rng.randrange(len(w) - 1)
            w[i], w[i + 1] = w[i + 1], w[i]
    return w


FIXED = [  # (hypothesis, reference): empty, very short and degenerate pairs
    ('', ''), ('', 'a b c'), ('a b c', ''), ('word', 'word'), ('word', 'other'),
    ('The', 'the'), ('   ', 'x'), ('/', 'w1 w2'), ('testing', 'testing one two'),
    ('testing one', 'testing one two'), ('testing two', 'testing one two'),
    ('a', 'a a a a'), ('a a a a', 'a'), ('end .', 'end.'), ('3.14 , 5', '3.14, 5'),
    ('日本語', '日本語'), ('naïve café', 'naive cafe'), ('\u212a', 'k'), ('İ', 'i'),
    ('self-\nmade', 'selfmade'), ('trailing   \n', 'trailing'), ('x\u00a0y', 'x y'),
]


def gen(d):
    rng = random.Random(14)
    pairs = list(FIXED)
    while len(pairs) < 90:
        ref = [rng.choice(WORDS) for _ in range(rng.randint(0, 24))]
        r = rng.random()
        if r < 0.15:
            hyp = [rng.choice(WORDS) for _ in range(rng.randint(0, 6))]
        elif r < 0.3:
            hyp = ref[:rng.randint(0, 3)]
        else:
            hyp = mutate(rng, ref)
        pairs.append((make_text(rng, hyp), make_text(rng, ref)))
    corpora = {'all': pairs}
    long_pairs = [p for p in pairs if len(tok_13a(p[0])) >= 4]
    corpora['long'] = long_pairs
    for i in range(0, len(long_pairs), 3):  # small corpora: zero n-gram orders
        corpora[f'long3_{i // 3}'] = long_pairs[i:i + 3]
    for i in range(12):  # one-sentence corpora
        corpora[f'long1_{i}'] = long_pairs[i:i + 1]
    for i in range(0, len(pairs), 7):  # mixed corpora with short hypotheses
        corpora[f'mix7_{i // 7}'] = pairs[i:i + 7]
    corpora['empty_hyps'] = [('', r) for _, r in pairs[:5]]
    for i in range(10):  # unrelated sentences: some unigram matches, no 4-gram
        hyp = [rng.choice(WORDS[:22]) for _ in range(rng.randint(4, 9))]
        ref = [rng.choice(WORDS[:22]) for _ in range(rng.randint(3, 12))]
        corpora[f'unrel_{i}'] = [(make_text(rng, hyp), make_text(rng, ref))]
    with open(os.path.join(d, 'corpora.txt'), 'w') as f:
        for name, ps in corpora.items():
            f.write(name + '\n')
            for k, side in ((0, 'hyps'), (1, 'refs')):
                with open(os.path.join(d, f'{name}.{side}.jsonl'), 'w', encoding='utf-8') as g:
                    for p in ps:
                        g.write(json.dumps(p[k], ensure_ascii=False) + '\n')


# --- the comparison ---------------------------------------------------------
def close(a, b, what, errors):
    if not (abs(a - b) <= 1e-9 * max(abs(a), abs(b)) or abs(a - b) <= 1e-12):
        errors.append(f'{what}: ours {a!r}, reference {b!r}')


def read_jsonl(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip('\n')]


def check(d):
    from nltk.translate.bleu_score import (SmoothingFunction, closest_ref_length,
                                           corpus_bleu, modified_precision)
    from nltk.util import ngrams
    errors = []
    seen = {'direct_nltk': 0, 'exp_smoothing_used': 0, 'short_hyp': 0, 'empty_hyp': 0,
            'nonascii': 0, 'pairs': 0}
    names = open(os.path.join(d, 'corpora.txt')).read().split()
    for name in names:
        hyps = read_jsonl(os.path.join(d, f'{name}.hyps.jsonl'))
        refs = read_jsonl(os.path.join(d, f'{name}.refs.jsonl'))
        ours = json.load(open(os.path.join(d, f'{name}.ours.json')))
        js = json.load(open(os.path.join(d, f'{name}.jsrouge.json')))
        if ours['n'] != len(hyps) or len(js) != len(hyps):
            errors.append(f'{name}: {ours["n"]} scored, {len(js)} by js-rouge, {len(hyps)} pairs')
            continue
        H = [tok_13a(h) for h in hyps]
        R = [[tok_13a(r)] for r in refs]
        # statistics from nltk's own counting
        correct, total = [0] * 4, [0] * 4
        sys_len = ref_len = 0
        for h, rs in zip(H, R):
            for n in range(1, 5):
                correct[n - 1] += modified_precision(rs, h, n).numerator
                total[n - 1] += len(list(ngrams(h, n)))
            sys_len += len(h)
            ref_len += closest_ref_length(rs, len(h))
        for key, want in (('counts', correct), ('totals', total)):
            if ours['bleu'][key] != want:
                errors.append(f'{name}: BLEU {key} {ours["bleu"][key]}, nltk {want}')
        if (ours['bleu']['sys_len'], ours['bleu']['ref_len']) != (sys_len, ref_len):
            errors.append(f'{name}: BLEU lengths {ours["bleu"]["sys_len"]}/{ours["bleu"]["ref_len"]}, '
                          f'nltk {sys_len}/{ref_len}')
        for key, smooth in (('bleu', 'exp'), ('bleu_none', 'none')):
            score, prec, bp = compute_bleu(correct, total, sys_len, ref_len, smooth)
            close(ours[key]['score'], score, f'{name}: {key} score (sacrebleu formula)', errors)
            close(ours[key]['bp'], bp, f'{name}: {key} bp', errors)
            for i in range(4):
                close(ours[key]['precisions'][i], prec[i], f'{name}: {key} precision {i + 1}', errors)
        if any(c == 0 and t > 0 for c, t in zip(correct, total)) and any(correct):
            seen['exp_smoothing_used'] += 1
        if all(len(h) >= 4 for h in H):  # nltk's corpus_bleu is sacrebleu here
            seen['direct_nltk'] += 1
            ref_exp = 100 * corpus_bleu(R, H, smoothing_function=SmoothingFunction().method3)
            close(ours['bleu']['score'], ref_exp, f'{name}: BLEU (exp) vs nltk method3', errors)
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                ref_none = 100 * corpus_bleu(R, H, smoothing_function=SmoothingFunction().method0)
            if all(correct):
                close(ours['bleu_none']['score'], ref_none, f'{name}: BLEU (none) vs nltk method0', errors)
            elif not (ours['bleu_none']['score'] == 0.0 and ref_none < 1e-60):
                errors.append(f'{name}: BLEU (none) with a zero order: ours {ours["bleu_none"]["score"]!r}, '
                              f'nltk method0 {ref_none!r}')
        # ROUGE per pair and the corpus mean
        sums = [[0.0] * 3 for _ in range(3)]
        for i, (p, j) in enumerate(zip(ours['pairs'], js)):
            for k, rk in enumerate(('rouge1', 'rouge2', 'rougeL')):
                for m, what in enumerate(('precision', 'recall', 'f1')):
                    close(p[rk][m], j[k][m], f'{name}: pair {i} {rk} {what} (hyp {hyps[i]!r}, ref {refs[i]!r})',
                          errors)
                    sums[k][m] += j[k][m]
        for k, rk in enumerate(('rouge1', 'rouge2', 'rougeL')):
            for m, what in enumerate(('precision', 'recall', 'f1')):
                close(ours['rouge'][rk][m], sums[k][m] / len(js), f'{name}: corpus {rk} {what}', errors)
        if name == 'all':
            seen['pairs'] = len(hyps)
            seen['short_hyp'] = sum(0 < len(h) < 4 for h in H)
            seen['empty_hyp'] = sum(len(h) == 0 for h in H)
            seen['nonascii'] = sum(any(ord(c) > 127 for c in h + r) for h, r in zip(hyps, refs))
    # the corpora must keep covering what the test is for
    need = {'pairs': 50, 'direct_nltk': 10, 'exp_smoothing_used': 5, 'short_hyp': 5, 'empty_hyp': 3,
            'nonascii': 5}
    for k, v in need.items():
        if seen[k] < v:
            errors.append(f'coverage: {k} = {seen[k]}, expected >= {v}')
    for e in errors[:40]:
        print('FAIL:', e)
    print(f'textmetrics oracle: {len(names)} corpora, {seen}; {len(errors)} mismatches')
    return 1 if errors else 0


if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] not in ('gen', 'check'):
        sys.exit('usage: textmetrics_ref.py gen|check DIR')
    if sys.argv[1] == 'gen':
        gen(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))
