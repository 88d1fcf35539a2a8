#!/usr/bin/env bash
# scripts/gpu_run.sh: run on the GPU machine from the repository root, with the
# bundle (scripts/gpu_bundle.sh) in ./bundle. One command for the device tool:
#   bash scripts/gpu_run.sh            (results under $OUT, or ./gpu-out)
# Steps: probe the target (GPU, driver, which CUDA/MPI/HDF5 libraries exist),
# find the CUDA libraries the bundle does not carry, check that every bundled
# binary resolves all its libraries, then run tests/gpu (test_cuda_ops, and
# test_nccl_comm at one rank per visible GPU), `shardlm bench comm --backend
# nccl`, the attention benchmark against torch SDPA, and the PyTorch
# training-step peer. Writes probe.txt, tests.txt, nccl.txt, bench_comm.txt,
# attention.txt, torch_step.txt and summary.txt; tests/gpu also gives
# model.txt (test_model_cuda), train.txt (test_train_cuda.sh), hf.txt
# (test_hf_cuda.sh).
set -uo pipefail
ROOT=$(pwd)
B=${BUNDLE:-$ROOT/bundle}
if [[ -f $B/shardlm-gpu.tar.xz ]]; then # unpack the archive gpu_bundle.sh made
  mkdir -p /tmp/shardlm-bundle && tar -C /tmp/shardlm-bundle -xJf "$B/shardlm-gpu.tar.xz"
  B=/tmp/shardlm-bundle
fi
O=${OUT:-$ROOT/gpu-out}
mkdir -p "$O"
PY=${PYTHON:-python3}

{
  echo "== nvidia-smi"; nvidia-smi 2>&1 | head -15
  echo "== os"; . /etc/os-release 2>/dev/null; echo "$PRETTY_NAME"; ldd --version | head -1
  echo "== libraries the target already has"
  for l in libcudart.so.13 libcublasLt.so.13 libnccl.so.2 libmpi.so.40 libhdf5_serial.so libhdf5.so libcjson.so.1 libopenblas.so.0; do
    printf '%-22s %s\n' "$l" "$(ldconfig -p | awk -v l="$l" '$1==l{print $NF; exit}')"
  done
  echo "== torch"; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1
} > "$O/probe.txt" 2>&1
cat "$O/probe.txt"

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

{ echo "== CUDA libraries shardlm resolves"; ldd "$B/bin/shardlm" | grep -E 'nccl|cudart|cublasLt'; } \
  | tee -a "$O/probe.txt"
missing=0
for b in "$B"/bin/*; do
  if ldd "$b" | grep -q 'not found'; then
    echo "MISSING libraries for $(basename "$b"):"; ldd "$b" | grep 'not found'; missing=1
  fi
done | tee -a "$O/probe.txt"

rc_env=0; "$B/bin/shardlm" env > "$O/env.txt" 2>&1 || rc_env=$?
rc_t=0; "$B/bin/test_cuda_ops" > "$O/tests.txt" 2>&1 || rc_t=$?
# the whole model on the GPU vs the CPU; 200 training steps and checkpoints
# across backends; Hugging Face models (transformers) vs shardlm on CUDA.
# The scripts run from this checkout with the bundled binary.
rc_m=0; "$B/bin/test_model_cuda" > "$O/model.txt" 2>&1 || rc_m=$?
rc_tr=0; SHARDLM="$B/bin/shardlm" SRC="$ROOT" PYTHON="$PY" timeout 900 bash "$ROOT/tests/gpu/test_train_cuda.sh" \
  > "$O/train.txt" 2>&1 || rc_tr=$?
rc_hf=0; SHARDLM="$B/bin/shardlm" SRC="$ROOT" PYTHON="$PY" timeout 600 bash "$ROOT/tests/gpu/test_hf_cuda.sh" \
  > "$O/hf.txt" 2>&1 || rc_hf=$?
# NCCL: one rank per visible GPU (NCCL refuses two ranks on one GPU); one GPU
# runs as an MPI singleton.
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true); [[ ${NGPU:-0} -ge 1 ]] || NGPU=1
LAUNCH=(); [[ $NGPU -gt 1 ]] && LAUNCH=(mpirun -np "$NGPU" --bind-to none)
rc_n=0; timeout 420 "${LAUNCH[@]}" "$B/bin/test_nccl_comm" > "$O/nccl.txt" 2>&1 || rc_n=$?
rc_bc=0; timeout 300 "${LAUNCH[@]}" "$B/bin/shardlm" bench comm --backend nccl --sizes 1K..256M --factor 16 \
  --iters 20 --warmup 5 > "$O/bench_comm.txt" 2>&1 || rc_bc=$?
rc_a=0; "$B/bin/bench_cuda_attention" > "$O/attention.txt" 2>&1 || rc_a=$?
rc_pa=0; PYTHONUNBUFFERED=1 $PY "$B/peers/torch_attention_bench.py" >> "$O/attention.txt" 2>&1 || rc_pa=$?
rc_ps=0; PYTHONUNBUFFERED=1 timeout 400 $PY "$B/peers/torch_gpu_bench.py" --steps 10 > "$O/torch_step.txt" 2>&1 || rc_ps=$?
{
  echo "shardlm env rc=$rc_env"; tail -4 "$O/env.txt"
  echo "test_cuda_ops rc=$rc_t"; grep -E 'FAIL|checks failed|skipped' "$O/tests.txt" | head -40
  echo "test_model_cuda rc=$rc_m"; grep -E 'FAIL|checks failed|skipped' "$O/model.txt" | head -60
  echo "test_train_cuda.sh rc=$rc_tr (77: skipped)"; grep -E 'FAIL|dloss|skipped|^ok' "$O/train.txt" | head -40
  echo "test_hf_cuda.sh rc=$rc_hf (77: skipped)"; grep -E 'FAIL|ok |skipped|^ok' "$O/hf.txt" | head -40
  echo "test_nccl_comm (np $NGPU) rc=$rc_n"; grep -E 'FAIL|checks failed|skip|test_nccl_comm:|ordering:' "$O/nccl.txt" | head -40
  echo "bench comm --backend nccl (np $NGPU) rc=$rc_bc"; tail -20 "$O/bench_comm.txt"
  echo "bench_cuda_attention rc=$rc_a torch_attention rc=$rc_pa"; cat "$O/attention.txt"
  echo "torch_gpu_bench rc=$rc_ps"; tail -5 "$O/torch_step.txt"
} > "$O/summary.txt"
cat "$O/summary.txt"
[[ $rc_t -eq 0 && $rc_m -eq 0 && ($rc_tr -eq 0 || $rc_tr -eq 77) && ($rc_hf -eq 0 || $rc_hf -eq 77) && $rc_n -eq 0 && $rc_bc -eq 0 && $missing -eq 0 ]]
