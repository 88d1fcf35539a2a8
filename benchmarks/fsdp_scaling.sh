#!/usr/bin/env bash
# FSDP on the CPU: tokens/s at 1, 2 and 4 ranks (one OpenMP thread per rank,
# micro_batch fixed per rank, so the global batch grows with the ranks: weak
# scaling), and the overlap figure: exposed comm (main thread blocked) against
# the total comm time of the same step's collectives replayed without compute,
# with parallel.overlap on and off, in one run. `shardlm bench --fsdp`
# validates first (finite step-0 loss, identical on every rank).
#
# usage: benchmarks/fsdp_scaling.sh [BUILD_DIR] [STEPS]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
STEPS=${2:-10}
CFG=$SRC/configs/bench-fsdp.json
MPI=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
echo "device: $(nproc --all) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
row() { # np mode overlap
  local out
  out=$("${MPI[@]}" -np "$1" "$BUILD/shardlm" bench --fsdp --config "$CFG" \
    --set parallel.fsdp_mode="$2" --set parallel.overlap="$3" --steps "$STEPS" --warmup 2)
  get() { printf '%s\n' "$out" | awk -v k="$1" '$1 == k {print $2}'; }
  printf '| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(get median_step_s)" \
    "$(get tokens_per_s)" "$(get tokens_per_s_per_rank)" "$(get exposed_comm_ms)" \
    "$(get total_comm_ms)" "$(get overlap_pct)"
}
echo "| ranks | mode | overlap | median step s | tokens/s | tokens/s/rank | exposed comm ms | total comm ms | overlap % |"
echo "|---|---|---|---|---|---|---|---|---|"
row 1 full_shard true
row 2 full_shard true
row 2 full_shard false
row 4 full_shard true
row 4 full_shard false
row 4 shard_grad_op true
row 4 no_shard true
