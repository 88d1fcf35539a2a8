#!/usr/bin/env bash
# scripts/gpu_run.sh: GPU checks and benchmarks on the GPU machine, run from
# the repository root with the bundle (scripts/gpu_bundle.sh) in ./bundle:
#
#   bash scripts/gpu_run.sh [probe] [ops] [model] [nccl] [attention] [step] [hf] [train]
#
# No stage named = all of them, in this order (the most telling first:
# correctness, then the end-to-end runs, then the benchmarks). Stages, the
# estimate of each (seconds, summed from its steps; no stage has been timed
# on a GPU yet) and its own time limit:
#   probe     15/ 40  nvidia-smi 2, torch import 8, ldd of 7 binaries 3, shardlm env 2
#   ops       20/ 60  tests/gpu test_cuda_ops: CUDA + cuBLASLt init 3, 23 op cases vs
#                     the CPU backend ~0.5 each (attention T 1024 the largest)
#   model     25/ 90  test_model_cuda (GPT-2, Llama fwd+bwd, recompute, LoRA ~12),
#                     test_decode_cuda (4 cases ~10); 2/3 and 1/3 of the limit
#   train     60/150  tests/gpu/test_train_cuda.sh: tokenizer + prepare 10; per arch
#                     200 CPU steps 5, 200 GPU steps 5 (+3 init), 2 resumed 100-step
#                     runs 6, 5 curve checks (python) 5
#   nccl      45/120  test_nccl_comm on one rank per GPU (the 2^31+5-element
#                     count's host check ~20), bench comm --backend nccl 1K..256M 10
#   hf        50/120  tests/gpu/test_hf_cuda.sh: 4 python runs (transformers import
#                     ~8 each), import + eval cpu/cuda for 2 archs 10
#   attention 50/100  bench_cuda_attention 20, torch SDPA peer (import 8, runs 20)
#   step     210/260  benchmarks/gpu_step.sh at fixed micro-batches (no --find-batch
#                     on a first run): GPT-2 124M B 8 seq 1024, 2 warmup + 5 timed
#                     steps: shardlm 15 (setup, the repeat check's second setup),
#                     torch.compile peer 65 (cold compile ~50); Llama-1B-shaped B 4
#                     seq 2048, 1 + 3 steps: shardlm 45 (1.2B-parameter init twice),
#                     peer 85
# The whole call also has a budget, GPU_RUN_BUDGET_S (default 570, under the
# device tool's 600 s per command): a stage gets min(its limit, what is left
# - 10 s) and is not started with under 30 s left (the summary says NOT RUN).
# The script prints its plan first: each stage's estimate and limit and the
# call's total against its budget.
# Device time: 15 minutes (900 s) in all, the machine's start (1-2 min) and
# idle time included, at most 10 minutes a call: two calls on one warm
# machine, the second right after the first, then give_back:
#   call 1 (correctness, estimate 165 s):
#     run  carry ["bundle"]  timeout_s 290
#          command: GPU_RUN_BUDGET_S=270 bash scripts/gpu_run.sh probe ops model train nccl
#   call 2 (end to end and speed, estimate 310 s):
#     run  carry ["bundle"]  timeout_s 420
#          command: GPU_RUN_BUDGET_S=400 bash scripts/gpu_run.sh hf attention step
#   120 (start) + 290 + 420 + transfers ~40 = 870 s at the limits; ~600 s at
#   the estimates, which leaves a rerun of the stage that failed or ran out.
# Build the bundle first, here: bash scripts/gpu_bundle.sh (bundle/, ~23 MB),
# and rehearse it: bash scripts/gpu_rehearse.sh.
# Libraries: only the bundled binaries get the bundle's library path, through
# the bundle's wrapper (BUNDLE/wrap/<binary>, scripts/bundle_run.sh);
# python, torch and the PyTorch peers keep the target's own libraries.
# Output under $OUT (or ./gpu-out): one <stage>.txt per stage run and
# summary.txt, also printed last. The device tool returns at most 8 files, so
# when more than 7 stage logs exist they are packed into logs.tar.gz beside
# summary.txt. Exit code 0 when every stage run passed (77, skipped, counts
# as passed for the tests that skip without transformers and the like).
set -uo pipefail
ROOT=$(pwd)
ALL=(probe ops model train nccl hf attention step)
declare -A LIMIT=([probe]=40 [ops]=60 [model]=90 [train]=150 [nccl]=120 [hf]=120 [attention]=100 [step]=260)
declare -A EST=([probe]=15 [ops]=20 [model]=25 [train]=60 [nccl]=45 [hf]=50 [attention]=50 [step]=210)
STAGES=("$@")
[[ ${#STAGES[@]} -eq 0 ]] && STAGES=("${ALL[@]}")
for s in "${STAGES[@]}"; do
  [[ -n ${LIMIT[$s]:-} ]] || { echo "gpu_run.sh: unknown stage '$s' (stages: ${ALL[*]})" >&2; exit 2; }
done
BUDGET=${GPU_RUN_BUDGET_S:-570}
START=$(date +%s)
B=${BUNDLE:-$ROOT/bundle}
if [[ -f $B/shardlm-gpu.tar.xz ]]; then # unpack the archive gpu_bundle.sh made
  mkdir -p /tmp/shardlm-bundle && tar -C /tmp/shardlm-bundle -xJf "$B/shardlm-gpu.tar.xz"
  B=/tmp/shardlm-bundle
fi
[[ -x $B/bin/shardlm ]] || { echo "gpu_run.sh: no bundle at $B (make one with scripts/gpu_bundle.sh)" >&2; exit 2; }
[[ -x $B/run && -e $B/wrap/shardlm ]] || { echo "gpu_run.sh: the bundle at $B has no run wrapper (an old bundle: remake it with scripts/gpu_bundle.sh)" >&2; exit 2; }
O=${OUT:-$ROOT/gpu-out}
mkdir -p "$O"
PY=${PYTHON:-python3}

# CUDA libraries: the toolkit first, then the pip wheels next to torch.
CUDA_LIBS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -e $d/libcublasLt.so.13 ]] && CUDA_LIBS="$CUDA_LIBS:$d"
done
NV=$($PY -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null || true)
if [[ -n $NV ]]; then
  for d in "$NV"/*/lib "$NV"/cu13/lib; do [[ -d $d ]] && CUDA_LIBS="$CUDA_LIBS:$d"; done
fi
# Not a library path for this script: the bundle's wrapper (run, wrap/<name>)
# puts $B/lib, then these, in front for the bundled binaries alone, with
# the relocated Open MPI's and PMIx's variables.
export SHARDLM_CUDA_LIBS=${CUDA_LIBS#:}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
X=$B/wrap # X/shardlm, X/test_cuda_ops, X/mpirun ...
# NCCL: one rank per visible GPU (NCCL refuses two ranks on one GPU); one GPU
# runs as an MPI singleton.
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true); [[ ${NGPU:-0} -ge 1 ]] || NGPU=1
LAUNCH=(); [[ $NGPU -gt 1 ]] && LAUNCH=("$X/mpirun" -np "$NGPU" --bind-to none)

# The plan: what this call runs, each stage's estimate and limit (header)
tot_est=0 tot_lim=0
echo "plan (GPU_RUN_BUDGET_S=$BUDGET):"
for s in "${STAGES[@]}"; do
  printf '  %-10s estimate %4d s, limit %4d s\n' "$s" "${EST[$s]}" "${LIMIT[$s]}"
  tot_est=$((tot_est + EST[$s])) tot_lim=$((tot_lim + LIMIT[$s]))
done
echo "  total      estimate $tot_est s, limits $tot_lim s, budget $BUDGET s$([[ $tot_est -gt $BUDGET ]] && echo ': OVER BUDGET, the last stages will not run')"

stage_probe() {
  echo "== nvidia-smi"; nvidia-smi 2>&1 | head -15
  echo "== os"; . /etc/os-release 2>/dev/null; echo "$PRETTY_NAME"; ldd --version | head -1
  echo "== libraries the target already has"
  for l in libcudart.so.13 libcublasLt.so.13 libnccl.so.2 libmpi.so.40 libhdf5_serial.so libhdf5.so libcjson.so.1 libopenblas.so.0; do
    printf '%-22s %s\n' "$l" "$(ldconfig -p | awk -v l="$l" '$1==l{print $NF; exit}')"
  done
  echo "== torch"; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1
  echo "== CUDA libraries shardlm resolves"; "$B/run" --exec ldd "$B/bin/shardlm" | grep -E 'nccl|cudart|cublasLt'
  local missing=0 b
  for b in "$B"/bin/*; do
    if "$B/run" --exec ldd "$b" | grep -q 'not found'; then
      echo "MISSING libraries for $(basename "$b"):"; "$B/run" --exec ldd "$b" | grep 'not found'; missing=1
    fi
  done
  echo "== shardlm env"; "$X/shardlm" env 2>&1 || missing=1
  return $missing
}
stage_ops() { "$X/test_cuda_ops"; }
stage_model() {
  local rc=0 rc2=0 left=$1
  echo "== test_model_cuda"
  timeout $((left * 2 / 3)) "$X/test_model_cuda" || rc=$?
  [[ $rc -eq 77 ]] && return 77 # no GPU: the decode test would skip the same way
  echo "== test_decode_cuda"
  timeout $((left / 3 - 5)) "$X/test_decode_cuda" || rc2=$?
  echo "test_model_cuda rc=$rc test_decode_cuda rc=$rc2"
  [[ $rc -eq 0 && $rc2 -eq 0 ]]
}
stage_nccl() {
  local rc=0 rc2=0 left=$1
  echo "== test_nccl_comm (np $NGPU)"
  timeout $((left * 6 / 10)) "${LAUNCH[@]}" "$X/test_nccl_comm" || rc=$?
  [[ $rc -eq 77 ]] && return 77 # no GPU: the benchmark would only fail the same way
  echo "== shardlm bench comm --backend nccl (np $NGPU)"
  timeout $((left * 3 / 10)) "${LAUNCH[@]}" "$X/shardlm" bench comm --backend nccl --sizes 1K..256M \
    --factor 16 --iters 20 --warmup 5 || rc2=$?
  echo "test_nccl_comm rc=$rc bench_comm rc=$rc2"
  [[ $rc -eq 0 && $rc2 -eq 0 ]]
}
stage_attention() {
  local rc=0 rc2=0
  "$X/bench_cuda_attention" || rc=$?
  PYTHONUNBUFFERED=1 $PY "$ROOT/benchmarks/peers/torch_attention_bench.py" || rc2=$?
  echo "bench_cuda_attention rc=$rc torch_attention_bench rc=$rc2"
  return $rc # the peer is a comparison, not a check
}
stage_step() { # rows print as they finish; raw logs appended at the end
  # fixed micro-batches (the peer's defaults) and few steps: a first run
  # spends no time searching (--find-batch is for a later session)
  local rc1=0 rc2=0 raw=/tmp/shardlm-gpu-step
  rm -rf "$raw"
  SHARDLM="$X/shardlm" PYTHON="$PY" GPU_STEP_OUT=$raw/gpt2 bash "$ROOT/benchmarks/gpu_step.sh" \
    --model gpt2 --batch 8 --warmup 2 --steps 5 || rc1=$?
  SHARDLM="$X/shardlm" PYTHON="$PY" GPU_STEP_OUT=$raw/llama1b bash "$ROOT/benchmarks/gpu_step.sh" \
    --model llama1b --batch 4 --warmup 1 --steps 3 || rc2=$?
  shopt -s nullglob
  for f in "$raw"/*/*.txt; do echo "== $f"; cat "$f"; done
  [[ $rc1 -ne 0 && $rc1 -ne 77 ]] && return $rc1
  [[ $rc2 -ne 0 && $rc2 -ne 77 ]] && return $rc2
  return $((rc1 | rc2)) # 0, or 77 when skipped
}
stage_train() { SHARDLM="$X/shardlm" SRC="$ROOT" PYTHON="$PY" bash "$ROOT/tests/gpu/test_train_cuda.sh"; }
stage_hf() { SHARDLM="$X/shardlm" SRC="$ROOT" PYTHON="$PY" bash "$ROOT/tests/gpu/test_hf_cuda.sh"; }

# what each stage's summary shows from its log
declare -A GREP=([probe]='MISSING|NVIDIA|CUDA:|^[0-9.]+\+cu' [ops]='FAIL|checks failed|skipped|passed'
  [model]='FAIL|checks failed|skipped|passed|^ok .*largest|rc=' [nccl]='FAIL|checks failed|skip|busbw|rc=|GB/s'
  [attention]='.' [step]='^\||shardlm / torch|^device:|^peak:|skipped' [train]='FAIL|dloss|skipped|^ok'
  [hf]='FAIL|ok |skipped|^ok')
declare -A HEADN=([probe]=12 [ops]=30 [model]=40 [nccl]=30 [attention]=40 [step]=20 [train]=30 [hf]=30)

fail=0
: > "$O/summary.txt"
for s in "${STAGES[@]}"; do
  left=$((BUDGET - ($(date +%s) - START) - 10))
  if [[ $left -lt 30 ]]; then
    echo "== $s: NOT RUN (budget: ${left}s left of GPU_RUN_BUDGET_S=$BUDGET)" >> "$O/summary.txt"; fail=1; continue
  fi
  lim=${LIMIT[$s]}; [[ $lim -gt $left ]] && lim=$left
  t0=$(date +%s); rc=0
  timeout -k 10 "$lim" bash -c "$(declare -f "stage_$s"); $(declare -p B X PY ROOT LAUNCH NGPU 2>/dev/null); stage_$s $lim" \
    > "$O/$s.txt" 2>&1 || rc=$?
  dt=$(( $(date +%s) - t0 ))
  what=passed; [[ $rc -eq 77 ]] && what=skipped; [[ $rc -eq 124 || $rc -eq 137 ]] && what="TIMED OUT after ${lim}s"
  [[ $rc -ne 0 && $rc -ne 77 && $rc -ne 124 && $rc -ne 137 ]] && what=FAILED
  [[ $rc -ne 0 && $rc -ne 77 ]] && fail=1
  { echo "== $s: $what (rc=$rc, ${dt}s, limit ${lim}s)"; grep -E "${GREP[$s]}" "$O/$s.txt" | head -"${HEADN[$s]}"; } \
    >> "$O/summary.txt"
done
n=$(find "$O" -maxdepth 1 -type f -name '*.txt' ! -name summary.txt | wc -l)
if [[ $n -gt 7 ]]; then # the device tool returns 8 files at most
  (cd "$O" && tar -czf logs.tar.gz $(for s in "${ALL[@]}"; do [[ -f $s.txt ]] && echo "$s.txt"; done) && \
    for s in "${ALL[@]}"; do rm -f "$s.txt"; done)
  echo "(stage logs packed into logs.tar.gz)" >> "$O/summary.txt"
fi
echo "stages: ${STAGES[*]}; $(( $(date +%s) - START ))s of GPU_RUN_BUDGET_S=$BUDGET" >> "$O/summary.txt"
cat "$O/summary.txt"
exit $fail
