#!/usr/bin/env bash
# tests/gpu/test_train_cuda.sh: 200 training steps on the GPU (train.backend
# = cuda, train.dtype = bf16) follow the CPU run's (fp32) loss curve, and
# checkpoints cross backends both ways.
#
# Data: a tokenizer (vocab 512) trained on the repository's own text
# (README.md, headers and sources: nothing to download) and shards from
# shardlm prepare. Models: a tiny GPT-2 (tied embeddings) and a tiny Llama
# (GQA, untied head), same config and seed on both backends, one process.
# Tolerances (bf16 activations and gathered weights, fp32 master, grads and
# AdamW state; not yet calibrated on a GPU, the measured values are printed).
# Error model (tests/gpu/support/gpu_util.h): the same fp32 weights give
# logits with K = 30 bf16 roundings, relative error by norm U_BF16
# sqrt(K / 3) = 1.2e-2; a token's loss moves by about that times z_rms
# (p - onehot against the logit errors); over the B T = 512 tokens of a step,
# independent, the mean loss moves by 1.2e-2 z_rms / sqrt(512) = 5.4e-4
# z_rms: with z_rms <= 9 (vocab 512 after 100 steps) and the margin 4, 0.02
# (step 101, same weights). Later steps add the trajectories' divergence
# (gradients differ by tol_bf16(60) = 7e-2 by norm each step, AdamW
# normalizes them), which no rounding count bounds: the curve tolerances
# allow 2.5x (mean) and 7.5x (any step) the same-weights bound, the spread
# of a run's loss between neighbouring steps at this batch; they are the
# first to calibrate on a GPU:
#   loss curves:  mean |loss_gpu - loss_cpu| over the last 50 steps < 0.05,
#                 and < 0.15 at every step; both fall by > 1.0 over the run
#   resume:       a CUDA checkpoint (step 100) resumed on the CPU, and a CPU
#                 checkpoint resumed on CUDA, run steps 101..200 whose mean
#                 |dloss| against the uninterrupted run of the resuming
#                 backend over the last 50 steps is < 0.05; step 101 (same
#                 fp32 weights, only the arithmetic differs) within 0.02
# Skips (exit 77) when shardlm reports no CUDA device. SHARDLM_TEST_GPU_AS_CPU=1
# runs the "GPU" side on the CPU instead (checks this script on a machine
# without a GPU; every difference is then zero).
source "$(dirname "$0")/../integration/lib.sh"
PY=${PYTHON:-python3}
if [ "${SHARDLM_TEST_GPU_AS_CPU:-0}" = 1 ]; then
  GPU_SET=(--set train.backend=cpu --set train.dtype=fp32)
  GPU_BACKEND=cpu
else
  ENV_OUT=$("$SHARDLM" env 2>&1) # a variable, not a pipe: grep -q under pipefail
  if ! grep -Eq 'CUDA: on .*; [1-9][0-9]* device' <<< "$ENV_OUT"; then
    echo "skipped: no CUDA device ($(grep 'CUDA:' <<< "$ENV_OUT"))"
    exit 77
  fi
  GPU_SET=(--set train.backend=cuda --set train.dtype=bf16)
  GPU_BACKEND=cuda
fi
CPU_SET=(--set train.backend=cpu --set train.dtype=fp32)
mktmp
cat "$SRC/README.md" "$SRC"/*/*.h "$SRC"/model/*.c "$SRC"/parallel/*.c > "$TMP/corpus.txt"
expect_exit 0 "$SHARDLM" tokenizer train --vocab-size 512 --input "$TMP/corpus.txt" \
  --output "$TMP/tok.json" --special '<|endoftext|>'
expect_exit 0 "$SHARDLM" prepare --input "$TMP/corpus.txt" --output "$TMP/shards" \
  --tokenizer "$TMP/tok.json" --set prepare.dedup_near=false

# curves.py A B FROM TO MEAN_TOL MAX_TOL [FIRST_TOL]: compares the losses of
# metrics.jsonl of run dirs A and B on steps FROM..TO.
cat > "$TMP/curves.py" <<'PY'
import json, sys
def losses(d):
    out = {}
    for line in open(d + "/metrics.jsonl"):
        r = json.loads(line)
        if "loss" in r:
            out[r["step"]] = r["loss"]
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
lo, hi, mean_tol, max_tol = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
steps = list(range(lo, hi + 1))
missing = [s for s in steps if s not in a or s not in b]
if missing:
    sys.exit(f"steps {missing[:5]}... missing in {sys.argv[1]} or {sys.argv[2]}")
d = [abs(a[s] - b[s]) for s in steps]
last = d[-50:]
mean_last, worst = sum(last) / len(last), max(d)
worst_step = steps[d.index(worst)]
print(f"{sys.argv[1]} vs {sys.argv[2]} steps {lo}..{hi}: mean |dloss| last 50 {mean_last:.4f} "
      f"(tol {mean_tol}), max {worst:.4f} at step {worst_step} (tol {max_tol}); "
      f"loss {a[lo]:.4f} -> {a[hi]:.4f} vs {b[lo]:.4f} -> {b[hi]:.4f}")
ok = mean_last < mean_tol and worst < max_tol
if len(sys.argv) > 7:
    first = abs(a[lo] - b[lo])
    print(f"  step {lo}: |dloss| {first:.4f} (tol {sys.argv[7]})")
    ok = ok and first < float(sys.argv[7])
sys.exit(0 if ok else 1)
PY
fell() { # fell RUN: the loss fell by more than 1.0
  "$PY" - "$1" <<'PY' || fail "loss did not fall by 1.0 in $1"
import json, sys
l = [json.loads(x)["loss"] for x in open(sys.argv[1] + "/metrics.jsonl") if '"loss"' in x]
print(f"{sys.argv[1]}: loss {l[0]:.4f} -> {l[-1]:.4f}")
sys.exit(0 if l[0] - l[-1] > 1.0 else 1)
PY
}

# cross_resume RUN FROM SAME SET...: RUN (with the settings SET) resumes
# FROM's step-100 checkpoint of $arch; its steps 101-200 follow SAME (the run
# on RUN's backend) and, with the first step close, FROM.
cross_resume() {
  local run=$1 from=$2 same=$3
  shift 3
  expect_exit 0 "$SHARDLM" train --config "$TMP/$arch.json" --set train.run_dir="$run" "$@" \
    --resume "$from/checkpoints/step_00000100"
  expect_out "resumed from"
  expect_exit 0 "$PY" "$TMP/curves.py" "$run" "$same" 101 200 0.05 0.15
  echo "$arch: $OUT"
  expect_exit 0 "$PY" "$TMP/curves.py" "$run" "$from" 101 200 0.05 0.15 0.02
  echo "$arch: $OUT"
}

for arch in gpt2 llama; do
  if [ $arch = gpt2 ]; then
    MODEL='"arch": "gpt2", "n_layer": 2, "d_model": 128, "n_head": 2, "vocab_size": 512, "max_seq_len": 128, "tie_embeddings": true'
  else
    MODEL='"arch": "llama", "n_layer": 2, "d_model": 128, "n_head": 2, "n_kv_head": 1, "d_ff": 352, "vocab_size": 512, "max_seq_len": 128, "tie_embeddings": false'
  fi
  cat > "$TMP/$arch.json" <<J
{
  "model": {$MODEL},
  "data": {"train": "$TMP/shards", "seq_len": 64},
  "train": {"steps": 200, "micro_batch": 8, "seed": 11, "export_final": false},
  "optim": {"lr": 3e-3, "lr_warmup": 10, "lr_min": 3e-4, "grad_clip": 1.0, "weight_decay": 0.1},
  "checkpoint": {"every": 100, "keep": 2},
  "logging": {"log_every": 50}
}
J
  R=$TMP/$arch
  expect_exit 0 "$SHARDLM" train --config "$TMP/$arch.json" --set train.run_dir="$R.cpu" "${CPU_SET[@]}"
  expect_exit 0 "$SHARDLM" train --config "$TMP/$arch.json" --set train.run_dir="$R.gpu" "${GPU_SET[@]}"
  expect_out "backend $GPU_BACKEND"
  fell "$R.cpu"
  fell "$R.gpu"
  expect_exit 0 "$PY" "$TMP/curves.py" "$R.gpu" "$R.cpu" 1 200 0.05 0.15
  echo "$arch: $OUT"
  # a CUDA checkpoint continues on the CPU, a CPU checkpoint on CUDA
  cross_resume "$R.gpu2cpu" "$R.gpu" "$R.cpu" "${CPU_SET[@]}"
  cross_resume "$R.cpu2gpu" "$R.cpu" "$R.gpu" "${GPU_SET[@]}"
done
echo ok
