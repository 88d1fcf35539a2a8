#!/usr/bin/env bash
# LoRA against full fine-tuning, same model, same synthetic tokens, one run:
# `shardlm bench --fsdp` (the real training job) with lora.enabled=false and
# =true on configs/bench-cpu.json (llama, d_model 512, 8 layers, seq 256,
# micro_batch 4). Validates first: both step-0 losses must be equal to 1e-6
# (B starts at zero, so the adapted model IS the base at step 0). Prints the
# median step time and peak memory (the accountant's peak: params, grads,
# optimizer, activations, comm) of each, and the ratios.
#
# usage: benchmarks/lora_step.sh [BUILD_DIR] [THREADS] [STEPS] [TARGETS]
#   defaults: build, nproc, 5, q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (r 16)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
THREADS=${2:-$(nproc)}
STEPS=${3:-5}
TARGETS=${4:-q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj}
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/shardlm_lorabench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

bench() { # name extra-args...
  local name=$1; shift
  OMP_NUM_THREADS=$THREADS "$BUILD/shardlm" bench --fsdp --config "$SRC/configs/bench-cpu.json" \
    --set optim.lr_schedule=constant --set logging.level=info --steps "$STEPS" --warmup 1 \
    --set train.run_dir="$TMP/$name" "$@" >"$TMP/$name.txt" 2>"$TMP/$name.err" ||
    { cat "$TMP/$name.err"; exit 1; }
  grep -h "LoRA:" "$TMP/$name.err" || true
}
echo "== full fine-tuning ($THREADS threads)"
bench full --set lora.enabled=false
cat "$TMP/full.txt"
echo "== LoRA r 16, alpha 32, targets $TARGETS ($THREADS threads)"
bench lora --set lora.enabled=true --set lora.r=16 --set lora.alpha=32 --set lora.targets="$TARGETS"
cat "$TMP/lora.txt"

get() { awk -v k="$1" '$1 == k {print $2}' "$2"; }
$PY - "$(get loss0 "$TMP/full.txt")" "$(get loss0 "$TMP/lora.txt")" \
  "$(get median_step_s "$TMP/full.txt")" "$(get median_step_s "$TMP/lora.txt")" \
  "$(get peak_mib "$TMP/full.txt")" "$(get peak_mib "$TMP/lora.txt")" <<'PYEOF'
import sys
l_f, l_l, t_f, t_l, m_f, m_l = map(float, sys.argv[1:])
rel = abs(l_f - l_l) / abs(l_f)
if rel > 1e-6:
    sys.exit(f"validation failed: step-0 loss full {l_f} vs LoRA {l_l} (relative {rel:.2e})")
print(f"validated: step-0 loss {l_f:.6f} in both (relative difference {rel:.1e})")
print(f"median step: full {t_f*1e3:.0f} ms, LoRA {t_l*1e3:.0f} ms ({t_f/t_l:.2f}x faster)")
print(f"peak memory: full {m_f:.1f} MiB, LoRA {m_l:.1f} MiB ({m_l/m_f*100:.0f}% of full)")
PYEOF
