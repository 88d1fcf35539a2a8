#!/usr/bin/env bash
# mpirun --hostfile across the rig's hosts without Slurm: 2 namespaced nodes
# (cluster/local/rig.sh up --no-slurm), Open MPI's rsh agent entering each
# host's namespaces (cluster/local/rsh_agent.sh), mpirun on the login host.
# 2 ranks per host, FULL_SHARD over 4 ranks and HYBRID over the 2 real hosts:
# per-step losses and final parameters equal a world-size-1 run of the same
# global batch to 1e-5; the plan line names both hosts.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
rig_start 2 --no-slurm
HEAD_BYTES=60000 fortune_shards fortunes
cluster_config 5
expect_exit 0 "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$TMP/ref" --set train.micro_batch=12

for mode in full_shard hybrid; do
  expect_exit 0 on login mpirun --mca plm_rsh_agent "$SRC/cluster/local/rsh_agent.sh" \
    --hostfile "$RIG/hostfile" -np 4 --npernode 2 --bind-to none --mca btl self,vader,tcp \
    "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$TMP/$mode" \
    --set parallel.fsdp_mode=$mode --set train.micro_batch=3
  expect_out "nodes 2 x ranks per node 2 | hosts 2: node1,node2"
  expect_out "step 5/5"
  grep -F "world 4 =" <<< "$OUT"
done
expect_out "world 4 = shard 2 x replicate 2 (hybrid)"
expect_exit 0 "$PYTHON" "$SRC/tests/tools/compare_runs.py" --tol 1e-5 "$TMP/ref" "$TMP/full_shard" "$TMP/hybrid"
echo "$OUT"
echo "ok: mpirun --hostfile over node1,node2 = world 1 to 1e-5"
