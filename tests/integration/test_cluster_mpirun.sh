#!/usr/bin/env bash
# mpirun --hostfile across the rig's hosts without Slurm: 2 namespaced nodes
# (cluster/local/rig.sh up --no-slurm), Open MPI's rsh agent entering each
# host's namespaces (cluster/local/rsh_agent.sh), mpirun on the login host.
# 2 ranks per host, FULL_SHARD over 4 ranks and HYBRID over the 2 real hosts:
# per-step losses and final parameters equal a world-size-1 run of the same
# global batch to 1e-5; the plan line names both hosts.
# Then node2's link is cut mid-run: node1's ranks exit 124 within
# parallel.comm_timeout_s + 30 s naming the collective and r2/r3 on node2,
# and mpirun returns 124 (with tcp_retries2 = 5 on the login host).
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

# ---- node2's link cut while mpirun trains ----
# mpirun learns that node2's daemon is gone only when its TCP connection to
# it times out: with Linux's default net.ipv4.tcp_retries2 = 15 that is about
# 15 minutes. The login host (where mpirun runs) gets tcp_retries2 = 5 (about
# 13 s; a per-namespace setting of the test's own namespace), as README
# "Running on a cluster" advises for the host that runs mpirun.
source "$RIG/rig.env"
ip netns exec "${ID}lg" sysctl -qw net.ipv4.tcp_retries2=5 || fail "could not set tcp_retries2 in the login namespace"
TIMEOUT=8
run="$TMP/cut"
on login mpirun --mca plm_rsh_agent "$SRC/cluster/local/rsh_agent.sh" \
  --hostfile "$RIG/hostfile" -np 4 --npernode 2 --bind-to none --mca btl self,vader,tcp \
  "$SHARDLM" train --config "$TMP/run.json" --set train.run_dir="$run" --set train.steps=100000 \
  --set parallel.comm_timeout_s=$TIMEOUT --set train.micro_batch=3 > "$TMP/cut.log" 2>&1 &
mpid=$!
end=$((SECONDS + 60))
until [ -f "$run/metrics.jsonl" ] && [ "$(grep -c loss "$run/metrics.jsonl")" -ge 10 ]; do
  [ $SECONDS -lt $end ] && kill -0 $mpid 2>/dev/null || fail "the run did not reach step 10: $(tail -n 5 "$TMP/cut.log")"
  sleep 0.1
done
survivors=$(for p in $(ip netns pids "${ID}n1"); do
  tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q "^$SHARDLM train .*train.run_dir=$run" && echo "$p"; done)
[ "$(wc -w <<< "$survivors")" -eq 2 ] || fail "expected 2 ranks on node1, found [$survivors]"
"$RIGSH" cut "$RIG" node2 || fail "could not cut node2's link"
t0=$(date +%s.%N)
since() { echo "$(date +%s.%N) - $t0" | bc | xargs printf %.1f; }
t_ranks=""
while kill -0 $mpid 2>/dev/null; do
  if [ -z "$t_ranks" ]; then
    alive=0; for p in $survivors; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && t_ranks=$(since)
  fi
  [ "$(echo "$(since) > 120" | bc)" -eq 0 ] || fail "mpirun still running 120 s after node2 was cut: $(tail -n 5 "$TMP/cut.log")"
  sleep 0.2
done
wait $mpid; rc=$?
t_mpirun=$(since)
OUT=$(cat "$TMP/cut.log")
echo "node2 cut under mpirun: node1's ranks gone after $t_ranks s, mpirun returned $rc after $t_mpirun s"
[ "$rc" -eq 124 ] || fail "mpirun exited $rc, expected 124; output:
$OUT"
[ -n "$t_ranks" ] && [ "$(echo "$t_ranks < $TIMEOUT + 30" | bc)" -eq 1 ] || fail "node1's ranks took ${t_ranks:-too long} to exit"
grep -Eq "^\[r[01] node1\] error: collective [a-z_]+ #[0-9]+ on [a-z]+ .* did not complete in $TIMEOUT\.0 s; ranks that did not arrive \(world ranks\):.* r[23] \([^)]*\) on node2" <<< "$OUT" ||
  fail "no report from node1 naming the collective and the ranks on node2; output:
$OUT"
echo "ok: node loss under mpirun: exit 124"
