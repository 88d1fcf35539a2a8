#!/usr/bin/env bash
# Memory shrinks with the world (issue 11): a Llama whose sharded state
# dominates (48 layers, d_model 512, vocab 512, seq 64; ~155M parameters,
# 16 bytes each of master, grad, m, v) trains 2 steps and exports:
#   - the peak RSS of every rank (getrusage, the "peak RSS of this rank" line)
#     at world 4 is at most 0.45 x the world-1 peak, export included;
#   - with model.init_from (each rank reads only its shards' bytes) no more
#     than 1.15 x the random-init run at world 4;
#   - an export larger than export.max_shard_size is an index and several
#     files (each within the size), and `shardlm import` (then export) and
#     model.init_from (a run of 0 steps, then export) read them back
#     byte-identically.
source "$(dirname "$0")/lib.sh"
mktmp
fortune_shards fortunes literature riddles
cat > "$TMP/run.json" <<J
{
  "model": {"arch": "llama", "n_layer": 48, "d_model": 512, "n_head": 8, "n_kv_head": 8,
            "d_ff": 1376, "vocab_size": 512, "max_seq_len": 64, "tie_embeddings": false},
  "data": {"train": "$TMP/shards", "seq_len": 64},
  "train": {"steps": 2, "seed": 5, "micro_batch": 1, "grad_accum": 1, "eval_every": 0},
  "checkpoint": {"every": 0, "keep": 1},
  "logging": {"log_every": 1, "tensorboard": false}
}
J
# peak_rss NAME: the largest "peak RSS of this rank" (MiB) in $TMP/NAME.log
peak_rss() {
  local v
  v=$(sed -n 's/.*peak RSS of this rank: \([0-9.]*\) MiB.*/\1/p' "$TMP/$1.log" | sort -g | tail -1)
  [ -n "$v" ] || fail "$1: no peak RSS line; log: $(tail -5 "$TMP/$1.log")"
  echo "$v"
}
run() { # name np micro [args...]
  local name=$1 np=$2 micro=$3; shift 3
  $MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$TMP/$name" \
    --set train.micro_batch="$micro" "$@" > "$TMP/$name.log" 2>&1 ||
    fail "$name: exit $?; log: $(tail -5 "$TMP/$name.log")"
}
run w1 1 4
# the world-4 run also writes the sharded export (~620 MB of fp32 weights in
# files of at most 200 MB; streamed, so its peak counts it)
run w4 4 1 --set export.max_shard_size=200000000
run w4_init 4 1 --set model.init_from="$TMP/w1/export"
r1=$(peak_rss w1); r4=$(peak_rss w4); r4i=$(peak_rss w4_init)
echo "peak RSS per rank: world 1 $r1 MiB, world 4 $r4 MiB (random init), $r4i MiB (model.init_from)"
"$PYTHON" - "$r1" "$r4" "$r4i" <<'PY' || fail "memory did not shrink as required"
import sys
r1, r4, r4i = map(float, sys.argv[1:])
print(f"world 4 / world 1 = {r4 / r1:.3f} (at most 0.45); init_from / random = {r4i / r4:.3f} (at most 1.15)")
sys.exit(0 if r4 <= 0.45 * r1 and r4i <= 1.15 * r4 else 1)
PY
[ -f "$TMP/w4/export/model.safetensors.index.json" ] || fail "no index in $TMP/w4/export: $(ls "$TMP/w4/export")"
[ ! -e "$TMP/w4/export/model.safetensors" ] || fail "a single-file model.safetensors beside the index"
expect_exit 0 "$SHARDLM" import "$TMP/w4/export" "$TMP/imported"
expect_exit 0 "$SHARDLM" export "$TMP/imported" "$TMP/reexported"
expect_exit 0 "$PYTHON" "$SRC/tests/tools/hf_compare.py" "$TMP/w4/export" "$TMP/reexported" \
  --expect-shards 4 --max-bytes 200000000
echo "$OUT"
run back 2 2 --set train.steps=0 --set model.init_from="$TMP/w4/export" --set export.max_shard_size=0
expect_exit 0 "$PYTHON" "$SRC/tests/tools/hf_compare.py" "$TMP/w4/export" "$TMP/back/export"
echo "$OUT"
