#!/usr/bin/env bash
# The loss of a node mid-job, under Slurm, 2 namespaced nodes x 2 tasks, the
# multi-node template, parallel.comm_timeout_s = 8, a checkpoint every 10 steps:
# - node2's link is cut (its bridge port goes down) while the job trains;
# - the surviving ranks on node1 exit 124 within comm_timeout_s + 30 s, with
#   a message naming the collective and the missing ranks with their host
#   (node2); the template does not requeue, and Slurm records the job FAILED
#   with exit code 124;
# - the last complete checkpoint verifies with shardlm inspect;
# - node2's link comes back, the same job is resubmitted and resumes from
#   that checkpoint, and ends COMPLETED.
# Prints the measured times: cut -> survivors gone, cut -> srun and the batch
# script returned, cut -> Slurm's final job state.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
rig_start 2
HEAD_BYTES=60000 fortune_shards fortunes
TIMEOUT=8
cluster_config 100000
run="$TMP/loss"
args=("$SRC/cluster/slurm/multi_node.sbatch" "$TMP/run.json" "$run" --set parallel.fsdp_mode=hybrid
      --set train.micro_batch=3 --set parallel.comm_timeout_s=$TIMEOUT --set checkpoint.every=10)
submit --nodes=2 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 \
  --output="$TMP/job-%j.out" "${args[@]}"
first=$JOB
log="$TMP/job-$JOB.out"
end=$((SECONDS + 120))
until [ -f "$run/checkpoints/latest" ] && [ "$(cat "$run/checkpoints/latest")" \> step_00000020 ]; do
  [ $SECONDS -lt $end ] || fail "job $JOB wrote no checkpoint after step 20 in 120 s: $(tail -n 5 "$log")"
  sleep 0.1
done
# the job's ranks on node1, found through node1's namespace
source "$RIG/rig.env"
survivors=$(for p in $(ip netns pids "${ID}n1"); do
  tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q "^$SHARDLM train .*train.run_dir=$run" && echo "$p"; done)
[ "$(wc -w <<< "$survivors")" -eq 2 ] || fail "expected the job's 2 ranks on node1, found [$survivors]"

"$RIGSH" cut "$RIG" node2 || fail "could not cut node2's link"
t0=$(date +%s.%N)
since() { echo "$(date +%s.%N) - $t0" | bc | xargs printf %.1f; }
t_ranks="" t_script="" t_state=""
while [ -z "$t_state" ]; do
  if [ -z "$t_ranks" ]; then
    alive=0; for p in $survivors; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && t_ranks=$(since)
  fi
  [ -z "$t_script" ] && grep -q "a collective timed out" "$log" && t_script=$(since)
  st=$(job_field "$JOB" JobState)
  case $st in FAILED|COMPLETED|CANCELLED|NODE_FAIL|TIMEOUT) t_state=$(since) ;; esac
  [ "$(echo "$(since) > 180" | bc)" -eq 0 ] || fail "job $JOB still $st 180 s after node2 was cut; log: $(tail -n 20 "$log")"
  sleep 0.2
done
OUT=$(cat "$log")
echo "$OUT" | grep -E "error: collective|srun:" | cut -c1-400
echo "node2 cut: node1's ranks gone after $t_ranks s, batch script done after $t_script s, job $st after $t_state s"
[ -n "$t_ranks" ] || fail "node1's ranks were still running when Slurm ended the job"
[ "$(echo "$t_ranks < $TIMEOUT + 30" | bc)" -eq 1 ] || fail "node1's ranks took $t_ranks s to exit, limit $TIMEOUT + 30 s"
# what rank 0 or 1 (node1) said: the collective, the missing ranks on node2
grep -Eq "^\[r[01] node1\] error: collective [a-z_]+ #[0-9]+ on [a-z]+ \([0-9]+ bytes, group of [0-9] ranks\) did not complete in $TIMEOUT\.0 s; ranks that did not arrive \(world ranks\):.* r[23] \([^)]*\) on node2" <<< "$OUT" ||
  fail "no report from node1 naming the collective and the missing ranks on node2; log:
$OUT"
expect_out "Aborting the job (exit code 124)"
# srun returned 124 (its line for node1 says "Exited with exit code 124" or,
# when PMIx's abort reached a rank before its own exit, "Killed"); the
# template says so only for 124
expect_out "shardlm job $JOB: a collective timed out (exit 124"
grep -q ": requeueing (restart" <<< "$OUT" && fail "the template requeued after exit 124; log:
$OUT"
[ "$st" = FAILED ] || fail "Slurm recorded job $JOB as $st, expected FAILED"
[ "$(job_field "$JOB" ExitCode)" = 124:0 ] || fail "job $JOB exit code $(job_field "$JOB" ExitCode), expected 124:0"
grep -q "JobId=$JOB .*JobState=FAILED" "$RIG/log/jobcomp.log" || fail "Slurm's job completion log has no FAILED record for $JOB: $(cat "$RIG/log/jobcomp.log")"

# the last complete checkpoint verifies
last=$(cat "$run/checkpoints/latest")
expect_exit 0 "$SHARDLM" inspect "$run/checkpoints/$last"
s=$((10#${last#step_}))
echo "last complete checkpoint: $last ($SECONDS s into the test)"

# node2 back; the same job again resumes from that checkpoint
"$RIGSH" heal "$RIG" node2 || fail "could not restore node2's link"
# what an admin does once the node is fixed (Slurm would also notice by itself,
# at its next ping of the down node)
on login scontrol update nodename=node2 state=resume || true
end=$((SECONDS + 120))
until [ "$(on login sinfo -h -n node2 -o %T)" = idle ]; do
  [ $SECONDS -lt $end ] || fail "node2 did not return to idle in 120 s: $(on login sinfo -N -l)"
  sleep 0.5
done
echo "node2 idle again ($SECONDS s into the test)"
submit --nodes=2 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 \
  --output="$TMP/job-%j.out" "${args[@]}" --set train.steps=$((s + 3))
wait_job "$JOB" 120
OUT=$(cat "$TMP/job-$JOB.out")
[ "$JOB_STATE" = COMPLETED ] || fail "resubmitted job $JOB ended $JOB_STATE $JOB_EXIT; log:
$OUT"
expect_out "resumed from $run/checkpoints/$last at step $s"
expect_out "step $((s + 3))/$((s + 3))"
echo "ok: node loss -> exit 124 in $t_ranks s (timeout $TIMEOUT s), job $first FAILED; resubmitted job $JOB resumed at step $s"
