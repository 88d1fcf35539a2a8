#!/usr/bin/env bash
# scripts/gpu_run.sh: GPU checks and benchmarks on the GPU machine, run from
# the repository root with the bundle (scripts/gpu_bundle.sh) in ./bundle:
#
#   bash scripts/gpu_run.sh [probe] [ops] [model] [nccl] [attention] [step] [hf] [train]
#
# No stage named = all of them, in this order (cheapest and most telling
# first). Stages and their own timeouts (seconds):
#   probe      60  nvidia-smi, OS, which CUDA/MPI/HDF5 libraries the target
#                  has, torch, the libraries shardlm resolves, shardlm env
#   ops       150  tests/gpu test_cuda_ops (every op vs the CPU backend)
#   model     150  test_model_cuda (whole GPT-2/Llama fwd+bwd, bf16 GPU vs fp32 CPU),
#                  then test_decode_cuda (KV-cache decoding, logits and greedy
#                  tokens vs the CPU); the first gets 2/3 of the stage's time
#   nccl      200  test_nccl_comm (one rank per GPU) + shardlm bench comm --backend nccl
#   attention 150  bench_cuda_attention vs torch SDPA (benchmarks/peers/torch_attention_bench.py)
#   step      300  benchmarks/gpu_step.sh: shardlm bench --backend cuda vs the
#                  PyTorch peer (GPT-2 124M, --find-batch --max-batch 64, the
#                  batch halved for both if torch runs out of memory there;
#                  Llama-1B-shaped at micro-batch 4), one table
#   hf        240  tests/gpu/test_hf_cuda.sh (transformers models imported, eval on CUDA)
#   train     300  tests/gpu/test_train_cuda.sh (200 steps GPU vs CPU, resume across backends)
# The whole call also has a budget, GPU_RUN_BUDGET_S (default 570, under
# the device tool's 600 s per command): a stage gets min(its timeout, what
# is left - 10 s) and is not started with under 30 s left (the summary says
# NOT RUN). A session has ~15 min (900 s) of device time in all, and the
# machine's start (1-2 min) and idle time count, so split the work into two
# calls on one warm machine, the second right after the first (sized from
# the stage timeouts above; no stage has been timed on a GPU yet):
#   call 1: GPU_RUN_BUDGET_S=280 bash scripts/gpu_run.sh probe ops model nccl attention
#           (device tool run: carry ["bundle"], timeout_s 300)
#   call 2: GPU_RUN_BUDGET_S=440 bash scripts/gpu_run.sh step hf train
#           (timeout_s 460; train, the longest, goes last and may be cut:
#           its line in the summary says so, and it is the first to rerun
#           in a later session)
# Build the bundle first, here: bash scripts/gpu_bundle.sh (bundle/, ~18 MB).
# Output under $OUT (or ./gpu-out): one <stage>.txt per stage run and
# summary.txt, also printed last. The device tool returns at most 8 files, so
# when more than 7 stage logs exist they are packed into logs.tar.gz beside
# summary.txt. Exit code 0 when every stage run passed (77, skipped, counts
# as passed for the tests that skip without transformers and the like).
set -uo pipefail
ROOT=$(pwd)
ALL=(probe ops model nccl attention step hf train)
declare -A LIMIT=([probe]=60 [ops]=150 [model]=150 [nccl]=200 [attention]=150 [step]=300 [train]=300 [hf]=240)
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
export LD_LIBRARY_PATH="$B/lib${CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Open MPI relocated into the bundle (only used by multi-rank runs and the singleton init)
export OPAL_PREFIX="$B/ompi" OPAL_LIBDIR="$B/ompi/lib" OPAL_PKGLIBDIR="$B/ompi/lib/openmpi"
export OPAL_DATADIR="$B/ompi/share" OPAL_PKGDATADIR="$B/ompi/share/openmpi" OPAL_SYSCONFDIR="$B/ompi/etc"
export OMPI_MCA_mca_base_component_path="$B/ompi/lib/openmpi"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PATH="$B/ompi/bin:$PATH"
# NCCL: one rank per visible GPU (NCCL refuses two ranks on one GPU); one GPU
# runs as an MPI singleton.
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true); [[ ${NGPU:-0} -ge 1 ]] || NGPU=1
LAUNCH=(); [[ $NGPU -gt 1 ]] && LAUNCH=(mpirun -np "$NGPU" --bind-to none)

stage_probe() {
  echo "== nvidia-smi"; nvidia-smi 2>&1 | head -15
  echo "== os"; . /etc/os-release 2>/dev/null; echo "$PRETTY_NAME"; ldd --version | head -1
  echo "== libraries the target already has"
  for l in libcudart.so.13 libcublasLt.so.13 libnccl.so.2 libmpi.so.40 libhdf5_serial.so libhdf5.so libcjson.so.1 libopenblas.so.0; do
    printf '%-22s %s\n' "$l" "$(ldconfig -p | awk -v l="$l" '$1==l{print $NF; exit}')"
  done
  echo "== torch"; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1
  echo "== CUDA libraries shardlm resolves"; ldd "$B/bin/shardlm" | grep -E 'nccl|cudart|cublasLt'
  local missing=0 b
  for b in "$B"/bin/*; do
    if ldd "$b" | grep -q 'not found'; then
      echo "MISSING libraries for $(basename "$b"):"; ldd "$b" | grep 'not found'; missing=1
    fi
  done
  echo "== shardlm env"; "$B/bin/shardlm" env 2>&1 || missing=1
  return $missing
}
stage_ops() { "$B/bin/test_cuda_ops"; }
stage_model() {
  local rc=0 rc2=0 left=$1
  echo "== test_model_cuda"
  timeout $((left * 2 / 3)) "$B/bin/test_model_cuda" || rc=$?
  [[ $rc -eq 77 ]] && return 77 # no GPU: the decode test would skip the same way
  echo "== test_decode_cuda"
  timeout $((left / 3 - 5)) "$B/bin/test_decode_cuda" || rc2=$?
  echo "test_model_cuda rc=$rc test_decode_cuda rc=$rc2"
  [[ $rc -eq 0 && $rc2 -eq 0 ]]
}
stage_nccl() {
  local rc=0 rc2=0 left=$1
  echo "== test_nccl_comm (np $NGPU)"
  timeout $((left * 6 / 10)) "${LAUNCH[@]}" "$B/bin/test_nccl_comm" || rc=$?
  [[ $rc -eq 77 ]] && return 77 # no GPU: the benchmark would only fail the same way
  echo "== shardlm bench comm --backend nccl (np $NGPU)"
  timeout $((left * 3 / 10)) "${LAUNCH[@]}" "$B/bin/shardlm" bench comm --backend nccl --sizes 1K..256M \
    --factor 16 --iters 20 --warmup 5 || rc2=$?
  echo "test_nccl_comm rc=$rc bench_comm rc=$rc2"
  [[ $rc -eq 0 && $rc2 -eq 0 ]]
}
stage_attention() {
  local rc=0 rc2=0
  "$B/bin/bench_cuda_attention" || rc=$?
  PYTHONUNBUFFERED=1 $PY "$ROOT/benchmarks/peers/torch_attention_bench.py" || rc2=$?
  echo "bench_cuda_attention rc=$rc torch_attention_bench rc=$rc2"
  return $rc # the peer is a comparison, not a check
}
stage_step() { # rows print as they finish; raw logs appended at the end
  local rc1=0 rc2=0 raw=/tmp/shardlm-gpu-step
  rm -rf "$raw"
  SHARDLM="$B/bin/shardlm" PYTHON="$PY" GPU_STEP_OUT=$raw/gpt2 bash "$ROOT/benchmarks/gpu_step.sh" \
    --model gpt2 --find-batch --max-batch 64 || rc1=$?
  SHARDLM="$B/bin/shardlm" PYTHON="$PY" GPU_STEP_OUT=$raw/llama1b bash "$ROOT/benchmarks/gpu_step.sh" \
    --model llama1b --batch 4 || rc2=$?
  shopt -s nullglob
  for f in "$raw"/*/*.txt; do echo "== $f"; cat "$f"; done
  [[ $rc1 -ne 0 && $rc1 -ne 77 ]] && return $rc1
  [[ $rc2 -ne 0 && $rc2 -ne 77 ]] && return $rc2
  return $((rc1 | rc2)) # 0, or 77 when skipped
}
stage_train() { SHARDLM="$B/bin/shardlm" SRC="$ROOT" PYTHON="$PY" bash "$ROOT/tests/gpu/test_train_cuda.sh"; }
stage_hf() { SHARDLM="$B/bin/shardlm" SRC="$ROOT" PYTHON="$PY" bash "$ROOT/tests/gpu/test_hf_cuda.sh"; }

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
  timeout -k 10 "$lim" bash -c "$(declare -f "stage_$s"); $(declare -p B PY ROOT LAUNCH NGPU 2>/dev/null); stage_$s $lim" \
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
