#!/usr/bin/env bash
# The memory plan against the accountant (issue 11, point 1).
# 1. Per-rank accountant peaks of params, grads and optimizer state (bench's
#    peak_bytes_<category>) equal exactly what the layout predicts, computed
#    here independently in Python from the architecture: unit sizes N_u,
#    L_u = ceil(N_u / k), 4 bytes x L_u (fp32 master; the CPU computes in
#    fp32, so it is the gathered copy too), 4 x L_u of gradient shard,
#    8 x L_u of Adam m and v; k = the shard group (world, 1 for NO_SHARD,
#    ranks per node for HYBRID), at world 1, 2 and 4 in every FSDP mode.
# 2. `shardlm plan`'s per-rank prediction is within 5% of the measured
#    accountant peak (peak_bytes_total) for three configs (gpt2 tied, llama
#    GQA untied, llama LoRA with dropout) x world 1/2/4 x recomputation
#    on/off, and every category agrees too.
source "$(dirname "$0")/lib.sh"
mktmp
export OMP_NUM_THREADS=1
cat > "$TMP/gpt2.json" <<'J'
{"model": {"arch": "gpt2", "n_layer": 3, "d_model": 128, "n_head": 4, "vocab_size": 2048,
           "max_seq_len": 128, "tie_embeddings": true},
 "data": {"seq_len": 64}, "train": {"micro_batch": 2, "grad_accum": 2}}
J
cat > "$TMP/llama.json" <<'J'
{"model": {"arch": "llama", "n_layer": 4, "d_model": 192, "n_head": 6, "n_kv_head": 2, "d_ff": 512,
           "vocab_size": 3000, "max_seq_len": 128, "tie_embeddings": false},
 "data": {"seq_len": 48}, "train": {"micro_batch": 2, "grad_accum": 2}}
J
cat > "$TMP/lora.json" <<'J'
{"model": {"arch": "llama", "n_layer": 4, "d_model": 192, "n_head": 6, "n_kv_head": 2, "d_ff": 512,
           "vocab_size": 3000, "max_seq_len": 128, "tie_embeddings": false},
 "lora": {"enabled": true, "r": 8, "alpha": 16, "dropout": 0.1, "targets": ["q_proj", "v_proj", "down_proj"]},
 "data": {"seq_len": 48}, "train": {"micro_batch": 2, "grad_accum": 2}}
J
# run NAME CONFIG NP MODE RECOMPUTE: bench's and plan's outputs into $TMP/NAME.{bench,plan}
run() {
  local name=$1 cfg=$2 np=$3 mode=$4 rec=$5 rpn=0 nodes=1 per=$3
  if [ "$mode" = hybrid ] && [ "$np" -gt 1 ]; then rpn=2; per=2; nodes=$((np / 2)); fi
  local sets=(--set parallel.fsdp_mode="$mode" --set train.recompute="$rec")
  expect_exit 0 $MPIRUN -np "$np" "$SHARDLM" bench --config "$TMP/$cfg.json" --steps 1 --warmup 0 \
    --no-repeat-check --threads 1 --set parallel.ranks_per_node="$rpn" "${sets[@]}"
  echo "$OUT" > "$TMP/$name.bench"
  expect_exit 0 "$SHARDLM" plan --config "$TMP/$cfg.json" --gpu cpu --nodes "$nodes" --gpus-per-node "$per" \
    "${sets[@]}"
  echo "$OUT" > "$TMP/$name.plan"
  echo "$name $cfg $np $mode $rec $per" >> "$TMP/runs.txt"
}
for np in 1 2 4; do
  for mode in full_shard shard_grad_op no_shard hybrid; do
    [ "$np" = 1 ] && [ "$mode" != full_shard ] && continue
    run "gpt2_${np}_${mode}_false" gpt2 "$np" "$mode" false
  done
  run "gpt2_${np}_full_shard_true" gpt2 "$np" full_shard true
  for cfg in llama lora; do
    for rec in false true; do run "${cfg}_${np}_full_shard_${rec}" "$cfg" "$np" full_shard "$rec"; done
  done
done
"$PYTHON" - "$TMP" <<'PY' || exit 1
import json, math, re, sys
tmp = sys.argv[1]

def units(m):
    """N_u of each FSDP unit, from the architecture alone (DESIGN section 5)."""
    L, C, V, T = m["n_layer"], m["d_model"], m["vocab_size"], m["max_seq_len"]
    H = m["n_head"]; D = C // H; kv = m.get("n_kv_head", H) * D
    if m["arch"] == "gpt2":
        F = m.get("d_ff", 4 * C)
        emb = V * C + T * C
        block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (F * C + F) + (C * F + C)
        fin = 2 * C
    else:
        F = m["d_ff"]
        emb = V * C
        block = C + C * C + 2 * kv * C + C * C + C + 3 * F * C
        fin = C
    if not m["tie_embeddings"]:
        fin += V * C
    return [emb] + [block] * L + [fin]

def kv_lines(path):
    out = {}
    for line in open(path):
        mt = re.match(r"^peak_bytes_(\w+) (\d+)$", line.strip())
        if mt:
            out[mt.group(1)] = int(mt.group(2))
    return out

def plan_lines(path):
    out = {}
    for line in open(path):
        mt = re.match(r"^  (\w+)\s+[-\d.]+ (?:GiB|MiB)\s+(\d+) bytes", line)
        if mt:
            out[mt.group(1)] = int(mt.group(2))
    return out

bad, checked = [], 0
for row in open(f"{tmp}/runs.txt"):
    name, cfg, np_, mode, rec, per = row.split()
    np_, per = int(np_), int(per)
    m = json.load(open(f"{tmp}/{cfg}.json"))["model"]
    got = kv_lines(f"{tmp}/{name}.bench")
    plan = plan_lines(f"{tmp}/{name}.plan")
    k = {"no_shard": 1, "hybrid": per}.get(mode, np_)
    shard = sum(max(1, math.ceil(n / k)) for n in units(m))
    if cfg != "lora":  # full fine-tuning: every parameter trains
        want = {"params": 4 * shard, "grads": 4 * shard, "optimizer": 8 * shard}
    else:  # frozen base: its fp32 shard only (the adapters add theirs: checked against the plan)
        want = {}
        if got["params"] < 4 * shard:
            bad.append(f"{name}: params {got['params']} < the frozen base's shard {4 * shard}")
    for cat, w in want.items():
        checked += 1
        if got.get(cat) != w:
            bad.append(f"{name}: accountant peak {cat} = {got.get(cat)}, layout predicts {w} "
                       f"(4/4/8 bytes x {shard} padded elements / world)")
    for cat in ("params", "grads", "optimizer", "gathered", "activations", "comm"):
        if plan.get(cat, 0) != got.get(cat):
            bad.append(f"{name}: plan {cat} {plan.get(cat)} != accountant {got.get(cat)}")
    total, pred = got["total"], plan["accountant"]
    err = abs(pred - total) / total
    print(f"{name:28s} accountant {total:>10d}  plan {pred:>10d}  ({100 * err:.3f}%)  params {got['params']}")
    if err > 0.05:
        bad.append(f"{name}: plan total {pred} is {100 * err:.2f}% off the accountant's peak {total}")
print(f"{checked} exact shard checks, {sum(1 for _ in open(f'{tmp}/runs.txt'))} runs")
if bad:
    print("FAIL:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
echo "test_memory_plan: ok"
