#!/usr/bin/env bash
# The multi-node sbatch template on a real Slurm of 2 namespaced nodes
# (cluster/local/rig.sh), 2 tasks per node:
# - srun --mpi=pmix shardlm env on the login host: 4 ranks on two hosts,
#   node1 and node2, and the Slurm job id, node list and task layout;
# - sbatch cluster/slurm/multi_node.sbatch runs shardlm train in HYBRID mode
#   with the nodes taken from the real hosts (shard 2 x replicate 2, no
#   parallel.ranks_per_node), ends COMPLETED with exit 0, and its per-step
#   losses and final parameters equal a world-size-1 run of the same global
#   batch (12 sequences) to 1e-5;
# - the same with SHARDLM_LAUNCHER=mpirun (mpirun inside the allocation), and
#   cluster/slurm/single_node.sbatch (1 node x 2 ranks), equal it too.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
rig_start 2
HEAD_BYTES=60000 fortune_shards fortunes
cluster_config 6

# ---- srun shardlm env: two hosts ----
OUT=$(on login srun -N2 --ntasks-per-node=2 --mpi=pmix "$SHARDLM" env 2>&1) || fail "srun shardlm env failed: $OUT"
echo "$OUT" | head -8
expect_out "world 4, nodes 2"
grep -Eq "^nodes 2 x ranks per node 2 \| hosts 2: node1,node2 \| slurm job [0-9]+, nodes node\[1-2\], tasks per node 2$" <<< "$OUT" ||
  fail "no line naming the two hosts and the Slurm job; output:
$OUT"
for r in 0 1; do grep -Eq "^$r +node1 +[0-9]+ +0 +$r/2 " <<< "$OUT" || fail "rank $r is not local rank $r on node1: $OUT"; done
for r in 2 3; do grep -Eq "^$r +node2 +[0-9]+ +1 +$((r - 2))/2 " <<< "$OUT" || fail "rank $r is not on node2: $OUT"; done

# ---- the reference: world size 1, the same global batch ----
expect_exit 0 "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$TMP/ref" --set train.micro_batch=12

# ---- sbatch of the multi-node template: HYBRID over the real nodes ----
submit --nodes=2 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 \
  --output="$TMP/job-%j.out" "$SRC/cluster/slurm/multi_node.sbatch" "$TMP/run.json" "$TMP/hybrid" \
  --set parallel.fsdp_mode=hybrid --set train.micro_batch=3
wait_job "$JOB" 240
log="$TMP/job-$JOB.out"
[ "$JOB_STATE" = COMPLETED ] && [ "$JOB_EXIT" = 0:0 ] || fail "job $JOB ended $JOB_STATE, exit $JOB_EXIT; log:
$(cat "$log")"
OUT=$(cat "$log")
expect_out "shardlm job $JOB, run 1 (restart count 0): nodes node[1-2] (2), tasks per node 2"
expect_out "world 4 = shard 2 x replicate 2 (hybrid) | global batch 12 = micro 3 x accum 1 x dp 4 sequences"
expect_out "nodes 2 x ranks per node 2 | hosts 2: node1,node2 | slurm job $JOB, nodes node[1-2], tasks per node 2"
expect_out "shardlm job $JOB: training finished"
expect_out "step 6/6"
grep -E "hybrid|hosts|step [0-9]/6" "$log"
expect_exit 0 "$PYTHON" "$SRC/tests/tools/compare_runs.py" --tol 1e-5 "$TMP/ref" "$TMP/hybrid"
echo "$OUT"

# ---- the same template with mpirun inside the allocation; the one-node template ----
SHARDLM_LAUNCHER=mpirun submit --nodes=2 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 \
  --output="$TMP/job-%j.out" "$SRC/cluster/slurm/multi_node.sbatch" "$TMP/run.json" "$TMP/hybrid_mpirun" \
  --set parallel.fsdp_mode=hybrid --set train.micro_batch=3
wait_job "$JOB" 240
OUT=$(cat "$TMP/job-$JOB.out")
[ "$JOB_STATE" = COMPLETED ] && [ "$JOB_EXIT" = 0:0 ] || fail "mpirun job $JOB ended $JOB_STATE, exit $JOB_EXIT; log:
$OUT"
expect_out "world 4 = shard 2 x replicate 2 (hybrid)"
expect_out "nodes 2 x ranks per node 2 | hosts 2: node1,node2 | slurm job $JOB"
submit --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 \
  --output="$TMP/job-%j.out" "$SRC/cluster/slurm/single_node.sbatch" "$TMP/run.json" "$TMP/one_node" \
  --set train.micro_batch=6
wait_job "$JOB" 240
OUT=$(cat "$TMP/job-$JOB.out")
[ "$JOB_STATE" = COMPLETED ] && [ "$JOB_EXIT" = 0:0 ] || fail "single-node job $JOB ended $JOB_STATE, exit $JOB_EXIT; log:
$OUT"
expect_out "world 2 = shard 2 x replicate 1 (full_shard)"
grep -Eq "nodes 1 x ranks per node 2 \| hosts 1: node[12] \| slurm job $JOB, nodes node[12], tasks per node 2" <<< "$OUT" ||
  fail "single-node job: no line naming its one host; log:
$OUT"
expect_exit 0 "$PYTHON" "$SRC/tests/tools/compare_runs.py" --tol 1e-5 "$TMP/ref" "$TMP/hybrid_mpirun" "$TMP/one_node"
echo "$OUT"
echo "ok: sbatch multi_node.sbatch (srun and mpirun, HYBRID 2 nodes x 2) and single_node.sbatch = world 1 to 1e-5"
