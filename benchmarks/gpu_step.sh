#!/usr/bin/env bash
# benchmarks/gpu_step.sh: one GPU training step, shardlm against PyTorch, in
# one invocation on the same device, model and micro-batch, one table.
#
#   bash benchmarks/gpu_step.sh [--model gpt2|llama1b|all] [--batch B] [--find-batch [--max-batch N]]
#                               [--steps N] [--warmup W] [--peak TFLOPS] [--no-compile]
#
# Models: GPT-2 124M at seq 1024 (configs/gpt2-124m.json) and a
# Llama-3.2-1B-shaped model at seq 2048 (configs/llama-1b.json: 16 layers,
# d 2048, 32 heads / 8 kv, ff 8192, vocab 128256, tied embeddings);
# benchmarks/peers/torch_gpu_bench.py builds the same shapes in PyTorch (bf16
# autocast, fused AdamW, SDPA flash, torch.compile). Default micro-batches:
# gpt2 8, llama1b 4 (the peer's); --batch B sets both; --find-batch lets
# `shardlm bench --find-batch` pick the largest power of two that fits for
# shardlm (doubling from 1, up to --max-batch) and runs the peer at that
# batch too; when the peer runs out of memory there, both rerun at half the
# batch (twice at most), so the rows compare one batch that fits both. shardlm runs with --backend cuda (bf16, validated: step-0 loss near
# ln V, steps 0-1 bitwise equal to a second run). The peer gets shardlm's
# peak (datasheet table or --peak) so both MFU columns share one denominator
# and one FLOP count (6 N + 6 L T C). Both time each step between device
# synchronizations on the host clock. Memory: shardlm's accountant peak vs
# torch.cuda.max_memory_allocated, and the device memory in use at the end
# (cudaMemGetInfo / torch.cuda.mem_get_info) for both.
#
# Environment: SHARDLM (default build/shardlm), PYTHON (python3), GPU_STEP_OUT
# (folder for the raw logs; default a temporary one). Rows are printed as each
# run ends, so a run cut short by a timeout still shows the finished rows.
# Exit code: 0 when every run succeeded, 1 otherwise; 77 without a GPU.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
SHARDLM=${SHARDLM:-$SRC/build/shardlm}
PY=${PYTHON:-python3}
MODELS=(gpt2 llama1b) BATCH="" FIND=0 MAXB="" STEPS=10 WARMUP=3 PEAK="" NOCOMPILE=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) [[ $2 == all ]] && MODELS=(gpt2 llama1b) || MODELS=("$2"); shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --find-batch) FIND=1; shift ;;
    --max-batch) MAXB=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --peak) PEAK=$2; shift 2 ;;
    --no-compile) NOCOMPILE=(--no-compile); shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu_step.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
O=${GPU_STEP_OUT:-$(mktemp -d /tmp/shardlm_gpu_step.XXXXXX)}
mkdir -p "$O"
ENV_OUT=$("$SHARDLM" env 2>&1)
if ! grep -Eq 'CUDA: on .*; [1-9][0-9]* device' <<< "$ENV_OUT"; then
  echo "skipped: shardlm sees no CUDA device ($(grep 'CUDA:' <<< "$ENV_OUT"))"
  exit 77
fi

key() { awk -v k="$1" '$1 == k {print $2; exit}' "$2"; }       # "key value" lines of shardlm
res() { grep '^result ' "$2" | tail -1 | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; } # peer
gib() { [[ -n $1 && $1 != n/a ]] && awk -v m="$1" 'BEGIN {printf "%.2f", m / 1024}' || echo "-"; }

rc=0 RATIOS=()
# run_shardlm MODEL CFG B FIND -> $O/shardlm_MODEL.txt, sets S_RC and B (the batch found)
run_shardlm() {
  local args=(bench --config "$2" --backend cuda --set train.micro_batch="$3" --set logging.level=warn
              --steps "$STEPS" --warmup "$WARMUP")
  [[ $4 == 1 ]] && args+=(--find-batch) && [[ -n $MAXB ]] && args+=(--max-batch "$MAXB")
  [[ -n $PEAK ]] && args+=(--peak "$PEAK")
  S_RC=0; "$SHARDLM" "${args[@]}" > "$O/shardlm_$1.txt" 2>&1 || S_RC=$?
  B=$3
  if [[ $4 == 1 ]]; then
    local fb; fb=$(awk '/^find_batch result/ {print $4}' "$O/shardlm_$1.txt"); [[ -n $fb ]] && B=$fb
  fi
}
# run_torch MODEL B PEAK -> $O/torch_MODEL.txt, sets P_RC
run_torch() {
  P_RC=0; PYTHONUNBUFFERED=1 $PY "$SRC/benchmarks/peers/torch_gpu_bench.py" --model "$1" --batch "$2" \
    --steps "$STEPS" --warmup "$WARMUP" --peak "$3" "${NOCOMPILE[@]}" > "$O/torch_$1.txt" 2>&1 || P_RC=$?
}
echo "| model | micro-batch x seq | impl | median step ms | tokens/s | MFU % | peak alloc GiB | device used GiB | step-0 loss (ln V) |"
echo "|---|---|---|---|---|---|---|---|---|"
for m in "${MODELS[@]}"; do
  case $m in
    gpt2) CFG=$SRC/configs/gpt2-124m.json B0=${BATCH:-8} ;;
    llama1b) CFG=$SRC/configs/llama-1b.json B0=${BATCH:-4} ;;
    *) echo "gpu_step.sh: unknown model $m (gpt2, llama1b)" >&2; exit 2 ;;
  esac
  run_shardlm "$m" "$CFG" "$B0" "$FIND"
  f=$O/shardlm_$m.txt g=$O/torch_$m.txt
  P=$PEAK
  [[ -z $P ]] && P=$(key peak_tflops "$f")
  [[ -z $P || $P == n/a ]] && P=989  # the peer's default; the shardlm row says the device is unknown
  run_torch "$m" "$B" "$P"
  # --find-batch: a batch that fits shardlm may not fit torch; halve both (twice at most)
  for retry in 1 2; do
    [[ $FIND == 1 && $(res status "$g") == oom && $B -gt 1 ]] || break
    echo "| $m | $B | torch | out of memory at micro-batch $B: both rerun at $((B / 2)) | | | | | |"
    run_shardlm "$m" "$CFG" $((B / 2)) 0
    run_torch "$m" "$B" "$P"
  done
  T=$(sed -n 's/.* x seq \([0-9]*\) x accum.*/\1/p' "$f" | head -1)
  if [[ $S_RC -eq 0 ]]; then
    step_ms=$(awk -v s="$(key median_step_s "$f")" 'BEGIN {printf "%.1f", 1000 * s}')
    echo "| $m | $B x $T | shardlm | $step_ms | $(key tokens_per_s "$f") | $(key mfu_pct "$f") |" \
         "$(gib "$(key peak_mib "$f")") | $(gib "$(key device_used_mib "$f")") |" \
         "$(key loss0 "$f") ($(key loss0_ln_v "$f")) |"
  else
    rc=1
    echo "| $m | $B x ${T:-?} | shardlm | FAILED rc=$S_RC: $(grep -m1 -E 'error|FAIL' "$f" | cut -c1-160) | | | | | |"
  fi
  if [[ $P_RC -eq 0 ]]; then
    echo "| $m | $B x $(res T "$g") | torch${NOCOMPILE:+ (eager)} | $(res step_ms "$g") | $(res tok_s "$g") |" \
         "$(res mfu_pct "$g") | $(res peak_alloc_gib "$g") | $(res device_used_gib "$g") |" \
         "$(res loss0 "$g") ($(res ln_v "$g")) |"
  else
    rc=1
    why=$(res status "$g"); [[ -z $why ]] && why=$(tail -1 "$g" | cut -c1-160)
    echo "| $m | $B | torch | FAILED rc=$P_RC: $why | | | | | |"
  fi
  s_tok=$(key tokens_per_s "$f"); t_tok=$(res tok_s "$g")
  if [[ $S_RC -eq 0 && $P_RC -eq 0 && -n $s_tok && -n $t_tok ]]; then
    RATIOS+=("$m: shardlm / torch tokens/s = $(awk -v a="$s_tok" -v b="$t_tok" 'BEGIN {printf "%.2f", a / b}')")
  fi
done
echo
for r in "${RATIOS[@]}"; do echo "$r"; done
echo "device: $(grep -m1 '^device ' "$O/shardlm_${MODELS[0]}.txt" 2>/dev/null | cut -c8-)"
echo "peak: $(grep -m1 '^peak_tflops' "$O/shardlm_${MODELS[0]}.txt" 2>/dev/null | cut -c13-)"
echo "raw logs: $O"
exit $rc
