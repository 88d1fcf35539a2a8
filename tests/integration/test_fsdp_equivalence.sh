#!/usr/bin/env bash
# FSDP correctness: the same training job at world sizes 1-4 in FULL_SHARD,
# SHARD_GRAD_OP and NO_SHARD, HYBRID at 4 (2 pretend nodes x 2), and gradient
# accumulation 2 against a doubled micro-batch, gives per-step losses and
# final parameters within 1e-5 (relative) of the world-size-1 run.
# The global batch is 12 sequences everywhere: micro_batch x grad_accum x world.
# The step line of one run at world size 2 is checked field by field (format,
# rank 0 only, values equal to metrics.jsonl's).
source "$(dirname "$0")/lib.sh"
mktmp
fortune_shards fortunes literature riddles
cat > "$TMP/run.json" <<J
{
  "model": {"arch": "llama", "n_layer": 2, "d_model": 48, "n_head": 6, "n_kv_head": 2,
            "d_ff": 80, "vocab_size": 320, "max_seq_len": 64, "tie_embeddings": false},
  "data": {"train": "$TMP/shards", "seq_len": 24},
  "train": {"steps": 20, "seed": 7, "export_final": true},
  "optim": {"lr": 3e-3, "lr_warmup": 3, "lr_min": 3e-4, "grad_clip": 0.5, "weight_decay": 0.1},
  "logging": {"tensorboard": true, "log_every": 10}
}
J
run() { # name np mode micro accum [ranks_per_node]
  local name=$1 np=$2 mode=$3 micro=$4 accum=$5 rpn=${6:-0}
  expect_exit 0 $MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/run.json" \
    --set train.run_dir="$TMP/$name" --set parallel.fsdp_mode="$mode" \
    --set train.micro_batch="$micro" --set train.grad_accum="$accum" \
    --set parallel.ranks_per_node="$rpn"
  RUNS+=("$TMP/$name")
}
RUNS=()
run ref 1 full_shard 12 1
RUNS=()
for mode in full_shard shard_grad_op no_shard; do
  run "${mode}_2" 2 "$mode" 6 1
  run "${mode}_3" 3 "$mode" 4 1
  run "${mode}_4" 4 "$mode" 3 1
done
run hybrid_4 4 hybrid 3 1 2
run accum_2 2 full_shard 3 2
# the step line (rank 0 only; no mfu on the CPU, whose peak is unknown), at
# log_every 10: its fields in format, and its numbers are metrics.jsonl's
for st in 10 20; do
  line=$(grep -E "^\[r0 [^]]*\] info: step $st/20 \|" <<< "$OUT")
  [ "$(grep -c . <<< "$line")" -eq 1 ] || fail "no single step $st/20 line from rank 0; output:
$OUT"
  grep -Eq "^\[r0 [^]]*\] info: step $st/20 \| loss [0-9]+\.[0-9]{4} \| lr [0-9]\.[0-9]{2}e[-+][0-9]{2} \| gnorm [0-9]+\.[0-9]{2} \| [0-9]+ ms \| [1-9][0-9]{0,2}(,[0-9]{3})* tok/s \| mem [0-9]+\.[0-9]{2} GiB \| comm exposed [0-9]+% \| eta [0-9hms?]+$" <<< "$line" ||
    fail "step line not in the documented format: [$line]"
  "$PYTHON" - "$TMP/accum_2/metrics.jsonl" "$st" "$line" <<'PYEOF' || fail "step $st line disagrees with metrics.jsonl: [$line]"
import json, re, sys
m = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l and json.loads(l)["step"] == int(sys.argv[2])][-1]
f = dict(re.findall(r"(loss|lr|gnorm) ([0-9.e+-]+)", sys.argv[3]))
assert f["loss"] == "%.4f" % m["loss"] and f["lr"] == "%.2e" % m["lr"] and f["gnorm"] == "%.2f" % m["gnorm"], (f, m)
tok = int(re.search(r"([0-9,]+) tok/s", sys.argv[3]).group(1).replace(",", ""))
assert abs(tok - m["tok_per_s"]) <= 1, (tok, m["tok_per_s"])
PYEOF
done
grep -Eq "^\[r1 [^]]*\] info: step " <<< "$OUT" && fail "rank 1 printed a step line; output:
$OUT"
run accum_1x4 1 full_shard 3 4
expect_exit 0 "$PYTHON" "$SRC/tests/tools/compare_runs.py" --tol 1e-5 "$TMP/ref" "${RUNS[@]}"
echo "$OUT"
# the loss fell and the TensorBoard file agrees with metrics.jsonl
expect_exit 0 "$PYTHON" "$SRC/tests/tools/tfevents_check.py" "$TMP/ref"
first=$(head -1 "$TMP/ref/metrics.jsonl" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
last=$(tail -1 "$TMP/ref/metrics.jsonl" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
"$PYTHON" -c "import sys; sys.exit(0 if $last < $first - 0.3 else 1)" || fail "loss did not fall: $first -> $last"
echo "ok: loss $first -> $last"
