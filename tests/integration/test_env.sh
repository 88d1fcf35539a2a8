#!/usr/bin/env bash
# mpirun -np 3 shardlm env: three ranks, consistent world, one table from rank 0.
source "$(dirname "$0")/lib.sh"
expect_exit 0 $MPIRUN -np 3 "$SHARDLM" env
expect_out "world 3, nodes 1"
expect_out "nodes 1 x ranks per node 3 | hosts 1: $(hostname)"
grep -q "slurm job" <<< "$OUT" && fail "a Slurm part without SLURM_JOB_ID: $OUT"
rows=$(printf '%s\n' "$OUT" | grep -cE '^[0-2] ')
[ "$rows" -eq 3 ] || fail "expected 3 rank rows, got $rows: $OUT"
for r in 0 1 2; do
  grep -qE "^$r +[^ ]+ +[0-9]+ +0 +$r/3 " <<< "$OUT" || fail "rank $r row wrong: $OUT"
done
# distinct pids: three real processes
pids=$(printf '%s\n' "$OUT" | awk '/^[0-2] /{print $3}' | sort -u | wc -l)
[ "$pids" -eq 3 ] || fail "expected 3 distinct pids: $OUT"
[ "$(printf '%s\n' "$OUT" | grep -c '^shardlm ')" -eq 1 ] || fail "build info must be printed once (rank 0): $OUT"

# pretend nodes: 4 ranks as 2 nodes x 2
expect_exit 0 $MPIRUN -np 4 "$SHARDLM" env --ranks-per-node 2
expect_out "world 4, nodes 2 (pretend)"
expect_out "nodes 2 (pretend) x ranks per node 2 | hosts 1: $(hostname)"
grep -qE '^3 +[^ ]+ +[0-9]+ +1 +1/2 ' <<< "$OUT" || fail "rank 3 should be node 1, local 1/2: $OUT"
expect_exit 2 $MPIRUN -np 3 "$SHARDLM" env --ranks-per-node 2
expect_out "does not divide the world size 3"

# singleton
expect_exit 0 "$SHARDLM" env
expect_out "world 1, nodes 1"
# under Slurm: the job id, node list and task layout from its environment
# (the real thing: tests/integration/test_cluster_slurm.sh)
SLURM_JOB_ID=77 SLURM_JOB_NODELIST='gpu[01-02]' SLURM_NTASKS_PER_NODE=8 expect_exit 0 "$SHARDLM" env
expect_out "nodes 1 x ranks per node 1 | hosts 1: $(hostname) | slurm job 77, nodes gpu[01-02], tasks per node 8"
SLURM_JOB_ID=78 SLURM_JOB_NODELIST='n1,n2' SLURM_TASKS_PER_NODE='2(x2)' expect_exit 0 "$SHARDLM" env
expect_out "| slurm job 78, nodes n1,n2, tasks per node 2(x2)"
echo "ok"
