#!/usr/bin/env bash
# data/textmetrics against outside references on ~90 generated pairs (empty,
# one-word, punctuation, HTML entities, "-\n", non-ASCII, odd whitespace) in
# ~60 corpora: corpus BLEU against Debian's python3-nltk (corpus_bleu with
# method3 = sacrebleu's 'exp' smoothing where nltk can match sacrebleu, its
# n-gram statistics everywhere), on tokens of a transcription of sacrebleu's
# 13a tokenizer; ROUGE-1/2/L per pair and corpus means against npm
# js-rouge@3.2.3 configured as rouge-score. Details: tests/tools/textmetrics_ref.py.
source "$(dirname "$0")/lib.sh"
ASSETS="$SRC/test-assets"
CLI="$BUILD/tests/textmetrics_cli"
[ -x "$CLI" ] || fail "$CLI is missing; build the tree (cmake --build)"
command -v node >/dev/null 2>&1 || fail "node is missing; run 'make setup'"
[ -f "$ASSETS/js-rouge/package.json" ] || fail "$ASSETS/js-rouge is missing; run 'make setup' (it fetches js-rouge@3.2.3 from npm)"
"$PYTHON" -c 'import nltk' 2>/dev/null || fail "python3-nltk is missing; run 'make setup'"
mktmp

"$PYTHON" "$SRC/tests/tools/textmetrics_ref.py" gen "$TMP" || fail "corpus generation failed"
n=0
while read -r c; do
  "$CLI" --hyps "$TMP/$c.hyps.jsonl" --refs "$TMP/$c.refs.jsonl" > "$TMP/$c.ours.json" ||
    fail "textmetrics_cli failed on corpus $c"
  node "$SRC/tests/tools/rouge_ref.js" "$ASSETS" "$TMP/$c.hyps.jsonl" "$TMP/$c.refs.jsonl" > "$TMP/$c.jsrouge.json" ||
    fail "js-rouge failed on corpus $c"
  n=$((n + 1))
done < "$TMP/corpora.txt"
[ "$n" -ge 20 ] || fail "only $n corpora generated"
"$PYTHON" "$SRC/tests/tools/textmetrics_ref.py" check "$TMP" || fail "textmetrics differs from nltk / js-rouge (lines above)"
echo "test_textmetrics_oracle: ok ($n corpora)"
