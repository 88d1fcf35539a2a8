#!/usr/bin/env bash
# Checkpoint write and read throughput of `shardlm train` (ckpt/ckpt.h)
# against a PyTorch peer (torch.save + fsync / torch.load of the same tensors)
# in the same invocation.
#   bash benchmarks/ckpt_bench.sh [BUILD_DIR] [REPS]
# Model: llama d_model 512, 8 layers, d_ff 1408, vocab 320 (23.9 M params):
# each checkpoint holds params + AdamW m + v in fp32 (~280 MB). For world
# sizes 1 and 2: a 1-step run saves at its end (write), then a run resumes
# from that folder and saves it again (read). Validation before the numbers
# count: `shardlm inspect` verifies every dataset of the written checkpoint
# (Fletcher32 + XXH3), and the re-saved checkpoint is bitwise equal to the
# original (the read returned exactly what was written). Reads come from the
# page cache (just written; dropping caches needs the machine to ourselves).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
REPS=${2:-3}
SHARDLM="$BUILD/shardlm"
PYTHON=/usr/bin/python3
MPIRUN="mpirun --oversubscribe --bind-to none --mca btl self,vader --allow-run-as-root"
export OMP_NUM_THREADS=1
TMP=$(mktemp -d /tmp/ckpt_bench.XXXXXX); trap 'rm -rf "$TMP"' EXIT
FORT=/usr/share/games/fortunes
cat "$FORT/fortunes" "$FORT/riddles" > "$TMP/corpus.txt"
"$SHARDLM" tokenizer train --vocab-size 320 --input "$TMP/corpus.txt" --output "$TMP/tok.json" \
  --special '<|endoftext|>' > /dev/null 2>&1
"$SHARDLM" prepare --input "$TMP/corpus.txt" --output "$TMP/shards" --tokenizer "$TMP/tok.json" \
  --set prepare.dedup_near=false > /dev/null 2>&1
cat > "$TMP/run.json" <<J
{"model": {"arch": "llama", "n_layer": 8, "d_model": 512, "n_head": 8, "n_kv_head": 4, "d_ff": 1408,
           "vocab_size": 320, "max_seq_len": 64, "tie_embeddings": false},
 "data": {"train": "$TMP/shards", "seq_len": 8},
 "train": {"steps": 1, "micro_batch": 1, "export_final": false}, "checkpoint": {"keep": 1}}
J
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| world | checkpoint MB | write s (median) | write MB/s | read s (median) | read MB/s |"
echo "|---|---|---|---|---|---|"
for np in 1 2; do
  W=(); R=(); MB=0
  for rep in $(seq 1 "$REPS"); do
    rm -rf "$TMP/w" "$TMP/r"
    out=$($MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$TMP/w" --set train.micro_batch=$((2 / np)) 2>&1)
    line=$(printf '%s\n' "$out" | grep "checkpoint step 1 saved")
    MB=$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9.]+) MB in ([0-9.]+) s.*/\1/')
    W+=("$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9.]+) MB in ([0-9.]+) s.*/\2/')")
    CK="$TMP/w/checkpoints/step_00000001"
    "$SHARDLM" inspect "$CK" > /dev/null || { echo "validation failed: inspect $CK" >&2; exit 1; }
    out=$($MPIRUN -np "$np" "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$TMP/r" --set train.micro_batch=$((2 / np)) --resume "$CK" 2>&1)
    R+=("$(printf '%s\n' "$out" | grep "resumed from" | sed -E 's/.*read ([0-9.]+) MB in ([0-9.]+) s.*/\2/')")
    "$PYTHON" "$SRC/tests/tools/ckpt_compare.py" bitwise "$CK" "$TMP/r/checkpoints/step_00000001" > /dev/null ||
      { echo "validation failed: the re-saved checkpoint differs" >&2; exit 1; }
  done
  w=$(median "${W[@]}"); r=$(median "${R[@]}")
  printf '| shardlm np %d | %.0f | %.3f | %.0f | %.3f | %.0f |\n' "$np" "$MB" "$w" "$(echo "$MB / $w" | bc -l)" "$r" "$(echo "$MB / $r" | bc -l)"
done
# Peer: the np-1 checkpoint's tensors through torch.save (+ fsync) and torch.load.
"$PYTHON" - "$TMP/w/checkpoints/step_00000001" "$TMP/peer.pt" "$REPS" <<'P'
import os, statistics, sys, time
import h5py, numpy as np, torch
ck, path, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
state = {}
for fn in sorted(os.listdir(ck)):
    if fn.endswith(".h5"):
        with h5py.File(os.path.join(ck, fn), "r") as f:
            f.visititems(lambda n, o: state.__setitem__(fn + "/" + n, torch.from_numpy(o[()])) if isinstance(o, h5py.Dataset) else None)
mb = sum(t.numel() * 4 for t in state.values()) / 1e6
W, R = [], []
for _ in range(reps):
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        torch.save(state, f); f.flush(); os.fsync(f.fileno())
    W.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    back = torch.load(path)
    R.append(time.perf_counter() - t0)
    assert all(torch.equal(back[k], v) for k, v in state.items()), "torch.load returned other values"
w, r = statistics.median(W), statistics.median(R)
print(f"| torch.save/load, 1 process | {mb:.0f} | {w:.3f} | {mb / w:.0f} | {r:.3f} | {mb / r:.0f} |")
P
