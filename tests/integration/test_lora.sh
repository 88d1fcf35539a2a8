#!/usr/bin/env bash
# LoRA training end to end on a tiny Llama base written by a short full
# training run: world sizes 1, 2, 4 (FULL_SHARD), SHARD_GRAD_OP at 2 and
# gradient accumulation give per-step losses and final adapters within 1e-5
# (relative) of the world-size-1 run; the base fsdp is frozen (no optimizer
# or gradient memory: the LoRA step's peak memory is below full training's);
# the export is a PEFT folder; `shardlm lora merge` writes a model whose eval
# loss is below the base's; lora.init_from continues from the adapter (its
# config's r and targets win over the run's) and starts below the first run.
# With lora.dropout = 0.1 the masks are keyed by global sample, so world sizes
# 1, 2, 4, gradient accumulation and activation recomputation again agree
# within 1e-5, the losses differ from the no-dropout run's, and the export
# records lora_dropout.
source "$(dirname "$0")/lib.sh"
mktmp
fortune_shards fortunes riddles
cat > "$TMP/base.json" <<J
{
  "model": {"arch": "llama", "n_layer": 2, "d_model": 48, "n_head": 6, "n_kv_head": 2,
            "d_ff": 80, "vocab_size": 320, "max_seq_len": 64, "tie_embeddings": false},
  "data": {"train": "$TMP/shards", "seq_len": 24},
  "train": {"steps": 10, "seed": 3, "export_final": true, "micro_batch": 12, "run_dir": "$TMP/base"},
  "optim": {"lr": 3e-3, "lr_warmup": 2}
}
J
expect_exit 0 "$SHARDLM" train --config "$TMP/base.json"
BASE="$TMP/base/export"
[ -f "$BASE/config.json" ] || fail "the base run wrote no Hugging Face export"

cat > "$TMP/lora.json" <<J
{
  "model": {"init_from": "$BASE"},
  "data": {"train": "$TMP/shards", "seq_len": 24},
  "train": {"steps": 12, "seed": 7, "export_final": true},
  "optim": {"lr": 1e-2, "lr_warmup": 2, "lr_min": 1e-3, "grad_clip": 0.5, "weight_decay": 0.1},
  "lora": {"enabled": true, "r": 4, "alpha": 8, "targets": ["q_proj", "v_proj", "o_proj", "down_proj", "up_proj"]},
  "logging": {"log_every": 4}
}
J
run() { # name np mode micro accum [--set key=value ...]
  local name=$1 np=$2 mode=$3 micro=$4 accum=$5
  shift 5
  expect_exit 0 $MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/lora.json" \
    --set train.run_dir="$TMP/$name" --set parallel.fsdp_mode="$mode" \
    --set train.micro_batch="$micro" --set train.grad_accum="$accum" "$@"
  RUNS+=("$TMP/$name")
}
RUNS=()
run ref 1 full_shard 12 1
expect_out "LoRA: r 4, alpha 8"
RUNS=()
run full_2 2 full_shard 6 1
run full_4 4 full_shard 3 1
run sgo_2 2 shard_grad_op 6 1
run accum_2 2 full_shard 3 2
expect_exit 0 "$PYTHON" "$SRC/tests/tools/compare_runs.py" --tol 1e-5 \
  --file export/adapter_model.safetensors "$TMP/ref" "${RUNS[@]}"
echo "$OUT"

# adapter dropout: the same agreement across world sizes, accumulation and recomputation
DO=(--set lora.dropout=0.1)
RUNS=()
run do_ref 1 full_shard 12 1 "${DO[@]}"
expect_out "dropout 0.1"
RUNS=()
run do_full_2 2 full_shard 6 1 "${DO[@]}"
run do_full_4 4 full_shard 3 1 "${DO[@]}" --set train.recompute=true
run do_accum_2 2 full_shard 3 2 "${DO[@]}"
expect_exit 0 "$PYTHON" "$SRC/tests/tools/compare_runs.py" --tol 1e-5 \
  --file export/adapter_model.safetensors "$TMP/do_ref" "${RUNS[@]}"
echo "$OUT"
"$PYTHON" - "$TMP/ref" "$TMP/do_ref" <<'PY' || fail "lora.dropout = 0.1 did not change training or was not exported"
import json, sys
ref, do = sys.argv[1:]
loss = lambda d: [json.loads(l)["loss"] for l in open(f"{d}/metrics.jsonl") if '"loss"' in l]
a, b = loss(ref), loss(do)
# step 1 is equal (B = 0: the adapters add nothing yet), later steps differ
assert len(a) == len(b) > 2 and a[0] == b[0] and a[-1] != b[-1], (a, b)
c = json.load(open(f"{do}/export/adapter_config.json"))
assert abs(c["lora_dropout"] - 0.1) < 1e-12, c
print("ok: dropout changes the final loss", a[-1], "->", b[-1], "and is exported", c["lora_dropout"])
PY

# the PEFT folder
"$PYTHON" - "$TMP/ref/export" <<'PY' || fail "the exported adapter is not the expected PEFT folder"
import json, struct, sys
d = sys.argv[1]
c = json.load(open(f"{d}/adapter_config.json"))
assert c["peft_type"] == "LORA" and c["r"] == 4 and c["lora_alpha"] == 8 and c["fan_in_fan_out"] is False, c
raw = open(f"{d}/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
assert len(h) == 2 * 2 * 5, sorted(h)
a = h["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]
b = h["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
assert a["shape"] == [4, 48] and b["shape"] == [16, 4], (a, b)
print("ok: PEFT adapter", len(h), "tensors")
PY

# frozen base: LoRA's peak memory is below a full fine-tuning step's
mem() { "$PYTHON" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["mem_gib"])' "$1/metrics.jsonl"; }
expect_exit 0 "$SHARDLM" train --config "$TMP/lora.json" --set train.run_dir="$TMP/full" \
  --set lora.enabled=false --set train.steps=2 --set train.micro_batch=12 --set train.export_final=false
"$PYTHON" -c "import sys; sys.exit(0 if $(mem "$TMP/ref") < $(mem "$TMP/full") else 1)" ||
  fail "LoRA peak memory $(mem "$TMP/ref") GiB is not below full fine-tuning's $(mem "$TMP/full") GiB"

# merge, then eval: the merged model is better than the base on the training data
expect_exit 0 "$SHARDLM" lora merge "$BASE" "$TMP/ref/export" "$TMP/merged"
expect_exit 0 "$SHARDLM" eval --model "$TMP/merged" --data "$TMP/shards" --seq-len 24 --batch 4 --json
merged_loss=$(printf '%s' "$OUT" | "$PYTHON" -c 'import json,sys; print([json.loads(l) for l in sys.stdin if l.startswith("{")][-1]["loss"])')
expect_exit 0 "$SHARDLM" eval --model "$BASE" --data "$TMP/shards" --seq-len 24 --batch 4 --json
base_loss=$(printf '%s' "$OUT" | "$PYTHON" -c 'import json,sys; print([json.loads(l) for l in sys.stdin if l.startswith("{")][-1]["loss"])')
"$PYTHON" -c "import sys; sys.exit(0 if $merged_loss < $base_loss - 0.005 else 1)" ||
  fail "merged eval loss $merged_loss is not below the base's $base_loss"
echo "ok: eval loss base $base_loss -> merged $merged_loss"

# continue from the adapter: r and targets come from its adapter_config.json
expect_exit 0 "$SHARDLM" train --config "$TMP/lora.json" --set train.run_dir="$TMP/cont" \
  --set train.micro_batch=12 --set train.steps=1 --set lora.r=8 --set lora.targets=q_proj \
  --set lora.init_from="$TMP/ref/export"
expect_out "LoRA: r 4, alpha 8"
first() { head -1 "$1/metrics.jsonl" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["loss"])'; }
"$PYTHON" -c "import sys; sys.exit(0 if $(first "$TMP/cont") < $(first "$TMP/ref") - 0.01 else 1)" ||
  fail "continued run starts at $(first "$TMP/cont"), not below the first run's $(first "$TMP/ref")"

# errors: a target the architecture lacks; dropout outside [0, 1)
expect_exit 2 "$SHARDLM" train --config "$TMP/lora.json" --set train.run_dir="$TMP/bad" --set lora.targets=c_attn
expect_out "c_attn"
expect_exit 2 "$SHARDLM" train --config "$TMP/lora.json" --set train.run_dir="$TMP/bad" --set lora.dropout=1
expect_out "lora.dropout"
echo "ok"
