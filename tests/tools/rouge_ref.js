// ROUGE-1/2/L reference for test_textmetrics_oracle.sh, from npm
// js-rouge@3.2.3 (test-assets/js-rouge, fetched by `make setup`):
//
//   node rouge_ref.js ASSETS HYPS.jsonl REFS.jsonl   -> JSON [[r1, r2, rL], ...]
//
// each entry [precision, recall, f1], js-rouge's n()/l() scores of one pair.
// js-rouge is configured as Google's rouge-score (rouge/rouge_scorer.py,
// DefaultTokenizer, use_stemmer=False) scores:
// - tokenizer: rouge/tokenize.py, transcribed: text.lower(), runs of
//   [^a-z0-9] become one space, split on whitespace, keep ^[a-z0-9]+$ tokens.
// - ROUGE-L: segmenter s => [s], so the whole text is one sentence and
//   js-rouge's summary-level LCS is rouge-score's sentence-level rougeL.
// - precision = the score with beta 0, recall = with beta Infinity, f1 =
//   beta 1 (js-rouge's fMeasure: beta 0 returns p, Infinity returns r).
// js-rouge refuses whitespace-only strings (RangeError); rouge-score gives
// 0 for every score there (rouge_scorer_test.py testRougeEmpty), and so do
// we: those pairs are [0, 0, 0] here without calling js-rouge.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const [assets, hypsFile, refsFile] = process.argv.slice(2);
const rouge = require(path.join(assets, 'js-rouge'));

const readJsonl = (f) =>
  fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));

// rouge/tokenize.py (use_stemmer=False)
function tokenize(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .split(/\s+/)
    .filter((x) => /^[a-z0-9]+$/.test(x));
}

const whitespaceOnly = /^[\s\u0085]*$/;

function prf(score, cand, ref) {
  if (whitespaceOnly.test(cand) || whitespaceOnly.test(ref)) return [0, 0, 0];
  return [score(cand, ref, 0), score(cand, ref, Number.POSITIVE_INFINITY), score(cand, ref, 1)];
}

const hyps = readJsonl(hypsFile);
const refs = readJsonl(refsFile);
if (hyps.length !== refs.length) throw new Error(`${hyps.length} hypotheses but ${refs.length} references`);
const out = hyps.map((h, i) => {
  const r = refs[i];
  const nOpts = (n, beta) => ({ n, beta, caseSensitive: true, tokenizer: tokenize });
  const lOpts = (beta) => ({ beta, caseSensitive: true, tokenizer: tokenize, segmenter: (s) => [s] });
  return [
    prf((c, x, b) => rouge.n(c, x, nOpts(1, b)), h, r),
    prf((c, x, b) => rouge.n(c, x, nOpts(2, b)), h, r),
    prf((c, x, b) => rouge.l(c, x, lOpts(b)), h, r),
  ];
});
process.stdout.write(JSON.stringify(out) + '\n');
