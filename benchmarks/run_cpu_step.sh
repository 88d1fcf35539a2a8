#!/usr/bin/env bash
# CPU training-step throughput: shardlm bench against the PyTorch peer
# (benchmarks/peers/torch_step.py), in one run, same threads, same weights
# (shardlm writes its init as a Hugging Face folder; torch loads it), same
# synthetic tokens. Validates first: both step-0 losses must agree to 1e-4
# (relative); then prints both medians and the ratio.
#
# usage: benchmarks/run_cpu_step.sh [BUILD_DIR] [THREADS] [STEPS]
#   BUILD_DIR  default build; THREADS default nproc; STEPS default 10
# Config: configs/bench-cpu.json (llama, d_model 512, 8 layers, seq 256,
# vocab 8192, micro_batch 4). Constant LR in both so that the schedules agree.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
THREADS=${2:-$(nproc)}
STEPS=${3:-10}
WARMUP=2
PY=/usr/bin/python3
CFG=$SRC/configs/bench-cpu.json
TMP=$(mktemp -d /tmp/shardlm_bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

B=$("$BUILD/shardlm" config show --config "$CFG" | $PY -c 'import json,sys; c=json.load(sys.stdin); print(c["train"]["micro_batch"], c["data"]["seq_len"], c["train"]["seed"], c["optim"]["lr"], c["optim"]["weight_decay"], c["optim"]["beta1"], c["optim"]["beta2"], c["optim"]["eps"], c["optim"]["grad_clip"])')
read -r MB SEQ SEED LR WD B1 B2 EPS CLIP <<<"$B"

echo "== shardlm bench ($THREADS threads)"
OMP_NUM_THREADS=$THREADS "$BUILD/shardlm" bench --config "$CFG" --set optim.lr_schedule=constant \
  --set logging.level=warn --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
  --save-init "$TMP/init" | tee "$TMP/shardlm.txt"
echo "== PyTorch peer ($THREADS threads)"
OMP_NUM_THREADS=$THREADS $PY "$SRC/benchmarks/peers/torch_step.py" --hf "$TMP/init" --batch "$MB" \
  --seq "$SEQ" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" --seed "$SEED" --lr "$LR" \
  --weight-decay "$WD" --beta1 "$B1" --beta2 "$B2" --eps "$EPS" --grad-clip "$CLIP" | tee "$TMP/torch.txt"

get() { awk -v k="$1" '$1 == k {print $2}' "$2"; }
$PY - "$(get loss0 "$TMP/shardlm.txt")" "$(get loss0 "$TMP/torch.txt")" \
  "$(get median_step_s "$TMP/shardlm.txt")" "$(get median_step_s "$TMP/torch.txt")" <<'PYEOF'
import sys
l_s, l_t, t_s, t_t = map(float, sys.argv[1:])
rel = abs(l_s - l_t) / abs(l_t)
print(f"== validation: step-0 loss shardlm {l_s:.6f} torch {l_t:.6f} (rel. diff {rel:.2e})")
if rel > 1e-4:
    print("FAIL: the step-0 losses differ; the timings are not comparable")
    sys.exit(1)
print(f"== median step: shardlm {t_s:.4f} s, torch {t_t:.4f} s; torch/shardlm = {t_t / t_s:.2f}x")
PYEOF
